"""What a bulk run through the run ledger reports (:class:`Emitter`): each item's outcome as it is out,
the outcome of an item finished before (or by another worker) from its record, and the same outcome for
the other inputs of the same content (one render, their files under their own names: a copy or a hard
link); :class:`RecordedError`, the error a failed item's record holds.

Split out of :mod:`adcreative_async.ledger._run`, whose driver decides what each item needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._errors import AdCreativeError, InvalidRequestError
from .._jobs import RenderJob
from .._naming import Namer, copy_file, name_context, render_name
from .._outcome import BulkOutcome
from .._reconcile import RenderMayExistError
from ._base import ItemRecord, ItemState
from ._requests import RenderRequest

if TYPE_CHECKING:
    from .._client import AdCreativeClient

__all__ = ["Emitter", "RecordedError"]

T = TypeVar("T")


@dataclass
class _Item(Generic[T]):
    index: int
    item: T
    request: RenderRequest
    key: str
    hashes: dict[str, str] = field(default_factory=dict)  # its images' hashes, as in its key


class RecordedError(AdCreativeError):
    """The error an item finished with in an earlier run (or another worker), as the ledger recorded it.

    Attributes:
        code: the error's class name (``RenderFailedError``); message: its text.
    """

    def __init__(self, record: ItemRecord) -> None:
        super().__init__(f"{record.error_code}: {record.error_message}")
        self.code = record.error_code or ""
        self.message = record.error_message or ""


class Emitter(Generic[T]):
    """Sends a ledger run's outcomes; holds the inputs waiting for the outcome of another input of the
    same key (``followers``: every key in flight, its followers; dropped once its outcome is out)."""

    def __init__(self, client: AdCreativeClient, name: Namer | None, dest: str | None) -> None:
        self._client = client
        self._name = name
        self._dest = dest
        self.followers: dict[str, list[_Item[T]]] = {}

    async def record(
        self, send: MemoryObjectSendStream[BulkOutcome[T]], entry: _Item[T], record: ItemRecord
    ) -> None:
        """The outcome of an item finished before (or by another worker), from its record."""
        job = None
        if record.process_id and record.user_id:
            # ids this SDK recorded (canonical already): a handle without validating them again
            job = RenderJob(
                feature=record.feature,
                process_id=record.process_id,
                user_id=record.user_id,
                task_ids=record.task_ids,
                resource=self._client.resource(record.feature),
            )
        error: BaseException | None = None
        if record.state is ItemState.FAILED:
            error = RecordedError(record)
        elif record.state is ItemState.UNKNOWN:
            error = RenderMayExistError(
                f"{record.error_code}: {record.error_message}",
                feature=record.feature,
                user_id=record.user_id or "",
            )
        outcome = BulkOutcome(
            entry.index,
            entry.item,
            job=job,
            files=[Path(f) for f in record.files],
            error=error,
            key=record.key,
            resumed=True,
        )
        if outcome.files:  # under this input's own name (the record's files may be another input's)
            try:
                outcome.files = await self._copies(entry, outcome)
            except (OSError, InvalidRequestError) as exc:
                outcome._fail(exc)
        await self.send(send, outcome)

    async def send(self, send: MemoryObjectSendStream[BulkOutcome[T]], outcome: BulkOutcome[T]) -> None:
        """Report an outcome, and the same for the other inputs with the same key (their files under
        their own names, when results are named)."""
        await send.send(outcome)
        for follower in self.followers.pop(outcome.key or "", []):
            copy: BulkOutcome[T] = BulkOutcome(
                follower.index,
                follower.item,
                job=outcome.job,
                error=outcome.error,
                key=outcome.key,
                resumed=outcome.resumed,
            )
            try:
                copy.files = await self._copies(follower, outcome)
            except (OSError, InvalidRequestError) as exc:
                copy.error = copy.error or exc
            await send.send(copy)

    async def _copies(self, follower: _Item[T], outcome: BulkOutcome[T]) -> list[Path]:
        if self._name is None or self._dest is None:
            return list(outcome.files)
        job = outcome.job
        copies = []
        for position, source in enumerate(outcome.files):
            task_id = (
                job.task_ids[position] if job is not None and position < len(job.task_ids) else source.stem
            )
            process_id = job.process_id if job is not None else ""
            context = name_context(
                follower.request, follower.index, task_id, position, process_id, source.suffix
            )
            target = Path(self._dest) / render_name(self._name, context)
            if target != source:  # an input's own file (a resume) needs no copy
                target = await anyio.to_thread.run_sync(copy_file, source, target)
            copies.append(target)
        return copies
