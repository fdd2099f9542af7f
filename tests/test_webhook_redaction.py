"""A webhook path token stays out of access logs and server spans: real uvicorn, gunicorn and aiohttp
servers on loopback, their access logs captured as they write them, and OpenTelemetry's own ASGI
instrumentation exporting to an in-memory exporter."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from aiohttp import ClientSession, web

from adcreative_async.notifications import NotificationHub, WebhookReceiver
from adcreative_async.notifications.aiohttp import webhook_app
from adcreative_async.notifications.redaction import (
    REDACTED,
    AccessLogRedactionFilter,
    TokenRedactingSpanProcessor,
    install_access_log_redaction,
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-Zq8vMARKERwebhook-3f9a1c"  # distinctive: found by a plain substring search
DELIVERY = (
    b'{"MessageType":"ImageBackgroundRemovingTaskCompleted","ImageRenderProcessId":'
    b'"0f8fad5b-d9cb-469f-a165-70867728950e","TaskId":"7c9e6679-7425-40de-944b-e07fc1f90ae7",'
    b'"UserId":"2581c740-8e9d-4d63-96bc-5665bb9a646b","ApplicationId":'
    b'"6ba7b810-9dad-11d1-80b4-00c04fd430c8","State":2}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def server_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), WEBHOOK_TOKEN=TOKEN)


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    return (out + err).decode()


# ------------------------------------------------------------------------------------- the filter


def test_the_filter_rewrites_a_records_message_arguments_and_extras() -> None:
    records: list[logging.LogRecord] = []
    filt = AccessLogRedactionFilter(TOKEN)
    cases: list[tuple[object, ...] | dict[str, object]] = [
        ("127.0.0.1", "POST", f"/hooks/{TOKEN}", "1.1", 200),
        {"r": f"POST /hooks/{TOKEN}", "s": "200"},
    ]
    for args in cases:
        record = logging.LogRecord(
            "x", logging.INFO, "", 0, "%s" if isinstance(args, tuple) else "%(r)s", None, None
        )
        record.args = args
        record.first_request_line = f"POST /hooks/{TOKEN} HTTP/1.1"
        assert filt.filter(record)
        records.append(record)
    assert records[0].args == ("127.0.0.1", "POST", f"/hooks/{REDACTED}", "1.1", 200)
    assert records[1].getMessage() == f"POST /hooks/{REDACTED}"
    assert TOKEN not in str(records[0].__dict__)
    assert TOKEN not in str(records[1].__dict__)


# --------------------------------------------------------------------------------------- uvicorn

UVICORN_APP = """
import os
from adcreative_async.notifications import NotificationHub, WebhookReceiver

app = WebhookReceiver(NotificationHub(), path_token=os.environ["WEBHOOK_TOKEN"]).asgi
"""


def test_uvicorn_access_log_shows_the_webhook_path_without_its_token(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    (tmp_path / "hook_app.py").write_text(UVICORN_APP)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "hook_app:app", "--port", str(port), "--log-level", "info"],
        cwd=tmp_path,
        env=dict(server_env, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, server)
        assert post(f"http://127.0.0.1:{port}/hooks/{TOKEN}", DELIVERY) == 200
        assert post(f"http://127.0.0.1:{port}/hooks/{TOKEN}", b"{broken") == 400
        assert post(f"http://127.0.0.1:{port}/hooks/not-the-token-0123456789", DELIVERY) == 404
    finally:
        log = stop(server)
    assert f'"POST /hooks/{REDACTED} HTTP/1.1" 200' in log  # the access log was written, token out
    assert f'"POST /hooks/{REDACTED} HTTP/1.1" 400' in log
    assert "/hooks/not-the-token-0123456789" in log  # only the token is taken out
    assert TOKEN not in log


# -------------------------------------------------------------------------------------- gunicorn

WSGI_APP = """
def app(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no"]
"""

GUNICORN_CONF = """
import os
from adcreative_async.notifications.redaction import install_access_log_redaction

accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(U)s %({raw_uri}e)s'


def post_worker_init(worker):
    install_access_log_redaction(os.environ["WEBHOOK_TOKEN"])
"""


def test_gunicorn_access_log_is_redacted_by_a_call_in_its_configuration_file(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "-b",
            f"127.0.0.1:{port}",
            "wsgi_app:app",
        ],
        cwd=tmp_path,
        env=dict(server_env, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, server)
        assert post(f"http://127.0.0.1:{port}/hooks/{TOKEN}?x=1", DELIVERY) == 404
    finally:
        log = stop(server)
    assert f'"POST /hooks/{REDACTED}?x=1 HTTP/1.1" 404 /hooks/{REDACTED} /hooks/{REDACTED}?x=1' in log
    assert TOKEN not in log


# --------------------------------------------------------------------------------------- aiohttp


@pytest.mark.anyio
async def test_aiohttp_access_log_shows_the_webhook_path_without_its_token() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    access = logging.getLogger("aiohttp.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    app = web.Application()
    app.add_subapp("/hooks/", webhook_app(WebhookReceiver(NotificationHub(), path_token=TOKEN)))
    runner = web.AppRunner(app, access_log_format='%a "%r" %s %{X-Probe}i')
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with ClientSession() as http:
            for body, status in ((DELIVERY, 200), (b"{broken", 400)):
                async with http.post(
                    f"http://127.0.0.1:{port}/hooks/{TOKEN}", data=body, headers={"X-Probe": TOKEN}
                ) as response:
                    assert response.status == status
    finally:
        await runner.cleanup()
        access.removeHandler(handler)
        access.setLevel(level)
    log = stream.getvalue()
    assert f'"POST /hooks/{REDACTED} HTTP/1.1" 200 {REDACTED}' in log
    assert f'"POST /hooks/{REDACTED} HTTP/1.1" 400' in log
    assert TOKEN not in log


# ------------------------------------------------------------------------------ OpenTelemetry ASGI


@pytest.mark.anyio
async def test_opentelemetry_asgi_server_spans_carry_no_token() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("opentelemetry.instrumentation.asgi")
    from fastapi import FastAPI
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(TokenRedactingSpanProcessor(TOKEN))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api = FastAPI()
    api.mount("/hooks", WebhookReceiver(NotificationHub(), path_token=TOKEN).asgi)
    app = OpenTelemetryMiddleware(api, tracer_provider=provider)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await anyio.sleep(0.01)
        async with ClientSession() as http:
            for body in (DELIVERY, b"{broken"):
                async with http.post(f"http://127.0.0.1:{port}/hooks/{TOKEN}?t={TOKEN}", data=body) as r:
                    await r.read()
        server.should_exit = True
    sock.close()
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind.name == "SERVER"]
    assert len(servers) == 2
    assert len(spans) > len(servers)  # and their send/receive children, named after them
    recorded = repr([(s.name, dict(s.attributes or {}), [e.attributes for e in s.events]) for s in spans])
    assert f"/hooks/{REDACTED}" in recorded  # the path is there, its token is not
    assert TOKEN not in recorded


def test_a_traceback_that_quotes_the_token_is_redacted_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("adcreative.test.server")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    install_access_log_redaction(TOKEN, loggers=["adcreative.test.server"])
    try:
        raise ValueError(f"no route for /hooks/{TOKEN}")
    except ValueError:
        logger.exception("Error handling request")
    finally:
        logger.removeHandler(handler)
    assert "ValueError: no route for /hooks/REDACTED" in stream.getvalue()
    assert TOKEN not in stream.getvalue()


def test_installing_twice_adds_tokens_to_one_filter_per_logger() -> None:
    first = install_access_log_redaction("first-token-0123456789", loggers=["adcreative.test.access"])
    second = install_access_log_redaction("second-token-012345678", loggers=["adcreative.test.access"])
    assert first is second
    assert logging.getLogger("adcreative.test.access").filters.count(first) == 1
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "first-token-0123456789 second-token-012345678", None, None
    )
    first.filter(record)
    assert record.getMessage() == f"{REDACTED} {REDACTED}"
