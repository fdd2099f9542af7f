"""One worker of the soak (:mod:`benchmarks.soak`): every ``*.png`` of a folder through ``process_many``
with a run ledger, results named after their inputs (:mod:`benchmarks._bulk_worker`). Prints ``started``
once its client is open, and at the end one JSON line: ``{"ok": n, "resumed": n, "errors": [...]}``.

Usage: ``python -m benchmarks._soak_worker CREDENTIALS_JSON INPUT_DIR OUTPUT_DIR LEDGER LEASE``
(LEDGER: a SQLite path or a ``postgresql://`` DSN with ``#run-name``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from adcreative_async import PollPolicy, RetryPolicy
from benchmarks._bulk_worker import WorkerSettings, inputs_of, print_summary, run_worker, summary

#: Polls as fast as a local emulator allows.
POLLS = PollPolicy(
    initial_interval=0.05, max_interval=0.3, min_interval=0.02, max_requests_per_second=1000, burst=100
)
#: The soak's emulator lags reads by 0.1 s at most: a grace of several times that.
RETRY = RetryPolicy(reconcile_grace=0.8, reconcile_interval=0.1)


async def main(credentials: dict[str, str], inputs: Path, output: Path, ledger: str, lease: float) -> None:
    paths = await anyio.to_thread.run_sync(inputs_of, inputs)
    settings = WorkerSettings(POLLS, RETRY, concurrency=4, lease=lease)
    print_summary(summary(await run_worker(credentials, paths, output, ledger, settings)))


if __name__ == "__main__":
    anyio.run(
        main, json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    )
