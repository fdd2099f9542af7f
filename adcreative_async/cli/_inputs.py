"""The console script's inputs: image files from paths and folders, and creative briefs (TOML or JSON).

A brief holds the keyword arguments of ``client.creatives.generate()`` in snake_case, with image paths
relative to the brief file::

    brand_image = "logo.png"
    background_image = "background.jpg"
    main_headline = "Introducing Our Latest Product"
    punchline = "Revolutionizing the industry."
    action_text = "Learn More"
    color1_hex = "#fc2c2c"
    color2_hex = "#002c2c"
    render_kind = "post"        # a RenderKind name or number
    render_type = "svg"         # a RenderType name or number

Several creatives from one file: a ``briefs`` list of tables (TOML ``[[briefs]]``, or a JSON array at the
top); the top-level keys are defaults for every entry.
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from .. import CreativesResource, RenderKind, RenderType
from .._naming import NameClashes
from ._common import UsageError
from ._display import CLI_EXTRA_HINT

__all__ = [
    "IMAGE_SUFFIXES",
    "Brief",
    "ImageItem",
    "ImageList",
    "collect_images",
    "load_briefs",
    "refuse_shared_names",
]

#: File name suffixes picked up from folders (files named explicitly are sent whatever their name; the
#: SDK checks their bytes).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})

#: generate() parameters a brief may not set: the CLI passes them itself, or they are not data.
_NOT_IN_BRIEF = frozenset(
    {"self", "on_upload_progress", "extra_form", "extra_query", "extra_headers", "timeout"}
)
_IMAGE_KEYS = ("brand_image", "background_image")


class ImageItem:
    """One image to process: where it is, and its identity for naming: its path relative to the folder
    it was found in (a file given by itself: its name), suffix kept (see :meth:`output_name`).

    Held for every input of a run (what the preflight checked), so it is small: the folder (one object
    shared by its files) and the relative path; :attr:`path` is made when read.
    """

    __slots__ = ("folder", "output_stem")

    def __init__(self, folder: Path, output_stem: str) -> None:
        self.folder = folder
        self.output_stem = output_stem

    def __repr__(self) -> str:
        return f"ImageItem({self.path!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageItem):
            return NotImplemented
        return (self.folder, self.output_stem) == (other.folder, other.output_stem)

    def __hash__(self) -> int:
        return hash((self.folder, self.output_stem))

    @property
    def path(self) -> Path:
        """The image's path, as given (a folder's file: the folder joined with its relative path)."""
        return self.folder / self.output_stem

    @property
    def label(self) -> str:
        """The name shown in progress rows and tables."""
        return self.output_stem.rpartition("/")[2]

    def output_name(self, suffix: str) -> str:
        """The result's path in the output folder, a function of this input alone (never of the other
        inputs, so stable when inputs are added or removed), given the result's ``suffix``: the input's
        relative path with its suffix replaced when the result has the same one (``sub/cat.png`` ->
        ``sub/cat.png``), else kept (``sub/cat.jpg`` -> ``sub/cat.jpg.png``). So ``cat.jpg`` and
        ``cat.png`` never share a name, and neither does ``cat.jpg.png`` (its stem ends with an image
        suffix: kept too, ``cat.jpg.png.png``)."""
        relative = self.output_stem
        own = _suffix(relative.rpartition("/")[2])
        inner = _suffix(relative[: len(relative) - len(own)].rpartition("/")[2])
        if own and own.lower() == suffix.lower() and inner.lower() not in IMAGE_SUFFIXES:
            return f"{relative[: len(relative) - len(own)]}{suffix}"
        return f"{relative}{suffix}"


def _suffix(name: str) -> str:
    """``PurePosixPath(name).suffix`` of a file name (names are made for every input of a run)."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


class ImageList(Sequence[ImageItem]):
    """The images of a run, in order: per folder given, the folder once and its files' relative paths
    (a string each: about 70 bytes per image); each :class:`ImageItem` is made when read."""

    def __init__(self) -> None:
        self._folders: list[Path] = []
        self._names: list[list[str]] = []
        self._starts: list[int] = []  # the index of each folder's first image
        self._count = 0

    def add(self, folder: Path, names: list[str]) -> None:
        """Add a folder's images (their paths relative to it, in order)."""
        if not names:
            return
        if self._folders and self._folders[-1] == folder:  # files given one by one: one folder
            self._names[-1].extend(names)
        else:
            self._folders.append(folder)
            self._names.append(names)
            self._starts.append(self._count)
        self._count += len(names)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> ImageItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[ImageItem]: ...

    def __getitem__(self, index: int | slice) -> ImageItem | list[ImageItem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("image index out of range")
        chunk = bisect.bisect_right(self._starts, index) - 1
        return ImageItem(self._folders[chunk], self._names[chunk][index - self._starts[chunk]])

    def __iter__(self) -> Iterator[ImageItem]:
        for folder, names in zip(self._folders, self._names, strict=True):
            for name in names:
                yield ImageItem(folder, name)


def collect_images(paths: Sequence[str], *, recursive: bool = False) -> ImageList:
    """Image files from files and folders, in a stable order, each with its output name.

    A file is taken as given; a folder contributes its ``.jpg``, ``.jpeg``, ``.png`` and ``.webp`` files
    (its subfolders too with ``recursive``, keeping their relative layout in the output names). Each
    name is a function of the input's path relative to its folder (:meth:`ImageItem.output_name`).

    Raises:
        UsageError: a path does not exist, no image was found, or two different inputs would get the
            same output name (the same relative path in two folders given; names compared
            case-insensitively), before anything is sent.
    """
    # memory: a relative path per file (its folder once), never a Path or an object each
    items = ImageList()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            if recursive:
                relatives = [
                    p.relative_to(path).as_posix()
                    for p in path.glob("**/*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                ]
                relatives.sort(key=_path_order)  # the order of paths, part by part
            else:  # the entries' own names: no Path made per file
                with os.scandir(path) as entries:
                    relatives = [
                        entry.name
                        for entry in entries
                        if _suffix(entry.name).lower() in IMAGE_SUFFIXES and entry.is_file()
                    ]
                relatives.sort()
            items.add(path, relatives)
        elif path.is_file():
            items.add(path.parent, [path.name])
        else:
            raise UsageError(f"no such file or folder: {raw}")
    if not items:
        raise UsageError(
            "no images found in "
            + ", ".join(paths)
            + f" (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
            + ("" if recursive else "; add --recursive for subfolders")
            + ")"
        )
    # names compared by a hash each (NameClashes); only those seen twice are compared exactly
    clashes = NameClashes()
    for item in items:
        clashes.add(item.output_name(".png").casefold())
    if clashes.suspects:
        owners: dict[str, int] = {}
        for index, item in enumerate(items):
            name = item.output_name(".png")
            if not clashes.suspected(name.casefold()):
                continue
            first = items[owners.setdefault(name.casefold(), index)]
            if first != item and os.path.abspath(first.path) != os.path.abspath(item.path):
                raise UsageError(_shared_name(str(first.path), str(item.path), name))
    return items


def _path_order(relative: str) -> str:
    """The order of a folder's files: that of their paths, part by part (one string per file while
    sorting, not a tuple of parts)."""
    return relative.replace("/", "\x00")


def _shared_name(first: str, second: str, name: str) -> str:
    return (
        f"{first} and {second} would both be saved as {name!r}: output names come from each "
        "input's path relative to the folder given; give one of them another name or folder"
    )


def refuse_shared_names(named: Sequence[tuple[object, str, str]]) -> None:
    """Refuse two different inputs with the same output name (``(identity, shown, name)`` triples),
    compared case-insensitively (some file systems are); the same input given twice is one input.

    Raises:
        UsageError: naming the inputs and the name they share.
    """
    owners: dict[str, tuple[object, str]] = {}
    for identity, shown, name in named:
        first = owners.setdefault(name.casefold(), (identity, shown))
        if first[0] != identity:
            raise UsageError(_shared_name(first[1], shown, name))


@dataclass(frozen=True)
class Brief:
    """One creative to generate: a label (file and entry) and ``generate()``'s keyword arguments."""

    label: str
    kwargs: dict[str, Any]


def generate_parameters() -> tuple[set[str], set[str]]:
    """(every key a brief may hold, the required ones), read from ``CreativesResource.generate``."""
    signature = inspect.signature(CreativesResource.generate)
    allowed = {name for name in signature.parameters if name not in _NOT_IN_BRIEF}
    required = {
        name
        for name, p in signature.parameters.items()
        if name in allowed and p.default is inspect.Parameter.empty
    }
    return allowed, required


def _read(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read brief {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"brief {path} is not valid JSON: {exc}") from None
    if path.suffix.lower() != ".toml":
        raise UsageError(f"brief {path}: use a .toml or .json file")
    # tomllib from Python 3.11; its backport tomli (the cli extra) on 3.10.
    name = "tomllib" if sys.version_info >= (3, 11) else "tomli"
    try:
        tomllib = importlib.import_module(name)
    except ImportError:  # pragma: no cover - Python 3.10 without the cli extra
        raise UsageError(f"TOML briefs on Python 3.10 need the cli extra: {CLI_EXTRA_HINT}") from None
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"brief {path} is not valid TOML: {exc}") from None


def _enum_value(enum: type[RenderKind] | type[RenderType], key: str, value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be a name or a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        name = value.strip().upper().replace("-", "_").replace(" ", "_")
        if name.isdigit():
            return int(name)
        try:
            return int(enum[name])
        except KeyError:
            pass
    names = ", ".join(m.name.lower() for m in enum)
    raise UsageError(f"{where}: {key} {value!r} is not one of {names} (or a number)")


def _brief(entry: Any, defaults: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: a brief must be a table/object of generate() arguments")
    allowed, required = generate_parameters()
    values = {**defaults, **entry}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a brief takes {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(values))
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")
    for key in _IMAGE_KEYS:
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageError(f"{where}: {key} must be a path (relative to the brief)")
        image = (base / os.path.expanduser(value)).resolve()
        if not image.is_file():
            raise UsageError(f"{where}: {key} {value!r}: no such file ({image})")
        values[key] = image
    values["render_kind"] = _enum_value(RenderKind, "render_kind", values["render_kind"], where)
    values["render_type"] = _enum_value(RenderType, "render_type", values["render_type"], where)
    for key, value in values.items():
        if (
            key not in _IMAGE_KEYS
            and key not in ("render_kind", "render_type")
            and not isinstance(value, str)
        ):
            raise UsageError(f"{where}: {key} must be a string, not {value!r}")
    return values


def load_briefs(paths: Sequence[str]) -> list[Brief]:
    """Every brief of the given files, checked before anything is sent.

    Raises:
        UsageError: a file is unreadable or malformed, a key is unknown or missing, an image is missing.
    """
    briefs: list[Brief] = []
    for raw in paths:
        path = Path(raw).expanduser()
        data = _read(path)
        base = path.resolve().parent
        if isinstance(data, list):
            entries, defaults = data, {}
        elif isinstance(data, dict) and "briefs" in data:
            entries = data["briefs"]
            defaults = {k: v for k, v in data.items() if k != "briefs"}
            if not isinstance(entries, list):
                raise UsageError(f"{path}: briefs must be a list of tables")
        else:
            entries, defaults = [data], {}
        for i, entry in enumerate(entries):
            label = path.name if len(entries) == 1 else f"{path.name}#{i + 1}"
            briefs.append(Brief(label, _brief(entry, defaults, base, label)))
    if not briefs:
        raise UsageError("the brief files hold no brief")
    return briefs
