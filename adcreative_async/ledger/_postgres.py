"""PostgresLedger: the run ledger in PostgreSQL, for workers on many machines (``asyncpg``).

Why asyncpg rather than psycopg 3: the SDK is asyncio-only already (aiohttp), and asyncpg speaks the
PostgreSQL protocol natively on asyncio with no libpq to install, prepares and caches statements by
itself, and sends arrays and batches in one round trip; every ledger operation here is one statement.
Install asyncpg: ``pip install asyncpg`` (the ``postgres`` extra).

Claims are ``UPDATE … WHERE key IN (SELECT … FOR UPDATE SKIP LOCKED)``: concurrent workers never wait on
each other's rows and never claim the same item; leases are on the database server's clock (``now()``),
so that workers' clocks need not agree. Each write is one autocommitted statement.

Only intents (the write-ahead record of a paid call) wait for the server to flush its WAL to disk: they
commit with ``synchronous_commit`` on (or what ``durable_commit`` says), every other write with it off
(asynchronous commit, as the SQLite backend's ``synchronous=NORMAL``). A write is visible to every worker
as soon as it returns either way; only a crash of the database server itself can lose the asynchronous
ones of its last moments, and then nothing is paid twice: the server writes its WAL in order, so a durable
intent carries every write made before it to disk (the claim that fences it included); a lost claim only
fails the next fenced intent; a lost answer is found again by reconciling its intent, a lost download by
downloading again, a lost failure by awaiting the process again. Claims and answers then stop waiting for
a disk flush on the way of the next start calls.

No deadlocks: a worker writes its rows from several connections at once (a batch of intents, answers
written behind, the lease renewal), and an ``UPDATE`` locks rows in whatever order its plan meets them
(a table's physical order changes with every update). So every statement that writes several rows
locks them first in key order (``ORDER BY key FOR UPDATE``), the lease renewal skips rows being written
(``SKIP LOCKED``: they are renewed on the next round), and a statement the server still aborts as a
deadlock or serialization failure (an operator's transaction can hold rows in any order) is sent again,
a few times, after a short random pause: it was rolled back as a whole, so sending it again is safe.

A bulk run's claim writes the intents of the items it takes in the same statement (:meth:`claim_and_intend`).
Intents written on their own (again, right before a call that waited long for its upload slot) that arrive
while another batch is being written, or in the same tick of the event loop, are written together, in one
statement (group commit, as in the SQLite backend); each caller returns once its own intent is committed.
Answers (``submitted``) and downloads (``downloaded``) are written behind, as in the SQLite backend: in one
statement beside the next claim that writes intents, batch of intents or release (at the same time, on
another connection), or before any other statement of this worker but a claim (a read, the lease renewal),
and on close. A worker killed before that loses nothing that cannot be found again (an answer by reconciling
the intent, a download by downloading again), never paid twice; until then the item stays claimed by this
worker, so no other worker takes it.

A server that restarts, or a connection that drops: every ledger operation runs its statement through one
retry loop (:meth:`PostgresLedger._retrying`). A lost connection (reset or closed, the server shutting down,
restarting or starting up, too many connections, this session ended by the server) is sent again on a new
connection of the pool after a backoff pause, for up to :data:`POSTGRES_RETRY_SECONDS` in all; past that, or
on any other error, the operation raises one :class:`LedgerError` (never the driver's own error); for as
long again, the next operations try once instead of waiting again (a run stopping on it ends at once). A
connection lost while a write's ``COMMIT`` was on its way leaves it unknown whether the write was committed:
then the write is sent again, and each one is idempotent, sent once or twice:

- registrations insert ``ON CONFLICT DO NOTHING``; answers, downloads, failures, requeues, renewals,
  releases and source hashes set the same values again;
- an intent written again finds the row already owned by this worker and submitting for the same derived
  user: rewriting it counts as nothing more (one start call still follows it, sent after the write returns);
- a claim sent again finds its rows owned by this worker (its own claim: taken again, the lease renewed);
  an intent that its first try committed is no longer pending, so the second try reports it claimed but not
  freshly intended: the run treats it as an unanswered intent and reconciles it before any start call (its
  user's listing shows no process, as no call was sent; where that cannot be proven, it is reported
  ``unknown``): never a second call, at worst a reconciliation;
- ``retry_failed()`` and ``reset_unfinished()`` find the rows already reset (the attempt counts once), and
  may then report fewer rows than they reset; ``restart()`` sets the same new namespace again.

A worker that is paused (SIGSTOP, a VM pause) while one of its transactions is open holds that transaction's
row locks. Write transactions are short (one statement, or a few sent back to back: an intent's ``SET
LOCAL`` before its statement, the schema at open, a restart's two) and never span a network call of their
own, and the server ends a session idle in a transaction after
:data:`IDLE_IN_TRANSACTION_SECONDS` (its transaction rolled back, its locks freed): a paused worker holds no
other worker's claims, takeovers or writes hostage for longer. A statement waits at most
:data:`LOCK_TIMEOUT_SECONDS` for a row lock and is then sent again (within the same retry bound), and none
runs longer than :data:`STATEMENT_TIMEOUT_SECONDS`. A paused worker that resumes after its session was ended
finds the connection closed and carries on with a new one, as after a restart.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import backoff

from ._base import (
    BEHIND_ROWS,
    STALE_ANSWER_STATES,
    ItemRecord,
    ItemState,
    LedgerError,
    NewItem,
    RunLedger,
    SourceHash,
    WrittenBehind,
    stale_answer_left,
)
from ._pgconn import (
    CONFLICT_RETRIES,
    CONNECT_TIMEOUT_SECONDS,
    DURABLE_COMMITS,
    IDLE_IN_TRANSACTION_SECONDS,
    LOCK_TIMEOUT_SECONDS,
    POOL_SIZE,
    POSTGRES_RETRY_SECONDS,
    RETRY_FIRST_PAUSE,
    RETRY_LONGEST_PAUSE,
    STATEMENT_TIMEOUT_SECONDS,
    _close,
    _driver_errors,
    _keep_session,
    _milliseconds,
    _password,
    _retried_as,
)
from ._pgrate import RATE_SCHEMA, PgRateBoard
from ._pgsql import (
    _ADD_EPOCH,
    _BEHIND,
    _CLAIM,
    _COLUMNS,
    _FINAL,
    _HAS_EPOCH,
    _INTENTS,
    _LIST,
    _LOCK_WHERE,
    _SCHEMA,
    _SCHEMA_LOCK,
    _json,
    _record,
)

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresLedger"]

logger = logging.getLogger("adcreative_async.ledger")

R = TypeVar("R")


class _Intent:
    __slots__ = ("done", "epoch", "error", "event", "key", "lease", "ok", "owner", "user_id")

    def __init__(self, key: str, owner: str, user_id: str, lease: float, epoch: int | None) -> None:
        self.key, self.owner, self.user_id, self.lease, self.epoch = key, owner, user_id, lease, epoch
        self.event = anyio.Event()
        self.done = False
        self.ok = False
        self.error: BaseException | None = None


class PostgresLedger(RunLedger):
    """A run ledger in a PostgreSQL database, shared by workers on many machines.

    Args:
        dsn: ``postgresql://user@host:port/database`` (credentials in the DSN or the ``PG*`` variables;
            never stored in the ledger).
        run: the run's name: workers of one run use the same name.
        pool_size: connections of this worker.
        durable_commit: the ``synchronous_commit`` of the transactions that write intents: ``"on"`` (the
            default: flushed to the server's disk), or ``"remote_write"`` / ``"remote_apply"`` to wait for
            synchronous standbys too. The other writes commit asynchronously (see the module doc).

    A lost connection (a server restart, a failover) is waited out: each operation is sent again on a new
    connection for up to ``POSTGRES_RETRY_SECONDS`` (60 s), and the server ends a session of this worker
    that stays idle inside a transaction (a paused worker) after ``IDLE_IN_TRANSACTION_SECONDS`` (see the
    module doc).

    Raises:
        LedgerError: on open, when asyncpg is missing or the database cannot be reached (refused at once;
            a server starting up is waited for); from any operation, once its tries are over or on an error
            that trying again cannot mend: one error, never the driver's own.
    """

    _records_at_once = True  # (see RunLedger: its answers and downloads are held before any await)

    def __init__(
        self, dsn: str, *, run: str = "default", pool_size: int = POOL_SIZE, durable_commit: str = "on"
    ) -> None:
        if durable_commit not in DURABLE_COMMITS:
            raise ValueError(
                f"durable_commit must be one of {', '.join(DURABLE_COMMITS)}, not {durable_commit!r}"
            )
        self._durable = f"SET LOCAL synchronous_commit TO {durable_commit}"
        self._dsn = dsn
        self._secrets = [p for p in (_password(dsn), os.environ.get("PGPASSWORD")) if p]
        self.run = run
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._namespace: str | None = None
        self._behind: dict[str, WrittenBehind] = {}
        self._flushing = anyio.Lock()  # held while answers written behind are being written
        self._intents: list[_Intent] = []
        self._leader = False
        self._gave_up_at: float | None = None  # when an operation last gave up on an unreachable server

    def __repr__(self) -> str:
        return f"PostgresLedger(run={self.run!r})"  # the DSN may hold a password: never shown

    async def open(self) -> None:
        """See :meth:`RunLedger.open`."""
        if self._pool is not None:
            return
        try:
            import asyncpg
        except ImportError:
            raise LedgerError(
                "a PostgreSQL run ledger needs asyncpg: pip install asyncpg (the SDK's postgres extra)"
            ) from None
        settings = {
            "synchronous_commit": "off",  # intents: see _durable_fetch
            "idle_in_transaction_session_timeout": _milliseconds(IDLE_IN_TRANSACTION_SECONDS),
            "lock_timeout": _milliseconds(LOCK_TIMEOUT_SECONDS),
            "statement_timeout": _milliseconds(STATEMENT_TIMEOUT_SECONDS),
        }

        async def connect() -> asyncpg.Pool:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                reset=_keep_session,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings=settings,
            )
            return pool

        # a server that is not there (refused, unknown host) is a setup error, reported at once; one that is
        # starting up, restarting or full is waited for
        pool = await self._retrying(connect, refused=False, doing="open the PostgreSQL run ledger")
        namespace = str(uuid.uuid4())

        async def schema() -> str:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(_SCHEMA)
                await conn.execute(RATE_SCHEMA)
                if not await conn.fetchval(_HAS_EPOCH):  # a table of an earlier version
                    await conn.execute(_ADD_EPOCH)
                await conn.execute(
                    "INSERT INTO adcreative_runs (run, namespace) VALUES ($1, $2) "
                    "ON CONFLICT (run) DO NOTHING",
                    self.run,
                    namespace,
                )
                found: str = await conn.fetchval(
                    "SELECT namespace FROM adcreative_runs WHERE run = $1", self.run
                )
                return found

        try:
            self._namespace = await self._retrying(schema, doing="open the PostgreSQL run ledger")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _close(pool)
            raise
        self._pool = pool

    async def close(self) -> None:
        """See :meth:`RunLedger.close`."""
        if self._pool is not None and self._behind:
            with anyio.CancelScope(shield=True):
                try:
                    await self._flush()
                except LedgerError as exc:  # found again by reconciling (see the module doc)
                    logger.warning("PostgreSQL run ledger: answers written behind are lost: %s", exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await _close(pool)

    @property
    def namespace(self) -> str:
        """See :attr:`RunLedger.namespace`."""
        if self._namespace is None:
            raise LedgerError("the run ledger is not open")
        return self._namespace

    def rate_board(self, scope: str) -> PgRateBoard | None:
        """See :meth:`RunLedger.rate_board`: the account's rate in this database (None until open)."""
        return None if self._pool is None else PgRateBoard(self._pool, scope)

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise LedgerError("the PostgreSQL run ledger is not open")
        return self._pool

    async def _retrying(
        self,
        statement: Callable[[], Awaitable[R]],
        *,
        refused: bool = True,
        doing: str = "PostgreSQL run ledger",
    ) -> R:
        """Run ``statement`` (each try on a connection it acquires itself); sent again when the server
        rolled it back for a conflict with a concurrent transaction (a few times, after a short random
        pause), and when the connection was lost or a row lock was not had in time (after a backoff
        pause, for up to :data:`POSTGRES_RETRY_SECONDS` in all; ``refused``: a refused connection counts as
        lost too). Every statement sent through here is idempotent (see the module doc). Within
        :data:`POSTGRES_RETRY_SECONDS` of an operation that gave up on an unreachable server, a lost
        connection is tried once, not waited out again (a run stopping on it releases and closes at once).

        Raises:
            LedgerError: for any other error, or once the tries are over: one error, never the driver's.
        """
        conflicts = 0
        deadline: float | None = None
        pauses = backoff.expo(base=2, factor=RETRY_FIRST_PAUSE, max_value=RETRY_LONGEST_PAUSE)
        next(pauses)  # prime the generator, as backoff's decorators do
        while True:
            try:
                result = await statement()
            except _driver_errors() as exc:
                kind = _retried_as(exc)
                if kind is not None and not refused and isinstance(exc, OSError):
                    kind = None
                if kind == "conflict" and conflicts < CONFLICT_RETRIES:
                    conflicts += 1
                    logger.info(
                        "PostgreSQL run ledger: %s, sending the statement again (%d of %d)",
                        type(exc).__name__,
                        conflicts,
                        CONFLICT_RETRIES,
                    )
                    await anyio.sleep(random.uniform(0.0, 0.01 * 2**conflicts))
                    continue
                if kind not in ("lost", "lock"):
                    message = f"{doing}: {type(exc).__name__}: {exc}"
                    raise LedgerError(self._redacted(message)) from self._cause(exc, message)
                now = anyio.current_time()
                still = (
                    kind == "lost"
                    and self._gave_up_at is not None
                    and now - self._gave_up_at < POSTGRES_RETRY_SECONDS
                )
                if deadline is None:
                    deadline = now if still else now + POSTGRES_RETRY_SECONDS
                if now >= deadline:
                    if still:
                        what = "the database could not be reached (given up on moments ago)"
                    elif kind == "lost":
                        what = f"the database could not be reached for {POSTGRES_RETRY_SECONDS:g} s"
                        self._gave_up_at = now
                    else:
                        what = f"a row stayed locked for {POSTGRES_RETRY_SECONDS:g} s"
                    message = (
                        f"{doing}: {what} ({type(exc).__name__}: {exc}); "
                        "nothing recorded is lost: rerun once the database is back"
                    )
                    raise LedgerError(self._redacted(message)) from self._cause(exc, message)
                pause = min(backoff.full_jitter(next(pauses)), deadline - now)
                logger.warning(
                    "PostgreSQL run ledger: %s (%s), trying again in %.2f s",
                    "connection lost" if kind == "lost" else "row lock not available",
                    type(exc).__name__,
                    pause,
                )
                await anyio.sleep(pause)
                continue
            self._gave_up_at = None  # reached again
            return result

    def _cause(self, exc: BaseException, message: str) -> BaseException | None:
        """``exc``, to chain a LedgerError to; None when its text (or ``message``) holds the DSN's
        password (then the cause is not shown)."""
        text = f"{message} {exc.args!r}"
        return None if any(secret in text for secret in self._secrets) else exc

    def _redacted(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    async def _flush(self) -> None:
        """Write the answers and downloads written behind (one statement); a statement of this worker
        that follows sees them. On failure they are kept for the next try."""
        if not self._behind and not self._flushing.locked():
            return
        with anyio.CancelScope(shield=True):
            async with self._flushing:
                if not self._behind:
                    return
                rows, self._behind = self._behind, {}
                pool = self._require()
                try:
                    written = await self._retrying(
                        lambda: pool.fetch(
                            _BEHIND,
                            self.run,
                            list(rows),
                            [r.state for r in rows.values()],
                            [r.process_id for r in rows.values()],
                            [r.user_id for r in rows.values()],
                            [r.task_ids for r in rows.values()],
                            [r.files for r in rows.values()],
                            [r.epoch for r in rows.values()],
                            list(STALE_ANSWER_STATES),
                        )
                    )
                except BaseException:
                    WrittenBehind.keep(self._behind, rows)  # for the next flush
                    raise
                if len(written) < len(rows):  # some were refused: their answers are said
                    done = {row["key"] for row in written}
                    for key, row in rows.items():
                        if key not in done and row.process_id is not None:
                            stale_answer_left(key, row.process_id)

    async def _flush_if_many(self) -> None:
        """Flush the writes behind once :data:`BEHIND_ROWS` are waiting (and no flush is under way): no
        run ends with one large statement of every download since its last claim."""
        if len(self._behind) >= BEHIND_ROWS and not self._flushing.locked():
            await self._flush_beside()

    def _write_behind(self, key: str) -> WrittenBehind:
        self._require()
        row = self._behind.get(key)
        if row is None:
            row = self._behind[key] = WrittenBehind()
        return row

    async def _flush_beside(self) -> None:
        """:meth:`_flush` beside another statement (on a connection of its own): a failure is logged and
        the rows kept for the next flush, never the other statement's error."""
        try:
            await self._flush()
        except LedgerError as exc:
            logger.warning("%s (kept for the next write)", exc)

    async def _beside_flush(self, statement: Callable[[], Awaitable[R]]) -> R:
        """``statement``, with the answers written behind flushed at the same time on another connection
        (other rows: not one more round trip on its way). Its own error is raised as it is, not in an
        exception group."""
        outcome: list[R] = []
        error: list[Exception] = []
        async with anyio.create_task_group() as beside:
            beside.start_soon(self._flush_beside)  # logs its failure, never raises it
            try:
                outcome.append(await statement())
            except Exception as exc:
                error.append(exc)
        if error:
            raise error[0]
        return outcome[0]

    async def _durable_fetch(self, query: str, *args: Any) -> list[Any]:
        """``query`` in a transaction that commits as an intent's (``durable_commit``: the one kind of
        write that waits for the disk), beside a flush of the answers written behind."""

        async def write() -> list[Any]:  # each try on a connection of its own (a lost one is replaced)
            async with self._require().acquire() as conn, conn.transaction():
                await conn.execute(self._durable)
                return list(await conn.fetch(query, *args))

        return await self._beside_flush(lambda: self._retrying(write))

    async def _fetch(self, query: str, *args: Any, flush: bool = True) -> list[Any]:
        if flush:
            await self._flush()
        pool = self._require()
        return list(await self._retrying(lambda: pool.fetch(query, *args)))

    async def _execute(self, query: str, *args: Any, flush: bool = True) -> str:
        if flush:
            await self._flush()
        pool = self._require()
        status: str = await self._retrying(lambda: pool.execute(query, *args))
        return status

    @staticmethod
    def _rowcount(status: str) -> int:
        return int(status.rsplit(" ", 1)[-1])

    # ----------------------------------------------------------------------------------- reading

    async def records(self, keys: Sequence[str] | None = None) -> dict[str, ItemRecord]:
        """See :meth:`RunLedger.records`."""
        if keys is None:
            rows = await self._fetch(
                f"SELECT {_COLUMNS} FROM adcreative_items WHERE run = $1 ORDER BY seq", self.run
            )
        else:
            rows = await self._fetch(
                f"SELECT {_COLUMNS} FROM adcreative_items WHERE run = $1 AND key = ANY($2::text[])",
                self.run,
                list(keys),
            )
        return {row["key"]: _record(row) for row in rows}

    async def scan(
        self, visit: Callable[[ItemRecord, bool], None], *, states: Collection[ItemState] | None = None
    ) -> None:
        """See :meth:`RunLedger.scan`: a cursor in a read-only transaction (``ledger._scan``)."""
        from ._scan import scan_connection

        await self._flush()
        async with self._require().acquire() as conn:
            await scan_connection(conn, self.run, visit, states)

    async def counts(self) -> dict[ItemState, int]:
        """See :meth:`RunLedger.counts`."""
        counts = dict.fromkeys(ItemState, 0)
        rows = await self._fetch(
            "SELECT state, count(*) AS n FROM adcreative_items WHERE run = $1 GROUP BY state", self.run
        )
        for row in rows:
            counts[ItemState(row["state"])] = row["n"]
        return counts

    async def process_ids(self, feature: str, user_id: str) -> set[str]:
        """See :meth:`RunLedger.process_ids`."""
        rows = await self._fetch(
            "SELECT process_id FROM adcreative_items WHERE run = $1 AND feature = $2 "
            "AND lower(user_id) = $3 AND process_id IS NOT NULL",
            self.run,
            feature,
            user_id.lower(),
        )
        return {row["process_id"].lower() for row in rows}

    async def finished_labels(self) -> set[str]:
        """See :meth:`RunLedger.finished_labels`."""
        rows = await self._fetch(
            "SELECT label FROM adcreative_items WHERE run = $1 GROUP BY label "
            "HAVING bool_and(state = ANY($2::text[]))",
            self.run,
            _FINAL,
        )
        return {row["label"] for row in rows}

    async def finished_example(self) -> ItemRecord | None:
        """See :meth:`RunLedger.finished_example`."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM adcreative_items WHERE run = $1 AND state = 'downloaded' "
            "AND process_id IS NOT NULL LIMIT 1",
            self.run,
        )
        return _record(rows[0]) if rows else None

    # ---------------------------------------------------------------------------------- claiming

    async def register(self, items: Sequence[NewItem]) -> None:
        """See :meth:`RunLedger.register`."""
        if not items:
            return
        # inserted in key order: workers registering the same items never wait on each other crosswise
        items = sorted(items, key=lambda i: i.key)
        await self._execute(
            "INSERT INTO adcreative_items (run, key, seq, label, feature, state) "
            "SELECT $1, k, s, l, f, 'pending' FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[]) "
            "AS t(k, s, l, f) ON CONFLICT (run, key) DO NOTHING",
            self.run,
            [i.key for i in items],
            [i.seq for i in items],
            [i.label for i in items],
            [i.feature for i in items],
        )

    async def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[ItemRecord]:
        """See :meth:`RunLedger.claim`."""
        claimed, _ = await self.claim_and_intend(keys, owner, lease, {})
        return claimed

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        """See :meth:`RunLedger.claim_and_intend`: one statement, committed as an intent's when it writes
        intents. No flush first: a claim is of items this worker is not writing."""
        if not keys:
            return [], set()
        wanted = [intents.get(key) for key in keys]
        args = (
            _CLAIM,
            self.run,
            owner,
            lease,
            list(keys),
            _FINAL,
            [w[1] if w else None for w in wanted],
            [w[0] if w else 0 for w in wanted],
        )
        if any(wanted):
            rows = await self._durable_fetch(*args)
        else:
            rows = await self._fetch(*args, flush=False)
        records = sorted((_record(row) for row in rows), key=lambda r: r.seq)
        return records, {row["key"] for row in rows if row["fresh"]}

    async def renew(self, owner: str, lease: float) -> set[str]:
        """See :meth:`RunLedger.renew`."""
        # rows locked by a write of this worker (or a claim of another) are skipped, never waited for:
        # renewed on the next round (and not among the keys returned)
        rows = await self._fetch(
            "UPDATE adcreative_items SET lease_until = now() + make_interval(secs => $3) "
            "WHERE run = $1 AND key IN (SELECT key FROM adcreative_items WHERE run = $1 AND owner = $2 "
            "AND state <> ALL($4::text[]) AND lease_until > now() FOR UPDATE SKIP LOCKED) "
            "AND owner = $2 AND lease_until > now() RETURNING key",
            self.run,
            owner,
            lease,
            _FINAL,
        )
        return {row["key"] for row in rows}

    async def release(self, owner: str, keys: Sequence[str] | None = None) -> None:
        """See :meth:`RunLedger.release` (the answers written behind are flushed at the same time)."""
        where = "owner = $2" if keys is None else "owner = $2 AND key = ANY($3::text[])"
        args: tuple[object, ...] = (self.run, owner) if keys is None else (self.run, owner, list(keys))
        await self._beside_flush(
            lambda: self._execute(
                _LOCK_WHERE.format(where=where) + "UPDATE adcreative_items AS i SET owner = NULL, "
                "lease_until = least(coalesce(i.lease_until, now()), now()) FROM locked "
                "WHERE i.run = $1 AND i.key = locked.key AND i.owner = $2",
                *args,
                flush=False,
            )
        )

    # ----------------------------------------------------------------------------------- writing

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        """See :meth:`RunLedger.intent`. Intents that arrive together are written in one statement."""
        self._require()
        slot = _Intent(key, owner, user_id, lease, epoch)
        self._intents.append(slot)
        with anyio.CancelScope(shield=True):  # a write in progress is seen through
            while not slot.done:
                if self._leader:
                    await slot.event.wait()  # written by the leader, or made the next leader
                    slot.event = anyio.Event()
                    continue
                self._leader = True
                batch: list[_Intent] = []
                try:
                    # the intents of the tasks started in the same tick as this one (the items claimed
                    # together) join this statement
                    await anyio.lowlevel.checkpoint()
                    batch, self._intents = self._intents, []
                    await self._write_intents(batch)
                finally:
                    for done in batch:
                        done.done = True
                        done.event.set()
                    self._leader = False
                    if self._intents:  # the next waiting intent leads the next batch
                        self._intents[0].event.set()
        if slot.error is not None:
            raise slot.error
        return slot.ok

    async def _write_intents(self, batch: list[_Intent]) -> None:
        try:
            rows = await self._durable_fetch(
                _INTENTS,
                self.run,
                [i.key for i in batch],
                [i.owner for i in batch],
                [i.user_id for i in batch],
                [i.lease for i in batch],
                _FINAL,
                [i.epoch for i in batch],
            )
        except LedgerError as exc:
            for slot in batch:
                slot.error = exc
            return
        written = {row["key"] for row in rows}
        for slot in batch:
            slot.ok = slot.key in written

    async def submitted(
        self, key: str, process_id: str, user_id: str, task_ids: Sequence[str], *, epoch: int | None = None
    ) -> None:
        """See :meth:`RunLedger.submitted` (written behind: see the module doc)."""
        if not self._write_behind(key).answered(process_id, user_id, task_ids, epoch):
            stale_answer_left(key, process_id)
        await self._flush_if_many()

    async def tasks(self, key: str, task_ids: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.tasks`."""
        rows = await self._fetch(
            "SELECT task_ids FROM adcreative_items WHERE run = $1 AND key = $2", self.run, key
        )
        if not rows:
            return
        merged = _json((*_LIST.decode(rows[0]["task_ids"]), *task_ids))
        await self._execute(
            "UPDATE adcreative_items SET task_ids = $3, updated_at = now() WHERE run = $1 AND key = $2 "
            "AND ($4::bigint IS NULL OR epoch = $4)",
            self.run,
            key,
            merged,
            epoch,
        )

    async def downloaded(self, key: str, files: Sequence[str], *, epoch: int | None = None) -> None:
        """See :meth:`RunLedger.downloaded` (written behind: see the module doc)."""
        self._write_behind(key).downloaded(files, epoch)
        await self._flush_if_many()

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
        status = await self._execute(
            "UPDATE adcreative_items SET state = $3, error_code = $4, error_message = $5, owner = NULL, "
            "lease_until = NULL, updated_at = now() WHERE run = $1 AND key = $2 "
            "AND ($6::bigint IS NULL OR epoch = $6)",
            self.run,
            key,
            state.value,
            code,
            message,
            epoch,
        )
        return self._rowcount(status) == 1

    async def requeue(self, key: str, *, epoch: int | None = None) -> bool:
        """See :meth:`RunLedger.requeue`."""
        status = await self._execute(
            "UPDATE adcreative_items SET state = 'pending', intent_at = NULL, updated_at = now() "
            "WHERE run = $1 AND key = $2 AND state IN ('submitting', 'unknown') "
            "AND ($3::bigint IS NULL OR epoch = $3)",
            self.run,
            key,
            epoch,
        )
        return self._rowcount(status) == 1

    async def retry_failed(self) -> int:
        """See :meth:`RunLedger.retry_failed`."""
        status = await self._execute(
            _LOCK_WHERE.format(where="state = 'failed'")
            + "UPDATE adcreative_items AS i SET state = 'pending', attempt = attempt + 1, process_id = NULL, "
            "user_id = NULL, task_ids = '[]', files = '[]', error_code = NULL, error_message = NULL, "
            "intent_at = NULL, epoch = i.epoch + 1, updated_at = now() FROM locked "
            "WHERE i.run = $1 AND i.key = locked.key AND i.state = 'failed'",
            self.run,
        )
        return self._rowcount(status)

    async def reset_unfinished(self) -> int:
        """See :meth:`RunLedger.reset_unfinished`."""
        status = await self._execute(
            _LOCK_WHERE.format(where="state IN ('submitting', 'submitted')")
            + "UPDATE adcreative_items AS i SET state = 'pending', attempt = attempt + 1, process_id = NULL, "
            "user_id = NULL, task_ids = '[]', intent_at = NULL, epoch = i.epoch + 1, updated_at = now() "
            "FROM locked "
            "WHERE i.run = $1 AND i.key = locked.key AND i.state IN ('submitting', 'submitted')",
            self.run,
        )
        return self._rowcount(status)

    async def restart(self) -> None:
        """See :meth:`RunLedger.restart`."""
        namespace = str(uuid.uuid4())  # the same one if sent again (see the module doc)
        pool = self._require()
        self._behind.clear()  # the items are forgotten

        async def restart() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM adcreative_items WHERE run = $1", self.run)
                await conn.execute(
                    "INSERT INTO adcreative_runs (run, namespace) VALUES ($1, $2) "
                    "ON CONFLICT (run) DO UPDATE SET namespace = excluded.namespace, created_at = now()",
                    self.run,
                    namespace,
                )

        await self._retrying(restart)
        self._namespace = namespace

    # ---------------------------------------------------------------------------- source hashes

    async def source_hashes(self, host: str, paths: Sequence[str]) -> dict[str, SourceHash]:
        """See :meth:`RunLedger.source_hashes`."""
        rows = await self._fetch(
            "SELECT host, path, size, mtime_ns, inode, sha256 FROM adcreative_sources "
            "WHERE host = $1 AND path = ANY($2::text[])",
            host,
            list(paths),
        )
        return {
            row["path"]: SourceHash(
                row["host"], row["path"], row["size"], row["mtime_ns"], row["inode"], row["sha256"]
            )
            for row in rows
        }

    async def remember_sources(self, hashes: Iterable[SourceHash]) -> None:
        """See :meth:`RunLedger.remember_sources`."""
        rows = list(hashes)
        if not rows:
            return
        await self._execute(
            "INSERT INTO adcreative_sources (host, path, size, mtime_ns, inode, sha256) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], "
            "$6::text[]) "
            "ON CONFLICT (host, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "inode = excluded.inode, sha256 = excluded.sha256",
            [s.host for s in rows],
            [s.path for s in rows],
            [s.size for s in rows],
            [s.mtime_ns for s in rows],
            [s.inode for s in rows],
            [s.sha256 for s in rows],
        )
