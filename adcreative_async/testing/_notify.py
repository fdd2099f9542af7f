"""Notification delivery: the emulator tells the application's channels when tasks end (reference §2).

A task that reaches a terminal state sends a ``…TaskCompleted`` message (with the image as base64
``ImageContentBytes`` when the channel has ``includeImageData``), and every change of a process's progress
sends a ``…Progress`` message (assumed: the docs disagree on whether progress messages come on every change
or only at the end, §14 item 4; ``progress_notifications="on_completion"`` sends only the final one). The
bodies are PascalCase JSON (the task-completed one as documented; the progress one is the REST progress
object in PascalCase, assumed). Webhook channels get an HTTP POST; RabbitMQ channels (``amqp://`` URLs) get
a persistent message on the exchange ``image-render.notifications`` with routing key ``task.completed`` or
``progress.update``, with publisher confirms.

Tasks end lazily in the emulator (computed when someone looks), so the notifier keeps its own schedule of
when each process next changes and looks then. Faults for tests: lost, duplicated and reordered messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from . import _responses as responses
from ._images import color_for, png_bytes
from ._options import EmulatorOptions
from ._state import TERMINAL_STATES, EmulatorClock, NotificationChannel, Process, State, TaskState

__all__ = ["Delivery", "Notifier"]

logger = logging.getLogger("adcreative_async.testing.notify")

#: Documented (reference §2.4).
RABBITMQ_EXCHANGE = "image-render.notifications"
TASK_COMPLETED_KEY = "task.completed"
PROGRESS_KEY = "progress.update"
WEBHOOK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Delivery:
    """One message sent (or attempted) to one channel, for tests to inspect."""

    channel_id: str
    kind: str
    message_type: str
    process_id: str
    task_id: str | None
    status: int | str
    """The webhook's HTTP status, ``"confirmed"`` for RabbitMQ, or the error's name."""


@dataclass
class _Pending:
    channel: NotificationChannel
    body: dict[str, Any]
    routing_key: str


@dataclass
class _Seen:
    """What was last notified of a process: task states and progress."""

    tasks: dict[str, int] = field(default_factory=dict)
    progress: tuple[int, int] | None = None


def _pascal(body: dict[str, Any]) -> dict[str, Any]:
    return {key[:1].upper() + key[1:]: value for key, value in body.items() if not key.startswith("$")}


class Notifier:
    """Watches processes and delivers their messages to the owning application's channels."""

    def __init__(self, state: State, clock: EmulatorClock, options: EmulatorOptions) -> None:
        self._state = state
        self._clock = clock
        self._options = options
        self._schedule: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._seen: dict[str, _Seen] = {}
        self._queue: list[_Pending] = []
        self._wake = anyio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._amqp_connections: dict[str, Any] = {}
        self._amqp_exchanges: dict[str, Any] = {}
        self._rng = random.Random(options.seed)
        self._held: _Pending | None = None
        self.deliveries: list[Delivery] = []
        """Every delivery attempt, in order."""

    # ------------------------------------------------------------------------------------- lifetime

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: delivers while the emulator's application runs (a task of the
        aiohttp server's, so the emulator can be started and closed from different tasks)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        runner = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await self._close_connections()

    async def _close_connections(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._amqp_exchanges.clear()
        for connection in self._amqp_connections.values():
            with anyio.CancelScope(shield=True):
                await connection.close()
        self._amqp_connections.clear()

    # ---------------------------------------------------------------------------------- scheduling

    def touch(self, process: Process) -> None:
        """A process changed (started, edited, a control moved its tasks): look at it now and when its
        next task ends."""
        heapq.heappush(self._schedule, (self._clock.now(), next(self._seq), process.process_id))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = self._clock.now()
            while self._schedule and self._schedule[0][0] <= now:
                _, _, process_id = heapq.heappop(self._schedule)
                self._look_at(process_id, now)
            if self._queue:
                await self._flush()
                continue
            delay = self._schedule[0][0] - now if self._schedule else None
            self._wake = anyio.Event()
            with anyio.move_on_after(delay if delay is not None else 3600):
                await self._wake.wait()

    def _look_at(self, process_id: str, now: float) -> None:
        process = self._state.processes.get(process_id)
        if process is None:
            return
        app = self._state.applications.get(process.application_id)
        # a channel without a URL stands for one configured out of band: nothing to deliver to
        channels = [c for c in app.channels.values() if c.active and c.url] if app is not None else []
        progress_type = responses.MESSAGE_TYPES.get(process.feature)
        if not channels or progress_type is None:
            return  # no channel (adding one looks again), or a feature without notification types
        process.refresh(now)
        if process.next_due is not None:
            heapq.heappush(self._schedule, (process.next_due, next(self._seq), process_id))
        seen = self._seen.setdefault(process_id, _Seen())
        completed_type = progress_type.removesuffix("Progress") + "TaskCompleted"
        for task in process.tasks.values():
            before = seen.tasks.get(task.task_id)
            if task.state in TERMINAL_STATES and before != task.state:
                for channel in channels:
                    body = self._task_completed(
                        process, task.task_id, task.state, task.error_message, completed_type
                    )
                    if channel.include_image_data and task.state == TaskState.SUCCEEDED:
                        width, height = self._options.image_size
                        image = png_bytes(width, height, color_for(task.task_id))
                        body["ImageContentBytes"] = base64.b64encode(image).decode()
                    self._enqueue(channel, body, TASK_COMPLETED_KEY)
            seen.tasks[task.task_id] = task.state
        progress = (process.completed_task_count, process.progress)
        if progress != seen.progress:
            seen.progress = progress
            final = process.completed_task_count == len(process.tasks)
            if self._options.progress_notifications == "every_change" or final:
                body = _pascal(responses.progress_object(process, self._options))
                for channel in channels:
                    self._enqueue(channel, body, PROGRESS_KEY)

    @staticmethod
    def _task_completed(
        process: Process, task_id: str, state: int, error: str, message_type: str
    ) -> dict[str, Any]:
        succeeded = state == TaskState.SUCCEEDED
        return {
            "MessageType": message_type,
            "ApplicationId": process.application_id,
            "UserId": process.user_id,
            "ImageRenderProcessId": process.process_id,
            "TaskId": task_id,
            "ImageContentBytes": None,
            "IsSuccessful": succeeded,
            "ErrorMessage": "" if succeeded else error,
        }

    def _enqueue(self, channel: NotificationChannel, body: dict[str, Any], routing_key: str) -> None:
        options = self._options
        if options.notification_loss_rate and self._rng.random() < options.notification_loss_rate:
            self._record(channel, body, "dropped")
            return
        pending = _Pending(channel, body, routing_key)
        duplicate = options.notification_duplicate_rate
        copies = 2 if duplicate and self._rng.random() < duplicate else 1
        if options.reorder_notifications:
            if self._held is None:
                self._held = pending  # sent after the next message
                return
            self._queue.append(pending)
            pending, self._held = self._held, None
        self._queue.extend([pending] * copies)

    # ------------------------------------------------------------------------------------- delivery

    async def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for pending in queue:
            await self._deliver(pending)

    async def _deliver(self, pending: _Pending) -> None:
        channel, body = pending.channel, pending.body
        data = json.dumps(body).encode()
        try:
            if channel.kind == "rabbitmq" or channel.url.startswith(("amqp://", "amqps://")):
                await self._publish(channel, data, pending.routing_key)
                status: int | str = "confirmed"
            else:
                assert self._session is not None
                async with self._session.post(
                    channel.url, data=data, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    status = response.status
        except Exception as exc:  # a dead endpoint must not stop the emulator
            # the error's name only: aiohttp's errors carry the URL, whose path may hold a secret token
            status = type(exc).__name__
            logger.info("delivery to %s failed: %s", channel.kind, status)
        self._record(channel, body, status)

    async def _publish(self, channel: NotificationChannel, data: bytes, routing_key: str) -> None:
        import aio_pika  # only when a RabbitMQ channel is used

        exchange = self._amqp_exchanges.get(channel.url)
        if exchange is None:
            connection = self._amqp_connections.get(channel.url)
            if connection is None:
                connection = await aio_pika.connect_robust(channel.url)
                self._amqp_connections[channel.url] = connection
            rabbit = await connection.channel(publisher_confirms=True)
            exchange = await rabbit.declare_exchange(RABBITMQ_EXCHANGE, type="topic", durable=True)
            self._amqp_exchanges[channel.url] = exchange
        await exchange.publish(
            aio_pika.Message(
                data, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=routing_key,
        )

    def _record(self, channel: NotificationChannel, body: dict[str, Any], status: int | str) -> None:
        self.deliveries.append(
            Delivery(
                channel.channel_id,
                channel.kind,
                str(body.get("MessageType")),
                str(body.get("ImageRenderProcessId")),
                body.get("TaskId"),
                status,
            )
        )
