"""The webhook receiver as a WSGI application (:attr:`WebhookReceiver.wsgi`), for sync hosts.

It reads the request from the WSGI environ (the body up to the receiver's limit, refusing a larger one
before reading it when its length is declared), then answers with
:meth:`~adcreative_async.notifications.WebhookReceiver.handle_sync`: checked in the server's thread, the
message handed to the loop of the client the hub feeds. It keeps nothing of the request, and logs
nothing of its path (the path token is a secret).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._webhook import WebhookReceiver

__all__ = ["WSGIApp"]

#: Bytes read from ``wsgi.input`` at a time when the length is not declared (chunked bodies).
READ_CHUNK = 64 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]


class WSGIApp:
    """A receiver's WSGI application (see :attr:`WebhookReceiver.wsgi`)."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: WebhookReceiver) -> None:
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<WSGI app of {self._receiver!r}>"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request (PEP 3333)."""
        status, payload = self._answer(environ)
        start_response(
            f"{status} {_REASONS.get(status, 'Unknown')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _answer(self, environ: dict[str, Any]) -> tuple[int, bytes]:
        receiver = self._receiver
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        headers = _headers(environ)
        if method.upper() != "POST":
            return receiver._refuse(405, "only POST")
        refusal = receiver.check_access(path, headers)  # before the body is read
        if refusal is not None:
            return refusal
        body = _read_body(environ, receiver.max_body_size)
        if body is None:
            return receiver._refuse(413, f"body over {receiver.max_body_size} bytes")
        return receiver.handle_sync(headers, body, path=path, method=method, environ=environ)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers, names lower-cased (``HTTP_X_WEBHOOK_SECRET`` -> ``x-webhook-secret``)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = str(value)
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (refused before reading when declared)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared.isdigit():
        length = int(declared)
        if length > limit:
            return None
        return bytes(stream.read(length)) if length else b""
    # No length (chunked): only servers that mark the input terminated may be read to its end (PEP 3333
    # lets a server block on a read past the body otherwise; gunicorn sets the flag).
    if not environ.get("wsgi.input_terminated"):
        return b""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(bytes(chunk))
    return b"".join(chunks)
