"""The CLI's preflight: checked before the first paid call, each failure one message naming the path or
setting and what to do."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_POLLS

from adcreative_async import AdCreativeClient
from adcreative_async.cli._common import UsageError
from adcreative_async.cli._preflight import MAX_LISTED, check_credentials, check_images, check_output_folder
from adcreative_async.testing import Emulator, sample_image


def images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i:04d}.png"
        path.write_bytes(sample_image("png", (8, 8), (i % 256, 1, 2)))
        paths.append(path)
    return paths


def test_whole_images_pass_and_broken_ones_are_listed_once_with_their_reasons(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", 100)
    check_images(paths)  # many files: checked several at once
    paths[3].write_bytes(paths[3].read_bytes()[:-20])
    paths[50].write_text("not an image")
    with pytest.raises(UsageError) as caught:
        check_images(paths)
    message = str(caught.value)
    assert message.startswith("2 of 100 input(s) are not whole PNG, JPEG or WebP images; nothing was sent")
    assert f"{paths[3]} is a PNG cut short" in message
    assert f"{paths[50]} is not an image" in message


def test_many_refused_inputs_are_counted_past_the_first_ones(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", MAX_LISTED + 5)
    for path in paths:
        path.write_bytes(b"")
    with pytest.raises(UsageError) as caught:
        check_images(paths)
    assert "... and 5 more" in str(caught.value)
    assert len(str(caught.value).splitlines()) == MAX_LISTED + 2


def test_an_output_folder_is_made_when_missing(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    check_output_folder(out)
    assert out.is_dir()
    assert list(out.iterdir()) == []  # the write check leaves nothing behind


def test_a_file_where_the_output_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "out")
    with pytest.raises(UsageError, match="cannot make the output folder"):
        check_output_folder(tmp_path / "out" / "inside")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder: permissions cannot be tested")
def test_an_output_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="cannot write in the output folder"):
            check_output_folder(out)
    finally:
        out.chmod(0o755)


@pytest.mark.anyio
async def test_accepted_credentials_pass() -> None:
    async with (
        Emulator() as emulator,
        AdCreativeClient(**emulator.credentials, poll_policy=FAST_POLLS) as client,
    ):
        await check_credentials(client.background_remover)


@pytest.mark.anyio
async def test_a_wrong_api_secret_is_refused_before_anything_is_sent() -> None:
    async with Emulator() as emulator:
        credentials: dict[str, Any] = {**emulator.credentials, "api_secret": "wrong"}
        async with AdCreativeClient(**credentials, poll_policy=FAST_POLLS) as client:
            with pytest.raises(UsageError, match="the credentials were refused"):
                await check_credentials(client.background_remover)
        assert emulator.request_count("Image/BackgroundRemoving/AdCreative") == 0


@pytest.mark.anyio
async def test_an_unreachable_api_is_said_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Emulator() as emulator:
        credentials: dict[str, Any] = {**emulator.credentials, "base_url": f"http://127.0.0.1:{port}"}
    async with AdCreativeClient(**credentials, poll_policy=FAST_POLLS) as client:
        with pytest.raises(UsageError, match="cannot reach the API"):
            await check_credentials(client.background_remover)


# ------------------------------------------------------------------------ through the command line


def test_a_broken_image_stops_the_command_before_anything_is_sent(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from adcreative_async.cli import main

    paths = images(tmp_path / "in", 3)
    paths[1].write_bytes(sample_image("jpeg", (64, 64))[:-40])
    paths[1].rename(tmp_path / "in" / "broken.jpg")
    code = main(["remove-bg", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.jpg is a JPEG cut short" in err
    assert "Traceback" not in err
    assert cli_env.request_count("Image/BackgroundRemoving/AdCreative") == 0
    assert not (tmp_path / "out" / ".adcreative-run.sqlite").exists()  # nothing recorded


def test_an_output_path_that_is_a_file_stops_the_command_with_one_line(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from adcreative_async.cli import main

    images(tmp_path / "in", 2)
    (tmp_path / "out").write_text("not a folder")
    code = main(["remove-bg", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"adcreative: output {tmp_path / 'out'} is a file, not a folder: give a folder with -o"
    ]


def test_wrong_credentials_stop_the_command_before_anything_is_recorded(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from adcreative_async.cli import main

    images(tmp_path / "in", 2)
    monkeypatch.setenv("ADCREATIVE_API_SECRET", "not-the-secret")
    code = main(["remove-bg", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert "the credentials were refused" in err
    assert "not-the-secret" not in err
    assert cli_env.request_count("Image/BackgroundRemoving/AdCreative") == 0
    assert not (tmp_path / "out" / ".adcreative-run.sqlite").exists()


def test_a_run_ledger_that_cannot_be_opened_stops_the_command_with_one_line(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from adcreative_async.cli import main

    images(tmp_path / "in", 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".adcreative-run.sqlite").write_text("not a database\n")
    code = main(["remove-bg", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "cannot open the run ledger" in err
    assert "Traceback" not in err
    assert cli_env.request_count("Image/BackgroundRemoving/AdCreative") == 0
