"""The PostgreSQL run ledger's connections: their session settings, and which errors of the driver are
retried (a conflict, a lost connection, a row lock not had in time) and which are raised (see
:meth:`adcreative_async.ledger._postgres.PostgresLedger._retrying`)."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

#: Connections of one worker's pool (claims, intents and answers run concurrently).
POOL_SIZE = 4
#: The ``synchronous_commit`` settings an intent may commit with (each waits for at least the local disk).
DURABLE_COMMITS = ("on", "remote_write", "remote_apply")
#: Times a statement aborted by the server as a deadlock or serialization failure is sent again.
CONFLICT_RETRIES = 5
#: SQLSTATEs of a statement rolled back for a conflict with a concurrent transaction: deadlock_detected,
#: serialization_failure.
_CONFLICTS = frozenset({"40P01", "40001"})
#: How long, in all, one ledger operation keeps trying through a lost connection (or a row lock it could not
#: get) before it raises a LedgerError. Assumed: a PostgreSQL restart or failover takes well under a minute
#: (a restart with a fast shutdown takes seconds; a crash recovery replays at most a checkpoint's WAL).
POSTGRES_RETRY_SECONDS = 60.0
#: The backoff between tries (seconds): doubling from the first pause to the longest, with full jitter.
RETRY_FIRST_PAUSE = 0.05
RETRY_LONGEST_PAUSE = 2.0
#: How long a connection attempt may take before it counts as failed (and is tried again). Assumed: a
#: reachable server answers a connection within seconds, even loaded.
CONNECT_TIMEOUT_SECONDS = 10.0
#: The server ends a ledger session that stays idle inside a transaction this long (its transaction rolled
#: back, its row locks freed): a worker paused mid-transaction holds no other worker up for longer. The
#: ledger's transactions last milliseconds; this is far above any event-loop stall of a healthy worker, and
#: below the default lease (a paused worker's locks are gone before its items can be taken over).
IDLE_IN_TRANSACTION_SECONDS = 10.0
#: The longest a ledger statement waits for a row lock before it is given up and sent again (a concurrent
#: write of a live worker holds its locks for milliseconds; a paused one's are freed within
#: IDLE_IN_TRANSACTION_SECONDS).
LOCK_TIMEOUT_SECONDS = 2.0
#: The longest a ledger statement may run. Assumed: the largest (a registration or reset of a
#: 100,000-item run) takes about a second; a statement still running after this is ended (and reported).
STATEMENT_TIMEOUT_SECONDS = 120.0
#: SQLSTATEs of a connection lost while the database itself is fine or coming back (sent again on a new
#: connection): admin_shutdown (a fast shutdown or restart, pg_terminate_backend), crash_shutdown,
#: cannot_connect_now ("the database system is starting up" / "is shutting down"), too_many_connections,
#: idle_in_transaction_session_timeout and idle_session_timeout (the server ended this session), and the
#: connection exceptions (class 08).
_LOST = frozenset({"57P01", "57P02", "57P03", "53300", "25P03", "57P05"})
#: The SQLSTATE of a statement that could not get a row lock within LOCK_TIMEOUT_SECONDS.
_LOCK_NOT_AVAILABLE = "55P03"


async def _close(pool: asyncpg.Pool) -> None:
    """Close ``pool``; its connections are dropped when the server cannot be told (it is gone)."""
    try:
        await pool.close()
    except _driver_errors():
        pool.terminate()


def _driver_errors() -> tuple[type[BaseException], ...]:
    """The errors a statement can raise from below: asyncpg's own and the socket's (never raised on as
    they are: see :meth:`PostgresLedger._retrying`)."""
    import asyncpg

    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        asyncio.TimeoutError,
    )


def _retried_as(exc: BaseException) -> str | None:
    """How a statement's error is retried: ``"conflict"`` (a few times), ``"lost"`` (the connection; up to
    :data:`POSTGRES_RETRY_SECONDS`), ``"lock"`` (a row lock not had in time; the same), or None (raised)."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state in _CONFLICTS:
            return "conflict"
        if state == _LOCK_NOT_AVAILABLE:
            return "lock"
        if state in _LOST or state.startswith("08"):
            return "lost"
        return None
    if isinstance(exc, (OSError, asyncio.TimeoutError)):  # refused, reset, broken pipe, connect timeout
        return "lost"
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return "lost"  # a transaction's end on a connection that dropped under it
    return None


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: asyncpg's default reset costs a round trip per
    statement, and this ledger leaves no session state behind (no session settings, locks, cursors or
    listeners: its advisory lock is the transaction's)."""


def _password(dsn: str) -> str | None:
    try:
        password = urllib.parse.urlsplit(dsn).password
    except ValueError:
        return None
    return urllib.parse.unquote(password) if password else None
