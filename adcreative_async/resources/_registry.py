"""Every render feature the client serves, and the user's overrides of their routes and names."""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import ConfigurationError, InvalidRequestError
from ._base import RenderFeature
from .background_remover import BACKGROUND_REMOVER
from .creatives import CREATIVES
from .face_enhancer import FACE_ENHANCER
from .product_photoshoot import PRODUCT_PHOTOSHOOT
from .stock_images import STOCK_IMAGES
from .upscaler import UPSCALER

__all__ = ["RENDER_FEATURES", "configured_features"]

#: The render features, by the name of their resource on the client.
RENDER_FEATURES: dict[str, RenderFeature] = {
    f.name: f
    for f in (CREATIVES, BACKGROUND_REMOVER, UPSCALER, FACE_ENHANCER, STOCK_IMAGES, PRODUCT_PHOTOSHOOT)
}


def configured_features(
    overrides: Mapping[str, Mapping[str, object]] | None,
) -> dict[str, RenderFeature]:
    """The render features with ``overrides`` applied (see :meth:`RenderFeature.with_overrides`).

    Raises:
        ConfigurationError: an unknown feature or key (named, with the known ones), or a bad value.
    """
    features = dict(RENDER_FEATURES)
    for name, changes in (overrides or {}).items():
        feature = features.get(name)
        if feature is None:
            known = ", ".join(repr(n) for n in features)
            raise ConfigurationError(
                f"feature_overrides: unknown feature {name!r} (known: {known})",
                field="feature_overrides",
                rule="unknown feature",
            )
        if not isinstance(changes, Mapping):
            raise ConfigurationError(
                f"feature_overrides[{name!r}] must be a mapping such as "
                "{'user_progress_route': '...', 'process_id_query': '...'}",
                field="feature_overrides",
                rule="must be a mapping",
            )
        try:
            features[name] = feature.with_overrides(changes)
        except InvalidRequestError as exc:
            raise ConfigurationError(str(exc), field="feature_overrides", rule=exc.rule) from None
    return features
