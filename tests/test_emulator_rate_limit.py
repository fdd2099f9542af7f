"""The emulator's account rate limit: a token bucket per application, 429 with ``Retry-After`` past it, and
its counters (what tests and benchmarks count at the server)."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from adcreative_async.testing import Credentials, Emulator, RateCounts
from adcreative_async.testing._cli import _emulator, _parser
from adcreative_async.testing._ratelimit import MIN_RETRY_AFTER, parse_rate

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
ROUTE = "Image/BackgroundRemoving/CheckUserProgress"


async def auth_headers(session: aiohttp.ClientSession, credentials: Credentials) -> dict[str, str]:
    """A token (asked for without the API key headers: not counted by the limit) and the headers."""
    body = {"applicationId": credentials["application_id"], "jwtPrivateKey": credentials["jwt_private_key"]}
    url = f"{credentials['base_url']}/api/v1/Authorization/GenerateJwtToken"
    async with session.post(url, json=body) as response:
        access = (await response.json())["accessToken"]
    return {
        "Authorization": f"Bearer {access}",
        "x-api-key": credentials["api_key"],
        "x-api-secret": credentials["api_secret"],
    }


async def progress(
    session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    url = f"{base_url}/api/v1/{ROUTE}"
    async with session.get(url, params={"userId": USER}, headers=headers) as response:
        await response.read()
        return response


async def test_requests_past_the_burst_are_answered_429_with_retry_after_and_counted() -> None:
    async with Emulator(rate_limit=0.5, rate_burst=3) as emu, aiohttp.ClientSession() as session:
        headers = await auth_headers(session, emu.credentials)
        statuses = [(await progress(session, emu.base_url, headers)).status for _ in range(3)]
        refused = await progress(session, emu.base_url, headers)
        assert 429 not in statuses
        assert refused.status == 429
        # a token comes every 2 s: the time until the next one, in whole seconds
        assert int(refused.headers["Retry-After"]) == 2
        assert emu.rate_counts() == RateCounts(accepted=3, limited=1)
        # the bucket refills on the emulator's clock
        emu.advance(2)
        assert (await progress(session, emu.base_url, headers)).status != 429
        assert emu.rate_counts() == RateCounts(accepted=4, limited=1)
        assert emu.request_count(ROUTE) == 5  # refused requests are requests too


async def test_429_body_is_the_layered_error_and_retry_after_is_at_least_one_second() -> None:
    # a token every 0.5 s: the second request comes well within it, even on a loaded machine
    async with Emulator(rate_limit=2, rate_burst=1) as emu, aiohttp.ClientSession() as session:
        headers = await auth_headers(session, emu.credentials)
        await progress(session, emu.base_url, headers)
        async with session.get(
            f"{emu.base_url}/api/v1/{ROUTE}", params={"userId": USER}, headers=headers
        ) as response:
            body = await response.json()
            assert response.status == 429
            assert int(response.headers["Retry-After"]) == MIN_RETRY_AFTER  # under 0.5 s: rounds up to 1 s
        assert body["status"] == 429
        assert any(
            "Too many requests" in message for messages in body["errors"].values() for message in messages
        )


async def test_each_application_has_its_own_bucket() -> None:
    async with Emulator(rate_limit=0.1, rate_burst=1) as emu, aiohttp.ClientSession() as session:
        other = emu.add_application()
        first = await auth_headers(session, emu.credentials)
        second = await auth_headers(session, other)
        assert (await progress(session, emu.base_url, first)).status != 429
        assert (await progress(session, emu.base_url, first)).status == 429
        assert (await progress(session, emu.base_url, second)).status != 429  # not the first one's limit
        assert emu.rate_counts() == RateCounts(accepted=1, limited=1)
        assert emu.rate_counts(application_id=other["application_id"]) == RateCounts(accepted=1, limited=0)


async def test_without_a_limit_nothing_is_refused_or_counted_and_a_limit_can_be_set_and_lifted() -> None:
    async with Emulator() as emu, aiohttp.ClientSession() as session:
        headers = await auth_headers(session, emu.credentials)
        for _ in range(5):
            assert (await progress(session, emu.base_url, headers)).status != 429
        assert emu.rate_counts() == RateCounts()
        emu.set_rate_limit(0.1, 1)
        assert (await progress(session, emu.base_url, headers)).status != 429
        assert (await progress(session, emu.base_url, headers)).status == 429
        emu.set_rate_limit(None, reset_counts=True)
        assert (await progress(session, emu.base_url, headers)).status != 429
        assert emu.rate_counts() == RateCounts()


async def test_rate_route_reports_and_changes_the_limit() -> None:
    async with Emulator(rate_limit=0.1, rate_burst=2) as emu, aiohttp.ClientSession() as session:
        headers = await auth_headers(session, emu.credentials)
        for _ in range(3):
            await progress(session, emu.base_url, headers)
        async with session.get(f"{emu.base_url}/_emulator/rate") as response:
            assert await response.json() == {"rate": 0.1, "burst": 2.0, "accepted": 2, "limited": 1}
        async with session.post(
            f"{emu.base_url}/_emulator/rate", json={"rate": None, "resetCounts": True}
        ) as response:
            assert response.status == 204
        assert emu.rate_counts() == RateCounts()
        assert (await progress(session, emu.base_url, headers)).status != 429
        async with session.post(f"{emu.base_url}/_emulator/rate", json={"rate": -1}) as response:
            assert response.status == 400


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("20", 20.0), ("20/s", 20.0), ("1200/min", 20.0), ("72000/h", 20.0), (" 0.5/S ", 0.5)],
)
def test_rates_are_read_per_second_minute_or_hour(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "fast", "0/s", "-3", "20/day", "inf"])
def test_a_rate_that_is_not_a_positive_number_per_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_cli_rate_limit_and_burst_options_configure_the_emulator() -> None:
    emulator = _emulator(_parser().parse_args(["--rate-limit", "20/s", "--burst", "5"]))
    assert (emulator.options.rate_limit, emulator.options.rate_burst) == (20.0, 5.0)
    assert _emulator(_parser().parse_args([])).options.rate_limit is None


def test_cli_refuses_a_malformed_rate() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "adcreative_async.testing", "--rate-limit", "lots"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "--rate-limit" in completed.stderr
