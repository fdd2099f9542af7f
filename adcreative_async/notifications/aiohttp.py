"""The webhook receiver for aiohttp applications: a request handler and a mountable sub-application.

Example::

    from aiohttp import web
    from adcreative_async.notifications import NotificationHub, WebhookReceiver
    from adcreative_async.notifications.aiohttp import webhook_app

    hub = NotificationHub()
    receiver = WebhookReceiver(hub, path_token=TOKEN)
    app = web.Application()
    app.add_subapp("/hooks/", webhook_app(receiver))     # register https://host/hooks/<TOKEN>
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ._webhook import WebhookReceiver

__all__ = ["webhook_app", "webhook_handler"]


def webhook_handler(receiver: WebhookReceiver) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for ``receiver``: route it with ``app.router.add_route("*", path, handler)``.

    It reads the body itself (up to ``receiver.max_body_size``), so aiohttp's own ``client_max_size``
    (1 MiB by default, too low for messages carrying images) does not apply to it.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        if request.method.upper() == "POST":
            refusal = receiver.check_access(request.path, headers)
            if refusal is not None:
                return _response(*refusal)
            limit = receiver.max_body_size
            if request.content_length is not None and request.content_length > limit:
                return _response(*receiver._refuse(413, f"body over {limit} bytes"))
            body = bytearray()
            while chunk := await request.content.read(64 * 1024):
                body += chunk
                if len(body) > limit:
                    return _response(*receiver._refuse(413, f"body over {limit} bytes"))
        else:
            body = bytearray()
        status, payload = await receiver._handle_any_loop(
            method=request.method, path=request.path, headers=headers, body=bytes(body)
        )
        return _response(status, payload)

    return handle


def webhook_app(receiver: WebhookReceiver) -> web.Application:
    """A sub-application serving ``receiver`` on every path below where it is mounted."""
    app = web.Application(client_max_size=receiver.max_body_size)
    app.router.add_route("*", "/{tail:.*}", webhook_handler(receiver))
    return app


def _response(status: int, payload: bytes) -> web.Response:
    return web.Response(status=status, body=payload, content_type="application/json")
