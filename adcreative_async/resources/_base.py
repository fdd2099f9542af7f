"""The generic render-feature engine: one declarative description per feature, one resource class.

Every image feature of the API has the same life: a multipart start call creates a render process,
``CheckUserProgress`` / ``CheckApplicationAllProgresses`` report it, ``Download`` fetches each task's
result. A :class:`RenderFeature` names a feature's routes, query names, fields and message type; a
:class:`RenderResource` turns it into validated, typed calls. A new feature is a description and a few
typed method signatures.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._downloads import DownloadStream, download_file
from .._errors import APIError, InvalidRequestError, NotFoundError
from .._fields import FieldKind, FieldSpec, canonical_guid, validate, wire_text
from .._files import ProgressCallback, Upload, prepare_upload
from .._jobs import RenderJob, TaskUpdates
from .._models import PROGRESS_DECODER, Progress, decode_progress_list
from .._transport import FormItem, Request

if TYPE_CHECKING:
    from .._client import AdCreativeClient
    from .._config import Timeout
    from .._polling import PollScheduler

__all__ = ["NOTHING_FOUND_PATTERNS", "RenderFeature", "RenderResource", "RequestOptions"]

#: The documented "nothing found" answers of the progress endpoints (seed 001: 400 "ImageRenderProcess
#: (…) was not found for the User", "No running ImageGenerationProgress found for the ApplicationId";
#: seed 000: 404 "No running or incomplete … was not found", "Not found error occurred while checking").
#: A list call that gets one of these returns an empty list; no other error is masked.
NOTHING_FOUND_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"was not found for the User", re.IGNORECASE),
    re.compile(r"\bNo running\b.*\bfound\b", re.IGNORECASE),
    re.compile(r"Not found error occurred while checking", re.IGNORECASE),
)
#: Messages that mark a validation problem, which is never read as "nothing found".
_VALIDATION_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"field is required", re.IGNORECASE),
    re.compile(r"is not valid", re.IGNORECASE),
)


@dataclass(frozen=True)
class RenderFeature:
    """The declarative description of one image feature.

    Attributes:
        name: the resource name on the client (``"creatives"``) and in job JSON.
        start_route: the start call's route under ``/api/v1/``.
        start_fields: the start call's documented form fields, in the docs' order.
        user_progress_route, application_progress_route, download_route: the other routes.
        process_id_query: the query name of the process id on the progress filter and the download
            (``imageRenderProcessId``; Background Remover: ``imageBackgroundRemoverProcessId``).
        message_type: the ``messageType`` of the feature's progress objects.
        render_type: the ``renderType`` its progress objects carry, when fixed (Background Remover: 8).
        nothing_found_statuses: statuses that may carry a documented "nothing found" answer.
    """

    name: str
    start_route: str
    start_fields: tuple[FieldSpec, ...]
    user_progress_route: str
    application_progress_route: str
    download_route: str
    process_id_query: str
    message_type: str
    render_type: int | None = None
    nothing_found_statuses: frozenset[int] = frozenset({400, 404})

    def is_nothing_found(self, error: APIError) -> bool:
        """Whether ``error`` is the documented "no process found" answer of a progress call."""
        if error.status not in self.nothing_found_statuses:
            return False
        messages = error.messages()
        if any(p.search(m) for p in _VALIDATION_PATTERNS for m in messages):
            return False
        return any(p.search(m) for p in NOTHING_FOUND_PATTERNS for m in messages)

    def params(self, fields: Iterable[FieldSpec] | None = None) -> dict[str, str]:
        """Wire name -> Python parameter, for error messages."""
        return {f.wire: f.param for f in (fields if fields is not None else self.start_fields)}


@dataclass(frozen=True)
class RequestOptions:
    """Per-call escape hatches, because the docs are incomplete.

    Attributes:
        extra_form: more multipart fields (a list value sends one part per item).
        extra_query: more query parameters.
        extra_headers: more headers (they cannot replace the credentials' headers' names silently:
            they are sent as given, last).
        timeout: this call's timeout: a :class:`~adcreative_async.Timeout`, or a number of seconds
            for the whole call.
    """

    extra_form: Mapping[str, object] | None = None
    extra_query: Mapping[str, object] | None = None
    extra_headers: Mapping[str, str] | None = None
    timeout: Timeout | float | None = None


def _pairs(values: Mapping[str, object] | None, where: str, reserved: Iterable[str]) -> list[tuple[str, str]]:
    """Serialise an escape-hatch mapping; a list value becomes repeated pairs."""
    if not values:
        return []
    taken = {r.lower() for r in reserved}
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        if name.lower() in taken:
            raise InvalidRequestError.for_field(
                where, f"{name!r} is a documented field of this call: pass it as its parameter"
            )
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend((name, wire_text(v)) for v in items if v is not None)
    return out


class RenderResource:
    """Calls of one image feature: progress, downloads and rebuilt jobs; subclasses add start calls.

    Obtain it from the client (``client.creatives``, ``client.background_remover``).
    """

    def __init__(self, client: AdCreativeClient, feature: RenderFeature) -> None:
        self._client = client
        self.feature = feature

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature={self.feature.name!r})"

    @property
    def _scheduler(self) -> PollScheduler:
        """The client's poll scheduler (the client must be open)."""
        return self._client._poll_scheduler()

    # ------------------------------------------------------------------------------ building

    def _request(
        self,
        method: str,
        route: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        form: Sequence[FormItem] | None = None,
        params: Mapping[str, str] | None = None,
        options: RequestOptions,
        reserved: Iterable[str] = (),
        on_upload_progress: ProgressCallback | None = None,
    ) -> Request:
        reserved = list(reserved)
        query = list(query) + _pairs(options.extra_query, "extra_query", [q for q, _ in query])
        if form is not None:
            form = list(form) + list(_pairs(options.extra_form, "extra_form", reserved))
        elif options.extra_form:
            raise InvalidRequestError.for_field("extra_form", "this call sends no form")
        return Request(
            method,
            route,
            query=query,
            form=form,
            headers=options.extra_headers,
            timeout=self._client._call_timeout(options.timeout),
            params=params,
            on_upload_progress=on_upload_progress,
        )

    async def _form(self, fields: Sequence[FieldSpec], values: Mapping[str, Any]) -> list[FormItem]:
        """Validate ``values`` against ``fields`` and build the multipart items in the docs' order."""
        client = self._client
        wire_values = validate(fields, values, strict=client.strict_validation)
        items: list[FormItem] = []
        for spec in fields:
            if spec.wire not in wire_values:
                continue
            value = wire_values[spec.wire]
            if spec.kind is FieldKind.IMAGE:
                items.append(await self._upload(spec, value))
            elif spec.kind is FieldKind.GUID_LIST:
                assert isinstance(value, list)
                items.extend((spec.wire, guid) for guid in value)  # see TASK_IDS_ENCODING
            else:
                items.append((spec.wire, wire_text(value)))
        return items

    async def _upload(self, spec: FieldSpec, value: object) -> Upload:
        client = self._client
        transfer = client.transfer
        return await prepare_upload(
            value,
            param=spec.param,
            wire=spec.wire,
            strict=client.strict_validation,
            limiter=client._transport.limiter,
            chunk_size=transfer.chunk_size,
            max_size=transfer.max_upload_size,
        )

    async def _submit(
        self,
        route: str,
        fields: Sequence[FieldSpec],
        values: Mapping[str, Any],
        options: RequestOptions,
        on_upload_progress: ProgressCallback | None,
    ) -> RenderJob:
        """Validate, send a start or edit call, and wrap its progress answer in a job."""
        client = self._client
        client._require_open()
        values = dict(values, application_id=client.application_id)
        form = await self._form(fields, values)
        req = self._request(
            "POST",
            route,
            form=form,
            params={f.wire: f.param for f in fields},
            options=options,
            reserved=[f.wire for f in fields],
            on_upload_progress=on_upload_progress,
        )
        response = await client._transport.request(req)
        progress = response.decode(PROGRESS_DECODER.decode, "POST")
        user_id = progress.user_id or str(values.get("user_id", ""))
        return RenderJob(
            feature=self.feature.name,
            process_id=progress.image_render_process_id,
            user_id=user_id,
            progress=progress,
            resource=self,
        )._mark_submitted(client.clock.monotonic())

    # ---------------------------------------------------------------------------------- calls

    async def user_progress(
        self,
        user_id: str | uuid.UUID | None = None,
        process_id: str | uuid.UUID | None = None,
        *,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
    ) -> list[Progress]:
        """The user's render processes of this feature (``CheckUserProgress``).

        Args:
            user_id: the user (default: the client's ``user_id``).
            process_id: only this process.

        Returns:
            The progress objects; an empty list for the documented "nothing found" answer.
        """
        uid = self._client._user_id(user_id)
        query = [("userId", uid)]
        if process_id is not None:
            query.append((self.feature.process_id_query, canonical_guid(process_id, "process_id")))
        req = self._request(
            "GET",
            self.feature.user_progress_route,
            query=query,
            params={"userId": "user_id", self.feature.process_id_query: "process_id"},
            options=RequestOptions(None, extra_query, extra_headers, timeout),
        )
        return await self._progress_list(req)

    async def application_progress(
        self,
        *,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
    ) -> list[Progress]:
        """Every render process of this feature in the application (``CheckApplicationAllProgresses``).

        Returns:
            The progress objects; an empty list for the documented "nothing found" answer.
        """
        req = self._request(
            "GET",
            self.feature.application_progress_route,
            query=[("applicationId", self._client.application_id)],
            params={"applicationId": "application_id"},
            options=RequestOptions(None, extra_query, extra_headers, timeout),
        )
        return await self._progress_list(req)

    async def _progress_list(self, req: Request) -> list[Progress]:
        client = self._client
        client._require_open()
        error: APIError | None = None
        try:
            response = await client._transport.request(req)
        except APIError as exc:
            if not self.feature.is_nothing_found(exc):
                raise
            error = exc
        if error is not None:
            return []
        return response.decode(decode_progress_list, "GET")

    async def process_progress(
        self, process_id: str | uuid.UUID, *, user_id: str | uuid.UUID | None = None
    ) -> Progress:
        """One process's progress (a filtered ``CheckUserProgress``).

        Raises:
            NotFoundError: when the server lists no such process for the user.
        """
        pid = canonical_guid(process_id, "process_id")
        for progress in await self.user_progress(user_id, pid):
            if progress.image_render_process_id.lower() == pid:
                return progress
        raise NotFoundError(
            f"process {pid} of feature {self.feature.name} was not found for user "
            f"{self._client._user_id(user_id)}",
            status=404,
            path=self.feature.user_progress_route,
        )

    async def download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        dest: str | os.PathLike[str],
        *,
        low_resolution: bool = False,
        on_progress: ProgressCallback | None = None,
        resume: bool | int = False,
        use_server_filename: bool = False,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
    ) -> Path:
        """Download one task's result into ``dest``, atomically, in constant memory.

        The body goes to a temporary file in the destination directory, renamed into place only when
        all of it arrived (its length matches ``Content-Length``, or without one, the PNG/JPEG end
        marker is there); a failed or cancelled download leaves nothing behind.

        Args:
            process_id, task_id: the task (GUIDs).
            dest: a file path, or a directory (existing, or given with a trailing separator): then the
                file is named after the task id with the extension of the detected type.
            low_resolution: ask for the low-resolution rendition (``lowResolution=true``).
            on_progress: called with (bytes received, total or None); back to 0 if a resumed download
                has to start again.
            resume: continue a body the connection cut (``True``: up to 3 times; a number: up to that
                many) with ``Range: bytes=<received>-``, if the server answers 206; a server that
                answers 200 is read again from the start. Off by default.
            use_server_filename: in a directory, name the file after the server's
                ``Content-Disposition`` file name, made safe (its base name only, no control or
                reserved characters, no leading dots) and given the extension of the detected type;
                the task id's name when the server sends none.

        Returns:
            The path written.

        Raises:
            NotFoundError: the task has no result (not succeeded, or unknown ids).
            IncompleteDownloadError: the body ended early (after any resumes allowed).

        **Every download request increments the server's download counter** (seed 001): downloading
        again, or resuming, is safe but counts each time.
        """
        pid = canonical_guid(process_id, "process_id")
        tid = canonical_guid(task_id, "task_id")
        req = self._download_request(pid, tid, low_resolution, extra_query, extra_headers, timeout)
        return await download_file(
            self._client._transport,
            req,
            dest,
            default_stem=tid,
            use_server_filename=use_server_filename,
            resume=resume,
            on_progress=on_progress,
        )

    def stream_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        low_resolution: bool = False,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
    ) -> DownloadStream:
        """One task's result as a stream, for piping elsewhere than a file; use with ``async with``.

        Example::

            async with client.creatives.stream_download(process_id, task_id) as stream:
                total = stream.content_length  # also stream.content_type, stream.filename (made safe)
                async for chunk in stream.iter_bytes():
                    await sink.write(chunk)

        The ids are checked now; the request goes out when the block is entered, and counts as a
        download on the server (seed 001). A ``timeout`` total covers the whole block, your
        processing of the chunks included. See :class:`~adcreative_async.DownloadStream`.
        """
        pid = canonical_guid(process_id, "process_id")
        tid = canonical_guid(task_id, "task_id")
        req = self._download_request(pid, tid, low_resolution, extra_query, extra_headers, timeout)
        return DownloadStream(self._client._transport, req, process_id=pid, task_id=tid)

    def _download_request(
        self,
        pid: str,
        tid: str,
        low_resolution: bool,
        extra_query: Mapping[str, object] | None,
        extra_headers: Mapping[str, str] | None,
        timeout: Timeout | float | None,
    ) -> Request:
        client = self._client
        client._require_open()
        return self._request(
            "GET",
            self.feature.download_route,
            query=[
                ("applicationId", client.application_id),
                ("taskId", tid),
                (self.feature.process_id_query, pid),
                ("lowResolution", wire_text(bool(low_resolution))),
            ],
            params={
                "applicationId": "application_id",
                "taskId": "task_id",
                self.feature.process_id_query: "process_id",
                "lowResolution": "low_resolution",
            },
            options=RequestOptions(None, extra_query, extra_headers, timeout),
        )

    def wait_until_complete(
        self,
        process_id: str | uuid.UUID,
        *,
        user_id: str | uuid.UUID | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> TaskUpdates:
        """Follow a process known only by its ids (after a restart, in another worker).

        The same as ``self.job(process_id, user_id=...).wait_until_complete(...)``; see
        :meth:`RenderJob.wait_until_complete`.
        """
        job = self.job(process_id, user_id=user_id)
        return job.wait_until_complete(timeout=timeout, raise_on_failure=raise_on_failure)

    def job(
        self,
        process_id: str | uuid.UUID,
        *,
        user_id: str | uuid.UUID | None = None,
        task_ids: Sequence[str] = (),
    ) -> RenderJob:
        """A job handle rebuilt from ids (after a restart, in another worker), bound to this client."""
        return RenderJob(
            feature=self.feature.name,
            process_id=canonical_guid(process_id, "process_id"),
            user_id=self._client._user_id(user_id),
            task_ids=list(task_ids),
            resource=self,
        )
