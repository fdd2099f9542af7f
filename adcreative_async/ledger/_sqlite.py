"""SqliteLedger: the run ledger in one SQLite file (the default; stdlib ``sqlite3``).

Its queries: reads, claims (a bulk run's claim writes the intents of the items it takes in the same
transaction: ``claim_and_intend``), fenced writes of each item's state, the inputs' remembered hashes, and
a look at a ledger file that never writes (:func:`read_ledger_file`). Where and how they run (in the event
loop or a worker thread, group commit, syncs, checkpoints, writes behind) is
:mod:`adcreative_async.ledger._sqlitestore`'s.

A new file keeps its items in the order they were registered (:data:`ROW_ORDER`): the items one commit
writes (a claim's window, the answers and downloads of the items in flight) lie on a few pages, not one
page each, which is most of what a commit writes.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._base import ItemRecord, ItemState, LedgerError, NewItem, SourceHash, stale_answer_left
from ._sqlitestore import _COLUMNS, _ENCODE, _FINAL, _LIST, _SCAN, Op, SqliteStore, _chunks, _record
from ._sqlitestore import BUSY_TIMEOUT as BUSY_TIMEOUT  # (the constants, where they were before the split)
from ._sqlitestore import CHECKPOINT_INTERVAL as CHECKPOINT_INTERVAL
from ._sqlitestore import INLINE_KEYS as INLINE_KEYS
from ._sqlitestore import KEYS_PER_STATEMENT as KEYS_PER_STATEMENT
from ._sqlitestore import LEDGER_FILE_MODE as LEDGER_FILE_MODE
from ._sqlitestore import ROW_ORDER as ROW_ORDER

__all__ = ["SqliteLedger", "read_ledger_file"]


def _intent_assignments(users: Mapping[str, str], now: float) -> tuple[str, list[Any]]:
    """The assignments (and their values) by which a claim writes the intents of ``users`` (key -> the
    user of its start call): empty when there are none."""
    if not users:
        return "", []
    marks = ",".join("?" * len(users))
    whens = " ".join("WHEN ? THEN ?" for _ in users)
    values: list[Any] = [*users, *(v for pair in users.items() for v in pair), *users, now]
    return (
        f", state = CASE WHEN key IN ({marks}) THEN 'submitting' ELSE state END"
        f", user_id = CASE key {whens} ELSE user_id END"
        f", intent_at = CASE WHEN key IN ({marks}) THEN ? ELSE intent_at END"
    ), values


class SqliteLedger(SqliteStore):
    """A run ledger in a SQLite file (created with its folders if missing).

    Args:
        path: the file (the CLI keeps ``.adcreative-run.sqlite`` in the output folder).
        run: the run's name within the file.
        synchronous: SQLite's ``synchronous`` setting for the writes other than intents: ``"NORMAL"``
            (default: each survives a crash of the process; the next intent's sync carries it to
            disk) or ``"FULL"`` (each synced). Intents are always synced.
        clock: wall-clock seconds for leases and times.
    """

    # ----------------------------------------------------------------------------------- reading

    async def records(self, keys: Sequence[str] | None = None) -> dict[str, ItemRecord]:
        """See :meth:`RunLedger.records`."""

        def read(conn: sqlite3.Connection) -> dict[str, ItemRecord]:
            if keys is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM {_SCAN} WHERE run = ? ORDER BY seq", (self.run,))
                return {row[0]: _record(row) for row in rows}
            found: dict[str, ItemRecord] = {}
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM items WHERE run = ? AND key IN ({marks})", (self.run, *chunk)
                )
                found.update((row[0], _record(row)) for row in rows)
            return found

        return await self._read(read, inline=keys is not None and len(keys) <= INLINE_KEYS)

    async def scan(
        self, visit: Callable[[ItemRecord, bool], None], *, states: Collection[ItemState] | None = None
    ) -> None:
        """See :meth:`RunLedger.scan`: a cursor, a batch of rows at a time (``ledger._scan``)."""
        from ._scan import scan_rows

        await self._read(lambda conn: scan_rows(conn, self.run, visit, states))

    async def counts(self) -> dict[ItemState, int]:
        """See :meth:`RunLedger.counts`."""

        def read(conn: sqlite3.Connection) -> dict[ItemState, int]:
            counts = dict.fromkeys(ItemState, 0)
            rows = conn.execute(
                f"SELECT state, count(*) FROM {_SCAN} WHERE run = ? GROUP BY state", (self.run,)
            )
            for state, n in rows:
                counts[ItemState(state)] = n
            return counts

        return await self._read(read)

    async def process_ids(self, feature: str, user_id: str) -> set[str]:
        """See :meth:`RunLedger.process_ids`."""

        def read(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                f"SELECT process_id FROM {_SCAN} WHERE run = ? AND feature = ? AND lower(user_id) = ? "
                "AND process_id IS NOT NULL",
                (self.run, feature, user_id.lower()),
            )
            return {row[0].lower() for row in rows}

        return await self._read(read)

    async def finished_labels(self) -> set[str]:
        """See :meth:`RunLedger.finished_labels`."""

        def read(conn: sqlite3.Connection) -> set[str]:
            final = ",".join("?" * len(_FINAL))
            rows = conn.execute(
                f"SELECT label FROM {_SCAN} WHERE run = ? GROUP BY label HAVING min(state IN ({final})) = 1",
                (self.run, *_FINAL),
            )
            return {row[0] for row in rows}

        return await self._read(read)

    async def finished_example(self) -> ItemRecord | None:
        """See :meth:`RunLedger.finished_example`."""

        def read(conn: sqlite3.Connection) -> ItemRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM {_SCAN} WHERE run = ? AND state = 'downloaded' "
                "AND process_id IS NOT NULL LIMIT 1",
                (self.run,),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._read(read)

    # ---------------------------------------------------------------------------------- claiming

    async def register(self, items: Sequence[NewItem]) -> None:
        """See :meth:`RunLedger.register`."""
        if not items:
            return

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.executemany(
                "INSERT INTO items (run, key, seq, label, feature, state, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (run, key) DO NOTHING",
                [(self.run, i.key, i.seq, i.label, i.feature, now, now) for i in items],
            )

        await self._write(op, inline=len(items) <= INLINE_KEYS)

    async def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[ItemRecord]:
        """See :meth:`RunLedger.claim`."""
        result: list[ItemRecord] = await self._write(
            self._claim_op(keys, owner, lease), inline=len(keys) <= INLINE_KEYS
        )
        return result

    def _claim_op(
        self,
        keys: Sequence[str],
        owner: str,
        lease: float,
        intents: Mapping[str, tuple[int, str]] | None = None,
        intended: set[str] | None = None,
    ) -> Callable[..., list[ItemRecord]]:
        """The claim of ``keys``; with ``intents``, the same statement writes the intents of the items
        claimed pending at the attempt given (their keys are added to ``intended``)."""

        def op(conn: sqlite3.Connection, now: float) -> list[ItemRecord]:
            claimed: list[ItemRecord] = []
            final = ",".join("?" * len(_FINAL))
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                # the earlier leases, for lapsed_for, and which items get their intent (the same
                # transaction: nothing changes between)
                earlier: dict[str, float | None] = {}
                users: dict[str, str] = {}
                for key, lease_until, state, attempt in conn.execute(
                    f"SELECT key, lease_until, state, attempt FROM items WHERE run = ? AND key IN ({marks})",
                    (self.run, *chunk),
                ):
                    earlier[key] = lease_until
                    wanted = intents.get(key) if intents else None
                    if wanted is not None and state == "pending" and attempt == wanted[0]:
                        users[key] = wanted[1]
                intent_sql, intent_values = _intent_assignments(users, now)
                rows = conn.execute(
                    "UPDATE items SET owner = ?, lease_until = ?, updated_at = ?, epoch = epoch + 1"
                    f"{intent_sql} "
                    f"WHERE run = ? AND key IN ({marks}) AND state NOT IN ({final}) "
                    "AND (owner IS NULL OR owner = ? OR lease_until IS NULL OR lease_until <= ?) "
                    f"RETURNING {_COLUMNS}",
                    (owner, now + lease, now, *intent_values, self.run, *chunk, *_FINAL, owner, now),
                ).fetchall()
                for row in rows:
                    lapsed = earlier.get(row[0])
                    record = _record(row, lapsed_for=None if lapsed is None else max(0.0, now - lapsed))
                    if intended is not None and record.key in users:
                        intended.add(record.key)
                    claimed.append(record)
            return claimed

        return op

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        """See :meth:`RunLedger.claim_and_intend`: one statement per 500 keys, synced as an intent's."""
        intended: set[str] = set()
        claim = self._claim_op(keys, owner, lease, intents, intended)

        def op(conn: sqlite3.Connection, now: float) -> tuple[list[ItemRecord], set[str]]:
            intended.clear()  # (run again in the thread if the file was locked)
            return claim(conn, now), set(intended)

        result: tuple[list[ItemRecord], set[str]] = await self._write(
            op, durable=bool(intents), inline=len(keys) <= INLINE_KEYS
        )
        return result

    async def renew(self, owner: str, lease: float) -> set[str]:
        """See :meth:`RunLedger.renew`."""

        def op(conn: sqlite3.Connection, now: float) -> set[str]:
            final = ",".join("?" * len(_FINAL))
            rows = conn.execute(
                f"UPDATE {_SCAN} SET lease_until = ? WHERE run = ? AND owner = ? AND state NOT IN ({final}) "
                "AND lease_until > ? RETURNING key",
                (now + lease, self.run, owner, *_FINAL, now),
            ).fetchall()
            return {row[0] for row in rows}

        renewed: set[str] = await self._write(op, inline=False)  # every claim of the worker
        return renewed

    async def release(self, owner: str, keys: Sequence[str] | None = None) -> None:
        """See :meth:`RunLedger.release`."""
        sql = "SET owner = NULL, lease_until = min(coalesce(lease_until, ?), ?) WHERE run = ? AND owner = ?"

        def op(conn: sqlite3.Connection, now: float) -> None:
            if keys is None:
                conn.execute(f"UPDATE {_SCAN} {sql}", (now, now, self.run, owner))
            else:
                conn.executemany(
                    f"UPDATE items {sql} AND key = ?", [(now, now, self.run, owner, key) for key in keys]
                )

        await self._write(op, inline=keys is not None and len(keys) <= INLINE_KEYS)

    # ----------------------------------------------------------------------------------- writing

    def _update(
        self, key: str, assignments: str, values: Sequence[Any], where: str = "", epoch: int | None = None
    ) -> Op:
        """An update of one item, fenced by ``epoch`` (see RunLedger); its op returns the rows changed."""

        def op(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                f"UPDATE items SET {assignments}, updated_at = ? WHERE run = ? AND key = ?{where} "
                "AND (? IS NULL OR epoch = ?)",
                (*values, now, self.run, key, epoch, epoch),
            )
            return cursor.rowcount

        return op

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        """See :meth:`RunLedger.intent`."""

        def op(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                "UPDATE items SET state = 'submitting', user_id = ?, intent_at = ?, lease_until = ?, "
                "updated_at = ? WHERE run = ? AND key = ? AND owner = ? AND lease_until > ? "
                "AND state IN ('pending', 'submitting') AND (? IS NULL OR epoch = ?)",
                (user_id, now, now + lease, now, self.run, key, owner, now, epoch, epoch),
            )
            return cursor.rowcount == 1

        ok: bool = await self._write(op, durable=True)
        return ok

    async def submitted(
        self, key: str, process_id: str, user_id: str, task_ids: Sequence[str], *, epoch: int | None = None
    ) -> None:
        """See :meth:`RunLedger.submitted`."""
        if not self._write_behind(key).answered(process_id, user_id, task_ids, epoch):
            stale_answer_left(key, process_id)
        await self._commit_if_many()

    async def tasks(self, key: str, task_ids: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.tasks`."""

        def op(conn: sqlite3.Connection, now: float) -> None:
            row = conn.execute(
                "SELECT task_ids FROM items WHERE run = ? AND key = ? AND (? IS NULL OR epoch = ?)",
                (self.run, key, epoch, epoch),
            ).fetchone()
            if row is None:
                return
            merged = list(dict.fromkeys((*_LIST.decode(row[0]), *task_ids)))
            conn.execute(
                "UPDATE items SET task_ids = ?, updated_at = ? WHERE run = ? AND key = ?",
                (_ENCODE(merged).decode(), now, self.run, key),
            )

        await self._write(op)

    async def downloaded(self, key: str, files: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.downloaded`."""
        self._hold_download(key).downloaded(files, epoch)
        await self._commit_if_many()

    async def failed(
        self,
        key: str,
        code: str,
        message: str,
        *,
        state: ItemState = ItemState.FAILED,
        epoch: int | None = None,
    ) -> bool:
        """See :meth:`RunLedger.failed`."""
        written: int = await self._write(
            self._update(
                key,
                "state = ?, error_code = ?, error_message = ?, owner = NULL, lease_until = NULL",
                (state.value, code, message),
                epoch=epoch,
            )
        )
        return written == 1

    async def requeue(self, key: str, *, epoch: int | None = None) -> bool:
        """See :meth:`RunLedger.requeue`."""
        written: int = await self._write(
            self._update(
                key,
                "state = 'pending', intent_at = NULL",
                (),
                " AND state IN ('submitting', 'unknown')",
                epoch,
            )
        )
        return written == 1

    async def retry_failed(self) -> int:
        """See :meth:`RunLedger.retry_failed`."""

        def op(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                f"UPDATE {_SCAN} SET state = 'pending', attempt = attempt + 1, process_id = NULL, "
                "user_id = NULL, task_ids = '[]', files = '[]', error_code = NULL, error_message = NULL, "
                "intent_at = NULL, epoch = epoch + 1, updated_at = ? WHERE run = ? AND state = 'failed'",
                (now, self.run),
            )
            return cursor.rowcount

        retried: int = await self._write(op, inline=False)
        return retried

    async def reset_unfinished(self) -> int:
        """See :meth:`RunLedger.reset_unfinished`."""

        def op(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                f"UPDATE {_SCAN} SET state = 'pending', attempt = attempt + 1, process_id = NULL, "
                "user_id = NULL, task_ids = '[]', intent_at = NULL, epoch = epoch + 1, updated_at = ? "
                "WHERE run = ? AND state IN ('submitting', 'submitted')",
                (now, self.run),
            )
            return cursor.rowcount

        reset: int = await self._write(op, inline=False)
        return reset

    async def restart(self) -> None:
        """See :meth:`RunLedger.restart`."""
        namespace = str(uuid.uuid4())

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(f"DELETE FROM {_SCAN} WHERE run = ?", (self.run,))
            conn.execute(
                "INSERT INTO runs (run, namespace, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (run) DO UPDATE SET namespace = excluded.namespace, "
                "created_at = excluded.created_at",
                (self.run, namespace, now),
            )

        await self._write(op, inline=False)
        self._namespace = namespace

    # ---------------------------------------------------------------------------- source hashes

    async def source_hashes(self, host: str, paths: Sequence[str]) -> dict[str, SourceHash]:
        """See :meth:`RunLedger.source_hashes`."""

        def read(conn: sqlite3.Connection) -> dict[str, SourceHash]:
            found: dict[str, SourceHash] = {}
            for chunk in _chunks(paths):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT host, path, size, mtime_ns, inode, sha256 FROM sources "
                    f"WHERE host = ? AND path IN ({marks})",
                    (host, *chunk),
                )
                found.update((row[1], SourceHash(*row)) for row in rows)
            return found

        return await self._read(read, inline=len(paths) <= INLINE_KEYS)

    async def remember_sources(self, hashes: Iterable[SourceHash]) -> None:
        """See :meth:`RunLedger.remember_sources`."""
        rows = [(s.host, s.path, s.size, s.mtime_ns, s.inode, s.sha256) for s in hashes]
        if not rows:
            return

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.executemany(
                "INSERT INTO sources (host, path, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (host, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "inode = excluded.inode, sha256 = excluded.sha256",
                rows,
            )

        await self._write(op, inline=len(rows) <= INLINE_KEYS)


def read_ledger_file(path: str | os.PathLike[str]) -> dict[str, list[ItemRecord]]:
    """A look at a SQLite ledger file that never writes anything (blocking: run it in a thread): every
    run's items, by run name, in their order.

    The file is opened read-only, and makes no ``-wal``/``-shm`` files of its own: with no ``-wal`` file
    beside it (no worker has it open, and the last one closed it cleanly), as an immutable file; with one
    (a worker runs, or one was killed), read-only through the files that are there already.

    Raises:
        LedgerError: the file cannot be read, is not a SQLite database, or is one without a run ledger's
            tables (another program's).
    """
    target = Path(path)
    live = Path(f"{target}-wal").exists()
    query = "mode=ro" if live else "mode=ro&immutable=1"
    uri = f"{target.resolve().as_uri()}?{query}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read {target}: {exc}") from exc
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"runs", "items"} <= tables:
            raise LedgerError(
                f"{target} is a SQLite database, but not a run ledger (no runs and items tables)"
            )
        runs: dict[str, list[ItemRecord]] = {}
        for row in conn.execute(f"SELECT run, {_COLUMNS} FROM items ORDER BY run, seq"):
            runs.setdefault(row[0], []).append(_record(row[1:]))
        return runs
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{target} is not a run ledger: {exc}") from None
    finally:
        conn.close()
