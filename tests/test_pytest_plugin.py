"""The pytest plugin (``adcreative_async.testing.pytest_plugin``), exercised as users meet it: tiny test
suites run by pytest's ``pytester`` under anyio's plugin, pytest-asyncio (strict and auto) and plain
synchronous tests."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

ASYNC_SUITE = """
import pytest
from adcreative_async.testing import sample_image

MARK

async def test_client_reaches_the_emulator(adcreative_client, adcreative_emulator):
    job = await adcreative_client.background_remover.remove(sample_image("png", (32, 32)))
    assert (await job.result()).is_complete
    assert adcreative_emulator.request_count("Image/BackgroundRemoving/AdCreative") == 1
    assert adcreative_client.user_id is not None

@pytest.mark.parametrize("adcreative_emulator_options", [{"auto_complete": False}])
async def test_manual_controls(adcreative_client, adcreative_emulator):
    job = await adcreative_client.background_remover.remove(sample_image("png", (32, 32)))
    assert not (await job.refresh()).is_complete
    adcreative_emulator.finish_process(job.process_id)
    assert (await job.refresh()).is_complete

async def test_emulator_alone(adcreative_emulator):
    assert adcreative_emulator.base_url.startswith("http://127.0.0.1:")
"""

SYNC_SUITE = """
import anyio
import pytest
from adcreative_async import AdCreativeClient
from adcreative_async.testing import sample_image

@pytest.fixture
def adcreative_emulator_options():
    return {"auto_complete": False}

def start_render(credentials):
    async def go():
        async with AdCreativeClient(**credentials, user_id="11111111-2222-4333-8444-555555555555") as client:
            job = await client.background_remover.remove(sample_image("png", (16, 16)))
            return job.process_id, job.task_ids[0]
    return anyio.run(go)

def test_sync_code_with_the_thread_emulator(adcreative_emulator_thread):
    emu = adcreative_emulator_thread
    process_id, task_id = start_render(emu.credentials)
    assert emu.process(process_id).tasks[task_id].state == 1
    emu.finish_process(process_id)
    assert emu.task(task_id).state == 5
    assert emu.request_count("Image/BackgroundRemoving/AdCreative") == 1
    assert emu.requests()["POST Image/BackgroundRemoving/AdCreative"] == 1
    emu.fail_next("Image/BackgroundRemoving/AdCreative", 500)
    emu.advance(5)
    assert emu.call(lambda e, pid: e.process(pid).process_id, process_id) == process_id
    assert set(emu.env) >= {"ADCREATIVE_BASE_URL", "ADCREATIVE_API_SECRET"}

def test_sync_client_fixture(adcreative_sync_client, adcreative_emulator_thread):
    job = adcreative_sync_client.background_remover.remove(sample_image("png", (16, 16)))
    adcreative_emulator_thread.finish_process(job.process_id)
    assert job.result(timeout=10).is_complete
    assert adcreative_sync_client.user_id is not None
    assert adcreative_emulator_thread.request_count("Image/BackgroundRemoving/AdCreative") == 1

def test_async_fixture_from_a_sync_test_says_what_to_do(adcreative_client):
    pass
"""

INI_ASYNCIO = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_mode = {mode}
"""


def _has_pytest_asyncio() -> bool:
    try:
        importlib.metadata.version("pytest-asyncio")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


#: Inner runs: warnings are errors; hypothesis's plugin is slow to start and not needed here.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "error")

needs_pytest_asyncio = pytest.mark.skipif(not _has_pytest_asyncio(), reason="pytest-asyncio is not installed")


def test_plugin_is_registered_by_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "adcreative_async.testing.pytest_plugin" for ep in entry_points)


def test_async_fixtures_under_anyio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ASYNC_SUITE.replace("MARK", "pytestmark = pytest.mark.anyio"))
    result = pytester.runpytest_inprocess("-p", "no:asyncio", *QUIET)
    result.assert_outcomes(passed=3)


@needs_pytest_asyncio
def test_async_fixtures_under_anyio_with_pytest_asyncio_loaded(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI_ASYNCIO.format(mode="strict"))
    pytester.makepyfile(ASYNC_SUITE.replace("MARK", "pytestmark = pytest.mark.anyio"))
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=3)


@needs_pytest_asyncio
@pytest.mark.parametrize("mark", ["pytest.mark.asyncio", 'pytest.mark.asyncio(loop_scope="module")'])
def test_async_fixtures_under_pytest_asyncio_strict(pytester: pytest.Pytester, mark: str) -> None:
    pytester.makeini(INI_ASYNCIO.format(mode="strict"))
    pytester.makepyfile(ASYNC_SUITE.replace("MARK", f"pytestmark = {mark}"))
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=3)


@needs_pytest_asyncio
def test_async_fixtures_under_pytest_asyncio_auto(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI_ASYNCIO.format(mode="auto"))
    pytester.makepyfile(ASYNC_SUITE.replace("MARK", ""))
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=3)


def test_thread_emulator_for_synchronous_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SYNC_SUITE)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", *QUIET)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*is an async fixture: request it from an async test marked*"])


def test_plugin_changes_nothing_unless_its_fixtures_are_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        async def adcreative_client():  # the user's own fixture of the same name wins, untouched
            return "mine"

        @pytest.mark.anyio
        async def test_own_fixture(adcreative_client):
            assert adcreative_client == "mine"

        def test_plain():
            assert True
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio", *QUIET)
    result.assert_outcomes(passed=2)
