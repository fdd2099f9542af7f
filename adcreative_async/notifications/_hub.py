"""The notification hub: where every push source delivers, and where clients and handlers listen.

Sources (webhook receivers, RabbitMQ consumers) call :meth:`NotificationHub.publish`; subscribers are
the clients' poll schedulers (their waits resolve at once) and your own handlers. Delivery is at least
once everywhere (webhook retries, RabbitMQ redeliveries, republishing between replicas), so the hub drops
a message it has already seen — the same (type, process, task, state), ids compared case-insensitively —
within a bounded window. An edit re-opens a process under the same id, and its new cycle sends messages
with the same keys as the first: :meth:`NotificationHub.reopen` (called by a client whose edit call
returned) forgets what was seen of that process, so the new cycle's messages are news.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .._errors import AdCreativeError
from ._messages import ProgressNotification, TaskCompletedNotification

__all__ = ["Message", "NotificationHandlerError", "NotificationHub"]

logger = logging.getLogger("adcreative_async.notifications")

Message = TaskCompletedNotification | ProgressNotification
"""A decoded notification."""

Handler = Callable[[Message], Awaitable[Any] | Any]
"""A subscriber: called with each new message; may be a coroutine function."""

PUBLISHING_SOURCE: ContextVar[str] = ContextVar("adcreative_push_source", default="direct")
"""While subscribers run, the ``source`` of the message being published (``"webhook"``, …)."""


class NotificationHandlerError(AdCreativeError):
    """A subscriber failed on a message: the source should not acknowledge it (it will come again)."""

    def __init__(self, message: str, errors: list[BaseException]) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass
class _Subscription:
    handler: Handler
    sources: frozenset[str] | None


class NotificationHub:
    """Fans notifications out to subscribers, once each.

    Args:
        dedup_window: how many recent message keys are remembered to drop duplicates.

    Example::

        hub = NotificationHub()
        async with AdCreativeClient(push=hub) as client:      # waits resolve as messages arrive
            app.add_subapp("/hooks", WebhookReceiver(hub, path_token=TOKEN).aiohttp_app())
    """

    def __init__(self, *, dedup_window: int = 10_000) -> None:
        self.id = uuid.uuid4().hex
        """Identifies this hub in republished messages (so it ignores its own echoes)."""
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._by_process: dict[str, list[tuple[Any, ...]]] = {}  # process id -> its keys in _seen
        self._window = dedup_window
        self._subscriptions: list[_Subscription] = []
        self.received = 0
        """Messages published to the hub, duplicates included."""
        self.duplicates = 0
        """Messages dropped as already seen."""

    def __repr__(self) -> str:
        return f"NotificationHub(subscribers={len(self._subscriptions)}, received={self.received})"

    def subscribe(self, handler: Handler, *, sources: Collection[str] | None = None) -> Callable[[], None]:
        """Call ``handler`` with every new message (from ``sources`` only, if given); returns the
        function that unsubscribes it.

        A handler may be a plain function (it must not block) or a coroutine function; a source
        acknowledges a message only after every handler returned, so a handler that raises makes the
        source deliver the message again (at least once: make handlers idempotent).
        """
        subscription = _Subscription(handler, frozenset(sources) if sources is not None else None)
        self._subscriptions.append(subscription)

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

        return unsubscribe

    def seen(self, message: Message) -> bool:
        """Whether this message (by its dedup key) was already published."""
        return _key(message) in self._seen

    def reopen(self, process_id: str) -> None:
        """Forget the messages seen of ``process_id``: an edit re-opened it, and the messages of its new
        cycle repeat the keys of the previous cycle's (they must reach the subscribers). A redelivery of
        an old message that arrives after this is delivered again (delivery is at least once anyway)."""
        for key in self._by_process.pop(process_id.lower(), ()):
            self._seen.pop(key, None)

    def _remember(self, key: tuple[Any, ...]) -> None:
        self._seen[key] = None
        self._by_process.setdefault(key[1], []).append(key)
        if len(self._seen) > self._window:
            self._forget(self._seen.popitem(last=False)[0])

    def _forget(self, key: tuple[Any, ...]) -> None:
        keys = self._by_process.get(key[1])
        if keys is not None:
            if key in keys:
                keys.remove(key)
            if not keys:
                del self._by_process[key[1]]

    async def publish(self, message: Message, *, source: str = "direct") -> bool:
        """Deliver ``message`` to the subscribers unless it is a duplicate.

        Args:
            source: where it came from (``"webhook"``, ``"rabbitmq"``, …); subscribers may filter on it.

        Returns:
            True if the message was new.

        Raises:
            NotificationHandlerError: a handler raised (the others still ran); the message is forgotten
                so that a redelivery is handled again.
        """
        self.received += 1
        key = _key(message)
        ids = {"process_id": message.image_render_process_id}
        task_id = getattr(message, "task_id", None)
        if task_id is not None:
            ids["task_id"] = task_id
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            logger.debug("%s from %s: a duplicate, dropped", message.message_type, source, extra=ids)
            return False
        logger.debug(
            "%s from %s for process %s",
            message.message_type,
            source,
            message.image_render_process_id,
            extra=ids,
        )
        self._remember(key)
        errors: list[BaseException] = []
        publishing = PUBLISHING_SOURCE.set(source)
        try:
            for subscription in list(self._subscriptions):
                if subscription.sources is not None and source not in subscription.sources:
                    continue
                try:
                    result = subscription.handler(message)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    logger.exception("notification handler %r failed", subscription.handler)
                    errors.append(exc)
        finally:
            PUBLISHING_SOURCE.reset(publishing)
        if errors:
            if self._seen.pop(key, 0) is None:
                self._forget(key)
            raise NotificationHandlerError(
                f"{len(errors)} handler(s) failed on {message.message_type} for process "
                f"{message.image_render_process_id}",
                errors,
            )
        return True


def _key(message: Message) -> tuple[Any, ...]:
    """The message's dedup key, its ids lower-cased (GUIDs: the same id in another case is the same);
    the process id is second."""
    return tuple(part.lower() if isinstance(part, str) else part for part in message.dedup_key)
