"""The sync client against the async one, side by side in one run: the bulk workload, and one call.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.sync            # 400 jobs over 8 users x 5 runs each way; 15 x 500 calls
    python -m benchmarks.sync --quick    # tiny sizes, seconds: CI keeps it working

Scenarios (each in a fresh client process, against an emulator in its own process):

- ``bulk``: N background removals over U users (renders of a few seconds with jitter), every result
  downloaded, through ``process_many`` with the SDK's defaults: on the async client (``asyncio.run``)
  and on :class:`~adcreative_async.SyncAdCreativeClient` (the same call, blocking; the work runs on
  the client's loop thread). Wall time from opening the client to the last file written; the two
  contenders alternate, each against a fresh emulator. Goal: sync within 10 % of async.
- ``calls``: the cost of one call, in one process, in rounds of async, sync and bare calls: a call that
  does no I/O (``resource.job(process_id)``: the sync layer's own overhead, a thread hop each way) and
  one progress request (``user_progress(user, process_id)``, over loopback). "bare" is the same async
  call handed to the sync client's loop thread with the standard library alone (``call_soon_threadsafe``
  and a ``concurrent.futures.Future``): the floor of any hand-off to a loop thread, to tell the SDK's
  own cost from the machine's. On Linux, the calling thread's sleeps per request are counted too (its
  voluntary context switches). Goal: the sync layer adds < 100 µs per call.

Prints a table, writes ``benchmarks/results/sync.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adcreative_async import AdCreativeClient, Limits, RenderJob, SyncAdCreativeClient
from adcreative_async.testing import sample_image
from benchmarks._harness import (
    credentials_of,
    emulator,
    log,
    machine,
    process_cpu_seconds,
    run_child,
    summary,
    write_images,
    write_results,
)

MODULE = "benchmarks.sync"
CONTENDERS = ("async", "sync")
CALL_KINDS = ("async", "sync", "bare")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    jobs: int
    users: int
    task_duration: tuple[float, float]
    runs: int
    calls: int
    call_rounds: int


FULL = Plan(jobs=400, users=8, task_duration=(1.0, 3.0), runs=5, calls=500, call_rounds=15)
QUICK = Plan(jobs=16, users=2, task_duration=(0.05, 0.2), runs=1, calls=100, call_rounds=1)

GOALS = {
    "bulk_wall_ratio": 1.10,  # sync wall time / async wall time, at most
    "call_overhead_us": 100.0,  # µs the sync layer adds to one call, at most
}


def _options(credentials: dict[str, str]) -> dict[str, Any]:
    return {**credentials, "trust_env": False, "limits": Limits(max_connections=100)}


async def _submit(client: AdCreativeClient, item: tuple[Path, str]) -> RenderJob:
    path, user = item
    return await client.background_remover.remove(path, user_id=user)


def child_bulk(params: dict[str, Any]) -> dict[str, Any]:
    """The bulk workload on one client (``params["contender"]``: ``async`` or ``sync``)."""
    images = Path(params["images"])
    users: list[str] = params["users"]
    items = [(images / f"{i}.png", users[i % len(users)]) for i in range(params["jobs"])]
    with tempfile.TemporaryDirectory(prefix="adcreative-sync-bench-") as out:
        cpu = time.process_time()
        started = time.monotonic()
        if params["contender"] == "sync":
            with SyncAdCreativeClient(**_options(params["credentials"])) as client:
                outcomes = client.process_many(items, _submit, dest=out)
        else:

            async def main() -> Any:
                async with AdCreativeClient(**_options(params["credentials"])) as client:
                    return await client.process_many(items, _submit, dest=out)

            outcomes = asyncio.run(main())
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu
        downloaded = sum(1 for p in Path(out).iterdir() if p.stat().st_size > 0)
    errors = [f"{type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None]
    return {
        "contender": params["contender"],
        "jobs": len(items),
        "downloaded": downloaded,
        "error_count": len(errors),
        "errors": errors[:5],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }


def _per_call_us(calls: int, started: float) -> float:
    return (time.perf_counter() - started) / calls * 1e6


def _sleeps() -> int | None:
    """How many times the calling thread has slept so far (Linux: its voluntary context switches)."""
    try:
        status = Path("/proc/thread-self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return None


def _bare_call(loop: asyncio.AbstractEventLoop, func: Callable[..., Any], *args: Any) -> Any:
    """The floor: ``func(*args)`` handed to the loop thread with the standard library alone
    (``call_soon_threadsafe`` in, a ``concurrent.futures.Future`` out: what ``run_coroutine_threadsafe``
    does, without its wrapper coroutine), awaited there in a task of its own when it is a coroutine."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def done(task: asyncio.Task[Any]) -> None:
        error = task.exception()
        if error is None:
            future.set_result(task.result())
        else:
            future.set_exception(error)

    def start() -> None:
        result = func(*args)
        if asyncio.iscoroutine(result):
            loop.create_task(result).add_done_callback(done)
        else:
            future.set_result(result)

    loop.call_soon_threadsafe(start)
    return future.result()


def child_calls(params: dict[str, Any]) -> dict[str, Any]:
    """Per-call time of a no-I/O call and of one progress request: async, sync, and the same async call
    handed to the sync client's loop thread without the SDK (the floor of any hand-off), in rounds."""
    options = _options(params["credentials"])
    calls: int = params["calls"]
    user = str(uuid.uuid4())
    image = sample_image("png", (8, 8))
    rounds: dict[str, list[float]] = {
        f"{what}_{kind}": [] for what in ("dispatch", "request", "sleeps") for kind in CALL_KINDS
    }

    async def async_round(process_id: str) -> None:
        async with AdCreativeClient(**options) as client:
            resource = client.background_remover
            await resource.user_progress(user, process_id)  # warm: token, connection
            started = time.perf_counter()
            for _ in range(calls):
                resource.job(process_id, user_id=user)
            rounds["dispatch_async"].append(_per_call_us(calls, started))
            sleeps = _sleeps()
            started = time.perf_counter()
            for _ in range(calls):
                await resource.user_progress(user, process_id)
            rounds["request_async"].append(_per_call_us(calls, started))
            after = _sleeps()
            if sleeps is not None and after is not None:
                rounds["sleeps_async"].append((after - sleeps) / calls)

    with SyncAdCreativeClient(**options) as client:
        resource = client.background_remover
        process_id = resource.remove(image, user_id=user).process_id
        loop = client._running_loop()._loop
        assert loop is not None
        inner = client.async_client.background_remover
        contenders: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "sync": (
                lambda: resource.job(process_id, user_id=user),
                lambda: resource.user_progress(user, process_id),
            ),
            "bare": (
                lambda: _bare_call(loop, functools.partial(inner.job, process_id, user_id=user)),
                lambda: _bare_call(loop, inner.user_progress, user, process_id),
            ),
        }
        for round_ in range(params["rounds"]):
            asyncio.run(async_round(process_id))
            order = ("sync", "bare") if round_ % 2 == 0 else ("bare", "sync")
            for kind in order:
                dispatch, request = contenders[kind]
                request()  # warm
                started = time.perf_counter()
                for _ in range(calls):
                    dispatch()
                rounds[f"dispatch_{kind}"].append(_per_call_us(calls, started))
                sleeps = _sleeps()
                started = time.perf_counter()
                for _ in range(calls):
                    request()
                rounds[f"request_{kind}"].append(_per_call_us(calls, started))
                after = _sleeps()
                if sleeps is not None and after is not None:
                    rounds[f"sleeps_{kind}"].append((after - sleeps) / calls)
    return {"calls": calls, "rounds": rounds}


CHILDREN = {"bulk": child_bulk, "calls": child_calls}


BULK_METRICS = ("wall_seconds", "cpu_seconds", "emulator_busy")


def _overhead(rounds: dict[str, list[float]], what: str, kind: str, baseline: str) -> float:
    """Median over rounds of (kind - baseline) µs per call, each pair measured in the same round."""
    pairs = zip(rounds[f"{what}_{kind}"], rounds[f"{what}_{baseline}"], strict=True)
    return statistics.median(k - b for k, b in pairs)


def run(plan: Plan) -> dict[str, Any]:
    """Both scenarios of ``plan``: bulk ``plan.runs`` times each way (alternating), then the calls."""
    low, high = plan.task_duration
    bulk: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="adcreative-sync-images-") as tmp:
        write_images(Path(tmp), plan.jobs)
        for round_ in range(plan.runs):
            order = CONTENDERS if round_ % 2 == 0 else CONTENDERS[::-1]
            walls: dict[str, float] = {}
            for contender in order:
                log(f"bulk: {contender}, run {round_ + 1}/{plan.runs}")
                with emulator("--task-duration", str(low), str(high)) as info:
                    cpu = process_cpu_seconds(info["pid"])
                    result = run_child(
                        MODULE,
                        "bulk",
                        {
                            "credentials": credentials_of(info),
                            "images": tmp,
                            "users": [str(uuid.uuid4()) for _ in range(plan.users)],
                            "jobs": plan.jobs,
                            "contender": contender,
                        },
                    )
                    result["emulator_busy"] = (process_cpu_seconds(info["pid"]) - cpu) / result[
                        "wall_seconds"
                    ]
                result["valid"] = result["downloaded"] == plan.jobs and not result["error_count"]
                log(f"  wall {result['wall_seconds']:.2f} s, CPU {result['cpu_seconds']:.2f} s")
                bulk[contender].append(result)
                walls[contender] = result["wall_seconds"]
            ratios.append(walls["sync"] / walls["async"])
    with emulator("--task-duration", "600", "900") as info:
        log("calls")
        calls = run_child(
            MODULE,
            "calls",
            {"credentials": credentials_of(info), "calls": plan.calls, "rounds": plan.call_rounds},
        )
    per_call = {key: summary(values) for key, values in calls["rounds"].items() if values}
    return {
        "machine": machine(),
        "plan": asdict(plan),
        "bulk": {
            c: {
                "runs": runs,
                "valid_runs": sum(1 for r in runs if r["valid"]),
                **{
                    k: summary([float(r[k]) for r in runs])
                    for k in ("wall_seconds", "cpu_seconds", "emulator_busy")
                },
            }
            for c, runs in bulk.items()
        },
        "bulk_wall_ratio": summary(ratios),
        "calls": per_call,
        # What a hand-off costs over the async call: the SDK's, and the bare one (the floor); and
        # what the SDK adds to the bare hand-off.
        **{
            f"{what}_{name}_us": _overhead(calls["rounds"], what, kind, baseline)
            for what in ("dispatch", "request")
            for name, kind, baseline in (
                ("overhead", "sync", "async"),
                ("floor", "bare", "async"),
                ("sdk_over_floor", "sync", "bare"),
            )
        },
        "goals": GOALS,
    }


def _cell(stats: dict[str, float], spec: str) -> str:
    return f"{stats['median']:{spec}} ({stats['min']:{spec}}-{stats['max']:{spec}})"


def table(data: dict[str, Any]) -> str:
    """The human-readable report."""
    plan = data["plan"]
    lines = [
        f"Sync vs async client: bulk of {plan['jobs']} background removals over {plan['users']} users "
        f"(renders of {plan['task_duration'][0]}-{plan['task_duration'][1]} s), median of {plan['runs']} "
        f"run(s) each (min-max); {data['machine']['cores']} cores, Python {data['machine']['python']}",
        "",
        f"{'client':<8} {'wall s':>22} {'client CPU s':>22} {'valid runs':>11}",
    ]
    for name, c in data["bulk"].items():
        lines.append(
            f"{name:<8} {_cell(c['wall_seconds'], '.2f'):>22} {_cell(c['cpu_seconds'], '.2f'):>22} "
            f"{c['valid_runs']:>5}/{len(c['runs'])}"
        )
    ratio = data["bulk_wall_ratio"]
    calls = data["calls"]
    lines += [
        "",
        f"bulk wall time, sync / async (per run, same round): {_cell(ratio, '.3f')} "
        f"(goal <= {GOALS['bulk_wall_ratio']:.2f})",
        "",
        f"one call ({plan['calls']} calls x {plan['call_rounds']} rounds, µs per call), median (min-max):",
        f"{'':<34} {'async':>22} {'sync (SDK)':>22} {'bare hand-off':>22}",
        f"{'no I/O (resource.job)':<34} "
        + " ".join(f"{_cell(calls[f'dispatch_{k}'], '.1f'):>22}" for k in CALL_KINDS),
        f"{'progress request (user_progress)':<34} "
        + " ".join(f"{_cell(calls[f'request_{k}'], '.0f'):>22}" for k in CALL_KINDS),
    ]
    if all(f"sleeps_{k}" in calls for k in CALL_KINDS):
        lines.append(
            f"{'  sleeps of the caller per request':<34} "
            + " ".join(f"{_cell(calls[f'sleeps_{k}'], '.2f'):>22}" for k in CALL_KINDS)
        )
    lines += [
        f"over async, per call: the SDK {data['dispatch_overhead_us']:.1f} µs without I/O, "
        f"{data['request_overhead_us']:.1f} µs on a request (goal < {GOALS['call_overhead_us']:.0f} µs)",
        f"  the bare hand-off (the floor): {data['dispatch_floor_us']:.1f} µs without I/O, "
        f"{data['request_floor_us']:.1f} µs on a request",
        f"  the SDK over the bare hand-off: {data['dispatch_sdk_over_floor_us']:.1f} µs without I/O, "
        f"{data['request_sdk_over_floor_us']:.1f} µs on a request",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.sync [--quick] [--output PATH]``, or a scenario's child process."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--child":
        kind, params = args[1], json.loads(args[2])
        print(json.dumps(CHILDREN[kind](params)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI): the figures mean nothing")
    parser.add_argument("--output", type=Path, help="where to write the JSON (default benchmarks/results/)")
    options = parser.parse_args(args)
    data = run(QUICK if options.quick else FULL)
    print(table(data))
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(data, indent=2, default=str))
        print(f"\nwritten: {options.output}")
    else:
        print(f"\nwritten: {write_results('sync-quick' if options.quick else 'sync', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
