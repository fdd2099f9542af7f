"""Every request the SDK sends is its own: no attempt goes unseen.

aiohttp re-sends an idempotent request whose connection failed, by itself: that attempt made no span,
no log record and escaped the SDK's retry policy. The SDK turns it off; these tests reset connections
at the emulator and count what the emulator received against the spans, the retry counter and the
policy's attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from otel_capture import Capture

from adcreative_async import AdCreativeClient, APIConnectionError, RetryPolicy, Telemetry
from adcreative_async.testing import Emulator, Faults

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
CALLS = 30
RETRY = RetryPolicy(max_attempts=6, initial_backoff=0.001, max_backoff=0.002, jitter=None)


@pytest.fixture
def otel() -> Iterator[Capture]:
    capture = Capture.start()
    yield capture
    capture.stop()


def _client(emu: Emulator, telemetry: Telemetry, retry: RetryPolicy) -> AdCreativeClient:
    return AdCreativeClient(**emu.credentials, user_id=USER, telemetry=telemetry, retry=retry)


def _attempts(otel: Capture) -> list[ReadableSpan]:
    return otel.named(f"GET /api/v1/{PROGRESS}")


async def test_spans_equal_the_requests_the_emulator_saw_under_connection_resets(
    otel: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    failed = 0
    async with Emulator(seed=22, faults={PROGRESS: Faults(reset=0.4)}) as emu:
        async with _client(emu, otel.telemetry, RETRY) as client:
            with caplog.at_level(logging.INFO, logger="adcreative_async.http"):
                for _ in range(CALLS):
                    try:
                        await client.background_remover.user_progress()
                    except APIConnectionError:
                        failed += 1  # every attempt reset: the policy's 6 attempts, no more
            retried = client._transport.retries
        received = emu.request_count(PROGRESS, "GET")
        resets = emu.injected_faults["reset"]

    attempts = _attempts(otel)
    assert resets >= 10  # the connection was reset often enough to matter
    assert received == len(attempts)  # no attempt the emulator saw is missing from the trace
    assert received == CALLS + retried  # ... nor from the retry policy's count
    assert otel.total("adcreative.client.retries") == retried
    resent = [s for s in attempts if (s.attributes or {}).get("http.request.resend_count")]
    assert len(resent) == retried
    assert received <= CALLS * RETRY.max_attempts
    logged = [r for r in caplog.records if "retry" in r.getMessage() and PROGRESS in r.getMessage()]
    assert len(logged) == retried  # every re-send is logged
    assert received == resets + (CALLS - failed)  # each answered call: one good attempt, the rest reset


async def test_a_reset_connection_is_sent_again_only_as_the_retry_policy_says(
    otel: Capture,
) -> None:
    async with Emulator(seed=3, faults={PROGRESS: Faults(reset=1.0)}) as emu:
        once = RetryPolicy(max_attempts=1)
        async with _client(emu, otel.telemetry, once) as client:
            with pytest.raises(APIConnectionError):
                await client.background_remover.user_progress()
        assert emu.request_count(PROGRESS, "GET") == 1  # retries off: sent once, not twice
    [attempt] = _attempts(otel)
    assert (attempt.attributes or {}).get("error.type") == "APIConnectionError"
