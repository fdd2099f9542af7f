"""AdCreativeClient: configuration, credentials, lifetime (one aiohttp session, one task group), and
the feature resources.
"""

from __future__ import annotations

import asyncio
import os
import ssl as ssl_module
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from yarl import URL

from ._auth import Secret
from ._background import BackgroundTasks
from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_APPLICATION_ID,
    ENV_BASE_URL,
    ENV_JWT_PRIVATE_KEY,
    ENV_USER_ID,
    Limits,
    PollPolicy,
    RetryPolicy,
    Timeout,
    TransferOptions,
    env,
)
from ._errors import ClientNotOpenError, ConfigurationError, InvalidRequestError
from ._fields import canonical_guid
from ._jobs import RenderJob, TaskUpdate, as_completed
from ._polling import PollScheduler
from ._reconcile import SubmissionLedger
from ._redact import ACCOUNT_ID_MASK
from ._telemetry import Telemetry, build_instruments
from ._transport import Transport
from .resources._base import RenderResource
from .resources._registry import configured_features
from .resources.ad_texts import AdTextsResource
from .resources.background_remover import BackgroundRemoverResource
from .resources.creatives import CreativesResource
from .resources.face_enhancer import FaceEnhancerResource
from .resources.product_photoshoot import ProductPhotoshootResource
from .resources.scan_my_website import ScanMyWebsiteResource
from .resources.stock_images import StockImagesResource
from .resources.upscaler import UpscalerResource

if TYPE_CHECKING:
    from ._bulk import BulkOutcome, BulkRun
    from ._naming import Namer
    from ._ratelimit import RateBoard, RateControl, RateStatus
    from .ledger import RenderRequest, RunLedger
    from .notifications._hub import Message, NotificationHub

__all__ = ["AdCreativeClient"]

T = TypeVar("T")


def _credential(value: str | None, env_name: str, param: str, missing: list[str]) -> str:
    chosen = value if value is not None else env(env_name)
    if chosen is None or not chosen.strip():
        missing.append(f"{param} (or {env_name})")
        return ""
    return chosen.strip()


class AdCreativeClient:
    """The async client of the AdCreative.ai API.

    Use it as an async context manager: it owns one aiohttp session and one task group of background
    work, both closed when the block ends (or ``await client.open()`` and ``await client.aclose()``, from
    any tasks: in a notebook, one cell each)::

        async with AdCreativeClient() as client:          # credentials from ADCREATIVE_* variables
            job = await client.background_remover.remove("product.jpg", user_id=USER)
            print(await client.background_remover.user_progress(USER))

    Args:
        application_id: the application's GUID (env ``ADCREATIVE_APPLICATION_ID``).
        api_key: sent as ``x-api-key`` (env ``ADCREATIVE_API_KEY``).
        api_secret: sent as ``x-api-secret`` (env ``ADCREATIVE_API_SECRET``).
        jwt_private_key: used to obtain tokens (env ``ADCREATIVE_JWT_PRIVATE_KEY``).
        base_url: the API host (env ``ADCREATIVE_BASE_URL``; default ``https://api.adcreative.ai``).
        user_id: default user for calls that take one (env ``ADCREATIVE_USER_ID``); the API needs a
            user GUID on every feature call, and a fixed one is fine for integrators without sub-users.
        timeout: connect/read/pool/total timeouts (each call's deadline is 30 s by default; a download's
            body is bounded by ``read``, not by the total: see :class:`Timeout`).
        limits: connection pool limits.
        transfer: chunk size, maximum upload size, file worker threads.
        poll_policy: how the one poll scheduler paces progress calls (see :class:`PollPolicy`).
        retry: when requests are sent again (see :class:`RetryPolicy`: GETs on transient failures,
            POSTs only when they surely never reached the server).
        push: a :class:`~adcreative_async.notifications.NotificationHub` fed by a webhook receiver or
            RabbitMQ: waits resolve as messages arrive, and polling slows to a reconcile interval while
            they flow.
        trust_env: read proxy settings (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and netrc
            credentials from the environment as aiohttp does, once when the client opens.
        proxy: an explicit proxy URL.
        ssl: an ``ssl.SSLContext`` (custom CAs, client certificates), True (default verification) or
            False (no verification: only for tests).
        strict_validation: when False, values the SDK does not know yet (render kinds and types,
            image types, lengths, colour formats) are sent instead of refused; required fields and GUID
            syntax are always checked.
        reconcile_submissions: a start or edit call that failed after it may have reached the server
            is never sent again; with this (default) the client reads the user's processes and adopts
            the process only if it provably made it, else raises ``RenderMayExistError`` naming the
            candidates. It costs one progress listing per (feature, user) before the first start
            call, to know what existed already.
        unique_user_per_submission: strong mode: every start call gets a fresh user id as its
            identity (``job.user_id``), so that a start whose answer was lost is found, or known
            absent, without doubt (and no listing is needed beforehand).
        exclusive_user_ids: declare this client the only writer of its user ids (no other client or
            worker process starts renders for them). Only then can a reconcile adopt a process of a
            shared user id: without it, a new process may be another writer's, so the SDK names it
            in ``RenderMayExistError`` instead. Default False (two workers may share a user id).
        user_agent: replaces the default ``adcreative-async/<version> …`` User-Agent.
        token_refresh_lead: renew the access token this many seconds before expiry (at most half of
            its lifetime).
        clock: the clock for every sleep and time reading (tests pass a manual one).
        feature_overrides: per render feature (``"upscaler"``, ``"product_photoshoot"``, …), routes,
            the process-id query name or field names to use instead of the SDK's, for what the docs
            leave undocumented, e.g. ``{"upscaler": {"download_route": "Image/Upscaling/Get",
            "process_id_query": "imageRenderProcessId"}}`` (keys: see
            :meth:`RenderFeature.with_overrides <adcreative_async.RenderFeature.with_overrides>`).
        telemetry: OpenTelemetry spans and metrics (needs ``pip install opentelemetry-api``):
            True for the global tracer and meter providers, or a :class:`~adcreative_async.Telemetry`
            naming others; off by default, and then free (see README, "Observability").
        rate_control: adapt the request rate to the server's 429s (AIMD, as AWS's adaptive retry mode):
            True, or a :class:`RateControl` to tune it. Off by default. Workers whose bulk runs share a
            PostgreSQL run ledger share the learned rate (see :class:`RateControl`, and README, "Rate
            limits").

    Raises:
        ConfigurationError: a credential is missing or malformed (names the argument and variable),
            ``feature_overrides`` names an unknown feature or key, or telemetry is asked for without
            ``opentelemetry-api`` installed.
    """

    def __init__(
        self,
        *,
        application_id: str | uuid.UUID | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        jwt_private_key: str | None = None,
        base_url: str | None = None,
        user_id: str | uuid.UUID | None = None,
        timeout: Timeout | None = None,
        limits: Limits | None = None,
        transfer: TransferOptions | None = None,
        poll_policy: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        push: NotificationHub | None = None,
        trust_env: bool = True,
        proxy: str | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        strict_validation: bool = True,
        reconcile_submissions: bool = True,
        unique_user_per_submission: bool = False,
        exclusive_user_ids: bool = False,
        user_agent: str | None = None,
        token_refresh_lead: float = 60.0,
        clock: Clock | None = None,
        feature_overrides: Mapping[str, Mapping[str, object]] | None = None,
        telemetry: bool | Telemetry | None = None,
        rate_control: bool | RateControl | None = None,
    ) -> None:
        missing: list[str] = []
        app_text = _credential(
            str(application_id) if application_id is not None else None,
            ENV_APPLICATION_ID,
            "application_id",
            missing,
        )
        key = _credential(api_key, ENV_API_KEY, "api_key", missing)
        secret = _credential(api_secret, ENV_API_SECRET, "api_secret", missing)
        private = _credential(jwt_private_key, ENV_JWT_PRIVATE_KEY, "jwt_private_key", missing)
        if missing:
            raise ConfigurationError(
                "missing credentials: " + ", ".join(missing) + " — pass them to AdCreativeClient(...) "
                "or set the environment variables",
                field=missing[0].split(" ")[0],
                rule="is required",
            )
        try:
            self.application_id = canonical_guid(app_text, "application_id")
        except InvalidRequestError as exc:
            raise ConfigurationError(str(exc), field="application_id", rule="must be a GUID") from None
        self.base_url = self._check_base_url(base_url or env(ENV_BASE_URL) or DEFAULT_BASE_URL)
        default_user = user_id if user_id is not None else env(ENV_USER_ID)
        self.user_id: str | None = (
            canonical_guid(default_user, "user_id") if default_user is not None else None
        )
        self.timeout = timeout or Timeout()
        self.limits = limits or Limits()
        self.transfer = transfer or TransferOptions()
        self.poll_policy = poll_policy or PollPolicy()
        self.push = push
        self._unsubscribe_push: Callable[[], None] | None = None
        self.strict_validation = strict_validation
        self.reconcile_submissions = reconcile_submissions
        self.unique_user_per_submission = unique_user_per_submission
        self.exclusive_user_ids = exclusive_user_ids
        self.clock: Clock = clock or SystemClock()
        self._telemetry = build_instruments(telemetry, base_url=self.base_url, clock=self.clock)
        self._transport = Transport(
            base_url=self.base_url,
            application_id=self.application_id,
            api_key=Secret(key),
            api_secret=Secret(secret),
            jwt_private_key=Secret(private),
            timeout=self.timeout,
            limits=self.limits,
            transfer=self.transfer,
            clock=self.clock,
            trust_env=trust_env,
            proxy=proxy,
            ssl=ssl,
            user_agent=user_agent,
            token_refresh_lead=token_refresh_lead,
            retry=retry,
            telemetry=self._telemetry,
            rate_control=_rate_control(rate_control),
        )
        self._background: BackgroundTasks | None = None
        self._closing: anyio.Event | None = None
        features = configured_features(feature_overrides)
        self.creatives = CreativesResource(self, features["creatives"])
        """AdCreative generation and editing (seed 001)."""
        self.background_remover = BackgroundRemoverResource(self, features["background_remover"])
        """Background removal (seed 000)."""
        self.upscaler = UpscalerResource(self, features["upscaler"])
        """Image upscaling (start documented; progress and download routes assumed)."""
        self.face_enhancer = FaceEnhancerResource(self, features["face_enhancer"])
        """Face enhancement (start documented; download route assumed)."""
        self.stock_images = StockImagesResource(self, features["stock_images"])
        """Stock image generation from a prompt (start documented in part)."""
        self.product_photoshoot = ProductPhotoshootResource(self, features["product_photoshoot"])
        """Product photoshoots: recommendations, preset keys, generation, PNG/JPEG/PDF downloads."""
        self.scan_my_website = ScanMyWebsiteResource(self)
        """Brand, logos and colours of a website (synchronous)."""
        self.ad_texts = AdTextsResource(self)
        """Ad text generation and crafting (synchronous; request fields undocumented)."""
        self._resources: dict[str, RenderResource] = {
            r.feature.name: r
            for r in (
                self.creatives,
                self.background_remover,
                self.upscaler,
                self.face_enhancer,
                self.stock_images,
                self.product_photoshoot,
            )
        }
        self._scheduler: PollScheduler | None = None
        self._ledger = SubmissionLedger(
            self.clock,
            self._transport.retry,
            exclusive=exclusive_user_ids,
            fresh_users=unique_user_per_submission,
        )

    @staticmethod
    def _check_base_url(value: str) -> str:
        try:
            url = URL(value.strip())
        except (TypeError, ValueError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"base_url must be an absolute http(s) URL such as {DEFAULT_BASE_URL!r}, got {value!r}",
                field="base_url",
                rule="must be an absolute http(s) URL",
            )
        return str(url).rstrip("/")

    def __repr__(self) -> str:
        return (
            f"AdCreativeClient(base_url={self.base_url!r}, application_id={ACCOUNT_ID_MASK}, "
            f"open={self.is_open})"
        )

    # ----------------------------------------------------------------------------------- lifetime

    async def __aenter__(self) -> AdCreativeClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open the session and start the client's background work (``async with`` does this).

        Idempotent. The client's lifetime does not belong to the calling task: open it in one task (a
        notebook cell, a startup hook) and use and :meth:`aclose` it in others.
        """
        if self._background is not None:
            return
        background = BackgroundTasks()
        await self._transport.open()
        try:
            await background.start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._transport.aclose()
            raise
        self._background = background

    async def aclose(self) -> None:
        """Stop background work and close the session; from any task. Idempotent: a call while another
        is closing waits for it."""
        if self._closing is not None:
            with anyio.CancelScope(shield=True):
                await self._closing.wait()
            return
        background, self._background = self._background, None
        if background is None:
            return
        self._closing = closing = anyio.Event()
        try:
            if self._unsubscribe_push is not None:
                self._unsubscribe_push()
                self._unsubscribe_push = None
            if self._scheduler is not None:
                self._scheduler.close()  # waiters raise ClientNotOpenError instead of hanging
                self._scheduler = None
            try:
                await background.aclose()  # shielded: nothing of it outlives the client
            finally:
                await self._transport.aclose()  # shielded in the transport
        finally:
            self._closing = None
            closing.set()

    @property
    def is_open(self) -> bool:
        """Whether the client is inside its lifetime."""
        return self._background is not None

    def _require_open(self) -> None:
        if self._background is None:
            raise ClientNotOpenError(
                "the client is not open: use `async with AdCreativeClient(...) as client:` "
                "(or `await client.open()` ... `await client.aclose()`)"
            )

    # ------------------------------------------------------------------------------------ helpers

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start a background task in the client's task group (owned by the client's lifetime)."""
        self._require_open()
        assert self._background is not None
        if self._telemetry is not None:
            func = self._telemetry.detached(func)  # its spans are roots, not the caller's children
        self._background.spawn(func, *args)

    def _poll_scheduler(self) -> PollScheduler:
        """The one poll scheduler of this client, created on first use inside its lifetime."""
        self._require_open()
        if self._scheduler is None:
            self._scheduler = PollScheduler(
                spawn=self._spawn,
                resource_for=self.resource,
                policy=self.poll_policy,
                clock=self.clock,
                telemetry=self._telemetry,
            )
            if self.push is not None:
                # bound to this loop: a message published elsewhere (a sync web app's thread) raises
                # instead of changing the scheduler from another thread, where its wake-ups are lost
                self._unsubscribe_push = self.push.subscribe(
                    self._push_handler(self._scheduler, self.push), loop=_running_loop()
                )
        return self._scheduler

    def _push_handler(self, scheduler: PollScheduler, hub: NotificationHub) -> Callable[[Message], None]:
        """What this client does with each push notification: the scheduler takes it (pacing its polls
        unless deliveries are split between processes: this client's own messages may land in another)
        and, with telemetry on, it is an event on its render's span, counted."""
        from .notifications._hub import PUBLISHING_SOURCE  # with push only (import footprint)

        telemetry = self._telemetry

        def take(message: Message) -> None:
            scheduler.push(message, paces=not hub.split_deliveries)
            if telemetry is not None:
                telemetry.delivered(message, PUBLISHING_SOURCE.get())

        return take

    @property
    def scheduler_stats(self) -> dict[str, int]:
        """The scheduler's counters: poll ``requests`` sent, ``waiters`` and ``pollers`` now, ``pushes``
        received."""
        scheduler = self._scheduler
        if scheduler is None:
            return {"requests": 0, "waiters": 0, "pollers": 0, "pushes": 0}
        return {
            "requests": scheduler.requests,
            "waiters": scheduler.waiters,
            "pollers": scheduler.active_pollers,
            "pushes": scheduler.pushes,
        }

    def as_completed(
        self, jobs: Iterable[RenderJob], *, timeout: float | None = None
    ) -> AsyncIterator[RenderJob]:
        """Yield jobs as their processes finish (see :func:`adcreative_async.as_completed`)."""
        self._require_open()
        return as_completed(jobs, timeout=timeout)

    def bulk(
        self,
        items: Iterable[T],
        submit: Callable[[AdCreativeClient, T], Awaitable[RenderJob]] | None = None,
        *,
        dest: str | os.PathLike[str] | None = None,
        upload_concurrency: int = 4,
        poll_concurrency: int | None = None,
        download_concurrency: int = 8,
        item_timeout: float | None = None,
        low_resolution: bool = False,
        on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None = None,
        request: Callable[[T], RenderRequest] | None = None,
        ledger: str | os.PathLike[str] | RunLedger | None = None,
        name: Namer | None = None,
        lease: float | None = None,
        worker_id: str | None = None,
        max_renders: int | None = None,
    ) -> BulkRun[T]:
        """Run many inputs through submit → wait → download; iterate outcomes as items finish.

        Args:
            items: the inputs (anything ``submit`` or ``request`` understands: paths, briefs…), or
                :class:`~adcreative_async.ledger.RenderRequest` objects: any iterable, read lazily as
                room frees up (a generator of a million paths is never held whole; ``len(run)`` then
                raises TypeError). The run holds ``poll_concurrency + 2 * upload_concurrency`` items at
                once, outcomes not yet taken included; an error raised by the iterator is raised by the
                run once the items read before it are reported.
            submit: ``async def submit(client, item) -> RenderJob``, e.g.
                ``lambda c, path: c.background_remover.remove(path)``. Not with a ledger.
            dest: directory for the results (``<task id>.<type>``, or see ``name``); None: no downloads.
            upload_concurrency: start calls in flight at once.
            poll_concurrency: renders being awaited at once (their polls are coalesced per user by
                the client's scheduler and limited by its :class:`PollPolicy`). Default: 1,000, or
                2,000 with a ledger (whose renders are all detected by one listing of the
                application, a tick at a time: see ``_outcome.LEDGER_POLL_CONCURRENCY``).
            download_concurrency: downloads in flight at once. Each task's download starts as soon as
                the task succeeds.
            item_timeout: per item, seconds of waiting before its outcome is a WaitTimeoutError.
            low_resolution: download the low-resolution renditions.
            on_update: called with (outcome so far, TaskUpdate) for every task state change.
            request: instead of ``submit``: ``item -> RenderRequest`` (what to start for the item, e.g.
                ``RenderRequest.remove_background``); needed with a ledger unless the items are requests.
            ledger: a run ledger: a SQLite file path, a ``postgresql://`` DSN, or a
                :class:`~adcreative_async.ledger.RunLedger` (opened if needed, not closed). The run
                becomes resumable and shareable by many workers: items finished before are reported
                (``outcome.resumed``) and not rendered again, items started before are awaited by their
                process id, and every item is rendered once (see README, "Resumable runs and many
                workers").
            name: output file names, relative to ``dest``: a template such as ``"{stem}{suffix}"`` or
                ``"{stem}-{task_index}.{ext}"`` (fields: ``stem``, ``filename`` (the label's file name,
                suffix kept), ``label``, ``suffix``, ``ext``, ``index``, ``task_index``, ``task_id``,
                ``process_id``) or a callable given them as a mapping. Make it a function of the input
                (not of ``index``, which moves when inputs are added). Every item's name is checked before
                any start call: one outside ``dest``, in a folder that cannot be written, or shared with
                another input is refused unsent (``InvalidRequestError``). The file at an item's name is
                its own: replaced atomically by a rerun.
            lease: with a ledger, seconds a worker's claim on an item lasts unless renewed (default 30).
            worker_id: with a ledger, this worker's name in claims (default: host, pid namespace, pid
                and a random part, which also lets a rerun on the same machine take over the claims of
                a crashed process at once; a worker named otherwise is taken over when its lease
                lapses).
            max_renders: send at most this many start calls (each a paid render), then stop starting:
                the items left are reported with :class:`~adcreative_async.NotStartedError` (with a
                ledger they stay ``pending``: the same run started again goes on). None: no limit.

        Raises:
            LedgerError: the run ledger cannot be opened (on entering the block).
            RunAbortedError: a run-level error stopped the run (wrong credentials, an unreachable API,
                an output folder that cannot be written, a run ledger that stopped being readable or
                writable: a PostgreSQL ledger after its retries, see ``POSTGRES_RETRY_SECONDS``): raised
                by the iteration once the outcomes that came before it are reported, or on leaving the
                block.

        Example::

            async with client.bulk(paths, lambda c, p: c.background_remover.remove(p), dest="out/") as run:
                async for outcome in run:
                    print(outcome.item, "ok" if outcome.ok else outcome.error, outcome.files)
        """
        from ._bulk import BulkRun  # on first use: the per-job path never needs it

        return BulkRun(
            self,
            items,
            submit,
            dest=dest,
            upload_concurrency=upload_concurrency,
            poll_concurrency=poll_concurrency,
            download_concurrency=download_concurrency,
            timeout=item_timeout,
            low_resolution=low_resolution,
            on_update=on_update,
            request=request,
            ledger=ledger,
            name=name,
            lease=lease,
            worker_id=worker_id,
            max_renders=max_renders,
        )

    async def process_many(
        self,
        items: Iterable[T],
        submit: Callable[[AdCreativeClient, T], Awaitable[RenderJob]] | None = None,
        *,
        dest: str | os.PathLike[str] | None = None,
        upload_concurrency: int = 4,
        poll_concurrency: int | None = None,
        download_concurrency: int = 8,
        item_timeout: float | None = None,
        low_resolution: bool = False,
        on_update: Callable[[BulkOutcome[T], TaskUpdate], Any] | None = None,
        request: Callable[[T], RenderRequest] | None = None,
        ledger: str | os.PathLike[str] | RunLedger | None = None,
        name: Namer | None = None,
        lease: float | None = None,
        worker_id: str | None = None,
        max_renders: int | None = None,
    ) -> list[BulkOutcome[T]]:
        """:meth:`bulk`, run to the end; the outcomes in input order (check ``outcome.ok``).

        Example, resumable (run it again after a crash: only what is left is rendered)::

            from adcreative_async.ledger import RenderRequest

            outcomes = await client.process_many(
                sorted(Path("photos").glob("*.jpg")),
                request=RenderRequest.remove_background,
                dest="cutouts/",
                ledger="cutouts/.adcreative-run.sqlite",
                name="{stem}{suffix}",
            )

        Raises:
            RunAbortedError: a run-level error (wrong credentials, an unreachable API, an output folder
                or run ledger that cannot be written) stopped the run; nothing was recorded as failed
                for it, and the same call, once the cause is fixed, finishes the run.
        """
        outcomes: list[BulkOutcome[T]] = []
        async with self.bulk(
            items,
            submit,
            dest=dest,
            upload_concurrency=upload_concurrency,
            poll_concurrency=poll_concurrency,
            download_concurrency=download_concurrency,
            item_timeout=item_timeout,
            low_resolution=low_resolution,
            on_update=on_update,
            request=request,
            ledger=ledger,
            name=name,
            lease=lease,
            worker_id=worker_id,
            max_renders=max_renders,
        ) as run:
            outcomes.extend([outcome async for outcome in run])
        return sorted(outcomes, key=lambda o: o.index)

    def _user_id(self, user_id: str | uuid.UUID | None) -> str:
        if user_id is None:
            if self.user_id is None:
                raise InvalidRequestError.for_field(
                    "user_id",
                    "is required: pass user_id=... or set a default with AdCreativeClient(user_id=...)",
                )
            return self.user_id
        return canonical_guid(user_id, "user_id")

    def _call_timeout(self, value: Timeout | float | None) -> Timeout | None:
        return None if value is None else Timeout.coerce(value, self.timeout)

    def resource(self, feature: str) -> RenderResource:
        """The resource of a feature by name (``"creatives"``, ``"background_remover"``).

        Raises:
            InvalidRequestError: for an unknown feature name.
        """
        try:
            return self._resources[feature]
        except KeyError:
            known = ", ".join(sorted(self._resources))
            raise InvalidRequestError.for_field(
                "feature", f"unknown feature {feature!r} (known: {known})"
            ) from None

    def job_from_json(self, data: bytes | str | Mapping[str, Any]) -> RenderJob:
        """Rebuild a job from its JSON form (``job.to_json()``, ``job.to_wire()`` or ``job.to_dict()``),
        bound to this client."""
        job = RenderJob.from_json(dict(data) if isinstance(data, Mapping) else data)
        return job.bind(self.resource(job.feature))

    def _share_rate(self, ledger: RunLedger | None) -> RateBoard | None:
        """Share the learned rate through a bulk run's ledger (when rate control is on and the ledger
        shares: PostgreSQL); the board to give :meth:`_unshare_rate` at the run's end, or None."""
        rate = self._transport.rate
        if rate is None or ledger is None:
            return None
        board = ledger.rate_board(rate.scope)
        return board if board is not None and rate.attach(board) else None

    async def _unshare_rate(self, board: RateBoard | None) -> None:
        """The bulk run that shared through ``board`` ended (the rate learned is kept)."""
        if board is not None and self._transport.rate is not None:
            await self._transport.rate.detach(board)

    @property
    def rate_status(self) -> RateStatus | None:
        """What the adaptive rate control knows now (its pace, the account's rate, the workers sharing
        it, 429s received), or None when ``rate_control`` is off."""
        rate = self._transport.rate
        return None if rate is None else rate.status

    @property
    def token_requests(self) -> int:
        """Token requests made so far (GenerateJwtToken and RefreshJwtToken)."""
        return self._transport.tokens.requests


def _rate_control(rate_control: bool | RateControl | None) -> RateControl | None:
    """The transport's rate control: ``True`` for the defaults; ``_ratelimit`` is imported only when
    it is on (``import adcreative_async`` does not pay for it: tests/test_import_footprint.py)."""
    if rate_control is True:
        from ._ratelimit import RateControl

        return RateControl()
    return rate_control or None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
