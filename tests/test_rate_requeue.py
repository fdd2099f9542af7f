"""A bulk item whose start call, progress lookup or download ends in ``RateLimitError`` (a 429 after the
transport's retries) is not reported failed: it goes back into the run's window and is tried again after
the 429's ``Retry-After`` (spread), at most ``RATE_LIMIT_REQUEUES`` times — with and without a run ledger.
A start call refused with a 429 made nothing, so it is sent again; a paid render is only downloaded
again. Counted at the emulator: its account rate limit (a token bucket per application) and queued 429s,
the client told to retry nothing itself (one attempt per call), so that every 429 reaches the item."""

from __future__ import annotations

import collections
import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_ledger_runs import BG_PROGRESS, BG_START, _crashed_intent, make_inputs

from adcreative_async import AdCreativeClient, BulkOutcome, RateLimitError, RateStatus, RetryPolicy
from adcreative_async._clock import ManualClock
from adcreative_async._ratelimit import RATE_LIMIT_REQUEUES, Requeues
from adcreative_async.ledger import ItemState, MemoryLedger, PostgresLedger, RenderRequest, SqliteLedger
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

BG_DOWNLOAD = "Image/BackgroundRemoving/Download"
#: One attempt per call: every 429 ends the call with RateLimitError (what the item then does is tested).
ONE_ATTEMPT = RetryPolicy(max_attempts=1, reconcile_grace=0.05, reconcile_interval=0.01)
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")


USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"  # the user of a run without a ledger (one has its own)


def client_of(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False, retry=ONE_ATTEMPT)


async def run_bulk(
    client: AdCreativeClient, paths: list[Path], out: Path, ledger: Path | None, **options: Any
) -> list[BulkOutcome[Any]]:
    if ledger is None:
        return await client.process_many(
            paths, lambda c, p: c.background_remover.remove(p), dest=out, **options
        )
    return await client.process_many(
        paths, request=RenderRequest.remove_background, dest=out, ledger=ledger, **options
    )


@pytest.fixture(params=["no ledger", "sqlite"])
def ledger_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Where the run's SQLite ledger is (None: a run without one)."""
    return None if request.param == "no ledger" else tmp_path / "run.sqlite"


async def states(path: Path) -> list[ItemState]:
    async with SqliteLedger(path) as ledger:
        return [record.state for record in (await ledger.records()).values()]


async def test_items_refused_by_the_account_rate_limit_are_requeued_and_each_input_renders_once(
    tmp_path: Path, ledger_path: Path | None
) -> None:
    paths = make_inputs(tmp_path / "in", 8)
    async with (
        Emulator(task_duration=0.05, seed=5, rate_limit=10, rate_burst=4) as emulator,
        client_of(emulator) as client,
    ):
        outcomes = await run_bulk(client, paths, tmp_path / "out", ledger_path, upload_concurrency=4)
        limited = emulator.rate_counts().limited
        starts = emulator.request_count(BG_START)
        per_input = emulator.processes_per_input()
    assert limited > 0  # the limit refused requests, with a 429 that no retry of the client absorbed
    assert starts > len(paths)  # start calls refused were sent again
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert all(len(o.files) == 1 and o.files[0].exists() for o in outcomes)
    # exactly one render per input, counted at the server: a refused start call made nothing
    assert len(per_input) == len(paths)
    assert set(per_input.values()) == {1}
    if ledger_path is not None:
        assert set(await states(ledger_path)) == {ItemState.DOWNLOADED}


async def test_a_paid_render_whose_download_is_refused_429_is_downloaded_again_not_started_again(
    tmp_path: Path, ledger_path: Path | None
) -> None:
    paths = make_inputs(tmp_path / "in", 1)
    async with Emulator(task_duration=0.02, seed=5) as emulator, client_of(emulator) as client:
        emulator.fail_next(BG_DOWNLOAD, 429, count=RATE_LIMIT_REQUEUES, retry_after=0)
        [outcome] = await run_bulk(client, paths, tmp_path / "out", ledger_path)
        downloads = emulator.request_count(BG_DOWNLOAD)
        starts = emulator.request_count(BG_START)
        per_input = emulator.processes_per_input()
    assert outcome.ok, outcome.error
    assert len(outcome.files) == 1
    assert outcome.files[0].exists()
    assert downloads == RATE_LIMIT_REQUEUES + 1  # each refused download tried again, until delivered
    assert starts == 1  # the render was never started again
    assert list(per_input.values()) == [1]
    if ledger_path is not None:
        assert await states(ledger_path) == [ItemState.DOWNLOADED]


@pytest.mark.parametrize(
    ("route", "left"),
    [(BG_START, ItemState.PENDING), (BG_DOWNLOAD, ItemState.SUBMITTED)],
    ids=["start call", "download"],
)
async def test_an_item_refused_past_its_requeues_ends_with_the_rate_limit_error_and_stays_for_the_next_run(
    tmp_path: Path, ledger_path: Path | None, route: str, left: ItemState
) -> None:
    paths = make_inputs(tmp_path / "in", 1)
    async with Emulator(task_duration=0.02, seed=5) as emulator, client_of(emulator) as client:
        emulator.fail_next(route, 429, count=RATE_LIMIT_REQUEUES + 2, retry_after=0)
        [outcome] = await run_bulk(client, paths, tmp_path / "out", ledger_path)
        sent = emulator.request_count(route)
        made = sum(emulator.processes_per_input().values())
    assert isinstance(outcome.error, RateLimitError)
    assert sent == RATE_LIMIT_REQUEUES + 1  # tried once, then once per requeue: no more
    assert made == (0 if route == BG_START else 1)
    if ledger_path is not None:  # a transient error: nothing recorded failed
        assert await states(ledger_path) == [left]


async def test_a_reconciliation_lookup_refused_429_is_looked_up_again_and_the_render_adopted(
    tmp_path: Path,
) -> None:
    [path] = make_inputs(tmp_path / "in", 1)
    ledger = MemoryLedger()
    request = RenderRequest.remove_background(path)
    async with Emulator(task_duration=0.02, seed=3, stamp_inputs=True) as emulator:
        key, _ = await _crashed_intent(emulator, ledger, request, made=True)
        emulator.fail_next(BG_PROGRESS, 429, count=2, retry_after=0)
        async with client_of(emulator) as client:
            [outcome] = await client.process_many([request], dest=tmp_path / "out", ledger=ledger)
        starts = emulator.request_count(BG_START)
    assert outcome.ok, outcome.error
    assert starts == 1  # adopted: no second start call
    assert (await ledger.records([key]))[key].state is ItemState.DOWNLOADED


def test_items_refused_together_are_spread_over_the_next_retry_after_not_sent_at_one_instant() -> None:
    clock = ManualClock()
    error = RateLimitError("429", status=429, retry_after=2.0, method="POST")
    delays = [Requeues(clock, 30.0, None).delay(error) for _ in range(200)]
    assert all(d is not None and 2.0 <= d <= 4.0 for d in delays)  # never before the server's Retry-After
    seconds = collections.Counter(int(d * 10) for d in delays if d is not None)  # tenths of a second
    assert len(seconds) >= 15  # spread over the next Retry-After, not bunched
    # each requeue of one item waits longer (doubled spread), and they stop after the bound
    requeues = Requeues(clock, 30.0, None)
    spreads = []
    for _ in range(RATE_LIMIT_REQUEUES):
        assert requeues.delay(error) is not None
        spreads.append(min(30.0, 2.0 * 2**requeues.used))
        requeues.used += 1
    assert requeues.delay(error) is None
    assert spreads == sorted(spreads)
    # a Retry-After beyond the longest honoured ends the item's requeues at once
    later = RateLimitError("429", status=429, retry_after=31.0, method="POST")
    assert Requeues(clock, 30.0, None).delay(later) is None


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN")
async def test_workers_sharing_a_postgresql_ledger_and_its_rate_requeue_refused_items_and_render_each_once(
    tmp_path: Path,
) -> None:
    assert POSTGRES_DSN is not None
    paths = make_inputs(tmp_path / "in", 100)  # past a claim window (64): both workers start items
    run = f"requeue-{uuid.uuid4().hex[:12]}"
    outcomes: list[BulkOutcome[Any]] = []
    statuses: list[RateStatus | None] = []
    async with Emulator(task_duration=0.05, seed=5, rate_limit=40, rate_burst=10) as emulator:

        async def worker(n: int) -> None:
            async with (
                PostgresLedger(POSTGRES_DSN, run=run) as ledger,
                AdCreativeClient(
                    **emulator.credentials, trust_env=False, retry=ONE_ATTEMPT, rate_control=True
                ) as client,
            ):
                outcomes.extend(
                    await client.process_many(
                        paths,
                        request=RenderRequest.remove_background,
                        dest=tmp_path / f"out{n}",
                        ledger=ledger,
                        upload_concurrency=2,
                    )
                )
                statuses.append(client.rate_status)

        async with anyio.create_task_group() as group:
            for n in range(2):
                group.start_soon(worker, n)
        limited = emulator.rate_counts().limited
        per_input = emulator.processes_per_input()
    assert limited > 0
    assert sum(s.throttled for s in statuses if s is not None) > 0
    # the rate learned from the 429s paced both workers (cut through the ledger, for one and the other)
    assert all(s is not None and s.cuts > 0 for s in statuses), statuses
    assert len(outcomes) == 2 * len(paths)  # each worker reports every input (its own, or the other's)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert len(per_input) == len(paths)
    assert set(per_input.values()) == {1}
