"""Face enhancement (reference §7: ``/api/v1/Image/FaceEnhancing/…``; start documented, the rest in part)."""

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

__all__ = ["DEFAULT_ARIA_RATIO", "DEFAULT_MAX_FACE_COUNT", "FACE_ENHANCER", "FaceEnhancerResource"]

#: The server's default ``ariaRatio`` (documented), used when the field is not sent.
DEFAULT_ARIA_RATIO = 0.5
#: The server's default ``maxFaceCount`` (documented), used when the field is not sent.
DEFAULT_MAX_FACE_COUNT = 10

#: The start call's documented form fields, in the docs' order. ``ariaRatio`` is spelled as documented
#: (probably "areaRatio" on the server, reference §14.21: sent exactly as documented).
ENHANCE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("applicationId", "application_id", FieldKind.GUID, required=True),
    FieldSpec("userId", "user_id", FieldKind.GUID, required=True),
    FieldSpec("ariaRatio", "aria_ratio", FieldKind.NUMBER),
    FieldSpec("maxFaceCount", "max_face_count", FieldKind.INT),
    FieldSpec("uploadedImage", "image", FieldKind.IMAGE, required=True),
)

FACE_ENHANCER = RenderFeature(
    name="face_enhancer",
    start_route="Image/FaceEnhancing/AdCreative",
    start_fields=ENHANCE_FIELDS,
    # documented heading, its path text cut at "CheckUserProgr…" (reference §7.2)
    user_progress_route="Image/FaceEnhancing/CheckUserProgress",
    application_progress_route="Image/FaceEnhancing/CheckApplicationAllProgresses",
    download_route="Image/FaceEnhancing/Download",
    process_id_query="imageFaceEnhancerProcessId",
    message_type="ImageFaceEnhancingProgress",
    assumed=(
        ("application_progress_route", "not documented: the seeds' CheckApplicationAllProgresses pattern"),
        ("download_route", "not documented (no Download heading, reference §14.22): the seeds' pattern"),
        ("process_id_query", "not documented: Background Remover's image<Agent>ProcessId pattern"),
        ("method:user_progress_route", "GET, as every seed progress call"),
        ("method:download_route", "GET, as every seed download"),
        ("response:start", "not retrieved: the seeds' progress object (ImageFaceEnhancingProgress)"),
        ("response:progress", "not retrieved: the seeds' progress objects"),
    ),
)


class FaceEnhancerResource(RenderResource):
    """Enhance the faces in an image; follow the process; download the result.

    Example::

        job = await client.face_enhancer.enhance("team.jpg", max_face_count=4)
    """

    async def enhance(
        self,
        image: ImageInput,
        *,
        aria_ratio: float | None = None,
        max_face_count: int | None = None,
        user_id: str | uuid.UUID | None = None,
        on_upload_progress: ProgressCallback | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Start enhancing the faces of ``image`` (``POST Image/FaceEnhancing/AdCreative``, multipart).

        Args:
            image: the image (path, bytes, binary file object or async iterable of bytes), sent as
                ``uploadedImage``; e.g. JPEG or PNG.
            aria_ratio: the area-adjustment ratio, a finite number sent as ``ariaRatio`` (the docs'
                spelling); not sent when None: the server's default is :data:`DEFAULT_ARIA_RATIO`.
            max_face_count: the most faces to enhance, an integer sent as ``maxFaceCount``; not sent
                when None: the server's default is :data:`DEFAULT_MAX_FACE_COUNT`.
            user_id: the user (default: the client's).
            on_upload_progress: called with (bytes sent, total or None).
            extra_form, extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process.

        Raises:
            InvalidRequestError: before sending (a bad image, a non-number ratio, a non-integer count).
            NoActiveNotificationChannelError: the application has no active notification channel.
            BadRequestError: the server refused the input.
        """
        values = {
            "image": image,
            "aria_ratio": aria_ratio,
            "max_face_count": max_face_count,
            "user_id": self._client._user_id(user_id),
        }
        return await self._submit(
            self.feature.start_route,
            self.feature.start_fields,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            on_upload_progress,
        )
