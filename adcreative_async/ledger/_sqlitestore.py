"""The SQLite ledger's connection and its writes: where its statements run, how they are committed.

Statements run one at a time on one connection. The file is in WAL mode: readers never block the writer,
and several processes of one machine can share it (claims take the write lock with ``BEGIN IMMEDIATE``).
Those of a few items (a claim and its intents, answers and downloads, a chunk's registration) run in the
event loop's thread, where they never wait: one that finds the file locked, and whatever waits for the disk
(an intent's sync, the checkpoints) or reads or writes a whole run, runs in a worker thread
(:data:`INLINE_KEYS`). Writes that arrive while another is being committed are committed together with the
next one (group commit), as are the writes started in the same tick of the event loop as the first, and
each caller returns only once its own write is committed. Every commit survives a crash of the process; a
commit that holds an intent (the write-ahead record of a paid call) is also synced to disk (its write-ahead
log, right after the commit, outside the write lock: see ``_sync_wal``), so that it survives a power loss
too. The other writes (claims, answers, downloads) are not synced one by one (``synchronous=NORMAL``):
each intent's sync carries them to disk, and one lost to a power loss is found again (an answer by
reconciling the intent, a download by downloading again), never paid twice.

For the same reason, an answer (``submitted``) and a download (``downloaded``) are written behind: an answer
is committed with the next write of any kind (an intent, a claim, the lease renewal), in one statement for
all of them, before any read, and on close; a download waits longer, until :data:`DOWNLOADS_HELD` wait (or
a read, a write of the whole run such as the lease renewal, or close), so that the downloads of the items
in flight, which end in any order, share pages. A crash before that loses nothing that cannot be found
again (an answer by reconciling, a download by downloading again), and the bulk path saves a commit per
item. If that statement fails, the writes behind are kept for the next write.

The ledger's queries are :class:`~adcreative_async.ledger._sqlite.SqliteLedger`'s; this module's
:class:`SqliteStore` is what they run on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import msgspec

from ._base import (
    BEHIND_ROWS,
    FINAL_STATES,
    STALE_ANSWER_STATES,
    ItemRecord,
    ItemState,
    LedgerError,
    RunLedger,
    WrittenBehind,
    stale_answer_left,
)

__all__ = ["SqliteStore"]

logger = logging.getLogger("adcreative_async.ledger")

_T = TypeVar("_T")

#: Seconds a statement waits for another process's write lock before failing (in the ledger's thread: a
#: statement run in the event loop never waits, see :data:`INLINE_KEYS`).
BUSY_TIMEOUT = 60.0
#: Statements of at most this many items run in the event loop's thread, not in a worker thread, when the
#: file is in WAL mode with ``synchronous=NORMAL`` (its commits then never wait for the disk): a claim and
#: its intents, an answer, a download, a registration or a look-up of a chunk of inputs take well under a
#: millisecond or two, less than the hand-off to a thread costs (each statement's step gives up the GIL,
#: and the event loop, busy with HTTP, holds it: 6-10 futex calls per item, and the worker's wake-ups,
#: measured on the bulk path; 0.2 in the loop). They never wait for a lock: the connection's busy timeout
#: is 0 there, and a batch that finds the file locked (another process writes) is rolled back and run
#: again in the thread, which waits up to :data:`BUSY_TIMEOUT`. What must wait for the disk stays in the
#: thread: the sync of an intent's commit (:meth:`SqliteLedger._sync_wal`), the checkpoints (see
#: :data:`CHECKPOINT_INTERVAL`), and whatever reads or writes a whole run (counts, the lease renewal, ...).
INLINE_KEYS = 512
#: With statements in the event loop, SQLite's own checkpoints (run by the commit that finds 1,000 pages
#: in the write-ahead log, syncing it and the database file) are off on this connection: the log is
#: checkpointed in the ledger's thread instead (``PASSIVE``, as SQLite's own), after a commit at least
#: this many seconds after the last checkpoint. The log holds about this long's writes at most (a bulk
#: run writes 1-3 MiB a second: about what SQLite's own 1,000 pages hold). Each checkpoint syncs the log
#: and the database file (system time that grows with the disk's load): every 4 s, not every second, a
#: run of 100,000 items makes about 50 checkpoints, not 200.
CHECKPOINT_INTERVAL = 4.0
#: Keys per statement (SQLite's limit on bound parameters is 32,766).
KEYS_PER_STATEMENT = 500
#: Downloads written behind wait for this many of them (or for a read, a write of the whole run such as
#: the lease renewal, or close), not for the next write: renders end out of order, so the downloads
#: committed with each claim (every few dozen items) lie on as many pages as there are items in flight,
#: and each commit writes each of those pages whole to the log again (then the checkpoint copies them).
#: Held together, several share a page. Measured (``benchmarks/ledger_writes.py``, 100,000 items, 3
#: rounds on a shared machine): 14.2-14.5 KiB written per item, 10.6-10.9 held; the ledger's CPU per item
#: 0.062-0.066 ms before, 0.051-0.057 ms with this and the bulk path's other savings. A download lost to a
#: crash is downloaded again, never paid again (its answer is committed with the next write, as before).
#: With the answers written behind (at most BEHIND_ROWS), a commit of them stays small enough to run in
#: the event loop (INLINE_KEYS).
DOWNLOADS_HELD = INLINE_KEYS - BEHIND_ROWS

#: How a new ledger file stores its items: in a table with rowids (SQLite's default), so that rows lie in
#: the order they were registered, and items worked on together (claimed and given their intents
#: together, answered and downloaded within the same window) share pages; the key is a unique index
#: beside it, written once per item (keys never change). Measured (a bulk run's writes replayed for
#: 20,000 items, ``benchmarks/ledger_writes.py``): 14.5 KiB written per item and 0.069 ms of CPU, against
#: 63.9 KiB and 0.13 ms with the rows kept in key order (``WITHOUT ROWID``, earlier versions: the keys are
#: hashes, so each item of a commit dirtied a page of its own) and an index by user that no query used.
#: Files of earlier versions keep their table (migrating it would rewrite the whole file).
ROW_ORDER = "registration (rowid)"

#: The items table, read or written whole (a run's rows: counts, the lease renewal, a release of all of a
#: worker's claims, retries and resets): scanned in row order. Else SQLite looks each row up through the
#: key's index by ``run``, one B-tree search per row (measured at 100,000 items: the renewal 113 ms of
#: CPU against 17 with the scan).
_SCAN = "items NOT INDEXED"

_FINAL = tuple(s.value for s in FINAL_STATES)
_COLUMNS = (
    "key, seq, label, feature, state, attempt, user_id, process_id, task_ids, files, error_code, "
    "error_message, owner, lease_until, intent_at, created_at, updated_at, epoch"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    label TEXT NOT NULL,
    feature TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    user_id TEXT,
    process_id TEXT,
    task_ids TEXT NOT NULL DEFAULT '[]',
    files TEXT NOT NULL DEFAULT '[]',
    error_code TEXT,
    error_message TEXT,
    owner TEXT,
    lease_until REAL,
    intent_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, key)
);
CREATE TABLE IF NOT EXISTS sources (
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (host, path)
) WITHOUT ROWID;
"""

_LIST = msgspec.json.Decoder(tuple[str, ...])
_ENCODE = msgspec.json.encode


def _list(text: str) -> tuple[str, ...]:
    return () if text == "[]" else _LIST.decode(text)


_STATES = {state.value: state for state in ItemState}  # (a look-up: ItemState(value) costs 5 times more)


def _record(row: Sequence[Any], lapsed_for: float | None = None) -> ItemRecord:
    return ItemRecord(
        key=row[0],
        seq=row[1],
        label=row[2],
        feature=row[3],
        state=_STATES.get(row[4]) or ItemState(row[4]),
        attempt=row[5],
        user_id=row[6],
        process_id=row[7],
        task_ids=_list(row[8]),
        files=_list(row[9]),
        error_code=row[10],
        error_message=row[11],
        owner=row[12],
        lease_until=row[13],
        intent_at=row[14],
        created_at=row[15],
        updated_at=row[16],
        epoch=row[17],
        lapsed_for=lapsed_for,
    )


def _chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), KEYS_PER_STATEMENT):
        yield keys[start : start + KEYS_PER_STATEMENT]


class _Slot:
    __slots__ = ("done", "durable", "error", "event", "inline", "result")

    def __init__(self, durable: bool, inline: bool) -> None:
        self.event = anyio.Event()
        self.done = False
        self.durable = durable
        self.inline = inline  # small enough to run in the event loop (see INLINE_KEYS)
        self.result: Any = None
        self.error: BaseException | None = None


class _Busy(Exception):
    """A statement run in the event loop found the file locked: run again in the ledger's thread."""


def _is_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (SQLITE_BUSY, SQLITE_LOCKED, extended codes)."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


#: A row written behind is of the item's current claim (its epoch, or unfenced).
_OWN = "(?6 IS NULL OR epoch = ?6)"
#: Answers and downloads written behind, one row each (executemany): a download ends the claim and
#: clears the error. Fenced by the epoch; a stale row's answer alone is written, where the
#: STALE_ANSWER_RULE allows it (the claim stays the new owner's). Numbered parameters, bound from a tuple
#: (see _behind_rows): ?1 state, ?2 process id, ?3 user id, ?4 task ids, ?5 files, ?6 epoch, ?7 now,
#: ?8 run, ?9 key.
_BEHIND = (
    f"UPDATE items SET state = CASE WHEN {_OWN} THEN ?1 ELSE 'submitted' END, "
    "process_id = coalesce(?2, process_id), user_id = coalesce(?3, user_id), "
    "task_ids = coalesce(?4, task_ids), "
    f"files = CASE WHEN {_OWN} THEN coalesce(?5, files) ELSE files END, "
    f"error_code = CASE WHEN {_OWN} AND ?5 IS NULL THEN error_code END, "
    f"error_message = CASE WHEN {_OWN} AND ?5 IS NULL THEN error_message END, "
    f"owner = CASE WHEN {_OWN} AND ?5 IS NOT NULL THEN NULL ELSE owner END, "
    f"lease_until = CASE WHEN {_OWN} AND ?5 IS NOT NULL THEN NULL ELSE lease_until END, "
    f"updated_at = ?7 WHERE run = ?8 AND key = ?9 AND ({_OWN} OR (?2 IS NOT NULL "
    "AND process_id IS NULL AND lower(user_id) = lower(?3) "
    f"AND state IN ({', '.join(repr(s) for s in STALE_ANSWER_STATES)})))"
)


Op = Callable[[sqlite3.Connection, float], Any]


def _nothing(conn: sqlite3.Connection, now: float) -> None:
    """A write that writes nothing: commits what was written behind."""


#: The mode a new ledger file is created with (and its WAL files: SQLite copies it): owner-only.
LEDGER_FILE_MODE = 0o600


class SqliteStore(RunLedger):
    """A run ledger's SQLite file and connection (see the module doc): what
    :class:`~adcreative_async.ledger.SqliteLedger`'s queries run on. Its arguments are
    :class:`~adcreative_async.ledger.SqliteLedger`'s (documented there)."""

    _records_at_once = True  # (see RunLedger: its answers and downloads are held before any await)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run: str = "default",
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.run = run
        self._synchronous = synchronous.upper()
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._pending: list[tuple[Op, _Slot]] = []
        self._behind: dict[str, WrittenBehind] = {}  # written behind: committed with the next write
        self._held: dict[str, WrittenBehind] = {}  # downloads alone, held longer (see DOWNLOADS_HELD)
        self._synced_mode: str | None = None
        self._in_wal = False  # the file is in WAL mode (see _sync_wal)
        self._inline = False  # small statements run in the event loop (see INLINE_KEYS)
        self._checkpointed = 0.0  # when the log was last checkpointed (monotonic; see CHECKPOINT_INTERVAL)
        self._unchecked = False  # a commit since the last checkpoint
        self._dir_synced = False
        self._leader = False
        self._namespace: str | None = None

    def __repr__(self) -> str:
        return f"SqliteLedger(path={str(self.path)!r}, run={self.run!r})"

    # ----------------------------------------------------------------------------------- lifetime

    async def open(self) -> None:
        """See :meth:`RunLedger.open`."""
        if self._conn is not None:
            return
        try:
            self._conn, self._namespace = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the run ledger {self.path}: {exc}") from exc

    def _connect(self) -> tuple[sqlite3.Connection, str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A state store like a credentials file (each item's user id is what recovering its render
        # needs): created owner-only; SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, LEDGER_FILE_MODE))
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            self._in_wal = self._wal(conn) == "wal"
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            self._migrate(conn)
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT namespace FROM runs WHERE run = ?", (self.run,)).fetchone()
            if row is None:
                namespace = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO runs (run, namespace, created_at) VALUES (?, ?, ?)",
                    (self.run, namespace, self._clock()),
                )
            else:
                namespace = row[0]
            conn.execute("COMMIT")
            if self._in_wal and self._synchronous == "NORMAL":  # commits never wait for the disk
                conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpointed in the thread instead
                conn.execute("PRAGMA busy_timeout=0")  # in the event loop: never wait (see INLINE_KEYS)
                self._inline = True
                self._checkpointed = time.monotonic()
        except BaseException:
            conn.close()
            raise
        return conn, namespace

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a ledger file of an earlier version up to date: the items' fencing epoch (0 for every
        item: the next claim of each makes it 1), and without the index ``items_by_user``, which no query
        used and every intent and answer wrote (see :data:`ROW_ORDER`; the table of such a file keeps its
        rows in key order)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
            if "epoch" not in columns:
                conn.execute("ALTER TABLE items ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
            conn.execute("DROP INDEX IF EXISTS items_by_user")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _wal(conn: sqlite3.Connection) -> str:
        """WAL mode (the journal mode in force is returned: a file system may refuse WAL). Switching a new
        file to it needs the file to itself, and SQLite then answers "database is locked" at once, without
        waiting (its busy timeout does not apply): two workers opening a new ledger together would fail.
        So it is tried again, for up to ``BUSY_TIMEOUT``."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                row = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                return str(row[0]).lower() if row else ""
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    async def close(self) -> None:
        """See :meth:`RunLedger.close`."""
        if (self._behind or self._held) and self._conn is not None:
            with anyio.CancelScope(shield=True):
                await self._write(_nothing)
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    @property
    def namespace(self) -> str:
        """See :attr:`RunLedger.namespace`."""
        if self._namespace is None:
            raise LedgerError("the run ledger is not open")
        return self._namespace

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"the run ledger {self.path} is not open")
        return self._conn

    # ------------------------------------------------------------------------------- execution

    def _free(self) -> bool:
        """Whether statements may run in the event loop now: small ones may (see :data:`INLINE_KEYS`),
        while no worker thread has the connection."""
        return self._inline and self._limiter.borrowed_tokens == 0

    def _waiting(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call ``fn`` (in the ledger's thread) with the busy timeout of :data:`BUSY_TIMEOUT`: where the
        connection's statements run in the event loop, its timeout is otherwise 0."""
        conn = self._connection()
        if not self._inline:
            return fn(*args)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        try:
            return fn(*args)
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    async def _read(self, op: Callable[[sqlite3.Connection], _T], *, inline: bool = False) -> _T:
        """Run ``op`` (a read) after committing the writes behind; in the event loop when ``inline``
        (a read of a few items) and nothing else has the connection, else in the ledger's thread."""
        conn = self._connection()
        if self._behind or self._held:  # a read sees every write made before it
            await self._write(_nothing)
        try:
            if inline and self._free():
                try:
                    return op(conn)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            return await anyio.to_thread.run_sync(self._waiting, op, conn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise LedgerError(f"run ledger {self.path}: {exc}") from exc

    async def _write(self, op: Op, *, durable: bool = False, inline: bool = True) -> Any:
        """Run ``op`` in a write transaction, committed with whatever other writes are waiting.

        The first writer leads: it commits every waiting write in one transaction. A leader stops once
        its own write is committed and hands the lead to the next waiting writer, so that no caller
        (an intent, on the way to a paid call) waits behind commits of others' writes. Shielded: a
        write in progress is seen through (cancellation is delivered once it is committed). A batch of
        writes that are all ``inline`` (of a few items) runs in the event loop where it may (see
        :data:`INLINE_KEYS`), its sync and checkpoint, if any, in the ledger's thread.
        """
        self._connection()
        slot = _Slot(durable, inline)
        self._pending.append((op, slot))
        with anyio.CancelScope(shield=True):
            while not slot.done:
                if self._leader:
                    await slot.event.wait()  # committed by the leader, or made the next leader
                    slot.event = anyio.Event()
                    continue
                self._leader = True
                batch: list[tuple[Op, _Slot]] = []
                try:
                    # the writes of the tasks started in the same tick as this one (the intents of the
                    # items claimed together) join this commit
                    await anyio.lowlevel.checkpoint()
                    batch, self._pending = self._pending, []
                    behind, self._behind = self._behind, {}
                    if self._held and (
                        len(self._held) >= DOWNLOADS_HELD
                        or any(op is _nothing or not slot.inline for op, slot in batch)
                    ):  # (a read, close, a write of the whole run: every download held goes too)
                        held, self._held = self._held, {}
                        WrittenBehind.keep(behind, held)  # (an answer kept after a failed commit)
                    failed: BaseException | None = None
                    try:
                        failed = await self._commit(batch, behind)
                    except BaseException as exc:
                        failed = exc
                        raise
                    finally:
                        if failed is not None and behind:
                            WrittenBehind.keep(self._behind, behind)  # for the next write
                            logger.warning(
                                "run ledger %s: writes behind kept for the next write: %s", self.path, failed
                            )
                finally:
                    for _, done in batch:  # in the event loop: anyio's events are not thread-safe
                        done.done = True
                        done.event.set()
                    self._leader = False
                    if self._pending:  # the next waiting writer leads the next batch
                        self._pending[0][1].event.set()
        if slot.error is not None:
            error = slot.error
            if isinstance(error, sqlite3.Error):
                raise LedgerError(f"run ledger {self.path}: {error}") from error
            raise error
        return slot.result

    async def _commit(
        self, batch: list[tuple[Op, _Slot]], behind: dict[str, WrittenBehind]
    ) -> BaseException | None:
        """Commit ``batch`` and the writes ``behind`` (see :meth:`_apply`): in the event loop if they
        are all small and it may, the sync and checkpoint that follow in the thread; else all of it in
        the thread."""
        if all(slot.inline for _, slot in batch) and len(behind) <= INLINE_KEYS and self._free():
            try:
                failed, sync = self._apply(batch, behind, inline=True)
            except _Busy:  # another process writes: all of it again, in the thread, waiting for the lock
                for _, slot in batch:
                    slot.result, slot.error = None, None
            else:
                checkpoint = self._checkpoint_due()
                if sync or checkpoint:
                    try:
                        await anyio.to_thread.run_sync(
                            self._after_commit, sync, checkpoint, limiter=self._limiter
                        )
                    except Exception as exc:  # as if the commit had failed: its writers are told
                        for _, slot in batch:
                            slot.error = slot.error or exc
                        return failed or exc
                return failed
        return await anyio.to_thread.run_sync(self._apply_waiting, batch, behind, limiter=self._limiter)

    def _apply_waiting(
        self, batch: list[tuple[Op, _Slot]], behind: dict[str, WrittenBehind]
    ) -> BaseException | None:
        """:meth:`_apply` in the ledger's thread, waiting for the lock; then the sync and checkpoint."""
        failed, sync = self._waiting(self._apply, batch, behind)
        checkpoint = self._checkpoint_due()
        if sync or checkpoint:
            try:
                self._after_commit(sync, checkpoint)
            except Exception as exc:
                for _, slot in batch:
                    slot.error = slot.error or exc
                return failed or exc
        return failed

    def _checkpoint_due(self) -> bool:
        """Whether the log is to be checkpointed now (see :data:`CHECKPOINT_INTERVAL`)."""
        return (
            self._inline and self._unchecked and time.monotonic() - self._checkpointed >= CHECKPOINT_INTERVAL
        )

    def _after_commit(self, sync: bool, checkpoint: bool) -> None:
        """In the ledger's thread, after a commit: the log's sync (the commit held an intent: see
        :meth:`_sync_wal`), then its checkpoint when one is due."""
        if sync:
            self._sync_wal()
        if checkpoint:
            self._checkpointed = time.monotonic()
            self._unchecked = False
            try:
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # the next one checkpoints what this one did not
                logger.warning("run ledger %s: checkpoint failed: %s", self.path, exc)

    async def _commit_if_many(self) -> None:
        """Commit the writes behind once :data:`BEHIND_ROWS` are waiting, or :data:`DOWNLOADS_HELD`
        downloads (and no commit is under way)."""
        if (len(self._behind) >= BEHIND_ROWS or len(self._held) >= DOWNLOADS_HELD) and not self._leader:
            try:
                await self._write(_nothing)
            except LedgerError as exc:  # they were kept for the next write
                logger.warning("run ledger %s: %s", self.path, exc)

    def _write_behind(self, key: str) -> WrittenBehind:
        """The item's row of writes to commit with the next write (see the module doc); a download held
        for the item joins it."""
        self._connection()
        row = self._behind.get(key)
        if row is None:
            row = self._held.pop(key, None) or WrittenBehind()
            self._behind[key] = row
        return row

    def _hold_download(self, key: str) -> WrittenBehind:
        """The item's row for its download: its row to commit with the next write if it has one (its
        answer is not written yet), else a row held until :data:`DOWNLOADS_HELD` wait."""
        self._connection()
        row = self._behind.get(key)
        if row is None:
            row = self._held.get(key)
            if row is None:
                row = self._held[key] = WrittenBehind()
        return row

    def _apply(
        self, batch: list[tuple[Op, _Slot]], behind: dict[str, WrittenBehind], *, inline: bool = False
    ) -> tuple[BaseException | None, bool]:
        """Commit ``batch`` and the writes ``behind`` in one transaction (in the ledger's thread, or in the
        event loop when ``inline``). Each write's result or error goes to its slot; returns why the
        writes behind were not committed, and whether the log must now be synced (:meth:`_sync_wal`:
        the caller does it, in the thread). Raises _Busy (rolled back, nothing set) when ``inline`` and
        the file is locked."""
        conn = self._conn
        behind_error: BaseException | None = None
        try:
            if conn is None:
                raise sqlite3.ProgrammingError("the ledger was closed")
            durable = any(slot.durable for _, slot in batch)
            # synced after the commit, outside the write lock (see _sync_wal), when SQLite does not
            sync_after = durable and self._in_wal and self._synchronous == "NORMAL"
            mode = "FULL" if durable and not sync_after else self._synchronous
            if mode != self._synced_mode:
                conn.execute(f"PRAGMA synchronous={mode}")
                self._synced_mode = mode
            conn.execute("BEGIN IMMEDIATE")
            now = self._clock()
            if behind:  # one statement for all of them, in a savepoint: their failure spares the batch
                conn.execute("SAVEPOINT behind")
                try:
                    changes = conn.total_changes
                    conn.executemany(_BEHIND, self._behind_rows(behind, now))
                    if conn.total_changes - changes < len(behind):
                        self._stale_answers(conn, behind)
                except Exception as exc:
                    if inline and _is_busy(exc):
                        raise _Busy from exc
                    conn.execute("ROLLBACK TO behind")
                    behind_error = exc
                conn.execute("RELEASE behind")
            if len(batch) == 1 and not behind:  # alone: its failure rolls the transaction back (below)
                op, slot = batch[0]
                slot.result = op(conn, now)
            else:
                for op, slot in batch:  # each in a savepoint: one failing write spares the others
                    conn.execute("SAVEPOINT op")
                    try:
                        slot.result = op(conn, now)
                    except Exception as exc:
                        if inline and _is_busy(exc):
                            raise _Busy from exc
                        conn.execute("ROLLBACK TO op")
                        slot.error = exc
                    conn.execute("RELEASE op")
            conn.execute("COMMIT")
            self._unchecked = True
        except Exception as exc:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            if inline and (isinstance(exc, _Busy) or _is_busy(exc)):
                raise _Busy from exc
            for _, slot in batch:
                slot.error = slot.error or exc
            return exc, False
        return behind_error, sync_after

    def _sync_wal(self) -> None:
        """Sync the write-ahead log to disk, after the commit of an intent: the commit is then as durable
        as with ``synchronous=FULL`` (SQLite recovers every WAL frame on disk; a checkpoint that reset the
        log meanwhile had synced the database first), but the write lock is not held during the sync.
        Why: the sync was most of the time a worker held the lock (measured: the lock held 12% of a bulk
        run, 85% of it in the syncs of intent commits), and a worker stopped (SIGSTOP, a VM pause) while
        it holds the lock stalls every other worker on the file until it resumes."""
        fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:  # the log's directory entry, once (the log may be new)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._dir_synced = True

    def _behind_rows(self, behind: dict[str, WrittenBehind], now: float) -> list[tuple[Any, ...]]:
        """The rows of :data:`_BEHIND` (tuples: a dict per row costs more to make and to bind)."""
        run = self.run
        return [
            (r.state, r.process_id, r.user_id, r.task_ids, r.files, r.epoch, now, run, key)
            for key, r in behind.items()
        ]

    def _stale_answers(self, conn: sqlite3.Connection, behind: dict[str, WrittenBehind]) -> None:
        """Some rows written behind were refused (stale epochs): the answers among them that the item
        does not name are said (see STALE_ANSWER_RULE)."""
        answers = {key: r.process_id for key, r in behind.items() if r.process_id is not None}
        for chunk in _chunks(list(answers)):
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, process_id FROM items WHERE run = ? AND key IN ({marks})", (self.run, *chunk)
            )
            for key, process_id in rows:
                if (process_id or "").lower() != (answers[key] or "").lower():
                    stale_answer_left(key, answers[key] or "")
