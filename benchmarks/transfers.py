"""Transfer benchmarks: memory of large uploads and downloads, download throughput against plain aiohttp,
and many concurrent downloads.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.transfers            # full sizes (1 GiB transfers), about a minute
    python -m benchmarks.transfers --quick    # tiny sizes, a few seconds: CI keeps it working

Every scenario runs in its own client process, against an emulator in another process started with
``python -m adcreative_async.testing --port 0 ...`` (which prints its base URL and credentials as one JSON
line). Memory is the client process's peak RSS over its idle baseline (after a warm-up transfer), read
from ``/proc/self/status`` (Linux; elsewhere ``getrusage``'s lifetime peak, less precise). Throughput
compares the SDK's ``download()`` with a plain aiohttp read-to-file loop on the same emulator and the same
file, alternating, several times: medians with min and max, and their ratio. It prints a table and
writes JSON to ``benchmarks/results/transfers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from adcreative_async import AdCreativeClient, TransferOptions, __version__
from adcreative_async.testing import sample_image
from benchmarks._harness import (
    ROOT,
    credentials_of,
    emulator,
    peak_rss,
    run_child,
    start_measuring,
    summary,
)

MODULE = "benchmarks.transfers"

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "transfers.json"
MiB = 1 << 20
GiB = 1 << 30
USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
#: The plain loop asks for what the SDK reads per step of a large body (``LOOP_WRITE_MAX``, 1 MiB). asyncio
#: reads the socket 256 KiB at a time whatever is asked: measured (512 MiB, 8 rounds), the plain loop
#: takes 0.54-0.56 s of CPU per GiB with ``iter_chunked(256 KiB)``, ``iter_chunked(1 MiB)`` or
#: ``iter_any()`` alike.
BASELINE_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    upload_size: int
    download_size: int
    concurrent_count: int
    concurrent_size: int
    memory_runs: int
    throughput_runs: int


FULL = Plan(
    upload_size=GiB,
    download_size=GiB,
    concurrent_count=100,
    concurrent_size=20 * MiB,
    memory_runs=3,
    throughput_runs=7,
)
QUICK = Plan(
    upload_size=4 * MiB,
    download_size=4 * MiB,
    concurrent_count=10,
    concurrent_size=MiB,
    memory_runs=1,
    throughput_runs=3,
)

GOALS = {
    "upload_rss_growth": 32 * MiB,
    "download_rss_growth": 32 * MiB,
    "concurrent_rss_growth": 128 * MiB,
    "throughput_ratio": 1.0,  # issue 23: downloads at least as fast as raw aiohttp
}


# ------------------------------------------------------------------------------------------- memory


# ------------------------------------------------------------------------------------ child processes


def _client(credentials: dict[str, str]) -> AdCreativeClient:
    return AdCreativeClient(
        **credentials,  # type: ignore[arg-type]
        user_id=USER_ID,
        trust_env=False,
        transfer=TransferOptions(max_upload_size=None),
    )


def _sparse_png(path: Path, size: int) -> None:
    """A file of ``size`` bytes that starts like a PNG, created sparse (instantly, no disk used)."""
    with open(path, "wb") as handle:
        handle.write(sample_image())
        handle.truncate(size)


async def child_upload(params: dict[str, Any]) -> dict[str, Any]:
    """Upload a file of ``size`` bytes from a path; memory over the idle baseline."""
    size: int = params["size"]
    with tempfile.TemporaryDirectory() as tmp:
        source, warm = Path(tmp) / "upload.png", Path(tmp) / "warm.png"
        _sparse_png(source, size)
        _sparse_png(warm, 2 * MiB)
        async with _client(params["credentials"]) as client:
            await client.background_remover.remove(warm)  # token, connection, file threads
            baseline = start_measuring()
            started = time.perf_counter()
            await client.background_remover.remove(source)
            seconds = time.perf_counter() - started
            peak = peak_rss()
    return {"bytes": size, "seconds": seconds, "baseline_rss": baseline, "peak_rss": peak}


async def child_download(params: dict[str, Any]) -> dict[str, Any]:
    """Download one result of ``size`` bytes to a file; memory over the idle baseline."""
    size: int = params["size"]
    with tempfile.TemporaryDirectory() as tmp:
        async with _client(params["credentials"]) as client:
            job = await client.background_remover.remove(sample_image())
            process_id, task_id = job.process_id, job.task_ids[0]
            warm = await client.background_remover.download(process_id, task_id, tmp, low_resolution=True)
            await anyio.Path(warm).unlink()
            baseline = start_measuring()
            started = time.perf_counter()
            path = await client.background_remover.download(process_id, task_id, tmp)
            seconds = time.perf_counter() - started
            peak = peak_rss()
            written = (await anyio.Path(path).stat()).st_size
    if written != size:
        raise RuntimeError(f"downloaded {written} bytes, expected {size}")
    return {"bytes": size, "seconds": seconds, "baseline_rss": baseline, "peak_rss": peak}


async def _plain_token(session: aiohttp.ClientSession, credentials: dict[str, str]) -> str:
    body = {"applicationId": credentials["application_id"], "jwtPrivateKey": credentials["jwt_private_key"]}
    async with session.post("/api/v1/Authorization/GenerateJwtToken", json=body) as response:
        response.raise_for_status()
        token: str = (await response.json())["accessToken"]
        return token


async def _plain_download(
    session: aiohttp.ClientSession, params: dict[str, str], headers: dict[str, str], path: Path
) -> None:
    """The baseline: aiohttp's own chunk iterator written straight to a file, nothing else."""
    async with session.get("/api/v1/Image/BackgroundRemoving/Download", params=params, headers=headers) as r:
        r.raise_for_status()
        with open(path, "wb") as handle:  # noqa: ASYNC230 - the baseline writes in the event loop
            async for chunk in r.content.iter_chunked(BASELINE_CHUNK):
                handle.write(chunk)


async def child_throughput(params: dict[str, Any]) -> dict[str, Any]:
    """Download the same result with the SDK and with plain aiohttp, alternating, ``runs`` times each:
    wall seconds, process CPU seconds (worker threads included) and minor page faults of each."""
    credentials: dict[str, str] = params["credentials"]
    size: int = params["size"]
    sdk: list[float] = []
    plain: list[float] = []
    cpu: dict[str, list[float]] = {"sdk": [], "plain": []}
    faults: dict[str, list[int]] = {"sdk": [], "plain": []}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            _client(credentials) as client,
            aiohttp.ClientSession(credentials["base_url"], timeout=timeout) as session,
        ):
            job = await client.background_remover.remove(sample_image())
            query = {
                "applicationId": credentials["application_id"],
                "taskId": job.task_ids[0],
                "imageBackgroundRemoverProcessId": job.process_id,
                "lowResolution": "false",
            }
            headers = {
                "Authorization": f"Bearer {await _plain_token(session, credentials)}",
                "x-api-key": credentials["api_key"],
                "x-api-secret": credentials["api_secret"],
                "Accept": "application/json",
            }
            for run in range(params["runs"] + 1):  # run 0 warms both paths up and is not counted
                order = ("sdk", "plain") if run % 2 else ("plain", "sdk")
                for kind in order:
                    path = Path(tmp) / f"{kind}-{run}.png"
                    faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if kind == "sdk":
                        await client.background_remover.download(job.process_id, job.task_ids[0], path)
                    else:
                        await _plain_download(session, query, headers, path)
                    seconds = time.perf_counter() - started
                    cpu_seconds = time.process_time() - cpu_started
                    faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted
                    written = (await anyio.Path(path).stat()).st_size
                    if written != size:
                        raise RuntimeError(f"{kind}: downloaded {written} bytes, expected {size}")
                    await anyio.Path(path).unlink()
                    if run:
                        (sdk if kind == "sdk" else plain).append(seconds)
                        cpu[kind].append(cpu_seconds)
                        faults[kind].append(faulted)
    return {
        "bytes": size,
        "sdk_seconds": sdk,
        "plain_seconds": plain,
        "sdk_cpu_seconds": cpu["sdk"],
        "plain_cpu_seconds": cpu["plain"],
        "sdk_minor_faults": faults["sdk"],
        "plain_minor_faults": faults["plain"],
    }


async def child_concurrent(params: dict[str, Any]) -> dict[str, Any]:
    """``count`` downloads of ``size`` bytes at once; memory over the idle baseline."""
    count: int = params["count"]
    size: int = params["size"]
    with tempfile.TemporaryDirectory() as tmp:
        async with _client(params["credentials"]) as client:
            job = await client.background_remover.remove(sample_image())
            process_id, task_id = job.process_id, job.task_ids[0]
            warm = await client.background_remover.download(process_id, task_id, Path(tmp) / "warm.png")
            await anyio.Path(warm).unlink()
            baseline = start_measuring()
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for index in range(count):
                    path = Path(tmp) / f"{index}.png"
                    group.start_soon(client.background_remover.download, process_id, task_id, path)
            seconds = time.perf_counter() - started
            peak = peak_rss()
    return {"count": count, "bytes": size, "seconds": seconds, "baseline_rss": baseline, "peak_rss": peak}


CHILDREN: dict[str, Callable[[dict[str, Any]], Any]] = {
    "upload": child_upload,
    "download": child_download,
    "throughput": child_throughput,
    "concurrent": child_concurrent,
}


# ------------------------------------------------------------------------------------------- parent


def memory_scenario(kind: str, runs: int, params: dict[str, Any]) -> dict[str, Any]:
    """Run a memory scenario ``runs`` times; growth = peak RSS - idle RSS, per run."""
    results = [run_child(MODULE, kind, params) for _ in range(runs)]
    growth = [float(r["peak_rss"] - r["baseline_rss"]) for r in results]
    seconds = [float(r["seconds"]) for r in results]
    return {"runs": results, "rss_growth": summary(growth), "seconds": summary(seconds)}


def run(plan: Plan) -> dict[str, Any]:
    """Every scenario of ``plan``; the results as JSON-ready data."""
    scenarios: dict[str, Any] = {}
    with emulator("--task-duration", "0", "--download-size", str(plan.download_size)) as info:
        credentials = credentials_of(info)
        params: dict[str, Any] = {"credentials": credentials, "size": plan.upload_size}
        scenarios["upload"] = memory_scenario("upload", plan.memory_runs, params)
        params = {"credentials": credentials, "size": plan.download_size}
        scenarios["download"] = memory_scenario("download", plan.memory_runs, params)
        load_before = os.getloadavg()[0]
        throughput = run_child(MODULE, "throughput", {**params, "runs": plan.throughput_runs})
        size = throughput["bytes"]
        sdk = [size / s / MiB for s in throughput["sdk_seconds"]]
        plain = [size / s / MiB for s in throughput["plain_seconds"]]
        per_gib = GiB / size
        scenarios["throughput"] = {
            "bytes": size,
            "baseline_chunk": BASELINE_CHUNK,
            "sdk_mib_per_s": summary(sdk),
            "plain_aiohttp_mib_per_s": summary(plain),
            "ratio": statistics.median(sdk) / statistics.median(plain),
            "round_ratios": [s / p for s, p in zip(sdk, plain, strict=True)],
            "sdk_cpu_per_gib": summary([c * per_gib for c in throughput["sdk_cpu_seconds"]]),
            "plain_cpu_per_gib": summary([c * per_gib for c in throughput["plain_cpu_seconds"]]),
            "sdk_faults_per_gib": summary([f * per_gib for f in throughput["sdk_minor_faults"]]),
            "plain_faults_per_gib": summary([f * per_gib for f in throughput["plain_minor_faults"]]),
            "load_average": [load_before, os.getloadavg()[0]],  # the machine may be shared
            "raw": throughput,
        }
    with emulator("--task-duration", "0", "--download-size", str(plan.concurrent_size)) as info:
        credentials = credentials_of(info)
        params = {"credentials": credentials, "size": plan.concurrent_size, "count": plan.concurrent_count}
        scenarios["concurrent"] = memory_scenario("concurrent", plan.memory_runs, params)
    return {
        "plan": asdict(plan),
        "goals": GOALS,
        "environment": {
            "adcreative_async": __version__,
            "aiohttp": aiohttp.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "scenarios": scenarios,
    }


def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def table(data: dict[str, Any]) -> str:
    """The results as a table: median (min-max), goal, whether it is met."""
    plan, s = data["plan"], data["scenarios"]
    rows: list[tuple[str, str, str, str]] = []

    def memory_row(label: str, scenario: dict[str, Any], goal: float) -> None:
        growth = scenario["rss_growth"]
        value = f"{_mib(growth['median'])} ({_mib(growth['min'])}-{_mib(growth['max'])})"
        rows.append((label, value, f"< {_mib(goal)}", "yes" if growth["max"] < goal else "NO"))

    memory_row(
        f"upload {_size(plan['upload_size'])}: peak RSS growth", s["upload"], GOALS["upload_rss_growth"]
    )
    memory_row(
        f"download {_size(plan['download_size'])}: peak RSS growth",
        s["download"],
        GOALS["download_rss_growth"],
    )
    t = s["throughput"]
    for label, key in (
        ("SDK download()", "sdk_mib_per_s"),
        ("plain aiohttp loop", "plain_aiohttp_mib_per_s"),
    ):
        v = t[key]
        value = f"{v['median']:.0f} MiB/s ({v['min']:.0f}-{v['max']:.0f})"
        rows.append((f"throughput {_size(t['bytes'])}, {label}", value, "", ""))
    ratio_goal = GOALS["throughput_ratio"]
    rows.append(
        (
            "throughput ratio SDK / aiohttp",
            f"{t['ratio']:.2f} (rounds {', '.join(f'{r:.2f}' for r in t['round_ratios'])})",
            f">= {ratio_goal:.2f}",
            _yes(t["ratio"] >= ratio_goal),
        )
    )
    for label, key in (("SDK download()", "sdk"), ("plain aiohttp loop", "plain")):
        c, f = t[f"{key}_cpu_per_gib"], t[f"{key}_faults_per_gib"]
        value = f"{c['median']:.2f} s ({c['min']:.2f}-{c['max']:.2f}), {f['median']:,.0f} faults"
        rows.append((f"client CPU per GiB, {label}", value, "", ""))
    memory_row(
        f"{plan['concurrent_count']} x {_size(plan['concurrent_size'])} concurrent: peak RSS growth",
        s["concurrent"],
        GOALS["concurrent_rss_growth"],
    )
    widths = [
        max(len(r[i]) for r in [("scenario", "median (min-max)", "goal", "met"), *rows]) for i in range(4)
    ]
    lines = []
    for row in [("scenario", "median (min-max)", "goal", "met"), *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    ratios = (
        f"ratios to goals: upload {s['upload']['rss_growth']['max'] / GOALS['upload_rss_growth']:.2f}, "
        f"download {s['download']['rss_growth']['max'] / GOALS['download_rss_growth']:.2f}, "
        f"concurrent {s['concurrent']['rss_growth']['max'] / GOALS['concurrent_rss_growth']:.2f} "
        "(of the memory budget, worst run); "
        f"throughput {t['ratio']:.2f} of plain aiohttp "
        f"(load average {t['load_average'][0]:.1f}-{t['load_average'][1]:.1f})"
    )
    return "\n".join([*lines, "", ratios])


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks (or, with ``--child``, one scenario inside a child process)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transfers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few runs: a smoke test")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("params", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = anyio.run(CHILDREN[args.child], json.loads(args.params))
        print(json.dumps(result))
        return 0
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    data = run(plan)
    data["quick"] = args.quick
    data["wall_seconds"] = time.perf_counter() - started
    print(table(data))
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'quick run' if args.quick else 'full run'} in {data['wall_seconds']:.0f} s; JSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
