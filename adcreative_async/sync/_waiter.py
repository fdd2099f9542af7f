"""How a thread that called the sync client sleeps until the loop thread has finished its call.

Each calling thread has a :class:`Waiter` of its own (thread-local, made on its first call): one end of a
socket pair to sleep on, the other for the loop thread to wake it with one byte. A lock or a
``concurrent.futures.Future`` would do the same, but the loop thread releases a lock while it holds the
GIL: the woken caller then at once blocks again on the GIL, and the two threads ping-pong (measured on
this project's 2-core VM: 2.3-2.7 sleeps of the calling thread per call and 2.3 preemptions of the loop
thread, against 1.0 and 0.9 with a socket; ``benchmarks/README.md``, sync section). ``socket.send``
drops the GIL before the kernel wakes the caller, so the caller runs as soon as it is scheduled.

A byte may come late (its call was abandoned: a timeout, or KeyboardInterrupt in the caller): the waiter
sleeps until its *own* call is done, so a stale byte only costs one more ``recv``. A thread that waits
while it is already waiting (a signal handler that calls the client during a call) gets a waiter of its
own for that call, so that neither takes the other's byte. A forked child makes new ones (its parent's
loop threads would write into the sockets it inherited).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from typing import Protocol

__all__ = ["Waiter", "thread_waiter"]


class Done(Protocol):
    """What a waiter waits for: a call whose ``done`` becomes true on the loop thread."""

    done: bool


class Waiter:
    """One thread's way to sleep until a call is done (see the module docstring)."""

    __slots__ = ("_reader", "_writer", "busy")

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        # The loop thread never blocks on a full buffer: bytes left unread mean a wake is pending anyway.
        self._writer.setblocking(False)
        self.busy = False

    def wake(self) -> None:
        """On the loop thread, after the call's ``done`` is set: wake the thread waiting for it."""
        # OSError: the buffer is full (a wake is pending), or closed: nobody waits any more.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def wait(self, call: Done, timeout: float | None) -> bool:
        """Sleep until ``call.done`` (True) or ``timeout`` seconds (False). Interruptible by signals
        (KeyboardInterrupt) where the platform interrupts a blocking ``recv``, as it does a lock."""
        reader = self._reader
        if timeout is None:
            while not call.done:
                reader.recv(4096)  # also takes stale bytes of abandoned calls
            return True
        deadline = time.monotonic() + timeout
        while not call.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([reader], [], [], remaining)
            if readable:
                reader.recv(4096)
        return True

    def close(self) -> None:
        """Close both sockets (a late ``wake`` is then ignored)."""
        self._reader.close()
        self._writer.close()

    def __del__(self) -> None:
        self.close()


class _ThreadWaiters(threading.local):
    waiter: Waiter | None = None


_waiters = _ThreadWaiters()


def thread_waiter() -> tuple[Waiter, bool]:
    """The calling thread's waiter, marked busy, and whether it is the thread's own (to be marked idle
    again after the wait) or one made for a nested wait (closed once its call drops it)."""
    waiter = _waiters.waiter
    if waiter is None:
        waiter = _waiters.waiter = Waiter()
    elif waiter.busy:
        return Waiter(), False
    waiter.busy = True
    return waiter, True


def _forget_after_fork() -> None:
    """In a forked child: its parent's loop threads may write into the inherited sockets."""
    _waiters.waiter = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
