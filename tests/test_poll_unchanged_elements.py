"""A listing element that did not change since the previous poll is not decoded again.

Most of a listing's followed elements are the same bytes poll after poll (a render in progress): the
scheduler remembers the bytes that left each cached snapshot and skips the decode and the comparison
of an element that holds them again, while a change (the render finishing) is still seen at once.
Against the emulator over loopback, with fast polls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import client_of, eventually

import adcreative_async._models as models
from adcreative_async import AdCreativeClient, RenderJob
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "6a0c1c52-3f0e-4bd4-9a4c-0c3f8f27a1d2"
PNG = sample_image("png", (8, 8))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=11) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with client_of(emulator, USER) as c:
        yield c


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts full progress decodes (every decoded progress object settles its tasks map once)."""
    counter = [0]
    settle = models.settle_task_states

    def counting(tasks: dict[str, Any]) -> None:
        counter[0] += 1
        settle(tasks)

    monkeypatch.setattr(models, "settle_task_states", counting)
    return counter


async def _submit(client: AdCreativeClient, count: int) -> list[RenderJob]:
    return [await client.background_remover.remove(PNG) for _ in range(count)]


async def test_an_awaited_process_unchanged_between_polls_is_decoded_once(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = await _submit(client, 30)  # one listing per poll (more awaited than are asked for by id)
    awaited = jobs[:6]
    decodes = _count_decodes(monkeypatch)
    scheduler = client._poll_scheduler()
    async with anyio.create_task_group() as group:
        for job in awaited:
            group.start_soon(job.result)
        await eventually(lambda: scheduler.requests >= 6)
        # six polls or more of six renders in progress: each element decoded when first seen only
        assert decodes[0] <= len(awaited)
        for job in awaited:
            emulator.finish_process(job.process_id)
    # the change is seen: every wait ends with its process complete
    assert all(job.is_complete for job in awaited)
