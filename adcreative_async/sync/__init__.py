"""The sync client: :class:`SyncAdCreativeClient` and the sync twins of the async client's objects.

A thin layer over the async client: each ``SyncAdCreativeClient`` runs an
:class:`~adcreative_async.AdCreativeClient` on an event loop in a thread of its own, and every method
of every twin has the async method's name, parameters and result, blocking (handles become their sync
twins: ``SyncRenderJob``, ``SyncDownloadStream``, ``SyncBulkRun``; waits become plain iterators).
"""

from __future__ import annotations

from ._bulk import SyncBulkRun
from ._client import SyncAdCreativeClient
from ._downloads import SyncDownloadStream
from ._jobs import SyncRenderJob, as_completed
from ._portal import BlockingIterator
from ._resources import (
    SyncAdTextsResource,
    SyncBackgroundRemoverResource,
    SyncCreativesResource,
    SyncFaceEnhancerResource,
    SyncProductPhotoshootResource,
    SyncRenderResource,
    SyncResource,
    SyncScanMyWebsiteResource,
    SyncStockImagesResource,
    SyncUpscalerResource,
)

__all__ = [
    "BlockingIterator",
    "SyncAdCreativeClient",
    "SyncAdTextsResource",
    "SyncBackgroundRemoverResource",
    "SyncBulkRun",
    "SyncCreativesResource",
    "SyncDownloadStream",
    "SyncFaceEnhancerResource",
    "SyncProductPhotoshootResource",
    "SyncRenderJob",
    "SyncRenderResource",
    "SyncResource",
    "SyncScanMyWebsiteResource",
    "SyncStockImagesResource",
    "SyncUpscalerResource",
    "as_completed",
]
