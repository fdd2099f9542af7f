"""RenderJob: the handle of one render process, small enough to store and resume from anywhere.

A job is a feature name, a process id, a user id, the task ids seen so far and the last progress
snapshot. It can be encoded to JSON and rebuilt (in another worker, after a restart) with
:meth:`AdCreativeClient.job_from_json <adcreative_async.AdCreativeClient.job_from_json>` or a resource's
``job()``; no credential is ever part of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import InvalidRequestError
from ._models import Progress

if TYPE_CHECKING:
    from ._files import ProgressCallback
    from .resources._base import RenderResource

__all__ = ["RenderJob"]

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


_RECORD_DECODER = msgspec.json.Decoder(_JobRecord)
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

    __slots__ = ("_resource", "feature", "process_id", "progress", "task_ids", "user_id")

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
        self.task_ids: tuple[str, ...] = tuple(dict.fromkeys(task_ids))
        self.progress = progress
        self._resource = resource
        if progress is not None:
            self._merge_tasks(progress.tasks)

    def __repr__(self) -> str:
        done = f", progress={self.progress.progress}" if self.progress is not None else ""
        return (
            f"RenderJob(feature={self.feature!r}, process_id={self.process_id!r}, "
            f"user_id={self.user_id!r}, tasks={len(self.task_ids)}{done})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderJob):
            return NotImplemented
        return (self.feature, self.process_id, self.user_id) == (
            other.feature,
            other.process_id,
            other.user_id,
        )

    def __hash__(self) -> int:
        return hash((self.feature, self.process_id, self.user_id))

    # --------------------------------------------------------------------------------- state

    def _merge_tasks(self, task_ids: Iterable[str]) -> None:
        new = [t for t in task_ids if t not in self.task_ids]
        if new:
            self.task_ids = self.task_ids + tuple(new)

    def update(self, progress: Progress) -> None:
        """Record a newer snapshot of this job's process (task ids are merged, never dropped)."""
        if progress.image_render_process_id != self.process_id:
            raise ValueError(
                f"progress of process {progress.image_render_process_id} given to job {self.process_id}"
            )
        self.progress = progress
        self._merge_tasks(progress.tasks)

    @property
    def is_complete(self) -> bool:
        """Whether the last snapshot says the process is done (see ``Progress.is_complete``)."""
        return self.progress is not None and self.progress.is_complete

    # ------------------------------------------------------------------------------------ json

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (camelCase keys; progress in its wire form)."""
        result: dict[str, Any] = msgspec.to_builtins(self._record())
        return result

    def to_json(self) -> bytes:
        """The job as JSON bytes, for storage or a queue. Holds no credential."""
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
        """Rebuild a job from :meth:`to_json` / :meth:`to_dict` output.

        Prefer ``client.job_from_json(data)``, which binds the job to the client so it can wait and
        download.

        Raises:
            InvalidRequestError: when ``data`` is not a job's JSON form.
        """
        try:
            if isinstance(data, dict):
                record = msgspec.convert(data, _JobRecord)
            else:
                record = _RECORD_DECODER.decode(data)
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
    ) -> Path:
        """Download one task's result (see the resource's ``download``)."""
        return await self.resource.download(
            self.process_id, task_id, dest, low_resolution=low_resolution, on_progress=on_progress
        )

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
