"""How a thread that called the sync client sleeps until the loop thread has finished its call.

Each calling thread has a :class:`Waiter` of its own (thread-local, made on its first call): one end of a
pipe to sleep on, the other for the loop thread to wake it with one byte. A lock or a
``concurrent.futures.Future`` would do the same, but the loop thread releases a lock while it holds the
GIL: the woken caller then at once blocks again on the GIL, and the two threads ping-pong (measured on
this project's 2-core VM: 2.1-2.8 sleeps of the calling thread per call and 1.9-2.6 preemptions of the
loop thread, against 1.0 and 0.8-1.0 with a pipe; ``benchmarks/README.md``, sync section). ``os.write`` drops
the GIL before the kernel wakes the caller, so the caller runs as soon as it is scheduled.

A byte may come late (its call was abandoned: a timeout, or KeyboardInterrupt in the caller): the waiter
sleeps until its *own* call is done, so a stale byte only costs one more read. A thread that waits
while it is already waiting (a signal handler that calls the client during a call) gets a waiter of its
own for that call, so that neither takes the other's byte. A forked child makes new ones (its parent's
loop threads would write into the pipes it inherited).
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

_PIPES = os.name == "posix"


class Done(Protocol):
    """What a waiter waits for: a call whose ``done`` becomes true on the loop thread."""

    done: bool


class Waiter:
    """One thread's way to sleep until a call is done (see the module docstring).

    A pipe where there are pipes (a write costs about 0.5 µs here against 2-4 µs for a socket's send),
    else a socket pair (Windows, where ``select`` takes sockets only).
    """

    __slots__ = ("_reader", "_sockets", "_writer", "busy")

    def __init__(self) -> None:
        self.busy = False
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        # The loop thread never blocks on a full buffer: bytes left unread mean a wake is pending anyway.
        if _PIPES:
            self._reader, self._writer = os.pipe()
            os.set_blocking(self._writer, False)
        else:
            self._sockets = socket.socketpair()
            self._sockets[1].setblocking(False)
            self._reader, self._writer = (end.fileno() for end in self._sockets)

    def wake(self) -> None:
        """On the loop thread, after the call's ``done`` is set: wake the thread waiting for it."""
        # OSError: the buffer is full (a wake is pending).
        with contextlib.suppress(OSError):
            if self._sockets is None:
                os.write(self._writer, b"\0")
            else:
                self._sockets[1].send(b"\0")

    def _drain(self) -> None:
        if self._sockets is None:
            os.read(self._reader, 4096)
        else:
            self._sockets[0].recv(4096)

    def wait(self, call: Done, timeout: float | None) -> bool:
        """Sleep until ``call.done`` (True) or ``timeout`` seconds (False). Interruptible by signals
        (KeyboardInterrupt) where the platform interrupts a blocking read, as it does a lock."""
        if timeout is None:
            while not call.done:
                self._drain()  # also takes stale bytes of abandoned calls
            return True
        deadline = time.monotonic() + timeout
        while not call.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self._reader], [], [], remaining)
            if readable:
                self._drain()
        return True

    def __del__(self) -> None:
        # Closed only here: a call holds its waiter until it has woken it, so no wake can come after
        # and write into a descriptor number reused by then.
        if self._sockets is not None:
            for end in self._sockets:
                end.close()
        elif hasattr(self, "_writer"):  # else os.pipe() failed: nothing to close
            os.close(self._reader)
            os.close(self._writer)


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
    """In a forked child: its parent's loop threads may write into the inherited pipes."""
    _waiters.waiter = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
