"""The token manager, in isolation: lazy fetch, renewal lead, refresh and fallback, single flight."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime

import anyio
import pytest

from adcreative_async import AuthenticationError, ManualClock, ServerError
from adcreative_async._auth import GENERATE_PATH, REFRESH_PATH, Secret, TokenManager
from adcreative_async._errors import build_api_error

pytestmark = pytest.mark.anyio

APP = "d5eabbb8-c0f6-4640-94fd-3566edad499f"


def _iso(epoch: float, *, z: bool = True) -> str:
    text = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + ("Z" if z else "")


class FakeAuthServer:
    """Answers token requests like the service, on the test's manual clock."""

    def __init__(self, clock: ManualClock, lifetime: float = 3600.0, refresh_lifetime: float = 7 * 86400):
        self.clock = clock
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.gate: anyio.Event | None = None
        self.fail_refresh = False
        self.fail_generate = 0
        self.server_skew = 0.0  # seconds the server's clock is ahead of ours
        self.send_date = True
        self.expiration_format = "z"
        self.issued = 0

    async def send(self, route: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        payload = json.loads(body)
        self.calls.append((route, payload))
        if self.gate is not None:
            await self.gate.wait()
        if route == REFRESH_PATH and self.fail_refresh:
            raise build_api_error(401, b'{"errors": {"business:": ["invalid refresh token"]}}')
        if route == GENERATE_PATH and self.fail_generate:
            self.fail_generate -= 1
            raise build_api_error(500, b"{}")
        self.issued += 1
        now = self.clock.wall() + self.server_skew
        exp = now + self.lifetime
        response: dict[str, str] = {
            "$id": "1",
            "applicationId": APP,
            "accessToken": f"access-{self.issued}",
            "accessTokenExpiration": _iso(exp, z=self.expiration_format == "z"),
        }
        if route == GENERATE_PATH:
            response["refreshToken"] = f"refresh-{self.issued}"
            response["refreshTokenExpiration"] = _iso(now + self.refresh_lifetime)
        headers = {}
        if self.send_date:
            headers["Date"] = format_datetime(datetime.fromtimestamp(now, timezone.utc), usegmt=True)
        return 200, headers, json.dumps(response).encode()


def _manager(server: FakeAuthServer, lead: float = 60.0) -> TokenManager:
    return TokenManager(
        application_id=APP, private_key=Secret("k" * 128), send=server.send, clock=server.clock, lead=lead
    )


async def test_token_is_fetched_lazily_and_cached() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    manager = _manager(server)
    assert server.calls == []
    assert await manager.access_token() == "access-1"
    assert await manager.access_token() == "access-1"
    assert [route for route, _ in server.calls] == [GENERATE_PATH]
    assert server.calls[0][1] == {"applicationId": APP, "jwtPrivateKey": "k" * 128}


async def test_renews_with_refresh_token_before_expiry() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=3600)
    manager = _manager(server, lead=60)
    await manager.access_token()
    await clock.advance(3539)
    assert await manager.access_token() == "access-1"
    await clock.advance(2)  # inside the 60 s lead
    assert await manager.access_token() == "access-2"
    route, body = server.calls[-1]
    assert route == REFRESH_PATH
    assert body == {"applicationId": APP, "jwtPrivateKey": "k" * 128, "refreshToken": "refresh-1"}


async def test_lead_never_exceeds_half_of_a_short_lifetime() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=10)
    manager = _manager(server, lead=60)
    await manager.access_token()
    await clock.advance(4.9)
    assert await manager.access_token() == "access-1"
    await clock.advance(0.2)
    assert await manager.access_token() == "access-2"


async def test_refresh_token_kept_when_refresh_response_has_none() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=100)
    manager = _manager(server)
    await manager.access_token()
    for _ in range(3):
        await clock.advance(100)
        await manager.access_token()
    assert [r for r, _ in server.calls] == [GENERATE_PATH, REFRESH_PATH, REFRESH_PATH, REFRESH_PATH]
    assert all(body.get("refreshToken") == "refresh-1" for _, body in server.calls[1:])


async def test_expired_refresh_token_means_a_new_generate() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=100, refresh_lifetime=150)
    manager = _manager(server)
    await manager.access_token()
    await clock.advance(200)
    assert await manager.access_token() == "access-2"
    assert [r for r, _ in server.calls] == [GENERATE_PATH, GENERATE_PATH]


async def test_failed_refresh_falls_back_to_generate_once() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=100)
    manager = _manager(server)
    await manager.access_token()
    server.fail_refresh = True
    await clock.advance(100)
    assert await manager.access_token() == "access-2"
    assert [r for r, _ in server.calls] == [GENERATE_PATH, REFRESH_PATH, GENERATE_PATH]


async def test_500_concurrent_callers_with_expired_token_make_one_request() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=100)
    manager = _manager(server)
    await manager.access_token()
    await clock.advance(1000)  # access and... refresh still valid
    server.gate = anyio.Event()
    results: list[str] = []

    async def call() -> None:
        results.append(await manager.access_token())

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        assert len(server.calls) == 2  # the first generate, and exactly one renewal in flight
        server.gate.set()
    assert results == ["access-2"] * 500
    assert manager.requests == 2


async def test_a_failed_renewal_fails_its_waiters_and_the_next_call_retries() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    manager = _manager(server)
    server.fail_generate = 1
    server.gate = anyio.Event()
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await manager.access_token()
        except ServerError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        server.gate.set()
    assert len(errors) == 10
    assert len(server.calls) == 1
    assert await manager.access_token() == "access-1"
    assert len(server.calls) == 2


async def test_a_failed_early_renewal_uses_the_valid_token_and_backs_off_until_expiry() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=3600)
    manager = _manager(server, lead=60)
    assert await manager.access_token() == "access-1"
    server.fail_refresh = True
    server.fail_generate = 1000
    await clock.advance(3541)  # the renewal window: 59 s left
    attempts: list[float] = []
    for second in range(59):  # a request every second until expiry
        before = len(server.calls)
        assert await manager.access_token() == "access-1"  # the valid token, whatever the renewal did
        if len(server.calls) > before:
            attempts.append(second)
            assert [route for route, _ in server.calls[before:]] == [REFRESH_PATH, GENERATE_PATH]
        await clock.advance(1)
    # tried again after 1, 2, 4, 8, 16 s: not on every request
    assert attempts == [0, 1, 3, 7, 15, 31]
    with pytest.raises(ServerError):  # expired: a renewal must succeed now, its failure is the caller's
        await manager.access_token()
    server.fail_refresh = False
    server.fail_generate = 0
    assert await manager.access_token() == "access-2"


async def test_a_failed_early_renewal_of_a_token_refused_meanwhile_fails() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=3600)
    manager = _manager(server, lead=60)
    await manager.access_token()
    await clock.advance(3550)
    server.fail_refresh = True
    server.fail_generate = 1
    server.gate = anyio.Event()
    errors: list[BaseException] = []

    async def renew() -> None:
        try:
            await manager.access_token()
        except ServerError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        await anyio.wait_all_tasks_blocked()
        manager.invalidate("access-1")  # a 401 while the renewal is in flight
        server.gate.set()
    assert len(errors) == 1


async def test_cancelled_leader_hands_over_to_a_waiter() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    manager = _manager(server)
    server.gate = anyio.Event()
    got: list[str] = []

    async def leader() -> None:
        await manager.access_token()

    async def waiter() -> None:
        got.append(await manager.access_token())

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as leader_scope:
            async with anyio.create_task_group() as inner:
                inner.start_soon(leader)
                await anyio.wait_all_tasks_blocked()  # the leader's request is in flight
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()  # the waiter waits behind it
                leader_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        server.gate.set()
    assert got == ["access-1"]
    assert len(server.calls) == 2  # the cancelled attempt, then the waiter's own


async def test_invalidate_forces_a_renewal_only_for_the_current_token() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    manager = _manager(server)
    first = await manager.access_token()
    manager.invalidate("some-older-token")
    assert await manager.access_token() == first
    manager.invalidate(first)
    assert await manager.access_token() == "access-2"


async def test_expiry_without_timezone_reads_as_utc_and_server_date_corrects_skew() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=600)
    server.expiration_format = "naive"
    server.server_skew = 3600.0  # the server's clock is an hour ahead of ours
    manager = _manager(server, lead=60)
    await manager.access_token()
    token = manager.token
    assert token is not None
    assert token.expires_at == pytest.approx(clock.monotonic() + 600, abs=1)
    await clock.advance(539)
    assert await manager.access_token() == "access-1"
    await clock.advance(2)
    assert await manager.access_token() == "access-2"


async def test_jwt_exp_is_used_when_the_expiration_field_is_missing() -> None:
    clock = ManualClock()
    exp = clock.wall() + 120
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    jwt = f"eyJhbGciOiJIUzI1NiJ9.{claims}.sig"

    async def send(route: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        return 200, {}, json.dumps({"accessToken": jwt}).encode()

    manager = TokenManager(application_id=APP, private_key=Secret("k"), send=send, clock=clock, lead=10)
    await manager.access_token()
    assert manager.token is not None
    assert manager.token.renew_at == pytest.approx(clock.monotonic() + 110, abs=1)


async def test_token_errors_propagate_typed() -> None:
    clock = ManualClock()

    async def send(route: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        raise build_api_error(401, b'{"errors": {"business:": ["bad key"]}, "status": 401}')

    manager = TokenManager(application_id=APP, private_key=Secret("k"), send=send, clock=clock)
    with pytest.raises(AuthenticationError, match="bad key"):
        await manager.access_token()


def test_secret_never_shows_itself() -> None:
    secret = Secret("super-secret-value")
    assert "super-secret-value" not in repr(secret)
    assert "super-secret-value" not in str(secret)
    assert "super-secret-value" not in f"{secret}"
    assert secret.reveal() == "super-secret-value"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_token_repr_hides_the_tokens() -> None:
    from adcreative_async._auth import Token

    token = Token(access_token="AAA-secret", expires_at=1.0, renew_at=0.5, refresh_token="RRR-secret")
    assert "secret" not in repr(token)
