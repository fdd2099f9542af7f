"""RenderJob: the handle of one render process, and the waiting on it.

A job is a feature name, a process id, a user id, the task ids seen so far and the last progress
snapshot. It can be encoded to JSON and rebuilt (in another worker, after a restart) with
:meth:`AdCreativeClient.job_from_json <adcreative_async.AdCreativeClient.job_from_json>` or a resource's
``job()``; no credential is ever part of it.

Waiting (:meth:`RenderJob.wait_until_complete`, :func:`as_completed`) goes through the client's one poll
scheduler. The iterators are plain classes, not async generators: they hold no task group, cancel scope
or registration between two items, so ``break`` or cancellation leaves nothing behind, with no reliance
on garbage collection.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import (
    AdCreativeError,
    InvalidRequestError,
    RenderFailedError,
    RenderNotFoundError,
    WaitTimeoutError,
)
from ._models import TERMINAL_STATES, Progress, RenderState
from ._polling import APPLICATION_SCOPE, Ident, Target, UserKey, Watch, ident
from ._redact import ACCOUNT_ID_MASK

if TYPE_CHECKING:
    from ._downloads import DownloadStream
    from ._files import ProgressCallback
    from ._polling import PollScheduler
    from ._telemetry import JobTrace
    from .resources._base import RenderResource

__all__ = ["RenderJob", "TaskUpdate", "TaskUpdates", "as_completed"]

logger = logging.getLogger("adcreative_async.jobs")

#: Version of the JSON form of a job; bumped on incompatible changes.
JOB_FORMAT_VERSION = 1


class _JobRecord(msgspec.Struct, kw_only=True, rename="camel"):
    """The JSON form of a job."""

    feature: str
    process_id: str
    user_id: str
    task_ids: list[str] = []
    progress: Progress | None = None
    format: int = JOB_FORMAT_VERSION


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A job dict in camelCase: :meth:`RenderJob.to_dict` output (snake_case) renamed, other input as is."""
    if "process_id" not in data:
        return data
    renamed = {_camel(key): value for key, value in data.items()}
    progress = renamed.get("progress")
    if isinstance(progress, dict):
        renamed["progress"] = {_camel(key): value for key, value in progress.items()}
    return renamed


_RECORD_ENCODER = msgspec.json.Encoder()


class RenderJob:
    """A render process started by this SDK, or rebuilt from its ids.

    Attributes:
        feature: the feature's name (``"creatives"``, ``"background_remover"``).
        process_id: the render process id (``imageRenderProcessId`` in responses).
        user_id: the user the process belongs to.
        task_ids: the task ids seen so far, in first-seen order (the server may list only some).
        progress: the last progress snapshot received, or None for a job rebuilt from ids alone.
    """

    __slots__ = (
        "_not_before",
        "_poll_user",
        "_resource",
        "_submitted_at",
        "_trace",
        "feature",
        "process_id",
        "progress",
        "task_ids",
        "user_id",
    )

    def __init__(
        self,
        *,
        feature: str,
        process_id: str,
        user_id: str,
        task_ids: Sequence[str] = (),
        progress: Progress | None = None,
        resource: RenderResource | None = None,
    ) -> None:
        self.feature = feature
        self.process_id = process_id
        self.user_id = user_id
        self.task_ids: tuple[str, ...] = ()
        self._merge_tasks(task_ids)
        self.progress = progress
        self._resource = resource
        # When the start or edit call that made this handle returned (client clock), or None for a
        # rebuilt job. Polls sent before it never complete the job (an edit re-opens a process).
        self._submitted_at: float | None = None
        self._not_before = float("-inf")
        self._trace: JobTrace | None = None  # telemetry: the job's span, ended when it is seen finished
        # Whose listing answers for this process while it is awaited: its user's, or (a user that owns
        # only this process, as the run ledger's derived users) the application's.
        self._poll_user = user_id
        if progress is not None:
            self._merge_tasks(progress.tasks)

    def _mark_submitted(self, at: float) -> RenderJob:
        """A start or edit call returned this job at ``at``: a new cycle of its process begins.

        The client's scheduler keeps the answer (a push message arriving before anyone waits merges
        into it), and the client's push hub forgets the messages it saw of the process (an edit's new
        cycle repeats the previous cycle's message keys: they are news).
        """
        self._submitted_at = at
        self._not_before = at
        resource = self._resource
        if resource is not None:
            resource._scheduler.expect(_target(self))
            hub = resource._client.push
            if hub is not None:
                hub.reopen(self.process_id)
        return self

    def _poll_by_application(self) -> RenderJob:
        """Await this job through the application's listing (its user owns no other process): one
        ``CheckApplicationAllProgresses`` per tick serves every such job of the feature. A job just
        submitted moves its start answer there from its user's poller (which goes with it)."""
        old, self._poll_user = self._poll_key, APPLICATION_SCOPE
        resource = self._resource
        if resource is not None and self._submitted_at is not None and old != self._poll_key:
            resource._scheduler.move_expected(old, _target(self))
        return self

    @property
    def _poll_key(self) -> UserKey:
        """The scheduler's poller of this job: (feature, user) or (feature, APPLICATION_SCOPE)."""
        return (self.feature, self._poll_user)

    @property
    def _watch_ident(self) -> Ident:
        """The scheduler's key of this job's process under its poller."""
        return ident(self.feature, self._poll_user, self.process_id)

    def __repr__(self) -> str:
        done = f", progress={self.progress.progress}" if self.progress is not None else ""
        return (
            f"RenderJob(feature={self.feature!r}, process_id={self.process_id!r}, "
            f"user_id={ACCOUNT_ID_MASK}, tasks={len(self.task_ids)}{done})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderJob):
            return NotImplemented
        return self._ident == other._ident

    def __hash__(self) -> int:
        return hash(self._ident)

    @property
    def _ident(self) -> Ident:
        """(feature, user, process), the ids lower-cased: GUIDs compare case-insensitively."""
        return ident(self.feature, self.user_id, self.process_id)

    # --------------------------------------------------------------------------------- state

    def _merge_tasks(self, task_ids: Iterable[str]) -> None:
        known = self.task_ids
        new = [t for t in task_ids if t not in known]
        if not new:
            return
        seen = {t.lower() for t in known}
        added = []
        for task_id in new:
            lowered = task_id.lower()
            if lowered not in seen:  # GUIDs: the same task id in another case is the same task
                seen.add(lowered)
                added.append(task_id)
        if added:
            self.task_ids = known + tuple(added)

    def update(self, progress: Progress) -> None:
        """Record a newer snapshot of this job's process (task ids are merged, never dropped)."""
        if progress.image_render_process_id.lower() != self.process_id.lower():
            raise ValueError(
                f"progress of process {progress.image_render_process_id} given to job {self.process_id}"
            )
        previous, self.progress = self.progress, progress
        self._merge_tasks(progress.tasks)
        if progress != previous and logger.isEnabledFor(logging.DEBUG):
            _log_change(self, previous, progress)
        if self._trace is not None and _is_finished(progress):
            trace, self._trace = self._trace, None
            trace.finish(self, progress, failed=_failure(progress) is not None)

    @property
    def is_complete(self) -> bool:
        """Whether the last snapshot says the process is done (see ``Progress.is_complete``)."""
        return self.progress is not None and _is_finished(self.progress)

    @property
    def failed(self) -> bool:
        """Whether the last snapshot shows failed or cancelled tasks or ``isSuccessful: false``."""
        return self.progress is not None and _failure(self.progress) is not None

    def raise_for_failure(self) -> None:
        """Raise :class:`RenderFailedError` if the last snapshot shows a failure; else do nothing."""
        if self.progress is not None:
            error = _failure_error(self, self.progress)
            if error is not None:
                raise error

    # ------------------------------------------------------------------------------------ json

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in Python names, as the attributes: ``feature``, ``process_id``,
        ``user_id``, ``task_ids``, ``progress`` (its fields snake_case, task states as
        :class:`RenderState`, which JSON encoders write as numbers) and ``format``.

        :meth:`to_wire` is the same in the API's camelCase (the form of :meth:`to_json`); both load
        back with :meth:`from_json` / ``client.job_from_json``.
        """
        progress = self.progress
        return {
            "feature": self.feature,
            "process_id": self.process_id,
            "user_id": self.user_id,
            "task_ids": list(self.task_ids),
            "progress": None if progress is None else msgspec.structs.asdict(progress),
            "format": JOB_FORMAT_VERSION,
        }

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict in the API's camelCase (``processId``, ``progress.imageRenderProcessId``):
        :meth:`to_json` as a dict."""
        result: dict[str, Any] = msgspec.to_builtins(self._record())
        return result

    def to_json(self) -> bytes:
        """The job as JSON bytes (camelCase, :meth:`to_wire`), for storage or a queue. Holds no
        credential."""
        return _RECORD_ENCODER.encode(self._record())

    def _record(self) -> _JobRecord:
        return _JobRecord(
            feature=self.feature,
            process_id=self.process_id,
            user_id=self.user_id,
            task_ids=list(self.task_ids),
            progress=self.progress,
        )

    @classmethod
    def from_json(
        cls, data: bytes | str | dict[str, Any], *, resource: RenderResource | None = None
    ) -> RenderJob:
        """Rebuild a job from :meth:`to_json`, :meth:`to_wire` or :meth:`to_dict` output.

        Prefer ``client.job_from_json(data)``, which binds the job to the client so it can wait and
        download.

        Raises:
            InvalidRequestError: when ``data`` is not a job's JSON form.
        """
        try:
            raw = data if isinstance(data, dict) else msgspec.json.decode(data)
            if not isinstance(raw, dict):
                raise msgspec.ValidationError(f"expected an object, got {type(raw).__name__}")
            record = msgspec.convert(_camel_keys(raw), _JobRecord, strict=False)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequestError(f"not a RenderJob's JSON form: {exc}", field="data") from None
        if record.format > JOB_FORMAT_VERSION:
            raise InvalidRequestError(
                f"RenderJob JSON format {record.format} is newer than this SDK's "
                f"({JOB_FORMAT_VERSION}); upgrade adcreative-async",
                field="data",
            )
        return cls(
            feature=record.feature,
            process_id=record.process_id,
            user_id=record.user_id,
            task_ids=record.task_ids,
            progress=record.progress,
            resource=resource,
        )

    # ------------------------------------------------------------------------------ operations

    @property
    def resource(self) -> RenderResource:
        """The client resource this job is bound to.

        Raises:
            InvalidRequestError: for a job rebuilt without a client (use ``client.job_from_json``).
        """
        if self._resource is None:
            raise InvalidRequestError(
                "this RenderJob is not bound to a client: rebuild it with client.job_from_json(...) "
                "or client.<feature>.job(...)",
                field="job",
            )
        return self._resource

    def bind(self, resource: RenderResource) -> RenderJob:
        """This job, bound to ``resource`` (same ids and progress)."""
        self._resource = resource
        return self

    def wait_until_complete(
        self, *, timeout: float | None = None, raise_on_failure: bool = True
    ) -> TaskUpdates:
        """Follow the process: an async iterator of :class:`TaskUpdate`, one per task state change.

        The first items report the states the job already has; after that, an item comes only when a
        task's state changes (tasks the server lists for the first time included; unknown states are
        yielded, never fatal). Iteration ends when the process is complete: progress 100, every task
        counted complete, every listed task in a terminal state. Polling goes through the client's one
        scheduler, which serves every waiter of the same user with one request per tick.

        Args:
            timeout: seconds (on the client's clock) before :class:`WaitTimeoutError`; None waits as
                long as it takes. The render itself is not affected.
            raise_on_failure: when the process completes with failed or cancelled tasks or
                ``isSuccessful: false``, raise :class:`RenderFailedError` after the last update
                (default); False ends the iteration normally (check ``job.failed``).

        Raises:
            RenderFailedError, WaitTimeoutError, RenderNotFoundError, ClientNotOpenError, and the
            API's permanent errors (e.g. AuthenticationError).

        Example::

            async for update in job.wait_until_complete(timeout=600):
                print(update.task_id, update.previous, "->", update.state, update.progress.progress)
                if update.succeeded:
                    await job.download(update.task_id, "out/")

        ``break`` or cancelling the task stops the wait at once: nothing stays registered.
        """
        return TaskUpdates(self, timeout=timeout, raise_on_failure=raise_on_failure)

    async def result(self, *, timeout: float | None = None, raise_on_failure: bool = True) -> Progress:
        """Wait until the process is complete and return its final progress.

        Raises:
            RenderFailedError: (unless ``raise_on_failure=False``) the process completed with failures.
            WaitTimeoutError: ``timeout`` ran out.
        """
        async for _ in self.wait_until_complete(timeout=timeout, raise_on_failure=raise_on_failure):
            pass
        assert self.progress is not None
        return self.progress

    async def refresh(self) -> Progress:
        """Fetch this process's progress now (one filtered ``CheckUserProgress`` call) and record it.

        Raises:
            NotFoundError: when the server no longer lists the process.
        """
        progress = await self.resource.process_progress(self.process_id, user_id=self.user_id)
        self.update(progress)
        return progress

    async def download(
        self,
        task_id: str,
        dest: str | os.PathLike[str],
        *,
        low_resolution: bool = False,
        on_progress: ProgressCallback | None = None,
        resume: bool | int = False,
        use_server_filename: bool = False,
    ) -> Path:
        """Download one task's result, atomically (see the resource's ``download``).

        Raises:
            RenderNotReadyError: the task has no result yet (or failed): ``.state`` says where it is.
        """
        return await self.resource.download(
            self.process_id,
            task_id,
            dest,
            low_resolution=low_resolution,
            on_progress=on_progress,
            resume=resume,
            use_server_filename=use_server_filename,
            user_id=self.user_id,
        )

    def stream_download(self, task_id: str, *, low_resolution: bool = False) -> DownloadStream:
        """One task's result as a stream of chunks, to pipe elsewhere (see the resource's
        ``stream_download``): ``async with job.stream_download(task_id) as stream: ...``."""
        return self.resource.stream_download(
            self.process_id, task_id, low_resolution=low_resolution, user_id=self.user_id
        )

    async def open_download(self, task_id: str, *, low_resolution: bool = False) -> DownloadStream:
        """One task's result as an open stream, headers readable, body unread; ``await
        stream.aclose()`` when done (see the resource's ``open_download``)."""
        return await self.stream_download(task_id, low_resolution=low_resolution).open()

    async def download_all(
        self, dest_dir: str | os.PathLike[str], *, low_resolution: bool = False
    ) -> list[Path]:
        """Download every succeeded task of the last snapshot into ``dest_dir``, one after another.

        Every download counts on the server (seed 001).
        """
        if self.progress is None:
            await self.refresh()
        assert self.progress is not None
        directory = os.path.join(os.fspath(dest_dir), "")  # trailing separator: a directory
        return [
            await self.download(task_id, directory, low_resolution=low_resolution)
            for task_id in self.progress.succeeded_task_ids
        ]


# ------------------------------------------------------------------------------------------- waiting


class TaskUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One task's state change, as the waiting iterators report it.

    Attributes:
        feature, process_id, task_id: which task.
        previous: its state before (None the first time the task is reported).
        state: its state now (unknown values kept as ``RenderState.UNNAMED_<n>``).
        progress: the process's progress snapshot this change was seen in.
    """

    feature: str
    process_id: str
    task_id: str
    previous: RenderState | None
    state: RenderState
    progress: Progress

    @property
    def is_terminal(self) -> bool:
        """The task will not change again (until an edit re-opens it)."""
        return int(self.state) in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """The task's result is ready to download."""
        return self.state == RenderState.SUCCEEDED

    @property
    def failed(self) -> bool:
        """The task failed or was cancelled."""
        return self.state in (RenderState.FAILED, RenderState.CANCELLED)


def _is_finished(progress: Progress) -> bool:
    """Complete by the documented rule, or the process itself reports a terminal failure state."""
    return progress.is_complete or (
        progress.request_render_state in (RenderState.FAILED, RenderState.CANCELLED)
        and all(state in TERMINAL_STATES for state in progress.tasks.values())
    )


def _failure(progress: Progress) -> tuple[list[str], str] | None:
    failed = progress.failed_task_ids
    if failed or not progress.is_successful or progress.request_render_state == RenderState.FAILED:
        return failed, progress.error_message or ""
    return None


def _failure_error(job: RenderJob, progress: Progress) -> RenderFailedError | None:
    failure = _failure(progress)
    if failure is None:
        return None
    failed, message = failure
    detail = f"{len(failed)} of {progress.total_task_count} tasks failed" if failed else "the process failed"
    return RenderFailedError(
        f"render {job.process_id} ({job.feature}) completed with failures: {detail}"
        + (f": {message}" if message else ""),
        job=job,
        failed_task_ids=failed,
        server_message=message,
        progress=progress,
    )


def _log_change(job: RenderJob, previous: Progress | None, progress: Progress) -> None:
    """DEBUG records of what changed in a job's process, each with the ``process_id`` (and the
    ``task_id`` it concerns) as structured fields, so that one render can be followed."""
    known = previous.tasks if previous is not None else {}
    changed = False
    for task_id, state in progress.tasks.items():
        before = known.get(task_id)
        if before != state:
            changed = True
            logger.debug(
                "%s process %s: task %s %s -> %s (progress %s%%)",
                job.feature,
                job.process_id,
                task_id,
                "new" if before is None else _state_name(before),
                _state_name(state),
                progress.progress,
                extra={"process_id": job.process_id, "task_id": task_id},
            )
    if not changed:
        logger.debug(
            "%s process %s: progress %s%%",
            job.feature,
            job.process_id,
            progress.progress,
            extra={"process_id": job.process_id},
        )
    if _is_finished(progress):
        logger.debug(
            "%s process %s: finished (%s)",
            job.feature,
            job.process_id,
            "failed" if _failure(progress) is not None else "succeeded",
            extra={"process_id": job.process_id},
        )


def _state_name(state: int) -> str:
    try:
        return RenderState(state).name
    except ValueError:  # a state the server added: kept as its number
        return str(state)


def _target(job: RenderJob) -> Target:
    return Target(
        key=job._poll_key,
        process_id=job.process_id,
        not_before=job._not_before,
        submitted_at=job._submitted_at,
        progress=job.progress if job._submitted_at is not None else None,
        user_id=job.user_id,
    )


class TaskUpdates:
    """The async iterator of :meth:`RenderJob.wait_until_complete` (see there)."""

    def __init__(
        self, job: RenderJob, *, timeout: float | None, raise_on_failure: bool, downloads_after: bool = False
    ) -> None:
        resource = job.resource
        self._job = job
        self._scheduler = resource._scheduler
        clock = resource._client.clock
        self._clock = clock
        self._deadline = None if timeout is None else clock.monotonic() + timeout
        self._raise_on_failure = raise_on_failure
        self._watch = Watch([_target(job)], self._deadline, downloads_after=downloads_after)
        #: The process left a listing that omits finished ones and was not asked for by id (only with
        #: ``downloads_after``: the bulk runs' waits, see :func:`~adcreative_async._outcome.follow`): the
        #: iteration ended without the process's final state.
        self._vanished = False
        self._states: dict[str, int] = {}
        self._pending: deque[TaskUpdate] = deque()
        self._last_version = 0
        self._started = False
        self._finished = False
        self._error: AdCreativeError | None = None

    def __aiter__(self) -> TaskUpdates:
        return self

    def _absorb(self, progress: Progress) -> None:
        job = self._job
        states = self._states
        for task_id, state in progress.tasks.items():
            previous = states.get(task_id)
            if previous != state:
                states[task_id] = state
                self._pending.append(
                    TaskUpdate(
                        feature=job.feature,
                        process_id=job.process_id,
                        task_id=task_id,
                        previous=None if previous is None else RenderState(previous),
                        state=RenderState(state),
                        progress=progress,
                    )
                )
        if _is_finished(progress):
            self._finished = True
            if self._raise_on_failure:
                self._error = _failure_error(job, progress)

    async def __anext__(self) -> TaskUpdate:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._finished:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            if not self._started:
                self._started = True
                if self._job.progress is not None:
                    self._absorb(self._job.progress)
                    continue
            if self._take_snapshot():
                continue
            self._check_wait_over()
            job = self._job
            if self._watch.downloads_after and self._scheduler.vanished(job._poll_key, job.process_id):
                self._vanished = True
                raise StopAsyncIteration
            await self._scheduler.wait(self._watch)

    def _ask_by_id(self) -> None:
        """After ``vanished``: go on waiting as a plain waiter (the process is asked for by id)."""
        self._vanished = False
        self._watch.downloads_after = False

    def _settle(self, progress: Progress) -> None:
        """After ``vanished``: the process's final state, learnt otherwise (its downloads, or a lookup
        after a refused one): recorded in the job, its task changes yielded next, then the end."""
        self._vanished = False
        self._job.update(progress)
        self._absorb(progress)

    def _take_snapshot(self) -> bool:
        """Absorb a fresher cached snapshot of the job, if any; True if one was taken."""
        job = self._job
        snap = self._scheduler.snapshot(job._poll_key, job.process_id)
        if snap is None or snap.version <= self._last_version or snap.sent_at < job._not_before:
            return False
        self._last_version = snap.version
        job.update(snap.progress)
        self._absorb(snap.progress)
        return True

    def _check_wait_over(self) -> None:
        job = self._job
        watch = self._watch
        if watch.error is not None:
            error, watch.error = watch.error, None
            raise error
        gone = self._scheduler.gone(job._poll_key, job.process_id)
        if gone is not None:
            raise RenderNotFoundError(str(gone), job=job)
        if watch.expired or (self._deadline is not None and self._clock.monotonic() >= self._deadline):
            raise WaitTimeoutError(
                f"waiting for render {job.process_id} ({job.feature}) timed out"
                + (f" at {job.progress.progress}%" if job.progress is not None else ""),
                job=job,
            )


class _AsCompleted:
    """The async iterator of :func:`as_completed`.

    One persistent watch follows every job still running: the scheduler reports which processes
    changed, so a wake costs O(what changed), and a finished job is dropped from the watch in O(1).
    Cancellation, an error or the end detach it; after ``break`` it no longer counts (it is not
    blocked) and the scheduler detaches it later.
    """

    def __init__(self, jobs: Iterable[RenderJob], timeout: float | None) -> None:
        self._remaining: dict[Ident, RenderJob] = {}
        for job in jobs:
            self._remaining[job._watch_ident] = job
        self._ready: deque[RenderJob] = deque()
        self._last_version: dict[Ident, int] = {}
        self._watch: Watch | None = None
        self._scheduler: PollScheduler | None = None
        self._timeout = timeout
        self._deadline: float | None = None

    def __aiter__(self) -> _AsCompleted:
        return self

    async def __anext__(self) -> RenderJob:
        while True:
            if self._ready:
                return self._ready.popleft()
            if not self._remaining:
                self._detach()
                raise StopAsyncIteration
            first = next(iter(self._remaining.values()))
            scheduler = first.resource._scheduler
            clock = first.resource._client.clock
            watch = self._watch
            if watch is None:
                if self._timeout is not None:
                    self._deadline = clock.monotonic() + self._timeout
                for key, job in list(self._remaining.items()):
                    if job.progress is not None and _is_finished(job.progress):
                        self._ready.append(self._remaining.pop(key))  # finished before we started
                if self._ready:
                    continue
                watch = self._watch = Watch(
                    (_target(j) for j in self._remaining.values()), self._deadline, persistent=True
                )
                self._scheduler = scheduler
                scheduler.attach(watch)  # every job reported as changed once: the first scan
            try:
                self._absorb_changes(scheduler, watch)
            except BaseException:
                self._detach()
                raise
            if self._ready:
                continue
            error: AdCreativeError | None = None
            if watch.error is not None:
                error, watch.error = watch.error, None
            elif watch.expired or (self._deadline is not None and clock.monotonic() >= self._deadline):
                pending = list(self._remaining.values())
                error = WaitTimeoutError(
                    f"{len(pending)} render(s) still running when the timeout ran out",
                    job=pending[0],
                    pending_jobs=pending,
                )
            if error is not None:
                self._detach()
                raise error
            try:
                await scheduler.wait(watch)
            except BaseException:  # cancelled, or the client closed: nothing stays attached
                self._detach()
                raise

    def _absorb_changes(self, scheduler: PollScheduler, watch: Watch) -> None:
        """Read the processes the scheduler reported changed; move the finished jobs to ``_ready``."""
        changed, watch.changed = watch.changed, set()
        for key in changed:
            job = self._remaining.get(key)
            if job is None:
                continue
            user_key = job._poll_key
            snap = scheduler.snapshot(user_key, job.process_id)
            if snap is None or snap.version <= self._last_version.get(key, 0):
                gone = scheduler.gone(user_key, job.process_id)
                if gone is not None:
                    raise RenderNotFoundError(str(gone), job=job)
                continue
            if snap.sent_at < job._not_before:
                continue
            self._last_version[key] = snap.version
            job.update(snap.progress)
            if _is_finished(snap.progress):
                self._ready.append(self._remaining.pop(key))
                self._last_version.pop(key, None)
                scheduler.drop_target(watch, key)

    def _detach(self) -> None:
        if self._watch is not None and self._scheduler is not None:
            self._scheduler.detach(self._watch)


def as_completed(jobs: Iterable[RenderJob], *, timeout: float | None = None) -> AsyncIterator[RenderJob]:
    """Yield jobs as their processes finish (successfully or not: check ``job.failed``).

    All jobs are followed by the client's one scheduler (at most one request per user per tick, whatever
    the number of jobs; one for several users when their listings are shared). ``break`` stops following
    them at once.

    Raises:
        WaitTimeoutError: ``timeout`` (seconds, client clock) ran out; ``error.pending_jobs`` lists the
            jobs still running.
        RenderNotFoundError: the server no longer knows one of the processes.
    """
    return _AsCompleted(jobs, timeout)
