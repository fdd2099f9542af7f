"""A listing paced by what it costs (``_poll_state._listing_floor``) is read again at most every floor
seconds counted from when it was *sent*, not from when its answer was read: the pace bounds listed
processes read a second, and a listing that takes long to come (a large one, a slow server) has spent
that time of its interval already. Counted from the answer, a listing of 100,000 processes answered in
1.2 s was read every 3.6 s where its pace allowed 2.4 s (``python -m benchmarks.scale``, a ledger run).

Against the emulator over loopback, its listings answered slowly on purpose; the scheduler's own
record of the pace is read, nothing is timed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import FAST_POLLS, eventually

from adcreative_async import AdCreativeClient
from adcreative_async.testing import Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USER = "0b7e4c1a-59d2-4e38-a1f6-7c3d2e9b8a15"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
PNG = sample_image("png", (8, 8))
JOBS = 40
CAP = 0.5  # the policy's max_interval: the pace of these listings (see below)
SLOW = 0.3  # each listing's answer waits this long at the server
POLICY = dataclasses.replace(FAST_POLLS, max_interval=CAP)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    slow = Faults(slow=1.0, slow_seconds=SLOW)
    async with Emulator(auto_complete=False, seed=5, faults={BG_PROGRESS: slow}) as emu:
        yield emu


async def test_a_paced_listing_is_due_its_pace_after_it_was_sent(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 listed processes, all awaited, each allowed 0.01 listed process a second, any reading rate
    # taken as costly: the pace is 100 s, capped at the policy's CAP.
    monkeypatch.setattr("adcreative_async._poll_state.LISTED_PER_AWAITED", 0.01, raising=False)
    monkeypatch.setattr("adcreative_async._poll_state.LISTING_READS_FREE", 0.0, raising=False)
    credentials = emulator.credentials
    async with AdCreativeClient(**credentials, user_id=USER, trust_env=False, poll_policy=POLICY) as client:
        jobs = [await client.background_remover.remove(PNG) for _ in range(JOBS)]
        scheduler = client._poll_scheduler()
        async with anyio.create_task_group() as group:
            for job in jobs:
                group.start_soon(job.result)
            await eventually(lambda: scheduler.requests >= 1 and _paced(scheduler))
            (poller,) = [p for p in scheduler._pollers.values() if p.floor_due]
            # the listing was sent at last_poll_at, answered at least SLOW later
            sent = poller.last_poll_at
            assert sent is not None
            assert poller.floor_due - sent == pytest.approx(CAP)
            group.cancel_scope.cancel()


def _paced(scheduler: object) -> bool:
    pollers = getattr(scheduler, "_pollers", {})
    return any(p.floor_due and p.last_poll_at is not None for p in pollers.values())
