"""A bulk run's window by default: 1,000 renders awaited without a run ledger, 2,000 with one (its renders
are detected by one application listing a tick at a time: see ``_outcome.LEDGER_POLL_CONCURRENCY``); a
``poll_concurrency`` given is kept as given, with or without a ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import client_of

from adcreative_async import BulkRun
from adcreative_async._outcome import (
    DEFAULT_POLL_CONCURRENCY,
    LEDGER_POLL_CONCURRENCY,
    poll_concurrency_for,
    window_size,
)
from adcreative_async.ledger import RenderRequest
from adcreative_async.testing import Emulator


def test_the_default_is_larger_with_a_ledger_and_a_given_value_is_kept() -> None:
    assert poll_concurrency_for(None, ledger=False) == DEFAULT_POLL_CONCURRENCY == 1000
    assert poll_concurrency_for(None, ledger=True) == LEDGER_POLL_CONCURRENCY == 2000
    assert poll_concurrency_for(7, ledger=True) == 7
    assert poll_concurrency_for(7, ledger=False) == 7


@pytest.mark.anyio
async def test_a_bulk_run_takes_the_window_of_its_kind(tmp_path: Path) -> None:
    async with Emulator() as emulator, client_of(emulator) as client:
        plain: BulkRun[str] = client.bulk(list[str](), lambda c, p: c.background_remover.remove(p))
        ledgered: BulkRun[str] = client.bulk(
            [], request=RenderRequest.remove_background, ledger=tmp_path / "run.sqlite"
        )
        given: BulkRun[str] = client.bulk(
            [], request=RenderRequest.remove_background, ledger=tmp_path / "run.sqlite", poll_concurrency=3
        )
        assert plain._limits[1] == DEFAULT_POLL_CONCURRENCY
        assert ledgered._limits[1] == LEDGER_POLL_CONCURRENCY
        assert given._limits[1] == 3
        assert window_size(4, LEDGER_POLL_CONCURRENCY) == 2008  # what a ledger run holds at most
        with pytest.raises(ValueError, match="poll_concurrency must be at least 1"):
            client.bulk(list[str](), request=RenderRequest.remove_background, poll_concurrency=0)
