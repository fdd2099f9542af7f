"""The inputs' hashing for the run ledger's keys: small files are hashed in the event loop and not
remembered; large ones in a worker thread, their hashes remembered so that a resume does not read them
again."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from adcreative_async.ledger import MemoryLedger, RenderRequest, request_keys
from adcreative_async.ledger import _requests as requests_module
from adcreative_async.testing import sample_image

pytestmark = pytest.mark.anyio

LONG_AGO = 1_600_000_000  # a modification time far older than RACY_SECONDS


def _image(path: Path, size: int, colour: int = 0) -> Path:
    """A PNG of ``size`` bytes at least (padded after its end: the bytes are what is hashed)."""
    data = sample_image("png", (2, 2), (colour, 0, 0))
    path.write_bytes(data + b"\0" * max(0, size - len(data)))
    os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def _hashed_in(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Which thread hashed each file, by file name."""
    seen: dict[str, str] = {}
    real = requests_module._hash_file

    def noting(path: str) -> str:
        seen[Path(path).name] = threading.current_thread().name
        return real(path)

    monkeypatch.setattr(requests_module, "_hash_file", noting)
    return seen


async def test_small_files_are_hashed_in_the_event_loop_and_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _hashed_in(monkeypatch)
    paths = [_image(tmp_path / f"{i}.png", 100, i) for i in range(3)]
    ledger = MemoryLedger()
    keys = await request_keys([RenderRequest.remove_background(p) for p in paths], ledger)
    assert len(set(keys)) == 3
    assert seen == dict.fromkeys((p.name for p in paths), threading.current_thread().name)
    # below REMEMBER_HASHES_FROM: hashed again on each run, never written to the ledger
    assert await ledger.source_hashes(requests_module._HOST, [os.path.abspath(p) for p in paths]) == {}


async def test_large_files_are_hashed_in_a_thread_and_remembered_for_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _hashed_in(monkeypatch)
    size = max(requests_module.REMEMBER_HASHES_FROM, requests_module.HASH_INLINE_BYTES + 1)
    big = _image(tmp_path / "big.png", size)
    ledger = MemoryLedger()
    [key] = await request_keys([RenderRequest.remove_background(big)], ledger)
    assert seen["big.png"] != threading.current_thread().name
    remembered = await ledger.source_hashes(requests_module._HOST, [os.path.abspath(big)])
    assert remembered[os.path.abspath(big)].sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    seen.clear()
    assert await request_keys([RenderRequest.remove_background(big)], ledger) == [key]
    assert seen == {}  # not read again: its size, modification time and inode are unchanged


async def test_a_chunk_of_small_files_too_large_together_is_hashed_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests_module, "HASH_INLINE_BYTES", 1000)
    seen = _hashed_in(monkeypatch)
    paths = [_image(tmp_path / f"{i}.png", 600, i) for i in range(2)]
    await request_keys([RenderRequest.remove_background(p) for p in paths], None)
    assert threading.current_thread().name not in seen.values()


async def test_an_unreadable_input_has_no_key_and_spares_the_others(tmp_path: Path) -> None:
    good = _image(tmp_path / "good.png", 100)
    missing = tmp_path / "missing.png"
    keys = await request_keys(
        [RenderRequest.remove_background(good), RenderRequest.remove_background(missing)], MemoryLedger()
    )
    assert isinstance(keys[0], str)
    assert "cannot read" in str(keys[1])
