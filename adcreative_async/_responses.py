"""What an API call answers, as the transport hands it on: a complete :class:`Response`, or a
:class:`StreamedResponse` whose body is read in chunks (downloads) or taken off aiohttp
(:meth:`StreamedResponse.detach`, for ``_receiver``); and :func:`translate`, the SDK error for an
aiohttp or timeout failure (never chained: aiohttp's exceptions hold the request headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import msgspec

from ._config import Timeout
from ._deadlines import timeout_error
from ._errors import AdCreativeError, APIConnectionError, UnexpectedResponseError
from ._filewrite import IncompleteDownloadError

__all__ = ["API_PREFIX", "DetachedBody", "Response", "StreamedResponse", "malformed", "translate"]

_T = TypeVar("_T")

#: The path every route is under.
API_PREFIX = "/api/v1/"


@dataclass(frozen=True)
class Response:
    """A complete response: status, headers (case-insensitive) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    route: str = ""

    def decode(self, decode: Callable[[bytes], _T], method: str = "GET") -> _T:
        """Decode the body with ``decode`` (a msgspec decoder's ``decode``); malformed or unexpected
        data is an :class:`UnexpectedResponseError`."""
        try:
            return decode(self.body)
        except msgspec.DecodeError as exc:
            raise malformed(self.status, method, self.route, exc, self.body) from None


def malformed(
    status: int, method: str, route: str, error: msgspec.DecodeError, body: bytes
) -> UnexpectedResponseError:
    """A body that does not decode (``body``: all of it, or its first bytes when it was streamed)."""
    excerpt = body[:200].decode("utf-8", "replace")
    return UnexpectedResponseError(
        f"{status} from {method} {route}: the response does not match the "
        f"documented shape ({error}); body starts: {excerpt!r}",
        status=status,
        body=body,
        method=method,
        path=route,
    )


class StreamedResponse:
    """A successful response whose body is read in chunks (downloads)."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        chunk_size: int,
        method: str,
        route: str,
        limits: Timeout | None = None,
    ) -> None:
        self._response = response
        self._chunk_size = chunk_size
        self._method = method
        self._route = route
        self._limits = limits
        self.detached = False
        """Whether the rest of the body was taken off aiohttp (:meth:`detach`)."""
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.received = 0
        """Bytes of the body read so far."""

    @property
    def content_length(self) -> int | None:
        """``Content-Length`` when the server sent one (and no content encoding changed it)."""
        if self._response.headers.get("Content-Encoding"):
            return None
        return self._response.content_length

    @property
    def content_type(self) -> str | None:
        """The response's ``Content-Type`` header, if any."""
        return self._response.headers.get("Content-Type")

    async def read(self, max_bytes: int | None = None) -> bytes:
        """The next bytes of the body (at most ``max_bytes``, default ``chunk_size``); ``b""`` at the end.

        Raises:
            IncompleteDownloadError: the connection dropped before the whole body arrived.
            APITimeoutError / APIConnectionError: other transport failures (never chained).
        """
        if self.detached:
            return b""
        error: AdCreativeError | None = None
        try:
            chunk = await self._response.content.read(max_bytes or self._chunk_size)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = translate(exc, self._method, self._route, reading=True)
        if error is not None:
            raise error  # outside the handler: never chained to aiohttp's exception
        self.received += len(chunk)
        return chunk

    @property
    def read_timeout(self) -> float | None:
        """Seconds the body may go without a byte (``Timeout.read``), or None."""
        return self._limits.read if self._limits is not None else None

    def detach(self) -> DetachedBody | None:
        """Take the rest of the body off aiohttp, to be read straight from the connection (large
        downloads to files: see ``_receiver``): the bytes aiohttp holds already, and the connection's
        transport and protocol (aiohttp's reading paused, its read timer stopped). None (nothing
        changed) unless the body is plain bytes of a known length (no content coding, no chunked
        framing) still arriving on an open connection.

        Once detached, :meth:`read` returns nothing more and the connection is closed when the response
        is left (aiohttp's parser never saw the rest of the body): never reused.
        """
        response = self._response
        content, connection = response.content, response.connection
        if (
            self.detached
            or self.content_length is None
            or "Transfer-Encoding" in response.headers
            or connection is None
            or content.exception() is not None
            or content.is_eof()
        ):
            return None
        transport, protocol = connection.transport, connection.protocol
        if transport is None or protocol is None or transport.is_closing():
            return None
        if transport.get_protocol() is not protocol:
            return None
        head = content.read_nowait(-1)  # what arrived (this may resume aiohttp's reading: paused next)
        protocol.pause_reading()  # and its read timer dropped: the receiver keeps its own
        self.detached = True
        self.received += len(head)
        return DetachedBody(head, transport, protocol)

    def cut_off(self, detail: str) -> AdCreativeError:
        """The error of a detached body whose connection closed early (as :meth:`read` raises it)."""
        return translate(
            aiohttp.ClientPayloadError(f"Response payload is not completed: {detail}"),
            self._method,
            self._route,
            reading=True,
        )

    def timed_out(self) -> AdCreativeError:
        """The error of a detached body that went ``read_timeout`` seconds without a byte."""
        return translate(
            aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
            self._method,
            self._route,
            reading=True,
            limits=self._limits,
        )


@dataclass(frozen=True)
class DetachedBody:
    """The rest of a body taken off aiohttp (see :meth:`StreamedResponse.detach`)."""

    head: bytes
    """Body bytes aiohttp had received already, to be used first."""
    transport: asyncio.Transport
    """The connection's transport, its reading paused."""
    protocol: asyncio.BaseProtocol
    """aiohttp's protocol of the connection: set back on the transport once the body is read."""


def translate(
    exc: BaseException, method: str, route: str, *, reading: bool = False, limits: Timeout | None = None
) -> AdCreativeError:
    """The SDK error for an aiohttp or timeout failure. The result is raised without chaining."""
    what = f"{method} {API_PREFIX}{route}"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return timeout_error("connect", method, route, limits, detail=detail, sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return timeout_error("read", method, route, limits, detail=detail, sent=None)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):  # aiohttp's total timer, or the deadline's
        return timeout_error("total", method, route, limits, sent=None)
    if reading and isinstance(exc, aiohttp.ClientPayloadError):
        return IncompleteDownloadError(
            f"response body of {what} was cut off ({detail})", method=method, path=route, sent=True
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(
            f"cannot connect for {what} ({detail})", method=method, path=route, sent=False
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return APIConnectionError(f"invalid URL for {what}", method=method, path=route, sent=False)
    return APIConnectionError(f"{what} failed ({detail})", method=method, path=route, sent=None)
