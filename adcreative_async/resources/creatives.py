"""AdCreative generation and editing (seed 001: ``/api/v1/Image/Generation/…``, ``Image/Editing/…``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._fields import FieldKind, FieldSpec
from .._models import AD_CREATIVE_RENDER_KINDS, AD_CREATIVE_RENDER_TYPES
from ._base import RenderFeature, RenderResource, RequestOptions

if TYPE_CHECKING:
    from .._config import RetryPolicy, Timeout
    from .._files import ImageInput, ProgressCallback
    from .._jobs import RenderJob

__all__ = ["CREATIVES", "EDIT_FIELDS", "TASK_IDS_ENCODING", "CreativesResource"]

_K = FieldKind

_APPLICATION = FieldSpec("applicationId", "application_id", _K.GUID, required=True)
_USER = FieldSpec("userId", "user_id", _K.GUID, required=True)

#: AdCreativesByKind form fields, in the seed's order, with its rules.
GENERATE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("actionText", "action_text", _K.TEXT, required=True, max_length=100),
    _APPLICATION,
    FieldSpec("backgroundImage", "background_image", _K.IMAGE, required=True),
    FieldSpec("brandImage", "brand_image", _K.IMAGE, required=True),
    FieldSpec("color1Hex", "color1_hex", _K.COLOUR, required=True),
    FieldSpec("color2Hex", "color2_hex", _K.COLOUR, required=True),
    FieldSpec("mainHeadline", "main_headline", _K.TEXT, required=True, max_length=255),
    FieldSpec("punchline", "punchline", _K.TEXT, required=True, max_length=255),
    FieldSpec(
        "renderKind",
        "render_kind",
        _K.CHOICE,
        required=True,
        choices=AD_CREATIVE_RENDER_KINDS,
        choices_doc="RenderKind values AdCreativesByKind accepts",
    ),
    FieldSpec(
        "renderType",
        "render_type",
        _K.CHOICE,
        required=True,
        choices=AD_CREATIVE_RENDER_TYPES,
        choices_doc="RenderType values AdCreativesByKind accepts",
    ),
    _USER,
    FieldSpec("description", "description", _K.TEXT, max_length=1000),
    FieldSpec("buttonIconClass", "button_icon_class", _K.TEXT),
    FieldSpec("fontIdentifier", "font_identifier", _K.TEXT),
    FieldSpec("color3Hex", "color3_hex", _K.COLOUR),
)

#: assumed: the docs type ``taskIds`` as List<Guid> in a multipart form without saying how a list is
#: sent; the ASP.NET model binder reads one part per item, so the SDK sends one ``taskIds`` part per id.
TASK_IDS_ENCODING = "one multipart part per id"

#: AdCreativesByTasks form fields, in the seed's order, with its rules.
EDIT_FIELDS: tuple[FieldSpec, ...] = (
    _APPLICATION,
    _USER,
    FieldSpec("taskIds", "task_ids", _K.GUID_LIST, required=True),
    FieldSpec("mainHeadline", "main_headline", _K.TEXT, max_length=255),
    FieldSpec("punchline", "punchline", _K.TEXT, max_length=255),
    FieldSpec("actionText", "action_text", _K.TEXT, max_length=100),
    FieldSpec("description", "description", _K.TEXT, max_length=1000),
    FieldSpec("buttonIconClass", "button_icon_class", _K.TEXT),
    FieldSpec("fontIdentifier", "font_identifier", _K.TEXT),
    FieldSpec("color1Hex", "color1_hex", _K.COLOUR),
    FieldSpec("color2Hex", "color2_hex", _K.COLOUR),
    FieldSpec("color3Hex", "color3_hex", _K.COLOUR),
    FieldSpec("brandImage", "brand_image", _K.IMAGE),
    FieldSpec("backgroundImage", "background_image", _K.IMAGE),
)

EDIT_ROUTE = "Image/Editing/AdCreativesByTasks"

CREATIVES = RenderFeature(
    name="creatives",
    start_route="Image/Generation/AdCreativesByKind",
    start_fields=GENERATE_FIELDS,
    user_progress_route="Image/Generation/CheckUserProgress",
    application_progress_route="Image/Generation/CheckApplicationAllProgresses",
    download_route="Image/Generation/Download",
    process_id_query="imageRenderProcessId",
    message_type="ImageGenerationProgress",
    extra_routes=(("edit_route", EDIT_ROUTE),),
)


class CreativesResource(RenderResource):
    """Ad creatives: generate from brand inputs, edit tasks of a finished process, follow, download.

    The application needs an active notification channel before the API starts any generation
    (otherwise :class:`~adcreative_async.NoActiveNotificationChannelError`).

    Example::

        job = await client.creatives.generate(
            brand_image="logo.png", background_image="background.jpg",
            main_headline="Introducing Our Latest Product", punchline="Revolutionizing the industry.",
            action_text="Learn More", color1_hex="#fc2c2c", color2_hex="#002c2c",
            render_kind=RenderKind.POST, render_type=RenderType.SVG,
        )
    """

    async def generate(
        self,
        *,
        brand_image: ImageInput,
        background_image: ImageInput,
        main_headline: str,
        punchline: str,
        action_text: str,
        color1_hex: str,
        color2_hex: str,
        render_kind: int,
        render_type: int,
        color3_hex: str | None = None,
        description: str | None = None,
        button_icon_class: str | None = None,
        font_identifier: str | None = None,
        user_id: str | uuid.UUID | None = None,
        on_upload_progress: ProgressCallback | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Start generating ad creatives (``POST Image/Generation/AdCreativesByKind``).

        Args:
            brand_image: the brand logo (path, bytes, binary file object or async iterable of bytes).
            background_image: the background image.
            main_headline: at most 255 characters. punchline: at most 255. action_text: the
                call-to-action, at most 100. description: optional, at most 1000 (lengths counted in
                UTF-16 code units, as the server counts).
            color1_hex, color2_hex, color3_hex: hex colours such as ``"#FFFFFF"`` (color3 optional).
            render_kind: a :class:`~adcreative_async.RenderKind` AdCreativesByKind accepts.
            render_type: a :class:`~adcreative_async.RenderType` value AdCreativesByKind accepts.
            button_icon_class: a FontAwesome class (server default ``"fa-solid fa-angle-right"``).
            font_identifier: a custom font id.
            user_id: the user (default: the client's).
            on_upload_progress: called with (bytes sent, total or None).
            extra_form, extra_query, extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The job of the new render process (its tasks at state 1).

        Raises:
            InvalidRequestError: before sending, naming the parameter and the rule.
            NoActiveNotificationChannelError: the application has no active notification channel.
            BadRequestError: the server refused the input.
        """
        values = {
            "brand_image": brand_image,
            "background_image": background_image,
            "main_headline": main_headline,
            "punchline": punchline,
            "action_text": action_text,
            "color1_hex": color1_hex,
            "color2_hex": color2_hex,
            "color3_hex": color3_hex,
            "render_kind": render_kind,
            "render_type": render_type,
            "description": description,
            "button_icon_class": button_icon_class,
            "font_identifier": font_identifier,
            "user_id": self._client._user_id(user_id),
        }
        return await self._submit(
            self.feature.start_route,
            self.feature.start_fields,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            on_upload_progress,
        )

    async def edit(
        self,
        task_ids: Iterable[str | uuid.UUID],
        *,
        main_headline: str | None = None,
        punchline: str | None = None,
        action_text: str | None = None,
        description: str | None = None,
        button_icon_class: str | None = None,
        font_identifier: str | None = None,
        color1_hex: str | None = None,
        color2_hex: str | None = None,
        color3_hex: str | None = None,
        brand_image: ImageInput | None = None,
        background_image: ImageInput | None = None,
        user_id: str | uuid.UUID | None = None,
        on_upload_progress: ProgressCallback | None = None,
        extra_form: Mapping[str, object] | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> RenderJob:
        """Re-generate tasks of a completed process with changes (``POST Image/Editing/AdCreativesByTasks``).

        Only the fields you pass are sent. The process re-opens under the same id: its progress drops
        (10 tasks, 2 edited: 100 → 80) and then completes again.

        Args:
            task_ids: the tasks to edit (GUIDs of one completed process of the user); one id alone
                is accepted too.
            main_headline, punchline, action_text, description, button_icon_class, font_identifier,
            color1_hex, color2_hex, color3_hex, brand_image, background_image: the changes, with the
                same rules as :meth:`generate`.
            user_id: the user (default: the client's).

        Returns:
            The job of the re-opened process.
        """
        ids = [task_ids] if isinstance(task_ids, (str, uuid.UUID)) else list(task_ids)
        values = {
            "task_ids": ids,
            "main_headline": main_headline,
            "punchline": punchline,
            "action_text": action_text,
            "description": description,
            "button_icon_class": button_icon_class,
            "font_identifier": font_identifier,
            "color1_hex": color1_hex,
            "color2_hex": color2_hex,
            "color3_hex": color3_hex,
            "brand_image": brand_image,
            "background_image": background_image,
            "user_id": self._client._user_id(user_id),
        }
        return await self._submit(
            self.feature.route("edit_route"),
            EDIT_FIELDS,
            values,
            RequestOptions(extra_form, extra_query, extra_headers, timeout, retry),
            on_upload_progress,
            edited_task_ids=[str(t) for t in ids],
        )
