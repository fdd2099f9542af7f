"""``max_renders``: at most that many start calls (paid renders) are sent; the items left are reported
not started (NotStartedError), recorded nowhere as failed, and with a run ledger a plain rerun goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import QUICK_RECONCILE, client_of

from adcreative_async import InvalidRequestError, NotStartedError
from adcreative_async.cli import main
from adcreative_async.ledger import ItemState, RenderRequest, SqliteLedger
from adcreative_async.testing import Emulator, EmulatorThread, sample_image

BG_START = "Image/BackgroundRemoving/AdCreative"


def inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.png"
        path.write_bytes(sample_image("png", (8 + i, 8)))
        paths.append(path)
    return paths


@pytest.mark.anyio
async def test_a_ledger_run_sends_at_most_max_renders_and_a_rerun_goes_on(tmp_path: Path) -> None:
    paths = inputs(tmp_path / "in", 30)  # several claims: the budget holds across them
    ledger = tmp_path / "run.sqlite"
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        first = await client.process_many(
            paths,
            request=RenderRequest.remove_background,
            dest=tmp_path / "out",
            ledger=ledger,
            max_renders=7,
        )
        assert emulator.request_count(BG_START) == 7
        assert sum(o.ok for o in first) == 7
        assert all(isinstance(o.error, NotStartedError) for o in first if not o.ok)
        async with SqliteLedger(ledger) as opened:
            counts = await opened.counts()
        assert counts[ItemState.DOWNLOADED] == 7
        assert counts[ItemState.FAILED] == 0
        assert counts[ItemState.SUBMITTING] == 0  # the intents written ahead were put back
        second = await client.process_many(
            paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=ledger
        )
        assert all(o.ok for o in second)
        assert emulator.request_count(BG_START) == 30
        assert sorted(emulator.processes_per_input().values()) == [1] * 30


@pytest.mark.anyio
async def test_a_run_without_ledger_sends_at_most_max_renders(tmp_path: Path) -> None:
    paths = inputs(tmp_path / "in", 6)
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        outcomes = await client.process_many(
            paths, lambda c, p: c.background_remover.remove(p), max_renders=2
        )
        assert emulator.request_count(BG_START) == 2
        assert sum(isinstance(o.error, NotStartedError) for o in outcomes) == 4
        with pytest.raises(InvalidRequestError, match="max_renders"):
            client.bulk(paths, lambda c, p: c.background_remover.remove(p), max_renders=-1)


def test_the_cli_stops_cleanly_at_max_renders_and_the_same_command_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    inputs(tmp_path / "in", 5)
    argv: list[Any] = [
        "remove-bg",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--progress",
        "lines",
    ]
    assert main([*argv, "--max-renders", "2"]) == 0
    said = capsys.readouterr().out
    assert "--max-renders: 2 start call(s) sent; 3 input(s) not started" in said
    assert cli_env.request_count(BG_START) == 2
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "5 input(s), 2 done already: 3 to render" in said
    assert cli_env.request_count(BG_START) == 5
