"""Input rules of every endpoint, and the model binding and validation that ASP.NET would apply.

Each endpoint's inputs are one tuple of :class:`Rule` in the order its errors are listed. A rule knows
its wire name, the key its errors go under and the name its messages use, because the seeds show
three conventions:

* form models (AdCreativesByKind, Background Remover): PascalCase keys and names (``Color1Hex``,
  ``BrandImage``, ``UploadedImage``);
* the edit form: camelCase keys with PascalCase names (``"taskIds": ["The TaskIds field is required."]``,
  as ``[FromForm(Name = "taskIds")]`` on a ``TaskIds`` property gives);
* query parameters: the parameter name for both (``"userId": ["The userId field is required."]``).

As in ASP.NET, names match case-insensitively, the first value of a repeated simple field wins, unknown
fields are ignored, and an empty or whitespace-only required string counts as missing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._responses import Msg
from ._state import UploadInfo

GUID = "guid"
GUID_LIST = "guid_list"
STRING = "string"
COLOR = "color"
INT = "int"
BOOL = "bool"
FILE = "file"

_HEX = "[0-9a-fA-F]"
_GUID_D = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_GUID_RE = re.compile(rf"(?:{_GUID_D}|{_HEX}{{32}}|\{{{_GUID_D}\}}|\({_GUID_D}\))")
"""Guid.TryParse's formats D, N, B and P."""
_INT_RE = re.compile(r"[+-]?[0-9]+")
HEX_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
"""assumed: the seed's "custom Color attribute" is not specified; #RGB and #RRGGBB pass."""

RENDER_KINDS = (0, 1, 2, 4, 8, 16, 31, 32, 64, 128, 256, 512, 992, 1023)  # seed
RENDER_TYPES = (0, 1, 2, 4, 8, 16, 19, 32, 64, 100, 127, 128)  # seed


def parse_guid(text: str) -> str | None:
    """A GUID in canonical lowercase form, or None when .NET's Guid.TryParse would refuse ``text``."""
    text = text.strip()
    if not _GUID_RE.fullmatch(text):
        return None
    return str(uuid.UUID(re.sub(r"[^0-9a-fA-F]", "", text)))


def parse_int32(text: str) -> int | None:
    """An Int32 as .NET parses one (sign and surrounding whitespace allowed), or None."""
    text = text.strip()
    if not _INT_RE.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None


def parse_bool(text: str) -> bool | None:
    """``true``/``false`` in any case (bool.TryParse), or None."""
    lowered = text.strip().lower()
    return {"true": True, "false": False}.get(lowered)


def utf16_length(text: str) -> int:
    """String length as .NET counts it: UTF-16 code units (an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Rule:
    """One input of an endpoint.

    Attributes:
        name: Wire name (form field, file part, query parameter or JSON property).
        kind: GUID, GUID_LIST, STRING, COLOR, INT, BOOL or FILE.
        required: Whether a value must be present.
        key: Key of its errors in a validation body.
        display: Name used inside its messages.
        parameter: An action parameter (message "The value 'x' is not valid.") rather than a model
            property ("The value 'x' is not valid for X.").
        max_length: Longest allowed string, in UTF-16 code units.
        allowed: Allowed integer values (empty: any).
        missing: Messages for a missing value instead of the [Required] one.
    """

    name: str
    kind: str
    required: bool
    key: str
    display: str
    parameter: bool = False
    max_length: int | None = None
    allowed: tuple[int, ...] = ()
    missing: tuple[str, ...] = ()


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def prop(name: str, kind: str, required: bool = False, **extra: Any) -> Rule:
    """A model property: errors keyed and named in PascalCase."""
    return Rule(name, kind, required, _pascal(name), _pascal(name), **extra)


def named_prop(name: str, kind: str, required: bool = False, **extra: Any) -> Rule:
    """A model property with an explicit form name: errors keyed by the wire name, named in PascalCase."""
    return Rule(name, kind, required, name, _pascal(name), **extra)


def param(name: str, kind: str, required: bool = False) -> Rule:
    """An action parameter (query string): errors keyed and named by the parameter name."""
    return Rule(name, kind, required, name, name, parameter=True)


GENERATION_START = (
    prop("actionText", STRING, True, max_length=100),
    prop("applicationId", GUID, True),
    prop("color1Hex", COLOR, True),
    prop("color2Hex", COLOR, True),
    prop("mainHeadline", STRING, True, max_length=255),
    prop("punchline", STRING, True, max_length=255),
    prop("renderKind", INT, True, allowed=RENDER_KINDS),
    prop("renderType", INT, True, allowed=RENDER_TYPES),
    prop("userId", GUID, True),
    prop("description", STRING, max_length=1000),
    prop("buttonIconClass", STRING),
    prop("fontIdentifier", STRING),
    prop("color3Hex", COLOR),
    prop("backgroundImage", FILE, True),
    prop("brandImage", FILE, True),
)
"""POST Image/Generation/AdCreativesByKind (seed 001's table; text fields before files, which gives the
seed's error order Color1Hex, BrandImage)."""

GENERATION_EDIT = (
    named_prop("applicationId", GUID, True),
    named_prop("userId", GUID, True),
    named_prop("taskIds", GUID_LIST, True),
    named_prop("mainHeadline", STRING, max_length=255),
    named_prop("punchline", STRING, max_length=255),
    named_prop("actionText", STRING, max_length=100),
    named_prop("description", STRING, max_length=1000),
    named_prop("buttonIconClass", STRING),
    named_prop("fontIdentifier", STRING),
    named_prop("color1Hex", COLOR),
    named_prop("color2Hex", COLOR),
    named_prop("color3Hex", COLOR),
    named_prop("brandImage", FILE),
    named_prop("backgroundImage", FILE),
)
"""POST Image/Editing/AdCreativesByTasks (seed 001's table)."""

BACKGROUND_START = (
    prop("applicationId", GUID, True),
    prop("userId", GUID, True),
    prop("uploadedImage", FILE, True, missing=Msg.UPLOAD_MISSING),
)
"""POST Image/BackgroundRemoving/AdCreative (seed 000's table)."""

GENERATION_CHECK_USER = (param("userId", GUID, True), param("imageRenderProcessId", GUID))
BACKGROUND_CHECK_USER = (param("userId", GUID, True), param("imageBackgroundRemoverProcessId", GUID))
CHECK_APPLICATION = (param("applicationId", GUID, True),)
GENERATION_DOWNLOAD = (
    param("applicationId", GUID, True),
    param("taskId", GUID, True),
    param("imageRenderProcessId", GUID, True),
    param("lowResolution", BOOL),
)
BACKGROUND_DOWNLOAD = (
    param("applicationId", GUID, True),
    param("taskId", GUID, True),
    param("imageBackgroundRemoverProcessId", GUID, True),
    param("lowResolution", BOOL),
)

# assumed: the token endpoints' validation is not documented; a JSON model with PascalCase properties.
TOKEN_GENERATE = (prop("applicationId", STRING, True), prop("jwtPrivateKey", STRING, True))
TOKEN_REFRESH = (*TOKEN_GENERATE, prop("refreshToken", STRING, True))


@dataclass(frozen=True)
class Inputs:
    """Bound inputs: text values by lowercased name (every value sent) and file parts by lowercased name."""

    text: Mapping[str, Sequence[str]]
    files: Mapping[str, UploadInfo]


def _list_values(inputs: Inputs, name: str) -> list[str]:
    """A list field's values: repeated parts, indexed names (``taskIds[0]``) and comma-separated ids."""
    lowered = name.lower()
    raw: list[str] = list(inputs.text.get(lowered, ()))
    indexed = sorted(
        (int(match.group(1)), values)
        for key, values in inputs.text.items()
        if (match := re.fullmatch(re.escape(lowered) + r"\[(\d+)\]", key))
    )
    for _, values in indexed:
        raw.extend(values)
    return [item.strip() for value in raw for item in value.split(",") if item.strip()]


def validate(rules: Sequence[Rule], inputs: Inputs) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Bind and validate: (values by wire name, errors by key in rule order).

    A missing optional value binds to None; a GUID binds to its canonical lowercase string.
    """
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}

    def fail(rule: Rule, message: str) -> None:
        errors.setdefault(rule.key, []).append(message)

    def invalid(rule: Rule, raw: str) -> None:
        template = Msg.NOT_VALID if rule.parameter else Msg.NOT_VALID_FOR
        fail(rule, template.format(value=raw, field=rule.display))

    def missing(rule: Rule) -> None:
        if rule.missing:
            errors.setdefault(rule.key, []).extend(rule.missing)
        else:
            fail(rule, Msg.REQUIRED.format(field=rule.display))

    for rule in rules:
        values[rule.name] = None
        if rule.kind == FILE:
            upload = inputs.files.get(rule.name.lower())
            if upload is None:
                if rule.required:
                    missing(rule)
            elif upload.image_type is None:
                fail(rule, Msg.NOT_IMAGE.format(field=rule.display))
            else:
                values[rule.name] = upload
            continue
        if rule.kind == GUID_LIST:
            items = _list_values(inputs, rule.name)
            if not items:
                if rule.required:
                    missing(rule)
                continue
            parsed: list[str] = []
            for item in items:
                guid = parse_guid(item)
                if guid is None:
                    invalid(rule, item)
                elif guid not in parsed:
                    parsed.append(guid)
            values[rule.name] = parsed
            continue
        sent = inputs.text.get(rule.name.lower())
        raw = sent[0] if sent else None
        if raw is None or not raw.strip():
            if rule.required:
                missing(rule)
            continue
        if rule.kind == GUID:
            guid = parse_guid(raw)
            if guid is None:
                invalid(rule, raw)
            values[rule.name] = guid
        elif rule.kind == INT:
            number = parse_int32(raw)
            if number is None:
                invalid(rule, raw)
            elif rule.allowed and number not in rule.allowed:
                allowed = ", ".join(str(v) for v in rule.allowed)
                fail(rule, Msg.NOT_ALLOWED.format(field=rule.display, allowed=allowed))
            else:
                values[rule.name] = number
        elif rule.kind == BOOL:
            flag = parse_bool(raw)
            if flag is None:
                invalid(rule, raw)
            values[rule.name] = flag
        elif rule.kind == COLOR:
            if not HEX_COLOR_RE.fullmatch(raw.strip()):
                fail(rule, Msg.HEX_COLOR.format(field=rule.display))
            values[rule.name] = raw
        else:
            if rule.max_length is not None and utf16_length(raw) > rule.max_length:
                fail(rule, Msg.MAX_LENGTH.format(field=rule.display, max=rule.max_length))
            values[rule.name] = raw
    return values, errors
