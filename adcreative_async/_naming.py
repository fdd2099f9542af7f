"""Output file names from the input (a template or a callback), and placing a downloaded file under its
name without ever overwriting a different file."""

from __future__ import annotations

import hashlib
import os
import shutil
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._errors import InvalidRequestError

__all__ = ["NAME_FIELDS", "Namer", "check_template", "copy_file", "name_context", "place_file"]

#: The fields a name template may use.
NAME_FIELDS = frozenset({"stem", "suffix", "ext", "index", "task_index", "task_id", "process_id", "label"})

Namer = str | Callable[[Mapping[str, Any]], str]
"""A template such as ``"{stem}{suffix}"`` or ``"{stem}-{task_index}.{ext}"``, or a callable given the
same fields as a mapping, returning a path relative to the destination folder."""


def check_template(name: Namer | None) -> None:
    """Refuse a template with unknown fields before anything is sent.

    Raises:
        InvalidRequestError: an unknown field (named, with the known ones) or a malformed template.
    """
    if name is None or callable(name):
        return
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
    except ValueError as exc:
        raise InvalidRequestError.for_field("name", f"is not a valid template: {exc}") from None
    unknown = sorted(f for f in fields if f.split(".")[0].split("[")[0] not in NAME_FIELDS)
    if unknown:
        raise InvalidRequestError.for_field(
            "name", f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(NAME_FIELDS))})"
        )


def _stem(item: object) -> tuple[str, str]:
    label = getattr(item, "label", None)
    if isinstance(label, str):
        return label, Path(label).stem if label else ""
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        return text, Path(text).stem
    return "", ""


def name_context(
    item: object, index: int, task_id: str, task_index: int, process_id: str, suffix: str
) -> dict[str, Any]:
    """The fields of a name: the item's label and stem (a path's or a request's), its position, the
    task's id and position in its process, the process id, the downloaded file's suffix."""
    label, stem = _stem(item)
    return {
        "stem": stem or task_id,
        "label": label,
        "suffix": suffix,
        "ext": suffix.lstrip("."),
        "index": index,
        "task_index": task_index,
        "task_id": task_id,
        "process_id": process_id,
    }


def render_name(name: Namer, context: Mapping[str, Any]) -> str:
    """The relative path ``name`` gives for ``context`` (checked: relative, inside the folder)."""
    text = name(context) if callable(name) else name.format(**context)
    path = Path(text)
    if not text or path.is_absolute() or ".." in path.parts:
        raise InvalidRequestError.for_field("name", f"must give a relative path inside dest, got {text!r}")
    return text


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    digests = []
    for path in (a, b):
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        digests.append(digest.digest())
    return digests[0] == digests[1]


def copy_file(source: Path, target: Path) -> Path:
    """``source`` also under ``target`` (a hard link where possible; blocking), never overwriting another
    file: a ``target`` with the same content is kept; with other content, FileExistsError."""
    if source == target:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        if not _same_content(source, target):
            raise FileExistsError(f"{target} exists with other content: not overwritten") from None
    except OSError:  # no hard links on this file system
        if target.exists():
            if not _same_content(source, target):
                raise FileExistsError(f"{target} exists with other content: not overwritten") from None
        else:
            temp = target.with_name(f".{target.name}.copy")
            shutil.copyfile(source, temp)
            os.replace(temp, target)
    return target


def place_file(source: Path, target: Path) -> Path:
    """Move ``source`` to ``target`` (blocking: run it in a worker thread), never overwriting another file.

    A ``target`` that exists with the same content is kept (a run resumed after a crash between the
    rename and its record); with other content, FileExistsError.
    """
    if source == target:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # atomic and never overwrites
    except FileExistsError:
        if not _same_content(source, target):
            raise FileExistsError(
                f"{target} exists with other content: not overwritten (the result stays in {source})"
            ) from None
    except OSError:  # no hard links on this file system
        if target.exists():
            if not _same_content(source, target):
                raise FileExistsError(
                    f"{target} exists with other content: not overwritten (the result stays in {source})"
                ) from None
        else:
            os.replace(source, target)
            return target
    os.unlink(source)
    return target
