"""The client's one poll scheduler: coalesced progress polls for every job being awaited.

For each (feature, user) with at least one waiter, one :class:`_UserPoller` task (in the client's task
group) sends one unfiltered ``CheckUserProgress`` call per tick; that one answer serves every awaited
process of the user. With N jobs over U users, a tick costs at most U requests, not N.

Waiters never receive pushed data: every awaited process's latest snapshot sits in the poller's cache
with the time its poll was *sent*, and waiters are only woken (an :class:`anyio.Event` each), so fan-out
never blocks the poll loop. A waiter is registered only while it is blocked: an iterator that is
abandoned (``break``) or cancelled is already deregistered, with nothing to clean up.

Pacing (see :class:`~adcreative_async.PollPolicy`): fast first polls, then exponential backoff with
full jitter up to a cap, reset when an awaited process changes or a new one is awaited; ``Retry-After``
and 429 honoured; a client-wide token bucket and concurrency limit on poll requests. Every sleep and
time reading goes through the client's clock. A failing poll (5xx, timeout, connection error) is
retried with backoff and never fails a waiter; a permanent error (401 after a token renewal, 403, a
validation 400) is handed to the waiters of that user. The scheduler never raises into the client's
task group.

When a user's listing is large while few of its processes are awaited, the poller asks for each awaited
process by id instead (see :data:`REQUEST_COST_IN_ITEMS`).

Processes whose users each own a single render (the run ledger's derived user ids) are awaited under the
key (feature, :data:`APPLICATION_SCOPE`): one ``CheckApplicationAllProgresses`` call per tick answers all
of them, and a process asked for by id is asked for under its own user.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import backoff
import msgspec

from ._clock import Clock
from ._config import PollPolicy
from ._errors import (
    AdCreativeError,
    APIConnectionError,
    APIError,
    ClientNotOpenError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
    retry_after_seconds,
)
from ._models import TERMINAL_STATES, Progress
from .notifications._messages import ProgressNotification, TaskCompletedNotification

if TYPE_CHECKING:
    from .resources._base import RenderResource

__all__ = ["APPLICATION_SCOPE", "REQUEST_COST_IN_ITEMS", "PollScheduler", "Snapshot", "Watch"]

logger = logging.getLogger("adcreative_async.polling")

#: Client CPU of one progress request, in units of "one more process in a listing" (its bytes read and
#: decoded). Measured by ``python -m benchmarks.polling`` (its "filtered-polling rule" line): a filtered
#: request per awaited process beats one unfiltered listing when
#: ``(awaited - 1) * REQUEST_COST_IN_ITEMS < listed - awaited``.
REQUEST_COST_IN_ITEMS = 140
#: At most this many filtered requests per tick for one user (beyond it, one listing is cheaper for
#: the server and for rate limits, whatever the listing's size).
MAX_FILTERED_PER_TICK = 4
#: In filtered mode, re-list unfiltered every this many ticks to re-measure the listing.
RELIST_EVERY = 20
#: A process no longer awaited stays in the cache this long (an iterator deregisters between yields).
CACHE_LINGER = 120.0
#: Idle pollers are swept every this many registrations.
SWEEP_EVERY = 256

UserKey = tuple[str, str]
"""(feature name, user id), or (feature name, :data:`APPLICATION_SCOPE`)."""

#: The "user" of a poll key whose poller lists the whole application (``CheckApplicationAllProgresses``).
APPLICATION_SCOPE = "*"


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
        key: (feature, user).
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


class Watch:
    """A waiter: some processes, and an event set when their user's data changes or the wait must end."""

    __slots__ = ("deadline", "error", "event", "expired", "generation", "registered", "targets")

    def __init__(self, targets: Iterable[Target], deadline: float | None = None) -> None:
        self.targets = tuple(targets)
        self.deadline = deadline
        self.event = anyio.Event()
        self.expired = False
        self.registered = False
        self.generation = 0
        self.error: AdCreativeError | None = None

    def retarget(self, targets: Iterable[Target]) -> None:
        """Wait on other processes from now on (e.g. the jobs still running in ``as_completed``)."""
        self.targets = tuple(targets)

    def wake(self) -> None:
        """Wake the waiter (it re-reads the cache)."""
        self.event.set()


@dataclass
class _Interest:
    """What a poller knows of one awaited process."""

    waiters: int = 0
    first_awaited: float = 0.0
    submitted_at: float | None = None
    released_at: float | None = None
    missing_since: float | None = None
    not_before: float = float("-inf")  # the latest cycle start (an edit) any waiter knows of
    user_id: str | None = None  # the process's own user (application-scope pollers ask by id under it)


@dataclass
class _UserPoller:
    """Polls one (feature, user): the cache, the interest in each process, the pacing state."""

    key: UserKey
    resource: RenderResource
    policy: PollPolicy
    watches: set[Watch] = field(default_factory=set)
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

    def reset_pacing(self, now: float, first_delay: float) -> None:
        """Back to fast polls; poll within ``first_delay``."""
        self.delays = None
        due = now + first_delay
        if due < self.next_due:
            self.next_due = due
            if self.wake_scope is not None:
                self.wake_scope.cancel()

    def next_delay(self) -> float:
        """The next backoff delay (jittered, floored)."""
        policy = self.policy
        if self.delays is None:
            self.delays = backoff.expo(
                base=policy.factor, factor=policy.initial_interval, max_value=policy.max_interval
            )
            next(self.delays)  # prime the generator, as backoff's decorators do
        delay = next(self.delays)
        if policy.jitter is not None:
            delay = policy.jitter(delay)
        return max(policy.min_interval, delay)

    @property
    def awaited(self) -> list[str]:
        """Process ids with at least one waiter now."""
        return [pid for pid, i in self.interest.items() if i.waiters > 0]


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


class PollScheduler:
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
    ) -> None:
        self._spawn = spawn
        self._resource_for = resource_for
        self.policy = policy
        self._clock = clock
        self._pollers: dict[UserKey, _UserPoller] = {}
        self._bucket = _TokenBucket(policy.max_requests_per_second, policy.burst, clock)
        self._limiter: anyio.CapacityLimiter | None = None
        self._deadlines: list[tuple[float, int, int, Watch]] = []
        self._deadline_seq = itertools.count()
        self._live_deadlines = 0
        self._deadline_running = False
        self._deadline_scope: anyio.CancelScope | None = None
        self._closed = False
        self._registrations = 0
        self.last_push_at: float | None = None
        #: Push messages received (they resolve waits without a poll).
        self.pushes = 0
        #: Poll requests sent (unfiltered and filtered), for observability and tests.
        self.requests = 0

    # ----------------------------------------------------------------------------------- inspection

    @property
    def waiters(self) -> int:
        """Watches registered now (a waiter is registered only while it is blocked)."""
        return len({w for p in self._pollers.values() for w in p.watches})

    @property
    def active_pollers(self) -> int:
        """Poller tasks running now (one per (feature, user) being awaited)."""
        return sum(1 for p in self._pollers.values() if p.running)

    def snapshot(self, key: UserKey, process_id: str) -> Snapshot | None:
        """The latest cached snapshot of a process, if any poll saw it."""
        poller = self._pollers.get(key)
        return poller.cache.get(process_id) if poller is not None else None

    def gone(self, key: UserKey, process_id: str) -> AdCreativeError | None:
        """The error recorded for a process the server no longer knows, if any."""
        poller = self._pollers.get(key)
        return poller.gone.get(process_id) if poller is not None else None

    # ------------------------------------------------------------------------------------ waiting

    async def wait(self, watch: Watch) -> None:
        """Block until ``watch`` is woken (new data for its users, a permanent error, its deadline,
        or the client closing). Registered only for the duration of the call."""
        if self._closed:
            raise ClientNotOpenError(
                "the client was closed: waiting needs `async with AdCreativeClient(...)`"
            )
        if watch.event.is_set():
            watch.event = anyio.Event()
        self._register(watch)
        try:
            await watch.event.wait()
        finally:
            self._deregister(watch)
        if self._closed:
            raise ClientNotOpenError("the client was closed while waiting")

    def _register(self, watch: Watch) -> None:
        now = self._clock.monotonic()
        self._registrations += 1
        if self._registrations % SWEEP_EVERY == 0:
            self._sweep(now)
        for target in watch.targets:
            poller = self._pollers.get(target.key)
            if poller is None:
                resource = self._resource_for(target.key[0])
                poller = self._pollers[target.key] = _UserPoller(target.key, resource, self.policy)
                poller.next_due = float("inf")  # set by the first process it follows, just below
            poller.watches.add(watch)
            interest = poller.interest.get(target.process_id)
            if interest is None:
                interest = poller.interest[target.process_id] = _Interest(
                    first_awaited=now, submitted_at=target.submitted_at, user_id=target.user_id
                )
                # A new job to follow is a change: fast polls again. A job that came with its
                # progress (just submitted) waits one short interval; a rebuilt one is polled now.
                cached = poller.cache.get(target.process_id)
                fresh = cached is None and target.submitted_at is None
                poller.reset_pacing(now, 0.0 if fresh else self.policy.initial_interval)
            elif target.submitted_at is not None and (
                interest.submitted_at is None or target.submitted_at > interest.submitted_at
            ):
                interest.submitted_at = target.submitted_at
            interest.waiters += 1
            interest.released_at = None
            interest.not_before = max(interest.not_before, target.not_before)
            cached = poller.cache.get(target.process_id)
            stale = cached is None or cached.sent_at < target.not_before
            if target.not_before > float("-inf") and stale:
                poller.reset_pacing(now, self.policy.initial_interval)  # an edit's new cycle: look soon
            if target.progress is not None and target.submitted_at is not None and stale:
                poller.cache[target.process_id] = Snapshot(target.progress, target.submitted_at)
            if not poller.running:
                poller.running = True
                self._spawn(self._run_poller, poller)
        watch.registered = True
        watch.generation += 1
        if watch.deadline is not None:
            entry = (watch.deadline, next(self._deadline_seq), watch.generation, watch)
            heapq.heappush(self._deadlines, entry)
            self._live_deadlines += 1
            if not self._deadline_running:
                self._deadline_running = True
                self._spawn(self._run_deadlines)
            elif self._deadline_scope is not None and self._deadlines[0] is entry:
                self._deadline_scope.cancel()  # an earlier deadline than the one being slept on

    def _deregister(self, watch: Watch) -> None:
        now = self._clock.monotonic()
        watch.registered = False
        if watch.deadline is not None:
            self._live_deadlines -= 1
            if self._live_deadlines == 0 and self._deadline_scope is not None:
                self._deadline_scope.cancel()  # nothing to time out: let the deadline task end
        for target in watch.targets:
            poller = self._pollers.get(target.key)
            if poller is None or watch not in poller.watches:
                continue
            interest = poller.interest.get(target.process_id)
            if interest is not None:
                interest.waiters -= 1
                if interest.waiters <= 0:
                    interest.waiters = 0
                    interest.released_at = now
        for target in watch.targets:
            poller = self._pollers.get(target.key)
            if poller is not None:
                poller.watches.discard(watch)
                # Nobody waits on this user any more: end its task now if it sleeps, or right after
                # its in-flight poll (not aborted: a waiter coming back between two iterations would
                # only make it poll again). Its cache and pacing stay.
                if not poller.watches and poller.wake_scope is not None:
                    poller.wake_scope.cancel()

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
                deadline, _, generation, watch = self._deadlines[0]
                if not watch.registered or watch.generation != generation:
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
                if not poller.watches:
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
            logger.exception("poller for %s failed", poller.key)
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
        """Forget processes nobody has awaited for CACHE_LINGER seconds."""
        now = self._clock.monotonic() if now is None else now
        for pid, interest in list(poller.interest.items()):
            released = interest.released_at
            if interest.waiters == 0 and released is not None and now - released > CACHE_LINGER:
                del poller.interest[pid]
                poller.cache.pop(pid, None)
                poller.gone.pop(pid, None)

    def _sweep(self, now: float) -> None:
        """Drop idle pollers whose processes are all forgotten (bounded memory over many users)."""
        for key, poller in list(self._pollers.items()):
            if not poller.running and not poller.watches:
                self._prune(poller, now)
                if not poller.interest:
                    del self._pollers[key]

    async def _poll_once(self, poller: _UserPoller) -> None:
        user = poller.key[1]
        awaited = poller.awaited
        filtered = self._use_filtered(poller, len(awaited))
        sent_at = self._clock.monotonic()
        items: list[Progress] = []
        error: AdCreativeError | None = None
        assert self._limiter is not None
        async with self._limiter:
            try:
                if filtered:
                    for pid in awaited:
                        await self._bucket.acquire()
                        self.requests += 1
                        items.extend(await poller.resource.user_progress(self._owner(poller, pid), pid))
                else:
                    await self._bucket.acquire()
                    self.requests += 1
                    if user == APPLICATION_SCOPE:
                        items = await poller.resource.application_progress()
                    else:
                        items = await poller.resource.user_progress(user)
            except AdCreativeError as exc:
                error = exc
        poller.ticks += 1
        if error is not None:
            self._after_error(poller, error)
            return
        poller.last_error = None
        if not filtered:
            poller.listed = len(items)
        changed = self._store(poller, items, sent_at)
        returned = {p.image_render_process_id for p in items}
        missing = [pid for pid in awaited if pid not in returned]
        if missing:
            changed |= await self._look_for_missing(poller, missing, sent_at, asked_by_id=filtered)
        now = self._clock.monotonic()
        if changed:
            poller.delays = None
        poller.next_due = now + self._paced(poller.next_delay(), now)
        if changed:  # only the waiters of a process that changed have anything to read
            for watch in list(poller.watches):
                if any(t.key == poller.key and t.process_id in changed for t in watch.targets):
                    watch.wake()

    def push_live(self, now: float | None = None) -> bool:
        """Whether push notifications are flowing (one arrived within ``push_quiet_after``)."""
        if self.last_push_at is None:
            return False
        now = self._clock.monotonic() if now is None else now
        return now - self.last_push_at < self.policy.push_quiet_after

    def _paced(self, delay: float, now: float) -> float:
        """The poll delay: slowed to the reconcile interval while push notifications flow."""
        return max(delay, self.policy.push_reconcile_interval) if self.push_live(now) else delay

    def push(self, message: TaskCompletedNotification | ProgressNotification) -> None:
        """A push notification: update the awaited process's snapshot now and wake its waiters.

        A progress message replaces the snapshot; a task-completed message sets that task's state (and
        the counts) in it. Duplicates change nothing; a message older than what is known (a task going
        back from a terminal state, fewer tasks complete) is ignored unless an edit started a new cycle.
        """
        now = self._clock.monotonic()
        self.last_push_at = now
        self.pushes += 1
        key = (message.feature, message.user_id.lower())
        poller = self._pollers.get(key)
        if poller is None:
            key = (message.feature, APPLICATION_SCOPE)
            poller = self._pollers.get(key)
        if poller is None:
            return
        pid = message.image_render_process_id.lower()
        interest = poller.interest.get(pid)
        if interest is None:
            return  # nobody awaits it (a poll will tell whoever asks later)
        current = poller.cache.get(pid)
        if isinstance(message, ProgressNotification):
            progress = message.to_progress()
        else:
            base = (
                current.progress
                if current is not None
                else Progress(
                    image_render_process_id=pid,
                    message_type=message.message_type.replace("TaskCompleted", "Progress"),
                    application_id=message.application_id,
                    user_id=message.user_id,
                )
            )
            progress = _with_task_state(base, message.task_id, int(message.state))
        if current is not None and (current.progress == progress or self._stale(interest, current, progress)):
            return
        interest.missing_since = None
        poller.cache[pid] = Snapshot(progress, now)
        for watch in list(poller.watches):
            if any(t.key == key and t.process_id == pid for t in watch.targets):
                watch.wake()

    @staticmethod
    def _stale(interest: _Interest, current: Snapshot, new: Progress) -> bool:
        """Whether ``new`` goes back from ``current`` without an edit that started a new cycle since."""
        if interest.not_before > current.sent_at:
            return False  # an edit re-opened the process after the cached snapshot: going back is right
        old = current.progress
        if new.completed_task_count < old.completed_task_count:
            return True
        return any(
            state in TERMINAL_STATES and new.tasks.get(task, state) not in TERMINAL_STATES
            for task, state in old.tasks.items()
        )

    def _use_filtered(self, poller: _UserPoller, awaited: int) -> bool:
        if awaited == 0 or awaited > MAX_FILTERED_PER_TICK or poller.listed == 0:
            poller.filtered_mode = False
            return False
        if poller.filtered_mode and poller.ticks % RELIST_EVERY == 0:
            return False  # re-measure the listing now and then
        poller.filtered_mode = (awaited - 1) * REQUEST_COST_IN_ITEMS < poller.listed - awaited
        return poller.filtered_mode

    def _store(self, poller: _UserPoller, items: Iterable[Progress], sent_at: float) -> set[str]:
        """Cache the awaited (or recently awaited) processes; the ids of those that changed.

        An unchanged process keeps its snapshot (and version): its waiters are not woken for nothing.
        """
        changed: set[str] = set()
        for progress in items:
            pid = progress.image_render_process_id
            interest = poller.interest.get(pid)
            if interest is None:
                continue  # not awaited: not cached (the listing may be large)
            interest.missing_since = None
            old = poller.cache.get(pid)
            if old is not None and old.sent_at > sent_at:
                continue  # an older answer arriving late
            if old is not None and self._stale(interest, old, progress):
                continue  # behind what a push already told (server lag): never report going back
            if old is not None and old.progress == progress and old.sent_at >= interest.not_before:
                continue  # nothing new (after an edit, the same progress is news: the new cycle's answer)
            poller.cache[pid] = Snapshot(progress, sent_at)
            if interest.waiters > 0:
                changed.add(pid)
        return changed

    async def _look_for_missing(
        self, poller: _UserPoller, missing: list[str], sent_at: float, *, asked_by_id: bool
    ) -> set[str]:
        """Awaited processes absent from an answer.

        A process just submitted may lag behind the listing: it gets the grace period. A process seen
        before (finished ones may leave the listing) or past its grace is asked for by id; if even that
        finds nothing after the grace, it is gone (its waiters get a NotFoundError).
        """
        now = self._clock.monotonic()
        grace = self.policy.not_found_grace
        feature, user = poller.key
        changed: set[str] = set()
        for pid in missing:
            interest = poller.interest[pid]
            if interest.missing_since is None:
                interest.missing_since = sent_at
            started = interest.submitted_at if interest.submitted_at is not None else interest.first_awaited
            in_grace = now - started < grace
            if in_grace and pid not in poller.cache:
                continue  # read-after-write lag: the listing will catch up
            if not asked_by_id:
                try:
                    await self._bucket.acquire()
                    self.requests += 1
                    found = await poller.resource.user_progress(self._owner(poller, pid), pid)
                except AdCreativeError as exc:
                    self._after_error(poller, exc)
                    return changed
                match = [p for p in found if p.image_render_process_id == pid]
                if match:
                    changed |= self._store(poller, match, sent_at)
                    continue
            if not in_grace:
                poller.gone[pid] = _not_found(feature, user, pid)
                changed.add(pid)
        return changed

    @staticmethod
    def _owner(poller: _UserPoller, process_id: str) -> str:
        """The user to ask for a process by id: the poller's, or the process's own in application scope."""
        user = poller.key[1]
        if user == APPLICATION_SCOPE:
            interest = poller.interest.get(process_id)
            if interest is not None and interest.user_id:
                return interest.user_id
        return user

    def _after_error(self, poller: _UserPoller, error: AdCreativeError) -> None:
        now = self._clock.monotonic()
        poller.last_error = error
        delay = self._paced(poller.next_delay(), now)
        if _is_transient(error):
            retry_after = _retry_after(error)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.max_retry_after))
            logger.info("poll for %s failed (%s); retrying in %.2fs", poller.key, type(error).__name__, delay)
        else:
            logger.warning("poll for %s failed permanently: %s", poller.key, error)
            for watch in list(poller.watches):
                watch.error = error
                watch.wake()
        poller.next_due = now + delay


def _is_transient(error: AdCreativeError) -> bool:
    return isinstance(error, (ServerError, RateLimitError, APIConnectionError, UnexpectedResponseError))


def _retry_after(error: AdCreativeError) -> float | None:
    if isinstance(error, RateLimitError):
        return error.retry_after
    if isinstance(error, APIError):
        return retry_after_seconds(error.headers)
    return None


def _not_found(feature: str, user: str, process_id: str) -> AdCreativeError:
    from ._errors import NotFoundError

    return NotFoundError(
        f"process {process_id} ({feature}) is not listed for user {user}, also when asked for by id, "
        "after the grace period: the server does not know it",
        status=404,
    )


def _with_task_state(progress: Progress, task_id: str, state: int) -> Progress:
    """``progress`` with one task's state set (from a task-completed message), counts updated."""
    tasks = dict(progress.tasks)
    previous = tasks.get(task_id)
    tasks[task_id] = state
    completed = progress.completed_task_count
    if state in TERMINAL_STATES and previous not in TERMINAL_STATES:
        completed += 1
    total = progress.total_task_count
    if total:
        completed = min(completed, total)
    percent = completed * 100 // total if total else progress.progress
    return msgspec.structs.replace(
        progress, tasks=tasks, completed_task_count=completed, progress=max(progress.progress, percent)
    )
