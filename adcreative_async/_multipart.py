"""The multipart/form-data body of a start or edit call, written by the SDK itself (for the transport).

aiohttp's ``MultipartWriter`` makes a payload object per part, builds and validates each part's headers
again for its size and again for its write, and writes every piece on its own: about 50 µs of CPU and
a hundred function calls per three-part form here, for a body of a few hundred bytes around the image.
:class:`FormBody` writes the same bytes (tests compare them with aiohttp's, boundary for boundary): the
text parts and every part's headers made once, when the body is built; the file parts streamed from
their :class:`~._files.Upload` as they are written, through the send guards and the size checks; the
small pieces gathered into writes of at least :data:`CORK_BYTES` (a small form goes out in one write).

The errors of an upload (too large, changed while sent, refused by a send guard) are kept on the body
(:attr:`FormBody.error`), so that the transport raises them instead of aiohttp's wrapping of them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import payload as aiohttp_payload
from aiohttp.helpers import content_disposition_header

from ._errors import AdCreativeError, InvalidRequestError
from ._files import ProgressCallback, Upload, send_guards

__all__ = ["CORK_BYTES", "FormBody", "FormItem"]

#: A multipart form item: (wire name, text) or an :class:`Upload`.
FormItem = tuple[str, str] | Upload

#: A multipart body's pieces (boundaries, part headers, small parts) are gathered up to this many bytes
#: before one write to the connection: aiohttp writes each piece on its own (13 ``send`` calls for a
#: three-part form), and a system call costs 10-60 µs here; the whole of a small upload goes out in
#: one. A piece this large or larger is written at once, after what was gathered before it.
CORK_BYTES = 64 * 1024

_TEXT_TYPE = "text/plain; charset=utf-8"


@functools.lru_cache(maxsize=256)
def _text_headers(name: str) -> bytes:
    """A text part's headers (after its boundary line), as aiohttp writes them: made once per name."""
    disposition = content_disposition_header("form-data", name=name)
    return f"Content-Type: {_TEXT_TYPE}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


def _file_headers(upload: Upload) -> bytes:
    """A file part's headers (after its boundary line), as aiohttp writes them."""
    disposition = content_disposition_header("form-data", name=upload.wire, filename=upload.filename)
    return f"Content-Type: {upload.content_type}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


class _ProgressTotal:
    """Sums bytes sent across the file parts of one request and reports them."""

    def __init__(self, callback: ProgressCallback, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0

    def add(self, n: int) -> None:
        self._done += n
        self._callback(self._done, self._total)


class _Cork:
    """Gathers small writes into one (see :data:`CORK_BYTES`)."""

    __slots__ = ("_pending", "_size", "_writer")

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._pending: list[bytes] = []
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        if len(chunk) >= CORK_BYTES:
            await self.flush()
            await self._writer.write(chunk)
            return
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= CORK_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Write what was gathered."""
        if self._pending:
            pending, self._pending, self._size = self._pending, [], 0
            await self._writer.write(pending[0] if len(pending) == 1 else b"".join(pending))


class FormBody(aiohttp_payload.Payload):
    """A multipart/form-data body: text parts and file parts (:class:`Upload`), in the given order.

    Sized (``Content-Length``) when every upload's size is known, else sent chunked. Each write of the
    body is a fresh pass over the uploads (:meth:`Upload.open`): a one-shot source can be written once.

    Attributes:
        error: the error that stopped the upload (too large, changed, refused by a send guard), if one
            did: the call's error.
        sent: the bytes of the file parts written so far.
    """

    _autoclose = True  # the body holds no handle between writes: each write opens and closes a pass

    def __init__(
        self,
        form: Sequence[FormItem],
        on_progress: ProgressCallback | None = None,
        boundary: str | None = None,
    ) -> None:
        self.boundary = boundary or uuid.uuid4().hex
        super().__init__(None, content_type=f"multipart/form-data; boundary={self.boundary}")
        self.error: AdCreativeError | None = None
        self.sent = 0
        # The pieces in order: bytes written as they are, an Upload streamed after its headers.
        line = f"--{self.boundary}\r\n".encode()
        pieces: list[bytes | Upload] = []
        uploads: list[Upload] = []
        text = b""  # what was made since the last upload
        for item in form:
            if isinstance(item, Upload):
                pieces += (text + line + _file_headers(item), item)
                uploads.append(item)
                text = b"\r\n"
            else:
                name, value = item
                text += line + _text_headers(name) + value.encode("utf-8") + b"\r\n"
        pieces.append(text + f"--{self.boundary}--\r\n".encode())
        self._pieces = pieces
        total: int | None = None
        if all(u.size is not None for u in uploads):
            total = sum(u.size or 0 for u in uploads)
            self._size = total + sum(len(p) for p in pieces if isinstance(p, bytes))
        else:
            self._size = None  # sent chunked
        self._progress = _ProgressTotal(on_progress, total) if on_progress and uploads else None

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return f"<multipart form, {len(self._pieces)} pieces>"

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        sink = _Collect()
        await self.write_with_length(sink, None)
        return b"".join(sink.chunks)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        cork = _Cork(writer)
        for piece in self._pieces:
            if isinstance(piece, Upload):
                await self._stream(piece, cork)
            else:
                await cork.write(piece)
        await cork.flush()

    async def _stream(self, upload: Upload, cork: _Cork) -> None:
        """Write one file part's bytes, checked by the send guards and the size rules as they go."""
        try:
            reader = await upload.open()
        except AdCreativeError as exc:
            self.error = exc
            raise
        # read here, in the task that writes the body: aiohttp starts it from the caller's context
        guards = send_guards()
        progress = self._progress
        sent = 0
        try:
            for guard in guards:
                self._check(guard.begin, upload.param)
            while True:
                chunk = await reader.read()
                if not chunk:
                    break
                for guard in guards:
                    self._check(guard.chunk, upload.param, chunk)
                sent += len(chunk)
                if upload.max_size is not None and sent > upload.max_size:
                    self.error = InvalidRequestError.for_field(
                        upload.param,
                        f"is over the client's max_upload_size of {upload.max_size} bytes "
                        "(found while sending)",
                        wire=upload.wire,
                    )
                    raise self.error
                await cork.write(chunk)
                self.sent += len(chunk)
                if progress is not None:
                    progress.add(len(chunk))
            if upload.size is not None and sent != upload.size:
                self.error = InvalidRequestError.for_field(
                    upload.param,
                    f"changed while it was being sent ({sent} bytes read, {upload.size} expected)",
                    wire=upload.wire,
                )
                raise self.error
            for guard in guards:
                self._check(guard.end, upload.param)
        finally:
            await reader.aclose()

    def _check(self, check: Callable[..., None], *args: Any) -> None:
        """Run a send guard's check; its error stops the upload and is the call's error."""
        try:
            check(*args)
        except AdCreativeError as exc:
            self.error = exc
            raise


class _Collect:
    """A writer that keeps what is written (:meth:`FormBody.as_bytes`)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(bytes(chunk))
