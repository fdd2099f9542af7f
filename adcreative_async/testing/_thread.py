"""EmulatorThread: the emulator served from a background thread, for synchronous programs and tests."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

import anyio.from_thread

from ._emulator import Credentials, Emulator
from ._state import ProcessSnapshot, TaskSnapshot

__all__ = ["EmulatorThread"]

T = TypeVar("T")


class EmulatorThread:
    """An :class:`~adcreative_async.testing.Emulator` served from a background thread with its own event
    loop, for synchronous tests and programs.

    Every control runs on the emulator's loop (through an anyio blocking portal) and waits for it, so
    it is safe to call from any thread. Use it as a context manager, or :meth:`start` / :meth:`stop`::

        with EmulatorThread(task_duration=0.05) as emu:
            run_my_sync_code(base_url=emu.base_url, **emu.credentials)
            emu.finish_process(process_id)
            assert emu.request_count("Image/Generation/AdCreativesByKind") == 1

    Args:
        **options: keyword arguments of :class:`~adcreative_async.testing.Emulator`.
    """

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)
        """The emulator's keyword arguments."""
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._emulator_cm: AbstractContextManager[Emulator] | None = None
        self._emulator: Emulator | None = None
        self._credentials: Credentials | None = None

    def __repr__(self) -> str:
        url = self._credentials["base_url"] if self._credentials else None
        return f"<EmulatorThread base_url={url!r}>"

    def start(self) -> EmulatorThread:
        """Start the thread and the emulator; returns self. Raises what the emulator raises."""
        if self._portal is not None:
            raise RuntimeError("the emulator thread is already started")
        portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        portal = portal_cm.__enter__()
        try:
            emulator = portal.call(functools.partial(Emulator, **self.options))
            emulator_cm = portal.wrap_async_context_manager(emulator)
            emulator_cm.__enter__()
        except BaseException as exc:
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal_cm, self._portal = portal_cm, portal
        self._emulator_cm, self._emulator = emulator_cm, emulator
        self._credentials = emulator.credentials
        return self

    def stop(self) -> None:
        """Stop the emulator and its thread (idempotent)."""
        emulator_cm, self._emulator_cm = self._emulator_cm, None
        portal_cm, self._portal_cm = self._portal_cm, None
        self._portal = None
        self._emulator = None
        try:
            if emulator_cm is not None:
                emulator_cm.__exit__(None, None, None)
        finally:
            if portal_cm is not None:
                portal_cm.__exit__(None, None, None)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> tuple[anyio.from_thread.BlockingPortal, Emulator]:
        if self._portal is None or self._emulator is None:
            raise RuntimeError("the emulator thread is not running: use `with EmulatorThread() as emu:`")
        return self._portal, self._emulator

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func(emulator, *args, **kwargs)`` on the emulator's loop and return its result.

        For anything of :class:`~adcreative_async.testing.Emulator` this class has no method for;
        ``func`` may also be a coroutine function.
        """
        portal, emulator = self._running()
        return portal.call(functools.partial(func, emulator, *args, **kwargs))

    # -------------------------------------------------------------------------------- credentials

    @property
    def credentials(self) -> Credentials:
        """``application_id``, ``api_key``, ``api_secret``, ``jwt_private_key`` and ``base_url``:
        ``AdCreativeClient(**emu.credentials)``."""
        if self._credentials is None:
            raise RuntimeError("the emulator thread has not been started")
        return self._credentials

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running emulator."""
        return self.credentials["base_url"]

    @property
    def env(self) -> dict[str, str]:
        """The ``ADCREATIVE_*`` environment variables that point a client (or the CLI) at it."""
        creds = self.credentials
        return {
            "ADCREATIVE_BASE_URL": creds["base_url"],
            "ADCREATIVE_APPLICATION_ID": creds["application_id"],
            "ADCREATIVE_API_KEY": creds["api_key"],
            "ADCREATIVE_API_SECRET": creds["api_secret"],
            "ADCREATIVE_JWT_PRIVATE_KEY": creds["jwt_private_key"],
        }

    # ----------------------------------------------------------------------------------- controls

    def finish_task(self, task_id: str) -> None:
        """The task succeeds now."""
        self.call(Emulator.finish_task, task_id)

    def fail_task(self, task_id: str, message: str | None = None) -> None:
        """The task fails now (with ``message``, or the emulator's default one)."""
        if message is None:
            self.call(Emulator.fail_task, task_id)
        else:
            self.call(Emulator.fail_task, task_id, message)

    def set_task_state(self, task_id: str, state: int) -> None:
        """Pin a task to any state; it no longer ends on its own."""
        self.call(Emulator.set_task_state, task_id, state)

    def finish_process(self, process_id: str) -> None:
        """Every task of the process succeeds now."""
        self.call(Emulator.finish_process, process_id)

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward."""
        self.call(Emulator.advance, seconds)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        self.call(Emulator.expire_access_tokens)

    def fail_next(self, route: str, status: int = 500, count: int = 1, *, retry_after: int = 1) -> None:
        """The next ``count`` calls of ``route`` answer ``status`` (see ``Emulator.fail_next``)."""
        self.call(Emulator.fail_next, route, status, count, retry_after=retry_after)

    def truncate_next_download(self, task_id: str, after_bytes: int, *, count: int = 1) -> None:
        """Cut the next ``count`` downloads of a task after ``after_bytes`` bytes."""
        self.call(Emulator.truncate_next_download, task_id, after_bytes, count=count)

    # ---------------------------------------------------------------------------------- inspection

    def process(self, process_id: str) -> ProcessSnapshot:
        """A read-only snapshot of a process."""
        return self.call(Emulator.process, process_id)

    def task(self, task_id: str) -> TaskSnapshot:
        """A read-only snapshot of a task."""
        return self.call(Emulator.task, task_id)

    def processes_for(self, user_id: str) -> list[ProcessSnapshot]:
        """Snapshots of every process of a user, oldest first."""
        return self.call(Emulator.processes_for, user_id)

    def request_count(self, route: str, method: str | None = None) -> int:
        """How many requests ``route`` received (of ``method`` only, if given)."""
        return self.call(Emulator.request_count, route, method)

    def download_count(self, task_id: str) -> int:
        """Successful downloads of a task."""
        return self.call(Emulator.download_count, task_id)

    def requests(self) -> Counter[str]:
        """A copy of the request counter, keyed ``"METHOD route"``."""
        return self.call(lambda emulator: Counter(emulator.requests))
