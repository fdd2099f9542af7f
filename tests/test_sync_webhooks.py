"""Webhooks in sync hosts: the WSGI adapter and ``handle_sync`` hand each delivery to the loop of the
``SyncAdCreativeClient`` the hub feeds, so that sync waits resolve on push; the async receiver called on
another loop raises instead of answering 200 while the push is lost; and a push for a process this
client does not hold (another worker's) never slows its polls.

Real servers on loopback: wsgiref's WSGI server in a thread (gunicorn runs in ``test_webhosts.py``), the
emulator posting its notifications to it.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from adcreative_async import AdCreativeClient, ClientNotOpenError, PollPolicy, SyncAdCreativeClient
from adcreative_async.notifications import (
    NotificationHub,
    WebhookReceiver,
    WrongLoopError,
    decode_notification,
)
from adcreative_async.testing import Emulator, EmulatorThread, sample_image

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
TOKEN = "sync-webhook-token-0123456789abcdef"
PNG = sample_image("png", (8, 8))
#: Polling that would take far longer than any test: a wait that resolves came from push.
NO_POLLING = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log: the path holds the token
        return


@pytest.fixture
def wsgi_receiver() -> Iterator[tuple[str, WebhookReceiver]]:
    """``receiver.wsgi`` served by wsgiref in a thread; yields its webhook URL and the receiver."""
    receiver = WebhookReceiver(NotificationHub(), path_token=TOKEN)
    server: WSGIServer = make_server("127.0.0.1", 0, receiver.wsgi, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/{TOKEN}", receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def progress_message(process_id: str, user_id: str = USER) -> bytes:
    return json.dumps(
        {
            "MessageType": "ImageBackgroundRemovingProgress",
            "ImageRenderProcessId": process_id,
            "UserId": user_id,
            "Progress": 10,
            "CompletedTaskCount": 0,
            "TotalTaskCount": 1,
        }
    ).encode()


def post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> int:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_wsgi_app_resolves_sync_waits_by_push(wsgi_receiver: tuple[str, WebhookReceiver]) -> None:
    url, receiver = wsgi_receiver
    with (
        EmulatorThread(task_duration=(0.05, 0.2), notification_channel=False) as emulator,
        SyncAdCreativeClient(
            **emulator.credentials, user_id=USER, push=receiver.hub, poll_policy=NO_POLLING, trust_env=False
        ) as client,
    ):
        emulator.call(lambda emu: emu.add_notification_channel("webhook", url))
        jobs = [client.background_remover.remove(PNG) for _ in range(5)]
        done = list(client.as_completed(jobs, timeout=20))
        assert len(done) == 5
        assert client.scheduler_stats["requests"] == 0  # no poll: every completion came by push
        assert client.scheduler_stats["pushes"] >= 5
        assert receiver.handled >= 5
        assert receiver.rejected == 0


def test_async_handle_on_another_loop_raises_naming_the_sync_adapters() -> None:
    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    with (
        EmulatorThread(task_duration=5) as emulator,
        SyncAdCreativeClient(**emulator.credentials, user_id=USER, push=hub, trust_env=False) as client,
    ):
        job = client.background_remover.remove(PNG)  # the client's scheduler now listens to the hub
        call = receiver.handle(
            method="POST", path=f"/hooks/{TOKEN}", headers={}, body=progress_message(job.process_id)
        )
        with pytest.raises(WrongLoopError, match=r"receiver\.wsgi.*receiver\.handle_sync"):
            asyncio.run(call)  # what a Flask view would write: it used to answer 200 and lose the push
        assert hub.received == 0  # refused before anything was delivered or remembered
        assert client.scheduler_stats["pushes"] == 0


def test_handle_sync_hands_the_message_to_the_clients_loop() -> None:
    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    with (
        EmulatorThread(task_duration=5) as emulator,
        SyncAdCreativeClient(**emulator.credentials, user_id=USER, push=hub, trust_env=False) as client,
    ):
        job = client.background_remover.remove(PNG)
        status, payload = receiver.handle_sync(
            {"Content-Type": "application/json"}, progress_message(job.process_id), path=f"/x/{TOKEN}"
        )
        assert (status, json.loads(payload)) == (200, {"status": "ok"})
        assert client.scheduler_stats["pushes"] == 1
        assert client.scheduler_stats["requests"] == 0
        # the same delivery again is a duplicate, as with the async receiver
        assert receiver.handle_sync({}, progress_message(job.process_id), path=f"/x/{TOKEN}")[0] == 200
        assert hub.duplicates == 1


@pytest.mark.parametrize(
    ("path", "method", "body", "headers", "status"),
    [
        (f"/hooks/{TOKEN}", "POST", progress_message(str(uuid.uuid4())), {}, 200),
        ("/hooks/wrong-token-0123456789abcdef", "POST", progress_message(str(uuid.uuid4())), {}, 404),
        (f"/hooks/{TOKEN}", "GET", b"", {}, 405),
        (f"/hooks/{TOKEN}", "POST", b"{not json", {}, 400),
        (f"/hooks/{TOKEN}", "POST", b"", {}, 400),
        (f"/hooks/{TOKEN}", "POST", b'{"MessageType": "SomethingNew"}', {}, 200),
        (f"/hooks/{TOKEN}", "POST", b"x" * 2048, {}, 413),
    ],
    ids=["ok", "wrong-token", "get", "malformed", "empty", "unknown-type", "too-large"],
)
def test_wsgi_app_checks_deliveries_like_the_async_receiver(
    path: str, method: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    receiver = WebhookReceiver(NotificationHub(), path_token=TOKEN, max_body_size=1024)
    server = make_server("127.0.0.1", 0, receiver.wsgi, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}{path}"
        assert post(url, body if method == "POST" else b"", headers, method) == status
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (receiver.handled, receiver.rejected) == ((1, 0) if status == 200 else (0, 1))


def test_wsgi_app_checks_the_secret_header() -> None:
    receiver = WebhookReceiver(NotificationHub(), secret="s3cret-value")
    environ_ok = {"HTTP_X_WEBHOOK_SECRET": "s3cret-value"}
    environ_bad = {"HTTP_X_WEBHOOK_SECRET": "nope"}
    for extra, expected in ((environ_ok, 200), (environ_bad, 401), ({}, 401)):
        body = progress_message(str(uuid.uuid4()))
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/hooks",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            **extra,
        }
        statuses: list[str] = []
        receiver.wsgi(environ, lambda status, headers, sink=statuses: sink.append(status))
        assert statuses == [f"{expected} {'OK' if expected == 200 else 'Unauthorized'}"]


def test_asgi_adapter_on_another_loop_hands_over_to_a_sync_clients_loop() -> None:
    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    with (
        EmulatorThread(task_duration=5) as emulator,
        SyncAdCreativeClient(**emulator.credentials, user_id=USER, push=hub, trust_env=False) as client,
    ):
        job = client.background_remover.remove(PNG)
        body = progress_message(job.process_id)
        sent: list[MutableMapping[str, Any]] = []

        async def serve() -> None:  # an ASGI server's loop (FastAPI with a sync client in def views)
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(event: MutableMapping[str, Any]) -> None:
                sent.append(event)

            scope = {"type": "http", "method": "POST", "path": f"/hooks/{TOKEN}", "headers": []}
            await receiver.asgi(scope, receive, send)

        asyncio.run(serve())
        assert sent[0]["status"] == 200
        assert client.scheduler_stats["pushes"] == 1


@pytest.mark.anyio
async def test_a_push_for_a_process_not_held_here_never_slows_polling() -> None:
    # Two workers behind one webhook URL: this one holds `job`; the message it gets is for a process of
    # the same user held by the other worker. Polling must stay at its normal pace (before: slowed to
    # the 30 s reconcile interval, so `job` was seen done only after it; the wait below timed out).
    hub = NotificationHub()
    policy = PollPolicy(push_reconcile_interval=30, push_quiet_after=60)
    async with (
        Emulator(task_duration=2.5) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=policy, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        other_workers_process = str(uuid.uuid4())
        await hub.publish(decode_notification(progress_message(other_workers_process)), source="webhook")
        progress = await job.result(timeout=12)
        assert progress.is_complete
        assert client.scheduler_stats["pushes"] == 1
        assert client._scheduler is not None
        assert client._scheduler.foreign_pushes == 1
        assert client.scheduler_stats["requests"] >= 2  # resolved by polls at the normal pace


@pytest.mark.anyio
async def test_split_deliveries_never_slow_polling_even_for_own_messages() -> None:
    # gunicorn -w 2: the hub knows each worker gets part of the messages. A message for this worker's
    # own render must not slow its polls either (the render's next message may go to the other worker).
    hub = NotificationHub(split_deliveries=True)
    policy = PollPolicy(push_reconcile_interval=30, push_quiet_after=60)
    async with (
        Emulator(task_duration=2.5) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=policy, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        await hub.publish(decode_notification(progress_message(job.process_id)), source="webhook")
        progress = await job.result(timeout=12)  # before: slowed to 30 s by its own message, timed out
        assert progress.is_complete
        assert client.scheduler_stats["pushes"] == 1
        assert client.scheduler_stats["requests"] >= 2  # resolved by polls at the normal pace


@pytest.mark.parametrize("multiprocess", [True, False])
def test_wsgi_app_marks_the_hub_split_when_the_server_runs_several_processes(multiprocess: bool) -> None:
    receiver = WebhookReceiver(NotificationHub(), path_token=TOKEN)
    body = progress_message(str(uuid.uuid4()))
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/hooks/{TOKEN}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.multiprocess": multiprocess,  # gunicorn sets it when it runs more than one worker
    }
    assert receiver.wsgi(environ, lambda status, headers: None) == [b'{"status": "ok"}']
    assert receiver.hub.split_deliveries is multiprocess


def test_result_future_resolves_on_the_clients_loop_without_blocking_the_caller() -> None:
    with (
        EmulatorThread(auto_complete=False) as emulator,
        SyncAdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        job = client.background_remover.remove(PNG)
        future = job.result_future(timeout=20)
        assert not future.done()  # returned at once: the render is not finished
        called = threading.Event()
        future.add_done_callback(lambda _: called.set())
        emulator.finish_process(job.process_id)
        assert future.result(timeout=20).is_complete
        assert called.wait(5)
        cancelled = client.background_remover.remove(PNG).result_future(timeout=20)
        assert cancelled.cancel()  # ends the wait on the loop
        left_open = client.background_remover.remove(PNG).result_future(timeout=20)
    with pytest.raises(ClientNotOpenError):
        left_open.result(timeout=10)  # closing the client ended it


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own (what a sync client has)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_handle_sync_answers_503_when_the_clients_loop_does_not_take_the_message_in_time(
    loop_thread: asyncio.AbstractEventLoop,
) -> None:
    hub = NotificationHub()

    async def slow(message: object) -> None:
        await asyncio.sleep(1)

    hub.subscribe(slow, loop=loop_thread)
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    receiver.handoff_timeout = 0.05
    status, _ = receiver.handle_sync({}, progress_message(str(uuid.uuid4())), path=f"/h/{TOKEN}")
    assert status == 503  # the sender retries
    assert receiver.rejected == 1


def test_publishing_to_a_hub_bound_to_another_loop_raises(loop_thread: asyncio.AbstractEventLoop) -> None:
    hub = NotificationHub()
    got: list[object] = []
    hub.subscribe(got.append, loop=loop_thread)
    message = decode_notification(progress_message(str(uuid.uuid4())))
    with pytest.raises(WrongLoopError):
        asyncio.run(hub.publish(message))
    assert hub.publish_threadsafe(message) is True  # handed to its loop instead
    assert got == [message]
