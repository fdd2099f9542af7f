"""The error tree, and the one parser of the API's two error body shapes.

Every exception the SDK raises derives from :class:`AdCreativeError`. Client-side problems (bad input,
missing configuration) are :class:`InvalidRequestError`, raised before any request is sent. Answers of the
server that are not a success are :class:`APIError` with a subclass per meaningful status; transport
failures are :class:`APIConnectionError` / :class:`APITimeoutError`.

A bulk run sorts every error into one of three kinds, in one place (:func:`error_kind`): run-level
(credentials, configuration, an unreachable API, an unwritable output folder or run ledger) stop the whole
run with one :class:`RunAbortedError`; transient ones (5xx, timeouts, resets, 429 after its retries, a
failed download) leave the item for the next run; item-level ones (the API's verdict on this input or
this render) are the item's own failure.

The server answers errors in two shapes (reference §1.6): a layered ProblemDetails whose ``errors`` keys
read ``"<layer>: <Function>"`` with the trace id under ``extensions``, and ASP.NET's validation
ProblemDetails whose ``errors`` keys are field names, with ``traceId`` at the top level. Either may carry
Newtonsoft ``"$id"`` keys. :func:`parse_error_body` reads both and never raises.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ._redact import mask_account_ids

if TYPE_CHECKING:
    from ._jobs import RenderJob
    from ._models import Progress, RenderState

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AdCreativeError",
    "AuthenticationError",
    "BadRequestError",
    "ClientNotOpenError",
    "ConfigurationError",
    "ErrorDetail",
    "ErrorKind",
    "InputChangedError",
    "InvalidRequestError",
    "JobError",
    "LedgerError",
    "NoActiveNotificationChannelError",
    "NotFoundError",
    "NotStartedError",
    "PermissionDeniedError",
    "RateLimitError",
    "RenderFailedError",
    "RenderNotFoundError",
    "RenderNotReadyError",
    "RunAbortedError",
    "ServerError",
    "UnexpectedResponseError",
    "UploadAbortedError",
    "WaitTimeoutError",
    "error_kind",
    "first_of_kind",
]


class AdCreativeError(Exception):
    """Root of every exception raised by adcreative-async.

    Attributes:
        before_send: True when the call this error ended was never sent: it failed while obtaining its
            access token (the token request's own error is raised as is, with this flag). Such a start
            or edit call surely made nothing, so it is never reconciled.
    """

    before_send: bool = False


class InvalidRequestError(AdCreativeError, ValueError):
    """Input refused on the client, before any request was sent.

    Attributes:
        field: the Python parameter at fault (``"color1_hex"``), or None when the problem is not one field's.
        rule: the rule that was broken, in words (``"must be a hex colour such as #FFFFFF"``).
    """

    def __init__(self, message: str, *, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule

    @classmethod
    def for_field(cls, field: str, rule: str, *, wire: str | None = None) -> InvalidRequestError:
        """The error for one parameter: ``"color1_hex (color1Hex): must be ..."``."""
        where = f"{field} ({wire})" if wire and wire != field else field
        return cls(f"{where}: {rule}", field=field, rule=rule)


class ConfigurationError(InvalidRequestError):
    """The client is missing a setting (a credential, a base URL) or one is malformed."""


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of an error body's ``errors`` map.

    Attributes:
        key: the key as the server sent it (``"engine: Active"``, ``"Color1Hex"``, ``"business:"``).
        layer: ``"engine"`` / ``"business"`` for layered keys, else None.
        function: the function after the layer (``"Active"``), None when absent or empty.
        field: the form or query field the key names, for validation keys (no layer), else None.
        param: the SDK's Python parameter for that field when the request named it, else None.
        messages: the server's messages.
    """

    key: str
    layer: str | None
    function: str | None
    field: str | None
    param: str | None
    messages: tuple[str, ...]


class APIError(AdCreativeError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status code.
        title: the ProblemDetails title, if any.
        type: the ProblemDetails type URI, if any (not always consistent with ``status``).
        trace_id: the server's trace id (top level or under ``extensions``), if any.
        errors: field or layer key -> messages, ``$``-keys dropped.
        details: the same entries, parsed (layer, function, field, Python parameter).
        body: the raw response body (bytes), for anything the parser did not model.
        method: the request method; path: the request path (no query, no credentials).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes = b"",
        title: str | None = None,
        type: str | None = None,
        trace_id: str | None = None,
        details: Sequence[ErrorDetail] = (),
        method: str = "",
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.title = title
        self.type = type
        self.trace_id = trace_id
        self.details = tuple(details)
        self.errors: dict[str, list[str]] = {d.key: list(d.messages) for d in self.details}
        self.method = method
        self.path = path
        self.headers: dict[str, str] = dict(headers or {})

    def messages(self) -> list[str]:
        """Every message of the body, in order."""
        return [m for d in self.details for m in d.messages]

    def layer_errors(self, layer: str) -> dict[str, list[str]]:
        """The ``errors`` entries of one layer (``"engine"``, ``"business"``), keyed by function."""
        return {d.function or "": list(d.messages) for d in self.details if d.layer == layer}

    def field_errors(self) -> dict[str, list[str]]:
        """The validation entries, keyed by the Python parameter when known, else the wire field."""
        return {(d.param or d.field or d.key): list(d.messages) for d in self.details if d.field}


class BadRequestError(APIError):
    """400: the server refused the input (validation) or found nothing for it."""


class AuthenticationError(APIError):
    """401: the token is missing, invalid or expired, or the API key, secret or application id is wrong."""


class PermissionDeniedError(APIError):
    """403: the credentials are valid but not allowed to do this."""


class NotFoundError(APIError):
    """404: nothing found for the identifiers given (process, task, image content)."""


class NoActiveNotificationChannelError(NotFoundError):
    """404 ``engine: Active``: the application has no active notification channel.

    The API starts no generation until the application has an active webhook or RabbitMQ channel
    (configure one, then retry).
    """


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's ``Retry-After`` in seconds, if given."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed; the same request may succeed later."""


class UnexpectedResponseError(APIError):
    """A success status whose body is not what the API documents (bad JSON, wrong shape)."""


class ClientNotOpenError(AdCreativeError, RuntimeError):
    """The client was used outside its lifetime (``async with AdCreativeClient(...) as client:``)."""


class APIConnectionError(AdCreativeError):
    """The request could not be completed: connection refused or reset, DNS failure, TLS failure.

    Attributes:
        method, path: the request that failed (no query string, no credentials).
        sent: False when the request surely never reached the server (connection refused), True when it
            may have (reset after sending), None when unknown.
    """

    def __init__(self, message: str, *, method: str = "", path: str = "", sent: bool | None = None):
        super().__init__(message)
        self.method = method
        self.path = path
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """A timeout of the call ran out (see ``Timeout``).

    Attributes:
        limit: which one: ``"connect"``, ``"read"`` (no bytes for that long) or ``"total"`` (the call's
            deadline, retries included); ``""`` when unknown.
        seconds: that limit's value, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        sent: bool | None = None,
        limit: str = "",
        seconds: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, sent=sent)
        self.limit = limit
        self.seconds = seconds


class UploadAbortedError(AdCreativeError):
    """A call's upload was stopped before its request was complete, by a check made as its bytes went
    out (:func:`adcreative_async._files.send_guard`): the input changed while it was being sent, or the
    worker no longer held the item it was sending for. The server never received the whole request, so
    it made nothing (see ``COMPLETE_REQUEST_RULE`` in :mod:`adcreative_async._files`): nothing to
    reconcile, and the call may be sent again once the cause is gone.
    """

    before_send = True


class InputChangedError(UploadAbortedError):
    """An input file's bytes, as they went out in a start call, were not those its run ledger key was
    made from (the file changed during the run): the call was stopped before its request was complete,
    so nothing was made and nothing is recorded for content that was never sent. A rerun hashes the new
    content and renders it under its own key.

    Attributes:
        param: the image parameter whose content changed.
    """

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class JobError(AdCreativeError):
    """Base of errors about a render job; ``job`` is the handle, so nothing is lost."""

    def __init__(self, message: str, *, job: RenderJob, progress: Progress | None = None) -> None:
        super().__init__(message)
        self.job = job
        self.progress = progress if progress is not None else job.progress


class RenderFailedError(JobError):
    """The process ended with failed or cancelled tasks, or reported ``isSuccessful: false``.

    Attributes:
        job: the handle; ``job.progress`` is the final snapshot (succeeded tasks can still be downloaded).
        failed_task_ids: the tasks that failed or were cancelled.
        server_message: the process's ``errorMessage``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        job: RenderJob,
        failed_task_ids: Sequence[str] = (),
        server_message: str = "",
        progress: Progress | None = None,
    ) -> None:
        super().__init__(message, job=job, progress=progress)
        self.failed_task_ids = tuple(failed_task_ids)
        self.server_message = server_message


class WaitTimeoutError(JobError, TimeoutError):
    """A wait's ``timeout`` ran out; the render goes on. ``job.progress`` is the last snapshot seen.

    Attributes:
        pending_jobs: for waits on several jobs (``as_completed``), every job still running.
    """

    def __init__(
        self,
        message: str,
        *,
        job: RenderJob,
        progress: Progress | None = None,
        pending_jobs: Sequence[RenderJob] = (),
    ) -> None:
        super().__init__(message, job=job, progress=progress)
        self.pending_jobs = tuple(pending_jobs) or (job,)


class RenderNotFoundError(JobError, NotFoundError):
    """The server no longer lists the process (not even when asked by id) after the grace period.

    Both a :class:`JobError` (``job`` is the handle) and a :class:`NotFoundError` (status 404), so that
    code catching "not found" catches it too.
    """

    def __init__(
        self, message: str, *, job: RenderJob, progress: Progress | None = None, path: str = ""
    ) -> None:
        NotFoundError.__init__(self, message, status=404, method="GET", path=path)
        self.job = job
        self.progress = progress if progress is not None else job.progress


class RenderNotReadyError(NotFoundError):
    """A download answered 404 for a task that has no result yet: its process says it is not finished
    (or it failed or was cancelled, and will never have one).

    Raised instead of the server's bare ``404 Image content not found`` when a progress check (one
    ``CheckUserProgress`` of the process, made only after the 404) shows the task's state.

    Attributes:
        process_id, task_id: the task asked for.
        state: the task's state (a :class:`~adcreative_async.RenderState`), or None when the process
            is listed but the task is not (the listing may be partial) while the process is unfinished.
        progress: the process's progress as the check saw it.
    """

    def __init__(
        self,
        message: str,
        *,
        process_id: str,
        task_id: str,
        state: RenderState | None,
        progress: Progress,
        cause: NotFoundError,
    ) -> None:
        super().__init__(
            message,
            status=cause.status,
            body=cause.body,
            title=cause.title,
            type=cause.type,
            trace_id=cause.trace_id,
            details=cause.details,
            method=cause.method,
            path=cause.path,
            headers=cause.headers,
        )
        self.process_id = process_id
        self.task_id = task_id
        self.state = state
        self.progress = progress


class LedgerError(AdCreativeError):
    """The run ledger cannot be opened, read or written (the message says which and why)."""


class NotStartedError(AdCreativeError):
    """A bulk item not started because the run's ``max_renders`` was reached (its start calls were all
    sent): nothing was sent for it, nothing is recorded as failed, and with a run ledger it stays
    ``pending``: the same run started again starts it (a transient outcome, see :func:`error_kind`)."""


class RunAbortedError(AdCreativeError):
    """A bulk run stopped as a whole on a run-level error: its ``cause`` would fail every item alike.

    Raised once by the run's iterator (``client.bulk``, ``process_many``, the sync client's ``bulk``),
    after the rest of the run was cancelled: wrong credentials (401/403), a missing setting, no active
    notification channel, an API that cannot be reached (connection refused, DNS), an output folder or a
    run ledger that cannot be written. No item is recorded ``failed`` for it: with a run ledger, items
    not yet sent stay ``pending`` and renders already started stay ``submitted``, so that the same run,
    once the cause is fixed, finishes them without paying twice. Outcomes reported before it stand.

    Attributes:
        cause: the error that stopped the run (also ``__cause__``).
        reason: what it is, in words (``"the credentials were refused"``).
    """

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        self.reason = _run_level_reason(cause)
        super().__init__(
            f"the run stopped: {self.reason}: {type(cause).__name__}: {cause} "
            "(nothing was recorded as failed: fix this, then run the same command again)"
        )
        self.__cause__ = cause


class ErrorKind(enum.Enum):
    """What a bulk run does with an error (see :func:`error_kind`)."""

    RUN = "run"
    """The run's setup is wrong (every item would fail alike): the whole run stops, nothing recorded."""
    TRANSIENT = "transient"
    """It may pass: the item stays as it is (pending if nothing was sent, submitted if its render
    exists) and the next run takes it again."""
    ITEM = "item"
    """The API's verdict on this input (refused) or on this render (failed): the item's ``failed``."""


#: OS errors that say the output folder (or the disk) cannot take the results: the same for every item.
_RUN_LEVEL_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


def error_kind(error: BaseException, *, render_exists: bool = False) -> ErrorKind:
    """The kind of an error of a bulk item: the one table of what stops a run, what is left for the
    next run, and what is the item's own failure. With ``render_exists`` (the item's process id is
    known), only the API's verdict on that render (:class:`JobError`: failed, or gone) is item-level: a
    paid render is otherwise awaited and downloaded again, never failed.

    - run-level: :class:`AuthenticationError` (401), :class:`PermissionDeniedError` (403),
      :class:`ConfigurationError`, :class:`NoActiveNotificationChannelError`, :class:`LedgerError`, an
      :class:`APIConnectionError` that surely never reached the server (connection refused, DNS: after
      the transport's own retries, the API is unreachable), an ``OSError`` saying the output folder or
      disk cannot be written (permission, read-only, full, not a folder);
    - item-level: the API's verdict on the input or the render: :class:`BadRequestError` and the other
      4xx answers, :class:`InvalidRequestError` (the input refused before sending),
      :class:`RenderFailedError`, :class:`RenderNotFoundError`;
    - transient: everything else: 5xx, 429 after its retries, timeouts, resets, a wait that timed out,
      a malformed answer, a failed download, any other error.
    """
    if isinstance(error, RunAbortedError):
        return ErrorKind.RUN
    if isinstance(
        error,
        (
            AuthenticationError,
            PermissionDeniedError,
            ConfigurationError,
            NoActiveNotificationChannelError,
            LedgerError,
        ),
    ):
        return ErrorKind.RUN
    refused = isinstance(error, APIConnectionError) and error.sent is False
    if refused and not isinstance(error, APITimeoutError):
        return ErrorKind.RUN  # connection refused, DNS: after the transport's retries, unreachable
    if isinstance(error, OSError) and error.errno in _RUN_LEVEL_ERRNOS:
        return ErrorKind.RUN
    if isinstance(error, (RenderFailedError, RenderNotFoundError)):
        return ErrorKind.ITEM
    if render_exists:
        return ErrorKind.TRANSIENT
    if isinstance(error, InvalidRequestError):
        return ErrorKind.ITEM
    if isinstance(error, (RateLimitError, ServerError, UnexpectedResponseError, RenderNotReadyError)):
        return ErrorKind.TRANSIENT
    if isinstance(error, APIError) and 400 <= error.status < 500:
        return ErrorKind.ITEM
    return ErrorKind.TRANSIENT


def first_of_kind(
    errors: Iterable[BaseException], kind: ErrorKind, *, render_exists: bool = False
) -> BaseException | None:
    """The first of an item's ``errors`` of ``kind`` (see :func:`error_kind`), or None."""
    return next((e for e in errors if error_kind(e, render_exists=render_exists) is kind), None)


def _run_level_reason(error: BaseException) -> str:
    if isinstance(error, AuthenticationError):
        return "the credentials were refused"
    if isinstance(error, PermissionDeniedError):
        return "these credentials are not allowed to do this"
    if isinstance(error, NoActiveNotificationChannelError):
        return "the application has no active notification channel"
    if isinstance(error, ConfigurationError):
        return "the client is not configured"
    if isinstance(error, LedgerError):
        return "the run ledger cannot be used"
    if isinstance(error, APIConnectionError):
        return "the API cannot be reached"
    if isinstance(error, OSError):
        return "the output folder cannot be written"
    return "a run-level error"


# --------------------------------------------------------------------------------------------- parsing

_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}

#: Error keys whose layer function means "no active notification channel" (seed 001, reference §2.1).
_CHANNEL_FUNCTION = "Active"


@dataclass(frozen=True)
class ParsedErrorBody:
    """What :func:`parse_error_body` could read; every field optional."""

    title: str | None = None
    type: str | None = None
    trace_id: str | None = None
    detail: str | None = None
    entries: tuple[tuple[str, tuple[str, ...]], ...] = ()
    is_json: bool = False


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_error_body(body: bytes) -> ParsedErrorBody:
    """Read either error shape; tolerate anything (non-JSON, wrong types, ``$`` metadata). Never raises."""
    try:
        data = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return ParsedErrorBody()
    if not isinstance(data, dict):
        return ParsedErrorBody(is_json=data is not None)
    entries: list[tuple[str, tuple[str, ...]]] = []
    raw_errors = data.get("errors")
    if isinstance(raw_errors, dict):
        for key, value in raw_errors.items():
            if not isinstance(key, str) or key.startswith("$"):
                continue
            if isinstance(value, dict):  # a Newtonsoft wrapper {"$id", "$values": [...]}
                value = value.get("$values")
            if isinstance(value, list):
                messages = tuple(str(m) for m in value if m is not None and not isinstance(m, dict))
            elif value is None:
                messages = ()
            else:
                messages = (str(value),)
            entries.append((key, messages))
    trace = _text(data.get("traceId"))
    extensions = data.get("extensions")
    if trace is None and isinstance(extensions, dict):
        trace = _text(extensions.get("traceId"))
    return ParsedErrorBody(
        title=_text(data.get("title")),
        type=_text(data.get("type")),
        trace_id=trace,
        detail=_text(data.get("detail")),
        entries=tuple(entries),
        is_json=True,
    )


def split_error_key(key: str) -> tuple[str | None, str | None, str | None]:
    """``"engine: Active"`` -> (layer, function, None); ``"Color1Hex"`` -> (None, None, field).

    A layered key has a colon; what follows it may be empty (``"business:"``). Anything else names a field.
    """
    head, sep, tail = key.partition(":")
    if sep:
        return head.strip() or None, tail.strip() or None, None
    return None, None, key.strip() or None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), or None."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import datetime, timezone

    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def build_api_error(
    status: int,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "",
    path: str = "",
    params: Mapping[str, str] | None = None,
) -> APIError:
    """The typed exception for an error answer.

    Args:
        status: the HTTP status.
        body: the raw body (either shape, or anything else).
        headers: response headers (``Retry-After`` is read from them; only safe headers are kept).
        method, path: the request, for the message.
        params: wire field name -> Python parameter name of the request, so that an error naming
            ``Color1Hex`` also names ``color1_hex``. Matched case-insensitively, as ASP.NET binds.
    """
    headers = headers or {}
    parsed = parse_error_body(body)
    lookup = {wire.lower(): py for wire, py in (params or {}).items()}
    details: list[ErrorDetail] = []
    for key, messages in parsed.entries:
        layer, function, field = split_error_key(key)
        param = lookup.get(field.lower()) if field else None
        details.append(ErrorDetail(key, layer, function, field, param, messages))

    cls: type[APIError]
    if status == 404 and any(d.layer is not None and d.function == _CHANNEL_FUNCTION for d in details):
        cls = NoActiveNotificationChannelError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _STATUS_CLASSES.get(status, APIError)

    message = _format_message(status, method, path, parsed, details, body)
    safe_headers = {k: v for k, v in headers.items() if k.lower() in _SAFE_HEADERS}
    kwargs: dict[str, Any] = {
        "status": status,
        "body": body,
        "title": parsed.title,
        "type": parsed.type,
        "trace_id": parsed.trace_id,
        "details": details,
        "method": method,
        "path": path,
        "headers": safe_headers,
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after_seconds(headers), **kwargs)
    return cls(message, **kwargs)


#: Response headers kept on an APIError (nothing that could carry a credential).
_SAFE_HEADERS = frozenset({"retry-after", "content-type", "date", "x-request-id", "traceparent", "location"})


def _format_message(
    status: int,
    method: str,
    path: str,
    parsed: ParsedErrorBody,
    details: Sequence[ErrorDetail],
    body: bytes,
) -> str:
    """The exception's message: the status, the request, the server's title and messages with the
    account's identifiers masked (see :mod:`adcreative_async._redact`). A body that is not JSON (a
    gateway's page) is only measured, never quoted: it may hold anything (the error's ``body`` has it)."""
    head = f"{status}"
    if method or path:
        head += f" from {method} {path}".rstrip()
    parts: list[str] = []
    if parsed.title:
        parts.append(parsed.title)
    for d in details:
        where = d.key
        if d.param and d.param != d.field:
            where = f"{d.key} (parameter {d.param})"
        text = " ".join(d.messages) if d.messages else "(no message)"
        parts.append(f"{where}: {text}")
    if parsed.detail:
        parts.append(parsed.detail)
    if not parsed.is_json and body.strip():
        parts.append(f"a body of {len(body)} bytes that is not JSON (in the error's .body)")
    message = head + (": " + mask_account_ids(" | ".join(parts)) if parts else "")
    if parsed.trace_id:
        message += f" [trace {parsed.trace_id}]"
    return message
