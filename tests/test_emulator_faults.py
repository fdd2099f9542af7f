"""The emulator's random faults (chaos tests rely on them): each kind, on its route, as a client sees it."""

from __future__ import annotations

import json

import aiohttp
import pytest

from adcreative_async.testing import Emulator, Faults

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
        from adcreative_async.testing import sample_image

        form.add_field(
            "uploadedImage", sample_image("png", (8, 8)), filename="a.png", content_type="image/png"
        )
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{emu.base_url}/api/v1/{start}", data=form, headers=headers) as response:
                await response.read()
        (made,) = emu.processes_for(USER)  # the render exists although its answer was lost
        assert made.feature


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        Faults(server_error=0.6, reset=0.6)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Faults(truncate=-0.1)
