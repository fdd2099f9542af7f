"""adcreative-async: the async-first Python SDK for the AdCreative.ai API.

Start with :class:`AdCreativeClient` (in sync code and notebooks: :class:`SyncAdCreativeClient`); test
against :class:`adcreative_async.testing.Emulator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _lazy
from ._client import AdCreativeClient
from ._clock import Clock, ManualClock, SystemClock
from ._config import DEFAULT_BASE_URL, Limits, PollPolicy, RetryPolicy, Timeout, TransferOptions
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
    InputChangedError,
    InvalidRequestError,
    JobError,
    NoActiveNotificationChannelError,
    NotFoundError,
    NotStartedError,
    PermissionDeniedError,
    RateLimitError,
    RenderFailedError,
    RenderNotFoundError,
    RenderNotReadyError,
    RunAbortedError,
    ServerError,
    UnexpectedResponseError,
    UploadAbortedError,
    WaitTimeoutError,
)
from ._feature_models import (
    MAX_PROMPT_OBJECTS,
    CustomPrompt,
    JSONValue,
    PresetPrompt,
    ProductInfo,
    ProductRecommendations,
    PromptObject,
    WebsiteScan,
)
from ._files import ACCEPTED_IMAGE_TYPES, ImageInput, ProgressCallback
from ._filewrite import IncompleteDownloadError
from ._jobs import RenderJob, TaskUpdate, TaskUpdates, as_completed
from ._models import (
    AD_CREATIVE_RENDER_KINDS,
    AD_CREATIVE_RENDER_TYPES,
    DOCUMENTED_RENDER_KINDS,
    TERMINAL_STATES,
    DownloadFormat,
    ImageStyle,
    Progress,
    RenderKind,
    RenderState,
    RenderType,
)
from ._reconcile import RenderMayExistError
from ._telemetry import Telemetry
from ._version import __version__
from .resources import (
    AdTextsResource,
    BackgroundRemoverResource,
    CreativesResource,
    FaceEnhancerResource,
    ProductPhotoshootResource,
    RenderFeature,
    RenderResource,
    Resource,
    ScanMyWebsiteResource,
    StockImagesResource,
    UpscalerResource,
)

if TYPE_CHECKING:
    from ._bulk import BulkOutcome, BulkRun
    from ._ratelimit import RateControl, RateStatus
    from .sync import SyncAdCreativeClient

# Imported on first use (module ``__getattr__``): ``import adcreative_async`` must not pay for what
# the async path never runs (tests/test_import_footprint.py).
_LAZY = {
    "BulkOutcome": "._bulk",
    "BulkRun": "._bulk",
    "RateControl": "._ratelimit",
    "RateStatus": "._ratelimit",
    "SyncAdCreativeClient": ".sync",
}


def __getattr__(name: str) -> object:
    """Import a rarely used public name on first access, and keep it."""
    return _lazy.load_lazy(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return _lazy.lazy_dir(globals(), __all__)


__all__ = [
    "ACCEPTED_IMAGE_TYPES",
    "AD_CREATIVE_RENDER_KINDS",
    "AD_CREATIVE_RENDER_TYPES",
    "DEFAULT_BASE_URL",
    "DOCUMENTED_RENDER_KINDS",
    "MAX_PROMPT_OBJECTS",
    "TERMINAL_STATES",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AdCreativeClient",
    "AdCreativeError",
    "AdTextsResource",
    "AuthenticationError",
    "BackgroundRemoverResource",
    "BadRequestError",
    "BulkOutcome",
    "BulkRun",
    "ClientNotOpenError",
    "Clock",
    "ConfigurationError",
    "CreativesResource",
    "CustomPrompt",
    "DownloadFormat",
    "DownloadStream",
    "ErrorDetail",
    "FaceEnhancerResource",
    "ImageInput",
    "ImageStyle",
    "IncompleteDownloadError",
    "InputChangedError",
    "InvalidRequestError",
    "JSONValue",
    "JobError",
    "Limits",
    "ManualClock",
    "NoActiveNotificationChannelError",
    "NotFoundError",
    "NotStartedError",
    "PermissionDeniedError",
    "PollPolicy",
    "PresetPrompt",
    "ProductInfo",
    "ProductPhotoshootResource",
    "ProductRecommendations",
    "Progress",
    "ProgressCallback",
    "PromptObject",
    "RateControl",
    "RateLimitError",
    "RateStatus",
    "RenderFailedError",
    "RenderFeature",
    "RenderJob",
    "RenderKind",
    "RenderMayExistError",
    "RenderNotFoundError",
    "RenderNotReadyError",
    "RenderResource",
    "RenderState",
    "RenderType",
    "Resource",
    "RetryPolicy",
    "RunAbortedError",
    "ScanMyWebsiteResource",
    "ServerError",
    "StockImagesResource",
    "SyncAdCreativeClient",
    "SystemClock",
    "TaskUpdate",
    "TaskUpdates",
    "Telemetry",
    "Timeout",
    "TransferOptions",
    "UnexpectedResponseError",
    "UploadAbortedError",
    "UpscalerResource",
    "WaitTimeoutError",
    "WebsiteScan",
    "__version__",
    "as_completed",
]
