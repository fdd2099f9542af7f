"""Random faults for chaos tests: per route, the probability of each kind of failure.

``Emulator(faults={"Image/BackgroundRemoving/AdCreative": Faults(lost_response=0.05), "*": Faults(...)})``:
the ``"*"`` entry applies to every API route without its own. Draws come from the emulator's seeded
generator, so a seeded run repeats.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "Faults"]

FaultKind = Literal[
    "server_error", "rate_limit", "reset", "lost_response", "slow", "malformed", "truncate", "served_error"
]
#: In the order a draw tries them (a new kind goes last, so that seeded runs of the others repeat).
FAULT_KINDS: tuple[FaultKind, ...] = (
    "server_error",
    "rate_limit",
    "reset",
    "lost_response",
    "slow",
    "malformed",
    "truncate",
    "served_error",
)


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1, per request) of each fault on a route.

    Attributes:
        server_error: a 500, 502, 503 or 504 answer, the request not served.
        rate_limit: a 429 with ``Retry-After: 1``, the request not served.
        reset: the connection drops before any answer, the request not served.
        lost_response: the request IS served (a render may start), then the connection drops before
            the answer: what a client sees as an ambiguous failure.
        slow: the answer waits ``slow_seconds`` first (past a short client read timeout).
        malformed: a 200 whose body is not JSON, the request served (JSON answers only).
        truncate: a download's body is cut half-way (downloads only).
        served_error: the request IS served (a render may start), then a gateway answers 502, 503
            or 504 instead of the answer (it gave up waiting for it): another ambiguous failure.
    """

    server_error: float = 0.0
    rate_limit: float = 0.0
    reset: float = 0.0
    lost_response: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 5.0
    malformed: float = 0.0
    truncate: float = 0.0
    served_error: float = 0.0

    def __post_init__(self) -> None:
        rates = [getattr(self, f.name) for f in fields(self) if f.name != "slow_seconds"]
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must each be in [0, 1] and add up to at most 1")

    def draw(self, dice: random.Random) -> FaultKind | None:
        """One fault for one request, or None."""
        roll = dice.random()
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if roll < rate:
                return kind
            roll -= rate
        return None


class FaultPlan:
    """The faults of every route, drawn from a seeded generator; counts what it injected."""

    def __init__(self, faults: Mapping[str, Faults | Mapping[str, float]] | None, seed: int | None) -> None:
        self._by_route: dict[str, Faults] = {}
        for route, spec in (faults or {}).items():
            self._by_route[route.strip("/").lower()] = spec if isinstance(spec, Faults) else Faults(**spec)
        self._dice = random.Random(f"{seed}:faults") if seed is not None else random.SystemRandom()
        self.injected: dict[str, int] = {}
        """Faults injected so far, by kind."""

    def __bool__(self) -> bool:
        return bool(self._by_route)

    def draw(self, route: str) -> FaultKind | None:
        """The fault for one request to ``route``, if any (counted)."""
        faults = self._by_route.get(route.lower()) or self._by_route.get("*")
        if faults is None:
            return None
        kind = faults.draw(self._dice)
        if kind is not None:
            self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    def slow_seconds(self, route: str) -> float:
        """How long a slow answer of ``route`` waits."""
        faults = self._by_route.get(route.lower()) or self._by_route.get("*")
        return faults.slow_seconds if faults is not None else 0.0
