"""The console script's display: CPU of ``adcreative remove-bg`` with live bars vs ``--progress lines``.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.cli             # 1,000 small images, 3 runs of each mode, alternating
    python -m benchmarks.cli --quick     # 40 images, 1 run each: CI keeps it working

Each run is ``adcreative remove-bg DIR -o OUT --progress bars|lines`` in a fresh process under a pseudo-
terminal of 30 rows and 120 columns (so that ``bars`` draws live frames as it would for a person, at its
refresh rate), against an emulator in another process (renders of 20 ms: the work is the client's).
Every image is a different one (the run ledger renders identical inputs once and copies the result, so
identical inputs would measure one render); each run checks that every item had its own start call.
Measured: the CLI process's CPU seconds (user + system, from ``wait4``), wall time, and the bytes it wrote
to the terminal. Goal: bars cost at most 1.5x the CPU of lines at 1,000 items.

Prints a table, writes ``benchmarks/results/cli.json`` (``cli-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adcreative_async.testing import sample_image
from benchmarks._harness import (
    cell,
    counts_diff,
    credentials_of,
    emulator,
    machine,
    request_counts,
    summary,
    write_results,
)

ROWS, COLUMNS = 30, 120
#: The goal: bars CPU / lines CPU at 1,000 items.
GOAL_RATIO = 1.5
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


START_ROUTE = "POST Image/BackgroundRemoving/AdCreative"


def write_inputs(folder: Path, count: int) -> None:
    """``count`` small JPEGs, each a different image (its own size), so that each is rendered."""
    for n in range(count):
        (folder / f"photo-{n:04d}.jpg").write_bytes(sample_image("jpeg", (16 + n % 40, 16 + n // 40)))


def run_in_terminal(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``argv`` under a pseudo-terminal of ROWS x COLUMNS; its CPU seconds, wall seconds, output bytes."""
    import fcntl
    import pty
    import termios

    started = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    written = 0
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                written += len(data)
        except OSError:  # EIO: the child closed the terminal
            break
    _, status, usage = os.wait4(pid, 0)
    os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {code}")
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": time.monotonic() - started,
        "bytes": float(written),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--items", type=int, help="images per run (default 1,000; 40 with --quick)")
    parser.add_argument("--runs", type=int, help="runs of each mode (default 3; 1 with --quick)")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    items = args.items or (40 if args.quick else 1000)
    runs = args.runs or (1 if args.quick else 3)
    script = shutil.which("adcreative") or str(Path(sys.executable).with_name("adcreative"))
    work = Path(tempfile.mkdtemp(prefix="adcreative-bench-cli-"))
    figures: dict[str, list[dict[str, float]]] = {"lines": [], "bars": []}
    try:
        inputs = work / "in"
        inputs.mkdir()
        write_inputs(inputs, items)
        with emulator("--task-duration", "0.02") as info:
            env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
            env.update({f"ADCREATIVE_{k.upper()}": v for k, v in credentials_of(info).items()})
            env.update(ADCREATIVE_USER_ID=USER, TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(ROWS))
            for run in range(runs):
                for mode in ("lines", "bars"):  # alternating, so that load on the machine hits both
                    out = work / f"out-{mode}-{run}"
                    command = [script, "remove-bg", str(inputs), "-o", str(out), "--progress", mode]
                    before = request_counts(info["base_url"])
                    figures[mode].append(run_in_terminal(command, env))
                    starts = counts_diff(before, request_counts(info["base_url"])).get(START_ROUTE, 0)
                    if starts != items:
                        raise RuntimeError(f"{mode}: {starts} start calls for {items} images")
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = statistics.median(b["cpu"] for b in figures["bars"]) / statistics.median(
        line["cpu"] for line in figures["lines"]
    )
    result: dict[str, Any] = {
        "machine": machine(),
        "items": items,
        "runs": runs,
        "terminal": f"{ROWS}x{COLUMNS}",
        "modes": {
            mode: {key: summary([f[key] for f in runs_of]) for key in ("cpu", "wall", "bytes")}
            for mode, runs_of in figures.items()
        },
        "bars_over_lines_cpu": ratio,
        "goal": GOAL_RATIO,
    }
    print(f"adcreative remove-bg, {items} images, {runs} run(s) per mode, terminal {ROWS}x{COLUMNS}")
    print(f"{'mode':<8} {'CPU s':>18} {'wall s':>18} {'terminal bytes':>24}")
    for mode, stats in result["modes"].items():
        print(
            f"{mode:<8} {cell(stats['cpu'], '.2f'):>18} {cell(stats['wall'], '.2f'):>18} "
            f"{cell(stats['bytes'], '.0f'):>24}"
        )
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"bars / lines CPU: {ratio:.2f}x (goal <= {GOAL_RATIO}x: {verdict})")
    path = write_results("cli-quick" if args.quick else "cli", result, args.output)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
