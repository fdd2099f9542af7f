"""RabbitMQ: consume the API's notifications (and republish webhook messages) with aio-pika.

Install aio-pika: ``pip install aio-pika`` (the ``rabbitmq`` extra).

The API publishes to the exchange ``image-render.notifications`` with routing keys ``task.completed`` and
``progress.update`` (reference §2.4). The exchange's type is not documented: ``exchange_type`` (default
``topic``: assumed, the dotted keys suggest it) and ``passive=True`` to only check an exchange someone else
declared. Two modes:

- ``"work_queue"``: one durable queue shared by worker processes; each message goes to one worker and is
  acknowledged after every handler of the hub returned (a failure hands it back). Delivery is at least
  once: handlers must be idempotent by (process, task, state) — the hub already drops duplicates it has
  seen.
- ``"broadcast"``: a private, exclusive queue per process; every process gets every message, so a wait in
  any process resolves, whichever process the API (or a webhook replica) delivered to.

A message whose handlers fail is handed back after a delay that doubles with each failed delivery of it
(``redelivery_delay`` up to ``max_redelivery_delay``); after ``max_redeliveries`` it is rejected without
requeueing: the broker dead-letters it if the queue has a dead-letter exchange (``queue_arguments=
{"x-dead-letter-exchange": ...}``), else drops it, and the source logs it either way. Failed deliveries
are counted by the ``x-delivery-count`` header where the broker sets it (quorum queues), and otherwise
by the source itself (a classic queue only flags a message ``redelivered``): then each consumer counts
its own deliveries, so with N competing workers a poison message is delivered at most N times the
bound.

Connections are robust: after a broker restart the source reconnects and resumes consuming.
:class:`RabbitMQPublisher` republishes what a webhook receiver got, so that waits in other replicas
resolve (persistent messages, publisher confirms; a replica ignores its own echoes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import msgspec

from .._clock import Clock, SystemClock
from ._hub import Message, NotificationHandlerError, NotificationHub
from ._messages import MessageDecodeError, TaskCompletedNotification, UnknownMessageType, decode_notification

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )

__all__ = [
    "DEFAULT_EXCHANGE",
    "PROGRESS_ROUTING_KEY",
    "TASK_COMPLETED_ROUTING_KEY",
    "RabbitMQPublisher",
    "RabbitMQSource",
]

logger = logging.getLogger("adcreative_async.notifications.rabbitmq")

#: Documented (reference §2.4).
DEFAULT_EXCHANGE = "image-render.notifications"
TASK_COMPLETED_ROUTING_KEY = "task.completed"
PROGRESS_ROUTING_KEY = "progress.update"
#: assumed: the exchange type is undocumented; the dotted routing keys suggest a topic exchange.
DEFAULT_EXCHANGE_TYPE = "topic"
#: The header naming the hub that republished a message (so that it ignores its own echo).
ORIGIN_HEADER = "x-adcreative-hub"
#: The header in which RabbitMQ counts a message's failed deliveries (quorum queues only).
DELIVERY_COUNT_HEADER = "x-delivery-count"
#: Defaults of a failing message's redeliveries: at most this many after the first delivery, the first
#: after this delay (doubling each time, up to the maximum).
DEFAULT_MAX_REDELIVERIES = 5
DEFAULT_REDELIVERY_DELAY = 0.5
DEFAULT_MAX_REDELIVERY_DELAY = 30.0
#: Failed messages the source remembers to count their deliveries on classic queues.
FAILURES_REMEMBERED = 10_000

Mode = Literal["work_queue", "broadcast"]


def _aio_pika() -> Any:
    try:
        import aio_pika
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "RabbitMQ support needs aio-pika: pip install aio-pika (the SDK's rabbitmq extra)"
        ) from None
    return aio_pika


def routing_key(message: Message) -> str:
    """The documented routing key of a message."""
    return (
        TASK_COMPLETED_ROUTING_KEY if isinstance(message, TaskCompletedNotification) else PROGRESS_ROUTING_KEY
    )


class _Connected:
    """A robust connection, a channel and the exchange: what both the source and the publisher need."""

    def __init__(self, url: str, exchange: str, exchange_type: str, passive: bool) -> None:
        self.url = url
        self.exchange_name = exchange
        self.exchange_type = exchange_type
        self.passive = passive
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None

    async def open(self, *, publisher_confirms: bool, prefetch: int | None = None) -> None:
        aio_pika = _aio_pika()
        self.connection = await aio_pika.connect_robust(self.url)
        channel = await self.connection.channel(publisher_confirms=publisher_confirms)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        self.channel = channel
        if self.passive:
            self.exchange = await channel.get_exchange(self.exchange_name, ensure=True)
        else:
            self.exchange = await channel.declare_exchange(
                self.exchange_name, type=self.exchange_type, durable=True
            )

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.close()


class RabbitMQSource:
    """Consumes notifications from RabbitMQ into a :class:`NotificationHub`. An async context manager.

    Args:
        hub: where messages go.
        url: the broker, e.g. ``amqp://user:password@host/vhost`` (never logged).
        mode: ``"broadcast"`` (default: every process gets every message) or ``"work_queue"``.
        queue: the shared durable queue's name (work_queue mode).
        exchange, exchange_type, passive: see the module docs.
        routing_keys: what to bind (default both documented keys).
        prefetch: unacknowledged messages in flight per consumer.
        max_redeliveries: deliveries of a message whose handlers keep failing, after the first; then it
            is dead-lettered (or dropped) and logged (default 5).
        redelivery_delay, max_redelivery_delay: the wait before a failed message is handed back, the
            first time (default 0.5 s), doubling up to the maximum (default 30 s). The message holds
            one of the ``prefetch`` slots meanwhile.
        queue_arguments: arguments of the declared queue, e.g. ``{"x-dead-letter-exchange": "dlx"}``
            or ``{"x-queue-type": "quorum"}`` (work_queue mode: they must match an existing queue's).
        clock: time and sleeping (tests pass a manual one).

    Example::

        hub = NotificationHub()
        async with RabbitMQSource(hub, "amqp://guest:guest@localhost/"), AdCreativeClient(push=hub) as client:
            await job.result()   # resolves as soon as the message arrives, in any process
    """

    def __init__(
        self,
        hub: NotificationHub,
        url: str,
        *,
        mode: Mode = "broadcast",
        queue: str = "adcreative-notifications",
        exchange: str = DEFAULT_EXCHANGE,
        exchange_type: str = DEFAULT_EXCHANGE_TYPE,
        passive: bool = False,
        routing_keys: Sequence[str] = (TASK_COMPLETED_ROUTING_KEY, PROGRESS_ROUTING_KEY),
        prefetch: int = 64,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
        redelivery_delay: float = DEFAULT_REDELIVERY_DELAY,
        max_redelivery_delay: float = DEFAULT_MAX_REDELIVERY_DELAY,
        queue_arguments: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if mode not in ("work_queue", "broadcast"):
            raise ValueError(f"mode must be 'work_queue' or 'broadcast', got {mode!r}")
        if max_redeliveries < 0 or redelivery_delay < 0 or max_redelivery_delay < redelivery_delay:
            raise ValueError(
                "RabbitMQSource needs max_redeliveries >= 0 and 0 <= redelivery_delay <= max_redelivery_delay"
            )
        _aio_pika()
        self.hub = hub
        self.mode = mode
        self.queue_name = queue
        self.routing_keys = tuple(routing_keys)
        self.prefetch = prefetch
        self.max_redeliveries = max_redeliveries
        self.redelivery_delay = redelivery_delay
        self.max_redelivery_delay = max_redelivery_delay
        self.queue_arguments = dict(queue_arguments or {})
        self._clock: Clock = clock or SystemClock()
        self._link = _Connected(url, exchange, exchange_type, passive)
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._failures: OrderedDict[str, int] = OrderedDict()  # failed deliveries per message
        self.consumed = 0
        """Messages acknowledged (handled, ignored or duplicates)."""
        self.requeued = 0
        """Messages handed back because a handler failed."""
        self.dead_lettered = 0
        """Messages rejected after ``max_redeliveries`` (dead-lettered, or dropped without a DLX)."""

    def __repr__(self) -> str:
        exchange = self._link.exchange_name
        return f"RabbitMQSource(mode={self.mode!r}, exchange={exchange!r}, consumed={self.consumed})"

    async def __aenter__(self) -> RabbitMQSource:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, declare and bind the queue, and start consuming."""
        link = self._link
        await link.open(publisher_confirms=False, prefetch=self.prefetch)
        assert link.channel is not None
        assert link.exchange is not None
        arguments = self.queue_arguments or None
        if self.mode == "work_queue":
            queue = await link.channel.declare_queue(self.queue_name, durable=True, arguments=arguments)
        else:
            queue = await link.channel.declare_queue(
                "", exclusive=True, auto_delete=True, arguments=arguments
            )
        for key in self.routing_keys:
            await queue.bind(link.exchange, routing_key=key)
        self._queue = queue
        self._consumer_tag = await queue.consume(self._on_message)

    async def close(self) -> None:
        """Stop consuming and close the connection (messages in flight are requeued by the broker)."""
        queue, tag = self._queue, self._consumer_tag
        self._queue = self._consumer_tag = None
        if queue is not None and tag is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await queue.cancel(tag)
                except Exception:  # the connection may already be gone
                    logger.debug("cancelling the consumer failed", exc_info=True)
        await self._link.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        if headers.get(ORIGIN_HEADER) == self.hub.id:
            await message.ack()  # our own republished message coming back
            return
        try:
            notification = decode_notification(message.body)
        except UnknownMessageType as exc:
            logger.info("rabbitmq: ignored a message of unknown type %r", exc.message_type)
            await message.ack()
            return
        except MessageDecodeError as exc:
            logger.warning("rabbitmq: dropped a malformed message: %s", exc)
            await message.reject(requeue=False)
            return
        try:
            await self.hub.publish(notification, source="rabbitmq")
        except NotificationHandlerError:
            await self._failed(message, notification)
            return
        self._failures.pop(self._identity(message), None)
        self.consumed += 1
        await message.ack()

    @staticmethod
    def _identity(message: AbstractIncomingMessage) -> str:
        """What identifies a message across its deliveries: its id, else a digest of its body."""
        if message.message_id:
            return f"id:{message.message_id}"
        return hashlib.blake2b(message.body, digest_size=16).hexdigest()

    def _failed_before(self, message: AbstractIncomingMessage, identity: str) -> int:
        """Failed deliveries of this message before this one."""
        counted = (message.headers or {}).get(DELIVERY_COUNT_HEADER)
        broker = counted if isinstance(counted, int) and not isinstance(counted, bool) else 0
        if not message.redelivered:
            self._failures.pop(identity, None)  # a first delivery: a new message with the same body
            return broker
        return max(broker, self._failures.get(identity, 0))

    async def _failed(self, message: AbstractIncomingMessage, notification: Message) -> None:
        """A handler failed: hand the message back after a growing delay, or past the bound reject it
        (dead-lettered if the queue has a dead-letter exchange, else dropped)."""
        identity = self._identity(message)
        failures = self._failed_before(message, identity) + 1
        self._failures.pop(identity, None)
        what = f"{notification.message_type} for process {notification.image_render_process_id}"
        if failures > self.max_redeliveries:
            logger.error(
                "rabbitmq: handlers failed on %s %d times: rejected (dead-lettered if the queue has a "
                "dead-letter exchange, else dropped)",
                what,
                failures,
            )
            self.dead_lettered += 1
            await message.reject(requeue=False)
            return
        self._failures[identity] = failures
        while len(self._failures) > FAILURES_REMEMBERED:
            self._failures.popitem(last=False)
        delay = min(self.max_redelivery_delay, self.redelivery_delay * 2 ** (failures - 1))
        logger.warning(
            "rabbitmq: a handler failed on %s (delivery %d of at most %d); handed back in %.2fs",
            what,
            failures,
            self.max_redeliveries + 1,
            delay,
        )
        await self._clock.sleep(delay)
        self.requeued += 1
        await message.nack(requeue=True)


class RabbitMQPublisher:
    """Republishes the hub's messages (by default those a webhook receiver got) to RabbitMQ, so that waits
    in other replicas resolve. Persistent messages, publisher confirms. An async context manager.

    Args:
        hub: the hub to forward from.
        url: the broker (never logged).
        sources: which sources' messages to forward (default: ``("webhook",)``).
        exchange, exchange_type, passive: as :class:`RabbitMQSource`.
    """

    def __init__(
        self,
        hub: NotificationHub,
        url: str,
        *,
        sources: Sequence[str] = ("webhook",),
        exchange: str = DEFAULT_EXCHANGE,
        exchange_type: str = DEFAULT_EXCHANGE_TYPE,
        passive: bool = False,
    ) -> None:
        _aio_pika()
        self.hub = hub
        self.sources = tuple(sources)
        self._link = _Connected(url, exchange, exchange_type, passive)
        self._unsubscribe: Any = None
        self.published = 0

    def __repr__(self) -> str:
        return f"RabbitMQPublisher(exchange={self._link.exchange_name!r}, published={self.published})"

    async def __aenter__(self) -> RabbitMQPublisher:
        await self._link.open(publisher_confirms=True)
        # bound to this loop: its connection lives here
        self._unsubscribe = self.hub.subscribe(
            self.publish, sources=self.sources, loop=asyncio.get_running_loop()
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._link.close()

    async def publish(self, message: Message) -> None:
        """Publish one message (waits for the broker's confirm)."""
        aio_pika = _aio_pika()
        exchange = self._link.exchange
        if exchange is None:
            raise RuntimeError("use `async with RabbitMQPublisher(...)`")
        await exchange.publish(
            aio_pika.Message(
                msgspec.json.encode(message),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={ORIGIN_HEADER: self.hub.id},
            ),
            routing_key=routing_key(message),
        )
        self.published += 1
