"""adcreative-async: the async-first Python SDK for the AdCreative.ai API.

Start with :class:`AdCreativeClient`; test against :class:`adcreative_async.testing.Emulator`.
"""

from __future__ import annotations

from ._bulk import BulkOutcome, BulkRun
from ._client import AdCreativeClient
from ._clock import Clock, ManualClock, SystemClock
from ._config import DEFAULT_BASE_URL, Limits, PollPolicy, Timeout, TransferOptions
from ._downloads import DownloadStream
from ._errors import (
    AdCreativeError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientNotOpenError,
    ConfigurationError,
    ErrorDetail,
    InvalidRequestError,
    JobError,
    NoActiveNotificationChannelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RenderFailedError,
    RenderNotFoundError,
    ServerError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from ._files import ACCEPTED_IMAGE_TYPES, ImageInput, IncompleteDownloadError, ProgressCallback
from ._jobs import RenderJob, TaskUpdate, TaskUpdates, as_completed
from ._models import (
    AD_CREATIVE_RENDER_KINDS,
    AD_CREATIVE_RENDER_TYPES,
    TERMINAL_STATES,
    Progress,
    RenderKind,
    RenderState,
    RenderType,
)
from ._version import __version__
from .resources import BackgroundRemoverResource, CreativesResource, RenderResource

__all__ = [
    "ACCEPTED_IMAGE_TYPES",
    "AD_CREATIVE_RENDER_KINDS",
    "AD_CREATIVE_RENDER_TYPES",
    "DEFAULT_BASE_URL",
    "TERMINAL_STATES",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AdCreativeClient",
    "AdCreativeError",
    "AuthenticationError",
    "BackgroundRemoverResource",
    "BadRequestError",
    "BulkOutcome",
    "BulkRun",
    "ClientNotOpenError",
    "Clock",
    "ConfigurationError",
    "CreativesResource",
    "DownloadStream",
    "ErrorDetail",
    "ImageInput",
    "IncompleteDownloadError",
    "InvalidRequestError",
    "JobError",
    "Limits",
    "ManualClock",
    "NoActiveNotificationChannelError",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "Progress",
    "ProgressCallback",
    "RateLimitError",
    "RenderFailedError",
    "RenderJob",
    "RenderKind",
    "RenderNotFoundError",
    "RenderResource",
    "RenderState",
    "RenderType",
    "ServerError",
    "SystemClock",
    "TaskUpdate",
    "TaskUpdates",
    "Timeout",
    "TransferOptions",
    "UnexpectedResponseError",
    "WaitTimeoutError",
    "__version__",
    "as_completed",
]
