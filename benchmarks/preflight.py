"""What the CLI's preflight costs: ``python -m benchmarks.preflight [--quick]``.

Two figures, each measured in this process against an emulator in another process:

- **100,000 inputs** (small PNGs on local disk, written once into a temporary folder): the checks made
  before the first paid call of ``adcreative remove-bg`` on a folder of that size (the output folder made
  and written to, every input's signature, header and end marker, one authenticated read-only listing,
  and the spend line of a first run), each timed, 3 rounds (median, min, max). Goal: <= 5 s in all.
- **Share of a 1,000-item run**: the same preflight for 1,000 inputs against the wall time of a whole
  ``adcreative remove-bg`` of them (run in a subprocess, renders of 0.3-0.9 s), side by side, alternating,
  3 rounds. Goal: <= 2 %.

Prints a table and writes ``benchmarks/results/preflight.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from adcreative_async import AdCreativeClient
from adcreative_async.cli._preflight import check_credentials, check_images, check_output_folder
from adcreative_async.cli._runs import spend_line
from adcreative_async.ledger import RenderRequest, SqliteLedger
from adcreative_async.testing import sample_image

from ._harness import ROOT, credentials_of, emulator, machine, summary, write_results


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` distinct small PNGs (a few hundred bytes each)."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i:06d}.png"
        path.write_bytes(sample_image("png", (4, 4), (i % 256, (i >> 8) % 256, (i >> 16) % 256)))
        paths.append(path)
    return paths


async def preflight(info: dict[str, Any], paths: list[Path], out: Path) -> dict[str, float]:
    """The checks ``remove-bg`` makes before its first paid call, each timed (seconds)."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    await anyio.to_thread.run_sync(check_output_folder, out)
    times["output folder"] = time.perf_counter() - started
    started = time.perf_counter()
    await anyio.to_thread.run_sync(check_images, paths)
    times["input images"] = time.perf_counter() - started
    started = time.perf_counter()
    async with AdCreativeClient(**credentials_of(info), trust_env=False) as client:  # type: ignore[arg-type]
        await check_credentials(client.background_remover)
    times["credentials"] = time.perf_counter() - started
    started = time.perf_counter()
    requests = [RenderRequest.remove_background(p, label=str(p)) for p in paths]
    async with SqliteLedger(out / ".adcreative-run.sqlite") as ledger:
        await spend_line(requests, ledger)
    times["spend line"] = time.perf_counter() - started
    times["total"] = sum(times.values())
    return times


def cli_run(info: dict[str, Any], folder: Path, out: Path) -> float:
    """Wall seconds of a whole ``adcreative remove-bg`` of ``folder`` (a fresh output folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    for key, value in credentials_of(info).items():
        env[f"ADCREATIVE_{key.upper()}"] = value
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "adcreative_async.cli", "remove-bg", str(folder), "-o", str(out), "--json"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to keep the benchmark working")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    large, small, rounds = (2_000, 50, 1) if args.quick else (100_000, 1_000, 3)
    work = Path(tempfile.mkdtemp(prefix="adcreative-preflight-"))
    data: dict[str, Any] = {"machine": machine(), "large": large, "small": small, "rounds": rounds}
    try:
        with emulator("--task-duration", "0.3", "0.9") as info:
            paths = make_inputs(work / "large", large)
            big: list[dict[str, float]] = []
            for round_ in range(rounds):
                big.append(anyio.run(preflight, info, paths, work / f"large-out-{round_}"))
            data["large_runs"] = big
            few = make_inputs(work / "small", small)
            checks: list[float] = []
            runs: list[float] = []
            for round_ in range(rounds):
                checks.append(anyio.run(preflight, info, few, work / f"small-check-{round_}")["total"])
                runs.append(cli_run(info, work / "small", work / f"small-run-{round_}"))
            data["small_checks"], data["small_runs"] = checks, runs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Preflight of the CLI ({machine()['cores']} cores, {rounds} rounds: median (min-max))")
    print(f"{large:,} inputs:")
    for name in big[0]:
        stats = summary([r[name] for r in big])
        print(f"  {name:<14} {stats['median']:7.2f} s ({stats['min']:.2f}-{stats['max']:.2f})")
    total = statistics.median(r["total"] for r in big)
    print(f"  goal: <= 5 s: {'met' if total <= 5 else 'NOT met'}")
    share = [c / r for c, r in zip(checks, runs, strict=True)]
    print(
        f"{small:,} inputs: preflight {statistics.median(checks):.3f} s against a whole run of "
        f"{statistics.median(runs):.2f} s: {statistics.median(share) * 100:.2f} % "
        f"(goal <= 2 %: {'met' if statistics.median(share) <= 0.02 else 'NOT met'})"
    )
    data["share"] = share
    print(f"written to {write_results('preflight-quick' if args.quick else 'preflight', data, args.output)}")


if __name__ == "__main__":
    main()
