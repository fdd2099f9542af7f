"""Downloads of results: atomic files (resumable on request), the public :class:`DownloadStream` for
callers who pipe bytes elsewhere, and server-supplied file names made safe.

Every download request counts on the server (seed 001: each one increments the task's and the process's
``DownloadCount``), so the SDK never repeats one on its own: resuming an interrupted body is opt-in
(``resume=``), and each resumed or restarted request counts again.
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    AdCreativeError,
    APIConnectionError,
    APIError,
    ClientNotOpenError,
    InvalidRequestError,
    NotFoundError,
)
from ._files import ProgressCallback, extension_for
from ._filewrite import (
    LOOP_WRITE_MAX,
    AtomicFile,
    IncompleteDownloadError,
    Received,
    StreamWriter,
    WriteBatch,
)
from ._transport import Request, StreamedResponse, Transport

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "DEFAULT_DOWNLOAD_RESUMES",
    "DOWNLOAD_WRITE_BUFFER",
    "MAX_FILENAME_BYTES",
    "MAX_WRITE_BATCH",
    "RECEIVE_FROM",
    "STREAM_WRITE_FROM",
    "STREAM_WRITE_QUEUE",
    "DownloadStream",
    "disposition_filename",
    "download_file",
    "resume_budget",
    "safe_filename",
]

#: How many times ``resume=True`` continues (or restarts) an interrupted download body.
DEFAULT_DOWNLOAD_RESUMES = 3

#: Received bytes a client's downloads to files hold at most between them before writing (assumed: a
#: budget, not an API rule). One download alone writes in batches of up to :data:`MAX_WRITE_BATCH` (few
#: worker-thread calls: fast); many at once share the budget, down to one chunk each.
DOWNLOAD_WRITE_BUFFER = 16 * 1024 * 1024
MAX_WRITE_BATCH = 2 * 1024 * 1024
#: A body at least this large (or of unknown length) is written as it arrives
#: (:class:`~adcreative_async._filewrite.StreamWriter`): chunk by chunk in the event loop
#: (``TransferOptions.write_in_loop``), or by one worker-thread call fed chunk by chunk (receiving and
#: writing overlap). A smaller body is gathered in batches (a
#: body under one batch is written with the commit: one worker-thread call for the whole download,
#: where the stream writer costs two). Two batches: below it the stream writer saves nothing.
STREAM_WRITE_FROM = 2 * MAX_WRITE_BATCH
#: Received bytes a stream-written download may queue for its thread (within its share of
#: :data:`DOWNLOAD_WRITE_BUFFER`): room for the thread to fall behind briefly without stopping the
#: receiving (past it, receiving waits until half is written).
STREAM_WRITE_QUEUE = 4 * 1024 * 1024

#: A body at least this large (what is left of it, with its length known) is read straight from the
#: connection into the download's own buffer (``_receiver``: no ``bytes`` object per socket read, the
#: page faults they can cost gone, reads of up to 1 MiB (``LOOP_WRITE_MAX``, within the download's share
#: of :data:`DOWNLOAD_WRITE_BUFFER`) where asyncio reads 256 KiB: a GiB takes 0.38-0.40 s of the
#: client's CPU where aiohttp's reader takes 0.54-0.56 s, or twice that with page faults) and its
#: connection closed after it (aiohttp's parser did not see the body). Assumed: below
#: it, keeping the connection for the next request (no new TCP and TLS handshake, a few round trips)
#: is worth more than the CPU saved (about 1-15 ms per 32 MiB); a 32 MiB body takes 0.27 s even at
#: 1 Gbit/s.
RECEIVE_FROM = 32 * 1024 * 1024

#: The longest file name written, in UTF-8 bytes (the common limit of Linux, macOS and Windows file systems).
MAX_FILENAME_BYTES = 255

#: After a download's 404: a more precise error (e.g. RenderNotReadyError), or None to keep the 404.
NotFoundExplainer = Callable[[NotFoundError], Awaitable[AdCreativeError | None]]

_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{n}" for device in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)
_EXTENSION_ALIASES = {".jpg": (".jpg", ".jpeg", ".jpe", ".jfif"), ".tiff": (".tiff", ".tif")}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


_DISPOSITION_PARAM = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL
)


def disposition_filename(header: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives, as sent (untrusted: see
    :func:`safe_filename`): ``filename*`` (RFC 8187, UTF-8 or ISO-8859-1) before ``filename``.

    The SDK's own lenient reader: aiohttp's warns (an error under ``-W error``) on unquoted names such
    as ``../x``, which a hostile server could send to break downloads.
    """
    if not header:
        return None
    params: dict[str, str] = {}
    for name, raw in _DISPOSITION_PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
        params.setdefault(name.lower(), value)
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() in ("utf-8", "iso-8859-1") and encoded:
            return urllib.parse.unquote(encoded, encoding=charset.lower(), errors="replace")
    return params.get("filename") or None


def safe_filename(name: str | None) -> str | None:
    """A server-supplied file name made safe to create inside a directory, or None if nothing is left.

    Never a path: only what follows the last ``/`` or ``\\``; control, format and other invisible
    characters (NUL, bidirectional overrides) and the characters Windows refuses become ``_``; leading
    and trailing dots and spaces go (no hidden files, no ``.``/``..``); Windows device names (``CON``,
    ``NUL``, ``COM1`` …) get a ``_`` prefix; the result is at most 255 UTF-8 bytes, keeping its
    extension.

    Example::

        safe_filename("../../etc/passwd") == "passwd"
        safe_filename("C:\\\\Windows\\\\win.ini") == "win.ini"
        safe_filename("..") is None
    """
    if not name:
        return None
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    text = "".join("_" if _unsafe(c) else c for c in base)
    text = text.strip(" .")
    if not text:
        return None
    if text.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        text = f"_{text}"
    stem, dot, extension = text.rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension = text, ""
    return _fit(stem, f".{extension}" if extension else "")


def _unsafe(char: str) -> bool:
    """Invisible or special: controls, format characters, separators other than the space, and
    the characters Windows refuses in names."""
    category = unicodedata.category(char)
    return (category[0] in "CZ" and char != " ") or char in _WINDOWS_FORBIDDEN


def _fit(stem: str, extension: str) -> str:
    """``stem + extension`` cut to :data:`MAX_FILENAME_BYTES` UTF-8 bytes, the extension kept whole."""
    room = MAX_FILENAME_BYTES - len(extension.encode())
    cut = stem.encode()[:room].decode("utf-8", "ignore").rstrip(" .")
    return f"{cut or '_'}{extension}"


def _final_name(
    default_stem: str, kind: str | None, content_type: str | None, server_name: str | None
) -> str:
    """The file name in a destination directory: the server's (already made safe) or the task id's,
    with the extension of the detected type (a server's alias such as ``.jpeg`` is kept)."""
    extension = extension_for(kind, content_type)
    if server_name is None:
        return f"{default_stem}{extension}"
    stem, dot, current = server_name.rpartition(".")
    if not dot:
        stem, current = server_name, ""
    if f".{current.lower()}" in _EXTENSION_ALIASES.get(extension, (extension,)):
        return server_name
    return _fit(stem, extension)


class DownloadStream:
    """One task's result as a stream of bytes, for callers who pipe it elsewhere instead of to a file
    (object storage, their own HTTP response, a hash).

    Obtained from ``stream_download()`` of a resource or a job and used with ``async with``: entering
    sends the request (and raises the API's errors, e.g. :class:`~adcreative_async.RenderNotReadyError`
    for a task that has no result yet), leaving closes the connection, read to the end or not. Where a
    block cannot stay open (a web response), ``await open_download(...)`` returns it open, and
    :meth:`aclose` closes it. The request counts as a download on the server (seed 001), whether the
    body is read or not.

    Example::

        async with client.creatives.stream_download(process_id, task_id) as stream:
            print(stream.content_length, stream.content_type, stream.filename)
            async for chunk in stream.iter_bytes():
                await sink.write(chunk)

    Memory stays about one chunk whatever the size. When the body ends early (the connection drops,
    or it is shorter than ``Content-Length``, or without a length a PNG/JPEG lacks its end marker), the
    iteration raises :class:`~adcreative_async.IncompleteDownloadError` after the bytes that did
    arrive: discard what you received. To resume interrupted transfers, download to a file with
    ``download(..., resume=True)``.
    """

    def __init__(
        self,
        transport: Transport,
        request: Request,
        *,
        process_id: str,
        task_id: str,
        explain_not_found: NotFoundExplainer | None = None,
        feature: str = "",
    ) -> None:
        self._transport = transport
        self._request = request
        self._explain_not_found = explain_not_found
        self._feature = feature
        self._span: Span | None = None
        self.process_id = process_id
        """The render process (canonical GUID)."""
        self.task_id = task_id
        """The task whose result this is (canonical GUID)."""
        self._stack: AsyncExitStack | None = None
        self._response: StreamedResponse | None = None
        self._received = Received()
        self._finished = False

    def __repr__(self) -> str:
        state = "open" if self._response is not None else "not open"
        return f"<DownloadStream task_id={self.task_id!r} {state}>"

    async def __aenter__(self) -> DownloadStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._response = self._stack, None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.__aexit__(exc_type, exc, tb)
        span, self._span = self._span, None
        if span is not None and self._transport.telemetry is not None:
            self._transport.telemetry.end_download(span, self._received.done, exc)

    async def open(self) -> DownloadStream:
        """Send the request and return this stream, its headers readable, its body not read yet.

        What ``async with`` does on entering; for code that cannot hold a block open (a web framework
        returning a streamed response): then call :meth:`aclose` when done (``open_download()`` of a
        resource or a job does this call for you).

        Raises:
            RenderNotReadyError: the server answered 404 and the task's process says the task has no
                result yet (or it failed).
            NotFoundError and the API's other errors, APIConnectionError: as any request.
        """
        if self._stack is not None:
            raise RuntimeError("a DownloadStream can be opened once; call stream_download() again")
        stack = AsyncExitStack()
        self._stack = stack
        telemetry = self._transport.telemetry
        if telemetry is not None:  # the download's span lasts until aclose(); its request is a child
            self._span = telemetry.start_download(self._feature, self.process_id, self.task_id)
        try:
            with telemetry.within(self._span) if telemetry is not None else nullcontext():
                self._response = await stack.enter_async_context(self._transport.stream(self._request))
        except BaseException as exc:
            span, self._span = self._span, None
            if telemetry is not None:
                telemetry.end_download(span, 0, exc)
            if not isinstance(exc, NotFoundError):
                raise
            explained = await self._explain_not_found(exc) if self._explain_not_found is not None else None
            if explained is None:
                raise
            raise explained from exc
        return self

    async def aclose(self) -> None:
        """Close the connection (read to the end or not). Idempotent; shielded from cancellation."""
        await self.__aexit__(None, None, None)

    @property
    def is_open(self) -> bool:
        """Whether the request was sent and the stream is not closed yet."""
        return self._response is not None

    def _open(self) -> StreamedResponse:
        if self._response is None:
            raise ClientNotOpenError(
                "the download stream is not open: use `async with resource.stream_download(...) as stream:` "
                "or `stream = await resource.open_download(...)`"
            )
        return self._response

    @property
    def content_length(self) -> int | None:
        """The body's length from ``Content-Length``, or None when the server did not send one."""
        return self._open().content_length

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` the server sent (``"image/png"``), if any."""
        return self._open().content_type

    @property
    def filename(self) -> str | None:
        """The file name of ``Content-Disposition`` made safe (see :func:`safe_filename`), or None."""
        return safe_filename(disposition_filename(self._open().headers.get("Content-Disposition")))

    @property
    def bytes_received(self) -> int:
        """Bytes of the body read so far (for a progress bar, with :attr:`content_length`)."""
        return self._received.done

    def iter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes (default: the client's ``chunk_size``).

        Raises:
            IncompleteDownloadError: at the end, when the body is incomplete (see the class).
            APIConnectionError / APITimeoutError: the connection failed or stalled past the read timeout.
        """
        if chunk_size is not None and chunk_size < 1:
            raise InvalidRequestError.for_field("chunk_size", "must be at least 1")
        return _StreamChunks(self, self._open(), chunk_size)


class _StreamChunks:
    """The iterator of :meth:`DownloadStream.iter_bytes` (a class, not an async generator, so that a
    ``break`` leaves nothing to finalise)."""

    def __init__(self, stream: DownloadStream, response: StreamedResponse, chunk_size: int | None) -> None:
        self._stream = stream
        self._response = response
        self._chunk_size = chunk_size

    def __aiter__(self) -> _StreamChunks:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        if stream._finished:
            raise StopAsyncIteration
        chunk = await self._response.read(self._chunk_size)
        if chunk:
            stream._received.add(chunk)
            return chunk
        stream._finished = True
        stream._received.check(self._response.content_length)
        raise StopAsyncIteration


class _UnusableRange(Exception):
    """A 206 that does not continue the body where it stopped."""


def resume_budget(resume: bool | int) -> int:
    """How many times a download body may be resumed: ``False`` 0, ``True`` 3, or the number given."""
    if resume is True:
        return DEFAULT_DOWNLOAD_RESUMES
    if resume is False:
        return 0
    if not isinstance(resume, int) or resume < 0:
        raise InvalidRequestError.for_field("resume", f"must be a bool or a count >= 0, got {resume!r}")
    return resume


def _validator(headers: Mapping[str, str]) -> str | None:
    """What to send as ``If-Range``: a strong ``ETag``, else ``Last-Modified``, else None."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _continuation(response: StreamedResponse, offset: int, total: int | None) -> int | None:
    """The body's full length if ``response`` is the 206 continuing it at ``offset`` to its end, else None."""
    if response.status != 206:
        return None
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None:
        return None
    first, last, size = match.groups()
    if size == "*" or int(first) != offset or int(last) + 1 != int(size):
        return None
    if total is not None and int(size) != total:
        return None
    length = response.content_length
    if length is not None and length != int(size) - offset:
        return None
    return int(size)


async def download_file(
    transport: Transport,
    request: Request,
    dest: str | os.PathLike[str],
    *,
    default_stem: str,
    use_server_filename: bool = False,
    resume: bool | int = False,
    on_progress: ProgressCallback | None = None,
    name_for: Callable[[str], str] | None = None,
) -> Path:
    """Send the download ``request`` and write its body to ``dest`` atomically (see ``download()``).

    ``name_for`` (``dest`` is then a directory) gives the file's path relative to ``dest`` from the
    detected type's extension: the body goes straight to that name's temporary file, never through a
    file named after the task.

    With ``resume``, a body interrupted by the connection continues with ``Range: bytes=<received>-``
    (and ``If-Range`` when the server gave a validator) if the server answers 206 for exactly that
    range; a 200 restarts the file from zero; any other answer to the range restarts without one.
    Each of those requests counts as a download on the server.

    Raises:
        IncompleteDownloadError: the body ended early and no resume was left (nothing is written).
    """
    download = _FileDownload(transport, request, resume_budget(resume), use_server_filename, on_progress)
    transport.downloads_in_progress += 1
    try:
        async with AtomicFile(
            dest,
            default_stem,
            transport.limiter,
            transport.destinations,
            inline_small=transport.transfer.inline_small_files,
        ) as file:
            await download.run(file)
            if name_for is not None:
                name = name_for(extension_for(download.received.kind, download.content_type))
            else:
                name = _final_name(
                    default_stem, download.received.kind, download.content_type, download.server_name
                )
            return await file.commit(name, download.take_tail())
    finally:
        transport.downloads_in_progress -= 1


def _batch_size(transport: Transport, most: int = MAX_WRITE_BATCH) -> int:
    """How many received bytes a download holds before they are written: at most ``most``, and its
    share of :data:`DOWNLOAD_WRITE_BUFFER`, but at least one chunk."""
    share = DOWNLOAD_WRITE_BUFFER // max(1, transport.downloads_in_progress)
    return max(transport.transfer.chunk_size, min(most, share))


class _FileDownload:
    """The requests and body of one download to a file: resumes, restarts, and what they learnt."""

    def __init__(
        self,
        transport: Transport,
        request: Request,
        resumes: int,
        use_server_filename: bool,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._transport = transport
        self._request = request
        self._resumes = resumes
        self._use_server_filename = use_server_filename
        self._on_progress = on_progress
        self.received = Received()
        self.total: int | None = None
        self.validator: str | None = None
        self.server_name: str | None = None
        self.content_type: str | None = None
        self._tail: list[bytes] = []  # the last bytes received, written with the commit (one call)

    def take_tail(self) -> list[bytes]:
        """The body's last bytes, not written yet (the commit writes them)."""
        tail, self._tail = self._tail, []
        return tail

    def _attempt(self) -> Request:
        offset = self.received.done
        if not offset:
            return self._request
        headers = {**(self._request.headers or {}), "Range": f"bytes={offset}-"}
        if self.validator:
            headers["If-Range"] = self.validator
        return dataclasses.replace(self._request, headers=headers)

    async def _restart(self, file: AtomicFile) -> None:
        await file.truncate()
        self._tail = []
        self.received.reset()
        if self._on_progress is not None:
            self._on_progress(0, self.total)

    async def run(self, file: AtomicFile) -> None:
        """Write the whole body to ``file`` (resuming as allowed), and check that it is complete.

        Raises:
            IncompleteDownloadError: the body ended early and no resume was left.
        """
        while True:
            offset = self.received.done
            interrupted: APIConnectionError | None = None
            try:
                async with self._transport.stream(self._attempt()) as response:
                    if offset:
                        size = _continuation(response, offset, self.total)
                        if size is not None:
                            self.total = size
                        else:  # the server ignored the range (200): the file starts again
                            await self._restart(file)
                            if response.status != 200:
                                raise _UnusableRange(
                                    f"the server answered {response.status} to Range: bytes={offset}- "
                                    f"(Content-Range {response.headers.get('Content-Range')!r})"
                                )
                    if not self.received.done:
                        self._learn(response)
                    interrupted = await self._receive(response, file)
            except _UnusableRange as exc:
                interrupted = IncompleteDownloadError(str(exc), sent=True)  # ask again without a range
            except APIError as exc:
                if not offset or not self._resumes:
                    raise
                await self._restart(file)  # e.g. 416 to the range: ask again without one
                interrupted = IncompleteDownloadError(
                    f"the server refused Range: bytes={offset}- ({exc.status})", sent=True
                )
            if interrupted is None:
                break
            if not self._resumes:
                raise interrupted
            self._resumes -= 1
        self.received.check(self.total)

    def _learn(self, response: StreamedResponse) -> None:
        """What the first bytes' response says of the whole body."""
        self.total = response.content_length
        self.validator = _validator(response.headers)
        self.content_type = response.content_type
        if self._use_server_filename:
            self.server_name = safe_filename(
                disposition_filename(response.headers.get("Content-Disposition"))
            )

    async def _receive(self, response: StreamedResponse, file: AtomicFile) -> APIConnectionError | None:
        """Append the body to ``file``; the transport error that cut it, if one did.

        A body of :data:`RECEIVE_FROM` bytes or more, its length known, is read from the connection
        into the download's own buffers (``_receiver``); one of :data:`STREAM_WRITE_FROM` bytes or more
        (or of unknown length) is written as aiohttp's chunks arrive (:class:`StreamWriter`); both in
        the event loop, or by one worker-thread call. A smaller one is gathered in batches, its last
        bytes written with the commit (a small file: one call in all).
        """
        remaining = None if self.total is None else self.total - self.received.done
        if remaining is None or remaining >= STREAM_WRITE_FROM:
            return await self._stream(response, file)
        received, on_progress = self.received, self._on_progress
        batch = WriteBatch(_batch_size(self._transport))
        interrupted: APIConnectionError | None = None
        try:
            while chunk := await response.read():
                received.add(chunk)
                if batch.add(chunk):
                    await file.write(batch.take())
                    batch.size = _batch_size(self._transport)
                if on_progress is not None:
                    on_progress(received.done, self.total)
        except APIConnectionError as exc:
            interrupted = exc
        if interrupted is not None:
            await file.write(batch.take())  # a resume appends after these bytes
        else:
            self._tail = batch.take()  # written with the commit: a small file costs one call in all
        return interrupted

    async def _stream(self, response: StreamedResponse, file: AtomicFile) -> APIConnectionError | None:
        """:meth:`_receive` of a large body: written as it arrives, in the event loop
        (``write_in_loop``) or by one worker-thread call."""
        transport = self._transport
        in_loop = transport.transfer.write_in_loop
        length = response.content_length
        rest = None if self.total is None else self.total - self.received.done
        if length is not None and length == rest and length >= RECEIVE_FROM:
            if in_loop:
                await file.ensure_created()  # by a worker thread: the loop writes from here on
            body = response.detach()
            if body is not None:  # plain bytes of a known length: read straight into reused buffers
                from ._receiver import receive_body  # large bodies only (import footprint)

                return await receive_body(
                    response,
                    body,
                    file,
                    self.received,
                    self.received.done + length,
                    self._on_progress,
                    buffer_size=_batch_size(transport, LOOP_WRITE_MAX),
                    queue_limit=_batch_size(transport, STREAM_WRITE_QUEUE),
                    in_loop=in_loop,
                )
        received, on_progress = self.received, self._on_progress
        interrupted: APIConnectionError | None = None
        async with StreamWriter(file, _batch_size(transport, STREAM_WRITE_QUEUE), in_loop=in_loop) as writer:
            try:
                while chunk := await response.read():
                    received.add(chunk)
                    if not writer.write_now(chunk):  # in the loop, nothing is queued
                        writer.limit = _batch_size(transport, STREAM_WRITE_QUEUE)  # shrinks as more start
                        await writer.write(chunk)
                    if on_progress is not None:
                        on_progress(received.done, self.total)
            except APIConnectionError as exc:
                interrupted = exc  # leaving the block normally writes what arrived: a resume appends
        return interrupted
