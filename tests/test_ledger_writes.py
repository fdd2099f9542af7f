"""What the SQLite ledger writes for a bulk run: the pages its commits dirty, and files of earlier versions.

A page written is a page copied into the write-ahead log (and later into the file): the pages counted here
are the WAL frames one commit adds, read with ``PRAGMA wal_checkpoint`` from a second connection.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from adcreative_async.ledger import ItemState, NewItem, SqliteLedger, derived_user_id

pytestmark = pytest.mark.anyio

ITEMS = 2000
#: Items a bulk run claims (and writes the intents of) together: half its claim window.
BATCH = 32


def keys(n: int) -> list[str]:
    """Keys as a run makes them: SHA-256 hashes, in no order of their own."""
    return [hashlib.sha256(f"input {i}".encode()).hexdigest() for i in range(n)]


def frames_since_reset(side: sqlite3.Connection) -> int:
    """Pages written to the WAL since the last reset; the WAL is reset for the next count."""
    _, frames, _ = side.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(frames)


async def test_a_window_of_items_claimed_answered_and_downloaded_together_shares_pages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.sqlite"
    all_keys = keys(ITEMS)
    async with SqliteLedger(path) as ledger:
        await ledger.register(
            [NewItem(k, i, f"photos/{i:05d}.png", "background_remover") for i, k in enumerate(all_keys)]
        )
        side = sqlite3.connect(path)
        try:
            frames_since_reset(side)
            batch = all_keys[1000 : 1000 + BATCH]  # consecutive inputs, as a run claims them
            users = {k: derived_user_id(ledger.namespace, k, 0) for k in batch}
            claimed, intended = await ledger.claim_and_intend(
                batch, "worker", 30.0, {k: (0, u) for k, u in users.items()}
            )
            assert intended == set(batch)
            claim_pages = frames_since_reset(side)

            for record in claimed:
                await ledger.submitted(
                    record.key, f"p-{record.key[:20]}", users[record.key], ["t"], epoch=record.epoch
                )
            await ledger.records(batch[:1])  # a read commits the writes behind first
            answer_pages = frames_since_reset(side)

            for record in claimed:
                await ledger.downloaded(record.key, [f"out/{record.key[:20]}.png"], epoch=record.epoch)
            await ledger.records(batch[:1])
            download_pages = frames_since_reset(side)
        finally:
            side.close()
        done = await ledger.records(batch)
    assert {r.state for r in done.values()} == {ItemState.DOWNLOADED}
    # a few pages per commit, not one (or two) per item: 60, 34 and 33 pages with the rows in key order
    # and an index by user, 6, 7 and 7 in registration order
    assert claim_pages <= BATCH // 3, claim_pages
    assert answer_pages <= BATCH // 3, answer_pages
    assert download_pages <= BATCH // 3, download_pages


#: The items table and index of a ledger file of an earlier version (before 2026-12-07).
OLD_ITEMS = """
CREATE TABLE runs (run TEXT PRIMARY KEY, namespace TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE items (
    run TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, label TEXT NOT NULL, feature TEXT NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, user_id TEXT, process_id TEXT,
    task_ids TEXT NOT NULL DEFAULT '[]', files TEXT NOT NULL DEFAULT '[]',
    error_code TEXT, error_message TEXT,
    owner TEXT, lease_until REAL, intent_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX items_by_user ON items (run, feature, user_id);
"""


async def test_a_ledger_file_of_an_earlier_version_loses_its_unused_index_and_keeps_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_ITEMS)
    conn.execute("INSERT INTO runs VALUES ('old', 'b5c5d0e4-8d5a-4c38-9d0e-8f3f4b1d2a10', 0)")
    first, *_ = old_keys = keys(3)
    conn.executemany(
        "INSERT INTO items (run, key, seq, label, feature, state, created_at, updated_at) "
        "VALUES ('old', ?, ?, ?, 'background_remover', 'pending', 0, 0)",
        [(k, i, f"{i}.png") for i, k in enumerate(old_keys)],
    )
    conn.commit()
    conn.close()

    async with SqliteLedger(path, run="old") as ledger:
        claimed = {r.key: r for r in await ledger.claim(old_keys, "worker", 30.0)}
        assert set(claimed) == set(old_keys)
        assert await ledger.intent(first, "worker", "u", 30.0, epoch=claimed[first].epoch)
        states = {k: r.state for k, r in (await ledger.records(old_keys)).items()}
    conn = sqlite3.connect(path)
    try:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()[0]
    finally:
        conn.close()
    assert "items_by_user" not in indexes
    assert "WITHOUT ROWID" in table  # the old file's table is kept as it is
    assert states == {k: ItemState.SUBMITTING if k == first else ItemState.PENDING for k in old_keys}


async def test_statements_over_a_whole_run_scan_the_table_instead_of_a_lookup_per_row(tmp_path: Path) -> None:
    # With the rows in registration order, SQLite would read a run's rows through the key's index (its
    # first column is the run), one B-tree search per row: the lease renewal took 113 ms of CPU at
    # 100,000 items, against 10 with a scan.
    path = tmp_path / "run.sqlite"
    all_keys = keys(50)
    ledger = SqliteLedger(path)
    async with ledger:
        await ledger.register(
            [NewItem(k, i, f"{i}.png", "background_remover") for i, k in enumerate(all_keys)]
        )
        await ledger.claim(all_keys[:10], "worker", 30.0)
        sent: list[str] = []
        conn = ledger._conn
        assert conn is not None
        conn.set_trace_callback(sent.append)
        await ledger.renew("worker", 30.0)
        await ledger.counts()
        await ledger.records()
        await ledger.finished_labels()
        await ledger.finished_example()
        await ledger.process_ids("background_remover", "u")
        await ledger.retry_failed()
        await ledger.reset_unfinished()
        await ledger.release("worker")
        conn.set_trace_callback(None)
    whole_run = [
        s for s in sent if "WHERE run = " in s and " key " not in s.replace("key,", "") and "items" in s
    ]
    assert len(whole_run) >= 9, sent
    side = sqlite3.connect(path)
    try:
        plans = {s: [row[3] for row in side.execute(f"EXPLAIN QUERY PLAN {s}")] for s in whole_run}
    finally:
        side.close()
    for statement, plan in plans.items():
        assert not any("USING INDEX" in step for step in plan), (statement, plan)
