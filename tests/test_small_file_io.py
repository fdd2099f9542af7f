"""Small files cost no thread hand-off: with ``TransferOptions.inline_small_files`` (the default) the check
of a small upload and the commit of a small download run in the event loop, keeping every guarantee
(atomic rename, nothing partial left); larger files keep their file operations in worker threads."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import count_thread_calls

from adcreative_async import AdCreativeClient, IncompleteDownloadError, TransferOptions
from adcreative_async._files import INLINE_DOWNLOAD, SMALL_UPLOAD
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (16, 16))


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=5) as emulator:
        yield emulator


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every worker-thread call made meanwhile (``anyio.to_thread.run_sync``, still called)."""
    return count_thread_calls(monkeypatch)


async def test_a_small_job_makes_no_worker_thread_call(
    emu: Emulator, tmp_path: Path, thread_calls: list[object]
) -> None:
    source = tmp_path / "in.png"
    source.write_bytes(PNG)
    out = tmp_path / "out"
    async with AdCreativeClient(**emu.credentials, user_id=USER, trust_env=False) as client:
        job = await client.background_remover.remove(source)
        emu.finish_process(job.process_id)
        await job.result()
        first = await job.download(job.task_ids[0], f"{out}/")
        assert len(thread_calls) == 1  # a new destination is prepared (made, checked) in a thread
        thread_calls.clear()
        job = await client.background_remover.remove(source)  # checked and read whole in the loop
        emu.finish_process(job.process_id)
        await job.result()
        path = await job.download(job.task_ids[0], f"{out}/")  # made, written, renamed in the loop
        assert thread_calls == []
    assert path.read_bytes().startswith(b"\x89PNG")
    assert path != first
    assert sorted(p.name for p in out.iterdir()) == sorted({first.name, path.name})  # nothing partial


async def test_a_cut_small_download_leaves_nothing_when_written_in_the_loop(
    emu: Emulator, tmp_path: Path
) -> None:
    async with AdCreativeClient(**emu.credentials, user_id=USER, trust_env=False) as client:
        job = await client.background_remover.remove(PNG)
        emu.finish_process(job.process_id)
        await client.background_remover.download(job.process_id, job.task_ids[0], tmp_path / "warm.png")
        emu.truncate_next_download(job.task_ids[0], 40)
        with pytest.raises(IncompleteDownloadError):
            await client.background_remover.download(job.process_id, job.task_ids[0], tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["warm.png"]


async def test_larger_files_keep_their_file_operations_in_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 4 * max(INLINE_DOWNLOAD, SMALL_UPLOAD)
    loop_thread = threading.current_thread()
    in_loop: list[str] = []

    def spy(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is loop_thread:
                in_loop.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    source = tmp_path / "big.png"
    with source.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(size)
    async with (
        Emulator(auto_complete=False, download_size=size) as emu,
        AdCreativeClient(**emu.credentials, user_id=USER, trust_env=False) as client,
    ):
        for owner, name in [(os, "replace"), (os, "writev"), (os, "unlink")]:
            spy(owner, name)
        job = await client.background_remover.remove(source)
        emu.finish_process(job.process_id)
        path = await client.background_remover.download(job.process_id, job.task_ids[0], tmp_path / "out.png")
        monkeypatch.undo()
    assert path.stat().st_size == size
    assert in_loop == []
    assert TransferOptions().inline_small_files  # the default these tests describe
