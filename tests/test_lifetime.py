"""The client's lifetime belongs to the client, not to the task that opened it: open in one task (a
notebook cell), use in others, close in yet another; nothing of its background work outlives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from helpers import FAST_POLLS, PNG

from adcreative_async import AdCreativeClient, ClientNotOpenError, RenderJob
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=3) as emu:
        yield emu


def make_client(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False, poll_policy=FAST_POLLS)


async def in_own_task(func: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``func`` in a task of its own (as a notebook runs each cell) and return its result."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await func())

    async with anyio.create_task_group() as group:
        group.start_soon(run)
    return result[0]


def client_tasks() -> list[str]:
    """The names of the running tasks of the SDK's client side (anyio names a task after its function;
    the emulator's server tasks are left out)."""
    names = [task.get_name() for task in asyncio.all_tasks()]
    return [
        n
        for n in names
        if (n.startswith("adcreative_async.") and not n.startswith("adcreative_async.testing"))
        or n == "adcreative-async background"
    ]


async def test_open_use_and_close_in_three_different_tasks(emulator: Emulator) -> None:
    client = make_client(emulator)
    await in_own_task(client.open)
    states = [client.is_open]

    async def use() -> RenderJob:
        job = await client.background_remover.remove(PNG)
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: job.result(timeout=10))
            await anyio.sleep(0.05)  # the scheduler's poller is running in the client's background
            assert client.scheduler_stats["pollers"] == 1
            assert "adcreative_async._polling.PollScheduler._run_poller" in client_tasks()
            emulator.finish_process(job.process_id)
        return job

    job = await in_own_task(use)
    assert job.is_complete
    await in_own_task(client.aclose)
    states.append(client.is_open)
    assert states == [True, False]
    assert client_tasks() == []


async def test_a_wait_started_in_another_task_ends_when_the_client_closes(emulator: Emulator) -> None:
    client = make_client(emulator)
    await in_own_task(client.open)
    job = await in_own_task(lambda: client.background_remover.remove(PNG))
    failures: list[BaseException] = []

    async def wait() -> None:
        try:
            await job.result()
        except ClientNotOpenError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.sleep(0.05)
        await in_own_task(client.aclose)
    assert len(failures) == 1


async def test_closing_twice_and_from_concurrent_tasks_is_harmless(emulator: Emulator) -> None:
    client = make_client(emulator)
    await client.open()
    await client.background_remover.user_progress()
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(client.aclose)
    assert not client.is_open
    await client.aclose()


async def test_the_client_reopens_after_close(emulator: Emulator) -> None:
    client = make_client(emulator)
    for _ in range(2):
        async with client:
            job = await client.background_remover.remove(PNG)
            emulator.finish_process(job.process_id)
            assert (await job.result(timeout=10)).is_complete
    assert not client.is_open


async def test_async_with_still_nests_in_one_task(emulator: Emulator) -> None:
    async with make_client(emulator) as client:
        job = await client.background_remover.remove(PNG)
        emulator.finish_process(job.process_id)
        await job.result(timeout=10)
        assert client.scheduler_stats["requests"] >= 1
    assert client_tasks() == []
