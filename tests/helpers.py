"""Small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest

from adcreative_async import AdCreativeClient, PollPolicy, RenderKind, RenderType, RetryPolicy, _filewrite
from adcreative_async.testing import Emulator, sample_image

if TYPE_CHECKING:
    from adcreative_async.notifications import NotificationHub

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (16, 16))
JPEG = sample_image("jpeg", (16, 16))

#: Polls every 10-20 ms with no jitter, for tests that drive the emulator by hand.
FAST_POLLS = PollPolicy(
    initial_interval=0.01,
    max_interval=0.02,
    min_interval=0.005,
    jitter=None,
    burst=100,
    max_requests_per_second=10_000,
    not_found_grace=0.2,
)


#: A start call that may have made its render is reconciled after 50 ms, every 10 ms (bulk runs).
QUICK_RECONCILE = RetryPolicy(reconcile_grace=0.05, reconcile_interval=0.01)


def client_of(emulator: Emulator, user_id: str = USER, retry: RetryPolicy | None = None) -> AdCreativeClient:
    """A client of ``emulator`` that polls fast (:data:`FAST_POLLS`), ignores proxy variables, and
    retries by ``retry`` (the default policy without one)."""
    return AdCreativeClient(
        **emulator.credentials, user_id=user_id, trust_env=False, poll_policy=FAST_POLLS, retry=retry
    )


def count_thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every function sent to a worker thread (``anyio.to_thread.run_sync``, still called) from now on."""
    calls: list[object] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


@contextlib.asynccontextmanager
async def webhook_receiver(token: str) -> AsyncIterator[tuple[str, NotificationHub]]:
    """A webhook receiver on loopback (aiohttp, path token ``token``) feeding a new hub: its URL and
    the hub."""
    from aiohttp import web

    from adcreative_async.notifications import NotificationHub, WebhookReceiver
    from adcreative_async.notifications.aiohttp import webhook_app

    hub = NotificationHub()
    app = web.Application()
    app.add_subapp("/hooks/", webhook_app(WebhookReceiver(hub, path_token=token)))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/{token}", hub
    finally:
        await runner.cleanup()


async def eventually(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Let the event loop (and loopback I/O) run until ``condition`` holds; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the conditions are counters of other components
            await anyio.sleep(0.001)


def creative_inputs(**overrides: object) -> dict[str, Any]:
    """Valid ``creatives.generate()`` arguments (seed 001's example), with ``overrides``."""
    values: dict[str, Any] = {
        "brand_image": PNG,
        "background_image": JPEG,
        "main_headline": "Introducing Our Latest Product",
        "punchline": "Revolutionizing the industry.",
        "action_text": "Learn More",
        "color1_hex": "#fc2c2c",
        "color2_hex": "#002c2c",
        "render_kind": RenderKind.POST,
        "render_type": RenderType.SVG,
    }
    values.update(overrides)
    return values


ROOT = Path(__file__).resolve().parent.parent


def start_ledger_worker(*args: str) -> subprocess.Popen[str]:
    """``tests/ledger_worker.py ARGS`` in a process of its own, its output piped, the repository's root
    first on its ``PYTHONPATH`` (it imports ``benchmarks``, which a script run by its path does not see)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ledger_worker.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )


async def finished_task(client: AdCreativeClient, emu: Emulator) -> tuple[str, str]:
    """A background removal through ``client``, finished at once: its process and (first) task ids."""
    job = await client.background_remover.remove(sample_image("png", (16, 16)))
    emu.finish_process(job.process_id)
    return job.process_id, job.task_ids[0]


async def streamed_digest(client: AdCreativeClient, process_id: str, task_id: str) -> str:
    """The SHA-256 of a task's result, streamed (what a download to a file must hold)."""
    digest = hashlib.sha256()
    async with client.background_remover.stream_download(process_id, task_id) as stream:
        async for chunk in stream.iter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


def digest_of(path: Path) -> str:
    """The SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_fed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the pieces aiohttp's response reader is fed (``StreamReader.feed_data``) from now on
    (until ``monkeypatch.undo()``)."""
    fed: list[int] = []
    real = aiohttp.streams.StreamReader.feed_data

    def counting(self: aiohttp.streams.StreamReader, data: bytes, *args: Any) -> Any:
        fed.append(len(data))
        return real(self, data, *args)

    monkeypatch.setattr(aiohttp.streams.StreamReader, "feed_data", counting)
    return fed


class DiskWrites:
    """A download's writes to its file, watched and optionally slowed: the event loop's (``_write_fully``,
    each chunk) and the worker thread's (``write_chunks``, a batch). Each must run in its own thread (an
    AssertionError in the write otherwise).

    Args:
        monkeypatch: undone to stop watching.
        pause: seconds each thread write sleeps first (a slow disk).
        loop_pause: seconds each loop write sleeps in the write (the loop's thread asleep: a stalled disk).

    Attributes:
        writes: ``"loop"`` or ``"thread"`` for each write, in order.
        sizes: the bytes of each thread write.
        loop_writes: how many loop writes there were.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pause: float = 0.0, loop_pause: float = 0.0) -> None:
        self.loop = threading.get_ident()
        self.writes: list[str] = []
        self.sizes: list[int] = []
        self.loop_writes = 0
        real_thread, real_loop = _filewrite.write_chunks, _filewrite._write_fully

        def in_thread(handle: Any, chunks: Any) -> None:
            assert threading.get_ident() != self.loop
            self.writes.append("thread")
            if pause:
                time.sleep(pause)
            self.sizes.append(sum(len(c) for c in chunks))
            real_thread(handle, chunks)

        def in_loop(fd: int, data: Any) -> None:
            assert threading.get_ident() == self.loop
            self.writes.append("loop")
            self.loop_writes += 1
            if loop_pause:
                time.sleep(loop_pause)
            real_loop(fd, data)

        monkeypatch.setattr(_filewrite, "write_chunks", in_thread)
        monkeypatch.setattr(_filewrite, "_write_fully", in_loop)
