"""The per-job path against the loop users write themselves: CPU of whole processes, imports included.

``python -m benchmarks.perjob`` runs, alternating (the order rotates every round), each in a fresh
process against a fresh emulator process seeded with the round's number (the same render durations
for every contender of a round):

- ``sdk``: README's first waiting example per job (``remove()`` → ``wait_until_complete()`` →
  ``download()`` of each succeeded task), every job gathered, the client with its defaults
  (``trust_env=True``): ``benchmarks.compare.sdk``'s ``waits`` workload;
- ``aiohttp-json``: the hand-written per-job poller on aiohttp + the standard library's json (one task
  per job: start call, ``CheckUserProgress`` filtered by its id every second, then the download):
  ``benchmarks.compare.aiohttp_loop``.

The figure is the CPU of the whole child process (user + system from ``wait4``: the interpreter's
start, the imports, the work and the exit; the package and ``benchmarks/`` are compiled to bytecode
before the first round, as ``pip install`` does: see :func:`compile_bytecode`), beside its wall time
(the workload, from nothing to the last file written, as ``benchmarks.compare`` measures it), the
requests the emulator counted by route and the context switches of the process. Ratios are against
the aiohttp loop of the same run. With ``--strace`` one more round runs under ``strace -c -f`` (its
CPU figures are not used): system calls and ``futex`` calls per job, the cost of thread hand-offs.

Each process imports what its own loop uses, no more: the json loop's never imports msgspec (its
msgspec models are in ``benchmarks.compare._loop_msgspec``, imported by the msgspec contender only),
and neither imports the other's stack.

Goals (issue 23): SDK CPU <= 0.8x the loop's, imports included, in one run; wall time within 1.10 of
the fastest.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    ROOT,
    counts_diff,
    credentials_of,
    emulator,
    log,
    machine,
    request_counts,
    summary,
    write_images,
    write_results,
)

GOALS = {"cpu_ratio": 0.8, "wall_slack": 0.10}
PROGRESS_ROUTES = (
    "GET Image/BackgroundRemoving/CheckUserProgress",
    "GET Image/BackgroundRemoving/CheckApplicationAllProgresses",
)


@dataclass(frozen=True)
class Contender:
    """One way of running the per-job workload, in its own process."""

    key: str
    module: str
    kind: str
    params: dict[str, Any]
    what: str


BASELINE = "aiohttp-json"
CONTENDERS = (
    Contender(
        "sdk",
        "benchmarks.compare.sdk",
        "waits",
        {"trust_env": True},
        "SDK, client defaults: remove() -> wait_until_complete() -> download() per job, gathered",
    ),
    Contender(
        BASELINE,
        "benchmarks.compare.aiohttp_loop",
        "per-job",
        {"interval": 1.0, "codec": "json"},
        "hand-written per-job poller: aiohttp + json, filtered CheckUserProgress every 1 s",
    ),
)
EXTRA = (
    Contender(
        "sdk-no-env",
        "benchmarks.compare.sdk",
        "waits",
        {"trust_env": False},
        "the SDK contender with trust_env=False",
    ),
    Contender(
        "aiohttp-msgspec",
        "benchmarks.compare.aiohttp_loop",
        "per-job",
        {"interval": 1.0, "codec": "msgspec"},
        "the per-job poller on aiohttp + msgspec",
    ),
)


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    jobs: int
    users: int
    task_duration: tuple[float, float]
    runs: int


FULL = Plan(jobs=500, users=10, task_duration=(1.8, 6.0), runs=3)
QUICK = Plan(jobs=20, users=2, task_duration=(0.2, 0.8), runs=1)


def compile_bytecode() -> dict[str, Any]:
    """Compile the package and the benchmarks' modules ahead, as ``pip install`` does for an installed
    package, so that every child loads bytecode instead of compiling the sources it imports.

    Without this, a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (or from a read-only tree) compiles
    every module of the SDK again in every child: 55-95 ms of CPU per process on this machine, billed to
    the SDK (aiohttp and the standard library come precompiled with their installs). The bytecode goes
    where the interpreter looks for it (``__pycache__`` beside the sources, or ``PYTHONPYCACHEPREFIX``);
    a stale file is never used (the source's mtime is checked)."""
    ok = all(
        compileall.compile_dir(str(ROOT / name), quiet=1, force=False)
        for name in ("adcreative_async", "benchmarks")
    )
    return {"compiled_ahead": ok, "pycache_prefix": sys.pycache_prefix}


def run_process(
    command: list[str], *, strace_to: Path | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``command`` (a contender's child) to its end: its result (the last line of its output) and
    its resource usage from ``wait4`` (CPU, context switches), the whole process's."""
    if strace_to is not None:
        command = ["strace", "-c", "-f", "-o", str(strace_to), *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command[-3:-1]} failed:\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result, {
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "voluntary_switches": float(usage.ru_nvcsw),
        "involuntary_switches": float(usage.ru_nivcsw),
    }


def one_run(
    contender: Contender, plan: Plan, images: Path, seed: int, strace_to: Path | None = None
) -> dict[str, Any]:
    """One contender, once, against a fresh emulator seeded with ``seed``."""
    users = [str(uuid.uuid4()) for _ in range(plan.users)]
    low, high = plan.task_duration
    with emulator("--task-duration", str(low), str(high), "--seed", str(seed)) as info:
        before = request_counts(info["base_url"])
        params = {
            "credentials": credentials_of(info),
            "images": str(images),
            "users": users,
            "jobs": plan.jobs,
            **contender.params,
        }
        command = [sys.executable, "-m", contender.module, "--child", contender.kind, json.dumps(params)]
        started = time.monotonic()
        result, usage = run_process(command, strace_to=strace_to)
        process_wall = time.monotonic() - started
        requests = counts_diff(before, request_counts(info["base_url"]))
    if result["downloaded"] != plan.jobs or result["error_count"]:
        raise RuntimeError(
            f"{contender.key}: {result['downloaded']}/{plan.jobs} downloaded, errors {result['errors']}"
        )
    return {
        **usage,
        "wall_seconds": float(result["wall_seconds"]),
        "workload_cpu_seconds": float(result["cpu_seconds"]),
        "process_wall_seconds": process_wall,
        "requests": requests,
        "total_requests": sum(requests.values()),
        "progress_requests": sum(requests.get(route, 0) for route in PROGRESS_ROUTES),
        "seed": seed,
    }


METRICS = (
    "cpu_seconds",
    "user_seconds",
    "system_seconds",
    "workload_cpu_seconds",
    "wall_seconds",
    "process_wall_seconds",
    "total_requests",
    "progress_requests",
    "voluntary_switches",
    "involuntary_switches",
)


def strace_totals(path: Path) -> dict[str, int]:
    """``strace -c``'s call counts: every system call, and ``futex`` alone."""
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3])
    return {"syscalls": sum(calls.values()), "futex": calls.get("futex", 0)}


def run(plan: Plan, contenders: Sequence[Contender], seed: int, strace: bool) -> dict[str, Any]:
    """Every contender ``plan.runs`` times, alternating; ratios against the baseline, per round too."""
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in contenders}
    straced: dict[str, dict[str, int]] = {}
    bytecode = compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="adcreative-perjob-") as tmp:
        images = Path(tmp)
        write_images(images, plan.jobs)
        for round_ in range(plan.runs):
            shift = round_ % len(contenders)
            for contender in [*contenders[shift:], *contenders[:shift]]:
                log(f"{contender.key}, run {round_ + 1}/{plan.runs}")
                result = one_run(contender, plan, images, seed + round_)
                runs[contender.key].append(result)
                log(
                    f"  CPU {result['cpu_seconds']:.2f} s (workload {result['workload_cpu_seconds']:.2f} s), "
                    f"wall {result['wall_seconds']:.2f} s, requests {result['total_requests']}"
                )
        if strace and shutil.which("strace"):
            for contender in contenders:
                log(f"{contender.key}, under strace -c -f")
                trace = Path(tmp) / f"strace-{contender.key}.txt"
                one_run(contender, plan, images, seed, strace_to=trace)
                totals = strace_totals(trace)
                straced[contender.key] = {
                    **totals,
                    "syscalls_per_job": round(totals["syscalls"] / plan.jobs),
                    "futex_per_job": round(totals["futex"] / plan.jobs),
                }
    out: dict[str, Any] = {}
    base = runs.get(BASELINE)
    for contender in contenders:
        results = runs[contender.key]
        entry: dict[str, Any] = {
            "what": contender.what,
            **{m: summary([float(r[m]) for r in results]) for m in METRICS},
            "requests": {
                route: statistics.median(float(r["requests"].get(route, 0)) for r in results)
                for route in sorted({route for r in results for route in r["requests"]})
            },
            "runs": results,
        }
        if base is not None:
            entry["cpu_ratio_per_round"] = [
                r["cpu_seconds"] / b["cpu_seconds"] for r, b in zip(results, base, strict=True)
            ]
            entry["cpu_ratio"] = statistics.median(r["cpu_seconds"] for r in results) / statistics.median(
                b["cpu_seconds"] for b in base
            )
        if contender.key in straced:
            entry["strace"] = straced[contender.key]
        out[contender.key] = entry
    fastest = min(statistics.median(r["wall_seconds"] for r in runs[c.key]) for c in contenders)
    for contender in contenders:
        out[contender.key]["wall_vs_fastest"] = (
            statistics.median(r["wall_seconds"] for r in runs[contender.key]) / fastest
        )
    return {
        "plan": plan.__dict__,
        "goals": GOALS,
        "machine": machine(),
        "bytecode": bytecode,
        "contenders": out,
    }


def table(data: dict[str, Any]) -> str:
    """The report: one column per contender, ratios and goals under it."""
    contenders = data["contenders"]
    keys = list(contenders)
    rows: list[list[str]] = [["", *keys]]

    def row(label: str, metric: str, spec: str) -> None:
        cells = []
        for key in keys:
            stats = contenders[key][metric]
            cells.append(f"{stats['median']:{spec}} ({stats['min']:{spec}}-{stats['max']:{spec}})")
        rows.append([label, *cells])

    row("process CPU, imports included (s)", "cpu_seconds", ".2f")
    row("  of which system (s)", "system_seconds", ".2f")
    row("workload CPU (s)", "workload_cpu_seconds", ".2f")
    row("wall time, workload (s)", "wall_seconds", ".2f")
    row("requests", "total_requests", ".0f")
    row("  progress requests", "progress_requests", ".0f")
    row("voluntary context switches", "voluntary_switches", ".0f")
    if all("cpu_ratio" in contenders[k] for k in keys):
        rows.append(["CPU ratio to the aiohttp loop", *(f"{contenders[k]['cpu_ratio']:.2f}" for k in keys)])
        rows.append(
            [
                "  per round",
                *(", ".join(f"{x:.2f}" for x in contenders[k]["cpu_ratio_per_round"]) for k in keys),
            ]
        )
    rows.append(["wall / fastest", *(f"{contenders[k]['wall_vs_fastest']:.3f}" for k in keys)])
    if all("strace" in contenders[k] for k in keys):
        rows.append(
            ["syscalls per job (strace)", *(str(contenders[k]["strace"]["syscalls_per_job"]) for k in keys)]
        )
        rows.append(
            ["futex calls per job (strace)", *(str(contenders[k]["strace"]["futex_per_job"]) for k in keys)]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    sdk = contenders.get("sdk")
    if sdk is not None and "cpu_ratio" in sdk:
        cpu_ok = sdk["cpu_ratio"] <= GOALS["cpu_ratio"]
        wall_ok = sdk["wall_vs_fastest"] <= 1 + GOALS["wall_slack"]
        lines += [
            "",
            f"goal: SDK CPU <= {GOALS['cpu_ratio']}x the aiohttp loop's, imports included: "
            f"{sdk['cpu_ratio']:.2f}x ({'met' if cpu_ok else 'NOT met'})",
            f"goal: SDK wall within {1 + GOALS['wall_slack']:.2f} of the fastest: "
            f"{sdk['wall_vs_fastest']:.3f} ({'met' if wall_ok else 'NOT met'})",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perjob", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test for CI")
    parser.add_argument("--runs", type=int, help="rounds (each contender once per round)")
    parser.add_argument("--jobs", type=int, help="jobs per run")
    parser.add_argument("--seed", type=int, default=0, help="the first round's emulator seed")
    parser.add_argument(
        "--contenders",
        help="comma-separated, of "
        + ",".join(c.key for c in (*CONTENDERS, *EXTRA))
        + " (default: sdk,aiohttp-json)",
    )
    parser.add_argument(
        "--strace", action="store_true", help="one more round under strace -c -f: syscalls per job"
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(plan.jobs, plan.users, plan.task_duration, args.runs)
    if args.jobs:
        plan = Plan(args.jobs, plan.users, plan.task_duration, plan.runs)
    contenders: list[Contender] = list(CONTENDERS)
    if args.contenders:
        known = {c.key: c for c in (*CONTENDERS, *EXTRA)}
        wanted = [k.strip() for k in args.contenders.split(",") if k.strip()]
        if set(wanted) - set(known):
            parser.error(f"contenders are {sorted(known)}")
        contenders = [known[k] for k in wanted]
    started = time.monotonic()
    data = run(plan, contenders, args.seed, args.strace)
    data["elapsed_seconds"] = time.monotonic() - started
    print(table(data))
    path = write_results("perjob-quick" if args.quick else "perjob", data, args.output)
    print(f"\n{'quick' if args.quick else 'full'} run in {data['elapsed_seconds']:.0f} s; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
