"""What every benchmark shares: an emulator in its own process, scenarios in fresh client processes,
statistics, memory readings, and the machine's description.

The emulator runs apart from the client so that its CPU is not billed to the client; each scenario runs
in a fresh process so that memory and CPU readings are its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._hosts import ROOT as ROOT
from benchmarks._hosts import emulator as emulator  # an emulator in its own process (re-exported)

RESULTS = ROOT / "benchmarks" / "results"
MiB = 1 << 20


def credentials_of(info: dict[str, Any]) -> dict[str, str]:
    """The client's keyword arguments from an emulator's startup line."""
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    return {k: str(info[k]) for k in keys}


def run_child(module: str, kind: str, params: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one scenario of ``module`` in a fresh process; its result is the last line of its output."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--child", kind, json.dumps(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"scenario {kind} failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (Linux ``/proc``), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or None where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _lifetime_peak() -> int:
    import resource  # not on Windows; only reached where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def start_measuring() -> int:
    """The current RSS (the idle baseline), after resetting the peak where the OS allows it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass
    current = _status_bytes("VmRSS")
    return current if current is not None else _lifetime_peak()


def peak_rss() -> int:
    """The peak RSS since :func:`start_measuring`."""
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else _lifetime_peak()


def rss_bytes() -> int:
    """This process's resident set size now (Linux), else its lifetime peak."""
    current = _status_bytes("VmRSS")
    return current if current is not None else _lifetime_peak()


def log(message: str) -> None:
    """A progress line on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def write_images(directory: Path, count: int) -> None:
    """``count`` copies of one 64x64 PNG, ``<i>.png``: a bulk workload's inputs."""
    from adcreative_async.testing import sample_image

    image = sample_image("png", (64, 64))
    for i in range(count):
        (directory / f"{i}.png").write_bytes(image)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(name: str, data: dict[str, Any], output: Path | str | None = None) -> Path:
    """Write ``data`` as JSON to ``output`` (a benchmark's ``--output``) or, without one, to
    ``benchmarks/results/<name>.json``, making the folder; the path written."""
    path = Path(output) if output is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


# -------------------------------------------------------------- the emulator's testing routes, stdlib only


def emulator_json(base_url: str, route: str, **query: str) -> Any:
    """GET one of the emulator's testing routes (``/_emulator/...``) with the standard library only, so
    that a parent process (or a contender written on another HTTP stack) can read the emulator's
    counters and clock without importing the SDK or aiohttp."""
    import urllib.parse
    import urllib.request

    url = f"{base_url.rstrip('/')}/_emulator/{route.lstrip('/')}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def request_counts(base_url: str) -> dict[str, int]:
    """The emulator's request counters: ``{"METHOD route": count}`` (``/_emulator/requests``)."""
    counts: dict[str, int] = emulator_json(base_url, "requests")
    return counts


def counts_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Requests made between two readings of :func:`request_counts`, by route (zeros left out)."""
    diff = {route: after.get(route, 0) - before.get(route, 0) for route in after}
    return {route: n for route, n in sorted(diff.items()) if n}


def finish_times(base_url: str, users: Sequence[str]) -> dict[str, float]:
    """Process id -> when its last task finished, for every finished process of ``users``.

    The emulator's clock is ``time.monotonic()`` (plus what was advanced): on Linux the same clock in
    every process of the machine, so a client's ``time.monotonic()`` at detection minus this is the
    detection latency.
    """
    finished: dict[str, float] = {}
    for user in users:
        for process in emulator_json(base_url, "processes", userId=user):
            ends = [task["finishedAt"] for task in process["tasks"].values()]
            if ends and all(end is not None for end in ends):
                finished[process["processId"]] = max(float(end) for end in ends)
    return finished


def cell(stats: dict[str, float], spec: str = ".1f", scale: float = 1.0) -> str:
    """A :func:`summary` as ``median (min-max)``, each value times ``scale``, formatted with ``spec``."""
    median, low, high = (stats[k] * scale for k in ("median", "min", "max"))
    if low == high:
        return format(median, spec)
    return f"{median:{spec}} ({low:{spec}}-{high:{spec}})"


LAG_PERIOD = 0.01  # seconds: the sleep whose lateness is the event loop's lag


class LagMeter:
    """Samples event-loop lag: how late a :data:`LAG_PERIOD` sleep wakes up (any asyncio-based stack)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(LAG_PERIOD)
            self.samples.append(max(0.0, time.perf_counter() - start - LAG_PERIOD))
