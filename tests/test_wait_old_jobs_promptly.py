"""Waiting on a job submitted a while ago polls at once: its start answer is old news, so the first poll is
due one ``initial_interval`` after the job's last snapshot (its submission), not one interval after the
wait begins. Awaiting finished jobs one after another (``for job in jobs: await job.result()``) used to
take one interval each: 10 jobs finished long before, 8.8 s and 10 polls.

The client runs on a manual clock that the test never moves while it waits: a poll due later than now
never comes, so a wait that is not served at once does not end (the real-time bound fails it).
"""

from __future__ import annotations

import anyio
import pytest
from helpers import eventually

from adcreative_async import AdCreativeClient, ManualClock
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "3d9a7f2e-6b1c-4e85-9f0a-1c2b3d4e5f60"
JOBS = 5


async def test_finished_jobs_submitted_long_ago_are_awaited_without_waiting_an_interval_each() -> None:
    clock = ManualClock()
    async with (
        Emulator(task_duration=0.01) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False, clock=clock) as client,
    ):
        jobs = [await client.background_remover.remove(sample_image("png", (8, 8 + i))) for i in range(JOBS)]
        await eventually(lambda: _all_finished(emulator))
        await clock.advance(10 * client.poll_policy.initial_interval)  # the jobs' answers are old now
        with anyio.fail_after(30):  # real time: the client's own clock stands still
            for job in jobs:
                progress = await job.result()
                assert progress.progress == 100
        assert client._poll_scheduler().requests <= JOBS  # one poll per job at most


async def test_a_job_just_submitted_is_first_polled_one_interval_after_its_answer() -> None:
    # what stays as it was: a fresh start answer is news enough for one interval
    clock = ManualClock()
    async with (
        Emulator(task_duration=0.01) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False, clock=clock) as client,
    ):
        job = await client.background_remover.remove(sample_image("png", (8, 8)))
        await eventually(lambda: _all_finished(emulator))
        async with anyio.create_task_group() as group:
            group.start_soon(job.result)
            await anyio.sleep(0.05)  # real time: no poll is due on the manual clock yet
            assert client._poll_scheduler().requests == 0
            await clock.advance(client.poll_policy.initial_interval)
            await eventually(lambda: job.is_complete)
        assert client._poll_scheduler().requests == 1


def _all_finished(emulator: Emulator) -> bool:
    """Whether the emulator's renders have all ended (its processes move on when looked at)."""
    state = emulator._state
    now = state.clock.now()
    for process in state.processes.values():
        process.refresh(now)
    return all(process.finished for process in state.processes.values())
