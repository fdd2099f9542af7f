"""The client's transport against a scriptable loopback server: headers, auth retry, redirects,
serialisation, escape hatches, timeouts and error translation."""

from __future__ import annotations

import io
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from miniapi import MiniAPI
from test_files import PNG

from adcreative_async import (
    AdCreativeClient,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientNotOpenError,
    ConfigurationError,
    InvalidRequestError,
    ServerError,
    Timeout,
    UnexpectedResponseError,
    __version__,
)
from adcreative_async._transport import TOKEN_RENEWALS

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROCESS = "e6c59f37-a794-468d-81aa-c9ef79dc042c"
TASK = "50d04155-2bd9-46c1-85cb-47fa18cd02d7"
BG_PROGRESS = "/api/v1/Image/BackgroundRemoving/CheckUserProgress"
BG_START = "/api/v1/Image/BackgroundRemoving/AdCreative"
PROGRESS_ITEM = {
    "$id": "2",
    "messageType": "ImageBackgroundRemovingProgress",
    "requestRenderState": 1,
    "applicationId": MiniAPI.APP,
    "userId": USER,
    "imageRenderProcessId": PROCESS,
    "totalTaskCount": 1,
    "completedTaskCount": 0,
    "progress": 0,
    "tasks": {"$id": "3", TASK: 1},
    "renderType": 8,
    "isSuccessful": True,
    "errorMessage": "",
}
UNAUTHORIZED = {
    "errors": {"business:": ["Token is missing, invalid or ApplicationId is not found in the token."]},
    "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
    "title": "One or more errors occurred.",
    "status": 401,
    "detail": None,
    "instance": None,
    "extensions": {"traceId": "00-735817749634d9300906511b8291993f-15940a2feb6bac0a-00"},
}


@pytest.fixture
async def api() -> AsyncIterator[MiniAPI]:
    async with MiniAPI() as server:
        yield server


@pytest.fixture
async def client(api: MiniAPI) -> AsyncIterator[AdCreativeClient]:
    async with AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as c:
        yield c


async def test_feature_calls_carry_every_credential_header(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("GET", BG_PROGRESS, 200, {"$id": "1", "$values": [PROGRESS_ITEM]})
    (progress,) = await client.background_remover.user_progress()
    assert progress.tasks == {TASK: 1}
    (seen,) = api.requests_to(BG_PROGRESS)
    assert seen.headers["Authorization"] == "Bearer token-1"
    assert seen.headers["x-api-key"] == "KEY-1234567890"
    assert seen.headers["x-api-secret"] == "SECRET-1234567890"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"].startswith(f"adcreative-async/{__version__} python/")
    assert seen.query == [("userId", USER)]


async def test_token_request_is_versioned_json(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("GET", BG_PROGRESS, 200, [])
    await client.background_remover.user_progress()
    (token,) = api.requests_to("/api/v1/Authorization/GenerateJwtToken")
    assert token.headers["Content-Type"] == "application/json; x-api-version=1.0"
    assert "Authorization" not in token.headers
    assert token.json == {"applicationId": MiniAPI.APP, "jwtPrivateKey": "PRIVATE-1234567890"}


async def test_query_values_are_serialised_by_the_sdk(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("GET", BG_PROGRESS, 200, [])
    await client.background_remover.user_progress(
        uuid.UUID(USER), PROCESS.upper(), extra_query={"flag": True, "id": uuid.UUID(TASK), "n": None}
    )
    (seen,) = api.requests_to(BG_PROGRESS)
    assert seen.query == [
        ("userId", USER),
        ("imageBackgroundRemoverProcessId", PROCESS),
        ("flag", "true"),
        ("id", TASK),
    ]


async def test_401_renews_the_token_and_retries_once(api: MiniAPI, client: AdCreativeClient) -> None:
    calls = 0

    @api.route("GET", BG_PROGRESS)
    async def first_401(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(UNAUTHORIZED, status=401)
        return web.json_response([PROGRESS_ITEM])

    assert len(await client.background_remover.user_progress()) == 1
    tokens = [s.headers["Authorization"] for s in api.requests_to(BG_PROGRESS)]
    assert tokens == ["Bearer token-1", "Bearer token-2"]


async def test_a_401_after_the_last_renewal_raises_authentication_error(
    api: MiniAPI, client: AdCreativeClient
) -> None:
    api.answer("GET", BG_PROGRESS, 401, UNAUTHORIZED)
    with pytest.raises(AuthenticationError, match="Token is missing") as info:
        await client.background_remover.user_progress()
    assert info.value.trace_id == "00-735817749634d9300906511b8291993f-15940a2feb6bac0a-00"
    assert len(api.requests_to(BG_PROGRESS)) == 1 + TOKEN_RENEWALS


class _Unseekable(io.RawIOBase):
    """A pipe-like binary file: readable once, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


@pytest.mark.parametrize("kind", ["async iterable", "unseekable file"])
async def test_upload_from_non_replayable_source_is_not_retried_after_401(
    api: MiniAPI, client: AdCreativeClient, kind: str
) -> None:
    api.answer("POST", BG_START, 401, UNAUTHORIZED)

    async def image() -> AsyncIterator[bytes]:
        yield PNG

    source: Any = image() if kind == "async iterable" else _Unseekable(PNG)
    with pytest.raises(AuthenticationError):
        await client.background_remover.remove(source)
    assert len(api.requests_to(BG_START)) == 1


@pytest.mark.parametrize("kind", ["path", "bytes", "seekable file"])
async def test_upload_from_replayable_source_is_retried_after_401(
    api: MiniAPI, client: AdCreativeClient, tmp_path: Path, kind: str
) -> None:
    calls = 0

    @api.route("POST", BG_START)
    async def start(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(UNAUTHORIZED, status=401)
        return web.json_response({**PROGRESS_ITEM, "$id": "1"})

    path = tmp_path / "p.png"
    path.write_bytes(PNG)
    handle = io.BytesIO(b"skipped" + PNG)
    handle.name = "p.png"
    handle.seek(7)  # a file object is sent from its position, on each attempt
    source: Any = {"path": path, "bytes": PNG, "seekable file": handle}[kind]
    job = await client.background_remover.remove(source)
    assert job.process_id == PROCESS
    sent = api.requests_to(BG_START)
    assert len(sent) == 2
    name = "image.png" if kind == "bytes" else "p.png"
    for attempt in sent:  # the body went out whole both times
        assert attempt.form == [
            ("applicationId", MiniAPI.APP, None),
            ("userId", USER, None),
            ("uploadedImage", PNG, name),
        ]
    assert not handle.closed


async def test_redirects_are_never_followed(api: MiniAPI, client: AdCreativeClient) -> None:
    async with MiniAPI() as other:
        api.answer("GET", BG_PROGRESS, 302, b"", headers={"Location": f"{other.base_url}/steal"})
        with pytest.raises(APIError, match="redirect") as info:
            await client.background_remover.user_progress()
        assert info.value.status == 302
        assert other.seen == []
        for code in (301, 307, 308):
            api.answer("GET", BG_PROGRESS, code, b"", headers={"Location": f"{other.base_url}/steal"})
            with pytest.raises(APIError):
                await client.background_remover.user_progress()
        assert other.seen == []


async def test_connection_refused_is_an_unsent_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AdCreativeClient(
        application_id=MiniAPI.APP,
        api_key="KEY-1234567890",
        api_secret="SECRET-1234567890",
        jwt_private_key="PRIVATE-1234567890",
        base_url=f"http://127.0.0.1:{port}",
        user_id=USER,
    )
    async with client:
        with pytest.raises(APIConnectionError, match="cannot connect") as info:
            await client.background_remover.user_progress()
    error = info.value
    assert error.sent is False
    assert error.__cause__ is None
    assert error.__context__ is None
    for text in ("KEY-1234567890", "SECRET-1234567890", "PRIVATE-1234567890"):
        assert text not in str(error)


async def test_read_timeout_is_a_timeout_error(api: MiniAPI) -> None:
    release = anyio.Event()

    @api.route("GET", BG_PROGRESS)
    async def stall(request: web.Request) -> web.StreamResponse:
        with anyio.move_on_after(5):
            await release.wait()
        return web.json_response([])

    async with AdCreativeClient(
        **api.credentials, user_id=USER, timeout=Timeout(read=0.05), trust_env=False
    ) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.background_remover.user_progress()
        assert info.value.__context__ is None
        # a per-call total deadline works the same way
        with pytest.raises(APITimeoutError):
            await client.background_remover.user_progress(timeout=0.05)
    release.set()


async def test_malformed_success_body_is_a_typed_error(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("GET", BG_PROGRESS, 200, b"{not json")
    with pytest.raises(UnexpectedResponseError, match="does not match the documented shape"):
        await client.background_remover.user_progress()
    api.answer("GET", BG_PROGRESS, 200, [{"tasks": "nope"}])
    with pytest.raises(UnexpectedResponseError):
        await client.background_remover.user_progress()


async def test_problem_json_and_html_errors_are_typed(api: MiniAPI, client: AdCreativeClient) -> None:
    body = json.dumps({"title": "One or more validation errors occurred.", "errors": {"userId": ["bad"]}})
    api.answer("GET", BG_PROGRESS, 400, body.encode(), headers={"Content-Type": "application/problem+json"})
    with pytest.raises(BadRequestError, match=r"userId \(parameter user_id\): bad"):
        await client.background_remover.user_progress()
    api.answer(
        "GET", BG_PROGRESS, 503, b"<html>Service Unavailable</html>", headers={"Content-Type": "text/html"}
    )
    with pytest.raises(ServerError, match="a body of 32 bytes that is not JSON") as caught:
        await client.background_remover.user_progress()
    assert caught.value.body == b"<html>Service Unavailable</html>"  # kept, never quoted in the message


async def test_escape_hatches_reach_the_wire(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("POST", BG_START, 200, {**PROGRESS_ITEM, "$id": "1"})
    await client.background_remover.remove(
        PNG, extra_form={"newField": 5, "many": ["a", "b"]}, extra_headers={"X-Trace": "t1"}
    )
    (seen,) = api.requests_to(BG_START)
    assert seen.headers["X-Trace"] == "t1"
    assert [(n, v) for n, v, _ in seen.form][-3:] == [("newField", "5"), ("many", "a"), ("many", "b")]
    with pytest.raises(InvalidRequestError, match="extra_form: 'userId' is a documented field"):
        await client.background_remover.remove(PNG, extra_form={"userId": USER})


async def test_multipart_parts_are_sized_named_and_typed(api: MiniAPI, client: AdCreativeClient) -> None:
    api.answer("POST", BG_START, 200, {**PROGRESS_ITEM, "$id": "1"})
    await client.background_remover.remove(PNG)
    (seen,) = api.requests_to(BG_START)
    assert "Content-Length" in seen.headers
    assert "Transfer-Encoding" not in seen.headers
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert seen.part_headers[2]["Content-Type"] == "image/png"
    assert seen.form[2] == ("uploadedImage", PNG, "image.png")


async def test_client_must_be_open(api: MiniAPI) -> None:
    client = AdCreativeClient(**api.credentials, user_id=USER)
    with pytest.raises(ClientNotOpenError, match="async with AdCreativeClient"):
        await client.background_remover.user_progress()
    async with client:
        pass
    with pytest.raises(ClientNotOpenError):
        await client.background_remover.remove(PNG)


def test_missing_credentials_name_arguments_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APPLICATION_ID", "API_KEY", "API_SECRET", "JWT_PRIVATE_KEY", "BASE_URL"):
        monkeypatch.delenv(f"ADCREATIVE_{name}", raising=False)
    with pytest.raises(ConfigurationError) as info:
        AdCreativeClient(api_key="k")
    message = str(info.value)
    assert "application_id (or ADCREATIVE_APPLICATION_ID)" in message
    assert "api_secret (or ADCREATIVE_API_SECRET)" in message
    assert "jwt_private_key (or ADCREATIVE_JWT_PRIVATE_KEY)" in message
    assert "api_key" not in message.replace("api_key=", "")


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADCREATIVE_APPLICATION_ID", f"urn:uuid:{MiniAPI.APP}")
    monkeypatch.setenv("ADCREATIVE_API_KEY", "env-key-0000")
    monkeypatch.setenv("ADCREATIVE_API_SECRET", "env-secret-0000")
    monkeypatch.setenv("ADCREATIVE_JWT_PRIVATE_KEY", "env-private-0000")
    monkeypatch.setenv("ADCREATIVE_BASE_URL", "http://127.0.0.1:9/")
    client = AdCreativeClient()
    assert client.application_id == MiniAPI.APP
    assert client.base_url == "http://127.0.0.1:9"
    text = repr(client) + repr(client._transport) + repr(client._transport.tokens)
    for secret in ("env-key-0000", "env-secret-0000", "env-private-0000"):
        assert secret not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"application_id": "not-a-guid"}, "application_id: must be a GUID"),
        ({"base_url": "api.adcreative.ai"}, "base_url must be an absolute http"),
        ({"base_url": "ftp://x"}, "base_url must be an absolute http"),
        ({"user_id": "nope"}, "user_id: must be a GUID"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, str], message: str) -> None:
    base = {
        "application_id": MiniAPI.APP,
        "api_key": "k",
        "api_secret": "s",
        "jwt_private_key": "p",
        "base_url": "http://127.0.0.1:9",
    }
    with pytest.raises((ConfigurationError, InvalidRequestError), match=message):
        AdCreativeClient(**{**base, **kwargs})  # type: ignore[arg-type]


async def test_user_id_is_required_somewhere(api: MiniAPI) -> None:
    async with AdCreativeClient(**api.credentials, trust_env=False) as client:
        with pytest.raises(InvalidRequestError, match=r"user_id: is required: pass user_id="):
            await client.background_remover.user_progress()
        api.answer("GET", BG_PROGRESS, 200, [])
        assert await client.background_remover.user_progress(USER) == []
