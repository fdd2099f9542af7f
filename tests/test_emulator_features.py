"""The emulator's features beyond the seeds, driven over HTTP with a plain aiohttp client (never the SDK):
Upscaler, Face Enhancer, Stock Image, Product Photoshoot, Scan My Website and Ad Text — their routes,
the seeds' authentication, validation and error shapes, progress and downloads, and the assumed answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from test_emulator import (
    JPEG,
    PNG,
    PROGRESS_KEYS,
    UNKNOWN_ID,
    USER_ID,
    Api,
    Reply,
    assert_layered,
    assert_unauthorized,
    assert_validation,
    png_size,
    running,
)

from adcreative_async.testing._endpoints import ENDPOINTS, ENDPOINTS_BY_METHOD
from adcreative_async.testing._images import pdf_bytes

pytestmark = pytest.mark.anyio

OTHER_USER_ID = "30430501-840a-4cbb-a1dd-b00f722bd79f"
NIL = "00000000-0000-0000-0000-000000000000"
PRESET = '[{"tag": "preset", "preset": "white_background"}]'


@dataclass(frozen=True)
class Feature:
    """One render feature as the emulator serves it."""

    segment: str
    name: str  # the emulator's feature name
    process: str  # the process name in "nothing found" messages
    activity: str
    parameter: str  # the process-id query name
    message_type: str

    def route(self, call: str) -> str:
        return f"Image/{self.segment}/{call}"


UPSCALING = Feature(
    "Upscaling",
    "upscaling",
    "ImageUpscalingProcess",
    "image upscaling",
    "imageUpscalerProcessId",
    "ImageUpscalingProgress",
)
FACE = Feature(
    "FaceEnhancing",
    "face_enhancing",
    "ImageFaceEnhancingProcess",
    "image face enhancing",
    "imageFaceEnhancerProcessId",
    "ImageFaceEnhancingProgress",
)
STOCK = Feature(
    "StockGeneration",
    "stock_generation",
    "ImageStockGenerationProcess",
    "image stock generation",
    "imageStockGeneratorProcessId",
    "ImageStockGenerationProgress",
)
PRODUCT = Feature(
    "ProductGeneration",
    "product_generation",
    "ImageProductGenerationProcess",
    "image product generation",
    "imageProductGeneratorProcessId",
    "ImageProductGenerationProgress",
)
FEATURES = [UPSCALING, FACE, STOCK, PRODUCT]
each_feature = pytest.mark.parametrize("feature", FEATURES, ids=[f.segment for f in FEATURES])


async def recommendations(api: Api, user_id: str = USER_ID) -> dict[str, Any]:
    reply = await api.post_form(
        PRODUCT.route("Recommendations"),
        {"applicationId": api.emu.application_id, "userId": user_id},
        {"uploadedImage": JPEG},
    )
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


async def start_form(
    api: Api, feature: Feature, user_id: str = USER_ID
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A valid start form of ``feature`` (Product Photoshoot: after a Recommendations upload)."""
    fields: dict[str, Any] = {"applicationId": api.emu.application_id, "userId": user_id}
    if feature is STOCK:
        return fields | {"renderKind": "1", "userPrompt": "A sunlit cafe"}, {}
    if feature is PRODUCT:
        asset = (await recommendations(api, user_id))["backgroundRemovedImageAssetId"]
        return fields | {"backgroundRemovedImageAssetId": asset, "PromptObjectsString": PRESET}, {}
    return fields, {"uploadedImage": PNG}


async def start(api: Api, feature: Feature, user_id: str = USER_ID) -> dict[str, Any]:
    fields, files = await start_form(api, feature, user_id)
    reply = await api.post_form(feature.route("AdCreative"), fields, files)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def first_task(progress: dict[str, Any]) -> str:
    return str(next(k for k in progress["tasks"] if k != "$id"))


# ----------------------------------------------------------------------------------------- the table


def test_every_documented_route_of_the_features_is_served() -> None:
    served = {(e.method, e.route) for e in ENDPOINTS}
    for feature in FEATURES:
        for call in ("AdCreative", "CheckUserProgress", "CheckApplicationAllProgresses", "Download"):
            method = "POST" if call == "AdCreative" else "GET"
            assert (method, feature.route(call)) in served
    assert {
        ("POST", "Image/ProductGeneration/Recommendations"),
        ("GET", "Image/ProductGeneration/PresetKeys"),
        ("GET", "ScanMyWebsite"),
        ("POST", "Text/Generation/Ads"),
        ("PUT", "Text/Generation/Ads"),
        ("GET", "Text/Generation/UserAd"),
        ("GET", "Text/Generation/ApplicationAllAds"),
        ("GET", "Text/Generation/ProductDescription"),
        ("POST", "Text/Generation/AdStrategies"),
        ("POST", "Text/Generation/AdCopies"),
        ("POST", "Text/Craft/ChangeSentiment"),
        ("POST", "Text/Craft/MakeShorten"),
        ("POST", "Text/Craft/Translate"),
        ("POST", "Text/Craft/CreateVariations"),
    } <= served
    assert len(ENDPOINTS_BY_METHOD) == len(ENDPOINTS)  # one row per (method, route)


def test_the_emulator_stays_independent_of_the_sdk() -> None:
    import adcreative_async.testing as testing

    package = testing.__file__.rsplit("/", 1)[0]
    for name in ("_app", "_features", "_responses", "_validation", "_state", "_images"):
        with open(f"{package}/{name}.py", encoding="utf-8") as source:
            text = source.read()
        assert not re.search(r"adcreative_async\.(_|resources)|from \.\.", text), name


# ------------------------------------------------------------------------------------------ the starts


@each_feature
async def test_starts_answer_the_seeds_progress_object(feature: Feature) -> None:
    async with running() as api:
        body = await start(api, feature)
        expected = ["$id", *PROGRESS_KEYS]
        expected.remove("renderType")  # assumed: no renderType is documented for these features
        if feature is not STOCK:
            expected.remove("renderKind")
        assert list(body) == expected
        assert body["messageType"] == feature.message_type
        assert (body["requestRenderState"], body["progress"], body["isSuccessful"]) == (1, 0, True)
        assert list(body["tasks"].values()) == ["2", 1]
        snapshot = api.emu.process(body["imageRenderProcessId"])
        assert snapshot.feature == feature.name
        assert snapshot.render_type is None


@each_feature
async def test_starts_need_credentials_a_matching_application_and_a_channel(feature: Feature) -> None:
    async with running() as api:
        fields, files = await start_form(api, feature)
        route = feature.route("AdCreative")
        assert_unauthorized(await api.post_form(route, fields, files, headers={}))
        other = fields | {"applicationId": OTHER_USER_ID}
        assert_unauthorized(await api.post_form(route, other, files))
        api.emu.remove_notification_channels()
        app_id = api.emu.application_id
        assert_layered(
            await api.post_form(route, fields, files),
            404,
            {
                "engine: Active": [
                    f"No active notification channel configurations found for Application {app_id}."
                ],
                "business: Active": [
                    f"Error getting active notification channel configurations for Application: {app_id}"
                ],
            },
        )


@pytest.mark.parametrize(
    ("feature", "fields", "files", "errors"),
    [
        (
            UPSCALING,
            {"userId": "x"},
            {},
            {
                "ApplicationId": ["The ApplicationId field is required."],
                "UserId": ["The value 'x' is not valid for UserId."],
                "UploadedImage": [
                    "UploadedImage is required.",
                    "The request does not contain a file. Please make sure to upload the file.",
                ],
            },
        ),
        (
            FACE,
            {"applicationId": "APP", "userId": USER_ID, "ariaRatio": "half", "maxFaceCount": "1.5"},
            {"uploadedImage": b"not an image"},
            {
                "AriaRatio": ["The value 'half' is not valid for AriaRatio."],
                "MaxFaceCount": ["The value '1.5' is not valid for MaxFaceCount."],
                "UploadedImage": [
                    "The UploadedImage field must be a valid image file (png, jpeg, webp or gif)."
                ],
            },
        ),
        (
            STOCK,
            {"applicationId": NIL, "userId": USER_ID, "renderKind": "3", "userPrompt": "😀" * 501},
            {},
            {
                "ApplicationId": ["The ApplicationId must be a non-empty GUID."],
                "RenderKind": [
                    "The field RenderKind must be one of: 0, 1, 2, 4, 8, 16, 31, 32, 64, 128, 256, 512, 992, "
                    "1023, 1024, 2048, 4096, 8192, 16384."
                ],
                "UserPrompt": ["The field UserPrompt must be a string with a maximum length of 1000."],
            },
        ),
        (
            PRODUCT,
            {"applicationId": "APP", "userId": USER_ID},
            {},
            {
                "BackgroundRemovedImageAssetId": ["The BackgroundRemovedImageAssetId field is required."],
                "PromptObjectsString": ["The PromptObjectsString field is required."],
            },
        ),
    ],
    ids=["upscaling", "face", "stock", "product"],
)
async def test_starts_validate_like_background_removal(
    feature: Feature, fields: dict[str, str], files: dict[str, bytes], errors: dict[str, list[str]]
) -> None:
    async with running() as api:
        form = {k: api.emu.application_id if v == "APP" else v for k, v in fields.items()}
        reply = await api.post_form(feature.route("AdCreative"), form, files)
        assert_validation(reply, errors, newtonsoft=True)


async def test_face_enhancing_binds_its_numbers_and_stock_its_style() -> None:
    async with running() as api:
        fields = {"applicationId": api.emu.application_id, "userId": USER_ID, "ariaRatio": "0.25"}
        reply = await api.post_form(
            FACE.route("AdCreative"), fields | {"maxFaceCount": "4"}, {"uploadedImage": PNG}
        )
        assert reply.status == 200
        stock = {"applicationId": api.emu.application_id, "userId": USER_ID, "userPrompt": "p" * 1000}
        social = await api.post_form(
            STOCK.route("AdCreative"), stock | {"renderKind": "31", "imageStyle": "3"}
        )
        body = social.json()
        assert (body["renderKind"], body["totalTaskCount"]) == (31, 5)  # one task per size


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ("not json", "The PromptObjectsString field must be a JSON array of prompt objects."),
        ('{"tag": "custom"}', "The PromptObjectsString field must be a JSON array of prompt objects."),
        ("[]", "The PromptObjectsString field must contain between 1 and 6 prompt objects."),
        (json.dumps([{"tag": "preset", "preset": "p"}] * 7), "must contain between 1 and 6 prompt objects."),
        ('[{"tag": "custom", "prompt": " "}]', "Prompt object 0 must have tag 'custom' with a non-empty"),
        ('[{"tag": "preset", "preset": "a"}, {"tag": "other"}]', "Prompt object 1 must have tag"),
        ('[{"tag": "custom", "prompt": "x"}, 5]', "Prompt object 1 must have tag"),
    ],
)
async def test_prompt_objects_are_checked_as_the_docs_define_them(prompts: str, message: str) -> None:
    async with running() as api:
        fields, _ = await start_form(api, PRODUCT)
        reply = await api.post_form(PRODUCT.route("AdCreative"), fields | {"PromptObjectsString": prompts})
        assert reply.status == 400
        (text,) = reply.json()["errors"]["PromptObjectsString"]
        assert message in text


async def test_a_photoshoot_needs_an_asset_of_the_same_user() -> None:
    async with running() as api:
        fields, _ = await start_form(api, PRODUCT, user_id=OTHER_USER_ID)
        mine = fields | {"userId": USER_ID}
        reply = await api.post_form(PRODUCT.route("AdCreative"), mine)
        asset = fields["backgroundRemovedImageAssetId"]
        assert_layered(
            reply,
            404,
            {
                "engine: AdCreative": [
                    f"Image asset (AssetId: {asset}) was not found for the User: {USER_ID}"
                ],
                "business: AdCreative": [
                    "Not found error occurred while starting image product generation process."
                ],
            },
        )
        six = json.dumps(
            [{"tag": "custom", "prompt": f"scene {n}", "nativeLanguagePrompt": None} for n in range(6)]
        )
        full = await api.post_form(PRODUCT.route("AdCreative"), fields | {"PromptObjectsString": six})
        assert full.json()["totalTaskCount"] == 6  # the docs' six tasks


async def test_recommendations_answer_the_documented_shape() -> None:
    async with running() as api:
        body = await recommendations(api)
        assert list(body) == [
            "productInfo",
            "backgroundRemovedImageAssetId",
            "recommendedPrompts",
            "recommendedPresetIds",
        ]
        assert list(body["productInfo"]) == ["productName", "productDescription"]
        assert len(body["recommendedPrompts"]) == 4
        assert len(body["recommendedPresetIds"]) == 6
        assert body["backgroundRemovedImageAssetId"] in set(api.emu._state.assets)
        missing = await api.post_form(
            PRODUCT.route("Recommendations"), {"applicationId": api.emu.application_id, "userId": USER_ID}
        )
        assert missing.json()["errors"]["UploadedImage"][0] == "UploadedImage is required."
        api.emu.remove_notification_channels()
        assert (await recommendations(api))["backgroundRemovedImageAssetId"]  # no render: no channel needed


async def test_preset_keys_are_categories_in_newtonsoft_wrappers() -> None:
    async with running() as api:
        reply = await api.get(PRODUCT.route("PresetKeys"), {"applicationId": api.emu.application_id})
        body = reply.json()
        assert list(body) == ["$id", "categories"]
        assert list(body["categories"]) == ["$id", "$values"]
        first = body["categories"]["$values"][0]
        assert list(first) == ["$id", "category", "presetKeys"]
        assert "white_background" in first["presetKeys"]["$values"]
        ids = re.findall(r'"\$id": ?"(\d+)"', reply.body.decode())
        assert ids == [str(n) for n in range(1, len(ids) + 1)]  # one numbering through the document
        assert_unauthorized(await api.get(PRODUCT.route("PresetKeys"), {}, headers={}))


# --------------------------------------------------------------------------------- progress and downloads


@each_feature
async def test_progress_routes_filter_by_the_features_parameter_and_find_nothing(feature: Feature) -> None:
    async with running() as api:
        first = await start(api, feature)
        second = await start(api, feature)
        user_route = feature.route("CheckUserProgress")
        listed = (await api.get(user_route, {"userId": USER_ID})).json()
        assert [(v["$id"], v["tasks"]["$id"]) for v in listed["$values"]] == [("2", "3"), ("4", "5")]
        one = {"userId": USER_ID, feature.parameter: second["imageRenderProcessId"]}
        assert len((await api.get(user_route, one)).json()["$values"]) == 1
        other_name = {"userId": USER_ID, "imageRenderProcessId": second["imageRenderProcessId"]}
        assert len((await api.get(user_route, other_name)).json()["$values"]) == 2  # not its parameter
        everything = (
            await api.get(
                feature.route("CheckApplicationAllProgresses"), {"applicationId": api.emu.application_id}
            )
        ).json()
        assert list(everything) == ["$id", "$values"]
        assert {v["imageRenderProcessId"] for v in everything["$values"]} >= {first["imageRenderProcessId"]}
        assert_layered(
            await api.get(user_route, {"userId": OTHER_USER_ID}),
            404,
            {
                "engine: CheckProgress": [
                    f"No running or incomplete {feature.process} was not found for the User: {OTHER_USER_ID} "
                    "or the Application: N/A"
                ],
                "business: CheckUserProgress": [
                    f"Not found error occurred while checking {feature.activity} process for the UserId: "
                    f"{OTHER_USER_ID}"
                ],
            },
        )
        assert_validation(
            await api.get(user_route, {feature.parameter: "x"}),
            {"userId": ["The userId field is required."], feature.parameter: ["The value 'x' is not valid."]},
            newtonsoft=True,
        )


async def test_application_progress_of_a_feature_without_processes_is_404() -> None:
    async with running() as api:
        app_id = api.emu.application_id
        assert_layered(
            await api.get(UPSCALING.route("CheckApplicationAllProgresses"), {"applicationId": app_id}),
            404,
            {
                "engine: CheckProgress": [
                    f"No running or incomplete ImageUpscalingProcess was not found for the User: N/A or the "
                    f"Application: {app_id}"
                ],
                "business: CheckApplicationAllProgresses": [
                    "Not found error occurred while checking image upscaling process for the ApplicationId: "
                    f"{app_id}"
                ],
            },
        )


async def download(api: Api, feature: Feature, process_id: str, task_id: str, **extra: str) -> Reply:
    params = {"applicationId": api.emu.application_id, "taskId": task_id, feature.parameter: process_id}
    return await api.get(feature.route("Download"), params | extra)


@each_feature
async def test_downloads_need_the_features_parameter_and_a_succeeded_task(feature: Feature) -> None:
    async with running() as api:
        started = await start(api, feature)
        process_id, task = started["imageRenderProcessId"], first_task(started)
        function = f"{feature.segment}/Download"
        not_found = {
            f"engine: {function}": ["Image content not found."],
            f"business: {function}": ["Not found error occurred while getting original image content stream"],
        }
        assert_layered(await download(api, feature, process_id, task), 404, not_found)
        api.emu.finish_task(task)
        image = await download(api, feature, process_id, task)
        assert image.headers["Content-Type"] == "image/png"
        assert png_size(image.body) == (64, 64)
        assert api.emu.download_count(task) == 1
        wrong_name = {
            "applicationId": api.emu.application_id,
            "taskId": task,
            "imageRenderProcessId": process_id,
        }
        assert_validation(
            await api.get(feature.route("Download"), wrong_name),
            {feature.parameter: [f"The {feature.parameter} field is required."]},
            newtonsoft=True,
        )


@pytest.mark.parametrize(
    ("value", "media_type", "magic"),
    [
        ("0", "image/png", b"\x89PNG"),
        ("1", "image/jpeg", b"\xff\xd8\xff"),
        ("2", "application/pdf", b"%PDF-1.6"),
    ],
)
async def test_photoshoot_downloads_in_the_documented_formats(
    value: str, media_type: str, magic: bytes
) -> None:
    async with running() as api:
        started = await start(api, PRODUCT)
        process_id, task = started["imageRenderProcessId"], first_task(started)
        api.emu.finish_process(process_id)
        reply = await download(api, PRODUCT, process_id, task, format=value)
        assert reply.headers["Content-Type"] == media_type
        assert reply.body.startswith(magic)
        extension = {"0": "png", "1": "jpg", "2": "pdf"}[value]
        assert reply.headers["Content-Disposition"].startswith(f"attachment; filename={task}.{extension}")
        low = await download(api, PRODUCT, process_id, task, format=value, lowResolution="true")
        assert len(low.body) <= len(reply.body)
        assert_validation(
            await download(api, PRODUCT, process_id, task, format="3"),
            {"format": ["The field format must be one of: 0, 1, 2."]},
            newtonsoft=True,
        )


def test_the_pdf_is_a_valid_pdf_1_6() -> None:
    data = pdf_bytes(64, 48, (255, 0, 0))
    assert data.startswith(b"%PDF-1.6\n")
    assert data.endswith(b"%%EOF\n")
    startxref = int(re.findall(rb"startxref\n(\d+)\n", data)[-1])
    assert data[startxref:].startswith(b"xref\n0 5\n")
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf]) \n", data[startxref:])
    assert len(entries) == 5
    for number, (offset, _, kind) in enumerate(entries[1:], start=1):
        assert kind == b"n"
        assert data[int(offset) :].startswith(f"{number} 0 obj\n".encode())
    assert b"/MediaBox [0 0 64 48]" in data
    stream = re.search(rb"/Length (\d+) >>\nstream\n(.*?)\nendstream", data, re.DOTALL)
    assert stream is not None
    assert int(stream.group(1)) == len(stream.group(2))
    assert stream.group(2) == b"1.000 0.000 0.000 rg 0 0 64 48 re f"


# ------------------------------------------------------------------------------------- scan my website


async def test_scan_my_website_answers_with_assumed_brand_fields() -> None:
    async with running() as api:
        url = "https://www.fireflies.ai/pricing?plan=pro&x=1"
        params = {"applicationId": api.emu.application_id, "userId": USER_ID, "url": url}
        body = (await api.get("ScanMyWebsite", params)).json()
        assert body["url"] == url
        assert body["brandName"] == "Fireflies"
        assert list(body["logoUrls"]) == ["$id", "$values"]
        assert body["logoContent"] is not None  # includeLogoContent: documented default true
        without = (await api.get("ScanMyWebsite", params | {"includeLogoContent": "false"})).json()
        assert without["logoContent"] is None
        (first, second) = api.emu.received_calls("scanmywebsite")
        assert first.query["url"] == (url,)
        assert second.query["includeLogoContent"] == ("false",)


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, {"url": ["The url field is required."]}),
        ({"url": "fireflies.ai"}, {"url": ["The url must be a valid absolute URL."]}),
        ({"url": "ftp://fireflies.ai"}, {"url": ["The url must be a valid absolute URL."]}),
        (
            {"url": "https://a.io", "advanceMode": "maybe"},
            {"advanceMode": ["The value 'maybe' is not valid."]},
        ),
    ],
)
async def test_scan_my_website_validation(params: dict[str, str], errors: dict[str, list[str]]) -> None:
    async with running() as api:
        query = {"applicationId": api.emu.application_id, "userId": USER_ID} | params
        assert_validation(await api.get("ScanMyWebsite", query), errors, newtonsoft=True)
        assert_unauthorized(await api.get("ScanMyWebsite", query, headers={}))


# --------------------------------------------------------------------------------------------- ad text


async def post_json(api: Api, route: str, body: Any, method: str = "POST") -> Reply:
    return await api.request(method, route, json_body=body)


async def test_ads_are_made_listed_and_updated_by_id() -> None:
    async with running() as api:
        ids = {"applicationId": api.emu.application_id, "userId": USER_ID}
        made = (await post_json(api, "Text/Generation/Ads", ids | {"productName": "Fireflies"})).json()
        assert made["$id"] == "1"
        assert made["version"] == 1
        assert made["headlines"]["$values"][0] == "Meet Fireflies"
        assert made["request"] == {"$id": "2", "productName": "Fireflies"}
        other = {"applicationId": api.emu.application_id, "userId": OTHER_USER_ID}
        await post_json(api, "Text/Generation/Ads", other)
        mine = (await api.get("Text/Generation/UserAd", ids)).json()
        assert [ad["adTextId"] for ad in mine["$values"]] == [made["adTextId"]]
        everyone = (
            await api.get("Text/Generation/ApplicationAllAds", {"applicationId": ids["applicationId"]})
        ).json()
        assert len(everyone["$values"]) == 2
        update = ids | {"adTextId": made["adTextId"], "tone": "bold"}
        updated = (await post_json(api, "Text/Generation/Ads", update, "PUT")).json()
        assert (updated["version"], updated["request"]["tone"]) == (2, "bold")
        unknown = await post_json(api, "Text/Generation/Ads", ids | {"adTextId": UNKNOWN_ID}, "PUT")
        assert_layered(
            unknown,
            404,
            {
                "engine: Ads": [f"AdText(AdTextId: {UNKNOWN_ID}) was not found for the User: {USER_ID}"],
                "business: Ads": [f"Not found error occurred while updating ad text for the User: {USER_ID}"],
            },
        )
        assert_validation(
            await post_json(api, "Text/Generation/Ads", ids, "PUT"),
            {"AdTextId": ["The AdTextId field is required."]},
            newtonsoft=True,
        )
        assert (await api.request("DELETE", "Text/Generation/Ads")).headers["Allow"] == "POST, PUT"
        assert api.emu.request_count("Text/Generation/Ads", "PUT") == 3


@pytest.mark.parametrize(
    ("route", "key"),
    [
        ("Text/Generation/AdStrategies", "strategies"),
        ("Text/Generation/AdCopies", "adCopies"),
        ("Text/Craft/ChangeSentiment", "texts"),
        ("Text/Craft/MakeShorten", "texts"),
        ("Text/Craft/Translate", "texts"),
        ("Text/Craft/CreateVariations", "texts"),
    ],
)
async def test_text_calls_take_json_with_the_ids(route: str, key: str) -> None:
    async with running() as api:
        ids = {"applicationId": api.emu.application_id, "userId": USER_ID}
        body = (await post_json(api, route, ids | {"text": "Meet your AI notetaker"})).json()
        assert body["$id"] == "1"
        assert list(body[key]) == ["$id", "$values"]
        assert body[key]["$values"]
        assert_validation(
            await post_json(api, route, {"userId": USER_ID}),
            {"ApplicationId": ["The ApplicationId field is required."]},
            newtonsoft=True,
        )
        form = await api.post_form(route, ids)
        assert form.status == 415
        assert_unauthorized(await api.request("POST", route, json_body=ids, headers={}))
        (received, *_) = api.emu.received_calls(route)
        assert received.json == ids | {"text": "Meet your AI notetaker"}


async def test_product_description_takes_its_inputs_in_the_query() -> None:
    async with running() as api:
        params = {"applicationId": api.emu.application_id, "userId": USER_ID, "productName": "Fireflies"}
        body = (await api.get("Text/Generation/ProductDescription", params)).json()
        assert body["productName"] == "Fireflies"
        assert_validation(
            await api.get("Text/Generation/ProductDescription", {"applicationId": api.emu.application_id}),
            {"userId": ["The userId field is required."]},
            newtonsoft=True,
        )
