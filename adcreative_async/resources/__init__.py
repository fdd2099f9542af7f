"""One module per API feature, each a declarative description on the generic render-feature engine."""

from __future__ import annotations

from ._base import RenderFeature, RenderResource, RequestOptions
from .background_remover import BACKGROUND_REMOVER, BackgroundRemoverResource
from .creatives import CREATIVES, CreativesResource

__all__ = [
    "BACKGROUND_REMOVER",
    "CREATIVES",
    "BackgroundRemoverResource",
    "CreativesResource",
    "RenderFeature",
    "RenderResource",
    "RequestOptions",
]
