"""Client settings in one place: timeouts, connection limits, transfer sizes, and their defaults.

Every default is documented here; the client takes these objects as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import backoff

from ._errors import InvalidRequestError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOTAL_TIMEOUT",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ENV_APPLICATION_ID",
    "ENV_BASE_URL",
    "ENV_JWT_PRIVATE_KEY",
    "ENV_USER_ID",
    "MIN_UPLOAD_RATE",
    "Limits",
    "PollPolicy",
    "RetryPolicy",
    "Timeout",
    "TransferOptions",
    "light_jitter",
]

#: The documented host (reference §1.1).
DEFAULT_BASE_URL = "https://api.adcreative.ai"

ENV_APPLICATION_ID = "ADCREATIVE_APPLICATION_ID"
ENV_API_KEY = "ADCREATIVE_API_KEY"
ENV_API_SECRET = "ADCREATIVE_API_SECRET"
ENV_JWT_PRIVATE_KEY = "ADCREATIVE_JWT_PRIVATE_KEY"
ENV_BASE_URL = "ADCREATIVE_BASE_URL"
#: Not part of the API: a default sub-user for calls that take one, like the ``user_id`` argument.
ENV_USER_ID = "ADCREATIVE_USER_ID"


#: The default deadline of one call, in seconds: every attempt, the waits between them and a token
#: request it needs included. Under the 30 s that many hosts give a web request (gunicorn's worker
#: timeout, Heroku's router, API gateways) with room for a retry's backoff; a silent API no longer
#: holds a request for minutes. See docs/timeouts.md for the table of calls.
DEFAULT_TOTAL_TIMEOUT = 30.0

#: assumed: the slowest upload rate worth waiting for, in bytes per second (256 KiB/s, a slow uplink).
#: A start call with files gets ``size / MIN_UPLOAD_RATE`` seconds more than its total (by default
#: only), so that a large upload is never cut by a deadline made for small JSON calls.
MIN_UPLOAD_RATE = 256 * 1024


@dataclass(frozen=True)
class Timeout:
    """Timeouts in seconds; None means no limit. The table of which call gets what is in
    ``docs/timeouts.md``.

    Attributes:
        connect: establishing a new connection (TCP and TLS). Default 10 s.
        read: the longest wait for the next bytes of a response (an inactivity timeout: a download
            that keeps receiving lives as long as it needs). Default 60 s.
        pool: waiting for a free connection from the pool (None: wait; bulk jobs queue there).
        total: the deadline of the whole call, from its first attempt to its answer read: retries, the
            waits between them, a token request it needs and the time queued for a connection
            included (default :data:`DEFAULT_TOTAL_TIMEOUT`, 30 s). Running out raises
            ``APITimeoutError`` with ``limit == "total"``. Downloads: it bounds the wait for the
            answer's headers, never the body (``read`` bounds the body). Start calls with files: by
            default it grows by the upload's size at :data:`MIN_UPLOAD_RATE`. A wait for a paced turn
            (``rate_control``) moves the deadline: it is the client's own pacing, not the API's
            silence. None: no deadline.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    pool: float | None = None
    total: float | None = DEFAULT_TOTAL_TIMEOUT

    @classmethod
    def coerce(cls, value: Timeout | float | None, base: Timeout) -> Timeout:
        """A per-call ``timeout``: a Timeout as is, a number as a total deadline over ``base``."""
        if value is None:
            return base
        if isinstance(value, Timeout):
            return value
        return Timeout(connect=base.connect, read=base.read, pool=base.pool, total=float(value))


@dataclass(frozen=True)
class Limits:
    """Connection pool limits.

    Attributes:
        max_connections: open connections at once, all hosts (default 100).
        max_connections_per_host: per host (default 0: only ``max_connections`` applies).
        keepalive_expiry: seconds an idle connection is kept (default 15 s, recycled before common
            server idle timeouts so that a request rarely meets a stale socket).
    """

    max_connections: int = 100
    max_connections_per_host: int = 0
    keepalive_expiry: float = 15.0


@dataclass(frozen=True)
class TransferOptions:
    """Upload and download tuning.

    Attributes:
        chunk_size: bytes read or written per step (default 256 KiB): memory per transfer is about one
            chunk, and file I/O runs in worker threads one chunk at a time.
        max_upload_size: uploads larger than this are refused before sending (default 100 MiB,
            assumed: the API documents no limit). None disables the check.
        file_threads: worker threads for file I/O, shared by all transfers of a client (default 8).
        inline_small_files: the file operations of small files run in the event loop instead of a
            worker thread (default True): the check of an upload from a path (open, size, at most 64
            KiB read, close) and a download of at most 64 KiB (temporary file made, written, renamed).
            A thread hand-off costs more CPU than such an operation on a local disk; but a file system
            that stalls (a hung network mount) would stall the event loop with it: set False there.
        write_in_loop: a large download's chunks (of at most 1 MiB; from 32 MiB, at most
            ``chunk_size``, read straight into the download's buffer) are written in the event loop as
            they arrive (default True), as aiohttp's own read-to-file loop does: a write to the page
            cache costs the loop less than handing the bytes to a thread on another core. A write that
            keeps the loop over 20 ms (a disk throttling writers) hands the next 32 MiB of that body to
            a worker thread, then the loop writes again. False: worker threads only (set it with
            ``inline_small_files=False`` where a file system can hang).
    """

    chunk_size: int = 256 * 1024
    max_upload_size: int | None = 100 * 1024 * 1024
    file_threads: int = 8
    inline_small_files: bool = True
    write_in_loop: bool = True


def env(name: str) -> str | None:
    """An environment variable, None when unset or blank."""
    value = os.environ.get(name)
    return value if value and value.strip() else None


@dataclass(frozen=True)
class RetryPolicy:
    """When the client sends a request again: one place for the whole client.

    - GET requests (progress, downloads) are retried on connection errors, timeouts and the statuses of
      ``retry_statuses`` (429, 502, 503, 504), with exponential backoff and full jitter, honouring
      ``Retry-After`` up to ``max_retry_after``, within ``max_attempts`` and ``max_total`` seconds.
    - POST requests (start and edit calls, which cost money, and token requests) are sent again only
      when they surely never reached the server (connection refused, connect timeout) or the server
      refused them unprocessed (429, after its ``Retry-After``). After an
      ambiguous failure the SDK reconciles instead (see ``RenderMayExistError``); a RefreshJwtToken is
      never repeated (a new token is generated instead).
    - A body that cannot be replayed (an async iterable upload) is never sent twice.

    Attributes:
        max_attempts: attempts in all, the first included (default 4; 1 disables retries).
        initial_backoff: the first delay (default 0.25 s), doubling up to ``max_backoff`` (8 s).
        max_total: no new attempt starts later than this after the first (default 30 s).
        max_retry_after: the longest ``Retry-After`` honoured (default 30 s); a longer one ends the retries.
        reconcile_grace: after an ambiguous start or edit call, how long the client looks for the render
            it may have made (a read-after-write lag) before raising ``RenderMayExistError`` (10 s).
        reconcile_interval: how often it looks meanwhile (1 s).
        retry_statuses: statuses of GET responses that are retried; a POST answered 429 is retried too
            when 429 is in it (refused unprocessed, ``RATE_LIMITED_UNPROCESSED``).
        jitter: applied to each delay (default ``backoff.full_jitter``); None: none.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    max_total: float = 30.0
    max_retry_after: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    jitter: Callable[[float], float] | None = backoff.full_jitter
    reconcile_grace: float = 10.0
    reconcile_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy needs max_attempts >= 1")

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None, base: RetryPolicy) -> RetryPolicy | None:
        """A per-call ``retry``: a RetryPolicy as is, a number as ``max_attempts`` over ``base`` (1: no
        retry), None for the client's policy.

        Raises:
            ValueError: (an ``InvalidRequestError``) for anything else, or fewer than 1 attempt.
        """
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return dataclasses.replace(base, max_attempts=value)
        raise InvalidRequestError.for_field(
            "retry", f"must be a RetryPolicy or a number of attempts >= 1 (1: no retry), got {value!r}"
        )


def light_jitter(delay: float) -> float:
    """``delay`` scaled by a random factor in [0.8, 1]: the default jitter of poll delays.

    Pollers drift apart (no lockstep between users or clients), yet no delay exceeds its nominal value,
    so detection latency stays bounded by it, and the mean delay stays near it. (Full jitter, uniform
    over 0..delay, halves the mean delay: twice the requests for the same worst-case latency.)
    """
    return delay * random.uniform(0.8, 1.0)  # spreading requests: no need for a secure generator


@dataclass(frozen=True)
class PollPolicy:
    """How the client's one poll scheduler paces ``CheckUserProgress`` calls.

    For each (feature, user) with jobs being awaited, one unfiltered progress call per tick answers every
    job of that user. The delay between ticks starts at ``initial_interval``, grows by ``factor`` per
    quiet tick up to ``max_interval``, and goes back to ``initial_interval`` when an awaited process
    changes or a new job is awaited. It never exceeds ``age_fraction`` of the age of the youngest render
    being awaited (nor goes below ``initial_interval`` for that reason): a render that ran ``t`` seconds
    is seen done at most about ``age_fraction * t`` late (and at most ``max_interval``), so short renders
    are followed closely and long ones cheaply.

    Attributes:
        initial_interval: the first delay between polls, and the delay after a change (default 1 s: the
            pace of a hand-written per-job loop, at one request per user instead of one per job).
        max_interval: the cap of the backoff (default 5 s): detection latency is at most about this.
        factor: growth of the delay per quiet tick (default 2).
        age_fraction: the delay is at most this fraction of the youngest awaited render's age (default
            0.2), but never held below ``initial_interval`` by it.
        min_interval: the floor of a jittered delay (default 0.1 s).
        jitter: applied to each delay; default :func:`light_jitter` (uniform over 0.8..1 of the delay,
            then floored at ``min_interval``). None: no jitter.
        max_requests_per_second: client-wide limit on poll requests (default 20/s), a token bucket.
        burst: requests the bucket allows at once (default 10).
        max_concurrent_polls: poll requests in flight at once, client-wide (default 8).
        not_found_grace: how long a job just submitted (or a rebuilt job just awaited) may be missing
            from the listing before the scheduler asks for it by id and gives up if still missing
            (read-after-write lag; default 15 s).
        max_retry_after: the longest ``Retry-After`` honoured for a poll (default 60 s).
        push_reconcile_interval: while push notifications flow for a (feature, user), its polls only
            reconcile this often (default 30 s): a lost message delays a wait by at most about this much.
        push_quiet_after: push counts as flowing for a (feature, user) while a message for it arrived
            within this many seconds (default 60 s); a (feature, user) that gets no message (a feature
            without message types, a channel that does not deliver it) keeps the normal pace.
        share_listings: while jobs of several users of one feature are awaited, one
            ``CheckApplicationAllProgresses`` call serves the ticks of all of them, when the application's
            listing costs at most 2/3 of the users' own listings together (default True; features whose
            application listing is documented only). The shared tick costs what the users' own polls
            would have: it comes as many times as often as it is cheaper, so jobs are seen done that
            much sooner. False: one ``CheckUserProgress`` per user per tick, always.
        confirm_push: treat each push message as a hint, never as news (default False). The API signs
            no delivery (a webhook URL's path token is its only secret), so by default a message that
            reaches the hub completes the waits it names. With this, a message only makes the poller
            of its (feature, user) ask the API now, and only what the API answers completes a wait: a
            forged or replayed delivery costs one progress request and changes nothing. The cost: at
            most one ``CheckUserProgress`` per delivery for a process being awaited (deliveries that
            arrive while that poll is on its way share it; messages for processes nobody awaits cost
            nothing), within ``max_requests_per_second``; and polling keeps its normal pace while
            messages flow (``push_reconcile_interval`` does not apply: an unconfirmed message is no
            reason to poll less). Results still arrive about as fast as with trusted push, one request
            later.
    """

    initial_interval: float = 1.0
    max_interval: float = 5.0
    factor: float = 2.0
    age_fraction: float = 0.2
    min_interval: float = 0.1
    jitter: Callable[[float], float] | None = light_jitter
    max_requests_per_second: float = 20.0
    burst: int = 10
    max_concurrent_polls: int = 8
    not_found_grace: float = 15.0
    max_retry_after: float = 60.0
    push_reconcile_interval: float = 30.0
    push_quiet_after: float = 60.0
    share_listings: bool = True
    confirm_push: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.initial_interval <= self.max_interval:
            raise ValueError("PollPolicy needs 0 < min_interval <= initial_interval <= max_interval")
        if self.factor < 1 or self.max_requests_per_second <= 0 or self.burst < 1:
            raise ValueError("PollPolicy needs factor >= 1, max_requests_per_second > 0, burst >= 1")
        if self.age_fraction <= 0:
            raise ValueError("PollPolicy needs age_fraction > 0")
        if self.max_concurrent_polls < 1:
            raise ValueError("PollPolicy needs max_concurrent_polls >= 1")
