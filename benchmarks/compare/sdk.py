"""The SDK's contenders in the bulk workload: README's first waiting example, its bulk helper, and a
per-job poll loop on its own calls.

- ``waits``: README's first waiting example, once per job, all gathered: ``remove()``, then
  ``async for update in job.wait_until_complete()``, downloading each task as its update says it
  succeeded. Every wait goes through the client's one poll scheduler. Detection = the update whose
  progress is complete.
- ``bulk``: ``client.process_many(...)`` with the SDK's defaults (4 uploads, 8 downloads in flight; every
  wait through the client's one poll scheduler: one unfiltered ``CheckUserProgress`` per user per tick,
  or one ``CheckApplicationAllProgresses`` shared by the users, see ``PollPolicy.share_listings``).
  Detection = the ``on_update`` callback that reports the process complete.
- ``per-job``: what common job SDKs do, on this SDK's transport and models: each job polled by its own
  loop (``await job.refresh()`` every ``interval`` seconds, a filtered ``CheckUserProgress``), then its
  results downloaded with ``job.download()``. This isolates the polling strategy: the transport, the
  decoding and the downloads are the SDK's in both.

Run by ``python -m benchmarks.compare``, one workload per process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from adcreative_async import AdCreativeClient, Limits, Progress, RenderJob, TaskUpdate
from benchmarks.compare._workload import CONNECTIONS, BulkRun, Item, child_main, record_errors

if TYPE_CHECKING:  # imported by the package on first use: the per-job workloads never need it
    from adcreative_async import BulkOutcome


def _client(run: BulkRun) -> AdCreativeClient:
    return AdCreativeClient(
        **run.credentials,  # type: ignore[arg-type]
        trust_env=bool(run.params.get("trust_env", False)),  # benchmarks.perjob: the default, True
        limits=Limits(max_connections=CONNECTIONS),
    )


async def bulk(run: BulkRun) -> None:
    """Every item through ``process_many``: submit, wait (one scheduler), download."""

    def on_update(outcome: BulkOutcome[Item], update: TaskUpdate) -> None:
        if update.progress.is_complete and update.process_id not in run.detected:
            run.detected[update.process_id] = time.monotonic()

    async def submit(client: AdCreativeClient, item: Item) -> RenderJob:
        job = await client.background_remover.remove(item.path, user_id=item.user)
        run.submitted.append(time.monotonic())
        return job

    # The SDK's defaults unless a contender sets its stages' concurrency.
    stages: dict[str, Any] = {
        key: run.params[key]
        for key in ("upload_concurrency", "download_concurrency")
        if run.params.get(key) is not None
    }
    async with _client(run) as client:
        outcomes = await client.process_many(
            run.items, submit, dest=run.out_dir, on_update=on_update, **stages
        )
    run.errors.extend(f"{type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None)


async def waits(run: BulkRun) -> None:
    """README's first waiting example per job (``remove`` → ``wait_until_complete()`` → ``download`` on
    each succeeded update), every job gathered."""

    async def one(client: AdCreativeClient, item: Item) -> None:
        job = await client.background_remover.remove(item.path, user_id=item.user)
        run.submitted.append(time.monotonic())
        async for update in job.wait_until_complete():
            if update.progress.is_complete and job.process_id not in run.detected:
                run.detected[job.process_id] = time.monotonic()
            if update.succeeded:
                await job.download(update.task_id, run.out_dir)

    async with _client(run) as client:
        results = await asyncio.gather(*(one(client, item) for item in run.items), return_exceptions=True)
    record_errors(run, results)


async def per_job(run: BulkRun) -> None:
    """One loop per job: submit, ``job.refresh()`` every ``interval`` s until complete, download."""

    async def one(client: AdCreativeClient, item: Item) -> None:
        job = await client.background_remover.remove(item.path, user_id=item.user)
        run.submitted.append(time.monotonic())
        progress: Progress | None = job.progress
        while progress is None or not progress.is_complete:
            await asyncio.sleep(run.interval)
            progress = await job.refresh()
        run.detected[job.process_id] = time.monotonic()
        for task_id in progress.succeeded_task_ids:
            await job.download(task_id, run.out_dir)

    async with _client(run) as client:
        results = await asyncio.gather(*(one(client, item) for item in run.items), return_exceptions=True)
    record_errors(run, results)


if __name__ == "__main__":
    sys.exit(child_main({"waits": waits, "bulk": bulk, "per-job": per_job}))
