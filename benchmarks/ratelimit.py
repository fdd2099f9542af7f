"""Many workers, one account's rate, side by side in one run: ``python -m benchmarks.ratelimit [--quick]``.

Four worker processes share one bulk run on a PostgreSQL run ledger (``process_many`` with
``RenderRequest.remove_background``, every result downloaded: distinct images, renders of 0.5-1.5 s,
8 uploads and 8 downloads in flight per worker, work that would exceed the limit without control) against
an emulator process whose account rate limit is R requests/s (``--rate-limit R/s``, a burst of one
second's worth). The same work, each in its own emulator and run, three ways:

- **shared**: ``rate_control=True``: AIMD on 429s, the learned account rate shared through the ledger's
  database (each worker paces at its share);
- **alone**: ``RateControl(share=False)``: AIMD in each process, learning alone;
- **plain**: no rate control: the retry policy alone (429s retried after their ``Retry-After``).

Counted at the server (the emulator's ``/_emulator/rate``): requests accepted and answered 429. Printed:
the achieved rate over R (accepted requests over the run's wall time, from the workers' start to the last
one's end, render tails included; and over its busy part: the median of per-second accepted counts while
all four worked), and the share of requests answered 429. Goal (shared): >= 85 % of R with <= 2 % 429s.

Writes ``benchmarks/results/ratelimit.json`` (``ratelimit-quick.json`` with ``--quick``). Needs
PostgreSQL: ``ADCREATIVE_TEST_POSTGRES_DSN``, or a private server started through ``.ci/postgres``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adcreative_async.testing import sample_image
from benchmarks._harness import ROOT, credentials_of, emulator, machine, write_results
from benchmarks.ledger import _PrivatePostgres

GOALS = {"achieved": 0.85, "limited_share": 0.02}
MODES = ("shared", "alone", "plain")
WORKERS = 4


def make_inputs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        data = sample_image("png", (4, 4), (i % 256, (i // 256) % 256, 51))
        (folder / f"in-{i:05d}.png").write_bytes(data)


def rate_counts(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/_emulator/rate", timeout=60) as response:
        counts: dict[str, Any] = json.loads(response.read())
    return counts


def one_run(mode: str, inputs: Path, rate: float, dsn: str, timeout: float) -> dict[str, Any]:
    """Four workers of ``mode`` through ``inputs`` against a fresh emulator limited to ``rate``; workers
    still running after ``timeout`` seconds are killed and the run reported as stalled."""
    flags = ("--rate-limit", f"{rate:g}/s", "--task-duration", "0.5", "1.5", "--seed", "5")
    with emulator(*flags) as info, tempfile.TemporaryDirectory(prefix="adcreative-rate-out-") as out:
        ledger = f"{dsn}#ratelimit-{uuid.uuid4().hex[:12]}"
        command = [sys.executable, "-m", "benchmarks._rate_worker", json.dumps(credentials_of(info))]
        started = time.monotonic()
        workers = [
            subprocess.Popen(
                [*command, str(inputs), out, ledger, mode],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(WORKERS)
        ]
        seconds: list[tuple[int, int]] = []  # (accepted, limited) per second

        def sample() -> None:
            last = (0, 0)
            while any(w.poll() is None for w in workers):
                time.sleep(1.0)
                try:
                    counts = rate_counts(info["base_url"])
                except OSError:  # the emulator stopped: the run is over
                    return
                now = (counts["accepted"], counts["limited"])
                seconds.append((now[0] - last[0], now[1] - last[1]))
                last = now

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = []
        stalled = False
        for worker in workers:
            if stalled:  # killed
                worker.communicate()
                continue
            try:
                stdout, stderr = worker.communicate(timeout=max(1.0, started + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:  # reported as stalled, with the counts so far
                stalled = True
                for other in workers:
                    other.kill()
                stdout, stderr = worker.communicate()
                continue
            if worker.returncode != 0:
                raise RuntimeError(f"a {mode} worker failed:\n{stderr[-3000:]}")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        for worker in workers:
            worker.wait()
        wall = time.monotonic() - started
        sampler.join()
        counts = rate_counts(info["base_url"])
    busy = [accepted for accepted, _ in seconds[1:-1]]
    # while all four worked: the seconds before the first worker finished (its wall, from its start)
    first_done = int(min(r["wall"] for r in results)) if results else len(busy)
    steady = busy[1 : max(2, first_done - 1)] or busy
    total = counts["accepted"] + counts["limited"]
    return {
        "mode": mode,
        "accepted": counts["accepted"],
        "limited": counts["limited"],
        "limited_share": counts["limited"] / total if total else 0.0,
        "wall": wall,
        "achieved": counts["accepted"] / wall / rate,
        "busy_achieved": statistics.median(steady) / rate if steady else 0.0,
        "stalled": stalled,
        "ok": sum(r["ok"] for r in results) // WORKERS,
        "errors": sum(len(r["errors"]) for r in results),
        "error_examples": [e for r in results for e in r["errors"]][:5],
        "worker_cpu": sum(r["cpu"] for r in results),
        "cuts": [r["cuts"] for r in results],
        "per_second": seconds,
    }


def report(data: dict[str, Any]) -> str:
    rate = data["rate"]
    lines = [
        f"Four workers, one PostgreSQL ledger, {data['items']} items, account limit R = {rate:g} requests/s "
        f"(a shared machine: {data['machine']['cores']} cores)",
        "",
        "| mode | achieved / R (run) | achieved / R (busy) | 429 share | accepted | 429s | wall s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        lines.append(
            f"| {run['mode']} | {run['achieved']:.1%} | {run['busy_achieved']:.1%} | "
            f"{run['limited_share']:.2%} | {run['accepted']} | {run['limited']} | {run['wall']:.1f} | "
            f"{run['errors']}{' (stalled: killed)' if run['stalled'] else ''} |"
        )
    shared = [r for r in data["runs"] if r["mode"] == "shared"]
    if shared:
        met = all(
            r["busy_achieved"] >= GOALS["achieved"] and r["limited_share"] <= GOALS["limited_share"]
            for r in shared
        )
        lines += [
            "",
            f"goal (shared: >= 85 % of R while busy, <= 2 % answered 429): {'met' if met else 'NOT met'}",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to keep the benchmark working")
    parser.add_argument("--rate", type=float, help="the account limit R, requests/s (default 50; quick 20)")
    parser.add_argument("--items", type=int, help="items of the run (default 1200, about a minute; quick 40)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each mode, alternating (default 1)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"modes, comma-separated: {', '.join(MODES)}"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before a mode's workers count as stalled"
    )
    parser.add_argument("--output", help="JSON path (default benchmarks/results/ratelimit[-quick].json)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    rate = args.rate or (20.0 if args.quick else 50.0)
    items = args.items or (40 if args.quick else 1200)
    data: dict[str, Any] = {"machine": machine(), "quick": args.quick, "goals": GOALS, "rate": rate}
    data["items"] = items
    with _PrivatePostgres() as dsn, tempfile.TemporaryDirectory(prefix="adcreative-rate-in-") as tmp:
        if dsn is None:
            print("needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN", file=sys.stderr)
            return 2
        inputs = Path(tmp) / "in"
        make_inputs(inputs, items)
        runs = []
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else reversed(modes):
                print(f"round {round_ + 1}: {mode}...", file=sys.stderr, flush=True)
                runs.append(one_run(mode, inputs, rate, dsn, args.timeout))
                print(report({**data, "runs": runs[-1:]}).splitlines()[4], file=sys.stderr, flush=True)
        data["runs"] = runs
    print(report(data))
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2, default=str))
    else:
        write_results("ratelimit-quick" if args.quick else "ratelimit", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
