"""How the emulator reads a request's inputs: multipart forms (uploads streamed and hashed), JSON bodies
and queries, ``Expect: 100-continue`` answered lazily (as Kestrel does: ``100 Continue`` goes out only
when a handler starts reading the body), and the ``Range`` header of downloads."""

from __future__ import annotations

import hashlib
import re
from contextvars import ContextVar
from types import MappingProxyType

import msgspec
from aiohttp import BodyPartReader, HttpVersion11, web

from . import _responses as responses
from ._endpoints import FORM_VALUE_LIMIT, UPLOAD_CHUNK, Endpoint
from ._images import (
    HEAD_BYTES,
    sniff_image,
)
from ._responses import Msg, Problem
from ._state import (
    RequestInputs,
    UploadInfo,
)
from ._validation import (
    Inputs,
)

_URN_PREFIX = re.compile(r"^\s*urn:uuid:", re.IGNORECASE)
_BOUNDARY = re.compile(r";\s*boundary=\S", re.IGNORECASE)


class _PendingContinue:
    """A request that announced ``Expect: 100-continue`` and whether ``100 Continue`` went out."""

    sent = False


_CONTINUE: ContextVar[_PendingContinue | None] = ContextVar("emulator_expect_continue", default=None)
"""The current request's pending ``100 Continue`` (each request runs in its own task)."""


def _expects_continue(request: web.Request) -> bool:
    return (
        request.version >= HttpVersion11
        and request.headers.get("Expect", "").strip().lower() == "100-continue"
    )


async def deferred_expect(request: web.Request) -> None:
    """The API routes' ``expect_handler``: unlike aiohttp's default, send nothing before the handler.

    Kestrel sends ``100 Continue`` when the application first reads the body (:func:`continue_body`);
    an answer given before that (401, 415, an injected failure) goes out without it. Other
    expectations are ignored, as Kestrel ignores them.
    """


async def continue_body(request: web.Request) -> None:
    """Send the pending ``100 Continue``, once, before the first read of the body."""
    pending = _CONTINUE.get()
    if pending is not None and not pending.sent:
        pending.sent = True
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's default handler: the response has not started


async def _read_upload(part: BodyPartReader, name: str, filename: str) -> UploadInfo:
    """Stream a file part: keep its size, SHA-256 and first bytes only."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        digest.update(chunk)
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
        size += len(chunk)
    image_type = sniff_image(head) if size else None
    content_type = part.headers.get("Content-Type")
    return UploadInfo(name, filename, content_type, size, digest.hexdigest(), head, image_type)


async def _read_text(part: BodyPartReader, endpoint: Endpoint, name: str) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        data += chunk
        if len(data) > FORM_VALUE_LIMIT:
            message = Msg.VALUE_TOO_LONG.format(limit=FORM_VALUE_LIMIT)
            raise Problem(responses.validation_error({name: [message]}, endpoint.style))
    return data.decode(part.get_charset(default="utf-8"), errors="replace")


def _unreadable_form(endpoint: Endpoint, reason: str) -> Problem:
    message = Msg.UNREADABLE_FORM.format(reason=reason)  # under the empty key, as ASP.NET puts it
    return Problem(responses.validation_error({"": [message]}, endpoint.style))


async def read_form(request: web.Request, endpoint: Endpoint) -> tuple[Inputs, RequestInputs]:
    """Read a multipart (or urlencoded) form: text fields whole, file parts streamed."""
    text: dict[str, list[str]] = {}
    raw_fields: dict[str, list[str]] = {}
    files: dict[str, UploadInfo] = {}
    media_type = request.content_type
    if media_type == "multipart/form-data":
        if not _BOUNDARY.search(request.headers.get("Content-Type", "")):  # e.g. set by hand
            raise _unreadable_form(endpoint, Msg.MISSING_BOUNDARY)
        await continue_body(request)
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue  # nested multipart or nameless part: ASP.NET binds neither
                name = part.name
                if part.filename:  # ASP.NET: a part with a non-empty filename is a file
                    upload = await _read_upload(part, name, part.filename)
                    files.setdefault(name.lower(), upload)
                else:
                    value = await _read_text(part, endpoint, name)
                    text.setdefault(name.lower(), []).append(value)
                    raw_fields.setdefault(name, []).append(value)
        except ValueError:
            raise _unreadable_form(endpoint, Msg.MALFORMED_MULTIPART) from None
    elif media_type == "application/x-www-form-urlencoded":
        await continue_body(request)
        for name, field_value in (await request.post()).items():
            if isinstance(field_value, str):
                text.setdefault(name.lower(), []).append(field_value)
                raw_fields.setdefault(name, []).append(field_value)
    else:
        raise Problem(responses.unsupported_media_type())
    received = RequestInputs(
        content_type=media_type,
        fields=MappingProxyType({k: tuple(v) for k, v in raw_fields.items()}),
        files=MappingProxyType({upload.field: upload for upload in files.values()}),
    )
    return Inputs(text, files), received


def query_inputs(request: web.Request) -> Inputs:
    """The query string as bound inputs (names case-insensitive)."""
    text: dict[str, list[str]] = {}
    for name, value in request.query.items():
        text.setdefault(name.lower(), []).append(value)
    return Inputs(text, {})


async def json_inputs(request: web.Request) -> Inputs:
    """A JSON object body as bound inputs (scalars as text, as Newtonsoft converts them to strings)."""
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise Problem(responses.unsupported_media_type())
    await continue_body(request)
    raw = await request.read()
    style = responses.STYLE_NEWTONSOFT
    if not raw.strip():
        raise Problem(responses.validation_error({"": [Msg.EMPTY_BODY]}, style))
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        raise Problem(responses.validation_error({"request": [Msg.INVALID_BODY]}, style))
    text: dict[str, list[str]] = {}
    for name, value in body.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text.setdefault(str(name).lower(), []).append(str(value))
    return Inputs(text, {})


UNSATISFIABLE = (-1, -1)
"""What :func:`byte_range` returns for a range that starts past the end (416)."""

_BYTE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """The ``(start, stop)`` a ``Range`` header asks of ``total`` bytes, as ASP.NET reads it.

    None (serve everything, 200) for no header, a malformed one or several ranges (ASP.NET serves
    those whole); :data:`UNSATISFIABLE` when the range starts past the end.
    """
    match = _BYTE_RANGE.match(header or "")
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        return (max(0, total - suffix), total) if suffix else UNSATISFIABLE
    start = int(first)
    if last and int(last) < start:
        return None  # malformed: ignored
    if start >= total:
        return UNSATISFIABLE
    return start, total if not last else min(int(last) + 1, total)
