"""What one request costs beyond aiohttp's own: a small multipart upload goes to the connection in one
write (aiohttp writes every boundary, part header and part on its own), with its send guards still
seeing every byte before it leaves, and large parts still streamed."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import http_writer

from adcreative_async import AdCreativeClient, TransferOptions
from adcreative_async._files import send_guard
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (16, 16))
MiB = 1 << 20


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=9, stamp_inputs=True) as emulator:
        yield emulator


@pytest.fixture
def body_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every body write aiohttp makes to a connection meanwhile."""
    sizes: list[int] = []
    real = http_writer.StreamWriter.write

    async def counting(self: http_writer.StreamWriter, chunk: Any, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(chunk))
        await real(self, chunk, *args, **kwargs)

    monkeypatch.setattr(http_writer.StreamWriter, "write", counting)
    return sizes


class Digest:
    """A send guard that hashes what it is shown."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.ended = False

    def begin(self, param: str) -> None:
        self.sha = hashlib.sha256()

    def chunk(self, param: str, data: bytes) -> None:
        self.sha.update(data)

    def end(self, param: str) -> None:
        self.ended = True


async def test_a_small_upload_goes_to_the_connection_in_one_write(
    emu: Emulator, body_writes: list[int]
) -> None:
    async with AdCreativeClient(**emu.credentials, user_id=USER, trust_env=False) as client:
        await client.background_remover.user_progress(USER)  # the token and the baseline listing first
        body_writes.clear()
        guard = Digest()
        with send_guard(guard):
            job = await client.background_remover.remove(PNG)
    assert len(body_writes) == 1  # the three parts, their boundaries and headers together
    assert body_writes[0] > len(PNG)
    assert guard.ended
    assert guard.sha.hexdigest() == hashlib.sha256(PNG).hexdigest()  # every byte seen before it left
    assert emu.request_count("Image/BackgroundRemoving/AdCreative") == 1
    assert job.process_id


async def test_a_large_upload_is_still_streamed_in_chunks(
    emu: Emulator, body_writes: list[int], tmp_path: Path
) -> None:
    source = tmp_path / "large.png"
    with source.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(2 * MiB)
    transfer = TransferOptions(chunk_size=256 * 1024, max_upload_size=None)
    async with AdCreativeClient(
        **emu.credentials, user_id=USER, trust_env=False, transfer=transfer
    ) as client:
        await client.background_remover.user_progress(USER)
        body_writes.clear()
        await client.background_remover.remove(source)
    assert max(body_writes) <= 256 * 1024  # one chunk at a time: memory stays about one chunk
    assert sum(body_writes) > 2 * MiB
    assert len(body_writes) >= 8
