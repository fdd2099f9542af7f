"""The shared account rate in a PostgreSQL run ledger's database (see :mod:`adcreative_async._ratelimit`).

Two tables, created with the ledger's schema: ``adcreative_rates`` holds, per account (a fingerprint of the
API host and application, never the application id), the learned rate, the rate of its last cut and its
generation (cuts so far); ``adcreative_rate_workers`` a heartbeat per worker with the rates it measured.
Each sync is one statement: the worker's heartbeat, then the rate moved under its row lock (cut by a 429
answering a request sent under the current generation, grown by the time since anyone last moved it while
the workers use it: see ``RateControl.grow``), and the rate and the number of workers alive read back.
Workers silent for long are deleted on the way. Clocks are the database server's (``now()``), so that
workers' clocks need not agree.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._ratelimit import (
    CUT_PERIOD,
    PROBE_GROWTH,
    START_CUT,
    START_GROWTH,
    UTILIZED,
    WORKER_SILENT_INTERVALS,
    RateControl,
    RateReport,
    RateShare,
)

if TYPE_CHECKING:
    import asyncpg

__all__ = ["RATE_SCHEMA", "PgRateBoard"]

RATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS adcreative_rates (
    scope text PRIMARY KEY,
    rate double precision,
    ceiling double precision,
    starting boolean NOT NULL DEFAULT false,
    generation bigint NOT NULL DEFAULT 0,
    cut_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS adcreative_rate_workers (
    scope text NOT NULL,
    worker text NOT NULL,
    sent double precision NOT NULL DEFAULT 0,
    accepted double precision NOT NULL DEFAULT 0,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, worker)
);
"""

_ENSURE = "INSERT INTO adcreative_rates (scope) VALUES ($1) ON CONFLICT (scope) DO NOTHING"

# $1 scope, $2 worker, $3 sent, $4 accepted, $5 generation of a 429 (-1: none), $6 min rate, $7 decrease,
# $8 max rate, $9 utilized share, $10 increase, $11 seconds of silence before a worker no longer counts,
# $12 growth of the excess over the ceiling, $13 seconds between cuts,
# $14 growth while starting (after the first cut), $15 the first cut's factor
# whether the report's 429 cuts the rate: sent under the current generation, a period after the last cut
# (written on the row as the UPDATE finds it: a concurrent sync's cut is seen, never made twice)
_CUTS = (
    "(r.generation = $5::bigint"
    " AND (r.cut_at IS NULL OR r.cut_at <= now() - make_interval(secs => $13::float8)))"
)
# what a cut cuts from: the rate as used (an unpaced start: what the server accepted; see RateControl.cut)
_BASE = "CASE WHEN r.rate IS NULL THEN p.accepted ELSE least(r.rate, p.sent) END"
_SYNC = """
WITH beat AS (
    INSERT INTO adcreative_rate_workers (scope, worker, sent, accepted, seen_at)
    VALUES ($1, $2, $3::float8, $4::float8, now())
    ON CONFLICT (scope, worker) DO UPDATE
        SET sent = EXCLUDED.sent, accepted = EXCLUDED.accepted, seen_at = now()
), gone AS (
    DELETE FROM adcreative_rate_workers
    WHERE scope = $1 AND worker <> $2 AND seen_at < now() - make_interval(secs => $11::float8 * 10)
), peers AS (
    SELECT count(*)::int AS n,
           coalesce(sum(sent), 0)::float8 + $3::float8 AS sent,
           coalesce(sum(accepted), 0)::float8 + $4::float8 AS accepted
    FROM adcreative_rate_workers
    WHERE scope = $1 AND worker <> $2 AND seen_at > now() - make_interval(secs => $11::float8)
)
UPDATE adcreative_rates AS r SET
    rate = CASE
        WHEN {cut} THEN
            greatest(
                $6::float8,
                CASE WHEN r.rate IS NULL THEN $15::float8 ELSE $7::float8 END * greatest($6::float8, {base})
            )
        WHEN r.rate IS NULL THEN NULL
        WHEN p.sent < $9::float8 * r.rate THEN r.rate
        ELSE least($8::float8, r.rate + extract(epoch FROM now() - r.updated_at)::float8 * CASE
            WHEN r.starting THEN $14::float8 * r.rate
            ELSE $10::float8 * greatest(r.ceiling, $6::float8)
                 + $12::float8 * greatest(0, r.rate - greatest(r.ceiling, $6::float8))
        END)
    END,
    starting = CASE WHEN {cut} THEN r.rate IS NULL ELSE r.starting END,
    cut_at = CASE WHEN {cut} THEN now() ELSE r.cut_at END,
    ceiling = CASE
        WHEN {cut} THEN
            greatest($6::float8, {base})
        ELSE r.ceiling
    END,
    generation = r.generation + CASE WHEN {cut} THEN 1 ELSE 0 END,
    updated_at = now()
FROM peers AS p
WHERE r.scope = $1
RETURNING r.rate, r.generation, p.n + 1 AS workers
""".replace("{cut}", _CUTS).replace("{base}", _BASE)

_LEAVE = "DELETE FROM adcreative_rate_workers WHERE scope = $1 AND worker = $2"


class PgRateBoard:
    """An account's shared rate in a PostgreSQL database (a :class:`~adcreative_async._ratelimit.RateBoard`).

    Each call is tried once: a sync that fails leaves the worker pacing alone until the next one (the
    caller logs it); nothing here waits out a database restart as the ledger's own writes do.
    """

    def __init__(self, pool: asyncpg.Pool, scope: str) -> None:
        self._pool = pool
        self._scope = scope
        self._ensured = False

    def __repr__(self) -> str:
        return "PgRateBoard()"

    async def sync(self, report: RateReport, control: RateControl) -> RateShare:
        """See :meth:`RateBoard.sync <adcreative_async._ratelimit.RateBoard.sync>`."""
        async with self._pool.acquire() as conn:
            if not self._ensured:
                await conn.execute(_ENSURE, self._scope)
                self._ensured = True
            row = await conn.fetchrow(
                _SYNC,
                self._scope,
                report.worker,
                report.sent,
                report.accepted,
                -1 if report.throttled is None else report.throttled,
                control.min_rate,
                control.decrease,
                math.inf if control.max_rate is None else control.max_rate,
                UTILIZED,
                control.increase,
                control.sync_interval * WORKER_SILENT_INTERVALS,
                PROBE_GROWTH,
                CUT_PERIOD,
                START_GROWTH,
                START_CUT,
            )
        if row is None:  # the row was deleted by hand meanwhile
            self._ensured = False
            return RateShare(None, 0, 1)
        return RateShare(row["rate"], int(row["generation"]), int(row["workers"]))

    async def leave(self, worker: str) -> None:
        """See :meth:`RateBoard.leave <adcreative_async._ratelimit.RateBoard.leave>`."""
        async with self._pool.acquire() as conn:
            await conn.execute(_LEAVE, self._scope, worker)
