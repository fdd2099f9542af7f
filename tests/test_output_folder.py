"""Nothing but results in the output folder (issue 20, point 12): a download's temporary file is made when
its first bytes arrive, under a name found again from its task id, locked while it is written; whoever
finishes the task (the same worker, a rerun, another worker taking it over) removes what a dead writer
left, and never a live writer's file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import start_ledger_worker

from adcreative_async._filewrite import AtomicFile, remove_leftovers, temp_name
from adcreative_async.testing import sample_image
from benchmarks._hosts import emulator as emulator_subprocess

TASK = "0b6c1c1e-8f0e-4c59-9d8a-3f3b8e7c2a11"


@pytest.mark.anyio
async def test_a_live_writers_temporary_file_is_kept_and_a_dead_ones_is_removed(tmp_path: Path) -> None:
    dead = tmp_path / temp_name(TASK, 0)
    dead.write_bytes(b"what a killed process wrote")  # nobody holds it
    limiter = anyio.CapacityLimiter(1)
    async with AtomicFile(tmp_path, TASK, limiter) as live:
        await live.write([b"first bytes"])
        [ours] = [p for p in tmp_path.iterdir() if p != dead]
        assert ours.name == temp_name(TASK, 1)  # the slot of the dead writer's file is skipped
        assert remove_leftovers(tmp_path, TASK) == 1  # another worker finishing the task meanwhile
        assert not dead.exists()
        assert ours.exists()  # a live writer's file is never taken for a leftover
        final = await live.commit("result.png", [b" and the rest"])
    assert final.read_bytes() == b"first bytes and the rest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]


@pytest.mark.anyio
async def test_the_commit_removes_what_an_earlier_writer_of_the_task_left(tmp_path: Path) -> None:
    for slot in (0, 2):  # two earlier owners killed mid-download (slot 1 was freed meanwhile)
        (tmp_path / temp_name(TASK, slot)).write_bytes(b"partial")
    async with AtomicFile(tmp_path, TASK, anyio.CapacityLimiter(1)) as file:
        await file.commit("sub/result.png", [b"complete"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "sub",
        "sub/result.png",
    ]


# ------------------------------------------------------------------------ kill -9, real processes


@pytest.fixture
def emulator() -> Iterator[dict[str, Any]]:
    """The emulator in its own process, with results large enough to be killed mid-download."""
    with emulator_subprocess(
        "--task-duration", "0.05", "--download-size", str(150_000_000), "--seed", "4"
    ) as info:
        yield info


def worker(info: dict[str, Any], inputs: Path, out: Path, ledger: Path) -> subprocess.Popen[str]:
    keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
    credentials = json.dumps({k: info[k] for k in keys})
    return start_ledger_worker(credentials, str(inputs), str(out), str(ledger), "5")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and file locks are POSIX things")
def test_kill_9_mid_download_then_rerun_leaves_only_results_in_the_output_folder(
    emulator: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"in-{i}.png").write_bytes(sample_image("png", (4, 4), (i, 9, 9)))
    out, ledger = tmp_path / "out", tmp_path / "run.sqlite"
    process = worker(emulator, inputs, out, ledger)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(p.name.endswith(".part") for p in out.iterdir())):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no download started"
        time.sleep(0.002)
    process.kill()  # SIGKILL while a result is being written
    process.communicate(timeout=30)
    assert any(p.name.endswith(".part") for p in out.iterdir())  # what the killed worker left

    rerun = worker(emulator, inputs, out, ledger)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["errors"] == []
    assert sorted(os.listdir(out)) == ["in-0.png", "in-1.png", "in-2.png"]  # nothing but results
    assert all((out / f"in-{i}.png").stat().st_size == 150_000_000 for i in range(3))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and file locks are POSIX things")
def test_kill_9_of_the_cli_without_a_ledger_then_rerun_leaves_only_results(
    emulator: dict[str, Any], tmp_path: Path
) -> None:
    """Without a ledger a rerun renders again (new task ids): the temporary file is found again from
    the result's name, not the task's, and nothing is staged in a hidden folder of the output."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        (inputs / f"in-{i}.png").write_bytes(sample_image("png", (4, 4), (i, 7, 7)))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")} | {
        "ADCREATIVE_APPLICATION_ID": emulator["application_id"],
        "ADCREATIVE_API_KEY": emulator["api_key"],
        "ADCREATIVE_API_SECRET": emulator["api_secret"],
        "ADCREATIVE_JWT_PRIVATE_KEY": emulator["jwt_private_key"],
        "ADCREATIVE_BASE_URL": emulator["base_url"],
        "ADCREATIVE_USER_ID": "11111111-2222-4333-8444-555555555555",
    }
    command = [sys.executable, "-m", "adcreative_async.cli", "remove-bg", str(inputs), "-o", str(out)]
    process = subprocess.Popen(
        [*command, "--no-ledger", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(p.name.endswith(".part") for p in out.rglob("*"))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no download started"
        time.sleep(0.002)
    process.kill()
    process.communicate(timeout=30)

    rerun = subprocess.run(
        [*command, "--no-ledger", "--json"], capture_output=True, env=env, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["in-0.png", "in-1.png"]
