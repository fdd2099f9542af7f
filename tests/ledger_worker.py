"""A bulk worker for the crash and many-worker tests: every ``*.png`` of a folder through
``process_many`` with a run ledger, results named after their inputs (``benchmarks/_bulk_worker.py``, the
runner the benchmarks' workers share). Prints ``started`` once its client is open, and at the end one
JSON line: ``{"ok": n, "resumed": n, "errors": [...]}``.

Usage (the repository's root on ``PYTHONPATH``, for ``benchmarks``):
``python tests/ledger_worker.py CREDENTIALS_JSON INPUT_DIR OUTPUT_DIR LEDGER [LEASE [WORKER_ID]]``
(LEDGER: a SQLite path or a ``postgresql://`` DSN; LEASE: seconds a claim lasts unless renewed, default
30; WORKER_ID: a name, so that its claims are taken over only when its lease lapses).
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
    initial_interval=0.05, max_interval=0.2, min_interval=0.02, max_requests_per_second=1000, burst=100
)
#: The emulator has no read-after-write lag: a short grace for unanswered start calls.
RETRY = RetryPolicy(reconcile_grace=0.5, reconcile_interval=0.1)


async def main(
    credentials: dict[str, str], inputs: Path, output: Path, ledger: str, lease: float, worker_id: str | None
) -> None:
    settings = WorkerSettings(POLLS, RETRY, concurrency=8, lease=lease, worker_id=worker_id)
    print_summary(summary(await run_worker(credentials, inputs_of(inputs), output, ledger, settings)))


if __name__ == "__main__":
    lease = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    worker_id = sys.argv[6] if len(sys.argv) > 6 else None
    anyio.run(
        main, json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], lease, worker_id
    )
