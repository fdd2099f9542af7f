"""The run ledger's costs, side by side in one run: ``python -m benchmarks.ledger [--quick]``.

- **bulk**: the bulk workload of ``benchmarks.compare`` (N background removals, renders of a few seconds,
  every result downloaded; distinct images, since a ledger renders identical inputs once) with no ledger,
  with a SQLite ledger and with a PostgreSQL ledger (when one is reachable: ``ADCREATIVE_TEST_POSTGRES_DSN``,
  or a private server started with ``.ci/postgres``). Also the cost of the other way to tell unanswered
  start calls apart, "at most one unanswered start call per (feature, user)", measured without a ledger
  as a lock per user around the start calls: over the workload's users, and with one user (the CLI's
  case). Each scenario in a fresh process against a fresh emulator process; the order rotates every run;
  medians with min and max; ratios against "no ledger" of the same run. Goals: ledger overhead <= 5 %
  wall and <= 10 % client CPU.
- **resume**: a ledger of 100,000 items, all downloaded but 1,000 (the last ones, the worst case), run
  again in a fresh process: seconds from ``process_many()`` to the first start call of the remaining work
  (goal < 2 s), and to the end; for SQLite and PostgreSQL.

Prints a table and writes ``benchmarks/results/ledger.json`` (``ledger-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    ROOT,
    cell,
    counts_diff,
    credentials_of,
    emulator,
    machine,
    process_cpu_seconds,
    request_counts,
    run_child,
    summary,
    write_results,
)

GOALS = {"wall_overhead": 0.05, "cpu_overhead": 0.10, "resume_start_seconds": 2.0}
START_ROUTE = "POST Image/BackgroundRemoving/AdCreative"

#: (name, child kind, extra params) of the bulk scenarios; "none" is the baseline.
BULK: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("none", "plain", {}),
    ("sqlite", "ledger", {"backend": "sqlite"}),
    ("postgres", "ledger", {"backend": "postgres"}),
    ("one start per user (a)", "serial", {}),
    ("none, 1 user", "plain", {"one_user": True}),
    ("one start per user (a), 1 user", "serial", {"one_user": True}),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_images(directory: Path, count: int, *, old: bool = False) -> None:
    """``count`` distinct small PNGs ``0.png``...; ``old``: modified a day ago (so their hashes are
    remembered by a ledger, as after a real first run)."""
    from adcreative_async.testing import sample_image

    past = time.time() - 86400
    for i in range(count):
        path = directory / f"{i}.png"
        path.write_bytes(sample_image("png", (4, 4), (i % 256, (i // 256) % 256, (i // 65536) % 256)))
        if old:
            os.utime(path, (past, past))


# -------------------------------------------------------------------------------------- postgres


class _PrivatePostgres:
    """``ADCREATIVE_TEST_POSTGRES_DSN``, or a private server through ``.ci/postgres`` (None if neither)."""

    def __init__(self) -> None:
        self.dsn: str | None = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str | None:
        if self.dsn is None and any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
            self._dir = tempfile.TemporaryDirectory(prefix="adcreative-bench-pg-")
            started = subprocess.run(
                [str(ROOT / ".ci" / "postgres"), "start", self._dir.name], capture_output=True, text=True
            )
            if started.returncode == 0:
                self.dsn = started.stdout.strip().splitlines()[-1]
            else:
                _log(f"no PostgreSQL: {started.stderr.strip()[-300:]}")
        return self.dsn

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            subprocess.run([str(ROOT / ".ci" / "postgres"), "stop", self._dir.name], capture_output=True)
            self._dir.cleanup()


# ------------------------------------------------------------------------------------------ bulk


def bulk_section(
    jobs: int,
    users: int,
    duration: tuple[float, float],
    runs: int,
    dsn: str | None,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    scenarios = [
        s for s in BULK if (s[0] != "postgres" or dsn) and (only is None or s[0] in only or s[0] == "none")
    ]
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in scenarios}
    with tempfile.TemporaryDirectory(prefix="adcreative-ledger-images-") as tmp:
        images = Path(tmp)
        write_images(images, jobs)
        for round_ in range(runs):
            order = scenarios[round_ % len(scenarios) :] + scenarios[: round_ % len(scenarios)]
            for name, kind, extra in order:
                user_ids = [str(uuid.uuid4()) for _ in range(1 if extra.get("one_user") else users)]
                low, high = duration
                with emulator("--task-duration", str(low), str(high)) as info:
                    before = request_counts(info["base_url"])
                    cpu = process_cpu_seconds(info["pid"])
                    params = {
                        "credentials": credentials_of(info),
                        "images": str(images),
                        "users": user_ids,
                        "jobs": jobs,
                        "dsn": dsn,
                        **extra,
                    }
                    result = run_child("benchmarks._ledger_child", kind, params)
                    result.pop("detected", None)
                    result["emulator_busy"] = (process_cpu_seconds(info["pid"]) - cpu) / result[
                        "wall_seconds"
                    ]
                    result["requests"] = counts_diff(before, request_counts(info["base_url"]))
                result["starts"] = result["requests"].get(START_ROUTE, 0)
                result["progress_requests"] = progress_requests(result["requests"])
                raw[name].append(result)
                _log(
                    f"  bulk {name}: {result['wall_seconds']:.2f} s wall, {result['cpu_seconds']:.2f} s CPU, "
                    f"{result['downloaded']}/{jobs} downloaded, {result['starts']} starts"
                )
    return {"jobs": jobs, "users": users, "task_duration": list(duration), "runs": raw}


def progress_requests(requests: dict[str, int]) -> int:
    """Progress listings asked for (each user's ``CheckUserProgress``, or the application's
    ``CheckApplicationAllProgresses`` with a ledger)."""
    return sum(n for route, n in requests.items() if "Progress" in route)


def _ratios(raw: dict[str, list[dict[str, Any]]], metric: str) -> dict[str, dict[str, float]]:
    """Per scenario, ``metric`` / the baseline's of the same run (same position), summarised."""
    base = raw["none"]
    out = {}
    for name, results in raw.items():
        values = [r[metric] / b[metric] for r, b in zip(results, base, strict=False) if b[metric]]
        out[name] = summary(values)
    return out


# ---------------------------------------------------------------------------------------- resume


#: The process and user ids written for the items "downloaded before" (any GUIDs).
_DONE_PROCESS = "00000000-0000-4000-8000-000000000001"
_DONE_USER = "00000000-0000-4000-8000-000000000002"


async def _prepare_resume(backend: str, dsn: str | None, images: Path, total: int, remaining: int) -> str:
    """A ledger where every item but the last ``remaining`` is downloaded; its spec."""
    from adcreative_async.ledger import NewItem, PostgresLedger, RenderRequest, SqliteLedger, request_keys

    ledger: Any
    if backend == "sqlite":
        spec = str(images.parent / "resume.sqlite")
        ledger = SqliteLedger(spec, synchronous="NORMAL")
    else:
        assert dsn is not None
        run = f"bench-{uuid.uuid4().hex[:8]}"
        spec = f"{dsn}#{run}"
        ledger = PostgresLedger(dsn, run=run)
    async with ledger:
        requests = [RenderRequest.remove_background(images / f"{i}.png") for i in range(total)]
        keys = []
        for start in range(0, total, 5000):
            keys += await request_keys(requests[start : start + 5000], ledger)
        items = [
            NewItem(str(k), i, r.label, r.feature)
            for i, (k, r) in enumerate(zip(keys, requests, strict=True))
        ]
        await ledger.register(items)
        done = total - remaining
        if backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(spec)
            conn.execute(
                "UPDATE items SET state = 'downloaded', process_id = ?, user_id = ?, files = '[\"x.png\"]' "
                "WHERE seq < ?",
                (_DONE_PROCESS, _DONE_USER, done),
            )
            conn.commit()
            conn.close()
        else:
            await ledger._execute(
                "UPDATE adcreative_items SET state = 'downloaded', process_id = $3, user_id = $4, "
                "files = '[\"x.png\"]' WHERE run = $1 AND seq < $2",
                ledger.run,
                done,
                _DONE_PROCESS,
                _DONE_USER,
            )
    return spec


def resume_section(total: int, remaining: int, dsn: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"items": total, "remaining": remaining}
    for backend in ("sqlite", "postgres"):
        if backend == "postgres" and not dsn:
            continue
        with tempfile.TemporaryDirectory(prefix="adcreative-ledger-resume-") as tmp:
            images = Path(tmp) / "in"
            images.mkdir()
            started = time.monotonic()
            write_images(images, total, old=True)
            spec = asyncio.run(_prepare_resume(backend, dsn, images, total, remaining))
            _log(f"  resume {backend}: prepared {total:,} items in {time.monotonic() - started:.1f} s")
            with emulator("--task-duration", "0.05", "0.2") as info:
                before = request_counts(info["base_url"])
                params = {
                    "credentials": credentials_of(info),
                    "images": str(images),
                    "total": total,
                    "ledger": spec,
                    "out": str(Path(tmp) / "out"),
                }
                result = run_child("benchmarks._ledger_child", "resume", params)
                result["starts"] = counts_diff(before, request_counts(info["base_url"])).get(START_ROUTE, 0)
            _log(
                f"  resume {backend}: first start after {result['first_start_seconds']:.2f} s, "
                f"{result['starts']} starts, all done after {result['wall_seconds']:.2f} s"
            )
            results[backend] = result
    return results


# ----------------------------------------------------------------------------------------- report


def report(data: dict[str, Any]) -> str:
    lines = [
        f"Run ledger benchmark ({data['machine']['cores']} cores, Python {data['machine']['python']})",
        "",
    ]
    bulk = data.get("bulk")
    if bulk:
        raw = bulk["runs"]
        wall, cpu = _ratios(raw, "wall_seconds"), _ratios(raw, "cpu_seconds")
        lines.append(
            f"Bulk: {bulk['jobs']:,} background removals, renders of {bulk['task_duration'][0]}-"
            f"{bulk['task_duration'][1]} s, {len(raw['none'])} runs (median (min-max); ratios against "
            "no ledger in the same run)"
        )
        lines.append(
            f"{'scenario':34} {'wall s':>18} {'CPU s':>18} {'wall ratio':>20} {'CPU ratio':>20} "
            f"{'starts':>7} {'progress req':>12}"
        )
        for name, results in raw.items():
            lines.append(
                f"{name:34} {cell(summary([r['wall_seconds'] for r in results]), '.2f'):>18} "
                f"{cell(summary([r['cpu_seconds'] for r in results]), '.2f'):>18} "
                f"{cell(wall[name], '.3f'):>20} {cell(cpu[name], '.3f'):>20} "
                f"{statistics.median(r['starts'] for r in results):>7.0f} "
                f"{statistics.median(progress_requests(r['requests']) for r in results):>12.0f}"
            )
        lines.append("")
    resume = data.get("resume")
    if resume:
        lines.append(
            f"Resume: {resume['items']:,} items, all downloaded but the last {resume['remaining']:,}"
        )
        for backend in ("sqlite", "postgres"):
            if backend in resume:
                r = resume[backend]
                lines.append(
                    f"  {backend:9} first start call after {r['first_start_seconds']:.2f} s (goal < "
                    f"{GOALS['resume_start_seconds']:.0f} s); {r['starts']} start calls; every outcome after "
                    f"{r['wall_seconds']:.2f} s"
                )
        lines.append("")
    lines += goals_lines(data)
    return "\n".join(lines)


def goals_lines(data: dict[str, Any]) -> list[str]:
    lines = ["Goals:"]
    bulk = data.get("bulk")
    if bulk:
        raw = bulk["runs"]
        wall, cpu = _ratios(raw, "wall_seconds"), _ratios(raw, "cpu_seconds")
        for name in ("sqlite", "postgres"):
            if name in raw:
                w, c = wall[name]["median"] - 1, cpu[name]["median"] - 1
                lines.append(
                    f"  {name}: wall {w:+.1%} (goal <= {GOALS['wall_overhead']:.0%}: "
                    f"{'met' if w <= GOALS['wall_overhead'] else 'NOT met'}), CPU {c:+.1%} (goal <= "
                    f"{GOALS['cpu_overhead']:.0%}: {'met' if c <= GOALS['cpu_overhead'] else 'NOT met'})"
                )
    resume = data.get("resume")
    if resume:
        for backend in ("sqlite", "postgres"):
            if backend in resume:
                s = resume[backend]["first_start_seconds"]
                met = s < GOALS["resume_start_seconds"]
                lines.append(
                    f"  resume {backend}: {s:.2f} s to the first start call ({'met' if met else 'NOT met'})"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to keep the benchmark working")
    parser.add_argument(
        "--runs",
        type=int,
        help="bulk runs per scenario (default 7: the client CPU of identical runs varies by 10-20 %% on a "
        "shared machine, so a 10 %% goal needs the median of several; quick 1)",
    )
    parser.add_argument("--only", default="bulk,resume", help="sections: bulk,resume")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/ledger[-quick].json)")
    parser.add_argument(
        "--scenarios",
        help=f"bulk scenarios, comma-separated (default all; 'none', the baseline, always runs): "
        f"{', '.join(name for name, _, _ in BULK)}",
    )
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    only = args.scenarios.split(",") if args.scenarios else None
    if only is not None and (unknown := set(only) - {name for name, _, _ in BULK}):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    data: dict[str, Any] = {"machine": machine(), "quick": args.quick, "goals": GOALS}
    with _PrivatePostgres() as dsn:
        if "bulk" in sections:
            if args.quick:
                data["bulk"] = bulk_section(20, 2, (0.2, 0.6), args.runs or 1, dsn, only)
            else:
                data["bulk"] = bulk_section(1000, 10, (2.0, 6.0), args.runs or 7, dsn, only)
        if "resume" in sections:
            total, remaining = (2000, 100) if args.quick else (100_000, 1000)
            data["resume"] = resume_section(total, remaining, dsn)
    text = report(data)
    print(text)
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2, default=str))
    else:
        write_results("ledger-quick" if args.quick else "ledger", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
