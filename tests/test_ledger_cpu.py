"""The run ledger's per-item shortcuts give what the plain forms gave (issue 23: the ledger's CPU per item).

Derived user ids are computed without a UUID object, a request checks its images in one pass, and the
SQLite ledger's records and writes behind skip an enum call and a dict per row: each must keep the
results of the plain form, since user ids are what earlier runs' items are reconciled by.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import FAST_POLLS

from adcreative_async import AdCreativeClient, InvalidRequestError
from adcreative_async.ledger import (
    ItemState,
    MemoryLedger,
    NewItem,
    PostgresLedger,
    RenderRequest,
    RunLedger,
    SqliteLedger,
    derived_user_id,
)
from adcreative_async.ledger._requests import _NAMESPACE
from adcreative_async.ledger._submit import ItemCalls
from adcreative_async.testing import Emulator, sample_image

POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
needs_postgres = pytest.mark.skipif(
    POSTGRES_DSN is None, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN"
)

pytestmark = pytest.mark.anyio

CASES = [
    ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "a" * 64, 0),
    ("default", "", 0),
    (str(uuid.UUID(int=0)), "0" * 64, 1),
    ("ns:with:colons", "k:ey", 12),
    ("é-ünïcode-ns", "ключ", 3),
    *((str(uuid.uuid4()), uuid.uuid4().hex * 2, attempt) for attempt in range(40)),
]


@pytest.mark.parametrize(("namespace", "key", "attempt"), CASES)
def test_derived_user_id_is_the_uuid5_of_namespace_key_and_attempt(
    namespace: str, key: str, attempt: int
) -> None:
    expected = str(uuid.uuid5(_NAMESPACE, f"{namespace}:{key}:{attempt}"))
    assert derived_user_id(namespace, key, attempt) == expected


def test_derived_user_ids_cover_every_variant_digit() -> None:
    # the variant digit comes from the hash's 17th hex digit: all four values must come out as uuid5's
    seen = set()
    for attempt in range(200):
        user = derived_user_id("ns", "key", attempt)
        assert user == str(uuid.uuid5(_NAMESPACE, f"ns:key:{attempt}"))
        seen.add(user[19])
    assert seen == set("89ab")


def test_a_request_labelled_by_its_first_image_given_by_path(tmp_path: Path) -> None:
    # creatives take two images: the label is the first given by its path, bytes before it skipped
    request = RenderRequest.generate_creatives(background_image=b"\x89PNG", brand_image=tmp_path / "logo.png")
    assert request.label == str(tmp_path / "logo.png")
    both = RenderRequest.generate_creatives(
        background_image=tmp_path / "bg.png", brand_image=tmp_path / "l.png"
    )
    assert both.label == str(tmp_path / "bg.png")
    assert RenderRequest.generate_creatives(background_image=b"x", brand_image=b"y").label == ""


def test_a_request_with_a_bad_second_image_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RenderRequest.generate_creatives(background_image=tmp_path / "bg.png", brand_image=42)
    assert info.value.field == "brand_image"


async def test_writes_behind_bound_from_tuples_land_in_their_columns(tmp_path: Path) -> None:
    async with SqliteLedger(tmp_path / "run.sqlite") as ledger:
        await ledger.register(
            [NewItem("a", 0, "a.png", "background_remover"), NewItem("b", 1, "b.png", "background_remover")]
        )
        claimed = await ledger.claim(["a", "b"], "w", 30.0)
        epochs = {r.key: r.epoch for r in claimed}
        await ledger.submitted("a", "P-A", "U-A", ["t1", "t2"], epoch=epochs["a"])
        await ledger.submitted("b", "P-B", "U-B", ["t3"], epoch=epochs["b"])
        await ledger.downloaded("b", ["out/b.png"], epoch=epochs["b"])
        records = await ledger.records(["a", "b"])
    a, b = records["a"], records["b"]
    assert (a.state, a.process_id, a.user_id, a.task_ids, a.files, a.owner) == (
        ItemState.SUBMITTED,
        "P-A",
        "U-A",
        ("t1", "t2"),
        (),
        "w",
    )
    assert (b.state, b.process_id, b.user_id, b.task_ids, b.files, b.owner, b.lease_until) == (
        ItemState.DOWNLOADED,
        "P-B",
        "U-B",
        ("t3",),
        ("out/b.png",),
        None,
        None,
    )


def _committed(path: Path) -> dict[str, str]:
    """Each item's state as committed (another connection: what a crash would leave)."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT key, state FROM items"))


async def test_downloads_are_held_past_the_next_write_but_answers_are_not(tmp_path: Path) -> None:
    """The downloads of the items in flight are committed together (DOWNLOADS_HELD), not with each
    claim: an answer still goes with the next write (a claim), a download waits."""
    path = tmp_path / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register([NewItem(k, i, f"{k}.png", "background_remover") for i, k in enumerate("abc")])
        epochs = {r.key: r.epoch for r in await ledger.claim(["a", "b"], "w", 30.0)}
        await ledger.submitted("a", "P-A", "U-A", ["t"], epoch=epochs["a"])
        await ledger.submitted("b", "P-B", "U-B", ["t"], epoch=epochs["b"])
        await ledger.claim(["c"], "w", 30.0)  # the next write: the answers go with it
        assert _committed(path) == {"a": "submitted", "b": "submitted", "c": "pending"}
        await ledger.downloaded("a", ["a.png"], epoch=epochs["a"])
        await ledger.claim(["c"], "w", 30.0)
        assert _committed(path)["a"] == "submitted"  # held
        await ledger.renew("w", 30.0)  # a write of the whole run: every download held goes with it
        assert _committed(path)["a"] == "downloaded"
        await ledger.downloaded("b", ["b.png"], epoch=epochs["b"])
        assert (await ledger.records(["b"]))["b"].state is ItemState.DOWNLOADED  # a read sees it
        assert _committed(path)["b"] == "downloaded"


async def test_a_download_held_is_committed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    async with SqliteLedger(path) as ledger:
        await ledger.register([NewItem("a", 0, "a.png", "background_remover")])
        [record] = await ledger.claim(["a"], "w", 30.0)
        await ledger.submitted("a", "P-A", "U-A", ["t"], epoch=record.epoch)
        await ledger.downloaded("a", ["a.png"], epoch=record.epoch)
        await ledger.claim(["a"], "w", 30.0)
    assert _committed(path) == {"a": "downloaded"}


async def test_a_download_held_beside_its_uncommitted_answer_keeps_both(tmp_path: Path) -> None:
    """An item whose answer waits for the next write (put back after a failed commit) while its download
    is held (it came during that commit) is written as one row: the download does not drop the answer's
    process id."""
    from adcreative_async.ledger._base import WrittenBehind

    ledger = SqliteLedger(tmp_path / "run.sqlite")
    async with ledger:
        await ledger.register([NewItem("a", 0, "a.png", "background_remover")])
        [record] = await ledger.claim(["a"], "w", 30.0)
        await ledger.submitted("a", "P-A", "U-A", ["t"], epoch=record.epoch)  # behind: the next write
        download = ledger._held["a"] = WrittenBehind()  # (where a download made during a commit waits)
        download.downloaded(["a.png"], record.epoch)
        await ledger.renew("w", 30.0)  # both go
        stored = (await ledger.records(["a"]))["a"]
    assert (stored.state, stored.process_id, stored.user_id, stored.files) == (
        ItemState.DOWNLOADED,
        "P-A",
        "U-A",
        ("a.png",),
    )


async def _answer_and_download_cancelled(ledger: RunLedger, key: str) -> None:
    """An answer and a download written from a task whose scope is cancelled (no shield of its own)."""
    [record] = await ledger.claim([key], "w", 30.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await ledger.submitted(key, "P", "U", ["t"], epoch=record.epoch)
        await ledger.downloaded(key, ["out.png"], epoch=record.epoch)
    assert not scope.cancelled_caught  # nothing in them waited: the cancellation never reached them


@pytest.mark.parametrize(
    "backend", ["sqlite", "memory", pytest.param("postgres", marks=[pytest.mark.postgres, needs_postgres])]
)
async def test_built_in_ledgers_hold_answers_and_downloads_before_any_await(
    tmp_path: Path, backend: str
) -> None:
    """What lets the driver call ``submitted`` and ``downloaded`` without a shielded scope of its own
    (RunLedger._records_at_once): a cancelled caller's answer and download are still recorded."""
    ledger: RunLedger
    if backend == "sqlite":
        ledger = SqliteLedger(tmp_path / "run.sqlite")
    elif backend == "memory":
        ledger = MemoryLedger()
    else:
        assert POSTGRES_DSN is not None
        ledger = PostgresLedger(POSTGRES_DSN, run=f"test-{uuid.uuid4().hex[:12]}")
    assert ledger._records_at_once
    async with ledger:
        await ledger.register([NewItem("a", 0, "a.png", "background_remover")])
        await _answer_and_download_cancelled(ledger, "a")
        stored = (await ledger.records(["a"]))["a"]
    assert (stored.state, stored.process_id, stored.files) == (ItemState.DOWNLOADED, "P", ("out.png",))


class _SlowLedger(MemoryLedger):
    """A ledger of another kind: its answer waits (a round trip) before it is recorded."""

    _records_at_once = False

    async def submitted(
        self, key: str, process_id: str, user_id: str, task_ids: Sequence[str], *, epoch: int | None = None
    ) -> None:
        await anyio.lowlevel.checkpoint()
        await super().submitted(key, process_id, user_id, task_ids, epoch=epoch)


@pytest.mark.parametrize("records_at_once", [False, True])
async def test_the_driver_shields_the_answers_of_other_ledgers(records_at_once: bool) -> None:
    """Where the ledger does not hold the answer before its first await, the driver's write of it is
    shielded (a cancelled item still records its paid call's answer); the shield is left out only for
    ledgers that say they need none (here, wrongly: the answer is lost, which shows the shield at work)."""
    ledger = _SlowLedger()
    ledger._records_at_once = records_at_once  # type: ignore[misc]
    calls: ItemCalls[object] = ItemCalls()
    calls._ledger = ledger
    async with ledger:
        await ledger.register([NewItem("a", 0, "a.png", "background_remover")])
        [record] = await ledger.claim(["a"], "w", 30.0)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await calls._recorded(ledger.submitted("a", "P", "U", ["t"], epoch=record.epoch))
        stored = (await ledger.records(["a"]))["a"]
    assert (stored.process_id is not None) is (not records_at_once)


async def test_a_ledger_start_call_is_checked_by_one_send_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease guard and the content guard of an item's start call are one send guard (one context
    and one call per chunk, not two), and the call still goes out whole."""
    from adcreative_async import _multipart

    seen: list[int] = []
    real = _multipart.send_guards  # type: ignore[attr-defined]

    def counted() -> tuple[Any, ...]:
        guards = real()
        seen.append(len(guards))
        return guards

    monkeypatch.setattr(_multipart, "send_guards", counted)
    paths = []
    for i in range(3):
        path = tmp_path / "in" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(sample_image("png", (8, 8), (i, 2, 3)))
        paths.append(path)
    async with (
        Emulator() as emulator,
        AdCreativeClient(**emulator.credentials, trust_env=False, poll_policy=FAST_POLLS) as client,
    ):
        outcomes = await client.process_many(
            paths,
            request=RenderRequest.remove_background,
            ledger=tmp_path / "run.sqlite",
            dest=tmp_path / "out",
        )
    assert [o.error for o in outcomes] == [None, None, None]
    assert seen == [1, 1, 1]
