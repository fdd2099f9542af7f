"""Once listing reads are not cheap in all (``_poll_state.LISTING_READS_FREE`` listed processes a second),
a listing is paced by what it yields: each awaited process pays for a bounded number of listed ones
(``_poll_state.LISTED_PER_AWAITED``), so a bulk run's CPU per item does not grow with its users'
listings; cheap listings keep the policy's pace (small runs lose no latency).

Against the emulator over loopback; the pace is made visible by a small allowance per awaited process,
and checked by counting listings, not by timing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import FAST_POLLS, eventually

from adcreative_async import AdCreativeClient, RenderJob
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "6f1c2a4e-0d5b-4f7e-9a3c-2b8d1e4f6a70"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
PNG = sample_image("png", (8, 8))
JOBS = 40
#: The cap of a yield-paced delay (the policy's max_interval): far above the backoff's first delays.
CAP = 0.5
POLICY = dataclasses.replace(FAST_POLLS, max_interval=CAP)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=11) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    credentials = emulator.credentials
    async with AdCreativeClient(**credentials, user_id=USER, trust_env=False, poll_policy=POLICY) as c:
        yield c


async def _listings_while_awaiting(emulator: Emulator, jobs: list[RenderJob], window: float) -> int:
    """Listings of the user sent while ``jobs`` are awaited (none of them finishes) for ``window`` s."""
    before = emulator.request_count(BG_PROGRESS)  # the client's own listing of the user (reconciliation)
    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(job.result)
        await eventually(lambda: emulator.request_count(BG_PROGRESS) > before)
        await anyio.sleep(window)
        listings = emulator.request_count(BG_PROGRESS) - before
        group.cancel_scope.cancel()
    return listings


async def test_a_listing_read_for_many_waiters_waits_by_what_it_costs_each_of_them(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 listed processes, all awaited, each allowed 0.01 listed process a second, and any reading rate
    # taken as costly: the next listing would be 100 s away; it comes at the cap instead. Without the
    # rule, the backoff from 10 ms (nothing changes) sends five listings in the window.
    monkeypatch.setattr("adcreative_async._poll_state.LISTED_PER_AWAITED", 0.01, raising=False)
    monkeypatch.setattr("adcreative_async._poll_state.LISTING_READS_FREE", 0.0, raising=False)
    jobs = [await client.background_remover.remove(PNG) for _ in range(JOBS)]
    listings = await _listings_while_awaiting(emulator, jobs, 0.3)
    assert listings == 1


async def test_a_yield_paced_listing_is_read_again_within_the_policys_longest_interval(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adcreative_async._poll_state.LISTED_PER_AWAITED", 0.01, raising=False)
    monkeypatch.setattr("adcreative_async._poll_state.LISTING_READS_FREE", 0.0, raising=False)
    jobs = [await client.background_remover.remove(PNG) for _ in range(JOBS)]
    scheduler = client._poll_scheduler()
    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(job.result)
        await eventually(lambda: scheduler.requests >= 1)
        for job in jobs:
            emulator.finish_process(job.process_id)
    assert all(job.is_complete for job in jobs)  # seen by the second listing, at the cap


async def test_cheap_listings_keep_the_policys_pace_however_many_they_serve(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same allowance per awaited process, but listings of 40 processes read at the policy's pace stay
    # far below the rate that is taken as costly: no listing is paced by its yield
    monkeypatch.setattr("adcreative_async._poll_state.LISTED_PER_AWAITED", 0.01, raising=False)
    jobs = [await client.background_remover.remove(PNG) for _ in range(JOBS)]
    listings = await _listings_while_awaiting(emulator, jobs, 0.3)
    assert listings >= 3
