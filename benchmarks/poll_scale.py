"""The poll scheduler alone at scale: CPU per poll and per awaited job as the awaited set grows, a
listing much larger than the awaited set, and a bulk run against a listing that omits finished processes.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.poll_scale            # 500, 5,000, 50,000 awaited; a 100,000 listing; 20,000 items
    python -m benchmarks.poll_scale --quick    # tiny sizes, seconds: CI keeps it working

Scenarios (each in a fresh process):

- ``scheduler``: N processes of one user, each awaited by its own waiter (a plain watch, as
  ``job.result()`` makes), polled through the client's :class:`~adcreative_async._polling.PollScheduler`
  against an in-process stand-in for the API (no sockets: the scheduler's own work). Every poll answers a
  listing of all N in which a tenth of the processes moved on (so a tenth of the waiters wake); the last
  poll finishes them all. Client CPU per poll and per awaited job per poll, the stand-in's own work (the
  listing's JSON) subtracted. The ratios against the smallest size say whether the cost is flat in N.
- ``listing``: 500 awaited processes in a listing of L (100,000): CPU per poll, against decoding the same
  listing in full (what every poll did before the lazy listing), and the memory a streamed read of it
  holds at its peak (the stand-in's body, which a real poll never holds, not counted).
- ``bulk``: ``client.bulk`` over N small images (20,000) against the emulator in its own process,
  each result downloaded (a bulk run's own path: a process that leaves a listing known to omit finished
  processes is then downloaded, not asked for by id), with the normal listing and with
  ``--no-list-finished``: progress requests (the emulator's counters), wall time and client CPU, side by
  side. ``--bulk-only`` runs just this scenario.

Prints a table, writes ``benchmarks/results/poll_scale.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Collection, Container, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel

import adcreative_async
from adcreative_async import AdCreativeClient, PollPolicy, Progress, Timeout
from adcreative_async._clock import SystemClock
from adcreative_async._models import decode_progress_list
from adcreative_async._polling import PollScheduler, Snapshot, Target, Watch
from adcreative_async.testing import sample_image

try:
    from adcreative_async._listing import read_listing

    STREAMED = True
except ImportError:  # a baseline checkout (--baseline) without the streamed listing
    STREAMED = False
if TYPE_CHECKING:
    from adcreative_async.resources._base import RenderResource
from benchmarks._harness import (
    ROOT,
    credentials_of,
    emulator,
    machine,
    process_cpu_seconds,
    request_counts,
    run_child,
    summary,
    write_results,
)

MODULE = "benchmarks.poll_scale"
FEATURE = "background_remover"
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROGRESS_ROUTES = (
    "GET Image/BackgroundRemoving/CheckUserProgress",
    "GET Image/BackgroundRemoving/CheckApplicationAllProgresses",
)
#: Every poll, this share of the processes moves on (their waiters wake).
CHANGING = 0.1
#: Polls before the last one, which finishes every process.
POLLS = 12


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    awaited: tuple[int, ...]
    listed: int
    bulk_items: int
    runs: int


FULL = Plan(awaited=(500, 5_000, 50_000), listed=100_000, bulk_items=20_000, runs=3)
QUICK = Plan(awaited=(50, 200), listed=2_000, bulk_items=200, runs=1)


# ------------------------------------------------------------------------------- the stand-in API


def _element(index: int, pid: str, task: str, step: int, done: bool) -> bytes:
    state = 5 if done else 1
    percent = 100 if done else min(99, step)
    return (
        f'{{"$id":"{index + 2}","messageType":"ImageBackgroundRemovingProgress","requestRenderState":{state},'
        f'"applicationId":"d5eabbb8-c0f6-4640-94fd-3566edad499f","userId":"{USER}",'
        f'"imageRenderProcessId":"{pid}","totalTaskCount":1,"completedTaskCount":{int(done)},'
        f'"progress":{percent},"tasks":{{"$id":"x{index}","{task}":{state}}},"renderType":8,'
        f'"isSuccessful":true,"errorMessage":""}}'
    ).encode()


class _Feature:
    name = FEATURE

    def is_assumed(self, what: str) -> bool:
        return True


class _StandIn:
    """Answers the scheduler's listings from generated JSON (its CPU is measured, to be subtracted)."""

    feature = _Feature()

    def __init__(self, pids: list[str], tasks: list[str], awaited: int) -> None:
        self.pids = pids
        self.tasks = tasks
        self.awaited = awaited
        self.polls = 0
        self.own_cpu = 0.0
        self.body_bytes = 0

    def body(self, poll: int) -> bytes:
        done = poll >= POLLS
        period = round(1 / CHANGING)
        parts = [
            _element(i, pid, self.tasks[i], (poll + i % period) // period, done and i < self.awaited)
            for i, pid in enumerate(self.pids)
        ]
        return b'{"$id":"1","$values":[' + b",".join(parts) + b"]}"

    async def _listing(
        self, user: str | None, wanted: Container[str] = (), users: Collection[str] = ()
    ) -> Any:
        started = time.process_time()
        body = self.body(self.polls)
        self.body_bytes = len(body)
        self.polls += 1
        self.own_cpu += time.process_time() - started
        await anyio.lowlevel.checkpoint()  # the answer arrives later, as over a socket
        if not STREAMED:  # a baseline checkout: its lazy listing of the whole body
            from adcreative_async import _models

            return getattr(_models, "ProgressListing")(body)  # noqa: B009 (not in this checkout)
        return read_listing(body, wanted, users=users)  # fed in chunks, as the transport feeds it

    async def user_progress(self, user_id: Any = None, process_id: Any = None) -> list[Progress]:
        if process_id is not None:
            return []
        # the listing as a scheduler without the lazy listing asks for it (``--baseline``)
        started = time.process_time()
        body = self.body(self.polls)
        self.body_bytes = len(body)
        self.polls += 1
        self.own_cpu += time.process_time() - started
        await anyio.lowlevel.checkpoint()
        return decode_progress_list(body)


async def child_scheduler(params: dict[str, Any]) -> dict[str, Any]:
    """N awaited processes in a listing of ``listed``: CPU per poll of the scheduler."""
    awaited: int = params["awaited"]
    listed: int = max(params["listed"], awaited)
    pids = [str(uuid.uuid4()) for _ in range(listed)]
    tasks = [str(uuid.uuid4()) for _ in range(listed)]
    stand_in = _StandIn(pids, tasks, awaited)
    policy = PollPolicy(
        initial_interval=0.001,
        max_interval=0.001,
        min_interval=0.001,
        jitter=None,
        max_requests_per_second=1e9,
        burst=1_000_000,
        share_listings=False,
    )
    clock = SystemClock()
    finished = 0
    async with anyio.create_task_group() as group:
        scheduler = PollScheduler(
            spawn=cast("Callable[..., None]", group.start_soon),
            resource_for=lambda name: cast("RenderResource", stand_in),
            policy=policy,
            clock=clock,
        )

        async def wait(pid: str) -> None:
            nonlocal finished
            target = Target(key=(FEATURE, USER), process_id=pid, submitted_at=clock.monotonic())
            watch = Watch([target])
            seen = 0
            while True:
                snap: Snapshot | None = scheduler.snapshot((FEATURE, USER), pid)
                if snap is not None and snap.version > seen:
                    seen = snap.version
                    if snap.progress.is_complete:
                        finished += 1
                        return
                await scheduler.wait(watch)

        if not params.get("gc", True):
            gc.collect()
            gc.disable()  # how much of the cost is the cyclic collector's, over a heap that grows with N
        cpu = time.process_time()
        async with anyio.create_task_group() as waits:
            for pid in pids[:awaited]:
                waits.start_soon(wait, pid)
        cpu = time.process_time() - cpu - stand_in.own_cpu
        gc.enable()
        scheduler.close()
    polls = stand_in.polls
    return {
        "awaited": awaited,
        "listed": listed,
        "polls": polls,
        "finished": finished,
        "cpu_per_poll": cpu / polls,
        "cpu_per_job_poll": cpu / polls / awaited,
        "body_bytes": stand_in.body_bytes,
        "package": adcreative_async.__file__,
    }


async def child_listing(params: dict[str, Any]) -> dict[str, Any]:
    """A listing of ``listed`` with ``awaited`` followed: the scheduler's poll against a full decode."""
    result = await child_scheduler(params)
    listed: int = result["listed"]
    pids = [str(uuid.uuid4()) for _ in range(listed)]
    body = _StandIn(pids, pids, 0).body(0)
    rounds = 3
    cpu = time.process_time()
    for _ in range(rounds):
        decode_progress_list(body)
    result["full_decode_per_poll"] = (time.process_time() - cpu) / rounds
    wanted = dict.fromkeys(pids[: result["awaited"]])

    def read() -> object:
        if not STREAMED:  # a baseline checkout: its lazy listing (every element's ids, the body held)
            from adcreative_async import _models

            return getattr(_models, "ProgressListing")(body)  # noqa: B009 (not in this checkout)
        return read_listing(body, wanted)

    cpu = time.process_time()
    for _ in range(rounds):
        read()
    result["light_pass_per_poll"] = (time.process_time() - cpu) / rounds
    tracemalloc.start()
    listing = read()
    result["listing_heap_bytes"] = tracemalloc.get_traced_memory()[1]  # the body itself is not counted
    tracemalloc.stop()
    del listing
    return result


async def child_bulk(params: dict[str, Any]) -> dict[str, Any]:
    """``client.bulk`` over N distinct images, each result downloaded: progress requests, wall, CPU."""
    credentials: dict[str, str] = params["credentials"]
    images = [sample_image("png", (8, 8)) + i.to_bytes(4, "big") for i in range(params["items"])]
    before = request_counts(credentials["base_url"])
    cpu = time.process_time()
    started = time.monotonic()
    ok = 0
    client = AdCreativeClient(
        **credentials,  # type: ignore[arg-type]
        user_id=USER,
        trust_env=False,
        timeout=Timeout(connect=10, read=120),
    )
    with tempfile.TemporaryDirectory() as out:
        async with (
            client,
            client.bulk(images, lambda c, image: c.background_remover.remove(image), dest=out) as run,
        ):
            async for outcome in run:
                ok += outcome.ok
        wall = time.monotonic() - started
    cpu = time.process_time() - cpu
    after = request_counts(credentials["base_url"])
    progress = sum(after.get(route, 0) - before.get(route, 0) for route in PROGRESS_ROUTES)
    return {"items": params["items"], "ok": ok, "progress_requests": progress, "wall": wall, "cpu": cpu}


CHILDREN = {"scheduler": child_scheduler, "listing": child_listing, "bulk": child_bulk}


# ------------------------------------------------------------------------------------------ driver


#: Runs this module's child with the package of another checkout first on the path (``-m`` would put
#: the working directory, this checkout, first).
_BASELINE_BOOT = (
    "import runpy, sys; root, base = sys.argv[1:3]; sys.path.insert(0, root); import benchmarks; "
    "sys.path.insert(0, base); import adcreative_async; "
    "assert adcreative_async.__file__.startswith(base), adcreative_async.__file__; "
    "sys.argv = [sys.argv[0], *sys.argv[3:]]; runpy.run_module('benchmarks.poll_scale', run_name='__main__')"
)


def _baseline_child(path: str, params: dict[str, Any], kind: str = "scheduler") -> dict[str, Any]:
    """A scenario (``kind``) with the package found at ``path`` (another checkout)."""
    base = os.path.abspath(path)
    command = [
        sys.executable,
        "-c",
        _BASELINE_BOOT,
        str(ROOT),
        base,
        "--child",
        kind,
        json.dumps(params),
    ]
    completed = subprocess.run(command, cwd=base, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"baseline scenario failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run(plan: Plan, baseline: str | None = None, *, bulk_only: bool = False) -> dict[str, Any]:
    """Every scenario, sizes alternating within each round (and ``baseline``'s scheduler beside);
    ``bulk_only``: the bulk scenario alone."""
    if bulk_only:
        return {"plan": asdict(plan), "machine": machine(), "bulk": _bulk_runs(plan)}
    sizes: dict[int, list[dict[str, Any]]] = {n: [] for n in plan.awaited}
    before: dict[int, list[dict[str, Any]]] = {n: [] for n in plan.awaited}
    no_gc: dict[int, list[dict[str, Any]]] = {n: [] for n in plan.awaited}
    listing: list[dict[str, Any]] = []
    for round_ in range(plan.runs):
        order = list(plan.awaited) if round_ % 2 == 0 else list(reversed(plan.awaited))
        for n in order:
            sizes[n].append(run_child(MODULE, "scheduler", {"awaited": n, "listed": n}))
            no_gc[n].append(run_child(MODULE, "scheduler", {"awaited": n, "listed": n, "gc": False}))
            if baseline is not None:
                before[n].append(_baseline_child(baseline, {"awaited": n, "listed": n}))
        large = {"awaited": min(500, plan.listed), "listed": plan.listed}
        listing.append(run_child(MODULE, "listing", large))
        if baseline is not None:
            listing[-1]["baseline_cpu_per_poll"] = _baseline_child(baseline, large)["cpu_per_poll"]
    bulk = _bulk_runs(plan)
    base = plan.awaited[0]
    per_job = {n: summary([r["cpu_per_job_poll"] for r in rows]) for n, rows in sizes.items()}
    return {
        "plan": asdict(plan),
        "machine": machine(),
        "scheduler": {str(n): rows for n, rows in sizes.items()},
        "per_job_poll": {str(n): stats for n, stats in per_job.items()},
        "ratios": {str(n): per_job[n]["median"] / per_job[base]["median"] for n in plan.awaited},
        "no_gc_per_job_poll": {
            str(n): summary([r["cpu_per_job_poll"] for r in rows]) for n, rows in no_gc.items()
        },
        "baseline": baseline,
        "baseline_per_job_poll": {
            str(n): summary([r["cpu_per_job_poll"] for r in rows]) for n, rows in before.items() if rows
        },
        "listing": listing,
        "bulk": bulk,
    }


def _bulk_runs(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """The bulk scenario, the normal listing and ``--no-list-finished`` alternating."""
    bulk: dict[str, list[dict[str, Any]]] = {"normal": [], "no-list-finished": []}
    for round_ in range(plan.runs if plan.bulk_items <= 2_000 else 1):
        modes = ["normal", "no-list-finished"] if round_ % 2 == 0 else ["no-list-finished", "normal"]
        for mode in modes:
            flags = ["--task-duration", "0.5", "1.5"] + (["--no-list-finished"] if mode != "normal" else [])
            with emulator(*flags) as info:
                emulator_cpu = process_cpu_seconds(info["pid"])
                result = run_child(
                    MODULE, "bulk", {"credentials": credentials_of(info), "items": plan.bulk_items}
                )
                result["emulator_cpu"] = process_cpu_seconds(info["pid"]) - emulator_cpu
            bulk[mode].append(result)
    return bulk


def table(data: dict[str, Any]) -> str:
    """The results as a text table."""
    if "scheduler" not in data:  # --bulk-only
        return "\n".join(_bulk_lines(data))
    lines = ["scheduler alone: N awaited in a listing of N, a tenth moving on each poll", ""]
    lines.append(f"{'awaited':>8} {'ms/poll (med)':>14} {'µs/job/poll (med, min-max)':>28} {'ratio':>7}")
    for n, rows in data["scheduler"].items():
        per_poll = summary([r["cpu_per_poll"] for r in rows])
        stats = data["per_job_poll"][n]
        old = data["baseline_per_job_poll"].get(n)
        versus = (
            f"   baseline {old['median'] * 1e6:.2f} µs (x{stats['median'] / old['median']:.2f})"
            if old
            else ""
        )
        lines.append(
            f"{int(n):>8} {per_poll['median'] * 1e3:>14.2f} "
            f"{stats['median'] * 1e6:>10.2f} ({stats['min'] * 1e6:.2f}-{stats['max'] * 1e6:.2f}){'':>6}"
            f"{data['ratios'][n]:>7.2f}{versus}"
        )
    lines += _no_gc_lines(data)
    lines += ["", "a listing much larger than the awaited set"]
    for row in data["listing"][:1]:
        listed = row["listed"]
        light, full = row["light_pass_per_poll"], row["full_decode_per_poll"]
        lines.append(
            f"  {row['awaited']} awaited in {listed:,}: {row['cpu_per_poll'] * 1e3:.1f} ms/poll; "
            f"the streamed read {light * 1e3:.1f} ms ({light / listed * 1e6:.2f} µs/element), "
            f"a full decode {full * 1e3:.1f} ms (x{full / light:.1f}); body {row['body_bytes'] / listed:.0f} "
            f"B/element, a read's peak heap {row['listing_heap_bytes'] / 1024:.0f} KiB (body not counted)"
        )
        if "baseline_cpu_per_poll" in row:
            old = row["baseline_cpu_per_poll"]
            lines.append(f"  baseline: {old * 1e3:.1f} ms/poll (x{row['cpu_per_poll'] / old:.2f})")
    lines += ["", *_bulk_lines(data)]
    return "\n".join(lines)


def _bulk_lines(data: dict[str, Any]) -> list[str]:
    lines = ["bulk run (each result downloaded), normal listing vs --no-list-finished"]
    normal = data["bulk"]["normal"]
    for mode, rows in data["bulk"].items():
        for row, base in zip(rows, normal, strict=False):
            requests = row["progress_requests"] / max(1, base["progress_requests"])
            lines.append(
                f"  {mode:>17}: {row['ok']}/{row['items']} ok, {row['progress_requests']} progress "
                f"requests (x{requests:.1f}), wall {row['wall']:.1f} s (x{row['wall'] / base['wall']:.2f}), "
                f"client CPU {row['cpu'] / row['items'] * 1e3:.2f} ms/item"
            )
    return lines


def _no_gc_lines(data: dict[str, Any]) -> list[str]:
    stats = data["no_gc_per_job_poll"]
    first = next(iter(stats.values()))["median"]
    return [
        f"{int(n):>8} {row['median'] * 1e6:>10.2f} µs/job/poll, cyclic GC off (x{row['median'] / first:.2f})"
        for n, row in stats.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one scenario in this process)."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also run the scheduler scenario with the package of another checkout (e.g. the main branch)",
    )
    parser.add_argument("--bulk-only", action="store_true", help="only the bulk scenario")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, params = args.child
        result = anyio.run(CHILDREN[kind], json.loads(params))
        print(json.dumps(result))
        return 0
    data = run(QUICK if args.quick else FULL, args.baseline, bulk_only=args.bulk_only)
    print(table(data))
    print(f"\nwrote {write_results('poll_scale-quick' if args.quick else 'poll_scale', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
