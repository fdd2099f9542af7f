"""Image upscaling (reference §5: ``/api/v1/Image/Upscaling/…``; only the start call is documented)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._fields import FieldKind, FieldSpec
from ._base import RenderFeature, RenderResource, RequestOptions

if TYPE_CHECKING:
    import uuid

    from .._config import RetryPolicy, Timeout
    from .._files import ImageInput, ProgressCallback
    from .._jobs import RenderJob

__all__ = ["UPSCALER", "UpscalerResource"]

#: The start call's documented form fields (the docs list more without their names: use ``extra_form``).
UPSCALE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("applicationId", "application_id", FieldKind.GUID, required=True),
    FieldSpec("userId", "user_id", FieldKind.GUID, required=True),
    FieldSpec("uploadedImage", "image", FieldKind.IMAGE, required=True),
)

UPSCALER = RenderFeature(
    name="upscaler",
    start_route="Image/Upscaling/AdCreative",
    start_fields=UPSCALE_FIELDS,
    user_progress_route="Image/Upscaling/CheckUserProgress",
    application_progress_route="Image/Upscaling/CheckApplicationAllProgresses",
    download_route="Image/Upscaling/Download",
    process_id_query="imageUpscalerProcessId",
    message_type="ImageUpscalingProgress",
    assumed=(
        ("user_progress_route", "not documented: the seeds' Image/<Segment>/CheckUserProgress pattern"),
        ("application_progress_route", "not documented: the seeds' CheckApplicationAllProgresses pattern"),
        ("download_route", "not documented: the seeds' Image/<Segment>/Download pattern"),
        ("process_id_query", "not documented: Background Remover's image<Agent>ProcessId pattern"),
        ("method:user_progress_route", "GET, as every seed progress call"),
        ("method:download_route", "GET, as every seed download"),
        ("response:start", "not documented: the seeds' progress object (messageType ImageUpscalingProgress)"),
        ("response:progress", "not documented: the seeds' progress objects"),
    ),
)


class UpscalerResource(RenderResource):
    """Upscale an image; follow the process; download the result.

    Only the start call is documented; the progress and download routes and the process-id query
    name follow the seeds' pattern (see ``UPSCALER.assumed``) and can be overridden with
    ``AdCreativeClient(feature_overrides={"upscaler": {...}})``.

    Example::

        job = await client.upscaler.upscale("small.png")
        await job.result(timeout=600)
        await job.download_all("out/")
    """

    async def upscale(
        self,
        image: ImageInput,
        *,
        user_id: str | uuid.UUID | None = None,
        on_upload_progress: ProgressCallback | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Start upscaling ``image`` (``POST Image/Upscaling/AdCreative``, multipart).

        Args:
            image: the image (path, bytes, binary file object or async iterable of bytes), sent as
                ``uploadedImage``.
            user_id: the user (default: the client's).
            on_upload_progress: called with (bytes sent, total or None).
            extra_form: the start call's other fields, which the docs do not name.
            extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process.

        Raises:
            InvalidRequestError: before sending (missing, unreadable, empty or non-image file…).
            NoActiveNotificationChannelError: the application has no active notification channel.
            BadRequestError: the server refused the input.
        """
        values = {"image": image, "user_id": self._client._user_id(user_id)}
        return await self._submit(
            self.feature.start_route,
            self.feature.start_fields,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            on_upload_progress,
        )
