"""What ``import adcreative_async`` loads: only what the async client's path runs (issue 23).

A process that uses the async client pays for every module it imports, once per process: the per-job
benchmark bills the SDK's imports to its CPU. The sync client, the bulk helper, the webhook receiver,
the run ledger's backends, RabbitMQ, the emulator, the CLI and OpenTelemetry are imported on first use:
these tests check ``sys.modules`` of a fresh interpreter, never a timing. The public names stay
importable from where they always were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Modules (and packages, with everything under them) that the async per-job path does not run.
NOT_ON_THE_ASYNC_PATH = (
    "adcreative_async.sync",
    "adcreative_async._bulk",
    "adcreative_async._outcome",
    "adcreative_async.ledger",
    "adcreative_async.notifications._webhook",
    "adcreative_async.notifications._wsgi",
    "adcreative_async.notifications._access_log",
    "adcreative_async.notifications.rabbitmq",
    "adcreative_async.notifications.aiohttp",
    "adcreative_async.testing",
    "adcreative_async.cli",
    "adcreative_async.integrations",
    "anyio.streams.memory",
    "anyio.from_thread",
    "opentelemetry",
    "rich",
    "click",
    "asyncpg",
    "sqlite3",
    "aio_pika",
)


def _modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter (this checkout first on its path) after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_importing_the_package_loads_nothing_off_the_async_path() -> None:
    modules = _modules_after("import adcreative_async")
    assert "adcreative_async._client" in modules  # the check sees the package's own modules
    loaded = [name for name in NOT_ON_THE_ASYNC_PATH if _loaded(modules, name)]
    assert loaded == []


def test_a_client_with_its_resources_loads_nothing_off_the_async_path() -> None:
    code = (
        "import uuid\n"
        "from adcreative_async import AdCreativeClient, Limits, PollPolicy, RenderJob, TaskUpdate\n"
        "client = AdCreativeClient(\n"
        "    application_id=str(uuid.uuid4()), api_key='k', api_secret='s', jwt_private_key='j'\n"
        ")\n"
        "client.background_remover, client.upscaler, client.creatives\n"
    )
    modules = _modules_after(code)
    loaded = [name for name in NOT_ON_THE_ASYNC_PATH if _loaded(modules, name)]
    assert loaded == []


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("adcreative_async", "SyncAdCreativeClient", "adcreative_async.sync"),
        ("adcreative_async", "BulkRun", "adcreative_async._bulk"),
        ("adcreative_async", "BulkOutcome", "adcreative_async._bulk"),
        ("adcreative_async.notifications", "WebhookReceiver", "adcreative_async.notifications._webhook"),
        (
            "adcreative_async.notifications",
            "DEFAULT_MAX_BODY_SIZE",
            "adcreative_async.notifications._webhook",
        ),
    ],
)
def test_a_name_imported_on_first_use_is_the_one_of_its_module(module: str, name: str, home: str) -> None:
    code = (
        f"import importlib\n"
        f"package = importlib.import_module({module!r})\n"
        f"assert {home!r} not in sys.modules\n"
        f"from {module} import {name} as value\n"
        f"assert value is getattr(importlib.import_module({home!r}), {name!r})\n"
        f"assert getattr(package, {name!r}) is value and {name!r} in dir(package)\n"
    )
    assert home in _modules_after(code)


@pytest.mark.parametrize("module", ["adcreative_async", "adcreative_async.notifications"])
def test_every_public_name_resolves_and_an_unknown_one_raises(module: str) -> None:
    code = (
        "import importlib\n"
        f"package = importlib.import_module({module!r})\n"
        "missing = [n for n in package.__all__ if getattr(package, n, None) is None]\n"
        "assert missing == [], missing\n"
        "namespace = {}\n"
        f"exec('from {module} import *', namespace)\n"
        "assert set(package.__all__) <= set(namespace), set(package.__all__) - set(namespace)\n"
        "try:\n"
        "    package.NoSuchName\n"
        "except AttributeError as error:\n"
        "    assert 'NoSuchName' in str(error)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    _modules_after(code)
