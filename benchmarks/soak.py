"""The exactly-once soak: worker processes sharing one run ledger while an operator's world happens to them.

Round after round until the time is up, a fresh folder of distinct inputs is run by ``--workers`` worker
processes (``benchmarks/_soak_worker.py``) sharing one ledger, against an emulator in its own process with
real latency (start calls answered 0.05–0.4 s after their render exists, reads lagging 0.1 s, renders of
0.3–1.2 s). Meanwhile:

- two workers are paused (SIGSTOP) past their lease and resumed (SIGCONT) at random moments;
- one worker is killed (SIGKILL) at a random moment and started again;
- with PostgreSQL, the server is restarted ``--postgres-restarts`` times over the soak (``.ci/postgres
  restart``), each time while a round runs.

After each round the emulator says how many renders each input made (by the SHA-256 of its upload), and
the output folder is checked: each input's file exists and was made from its own input (the emulator stamps
results with their input's hash). Printed: renders / inputs, duplicates (renders past the first of an
input), lost (inputs without their own file), hangs (rounds that did not end within ``--round-timeout``),
failed workers. The exit status is 1 if any of these is not zero.

    python -m benchmarks.soak --minutes 30                       # 4 workers, SQLite
    python -m benchmarks.soak --minutes 30 --ledger postgres     # a private PostgreSQL, restarted twice
    python -m benchmarks.soak --quick                            # one small round, seconds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adcreative_async.testing import input_stamp
from adcreative_async.testing._images import iter_segments, padded_png, segments_size

from ._harness import ROOT, credentials_of, emulator, emulator_json, machine, write_results

EMULATOR_FLAGS = (
    "--task-duration", "0.3", "1.2",
    "--start-latency", "0.05", "0.4",
    "--read-after-write-lag", "0.1",
    "--stamp-inputs",
)  # fmt: skip
POSTGRES_SCRIPT = ROOT / ".ci" / "postgres"


@dataclass
class Totals:
    """What the soak counted so far."""

    rounds: int = 0
    inputs: int = 0
    renders: int = 0
    duplicates: int = 0
    lost: int = 0
    hangs: int = 0
    failed_workers: int = 0
    pauses: int = 0
    kills: int = 0
    postgres_restarts: int = 0
    errors: list[str] = field(default_factory=list)


def make_inputs(folder: Path, round_no: int, n: int, size: int) -> dict[str, str]:
    """``n`` PNGs of ``size`` bytes, distinct from every other round's; stem -> SHA-256. (Large enough
    that an upload takes several writes: a pause can land in the middle of one.)"""
    folder.mkdir(parents=True)
    digests = {}
    for i in range(n):
        colour = (i % 256, (i // 256) % 256, round_no % 256)
        segments = padded_png(size, 4, 4 + round_no // 256, colour)
        data = b"".join(bytes(piece) for piece in iter_segments(segments, 0, segments_size(segments)))
        path = folder / f"in-{i:05d}.png"
        path.write_bytes(data)
        digests[path.stem] = hashlib.sha256(data).hexdigest()
    return digests


class Fleet:
    """The worker processes of one round (a killed one's place taken by the one started after it)."""

    def __init__(self, info: dict[str, Any], inputs: Path, out: Path, ledger: str, lease: float) -> None:
        self._args = [json.dumps(credentials_of(info)), str(inputs), str(out), ledger, str(lease)]
        self._folder = out.parent
        self._started = 0
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        self.spawned: list[subprocess.Popen[str]] = []  # every worker of the round, killed ones too

    def spawn(self, index: int | None = None) -> None:
        """Start a worker (in place ``index``, or a new one)."""
        log = self._folder / f"worker-{self._started}.log"
        self._started += 1
        with open(log, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._soak_worker", *self._args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
            )
        self.spawned.append(process)
        if index is None:
            self.processes.append(process)
            self.logs.append(log)
        else:
            self.processes[index], self.logs[index] = process, log

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()


def postgres(command: str, state: Path) -> str:
    """Run ``.ci/postgres COMMAND STATE``; its output (the DSN for ``start``)."""
    done = subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), command, str(state)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f".ci/postgres {command} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def run_round(
    round_no: int,
    info: dict[str, Any],
    work: Path,
    args: argparse.Namespace,
    dsn: str | None,
    restart_at: list[float],
    pg_state: Path | None,
    totals: Totals,
    rng: random.Random,
) -> None:
    """One round: its inputs, its fleet and its chaos, then the counts."""
    folder = work / f"round-{round_no:04d}"
    inputs, out = folder / "in", folder / "out"
    digests = make_inputs(inputs, round_no, args.items, args.input_kib * 1024)
    ledger = str(folder / "ledger.sqlite") if dsn is None else f"{dsn}#soak-{uuid.uuid4().hex[:12]}"
    fleet = Fleet(info, inputs, out, ledger, args.lease)
    for _ in range(args.workers):
        fleet.spawn()
    started = time.monotonic()
    # The chaos of this round, on the round's clock: the first two workers are paused past their lease
    # again and again (a pause, then a while running), the third is killed once and started again.
    pausing = {index: rng.uniform(0.3, args.chaos_window) for index in range(min(2, args.workers))}
    paused: dict[int, float] = {}  # worker -> when it resumes
    kill_at = rng.uniform(0.5, args.chaos_window) if args.workers > 2 else None
    deadline = started + args.round_timeout
    hung = False
    try:
        while True:
            now = time.monotonic()
            elapsed = now - started
            for index in list(pausing):
                process = fleet.processes[index]
                if process.poll() is not None:  # (it may have ended just as it was stopped)
                    del pausing[index]
                    paused.pop(index, None)
                elif index in paused and elapsed >= paused[index]:
                    process.send_signal(signal.SIGCONT)
                    del paused[index]
                    pausing[index] = elapsed + rng.uniform(0.5, 3.0)
                elif index not in paused and elapsed >= pausing[index]:
                    process.send_signal(signal.SIGSTOP)
                    totals.pauses += 1
                    paused[index] = elapsed + rng.uniform(1.3, 2.5) * args.lease
            if kill_at is not None and elapsed >= kill_at:
                kill_at = None
                if fleet.processes[2].poll() is None:
                    fleet.processes[2].kill()
                    fleet.processes[2].wait()
                    totals.kills += 1
                    fleet.spawn(2)
            if restart_at and pg_state is not None and now >= restart_at[0]:
                restart_at.pop(0)
                postgres("restart", pg_state)
                totals.postgres_restarts += 1
            if not paused and all(p.poll() is not None for p in fleet.processes):
                break
            if now > deadline:
                hung = True
                fleet.kill_all()
                break
            time.sleep(0.05)
    finally:  # interrupted (Ctrl-C): no worker outlives the soak
        fleet.kill_all()
    totals.rounds += 1
    totals.inputs += len(digests)
    if hung:
        totals.hangs += 1
        totals.errors.append(f"round {round_no}: did not end within {args.round_timeout} s")
    for process, log in zip(fleet.processes, fleet.logs, strict=True):
        if process.returncode not in (0, -signal.SIGKILL):
            totals.failed_workers += 1
            totals.errors.append(f"round {round_no}: a worker exited {process.returncode}: {tail(log)}")
    for number, process in enumerate(fleet.spawned):  # what each worker said of its items' errors
        said = process.stdout.read() if process.stdout is not None else ""
        for line in said.splitlines():
            if line.startswith("{"):
                reported = json.loads(line).get("errors", [])
                totals.errors += [f"round {round_no}: worker {number}: {e}" for e in reported[:5]]
    per_input: dict[str, int] = emulator_json(info["base_url"], "processes-per-input")
    for stem, digest in digests.items():
        renders = per_input.get(digest, 0)
        totals.renders += renders
        totals.duplicates += max(0, renders - 1)
        result = out / f"{stem}.png"
        if not result.exists() or input_stamp(result.read_bytes()) != digest:
            totals.lost += 1
            totals.errors.append(f"round {round_no}: {stem} has no file of its own ({renders} render(s))")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def tail(log: Path) -> str:
    try:
        return log.read_text()[-600:]
    except OSError:
        return "(no log)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak (default 30)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--items", type=int, default=200, help="inputs per round (default 200)")
    parser.add_argument("--input-kib", type=int, default=256, help="size of each input (default 256 KiB)")
    parser.add_argument("--lease", type=float, default=3.0, help="seconds a claim lasts (default 3)")
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-restarts", type=int, default=2)
    parser.add_argument("--chaos-window", type=float, default=6.0, help="seconds into a round of the chaos")
    parser.add_argument("--round-timeout", type=float, default=300.0, help="a longer round is a hang")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each round's folders")
    parser.add_argument("--quick", action="store_true", help="one small round with 3 workers (CI)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.items, args.workers, args.lease, args.chaos_window = 0.0, 24, 3, 1.5, 1.0
        args.input_kib = 16
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    totals = Totals()
    work = Path(tempfile.mkdtemp(prefix="adcreative-soak-"))
    pg_state: Path | None = None
    dsn: str | None = None
    started = time.monotonic()
    end = started + args.minutes * 60
    restart_at: list[float] = []
    try:
        if args.ledger == "postgres":
            pg_state = work / "postgres"
            dsn = postgres("start", pg_state)
            restart_at = [
                started + args.minutes * 60 * (k + 1) / (args.postgres_restarts + 1)
                for k in range(args.postgres_restarts)
            ]
        with emulator(*EMULATOR_FLAGS, "--seed", str(seed % 1000)) as info:
            round_no = 0
            while True:
                round_no += 1
                run_round(round_no, info, work, args, dsn, restart_at, pg_state, totals, rng)
                print(
                    f"round {round_no}: {totals.inputs} inputs, {totals.renders} renders, "
                    f"{totals.duplicates} duplicates, {totals.lost} lost, {totals.hangs} hangs",
                    flush=True,
                )
                if time.monotonic() >= end and not restart_at:
                    break
    finally:
        if pg_state is not None:
            postgres("stop", pg_state)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    rows = [
        ("minutes", f"{elapsed / 60:.1f}"),
        ("ledger", args.ledger),
        ("workers", str(args.workers)),
        ("rounds", str(totals.rounds)),
        ("inputs", str(totals.inputs)),
        ("renders", str(totals.renders)),
        ("renders / inputs", f"{totals.renders / max(1, totals.inputs):.4f}"),
        ("duplicates", str(totals.duplicates)),
        ("lost", str(totals.lost)),
        ("hangs", str(totals.hangs)),
        ("failed workers", str(totals.failed_workers)),
        ("pauses past the lease", str(totals.pauses)),
        ("kills", str(totals.kills)),
        ("PostgreSQL restarts", str(totals.postgres_restarts)),
        ("seed", str(seed)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    for error in totals.errors[:20]:
        print("  " + error)
    data = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, **totals.__dict__}
    data["errors"] = totals.errors[:200]
    print(f"written to {write_results('soak', data, args.output)}")
    bad = totals.duplicates or totals.lost or totals.hangs or totals.failed_workers
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
