"""The run ledger's backends, one suite over memory, SQLite and PostgreSQL; and the items' keys.

The PostgreSQL cases need a server: ``.ci/run`` starts a private one and sets
``ADCREATIVE_TEST_POSTGRES_DSN``; without it they are skipped.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import JPEG, PNG, creative_inputs

from adcreative_async import InvalidRequestError, RenderKind
from adcreative_async.ledger import (
    ItemState,
    LedgerError,
    MemoryLedger,
    NewItem,
    PostgresLedger,
    RenderRequest,
    RunLedger,
    SqliteLedger,
    derived_user_id,
    open_ledger,
    request_keys,
)

POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
)
pytestmark = pytest.mark.anyio
MakeLedger = Callable[[], Awaitable[RunLedger]]


class FakeTime:
    """Wall-clock seconds that only move when told (leases in the memory and SQLite backends)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
async def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLedger]:
    """A factory of opened ledgers of one backend sharing one storage (a run name unique per test)."""
    run = f"test-{uuid.uuid4().hex[:12]}"
    opened: list[RunLedger] = []
    clock = FakeTime()
    memory = MemoryLedger(run, clock=clock)

    async def make() -> RunLedger:
        ledger: RunLedger
        if request.param == "memory":
            ledger = memory
        elif request.param == "sqlite":
            ledger = SqliteLedger(tmp_path / "run.sqlite", run=run, clock=clock)
        else:
            assert POSTGRES_DSN is not None
            ledger = PostgresLedger(POSTGRES_DSN, run=run)
        await ledger.open()
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        await ledger.close()


def items(n: int, feature: str = "background_remover") -> list[NewItem]:
    return [NewItem(f"{i:064x}", i, f"in/{i}.png", feature) for i in range(n)]


@pytest.mark.parametrize("implementation", ["backend's", "default"])
async def test_a_claim_writes_the_intents_of_the_items_pending_at_the_given_attempt(
    make_ledger: MakeLedger, implementation: str
) -> None:
    ledger: RunLedger = await make_ledger()
    claim_and_intend = (
        ledger.claim_and_intend
        if implementation == "backend's"
        else functools.partial(RunLedger.claim_and_intend, ledger)  # what a custom backend inherits
    )
    await ledger.register(items(5))
    k = [i.key for i in items(5)]
    await ledger.claim(k[3:4], "other", 30)  # held by another worker
    await ledger.claim(k[4:5], "w", 30)
    assert await ledger.intent(k[4], "w", "crashed-call", 30)  # an intent left by a crash: reconciled
    await ledger.release("w")
    intents = {k[0]: (0, "u0"), k[1]: (0, "u1"), k[2]: (1, "u2"), k[3]: (0, "u3"), k[4]: (0, "u4")}
    claimed, intended = await claim_and_intend(k, "w", 30, intents)
    assert intended == {k[0], k[1]}  # k[2]: not at attempt 1; k[3]: not claimed; k[4]: not pending
    by_key = {r.key: r for r in claimed}
    assert set(by_key) == {k[0], k[1], k[2], k[4]}
    assert all(r.owner == "w" for r in claimed)
    assert (by_key[k[0]].state, by_key[k[0]].user_id) == (ItemState.SUBMITTING, "u0")
    assert (by_key[k[2]].state, by_key[k[2]].user_id) == (ItemState.PENDING, None)
    assert (by_key[k[4]].state, by_key[k[4]].user_id) == (ItemState.SUBMITTING, "crashed-call")
    stored = await ledger.records(k)
    assert [stored[key].state for key in k] == [ItemState.SUBMITTING, ItemState.SUBMITTING] + [
        ItemState.PENDING
    ] * 2 + [ItemState.SUBMITTING]
    assert stored[k[1]].user_id == "u1"
    assert stored[k[1]].intent_at is not None
    assert stored[k[3]].owner == "other"


async def test_register_is_idempotent_and_keeps_existing_state(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(3))
    [first] = await ledger.claim([items(1)[0].key], "w1", 30)
    assert await ledger.intent(first.key, "w1", "user-1", 30)
    await ledger.register(items(5))
    records = await ledger.records()
    assert len(records) == 5
    assert records[first.key].state is ItemState.SUBMITTING
    assert records[first.key].user_id == "user-1"
    assert [r.seq for r in records.values()] == [0, 1, 2, 3, 4]
    assert (await ledger.counts())[ItemState.PENDING] == 4


async def test_an_item_goes_through_its_whole_life(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(1))
    key = items(1)[0].key
    assert [r.key for r in await ledger.claim([key], "w1", 30)] == [key]
    assert await ledger.intent(key, "w1", "u", 30)
    assert (await ledger.records([key]))[key].intent_at is not None
    await ledger.submitted(key, "p-1", "u", ["t1"])
    await ledger.tasks(key, ["t1", "t2"])
    record = (await ledger.records([key]))[key]
    assert (record.state, record.process_id, record.task_ids) == (ItemState.SUBMITTED, "p-1", ("t1", "t2"))
    assert await ledger.process_ids("background_remover", "U") == {"p-1"}
    assert await ledger.process_ids("creatives", "u") == set()
    await ledger.downloaded(key, ["out/0.png"])
    record = (await ledger.records([key]))[key]
    assert (record.state, record.files, record.owner) == (ItemState.DOWNLOADED, ("out/0.png",), None)
    assert record.final
    assert await ledger.claim([key], "w1", 30) == []  # final items are never claimed again


async def test_claims_exclude_live_claims_of_others_and_take_over_lapsed_ones(
    make_ledger: MakeLedger,
) -> None:
    first: RunLedger = await make_ledger()
    second: RunLedger = await make_ledger()
    await first.register(items(4))
    keys = [i.key for i in items(4)]
    got = await first.claim(keys[:2], "w1", 30)
    assert {r.owner for r in got} == {"w1"}
    other = await second.claim(keys, "w2", 0.2)
    assert [r.key for r in other] == keys[2:]  # w1's live claims are skipped
    assert [r.key for r in await first.claim(keys, "w1", 30)] == keys[:2]  # own claims again
    # w2 dies: its lease lapses and w1 takes its items over
    await _lapse(second, 0.3)
    assert sorted(r.key for r in await first.claim(keys, "w1", 30)) == keys


async def _lapse(ledger: RunLedger, seconds: float) -> None:
    if isinstance(ledger, (MemoryLedger, SqliteLedger)) and isinstance(ledger._clock, FakeTime):
        ledger._clock.now += seconds
        return
    import anyio

    await anyio.sleep(seconds)  # PostgreSQL leases run on the server's clock


async def test_intent_is_fenced_by_the_claim(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(2))
    a, b = (i.key for i in items(2))
    assert not await ledger.intent(a, "w1", "u", 30)  # never claimed
    await ledger.claim([a], "w1", 0.1)
    assert not await ledger.intent(a, "w2", "u", 30)  # another's claim
    await _lapse(ledger, 0.2)
    assert not await ledger.intent(a, "w1", "u", 30)  # own claim, but lapsed: someone may have it now
    await ledger.claim([b], "w1", 30)
    await ledger.release("w1")
    assert not await ledger.intent(b, "w1", "u", 30)  # released
    assert (await ledger.records([a, b]))[a].state is ItemState.PENDING


async def test_renew_extends_only_the_owners_unfinished_claims(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(3))
    a, b, c = (i.key for i in items(3))
    await ledger.claim([a, b], "w1", 0.2)
    await ledger.claim([c], "w2", 30)
    await ledger.downloaded(b, [])
    assert await ledger.renew("w1", 30) == {a}
    await _lapse(ledger, 0.3)
    assert await ledger.claim([a, b, c], "w3", 30) == []  # a renewed, b final, c w2's


async def test_failed_unknown_requeue_and_retry_failed(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(3))
    a, b, c = (i.key for i in items(3))
    await ledger.claim([a, b, c], "w1", 30)
    await ledger.failed(a, "RenderFailedError", "render x failed")
    await ledger.failed(b, "RenderMayExistError", "may exist", state=ItemState.UNKNOWN)
    assert await ledger.intent(c, "w1", "u", 30)
    await ledger.requeue(c)
    records = await ledger.records()
    assert (records[a].state, records[a].error_code) == (ItemState.FAILED, "RenderFailedError")
    assert records[b].state is ItemState.UNKNOWN
    assert (records[c].state, records[c].intent_at) == (ItemState.PENDING, None)
    assert await ledger.retry_failed() == 1
    records = await ledger.records()
    assert (records[a].state, records[a].attempt, records[a].error_code) == (ItemState.PENDING, 1, None)
    assert records[b].state is ItemState.UNKNOWN  # unknown is never retried by itself


async def test_reset_unfinished_starts_only_unfinished_items_again(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(3))
    a, b, c = (i.key for i in items(3))
    await ledger.claim([a, b, c], "w1", 30)
    assert await ledger.intent(a, "w1", "u", 30)
    assert await ledger.intent(b, "w1", "u", 30)
    await ledger.submitted(b, "p", "u", ["t"])
    await ledger.downloaded(c, ["f"])
    assert await ledger.reset_unfinished() == 2
    records = await ledger.records()
    assert [(records[k].state, records[k].attempt, records[k].process_id) for k in (a, b)] == [
        (ItemState.PENDING, 1, None)
    ] * 2
    assert records[c].state is ItemState.DOWNLOADED


async def test_restart_forgets_items_and_takes_a_new_namespace(make_ledger: MakeLedger) -> None:
    ledger: RunLedger = await make_ledger()
    await ledger.register(items(2))
    namespace = ledger.namespace
    uuid.UUID(namespace)
    again: RunLedger = await make_ledger()
    assert again.namespace == namespace  # the same run, opened again
    await ledger.restart()
    assert ledger.namespace != namespace
    assert await ledger.records() == {}


async def test_finished_labels_and_a_finished_example(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger()
    assert await ledger.finished_labels() == set()
    assert await ledger.finished_example() is None
    new = [*items(4), NewItem(f"{9:064x}", 9, "in/0.png", "background_remover")]  # in/0.png twice
    await ledger.register(new)
    keys = [i.key for i in new]
    await ledger.claim(keys, "w", 30)
    for key in keys[:3] + keys[4:]:
        assert await ledger.intent(key, "w", "u", 30)
    await ledger.submitted(keys[0], "p0", "u", [])
    await ledger.downloaded(keys[0], ["0.png"])
    await ledger.failed(keys[1], "RenderFailedError", "no")
    await ledger.submitted(keys[2], "p2", "u", [])
    assert await ledger.finished_labels() == {"in/1.png"}  # in/0.png has an unfinished item too
    await ledger.submitted(keys[4], "p9", "u", [])
    await ledger.downloaded(keys[4], ["9.png"])
    assert await ledger.finished_labels() == {"in/0.png", "in/1.png"}
    example = await ledger.finished_example()
    assert example is not None
    assert (example.state, example.process_id in ("p0", "p9")) == (ItemState.DOWNLOADED, True)


async def test_source_hashes_are_remembered_per_host_and_path(make_ledger: MakeLedger) -> None:
    from adcreative_async.ledger import SourceHash

    ledger: RunLedger = await make_ledger()
    one = SourceHash("h", "/a.png", 10, 5, 7, "aa")
    await ledger.remember_sources([one, SourceHash("other", "/a.png", 1, 1, 1, "bb")])
    assert await ledger.source_hashes("h", ["/a.png", "/b.png"]) == {"/a.png": one}
    newer = SourceHash("h", "/a.png", 11, 6, 7, "cc")
    await ledger.remember_sources([newer])
    assert await ledger.source_hashes("h", ["/a.png"]) == {"/a.png": newer}


async def test_sqlite_commits_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register(items(2))
        await ledger.claim([items(1)[0].key], "w", 30)
        assert await ledger.intent(items(1)[0].key, "w", "u", 30)
    async with SqliteLedger(path) as reopened:
        assert (await reopened.records())[items(1)[0].key].state is ItemState.SUBMITTING


async def test_sqlite_leases_follow_the_given_clock(tmp_path: Path) -> None:
    clock = FakeTime()
    async with SqliteLedger(tmp_path / "r.sqlite", clock=clock) as one:
        await one.register(items(1))
        key = items(1)[0].key
        assert await one.claim([key], "w1", 30)
        assert await one.claim([key], "w2", 30) == []
        clock.now += 31
        assert [r.owner for r in await one.claim([key], "w2", 30)] == ["w2"]


async def test_sqlite_group_commit_serves_concurrent_writers(tmp_path: Path) -> None:
    import anyio

    class Counting(SqliteLedger):
        commits: ClassVar[list[int]] = []

        def _apply(self, batch: list[Any], behind: dict[str, Any], **kw: Any) -> Any:
            self.commits.append(len(batch))
            return super()._apply(batch, behind, **kw)

    async with Counting(tmp_path / "r.sqlite") as ledger:
        await ledger.register(items(200))
        keys = [i.key for i in items(200)]
        await ledger.claim(keys, "w", 30)
        results: list[bool] = []

        async def write(key: str) -> None:
            results.append(await ledger.intent(key, "w", "u", 30))

        async with anyio.create_task_group() as group:
            for key in keys:
                group.start_soon(write, key)
        assert results == [True] * 200
        assert (await ledger.counts())[ItemState.SUBMITTING] == 200
        # the writes started together (in one tick: the items claimed together) are one commit
        assert Counting.commits[-2:] == [1, 200]  # the claim's, then the intents'


def test_open_ledger_picks_the_backend(tmp_path: Path) -> None:
    memory = MemoryLedger()
    assert open_ledger(memory) is memory
    assert isinstance(open_ledger(tmp_path / "x.sqlite"), SqliteLedger)
    postgres = open_ledger("postgresql://u:secret@localhost/db", run="r")
    assert isinstance(postgres, PostgresLedger)
    assert "secret" not in repr(postgres)


# ------------------------------------------------------------------------------------------- keys


async def test_keys_depend_on_content_parameters_and_feature(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(PNG)
    same_content = tmp_path / "copy.png"
    same_content.write_bytes(PNG)
    other = tmp_path / "b.jpg"
    other.write_bytes(JPEG)
    keys = await request_keys(
        [
            RenderRequest.remove_background(a),
            RenderRequest.remove_background(same_content),
            RenderRequest.remove_background(PNG),
            RenderRequest.remove_background(other),
            RenderRequest.remove_background(a, extra_form={"quality": "high"}),
            RenderRequest("upscaler", "upscale", {"image": a}),
            RenderRequest.remove_background(a, timeout=5),  # how it is sent, not what
        ],
        None,
    )
    assert all(isinstance(k, str) and len(k) == 64 for k in keys)
    assert keys[0] == keys[1] == keys[2] == keys[6]
    assert len({keys[0], keys[3], keys[4], keys[5]}) == 4


async def test_creative_keys_are_canonical_in_enums_and_order() -> None:
    one = RenderRequest.generate_creatives(**creative_inputs())
    two = RenderRequest.generate_creatives(**dict(reversed(list(creative_inputs(render_kind=1).items()))))
    three = RenderRequest.generate_creatives(**creative_inputs(main_headline="Other"))
    k1, k2, k3 = await request_keys([one, two, three], None)
    assert RenderKind.POST.value == 1
    assert k1 == k2 != k3


async def test_a_changed_file_gets_a_new_key_and_an_unchanged_one_is_not_read_again(tmp_path: Path) -> None:
    from adcreative_async.ledger._requests import REMEMBER_HASHES_FROM

    padding = b"\0" * REMEMBER_HASHES_FROM  # (smaller files are hashed again every run, not remembered)
    path = tmp_path / "a.png"
    path.write_bytes(PNG + padding)
    old = 1_600_000_000
    os.utime(path, (old, old))
    ledger = MemoryLedger()
    [first] = await request_keys([RenderRequest.remove_background(path)], ledger)
    assert len(ledger._sources) == 1
    # a remembered hash is trusted while size, mtime and inode hold: prove it by poisoning it
    (host, p), source = next(iter(ledger._sources.items()))
    import msgspec

    ledger._sources[(host, p)] = msgspec.structs.replace(source, sha256="0" * 64)
    [cached] = await request_keys([RenderRequest.remove_background(path)], ledger)
    assert cached != first
    path.write_bytes(JPEG + padding)
    os.utime(path, (old + 10, old + 10))
    [changed] = await request_keys([RenderRequest.remove_background(path)], ledger)
    assert changed not in (first, cached)


async def test_unreadable_images_give_a_clear_error_for_that_item(tmp_path: Path) -> None:
    keys = await request_keys(
        [RenderRequest.remove_background(tmp_path / "missing.png"), RenderRequest.remove_background(PNG)],
        None,
    )
    assert isinstance(keys[0], InvalidRequestError)
    assert "missing.png" in str(keys[0])
    assert isinstance(keys[1], str)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RenderRequest("background_remover", "nope", {}), "request"),
        (lambda: RenderRequest.remove_background(PNG, user_id=str(uuid.uuid4())), "user_id"),
        (lambda: RenderRequest.remove_background(iter([PNG])), "image"),  # type: ignore[arg-type]
    ],
)
def test_bad_requests_are_refused_naming_the_field(build: Callable[[], object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build()
    assert info.value.field == field


def test_derived_user_ids_are_stable_and_distinct() -> None:
    ns = str(uuid.uuid4())
    user = derived_user_id(ns, "k", 0)
    assert user == derived_user_id(ns, "k", 0)
    assert (
        len({user, derived_user_id(ns, "k", 1), derived_user_id(ns, "j", 0), derived_user_id("x", "k", 0)})
        == 4
    )
    assert uuid.UUID(user).version == 5


def test_labels_default_to_the_first_image_path(tmp_path: Path) -> None:
    assert RenderRequest.remove_background(tmp_path / "cat.jpg").stem == "cat"
    assert RenderRequest.remove_background(PNG).label == ""
    assert RenderRequest.remove_background(PNG, label="x/y.png").stem == "y"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
async def test_answers_written_behind_are_read_back_and_kept_on_close(backend: str, tmp_path: Path) -> None:
    run = f"test-{uuid.uuid4().hex[:12]}"

    def opened() -> RunLedger:
        if backend == "sqlite":
            return SqliteLedger(tmp_path / "run.sqlite", run=run)
        assert POSTGRES_DSN is not None
        return PostgresLedger(POSTGRES_DSN, run=run)

    keys = [i.key for i in items(2)]
    async with opened() as ledger:
        await ledger.register(items(2))
        await ledger.claim(keys, "w", 30)
        for key in keys:
            assert await ledger.intent(key, "w", "u", 30)
        await ledger.submitted(keys[0], "p", "u", ["t"])  # written behind
        assert (await ledger.records([keys[0]]))[keys[0]].process_id == "p"  # a read sees it
        await ledger.downloaded(keys[0], ["f.png"])  # written behind, committed on close
        await ledger.submitted(keys[1], "p1", "u1", ["t1"])  # and downloaded before any write:
        await ledger.downloaded(keys[1], ["g.png"])  # both kept
    async with opened() as reopened:
        records = await reopened.records(keys)
    assert [(r.state, r.process_id, r.files, r.owner) for r in (records[keys[0]], records[keys[1]])] == [
        (ItemState.DOWNLOADED, "p", ("f.png",), None),
        (ItemState.DOWNLOADED, "p1", ("g.png",), None),
    ]
    assert records[keys[1]].task_ids == ("t1",)


@pytest.mark.postgres
@needs_postgres
async def test_postgres_intents_arriving_together_are_written_together_and_fenced_each() -> None:
    import anyio

    class Counting(PostgresLedger):
        batches: ClassVar[list[int]] = []

        async def _write_intents(self, batch: list[Any]) -> None:
            self.batches.append(len(batch))
            await super()._write_intents(batch)

    assert POSTGRES_DSN is not None
    async with Counting(POSTGRES_DSN, run=f"test-{uuid.uuid4().hex[:12]}") as ledger:
        await ledger.register(items(200))
        keys = [i.key for i in items(200)]
        await ledger.claim(keys[:150], "w", 30)
        await ledger.claim(keys[150:], "other", 30)  # not w's: its intents there are refused
        results: dict[str, bool] = {}

        async def write(key: str) -> None:
            results[key] = await ledger.intent(key, "w", "u", 30)

        async with anyio.create_task_group() as group:
            for key in keys:
                group.start_soon(write, key)
        assert [results[k] for k in keys] == [True] * 150 + [False] * 50
        assert (await ledger.counts())[ItemState.SUBMITTING] == 150
        assert Counting.batches == [200]  # intents started together: one statement


@pytest.mark.postgres
@needs_postgres
async def test_postgres_statement_aborted_as_a_deadlock_is_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator's transaction holding the rows in the other order: the server aborts the ledger's
    statement as a deadlock victim, and the ledger sends it again instead of failing the items."""
    import anyio
    import asyncpg

    assert POSTGRES_DSN is not None
    run = f"test-{uuid.uuid4().hex[:12]}"
    keys = [i.key for i in items(2)]
    async with PostgresLedger(POSTGRES_DSN, run=run) as ledger:
        await ledger.register(items(2))
        await ledger.claim(keys, "w", 30)
        for key in keys:
            assert await ledger.intent(key, "w", "u", 30)
        for key in keys:
            await ledger.submitted(key, f"p-{key[-1]}", "u", ["t"])  # written behind: both rows
        other = await asyncpg.connect(POSTGRES_DSN)
        try:
            await other.execute("SET deadlock_timeout = '30s'")  # the ledger's backend finds the cycle
            locker = other.transaction()
            await locker.start()
            await other.execute(
                "SELECT 1 FROM adcreative_items WHERE run = $1 AND key = $2 FOR UPDATE", run, keys[1]
            )
            read: dict[str, Any] = {}

            async def reader() -> None:  # flushes first: locks keys[0], then waits for keys[1]
                read.update(await ledger.records(keys))

            with caplog.at_level(logging.INFO, logger="adcreative_async.ledger"):
                async with anyio.create_task_group() as group:
                    group.start_soon(reader)
                    await anyio.sleep(0.3)
                    # closes the cycle; waits until the ledger's statement is rolled back as the victim
                    await other.execute(
                        "SELECT 1 FROM adcreative_items WHERE run = $1 AND key = $2 FOR UPDATE", run, keys[0]
                    )
                    await locker.commit()
        finally:
            await other.close()
        assert any("DeadlockDetectedError, sending the statement again" in m for m in caplog.messages)
        assert {k: (r.state, r.process_id) for k, r in read.items()} == {
            keys[0]: (ItemState.SUBMITTED, "p-0"),
            keys[1]: (ItemState.SUBMITTED, "p-1"),
        }


@pytest.mark.postgres
@needs_postgres
async def test_postgres_lease_renewal_never_waits_for_rows_being_written() -> None:
    import anyio
    import asyncpg

    assert POSTGRES_DSN is not None
    run = f"test-{uuid.uuid4().hex[:12]}"
    keys = [i.key for i in items(3)]
    async with PostgresLedger(POSTGRES_DSN, run=run) as ledger:
        await ledger.register(items(3))
        await ledger.claim(keys, "w", 30)
        other = await asyncpg.connect(POSTGRES_DSN)
        try:
            async with other.transaction():  # a write in progress on one of the rows
                await other.execute(
                    "SELECT 1 FROM adcreative_items WHERE run = $1 AND key = $2 FOR UPDATE", run, keys[1]
                )
                with anyio.fail_after(10):  # it would wait until this transaction ends
                    renewed = await ledger.renew("w", 60)
        finally:
            await other.close()
        assert renewed == {keys[0], keys[2]}  # the locked row is renewed on the next round
        assert await ledger.renew("w", 60) == set(keys)


@pytest.mark.postgres
@needs_postgres
async def test_postgres_one_workers_concurrent_writes_never_deadlock() -> None:
    """Intents, answers written behind, downloads and lease renewals of one worker run on several
    connections at once over rows whose physical order updates keep shuffling: none fails."""
    import anyio

    assert POSTGRES_DSN is not None
    n = 800
    keys = [i.key for i in items(n)]
    async with PostgresLedger(POSTGRES_DSN, run=f"test-{uuid.uuid4().hex[:12]}", pool_size=6) as ledger:
        await ledger.register(items(n))
        await ledger.claim(keys, "w", 60)
        stop = anyio.Event()

        async def renewing() -> None:
            while not stop.is_set():
                await ledger.renew("w", 60)
                await anyio.sleep(0.001)

        async def item(key: str) -> None:
            assert await ledger.intent(key, "w", "u", 60)
            await ledger.submitted(key, f"p{key}", "u", ["t"])
            await ledger.tasks(key, ["t", "t2"])
            await ledger.downloaded(key, [f"{key}.png"])

        async with anyio.create_task_group() as outer:
            outer.start_soon(renewing)
            outer.start_soon(renewing)
            async with anyio.create_task_group() as group:
                for key in reversed(keys):
                    group.start_soon(item, key)
            stop.set()
        assert (await ledger.counts())[ItemState.DOWNLOADED] == n


@pytest.mark.postgres
@needs_postgres
async def test_postgres_only_intents_wait_for_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intents commit with synchronous_commit on; claims, answers and the rest asynchronously."""
    import asyncpg

    statements: list[tuple[str, bool]] = []
    execute = asyncpg.Connection.execute

    async def noting(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> str:
        statements.append((query, self.is_in_transaction()))
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", noting)
    assert POSTGRES_DSN is not None
    ledger = PostgresLedger(POSTGRES_DSN, run=f"test-{uuid.uuid4().hex[:12]}")
    async with ledger:
        setting = "SELECT setting || ' from ' || source FROM pg_settings WHERE name = 'synchronous_commit'"
        assert (
            await ledger._require().fetchval(setting) == "off from client"
        )  # this ledger's, not the server's
        await ledger.register(items(2))
        keys = [i.key for i in items(2)]
        await ledger.claim(keys, "w", 30)
        statements.clear()
        assert await ledger.intent(keys[0], "w", "u", 30)
        assert ("SET LOCAL synchronous_commit TO on", True) in statements  # in the intent's transaction
        statements.clear()
        await ledger.submitted(keys[0], "p", "u", ["t"])
        await ledger.downloaded(keys[0], ["f.png"])
        await ledger.claim(keys[1:], "w", 30)
        assert (await ledger.records(keys[:1]))[keys[0]].state is ItemState.DOWNLOADED
        assert not any("synchronous_commit" in query for query, _ in statements)
    with pytest.raises(ValueError, match="durable_commit"):
        PostgresLedger(POSTGRES_DSN, durable_commit="off")


class _FailingBehindOnce(SqliteLedger):
    """A SQLite ledger whose first write of the writes behind fails (``after`` seconds into it)."""

    def __init__(self, path: Path, *, after: float = 0.0) -> None:
        super().__init__(path)
        self.failures = 1
        self.after = after

    def _behind_rows(self, behind: dict[str, Any], now: float) -> Any:
        if self.failures:
            self.failures -= 1
            time.sleep(self.after)  # (in the ledger's thread)
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return super()._behind_rows(behind, now)


async def test_sqlite_writes_behind_that_fail_are_kept_for_the_next_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _FailingBehindOnce(tmp_path / "r.sqlite") as ledger:
        await ledger.register(items(2))
        keys = [i.key for i in items(2)]
        await ledger.claim(keys, "w", 30)
        assert await ledger.intent(keys[0], "w", "u", 30)
        await ledger.submitted(keys[0], "p", "u", ["t"])
        await ledger.downloaded(keys[0], ["f.png"])
        # the next write commits; the writes behind in it fail and are kept, the intent is not harmed
        assert await ledger.intent(keys[1], "w", "u2", 30)
        assert "writes behind kept for the next write" in caplog.text
        records = await ledger.records(keys)  # a read commits what was kept first
        assert records[keys[0]].state is ItemState.DOWNLOADED
        assert records[keys[0]].process_id == "p"
        assert records[keys[0]].files == ("f.png",)
        assert records[keys[0]].owner is None
        assert records[keys[1]].state is ItemState.SUBMITTING


async def test_sqlite_a_write_behind_kept_after_a_failure_is_merged_under_a_newer_one(tmp_path: Path) -> None:
    """An answer whose write failed, then the item's download (written behind before the next try):
    both reach the file, the answer's process id included."""

    import anyio

    async with _FailingBehindOnce(tmp_path / "r.sqlite", after=0.2) as ledger:
        await ledger.register(items(2))
        keys = [i.key for i in items(2)]
        await ledger.claim(keys, "w", 30)
        assert await ledger.intent(keys[0], "w", "u", 30)
        await ledger.submitted(keys[0], "p", "u", ["t"])
        async with anyio.create_task_group() as group:
            group.start_soon(ledger.intent, keys[1], "w", "u2", 30)  # its commit fails to write the answer
            await anyio.sleep(0.05)
            await ledger.downloaded(keys[0], ["f.png"])  # the item went on meanwhile
        record = (await ledger.records(keys[:1]))[keys[0]]
        assert (record.state, record.process_id, record.task_ids, record.files) == (
            ItemState.DOWNLOADED,
            "p",
            ("t",),
            ("f.png",),
        )


async def test_sqlite_workers_opening_a_new_ledger_together_all_open(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it alone: SQLite says "database is locked" at once, without
    waiting; the other workers try again."""
    import anyio

    for round_ in range(20):
        path = tmp_path / f"new-{round_}.sqlite"
        ledgers = [SqliteLedger(path) for _ in range(6)]
        async with anyio.create_task_group() as group:
            for ledger in ledgers:
                group.start_soon(ledger.open)
        assert len({ledger.namespace for ledger in ledgers}) == 1
        for ledger in ledgers:
            await ledger.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
async def test_writes_behind_are_committed_once_many_wait(tmp_path: Path, backend: str) -> None:
    """BEHIND_ROWS downloads (SQLite: DOWNLOADS_HELD) are committed by the write that makes them that many:
    a run does not end with one large write of every download since its last claim."""
    from adcreative_async.ledger._base import BEHIND_ROWS
    from adcreative_async.ledger._sqlitestore import DOWNLOADS_HELD

    run = f"test-{uuid.uuid4().hex[:12]}"
    ledger: RunLedger
    if backend == "sqlite":
        path = tmp_path / "r.sqlite"
        ledger = SqliteLedger(path, run=run)

        async def stored() -> int:
            with sqlite3.connect(path) as conn:  # another connection: what is committed
                row = conn.execute("SELECT count(*) FROM items WHERE state = 'downloaded'").fetchone()
            return int(row[0])
    else:
        import asyncpg

        assert POSTGRES_DSN is not None
        ledger = PostgresLedger(POSTGRES_DSN, run=run)

        async def stored() -> int:
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                query = "SELECT count(*) FROM adcreative_items WHERE run = $1 AND state = 'downloaded'"
                return int(await conn.fetchval(query, run))
            finally:
                await conn.close()

    many = DOWNLOADS_HELD if backend == "sqlite" else BEHIND_ROWS
    async with ledger:
        new = items(many)
        await ledger.register(new)
        await ledger.claim([i.key for i in new], "w", 30)
        for item in new[:-1]:
            await ledger.downloaded(item.key, [f"{item.seq}.png"])
        assert await stored() == 0  # written behind
        await ledger.downloaded(new[-1].key, ["last.png"])
        assert await stored() == many


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("statement", ["intent", "claim_and_intend", "release"])
async def test_postgres_statement_errors_beside_a_flush_are_ledger_errors(
    monkeypatch: pytest.MonkeyPatch, statement: str
) -> None:
    """The writes that flush the answers written behind at the same time still fail with a LedgerError
    (not an ExceptionGroup of the task group that runs the flush)."""
    from adcreative_async.ledger import _postgres

    assert POSTGRES_DSN is not None
    async with PostgresLedger(POSTGRES_DSN, run=f"test-{uuid.uuid4().hex[:12]}") as ledger:
        await ledger.register(items(2))
        keys = [i.key for i in items(2)]
        await ledger.claim(keys[:1], "w", 30)
        assert await ledger.intent(keys[0], "w", "u", 30)
        await ledger.submitted(keys[0], "p", "u", ["t"])  # written behind: flushed beside the statement
        broken = "SELECT no_such_column FROM adcreative_items WHERE run = $1"
        monkeypatch.setattr(_postgres, "_INTENTS", broken)
        monkeypatch.setattr(_postgres, "_CLAIM", broken)
        monkeypatch.setattr(_postgres, "_LOCK_WHERE", "SELECT no_such_column; {where}")
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "intent": lambda: ledger.intent(keys[1], "w", "u2", 30),
            "claim_and_intend": lambda: ledger.claim_and_intend(keys[1:], "w", 30, {keys[1]: (0, "u2")}),
            "release": lambda: ledger.release("w"),
        }
        with pytest.raises(LedgerError):
            await calls[statement]()
        monkeypatch.undo()
        assert (await ledger.records(keys[:1]))[keys[0]].state is ItemState.SUBMITTED  # the flush went on
