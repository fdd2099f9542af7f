"""Shared pytest configuration: every async test runs under anyio's plugin on asyncio; ``cli_env``, the
environment of a command-line test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from adcreative_async.testing import EmulatorThread

#: The user id a command-line test's environment gives (the CLI needs one without a run ledger).
CLI_USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only, so anyio's plugin runs every async test on asyncio."""
    return "asyncio"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """An emulator in a thread, its credentials (and a user id) in the environment, as a user's shell
    would have them; no other ``ADCREATIVE_*`` variable of the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("ADCREATIVE_"):
            monkeypatch.delenv(name)
    with EmulatorThread(task_duration=0.01) as emulator:
        for name, value in emulator.credentials.items():
            monkeypatch.setenv(f"ADCREATIVE_{name.upper()}", str(value))
        monkeypatch.setenv("ADCREATIVE_USER_ID", CLI_USER_ID)
        yield emulator
