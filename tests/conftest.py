"""Shared pytest configuration: every async test runs under anyio's plugin on asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only, so anyio's plugin runs every async test on asyncio."""
    return "asyncio"
