"""A progress listing is read as a stream (``adcreative_async._listing``): however its body is split into
chunks, the reader counts the same elements and keeps the same followed progress objects as decoding the
whole body; malformed or cut-short bodies are the typed error, never a complete listing; and a poll of a
listing far larger than what is awaited never holds the listing (its peak heap, over loopback against
the emulator in its own process, stays far below the body's size)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from miniapi import MiniAPI

from adcreative_async import AdCreativeClient, Progress, UnexpectedResponseError
from adcreative_async._listing import ListingReader, ProgressListing
from adcreative_async._models import ListedProcess, decode_progress_list
from adcreative_async.testing import Emulator, sample_image

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
USERS = [USER, "0b8e2f6e-3f0c-4a59-9a43-6f1d1f4f5a01", "C9A3E1D2-7B44-4E0B-8F11-2A2B3C4D5E6F"]
PROGRESS_ROUTE = "/api/v1/Image/BackgroundRemoving/CheckUserProgress"

# Strings that look like JSON structure: braces, brackets, quotes (escaped once encoded), commas.
NASTY = st.text(alphabet=st.sampled_from([*'}{][,":\\ \n\t$', "a", "é", "\u2028", "😀"]), max_size=12)
NASTY |= st.sampled_from(['},{"imageRenderProcessId":"x"}', '"}]', '\\"},{', '"$values":[', "}\n,\n{"])


@st.composite
def elements(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """One progress object as a server may list it: Newtonsoft ids, nasty strings, tasks, extra nesting."""
    pid = str(draw(st.uuids()))
    element: dict[str, Any] = {}
    if draw(st.booleans()):
        element["$id"] = str(index + 2)
    element["messageType"] = draw(NASTY)
    element["requestRenderState"] = draw(st.integers(0, 6))
    element["userId"] = draw(st.sampled_from(USERS))
    element["imageRenderProcessId"] = pid.upper() if draw(st.booleans()) else pid
    element["progress"] = draw(st.integers(0, 100))
    tasks: dict[str, Any] = {"$id": f"t{index}"} if draw(st.booleans()) else {}
    for _ in range(draw(st.integers(0, 3))):
        tasks[str(draw(st.uuids()))] = draw(st.integers(0, 5) | st.sampled_from(["5", "1"]))
    element["tasks"] = tasks
    if draw(st.booleans()):  # fields the SDK does not know: nested arrays of objects and maps
        element["extra"] = [{"a": draw(NASTY)}, {"b": [1, {"c": draw(NASTY)}], "d": {}}]
    element["errorMessage"] = draw(NASTY)
    return element


@st.composite
def listings(draw: st.DrawFn) -> tuple[bytes, list[dict[str, Any]]]:
    """A listing's body in either shape, formatted with whitespace anywhere JSON allows it."""
    items = [draw(elements(i)) for i in range(draw(st.integers(0, 12)))]
    shape = draw(st.sampled_from(["plain", "wrapped", "wrapped-extra"]))
    document: Any = items
    if shape == "wrapped":
        document = {"$id": "1", "$values": items}
    elif shape == "wrapped-extra":  # a decoy "$values" nested before the wrapper's own, a key after it
        document = {"meta": {"$values": [{"x": "]"}]}, "$id": '"$values":[', "$values": items, "$type": "x"}
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t"]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n ", " :\t"), ("\r\n,", ":")]))
    text = json.dumps(document, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    body = draw(st.sampled_from(["", " ", "\n\t "])) + text + draw(st.sampled_from(["", "\n", " \r\n"]))
    return body.encode(), items


def split(body: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``body`` in chunks cut at ``cuts``."""
    start = 0
    for cut in sorted(set(cuts)):
        yield body[start:cut]
        start = cut
    yield body[start:]


def read(body: bytes, cuts: list[int], reader: ListingReader) -> ProgressListing:
    for chunk in split(body, cuts):
        if chunk:
            reader.feed(chunk)
    reader.feed(b"")
    return reader.listing()


cut_points = st.lists(st.integers(0, 10_000), max_size=12)


@SETTINGS
@given(listings(), cut_points, st.integers(1, 400), st.data())
def test_any_split_of_a_listing_reads_as_the_whole_body_decodes(
    listing: tuple[bytes, list[dict[str, Any]]], cuts: list[int], piece: int, data: st.DataObject
) -> None:
    body, items = listing
    whole = decode_progress_list(body)
    pids = [p.image_render_process_id for p in whole]
    wanted = {pid.lower() for pid in pids if data.draw(st.booleans())} | {"not-listed"}
    users = data.draw(st.lists(st.sampled_from(USERS), unique=True))
    seen: list[str] = []
    reader = ListingReader(wanted, users=users, on_ids=seen.extend, piece_bytes=piece)
    got = read(body, [c % (len(body) + 1) for c in cuts], reader)
    assert len(got) == len(whole) == len(items)
    assert [got.progress(i) for i in range(len(got.ids))] == [
        p for p in whole if p.image_render_process_id.lower() in wanted
    ]
    assert seen == pids
    assert got.users == {
        user.lower(): sum(p.user_id.lower() == user.lower() for p in whole) for user in users
    }


@SETTINGS
@given(listings(), cut_points, st.integers(1, 400), st.data())
def test_a_body_cut_short_is_never_taken_for_a_complete_listing(
    listing: tuple[bytes, list[dict[str, Any]]], cuts: list[int], piece: int, data: st.DataObject
) -> None:
    body = listing[0].rstrip()
    short = body[: data.draw(st.integers(0, len(body) - 1))]
    with pytest.raises(msgspec.DecodeError):
        read(short, [c % (len(short) + 1) for c in cuts], ListingReader(piece_bytes=piece))


# The decoder a poll used before the listing was streamed: the whole body at once, every element's ids.
class _Wrapped(msgspec.Struct):
    values: list[ListedProcess] = msgspec.field(name="$values", default_factory=list)


WHOLE = msgspec.json.Decoder(list[ListedProcess] | _Wrapped, strict=False)


@SETTINGS
@given(listings(), cut_points, st.integers(1, 400), st.data())
def test_a_damaged_body_fails_exactly_when_decoding_it_whole_fails(
    listing: tuple[bytes, list[dict[str, Any]]], cuts: list[int], piece: int, data: st.DataObject
) -> None:
    body = bytearray(listing[0])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, max(0, len(body) - 1)))
        byte = data.draw(st.sampled_from(list(b'{}[],":\\ 5x')))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "replace" and body:
            body[at] = byte
        elif action == "insert":
            body.insert(at, byte)
        elif body:
            del body[at]
    damaged = bytes(body)
    try:
        decoded = WHOLE.decode(damaged)
    except msgspec.DecodeError:
        with pytest.raises(msgspec.DecodeError):
            read(damaged, [c % (len(damaged) + 1) for c in cuts], ListingReader(piece_bytes=piece))
        return
    expected = decoded.values if isinstance(decoded, _Wrapped) else decoded
    wanted = {p.image_render_process_id.lower() for p in expected}
    got = read(damaged, [c % (len(damaged) + 1) for c in cuts], ListingReader(wanted, piece_bytes=piece))
    assert len(got) == len(expected)
    assert got.ids == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"null",
        b'"[]"',
        b"5",
        b"[",
        b'[{"imageRenderProcessId":"a"}',
        b'[{"imageRenderProcessId":"a"},',
        b'[{"imageRenderProcessId":"a"} {"imageRenderProcessId":"b"}]',
        b'[{"imageRenderProcessId":"a"}]]',
        b'[{"imageRenderProcessId":"a"}] x',
        b'[{"imageRenderProcessId":5}]',
        b"[5]",
        b'{"$id":"1","$values":[{"imageRenderProcessId":"a"}]',
        b'{"$id":"1","$values":[{"imageRenderProcessId":"a"}]}}',
        b'{"$id":"1","$values":5}',
        b'{"$id":"1","$values":[{"imageRenderProcessId":"a","tasks":{"x":5}',
    ],
)
def test_a_malformed_listing_is_a_decode_error(body: bytes) -> None:
    for piece in (1, 7, 64 * 1024):
        with pytest.raises(msgspec.DecodeError):
            read(body, list(range(0, len(body), 3)), ListingReader(piece_bytes=piece))


def test_a_filtered_answer_keeps_every_progress_object() -> None:
    items = [Progress(image_render_process_id=f"P{i}", user_id=USER) for i in range(3)]
    listing = ProgressListing.of(items)
    assert len(listing) == 3
    assert [listing.progress(i) for i in range(3)] == items
    assert [p.image_render_process_id for p in listing.ids] == ["P0", "P1", "P2"]
    assert listing.users == {USER: 3}


# ------------------------------------------------------------------------------------- over loopback


def listing_body(n: int, pids: list[str]) -> bytes:
    items = [
        {
            "$id": str(i + 2),
            "imageRenderProcessId": pid,
            "userId": USER,
            "progress": 100,
            "totalTaskCount": 1,
            "completedTaskCount": 1,
            "tasks": {"$id": f"t{i}", f"task-{i}": 5},
            "errorMessage": "},{",
        }
        for i, pid in enumerate(pids[:n])
    ]
    return json.dumps({"$id": "1", "$values": items}).encode()


@asynccontextmanager
async def serving(body: bytes, *, status: int = 200, step: int = 1000) -> AsyncIterator[MiniAPI]:
    """A server answering the user's listing with ``body``, written in chunks of ``step`` bytes."""
    async with MiniAPI() as api:

        @api.route("GET", PROGRESS_ROUTE)
        async def listing(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for start in range(0, len(body), step):
                await response.write(body[start : start + step])
            await response.write_eof()
            return response

        yield api


@pytest.mark.anyio
async def test_a_listing_streamed_over_loopback_keeps_only_the_wanted_processes() -> None:
    pids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(500)]
    body = listing_body(500, pids)
    async with serving(body) as api, AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as c:
        wanted = {pids[3], pids[499]}
        listing = await c.background_remover._listing(USER, wanted)
    assert len(listing) == 500
    assert [listing.progress(i).image_render_process_id for i in range(len(listing.ids))] == [
        pids[3],
        pids[499],
    ]
    assert listing.progress(0).tasks == {"task-3": 5}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b'{"$id":"1","$values":[{"imageRenderProcessId":"a"},{"imageRenderProcessId":"b"}',  # cut short
        b'[{"imageRenderProcessId":"a"},{"imageRenderProcessId":7}]',
        b"<html>gateway</html>",
    ],
)
async def test_a_malformed_or_cut_short_listing_over_loopback_is_an_unexpected_response(body: bytes) -> None:
    async with (
        serving(body, step=7) as api,
        AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as c,
    ):
        with pytest.raises(UnexpectedResponseError, match="does not match the documented shape") as caught:
            await c.background_remover._listing(USER, {"a"})
        assert caught.value.status == 200
        # the client goes on (the connection of a body not read to its end is not reused): the same again
        with pytest.raises(UnexpectedResponseError, match="does not match the documented shape"):
            await c.background_remover._listing(USER, {"a"})


@pytest.mark.anyio
async def test_the_documented_nothing_found_answer_is_still_an_empty_listing() -> None:
    async with (
        Emulator() as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        listing = await client.background_remover._listing(USER, {"a"})  # a user without processes
        assert emulator.request_count("Image/BackgroundRemoving/CheckUserProgress") == 1
        # a complete listing all the same: the client's reconcile records have their baseline
        assert client._ledger._users[("background_remover", USER)].baseline
    assert len(listing) == 0
    assert listing.ids == []


# ------------------------------------------------ a large listing polled, few awaited: memory bounded

SEEDED = 6000  # processes listed besides the awaited ones
AWAITED = 8  # more than the scheduler asks for by id: every poll reads the listing
IMAGE = sample_image("png", (2, 2))


async def _seed(credentials: dict[str, str]) -> None:
    async with AdCreativeClient(**credentials, user_id=USER, trust_env=False) as client:  # type: ignore[arg-type]
        limit = anyio.Semaphore(32)

        async def start() -> None:
            async with limit:
                await client.background_remover.remove(IMAGE)

        async with anyio.create_task_group() as group:
            for _ in range(SEEDED):
                group.start_soon(start)


@pytest.fixture(scope="module")
def seeded() -> Iterator[dict[str, str]]:
    """The emulator in its own process (its memory is not the client's), its user holding SEEDED
    processes; the client's credentials."""
    command = [sys.executable, "-m", "adcreative_async.testing", "--port", "0", "--task-duration", "0.05"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info: dict[str, Any] = json.loads(process.stdout.readline())
        keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
        credentials = {k: str(info[k]) for k in keys}
        anyio.run(_seed, credentials)
        yield credentials
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


class HeapPeak:
    """The peak of the traced heap over a block, above what it held at the block's start; and what the
    block left allocated (``kept``)."""

    def __init__(self) -> None:
        self.peak = self.kept = 0

    def __enter__(self) -> HeapPeak:
        gc.collect()
        tracemalloc.start()
        self._before = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        now, peak = tracemalloc.get_traced_memory()
        self.peak, self.kept = peak - self._before, now - self._before
        tracemalloc.stop()


def listing_size(everything: list[Progress]) -> int:
    """The listing's JSON (the wire adds Newtonsoft's "$id"s: a little more)."""
    size = len(msgspec.json.encode(everything))
    assert size > 2_000_000
    return size


@pytest.mark.anyio
async def test_polling_a_listing_far_larger_than_the_awaited_set_never_holds_it(
    seeded: dict[str, str],
) -> None:
    async with AdCreativeClient(**seeded, user_id=USER, trust_env=False) as client:  # type: ignore[arg-type]
        resource = client.background_remover
        jobs = [await resource.remove(IMAGE) for _ in range(AWAITED)]
        listed: list[int] = []
        real_listing = resource._listing

        async def counted(*args: Any, **kwargs: Any) -> ProgressListing:
            listing = await real_listing(*args, **kwargs)
            listed.append(len(listing))
            return listing

        resource._listing = counted  # type: ignore[method-assign]
        with HeapPeak() as heap:
            results = [await job.result(timeout=60) for job in jobs]
        del resource._listing
        everything = await resource.user_progress()
    assert max(listed, default=0) >= SEEDED  # the polls read the whole listing
    assert [r.process_id for r in results] == [job.process_id for job in jobs]
    assert all(r.is_complete and r.succeeded_task_ids for r in results)
    by_id = {p.image_render_process_id: p for p in everything}
    assert [by_id[r.process_id].tasks for r in results] == [r.tasks for r in results]
    # before the listing was streamed, a poll held the body and every element's ids: twice the bound
    assert heap.peak < listing_size(everything) / 2


@pytest.mark.anyio
async def test_the_listing_before_a_users_first_start_call_is_not_held_either(seeded: dict[str, str]) -> None:
    # a new client knows nothing of the user: its first start call lists the user's processes first
    # (the reconcile baseline), recording their ids
    async with AdCreativeClient(**seeded, user_id=USER, trust_env=False) as client:  # type: ignore[arg-type]
        resource = client.background_remover
        with HeapPeak() as heap:
            job = await resource.remove(IMAGE)
        known = client._ledger._users[(resource.feature.name, USER)]
        assert known.baseline
        assert len(known.known) > SEEDED  # every listed process recorded, and the call's own
        assert job.process_id.lower() in known.known
        everything = await resource.user_progress()
    # what the listing cost beyond the ids recorded (kept by design, MAX_KNOWN_PER_USER): before, the
    # whole listing was decoded into progress objects, more than the body itself
    assert heap.peak - heap.kept < listing_size(everything) / 2
