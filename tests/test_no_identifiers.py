"""Nothing that identifies the account leaves the SDK (issue 22): one run with a test account whose every
identifier and secret is a distinctive marker — the async client (push by webhook through the ASGI
receiver under a real uvicorn, OpenTelemetry on), the sync client, strong mode's derived user ids, the
CLI's bulk run to a folder, and the errors (404, a 502 start call reconciled, no notification channel) —
with every log record at DEBUG (tracebacks and extras included), every span (name, attributes, events,
status), every metric point's attributes, every file written in the output folders, the CLI's output
and the errors' texts captured; none of the markers may appear in any of them.

The run ledger (``.adcreative-run.sqlite``) is the one file that keeps user ids on purpose: it is a state
store like a credentials file (what recovering a render needs), created owner-only, and checked for that
instead of scanned.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import stat
import traceback
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from aiohttp import ClientSession
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adcreative_async import (
    AdCreativeClient,
    NoActiveNotificationChannelError,
    NotFoundError,
    PollPolicy,
    RenderMayExistError,
    RetryPolicy,
    SyncAdCreativeClient,
    Telemetry,
)
from adcreative_async.cli import main
from adcreative_async.notifications import NotificationHub, WebhookReceiver
from adcreative_async.notifications.redaction import TokenRedactingSpanProcessor
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

APPLICATION_ID = "0a99ca7e-5ec2-4e75-b00b-c0ffee00a111"
USER_ID = "0a99ca7e-5ec2-4e75-b00b-c0ffee00b222"
API_KEY = "apikey-MARKER-7f3e1d9a"
API_SECRET = "apisecret-MARKER-9c2b4a17"
JWT_PRIVATE_KEY = "jwtkey-MARKER-5d8e0f33"
WEBHOOK_TOKEN = "hooktoken-MARKER-1a2b3c4d5e6f"
UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"
PNG = sample_image("png", (16, 16))
START = "Image/BackgroundRemoving/AdCreative"
FAST_POLLS = PollPolicy(
    initial_interval=0.02, max_interval=0.05, min_interval=0.01, jitter=None, not_found_grace=0.2
)
QUICK = RetryPolicy(
    initial_backoff=0.001, max_backoff=0.002, jitter=None, reconcile_grace=0.2, reconcile_interval=0.02
)


class Capture(logging.Handler):
    """Every log record, formatted with its traceback, and its extra fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.records.append(f"{text} {record.__dict__!r}")


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def markers(extra_ids: set[str], tokens: list[str]) -> list[str]:
    """Each identifier as written, in upper case and without dashes; each secret as is."""
    found = {API_KEY, API_SECRET, JWT_PRIVATE_KEY, WEBHOOK_TOKEN, *tokens}
    for guid in {APPLICATION_ID, USER_ID, *extra_ids}:
        found |= {guid.lower(), guid.upper(), guid.replace("-", "").lower()}
    return sorted(found)


def span_text(span: ReadableSpan) -> str:
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return repr((span.name, dict(span.attributes or {}), events, span.status.description))


def metric_text(reader: InMemoryMetricReader) -> list[str]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        repr((metric.name, dict(point.attributes or {})))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]


async def test_a_whole_run_leaves_no_identifier_or_secret_of_the_account_anywhere(
    tmp_path: Path, captured_logs: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    # uvicorn's default logging set-up (another test's server) stops its access log at its own handler
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    from fastapi import FastAPI
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(TokenRedactingSpanProcessor(WEBHOOK_TOKEN))  # the documented set-up
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[metrics])
    )
    texts: list[str] = []  # error messages, CLI output, webhook answers: what a browser or a terminal shows
    out = tmp_path / "out"

    hub = NotificationHub()
    api = FastAPI()
    api.mount("/hooks", WebhookReceiver(hub, path_token=WEBHOOK_TOKEN).asgi)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            OpenTelemetryMiddleware(api, tracer_provider=tracer_provider), log_config=None, log_level="info"
        )
    )
    issued: list[str] = []
    emulator = Emulator(
        application_id=APPLICATION_ID,
        api_key=API_KEY,
        api_secret=API_SECRET,
        jwt_private_key=JWT_PRIVATE_KEY,
        task_duration=0.05,
    )
    state = emulator._state
    for name in ("generate_tokens", "refresh_tokens"):
        original = getattr(state, name)

        def recording(*args: Any, _original: Any = original) -> Any:
            grant = _original(*args)
            if grant is not None:
                issued.extend([grant.access_token, grant.refresh_token])
            return grant

        monkeypatch.setattr(state, name, recording)

    async with emulator, anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await anyio.sleep(0.01)
        try:
            emulator.add_notification_channel("webhook", f"http://127.0.0.1:{port}/hooks/{WEBHOOK_TOKEN}")
            credentials = emulator.credentials
            options: dict[str, Any] = dict(
                credentials, poll_policy=FAST_POLLS, retry=QUICK, telemetry=telemetry
            )

            # the async client: renders resolved by push, results downloaded
            async with AdCreativeClient(**options, user_id=USER_ID, push=hub) as client:
                jobs = [await client.background_remover.remove(PNG) for _ in range(3)]
                for job in jobs:
                    done = await job.result(timeout=20)
                    for task in done.succeeded_task_ids:
                        await job.download(task, out / "async" / f"{task}.png")
                assert client.scheduler_stats["pushes"] >= 1  # the webhook delivered

                # errors, as an app would log them and show them
                for failing in (
                    client.background_remover.process_progress(UNKNOWN),
                    client.background_remover.job(UNKNOWN).refresh(),
                ):
                    with pytest.raises(NotFoundError) as caught:
                        await failing
                    texts += [str(caught.value), repr(caught.value)]
                    logging.getLogger("app").exception("the job failed")
                emulator.fail_next(START, 502)
                with pytest.raises(RenderMayExistError) as ambiguous:
                    await client.background_remover.remove(PNG)
                texts += [str(ambiguous.value), repr(ambiguous.value)]
                logging.getLogger("app").error("start failed", exc_info=ambiguous.value)
                emulator.remove_notification_channels()
                with pytest.raises(NoActiveNotificationChannelError) as no_channel:
                    await client.background_remover.remove(PNG)
                texts += [str(no_channel.value), repr(no_channel.value)]
                emulator.add_notification_channel("webhook", f"http://127.0.0.1:{port}/hooks/{WEBHOOK_TOKEN}")

            # strong mode: a fresh user id per start call, the SDK's own
            async with AdCreativeClient(
                **options, user_id=USER_ID, unique_user_per_submission=True
            ) as strong:
                job = await strong.background_remover.remove(PNG)
                await job.result(timeout=20)

            # a forged delivery to a wrong path, and a malformed one to the right path
            async with ClientSession() as http:
                for path, body in (("not-the-token-0123456789", b"{}"), (WEBHOOK_TOKEN, b"{broken")):
                    async with http.post(f"http://127.0.0.1:{port}/hooks/{path}", data=body) as answer:
                        texts.append(await answer.text())

            # the sync client, in a thread of its own
            def sync_run() -> None:
                with SyncAdCreativeClient(**options, user_id=USER_ID) as sync:
                    job = sync.background_remover.remove(PNG)
                    for task in job.result(timeout=20).succeeded_task_ids:
                        job.download(task, out / "sync" / f"{task}.png")

            await anyio.to_thread.run_sync(sync_run)

            # the CLI: a bulk run to a folder, its run ledger and run file in it
            inputs = tmp_path / "in"
            inputs.mkdir()
            for i in range(3):
                (inputs / f"photo-{i}.png").write_bytes(sample_image("png", (12 + i, 12)))
            for name in list(os.environ):
                if name.startswith("ADCREATIVE_"):
                    monkeypatch.delenv(name)
            for name, value in credentials.items():
                monkeypatch.setenv(f"ADCREATIVE_{name.upper()}", str(value))
            monkeypatch.setenv("ADCREATIVE_USER_ID", USER_ID)
            stdout, stderr = io.StringIO(), io.StringIO()

            def cli_run() -> int:
                with redirect_stdout(stdout), redirect_stderr(stderr):
                    return main(["remove-bg", str(inputs), "-o", str(out / "cli"), "--json"])

            assert await anyio.to_thread.run_sync(cli_run) == 0
            texts += [stdout.getvalue(), stderr.getvalue()]
        finally:
            server.should_exit = True
        user_ids = {p.user_id for p in state.processes.values()}
    sock.close()

    # what was captured is a lot: the scan below cannot pass for want of material
    finished = spans.get_finished_spans()
    logs = captured_logs.records
    files = [p for p in out.rglob("*") if p.is_file()]
    results = [p for p in files if p.suffix == ".png"]
    access = [line for line in logs if line.startswith("uvicorn.access") and "/hooks/" in line]
    assert len(logs) > 50
    assert len(finished) > 30
    assert any(s.kind.name == "SERVER" for s in finished)  # the webhook server's own spans
    assert any(e.name == "exception" for s in finished for e in s.events)  # errors recorded on spans
    assert len(metric_text(metrics)) > 5
    assert len(results) == 7  # 3 async, 1 sync, 3 CLI
    assert len(access) >= 3  # uvicorn logged the deliveries
    assert len(user_ids) >= 5  # the account's user, strong mode's and the run ledger's derived users
    assert len(issued) >= 2

    ledgers = [p for p in files if p.name.startswith(".adcreative-run.sqlite")]
    assert ledgers  # the one store that keeps user ids on purpose: owner-only
    written = [p.read_bytes().decode("latin-1") for p in files if p not in ledgers]

    corpus = {
        "log records": logs,
        "spans": [span_text(s) for s in finished],
        "metric points": metric_text(metrics),
        "files": written,
        "errors, answers and CLI output": texts,
    }
    leaks = [
        (where, marker, next(t for t in items if marker.lower() in t.lower())[:400])
        for where, items in corpus.items()
        for marker in markers(user_ids, issued)
        if any(marker.lower() in t.lower() for t in items)
    ]
    assert not leaks, "\n".join(map(repr, leaks))
    for ledger in ledgers:
        assert stat.S_IMODE(ledger.stat().st_mode) == 0o600, ledger
