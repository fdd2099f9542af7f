"""A call's retry delays (issue 23): the backoff's generator is made at the call's first retry, once for
all its retries (so the delays grow), and never for a call answered at its first attempt (the per-job
path's requests make none)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from miniapi import MiniAPI
from test_retries import client_for, flaky
from test_transport import BG_PROGRESS, PROGRESS_ITEM

from adcreative_async import RetryPolicy, _transport

pytestmark = pytest.mark.anyio

QUICK = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.004, jitter=None)


@pytest.fixture
async def api() -> AsyncIterator[MiniAPI]:
    async with MiniAPI() as server:
        yield server


@pytest.fixture
def delays_made(monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """The delays drawn from each backoff generator the transport makes, one list per generator."""
    made: list[list[float]] = []
    original = _transport.backoff_delays

    def counting(policy: RetryPolicy) -> Iterator[float]:
        drawn: list[float] = []
        made.append(drawn)
        for delay in original(policy):
            drawn.append(delay)
            yield delay

    monkeypatch.setattr(_transport, "backoff_delays", counting)
    return made


async def test_a_call_answered_at_once_makes_no_backoff(api: MiniAPI, delays_made: list[list[float]]) -> None:
    flaky(api, "GET", BG_PROGRESS, [], [PROGRESS_ITEM])
    async with client_for(api, retry=QUICK) as client:
        for _ in range(3):
            assert len(await client.background_remover.user_progress()) == 1
    assert delays_made == []


async def test_a_calls_retries_draw_growing_delays_from_one_backoff(
    api: MiniAPI, delays_made: list[list[float]]
) -> None:
    seen = flaky(api, "GET", BG_PROGRESS, [503, 502, 503], [PROGRESS_ITEM])
    async with client_for(api, retry=QUICK) as client:
        assert len(await client.background_remover.user_progress()) == 1
    assert seen == [503, 502, 503, 200]
    assert delays_made == [[0.001, 0.002, 0.004]]  # one generator, its delays doubling to the cap
