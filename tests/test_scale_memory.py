"""What a bulk run leaves in the poll scheduler stays bounded whatever the number of items: counted at
checkpoints of real runs against the emulator (live pollers, followed processes), with and without a run
ledger. A ledger run derives a user per item and awaits every item through the application's listing: no
poller per derived user may outlive its start call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import QUICK_RECONCILE, client_of

from adcreative_async import BulkOutcome
from adcreative_async._outcome import window_size
from adcreative_async._polling import PollScheduler
from adcreative_async.ledger import RenderRequest
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

UPLOADS, POLLS = 2, 4
WINDOW = window_size(UPLOADS, POLLS)
ITEMS = 200
CHUNK = 16  # the ledger run's claim chunks, made small (as in test_bulk_window)
KEEP = 4  # finished processes kept per poller (FINISHED_KEEP, made small: the run is shorter than its linger)


def inputs(folder: Path, n: int) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"in{i:05d}.png"
        path.write_bytes(sample_image("png", (8 + i % 50, 8 + i // 50)))
        yield path


class Checkpoints:
    """The most pollers and followed processes the scheduler held, seen as outcomes are taken."""

    def __init__(self, scheduler: PollScheduler) -> None:
        self.scheduler = scheduler
        self.pollers = 0
        self.followed = 0
        self.taken = 0

    def took(self, outcome: BulkOutcome[Path]) -> None:
        assert outcome.ok, outcome.error
        self.taken += 1
        pollers = self.scheduler._pollers
        self.pollers = max(self.pollers, len(pollers))
        self.followed = max(self.followed, sum(len(p.interest) for p in pollers.values()))


@pytest.fixture(autouse=True)
def _few_finished_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adcreative_async._poll_state.FINISHED_KEEP", KEEP)


async def test_a_ledger_run_keeps_no_poller_per_derived_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adcreative_async.ledger import _run

    monkeypatch.setattr(_run, "FIRST_CHUNK", CHUNK)
    monkeypatch.setattr(_run, "CHUNK", CHUNK)
    monkeypatch.setattr(_run, "CLAIM_WINDOW", 8)
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        seen = Checkpoints(client._poll_scheduler())
        async with client.bulk(
            inputs(tmp_path / "in", ITEMS),
            request=RenderRequest.remove_background,
            ledger=tmp_path / "run.sqlite",
            dest=tmp_path / "out",
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        ) as run:
            async for outcome in run:
                seen.took(outcome)
        assert seen.taken == ITEMS
        assert sorted(emulator.processes_per_input().values()) == [1] * ITEMS
        left = seen.scheduler._pollers
        # the application's poller alone (a derived user's start answer moved to it)
        assert all(user == "*" for _, user in left)
    assert seen.pollers <= 1
    # the items submitted and not yet done (the claim window, a chunk, the running window) and a few
    # finished ones: not one per item of the run
    claim_window = max(8, 8 * UPLOADS)
    assert seen.followed <= max(WINDOW, claim_window) + CHUNK + WINDOW + KEEP


async def test_a_run_without_ledger_follows_a_bounded_number_of_processes(tmp_path: Path) -> None:
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        seen = Checkpoints(client._poll_scheduler())
        async with client.bulk(
            inputs(tmp_path / "in", ITEMS),
            lambda c, p: c.background_remover.remove(p),
            dest=tmp_path / "out",
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        ) as run:
            async for outcome in run:
                seen.took(outcome)
        assert seen.taken == ITEMS
    assert seen.pollers == 1  # the one user's
    assert seen.followed <= WINDOW + KEEP + UPLOADS


async def test_the_client_keeps_no_claim_per_answered_start_once_no_call_is_open(tmp_path: Path) -> None:
    # a run without a ledger sends every start call under one user: each answer claims its process,
    # which matters only to calls sent before that process was first seen
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        async with client.bulk(
            inputs(tmp_path / "in", ITEMS),
            lambda c, p: c.background_remover.remove(p),
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        ) as run:
            async for outcome in run:
                assert outcome.ok, outcome.error
        (ledger,) = client._ledger._users.values()
        assert not ledger.in_flight
        assert len(ledger.known) == ITEMS  # every process of the user is remembered (a later call's baseline)
        assert len(ledger.claimed) <= UPLOADS  # not one claim per call made
