"""The check of every output name before the first start call keeps a hash per input, never the inputs:
inputs given as a sequence are read once for the check and again by the run (issue 23: the CLI always
names its results, and used to hold every request, about 1.2 KiB per input, before its first start call).
Clashes are still found, all of them, before anything is sent."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import pytest
from helpers import QUICK_RECONCILE, client_of

from adcreative_async import NotStartedError
from adcreative_async._naming import check_names
from adcreative_async._outcome import window_size
from adcreative_async.ledger import RenderRequest, SqliteLedger
from adcreative_async.ledger._run import CHUNK
from adcreative_async.testing import Emulator, sample_image

UPLOADS, POLLS = 2, 4
WINDOW = window_size(UPLOADS, POLLS)


class Item:
    """An input made when read, counting how many are alive at once."""

    alive = 0
    most = 0

    def __init__(self, label: str, path: Path) -> None:
        self.label = label
        self.path = path
        self.padding = bytes(1024)  # an input's weight, as a request's (its parameters, label, path)
        Item.alive += 1
        Item.most = max(Item.most, Item.alive)

    def __del__(self) -> None:
        Item.alive -= 1

    @classmethod
    def reset(cls) -> None:
        cls.alive = cls.most = 0


class Inputs(Sequence[Item]):
    """``n`` inputs, each made when it is read (a lazy sequence, as the CLI's)."""

    def __init__(self, n: int, image: Path) -> None:
        self.n, self.image = n, image

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | Sequence[Item]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not 0 <= index < self.n:
            raise IndexError(index)
        return Item(f"in/{index:06d}.png", self.image)


class Entries(Sequence[tuple[int, object]]):
    """(position, input) of each input, made when read."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    @overload
    def __getitem__(self, index: int) -> tuple[int, object]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[int, object]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, object] | Sequence[tuple[int, object]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return index, self.inputs[index]


def _named(fields: Any) -> str:
    return f"{fields['stem']}{fields['suffix']}"


def test_the_name_check_keeps_a_hash_per_input_not_the_input(tmp_path: Path) -> None:
    n = 20_000
    entries = Entries(Inputs(n, tmp_path / "x.png"))
    Item.reset()
    tracemalloc.start()
    try:
        refused = check_names(_named, tmp_path / "out", entries)  # a sequence: read again if need be
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused == {}
    assert Item.most <= 2  # each input left once its name was checked
    # a hash per input (about 60 bytes), not the input (1 KiB here) nor its name
    assert peak / n < 200, f"{peak / n:.0f} bytes per input"


def test_the_streamed_check_still_refuses_every_input_of_a_clash(tmp_path: Path) -> None:
    inputs = Inputs(1_000, tmp_path / "x.png")

    def clashing(fields: Any) -> str:  # 7 and 700 share a name (another case), 3 is one input twice
        index = fields["index"]
        return {700: "In7.PNG", 701: "003.png"}.get(index, f"in{index}.png")

    def entries() -> Iterator[tuple[int, object]]:
        for index, item in enumerate(inputs):
            yield index, (inputs[3] if index == 701 else item)  # the same label as input 3

    refused = check_names(clashing, tmp_path / "out", entries(), entries)
    assert sorted(refused) == [7, 700]
    assert "several inputs" in str(refused[7])
    assert "in/000007.png" in str(refused[700])


@pytest.mark.anyio
@pytest.mark.parametrize("ledger", [False, True], ids=["no ledger", "SQLite ledger"])
async def test_a_named_bulk_run_of_a_sequence_never_holds_every_input(tmp_path: Path, ledger: bool) -> None:
    """With ``name=`` every input's name is checked before the first start call, yet the inputs (a
    sequence) are never all alive at once: read once for the check, again as the window makes room."""
    n = 1200
    image = tmp_path / "x.png"
    image.write_bytes(sample_image("png", (8, 8)))
    inputs = Inputs(n, image)
    Item.reset()
    async with Emulator(task_duration=0.01) as emulator, client_of(emulator, retry=QUICK_RECONCILE) as client:
        options: dict[str, Any] = {
            "dest": tmp_path / "out",
            "name": _named,
            "upload_concurrency": UPLOADS,
            "poll_concurrency": POLLS,
            "max_renders": 0,  # nothing paid: every item is checked, then reported not started
        }
        if ledger:
            options["ledger"] = SqliteLedger(tmp_path / "run.sqlite")
            options["request"] = lambda item: RenderRequest.remove_background(item.path, label=item.label)
        else:
            options["submit"] = lambda c, item: c.background_remover.remove(item.path)
        reported = most = 0
        async with client.bulk(inputs, **options) as run:
            async for outcome in run:
                assert isinstance(outcome.error, NotStartedError), outcome.error
                if reported % 25 == 0:  # a checkpoint (the first outcome's included): inputs held
                    del outcome
                    gc.collect()
                    most = max(most, Item.alive)
                reported += 1
        assert reported == n
    # without a ledger: the window; with one, also the chunk of inputs hashed and claimed together
    bound = 2 * WINDOW + (CHUNK if ledger else 0)
    assert 0 < most <= bound, f"{most} of {n} inputs held at once"
