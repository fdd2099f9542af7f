"""Timeouts that fit hosts: a call ends by its total deadline (retries included) with a typed error, and
that deadline never cuts a download's body or a large upload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import FAST_POLLS, PNG

from adcreative_async import AdCreativeClient, APITimeoutError, RetryPolicy, Timeout
from adcreative_async._config import MIN_UPLOAD_RATE
from adcreative_async._deadlines import call_deadline, upload_allowance
from adcreative_async.testing import Emulator, Faults

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.002, jitter=None)


@pytest.fixture
async def silent() -> AsyncIterator[Emulator]:
    """An emulator whose progress listing answers only after 0.6 s."""
    async with Emulator(seed=1, faults={PROGRESS: Faults(slow=1.0, slow_seconds=0.6)}) as emulator:
        yield emulator


async def test_a_silent_api_ends_the_call_at_its_total_timeout_with_a_typed_error(silent: Emulator) -> None:
    quick = Timeout(connect=5, read=30, total=0.15)  # the read timeout alone would wait 30 s
    async with AdCreativeClient(**silent.credentials, user_id=USER, timeout=quick, retry=RETRY) as client:
        with pytest.raises(APITimeoutError) as raised:
            await client.background_remover.user_progress()
        sent = silent.request_count(PROGRESS, "GET")
    error = raised.value
    assert error.limit == "total"
    assert error.seconds == 0.15
    assert "total timeout (0.15 s, retries included)" in str(error)
    assert "timeout=" in str(error)  # says what to do
    assert sent == 1  # no retry starts that could not end by the deadline


async def test_a_per_call_timeout_is_the_calls_deadline(silent: Emulator) -> None:
    async with AdCreativeClient(**silent.credentials, user_id=USER, retry=RETRY) as client:
        with pytest.raises(APITimeoutError) as raised:
            await client.background_remover.user_progress(timeout=0.1)
    assert (raised.value.limit, raised.value.seconds) == ("total", 0.1)


async def test_the_total_timeout_bounds_a_downloads_answer_not_its_body() -> None:
    quick = Timeout(connect=5, read=30, total=0.1)
    async with (
        Emulator(task_duration=0.01, download_size=1024 * 1024, seed=2) as emu,
        AdCreativeClient(
            **emu.credentials, user_id=USER, timeout=quick, poll_policy=FAST_POLLS, retry=RETRY
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        task = job.task_ids[0]
        stream = await job.open_download(task)
        received = 0
        try:
            async for chunk in stream.iter_bytes(64 * 1024):
                received += len(chunk)
                await anyio.sleep(0.02)  # a slow consumer: the body takes longer than the total
        finally:
            await stream.aclose()
        assert received == len(emu.result_bytes(task))


def test_a_start_calls_deadline_grows_with_its_upload() -> None:
    assert upload_allowance([8 * MIN_UPLOAD_RATE], None) == 8
    assert upload_allowance([MIN_UPLOAD_RATE, None], 2 * MIN_UPLOAD_RATE) == 3  # unknown: the maximum
    assert upload_allowance([None], None) is None  # no size, no limit: no deadline
    limits = Timeout(total=30)
    deadline, plain = call_deadline(
        limits, 100.0, per_call=False, upload_sizes=[4 * MIN_UPLOAD_RATE], max_upload_size=None
    )
    assert (deadline, plain) == (134.0, False)
    deadline, _ = call_deadline(
        limits, 100.0, per_call=True, upload_sizes=[4 * MIN_UPLOAD_RATE], max_upload_size=None
    )
    assert deadline == 130.0  # a per-call timeout is the caller's own: nothing added
