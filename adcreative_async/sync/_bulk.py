"""SyncBulkRun: the sync twin of :class:`~adcreative_async.BulkRun`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from .._bulk import BulkOutcome, BulkRun
from ._portal import SyncObject

if TYPE_CHECKING:
    from ..ledger import RunLedger
    from ._client import SyncAdCreativeClient

__all__ = ["SyncBulkRun"]

T = TypeVar("T")


class SyncBulkRun(SyncObject, Generic[T]):
    """Runs items concurrently on the client's loop; iterate it for outcomes as they finish. Use it as a
    context manager (``client.bulk(...)``)::

        with client.bulk(paths, lambda c, p: c.background_remover.remove(p), dest="out/") as run:
            for outcome in run:
                print(outcome.item, "ok" if outcome.ok else outcome.error, outcome.files)

    The outcomes are the async run's own :class:`~adcreative_async.BulkOutcome` objects. ``submit`` and
    ``on_update`` run on the client's loop: ``submit`` receives the async client (the same lambda serves
    both clients) and ``on_update`` must not block. Leaving the block early cancels what is still
    running. A run-level error stops the run: the iteration raises one
    :class:`~adcreative_async.RunAbortedError`, as the async run does.
    """

    def __init__(self, client: SyncAdCreativeClient, run: BulkRun[T]) -> None:
        super().__init__(client, run)
        self._run = run
        self._held: AbstractContextManager[BulkRun[T]] | None = None

    def __repr__(self) -> str:
        try:
            return f"<SyncBulkRun of {len(self._run)} items>"
        except TypeError:  # inputs given as an iterator: read lazily, their number unknown
            return "<SyncBulkRun of lazily read items>"

    def __len__(self) -> int:
        """The number of inputs, when they are sized (TypeError for an iterator, as ``BulkRun``)."""
        return len(self._run)

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> SyncBulkRun[T]:
        if self._held is not None:
            raise RuntimeError("this bulk run is already entered")
        held = self._loop_thread().wrap_context(self._run)
        held.__enter__()
        self._held = held
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        held, self._held = self._held, None
        if held is None:
            return None
        return held.__exit__(exc_type, exc, tb)

    @property
    def ledger(self) -> RunLedger | None:
        """The run ledger, when the run has one (the async object: its methods run on the client's loop)."""
        return self._run.ledger

    def __iter__(self) -> SyncBulkRun[T]:
        return self

    def __next__(self) -> BulkOutcome[T]:
        try:
            outcome: BulkOutcome[T] = self._loop_thread().submit(self._run.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
        return outcome
