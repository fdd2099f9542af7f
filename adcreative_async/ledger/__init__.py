"""The run ledger: durable bulk runs, resumed after a crash and shared by many workers.

``client.process_many(requests, ledger=...)`` and ``client.bulk(..., ledger=...)`` take a path (a SQLite
file), a ``postgresql://`` DSN, or a :class:`RunLedger` object. See README, "Resumable runs and many
workers", for the guarantees.

A ledger is a state store, like a credentials file: it keeps what recovering a render needs, each item's
user id (derived for the run: the one its progress is asked for) and process id, so it holds account
identifiers on purpose and is never shown, logged or shared. A SQLite ledger is created owner-only
(0600, its WAL files too); a PostgreSQL ledger is protected by the database's own access control. The
error messages it records are the SDK's, which name no user or application.
"""

from __future__ import annotations

import os

from ._base import (
    DEFAULT_LEASE,
    FINAL_STATES,
    ItemRecord,
    ItemState,
    LedgerError,
    NewItem,
    RunLedger,
    SourceHash,
    new_worker_id,
)
from ._emit import RecordedError
from ._memory import MemoryLedger
from ._postgres import PostgresLedger
from ._requests import RenderRequest, derived_user_id, request_keys
from ._sqlite import SqliteLedger, read_ledger_file

__all__ = [
    "DEFAULT_LEASE",
    "FINAL_STATES",
    "ItemRecord",
    "ItemState",
    "LedgerError",
    "MemoryLedger",
    "NewItem",
    "PostgresLedger",
    "RecordedError",
    "RenderRequest",
    "RunLedger",
    "SourceHash",
    "SqliteLedger",
    "derived_user_id",
    "new_worker_id",
    "open_ledger",
    "read_ledger_file",
    "request_keys",
]


def open_ledger(spec: str | os.PathLike[str] | RunLedger, *, run: str = "default") -> RunLedger:
    """The ledger ``spec`` names (not opened yet): a :class:`RunLedger` as is, a ``postgresql://`` (or
    ``postgres://``) DSN as a :class:`PostgresLedger` (a ``#name`` at its end names the run, so that one
    database holds several), anything else as a :class:`SqliteLedger` path."""
    if isinstance(spec, RunLedger):
        return spec
    text = os.fspath(spec)
    if text.startswith(("postgresql://", "postgres://")):
        dsn, _, name = text.partition("#")
        return PostgresLedger(dsn, run=name or run)
    return SqliteLedger(text, run=run)
