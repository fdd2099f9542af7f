"""Reading a run ledger whole in bounded memory: every record visited in registration order, each with
whether it is its input's latest record, the rows streamed from the database (a cursor), never a list of
the run's records. What ``adcreative runs show`` and the CLI's Ctrl-C summary read, for a run of a
million items.

An input whose content changed since it was first recorded has several records under one label (one
per content, each its own key): the latest (by ``created_at``, then ``seq``) is *current*; the others
are *earlier*. The database tells which (a window function), not a map of every label here.

Also the read-only readers of ledgers no worker has open for writing (``runs show``): a SQLite file
opened read-only (nothing written, no file made beside it) and a PostgreSQL database read in a
read-only transaction on a connection of its own (no schema made, no run registered).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from ._base import ItemRecord, ItemState, LedgerError

__all__ = [
    "SCAN_BATCH",
    "PostgresReader",
    "Visit",
    "read_only_file",
    "records_in_file",
    "scan_connection",
    "scan_file",
    "scan_postgres",
    "scan_rows",
]

#: Rows read from the database at a time (a cursor's batch): the memory of a scan.
SCAN_BATCH = 1000

Visit = Callable[[ItemRecord, bool], None]
"""Called with each record and whether it is its input's latest (current) record."""

_LATEST = "row_number() OVER (PARTITION BY label ORDER BY created_at DESC, seq DESC) = 1"


def _states_sql(states: Collection[ItemState] | None, mark: str) -> tuple[str, list[str]]:
    if not states:
        return "", []
    values = sorted(ItemState(s).value for s in states)
    return f" WHERE state IN ({', '.join(mark for _ in values)})", values


# ----------------------------------------------------------------------------------------- SQLite


def scan_rows(
    conn: sqlite3.Connection,
    run: str | None,
    visit: Visit,
    states: Collection[ItemState] | None = None,
) -> None:
    """Visit the records of ``run`` (None: of every run in the file, by run) on a SQLite connection
    (blocking: run it in a worker thread), a batch of rows at a time."""
    from ._sqlitestore import _COLUMNS, _record

    where, values = _states_sql(states, "?")
    inner = f"SELECT run, {_COLUMNS}, {_LATEST} AS current FROM items"
    params: list[Any] = []
    if run is not None:
        inner += " WHERE run = ?"
        params.append(run)
    cursor = conn.execute(f"SELECT * FROM ({inner}){where} ORDER BY run, seq", (*params, *values))
    try:
        while rows := cursor.fetchmany(SCAN_BATCH):
            for row in rows:
                visit(_record(row[1:-1]), bool(row[-1]))
    finally:
        cursor.close()


def read_only_file(path: str | Path) -> sqlite3.Connection:
    """A SQLite ledger file opened without writing anything (as ``read_ledger_file`` opens it; blocking).

    Raises:
        LedgerError: the file cannot be read, or is not a run ledger.
    """
    from ._sqlite import BUSY_TIMEOUT

    target = Path(path)
    live = Path(f"{target}-wal").exists()
    query = "mode=ro" if live else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(
            f"{target.resolve().as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read {target}: {exc}") from exc
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LedgerError(f"{target} is not a run ledger: {exc}") from None
    if not {"runs", "items"} <= tables:
        conn.close()
        raise LedgerError(f"{target} is a SQLite database, but not a run ledger (no runs and items tables)")
    return conn


def scan_file(path: str | Path, visit: Visit, states: Collection[ItemState] | None = None) -> None:
    """Visit every record of every run of a SQLite ledger file, read-only (blocking).

    Raises:
        LedgerError: the file cannot be read, or is not a run ledger.
    """
    conn = read_only_file(path)
    try:
        scan_rows(conn, None, visit, states)
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{path} is not a run ledger: {exc}") from None
    finally:
        conn.close()


def records_in_file(path: str | Path, run: str, keys: Sequence[str]) -> dict[str, ItemRecord]:
    """The records of ``keys`` (those that exist) in ``run`` of a SQLite ledger file, read-only
    (blocking).

    Raises:
        LedgerError: the file cannot be read, or is not a run ledger.
    """
    from ._sqlitestore import _COLUMNS, KEYS_PER_STATEMENT, _record

    conn = read_only_file(path)
    found: dict[str, ItemRecord] = {}
    try:
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            chunk = keys[start : start + KEYS_PER_STATEMENT]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE run = ? AND key IN ({marks})", (run, *chunk)
            )
            found.update((row[0], _record(row)) for row in rows)
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{path} is not a run ledger: {exc}") from None
    finally:
        conn.close()
    return found


# ------------------------------------------------------------------------------------- PostgreSQL


async def scan_connection(
    conn: Any, run: str, visit: Visit, states: Collection[ItemState] | None = None
) -> None:
    """Visit the records of ``run`` on an asyncpg connection: a cursor in a read-only transaction, a
    batch of rows at a time."""
    from ._pgsql import _COLUMNS, _record

    where = " WHERE state = ANY($2::text[])" if states else ""
    args: list[Any] = [run]
    if states:
        args.append(sorted(ItemState(s).value for s in states))
    query = (
        f"SELECT * FROM (SELECT {_COLUMNS}, {_LATEST} AS current FROM adcreative_items WHERE run = $1) "
        f"AS items{where} ORDER BY seq"
    )
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(query, *args, prefetch=SCAN_BATCH):
            visit(_record(row), bool(row["current"]))


async def scan_postgres(
    dsn: str, run: str, visit: Visit, states: Collection[ItemState] | None = None
) -> None:
    """Visit the records of ``run`` in a PostgreSQL ledger, on a connection of its own, writing nothing
    (no schema made, no run registered). A database without a run ledger's tables has no records.

    Raises:
        LedgerError: asyncpg is missing, or the database cannot be reached or read (the message never
            holds the DSN).
    """
    async with PostgresReader(dsn, run) as reader:
        await reader.scan(visit, states)


class PostgresReader:
    """One run of a PostgreSQL ledger read on a connection of its own, writing nothing (no schema made,
    no run registered): a database without a run ledger's tables has no records. Used as an async
    context manager (the connection is closed on leaving).

    Raises (entering, and each read):
        LedgerError: asyncpg is missing, or the database cannot be reached or read (the message never
            holds the DSN).
    """

    def __init__(self, dsn: str, run: str) -> None:
        self._dsn = dsn
        self.run = run
        self._conn: Any = None
        self._empty = True  # no run ledger's tables

    def __repr__(self) -> str:
        return f"PostgresReader(run={self.run!r})"  # the DSN may hold a password: never shown

    async def __aenter__(self) -> PostgresReader:
        try:
            import asyncpg
        except ImportError:
            raise LedgerError(
                "a PostgreSQL run ledger needs asyncpg: pip install asyncpg (the SDK's postgres extra)"
            ) from None
        from ._pgconn import CONNECT_TIMEOUT_SECONDS

        try:
            self._conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise LedgerError(f"cannot read the PostgreSQL run ledger: {type(exc).__name__}") from None
        try:
            self._empty = (
                await self._read(self._conn.fetchval("SELECT to_regclass('adcreative_items')")) is None
            )
        except BaseException:
            await self._conn.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._conn.close()

    async def _read(self, awaitable: Any) -> Any:
        import asyncpg

        try:
            return await awaitable
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LedgerError(f"cannot read the PostgreSQL run ledger: {type(exc).__name__}") from None

    async def scan(self, visit: Visit, states: Collection[ItemState] | None = None) -> None:
        """Visit the run's records (see :func:`scan_connection`)."""
        if not self._empty:
            await self._read(scan_connection(self._conn, self.run, visit, states))

    async def records(self, keys: Sequence[str]) -> dict[str, ItemRecord]:
        """The records of ``keys`` (those that exist) in the run, in a read-only transaction."""
        if self._empty or not keys:
            return {}
        from ._pgsql import _COLUMNS, _record

        async def read() -> list[Any]:
            async with self._conn.transaction(readonly=True):
                rows: list[Any] = await self._conn.fetch(
                    f"SELECT {_COLUMNS} FROM adcreative_items WHERE run = $1 AND key = ANY($2::text[])",
                    self.run,
                    list(keys),
                )
                return rows

        rows = await self._read(read())
        return {row["key"]: _record(row) for row in rows}
