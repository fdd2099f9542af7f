"""Bulk processing: many inputs through submit → wait → download, each item isolated from the others.

Uploads, in-flight renders and downloads have separate limits; each task's download starts as soon as
the task succeeds; the waiting of every item goes through the client's one poll scheduler (one progress
request per user per tick, whatever the number of items); one item's failure is reported as its outcome
and never stops the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._jobs import RenderJob, TaskUpdate

if TYPE_CHECKING:
    from ._client import AdCreativeClient

__all__ = ["BulkOutcome", "BulkRun"]

T = TypeVar("T")

#: Starts one render for an item: ``async def submit(client, item) -> RenderJob``.
Submit = Callable[["AdCreativeClient", T], Awaitable[RenderJob]]


@dataclass
class BulkOutcome(Generic[T]):
    """What became of one input.

    Attributes:
        index: the item's position in the input.
        item: the input itself.
        job: the render's handle (None if the submission itself failed).
        files: the downloaded results, one per succeeded task.
        error: None on success; else the first error, itself (a submission error, a
            :class:`~adcreative_async.RenderFailedError`, a :class:`~adcreative_async.WaitTimeoutError`,
            a download's API or ``OSError``), never wrapped in an ``ExceptionGroup``. Results downloaded
            before an error are still in ``files``.
        errors: every error of the item in the order they happened (``error`` is the first): a failed
            download does not stop the others, nor hide a render failure found afterwards.
    """

    index: int
    item: T
    job: RenderJob | None = None
    files: list[Path] = field(default_factory=list)
    error: BaseException | None = None
    errors: list[BaseException] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The render completed without failure and every result was downloaded."""
        return self.error is None

    def _fail(self, error: BaseException) -> None:
        """Record one of the item's errors."""
        self.errors.append(error)
        if self.error is None:
            self.error = error


class BulkRun(Generic[T]):
    """Runs items concurrently; iterate it for outcomes as they finish. Use as an async context manager.

    Create it with :meth:`AdCreativeClient.bulk <adcreative_async.AdCreativeClient.bulk>`. Leaving the
    ``async with`` block early (``break``, an exception) cancels what is still running.
    """

    def __init__(
        self,
        client: AdCreativeClient,
        items: Iterable[T],
        submit: Submit[T],
        *,
        dest: str | os.PathLike[str] | None,
        upload_concurrency: int,
        poll_concurrency: int,
        download_concurrency: int,
        timeout: float | None,
        low_resolution: bool,
        on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None,
    ) -> None:
        for name, value in (
            ("upload_concurrency", upload_concurrency),
            ("poll_concurrency", poll_concurrency),
            ("download_concurrency", download_concurrency),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._client = client
        self._items = list(items)
        self._submit = submit
        self._dest = None if dest is None else os.path.join(os.fspath(dest), "")
        self._limits = (upload_concurrency, poll_concurrency, download_concurrency)
        self._timeout = timeout
        self._low_resolution = low_resolution
        self._on_update = on_update
        self._group: anyio.abc.TaskGroup | None = None
        self._send: MemoryObjectSendStream[BulkOutcome[T]] | None = None
        self._receive: MemoryObjectReceiveStream[BulkOutcome[T]] | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def __aenter__(self) -> BulkRun[T]:
        self._client._require_open()
        send, receive = anyio.create_memory_object_stream[BulkOutcome[T]](max_buffer_size=math.inf)
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
            return await group.__aexit__(exc_type, exc, tb)
        finally:
            if receive is not None:
                receive.close()

    def __aiter__(self) -> BulkRun[T]:
        return self

    async def __anext__(self) -> BulkOutcome[T]:
        if self._receive is None:
            raise RuntimeError("iterate a BulkRun inside `async with client.bulk(...) as run:`")
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def _drive(
        self,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        uploads: anyio.CapacityLimiter,
        polls: anyio.CapacityLimiter,
        downloads: anyio.CapacityLimiter,
    ) -> None:
        async with send, anyio.create_task_group() as group:
            for index, item in enumerate(self._items):
                group.start_soon(self._run_item, index, item, send, uploads, polls, downloads)

    async def _run_item(
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
        try:
            async with uploads:
                job = outcome.job = await self._submit(self._client, item)
        except Exception as exc:
            outcome._fail(exc)
        else:
            finished = False
            async with polls, anyio.create_task_group() as transfers:
                try:
                    async for update in job.wait_until_complete(
                        timeout=self._timeout, raise_on_failure=False
                    ):
                        if self._on_update is not None:
                            self._on_update(outcome, update)
                        if update.succeeded and self._dest is not None:
                            transfers.start_soon(self._download, outcome, update.task_id, downloads)
                    finished = True
                except Exception as exc:  # a timeout, a wait's API error, the on_update callback's
                    outcome._fail(exc)  # the downloads already started still finish
            if finished:  # and every download has ended
                try:
                    job.raise_for_failure()
                except Exception as exc:
                    outcome._fail(exc)
        send.send_nowait(outcome)

    async def _download(
        self, outcome: BulkOutcome[T], task_id: str, downloads: anyio.CapacityLimiter
    ) -> None:
        job = outcome.job
        assert job is not None
        assert self._dest is not None
        try:
            async with downloads:
                # resume: a body cut mid-way continues (or restarts), instead of failing the item
                path = await job.download(
                    task_id, self._dest, low_resolution=self._low_resolution, resume=True
                )
            outcome.files.append(path)
        except Exception as exc:  # an API error, or a local one (OSError: disk full, no such directory)
            outcome._fail(exc)
