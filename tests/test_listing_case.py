"""Process ids in listings are compared case-insensitively however they are read: the listing reader and
the reconcile records lower-case a piece's ids only where the server did not (``_listing.lowered``), and
must find the same processes either way."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from adcreative_async._clock import SystemClock
from adcreative_async._config import RetryPolicy
from adcreative_async._listing import lowered, read_listing
from adcreative_async._reconcile import SubmissionLedger

FEATURE = "background_remover"
USER = "0b6a5c1e-2f4d-4e8a-9c3b-7d1e5f2a4c60"

IDS = st.lists(
    st.uuids().map(str).map(lambda s: s.upper()) | st.uuids().map(str) | st.text(max_size=8), max_size=20
)


@given(IDS)
def test_lowered_is_each_id_lower_cased(ids: list[str]) -> None:
    assert lowered(ids) == [i.lower() for i in ids]


def _body(pids: list[str]) -> bytes:
    return json.dumps(
        {"$id": "1", "$values": [{"imageRenderProcessId": p, "userId": USER, "tasks": {}} for p in pids]}
    ).encode()


def test_a_listing_in_capitals_keeps_the_processes_wanted_in_lower_case() -> None:
    pids = [str(uuid.uuid4()) for _ in range(300)]
    spelled = [p.upper() if i % 2 else p for i, p in enumerate(pids)]  # one piece in capitals, one not
    wanted = {pids[7], pids[8], pids[250]}
    for container in (wanted, dict.fromkeys(wanted, 0), frozenset(wanted)):
        listing = read_listing(_body(spelled), container, chunk=1000, piece_bytes=2000)
        assert [p.image_render_process_id.lower() for p in listing.ids] == [pids[7], pids[8], pids[250]]
        assert len(listing) == len(pids)


def test_a_listing_in_capitals_is_recorded_as_known_processes_in_lower_case() -> None:
    ledger = SubmissionLedger(SystemClock(), RetryPolicy())
    pids = [str(uuid.uuid4()) for _ in range(4)]
    ledger.listed(FEATURE, USER, pids[:2])
    ledger.listed(FEATURE, USER, [p.upper() for p in pids])  # two known, two new, in capitals
    ledger.listed(FEATURE, USER, pids)  # all known: nothing new
    known = ledger._users[(FEATURE, USER)].known
    assert list(known) == pids
    assert list(known.values()) == [1, 2, 3, 4]
