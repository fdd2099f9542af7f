"""Large downloads read straight from the connection into buffers made once per download (the
``_receiver`` module), written in the event loop or by a worker thread fed whole buffers, with every
download's guarantees kept: byte-exact under a slow disk and a slow network, nothing left behind when the
body is cut or stalls, and the client going on with a new connection after each one."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import DiskWrites, count_fed_bytes, digest_of, finished_task, streamed_digest
from test_download_stream_writes import file_size_limit
from test_proxy_env import _self_signed

from adcreative_async import (
    AdCreativeClient,
    APITimeoutError,
    IncompleteDownloadError,
    Timeout,
    TransferOptions,
    _downloads,
    _filewrite,
)
from adcreative_async._downloads import STREAM_WRITE_FROM
from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
MiB = 1 << 20
SIZE = 16 * MiB
assert SIZE >= 2 * STREAM_WRITE_FROM
DOWNLOAD_ROUTE = "Image/BackgroundRemoving/Download"


@pytest.fixture(autouse=True)
def receive_from_4_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver takes bodies from 4 MiB here (32 MiB by default: see RECEIVE_FROM)."""
    monkeypatch.setattr(_downloads, "RECEIVE_FROM", STREAM_WRITE_FROM)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, download_size=SIZE, seed=5) as emulator:
        yield emulator


def client_for(
    emu: Emulator, in_loop: bool, base_url: str | None = None, timeout: Timeout | None = None
) -> AdCreativeClient:
    credentials = emu.credentials
    if base_url is not None:
        credentials["base_url"] = base_url
    transfer = TransferOptions(chunk_size=64 * 1024, write_in_loop=in_loop)
    return AdCreativeClient(**credentials, user_id=USER, trust_env=False, transfer=transfer, timeout=timeout)


class Proxy:
    """A TCP proxy in front of the emulator. Answers come back in pieces of at most ``piece`` bytes,
    ``delay`` seconds apart (a slow network); with ``stall_after``, a connection forwards that many
    bytes of answer and then nothing more, left open (a server that stalls mid-body)."""

    def __init__(
        self, target: str, *, piece: int = 256 * 1024, delay: float = 0.0, stall_after: int | None = None
    ) -> None:
        host, _, port = target.removeprefix("http://").rstrip("/").partition(":")
        self._target = (host, int(port))
        self._piece = piece
        self._delay = delay
        self.stall_after = stall_after
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""
        self.connections = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        self._spawn(self._pipe(reader, up_writer, None, 0.0))
        self._spawn(self._pipe(up_reader, writer, self.stall_after, self._delay))

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, stall_after: int | None, delay: float
    ) -> None:
        sent = 0
        try:
            while data := await source.read(self._piece):
                if stall_after is not None and sent + len(data) > stall_after:
                    sink.write(data[: stall_after - sent])
                    await sink.drain()
                    await asyncio.Event().wait()  # stalled: until the proxy closes
                sink.write(data)
                await sink.drain()
                sent += len(data)
                if delay:
                    await asyncio.sleep(delay)
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_large_download_bypasses_aiohttps_reader_past_its_first_bytes(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_loop: bool
) -> None:
    """aiohttp's reader makes a new bytes object per socket read; past what it had received with the
    headers, the body is read into the download's own buffers (all 16 MiB went through it before)."""
    async with client_for(emu, in_loop) as client:
        process_id, task_id = await finished_task(client, emu)
        fed = count_fed_bytes(monkeypatch)
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        monkeypatch.undo()
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    assert path.stat().st_size == SIZE
    assert sum(fed) < 2 * MiB, f"{sum(fed)} bytes through aiohttp's reader"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_large_download_cut_midway_leaves_no_file_and_the_client_goes_on(
    emu: Emulator, tmp_path: Path, in_loop: bool
) -> None:
    async with client_for(emu, in_loop) as client:
        process_id, task_id = await finished_task(client, emu)
        emu.truncate_next_download(task_id, 5 * MiB + 123)
        with pytest.raises(IncompleteDownloadError, match="cut off"):
            await client.background_remover.download(process_id, task_id, tmp_path)
        assert list(tmp_path.iterdir()) == []
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_large_download_cut_midway_resumes_with_the_bytes_it_wrote(
    emu: Emulator, tmp_path: Path, in_loop: bool
) -> None:
    """The bytes received before the cut are all in the file (the thread's included) when the resume
    asks for the rest: the file is byte-exact."""
    async with (
        Emulator(auto_complete=False, download_size=SIZE, range_requests=True, seed=5) as ranged,
        client_for(ranged, in_loop) as client,
    ):
        process_id, task_id = await finished_task(client, ranged)
        ranged.truncate_next_download(task_id, 5 * MiB + 123, count=2)
        path = await client.background_remover.download(process_id, task_id, tmp_path, resume=2)
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
        assert ranged.request_count(DOWNLOAD_ROUTE) == 3 + 1  # the cut ones, the rest, the check
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_large_download_that_stalls_midway_times_out_and_leaves_no_file(
    emu: Emulator, tmp_path: Path, in_loop: bool
) -> None:
    """No byte for ``Timeout.read`` seconds in the middle of the body: the read timeout, as for any
    read, and nothing written."""
    async with (
        Proxy(emu.base_url, stall_after=6 * MiB) as proxy,
        client_for(emu, in_loop, proxy.url, timeout=Timeout(read=0.1)) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        with pytest.raises(APITimeoutError) as caught:
            await client.background_remover.download(process_id, task_id, tmp_path)
        assert caught.value.limit == "read"
        assert list(tmp_path.iterdir()) == []
        proxy.stall_after = None
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        assert path.stat().st_size == SIZE


async def test_reads_overlap_slow_thread_writes_and_keep_every_byte_in_order(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow network (the answer in 64 KiB pieces, 1 ms apart) and a slow disk (5 ms per write): the
    loop reads into one buffer while the thread writes another, a whole buffer per hand-off, and the
    file is byte-exact."""
    async with (
        Proxy(emu.base_url, piece=64 * 1024, delay=0.001) as proxy,
        client_for(emu, False, proxy.url) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        writes = DiskWrites(monkeypatch, pause=0.005)
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        monkeypatch.undo()
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    assert writes.loop_writes == 0
    assert sum(writes.sizes) == SIZE
    assert max(writes.sizes) <= _filewrite.STREAM_COALESCE
    assert len(writes.sizes) <= SIZE // _filewrite.STREAM_COALESCE + 1  # a buffer each, not a read each
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


async def test_a_slow_disk_under_in_loop_writes_moves_them_to_the_thread_byte_exact(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loop writes slower than LOOP_WRITE_STALL that slept (every one here: a stalled disk) hand the
    next bytes to the thread, which writes them while the loop reads on; then the loop writes again,
    the bytes in order."""
    monkeypatch.setattr(_filewrite, "LOOP_WRITE_STALL", 0.0)
    monkeypatch.setattr(_filewrite, "LOOP_WRITE_BACKOFF", 3 * MiB)
    async with (
        Proxy(emu.base_url, piece=64 * 1024, delay=0.001) as proxy,
        client_for(emu, True, proxy.url) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        writes = DiskWrites(monkeypatch, pause=0.002, loop_pause=0.001)
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        monkeypatch.undo()
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    assert writes.loop_writes >= 2
    assert sum(writes.sizes) >= 3 * MiB
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("receive_from", [STREAM_WRITE_FROM, 2 * SIZE], ids=["received", "aiohttp"])
async def test_slow_loop_writes_that_never_slept_stay_in_the_loop(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receive_from: int
) -> None:
    """A loop write slower than LOOP_WRITE_STALL (every one here, with the stall at 0) in which the
    thread never slept was slow for want of the CPU (other processes ran), not for the disk: a worker
    thread would not write sooner, so the writes stay in the loop (the receiver's and aiohttp's
    chunks' alike)."""
    monkeypatch.setattr(_downloads, "RECEIVE_FROM", receive_from)
    monkeypatch.setattr(_filewrite, "LOOP_WRITE_STALL", 0.0)
    async with client_for(emu, True) as client:
        process_id, task_id = await finished_task(client, emu)
        writes = DiskWrites(monkeypatch, pause=0.0)
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        monkeypatch.undo()
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    assert writes.sizes == []
    assert writes.loop_writes >= SIZE // MiB


async def test_a_cancelled_download_under_a_slow_disk_leaves_nothing(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client_for(emu, False) as client:
        process_id, task_id = await finished_task(client, emu)
        DiskWrites(monkeypatch, pause=0.005)
        halfway = asyncio.Event()

        def progress(done: int, total: int | None) -> None:
            if done >= SIZE // 2:
                halfway.set()

        download = asyncio.ensure_future(
            client.background_remover.download(process_id, task_id, tmp_path, on_progress=progress)
        )
        await halfway.wait()  # the thread has buffers to write (5 ms each)
        download.cancel()
        with pytest.raises(asyncio.CancelledError):
            await download
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        assert path.stat().st_size == SIZE


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a certificate")
@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_large_download_over_tls_is_read_into_the_buffers_byte_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_loop: bool
) -> None:
    """The API is HTTPS: asyncio's TLS transport decrypts into the receiver's buffers as well."""
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    emu = Emulator(auto_complete=False, download_size=SIZE, seed=5)
    runner = web.AppRunner(emu.app, access_log=None)
    await runner.setup()
    out = tmp_path / "out"
    out.mkdir()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
        credentials: dict[str, Any] = {
            "application_id": emu.application_id,
            "api_key": emu.api_key,
            "api_secret": emu.api_secret,
            "jwt_private_key": emu.jwt_private_key,
            "base_url": f"https://127.0.0.1:{runner.addresses[0][1]}",
        }
        transfer = TransferOptions(chunk_size=64 * 1024, write_in_loop=in_loop)
        async with AdCreativeClient(
            **credentials, user_id=USER, trust_env=False, transfer=transfer, ssl=client_context
        ) as client:
            process_id, task_id = await finished_task(client, emu)
            fed = count_fed_bytes(monkeypatch)
            path = await client.background_remover.download(process_id, task_id, out)
            monkeypatch.undo()
            assert digest_of(path) == await streamed_digest(client, process_id, task_id)
    finally:
        await runner.cleanup()
    assert sum(fed) < 2 * MiB, f"{sum(fed)} bytes through aiohttp's reader"
    assert [p.name for p in out.iterdir()] == [path.name]


@pytest.mark.parametrize("receive_from", [STREAM_WRITE_FROM, 2 * SIZE], ids=["received", "aiohttp"])
async def test_a_received_body_closes_its_connection_and_a_smaller_one_keeps_it(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receive_from: int
) -> None:
    """Past RECEIVE_FROM the connection is closed after the body (aiohttp's parser never saw it): the
    next request opens another. Below it, the body goes through aiohttp and the connection is reused."""
    monkeypatch.setattr(_downloads, "RECEIVE_FROM", receive_from)
    async with Proxy(emu.base_url) as proxy, client_for(emu, True, proxy.url) as client:
        process_id, task_id = await finished_task(client, emu)
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        before = proxy.connections
        await client.background_remover.process_progress(process_id)
        opened = proxy.connections - before
    assert path.stat().st_size == SIZE
    assert opened == (1 if receive_from <= SIZE else 0)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "thread"])
async def test_a_write_error_of_a_received_body_is_raised_and_leaves_nothing(
    emu: Emulator, tmp_path: Path, in_loop: bool
) -> None:
    """A write that fails (the file past the process's size limit: EFBIG, as a full disk fails) stops
    the download with that error, in the loop's write or the thread's; the temporary file goes."""
    async with client_for(emu, in_loop) as client:
        process_id, task_id = await finished_task(client, emu)
        (tmp_path / "keep.txt").write_text("x")
        with file_size_limit(5 * MiB + 3), pytest.raises(OSError, match="too large") as caught:
            await client.background_remover.download(process_id, task_id, tmp_path)
        assert caught.value.errno == errno.EFBIG
        assert os.listdir(tmp_path) == ["keep.txt"]
        path = await client.background_remover.download(process_id, task_id, tmp_path)
        assert digest_of(path) == await streamed_digest(client, process_id, task_id)
