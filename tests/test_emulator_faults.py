"""The emulator's random faults (chaos tests rely on them): each kind, on its route, as a client sees it."""

from __future__ import annotations

import json

import aiohttp
import anyio
import pytest
from helpers import eventually

from adcreative_async.testing import Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
ROUTE = "Image/BackgroundRemoving/CheckUserProgress"


async def token(session: aiohttp.ClientSession, emu: Emulator) -> dict[str, str]:
    body = {"applicationId": emu.application_id, "jwtPrivateKey": emu.jwt_private_key}
    async with session.post(f"{emu.base_url}/api/v1/Authorization/GenerateJwtToken", json=body) as response:
        access = (await response.json())["accessToken"]
    return {"Authorization": f"Bearer {access}", "x-api-key": emu.api_key, "x-api-secret": emu.api_secret}


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("server_error", "5xx"),
        ("rate_limit", "429"),
        ("reset", "dropped"),
        ("lost_response", "dropped"),
        ("slow", "slow"),
    ],
)
async def test_each_fault_kind(kind: str, expect: str) -> None:
    faults = {ROUTE: Faults(**{kind: 1.0}, slow_seconds=0.05)}
    async with Emulator(faults=faults, seed=1) as emu, aiohttp.ClientSession() as session:
        headers = await token(session, emu)  # the token route has no faults
        url = f"{emu.base_url}/api/v1/{ROUTE}"
        try:
            async with session.get(url, params={"userId": USER}, headers=headers) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            status = 0
        if expect == "5xx":
            assert status in (500, 502, 503, 504)
        elif expect == "429":
            assert (status, response.headers["Retry-After"]) == (429, "1")
        elif expect == "dropped":
            assert status == 0
        else:
            assert status == 404  # served after the delay: nothing found for that user (seed 000)
        # aiohttp resends a GET once when the connection drops: every request drew the fault
        assert emu.injected_faults == {kind: emu.request_count(ROUTE)}


async def test_malformed_answers_are_served_requests_with_a_broken_body() -> None:
    route = "Authorization/GenerateJwtToken"
    async with (
        Emulator(faults={route: Faults(malformed=1.0)}, seed=1) as emu,
        aiohttp.ClientSession() as session,
    ):
        body = {"applicationId": emu.application_id, "jwtPrivateKey": emu.jwt_private_key}
        async with session.post(f"{emu.base_url}/api/v1/{route}", json=body) as response:
            assert response.status == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(await response.read())
        assert emu.injected_faults == {"malformed": 1}


async def test_lost_responses_are_served_before_the_connection_drops() -> None:
    start = "Image/BackgroundRemoving/AdCreative"
    async with (
        Emulator(faults={start: Faults(lost_response=1.0)}, seed=2) as emu,
        aiohttp.ClientSession() as session,
    ):
        headers = await token(session, emu)
        form = aiohttp.FormData()
        form.add_field("applicationId", emu.application_id)
        form.add_field("userId", USER)
        form.add_field(
            "uploadedImage", sample_image("png", (8, 8)), filename="a.png", content_type="image/png"
        )
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{emu.base_url}/api/v1/{start}", data=form, headers=headers) as response:
                await response.read()
        (made,) = emu.processes_for(USER)  # the render exists although its answer was lost
        assert made.feature


START = "Image/BackgroundRemoving/AdCreative"


def start_form(emu: Emulator) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("applicationId", emu.application_id)
    form.add_field("userId", USER)
    form.add_field("uploadedImage", sample_image("png", (8, 8)), filename="a.png", content_type="image/png")
    return form


async def test_served_errors_make_the_render_then_answer_a_gateway_error() -> None:
    async with (
        Emulator(faults={START: Faults(served_error=1.0)}, seed=3) as emu,
        aiohttp.ClientSession() as session,
    ):
        headers = await token(session, emu)
        async with session.post(
            f"{emu.base_url}/api/v1/{START}", data=start_form(emu), headers=headers
        ) as response:
            await response.read()
            assert response.status in (502, 503, 504)
        (made,) = emu.processes_for(USER)  # served: the render exists although a gateway error came back
        assert made.feature
        assert emu.injected_faults == {"served_error": 1}


async def test_a_start_is_answered_start_latency_after_its_render_is_listed() -> None:
    async with Emulator(start_latency=(0.05, 0.1), seed=4) as emu, aiohttp.ClientSession() as session:
        headers = await token(session, emu)
        answered: list[str] = []
        listed_before_answer: list[bool] = []

        async def start() -> None:
            url = f"{emu.base_url}/api/v1/{START}"
            async with session.post(url, data=start_form(emu), headers=headers) as response:
                answered.append((await response.json())["imageRenderProcessId"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await eventually(lambda: bool(emu.processes_for(USER)))
            listed_before_answer.append(not answered)  # the render exists, its answer not yet sent
            async with session.get(
                f"{emu.base_url}/api/v1/{ROUTE}", params={"userId": USER}, headers=headers
            ) as response:
                listing = (await response.json())["$values"]
            listed_before_answer.append(not answered)
        (made,) = emu.processes_for(USER)
    assert listed_before_answer == [True, True]
    assert [p["imageRenderProcessId"] for p in listing] == [made.process_id]
    assert answered == [made.process_id]


def test_start_latency_is_checked() -> None:
    with pytest.raises(ValueError, match="start_latency"):
        Emulator(start_latency=(0.3, 0.1))
    with pytest.raises(ValueError, match="start_latency"):
        Emulator(start_latency=-1)


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        Faults(server_error=0.6, reset=0.6)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Faults(truncate=-0.1)


async def test_result_bytes_are_what_a_download_of_the_task_returns() -> None:
    async with Emulator(auto_complete=False, seed=5) as emu, aiohttp.ClientSession() as session:
        headers = await token(session, emu)
        bodies: list[bytes] = []
        for _ in range(2):
            async with session.post(
                f"{emu.base_url}/api/v1/{START}", data=start_form(emu), headers=headers
            ) as response:
                process_id = (await response.json())["imageRenderProcessId"]
            emu.finish_process(process_id)
            (task_id,) = emu.process(process_id).tasks
            query = {
                "applicationId": emu.application_id,
                "taskId": task_id,
                "imageBackgroundRemoverProcessId": process_id,
                "lowResolution": "false",
            }
            url = f"{emu.base_url}/api/v1/Image/BackgroundRemoving/Download"
            async with session.get(url, params=query, headers=headers) as response:
                assert response.status == 200
                bodies.append(await response.read())
            assert bodies[-1] == emu.result_bytes(task_id)
        with pytest.raises(KeyError):
            emu.result_bytes("00000000-0000-4000-8000-000000000000")
    assert bodies[0] != bodies[1]  # each task's image is its own: a file tells which render it is
