"""What every bulk contender's process shares: its inputs, the measurement of the client process, and
the child entry point.

Standard library only (plus the harness, itself standard library only), so that a contender's process
holds only its own HTTP and model stack: the httpx + pydantic baseline never imports the SDK or aiohttp,
and its memory and import cost are its own.

A contender is ``async def workload(run: BulkRun) -> None``: it submits every item, awaits each render,
downloads every result into ``run.out_dir`` and records, for each process, when it saw it complete
(``run.detected[process_id] = time.monotonic()``), and when each start call returned
(``run.submitted``). :func:`measure` times it from nothing (no client open, no token) to the last file
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._harness import LagMeter, peak_rss, percentile, start_measuring

#: Connections each contender may open at once (the SDK's, httpx's and aiohttp's default pool size).
CONNECTIONS = 100
#: The task state the API documents as succeeded, and the states after which a task does not change.
SUCCEEDED = 5
TERMINAL_STATES = frozenset({3, 4, 5})
#: How late a sleep of this many seconds wakes up is the event loop's lag.


@dataclass(frozen=True)
class Item:
    """One input: an image file to remove the background of, for one user."""

    path: Path
    user: str


@dataclass
class BulkRun:
    """What one contender gets: credentials, inputs, where to write, and where to record detections."""

    credentials: dict[str, str]
    items: list[Item]
    out_dir: Path
    params: dict[str, Any]
    detected: dict[str, float] = field(default_factory=dict)
    submitted: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def interval(self) -> float:
        """The poll interval of a per-job loop (seconds)."""
        return float(self.params.get("interval", 1.0))


def items_of(params: dict[str, Any]) -> list[Item]:
    """Item ``i`` is ``<images>/<i>.png`` for user ``i % len(users)``."""
    images = Path(params["images"])
    users: list[str] = params["users"]
    return [Item(images / f"{i}.png", users[i % len(users)]) for i in range(params["jobs"])]


async def measure(workload: Callable[[BulkRun], Awaitable[None]], run: BulkRun) -> dict[str, Any]:
    """Run ``workload`` once: wall time, CPU time and peak RSS of this process, event-loop lag, files."""
    lag = LagMeter()
    baseline = start_measuring()
    lag_task = asyncio.create_task(lag.run())
    cpu = time.process_time()
    started = time.monotonic()
    try:
        await workload(run)
    finally:
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu
        peak = peak_rss()
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
    files = [p for p in run.out_dir.iterdir() if p.is_file()]
    return {
        "jobs": len(run.items),
        "downloaded": sum(1 for p in files if p.stat().st_size > 0),
        "errors": run.errors[:5],
        "error_count": len(run.errors),
        "wall_seconds": wall,
        "last_submitted_seconds": max(run.submitted, default=started) - started,
        "last_detected_seconds": max(run.detected.values(), default=started) - started,
        "cpu_seconds": cpu,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "loop_lag_p50": percentile(lag.samples, 50),
        "loop_lag_p99": percentile(lag.samples, 99),
        "loop_lag_max": max(lag.samples, default=0.0),
        "detected": run.detected,
    }


def record_errors(run: BulkRun, results: Sequence[object]) -> None:
    """Keep the exceptions of an ``asyncio.gather(..., return_exceptions=True)`` as the run's errors."""
    run.errors.extend(f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException))


Workload = Callable[[BulkRun], Awaitable[None]]


def child_main(workloads: dict[str, Workload], argv: Sequence[str] | None = None) -> int:
    """``python -m <contender module> --child KIND PARAMS``: run one workload, print its result as JSON.

    The result is the last line of the output (see ``benchmarks._harness.run_child``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "--child":
        print(f"usage: python -m <module> --child {{{','.join(workloads)}}} PARAMS", file=sys.stderr)
        return 2
    kind, params = args[1], json.loads(args[2])
    with tempfile.TemporaryDirectory(prefix="adcreative-compare-") as out:
        run = BulkRun(params["credentials"], items_of(params), Path(out), params)
        result = asyncio.run(measure(workloads[kind], run))
    print(json.dumps(result))
    return 0
