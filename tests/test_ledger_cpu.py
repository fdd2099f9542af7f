"""The run ledger's per-item shortcuts give what the plain forms gave (issue 23: the ledger's CPU per item).

Derived user ids are computed without a UUID object, a request checks its images in one pass, and the
SQLite ledger's records and writes behind skip an enum call and a dict per row: each must keep the
results of the plain form, since user ids are what earlier runs' items are reconciled by.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adcreative_async import InvalidRequestError
from adcreative_async.ledger import ItemState, NewItem, RenderRequest, SqliteLedger, derived_user_id
from adcreative_async.ledger._requests import _NAMESPACE

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
