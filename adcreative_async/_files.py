"""Files in: image inputs for uploads, type sniffing, send guards, and the worker-thread hand-offs that
acquire and release a file (the files written, atomically, by downloads: :mod:`._filewrite`).

Uploads come from a path, bytes, a binary file object or an async iterable of bytes and are read in
chunks, never whole; a caller's file object is never closed. Blocking file I/O runs in worker threads
under the client's own :class:`anyio.CapacityLimiter`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import threading
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from ._errors import InvalidRequestError

__all__ = [
    "ACCEPTED_IMAGE_TYPES",
    "INLINE_DOWNLOAD",
    "ImageInput",
    "ProgressCallback",
    "SendGuard",
    "Upload",
    "prepare_upload",
    "send_guard",
    "send_guards",
    "sniff_type",
]

#: What an image parameter accepts: a path, bytes, a binary file object, or an async iterable of bytes.
ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | AsyncIterable[bytes]

#: Called with (bytes done, total bytes or None) as a transfer advances. May be a plain function.
ProgressCallback = Callable[[int, int | None], Any]

#: assumed: the docs say only "e.g. .jpg or .png" / "e.g. jpeg"; WEBP is accepted too as the common
#: third web format. Other types are refused unless the client has strict_validation=False.
ACCEPTED_IMAGE_TYPES: frozenset[str] = frozenset({"png", "jpeg", "webp"})

_T = TypeVar("_T")

_SNIFF_BYTES = 32
#: A file of at most this many bytes is read whole when it is checked (one file operation for the
#: whole upload: open, read, close) and sent from memory; a larger one is streamed in chunks. Below one
#: chunk (``TransferOptions.chunk_size``, 256 KiB), so memory per upload stays about one chunk.
SMALL_UPLOAD = 64 * 1024
#: A download whose whole body is at most this many bytes is written by its commit in the event loop
#: (temporary file created, written, renamed, closed), with ``TransferOptions.inline_small_files`` (the
#: default); so is an upload's check (it reads at most :data:`SMALL_UPLOAD` bytes). Why: a worker-thread
#: hand-off costs 40-60 µs of CPU here (the thread's wake-up and futexes, the event loop's self-pipe
#: wake) besides the operation, which on a local disk takes 10-40 µs; 500 jobs of remove -> wait ->
#: download made 1,000 hand-offs (benchmarks/README.md, per job). Larger files keep every operation in
#: worker threads.
INLINE_DOWNLOAD = 64 * 1024
_EXTENSIONS = {
    "png": ".png",
    "jpeg": ".jpg",
    "webp": ".webp",
    "gif": ".gif",
    "bmp": ".bmp",
    "tiff": ".tiff",
    "heic": ".heic",
    "avif": ".avif",
    "pdf": ".pdf",
}
_CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "avif": "image/avif",
    "pdf": "application/pdf",
}
_CONTENT_TYPE_TO_KIND = {v: k for k, v in _CONTENT_TYPES.items()} | {"image/jpg": "jpeg"}


#: assumed (the docs say nothing of it, as of any HTTP API): the server acts on a request only once it
#: has received all of it (a multipart body up to its closing boundary). So an upload stopped before its
#: last bytes went out made nothing (:class:`~adcreative_async.UploadAbortedError`), and a check made
#: just before them (a :class:`SendGuard`) decides whether the call is made at all.
COMPLETE_REQUEST_RULE = "a request acts only once its whole body has arrived"


class SendGuard(Protocol):
    """Checks on a start call's upload as its bytes go out (see :func:`send_guard`). A method that raises
    (an :class:`~adcreative_async.UploadAbortedError`) stops the upload before the request is complete,
    so that the server makes nothing; the call then raises that error.

    Every method runs on the event loop, between two writes of the request: it must not block.
    """

    def begin(self, param: str) -> None:
        """A pass over the file part ``param`` starts (again, after a 401 renewed the token)."""

    def chunk(self, param: str, data: bytes) -> None:
        """``data``, the next bytes of the part ``param``, are about to be sent."""

    def end(self, param: str) -> None:
        """Every byte of the part ``param`` was written; the rest of the request (the closing boundary,
        a few bytes) follows unless this raises."""


_SEND_GUARDS: contextvars.ContextVar[tuple[SendGuard, ...]] = contextvars.ContextVar(
    "adcreative_send_guards", default=()
)


@contextlib.contextmanager
def send_guard(guard: SendGuard) -> Iterator[None]:
    """Within the block, every upload of the calls made by this task (and the tasks it starts) is
    checked by ``guard`` as it goes out, beside the guards set around it."""
    token = _SEND_GUARDS.set((*_SEND_GUARDS.get(), guard))
    try:
        yield
    finally:
        _SEND_GUARDS.reset(token)


def send_guards() -> tuple[SendGuard, ...]:
    """The guards in force for the calls of the current task (see :func:`send_guard`)."""
    return _SEND_GUARDS.get()


def sniff_type(head: bytes) -> str | None:
    """The file type from its first bytes (``"png"``, ``"jpeg"``, ``"webp"``, …), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM" and len(head) >= 14:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "heic"
    if head.startswith(b"%PDF-"):
        return "pdf"
    return None


def extension_for(kind: str | None, content_type: str | None = None) -> str:
    """A file extension for a sniffed type, else for a Content-Type, else ``.bin``."""
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    if content_type:
        mapped = _CONTENT_TYPE_TO_KIND.get(content_type.split(";")[0].strip().lower())
        if mapped:
            return _EXTENSIONS[mapped]
    return ".bin"


# Worker-thread calls that acquire or release a file. aiohttp cancels a request's body writer natively
# (``task.cancel()``, sometimes twice) the moment the server answers before reading the body (a 401, a
# 429, a 503), and users cancel with ``asyncio.wait_for``: an anyio shield holds none of these. The
# awaiting task then stops waiting while the thread goes on, so what the thread opens must be released
# by whoever finishes last, and a close must happen even if its thread call never starts.


async def acquire_in_thread(
    acquire: Callable[[], _T], release: Callable[[_T], object], limiter: anyio.CapacityLimiter
) -> _T:
    """``acquire()`` in a worker thread; if the awaiting task is cancelled meanwhile, what it acquired
    is released (``release(result)``) instead of dropped: never a file left open."""
    lock = threading.Lock()
    abandoned = False
    acquired: list[_T] = []

    def run() -> _T:
        result = acquire()
        with lock:
            if not abandoned:
                acquired.append(result)
                return result
        release(result)  # the caller is gone
        return result

    try:
        return await anyio.to_thread.run_sync(run, limiter=limiter)
    except BaseException:
        with lock:
            abandoned = True
            orphans = acquired[:]
        for result in orphans:  # the thread finished just before the cancellation: a quick close, here
            with contextlib.suppress(OSError):  # the cancellation is what propagates
                release(result)
        raise


async def release_in_thread(release: Callable[[], object], limiter: anyio.CapacityLimiter) -> None:
    """``release()`` (a close: idempotent) in a worker thread, shielded; if a native cancellation stops
    the wait anyway, it is called here, in the event loop, so that it happens in every case."""
    try:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(release, limiter=limiter)
    except anyio.get_cancelled_exc_class():
        with contextlib.suppress(OSError):  # the cancellation is what propagates
            release()
        raise


class ChunkReader(Protocol):
    """One pass over an upload's bytes."""

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` at the end."""
        ...

    async def aclose(self) -> None:
        """Release what the pass holds (never the caller's file object)."""
        ...


@dataclass
class Upload:
    """A file part ready to send: validated, typed, sized when possible, readable again if replayable.

    Attributes:
        wire: the form field name; param: the Python parameter.
        filename: sent in Content-Disposition (a base name only: never a local directory).
        content_type: from the sniffed type (``application/octet-stream`` when unknown).
        kind: the sniffed type, or None.
        size: the byte count when known in advance (a sized part: no chunked encoding), else None.
        replayable: whether the bytes can be sent again (path, bytes, seekable file) for a retry.
    """

    wire: str
    param: str
    filename: str
    content_type: str
    kind: str | None
    size: int | None
    replayable: bool
    opener: Callable[[], Awaitable[ChunkReader]] = field(repr=False)
    max_size: int | None = None
    _opened: bool = field(default=False, repr=False)

    async def open(self) -> ChunkReader:
        """Start a pass over the bytes. A non-replayable upload can be opened once."""
        if self._opened and not self.replayable:
            raise InvalidRequestError.for_field(
                self.param,
                "was an async iterable, which cannot be sent twice; pass a path, bytes or a seekable "
                "file to allow retries",
                wire=self.wire,
            )
        self._opened = True
        return await self.opener()

    @property
    def sendable(self) -> bool:
        """Whether the bytes can be sent now: always if replayable; a one-shot source (an async
        iterable, an unseekable file) only while it was never opened (e.g. a 401 answered
        ``Expect: 100-continue`` before the body was asked for)."""
        return self.replayable or not self._opened


class _BytesReader:
    def __init__(self, data: memoryview, chunk_size: int) -> None:
        self._data = data
        self._pos = 0
        self._chunk = chunk_size

    async def read(self) -> bytes:
        chunk = self._data[self._pos : self._pos + self._chunk]
        self._pos += len(chunk)
        return bytes(chunk)

    async def aclose(self) -> None:
        return None


class _FileReader:
    """Reads a file object in worker threads; closes it only if it opened it."""

    def __init__(
        self, fileobj: IO[bytes], chunk_size: int, limiter: anyio.CapacityLimiter, owned: bool
    ) -> None:
        self._file = fileobj
        self._chunk = chunk_size
        self._limiter = limiter
        self._owned = owned
        if owned:
            # A reader dropped without aclose() (aiohttp abandons a request body's writer when the
            # connection drops) still closes the file it opened.
            weakref.finalize(self, fileobj.close)

    async def read(self) -> bytes:
        data = await anyio.to_thread.run_sync(self._file.read, self._chunk, limiter=self._limiter)
        return bytes(data) if data else b""

    async def aclose(self) -> None:
        if self._owned:
            await release_in_thread(self._file.close, self._limiter)


class _PrefixedReader:
    """A non-seekable source whose first bytes were read for sniffing: those bytes, then the rest."""

    def __init__(self, head: bytes, rest: Callable[[], Awaitable[bytes]]) -> None:
        self._head: bytes | None = head
        self._rest = rest

    async def read(self) -> bytes:
        if self._head:
            head, self._head = self._head, None
            return head
        return await self._rest()

    async def aclose(self) -> None:
        return None


def _upload_error(param: str, wire: str, rule: str) -> InvalidRequestError:
    return InvalidRequestError.for_field(param, rule, wire=wire)


def _check_type(param: str, wire: str, kind: str | None, strict: bool) -> None:
    if not strict:
        return
    accepted = ", ".join(sorted(ACCEPTED_IMAGE_TYPES))
    if kind is None:
        raise _upload_error(
            param,
            wire,
            f"is not an image the SDK recognises (accepted: {accepted}); pass "
            "strict_validation=False to the client to send it anyway",
        )
    if kind not in ACCEPTED_IMAGE_TYPES:
        raise _upload_error(
            param,
            wire,
            f"is a {kind.upper()} image; accepted: {accepted} (pass "
            "strict_validation=False to the client to send it anyway)",
        )


def _check_size(param: str, wire: str, size: int | None, max_size: int | None) -> None:
    if size == 0:
        raise _upload_error(param, wire, "is empty (0 bytes)")
    if size is not None and max_size is not None and size > max_size:
        raise _upload_error(
            param, wire, f"is {size} bytes, over the client's max_upload_size of {max_size} bytes"
        )


def _safe_filename(name: object, fallback: str) -> str:
    text = os.path.basename(os.fsdecode(name)) if isinstance(name, (str, bytes, os.PathLike)) else ""
    text = re.sub(r"[\x00-\x1f\x7f\"\\/]", "_", text).strip()
    return text or fallback


async def prepare_upload(
    value: object,
    *,
    param: str,
    wire: str,
    strict: bool,
    limiter: anyio.CapacityLimiter,
    chunk_size: int,
    max_size: int | None,
    inline: bool = False,
) -> Upload:
    """Check an image input (present, readable, non-empty, an image, not too large) and wrap it.

    Reads at most a few bytes (to sniff the type), in a worker thread for files; a path's check reads a
    small file whole (see :data:`SMALL_UPLOAD`), in the event loop with ``inline``.

    Raises:
        InvalidRequestError: naming the parameter and the rule.
    """
    if isinstance(value, (str, os.PathLike)):
        path = value if isinstance(value, Path) else Path(value)
        return await _prepare_path(path, param, wire, strict, limiter, chunk_size, max_size, inline)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = memoryview(value).cast("B")
        kind = sniff_type(bytes(data[:_SNIFF_BYTES]))
        _check_size(param, wire, len(data), max_size)
        _check_type(param, wire, kind, strict)

        async def open_bytes() -> ChunkReader:
            return _BytesReader(data, chunk_size)

        return Upload(
            wire,
            param,
            f"{param}{extension_for(kind)}",
            _content_type(kind),
            kind,
            len(data),
            True,
            open_bytes,
            max_size,
        )
    if isinstance(value, io.TextIOBase):
        raise _upload_error(param, wire, "is a text file; open it in binary mode ('rb')")
    if hasattr(value, "read"):
        return await _prepare_fileobj(value, param, wire, strict, limiter, chunk_size, max_size)
    if isinstance(value, AsyncIterable):
        return await _prepare_async_iterable(value, param, wire, strict, chunk_size, max_size)
    raise _upload_error(
        param,
        wire,
        "must be a path, bytes, a binary file object or an async iterable of bytes, "
        f"got {type(value).__name__}",
    )


def _content_type(kind: str | None) -> str:
    return _CONTENT_TYPES.get(kind or "", "application/octet-stream")


async def _prepare_path(
    path: Path,
    param: str,
    wire: str,
    strict: bool,
    limiter: anyio.CapacityLimiter,
    chunk_size: int,
    max_size: int | None,
    inline: bool = False,
) -> Upload:
    def probe() -> tuple[int, bytes, bool]:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= SMALL_UPLOAD:
                data = fh.read(SMALL_UPLOAD + 1)
                if len(data) <= SMALL_UPLOAD:
                    return len(data), data, True
            return size, fh.read(_SNIFF_BYTES), False

    try:
        size, head, whole = probe() if inline else await anyio.to_thread.run_sync(probe, limiter=limiter)
    except FileNotFoundError:
        raise _upload_error(param, wire, f"file not found: {str(path)!r}") from None
    except IsADirectoryError:
        raise _upload_error(param, wire, f"is a directory, not a file: {str(path)!r}") from None
    except PermissionError:
        raise _upload_error(param, wire, f"file is not readable: {str(path)!r}") from None
    except OSError as exc:
        raise _upload_error(param, wire, f"cannot read {str(path)!r}: {exc.strerror}") from None
    kind = sniff_type(head[:_SNIFF_BYTES])
    _check_size(param, wire, size, max_size)
    _check_type(param, wire, kind, strict)
    content = memoryview(head) if whole else None

    async def open_path() -> ChunkReader:
        if content is not None:  # read whole when checked: no more file I/O
            return _BytesReader(content, chunk_size)
        fh: IO[bytes] = await acquire_in_thread(lambda: path.open("rb"), _close, limiter)
        return _FileReader(fh, chunk_size, limiter, owned=True)

    return Upload(
        wire,
        param,
        _safe_filename(path.name, f"{param}{extension_for(kind)}"),
        _content_type(kind),
        kind,
        size,
        True,
        open_path,
        max_size,
    )


async def _prepare_fileobj(
    fileobj: Any,
    param: str,
    wire: str,
    strict: bool,
    limiter: anyio.CapacityLimiter,
    chunk_size: int,
    max_size: int | None,
) -> Upload:
    def probe() -> tuple[int | None, int | None, object]:
        start: int | None = None
        size: int | None = None
        try:
            if fileobj.seekable():
                start = fileobj.tell()
                end = fileobj.seek(0, io.SEEK_END)
                size = end - start
                fileobj.seek(start)
        except (AttributeError, OSError, ValueError):
            start = None
        head = fileobj.read(_SNIFF_BYTES)
        if start is not None:
            fileobj.seek(start)
        return start, size, head

    try:
        start, size, head = await anyio.to_thread.run_sync(probe, limiter=limiter)
    except (OSError, ValueError) as exc:
        raise _upload_error(param, wire, f"file object is not readable: {exc}") from None
    if isinstance(head, str):
        raise _upload_error(param, wire, "is a text file; open it in binary mode ('rb')")
    if not isinstance(head, (bytes, bytearray, memoryview)) and head is not None:
        raise _upload_error(param, wire, f"file object's read() returned {type(head).__name__}, not bytes")
    head = bytes(head or b"")
    if start is None and not head:
        size = 0
    kind = sniff_type(head)
    _check_size(param, wire, size, max_size)
    _check_type(param, wire, kind, strict)
    name = _safe_filename(getattr(fileobj, "name", None), f"{param}{extension_for(kind)}")

    if start is not None:
        seek_to = start

        async def open_seekable() -> ChunkReader:
            await anyio.to_thread.run_sync(fileobj.seek, seek_to, limiter=limiter)
            return _FileReader(fileobj, chunk_size, limiter, owned=False)

        return Upload(wire, param, name, _content_type(kind), kind, size, True, open_seekable, max_size)

    reader = _FileReader(fileobj, chunk_size, limiter, owned=False)

    async def open_once() -> ChunkReader:
        return _PrefixedReader(head, reader.read)

    return Upload(wire, param, name, _content_type(kind), kind, None, False, open_once, max_size)


async def _prepare_async_iterable(
    source: AsyncIterable[bytes],
    param: str,
    wire: str,
    strict: bool,
    chunk_size: int,
    max_size: int | None,
) -> Upload:
    iterator = aiter(source)
    head = b""
    exhausted = False
    while len(head) < _SNIFF_BYTES:
        try:
            head += bytes(await anext(iterator))
        except StopAsyncIteration:
            exhausted = True
            break
    kind = sniff_type(head)
    _check_size(param, wire, 0 if exhausted and not head else None, max_size)
    _check_type(param, wire, kind, strict)

    async def rest() -> bytes:
        while True:
            try:
                chunk = bytes(await anext(iterator))
            except StopAsyncIteration:
                return b""
            if chunk:
                return chunk

    async def open_once() -> ChunkReader:
        if exhausted:
            return _PrefixedReader(head, _eof)
        return _PrefixedReader(head, rest)

    return Upload(
        wire,
        param,
        f"{param}{extension_for(kind)}",
        _content_type(kind),
        kind,
        len(head) if exhausted else None,
        False,
        open_once,
        max_size,
    )


async def _eof() -> bytes:
    return b""


def _close(handle: IO[bytes]) -> None:
    handle.close()
