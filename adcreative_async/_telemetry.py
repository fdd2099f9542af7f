"""OpenTelemetry spans and metrics: off unless asked for, and free when off.

Enable it per client with ``AdCreativeClient(telemetry=True)`` (the global tracer and meter providers,
as an application's OpenTelemetry set-up configures them) or ``telemetry=Telemetry(tracer_provider=...,
meter_provider=...)``. It needs ``opentelemetry-api`` (``pip install opentelemetry-api``); the
application brings the SDK and exporters. When off (the default), no OpenTelemetry module is imported
and the SDK's code paths test one attribute for None: ``python -m benchmarks.telemetry`` measures it.

What is recorded (names follow OpenTelemetry's HTTP semantic conventions where they apply):

- A CLIENT span per HTTP request, each attempt its own span (``http.request.resend_count`` on the
  retries): ``{method} /api/v1/{route}`` with ``http.request.method``, ``url.template``, ``url.full``
  (query values redacted, see :data:`UNREDACTED_QUERY`), ``server.address``, ``server.port``,
  ``http.response.status_code``, ``error.type``, and the body sizes. A listing's documented "nothing
  found" (an empty list) is not an error: no ``error.type``, no ERROR status.
- A span per job, from the start (or edit) call to the moment the client sees the process finish:
  ``render {feature}`` / ``edit {feature}``, with ``adcreative.feature``, ``adcreative.process_id``,
  ``adcreative.task_count``, ``adcreative.outcome``, ``adcreative.completion`` (push or poll) and
  ``adcreative.detection_delay`` (see :meth:`JobTrace.finish`); the start call's HTTP spans are its
  children, and each push message of the process is an event on it (:data:`DELIVERY_EVENT`).
- A span per download (``download {feature}``, to a file or as a stream) with the process and task ids.
- Metrics: ``http.client.request.duration`` (its count is the requests by route and status),
  ``http.client.request.body.size`` and ``http.client.response.body.size`` (bytes transferred),
  ``adcreative.client.retries``, ``adcreative.client.polls``, ``adcreative.client.reconciliations``
  (by outcome), ``adcreative.job.duration``, ``adcreative.job.detection_latency`` and
  ``adcreative.push.deliveries``.

Never recorded: credentials, tokens, request or response bodies, the user id and the application id
(the user id may identify one of your customers). Process and task ids are recorded: they are random
handles, and what support needs to find a render.
"""

from __future__ import annotations

import functools
import time
import urllib.parse
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._clock import Clock
from ._errors import AdCreativeError, APIError, ConfigurationError
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ._jobs import RenderJob
    from ._models import Progress
    from ._transport import Request
    from .notifications import ProgressNotification, TaskCompletedNotification
    from .resources._base import RenderResource

__all__ = ["UNREDACTED_QUERY", "Instruments", "JobTrace", "Telemetry", "build_instruments"]

_T = TypeVar("_T")

#: The instrumentation scope's name (what a trace backend shows as the library).
SCOPE = "adcreative_async"

#: Query parameters whose values are recorded in ``url.full``; every other value (user, application,
#: process and task ids, your ``extra_query``) is recorded as ``REDACTED``.
UNREDACTED_QUERY = frozenset({"lowResolution", "format"})

#: Bucket boundaries of the duration histograms, in seconds (OpenTelemetry's advice for HTTP durations,
#: extended to the minutes a render takes).
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    30,
    60,
    120,
    300,
)

EXTRA_HINT = "pip install opentelemetry-api (the SDK's otel extra)"

#: The span event of one push delivery on its render's span.
DELIVERY_EVENT = "adcreative.push.delivery"

#: Processes whose deliveries arrived before their start call answered (kept to be put on the render's
#: span when it does), at most this many, the oldest dropped first; as many renders seen finished are
#: remembered, so that their late deliveries are not kept for nothing.
EARLY_DELIVERIES = 256


class Telemetry:
    """Where a client sends its OpenTelemetry spans and metrics.

    ``AdCreativeClient(telemetry=True)`` is ``Telemetry()``: the global providers, which your
    application's OpenTelemetry set-up (or ``opentelemetry-instrument``) configures.

    Args:
        tracer_provider: an ``opentelemetry.trace.TracerProvider`` (default: the global one).
        meter_provider: an ``opentelemetry.metrics.MeterProvider`` (default: the global one).
        traces: record spans (default True).
        metrics: record metrics (default True).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        traces: bool = True,
        metrics: bool = True,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.traces = traces
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"Telemetry(traces={self.traces}, metrics={self.metrics})"


def build_instruments(option: bool | Telemetry | None, *, base_url: str, clock: Clock) -> Instruments | None:
    """The instruments of a client, or None when telemetry is off (``None``/``False``).

    Raises:
        ConfigurationError: telemetry was asked for and ``opentelemetry-api`` is not installed.
    """
    if option is None or option is False:
        return None
    if option is True:
        option = Telemetry()
    if not isinstance(option, Telemetry):
        raise ConfigurationError(
            f"telemetry must be True, False or a Telemetry(...), got {option!r}",
            field="telemetry",
            rule="must be a bool or a Telemetry",
        )
    try:
        from opentelemetry import metrics, trace  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"telemetry needs the OpenTelemetry API: {EXTRA_HINT}",
            field="telemetry",
            rule="needs opentelemetry-api",
        ) from None
    return Instruments(option, base_url=base_url, clock=clock)


class Instruments:
    """A client's tracer, meter and instruments (built only when telemetry is on)."""

    def __init__(self, options: Telemetry, *, base_url: str, clock: Clock) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._trace = trace
        self._client_kind = SpanKind.CLIENT
        self._internal_kind = SpanKind.INTERNAL
        self._error_status = Status(StatusCode.ERROR)
        self.clock = clock
        self.tracing = options.traces
        self.metering = options.metrics
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=options.tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=options.meter_provider)
        url = urllib.parse.urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.server = {"server.address": url.hostname or "", "server.port": url.port or _default_port(url)}

        def histogram(name: str, unit: str, description: str, buckets: Sequence[float] | None = None) -> Any:
            if buckets is not None:
                try:
                    return meter.create_histogram(
                        name, unit, description, explicit_bucket_boundaries_advisory=buckets
                    )
                except TypeError:  # opentelemetry-api < 1.23: no advice, the SDK's default buckets
                    pass
            return meter.create_histogram(name, unit, description)

        self.request_duration = histogram(
            "http.client.request.duration", "s", "Duration of HTTP client requests.", DURATION_BUCKETS
        )
        self.request_size = histogram("http.client.request.body.size", "By", "Size of HTTP request bodies.")
        self.response_size = histogram(
            "http.client.response.body.size", "By", "Size of HTTP response bodies read."
        )
        self.retries = meter.create_counter(
            "adcreative.client.retries", "{retry}", "Requests sent again by the retry policy."
        )
        self.polls = meter.create_counter(
            "adcreative.client.polls", "{request}", "Progress requests sent by the poll scheduler."
        )
        self.reconciliations = meter.create_counter(
            "adcreative.client.reconciliations",
            "{reconciliation}",
            "Start or edit calls that failed ambiguously and were reconciled, by outcome.",
        )
        self.job_duration = histogram(
            "adcreative.job.duration",
            "s",
            "From a start or edit call to the client seeing the process finish.",
            DURATION_BUCKETS,
        )
        self.detection_latency = histogram(
            "adcreative.job.detection_latency",
            "s",
            "Upper bound of how late a poll saw a process finish: from the previous poll of its user "
            "(or when it was first awaited) to the answer that showed it finished.",
            DURATION_BUCKETS,
        )
        self.deliveries = meter.create_counter(
            "adcreative.push.deliveries",
            "{message}",
            "Push notifications (webhook, RabbitMQ) that reached the client, duplicates dropped.",
        )
        # The job spans not ended yet, by lower-cased process id (weak: a job dropped unawaited goes).
        self._renders: weakref.WeakValueDictionary[str, JobTrace] = weakref.WeakValueDictionary()
        self._early: OrderedDict[str, list[tuple[dict[str, Any], int]]] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()  # the last renders seen finished

    # ------------------------------------------------------------------------------- HTTP requests

    def http_request(self, req: Request, resend_count: int) -> HttpSpan:
        """Start the span and timing of one attempt of ``req``."""
        return HttpSpan(self, req, resend_count)

    def retried(self, req: Request, reason: str) -> None:
        """A request is about to be sent again."""
        if self.metering:
            self.retries.add(
                1,
                {
                    "http.request.method": req.method,
                    "url.template": _template(req.route),
                    "error.type": reason,
                },
            )

    # ------------------------------------------------------------------------------------- polling

    def polled(self, feature: str) -> None:
        """The scheduler sent a progress request."""
        if self.metering:
            self.polls.add(1, {"adcreative.feature": feature})

    def detected(self, feature: str, latency: float, process_id: str | None = None) -> None:
        """A poll saw an awaited process finish, at most ``latency`` seconds after it did."""
        if self.metering:
            self.detection_latency.record(max(0.0, latency), {"adcreative.feature": feature})
        trace = self._renders.get(process_id.lower()) if process_id is not None else None
        if trace is not None and trace.completion is None:
            trace.completion = "poll"
            trace.observable_at = self.clock.monotonic() - max(0.0, latency)

    # ---------------------------------------------------------------------------------------- push

    def delivered(self, message: TaskCompletedNotification | ProgressNotification, source: str) -> None:
        """A push notification reached the client (``source``: ``"webhook"``, ``"rabbitmq"``, …): an
        event on its render's span (kept until the start call answers, if it came first), counted."""
        pid = message.image_render_process_id.lower()
        trace = self._renders.get(pid)
        if self.metering:
            self.deliveries.add(
                1,
                {
                    "adcreative.feature": message.feature,
                    "adcreative.message_type": message.message_type,
                    "adcreative.push.source": source,
                    "adcreative.push.awaited": trace is not None,
                },
            )
        if not self.tracing:
            return
        attributes: dict[str, Any] = {
            "adcreative.message_type": message.message_type,
            "adcreative.push.source": source,
        }
        task_id = getattr(message, "task_id", None)
        if task_id is not None:
            attributes["adcreative.task_id"] = task_id
            attributes["adcreative.task_state"] = int(getattr(message, "state", 0))
        else:
            attributes["adcreative.progress"] = getattr(message, "progress", 0)
        if trace is not None and trace.span is not None:
            trace.span.add_event(DELIVERY_EVENT, attributes)
            return
        if pid in self._ended:
            return  # after its render was seen finished (its span ended): counted only
        early = self._early.setdefault(pid, [])
        self._early.move_to_end(pid)
        early.append((attributes, time.time_ns()))
        if len(self._early) > EARLY_DELIVERIES:
            self._early.popitem(last=False)

    def push_applied(self, process_id: str, progress: Progress) -> None:
        """A push notification changed what the client knows of a process: if it shows the process
        finished first, its render completed by push, observable from now."""
        trace = self._renders.get(process_id.lower())
        if trace is not None and trace.completion is None and progress.is_complete:
            trace.completion = "push"
            trace.observable_at = self.clock.monotonic()

    def reconciled(self, feature: str, kind: str, outcome: str) -> None:
        """A reconciliation ended: ``kind`` start or edit; ``outcome`` adopted, candidates (one or more
        processes may be it, none provably), no_candidate (none appeared, or the listing could not be
        read) or error."""
        if self.metering:
            attributes = {
                "adcreative.feature": feature,
                "adcreative.operation": kind,
                "adcreative.outcome": outcome,
            }
            self.reconciliations.add(1, attributes)

    # ---------------------------------------------------------------------------------------- jobs

    @contextmanager
    def job(self, feature: str, operation: str) -> Iterator[JobTrace]:
        """The span of a job, current while its start call runs; ended later by :meth:`JobTrace.finish`,
        or here if the call fails."""
        trace = JobTrace(self, feature, operation)
        if trace.span is None:
            yield trace
            return
        with self._trace.use_span(trace.span, end_on_exit=False, record_exception=False):
            try:
                yield trace
            except BaseException as exc:
                trace.fail(exc)
                raise

    # ----------------------------------------------------------------------------------- downloads

    @contextmanager
    def download(self, feature: str, process_id: str, task_id: str) -> Iterator[Span | None]:
        """The span of one download to a file, current while it runs."""
        if not self.tracing:
            yield None
            return
        attributes = {
            "adcreative.feature": feature,
            "adcreative.process_id": process_id,
            "adcreative.task_id": task_id,
        }
        with self.tracer.start_as_current_span(f"download {feature}", attributes=attributes) as span:
            yield span

    def start_download(self, feature: str, process_id: str, task_id: str) -> Span | None:
        """The span of a download stream: started now (not current), ended by :meth:`end_download`."""
        if not self.tracing:
            return None
        attributes = {
            "adcreative.feature": feature,
            "adcreative.process_id": process_id,
            "adcreative.task_id": task_id,
        }
        return self.tracer.start_span(f"download {feature}", attributes=attributes)

    def end_download(self, span: Span | None, received: int, error: BaseException | None = None) -> None:
        """End a download stream's span with the bytes read."""
        if span is None:
            return
        span.set_attribute("adcreative.download.bytes", received)
        if error is not None:
            _fail_span(span, error, self._error_status)
        span.end()

    @contextmanager
    def within(self, span: Span | None) -> Iterator[None]:
        """``span`` as the current span for a moment (e.g. while a stream's request is sent)."""
        if span is None:
            yield
            return
        with self._trace.use_span(span, end_on_exit=False, record_exception=False):
            yield

    # ------------------------------------------------------------------------------ background tasks

    def detached(self, func: Callable[..., Awaitable[_T]]) -> Callable[..., Coroutine[Any, Any, _T]]:
        """``func`` run with no current span: the client's background tasks (the poll scheduler)
        serve every waiter, so their spans are roots, not children of whichever call started them."""
        from opentelemetry import context

        @functools.wraps(func)
        async def run(*args: Any) -> _T:
            token = context.attach(context.Context())
            try:
                return await func(*args)
            finally:
                context.detach(token)

        return run


def _default_port(url: urllib.parse.SplitResult) -> int:
    return 443 if url.scheme == "https" else 80


def _template(route: str) -> str:
    return f"/api/v1/{route}"


def redacted_query(query: Sequence[tuple[str, str]]) -> str:
    """A query string with every value but those of :data:`UNREDACTED_QUERY` replaced by ``REDACTED``."""
    return urllib.parse.urlencode(
        [(name, value if name in UNREDACTED_QUERY else "REDACTED") for name, value in query], safe="/"
    )


def _fail_span(span: Span, error: BaseException, status: Any) -> None:
    span.set_attribute("error.type", _error_type(error))
    span.set_status(status)
    span.record_exception(error)


def _error_type(error: BaseException) -> str:
    if isinstance(error, APIError):
        return str(error.status)
    return type(error).__qualname__


class HttpSpan:
    """One attempt of a request: its span (when tracing) and its duration (when metering)."""

    __slots__ = ("_instruments", "_req", "_started", "attributes", "request_size", "span")

    def __init__(self, instruments: Instruments, req: Request, resend_count: int) -> None:
        self._instruments = instruments
        self._req = req
        self._started = instruments.clock.monotonic()
        template = _template(req.route)
        self.attributes: dict[str, Any] = {
            "http.request.method": req.method,
            "url.template": template,
            **instruments.server,
        }
        self.request_size: int | None = None
        self.span: Span | None = None
        if instruments.tracing:
            url = f"{instruments.base_url}{template}"
            if req.query:
                url += f"?{redacted_query(req.query)}"
            span_attributes = {**self.attributes, "url.full": url}
            if resend_count:
                span_attributes["http.request.resend_count"] = resend_count
            self.span = instruments.tracer.start_span(
                f"{req.method} {template}", kind=instruments._client_kind, attributes=span_attributes
            )

    def end(
        self,
        status: int | None = None,
        *,
        received: int | None = None,
        error: BaseException | None = None,
        answer: bool = False,
    ) -> None:
        """The attempt is over: ``status`` if a response arrived, ``error`` if it failed. ``answer``: a
        status >= 400 that the caller reads as a result (a listing's documented "nothing found"), not
        recorded as an error."""
        instruments = self._instruments
        attributes = self.attributes
        if status is not None:
            attributes["http.response.status_code"] = status
            if status >= 400 and not answer:
                attributes["error.type"] = str(status)
        if error is not None and "error.type" not in attributes:
            attributes["error.type"] = _error_type(error)
        span = self.span
        if span is not None:
            span.set_attributes(attributes)
            if self.request_size is not None:
                span.set_attribute("http.request.body.size", self.request_size)
            if received is not None:
                span.set_attribute("http.response.body.size", received)
            if "error.type" in attributes:
                span.set_status(instruments._error_status)
            if error is not None:
                span.record_exception(error)
            span.end()
        if instruments.metering:
            instruments.request_duration.record(instruments.clock.monotonic() - self._started, attributes)
            if self.request_size:
                instruments.request_size.record(self.request_size, attributes)
            if received is not None:
                instruments.response_size.record(received, attributes)


class JobTrace:
    """What a job carries from its start call to the moment the client sees it finish.

    ``completion`` (``"push"`` or ``"poll"``) and ``observable_at`` (client clock) record how the client
    first learnt that the process finished, and from when it could have: see :meth:`finish`.
    """

    __slots__ = (
        "__weakref__",
        "_instruments",
        "_started",
        "completion",
        "feature",
        "observable_at",
        "operation",
        "span",
    )

    def __init__(self, instruments: Instruments, feature: str, operation: str) -> None:
        self._instruments = instruments
        self._started = instruments.clock.monotonic()
        self.feature = feature
        self.operation = operation
        self.completion: str | None = None
        self.observable_at: float | None = None
        self.span: Span | None = None
        if instruments.tracing:
            self.span = instruments.tracer.start_span(
                f"{operation} {feature}",
                kind=instruments._internal_kind,
                attributes={"adcreative.feature": feature, "adcreative.operation": operation},
            )

    def started(self, job: RenderJob) -> None:
        """The start call answered: the job exists (its deliveries go on this span from now on)."""
        instruments = self._instruments
        pid = job.process_id.lower()
        instruments._renders[pid] = self
        early = instruments._early.pop(pid, ())
        if self.span is not None:
            self.span.set_attributes(
                {"adcreative.process_id": job.process_id, "adcreative.task_count": len(job.task_ids)}
            )
            for attributes, at in early:
                self.span.add_event(DELIVERY_EVENT, attributes, timestamp=at)

    def fail(self, error: BaseException) -> None:
        """The start call failed: no job."""
        if self.span is not None:
            _fail_span(self.span, error, self._instruments._error_status)
            self.span.end()

    def finish(self, job: RenderJob, progress: Progress, failed: bool) -> None:
        """The client saw the process finish (``failed``: with failed or cancelled tasks).

        ``adcreative.completion`` says what told the client first: ``push`` (a delivery) or ``poll`` (a
        progress request: the scheduler's, or a ``refresh()``). ``adcreative.detection_delay`` is the
        time from the moment the finish was observable to this client to now (the wait seeing it):
        for a push, from the delivery's arrival; for a poll, from the send of the previous poll that
        could have shown it (or the start call's answer, if later), an upper bound.
        """
        instruments = self._instruments
        outcome = "failed" if failed else "succeeded"
        completion = self.completion or "poll"
        pid = job.process_id.lower()
        if instruments._renders.get(pid) is self:
            del instruments._renders[pid]
        instruments._ended[pid] = None
        if len(instruments._ended) > EARLY_DELIVERIES:
            instruments._ended.popitem(last=False)
        span = self.span
        if span is not None:
            span.set_attributes(
                {
                    "adcreative.process_id": job.process_id,
                    "adcreative.task_count": len(job.task_ids),
                    "adcreative.outcome": outcome,
                    "adcreative.completion": completion,
                }
            )
            if self.observable_at is not None:
                delay = max(0.0, instruments.clock.monotonic() - self.observable_at)
                span.set_attribute("adcreative.detection_delay", delay)
            if failed:
                span.set_attribute("error.type", "RenderFailedError")
                span.set_status(instruments._error_status)
            span.end()
        if instruments.metering:
            instruments.job_duration.record(
                instruments.clock.monotonic() - self._started,
                {
                    "adcreative.feature": self.feature,
                    "adcreative.operation": self.operation,
                    "adcreative.outcome": outcome,
                    "adcreative.completion": completion,
                },
            )


# ---------------------------------------------------------------------------------------- hooks


def traced_submit(func: Callable[..., Awaitable[RenderJob]]) -> Callable[..., Awaitable[RenderJob]]:
    """Decorates ``RenderResource._submit``: with telemetry on, the job's span starts with the call, is
    current while it runs (the start call's requests are its children), and travels with the job."""

    @functools.wraps(func)
    async def submit(resource: RenderResource, *args: Any, **kwargs: Any) -> RenderJob:
        instruments = resource._client._telemetry
        if instruments is None:
            return await func(resource, *args, **kwargs)
        operation = "render" if kwargs.get("edited_task_ids") is None else "edit"
        with instruments.job(resource.feature.name, operation) as trace:
            job = await func(resource, *args, **kwargs)
            trace.started(job)
            job._trace = trace
            return job

    return submit


def records_reconciliation(
    operation: str,
) -> Callable[[Callable[..., Awaitable[_T]]], Callable[..., Awaitable[_T]]]:
    """Decorates a reconciliation of the submission ledger (``settle`` / ``reconcile_edit``, whose
    first argument after the ledger is a Submission or the resource): counts its outcome in
    ``adcreative.client.reconciliations``. Whoever reworks reconciliation can call
    :meth:`Instruments.reconciled` directly instead."""

    def decorate(func: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
        @functools.wraps(func)
        async def reconcile(ledger: object, subject: Any, *args: Any, **kwargs: Any) -> _T:
            resource: RenderResource = getattr(subject, "resource", subject)  # a Submission, or a resource
            instruments = resource._client._telemetry
            if instruments is None:
                return await func(ledger, subject, *args, **kwargs)
            feature = resource.feature.name
            try:
                result = await func(ledger, subject, *args, **kwargs)
            except AdCreativeError as exc:
                candidates = getattr(exc, "candidates", None)  # a RenderMayExistError has them
                outcome = "error" if candidates is None else "candidates" if candidates else "no_candidate"
                instruments.reconciled(feature, operation, outcome)
                raise
            instruments.reconciled(feature, operation, "adopted")
            return result

        return reconcile

    return decorate
