"""``PollPolicy(confirm_push=True)``: a push delivery is a hint that the client checks against the API
before it completes a wait, so a forged or replayed delivery — accepted by the receiver, which cannot tell
(the API signs nothing) — never completes a job; the real result still arrives."""

from __future__ import annotations

import base64
import dataclasses
import json

import anyio
import pytest
from helpers import eventually

from adcreative_async import AdCreativeClient, PollPolicy, Progress, RenderState
from adcreative_async.notifications import NotificationHub, WebhookReceiver
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
TOKEN = "confirm-test-token-0123456789"
PNG = sample_image("png", (8, 8))
PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
FAST = PollPolicy(initial_interval=0.02, max_interval=0.05, min_interval=0.01, jitter=None)
#: Polls that would come long after any test: what completes a wait sooner came by push.
SLOW = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)


def completed(application_id: str, process_id: str, task_id: str, **extra: object) -> bytes:
    return json.dumps(
        {
            "MessageType": "ImageBackgroundRemovingTaskCompleted",
            "ApplicationId": application_id,
            "UserId": USER,
            "ImageRenderProcessId": process_id,
            "TaskId": task_id,
            "IsSuccessful": True,
            **extra,
        }
    ).encode()


def forged(application_id: str, process_id: str, task_id: str) -> bytes:
    """A delivery that says the task is done, with an image and a URL of someone else's."""
    return completed(
        application_id,
        process_id,
        task_id,
        ImageContentBytes=base64.b64encode(b"not your render").decode(),
        ResultUrl="https://attacker.example/render.png",
    )


@pytest.mark.parametrize("confirm", [False, True], ids=["trusted", "confirmed"])
async def test_a_forged_delivery_completes_a_wait_only_when_push_is_trusted(confirm: bool) -> None:
    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    policy = dataclasses.replace(FAST, confirm_push=confirm)
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, push=hub, poll_policy=policy) as client,
    ):
        job = await client.background_remover.remove(PNG)
        [task] = job.task_ids
        results: list[Progress] = []

        async def wait() -> None:
            results.append(await job.result(timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await eventually(lambda: client.scheduler_stats["waiters"] == 1)
            status, _ = await receiver.handle(
                method="POST",
                path=f"/hooks/{TOKEN}",
                headers={},
                body=forged(emulator.application_id, job.process_id, task),
            )
            assert status == 200  # the receiver cannot tell a forged delivery from the API's
            if not confirm:
                await eventually(lambda: bool(results))
                # the wait said done while the API's render is still running: what confirm mode prevents
                assert results[0].tasks[task] == RenderState.SUCCEEDED
                assert emulator.task(task).state != RenderState.SUCCEEDED
                return
            seen = emulator.request_count(PROGRESS)
            await eventually(lambda: emulator.request_count(PROGRESS) >= seen + 3)  # polls answered since
            assert not results  # the forged delivery changed nothing
            assert job.progress is None or job.progress.tasks.get(task) != RenderState.SUCCEEDED
            emulator.finish_task(task)
            await eventually(lambda: bool(results))  # the real result arrives (by polling: see below)
        assert results[0].tasks[task] == RenderState.SUCCEEDED
        assert emulator.task(task).state == RenderState.SUCCEEDED


async def test_in_confirm_mode_a_delivery_makes_the_client_ask_the_api_now() -> None:
    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    policy = dataclasses.replace(SLOW, confirm_push=True)
    async with (
        Emulator(auto_complete=False) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, push=hub, poll_policy=policy) as client,
    ):
        job = await client.background_remover.remove(PNG)
        [task] = job.task_ids
        results: list[Progress] = []

        async def wait() -> None:
            results.append(await job.result(timeout=20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await eventually(lambda: client.scheduler_stats["waiters"] == 1)  # its first poll: in 30 s
            before = emulator.request_count(PROGRESS)
            emulator.finish_task(task)
            body = completed(emulator.application_id, job.process_id, task)
            assert (await receiver.handle(method="POST", path=f"/hooks/{TOKEN}", headers={}, body=body))[
                0
            ] == 200
            await eventually(lambda: bool(results))  # long before the next 30 s poll
        assert results[0].tasks[task] == RenderState.SUCCEEDED
        assert emulator.request_count(PROGRESS) == before + 1  # one request confirmed the delivery
        assert client.scheduler_stats["requests"] == 1
        assert client.scheduler_stats["pushes"] == 1
