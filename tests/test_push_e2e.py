"""Push end to end: the emulator delivers notifications to a webhook receiver or a RabbitMQ broker, and
waits resolve on them — also across processes — with polling as the safety net.

The RabbitMQ tests need a broker: ``.ci/run`` starts a private node and sets ``ADCREATIVE_TEST_AMQP_URL``
(and ``ADCREATIVE_TEST_RABBITMQ_DIR`` for the restart test). Locally: ``.ci/rabbitmq start /tmp/rmq`` and
export the URL it prints. Without it they are skipped, with that reason.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import eventually, webhook_receiver

from adcreative_async import AdCreativeClient, PollPolicy, RenderJob, RenderState, TaskUpdate
from adcreative_async.notifications import (
    NotificationHub,
    ProgressNotification,
    TaskCompletedNotification,
)
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
TOKEN = "push-e2e-token-0123456789abcdef"
PNG = sample_image("png", (8, 8))
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("ADCREATIVE_TEST_AMQP_URL")
RABBITMQ_DIR = os.environ.get("ADCREATIVE_TEST_RABBITMQ_DIR")
_skip_without_broker = pytest.mark.skipif(
    not AMQP_URL, reason="needs a RabbitMQ broker: set ADCREATIVE_TEST_AMQP_URL (.ci/run starts one)"
)


def needs_rabbitmq(test: Callable[..., Any]) -> Callable[..., Any]:
    """Marked ``rabbitmq`` (``-m "not rabbitmq"`` leaves them out) and skipped without a broker."""
    marked: Callable[..., Any] = pytest.mark.rabbitmq(_skip_without_broker(test))
    return marked


#: Polling that would take far longer than any test: a wait that resolves came from push.
NO_POLLING = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, NotificationHub]]:
    async with webhook_receiver(TOKEN) as (url, hub):
        yield url, hub


async def collect(job: RenderJob, sink: list[TaskUpdate]) -> None:
    async for update in job.wait_until_complete(timeout=20):
        sink.append(update)


# --------------------------------------------------------------------------------------------- webhook


async def test_emulator_webhooks_resolve_waits_without_polling(
    receiver_url: tuple[str, NotificationHub],
) -> None:
    url, hub = receiver_url
    async with (
        Emulator(task_duration=(0.05, 0.2), notification_channel=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=NO_POLLING, trust_env=False
        ) as client,
    ):
        emulator.add_notification_channel("webhook", url)
        jobs = [await client.background_remover.remove(PNG) for _ in range(5)]
        done = [job async for job in client.as_completed(jobs, timeout=20)]
        assert len(done) == 5
        assert client.scheduler_stats["requests"] == 0  # every completion came by push
        assert emulator.request_count(BG_PROGRESS) == 1  # the listing before the first start call
        kinds = {d.message_type for d in emulator.deliveries}
        assert kinds == {"ImageBackgroundRemovingTaskCompleted", "ImageBackgroundRemovingProgress"}
        assert {d.status for d in emulator.deliveries} == {200}
        assert client.scheduler_stats["pushes"] >= 5


async def test_task_completed_messages_can_carry_the_image(
    receiver_url: tuple[str, NotificationHub], tmp_path: Path
) -> None:
    url, hub = receiver_url
    saved: list[Path] = []

    async def save(message: Any) -> None:
        if isinstance(message, TaskCompletedNotification):
            saved.append(await message.save_image(tmp_path))

    hub.subscribe(save)
    async with (
        Emulator(task_duration=0.05, notification_channel=False, image_size=(32, 32)) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, push=hub, trust_env=False) as client,
    ):
        emulator.add_notification_channel("webhook", url, include_image_data=True)
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=20)
        await eventually(lambda: len(saved) == 1)
        (task,) = job.task_ids
        assert saved[0] == tmp_path / f"{task}.png"
        assert saved[0].read_bytes().startswith(b"\x89PNG")
        assert emulator.download_count(task) == 0  # no download request


async def test_duplicated_and_reordered_notifications_never_repeat_or_go_back(
    receiver_url: tuple[str, NotificationHub],
) -> None:
    url, hub = receiver_url
    async with (
        Emulator(
            auto_complete=False,
            notification_channel=False,
            notification_duplicate_rate=1.0,
            reorder_notifications=True,
            seed=5,
        ) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=NO_POLLING, trust_env=False
        ) as client,
    ):
        emulator.add_notification_channel("webhook", url)
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
        updates: list[TaskUpdate] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, job, updates)
            await eventually(lambda: len(updates) == 5)
            for task in job.task_ids:
                emulator.finish_task(task)
                await anyio.sleep(0.02)
            emulator.add_notification_channel("webhook", "")  # a last touch flushes the held message
        assert hub.duplicates > 0
        changes = [(u.task_id, u.previous, u.state) for u in updates[5:]]
        assert sorted(changes) == sorted(
            (t, RenderState.STARTED, RenderState.SUCCEEDED) for t in job.task_ids
        )
        assert job.is_complete


async def test_lost_notifications_fall_back_to_polling(receiver_url: tuple[str, NotificationHub]) -> None:
    url, hub = receiver_url
    policy = PollPolicy(
        initial_interval=0.02,
        max_interval=0.05,
        min_interval=0.01,
        jitter=None,
        push_reconcile_interval=0.3,
        push_quiet_after=5,
    )
    async with (
        Emulator(
            task_duration=0.05, notification_channel=False, notification_loss_rate=0.5, seed=11
        ) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=policy, trust_env=False
        ) as client,
    ):
        emulator.add_notification_channel("webhook", url)
        jobs = [await client.background_remover.remove(PNG) for _ in range(6)]
        done = [job async for job in client.as_completed(jobs, timeout=20)]
    assert len(done) == 6
    assert any(d.status == "dropped" for d in emulator.deliveries)
    assert emulator.request_count(BG_PROGRESS) > 0  # polling caught what was lost


# -------------------------------------------------------------------------------------------- rabbitmq


@needs_rabbitmq
async def test_rabbitmq_broadcast_resolves_waits() -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQSource

    assert AMQP_URL is not None
    hub = NotificationHub()
    async with (
        RabbitMQSource(hub, AMQP_URL, mode="broadcast") as source,
        Emulator(task_duration=(0.05, 0.2), notification_channel=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=hub, poll_policy=NO_POLLING, trust_env=False
        ) as client,
    ):
        emulator.add_notification_channel("rabbitmq", AMQP_URL)
        jobs = [await client.background_remover.remove(PNG) for _ in range(4)]
        done = [job async for job in client.as_completed(jobs, timeout=20)]
        assert len(done) == 4
        assert client.scheduler_stats["requests"] == 0  # resolved by push alone
        assert source.consumed >= 4
        assert {d.status for d in emulator.deliveries} == {"confirmed"}


@needs_rabbitmq
async def test_work_queue_shares_messages_between_competing_workers() -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQPublisher, RabbitMQSource

    assert AMQP_URL is not None
    queue = f"adcreative-test-{uuid.uuid4().hex[:8]}"
    handled: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    hubs = {name: NotificationHub() for name in handled}

    def handler(name: str) -> Callable[[Any], None]:
        return lambda m: handled[name].append((m.process_id, getattr(m, "task_id", "")))

    for name, hub in hubs.items():
        hub.subscribe(handler(name))
    origin = NotificationHub()
    count = 40
    async with (
        RabbitMQSource(hubs["a"], AMQP_URL, mode="work_queue", queue=queue, prefetch=1),
        RabbitMQSource(hubs["b"], AMQP_URL, mode="work_queue", queue=queue, prefetch=1),
        RabbitMQPublisher(origin, AMQP_URL, sources=["test"]),
    ):
        for i in range(count):
            message = TaskCompletedNotification(
                message_type="ImageBackgroundRemovingTaskCompleted",
                user_id=USER,
                image_render_process_id=str(uuid.uuid4()),
                task_id=str(uuid.UUID(int=i + 1)),
            )
            await origin.publish(message, source="test")
        await eventually(lambda: len(handled["a"]) + len(handled["b"]) >= count)
        await anyio.sleep(0.1)
    everything = handled["a"] + handled["b"]
    assert len(everything) == count  # nothing lost
    assert len(set(everything)) == count  # nothing handled twice
    assert handled["a"]
    assert handled["b"]  # both workers got a share


async def _publish_raw(url: str, exchange: str, body: bytes) -> None:
    """One message on the exchange, as the API would send it (persistent, no message id)."""
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        target = await channel.declare_exchange(exchange, type="topic", durable=True)
        await target.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="task.completed",
        )
    finally:
        await connection.close()


async def _queue_depth(url: str, queue: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


def _poison() -> tuple[NotificationHub, list[str]]:
    """A hub whose one handler always fails, and the list of the deliveries it saw."""
    hub = NotificationHub()
    calls: list[str] = []

    def always_fails(message: Any) -> None:
        calls.append(message.process_id)
        raise RuntimeError("the handler's database is down")

    hub.subscribe(always_fails)
    return hub, calls


POISON = TaskCompletedNotification(
    message_type="ImageBackgroundRemovingTaskCompleted",
    user_id=USER,
    image_render_process_id="51d690da-f5ea-405e-90ff-10d56b0d633f",
    task_id="9baa8e55-ddc8-4940-907f-eb5fc81e53f6",
)


@needs_rabbitmq
@pytest.mark.parametrize("dead_letter", [True, False], ids=["dead-lettered", "dropped"])
async def test_a_message_whose_handler_keeps_failing_is_redelivered_a_bounded_number_of_times(
    dead_letter: bool,
) -> None:
    import aio_pika
    import msgspec

    from adcreative_async.notifications.rabbitmq import RabbitMQSource

    assert AMQP_URL is not None
    name = uuid.uuid4().hex[:8]
    exchange, queue, dlx, dead = f"ex-{name}", f"q-{name}", f"dlx-{name}", f"dead-{name}"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    dead_exchange = await channel.declare_exchange(dlx, type="fanout")
    dead_queue = await channel.declare_queue(dead, auto_delete=False)
    await dead_queue.bind(dead_exchange)
    hub, calls = _poison()
    arguments = {"x-dead-letter-exchange": dlx} if dead_letter else None
    try:
        async with RabbitMQSource(
            hub,
            AMQP_URL,
            mode="work_queue",
            queue=queue,
            exchange=exchange,
            max_redeliveries=3,
            redelivery_delay=0.001,
            max_redelivery_delay=0.004,
            queue_arguments=arguments,
        ) as source:
            await _publish_raw(AMQP_URL, exchange, msgspec.json.encode(POISON))
            with anyio.fail_after(10):
                await eventually(lambda: source.dead_lettered == 1, seconds=10)
            await anyio.sleep(0.05)  # a redelivery would come back now
            assert len(calls) == 4  # the first delivery and 3 more, then never again
            assert source.requeued == 3
            assert source.consumed == 0
            assert await _queue_depth(AMQP_URL, queue) == 0
        assert await _queue_depth(AMQP_URL, dead) == (1 if dead_letter else 0)
    finally:
        await channel.queue_delete(dead)
        await channel.queue_delete(queue)
        await connection.close()


@needs_rabbitmq
async def test_a_quorum_queue_counts_redeliveries_across_competing_workers() -> None:
    import msgspec

    from adcreative_async.notifications.rabbitmq import RabbitMQSource

    assert AMQP_URL is not None
    name = uuid.uuid4().hex[:8]
    exchange, queue = f"ex-{name}", f"q-{name}"
    (hub_a, calls_a), (hub_b, calls_b) = _poison(), _poison()
    options: dict[str, Any] = {
        "mode": "work_queue",
        "queue": queue,
        "exchange": exchange,
        "max_redeliveries": 3,
        "redelivery_delay": 0.001,
        "max_redelivery_delay": 0.004,
        "queue_arguments": {"x-queue-type": "quorum"},
        "prefetch": 1,
    }
    try:
        async with (
            RabbitMQSource(hub_a, AMQP_URL, **options) as a,
            RabbitMQSource(hub_b, AMQP_URL, **options) as b,
        ):
            await _publish_raw(AMQP_URL, exchange, msgspec.json.encode(POISON))
            with anyio.fail_after(10):
                await eventually(lambda: a.dead_lettered + b.dead_lettered == 1, seconds=10)
            await anyio.sleep(0.05)
            # The broker's x-delivery-count is shared: 4 deliveries in all, whichever worker got them.
            assert len(calls_a) + len(calls_b) == 4
    finally:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await connection.close()


@needs_rabbitmq
async def test_broadcast_resolves_a_wait_in_a_second_process() -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQSource

    assert AMQP_URL is not None
    async with Emulator(auto_complete=False, notification_channel=False) as emulator:
        emulator.add_notification_channel("rabbitmq", AMQP_URL)
        async with AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client:
            job = await client.background_remover.remove(PNG)
        script = ROOT / "tests" / "push_worker.py"
        args = [
            sys.executable,
            str(script),
            json.dumps({**emulator.credentials, "amqp_url": AMQP_URL}),
            job.to_json().decode(),
        ]
        process = await anyio.open_process(args, cwd=str(ROOT))
        try:
            assert process.stdout is not None
            ready = await process.stdout.receive()
            assert b"ready" in ready
            local_hub = NotificationHub()
            seen: list[Any] = []
            local_hub.subscribe(seen.append)
            async with RabbitMQSource(local_hub, AMQP_URL, mode="broadcast"):
                emulator.finish_process(job.process_id)
                with anyio.fail_after(20):
                    output = b""
                    while b"done" not in output:
                        output += await process.stdout.receive()
                await eventually(lambda: len(seen) >= 1)  # this process heard it too
            assert b"polls=0" in output  # the other process resolved its wait by push alone
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


@needs_rabbitmq
@pytest.mark.skipif(not RABBITMQ_DIR, reason="needs ADCREATIVE_TEST_RABBITMQ_DIR to restart the broker")
async def test_the_source_reconnects_after_a_broker_restart() -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQPublisher, RabbitMQSource

    assert AMQP_URL is not None
    assert RABBITMQ_DIR is not None
    hub = NotificationHub()
    got: list[Any] = []
    hub.subscribe(got.append)
    origin = NotificationHub()

    def message(i: int) -> ProgressNotification:
        return ProgressNotification(
            message_type="ImageGenerationProgress",
            user_id=USER,
            image_render_process_id=str(uuid.UUID(int=i)),
        )

    async with RabbitMQSource(hub, AMQP_URL, mode="work_queue", queue=f"restart-{uuid.uuid4().hex[:6]}"):
        async with RabbitMQPublisher(origin, AMQP_URL, sources=["test"]):
            await origin.publish(message(1), source="test")
            await eventually(lambda: len(got) == 1)
        restart = await anyio.run_process(
            [str(ROOT / ".ci" / "rabbitmq"), "restart", RABBITMQ_DIR], check=False
        )
        assert restart.returncode == 0, restart.stderr
        async with RabbitMQPublisher(origin, AMQP_URL, sources=["test"]):
            for attempt in range(60):
                try:
                    await origin.publish(message(2 + attempt), source="test")
                except Exception:  # the broker may still be starting its listeners
                    await anyio.sleep(0.5)
                    continue
                break
            await eventually(lambda: len(got) >= 2, seconds=30)


@needs_rabbitmq
async def test_a_webhook_in_one_replica_resolves_waits_in_another(
    receiver_url: tuple[str, NotificationHub],
) -> None:
    from adcreative_async.notifications.rabbitmq import RabbitMQPublisher, RabbitMQSource

    assert AMQP_URL is not None
    url, replica_a = receiver_url  # replica A receives the webhooks ...
    replica_b = NotificationHub()  # ... replica B only listens to RabbitMQ
    async with (
        RabbitMQPublisher(replica_a, AMQP_URL),
        RabbitMQSource(replica_b, AMQP_URL, mode="broadcast"),
        Emulator(task_duration=(0.05, 0.1), notification_channel=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, push=replica_b, poll_policy=NO_POLLING, trust_env=False
        ) as client,
    ):
        emulator.add_notification_channel("webhook", url)
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=20)
        assert client.scheduler_stats["requests"] == 0  # resolved by push alone
