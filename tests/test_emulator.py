"""The emulator, driven over HTTP with a plain aiohttp client (never the SDK): tokens, both features,
their documented errors, the behaviour options, the controls and counters, and the command line.

The helpers at the top (:class:`Api`, :func:`running`) are shared with ``test_emulator_golden.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from adcreative_async.testing import Emulator, EmulatorOptions, TaskState, sample_image

pytestmark = pytest.mark.anyio

USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"  # the seeds' user
OTHER_USER_ID = "30430501-840a-4cbb-a1dd-b00f722bd79f"
UNKNOWN_ID = "51d690da-f5ea-405e-90ff-10d56b0d633f"

TOKEN = "Authorization/GenerateJwtToken"
REFRESH = "Authorization/RefreshJwtToken"
BY_KIND = "Image/Generation/AdCreativesByKind"
EDIT = "Image/Editing/AdCreativesByTasks"
GEN_USER = "Image/Generation/CheckUserProgress"
GEN_APP = "Image/Generation/CheckApplicationAllProgresses"
GEN_DOWNLOAD = "Image/Generation/Download"
BR_START = "Image/BackgroundRemoving/AdCreative"
BR_USER = "Image/BackgroundRemoving/CheckUserProgress"
BR_APP = "Image/BackgroundRemoving/CheckApplicationAllProgresses"
BR_DOWNLOAD = "Image/BackgroundRemoving/Download"

TRACE_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00")
ISO_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
UNAUTHORIZED_ERRORS = {"business:": ["Token is missing, invalid or ApplicationId is not found in the token."]}
LAYERED_KEYS = ["errors", "type", "title", "status", "detail", "instance", "extensions"]
PROGRESS_KEYS = [
    "messageType",
    "requestRenderState",
    "applicationId",
    "userId",
    "imageRenderProcessId",
    "totalTaskCount",
    "completedTaskCount",
    "progress",
    "tasks",
    "renderKind",
    "renderType",
    "isSuccessful",
    "errorMessage",
]

ROOT = Path(__file__).resolve().parent.parent
PNG = sample_image("png")
JPEG = sample_image("jpeg")


@dataclass
class Reply:
    """A response read whole."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def generation_fields(application_id: str, **overrides: str | None) -> dict[str, str]:
    """A valid AdCreativesByKind form (the seed's request example), with overrides; None drops a field."""
    fields: dict[str, str | None] = {
        "actionText": "Learn More",
        "applicationId": application_id,
        "color1Hex": "#fc2c2c",
        "color2Hex": "#002c2c",
        "mainHeadline": "Introducing Our Latest Product",
        "punchline": "Revolutionizing the industry.",
        "renderKind": "1",
        "renderType": "2",
        "userId": USER_ID,
        "description": "A stunning new way to showcase your brand.",
        "buttonIconClass": "fa-solid fa-angle-right",
        "color3Hex": "#cccccc",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


GENERATION_FILES = {"brandImage": PNG, "backgroundImage": JPEG}


class Api:
    """A plain aiohttp client of one emulator, logged in as its application."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.headers: dict[str, str] = {}

    async def request(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        async with self.session.request(
            method,
            f"/api/v1/{route}",
            params=params,
            json=json_body,
            data=data,
            headers=self.headers if headers is None else headers,
        ) as response:
            return Reply(response.status, dict(response.headers), await response.read())

    async def token(self, **overrides: Any) -> Reply:
        body = {"applicationId": self.emu.application_id, "jwtPrivateKey": self.emu.jwt_private_key}
        body.update(overrides)
        return await self.request("POST", TOKEN, json_body=body, headers={})

    async def login(self) -> dict[str, Any]:
        reply = await self.token()
        assert reply.status == 200, reply.body
        grant: dict[str, Any] = reply.json()
        self.headers = self.auth_headers(grant["accessToken"])
        return grant

    def auth_headers(self, access_token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {access_token}",
            "x-api-key": self.emu.api_key,
            "x-api-secret": self.emu.api_secret,
        }

    async def post_form(
        self,
        route: str,
        fields: Mapping[str, str | Sequence[str]],
        files: Mapping[str, bytes] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        multipart: bool = True,
    ) -> Reply:
        form = aiohttp.FormData(default_to_multipart=multipart)
        for name, value in fields.items():
            for item in [value] if isinstance(value, str) else value:
                form.add_field(name, item)
        for name, content in (files or {}).items():
            form.add_field(name, content, filename=f"{name}.img", content_type="application/octet-stream")
        return await self.request("POST", route, data=form, headers=headers)

    async def get(
        self, route: str, params: Mapping[str, str], *, headers: Mapping[str, str] | None = None
    ) -> Reply:
        return await self.request("GET", route, params=params, headers=headers)

    async def start_generation(self, **overrides: str | None) -> dict[str, Any]:
        reply = await self.post_form(
            BY_KIND, generation_fields(self.emu.application_id, **overrides), GENERATION_FILES
        )
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.json()
        return body

    async def completed_generation(self, **overrides: str | None) -> dict[str, Any]:
        started = await self.start_generation(**overrides)
        self.emu.finish_process(started["imageRenderProcessId"])
        return started

    async def edit(self, task_ids: Sequence[str], **fields: str) -> Reply:
        form = {"applicationId": self.emu.application_id, "userId": USER_ID, "taskIds": task_ids, **fields}
        return await self.post_form(EDIT, form)

    async def start_background_removal(self, user_id: str = USER_ID) -> dict[str, Any]:
        fields = {"applicationId": self.emu.application_id, "userId": user_id}
        reply = await self.post_form(BR_START, fields, {"uploadedImage": JPEG})
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.json()
        return body

    async def user_progress(self, user_id: str = USER_ID, process_id: str | None = None) -> Reply:
        params = {"userId": user_id}
        if process_id:
            params["imageRenderProcessId"] = process_id
        return await self.get(GEN_USER, params)

    async def download(self, process_id: str, task_id: str, route: str = GEN_DOWNLOAD, **extra: str) -> Reply:
        name = "imageRenderProcessId" if route == GEN_DOWNLOAD else "imageBackgroundRemoverProcessId"
        params = {"applicationId": self.emu.application_id, "taskId": task_id, name: process_id, **extra}
        return await self.get(route, params)


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[Api]:
    """An emulator (tasks finish only by hand unless told otherwise) and a client logged in to it."""
    options.setdefault("auto_complete", False)
    options.setdefault("seed", 1)
    async with Emulator(**options) as emu, aiohttp.ClientSession(emu.base_url) as session:
        api = Api(emu, session)
        await api.login()
        yield api


def assert_layered(reply: Reply, status: int, errors: Mapping[str, list[str]]) -> None:
    """Shape A with exactly these errors."""
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert list(body) == LAYERED_KEYS
    assert body["errors"] == errors
    assert body["type"] == "https://tools.ietf.org/html/rfc7231#section-6.5.1"
    assert body["title"] == "One or more errors occurred."
    assert (body["status"], body["detail"], body["instance"]) == (status, None, None)
    assert list(body["extensions"]) == ["traceId"]
    assert TRACE_RE.fullmatch(body["extensions"]["traceId"])


def assert_validation(reply: Reply, errors: Mapping[str, list[str]], *, newtonsoft: bool) -> None:
    """Shape B: generation forms without ``$id``/traceId (rfc7231), the others with both (rfc9110)."""
    assert reply.status == 400, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body = reply.json()
    if newtonsoft:
        assert list(body) == ["$id", "type", "title", "status", "errors", "traceId"]
        assert body["$id"] == "1"
        assert body["type"] == "https://tools.ietf.org/html/rfc9110#section-15.5.1"
        assert body["errors"] == {"$id": "2", **errors}
        assert TRACE_RE.fullmatch(body["traceId"])
    else:
        assert list(body) == ["type", "title", "status", "errors"]
        assert body["type"] == "https://tools.ietf.org/html/rfc7231#section-6.5.1"
        assert body["errors"] == errors
    assert body["title"] == "One or more validation errors occurred."
    assert body["status"] == 400


def assert_unauthorized(reply: Reply) -> None:
    assert_layered(reply, 401, UNAUTHORIZED_ERRORS)


def b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# tokens ----------------------------------------------------------------------------------------------


async def test_generate_token_answers_the_documented_shape_with_a_signed_jwt() -> None:
    async with running() as api:
        reply = await api.token()
        grant = reply.json()
        assert reply.status == 200
        assert list(grant) == [
            "$id",
            "applicationId",
            "accessToken",
            "accessTokenExpiration",
            "refreshToken",
            "refreshTokenExpiration",
        ]
        assert grant["$id"] == "1"
        assert grant["applicationId"] == api.emu.application_id
        assert ISO_RE.fullmatch(grant["accessTokenExpiration"])
        assert ISO_RE.fullmatch(grant["refreshTokenExpiration"])
        assert grant["accessTokenExpiration"] < grant["refreshTokenExpiration"]
        assert len(grant["refreshToken"]) == 44
        assert len(base64.b64decode(grant["refreshToken"])) == 32
        header, claims, signature = grant["accessToken"].split(".")
        assert b64url_json(header) == {"alg": "HS256", "typ": "JWT"}
        payload = b64url_json(claims)
        assert payload["applicationId"] == api.emu.application_id
        assert payload["exp"] - payload["iat"] in (3600, 3601)
        expected = hmac.new(
            api.emu.jwt_private_key.encode(), f"{header}.{claims}".encode(), hashlib.sha256
        ).digest()
        assert base64.urlsafe_b64decode(signature + "=") == expected
        again = (await api.token()).json()
        assert b64url_json(again["accessToken"].split(".")[1])["jti"] != payload["jti"]


@pytest.mark.parametrize("transform", [str.upper, lambda s: f"urn:uuid:{s}", lambda s: f"URN:UUID:{s}"])
async def test_generate_token_accepts_the_id_with_urn_prefix_in_any_case(transform: Any) -> None:
    async with running() as api:
        reply = await api.token(applicationId=transform(api.emu.application_id))
        assert reply.status == 200
        assert reply.json()["applicationId"] == api.emu.application_id


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"applicationId": None}, {"ApplicationId": ["The ApplicationId field is required."]}),
        ({"jwtPrivateKey": "  "}, {"JwtPrivateKey": ["The JwtPrivateKey field is required."]}),
        ({"applicationId": "abc"}, {"ApplicationId": ["The value 'abc' is not valid for ApplicationId."]}),
    ],
)
async def test_generate_token_validation_errors(body: dict[str, Any], errors: dict[str, list[str]]) -> None:
    async with running() as api:
        assert_validation(await api.token(**body), errors, newtonsoft=True)
        empty = await api.request("POST", TOKEN, data=b"", headers={"Content-Type": "application/json"})
        assert_validation(empty, {"": ["A non-empty request body is required."]}, newtonsoft=True)
        form = await api.request("POST", TOKEN, data={"applicationId": "x"}, headers={})
        assert form.status == 415


@pytest.mark.parametrize("which", ["key", "application"])
async def test_generate_token_with_wrong_credentials_is_401_layered(which: str) -> None:
    async with running() as api:
        override = {"jwtPrivateKey": "0" * 128} if which == "key" else {"applicationId": UNKNOWN_ID}
        reply = await api.token(**override)
        application_id = api.emu.application_id if which == "key" else UNKNOWN_ID
        assert_layered(
            reply,
            401,
            {
                "engine: GenerateJwtToken": ["Application not found or the JWT private key is invalid."],
                "business: GenerateJwtToken": [
                    f"Error generating JWT token for the Application: {application_id}"
                ],
            },
        )


async def test_refresh_issues_a_new_access_token_and_keeps_the_refresh_token() -> None:
    async with running() as api:
        grant = await api.login()
        body = {
            "applicationId": api.emu.application_id,
            "jwtPrivateKey": api.emu.jwt_private_key,
            "refreshToken": grant["refreshToken"],
        }
        first = (await api.request("POST", REFRESH, json_body=body, headers={})).json()
        second = (await api.request("POST", REFRESH, json_body=body, headers={})).json()
        assert first["accessToken"] != grant["accessToken"]
        assert first["refreshToken"] == second["refreshToken"] == grant["refreshToken"]
        assert first["refreshTokenExpiration"] == grant["refreshTokenExpiration"]
        reply = await api.get(BR_USER, {"userId": USER_ID}, headers=api.auth_headers(first["accessToken"]))
        assert reply.status == 404  # authenticated: nothing found


async def test_refresh_with_rotation_revokes_the_old_refresh_token() -> None:
    async with running(rotate_refresh_tokens=True) as api:
        grant = await api.login()
        body = {
            "applicationId": api.emu.application_id,
            "jwtPrivateKey": api.emu.jwt_private_key,
            "refreshToken": grant["refreshToken"],
        }
        rotated = await api.request("POST", REFRESH, json_body=body, headers={})
        assert rotated.status == 200
        assert rotated.json()["refreshToken"] != grant["refreshToken"]
        reused = await api.request("POST", REFRESH, json_body=body, headers={})
        assert_layered(
            reused,
            401,
            {
                "engine: RefreshJwtToken": ["Refresh token is invalid, expired or revoked."],
                "business: RefreshJwtToken": [
                    f"Error refreshing JWT token for the Application: {api.emu.application_id}"
                ],
            },
        )
        body["refreshToken"] = rotated.json()["refreshToken"]
        assert (await api.request("POST", REFRESH, json_body=body, headers={})).status == 200


async def test_refresh_token_expires_and_needs_every_field() -> None:
    async with running(refresh_token_lifetime=60) as api:
        grant = await api.login()
        body = {"applicationId": api.emu.application_id, "jwtPrivateKey": api.emu.jwt_private_key}
        missing = await api.request("POST", REFRESH, json_body=body, headers={})
        assert_validation(missing, {"RefreshToken": ["The RefreshToken field is required."]}, newtonsoft=True)
        api.emu.advance(61)
        expired = await api.request(
            "POST", REFRESH, json_body={**body, "refreshToken": grant["refreshToken"]}, headers={}
        )
        assert expired.status == 401
        assert "engine: RefreshJwtToken" in expired.json()["errors"]


async def test_access_tokens_expire_with_the_clock_and_on_demand() -> None:
    async with running(access_token_lifetime=30) as api:
        assert (await api.user_progress()).status == 400  # authenticated, nothing found
        api.emu.advance(31)
        assert_unauthorized(await api.user_progress())
        await api.login()
        assert (await api.user_progress()).status == 400
        api.emu.expire_access_tokens()
        assert_unauthorized(await api.user_progress())
        await api.login()
        assert (await api.user_progress()).status == 400


def _forged_token(api: Api, key: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    claims = json.dumps({"applicationId": api.emu.application_id, "jti": UNKNOWN_ID, "exp": 2**40})
    payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "case",
    [
        "no authorization",
        "not bearer",
        "garbage token",
        "forged with another key",
        "forged with the right key",
        "wrong api key",
        "wrong api secret",
        "no api key",
        "another application's token",
    ],
)
async def test_every_credential_failure_answers_the_documented_401(case: str) -> None:
    async with running() as api:
        headers = dict(api.headers)
        if case == "no authorization":
            del headers["Authorization"]
        elif case == "not bearer":
            headers["Authorization"] = headers["Authorization"].replace("Bearer", "Basic")
        elif case == "garbage token":
            headers["Authorization"] = "Bearer abc.def.ghi"
        elif case == "forged with another key":
            headers["Authorization"] = f"Bearer {_forged_token(api, 'not-the-key')}"
        elif case == "forged with the right key":  # signature fine, never issued
            headers["Authorization"] = f"Bearer {_forged_token(api, api.emu.jwt_private_key)}"
        elif case == "wrong api key":
            headers["x-api-key"] = "0" * 32
        elif case == "wrong api secret":
            headers["x-api-secret"] = "0" * 32
        elif case == "no api key":
            del headers["x-api-key"]
        else:
            other = api.emu.add_application()
            grant = await api.request(
                "POST",
                TOKEN,
                json_body={
                    "applicationId": other["application_id"],
                    "jwtPrivateKey": other["jwt_private_key"],
                },
                headers={},
            )
            headers["Authorization"] = f"Bearer {grant.json()['accessToken']}"  # keys stay ours
        for route, params in [(GEN_USER, {"userId": USER_ID}), (BR_APP, {"applicationId": UNKNOWN_ID})]:
            assert_unauthorized(await api.get(route, params, headers=headers))
        reply = await api.post_form(
            BY_KIND, generation_fields(api.emu.application_id), GENERATION_FILES, headers=headers
        )
        assert_unauthorized(reply)


async def test_an_application_id_other_than_the_tokens_is_401() -> None:
    async with running() as api:
        reply = await api.post_form(BY_KIND, generation_fields(UNKNOWN_ID), GENERATION_FILES)
        assert_unauthorized(reply)
        assert_unauthorized(await api.get(GEN_APP, {"applicationId": UNKNOWN_ID}))
        params = {"applicationId": UNKNOWN_ID, "taskId": UNKNOWN_ID, "imageRenderProcessId": UNKNOWN_ID}
        assert_unauthorized(await api.get(GEN_DOWNLOAD, params))


# generation: start ---------------------------------------------------------------------------------


async def test_start_generation_answers_the_seed_progress_object() -> None:
    async with running() as api:
        body = await api.start_generation()
        assert list(body) == PROGRESS_KEYS
        assert body["messageType"] == "ImageGenerationProgress"
        assert (body["requestRenderState"], body["progress"], body["completedTaskCount"]) == (1, 0, 0)
        assert body["totalTaskCount"] == len(body["tasks"]) == 5
        assert set(body["tasks"].values()) == {1}
        assert (body["renderKind"], body["renderType"]) == (1, 2)
        assert (body["isSuccessful"], body["errorMessage"]) == (True, "")
        assert (body["applicationId"], body["userId"]) == (api.emu.application_id, USER_ID)
        assert "$id" not in json.dumps(body)


@pytest.mark.parametrize(
    ("render_kind", "tasks"), [("0", 5), ("1", 5), ("31", 25), ("992", 25), ("1023", 50)]
)
async def test_tasks_per_process_follow_the_sizes_of_the_render_kind(render_kind: str, tasks: int) -> None:
    async with running() as api:
        assert (await api.start_generation(renderKind=render_kind))["totalTaskCount"] == tasks
    async with running(tasks_per_size=2) as api:
        assert (await api.start_generation(renderKind=render_kind))["totalTaskCount"] == tasks * 2 // 5


async def test_start_generation_missing_fields_answer_the_seed_validation_body() -> None:
    async with running() as api:
        fields = generation_fields(api.emu.application_id, color1Hex=None)
        reply = await api.post_form(BY_KIND, fields, {"backgroundImage": JPEG})
        assert_validation(
            reply,
            {
                "Color1Hex": ["The Color1Hex field is required."],
                "BrandImage": ["The BrandImage field is required."],
            },
            newtonsoft=False,
        )
        assert list(reply.json()["errors"]) == ["Color1Hex", "BrandImage"]


EMOJI = "\N{GRINNING FACE}"


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"mainHeadline": "   "}, {"MainHeadline": ["The MainHeadline field is required."]}),
        ({"actionText": "x" * 100, "mainHeadline": "y" * 255, "description": "z" * 1000}, {}),
        (
            {"actionText": "x" * 101},
            {"ActionText": ["The field ActionText must be a string with a maximum length of 100."]},
        ),
        (
            {"punchline": EMOJI * 128},  # 256 UTF-16 code units
            {"Punchline": ["The field Punchline must be a string with a maximum length of 255."]},
        ),
        (
            {"description": "d" * 1001},
            {"Description": ["The field Description must be a string with a maximum length of 1000."]},
        ),
        ({"color2Hex": "red"}, {"Color2Hex": ["The field Color2Hex must be a hex color such as #FFFFFF."]}),
        (
            {"color3Hex": "#12345"},
            {"Color3Hex": ["The field Color3Hex must be a hex color such as #FFFFFF."]},
        ),
        ({"color1Hex": "#ABC"}, {}),
        (
            {"renderKind": "3"},
            {
                "RenderKind": [
                    "The field RenderKind must be one of: "
                    "0, 1, 2, 4, 8, 16, 31, 32, 64, 128, 256, 512, 992, 1023."
                ]
            },
        ),
        (
            {"renderType": "3"},
            {
                "RenderType": [
                    "The field RenderType must be one of: 0, 1, 2, 4, 8, 16, 19, 32, 64, 100, 127, 128."
                ]
            },
        ),
        ({"renderType": "abc"}, {"RenderType": ["The value 'abc' is not valid for RenderType."]}),
        ({"userId": "not-a-guid"}, {"UserId": ["The value 'not-a-guid' is not valid for UserId."]}),
        ({"renderType": "19", "userId": "{" + USER_ID.upper() + "}"}, {}),
    ],
)
async def test_start_generation_field_rules(overrides: dict[str, str], errors: dict[str, list[str]]) -> None:
    async with running() as api:
        fields = generation_fields(api.emu.application_id, **overrides)
        reply = await api.post_form(BY_KIND, fields, GENERATION_FILES)
        if errors:
            assert_validation(reply, errors, newtonsoft=False)
        else:
            assert reply.status == 200, reply.body


async def test_start_generation_files_must_be_images() -> None:
    async with running() as api:
        fields = generation_fields(api.emu.application_id)
        files = {"brandImage": b"%PDF-1.4 not an image", "backgroundImage": b""}
        reply = await api.post_form(BY_KIND, fields, files)
        message = "The {} field must be a valid image file (png, jpeg, webp or gif)."
        assert_validation(
            reply,
            {
                "BackgroundImage": [message.format("BackgroundImage")],
                "BrandImage": [message.format("BrandImage")],
            },
            newtonsoft=False,
        )
        webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(16)
        assert (
            await api.post_form(
                BY_KIND, fields, {"brandImage": b"GIF89a" + bytes(8), "backgroundImage": webp}
            )
        ).status == 200
        as_text = await api.post_form(BY_KIND, {**fields, "brandImage": "logo.png"}, {"backgroundImage": PNG})
        assert_validation(as_text, {"BrandImage": ["The BrandImage field is required."]}, newtonsoft=False)


async def test_form_names_bind_case_insensitively_and_extra_fields_are_ignored() -> None:
    async with running() as api:
        fields = {k[0].upper() + k[1:]: v for k, v in generation_fields(api.emu.application_id).items()}
        fields["somethingElse"] = "ignored"
        reply = await api.post_form(BY_KIND, fields, {"BRANDIMAGE": PNG, "backgroundImage": PNG})
        assert reply.status == 200, reply.body
        snapshot = api.emu.process(reply.json()["imageRenderProcessId"])
        assert snapshot.inputs.fields["MainHeadline"] == ("Introducing Our Latest Product",)
        assert snapshot.inputs.fields["somethingElse"] == ("ignored",)
        assert set(snapshot.inputs.files) == {"BRANDIMAGE", "backgroundImage"}


async def test_start_without_an_active_channel_answers_the_documented_404() -> None:
    async with running(notification_channel=False) as api:
        app_id = api.emu.application_id
        expected = {
            "engine: Active": [
                f"No active notification channel configurations found for Application {app_id}."
            ],
            "business: Active": [
                f"Error getting active notification channel configurations for Application: {app_id}"
            ],
        }
        fields = generation_fields(app_id)
        assert_layered(await api.post_form(BY_KIND, fields, GENERATION_FILES), 404, expected)
        assert_layered(await api.edit([UNKNOWN_ID]), 404, expected)
        assert_layered(
            await api.post_form(
                BR_START, {"applicationId": app_id, "userId": USER_ID}, {"uploadedImage": PNG}
            ),
            404,
            expected,
        )
        channel_id = api.emu.add_notification_channel(
            "rabbitmq", "amqp://127.0.0.1/", include_image_data=True
        )
        assert [c.channel_id for c in api.emu.notification_channels()] == [channel_id]
        assert (await api.post_form(BY_KIND, fields, GENERATION_FILES)).status == 200
        api.emu.remove_notification_channels()
        assert (await api.post_form(BY_KIND, fields, GENERATION_FILES)).status == 404
        with pytest.raises(ValueError, match="kind"):
            api.emu.add_notification_channel("sms")


async def test_background_removal_channel_rule_is_an_option() -> None:
    async with running(notification_channel=False, channel_required_for_background_removal=False) as api:
        await api.start_background_removal()
        reply = await api.post_form(BY_KIND, generation_fields(api.emu.application_id), GENERATION_FILES)
        assert reply.status == 404


async def test_testing_route_adds_lists_and_removes_notification_channels() -> None:
    async with running(notification_channel=False) as api:
        session = api.session
        body = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "includeImageData": True}
        async with session.post("/_emulator/notification-channels", json=body) as response:
            assert response.status == 201
            channel_id = (await response.json())["id"]
        async with session.get("/_emulator/notification-channels") as response:
            channels = await response.json()
        assert channels == [{**body, "id": channel_id, "active": True}]
        await api.start_generation()
        async with session.post("/_emulator/notification-channels", json={"kind": "pigeon"}) as response:
            assert response.status == 400
        async with session.delete("/_emulator/notification-channels") as response:
            assert response.status == 204
        assert api.emu.notification_channels() == []


async def test_a_urlencoded_form_binds_like_multipart() -> None:
    async with running() as api:
        started = await api.completed_generation()
        fields = {
            "applicationId": api.emu.application_id,
            "userId": USER_ID,
            "taskIds": list(started["tasks"])[:1],
        }
        reply = await api.post_form(EDIT, fields, multipart=False)
        assert reply.status == 200, reply.body
        edit = api.emu.process(started["imageRenderProcessId"]).edits[0]
        assert edit.content_type == "application/x-www-form-urlencoded"
        assert api.emu.process(started["imageRenderProcessId"]).inputs.content_type == "multipart/form-data"
        as_json = await api.request("POST", BY_KIND, json_body={"userId": USER_ID})
        assert as_json.status == 415


async def test_an_unreadable_multipart_body_is_400() -> None:
    async with running() as api:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("userId", USER_ID)
        no_boundary = {**api.headers, "Content-Type": "multipart/form-data"}  # set by hand: no boundary
        reply = await api.request("POST", BR_START, data=form, headers=no_boundary)
        message = "Failed to read the request form. Missing content-type boundary."
        assert_validation(reply, {"": [message]}, newtonsoft=True)
        garbage = {**api.headers, "Content-Type": "multipart/form-data; boundary=xyz"}
        reply = await api.request("POST", BY_KIND, data=b"not multipart", headers=garbage)
        message = "Failed to read the request form. The multipart body is malformed."
        assert_validation(reply, {"": [message]}, newtonsoft=False)


async def test_uploads_are_streamed_and_only_summarised() -> None:
    async with running() as api:
        chunk = PNG + bytes(1 << 20)
        total = 8

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(total):
                yield chunk

        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in {"applicationId": api.emu.application_id, "userId": USER_ID}.items():
            form.add_field(name, value)
        form.add_field("uploadedImage", stream(), filename="big.png", content_type="image/png")
        reply = await api.request("POST", BR_START, data=form)
        assert reply.status == 200, reply.body
        upload = api.emu.process(reply.json()["imageRenderProcessId"]).inputs.files["uploadedImage"]
        assert upload.size == len(chunk) * total
        assert upload.sha256 == hashlib.sha256(chunk * total).hexdigest()
        assert (upload.filename, upload.content_type, upload.image_type) == ("big.png", "image/png", "png")
        assert upload.head == chunk[:64]


# generation: progress -------------------------------------------------------------------------------


async def test_check_user_progress_wraps_and_numbers_ids_through_the_document() -> None:
    async with running() as api:
        first = await api.start_generation()
        second = await api.start_generation()
        await api.start_generation(userId=OTHER_USER_ID)
        reply = await api.user_progress()
        body = reply.json()
        assert reply.status == 200
        assert list(body) == ["$id", "$values"]
        assert body["$id"] == "1"
        values = body["$values"]
        assert [v["imageRenderProcessId"] for v in values] == [
            first["imageRenderProcessId"],
            second["imageRenderProcessId"],
        ]
        assert [(v["$id"], v["tasks"]["$id"]) for v in values] == [("2", "3"), ("4", "5")]
        assert list(values[0]) == ["$id", *PROGRESS_KEYS]
        assert list(values[0]["tasks"])[1:] == list(first["tasks"])
        filtered = (await api.user_progress(process_id=second["imageRenderProcessId"])).json()
        assert [v["imageRenderProcessId"] for v in filtered["$values"]] == [second["imageRenderProcessId"]]
        ignored = await api.get(GEN_USER, {"userId": USER_ID, "unknownParameter": "x"})
        assert len(ignored.json()["$values"]) == 2


async def test_check_user_progress_errors() -> None:
    async with running() as api:
        missing = await api.get(GEN_USER, {})
        assert_validation(missing, {"userId": ["The userId field is required."]}, newtonsoft=True)
        invalid = await api.get(GEN_USER, {"userId": "abc", "imageRenderProcessId": "def"})
        assert_validation(
            invalid,
            {
                "userId": ["The value 'abc' is not valid."],
                "imageRenderProcessId": ["The value 'def' is not valid."],
            },
            newtonsoft=True,
        )
        nothing = await api.user_progress()
        assert_layered(
            nothing,
            400,
            {
                "engine: CheckUserProgress": [
                    f"ImageRenderProcess(ImageRenderProcessId: N/A) was not found for the User: {USER_ID}"
                ],
                "business: CheckUserProgress": [
                    "Not found error occurred while checking image generation process for the User: "
                    f"{USER_ID}"
                ],
            },
        )
        await api.start_generation()
        filtered = await api.user_progress(process_id=UNKNOWN_ID)
        assert filtered.json()["errors"]["engine: CheckUserProgress"] == [
            f"ImageRenderProcess(ImageRenderProcessId: {UNKNOWN_ID}) was not found for the User: {USER_ID}"
        ]


async def test_check_application_all_progresses_is_a_plain_array() -> None:
    async with running() as api:
        app_id = api.emu.application_id
        nothing = await api.get(GEN_APP, {"applicationId": app_id})
        assert_layered(
            nothing,
            400,
            {
                "engine: CheckProgress": [
                    f"No running ImageGenerationProgress found for the ApplicationId: {app_id}"
                ],
                "business: CheckApplicationAllProgresses": [
                    "Not found error occurred while checking image generation process for the "
                    f"ApplicationId: {app_id}"
                ],
            },
        )
        await api.start_generation()
        await api.start_generation(userId=OTHER_USER_ID)
        await api.start_background_removal()
        body = (await api.get(GEN_APP, {"applicationId": app_id})).json()
        assert isinstance(body, list)
        assert [p["userId"] for p in body] == [USER_ID, OTHER_USER_ID]
        assert all(list(p) == PROGRESS_KEYS for p in body)
        assert "$id" not in json.dumps(body)
        missing = await api.get(GEN_APP, {})
        assert_validation(
            missing, {"applicationId": ["The applicationId field is required."]}, newtonsoft=True
        )


async def test_time_moves_tasks_forward_lazily() -> None:
    async with running(auto_complete=True, task_duration=10) as api:
        started = await api.start_generation()
        api.emu.advance(9)
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 0
        api.emu.advance(1.5)
        done = (await api.user_progress()).json()["$values"][0]
        assert (done["requestRenderState"], done["progress"], done["completedTaskCount"]) == (5, 100, 5)
        assert set(done["tasks"].values()) == {5, "3"}  # "$id": "3" and every task succeeded
        assert api.emu.process(started["imageRenderProcessId"]).state == TaskState.SUCCEEDED


async def test_task_duration_jitter_is_seeded() -> None:
    async def durations(seed: int) -> list[float]:
        async with running(auto_complete=True, task_duration=(5.0, 15.0), seed=seed) as api:
            started = await api.start_generation()
            snapshot = api.emu.process(started["imageRenderProcessId"])
            ends = [t.finishes_at for t in snapshot.tasks.values()]
            return [end - snapshot.created_at for end in ends if end is not None]

    first, again = await durations(3), await durations(3)
    assert len(first) == 5
    assert all(5.0 <= d <= 15.5 for d in first)
    assert len({round(d) for d in first}) > 1
    assert all(abs(a - b) < 0.25 for a, b in zip(first, again, strict=True))


async def test_zero_duration_tasks_are_done_at_the_first_look() -> None:
    async with running(auto_complete=True, task_duration=0.0) as api:
        started = await api.start_generation()
        assert started["progress"] == 0  # the start answer always shows the initial state
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 100


async def test_partial_tasks_lists_half_the_tasks_and_true_counts() -> None:
    async with running(partial_tasks=True) as api:
        started = await api.start_generation()
        assert len(started["tasks"]) == 3
        assert started["totalTaskCount"] == 5
        api.emu.finish_process(started["imageRenderProcessId"])
        listed = (await api.user_progress()).json()["$values"][0]
        assert len(listed["tasks"]) == 4  # "$id" + 3 tasks
        assert (listed["completedTaskCount"], listed["progress"]) == (5, 100)


async def test_unknown_task_state_is_reported_for_running_tasks_only() -> None:
    async with running(unknown_task_state=7) as api:
        started = await api.start_generation()
        assert set(started["tasks"].values()) == {7}
        assert started["requestRenderState"] == 1
        first = next(iter(started["tasks"]))
        api.emu.finish_task(first)
        tasks = (await api.user_progress()).json()["$values"][0]["tasks"]
        assert tasks[first] == 5
        assert sorted(v for k, v in tasks.items() if k not in ("$id", first)) == [7, 7, 7, 7]


async def test_failed_tasks_fail_the_process_once_all_have_ended() -> None:
    async with running(auto_complete=True, task_failure_rate=1.0, task_duration=1) as api:
        await api.start_generation()
        api.emu.advance(2)
        body = (await api.user_progress()).json()["$values"][0]
        assert (body["requestRenderState"], body["isSuccessful"]) == (4, False)
        assert body["errorMessage"] == "Image render task failed."
        assert body["completedTaskCount"] == 5
    async with running() as api:
        started = await api.start_generation()
        first, second, *rest = started["tasks"]
        api.emu.fail_task(first, "GPU on fire")
        running_body = (await api.user_progress()).json()["$values"][0]
        assert (running_body["requestRenderState"], running_body["isSuccessful"]) == (1, True)
        assert running_body["tasks"][first] == 4
        api.emu.set_task_state(second, TaskState.CANCELLED)
        for task_id in rest:
            api.emu.finish_task(task_id)
        ended = (await api.user_progress()).json()["$values"][0]
        assert (ended["requestRenderState"], ended["isSuccessful"], ended["errorMessage"]) == (
            4,
            False,
            "GPU on fire",
        )
        assert ended["progress"] == 100
        api.emu.finish_task(first)
        cancelled = (await api.user_progress()).json()["$values"][0]
        assert (cancelled["requestRenderState"], cancelled["isSuccessful"]) == (3, False)
        api.emu.set_task_state(second, TaskState.SCHEDULED)
        back = (await api.user_progress()).json()["$values"][0]
        assert (back["requestRenderState"], back["completedTaskCount"], back["progress"]) == (1, 4, 80)
        assert back["tasks"][second] == 2
        with pytest.raises(KeyError):
            api.emu.finish_task(UNKNOWN_ID)


async def test_read_after_write_lag_hides_new_processes_from_progress_endpoints() -> None:
    async with running(read_after_write_lag=2.0) as api:
        started = await api.start_generation()
        assert (await api.user_progress()).status == 400
        assert (await api.user_progress(process_id=started["imageRenderProcessId"])).status == 400
        assert (await api.get(GEN_APP, {"applicationId": api.emu.application_id})).status == 400
        api.emu.advance(2.5)
        assert (await api.user_progress()).status == 200


async def test_list_finished_false_drops_finished_processes_from_unfiltered_lists() -> None:
    async with running(list_finished=False) as api:
        done = await api.completed_generation()
        running_one = await api.start_generation()
        listed = (await api.user_progress()).json()["$values"]
        assert [p["imageRenderProcessId"] for p in listed] == [running_one["imageRenderProcessId"]]
        app_list = (await api.get(GEN_APP, {"applicationId": api.emu.application_id})).json()
        assert [p["imageRenderProcessId"] for p in app_list] == [running_one["imageRenderProcessId"]]
        filtered = (await api.user_progress(process_id=done["imageRenderProcessId"])).json()["$values"]
        assert filtered[0]["requestRenderState"] == 5
    async with running() as api:
        await api.completed_generation()
        assert len((await api.user_progress()).json()["$values"]) == 1


async def test_many_processes_are_listed_per_user_cheaply() -> None:
    async with running(auto_complete=True, task_duration=(1.0, 3.0)) as api:
        users = [USER_ID, OTHER_USER_ID, UNKNOWN_ID]
        await asyncio.gather(*(api.start_generation(userId=users[i % 3]) for i in range(150)))
        api.emu.advance(3.5)
        for user in users:
            values = (await api.user_progress(user)).json()["$values"]
            assert len(values) == 50
            assert {v["progress"] for v in values} == {100}
        assert api.emu.running_task_count() == 0
        assert len(api.emu.processes_for(USER_ID)) == 50


# generation: edit ------------------------------------------------------------------------------------


async def test_edit_rolls_back_the_selected_tasks_and_they_complete_again() -> None:
    async with running(tasks_per_size=10) as api:
        started = await api.completed_generation()
        process_id = started["imageRenderProcessId"]
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 100
        edited = list(started["tasks"])[:2]
        reply = await api.edit(edited, mainHeadline="Main headline yeni", color1Hex="#fc2c2c")
        body = reply.json()
        assert reply.status == 200, reply.body
        assert list(body) == PROGRESS_KEYS
        assert (body["totalTaskCount"], body["completedTaskCount"], body["progress"]) == (10, 8, 80)
        assert body["requestRenderState"] == 1
        assert [body["tasks"][t] for t in edited] == [1, 1]
        assert sorted(body["tasks"].values()) == [1, 1] + [5] * 8
        snapshot = api.emu.process(process_id)
        assert snapshot.edits[0].fields["mainHeadline"] == ("Main headline yeni",)
        api.emu.finish_task(edited[0])
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 90
        api.emu.finish_task(edited[1])
        final = (await api.user_progress()).json()["$values"][0]
        assert (final["progress"], final["requestRenderState"]) == (100, 5)


async def test_edited_tasks_complete_on_their_own_with_auto_complete() -> None:
    async with running(auto_complete=True, task_duration=1.0) as api:
        started = await api.start_generation()
        api.emu.advance(1.5)
        edited = list(started["tasks"])[:1]
        assert (await api.edit(edited)).json()["progress"] == 80
        api.emu.advance(1.5)
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 100


@pytest.mark.parametrize("encoding", ["repeated parts", "comma separated", "indexed"])
async def test_edit_accepts_task_ids_in_each_form_encoding(encoding: str) -> None:
    async with running() as api:
        started = await api.completed_generation()
        ids = list(started["tasks"])[:3]
        fields: dict[str, str | list[str]] = {"applicationId": api.emu.application_id, "userId": USER_ID}
        if encoding == "repeated parts":
            fields["taskIds"] = ids
        elif encoding == "comma separated":
            fields["taskIds"] = ",".join(ids)
        else:
            fields.update({f"taskIds[{i}]": task_id for i, task_id in enumerate(ids)})
        body = (await api.post_form(EDIT, fields)).json()
        assert body["completedTaskCount"] == 2
        assert [body["tasks"][t] for t in ids] == [1, 1, 1]


async def test_edit_errors() -> None:
    async with running() as api:
        app_id = api.emu.application_id
        missing = await api.post_form(EDIT, {"applicationId": app_id, "userId": USER_ID})
        assert_validation(missing, {"taskIds": ["The TaskIds field is required."]}, newtonsoft=False)
        invalid = await api.edit(["abc"], mainHeadline="m" * 256)
        assert_validation(
            invalid,
            {
                "taskIds": ["The value 'abc' is not valid for TaskIds."],
                "mainHeadline": ["The field MainHeadline must be a string with a maximum length of 255."],
            },
            newtonsoft=False,
        )
        business = [f"Error occurred while editing image render tasks for the User: {USER_ID}"]
        unknown = await api.edit([UNKNOWN_ID])
        assert_layered(
            unknown,
            400,
            {
                "engine: AdCreativesByTasks": [
                    f"Task(s) {UNKNOWN_ID} were not found for the User: {USER_ID}"
                ],
                "business: AdCreativesByTasks": business,
            },
        )
        running_process = await api.start_generation()
        task = next(iter(running_process["tasks"]))
        not_done = await api.edit([task])
        pid = running_process["imageRenderProcessId"]
        assert_layered(
            not_done,
            400,
            {
                "engine: AdCreativesByTasks": [
                    f"ImageRenderProcess(ImageRenderProcessId: {pid}) is not completed yet."
                ],
                "business: AdCreativesByTasks": business,
            },
        )
        other = await api.completed_generation(userId=OTHER_USER_ID)
        assert (await api.edit([next(iter(other["tasks"]))])).status == 400  # another user's task
        done = await api.completed_generation()
        mixed = await api.edit([next(iter(done["tasks"])), task])
        assert mixed.json()["errors"]["engine: AdCreativesByTasks"] == [
            "The tasks belong to more than one ImageRenderProcess."
        ]
        br = await api.start_background_removal()
        api.emu.finish_process(br["imageRenderProcessId"])
        br_task = next(k for k in br["tasks"] if k != "$id")
        assert (await api.edit([br_task])).status == 400


# downloads -----------------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    assert len(zlib.decompress(data[idat + 4 : idat + 4 + length])) == height * (1 + 3 * width)
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\xff\xd8\xff")
    assert data.endswith(b"\xff\xd9")
    sof = data.index(b"\xff\xc0")
    height, width = struct.unpack(">HH", data[sof + 5 : sof + 9])
    return width, height


async def test_download_streams_a_real_image_and_counts_downloads() -> None:
    async with running(image_size=(40, 30)) as api:
        started = await api.completed_generation()
        process_id = started["imageRenderProcessId"]
        first, second = list(started["tasks"])[:2]
        reply = await api.download(process_id, first)
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "image/png"
        assert int(reply.headers["Content-Length"]) == len(reply.body)
        assert reply.headers["Content-Disposition"] == (
            f"attachment; filename={first}.png; filename*=UTF-8''{first}.png"
        )
        assert png_size(reply.body) == (40, 30)
        low = await api.download(process_id, first, lowResolution="True")
        assert png_size(low.body) == (20, 15)
        assert png_size((await api.download(process_id, second, lowResolution="false")).body) == (40, 30)
        assert api.emu.download_count(first) == 2
        assert api.emu.download_count(second) == 1
        assert api.emu.process_download_count(process_id) == 3
        assert api.emu.process(process_id).tasks[first].download_count == 2


async def test_jpeg_downloads() -> None:
    async with running(image_format="jpeg", image_size=(64, 48)) as api:
        started = await api.completed_generation()
        task = next(iter(started["tasks"]))
        reply = await api.download(started["imageRenderProcessId"], task)
        assert reply.headers["Content-Type"] == "image/jpeg"
        assert reply.headers["Content-Disposition"].endswith(f"''{task}.jpg")
        assert jpeg_size(reply.body) == (64, 48)
        low = await api.download(started["imageRenderProcessId"], task, lowResolution="true")
        assert jpeg_size(low.body) == (32, 24)


async def test_download_errors() -> None:
    async with running() as api:
        started = await api.start_generation()
        process_id = started["imageRenderProcessId"]
        task = next(iter(started["tasks"]))
        not_found = {
            "engine: Generation/Download": ["Image content not found."],
            "business: Generation/Download": [
                "Not found error occurred while getting original image content stream"
            ],
        }
        assert_layered(await api.download(process_id, task), 404, not_found)  # still running
        api.emu.fail_task(task)
        assert_layered(await api.download(process_id, task), 404, not_found)  # failed
        assert_layered(await api.download(process_id, UNKNOWN_ID), 404, not_found)
        assert_layered(await api.download(UNKNOWN_ID, task), 404, not_found)
        assert api.emu.download_count(task) == 0
        bad = "f3008b9d-dba7-471f-abc5-624a9c7d60d"
        assert_validation(
            await api.download(process_id, bad),
            {"taskId": [f"The value '{bad}' is not valid."]},
            newtonsoft=True,
        )
        assert_validation(
            await api.download(process_id, task, lowResolution="1"),
            {"lowResolution": ["The value '1' is not valid."]},
            newtonsoft=True,
        )
        missing = await api.get(GEN_DOWNLOAD, {"applicationId": api.emu.application_id})
        assert_validation(
            missing,
            {
                "taskId": ["The taskId field is required."],
                "imageRenderProcessId": ["The imageRenderProcessId field is required."],
            },
            newtonsoft=True,
        )
        br = await api.start_background_removal()
        api.emu.finish_process(br["imageRenderProcessId"])
        br_task = next(k for k in br["tasks"] if k != "$id")
        assert (await api.download(br["imageRenderProcessId"], br_task)).status == 404  # wrong feature


# large downloads, ranges, cut bodies ----------------------------------------------------------------


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, checking every chunk's CRC and that nothing follows IEND."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(data[pos + 4 : pos + 8 + length]) == crc, kind
        types.append(kind)
        pos += 12 + length
    assert pos == len(data)
    return types


@pytest.mark.parametrize("count", [0, 1, 7, 4096, 1 << 20, 3_000_001])
@pytest.mark.parametrize("crc", [0, 1, 0xDEADBEEF])
def test_crc_of_zeros_is_zlibs_without_the_bytes(count: int, crc: int) -> None:
    from adcreative_async.testing._images import crc32_of_zeros

    assert crc32_of_zeros(count, crc) == zlib.crc32(bytes(count), crc)


def test_padded_pngs_are_exact_valid_and_sliceable() -> None:
    from adcreative_async.testing._images import iter_segments, padded_png, png_bytes, segments_size

    base = len(png_bytes(8, 8, (1, 2, 3)))
    for size in (base, base + 12, base + 13, 300_001):
        segments = padded_png(size, 8, 8, (1, 2, 3))
        data = b"".join(bytes(piece) for piece in iter_segments(segments, 0, size))
        assert len(data) == segments_size(segments) == size
        types = png_chunk_types(data)
        assert types[:2] == [b"IHDR", b"IDAT"]
        assert types[-1] == b"IEND"
        for start, stop in ((0, 10), (7, size), (size - 3, size), (base - 20, size - 1)):
            assert b"".join(bytes(p) for p in iter_segments(segments, start, stop)) == data[start:stop]
    with pytest.raises(ValueError, match="at least"):
        padded_png(base + 11, 8, 8, (1, 2, 3))
    huge = padded_png(5 << 30, 8, 8, (1, 2, 3))  # never materialised
    assert segments_size(huge) == 5 << 30
    assert all(s < 1 << 31 for s in huge if isinstance(s, int))  # one PNG chunk holds < 2 GiB


async def test_download_size_streams_a_valid_png_of_exactly_that_size() -> None:
    size = 3 * (1 << 20) + 5
    async with running(download_size=size, image_size=(40, 30)) as api:
        started = await api.completed_generation()
        process_id, task = started["imageRenderProcessId"], next(iter(started["tasks"]))
        reply = await api.download(process_id, task)
        assert int(reply.headers["Content-Length"]) == len(reply.body) == size
        assert png_chunk_types(reply.body) == [b"IHDR", b"IDAT", b"paDd", b"IEND"]
        assert png_size(reply.body) == (40, 30)
        low = await api.download(process_id, task, lowResolution="true")
        assert len(low.body) == size // 4
        assert png_size(low.body) == (20, 15)
        assert api.emu.download_count(task) == 2


async def test_ranges_are_ignored_unless_enabled() -> None:
    async with running() as api:
        started = await api.completed_generation()
        process_id, task = started["imageRenderProcessId"], next(iter(started["tasks"]))
        full = await api.download(process_id, task)
        reply = await api.get(
            GEN_DOWNLOAD,
            {"applicationId": api.emu.application_id, "taskId": task, "imageRenderProcessId": process_id},
            headers={**api.headers, "Range": "bytes=10-"},
        )
        assert (reply.status, reply.body) == (200, full.body)
        assert "Accept-Ranges" not in reply.headers
        assert "Content-Range" not in reply.headers


async def test_range_requests_answer_206_and_count_as_downloads() -> None:
    async with running(range_requests=True, download_size=100_000) as api:
        started = await api.completed_generation()
        process_id, task = started["imageRenderProcessId"], next(iter(started["tasks"]))
        full = await api.download(process_id, task)
        size = len(full.body)
        assert full.headers["Accept-Ranges"] == "bytes"
        etag = {k.lower(): v for k, v in full.headers.items()}["etag"]  # sent as "Etag" by aiohttp
        params = {"applicationId": api.emu.application_id, "taskId": task, "imageRenderProcessId": process_id}

        async def ranged(value: str, **extra: str) -> Reply:
            return await api.get(GEN_DOWNLOAD, params, headers={**api.headers, "Range": value, **extra})

        for header, start, stop in [
            ("bytes=10-", 10, size),
            ("bytes=10-19", 10, 20),
            ("bytes=-5", size - 5, size),
            ("bytes=5-999999999", 5, size),
            (f"bytes={size - 1}-", size - 1, size),
        ]:
            reply = await ranged(header)
            assert reply.status == 206, header
            assert reply.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
            assert int(reply.headers["Content-Length"]) == stop - start
            assert reply.body == full.body[start:stop]
        for header in ("bytes=0-0,5-6", "bytes=abc", "bytes=9-3", "items=1-"):  # served whole, as ASP.NET
            reply = await ranged(header)
            assert (reply.status, reply.body) == (200, full.body), header
        unsatisfiable = await ranged(f"bytes={size}-")
        assert unsatisfiable.status == 416
        assert unsatisfiable.headers["Content-Range"] == f"bytes */{size}"
        assert (await ranged("bytes=10-", **{"If-Range": etag})).status == 206
        stale = await ranged("bytes=10-", **{"If-Range": '"another"'})
        assert (stale.status, stale.body) == (200, full.body)
        assert api.emu.download_count(task) == 1 + 5 + 4 + 2  # every 200 and 206; not the 416


async def test_truncated_downloads_drop_the_connection_mid_body() -> None:
    async with running(download_size=1 << 20) as api:
        started = await api.completed_generation()
        process_id, task = started["imageRenderProcessId"], next(iter(started["tasks"]))
        params = {"applicationId": api.emu.application_id, "taskId": task, "imageRenderProcessId": process_id}
        api.emu.truncate_next_download(task, 1000, count=2)
        for _ in range(2):
            async with api.session.get(f"/api/v1/{GEN_DOWNLOAD}", params=params, headers=api.headers) as r:
                assert r.headers["Content-Length"] == str(1 << 20)  # the whole length is announced
                assert len(await r.content.readexactly(1000)) == 1000
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
        assert len((await api.download(process_id, task)).body) == 1 << 20  # then served whole
        assert api.emu.download_count(task) == 3  # cut downloads count too
        control = await api.request(
            "POST", "../../_emulator/truncate-next-download", json_body={"taskId": task, "afterBytes": 0}
        )
        assert control.status == 204
        async with api.session.get(f"/api/v1/{GEN_DOWNLOAD}", params=params, headers=api.headers) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        bad = await api.request(
            "POST", "../../_emulator/truncate-next-download", json_body={"taskId": UNKNOWN_ID}
        )
        assert bad.status == 400
        with pytest.raises(KeyError):
            api.emu.truncate_next_download(UNKNOWN_ID, 10)
        with pytest.raises(ValueError, match="after_bytes"):
            api.emu.truncate_next_download(task, -1)


def _multipart(fields: Mapping[str, str], files: Mapping[str, bytes]) -> tuple[bytes, str]:
    boundary = "emulator-test-boundary"
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, content in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _raw_request(
    api: Api, headers: Mapping[str, str], body: bytes | None = None, announced: int | None = None
) -> tuple[bytes, bytes]:
    """POST the background-removal start with ``Expect: 100-continue`` over a raw socket.

    Sends the head, reads what comes first; sends ``body`` only after a ``100 Continue``; then reads to
    the end of the connection. Returns (what came first, everything).
    """
    host, port = api.emu.base_url.removeprefix("http://").split(":")
    length = announced if announced is not None else len(body or b"")
    head = "".join(
        [
            f"POST /api/v1/{BR_START} HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n",
            f"Content-Length: {length}\r\n",
            *(f"{k}: {v}\r\n" for k, v in headers.items()),
            "\r\n",
        ]
    )
    received = b""
    with anyio.fail_after(10):  # a server that waited for the body would hang here
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(head.encode())
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
            first = received
            if first.startswith(b"HTTP/1.1 100 ") and body is not None:
                await stream.send(body)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    received += await stream.receive()
    return first, received


async def test_expect_continue_is_answered_only_when_the_body_is_read() -> None:
    async with running() as api:
        fields = {"applicationId": api.emu.application_id, "userId": USER_ID}
        body, content_type = _multipart(fields, {"uploadedImage": JPEG})
        good = {**api.headers, "Content-Type": content_type, "Connection": "close"}
        # valid: 100 Continue comes when the handler reads the body, then the answer
        first, everything = await _raw_request(api, good, body)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert b"HTTP/1.1 200 OK" in everything
        assert len(api.emu.processes_for(USER_ID)) == 1
        # bad credentials: the 401 without 100 Continue, before a (huge) body is sent; the
        # connection closes, as Kestrel closes it, since the announced body never came
        bad = {**api.auth_headers("not-a-token"), "Content-Type": content_type}
        first, everything = await _raw_request(api, bad, announced=1 << 30)
        assert first.startswith(b"HTTP/1.1 401 ")
        assert b"100 Continue" not in everything
        assert b"connection: close" in everything.lower()
        assert b"Token is missing" in everything
        # any answer given before the body is needed: unsupported media type, injected failures
        text = {**api.headers, "Content-Type": "text/plain"}
        first, everything = await _raw_request(api, text, announced=1 << 30)
        assert first.startswith(b"HTTP/1.1 415 ")
        api.emu.fail_next(BR_START, 503)
        first, everything = await _raw_request(api, good, announced=1 << 30)
        assert first.startswith(b"HTTP/1.1 503 ")
        assert len(api.emu.processes_for(USER_ID)) == 1


async def test_aiohttp_clients_waiting_for_continue_get_the_401_without_sending() -> None:
    async with running() as api:
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(64):
                sent += 1 << 20
                yield bytes(1 << 20)

        headers = {**api.auth_headers("not-a-token"), "Content-Type": "multipart/form-data; boundary=x"}
        async with api.session.post(
            f"/api/v1/{BR_START}", data=body(), headers=headers, expect100=True
        ) as response:
            assert response.status == 401
        assert sent == 0


# background remover -------------------------------------------------------------------------------


async def test_background_removal_start_answers_the_seed_shape() -> None:
    async with running() as api:
        body = await api.start_background_removal()
        expected_keys = ["$id", *PROGRESS_KEYS]
        expected_keys.remove("renderKind")
        assert list(body) == expected_keys
        assert body["$id"] == "1"
        assert body["messageType"] == "ImageBackgroundRemovingProgress"
        assert (body["renderType"], body["totalTaskCount"], body["requestRenderState"]) == (8, 1, 1)
        assert list(body["tasks"].values()) == ["2", 1]
        snapshot = api.emu.process(body["imageRenderProcessId"])
        assert snapshot.feature == "background_removal"
        assert snapshot.inputs.files["uploadedImage"].image_type == "jpeg"


async def test_background_removal_start_validation() -> None:
    async with running() as api:
        fields = {"applicationId": api.emu.application_id, "userId": USER_ID}
        missing = await api.post_form(BR_START, fields)
        assert_validation(
            missing,
            {
                "UploadedImage": [
                    "UploadedImage is required.",
                    "The request does not contain a file. Please make sure to upload the file.",
                ]
            },
            newtonsoft=True,
        )
        not_image = await api.post_form(BR_START, {"userId": "x"}, {"uploadedImage": b"hello"})
        assert_validation(
            not_image,
            {
                "ApplicationId": ["The ApplicationId field is required."],
                "UserId": ["The value 'x' is not valid for UserId."],
                "UploadedImage": [
                    "The UploadedImage field must be a valid image file (png, jpeg, webp or gif)."
                ],
            },
            newtonsoft=True,
        )


async def test_background_removal_progress_lists_and_download() -> None:
    async with running() as api:
        first = await api.start_background_removal()
        second = await api.start_background_removal()
        await api.start_generation()
        listed = (await api.get(BR_USER, {"userId": USER_ID})).json()
        assert [v["imageRenderProcessId"] for v in listed["$values"]] == [
            first["imageRenderProcessId"],
            second["imageRenderProcessId"],
        ]
        assert [(v["$id"], v["tasks"]["$id"]) for v in listed["$values"]] == [("2", "3"), ("4", "5")]
        params = {"userId": USER_ID, "imageBackgroundRemoverProcessId": second["imageRenderProcessId"]}
        assert len((await api.get(BR_USER, params)).json()["$values"]) == 1
        generation_name = {"userId": USER_ID, "imageRenderProcessId": second["imageRenderProcessId"]}
        assert len((await api.get(BR_USER, generation_name)).json()["$values"]) == 2  # not its parameter
        everything = (await api.get(BR_APP, {"applicationId": api.emu.application_id})).json()
        assert list(everything) == ["$id", "$values"]
        assert len(everything["$values"]) == 2
        process_id = first["imageRenderProcessId"]
        task = next(k for k in first["tasks"] if k != "$id")
        assert_layered(
            await api.download(process_id, task, BR_DOWNLOAD),
            404,
            {
                "engine: BackgroundRemoving/Download": ["Image content not found."],
                "business: BackgroundRemoving/Download": [
                    "Not found error occurred while getting original image content stream"
                ],
            },
        )
        api.emu.finish_task(task)
        image = await api.download(process_id, task, BR_DOWNLOAD)
        assert png_size(image.body) == (64, 64)
        assert api.emu.download_count(task) == 1


async def test_background_removal_nothing_found_and_validation() -> None:
    async with running() as api:
        app_id = api.emu.application_id
        assert_layered(
            await api.get(BR_USER, {"userId": USER_ID}),
            404,
            {
                "engine: CheckProgress": [
                    "No running or incomplete ImageBackgroundRemovingProcess was not found for the User: "
                    f"{USER_ID} or the Application: N/A"
                ],
                "business: CheckUserProgress": [
                    "Not found error occurred while checking image background removing process for the "
                    f"UserId: {USER_ID}"
                ],
            },
        )
        assert_layered(
            await api.get(BR_APP, {"applicationId": app_id}),
            404,
            {
                "engine: CheckProgress": [
                    "No running or incomplete ImageFaceEnhancingProcess was not found for the User: N/A "
                    f"or the Application: {app_id}"
                ],
                "business: CheckApplicationAllProgresses": [
                    "Not found error occurred while checking image background removing process for the "
                    f"ApplicationId: {app_id}"
                ],
            },
        )
        missing_user = await api.get(BR_USER, {})
        assert_validation(missing_user, {"userId": ["The userId field is required."]}, newtonsoft=True)
        missing_app = (await api.get(BR_APP, {})).json()
        assert list(missing_app) == ["$id", "type", "title", "status", "errors", "traceId"]
        assert missing_app["errors"] == {"applicationId": ["The applicationId field is required."]}


# injected failures, counters, routes --------------------------------------------------------------


async def test_fail_next_answers_the_documented_errors_then_recovers() -> None:
    async with running() as api:
        emu = api.emu
        emu.fail_next(GEN_USER, 500, count=2)
        expected = {
            "business: CheckUserProgress": [
                "An unexpected error occurred while checking image generation process."
            ]
        }
        assert_layered(await api.user_progress(), 500, expected)
        assert_layered(await api.user_progress(), 500, expected)
        assert (await api.user_progress()).status == 400  # served again: nothing found
        emu.fail_next(BR_USER, 500)
        assert_layered(
            await api.get(BR_USER, {"userId": USER_ID}),
            500,
            {"business: CheckUserProgress": ["An unexpected error occurred while processing the request."]},
        )
        emu.fail_next("/api/v1/image/generation/checkuserprogress", 429, retry_after=7)
        limited = await api.user_progress()
        assert limited.headers["Retry-After"] == "7"
        assert_layered(
            limited, 429, {"business: CheckUserProgress": ["Too many requests. Retry after 7 seconds."]}
        )
        for status in (502, 503, 504):
            emu.fail_next(GEN_DOWNLOAD, status)
            gateway = await api.download(UNKNOWN_ID, UNKNOWN_ID)
            assert gateway.status == status
            assert gateway.headers["Content-Type"].startswith("text/html")
        emu.fail_next(BY_KIND, 401)
        assert_unauthorized(await api.post_form(BY_KIND, {}))
        emu.fail_next(GEN_DOWNLOAD, 404)
        assert (await api.download(UNKNOWN_ID, UNKNOWN_ID)).json()["errors"][
            "engine: Generation/Download"
        ] == ["Image content not found."]
        emu.fail_next(BY_KIND, 404)
        assert "engine: Active" in (await api.post_form(BY_KIND, {})).json()["errors"]
        emu.fail_next(TOKEN, 400)
        assert (await api.token()).json()["errors"] == {
            "business: GenerateJwtToken": ["Injected error 400 for testing."]
        }
        with pytest.raises(ValueError, match="unknown route"):
            emu.fail_next("Image/Nope", 500)
        with pytest.raises(ValueError, match="status"):
            emu.fail_next(GEN_USER, 302)


async def test_request_counters() -> None:
    async with running() as api:
        emu = api.emu
        await api.user_progress()
        await api.get("image/generation/checkuserprogress", {"userId": USER_ID})
        await api.request("POST", GEN_USER)
        await api.start_generation()
        assert emu.request_count(GEN_USER) == 3
        assert emu.request_count(GEN_USER, "get") == 2
        assert emu.request_count(GEN_USER, "POST") == 1
        assert emu.request_count(TOKEN) == 1
        assert emu.request_count(BY_KIND) == 1
        assert emu.requests == {
            f"POST {TOKEN}": 1,
            f"GET {GEN_USER}": 2,
            f"POST {GEN_USER}": 1,
            f"POST {BY_KIND}": 1,
        }
        async with api.session.get("/_emulator/requests") as response:
            assert (await response.json())[f"GET {GEN_USER}"] == 2
        emu.requests.clear()
        assert emu.request_count(GEN_USER) == 0


async def test_processes_route_reports_when_tasks_finished() -> None:
    async with running(auto_complete=True, task_duration=0.05) as api:
        emu = api.emu
        started = await api.start_generation()
        process_id = started["imageRenderProcessId"]
        first, *rest = started["tasks"]
        emu.finish_task(first)
        async with api.session.get("/_emulator/processes", params={"userId": USER_ID}) as response:
            (listed,) = await response.json()
        assert listed["processId"] == process_id
        assert listed["feature"] == emu.process(process_id).feature
        finished = listed["tasks"][first]
        assert finished["state"] == 5
        assert finished["finishedAt"] == pytest.approx(emu.clock.now(), abs=5)
        assert all(listed["tasks"][t]["finishedAt"] is None for t in rest)
        assert all(listed["tasks"][t]["finishesAt"] is not None for t in rest)
        emu.advance(1)
        async with api.session.get("/_emulator/processes", params={"userId": USER_ID}) as response:
            (listed,) = await response.json()
        assert all(t["finishedAt"] is not None and t["finishesAt"] is None for t in listed["tasks"].values())
        async with api.session.get("/_emulator/processes", params={"userId": "nope"}) as response:
            assert response.status == 400


async def test_unknown_routes_and_wrong_methods() -> None:
    async with running() as api:
        assert (await api.request("GET", "Image/Nope")).status == 404
        wrong = await api.request("GET", BY_KIND)
        assert wrong.status == 405
        assert wrong.headers["Allow"] == "POST"
        async with api.session.get("/elsewhere") as response:
            assert response.status == 404


async def test_testing_routes_control_time_tokens_and_failures() -> None:
    async with running(auto_complete=True, task_duration=5) as api:
        await api.start_generation()
        async with api.session.post("/_emulator/advance", json={"seconds": 6}) as response:
            assert response.status == 204
        assert (await api.user_progress()).json()["$values"][0]["progress"] == 100
        async with api.session.post(
            "/_emulator/fail-next", json={"route": GEN_USER, "status": 503}
        ) as response:
            assert response.status == 204
        assert (await api.user_progress()).status == 503
        async with api.session.post("/_emulator/fail-next", json={"route": "nope"}) as response:
            assert response.status == 400
        async with api.session.post("/_emulator/expire-access-tokens") as response:
            assert response.status == 204
        assert_unauthorized(await api.user_progress())


async def test_lifetime_credentials_and_options() -> None:
    emu = Emulator(application_id=UNKNOWN_ID.upper(), api_key="k", api_secret="s", jwt_private_key="p")
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    await emu.start()
    try:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.credentials == {
            "application_id": UNKNOWN_ID,
            "api_key": "k",
            "api_secret": "s",
            "jwt_private_key": "p",
            "base_url": emu.base_url,
        }
        with pytest.raises(RuntimeError):
            await emu.start()
        assert isinstance(emu.options, EmulatorOptions)
    finally:
        await emu.close()
        await emu.close()
    with pytest.raises(ValueError, match="GUID"):
        Emulator(application_id="nope")


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"task_failure_rate": 2.0}, "task_failure_rate"),
        ({"image_format": "gif"}, "image_format"),
        ({"task_duration": (3.0, 1.0)}, "task_duration"),
        ({"image_size": (1, 1)}, "image_size"),
        ({"tasks_per_size": 0}, "tasks_per_size"),
        ({"access_token_lifetime": 0}, "lifetimes"),
        ({"read_after_write_lag": -1}, "read_after_write_lag"),
        ({"download_size": 1 << 20, "image_format": "jpeg"}, "download_size needs image_format='png'"),
        ({"download_size": 100}, "download_size must be at least"),
    ],
)
def test_options_are_checked(option: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Emulator(**option)


async def test_seeded_emulators_issue_the_same_ids() -> None:
    async def ids(seed: int) -> tuple[str, list[str]]:
        async with running(seed=seed) as api:
            started = await api.start_generation()
            return api.emu.api_key, list(started["tasks"])

    assert await ids(5) == await ids(5)
    assert await ids(5) != await ids(6)


# command line ------------------------------------------------------------------------------------------


async def test_command_line_serves_and_prints_its_credentials() -> None:
    root = ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adcreative_async.testing",
        "--port",
        "0",
        "--seed",
        "3",
        "--no-auto-complete",
        "--task-duration",
        "1",
        "2",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await process.stdout.readline()
        info = json.loads(line)
        assert set(info) == {"application_id", "api_key", "api_secret", "jwt_private_key", "base_url"}
        async with aiohttp.ClientSession(info["base_url"]) as session:
            async with session.post(
                f"/api/v1/{TOKEN}",
                json={"applicationId": info["application_id"], "jwtPrivateKey": info["jwt_private_key"]},
            ) as response:
                token = (await response.json())["accessToken"]
            headers = {
                "Authorization": f"Bearer {token}",
                "x-api-key": info["api_key"],
                "x-api-secret": info["api_secret"],
            }
            async with session.get(
                f"/api/v1/{BR_APP}", params={"applicationId": info["application_id"]}, headers=headers
            ) as response:
                assert response.status == 404  # authenticated; nothing found yet
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.communicate()
    assert process.returncode == 0


def test_command_line_rejects_bad_options() -> None:
    from adcreative_async.testing import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--task-duration", "1", "2", "3"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--download-size", "10"])
    assert exit_info.value.code == 2


def test_command_line_sets_large_download_options() -> None:
    from adcreative_async.testing._cli import _emulator, _parser

    default = _emulator(_parser().parse_args([])).options
    assert (default.download_size, default.range_requests) == (None, False)
    options = _emulator(_parser().parse_args(["--download-size", "1073741824", "--range-requests"])).options
    assert (options.download_size, options.range_requests) == (1 << 30, True)


def test_command_line_sets_the_start_latency() -> None:
    from adcreative_async.testing import main
    from adcreative_async.testing._cli import _emulator, _parser

    assert _emulator(_parser().parse_args([])).options.start_latency == 0.0
    assert _emulator(_parser().parse_args(["--start-latency", "0.2"])).options.start_latency == 0.2
    options = _emulator(_parser().parse_args(["--start-latency", "0.05", "0.3"])).options
    assert options.latency_range == (0.05, 0.3)
    with pytest.raises(SystemExit) as exit_info:
        main(["--start-latency", "1", "2", "3"])
    assert exit_info.value.code == 2
