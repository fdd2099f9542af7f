"""The :class:`Emulator`: its lifetime (an aiohttp server on a local port), its controls and counters.

The emulator owns one :class:`~._state.State` and serves it through the application built by
:mod:`._app`. Every control is a plain synchronous method: call it from the test's event loop
between requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import TypedDict

from aiohttp import web

from ._app import EmulatorApp
from ._endpoints import find_endpoint, queue_failure
from ._faults import FaultPlan, Faults
from ._notify import Delivery, Notifier
from ._options import EmulatorOptions
from ._ratelimit import RateCounts
from ._state import (
    DEFAULT_FAILURE_MESSAGE,
    TERMINAL_STATES,
    Application,
    EmulatorClock,
    NotificationChannel,
    ProcessSnapshot,
    ReceivedCall,
    State,
    TaskSnapshot,
    TaskState,
)
from ._validation import parse_guid


class Credentials(TypedDict):
    """What a client needs to talk to an emulator: ``AdCreativeClient(**emu.credentials)``."""

    application_id: str
    api_key: str
    api_secret: str
    jwt_private_key: str
    base_url: str


SHUTDOWN_TIMEOUT = 2.0
"""Seconds :meth:`Emulator.close` lets in-flight requests finish."""


class Emulator:
    """A local, in-process AdCreative.ai service faithful to the docs, for tests, demos and benchmarks.

    It serves the token endpoints, the AdCreative generation feature (start, edit, progress, download)
    and the Background Remover feature, with the status codes, JSON shapes and messages of the docs;
    and the features documented only in part (Upscaler, Face Enhancer, Stock Image, Product Photoshoot
    with PNG/JPEG/PDF downloads, Scan My Website, Ad Text) with the same authentication, validation and
    error shapes and assumed answers where the docs show none (see ``_features``). Every behaviour the
    docs leave open is a keyword option (see :class:`EmulatorOptions`).

    Example::

        async with Emulator(auto_complete=False) as emu:
            client = AdCreativeClient(**emu.credentials)
            ...
            emu.finish_process(process_id)
            assert emu.request_count("Image/Generation/CheckUserProgress") == 1

    Args:
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (read :attr:`base_url` after starting).
        application_id, api_key, api_secret, jwt_private_key: The application's credentials; random
            when None.
        access_token_lifetime, refresh_token_lifetime, rotate_refresh_tokens, task_duration,
        auto_complete, notification_channel, list_finished, partial_tasks, unknown_task_state,
        task_failure_rate, read_after_write_lag, start_latency, image_format, image_size, seed,
        tasks_per_size, channel_required_for_background_removal, download_size, range_requests,
        progress_notifications, notification_loss_rate, notification_duplicate_rate,
        reorder_notifications, stamp_inputs, rate_limit, rate_burst: See :class:`EmulatorOptions`.
        faults: random faults per route for chaos tests: ``{route: Faults(...)}`` (or a mapping of its
            fields), ``"*"`` for every route without its own (see :class:`Faults`).

    Notifications are delivered to the application's channels (webhook URLs get a POST, ``amqp://``
    URLs a RabbitMQ message) as tasks end; :attr:`deliveries` lists every attempt.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        application_id: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        jwt_private_key: str | None = None,
        access_token_lifetime: float = 3600.0,
        refresh_token_lifetime: float = 7 * 86400.0,
        rotate_refresh_tokens: bool = False,
        task_duration: float | tuple[float, float] = 0.5,
        auto_complete: bool = True,
        notification_channel: bool = True,
        list_finished: bool = True,
        partial_tasks: bool = False,
        unknown_task_state: int | None = None,
        task_failure_rate: float = 0.0,
        read_after_write_lag: float = 0.0,
        start_latency: float | tuple[float, float] = 0.0,
        image_format: str = "png",
        image_size: tuple[int, int] = (64, 64),
        seed: int | None = None,
        tasks_per_size: int = 5,
        channel_required_for_background_removal: bool = True,
        download_size: int | None = None,
        range_requests: bool = False,
        progress_notifications: str = "every_change",
        notification_loss_rate: float = 0.0,
        notification_duplicate_rate: float = 0.0,
        reorder_notifications: bool = False,
        stamp_inputs: bool = False,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        faults: Mapping[str, Faults | Mapping[str, float]] | None = None,
    ) -> None:
        self.options = EmulatorOptions(
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            task_duration=task_duration,
            auto_complete=auto_complete,
            notification_channel=notification_channel,
            list_finished=list_finished,
            partial_tasks=partial_tasks,
            unknown_task_state=unknown_task_state,
            task_failure_rate=task_failure_rate,
            read_after_write_lag=read_after_write_lag,
            start_latency=start_latency,
            image_format=image_format,
            image_size=image_size,
            seed=seed,
            tasks_per_size=tasks_per_size,
            channel_required_for_background_removal=channel_required_for_background_removal,
            download_size=download_size,
            range_requests=range_requests,
            progress_notifications=progress_notifications,
            notification_loss_rate=notification_loss_rate,
            notification_duplicate_rate=notification_duplicate_rate,
            reorder_notifications=reorder_notifications,
            stamp_inputs=stamp_inputs,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
        )
        """The behaviour options in force."""
        self.clock = EmulatorClock()
        """The emulator's clock (monotonic time plus what :meth:`advance` added)."""
        self._state = State(self.options, self.clock)
        self._state.faults = FaultPlan(faults, seed)
        self._notifier = Notifier(self._state, self.clock, self.options)
        self._state.on_change = self._notifier.touch
        if application_id is not None and parse_guid(application_id) is None:
            raise ValueError(f"application_id must be a GUID, not {application_id!r}")
        self._application = self._state.add_application(
            parse_guid(application_id) if application_id else None,
            api_key,
            api_secret,
            jwt_private_key,
            notification_channel=notification_channel,
        )
        self._state.primary = self._application
        self._host = host
        self._port = port
        self._http = EmulatorApp(self._state)
        self.app: web.Application = self._http.build()
        """The aiohttp application, for embedding (e.g. in ``aiohttp.test_utils.TestServer``)."""
        self.app.cleanup_ctx.append(self._notifier.context)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # lifetime ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving on ``host:port`` (use ``async with`` to also stop)."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._runner = runner
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Emulator base_url={self._base_url!r}>"

    # credentials ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running emulator (no trailing slash, no ``/api/v1``)."""
        if self._base_url is None:
            raise RuntimeError("the emulator has not been started")
        return self._base_url

    @property
    def application_id(self) -> str:
        """The application's id (lowercase GUID)."""
        return self._application.application_id

    @property
    def api_key(self) -> str:
        """The application's API key (``x-api-key``)."""
        return self._application.api_key

    @property
    def api_secret(self) -> str:
        """The application's API secret (``x-api-secret``)."""
        return self._application.api_secret

    @property
    def jwt_private_key(self) -> str:
        """The application's JWT private key (sent to GenerateJwtToken)."""
        return self._application.jwt_private_key

    @property
    def credentials(self) -> Credentials:
        """``application_id``, ``api_key``, ``api_secret``, ``jwt_private_key`` and ``base_url``."""
        return {
            "application_id": self.application_id,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "jwt_private_key": self.jwt_private_key,
            "base_url": self.base_url,
        }

    def add_application(
        self,
        *,
        application_id: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        jwt_private_key: str | None = None,
        notification_channel: bool = True,
    ) -> Credentials:
        """Register another application; returns its credentials (as :attr:`credentials`)."""
        if application_id is not None and parse_guid(application_id) is None:
            raise ValueError(f"application_id must be a GUID, not {application_id!r}")
        app = self._state.add_application(
            parse_guid(application_id) if application_id else None,
            api_key,
            api_secret,
            jwt_private_key,
            notification_channel=notification_channel,
        )
        return {
            "application_id": app.application_id,
            "api_key": app.api_key,
            "api_secret": app.api_secret,
            "jwt_private_key": app.jwt_private_key,
            "base_url": self.base_url if self._base_url else "",
        }

    # notification channels -------------------------------------------------------------------------

    def add_notification_channel(
        self,
        kind: str = "webhook",
        url: str = "",
        include_image_data: bool = False,
        *,
        application_id: str | None = None,
    ) -> str:
        """Give the application an active notification channel; returns its id.

        Args:
            kind: ``"webhook"`` (``url`` gets an HTTP POST per message) or ``"rabbitmq"`` (``url`` is an
                ``amqp://`` broker: messages go to its ``image-render.notifications`` exchange).
            url: where to deliver; empty: a channel configured out of band, which only lifts the
                documented 404 "No active notification channel configurations found".
            include_image_data: task-completed messages carry the image as base64.
        """
        return self._state.add_channel(self._application_for(application_id), kind, url, include_image_data)

    def remove_notification_channels(self, *, application_id: str | None = None) -> None:
        """Remove every channel of the application: starts and edits answer the documented 404."""
        self._application_for(application_id).channels.clear()

    def notification_channels(self, *, application_id: str | None = None) -> list[NotificationChannel]:
        """The application's channels."""
        return list(self._application_for(application_id).channels.values())

    def _application_for(self, application_id: str | None) -> Application:
        if application_id is None:
            return self._application
        app = self._state.applications.get(parse_guid(application_id) or "")
        if app is None:
            raise KeyError(f"no application {application_id!r}")
        return app

    # time and tokens --------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: tasks and tokens whose time has come finish or expire."""
        self._state.advance(seconds)

    @property
    def injected_faults(self) -> dict[str, int]:
        """Random faults injected so far (``faults=``), by kind."""
        return dict(self._state.faults.injected)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every notification delivery attempt so far (channel, message type, process, task, status)."""
        return self._notifier.deliveries

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on (refresh tokens are unaffected)."""
        self._state.expire_access_tokens()

    # tasks and processes ----------------------------------------------------------------------------

    def _set_task(self, task_id: str, state: int, message: str = "") -> None:
        process, task = self._state.get_task(task_id)
        task.state = state
        task.finishes_at = None
        task.finished_at = self.clock.now() if state in TERMINAL_STATES else None
        task.error_message = message
        process.reschedule()
        self._notifier.touch(process)

    def finish_task(self, task_id: str) -> None:
        """The task succeeds now (KeyError for an unknown task)."""
        self._set_task(task_id, TaskState.SUCCEEDED)

    def fail_task(self, task_id: str, message: str = DEFAULT_FAILURE_MESSAGE) -> None:
        """The task fails now with ``message`` (the process's ``errorMessage`` once all tasks ended)."""
        self._set_task(task_id, TaskState.FAILED, message)

    def set_task_state(self, task_id: str, state: int) -> None:
        """Pin a task to any state, documented or not; it no longer ends on its own."""
        message = DEFAULT_FAILURE_MESSAGE if state == TaskState.FAILED else ""
        self._set_task(task_id, state, message)

    def finish_process(self, process_id: str) -> None:
        """Every task of the process succeeds now (KeyError for an unknown process)."""
        process = self._state.get_process(process_id)
        now = self.clock.now()
        for task in process.tasks.values():
            if task.state != TaskState.SUCCEEDED:
                task.finished_at = now
            task.state = TaskState.SUCCEEDED
            task.finishes_at = None
            task.error_message = ""
        process.reschedule()
        self._notifier.touch(process)

    def process(self, process_id: str) -> ProcessSnapshot:
        """A read-only snapshot of a process: user, feature, state, tasks, inputs received, downloads."""
        return self._state.get_process(process_id).snapshot()

    def task(self, task_id: str) -> TaskSnapshot:
        """A read-only snapshot of a task."""
        process, _ = self._state.get_task(task_id)
        return process.snapshot().tasks[task_id.lower()]

    def processes_for(self, user_id: str, *, application_id: str | None = None) -> list[ProcessSnapshot]:
        """Snapshots of every process of a user (every feature), oldest first."""
        return [p.snapshot() for p in self._state.processes_for(user_id, application_id)]

    def running_task_count(self) -> int:
        """Tasks not yet in a terminal state, over every process."""
        now = self.clock.now()
        count = 0
        for process in self._state.processes.values():
            process.refresh(now)
            count += sum(1 for t in process.tasks.values() if t.state not in TERMINAL_STATES)
        return count

    # failures and counters --------------------------------------------------------------------------

    def fail_next(self, route: str, status: int = 500, count: int = 1, *, retry_after: int = 1) -> None:
        """The next ``count`` calls of ``route`` answer ``status`` instead of being served.

        ``route`` is the path after ``/api/v1/`` (e.g. ``"Image/Generation/CheckUserProgress"``). Bodies:
        401 the documented one; 404 the documented download or notification-channel one where the
        route has it; 429 layered, with ``Retry-After: retry_after``; 502/503/504 an HTML page as a
        proxy sends; other 5xx layered (the documented "An unexpected error occurred while checking
        image generation process." on generation's progress routes); anything else layered.
        """
        queue_failure(self._state, route, status, count, retry_after)

    def truncate_next_download(self, task_id: str, after_bytes: int, *, count: int = 1) -> None:
        """Cut the next ``count`` downloads of a task after ``after_bytes`` bytes of body.

        The response announces its whole length, sends ``after_bytes`` bytes and closes the
        connection, as a network failure mid-body would. Each cut download still counts as a
        download. KeyError for an unknown task; ValueError for a negative size or a count below 1.
        """
        self._state.truncate_next_download(task_id, after_bytes, count)

    @property
    def requests(self) -> Counter[str]:
        """Requests received, keyed ``"METHOD route"`` (the live counter: ``.clear()`` resets it)."""
        return self._state.requests

    def request_count(self, route: str, method: str | None = None) -> int:
        """How many requests ``route`` received (of ``method`` only, if given); failed ones count too."""
        endpoint = find_endpoint(route)
        canonical = endpoint.route if endpoint else route.strip("/")
        return sum(
            count
            for key, count in self._state.requests.items()
            if key.partition(" ")[2] == canonical
            and (method is None or key.partition(" ")[0] == method.upper())
        )

    def rate_counts(self, *, application_id: str | None = None) -> RateCounts:
        """What the account rate limit (``rate_limit``) did for the application: requests accepted and
        answered 429 (zeros without a limit)."""
        return self._state.limiter.counts(self._application_for(application_id).application_id)

    def set_rate_limit(
        self, rate: float | None, burst: float | None = None, *, reset_counts: bool = False
    ) -> None:
        """Set the account rate limit of every application (requests per second; None: none) and its burst
        (default one second's worth); ``reset_counts`` zeroes the counters of :meth:`rate_counts`."""
        self._state.limiter.configure(rate, burst)
        if reset_counts:
            self._state.limiter.reset_counts()

    def processes_per_input(self) -> Counter[str]:
        """Testing only: how many render processes each input made, by the SHA-256 of the process's first
        uploaded image (what a crash test counts: exactly one render per input)."""
        return self._state.processes_per_input()

    def download_count(self, task_id: str) -> int:
        """Successful downloads of a task."""
        return self._state.get_task(task_id)[1].download_count

    def result_bytes(self, task_id: str, *, low_resolution: bool = False) -> bytes:
        """The body a download of the task returns (whatever its state): each task's image has its own
        colour, so a downloaded file tells which task it came from (KeyError for an unknown task)."""
        self._state.get_task(task_id)
        body = self._http.download_body(task_id.lower(), low_resolution)
        return b"".join(piece if isinstance(piece, bytes) else bytes(piece) for piece in body)

    def process_download_count(self, process_id: str) -> int:
        """Successful downloads of every task of a process."""
        return self._state.get_process(process_id).download_count

    def received_calls(self, route: str | None = None) -> list[ReceivedCall]:
        """What the calls without a start form received (query and JSON body), oldest first: Scan My
        Website, Ad Text, PresetKeys; only those of ``route`` (any case) if given."""
        calls = self._state.received
        if route is None:
            return list(calls)
        endpoint = find_endpoint(route)
        canonical = endpoint.route if endpoint else route.strip("/")
        return [call for call in calls if call.route == canonical]
