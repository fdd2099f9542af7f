"""The features documented only in part, through the SDK against the emulator (and a scripted server
for odd answers): Upscaler, Face Enhancer, Stock Image, Product Photoshoot, Scan My Website, Ad Text.

For each: the success path (fields on the wire, typed answers, waiting, downloads), its documented
errors, the SDK's validation before sending, and the overrides of assumed routes and names.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from helpers import FAST_POLLS, client_of
from miniapi import MiniAPI

from adcreative_async import (
    AdCreativeClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CustomPrompt,
    DownloadFormat,
    ImageStyle,
    InvalidRequestError,
    NoActiveNotificationChannelError,
    NotFoundError,
    PresetPrompt,
    ProductRecommendations,
    PromptObject,
    RenderJob,
    RenderKind,
    RenderState,
    UnexpectedResponseError,
    WebsiteScan,
)
from adcreative_async._feature_models import clean_json, decode_recommendations, decode_website_scan
from adcreative_async._filewrite import IncompleteDownloadError, Received
from adcreative_async._transport import TOKEN_RENEWALS, Request, Response
from adcreative_async.resources.scan_my_website import SCAN_READ_TIMEOUT
from adcreative_async.testing import Emulator, sample_image
from adcreative_async.testing._images import pdf_bytes

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
OTHER_USER = "30430501-840a-4cbb-a1dd-b00f722bd79f"
NIL = "00000000-0000-0000-0000-000000000000"
PNG = sample_image("png", (16, 16))
JPEG = sample_image("jpeg", (16, 16))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=11) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with client_of(emulator, USER) as c:
        yield c


# ------------------------------------------------------------------------------------ the render features


async def start_upscaler(client: AdCreativeClient) -> RenderJob:
    return await client.upscaler.upscale(PNG)


async def start_face_enhancer(client: AdCreativeClient) -> RenderJob:
    return await client.face_enhancer.enhance(JPEG, aria_ratio=0.25, max_face_count=3)


async def start_stock_images(client: AdCreativeClient) -> RenderJob:
    return await client.stock_images.generate("A barista pouring latte art", render_kind=RenderKind.POST)


async def start_product_photoshoot(client: AdCreativeClient) -> RenderJob:
    recommendations = await client.product_photoshoot.recommendations(JPEG)
    return await client.product_photoshoot.generate(
        recommendations.background_removed_image_asset_id,
        [PresetPrompt(preset="white_background"), CustomPrompt(prompt="on a marble table")],
    )


@dataclass(frozen=True)
class RenderCase:
    """One render feature: how to start it and what the emulator must have received."""

    name: str
    segment: str
    message_type: str
    start: Callable[[AdCreativeClient], Awaitable[RenderJob]]
    fields: frozenset[str]
    files: frozenset[str]
    tasks: int

    @property
    def start_route(self) -> str:
        return f"Image/{self.segment}/AdCreative"

    @property
    def progress_route(self) -> str:
        return f"Image/{self.segment}/CheckUserProgress"


IDS = frozenset({"applicationId", "userId"})
CASES = [
    RenderCase(
        "upscaler",
        "Upscaling",
        "ImageUpscalingProgress",
        start_upscaler,
        IDS,
        frozenset({"uploadedImage"}),
        1,
    ),
    RenderCase(
        "face_enhancer",
        "FaceEnhancing",
        "ImageFaceEnhancingProgress",
        start_face_enhancer,
        IDS | {"ariaRatio", "maxFaceCount"},
        frozenset({"uploadedImage"}),
        1,
    ),
    RenderCase(
        "stock_images",
        "StockGeneration",
        "ImageStockGenerationProgress",
        start_stock_images,
        IDS | {"renderKind", "imageStyle", "userPrompt"},
        frozenset(),
        1,
    ),
    RenderCase(
        "product_photoshoot",
        "ProductGeneration",
        "ImageProductGenerationProgress",
        start_product_photoshoot,
        IDS | {"backgroundRemovedImageAssetId", "PromptObjectsString"},
        frozenset(),
        2,
    ),
]
by_name = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


@by_name
async def test_start_sends_the_documented_fields_and_returns_a_job(
    emulator: Emulator, client: AdCreativeClient, case: RenderCase
) -> None:
    job = await case.start(client)
    assert job.feature == case.name
    assert job.user_id == USER
    assert job.progress is not None
    assert job.progress.message_type == case.message_type
    assert len(job.task_ids) == case.tasks
    assert set(job.progress.tasks.values()) == {RenderState.STARTED}
    inputs = emulator.process(job.process_id).inputs
    assert inputs.content_type == "multipart/form-data"
    assert set(inputs.fields) == case.fields
    assert inputs.fields["applicationId"] == (emulator.application_id,)
    assert inputs.fields["userId"] == (USER,)
    assert set(inputs.files) == case.files
    assert emulator.request_count(case.start_route) == 1


@by_name
async def test_wait_download_and_stream_every_task(
    emulator: Emulator, client: AdCreativeClient, case: RenderCase, tmp_path: Path
) -> None:
    job = await case.start(client)
    first = job.task_ids[0]
    emulator.finish_task(first)
    seen: list[tuple[str, RenderState]] = []
    async for update in job.wait_until_complete(timeout=5):
        seen.append((update.task_id, update.state))
        if update.task_id == first and update.succeeded:
            emulator.finish_process(job.process_id)
    assert seen[: case.tasks] == [(t, RenderState.STARTED) for t in job.task_ids]
    assert dict(seen) == dict.fromkeys(job.task_ids, RenderState.SUCCEEDED)
    assert job.is_complete
    assert emulator.request_count(case.progress_route) >= 1  # waited with the feature's own route
    files = await job.download_all(tmp_path)
    assert sorted(p.name for p in files) == sorted(f"{t}.png" for t in job.task_ids)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files)
    async with job.stream_download(first) as stream:
        body = b"".join([chunk async for chunk in stream.iter_bytes()])
    assert body == (tmp_path / f"{first}.png").read_bytes()
    assert emulator.download_count(first) == 2


@by_name
async def test_progress_lists_filters_and_nothing_found(
    emulator: Emulator, client: AdCreativeClient, case: RenderCase
) -> None:
    resource = client.resource(case.name)
    first = await case.start(client)
    second = await case.start(client)
    listed = await resource.user_progress()
    assert {p.process_id for p in listed} == {first.process_id, second.process_id}
    (only,) = await resource.user_progress(USER, first.process_id)
    assert only.process_id == first.process_id
    assert {p.process_id for p in await resource.application_progress()} >= {first.process_id}
    assert (await first.refresh()).process_id == first.process_id
    assert await resource.user_progress(OTHER_USER) == []  # the "nothing found" 404, as an empty list
    with pytest.raises(NotFoundError):
        await resource.process_progress(second.process_id, user_id=OTHER_USER)


@by_name
async def test_start_without_a_notification_channel_is_the_documented_404(
    emulator: Emulator, client: AdCreativeClient, case: RenderCase
) -> None:
    if case.name == "product_photoshoot":
        recommendations = await client.product_photoshoot.recommendations(JPEG)  # needs no channel
        assert recommendations.background_removed_image_asset_id
    emulator.remove_notification_channels()
    with pytest.raises(NoActiveNotificationChannelError):
        await case.start(client)


@by_name
async def test_start_401_after_the_last_renewal_is_an_authentication_error(
    emulator: Emulator, client: AdCreativeClient, case: RenderCase
) -> None:
    await client.upscaler.user_progress()  # a token first
    emulator.fail_next(case.start_route, 401, count=1 + TOKEN_RENEWALS)
    with pytest.raises(AuthenticationError):
        await case.start(client)


async def test_the_scheduler_follows_jobs_of_several_features_with_their_own_routes(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    jobs = [await case.start(client) for case in CASES]
    for job in jobs:
        emulator.finish_process(job.process_id)
    done = [job async for job in client.as_completed(jobs, timeout=5)]
    assert {job.feature for job in done} == {case.name for case in CASES}
    for case in CASES:
        assert emulator.request_count(case.progress_route) >= 1


async def test_jobs_of_the_new_features_survive_json(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.face_enhancer.enhance(PNG)
    rebuilt = client.job_from_json(job.to_json())
    assert rebuilt.resource is client.face_enhancer
    emulator.finish_process(job.process_id)
    assert (await rebuilt.result(timeout=5)).is_complete


async def test_bulk_runs_a_new_feature_end_to_end(tmp_path: Path) -> None:
    async with (
        Emulator(task_duration=0.0, seed=2) as emu,
        AdCreativeClient(**emu.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False) as client,
    ):
        outcomes = await client.process_many(
            ["a cat", "a dog"],
            lambda c, prompt: c.stock_images.generate(prompt, render_kind=RenderKind.STORY),
            dest=tmp_path,
        )
    assert [o.ok for o in outcomes] == [True, True]
    assert len(list(tmp_path.iterdir())) == 2


# --------------------------------------------------------------------------------------- face enhancer


async def test_face_enhancer_sends_its_optional_fields_only_when_given(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    plain = await client.face_enhancer.enhance(PNG)
    assert set(emulator.process(plain.process_id).inputs.fields) == IDS
    tuned = await client.face_enhancer.enhance(PNG, aria_ratio=0.75, max_face_count=12)
    fields = emulator.process(tuned.process_id).inputs.fields
    assert (fields["ariaRatio"], fields["maxFaceCount"]) == (("0.75",), ("12",))
    whole = await client.face_enhancer.enhance(PNG, aria_ratio=1)
    assert emulator.process(whole.process_id).inputs.fields["ariaRatio"] == ("1",)


# ---------------------------------------------------------------------------------------- stock images


async def test_stock_images_send_the_style_default_and_one_task_per_size(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await client.stock_images.generate(
        "A sunlit cafe", render_kind=RenderKind.SOCIAL, custom_style_text="warm film grain"
    )
    fields = emulator.process(job.process_id).inputs.fields
    assert fields["imageStyle"] == ("3",)  # the documented default, always sent
    assert fields["renderKind"] == ("31",)
    assert fields["customStyleText"] == ("warm film grain",)
    assert len(job.task_ids) == 5
    assert job.progress is not None
    assert job.progress.render_kind == RenderKind.SOCIAL
    other = await client.stock_images.generate("x", render_kind=RenderKind.POST, image_style=ImageStyle(7))
    assert emulator.process(other.process_id).inputs.fields["imageStyle"] == ("7",)


def test_image_style_is_open_and_names_only_the_documented_value() -> None:
    assert [(s.name, int(s)) for s in ImageStyle] == [("PHOTOREALISTIC", 3)]
    assert ImageStyle(7).name == "UNNAMED_7"
    assert not ImageStyle(7).is_named
    assert [(f.name, int(f)) for f in DownloadFormat] == [("PNG", 0), ("JPEG", 1), ("PDF", 2)]


async def test_a_user_prompt_the_server_refuses_names_the_parameter(emulator: Emulator) -> None:
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, strict_validation=False, trust_env=False
    ) as lax:
        with pytest.raises(BadRequestError) as caught:
            await lax.stock_images.generate("p" * 1001, render_kind=RenderKind.POST)
    (detail,) = caught.value.details
    assert (detail.field, detail.param) == ("UserPrompt", "user_prompt")


# ---------------------------------------------------------------------------------- product photoshoot


async def test_recommendations_are_typed_and_feed_a_generation(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    recommendations = await client.product_photoshoot.recommendations(JPEG)
    assert isinstance(recommendations, ProductRecommendations)
    assert recommendations.product_info.product_name
    assert len(recommendations.recommended_prompts) == 4
    assert len(recommendations.recommended_preset_ids) == 6
    objects = recommendations.prompt_objects()
    assert len(objects) == 6
    assert all(isinstance(o, PresetPrompt) for o in objects)
    job = await client.product_photoshoot.generate(recommendations.background_removed_image_asset_id, objects)
    assert len(job.task_ids) == 6  # the docs' six tasks for a full set of prompts
    fields = emulator.process(job.process_id).inputs.fields
    assert fields["backgroundRemovedImageAssetId"] == (recommendations.background_removed_image_asset_id,)


async def test_prompt_objects_go_out_as_the_documented_json_string(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    recommendations = await client.product_photoshoot.recommendations(PNG)
    prompts: list[PromptObject] = [
        CustomPrompt(prompt="on a sleek black and blue geometric pattern background"),
        PresetPrompt(preset="white_pink_yellow_gradient_background_monochrome"),
        CustomPrompt(prompt="custom style prompt", native_language_prompt="eigener Stil"),
    ]
    job = await client.product_photoshoot.generate(recommendations.background_removed_image_asset_id, prompts)
    (text,) = emulator.process(job.process_id).inputs.fields["PromptObjectsString"]
    assert json.loads(text) == [
        {
            "tag": "custom",
            "prompt": "on a sleek black and blue geometric pattern background",
            "nativeLanguagePrompt": None,
        },
        {"tag": "preset", "preset": "white_pink_yellow_gradient_background_monochrome"},
        {"tag": "custom", "prompt": "custom style prompt", "nativeLanguagePrompt": "eigener Stil"},
    ]


async def test_a_generation_from_an_unknown_asset_is_not_found(client: AdCreativeClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.product_photoshoot.generate(OTHER_USER, [PresetPrompt(preset="white_background")])
    assert not isinstance(caught.value, NoActiveNotificationChannelError)


async def test_preset_keys_come_back_as_plain_json(emulator: Emulator, client: AdCreativeClient) -> None:
    presets = await client.product_photoshoot.preset_keys()
    assert isinstance(presets, dict)
    categories = presets["categories"]
    assert isinstance(categories, list)
    assert categories
    assert "$id" not in json.dumps(presets)
    (call,) = emulator.received_calls("Image/ProductGeneration/PresetKeys")
    assert dict(call.query) == {"applicationId": (emulator.application_id,), "userId": (USER,)}


@pytest.mark.parametrize(
    ("download_format", "magic", "extension", "media_type"),
    [
        (None, b"\x89PNG", ".png", "image/png"),
        (DownloadFormat.PNG, b"\x89PNG", ".png", "image/png"),
        (DownloadFormat.JPEG, b"\xff\xd8\xff", ".jpg", "image/jpeg"),
        (DownloadFormat.PDF, b"%PDF-1.6", ".pdf", "application/pdf"),
    ],
)
async def test_photoshoot_downloads_in_each_documented_format(
    emulator: Emulator,
    client: AdCreativeClient,
    tmp_path: Path,
    download_format: DownloadFormat | None,
    magic: bytes,
    extension: str,
    media_type: str,
) -> None:
    job = await start_product_photoshoot(client)
    emulator.finish_process(job.process_id)
    task = job.task_ids[0]
    path = await client.product_photoshoot.download(job.process_id, task, tmp_path, format=download_format)
    assert path.name == f"{task}{extension}"
    assert path.read_bytes().startswith(magic)
    async with client.product_photoshoot.stream_download(job.process_id, task, format=download_format) as s:
        assert s.content_type == media_type
        body = b"".join([chunk async for chunk in s.iter_bytes()])
    assert body == path.read_bytes()
    if download_format == DownloadFormat.PDF:
        assert_valid_pdf(body)


def assert_valid_pdf(data: bytes) -> None:
    """Header, objects where the cross-reference table says, startxref at the table, %%EOF last."""
    assert data.startswith(b"%PDF-1.6\n")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    assert data[startxref:].startswith(b"xref")
    count = int(re.match(rb"xref\s+0\s+(\d+)", data[startxref:]).group(1))  # type: ignore[union-attr]
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf]) ?\r?\n", data[startxref:])
    assert len(entries) == count
    for number, (offset, _, kind) in enumerate(entries):
        if kind == b"n":
            assert data[int(offset) :].startswith(f"{number} 0 obj".encode())
    assert b"/Type /Catalog" in data
    assert b"/Type /Page " in data


# --------------------------------------------------------------------------------------- scan my website


async def test_scan_sends_the_url_percent_encoded_and_returns_a_typed_scan(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    url = "https://exämple.com/päth?q=a&b=c+d#top"
    scan = await client.scan_my_website.scan(url, include_logo_content=True, advance_mode=False)
    (call,) = emulator.received_calls("ScanMyWebsite")
    assert dict(call.query) == {
        "applicationId": (emulator.application_id,),
        "userId": (USER,),
        "url": (url,),  # one value, decoded intact: '&', '#', '+' and non-ASCII were encoded
        "includeLogoContent": ("true",),
        "advanceMode": ("false",),
    }
    assert isinstance(scan, WebsiteScan)
    assert scan.brand_name == "Exämple"
    assert scan.logo_urls
    assert scan.main_colors
    assert scan.color_palette
    assert scan.logo_svg is not None
    assert scan.logo_svg.startswith("<svg")
    assert scan.logo_content is not None
    assert scan.logo_content.startswith(b"\x89PNG")
    assert scan.raw["url"] == url
    assert "$id" not in scan.raw
    assert msgspec.json.decode(msgspec.json.encode(scan), type=WebsiteScan) == scan  # storable


async def test_scan_leaves_out_unset_options(emulator: Emulator, client: AdCreativeClient) -> None:
    await client.scan_my_website.scan("https://fireflies.ai")
    (call,) = emulator.received_calls("ScanMyWebsite")
    assert set(call.query) == {"applicationId", "userId", "url"}
    no_logo = await client.scan_my_website.scan("https://fireflies.ai", include_logo_content=False)
    assert no_logo.logo_content is None


async def test_scan_percent_encodes_reserved_characters_on_the_wire() -> None:
    raw: list[str] = []
    async with MiniAPI() as api:

        @api.route("GET", "/api/v1/ScanMyWebsite")
        async def scan(request: web.Request) -> web.StreamResponse:
            raw.append(request.raw_path)
            return web.json_response({"brandName": "X"})

        async with AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as client:
            await client.scan_my_website.scan("https://a.io/x?y=1&z=2#f")
    (path,) = raw
    encoded = path.partition("url=")[2].partition("&")[0]
    assert "&" not in encoded
    assert "#" not in encoded
    assert "=" not in encoded
    assert "%26" in encoded
    assert "%23" in encoded
    assert "%3D" in encoded


async def test_scan_has_a_long_read_timeout_by_default(
    client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Request] = []
    original = client._transport.request

    async def spy(req: Request) -> Response:
        sent.append(req)
        return await original(req)

    monkeypatch.setattr(client._transport, "request", spy)
    await client.scan_my_website.scan("https://fireflies.ai")
    await client.scan_my_website.scan("https://fireflies.ai", timeout=5)
    default, explicit = [r for r in sent if r.route == "ScanMyWebsite"]
    assert default.timeout is not None
    assert default.timeout.read == SCAN_READ_TIMEOUT
    assert explicit.timeout is not None
    assert explicit.timeout.total == 5


async def test_a_url_the_server_refuses_is_a_bad_request(emulator: Emulator) -> None:
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, strict_validation=False, trust_env=False
    ) as lax:
        with pytest.raises(BadRequestError) as caught:
            await lax.scan_my_website.scan("fireflies.ai")
    assert caught.value.errors == {"url": ["The url must be a valid absolute URL."]}
    assert caught.value.details[0].param == "url"


async def test_scan_401_after_the_last_renewal(emulator: Emulator, client: AdCreativeClient) -> None:
    emulator.fail_next("ScanMyWebsite", 401, count=1 + TOKEN_RENEWALS)
    with pytest.raises(AuthenticationError):
        await client.scan_my_website.scan("https://fireflies.ai")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"brandName": 5, "logoUrls": "https://a/logo.svg", "mainColors": [1, "#fff"]}', ("", 1, ["#fff"])),
        (b'{"$id": "1", "logoUrls": {"$id": "2", "$values": ["u1", "u2"]}}', ("", 2, [])),
        (b'[{"brandName": "X"}]', ("", 0, [])),
        (b"null", ("", 0, [])),
        (b'{"logoContent": "not base64!!", "brandName": "Y"}', ("Y", 0, [])),
    ],
)
def test_website_scans_of_unknown_shapes_never_fail(
    body: bytes, expected: tuple[str, int, list[str]]
) -> None:
    scan = decode_website_scan(body)
    assert (scan.brand_name or "", len(scan.logo_urls), scan.main_colors) == expected
    assert isinstance(scan.raw, dict)


async def test_a_scan_answer_that_is_not_json_is_an_unexpected_response() -> None:
    async with MiniAPI() as api:
        api.answer("GET", "/api/v1/ScanMyWebsite", 200, b"<html>oops</html>")
        async with AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as client:
            with pytest.raises(UnexpectedResponseError):
                await client.scan_my_website.scan("https://fireflies.ai")


# ----------------------------------------------------------------------------------------------- ad texts

TEXT_CALLS = [
    ("generate_ads", "POST", "Text/Generation/Ads"),
    ("user_ads", "GET", "Text/Generation/UserAd"),
    ("application_ads", "GET", "Text/Generation/ApplicationAllAds"),
    ("product_description", "GET", "Text/Generation/ProductDescription"),
    ("ad_strategies", "POST", "Text/Generation/AdStrategies"),
    ("ad_copies", "POST", "Text/Generation/AdCopies"),
    ("change_sentiment", "POST", "Text/Craft/ChangeSentiment"),
    ("shorten", "POST", "Text/Craft/MakeShorten"),
    ("translate", "POST", "Text/Craft/Translate"),
    ("create_variations", "POST", "Text/Craft/CreateVariations"),
]


@pytest.mark.parametrize(("operation", "method", "route"), TEXT_CALLS, ids=[c[0] for c in TEXT_CALLS])
async def test_every_text_call_uses_its_documented_route_and_sends_the_ids(
    emulator: Emulator, client: AdCreativeClient, operation: str, method: str, route: str
) -> None:
    call: Callable[..., Awaitable[Any]] = getattr(client.ad_texts, operation)
    extra = {"productName": "Fireflies", "tone": 2}
    result = await call(extra)
    assert emulator.request_count(route, method) == 1
    (received,) = emulator.received_calls(route)
    if method == "POST":
        assert received.json == {"applicationId": emulator.application_id, "userId": USER, **extra}
        assert dict(received.query) == {}
    else:
        expected = {
            "applicationId": (emulator.application_id,),
            "productName": ("Fireflies",),
            "tone": ("2",),
        }
        if operation != "application_ads":
            expected["userId"] = (USER,)
        assert dict(received.query) == expected
    assert "$id" not in json.dumps(result)
    assert "$values" not in json.dumps(result)


async def test_ads_are_generated_listed_and_updated(emulator: Emulator, client: AdCreativeClient) -> None:
    ad = await client.ad_texts.generate_ads({"productName": "Fireflies", "language": "en"})
    assert isinstance(ad, dict)
    assert ad["version"] == 1
    assert ad["headlines"] == ["Meet Fireflies", "Fireflies: made for you"]
    await client.ad_texts.generate_ads({"productName": "Other"}, user_id=OTHER_USER)
    mine = await client.ad_texts.user_ads()
    assert isinstance(mine, list)
    assert [a["adTextId"] for a in mine if isinstance(a, dict)] == [ad["adTextId"]]
    everyone = await client.ad_texts.application_ads()
    assert isinstance(everyone, list)
    assert len(everyone) == 2
    updated = await client.ad_texts.update_ads({"adTextId": ad["adTextId"], "tone": "playful"})
    assert isinstance(updated, dict)
    assert updated["version"] == 2
    assert emulator.request_count("Text/Generation/Ads", "PUT") == 1
    with pytest.raises(NotFoundError):
        await client.ad_texts.update_ads({"adTextId": OTHER_USER})


async def test_text_answers_with_references_are_resolved() -> None:
    async with MiniAPI() as api:
        body = {
            "$id": "1",
            "a": {"$id": "2", "text": "x"},
            "b": {"$ref": "2"},
            "c": {"$id": "3", "$values": [1]},
        }
        api.answer("POST", "/api/v1/Text/Craft/Translate", 200, body)
        async with AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as client:
            result = await client.ad_texts.translate({"text": "Hallo"})
        (seen,) = api.requests_to("/api/v1/Text/Craft/Translate")
    assert result == {"a": {"text": "x"}, "b": {"text": "x"}, "c": [1]}
    assert seen.headers["Content-Type"] == "application/json"


async def test_a_text_call_the_server_refuses_is_a_bad_request(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    emulator.fail_next("Text/Generation/AdCopies", 400)
    with pytest.raises(BadRequestError):
        await client.ad_texts.ad_copies({"productName": "x"})


# ---------------------------------------------------------------------------------- client-side validation


def _call(name: str, **kwargs: Any) -> Callable[[AdCreativeClient], Awaitable[object]]:
    resource, method = name.split(".")

    async def run(client: AdCreativeClient) -> object:
        result: object = await getattr(getattr(client, resource), method)(**kwargs)
        return result

    return run


VALIDATION = [
    (_call("upscaler.upscale", image=b""), r"image \(uploadedImage\): is empty"),
    (_call("upscaler.upscale", image=b"not an image"), r"image \(uploadedImage\): is not an image"),
    (_call("upscaler.upscale", image=PNG, user_id="nope"), r"user_id: must be a GUID"),
    (
        _call("face_enhancer.enhance", image=PNG, aria_ratio="0.5"),
        r"aria_ratio \(ariaRatio\): must be a number",
    ),
    (_call("face_enhancer.enhance", image=PNG, aria_ratio=float("nan")), r"ariaRatio\): must be a finite"),
    (
        _call("face_enhancer.enhance", image=PNG, max_face_count=2.5),
        r"max_face_count \(maxFaceCount\): must be an int",
    ),
    (_call("face_enhancer.enhance", image=PNG, max_face_count=True), r"maxFaceCount\): must be an integer"),
    (
        _call("stock_images.generate", user_prompt="p" * 1001, render_kind=1),
        r"user_prompt \(userPrompt\): must be at most 1000 characters",
    ),
    (
        _call("stock_images.generate", user_prompt="😀" * 501, render_kind=1),
        r"userPrompt\): must be at most 1000",
    ),
    (
        _call("stock_images.generate", user_prompt="  ", render_kind=1),
        r"user_prompt \(userPrompt\): is required",
    ),
    (
        _call("stock_images.generate", user_prompt="p", render_kind=3),
        r"render_kind \(renderKind\): must be one of",
    ),
    (
        _call("stock_images.generate", user_prompt="p", render_kind=1, image_style="3"),
        r"image_style \(imageStyle\): must be an integer",
    ),
    (
        _call("stock_images.generate", user_prompt="p", render_kind=1, user_id=NIL),
        r"user_id \(userId\): must be a non-empty",
    ),
    (
        _call("product_photoshoot.generate", background_removed_image_asset_id=USER, prompts=[]),
        r"at least one",
    ),
    (
        _call(
            "product_photoshoot.generate",
            background_removed_image_asset_id=USER,
            prompts=[PresetPrompt(preset="white_background")] * 7,
        ),
        r"prompts \(PromptObjectsString\): must hold at most 6 prompt objects, got 7",
    ),
    (
        _call(
            "product_photoshoot.generate",
            background_removed_image_asset_id=USER,
            prompts=[CustomPrompt(prompt=" ")],
        ),
        r"item 0 has an empty prompt",
    ),
    (
        _call("product_photoshoot.generate", background_removed_image_asset_id=USER, prompts=["on a table"]),
        r"item 0 must be a CustomPrompt or a PresetPrompt, got str",
    ),
    (
        _call("product_photoshoot.generate", background_removed_image_asset_id=USER, prompts="on a table"),
        r"must be a list of CustomPrompt / PresetPrompt",
    ),
    (
        _call(
            "product_photoshoot.generate",
            background_removed_image_asset_id="asset-1",
            prompts=[PresetPrompt(preset="white_background")],
        ),
        r"background_removed_image_asset_id \(backgroundRemovedImageAssetId\): must be a GUID",
    ),
    (_call("product_photoshoot.recommendations", image=b"GIF89a..."), r"image \(uploadedImage\): "),
    (
        _call("product_photoshoot.download", process_id=USER, task_id=USER, dest="x", format=3),
        r"format: must be one of 0, 1, 2",
    ),
    (
        _call("product_photoshoot.download", process_id=USER, task_id=USER, dest="x", format="pdf"),
        r"format: must be an",
    ),
    (_call("scan_my_website.scan", url="fireflies.ai"), r"url: must be an absolute http\(s\) URL"),
    (_call("scan_my_website.scan", url="ftp://fireflies.ai"), r"url: must be an absolute http\(s\) URL"),
    (_call("scan_my_website.scan", url="https://fire flies.ai"), r"url: must not contain spaces"),
    (_call("scan_my_website.scan", url=""), r"url: is required"),
    (
        _call("scan_my_website.scan", url="https://a.io", include_logo_content="yes"),
        r"includeLogoContent\): must be True",
    ),
    (_call("ad_texts.generate_ads", fields={"UserId": USER}), r"fields: 'UserId' is sent by the SDK"),
    (_call("ad_texts.shorten", fields={"text": object()}), r"fields: must be JSON-serialisable"),
    (_call("ad_texts.user_ads", params={"applicationId": USER}), r"'applicationId' is a documented field"),
]


@pytest.mark.parametrize(("call", "message"), VALIDATION, ids=[m for _, m in VALIDATION])
async def test_input_is_refused_before_anything_is_sent(
    emulator: Emulator,
    client: AdCreativeClient,
    call: Callable[[AdCreativeClient], Awaitable[object]],
    message: str,
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        await call(client)
    assert sum(emulator.requests.values()) == 0


# ------------------------------------------------------------------------------------------- overrides


def test_overrides_replace_routes_and_names_and_drop_their_assumption() -> None:
    client = AdCreativeClient(
        application_id=USER,
        api_key="k",
        api_secret="s",
        jwt_private_key="p",
        feature_overrides={
            "upscaler": {
                "user_progress_route": "/api/v1/Image/Upscaling/CheckUserProgress",
                "process_id_query": "imageRenderProcessId",
            },
            "product_photoshoot": {"recommendations_route": "/Image/ProductGeneration/Recommendations"},
        },
    )
    feature = client.upscaler.feature
    assert feature.user_progress_route == "Image/Upscaling/CheckUserProgress"
    assert feature.process_id_query == "imageRenderProcessId"
    assert not feature.is_assumed("process_id_query")
    assert not feature.is_assumed("user_progress_route")
    assert feature.is_assumed("download_route")
    photoshoot = client.product_photoshoot.feature
    assert photoshoot.route("recommendations_route") == "Image/ProductGeneration/Recommendations"
    assert client.background_remover.feature.process_id_query == "imageBackgroundRemoverProcessId"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upscaling": {}}, r"unknown feature 'upscaling' \(known: 'creatives', "),
        (
            {"upscaler": {"progress_route": "x"}},
            r"\['upscaler'\]: unknown key 'progress_route' \(known: 'start_route'",
        ),
        ({"upscaler": {"download_route": "Image/X?y=1"}}, r"\['download_route'\]: must be a route"),
        ({"upscaler": {"download_route": ""}}, r"must be a route"),
        ({"upscaler": {"process_id_query": "a b"}}, r"\['process_id_query'\]: must be a field or query name"),
        ({"upscaler": {"field_names": {"imageId": "x"}}}, r"unknown field 'imageId'"),
        ({"upscaler": "Image/Upscaling/Get"}, r"must be a mapping"),
        ({"creatives": {"recommendations_route": "x"}}, r"unknown key 'recommendations_route'"),
    ],
)
def test_bad_overrides_are_refused_naming_what_is_wrong(overrides: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AdCreativeClient(
            application_id=USER, api_key="k", api_secret="s", jwt_private_key="p", feature_overrides=overrides
        )


async def test_a_renamed_field_goes_out_under_its_new_name(emulator: Emulator) -> None:
    overrides = {"product_photoshoot": {"field_names": {"backgroundRemovedImageAssetId": "imageId"}}}
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, feature_overrides=overrides, trust_env=False
    ) as client:
        recommendations = await client.product_photoshoot.recommendations(PNG)
        asset = recommendations.background_removed_image_asset_id
        # the old name is no longer the SDK's: the escape hatch may send it as well
        job = await client.product_photoshoot.generate(
            asset,
            [PresetPrompt(preset="white_background")],
            extra_form={"backgroundRemovedImageAssetId": asset},
        )
    fields = emulator.process(job.process_id).inputs.fields
    assert fields["imageId"] == fields["backgroundRemovedImageAssetId"] == (asset,)


async def test_a_wrong_process_id_query_only_affects_filters_and_downloads(
    emulator: Emulator, tmp_path: Path
) -> None:
    overrides = {"upscaler": {"process_id_query": "imageRenderProcessId"}}  # the emulator ignores it
    async with AdCreativeClient(
        **emulator.credentials,
        user_id=USER,
        poll_policy=FAST_POLLS,
        feature_overrides=overrides,
        trust_env=False,
    ) as client:
        first = await client.upscaler.upscale(PNG)
        second = await client.upscaler.upscale(PNG)
        (only,) = await client.upscaler.user_progress(process_id=first.process_id)  # filtered on the client
        assert only.process_id == first.process_id
        emulator.finish_process(first.process_id)
        assert (await first.result(timeout=5)).is_complete  # waiting polls unfiltered
        with pytest.raises(BadRequestError) as caught:
            await first.download(first.task_ids[0], tmp_path)
        assert caught.value.errors == {
            "imageUpscalerProcessId": ["The imageUpscalerProcessId field is required."]
        }
        assert second.process_id != first.process_id


async def test_an_assumed_filter_refused_with_400_falls_back_to_the_listing(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await client.upscaler.upscale(PNG)
    before = emulator.request_count("Image/Upscaling/CheckUserProgress")  # the start's baseline listing
    emulator.fail_next("Image/Upscaling/CheckUserProgress", 400)
    (progress,) = await client.upscaler.user_progress(process_id=job.process_id)
    assert progress.process_id == job.process_id
    assert emulator.request_count("Image/Upscaling/CheckUserProgress") == before + 2
    background = await client.background_remover.remove(PNG)  # a documented filter: no fallback
    emulator.fail_next("Image/BackgroundRemoving/CheckUserProgress", 400)
    with pytest.raises(BadRequestError):
        await client.background_remover.user_progress(process_id=background.process_id)


def test_every_render_feature_lists_what_it_assumes() -> None:
    client = AdCreativeClient(application_id=USER, api_key="k", api_secret="s", jwt_private_key="p")
    assert client.creatives.feature.assumed == () == client.background_remover.feature.assumed
    for name in ("upscaler", "face_enhancer", "stock_images", "product_photoshoot"):
        feature = client.resource(name).feature
        assert feature.is_assumed("process_id_query")  # documented only for Photoshoot's download
        assert feature.is_assumed("download_route") == (name != "product_photoshoot")
        assert all(why for _, why in feature.assumed)


# ------------------------------------------------------------------------------------------------ models


def test_the_documented_recommendations_example_decodes() -> None:
    body = b"""{
      "productInfo": {"productName": "headphones", "productDescription": "Wireless over-ear headphones."},
      "backgroundRemovedImageAssetId": "ecc767e4-c107-4492-9826-89756e925425",
      "recommendedPrompts": ["on a sleek glass surface...", "on a dynamic music waveform graphic..."],
      "recommendedPresetIds": ["natural_beige_background", "white_background"]
    }"""
    recommendations = decode_recommendations(body)
    assert recommendations.product_info.product_name == "headphones"
    assert recommendations.background_removed_image_asset_id == "ecc767e4-c107-4492-9826-89756e925425"
    assert recommendations.prompt_objects(3) == [
        PresetPrompt(preset="natural_beige_background"),
        PresetPrompt(preset="white_background"),
        CustomPrompt(prompt="on a sleek glass surface..."),
    ]
    with pytest.raises(msgspec.ValidationError):
        decode_recommendations(b'{"productInfo": {}}')


def test_clean_json_drops_metadata_and_resolves_references() -> None:
    data = {
        "$id": "1",
        "x": {"$id": "2", "$values": [{"$id": "3", "n": 1}, {"$ref": "3"}]},
        "y": {"$ref": "9"},
    }
    assert clean_json(data) == {"x": [{"n": 1}, {"n": 1}], "y": None}


def test_a_pdf_body_without_its_end_marker_is_an_incomplete_download() -> None:
    pdf = pdf_bytes(8, 8)
    whole = Received()
    whole.add(pdf)
    whole.check(None)  # no Content-Length: the %%EOF marker decides
    assert whole.kind == "pdf"
    cut = Received()
    cut.add(pdf[:-12])
    with pytest.raises(IncompleteDownloadError, match="PDF end marker is missing"):
        cut.check(None)
