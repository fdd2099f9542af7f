"""One item's start call through the run ledger: its intent, the call itself, and what follows a call
that failed.

:class:`ItemCalls` is the part of :class:`~adcreative_async.ledger._run.LedgerDriver` that sends an item's
start call (see that module's doc for the rules): the intent committed first (written again when the one
the claim wrote waited too long for its upload slot: ``INTENT_AHEAD_SHARE``), the call under the lease
guard and the content guard, its answer recorded at once; a call refused, or never sent, puts the item back
to ``pending``; a 429 waits out its ``Retry-After`` without its upload slot; an unanswered call is
reconciled (the item's own user's process adopted, or the item proven never made and sent again, or
``unknown``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .._errors import AdCreativeError, NotStartedError, RateLimitError, UploadAbortedError
from .._files import send_guard
from .._jobs import RenderJob
from .._outcome import NOT_STARTED
from .._ratelimit import Requeues, refused_unprocessed
from .._reconcile import RenderMayExistError
from ._base import ItemRecord, ItemState, RunLedger
from ._emit import _Item
from ._fencing import _Hold, _LeaseGuard, _LostClaim
from ._probe import FinishedProbe
from ._requests import ContentGuard, _image_params, derived_user_id

if TYPE_CHECKING:
    from .._client import AdCreativeClient

__all__ = ["ItemCalls"]

logger = logging.getLogger("adcreative_async.ledger")

T = TypeVar("T")


class _CallGuard:
    """A start call's lease guard, then its content guard, as one send guard (one context and one call
    per part and chunk, not two)."""

    __slots__ = ("_content", "_lease")

    def __init__(self, lease: _LeaseGuard, content: ContentGuard) -> None:
        self._lease = lease
        self._content = content

    def begin(self, param: str) -> None:
        """See :class:`adcreative_async._files.SendGuard`."""
        self._lease.begin(param)
        self._content.begin(param)

    def chunk(self, param: str, data: bytes) -> None:
        """See :class:`adcreative_async._files.SendGuard`."""
        self._lease.chunk(param, data)
        self._content.chunk(param, data)

    def end(self, param: str) -> None:
        """See :class:`adcreative_async._files.SendGuard`."""
        self._lease.end(param)
        self._content.end(param)


class ItemCalls(Generic[T]):
    """An item's start call, its intent and its reconciliation: the driver's (see the module doc)."""

    # the driver's state these read and write (set by LedgerDriver.__init__)
    _client: AdCreativeClient
    _ledger: RunLedger
    _uploads: anyio.CapacityLimiter
    _intent_ahead: float
    _lease: float
    _margin: float
    _takeover_grace: float
    _budget: int | None
    _holds: dict[str, _Hold]
    _unsent: set[str]
    _requeues: dict[str, Requeues]
    _probe: FinishedProbe
    owner: str

    async def _submit(self, entry: _Item[T], record: ItemRecord, written: float | None = None) -> RenderJob:
        """Send the item's start call under its derived user, its intent committed first (``written``:
        when the claim committed it, if it did)."""
        user = derived_user_id(self._ledger.namespace, entry.key, record.attempt)
        clock = self._client.clock
        resubmits = 1  # after an ambiguous failure proven to have made nothing, one more call at most
        limited: RateLimitError | None = None  # a 429 after the retries: sent again after its Retry-After
        while True:
            # Written before the wait for an upload slot: the intents of the items claimed together
            # arrive together and are committed together (one commit per many items, not one per call).
            if written is None and self._intent_ahead > 0:
                written = await self._intent(entry, user)
            async with self._uploads:
                if written is None or clock.monotonic() - written > self._intent_ahead:
                    await self._intent(entry, user)  # the call follows its intent closely
                # this client alone writes for the derived user (no listing before the start call needed)
                self._client._ledger.fresh_user(entry.request.feature, user)
                guard = _LeaseGuard(self, entry.key)
                try:
                    self._spend()
                    guard.check()  # (a call without a file part has no other check)
                    if not any(
                        entry.request.params.get(n) is not None for n in _image_params(record.feature)
                    ):
                        self._unsent.discard(entry.key)  # no file part: sent as soon as it is made
                    # the lease still holds as each of its bytes goes out, and the key is the hash of
                    # what is sent: a file changed since it was hashed is refused
                    with send_guard(_CallGuard(guard, ContentGuard(entry.hashes, entry.request.label))):
                        job = await entry.request.submit(self._client, user_id=user)
                except RenderMayExistError:
                    job = None
                except UploadAbortedError:
                    if not guard.refused:
                        raise  # the input changed (InputChangedError): put back by _run_item
                    await self._leave(entry)
                except RateLimitError as exc:  # refused unprocessed (RATE_LIMITED_UNPROCESSED): pending
                    await self._requeue(entry)
                    if not refused_unprocessed(exc):
                        raise
                    limited, job = exc, None
                except Exception:  # not ambiguous: the call was refused or never sent, nothing made
                    await self._requeue(entry)
                    raise
                self._unsent.discard(entry.key)  # answered, or may have been sent
            if limited is not None:  # no upload slot held while it waits; a new intent before the call
                if not await self._requeue_after(entry, limited):
                    raise limited
                if self._budget is not None:
                    self._budget += 1  # the refused call made nothing (_spend counts the next one)
                written, limited = None, None
                continue
            if job is not None:  # recorded right away, but without holding an upload slot
                await self._recorded(  # the answer of a paid call is recorded, always
                    self._ledger.submitted(
                        entry.key, job.process_id, job.user_id, job.task_ids, epoch=self._epoch(entry.key)
                    )
                )
                return job._poll_by_application()
            now = time.time()
            pending = ItemRecord(
                key=entry.key,
                seq=entry.index,
                label=entry.request.label,
                feature=entry.request.feature,
                state=ItemState.SUBMITTING,
                attempt=record.attempt,
                user_id=user,
                intent_at=now,
            )
            found = await self._reconcile(entry, pending)
            if found is not None:
                return found
            written = None  # requeued: another call needs another intent
            if resubmits == 0:
                raise RenderMayExistError(
                    f"two start calls of {entry.request.label or entry.key} failed without an answer",
                    feature=entry.request.feature,
                    user_id=user,
                )
            resubmits -= 1

    async def _recorded(self, write: Coroutine[Any, Any, None]) -> None:
        """Await an item's answer or download (``submitted``, ``downloaded``, not yet awaited) so
        that a cancellation cannot lose it: as it is where the ledger holds them before any await
        (``RunLedger._records_at_once``: the built-in ledgers), else in a shielded cancel scope."""
        if self._ledger._records_at_once:
            await write
            return
        with anyio.CancelScope(shield=True):
            await write

    def _spend(self) -> None:
        """Count a start call against ``max_renders`` as it is about to go (NotStartedError when they
        are all sent: the caller puts the item back to ``pending``)."""
        if self._budget is not None:
            if self._budget <= 0:
                raise NotStartedError(NOT_STARTED)
            self._budget -= 1

    async def _requeue(self, entry: _Item[T]) -> None:
        """Back to pending (no call of this attempt made a render), for this run or the next."""
        with anyio.CancelScope(shield=True):
            try:
                await self._ledger.requeue(entry.key, epoch=self._epoch(entry.key))
            except AdCreativeError as ledger_error:  # reconciled by the next run instead
                logger.warning("could not requeue %s: %s", entry.key, ledger_error)

    async def _intent(self, entry: _Item[T], user: str) -> float:
        """Commit the item's intent (fenced by this worker's claim); when it was committed (client
        clock). Raises _LostClaim when the claim is no longer this worker's."""
        clock = self._client.clock
        before = clock.monotonic()  # the lease it extends ends no earlier than this plus the lease
        hold = self._holds.get(entry.key)
        if hold is None or not await self._ledger.intent(
            entry.key, self.owner, user, self._lease, epoch=hold.epoch
        ):
            if hold is not None and entry.key in self._unsent:  # the claim wrote the intent: no call
                await self._leave(entry)  # followed it (put back unless another worker took it)
            raise _LostClaim(entry.key)
        hold.deadline = max(hold.deadline, before + self._lease)
        self._unsent.add(entry.key)
        return clock.monotonic()

    async def _leave(self, entry: _Item[T]) -> None:
        """The item's lease ran out before its start call was sent (the lease guard stopped the call,
        or the intent the claim wrote could not be renewed): the item is left to whoever takes it. Put
        back to ``pending`` first when its epoch is still this worker's (nobody took it: nothing of this
        call exists), so that its next owner need not reconcile it."""
        with anyio.CancelScope(shield=True):
            try:
                await self._ledger.requeue(entry.key, epoch=self._epoch(entry.key))
            except AdCreativeError as exc:  # its next owner reconciles it
                logger.warning("could not put item %s back: %s", entry.key, exc)
        self._unsent.discard(entry.key)
        logger.info("item %s: the claim ran out before its start call was sent; left to others", entry.key)
        raise _LostClaim(entry.key)

    async def _let_go(self, entry: _Item[T]) -> None:
        """The item ended here without being finished (left for the next run, or its render may exist):
        its claim is given up at once. Renewed with this worker's other claims, it would keep the item
        from the workers that watch it for as long as this one runs, and two workers each waiting for
        items the other holds would never end."""
        with anyio.CancelScope(shield=True):
            try:
                await self._ledger.release(self.owner, [entry.key])
            except AdCreativeError as exc:  # its claim lapses by itself once this worker stops renewing
                logger.warning("could not give up the claim on %s: %s", entry.key, exc)

    async def _requeue_after(self, entry: _Item[T], error: RateLimitError) -> bool:
        """Wait out a 429 that ended the item's start call, lookup or download after the retries; False
        (at once) when the item's requeues are spent (see
        :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES`): its outcome is then ``error``."""
        requeues = self._requeues.get(entry.key)
        return requeues is not None and await requeues.wait(error)

    def _epoch(self, key: str) -> int | None:
        """The fencing epoch of this worker's claim on ``key`` (None: not claimed here: unfenced)."""
        hold = self._holds.get(key)
        return None if hold is None else hold.epoch

    async def _reconcile(self, entry: _Item[T], record: ItemRecord) -> RenderJob | None:
        """An intent without an answer: the item's own user's process (adopted), or None when it is
        proven that none was made (the item is pending again); else RenderMayExistError (``unknown``)."""
        assert record.user_id is not None
        resource = self._client.resource(record.feature)
        clock = self._client.clock
        grace = self._client._transport.retry.reconcile_grace
        interval = self._client._transport.retry.reconcile_interval
        hold = self._holds.get(entry.key)
        if record.lapsed_for is not None and hold is not None:
            # taken over: the old owner's last bytes may arrive until the margin past the lapse (see
            # SEND_MARGIN), and its render be listed a grace later: counted from the lapse
            deadline = hold.claimed_at + max(0.0, self._takeover_grace - record.lapsed_for)
        else:  # this worker's own call (or an intent of a version without leases' lapses)
            waited = time.time() - (record.intent_at or 0.0)
            deadline = clock.monotonic() + max(0.0, grace - waited)
        while True:
            try:
                listing = await resource.user_progress(record.user_id)
            except RateLimitError as exc:  # looked up again after its Retry-After (a listing is needed)
                if not await self._requeue_after(entry, exc):
                    raise
                continue
            if listing:
                if len(listing) > 1:
                    logger.warning(
                        "item %s: %d processes for its own user (one render too many was made before)",
                        entry.key,
                        len(listing),
                    )
                progress = listing[0]
                task_ids = list(progress.tasks)
                with anyio.CancelScope(shield=True):
                    await self._ledger.submitted(
                        entry.key,
                        progress.image_render_process_id,
                        record.user_id,
                        task_ids,
                        epoch=self._epoch(entry.key),
                    )
                logger.info(
                    "item %s: adopted process %s after an unanswered start call",
                    entry.key,
                    progress.process_id,
                )
                return resource.job(
                    progress.image_render_process_id, user_id=record.user_id, task_ids=task_ids
                )._poll_by_application()
            if clock.monotonic() >= deadline:
                break
            await clock.sleep(min(interval, max(0.0, deadline - clock.monotonic())))
        keeps = await self._probe.keeps_finished(record.feature, self._requeues.get(entry.key))
        if keeps:
            if not await self._ledger.requeue(entry.key, epoch=self._epoch(entry.key)):
                raise _LostClaim(entry.key)
            return None
        why = (
            "finished processes leave listings"
            if keeps is False
            else "no finished render of this application could show whether listings keep finished ones"
        )
        message = (
            f"the start call of {entry.request.label or entry.key} may have made a render: none is listed "
            f"for its user, and {why}, so it cannot be ruled out; not sent again (the "
            "next run looks for it again and renders it once it is proven never made)"
        )
        with anyio.CancelScope(shield=True):
            if not await self._ledger.failed(
                entry.key,
                "RenderMayExistError",
                message,
                state=ItemState.UNKNOWN,
                epoch=self._epoch(entry.key),
            ):
                raise _LostClaim(entry.key)
        raise RenderMayExistError(message, feature=record.feature, user_id=record.user_id)
