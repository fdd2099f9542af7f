"""Declarative request fields: validation before any request is sent, and wire serialisation.

A feature describes each form or query field once (:class:`FieldSpec`: wire name, Python parameter,
kind, rules); :func:`validate` checks the caller's values against the table and returns wire-ready
values. The SDK serialises every value itself (:func:`wire_text`): GUIDs as canonical strings, booleans
as ``true``/``false``, enums as their integer, unset values omitted. yarl would send a UUID as a 128-bit
integer and refuses booleans; aiohttp's FormData would send ``None`` as the text "None".
"""

from __future__ import annotations

import enum
import math
import re
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidRequestError

__all__ = ["FieldKind", "FieldSpec", "canonical_guid", "utf16_length", "validate", "wire_text"]


class FieldKind(enum.Enum):
    """How a field is validated and serialised."""

    GUID = "GUID"
    GUID_LIST = "list of GUIDs"
    TEXT = "text"
    COLOUR = "hex colour"
    CHOICE = "integer from a list"
    INT = "integer"
    NUMBER = "number"
    BOOL = "boolean"
    IMAGE = "image file"
    URL = "absolute URL"


@dataclass(frozen=True)
class FieldSpec:
    """One documented field of a request.

    Attributes:
        wire: the name on the wire, exactly as the docs spell it (``"color1Hex"``).
        param: the Python parameter (``"color1_hex"``).
        kind: how it is validated and serialised.
        required: the docs mark it required (checked even when value checks are relaxed).
        max_length: maximum length in UTF-16 code units, as the .NET server counts.
        choices: the integer values the docs allow (CHOICE fields).
        choices_doc: what the choices are, for error messages.
        non_empty_guid: refuse the all-zero GUID (documented for some features).
    """

    wire: str
    param: str
    kind: FieldKind
    required: bool = False
    max_length: int | None = None
    choices: frozenset[int] | None = None
    choices_doc: str = ""
    non_empty_guid: bool = False


#: assumed: the server's "custom Color attribute" is not documented; the docs' examples are "#FFFFFF"
#: and "#fc2c2c". Accepted here: "#" then 3 or 6 hex digits (CSS short and long forms).
HEX_COLOUR = re.compile(r"#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})")

_NIL_GUID = "00000000-0000-0000-0000-000000000000"


def utf16_length(text: str) -> int:
    """Length as .NET counts it: UTF-16 code units (a character outside the BMP, e.g. an emoji, is 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


#: A GUID in its canonical form (lower case, 36 characters): taken as it is, without a ``uuid.UUID``.
_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_guid(value: object, param: str, wire: str | None = None) -> str:
    """``value`` (a ``uuid.UUID`` or a GUID string, with or without braces or ``urn:uuid:``) as the
    canonical lowercase 36-character form.

    Raises:
        InvalidRequestError: naming ``param`` when the value is not a GUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if _CANONICAL_GUID.fullmatch(value):  # already canonical (ids the SDK itself handed out)
            return value
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            pass
    raise InvalidRequestError.for_field(
        param,
        f"must be a GUID such as '2581c740-8e9d-4d63-96bc-5665bb9a646b', got {_show(value)}",
        wire=wire,
    )


def wire_text(value: object) -> str:
    """The text the server expects for one scalar value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    return str(value)


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(spec: FieldSpec, rule: str) -> InvalidRequestError:
    return InvalidRequestError.for_field(spec.param, rule, wire=spec.wire)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_text(spec: FieldSpec, value: object, strict: bool) -> str:
    if not isinstance(value, str):
        raise _fail(spec, f"must be a string, got {type(value).__name__}")
    if strict and spec.max_length is not None:
        length = utf16_length(value)
        if length > spec.max_length:
            raise _fail(
                spec,
                f"must be at most {spec.max_length} characters (counted in UTF-16 code units, as the "
                f"server counts), got {length}",
            )
    return value


def _check_int(spec: FieldSpec, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(spec, f"must be an integer, got {_show(value)}")
    return int(value)


def _check_one(spec: FieldSpec, value: object, strict: bool) -> object:
    kind = spec.kind
    if kind is FieldKind.GUID:
        guid = canonical_guid(value, spec.param, spec.wire)
        if spec.non_empty_guid and strict and guid == _NIL_GUID:
            raise _fail(spec, "must be a non-empty GUID (not all zeros)")
        return guid
    if kind is FieldKind.GUID_LIST:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise _fail(spec, f"must be a list of GUIDs, got {_show(value)}")
        items = [canonical_guid(v, spec.param, spec.wire) for v in value]
        if not items:
            raise _fail(spec, "must list at least one GUID")
        return list(dict.fromkeys(items))
    if kind is FieldKind.TEXT:
        return _check_text(spec, value, strict)
    if kind is FieldKind.COLOUR:
        text = _check_text(spec, value, strict)
        if strict and not HEX_COLOUR.fullmatch(text):
            raise _fail(spec, f"must be a hex colour such as '#FFFFFF' or '#fc2c2c', got {_show(text)}")
        return text
    if kind is FieldKind.CHOICE:
        number = _check_int(spec, value)
        if strict and spec.choices is not None and number not in spec.choices:
            allowed = ", ".join(str(c) for c in sorted(spec.choices))
            raise _fail(
                spec,
                f"must be one of {allowed}{' (' + spec.choices_doc + ')' if spec.choices_doc else ''}, "
                f"got {number}; pass strict_validation=False to the client to send values the SDK "
                "does not know yet",
            )
        return number
    if kind is FieldKind.INT:
        return _check_int(spec, value)
    if kind is FieldKind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(spec, f"must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise _fail(spec, f"must be a finite number, got {_show(value)}")
        return value
    if kind is FieldKind.BOOL:
        if not isinstance(value, bool):
            raise _fail(spec, f"must be True or False, got {_show(value)}")
        return value
    if kind is FieldKind.URL:
        return _check_url(spec, value, strict)
    # IMAGE values are checked by the upload module; here they pass through.
    return value


def _check_url(spec: FieldSpec, value: object, strict: bool) -> str:
    """An absolute http(s) URL, sent as given (the query encoder percent-encodes it)."""
    text = _check_text(spec, value, strict).strip()
    if not strict:
        return text
    if any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in text):
        raise _fail(spec, f"must not contain spaces or control characters (encode them), got {_show(text)}")
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme.lower() not in ("http", "https"):
        raise _fail(
            spec, f"must be an absolute http(s) URL such as 'https://fireflies.ai', got {_show(text)}"
        )
    return text


def validate(
    specs: Iterable[FieldSpec], values: Mapping[str, Any], *, strict: bool = True
) -> dict[str, object]:
    """Check ``values`` (keyed by Python parameter) against ``specs``; return wire name -> value.

    Required fields must be present and, for text, not blank (ASP.NET's [Required] refuses empty and
    whitespace-only strings). Unset optional fields are omitted. With ``strict=False`` the value rules
    (lengths, colours, allowed integers, non-empty GUIDs) are skipped for values the SDK does not know
    yet; presence and GUID syntax are always checked.

    Raises:
        InvalidRequestError: naming the parameter, its wire name and the rule.
    """
    out: dict[str, object] = {}
    for spec in specs:
        value = values.get(spec.param)
        if _is_missing(value):
            if spec.required:
                raise _fail(spec, "is required")
            continue
        out[spec.wire] = _check_one(spec, value, strict)
    return out
