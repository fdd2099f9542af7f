"""One bulk worker of the rate-limit benchmark and test: every ``*.png`` of a folder through
``process_many`` with a run ledger (background removal, results downloaded; :mod:`benchmarks._bulk_worker`),
with the client's rate control as ``MODE`` says. Prints ``started`` once its client is open, and at the
end one JSON line: ``{"ok", "resumed", "errors", "throttled", "cuts", "rate", "cpu", "wall"}`` (429s this
worker received, cuts of its rate, its last pace, its CPU and wall seconds from opening the client).

Usage: ``python -m benchmarks._rate_worker CREDENTIALS_JSON INPUT_DIR OUTPUT_DIR LEDGER MODE [--gate]``,
where MODE is ``shared`` (AIMD, the learned rate shared through a PostgreSQL ledger), ``alone`` (AIMD in
each process) or ``plain`` (no rate control: the retry policy alone, honouring ``Retry-After``); with
``--gate`` the run begins once a line is read from standard input, after ``started``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio

from adcreative_async import PollPolicy, RateControl, RetryPolicy
from benchmarks._bulk_worker import WorkerSettings, inputs_of, print_summary, run_worker, summary

#: The emulator has no read-after-write lag: a short grace for unanswered start calls.
RETRY = RetryPolicy(reconcile_grace=0.5, reconcile_interval=0.1)
#: Polls as a busy worker makes them (the defaults, faster first polls).
POLLS = PollPolicy(initial_interval=0.25, max_interval=1.0)
MODES = ("shared", "alone", "plain")


def rate_control(mode: str) -> RateControl | None:
    """The client's rate control in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return None if mode == "plain" else RateControl(share=mode == "shared")


async def main(
    credentials: dict[str, str], paths: list[Path], output: Path, ledger: str, mode: str, gate: bool
) -> None:
    cpu, wall = time.process_time(), time.monotonic()
    settings = WorkerSettings(POLLS, RETRY, concurrency=8, rate_control=rate_control(mode), gate=gate)
    run = await run_worker(credentials, paths, output, ledger, settings)
    status = run.rate
    print_summary(
        {
            **summary(run),
            "throttled": status.throttled if status else None,
            "cuts": status.cuts if status else None,
            "rate": status.rate if status else None,
            "cpu": time.process_time() - cpu,
            "wall": time.monotonic() - wall,
        }
    )


if __name__ == "__main__":
    inputs = inputs_of(Path(sys.argv[2]))
    gate = sys.argv[6:] == ["--gate"]
    anyio.run(main, json.loads(sys.argv[1]), inputs, Path(sys.argv[3]), sys.argv[4], sys.argv[5], gate)
