"""The notification hub: where every push source delivers, and where clients and handlers listen.

Sources (webhook receivers, RabbitMQ consumers) call :meth:`NotificationHub.publish`; subscribers are
the clients' poll schedulers (their waits resolve at once) and your own handlers. Delivery is at least
once everywhere (webhook retries, RabbitMQ redeliveries, republishing between replicas), so the hub drops
a message it has already seen — the same (type, process, task, state), ids compared case-insensitively —
within a bounded window. An edit re-opens a process under the same id, and its new cycle sends messages
with the same keys as the first: :meth:`NotificationHub.reopen` (called by a client whose edit call
returned) forgets what was seen of that process, so the new cycle's messages are news.

A subscriber may be bound to an event loop (``subscribe(handler, loop=...)``): a client's poll scheduler
is bound to the client's loop, whose state it changes. Messages are then published on that loop only:
:meth:`NotificationHub.publish` called on another loop raises :class:`WrongLoopError` (it used to run the
handler on the wrong loop, where its wake-ups were lost: the webhook was answered 200 and the wait
resolved by polling), and :meth:`NotificationHub.publish_threadsafe` hands a message over to that loop
from any thread (the sync webhook adapters of a :class:`~adcreative_async.notifications.WebhookReceiver`
use it: ``receiver.wsgi``, ``receiver.handle_sync``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .._errors import AdCreativeError
from ._messages import ProgressNotification, TaskCompletedNotification

__all__ = ["HANDOFF_TIMEOUT", "Message", "NotificationHandlerError", "NotificationHub", "WrongLoopError"]

logger = logging.getLogger("adcreative_async.notifications")

Message = TaskCompletedNotification | ProgressNotification
"""A decoded notification."""

Handler = Callable[[Message], Awaitable[Any] | Any]
"""A subscriber: called with each new message; may be a coroutine function."""

PUBLISHING_SOURCE: ContextVar[str] = ContextVar("adcreative_push_source", default="direct")
"""While a subscriber is called, the ``source`` of the message being published (``"webhook"``, …): its
synchronous part reads it (a coroutine subscriber reading it after its first ``await`` sees the default)."""

#: Seconds a sync adapter waits for the subscribers' loop to take a message (assumed: a bound well under
#: a webhook sender's own timeout; past it the delivery is refused with 503, so the sender retries).
HANDOFF_TIMEOUT = 10.0

#: What a wrong-loop error tells the developer to use instead.
SYNC_ADAPTERS = (
    "from a WSGI app (Flask, Django, gunicorn) or any thread without that loop, use the receiver's sync "
    "adapters: mount `receiver.wsgi`, or call `receiver.handle_sync(headers, body, path=...)`; "
    "not `asyncio.run(receiver.handle(...))`"
)


class NotificationHandlerError(AdCreativeError):
    """A subscriber failed on a message: the source should not acknowledge it (it will come again)."""

    def __init__(self, message: str, errors: list[BaseException]) -> None:
        super().__init__(message)
        self.errors = errors


class WrongLoopError(AdCreativeError, RuntimeError):
    """A message was published on an event loop that is not its subscribers' loop (e.g.
    ``asyncio.run(receiver.handle(...))`` in a Flask view while a ``SyncAdCreativeClient`` runs its loop
    in a thread of its own): the message is refused, not silently lost. The error names the adapter to use
    (``receiver.wsgi`` or ``receiver.handle_sync``)."""


@dataclass
class _Subscription:
    handler: Handler
    sources: frozenset[str] | None
    loop: asyncio.AbstractEventLoop | None = None
    pid: int = 0  # the process that subscribed (a forked child has no thread running the loop)


class NotificationHub:
    """Fans notifications out to subscribers, once each.

    Args:
        dedup_window: how many recent message keys are remembered to drop duplicates.
        split_deliveries: the webhook URL (or queue) feeding this hub also feeds other processes, each
            getting part of the messages (uvicorn ``--workers``, replicas behind a load balancer, no
            broker republishing between them): the clients attached to it then never slow their polls
            for push, since their own messages may land elsewhere. The WSGI adapter sets it when the
            server says it runs several processes (``wsgi.multiprocess``: gunicorn ``-w 2``).

    Example::

        hub = NotificationHub()
        async with AdCreativeClient(push=hub) as client:      # waits resolve as messages arrive
            app.add_subapp("/hooks", WebhookReceiver(hub, path_token=TOKEN).aiohttp_app())
    """

    def __init__(self, *, dedup_window: int = 10_000, split_deliveries: bool = False) -> None:
        self.id = uuid.uuid4().hex
        self.split_deliveries = split_deliveries
        """Whether other processes get part of this hub's messages (see the class's arguments)."""
        """Identifies this hub in republished messages (so it ignores its own echoes)."""
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._by_process: dict[str, list[tuple[Any, ...]]] = {}  # process id -> its keys in _seen
        self._window = dedup_window
        self._subscriptions: list[_Subscription] = []
        self._forked = False  # subscriptions bound to a loop of a parent process were dropped
        self.received = 0
        """Messages published to the hub, duplicates included."""
        self.duplicates = 0
        """Messages dropped as already seen."""

    def __repr__(self) -> str:
        return f"NotificationHub(subscribers={len(self._subscriptions)}, received={self.received})"

    def subscribe(
        self,
        handler: Handler,
        *,
        sources: Collection[str] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Callable[[], None]:
        """Call ``handler`` with every new message (from ``sources`` only, if given); returns the
        function that unsubscribes it.

        A handler may be a plain function (it must not block) or a coroutine function; a source
        acknowledges a message only after every handler returned, so a handler that raises makes the
        source deliver the message again (at least once: make handlers idempotent).

        Args:
            loop: the event loop the handler must run on (it touches that loop's state: a client's
                poll scheduler is bound to the client's loop). Messages are then published on that
                loop only: see :meth:`publish` and :meth:`publish_threadsafe`.
        """
        subscription = _Subscription(
            handler, frozenset(sources) if sources is not None else None, loop, os.getpid()
        )
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

    def _live(self) -> list[_Subscription]:
        """The subscriptions, without those bound to a loop of the parent of a forked child (its loop
        thread is not in this process: nothing would ever run there)."""
        pid = os.getpid()
        if any(s.loop is not None and s.pid != pid for s in self._subscriptions):
            self._forked = True
            self._subscriptions = [s for s in self._subscriptions if s.loop is None or s.pid == pid]
        return self._subscriptions

    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the subscribers are bound to (the first one, if several), or None when none
        is bound (messages may then be published on any loop)."""
        for subscription in self._live():
            if subscription.loop is not None:
                return subscription.loop
        return None

    def check_loop(self) -> None:
        """Raise :class:`WrongLoopError` unless :meth:`publish` may run here: no subscriber is bound to
        a loop, or the running loop is one of theirs."""
        bound = [s.loop for s in self._live() if s.loop is not None]
        if not bound:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or running not in bound:
            raise WrongLoopError(
                "this notification hub feeds a client whose event loop runs elsewhere (a "
                "SyncAdCreativeClient runs its own in a thread), so a message published here would never "
                f"wake its waits: {SYNC_ADAPTERS}"
            )

    def publish_threadsafe(
        self, message: Message, *, source: str = "direct", timeout: float = HANDOFF_TIMEOUT
    ) -> bool:
        """:meth:`publish` from any thread that does not run the subscribers' loop: the message is handed
        to that loop and this thread waits for the subscribers (at most ``timeout`` seconds). With no
        subscriber bound to a loop, it is published here, on a loop of its own.

        Raises:
            NotificationHandlerError: a handler raised.
            WrongLoopError: called from the subscribers' own loop thread (it would wait for itself:
                ``await publish()`` there), or in a forked child of the process that subscribed (its
                loop thread stayed in the parent: subscribe in each worker, after the fork).
            TimeoutError: the loop did not take the message in time (it stays published there).
        """
        home = self.home_loop()
        if home is None and self._forked:
            raise WrongLoopError(
                "this hub's client was opened in the parent of this process (a fork: its loop thread is "
                "not here): open the client in each worker process (e.g. a gunicorn post_fork hook)"
            )
        if home is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.publish(message, source=source))
            raise WrongLoopError("publish_threadsafe() called on an event loop: `await hub.publish()`")
        if _loop_thread_of(home) == threading.get_ident():
            raise WrongLoopError(
                "publish_threadsafe() called from the subscribers' own loop thread: `await hub.publish()`"
            )
        future = asyncio.run_coroutine_threadsafe(self.publish(message, source=source), home)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def publish(self, message: Message, *, source: str = "direct") -> bool:
        """Deliver ``message`` to the subscribers unless it is a duplicate.

        Args:
            source: where it came from (``"webhook"``, ``"rabbitmq"``, …); subscribers may filter on it.

        Returns:
            True if the message was new.

        Raises:
            NotificationHandlerError: a handler raised (the others still ran); the message is forgotten
                so that a redelivery is handled again.
            WrongLoopError: a subscriber is bound to another event loop than the running one (from a
                thread, use :meth:`publish_threadsafe`); nothing was delivered.
        """
        self.check_loop()
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
        for subscription in list(self._live()):
            if subscription.sources is not None and source not in subscription.sources:
                continue
            try:
                pending = _start(subscription, message, source)
                if pending is not None:
                    await pending
            except Exception as exc:
                logger.exception("notification handler %r failed", subscription.handler)
                errors.append(exc)
        if errors:
            if self._seen.pop(key, 0) is None:
                self._forget(key)
            raise NotificationHandlerError(
                f"{len(errors)} handler(s) failed on {message.message_type} for process "
                f"{message.image_render_process_id}",
                errors,
            )
        return True


async def _call(handler: Handler, message: Message) -> None:
    result = handler(message)
    if inspect.isawaitable(result):
        await result


def _loop_thread_of(loop: asyncio.AbstractEventLoop) -> int | None:
    """The id of the thread running ``loop`` (asyncio's base loops record it), if known."""
    thread_id = getattr(loop, "_thread_id", None)
    return thread_id if isinstance(thread_id, int) else None


def _start(subscription: _Subscription, message: Message, source: str) -> Awaitable[Any] | None:
    """Call a subscriber with :data:`PUBLISHING_SOURCE` set to ``source`` (its synchronous part reads
    it; a subscriber bound to another loop gets a copy of this context, the variable with it), and
    return what is left to await. The variable is set and reset here, never across an ``await``: a
    publish cut short (its loop closed while it waited for another loop) must not reset it from
    the context of whoever finalizes the coroutine."""
    publishing = PUBLISHING_SOURCE.set(source)
    try:
        if subscription.loop is not None and subscription.loop is not asyncio.get_running_loop():
            # bound to another client's loop (several clients on one hub): run it there
            call = _call(subscription.handler, message)
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, subscription.loop))
        result = subscription.handler(message)
        return result if inspect.isawaitable(result) else None
    finally:
        PUBLISHING_SOURCE.reset(publishing)


def _key(message: Message) -> tuple[Any, ...]:
    """The message's dedup key, its ids lower-cased (GUIDs: the same id in another case is the same);
    the process id is second."""
    return tuple(part.lower() if isinstance(part, str) else part for part in message.dedup_key)
