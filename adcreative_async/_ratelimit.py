"""Client-side adaptive rate control: requests paced to the rate an account's 429s teach.

The API's rate limits are not documented (reference §1.8); a server that has one answers 429. The
client's retry (:class:`~adcreative_async.RetryPolicy`) sends a refused request again after its
``Retry-After``, but many requests in flight keep hitting the limit meanwhile. With
``AdCreativeClient(rate_control=True)`` (or a :class:`RateControl`), the client learns the rate instead,
as AWS's adaptive retry mode and Google SRE's client-side throttling do:

- Until the first 429 nothing is paced (no cost beyond a counter per request, as AWS's mode does before
  its first throttle; a rate shared by workers starts with a probe instead: below), unless
  :attr:`RateControl.max_rate` is set: the pace never exceeds it, from the first request on.
- A 429 cuts the rate multiplicatively (``decrease``) from what was used of it (the lower of the rate and
  the rate of requests sent over the last second: AWS's ``min(measured, fill rate) * beta``; the first,
  from an unpaced start, from the rate of requests accepted),
  once per rate and period: a 429 answering a request sent before the last cut, or arriving within
  :data:`CUT_PERIOD` of it, does not cut again (TCP's once per window).
- Every second without one raises it additively by ``increase`` times the rate it was cut from, and past
  that rate by a growing share of the excess (CUBIC's probing, which AWS's mode uses), while the rate is
  being used (a client that sends less than half of it learns nothing by going higher: TCP's
  congestion-window validation).
- Requests wait their turn in a token bucket at that rate (a burst of ``burst_seconds``). Where SRE's
  throttling drops requests a backend would refuse, this delays them: a render start is paid work that
  the caller wants done, not shed.

Workers that share a PostgreSQL run ledger share what they learn: the learned *account* rate lives in
the ledger's database (a row per API host and application fingerprint, never the application id) with a
heartbeat per worker, and each worker paces at the account rate divided by the workers alive, so a 429
seen by one lowers everyone's pace within :attr:`RateControl.sync_interval`. The database is read at most
that often (never once per request); with SQLite (one machine) or no ledger, each process learns alone.
A worker that joins a rate already learned starts paced at its share. While no worker has learned one yet
(no 429), sharing workers do not start unpaced (several unpaced clients empty a server's burst together
and meet the limit as a flood of 429s before any of them has told the others): each probes from its share
of :attr:`RateControl.start_rate`, grown as the slow start after a first cut grows (:data:`START_GROWTH`)
while used, until the first 429 teaches the account rate (TCP's slow start).

A bulk item whose request still ends in ``RateLimitError`` after the retries is requeued within its run
(:class:`Requeues`, bounded by :data:`RATE_LIMIT_REQUEUES`): a 429 is taken to answer a request the
server did not process (:data:`RATE_LIMITED_UNPROCESSED`), so a refused start call is sent again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import uuid
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._clock import Clock
from ._errors import RateLimitError

__all__ = [
    "RATE_LIMITED_UNPROCESSED",
    "RATE_LIMIT_REQUEUES",
    "REQUEUE_SPREAD",
    "REQUEUE_WAIT",
    "RateBoard",
    "RateControl",
    "RateController",
    "RateReport",
    "RateShare",
    "RateStatus",
    "Requeues",
    "refused_unprocessed",
]

logger = logging.getLogger("adcreative_async.http")

#: Seconds of each slot of the rate meters (two slots: the last second is measured).
METER_SLOT = 0.5
#: A rate is raised only while the requests sent use at least this share of it.
UTILIZED = 0.5
#: Beyond the rate of its last cut, the rate grows by this share of its excess over it per second (on top of
#: the additive increase): slowly near the last known limit, faster the longer no 429 comes.
PROBE_GROWTH = 0.15
#: The first cut (from an unpaced start) multiplies by this instead of ``RateControl.decrease``: its measure
#: is of moments of traffic that a server's burst inflates, and the slow start below soon recovers from
#: going too low (TCP's slow start also halves at its first loss).
START_CUT = 0.5
#: After the first cut (from an unpaced start) the rate grows by this share of itself per second until the
#: next 429 confirms where the limit is: the first measure is of moments of traffic (a server's burst, or a
#: bucket another client emptied), so it may be far off either way.
START_GROWTH = 1.0
#: A 429 cuts the rate only if this many seconds passed since the last cut: the 429s that follow a cut at
#: once answer requests of the overload before it (the server's bucket is empty), not of the new rate. As
#: Bigtable's RateLimitInfo tells its clients to ignore the factor for a period after adjusting.
CUT_PERIOD = 0.25
#: A request waiting for its turn wakes at least this often (seconds): to take a new turn if the pace
#: changed much meanwhile, and to keep a shared rate's heartbeat while every request waits.
MAX_WAIT = 0.25
#: Waiting requests take new turns when the pace grew past this factor of the pace their turns were
#: taken at (and whenever it was lowered).
REPACE_GROWTH = 1.25
#: A shared rate's database round trip is given up (and the worker paces alone meanwhile) after this.
SYNC_TIMEOUT = 2.0
#: A worker not heard from for this many sync intervals no longer counts among the workers sharing a rate.
WORKER_SILENT_INTERVALS = 8


@dataclass(frozen=True)
class RateControl:
    """How the client adapts its request rate to 429s (AIMD; see the module doc).

    Attributes:
        decrease: a 429 multiplies the rate by this (default 0.8; AWS's adaptive mode uses 0.7).
        increase: each second the rate is used without a 429 it grows by this share of the rate of its
            last cut (default 0.015: back from a cut of 0.8 in about 13 s).
        min_rate: the rate never goes below this (requests per second, default 0.5).
        max_rate: nor above this, from the first request on (None: no cap): a client unpaced before
            its first 429 (or a shared worker's probe, or its share of the account rate) is paced at
            most at this.
        initial_rate: the rate before any 429 (None, the default: unpaced until the first 429, or
            paced at ``max_rate`` when there is one).
        burst_seconds: the pacing bucket holds this many seconds' worth of requests (at least one request).
        share: workers whose bulk runs share a PostgreSQL run ledger share the learned rate (default True).
        sync_interval: how often a sharing worker reads and writes the shared rate (seconds, default 0.25).
        start_rate: while no worker sharing the rate has learned it (no 429 yet), the workers probe from
            this account rate (requests per second, split among them; default 20), growing while used
            (None: unpaced until the first 429, as a client alone).
    """

    decrease: float = 0.8
    increase: float = 0.015
    min_rate: float = 0.5
    max_rate: float | None = None
    initial_rate: float | None = None
    burst_seconds: float = 0.1
    share: bool = True
    sync_interval: float = 0.25
    start_rate: float | None = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError(f"RateControl.decrease must be between 0 and 1, not {self.decrease!r}")
        if not 0 < self.increase < math.inf:
            raise ValueError(f"RateControl.increase must be positive, not {self.increase!r}")
        if not 0 < self.min_rate < math.inf:
            raise ValueError(f"RateControl.min_rate must be positive, not {self.min_rate!r}")
        if self.max_rate is not None and not self.min_rate <= self.max_rate < math.inf:
            raise ValueError("RateControl.max_rate must be at least min_rate")
        if self.initial_rate is not None and not 0 < self.initial_rate < math.inf:
            raise ValueError("RateControl.initial_rate must be positive")
        if self.start_rate is not None and not 0 < self.start_rate < math.inf:
            raise ValueError("RateControl.start_rate must be positive")
        if not 0 <= self.burst_seconds < math.inf or not 0 < self.sync_interval < math.inf:
            raise ValueError("RateControl.burst_seconds must be >= 0 and sync_interval positive")

    def capped(self, rate: float | None) -> float | None:
        """``rate`` held to ``max_rate``: no higher, and an unpaced None paced at ``max_rate`` when there
        is one."""
        if self.max_rate is None:
            return rate
        return self.max_rate if rate is None else min(rate, self.max_rate)

    def cut(self, rate: float | None, sent: float, accepted: float) -> tuple[float, float]:
        """The rate after a 429 and the rate it was cut from: ``decrease`` times the lower of ``rate``
        and the ``sent`` rate (what was actually used of it; a rate that was not used is no measure of
        the limit); when nothing was paced yet, of the ``accepted`` rate, and by :data:`START_CUT`. Never
        below ``min_rate``."""
        base = max(self.min_rate, accepted if rate is None else min(rate, sent))
        factor = START_CUT if rate is None else self.decrease
        return max(self.min_rate, factor * base), base

    def grow(self, rate: float, ceiling: float, starting: bool, sent: float, seconds: float) -> float:
        """The rate after ``seconds`` without a 429 (``sent``: the rate of requests sent meanwhile).

        Up to ``ceiling`` (the rate of the last cut) it grows by ``increase`` times the ceiling per second;
        beyond it, by :data:`PROBE_GROWTH` of the excess more: slowly near the last known limit, faster the
        longer no 429 comes (CUBIC's probing, which AWS's adaptive mode uses), so that a limit that was
        raised is found again. While ``starting`` (the last cut was the first, from an unpaced start,
        measured on moments of traffic: a guess) by :data:`START_GROWTH` of itself, until the next 429
        (TCP's slow start up to its first loss).
        """
        if sent < UTILIZED * rate:
            return rate
        floor = max(ceiling, self.min_rate)
        if starting:
            step = START_GROWTH * rate
        else:
            step = self.increase * floor + PROBE_GROWTH * max(0.0, rate - floor)
        grown = rate + step * seconds
        return grown if self.max_rate is None else min(self.max_rate, grown)


@dataclass(frozen=True)
class RateStatus:
    """What a client's rate control knows now (``client.rate_status``).

    Attributes:
        rate: this client's pace (requests per second), None while unpaced (no 429 yet).
        account_rate: the rate learned for the account (shared: the workers' sum; alone: ``rate``).
        workers: workers sharing the account rate (1 when alone).
        shared: whether the rate is shared through a run ledger now.
        throttled: 429s this client received.
        cuts: times the rate was cut (shared: by any worker).
    """

    rate: float | None
    account_rate: float | None
    workers: int
    shared: bool
    throttled: int
    cuts: int


@dataclass(frozen=True)
class RateReport:
    """What one worker tells the shared rate on each sync."""

    worker: str
    sent: float
    """Requests per second this worker sent over the last second."""
    accepted: float
    """Requests per second of it the server did not refuse with a 429."""
    throttled: int | None
    """The generation of the shared rate a request answered 429 was sent under (None: no 429 since the
    last sync): it cuts the rate if that generation is still the current one."""


@dataclass(frozen=True)
class RateShare:
    """The shared rate as a sync left it."""

    account_rate: float | None
    generation: int
    workers: int


class RateBoard(Protocol):
    """Where workers share a learned account rate (a PostgreSQL run ledger: ``ledger._pgrate``)."""

    async def sync(self, report: RateReport, control: RateControl) -> RateShare:
        """Apply the worker's report (heartbeat, measured rates, a 429) and return the shared rate."""
        ...

    async def leave(self, worker: str) -> None:
        """The worker stops sharing (its share goes to the others at once)."""
        ...


#: assumed: the docs say nothing of rate limits (reference §1.8). A 429 answers the application's rate over
#: every route (not a route's or a user's), so one learned rate, keyed by API host and application, paces
#: every request of the application.
ACCOUNT_SCOPE = ("base_url", "application_id")


def rate_scope(base_url: str, application_id: str) -> str:
    """The key of an account's shared rate (:data:`ACCOUNT_SCOPE`): a fingerprint of the API host and
    application (never the application id itself)."""
    parts = {"base_url": base_url.rstrip("/"), "application_id": application_id.lower()}
    text = "\n".join(["adcreative-rate", *(parts[name] for name in ACCOUNT_SCOPE)])
    digest = hashlib.sha256(text.encode())
    return digest.hexdigest()[:32]


class _Meter:
    """Events per second over the last second (two slots of :data:`METER_SLOT`; a client that started
    less than a second ago is measured over the whole second: low, rather than inflated by a burst)."""

    __slots__ = ("current", "previous", "slot")

    def __init__(self) -> None:
        self.slot = -1
        self.current = 0
        self.previous = 0

    def _roll(self, now: float) -> None:
        slot = int(now // METER_SLOT)
        if slot != self.slot:
            self.previous = self.current if slot == self.slot + 1 else 0
            self.current = 0
            self.slot = slot

    def add(self, now: float) -> None:
        self._roll(now)
        self.current += 1

    def rate(self, now: float) -> float:
        self._roll(now)
        return (self.previous + self.current) / (METER_SLOT + now - self.slot * METER_SLOT)


class RateController:
    """One client's adaptive rate (see the module doc): the transport paces each attempt with
    :meth:`acquire` and tells each answer's status to :meth:`observe`."""

    def __init__(self, control: RateControl, clock: Clock, scope: str) -> None:
        self.control = control
        self.scope = scope
        """The fingerprint of the account (API host and application) whose rate this is."""
        self._clock = clock
        self.rate: float | None = control.capped(control.initial_rate)
        self._account: float | None = self.rate
        self._ceiling = self.rate or control.min_rate
        self.generation = 0
        self._cut_generation = -1  # the generation this worker cut locally already
        self._starting = False  # slow start: the last cut was the first, from an unpaced start
        self._cut_at = -math.inf  # when the rate was last cut (here, or by a sync that saw a new generation)
        self._grown_at = clock.monotonic()
        self._tat = 0.0  # the pacing bucket's theoretical arrival time (GCRA)
        self._repaced = 0  # times the pace changed much: turns taken before at the old pace are taken again
        self._paced = math.inf  # the pace of the turns taken since
        self._sent = _Meter()
        self._accepted = _Meter()
        self.throttled = 0
        self.cuts = 0
        self.worker = uuid.uuid4().hex
        self._board: RateBoard | None = None
        self._workers = 1
        self._synced_at = -math.inf
        self._syncing = False
        self._report: int | None = None  # the generation of a 429 not reported to the board yet
        self._warned_at = -math.inf
        self._probing = False  # sharing a rate no worker learned yet: paced at a probe of its own
        self._probed_at = 0.0  # when the probe was last grown

    @property
    def status(self) -> RateStatus:
        """A snapshot of what the controller knows."""
        shared = self._board is not None
        return RateStatus(
            rate=self.rate,
            account_rate=self._account if shared else self.rate,
            workers=self._workers if shared else 1,
            shared=shared,
            throttled=self.throttled,
            cuts=self.cuts,
        )

    # sharing -----------------------------------------------------------------------------------------

    def attach(self, board: RateBoard) -> bool:
        """Share the rate through ``board`` (False: one is attached already, this one is not used)."""
        if self._board is not None or not self.control.share:
            return False
        self._board = board
        self._synced_at = -math.inf
        return True

    async def detach(self, board: RateBoard) -> None:
        """Stop sharing through ``board`` (the rate learned so far is kept, as this worker's own)."""
        if self._board is not board:
            return
        self._board = None
        if self._probing:  # nothing was learned: alone, unpaced until a 429 again
            self._probing = False
            self._set_rate(self.control.initial_rate, self._clock.monotonic())
        self._account = self.rate
        self._workers = 1
        self._ceiling = self.rate or self.control.min_rate  # grown from here as a rate of its own
        self._starting = False
        with anyio.CancelScope(shield=True), anyio.move_on_after(SYNC_TIMEOUT):
            try:
                await board.leave(self.worker)
            except Exception as exc:  # the heartbeat lapses on its own
                logger.info("shared rate: could not leave (%s)", type(exc).__name__)

    async def _sync(self, board: RateBoard, now: float) -> None:
        self._syncing = True
        report = RateReport(self.worker, self._sent.rate(now), self._accepted.rate(now), self._report)
        share: RateShare | None = None
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SYNC_TIMEOUT):
                share = await board.sync(report, self.control)
        except Exception as exc:  # the ledger's own error: pace alone until the next sync works
            if now - self._warned_at > 60:  # the error's text is not shown: a driver's may hold the DSN
                self._warned_at = now
                what = type(exc).__name__
                logger.warning("shared rate: the run ledger could not be read (%s); pacing alone", what)
        finally:
            self._syncing = False
            self._synced_at = now
        if share is None or self._board is not board:
            return
        if share.generation > self.generation:
            self.cuts += share.generation - self.generation
            self._cut_at = now
        if report.throttled is not None and self._report == report.throttled:
            self._report = None
        self.generation = share.generation
        self._workers = max(1, share.workers)
        self._account = share.account_rate
        if share.account_rate is None and self.control.start_rate is not None:
            self._set_rate(self._probe(report.sent, now), now)
            return
        self._probing = False
        pace = None if share.account_rate is None else share.account_rate / self._workers
        self._set_rate(None if pace is None else max(pace, self.control.min_rate / self._workers), now)

    def _probe(self, sent: float, now: float) -> float:
        """The pace of a cold start on a shared rate no worker learned yet: this worker's share of
        ``start_rate`` at first, then grown while used as a slow start grows."""
        start = self.control.start_rate
        assert start is not None
        seconds, self._probed_at = now - self._probed_at, now
        if not self._probing or self.rate is None:
            self._probing = True
            return max(self.control.min_rate, start / self._workers)
        rate = self.control.grow(self.rate, self.rate, True, sent, seconds)
        return max(rate, self.control.min_rate / self._workers)

    # pacing ------------------------------------------------------------------------------------------

    def _set_rate(self, rate: float | None, now: float) -> None:
        """Pace at ``rate`` from now on; the requests waiting for a turn take new turns at it when it is
        lower, or much higher (:data:`REPACE_GROWTH`), than the pace their turns were taken at. Never
        above ``max_rate``."""
        self.rate = rate = self.control.capped(rate)
        if rate is not None and (rate < self._paced or rate > REPACE_GROWTH * self._paced):
            self._repaced += 1
            self._paced = rate
            self._tat = now

    async def _tend(self, now: float) -> float:
        """The shared rate read (and this worker's heartbeat written) when due; a rate of its own grown.
        The time after it."""
        board = self._board
        if board is not None:
            if not self._syncing and (
                now - self._synced_at >= self.control.sync_interval or self._report is not None
            ):
                await self._sync(board, now)
                now = self._clock.monotonic()
        elif self.rate is not None:
            sent = self._sent.rate(now)
            seconds = now - self._grown_at
            self._set_rate(self.control.grow(self.rate, self._ceiling, self._starting, sent, seconds), now)
        self._grown_at = now
        return now

    async def acquire(self) -> int:
        """Wait for this request's turn; returns the ticket to give :meth:`observe` with its answer.

        A waiting request wakes at least every :data:`MAX_WAIT` seconds: to take a new turn if the pace
        changed much meanwhile, and to keep a shared rate's heartbeat while every request waits.
        """
        clock = self._clock
        now = await self._tend(clock.monotonic())
        turn: float | None = None
        repaced = -1
        while (pace := self.rate) is not None:
            if repaced != self._repaced:  # (again, if the pace changed much while it waited)
                repaced = self._repaced
                interval = 1.0 / pace
                tolerance = max(0.0, pace * self.control.burst_seconds - 1.0) * interval
                tat = max(self._tat, now)
                self._tat = tat + interval
                turn = tat - tolerance
            assert turn is not None
            if turn <= now:
                break
            await clock.sleep(min(turn - now, MAX_WAIT))
            now = await self._tend(clock.monotonic())
        self._sent.add(now)
        return self.generation

    def observe(self, ticket: int, status: int) -> None:
        """The answer to a request paced with ``ticket`` had this status."""
        now = self._clock.monotonic()
        if status != 429:
            self._accepted.add(now)
            return
        self.throttled += 1
        if ticket != self.generation or self._cut_generation == ticket or now - self._cut_at < CUT_PERIOD:
            return  # sent before the last cut, this rate was cut already, or it was cut a moment ago
        self._cut_generation = ticket
        self._cut_at = now
        unpaced = self.rate is None
        rate, ceiling = self.control.cut(self.rate, self._sent.rate(now), self._accepted.rate(now))
        self._set_rate(rate, now)
        if self._board is not None:
            self._report = ticket  # the board cuts the account rate, and the next request syncs
            return
        self._account = rate
        self._ceiling = ceiling
        self._starting = unpaced
        self.generation += 1
        self.cuts += 1
        self._grown_at = now


# requeues after a 429 (bulk runs) ------------------------------------------------------------------------

#: assumed: the docs say nothing of 429 (reference §1.8). A 429 answers a request the server refused
#: before processing it (a rate limiter in front of the API: RFC 6585's "Too Many Requests"), so a start
#: call answered 429 made no render: the transport sends a request refused with a 429 again after its
#: ``Retry-After``, POSTs included, and a bulk run requeues an item whose start call still ended in
#: ``RateLimitError`` (:class:`Requeues`), never reconciling it as a call that may have made a render.
RATE_LIMITED_UNPROCESSED = True

#: A bulk item whose start call, progress lookup (a run ledger's reconciliation) or download ends in
#: ``RateLimitError`` (a 429 after the transport's retries) goes back into the run's window and is tried
#: again after the 429's ``Retry-After`` (:class:`Requeues`), at most this many times in all for the item
#: (its start call, lookups and downloads together). Past them (or when the server asks for a wait longer
#: than ``RetryPolicy.max_retry_after``) its outcome is the ``RateLimitError``, as a transient error: with
#: a run ledger the item stays ``pending`` (no render made), or ``submitted`` (its render exists: only
#: awaited and downloaded again, never started again), for the next run. The item keeps its place in the
#: window while it waits (no list of requeued items beyond the window), and holds no upload or download
#: slot meanwhile. ``RetryPolicy(max_retry_after=0)`` turns requeues off (but after a ``Retry-After: 0``).
RATE_LIMIT_REQUEUES = 4
#: A requeued item waits its 429's ``Retry-After`` plus a random share (full jitter) of up to this many
#: ``Retry-After`` more, doubled at each requeue of the item (and at most ``RetryPolicy.max_retry_after``
#: more): items refused together are spread over the next seconds instead of all coming back at the same
#: instant to the same empty bucket. Their requests are still paced by the client's rate control when it
#: is on (shared by the workers of a PostgreSQL run ledger).
REQUEUE_SPREAD = 1.0
#: A 429 without ``Retry-After``: the wait counted instead of it (seconds), unless the client's rate
#: control paces requests (then one turn at its pace).
REQUEUE_WAIT = 1.0


def refused_unprocessed(error: BaseException) -> bool:
    """Whether ``error`` is a 429 answering a POST (a start call, or its token request): refused before
    it was processed (:data:`RATE_LIMITED_UNPROCESSED`), so nothing was made and it may be sent again."""
    return RATE_LIMITED_UNPROCESSED and isinstance(error, RateLimitError) and error.method == "POST"


class Requeues:
    """One bulk item's requeues after a ``RateLimitError`` (see :data:`RATE_LIMIT_REQUEUES`), shared by its
    start call, progress lookups and downloads.

    Args:
        clock: the client's clock (the wait goes through it).
        max_retry_after: the longest ``Retry-After`` waited for (the client's ``RetryPolicy``'s).
        rate: the client's rate control, if on (its pace replaces a missing ``Retry-After``).
        limit: requeues allowed (default :data:`RATE_LIMIT_REQUEUES`).
    """

    __slots__ = ("_clock", "_max_retry_after", "_rate", "limit", "used")

    def __init__(
        self,
        clock: Clock,
        max_retry_after: float,
        rate: RateController | None,
        limit: int = RATE_LIMIT_REQUEUES,
    ) -> None:
        self._clock = clock
        self._max_retry_after = max_retry_after
        self._rate = rate
        self.limit = limit
        self.used = 0
        """Requeues taken so far."""

    def delay(self, error: RateLimitError) -> float | None:
        """How long to wait before the next try after ``error`` (see :data:`REQUEUE_SPREAD`); None when
        the item is not to be tried again (its requeues spent, or a ``Retry-After`` beyond the longest
        honoured)."""
        if self.used >= self.limit:
            return None
        base = error.retry_after
        if base is None:
            pace = self._rate.rate if self._rate is not None else None
            base = REQUEUE_WAIT if pace is None else 1.0 / pace
        if base > self._max_retry_after:
            return None
        spread = min(self._max_retry_after, base * REQUEUE_SPREAD * 2**self.used)
        return max(0.0, base) + random.uniform(0.0, spread)

    async def wait(self, error: RateLimitError) -> bool:
        """Wait until the item may be tried again after ``error``; False at once when it is not to be
        (see :meth:`delay`: the item's outcome is then ``error``)."""
        delay = self.delay(error)
        if delay is None:
            return False
        self.used += 1
        logger.info(
            "429 after the retries (%s %s): the item is tried again in %.2fs (requeue %d of %d)",
            error.method,
            error.path,
            delay,
            self.used,
            self.limit,
        )
        await self._clock.sleep(delay)
        return True
