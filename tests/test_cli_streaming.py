"""The console script's results stream out and are counted: memory bounded in the number of inputs.

``--json`` prints JSON Lines (an object per item as it finishes, flushed, then a summary object); the
summary counts the outcomes (failures per error code) and shows the first ``MAX_FAILURES_SHOWN``
failures with where the full list is (the run ledger, or a failures file written as items fail). The
display keeps the rows of the items in flight only.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from adcreative_async.cli import main
from adcreative_async.cli._display import Display
from adcreative_async.cli._results import FAILURES_FILE, MAX_FAILURES_SHOWN
from adcreative_async.testing import EmulatorThread, sample_image

ROOT = Path(__file__).resolve().parent.parent
#: The user of the runs without a ledger (any fixed GUID).
CLI_USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
ALWAYS_FAIL = json.dumps({"task_duration": 0.01, "task_failure_rate": 1})


def photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"photo-{i:03d}.jpg").write_bytes(sample_image("jpeg", (20 + i % 30, 20 + i // 30)))
    return folder


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every line of a ``--json`` output, each one JSON object (a script reads it line by line)."""
    return [json.loads(line) for line in out.splitlines()]


def read_line(stream: IO[str], timeout: float = 60) -> str:
    """One line of a subprocess's output, waited for at most ``timeout`` seconds ("" at its end)."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line within {timeout} s")
    return stream.readline()


def test_json_prints_each_item_as_it_finishes_while_the_others_still_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = photos(tmp_path / "in", 3)
    with EmulatorThread(task_duration=3600) as emulator:  # renders end only when the test says so
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
        env.update({f"ADCREATIVE_{k.upper()}": str(v) for k, v in emulator.credentials.items()})
        env["ADCREATIVE_USER_ID"] = CLI_USER_ID
        command = [sys.executable, "-m", "adcreative_async.cli", "remove-bg", str(folder)]
        proc = subprocess.Popen(
            [*command, "-o", str(tmp_path / "out"), "--no-ledger", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while len(emulator.processes_for(CLI_USER_ID)) < 3:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the three renders were not started"
                time.sleep(0.02)
            first, *others = emulator.processes_for(CLI_USER_ID)
            emulator.finish_process(first.process_id)
            assert proc.stdout is not None
            line = json.loads(read_line(proc.stdout))
            # the item is out while the other two still render: nothing waits for the end of the run
            assert line["type"] == "item"
            assert line["ok"] is True
            assert line["process_id"] == first.process_id
            assert proc.poll() is None
            for process in others:
                emulator.finish_process(process.process_id)
            rest, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = json_lines(rest)
    assert proc.returncode == 0
    assert [entry["type"] for entry in lines] == ["item", "item", "summary"]
    assert {entry["process_id"] for entry in lines[:2]} == {p.process_id for p in others}
    summary = lines[-1]
    assert (summary["ok"], summary["succeeded"], summary["failed"]) == (True, 3, 0)
    assert "items" not in summary  # counts, not a list of every input


def test_the_summary_counts_failures_by_code_and_shows_the_first_ones_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("ADCREATIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADCREATIVE_EMULATOR_OPTIONS", ALWAYS_FAIL)  # every render fails
    count = MAX_FAILURES_SHOWN + 5
    folder = photos(tmp_path / "in", count)
    out = tmp_path / "out"
    code = main(["remove-bg", str(folder), "-o", str(out), "--emulator", "--json"])
    lines = json_lines(capsys.readouterr().out)
    assert code == 1
    items, summary = lines[:-1], lines[-1]
    assert len(items) == count
    assert all(item["type"] == "item" and not item["ok"] for item in items)
    assert summary["type"] == "summary"
    assert (summary["succeeded"], summary["failed"]) == (0, count)
    assert summary["errors"] == {"RenderFailedError": count}
    assert len(summary["failures_sample"]) == MAX_FAILURES_SHOWN
    assert summary["failures_list"] == f"adcreative runs show {out} --state failed"

    # the same run again, for people: the first failures in a table, the rest counted, and where they are
    code = main(
        ["remove-bg", str(folder), "-o", str(out), "--emulator", "--retry-failed", "--progress", "off"]
    )
    shown = capsys.readouterr().out
    assert code == 1
    assert sum(f"photo-{i:03d}.jpg" in shown for i in range(count)) == MAX_FAILURES_SHOWN
    assert f"{count} RenderFailedError" in shown
    assert f"... and 5 more failed: adcreative runs show {out} --state failed" in shown


def test_without_the_folders_ledger_every_failure_goes_to_a_failures_file_as_it_happens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("ADCREATIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADCREATIVE_EMULATOR_OPTIONS", ALWAYS_FAIL)
    folder = photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    argv = ["remove-bg", str(folder), "-o", str(out), "--emulator", "--no-ledger", "--user-id", CLI_USER_ID]
    assert main([*argv, "--json"]) == 1
    summary = json_lines(capsys.readouterr().out)[-1]
    failures = out / FAILURES_FILE
    assert summary["failures_list"] == str(failures)
    listed = json_lines(failures.read_text())
    assert sorted(Path(entry["input"]).name for entry in listed) == [f"photo-00{i}.jpg" for i in range(3)]
    assert all(entry["error"]["type"] == "RenderFailedError" for entry in listed)
    assert failures.stat().st_mode & 0o077 == 0  # owner-only, as the run ledger

    monkeypatch.setenv("ADCREATIVE_EMULATOR_OPTIONS", json.dumps({"task_duration": 0.01}))
    assert main([*argv, "--json"]) == 0  # a run without failures: no list of an earlier run's left
    assert json_lines(capsys.readouterr().out)[-1]["failures_list"] is None
    assert not failures.exists()


def test_summary_all_prints_each_item_as_it_finishes_not_a_table_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    folder = photos(tmp_path / "in", 4)
    argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--progress", "off", "--summary", "all"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5  # a line per item, then the title
    assert sorted(line.split()[0] for line in out[:4]) == sorted(
        str(folder / f"photo-00{i}.jpg") for i in range(4)
    )
    assert out[-1].startswith("Background removal: 4 of 4 succeeded")


def test_a_finished_row_leaves_the_display() -> None:
    display = Display("bulk", overall_total=1000)
    for n in range(1000):
        row = display.add(f"photo-{n}.jpg")
        display.update(row, status="uploading")
        display.done(row, ok=True, status="saved")
        display.update(row, status="late")  # an update after the end changes nothing
    assert (display.added, display.finished) == (1000, 1000)
    assert display._rows == {}  # nothing kept per input
