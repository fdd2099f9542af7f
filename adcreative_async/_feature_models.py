"""Models of the features whose JSON the docs show only in part: tolerant by construction.

* :func:`clean_json` turns any decoded body into plain data: Newtonsoft metadata (``$id``) dropped,
  ``{"$values": [...]}`` wrappers unwrapped, ``{"$ref": "n"}`` resolved to the object it points at.
  Calls whose response shape is not documented (Ad Text, Product Photoshoot presets) return that
  plain data (:data:`JSONValue`).
* :class:`ProductRecommendations` is documented (reference §11.2): typed, strictly where required.
* :class:`WebsiteScan` (Scan My Website) has no documented field names: its typed fields are
  **assumed** names, each read on its own and left empty when absent or of another type; the whole
  body is always in :attr:`WebsiteScan.raw`. It never fails on an unknown shape.
* :class:`CustomPrompt` / :class:`PresetPrompt` are Product Photoshoot's prompt objects (reference
  §11.4), serialised by :func:`encode_prompt_objects` into the documented ``PromptObjectsString``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import msgspec

from ._models import _Wire

__all__ = [
    "MAX_PROMPT_OBJECTS",
    "CustomPrompt",
    "JSONValue",
    "PresetPrompt",
    "ProductInfo",
    "ProductRecommendations",
    "PromptObject",
    "WebsiteScan",
    "clean_json",
    "encode_prompt_objects",
]

#: Plain JSON data: what calls with undocumented response shapes return (``$`` metadata removed).
JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

#: ``PromptObjectsString`` holds at most this many prompt objects (reference §11.4, documented).
MAX_PROMPT_OBJECTS = 6

_ANY_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def clean_json(value: Any) -> JSONValue:
    """``value`` (decoded JSON) without Newtonsoft's reference metadata.

    ``$id`` keys are dropped, ``{"$id", "$values"}`` becomes its list, ``{"$ref": "n"}`` becomes
    the (cleaned) object that carried ``"$id": "n"`` earlier in the document (Newtonsoft writes the
    object first); an unresolvable ``$ref`` becomes None. Other ``$``-keys are dropped too.
    """
    seen: dict[str, JSONValue] = {}

    def walk(item: Any) -> JSONValue:
        if isinstance(item, list):
            return [walk(v) for v in item]
        if not isinstance(item, dict):
            return item  # type: ignore[no-any-return]
        if "$ref" in item:
            return seen.get(str(item["$ref"]))
        ident = item.get("$id")
        result: JSONValue
        if "$values" in item and isinstance(item["$values"], list):
            result = [walk(v) for v in item["$values"]]
        else:
            result = {str(k): walk(v) for k, v in item.items() if not str(k).startswith("$")}
        if ident is not None:
            seen[str(ident)] = result
        return result

    return walk(value)


def decode_clean(body: bytes) -> JSONValue:
    """Decode a JSON body and :func:`clean_json` it (an empty body is None).

    Raises:
        msgspec.DecodeError: the body is not JSON (the transport makes it an UnexpectedResponseError).
    """
    if not body.strip():
        return None
    return clean_json(_ANY_DECODER.decode(body))


# ------------------------------------------------------------------------------------ product photoshoot


class CustomPrompt(msgspec.Struct, frozen=True, kw_only=True, tag_field="tag", tag="custom", rename="camel"):
    """A free-form Product Photoshoot prompt: ``{"tag": "custom", "prompt", "nativeLanguagePrompt"}``.

    Attributes:
        prompt: the scene, e.g. ``"on a sleek glass surface with a reflection of city skyscrapers"``.
        native_language_prompt: the same prompt in the user's language, if any (sent as null when
            not given, as the docs' example shows).
    """

    prompt: str
    native_language_prompt: str | None = None


class PresetPrompt(msgspec.Struct, frozen=True, kw_only=True, tag_field="tag", tag="preset", rename="camel"):
    """A Product Photoshoot preset: ``{"tag": "preset", "preset": "<preset key>"}``.

    Attributes:
        preset: a preset key (from ``preset_keys()`` or ``recommendations().recommended_preset_ids``),
            e.g. ``"white_background"``.
    """

    preset: str


#: One prompt object of ``PromptObjectsString``.
PromptObject: TypeAlias = CustomPrompt | PresetPrompt

_PROMPTS_ENCODER = msgspec.json.Encoder()


def encode_prompt_objects(prompts: Sequence[PromptObject]) -> str:
    """The documented ``PromptObjectsString``: the prompt objects as a JSON array, serialised as a string."""
    return _PROMPTS_ENCODER.encode(list(prompts)).decode("utf-8")


class ProductInfo(_Wire, frozen=True, kw_only=True, rename="camel"):
    """What Recommendations recognised in the photo (reference §11.2).

    Attributes:
        product_name: e.g. ``"headphones"``.
        product_description: a sentence describing the product.
    """

    product_name: str = ""
    product_description: str = ""


class ProductRecommendations(_Wire, frozen=True, kw_only=True, rename="camel"):
    """The answer of Product Photoshoot's Recommendations upload (documented, reference §11.2).

    Attributes:
        background_removed_image_asset_id: the id of the product photo without its background; pass
            it to ``client.product_photoshoot.generate()``.
        product_info: the product's name and description.
        recommended_prompts: free-form scene prompts (use them as :class:`CustomPrompt`).
        recommended_preset_ids: preset keys that match the product (use them as :class:`PresetPrompt`).
    """

    background_removed_image_asset_id: str
    product_info: ProductInfo = msgspec.field(default_factory=ProductInfo)
    recommended_prompts: list[str] = msgspec.field(default_factory=list)
    recommended_preset_ids: list[str] = msgspec.field(default_factory=list)

    def prompt_objects(self, limit: int = MAX_PROMPT_OBJECTS) -> list[PromptObject]:
        """The recommended presets, then the recommended prompts, as prompt objects (at most ``limit``)."""
        objects: list[PromptObject] = [PresetPrompt(preset=p) for p in self.recommended_preset_ids]
        objects += [CustomPrompt(prompt=p) for p in self.recommended_prompts]
        return objects[: max(0, limit)]


def decode_recommendations(body: bytes) -> ProductRecommendations:
    """The Recommendations answer, ``$`` metadata tolerated anywhere.

    Raises:
        msgspec.DecodeError: not JSON, or the documented ``backgroundRemovedImageAssetId`` is missing.
    """
    return msgspec.convert(decode_clean(body), ProductRecommendations, strict=False)


# ---------------------------------------------------------------------------------------- scan my website


class WebsiteScan(msgspec.Struct, frozen=True, kw_only=True):
    """What Scan My Website found on a site. **Its field names are not documented.**

    The docs say the scan extracts the brand's description, name and type, logo URLs and raw SVG, the
    main website colours and a full palette; the attributes below read those from **assumed** keys
    (see :data:`WEBSITE_SCAN_FIELDS`), each on its own: an absent key or a value of another type leaves
    that attribute empty, never an error. :attr:`raw` always holds the whole body (``$`` metadata
    removed), whatever its shape.

    Attributes:
        raw: the decoded body (a dict for an object answer; ``{"value": ...}`` wraps anything else).
        brand_name, brand_description, brand_type: text, or None.
        logo_urls: URLs of the logo(s).
        logo_svg: the logo's raw SVG, or None.
        logo_content: the logo's bytes (asked for with ``include_logo_content``), or None.
        main_colors, color_palette: colours as the server writes them (e.g. ``"#1f2937"``).
    """

    raw: dict[str, Any]
    brand_name: str | None = None
    brand_description: str | None = None
    brand_type: str | None = None
    logo_urls: list[str] = msgspec.field(default_factory=list)
    logo_svg: str | None = None
    logo_content: bytes | None = None
    main_colors: list[str] = msgspec.field(default_factory=list)
    color_palette: list[str] = msgspec.field(default_factory=list)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> WebsiteScan:
        """Read the assumed fields of a decoded (and cleaned) body, each on its own."""
        return cls(
            raw=dict(raw),
            brand_name=_text(raw.get("brandName")),
            brand_description=_text(raw.get("brandDescription")),
            brand_type=_text(raw.get("brandType")),
            logo_urls=_texts(raw.get("logoUrls")),
            logo_svg=_text(raw.get("logoSvg")),
            logo_content=_base64(raw.get("logoContent")),
            main_colors=_texts(raw.get("mainColors")),
            color_palette=_texts(raw.get("colorPalette")),
        )

    def __repr__(self) -> str:
        return (
            f"WebsiteScan(brand_name={self.brand_name!r}, logo_urls={len(self.logo_urls)}, "
            f"main_colors={self.main_colors!r}, keys={sorted(self.raw)!r})"
        )


#: assumed: Scan My Website's response field names are not documented (reference §8.1: "Response JSON
#: field names: not available"). :class:`WebsiteScan` reads these camelCase keys, named after what the
#: docs say the scan extracts; :attr:`WebsiteScan.raw` keeps every key the server really sends.
WEBSITE_SCAN_FIELDS: tuple[str, ...] = (
    "brandName",
    "brandDescription",
    "brandType",
    "logoUrls",
    "logoSvg",
    "logoContent",
    "mainColors",
    "colorPalette",
)


def _text(value: JSONValue) -> str | None:
    return value if isinstance(value, str) else None


def _texts(value: JSONValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _base64(value: JSONValue) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None


def decode_website_scan(body: bytes) -> WebsiteScan:
    """A :class:`WebsiteScan` from any JSON body (only a body that is not JSON at all is an error).

    Raises:
        msgspec.DecodeError: the body is not JSON.
    """
    data = decode_clean(body)
    return WebsiteScan.from_raw(data if isinstance(data, dict) else {"value": data})
