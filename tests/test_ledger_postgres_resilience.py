"""The PostgreSQL run ledger through what an operator's database does: a server restart in the middle of a
bulk run, a server gone for good, and a worker paused inside a transaction (its row locks held).

The restart tests need a server of their own (the shared one is used by other tests meanwhile): they start
one with ``.ci/postgres start`` in a folder under ``ADCREATIVE_TEST_POSTGRES_RESTARTABLE_DIR`` (``.ci/run``
sets it; locally any writable folder) and restart or stop it with ``pg_ctl``; without that variable they are
skipped. The paused-worker tests need ``ADCREATIVE_TEST_POSTGRES_DSN`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from helpers import FAST_POLLS, eventually

from adcreative_async import AdCreativeClient, RetryPolicy, RunAbortedError
from adcreative_async.ledger import (
    ItemRecord,
    ItemState,
    LedgerError,
    NewItem,
    PostgresLedger,
    RenderRequest,
    _postgres,
    request_keys,
)
from adcreative_async.testing import Emulator, input_stamp, sample_image

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = ROOT / ".ci" / "postgres"
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
RESTARTABLE_DIR = os.environ.get("ADCREATIVE_TEST_POSTGRES_RESTARTABLE_DIR")
R = TypeVar("R")
BG_START = "Image/BackgroundRemoving/AdCreative"
QUICK_RECONCILE = RetryPolicy(reconcile_grace=0.05, reconcile_interval=0.01)

needs_restartable = pytest.mark.skipif(
    not RESTARTABLE_DIR or not POSTGRES.exists(),
    reason="needs a PostgreSQL server of its own to restart: set ADCREATIVE_TEST_POSTGRES_RESTARTABLE_DIR "
    "to a folder where .ci/postgres may start one (.ci/run sets it)",
)
needs_postgres = pytest.mark.skipif(
    not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
)


class PrivateServer:
    """A PostgreSQL server of these tests alone, started, restarted and stopped with ``.ci/postgres``."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.dsn = ""
        self.halted = False

    async def command(self, verb: str) -> str:
        done = await anyio.run_process([str(POSTGRES), verb, str(self.state)], check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    async def start(self) -> None:
        self.dsn = await self.command("start")
        self.halted = False

    async def restart(self) -> None:
        await self.command("restart")

    async def halt(self) -> None:
        self.halted = True
        await self.command("halt")


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    assert RESTARTABLE_DIR is not None
    Path(RESTARTABLE_DIR).mkdir(parents=True, exist_ok=True)
    server = PrivateServer(Path(tempfile.mkdtemp(prefix="resilience-", dir=RESTARTABLE_DIR)))
    anyio.run(server.start)
    try:
        yield server
    finally:
        anyio.run(server.command, "stop")
        shutil.rmtree(server.state, ignore_errors=True)


@pytest.fixture
async def server(private_server: PrivateServer) -> AsyncIterator[PrivateServer]:
    """The private server, running (a test that stopped it has it started again after)."""
    yield private_server
    if private_server.halted:
        await private_server.start()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # start calls answered 50 to 200 ms after the render exists: several are in flight at any moment
    async with Emulator(task_duration=0.02, start_latency=(0.05, 0.2), seed=5, stamp_inputs=True) as emu:
        yield emu


def client_of(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(
        **emulator.credentials, trust_env=False, poll_policy=FAST_POLLS, retry=QUICK_RECONCILE
    )


def make_inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo-{i:03d}.png"
        path.write_bytes(sample_image("png", (8, 8), (i % 256, i // 256, 41)))
        paths.append(path)
    return paths


def run_name() -> str:
    return f"resilience-{uuid.uuid4().hex[:12]}"


def assert_rendered_once_and_downloaded(emulator: Emulator, paths: list[Path], outcomes: list[Any]) -> None:
    assert [o.error for o in outcomes if not o.ok] == []
    assert emulator.request_count(BG_START) == len(paths)  # no input rendered twice
    per_input = emulator.processes_per_input()
    assert len(per_input) == len(paths)
    assert set(per_input.values()) == {1}
    for outcome, path in zip(outcomes, paths, strict=True):  # each input's own result, on disk
        [file] = outcome.files
        assert input_stamp(file.read_bytes()) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------ server restarts


@needs_restartable
async def test_a_bulk_run_survives_server_restarts_rendering_every_input_once(
    server: PrivateServer, emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = make_inputs(tmp_path / "in", 200)
    out = tmp_path / "out"
    run = run_name()
    outcomes: list[Any] = []

    def retried() -> bool:
        return any("connection lost" in r.getMessage() for r in caplog.records)

    async with client_of(emulator) as client, PostgresLedger(server.dsn, run=run) as ledger:

        async def bulk() -> None:
            outcomes.extend(
                await client.process_many(
                    paths,
                    request=RenderRequest.remove_background,
                    dest=out,
                    ledger=ledger,
                    name="{stem}{suffix}",
                )
            )

        with anyio.fail_after(120):  # a hang guard, not a timing assertion
            async with anyio.create_task_group() as group:
                group.start_soon(bulk)
                # mid-run: start calls answered and in flight, intents and answers being written
                await eventually(lambda: emulator.request_count(BG_START) >= 40, seconds=60)
                await server.restart()  # pg_ctl restart -m fast: every session is ended
                await eventually(lambda: emulator.request_count(BG_START) >= 100, seconds=60)
                # stopped until a ledger statement has met the stopped server, then started again
                started_before = emulator.request_count(BG_START)
                await server.halt()
                await eventually(retried, seconds=60)
                await server.start()
        assert started_before < len(paths)  # the outage came with work left
        counts = await ledger.counts()
    assert_rendered_once_and_downloaded(emulator, paths, outcomes)
    assert counts[ItemState.DOWNLOADED] == len(paths)


@needs_restartable
async def test_a_server_gone_for_good_ends_the_run_with_one_ledger_error(
    server: PrivateServer, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres, "POSTGRES_RETRY_SECONDS", 1.0)
    paths = make_inputs(tmp_path / "in", 150)
    run = run_name()
    async with client_of(emulator) as client, PostgresLedger(server.dsn, run=run) as ledger:
        with anyio.fail_after(60):  # a hang guard, not a timing assertion

            async def halt_mid_run() -> None:
                await eventually(lambda: emulator.request_count(BG_START) >= 20, seconds=60)
                await server.halt()

            async with anyio.create_task_group() as group:
                group.start_soon(halt_mid_run)
                with pytest.raises(RunAbortedError) as caught:  # a run-level error: the run stops
                    await client.process_many(
                        paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=ledger
                    )
    error = caught.value.cause  # one LedgerError, not an ExceptionGroup nor the driver's
    assert isinstance(error, LedgerError)
    assert "could not be reached for 1 s" in str(error)
    assert not isinstance(error.__cause__, LedgerError)
    assert "asyncpg" not in type(error).__module__


async def across_an_outage(
    server: PrivateServer, caplog: pytest.LogCaptureFixture, operation: Callable[[], Awaitable[R]]
) -> R:
    """``operation``, started while the server is stopped; the server is started again once the operation
    has met the stopped server (tried, failed, and waiting to try again)."""
    caplog.clear()
    result: list[R] = []

    async def run() -> None:
        result.append(await operation())

    await server.halt()
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await eventually(lambda: any("connection lost" in r.getMessage() for r in caplog.records), 60)
            await server.start()
    return result[0]


@needs_restartable
async def test_every_kind_of_ledger_operation_waits_out_a_stopped_server(
    server: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with PostgresLedger(server.dsn, run=run_name()) as ledger:
        items = [NewItem(f"k{i}", i, f"in-{i}", "background_remover") for i in range(3)]
        await across_an_outage(server, caplog, lambda: ledger.register(items))
        records = await across_an_outage(server, caplog, ledger.records)
        assert list(records) == ["k0", "k1", "k2"]
        claimed, intended = await across_an_outage(
            server, caplog, lambda: ledger.claim_and_intend(["k0", "k1"], "me", 30.0, {"k0": (0, "user-0")})
        )
        assert ([r.key for r in claimed], intended) == (["k0", "k1"], {"k0"})
        assert await across_an_outage(server, caplog, lambda: ledger.intent("k1", "me", "user-1", 30.0))
        await ledger.downloaded("k0", ["k0.png"])  # written behind
        await across_an_outage(server, caplog, lambda: ledger.release("me"))  # flushed beside it
        records = await ledger.records()
    assert records["k0"].state is ItemState.DOWNLOADED
    assert (records["k1"].state, records["k1"].user_id) == (ItemState.SUBMITTING, "user-1")
    assert records["k1"].owner is None


@needs_restartable
async def test_a_ledger_operation_on_a_stopped_server_raises_one_ledger_error(
    server: PrivateServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_postgres, "POSTGRES_RETRY_SECONDS", 0.5)
    async with PostgresLedger(server.dsn, run=run_name()) as ledger:
        await ledger.register([NewItem("k0", 0, "in-0", "background_remover")])
        await ledger.claim(["k0"], "me", 30.0)
        await ledger.downloaded("k0", ["k0.png"])  # written behind: kept through failed flushes
        await server.halt()
        with pytest.raises(LedgerError, match=r"could not be reached for 0\.5 s") as caught:
            await ledger.counts()
        assert "asyncpg" not in type(caught.value).__module__
        # given up on: the next operations try once each, not for the whole bound again
        caplog.clear()
        with pytest.raises(LedgerError, match="could not be reached"):
            await ledger.intent("k0", "me", "user-0", 30.0)
        with pytest.raises(LedgerError, match="could not be reached"):
            await ledger.release("me")
        assert not [r for r in caplog.records if "trying again" in r.getMessage()]
        await server.start()
        await ledger.release("me")
        assert (await ledger.records())["k0"].state is ItemState.DOWNLOADED


async def test_a_ledger_error_is_chained_to_its_cause_unless_the_cause_shows_the_password() -> None:
    closed = "postgresql://worker:{password}@127.0.0.1:1/ledger"  # port 1: refused at once
    with pytest.raises(LedgerError) as plain:
        await PostgresLedger(closed.format(password="s3cret-pw")).open()
    assert isinstance(plain.value.__cause__, ConnectionRefusedError)
    assert "s3cret-pw" not in str(plain.value)
    # a password that the driver's message happens to contain ("Connect call failed"): not shown
    with pytest.raises(LedgerError) as leaky:
        await PostgresLedger(closed.format(password="Connect")).open()
    assert "Connect" not in str(leaky.value)
    assert "*** call failed" in str(leaky.value)
    assert leaky.value.__cause__ is None
    assert leaky.value.__suppress_context__


# ------------------------------------------------------------------------ writes whose answer was lost


class AnswersLostAfterCommit(PostgresLedger):
    """A PostgreSQL ledger whose every second statement but the claims that write intents, and the second of
    those claims, commits and then loses its answer, as when the connection drops after the server committed
    (the worker cannot know whether it did). (Were every claim's answer lost, every item would await proof
    that nothing was made: unknown, none rendered, which a run with no render to look at cannot give.)"""

    def __init__(self, dsn: str, *, run: str) -> None:
        super().__init__(dsn, run=run)
        self.statements = 0
        self.lost = 0
        self.claims = 0
        self.intents_found_written = 0  # intents a re-sent claim found written by its lost first try
        self._lose_next = False
        self._claiming = False

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        if intents:
            self.claims += 1
            self._lose_next = self.claims == 2
        self._claiming = bool(intents)
        try:
            claimed, fresh = await super().claim_and_intend(keys, owner, lease, intents)
        finally:
            self._claiming = False
        self.intents_found_written += len(set(intents) - fresh)
        return claimed, fresh

    async def _retrying(self, statement: Callable[[], Awaitable[R]], **options: Any) -> R:
        import asyncpg

        self.statements += 1
        lose = self._lose_next if self._claiming else self.statements % 2 == 0
        self._lose_next = False

        async def committed_then_lost() -> R:
            nonlocal lose
            result = await statement()
            if lose:
                lose = False
                self.lost += 1
                raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
            return result

        return await super()._retrying(committed_then_lost, **options)


@needs_postgres
async def test_writes_sent_again_after_a_lost_commit_render_every_input_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    assert POSTGRES_DSN is not None
    paths = make_inputs(tmp_path / "in", 120)
    ledger = AnswersLostAfterCommit(POSTGRES_DSN, run=run_name())
    async with client_of(emulator) as client, ledger:
        with anyio.fail_after(120):  # a hang guard, not a timing assertion
            outcomes = await client.process_many(
                paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=ledger
            )
        counts = await ledger.counts()
    assert ledger.lost >= 5  # intents, answers and downloads among them
    assert ledger.intents_found_written > 0  # reconciled, not sent blind, and not sent twice
    assert_rendered_once_and_downloaded(emulator, paths, outcomes)
    assert counts[ItemState.DOWNLOADED] == len(paths)


# ------------------------------------------------------------------------------------- paused workers


@pytest.fixture
def short_session_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server ends a ledger session idle in a transaction after 0.5 s; lock waits last 0.1 s."""
    monkeypatch.setattr(_postgres, "IDLE_IN_TRANSACTION_SECONDS", 0.5)
    monkeypatch.setattr(_postgres, "LOCK_TIMEOUT_SECONDS", 0.1)


@contextlib.asynccontextmanager
async def frozen_transaction(ledger: PostgresLedger, keys: list[str]) -> AsyncIterator[int]:
    """A connection of ``ledger``'s worker that began a transaction and locked the rows of ``keys``, then
    stopped (as a worker paused by SIGSTOP between a statement and its COMMIT); its server process id.
    When the server ends the session, asyncpg gives the connection's place back to the pool itself."""
    import asyncpg

    pool: Any = ledger._pool
    conn = await pool.acquire()
    try:
        await conn.execute("BEGIN")
        await conn.execute(
            "SELECT key FROM adcreative_items WHERE run = $1 AND key = ANY($2::text[]) FOR UPDATE",
            ledger.run,
            keys,
        )
        yield conn.get_server_pid()
    finally:
        with contextlib.suppress(asyncpg.InterfaceError):  # already ended and given back
            conn.terminate()


async def session_alive(pid: int) -> bool:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await conn.close()


@needs_postgres
@pytest.mark.usefixtures("short_session_timeouts")
async def test_a_worker_paused_in_a_transaction_does_not_hold_a_bulk_run_hostage(
    emulator: Emulator, tmp_path: Path
) -> None:
    assert POSTGRES_DSN is not None
    paths = make_inputs(tmp_path / "in", 20)
    run = run_name()
    paused = PostgresLedger(POSTGRES_DSN, run=run)
    async with client_of(emulator) as client, paused:
        requests = [RenderRequest.remove_background(p) for p in paths]
        keys = [str(k) for k in await request_keys(requests, paused)]
        await paused.register(
            [NewItem(k, i, r.label, r.feature) for i, (k, r) in enumerate(zip(keys, requests, strict=True))]
        )
        async with frozen_transaction(paused, keys) as frozen:
            with anyio.fail_after(60):  # a hang guard: without the server's timeout, this run never ends
                outcomes = await client.process_many(
                    paths,
                    request=RenderRequest.remove_background,
                    dest=tmp_path / "out",
                    ledger=f"{POSTGRES_DSN}#{run}",  # another worker of the same run
                )
            assert_rendered_once_and_downloaded(emulator, paths, outcomes)
            assert not await session_alive(frozen)  # the server ended the paused worker's session
        # the paused worker resumes and carries on, on a new connection
        assert (await paused.counts())[ItemState.DOWNLOADED] == len(paths)


@needs_postgres
@pytest.mark.usefixtures("short_session_timeouts")
async def test_a_write_waiting_on_a_paused_workers_row_lock_goes_through(tmp_path: Path) -> None:
    assert POSTGRES_DSN is not None
    run = run_name()
    paused, other = PostgresLedger(POSTGRES_DSN, run=run), PostgresLedger(POSTGRES_DSN, run=run)
    async with paused, other:
        await other.register([NewItem("k0", 0, "in-0", "background_remover")])
        async with frozen_transaction(paused, ["k0"]) as frozen:
            with anyio.fail_after(
                60
            ):  # a hang guard: without the server's timeouts, this write waits forever
                await other.failed("k0", "RenderFailedError", "the render failed")
            assert (await other.records())["k0"].state is ItemState.FAILED
            assert not await session_alive(frozen)
        assert (await paused.records())["k0"].state is ItemState.FAILED  # the resumed worker carries on
