"""Stock image generation (reference §9: ``/api/v1/Image/StockGeneration/…``; start documented in part)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._fields import FieldKind, FieldSpec
from .._models import DOCUMENTED_RENDER_KINDS, ImageStyle
from ._base import RenderFeature, RenderResource, RequestOptions

if TYPE_CHECKING:
    import uuid

    from .._config import RetryPolicy, Timeout
    from .._jobs import RenderJob

__all__ = ["STOCK_IMAGES", "USER_PROMPT_MAX_LENGTH", "StockImagesResource"]

#: ``userPrompt`` is at most this long (documented; counted in UTF-16 code units, as .NET counts).
USER_PROMPT_MAX_LENGTH = 1000

#: The start call's documented form fields, in the docs' order (style images and LoRA parameters are
#: mentioned without their names: use ``extra_form``).
GENERATE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("applicationId", "application_id", FieldKind.GUID, required=True, non_empty_guid=True),
    FieldSpec("userId", "user_id", FieldKind.GUID, required=True, non_empty_guid=True),
    FieldSpec(
        "renderKind",
        "render_kind",
        FieldKind.CHOICE,
        required=True,
        choices=DOCUMENTED_RENDER_KINDS,
        choices_doc="documented RenderKind values; which of them Stock Image accepts is not documented",
    ),
    FieldSpec("imageStyle", "image_style", FieldKind.INT, required=True),
    FieldSpec("userPrompt", "user_prompt", FieldKind.TEXT, required=True, max_length=USER_PROMPT_MAX_LENGTH),
    FieldSpec("customStyleText", "custom_style_text", FieldKind.TEXT),
)

STOCK_IMAGES = RenderFeature(
    name="stock_images",
    start_route="Image/StockGeneration/AdCreative",
    start_fields=GENERATE_FIELDS,
    user_progress_route="Image/StockGeneration/CheckUserProgress",
    application_progress_route="Image/StockGeneration/CheckApplicationAllProgresses",
    download_route="Image/StockGeneration/Download",
    process_id_query="imageStockGeneratorProcessId",
    message_type="ImageStockGenerationProgress",
    assumed=(
        ("user_progress_route", "heading documented, path not: assumed under Image/StockGeneration/"),
        ("application_progress_route", "heading documented, path not: assumed under Image/StockGeneration/"),
        ("download_route", "heading documented, path not: assumed under Image/StockGeneration/"),
        ("process_id_query", "not documented: Background Remover's image<Agent>ProcessId pattern"),
        ("method:user_progress_route", "GET, as every seed progress call"),
        ("method:download_route", "GET, as every seed download"),
        ("field:renderKind", "which RenderKind values are accepted is not documented: all documented ones"),
        ("response:start", "not retrieved: the seeds' progress object (ImageStockGenerationProgress)"),
        ("response:progress", "not retrieved: the seeds' progress objects"),
    ),
)


class StockImagesResource(RenderResource):
    """Generate stock images from a prompt; follow the process; download the results.

    Example::

        job = await client.stock_images.generate(
            "A barista pouring latte art in a sunlit cafe", render_kind=RenderKind.POST
        )
    """

    async def generate(
        self,
        user_prompt: str,
        *,
        render_kind: int,
        image_style: int = ImageStyle.PHOTOREALISTIC,
        custom_style_text: str | None = None,
        user_id: str | uuid.UUID | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Start generating stock images (``POST Image/StockGeneration/AdCreative``, multipart).

        Args:
            user_prompt: the image wanted; at most 1000 characters (UTF-16 code units, as the server
                counts), sent as ``userPrompt``.
            render_kind: the size(s), a documented :class:`~adcreative_async.RenderKind` value.
            image_style: an :class:`~adcreative_async.ImageStyle` integer; always sent, by default the
                documented default 3 (Photorealistic). Other styles are named in the docs without
                numbers: pass the integer.
            custom_style_text: a text description of the style wanted (``customStyleText``).
            user_id: the user (default: the client's; must not be the all-zero GUID).
            extra_form: more text fields: the docs mention LoRA parameters without their names.
                (Style example images are mentioned too; their field name is not documented, so the
                SDK cannot send them yet.)
            extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process.

        Raises:
            InvalidRequestError: before sending, naming the parameter and the rule.
            NoActiveNotificationChannelError: the application has no active notification channel.
            BadRequestError: the server refused the input.
        """
        values = {
            "user_prompt": user_prompt,
            "render_kind": render_kind,
            "image_style": image_style,
            "custom_style_text": custom_style_text,
            "user_id": self._client._user_id(user_id),
        }
        return await self._submit(
            self.feature.start_route,
            self.feature.start_fields,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            None,
        )
