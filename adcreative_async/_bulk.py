"""Bulk processing: many inputs through submit → wait → download, each item isolated from the others.

Uploads, in-flight renders and downloads have separate limits; each task's download starts as soon as
the task succeeds; the waiting of every item goes through the client's one poll scheduler (at most one
progress request per user per tick, whatever the number of items); one item's failure is reported as
its outcome and never stops the others — unless it is run-level (wrong credentials, an unreachable API,
an unwritable output folder or run ledger: see :func:`~adcreative_async._errors.error_kind`), which would
fail every item alike: then the rest of the run is cancelled and the iterator raises one
:class:`~adcreative_async.RunAbortedError` after the outcomes already reported (the items it stopped are
not reported each with it). Every item's output name is checked before any start call
(:func:`~adcreative_async._naming.check_names`): an item whose result could not be saved is refused
unsent.

Memory is bounded whatever the number of inputs: the inputs (any iterable: a generator of a million
paths is never materialised) are read one at a time as items leave a window of
:func:`~adcreative_async._outcome.window_size` items (renders awaited at once, plus two per upload slot),
an item leaves once its outcome is taken by the outcomes' stream (which holds at most a window of them:
a caller that stops iterating holds the run back), and nothing keeps the outcomes delivered. Only
``name=`` reads every input first (each input's name is compared with the others' before any start call):
inputs given as a sequence (a list, a lazy sequence) are read once for that and again by the run, never
held (a hash per name is kept); other iterables are held until taken.

An item whose start call or download ends in ``RateLimitError`` (a 429 after the transport's retries)
is not reported failed at once: it keeps its place in the window and is tried again after the 429's
``Retry-After``, spread, at most :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES` times (a start
call refused with a 429 made nothing: it is sent again; a render that exists is only downloaded again).

With a run ledger (``ledger=``), the items go through :class:`~adcreative_async.ledger._run.LedgerDriver`
instead: durable intents and answers, resume, and claims shared by many workers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sized
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import (
    ErrorKind,
    InvalidRequestError,
    NotFoundError,
    NotStartedError,
    RateLimitError,
    RunAbortedError,
    first_of_kind,
)
from ._jobs import RenderJob, TaskUpdate
from ._naming import Namer, check_names, check_template
from ._outcome import (
    NOT_STARTED,
    BulkOutcome,
    Inputs,
    download_task,
    follow,
    poll_concurrency_for,
    requeues_for,
    window_size,
)
from ._ratelimit import Requeues, refused_unprocessed

if TYPE_CHECKING:
    from ._client import AdCreativeClient
    from .ledger import RenderRequest, RunLedger

__all__ = ["BulkOutcome", "BulkRun"]

T = TypeVar("T")

#: Starts one render for an item: ``async def submit(client, item) -> RenderJob``, with one start call (a
#: submit that raises a ``RateLimitError`` answering a POST, its start call refused unprocessed, is called
#: again after the 429's ``Retry-After``: see :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES`).
Submit = Callable[["AdCreativeClient", T], Awaitable[RenderJob]]


class BulkRun(Generic[T]):
    """Runs items concurrently; iterate it for outcomes as they finish. Use as an async context manager.

    Create it with :meth:`AdCreativeClient.bulk <adcreative_async.AdCreativeClient.bulk>`. Leaving the
    ``async with`` block early (``break``, an exception) cancels what is still running.

    A run-level error (see :class:`~adcreative_async.RunAbortedError`: credentials, configuration, an
    unreachable API, an output folder or run ledger that cannot be written) stops the whole run: the
    iteration raises one ``RunAbortedError`` (its ``cause`` the error), once, after the outcomes already
    reported; nothing is recorded ``failed`` for it.
    """

    def __init__(
        self,
        client: AdCreativeClient,
        items: Iterable[T],
        submit: Submit[T] | None,
        *,
        dest: str | os.PathLike[str] | None,
        upload_concurrency: int,
        poll_concurrency: int | None,
        download_concurrency: int,
        timeout: float | None,
        low_resolution: bool,
        on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None,
        request: Callable[[T], RenderRequest] | None = None,
        ledger: str | os.PathLike[str] | RunLedger | None = None,
        name: Namer | None = None,
        lease: float | None = None,
        worker_id: str | None = None,
        max_renders: int | None = None,
    ) -> None:
        poll_concurrency = poll_concurrency_for(poll_concurrency, ledger=ledger is not None)
        for limit, value in (
            ("upload_concurrency", upload_concurrency),
            ("poll_concurrency", poll_concurrency),
            ("download_concurrency", download_concurrency),
        ):
            if value < 1:
                raise ValueError(f"{limit} must be at least 1, got {value}")
        if max_renders is not None and max_renders < 0:
            raise InvalidRequestError.for_field("max_renders", f"must be 0 or more, got {max_renders}")
        check_template(name)
        if submit is not None and request is not None:
            raise InvalidRequestError.for_field("request", "give submit or request, not both")
        if ledger is not None and submit is not None:
            raise InvalidRequestError.for_field(
                "submit",
                "a run ledger needs request=... (item -> RenderRequest) or RenderRequest items instead of "
                "submit, so that each item's key is what its start call sends",
            )
        self._client = client
        self._items = items  # read lazily, as the window makes room (Inputs)
        self._request = request or _as_request
        self._submit = submit if submit is not None else self._submit_request
        self._ledger_spec = ledger
        self._ledger: RunLedger | None = None
        self._owns_ledger = False
        self._name = name
        self._lease = lease
        self._worker_id = worker_id
        self._budget = max_renders  # start calls left to send (None: no limit)
        self._dest = None if dest is None else os.path.join(os.fspath(dest), "")
        self._limits = (upload_concurrency, poll_concurrency, download_concurrency)
        self._timeout = timeout
        self._low_resolution = low_resolution
        self._on_update = on_update
        self._group: anyio.abc.TaskGroup | None = None
        self._send: MemoryObjectSendStream[BulkOutcome[T]] | None = None
        self._receive: MemoryObjectReceiveStream[BulkOutcome[T]] | None = None
        self._scope: anyio.CancelScope | None = None  # the items' task group's (without a ledger)
        self._aborted: RunAbortedError | None = None  # set before the outcomes' stream is closed
        self._driver: Any = None  # the run ledger's driver, when there is one
        self._inputs: Inputs[T] | None = None  # the inputs, read as the run goes
        self._rate_board: Any = None  # where the client shares its learned rate during the run

    def __len__(self) -> int:
        """The number of inputs, when they were given as a sized collection (a list, a tuple…).

        Raises:
            TypeError: the inputs are an iterator or a generator (read lazily, their number unknown).
        """
        if not isinstance(self._items, Sized):
            raise TypeError("this bulk run's inputs are an iterator: their number is not known ahead")
        return len(self._items)

    def __bool__(self) -> bool:
        return True

    async def _submit_request(self, client: AdCreativeClient, item: T) -> RenderJob:
        return await self._request(item).submit(client)

    async def __aenter__(self) -> BulkRun[T]:
        self._client._require_open()
        if self._ledger_spec is not None and self._ledger is None:
            from .ledger import RunLedger, open_ledger

            self._ledger = open_ledger(self._ledger_spec)
            self._owns_ledger = not isinstance(self._ledger_spec, RunLedger)
            await self._ledger.open()
        self._rate_board = self._client._share_rate(self._ledger)
        # outcomes not yet taken by the iteration, at most a window of them: a caller that stops reading
        # holds the run back instead of letting the outcomes pile up
        window = window_size(self._limits[0], self._limits[1])
        send, receive = anyio.create_memory_object_stream[BulkOutcome[T]](max_buffer_size=window)
        self._send, self._receive = send, receive
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        uploads, polls, downloads = (anyio.CapacityLimiter(n) for n in self._limits)
        group.start_soon(self._drive, send, uploads, polls, downloads)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._group = self._group, None
        receive, self._receive = self._receive, None
        if group is None:
            return None
        group.cancel_scope.cancel()  # whatever still runs when the block is left
        # The caller's own exception is not the group's: handed to the group, it would come out wrapped
        # in an ExceptionGroup. Once the group is shut, returning lets it propagate as itself.
        # Cancellation (and KeyboardInterrupt…) still goes through the group, which must see it.
        callers = exc if isinstance(exc, Exception) else None
        try:
            if callers is not None:
                await group.__aexit__(None, None, None)
                return None
            suppressed = await group.__aexit__(exc_type, exc, tb)
            aborted = self._failure()
            if aborted is not None and exc is None:  # not reported by iterating (the block left early)
                raise aborted
            return suppressed
        finally:
            if receive is not None:
                receive.close()
            await self._client._unshare_rate(self._rate_board)
            if self._owns_ledger and self._ledger is not None:
                await self._ledger.close()

    @property
    def ledger(self) -> RunLedger | None:
        """The run ledger, when the run has one (open inside the ``async with`` block)."""
        return self._ledger

    def __aiter__(self) -> BulkRun[T]:
        return self

    async def __anext__(self) -> BulkOutcome[T]:
        if self._receive is None:
            raise RuntimeError("iterate a BulkRun inside `async with client.bulk(...) as run:`")
        try:
            # Outcomes already queued are taken without a trip through the event loop (a resumed run
            # reports 100,000 finished items at once); an empty queue is awaited as usual.
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            self._end()
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            self._end()
            raise  # (never reached: _end raises)

    def _end(self) -> None:
        """The outcomes are all out: the run-level error that stopped the run, once; else the end."""
        aborted = self._failure()
        if aborted is not None:
            raise aborted
        raise StopAsyncIteration

    def _failure(self) -> Exception | None:
        """What ended the run, once: its run-level error, or the error the inputs' iterator raised."""
        aborted = self._aborted or (self._driver.aborted if self._driver is not None else None)
        inputs = self._inputs
        self._aborted, self._driver, self._inputs = None, None, None
        if aborted is None and inputs is not None:
            return inputs.error
        return aborted

    async def _drive(
        self,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        uploads: anyio.CapacityLimiter,
        polls: anyio.CapacityLimiter,
        downloads: anyio.CapacityLimiter,
    ) -> None:
        inputs = self._inputs = Inputs(self._items)
        if self._dest is not None:
            try:
                await anyio.to_thread.run_sync(_check_writable, self._dest)
            except OSError as exc:  # before anything is sent: nothing is paid for
                self._aborted = RunAbortedError(exc)
                send.close()
                return
        if self._ledger is not None:
            from .ledger import DEFAULT_LEASE
            from .ledger._run import LedgerDriver

            driver = LedgerDriver(
                self._client,
                self._ledger,
                inputs,
                self._request,
                dest=self._dest,
                name=self._name,
                limits=self._limits,
                timeout=self._timeout,
                low_resolution=self._low_resolution,
                on_update=self._on_update,
                lease=self._lease or DEFAULT_LEASE,
                owner=self._worker_id,
                max_renders=self._budget,
            )
            self._driver = driver
            # a run-level error (the ledger failing included) is the driver's RunAbortedError, never an
            # ExceptionGroup of its task groups: the iterator raises it (driver.aborted)
            with contextlib.suppress(RunAbortedError):
                await driver.drive(send)
            return
        refused: dict[int, InvalidRequestError] = {}
        refuse_all = None
        if self._dest is not None and self._name is not None:  # every name checked before any start call
            inputs_again = inputs.rereadable()  # a sequence is read twice, never held
            refused = await anyio.to_thread.run_sync(
                check_names, self._name, self._dest, inputs_again(), inputs_again
            )
        elif self._dest is not None:  # results named after their task: only dest is checked
            checked = await anyio.to_thread.run_sync(check_names, None, self._dest, [(0, None)])
            refuse_all = checked.get(0)
        # a window of items at once: the next input is read only when an item has left (its outcome
        # taken by the outcomes' stream)
        room = anyio.Semaphore(window_size(self._limits[0], self._limits[1]))
        async with send, anyio.create_task_group() as group:
            self._scope = group.cancel_scope
            while True:
                await room.acquire()
                entry = inputs.next()
                if entry is None:
                    break
                index, item = entry
                error = refuse_all or refused.pop(index, None)
                if error is not None:
                    try:
                        await send.send(BulkOutcome(index, item, error=error))
                    finally:
                        room.release()
                    continue
                group.start_soon(self._run_item, index, item, send, uploads, polls, downloads, room)

    async def _run_item(
        self,
        index: int,
        item: T,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        uploads: anyio.CapacityLimiter,
        polls: anyio.CapacityLimiter,
        downloads: anyio.CapacityLimiter,
        room: anyio.Semaphore,
    ) -> None:
        try:
            await self._run_one(index, item, send, uploads, polls, downloads)
        finally:
            room.release()

    async def _run_one(
        self,
        index: int,
        item: T,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        uploads: anyio.CapacityLimiter,
        polls: anyio.CapacityLimiter,
        downloads: anyio.CapacityLimiter,
    ) -> None:
        # One item's failure is its outcome, never the others'. Every step catches its own errors, so
        # that no task group ever raises one of them (it would come out as an ExceptionGroup): only
        # cancellation and non-Exception errors leave this function.
        outcome: BulkOutcome[T] = BulkOutcome(index, item)
        requeues = requeues_for(self._client)  # after 429s past the retries (RATE_LIMIT_REQUEUES)
        counted = False  # against max_renders (once per item: a call refused with a 429 made nothing)
        try:
            while True:
                try:
                    async with uploads:
                        if self._budget is not None and not counted:  # counted as the call is about to go
                            if self._budget <= 0:
                                raise NotStartedError(NOT_STARTED)
                            self._budget -= 1
                            counted = True
                        job = outcome.job = await self._submit(self._client, item)
                    break
                except RateLimitError as exc:  # refused unprocessed: nothing made, sent again later
                    if not refused_unprocessed(exc) or not await requeues.wait(exc):
                        raise
        except Exception as exc:
            outcome._fail(exc)
        else:
            download = None
            if self._dest is not None:
                download = functools.partial(self._download, outcome, downloads=downloads, requeues=requeues)
            await follow(outcome, job, polls, self._timeout, self._on_update, download)
        run_level = first_of_kind(outcome.errors, ErrorKind.RUN, render_exists=outcome.job is not None)
        if run_level is not None:  # every item would fail alike: the run stops
            if self._aborted is None:
                self._aborted = RunAbortedError(run_level)
            assert self._scope is not None
            self._scope.cancel()
            return
        if self._aborted is None:
            await send.send(outcome)

    async def _download(
        self,
        outcome: BulkOutcome[T],
        task_id: str,
        refused: list[tuple[str, NotFoundError]] | None,
        *,
        downloads: anyio.CapacityLimiter,
        requeues: Requeues,
    ) -> bool:
        job = outcome.job
        assert job is not None
        assert self._dest is not None
        return await download_task(
            outcome,
            job,
            task_id,
            self._dest,
            downloads,
            self._low_resolution,
            self._name,
            outcome.item,
            refused,
            requeues,
        )


def _check_writable(dest: str) -> None:
    """Raise the OSError that a download into ``dest`` would meet (made if missing, written to)."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryFile(dir=dest):
        pass


def _as_request(item: Any) -> RenderRequest:
    """An item that is a RenderRequest itself (with neither ``submit`` nor ``request``)."""
    from .ledger import RenderRequest

    if not isinstance(item, RenderRequest):
        raise InvalidRequestError.for_field(
            "items",
            f"without submit or request, each item must be a RenderRequest, got {type(item).__name__}",
        )
    return item
