"""The cold start of a shared rate: workers sharing a rate that no one learned yet (no 429) start paced at
their share of ``RateControl.start_rate`` and probe upwards, instead of unpaced; a worker joining a learned
rate starts at its share of it."""

from __future__ import annotations

import os
import uuid

import anyio
import pytest

from adcreative_async import ManualClock, RateControl
from adcreative_async._ratelimit import RateController, RateReport, RateShare

pytestmark = pytest.mark.anyio

POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
)


class UnlearnedBoard:
    """A shared rate no worker has learned yet, shared by ``workers``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    async def sync(self, report: RateReport, control: RateControl) -> RateShare:
        return RateShare(None, 0, self.workers)

    async def leave(self, worker: str) -> None:
        pass


async def acquire(rate: RateController, clock: ManualClock) -> int:
    """One request's turn, the clock moved on while it waits."""
    tickets: list[int] = []
    async with anyio.create_task_group() as group:

        async def one() -> None:
            tickets.append(await rate.acquire())

        group.start_soon(one)
        while not tickets:
            await clock.advance(0.005)
    return tickets[0]


async def test_workers_sharing_an_unlearned_rate_probe_from_their_share_of_the_start_rate() -> None:
    clock = ManualClock()
    rate = RateController(RateControl(start_rate=20.0), clock, "scope")
    board = UnlearnedBoard(workers=4)
    assert rate.attach(board)
    rate.observe(await acquire(rate, clock), 200)
    assert rate.status.rate == pytest.approx(5.0)  # paced before any 429: its share, not unpaced
    for _ in range(40):  # used at its pace for two seconds: the probe grows
        rate.observe(await acquire(rate, clock), 200)
    assert rate.status.rate is not None
    assert rate.status.rate > 10.0
    assert rate.status.throttled == 0
    await rate.detach(board)  # nothing was learned: alone, unpaced again
    assert rate.status.rate is None


async def test_without_a_start_rate_sharing_workers_start_unpaced() -> None:
    clock = ManualClock()
    rate = RateController(RateControl(start_rate=None), clock, "scope")
    assert rate.attach(UnlearnedBoard(workers=4))
    for _ in range(50):
        rate.observe(await acquire(rate, clock), 200)
    assert rate.status.rate is None


@pytest.mark.postgres
@needs_postgres
async def test_a_429_ends_every_workers_probe_and_a_joining_worker_starts_at_its_share() -> None:
    from adcreative_async.ledger import PostgresLedger

    assert POSTGRES_DSN is not None
    control = RateControl(start_rate=20.0, min_rate=4.0)
    scope = f"test-{uuid.uuid4().hex}"
    clock = ManualClock()
    async with PostgresLedger(POSTGRES_DSN, run=f"rate-{uuid.uuid4().hex[:8]}") as ledger:
        boards = [ledger.rate_board(scope) for _ in range(3)]
        first, second, third = (RateController(control, clock, scope) for _ in range(3))
        for worker, board in zip((first, second), boards, strict=False):
            assert board is not None
            assert worker.attach(board)
        with anyio.fail_after(10):
            first.observe(await acquire(first, clock), 200)
            second.observe(await acquire(second, clock), 200)
            assert first.status.rate == pytest.approx(20.0)  # alone when it started
            assert second.status.rate == pytest.approx(10.0)  # one of two
            unlearned = first.status
            assert unlearned.account_rate is None  # nothing learned yet
            assert first.status.throttled == 0
            first.observe(await acquire(first, clock), 429)
            first.observe(await acquire(first, clock), 200)  # tells the board: the account rate is cut
            learned = first.status
            assert learned.account_rate is not None
            account = learned.account_rate
            assert first.status.cuts == 1
            await clock.advance(control.sync_interval)
            second.observe(await acquire(second, clock), 200)  # the other learns it on its next sync
            told = second.status
            assert told.account_rate == pytest.approx(account, rel=0.1)  # (grown a little since)
            assert told.account_rate is not None
            assert told.rate == pytest.approx(told.account_rate / 2)
            assert boards[2] is not None
            assert third.attach(boards[2])
            third.observe(await acquire(third, clock), 200)  # joins paced at its share of what was learned
            assert third.status.account_rate is not None
            assert third.status.rate == pytest.approx(third.status.account_rate / 3)
        for worker, board in zip((first, second, third), boards, strict=True):
            assert board is not None
            await worker.detach(board)
