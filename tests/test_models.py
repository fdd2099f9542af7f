"""Decoding: every example payload of the seeds, Newtonsoft metadata, open enums, timestamps."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest
from seed_examples import SeedExample, examples

from adcreative_async import Progress, RenderKind, RenderState, RenderType
from adcreative_async._errors import parse_error_body
from adcreative_async._models import PROGRESS_DECODER, decode_progress_list, parse_timestamp

PROGRESS_KEYS = {"messageType", "imageRenderProcessId"}


def _kind(example: SeedExample) -> str:
    value: Any = example.value
    if isinstance(value, list) or "$values" in value:
        return "progress-list"
    if value.keys() >= PROGRESS_KEYS:
        return "progress"
    if "errors" in value and "status" in value:
        return "error"
    return "request"  # request bodies, headers and query examples


ALL = examples()


def test_the_seeds_have_the_expected_number_of_examples() -> None:
    # If a seed changes, this count changes: look at the new examples and classify them.
    assert len(ALL) == 37
    kinds = [_kind(e) for e in ALL]
    assert kinds.count("progress") == 3
    assert kinds.count("progress-list") == 4
    assert kinds.count("error") == 20
    assert kinds.count("request") == 10


@pytest.mark.parametrize("example", [e for e in ALL if _kind(e) == "progress"], ids=lambda e: e.id)
def test_every_seed_progress_object_decodes(example: SeedExample) -> None:
    raw = json.dumps(example.value).encode()
    progress = PROGRESS_DECODER.decode(raw)
    value = example.value
    assert progress.image_render_process_id == value["imageRenderProcessId"]
    assert progress.message_type == value["messageType"]
    assert progress.request_render_state == value["requestRenderState"]
    assert progress.total_task_count == value["totalTaskCount"]
    assert progress.completed_task_count == value["completedTaskCount"]
    assert progress.progress == value["progress"]
    expected_tasks = {k: v for k, v in value["tasks"].items() if not k.startswith("$")}
    assert progress.tasks == expected_tasks
    assert all(not k.startswith("$") for k in progress.tasks)
    assert progress.render_kind == value.get("renderKind")
    assert progress.render_type == value.get("renderType")
    assert progress.is_successful is True
    assert progress.error_message == ""


@pytest.mark.parametrize("example", [e for e in ALL if _kind(e) == "progress-list"], ids=lambda e: e.id)
def test_every_seed_progress_list_decodes(example: SeedExample) -> None:
    raw = json.dumps(example.value).encode()
    items = decode_progress_list(raw)
    source = example.value if isinstance(example.value, list) else example.value["$values"]
    assert [p.image_render_process_id for p in items] == [s["imageRenderProcessId"] for s in source]
    for progress, item in zip(items, source, strict=True):
        assert progress.tasks == {k: v for k, v in item["tasks"].items() if not k.startswith("$")}


@pytest.mark.parametrize("example", [e for e in ALL if _kind(e) == "error"], ids=lambda e: e.id)
def test_every_seed_error_body_parses(example: SeedExample) -> None:
    parsed = parse_error_body(json.dumps(example.value).encode())
    value = example.value
    assert parsed.is_json
    assert parsed.title == value["title"]
    trace = value.get("traceId") or (value.get("extensions") or {}).get("traceId")
    assert parsed.trace_id == trace
    expected = {k: tuple(v) for k, v in value["errors"].items() if not k.startswith("$")}
    assert dict(parsed.entries) == expected


def test_application_progress_example_keeps_non_guid_task_keys() -> None:
    example = next(e for e in ALL if isinstance(e.value, list))
    (progress,) = decode_progress_list(json.dumps(example.value).encode())
    assert progress.tasks == {"taskId1": 1, "taskId2": 1}
    # counts stay authoritative although the map lists 2 of 5 tasks
    assert (progress.total_task_count, progress.completed_task_count, progress.progress) == (5, 4, 80)
    assert not progress.is_complete


def test_completed_seed_process_is_complete() -> None:
    example = next(e for e in ALL if _kind(e) == "progress-list" and e.seed == "adcreative.txt")
    (progress,) = decode_progress_list(json.dumps(example.value).encode())
    assert progress.is_complete
    assert len(progress.succeeded_task_ids) == 10
    assert progress.state is RenderState.SUCCEEDED


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[]", []),
        (b'{"$id": "1", "$values": []}', []),
        (b'{"$values": [{"imageRenderProcessId": "p", "tasks": {}}]}', ["p"]),
    ],
)
def test_lists_accept_arrays_and_wrappers(body: bytes, expected: list[str]) -> None:
    assert [p.process_id for p in decode_progress_list(body)] == expected


def test_unknown_fields_are_ignored_and_unknown_states_kept() -> None:
    body = b'{"imageRenderProcessId": "p", "newField": {"x": 1}, "requestRenderState": 42, "tasks": {"t": 9}}'
    progress = PROGRESS_DECODER.decode(body)
    assert progress.tasks == {"t": 9}
    assert progress.state == 42
    assert progress.state.name == "UNNAMED_42"
    assert not progress.state.is_terminal
    assert not progress.is_complete


@pytest.mark.parametrize(("raw", "value"), [(b"33.5", 33.5), (b'"80"', 80), (b"100", 100), (b"99.99", 99.99)])
def test_progress_tolerates_non_integers(raw: bytes, value: float) -> None:
    body = b'{"imageRenderProcessId": "p", "progress": ' + raw + b"}"
    assert PROGRESS_DECODER.decode(body).progress == value


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"tasks": {}}',  # no process id
        b'{"imageRenderProcessId": "p", "tasks": {"t": "done"}}',
        b'{"imageRenderProcessId": "p", "tasks": []}',
        b"null",
    ],
)
def test_malformed_progress_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        PROGRESS_DECODER.decode(body)


def test_progress_round_trips_in_wire_form() -> None:
    body = (
        b'{"imageRenderProcessId": "p", "messageType": "X", "tasks": {"$id": "3", "a": 5}, "progress": 100}'
    )
    progress = PROGRESS_DECODER.decode(body)
    again = PROGRESS_DECODER.decode(msgspec.json.encode(progress))
    assert again == progress
    assert b'"imageRenderProcessId"' in msgspec.json.encode(progress)


def test_open_enums_keep_unknown_values() -> None:
    assert RenderKind(1) is RenderKind.POST
    assert RenderKind(40000) == 40000
    assert RenderKind(40000) is RenderKind(40000)
    assert RenderKind(40000).name == "UNNAMED_40000"
    assert not RenderKind(40000).is_named
    assert RenderType(8).name == "UNNAMED_8"
    assert RenderType.SVG.is_named
    assert RenderState(5) is RenderState.SUCCEEDED
    assert RenderState.SUCCEEDED.is_terminal
    assert not RenderState.STARTED.is_terminal
    with pytest.raises(ValueError, match="not a valid"):
        RenderKind("post")  # type: ignore[arg-type]


def test_render_kind_composites_are_the_documented_sums() -> None:
    singles = [RenderKind.POST, RenderKind.STORY, RenderKind.LANDSCAPE, RenderKind.VERTICAL]
    assert sum(singles) + RenderKind.PIN_SIZE == RenderKind.SOCIAL
    display = [
        RenderKind.MEDIUM_BANNER,
        RenderKind.LEADER_BOARD,
        RenderKind.WIDE_SKY_SCRAPER,
        RenderKind.HALF_PAGE,
        RenderKind.LARGE_LEADERBOARD,
    ]
    assert sum(display) == RenderKind.DISPLAY
    assert RenderKind.SOCIAL + RenderKind.DISPLAY == RenderKind.ALL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-20T11:57:50.974699Z", datetime(2024, 12, 20, 11, 57, 50, 974699, timezone.utc)),
        ("2024-12-20T11:57:50.9746991Z", datetime(2024, 12, 20, 11, 57, 50, 974699, timezone.utc)),
        ("2024-12-20T11:57:50", datetime(2024, 12, 20, 11, 57, 50, tzinfo=timezone.utc)),
        ("2024-12-20T11:57:50.5", datetime(2024, 12, 20, 11, 57, 50, 500000, timezone.utc)),
        ("2024-12-20T13:57:50+02:00", datetime(2024, 12, 20, 11, 57, 50, tzinfo=timezone.utc)),
        ("2024-12-20 11:57:50-0130", datetime(2024, 12, 20, 13, 27, 50, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_parse_as_utc(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2024-12-20", "2024-13-45T99:00:00Z"])
def test_bad_timestamps_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by cause
        parse_timestamp(text)


def test_progress_is_immutable() -> None:
    progress = Progress(image_render_process_id="p")
    with pytest.raises(AttributeError):
        progress.progress = 5  # type: ignore[misc]


def test_newtonsoft_ids_in_tasks_maps_are_dropped_without_becoming_render_states() -> None:
    # Newtonsoft numbers every object: a large listing's tasks maps carry "$id" values in the thousands.
    # Decoded as states, each would call RenderState._missing_ and stay in the enum's member map.
    known = len(RenderState._value2member_map_)
    body = json.dumps(
        {
            "$id": "1",
            "$values": [
                {
                    "$id": str(10_000 + 2 * i),
                    "imageRenderProcessId": f"p{i}",
                    "tasks": {"$id": str(10_001 + 2 * i), "t": 5},
                }
                for i in range(500)
            ],
        }
    ).encode()
    listing = decode_progress_list(body)
    assert [p.tasks for p in listing] == [{"t": RenderState.SUCCEEDED}] * 500
    assert all(type(state) is RenderState for p in listing for state in p.tasks.values())
    assert len(RenderState._value2member_map_) == known


def test_a_task_state_sent_as_a_string_is_read_as_a_number_or_refused() -> None:
    progress = PROGRESS_DECODER.decode(b'{"imageRenderProcessId": "p", "tasks": {"t": "5"}}')
    assert progress.tasks == {"t": RenderState.SUCCEEDED}
    assert type(progress.tasks["t"]) is RenderState
    with pytest.raises(msgspec.ValidationError, match="not a number"):
        PROGRESS_DECODER.decode(b'{"imageRenderProcessId": "p", "tasks": {"t": "done"}}')
