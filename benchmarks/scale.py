"""A bulk run's cost as the number of items grows: ``python -m benchmarks.scale [--quick] [--sizes ...]``.

``client.bulk(paths, ..., dest=OUT)`` over N distinct small images (background removals, renders of
0.5-1.5 s, the client's default concurrency, every result downloaded), at each size (default 2,000,
20,000 and 100,000), in three modes: no ledger (the start calls spread over :data:`USERS` users), a SQLite
ledger, and a PostgreSQL ledger (``--postgres DSN`` or ``ADCREATIVE_TEST_POSTGRES_DSN``; left out, with a
note, when neither is given); on request (``--modes ... memory``), the ledger's driver over a ledger in
memory, to tell what a ledger run costs besides its storage. Each run is a fresh client process against
a fresh emulator process. The
inputs are read lazily (a generator of paths) and the outcomes are counted, not kept: what the client
holds is the SDK's own.

Columns: client CPU per item (ms, from opening the client to the last outcome), the client process's
peak RSS (MiB, lifetime: start-up included), wall time; RSS growth per item between consecutive sizes
(KiB), CPU per item against the smallest size of the same mode; ledger overhead, wall and CPU against no
ledger at the same size. The emulator's CPU share and peak RSS are shown so that a saturated emulator can
be spotted (its CPU is not the SDK's). Goals (issue 23): RSS growth <= 0.5 KiB/item; CPU/item at the
largest size <= 1.10x the smallest; <= 1.5 ms/item without a ledger, <= 2.0 with SQLite; ledger overhead
wall <= 5 %, CPU <= 10 % at every size.

``--rounds R`` runs every cell R times, the modes of one size alternating and their order rotating each
round: a cell then shows the medians, and a ledger's overhead is the median of the rounds' ratios (each
ledger run against the run without a ledger of the same round), with their range. On a shared machine one
run per cell does not settle a 5 % goal (the same code's CPU per item moved by half between two runs).

Prints a table and writes ``benchmarks/results/scale.json`` (``scale-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    MiB,
    counts_diff,
    credentials_of,
    emulator,
    machine,
    peak_rss,
    process_cpu_seconds,
    request_counts,
    run_child,
    write_results,
)

SIZES = (2_000, 20_000, 100_000)
QUICK_SIZES = (100, 400)
MODES = ("none", "sqlite", "postgres")
#: On request only: the run ledger's driver over a ledger in memory (``MemoryLedger``): what a ledger run
#: costs besides its storage (the keys' hashing, claims, the waits on the application's listing); and
#: ``sqlite-1000``, a SQLite ledger run holding the window of a run without a ledger (``poll_concurrency``
#: 1,000 instead of ``_outcome.LEDGER_POLL_CONCURRENCY``): what the ledger's larger window buys.
EXTRA_MODES = ("memory", "sqlite-1000")
#: Renders' duration (seconds, uniform jitter): the issue's measurement.
TASK_DURATION = (0.5, 1.5)
#: Users the start calls of a run without a ledger spread over (a ledger derives one user per item).
USERS = 10
GOALS = {
    "rss_growth_kib_per_item": 0.5,
    "cpu_ratio_largest": 1.10,
    "cpu_ms_none": 1.5,
    "cpu_ms_sqlite": 2.0,
    "wall_overhead": 0.05,
    "cpu_overhead": 0.10,
}
START_ROUTE = "POST Image/BackgroundRemoving/AdCreative"
#: Set to a directory, each run's client process is profiled (cProfile) and dumps
#: ``scale-<mode>-<N>-<pid>.pstats`` there: to compare per-item costs by function between sizes
#: (the CPU figures of a profiled run are cProfile's, not the SDK's).
PROFILE_ENV = "ADCREATIVE_SCALE_PROFILE"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_images(directory: Path, count: int) -> None:
    """``count`` distinct tiny PNGs ``<i>.png`` (one 2x2 image, its colour a counter): fast at 100k."""
    from adcreative_async.testing import sample_image

    for i in range(count):
        colour = (i % 256, (i // 256) % 256, (i // 65536) % 256)
        (directory / f"{i}.png").write_bytes(sample_image("png", (2, 2 + i // 16_777_216), colour))


def _status_kib(pid: int, field: str) -> float:
    """A ``kB`` field of another process's ``/proc/<pid>/status`` (NaN where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------------------------------- child


def child(params: dict[str, Any]) -> dict[str, Any]:
    """One run in this (fresh) process: ``client.bulk`` over the first N images; its measurements."""
    import anyio

    from adcreative_async import AdCreativeClient
    from adcreative_async._outcome import DEFAULT_POLL_CONCURRENCY
    from adcreative_async.ledger import MemoryLedger, RenderRequest, RunLedger

    images = Path(params["images"])
    n: int = params["items"]
    users: list[str] = params["users"]
    mode: str = params["mode"]

    def paths() -> Iterator[Path]:  # read lazily by the run, never held whole
        for i in range(n):
            yield images / f"{i}.png"

    async def main(out: str, spec: str | RunLedger | None) -> dict[str, Any]:
        ok = failed = 0
        errors: list[str] = []
        cpu = time.process_time()
        times = os.times()
        started = time.monotonic()
        async with AdCreativeClient(**params["credentials"], trust_env=False) as client:
            if spec is None:
                counter = iter(range(n))

                async def submit(c: AdCreativeClient, path: Path) -> Any:
                    return await c.background_remover.remove(path, user_id=users[next(counter) % len(users)])

                run = client.bulk(paths(), submit, dest=out)
            else:
                window = DEFAULT_POLL_CONCURRENCY if mode == "sqlite-1000" else None
                run = client.bulk(
                    paths(),
                    request=RenderRequest.remove_background,
                    dest=out,
                    ledger=spec,
                    poll_concurrency=window,
                )
            async with run:
                async for outcome in run:
                    if outcome.ok:
                        ok += 1
                    else:
                        failed += 1
                        if len(errors) < 5:
                            errors.append(f"{type(outcome.error).__name__}: {outcome.error}")
        return {
            "items": n,
            "ok": ok,
            "failed": failed,
            "errors": errors,
            "wall_seconds": time.monotonic() - started,
            "cpu_seconds": time.process_time() - cpu,
            # user and system time apart: the system time moves with what the machine's other processes
            # do to the file system (creating a file costs more after many deletions)
            "user_seconds": os.times().user - times.user,
            "sys_seconds": os.times().system - times.system,
            "peak_rss": peak_rss(),  # the process's lifetime peak (never reset): start-up included
        }

    with tempfile.TemporaryDirectory(prefix="adcreative-scale-") as tmp:
        spec: str | RunLedger | None = None
        if mode in ("sqlite", "sqlite-1000"):
            spec = str(Path(tmp) / "run.sqlite")
        elif mode == "postgres":
            spec = f"{params['dsn']}#scale-{uuid.uuid4().hex[:8]}"
        elif mode == "memory":
            spec = MemoryLedger()
        out = str(Path(tmp) / "out")
        profile_dir = os.environ.get(PROFILE_ENV)
        if not profile_dir:
            return anyio.run(main, out, spec)
        import cProfile

        with cProfile.Profile() as profiler:
            result: dict[str, Any] = anyio.run(main, out, spec)
        profiler.dump_stats(Path(profile_dir) / f"scale-{mode}-{n}-{os.getpid()}.pstats")
        return result


# ------------------------------------------------------------------------------------------ parent


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _median_run(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cell of several rounds: each number the median of the rounds' (the first round's otherwise)."""
    merged = dict(results[0])
    for name, value in results[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            middle = _median([r[name] for r in results])
            merged[name] = round(middle) if isinstance(value, int) else middle  # counts stay counts
    merged["rounds"] = len(results)
    return merged


def measure(sizes: Sequence[int], modes: Sequence[str], dsn: str | None, rounds: int = 1) -> dict[str, Any]:
    runs: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in modes}
    each: dict[str, dict[str, list[dict[str, Any]]]] = {mode: {} for mode in modes}
    with tempfile.TemporaryDirectory(prefix="adcreative-scale-images-") as tmp:
        images = Path(tmp)
        started = time.monotonic()
        write_images(images, max(sizes))
        _log(f"{max(sizes):,} images written in {time.monotonic() - started:.1f} s")
        for size, turn in ((size, turn) for size in sizes for turn in range(rounds)):
            # side by side at each size: the machine's noise alike for every mode; the order rotates
            for mode in [*modes[turn % len(modes) :], *modes[: turn % len(modes)]]:
                low, high = TASK_DURATION
                with emulator("--task-duration", str(low), str(high)) as info:
                    before = request_counts(info["base_url"])
                    cpu = process_cpu_seconds(info["pid"])
                    params = {
                        "credentials": credentials_of(info),
                        "images": str(images),
                        "items": size,
                        "mode": mode,
                        "users": [str(uuid.uuid4()) for _ in range(USERS)],
                        "dsn": dsn,
                    }
                    result = run_child("benchmarks.scale", "run", params, timeout=6 * 3600)
                    result["emulator_busy"] = (process_cpu_seconds(info["pid"]) - cpu) / result[
                        "wall_seconds"
                    ]
                    result["emulator_peak_rss_kib"] = _status_kib(info["pid"], "VmHWM")
                    requests = counts_diff(before, request_counts(info["base_url"]))
                result["starts"] = requests.get(START_ROUTE, 0)
                result["progress_requests"] = sum(n for route, n in requests.items() if "Progress" in route)
                each[mode].setdefault(str(size), []).append(result)
                runs[mode][str(size)] = _median_run(each[mode][str(size)])
                _log(
                    f"  {mode:8} {size:>7,}: {result['wall_seconds']:.1f} s wall, "
                    f"{result['cpu_seconds'] / size * 1000:.2f} ms CPU/item, "
                    f"{result['peak_rss'] / MiB:.0f} MiB, {result['ok']}/{size} ok, "
                    f"emulator {result['emulator_busy']:.0%} busy"
                )
                if result["errors"]:
                    _log(f"    errors: {result['errors']}")
    return {"sizes": list(sizes), "modes": list(modes), "rounds": rounds, "runs": runs, "each": each}


def _overheads(data: dict[str, Any], mode: str, size: int) -> tuple[list[float], list[float]]:
    """A ledger mode's wall and CPU overheads against no ledger at ``size``, one per round."""
    each = data.get("each", {})
    plain = each.get("none", {}).get(str(size), [])
    mine = each.get(mode, {}).get(str(size), [])
    pairs = list(zip(mine, plain, strict=False))
    return (
        [r["wall_seconds"] / p["wall_seconds"] - 1 for r, p in pairs],
        [r["cpu_seconds"] / p["cpu_seconds"] - 1 for r, p in pairs],
    )


def derived(data: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per mode and size: CPU ms/item, RSS growth from the previous size, CPU ratio to the smallest,
    ledger overheads against no ledger."""
    sizes: list[int] = data["sizes"]
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for mode, results in data["runs"].items():
        rows: dict[str, dict[str, float | None]] = {}
        smallest = results[str(sizes[0])]
        base_ms = smallest["cpu_seconds"] / sizes[0] * 1000
        previous: tuple[int, dict[str, Any]] | None = None
        for size in sizes:
            r = results[str(size)]
            ms = r["cpu_seconds"] / size * 1000
            growth = None
            if previous is not None:
                growth = (r["peak_rss"] - previous[1]["peak_rss"]) / 1024 / (size - previous[0])
            wall_overhead = cpu_overhead = None
            plain = data["runs"].get("none", {}).get(str(size))
            if mode != "none" and plain is not None:
                walls, cpus = _overheads(data, mode, size)
                if walls:  # the median of the rounds' ratios
                    wall_overhead, cpu_overhead = _median(walls), _median(cpus)
                else:
                    wall_overhead = r["wall_seconds"] / plain["wall_seconds"] - 1
                    cpu_overhead = r["cpu_seconds"] / plain["cpu_seconds"] - 1
            rows[str(size)] = {
                "cpu_ms_per_item": ms,
                "rss_growth_kib_per_item": growth,
                "cpu_ratio_to_smallest": ms / base_ms if base_ms else None,
                "wall_overhead": wall_overhead,
                "cpu_overhead": cpu_overhead,
            }
            previous = (size, r)
        out[mode] = rows
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"Scale benchmark ({m['cores']} cores, Python {m['python']}): client.bulk(paths, ..., dest=OUT), "
        f"renders of {TASK_DURATION[0]}-{TASK_DURATION[1]} s, "
        + (
            "one run per cell"
            if data.get("rounds", 1) == 1
            else f"{data['rounds']} rounds per cell (medians; overheads: median of the rounds' ratios)"
        ),
        "",
        f"{'mode':9} {'N':>8} {'CPU ms/item':>11} {'max RSS MiB':>11} {'wall s':>8} {'RSS KiB/item':>12} "
        f"{'CPU/item x':>10} {'wall ovh':>8} {'CPU ovh':>8} {'ok':>8} {'progress':>8} {'emu busy':>8} "
        f"{'emu MiB':>7}",
    ]
    table = derived(data)
    for mode in data["modes"]:
        for size in data["sizes"]:
            r = data["runs"][mode][str(size)]
            d = table[mode][str(size)]
            lines.append(
                f"{mode:9} {size:>8,} {_fmt(d['cpu_ms_per_item'], '.2f'):>11} {r['peak_rss'] / MiB:>11.0f} "
                f"{r['wall_seconds']:>8.1f} {_fmt(d['rss_growth_kib_per_item'], '.2f'):>12} "
                f"{_fmt(d['cpu_ratio_to_smallest'], '.2f'):>10} {_fmt(d['wall_overhead'], '+.1%'):>8} "
                f"{_fmt(d['cpu_overhead'], '+.1%'):>8} {r['ok']:>8,} {r['progress_requests']:>8,} "
                f"{r['emulator_busy']:>8.0%} {r['emulator_peak_rss_kib'] / 1024:>7.0f}"
            )
    if data.get("note"):
        lines += ["", data["note"]]
    lines += ["", *goals_lines(data, table)]
    return "\n".join(lines)


def goals_lines(data: dict[str, Any], table: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    sizes = [str(s) for s in data["sizes"]]
    lines = ["Goals:"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for mode in data["modes"]:
        rows = table[mode]
        first, last = data["runs"][mode][sizes[0]], data["runs"][mode][sizes[-1]]
        span = int(sizes[-1]) - int(sizes[0])
        if span:
            growth = (last["peak_rss"] - first["peak_rss"]) / 1024 / span
            lines.append(
                f"  {mode}: RSS {growth:.2f} KiB/item from {int(sizes[0]):,} to {int(sizes[-1]):,} (goal <= "
                f"{GOALS['rss_growth_kib_per_item']}: {verdict(growth <= GOALS['rss_growth_kib_per_item'])})"
            )
        ratio = rows[sizes[-1]]["cpu_ratio_to_smallest"]
        if ratio is not None and len(sizes) > 1:
            lines.append(
                f"  {mode}: CPU/item x{ratio:.2f} at {int(sizes[-1]):,} against {int(sizes[0]):,} (goal <= "
                f"{GOALS['cpu_ratio_largest']}: {verdict(ratio <= GOALS['cpu_ratio_largest'])})"
            )
        limit = GOALS.get(f"cpu_ms_{mode}")
        ms = rows[sizes[-1]]["cpu_ms_per_item"]
        if limit is not None and ms is not None:
            lines.append(
                f"  {mode}: {ms:.2f} ms CPU/item at {int(sizes[-1]):,} "
                f"(goal <= {limit}: {verdict(ms <= limit)})"
            )
        if mode != "none":
            for size in sizes:
                w, c = rows[size]["wall_overhead"], rows[size]["cpu_overhead"]
                if w is None or c is None:
                    continue
                walls, cpus = _overheads(data, mode, int(size))
                spread = ""
                if len(walls) > 1:
                    spread = (
                        f" (rounds: wall {min(walls):+.1%} to {max(walls):+.1%}, "
                        f"CPU {min(cpus):+.1%} to {max(cpus):+.1%})"
                    )
                lines.append(
                    f"  {mode} at {int(size):,}: wall {w:+.1%} ({verdict(w <= GOALS['wall_overhead'])}), "
                    f"CPU {c:+.1%} ({verdict(c <= GOALS['cpu_overhead'])}) against no ledger{spread}"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--child"]:
        print(json.dumps(child(json.loads(args_list[2]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}: to keep it working")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"numbers of items (default {SIZES})")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES + EXTRA_MODES,
        help="default: none, sqlite, postgres (postgres if a DSN is given); memory: the driver alone",
    )
    parser.add_argument("--postgres", help="PostgreSQL DSN (default: ADCREATIVE_TEST_POSTGRES_DSN)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per cell, alternating (default 1)")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/scale[-quick].json)")
    args = parser.parse_args(args_list)
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    dsn = args.postgres or os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
    modes = list(args.modes or MODES)
    note = None
    if "postgres" in modes and not dsn:
        modes.remove("postgres")
        note = "PostgreSQL left out: give --postgres DSN or set ADCREATIVE_TEST_POSTGRES_DSN"
        _log(note)
    data: dict[str, Any] = {"machine": machine(), "quick": args.quick, "goals": GOALS, "note": note}
    data.update(measure(sizes, modes, dsn, max(1, args.rounds)))
    print(report(data))
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2, default=str))
    else:
        write_results("scale-quick" if args.quick else "scale", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
