"""The console script's memory as the number of inputs grows: ``python -m benchmarks.cli_scale``.

``adcreative remove-bg DIR -o OUT --json`` over N distinct small images (background removals, renders of
0.5-1.5 s, the CLI's defaults: a SQLite run ledger in OUT, ``-c 4``), at each size (default 2,000 and
20,000), each run a fresh CLI process against a fresh emulator process. With ``--baseline REF`` the same
command is also run from the package as it was at git revision ``REF`` (exported to a temporary folder
and put first on ``PYTHONPATH``), side by side at each size: the machine's noise alike for both.

The library's part is measured alone too ("library": ``client.bulk`` in a fresh process with what the CLI
passes it: the SQLite ledger, results named after their inputs, ``-c 4``; requests from a generator,
outcomes counted), so that what the CLI itself adds per input shows apart from the library's own growth.

Measured: the CLI process's peak RSS (``wait4``'s ``ru_maxrss``: its lifetime, start-up included), its CPU
seconds and wall time; RSS growth per input between consecutive sizes (KiB). Goal (issue 23): growth
<= 0.5 KiB per input, as the library's bulk run. Each run checks that every input succeeded and that
``--json`` printed one line per input (JSON Lines) or one document holding them (the baseline's format).

Each cell is one run unless ``--runs K`` (the run of median peak RSS is kept; every peak is recorded).
Prints a table and writes ``benchmarks/results/cli_scale.json`` (``cli_scale-quick.json`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import ROOT, emulator, machine, write_results
from benchmarks.scale import TASK_DURATION, write_images

SIZES = (2_000, 20_000)
QUICK_SIZES = (50, 200)
#: The goal: RSS growth per input between sizes (KiB).
GOAL_KIB_PER_ITEM = 0.5
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export(ref: str, into: Path) -> Path:
    """The package as it was at git revision ``ref``, in ``into`` (for ``PYTHONPATH``)."""
    archive = subprocess.run(
        ["git", "archive", ref, "adcreative_async"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_cli(
    source: Path, info: dict[str, Any], images: Path, out: Path, extra: Sequence[str]
) -> dict[str, Any]:
    """One ``adcreative remove-bg`` in a fresh process run from ``source``; its measurements."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    env.update({f"ADCREATIVE_{k.upper()}": str(info[k]) for k in keys})
    env["ADCREATIVE_USER_ID"] = USER
    env["PYTHONPATH"] = str(source)
    command = [sys.executable, "-m", "adcreative_async.cli", "remove-bg", str(images), "-o", str(out)]
    command += ["--json", *extra]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=source)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        lines = stdout.read().decode().splitlines()
        stderr.seek(0)
        errors = stderr.read().decode()[-2000:]
    if process.returncode != 0:
        raise RuntimeError(f"adcreative exited {process.returncode}: {errors}\n{lines[-3:]}")
    try:  # the baseline's format: one document holding every item
        last = json.loads("\n".join(lines))
        items = len(last.get("items", []))
    except ValueError:  # JSON Lines: one line per input, then the summary
        last = json.loads(lines[-1])
        items = sum(1 for line in lines[:-1] if json.loads(line).get("type") == "item")
    return {
        "peak_rss_kib": usage.ru_maxrss,  # KiB on Linux
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "wall_seconds": wall,
        "succeeded": last.get("succeeded"),
        "item_lines": items,
    }


def library_child(params: dict[str, Any]) -> None:
    """The library's part of the same run, in this (fresh) process: ``client.bulk`` with what the CLI
    passes it (a SQLite ledger in the output folder, every result named after its input, ``-c 4``),
    the requests from a generator and the outcomes counted; prints its measurements as a JSON line."""
    import anyio

    from adcreative_async import AdCreativeClient
    from adcreative_async.ledger import RenderRequest

    folder, out = Path(params["folder"]), Path(params["out"])

    async def main() -> dict[str, Any]:
        ok = 0
        requests = (
            RenderRequest.remove_background(folder / f"{i}.png", label=str(folder / f"{i}.png"))
            for i in range(params["items"])
        )
        async with (
            AdCreativeClient(**params["credentials"], user_id=USER) as client,
            client.bulk(
                requests,
                dest=out,
                ledger=str(out / ".adcreative-run.sqlite"),
                name="{stem}{suffix}",
                upload_concurrency=4,
                download_concurrency=4,
            ) as run,
        ):
            async for outcome in run:
                ok += outcome.ok
        return {"succeeded": ok}

    print(json.dumps(anyio.run(main)))


def run_library(info: dict[str, Any], folder: Path, out: Path, size: int) -> dict[str, Any]:
    """:func:`library_child` in a fresh process; its measurements."""
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    credentials = {k: str(info[k]) for k in keys}
    params = {"credentials": credentials, "folder": str(folder), "out": str(out), "items": size}
    with tempfile.TemporaryFile() as stdout:
        started = time.monotonic()
        command = [sys.executable, "-m", "benchmarks.cli_scale", "--child", json.dumps(params)]
        process = subprocess.Popen(command, stdout=stdout, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        stdout.seek(0)
        result: dict[str, Any] = json.loads(stdout.read().decode().splitlines()[-1])
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the library run failed")
    result.update(peak_rss_kib=usage.ru_maxrss, cpu_seconds=usage.ru_utime + usage.ru_stime)
    result.update(wall_seconds=wall, item_lines=0)
    return result


def measure(
    sizes: Sequence[int], baseline: str | None, extra: Sequence[str], repeats: int = 1
) -> dict[str, Any]:
    runs: dict[str, dict[str, dict[str, Any]]] = {"current": {}, "library": {}}
    with tempfile.TemporaryDirectory(prefix="adcreative-cli-scale-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        started = time.monotonic()
        write_images(images, max(sizes))
        _log(f"{max(sizes):,} images written in {time.monotonic() - started:.1f} s")
        sources = {"current": ROOT}
        if baseline is not None:
            given = Path(baseline)  # a folder holding the package (an exported revision), or a revision
            sources["baseline"] = given if given.is_dir() else export(baseline, Path(tmp) / "baseline")
            runs["baseline"] = {}
        for size in sizes:
            folder = Path(tmp) / f"in-{size}"
            folder.mkdir()
            for i in range(size):  # the first N images, linked: no copy
                (folder / f"{i}.png").symlink_to(images / f"{i}.png")
            for name in [*sources, "library"]:  # side by side at each size
                samples = []
                for attempt in range(repeats):
                    low, high = TASK_DURATION
                    with emulator("--task-duration", str(low), str(high)) as info:
                        out = Path(tmp) / f"out-{name}-{size}-{attempt}"
                        if name == "library":
                            result = run_library(info, folder, out, size)
                        else:
                            result = run_cli(sources[name], info, folder, out, extra)
                    samples.append(result)
                    _log(
                        f"  {name:8} {size:>7,}: {result['wall_seconds']:.1f} s wall, "
                        f"{result['cpu_seconds'] / size * 1000:.2f} ms CPU/item, "
                        f"{result['peak_rss_kib'] / 1024:.0f} MiB peak, {result['succeeded']}/{size} ok, "
                        f"{result['item_lines']} item lines"
                    )
                samples.sort(key=lambda r: r["peak_rss_kib"])
                runs[name][str(size)] = {
                    **samples[len(samples) // 2],
                    "peaks_kib": [r["peak_rss_kib"] for r in samples],
                }
    return {"sizes": list(sizes), "baseline": baseline, "extra": list(extra), "runs": runs}


def report(data: dict[str, Any]) -> str:
    sizes: list[int] = data["sizes"]
    lines = [
        f"{'run':9} {'inputs':>8} {'peak MiB':>9} {'KiB/input growth':>17} {'CPU ms/input':>13} {'wall s':>8}"
    ]
    for name, runs in data["runs"].items():
        previous: tuple[int, float] | None = None
        for size in sizes:
            r = runs[str(size)]
            growth = ""
            if previous is not None:
                growth = f"{(r['peak_rss_kib'] - previous[1]) / (size - previous[0]):.2f}"
            lines.append(
                f"{name:9} {size:>8,} {r['peak_rss_kib'] / 1024:>9.1f} {growth:>17} "
                f"{r['cpu_seconds'] / size * 1000:>13.2f} {r['wall_seconds']:>8.1f}"
            )
            previous = (size, r["peak_rss_kib"])
    if len(sizes) > 1:
        small, large = str(sizes[0]), str(sizes[-1])
        current = data["runs"]["current"]
        growth = (current[large]["peak_rss_kib"] - current[small]["peak_rss_kib"]) / (sizes[-1] - sizes[0])
        verdict = "met" if growth <= GOAL_KIB_PER_ITEM else "NOT met"
        lines.append(f"goal: RSS growth <= {GOAL_KIB_PER_ITEM} KiB/input: {growth:.2f}: {verdict}")
        library = data["runs"]["library"]
        own = growth - (library[large]["peak_rss_kib"] - library[small]["peak_rss_kib"]) / (
            sizes[-1] - sizes[0]
        )
        lines.append(
            f"the CLI's own growth (current less the library's run of the same bulk): {own:.2f} KiB/input"
        )
        if "baseline" in data["runs"]:
            base = data["runs"]["baseline"]
            ratio = current[large]["peak_rss_kib"] / base[large]["peak_rss_kib"]
            lines.append(f"peak RSS at {sizes[-1]:,} inputs, current / baseline: {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cli_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI keeps it working)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help="inputs per run (default: 2000 20000)")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the package of this git revision (or of this folder)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per cell: the median peak is kept")
    parser.add_argument("--no-ledger", action="store_true", help="run the CLI with --no-ledger")
    parser.add_argument("--output", type=Path, help="write the results here instead")
    args = parser.parse_args(argv)
    if args.child:
        library_child(json.loads(args.child))
        return 0
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    extra = ["--no-ledger"] if args.no_ledger else []
    data = measure(sorted(sizes), args.baseline, extra, max(1, args.runs))
    data["machine"] = machine()
    print(report(data))
    if args.output is not None:
        args.output.write_text(json.dumps(data, indent=2))
    else:
        path = write_results("cli_scale-quick" if args.quick else "cli_scale", data)
        _log(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
