"""The emulator's account rate limit: a token bucket per application, and what it let through or refused.

The docs say nothing of rate limits (reference §1.8), so everything here is an option, off by default:
``Emulator(rate_limit=20, rate_burst=20)`` or ``python -m adcreative_async.testing --rate-limit 20/s
--burst 20``. Each application has a bucket of ``burst`` tokens refilled at ``rate`` per second; every
API request that names the application (its ``x-api-key`` header: feature calls and, as the SDK sends
them, token requests) takes a token, and a request that finds the bucket empty is refused unprocessed with
a 429 and ``Retry-After`` (:data:`MIN_RETRY_AFTER`). Requests naming no known application are not counted
(they are answered 401 anyway). The bucket runs on the emulator's clock, so ``advance`` refills it too.

The counters (accepted and refused requests per application) are what tests and benchmarks count at the
server: :meth:`Emulator.rate_counts` and ``GET /_emulator/rate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MIN_RETRY_AFTER", "AccountLimiter", "RateCounts", "parse_rate"]

#: assumed: the docs say nothing of 429 (reference §1.8). A refused request's ``Retry-After`` is the time
#: until its application's bucket holds a token again, in whole seconds (HTTP's delta-seconds) rounded up,
#: and at least this many: as ASP.NET Core's rate limiter writes its ``RetryAfter`` metadata.
MIN_RETRY_AFTER = 1


@dataclass(frozen=True)
class RateCounts:
    """What an application's rate limit did: requests ``accepted`` (served) and ``limited`` (answered 429)."""

    accepted: int = 0
    limited: int = 0

    @property
    def total(self) -> int:
        """Requests counted, served or refused."""
        return self.accepted + self.limited

    @property
    def limited_share(self) -> float:
        """The share of requests answered 429 (0 when none were counted)."""
        return self.limited / self.total if self.total else 0.0


class _Bucket:
    __slots__ = ("accepted", "limited", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.accepted = 0
        self.limited = 0


class AccountLimiter:
    """Token buckets per application (by application id), with counters.

    Args:
        rate: tokens per second (requests per second per application); None: no limit, nothing counted.
        burst: the bucket's size (default: one second's worth of ``rate``, at least 1).
        now: the clock (seconds, monotonic).
    """

    def __init__(self, rate: float | None, burst: float | None, now: Callable[[], float]) -> None:
        self._now = now
        self._buckets: dict[str, _Bucket] = {}
        self.rate: float | None = None
        self.burst = 1.0
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        """Set (or lift, with None) the limit; buckets are kept, capped to the new size."""
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate_limit must be a positive number of requests per second, not {rate!r}")
        if burst is not None and not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"rate_burst must be >= 1, not {burst!r}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        for bucket in self._buckets.values():
            bucket.tokens = min(bucket.tokens, self.burst)

    def admit(self, application_id: str) -> int | None:
        """Take a token for one request of the application: None when it may be served, else the
        ``Retry-After`` seconds of its 429."""
        rate = self.rate
        if rate is None:
            return None
        now = self._now()
        bucket = self._buckets.get(application_id)
        if bucket is None:
            bucket = self._buckets[application_id] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.accepted += 1
            return None
        bucket.limited += 1
        return max(MIN_RETRY_AFTER, math.ceil((1.0 - bucket.tokens) / rate))

    def counts(self, application_id: str) -> RateCounts:
        """The application's counters (zeros when it made no counted request)."""
        bucket = self._buckets.get(application_id)
        return RateCounts() if bucket is None else RateCounts(bucket.accepted, bucket.limited)

    def reset_counts(self) -> None:
        """Zero every application's counters (the buckets keep their tokens)."""
        for bucket in self._buckets.values():
            bucket.accepted = bucket.limited = 0


def parse_rate(text: str) -> float:
    """``"20"``, ``"20/s"``, ``"1200/min"`` or ``"72000/h"`` as requests per second (ValueError else)."""
    value, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
    per |= {"h": 3600.0, "hour": 3600.0}
    seconds = per.get(unit.strip().lower())
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if seconds is None or not (number > 0 and math.isfinite(number)):
        raise ValueError(f"a rate is a positive number per s, min or h (e.g. 20/s), not {text!r}")
    return number / seconds
