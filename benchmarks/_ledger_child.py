"""The scenarios of ``benchmarks.ledger``, each run in a fresh process:
``python -m benchmarks._ledger_child --child KIND PARAMS``.

- ``plain``: ``process_many`` without a ledger (the baseline; compare's SDK contender on distinct images).
- ``ledger``: the same through a SQLite or PostgreSQL run ledger (derived user per item, waits on the
  application listing).
- ``serial``: no ledger, at most one unanswered start call per (feature, user) (a lock per user around
  the start call): what the other attribution rule costs.
- ``resume``: a prepared ledger run again; seconds to the first start call and to the end.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from adcreative_async import AdCreativeClient, Limits, RenderJob
from adcreative_async.ledger import RenderRequest
from benchmarks.compare._workload import CONNECTIONS, BulkRun, Item, child_main


def _client(run: BulkRun) -> AdCreativeClient:
    return AdCreativeClient(**run.credentials, trust_env=False, limits=Limits(max_connections=CONNECTIONS))  # type: ignore[arg-type]


def _user(run: BulkRun, item: Item) -> str:
    return run.params["users"][0] if run.params.get("one_user") else item.user


async def plain(run: BulkRun) -> None:
    """No ledger: each item's start call under its workload user."""

    async def submit(client: AdCreativeClient, item: Item) -> RenderJob:
        job = await client.background_remover.remove(item.path, user_id=_user(run, item))
        run.submitted.append(time.monotonic())
        return job

    async with _client(run) as client:
        outcomes = await client.process_many(run.items, submit, dest=run.out_dir)
    run.errors.extend(f"{type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None)


async def serial(run: BulkRun) -> None:
    """No ledger, at most one start call in flight per (feature, user)."""
    locks: dict[str, anyio.Lock] = {}

    async def submit(client: AdCreativeClient, item: Item) -> RenderJob:
        user = _user(run, item)
        async with locks.setdefault(user, anyio.Lock()):
            job = await client.background_remover.remove(item.path, user_id=user)
        run.submitted.append(time.monotonic())
        return job

    async with _client(run) as client:
        outcomes = await client.process_many(run.items, submit, dest=run.out_dir)
    run.errors.extend(f"{type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None)


async def ledger(run: BulkRun) -> None:
    """Through a run ledger (SQLite in a temporary folder, or a fresh run in PostgreSQL)."""
    with tempfile.TemporaryDirectory(prefix="adcreative-bench-ledger-") as tmp:
        if run.params["backend"] == "sqlite":
            spec = str(Path(tmp) / "run.sqlite")
        else:
            spec = f"{run.params['dsn']}#bench-{uuid.uuid4().hex[:8]}"
        async with _client(run) as client:
            outcomes = await client.process_many(
                [item.path for item in run.items],
                request=RenderRequest.remove_background,
                dest=run.out_dir,
                ledger=spec,
            )
    run.submitted.append(time.monotonic())
    run.errors.extend(f"{type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None)


class _Timed(RenderRequest):
    """A request that notes when the first start call of the run is made."""

    first: float | None = None

    async def submit(self, client: AdCreativeClient, *, user_id: str | None = None) -> RenderJob:
        if _Timed.first is None:
            _Timed.first = time.monotonic()
        return await super().submit(client, user_id=user_id)


def resume(params: dict[str, Any]) -> dict[str, Any]:
    images = Path(params["images"])
    paths = [images / f"{i}.png" for i in range(params["total"])]

    def request(path: Path) -> RenderRequest:
        return _Timed("background_remover", "remove", {"image": path})

    async def main() -> dict[str, Any]:
        async with AdCreativeClient(**params["credentials"], trust_env=False) as client:
            started = time.monotonic()
            cpu = time.process_time()
            outcomes = await client.process_many(
                paths, request=request, dest=params["out"], ledger=params["ledger"]
            )
            wall = time.monotonic() - started
        assert _Timed.first is not None
        return {
            "first_start_seconds": _Timed.first - started,
            "wall_seconds": wall,
            "cpu_seconds": time.process_time() - cpu,
            "resumed": sum(o.resumed for o in outcomes),
            "ok": sum(o.ok for o in outcomes),
            "errors": [str(o.error) for o in outcomes if o.error is not None][:5],
        }

    return anyio.run(main)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "resume":
        print(json.dumps(resume(json.loads(sys.argv[3]))))
        sys.exit(0)
    sys.exit(child_main({"plain": plain, "serial": serial, "ledger": ledger}))
