"""The emulated service's memory: applications, channels, tokens, render processes and their tasks.

Nothing here knows HTTP. Time comes from one :class:`EmulatorClock`; task progress is computed lazily
(a process brings its tasks up to date when a request or a control looks at it), so ten thousand
running processes cost nothing while nobody asks about them. Per-user and per-application indexes keep
a progress list proportional to the processes it returns.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import msgspec

from ._faults import FaultPlan
from ._options import EmulatorOptions
from ._ratelimit import AccountLimiter


class TaskState:
    """Task and process state values (the docs' RenderState enum).

    Inferred, not documented (reference §3.3): the Enums page's values were not available; third-party
    summaries name the states not started, started, scheduled, cancelled, failed, succeeded, and numbered
    0..5 in that order they agree with the only documented anchor (5 = finished successfully) and with
    the seeds (1 while running, 5 when done).
    """

    NOT_STARTED = 0
    STARTED = 1
    SCHEDULED = 2
    CANCELLED = 3
    FAILED = 4
    SUCCEEDED = 5


TERMINAL_STATES = frozenset({TaskState.CANCELLED, TaskState.FAILED, TaskState.SUCCEEDED})
"""States a task does not leave on its own; they count as completed in ``completedTaskCount``."""

FEATURE_GENERATION = "generation"
FEATURE_BACKGROUND_REMOVAL = "background_removal"
FEATURE_UPSCALING = "upscaling"
FEATURE_FACE_ENHANCING = "face_enhancing"
FEATURE_STOCK_GENERATION = "stock_generation"
FEATURE_PRODUCT_GENERATION = "product_generation"

DEFAULT_FAILURE_MESSAGE = "Image render task failed."  # assumed: no failure message is documented
CANCELLED_MESSAGE = "Image render task was cancelled."  # assumed: not documented

# assumed: the JWT's claims are not documented; the application id travels in its own claim.
JWT_APPLICATION_CLAIM = "applicationId"
JWT_ISSUER = "adcreative-emulator"


class EmulatorClock:
    """``time.monotonic()`` plus an offset that :meth:`advance` grows; wall time moves along with it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Monotonic seconds, advanced by every :meth:`advance`."""
        return time.monotonic() + self.offset

    def wall(self) -> float:
        """Seconds since the epoch as the emulated service sees them (real time plus the offset)."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("the emulator's clock cannot go backwards")
        self.offset += seconds


def iso_utc(epoch: float) -> str:
    """``2024-12-20T11:57:50.974699Z``: ISO-8601 UTC with 6 fractional digits, as the token endpoint sends."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NotificationChannel:
    """A notification channel of an application: a webhook URL, or an ``amqp://`` broker URL."""

    channel_id: str
    kind: str
    url: str
    include_image_data: bool = False
    active: bool = True


@dataclass
class Application:
    """An integrator application and its credentials."""

    application_id: str
    api_key: str
    api_secret: str
    jwt_private_key: str
    channels: dict[str, NotificationChannel] = field(default_factory=dict)

    def has_active_channel(self) -> bool:
        """Whether any of its channels is active."""
        return any(channel.active for channel in self.channels.values())


@dataclass(frozen=True)
class UploadInfo:
    """What the emulator keeps of an uploaded file: never its content."""

    field: str
    filename: str
    content_type: str | None
    size: int
    sha256: str
    head: bytes
    image_type: str | None


@dataclass(frozen=True)
class RequestInputs:
    """The inputs of a start or edit request, as received.

    Attributes:
        content_type: Media type of the request body (``multipart/form-data`` or
            ``application/x-www-form-urlencoded``; ASP.NET's form binding accepts both).
        fields: Text fields by name exactly as sent, each with every value sent.
        files: File parts by name exactly as sent (the first part of each name).
    """

    content_type: str
    fields: Mapping[str, tuple[str, ...]]
    files: Mapping[str, UploadInfo]


@dataclass
class Task:
    """One task of a render process."""

    task_id: str
    state: int
    finishes_at: float | None
    fails: bool
    error_message: str = ""
    download_count: int = 0
    finished_at: float | None = None
    """When the task last reached a terminal state (emulator clock), for latency measurements."""


@dataclass(frozen=True)
class TaskSnapshot:
    """Read-only view of a task."""

    task_id: str
    state: int
    error_message: str
    download_count: int
    finishes_at: float | None
    finished_at: float | None = None


@dataclass(frozen=True)
class ProcessSnapshot:
    """Read-only view of a render process, for tests to inspect."""

    process_id: str
    application_id: str
    user_id: str
    feature: str
    state: int
    total_task_count: int
    completed_task_count: int
    progress: int
    is_successful: bool
    error_message: str
    render_kind: int | None
    render_type: int | None
    tasks: Mapping[str, TaskSnapshot]
    inputs: RequestInputs
    edits: tuple[RequestInputs, ...]
    download_count: int
    created_at: float


_Listed = tuple[Any, bool, list[Any], tuple[bytes, ...]]
"""A process's cached listing element: (options, numbered, its tasks' ids/states/messages, bytes)."""


@dataclass
class Process:
    """A render process: its tasks move on with the emulator's clock when :meth:`refresh` is called."""

    process_id: str
    application_id: str
    user_id: str
    feature: str
    render_kind: int | None
    render_type: int | None
    created_at: float
    visible_at: float
    tasks: dict[str, Task]
    inputs: RequestInputs
    edits: list[RequestInputs] = field(default_factory=list)
    download_count: int = 0
    next_due: float | None = None
    #: its progress object's encoding in listings, and what it was made from (``_responses``)
    listed: _Listed | None = field(default=None, repr=False, compare=False)

    def refresh(self, now: float) -> None:
        """End every task whose time has come (cheap when none has)."""
        if self.next_due is None or now < self.next_due:
            return
        upcoming: float | None = None
        for task in self.tasks.values():
            if task.finishes_at is None:
                continue
            if task.finishes_at <= now:
                task.finished_at = task.finishes_at
                task.finishes_at = None
                if task.fails:
                    task.state = TaskState.FAILED
                    task.error_message = DEFAULT_FAILURE_MESSAGE
                else:
                    task.state = TaskState.SUCCEEDED
            elif upcoming is None or task.finishes_at < upcoming:
                upcoming = task.finishes_at
        self.next_due = upcoming

    def reschedule(self) -> None:
        """Recompute when the next task ends on its own (after a control changed the tasks)."""
        pending = [t.finishes_at for t in self.tasks.values() if t.finishes_at is not None]
        self.next_due = min(pending) if pending else None

    @property
    def completed_task_count(self) -> int:
        """Tasks in a terminal state."""
        return sum(1 for task in self.tasks.values() if task.state in TERMINAL_STATES)

    @property
    def progress(self) -> int:
        """Completed tasks in percent, rounded down."""
        return self.completed_task_count * 100 // len(self.tasks) if self.tasks else 0

    @property
    def state(self) -> int:
        """1 while a task runs; once all are terminal: 4 if any failed, 3 if any was cancelled, else 5."""
        states = [task.state for task in self.tasks.values()]
        if any(state not in TERMINAL_STATES for state in states):
            return TaskState.STARTED
        if TaskState.FAILED in states:
            return TaskState.FAILED
        if TaskState.CANCELLED in states:
            return TaskState.CANCELLED
        return TaskState.SUCCEEDED

    @property
    def finished(self) -> bool:
        """Whether every task is terminal."""
        return self.state != TaskState.STARTED

    @property
    def is_successful(self) -> bool:
        """False once the process ended failed or cancelled."""
        return self.state not in (TaskState.FAILED, TaskState.CANCELLED)

    @property
    def error_message(self) -> str:
        """The first failed task's message once the process failed, else empty."""
        state = self.state
        if state == TaskState.FAILED:
            return next(t.error_message for t in self.tasks.values() if t.state == TaskState.FAILED)
        if state == TaskState.CANCELLED:
            return CANCELLED_MESSAGE
        return ""

    def snapshot(self) -> ProcessSnapshot:
        """A read-only copy of the process as it is now (call :meth:`refresh` first)."""
        tasks = {
            t.task_id: TaskSnapshot(
                t.task_id, t.state, t.error_message, t.download_count, t.finishes_at, t.finished_at
            )
            for t in self.tasks.values()
        }
        return ProcessSnapshot(
            process_id=self.process_id,
            application_id=self.application_id,
            user_id=self.user_id,
            feature=self.feature,
            state=self.state,
            total_task_count=len(self.tasks),
            completed_task_count=self.completed_task_count,
            progress=self.progress,
            is_successful=self.is_successful,
            error_message=self.error_message,
            render_kind=self.render_kind,
            render_type=self.render_type,
            tasks=MappingProxyType(tasks),
            inputs=self.inputs,
            edits=tuple(self.edits),
            download_count=self.download_count,
            created_at=self.created_at,
        )


@dataclass(frozen=True)
class Asset:
    """A background-removed product photo made by Product Photoshoot's Recommendations."""

    asset_id: str
    application_id: str
    user_id: str
    upload: UploadInfo


@dataclass
class AdText:
    """An ad text made by ``Text/Generation/Ads`` (its fields are the emulator's assumption)."""

    ad_text_id: str
    application_id: str
    user_id: str
    created_at: str
    request: dict[str, object]
    version: int = 1


@dataclass(frozen=True)
class ReceivedCall:
    """A call of an endpoint without a start form (Scan My Website, Ad Text, presets), as received.

    Attributes:
        method, route: the endpoint.
        query: query parameters as sent (every value of each name).
        json: the decoded JSON body, or None.
    """

    method: str
    route: str
    query: Mapping[str, tuple[str, ...]]
    json: object


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoints answer."""

    application_id: str
    access_token: str
    access_token_expiration: str
    refresh_token: str
    refresh_token_expiration: str


@dataclass
class _AccessToken:
    application_id: str
    expires_at: float


@dataclass
class _RefreshToken:
    application_id: str
    expires_at: float
    expiration: str
    revoked: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: str, signing_input: str) -> bytes:
    # assumed: the JWT is signed with the UTF-8 bytes of the application's private key string.
    return hmac.new(key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()


_JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


class State:
    """All the state of one emulator, with the operations its routes and controls need."""

    def __init__(self, options: EmulatorOptions, clock: EmulatorClock) -> None:
        self.options = options
        self.clock = clock
        self.faults = FaultPlan(None, options.seed)
        """Random faults per route (chaos tests); none by default."""
        self.on_change: Callable[[Process], None] | None = None
        """Called when a process starts or its tasks are moved (the notifier listens)."""
        seed = options.seed
        # ids and secrets from one generator, timing and failures from another, so that how many ids
        # were drawn (tokens, channels) never shifts which tasks fail or when they end
        self._ids: random.Random = random.SystemRandom() if seed is None else random.Random(seed)
        self._dice: random.Random = random.SystemRandom() if seed is None else random.Random(f"{seed}:timing")
        self._latency: random.Random = (
            random.SystemRandom() if seed is None else random.Random(f"{seed}:latency")
        )
        self.applications: dict[str, Application] = {}
        self.primary: Application | None = None
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self.processes: dict[str, Process] = {}
        self.assets: dict[str, Asset] = {}
        self.ad_texts: dict[str, AdText] = {}
        self.received: list[ReceivedCall] = []
        """Calls of the endpoints without a start form, oldest first (see :class:`ReceivedCall`)."""
        self._task_index: dict[str, Process] = {}
        self._by_user: dict[tuple[str, str, str], dict[str, Process]] = {}
        self._by_application: dict[tuple[str, str], dict[str, Process]] = {}
        self._by_user_any: dict[str, dict[str, Process]] = {}
        self.requests: Counter[str] = Counter()
        self.limiter = AccountLimiter(options.rate_limit, options.rate_burst, clock.now)
        """The account rate limit (off unless ``rate_limit`` is set) and its counters."""
        self.by_api_key: dict[str, Application] = {}
        self.failures: dict[str, list[tuple[int, int]]] = {}
        self.truncations: dict[str, list[int]] = {}

    # ids ----------------------------------------------------------------------------------------

    def new_uuid(self) -> str:
        """A random version-4 UUID in canonical form."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def random_hex(self, nbytes: int) -> str:
        """``nbytes`` random bytes as lowercase hex."""
        return self._ids.randbytes(nbytes).hex()

    # applications and channels ---------------------------------------------------------------------

    def add_application(
        self,
        application_id: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        jwt_private_key: str | None = None,
        *,
        notification_channel: bool = False,
    ) -> Application:
        """Register an application (random credentials where None)."""
        app = Application(
            application_id=(application_id or self.new_uuid()).lower(),
            api_key=api_key or self.random_hex(16),
            api_secret=api_secret or self.random_hex(16),
            jwt_private_key=jwt_private_key or self.random_hex(64),
        )
        if app.application_id in self.applications:
            raise ValueError(f"application {app.application_id} already exists")
        self.applications[app.application_id] = app
        self.by_api_key[app.api_key] = app
        if notification_channel:
            self.add_channel(app, "webhook", "", False)
        return app

    def add_channel(self, app: Application, kind: str, url: str, include_image_data: bool) -> str:
        """Add an active notification channel; returns its id."""
        if kind.lower() not in ("webhook", "rabbitmq"):
            raise ValueError(f"kind must be 'webhook' or 'rabbitmq', not {kind!r}")
        channel = NotificationChannel(self.new_uuid(), kind.lower(), url, include_image_data)
        app.channels[channel.channel_id] = channel
        self.touch_all()  # running processes now have somewhere to report
        return channel.channel_id

    # tokens -------------------------------------------------------------------------------------------

    def _issue_access_token(self, app: Application) -> tuple[str, str]:
        now, wall = self.clock.now(), self.clock.wall()
        lifetime = self.options.access_token_lifetime
        jti = self.new_uuid()
        claims = {
            JWT_APPLICATION_CLAIM: app.application_id,
            "jti": jti,
            "iss": JWT_ISSUER,
            "nbf": int(wall),
            "iat": int(wall),
            "exp": math.ceil(wall + lifetime),
        }
        signing_input = f"{_JWT_HEADER}.{_b64url(msgspec.json.encode(claims))}"
        token = f"{signing_input}.{_b64url(_sign(app.jwt_private_key, signing_input))}"
        self._access_tokens[jti] = _AccessToken(app.application_id, now + lifetime)
        return token, iso_utc(wall + lifetime)

    def _issue_refresh_token(self, app: Application) -> tuple[str, str]:
        token = base64.b64encode(self._ids.randbytes(32)).decode("ascii")
        expiration = iso_utc(self.clock.wall() + self.options.refresh_token_lifetime)
        expires_at = self.clock.now() + self.options.refresh_token_lifetime
        self._refresh_tokens[token] = _RefreshToken(app.application_id, expires_at, expiration)
        return token, expiration

    def generate_tokens(self, app: Application) -> TokenGrant:
        """GenerateJwtToken: a new access token and a new refresh token."""
        access, access_expiration = self._issue_access_token(app)
        refresh, refresh_expiration = self._issue_refresh_token(app)
        return TokenGrant(app.application_id, access, access_expiration, refresh, refresh_expiration)

    def refresh_tokens(self, app: Application, refresh_token: str) -> TokenGrant | None:
        """RefreshJwtToken: None when the refresh token is unknown, expired, revoked or not the app's."""
        record = self._refresh_tokens.get(refresh_token)
        if (
            record is None
            or record.revoked
            or record.application_id != app.application_id
            or self.clock.now() >= record.expires_at
        ):
            return None
        access, access_expiration = self._issue_access_token(app)
        if self.options.rotate_refresh_tokens:
            record.revoked = True
            refresh_token, refresh_expiration = self._issue_refresh_token(app)
        else:
            refresh_expiration = record.expiration
        return TokenGrant(app.application_id, access, access_expiration, refresh_token, refresh_expiration)

    def verify_access_token(self, token: str) -> Application | None:
        """The application of a valid, unexpired access token issued here; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = msgspec.json.decode(_b64url_decode(parts[0]))
            claims = msgspec.json.decode(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, msgspec.DecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        if not isinstance(claims, dict):
            return None
        app = self.applications.get(str(claims.get(JWT_APPLICATION_CLAIM, "")).lower())
        if app is None:
            return None
        expected = _sign(app.jwt_private_key, f"{parts[0]}.{parts[1]}")
        if not hmac.compare_digest(expected, signature):
            return None
        record = self._access_tokens.get(str(claims.get("jti", "")))
        if record is None or record.application_id != app.application_id:
            return None
        if self.clock.now() >= record.expires_at:
            return None
        return app

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now."""
        now = self.clock.now()
        for record in self._access_tokens.values():
            record.expires_at = min(record.expires_at, now)

    # processes ------------------------------------------------------------------------------------

    def start_latency(self) -> float:
        """How long the answer of one start or edit call waits after its render was made."""
        low, high = self.options.latency_range
        return low if low == high else self._latency.uniform(low, high)

    def _task_timing(self) -> tuple[float | None, bool]:
        """When a (re)started task ends on its own, and whether it will fail."""
        fails = self._dice.random() < self.options.task_failure_rate
        if not self.options.auto_complete:
            return None, fails
        low, high = self.options.duration_range
        return self.clock.now() + (low if low == high else self._dice.uniform(low, high)), fails

    def start_process(
        self,
        app: Application,
        user_id: str,
        feature: str,
        task_count: int,
        render_kind: int | None,
        render_type: int | None,
        inputs: RequestInputs,
    ) -> Process:
        """Create a process with ``task_count`` running tasks."""
        now = self.clock.now()
        tasks: dict[str, Task] = {}
        for _ in range(task_count):
            finishes_at, fails = self._task_timing()
            task = Task(self.new_uuid(), TaskState.STARTED, finishes_at, fails)
            tasks[task.task_id] = task
        process = Process(
            process_id=self.new_uuid(),
            application_id=app.application_id,
            user_id=user_id,
            feature=feature,
            render_kind=render_kind,
            render_type=render_type,
            created_at=now,
            visible_at=now + self.options.read_after_write_lag,
            tasks=tasks,
            inputs=inputs,
        )
        process.reschedule()
        self.processes[process.process_id] = process
        for task_id in tasks:
            self._task_index[task_id] = process
        self._by_user.setdefault((feature, app.application_id, user_id), {})[process.process_id] = process
        self._by_application.setdefault((feature, app.application_id), {})[process.process_id] = process
        self._by_user_any.setdefault(user_id, {})[process.process_id] = process
        self.changed(process)
        return process

    def restart_tasks(self, process: Process, task_ids: Iterable[str], inputs: RequestInputs) -> None:
        """The edit: the selected tasks go back to running and end again over time."""
        for task_id in task_ids:
            task = process.tasks[task_id]
            task.finishes_at, task.fails = self._task_timing()
            task.finished_at = None
            task.state = TaskState.STARTED
            task.error_message = ""
        process.edits.append(inputs)
        process.reschedule()
        self.changed(process)

    def advance(self, seconds: float) -> None:
        """Move the clock forward; every process may have changed (the notifier looks at them)."""
        self.clock.advance(seconds)
        self.touch_all()

    def touch_all(self) -> None:
        """Tell the listener that any process may have changed."""
        if self.on_change is not None:
            for process in list(self.processes.values()):
                self.on_change(process)

    def changed(self, process: Process) -> None:
        """A process started, or its tasks were moved: tell the listener (the notifier), if any."""
        if self.on_change is not None:
            self.on_change(process)

    def process_of_task(self, task_id: str) -> Process | None:
        """The process a task belongs to."""
        return self._task_index.get(task_id)

    def get_process(self, process_id: str) -> Process:
        """A process by id, brought up to date (KeyError when unknown)."""
        process = self.processes.get(process_id.lower())
        if process is None:
            raise KeyError(f"no process {process_id!r}")
        process.refresh(self.clock.now())
        return process

    def get_task(self, task_id: str) -> tuple[Process, Task]:
        """A task and its process, brought up to date (KeyError when unknown)."""
        process = self._task_index.get(task_id.lower())
        if process is None:
            raise KeyError(f"no task {task_id!r}")
        process.refresh(self.clock.now())
        return process, process.tasks[task_id.lower()]

    def _listed(self, processes: Iterable[Process], now: float, *, filtered: bool) -> list[Process]:
        listed = []
        for process in processes:
            if now < process.visible_at:
                continue  # read-after-write lag: not visible yet
            process.refresh(now)
            if not filtered and not self.options.list_finished and process.finished:
                continue
            listed.append(process)
        return listed

    def user_processes(
        self, feature: str, application_id: str, user_id: str, process_id: str | None, now: float
    ) -> list[Process]:
        """CheckUserProgress: the user's processes of a feature, or just one (a filtered query always
        finds a finished process: the seeds' filtered examples show state 5)."""
        mine = self._by_user.get((feature, application_id, user_id), {})
        if process_id is not None:
            one = mine.get(process_id)
            return self._listed([one] if one else [], now, filtered=True)
        return self._listed(mine.values(), now, filtered=False)

    def application_processes(self, feature: str, application_id: str, now: float) -> list[Process]:
        """CheckApplicationAllProgresses: every process of a feature in the application."""
        return self._listed(
            self._by_application.get((feature, application_id), {}).values(), now, filtered=False
        )

    def processes_per_input(self) -> Counter[str]:
        """Processes by the SHA-256 of their first uploaded image (processes without one are left out)."""
        counts: Counter[str] = Counter()
        for process in self.processes.values():
            upload = next(iter(process.inputs.files.values()), None)
            if upload is not None:
                counts[upload.sha256] += 1
        return counts

    def processes_for(self, user_id: str, application_id: str | None = None) -> list[Process]:
        """Every process of a user (all features), oldest first, brought up to date."""
        now = self.clock.now()
        found = []
        for process in self._by_user_any.get(user_id.lower(), {}).values():
            if application_id is None or process.application_id == application_id.lower():
                process.refresh(now)
                found.append(process)
        return found

    # injected failures ------------------------------------------------------------------------

    def fail_next(self, route: str, status: int, count: int, retry_after: int) -> None:
        """Queue ``count`` failures of ``status`` for the next calls of ``route``."""
        self.failures.setdefault(route.lower(), []).extend([(status, retry_after)] * count)

    def truncate_next_download(self, task_id: str, after_bytes: int, count: int) -> None:
        """Cut the next ``count`` downloads of a task after ``after_bytes`` bytes of body."""
        if after_bytes < 0 or count < 1:
            raise ValueError("after_bytes must be >= 0 and count >= 1")
        _, task = self.get_task(task_id)
        self.truncations.setdefault(task.task_id, []).extend([after_bytes] * count)

    def take_truncation(self, task_id: str) -> int | None:
        """Where the next download of a task is cut, if it is to be."""
        queue = self.truncations.get(task_id.lower())
        return queue.pop(0) if queue else None

    def take_failure(self, route: str) -> tuple[int, int] | None:
        """The next queued failure of a route, if any."""
        queue = self.failures.get(route.lower())
        if not queue:
            return None
        return queue.pop(0)
