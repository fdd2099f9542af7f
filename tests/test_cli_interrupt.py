"""What an interrupted bulk command tells: the command that resumes it (never one that starts over, never
a credential), and where the run stands (see tests/test_cli.py for the whole Ctrl-C run)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adcreative_async.cli._runs import resume_command


@pytest.mark.parametrize(
    ("argv", "resume"),
    [
        (["remove-bg", "photos", "-o", "out"], "adcreative remove-bg photos -o out"),
        (["remove-bg", "my photos", "-o", "out", "-c", "8"], "adcreative remove-bg 'my photos' -o out -c 8"),
        (["remove-bg", "p", "-o", "o", "--restart", "--yes"], "adcreative remove-bg p -o o"),
        (["remove-bg", "p", "-o", "o", "--retry-failed"], "adcreative remove-bg p -o o --retry-failed"),
        (
            [
                "--api-secret",
                "s3cret",
                "remove-bg",
                "p",
                "-o",
                "o",
                "--api-key=k3y",
                "--base-url",
                "http://h",
            ],
            "adcreative remove-bg p -o o",
        ),
    ],
)
def test_the_resume_command_is_the_same_without_starting_over_or_credentials(
    argv: list[str], resume: str
) -> None:
    assert resume_command(argv) == resume


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is a POSIX thing")
def test_with_bars_on_a_terminal_the_summary_after_ctrl_c_is_not_erased(tmp_path: Path) -> None:
    """Under a pseudo-terminal (live bars), Ctrl-C: the display stops first, then the summary, and
    nothing the display draws afterwards moves the cursor back over it."""
    from adcreative_async.testing import EmulatorThread, sample_image

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):
        (folder / f"p{i:02d}.png").write_bytes(sample_image("png", (8 + i, 8)))
    with EmulatorThread(task_duration=(0.5, 1.5), start_latency=0.05) as emulator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
        env.update({f"ADCREATIVE_{k.upper()}": str(v) for k, v in emulator.credentials.items()})
        env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
        primary, secondary = pty.openpty()
        argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "-c", "2"]
        process = subprocess.Popen(
            [sys.executable, "-m", "adcreative_async.cli", *argv],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=env,
            close_fds=True,
        )
        os.close(secondary)
        output = b""
        deadline = time.monotonic() + 60
        interrupted = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                output += chunk
            if not interrupted and emulator.request_count("Image/BackgroundRemoving/AdCreative") >= 6:
                process.send_signal(signal.SIGINT)
                interrupted = True
            if process.poll() is not None and not ready:
                break
        os.close(primary)
        assert process.wait(timeout=30) == 130
    text = output.decode(errors="replace")
    at = text.rfind("interrupted: of 40 input(s)")
    assert at >= 0, text[-2000:]
    after = text[at:]
    assert "\x1b[1A" not in after
    assert "\x1b[2K" not in after
    assert "to resume (nothing done is sent again): adcreative remove-bg" in after
