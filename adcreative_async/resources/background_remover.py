"""Background removal (seed 000: ``/api/v1/Image/BackgroundRemoving/…``)."""

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

__all__ = ["BACKGROUND_REMOVER", "BackgroundRemoverResource"]

#: The start call's form fields, in the seed's order.
REMOVE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("applicationId", "application_id", FieldKind.GUID, required=True),
    FieldSpec("userId", "user_id", FieldKind.GUID, required=True),
    FieldSpec("uploadedImage", "image", FieldKind.IMAGE, required=True),
)

BACKGROUND_REMOVER = RenderFeature(
    name="background_remover",
    start_route="Image/BackgroundRemoving/AdCreative",
    start_fields=REMOVE_FIELDS,
    user_progress_route="Image/BackgroundRemoving/CheckUserProgress",
    application_progress_route="Image/BackgroundRemoving/CheckApplicationAllProgresses",
    download_route="Image/BackgroundRemoving/Download",
    # The seed's query name for the id its responses call imageRenderProcessId.
    process_id_query="imageBackgroundRemoverProcessId",
    message_type="ImageBackgroundRemovingProgress",
    render_type=8,
)


class BackgroundRemoverResource(RenderResource):
    """Remove the background of an image; follow the process; download the result.

    Example::

        job = await client.background_remover.remove("product.jpg")
    """

    async def remove(
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
        """Start removing the background of ``image`` (``POST Image/BackgroundRemoving/AdCreative``).

        Args:
            image: the image (path, bytes, binary file object or async iterable of bytes), sent as
                ``uploadedImage``; JPEG or PNG per the docs.
            user_id: the user (default: the client's).
            on_upload_progress: called with (bytes sent, total or None).
            extra_form, extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process (one task).

        Raises:
            InvalidRequestError: before sending (missing, unreadable, empty or non-image file…).
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
