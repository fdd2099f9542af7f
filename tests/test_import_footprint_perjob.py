"""What the per-job path (``remove`` -> ``wait_until_complete()`` -> ``download``) loads, issue 23:
push notifications, adaptive rate control, bulk naming and the large-download receiver are imported
on first use, so that a process that never uses them does not pay for them (the per-job benchmark
bills every import to the SDK's CPU). These tests check ``sys.modules`` of a fresh interpreter, never
a timing; the names stay importable where they always were, and each feature still loads its module
when it is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Loaded only by the features that use them.
OFF_THE_PER_JOB_PATH = (
    "adcreative_async.notifications",
    "adcreative_async._ratelimit",
    "adcreative_async._naming",
    "adcreative_async._receiver",
    "secrets",
)

APP = "0b1e9a7c-1111-4222-8333-944445555666"


def modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter (this checkout first on its path) after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str]) -> list[str]:
    return [
        name for name in OFF_THE_PER_JOB_PATH if any(m == name or m.startswith(name + ".") for m in modules)
    ]


def test_importing_the_package_loads_no_push_rate_control_naming_or_receiver() -> None:
    modules = modules_after("import adcreative_async")
    assert "adcreative_async._transport" in modules
    assert loaded(modules) == []


def test_an_open_client_with_defaults_loads_none_of_them_either() -> None:
    code = (
        "import asyncio\n"
        "from adcreative_async import AdCreativeClient\n"
        "async def main():\n"
        f"    client = AdCreativeClient(application_id={APP!r}, api_key='k', api_secret='s',\n"
        "                              jwt_private_key='j', base_url='http://127.0.0.1:9')\n"
        "    async with client:\n"
        "        client._poll_scheduler()\n"
        "        client.background_remover, client.creatives\n"
        "asyncio.run(main())\n"
    )
    assert loaded(modules_after(code)) == []


@pytest.mark.parametrize(
    ("code", "module"),
    [
        (
            "from adcreative_async import AdCreativeClient\n"
            f"c = AdCreativeClient(application_id={APP!r}, api_key='k', api_secret='s',\n"
            "                      jwt_private_key='j', rate_control=True)\n"
            "assert c._transport.rate is not None\n",
            "adcreative_async._ratelimit",
        ),
        (
            "import asyncio\n"
            "from adcreative_async import AdCreativeClient\n"
            "from adcreative_async.notifications import NotificationHub\n"
            "async def main():\n"
            f"    client = AdCreativeClient(application_id={APP!r}, api_key='k', api_secret='s',\n"
            "                              jwt_private_key='j', push=NotificationHub())\n"
            "    async with client:\n"
            "        client._poll_scheduler()\n"
            "asyncio.run(main())\n",
            "adcreative_async.notifications._hub",
        ),
    ],
)
def test_a_feature_in_use_loads_its_module(code: str, module: str) -> None:
    assert module in modules_after(code)


@pytest.mark.parametrize("name", ["RateControl", "RateStatus"])
def test_rate_control_names_resolve_on_first_use_to_their_module(name: str) -> None:
    code = (
        "import adcreative_async\n"
        "assert 'adcreative_async._ratelimit' not in sys.modules\n"
        f"from adcreative_async import {name} as value\n"
        "from adcreative_async import _ratelimit\n"
        f"assert value is _ratelimit.{name} and {name!r} in dir(adcreative_async)\n"
    )
    assert "adcreative_async._ratelimit" in modules_after(code)
