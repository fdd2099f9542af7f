"""The ten notification message types (reference §2.5), decoded with msgspec.

Webhook bodies are PascalCase JSON discriminated by ``MessageType``; a ``…TaskCompleted`` message reports
one finished task (with the image as base64 ``ImageContentBytes`` when the channel includes image data),
a ``…Progress`` message the progress of a whole process. The docs show the task-completed body; the
progress body is not shown: it is assumed to be the REST progress object (whose ``messageType`` values are
these same names) in PascalCase. Unknown fields are ignored; camelCase bodies are accepted too (the
RabbitMQ payload's casing is undocumented).

Every id a message carries (``ApplicationId``, ``UserId``, ``ImageRenderProcessId``, ``TaskId``, the
task ids keying a progress message's ``Tasks``) must be a GUID, as the docs type them: webhook bodies are
unsigned, and these ids name files and go into requests (``UserId`` and ``ApplicationId`` may be absent).
Anything else is a :class:`MessageDecodeError` (the webhook receiver answers 400). Ids are validated, not
rewritten (their case is kept).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import anyio
import msgspec

from .._fields import canonical_guid
from .._filewrite import write_atomically
from .._models import Progress, RenderState, settle_task_states

__all__ = [
    "FEATURE_OF_MESSAGE_TYPE",
    "MessageDecodeError",
    "Notification",
    "ProgressNotification",
    "TaskCompletedNotification",
    "UnknownMessageType",
    "decode_notification",
]

#: Which SDK feature each message type reports on (reference §2.5: five features, two types each).
FEATURE_OF_MESSAGE_TYPE: dict[str, str] = {
    "ImageGenerationProgress": "creatives",
    "ImageGenerationTaskCompleted": "creatives",
    "ImageUpscalingProgress": "upscaler",
    "ImageUpscalingTaskCompleted": "upscaler",
    "ImageFaceEnhancingProgress": "face_enhancer",
    "ImageFaceEnhancingTaskCompleted": "face_enhancer",
    "ImageBackgroundRemovingProgress": "background_remover",
    "ImageBackgroundRemovingTaskCompleted": "background_remover",
    "ImageStockGenerationProgress": "stock_images",
    "ImageStockGenerationTaskCompleted": "stock_images",
}


_GUID = r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"

#: An id as the API writes GUIDs (8-4-4-4-12 hex digits, either case); checked by msgspec when decoding.
Guid = Annotated[str, msgspec.Meta(pattern=rf"\A{_GUID}\Z")]

#: An id a message may lack (``UserId``, ``ApplicationId``): a GUID, or empty as when absent (a message
#: re-encoded to be republished carries its absent ids as empty strings).
OptionalGuid = Annotated[str, msgspec.Meta(pattern=rf"\A(?:{_GUID})?\Z")]

#: A key of a progress message's ``Tasks``: a task id, or Newtonsoft metadata (``$id``, dropped).
_TaskKey = Annotated[str, msgspec.Meta(pattern=rf"\A(?:\$.*|{_GUID})\Z")]
if TYPE_CHECKING:
    _MessageTasks = dict[str, RenderState]
else:  # task ids are GUIDs (or "$" metadata keys); states as in _models.TaskStates
    _MessageTasks = dict[_TaskKey, RenderState | str]

_REGEX_DETAIL = re.compile(r"Expected `str` matching regex '[^']*'")


class MessageDecodeError(ValueError):
    """The body is not a notification: not JSON, not an object, no ``MessageType``, wrong field types."""


class UnknownMessageType(MessageDecodeError):
    """A well-formed message of a type this SDK does not know (ignored, for forward compatibility)."""

    def __init__(self, message_type: str) -> None:
        super().__init__(f"unknown MessageType {message_type!r}")
        self.message_type = message_type


class Notification(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """Fields every message has. ``feature`` is the SDK feature name the message type belongs to."""

    message_type: str
    application_id: OptionalGuid = ""
    user_id: OptionalGuid = ""
    image_render_process_id: Guid = ""

    kind: ClassVar[str] = "notification"

    @property
    def feature(self) -> str:
        """The SDK feature (``"creatives"``, ``"background_remover"``, …)."""
        return FEATURE_OF_MESSAGE_TYPE[self.message_type]

    @property
    def process_id(self) -> str:
        """Alias of :attr:`image_render_process_id`."""
        return self.image_render_process_id


class TaskCompletedNotification(Notification, frozen=True, kw_only=True, rename="pascal"):
    """One task finished (successfully or not).

    Attributes:
        task_id: the task.
        image_content_bytes: the result image, decoded from base64, when the channel includes image
            data (else None): save it with :meth:`save_image` without a download request.
        is_successful, error_message: the task's outcome.
    """

    task_id: Guid
    image_content_bytes: bytes | None = None
    is_successful: bool = True
    error_message: str | None = ""

    kind: ClassVar[str] = "task_completed"

    @property
    def state(self) -> RenderState:
        """SUCCEEDED or FAILED (inferred state numbers, see RenderState)."""
        return RenderState.SUCCEEDED if self.is_successful else RenderState.FAILED

    @property
    def dedup_key(self) -> tuple[str, str, str, int]:
        """(type, process, task, state): the same event delivered twice has the same key."""
        return (self.message_type, self.image_render_process_id, self.task_id, int(self.state))

    async def save_image(self, dest: str | os.PathLike[str]) -> Path:
        """Write the image the message carries to ``dest`` (a file path, or a directory: then
        ``<task id>.<type>``), atomically, without a download request (and so without counting one).

        Raises:
            InvalidRequestError: the task id is not a GUID (a message built by hand: decoding refuses
                them), so it cannot name a file.
            ValueError: the message carries no image (the channel does not include image data).
        """
        task_id = canonical_guid(self.task_id, "task_id")  # never a path: the file stays inside dest
        data = self.image_content_bytes
        if not data:
            raise ValueError(
                f"{self.message_type} for task {task_id} carries no image: the notification channel "
                "does not include image data; download it instead"
            )

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await write_atomically(
            chunks(),
            dest,
            default_stem=task_id,
            content_type=None,
            expected_length=len(data),
            limiter=anyio.CapacityLimiter(1),
        )


class ProgressNotification(Notification, frozen=True, kw_only=True, rename="pascal"):
    """The progress of a whole process (the REST progress object, in PascalCase: assumed)."""

    request_render_state: int = 0
    total_task_count: int = 0
    completed_task_count: int = 0
    progress: int | float = 0
    tasks: _MessageTasks = {}
    render_kind: int | None = None
    render_type: int | None = None
    is_successful: bool = True
    error_message: str | None = ""

    kind: ClassVar[str] = "progress"

    def __post_init__(self) -> None:
        settle_task_states(self.tasks)

    def to_progress(self) -> Progress:
        """The same data as the REST model (what waits and ``RenderJob.progress`` hold)."""
        return Progress(
            image_render_process_id=self.image_render_process_id,
            message_type=self.message_type,
            request_render_state=self.request_render_state,
            application_id=self.application_id,
            user_id=self.user_id,
            total_task_count=self.total_task_count,
            completed_task_count=self.completed_task_count,
            progress=self.progress,
            tasks=dict(self.tasks),
            render_kind=self.render_kind,
            render_type=self.render_type,
            is_successful=self.is_successful,
            error_message=self.error_message,
        )

    @property
    def dedup_key(self) -> tuple[str, str, str, int]:
        """(type, process, a digest of the task states, completed count)."""
        digest = ",".join(f"{t}={int(s)}" for t, s in sorted(self.tasks.items()))
        return (self.message_type, self.image_render_process_id, digest, self.completed_task_count)


class _Envelope(msgspec.Struct):
    message_type: Any = msgspec.field(name="MessageType", default=None)
    message_type_camel: Any = msgspec.field(name="messageType", default=None)


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _field_spec(field: msgspec.structs.FieldInfo) -> tuple[Any, ...]:
    if field.default is not msgspec.NODEFAULT:
        return (field.name, field.type, field.default)
    if field.default_factory is not msgspec.NODEFAULT:
        return (field.name, field.type, msgspec.field(default_factory=field.default_factory))
    return (field.name, field.type)


def _camel_decoder(cls: type[Any]) -> msgspec.json.Decoder[Any]:
    """A decoder of ``cls`` from camelCase keys: a twin struct with the same fields, renamed."""
    fields = [_field_spec(f) for f in msgspec.structs.fields(cls)]
    twin = msgspec.defstruct(f"{cls.__name__}Camel", fields, rename="camel", frozen=True, kw_only=True)
    return msgspec.json.Decoder(twin, strict=False)


# strict=False: numbers sent as strings and Newtonsoft's "$id" inside maps of ints still decode.
_DECODERS: dict[str, tuple[type[Any], msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]] = {
    kind: (cls, msgspec.json.Decoder(cls, strict=False), _camel_decoder(cls))
    for kind, cls in (("task_completed", TaskCompletedNotification), ("progress", ProgressNotification))
}


def decode_notification(body: bytes) -> TaskCompletedNotification | ProgressNotification:
    """Decode one message (PascalCase, or camelCase).

    Raises:
        UnknownMessageType: well-formed JSON object whose ``MessageType`` this SDK does not know.
        MessageDecodeError: anything else that is not a notification.
    """
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.DecodeError as exc:
        raise MessageDecodeError(f"not a JSON object: {exc}") from None
    pascal = isinstance(envelope.message_type, str)
    message_type = envelope.message_type if pascal else envelope.message_type_camel
    if not isinstance(message_type, str) or not message_type:
        raise MessageDecodeError("no MessageType string")
    if message_type not in FEATURE_OF_MESSAGE_TYPE:
        raise UnknownMessageType(message_type)
    kind = "task_completed" if message_type.endswith("TaskCompleted") else "progress"
    cls, pascal_decoder, camel_decoder = _DECODERS[kind]
    try:
        if pascal:
            message: TaskCompletedNotification | ProgressNotification = pascal_decoder.decode(body)
        else:
            message = cls(**msgspec.structs.asdict(camel_decoder.decode(body)))
    except msgspec.DecodeError as exc:
        detail = _REGEX_DETAIL.sub("Expected a GUID", str(exc))
        raise MessageDecodeError(f"malformed {message_type}: {detail}") from None
    if not message.image_render_process_id:
        raise MessageDecodeError(f"{message_type} without ImageRenderProcessId")
    return message
