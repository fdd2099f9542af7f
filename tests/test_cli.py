"""The ``adcreative`` console script, driven against the emulator.

In process with ``main([...])`` (``--emulator`` for a fresh emulator, or the plugin's
``adcreative_emulator_thread`` for a session of several commands), and in subprocesses for exit codes
and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from adcreative_async.cli import main
from adcreative_async.testing import sample_image
from adcreative_async.testing.pytest_plugin import EmulatorThread
from benchmarks._hosts import emulator as emulator_subprocess
from benchmarks._hosts import emulator_env

ROOT = Path(__file__).resolve().parent.parent
BRIEF = ROOT / "examples" / "brief.toml"
SECRET = "s3cr3t-value-never-shown"
FAST = json.dumps({"task_duration": 0.02})
ONE_BRIEF = {
    "brand_image": str(ROOT / "examples" / "assets" / "logo.png"),
    "background_image": str(ROOT / "examples" / "assets" / "background.jpg"),
    "main_headline": "Hello",
    "punchline": "World",
    "action_text": "Go",
    "color1_hex": "#ffffff",
    "color2_hex": "#000000",
    "render_kind": 1,
    "render_type": "SVG",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real credentials leak in from the machine; the in-process emulator is fast."""
    for name in list(os.environ):
        if name.startswith("ADCREATIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADCREATIVE_EMULATOR_OPTIONS", FAST)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """The command's ``--json`` output (JSON Lines): its last line, with the item lines before it as
    ``items`` (as one document held them before the output was streamed)."""
    code, out, _ = run(capsys, *argv, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    items = [line for line in lines[:-1] if line.get("type") == "item"]
    return code, {**lines[-1], "items": items} if items else lines[-1]


def visible(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The files and folders a user sees (not the hidden run ledger)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def photos(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"photo-{i}.jpg").write_bytes(sample_image("jpeg", (40 + i, 30)))
    return folder


# ------------------------------------------------------------------------------------ remove-bg


def test_remove_bg_saves_one_cutout_per_image_named_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = photos(tmp_path / "in")
    (folder / "notes.txt").write_text("not an image")
    photos(folder / "sub", 1)  # not taken without --recursive
    out = tmp_path / "out"
    code, doc = run_json(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator", "-c", "2")
    assert code == 0
    assert doc["ok"] is True
    assert (doc["succeeded"], doc["failed"]) == (3, 0)
    # a JPEG's result keeps the input's suffix: photo-0.jpg and photo-0.png never share a name
    assert sorted(p.name for p in visible(out)) == ["photo-0.jpg.png", "photo-1.jpg.png", "photo-2.jpg.png"]
    assert sorted(Path(item["files"][0]).name for item in doc["items"]) == [  # in the order they finished
        "photo-0.jpg.png",
        "photo-1.jpg.png",
        "photo-2.jpg.png",
    ]
    assert all(len(item["task_ids"]) == 1 and item["process_id"] for item in doc["items"])


def test_remove_bg_recursive_keeps_layout_and_disambiguates_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = photos(tmp_path / "in", 1)
    photos(folder / "sub", 1)
    single = tmp_path / "photo-0.png"
    single.write_bytes(sample_image("png", (20, 20)))
    out = tmp_path / "out"
    code, _ = run_json(capsys, "remove-bg", str(folder), str(single), "-r", "-o", str(out), "--emulator")
    assert code == 0
    files = sorted(p.relative_to(out).as_posix() for p in visible(out, recursive=True) if p.is_file())
    assert files == ["photo-0.jpg.png", "photo-0.png", "sub/photo-0.jpg.png"]


def test_remove_bg_failed_renders_exit_1_with_a_summary_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "ADCREATIVE_EMULATOR_OPTIONS", json.dumps({"task_duration": 0.02, "task_failure_rate": 1})
    )
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "remove-bg", str(photos(tmp_path / "in", 2)), "-o", str(out), "--emulator")
    assert code == 1
    assert "Background removal: 0 of 2 succeeded" in stdout
    assert stdout.count("FAILED") >= 2
    assert visible(out) == []  # nothing partial, no staging folder left (the run ledger is hidden)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["remove-bg", "missing-folder", "-o", "out"], "no such file or folder: missing-folder"),
        (["remove-bg", ".", "-o", "out"], "no images found"),
        (["remove-bg", "x.jpg"], "the following arguments are required: -o/--output"),
        (["download", "pid", "-o", "out", "-c", "0"], "must be at least 1"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv, "--emulator")
    assert code == 2
    assert message in err


# ------------------------------------------------------------------------------------- generate


def test_generate_from_a_toml_brief_downloads_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "creatives"
    code, doc = run_json(capsys, "generate", "--brief", str(BRIEF), "-o", str(out), "--emulator")
    assert code == 0
    assert sorted(item["brief"] for item in doc["items"]) == ["brief.toml#1", "brief.toml#2"]
    task_ids = [t for item in doc["items"] for t in item["job"]["taskIds"]]
    # named after the brief and each task's position in its process
    expected = [f"brief-{entry}-{task}" for entry in (1, 2) for task in range(1, 6)]
    assert len(task_ids) == 10
    assert sorted(p.stem for p in visible(out)) == sorted(expected)


def test_generate_from_a_json_brief_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    brief = dict(ONE_BRIEF, background_image="../examples/assets/background.jpg")  # relative to the brief
    path = ROOT / "tests" / f"brief-{os.getpid()}.json"
    path.write_text(json.dumps(brief))
    try:
        code, stdout, _ = run(capsys, "generate", "--brief", str(path), "--no-wait", "--emulator")
    finally:
        path.unlink()
    assert code == 0
    assert "Creatives submitted: 1 of 1" in stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('main_headline = "x"\nheadline = "y"', "unknown key(s) headline"),
        ('main_headline = "x"', "missing action_text, background_image, brand_image"),
        ("not toml [", "is not valid TOML"),
        (
            BRIEF.read_text().replace('"assets/logo.png"', '"assets/nope.png"'),
            "brand_image 'assets/nope.png': no such file",
        ),
        (BRIEF.read_text().replace('"post"', '"huge"'), "render_kind 'huge' is not one of"),
        (BRIEF.read_text().replace('"Learn More"', "3"), "action_text must be a string"),
    ],
)
def test_generate_refuses_bad_briefs_before_sending(
    content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ROOT / "examples" / f"bad-brief-{os.getpid()}.toml"  # beside the assets it names
    path.write_text(content)
    try:
        code, _, err = run(capsys, "generate", "--brief", str(path), "--emulator")
    finally:
        path.unlink()
    assert code == 2
    assert message in err


# --------------------------------------------------- a session: generate, status, edit, download


def test_a_session_against_a_running_emulator(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    adcreative_emulator_thread: EmulatorThread,
) -> None:
    for name, value in adcreative_emulator_thread.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ADCREATIVE_USER_ID", "11111111-2222-4333-8444-555555555555")
    brief = tmp_path / "one.json"
    brief.write_text(json.dumps(ONE_BRIEF))

    code, doc = run_json(capsys, "generate", "--brief", str(brief))
    assert code == 0
    job = doc["items"][0]["job"]
    process_id, task_ids = job["processId"], job["taskIds"]

    code, doc = run_json(capsys, "status")
    assert code == 0
    assert [(p["feature"], p["imageRenderProcessId"]) for p in doc["processes"]] == [
        ("creatives", process_id)
    ]
    code, stdout, _ = run(capsys, "status", "--application", "--feature", "creatives")
    assert code == 0
    assert process_id in stdout

    code, doc = run_json(
        capsys, "edit", *task_ids[:2], "--main-headline", "Now 20% off", "-o", str(tmp_path / "edited")
    )
    assert code == 0
    assert sorted(Path(f).stem for f in doc["files"]) == sorted(task_ids[:2])
    assert adcreative_emulator_thread.request_count("Image/Editing/AdCreativesByTasks") == 1

    code, doc = run_json(capsys, "download", process_id, "-o", str(tmp_path / "all"))
    assert code == 0
    assert sorted(Path(item["file"]).stem for item in doc["items"]) == sorted(task_ids)
    code, stdout, _ = run(
        capsys, "download", process_id, task_ids[0], "--feature", "creatives", "-o", str(tmp_path / "one")
    )
    assert code == 0
    assert f"Downloads of process {process_id}: 1 of 1" in stdout
    assert adcreative_emulator_thread.download_count(task_ids[0]) == 3

    code, _, err = run(capsys, "edit", task_ids[0])
    assert code == 2
    assert "nothing to change" in err
    code, _, err = run(capsys, "download", "0f8fad5b-d9cb-469f-a165-70867728950e", "-o", str(tmp_path))
    assert code == 2
    assert "was not found" in err


def test_status_with_a_fresh_emulator_says_there_is_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "status", "--emulator", "--progress", "lines")
    assert code == 0
    assert "no render processes found" in stdout


# ------------------------------------------------------------------- credentials and secrets


def test_missing_credentials_exit_2_and_say_how_to_set_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status", "--user-id", "11111111-2222-4333-8444-555555555555")
    assert code == 2
    assert "ADCREATIVE_API_KEY" in err
    assert "--emulator" in err


def test_secrets_never_appear_in_output_or_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    adcreative_emulator_thread: EmulatorThread,
) -> None:
    creds = adcreative_emulator_thread.credentials
    argv = [
        "status",
        "--base-url",
        creds["base_url"],
        "--application-id",
        creds["application_id"],
        "--api-key",
        creds["api_key"],
        "--api-secret",
        SECRET,  # wrong: the API refuses it
        "--jwt-private-key",
        creds["jwt_private_key"],
        "--user-id",
        "11111111-2222-4333-8444-555555555555",
    ]
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert "AuthenticationError" not in out
    assert err.startswith("adcreative: ")
    code, out2, err2 = run(capsys, *argv, "--json")
    assert code == 1
    assert json.loads(out2)["error"]["type"] == "AuthenticationError"
    code, _, err3 = run(capsys, "status", "--api-secrett", SECRET)  # a typo argparse echoes
    assert code == 2
    for text in (out, err, out2, err2, err3):
        assert SECRET not in text
        assert creds["api_key"] not in text
        assert creds["jwt_private_key"] not in text


# ---------------------------------------------------------------------- display and extras


def test_bars_mode_draws_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(
        capsys,
        "remove-bg",
        str(photos(tmp_path / "in", 2)),
        "-o",
        str(tmp_path / "out"),
        "--emulator",
        "--progress",
        "bars",
        "--summary",
        "all",
    )
    assert code == 0
    assert "2/2 done" in stdout  # the overall bar's last frame
    assert "photo-0.jpg" in stdout  # the summary table, every item
    assert "Background removal: 2 of 2 succeeded" in stdout


def test_without_rich_the_cli_names_the_extra_but_json_and_demo_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    code, _, err = run(capsys, "status", "--emulator")
    assert code == 2
    assert "pip install rich" in err
    code, doc = run_json(capsys, "status", "--emulator")
    assert (code, doc["processes"]) == (0, [])
    code, stdout, _ = run(capsys, "demo", "-o", str(tmp_path / "demo"), "--task-duration", "0.05")
    assert code == 0
    assert "creatives (edit 2)" in stdout
    assert "done: 9 files" in stdout
    assert len(list((tmp_path / "demo").rglob("*.png"))) == 9


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "--help")
    assert code == 0
    for command in ("demo", "remove-bg", "generate", "edit", "status", "download", "emulator"):
        assert command in stdout


# ------------------------------------------------------------------- subprocesses: exit, Ctrl-C


def _cli(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "adcreative_async.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def test_exit_code_is_1_when_an_item_failed(tmp_path: Path) -> None:
    options = json.dumps({"task_duration": 0.02, "task_failure_rate": 1})
    proc = _cli(
        "remove-bg", str(photos(tmp_path / "in", 1)), "-o", str(tmp_path / "out"), "--json",
        env={"ADCREATIVE_EMULATOR": "1", "ADCREATIVE_EMULATOR_OPTIONS": options},
    )  # fmt: skip
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert json.loads(stdout.splitlines()[-1])["failed"] == 1  # the summary: the last JSON line


def _wait_for(condition: Any, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out: {proc.communicate()}")
        time.sleep(0.01)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is a POSIX thing")
def test_ctrl_c_mid_download_exits_130_and_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A download of 2 GB is still streaming when the signal arrives.
    options = json.dumps({"task_duration": 0.01, "download_size": 2_000_000_000})
    proc = _cli(
        "remove-bg", str(photos(tmp_path / "in", 1)), "-o", str(out), "--progress", "lines",
        env={"ADCREATIVE_EMULATOR": "1", "ADCREATIVE_EMULATOR_OPTIONS": options},
    )  # fmt: skip
    _wait_for(lambda: any(p.suffix == ".part" for p in out.rglob("*")), proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert visible(out, recursive=True) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is a POSIX thing")
def test_ctrl_c_while_waiting_exits_130(tmp_path: Path) -> None:
    options = json.dumps({"auto_complete": False})
    brief = str(BRIEF)
    proc = _cli(
        "generate", "--brief", brief, "-o", str(tmp_path / "out"), "--progress", "lines",
        env={"ADCREATIVE_EMULATOR": "1", "ADCREATIVE_EMULATOR_OPTIONS": options},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "rendering" in line:  # both briefs' renders started
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert visible(tmp_path / "out") == []


# ------------------------------------------------------------------- resumable runs (run ledger)


@pytest.fixture
def emulator_process() -> Any:
    """An emulator in its own process, as a user would run it (``adcreative emulator``): renders survive
    the CLI's restarts."""
    with emulator_subprocess("--task-duration", "0.2", "0.8", "--stamp-inputs") as info:
        yield info, emulator_env(info)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is a POSIX thing")
def test_ctrl_c_then_the_same_command_renders_only_what_was_not_rendered(
    tmp_path: Path, emulator_process: Any
) -> None:
    import hashlib
    import urllib.request

    from adcreative_async.testing import input_stamp

    info, env = emulator_process
    folder = tmp_path / "photos"
    folder.mkdir()
    digests = {}
    for i in range(30):
        data = sample_image("png", (10, 10), (i, 200, 9))
        (folder / f"p{i:02d}.png").write_bytes(data)
        digests[f"p{i:02d}"] = hashlib.sha256(data).hexdigest()
    out = tmp_path / "cutouts"
    argv = ("remove-bg", str(folder), "-o", str(out), "--progress", "lines", "-c", "2")
    proc = _cli(*argv, env=env)
    _wait_for(lambda: out.exists() and len(visible(out)) >= 5, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    # where it stands, from the ledger: done, paid for but not downloaded, not started; and the command
    said_where = re.search(
        r"interrupted: of (\d+) input\(s\), (\d+) done, (\d+) paid for but not yet downloaded .*?, "
        r"(\d+) not started",
        stderr,
    )
    assert said_where is not None, stderr
    total, done, paid, not_started = map(int, said_where.groups())
    shown = _cli("runs", "show", str(out), "--json", env=env)
    counts = json.loads(shown.communicate(timeout=30)[0])["counts"]
    assert total == 30
    assert done == counts["downloaded"]
    assert paid == counts["submitted"] + counts["submitting"]
    assert done + paid + not_started + counts["failed"] + counts["unknown"] == 30
    assert f"to resume (nothing done is sent again): adcreative {shlex.join(argv)}" in stderr
    done_before = len(visible(out))
    assert 5 <= done_before < 30

    rerun = _cli(*argv, env=env)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    # Items whose file was written but not yet recorded when Ctrl-C came count as started before
    # (awaited and downloaded again, not rendered again).
    said = re.search(r"resuming: (\d+) item\(s\) finished before \(not rendered again\)", stdout)
    assert said is not None, stdout
    finished_before = int(said.group(1))
    assert 1 <= finished_before <= done_before
    assert f"({30 - finished_before} finished in this run, {finished_before} finished before" in stdout
    with urllib.request.urlopen(f"{info['base_url']}/_emulator/processes-per-input", timeout=30) as answer:
        renders = json.loads(answer.read())
    assert sorted(renders.values()) == [1] * 30  # every photo rendered once, across both runs
    assert sorted(p.name for p in visible(out)) == [f"p{i:02d}.png" for i in range(30)]
    for path in visible(out):
        assert input_stamp(path.read_bytes()) == digests[path.stem]

    code = main(["runs", "show", str(out), "--json"])
    assert code == 0


def test_runs_show_lists_items_and_states(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _ = run_json(capsys, "remove-bg", str(photos(tmp_path / "in", 2)), "-o", str(out), "--emulator")
    assert code == 0
    code, doc = run_json(capsys, "runs", "show", str(out))
    assert code == 0
    assert doc["counts"]["downloaded"] == 2
    assert [Path(item["label"]).name for item in doc["items"]] == ["photo-0.jpg", "photo-1.jpg"]
    assert all(item["process_id"] and item["files"] for item in doc["items"])
    code, stdout, _ = run(capsys, "runs", "show", str(out / ".adcreative-run.sqlite"), "--state", "failed")
    assert code == 0
    assert "no items" in stdout
    code, _, err = run(capsys, "runs", "show", str(tmp_path / "nowhere"))
    assert code == 2
    assert "no run ledger" in err


def test_rerun_with_the_emulator_resumes_and_restart_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert run_json(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator")[0] == 0
    code, doc = run_json(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator")
    assert code == 0
    assert doc["resumed"] == 2  # finished before: not rendered again (a new in-process emulator each run)
    code, _, err = run(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator", "--restart")
    assert code == 2  # every input is a new paid render: not without a confirmation
    assert "2 item(s)" in err
    assert "--yes" in err
    code, doc = run_json(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator", "--restart", "--yes")
    assert code == 0  # started over: each item's own file is replaced by its new render
    assert (doc["succeeded"], doc["resumed"]) == (2, 0)
    assert sorted(p.name for p in visible(out)) == ["photo-0.jpg.png", "photo-1.jpg.png"]


def test_a_ledger_of_other_credentials_is_not_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emulator_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = photos(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert run_json(capsys, "remove-bg", str(folder), "-o", str(out), "--emulator")[0] == 0
    _, env = emulator_process
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "remove-bg", str(folder), "-o", str(out))
    assert code == 2
    assert "holds renders of another application" in err
