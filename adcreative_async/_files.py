"""Files in and out: image inputs for uploads, type sniffing, and atomic streamed downloads.

Uploads come from a path, bytes, a binary file object or an async iterable of bytes and are read in
chunks, never whole; a caller's file object is never closed. Downloads go through a temporary file in
the destination directory and are renamed into place only when the whole body arrived (its length
matches ``Content-Length``, or without one, the PNG/JPEG end marker is present); a failed or cancelled
download leaves nothing behind. Blocking file I/O runs in worker threads under the client's own
:class:`anyio.CapacityLimiter`, in large chunks (``writev``); a large download is written by one thread
call fed as its chunks arrive (:class:`StreamWriter`), a small one with its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import io
import os
import queue
import re
import secrets
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from ._errors import APIConnectionError, InvalidRequestError

__all__ = [
    "ACCEPTED_IMAGE_TYPES",
    "INLINE_DOWNLOAD",
    "AtomicFile",
    "ImageInput",
    "IncompleteDownloadError",
    "KnownDestinations",
    "ProgressCallback",
    "Received",
    "SendGuard",
    "StreamWriter",
    "Upload",
    "WriteBatch",
    "prepare_upload",
    "send_guard",
    "send_guards",
    "sniff_type",
    "write_atomically",
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
        return await _prepare_path(Path(value), param, wire, strict, limiter, chunk_size, max_size, inline)
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


# ------------------------------------------------------------------------------------------ downloads


class IncompleteDownloadError(APIConnectionError):
    """A download ended before the whole file arrived (length mismatch or missing end marker).

    Nothing was written to the destination. Downloading again is safe, but the server counts every
    download (seed 001: each increments ``DownloadCount``).
    """


def _has_end_marker(kind: str | None, tail: bytes) -> bool:
    if kind == "png":
        return tail.endswith(b"IEND\xaeB`\x82")
    if kind == "jpeg":
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if kind == "pdf":  # Product Photoshoot's format=2: a PDF ends with %%EOF (and maybe an end of line)
        return tail.rstrip(b"\r\n\t \x00").endswith(b"%%EOF")
    return True  # no marker known for other types: nothing to check


class Received:
    """What a download received so far: the byte count, the first bytes (type) and the last (end marker)."""

    def __init__(self) -> None:
        self.done = 0
        self._head = b""
        self._tail = b""

    def add(self, chunk: bytes) -> None:
        """Account for the next chunk of the body."""
        if len(self._head) < _SNIFF_BYTES:
            self._head += chunk[: _SNIFF_BYTES - len(self._head)]
        self._tail = (self._tail + chunk[-16:])[-16:]
        self.done += len(chunk)

    def add_view(self, view: memoryview) -> None:
        """:meth:`add` for bytes in a buffer that is reused after this call (what it keeps is copied)."""
        if len(self._head) < _SNIFF_BYTES:
            self._head += bytes(view[: _SNIFF_BYTES - len(self._head)])
        self._tail = bytes(view[-16:]) if len(view) >= 16 else (self._tail + bytes(view))[-16:]
        self.done += len(view)

    def reset(self) -> None:
        """Forget everything: the body starts again from its first byte."""
        self.done = 0
        self._head = self._tail = b""

    @property
    def kind(self) -> str | None:
        """The type sniffed from the first bytes."""
        return sniff_type(self._head)

    def check(self, expected_length: int | None) -> None:
        """Raise unless the body is complete: ``expected_length`` bytes, or without one, an end marker.

        Raises:
            IncompleteDownloadError: the body was shorter or longer than expected, or a PNG/JPEG lacks
                its end marker.
        """
        if expected_length is not None and self.done != expected_length:
            raise IncompleteDownloadError(
                f"download incomplete: received {self.done} of {expected_length} bytes", sent=True
            )
        kind = self.kind
        if expected_length is None and not _has_end_marker(kind, self._tail):
            raise IncompleteDownloadError(
                f"download incomplete: {self.done} bytes received and the {kind.upper() if kind else ''}"
                " end marker is missing",
                sent=True,
            )


_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


class KnownDestinations:
    """Download destinations already prepared by this client (directory made, kind known), so that the
    next download to one of them creates its file with its first bytes: one worker-thread call for a
    small file instead of two.

    A destination is remembered once a file was created there and forgotten when creating one fails
    (the directory was removed meanwhile: that download fails after its request instead of before). At
    most :data:`KNOWN_DESTINATIONS` are kept, the least recently used dropped first.
    """

    def __init__(self) -> None:
        self._known: OrderedDict[str, bool] = OrderedDict()  # destination -> is a directory

    def get(self, raw: str) -> bool | None:
        """Whether ``raw`` is a directory, if it was prepared; None if it is not known."""
        is_dir = self._known.get(raw)
        if is_dir is not None:
            self._known.move_to_end(raw)
        return is_dir

    def add(self, raw: str, is_dir: bool) -> None:
        """``raw`` was prepared (a file was created in it, or at it)."""
        self._known[raw] = is_dir
        self._known.move_to_end(raw)
        while len(self._known) > KNOWN_DESTINATIONS:
            self._known.popitem(last=False)

    def discard(self, raw: str) -> None:
        """Creating a file at ``raw`` failed: prepare it again next time."""
        self._known.pop(raw, None)


#: How many download destinations a client remembers as prepared (see :class:`KnownDestinations`).
KNOWN_DESTINATIONS = 256
#: Temporary files of one download stem (a task id) at once, at most: ``.<stem>.<slot>.part`` for slots
#: 0, 1, ... (the lowest free one), so that an earlier owner's file is found by name, without listing
#: the folder.
TEMP_SLOTS = 8

try:  # POSIX: a live writer holds a lock on its temporary file; a dead one's is free
    import fcntl

    _LOCKS = True
except ImportError:  # pragma: no cover - Windows: leftovers cannot be told from live files
    _LOCKS = False


def temp_name(stem: str, slot: int) -> str:
    """The name of a download's temporary file of ``stem`` (a task id) in ``slot``."""
    return f".{stem}.{slot}.part"


def _lock(fd: int) -> bool:
    """Lock ``fd`` for this open file (non-blocking); False when another holds it."""
    if not _LOCKS:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _create_temp(directory: str, stem: str) -> tuple[int, str]:
    """Create and lock a temporary file for ``stem`` in ``directory``, in the lowest free slot."""
    slot = 0
    while True:
        temp = os.path.join(directory, temp_name(stem, slot))
        slot += 1
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except FileExistsError:
            continue
        try:
            # A cleaner that found the file before its lock holds its own: it removes it, take another.
            if _lock(fd) and os.stat(temp).st_ino == os.fstat(fd).st_ino:
                return fd, temp
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_leftovers(directory: str | os.PathLike[str], stem: str) -> int:
    """Remove the temporary files of ``stem`` (a task id) in ``directory`` that no live writer holds:
    what a killed process left (blocking). How many were removed. Without file locks (Windows), none."""
    if not _LOCKS:  # pragma: no cover
        return 0
    removed = 0
    folder = os.fspath(directory)
    for slot in range(TEMP_SLOTS):
        temp = os.path.join(folder, temp_name(stem, slot))
        if not os.access(temp, os.F_OK):  # the usual case, without an exception's cost (every commit)
            continue
        try:
            fd = os.open(temp, os.O_RDONLY | _O_BINARY)
        except OSError:
            continue
        try:
            if _lock(fd) and os.stat(temp).st_ino == os.fstat(fd).st_ino:
                os.unlink(temp)
                removed += 1
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


def _prepare_directory(raw: str, target: Path) -> tuple[bool, str]:
    """(whether ``raw`` is a directory, the directory files are made in), the directory created and
    checked writable (blocking): a destination that cannot be written fails before a download."""
    is_dir = raw.endswith((os.sep, "/")) or os.path.isdir(raw)
    directory = raw if is_dir else os.fspath(target.parent)
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {directory}")
    return is_dir, directory


class AtomicFile:
    """A temporary file beside the destination, renamed into place when complete, removed otherwise.

    Use with ``async with``: leaving the block without :meth:`commit` (an error, a cancellation)
    removes the temporary file. Every file operation runs in a worker thread under ``limiter`` (but the
    commit of a small file with ``inline_small``); the file is created with the process's umask applied
    (as ``open()`` would), not ``mkstemp``'s 0600.

    The temporary file (``.<stem>.<slot>.part``, locked while it is written) is created with the first
    bytes written (or by the commit), never before: a process killed before any byte arrived leaves
    nothing. Entering prepares the destination (its directories made, checked writable) unless
    ``known`` says it was prepared already, so that a destination that cannot be written fails before
    anything is downloaded. The commit removes the temporary files of the same stem that an earlier,
    dead writer left (see :func:`remove_leftovers`).

    Args:
        dest: a directory (existing, or written with a trailing separator), or the file path (its
            parent directories are created).
        default_stem: the temporary file's prefix, and the name's stem in a directory: a plain name
            (callers pass canonical GUIDs), never a path.
        known: the destinations this client prepared already, or None.
        inline_small: a commit that makes the whole file, of at most :data:`INLINE_DOWNLOAD` bytes,
            runs in the event loop (see ``TransferOptions.inline_small_files``).
    """

    def __init__(
        self,
        dest: str | os.PathLike[str],
        default_stem: str,
        limiter: anyio.CapacityLimiter,
        known: KnownDestinations | None = None,
        inline_small: bool = False,
    ) -> None:
        if not default_stem or default_stem.strip(".") == "" or re.search(r"[/\\\x00]", default_stem):
            raise ValueError(f"a file name stem must be a plain name, not {default_stem!r}")
        self._raw = os.fspath(dest)
        self._target = Path(self._raw)
        self._stem = default_stem
        self._limiter = limiter
        self._known = known
        self._inline_small = inline_small
        self._is_dir = False
        self._directory: str | None = None
        self._handle: IO[bytes] | None = None
        self._temp = ""
        # Set once the block is left: a worker thread still running for a cancelled caller then
        # discards what it made instead of keeping or committing it.
        self._lock = threading.Lock()
        self._left = False

    async def __aenter__(self) -> AtomicFile:
        is_dir = self._known.get(self._raw) if self._known is not None else None
        if is_dir is not None:
            self._is_dir = is_dir  # prepared already
            return self
        await anyio.to_thread.run_sync(self._prepare, limiter=self._limiter)
        return self

    def _prepare(self) -> str:
        """Make and check the destination's directory (in a worker thread); that directory."""
        known = self._known
        try:
            self._is_dir, self._directory = _prepare_directory(self._raw, self._target)
        except OSError:
            if known is not None:
                known.discard(self._raw)
            raise
        if known is not None:
            known.add(self._raw, self._is_dir)
        return self._directory

    def _create(self) -> IO[bytes]:
        """Create the temporary file (in a worker thread, the destination's directories included)."""
        directory = self._directory
        if directory is None:
            is_dir = self._known.get(self._raw) if self._known is not None else None
            if is_dir is None:
                directory = self._prepare()
            else:
                directory = self._raw if is_dir else os.fspath(self._target.parent)
        try:
            fd, temp = _create_temp(directory, self._stem)
        except OSError:
            if self._known is not None:
                self._known.discard(self._raw)
            raise
        handle = os.fdopen(fd, "wb")
        with self._lock:
            left = self._left
            if not left:
                self._temp, self._handle = temp, handle
        if left:  # the caller is gone (cancelled while the file was made): no one owns it
            _discard(handle, temp)
            raise _Abandoned
        return handle

    async def __aexit__(self, *exc_info: object) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            self._left = True
        if handle is not None:
            await release_in_thread(functools.partial(_discard, handle, self._temp), self._limiter)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The worker threads this file's operations run in."""
        return self._limiter

    async def ensure_created(self) -> None:
        """Make the temporary file now, if it is not yet (one worker-thread call)."""
        if self._handle is None:
            await anyio.to_thread.run_sync(self._create, limiter=self._limiter)

    def handle(self) -> IO[bytes]:
        """The temporary file, made if it is not yet (blocking: in a worker thread)."""
        return self._handle if self._handle is not None else self._create()

    def fileno(self) -> int:
        """The temporary file's descriptor, its buffer flushed, to write to it directly (it must exist:
        :meth:`ensure_created`)."""
        handle = self._handle
        if handle is None:
            raise RuntimeError("the temporary file is not made yet")
        handle.flush()
        return handle.fileno()

    async def write(self, chunks: list[bytes]) -> None:
        """Append ``chunks`` (one worker-thread call for all of them, the file's creation included)."""
        if not chunks:
            return

        def write_all() -> None:
            handle = self._handle if self._handle is not None else self._create()
            write_chunks(handle, chunks)

        await anyio.to_thread.run_sync(write_all, limiter=self._limiter)

    async def truncate(self) -> None:
        """Empty the file: the body starts again."""
        handle = self._handle
        if handle is None:
            return  # not created yet: nothing written

        def empty() -> None:
            handle.seek(0)
            handle.truncate()

        await anyio.to_thread.run_sync(empty, limiter=self._limiter)

    async def commit(self, name: str, chunks: list[bytes] | None = None) -> Path:
        """Append ``chunks`` (the last bytes received, if any), close the file and rename it into
        place, all in one worker-thread call (with the file's creation, if it is still to be made);
        ``name`` is its name when ``dest`` is a directory (a relative path in it: its directories are
        made). An earlier file at that name is replaced atomically.

        Returns:
            The final path.
        """
        tail = chunks or []

        def finish() -> Path:
            handle = self._handle if self._handle is not None else self._create()
            for chunk in tail:
                handle.write(chunk)
            handle.flush()
            final = self._target / name if self._is_dir else self._target
            with self._lock:
                if self._left:  # the caller is gone: leaving the block took the file, to discard it
                    raise _Abandoned
                self._handle = None  # the commit owns it now
            folder = os.path.dirname(self._temp)
            try:
                if os.path.dirname(final) != folder:  # a name with folders in it (or spelt otherwise)
                    final.parent.mkdir(parents=True, exist_ok=True)
                _replace(self._temp, final)
            except BaseException:
                _discard(handle, self._temp)  # nothing left behind
                raise
            handle.close()  # after the rename: the lock marked it live until then
            remove_leftovers(folder, self._stem)
            return final

        if self._inline_small and self._handle is None and sum(len(c) for c in tail) <= INLINE_DOWNLOAD:
            return finish()  # a small file never written yet: made, written and renamed in one go
        return await anyio.to_thread.run_sync(finish, limiter=self._limiter)


#: Buffers per ``os.writev`` call: at most the smallest ``IOV_MAX`` of common systems (1024 on Linux
#: and macOS).
_IOV_MAX = 1024


def write_chunks(handle: IO[bytes], chunks: Sequence[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``handle`` (blocking) in as few system calls as possible: one ``writev`` for
    up to :data:`_IOV_MAX` of them where the OS has it (the buffer flushed first).

    Why: a worker thread takes the GIL back after each system call, and while the event loop's thread
    is busy receiving that takes up to ``sys.getswitchinterval()`` (5 ms): a write per chunk made a
    1 GiB download wait on the GIL thousands of times.
    """
    writev = getattr(os, "writev", None)
    if writev is None or len(chunks) == 1:  # pragma: no cover - Windows has no writev
        for chunk in chunks:
            handle.write(chunk)
        return
    handle.flush()
    fd = handle.fileno()
    for start in range(0, len(chunks), _IOV_MAX):
        views = [memoryview(c) for c in chunks[start : start + _IOV_MAX]]
        while views:
            written = writev(fd, views)
            while views and written >= len(views[0]):  # drop what went out; a partial write goes on
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]


class _Abandoned(Exception):
    """A worker thread's file operation whose caller was cancelled: what it made is discarded."""


def _replace(temp: str, final: Path) -> None:
    """Rename ``temp`` to ``final`` (replacing it); across file systems, through a copy beside it."""
    try:
        os.replace(temp, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        beside = final.with_name(f".{final.name}.{secrets.token_hex(4)}.copy")
        try:
            shutil.copyfile(temp, beside)
            os.replace(beside, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(beside)


#: A :class:`StreamWriter` hands received chunks to its thread this many bytes at a time (one ``writev``
#: each): a hand-off per chunk (64-256 KiB) woke the thread thousands of times per GiB. Measured on a
#: 256 MiB download, client CPU per GiB: 0.87 s chunk by chunk, 0.89 s by 256 KiB, 0.76-0.82 s by 1 MiB
#: (aiohttp writing in the event loop: 0.52-0.56 s; the rest is the bytes crossing to another core).
STREAM_COALESCE = 1024 * 1024


#: A :class:`StreamWriter` made ``in_loop`` writes each chunk of at most this many bytes in the event loop
#: (one ``write`` to the page cache: 55-60 us per 256 KiB here, p99 0.2-0.7 ms on a loaded machine);
#: larger chunks (a ``chunk_size`` over it) go to its thread.
LOOP_WRITE_MAX = 1024 * 1024
#: An in-loop write that kept the event loop longer than this (seconds) hands the next
#: :data:`LOOP_WRITE_BACKOFF` bytes to the worker thread: the disk may be throttling writers (dirty pages
#: over the kernel's limit) or the file system stalling, and the loop should not wait on it again at
#: once. Assumed: 20 ms, far above a write's p99 measured on a loaded 2-core machine (where a write
#: preempted by other processes took 12-58 ms about once per GiB), under a stalled disk's pauses.
LOOP_WRITE_STALL = 0.020
#: After a slow in-loop write, this many bytes are written by the thread before the loop tries again
#: (the thread's queue drained first: the file's bytes stay in order).
LOOP_WRITE_BACKOFF = 32 * 1024 * 1024

try:  # Linux
    from resource import RUSAGE_THREAD, getrusage

    def thread_sleeps() -> int:
        """How many times this thread slept in the kernel so far (its voluntary context switches: on a
        disk, a lock, the writeback throttle); -1 where the OS does not count them per thread."""
        return getrusage(RUSAGE_THREAD).ru_nvcsw

except ImportError:  # pragma: no cover - elsewhere every slow write counts as the disk's

    def thread_sleeps() -> int:
        """-1: this OS does not count a thread's sleeps (see the Linux version)."""
        return -1


def write_stalled(started: float, sleeps: int) -> bool:
    """Whether an in-loop write begun at ``started`` (``time.perf_counter()``), when this thread had
    slept ``sleeps`` times (:func:`thread_sleeps`), stalled on the disk: it took longer than
    :data:`LOOP_WRITE_STALL` and the thread slept in it. One that was slow only because other processes
    had the CPU (the thread preempted, never asleep) is not the disk's, and a worker thread would wait
    for the CPU as well: the writes stay in the loop. Measured on the 2-core machine shared by six
    agents (load average 7-9), 6 GiB downloaded: 11 hand-offs to the thread with the time alone (the
    client's CPU per GiB 0.83 s against 0.51 s for aiohttp's loop), none with the sleeps counted."""
    return time.perf_counter() - started > LOOP_WRITE_STALL and (sleeps < 0 or thread_sleeps() > sleeps)


class StreamWriter:
    """A large body written to an :class:`AtomicFile` as it is received: in the event loop chunk by chunk
    (``in_loop``), or by a worker-thread call that takes chunks as they come, so that receiving (the
    event loop) and writing (the thread) overlap.

    In the loop (what aiohttp's own read-to-file loop does): the file is made by a worker thread with
    the first bytes, then each chunk of at most :data:`LOOP_WRITE_MAX` bytes is written with one
    ``write`` as soon as it is received, while it is in this core's cache, and nothing is held. A write
    that keeps the loop longer than :data:`LOOP_WRITE_STALL` hands the next :data:`LOOP_WRITE_BACKOFF`
    bytes to the worker thread (as below), then the loop writes again once the thread has written them:
    a disk that throttles or stalls costs the loop one slow write per back-off. On two cores shared by
    the emulator, the client and other work, the thread's copy from another core cost more than the
    loop's write (client CPU per GiB 0.68-1.03 s against 0.55-0.57 s, aiohttp's loop 0.50-0.59 s).

    To the thread, chunks are handed over ``coalesce`` bytes at a time (:data:`STREAM_COALESCE`, at
    most half of ``limit``) through a queue: a queue put, not a thread hand-off, for the event loop; one
    hand-off per run of the thread. Past ``limit`` bytes queued, :meth:`write` waits until the thread
    has written half of them: a download holds at most about 1.5 x ``limit`` received bytes.

    Use with ``async with``. Leaving the block normally writes what was handed over and waits for the
    thread (its error, e.g. a full disk, is raised then or by the next :meth:`write`); leaving it by an
    error or a cancellation drops what was not handed over yet and waits for the thread to stop (the
    file is discarded). The thread call runs in a task of this object's own, awaited on every way out:
    never left running.
    """

    def __init__(
        self, file: AtomicFile, limit: int, coalesce: int = STREAM_COALESCE, *, in_loop: bool = False
    ) -> None:
        self._in_loop = in_loop
        self._fd: int | None = None  # the file's descriptor, for the loop's writes
        self._thread_budget = 0  # bytes the thread writes before the loop tries again
        self.loop_writes = 0  # chunks written in the loop
        self.slow_writes = 0  # in-loop writes over LOOP_WRITE_STALL
        self._most_coalesce = coalesce
        self.coalesce = coalesce
        self.limit = limit
        self._file = file
        self._queue: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()  # None: the last one
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._lock = threading.Lock()
        self._queued = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Future[None] | None = None

    @property
    def limit(self) -> int:
        """Received bytes that may be queued for the thread; settable while it runs (a download's share
        of the client's buffer shrinks as more start)."""
        return self._limit_now

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit_now = value
        self.coalesce = max(1, min(self._most_coalesce, value // 2))  # held at most: limit + coalesce

    async def __aenter__(self) -> StreamWriter:
        if not self._in_loop:
            self._start_thread()
        return self  # in the loop: the file is made with the first bytes (see write)

    def _start_thread(self) -> None:
        self._task = asyncio.ensure_future(anyio.to_thread.run_sync(self._run, limiter=self._file._limiter))

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if exc_type is None and self._gathered:
            self._queue.put(self._gathered)
        self._gathered = []
        self._queue.put(None)
        if exc_type is None:
            await task  # the thread's error, if it failed
            return
        with anyio.CancelScope(shield=True):  # the thread cannot be stopped: wait until it stops
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the error that stopped the caller is what propagates

    def write_now(self, chunk: bytes) -> bool:
        """Write ``chunk`` in the loop if this writer writes there now: True when written; False when
        it is the thread's (then :meth:`write` it). Spares a chunk written in the loop a coroutine."""
        fd = self._fd
        if fd is None or self._task is not None:
            return False
        if len(chunk) > LOOP_WRITE_MAX:
            self._fd = None  # chunks larger than a loop write: the thread writes from here on
            self._start_thread()
            return False
        started, sleeps = time.perf_counter(), thread_sleeps()
        _write_fully(fd, chunk)
        self.loop_writes += 1
        if write_stalled(started, sleeps):
            self.slow_writes += 1
            self._thread_budget = LOOP_WRITE_BACKOFF
            self._start_thread()
        return True

    async def write(self, chunk: bytes) -> None:
        """Write ``chunk`` in the loop, or queue it for the thread (waits while ``limit`` bytes are
        queued); the thread's error if it failed."""
        if self._in_loop and self._fd is None and self._task is None:  # the first bytes
            file = self._file
            handle = file._handle
            if handle is None:
                handle = await anyio.to_thread.run_sync(file._create, limiter=file._limiter)
            handle.flush()  # empty (written with writev); the loop's writes go straight to the fd
            self._fd = handle.fileno()
        if self.write_now(chunk):
            return
        await self._hand_over(chunk)
        if self._fd is not None:  # backing off from the loop: back once the budget is written
            self._thread_budget -= len(chunk)
            if self._thread_budget <= 0:
                await self._back_to_the_loop()

    async def _hand_over(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._gathered.append(chunk)
        self._gathered_size += len(chunk)
        if self._gathered_size < self.coalesce:
            return
        chunks, size = self._gathered, self._gathered_size
        self._gathered, self._gathered_size = [], 0
        with self._lock:
            self._queued += size
            waiter = self._waiter = self._loop.create_future() if self._queued > self._limit_now else None
        self._queue.put(chunks)
        if waiter is not None:
            await waiter
            if self._error is not None:
                raise self._error

    async def _back_to_the_loop(self) -> None:
        """Let the thread write what it was handed and end; the loop writes the next chunks."""
        task = self._task
        assert task is not None
        if self._gathered:
            self._queue.put(self._gathered)
            self._gathered, self._gathered_size = [], 0
        self._queue.put(None)
        await task  # a cancellation here leaves the task to __aexit__, which waits for it
        self._task = None

    def _run(self) -> None:
        """The worker thread: write chunks as they come until the end (or a stop)."""
        file, get = self._file, self._queue.get
        try:
            handle = file._handle if file._handle is not None else file._create()
            while (chunks := get()) is not None:
                write_chunks(handle, chunks)
                with self._lock:
                    self._queued -= sum(map(len, chunks))
                    waiter = self._waiter if self._queued <= self._limit_now // 2 else None
                    if waiter is not None:
                        self._waiter = None
                if waiter is not None:
                    self._loop.call_soon_threadsafe(_resolve, waiter)
        except BaseException as exc:
            self._error = exc
            with self._lock:
                waiter, self._waiter = self._waiter, None
            if waiter is not None:
                self._loop.call_soon_threadsafe(_resolve, waiter)
            raise


def _write_fully(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until all of ``data`` is written (a regular file takes it in one call but may take
    less, e.g. past a signal)."""
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]  # pragma: no cover - seen past a signal only
    while view:  # pragma: no cover
        view = view[os.write(fd, view) :]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WriteBatch:
    """Chunks gathered until about ``size`` bytes, so that one worker-thread call writes them all."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.chunks: list[bytes] = []
        self.bytes = 0

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True when the batch holds ``size`` bytes or more."""
        self.chunks.append(chunk)
        self.bytes += len(chunk)
        return self.bytes >= self.size

    def take(self) -> list[bytes]:
        """The chunks kept, emptying the batch."""
        chunks, self.chunks, self.bytes = self.chunks, [], 0
        return chunks


async def write_atomically(
    chunks: AsyncIterator[bytes],
    dest: str | os.PathLike[str],
    *,
    default_stem: str,
    content_type: str | None,
    expected_length: int | None,
    limiter: anyio.CapacityLimiter,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 256 * 1024,
) -> Path:
    """Stream ``chunks`` into ``dest`` through a temporary file in the same directory.

    ``dest`` is a directory (existing, or written with a trailing separator): the file is named
    ``default_stem`` plus the extension of the sniffed type. Otherwise it is the file path (parent
    directories are created). The temporary file is renamed into place only when complete; on any
    failure or cancellation it is removed. Small chunks are written together, up to ``batch_size``
    bytes per worker-thread call.

    Raises:
        IncompleteDownloadError: the body was shorter or longer than ``Content-Length``, or without a
            length, a PNG/JPEG lacked its end marker.
    """
    received = Received()
    batch = WriteBatch(batch_size)
    async with AtomicFile(dest, default_stem, limiter) as file:
        async for chunk in chunks:
            if not chunk:
                continue
            received.add(chunk)
            if batch.add(chunk):
                await file.write(batch.take())
            if on_progress is not None:
                on_progress(received.done, expected_length)
        received.check(expected_length)
        name = f"{default_stem}{extension_for(received.kind, content_type)}"
        return await file.commit(name, batch.take())


def _close(handle: IO[bytes]) -> None:
    handle.close()


def _discard(handle: IO[bytes], temp_name: str) -> None:
    try:  # removed while still locked: a cleaner never takes it for a leftover meanwhile
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    finally:
        handle.close()
