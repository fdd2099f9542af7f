"""Whether a file is a whole image of a type the API accepts, from its first and last bytes only.

Checked before an upload is paid for: an unknown signature, an unreadable header or a truncated body
(an interrupted copy, a download cut short) are refused with the reason, instead of being sent, paid for
and rendered as garbage. Two small reads per file (its head and its tail), so that 100,000 inputs are
checked in seconds.
"""

from __future__ import annotations

import os

from ._files import ACCEPTED_IMAGE_TYPES, sniff_type

__all__ = ["END_MARKER_WINDOW", "HEAD_BYTES", "check_image_file", "image_problem"]

#: Bytes read at the start of a file: signature and header.
HEAD_BYTES = 32
#: assumed (no doc of the API says what it accepts beyond "an image"): a PNG or JPEG whose end marker
#: (PNG's IEND chunk, JPEG's EOI) is not within this many bytes of the end was cut short. Some cameras
#: append a few KiB of their own data after a JPEG's EOI: the window lets those through.
END_MARKER_WINDOW = 8192
_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}


def image_problem(
    head: bytes, tail: bytes, size: int, accepted: frozenset[str] = ACCEPTED_IMAGE_TYPES
) -> str | None:
    """Why a file of ``size`` bytes that starts with ``head`` and ends with ``tail`` is not a whole image
    the API accepts, or None when it looks whole.

    Args:
        head: the first :data:`HEAD_BYTES` bytes (or all, if fewer).
        tail: the last :data:`END_MARKER_WINDOW` bytes (or all, if fewer).
        size: the file's length.
        accepted: the types accepted (``"png"``, ``"jpeg"``, ``"webp"``).
    """
    if size == 0:
        return "is empty"
    kind = sniff_type(head)
    wanted = ", ".join(_NAMES.get(k, k.upper()) for k in sorted(accepted))
    if kind is None:
        return f"is not an image (unknown signature; accepted: {wanted})"
    if kind not in accepted:
        return f"is a {kind.upper()} image (accepted: {wanted})"
    if kind == "png":
        if head[12:16] != b"IHDR":
            return "is a PNG without a readable header (no IHDR chunk first)"
        if b"IEND\xaeB`\x82" not in tail:
            return "is a PNG cut short (no IEND chunk at its end)"
    elif kind == "jpeg":
        if b"\xff\xd9" not in tail:
            return "is a JPEG cut short (no end-of-image marker at its end)"
    elif kind == "webp":
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            return f"is a WebP cut short ({size} bytes of the {declared} its header declares)"
        if head[12:15] != b"VP8":
            return "is a WebP without a readable header (no VP8 chunk first)"
    return None


def check_image_file(
    path: str | os.PathLike[str], accepted: frozenset[str] = ACCEPTED_IMAGE_TYPES
) -> str | None:
    """:func:`image_problem` of a file (blocking: two small reads), or why it cannot be read.

    Returns None when the file looks like a whole image; else the reason, to follow the file's name
    (``"is a JPEG cut short (...)"``, ``"cannot be read: Permission denied"``).
    """
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(HEAD_BYTES)
            if size > END_MARKER_WINDOW:
                file.seek(size - END_MARKER_WINDOW)
            else:
                file.seek(0)
            tail = file.read(END_MARKER_WINDOW)
    except IsADirectoryError:
        return "is a folder, not an image"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return image_problem(head, tail, size, accepted)
