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
FLOAT = "float"
URL = "url"

_HEX = "[0-9a-fA-F]"
_GUID_D = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_GUID_RE = re.compile(rf"(?:{_GUID_D}|{_HEX}{{32}}|\{{{_GUID_D}\}}|\({_GUID_D}\))")
"""Guid.TryParse's formats D, N, B and P."""
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
HEX_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
"""assumed: the seed's "custom Color attribute" is not specified; #RGB and #RRGGBB pass."""

RENDER_KINDS = (0, 1, 2, 4, 8, 16, 31, 32, 64, 128, 256, 512, 992, 1023)  # seed
RENDER_TYPES = (0, 1, 2, 4, 8, 16, 19, 32, 64, 100, 127, 128)  # seed
DOCUMENTED_RENDER_KINDS = (*RENDER_KINDS, 1024, 2048, 4096, 8192, 16384)
"""Every RenderKind value of the Enums page (reference §3.1). assumed: Stock Image accepts them all."""
PHOTOSHOOT_FORMATS = (0, 1, 2)
"""Product Photoshoot download ``format``: 0 PNG, 1 JPEG, 2 PDF 1.6 (documented)."""


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


def parse_float(text: str) -> float | None:
    """A finite floating-point number as .NET parses one with the invariant culture, or None."""
    text = text.strip()
    return float(text) if _FLOAT_RE.fullmatch(text) else None


def is_absolute_url(text: str) -> bool:
    """Whether ``text`` is an absolute http(s) URL (what ``Uri.TryCreate(..., UriKind.Absolute)`` and a
    scheme check accept, without whitespace)."""
    text = text.strip()
    match = re.fullmatch(
        r"(?i)(https?)://([^/?#\s@]+@)?([^/?#\s:]+|\[[0-9a-fA-F:.]+\])(:\d+)?([/?#]\S*)?", text
    )
    return match is not None


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
        non_empty: A GUID must not be all zeros (documented for Stock Image).
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
    non_empty: bool = False


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def prop(name: str, kind: str, required: bool = False, **extra: Any) -> Rule:
    """A model property: errors keyed and named in PascalCase."""
    return Rule(name, kind, required, _pascal(name), _pascal(name), **extra)


def named_prop(name: str, kind: str, required: bool = False, **extra: Any) -> Rule:
    """A model property with an explicit form name: errors keyed by the wire name, named in PascalCase."""
    return Rule(name, kind, required, name, _pascal(name), **extra)


def param(name: str, kind: str, required: bool = False, **extra: Any) -> Rule:
    """An action parameter (query string): errors keyed and named by the parameter name."""
    return Rule(name, kind, required, name, name, parameter=True, **extra)


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

# -- the features documented after the seeds (reference §5-§11) ----------------------------------------
# Documented: the field names and rules given below; assumed: everything the docs do not show (error
# keys follow the seeds' conventions: form models PascalCase, query parameters by their name).

UPSCALING_START = (
    prop("applicationId", GUID, True),
    prop("userId", GUID, True),
    prop("uploadedImage", FILE, True, missing=Msg.UPLOAD_MISSING),
)
"""POST Image/Upscaling/AdCreative (reference §5.1; the other fields are not documented)."""

FACE_ENHANCING_START = (
    prop("applicationId", GUID, True),
    prop("userId", GUID, True),
    prop("ariaRatio", FLOAT),  # documented default 0.5
    prop("maxFaceCount", INT),  # documented default 10
    prop("uploadedImage", FILE, True, missing=Msg.UPLOAD_MISSING),
)
"""POST Image/FaceEnhancing/AdCreative (reference §7.1)."""

STOCK_GENERATION_START = (
    prop("applicationId", GUID, True, non_empty=True),
    prop("userId", GUID, True, non_empty=True),
    prop("renderKind", INT, True, allowed=DOCUMENTED_RENDER_KINDS),
    prop("imageStyle", INT),  # documented default 3 = Photorealistic
    prop("userPrompt", STRING, True, max_length=1000),
    prop("customStyleText", STRING),
)
"""POST Image/StockGeneration/AdCreative (reference §9.1; style images and LoRA fields not documented)."""

PRODUCT_RECOMMENDATIONS = (
    prop("applicationId", GUID, True),
    prop("userId", GUID, True),
    prop("uploadedImage", FILE, True, missing=Msg.UPLOAD_MISSING),
)
"""POST Image/ProductGeneration/Recommendations (assumed: only "it takes the product photo" is documented)."""

PRODUCT_START = (
    prop("applicationId", GUID, True),
    prop("userId", GUID, True),
    prop("backgroundRemovedImageAssetId", GUID, True),
    prop("promptObjectsString", STRING, True),
)
"""POST Image/ProductGeneration/AdCreative (``PromptObjectsString`` documented, the rest assumed)."""

PRODUCT_PRESETS = (param("applicationId", GUID), param("userId", GUID))
"""GET Image/ProductGeneration/PresetKeys (assumed: its query is not documented)."""

UPSCALING_CHECK_USER = (param("userId", GUID, True), param("imageUpscalerProcessId", GUID))
FACE_ENHANCING_CHECK_USER = (param("userId", GUID, True), param("imageFaceEnhancerProcessId", GUID))
STOCK_GENERATION_CHECK_USER = (param("userId", GUID, True), param("imageStockGeneratorProcessId", GUID))
PRODUCT_CHECK_USER = (param("userId", GUID, True), param("imageProductGeneratorProcessId", GUID))


def _download(process_parameter: str, *more: Rule) -> tuple[Rule, ...]:
    return (
        param("applicationId", GUID, True),
        param("taskId", GUID, True),
        param(process_parameter, GUID, True),
        param("lowResolution", BOOL),
        *more,
    )


UPSCALING_DOWNLOAD = _download("imageUpscalerProcessId")
FACE_ENHANCING_DOWNLOAD = _download("imageFaceEnhancerProcessId")
STOCK_GENERATION_DOWNLOAD = _download("imageStockGeneratorProcessId")
PRODUCT_DOWNLOAD = _download(
    "imageProductGeneratorProcessId", param("format", INT, allowed=PHOTOSHOOT_FORMATS)
)
"""Product Photoshoot's download: ``imageProductGeneratorProcessId``, ``taskId``, ``lowResolution`` and
``format`` documented (``applicationId`` assumed, as every seed download has it)."""

SCAN_MY_WEBSITE = (
    param("applicationId", GUID, True),
    param("userId", GUID, True),
    param("url", URL, True),
    param("includeLogoContent", BOOL),
    param("advanceMode", BOOL),
)
"""GET ScanMyWebsite (reference §8.1)."""

TEXT_IDS = (prop("applicationId", GUID, True), prop("userId", GUID, True))
"""assumed: the Ad Text JSON bodies' fields are not documented; the emulator requires the two ids."""
TEXT_UPDATE = (*TEXT_IDS, prop("adTextId", GUID, True))
"""assumed: PUT Text/Generation/Ads names the ad to update ``adTextId``."""
TEXT_USER_QUERY = (param("applicationId", GUID, True), param("userId", GUID, True))
TEXT_APPLICATION_QUERY = (param("applicationId", GUID, True),)

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
            elif rule.non_empty and guid == str(uuid.UUID(int=0)):
                fail(rule, Msg.NON_EMPTY_GUID.format(field=rule.display))
            values[rule.name] = guid
        elif rule.kind == FLOAT:
            number = parse_float(raw)
            if number is None:
                invalid(rule, raw)
            values[rule.name] = number
        elif rule.kind == URL:
            if not is_absolute_url(raw):
                fail(rule, Msg.ABSOLUTE_URL.format(field=rule.display))
            values[rule.name] = raw.strip()
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
