"""One table of exit codes for every command (0 done, 1 items failed, 2 usage or setup, 130 interrupted),
error messages never cut, and a traceback only with ``--debug``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adcreative_async.cli import EXIT_CODES_HELP, main
from adcreative_async.testing import sample_image


def photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"p{i}.png").write_bytes(sample_image("png", (8 + i, 8)))
    return folder


def test_the_exit_codes_are_in_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert EXIT_CODES_HELP.strip() in out
    for code in ("0", "1", "2", "130"):
        assert f"\n  {code} " in out


def test_an_items_error_is_shown_whole_in_lines_mode(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.fail_next("Image/BackgroundRemoving/AdCreative", 400)
    folder = photos(tmp_path / "in", 1)
    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "a"), "--json"])
    item = json.loads(capsys.readouterr().out.splitlines()[0])  # --json: JSON Lines, the item first
    assert code == 1  # an item failed: the API refused it
    error = item["error"]
    whole = " ".join(f"{error['type']}: {error['message']}".split()).split(" [trace ")[0]  # (per request)
    assert len(whole) > 120  # (the old display cut at 120)
    cli_env.fail_next("Image/BackgroundRemoving/AdCreative", 400)
    code = main(["remove-bg", str(folder), "-o", str(tmp_path / "b"), "--progress", "lines"])
    out = capsys.readouterr().out
    assert code == 1
    assert whole in out
    assert "…" not in out


def test_an_unexpected_error_is_one_line_and_exit_1_unless_debug(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from adcreative_async.cli import _commands

    async def broken(session: Any) -> int:
        raise RuntimeError("something nobody foresaw\non two lines")

    monkeypatch.setattr(_commands, "remove_bg", broken)
    folder = photos(tmp_path / "in", 1)
    argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--progress", "off"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "adcreative: unexpected error: RuntimeError: something nobody foresaw on two lines (run again with "
        "--debug for the traceback; a resumable run resumes where it stopped)"
    ]
    with pytest.raises(RuntimeError, match="nobody foresaw"):
        main([*argv, "--debug"])


@pytest.mark.parametrize("command", ["download", "edit"])
def test_an_output_folder_that_is_a_file_is_a_usage_error_for_every_command(
    command: str, tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").write_text("a file")
    some_id = "5d6c1f1e-8a4f-4a5e-9d7e-3c1f2b4a6e8d"
    code = main([command, some_id, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a file, not a folder" in err
