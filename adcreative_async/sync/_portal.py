"""The machinery of the sync layer: one event loop in a thread of its own per client, and the generic
wrappers that turn async methods and iterators into blocking ones.

:class:`LoopThread` runs an asyncio event loop in a daemon thread with an anyio
:class:`~anyio.from_thread.BlockingPortal` in its main task (what anyio's ``start_blocking_portal``, the
emulator's ``EmulatorThread``, does; written out here so that nothing is left to a generator's finaliser,
which would wait for the thread forever after a fork or a timed-out stop at exit).
A call from any thread is handed to that loop with one ``call_soon_threadsafe`` (the portal's own
``call`` takes two hand-offs and a task even for a plain function: about twice the overhead) and its
thread sleeps on its :class:`~._waiter.Waiter` until the result is there (one byte on a socket: see
``_waiter.py`` for why not a lock or a ``concurrent.futures.Future``). Calls from many threads at once
run concurrently on the loop, like tasks of an async program. Every call's task is tracked:
:meth:`LoopThread.stop` cancels and awaits what is still running before the loop ends, so nothing
outlives the client. Context managers that must be entered and left in one task (a bulk run, a
download stream) are held by the portal
(:meth:`~anyio.from_thread.BlockingPortal.wrap_async_context_manager`).

:func:`blocking` and :func:`on_loop` declare a sync twin of an async object's method in one line,
typed with the async method's own parameters (a :class:`~typing.ParamSpec`): type checkers and IDEs see
the same parameter names, kinds and types, ``help()`` and ``inspect.signature`` show them, and a
parameter added to the async method is there in the twin at once. ``tests/test_sync_surface.py``
checks that every public name of the async classes has its twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

import anyio.from_thread

from .._errors import ClientNotOpenError
from ._waiter import Waiter, thread_waiter

__all__ = ["BlockingIterator", "LoopThread", "SyncObject", "blocking", "on_loop"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
U = TypeVar("U")

#: The message of a call made while the client is not open.
CLOSED_WHILE_RUNNING = "the client was closed while this call was running"
NOT_OPEN = (
    "the client is not open: use `with SyncAdCreativeClient(...) as client:` "
    "(or `client.open()` ... `client.close()`)"
)


class LoopThread:
    """An asyncio event loop in a daemon thread; :meth:`submit` runs a call on it from any thread.

    The thread is a daemon: a program that exits without closing its client does not hang at exit
    (the client's ``atexit`` hook closes it first; see ``SyncAdCreativeClient``).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        # Reentrant: a signal handler may call the client while its thread is scheduling a call.
        self._lock = threading.RLock()
        self._stopping = False
        self._tasks: set[asyncio.Future[Any]] = set()  # touched on the loop only

    def start(self) -> None:
        """Start the thread and its loop (once)."""
        if self._thread is not None:
            raise RuntimeError("the loop thread is already started")
        ready: concurrent.futures.Future[anyio.from_thread.BlockingPortal] = concurrent.futures.Future()

        async def serve() -> None:
            async with anyio.from_thread.BlockingPortal() as portal:
                self._loop, self._thread_id = asyncio.get_running_loop(), threading.get_ident()
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend="asyncio")
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)

        self._thread = threading.Thread(target=run, name="adcreative-async sync client", daemon=True)
        self._thread.start()
        self._portal = ready.result()

    @property
    def running(self) -> bool:
        """Whether calls are accepted."""
        return self._loop is not None and not self._stopping

    def in_loop_thread(self) -> bool:
        """Whether the current thread is this loop's own."""
        return threading.get_ident() == self._thread_id

    def _schedule(
        self, call: _Call, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        loop = self._loop
        if loop is None or self._stopping:
            raise ClientNotOpenError(NOT_OPEN)
        if self.in_loop_thread():
            raise RuntimeError(
                "a sync client cannot be called from its own event loop thread (e.g. from a bulk "
                "run's submit or on_update callback, which run there): use the async client they are given"
            )
        with self._lock:  # no call is scheduled on a loop that stop() has begun to end
            if self._stopping:
                raise ClientNotOpenError(NOT_OPEN)
            loop.call_soon_threadsafe(self._start, call, func, args, kwargs)

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``func(*args, **kwargs)`` on the loop (awaited if it returns an awaitable) and return its
        result; blocks the calling thread until then (or ``timeout`` seconds: then it is cancelled).

        Raises:
            ClientNotOpenError: the loop is not running, or it was stopped while the call ran.
            RuntimeError: called from the loop's own thread (it would wait for itself forever).
            TimeoutError: ``timeout`` ran out (``concurrent.futures.TimeoutError``, the same class
                since Python 3.11).
            whatever ``func`` raises.
        """
        waiter, own = thread_waiter()
        call = _Call(waiter)
        try:
            self._schedule(call, func, args, kwargs or {})
            if not waiter.wait(call, timeout):
                raise concurrent.futures.TimeoutError
        except BaseException:
            # KeyboardInterrupt (or SystemExit) in this thread, or the timeout: the call is cancelled
            # on the loop too (not started yet: it never starts). The signal may come as soon as the
            # call is scheduled (the hand-off drops the GIL): the call exists before, to be cancelled.
            call.abandoned = True
            self._cancel_soon(call)
            raise
        finally:
            if own:
                waiter.busy = False
        return call.outcome()

    def _cancel_soon(self, call: _Call) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(call.cancel)

    def submit_future(
        self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[Any]:
        """Start ``func(*args, **kwargs)`` on the loop and return at once: its outcome comes in the
        returned future (cancelling the future cancels the call). The task is tracked like any call:
        :meth:`stop` cancels it, and the future then holds ClientNotOpenError.

        Raises:
            ClientNotOpenError: the loop is not running.
            RuntimeError: called from the loop's own thread.
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call = _Call(None, future)
        self._schedule(call, func, args, kwargs or {})

        def cancelled(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                call.abandoned = True
                self._cancel_soon(call)

        future.add_done_callback(cancelled)
        return future

    def submit_nowait(self, func: Callable[..., Any], *args: Any) -> None:
        """Schedule ``func(*args)`` on the loop without waiting (for finalisers); ignored once stopped.
        The task is tracked like any call: :meth:`stop` awaits it."""
        with contextlib.suppress(ClientNotOpenError, RuntimeError):  # stopped, or closed in between
            self._schedule(_Call(None), func, args, {})

    def _start(
        self, call: _Call, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """On the loop: run the call; a plain function's result is delivered at once, an awaitable's
        when the task awaiting it ends. (Leaner than ``run_coroutine_threadsafe``: no task for a plain
        function, and no wrapper coroutine around an async one.)"""
        if call.abandoned:
            return  # its caller gave up before it started
        if self._stopping:
            call.finish(None, ClientNotOpenError(CLOSED_WHILE_RUNNING))
            return
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                call.task = task
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._finish, call))
                return
        except BaseException as exc:  # it belongs to the caller's thread
            call.finish(None, exc)
            return
        call.finish(result, None)

    def _finish(self, call: _Call, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            call.finish(None, ClientNotOpenError(CLOSED_WHILE_RUNNING))
            return
        error = task.exception()
        call.finish(None if error is not None else task.result(), error)

    def wrap_context(self, manager: AbstractAsyncContextManager[T]) -> AbstractContextManager[T]:
        """``manager`` as a sync context manager, entered and left in one task of the loop."""
        portal = self._portal
        if portal is None or self._stopping:
            raise ClientNotOpenError(NOT_OPEN)
        if self.in_loop_thread():
            raise RuntimeError("a sync client cannot be used from its own event loop thread")
        return portal.wrap_async_context_manager(manager)

    def stop(self, *, timeout: float | None = None) -> None:
        """Cancel the calls still running (their threads get ClientNotOpenError), stop the loop and join
        the thread. Idempotent. With a ``timeout`` (interpreter exit), a loop that does not stop in time
        is left to die with the process (the thread is a daemon)."""
        if self.in_loop_thread():
            raise RuntimeError("a sync client cannot be closed from its own event loop thread")
        with self._lock:
            self._stopping = True
        portal, self._portal = self._portal, None
        thread, self._thread = self._thread, None
        self._loop = None
        if portal is None or thread is None:
            return
        try:
            portal.start_task_soon(self._cancel_calls).result(timeout)
            # Context managers still held (entered, never left) are cancelled too.
            portal.start_task_soon(portal.stop, True).result(timeout)
        except concurrent.futures.TimeoutError:
            return
        thread.join(timeout)

    async def _cancel_calls(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _Call:
    """One call from a thread: its outcome, set on the loop, the waiter of the thread that waits for it
    (none for :meth:`LoopThread.submit_nowait` and :meth:`LoopThread.submit_future`), the future that
    receives its outcome (:meth:`LoopThread.submit_future` only) and, once started, its task."""

    __slots__ = ("abandoned", "done", "error", "future", "result", "task", "waiter")

    def __init__(self, waiter: Waiter | None, future: concurrent.futures.Future[Any] | None = None) -> None:
        self.waiter = waiter
        self.future = future
        self.done = False
        self.abandoned = False  # set by the caller that stopped waiting: a call not started never starts
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Future[Any] | None = None

    def finish(self, result: Any, error: BaseException | None) -> None:
        """On the loop: set the outcome and wake the waiting thread."""
        self.result, self.error = result, error
        self.done = True
        if self.waiter is not None:
            self.waiter.wake()
        future = self.future
        if future is not None:
            self.future = self.result = self.error = None  # the future holds the outcome now
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled by its owner
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)

    def outcome(self) -> Any:
        """In the caller's thread, once done: the result, or the error raised as itself (its traceback
        runs through the loop's frames, then the caller's)."""
        error = self.error
        if error is None:
            return self.result
        self.error = None  # no cycle through this call and the traceback's frames
        try:
            raise error
        finally:
            del error

    def cancel(self) -> None:
        """On the loop: cancel the call's task, if it has one."""
        if self.task is not None:
            self.task.cancel()


class SyncObject:
    """Base of every sync twin: the async object it stands for and the sync client that runs it."""

    def __init__(self, client: Any, target: Any) -> None:
        self._client = client
        self._target = target

    def _loop_thread(self) -> LoopThread:
        """The client's running loop thread (raises ClientNotOpenError when not open)."""
        return cast(LoopThread, self._client._running_loop())

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._loop_thread().submit(_invoke, (self._target, name, args, kwargs))


def _invoke(target: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Looked up by name on the loop: a subclass's override of the async method is the one called.
    return getattr(target, name)(*args, **kwargs)


class Twin(Generic[P, R]):
    """A sync twin of an async object's method (made by :func:`blocking` or :func:`on_loop`).

    On an instance it is a plain function with the async method's parameters that runs the method on the
    client's loop, waits, and returns its result (converted, for handles: a ``RenderJob`` becomes a
    ``SyncRenderJob``…).
    """

    def __init__(self, method: Callable[..., Any], convert: Callable[[Any, Any], Any] | None) -> None:
        self.method = method
        self.convert = convert
        self.name: str = method.__name__
        self.__doc__ = _twin_doc(method)
        self.signature = _twin_signature(method, convert)
        # Read on the class, it behaves like a function: ``inspect.signature`` and ``help()`` show the
        # parameters (``self`` first), and ``Class.method(obj, ...)`` calls it.
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        self.__signature__ = self.signature.replace(
            parameters=[self_parameter, *self.signature.parameters.values()]
        )
        self.__name__ = self.name
        self.__qualname__ = self.name

    def __call__(self, obj: SyncObject, /, *args: Any, **kwargs: Any) -> Any:
        """Call the twin on ``obj`` (as ``obj.<name>(...)``)."""
        return self.__get__(obj, type(obj))(*args, **kwargs)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.__qualname__ = f"{owner.__qualname__}.{name}"
        if name != self.name:
            raise TypeError(f"the sync twin of {self.name!r} must have the same name (got {name!r})")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Twin[P, R]: ...

    @overload
    def __get__(self, obj: SyncObject, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: SyncObject | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        bound = self._bind(obj)
        obj.__dict__[self.name] = bound  # the next lookups find it at once
        return bound

    def _bind(self, obj: SyncObject) -> Callable[..., Any]:
        name, convert = self.name, self.convert

        def twin(*args: Any, **kwargs: Any) -> Any:
            value = obj._call(name, args, kwargs)
            return value if convert is None else convert(obj, value)

        twin.__name__ = name
        twin.__qualname__ = f"{type(obj).__name__}.{name}"
        twin.__doc__ = self.__doc__
        twin.__signature__ = self.signature  # type: ignore[attr-defined]
        return twin


def _twin_doc(method: Callable[..., Any]) -> str:
    owner = method.__qualname__
    doc = inspect.getdoc(method) or ""
    return f"Sync twin of ``{owner}`` (blocks until it returns; same parameters).\n\n{doc}".rstrip()


def _twin_signature(method: Callable[..., Any], convert: Callable[..., Any] | None) -> inspect.Signature:
    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())[1:]  # without self
    returns = signature.return_annotation
    if convert is not None:
        returns = inspect.signature(convert).return_annotation
    return signature.replace(parameters=parameters, return_annotation=returns)


@overload
def blocking(method: Callable[Concatenate[Any, P], Awaitable[R]]) -> Twin[P, R]: ...


@overload
def blocking(
    method: Callable[Concatenate[Any, P], Awaitable[R]], convert: Callable[[Any, R], S]
) -> Twin[P, S]: ...


def blocking(method: Callable[..., Any], convert: Callable[[Any, Any], Any] | None = None) -> Twin[Any, Any]:
    """The sync twin of an ``async def`` method: blocks until its result, converted by ``convert(owner,
    result)`` if given (for results that are handles of the async world)."""
    return Twin(method, convert)


@overload
def on_loop(method: Callable[Concatenate[Any, P], R]) -> Twin[P, R]: ...


@overload
def on_loop(method: Callable[Concatenate[Any, P], R], convert: Callable[[Any, R], S]) -> Twin[P, S]: ...


def on_loop(method: Callable[..., Any], convert: Callable[[Any, Any], Any] | None = None) -> Twin[Any, Any]:
    """The sync twin of a plain method that must run on the loop (it reads or creates the client's
    loop-bound state: a wait registers with the poll scheduler), its result converted if ``convert``."""
    return Twin(method, convert)


_END = object()


class BlockingIterator(Generic[T]):
    """An async iterator driven from a sync thread: each ``next()`` runs one ``__anext__`` on the loop.

    Works for the SDK's iterator classes and for async generators alike. ``close()`` (also on leaving a
    ``with`` block, and when the iterator is dropped, e.g. after ``break``) closes an async generator
    on the loop, running its ``finally`` blocks; the SDK's own iterators hold nothing between items, so
    ``break`` alone leaves nothing behind.
    """

    @overload
    def __init__(self: BlockingIterator[U], owner: SyncObject, iterator: AsyncIterator[U]) -> None: ...

    @overload
    def __init__(self, owner: SyncObject, iterator: AsyncIterator[U], convert: Callable[[U], T]) -> None: ...

    def __init__(
        self,
        owner: SyncObject,
        iterator: AsyncIterator[Any],
        convert: Callable[[Any], T] | None = None,
    ) -> None:
        self._owner = owner
        self._iterator: AsyncIterator[Any] = iterator
        self._convert: Callable[[Any], T] | None = convert
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {type(self._iterator).__name__}>"

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        try:
            item = self._owner._loop_thread().submit(_next_item, (self._iterator,))
        except BaseException:
            self._closed = True  # an async iterator that raised is finished
            raise
        if item is _END:
            self._closed = True
            raise StopIteration
        return item if self._convert is None else self._convert(item)

    def close(self) -> None:
        """Stop iterating; an async generator is closed on the loop (its ``finally`` blocks run)."""
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            self._owner._loop_thread().submit(aclose)

    def __enter__(self) -> BlockingIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._iterator, "aclose", None)
        loop = getattr(self._owner._client, "_loop", None)
        if aclose is not None and isinstance(loop, LoopThread):
            loop.submit_nowait(aclose)  # never blocks a finaliser (it may run on the loop's thread)


async def _next_item(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END
