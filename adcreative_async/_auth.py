"""The JWT token manager: fetched lazily, renewed before expiry, one request in flight at a time.

Tokens come from ``POST /api/v1/Authorization/GenerateJwtToken`` and are renewed with
``RefreshJwtToken`` (reference §1.3). The manager renews a token ``lead`` seconds before it expires,
never more than half of its lifetime before (short-lived tokens stay useful); when the refresh token
has expired or a refresh fails for any reason it generates a new token instead, and a failed refresh
is not repeated (whether refresh rotates the refresh token is undocumented). A renewal that fails
while the current token is still valid fails nothing: the token is used, and the renewal tried again
after a backoff (never past the token's expiry, when a renewal must succeed). When hundreds of
coroutines find the token expired at once, exactly one token request goes out and the others wait for
it; an ordinary request takes no lock at all.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import anyio
import msgspec

from ._clock import Clock
from ._errors import AdCreativeError, UnexpectedResponseError
from ._models import TOKEN_DECODER, parse_timestamp
from ._redact import ACCOUNT_ID_MASK

__all__ = ["Secret", "Token", "TokenManager"]

logger = logging.getLogger("adcreative_async.auth")

GENERATE_PATH = "Authorization/GenerateJwtToken"
REFRESH_PATH = "Authorization/RefreshJwtToken"

#: Documented on the auth endpoints only (reference §1.1): media-type versioning in Content-Type.
AUTH_CONTENT_TYPE = "application/json; x-api-version=1.0"

#: assumed: the auth pages list only Content-Type and Accept headers, yet the Notifications page says
#: every request carries x-api-key and x-api-secret (reference §14.8). Sending them to the same host is
#: harmless, so the SDK sends them on token requests too.
AUTH_SENDS_API_KEY_HEADERS = True

#: assumed: lifetime used when neither ``accessTokenExpiration`` nor the JWT's ``exp`` can be read.
FALLBACK_TOKEN_LIFETIME = 300.0

#: A refresh token this close to its expiry is not used (a new token is generated instead).
_REFRESH_MARGIN = 5.0

#: After an early renewal (in the renewal window, the token still valid) fails, the next one is tried
#: this many seconds later, the delay doubling after each failure up to :data:`EARLY_RENEWAL_MAX_DELAY`,
#: and never later than the token's expiry.
EARLY_RENEWAL_RETRY_DELAY = 1.0
EARLY_RENEWAL_MAX_DELAY = 30.0


class Secret:
    """A credential that never shows itself in ``repr``, ``str``, logs or tracebacks' locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("credentials are not picklable")


@dataclass(frozen=True)
class Token:
    """An access token and when to renew it, on the client's monotonic clock."""

    access_token: str = field(repr=False)
    expires_at: float
    renew_at: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None


@dataclass
class _Flight:
    """One token request in progress; waiters read its outcome once ``done`` is set."""

    done: anyio.Event = field(default_factory=anyio.Event)
    token: Token | None = None
    error: BaseException | None = None


#: Sends one token request: (route, JSON body) -> (status, headers, body). The transport provides it.
TokenSender = Callable[[str, bytes], Awaitable[tuple[int, Mapping[str, str], bytes]]]


def _jwt_expiry(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), read without verifying; None if unreadable."""
    try:
        payload = access_token.split(".")[1]
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, msgspec.DecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def _server_now(headers: Mapping[str, str], fallback: float) -> float:
    """The server's clock from its ``Date`` header (corrects local clock skew), else ``fallback``."""
    value = headers.get("Date") or headers.get("date")
    if value:
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    return fallback


class TokenManager:
    """Holds the current access token and renews it, single flight.

    Args:
        application_id: the canonical application GUID.
        private_key: the JWT private key.
        send: performs one token request (see :data:`TokenSender`).
        clock: the client's clock.
        lead: renew this many seconds before expiry (capped at half the token's lifetime).
    """

    def __init__(
        self,
        *,
        application_id: str,
        private_key: Secret,
        send: TokenSender,
        clock: Clock,
        lead: float = 60.0,
    ) -> None:
        self._application_id = application_id
        self._private_key = private_key
        self._send = send
        self._clock = clock
        self._lead = lead
        self._token: Token | None = None
        self._flight: _Flight | None = None
        self._early_failures = 0  # early renewals failed in a row (their backoff)
        #: Token requests made (generate, refresh), for observability and tests.
        self.requests = 0

    def __repr__(self) -> str:
        return f"TokenManager(application_id={ACCOUNT_ID_MASK}, has_token={self._token is not None})"

    @property
    def token(self) -> Token | None:
        """The current token (its secrets hidden from repr), or None before the first request."""
        return self._token

    async def access_token(self) -> str:
        """A valid access token: the cached one, or a renewed one.

        In the renewal window (before expiry) a caller that finds a renewal already in flight keeps
        using the still-valid token, and a renewal that fails there hands out the still-valid token
        too; once expired, every caller waits for the one renewal, and its failure is theirs.
        """
        while True:
            token = self._token
            now = self._clock.monotonic()
            if token is not None and now < token.renew_at:
                return token.access_token
            flight = self._flight
            if flight is not None and token is not None and now < token.expires_at:
                return token.access_token
            if flight is None and token is not None and now < token.expires_at:
                return await self._renew_early(token)
            if flight is None:
                return (await self._lead_flight()).access_token
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.token is not None:
                return flight.token.access_token
            # The leader was cancelled before finishing: loop, and maybe lead the next flight.

    def invalidate(self, access_token: str) -> None:
        """Forget ``access_token`` after a 401, unless it was already replaced."""
        token = self._token
        if token is not None and token.access_token == access_token:
            self._token = Token(
                access_token=token.access_token,
                expires_at=float("-inf"),
                renew_at=float("-inf"),
                refresh_token=token.refresh_token,
                refresh_expires_at=token.refresh_expires_at,
            )

    async def _renew_early(self, token: Token) -> str:
        """Renew ``token``, still valid; if that fails, use it and try again after a backoff."""
        try:
            return (await self._lead_flight()).access_token
        except AdCreativeError as exc:
            if self._token is not token:  # invalidated meanwhile (a 401): it is no use any more
                raise
            self._early_failures += 1
            now = self._clock.monotonic()
            delay = min(EARLY_RENEWAL_MAX_DELAY, EARLY_RENEWAL_RETRY_DELAY * 2 ** (self._early_failures - 1))
            retry_at = min(now + delay, token.expires_at)
            self._token = dataclasses.replace(token, renew_at=retry_at)
            logger.warning(
                "early token renewal failed (%s); using the current token, valid %.0f s more, "
                "and trying again in %.0f s",
                type(exc).__name__,
                token.expires_at - now,
                retry_at - now,
            )
            return token.access_token

    async def _lead_flight(self) -> Token:
        flight = self._flight = _Flight()
        try:
            flight.token = self._token = await self._obtain(self._token)
            self._early_failures = 0
            return flight.token
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.done.set()

    async def _obtain(self, current: Token | None) -> Token:
        now = self._clock.monotonic()
        if (
            current is not None
            and current.refresh_token is not None
            and (current.refresh_expires_at is None or now < current.refresh_expires_at - _REFRESH_MARGIN)
        ):
            try:
                return await self._request(REFRESH_PATH, current)
            except AdCreativeError as exc:
                # Not repeated: rotation is undocumented, so a second use of the same refresh token
                # could be refused or could revoke the first answer. Generate a fresh token instead.
                logger.info("token refresh failed (%s); generating a new token", type(exc).__name__)
        return await self._request(GENERATE_PATH, None)

    async def _request(self, path: str, current: Token | None) -> Token:
        body: dict[str, str] = {
            "applicationId": self._application_id,
            "jwtPrivateKey": self._private_key.reveal(),
        }
        if current is not None and current.refresh_token is not None:
            body["refreshToken"] = current.refresh_token
        sent_at = self._clock.monotonic()
        sent_wall = self._clock.wall()
        self.requests += 1
        logger.debug("token request: %s", path)
        status, headers, raw = await self._send(path, msgspec.json.encode(body))
        try:
            wire = TOKEN_DECODER.decode(raw)
        except msgspec.DecodeError:
            raise UnexpectedResponseError(
                f"{status} from POST {path}: the token response is not the documented JSON",
                status=status,
                method="POST",
                path=path,
            ) from None
        server_now = _server_now(headers, sent_wall)
        lifetime = self._lifetime(wire.access_token, wire.access_token_expiration, server_now)
        refresh_token = wire.refresh_token or (current.refresh_token if current else None)
        refresh_expires_at: float | None = current.refresh_expires_at if current else None
        if wire.refresh_token_expiration:
            try:
                refresh_at = parse_timestamp(wire.refresh_token_expiration).timestamp()
                refresh_expires_at = sent_at + (refresh_at - server_now)
            except ValueError:
                refresh_expires_at = None
        lead = min(self._lead, lifetime / 2)
        return Token(
            access_token=wire.access_token,
            expires_at=sent_at + lifetime,
            renew_at=sent_at + lifetime - lead,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
        )

    @staticmethod
    def _lifetime(access_token: str, expiration: str | None, server_now: float) -> float:
        expires: float | None = None
        if expiration:
            try:
                expires = parse_timestamp(expiration).timestamp()
            except ValueError:
                expires = None
        if expires is None:
            expires = _jwt_expiry(access_token)
        if expires is None:
            return FALLBACK_TOKEN_LIFETIME
        return max(0.0, expires - server_now)
