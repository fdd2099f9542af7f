"""The generic render-feature engine: one declarative description per feature, one resource class.

Every image feature of the API has the same life: a multipart start call creates a render process,
``CheckUserProgress`` / ``CheckApplicationAllProgresses`` report it, ``Download`` fetches each task's
result. A :class:`RenderFeature` (:mod:`._feature`) names a feature's routes, query names, fields and
message type, and lists what of it is assumed; a :class:`RenderResource` turns it into validated, typed
calls. A new
feature is a description and a few typed method signatures. Routes and names the docs leave open can
be overridden per client (:meth:`RenderFeature.with_overrides`).

:class:`Resource` is the base of every resource: request building, multipart forms and plain calls
(JSON bodies or queries, decoded answers), which the synchronous features (Scan My Website, Ad Text)
use directly.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._config import RetryPolicy
from .._downloads import DownloadStream, download_file
from .._errors import (
    AdCreativeError,
    APIError,
    BadRequestError,
    InvalidRequestError,
    NotFoundError,
    RenderNotReadyError,
)
from .._fields import FieldKind, FieldSpec, canonical_guid, validate, wire_text
from .._files import ProgressCallback, Upload, prepare_upload
from .._jobs import RenderJob, TaskUpdates
from .._listing import ListingReader, ProgressListing
from .._models import PROGRESS_DECODER, Progress, RenderState, decode_progress_list
from .._reconcile import Submission, is_ambiguous
from .._telemetry import traced_submit
from .._transport import FormItem, Request, Response, log_ids
from ._feature import (
    NOTHING_FOUND_PATTERNS,
    OVERRIDABLE_ROUTES,
    RenderFeature,
    RequestOptions,
    _pairs,
)

if TYPE_CHECKING:
    from .._client import AdCreativeClient
    from .._config import Timeout
    from .._polling import PollScheduler

__all__ = [
    "NOTHING_FOUND_PATTERNS",
    "OVERRIDABLE_ROUTES",
    "RenderFeature",
    "RenderResource",
    "RequestOptions",
    "Resource",
]

logger = logging.getLogger("adcreative_async.resources")

_T = TypeVar("_T")


class Resource:
    """Base of every resource on the client: request building, forms and plain JSON calls.

    Attributes:
        name: the resource's attribute name on the client (``"scan_my_website"``).
    """

    name: str = ""

    def __init__(self, client: AdCreativeClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

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
        json: bytes | None = None,
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
            json=json,
            content_type="application/json" if json is not None else None,
            headers=options.extra_headers,
            timeout=self._client._call_timeout(options.timeout),
            retry_policy=RetryPolicy.coerce(options.retry, self._client._transport.retry),
            params=params,
            on_upload_progress=on_upload_progress,
        )

    async def _call(
        self,
        method: str,
        route: str,
        decode: Callable[[bytes], _T],
        *,
        query: Sequence[tuple[str, str]] = (),
        json: bytes | None = None,
        params: Mapping[str, str] | None = None,
        options: RequestOptions,
    ) -> _T:
        """Send a call without a form and decode its answer (malformed: UnexpectedResponseError)."""
        client = self._client
        client._require_open()
        req = self._request(method, route, query=query, json=json, params=params, options=options)
        response = await client._transport.request(req)
        return response.decode(decode, method)

    async def _send_form(
        self,
        route: str,
        fields: Sequence[FieldSpec],
        values: Mapping[str, Any],
        options: RequestOptions,
        on_upload_progress: ProgressCallback | None,
    ) -> Response:
        """Validate ``values`` (the client's application id added) and POST them as a multipart form."""
        req = await self._form_request(route, fields, values, options, on_upload_progress)
        return await self._client._transport.request(req)

    async def _form_request(
        self,
        route: str,
        fields: Sequence[FieldSpec],
        values: Mapping[str, Any],
        options: RequestOptions,
        on_upload_progress: ProgressCallback | None,
    ) -> Request:
        """Validate ``values`` (the client's application id added) into a multipart POST, unsent."""
        client = self._client
        client._require_open()
        values = dict(values, application_id=client.application_id)
        form = await self._form(fields, values)
        return self._request(
            "POST",
            route,
            form=form,
            params={f.wire: f.param for f in fields},
            options=options,
            reserved=[f.wire for f in fields],
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
            inline=transfer.inline_small_files,
        )


class RenderResource(Resource):
    """Calls of one image feature: progress, downloads and rebuilt jobs; subclasses add start calls.

    Obtain it from the client (``client.creatives``, ``client.background_remover``, …).
    """

    def __init__(self, client: AdCreativeClient, feature: RenderFeature) -> None:
        super().__init__(client)
        self.feature = feature
        self.name = feature.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature={self.feature.name!r})"

    @property
    def _scheduler(self) -> PollScheduler:
        """The client's poll scheduler (the client must be open)."""
        return self._client._poll_scheduler()

    @traced_submit
    async def _submit(
        self,
        route: str,
        fields: Sequence[FieldSpec],
        values: Mapping[str, Any],
        options: RequestOptions,
        on_upload_progress: ProgressCallback | None,
        *,
        edited_task_ids: Sequence[str] | None = None,
    ) -> RenderJob:
        """Validate, send a start or edit call, and wrap its progress answer in a job.

        A call that may have reached the server although it failed is never sent again: the client
        reconciles (see :mod:`adcreative_async._reconcile`), adopting the process it made or raising
        RenderMayExistError.
        """
        client = self._client
        ledger = client._ledger
        user = str(values.get("user_id", ""))
        fresh_user = edited_task_ids is None and client.unique_user_per_submission
        if fresh_user:
            user = str(uuid.uuid4())  # this start call's own identity: nothing else can be confused
            values = dict(values, user_id=user)
        req = await self._form_request(route, fields, values, options, on_upload_progress)  # validates
        if not client.reconcile_submissions:
            response = await client._transport.request(req)
            progress = response.decode(PROGRESS_DECODER.decode, "POST")
        elif edited_task_ids is not None:
            call = ledger.admit(self, user, None, edited_task_ids)
            progress = await self._send_paid(req, call)
        else:
            if fresh_user:
                ledger.fresh_user(self.feature.name, user)
            else:
                await ledger.before_start(self, user)
            call = ledger.admit(self, user, _matcher(self.feature, values))
            progress = await self._send_paid(req, call)
        user_id = progress.user_id or user
        pid = progress.image_render_process_id
        if logger.isEnabledFor(logging.DEBUG):  # its fields (a dict) are made only for a record
            logger.debug(
                "%s: %s call answered: process %s, %d task(s)",
                self.feature.name,
                "start" if edited_task_ids is None else "edit",
                pid,
                len(progress.tasks),
                extra=log_ids(pid),
            )
        return RenderJob(
            feature=self.feature.name,
            process_id=pid,
            user_id=user_id,
            progress=progress,
            resource=self,
        )._mark_submitted(client.clock.monotonic())

    async def _send_paid(self, req: Request, call: Submission) -> Progress:
        """Send a start or edit call admitted by the client's ledger, and record how it ended.

        A failure that may have reached the server is reconciled: the process it provably made, or
        RenderMayExistError. Any other failure (including one obtaining the access token: the call was
        not sent) is raised as is.
        """
        ledger = self._client._ledger
        try:
            response = await self._client._transport.request(req)
            progress = response.decode(PROGRESS_DECODER.decode, "POST")
        except AdCreativeError as exc:
            ledger.failed(call, exc)
            if not is_ambiguous(exc):
                raise
            failure = exc
        except BaseException:
            ledger.failed(call, None)  # cancelled: it may have been sent; its render is no one's to adopt
            raise
        else:
            ledger.answered(call, progress)
            return progress
        if call.matches is None:
            return await ledger.reconcile_edit(self, call.user_id, call.edited_task_ids, failure)
        return await ledger.settle(call)

    # ---------------------------------------------------------------------------------- calls

    async def user_progress(
        self,
        user_id: str | uuid.UUID | None = None,
        process_id: str | uuid.UUID | None = None,
        *,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> list[Progress]:
        """The user's render processes of this feature (``CheckUserProgress``).

        Args:
            user_id: the user (default: the client's ``user_id``).
            process_id: only this process. The answer is also filtered on the client, so a server
                that ignores the filter (e.g. under an assumed query name) still gives only this
                process; and where the query name is assumed, a 400 to the filtered call is followed
                by one unfiltered call.

        Returns:
            The progress objects; an empty list for the documented "nothing found" answer.
        """
        uid = self._client._user_id(user_id)
        options = RequestOptions(None, extra_query, extra_headers, timeout, retry)
        if process_id is None:
            listing = await self._progress_list(self._user_progress_request(uid, None, options))
            self._client._ledger.listed(self.feature.name, uid, [p.image_render_process_id for p in listing])
            return listing
        pid = canonical_guid(process_id, "process_id")
        try:
            items = await self._progress_list(self._user_progress_request(uid, pid, options))
        except BadRequestError as exc:
            if not self.feature.is_assumed("process_id_query"):
                raise
            logger.warning(
                "%s: CheckUserProgress refused the assumed filter %s (%s); listing unfiltered instead "
                "(override it with feature_overrides={%r: {'process_id_query': ...}})",
                self.feature.name,
                self.feature.process_id_query,
                exc.status,
                self.feature.name,
            )
            items = await self._progress_list(self._user_progress_request(uid, None, options))
        return [p for p in items if p.image_render_process_id.lower() == pid]

    def _user_progress_request(self, uid: str, pid: str | None, options: RequestOptions) -> Request:
        query = [("userId", uid)]
        if pid is not None:
            query.append((self.feature.process_id_query, pid))
        req = self._request(
            "GET",
            self.feature.user_progress_route,
            query=query,
            params={"userId": "user_id", self.feature.process_id_query: "process_id"},
            options=options,
        )
        if pid is not None:
            req.log_ids = log_ids(pid)
        return req

    async def application_progress(
        self,
        *,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
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
            options=RequestOptions(None, extra_query, extra_headers, timeout, retry),
        )
        return await self._progress_list(req)

    async def _listing(
        self, user_id: str | None, wanted: Container[str] = (), users: Collection[str] = ()
    ) -> ProgressListing:
        """For the poll scheduler: the user's listing (``user_id``), or the application's (None), read
        as a stream (see :class:`~adcreative_async._listing.ListingReader`): only the elements of
        ``wanted`` (lower-cased process ids) are kept, and the elements of ``users`` counted; a user's
        listing is recorded for reconciliation as :meth:`user_progress` records it, piece by piece."""
        options = RequestOptions(None, None, None, None, None)
        on_ids: Callable[[list[str]], object] | None = None
        if user_id is None:
            req = self._request(
                "GET",
                self.feature.application_progress_route,
                query=[("applicationId", self._client.application_id)],
                params={"applicationId": "application_id"},
                options=options,
            )
        else:
            uid = self._client._user_id(user_id)
            req = self._user_progress_request(uid, None, options)
            ledger, feature = self._client._ledger, self.feature.name
            on_ids = functools.partial(ledger.listed, feature, uid, complete=False)
        reader = ListingReader(wanted, users=users, on_ids=on_ids)
        found = await self._progress_response(req, reader.feed) is not None
        if user_id is not None:  # read to its end ("nothing found" too): a baseline
            self._client._ledger.listed(self.feature.name, uid, ())
        return reader.listing() if found else ProgressListing.of([])

    async def _progress_list(self, req: Request) -> list[Progress]:
        response = await self._progress_response(req)
        return [] if response is None else response.decode(decode_progress_list, "GET")

    async def _progress_response(
        self, req: Request, sink: Callable[[bytes], object] | None = None
    ) -> Response | None:
        """A progress call's response (its body fed to ``sink`` if given: see
        :meth:`~adcreative_async._transport.Transport.request`), or None for the documented "nothing
        found" answer."""
        client = self._client
        client._require_open()
        req.is_answer = self.feature.is_nothing_found  # "nothing found" is an empty list, not an error
        error: APIError | None = None
        try:
            response = await client._transport.request(req, sink)
        except APIError as exc:
            if not self.feature.is_nothing_found(exc):
                raise
            error = exc
        if error is not None:
            logger.debug("%s %s: nothing found (the documented empty answer)", req.method, req.route)
            return None
        return response

    async def process_progress(
        self,
        process_id: str | uuid.UUID,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> Progress:
        """One process's progress (a filtered ``CheckUserProgress``; the per-call options as for
        :meth:`user_progress`).

        Raises:
            NotFoundError: when the server lists no such process for the user.
        """
        pid = canonical_guid(process_id, "process_id")
        listing = await self.user_progress(
            user_id, pid, extra_query=extra_query, extra_headers=extra_headers, timeout=timeout, retry=retry
        )
        for progress in listing:
            if progress.image_render_process_id.lower() == pid:
                return progress
        raise NotFoundError(
            f"process {pid} of feature {self.feature.name} was not found for the user",
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
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
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
            user_id: the process's user (default: the client's ``user_id``), read only after a 404:
                one progress request then tells a task that is not finished (RenderNotReadyError)
                from unknown ids (NotFoundError).

        Returns:
            The path written.

        Raises:
            RenderNotReadyError: the task has no result yet (or failed); ``.state`` says where it is.
            NotFoundError: no result for these ids.
            IncompleteDownloadError: the body ended early (after any resumes allowed).

        **Every download request increments the server's download counter** (seed 001): downloading
        again, or resuming, is safe but counts each time.
        """
        return await self._download(
            process_id,
            task_id,
            dest,
            fields=None,
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

    async def _download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        dest: str | os.PathLike[str],
        *,
        fields: Mapping[str, object] | None,
        low_resolution: bool,
        on_progress: ProgressCallback | None,
        resume: bool | int,
        use_server_filename: bool,
        user_id: str | uuid.UUID | None,
        extra_query: Mapping[str, object] | None,
        extra_headers: Mapping[str, str] | None,
        timeout: Timeout | float | None,
        retry: RetryPolicy | int | None,
        name_for: Callable[[str], str] | None = None,
        temp_stem: str | None = None,
    ) -> Path:
        """:meth:`download` with values for the feature's ``download_fields`` (by Python name);
        ``name_for``: the file's path in the directory ``dest`` from its extension (see
        :func:`~adcreative_async._downloads.download_file`); ``temp_stem``: the temporary file's
        stem instead of the task id (a plain name)."""
        pid = canonical_guid(process_id, "process_id")
        tid = canonical_guid(task_id, "task_id")
        options = RequestOptions(None, extra_query, extra_headers, timeout, retry)
        req = self._download_request(pid, tid, low_resolution, options, fields)
        telemetry = self._client._telemetry
        try:
            with telemetry.download(self.feature.name, pid, tid) if telemetry else nullcontext():
                return await download_file(
                    self._client._transport,
                    req,
                    dest,
                    default_stem=temp_stem or tid,
                    use_server_filename=use_server_filename,
                    resume=resume,
                    on_progress=on_progress,
                    name_for=name_for,
                )
        except NotFoundError as exc:
            explained = await self._explain_not_found(pid, tid, user_id, exc)
            if explained is None:
                raise
            raise explained from exc

    async def _explain_not_found(
        self, pid: str, tid: str, user_id: str | uuid.UUID | None, error: NotFoundError
    ) -> RenderNotReadyError | None:
        """After a download's 404: RenderNotReadyError when the process's progress (one request, for
        ``user_id`` or the client's user) shows the task unfinished or failed; None to keep the 404
        (no user to ask for, the process not listed, the task succeeded, or the check failed)."""
        if user_id is None and self._client.user_id is None:
            return None
        try:
            listing = await self.user_progress(user_id, pid)
        except AdCreativeError as exc:
            logger.debug("no progress check after the 404 of task %s: %s", tid, exc)
            return None
        progress = next((p for p in listing if p.image_render_process_id.lower() == pid), None)
        if progress is None:
            return None
        state = next((RenderState(s) for t, s in progress.tasks.items() if t.lower() == tid), None)
        if state == RenderState.SUCCEEDED or (state is None and progress.is_complete):
            return None
        where = f"{self.feature.name} task {tid} of process {pid}"
        if state is not None and state.is_terminal:
            ended = "was cancelled" if state == RenderState.CANCELLED else "failed"
            message = f"{where} {ended}: it has no result"
        else:
            now = "not listed yet" if state is None else str(state).lower().replace("_", " ")
            message = (
                f"{where} has no result yet: it is {now}, the process at {progress.progress}% "
                "(wait for it, e.g. job.wait_until_complete(), then download)"
            )
        return RenderNotReadyError(
            message, process_id=pid, task_id=tid, state=state, progress=progress, cause=error
        )

    def stream_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        low_resolution: bool = False,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> DownloadStream:
        """One task's result as a stream, for piping elsewhere than a file; use with ``async with``.

        Example::

            async with client.creatives.stream_download(process_id, task_id) as stream:
                total = stream.content_length  # also stream.content_type, stream.filename (made safe)
                async for chunk in stream.iter_bytes():
                    await sink.write(chunk)

        Not awaited: it checks the ids and sends nothing; the request goes out when the block is
        entered (or with :meth:`DownloadStream.open`), and counts as a
        download on the server (seed 001). A ``timeout`` total covers the whole block, your
        processing of the chunks included. Entering raises RenderNotReadyError for a task that has no
        result yet (see :meth:`download`, and its ``user_id``). Where a block cannot be held open (a
        web response), :meth:`open_download` returns the stream already open. See
        :class:`~adcreative_async.DownloadStream`.
        """
        return self._stream_download(
            process_id,
            task_id,
            fields=None,
            low_resolution=low_resolution,
            user_id=user_id,
            options=RequestOptions(None, extra_query, extra_headers, timeout, retry),
        )

    async def open_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        low_resolution: bool = False,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> DownloadStream:
        """One task's result as an open stream: the request is sent, its status checked and its headers
        readable before the body is read; close it with ``await stream.aclose()``.

        For a web handler that returns a streamed response: errors (RenderNotReadyError,
        NotFoundError…) are raised here, before any byte of the response is sent, and
        ``content_type`` / ``content_length`` are known. With Starlette or FastAPI,
        :func:`adcreative_async.integrations.starlette.streaming_response` wraps it and closes it.

        Example::

            stream = await client.background_remover.open_download(process_id, task_id)
            try:
                print(stream.content_type, stream.content_length)
                async for chunk in stream.iter_bytes():
                    await sink.write(chunk)
            finally:
                await stream.aclose()

        Arguments as :meth:`stream_download`.
        """
        stream = self.stream_download(
            process_id,
            task_id,
            low_resolution=low_resolution,
            user_id=user_id,
            extra_query=extra_query,
            extra_headers=extra_headers,
            timeout=timeout,
            retry=retry,
        )
        return await stream.open()

    def _stream_download(
        self,
        process_id: str | uuid.UUID,
        task_id: str | uuid.UUID,
        *,
        fields: Mapping[str, object] | None,
        low_resolution: bool,
        user_id: str | uuid.UUID | None,
        options: RequestOptions,
    ) -> DownloadStream:
        """:meth:`stream_download` with values for the feature's ``download_fields``."""
        pid = canonical_guid(process_id, "process_id")
        tid = canonical_guid(task_id, "task_id")
        if user_id is not None:
            user_id = canonical_guid(user_id, "user_id")
        req = self._download_request(pid, tid, low_resolution, options, fields)

        async def explain(error: NotFoundError) -> AdCreativeError | None:
            return await self._explain_not_found(pid, tid, user_id, error)

        return DownloadStream(
            self._client._transport,
            req,
            process_id=pid,
            task_id=tid,
            explain_not_found=explain,
            feature=self.feature.name,
        )

    def _download_request(
        self,
        pid: str,
        tid: str,
        low_resolution: bool,
        options: RequestOptions,
        fields: Mapping[str, object] | None = None,
    ) -> Request:
        client = self._client
        client._require_open()
        feature = self.feature
        extra = validate(feature.download_fields, fields or {}, strict=client.strict_validation)
        req = self._request(
            "GET",
            feature.download_route,
            query=[
                ("applicationId", client.application_id),
                ("taskId", tid),
                (feature.process_id_query, pid),
                ("lowResolution", wire_text(bool(low_resolution))),
                *((wire, wire_text(value)) for wire, value in extra.items()),
            ],
            params={
                "applicationId": "application_id",
                "taskId": "task_id",
                feature.process_id_query: "process_id",
                "lowResolution": "low_resolution",
                **feature.params(feature.download_fields),
            },
            options=options,
        )
        req.log_ids = log_ids(pid, tid)
        return req

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
        :meth:`RenderJob.wait_until_complete`. Not awaited: it returns the async iterator and sends
        nothing until you iterate it (``async for update in ...``).
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
        """A job handle rebuilt from ids (after a restart, in another worker), bound to this client.

        Not awaited, unlike the calls around it: it only builds the handle and sends nothing (the
        methods of a resource that send a request are all coroutines). ``await job.refresh()`` asks
        the server for its progress; waiting or downloading needs no refresh first.
        """
        return RenderJob(
            feature=self.feature.name,
            process_id=canonical_guid(process_id, "process_id"),
            user_id=self._client._user_id(user_id),
            task_ids=list(task_ids),
            resource=self,
        )


def _matcher(feature: RenderFeature, values: Mapping[str, Any]) -> Callable[[Progress], bool]:
    """Whether a listed process could be the one a start call with ``values`` made (its render kind
    and type, and the feature's fixed render type, when the listing says)."""
    kind = values.get("render_kind")
    render_type = values.get("render_type", feature.render_type)

    def matches(progress: Progress) -> bool:
        if kind is not None and progress.render_kind is not None and progress.render_kind != int(kind):
            return False
        return render_type is None or progress.render_type is None or progress.render_type == int(render_type)

    return matches
