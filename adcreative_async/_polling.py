"""The client's one poll scheduler: coalesced progress polls for every job being awaited.

For each (feature, user) with at least one waiter, one :class:`_UserPoller` task (in the client's task
group) sends one unfiltered ``CheckUserProgress`` call per tick; that one answer serves every awaited
process of the user. With N jobs over U users, a tick costs at most U requests, not N.

Waiters never receive pushed data: every awaited process's latest snapshot sits in the poller's cache
with the time its poll was *sent*, and waiters are only woken (an :class:`anyio.Event` each, plus the
ids of the processes that changed), so fan-out never blocks the poll loop and a waiter's work per wake
is proportional to what changed.

A :class:`Watch` is *attached* (its processes are known to the pollers, each with the set of watches
following it) and *blocked* (its waiter sleeps in :meth:`PollScheduler.wait`). Only processes with a
blocked watch are polled, and only blocked watches count as waiters. A plain watch is attached only
while it is blocked: an iterator that is abandoned (``break``) or cancelled is already detached, with
nothing to clean up. A *persistent* watch (``as_completed``: thousands of jobs, one wake per
completion) stays attached between waits, so a wake costs O(changed), not O(jobs); its owner detaches
it when done or cancelled, and one abandoned by ``break`` no longer counts (it is not blocked) and is
detached after :data:`CACHE_LINGER`.

Pacing (see :class:`~adcreative_async.PollPolicy`): backoff from ``initial_interval`` by ``factor`` up to
``max_interval``, reset when an awaited process changes or a new one is awaited, never more than
``age_fraction`` of the youngest awaited render's age, jittered; ``Retry-After`` and 429 honoured; a
client-wide token bucket and concurrency limit on poll requests. While push messages arrive for a
(feature, user), its polls slow to ``push_reconcile_interval``; other keys keep their pace. Only a message
for a process this client holds (follows, or followed lately) counts: a message for another one means the
notification URL is shared (gunicorn workers or replicas behind one webhook URL, competing queue
consumers), so this client's own messages may land elsewhere too, and that (feature, user) keeps its
normal pace while such messages come (see :data:`OWN_PUSHES_REMEMBERED`); so does every key while the
hub's deliveries are known to be split among processes (``push(..., paces=False)``). Every sleep
and time reading goes through the client's clock. A failing poll (5xx, timeout, connection error) is
retried with backoff and never fails a waiter; a permanent error (401 after a token renewal, 403, a
validation 400) is handed to the waiters of that user. The scheduler never raises into the client's
task group.

Ids are GUIDs: every map here is keyed by lower-cased user and process ids (the server, the messages
and the caller may spell them differently); requests use the spelling the caller gave.

A poll's work is proportional to what is awaited, and its memory to what is followed: a listing is read
as a stream (:class:`~adcreative_async._listing.ListingReader`, fed by the transport as the body
arrives), the ids of every element decoded a piece of about 64 KiB at a time and dropped; only the
elements of the processes a watch follows are kept, and decoded in full (not again while an element
holds the bytes that left its cached snapshot: nothing new); a poller finds its awaited
processes through its blocked watches; what nobody follows is forgotten in the order it was let go,
finished processes soon (the state and its ordering: :mod:`._poll_state`; merging push messages and
partial task maps: :mod:`._progress_merge`). The scheduler's other parts, each a base class of
:class:`PollScheduler`: shared listings (:mod:`._poll_shared`), push messages and the pace they set
(:mod:`._poll_push`), awaited processes missing from a listing (:mod:`._poll_missing`).

A listing holds every process its user ever ran, so it grows all through a bulk run, while what a poll
finds (the renders finished since the last one) does not. Once listing reads are not cheap in all (more
than :data:`~adcreative_async._poll_state.LISTING_READS_FREE` listed processes a second, about 2 % of a
core), a listing is paced by its yield: each awaited process pays for at most
:data:`~adcreative_async._poll_state.LISTED_PER_AWAITED` listed processes a second (the delay after a
listing of L processes with A awaited is at least L / (A * 40) s, at most ``max_interval``), so the
client's CPU per item stays flat as the run goes on, and detection latency grows instead. Cheap listings
(a small run, a few waiters on a modest listing) keep the policy's pace.

A listing may leave finished processes out (the docs allow it; the emulator's ``--no-list-finished``):
then each finished process is asked for by id once (the listing never shows it finished), as per-item
work that the poll rate does not hold back (see :meth:`PollScheduler._look_for_missing`). Once such a
listing is known to omit finished processes (:data:`OMISSION_EVIDENCE`), a process whose every waiter
downloads its results right after (a bulk item: ``Watch.downloads_after``) is not asked for when it
leaves the listing: it is reported *vanished* (:meth:`PollScheduler.vanished`), and its waiter downloads
every task; a download that succeeds proves its task succeeded, and only a refused one makes it ask by
id (see :func:`adcreative_async._outcome.follow`). A plain waiter (``wait_until_complete()``) is never
told anything the API did not say: its process is asked for by id.

Shared listings (:attr:`~adcreative_async.PollPolicy.share_listings`): while several users of one feature
(whose application listing is documented) are awaited, one ``CheckApplicationAllProgresses`` answer
serves the ticks of all their pollers, when the application's listing costs at most
1/:data:`SHARED_MIN_SAVING` of their own listings together (in units of :data:`REQUEST_COST_IN_ITEMS`;
measured by the shared polls themselves, measured again after :data:`SHARED_RELIST_AFTER` seconds when
it did not qualify). A shared tick costs what the users' own polls would have cost: it comes as many
times as often as it is cheaper than they are (each user's delay divided by that ratio, floored at
``min_interval``; each user's backoff still advances at its own pace), and detection latency is divided
by the same ratio. Refused (a permanent error), it is not asked for again for that feature: its users
are polled separately.

Processes whose users each own a single render (the run ledger's derived user ids) are awaited under the
key (feature, :data:`APPLICATION_SCOPE`): one ``CheckApplicationAllProgresses`` call per tick answers all
of them, and a process asked for by id is asked for under its own user. It is polled
:data:`APPLICATION_SCOPE_SHARE` times as often as one listing's own pace.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import msgspec

from ._clock import Clock
from ._config import PollPolicy
from ._errors import (
    AdCreativeError,
    APIError,
    ClientNotOpenError,
    RateLimitError,
    UnexpectedResponseError,
    retry_after_seconds,
)
from ._listing import ProgressListing
from ._models import Progress
from ._poll_missing import OMISSION_EVIDENCE, MissingLookups
from ._poll_push import OWN_PUSHES_REMEMBERED, PushPacing
from ._poll_shared import (
    REQUEST_COST_IN_ITEMS,
    SHARED_MIN_SAVING,
    SHARED_RELIST_AFTER,
    SharedListings,
    _is_transient,
)
from ._poll_state import (
    APPLICATION_SCOPE,
    CACHE_LINGER,
    Ident,
    Snapshot,
    Target,
    UserKey,
    Watch,
    _Interest,
    _ListingReads,
    _TokenBucket,
    _UserPoller,
    ident,
)
from ._progress_merge import SILENT_PROGRESS_FIELDS, keep_known_tasks, merge_progress, with_task_state

if TYPE_CHECKING:
    from ._telemetry import Instruments
    from .resources._base import RenderResource

__all__ = [
    "APPLICATION_SCOPE",
    "APPLICATION_SCOPE_SHARE",
    "CACHE_LINGER",
    "OMISSION_EVIDENCE",
    "OWN_PUSHES_REMEMBERED",
    "REQUEST_COST_IN_ITEMS",
    "SHARED_MIN_SAVING",
    "SHARED_RELIST_AFTER",
    "SILENT_PROGRESS_FIELDS",
    "Ident",
    "PollScheduler",
    "Snapshot",
    "Target",
    "UserKey",
    "Watch",
    "ident",
    "merge_progress",
    "with_task_state",
]

logger = logging.getLogger("adcreative_async.polling")

#: At most this many filtered requests per tick for one user (beyond it, one listing is cheaper for
#: the server and for rate limits, whatever the listing's size).
MAX_FILTERED_PER_TICK = 4
#: In filtered mode, re-list unfiltered every this many ticks to re-measure the listing.
RELIST_EVERY = 20
#: The application-scope poller (the run ledger's waits: one derived user per process) comes this many
#: times as often as one listing at its own pace (its backoff advancing at that pace). The shared-listing
#: rule does not fit it: its users' own polls would be one request per process, so that rule polled at
#: ``min_interval`` in bulk (57 listings per 1,000 items in ``benchmarks.ledger``'s bulk workload, +25 %
#: client CPU, no wall time gained) and at one listing's pace at the end of a run, where a no-ledger run's
#: several users' pollers, due at different times, each bring a shared tick (the last results came about
#: 0.3 s later). Twice as often: 15 listings per 1,000 items, the last results as early as without a ledger.
APPLICATION_SCOPE_SHARE = 2.0
#: Idle pollers are swept every this many waits.
SWEEP_EVERY = 256
#: The deadline heap is compacted when its dead entries (finished waits) outnumber the live ones by
#: more than this many.
DEADLINE_SLACK = 64


class PollScheduler(SharedListings, PushPacing, MissingLookups):
    """The one scheduler of a client. Created by the client; use the job and resource APIs instead.

    Args:
        spawn: starts a task in the client's task group (raises ClientNotOpenError when closed).
        resource_for: the resource of a feature name.
        policy: pacing and limits.
        clock: the client's clock.
    """

    def __init__(
        self,
        *,
        spawn: Callable[..., None],
        resource_for: Callable[[str], RenderResource],
        policy: PollPolicy,
        clock: Clock,
        telemetry: Instruments | None = None,
    ) -> None:
        self._spawn = spawn
        self._telemetry = telemetry
        self._resource_for = resource_for
        self.policy = policy
        self._clock = clock
        self._pollers: dict[UserKey, _UserPoller] = {}
        self._bucket = _TokenBucket(policy.max_requests_per_second, policy.burst, clock)
        self._reads = _ListingReads()  # listed processes read a second: the yield pacing's switch
        self._limiter: anyio.CapacityLimiter | None = None
        self._deadlines: list[tuple[float, int, Watch]] = []
        self._deadline_seq = itertools.count()
        self._live_deadlines = 0
        self._deadline_running = False
        self._deadline_scope: anyio.CancelScope | None = None
        self._closed = False
        self._waits = 0
        self._blocked = 0
        #: Processes attached to watches, in all (each costs one registration): for tests of the work
        #: done per wake.
        self.attachments = 0
        #: Push messages received (they resolve waits without a poll).
        self.pushes = 0
        #: Push messages for processes this client does not hold (another worker's, another client's).
        self.foreign_pushes = 0
        self._own_pushed: OrderedDict[str, None] = OrderedDict()  # see OWN_PUSHES_REMEMBERED
        #: Poll requests sent (unfiltered and filtered), for observability and tests.
        self.requests = 0
        #: Shared application listings: the one in flight per feature (its end), the last size seen
        #: and when, and the features whose application listing was refused.
        self._shared_flight: dict[str, anyio.Event] = {}
        self._app_listed: dict[str, tuple[int, float]] = {}
        self._no_shared: set[str] = set()
        #: Persistent watches attached but not blocked, in the order they were let go (-> when).
        self._idle: dict[Watch, float] = {}

    # ----------------------------------------------------------------------------------- inspection

    @property
    def waiters(self) -> int:
        """Watches blocked now (a waiter counts only while it is blocked)."""
        return self._blocked

    @property
    def active_pollers(self) -> int:
        """Poller tasks running now (one per (feature, user) being awaited)."""
        return sum(1 for p in self._pollers.values() if p.running)

    def snapshot(self, key: UserKey, process_id: str) -> Snapshot | None:
        """The latest cached snapshot of a process, if any poll saw it."""
        poller = self._pollers.get((key[0], key[1].lower()))
        return poller.cache.get(process_id.lower()) if poller is not None else None

    def vanished(self, key: UserKey, process_id: str) -> bool:
        """Whether a process awaited only by waiters that download right after (``Watch.downloads_after``)
        left a listing known to omit finished processes (:data:`OMISSION_EVIDENCE`), and was not asked
        for by id: presumed finished, until a download or an answer says otherwise."""
        poller = self._pollers.get((key[0], key[1].lower()))
        interest = poller.interest.get(process_id.lower()) if poller is not None else None
        return interest is not None and interest.vanished

    def gone(self, key: UserKey, process_id: str) -> AdCreativeError | None:
        """The error recorded for a process the server no longer knows, if any."""
        poller = self._pollers.get((key[0], key[1].lower()))
        return poller.gone.get(process_id.lower()) if poller is not None else None

    # ------------------------------------------------------------------------------------ waiting

    async def wait(self, watch: Watch) -> None:
        """Block until ``watch`` is woken (a change of one of its processes, a permanent error, its
        deadline, or the client closing). A plain watch is attached only for the duration of the call;
        a persistent one stays attached, and returns at once while it has unread changes."""
        if self._closed:
            raise ClientNotOpenError(
                "the client was closed: waiting needs `async with AdCreativeClient(...)`"
            )
        if not watch.persistent:
            watch.changed.clear()
        if watch.event.is_set():
            watch.event = anyio.Event()
        if not watch.attached:
            self.attach(watch)
        if watch.persistent and watch.changed:
            return
        self._block(watch)
        try:
            await watch.event.wait()
        finally:
            self._unblock(watch)
            if not watch.persistent:
                self.detach(watch)
        if self._closed:
            raise ClientNotOpenError("the client was closed while waiting")

    def expect(self, target: Target) -> None:
        """A start or edit call just returned ``target``: remember its answer (and, for an edit, that a
        new cycle began), so that a push message arriving before anyone waits merges into it."""
        now = self._clock.monotonic()
        poller = self._poller(target)
        interest = self._interest(poller, target, now)
        self._seed(poller, interest, target, answered=True)
        pid = target.process_id.lower()
        if not interest.watches and pid not in poller.lingering and pid not in poller.finished:
            poller.release(pid, now)  # followed by nobody yet: forgotten later

    def move_expected(self, old: UserKey, target: Target) -> None:
        """A job expected under ``old`` (its start call's user) is awaited under ``target.key`` now (the
        application's listing): its seed moves there, and the user's poller, left with nothing, goes at
        once (a run ledger derives a user per item: no poller per item lingers)."""
        key = (old[0], old[1].lower())
        poller = self._pollers.get(key)
        if poller is not None and key != (target.key[0], target.key[1].lower()):
            pid = target.process_id.lower()
            interest = poller.interest.get(pid)
            if interest is None or not interest.watches:
                for held in (poller.interest, poller.cache, poller.gone, poller.lingering, poller.finished):
                    held.pop(pid, None)
            if not poller.interest and not poller.watches and not poller.running:
                del self._pollers[key]
        self.expect(target)

    def attach(self, watch: Watch) -> None:
        """Follow every process of ``watch`` (a persistent watch: report them all as changed once)."""
        now = self._clock.monotonic()
        self._waits += 1
        if self._waits % SWEEP_EVERY == 0:
            self._sweep(now)
        for key_pid, target in watch.targets.items():
            self._attach_target(watch, key_pid, target, now)
        watch.attached = True
        if watch.persistent:
            watch.changed.update(watch.targets)

    def detach(self, watch: Watch) -> None:
        """Stop following every process of ``watch`` (idempotent)."""
        if not watch.attached:
            return
        now = self._clock.monotonic()
        for key_pid in watch.targets:
            self._detach_target(watch, key_pid, now)
        watch.attached = False
        watch.changed.clear()
        self._idle.pop(watch, None)

    def drop_target(self, watch: Watch, key_pid: Ident) -> None:
        """Stop following one process of ``watch`` (a job of ``as_completed`` that finished): O(1)."""
        if watch.targets.pop(key_pid, None) is not None and watch.attached:
            self._detach_target(watch, key_pid, self._clock.monotonic())
        watch.changed.discard(key_pid)

    def _poller(self, target: Target) -> _UserPoller:
        key = (target.key[0], target.key[1].lower())
        poller = self._pollers.get(key)
        if poller is None:
            resource = self._resource_for(key[0])
            poller = self._pollers[key] = _UserPoller(key, target.key[1], resource, self.policy)
            poller.next_due = float("inf")  # set by the first process it follows
        return poller

    def _interest(self, poller: _UserPoller, target: Target, now: float) -> _Interest:
        pid = target.process_id.lower()
        interest = poller.interest.get(pid)
        if interest is None:
            interest = poller.interest[pid] = _Interest(
                first_awaited=now, submitted_at=target.submitted_at, user_id=target.user_id
            )
        elif target.submitted_at is not None and (
            interest.submitted_at is None or target.submitted_at > interest.submitted_at
        ):
            interest.submitted_at = target.submitted_at
        return interest

    def _seed(
        self, poller: _UserPoller, interest: _Interest, target: Target, *, answered: bool = False
    ) -> bool:
        """Record the cycle ``target`` knows of, and its start or edit answer; whether the cache held
        nothing of that cycle. ``answered``: the call just returned (:meth:`expect`): its answer is the
        newest word, whatever the clock says (a coarse or manual clock may give the previous cycle's
        data the same time)."""
        pid = target.process_id.lower()
        if target.not_before > interest.not_before:
            interest.not_before = target.not_before
            interest.looked_up = None  # a new cycle (an edit): it may leave the listing again
            interest.vanished = False
        cached = poller.cache.get(pid)
        stale = answered or cached is None or cached.sent_at < target.not_before
        if target.progress is not None and target.submitted_at is not None and stale:
            poller.cache[pid] = Snapshot(target.progress, target.submitted_at)
        return stale

    def _attach_target(self, watch: Watch, key_pid: Ident, target: Target, now: float) -> None:
        self.attachments += 1
        poller = self._poller(target)
        interest = self._interest(poller, target, now)
        if not interest.awaited_before:
            # A new job to follow is a change: fast polls again. A job known by a snapshot (its start
            # answer, or an earlier poll) is polled one interval after that snapshot: at once when it
            # is older (a job submitted long ago and awaited now), else one interval after its start
            # call; a rebuilt one is polled now.
            interest.awaited_before = True
            cached = poller.cache.get(key_pid[1])
            seen_at = cached.sent_at if cached is not None else target.submitted_at
            first = 0.0 if seen_at is None else seen_at + self.policy.initial_interval - now
            poller.reset_pacing(now, max(0.0, first))
        interest.watches.add(watch)
        poller.retain(key_pid[1])
        stale = self._seed(poller, interest, target)
        if target.not_before > float("-inf") and stale:
            poller.reset_pacing(now, self.policy.initial_interval)  # an edit's new cycle: look soon
        count = watch._pollers.get(poller.key, 0)
        if count == 0:
            poller.watches.add(watch)
            if watch.blocked:
                self._block_poller(poller)
        watch._pollers[poller.key] = count + 1

    def _detach_target(self, watch: Watch, key_pid: Ident, now: float) -> None:
        key, pid = key_pid
        poller = self._pollers.get(key)
        if poller is None:
            return
        interest = poller.interest.get(pid)
        if interest is not None and watch in interest.watches:
            interest.watches.discard(watch)
            if not interest.watches:
                poller.release(pid, now)
        count = watch._pollers.get(key, 0) - 1
        if count > 0:
            watch._pollers[key] = count
            return
        watch._pollers.pop(key, None)
        poller.watches.discard(watch)
        if watch.blocked:
            self._unblock_poller(poller)

    def _block(self, watch: Watch) -> None:
        watch.blocked = True
        self._blocked += 1
        self._idle.pop(watch, None)
        for key in watch._pollers:
            self._block_poller(self._pollers[key])
        if watch.deadline is not None:
            seq = next(self._deadline_seq)
            watch._deadline_seq = seq
            entry = (watch.deadline, seq, watch)
            heapq.heappush(self._deadlines, entry)
            self._live_deadlines += 1
            if not self._deadline_running:
                self._deadline_running = True
                self._spawn(self._run_deadlines)
            elif self._deadline_scope is not None and self._deadlines[0] is entry:
                self._deadline_scope.cancel()  # an earlier deadline than the one being slept on

    def _unblock(self, watch: Watch) -> None:
        watch.blocked = False
        watch.unblocked_at = self._clock.monotonic()
        self._blocked -= 1
        if watch.persistent and watch.attached:
            self._idle[watch] = watch.unblocked_at  # detached if it stays idle (see _prune)
        for key in watch._pollers:
            poller = self._pollers.get(key)
            if poller is not None:
                self._unblock_poller(poller)
        self._drop_deadline(watch)

    def _block_poller(self, poller: _UserPoller) -> None:
        poller.blocked += 1
        if not poller.running:
            poller.running = True
            self._spawn(self._run_poller, poller)

    def _unblock_poller(self, poller: _UserPoller) -> None:
        poller.blocked -= 1
        # Nobody waits on this user any more: end its task now if it sleeps, or right after its
        # in-flight poll (not aborted: a waiter coming back between two iterations would only make
        # it poll again). Its cache and pacing stay.
        if poller.blocked <= 0:
            poller.blocked = 0
            if poller.wake_scope is not None:
                poller.wake_scope.cancel()

    def _drop_deadline(self, watch: Watch) -> None:
        """The watch's deadline entry is dead; compact the heap when dead entries dominate."""
        if watch._deadline_seq is None:
            return
        watch._deadline_seq = None
        self._live_deadlines -= 1
        if self._live_deadlines == 0:
            self._deadlines.clear()
            if self._deadline_scope is not None:
                self._deadline_scope.cancel()  # nothing to time out: let the deadline task end
        elif len(self._deadlines) - self._live_deadlines > self._live_deadlines + DEADLINE_SLACK:
            self._deadlines = [e for e in self._deadlines if e[2]._deadline_seq == e[1]]
            heapq.heapify(self._deadlines)
            if self._deadline_scope is not None:
                self._deadline_scope.cancel()  # re-read the earliest deadline

    # ------------------------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """The client is closing: wake every waiter (they raise ClientNotOpenError)."""
        self._closed = True
        for poller in self._pollers.values():
            for watch in list(poller.watches):
                watch.wake()

    async def _run_deadlines(self) -> None:
        try:
            while self._deadlines:
                deadline, seq, watch = self._deadlines[0]
                if watch._deadline_seq != seq:
                    heapq.heappop(self._deadlines)  # that wait is over
                    continue
                delay = deadline - self._clock.monotonic()
                if delay > 0:
                    with anyio.CancelScope() as scope:
                        self._deadline_scope = scope
                        await self._clock.sleep(delay)
                    self._deadline_scope = None
                    continue
                heapq.heappop(self._deadlines)
                watch._deadline_seq = None
                self._live_deadlines -= 1
                watch.expired = True
                watch.wake()
        except Exception:  # pragma: no cover - never raise into the client's task group
            logger.exception("deadline loop failed")
        finally:
            self._deadline_running = False
            self._deadline_scope = None

    # ------------------------------------------------------------------------------------- polling

    async def _run_poller(self, poller: _UserPoller) -> None:
        try:
            while True:
                self._prune(poller)
                if not poller.blocked:
                    return
                delay = poller.next_due - self._clock.monotonic()
                if delay > 0:
                    with anyio.CancelScope() as scope:
                        poller.wake_scope = scope
                        await self._clock.sleep(delay)
                    poller.wake_scope = None
                    continue
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(self.policy.max_concurrent_polls)
                await self._poll_once(poller)
        except Exception as exc:  # never raise into the client's task group: hand it to the waiters
            logger.exception("poller for %s failed", poller.key[0])
            error = exc if isinstance(exc, AdCreativeError) else AdCreativeError(f"poller failed: {exc!r}")
            for watch in list(poller.watches):
                watch.error = error
                watch.wake()
        finally:
            poller.running = False
            poller.wake_scope = None
            # Keep the poller (and its cache) while recently awaited processes may come back between
            # an iterator's yields; the sweep drops it later.
            if not poller.watches and not poller.interest:
                self._pollers.pop(poller.key, None)

    def _prune(self, poller: _UserPoller, now: float | None = None) -> None:
        """Detach persistent watches abandoned for CACHE_LINGER seconds; forget the processes nobody
        follows, in the order they were let go (O(what is forgotten), never a scan)."""
        now = self._clock.monotonic() if now is None else now
        idle = self._idle
        while idle:
            watch = next(iter(idle))
            if now - idle[watch] <= CACHE_LINGER:
                break
            del idle[watch]
            self.detach(watch)
        poller.prune(now)

    def _sweep(self, now: float) -> None:
        """Drop idle pollers whose processes are all forgotten (bounded memory over many users)."""
        for key, poller in list(self._pollers.items()):
            if not poller.running and not poller.blocked:
                self._prune(poller, now)
                if not poller.interest and not poller.watches:
                    del self._pollers[key]

    async def _poll_once(self, poller: _UserPoller) -> None:
        if await self._poll_shared(poller):
            return
        user = poller.user
        awaited = poller.awaited()
        filtered = self._use_filtered(poller, len(awaited))
        sent_at = self._clock.monotonic()
        listing = ProgressListing.of([])
        error: AdCreativeError | None = None
        assert self._limiter is not None
        async with self._limiter:
            try:
                if filtered:
                    items: list[Progress] = []
                    for pid in awaited:
                        await self._bucket.acquire()
                        self._count_request(poller)
                        items.extend(await poller.resource.user_progress(self._owner(poller, pid), pid))
                    listing = ProgressListing.of(items)
                else:
                    await self._bucket.acquire()
                    self._count_request(poller)
                    # the elements of the processes followed now are kept (the rest is counted and
                    # dropped as it is read; one followed later is read in the next poll)
                    listing = await poller.resource._listing(
                        None if user == APPLICATION_SCOPE else user, poller.followed()
                    )
            except AdCreativeError as exc:
                error = exc
        poller.ticks += 1
        if error is not None:
            self._after_error(poller, error)
            return
        poller.last_error = None
        if not filtered:
            poller.listed = len(listing)
        changed, now = await self._take_answer(poller, listing, awaited, sent_at, asked_by_id=filtered)
        if user == APPLICATION_SCOPE:
            # one poll standing in for as many users' polls (one process each, by this key's definition),
            # whether it lists the application or asks for its last few processes by id
            delay = self._shared_delay(poller, changed, now, APPLICATION_SCOPE_SHARE)
        else:
            delay = poller.next_delay(now)
        if not filtered:  # a large listing: polled more slowly, even when something new is awaited
            floor = self._reads.floor(len(listing), len(awaited), self.policy, now)
            delay = max(delay, poller.paced_from(sent_at, floor, now))
        poller.next_due = now + self._paced(poller, delay, now)
        poller.wake_changed(changed)  # only the waiters of a process that changed have anything to read

    def _count_request(self, poller: _UserPoller) -> None:
        self.requests += 1
        if self._telemetry is not None:
            self._telemetry.polled(poller.key[0])

    async def _take_answer(
        self,
        poller: _UserPoller,
        listing: ProgressListing,
        awaited: list[str],
        sent_at: float,
        *,
        asked_by_id: bool,
        indices: Iterable[int] | None = None,
    ) -> tuple[set[str], float]:
        """One poll's answer for ``poller`` (the elements ``indices`` of ``listing``, or all of it):
        cached, its missing awaited processes looked for, fast polls again after a change. Returns the
        processes that changed, and the time after."""
        try:
            changed, seen = self._store_listing(poller, listing, sent_at, indices)
        except msgspec.DecodeError as exc:
            self._after_error(poller, _malformed(poller, exc))
            return set(), self._clock.monotonic()
        missing = [pid for pid in awaited if pid not in seen]
        if missing:
            changed |= await self._look_for_missing(poller, missing, sent_at, asked_by_id=asked_by_id)
        now = self._clock.monotonic()
        if changed and self._telemetry is not None:
            self._detected(poller, changed, now)
        poller.last_poll_at = sent_at
        if changed:
            poller.delays = None
        return changed, now

    def _store_listing(
        self,
        poller: _UserPoller,
        listing: ProgressListing,
        sent_at: float,
        indices: Iterable[int] | None,
    ) -> tuple[set[str], set[str]]:
        """Cache the processes of a listing that watches follow, decoding only theirs (the listing kept
        only the elements of followed processes: see :meth:`_poll_once`); returns the ids that changed,
        and the followed ids the listing holds.

        Raises:
            msgspec.DecodeError: a followed process's element is malformed.
        """
        interests = poller.interest
        cache = poller.cache
        ids = listing.ids
        followed: list[int] = []
        seen: set[str] = set()
        for index in range(len(ids)) if indices is None else indices:
            pid = ids[index].image_render_process_id.lower()
            interest = interests.get(pid)
            if interest is not None and interest.watches:  # followed now (one let go: read when asked again)
                seen.add(pid)
                memo = interest.listed_raw
                if memo is not None and memo[0] == listing.raw(index):
                    old = cache.get(pid)
                    if old is memo[1] and old.sent_at >= interest.not_before:
                        # the element that left this very snapshot, again: :meth:`_store` would decode
                        # it to the cached progress and keep it (or drop it as late): nothing new
                        interest.missing_since = None
                        interest.vanished = False
                        continue
                followed.append(index)
        decoded: list[tuple[bytes, Progress]] = []

        def items() -> Iterator[Progress]:
            for index in followed:
                progress = listing.progress(index)
                raw = listing.raw(index)
                if raw is not None:
                    decoded.append((raw, progress))
                yield progress

        changed = self._store(poller, items(), sent_at)
        for raw, progress in decoded:  # remember the bytes that leave a snapshot as it is cached
            pid = progress.image_render_process_id.lower()
            interest = interests.get(pid)
            snapshot = cache.get(pid)
            if interest is not None and snapshot is not None and snapshot.progress == progress:
                interest.listed_raw = (raw, snapshot)
        return changed, seen

    def _store(self, poller: _UserPoller, items: Iterable[Progress], sent_at: float) -> set[str]:
        """Cache the followed (or recently followed) processes; the ids of those that changed.

        An unchanged process keeps its snapshot (and version): its waiters are not woken for nothing.
        """
        changed: set[str] = set()
        interests = poller.interest
        cache = poller.cache
        for progress in items:
            pid = progress.image_render_process_id.lower()
            interest = interests.get(pid)
            if interest is None:
                continue  # not followed: not cached (the listing may be large)
            interest.missing_since = None
            interest.vanished = False  # the API's word again
            old = cache.get(pid)
            if old is not None:
                if old.sent_at > sent_at:
                    continue  # an older answer arriving late
                if old.progress == progress and old.sent_at >= interest.not_before:
                    continue  # the same answer again (most of a listing, most of the time): nothing new
                if self._stale(interest, old, progress):
                    continue  # behind what a push already told (server lag): never report going back
                progress = keep_known_tasks(old, progress, interest.not_before)
                if old.progress == progress and old.sent_at >= interest.not_before:
                    continue  # nothing new (after an edit, the same progress is news: the new cycle's)
            cache[pid] = Snapshot(progress, sent_at)
            if interest.watches:
                changed.add(pid)
        return changed

    def _detected(self, poller: _UserPoller, changed: set[str], now: float) -> None:
        """Telemetry: for each awaited process this poll saw finish, how late at most (since the previous
        poll of its user, or since it was first awaited if later)."""
        assert self._telemetry is not None
        for pid in changed:
            snapshot = poller.cache.get(pid)
            interest = poller.interest.get(pid)
            if snapshot is None or interest is None or not snapshot.progress.is_complete:
                continue
            since = max(poller.last_poll_at or float("-inf"), interest.submitted_at or interest.first_awaited)
            self._telemetry.detected(poller.key[0], now - since, pid)

    def _use_filtered(self, poller: _UserPoller, awaited: int) -> bool:
        if awaited == 0 or awaited > MAX_FILTERED_PER_TICK or poller.listed == 0:
            poller.filtered_mode = False
            return False
        if poller.filtered_mode and poller.ticks % RELIST_EVERY == 0:
            return False  # re-measure the listing now and then
        poller.filtered_mode = (awaited - 1) * REQUEST_COST_IN_ITEMS < poller.listed - awaited
        return poller.filtered_mode

    @staticmethod
    def _owner(poller: _UserPoller, process_id: str) -> str:
        """The user to ask for a process by id: the poller's, or the process's own in application scope."""
        if poller.key[1] == APPLICATION_SCOPE:
            interest = poller.interest.get(process_id)
            if interest is not None and interest.user_id:
                return interest.user_id
        return poller.user

    def _after_error(self, poller: _UserPoller, error: AdCreativeError) -> None:
        now = self._clock.monotonic()
        poller.last_error = error
        delay = self._paced(poller, poller.next_delay(now), now)
        if _is_transient(error):
            retry_after = _retry_after(error)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.max_retry_after))
            logger.info(
                "poll for %s failed (%s); retrying in %.2fs", poller.key[0], type(error).__name__, delay
            )
        else:
            logger.warning("poll for %s failed permanently: %s", poller.key[0], error)
            for watch in list(poller.watches):
                watch.error = error
                watch.wake()
        poller.next_due = now + delay


def _retry_after(error: AdCreativeError) -> float | None:
    if isinstance(error, RateLimitError):
        return error.retry_after
    if isinstance(error, APIError):
        return retry_after_seconds(error.headers)
    return None


def _malformed(poller: _UserPoller, error: msgspec.DecodeError) -> AdCreativeError:
    """A followed process's element of a listing did not decode: a transient poll failure."""
    return UnexpectedResponseError(
        f"a progress listing of {poller.key[0]} holds a malformed progress object ({error})", status=200
    )
