"""pytest fixtures for testing your own code against the emulator (registered as a ``pytest11`` plugin).

Installed with adcreative-async, so there is nothing to configure: request a fixture by name.

- ``adcreative_emulator`` (async): a started :class:`~adcreative_async.testing.Emulator` on the test's
  event loop; its controls (``finish_process``, ``fail_next``, ``advance``…) are plain methods.
- ``adcreative_client`` (async): an open :class:`~adcreative_async.AdCreativeClient` bound to it, with a
  default user and fast polling.
- ``adcreative_emulator_thread`` (sync): an :class:`EmulatorThread`: the emulator served from a
  background thread, for synchronous tests (a Django or Flask view, a CLI, a worker): its ``base_url``,
  ``credentials`` and thread-safe controls.
- ``adcreative_sync_client`` (sync): an open :class:`~adcreative_async.SyncAdCreativeClient` bound to
  ``adcreative_emulator_thread``, with the same defaults as ``adcreative_client``.
- ``adcreative_emulator_options`` / ``adcreative_client_options``: the keyword arguments the fixtures
  use; override them in a ``conftest.py`` or parametrize them.

The async fixtures work under anyio's pytest plugin (``@pytest.mark.anyio``, asyncio backend: aiohttp is
asyncio-only) and under pytest-asyncio 1.1+ (``@pytest.mark.asyncio``, strict or auto mode), with no
decorator of yours: the plugin hands each of them to the async plugin that runs the test.

Example::

    import pytest

    pytestmark = pytest.mark.anyio  # or pytest.mark.asyncio


    async def test_cutout(adcreative_client, adcreative_emulator):
        job = await adcreative_client.background_remover.remove(sample_image("png", (32, 32)))
        adcreative_emulator.finish_process(job.process_id)
        assert (await job.result()).is_complete


    def test_sync_code(adcreative_emulator_thread):
        run_my_sync_pipeline(**adcreative_emulator_thread.credentials)
        assert adcreative_emulator_thread.request_count("Image/BackgroundRemoving/AdCreative") == 1


    def test_sync_client(adcreative_sync_client):
        job = adcreative_sync_client.background_remover.remove(sample_image("png", (32, 32)))
        assert job.result().is_complete

The plugin changes nothing in a test session unless its fixtures are requested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest

from .. import AdCreativeClient, PollPolicy, SyncAdCreativeClient
from ._emulator import Emulator
from ._thread import EmulatorThread

__all__ = [
    "DEFAULT_TEST_USER_ID",
    "TEST_POLL_POLICY",
    "EmulatorThread",
    "adcreative_client",
    "adcreative_client_options",
    "adcreative_emulator",
    "adcreative_emulator_options",
    "adcreative_emulator_thread",
    "adcreative_sync_client",
]

T = TypeVar("T")

#: The default user of ``adcreative_client`` (any fixed GUID works with the emulator).
DEFAULT_TEST_USER_ID = "00000000-0000-4000-8000-00000000a11c"

#: Polling for tests: the emulator answers in microseconds, so waits need not start at 0.5 s.
TEST_POLL_POLICY = PollPolicy(
    initial_interval=0.02,
    max_interval=0.2,
    min_interval=0.01,
    max_requests_per_second=1000.0,
    burst=100,
)

#: Emulator options of the fixtures unless ``adcreative_emulator_options`` is overridden: tasks take
#: 50 ms, so a test waiting for a render lasts a fraction of a second.
DEFAULT_EMULATOR_OPTIONS: dict[str, Any] = {"task_duration": 0.05}

_ASYNC_FIXTURES = frozenset({"adcreative_emulator", "adcreative_client"})


# ------------------------------------------------------------------------------------- options


@pytest.fixture
def adcreative_emulator_options() -> dict[str, Any]:
    """Keyword arguments of the fixtures' :class:`~adcreative_async.testing.Emulator`.

    Default: ``{"task_duration": 0.05}``. Override the fixture (in a ``conftest.py``, a module or a
    class) or parametrize it::

        @pytest.mark.parametrize("adcreative_emulator_options", [{"auto_complete": False}])
        async def test_manual(adcreative_client, adcreative_emulator): ...
    """
    return dict(DEFAULT_EMULATOR_OPTIONS)


@pytest.fixture
def adcreative_client_options() -> dict[str, Any]:
    """Keyword arguments of ``adcreative_client`` beyond the emulator's credentials.

    Default: a fixed ``user_id`` (:data:`DEFAULT_TEST_USER_ID`) and fast polling
    (:data:`TEST_POLL_POLICY`).
    """
    return {"user_id": DEFAULT_TEST_USER_ID, "poll_policy": TEST_POLL_POLICY}


# -------------------------------------------------------------------------------- async fixtures


def _require_asyncio(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(
            f"{name} runs on asyncio (aiohttp is asyncio-only): use anyio's asyncio backend "
            "(the default anyio_backend) or pytest-asyncio",
            pytrace=False,
        )


@asynccontextmanager
async def _open_emulator(options: dict[str, Any]) -> AsyncIterator[Emulator]:
    _require_asyncio("adcreative_emulator")
    async with Emulator(**options) as emulator:
        yield emulator


@asynccontextmanager
async def _open_client(emulator: Emulator, options: dict[str, Any]) -> AsyncIterator[AdCreativeClient]:
    _require_asyncio("adcreative_client")
    async with AdCreativeClient(**{**emulator.credentials, **options}) as client:
        yield client


def _async_fixture(func: Callable[..., T]) -> Any:
    """``pytest.fixture``, also marked for pytest-asyncio's strict mode when it is installed (anyio's
    plugin ignores the mark; the hook below picks the runner per test)."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(func)
    return pytest_asyncio.fixture(func)


@_async_fixture
async def adcreative_emulator(adcreative_emulator_options: dict[str, Any]) -> AsyncIterator[Emulator]:
    """A started emulator on the test's event loop (async tests: anyio or pytest-asyncio).

    Its controls are plain methods, called from the test between requests:
    ``finish_process(process_id)``, ``fail_task(task_id)``, ``advance(seconds)``, ``fail_next(route,
    status)``; its counters tell what your code sent: ``request_count(route)``, ``download_count(task_id)``.
    """
    async with _held_in_own_task(_open_emulator(adcreative_emulator_options)) as emulator:
        yield emulator


@_async_fixture
async def adcreative_client(
    adcreative_emulator: Emulator, adcreative_client_options: dict[str, Any]
) -> AsyncIterator[AdCreativeClient]:
    """An open :class:`~adcreative_async.AdCreativeClient` talking to ``adcreative_emulator``.

    It has a default user (``client.user_id``) and polls fast; change both with
    ``adcreative_client_options``.
    """
    async with _held_in_own_task(_open_client(adcreative_emulator, adcreative_client_options)) as client:
        yield client


#: How each async fixture opens its value from the fixture arguments (extra arguments a plugin adds,
#: such as ``request``, are ignored).
_OPENERS: dict[str, Callable[..., AbstractAsyncContextManager[Any]]] = {
    "adcreative_emulator": lambda **kw: _open_emulator(kw["adcreative_emulator_options"]),
    "adcreative_client": lambda **kw: _open_client(
        kw["adcreative_emulator"], kw["adcreative_client_options"]
    ),
}


@asynccontextmanager
async def _held_in_own_task(manager: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit ``manager`` in one task of its own.

    pytest-asyncio runs a fixture's setup and teardown as two separate tasks, and the client's task
    group must be exited by the task that entered it; this keeps both in one task that lives from setup
    to teardown (no cancel scope is held here across the ``yield``).
    """
    loop = asyncio.get_running_loop()
    entered: asyncio.Future[T] = loop.create_future()
    release = asyncio.Event()

    async def hold() -> None:
        try:
            async with manager as value:
                entered.set_result(value)
                await release.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
                return
            raise

    task = loop.create_task(hold())
    try:
        value = await entered
    except BaseException:
        await task
        raise
    try:
        yield value
    finally:
        release.set()
        await task


def _anyio_variant(name: str) -> Callable[..., Any]:
    """The fixture for anyio's plugin: unmarked (so that pytest-asyncio leaves it alone); anyio runs
    an async generator fixture's setup and teardown in one task."""
    opener = _OPENERS[name]

    async def fixture(**kwargs: Any) -> AsyncIterator[Any]:
        async with opener(**kwargs) as value:
            yield value

    fixture.__name__ = name
    return fixture


def _asyncio_variant(name: str, loop_scope: str | None) -> Callable[..., Any]:
    """The fixture for pytest-asyncio, on the requesting test's loop scope."""
    opener = _OPENERS[name]

    async def fixture(**kwargs: Any) -> AsyncIterator[Any]:
        async with _held_in_own_task(opener(**kwargs)) as value:
            yield value

    fixture.__name__ = name
    import pytest_asyncio

    scope: Any = loop_scope  # one of pytest's scope names, or None for pytest-asyncio's default
    pytest_asyncio.fixture(fixture, loop_scope=scope)
    return fixture


def _no_async_plugin(name: str) -> Callable[..., Any]:
    def fixture(**kwargs: Any) -> Any:
        pytest.fail(
            f"{name} is an async fixture: request it from an async test marked @pytest.mark.anyio "
            "(anyio's plugin) or @pytest.mark.asyncio (pytest-asyncio); from a synchronous test, use "
            "adcreative_sync_client or adcreative_emulator_thread",
            pytrace=False,
        )

    return fixture


def _asyncio_loop_scope(request: pytest.FixtureRequest) -> str | None:
    marker = request.node.get_closest_marker("asyncio")
    scope = marker.kwargs.get("loop_scope") if marker is not None else None
    if scope is None:
        try:
            scope = request.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # an older pytest-asyncio without that option
            scope = None
    return str(scope) if scope else None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, Any, None]:
    """Hand this plugin's async fixtures to the async plugin that runs the requesting test.

    For this setup only, the fixture is swapped: for a test of anyio's plugin (it uses
    ``anyio_backend``), for an unmarked one that pytest-asyncio leaves to anyio; for a pytest-asyncio
    test, for one marked with ``pytest_asyncio.fixture`` on the test's loop scope; for a test of
    neither, for one that fails with a message saying what to do. Other fixtures, and fixtures of the
    same names defined by the user, are left alone.
    """
    name = fixturedef.argname
    if name not in _ASYNC_FIXTURES or not _is_ours(fixturedef.func, name):
        yield
        return
    pytest_asyncio_active = request.config.pluginmanager.has_plugin("asyncio")
    if "anyio_backend" in request.fixturenames:
        if not pytest_asyncio_active:
            yield
            return
        replacement = _anyio_variant(name)
    elif pytest_asyncio_active and request.node.get_closest_marker("asyncio") is not None:
        replacement = _asyncio_variant(name, _asyncio_loop_scope(request))
    else:
        replacement = _no_async_plugin(name)
    original = fixturedef.func
    fixturedef.func = replacement
    try:
        yield
    finally:
        fixturedef.func = original


def _is_ours(func: Any, name: str) -> bool:
    """Whether ``func`` is this plugin's fixture ``name`` (not a user's fixture of the same name)."""
    func = getattr(func, "__func__", func)
    return getattr(func, "__module__", None) == __name__ and getattr(func, "__name__", None) == name


# --------------------------------------------------------------------------------- sync fixtures


@pytest.fixture
def adcreative_emulator_thread(adcreative_emulator_options: dict[str, Any]) -> Iterator[EmulatorThread]:
    """An emulator served from a background thread, for synchronous tests.

    Point your code at ``adcreative_emulator_thread.base_url`` with ``.credentials`` (or set ``.env``
    with ``monkeypatch``); its controls (``finish_process``, ``fail_next``…) and counters are safe to
    call from the test.
    """
    with EmulatorThread(**adcreative_emulator_options) as emulator:
        yield emulator


@pytest.fixture
def adcreative_sync_client(
    adcreative_emulator_thread: EmulatorThread, adcreative_client_options: dict[str, Any]
) -> Iterator[SyncAdCreativeClient]:
    """An open :class:`~adcreative_async.SyncAdCreativeClient` talking to ``adcreative_emulator_thread``,
    for synchronous tests; a default user and fast polling, as ``adcreative_client`` (change both with
    ``adcreative_client_options``)."""
    with SyncAdCreativeClient(
        **{**adcreative_emulator_thread.credentials, **adcreative_client_options}
    ) as client:
        yield client
