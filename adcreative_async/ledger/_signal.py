"""A change signal for the bulk driver: an event made only when someone waits for the next change.

The driver signals room freed and items changed several times per item (measured: three
:class:`anyio.Event` objects made and set per item, most of them with no waiter); the waiters are few (the
feeder waiting for room, the watcher and the finished-process probe waiting for a change).
"""

from __future__ import annotations

import anyio

__all__ = ["Signal"]


class Signal:
    """Wake every task waiting in :meth:`wait` at the next :meth:`fire` (as setting an event and replacing
    it with a new one would), without making an event when nobody waits."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        """Wait for the next :meth:`fire`."""
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def fire(self) -> None:
        """Wake the tasks waiting now; later waiters wait for the next one."""
        event, self._event = self._event, None
        if event is not None:
            event.set()
