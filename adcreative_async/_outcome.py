"""What became of one bulk item (:class:`BulkOutcome`), and the steps every bulk path shares once an
item's render exists: follow it to its end (:func:`follow`) and download each result
(:func:`download_task`).

It lives below both the bulk runner (:mod:`adcreative_async._bulk`) and the run ledger's driver
(:mod:`adcreative_async.ledger._run`), which both report outcomes and follow renders.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import msgspec

from ._errors import InvalidRequestError, NotFoundError, RateLimitError, RenderNotReadyError
from ._jobs import RenderJob, TaskUpdate, TaskUpdates, _is_finished
from ._models import Progress, RenderState
from ._naming import CHECK_SUFFIX, Namer, name_context, render_name, temp_stem_for
from ._ratelimit import Requeues

if TYPE_CHECKING:
    from ._client import AdCreativeClient

__all__ = [
    "DEFAULT_POLL_CONCURRENCY",
    "LEDGER_POLL_CONCURRENCY",
    "NOT_STARTED",
    "WINDOW_PER_UPLOAD",
    "BulkOutcome",
    "Inputs",
    "download_task",
    "follow",
    "poll_concurrency_for",
    "requeues_for",
    "window_size",
]

T = TypeVar("T")

#: What an item not started for ``max_renders`` says (:class:`~adcreative_async.NotStartedError`).
NOT_STARTED = "not started: the run's max_renders start calls were sent (the same run started again goes on)"

#: Items a run holds at once (read, started, awaited, downloaded, or with an outcome not yet taken by the
#: iteration): ``poll_concurrency`` (renders awaited at once) plus this many per upload slot, so that
#: start calls go on while every poll slot is taken. Memory is bounded by this window, whatever the
#: number of inputs: an item is read from the inputs only when one leaves.
WINDOW_PER_UPLOAD = 2


#: A bulk run's renders awaited at once when the caller gives no ``poll_concurrency`` and no run ledger:
#: their polls are the users' own listings (each paced by its own size, due at different times, so
#: that results come in all through the run and start calls go on between them).
DEFAULT_POLL_CONCURRENCY = 1000
#: The same with a run ledger. Each of its renders has a user of its own, so they are all detected by
#: one listing of the whole application per tick (``CheckApplicationAllProgresses``), whose pace slows
#: as the listing grows (``_poll_state.LISTED_PER_AWAITED``: at 100,000 processes a tick every 1-2.5 s):
#: each tick finds most of the window finished at once, and the run waits with a window full of
#: finished renders while their downloads and the next start calls queue up behind one another. A
#: window must hold about (start calls a second) x (queueing + render + a tick's delay) items to keep
#: the start calls going: with 1,000 a ledger run of 100,000 items took 1.3-1.4x the time of the same
#: run without a ledger, with 2,000 no longer (``python -m benchmarks.scale``, its ``sqlite-1000``
#: mode). Twice as many awaited also lets the listing be read twice as often for the same cost per
#: awaited render. Memory stays bounded by the window (about 20 KiB per item held), whatever the
#: number of inputs.
LEDGER_POLL_CONCURRENCY = 2000


def poll_concurrency_for(poll_concurrency: int | None, *, ledger: bool) -> int:
    """A bulk run's renders awaited at once: the caller's, else :data:`DEFAULT_POLL_CONCURRENCY` (no
    ledger) or :data:`LEDGER_POLL_CONCURRENCY` (a run ledger)."""
    if poll_concurrency is not None:
        return poll_concurrency
    return LEDGER_POLL_CONCURRENCY if ledger else DEFAULT_POLL_CONCURRENCY


def window_size(upload_concurrency: int, poll_concurrency: int) -> int:
    """The number of items a bulk run holds at once (see :data:`WINDOW_PER_UPLOAD`)."""
    return poll_concurrency + WINDOW_PER_UPLOAD * upload_concurrency


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
        key: with a run ledger, the item's idempotency key.
        resumed: with a run ledger, the item had finished before this run (or in another worker): its
            outcome comes from the ledger (``error`` is then a ``RecordedError`` for a failure).
    """

    index: int
    item: T
    job: RenderJob | None = None
    files: list[Path] = field(default_factory=list)
    error: BaseException | None = None
    errors: list[BaseException] = field(default_factory=list)
    key: str | None = None
    resumed: bool = False
    _names: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """The render completed without failure and every result was downloaded."""
        return self.error is None

    def _fail(self, error: BaseException) -> None:
        """Record one of the item's errors."""
        self.errors.append(error)
        if self.error is None:
            self.error = error


def requeues_for(client: AdCreativeClient) -> Requeues:
    """A new item's requeues after 429s (see :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES`),
    waited on the client's clock, bounded by its retry policy's ``max_retry_after`` and paced by its
    rate control."""
    transport = client._transport
    return Requeues(client.clock, transport.retry.max_retry_after, transport.rate)


class Inputs(Generic[T]):
    """A bulk run's inputs, read one at a time as the run makes room for them, with their positions.

    A generator of a million paths is never materialised: only :meth:`read_all` (the check of named
    outputs, which compares every input's name with the others' before any start call, on inputs that
    cannot be read twice) holds them, and the items it read leave as they are taken; a sequence is read
    once for that check and again for the run (:meth:`rereadable`), never held. An error raised by the
    inputs' iterator ends the input (``error``): the items read before it finish, then the run raises it.
    """

    def __init__(self, items: Iterable[T]) -> None:
        self._iterator = iter(items)
        self._source = items if isinstance(items, Sequence) else None  # read again by rereadable()
        self._index = 0
        self._read: collections.deque[tuple[int, T]] = collections.deque()
        self.error: Exception | None = None  # what the inputs' iterator raised, if it did
        self._done = False

    def next(self) -> tuple[int, T] | None:
        """The next input with its position; None at the end."""
        if self._read:
            return self._read.popleft()
        return self._pull()

    def _pull(self) -> tuple[int, T] | None:
        if self._done:
            return None
        try:
            item = next(self._iterator)
        except StopIteration:
            self._done = True
            return None
        except Exception as exc:  # the caller's iterator failing: the end of the input, raised at the end
            self._done, self.error = True, exc
            return None
        index = self._index
        self._index += 1
        return index, item

    def take(self, size: int) -> list[tuple[int, T]]:
        """The next ``size`` inputs (fewer at the end)."""
        taken: list[tuple[int, T]] = []
        while len(taken) < size:
            entry = self.next()
            if entry is None:
                break
            taken.append(entry)
        return taken

    def read_all(self) -> list[tuple[int, T]]:
        """Every input not yet taken (read now, and still given by :meth:`next` afterwards)."""
        while (entry := self._pull()) is not None:
            self._read.append(entry)
        return list(self._read)

    def rereadable(self) -> Callable[[], Iterable[tuple[int, T]]]:
        """Every input with its position, as many times as called, for a check of them all before the
        run (the check of named outputs): inputs given as a sequence are read from it each time, none
        held (the run reads them again); other inputs are read now and held (:meth:`read_all`) until
        taken. Call it before any input is taken."""
        source = self._source
        if source is not None and self._index == 0 and not self._read:
            return lambda: _readable_part(source)
        held = self.read_all()
        return lambda: held


def _readable_part(items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """``enumerate(items)`` up to the first error reading them (the run meets it again, and raises it
    once the items before it are done)."""
    iterator = iter(items)
    index = 0
    while True:
        try:
            item = next(iterator)
        except Exception:  # StopIteration included
            return
        yield index, item
        index += 1


async def download_task(
    outcome: BulkOutcome[T],
    job: RenderJob,
    task_id: str,
    dest: str | os.PathLike[str],
    limiter: anyio.CapacityLimiter,
    low_resolution: bool,
    name: Namer | None,
    named: object,
    refused: list[tuple[str, NotFoundError]] | None = None,
    requeues: Requeues | None = None,
) -> bool:
    """Download one succeeded task of an item into ``dest`` (under ``limiter``), named by ``name``
    (its context built from ``named``, the item as the name callback sees it) when given: the body goes
    straight to that name's temporary file (named after the result's name, so that a later download to
    the same name, of this render or a new one, removes what a killed writer left), replacing the
    item's own earlier file atomically, never through a file named after the task. The file goes to
    ``outcome.files``; an error is recorded in ``outcome``, never raised, except a refusal (a 404: the
    task has no result) when ``refused`` is given (a task not known to have succeeded, see
    :func:`follow`): that is added to it instead. A download that ends in ``RateLimitError`` (429 after
    the transport's retries) is tried again after its ``Retry-After`` while the item's ``requeues`` allow
    (see :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES`; its render is only downloaded again).
    Returns whether the file was written."""
    name_for: Callable[[str], str] | None = None
    temp_stem: str | None = None
    if name is not None:
        namer = name
        position = job.task_ids.index(task_id) if task_id in job.task_ids else len(outcome.files)
        try:  # the temporary file is named after the result's name: found again by any later download
            context = name_context(named, outcome.index, task_id, position, job.process_id, CHECK_SUFFIX)
            temp_stem = temp_stem_for(render_name(namer, context))
        except Exception:  # the name's own error is raised when the file is named
            temp_stem = None

        def name_for(suffix: str) -> str:
            context = name_context(named, outcome.index, task_id, position, job.process_id, suffix)
            text = render_name(namer, context)
            key = os.path.normcase(os.path.normpath(text))
            if key in outcome._names:  # never one result of the item over another
                raise InvalidRequestError.for_field(
                    "name", f"gives {text!r} to two results of one input: add {{task_index}} or {{task_id}}"
                )
            outcome._names.add(key)
            return text

    while True:
        try:
            async with limiter:
                # resume: a body cut mid-way continues (or restarts), instead of failing the item
                path = await job.resource._download(
                    job.process_id,
                    task_id,
                    dest,
                    fields=None,
                    low_resolution=low_resolution,
                    on_progress=None,
                    resume=True,
                    use_server_filename=False,
                    user_id=job.user_id,
                    extra_query=None,
                    extra_headers=None,
                    timeout=None,
                    retry=None,
                    name_for=name_for,
                    temp_stem=temp_stem,
                )
            outcome.files.append(path)
            return True
        except RateLimitError as exc:  # 429 after the retries: downloaded again later (no slot held)
            if requeues is not None and await requeues.wait(exc):
                continue
            outcome._fail(exc)
        except NotFoundError as exc:
            if refused is None:
                outcome._fail(exc)
            else:
                refused.append((task_id, exc))
        except Exception as exc:  # an API error, or a local one (OSError: disk full, no such directory)
            outcome._fail(exc)
        return False


#: Downloads one task of an item: ``download(task_id, refused)`` (see :func:`download_task`).
Download = Callable[[str, "list[tuple[str, NotFoundError]] | None"], Coroutine[Any, Any, bool]]


async def follow(
    outcome: BulkOutcome[T],
    job: RenderJob,
    polls: anyio.CapacityLimiter,
    wait_timeout: float | None,
    on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None,
    download: Download | None,
) -> None:
    """Await ``job`` (under ``polls``, at most ``wait_timeout`` seconds) and start ``download(task_id)``
    as each task succeeds; then the render's failure, if any. Every error is recorded in ``outcome``
    (``download`` records its own), never raised: a task group would wrap it in an ExceptionGroup.
    Only cancellation leaves it.

    With downloads, a process that leaves a listing known to omit finished processes is not asked for by
    id (the poll scheduler reports it *vanished*: see :mod:`adcreative_async._polling`): every task not
    downloaded yet is downloaded at once. A download that succeeds proves its task succeeded: when all
    do, the render succeeded (``job.progress`` becomes its last listed snapshot with every task
    succeeded, what the downloads proved, and ``on_update`` hears of each). A refused download (404)
    tells the real state: its :class:`~adcreative_async.RenderNotReadyError` carries the process's
    progress asked for by id after the 404, which ends the wait when it is finished (a failed task: one
    request); otherwise the wait goes on as a plain one (asked for by id), and the tasks it shows
    succeeded are downloaded (again, for a refused one). Nothing is started again, and each download
    is of this render's own tasks.
    """
    finished = False
    async with polls, anyio.create_task_group() as transfers:
        try:
            updates = TaskUpdates(
                job, timeout=wait_timeout, raise_on_failure=False, downloads_after=download is not None
            )
            started: set[str] = set()  # tasks whose download was started (a refused one is taken out)
            while True:
                async for update in updates:
                    if on_update is not None:
                        on_update(outcome, update)
                    if update.succeeded and download is not None and update.task_id not in started:
                        started.add(update.task_id)
                        transfers.start_soon(download, update.task_id, None)
                if not updates._vanished:
                    break
                assert download is not None
                known = await _download_vanished(job, started, download)
                if known is not None:
                    updates._settle(known)
                else:
                    updates._ask_by_id()
            finished = True
        except Exception as exc:  # a timeout, a wait's API error, the on_update callback's
            outcome._fail(exc)  # the downloads already started still finish
    if finished:  # and every download has ended
        try:
            job.raise_for_failure()
        except Exception as exc:
            outcome._fail(exc)


async def _download_vanished(job: RenderJob, started: set[str], download: Download) -> Progress | None:
    """Download every task of ``job`` not started yet (its process vanished from a listing that omits
    finished ones); its final progress when that is known (every download succeeded, or a refusal's
    lookup found it finished), else None (it is to be asked for by id)."""
    listed = job.progress
    assert listed is not None  # the scheduler reports vanished only processes with a snapshot
    if not listed.tasks:
        return None  # nothing to download that would tell (the scheduler never reports such a one)
    pending = [task_id for task_id in listed.tasks if task_id not in started]
    started.update(pending)
    refused: list[tuple[str, NotFoundError]] = []
    written: dict[str, bool] = {}

    async def one(task_id: str) -> None:
        written[task_id] = await download(task_id, refused)

    async with anyio.create_task_group() as group:
        for task_id in pending:
            group.start_soon(one, task_id)
    if all(written.values()):  # every task's result came: every task succeeded, the render with them
        return msgspec.structs.replace(
            listed,
            tasks=dict.fromkeys(listed.tasks, RenderState.SUCCEEDED),
            progress=100,
            completed_task_count=listed.total_task_count,
            request_render_state=RenderState.SUCCEEDED,
            is_successful=True,
        )
    known: Progress | None = None
    for task_id, error in refused:
        started.discard(task_id)  # downloaded (again) if the process shows it succeeded
        if known is None and isinstance(error, RenderNotReadyError) and _is_finished(error.progress):
            known = error.progress  # asked for by id after the 404: the real state
    return known
