"""Property-based tests (hypothesis): every decoder and the error parser, fed random and mutated payloads,
give typed results or the SDK's typed errors — never another exception, never a hang."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_examples import examples

from adcreative_async import (
    APIError,
    InvalidRequestError,
    ManualClock,
    Progress,
    RenderJob,
    UnexpectedResponseError,
)
from adcreative_async._auth import Secret, TokenManager
from adcreative_async._downloads import safe_filename
from adcreative_async._errors import AdCreativeError, build_api_error, parse_error_body
from adcreative_async._models import PROGRESS_DECODER, decode_progress_list, parse_timestamp
from adcreative_async._transport import Response
from adcreative_async.notifications import (
    MessageDecodeError,
    Notification,
    TaskCompletedNotification,
    decode_notification,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
SEED_VALUES = [e.value for e in examples()]
KEYS = sorted(
    {k for v in SEED_VALUES if isinstance(v, dict) for k in v} | {"$id", "$values", "$ref", "tasks"}
)


def mutate(value: Any, data: st.DataObject) -> Any:
    """A seed example with one random change somewhere: a key dropped, a value replaced, a type changed."""
    result = copy.deepcopy(value)
    containers: list[Any] = [result]
    stack = [result]
    while stack:
        item = stack.pop()
        children = list(item.values()) if isinstance(item, dict) else item if isinstance(item, list) else []
        for child in children:
            if isinstance(child, (dict, list)):
                containers.append(child)
                stack.append(child)
    target = data.draw(st.sampled_from(containers))
    if isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)))
        action = data.draw(st.sampled_from(["drop", "replace", "rename"]))
        if action == "drop":
            del target[key]
        elif action == "replace":
            target[key] = data.draw(json_values)
        else:
            target[data.draw(st.sampled_from(KEYS))] = target.pop(key)
    elif isinstance(target, list) and target:
        target[data.draw(st.integers(0, len(target) - 1))] = data.draw(json_values)
    return result


def decode_response(body: bytes) -> list[Progress]:
    """Decode a listing the way the client does: typed result or UnexpectedResponseError."""
    return Response(200, {}, body, "Image/Generation/CheckUserProgress").decode(decode_progress_list)


@SETTINGS
@given(st.binary(max_size=300))
def test_progress_lists_from_random_bytes(body: bytes) -> None:
    with contextlib.suppress(UnexpectedResponseError):
        assert isinstance(decode_response(body), list)


@SETTINGS
@given(json_values)
def test_progress_lists_from_random_json(value: Any) -> None:
    try:
        result = decode_response(json.dumps(value).encode())
    except UnexpectedResponseError:
        return
    assert all(isinstance(p, Progress) and not any(k.startswith("$") for k in p.tasks) for p in result)


@SETTINGS
@given(st.data())
def test_mutated_seed_examples_decode_or_fail_typed(data: st.DataObject) -> None:
    value = mutate(data.draw(st.sampled_from(SEED_VALUES)), data)
    body = json.dumps(value).encode()
    with contextlib.suppress(UnexpectedResponseError):
        decode_response(body)
    with contextlib.suppress(UnexpectedResponseError):
        Response(200, {}, body, "x").decode(PROGRESS_DECODER.decode)


@SETTINGS
@given(st.integers(100, 599), st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_error_parser_never_raises(status: int, body: bytes) -> None:
    error = build_api_error(status, body, headers={"Retry-After": "x"}, params={"color1Hex": "color1_hex"})
    assert isinstance(error, APIError)
    assert error.status == status
    assert str(error).startswith(str(status))
    parse_error_body(body)


@SETTINGS
@given(st.data())
def test_error_parser_on_mutated_seed_errors(data: st.DataObject) -> None:
    value = mutate(
        data.draw(st.sampled_from([v for v in SEED_VALUES if isinstance(v, dict) and "errors" in v])), data
    )
    error = build_api_error(400, json.dumps(value).encode())
    assert isinstance(error, APIError)
    assert all(not key.startswith("$") for key in error.errors)


NOTIFICATION = {
    "MessageType": "ImageGenerationTaskCompleted",
    "ApplicationId": "d5eabbb8-c0f6-4640-94fd-3566edad499f",
    "UserId": "2581c740-8e9d-4d63-96bc-5665bb9a646b",
    "ImageRenderProcessId": "51d690da-f5ea-405e-90ff-10d56b0d633f",
    "TaskId": "9baa8e55-ddc8-4940-907f-eb5fc81e53f6",
    "ImageContentBytes": "aGk=",
    "IsSuccessful": True,
    "ErrorMessage": "",
    "Tasks": {"$id": "2", "9baa8e55-ddc8-4940-907f-eb5fc81e53f6": 5},
}

GUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


@SETTINGS
@given(st.data())
def test_notifications_decode_or_fail_typed(data: st.DataObject) -> None:
    choice = data.draw(st.sampled_from(["random", "mutated", "bytes"]))
    if choice == "bytes":
        body = data.draw(st.binary(max_size=200))
    elif choice == "random":
        body = json.dumps(data.draw(json_values)).encode()
    else:
        value = dict(NOTIFICATION)
        value["MessageType"] = data.draw(
            st.sampled_from(["ImageGenerationTaskCompleted", "ImageUpscalingProgress", "ImageFuture"])
        )
        body = json.dumps(mutate(value, data)).encode()
    try:
        message = decode_notification(body)
    except MessageDecodeError:
        return
    assert isinstance(message, Notification)
    ids = [message.image_render_process_id]
    ids += [i for i in (message.user_id, message.application_id) if i]  # absent: empty
    ids += [message.task_id] if isinstance(message, TaskCompletedNotification) else list(message.tasks)
    assert all(GUID.fullmatch(i) for i in ids)


@SETTINGS
@given(st.text(max_size=300) | st.sampled_from(["..", ".", "../x", "a/../../b", "\\\\server\\x", "C:..\\x"]))
def test_server_file_names_are_always_one_plain_name(name: str) -> None:
    safe = safe_filename(name)
    if safe is None:
        return
    assert safe not in ("", ".", "..")
    assert not safe.startswith(".")
    assert not set(safe) & set("/\\\x00")
    assert len(safe.encode()) <= 255
    directory = os.path.abspath("some-dir")
    assert os.path.dirname(os.path.abspath(os.path.join(directory, safe))) == directory


@SETTINGS
@given(st.text(max_size=40))
def test_timestamps_parse_or_raise_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_timestamp(text)


@SETTINGS
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_job_json_rebuilds_or_fails_typed(body: bytes) -> None:
    try:
        job = RenderJob.from_json(body)
    except InvalidRequestError:
        return
    assert isinstance(job, RenderJob)


@SETTINGS
@given(
    json_values
    | st.dictionaries(
        st.sampled_from(["accessToken", "accessTokenExpiration", "refreshToken", "refreshTokenExpiration"]),
        json_values,
    )
)
def test_token_answers_give_a_token_or_a_typed_error(value: Any) -> None:
    body = json.dumps(value).encode()

    async def send(route: str, payload: bytes) -> tuple[int, Mapping[str, str], bytes]:
        return 200, {"Date": "garbage"}, body

    async def run() -> None:
        manager = TokenManager(application_id="a", private_key=Secret("k"), send=send, clock=ManualClock())
        try:
            token = await manager.access_token()
        except AdCreativeError:
            return
        assert isinstance(token, str)

    anyio.run(run)


def test_mutations_start_from_every_seed_example() -> None:
    assert len(SEED_VALUES) == 37  # a new seed example joins the mutated population automatically
