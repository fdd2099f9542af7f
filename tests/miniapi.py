"""A scriptable loopback HTTP server for transport tests: each test decides what every route answers.

The emulator is the faithful counterpart for integration tests; this one exists to produce precise
faults (redirects, odd bodies, stalls) and to record exactly what the client sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from adcreative_async.testing import Credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    form: list[tuple[str, str | bytes, str | None]] = field(default_factory=list)
    part_headers: list[dict[str, str]] = field(default_factory=list)
    json: Any = None


class MiniAPI:
    """Token endpoints that always succeed, plus per-test routes; every request is recorded."""

    APP = "d5eabbb8-c0f6-4640-94fd-3566edad499f"

    def __init__(self, port: int = 0) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        self.tokens_issued = 0
        self._runner: web.AppRunner | None = None
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return {
            "application_id": self.APP,
            "api_key": "KEY-1234567890",
            "api_secret": "SECRET-1234567890",
            "jwt_private_key": "PRIVATE-1234567890",
            "base_url": self.base_url,
        }

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = handler
            return handler

        return register

    def answer(
        self, method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """A fixed answer: JSON for dicts/lists, raw for bytes."""

        async def handler(request: web.Request) -> web.StreamResponse:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            return web.Response(status=status, body=data, headers=headers, content_type=None)

        self.routes[(method, path)] = handler

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, list(request.query.items()), dict(request.headers))
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                data = bytes(await part.read())
                value: str | bytes = data if part.filename else data.decode()
                seen.form.append((part.name or "", value, part.filename))
                seen.part_headers.append(dict(part.headers))
        elif request.can_read_body:
            raw = await request.read()
            try:
                seen.json = json.loads(raw)
            except ValueError:
                seen.json = raw
        self.seen.append(seen)
        handler = self.routes.get((request.method, request.path))
        if handler is not None:
            return await handler(request)
        if request.path.startswith("/api/v1/Authorization/"):
            self.tokens_issued += 1
            return web.json_response(
                {
                    "accessToken": f"token-{self.tokens_issued}",
                    "accessTokenExpiration": "2999-01-01T00:00:00.000000Z",
                    "refreshToken": "refresh",
                    "refreshTokenExpiration": "2999-01-08T00:00:00.000000Z",
                }
            )
        return web.Response(status=599, text=f"no route {request.method} {request.path}")

    async def __aenter__(self) -> MiniAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
