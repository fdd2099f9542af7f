"""Small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from adcreative_async import AdCreativeClient, PollPolicy, RenderKind, RenderType, RetryPolicy
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
