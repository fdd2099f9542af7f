"""``adcreative runs show`` on a large run: ``python -m benchmarks.runs_show``.

A SQLite run ledger of N registered items (default 20,000 and 200,000; labels of about 35 characters) is
read by ``adcreative runs show DIR --json`` (stdout to ``/dev/null``), each run a fresh CLI process;
``wait4`` gives its peak RSS (lifetime, start-up included) and CPU. With ``--baseline REF`` the same
command is run from the package as it was at git revision ``REF`` (or from a folder holding it), side by
side at each size. Goal (issue 23): the peak does not grow with N (the ledger read a batch of rows at a
time, the JSON written as it is read). ``--table`` also prints the table (slow: rich lays out every row).

Prints a table and writes ``benchmarks/results/runs_show.json`` (``runs_show-quick.json`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from benchmarks._harness import ROOT, machine, write_results
from benchmarks.cli_scale import export

SIZES = (20_000, 200_000)
QUICK_SIZES = (100, 1_000)


async def make_run(folder: Path, size: int) -> None:
    """A run ledger of ``size`` registered items in ``folder`` (its own SQLite file; made first)."""
    from adcreative_async.ledger import NewItem, SqliteLedger

    async with SqliteLedger(folder / ".adcreative-run.sqlite") as ledger:
        for start in range(0, size, 10_000):
            await ledger.register(
                [
                    NewItem(f"{i:064x}", i, f"/data/photos/batch/photo-{i:07d}.png", "background_remover")
                    for i in range(start, min(size, start + 10_000))
                ]
            )


def show(source: Path, folder: Path, extra: Sequence[str]) -> dict[str, Any]:
    """One ``adcreative runs show`` in a fresh process run from ``source``; its measurements."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    env["PYTHONPATH"] = str(source)
    command = [sys.executable, "-m", "adcreative_async.cli", "runs", "show", str(folder), *extra]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=source
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"runs show exited {os.waitstatus_to_exitcode(status)}")
    return {
        "peak_rss_kib": usage.ru_maxrss,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "wall_seconds": wall,
    }


def measure(sizes: Sequence[int], baseline: str | None, table: bool) -> dict[str, Any]:
    modes = [["--json"]] + ([[]] if table else [])
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="adcreative-runs-show-") as tmp:
        sources = {"current": ROOT}
        if baseline is not None:
            given = Path(baseline)
            if given.is_dir():
                sources["baseline"] = given
            else:
                (Path(tmp) / "baseline").mkdir()
                sources["baseline"] = export(baseline, Path(tmp) / "baseline")
        for size in sizes:
            folder = Path(tmp) / f"run-{size}"
            folder.mkdir()
            anyio.run(make_run, folder, size)
            for mode in modes:
                for name, source in sources.items():  # side by side at each size
                    result = show(source, folder, mode)
                    key = f"{name} {' '.join(mode) or 'table'}"
                    runs.setdefault(key, {})[str(size)] = result
                    print(
                        f"  {key:16} {size:>9,}: peak {result['peak_rss_kib'] / 1024:.1f} MiB, "
                        f"{result['cpu_seconds']:.2f} s CPU",
                        file=sys.stderr,
                        flush=True,
                    )
    return {"sizes": list(sizes), "baseline": baseline, "runs": runs}


def report(data: dict[str, Any]) -> str:
    sizes: list[int] = data["sizes"]
    header = f"{'run':18}" + "".join(f"{f'peak MiB {n:,}':>20}" for n in sizes) + f"{'CPU s (largest)':>17}"
    lines = [header]
    for name, cells in data["runs"].items():
        peaks = "".join(f"{cells[str(n)]['peak_rss_kib'] / 1024:>20.1f}" for n in sizes)
        lines.append(f"{name:18}{peaks}{cells[str(sizes[-1])]['cpu_seconds']:>17.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runs_show", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI keeps it working)")
    parser.add_argument("--sizes", type=int, nargs="+", help="items per run (default: 20000 200000)")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the package of this git revision (or folder)"
    )
    parser.add_argument("--table", action="store_true", help="also print the table (slow)")
    parser.add_argument("--output", type=Path, help="write the results here instead")
    args = parser.parse_args(argv)
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    data = measure(sizes, args.baseline, args.table)
    data["machine"] = machine()
    print(report(data))
    path = write_results("runs_show-quick" if args.quick else "runs_show", data, args.output)
    print(f"written {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
