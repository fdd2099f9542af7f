"""Output file names from the input (a template or a callback): one rule for the bulk runner, the run
ledger and the CLI.

A name is a function of the input's identity (its label: the path the caller gave, relative to the input
root for the CLI) and of the result (task id, suffix): stable when inputs are added or removed, never
the position among the others. Every item's name is checked before its start call
(:func:`check_names`: inside ``dest``, in a writable folder, not shared with another input), so a paid
render never fails on its name; the file at an item's name is that item's own, so a rerun, a retry or a
duplicate input replaces it atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import InvalidRequestError

__all__ = [
    "NAME_FIELDS",
    "NameClashes",
    "Namer",
    "check_names",
    "check_template",
    "copy_file",
    "name_context",
    "planned_name",
    "render_name",
    "temp_stem_for",
]

#: The fields a name template may use.
NAME_FIELDS = frozenset(
    {"stem", "filename", "suffix", "ext", "index", "task_index", "task_id", "process_id", "label"}
)

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


_SEPARATORS = os.sep + (os.altsep or "")


def _file_name(label: str) -> str:
    """``Path(label).name``, without building a Path (names are made for every item of a run)."""
    return os.path.basename(label.rstrip(_SEPARATORS))


def _stem_of(name: str) -> str:
    """``Path(name).stem`` of a file name: its suffix (a dot not first nor last, the last one) cut."""
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _label(item: object) -> str:
    """The item's label (a request's), or the path it is; else ""."""
    label = getattr(item, "label", None)
    if isinstance(label, str):
        return label
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else ""


def _stem(item: object) -> tuple[str, str]:
    label = _label(item)
    return label, _stem_of(_file_name(label)) if label else ""


def name_context(
    item: object, index: int, task_id: str, task_index: int, process_id: str, suffix: str
) -> dict[str, Any]:
    """The fields of a name: the item's label, file name and stem (a path's or a request's), its
    position, the task's id and position in its process, the process id, the downloaded file's
    suffix."""
    label = _label(item)
    filename = _file_name(label) if label else ""
    return {
        "stem": _stem_of(filename) or task_id,
        "filename": filename or task_id,
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
    parts = text.replace(os.altsep, os.sep).split(os.sep) if os.altsep else text.split(os.sep)
    if not text or os.path.isabs(text) or ".." in parts or parts[-1] in ("", "."):
        raise InvalidRequestError.for_field("name", f"must give a relative path inside dest, got {text!r}")
    return text


#: The values of the fields known only after the start call, to check names before it: task and
#: process ids are GUIDs (distinct per item, as real ones are), the suffix one of the image suffixes.
CHECK_SUFFIX = ".png"
#: assumed (from the seeds and the docs' examples): these features make one task per start call; the
#: others (creatives, stock images, product photoshoot) may make several, whose names must differ.
SINGLE_TASK_FEATURES = frozenset({"background_remover", "upscaler", "face_enhancer"})


#: A temporary file's stem longer than this (UTF-8 bytes) is a hash of the name instead (room for the
#: leading dot, the slot and ``.part`` within a file name's 255 bytes).
MAX_TEMP_STEM = 200


def temp_stem_for(name: str) -> str:
    """The stem of the temporary files of the result named ``name`` (a relative path): its file name,
    or a hash of the whole name when that is too long; the same for every download to that name."""
    stem = _file_name(name)
    if not stem.strip(".") or "\\" in stem or "\x00" in stem or len(stem.encode()) > MAX_TEMP_STEM:
        return hashlib.sha256(name.encode()).hexdigest()[:32]
    return stem


def planned_name(name: Namer, item: object, index: int, task_index: int = 0) -> str:
    """The name ``name`` gives the first result of ``item`` (at ``index``), with representative values
    for the fields known only after the start call (checked: relative, inside the folder).

    Raises:
        InvalidRequestError: the name is outside the folder, or the template or callable fails.
    """
    task_id = f"{index & 0xFFFFFFFF:08x}-7a5c-4000-8000-{task_index:012x}"  # GUID-shaped, per item
    process_id = f"{index & 0xFFFFFFFF:08x}-7a5c-4000-8000-{0xFFFFFFFFFFFF:012x}"
    context = name_context(item, index, task_id, task_index, process_id, CHECK_SUFFIX)
    try:
        return render_name(name, context)
    except InvalidRequestError:
        raise
    except Exception as exc:  # a template's missing index, a callable's own error
        raise InvalidRequestError.for_field("name", f"cannot be made for this input: {exc!r}") from None


def _identity(item: object, index: int) -> object:
    """What tells inputs apart for naming: the label (a path, relative to the input's root when the
    caller gave it so), else the position (bytes without a label)."""
    label, _ = _stem(item)
    return label or ("#", index)


def _writable(directory: str) -> str | None:
    """Why files cannot be made in ``directory`` (created as needed), or None (blocking)."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        return f"{path} is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


def _folders_in(directory: str) -> set[str]:
    """The names of the folders in ``directory`` (none if it does not exist yet)."""
    try:
        with os.scandir(directory) as entries:
            return {entry.name for entry in entries if entry.is_dir()}
    except OSError:
        return set()


def check_names(
    name: Namer | None,
    dest: str | os.PathLike[str],
    items: Iterable[tuple[int, object]],
    again: Callable[[], Iterable[tuple[int, object]]] | None = None,
) -> dict[int, InvalidRequestError]:
    """The items whose output cannot be saved, with why; checked before any start call (blocking: run
    it in a worker thread). ``items``: (position, the item as the name sees it).

    Each item's name (its first result's, see :func:`planned_name`) must lie inside ``dest``, in a
    folder that is writable or can be made, and not be an existing folder; and no two inputs may share
    a name (compared case-insensitively: some file systems are): every input of such a group is
    refused. An input given twice (the same label) is one input. For an item of a feature that makes
    several results (see :data:`SINGLE_TASK_FEATURES`), two results must not share a name either.
    Without ``name`` (results named after their task id), only ``dest`` is checked.

    Memory: ``items`` is read once, as it comes; what is kept of each input is a hash of its name
    (about 60 bytes; :class:`NameClashes`), never the input. Only when two inputs' names hash alike (a
    clash, the same input given twice, or by chance) are the inputs read again (``again()``: the same
    items, in the same order; by default ``items`` itself, then a sequence) to compare those names
    exactly.
    """
    refused: dict[int, InvalidRequestError] = {}
    places = _Places(os.fspath(dest), name is not None)
    clashes = NameClashes()
    excluded: set[int] = set()  # refused by their own name: not in any group (rare)
    for index, item in items:
        if name is None:
            problem = places.problem(None)
            if problem is not None:
                refused[index] = problem
            continue
        text = _own_name(name, item, index, refused)
        if text is None:
            excluded.add(index)
            continue
        norm = os.path.normpath(text).replace(os.sep, "/")
        clashes.add(norm.casefold())
        problem = places.problem(text)
        if problem is not None:
            refused[index] = problem
    if name is None or not clashes.suspects:
        return refused
    if again is None:
        if not isinstance(items, Sequence):
            raise TypeError("check_names: give again() to read one-shot items a second time")
        seq = items
        again = lambda: seq  # noqa: E731
    # the suspected names, compared exactly: only the inputs that have one are kept (a few, normally)
    by_name: dict[str, list[tuple[int, object, str, str]]] = {}
    for index, item in again():
        if index in excluded:
            continue
        try:
            text = planned_name(name, item, index)
        except InvalidRequestError:  # (it was not, the first time: an input that changed meanwhile)
            continue
        norm = os.path.normpath(text).replace(os.sep, "/")
        key = norm.casefold()
        if clashes.suspected(key):
            by_name.setdefault(key, []).append((index, _identity(item, index), _shown(item, index), norm))
    for group in by_name.values():
        if len(group) < 2 or len({identity for _, identity, _, _ in group}) < 2:
            continue
        labels = sorted({shown for _, _, shown, _ in group})
        listed = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        for index, _, _, text in group:
            refused[index] = InvalidRequestError.for_field(
                "name",
                f"gives {text!r} to several inputs ({listed}): use fields that tell them apart "
                '(e.g. "{filename}{suffix}" keeps each input\'s own suffix)',
            )
    return refused


def _shown(item: object, index: int) -> str:
    return str(_stem(item)[0] or f"#{index}")


def _own_name(name: Namer, item: object, index: int, refused: dict[int, InvalidRequestError]) -> str | None:
    """The item's planned name; None, with why in ``refused``, when it has none of its own (outside
    the folder, or one name for the several results of a start call)."""
    try:
        text = planned_name(name, item, index)
    except InvalidRequestError as exc:
        refused[index] = exc
        return None
    feature = getattr(item, "feature", None)
    if isinstance(feature, str) and feature not in SINGLE_TASK_FEATURES:
        second = planned_name(name, item, index, task_index=1)
        if os.path.normcase(os.path.normpath(second)) == os.path.normcase(os.path.normpath(text)):
            refused[index] = InvalidRequestError.for_field(
                "name",
                f"gives every result of {feature} the same name {text!r}: a start call makes "
                "several; add {task_index} or {task_id}",
            )
            return None
    return text


class NameClashes:
    """Which names were given more than once, with a hash kept per name (about 60 bytes), never the
    name itself nor its input.

    A hash seen twice makes its name *suspected*: the same name twice, or (rarely, 64-bit hashes) two
    names that hash alike; the caller compares the suspected ones exactly.
    """

    __slots__ = ("_seen", "suspects")

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.suspects: set[int] = set()

    def add(self, key: str) -> None:
        """Note one input's name (``key``: as compared)."""
        digest = hash(key)
        if digest in self._seen:
            self.suspects.add(digest)
        else:
            self._seen.add(digest)

    def suspected(self, key: str) -> bool:
        """Whether ``key``'s hash was seen more than once."""
        return hash(key) in self.suspects


class _Places:
    """Whether a result can be saved where its name puts it: each folder looked at once (writable, or
    can be made; the folders in it listed once, not a stat per item)."""

    def __init__(self, root: str, named: bool) -> None:
        self._root = root
        self._named = named
        self._directories: dict[str, str | None] = {}
        self._folders: dict[str, set[str]] = {}

    def problem(self, text: str | None) -> InvalidRequestError | None:
        """Why the result named ``text`` (None: named after its task, in ``dest``) cannot be saved."""
        if text is None:
            target, directory = None, self._root
        else:
            target = os.path.join(self._root, text)
            directory = os.path.dirname(target) or "."
        if directory not in self._directories:
            self._directories[directory] = _writable(directory)
        problem = self._directories[directory]
        if problem is None and target is not None:
            if directory not in self._folders:
                self._folders[directory] = _folders_in(directory)
            if os.path.basename(target) in self._folders[directory]:
                problem = f"{target} is a folder"
        if problem is None:
            return None
        return InvalidRequestError.for_field(
            "name" if self._named else "dest", f"cannot save the result: {problem}"
        )


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
    """``source`` also under ``target`` (a hard link where possible; blocking). ``target`` is the name
    of the input the copy is for (names are a function of the input), so an earlier file there is that
    input's own: kept when it has the same content, else replaced atomically."""
    if source == target:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _same_content(source, target):
        return target
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.copy")
    try:
        try:
            os.link(source, temp)
        except OSError:  # no hard links on this file system (or across file systems)
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return target
