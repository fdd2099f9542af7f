"""MemoryLedger: the run ledger in a dict, for tests and for runs that need no durability."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec

from ._base import (
    FINAL_STATES,
    ItemRecord,
    ItemState,
    NewItem,
    RunLedger,
    SourceHash,
    finished_example_of,
    finished_labels_of,
    stale_answer_fits,
    stale_answer_left,
)

__all__ = ["MemoryLedger"]


class MemoryLedger(RunLedger):
    """A run ledger held in memory: it survives nothing but is shared by every client of the process.

    Args:
        run: the run's name.
        clock: wall-clock seconds for leases and times (tests pass their own).
    """

    _records_at_once = True  # (see RunLedger: its answers and downloads are held before any await)

    def __init__(self, run: str = "default", *, clock: Callable[[], float] = time.time) -> None:
        self.run = run
        self._clock = clock
        self._items: dict[str, ItemRecord] = {}
        self._sources: dict[tuple[str, str], SourceHash] = {}
        self._namespace = str(uuid.uuid4())

    def __repr__(self) -> str:
        return f"MemoryLedger(run={self.run!r}, items={len(self._items)})"

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close (the items stay, for the next run in this process)."""

    @property
    def namespace(self) -> str:
        """See :attr:`RunLedger.namespace`."""
        return self._namespace

    def _set(self, key: str, **changes: object) -> ItemRecord:
        record = msgspec.structs.replace(self._items[key], updated_at=self._clock(), **changes)
        self._items[key] = record
        return record

    def _live_other(self, record: ItemRecord, owner: str | None, now: float) -> bool:
        return (
            record.owner is not None
            and record.owner != owner
            and record.lease_until is not None
            and record.lease_until > now
        )

    async def records(self, keys: Sequence[str] | None = None) -> dict[str, ItemRecord]:
        """See :meth:`RunLedger.records`."""
        if keys is None:
            return dict(self._items)
        return {k: self._items[k] for k in keys if k in self._items}

    async def finished_labels(self) -> set[str]:
        """See :meth:`RunLedger.finished_labels`."""
        return finished_labels_of(self._items.values())

    async def finished_example(self) -> ItemRecord | None:
        """See :meth:`RunLedger.finished_example`."""
        return finished_example_of(self._items.values())

    async def counts(self) -> dict[ItemState, int]:
        """See :meth:`RunLedger.counts`."""
        counts = dict.fromkeys(ItemState, 0)
        for record in self._items.values():
            counts[record.state] += 1
        return counts

    async def process_ids(self, feature: str, user_id: str) -> set[str]:
        """See :meth:`RunLedger.process_ids`."""
        user = user_id.lower()
        return {
            r.process_id.lower()
            for r in self._items.values()
            if r.process_id and r.feature == feature and (r.user_id or "").lower() == user
        }

    async def register(self, items: Sequence[NewItem]) -> None:
        """See :meth:`RunLedger.register`."""
        now = self._clock()
        for item in items:
            if item.key not in self._items:
                self._items[item.key] = ItemRecord(
                    key=item.key,
                    seq=item.seq,
                    label=item.label,
                    feature=item.feature,
                    created_at=now,
                    updated_at=now,
                )

    async def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[ItemRecord]:
        """See :meth:`RunLedger.claim`."""
        claimed, _ = await self.claim_and_intend(keys, owner, lease, {})
        return claimed

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        """See :meth:`RunLedger.claim_and_intend` (one step)."""
        now = self._clock()
        claimed = []
        intended: set[str] = set()
        for key in keys:
            record = self._items.get(key)
            if record is None or record.state in FINAL_STATES or self._live_other(record, owner, now):
                continue
            wanted = intents.get(key)
            lapsed = None if record.lease_until is None else max(0.0, now - record.lease_until)
            taken = {"owner": owner, "lease_until": now + lease, "epoch": record.epoch + 1}
            if wanted is not None and record.state is ItemState.PENDING and record.attempt == wanted[0]:
                intended.add(key)
                record = self._set(key, **taken, state=ItemState.SUBMITTING, user_id=wanted[1], intent_at=now)
            else:
                record = self._set(key, **taken)
            claimed.append(msgspec.structs.replace(record, lapsed_for=lapsed))
        return claimed, intended

    async def renew(self, owner: str, lease: float) -> set[str]:
        """See :meth:`RunLedger.renew`."""
        now = self._clock()
        renewed = set()
        for key, record in list(self._items.items()):
            if (
                record.owner == owner
                and record.state not in FINAL_STATES
                and record.lease_until is not None
                and record.lease_until > now
            ):
                self._set(key, lease_until=now + lease)
                renewed.add(key)
        return renewed

    async def release(self, owner: str, keys: Sequence[str] | None = None) -> None:
        """See :meth:`RunLedger.release`."""
        now = self._clock()
        wanted = None if keys is None else set(keys)
        for key, record in list(self._items.items()):
            if record.owner == owner and (wanted is None or key in wanted):
                lapsed = now if record.lease_until is None else min(now, record.lease_until)
                self._set(key, owner=None, lease_until=lapsed)

    def _fenced(self, key: str, epoch: int | None) -> ItemRecord | None:
        """The item's record, if a write under ``epoch`` may change it."""
        record = self._items.get(key)
        if record is None or (epoch is not None and record.epoch != epoch):
            return None
        return record

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        """See :meth:`RunLedger.intent`."""
        now = self._clock()
        record = self._fenced(key, epoch)
        if (
            record is None
            or record.state not in (ItemState.PENDING, ItemState.SUBMITTING)
            or record.owner != owner
            or record.lease_until is None
            or record.lease_until <= now
        ):
            return False
        self._set(key, state=ItemState.SUBMITTING, user_id=user_id, intent_at=now, lease_until=now + lease)
        return True

    async def submitted(
        self, key: str, process_id: str, user_id: str, task_ids: Sequence[str], *, epoch: int | None = None
    ) -> None:
        """See :meth:`RunLedger.submitted`."""
        answer = {
            "state": ItemState.SUBMITTED,
            "process_id": process_id,
            "user_id": user_id,
            "task_ids": tuple(dict.fromkeys(task_ids)),
        }
        if self._fenced(key, epoch) is not None:
            self._set(key, **answer)
            return
        record = self._items.get(key)
        if stale_answer_fits(record, user_id):  # see STALE_ANSWER_RULE
            self._set(key, **answer, error_code=None, error_message=None)
        else:
            stale_answer_left(key, process_id)

    async def tasks(self, key: str, task_ids: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.tasks`."""
        record = self._fenced(key, epoch)
        if record is not None:
            self._set(key, task_ids=tuple(dict.fromkeys((*record.task_ids, *task_ids))))

    async def downloaded(self, key: str, files: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.downloaded`."""
        if self._fenced(key, epoch) is None:
            return
        self._set(
            key,
            state=ItemState.DOWNLOADED,
            files=tuple(files),
            error_code=None,
            error_message=None,
            owner=None,
            lease_until=None,
        )

    async def failed(
        self,
        key: str,
        code: str,
        message: str,
        *,
        state: ItemState = ItemState.FAILED,
        epoch: int | None = None,
    ) -> bool:
        """See :meth:`RunLedger.failed`."""
        if self._fenced(key, epoch) is None:
            return False
        self._set(key, state=state, error_code=code, error_message=message, owner=None, lease_until=None)
        return True

    async def requeue(self, key: str, *, epoch: int | None = None) -> bool:
        """See :meth:`RunLedger.requeue`."""
        record = self._fenced(key, epoch)
        if record is None or record.state not in (ItemState.SUBMITTING, ItemState.UNKNOWN):
            return False
        self._set(key, state=ItemState.PENDING, intent_at=None)
        return True

    async def retry_failed(self) -> int:
        """See :meth:`RunLedger.retry_failed`."""
        retried = 0
        for key, record in list(self._items.items()):
            if record.state is ItemState.FAILED:
                self._set(
                    key,
                    state=ItemState.PENDING,
                    attempt=record.attempt + 1,
                    process_id=None,
                    task_ids=(),
                    files=(),
                    error_code=None,
                    error_message=None,
                    intent_at=None,
                    user_id=None,
                    epoch=record.epoch + 1,
                )
                retried += 1
        return retried

    async def reset_unfinished(self) -> int:
        """See :meth:`RunLedger.reset_unfinished`."""
        reset = 0
        for key, record in list(self._items.items()):
            if record.state in (ItemState.SUBMITTING, ItemState.SUBMITTED):
                self._set(
                    key,
                    state=ItemState.PENDING,
                    attempt=record.attempt + 1,
                    process_id=None,
                    task_ids=(),
                    intent_at=None,
                    user_id=None,
                    epoch=record.epoch + 1,
                )
                reset += 1
        return reset

    async def restart(self) -> None:
        """See :meth:`RunLedger.restart`."""
        self._items.clear()
        self._namespace = str(uuid.uuid4())

    async def source_hashes(self, host: str, paths: Sequence[str]) -> dict[str, SourceHash]:
        """See :meth:`RunLedger.source_hashes`."""
        return {p: self._sources[(host, p)] for p in paths if (host, p) in self._sources}

    async def remember_sources(self, hashes: Iterable[SourceHash]) -> None:
        """See :meth:`RunLedger.remember_sources`."""
        for source in hashes:
            self._sources[(source.host, source.path)] = source
