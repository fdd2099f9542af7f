"""Fencing of the run ledger (issue 20, points 1 and 11): every write of an item's state carries the
epoch of the claim it is made under and is refused once the item passed to another claim; a worker's
start call is stopped as it goes out once its lease (less the margin) ran out; a takeover waits from the
lapse; a stopping worker puts back the intents it never sent. Unit tests on each backend (PostgreSQL:
marked ``postgres``), then real worker processes, one of them paused (SIGSTOP) past its lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_ledger_crash import (
    POSTGRES_DSN,
    finish,
    renders_per_input,
    results_on_disk,
    wait_started,
    worker,
)

from adcreative_async.ledger import ItemState, MemoryLedger, NewItem, PostgresLedger, RunLedger, SqliteLedger
from adcreative_async.testing import sample_image
from benchmarks._hosts import emulator as emulator_subprocess

pytestmark = pytest.mark.anyio

MakeLedger = Callable[[], Awaitable[RunLedger]]


def items(n: int) -> list[NewItem]:
    return [NewItem(f"{i:064x}", i, f"in-{i}.png", "background_remover") for i in range(n)]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLedger]:
    opened: list[RunLedger] = []

    async def make() -> RunLedger:
        ledger: RunLedger
        if request.param == "memory":
            ledger = MemoryLedger()
        elif request.param == "sqlite":
            ledger = SqliteLedger(tmp_path / "run.sqlite")
        else:
            if not POSTGRES_DSN:
                pytest.skip("needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN")
            ledger = PostgresLedger(POSTGRES_DSN, run=f"fence-{uuid.uuid4().hex[:12]}")
        await ledger.open()
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        await ledger.close()


async def _lapse(ledger: RunLedger, seconds: float) -> None:
    await anyio.sleep(seconds)  # leases run on the ledger's clock (PostgreSQL: the server's)


async def _taken_over(ledger: RunLedger, key: str) -> tuple[int, int]:
    """``key`` claimed by w1 (short lease), lapsed, then claimed by w2: the two epochs."""
    [first] = await ledger.claim([key], "w1", 0.1)
    await _lapse(ledger, 0.2)
    [second] = await ledger.claim([key], "w2", 30)
    assert second.epoch > first.epoch
    return first.epoch, second.epoch


async def test_a_stale_owner_can_neither_intend_fail_requeue_nor_download(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger()
    await ledger.register(items(2))
    a, b = (i.key for i in items(2))
    stale, fresh = await _taken_over(ledger, a)
    assert await ledger.intent(a, "w2", "user-a", 30, epoch=fresh)  # the new owner's intent
    # the old owner, paused past its lease and resumed
    assert not await ledger.intent(a, "w1", "user-a", 30, epoch=stale)
    assert not await ledger.failed(a, "FileExistsError", "its name is taken", epoch=stale)
    assert not await ledger.requeue(a, epoch=stale)
    await ledger.tasks(a, ["t-stale"], epoch=stale)
    await ledger.downloaded(a, ["stale.png"], epoch=stale)
    record = (await ledger.records([a]))[a]
    assert (record.state, record.owner, record.user_id) == (ItemState.SUBMITTING, "w2", "user-a")
    assert (record.files, record.task_ids, record.error_code) == ((), (), None)
    # the new owner's writes go through
    await ledger.submitted(a, "p-new", "user-a", ["t1"], epoch=fresh)
    await ledger.tasks(a, ["t2"], epoch=fresh)
    await ledger.downloaded(a, ["a.png"], epoch=fresh)
    record = (await ledger.records([a]))[a]
    assert (record.state, record.process_id, record.files) == (ItemState.DOWNLOADED, "p-new", ("a.png",))
    assert record.task_ids == ("t1", "t2")
    # and the old owner's failure cannot turn the new owner's download into a failure
    assert not await ledger.failed(a, "FileExistsError", "its name is taken", epoch=stale)
    assert (await ledger.records([a]))[a].state is ItemState.DOWNLOADED
    # an item of the old owner that nobody took is still its own
    [held] = await ledger.claim([b], "w1", 30)
    assert await ledger.failed(b, "RenderFailedError", "no", epoch=held.epoch)


async def test_a_lapsed_claim_is_not_renewed(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger()
    await ledger.register(items(2))
    a, b = (i.key for i in items(2))
    await ledger.claim([a], "w1", 0.1)
    await ledger.claim([b], "w1", 30)
    await _lapse(ledger, 0.2)
    assert await ledger.renew("w1", 30) == {b}  # a lapsed: another worker may be taking it
    [taken] = await ledger.claim([a], "w2", 30)
    assert taken.lapsed_for is not None
    assert taken.lapsed_for >= 0.05


async def test_a_stale_answer_is_recorded_only_where_no_render_is_named(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger()
    await ledger.register(items(2))
    a, b = (i.key for i in items(2))
    # a: the new owner is reconciling (its intent, no answer): the paid render of the old owner's call
    # is recorded, and the claim stays the new owner's
    [old], _ = await ledger.claim_and_intend([a], "w1", 0.1, {a: (0, "user-a")})
    await _lapse(ledger, 0.2)
    [new] = await ledger.claim([a], "w2", 30)
    await ledger.submitted(a, "p-old", "user-a", ["t-old"], epoch=old.epoch)
    record = (await ledger.records([a]))[a]
    assert (record.state, record.process_id, record.owner) == (ItemState.SUBMITTED, "p-old", "w2")
    assert not await ledger.intent(a, "w2", "user-a", 30, epoch=new.epoch)  # its render is known now
    # b: the new owner has a render of its own: a stale answer never replaces it
    [old], _ = await ledger.claim_and_intend([b], "w1", 0.1, {b: (0, "user-b")})
    await _lapse(ledger, 0.2)
    [new] = await ledger.claim([b], "w2", 30)
    await ledger.submitted(b, "p-new", "user-b", ["t-new"], epoch=new.epoch)
    await ledger.submitted(b, "p-old", "user-b", ["t-old"], epoch=old.epoch)
    record = (await ledger.records([b]))[b]
    assert (record.state, record.process_id, record.task_ids) == (ItemState.SUBMITTED, "p-new", ("t-new",))


async def test_release_marks_the_moment_a_takeover_counts_from(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger()
    await ledger.register(items(1))
    [key] = [i.key for i in items(1)]
    await ledger.claim([key], "w1", 30)
    await ledger.release("w1")
    [taken] = await ledger.claim([key], "w2", 30)
    assert taken.lapsed_for is not None
    assert taken.lapsed_for < 5  # released just now, not lapsed 30 s from now nor never


async def test_an_older_sqlite_ledger_file_still_opens_and_is_fenced(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register(items(1))
    conn = sqlite3.connect(path)  # as an earlier version left it: no epoch column
    conn.execute("ALTER TABLE items DROP COLUMN epoch")
    conn.commit()
    conn.close()
    [key] = [i.key for i in items(1)]
    async with SqliteLedger(path) as ledger:
        [record] = await ledger.claim([key], "w1", 30)
        assert record.epoch == 1
        assert not await ledger.requeue(key, epoch=0)
        assert await ledger.intent(key, "w1", "u", 30, epoch=1)


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN")
async def test_an_older_postgres_ledger_table_still_opens_and_is_fenced() -> None:
    import asyncpg

    assert POSTGRES_DSN is not None
    schema = f"fence_{uuid.uuid4().hex[:8]}"  # tables of their own, as an earlier version left them
    dsn = POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"search_path={schema}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        async with PostgresLedger(dsn, run="old") as ledger:
            await ledger.register(items(1))
        await admin.execute(f"ALTER TABLE {schema}.adcreative_items DROP COLUMN epoch")
        [key] = [i.key for i in items(1)]
        async with PostgresLedger(dsn, run="old") as ledger:
            [record] = await ledger.claim([key], "w1", 30)
            assert record.epoch == 1
            assert not await ledger.requeue(key, epoch=0)
            assert await ledger.intent(key, "w1", "u", 30, epoch=1)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


async def test_the_lease_guard_refuses_once_the_lease_less_the_margin_has_run_out() -> None:
    from adcreative_async import AdCreativeClient, UploadAbortedError
    from adcreative_async._clock import ManualClock
    from adcreative_async.ledger import RenderRequest
    from adcreative_async.ledger._fencing import SEND_MARGIN, _Hold, _LeaseGuard
    from adcreative_async.ledger._run import LedgerDriver
    from adcreative_async.testing import Emulator

    clock = ManualClock()
    async with Emulator() as emulator, AdCreativeClient(**emulator.credentials, clock=clock) as client:
        driver: LedgerDriver[str] = LedgerDriver(
            client,
            MemoryLedger(),
            [],
            RenderRequest.remove_background,
            dest=None,
            name=None,
            limits=(1, 1, 1),
            timeout=None,
            low_resolution=False,
            on_update=None,
            lease=30.0,
        )
        driver._holds["k"] = _Hold(epoch=1, deadline=clock.monotonic() + 30.0, claimed_at=clock.monotonic())
        driver._unsent.add("k")
        guard = _LeaseGuard(driver, "k")
        guard.begin("image")
        await clock.advance(30.0 - SEND_MARGIN - 0.01)
        guard.chunk("image", b"x")  # still within the lease, less the margin
        await clock.advance(0.02)
        with pytest.raises(UploadAbortedError, match="ran out"):
            guard.chunk("image", b"x")
        with pytest.raises(UploadAbortedError):
            guard.end("image")
        assert guard.refused
        assert "k" in driver._unsent  # refused: never sent
        driver._holds.pop("k")
        with pytest.raises(UploadAbortedError):
            _LeaseGuard(driver, "k").begin("image")  # no claim at all


def test_a_worker_id_whose_pid_was_reused_is_dead() -> None:
    from adcreative_async.ledger import new_worker_id
    from adcreative_async.ledger._base import dead_here

    host, namespace, _, started, tail = new_worker_id().split(":")
    boot, _, _ = started.partition(".")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with open(f"/proc/{sleeper.pid}/stat", encoding="ascii") as file:
            real = file.read().rsplit(")", 1)[1].split()[19]
        alive = f"{host}:{namespace}:{sleeper.pid}:{boot}.{real}:{tail}"
        reused = f"{host}:{namespace}:{sleeper.pid}:{boot}.{int(real) - 1}:{tail}"
        assert not dead_here(alive)
        assert dead_here(reused)  # the pid is another process's now (a restarted container)
        assert not dead_here(f"{host}:{namespace}:{sleeper.pid}:{tail}")  # an older id: by its pid
    finally:
        sleeper.kill()
        sleeper.wait()


# ------------------------------------------------------------------------ real workers, one paused

#: Inputs of the paused-worker runs, their size (bytes: a padding chunk makes them this big), the lease
#: of their workers (seconds) and the upload rate of each connection (bytes per second, through a
#: throttling proxy). Photos as large as these do not fit in the kernel's socket buffer (about 3 MB
#: here): a worker paused mid-upload still holds the rest of its requests, to send when it resumes.
PAUSED_ITEMS = 12
PAUSED_INPUT_SIZE = 8_000_000
#: The first inputs are small: they finish first, and show that the server's listings keep finished
#: processes (what lets a takeover conclude that a start call made nothing).
SMALL_INPUTS = 4
PAUSED_LEASE = 2.0
UPLOAD_RATE = 2_000_000


def padded_inputs(folder: Path, n: int) -> dict[str, str]:
    """``n`` distinct PNGs, :data:`SMALL_INPUTS` small ones then ones of :data:`PAUSED_INPUT_SIZE` bytes
    (an ancillary chunk of random bytes that decoders skip); stem -> SHA-256."""
    folder.mkdir(parents=True)
    digests = {}
    for i in range(n):
        small = sample_image("png", (4, 4), (i % 256, (i // 256) % 256, 7))
        size = 4096 if i < SMALL_INPUTS else PAUSED_INPUT_SIZE
        body = os.urandom(size - len(small) - 12)
        chunk = struct.pack(">I", len(body)) + b"paDd" + body
        chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
        data = small[:-12] + chunk + small[-12:]  # before IEND
        path = folder / f"in-{i:05d}.png"
        path.write_bytes(data)
        digests[path.stem] = hashlib.sha256(data).hexdigest()
    return digests


class ThrottlingProxy:
    """A TCP proxy (in a thread of its own) that forwards what clients send at :data:`UPLOAD_RATE` per
    connection, through small socket buffers, and answers at full speed: uploads take time, and what a
    paused client has not written yet stays in the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.forwarded = 0  # bytes sent by clients, forwarded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        server = await asyncio.start_server(self._serve, sock=listener)
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in self._writers:
            writer.close()
        await server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        self._writers.append(client_out)
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_out.close()
            return
        self._writers.append(server_out)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                    self.forwarded += len(data) if rate else 0
                    if rate:
                        await asyncio.sleep(len(data) / rate)
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_in, server_out, UPLOAD_RATE), pipe(server_in, client_out, 0))


@pytest.fixture
def slow_uploads() -> Iterator[dict[str, Any]]:
    """The emulator in its own process (start calls answered 0.1-0.3 s after their render is made),
    reached through a :class:`ThrottlingProxy`."""
    flags = [
        "--task-duration", "0.05", "0.3", "--start-latency", "0.1", "0.3", "--stamp-inputs", "--seed", "20",
    ]  # fmt: skip
    with emulator_subprocess(*flags) as info:
        emulator_url = info["base_url"]
        port = int(emulator_url.rsplit(":", 1)[1].split("/", 1)[0])
        with ThrottlingProxy(port) as proxy:
            yield {
                **info,
                "base_url": emulator_url.replace(f":{port}", f":{proxy.port}"),
                "direct": emulator_url,
                "proxy": proxy,
            }


def _two_workers_one_paused(info: dict[str, Any], tmp_path: Path, ledger: str) -> None:
    digests = padded_inputs(tmp_path / "in", PAUSED_ITEMS)
    out = tmp_path / "out"
    proxy: ThrottlingProxy = info["proxy"]
    paused = worker(info, tmp_path / "in", out, ledger, PAUSED_LEASE, "worker-paused")
    wait_started(paused)
    # it claims every item; a small input is done, the large ones are being uploaded
    while results_on_disk(out) < 1 and paused.poll() is None:
        time.sleep(0.002)
    paused.send_signal(signal.SIGSTOP)  # mid-upload, with the rest of its requests still to send
    try:
        assert proxy.forwarded < (PAUSED_ITEMS - SMALL_INPUTS) * PAUSED_INPUT_SIZE // 2
        other = worker(info, tmp_path / "in", out, ledger, PAUSED_LEASE, "worker-other")
        wait_started(other)
        # past its lease: the other worker takes its items over and finishes every one
        deadline = time.monotonic() + 60
        while other.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        paused.send_signal(signal.SIGCONT)
    summaries = [finish(other), finish(paused)]
    counts = renders_per_input({**info, "base_url": info["direct"]})
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates == 0, f"{duplicates} input(s) rendered twice"
    assert set(counts) == set(digests.values()), "an input was never rendered"
    for summary in summaries:
        assert summary["errors"] == []
        assert summary["ok"] == PAUSED_ITEMS
    produced = {p.stem for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")}
    assert produced == set(digests)


def test_a_worker_paused_past_its_lease_sends_nothing_for_items_taken_over_sqlite(
    slow_uploads: dict[str, Any], tmp_path: Path
) -> None:
    ledger = str(tmp_path / "out" / ".adcreative-run.sqlite")
    _two_workers_one_paused(slow_uploads, tmp_path, ledger)

    async def downloaded() -> int:
        async with SqliteLedger(ledger) as opened:
            return (await opened.counts())[ItemState.DOWNLOADED]

    assert anyio.run(downloaded) == PAUSED_ITEMS


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN")
def test_a_worker_paused_past_its_lease_sends_nothing_for_items_taken_over_postgres(
    slow_uploads: dict[str, Any], tmp_path: Path
) -> None:
    assert POSTGRES_DSN is not None
    run = f"paused-{uuid.uuid4().hex[:8]}"
    _two_workers_one_paused(slow_uploads, tmp_path, f"{POSTGRES_DSN}#{run}")

    async def downloaded() -> int:
        async with PostgresLedger(POSTGRES_DSN or "", run=run) as opened:
            return (await opened.counts())[ItemState.DOWNLOADED]

    assert anyio.run(downloaded) == PAUSED_ITEMS


# ------------------------------------------------------------------------------- a stopping worker


async def test_a_stopped_run_leaves_no_intent_of_a_call_it_never_sent(tmp_path: Path) -> None:
    from helpers import eventually
    from test_ledger_runs import BG_START, client_of, make_inputs

    from adcreative_async.ledger import RenderRequest
    from adcreative_async.testing import Emulator

    paths = make_inputs(tmp_path / "in", 100)
    ledger = SqliteLedger(tmp_path / "run.sqlite")
    async with Emulator(task_duration=0.05, seed=4, start_latency=0.3) as emulator:
        async with client_of(emulator) as client, anyio.create_task_group() as group:

            async def run() -> None:
                await client.process_many(
                    paths, request=RenderRequest.remove_background, ledger=ledger, upload_concurrency=1
                )

            group.start_soon(run)
            # under way: claimed, intents written, calls sent
            await eventually(lambda: emulator.request_count(BG_START) >= 2)
            group.cancel_scope.cancel()  # Ctrl-C
        sent = emulator.request_count(BG_START)
    async with SqliteLedger(tmp_path / "run.sqlite") as reopened:
        counts = await reopened.counts()
        records = (await reopened.records()).values()
    started = counts[ItemState.SUBMITTING] + counts[ItemState.SUBMITTED]
    # what the CLI reports as "submitted but not downloaded": only calls that were sent
    assert 0 < started <= sent
    assert counts[ItemState.PENDING] >= 100 - sent - counts[ItemState.DOWNLOADED]
    assert all(r.owner is None for r in records)  # released


class _LockProbe(SqliteLedger):
    """Notes, as an intent's commit is synced to disk, whether another process could take the write lock
    meanwhile (a second connection, as another worker's)."""

    lock_free_during_sync: list[bool]

    def _sync_wal(self) -> None:
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            self.lock_free_during_sync.append(True)
        except sqlite3.OperationalError:
            self.lock_free_during_sync.append(False)
        finally:
            other.close()
        super()._sync_wal()


async def test_an_intent_is_synced_to_disk_outside_the_sqlite_write_lock(tmp_path: Path) -> None:
    # A worker stopped (SIGSTOP, a VM pause) while it holds the write lock stalls every other worker on
    # the file: the sync of an intent's commit, most of the time a worker held it, no longer holds it.
    ledger = _LockProbe(tmp_path / "run.sqlite")
    ledger.lock_free_during_sync = []
    async with ledger:
        await ledger.register(items(3))
        keys = [i.key for i in items(3)]
        _, intended = await ledger.claim_and_intend(keys[:2], "w", 30, dict.fromkeys(keys[:2], (0, "u")))
        [record] = await ledger.claim(keys[2:], "w", 30)
        assert await ledger.intent(keys[2], "w", "u", 30, epoch=record.epoch)
    assert intended == set(keys[:2])
    assert ledger.lock_free_during_sync == [True, True]  # the claim's intents, then the intent
    async with SqliteLedger(tmp_path / "run.sqlite") as reopened:  # committed, and durable
        assert {r.state for r in (await reopened.records()).values()} == {ItemState.SUBMITTING}
