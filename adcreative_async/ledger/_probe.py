"""Whether the server keeps finished processes in their user's listing: what proves that an unanswered
start call made nothing (an empty listing of its own user, past the grace, then means no render exists;
see ``UNANSWERED_START_RULE`` in :mod:`adcreative_async.ledger._run`).

The proof looks for a finished process in its user's listing: one this run finished, or, while other
items run, the first one that finishes (the items waiting for it hold no room in the claim window, so the
others go on being claimed and started). When nothing else runs that could finish: one finished by another
worker of the run (the ledger), else a finished process of the application's listing; with none at all,
nothing proves it either way (the item stays ``unknown``, and the next run looks again).

A lookup of the proof answered 429 after the transport's retries is made again after the 429's
``Retry-After``, on the requeues of the item that asks (:class:`~adcreative_async._ratelimit.Requeues`,
shared with its start call, its own lookups and downloads: ``RATE_LIMIT_REQUEUES``); once they are spent,
the ``RateLimitError`` is the item's outcome (the item stays for the next run).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._errors import RateLimitError
from .._ratelimit import Requeues
from ._base import ItemRecord, ItemState, RunLedger
from ._signal import Signal

if TYPE_CHECKING:
    from .._client import AdCreativeClient

__all__ = ["FinishedProbe"]

logger = logging.getLogger("adcreative_async.ledger")

T = TypeVar("T")


async def _looked_up(lookup: Callable[[], Awaitable[T]], requeues: Requeues | None) -> T:
    """``lookup()``, made again after each ``RateLimitError``'s ``Retry-After`` while ``requeues`` (the
    asking item's) last; the error once they are spent (or without any)."""
    while True:
        try:
            return await lookup()
        except RateLimitError as exc:
            if requeues is None or not await requeues.wait(exc):
                raise


class FinishedProbe:
    """One run's answer to "do listings keep finished processes?", found once and kept.

    Args:
        client, ledger: the run's.
        nothing_else_runs: given how many items wait for the answer, whether nothing else of the run
            runs that could finish.
        changes: the run's current "something changed" event (replaced at each change).
        changed: signals a change (an item now waits for the answer).
    """

    def __init__(
        self,
        client: AdCreativeClient,
        ledger: RunLedger,
        nothing_else_runs: Callable[[int], bool],
        changes: Callable[[], Signal],
        changed: Callable[[], None],
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._nothing_else_runs = nothing_else_runs
        self._changes = changes
        self._changed = changed
        self.example: ItemRecord | None = None  # a finished process, to look for in its user's listing
        self.keeps: bool | None = None
        self._lock = anyio.Lock()
        self._looked_elsewhere = False
        self._waiting = 0

    def note(self, record: ItemRecord) -> bool:
        """Take ``record`` as the finished process to look for, if it is one and none was taken yet."""
        if record.state is ItemState.DOWNLOADED and record.process_id and self.example is None:
            self.example = record
            return True
        return False

    async def keeps_finished(self, feature: str, requeues: Requeues | None = None) -> bool | None:
        """True or False once known (looked up once); None when no finished process exists to tell.
        A lookup refused with a 429 is made again on the asking item's ``requeues`` (module doc)."""
        if self.keeps is not None:
            return self.keeps
        self._waiting += 1
        self._changed()
        try:
            while self.example is None:
                if self._nothing_else_runs(self._waiting):
                    break  # nothing else runs that could finish
                await self._changes().wait()
        finally:
            self._waiting -= 1
        async with self._lock:  # one look elsewhere for all the items waiting here
            if self.example is None and not self._looked_elsewhere:
                example = await _looked_up(lambda: self._example_elsewhere(feature), requeues)
                self._looked_elsewhere = True
                if example is not None and self.note(example):
                    self._changed()
        example = self.example
        if example is None:
            return None
        if self.keeps is None:
            assert example.user_id is not None
            assert example.process_id is not None
            resource = self._client.resource(example.feature)
            listing = await _looked_up(lambda: resource.user_progress(example.user_id), requeues)
            self.keeps = any(p.image_render_process_id.lower() == example.process_id.lower() for p in listing)
            if not self.keeps:
                logger.warning(
                    "finished processes leave their user's listing: an unanswered start call can no longer "
                    "be proven to have made nothing (such items are reported unknown)"
                )
        return self.keeps

    async def _example_elsewhere(self, feature: str) -> ItemRecord | None:
        """A finished process that this worker did not finish: another worker's (the ledger), else one of
        the application's listing of ``feature``; None when there is none."""
        example = await self._ledger.finished_example()
        if example is not None:
            return example
        for progress in await self._client.resource(feature).application_progress():
            if progress.is_complete and progress.user_id:
                return ItemRecord(
                    key="",
                    seq=0,
                    label="",
                    feature=feature,
                    state=ItemState.DOWNLOADED,
                    user_id=progress.user_id,
                    process_id=progress.image_render_process_id,
                )
        return None
