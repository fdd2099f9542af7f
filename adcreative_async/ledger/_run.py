"""A bulk run through the run ledger: claims, write-ahead intents, resume, reconciliation, takeover.

(An item's start call, its intent and its reconciliation are :mod:`adcreative_async.ledger._submit`'s
:class:`~adcreative_async.ledger._submit.ItemCalls`, a part of :class:`LedgerDriver`.)

Before anything else, every item's output name is checked (``_naming.check_names``): an item whose
result could not be saved is refused unsent and never recorded. Each start call goes out under a
:class:`~adcreative_async.ledger._requests.ContentGuard`: an image whose bytes, as sent, are not those
of its key stops the call before its request is complete (``InputChangedError``; the item is put back to
``pending``, nothing was made). An item finished before, or by another input of the same content, gets
its files under its own names (a copy, or a hard link).

The inputs are read a chunk at a time, as room frees up: at most ``window_size`` items run (or wait for
their outcome to be taken) at once, whatever the number of inputs. For each chunk of inputs, in order: the
requests' keys (files hashed off the loop, remembered hashes reused), registration of the unknown ones,
outcomes at once for the items already finished, and a claim on the others. A claimed item is, by its
state:

- ``pending``: its intent (with its derived user id) is committed, then its start call is sent, and the
  answer committed right after. The claim itself writes the intents of the items it takes
  (:meth:`~adcreative_async.ledger.RunLedger.claim_and_intend`: one transaction or statement for a
  window of items, not a claim and then intents, nor one write per start call), before the items wait
  for an upload slot; an intent that waited too long for its slot is written again just before the call
  (see :data:`INTENT_AHEAD_SHARE`);
- ``submitting`` (an intent without an answer: a crash, or an ambiguous failure) or ``unknown`` (an
  earlier run could not tell): reconciled before any new start call — its user's processes are listed;
  one is adopted; none, past the grace period and with listings proven to keep finished processes, means
  it was never made and it is sent again; otherwise it is ``unknown`` (never sent blind; the next run
  reconciles it again). Such items hold no room in the claim window while they wait for that proof (a
  finished render of this run, another worker's, or of the application's listing), so the items whose
  renders give it are claimed and started meanwhile;
- ``submitted``: awaited by its process id, no new start call.

An item's errors are sorted by :func:`~adcreative_async._errors.error_kind`: a run-level one (credentials,
an unreachable API, the ledger or the output folder unwritable) stops the whole run (one
:class:`~adcreative_async.RunAbortedError`, nothing recorded); an item-level one (the API refused the
input, or the render failed) is recorded ``failed``; a transient one (a 429 only once the item's requeues
are spent: :data:`~adcreative_async._ratelimit.RATE_LIMIT_REQUEUES`) leaves the item as it was —
``pending`` when the call was refused or never sent, ``submitted`` when its render exists (a render known
to exist is only ever awaited and downloaded, by this run or the next, never failed nor paid again). An
item that ends here unfinished has its claim released at once: the workers watching it take it up (this
worker's renewals would otherwise hold it for as long as it runs: two workers each watching what the
other holds would never end).

Every wait goes through the client's poll scheduler, on the application's listing (each derived user owns
one render, so one ``CheckApplicationAllProgresses`` per tick answers every item). Items held by another
live worker are watched until they finish or their claim lapses, then taken over. A task renews this
worker's claims while it runs; on a clean stop (Ctrl-C) they are released at once. Claims of a dead
process of this machine (its pid gone, or reused by a process that started later) are taken over without
waiting for their lease.

Fencing (the argument is in :mod:`adcreative_async.ledger._base`): each claimed item's epoch and local
lease deadline are kept (:class:`_Hold`; the deadline from the client's monotonic reading taken before the
claim, intent or renewal that set it). Every ledger write of the item carries the epoch. A start call is
made only through a lease guard (:class:`_LeaseGuard`, a send guard): checked before the call and as each
chunk and the end of each file part of its upload go out, it refuses once the deadline less
:data:`SEND_MARGIN` has passed; the item is then left (put back to ``pending`` if its epoch is still this
worker's) and watched. A download is not started for an item whose deadline passed (the worker was
paused: the item may be another's). A taken-over intent is reconciled for ``SEND_MARGIN`` +
``reconcile_grace`` counted from the lapse of the old claim. On a stop, the feeder claims nothing more, and
the intents whose call surely never went out (its upload never reached the end of a file part) are put
back to ``pending`` before the claims are released, so that the ledger counts only calls that were sent.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from .._errors import (
    AdCreativeError,
    ErrorKind,
    InputChangedError,
    InvalidRequestError,
    NotFoundError,
    NotStartedError,
    RunAbortedError,
    error_kind,
    first_of_kind,
)
from .._jobs import RenderJob
from .._naming import Namer, check_names
from .._outcome import NOT_STARTED, BulkOutcome, Inputs, download_task, follow, requeues_for, window_size
from .._ratelimit import Requeues
from .._reconcile import RenderMayExistError
from ._base import (
    ItemRecord,
    ItemState,
    NewItem,
    RunLedger,
    dead_here,
    error_code,
    error_message,
    new_worker_id,
)
from ._emit import Emitter, _Item
from ._fencing import SEND_MARGIN, SEND_MARGIN_SHARE, _Hold, _LostClaim
from ._probe import FinishedProbe
from ._requests import RenderRequest, derived_user_id, request_digests
from ._signal import Signal
from ._submit import ItemCalls

if TYPE_CHECKING:
    from .._client import AdCreativeClient
    from .._jobs import TaskUpdate

__all__ = [
    "CHUNK",
    "CLAIM_WINDOW",
    "INTENT_AHEAD_SHARE",
    "SEND_MARGIN",
    "SEND_MARGIN_SHARE",
    "UNANSWERED_START_RULE",
    "LedgerDriver",
]

logger = logging.getLogger("adcreative_async.ledger")

T = TypeVar("T")

#: Inputs hashed, registered and claimed together, at first; a chunk whose items had all finished before
#: (a resume) doubles the next one, up to :data:`MAX_CHUNK`.
CHUNK = 256
MAX_CHUNK = 8192
#: The first chunk, smaller: the first start calls wait for its keys, registration and claim.
FIRST_CHUNK = 64
#: A resume of a run ledger of at most this many items looks at the inputs whose label has only finished
#: items last (it holds those labels in memory meanwhile).
PRELOAD_LIMIT = 250_000
#: assumed (the docs say nothing of it): a start call's process is listed for its user within
#: ``RetryPolicy.reconcile_grace`` seconds of the call (read-after-write lag), and no process is made later
#: for a call whose client is gone. An item whose start call went unanswered is sent again only when its
#: own user lists no process past that time AND listings are seen to keep finished processes (a finished
#: process of the run is looked for in its user's listing); otherwise it is reported ``unknown``.
UNANSWERED_START_RULE = "reconcile_grace, then an empty listing that keeps finished processes"
#: How often items held by other workers are looked at again (seconds, at most).
WATCH_INTERVAL = 2.0
#: A start call follows its committed intent by at most this share of (lease - ``reconcile_grace``); an
#: intent written ahead (while its item waited for an upload slot) and older than that is written again,
#: fenced by the claim, right before the call. Why: another worker takes an item over only once its lease
#: lapses (at least ``lease`` after the intent), then lists the item's user; the call's process must be
#: listed by then, which the assumed rule above promises ``reconcile_grace`` after the call. With a lease
#: not longer than the grace, every intent is written right before its call.
INTENT_AHEAD_SHARE = 0.25
#: Claimed items not yet past their start call, at most (or 8 per upload slot, if more): the next half
#: window is claimed, and its intents written, while the last half is sent. A claim and an intent batch
#: take two ledger round trips per half window, on the way of the start calls when the half window is
#: sent sooner: measured with PostgreSQL on the bulk workload (4 upload slots), the 1,000 start calls
#: spread over 1.9-2.4 s at 32 against 1.0-1.3 s without a ledger, 1.6 s at 64, 1.5 s at 128. The price:
#: after a crash, up to this many items hold an intent whose call was never sent (reconciled, never
#: sent twice).
CLAIM_WINDOW = 64


class LedgerDriver(ItemCalls[T]):
    """Runs a :class:`~adcreative_async.BulkRun`'s items through a run ledger (see the module doc)."""

    def __init__(
        self,
        client: AdCreativeClient,
        ledger: RunLedger,
        inputs: Inputs[T] | Iterable[T],
        request_of: Callable[[T], RenderRequest],
        *,
        dest: str | None,
        name: Namer | None,
        limits: tuple[int, int, int],
        timeout: float | None,
        low_resolution: bool,
        on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None,
        lease: float,
        owner: str | None = None,
        max_renders: int | None = None,
    ) -> None:
        self._client = client
        self._budget = max_renders  # start calls left to send (None: no limit; see _spend)
        self._ledger = ledger
        self._inputs = (
            inputs if isinstance(inputs, Inputs) else Inputs(inputs)
        )  # read a chunk at a time, as the claim window and the item window free up
        self._request_of = request_of
        self._dest = dest
        self._name = name
        self._uploads, self._polls, self._downloads = (anyio.CapacityLimiter(n) for n in limits)
        # claimed items not yet past their start call, at most: their intents are written together, and
        # the next half window is claimed (and its intents written) while the last half is being sent
        self._window = max(CLAIM_WINDOW, 8 * limits[0])
        # items running at once, at most (started, awaited, downloaded, or with an outcome not yet taken
        # by the iteration): what bounds the run's memory, whatever the number of inputs
        self._max_busy = max(window_size(limits[0], limits[1]), self._window)
        self._timeout = timeout
        self._low_resolution = low_resolution
        self._on_update = on_update
        self._lease = lease
        # how long an intent written ahead may wait for its upload slot (see INTENT_AHEAD_SHARE)
        grace = client._transport.retry.reconcile_grace
        self._intent_ahead = max(0.0, lease - grace) * INTENT_AHEAD_SHARE
        self.owner = owner or new_worker_id()
        self._unsubmitted = 0
        self._room = Signal()
        self._emit: Emitter[T] = Emitter(client, name, dest)  # outcomes, and inputs of the same key
        self._watched: dict[str, _Item[T]] = {}
        # whether listings keep finished processes: what proves an unanswered start call made nothing
        self._probe = FinishedProbe(
            client, ledger, self._nothing_else_runs, lambda: self._change, self._changed
        )
        self._busy = 0  # items running (until their end is settled in the ledger)
        self._live = 0  # items running or with their outcome not yet taken by the outcomes' stream
        self._feeding = True
        self._change = Signal()
        self._finished_labels: set[str] | None = None
        self._deferred: list[_Item[T]] = []
        self._intended: dict[str, float] = {}  # items whose claim wrote their intent: since when (clock)
        self._holds: dict[str, _Hold] = {}  # this worker's claims (see _Hold)
        self._unsent: set[str] = set()  # items with an intent whose call has surely not been sent yet
        # the lease guard's margin, and how long past a lapse a takeover waits (see SEND_MARGIN)
        self._margin = min(SEND_MARGIN, lease * SEND_MARGIN_SHARE)
        self._takeover_grace = self._margin + grace
        self._refused: dict[int, InvalidRequestError] = {}  # items whose result could not be saved
        self._refuse_all: InvalidRequestError | None = None  # every item's (results named by task: dest)
        self._scope: anyio.CancelScope | None = None  # the items' task group's
        self._requeues: dict[str, Requeues] = {}  # running items' requeues after 429s (RATE_LIMIT_REQUEUES)
        #: The run-level error that stopped the run, if one did (see :meth:`drive`).
        self.aborted: RunAbortedError | None = None

    # ------------------------------------------------------------------------------------ driving

    async def drive(self, send: MemoryObjectSendStream[BulkOutcome[T]]) -> None:
        """Run every item; outcomes go to ``send`` as they finish (closed at the end).

        Raises:
            RunAbortedError: a run-level error stopped the run (also in :attr:`aborted`, set before
                ``send`` is closed); the items it did not finish were not reported.
        """
        async with send:
            try:
                await self._drive(send)
            except Exception as exc:  # the feeder's or the watcher's (the ledger's): never a group
                error = _run_level(exc)
                if error is None:
                    raise _single(exc) from None
                self._stop_run(error)
        if self.aborted is not None:
            raise self.aborted

    async def _drive(self, send: MemoryObjectSendStream[BulkOutcome[T]]) -> None:
        async with anyio.create_task_group() as outer:
            await self._check_names()
            outer.start_soon(self._renew_claims)
            counts = await self._ledger.counts()
            known = sum(counts.values())
            if 0 < known <= PRELOAD_LIMIT:  # a resume: what is done is looked at last
                self._finished_labels = await self._ledger.finished_labels()
            if counts[ItemState.DOWNLOADED]:  # for reconciling, before the finished are looked at
                example = await self._ledger.finished_example()
                if example is not None:
                    self._note_finished(example)
            try:
                async with anyio.create_task_group() as group:
                    self._scope = group.cancel_scope
                    size = FIRST_CHUNK
                    while True:
                        chunk = await self._entries(send, size)
                        if chunk is None:
                            break
                        resumed_only = await self._feed(group, send, chunk)
                        size = min(size * 2, MAX_CHUNK) if resumed_only else CHUNK
                    # inputs whose label had finished, looked at in chunks: the started items' writes
                    # pass between them
                    deferred, self._deferred = self._deferred, []
                    for start in range(0, len(deferred), MAX_CHUNK):
                        await self._feed(group, send, deferred[start : start + MAX_CHUNK])
                    self._feeding = False
                    self._changed()
                    await self._watch_others(group, send)
            finally:
                outer.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self._put_back_unsent()
                    try:
                        await self._ledger.release(self.owner)
                    except AdCreativeError as exc:  # the claims lapse by themselves
                        logger.warning("could not release this worker's claims: %s", exc)

    async def _check_names(self) -> None:
        """Every item's output name, checked before any start call (see
        :func:`~adcreative_async._naming.check_names`): the refused are reported unsent."""
        if self._dest is None:
            return
        if self._name is None:  # results named after their task: only dest is checked
            refused = await anyio.to_thread.run_sync(check_names, None, self._dest, [(0, None)])
            self._refuse_all = refused.get(0)
            return
        # every input's name is compared with the others' before any start call: a sequence is read for
        # it (and again by the run), other inputs are read and held until taken; a hash per name is kept
        inputs_again = self._inputs.rereadable()
        request_of = self._request_of

        def named() -> Iterator[tuple[int, object]]:
            for index, item in inputs_again():
                try:
                    yield index, request_of(item)
                except Exception:  # reported with the item (_entries)
                    continue

        self._refused = await anyio.to_thread.run_sync(check_names, self._name, self._dest, named(), named)

    async def _put_back_unsent(self) -> None:
        """Items whose intent is written but whose start call surely never went out (a stop, Ctrl-C,
        before their upload ended): back to ``pending``, so that the ledger says no render may exist."""
        unsent, self._unsent = self._unsent, set()

        async def put_back(key: str, epoch: int) -> None:
            try:
                await self._ledger.requeue(key, epoch=epoch)
            except AdCreativeError as exc:  # reconciled by whoever takes it next
                logger.warning("could not put item %s back: %s", key, exc)

        async with anyio.create_task_group() as group:  # together: one commit for all of them
            for key in unsent:
                hold = self._holds.get(key)
                if hold is not None:
                    group.start_soon(put_back, key, hold.epoch)

    async def _renew_claims(self) -> None:
        clock = self._client.clock
        while True:
            await clock.sleep(self._lease / 3)
            before = clock.monotonic()
            try:
                renewed = await self._ledger.renew(self.owner, self._lease)
            except AdCreativeError as exc:  # tried again at the next tick; fenced writes stay safe
                logger.warning("could not renew this worker's claims: %s", exc)
                continue
            for key in renewed:
                hold = self._holds.get(key)
                if hold is not None:
                    hold.deadline = max(hold.deadline, before + self._lease)

    async def _entries(
        self, send: MemoryObjectSendStream[BulkOutcome[T]], size: int
    ) -> list[_Item[T]] | None:
        """The next ``size`` inputs with their requests (a refused one's outcome is sent); None at the end
        of the inputs. On a resume, an input whose label only finished items have is set aside: looked
        at once the others are under way, so that the remaining work starts without waiting for a scan
        of the done."""
        taken = self._inputs.take(size)
        if not taken:
            return None
        chunk: list[_Item[T]] = []
        finished = self._finished_labels
        for index, item in taken:
            try:
                request = self._request_of(item)
                if not isinstance(request, RenderRequest):
                    raise InvalidRequestError.for_field(
                        "request", f"must give a RenderRequest, got {type(request).__name__}"
                    )
            except InvalidRequestError as exc:
                await send.send(BulkOutcome(index, item, error=exc))
                continue
            refused = self._refuse_all or self._refused.pop(index, None)
            if refused is not None:  # its result could not be saved: not sent
                await send.send(BulkOutcome(index, item, error=refused))
                continue
            entry = _Item(index, item, request, "")
            if finished and request.label in finished:
                self._deferred.append(entry)
            else:
                chunk.append(entry)
        return chunk

    async def _feed(
        self, group: anyio.abc.TaskGroup, send: MemoryObjectSendStream[BulkOutcome[T]], chunk: list[_Item[T]]
    ) -> bool:
        """Inputs with their requests: keys, registration, outcomes of the finished, claims of the others.
        True when every one had finished before."""
        if not chunk:
            return True
        requests = [entry.request for entry in chunk]
        digests = await request_digests(requests, self._ledger)
        ready: list[_Item[T]] = []
        for entry, digest in zip(chunk, digests, strict=True):
            if isinstance(digest, InvalidRequestError):
                await send.send(BulkOutcome(entry.index, entry.item, error=digest))
                continue
            entry.key, entry.hashes = digest
            key = entry.key
            if key in self._emit.followers or key in self._watched:  # the same input twice: one render
                self._emit.followers.setdefault(key, []).append(entry)
                continue
            self._emit.followers[key] = []
            ready.append(entry)
        if not ready:
            return False
        by_key = {e.key: e for e in ready}
        records = await self._ledger.records(list(by_key))
        new = [
            NewItem(e.key, e.index, e.request.label, e.request.feature) for e in ready if e.key not in records
        ]
        await self._ledger.register(new)
        open_keys = []
        for entry in ready:
            record = records.get(entry.key)
            if record is not None and record.final:
                self._note_finished(record)
                await self._emit.record(send, entry, record)
            else:
                open_keys.append(entry.key)
        if not open_keys:
            return True
        # Claimed a few at a time, as room frees up: what this worker cannot start soon stays free for
        # the others.
        while open_keys:
            if self._budget is not None and self._budget <= 0:  # max_renders sent: the rest stay pending
                for key in open_keys:
                    entry = by_key[key]
                    await self._emit.send(
                        send,
                        BulkOutcome(entry.index, entry.item, key=key, error=NotStartedError(NOT_STARTED)),
                    )
                return False
            # half a window at least per claim: one write per several items, not one per item; and no
            # more items running than the item window holds
            half = self._window // 2
            while self._unsubmitted > half or self._live > self._max_busy - half:
                await self._room.wait()
            room = min(self._window - self._unsubmitted, self._max_busy - self._live)
            batch, open_keys = open_keys[:room], open_keys[room:]
            claimed = await self._claim(batch, records)
            for record in claimed:
                self._start(group, send, by_key[record.key], record)
            taken = {r.key for r in claimed}
            for key in batch:
                if key not in taken:
                    self._watched[key] = by_key[key]
        return False

    async def _claim(self, keys: Sequence[str], known: Mapping[str, ItemRecord]) -> list[ItemRecord]:
        """Claim ``keys`` (``known``: their records as last read; a key without one is new). When intents
        may be written ahead, the claim writes those of the items pending at their known attempt (one
        write, not two, on the way of the start calls): they are noted in ``_intended``."""
        if not keys:
            return []
        claimed = await self._claim_once(keys, known)
        rest = sorted(set(keys) - {r.key for r in claimed})
        if rest:
            records = await self._ledger.records(rest)
            dead = {r.owner for r in records.values() if r.owner and dead_here(r.owner)}
            for owner in dead:  # a crashed process of this machine: its claims need not lapse first
                logger.info("taking over the claims of %s (its process is gone)", owner)
                await self._ledger.release(owner)
            if dead:
                claimed += await self._claim_once(rest, records)
        return claimed

    async def _claim_once(self, keys: Sequence[str], known: Mapping[str, ItemRecord]) -> list[ItemRecord]:
        await anyio.lowlevel.checkpoint_if_cancelled()  # a stopping worker claims nothing more
        clock = self._client.clock
        intents = {}
        if self._intent_ahead > 0:  # else every intent right before its call
            namespace = self._ledger.namespace
            for key in keys:
                record = known.get(key)
                if record is None or record.state is ItemState.PENDING:
                    attempt = record.attempt if record is not None else 0
                    intents[key] = (attempt, derived_user_id(namespace, key, attempt))
        started = clock.monotonic()  # the intents are at least this old; the leases end no earlier
        # shielded: what a claim wrote is known (its intents are put back if the worker stops)
        with anyio.CancelScope(shield=True):
            if intents:
                claimed, intended = await self._ledger.claim_and_intend(
                    keys, self.owner, self._lease, intents
                )
            else:
                claimed, intended = await self._ledger.claim(keys, self.owner, self._lease), set()
        returned = clock.monotonic()
        for record in claimed:
            self._holds[record.key] = _Hold(record.epoch, started + self._lease, returned)
        for key in intended:
            self._intended[key] = started
            self._unsent.add(key)
        return claimed

    def _start(
        self,
        group: anyio.abc.TaskGroup,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        entry: _Item[T],
        record: ItemRecord,
    ) -> None:
        # An item whose start call is next (pending, or its intent just written by the claim) holds room
        # in the claim window until the call is answered; an item to reconcile (submitting, unknown) or
        # to await (submitted) holds none: its waits never hold back the claims of the others (whose
        # renders may be what its reconciliation waits for).
        holds_room = record.state is ItemState.PENDING or record.key in self._intended
        if holds_room:
            self._unsubmitted += 1
        self._busy += 1
        self._live += 1
        group.start_soon(self._run_item, send, entry, record, holds_room)

    async def _watch_others(
        self, group: anyio.abc.TaskGroup, send: MemoryObjectSendStream[BulkOutcome[T]]
    ) -> None:
        """Items held by other workers: report them when they finish, take them over when their claim
        lapses."""
        while True:
            if not self._watched:
                if self._busy == 0:
                    return
                await self._change.wait()  # a running item may still lose its claim to another worker
                continue
            await self._client.clock.sleep(min(WATCH_INTERVAL, self._lease / 3))
            keys = list(self._watched)
            records = await self._ledger.records(keys)
            for key, record in records.items():
                if record.final:
                    self._note_finished(record)
                    await self._emit.record(send, self._watched.pop(key), record)
            claimed = await self._claim([k for k in keys if k in self._watched], records)
            for record in claimed:
                self._start(group, send, self._watched.pop(record.key), record)

    # ---------------------------------------------------------------------------------- outcomes

    def _note_finished(self, record: ItemRecord) -> None:
        if self._probe.note(record):
            self._changed()

    def _nothing_else_runs(self, probing: int) -> bool:
        """Whether nothing runs that could finish but the ``probing`` items waiting for the probe."""
        return not self._feeding and self._busy <= probing and not self._watched

    def _changed(self) -> None:
        self._change.fire()

    # ------------------------------------------------------------------------------------ one item

    async def _run_item(
        self,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        entry: _Item[T],
        record: ItemRecord,
        holds_room: bool,
    ) -> None:
        try:
            await self._run_one(send, entry, record, holds_room)
        finally:
            self._live -= 1  # its outcome is out: room for the next input
            self._free_room()

    async def _run_one(
        self,
        send: MemoryObjectSendStream[BulkOutcome[T]],
        entry: _Item[T],
        record: ItemRecord,
        holds_room: bool,
    ) -> None:
        outcome: BulkOutcome[T] = BulkOutcome(entry.index, entry.item, key=entry.key)
        exists = record.state is ItemState.SUBMITTED  # the render is known to exist (its process id)
        self._requeues[entry.key] = requeues_for(self._client)
        try:
            job = await self._job_for(entry, record)
            exists = True
            if holds_room:
                holds_room = False
                self._submitted_one()
            outcome.job = job
            await self._await_and_download(outcome, entry, job)
            await self._recorded(
                self._ledger.downloaded(
                    entry.key, [str(f) for f in outcome.files], epoch=self._epoch(entry.key)
                )
            )
            self._note_finished(
                ItemRecord(
                    key=entry.key,
                    seq=entry.index,
                    label="",
                    feature=job.feature,
                    state=ItemState.DOWNLOADED,
                    user_id=job.user_id,
                    process_id=job.process_id,
                )
            )
        except Exception as exc:  # one item's failure is its outcome, never the others'
            self._unsent.discard(entry.key)
            if exc not in outcome.errors:  # (the wait's and downloads' errors are recorded already)
                outcome._fail(exc)
            if isinstance(exc, InputChangedError):  # nothing made: its old key stays pending
                await self._requeue(entry)
            elif not isinstance(exc, (RenderMayExistError, _LostClaim)):
                await self._settle(entry, outcome, exists)
            if not isinstance(outcome.error, _LostClaim) and self.aborted is None:
                await self._let_go(entry)
        finally:
            if holds_room:
                self._submitted_one()
            if entry.key not in self._unsent:  # (an unsent intent is put back with its epoch)
                self._holds.pop(entry.key, None)
            self._requeues.pop(entry.key, None)
            self._busy -= 1
            self._changed()
        if isinstance(outcome.error, _LostClaim):
            self._watched[entry.key] = entry
            return
        if self.aborted is not None:  # the run stops: its items are not reported one by one
            return
        await self._emit.send(send, outcome)

    async def _settle(self, entry: _Item[T], outcome: BulkOutcome[T], exists: bool) -> None:
        """An item that ended with errors, by their kind (:func:`~adcreative_async._errors.error_kind`):
        a run-level one stops the run; an item-level one (the API's verdict on the input or the render)
        is recorded ``failed``; a transient one leaves the item as it is (``pending`` if no render was
        made, ``submitted`` if its render exists), for the next run."""
        run_level = first_of_kind(outcome.errors, ErrorKind.RUN, render_exists=exists)
        if run_level is not None:
            self._stop_run(run_level)
            return
        verdict = first_of_kind(outcome.errors, ErrorKind.ITEM, render_exists=exists)
        if verdict is None:
            logger.info("item %s left for the next run: %s", entry.key, outcome.error)
            return
        with anyio.CancelScope(shield=True):
            try:
                if not await self._ledger.failed(
                    entry.key, error_code(verdict), error_message(verdict), epoch=self._epoch(entry.key)
                ):  # the item passed to another worker: its outcome is that worker's
                    outcome.error = _LostClaim(entry.key)
            except AdCreativeError as ledger_error:
                logger.warning("could not record the failure of %s: %s", entry.key, ledger_error)

    def _stop_run(self, cause: BaseException) -> None:
        """A run-level error: the run stops (the first such error is the one raised)."""
        if self.aborted is None:
            self.aborted = cause if isinstance(cause, RunAbortedError) else RunAbortedError(cause)
            logger.error("%s", self.aborted)
        if self._scope is not None:
            self._scope.cancel()

    def _submitted_one(self) -> None:
        self._unsubmitted -= 1
        self._free_room()

    def _free_room(self) -> None:
        self._room.fire()

    async def _job_for(self, entry: _Item[T], record: ItemRecord) -> RenderJob:
        """The item's render: found again (submitted), reconciled (an intent without answer), or started."""
        resource = self._client.resource(record.feature)
        if record.state is ItemState.SUBMITTED and record.process_id and record.user_id:
            return resource.job(
                record.process_id, user_id=record.user_id, task_ids=record.task_ids
            )._poll_by_application()
        written = self._intended.pop(entry.key, None)
        if written is not None:  # the claim wrote the intent: no call was sent for it yet
            return await self._submit(entry, record, written)
        if record.state in (ItemState.SUBMITTING, ItemState.UNKNOWN) and record.user_id:
            job = await self._reconcile(entry, record)
            if job is not None:
                return job
        elif record.state is ItemState.UNKNOWN:  # (always recorded with its user): never sent blind
            raise RenderMayExistError(
                f"{record.error_code}: {record.error_message}", feature=record.feature, user_id=""
            )
        return await self._submit(entry, record)

    # --------------------------------------------------------------------------- wait and download

    async def _await_and_download(self, outcome: BulkOutcome[T], entry: _Item[T], job: RenderJob) -> None:
        """Await the render and download its results; the item's first error is raised (itself)."""
        download = None
        if self._dest is not None:
            download = functools.partial(self._download, outcome, entry, job)
        await follow(outcome, job, self._polls, self._timeout, self._on_update, download)
        if outcome.error is not None:
            raise outcome.error

    async def _download(
        self,
        outcome: BulkOutcome[T],
        entry: _Item[T],
        job: RenderJob,
        task_id: str,
        refused: list[tuple[str, NotFoundError]] | None,
    ) -> bool:
        assert self._dest is not None
        hold = self._holds.get(entry.key)
        if hold is not None and self._client.clock.monotonic() >= hold.deadline:
            # paused past its lease: another worker may be finishing it (this worker takes it up again
            # if nobody did); its writes would be refused anyway
            outcome._fail(_LostClaim(entry.key))
            return False
        return await download_task(
            outcome,
            job,
            task_id,
            self._dest,
            self._downloads,
            self._low_resolution,
            self._name,
            entry.request,
            refused,
            self._requeues.get(entry.key),
        )


def _run_level(error: Exception) -> Exception | None:
    """The run-level error (see :func:`~adcreative_async._errors.error_kind`) that ``error`` is, or the
    first of those its (nested) exception groups hold when every error in them is one (several task
    groups each met the ledger failing); else None."""
    inner = getattr(error, "exceptions", None)  # an ExceptionGroup (Python 3.10: the backport's)
    if isinstance(inner, tuple):
        found = [_run_level(e) if isinstance(e, Exception) else None for e in inner]
        return found[0] if found and all(found) else None
    return error if error_kind(error) is ErrorKind.RUN else None


def _single(error: Exception) -> Exception:
    """The one error inside (nested) exception groups of one error each; else ``error`` itself."""
    while True:
        inner = getattr(error, "exceptions", None)  # an ExceptionGroup (Python 3.10: the backport's)
        if not isinstance(inner, tuple) or len(inner) != 1 or not isinstance(inner[0], Exception):
            return error
        error = inner[0]
