"""SyncRenderJob: the sync twin of :class:`~adcreative_async.RenderJob`, and the sync waits."""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._downloads import DownloadStream
from .._jobs import RenderJob, TaskUpdate
from .._models import Progress
from ._downloads import SyncDownloadStream
from ._portal import BlockingIterator, LoopThread, SyncObject, blocking, on_loop

if TYPE_CHECKING:
    from ._client import SyncAdCreativeClient
    from ._resources import SyncRenderResource

__all__ = ["SyncRenderJob", "as_completed", "sync_job", "sync_stream", "sync_updates"]


def sync_updates(owner: SyncObject, updates: AsyncIterator[TaskUpdate]) -> BlockingIterator[TaskUpdate]:
    """A wait's updates, as a blocking iterator."""
    return BlockingIterator(owner, updates)


def sync_stream(owner: SyncObject, stream: DownloadStream) -> SyncDownloadStream:
    """A download stream, as its sync twin."""
    return SyncDownloadStream(owner._client, stream)


def sync_job(owner: SyncObject, job: RenderJob) -> SyncRenderJob:
    """A job handle, as its sync twin on the owner's client."""
    return SyncRenderJob(job, owner._client)


class SyncRenderJob(SyncObject):
    """A render process started by the sync client, or rebuilt from its ids: the sync twin of
    :class:`~adcreative_async.RenderJob`, with the same attributes and methods, blocking.

    Example::

        job = client.background_remover.remove("product.jpg")
        for update in job.wait_until_complete(timeout=600):
            if update.succeeded:
                job.download(update.task_id, "out/")

    ``async_job`` is the async handle it stands for (what errors such as ``RenderFailedError.job`` and
    bulk outcomes carry; its attributes are the same).
    """

    _client: SyncAdCreativeClient | None

    def __init__(self, job: RenderJob, client: SyncAdCreativeClient | None) -> None:
        super().__init__(client, job)
        self._job = job

    # --------------------------------------------------------------------------------- state

    @property
    def async_job(self) -> RenderJob:
        """The :class:`~adcreative_async.RenderJob` this stands for."""
        return self._job

    @property
    def feature(self) -> str:
        """The feature's name (``"creatives"``, ``"background_remover"``)."""
        return self._job.feature

    @property
    def process_id(self) -> str:
        """The render process id."""
        return self._job.process_id

    @property
    def user_id(self) -> str:
        """The user the process belongs to."""
        return self._job.user_id

    @property
    def task_ids(self) -> tuple[str, ...]:
        """The task ids seen so far, in first-seen order."""
        return self._job.task_ids

    @property
    def progress(self) -> Progress | None:
        """The last progress snapshot received, or None for a job rebuilt from ids alone."""
        return self._job.progress

    @property
    def is_complete(self) -> bool:
        """Whether the last snapshot says the process is done."""
        return self._job.is_complete

    @property
    def failed(self) -> bool:
        """Whether the last snapshot shows failed or cancelled tasks or ``isSuccessful: false``."""
        return self._job.failed

    def __repr__(self) -> str:
        return "Sync" + repr(self._job)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SyncRenderJob):
            return self._job == other._job
        if isinstance(other, RenderJob):
            return self._job == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._job)

    # Plain data: no loop needed (they work on a job not bound to any client, as the async ones do).

    def update(self, progress: Progress) -> None:
        """Record a newer snapshot of this job's process (see ``RenderJob.update``)."""
        self._job.update(progress)

    def raise_for_failure(self) -> None:
        """Raise :class:`~adcreative_async.RenderFailedError` if the last snapshot shows a failure."""
        self._job.raise_for_failure()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see ``RenderJob.to_dict``)."""
        return self._job.to_dict()

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict in the API's camelCase (see ``RenderJob.to_wire``)."""
        return self._job.to_wire()

    def to_json(self) -> bytes:
        """The job as JSON bytes, for storage or a queue. Holds no credential."""
        return self._job.to_json()

    @classmethod
    def from_json(
        cls, data: bytes | str | dict[str, Any], *, resource: SyncRenderResource | None = None
    ) -> SyncRenderJob:
        """Rebuild a job from ``to_json()`` / ``to_dict()`` output (see
        :meth:`RenderJob.from_json <adcreative_async.RenderJob.from_json>`); prefer
        ``client.job_from_json(data)``, which binds it to the client.

        Raises:
            InvalidRequestError: when ``data`` is not a job's JSON form.
        """
        job = RenderJob.from_json(data)
        synced = cls(job, None)
        return synced if resource is None else synced.bind(resource)

    @property
    def resource(self) -> SyncRenderResource:
        """The sync client's resource this job is bound to.

        Raises:
            InvalidRequestError: for a job rebuilt without a client (use ``client.job_from_json``).
        """
        resource = self._job.resource  # raises for an unbound job
        assert self._client is not None
        twin: SyncRenderResource = self._client._twin(resource)
        return twin

    def bind(self, resource: SyncRenderResource) -> SyncRenderJob:
        """This job, bound to ``resource`` of a sync client (same ids and progress)."""
        self._job.bind(resource._target)
        self._client = resource._client
        return self

    def _loop_thread(self) -> LoopThread:
        if self._client is None:
            _ = self._job.resource  # raises InvalidRequestError: how to bind
        return super()._loop_thread()

    # ------------------------------------------------------------------------------ operations

    wait_until_complete = on_loop(RenderJob.wait_until_complete, sync_updates)
    result = blocking(RenderJob.result)

    def result_future(
        self, *, timeout: float | None = None, raise_on_failure: bool = True
    ) -> concurrent.futures.Future[Progress]:
        """Start :meth:`result` on the client's loop and return at once: a
        :class:`concurrent.futures.Future` of the final progress (or of the error ``result()`` raises).

        For web views that must not hold a worker while a render runs (a gunicorn sync worker serves one
        request at a time): the wait runs on the client's loop thread and resolves on push or polling,
        exactly as ``result()`` does. ``future.add_done_callback(fn)`` runs ``fn`` on the client's loop
        thread when it resolves: ``fn`` must not block nor call the sync client. Cancelling the future
        ends the wait; closing the client ends it with ClientNotOpenError.

        Example::

            job = client.background_remover.remove(image)
            job.result_future(timeout=600).add_done_callback(lambda f: results.put(job.process_id, f))
        """
        future: concurrent.futures.Future[Progress] = self._loop_thread().submit_future(
            self._job.result, (), {"timeout": timeout, "raise_on_failure": raise_on_failure}
        )
        return future

    refresh = blocking(RenderJob.refresh)
    download = blocking(RenderJob.download)
    stream_download = on_loop(RenderJob.stream_download, sync_stream)
    open_download = blocking(RenderJob.open_download, sync_stream)
    download_all = blocking(RenderJob.download_all)


def unwrap_jobs(
    jobs: Iterable[SyncRenderJob | RenderJob],
) -> tuple[list[RenderJob], Mapping[int, SyncRenderJob]]:
    """The async jobs of ``jobs``, and the caller's sync handles by the id of the async one."""
    handles: dict[int, SyncRenderJob] = {}
    async_jobs: list[RenderJob] = []
    for job in jobs:
        if isinstance(job, SyncRenderJob):
            handles[id(job._job)] = job
            async_jobs.append(job._job)
        else:
            async_jobs.append(job)
    return async_jobs, handles


def as_completed(jobs: Iterable[SyncRenderJob], *, timeout: float | None = None) -> Iterator[SyncRenderJob]:
    """Yield jobs as their processes finish: the sync twin of :func:`adcreative_async.as_completed`
    (the jobs must belong to one open sync client).

    Raises:
        WaitTimeoutError: ``timeout`` (seconds, client clock) ran out; ``error.pending_jobs`` lists the
            jobs still running (their async handles).
        RenderNotFoundError: the server no longer knows one of the processes.
    """
    handles = list(jobs)
    if not handles:
        return iter(())
    client = handles[0]._client
    if client is None:
        _ = handles[0].async_job.resource  # raises InvalidRequestError: how to bind
    assert client is not None
    return client.as_completed(handles, timeout=timeout)
