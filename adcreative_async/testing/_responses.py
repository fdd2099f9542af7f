"""Every response body the emulator sends, built in one place per shape, and the table of messages.

Shapes, as the seeds show them:

* shape A, "layered" ProblemDetails: ``errors`` keyed ``"<layer>: <Function>"``, then ``type``, ``title``,
  ``status``, ``detail``, ``instance`` and ``extensions.traceId`` (401, 404, the "nothing found" errors).
  Sent as ``application/json``.
* shape B, ASP.NET validation ProblemDetails: optional ``"$id"``, ``type``, ``title``, ``status``,
  ``errors`` keyed by field (optionally with its own ``"$id"``), optional top-level ``traceId``; which
  optional parts appear depends on the endpoint (:class:`ValidationStyle`). Sent as
  ``application/problem+json``.
* the progress object, alone (with or without ``"$id"``), in a Newtonsoft ``{"$id", "$values"}``
  wrapper or in a plain array, per endpoint.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from ._options import EmulatorOptions
from ._state import (
    FEATURE_BACKGROUND_REMOVAL,
    FEATURE_FACE_ENHANCING,
    FEATURE_GENERATION,
    FEATURE_PRODUCT_GENERATION,
    FEATURE_STOCK_GENERATION,
    FEATURE_UPSCALING,
    Process,
    TaskState,
    TokenGrant,
)

RFC7231_400 = "https://tools.ietf.org/html/rfc7231#section-6.5.1"
RFC9110_400 = "https://tools.ietf.org/html/rfc9110#section-15.5.1"
LAYERED_TITLE = "One or more errors occurred."
VALIDATION_TITLE = "One or more validation errors occurred."

LAYERED_CONTENT_TYPE = "application/json"
VALIDATION_CONTENT_TYPE = "application/problem+json"

MESSAGE_TYPES = {
    FEATURE_GENERATION: "ImageGenerationProgress",
    FEATURE_BACKGROUND_REMOVAL: "ImageBackgroundRemovingProgress",
    FEATURE_UPSCALING: "ImageUpscalingProgress",
    FEATURE_FACE_ENHANCING: "ImageFaceEnhancingProgress",
    FEATURE_STOCK_GENERATION: "ImageStockGenerationProgress",
}
"""The progress message type of each feature that has notification types (reference §2.5)."""

ASSUMED_MESSAGE_TYPES = {FEATURE_PRODUCT_GENERATION: "ImageProductGenerationProgress"}
"""assumed: ``messageType`` of progress objects of features without a documented message type (no
ImageProduct… type is documented, so no notification is sent for them)."""

NOTHING_FOUND_STATUS = {
    FEATURE_GENERATION: 400,
    FEATURE_BACKGROUND_REMOVAL: 404,
    # assumed: the features documented after the seeds answer like Background Remover, whose routes
    # (Image/<Segment>/AdCreative, a Newtonsoft wrapper) they share
    FEATURE_UPSCALING: 404,
    FEATURE_FACE_ENHANCING: 404,
    FEATURE_STOCK_GENERATION: 404,
    FEATURE_PRODUCT_GENERATION: 404,
}
"""Status of "no process found" on the progress routes: 400 for generation, 404 for Background Remover
(seeds, reference §14 item 29)."""

PROCESS_NAMES = {
    FEATURE_BACKGROUND_REMOVAL: ("ImageBackgroundRemovingProcess", "image background removing"),
    FEATURE_UPSCALING: ("ImageUpscalingProcess", "image upscaling"),
    FEATURE_FACE_ENHANCING: ("ImageFaceEnhancingProcess", "image face enhancing"),
    FEATURE_STOCK_GENERATION: ("ImageStockGenerationProcess", "image stock generation"),
    FEATURE_PRODUCT_GENERATION: ("ImageProductGenerationProcess", "image product generation"),
}
"""assumed: the process name and activity the "nothing found" messages of a feature use (modelled on
the Background Remover seed's)."""


def message_type(feature: str) -> str:
    """The ``messageType`` of a feature's progress objects (documented, else assumed)."""
    return MESSAGE_TYPES.get(feature) or ASSUMED_MESSAGE_TYPES[feature]


class Msg:
    """Every message the emulator writes, grouped by where it comes from."""

    # -- seed: verbatim from the seeds --------------------------------------------------------------
    UNAUTHORIZED = "Token is missing, invalid or ApplicationId is not found in the token."
    NO_CHANNEL_ENGINE = (
        "No active notification channel configurations found for Application {application_id}."
    )
    NO_CHANNEL_BUSINESS = (
        "Error getting active notification channel configurations for Application: {application_id}"
    )
    REQUIRED = "The {field} field is required."  # also ASP.NET's [Required]
    NOT_VALID = "The value '{value}' is not valid."  # also ASP.NET's, for action parameters
    UPLOAD_MISSING = (
        "UploadedImage is required.",
        "The request does not contain a file. Please make sure to upload the file.",
    )
    DOWNLOAD_ENGINE = "Image content not found."
    DOWNLOAD_BUSINESS = "Not found error occurred while getting original image content stream"
    GENERATION_USER_ENGINE = (
        "ImageRenderProcess(ImageRenderProcessId: {process_id}) was not found for the User: {user_id}"
    )
    GENERATION_APPLICATION_ENGINE = (
        "No running ImageGenerationProgress found for the ApplicationId: {application_id}"
    )
    BACKGROUND_APPLICATION_ENGINE = (  # with the seed's "ImageFaceEnhancingProcess" slip
        "No running or incomplete ImageFaceEnhancingProcess was not found for the User: N/A or the "
        "Application: {application_id}"
    )
    BACKGROUND_APPLICATION_BUSINESS = (
        "Not found error occurred while checking image background removing process for the "
        "ApplicationId: {application_id}"
    )
    UNEXPECTED_GENERATION_CHECK = "An unexpected error occurred while checking image generation process."

    # -- ASP.NET Core's default wording for rules the seeds state without a message -------------------
    NOT_VALID_FOR = "The value '{value}' is not valid for {field}."  # model properties
    MAX_LENGTH = "The field {field} must be a string with a maximum length of {max}."  # [StringLength]
    EMPTY_BODY = "A non-empty request body is required."
    UNREADABLE_FORM = "Failed to read the request form. {reason}"
    MISSING_BOUNDARY = "Missing content-type boundary."
    VALUE_TOO_LONG = "Form value length limit {limit} exceeded."

    # -- assumed: not documented anywhere -------------------------------------------------------------
    HEX_COLOR = "The field {field} must be a hex color such as #FFFFFF."
    NOT_ALLOWED = "The field {field} must be one of: {allowed}."
    NOT_IMAGE = "The {field} field must be a valid image file (png, jpeg, webp or gif)."
    MALFORMED_MULTIPART = "The multipart body is malformed."
    INVALID_BODY = "The request field is required."
    GENERATION_USER_BUSINESS = (
        "Not found error occurred while checking image generation process for the User: {user_id}"
    )
    GENERATION_APPLICATION_BUSINESS = (
        "Not found error occurred while checking image generation process for the ApplicationId: "
        "{application_id}"
    )
    BACKGROUND_USER_ENGINE = (  # modelled on the seed's application variant
        "No running or incomplete ImageBackgroundRemovingProcess was not found for the User: {user_id} "
        "or the Application: N/A"
    )
    BACKGROUND_USER_BUSINESS = (
        "Not found error occurred while checking image background removing process for the UserId: {user_id}"
    )
    EDIT_TASKS_NOT_FOUND = "Task(s) {task_ids} were not found for the User: {user_id}"
    EDIT_SEVERAL_PROCESSES = "The tasks belong to more than one ImageRenderProcess."
    EDIT_NOT_COMPLETED = "ImageRenderProcess(ImageRenderProcessId: {process_id}) is not completed yet."
    EDIT_BUSINESS = "Error occurred while editing image render tasks for the User: {user_id}"
    TOKEN_CREDENTIALS_ENGINE = "Application not found or the JWT private key is invalid."
    TOKEN_CREDENTIALS_BUSINESS = "Error generating JWT token for the Application: {application_id}"
    REFRESH_ENGINE = "Refresh token is invalid, expired or revoked."
    REFRESH_BUSINESS = "Error refreshing JWT token for the Application: {application_id}"
    UNEXPECTED = "An unexpected error occurred while processing the request."
    TOO_MANY_REQUESTS = "Too many requests. Retry after {seconds} seconds."
    INJECTED = "Injected error {status} for testing."
    # the features documented after the seeds (reference §5-§11); rule wording where the docs give a
    # rule, otherwise ASP.NET-style wording, all assumed
    FEATURE_USER_ENGINE = (
        "No running or incomplete {process} was not found for the User: {user_id} or the Application: N/A"
    )
    FEATURE_USER_BUSINESS = (
        "Not found error occurred while checking {activity} process for the UserId: {user_id}"
    )
    FEATURE_APPLICATION_ENGINE = (
        "No running or incomplete {process} was not found for the User: N/A or the Application: "
        "{application_id}"
    )
    FEATURE_APPLICATION_BUSINESS = (
        "Not found error occurred while checking {activity} process for the ApplicationId: {application_id}"
    )
    NON_EMPTY_GUID = "The {field} must be a non-empty GUID."  # the Stock Image page's rule
    ABSOLUTE_URL = "The {field} must be a valid absolute URL."  # the Scan My Website page's rule
    PROMPTS_NOT_JSON = "The {field} field must be a JSON array of prompt objects."
    PROMPTS_COUNT = "The {field} field must contain between 1 and {max} prompt objects."  # max: documented
    PROMPT_INVALID = (
        "Prompt object {index} must have tag 'custom' with a non-empty prompt or tag 'preset' with a preset."
    )
    ASSET_ENGINE = "Image asset (AssetId: {asset_id}) was not found for the User: {user_id}"
    ASSET_BUSINESS = "Not found error occurred while starting image product generation process."
    AD_TEXT_ENGINE = "AdText(AdTextId: {ad_text_id}) was not found for the User: {user_id}"
    AD_TEXT_BUSINESS = "Not found error occurred while updating ad text for the User: {user_id}"


@dataclass(frozen=True)
class ValidationStyle:
    """Which optional parts a shape-B body of an endpoint carries (as that endpoint's seed example shows).

    Attributes:
        type_uri: The ``type`` value.
        top_id: ``"$id": "1"`` first.
        errors_id: ``"$id": "2"`` first inside ``errors``.
        trace: A top-level ``traceId`` last.
    """

    type_uri: str
    top_id: bool
    errors_id: bool
    trace: bool


STYLE_NEWTONSOFT = ValidationStyle(RFC9110_400, top_id=True, errors_id=True, trace=True)
"""Background Remover start/CheckUserProgress/Download and generation Download (seeds)."""
STYLE_GENERATION_FORM = ValidationStyle(RFC7231_400, top_id=False, errors_id=False, trace=False)
"""Generation AdCreativesByKind and Editing AdCreativesByTasks (seeds: no ``$id``, no ``traceId``)."""
STYLE_BR_APPLICATION_QUERY = ValidationStyle(RFC9110_400, top_id=True, errors_id=False, trace=True)
"""Background Remover CheckApplicationAllProgresses (seed: ``$id`` at the top, none in ``errors``)."""


class Problem(Exception):
    """Raised by a handler to answer with ``response`` at once."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def trace_id() -> str:
    """A fresh W3C traceparent: ``00-<32 hex>-<16 hex>-00``."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


_encoder = msgspec.json.Encoder()


def json_response(
    body: Any,
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``body`` as UTF-8 JSON (key order kept as built)."""
    return web.Response(
        body=_encoder.encode(body),
        status=status,
        content_type=content_type,
        charset="utf-8",
        headers=headers,
    )


def layered_error(
    status: int, errors: Mapping[str, list[str]], headers: Mapping[str, str] | None = None
) -> web.Response:
    """Shape A. ``type`` is RFC 7231 §6.5.1 whatever the status, as every documented example shows."""
    body = {
        "errors": dict(errors),
        "type": RFC7231_400,
        "title": LAYERED_TITLE,
        "status": status,
        "detail": None,
        "instance": None,
        "extensions": {"traceId": trace_id()},
    }
    return json_response(body, status, LAYERED_CONTENT_TYPE, headers)


def unauthorized() -> web.Response:
    """The seeds' 401, identical on every feature endpoint."""
    return layered_error(401, {"business:": [Msg.UNAUTHORIZED]})


def no_active_channel(application_id: str) -> web.Response:
    """The seeds' 404 for an application without an active notification channel."""
    return layered_error(
        404,
        {
            "engine: Active": [Msg.NO_CHANNEL_ENGINE.format(application_id=application_id)],
            "business: Active": [Msg.NO_CHANNEL_BUSINESS.format(application_id=application_id)],
        },
    )


def download_not_found(function: str) -> web.Response:
    """The seeds' download 404 (``function``: ``Generation/Download`` or ``BackgroundRemoving/Download``)."""
    return layered_error(
        404,
        {
            f"engine: {function}": [Msg.DOWNLOAD_ENGINE],
            f"business: {function}": [Msg.DOWNLOAD_BUSINESS],
        },
    )


def user_processes_not_found(feature: str, user_id: str, process_id: str | None) -> web.Response:
    """CheckUserProgress found nothing.

    Generation: the seed's message, in a layered body whose keys and business message are assumed.
    Background Remover: assumed, modelled on its CheckApplicationAllProgresses 404.
    """
    status = NOTHING_FOUND_STATUS[feature]
    if feature == FEATURE_GENERATION:
        engine = Msg.GENERATION_USER_ENGINE.format(process_id=process_id or "N/A", user_id=user_id)
        business = Msg.GENERATION_USER_BUSINESS.format(user_id=user_id)
        return layered_error(
            status, {"engine: CheckUserProgress": [engine], "business: CheckUserProgress": [business]}
        )
    if feature == FEATURE_BACKGROUND_REMOVAL:
        engine = Msg.BACKGROUND_USER_ENGINE.format(user_id=user_id)
        business = Msg.BACKGROUND_USER_BUSINESS.format(user_id=user_id)
    else:
        process, activity = PROCESS_NAMES[feature]
        engine = Msg.FEATURE_USER_ENGINE.format(process=process, user_id=user_id)
        business = Msg.FEATURE_USER_BUSINESS.format(activity=activity, user_id=user_id)
    return layered_error(
        status, {"engine: CheckProgress": [engine], "business: CheckUserProgress": [business]}
    )


def application_processes_not_found(feature: str, application_id: str) -> web.Response:
    """CheckApplicationAllProgresses found nothing.

    Background Remover: the seed's body. Generation: the seed's message and status, in a layered body
    whose keys (taken from the Background Remover one) and business message are assumed.
    """
    if feature == FEATURE_GENERATION:
        engine = Msg.GENERATION_APPLICATION_ENGINE.format(application_id=application_id)
        business = Msg.GENERATION_APPLICATION_BUSINESS.format(application_id=application_id)
    elif feature == FEATURE_BACKGROUND_REMOVAL:
        engine = Msg.BACKGROUND_APPLICATION_ENGINE.format(application_id=application_id)
        business = Msg.BACKGROUND_APPLICATION_BUSINESS.format(application_id=application_id)
    else:
        process, activity = PROCESS_NAMES[feature]
        engine = Msg.FEATURE_APPLICATION_ENGINE.format(process=process, application_id=application_id)
        business = Msg.FEATURE_APPLICATION_BUSINESS.format(activity=activity, application_id=application_id)
    return layered_error(
        NOTHING_FOUND_STATUS[feature],
        {"engine: CheckProgress": [engine], "business: CheckApplicationAllProgresses": [business]},
    )


def validation_error(errors: Mapping[str, list[str]], style: ValidationStyle) -> web.Response:
    """Shape B with the optional parts of ``style``."""
    body: dict[str, Any] = {}
    if style.top_id:
        body["$id"] = "1"
    field_errors: dict[str, Any] = {"$id": "2"} if style.errors_id else {}
    field_errors.update(errors)
    body.update(type=style.type_uri, title=VALIDATION_TITLE, status=400, errors=field_errors)
    if style.trace:
        body["traceId"] = trace_id()
    return json_response(body, 400, VALIDATION_CONTENT_TYPE)


def unsupported_media_type() -> web.Response:
    """415 as ASP.NET's client-error ProblemDetails (assumed: no example in the docs)."""
    body = {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.13",
        "title": "Unsupported Media Type",
        "status": 415,
        "traceId": trace_id(),
    }
    return json_response(body, 415, VALIDATION_CONTENT_TYPE)


def gateway_error(status: int) -> web.Response:
    """502/503/504 as a proxy in front of the service would send them: HTML (assumed body)."""
    reason = web.Response(status=status).reason
    html = (
        f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


class _Ids:
    """Newtonsoft's ``$id`` numbering: one counter through the whole document."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last += 1
        return str(self.last)


def _reported_state(state: int, options: EmulatorOptions) -> int:
    if state == TaskState.STARTED and options.unknown_task_state is not None:
        return options.unknown_task_state
    return state


def progress_object(process: Process, options: EmulatorOptions, ids: _Ids | None = None) -> dict[str, Any]:
    """The progress object of the seeds, with ``"$id"`` keys when ``ids`` numbers the document.

    ``renderKind`` only for generation (Background Remover's examples have none). Call
    ``process.refresh`` first when time should count.
    """
    tasks = list(process.tasks.values())
    body: dict[str, Any] = {}
    if ids is not None:
        body["$id"] = ids.next()
    body["messageType"] = message_type(process.feature)
    body["requestRenderState"] = process.state
    body["applicationId"] = process.application_id
    body["userId"] = process.user_id
    body["imageRenderProcessId"] = process.process_id
    body["totalTaskCount"] = len(tasks)
    body["completedTaskCount"] = process.completed_task_count
    body["progress"] = process.progress
    shown = tasks[: math.ceil(len(tasks) / 2)] if options.partial_tasks else tasks
    task_map: dict[str, Any] = {} if ids is None else {"$id": ids.next()}
    for task in shown:
        task_map[task.task_id] = _reported_state(task.state, options)
    body["tasks"] = task_map
    if process.render_kind is not None:
        body["renderKind"] = process.render_kind
    if process.render_type is not None:  # assumed: unknown for the features after the seeds, left out
        body["renderType"] = process.render_type
    body["isSuccessful"] = process.is_successful
    body["errorMessage"] = process.error_message
    return body


def single_progress(process: Process, options: EmulatorOptions, *, with_ids: bool) -> web.Response:
    """A start or edit answer: one progress object (with ``$id`` keys for Background Remover)."""
    return json_response(progress_object(process, options, _Ids() if with_ids else None))


def progress_list(processes: Iterable[Process], options: EmulatorOptions, *, wrapped: bool) -> web.Response:
    """A progress list: ``{"$id": "1", "$values": [...]}`` when ``wrapped``, else a plain array.

    The bytes are those of :func:`json_response` over :func:`progress_object`'s objects, each element's
    encoding kept on its process until the process changes (:func:`_listed_element`): a listing of a
    whole application holds every process it ever ran, and building 100,000 objects anew took the
    emulator 0.75 s per listing, every other call waiting meanwhile.
    """
    if not wrapped:
        body = b"[" + b",".join(_listed_element(p, options)[0] for p in processes) + b"]"
    else:
        parts = [b'{"$id":"1","$values":[']
        number = 2  # Newtonsoft's numbering: the wrapper is 1, then each element and its task map
        for n, process in enumerate(processes):
            head, mid, tail = _listed_element(process, options, ids=True)
            parts.append(b"%s%s%d%s%d%s" % (b"," if n else b"", head, number, mid, number + 1, tail))
            number += 2
        parts.append(b"]}")
        body = b"".join(parts)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


#: What stands for a ``"$id"`` number in a progress object's cached encoding (a JSON string that no
#: field of a progress object can hold: it begins with a NUL).
_ID_MARK = "\x00#"
_ENCODED_ID_MARK = b'"\\u0000#"'


def _listed_element(process: Process, options: EmulatorOptions, *, ids: bool = False) -> tuple[bytes, ...]:
    """``process``'s progress object encoded, kept on the process while its tasks (ids, states and
    messages), the options and the numbering stay the same: ``(bytes,)`` without ``"$id"`` keys, else
    ``(head, mid, tail)``, the element being ``head + '"n"' + mid + '"n+1"' + tail`` for its number n."""
    tasks = [(t.task_id, t.state, t.error_message) for t in process.tasks.values()]
    cached = process.listed
    if cached is not None and cached[0] is options and cached[1] is ids and cached[2] == tasks:
        return cached[3]
    if ids:
        marks = _MarkIds()
        encoded = _encoder.encode(progress_object(process, options, marks))
        head, mid, tail = encoded.split(_ENCODED_ID_MARK)
        parts: tuple[bytes, ...] = (head + b'"', b'"' + mid + b'"', b'"' + tail)
    else:
        parts = (_encoder.encode(progress_object(process, options)),)
    process.listed = (options, ids, tasks, parts)
    return parts


class _MarkIds(_Ids):
    """Numbers every ``"$id"`` with :data:`_ID_MARK` (see :func:`_listed_element`)."""

    def next(self) -> str:
        """The mark, never a number."""
        return _ID_MARK


def token_response(grant: TokenGrant) -> web.Response:
    """The token endpoints' 200 body (reference §1.3), with its Newtonsoft ``"$id"``."""
    return json_response(
        {
            "$id": "1",
            "applicationId": grant.application_id,
            "accessToken": grant.access_token,
            "accessTokenExpiration": grant.access_token_expiration,
            "refreshToken": grant.refresh_token,
            "refreshTokenExpiration": grant.refresh_token_expiration,
        }
    )
