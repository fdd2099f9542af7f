"""A large download's body read straight from its connection into buffers made once per download, and
written to its file from them (issue 23: a download at least as fast as raw aiohttp's own loop).

Why: aiohttp hands a body over as a new ``bytes`` object per socket read (``recv(256 KiB)``), which the
reader writes and drops. Whenever glibc's heap gives that memory back between two reads (it trims the
top of its heap past ``M_TRIM_THRESHOLD``: a matter of what else the process allocated), every 4 KiB
received costs a page fault: about 200,000 per GiB, near half of the client's CPU, for the SDK and for a
plain aiohttp loop alike (measured: ``benchmarks/README.md``, transfers). Past its headers, a body of
plain bytes and known length (``StreamedResponse.detach``) is read instead by an
:class:`asyncio.BufferedProtocol` set on the connection's transport: ``recv_into`` a buffer that is
used again, and the bytes written from it as they arrive, with no ``bytes`` object, no task wake-up and
no coroutine per chunk.

How it is written (``TransferOptions.write_in_loop``):

- In the event loop (the default): one buffer of up to
  :data:`~adcreative_async._filewrite.LOOP_WRITE_MAX` (1 MiB; less, down to ``chunk_size``, when many
  downloads share the client's ``DOWNLOAD_WRITE_BUFFER``); each read into it is written with one
  ``write`` before the next read, in the protocol's callback. One write blocks the loop for its
  duration, at most one buffer (as aiohttp's own loop writing a file, one chunk). Reads of up to 1 MiB
  where asyncio reads 256 KiB: fewer reads, writes and loop turns (a GiB: 0.38-0.40 s of the client's
  CPU against 0.50-0.52 s with 256 KiB reads into the same buffer). A write longer than
  :data:`~adcreative_async._filewrite.LOOP_WRITE_STALL` in which the thread slept (the disk's stall, not
  the CPU taken by other processes: ``_filewrite.write_stalled``) hands the next
  :data:`~adcreative_async._filewrite.LOOP_WRITE_BACKOFF` bytes to a worker thread (below); the loop writes
  again once that thread has written them.
- In a worker thread: buffers of up to :data:`~adcreative_async._filewrite.STREAM_COALESCE` bytes (as many
  as the download's share of ``STREAM_WRITE_QUEUE`` holds, at least two): the loop reads into one while
  the thread writes the others, a whole buffer per hand-off; with none free, reading pauses until the
  thread gives one back. One worker-thread call writes them all.

The memory of a download is its buffers, whatever the body's size. The connection is closed after the
body (aiohttp's parser did not see it). What the receiver keeps of the SDK's promises: the file is the
:class:`~adcreative_async._filewrite.AtomicFile`'s (renamed into place by the caller once complete), the
bytes counted and sniffed as before (:class:`~adcreative_async._filewrite.Received`), a connection cut or a
read timeout returned for the caller to resume (every received byte written first), a write error or a
cancellation leaving nothing written in the thread after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time

import anyio
import anyio.to_thread

from . import _filewrite as files
from ._errors import AdCreativeError, APIConnectionError
from ._files import ProgressCallback
from ._filewrite import AtomicFile, Received
from ._responses import DetachedBody, StreamedResponse

__all__ = ["receive_body"]


async def receive_body(
    response: StreamedResponse,
    body: DetachedBody,
    file: AtomicFile,
    received: Received,
    total: int,
    on_progress: ProgressCallback | None,
    *,
    buffer_size: int,
    queue_limit: int,
    in_loop: bool,
) -> APIConnectionError | None:
    """Write the rest of a detached body to ``file`` (its ``received.done`` bytes are there already)
    until ``received.done`` is ``total``; the transport error that cut it, if one did (every byte
    received is written by then: a resume appends).

    ``buffer_size``: the most bytes read (and written in the loop) at once; ``queue_limit``: the most
    bytes held for the thread. ``in_loop`` needs the file made already (``file.ensure_created()``).

    Raises:
        OSError: a write failed (nothing more is written).
        Whatever ``on_progress`` raised.
    """
    receiver = _Receiver(response, body, file, received, total, on_progress, buffer_size, queue_limit)
    return await receiver.run(in_loop)


class _Receiver(asyncio.BufferedProtocol):
    """The protocol of the connection while it carries the body, and the writing of its bytes."""

    def __init__(
        self,
        response: StreamedResponse,
        body: DetachedBody,
        file: AtomicFile,
        received: Received,
        total: int,
        on_progress: ProgressCallback | None,
        buffer_size: int,
        queue_limit: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._response = response
        self._body = body
        self._transport = body.transport
        self._file = file
        self._received = received
        self._total = total
        self._remaining = total - received.done
        self._started = received.done  # the head (counted by detach) and this body's bytes follow
        self._on_progress = on_progress
        self._chunk = memoryview(bytearray(buffer_size))  # the in-loop buffer (and a scratch one)
        self._queue_limit = queue_limit
        self._fd: int | None = None  # set: each read is written in the loop
        self._end: asyncio.Future[None] = self._loop.create_future()
        self._error: BaseException | None = None  # a write or progress failure: nothing more written
        self._interrupted: AdCreativeError | None = None  # a cut or a read timeout: resumable
        self._lost = False
        self._paused = False
        self._timeout = response.read_timeout
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        # the thread's side
        self._free: list[memoryview] = []  # buffers the loop may read into
        self._buffers = 0  # buffers made
        self._current: memoryview | None = None  # the buffer being filled, from ``_fill``
        self._fill = 0
        self._queue: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._task: asyncio.Future[None] | None = None
        self._budget = 0  # bytes handed to the thread before the loop writes again (-1: all)
        self._returning = False  # the thread's budget is spent: back to the loop once it is done
        self._held: list[bytes] = []  # bytes read meanwhile (a transport that read while paused)
        self._stopping = False  # the thread drops what it has not written yet

    # ------------------------------------------------------------------------------------- the run

    async def run(self, in_loop: bool) -> APIConnectionError | None:
        body, transport = self._body, self._transport
        failed = True
        try:
            if in_loop:
                self._fd = self._file.fileno()
            else:
                self._to_thread(-1)
            head, step = memoryview(body.head), len(self._chunk)
            for start in range(0, len(head), step):  # what aiohttp received: a chunk per write too
                if self._end.done():
                    break
                self._take(head[start : start + step])
            if self._remaining > 0 and self._error is None:
                transport.set_protocol(self)
                transport.resume_reading()
                if self._timeout is not None:
                    self._timer = self._loop.call_at(self._last + self._timeout, self._watch)
                await self._end
            failed = self._error is not None
        finally:
            await self._finish(failed)
        if self._error is not None:
            raise self._error
        if self._interrupted is not None:
            assert isinstance(self._interrupted, APIConnectionError)
            return self._interrupted
        return None

    async def _finish(self, failed: bool) -> None:
        """Stop reading; let the thread write what it was handed (or drop it, ``failed``); aiohttp's
        protocol set back on the transport."""
        self._over()
        if self._timer is not None:
            self._timer.cancel()
        if failed:
            self._stopping = True
        elif self._current is not None and self._fill:
            self._hand_over()  # the last bytes received
        task, self._task = self._task, None
        if task is not None:
            self._queue.put(None)
            with anyio.CancelScope(shield=True):  # the thread cannot be stopped: wait until it stops
                await asyncio.wait([task])
            error = None if task.cancelled() else task.exception()
            if error is not None and self._error is None and not failed:
                self._error = error
        if self._held and self._error is None and not failed:
            self._write_held()  # a cut while the thread finished: these bytes too, for a resume
        if not self._lost and self._transport.get_protocol() is self:
            self._transport.set_protocol(self._body.protocol)
        self._response.received += max(0, self._received.done - self._started - len(self._body.head))

    def _over(self) -> None:
        if not self._end.done():
            self._end.set_result(None)
        self._pause()

    def _pause(self) -> None:
        if not self._paused and not self._lost:
            self._paused = True
            with contextlib.suppress(RuntimeError):  # a closing transport
                self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and not self._end.done() and not self._lost:
            self._paused = False
            self._last = self._loop.time()
            self._transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and self._interrupted is None:
            self._error = exc
        self._stopping = True
        self._over()

    def _cut(self, error: AdCreativeError) -> None:
        if self._error is None and self._interrupted is None and not self._end.done():
            self._interrupted = error
        self._over()

    def _watch(self) -> None:
        """The read timeout: no byte for ``read_timeout`` seconds while reading (not while paused)."""
        self._timer = None
        if self._end.done() or self._timeout is None:
            return
        now = self._loop.time()
        if not self._paused and now - self._last >= self._timeout:
            self._cut(self._response.timed_out())
            return
        since = now if self._paused else self._last
        self._timer = self._loop.call_at(since + self._timeout, self._watch)

    # ---------------------------------------------------------------------------- the protocol

    def get_buffer(self, sizehint: int) -> memoryview:
        current = self._current
        if self._fd is None and current is not None:
            return current[self._fill :]
        return self._chunk  # in the loop (or past the end: a scratch buffer, dropped)

    def buffer_updated(self, nbytes: int) -> None:
        if self._end.done():
            return  # past the end, a failure or a cut: dropped
        current = self._current
        if self._fd is None and current is not None:
            self._take(current[self._fill : self._fill + nbytes], filled=True)
        else:
            self._take(self._chunk[:nbytes])

    def eof_received(self) -> bool | None:
        self._cut(self._response.cut_off(f"the connection closed {self._remaining} bytes early"))
        return None  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._remaining > 0:
            detail = f"{type(exc).__name__}: {exc}" if exc is not None else "the connection closed"
            self._cut(self._response.cut_off(f"{detail}, {self._remaining} bytes early"))
        self._over()
        self._body.protocol.connection_lost(exc)  # aiohttp's bookkeeping of the connection

    def pause_writing(self) -> None:
        self._body.protocol.pause_writing()

    def resume_writing(self) -> None:
        self._body.protocol.resume_writing()

    # -------------------------------------------------------------------------- bytes received

    def _take(self, view: memoryview, *, filled: bool = False) -> None:
        """Account for ``view``, received, and write it (in the loop) or keep it for the thread."""
        try:
            if len(view) > self._remaining:
                view = view[: self._remaining]  # past the announced length: dropped (never reused)
            self._remaining -= len(view)
            if self._timeout is not None:
                self._last = self._loop.time()
            self._received.add_view(view)
            fd = self._fd
            if fd is not None:
                started, sleeps = time.perf_counter(), files.thread_sleeps()
                files._write_fully(fd, view)
                if files.write_stalled(started, sleeps):  # the disk's (not the CPU's): a thread writes
                    self._to_thread(files.LOOP_WRITE_BACKOFF)
            elif filled:
                assert self._current is not None
                self._fill += len(view)
                if self._fill >= len(self._current) or not self._remaining:
                    self._hand_over()
            else:  # bytes of another buffer (aiohttp's): into the thread's buffers
                self._copy_for_thread(view)
            if self._on_progress is not None:
                self._on_progress(self._received.done, self._total)
        except BaseException as exc:  # never into the transport (it would close itself)
            self._fail(exc)
            return
        if not self._remaining:
            self._over()

    def _copy_for_thread(self, view: memoryview) -> None:
        """Copy bytes read elsewhere (aiohttp's, or a read into the scratch buffer) into the thread's
        buffers, one made if none is free (a transport that read while paused); kept for the loop when
        the thread is finishing (its budget spent)."""
        if self._returning:
            self._held.append(bytes(view))  # written by the loop once the thread is done: in order
            return
        while view:
            current = self._current
            if current is None:
                if not self._free:
                    self._buffers += 1
                    self._free.append(memoryview(bytearray(len(self._chunk))))
                current = self._current = self._free.pop()
                self._fill = 0
            room = len(current) - self._fill
            current[self._fill : self._fill + min(room, len(view))] = view[:room]
            self._fill += min(room, len(view))
            view = view[room:]
            if self._fill >= len(current):
                self._hand_over()

    # ---------------------------------------------------------------------------- the thread

    def _to_thread(self, budget: int) -> None:
        """Hand the next ``budget`` bytes (-1: all of them) to a worker thread (started here)."""
        if not self._buffers:
            size = min(files.STREAM_COALESCE, max(len(self._chunk), self._queue_limit // 2))
            self._buffers = max(2, self._queue_limit // size)
            self._free = [memoryview(bytearray(size)) for _ in range(self._buffers)]
        self._fd = None
        self._budget = budget
        self._current, self._fill = self._free.pop(), 0
        self._task = asyncio.ensure_future(
            anyio.to_thread.run_sync(self._write_in_thread, limiter=self._file.limiter)
        )
        self._task.add_done_callback(self._thread_ended)

    def _hand_over(self) -> None:
        current, filled = self._current, self._fill
        assert current is not None
        self._current, self._fill = None, 0
        self._queue.put((current, filled))
        if self._budget >= 0:
            self._budget -= filled
            if self._budget <= 0 and self._remaining:  # back to the loop once the thread wrote it all
                self._returning = True
                self._queue.put(None)
                self._pause()
                return
        if self._free:
            self._current = self._free.pop()
        else:
            self._pause()  # until the thread gives a buffer back

    def _given_back(self, buffer: memoryview) -> None:
        self._free.append(buffer)
        if self._current is None and not self._returning and not self._end.done():
            self._current, self._fill = self._free.pop(), 0
            self._resume()

    def _thread_ended(self, task: asyncio.Future[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._fail(error)
            return
        if self._returning and task is self._task:
            self._returning = False
            self._task = None
            self._fd = self._file.fileno()
            if self._write_held():
                self._resume()

    def _write_held(self) -> bool:
        """Write (in the loop) the bytes kept while the thread finished; False if that failed."""
        held, self._held = self._held, []
        try:
            for data in held:
                files._write_fully(self._file.fileno(), data)
        except OSError as exc:
            self._fail(exc)
            return False
        return True

    def _write_in_thread(self) -> None:
        """The worker thread: write the buffers handed over until told to stop (the file made first,
        when it is not yet)."""
        handle = self._file.handle()
        get, give_back = self._queue.get, self._loop.call_soon_threadsafe
        while (item := get()) is not None:
            buffer, filled = item
            if not self._stopping:
                files.write_chunks(handle, [buffer[:filled]])
            give_back(self._given_back, buffer)
