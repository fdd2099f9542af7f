"""Before a bulk command starts, one line says what it will spend (inputs, done already, to download
only, renders to be paid); ``--dry-run`` says it and stops, sending and writing nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from adcreative_async.cli import main
from adcreative_async.testing import sample_image

BG_START = "Image/BackgroundRemoving/AdCreative"


def photo(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"p{n}.png").write_bytes(sample_image("png", (8 + n, 8)))


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--progress", "lines"])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_spend_line_says_what_is_done_and_what_will_be_paid(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for n in range(3):
        photo(folder, n)
    (folder / "copy.png").write_bytes((folder / "p0.png").read_bytes())  # the same content again
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out))
    assert code == 0
    assert "4 input(s), a new run: up to 4 to render (one paid render each)" in said
    assert cli_env.request_count(BG_START) == 3  # (the same content twice: one render)
    (folder / "copy2.png").write_bytes((folder / "p1.png").read_bytes())
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out), "--dry-run")
    assert "5 input(s), 2 the same as another (one render, a file each), 3 done already: 0 to render" in said
    photo(folder, 3)
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out))
    assert code == 0
    assert "6 input(s), 2 the same as another (one render, a file each), 3 done already: 1 to render" in said
    assert "(1 render(s) to be paid)" in said
    assert cli_env.request_count(BG_START) == 4


def test_a_dry_run_says_what_a_run_would_spend_and_sends_and_writes_nothing(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for n in range(2):
        photo(folder, n)
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out), "--dry-run")
    assert code == 0
    assert (
        "dry run: 2 input(s), 0 done already: 2 to render (2 render(s) to be paid); nothing was sent" in said
    )
    assert cli_env.request_count(BG_START) == 0
    assert not (out / ".adcreative-run.sqlite").exists()
    assert run(capsys, "remove-bg", str(folder), "-o", str(out))[0] == 0
    photo(folder, 2)
    before = snapshot(out)
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out), "--dry-run")
    assert code == 0
    assert "dry run: 3 input(s), 2 done already: 1 to render (1 render(s) to be paid)" in said
    assert cli_env.request_count(BG_START) == 2
    assert snapshot(out) == before  # the ledger byte-identical, no -wal/-shm, no run file rewritten
