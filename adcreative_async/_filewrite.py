"""Files out: atomic streamed downloads.

Downloads go through a temporary file in the destination directory and are renamed into place only when
the whole body arrived (its length matches ``Content-Length``, or without one, the PNG/JPEG end marker is
present); a failed or cancelled download leaves nothing behind. Blocking file I/O runs in worker threads
under the client's own :class:`anyio.CapacityLimiter`, in large chunks (``writev``); a large download is
written by one thread call fed as its chunks arrive (:class:`StreamWriter`), a small one with its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

import anyio
import anyio.to_thread

from ._errors import APIConnectionError
from ._files import (
    _SNIFF_BYTES,
    INLINE_DOWNLOAD,
    ProgressCallback,
    extension_for,
    release_in_thread,
    sniff_type,
)

__all__ = [
    "AtomicFile",
    "IncompleteDownloadError",
    "KnownDestinations",
    "Received",
    "StreamWriter",
    "WriteBatch",
    "write_atomically",
]

_T = TypeVar("_T")


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
    prefix = os.path.join(os.fspath(directory), f".{stem}.")  # temp_name(stem, slot) without the slot
    for slot in range(TEMP_SLOTS):
        temp = f"{prefix}{slot}.part"
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
            self._is_dir, self._directory = _prepare_directory(self._raw, Path(self._raw))
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
                directory = self._raw if is_dir else os.fspath(Path(self._raw).parent)
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
            # one Path for the result (a small download: the rest is string work)
            final = Path(os.path.join(self._raw, name) if self._is_dir else self._raw)
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
        import secrets  # across file systems only (import footprint)
        import shutil

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


def _discard(handle: IO[bytes], temp_name: str) -> None:
    try:  # removed while still locked: a cleaner never takes it for a leftover meanwhile
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    finally:
        handle.close()
