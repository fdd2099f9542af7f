"""The run ledger's write path alone: ``python -m benchmarks.ledger_writes [--quick] [--items N]``.

A bulk run's ledger calls, replayed without any HTTP for N items, in the order the bulk driver makes them:
per chunk of 256 inputs, a look-up and a registration; per 32 items, a claim that writes their intents;
an answer per item (written behind); a download per item, the renders ending out of order among the
about 600 items in flight. What it measures is the ledger's own cost (the process's CPU, the worker
thread's included, per item; KiB written to disk per item, from ``getrusage``), free of the noise of
HTTP and of the emulator: the scale benchmark's ledger overheads move by tens of percent between runs on
a shared machine; this one by a few.

Layouts, side by side (each in a fresh process, alternating, ``--rounds`` times; medians):

- ``sqlite``: a new SQLite ledger file (rows in registration order, see
  ``adcreative_async.ledger._sqlite.ROW_ORDER``);
- ``sqlite-key-order``: a file of an earlier version: its table made first as those versions made it
  (``WITHOUT ROWID``: rows in key order, and an index by user, which opening drops);
- ``postgres``: a PostgreSQL ledger (``--postgres DSN`` or ``ADCREATIVE_TEST_POSTGRES_DSN``; left out
  without one): the client's CPU only (the server's is not billed to it).

Prints a table and writes ``benchmarks/results/ledger_writes.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import machine, run_child, summary, write_results

#: Inputs looked up and registered together; items claimed together; items in flight (the driver's).
CHUNK, CLAIM, IN_FLIGHT = 256, 32, 600
LAYOUTS = ("sqlite", "sqlite-key-order", "postgres")
#: The items table of SQLite ledger files before the rows were kept in registration order.
KEY_ORDER_SCHEMA = """
CREATE TABLE items (
    run TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, label TEXT NOT NULL, feature TEXT NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, user_id TEXT, process_id TEXT,
    task_ids TEXT NOT NULL DEFAULT '[]', files TEXT NOT NULL DEFAULT '[]', error_code TEXT,
    error_message TEXT, owner TEXT, lease_until REAL, intent_at REAL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, epoch INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX items_by_user ON items (run, feature, user_id);
"""


def child(params: dict[str, Any]) -> dict[str, Any]:
    """One replay in this (fresh) process."""
    import sqlite3

    import anyio

    from adcreative_async.ledger import NewItem, PostgresLedger, RunLedger, SqliteLedger, derived_user_id

    n: int = params["items"]
    layout: str = params["layout"]

    async def replay(ledger: RunLedger) -> None:
        keys = [hashlib.sha256(f"input {i}".encode()).hexdigest() for i in range(n)]
        rnd = random.Random(1)
        live: list[tuple[str, int]] = []
        for start in range(0, n, CHUNK):
            chunk = keys[start : start + CHUNK]
            known = await ledger.records(chunk)
            await ledger.register(
                [
                    NewItem(k, start + i, f"photos/{start + i:07d}.png", "background_remover")
                    for i, k in enumerate(chunk)
                    if k not in known
                ]
            )
            for at in range(0, len(chunk), CLAIM):
                users = {k: derived_user_id(ledger.namespace, k, 0) for k in chunk[at : at + CLAIM]}
                claimed, _ = await ledger.claim_and_intend(
                    list(users), "worker", 30.0, {k: (0, u) for k, u in users.items()}
                )
                for record in claimed:
                    await ledger.submitted(
                        record.key,
                        str(uuid.uuid4()),
                        users[record.key],
                        [str(uuid.uuid4())],
                        epoch=record.epoch,
                    )
                    live.append((record.key, record.epoch))
                rnd.shuffle(live)  # renders end out of order
                while len(live) > IN_FLIGHT:
                    key, epoch = live.pop()
                    await ledger.downloaded(key, [f"out/{key[:16]}.png"], epoch=epoch)
        for key, epoch in live:
            await ledger.downloaded(key, [f"out/{key[:16]}.png"], epoch=epoch)

    async def main(tmp: str) -> dict[str, Any]:
        ledger: RunLedger
        if layout == "postgres":
            ledger = PostgresLedger(params["dsn"], run=f"ledger-writes-{uuid.uuid4().hex[:8]}")
        else:
            path = Path(tmp) / "run.sqlite"
            if layout == "sqlite-key-order":
                conn = sqlite3.connect(path)
                conn.executescript(KEY_ORDER_SCHEMA)
                conn.close()
            ledger = SqliteLedger(path)
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu, started = time.process_time(), time.monotonic()
        async with ledger:
            await replay(ledger)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "items": n,
            "cpu_seconds": time.process_time() - cpu,
            "wall_seconds": time.monotonic() - started,
            "written_bytes": (after.ru_oublock - before.ru_oublock) * 512,
        }

    with tempfile.TemporaryDirectory(prefix="adcreative-ledger-writes-") as tmp:
        return anyio.run(main, tmp)


def measure(items: int, layouts: Sequence[str], rounds: int, dsn: str | None) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {layout: [] for layout in layouts}
    for turn in range(rounds):
        for layout in [*layouts[turn % len(layouts) :], *layouts[: turn % len(layouts)]]:
            result = run_child(
                "benchmarks.ledger_writes", "run", {"items": items, "layout": layout, "dsn": dsn}
            )
            runs[layout].append(result)
            print(
                f"  {layout:17} {result['cpu_seconds'] / items * 1000:.3f} ms CPU/item, "
                f"{result['written_bytes'] / 1024 / items:.1f} KiB/item, {result['wall_seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return {"items": items, "rounds": rounds, "layouts": list(layouts), "runs": runs}


def report(data: dict[str, Any]) -> str:
    items = data["items"]
    lines = [
        f"Ledger write path, {items:,} items replayed ({data['rounds']} rounds, medians (min-max); "
        f"{data['machine']['cores']} cores)",
        "",
        f"{'layout':18} {'CPU ms/item':>22} {'KiB written/item':>22} {'wall s':>8}",
    ]
    for layout in data["layouts"]:
        runs = data["runs"][layout]
        cpu = summary([r["cpu_seconds"] / items * 1000 for r in runs])
        written = summary([r["written_bytes"] / 1024 / items for r in runs])
        wall = summary([r["wall_seconds"] for r in runs])
        lines.append(
            f"{layout:18} {cpu['median']:>8.3f} ({cpu['min']:.3f}-{cpu['max']:.3f}) "
            f"{written['median']:>8.1f} ({written['min']:.1f}-{written['max']:.1f}) {wall['median']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--child"]:
        print(json.dumps(child(json.loads(args_list[2]))))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ledger_writes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="1,000 items, one round: to keep it working")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, help="default: all (postgres with a DSN)")
    parser.add_argument("--postgres", help="PostgreSQL DSN (default: ADCREATIVE_TEST_POSTGRES_DSN)")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/ledger_writes[-quick].json)")
    args = parser.parse_args(args_list)
    dsn = args.postgres or os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
    layouts = list(args.layouts or LAYOUTS)
    if "postgres" in layouts and not dsn:
        layouts.remove("postgres")
        print("PostgreSQL left out: give --postgres DSN or set ADCREATIVE_TEST_POSTGRES_DSN", file=sys.stderr)
    items, rounds = (1000, 1) if args.quick else (args.items, args.rounds)
    data: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    data.update(measure(items, layouts, rounds, dsn))
    print(report(data))
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2, default=str))
    else:
        print(f"\nwrote {write_results('ledger_writes-quick' if args.quick else 'ledger_writes', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
