"""The client's background work (poll scheduler loops), in a task group held by a task of its own.

The task group is entered by an internal owner task that the client starts when it opens and joins when
it closes, never by the caller's task. So the client's lifetime does not depend on the task that opened
it: a notebook opens it in one cell and closes it in another (each cell is a task of its own); a web app
opens it in a startup hook and closes it in a shutdown hook; the sync client opens and closes it through
calls that each run in their own task. Structured concurrency is kept: every background task runs inside
the owner's task group, :meth:`BackgroundTasks.aclose` cancels that group and waits until the owner and
all its tasks have ended, and nothing is spawned once it has begun.

asyncio-only (like aiohttp, so like the client): the owner is an :class:`asyncio.Task` of the running loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

__all__ = ["BackgroundTasks"]


class BackgroundTasks:
    """One task group of background work, owned by an internal task; see the module docstring.

    Use: ``await start()`` once, ``spawn(...)`` while started, ``await aclose()`` (idempotent; from any
    task, and from several at once: every caller returns when the work has ended).
    """

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: anyio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether :meth:`spawn` can start a task (started, not closed)."""
        return self._group is not None

    async def start(self) -> None:
        """Start the owner task and wait until its task group is ready.

        Raises:
            RuntimeError: already started.
        """
        if self._owner is not None:
            raise RuntimeError("background tasks already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[anyio.abc.TaskGroup] = loop.create_future()
        stop = anyio.Event()
        self._stop = stop
        self._owner = owner = loop.create_task(self._hold(ready, stop), name="adcreative-async background")
        both: list[asyncio.Future[Any]] = [ready, owner]
        # Shielded: a caller cancelled right here must not leave an owner task behind unjoined.
        with anyio.CancelScope(shield=True):
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # the owner ended before its group was ready (the loop is shutting down)
            self._owner = None
            raise RuntimeError("the client's background task ended before it started")
        self._group = ready.result()

    @staticmethod
    async def _hold(ready: asyncio.Future[anyio.abc.TaskGroup], stop: anyio.Event) -> None:
        async with anyio.create_task_group() as group:
            ready.set_result(group)
            await stop.wait()
            group.cancel_scope.cancel()

    def spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``func(*args)`` in the task group (it runs until it returns or the group closes).

        Raises:
            RuntimeError: not started, or already closing.
        """
        if self._group is None:
            raise RuntimeError("background tasks are not running")
        self._group.start_soon(func, *args)

    async def aclose(self) -> None:
        """Cancel the background work and wait until every task of it has ended (shielded: a cancelled
        caller still leaves nothing running). Raises what a background task raised, if any did."""
        owner, stop = self._owner, self._stop
        self._group = None
        if owner is None or stop is None:
            return
        stop.set()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([owner])
        if owner.cancelled():
            return  # the loop itself is shutting down (asyncio.run cancels every task at its end)
        owner.result()
