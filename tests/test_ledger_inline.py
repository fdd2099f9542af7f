"""The SQLite ledger's small statements run in the event loop: they never wait for another process's lock
there (they go to the ledger's thread, which waits), the write-ahead log is still checkpointed, and an
intent is still on disk before its write returns."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from adcreative_async.ledger import ItemState, NewItem, SqliteLedger
from adcreative_async.ledger import _sqlitestore as sqlite_module

pytestmark = pytest.mark.anyio


def items(n: int, start: int = 0) -> list[NewItem]:
    return [NewItem(f"{i:064x}", i, f"in/{i}.png", "background_remover") for i in range(start, start + n)]


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer, as a second connection: holds the write lock for ``seconds``."""
    other = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_write_that_finds_the_file_locked_waits_in_the_thread_and_never_stalls_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register(items(2))
        keys = [i.key for i in items(2)]
        [record, _] = await ledger.claim(keys, "w", 30)
        held = threading.Event()
        ticks = 0
        written: list[bool] = []

        async def ticker() -> None:
            nonlocal ticks
            while not written:
                ticks += 1
                await anyio.sleep(0.01)

        async def write() -> None:
            written.append(await ledger.intent(keys[0], "w", "u", 30, epoch=record.epoch))

        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, _hold_write_lock, path, 0.3, held)
            await anyio.to_thread.run_sync(held.wait)
            group.start_soon(ticker)
            group.start_soon(write)
        assert written == [True]  # waited for the lock (not "database is locked" at once)
        assert ticks >= 5  # the loop ran while the write waited for the other process's lock
        assert (await ledger.records(keys[:1]))[keys[0]].state is ItemState.SUBMITTING


async def test_a_read_of_a_few_items_while_another_process_writes_reads_what_is_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register(items(3))
        held = threading.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, _hold_write_lock, path, 0.2, held)
            await anyio.to_thread.run_sync(held.wait)
            records = await ledger.records([i.key for i in items(3)])
        assert sorted(r.seq for r in records.values()) == [0, 1, 2]


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_the_write_ahead_log_is_checkpointed_while_statements_run_in_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own checkpoints are off on the connection (they would sync in the event loop): the
    # ledger checkpoints in its thread, so the log is reused instead of growing with every commit
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_INTERVAL", 0.0)
    path = tmp_path / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        for start in range(0, 20_000, 250):  # ~80 commits of new pages
            await ledger.register(items(250, start))
        size = _wal_size(path)
        total = path.stat().st_size
    assert size < total / 4  # a few commits' pages, not all of them


async def test_an_intent_committed_in_the_loop_is_synced_before_its_write_returns(
    tmp_path: Path,
) -> None:
    synced: list[str] = []

    class Noting(SqliteLedger):
        def _sync_wal(self) -> None:
            synced.append(threading.current_thread().name)
            super()._sync_wal()

    async with Noting(tmp_path / "run.sqlite") as ledger:
        await ledger.register(items(1))
        key = items(1)[0].key
        [record] = await ledger.claim([key], "w", 30)
        assert synced == []  # a claim alone is not synced
        assert await ledger.intent(key, "w", "u", 30, epoch=record.epoch)
        assert len(synced) == 1  # done when the write returned
        assert synced[0] != threading.main_thread().name  # in the ledger's thread, not the loop's
