"""What an interrupted bulk command tells: the command that resumes it (never one that starts over, never
a credential), and where the run stands (see tests/test_cli.py for the whole Ctrl-C run)."""

from __future__ import annotations

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
