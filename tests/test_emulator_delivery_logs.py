"""The emulator's failed webhook deliveries are logged without the hook's URL: a webhook URL carries
its secret path token (``WebhookReceiver(path_token=...)``), and aiohttp's errors carry the URL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from helpers import PNG, client_of, eventually

from adcreative_async.testing import Emulator

pytestmark = pytest.mark.anyio

TOKEN = "hooktoken-LOGMARKER-5f0e9d8c7b6a"


async def _answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request's head, answer what is not HTTP (aiohttp raises an error holding the URL)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"NOT-HTTP garbage\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_a_failed_webhook_delivery_is_logged_without_the_hooks_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await asyncio.start_server(_answer_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, Emulator(seed=3) as emulator, client_of(emulator) as client:
        emulator.add_notification_channel("webhook", f"http://127.0.0.1:{port}/hooks/{TOKEN}")
        with caplog.at_level(logging.DEBUG, logger="adcreative_async.testing"):
            job = await client.background_remover.remove(PNG)
            async for _ in job.wait_until_complete():
                pass
            await eventually(lambda: any(isinstance(d.status, str) for d in emulator.deliveries))
    assert {d.status for d in emulator.deliveries} == {"ClientResponseError"}  # the error's name is kept
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("adcreative_async.testing")]
    assert any("delivery to webhook failed" in m for m in logged)
    assert not [m for m in logged if TOKEN in m or "/hooks/" in m]
