"""The client side of aiohttp: requests, auth headers, the 401 retry, retries and deadlines, streamed
bodies in and out. With it, and only for it: :mod:`._responses` (what a call answers, and the
translation of every transport failure into the SDK's errors) and :mod:`._multipart` (form bodies).

Rules kept here:
- Every feature request carries ``Authorization: Bearer``, ``x-api-key``, ``x-api-secret`` and
  ``Accept: application/json``; redirects are never followed (aiohttp would forward ``x-api-key`` and
  ``x-api-secret`` to another host), a 3xx is an error.
- A 401 on a feature call invalidates the token, renews it and retries when the body can be sent
  (again): a replayable one, or a one-shot upload the server refused before reading it (a 401 answering
  ``Expect: 100-continue``); after :data:`TOKEN_RENEWALS` renewals it raises. The refused token is never
  sent again.
- aiohttp's exceptions never leave these modules, and are never chained (``ClientResponseError`` holds
  the request headers, credentials included): the SDK's error carries a safe description instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
import ssl as ssl_module
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import anyio
import backoff
import msgspec

from ._auth import (
    AUTH_CONTENT_TYPE,
    AUTH_SENDS_API_KEY_HEADERS,
    REFRESH_PATH,
    Secret,
    TokenManager,
)
from ._clock import Clock
from ._config import Limits, RetryPolicy, Timeout, TransferOptions
from ._deadlines import CALL_DEADLINE, call_deadline, timeout_error
from ._errors import (
    AdCreativeError,
    APIConnectionError,
    APIError,
    ClientNotOpenError,
    build_api_error,
    retry_after_seconds,
)
from ._files import ProgressCallback, Upload
from ._filewrite import KnownDestinations
from ._multipart import FormBody, FormItem
from ._proxy_env import NO_ENVIRONMENT, EnvironmentRoute, resolve_environment
from ._responses import API_PREFIX, Response, StreamedResponse, malformed, translate
from ._telemetry import HttpSpan, Instruments
from ._version import __version__

if TYPE_CHECKING:
    from ._ratelimit import RateControl, RateController

__all__ = ["FormItem", "Request", "Response", "StreamedResponse", "Transport", "log_ids"]

logger = logging.getLogger("adcreative_async.http")

_T = TypeVar("_T")


#: Methods the retry policy may repeat after a failure that may have reached the server.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: assumed (the docs list 401 for a missing or invalid token and for wrong API credentials, and say nothing
#: of revocation): a call refused 401 renews the token and is sent again at most this many times. A token
#: may be revoked or expire right after it was issued (a key rotation, a clock step, the emulator's
#: ``expire_access_tokens()``): one more renewal tells that from wrong API credentials, which a fresh token
#: never cures, at the cost of one more token request and call before a setup error stops a run.
TOKEN_RENEWALS = 2

#: Bodies larger than this are sent with ``Expect: 100-continue``, so that an authentication or
#: validation error arrives before the body is sent.
EXPECT_CONTINUE_THRESHOLD = 1024 * 1024

#: Bytes of a streamed body kept for the error message of a malformed one.
_HEAD_KEPT = 200
#: A body read into a sink is handed to it in chunks of at most this many bytes (aiohttp's buffer holds
#: what the socket delivered: a larger read would join its pieces into one more copy).
SINK_CHUNK = 64 * 1024


def default_user_agent() -> str:
    """``adcreative-async/<version> python/<version> aiohttp/<version>``."""
    return f"adcreative-async/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"


@dataclass
class Request:
    """One API call, independent of aiohttp.

    Attributes:
        method: ``"GET"``, ``"POST"``, …
        route: the path under ``/api/v1/`` (``"Image/Generation/CheckUserProgress"``).
        query: query pairs, already serialised to text.
        form: multipart items (None: no multipart body).
        json: a JSON body, already encoded.
        headers: extra headers (the per-call escape hatch).
        timeout: per-call timeouts (None: the client's).
        params: wire field name -> Python parameter, so that errors name both.
        auth: send the bearer token and API key headers (False only for token requests).
        retry: False: never sent again, whatever the policy (a RefreshJwtToken).
        retry_policy: this call's retry policy (the per-call ``retry=``); None: the client's.
        on_upload_progress: called as the body goes out.
    """

    method: str
    route: str
    query: Sequence[tuple[str, str]] = ()
    form: Sequence[FormItem] | None = None
    json: bytes | None = None
    headers: Mapping[str, str] | None = None
    timeout: Timeout | None = None
    params: Mapping[str, str] | None = None
    auth: bool = True
    retry: bool = True
    retry_policy: RetryPolicy | None = None  # this call's own policy (None: the client's)
    idempotent: bool | None = None  # None: by the method; True for a POST that is safe to repeat

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice does no harm (GET, or a POST marked idempotent)."""
        return self.idempotent if self.idempotent is not None else self.method in IDEMPOTENT_METHODS

    content_type: str | None = None
    on_upload_progress: ProgressCallback | None = None
    #: The render this request concerns, put on its DEBUG log records as structured fields
    #: (``process_id``, ``task_id``; see :func:`log_ids`).
    log_ids: Mapping[str, str] | None = None
    #: Whether an error answer is one the caller reads as a result (a listing's documented "nothing
    #: found", an empty list): its span and metrics then record no error. None: every status >= 400 is.
    is_answer: Callable[[APIError], bool] | None = None

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent (again): every upload replayable, or never read yet."""
        return all(item.sendable for item in self.form or () if isinstance(item, Upload))


def log_ids(process_id: str | None, task_id: str | None = None) -> dict[str, str]:
    """The structured fields (``extra=``) of a log record about a render: ``process_id``, ``task_id``."""
    ids = {}
    if process_id is not None:
        ids["process_id"] = process_id
    if task_id is not None:
        ids["task_id"] = task_id
    return ids


def no_silent_resend(session: aiohttp.ClientSession) -> None:
    """Turn off aiohttp's own re-send of an idempotent request (GET, HEAD, ...) whose connection failed.

    aiohttp sends such a request a second time by itself: that attempt made no span and no log record
    and escaped the retry policy (its attempts, its total time, ``Transport.retries``). Turned off,
    every attempt goes through :meth:`Transport._exchange`. aiohttp (up to 3.14 at least) has no public
    switch: ``_retry_connection`` is the one its own test client turns off (aiohttp issue #10790);
    ``tests/test_attempts.py`` fails if a version drops it.
    """
    if isinstance(getattr(session, "_retry_connection", None), bool):
        session._retry_connection = False


class Transport:
    """An aiohttp session with the SDK's headers, auth, timeouts, limits and error mapping.

    Created closed; :meth:`open` makes the session (it needs a running event loop), :meth:`aclose`
    closes it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        application_id: str,
        api_key: Secret,
        api_secret: Secret,
        jwt_private_key: Secret,
        timeout: Timeout,
        limits: Limits,
        transfer: TransferOptions,
        clock: Clock,
        trust_env: bool = True,
        proxy: str | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        user_agent: str | None = None,
        token_refresh_lead: float = 60.0,
        retry: RetryPolicy | None = None,
        telemetry: Instruments | None = None,
        rate_control: RateControl | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tunnel = self.base_url.lower().startswith("https:")
        self.rate: RateController | None = None
        """Adaptive pacing on 429s (see :mod:`._ratelimit`), or None when off."""
        if rate_control is not None:  # _ratelimit is imported only then (the import footprint)
            from ._ratelimit import RateController, rate_scope

            self.rate = RateController(rate_control, clock, rate_scope(self.base_url, application_id))
        self.telemetry = telemetry
        """OpenTelemetry instruments, or None when telemetry is off (every hook is skipped)."""
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self.retries = 0
        """Requests sent again by the retry policy (not counting the 401 renewal)."""
        self.application_id = application_id
        self._api_key = api_key
        self._api_secret = api_secret
        self.timeout = timeout
        self.limits = limits
        self.transfer = transfer
        self._trust_env = trust_env
        self._proxy = proxy
        #: What ``trust_env`` found (proxy, netrc), read once by :meth:`open` (see ``_proxy_env``).
        self._environment: EnvironmentRoute = NO_ENVIRONMENT
        self._ssl = ssl
        self.user_agent = user_agent or default_user_agent()
        self._session: aiohttp.ClientSession | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self.downloads_in_progress = 0
        #: Download destinations prepared already (a small download then costs one file-I/O call).
        self.destinations = KnownDestinations()
        """Downloads to files running now (they share :data:`DOWNLOAD_WRITE_BUFFER` between them)."""
        self.tokens = TokenManager(
            application_id=application_id,
            private_key=jwt_private_key,
            send=self._send_token_request,
            clock=clock,
            lead=token_refresh_lead,
        )

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, open={self._session is not None})"

    # ----------------------------------------------------------------------------------- lifetime

    async def open(self) -> None:
        """Create the aiohttp session and the file-thread limiter; with ``trust_env``, read the proxy
        variables and netrc once (aiohttp would read them on every request: see ``_proxy_env``)."""
        if self._session is not None:
            return
        if self._trust_env:
            environment = await anyio.to_thread.run_sync(
                functools.partial(resolve_environment, self.base_url, proxy_given=self._proxy is not None)
            )
            if self.is_open:  # a concurrent open() finished meanwhile
                return
            self._environment = environment
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections,
            limit_per_host=self.limits.max_connections_per_host,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=True if self._ssl is None else self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._client_timeout(self.timeout),
            trust_env=False,  # read once by open(): see _proxy_env
            headers={"User-Agent": self.user_agent},
            raise_for_status=False,
        )
        no_silent_resend(self._session)
        self._limiter = anyio.CapacityLimiter(self.transfer.file_threads)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` ran and :meth:`aclose` did not."""
        return self._session is not None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The worker-thread limiter shared by all file I/O of this client."""
        if self._limiter is None:
            raise _not_open()
        return self._limiter

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise _not_open()
        return self._session

    @staticmethod
    def _client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=timeout.total,
            connect=timeout.pool,
            sock_connect=timeout.connect,
            sock_read=timeout.read,
        )

    # ----------------------------------------------------------------------------------- requests

    def url(self, route: str) -> str:
        """The absolute URL of a route under ``/api/v1/``."""
        return f"{self.base_url}{API_PREFIX}{route}"

    async def request(self, req: Request, sink: Callable[[bytes], object] | None = None) -> Response:
        """Send ``req`` and read the whole response.

        Args:
            sink: where a successful body goes, chunk by chunk as it arrives (``b""`` at its end),
                instead of into :attr:`Response.body` (which is then empty): a body never held whole.
                The call's timeouts are the same (``Timeout.read`` per chunk, ``Timeout.total`` over the
                whole body). A :class:`msgspec.DecodeError` it raises ends the read: the call raises
                :class:`UnexpectedResponseError` (with the body's first bytes).

        Raises:
            APIError: (a subclass per status) for any status >= 300.
            APIConnectionError / APITimeoutError: when no response could be read.
        """
        response, span = await self._exchange(req, streamed=False)
        body, error = b"", None
        failure: APIError | None = None
        received = 0
        try:
            if sink is not None and response.status < 300:
                received, error = await self._feed_body(response, req, sink)
            else:
                body, error = await self._read_body(response, req)
                received = len(body)
            if error is None and response.status >= 300:
                failure = self._api_error(req, response.status, response.headers, body)
        finally:
            if error is not None and sink is not None:
                response.close()  # a body not read to its end: its connection is not reused
            response.release()
            if span is not None:
                answer = failure is not None and req.is_answer is not None and req.is_answer(failure)
                span.end(response.status, received=received, error=error, answer=answer)
        if error is not None:
            raise error
        if failure is not None:
            raise failure
        return Response(response.status, response.headers, body, req.route)

    @asynccontextmanager
    async def stream(self, req: Request) -> AsyncIterator[StreamedResponse]:
        """Send ``req`` and yield the successful response unread, to stream its body.

        Raises:
            APIError: for a status >= 300 (its body read first).
        """
        response, span = await self._exchange(req, streamed=True)
        streamed: StreamedResponse | None = None
        failure: BaseException | None = None
        try:
            if response.status >= 300:
                body, error = await self._read_body(response, req)
                if error is not None:
                    raise error
                raise self._api_error(req, response.status, response.headers, body)
            streamed = StreamedResponse(
                response, self.transfer.chunk_size, req.method, req.route, req.timeout or self.timeout
            )
            yield streamed
        except BaseException as exc:
            failure = exc if streamed is not None else None
            response.close()
            raise
        finally:
            if streamed is not None and streamed.detached:
                response.close()  # aiohttp's parser did not see the body: the connection is not reusable
            response.release()
            if span is not None:
                span.end(response.status, received=streamed.received if streamed else None, error=failure)

    def _api_error(self, req: Request, status: int, headers: Mapping[str, str], body: bytes) -> APIError:
        if 300 <= status < 400:
            return APIError(
                f"{status} from {req.method} {API_PREFIX}{req.route}: a redirect"
                f"{' to ' + headers['Location'] if 'Location' in headers else ''} was not followed "
                "(the SDK never sends credentials to another location)",
                status=status,
                body=body,
                method=req.method,
                path=req.route,
                headers={k: v for k, v in headers.items() if k.lower() == "location"},
            )
        # Not logged here: the status line is logged when it arrives, and whether it is an error is
        # the caller's to say (the documented "nothing found" 400/404 of a progress listing is an
        # answer: an empty list).
        return build_api_error(
            status,
            body,
            headers=headers,
            method=req.method,
            path=f"{API_PREFIX}{req.route}",
            params=req.params,
        )

    async def _read_body(
        self, response: aiohttp.ClientResponse, req: Request
    ) -> tuple[bytes, AdCreativeError | None]:
        try:
            return await response.read(), None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return b"", translate(
                exc, req.method, req.route, reading=True, limits=req.timeout or self.timeout
            )

    async def _feed_body(
        self, response: aiohttp.ClientResponse, req: Request, sink: Callable[[bytes], object]
    ) -> tuple[int, AdCreativeError | None]:
        """Hand the body to ``sink`` as it arrives; the bytes received, and the error that ended it."""
        received = 0
        head = b""  # the body's first bytes, for the error of a malformed one
        try:
            try:
                async for chunk in response.content.iter_chunked(SINK_CHUNK):
                    if len(head) < _HEAD_KEPT:
                        head += chunk[: _HEAD_KEPT - len(head)]
                    received += len(chunk)
                    sink(chunk)
                sink(b"")
            except msgspec.DecodeError as exc:
                return received, malformed(response.status, req.method, req.route, exc, head)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return received, translate(
                exc, req.method, req.route, reading=True, limits=req.timeout or self.timeout
            )
        return received, None

    async def _access_token(self, deadline: float | None) -> str:
        """The access token, a token request it needs ending by the call's ``deadline``."""
        if deadline is None or deadline == CALL_DEADLINE.get():
            return await self.tokens.access_token()
        reset = CALL_DEADLINE.set(deadline)
        try:
            return await self.tokens.access_token()
        finally:
            CALL_DEADLINE.reset(reset)

    async def _exchange(
        self, req: Request, *, streamed: bool
    ) -> tuple[aiohttp.ClientResponse, HttpSpan | None]:
        """Send with auth and the retry policy; the response, and the telemetry of its attempt (None
        when telemetry is off), which the caller ends once the body is read.

        A 401 drops the token, renews it and sends once more if the body can be sent (see
        :attr:`Request.replayable`); else it raises the 401. Transient failures are
        retried as :class:`RetryPolicy` says: GETs on connection errors, timeouts and retryable
        statuses; anything else only when it surely never reached the server. Every attempt ends by
        the call's deadline (``Timeout.total``; for a ``streamed`` answer, its headers only).
        """
        policy = req.retry_policy or self.retry
        limits = req.timeout or self.timeout
        # the event loop's clock, as anyio.current_time() reads it (without its backend lookup per call)
        now = asyncio.get_running_loop().time
        deadline, plain = call_deadline(
            limits,
            now(),
            per_call=req.timeout is not None,
            upload_sizes=None if req.form is None else [i.size for i in req.form if isinstance(i, Upload)],
            max_upload_size=self.transfer.max_upload_size,
        )
        started = self._clock.monotonic()
        delays: Iterator[float] | None = None  # the backoff's delays, made for a first retry (no closure)

        attempt = 0
        renewals = 0
        telemetry = self.telemetry
        while True:
            attempt += 1
            try:
                token = await self._access_token(deadline) if req.auth else None
            except AdCreativeError as exc:
                exc.before_send = True  # a token failure is never a send of this call
                raise
            # paced on 429s: the wait for a turn is the client's own pacing, not the API's silence, so it
            # moves the call's deadline (a paced bulk run must not time its calls out while they queue)
            ticket = 0
            if self.rate is not None:
                queued = now()
                ticket = await self.rate.acquire()
                if deadline is not None:
                    deadline += now() - queued
            wait: float | None = None
            if deadline is not None:
                wait = deadline - now()
                if wait <= 0:
                    late = timeout_error("total", req.method, req.route, limits, sent=False)
                    late.before_send = True  # nothing of this attempt left
                    raise late
            # The first attempt of a plain call: the session's timeouts (its total is this deadline).
            timeout = (
                None
                if plain and attempt == 1 and not streamed
                else self._attempt_timeout(limits, wait, streamed)
            )
            span = telemetry.http_request(req, attempt - 1) if telemetry is not None else None
            try:
                response = await self._send(req, token, span, timeout, wait if streamed else None, limits)
            except APIConnectionError as exc:
                if span is not None:
                    span.end(error=exc)
                delays = delays or backoff_delays(policy)
                delay = self._retry_delay(
                    req, policy, attempt, started, next(delays), sent=exc.sent, deadline=deadline
                )
                if delay is None:
                    raise
                if telemetry is not None:
                    telemetry.retried(req, type(exc).__qualname__)
                logger.info(
                    "%s %s failed (%s); retry %d in %.2fs",
                    req.method,
                    req.route,
                    exc,
                    attempt,
                    delay,
                    extra=req.log_ids,
                )
                await self._clock.sleep(delay)
                continue
            except BaseException as exc:
                if span is not None:
                    span.end(error=exc)
                raise
            if self.rate is not None:
                self.rate.observe(ticket, response.status)
            if response.status == 401 and token is not None:
                # The token is refused: forget it whatever happens next, so that no later call sends it.
                body, error = await self._read_body(response, req)
                response.release()  # stops aiohttp's body writer: a body not read yet stays unread
                if span is not None:
                    span.end(401)
                self.tokens.invalidate(token)
                if renewals < TOKEN_RENEWALS and req.replayable:  # (no upload can start any more)
                    logger.info("401 on %s %s: renewing the token and retrying", req.method, req.route)
                    renewals += 1
                    continue
                if error is not None:
                    raise error
                raise self._api_error(req, response.status, response.headers, body)
            # A 429 says the server refused the request unprocessed (RATE_LIMITED_UNPROCESSED): safe to
            # send again, POSTs included.
            refused = response.status == 429 and _rate_limited_unprocessed() and 429 in policy.retry_statuses
            if response.status in policy.retry_statuses and (req.repeatable or refused):
                delays = delays or backoff_delays(policy)
                delay = self._retry_delay(
                    req, policy, attempt, started, next(delays), sent=not refused, deadline=deadline
                )
                retry_after = retry_after_seconds(response.headers)
                if delay is not None and retry_after is not None:
                    delay = None if retry_after > policy.max_retry_after else max(delay, retry_after)
                    if delay is not None and deadline is not None and now() + delay >= deadline:
                        delay = None  # the answer would come after the call's deadline: say so now
                if delay is not None and self._clock.monotonic() - started + delay <= policy.max_total:
                    logger.info(
                        "%s %s -> %s; retry %d in %.2fs",
                        req.method,
                        req.route,
                        response.status,
                        attempt,
                        delay,
                        extra=req.log_ids,
                    )
                    await self._read_body(response, req)
                    response.release()
                    if span is not None:
                        span.end(response.status)
                    if telemetry is not None:
                        telemetry.retried(req, str(response.status))
                    await self._clock.sleep(delay)
                    continue
            return response, span

    def _retry_delay(
        self,
        req: Request,
        policy: RetryPolicy,
        attempt: int,
        started: float,
        backoff_delay: float,
        *,
        sent: bool | None,
        deadline: float | None = None,
    ) -> float | None:
        """The delay before attempt ``attempt + 1``, or None when the policy allows no retry (or no
        attempt could start before the call's ``deadline``)."""
        if not req.retry or not req.replayable or attempt >= policy.max_attempts:
            return None
        if not req.repeatable and sent is not False:
            return None  # a POST that may have reached the server is never sent again blindly
        delay = policy.jitter(backoff_delay) if policy.jitter is not None else backoff_delay
        if self._clock.monotonic() - started + delay > policy.max_total:
            return None
        if deadline is not None and anyio.current_time() + delay >= deadline:
            return None
        self.retries += 1
        return delay

    def _headers(self, req: Request, token: str | None) -> dict[str, str]:
        headers: dict[str, str] = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if req.auth or AUTH_SENDS_API_KEY_HEADERS:
            headers["x-api-key"] = self._api_key.reveal()
            headers["x-api-secret"] = self._api_secret.reveal()
        if req.content_type is not None:
            headers["Content-Type"] = req.content_type
        for name, value in (req.headers or {}).items():
            headers[name] = value
        return headers

    @staticmethod
    def _body(req: Request) -> tuple[Any, FormBody | None, int | None]:
        """The request's body (a JSON one, or its multipart form), the form if it is one, its size."""
        if req.form is None:
            return req.json, None, len(req.json) if req.json is not None else 0
        form = FormBody(req.form, req.on_upload_progress)
        return form, form, form.size

    @staticmethod
    def _attempt_timeout(limits: Timeout, wait: float | None, streamed: bool) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for one attempt: what is left of the call's deadline as its total, except
        for a streamed answer (its body must not be cut: ``read`` bounds it)."""
        return aiohttp.ClientTimeout(
            total=None if streamed else wait,
            connect=limits.pool,
            sock_connect=limits.connect,
            sock_read=limits.read,
        )

    async def _send(
        self,
        req: Request,
        token: str | None,
        span: HttpSpan | None,
        client_timeout: aiohttp.ClientTimeout | None = None,
        head_within: float | None = None,
        limits: Timeout | None = None,
    ) -> aiohttp.ClientResponse:
        """One attempt: the response once its headers arrived (within ``head_within`` seconds, if
        given: a streamed answer's deadline)."""
        session = self._require_session()
        body, form, size = self._body(req)
        headers = self._headers(req, token)
        kwargs: dict[str, Any] = {
            "params": list(req.query) if req.query else None,
            "data": body,
            "headers": headers,
            "allow_redirects": False,
            "expect100": req.form is not None and (size is None or size > EXPECT_CONTINUE_THRESHOLD),
        }
        if client_timeout is not None:
            kwargs["timeout"] = client_timeout
        if self._proxy is not None:
            kwargs["proxy"] = self._proxy
        if self._environment is not NO_ENVIRONMENT:
            self._environment.apply(headers, kwargs, tunnel=self._tunnel)
        error: AdCreativeError | None = None
        response: aiohttp.ClientResponse | None = None
        started = anyio.current_time() if logger.isEnabledFor(logging.DEBUG) else 0.0
        try:
            if head_within is None:
                response = await session.request(req.method, self.url(req.route), **kwargs)
            elif sys.version_info >= (3, 11):
                # asyncio's own timeout, as aiohttp's inside it: a third of anyio.fail_after's CPU
                # (no cancel scope, task state or generator context managers per download)
                async with asyncio.timeout(head_within):
                    response = await session.request(req.method, self.url(req.route), **kwargs)
            else:  # pragma: no cover - Python 3.10 has no asyncio.timeout
                with anyio.fail_after(head_within):
                    response = await session.request(req.method, self.url(req.route), **kwargs)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            error = form.error if form is not None else None
            if error is None:
                error = translate(exc, req.method, req.route, limits=limits or req.timeout or self.timeout)
        if span is not None:
            span.request_size = size if size is not None else form.sent if form is not None else 0
        if error is not None:
            logger.debug("%s %s failed: %s", req.method, req.route, error, extra=req.log_ids)
            raise error
        assert response is not None
        if started:
            logger.debug(
                "%s %s -> %s in %.3fs",
                req.method,
                req.route,
                response.status,
                anyio.current_time() - started,
                extra=req.log_ids,
            )
        return response

    async def _send_token_request(self, route: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        # A RefreshJwtToken is never repeated (rotation is undocumented): the token manager generates a
        # new token instead. GenerateJwtToken is retried like a GET: a second token costs nothing.
        response = await self.request(
            Request(
                "POST",
                route,
                json=body,
                auth=False,
                content_type=AUTH_CONTENT_TYPE,
                retry=route != REFRESH_PATH,
                idempotent=True,  # a second token costs nothing
            )
        )
        return response.status, response.headers, response.body


def backoff_delays(policy: RetryPolicy) -> Iterator[float]:
    """The retry policy's exponential delays (before jitter), from ``initial_backoff`` up to
    ``max_backoff``: made for a call's first retry, never for a call that needs none."""
    delays = backoff.expo(base=2, factor=policy.initial_backoff, max_value=policy.max_backoff)
    next(delays)  # prime the generator, as backoff's decorators do
    return delays


def _rate_limited_unprocessed() -> bool:
    """``_ratelimit.RATE_LIMITED_UNPROCESSED``, read when a 429 arrives (the module is imported only
    then, or with rate control on)."""
    from ._ratelimit import RATE_LIMITED_UNPROCESSED

    return RATE_LIMITED_UNPROCESSED


def _not_open() -> ClientNotOpenError:
    return ClientNotOpenError(
        "the client is not open: use `async with AdCreativeClient(...) as client:` "
        "(or `await client.open()` ... `await client.aclose()`)"
    )
