"""``trust_env=True``: the proxy variables and netrc, read once when the client opens, honoured as aiohttp
honours them (through a real forward proxy on loopback, plain and ``CONNECT``), and sent with aiohttp's
own ``trust_env`` off (no thread hand-offs and no netrc parse per request)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adcreative_async import AdCreativeClient
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (16, 16))
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ws_proxy",
    "wss_proxy",
    "REQUEST_METHOD",
)
HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "host", "content-length"}


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@dataclass
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str
    proxy_authorization: str | None
    authorization: str | None


@dataclass
class ForwardProxy:
    """A forward proxy on loopback: plain HTTP requests in absolute form (an aiohttp app forwarding
    each one) and ``CONNECT`` tunnels (raw streams), recording what it received."""

    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def routes(self) -> list[str]:
        """``METHOD path`` of the plain requests, ``CONNECT host:port`` of the tunnels."""
        return [f"{s.method} {s.target}" for s in self.seen]


async def _forward(
    proxy: ForwardProxy, upstream: aiohttp.ClientSession, request: web.Request
) -> web.Response:
    proxy.seen.append(
        Seen(
            request.method,
            request.path,
            request.headers.get("Proxy-Authorization"),
            request.headers.get("Authorization"),
        )
    )
    if not request.url.is_absolute() or request.url.host is None:
        return web.Response(status=400, text="not a proxy request")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    async with upstream.request(
        request.method, str(request.url), headers=headers, data=body or None, allow_redirects=False
    ) as response:
        payload = await response.read()
        dropped = HOP_BY_HOP | {"transfer-encoding"}
        out = {k: v for k, v in response.headers.items() if k.lower() not in dropped}
        return web.Response(status=response.status, body=payload, headers=out)


async def _tunnel(proxy: ForwardProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up_writer: asyncio.StreamWriter | None = None
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        fields = (line.partition(":") for line in head[1:] if line)
        headers = {k.strip().lower(): v.strip() for k, _, v in fields}
        proxy.seen.append(
            Seen(method, target, headers.get("proxy-authorization"), headers.get("authorization"))
        )
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(ConnectionError, OSError):
                sink.write_eof()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        for end in (writer, up_writer):
            if end is not None:
                end.close()
                with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                    await end.wait_closed()


@contextlib.asynccontextmanager
async def plain_proxy() -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy()
    async with aiohttp.ClientSession(trust_env=False, auto_decompress=False) as upstream:

        async def handler(request: web.Request) -> web.Response:
            return await _forward(proxy, upstream, request)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield proxy
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def connect_proxy() -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _tunnel(proxy, reader, writer)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy variable, and an empty netrc, whatever the machine has."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    empty = tmp_path / "empty.netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    return monkeypatch


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(task_duration=0.0, seed=7) as emu:
        yield emu


async def one_job(client: AdCreativeClient, tmp_path: Path) -> None:
    """A token, a start call (upload), a progress request and a download."""
    job = await client.background_remover.remove(PNG, user_id=USER)
    await job.refresh()
    await job.result()
    path = await job.download(job.task_ids[0], tmp_path)
    assert path.stat().st_size > 0


async def test_http_proxy_variable_carries_every_request_with_its_credentials(
    clean_env: pytest.MonkeyPatch, emulator: Emulator, tmp_path: Path
) -> None:
    async with plain_proxy() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://agent:s3cret@"))
        async with AdCreativeClient(**emulator.credentials) as client:
            await one_job(client, tmp_path)
    routes = proxy.routes()
    assert "POST /api/v1/Authorization/GenerateJwtToken" in routes
    assert "POST /api/v1/Image/BackgroundRemoving/AdCreative" in routes
    assert "GET /api/v1/Image/BackgroundRemoving/CheckUserProgress" in routes
    assert "GET /api/v1/Image/BackgroundRemoving/Download" in routes
    assert len(proxy.seen) == sum(emulator.requests.values())  # nothing went around it
    assert {s.proxy_authorization for s in proxy.seen} == {basic("agent", "s3cret")}


@pytest.mark.parametrize(
    "variables",
    [
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"},
        {"http_proxy": "{proxy}", "no_proxy": "localhost,127.0.0.1"},
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "*"},
        {"ALL_PROXY": "{proxy}"},  # aiohttp reads only the http/https (ws/wss) variables
        {"HTTPS_PROXY": "{proxy}"},  # another scheme's proxy
    ],
    ids=["NO_PROXY host", "no_proxy list", "NO_PROXY star", "ALL_PROXY ignored", "other scheme"],
)
async def test_requests_go_direct_when_the_environment_gives_no_proxy_for_the_host(
    clean_env: pytest.MonkeyPatch, emulator: Emulator, tmp_path: Path, variables: dict[str, str]
) -> None:
    async with plain_proxy() as proxy:
        for name, value in variables.items():
            clean_env.setenv(name, value.format(proxy=proxy.url))
        async with AdCreativeClient(**emulator.credentials) as client:
            await one_job(client, tmp_path)
    assert proxy.seen == []
    assert emulator.request_count("Image/BackgroundRemoving/Download") == 1


async def test_trust_env_false_ignores_the_proxy_variables(
    clean_env: pytest.MonkeyPatch, emulator: Emulator, tmp_path: Path
) -> None:
    async with plain_proxy() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        async with AdCreativeClient(**emulator.credentials, trust_env=False) as client:
            await one_job(client, tmp_path)
    assert proxy.seen == []


async def test_environment_is_read_once_when_the_client_opens(
    clean_env: pytest.MonkeyPatch, emulator: Emulator, tmp_path: Path
) -> None:
    """A proxy variable set after the client opened is not seen: it was read at open, not per request
    (aiohttp's trust_env reads it, in a worker thread, on every request)."""
    async with plain_proxy() as proxy, AdCreativeClient(**emulator.credentials) as client:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        await one_job(client, tmp_path)
        assert proxy.seen == []
        async with AdCreativeClient(**emulator.credentials) as second:  # a new client reads it
            await second.background_remover.user_progress(USER)
        assert proxy.routes() == [
            "POST /api/v1/Authorization/GenerateJwtToken",
            "GET /api/v1/Image/BackgroundRemoving/CheckUserProgress",
        ]


async def test_netrc_gives_the_proxy_credentials_and_basic_auth_on_token_requests_only(
    clean_env: pytest.MonkeyPatch, emulator: Emulator, tmp_path: Path
) -> None:
    """As aiohttp reads netrc: the proxy host's entry authenticates to the proxy, the API host's is
    sent as Basic auth on requests without an Authorization of their own (aiohttp also put it beside
    the bearer token and then refused the request with a ValueError)."""
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine localhost login proxyuser password proxypass\nmachine 127.0.0.1 login api password apipass\n"
    )
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    async with plain_proxy() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url.replace("127.0.0.1", "localhost"))
        async with AdCreativeClient(**emulator.credentials) as client:
            await one_job(client, tmp_path)
    assert {s.proxy_authorization for s in proxy.seen} == {basic("proxyuser", "proxypass")}
    token = [s for s in proxy.seen if s.target.endswith("GenerateJwtToken")]
    others = [s for s in proxy.seen if not s.target.endswith("GenerateJwtToken")]
    assert [s.authorization for s in token] == [basic("api", "apipass")]
    assert others
    assert all((s.authorization or "").startswith("Bearer ") for s in others)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a certificate")
async def test_https_proxy_variable_tunnels_with_connect_and_its_credentials(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    emulator = Emulator(task_duration=0.0, seed=7)
    runner = web.AppRunner(emulator.app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
        port = runner.addresses[0][1]
        credentials = {
            "application_id": emulator.application_id,
            "api_key": emulator.api_key,
            "api_secret": emulator.api_secret,
            "jwt_private_key": emulator.jwt_private_key,
            "base_url": f"https://127.0.0.1:{port}",
        }
        async with connect_proxy() as proxy:
            clean_env.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://agent:s3cret@"))
            async with AdCreativeClient(**credentials, ssl=client_context) as client:  # type: ignore[arg-type]
                await one_job(client, tmp_path)
    finally:
        await runner.cleanup()
    assert proxy.seen, "nothing went through the proxy"
    assert {s.method for s in proxy.seen} == {"CONNECT"}
    assert {s.target for s in proxy.seen} == {f"127.0.0.1:{port}"}
    assert {s.proxy_authorization for s in proxy.seen} == {basic("agent", "s3cret")}
    assert emulator.request_count("Image/BackgroundRemoving/Download") == 1
