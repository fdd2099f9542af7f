"""Waiting benchmarks: the coalescing poll scheduler against one poll loop per job, and 10,000 waits.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.polling            # 1,000 jobs over 10 users; 10,000 concurrent waits (minutes)
    python -m benchmarks.polling --quick    # tiny sizes, seconds: CI keeps it working

Scenarios (each in a fresh client process, against an emulator in its own process):

- ``scheduler``: N background removals over U users, each awaited by its own ``job.result()`` call
  (N independent waiters), through the client's one scheduler (default ``PollPolicy``).
- ``per-job``: the same workload, each job polled by its own loop (``job.refresh()`` then a sleep of the
  scheduler's base interval, ``PollPolicy().initial_interval``: 1 s), as common job SDKs do.
- ``waits``: W jobs awaited at once: Python heap per waiting job (tracemalloc), and event-loop lag while
  they wait and complete.

Figures: progress requests made while waiting, completion-detection latency after the emulator marked
the task done (median, p99), client CPU per completed job, event-loop lag, memory per waiting job; the
emulator's CPU is reported so a saturated run can be spotted. Prints a table, writes
``benchmarks/results/polling.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import anyio

from adcreative_async import AdCreativeClient, PollPolicy, RenderJob, Timeout
from adcreative_async._polling import REQUEST_COST_IN_ITEMS
from adcreative_async.testing import sample_image
from benchmarks._harness import (
    LagMeter,
    credentials_of,
    emulator,
    machine,
    percentile,
    process_cpu_seconds,
    rss_bytes,
    run_child,
    summary,
    write_results,
)

MODULE = "benchmarks.polling"
PROGRESS_ROUTE = "GET Image/BackgroundRemoving/CheckUserProgress"
#: Counted as progress requests too (the SDK shares one application listing between users).
APP_PROGRESS_ROUTE = "GET Image/BackgroundRemoving/CheckApplicationAllProgresses"
IMAGE = sample_image("png", (8, 8))


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    jobs: int
    users: int
    task_duration: tuple[float, float]
    waits: int
    runs: int


FULL = Plan(jobs=1000, users=10, task_duration=(2.0, 6.0), waits=10_000, runs=3)
QUICK = Plan(jobs=40, users=4, task_duration=(0.2, 0.8), waits=300, runs=1)

GOALS = {
    "request_ratio": 50.0,  # per-job requests / scheduler requests, at least
    "loop_lag_p99": 0.100,  # seconds, at most, with 10,000 waits
}


async def _counters(session: aiohttp.ClientSession, base_url: str) -> dict[str, int]:
    async with session.get(f"{base_url}/_emulator/requests") as response:
        data: dict[str, int] = await response.json()
        return data


async def _finish_times(session: aiohttp.ClientSession, base_url: str, user: str) -> dict[str, float]:
    """process id -> when its last task finished (emulator clock = this machine's monotonic clock)."""
    async with session.get(f"{base_url}/_emulator/processes", params={"userId": user}) as response:
        processes: list[dict[str, Any]] = await response.json()
    return {
        p["processId"]: max(float(t["finishedAt"]) for t in p["tasks"].values())
        for p in processes
        if p["tasks"] and all(t["finishedAt"] is not None for t in p["tasks"].values())
    }


async def _submit_all(
    client: AdCreativeClient, users: list[str], count: int, concurrency: int
) -> list[RenderJob]:
    jobs: list[RenderJob] = []
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            jobs.append(await client.background_remover.remove(IMAGE, user_id=users[i % len(users)]))

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return jobs


def _client(credentials: dict[str, str], **kwargs: Any) -> AdCreativeClient:
    return AdCreativeClient(
        **credentials,  # type: ignore[arg-type]
        trust_env=False,
        timeout=Timeout(connect=10, read=120),
        **kwargs,
    )


async def child_waiting(params: dict[str, Any]) -> dict[str, Any]:
    """One contender (``scheduler`` or ``per-job``) over the whole workload."""
    credentials: dict[str, str] = params["credentials"]
    users = [str(uuid.uuid4()) for _ in range(params["users"])]
    interval = PollPolicy().initial_interval
    detected: dict[str, float] = {}
    lag = LagMeter()
    async with _client(credentials) as client, aiohttp.ClientSession() as session:
        jobs = await _submit_all(client, users, params["jobs"], concurrency=32)
        before = await _counters(session, credentials["base_url"])
        cpu_start = time.process_time()
        started = time.monotonic()

        async def scheduler_wait(job: RenderJob) -> None:
            await job.result()
            detected[job.process_id] = time.monotonic()

        async def per_job_wait(job: RenderJob) -> None:
            while not (await job.refresh()).is_complete:  # noqa: ASYNC110 - the baseline being measured
                await anyio.sleep(interval)
            detected[job.process_id] = time.monotonic()

        wait = scheduler_wait if params["contender"] == "scheduler" else per_job_wait
        async with anyio.create_task_group() as tg:
            tg.start_soon(lag.run)
            async with anyio.create_task_group() as waits:
                for job in jobs:
                    waits.start_soon(wait, job)
            tg.cancel_scope.cancel()
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - started
        after = await _counters(session, credentials["base_url"])
        finished: dict[str, float] = {}
        for user in users:
            finished.update(await _finish_times(session, credentials["base_url"], user))
    latencies = [detected[pid] - finished[pid] for pid in detected if pid in finished]
    return {
        "contender": params["contender"],
        "jobs": len(jobs),
        "progress_requests": sum(
            after.get(route, 0) - before.get(route, 0) for route in (PROGRESS_ROUTE, APP_PROGRESS_ROUTE)
        ),
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "latency_count": len(latencies),
        "cpu_per_job_ms": cpu / len(jobs) * 1000,
        "wall_seconds": wall,
        "loop_lag_p99": percentile(lag.samples, 99),
    }


async def child_waits(params: dict[str, Any]) -> dict[str, Any]:
    """W waits at once: heap per waiting job, then event-loop lag while they wait and complete."""
    credentials: dict[str, str] = params["credentials"]
    count: int = params["waits"]
    users = [str(uuid.uuid4()) for _ in range(params["users"])]
    lag = LagMeter()
    async with _client(credentials) as client, aiohttp.ClientSession() as session:
        jobs = await _submit_all(client, users, count, concurrency=64)
        done = 0

        async def wait(job: RenderJob) -> None:
            nonlocal done
            await job.result()
            done += 1

        # Phase 1: memory of the waits alone (the jobs already exist).
        rss_before = rss_bytes()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        async with anyio.create_task_group() as waits:
            for job in jobs:
                waits.start_soon(wait, job)
            await anyio.wait_all_tasks_blocked()
            while client.scheduler_stats["waiters"] < count:  # noqa: ASYNC110 - a counter of the SDK
                await anyio.sleep(0.05)
            current, _ = tracemalloc.get_traced_memory()
            rss_during = rss_bytes()
            waits.cancel_scope.cancel()
        tracemalloc.stop()
        heap_per_wait = (current - base) / count
        # Phase 2: loop lag while they all wait, then while they all complete.
        async with anyio.create_task_group() as tg:
            tg.start_soon(lag.run)
            async with anyio.create_task_group() as waits:
                for job in jobs:
                    waits.start_soon(wait, job)
                await anyio.sleep(params["wait_seconds"])
                async with session.post(
                    f"{credentials['base_url']}/_emulator/advance", json={"seconds": 3600}
                ) as response:
                    response.raise_for_status()
            tg.cancel_scope.cancel()
        stats = client.scheduler_stats
    return {
        "waits": count,
        "completed": done,
        "heap_per_wait_bytes": heap_per_wait,
        "rss_per_wait_bytes": (rss_during - rss_before) / count,
        "loop_lag_p50": percentile(lag.samples, 50),
        "loop_lag_p99": percentile(lag.samples, 99),
        "loop_lag_max": max(lag.samples, default=0.0),
        "progress_requests": stats["requests"],
    }


async def child_cost(params: dict[str, Any]) -> dict[str, Any]:
    """Client CPU of one progress request vs of one more listed process (as the scheduler reads a
    listing: ids only, for processes nobody awaits): the filtered-polling rule."""
    credentials: dict[str, str] = params["credentials"]
    listed: int = params["listed"]
    rounds: int = params["rounds"]
    user = str(uuid.uuid4())
    async with _client(credentials) as client:
        jobs = await _submit_all(client, [user], listed, concurrency=32)
        one = jobs[0].process_id
        resource = client.background_remover
        await resource.user_progress(user, one)  # warm up (token, connection)
        start = time.process_time()
        for _ in range(rounds):
            await resource.user_progress(user, one)
        per_request = (time.process_time() - start) / rounds
        start = time.process_time()
        followed: dict[str, None] = {str(uuid.uuid4()): None}  # one followed process, not listed
        for _ in range(rounds):
            # what a poll does with a listing: read as a stream, each element's ids decoded and looked
            # up among the followed processes (one more listed process costs its share of both)
            await resource._listing(user, followed)
        per_listing = (time.process_time() - start) / rounds
    per_item = max(1e-9, (per_listing - per_request) / (listed - 1))
    return {
        "listed": listed,
        "request_cpu_us": per_request * 1e6,
        "listing_cpu_us": per_listing * 1e6,
        "item_cpu_us": per_item * 1e6,
        "request_cost_in_items": per_request / per_item,
    }


CHILDREN = {"waiting": child_waiting, "waits": child_waits, "cost": child_cost}


def run(plan: Plan) -> dict[str, Any]:
    """Every scenario of ``plan``, ``plan.runs`` times; medians with min/max."""
    low, high = plan.task_duration
    contenders: dict[str, Any] = {}
    for contender in ("scheduler", "per-job"):
        runs = []
        for _ in range(plan.runs):
            with emulator("--task-duration", str(low), str(high)) as info:
                cpu0 = process_cpu_seconds(info["pid"])
                params = {
                    "credentials": credentials_of(info),
                    "contender": contender,
                    "jobs": plan.jobs,
                    "users": plan.users,
                }
                result = run_child(MODULE, "waiting", params)
                result["emulator_cpu_seconds"] = process_cpu_seconds(info["pid"]) - cpu0
                result["emulator_busy"] = result["emulator_cpu_seconds"] / result["wall_seconds"]
                runs.append(result)
        contenders[contender] = {
            "runs": runs,
            **{
                key: summary([float(r[key]) for r in runs])
                for key in (
                    "progress_requests",
                    "latency_p50",
                    "latency_p99",
                    "cpu_per_job_ms",
                    "emulator_busy",
                )
            },
        }
    with emulator("--task-duration", "600", "900") as info:
        waits = run_child(
            MODULE,
            "waits",
            {
                "credentials": credentials_of(info),
                "waits": plan.waits,
                "users": plan.users,
                "wait_seconds": 3.0 if plan is QUICK else 10.0,
            },
        )
    with emulator("--task-duration", "600", "900") as info:
        cost = run_child(
            MODULE,
            "cost",
            {
                "credentials": credentials_of(info),
                "listed": 50 if plan is QUICK else 1000,
                "rounds": 20 if plan is QUICK else 100,
            },
        )
    ratio = contenders["per-job"]["progress_requests"]["median"] / max(
        1.0, contenders["scheduler"]["progress_requests"]["median"]
    )
    return {
        "machine": machine(),
        "plan": asdict(plan),
        "contenders": contenders,
        "waits": waits,
        "cost": cost,
        "request_cost_in_items_constant": REQUEST_COST_IN_ITEMS,
        "request_ratio": ratio,
        "max_interval": PollPolicy().max_interval,
        "goals": GOALS,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(data: dict[str, Any]) -> str:
    """The human-readable report."""
    plan = data["plan"]
    lines = [
        f"Waiting: {plan['jobs']} jobs over {plan['users']} users, renders of "
        f"{plan['task_duration'][0]}-{plan['task_duration'][1]} s; median of {plan['runs']} run(s) "
        f"(min-max); {data['machine']['cores']} cores, Python {data['machine']['python']}",
        "",
        f"{'contender':<11} {'progress requests':>22} {'detect p50':>12} {'detect p99':>12} "
        f"{'CPU/job':>10} {'emulator busy':>14}",
    ]
    for name, c in data["contenders"].items():
        req = c["progress_requests"]
        lines.append(
            f"{name:<11} {req['median']:>9.0f} ({req['min']:.0f}-{req['max']:.0f}){'':>2} "
            f"{_ms(c['latency_p50']['median']):>12} {_ms(c['latency_p99']['median']):>12} "
            f"{c['cpu_per_job_ms']['median']:>7.2f} ms {c['emulator_busy']['median']:>13.0%}"
        )
    waits = data["waits"]
    sched = data["contenders"]["scheduler"]
    lines += [
        "",
        f"per-job / scheduler progress requests: {data['request_ratio']:.0f}x "
        f"(goal >= {GOALS['request_ratio']:.0f}x)",
        f"scheduler detection p99: {_ms(sched['latency_p99']['median'])} "
        f"(goal: within one poll interval, max_interval = {data['max_interval']} s)",
        f"{waits['waits']} concurrent waits: event-loop lag p50 {_ms(waits['loop_lag_p50'])}, "
        f"p99 {_ms(waits['loop_lag_p99'])} (goal < {_ms(GOALS['loop_lag_p99'])}), "
        f"max {_ms(waits['loop_lag_max'])}; {waits['completed']} completed with "
        f"{waits['progress_requests']} progress requests",
        f"memory per waiting job: {waits['heap_per_wait_bytes'] / 1024:.1f} KiB Python heap "
        f"({waits['rss_per_wait_bytes'] / 1024:.1f} KiB RSS)",
        f"filtered-polling rule: one request costs {data['cost']['request_cpu_us']:.0f} us of client CPU, "
        f"one more listed process {data['cost']['item_cpu_us']:.1f} us: a request = "
        f"{data['cost']['request_cost_in_items']:.0f} listed processes (REQUEST_COST_IN_ITEMS = "
        f"{data['request_cost_in_items_constant']})",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one scenario in this process)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.polling", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, params = args.child
        result = anyio.run(CHILDREN[kind], json.loads(params))
        print(json.dumps(result))
        return 0
    data = run(QUICK if args.quick else FULL)
    print(table(data))
    print(f"\nwrote {write_results('polling-quick' if args.quick else 'polling', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
