"""The sync twins of the feature resources: one line per method, typed with the async method's own
parameters (see :mod:`adcreative_async.sync._portal`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..resources import (
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
from ._jobs import sync_job, sync_stream, sync_updates
from ._portal import SyncObject, blocking, on_loop

if TYPE_CHECKING:
    from ._client import SyncAdCreativeClient

__all__ = [
    "SyncAdTextsResource",
    "SyncBackgroundRemoverResource",
    "SyncCreativesResource",
    "SyncFaceEnhancerResource",
    "SyncProductPhotoshootResource",
    "SyncRenderResource",
    "SyncResource",
    "SyncScanMyWebsiteResource",
    "SyncStockImagesResource",
    "SyncUpscalerResource",
]


class SyncResource(SyncObject):
    """Base of the sync resources: the async resource it stands for is ``async_resource``."""

    def __init__(self, client: SyncAdCreativeClient, resource: Resource) -> None:
        super().__init__(client, resource)

    def __repr__(self) -> str:
        return "Sync" + repr(self._target)

    @property
    def async_resource(self) -> Resource:
        """The async resource this stands for."""
        resource: Resource = self._target
        return resource

    @property
    def name(self) -> str:
        """The resource's attribute name on the client (``"scan_my_website"``)."""
        return self.async_resource.name


class SyncRenderResource(SyncResource):
    """The sync twin of :class:`~adcreative_async.RenderResource`: progress, downloads, waits and
    rebuilt jobs of one image feature; subclasses add the feature's start calls."""

    @property
    def feature(self) -> RenderFeature:
        """The feature's declarative description."""
        feature: RenderFeature = self._target.feature
        return feature

    user_progress = blocking(RenderResource.user_progress)
    application_progress = blocking(RenderResource.application_progress)
    process_progress = blocking(RenderResource.process_progress)
    download = blocking(RenderResource.download)
    stream_download = on_loop(RenderResource.stream_download, sync_stream)
    open_download = blocking(RenderResource.open_download, sync_stream)
    wait_until_complete = on_loop(RenderResource.wait_until_complete, sync_updates)
    job = on_loop(RenderResource.job, sync_job)


class SyncCreativesResource(SyncRenderResource):
    """Ad creatives, blocking: the sync twin of :class:`~adcreative_async.CreativesResource`."""

    generate = blocking(CreativesResource.generate, sync_job)
    edit = blocking(CreativesResource.edit, sync_job)


class SyncBackgroundRemoverResource(SyncRenderResource):
    """Background removal, blocking: the sync twin of
    :class:`~adcreative_async.BackgroundRemoverResource`."""

    remove = blocking(BackgroundRemoverResource.remove, sync_job)


class SyncUpscalerResource(SyncRenderResource):
    """Upscaling, blocking: the sync twin of :class:`~adcreative_async.UpscalerResource`."""

    upscale = blocking(UpscalerResource.upscale, sync_job)


class SyncFaceEnhancerResource(SyncRenderResource):
    """Face enhancement, blocking: the sync twin of :class:`~adcreative_async.FaceEnhancerResource`."""

    enhance = blocking(FaceEnhancerResource.enhance, sync_job)


class SyncStockImagesResource(SyncRenderResource):
    """Stock images, blocking: the sync twin of :class:`~adcreative_async.StockImagesResource`."""

    generate = blocking(StockImagesResource.generate, sync_job)


class SyncProductPhotoshootResource(SyncRenderResource):
    """Product photoshoots, blocking: the sync twin of
    :class:`~adcreative_async.ProductPhotoshootResource`."""

    recommendations = blocking(ProductPhotoshootResource.recommendations)
    preset_keys = blocking(ProductPhotoshootResource.preset_keys)
    generate = blocking(ProductPhotoshootResource.generate, sync_job)
    download = blocking(ProductPhotoshootResource.download)
    stream_download = on_loop(ProductPhotoshootResource.stream_download, sync_stream)
    open_download = blocking(ProductPhotoshootResource.open_download, sync_stream)


class SyncScanMyWebsiteResource(SyncResource):
    """Website scans, blocking: the sync twin of :class:`~adcreative_async.ScanMyWebsiteResource`."""

    scan = blocking(ScanMyWebsiteResource.scan)


class SyncAdTextsResource(SyncResource):
    """Ad texts, blocking: the sync twin of :class:`~adcreative_async.AdTextsResource`."""

    generate_ads = blocking(AdTextsResource.generate_ads)
    update_ads = blocking(AdTextsResource.update_ads)
    user_ads = blocking(AdTextsResource.user_ads)
    application_ads = blocking(AdTextsResource.application_ads)
    product_description = blocking(AdTextsResource.product_description)
    ad_strategies = blocking(AdTextsResource.ad_strategies)
    ad_copies = blocking(AdTextsResource.ad_copies)
    change_sentiment = blocking(AdTextsResource.change_sentiment)
    shorten = blocking(AdTextsResource.shorten)
    translate = blocking(AdTextsResource.translate)
    create_variations = blocking(AdTextsResource.create_variations)
