"""Client-side adaptive rate control (``rate_control=``): AIMD on 429s, pacing, and the rate shared by
workers through a PostgreSQL run ledger."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import uuid

import anyio
import pytest

from adcreative_async import AdCreativeClient, ManualClock, RateControl, RateLimitError, Timeout
from adcreative_async._ratelimit import CUT_PERIOD, RateController, RateReport, RateShare, rate_scope
from adcreative_async.testing import Emulator, RateCounts

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
)


def controller(clock: ManualClock, **options: float) -> RateController:
    return RateController(RateControl(**options), clock, "scope")  # type: ignore[arg-type]


async def send(
    rate: RateController, clock: ManualClock, n: int, *, spacing: float, status: int = 200
) -> None:
    """``n`` requests ``spacing`` seconds apart, each answered ``status``."""
    for _ in range(n):
        async with anyio.create_task_group() as group:
            tickets: list[int] = []

            async def one() -> None:
                tickets.append(await rate.acquire())  # noqa: B023 - awaited within the iteration

            group.start_soon(one)
            while not tickets:
                await clock.advance(0.001)
        rate.observe(tickets[0], status)
        await clock.advance(spacing)


async def test_nothing_is_paced_before_the_first_429() -> None:
    clock = ManualClock()
    rate = controller(clock)
    for _ in range(1000):
        rate.observe(await rate.acquire(), 200)  # the clock never moves: no request waits
    assert rate.status.rate is None
    assert rate.status.cuts == 0


async def test_a_429_cuts_the_rate_from_what_got_through_once_per_rate() -> None:
    clock = ManualClock()
    rate = controller(clock, decrease=0.5)
    await send(rate, clock, 40, spacing=0.025)  # 40 requests/s, all accepted
    tickets = [await rate.acquire() for _ in range(3)]  # sent together, all refused
    for ticket in tickets:
        rate.observe(ticket, 429)
    status = rate.status
    assert status.throttled == 3
    assert status.cuts == 1  # one overload, one cut: the other two were sent at the old rate
    assert status.rate is not None
    assert 15 <= status.rate <= 25  # half of the ~40/s that got through
    # a 429 of a request sent at the new rate, right after the cut, answers the same overload
    ticket = await rate.acquire()
    rate.observe(ticket, 429)
    assert rate.status.cuts == 1
    await clock.advance(CUT_PERIOD)
    ticket = await rate.acquire()
    rate.observe(ticket, 429)
    assert rate.status.cuts == 2


async def test_rate_grows_while_used_and_holds_while_idle() -> None:
    clock = ManualClock()
    rate = controller(clock, initial_rate=10.0, increase=0.1)
    await send(rate, clock, 50, spacing=0.1)  # 10/s: the rate is used, 5 s without a 429
    used = rate.status.rate
    assert used is not None
    assert used > 10.0
    await send(rate, clock, 5, spacing=2.0)  # 0.5/s: far below the rate
    assert rate.status.rate == pytest.approx(used, rel=0.02)


async def gaps_between_turns(rate: RateController, clock: ManualClock, n: int) -> list[float]:
    """``n`` requests asking for a turn at once, each answered 200: the (manual) seconds between their
    turns (the clock moves in 10 ms steps)."""
    sent: list[float] = []

    async def request() -> None:
        rate.observe(await rate.acquire(), 200)
        sent.append(clock.monotonic())

    async with anyio.create_task_group() as group:
        for _ in range(n):
            group.start_soon(request)
        while len(sent) < n:
            await clock.advance(0.01)
    return [b - a for a, b in itertools.pairwise(sent)]


async def test_requests_wait_their_turn_at_the_learned_rate() -> None:
    clock = ManualClock()
    rate = controller(clock, initial_rate=10.0, burst_seconds=0.0)
    gaps = await gaps_between_turns(rate, clock, 20)
    assert min(gaps) >= 0.1 - 0.011  # one every 100 ms (the manual clock moves in 10 ms steps)


async def test_requests_waiting_when_the_rate_is_cut_are_paced_at_the_new_rate() -> None:
    clock = ManualClock()
    rate = controller(clock, initial_rate=100.0, burst_seconds=0.0, decrease=0.1, min_rate=1.0)
    await send(rate, clock, 100, spacing=0.01)  # 100/s got through
    sent: list[float] = []

    async def request() -> None:
        await rate.acquire()
        sent.append(clock.monotonic())

    async with anyio.create_task_group() as group:
        for _ in range(30):  # 300 ms of turns reserved at 100/s
            group.start_soon(request)
        await clock.advance(0.001)
        rate.observe(rate.generation, 429)  # cut to ~10/s while they wait
        while len(sent) < 30:
            await clock.advance(0.01)
    assert sent[-1] - sent[0] > 2.0  # not 0.3 s: the waiting ones took new turns at ~10/s


def test_rate_control_options_are_checked() -> None:
    for bad in (
        {"decrease": 1.0},
        {"increase": 0.0},
        {"min_rate": 0.0},
        {"max_rate": 0.1},
        {"initial_rate": -1},
    ):
        with pytest.raises(ValueError, match="RateControl"):
            RateControl(**bad)


def test_the_shared_rate_is_keyed_by_a_fingerprint_not_the_application_id() -> None:
    application = str(uuid.uuid4())
    scope = rate_scope("https://api.adcreative.ai/", application)
    assert application not in scope
    assert application.replace("-", "") not in scope
    assert scope == rate_scope("https://api.adcreative.ai", application.upper())
    assert scope != rate_scope("http://127.0.0.1:8080", application)


class CountingBoard:
    """A board in memory that counts its syncs (the database round trips of a shared rate)."""

    def __init__(self) -> None:
        self.syncs = 0
        self.reports: list[RateReport] = []

    async def sync(self, report: RateReport, control: RateControl) -> RateShare:
        self.syncs += 1
        self.reports.append(report)
        return RateShare(None, 0, 2)

    async def leave(self, worker: str) -> None:
        pass


async def test_a_shared_rate_is_read_at_most_once_per_sync_interval_not_per_request() -> None:
    clock = ManualClock()
    rate = RateController(RateControl(sync_interval=0.25, start_rate=None), clock, "scope")  # unpaced
    board = CountingBoard()
    assert rate.attach(board)
    for _ in range(100):
        rate.observe(await rate.acquire(), 200)
    assert board.syncs == 1
    await clock.advance(0.25)
    for _ in range(100):
        rate.observe(await rate.acquire(), 200)
    assert board.syncs == 2
    rate.observe(rate.generation, 429)  # a 429 is told at once, on the next request
    await rate.acquire()
    assert board.syncs == 3
    assert board.reports[-1].throttled == 0
    await rate.detach(board)
    assert not rate.status.shared


async def test_single_client_converges_below_the_account_limit() -> None:
    limit = 100.0
    async with Emulator(rate_limit=limit, rate_burst=10) as emu:
        counts: dict[bool, RateCounts] = {}
        for control in (None, RateControl()):
            emu.set_rate_limit(limit, 10, reset_counts=True)
            async with AdCreativeClient(**emu.credentials, rate_control=control, trust_env=False) as client:
                remaining = 300

                async def loop(client: AdCreativeClient = client) -> None:
                    nonlocal remaining
                    while remaining > 0:
                        remaining -= 1
                        with contextlib.suppress(RateLimitError):
                            await client.background_remover.user_progress(USER, retry=1)

                async with anyio.create_task_group() as group:
                    for _ in range(16):
                        group.start_soon(loop)
                status = client.rate_status
            counts[control is not None] = emu.rate_counts()
        assert status is not None
        assert status.rate is not None
        assert 0.5 * limit < status.rate < 1.2 * limit  # it settled around the limit
        assert status.cuts >= 1
        # the first 429s come before anything is known (a burst unpaced), then few
        assert counts[True].limited < counts[False].limited / 3  # against a client without it


@pytest.mark.postgres
@needs_postgres
async def test_workers_sharing_a_postgresql_ledger_cut_the_account_rate_once_and_split_it() -> None:
    from adcreative_async.ledger import PostgresLedger

    assert POSTGRES_DSN is not None
    control = RateControl(decrease=0.5)
    scope = f"test-{uuid.uuid4().hex}"
    async with PostgresLedger(POSTGRES_DSN, run=f"rate-{uuid.uuid4().hex[:8]}") as ledger:
        first, second = ledger.rate_board(scope), ledger.rate_board(scope)
        assert first is not None
        assert second is not None
        share = await first.sync(RateReport("a", 30.0, 30.0, None), control)
        assert (share.account_rate, share.generation, share.workers) == (None, 0, 1)
        share = await second.sync(RateReport("b", 30.0, 30.0, None), control)
        assert share.workers == 2
        # both saw a 429 of the same overload: the account rate is cut once, from what got through
        share = await first.sync(RateReport("a", 30.0, 30.0, 0), control)
        assert share.generation == 1
        assert share.account_rate == pytest.approx(0.5 * 60.0)
        share = await second.sync(RateReport("b", 30.0, 30.0, 0), control)
        assert share.generation == 1
        assert share.account_rate is not None
        assert share.account_rate < 31.0
        await second.leave("b")
        share = await first.sync(RateReport("a", 15.0, 15.0, None), control)
        assert share.workers == 1
        assert math.isfinite(share.account_rate or math.inf)


class FailingBoard(CountingBoard):
    """A board whose database is gone."""

    async def sync(self, report: RateReport, control: RateControl) -> RateShare:
        self.syncs += 1
        raise OSError("connection refused")


async def test_a_shared_rate_that_cannot_be_read_leaves_the_worker_pacing_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    rate = controller(clock, sync_interval=0.25)
    board = FailingBoard()
    assert rate.attach(board)
    await send(rate, clock, 40, spacing=0.025)  # requests go on: the failure is the ledger's, not theirs
    rate.observe(await rate.acquire(), 429)
    assert rate.status.rate is not None  # learned alone meanwhile
    assert board.syncs >= 4
    assert sum("could not be read" in r.getMessage() for r in caplog.records) == 1  # said once, not per sync


async def test_a_wait_for_a_paced_turn_does_not_count_against_the_call_deadline() -> None:
    # 8 calls at once paced at 2/s: the last waits about 3 s for its turn, past a 1 s total; the turn is
    # the client's own pacing (the API answers at once), so no call times out
    async with (
        Emulator(rate_limit=1000.0) as emu,  # a limit far off, only so that the emulator counts
        AdCreativeClient(
            **emu.credentials,
            rate_control=RateControl(initial_rate=2.0),
            timeout=Timeout(total=1.0),
            trust_env=False,
        ) as client,
    ):
        answered: list[object] = []

        async def one() -> None:
            answered.append(await client.background_remover.user_progress(USER))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        assert len(answered) == 8
        assert emu.rate_counts().limited == 0
