"""Small helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def eventually(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Let the event loop (and loopback I/O) run until ``condition`` holds; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the conditions are counters of other components
            await anyio.sleep(0.001)
