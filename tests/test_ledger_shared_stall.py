"""Two workers on one run ledger whose items end unfinished (their start calls answered 429 past the
retries): each lets go of what it leaves, so that neither waits for ever on items the other holds."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from test_ledger_runs import BG_START, make_inputs

from adcreative_async import AdCreativeClient, RateLimitError, RetryPolicy
from adcreative_async.ledger import ItemState, PostgresLedger, RenderRequest, RunLedger, SqliteLedger
from adcreative_async.testing import Emulator, Faults

pytestmark = pytest.mark.anyio

ITEMS = 200  # past the claim window (64): each worker claims some, and watches the others
#: One attempt per call: every refused start call ends its item at once (left for the next run); its 429's
#: Retry-After (1 s) is longer than the longest honoured, so that the run does not requeue it either.
NO_RETRIES = RetryPolicy(max_attempts=1, max_retry_after=0.5, reconcile_grace=0.05, reconcile_interval=0.01)
#: Generous: the run takes a few seconds; before the fix it never ended.
HANG = 60
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
NO_POSTGRES = "needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"


def sqlite_ledgers(tmp_path: Path) -> Callable[[], RunLedger]:
    return lambda: SqliteLedger(tmp_path / "run.sqlite")


def postgres_ledgers(tmp_path: Path) -> Callable[[], RunLedger]:
    assert POSTGRES_DSN is not None
    run = f"stall-{uuid.uuid4().hex[:12]}"
    return lambda: PostgresLedger(POSTGRES_DSN, run=run)


@pytest.fixture(
    params=[
        pytest.param(sqlite_ledgers, id="sqlite"),
        pytest.param(
            postgres_ledgers,
            id="postgres",
            marks=[pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)],
        ),
    ]
)
def ledgers(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], RunLedger]:
    """Each call: a new connection to one run ledger (as another worker's)."""
    factory: Callable[[Path], Callable[[], RunLedger]] = request.param
    return factory(tmp_path)


async def test_workers_whose_items_end_unfinished_release_them_and_the_run_ends(
    tmp_path: Path, ledgers: Callable[[], RunLedger]
) -> None:
    paths = make_inputs(tmp_path / "in", ITEMS)
    faults = {BG_START: Faults(rate_limit=1.0)}  # every start call refused unprocessed
    results: list[list[object]] = []
    async with Emulator(task_duration=0.02, seed=7, start_latency=0.01, faults=faults) as emulator:

        async def worker() -> None:
            async with (
                ledgers() as ledger,
                AdCreativeClient(**emulator.credentials, trust_env=False, retry=NO_RETRIES) as client,
            ):
                outcomes = await client.process_many(
                    paths, request=RenderRequest.remove_background, ledger=ledger, upload_concurrency=2
                )
            results.append(list(outcomes))

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as group:
                for _ in range(2):
                    group.start_soon(worker)
        sent = emulator.request_count(BG_START)
    assert len(results) == 2
    for outcomes in results:
        assert len(outcomes) == ITEMS
        assert all(isinstance(o.error, RateLimitError) for o in outcomes)  # type: ignore[attr-defined]
    assert sent >= ITEMS  # each item's call was tried (some by both workers)
    async with ledgers() as ledger:
        records = (await ledger.records()).values()
    # nothing was made: every item pending for the next run, and held by nobody
    assert len(records) == ITEMS
    assert all(r.state is ItemState.PENDING and r.owner is None for r in records)
