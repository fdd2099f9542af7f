"""The webhook receiver: the framework-independent core, and an ASGI application (FastAPI/Starlette).

The API signs nothing (reference §2.3), so the receiver offers two guards, both compared in constant
time: an unguessable path token (the last path segment of the webhook URL you register) and/or a
shared-secret header (for a proxy or gateway in front that can add one). Status codes follow the docs'
guidance: 200 for handled messages and for well-formed messages of a type the SDK does not know (ignored,
for forward compatibility), 400 for malformed payloads, 500 when a handler failed (the sender may retry);
plus 404 for a wrong path token, 401 for a wrong secret, 405 for other methods, 413 for oversized bodies.
The body limit is high by default (64 MiB): messages may carry images as base64.

The aiohttp integration lives in :mod:`adcreative_async.notifications.aiohttp`.

Sync hosts (Flask, Django, gunicorn's sync workers, Celery, any thread) use :attr:`WebhookReceiver.wsgi`
(a WSGI application) or :meth:`WebhookReceiver.handle_sync`: the request is checked in the calling
thread (guards, size, decoding), then the message is handed to the loop of the client fed by the hub (a
``SyncAdCreativeClient`` runs its loop in a thread of its own) and the thread waits for the subscribers'
answer, so that sync waits resolve on push exactly as async ones do. The async :meth:`WebhookReceiver.handle`
called on another loop (``asyncio.run(receiver.handle(...))`` in a Flask view) raises
:class:`~adcreative_async.notifications.WrongLoopError` naming these adapters; the ASGI and aiohttp
adapters hand the message over themselves when their server's loop is not the client's (a FastAPI app
using a ``SyncAdCreativeClient``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ._access_log import install_access_log_redaction
from ._hub import HANDOFF_TIMEOUT, Message, NotificationHandlerError, NotificationHub, WrongLoopError
from ._messages import MessageDecodeError, UnknownMessageType, decode_notification
from ._wsgi import WSGIApp

__all__ = ["DEFAULT_MAX_BODY_SIZE", "WebhookReceiver"]

logger = logging.getLogger("adcreative_async.notifications.webhook")

#: Default body limit: generous, since task-completed messages may carry the image as base64.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class WebhookReceiver:
    """Receives the API's webhook calls and publishes each message to a :class:`NotificationHub`.

    Args:
        hub: where messages go (clients attached to it resolve their waits).
        path_token: if set, the last path segment of the request must equal it (register
            ``https://your.host/hooks/<token>`` as the webhook URL). Use a long random value
            (``secrets.token_urlsafe(32)``). Building the receiver takes it out of the access logs
            of uvicorn, gunicorn and aiohttp in this process (see
            :mod:`adcreative_async.notifications.redaction`, also for server spans).
        secret: if set, the ``secret_header`` header must equal it.
        secret_header: the header carrying the secret (default ``X-Webhook-Secret``).
        max_body_size: larger bodies get 413 (default 64 MiB).

    Mount it: ``app.mount("/hooks", receiver.asgi)`` (FastAPI/Starlette), or
    ``app.add_subapp("/hooks/", adcreative_async.notifications.aiohttp.webhook_app(receiver))``; in a
    sync host (Flask, Django, gunicorn sync workers): ``DispatcherMiddleware(app, {"/hooks": receiver.wsgi})``
    or ``receiver.handle_sync(headers, body, path=...)`` in a view.
    """

    def __init__(
        self,
        hub: NotificationHub,
        *,
        path_token: str | None = None,
        secret: str | None = None,
        secret_header: str = "X-Webhook-Secret",
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if path_token is not None and len(path_token) < 16:
            raise ValueError("path_token must be at least 16 characters (use secrets.token_urlsafe(32))")
        self.hub = hub
        self._token = path_token.encode() if path_token is not None else None
        if path_token is not None:
            install_access_log_redaction(path_token)
        self._secret = secret.encode() if secret is not None else None
        self.secret_header = secret_header
        self.max_body_size = max_body_size
        self.handled = 0
        """Messages accepted (200), duplicates included."""
        self.rejected = 0
        """Requests refused (any status but 200)."""
        self.handoff_timeout = HANDOFF_TIMEOUT
        """Seconds a sync adapter waits for the client's loop to take a message (then 503)."""
        self._asgi = _ASGIApp(self)
        self._wsgi = WSGIApp(self)

    def __repr__(self) -> str:
        guards = [g for g, on in (("path token", self._token), ("secret", self._secret)) if on]
        return f"WebhookReceiver(guards={guards or 'none'}, max_body_size={self.max_body_size})"

    # ----------------------------------------------------------------------------------------- core

    def check_access(self, path: str, headers: Mapping[str, str]) -> tuple[int, bytes] | None:
        """The refusal for a request that fails a guard (before its body is read), else None."""
        if self._token is not None:
            segment = path.rstrip("/").rsplit("/", 1)[-1].encode()
            if not hmac.compare_digest(segment, self._token):
                return self._refuse(404, "not found")
        if self._secret is not None:
            given = headers.get(self.secret_header) or headers.get(self.secret_header.lower()) or ""
            if not hmac.compare_digest(given.encode(), self._secret):
                return self._refuse(401, "missing or wrong secret")
        return None

    def verify(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Message | tuple[int, bytes]:
        """Check one request without publishing it: the decoded message, or the answer to give now
        (a refusal, or 200 for a message of a type the SDK does not know). Every adapter does this first."""
        if method.upper() != "POST":
            return self._refuse(405, "only POST")
        refusal = self.check_access(path, headers)
        if refusal is not None:
            return refusal
        if len(body) > self.max_body_size:
            return self._refuse(413, f"body over {self.max_body_size} bytes")
        if not body.strip():
            return self._refuse(400, "empty body")
        try:
            return decode_notification(body)
        except UnknownMessageType as exc:
            logger.info("webhook: ignored a message of unknown type %r", exc.message_type)
            self.handled += 1
            return 200, _json({"status": "ignored", "reason": str(exc)})
        except MessageDecodeError as exc:
            return self._refuse(400, str(exc))

    async def handle(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Answer one request: (status, JSON body). Async frameworks adapt their request to this; it must
        run on the loop of the client the hub feeds.

        Raises:
            WrongLoopError: the hub feeds a client whose loop is not the running one (e.g.
                ``asyncio.run(receiver.handle(...))`` in a Flask view, with a ``SyncAdCreativeClient``):
                use :attr:`wsgi` or :meth:`handle_sync` there.
        """
        self.hub.check_loop()
        verdict = self.verify(method=method, path=path, headers=headers, body=body)
        if isinstance(verdict, tuple):
            return verdict
        try:
            new = await self.hub.publish(verdict, source="webhook")
        except NotificationHandlerError as exc:
            return self._failed(exc)
        return self._accepted(new)

    def handle_sync(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        path: str = "",
        method: str = "POST",
        environ: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes]:
        """Answer one request from sync code (a Django or Flask view, a Celery task, any thread):
        (status, JSON body). The request is checked here, then the message is handed to the loop of
        the client the hub feeds (a ``SyncAdCreativeClient``'s own thread) and this thread waits for its
        subscribers (at most :attr:`handoff_timeout` seconds, then 503 so that the sender retries).

        Args:
            headers: the request's headers (any mapping; names are matched case-insensitively for the
                secret header when the mapping is, as Django's and Flask's are).
            body: the raw body (read it with your framework's limit, or let the receiver refuse it).
            path: the request's path: its last segment is checked against ``path_token``.
            method: the request's method (only POST is accepted).
            environ: the WSGI environ (Django: ``request.META``; Flask: ``request.environ``): when its
                server runs several processes (``wsgi.multiprocess``: gunicorn ``-w 2``), each gets part
                of the messages, so the hub is marked ``split_deliveries`` (polls never slow for push).

        Example (Django)::

            @csrf_exempt
            def adcreative_webhook(request, token):
                status, payload = receiver.handle_sync(
                    request.headers, request.body, path=request.path, environ=request.META
                )
                return HttpResponse(payload, status=status, content_type="application/json")

        Raises:
            WrongLoopError: called on the client's own loop thread (``await receiver.handle()`` there),
                or in a forked child of the process that opened the client (open it in each worker).
        """
        if environ is not None and environ.get("wsgi.multiprocess") and not self.hub.split_deliveries:
            self.hub.split_deliveries = True
            logger.info("webhook: the WSGI server runs several processes: push will not slow polling")
        verdict = self.verify(method=method, path=path, headers=headers, body=body)
        if isinstance(verdict, tuple):
            return verdict
        try:
            new = self.hub.publish_threadsafe(verdict, source="webhook", timeout=self.handoff_timeout)
        except NotificationHandlerError as exc:
            return self._failed(exc)
        except concurrent.futures.TimeoutError:
            logger.warning("webhook: the client's event loop did not take a message in time (503)")
            return self._refuse(503, "busy: try again")
        return self._accepted(new)

    async def _handle_any_loop(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """:meth:`handle` for a server's adapter: on the client's loop as is, else handed to that loop
        (an ASGI or aiohttp server whose loop is not the client's: a ``SyncAdCreativeClient`` in it)."""
        try:
            self.hub.check_loop()
        except WrongLoopError:
            home = self.hub.home_loop()
            if home is None:
                raise  # bound to a loop of the parent process (a fork): nothing to hand over to
        else:
            return await self.handle(method=method, path=path, headers=headers, body=body)
        verdict = self.verify(method=method, path=path, headers=headers, body=body)
        if isinstance(verdict, tuple):
            return verdict
        future = asyncio.run_coroutine_threadsafe(self.hub.publish(verdict, source="webhook"), home)
        try:
            new = await asyncio.wait_for(asyncio.wrap_future(future), self.handoff_timeout)
        except NotificationHandlerError as exc:
            return self._failed(exc)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return self._refuse(503, "busy: try again")
        return self._accepted(new)

    def _accepted(self, new: bool) -> tuple[int, bytes]:
        self.handled += 1
        return 200, _json({"status": "ok" if new else "duplicate"})

    def _failed(self, exc: NotificationHandlerError) -> tuple[int, bytes]:
        self.rejected += 1
        return 500, _json({"error": str(exc)})

    def _refuse(self, status: int, reason: str) -> tuple[int, bytes]:
        self.rejected += 1
        return status, _json({"error": reason})

    # ----------------------------------------------------------------------------------------- ASGI

    @property
    def asgi(self) -> Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]:
        """The receiver as an ASGI 3 application: mount it in FastAPI/Starlette
        (``app.mount("/hooks", receiver.asgi)``), or serve it alone (``uvicorn.run(receiver.asgi)``).

        An object whose ``__call__`` is a coroutine function, not a bound method: servers that detect
        the ASGI version from the callable (uvicorn's default ``interface="auto"``) take a bound
        method for an ASGI 2 application.
        """
        return self._asgi

    async def _serve_asgi(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = str(scope.get("path", ""))
        status, payload = await self._asgi_answer(scope, headers, path, receive)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _asgi_answer(
        self, scope: ASGIScope, headers: Mapping[str, str], path: str, receive: ASGIReceive
    ) -> tuple[int, bytes]:
        method = str(scope.get("method", "GET"))
        if method.upper() != "POST":
            return self._refuse(405, "only POST")
        refusal = self.check_access(path, headers)
        if refusal is not None:
            return refusal
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            return self._refuse(413, f"body over {self.max_body_size} bytes")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                return self._refuse(400, "client disconnected")
            chunk = bytes(event.get("body", b""))
            size += len(chunk)
            if size > self.max_body_size:
                return self._refuse(413, f"body over {self.max_body_size} bytes")
            chunks.append(chunk)
            more = bool(event.get("more_body", False))
        return await self._handle_any_loop(method=method, path=path, headers=headers, body=b"".join(chunks))

    # ----------------------------------------------------------------------------------------- WSGI

    @property
    def wsgi(self) -> WSGIApp:
        """The receiver as a WSGI application, for sync hosts: Flask (``app.wsgi_app =
        DispatcherMiddleware(app.wsgi_app, {"/hooks": receiver.wsgi})``), Django (a URL routed to it),
        or any WSGI server alone (``gunicorn 'module:receiver.wsgi'``). Each request is checked in the
        server's thread and its message handed to the client's loop (see :meth:`handle_sync`)."""
        return self._wsgi


class _ASGIApp:
    """A receiver's ASGI 3 application (see :attr:`WebhookReceiver.asgi`)."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: WebhookReceiver) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<ASGI app of {self._receiver!r}>"

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        await self._receiver._serve_asgi(scope, receive, send)
