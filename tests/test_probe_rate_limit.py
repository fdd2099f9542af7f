"""The proof that listings keep finished processes (``ledger/_probe.py``), looked up while a run ledger
reconciles an unanswered start call: a lookup refused with a 429 after the transport's retries is made
again after its ``Retry-After`` (on the item's requeues, ``RATE_LIMIT_REQUEUES``), as the item's start
call, own lookups and downloads are, instead of ending the item (left ``submitting`` until the next run).
The emulator answers 429 (queued, ``Retry-After: 0``); the client retries nothing itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PNG
from test_ledger_runs import BG_START, _crashed_intent, make_inputs

from adcreative_async import AdCreativeClient, RateLimitError, RetryPolicy
from adcreative_async._ratelimit import RATE_LIMIT_REQUEUES
from adcreative_async.ledger import ItemState, MemoryLedger, RenderRequest
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

BG_APPLICATION_PROGRESS = "Image/BackgroundRemoving/CheckApplicationAllProgresses"
#: One attempt per call: every 429 ends the call with RateLimitError (what the item then does is tested).
ONE_ATTEMPT = RetryPolicy(max_attempts=1, reconcile_grace=0.05, reconcile_interval=0.01)
OTHER_USER = "7d0f2b9e-5c1a-4f3e-9b8d-2a6c4e1f0b37"


async def unanswered_item_beside_a_finished_render(
    emulator: Emulator, tmp_path: Path
) -> tuple[MemoryLedger, RenderRequest, str]:
    """A run ledger holding one item whose start call's answer was lost before it reached the server,
    and, in the application's listing only, another user's finished render (what the probe finds)."""
    async with AdCreativeClient(**emulator.credentials, trust_env=False) as other:
        job = await other.background_remover.remove(PNG, user_id=OTHER_USER)
        emulator.finish_process(job.process_id)
    [path] = make_inputs(tmp_path / "in", 1)
    ledger = MemoryLedger()
    request = RenderRequest.remove_background(path)
    key, _ = await _crashed_intent(emulator, ledger, request, made=False)
    return ledger, request, key


async def test_a_probe_lookup_refused_429_is_made_again_and_the_item_rendered_once(tmp_path: Path) -> None:
    async with Emulator(task_duration=0.02, seed=3, stamp_inputs=True) as emulator:
        ledger, request, key = await unanswered_item_beside_a_finished_render(emulator, tmp_path)
        emulator.fail_next(BG_APPLICATION_PROGRESS, 429, count=2, retry_after=0)
        async with AdCreativeClient(**emulator.credentials, trust_env=False, retry=ONE_ATTEMPT) as client:
            [outcome] = await client.process_many([request], dest=tmp_path / "out", ledger=ledger)
        lookups = emulator.request_count(BG_APPLICATION_PROGRESS)
        starts = emulator.request_count(BG_START)
        per_input = emulator.processes_per_input()
    assert outcome.ok, outcome.error
    assert lookups >= 3  # refused twice, then answered: the proof was found (polls may list too)
    assert starts == 2  # the other user's render, and the item's, sent again once proven never made
    assert sorted(per_input.values()) == [1, 1]
    assert (await ledger.records([key]))[key].state is ItemState.DOWNLOADED


async def test_a_probe_lookup_refused_past_the_items_requeues_ends_it_with_the_rate_limit_error(
    tmp_path: Path,
) -> None:
    async with Emulator(task_duration=0.02, seed=3, stamp_inputs=True) as emulator:
        ledger, request, key = await unanswered_item_beside_a_finished_render(emulator, tmp_path)
        emulator.fail_next(BG_APPLICATION_PROGRESS, 429, count=RATE_LIMIT_REQUEUES + 2, retry_after=0)
        async with AdCreativeClient(**emulator.credentials, trust_env=False, retry=ONE_ATTEMPT) as client:
            [outcome] = await client.process_many([request], dest=tmp_path / "out", ledger=ledger)
        lookups = emulator.request_count(BG_APPLICATION_PROGRESS)
        starts = emulator.request_count(BG_START)
    assert isinstance(outcome.error, RateLimitError)
    assert lookups == RATE_LIMIT_REQUEUES + 1  # tried once, then once per requeue: no more
    assert starts == 1  # the other user's only: nothing sent while unproven
    assert (await ledger.records([key]))[key].state is ItemState.SUBMITTING  # for the next run
