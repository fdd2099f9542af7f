"""Golden test: every JSON example of the seeds, reproduced against the emulator and compared in shape.

For a response example the situation is recreated (right endpoint, inputs that trigger that status) and
the emulator's body must have the same status, the same keys in the same order and casing at every
level, ``$id``/``$values`` in the same places, the same error shape, the same numbers and the same
messages once GUIDs and trace ids are replaced by placeholders. Task maps compare by their ``$`` keys
and the type of their values (the seeds list 2 of 5 or 4 of 10 tasks; counts are checked in full by
``test_emulator.py``).

For a request example (headers, body, query parameters) its names must be exactly the ones the
emulator reads, and the request it describes must succeed (or, for headers, fail with 401 when any
credential header is left out).

The last test proves that every example has exactly one golden case.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from seed_examples import SeedExample, examples
from test_emulator import (
    BR_APP,
    BR_DOWNLOAD,
    BR_START,
    BR_USER,
    BY_KIND,
    EDIT,
    GEN_APP,
    GEN_DOWNLOAD,
    GEN_USER,
    GENERATION_FILES,
    JPEG,
    PNG,
    USER_ID,
    Api,
    Reply,
    generation_fields,
    running,
)

from adcreative_async.testing._endpoints import AUTH_HEADERS, ENDPOINTS_BY_ROUTE, FORM, Endpoint

GUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
TRACE_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00")
STATUS_RE = re.compile(r"HTTP (?:Status Code: )?(\d{3})")

RESPONSE = "response"
HEADERS = "request headers"
BODY = "request body"
QUERY = "query parameters"

OTHER_USER_ID = "30430501-840a-4cbb-a1dd-b00f722bd79f"

Scenario = Callable[[Api], Awaitable[Reply]]


def endpoint(route: str) -> Endpoint:
    return ENDPOINTS_BY_ROUTE[route.lower()]


def text(value: str) -> str:
    """A string with trace ids and GUIDs replaced by placeholders."""
    return GUID_RE.sub("<guid>", TRACE_RE.sub("<trace>", value))


def skeleton(value: Any, key: str = "") -> Any:
    """What must agree between a seed example and the emulator's body: keys in order, ``$`` metadata,
    numbers, booleans, nulls and texts (with placeholders); a task map collapses to its ``$`` keys and
    the types of its states."""
    if isinstance(value, dict):
        if key == "tasks":
            meta = [(k, skeleton(v, k)) for k, v in value.items() if k.startswith("$")]
            states = sorted({type(v).__name__ for k, v in value.items() if not k.startswith("$")})
            return [*meta, ("<task ids>", states)]
        return [(text(k), skeleton(v, k)) for k, v in value.items()]
    if isinstance(value, list):
        return [skeleton(item, key) for item in value]
    if isinstance(value, str):
        return text(value)
    return value


def classify(example: SeedExample) -> str:
    """What an example shows, from the line just above it."""
    last = example.context[-1]
    if "Headers" in last:
        return HEADERS
    if "Request Body" in last:
        return BODY
    if "Query Parameters" in last:
        return QUERY
    return RESPONSE


def documented_status(example: SeedExample) -> int:
    """The status an example documents: its body's ``status``, else the nearest status line above it."""
    if isinstance(example.value, dict) and isinstance(example.value.get("status"), int):
        return int(example.value["status"])
    for line in reversed(example.context):
        match = STATUS_RE.search(line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no status documented for {example.id}")


# scenarios: each recreates the situation of one response example -----------------------------------


def without_credentials(route: str) -> Scenario:
    """Any documented endpoint called with no credential headers at all."""

    async def scenario(api: Api) -> Reply:
        ep = endpoint(route)
        if ep.body == FORM:
            return await api.post_form(route, {}, headers={})
        return await api.get(route, {}, headers={})

    return scenario


async def generation_start(api: Api) -> Reply:
    fields = generation_fields(api.emu.application_id)
    return await api.post_form(BY_KIND, fields, GENERATION_FILES)


async def generation_start_without_color1_and_brand_image(api: Api) -> Reply:
    fields = generation_fields(api.emu.application_id, color1Hex=None)
    return await api.post_form(BY_KIND, fields, {"backgroundImage": JPEG})


async def generation_edit_of_two_tasks(api: Api) -> Reply:
    started = await api.completed_generation()
    return await api.edit(list(started["tasks"])[:2], mainHeadline="Main headline yeni")


async def generation_edit_without_task_ids(api: Api) -> Reply:
    return await api.post_form(EDIT, {"applicationId": api.emu.application_id, "userId": USER_ID})


async def generation_edit(api: Api) -> Reply:
    return await api.edit(["24929cc8-34da-455b-a4f1-61f895ac3a06"])


async def generation_user_progress_of_a_finished_process(api: Api) -> Reply:
    started = await api.completed_generation()
    return await api.user_progress(process_id=started["imageRenderProcessId"])


async def generation_application_progress_at_80(api: Api) -> Reply:
    started = await api.start_generation(userId=OTHER_USER_ID, renderType="16")
    for task_id in list(started["tasks"])[:4]:
        api.emu.finish_task(task_id)
    return await api.get(GEN_APP, {"applicationId": api.emu.application_id})


def download_with_task_id(route: str, task_id: str) -> Scenario:
    async def scenario(api: Api) -> Reply:
        return await api.download(
            "e6c59f37-a794-468d-81aa-c9ef79dc042c", task_id, route, lowResolution="false"
        )

    return scenario


async def background_start(api: Api) -> Reply:
    fields = {"applicationId": api.emu.application_id, "userId": USER_ID}
    return await api.post_form(BR_START, fields, {"uploadedImage": JPEG})


async def background_start_without_upload(api: Api) -> Reply:
    return await api.post_form(BR_START, {"applicationId": api.emu.application_id, "userId": USER_ID})


async def background_user_progress_of_a_finished_process(api: Api) -> Reply:
    started = await api.start_background_removal()
    process_id = started["imageRenderProcessId"]
    api.emu.finish_process(process_id)
    return await api.get(BR_USER, {"userId": USER_ID, "imageBackgroundRemoverProcessId": process_id})


async def background_user_progress_without_user(api: Api) -> Reply:
    return await api.get(BR_USER, {})


async def background_application_progress_of_two(api: Api) -> Reply:
    await api.start_background_removal()
    await api.start_background_removal()
    return await api.get(BR_APP, {"applicationId": api.emu.application_id})


async def background_application_progress_without_application(api: Api) -> Reply:
    return await api.get(BR_APP, {})


async def background_application_progress_of_nothing(api: Api) -> Reply:
    return await api.get(BR_APP, {"applicationId": api.emu.application_id})


@dataclass(frozen=True)
class Case:
    """How one seed example is reproduced.

    Attributes:
        kind: What the example shows (RESPONSE, HEADERS, BODY or QUERY).
        route: The endpoint it documents.
        scenario: For a response: the calls that recreate its situation.
        options: Emulator options the situation needs.
    """

    kind: str
    route: str
    scenario: Scenario | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


NO_CHANNEL = {"notification_channel": False}
TEN_TASKS = {"tasks_per_size": 10}

CASES: dict[str, Case] = {
    # Background Remover (seed 000)
    "background_remover:144": Case(RESPONSE, BR_START, background_start),
    "background_remover:167": Case(RESPONSE, BR_START, background_start_without_upload),
    "background_remover:186": Case(RESPONSE, BR_START, without_credentials(BR_START)),
    "background_remover:297": Case(RESPONSE, BR_USER, background_user_progress_of_a_finished_process),
    "background_remover:327": Case(RESPONSE, BR_USER, background_user_progress_without_user),
    "background_remover:347": Case(RESPONSE, BR_USER, without_credentials(BR_USER)),
    "background_remover:429": Case(RESPONSE, BR_APP, background_application_progress_of_two),
    "background_remover:477": Case(RESPONSE, BR_APP, background_application_progress_without_application),
    "background_remover:494": Case(RESPONSE, BR_APP, without_credentials(BR_APP)),
    "background_remover:516": Case(RESPONSE, BR_APP, background_application_progress_of_nothing),
    "background_remover:673": Case(RESPONSE, BR_DOWNLOAD, without_credentials(BR_DOWNLOAD)),
    "background_remover:695": Case(
        RESPONSE, BR_DOWNLOAD, download_with_task_id(BR_DOWNLOAD, "e6c59f37-a794-234f-56yu-c9ef79dc042c")
    ),
    "background_remover:715": Case(
        RESPONSE, BR_DOWNLOAD, download_with_task_id(BR_DOWNLOAD, "50d04155-2bd9-46c1-85cb-47fa18cd02d7")
    ),
    # AdCreative generation (seed 001)
    "adcreative:12": Case(RESPONSE, BY_KIND, generation_start, NO_CHANNEL),
    "adcreative:115": Case(HEADERS, BY_KIND),
    "adcreative:122": Case(BODY, BY_KIND),
    "adcreative:142": Case(RESPONSE, BY_KIND, generation_start),
    "adcreative:165": Case(RESPONSE, BY_KIND, generation_start_without_color1_and_brand_image),
    "adcreative:179": Case(RESPONSE, BY_KIND, generation_start, NO_CHANNEL),
    "adcreative:198": Case(RESPONSE, BY_KIND, without_credentials(BY_KIND)),
    "adcreative:284": Case(HEADERS, EDIT),
    "adcreative:291": Case(BODY, EDIT),
    "adcreative:312": Case(RESPONSE, EDIT, generation_edit_of_two_tasks, TEN_TASKS),
    "adcreative:334": Case(RESPONSE, EDIT, generation_edit_without_task_ids),
    "adcreative:345": Case(RESPONSE, EDIT, generation_edit, NO_CHANNEL),
    "adcreative:364": Case(RESPONSE, EDIT, without_credentials(EDIT)),
    "adcreative:406": Case(HEADERS, GEN_USER),
    "adcreative:413": Case(QUERY, GEN_USER),
    "adcreative:419": Case(RESPONSE, GEN_USER, generation_user_progress_of_a_finished_process, TEN_TASKS),
    "adcreative:482": Case(HEADERS, GEN_APP),
    "adcreative:489": Case(QUERY, GEN_APP),
    "adcreative:494": Case(RESPONSE, GEN_APP, generation_application_progress_at_80),
    "adcreative:573": Case(HEADERS, GEN_DOWNLOAD),
    "adcreative:580": Case(QUERY, GEN_DOWNLOAD),
    "adcreative:607": Case(RESPONSE, GEN_DOWNLOAD, without_credentials(GEN_DOWNLOAD)),
    "adcreative:625": Case(
        RESPONSE, GEN_DOWNLOAD, download_with_task_id(GEN_DOWNLOAD, "f3008b9d-dba7-471f-abc5-624a9c7d60d")
    ),
    "adcreative:641": Case(
        RESPONSE, GEN_DOWNLOAD, download_with_task_id(GEN_DOWNLOAD, "f3008b9d-dba7-471f-abc5-624a9c7d60d4")
    ),
}

EXAMPLES = examples()


# checks per kind -------------------------------------------------------------------------------------


async def check_response(api: Api, example: SeedExample, case: Case) -> None:
    assert case.scenario is not None
    reply = await case.scenario(api)
    assert reply.status == documented_status(example), reply.body
    body = reply.json()
    assert skeleton(body) == skeleton(example.value)
    content_type = reply.headers["Content-Type"]
    if isinstance(body, dict) and body.get("title") == "One or more validation errors occurred.":
        assert content_type.startswith("application/problem+json")
    else:
        assert content_type.startswith("application/json")


async def check_headers(api: Api, example: SeedExample, case: Case) -> None:
    names = set(example.value)
    assert set(AUTH_HEADERS) <= names
    assert names - set(AUTH_HEADERS) <= {"Content-Type", "Accept"}
    ep = endpoint(case.route)
    if ep.body == FORM:
        assert example.value["Content-Type"] == "multipart/form-data"

    async def call(headers: Mapping[str, str]) -> Reply:
        if ep.body == FORM:
            return await api.post_form(case.route, {}, headers=headers)
        return await api.get(case.route, {}, headers=headers)

    for left_out in AUTH_HEADERS:
        reply = await call({k: v for k, v in api.headers.items() if k != left_out})
        assert reply.status == 401, left_out
    complete = await call(api.headers)
    assert complete.status == 400  # past authentication, stopped by validation of the empty request


async def check_body(api: Api, example: SeedExample, case: Case) -> None:
    ep = endpoint(case.route)
    assert set(example.value) == set(ep.fields) | set(ep.files)
    fields: dict[str, str | list[str]] = {}
    for name, value in example.value.items():
        if name in ep.files or value is None:
            continue
        fields[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
    fields["applicationId"] = api.emu.application_id
    if case.route == EDIT:
        started = await api.completed_generation()
        fields["taskIds"] = list(started["tasks"])[:2]
    reply = await api.post_form(case.route, fields, dict.fromkeys(ep.files, PNG))
    assert reply.status == 200, reply.body
    process = api.emu.process(reply.json()["imageRenderProcessId"])
    inputs = process.edits[-1] if case.route == EDIT else process.inputs
    sent = {name for name, value in example.value.items() if value is not None}
    assert set(inputs.fields) | set(inputs.files) == sent


async def check_query(api: Api, example: SeedExample, case: Case) -> None:
    ep = endpoint(case.route)
    assert set(example.value) == set(ep.fields)
    started = await api.completed_generation()
    params: dict[str, str] = {}
    for name, value in example.value.items():
        if name == "applicationId":
            value = api.emu.application_id
        elif name.endswith("ProcessId"):
            value = started["imageRenderProcessId"]
        elif name == "taskId":
            value = next(iter(started["tasks"]))
        params[name] = str(value)
    reply = await api.get(case.route, params)
    assert reply.status == 200, reply.body


CHECKS = {RESPONSE: check_response, HEADERS: check_headers, BODY: check_body, QUERY: check_query}


@pytest.mark.anyio
@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
async def test_seed_example_is_reproduced(example: SeedExample) -> None:
    case = CASES[example.id]
    assert case.kind == classify(example)
    assert (case.scenario is not None) == (case.kind == RESPONSE)
    async with running(**case.options) as api:
        await CHECKS[case.kind](api, example, case)


def test_every_seed_example_has_exactly_one_golden_case() -> None:
    ids = [example.id for example in EXAMPLES]
    assert len(ids) == len(set(ids)) == 37
    assert set(CASES) == set(ids)
    assert {ENDPOINTS_BY_ROUTE[case.route.lower()].route for case in CASES.values()} == {
        BY_KIND,
        EDIT,
        GEN_USER,
        GEN_APP,
        GEN_DOWNLOAD,
        BR_START,
        BR_USER,
        BR_APP,
        BR_DOWNLOAD,
    }
