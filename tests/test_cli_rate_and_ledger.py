"""The console script's rate control (``--rate-control``, ``--max-rate``, ``--start-rate`` and their
``ADCREATIVE_*`` variables) and its ``--ledger`` (a SQLite file, or a PostgreSQL DSN shared by workers:
never printed)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adcreative_async.cli import main
from adcreative_async.cli._runs import resume_command
from adcreative_async.testing import EmulatorThread, sample_image


def photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"photo-{i}.jpg").write_bytes(sample_image("jpeg", (30 + i, 30)))
    return folder


def summary_of(out: str) -> dict[str, Any]:
    """The last line of a ``--json`` output: the summary."""
    last: dict[str, Any] = json.loads(out.splitlines()[-1])
    return last


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--max-rate", "0"], {}, "--max-rate"),
        (["--start-rate", "-3"], {}, "--start-rate"),
        (["--max-rate", "fast"], {}, "--max-rate"),
        ([], {"ADCREATIVE_MAX_RATE": "fast"}, "ADCREATIVE_MAX_RATE"),
        ([], {"ADCREATIVE_START_RATE": "inf"}, "ADCREATIVE_START_RATE"),
    ],
)
def test_a_bad_rate_is_refused_before_any_request(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_env: EmulatorThread,
    argv: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = cli_env.requests()
    code = main(["remove-bg", str(photos(tmp_path / "in", 1)), "-o", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert "requests per second" in err  # what is wrong with the value (not an unknown option)
    assert cli_env.requests() == before  # not a request, not even the credentials' check


def test_max_rate_paces_the_run_and_its_summary_says_what_the_rate_control_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    folder = photos(tmp_path / "in", 3)
    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "a"), "--max-rate", "40", "--json"])
    rate = summary_of(capsys.readouterr().out)["rate"]
    assert code == 0
    assert 0 < rate["requests_per_second"] <= 40  # paced from the first request, never above the cap
    assert rate["throttled"] == 0

    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "b"), "--json"])
    assert code == 0
    assert "rate" not in summary_of(capsys.readouterr().out)  # off by default


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--start-rate", "5"], {}), ([], {"ADCREATIVE_START_RATE": "5"}), ([], {"ADCREATIVE_MAX_RATE": "30"})],
)
def test_each_rate_option_or_variable_turns_the_rate_control_on(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_env: EmulatorThread,
    argv: list[str],
    env: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = photos(tmp_path / "in", 1)
    assert main(["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--json", *argv]) == 0
    assert "rate" in summary_of(capsys.readouterr().out)


def test_rate_control_from_the_environment_learns_the_accounts_limit_from_its_429s(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_env: EmulatorThread,
) -> None:
    # a burst of 2: the run's first requests meet 429s
    cli_env.call(lambda emulator: emulator.set_rate_limit(30, 2, reset_counts=True))
    monkeypatch.setenv("ADCREATIVE_RATE_CONTROL", "1")
    folder = photos(tmp_path / "in", 6)
    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "out"), "-c", "6", "--json"])
    summary = summary_of(capsys.readouterr().out)
    assert code == 0
    assert summary["succeeded"] == 6
    assert summary["rate"]["throttled"] == cli_env.call(lambda emulator: emulator.rate_counts().limited) > 0
    assert summary["rate"]["cuts"] >= 1  # paced at what the 429s taught
    assert summary["rate"]["requests_per_second"] is not None


def test_ledger_takes_a_sqlite_file_outside_the_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    folder = photos(tmp_path / "in", 2)
    ledger = tmp_path / "elsewhere" / "run.sqlite"
    ledger.parent.mkdir()
    argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--ledger", str(ledger), "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    assert ledger.is_file()
    assert not (tmp_path / "out" / ".adcreative-run.sqlite").exists()
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["resumed"] for line in lines[:-1]] == [True, True]  # resumed from that file


def test_ledger_and_no_ledger_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    folder = photos(tmp_path / "in", 1)
    argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--ledger", str(tmp_path / "l.sqlite")]
    assert main([*argv, "--no-ledger"]) == 2
    assert "--no-ledger and --ledger" in capsys.readouterr().err


def test_the_command_that_resumes_a_run_never_shows_a_ledger_dsn() -> None:
    dsn = "postgresql://worker:pa55word-x@db.internal:5432/renders#batch-7"
    for argv in (
        ["remove-bg", "in/", "-o", "out/", "--ledger", dsn],
        ["remove-bg", "in/", f"--ledger={dsn}"],
    ):
        shown = resume_command(argv)
        assert "pa55word" not in shown
        assert "db.internal" not in shown
        assert "--ledger postgresql://..." in shown
        assert "the same DSN" in shown
    assert resume_command(["remove-bg", "in/", "--ledger", "run.sqlite"]).endswith("--ledger run.sqlite")


# ---------------------------------------------------------------------------------------- PostgreSQL


#: Read at import: the ``cli_env`` fixture clears every ``ADCREATIVE_*`` variable.
POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN", "")


@pytest.fixture
def dsn() -> str:
    if not POSTGRES_DSN:
        pytest.skip("ADCREATIVE_TEST_POSTGRES_DSN is not set")
    return POSTGRES_DSN


def _secret_parts(dsn: str) -> list[str]:
    parts = urlsplit(dsn)
    return [dsn, *(p for p in (parts.password,) if p and len(p) >= 4)]


@pytest.mark.postgres
def test_a_postgresql_ledger_resumes_the_run_and_its_dsn_is_never_printed_or_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cli_env: EmulatorThread,
    dsn: str,
) -> None:
    spec = f"{dsn}#cli-{uuid.uuid4().hex[:10]}"
    folder = photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    argv = ["remove-bg", str(folder), "-o", str(out), "--ledger", spec, "--progress", "lines"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert main([*argv, "--json"]) == 0  # again: every item finished before, from the shared ledger
    second = capsys.readouterr()
    lines = [json.loads(line) for line in second.out.splitlines()]
    assert [line["resumed"] for line in lines[:-1]] == [True, True, True]
    assert lines[-1]["resumed"] == 3
    assert not (out / ".adcreative-run.sqlite").exists()

    monkeypatch.setenv("ADCREATIVE_LEDGER", spec)  # the variable, as the option
    assert main(["remove-bg", str(folder), "-o", str(out), "--json"]) == 0
    third = capsys.readouterr()
    assert summary_of(third.out)["resumed"] == 3

    written = "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".png"
    )
    for text in (first.out, first.err, second.out, second.err, third.out, third.err, written):
        for secret in _secret_parts(dsn):
            assert secret not in text


def test_an_unreachable_postgresql_ledger_is_a_setup_error_with_the_dsn_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread
) -> None:
    password = "pa55word-" + uuid.uuid4().hex[:6]
    wrong = f"postgresql://worker:{password}@127.0.0.1:1/renders#batch"  # nothing listens on port 1
    folder = photos(tmp_path / "in", 1)
    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--ledger", wrong, "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert json.loads(captured.out.splitlines()[-1])["ok"] is False
    assert "the DSN" in captured.err
    for text in (captured.out, captured.err):
        assert password not in text
        assert "worker:" not in text
    assert cli_env.request_count("Image/BackgroundRemoving/AdCreative") == 0  # nothing started
