"""adcreative-async: the async-first Python SDK for the AdCreative.ai API.

Start with :class:`AdCreativeClient`; test against :class:`adcreative_async.testing.Emulator`.
"""

from __future__ import annotations

from ._client import AdCreativeClient
from ._clock import Clock, ManualClock, SystemClock
from ._config import DEFAULT_BASE_URL, Limits, Timeout, TransferOptions
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
    NoActiveNotificationChannelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from ._files import ACCEPTED_IMAGE_TYPES, ImageInput, IncompleteDownloadError, ProgressCallback
from ._jobs import RenderJob
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
    "ClientNotOpenError",
    "Clock",
    "ConfigurationError",
    "CreativesResource",
    "ErrorDetail",
    "ImageInput",
    "IncompleteDownloadError",
    "InvalidRequestError",
    "Limits",
    "ManualClock",
    "NoActiveNotificationChannelError",
    "NotFoundError",
    "PermissionDeniedError",
    "Progress",
    "ProgressCallback",
    "RateLimitError",
    "RenderJob",
    "RenderKind",
    "RenderResource",
    "RenderState",
    "RenderType",
    "ServerError",
    "SystemClock",
    "Timeout",
    "TransferOptions",
    "UnexpectedResponseError",
    "__version__",
]
