"""Telemetry of a render's life: push deliveries as events on the render's span (and counted), how the
render was seen finished (push or poll) and how late, "nothing found" listings that are not errors, and
DEBUG log records that carry the process and task ids."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_POLLS, PNG, eventually, webhook_receiver
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from otel_capture import Capture

from adcreative_async import AdCreativeClient, NotFoundError, PollPolicy, RetryPolicy
from adcreative_async._telemetry import DELIVERY_EVENT
from adcreative_async.notifications import NotificationHub
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
QUICK_RETRIES = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=None)
TOKEN = "telemetry-push-token-0123456789abcdef"
AMQP_URL = os.environ.get("ADCREATIVE_TEST_AMQP_URL")
#: Polling that would take far longer than any test: a wait that resolves came from push.
NO_POLLING = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)


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


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, NotificationHub]]:
    """A webhook receiver on loopback (aiohttp), feeding a hub: its URL and the hub."""
    async with webhook_receiver(TOKEN) as (url, hub):
        yield url, hub


def _final_progress_delivered(emu: Emulator, process_id: str) -> bool:
    """Whether the progress message after a process's last task-completed one was delivered."""
    kinds = [d.message_type for d in emu.deliveries if d.process_id == process_id and d.status == 200]
    return "ImageBackgroundRemovingTaskCompleted" in kinds and kinds[-1].endswith("Progress")


async def test_push_deliveries_are_events_on_their_renders_span_and_counted(
    otel: Capture, webhook: tuple[str, NotificationHub]
) -> None:
    url, hub = webhook
    async with (
        Emulator(task_duration=(0.05, 0.2), notification_channel=False, seed=8) as emu,
        _client(emu, otel, push=hub, poll_policy=NO_POLLING) as client,
    ):
        emu.add_notification_channel("webhook", url)
        jobs = [await client.background_remover.remove(PNG) for _ in range(3)]
        done = [job async for job in client.as_completed(jobs, timeout=20)]
        assert len(done) == 3
        assert client.scheduler_stats["requests"] == 0  # every completion came by push
        await eventually(lambda: all(_final_progress_delivered(emu, job.process_id) for job in jobs))
    delivered = [d for d in emu.deliveries if d.status == 200]

    renders = {_attributes(s)["adcreative.process_id"]: s for s in otel.named("render background_remover")}
    assert set(renders) == {job.process_id for job in jobs}
    for job in jobs:
        span = renders[job.process_id]
        events = [e for e in span.events if e.name == DELIVERY_EVENT]
        mine = [d for d in delivered if d.process_id.lower() == job.process_id.lower()]
        # every delivery of this process up to the one that finished it (a later one finds the span ended)
        kinds = [str((e.attributes or {})["adcreative.message_type"]) for e in events]
        assert kinds[-1] == "ImageBackgroundRemovingTaskCompleted"
        assert kinds == [d.message_type for d in mine][: len(kinds)]
        tasks = {str(e.attributes.get("adcreative.task_id")).lower() for e in events if e.attributes}
        assert tasks - {"none"} == {t.lower() for t in job.task_ids}
        assert all((e.attributes or {})["adcreative.push.source"] == "webhook" for e in events)
        attributes = _attributes(span)
        assert attributes["adcreative.completion"] == "push"
        assert attributes["adcreative.detection_delay"] >= 0
    assert otel.total("adcreative.push.deliveries", **{"adcreative.push.source": "webhook"}) == len(delivered)
    assert otel.total("adcreative.job.duration", **{"adcreative.completion": "push"}) == 3


async def test_a_render_seen_finished_by_a_poll_says_so_and_how_late_at_most(
    emu: Emulator, otel: Capture
) -> None:
    async with _client(emu, otel) as client:
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
    [span] = otel.named("render background_remover")
    attributes = _attributes(span)
    assert attributes["adcreative.completion"] == "poll"
    assert attributes["adcreative.detection_delay"] >= 0
    assert [e for e in span.events if e.name == DELIVERY_EVENT] == []
    assert otel.total("adcreative.job.duration", **{"adcreative.completion": "poll"}) == 1


async def test_debug_records_carry_the_process_and_task_ids_to_follow_one_render(
    otel: Capture, webhook: tuple[str, NotificationHub], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, hub = webhook
    caplog.set_level(logging.DEBUG, logger="adcreative_async")
    async with (
        Emulator(task_duration=(0.05, 0.1), notification_channel=False, seed=4) as emu,
        _client(emu, otel, push=hub, poll_policy=NO_POLLING) as client,
    ):
        emu.add_notification_channel("webhook", url)
        jobs = [await client.background_remover.remove(PNG) for _ in range(2)]
        async for job in client.as_completed(jobs, timeout=20):
            await job.download_all(tmp_path)
    for job in jobs:
        [task] = job.task_ids
        mine = [r for r in caplog.records if getattr(r, "process_id", None) == job.process_id]
        loggers = {r.name for r in mine}
        # its start call's answer, the push messages, the task's changes, its download request
        assert {
            "adcreative_async.resources",
            "adcreative_async.notifications",
            "adcreative_async.jobs",
        } <= loggers
        assert "adcreative_async.http" in loggers
        about_task = [r for r in mine if getattr(r, "task_id", None) == task]
        assert {r.name for r in about_task} >= {"adcreative_async.jobs", "adcreative_async.http"}
        assert all(r.levelno == logging.DEBUG for r in mine)
        others = {j.process_id for j in jobs} - {job.process_id}
        assert not any(other in r.getMessage() for r in mine for other in others)  # the right render's
    standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
    structured = {str(v) for r in caplog.records for k, v in vars(r).items() if k not in standard}
    assert USER not in structured  # no account identifier as a structured field
    assert emu.application_id not in structured


@pytest.mark.rabbitmq
@pytest.mark.skipif(
    not AMQP_URL, reason="needs a RabbitMQ broker: set ADCREATIVE_TEST_AMQP_URL (.ci/run starts one)"
)
async def test_rabbitmq_deliveries_are_events_on_their_renders_span(otel: Capture) -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQSource

    assert AMQP_URL is not None
    hub = NotificationHub()
    async with (
        RabbitMQSource(hub, AMQP_URL, mode="broadcast"),
        Emulator(task_duration=(0.05, 0.2), notification_channel=False, seed=6) as emu,
        _client(emu, otel, push=hub, poll_policy=NO_POLLING) as client,
    ):
        emu.add_notification_channel("rabbitmq", AMQP_URL)
        jobs = [await client.background_remover.remove(PNG) for _ in range(2)]
        assert len([job async for job in client.as_completed(jobs, timeout=20)]) == 2
    for span in otel.named("render background_remover"):
        events = [e for e in span.events if e.name == DELIVERY_EVENT]
        assert events
        assert {(e.attributes or {})["adcreative.push.source"] for e in events} == {"rabbitmq"}
        assert _attributes(span)["adcreative.completion"] == "push"
    assert otel.total("adcreative.push.deliveries", **{"adcreative.push.source": "rabbitmq"}) >= 2
