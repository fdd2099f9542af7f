"""Telemetry of a render's life: push deliveries as events on the render's span (and counted), how the
render was seen finished (push or poll) and how late, "nothing found" listings that are not errors, and
DEBUG log records that carry the process and task ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_POLLS, PNG
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from otel_capture import Capture

from adcreative_async import AdCreativeClient, NotFoundError, RetryPolicy
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
QUICK_RETRIES = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=None)


@pytest.fixture
def otel() -> Iterator[Capture]:
    capture = Capture.start()
    yield capture
    capture.stop()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(task_duration=0.01, seed=5) as emulator:
        yield emulator


def _client(emu: Emulator, otel: Capture, **kwargs: Any) -> AdCreativeClient:
    kwargs.setdefault("poll_policy", FAST_POLLS)
    kwargs.setdefault("retry", QUICK_RETRIES)
    return AdCreativeClient(**emu.credentials, user_id=USER, telemetry=otel.telemetry, **kwargs)


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize(
    ("feature", "route", "status"),
    [
        ("background_remover", "Image/BackgroundRemoving/CheckUserProgress", 404),
        ("creatives", "Image/Generation/CheckUserProgress", 400),
        ("background_remover", "Image/BackgroundRemoving/CheckApplicationAllProgresses", 404),
        ("creatives", "Image/Generation/CheckApplicationAllProgresses", 400),
    ],
)
async def test_a_nothing_found_listing_is_an_answer_not_an_error_span(
    emu: Emulator, otel: Capture, feature: str, route: str, status: int
) -> None:
    async with _client(emu, otel) as client:
        resource = client.resource(feature)
        if "Application" in route:
            assert await resource.application_progress() == []
        else:
            assert await resource.user_progress() == []
    [span] = otel.named(f"GET /api/v1/{route}")
    assert _attributes(span)["http.response.status_code"] == status  # the answer as it came
    assert "error.type" not in _attributes(span)
    assert span.status.status_code is StatusCode.UNSET
    assert otel.total("http.client.request.duration", **{"http.response.status_code": status}) == 1
    assert otel.total("http.client.request.duration", **{"error.type": str(status)}) == 0


async def test_a_404_that_is_not_nothing_found_is_still_an_error_span(
    emu: Emulator, otel: Capture, tmp_path: Path
) -> None:
    async with _client(emu, otel) as client:
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        with pytest.raises(NotFoundError):
            await client.background_remover.process_progress("0b8e3a5c-1d2f-4a6b-9c7d-8e9f0a1b2c3d")
        emu.fail_next("Image/BackgroundRemoving/Download", 404)
        with pytest.raises(NotFoundError):
            await job.download(job.task_ids[0], tmp_path)
    [download] = otel.named("GET /api/v1/Image/BackgroundRemoving/Download")
    assert _attributes(download)["error.type"] == "404"
    assert download.status.status_code is StatusCode.ERROR
