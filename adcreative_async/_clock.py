"""The one injectable clock: every sleep and every time reading of the SDK goes through it.

Tests pass a :class:`ManualClock` and move time by hand, so nothing waits for real.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time, wall time and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (only differences mean anything)."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (cancellable)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``anyio.sleep``."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep(seconds)``."""
        await anyio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock for tests: time stands still until :meth:`advance` moves it; sleepers wake in order.

    Args:
        start: the initial monotonic reading.
        wall_start: the initial wall reading (epoch seconds).
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """The current manual time."""
        return self._now

    def wall(self) -> float:
        """The wall time that corresponds to the manual time."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until the manual time has advanced by ``seconds`` (returns at once for <= 0)."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), event))
        await event.wait()

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending."""
        return sum(1 for _, _, e in self._sleepers if not e.is_set())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose time has come (letting it run) in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            event.set()
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
        self._now = target
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
