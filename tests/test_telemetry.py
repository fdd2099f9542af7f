"""OpenTelemetry: spans and metrics of a client, read back from the SDK's in-memory exporter and metric
reader, against the emulator; and nothing at all (not even an import) when telemetry is off."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import FAST_POLLS, creative_inputs
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from adcreative_async import (
    AdCreativeClient,
    BadRequestError,
    ConfigurationError,
    RenderFailedError,
    RenderMayExistError,
    RetryPolicy,
    Telemetry,
)
from adcreative_async.testing import Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (16, 16))
START = "Image/BackgroundRemoving/AdCreative"
PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
DOWNLOAD = "Image/BackgroundRemoving/Download"
QUICK_RETRIES = RetryPolicy(
    initial_backoff=0.001, max_backoff=0.002, jitter=None, reconcile_grace=0.2, reconcile_interval=0.01
)


@dataclass
class Otel:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric ``name`` (one per attribute set)."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str, attributes: dict[str, object]) -> float:
        """The sum of a counter's points (or a histogram's counts) whose attributes include these."""
        found = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                value: float = point.value if hasattr(point, "value") else point.count  # counter, histogram
                found += value
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    yield Otel(Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider), spans, metrics)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(task_duration=0.01, seed=5) as emulator:
        yield emulator


def _client(emu: Emulator, otel: Otel, **kwargs: Any) -> AdCreativeClient:
    kwargs.setdefault("poll_policy", FAST_POLLS)
    kwargs.setdefault("retry", QUICK_RETRIES)
    return AdCreativeClient(**emu.credentials, user_id=USER, telemetry=otel.telemetry, **kwargs)


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _route_spans(otel: Otel, method: str, route: str) -> list[ReadableSpan]:
    return otel.named(f"{method} /api/v1/{route}")


async def test_a_render_is_one_job_span_over_its_requests_then_a_download_span(
    emu: Emulator, otel: Otel, tmp_path: Path
) -> None:
    async with _client(emu, otel) as client:
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        [task] = job.task_ids
        await job.download(task, tmp_path)
        polls = client.scheduler_stats["requests"]

    [render] = otel.named("render background_remover")
    assert render.kind is SpanKind.INTERNAL
    attributes = _attributes(render)
    assert attributes.pop("adcreative.detection_delay") >= 0  # how late the poll saw it, at most
    assert attributes == {
        "adcreative.feature": "background_remover",
        "adcreative.operation": "render",
        "adcreative.process_id": job.process_id,
        "adcreative.task_count": 1,
        "adcreative.outcome": "succeeded",
        "adcreative.completion": "poll",
    }
    assert render.status.status_code is StatusCode.UNSET

    [start] = _route_spans(otel, "POST", START)
    assert start.parent is not None
    assert start.parent.span_id == render.context.span_id  # the start call runs inside the job's span
    attributes = _attributes(start)
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.template"] == f"/api/v1/{START}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["http.request.body.size"] > len(PNG)
    assert "http.request.resend_count" not in attributes

    listings = _route_spans(otel, "GET", PROGRESS)
    baseline = [s for s in listings if s.parent is not None and s.parent.span_id == render.context.span_id]
    assert len(baseline) == 1  # the listing before a first start call belongs to the job
    scheduler_polls = [s for s in listings if s.parent is None]  # polls serve every waiter: roots
    assert len(scheduler_polls) == polls >= 1

    [download] = otel.named("download background_remover")
    assert _attributes(download) == {
        "adcreative.feature": "background_remover",
        "adcreative.process_id": job.process_id,
        "adcreative.task_id": task,
    }
    [get] = _route_spans(otel, "GET", DOWNLOAD)
    assert get.parent is not None
    assert get.parent.span_id == download.context.span_id
    assert _attributes(get)["http.response.body.size"] == (tmp_path / f"{task}.png").stat().st_size


async def test_spans_carry_no_secret_and_no_user_or_application_id(
    emu: Emulator, otel: Otel, tmp_path: Path
) -> None:
    async with _client(emu, otel) as client:
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        await job.download_all(tmp_path)
    recorded = json.dumps([json.loads(span.to_json()) for span in otel.finished()])
    for secret in (emu.api_key, emu.api_secret, emu.jwt_private_key, "Bearer", USER, emu.application_id):
        assert secret not in recorded
    [get] = _route_spans(otel, "GET", DOWNLOAD)
    url = _attributes(get)["url.full"]
    assert url.startswith(f"{emu.base_url}/api/v1/{DOWNLOAD}?")
    assert "applicationId=REDACTED" in url
    assert "taskId=REDACTED" in url
    assert "lowResolution=false" in url  # not an id: kept


async def test_every_attempt_is_a_span_and_retries_are_counted(emu: Emulator, otel: Otel) -> None:
    async with _client(emu, otel) as client:
        emu.fail_next(PROGRESS, 503, count=2)
        await client.background_remover.user_progress()
    attempts = sorted(_route_spans(otel, "GET", PROGRESS), key=lambda s: s.start_time or 0)
    assert [_attributes(s).get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [_attributes(s)["http.response.status_code"] for s in attempts] == [503, 503, 404]
    # the last is the documented "nothing found" of a new user: an answer (an empty list), not an error
    assert [_attributes(s).get("error.type") for s in attempts] == ["503", "503", None]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert otel.total("adcreative.client.retries", {"error.type": "503"}) == 2
    assert otel.total("http.client.request.duration", {"http.response.status_code": 503}) == 2


async def test_metrics_count_requests_polls_jobs_and_bytes(emu: Emulator, otel: Otel, tmp_path: Path) -> None:
    async with _client(emu, otel) as client:
        jobs = [await client.background_remover.remove(PNG) for _ in range(3)]
        async with anyio.create_task_group() as tg:  # all awaited at once: each finish is detected by a poll
            for job in jobs:
                tg.start_soon(functools.partial(job.result, timeout=30))
        files = [await job.download(job.task_ids[0], tmp_path) for job in jobs]
        polls = client.scheduler_stats["requests"]
    assert otel.total("http.client.request.duration", {"url.template": f"/api/v1/{START}"}) == 3
    assert otel.total("http.client.request.duration", {"url.template": f"/api/v1/{DOWNLOAD}"}) == 3
    assert otel.total("adcreative.client.polls", {"adcreative.feature": "background_remover"}) == polls
    assert otel.total("adcreative.job.duration", {"adcreative.outcome": "succeeded"}) == 3
    assert otel.total("adcreative.job.detection_latency", {"adcreative.feature": "background_remover"}) == 3
    received = sum(
        p.sum
        for p in otel.points("http.client.response.body.size")
        if p.attributes["url.template"] == f"/api/v1/{DOWNLOAD}"
    )
    assert received == sum(f.stat().st_size for f in files)
    sent = [
        p
        for p in otel.points("http.client.request.body.size")
        if p.attributes["url.template"].endswith(START)
    ]
    assert sent[0].count == 3
    assert sent[0].sum > 3 * len(PNG)


async def test_a_failed_render_ends_its_span_in_error(otel: Otel) -> None:
    async with (
        Emulator(task_duration=0.01, task_failure_rate=1.0, seed=2) as emu,
        _client(emu, otel) as client,
    ):
        job = await client.background_remover.remove(PNG)
        with pytest.raises(RenderFailedError):
            await job.result(timeout=30)
    [render] = otel.named("render background_remover")
    assert render.status.status_code is StatusCode.ERROR
    assert _attributes(render)["adcreative.outcome"] == "failed"
    assert otel.total("adcreative.job.duration", {"adcreative.outcome": "failed"}) == 1


async def test_a_refused_start_call_ends_the_job_span_with_its_error(emu: Emulator, otel: Otel) -> None:
    async with _client(emu, otel) as client:
        emu.fail_next(START, 400)
        with pytest.raises(BadRequestError):
            await client.background_remover.remove(PNG)
    [render] = otel.named("render background_remover")
    assert render.status.status_code is StatusCode.ERROR
    assert _attributes(render)["error.type"] == "400"


async def test_reconciliations_are_counted_by_outcome(otel: Otel) -> None:
    lost = {START: Faults(lost_response=1.0)}
    async with Emulator(task_duration=0.01, seed=9, faults=lost) as emu:
        async with _client(emu, otel, exclusive_user_ids=True) as client:  # the only writer: may adopt
            job = await client.background_remover.remove(PNG)  # served, answer lost: adopted
            assert job.process_id
        async with _client(emu, otel) as client:  # not declared the only writer: named, not adopted
            with pytest.raises(RenderMayExistError) as named:
                await client.background_remover.remove(PNG)
            assert len(named.value.candidates) == 1
    async with Emulator(task_duration=0.01, seed=9) as emu, _client(emu, otel) as client:
        emu.fail_next(START, 502)  # a gateway's 502: ambiguous; nothing appears
        with pytest.raises(RenderMayExistError):
            await client.background_remover.remove(PNG)
    assert otel.total("adcreative.client.reconciliations", {"adcreative.outcome": "adopted"}) == 1
    assert otel.total("adcreative.client.reconciliations", {"adcreative.outcome": "no_candidate"}) == 1
    assert otel.total("adcreative.client.reconciliations", {"adcreative.outcome": "candidates"}) == 1


async def test_a_stream_download_is_a_span_until_it_is_closed(emu: Emulator, otel: Otel) -> None:
    async with _client(emu, otel) as client:
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        stream = await job.open_download(job.task_ids[0])
        assert otel.named("download background_remover") == []
        body = b"".join([chunk async for chunk in stream.iter_bytes()])
        await stream.aclose()
    [download] = otel.named("download background_remover")
    assert _attributes(download)["adcreative.download.bytes"] == len(body)
    [get] = _route_spans(otel, "GET", DOWNLOAD)
    assert get.parent is not None
    assert get.parent.span_id == download.context.span_id


async def test_traces_and_metrics_can_be_switched_separately(emu: Emulator, otel: Otel) -> None:
    only_metrics = Telemetry(
        tracer_provider=otel.telemetry.tracer_provider,
        meter_provider=otel.telemetry.meter_provider,
        traces=False,
    )
    async with AdCreativeClient(**emu.credentials, user_id=USER, telemetry=only_metrics) as client:
        await client.background_remover.user_progress()
    assert otel.finished() == []
    assert otel.total("http.client.request.duration", {"url.template": f"/api/v1/{PROGRESS}"}) == 1


def test_telemetry_needs_the_api_package_and_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed

    def client(telemetry: Any) -> AdCreativeClient:
        return AdCreativeClient(
            application_id="8f2c95a1-97dc-4707-8d93-5ceb2932ef03",
            api_key="k",
            api_secret="s",
            jwt_private_key="p",
            telemetry=telemetry,
        )

    with pytest.raises(ConfigurationError, match=r"pip install opentelemetry-api"):
        client(True)
    client(None)  # off: fine without it
    with pytest.raises(ConfigurationError, match="telemetry must be"):
        client("yes")


def test_with_telemetry_off_no_opentelemetry_module_is_imported() -> None:
    code = f"""
import sys, anyio
from adcreative_async import AdCreativeClient
from adcreative_async.testing import Emulator, sample_image

async def main():
    async with Emulator(task_duration=0.01) as emu:
        async with AdCreativeClient(**emu.credentials, user_id={USER!r}) as client:
            job = await client.background_remover.remove(sample_image("png", (8, 8)))
            await job.result(timeout=30)

anyio.run(main)
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_an_edit_is_its_own_job_span(emu: Emulator, otel: Otel) -> None:
    async with _client(emu, otel) as client:
        job = await client.creatives.generate(**creative_inputs())
        await job.result(timeout=30)
        edited = await client.creatives.edit(job.task_ids[:1], main_headline="Now 20% off")
        await edited.result(timeout=30)
    [render] = otel.named("render creatives")
    [edit] = otel.named("edit creatives")
    assert _attributes(edit)["adcreative.process_id"] == _attributes(render)["adcreative.process_id"]
    assert _attributes(edit)["adcreative.outcome"] == "succeeded"
    assert otel.total("adcreative.job.duration", {"adcreative.operation": "edit"}) == 1
