"""Push notifications: message models, the hub, the webhook receiver (ASGI and aiohttp), RabbitMQ.

The API delivers progress and task-completed messages to a webhook or a RabbitMQ exchange (reference
§2). Attach a :class:`NotificationHub` to the client (``AdCreativeClient(push=hub)``) and feed it from a
:class:`WebhookReceiver` (``adcreative_async.notifications.aiohttp`` for aiohttp apps, ``receiver.asgi``
for FastAPI/Starlette, ``receiver.wsgi`` or ``receiver.handle_sync`` for sync hosts: Flask, Django,
gunicorn sync workers, Celery) and/or a :class:`~adcreative_async.notifications.rabbitmq.RabbitMQSource`:
waits resolve as soon as a message arrives, and polling slows to a long reconcile interval while messages flow
(it takes over at its normal pace when they stop, so a lost message never hangs a wait; a message for a
process this client does not hold never slows its polls, see :mod:`adcreative_async._polling`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy
from ._hub import HANDOFF_TIMEOUT, Message, NotificationHandlerError, NotificationHub, WrongLoopError
from ._messages import (
    FEATURE_OF_MESSAGE_TYPE,
    MessageDecodeError,
    Notification,
    ProgressNotification,
    TaskCompletedNotification,
    UnknownMessageType,
    decode_notification,
)

if TYPE_CHECKING:
    from ._webhook import DEFAULT_MAX_BODY_SIZE, WebhookReceiver

# The client imports the hub and the messages; the receiver (and its WSGI adapter and access-log
# filter) is imported on first use, so that ``import adcreative_async`` does not pay for it.
_LAZY = {"DEFAULT_MAX_BODY_SIZE": "._webhook", "WebhookReceiver": "._webhook"}


def __getattr__(name: str) -> object:
    """Import the webhook receiver's names on first access, and keep them."""
    return _lazy.load_lazy(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return _lazy.lazy_dir(globals(), __all__)


__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "FEATURE_OF_MESSAGE_TYPE",
    "HANDOFF_TIMEOUT",
    "Message",
    "MessageDecodeError",
    "Notification",
    "NotificationHandlerError",
    "NotificationHub",
    "ProgressNotification",
    "TaskCompletedNotification",
    "UnknownMessageType",
    "WebhookReceiver",
    "WrongLoopError",
    "decode_notification",
]
