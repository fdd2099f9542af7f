"""Product photoshoot (reference §11: ``…/ProductGeneration/…``): recommendations, presets, generation.

The flow: upload the product photo to Recommendations (product name and description, the id of the
photo without its background, recommended prompts and preset keys) → start a generation with that id
and up to six prompt objects → follow it → download each task as PNG, JPEG or PDF.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import InvalidRequestError
from .._feature_models import (
    MAX_PROMPT_OBJECTS,
    CustomPrompt,
    JSONValue,
    PresetPrompt,
    ProductRecommendations,
    PromptObject,
    decode_clean,
    decode_recommendations,
    encode_prompt_objects,
)
from .._fields import FieldKind, FieldSpec
from .._models import DownloadFormat
from ._base import RenderFeature, RenderResource, RequestOptions

if TYPE_CHECKING:
    from .._config import RetryPolicy, Timeout
    from .._downloads import DownloadStream
    from .._files import ImageInput, ProgressCallback
    from .._jobs import RenderJob

__all__ = ["PRODUCT_PHOTOSHOOT", "ProductPhotoshootResource"]

_K = FieldKind
_APPLICATION = FieldSpec("applicationId", "application_id", _K.GUID, required=True)
_USER = FieldSpec("userId", "user_id", _K.GUID, required=True)

#: Recommendations' form: the docs say only that it takes the product photo; the ids and the file
#: part's name ``uploadedImage`` are assumed (every other upload of the API uses them).
RECOMMENDATION_FIELDS: tuple[FieldSpec, ...] = (
    _APPLICATION,
    _USER,
    FieldSpec("uploadedImage", "image", _K.IMAGE, required=True),
)

#: The start call's fields: ``PromptObjectsString`` is documented; the image-id field's name is not
#: (the flow says "imageId", Recommendations answers ``backgroundRemovedImageAssetId``, reference §14.19).
GENERATE_FIELDS: tuple[FieldSpec, ...] = (
    _APPLICATION,
    _USER,
    FieldSpec("backgroundRemovedImageAssetId", "background_removed_image_asset_id", _K.GUID, required=True),
    FieldSpec("PromptObjectsString", "prompts", _K.TEXT, required=True),
)

#: The download's documented ``format``: 0 PNG, 1 JPEG, 2 PDF 1.6.
DOWNLOAD_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "format",
        "format",
        _K.CHOICE,
        choices=frozenset(int(f) for f in DownloadFormat),
        choices_doc="DownloadFormat: 0 PNG, 1 JPEG, 2 PDF",
    ),
)

PRODUCT_PHOTOSHOOT = RenderFeature(
    name="product_photoshoot",
    start_route="Image/ProductGeneration/AdCreative",
    start_fields=GENERATE_FIELDS,
    user_progress_route="Image/ProductGeneration/CheckUserProgress",
    application_progress_route="Image/ProductGeneration/CheckApplicationAllProgresses",
    download_route="Image/ProductGeneration/Download",
    process_id_query="imageProductGeneratorProcessId",  # documented for the download
    message_type="ImageProductGenerationProgress",
    download_fields=DOWNLOAD_FIELDS,
    extra_routes=(
        ("recommendations_route", "Image/ProductGeneration/Recommendations"),
        ("preset_keys_route", "Image/ProductGeneration/PresetKeys"),  # documented in full
    ),
    assumed=(
        ("start_route", "named without /api/v1 (reference §14.19); the Image/ prefix of PresetKeys"),
        ("recommendations_route", "named '/ProductGeneration/Recommendations': Image/ prefix assumed"),
        ("application_progress_route", "not documented: the seeds' CheckApplicationAllProgresses pattern"),
        ("method:start_route", "not stated: POST multipart/form-data, as every other start call"),
        ("method:recommendations_route", "not stated: POST multipart/form-data (it takes an upload)"),
        ("method:user_progress_route", "not stated: GET, as every seed progress call"),
        ("method:download_route", "not stated: GET, as every seed download"),
        ("process_id_query", "documented for the download; assumed for the progress filter"),
        ("field:applicationId", "not documented for these calls: every other call sends it"),
        ("field:backgroundRemovedImageAssetId", "the start call's image-id field name is not documented"),
        ("field:uploadedImage", "Recommendations' file part name is not documented"),
        ("response:start", "not documented: the seeds' progress object"),
        ("response:progress", "not documented: progress value and per-task renderState (6 tasks)"),
        ("response:preset_keys", "not documented: returned as plain JSON"),
        ("message_type", "no ImageProduct… message type is documented"),
    ),
)


def _prompt_objects(prompts: object, strict: bool) -> list[PromptObject]:
    """Check the prompt objects (types, non-blank text, at most six)."""
    param, wire = "prompts", "PromptObjectsString"
    if isinstance(prompts, (str, bytes, CustomPrompt, PresetPrompt)) or not isinstance(prompts, Sequence):
        raise InvalidRequestError.for_field(
            param, "must be a list of CustomPrompt / PresetPrompt objects", wire=wire
        )
    objects = list(prompts)
    if not objects:
        raise InvalidRequestError.for_field(param, "must hold at least one prompt object", wire=wire)
    if strict and len(objects) > MAX_PROMPT_OBJECTS:
        raise InvalidRequestError.for_field(
            param, f"must hold at most {MAX_PROMPT_OBJECTS} prompt objects, got {len(objects)}", wire=wire
        )
    for index, item in enumerate(objects):
        if isinstance(item, CustomPrompt):
            text = item.prompt
        elif isinstance(item, PresetPrompt):
            text = item.preset
        else:
            raise InvalidRequestError.for_field(
                param,
                f"item {index} must be a CustomPrompt or a PresetPrompt, got {type(item).__name__}",
                wire=wire,
            )
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError.for_field(
                param, f"item {index} has an empty prompt or preset", wire=wire
            )
    return objects


class ProductPhotoshootResource(RenderResource):
    """Product photoshoots: recommendations for a product photo, preset keys, generation, downloads.

    Example::

        rec = await client.product_photoshoot.recommendations("headphones.jpg")
        job = await client.product_photoshoot.generate(
            rec.background_removed_image_asset_id,
            [PresetPrompt(preset="white_background"), CustomPrompt(prompt=rec.recommended_prompts[0])],
        )
        await job.result(timeout=900)
        await client.product_photoshoot.download(job.process_id, job.task_ids[0], "out/",
                                                 format=DownloadFormat.PDF)
    """

    async def recommendations(
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
    ) -> ProductRecommendations:
        """Upload a product photo; get its name and description, the id of the photo without its
        background, recommended prompts and preset keys (``POST …/ProductGeneration/Recommendations``).

        Args:
            image: the product photo (path, bytes, binary file object or async iterable of bytes).
            user_id: the user (default: the client's).
            on_upload_progress: called with (bytes sent, total or None).
            extra_form, extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The documented answer, typed (``$id`` metadata tolerated).

        Raises:
            InvalidRequestError: before sending (a bad image…).
            UnexpectedResponseError: the answer lacks ``backgroundRemovedImageAssetId``.
        """
        values = {"image": image, "user_id": self._client._user_id(user_id)}
        response = await self._send_form(
            self.feature.route("recommendations_route"),
            RECOMMENDATION_FIELDS,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            on_upload_progress,
        )
        return response.decode(decode_recommendations, "POST")

    async def preset_keys(
        self,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """The predefined prompt styles, grouped in categories (``GET Image/ProductGeneration/PresetKeys``).

        The query (assumed: not documented) carries ``applicationId``, and ``userId`` when a user is
        given or the client has a default one.

        Returns:
            The answer as plain JSON (its shape is not documented), ``$`` metadata removed.
        """
        client = self._client
        query = [("applicationId", client.application_id)]
        if user_id is not None or client.user_id is not None:
            query.append(("userId", client._user_id(user_id)))
        return await self._call(
            "GET",
            self.feature.route("preset_keys_route"),
            decode_clean,
            query=query,
            params={"applicationId": "application_id", "userId": "user_id"},
            options=RequestOptions(None, extra_query, extra_headers, timeout, retry),
        )

    async def generate(
        self,
        background_removed_image_asset_id: str | uuid.UUID,
        prompts: Sequence[PromptObject],
        *,
        user_id: str | uuid.UUID | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Start a photoshoot of a product (``POST Image/ProductGeneration/AdCreative``, multipart).

        Args:
            background_removed_image_asset_id: from :meth:`recommendations` (sent as
                ``backgroundRemovedImageAssetId``, an assumed name; override it with
                ``feature_overrides={"product_photoshoot": {"field_names": {...}}}``).
            prompts: 1 to 6 :class:`~adcreative_async.CustomPrompt` / :class:`~adcreative_async.PresetPrompt`
                objects, sent as the documented ``PromptObjectsString`` (a JSON array as a string).
            user_id: the user (default: the client's).
            extra_form, extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process (the docs describe 6 tasks for a full set of prompts).

        Raises:
            InvalidRequestError: before sending (no prompt, more than six, an empty one, a bad id).
            NoActiveNotificationChannelError: the application has no active notification channel.
        """
        objects = _prompt_objects(prompts, self._client.strict_validation)
        values = {
            "background_removed_image_asset_id": background_removed_image_asset_id,
            "prompts": encode_prompt_objects(objects),
            "user_id": self._client._user_id(user_id),
        }
        return await self._submit(
            self.feature.start_route,
            self.feature.start_fields,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            None,
        )

    async def download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        dest: str | os.PathLike[str],
        *,
        format: int | None = None,
        low_resolution: bool = False,
        on_progress: ProgressCallback | None = None,
        resume: bool | int = False,
        use_server_filename: bool = False,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> Path:
        """Download one task's result (``GET Image/ProductGeneration/Download``), atomically.

        As :meth:`RenderResource.download <adcreative_async.RenderResource.download>`, plus:

        Args:
            format: a :class:`~adcreative_async.DownloadFormat` (0 PNG, 1 JPEG, 2 PDF 1.6); not sent
                when None (the server's default). In a directory the file gets the extension of the
                type received (``.png``, ``.jpg``, ``.pdf``).
        """
        return await self._download(
            process_id,
            task_id,
            dest,
            fields={"format": format},
            low_resolution=low_resolution,
            on_progress=on_progress,
            resume=resume,
            use_server_filename=use_server_filename,
            user_id=user_id,
            extra_query=extra_query,
            extra_headers=extra_headers,
            timeout=timeout,
            retry=retry,
        )

    def stream_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        format: int | None = None,
        low_resolution: bool = False,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> DownloadStream:
        """One task's result as a stream (see the base ``stream_download``), in ``format`` if given.

        Not awaited: it sends nothing until the stream is entered or opened.
        """
        return self._stream_download(
            process_id,
            task_id,
            fields={"format": format},
            low_resolution=low_resolution,
            user_id=user_id,
            options=RequestOptions(None, extra_query, extra_headers, timeout, retry),
        )

    async def open_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        format: int | None = None,
        low_resolution: bool = False,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> DownloadStream:
        """One task's result as an open stream (see the base ``open_download``), in ``format`` if given."""
        stream = self.stream_download(
            process_id,
            task_id,
            format=format,
            low_resolution=low_resolution,
            user_id=user_id,
            extra_query=extra_query,
            extra_headers=extra_headers,
            timeout=timeout,
            retry=retry,
        )
        return await stream.open()
