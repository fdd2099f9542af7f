"""The poll scheduler's state: the processes it follows, the watches (waiters) following them, what
each (feature, user) poller knows, and the order in which it forgets.

Bookkeeping is ordered, never scanned: a poller finds its awaited processes through its blocked watches
(their targets), and forgets what nobody follows in the order it was let
go (:meth:`_UserPoller.prune` pops expired entries from the front of insertion-ordered maps). A finished
process nobody follows is kept :data:`FINISHED_LINGER` seconds, at most :data:`FINISHED_KEEP` of them per
poller (a waiter woken by its completion reads it from the cache; a late one costs one poll); an
unfinished one :data:`CACHE_LINGER` (an iterator detaches between its yields). Used by
:mod:`._polling`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import backoff

from ._clock import Clock
from ._config import PollPolicy
from ._errors import AdCreativeError
from ._models import Progress

if TYPE_CHECKING:
    from .resources._base import RenderResource

__all__ = [
    "APPLICATION_SCOPE",
    "CACHE_LINGER",
    "FINISHED_KEEP",
    "FINISHED_LINGER",
    "LISTED_PER_AWAITED",
    "LISTING_PACE_PER_ITEM",
    "LISTING_READS_FREE",
    "LISTING_READS_WINDOW",
    "Ident",
    "Snapshot",
    "Target",
    "UserKey",
    "Watch",
    "ident",
]

#: A process no longer awaited stays in the cache this long (an iterator detaches between yields); a
#: persistent watch left unblocked this long (an ``as_completed`` abandoned by ``break``) is detached.
CACHE_LINGER = 120.0
#: A finished process nobody follows any more stays in the cache this long: its waiters, woken by the
#: completion, read it from there (even on a busy event loop); a waiter coming later costs one poll.
FINISHED_LINGER = 10.0
#: ... and at most this many finished processes per poller (the oldest go first): a bulk run finishing
#: hundreds of renders a second keeps a bounded cache.
FINISHED_KEEP = 4096

#: A poll that read a listing of L processes is followed by a delay of at least L times this (seconds):
#: reading a listing costs the client about 1 µs per process even when few are awaited (its bytes read,
#: the ids decoded by :class:`~adcreative_async._listing.ListingReader` and each one looked up among the
#: followed processes: 1.0-1.2 ms per 1,000 listed over loopback, against 1.9-2.3 ms decoded in full), on
#: the event loop, so a huge listing is polled at most at the pace that keeps that work near 10 % of one core:
#: 100,000 processes at most every second, a million every 10 s (beyond ``max_interval``: detection
#: latency grows with the listing, deliberately).
LISTING_PACE_PER_ITEM = 10e-6
#: Once listing reads are not cheap in all (the scheduler reads more than :data:`LISTING_READS_FREE` listed
#: processes a second), a listing is read at most so often that each awaited process pays for at most this
#: many listed processes a second: after a listing of L processes with A of them awaited, the next poll
#: is sent at least L / (A * LISTED_PER_AWAITED) seconds after that one was (never more than
#: ``max_interval`` for this reason; counted from the sending, since a large listing takes long to come).
#: A listing holds every process its user (or application) ever ran, so it grows all through a bulk run
#: while each poll finds about as many finished renders: at a fixed pace the client's CPU per item grew
#: with the run's length (100,000 items over 10 users: x1.14 against 2,000, ``python -m benchmarks.scale``).
#: Paced by its yield, reading listings costs a bulk item (awaited 1-3 s) some 40-120 listed processes
#: (about 1 µs each), whatever the listing's size; detection latency grows instead, up to ``max_interval``.
LISTED_PER_AWAITED = 40.0
#: Listed processes a second (all listings together, averaged over :data:`LISTING_READS_WINDOW`) below
#: which no listing is paced by its yield: about 2 % of one core. A few waiters keep the policy's pace
#: (latency first) unless their listings are large, and small runs are never slowed.
LISTING_READS_FREE = 20_000.0
#: The time constant (seconds) of the scheduler's average of listed processes read a second.
LISTING_READS_WINDOW = 10.0


def _listing_floor(listed: int, policy: PollPolicy, awaited: int | None = None) -> float:
    """The least delay after a listing of ``listed`` processes (:data:`LISTING_PACE_PER_ITEM`), and, when
    ``awaited`` is given (listing reads are not cheap: see :class:`_ListingReads`), read for that many
    awaited processes (:data:`LISTED_PER_AWAITED`); 0 while it is below the policy's floor anyway."""
    floor = listed * LISTING_PACE_PER_ITEM
    if awaited is not None:
        floor = max(floor, min(policy.max_interval, listed / (max(1, awaited) * LISTED_PER_AWAITED)))
    return floor if floor > policy.min_interval else 0.0


class _ListingReads:
    """The scheduler's listed processes read a second (an exponential average over
    :data:`LISTING_READS_WINDOW`), and the pace of a listing it just read (:func:`_listing_floor`)."""

    __slots__ = ("_at", "rate")

    def __init__(self) -> None:
        self.rate = 0.0
        self._at: float | None = None

    def floor(self, listed: int, awaited: int, policy: PollPolicy, now: float) -> float:
        """Count a listing of ``listed`` processes read now for ``awaited`` ones; its least delay."""
        if self._at is not None:
            self.rate *= math.exp(-max(0.0, now - self._at) / LISTING_READS_WINDOW)
        self._at = now
        self.rate += listed / LISTING_READS_WINDOW
        return _listing_floor(listed, policy, awaited if self.rate > LISTING_READS_FREE else None)


UserKey = tuple[str, str]
"""(feature name, user id), the user id lower-cased in the scheduler's maps; or (feature name,
:data:`APPLICATION_SCOPE`)."""

#: The "user" of a poll key whose poller lists the whole application (``CheckApplicationAllProgresses``).
APPLICATION_SCOPE = "*"
Ident = tuple[UserKey, str]
"""(user key, lower-cased process id): one followed process."""


def ident(feature: str, user_id: str, process_id: str) -> Ident:
    """The scheduler's key of a process: GUIDs compared case-insensitively."""
    return ((feature, user_id.lower()), process_id.lower())


_versions = itertools.count(1)


@dataclass(frozen=True)
class Snapshot:
    """A process's progress as one poll (or push message) saw it, with the monotonic time that poll was
    sent (or the message arrived), and a version that grows with every snapshot stored: waiters take a
    snapshot when its version is newer than the last they took (times may tie on coarse clocks)."""

    progress: Progress
    sent_at: float
    version: int = field(default_factory=lambda: next(_versions))


@dataclass(frozen=True)
class Target:
    """One process a watch waits on.

    Attributes:
        key: (feature, user), the user as the caller spells it (requests use it).
        process_id: the process.
        not_before: snapshots from polls sent before this time are ignored (an edit's new cycle), and
            a fresher poll is asked for.
        submitted_at: when the start or edit call returned (grace for read-after-write lag starts
            there), or None for a job rebuilt from ids (grace starts when it is first awaited).
        progress: what the start or edit call answered: it seeds the cache, so that a push message
            can complete the job before any poll.
        user_id: the process's own user, where the key's is :data:`APPLICATION_SCOPE`.
    """

    key: UserKey
    process_id: str
    not_before: float = float("-inf")
    submitted_at: float | None = None
    progress: Progress | None = None
    user_id: str | None = None

    @property
    def ident(self) -> Ident:
        """The scheduler's key of this process."""
        return ident(self.key[0], self.key[1], self.process_id)


class Watch:
    """A waiter: some processes, and an event set when one of them changes or the wait must end.

    Args:
        targets: the processes.
        deadline: when the wait times out (client clock), or None.
        persistent: stay attached between waits (see the module docs); the owner calls
            :meth:`PollScheduler.detach` when done.
        downloads_after: its owner downloads every task of its processes once they finish (a bulk
            item): a process that leaves a listing known to omit finished processes is reported
            *vanished* to it instead of being asked for by id (see ``PollScheduler.vanished``).

    ``changed`` collects the processes that changed since its owner last emptied it (while attached).
    """

    __slots__ = (
        "_deadline_seq",
        "_pollers",
        "attached",
        "blocked",
        "changed",
        "deadline",
        "downloads_after",
        "error",
        "event",
        "expired",
        "persistent",
        "targets",
        "unblocked_at",
    )

    def __init__(
        self,
        targets: Iterable[Target],
        deadline: float | None = None,
        *,
        persistent: bool = False,
        downloads_after: bool = False,
    ) -> None:
        self.targets: dict[Ident, Target] = {t.ident: t for t in targets}
        self.deadline = deadline
        self.persistent = persistent
        self.downloads_after = downloads_after
        self.event = anyio.Event()
        self.expired = False
        self.attached = False
        self.blocked = False
        self.unblocked_at = float("-inf")
        self.changed: set[Ident] = set()
        self.error: AdCreativeError | None = None
        self._pollers: dict[UserKey, int] = {}  # targets per poller while attached
        self._deadline_seq: int | None = None

    def wake(self) -> None:
        """Wake the waiter (it re-reads the cache)."""
        self.event.set()


@dataclass(slots=True)
class _Interest:
    """What a poller knows of one followed process."""

    watches: set[Watch] = field(default_factory=set)
    first_awaited: float = 0.0
    submitted_at: float | None = None
    missing_since: float | None = None
    not_before: float = float("-inf")  # the latest cycle start (an edit) any waiter knows of
    awaited_before: bool = False
    user_id: str | None = None  # the process's own user (application-scope pollers ask by id under it)
    looked_up: float | None = None  # when it was first asked for by id in its cycle (missing from a listing)
    vanished: bool = False  # left a listing that omits finished processes; not asked for (see vanished())
    # The raw element a listing last held for it, and the snapshot it left cached (the element decoded
    # to that snapshot's progress): the same bytes against the same snapshot are nothing new, undecoded.
    listed_raw: tuple[bytes, Snapshot] | None = None

    @property
    def started(self) -> float:
        """When this process's current cycle was submitted (or first awaited, for a rebuilt job)."""
        return self.submitted_at if self.submitted_at is not None else self.first_awaited


@dataclass
class _UserPoller:
    """Polls one (feature, user): the cache, the interest in each process, the pacing state."""

    key: UserKey
    user: str  # as the caller spells it
    resource: RenderResource
    policy: PollPolicy
    watches: set[Watch] = field(default_factory=set)  # attached watches with a process here
    blocked: int = 0  # how many of them are blocked
    interest: dict[str, _Interest] = field(default_factory=dict)
    cache: dict[str, Snapshot] = field(default_factory=dict)
    gone: dict[str, AdCreativeError] = field(default_factory=dict)
    next_due: float = 0.0
    running: bool = False
    listed: int = 0
    ticks: int = 0
    filtered_mode: bool = False
    wake_scope: anyio.CancelScope | None = None
    delays: Generator[float, Any, None] | None = None
    last_error: AdCreativeError | None = None
    last_poll_at: float | None = None  # when the previous poll was sent (telemetry: detection latency)
    own_due: float = 0.0  # served by shared listings: when this user's own next poll would be due
    own_delay: float = 0.0  # ... and that poll's delay (its backoff advances at its own pace)
    last_push_at: float | None = None  # the last push message for a process held here
    shared_at: float | None = None  # the last sign that this key's messages also go to other processes
    hinted_at: float | None = None  # confirm_push: a message came; a poll sent after it is owed
    floor_due: float = 0.0  # no poll before this, whatever resets the pacing (a huge listing's pace)
    youngest: float | None = None  # the latest start among the awaited processes (see awaited())
    omissions: int = 0  # awaited processes missing from this key's listing and found finished by id
    # Processes nobody follows, in the order they were let go (pid -> when): see the module doc.
    lingering: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)

    def paced_from(self, sent_at: float, floor: float, now: float) -> float:
        """A listing sent at ``sent_at`` and read by ``now``, paced by ``floor`` (its least delay, see
        :func:`_listing_floor`): no poll before ``sent_at + floor`` (counted from the sending: a listing
        long in coming has spent that time already); returns what is left of it from ``now``."""
        self.floor_due = sent_at + floor
        return floor - (now - sent_at)

    def reset_pacing(self, now: float, first_delay: float) -> None:
        """Back to fast polls; poll within ``first_delay``."""
        self.delays = None
        due = max(now + first_delay, self.floor_due)
        if due < self.next_due:
            self.next_due = due
            if self.wake_scope is not None:
                self.wake_scope.cancel()

    def next_delay(self, now: float) -> float:
        """The next delay: backoff, capped by the youngest awaited render's age, jittered, floored."""
        policy = self.policy
        if self.delays is None:
            self.delays = backoff.expo(
                base=policy.factor, factor=policy.initial_interval, max_value=policy.max_interval
            )
            next(self.delays)  # prime the generator, as backoff's decorators do
        delay = next(self.delays)
        youngest = self.youngest
        if youngest is not None:
            delay = min(delay, max(policy.initial_interval, policy.age_fraction * (now - youngest)))
        if policy.jitter is not None:
            delay = policy.jitter(delay)
        return max(policy.min_interval, delay)

    def awaited(self) -> list[str]:
        """Process ids with a blocked waiter now (found through the blocked watches: O(awaited), not
        O(followed)); remembers the youngest one's start for :meth:`next_delay`."""
        key = self.key
        pids: dict[str, None] = {}
        for watch in self.watches:
            if watch.blocked:
                if len(watch._pollers) == 1:  # all its processes are this poller's (the common case)
                    for _, pid in watch.targets:  # mostly one target: no generator, no dict.fromkeys
                        pids[pid] = None
                else:
                    for k, pid in watch.targets:
                        if k == key:
                            pids[pid] = None
        interests = self.interest
        youngest: float | None = None
        for pid in pids:
            interest = interests.get(pid)
            if interest is not None:
                started = interest.started
                if youngest is None or started > youngest:
                    youngest = started
        self.youngest = youngest
        return list(pids)

    def followed(self) -> set[str]:
        """The processes attached watches follow now (blocked or not): the elements a listing keeps."""
        return {pid for pid, interest in self.interest.items() if interest.watches}

    def release(self, pid: str, now: float) -> None:
        """Nobody follows ``pid`` any more: forgotten later, in order (see the module doc)."""
        snapshot = self.cache.get(pid)
        interest = self.interest.get(pid)
        done = (
            pid in self.gone
            or (snapshot is not None and snapshot.progress.is_complete)
            or (interest is not None and interest.vanished)
        )
        self.lingering.pop(pid, None)
        self.finished.pop(pid, None)
        (self.finished if done else self.lingering)[pid] = now

    def presumable(self, pid: str) -> bool:
        """Whether ``pid``, missing from a listing known to omit finished processes, may be presumed
        finished (reported vanished) rather than asked for by id: every waiter downloads right after
        (``Watch.downloads_after``), and its last snapshot lists every one of its tasks (the waiter
        downloads them all to know)."""
        interest = self.interest.get(pid)
        if interest is None or not interest.watches:
            return False
        if not all(watch.downloads_after for watch in interest.watches):
            return False
        snapshot = self.cache.get(pid)
        if snapshot is None:
            return False
        progress = snapshot.progress
        return 0 < progress.total_task_count <= len(progress.tasks)

    def retain(self, pid: str) -> None:
        """``pid`` is followed again: not forgotten."""
        self.lingering.pop(pid, None)
        self.finished.pop(pid, None)

    def prune(self, now: float) -> None:
        """Forget the processes let go long enough ago (or too many finished ones): O(forgotten)."""
        for order, linger, keep in (
            (self.lingering, CACHE_LINGER, None),
            (self.finished, FINISHED_LINGER, FINISHED_KEEP),
        ):
            while order:
                pid = next(iter(order))
                if now - order[pid] <= linger and (keep is None or len(order) <= keep):
                    break
                del order[pid]
                interest = self.interest.get(pid)
                if interest is not None and interest.watches:
                    continue  # followed again (never here: retain() took it out)
                self.interest.pop(pid, None)
                self.cache.pop(pid, None)
                self.gone.pop(pid, None)

    def wake_changed(self, changed: Iterable[str]) -> None:
        """Tell the watches of the processes in ``changed`` (and only them)."""
        key = self.key
        for pid in changed:
            interest = self.interest.get(pid)
            if interest is None:
                continue
            for watch in interest.watches:
                watch.changed.add((key, pid))
                watch.wake()


class _TokenBucket:
    """A client-wide rate limit on the injectable clock."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock.monotonic()

    async def acquire(self) -> None:
        while True:
            now = self._clock.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await self._clock.sleep((1 - self._tokens) / self._rate)
