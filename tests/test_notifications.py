"""Push notifications: message decoding, the hub, the webhook receiver (ASGI and aiohttp), and waits that
resolve on push, with polling as the safety net."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import web
from helpers import creative_inputs, eventually

from adcreative_async import (
    AdCreativeClient,
    InvalidRequestError,
    ManualClock,
    PollPolicy,
    RenderJob,
    RenderState,
)
from adcreative_async.notifications import (
    FEATURE_OF_MESSAGE_TYPE,
    MessageDecodeError,
    NotificationHandlerError,
    NotificationHub,
    ProgressNotification,
    TaskCompletedNotification,
    UnknownMessageType,
    WebhookReceiver,
    decode_notification,
)
from adcreative_async.notifications.aiohttp import webhook_app
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
APP = "d5eabbb8-c0f6-4640-94fd-3566edad499f"
PROCESS = "51d690da-f5ea-405e-90ff-10d56b0d633f"
TASK = "9baa8e55-ddc8-4940-907f-eb5fc81e53f6"
OTHER_TASK = "0f8fad5b-d9cb-469f-a165-70867728950e"
TOKEN = "a-long-unguessable-path-token-0123456789"
PNG = sample_image("png", (8, 8))
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
GEN_PROGRESS = "Image/Generation/CheckUserProgress"


def completed_body(message_type: str = "ImageGenerationTaskCompleted", **overrides: Any) -> dict[str, Any]:
    """The documented task-completed example (reference §2.5)."""
    body: dict[str, Any] = {
        "MessageType": message_type,
        "ApplicationId": APP,
        "UserId": USER,
        "ImageRenderProcessId": PROCESS,
        "TaskId": TASK,
        "ImageContentBytes": base64.b64encode(PNG).decode(),
        "IsSuccessful": True,
        "ErrorMessage": "",
    }
    body.update(overrides)
    return body


def progress_body(message_type: str = "ImageGenerationProgress", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "MessageType": message_type,
        "RequestRenderState": 1,
        "ApplicationId": APP,
        "UserId": USER,
        "ImageRenderProcessId": PROCESS,
        "TotalTaskCount": 2,
        "CompletedTaskCount": 1,
        "Progress": 50,
        "Tasks": {TASK: 5, OTHER_TASK: 1},
        "IsSuccessful": True,
        "ErrorMessage": "",
    }
    body.update(overrides)
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# ------------------------------------------------------------------------------------------ messages


@pytest.mark.parametrize("message_type", sorted(FEATURE_OF_MESSAGE_TYPE))
def test_every_message_type_decodes(message_type: str) -> None:
    if message_type.endswith("TaskCompleted"):
        message = decode_notification(encode(completed_body(message_type, Extra={"x": 1})))
        assert isinstance(message, TaskCompletedNotification)
        assert message.task_id == TASK
        assert message.image_content_bytes == PNG
        assert message.state is RenderState.SUCCEEDED
    else:
        message = decode_notification(encode(progress_body(message_type, Extra=[1])))
        assert isinstance(message, ProgressNotification)
        progress = message.to_progress()
        assert progress.tasks == {TASK: 5, OTHER_TASK: 1}
        assert (progress.completed_task_count, progress.progress) == (1, 50)
    assert message.message_type == message_type
    assert message.feature == FEATURE_OF_MESSAGE_TYPE[message_type]
    assert message.process_id == PROCESS


def test_camel_case_and_newtonsoft_metadata_are_accepted() -> None:
    camel = {k[0].lower() + k[1:]: v for k, v in progress_body().items()}
    camel["tasks"] = {"$id": "2", TASK: 5}
    message = decode_notification(encode(camel))
    assert isinstance(message, ProgressNotification)
    assert message.tasks == {TASK: 5}


def test_failed_task_and_missing_image() -> None:
    body = completed_body(IsSuccessful=False, ErrorMessage="boom", ImageContentBytes=None)
    message = decode_notification(encode(body))
    assert isinstance(message, TaskCompletedNotification)
    assert message.state is RenderState.FAILED
    assert message.image_content_bytes is None
    assert message.error_message == "boom"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"MessageType": 5}',
        encode(completed_body(TaskId=None)),
        encode(completed_body(ImageContentBytes="***not base64***")),
        encode({k: v for k, v in completed_body().items() if k != "ImageRenderProcessId"}),
        encode(progress_body(Tasks=["a"])),
    ],
)
def test_malformed_messages_are_refused(body: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode_notification(body)


#: Ids that are not GUIDs: path escapes, a GUID with a suffix or a newline, a name, an empty id, a number.
NOT_GUIDS: list[Any] = ["/../../x", f"../{TASK}", f"{TASK}/x", f"{TASK}\n", "taskId1", "", 7]


@pytest.mark.parametrize("value", NOT_GUIDS)
@pytest.mark.parametrize("field", ["TaskId", "ImageRenderProcessId", "UserId", "ApplicationId"])
def test_every_id_of_a_message_must_be_a_guid(field: str, value: Any) -> None:
    if value == "" and field in ("UserId", "ApplicationId"):
        return  # an id a message may lack: empty is absent (see the next test)
    with pytest.raises(MessageDecodeError, match=field):
        decode_notification(encode(completed_body(**{field: value})))
    if field != "TaskId":
        with pytest.raises(MessageDecodeError, match=field):
            decode_notification(encode(progress_body(**{field: value})))
    camel = {k[0].lower() + k[1:]: v for k, v in completed_body(**{field: value}).items()}
    with pytest.raises(MessageDecodeError):
        decode_notification(encode(camel))


@pytest.mark.parametrize("value", [v for v in NOT_GUIDS if isinstance(v, str)])
def test_task_ids_of_a_progress_message_must_be_guids(value: str) -> None:
    with pytest.raises(MessageDecodeError, match="Tasks"):
        decode_notification(encode(progress_body(Tasks={TASK: 5, value: 1})))


def test_ids_are_validated_not_rewritten_and_optional_ones_may_be_absent() -> None:
    upper = decode_notification(encode(completed_body(TaskId=TASK.upper(), UserId=USER.upper())))
    assert isinstance(upper, TaskCompletedNotification)
    assert (upper.task_id, upper.user_id) == (TASK.upper(), USER.upper())  # validated, not rewritten
    absent = {k: v for k, v in completed_body().items() if k not in ("UserId", "ApplicationId")}
    message = decode_notification(encode(absent))
    assert (message.user_id, message.application_id) == ("", "")
    # republished between replicas (RabbitMQPublisher): re-encoded, its absent ids are empty strings
    assert decode_notification(msgspec.json.encode(message)) == message


def test_unknown_message_types_are_recognised_as_such() -> None:
    with pytest.raises(UnknownMessageType) as info:
        decode_notification(encode({"MessageType": "ImageVideoGenerationProgress", "Anything": 1}))
    assert info.value.message_type == "ImageVideoGenerationProgress"


async def test_task_completed_image_is_saved_without_a_download(tmp_path: Path) -> None:
    message = decode_notification(encode(completed_body()))
    assert isinstance(message, TaskCompletedNotification)
    path = await message.save_image(tmp_path)
    assert path == tmp_path / f"{TASK}.png"
    assert path.read_bytes() == PNG
    empty = decode_notification(encode(completed_body(ImageContentBytes=None)))
    assert isinstance(empty, TaskCompletedNotification)
    with pytest.raises(ValueError, match="carries no image"):
        await empty.save_image(tmp_path)


@pytest.mark.parametrize("task_id", ["/../../x", "../escaped", "..", "a/b", "C:\\x", ""])
async def test_save_image_never_writes_outside_its_directory(tmp_path: Path, task_id: str) -> None:
    inside = tmp_path / "a" / "b"
    inside.mkdir(parents=True)
    forged = TaskCompletedNotification(  # built by hand: msgspec checks constraints only when decoding
        message_type="ImageGenerationTaskCompleted",
        image_render_process_id=PROCESS,
        task_id=task_id,
        image_content_bytes=PNG,
    )
    with pytest.raises(InvalidRequestError, match="task_id"):
        await forged.save_image(inside)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_a_webhook_with_a_malformed_id_is_refused_and_never_published(
    hub: NotificationHub, tmp_path: Path
) -> None:
    got: list[Any] = []
    hub.subscribe(got.append)
    client = ASGIClient(WebhookReceiver(hub).asgi)
    status, body = await client.post("/", encode(completed_body(TaskId="/../../x")))
    assert status == 400
    assert "TaskId" in body["error"]
    assert got == []


# ----------------------------------------------------------------------------------------------- hub


async def test_hub_delivers_once_and_filters_sources() -> None:
    hub = NotificationHub()
    seen: list[str] = []
    webhook_only: list[str] = []
    hub.subscribe(lambda m: seen.append(m.message_type))

    async def handler(message: Any) -> None:
        webhook_only.append(message.message_type)

    hub.subscribe(handler, sources=["webhook"])
    message = decode_notification(encode(completed_body()))
    assert await hub.publish(message, source="webhook")
    assert not await hub.publish(message, source="rabbitmq")  # the same event again
    assert await hub.publish(
        decode_notification(encode(completed_body(IsSuccessful=False))), source="rabbitmq"
    )
    assert seen == ["ImageGenerationTaskCompleted"] * 2
    assert webhook_only == ["ImageGenerationTaskCompleted"]
    assert (hub.received, hub.duplicates) == (3, 1)


async def test_a_failing_handler_makes_the_message_come_again() -> None:
    hub = NotificationHub()
    calls = 0

    def flaky(message: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")

    unsubscribe = hub.subscribe(flaky)
    message = decode_notification(encode(completed_body()))
    with pytest.raises(NotificationHandlerError, match="1 handler"):
        await hub.publish(message)
    assert await hub.publish(message)  # forgotten after the failure: handled on redelivery
    unsubscribe()
    assert not await hub.publish(message)
    assert calls == 2


# ------------------------------------------------------------------------------------------ receiver


class ASGIClient:
    """Calls an ASGI app directly, as a server would."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        chunk: int = 0,
    ) -> tuple[int, dict[str, Any]]:
        parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
        events: list[MutableMapping[str, Any]] = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return events.pop(0) if events else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }
        await self.app(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.fixture
def hub() -> NotificationHub:
    return NotificationHub()


async def test_asgi_receiver_status_codes(hub: NotificationHub) -> None:
    got: list[Any] = []
    hub.subscribe(got.append)
    receiver = WebhookReceiver(hub, path_token=TOKEN, secret="s3cret", max_body_size=2 * 1024 * 1024)
    client = ASGIClient(receiver.asgi)
    good = {"X-Webhook-Secret": "s3cret"}
    assert await client.post(f"/hooks/{TOKEN}", encode(completed_body()), good) == (200, {"status": "ok"})
    assert await client.post(f"/hooks/{TOKEN}", encode(completed_body()), good) == (
        200,
        {"status": "duplicate"},
    )
    status, body = await client.post(f"/hooks/{TOKEN}", encode({"MessageType": "Future"}), good)
    assert (status, body["status"]) == (200, "ignored")
    assert (await client.post(f"/hooks/{TOKEN}", b"{broken", good))[0] == 400
    assert (await client.post(f"/hooks/{TOKEN}", b"", good))[0] == 400
    assert (await client.post("/hooks/wrong-token-wrong-token", encode(completed_body()), good))[0] == 404
    assert (await client.post(f"/hooks/{TOKEN}", encode(completed_body()), {"X-Webhook-Secret": "no"}))[
        0
    ] == 401
    assert (await client.post(f"/hooks/{TOKEN}", encode(completed_body()), {}))[0] == 401
    assert (await client.post(f"/hooks/{TOKEN}", b"", good, method="GET"))[0] == 405
    big = encode(
        completed_body(
            TaskId=str(uuid.uuid4()), ImageContentBytes=base64.b64encode(bytes(1024 * 1024)).decode()
        )
    )
    assert (await client.post(f"/hooks/{TOKEN}", big, good, chunk=64 * 1024))[
        0
    ] == 200  # > 1 MiB with an image
    huge = b"x" * (3 * 1024 * 1024)
    assert (await client.post(f"/hooks/{TOKEN}", huge, good, chunk=256 * 1024))[0] == 413
    assert (await client.post(f"/hooks/{TOKEN}", huge, {**good, "Content-Length": str(len(huge))}))[0] == 413
    assert len(got) == 2
    assert receiver.handled == 4
    assert receiver.rejected == 8


async def test_a_failing_handler_answers_500(hub: NotificationHub) -> None:
    def broken(message: Any) -> None:
        raise RuntimeError("nope")

    hub.subscribe(broken)
    client = ASGIClient(WebhookReceiver(hub).asgi)
    assert (await client.post("/", encode(completed_body())))[0] == 500


def test_the_asgi_app_is_taken_as_asgi3_by_uvicorn(hub: NotificationHub) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    config = uvicorn.Config(WebhookReceiver(hub).asgi)  # uvicorn's defaults: interface="auto"
    config.load()
    assert config.interface == "asgi3"


async def test_the_asgi_app_served_alone_by_uvicorn_answers_messages(hub: NotificationHub) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    got: list[Any] = []
    hub.subscribe(got.append)
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(receiver.asgi, log_level="warning"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.serve(sockets=[sock]))
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                    await anyio.sleep(0.01)
            try:
                async with aiohttp.ClientSession() as http:
                    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
                    async with http.post(url, data=encode(completed_body())) as response:
                        assert (response.status, await response.json()) == (200, {"status": "ok"})
                    async with http.post(url, data=b"{broken") as response:
                        assert response.status == 400
            finally:
                server.should_exit = True
    assert [m.task_id for m in got] == [TASK]


def test_path_tokens_must_be_unguessable(hub: NotificationHub) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        WebhookReceiver(hub, path_token="short")


@pytest.fixture
async def aiohttp_receiver(hub: NotificationHub) -> AsyncIterator[str]:
    app = web.Application()
    app.add_subapp(
        "/hooks/", webhook_app(WebhookReceiver(hub, path_token=TOKEN, max_body_size=4 * 1024 * 1024))
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/{TOKEN}"
    finally:
        await runner.cleanup()


async def test_aiohttp_receiver_status_codes_and_limits(hub: NotificationHub, aiohttp_receiver: str) -> None:
    got: list[Any] = []
    hub.subscribe(got.append)
    image = base64.b64encode(bytes(2 * 1024 * 1024)).decode()  # over aiohttp's default 1 MiB limit
    async with aiohttp.ClientSession() as session:

        async def post(url: str, data: bytes) -> int:
            async with session.post(url, data=io.BytesIO(data)) as response:
                await response.read()
                return response.status

        assert await post(aiohttp_receiver, encode(completed_body(ImageContentBytes=image))) == 200
        assert await post(aiohttp_receiver, encode({"MessageType": "Future"})) == 200
        assert await post(aiohttp_receiver, b"nope") == 400
        assert await post(aiohttp_receiver.replace(TOKEN, "x" * 20), encode(completed_body())) == 404
        assert await post(aiohttp_receiver, b"x" * (5 * 1024 * 1024)) == 413
        async with session.get(aiohttp_receiver) as response:
            assert response.status == 405
    assert len(got) == 1
    assert got[0].image_content_bytes == bytes(2 * 1024 * 1024)


# ------------------------------------------------------------------------------------------- waiting

FAST = PollPolicy(
    initial_interval=1.0,
    max_interval=1.0,
    min_interval=1.0,
    jitter=None,
    push_reconcile_interval=30.0,
    push_quiet_after=60.0,
)


def task_completed(job: RenderJob, task_id: str, *, ok: bool = True) -> TaskCompletedNotification:
    message = decode_notification(
        encode(
            completed_body(
                "ImageBackgroundRemovingTaskCompleted",
                UserId=job.user_id,
                ImageRenderProcessId=job.process_id,
                TaskId=task_id,
                IsSuccessful=ok,
                ImageContentBytes=None,
            )
        )
    )
    assert isinstance(message, TaskCompletedNotification)
    return message


async def test_a_push_resolves_a_wait_without_a_poll() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, clock=clock, poll_policy=FAST, push=hub, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        (task,) = job.task_ids
        updates: list[Any] = []

        async def wait() -> None:
            async for update in job.wait_until_complete():
                updates.append(update)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await eventually(lambda: len(updates) == 1)
            polls = emulator.request_count(BG_PROGRESS)
            emulator.finish_task(task)
            await hub.publish(task_completed(job, task))  # the clock does not move: no poll is due
            await eventually(lambda: len(updates) == 2)
        assert emulator.request_count(BG_PROGRESS) == polls == 1  # only the start's baseline listing
        assert client.scheduler_stats["requests"] == 0
        assert updates[-1].state is RenderState.SUCCEEDED
        assert job.is_complete
        assert client.scheduler_stats["pushes"] == 1


async def test_polls_slow_while_push_flows_and_catch_a_lost_message() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, clock=clock, poll_policy=FAST, push=hub, trust_env=False
        ) as client,
    ):
        first, second = [await client.background_remover.remove(PNG) for _ in range(2)]
        baseline = emulator.request_count(BG_PROGRESS)  # the listing before the first start call
        done: list[RenderJob] = []

        async def wait() -> None:
            async for job in client.as_completed([first, second]):
                done.append(job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(1.0)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == baseline + 1)
            emulator.finish_process(first.process_id)
            await hub.publish(task_completed(first, first.task_ids[0]))  # push is now flowing
            await eventually(lambda: len(done) == 1)
            await clock.advance(1.0)  # the poll already due (t+2) still happens ...
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == baseline + 2)
            emulator.finish_process(second.process_id)  # ... then the second job ends, its message lost
            for _ in range(28):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            assert (
                emulator.request_count(BG_PROGRESS) == baseline + 2
            )  # polls slowed to the reconcile interval
            assert len(done) == 1
            for _ in range(4):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            await eventually(lambda: len(done) == 2)  # the reconcile poll (t+32) found it
        assert done == [first, second]


async def test_polling_returns_to_its_pace_when_push_goes_quiet() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, clock=clock, poll_policy=FAST, push=hub, trust_env=False
        ) as client,
    ):
        other = await client.background_remover.remove(PNG)
        job = await client.background_remover.remove(PNG)
        waiting = anyio.Event()

        async def wait() -> None:
            waiting.set()
            await job.result()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await waiting.wait()
            await anyio.wait_all_tasks_blocked()
            await hub.publish(task_completed(other, other.task_ids[0]))  # push flows (for another job)
            for _ in range(61):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            quiet = emulator.request_count(BG_PROGRESS)
            for _ in range(5):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            assert emulator.request_count(BG_PROGRESS) >= quiet + 4  # back to one poll a second
            tg.cancel_scope.cancel()


async def test_duplicates_and_stale_messages_never_go_backwards() -> None:
    hub = NotificationHub()
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(
            **emulator.credentials,
            user_id=USER,
            push=hub,
            trust_env=False,
            poll_policy=PollPolicy(initial_interval=30, max_interval=30),
        ) as client,
    ):
        job = await client.creatives.generate(
            brand_image=PNG,
            background_image=PNG,
            main_headline="h",
            punchline="p",
            action_text="a",
            color1_hex="#fff",
            color2_hex="#000",
            render_kind=1,
            render_type=2,
        )
        tasks = list(job.task_ids)
        updates: list[Any] = []

        def progress(states: dict[str, int]) -> ProgressNotification:
            done = sum(1 for s in states.values() if s == 5)
            message = decode_notification(
                encode(
                    progress_body(
                        UserId=USER,
                        ImageRenderProcessId=job.process_id,
                        Tasks=states,
                        TotalTaskCount=5,
                        CompletedTaskCount=done,
                        Progress=done * 20,
                    )
                )
            )
            assert isinstance(message, ProgressNotification)
            return message

        async def wait() -> None:
            async for update in job.wait_until_complete():
                updates.append(update)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await eventually(lambda: len(updates) == 5)
            newer = progress({t: (5 if i < 3 else 1) for i, t in enumerate(tasks)})
            older = progress({t: (5 if i < 1 else 1) for i, t in enumerate(tasks)})
            await hub.publish(newer)
            await eventually(lambda: len(updates) == 8)
            await hub.publish(older)  # arrives late: ignored
            await hub.publish(newer)  # a duplicate: dropped by the hub
            completed = decode_notification(
                encode(completed_body(UserId=USER, ImageRenderProcessId=job.process_id, TaskId=tasks[0]))
            )
            assert isinstance(completed, TaskCompletedNotification)
            await hub.publish(completed)  # already known: no update
            await anyio.sleep(0.01)
            assert len(updates) == 8
            await hub.publish(progress(dict.fromkeys(tasks, 5)))
        assert [(u.previous, u.state) for u in updates[5:]] == [
            (RenderState.STARTED, RenderState.SUCCEEDED)
        ] * 5
        assert all(u.previous != RenderState.SUCCEEDED for u in updates)
        assert job.is_complete


# ------------------------------------------------------------------ cycles, pacing per key, merging


def pushed_client(emulator: Emulator, clock: ManualClock, hub: NotificationHub) -> AdCreativeClient:
    """A client whose polls are due only when the manual clock moves: whatever ends a wait without
    moving it came by push."""
    return AdCreativeClient(
        **emulator.credentials, user_id=USER, clock=clock, poll_policy=FAST, push=hub, trust_env=False
    )


def generation_completed(job: RenderJob, task_id: str) -> TaskCompletedNotification:
    message = decode_notification(
        encode(completed_body(UserId=job.user_id, ImageRenderProcessId=job.process_id, TaskId=task_id))
    )
    assert isinstance(message, TaskCompletedNotification)
    return message


async def test_hub_forgets_a_reopened_process_and_compares_ids_case_insensitively() -> None:
    hub = NotificationHub()
    seen: list[str] = []
    hub.subscribe(lambda m: seen.append(m.image_render_process_id))
    message = decode_notification(encode(completed_body()))
    shouting = decode_notification(
        encode(completed_body(ImageRenderProcessId=PROCESS.upper(), TaskId=TASK.upper()))
    )
    assert await hub.publish(message)
    assert not await hub.publish(shouting)  # the same GUIDs in another case: the same event
    hub.reopen(PROCESS.upper())  # an edit re-opened the process: its new cycle repeats the keys
    assert await hub.publish(message)
    assert not await hub.publish(message)
    assert seen == [PROCESS, PROCESS]


async def test_an_edited_process_completes_on_its_new_cycles_messages() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with Emulator(auto_complete=False) as emulator, pushed_client(emulator, clock, hub) as client:
        job = await client.creatives.generate(**creative_inputs())
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(job.result)
                await anyio.wait_all_tasks_blocked()
                emulator.finish_process(job.process_id)
                for task in job.task_ids:
                    await hub.publish(generation_completed(job, task))
        assert job.is_complete
        edited_tasks = list(job.task_ids[:2])
        edited = await client.creatives.edit(edited_tasks, punchline="Now 20% off")
        assert edited.progress is not None
        assert edited.progress.completed_task_count == 3  # its progress dropped: the new cycle runs
        updates: list[Any] = []

        async def follow() -> None:
            async for update in edited.wait_until_complete():
                updates.append(update)

        with anyio.fail_after(5):  # the clock never moves: only push can end this wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await eventually(lambda: len(updates) == len(edited.task_ids))
                emulator.finish_process(job.process_id)
                for task in edited_tasks:  # the same (type, process, task, state) as the first cycle's
                    await hub.publish(generation_completed(job, task))
        assert edited.is_complete
        assert [(u.task_id, u.state) for u in updates[-2:]] == [
            (t, RenderState.SUCCEEDED) for t in edited_tasks
        ]
        assert client.scheduler_stats["requests"] == 0


async def test_push_slows_the_polls_only_of_the_feature_and_user_it_reaches() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    alone = dataclasses.replace(FAST, share_listings=False)  # each user's polls of its own
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, clock=clock, poll_policy=alone, push=hub, trust_env=False
        ) as client,
    ):
        pushed = await client.background_remover.remove(PNG)  # its messages arrive
        other_feature = await client.creatives.generate(**creative_inputs())  # none for it
        other_user = await client.background_remover.remove(PNG, user_id=str(uuid.uuid4()))  # nor it
        done: list[RenderJob] = []

        async def wait_all() -> None:
            async for job in client.as_completed([pushed, other_feature, other_user]):
                done.append(job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(1.0)
            await eventually(lambda: client.scheduler_stats["requests"] == 3)  # one poll for each key
            emulator.finish_process(pushed.process_id)
            await hub.publish(task_completed(pushed, pushed.task_ids[0]))  # push flows for that key
            await eventually(lambda: len(done) == 1)
            generation_polls = emulator.request_count(GEN_PROGRESS)
            for _ in range(10):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            # Both keys without messages keep one poll a second; the pushed key stays quiet (its job
            # is done, and its polls would have slowed to 30 s anyway).
            assert emulator.request_count(GEN_PROGRESS) >= generation_polls + 9
            assert client.scheduler_stats["requests"] >= 3 + 2 * 9
            tg.cancel_scope.cancel()
        assert done == [pushed]


async def test_pacing_is_per_key_while_one_key_gets_messages() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with Emulator(auto_complete=False) as emulator, pushed_client(emulator, clock, hub) as client:
        pushed = [await client.background_remover.remove(PNG) for _ in range(2)]
        quiet = await client.creatives.generate(**creative_inputs())

        async with anyio.create_task_group() as tg:
            for job in (*pushed, quiet):
                tg.start_soon(job.result)
            await anyio.wait_all_tasks_blocked()
            await hub.publish(task_completed(pushed[0], pushed[0].task_ids[0]))  # push flows, for bg only
            emulator.finish_process(pushed[0].process_id)
            bg, gen = emulator.request_count(BG_PROGRESS), emulator.request_count(GEN_PROGRESS)
            for _ in range(10):
                await clock.advance(1.0)
                await anyio.sleep(0.002)
            assert emulator.request_count(GEN_PROGRESS) >= gen + 9  # its normal pace: 1 s
            assert emulator.request_count(BG_PROGRESS) <= bg + 1  # reconciling only (30 s)
            tg.cancel_scope.cancel()


async def test_a_progress_message_without_tasks_or_counts_keeps_what_is_known() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with Emulator(auto_complete=False) as emulator, pushed_client(emulator, clock, hub) as client:
        job = await client.creatives.generate(**creative_inputs())
        known = job.progress
        assert known is not None
        assert known.total_task_count == 5
        updates: list[Any] = []

        async def follow() -> None:
            async for update in job.wait_until_complete():
                updates.append(update)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await eventually(lambda: len(updates) == 5)
                # Only the structure every message shares (reference §2.5): no tasks, no counts.
                bare = {"MessageType": "ImageGenerationProgress", "ApplicationId": APP, "UserId": USER}
                bare["ImageRenderProcessId"] = job.process_id
                await hub.publish(decode_notification(encode(bare)))
                await anyio.sleep(0.005)
                snapshot = client._poll_scheduler().snapshot(("creatives", USER), job.process_id)
                assert snapshot is not None
                assert snapshot.progress.tasks == known.tasks  # nothing invented, nothing lost
                assert snapshot.progress.total_task_count == 5
                assert snapshot.progress.completed_task_count == 0
                emulator.finish_process(job.process_id)
                for task in job.task_ids:
                    await hub.publish(generation_completed(job, task))  # push alone ends the wait
        assert job.is_complete
        assert len(updates) == 10
        assert client.scheduler_stats["requests"] == 0


async def test_a_late_message_for_a_task_a_partial_listing_counted_is_not_counted_twice() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with (
        Emulator(auto_complete=False, partial_tasks=True) as emulator,
        pushed_client(emulator, clock, hub) as client,
    ):
        job = await client.creatives.generate(**creative_inputs())
        every = list(emulator.process(job.process_id).tasks)
        listed = [t for t in every if t in {x.lower() for x in job.task_ids}]
        unlisted = [t for t in every if t not in listed]
        assert len(every) == 5
        assert len(listed) == 3
        scheduler = client._poll_scheduler()

        async with anyio.create_task_group() as tg:
            tg.start_soon(job.result)
            await anyio.wait_all_tasks_blocked()
            emulator.finish_task(unlisted[0])
            await clock.advance(1.0)  # a poll: 1 of 5 counted complete, the task not listed
            await eventually(lambda: client.scheduler_stats["requests"] == 1)
            await anyio.sleep(0.005)
            snap = scheduler.snapshot(("creatives", USER), job.process_id)
            assert snap is not None
            assert snap.progress.completed_task_count == 1
            await hub.publish(generation_completed(job, unlisted[0]))  # late: already counted
            for task in listed:
                emulator.finish_task(task)
                await hub.publish(generation_completed(job, task))
            await anyio.sleep(0.005)
            snap = scheduler.snapshot(("creatives", USER), job.process_id)
            assert snap is not None
            assert (snap.progress.completed_task_count, snap.progress.progress) == (4, 80)
            assert not job.is_complete  # the fifth task still renders
            emulator.finish_task(unlisted[1])
            await hub.publish(generation_completed(job, unlisted[1]))
        assert job.is_complete
        assert job.progress is not None
        assert job.progress.completed_task_count == 5


async def test_message_ids_match_jobs_whatever_their_case() -> None:
    clock = ManualClock()
    hub = NotificationHub()
    async with Emulator(auto_complete=False) as emulator, pushed_client(emulator, clock, hub) as client:
        started = await client.background_remover.remove(PNG)
        # The same process as another system stored it, in upper case (jobs keep the spelling they
        # are given); the messages spell every GUID in lower case.
        stored = {**started.to_dict(), "processId": started.process_id.upper(), "userId": USER.upper()}
        stored["taskIds"] = [t.upper() for t in started.task_ids]
        stored["progress"] = None
        job = client.job_from_json(stored)
        assert job.process_id == started.process_id.upper()
        assert job == started
        assert len({job, started}) == 1
        message = decode_notification(
            encode(
                completed_body(
                    "ImageBackgroundRemovingTaskCompleted",
                    UserId=USER.lower(),
                    ImageRenderProcessId=started.process_id.lower(),
                    TaskId=started.task_ids[0].lower(),
                    ImageContentBytes=None,
                )
            )
        )
        updates: list[Any] = []

        async def follow() -> None:
            async for update in job.wait_until_complete():
                updates.append(update)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await eventually(lambda: len(updates) == 1)  # its state, known from the start call
                await hub.publish(message)  # the clock stands still: only the message can end it
        assert job.is_complete
        assert len(updates) == 2
        assert len(job.task_ids) == 1
        assert client.scheduler_stats["requests"] == 0
