"""Crash tests of the run ledger with real processes: the emulator in its own process, a bulk worker
killed with SIGKILL at random points and run again each time; then three workers sharing PostgreSQL,
one of them killed. At the end the server holds exactly one render per input, and every output file is
complete and comes from its own input (the emulator stamps each result with its input's hash).

Sizes: ``ADCREATIVE_CRASH_ITEMS`` (default 2,000) inputs, ``ADCREATIVE_CRASH_KILLS`` (default 20) kills.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import start_ledger_worker

from adcreative_async.ledger import ItemState, PostgresLedger
from adcreative_async.testing import input_stamp, sample_image
from benchmarks._hosts import emulator as emulator_subprocess

ITEMS = int(os.environ.get("ADCREATIVE_CRASH_ITEMS", "2000"))
KILLS = int(os.environ.get("ADCREATIVE_CRASH_KILLS", "20"))
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN")


@pytest.fixture
def emulator() -> Iterator[dict[str, Any]]:
    """The emulator in its own process (short renders, results stamped with their input's hash)."""
    with emulator_subprocess("--task-duration", "0.05", "0.4", "--stamp-inputs", "--seed", "11") as info:
        yield info


def credentials(info: dict[str, Any]) -> str:
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    return json.dumps({k: info[k] for k in keys})


def make_inputs(folder: Path, n: int) -> dict[str, str]:
    """``n`` distinct PNGs; stem -> SHA-256."""
    folder.mkdir(parents=True)
    digests = {}
    for i in range(n):
        data = sample_image("png", (4, 4), (i % 256, (i // 256) % 256, 99))
        path = folder / f"in-{i:05d}.png"
        path.write_bytes(data)
        digests[path.stem] = hashlib.sha256(data).hexdigest()
    return digests


def worker(
    info: dict[str, Any], inputs: Path, out: Path, ledger: str, lease: float = 30, name: str = ""
) -> subprocess.Popen[str]:
    extra = [name] if name else []
    return start_ledger_worker(credentials(info), str(inputs), str(out), ledger, str(lease), *extra)


def wait_started(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "started", process.stderr.read() if process.stderr else line


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return summary


def renders_per_input(info: dict[str, Any]) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{info['base_url']}/_emulator/processes-per-input", timeout=60) as response:
        counts: dict[str, int] = json.loads(response.read())
    return counts


def results_on_disk(out: Path) -> int:
    try:
        return sum(
            1 for entry in os.scandir(out) if entry.name.endswith(".png") and entry.name.startswith("in-")
        )
    except FileNotFoundError:
        return 0


def check_outputs(out: Path, digests: dict[str, str], info: dict[str, Any]) -> None:
    counts = renders_per_input(info)
    assert len(counts) == len(digests), "an input was never rendered"
    assert set(counts.values()) == {1}, f"duplicates: {sum(n - 1 for n in counts.values())}"
    assert set(counts) == set(digests.values())
    produced = {p.stem: p for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")}
    assert set(produced) == set(digests), "missing or stray output files"
    for stem, path in produced.items():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG"), f"{path} is not a PNG"
        assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is incomplete"
        assert input_stamp(data) == digests[stem], f"{path} does not come from its own input"


def test_kill_9_at_random_points_then_rerun_renders_every_input_exactly_once(
    emulator: dict[str, Any], tmp_path: Path
) -> None:
    digests = make_inputs(tmp_path / "in", ITEMS)
    out = tmp_path / "out"
    ledger = str(out / ".adcreative-run.sqlite")
    rng = random.Random(2026)
    # random points of progress (results on disk), so that every kill hits a run with work left
    thresholds = sorted(rng.sample(range(ITEMS * 9 // 10), KILLS))
    killed_with_work_left = 0
    for threshold in thresholds:
        process = worker(emulator, tmp_path / "in", out, ledger)
        wait_started(process)
        while process.poll() is None and results_on_disk(out) < threshold:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed_with_work_left += 1
        process.communicate(timeout=60)
    summary = finish(worker(emulator, tmp_path / "in", out, ledger))
    assert summary["errors"] == []
    assert summary["ok"] == ITEMS
    assert killed_with_work_left == KILLS  # every kill hit a run with work left
    check_outputs(out, digests, emulator)


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_DSN, reason="needs PostgreSQL: set ADCREATIVE_TEST_POSTGRES_DSN (.ci/run starts a server)"
)
def test_three_workers_on_postgresql_one_killed_render_every_input_once(
    emulator: dict[str, Any], tmp_path: Path
) -> None:
    assert POSTGRES_DSN is not None
    dsn_base = POSTGRES_DSN
    n = max(ITEMS // 2, 10)
    digests = make_inputs(tmp_path / "in", n)
    out = tmp_path / "out"
    run = f"crash-{uuid.uuid4().hex[:8]}"  # a run of its own in the shared database

    async def held() -> dict[str, int]:
        async with PostgresLedger(dsn_base, run=run) as ledger:
            owners: dict[str, int] = {}
            for record in (await ledger.records()).values():
                if record.owner and not record.final:
                    owners[record.owner] = owners.get(record.owner, 0) + 1
            return owners

    async def downloaded() -> int:
        async with PostgresLedger(dsn_base, run=run) as ledger:
            return (await ledger.counts())[ItemState.DOWNLOADED]

    # Named workers: as on other machines, a dead one's claims pass on only when its lease lapses.
    workers = [
        worker(emulator, tmp_path / "in", out, f"{dsn_base}#{run}", 2.0, f"worker-{i}") for i in range(3)
    ]
    for process in workers:
        wait_started(process)
    while results_on_disk(out) < n // 3:
        time.sleep(0.005)
    # the worker holding the most unfinished items dies
    name = max(anyio.run(held).items(), key=lambda kv: kv[1])[0]
    victim = workers[int(name.rsplit("-", 1)[1])]
    assert victim.poll() is None
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert anyio.run(held).get(name, 0) > 0  # it died holding items, which the others must finish
    summaries = [finish(p) for p in workers if p is not victim]
    for summary in summaries:
        assert summary["errors"] == []
        assert summary["ok"] == n
    assert anyio.run(downloaded) == n
    assert anyio.run(held) == {}
    check_outputs(out, digests, emulator)
