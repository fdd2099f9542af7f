"""Inputs checked before they are paid for: an unknown signature, an unreadable header or a body cut
short is refused with the reason; a whole PNG, JPEG or WebP passes (also with a camera's trailer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adcreative_async._integrity import END_MARKER_WINDOW, check_image_file, image_problem
from adcreative_async.testing import sample_image


def webp(width: int = 4) -> bytes:
    """A minimal VP8L WebP container (the header fields only matter here)."""
    payload = b"VP8L" + (5).to_bytes(4, "little") + b"\x2f" + bytes(4) + b"\x00"
    return b"RIFF" + (4 + len(payload)).to_bytes(4, "little") + b"WEBP" + payload


WHOLE = {
    "png": sample_image("png", (16, 16)),
    "jpeg": sample_image("jpeg", (16, 16)),
    "webp": webp(),
    "jpeg with a camera trailer": sample_image("jpeg", (16, 16)) + b"SEFT" + bytes(3000),
    "large png": sample_image("png", (16, 16))[:-12]
    + (20000).to_bytes(4, "big")
    + b"zzZz"
    + bytes(20000)
    + b"\x00\x00\x00\x00"
    + sample_image("png", (16, 16))[-12:],
}


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_a_whole_image_passes(name: str, tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(WHOLE[name])
    assert check_image_file(path) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "is empty"),
        (b"hello, this is text, not a picture", "unknown signature"),
        (b"GIF89a" + bytes(40), "is a GIF image"),
        (sample_image("png", (16, 16))[: len(sample_image("png", (16, 16))) - 20], "PNG cut short"),
        (b"\x89PNG\r\n\x1a\n" + bytes(4) + b"JUNK" + bytes(40), "PNG without a readable header"),
        (sample_image("jpeg", (64, 64))[:-30], "JPEG cut short"),
        (webp()[:-3], "WebP cut short"),
    ],
    ids=["empty", "text", "gif", "truncated png", "png header", "truncated jpeg", "truncated webp"],
)
def test_a_file_that_is_not_a_whole_accepted_image_is_refused_with_its_reason(
    data: bytes, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "image"
    path.write_bytes(data)
    problem = check_image_file(path)
    assert problem is not None
    assert reason in problem


def test_a_jpeg_cut_short_after_a_large_body_is_refused(tmp_path: Path) -> None:
    # the end marker is looked for in the last END_MARKER_WINDOW bytes only
    whole = sample_image("jpeg", (16, 16))
    data = whole[:-2] + bytes(3 * END_MARKER_WINDOW)  # no EOI at the end: cut, then padded by a bad copy
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    assert "JPEG cut short" in (check_image_file(path) or "")


def test_unreadable_and_folder_paths_say_why(tmp_path: Path) -> None:
    assert check_image_file(tmp_path / "missing.png") == "cannot be read: No such file or directory"
    assert check_image_file(tmp_path) == "is a folder, not an image"


def test_only_the_head_and_tail_are_needed() -> None:
    data = sample_image("png", (16, 16))
    assert image_problem(data[:32], data[-64:], len(data)) is None
