"""The PostgreSQL run ledger's schema and statements, and how a row becomes an
:class:`~adcreative_async.ledger.ItemRecord` (see :mod:`adcreative_async.ledger._postgres` for why each
statement is shaped as it is: rows locked in key order, claims that skip locked rows, writes fenced by the
item's epoch)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ._base import FINAL_STATES, ItemRecord, ItemState

_FINAL = [s.value for s in FINAL_STATES]
_LIST = msgspec.json.Decoder(tuple[str, ...])
_COLUMNS = (
    "key, seq, label, feature, state, attempt, user_id, process_id, task_ids, files, error_code, "
    "error_message, owner, extract(epoch from lease_until)::float8 AS lease_until, "
    "extract(epoch from intent_at)::float8 AS intent_at, "
    "extract(epoch from created_at)::float8 AS created_at, "
    "extract(epoch from updated_at)::float8 AS updated_at, epoch"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS adcreative_runs (
    run text PRIMARY KEY,
    namespace text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS adcreative_items (
    run text NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    label text NOT NULL,
    feature text NOT NULL,
    state text NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    user_id text,
    process_id text,
    task_ids text NOT NULL DEFAULT '[]',
    files text NOT NULL DEFAULT '[]',
    error_code text,
    error_message text,
    owner text,
    lease_until timestamptz,
    intent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    epoch bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run, key)
);
CREATE INDEX IF NOT EXISTS adcreative_items_by_user ON adcreative_items (run, feature, lower(user_id));
CREATE TABLE IF NOT EXISTS adcreative_sources (
    host text NOT NULL,
    path text NOT NULL,
    size bigint NOT NULL,
    mtime_ns bigint NOT NULL,
    inode bigint NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (host, path)
);
"""
#: Whether the items table has its fencing epoch (tables of earlier versions have not). Looked up first:
#: an ALTER TABLE takes the table's strongest lock even when it changes nothing.
_HAS_EPOCH = (
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'adcreative_items'::regclass "
    "AND attname = 'epoch' AND NOT attisdropped)"
)
#: Every item of a table of an earlier version starts at epoch 0 (its next claim makes it 1).
_ADD_EPOCH = "ALTER TABLE adcreative_items ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0"
#: Serialises the schema creation of concurrent workers (an arbitrary advisory lock number).
_SCHEMA_LOCK = 0x616463726561


def _record(row: Any) -> ItemRecord:
    return ItemRecord(
        key=row["key"],
        seq=row["seq"],
        label=row["label"],
        feature=row["feature"],
        state=ItemState(row["state"]),
        attempt=row["attempt"],
        user_id=row["user_id"],
        process_id=row["process_id"],
        task_ids=_LIST.decode(row["task_ids"]),
        files=_LIST.decode(row["files"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        owner=row["owner"],
        lease_until=row["lease_until"],
        intent_at=row["intent_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        epoch=row["epoch"],
        lapsed_for=row.get("lapsed_for"),
    )


def _locked(rows: str) -> str:
    """A CTE ``locked(key)`` of the run's items whose keys are in the CTE ``rows`` (column ``k``),
    locked in key order: statements that write several rows never lock them in crossed orders."""
    return (
        f"locked AS MATERIALIZED (SELECT i.key FROM adcreative_items AS i JOIN {rows} ON i.key = {rows}.k "
        "WHERE i.run = $1 ORDER BY i.key FOR UPDATE OF i)"
    )


#: Intents written together ($2 keys, $3 owners, $4 users, $5 leases, $7 epochs: NULL unfenced).
_INTENTS = (
    "WITH t AS MATERIALIZED (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[], "
    f"$7::bigint[]) AS t(k, o, u, l, e)), {_locked('t')} "
    "UPDATE adcreative_items AS i SET state = 'submitting', user_id = t.u, intent_at = now(), "
    "lease_until = now() + make_interval(secs => t.l), updated_at = now() FROM t, locked "
    "WHERE i.run = $1 AND i.key = t.k AND locked.key = t.k AND i.owner = t.o AND i.lease_until > now() "
    "AND i.state IN ('pending', 'submitting') AND (t.e IS NULL OR i.epoch = t.e) "
    "AND i.state <> ALL($6::text[]) RETURNING i.key"
)
#: A claim of the items of keys $4 (those not final, not held by another live claim), that also writes the
#: intents of the claimed items pending at the given attempt ($6 users, $7 attempts, aligned with the keys;
#: a NULL user: claimed only), in one statement.
_CLAIM = (
    "WITH c AS MATERIALIZED (SELECT i.key AS ck, t.u AS cu, i.lease_until AS earlier, "
    "  (i.state = 'pending' AND t.u IS NOT NULL AND i.attempt = t.a) AS fresh "
    "  FROM adcreative_items AS i JOIN unnest($4::text[], $6::text[], $7::int[]) AS t(k, u, a) "
    "  ON i.key = t.k "
    "  WHERE i.run = $1 AND i.state <> ALL($5::text[]) "
    "  AND (i.owner IS NULL OR i.owner = $2 OR i.lease_until IS NULL OR i.lease_until <= now()) "
    "  ORDER BY i.seq FOR UPDATE OF i SKIP LOCKED) "
    "UPDATE adcreative_items AS i SET owner = $2, lease_until = now() + make_interval(secs => $3), "
    "updated_at = now(), epoch = i.epoch + 1, "
    "state = CASE WHEN c.fresh THEN 'submitting' ELSE i.state END, "
    "user_id = CASE WHEN c.fresh THEN c.cu ELSE i.user_id END, "
    "intent_at = CASE WHEN c.fresh THEN now() ELSE i.intent_at END "
    f"FROM c WHERE i.run = $1 AND i.key = c.ck RETURNING {_COLUMNS}, c.fresh, "
    "CASE WHEN c.earlier IS NOT NULL THEN greatest(0, extract(epoch from now() - c.earlier)) END::float8 "
    "AS lapsed_for"
)
#: A row written behind is of the item's current claim (its epoch, or unfenced).
_OWN = "(t.e IS NULL OR i.epoch = t.e)"
#: Answers and downloads written behind, one row per item (a NULL keeps the stored value; a download
#: ends the claim and clears the error). Fenced by the epoch ($8); a stale row's answer alone is written,
#: where the STALE_ANSWER_RULE allows it (the claim stays the new owner's). Returns the keys written.
_BEHIND = (
    "WITH t AS MATERIALIZED (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], "
    f"$6::text[], $7::text[], $8::bigint[]) AS t(k, s, p, u, tk, f, e)), {_locked('t')} "
    f"UPDATE adcreative_items AS i SET state = CASE WHEN {_OWN} THEN t.s ELSE 'submitted' END, "
    "process_id = coalesce(t.p, i.process_id), "
    "user_id = coalesce(t.u, i.user_id), task_ids = coalesce(t.tk, i.task_ids), "
    f"files = CASE WHEN {_OWN} THEN coalesce(t.f, i.files) ELSE i.files END, "
    f"error_code = CASE WHEN {_OWN} AND t.f IS NULL THEN i.error_code END, "
    f"error_message = CASE WHEN {_OWN} AND t.f IS NULL THEN i.error_message END, "
    f"owner = CASE WHEN {_OWN} AND t.f IS NOT NULL THEN NULL ELSE i.owner END, "
    f"lease_until = CASE WHEN {_OWN} AND t.f IS NOT NULL THEN NULL ELSE i.lease_until END, "
    "updated_at = now() "
    "FROM t, locked WHERE i.run = $1 AND i.key = t.k AND locked.key = t.k "
    f"AND ({_OWN} OR (t.p IS NOT NULL AND i.process_id IS NULL AND lower(i.user_id) = lower(t.u) "
    "AND i.state = ANY($9::text[]))) RETURNING i.key, i.process_id"
)
#: The run's rows matching a condition (``{where}``), locked in key order, for statements that write
#: many rows at once.
_LOCK_WHERE = (
    "WITH locked AS MATERIALIZED (SELECT key FROM adcreative_items WHERE run = $1 AND ({where}) "
    "ORDER BY key FOR UPDATE) "
)


def _json(values: Iterable[str]) -> str:
    return msgspec.json.encode(list(dict.fromkeys(values))).decode()
