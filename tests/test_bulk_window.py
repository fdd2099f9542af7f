"""A bulk run holds a bounded window of items whatever the number of inputs: the inputs (a generator) are
read only as items leave, an item leaves once its outcome is taken, and outcomes stream out — with and
without a run ledger. Counted by the inputs' generator itself (how far its reading runs ahead of the
outcomes the caller has taken) and by the live outcome objects at checkpoints."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import QUICK_RECONCILE, client_of

from adcreative_async import BulkOutcome
from adcreative_async._outcome import window_size
from adcreative_async.ledger import RenderRequest, SqliteLedger
from adcreative_async.testing import Emulator, sample_image

BG_START = "Image/BackgroundRemoving/AdCreative"
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
UPLOADS, POLLS = 2, 4  # a window of 8 items
WINDOW = window_size(UPLOADS, POLLS)


class Counted:
    """Inputs made as they are read (a distinct small image each), counting how far the reading runs
    ahead of the outcomes taken."""

    def __init__(self, folder: Path, n: int) -> None:
        self.folder, self.n = folder, n
        self.read = 0
        self.taken = 0
        self.ahead = 0  # the most inputs read and not yet reported, seen
        self.live_outcomes = 0  # the most BulkOutcome objects alive at a checkpoint, seen
        folder.mkdir(parents=True, exist_ok=True)

    def __iter__(self) -> Iterator[Path]:
        for i in range(self.n):
            path = self.folder / f"in{i:05d}.png"
            path.write_bytes(sample_image("png", (8 + i % 50, 8 + i // 50)))
            self.read += 1
            self.ahead = max(self.ahead, self.read - self.taken)
            yield path

    def took(self, outcome: BulkOutcome[Path]) -> None:
        assert outcome.ok, outcome.error
        self.taken += 1
        if self.taken % 50 == 0:  # a checkpoint
            gc.collect()
            alive = sum(isinstance(o, BulkOutcome) for o in gc.get_objects())
            self.live_outcomes = max(self.live_outcomes, alive)


@pytest.mark.anyio
async def test_a_run_without_ledger_reads_its_inputs_only_as_items_leave(tmp_path: Path) -> None:
    inputs = Counted(tmp_path / "in", 200)
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        async with client.bulk(
            iter(inputs),
            lambda c, p: c.background_remover.remove(p),
            dest=tmp_path / "out",
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        ) as run:
            with pytest.raises(TypeError, match="iterator"):
                len(run)
            async for outcome in run:
                inputs.took(outcome)
                del outcome
        assert inputs.taken == 200
        assert emulator.request_count(BG_START) == 200
    # running items, and outcomes waiting to be taken: a window of each at most
    assert inputs.ahead <= 2 * WINDOW
    assert 0 < inputs.live_outcomes <= 2 * WINDOW


@pytest.mark.anyio
async def test_a_ledger_run_reads_its_inputs_only_as_items_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adcreative_async.ledger import _run

    # small chunks and claim window, so that 200 inputs are many of them
    monkeypatch.setattr(_run, "FIRST_CHUNK", 16)
    monkeypatch.setattr(_run, "CHUNK", 16)
    monkeypatch.setattr(_run, "CLAIM_WINDOW", 8)
    inputs = Counted(tmp_path / "in", 200)
    ledger = tmp_path / "run.sqlite"
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        async with client.bulk(
            inputs,  # an iterable read once, lazily
            request=RenderRequest.remove_background,
            ledger=ledger,
            dest=tmp_path / "out",
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        ) as run:
            async for outcome in run:
                inputs.took(outcome)
                del outcome
        assert inputs.taken == 200
        assert sorted(emulator.processes_per_input().values()) == [1] * 200
    async with SqliteLedger(ledger) as opened:
        assert sum((await opened.counts()).values()) == 200
    claim_window = max(8, 8 * UPLOADS)
    # running items (the larger of the two windows), the chunk being claimed, outcomes not yet taken
    bound = max(WINDOW, claim_window) + 16 + WINDOW
    assert inputs.ahead <= bound
    assert 0 < inputs.live_outcomes <= bound


@pytest.mark.anyio
async def test_an_error_of_the_inputs_iterator_is_raised_after_the_outcomes_of_the_items_read(
    tmp_path: Path,
) -> None:
    def failing() -> Iterator[bytes]:
        for i in range(3):
            yield sample_image("png", (8 + i, 8))
        raise LookupError("the input listing broke")

    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        taken: list[bool] = []

        async def iterate() -> None:
            async with client.bulk(failing(), lambda c, p: c.background_remover.remove(p)) as run:
                async for outcome in run:
                    taken.append(outcome.ok)

        with pytest.raises(LookupError, match="listing broke"):
            await iterate()
        assert taken == [True, True, True]
        assert emulator.request_count(BG_START) == 3


@pytest.mark.anyio
async def test_a_run_of_a_list_still_has_a_length() -> None:
    async with Emulator() as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        run = client.bulk([b"a", b"b"], lambda c, p: c.background_remover.remove(p))
        assert len(run) == 2
        assert run  # true, whatever its inputs


def test_the_sync_clients_run_reads_a_generator_lazily_and_shows_itself(tmp_path: Path) -> None:
    from adcreative_async import SyncAdCreativeClient
    from adcreative_async.testing import EmulatorThread

    inputs = Counted(tmp_path / "in", 30)
    with (
        EmulatorThread(task_duration=0.01) as emulator,
        SyncAdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        run = client.bulk(
            iter(inputs),
            lambda c, p: c.background_remover.remove(p),
            upload_concurrency=UPLOADS,
            poll_concurrency=POLLS,
        )
        assert "lazily read" in repr(run)
        assert run
        with run:
            for outcome in run:
                inputs.took(outcome)
    assert inputs.taken == 30
    assert inputs.ahead <= 2 * WINDOW
