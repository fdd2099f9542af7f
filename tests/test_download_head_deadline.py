"""A download's answer must arrive by the call's total deadline (its body is bounded by ``read`` only):
the headers' deadline raises the typed total timeout, and a cancellation from the caller's own scope
while the headers are awaited stays a cancellation (issue 23 moved this deadline from anyio's
``fail_after`` to asyncio's own timeout on Python 3.11+: these pin what it must keep).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from helpers import FAST_POLLS, PNG

from adcreative_async import AdCreativeClient, APITimeoutError, RetryPolicy, Timeout
from adcreative_async.testing import Emulator, Faults

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
DOWNLOAD = "Image/BackgroundRemoving/Download"
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture
async def slow_downloads() -> AsyncIterator[Emulator]:
    """An emulator whose downloads answer only after 0.6 s."""
    async with Emulator(
        seed=3, task_duration=0.01, faults={DOWNLOAD: Faults(slow=1.0, slow_seconds=0.6)}
    ) as emulator:
        yield emulator


async def finished_task(client: AdCreativeClient) -> tuple[str, str]:
    job = await client.background_remover.remove(PNG)
    await job.result(timeout=30)
    return job.process_id, job.task_ids[0]


async def test_a_downloads_answer_later_than_the_total_deadline_is_a_typed_total_timeout(
    slow_downloads: Emulator, tmp_path: Path
) -> None:
    quick = Timeout(connect=5, read=30, total=0.15)  # the read timeout alone would wait 30 s
    async with AdCreativeClient(
        **slow_downloads.credentials, user_id=USER, poll_policy=FAST_POLLS, retry=NO_RETRY, trust_env=False
    ) as client:
        process_id, task_id = await finished_task(client)
        with pytest.raises(APITimeoutError) as raised:
            await client.background_remover.download(process_id, task_id, str(tmp_path), timeout=quick)
    assert (raised.value.limit, raised.value.seconds) == ("total", 0.15)
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing left behind


async def test_a_callers_cancellation_while_the_answer_is_awaited_stays_a_cancellation(
    slow_downloads: Emulator, tmp_path: Path
) -> None:
    async with AdCreativeClient(
        **slow_downloads.credentials, user_id=USER, poll_policy=FAST_POLLS, retry=NO_RETRY, trust_env=False
    ) as client:
        process_id, task_id = await finished_task(client)
        with anyio.move_on_after(0.1) as scope:  # sooner than the call's own deadline (30 s)
            await client.background_remover.download(process_id, task_id, str(tmp_path))
        assert scope.cancelled_caught  # not an APITimeoutError: the caller's scope ended it
        # the client is unharmed: the same download, waited for, completes
        path = await client.background_remover.download(process_id, task_id, str(tmp_path))
    assert path.read_bytes() == slow_downloads.result_bytes(task_id)
