"""Four worker processes on one PostgreSQL run ledger against an account rate limit: with the learned rate
shared through the ledger they finish the run with few 429s (counted at the server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adcreative_async.testing import sample_image
from benchmarks._hosts import emulator as emulator_subprocess

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")
LIMIT = 20  # requests per second for the application
ITEMS = 200

NO_POSTGRES = "needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)]


@pytest.fixture
def limited_emulator() -> Iterator[dict[str, Any]]:
    """The emulator in its own process, its application limited to LIMIT requests/s."""
    with emulator_subprocess(
        "--rate-limit", f"{LIMIT}/s", "--task-duration", "0.2", "0.6", "--seed", "3"
    ) as info:
        yield info


def test_four_workers_sharing_the_ledger_use_the_limit_with_few_429s(
    limited_emulator: dict[str, Any], tmp_path: Path
) -> None:
    assert POSTGRES_DSN is not None
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(ITEMS):
        (inputs / f"in-{i:04d}.png").write_bytes(sample_image("png", (4, 4), (i % 256, i // 256, 17)))
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    credentials = json.dumps({k: limited_emulator[k] for k in keys})
    ledger = f"{POSTGRES_DSN}#rate-{uuid.uuid4().hex[:12]}"
    out = str(tmp_path / "out")
    command = [sys.executable, "-m", "benchmarks._rate_worker", credentials, str(inputs), out, ledger]
    workers = [
        subprocess.Popen(
            [*command, "shared", "--gate"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    # the runs begin together once every client is open: on a loaded machine a worker may take seconds
    # longer to start, and find every item claimed by the others
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "started\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    summaries = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    rendered = [summary["ok"] - summary["resumed"] for summary in summaries]  # by the worker itself
    assert sum(count > 0 for count in rendered) >= 2  # the work was shared
    for summary, count in zip(summaries, rendered, strict=True):
        assert summary["errors"] == []
        assert summary["ok"] == ITEMS
        # the limit was met, and learned by every worker that sent requests (one that found every item
        # claimed by the others, as the last of four may with windows of 64, had nothing to pace)
        assert summary["cuts"] >= 1 or count == 0
    with urllib.request.urlopen(f"{limited_emulator['base_url']}/_emulator/rate", timeout=60) as response:
        counts = json.loads(response.read())
    total = counts["accepted"] + counts["limited"]
    # ~2 requests per item (start, download) and polls: the limit was used; the first 429s come before
    # anything is known (four workers starting unpaced), then few
    assert counts["accepted"] >= 2 * ITEMS
    assert counts["limited"] <= 0.12 * total
