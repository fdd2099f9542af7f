"""One bulk worker process of a multi-process run, shared by the benchmarks' and the tests' workers
(``benchmarks/_rate_worker.py``, ``benchmarks/_soak_worker.py``, ``tests/ledger_worker.py``): every input
through ``process_many`` with a run ledger (background removal, results named after their inputs and
downloaded), printing ``started`` once its client is open (then, if asked, waiting for a line on its
standard input before it begins: workers started together). Each worker script sets its client's
policies and concurrency and prints its own summary (:func:`summary` and what it adds) as one JSON line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from adcreative_async import AdCreativeClient, BulkOutcome, PollPolicy, RateControl, RateStatus, RetryPolicy
from adcreative_async.ledger import RenderRequest


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker's client and bulk run are set up.

    Attributes:
        poll_policy: the client's polls.
        retry: the client's retry policy (its reconcile grace suits the emulator's read lag).
        concurrency: uploads and downloads in flight (each).
        lease: seconds a claim lasts unless renewed (None: ``process_many``'s default).
        worker_id: the worker's name in the ledger (None: a fresh one).
        rate_control: the client's rate control (None: off).
        gate: after ``started``, wait for a line on standard input before the run begins (so that a
            test starts its workers' runs together however long each took to start).
    """

    poll_policy: PollPolicy
    retry: RetryPolicy
    concurrency: int
    lease: float | None = None
    worker_id: str | None = None
    rate_control: RateControl | None = None
    gate: bool = False


@dataclass(frozen=True)
class WorkerRun:
    """What a worker's run left: the outcomes, and its client's rate status at the end (None: no rate
    control)."""

    outcomes: list[BulkOutcome[Path]]
    rate: RateStatus | None


def inputs_of(folder: Path) -> list[Path]:
    """The inputs of a worker: every ``*.png`` of ``folder``, in name order."""
    return sorted(folder.glob("*.png"))


async def run_worker(
    credentials: dict[str, str], paths: Sequence[Path], output: Path, ledger: str, settings: WorkerSettings
) -> WorkerRun:
    """Open a client with ``credentials`` (printing ``started`` once it is open) and run ``paths``
    through ``process_many`` on ``ledger`` (a SQLite path or a ``postgresql://`` DSN with ``#run-name``)
    into ``output``."""
    async with AdCreativeClient(
        **credentials,  # type: ignore[arg-type]
        poll_policy=settings.poll_policy,
        retry=settings.retry,
        trust_env=False,
        rate_control=settings.rate_control,
    ) as client:
        print("started", flush=True)
        if settings.gate:
            await anyio.to_thread.run_sync(sys.stdin.readline)
        outcomes = await client.process_many(
            paths,
            request=RenderRequest.remove_background,
            dest=output,
            ledger=ledger,
            name="{stem}{suffix}",
            upload_concurrency=settings.concurrency,
            download_concurrency=settings.concurrency,
            lease=settings.lease,
            worker_id=settings.worker_id,
        )
        return WorkerRun(outcomes, client.rate_status)


def summary(run: WorkerRun) -> dict[str, Any]:
    """The outcomes in short: ``{"ok": n, "resumed": n, "errors": [...]}`` (items done, those of them
    done before this run or by another worker, and each error as text)."""
    outcomes = run.outcomes
    return {
        "ok": sum(o.ok for o in outcomes),
        "resumed": sum(o.resumed for o in outcomes),
        "errors": [f"{o.item}: {type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None],
    }


def print_summary(data: dict[str, Any]) -> None:
    """The worker's last line of output."""
    print(json.dumps(data), flush=True)
