"""The poll scheduler's work stays proportional to what is awaited, not to what it has seen.

A poll decodes in full only the processes someone follows (a light pass reads the ids of the rest), and
finished processes nobody follows any more leave the scheduler soon (bounded in time and in number).
Against the emulator over loopback, with fast polls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import client_of, eventually

import adcreative_async._models as models
from adcreative_async import AdCreativeClient, PollPolicy, Progress, RenderJob
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
PNG = sample_image("png", (8, 8))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=5) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with client_of(emulator, USER) as c:
        yield c


async def _submit(client: AdCreativeClient, count: int) -> list[RenderJob]:
    return [await client.background_remover.remove(PNG) for _ in range(count)]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts full progress decodes (every decoded progress object settles its tasks map once)."""
    counter = [0]
    settle = models.settle_task_states

    def counting(tasks: dict[str, Any]) -> None:
        counter[0] += 1
        settle(tasks)

    monkeypatch.setattr(models, "settle_task_states", counting)
    return counter


async def test_a_poll_decodes_in_full_only_the_processes_someone_awaits(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = await _submit(client, 60)  # all 60 stay in the user's listing
    awaited = jobs[:6]  # more than are asked for by id: every poll is one listing of 60
    decodes = _count_decodes(monkeypatch)
    scheduler = client._poll_scheduler()
    async with anyio.create_task_group() as group:
        for job in awaited:
            group.start_soon(job.result)
        await eventually(lambda: scheduler.requests >= 5)
        for job in awaited:
            emulator.finish_process(job.process_id)
    listings = emulator.request_count(BG_PROGRESS)
    assert all(job.is_complete for job in awaited)
    assert listings >= 5
    # each poll decodes the awaited processes at most, never the 54 others
    assert decodes[0] <= len(awaited) * listings


async def test_finished_processes_leave_the_scheduler_soon_after_their_waits_end(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adcreative_async._poll_state.FINISHED_LINGER", 0.05, raising=False)
    scheduler = client._poll_scheduler()
    done = await _submit(client, 5)
    for job in done:
        emulator.finish_process(job.process_id)
        await job.result(timeout=5)
        # kept for a moment: a waiter woken by the completion reads it from the cache
        assert scheduler.snapshot(job._poll_key, job.process_id) is not None
    await anyio.sleep(0.1)
    (other,) = await _submit(client, 1)
    async with anyio.create_task_group() as group:
        group.start_soon(other.result)
        await eventually(lambda: all(scheduler.snapshot(j._poll_key, j.process_id) is None for j in done))
        emulator.finish_process(other.process_id)


async def test_the_scheduler_keeps_a_bounded_number_of_finished_processes(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adcreative_async._poll_state.FINISHED_KEEP", 3, raising=False)
    scheduler = client._poll_scheduler()
    done = await _submit(client, 10)
    for job in done:
        emulator.finish_process(job.process_id)
    async with anyio.create_task_group() as group:
        for job in done:
            group.start_soon(job.result)
    (other,) = await _submit(client, 1)
    async with anyio.create_task_group() as group:
        group.start_soon(other.result)
        await eventually(lambda: scheduler.requests >= 5)
        kept = [j for j in done if scheduler.snapshot(j._poll_key, j.process_id) is not None]
        emulator.finish_process(other.process_id)
    assert len(kept) <= 3
    assert all(job.is_complete for job in done)


# ---------------------------------------------------------------- a listing that omits finished processes


async def test_a_listing_without_finished_processes_does_not_hold_a_bulk_run_to_the_poll_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every finished process then costs one request by id (the listing never shows it finished): that
    is per-item work, not polling, so the poll rate (here 0.5 requests a second: 400 s for these 200
    items, the stall of issue 23) does not pace it; each process is asked for once."""
    items = [sample_image("png", (8, 8 + i)) for i in range(200)]
    policy = PollPolicy(
        initial_interval=0.05, max_interval=0.1, min_interval=0.01, max_requests_per_second=0.5, burst=1
    )
    async with (
        Emulator(task_duration=0.01, list_finished=False, seed=7) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, poll_policy=policy, trust_env=False) as client,
    ):
        asked: Counter[str] = Counter()
        resource = client.background_remover
        user_progress = resource.user_progress

        async def counting(user_id: Any = None, process_id: Any = None, **kwargs: Any) -> list[Progress]:
            if process_id is not None:
                asked[str(process_id).lower()] += 1
            return await user_progress(user_id, process_id, **kwargs)

        monkeypatch.setattr(resource, "user_progress", counting)
        with anyio.fail_after(60):  # a stall guard: at the poll rate, this run takes 400 s
            async with client.bulk(items, lambda c, image: c.background_remover.remove(image)) as run:
                outcomes = [outcome async for outcome in run]
    assert len(outcomes) == len(items)
    assert all(outcome.ok for outcome in outcomes)
    assert asked
    assert max(asked.values()) == 1  # each finished process asked for once


async def test_a_large_listing_is_polled_at_a_pace_that_grows_with_its_size(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a listing costs the client per listed process, awaited or not: a listing of 20 processes
    made as dear as one of 2 million (10 s at the default pace per process) waits that long between
    polls, instead of the policy's 10-20 ms."""
    monkeypatch.setattr("adcreative_async._poll_state.LISTING_PACE_PER_ITEM", 0.5, raising=False)
    jobs = await _submit(client, 20)
    awaited = jobs[:5]  # more than are asked for by id: every poll is one listing of 20
    before = emulator.request_count(BG_PROGRESS)  # the client's own listing of the user (reconciliation)
    async with anyio.create_task_group() as group:
        for job in awaited:
            group.start_soon(job.result)
        await eventually(lambda: emulator.request_count(BG_PROGRESS) > before)
        await anyio.sleep(0.3)  # fifteen of the policy's intervals
        listings = emulator.request_count(BG_PROGRESS) - before
        group.cancel_scope.cancel()
    assert listings == 1
