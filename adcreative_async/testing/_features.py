"""The emulator's catalogue of features beyond the seeds, and the bodies of their undocumented answers.

Which feature a route belongs to (by its ``Image/<Segment>/`` segment), the query name of each
feature's process id, how many tasks a start makes, Product Photoshoot's prompt objects and presets,
and the answers of Recommendations, PresetKeys, Scan My Website and Ad Text.

What is documented is marked so; everything else is **assumed**, written to look like the API's other
answers (camelCase keys, Newtonsoft ``$id``/``$values``), and kept small and deterministic.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from ._images import color_for, png_bytes
from ._state import (
    FEATURE_BACKGROUND_REMOVAL,
    FEATURE_FACE_ENHANCING,
    FEATURE_GENERATION,
    FEATURE_PRODUCT_GENERATION,
    FEATURE_STOCK_GENERATION,
    FEATURE_UPSCALING,
    AdText,
)

FEATURE_OF_SEGMENT = {
    "Generation": FEATURE_GENERATION,
    "Editing": FEATURE_GENERATION,
    "BackgroundRemoving": FEATURE_BACKGROUND_REMOVAL,
    "Upscaling": FEATURE_UPSCALING,
    "FaceEnhancing": FEATURE_FACE_ENHANCING,
    "StockGeneration": FEATURE_STOCK_GENERATION,
    "ProductGeneration": FEATURE_PRODUCT_GENERATION,
}
"""The feature of an ``Image/<Segment>/…`` route (the segments are documented; some paths are not)."""

PROCESS_PARAMETERS = {
    FEATURE_GENERATION: "imageRenderProcessId",  # seed 001
    FEATURE_BACKGROUND_REMOVAL: "imageBackgroundRemoverProcessId",  # seed 000
    FEATURE_PRODUCT_GENERATION: "imageProductGeneratorProcessId",  # documented for the download
    # assumed: Background Remover's image<Agent>ProcessId pattern
    FEATURE_UPSCALING: "imageUpscalerProcessId",
    FEATURE_FACE_ENHANCING: "imageFaceEnhancerProcessId",
    FEATURE_STOCK_GENERATION: "imageStockGeneratorProcessId",
}
"""The query name of the process id on a feature's CheckUserProgress filter and Download."""

MAX_PROMPT_OBJECTS = 6
"""``PromptObjectsString`` holds at most 6 prompt objects (documented)."""


def feature_of_route(route: str) -> str:
    """The feature of a route under ``/api/v1/`` (``Image/Upscaling/Download`` -> ``"upscaling"``)."""
    parts = route.split("/")
    segment = parts[1] if len(parts) > 2 and parts[0] == "Image" else ""
    return FEATURE_OF_SEGMENT.get(segment, FEATURE_GENERATION)


def size_count(render_kind: int) -> int:
    """How many output sizes a renderKind holds (its bits; 0 = Unset counts as one)."""
    return max(1, bin(render_kind).count("1"))


# ------------------------------------------------------------------------------------ product photoshoot

PRESET_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # assumed: the documented preset keys of the Recommendations example, grouped in the documented
    # category names ("monochrome", "studio", "holiday"); the real catalogue is not documented
    (
        "studio",
        (
            "white_background",
            "light_grey_background",
            "natural_beige_background",
            "gray_shadowy_room_sunlight_streaming_studio",
        ),
    ),
    (
        "monochrome",
        (
            "light_blue_background",
            "white_pink_yellow_gradient_background_monochrome",
            "gray_shadowy_room_sunlight_streaming_neutral",
        ),
    ),
    ("holiday", ("christmas_tree_lights_bokeh", "autumn_leaves_wooden_table")),
)


def preset_keys_body() -> dict[str, Any]:
    """PresetKeys' answer (assumed shape): categories with their preset keys, Newtonsoft-wrapped."""
    ids = iter(range(3, 1000))  # "1": the answer, "2": its category list
    categories = [
        {
            "$id": str(next(ids)),
            "category": name,
            "presetKeys": {"$id": str(next(ids)), "$values": list(keys)},
        }
        for name, keys in PRESET_CATEGORIES
    ]
    return {"$id": "1", "categories": {"$id": "2", "$values": categories}}


def recommendations_body(asset_id: str, filename: str) -> dict[str, Any]:
    """Recommendations' answer in the documented shape (reference §11.2); the values are made up from
    the upload's file name."""
    stem = re.sub(r"[^A-Za-z]+", " ", filename.rsplit(".", 1)[0]).strip().lower() or "product"
    return {
        "productInfo": {
            "productName": stem,
            "productDescription": f"A {stem} photographed on a plain background.",
        },
        "backgroundRemovedImageAssetId": asset_id,
        "recommendedPrompts": [
            f"on a sleek glass surface with a reflection of city skyscrapers, {stem} in focus",
            "on a velvet cushion inside a luxurious studio",
            "on a vibrant graffiti wall in an urban alley",
            "on a marble countertop in soft morning light",
        ],
        "recommendedPresetIds": [key for _, keys in PRESET_CATEGORIES[:2] for key in keys][:6],
    }


def parse_prompt_objects(text: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """``PromptObjectsString`` read as the docs define it: (objects, None) or (None, what is wrong).

    The messages come from ``_responses.Msg`` keys: ``"json"``, ``"count"`` or ``"item:<index>"``.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return None, "json"
    if not isinstance(value, list):
        return None, "json"
    if not 1 <= len(value) <= MAX_PROMPT_OBJECTS:
        return None, "count"
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            return None, f"item:{index}"
        tag = item.get("tag")
        key = {"custom": "prompt", "preset": "preset"}.get(tag) if isinstance(tag, str) else None
        text_value = item.get(key) if key else None
        if not isinstance(text_value, str) or not text_value.strip():
            return None, f"item:{index}"
    return value, None


# ------------------------------------------------------------------------------------- scan my website


def scan_body(url: str, include_logo: bool, advanced: bool) -> dict[str, Any]:
    """Scan My Website's answer. assumed: no field of it is documented; these keys are named after what
    the docs say the scan extracts (brand description, name and type; logo URLs and raw SVG; main
    colours and a full palette)."""
    host = re.sub(r"^[a-z]+://", "", url, flags=re.IGNORECASE).split("/")[0].split("?")[0].split("@")[-1]
    host = host.split(":")[0].lower()
    name = (host.removeprefix("www.").split(".")[0] or "brand").title()
    red, green, blue = color_for(host)
    main = [f"#{red:02x}{green:02x}{blue:02x}", "#1f2937"]
    palette = [*main, "#ffffff", "#f3f4f6", f"#{blue:02x}{red:02x}{green:02x}", "#111827"]
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" fill="{main[0]}"/></svg>'
    )
    logo = base64.b64encode(png_bytes(16, 16, (red, green, blue))).decode("ascii") if include_logo else None
    return {
        "$id": "1",
        "url": url,
        "brandName": name,
        "brandDescription": f"{name} is the brand found at {host}.",
        "brandType": "Technology" if advanced else "Website",
        "logoUrls": {"$id": "2", "$values": [f"https://{host}/logo.svg", f"https://{host}/favicon.png"]},
        "logoSvg": svg,
        "logoContent": logo,
        "mainColors": {"$id": "3", "$values": main},
        "colorPalette": {"$id": "4", "$values": palette},
        "advanceMode": advanced,
    }


# ---------------------------------------------------------------------------------------------- ad text


def _listed(values: list[Any], ids: Any) -> dict[str, Any]:
    return {"$id": str(next(ids)), "$values": values}


def _topic(request: Mapping[str, object]) -> str:
    for key in ("productName", "product", "name", "text", "description"):
        value = request.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "your product"


def ad_text_object(ad: AdText, ids: Any) -> dict[str, Any]:
    """One ad text (assumed shape): its ids, version, the request's fields and generated texts."""
    topic = _topic(ad.request)
    suffix = "" if ad.version == 1 else f" (v{ad.version})"
    return {
        "$id": str(next(ids)),
        "adTextId": ad.ad_text_id,
        "applicationId": ad.application_id,
        "userId": ad.user_id,
        "version": ad.version,
        "createdAt": ad.created_at,
        "request": {"$id": str(next(ids)), **ad.request},
        "headlines": _listed([f"Meet {topic}{suffix}", f"{topic}: made for you{suffix}"], ids),
        "descriptions": _listed([f"Discover what {topic} can do for you today.{suffix}"], ids),
        "callToActions": _listed(["Learn More", "Shop Now"], ids),
    }


def ad_text_body(ad: AdText) -> dict[str, Any]:
    """POST/PUT Text/Generation/Ads answer (assumed shape)."""
    return ad_text_object(ad, iter(range(1, 10_000)))


def ad_text_list_body(ads: list[AdText]) -> dict[str, Any]:
    """UserAd / ApplicationAllAds answer (assumed shape): a Newtonsoft-wrapped list."""
    ids = iter(range(1, 1_000_000))
    wrapper: dict[str, Any] = {"$id": str(next(ids))}
    wrapper["$values"] = [ad_text_object(ad, ids) for ad in ads]
    return wrapper


def text_operation_body(operation: str, request: Mapping[str, object]) -> dict[str, Any]:
    """The answer of ProductDescription, AdStrategies, AdCopies and the Craft calls (assumed shapes)."""
    ids = iter(range(2, 10_000))
    topic = _topic(request)
    text = request.get("text") if isinstance(request.get("text"), str) else topic
    assert isinstance(text, str)
    body: dict[str, Any] = {"$id": "1"}
    if operation == "ProductDescription":
        body |= {"productName": topic, "productDescription": f"{topic}: a product people love to use."}
    elif operation == "AdStrategies":
        frameworks = ("AIDA", "Before-After-Bridge", "Problem-Agitate-Solve")
        body["strategies"] = _listed(
            [
                {
                    "$id": str(next(ids)),
                    "framework": f,
                    "title": f"{f} for {topic}",
                    "summary": f"Lead with {topic}.",
                }
                for f in frameworks
            ],
            ids,
        )
    elif operation == "AdCopies":
        body["adCopies"] = _listed(
            [
                {
                    "$id": str(next(ids)),
                    "headline": f"Meet {topic}",
                    "primaryText": f"{topic} makes every day easier.",
                    "description": f"Try {topic} today.",
                    "callToAction": "Learn More",
                }
                for _ in range(2)
            ],
            ids,
        )
    else:
        words = text.split()
        texts = {
            "ChangeSentiment": [f"{text} — and you will love it!"],
            "MakeShorten": [" ".join(words[: max(1, len(words) // 2)])],
            "Translate": [f"[{request.get('targetLanguage', 'de')}] {text}"],
            "CreateVariations": [f"Variation {n}: {text}" for n in (1, 2, 3)],
        }[operation]
        body |= {"originalText": text, "texts": _listed(texts, ids)}
    return body
