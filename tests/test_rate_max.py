"""``RateControl.max_rate`` caps the client's pace from its first request on, not only once a 429 has
taught a rate."""

from __future__ import annotations

import anyio
import pytest
from test_rate_control import gaps_between_turns

from adcreative_async import AdCreativeClient, ManualClock, RateControl
from adcreative_async._ratelimit import RateController
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


async def test_max_rate_paces_the_first_requests_before_any_429() -> None:
    clock = ManualClock()
    rate = RateController(RateControl(max_rate=10.0, burst_seconds=0.0), clock, "scope")
    assert rate.status.rate == 10.0
    gaps = await gaps_between_turns(rate, clock, 20)
    assert min(gaps) >= 0.1 - 0.011  # one every 100 ms (the manual clock moves in 10 ms steps)
    assert rate.status.cuts == 0  # no 429 taught it


async def test_max_rate_holds_an_initial_rate_above_it() -> None:
    rate = RateController(RateControl(max_rate=5.0, initial_rate=50.0), ManualClock(), "scope")
    assert rate.status.rate == 5.0


async def test_a_client_with_max_rate_below_the_account_limit_is_never_refused() -> None:
    """Sixteen callers at once against an account limit of 40 requests/s (a burst of 4): unpaced until
    a first 429, they would empty the burst at once; capped at 20/s from the first request, none is
    refused."""
    control = RateControl(max_rate=20.0)
    async with (
        Emulator(rate_limit=40.0, rate_burst=4) as emu,
        AdCreativeClient(**emu.credentials, rate_control=control, trust_env=False) as client,
    ):
        await client.background_remover.user_progress(USER)  # the token: not paced by the account's limit
        emu.set_rate_limit(40.0, 4, reset_counts=True)
        remaining = 40

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.background_remover.user_progress(USER, retry=1)

        async with anyio.create_task_group() as group:
            for _ in range(16):
                group.start_soon(caller)
        status = client.rate_status
        counts = emu.rate_counts()
    assert counts.accepted == 40
    assert counts.limited == 0
    assert status is not None
    assert status.throttled == 0
