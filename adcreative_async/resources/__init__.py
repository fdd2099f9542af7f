"""One module per API feature, each a declarative description on the generic render-feature engine
(image features) or a few plain calls on the common :class:`Resource` base (Scan My Website, Ad Text)."""

from __future__ import annotations

from ._base import RenderFeature, RenderResource, RequestOptions, Resource
from ._registry import RENDER_FEATURES, configured_features
from .ad_texts import AdTextsResource
from .background_remover import BACKGROUND_REMOVER, BackgroundRemoverResource
from .creatives import CREATIVES, CreativesResource
from .face_enhancer import FACE_ENHANCER, FaceEnhancerResource
from .product_photoshoot import PRODUCT_PHOTOSHOOT, ProductPhotoshootResource
from .scan_my_website import ScanMyWebsiteResource
from .stock_images import STOCK_IMAGES, StockImagesResource
from .upscaler import UPSCALER, UpscalerResource

__all__ = [
    "BACKGROUND_REMOVER",
    "CREATIVES",
    "FACE_ENHANCER",
    "PRODUCT_PHOTOSHOOT",
    "RENDER_FEATURES",
    "STOCK_IMAGES",
    "UPSCALER",
    "AdTextsResource",
    "BackgroundRemoverResource",
    "CreativesResource",
    "FaceEnhancerResource",
    "ProductPhotoshootResource",
    "RenderFeature",
    "RenderResource",
    "RequestOptions",
    "Resource",
    "ScanMyWebsiteResource",
    "StockImagesResource",
    "UpscalerResource",
    "configured_features",
]
