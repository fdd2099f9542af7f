"""The HTTP side of the emulator: dispatch, authentication and the handlers (the endpoint table is
``_endpoints``, request reading ``_bodies``).

Every documented route is one :class:`Endpoint` row; one catch-all route dispatches to it (paths match
case-insensitively, as ASP.NET routing does), counts the request, applies injected failures and turns
a raised :class:`Problem` into its response. Handlers follow the docs' order of checks: authentication
(401), input validation (400), the form's or query's applicationId against the token's (401), the
notification channel (404), then the feature itself.

Like Kestrel, the emulator answers ``Expect: 100-continue`` lazily: ``100 Continue`` goes out only when a
handler starts reading the body, so that a 401 (or any answer given before the body is needed) reaches
the client before it sends its upload; such an answer closes the connection, whose body never came.

Testing-only routes live under ``/_emulator/`` and need no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
from types import MappingProxyType
from typing import Any

import msgspec
from aiohttp import web

from . import _features as features
from . import _responses as responses
from ._bodies import (
    _CONTINUE,
    _URN_PREFIX,
    UNSATISFIABLE,
    _expects_continue,
    _PendingContinue,
    byte_range,
    continue_body,
    deferred_expect,
    json_inputs,
    query_inputs,
    read_form,
)
from ._endpoints import (
    ENDPOINTS,
    ENDPOINTS_BY_METHOD,
    ENDPOINTS_BY_ROUTE,
    FORM,
    GENERATION_CHECK_APPLICATION_ROUTE,
    GENERATION_CHECK_USER_ROUTE,
    JSON,
    MAX_REQUEST_BODY,
    QUERY,
    RENDER_HANDLERS,
    Endpoint,
    Handler,
    _feature,
    _process_parameter,
    queue_failure,
)
from ._images import (
    IMAGE_MEDIA_TYPES,
    Segment,
    color_for,
    iter_segments,
    jpeg_bytes,
    padded_png,
    pdf_bytes,
    png_bytes,
    segments_size,
    stamp_png,
)
from ._responses import Msg, Problem
from ._state import (
    FEATURE_BACKGROUND_REMOVAL,
    FEATURE_GENERATION,
    FEATURE_PRODUCT_GENERATION,
    AdText,
    Application,
    Asset,
    ReceivedCall,
    RequestInputs,
    State,
    TaskState,
    UploadInfo,
    iso_utc,
)
from ._validation import (
    Inputs,
    parse_guid,
    validate,
)


class EmulatorApp:
    """Builds the aiohttp application over a :class:`State`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.options = state.options
        self.handlers: dict[str, Handler] = {
            "generate_token": self.generate_token,
            "refresh_token": self.refresh_token,
            "start_generation": self.start_generation,
            "edit_generation": self.edit_generation,
            "start_background_removal": self.start_background_removal,
            "check_user_progress": self.check_user_progress,
            "check_application_progresses": self.check_application_progresses,
            "download": self.download,
            "start_image_feature": self.start_image_feature,
            "start_product_generation": self.start_product_generation,
            "product_recommendations": self.product_recommendations,
            "product_preset_keys": self.product_preset_keys,
            "scan_my_website": self.scan_my_website,
            "text_ads": self.text_ads,
            "text_list": self.text_list,
            "text_operation": self.text_operation,
        }

    def build(self) -> web.Application:
        """A new aiohttp application serving the API and the testing routes."""
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        app.router.add_route("*", "/api/v1/{tail:.*}", self.dispatch, expect_handler=deferred_expect)
        channels = "/_emulator/notification-channels"
        app.router.add_get(channels, self.list_channels)
        app.router.add_post(channels, self.add_channel)
        app.router.add_delete(channels, self.remove_channels)
        app.router.add_post("/_emulator/advance", self.advance)
        app.router.add_post("/_emulator/expire-access-tokens", self.expire_access_tokens)
        app.router.add_post("/_emulator/fail-next", self.fail_next)
        app.router.add_post("/_emulator/truncate-next-download", self.truncate_next_download)
        app.router.add_get("/_emulator/requests", self.request_counts)
        app.router.add_get("/_emulator/rate", self.rate_counts)
        app.router.add_post("/_emulator/rate", self.set_rate_limit)
        app.router.add_get("/_emulator/processes", self.list_processes)
        app.router.add_get("/_emulator/processes-per-input", self.processes_per_input)
        return app

    # dispatch -----------------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Serve an API request; an answer given without asking for an announced body closes the
        connection (Kestrel's way: the client may still be holding the body back or sending it)."""
        pending = _PendingContinue() if _expects_continue(request) else None
        token = _CONTINUE.set(pending)
        try:
            response = await self._dispatch(request)
        except ConnectionError:
            # the client went away mid-body (e.g. it aborted an upload): no one to answer, nothing to log
            response = web.Response(status=400)
            response.force_close()
        finally:
            _CONTINUE.reset(token)
        if pending is not None and not pending.sent and not response.prepared:
            # Kestrel neither drains a body it never asked for nor keeps the connection: answer, close
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        """Count, inject failures, run the endpoint's handler and answer its :class:`Problem` if raised."""
        tail = request.match_info["tail"].strip("/")
        endpoint = ENDPOINTS_BY_ROUTE.get(tail.lower())
        route = endpoint.route if endpoint else tail
        self.state.requests[f"{request.method} {route}"] += 1
        if endpoint is None:
            return web.Response(status=404, text="404: Not Found")
        if request.method != endpoint.method:
            other = ENDPOINTS_BY_METHOD.get((request.method, endpoint.route.lower()))
            if other is None:
                allowed = [e.method for e in ENDPOINTS if e.route == endpoint.route]
                return web.Response(status=405, headers={"Allow": ", ".join(allowed)})
            endpoint = other
        limited = self.rate_limited(request, endpoint)
        if limited is not None:
            return limited
        injected = self.state.take_failure(endpoint.route)
        if injected is not None:
            return self.injected_failure(endpoint, *injected)
        fault = self.state.faults.draw(endpoint.route) if self.state.faults else None
        if fault == "server_error":
            return self.injected_failure(endpoint, random.choice((500, 502, 503, 504)), 1)
        if fault == "rate_limit":
            return self.injected_failure(endpoint, 429, 1)
        if fault == "reset":
            return _drop_connection(request)
        if fault == "slow":
            await asyncio.sleep(self.state.faults.slow_seconds(endpoint.route))
        if fault == "truncate" and endpoint.handler == "download" and request.query.get("taskId"):
            with contextlib.suppress(KeyError):
                self.state.truncate_next_download(request.query["taskId"], 32, 1)
        try:
            response = await self.handlers[endpoint.handler](request, endpoint)
        except Problem as problem:
            response = problem.response
        if endpoint.handler in RENDER_HANDLERS and response.status == 200:
            latency = self.state.start_latency()
            if latency > 0:
                await asyncio.sleep(latency)  # the render exists (and is listed) meanwhile
        if fault == "lost_response":
            return _drop_connection(request)  # served, but the answer never reaches the client
        if fault == "served_error":
            return responses.gateway_error(random.choice((502, 503, 504)))  # served, answer replaced
        json_answer = isinstance(response, web.Response) and (response.content_type or "").endswith("json")
        if fault == "malformed" and json_answer and response.status == 200:
            return web.Response(status=200, body=b'{"messageType": "Image', content_type="application/json")
        return response

    def rate_limited(self, request: web.Request, endpoint: Endpoint) -> web.Response | None:
        """The 429 of a request over its application's rate limit (see ``_ratelimit``), or None."""
        if self.state.limiter.rate is None:
            return None
        app = self.state.by_api_key.get(request.headers.get("x-api-key", ""))
        if app is None:
            return None
        retry_after = self.state.limiter.admit(app.application_id)
        return None if retry_after is None else self.injected_failure(endpoint, 429, retry_after)

    def injected_failure(self, endpoint: Endpoint, status: int, retry_after: int) -> web.Response:
        """The answer of a failure queued by ``fail_next``: the documented body where there is one.

        A progress route's "nothing found" is deliberately not reproduced: an injected error there
        must stay distinguishable from an empty result.
        """
        business = f"business: {endpoint.function}"
        if status == 401:
            return responses.unauthorized()
        if status == 429:
            message = Msg.TOO_MANY_REQUESTS.format(seconds=retry_after)
            headers = {"Retry-After": str(retry_after)}
            return responses.layered_error(429, {business: [message]}, headers)
        if status in (502, 503, 504):
            return responses.gateway_error(status)
        if status >= 500:
            documented = endpoint.route in (
                GENERATION_CHECK_USER_ROUTE,
                GENERATION_CHECK_APPLICATION_ROUTE,
            )
            message = Msg.UNEXPECTED_GENERATION_CHECK if documented else Msg.UNEXPECTED
            return responses.layered_error(status, {business: [message]})
        if status == 404 and endpoint.handler == "download":
            return responses.download_not_found(endpoint.function)
        if status == 404 and endpoint.body == FORM and self.state.primary is not None:
            return responses.no_active_channel(self.state.primary.application_id)
        return responses.layered_error(status, {business: [Msg.INJECTED.format(status=status)]})

    # shared checks ------------------------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> Application:
        """The token's application, if the Bearer token, API key and secret are all right (else 401)."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        app = self.state.verify_access_token(token.strip()) if scheme.lower() == "bearer" else None
        if (
            app is None
            or not hmac.compare_digest(request.headers.get("x-api-key", ""), app.api_key)
            or not hmac.compare_digest(request.headers.get("x-api-secret", ""), app.api_secret)
        ):
            raise Problem(responses.unauthorized())
        return app

    @staticmethod
    def validated(endpoint: Endpoint, inputs: Inputs) -> dict[str, Any]:
        """Bound values, or a 400 in the endpoint's validation style."""
        values, errors = validate(endpoint.rules, inputs)
        if errors:
            raise Problem(responses.validation_error(errors, endpoint.style))
        return values

    @staticmethod
    def check_application(app: Application, application_id: str) -> None:
        """An applicationId that is not the token's answers the seeds' 401."""
        if application_id != app.application_id:
            raise Problem(responses.unauthorized())

    async def accepted_start(
        self, request: web.Request, endpoint: Endpoint, feature: str
    ) -> tuple[Application, dict[str, Any], RequestInputs]:
        """A render start (or edit) call's checks, in the server's order: the token (401), the form's
        rules (400), the applicationId (401), the notification channel (404). The bound values and
        what was received."""
        app = self.authenticate(request)
        inputs, received = await read_form(request, endpoint)
        values = self.validated(endpoint, inputs)
        self.check_application(app, values["applicationId"])
        self.require_channel(app, feature=feature)
        return app, values, received

    def require_channel(self, app: Application, *, feature: str) -> None:
        """No active notification channel: the seeds' 404."""
        if feature == FEATURE_BACKGROUND_REMOVAL and not (
            self.options.channel_required_for_background_removal
        ):
            return
        if not app.has_active_channel():
            raise Problem(responses.no_active_channel(app.application_id))

    # token endpoints ----------------------------------------------------------------------------------

    def _credentials(self, endpoint: Endpoint, values: dict[str, Any]) -> Application:
        """The application named by a token request, if its private key matches (else 401)."""
        raw_id = str(values["applicationId"])
        application_id = parse_guid(_URN_PREFIX.sub("", raw_id))
        if application_id is None:
            message = Msg.NOT_VALID_FOR.format(value=raw_id, field="ApplicationId")
            raise Problem(responses.validation_error({"ApplicationId": [message]}, endpoint.style))
        app = self.state.applications.get(application_id)
        if app is None or not hmac.compare_digest(
            app.jwt_private_key.encode(), str(values["jwtPrivateKey"]).encode()
        ):
            business = Msg.TOKEN_CREDENTIALS_BUSINESS.format(application_id=application_id)
            errors = {
                f"engine: {endpoint.function}": [Msg.TOKEN_CREDENTIALS_ENGINE],
                f"business: {endpoint.function}": [business],
            }
            raise Problem(responses.layered_error(401, errors))
        return app

    async def generate_token(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Authorization/GenerateJwtToken."""
        values = self.validated(endpoint, await json_inputs(request))
        app = self._credentials(endpoint, values)
        return responses.token_response(self.state.generate_tokens(app))

    async def refresh_token(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Authorization/RefreshJwtToken."""
        values = self.validated(endpoint, await json_inputs(request))
        app = self._credentials(endpoint, values)
        grant = self.state.refresh_tokens(app, str(values["refreshToken"]))
        if grant is None:
            business = Msg.REFRESH_BUSINESS.format(application_id=app.application_id)
            errors = {
                f"engine: {endpoint.function}": [Msg.REFRESH_ENGINE],
                f"business: {endpoint.function}": [business],
            }
            raise Problem(responses.layered_error(401, errors))
        return responses.token_response(grant)

    # generation -------------------------------------------------------------------------------------

    async def start_generation(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/Generation/AdCreativesByKind."""
        app, values, received = await self.accepted_start(request, endpoint, FEATURE_GENERATION)
        render_kind: int = values["renderKind"]
        # assumed: tasks_per_size tasks per output size in the kind's bit set (0 = Unset counts as one)
        sizes = max(1, bin(render_kind).count("1"))
        process = self.state.start_process(
            app,
            values["userId"],
            FEATURE_GENERATION,
            sizes * self.options.tasks_per_size,
            render_kind,
            values["renderType"],
            received,
        )
        return responses.single_progress(process, self.options, with_ids=False)

    async def edit_generation(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/Editing/AdCreativesByTasks: restart tasks of a completed process of the user."""
        app, values, received = await self.accepted_start(request, endpoint, FEATURE_GENERATION)
        user_id: str = values["userId"]
        task_ids: list[str] = values["taskIds"]
        owners = {task_id: self.state.process_of_task(task_id) for task_id in task_ids}
        unknown = [
            task_id
            for task_id, process in owners.items()
            if process is None
            or process.feature != FEATURE_GENERATION
            or process.application_id != app.application_id
            or process.user_id != user_id
        ]

        def refuse(engine: str) -> Problem:
            business = Msg.EDIT_BUSINESS.format(user_id=user_id)
            errors = {
                f"engine: {endpoint.function}": [engine],
                f"business: {endpoint.function}": [business],
            }
            return Problem(responses.layered_error(400, errors))

        if unknown:
            raise refuse(Msg.EDIT_TASKS_NOT_FOUND.format(task_ids=", ".join(unknown), user_id=user_id))
        processes = {process.process_id: process for process in owners.values() if process}
        if len(processes) != 1:
            raise refuse(Msg.EDIT_SEVERAL_PROCESSES)
        (process,) = processes.values()
        process.refresh(self.state.clock.now())
        if not process.finished:
            raise refuse(Msg.EDIT_NOT_COMPLETED.format(process_id=process.process_id))
        self.state.restart_tasks(process, task_ids, received)
        return responses.single_progress(process, self.options, with_ids=False)

    # background removal -------------------------------------------------------------------------------

    async def start_background_removal(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/BackgroundRemoving/AdCreative: one task, renderType 8, no renderKind (seed)."""
        app, values, received = await self.accepted_start(request, endpoint, FEATURE_BACKGROUND_REMOVAL)
        process = self.state.start_process(
            app, values["userId"], FEATURE_BACKGROUND_REMOVAL, 1, None, 8, received
        )
        return responses.single_progress(process, self.options, with_ids=True)

    # progress and downloads (both features) -------------------------------------------------------

    async def check_user_progress(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET .../CheckUserProgress: the user's processes in a ``$id``/``$values`` wrapper."""
        app = self.authenticate(request)
        values = self.validated(endpoint, query_inputs(request))
        feature = _feature(endpoint)
        user_id: str = values["userId"]
        process_id: str | None = values[_process_parameter(endpoint)]
        found = self.state.user_processes(
            feature, app.application_id, user_id, process_id, self.state.clock.now()
        )
        if found:
            return responses.progress_list(found, self.options, wrapped=True)
        raise Problem(responses.user_processes_not_found(feature, user_id, process_id))

    async def check_application_progresses(
        self, request: web.Request, endpoint: Endpoint
    ) -> web.StreamResponse:
        """GET .../CheckApplicationAllProgresses: a plain array for generation, a wrapper for BR (seeds)."""
        app = self.authenticate(request)
        values = self.validated(endpoint, query_inputs(request))
        self.check_application(app, values["applicationId"])
        feature = _feature(endpoint)
        found = self.state.application_processes(feature, app.application_id, self.state.clock.now())
        if found:
            wrapped = feature != FEATURE_GENERATION  # assumed for the features after the seeds: as BR
            return responses.progress_list(found, self.options, wrapped=wrapped)
        raise Problem(responses.application_processes_not_found(feature, app.application_id))

    async def download(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET .../Download: the image of a succeeded task, like ASP.NET's ``File()``; counts downloads."""
        app = self.authenticate(request)
        values = self.validated(endpoint, query_inputs(request))
        self.check_application(app, values["applicationId"])
        task_id: str = values["taskId"]
        process = self.state.processes.get(values[_process_parameter(endpoint)])
        task = process.tasks.get(task_id) if process else None
        if (
            process is None
            or task is None
            or process.feature != _feature(endpoint)
            or process.application_id != app.application_id
        ):
            raise Problem(responses.download_not_found(endpoint.function))
        process.refresh(self.state.clock.now())
        if task.state != TaskState.SUCCEEDED:
            raise Problem(responses.download_not_found(endpoint.function))
        low_resolution: bool = values["lowResolution"]
        requested: int | None = values.get("format")  # Product Photoshoot: 0 PNG, 1 JPEG, 2 PDF 1.6
        image_format = self.options.image_format if requested is None else ("png", "jpeg", "pdf")[requested]
        body = self.download_body(task_id, low_resolution, image_format)
        upload = next(iter(process.inputs.files.values()), None)
        if self.options.stamp_inputs and image_format == "png" and upload is not None and len(body) == 1:
            body = (stamp_png(bytes(body[0]), upload.sha256),)
        total = segments_size(body)
        extension = {"png": "png", "jpeg": "jpg", "pdf": "pdf"}[image_format]
        filename = f"{task_id}.{extension}"  # assumed: the file name is not documented
        headers = {"Content-Disposition": f"attachment; filename={filename}; filename*=UTF-8''{filename}"}
        status, start, stop = 200, 0, total
        if self.options.range_requests:
            etag = '"' + hashlib.sha256(f"{task_id}:{low_resolution}:{total}".encode()).hexdigest()[:32] + '"'
            headers |= {"Accept-Ranges": "bytes", "ETag": etag}
            if_range = request.headers.get("If-Range")
            wanted = byte_range(request.headers.get("Range"), total)
            if wanted is not None and (if_range is None or if_range.strip() == etag):
                if wanted == UNSATISFIABLE:
                    return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
                status, (start, stop) = 206, wanted
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
        task.download_count += 1
        process.download_count += 1
        cut = self.state.take_truncation(task_id)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = IMAGE_MEDIA_TYPES[image_format]
        response.content_length = stop - start
        if cut is not None:
            response.force_close()  # the connection drops after ``cut`` bytes of body
        await response.prepare(request)
        sent = 0
        for piece in iter_segments(body, start, stop):
            if cut is not None and sent + len(piece) > cut:
                await response.write(piece[: cut - sent])
                return response  # unfinished: the client sees the connection close mid-body
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    def download_body(
        self, task_id: str, low_resolution: bool, image_format: str | None = None
    ) -> tuple[Segment, ...]:
        """The image of a task as segments to stream: small and encoded, or padded to ``download_size``
        (PNG only); ``image_format`` (default: the option) may also be ``"pdf"``."""
        image_format = image_format or self.options.image_format
        width, height = self.options.image_size
        if low_resolution:
            width, height = max(1, width // 2), max(1, height // 2)
        color = color_for(task_id)
        if image_format == "pdf":
            return (pdf_bytes(width, height, color),)
        size = self.options.download_size
        if size is not None and image_format == "png":
            if low_resolution:
                size = max(size // 4, len(png_bytes(width, height, color)) + 12)
            return padded_png(size, width, height, color)
        encode = png_bytes if image_format == "png" else jpeg_bytes
        return (encode(width, height, color),)

    # the features documented after the seeds ----------------------------------------------------------

    async def start_image_feature(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/{Upscaling,FaceEnhancing,StockGeneration}/AdCreative: a render process.

        assumed: the answer is the seeds' progress object with Newtonsoft ids (as Background Remover's);
        one task, or for Stock Image one per output size of its renderKind; no renderType.
        """
        feature = _feature(endpoint)
        app, values, received = await self.accepted_start(request, endpoint, feature)
        render_kind: int | None = values.get("renderKind")
        tasks = 1 if render_kind is None else features.size_count(render_kind)
        process = self.state.start_process(app, values["userId"], feature, tasks, render_kind, None, received)
        return responses.single_progress(process, self.options, with_ids=True)

    async def product_recommendations(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/ProductGeneration/Recommendations: the documented answer; the photo becomes an
        asset that a generation can use. No render process, so no notification channel is needed."""
        app = self.authenticate(request)
        inputs, _ = await read_form(request, endpoint)
        values = self.validated(endpoint, inputs)
        self.check_application(app, values["applicationId"])
        upload: UploadInfo = values["uploadedImage"]
        asset = Asset(self.state.new_uuid(), app.application_id, values["userId"], upload)
        self.state.assets[asset.asset_id] = asset
        return responses.json_response(features.recommendations_body(asset.asset_id, upload.filename))

    async def start_product_generation(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST Image/ProductGeneration/AdCreative: one task per prompt object (assumed; the docs' flow
        shows 6 tasks, the most prompt objects allowed); the asset must be the user's."""
        app = self.authenticate(request)
        inputs, received = await read_form(request, endpoint)
        values = self.validated(endpoint, inputs)
        prompts, problem = features.parse_prompt_objects(values["promptObjectsString"])
        if prompts is None:
            rule = next(r for r in endpoint.rules if r.name == "promptObjectsString")
            if problem == "json":
                message = Msg.PROMPTS_NOT_JSON.format(field=rule.display)
            elif problem == "count":
                message = Msg.PROMPTS_COUNT.format(field=rule.display, max=features.MAX_PROMPT_OBJECTS)
            else:
                message = Msg.PROMPT_INVALID.format(index=str(problem).partition(":")[2])
            raise Problem(responses.validation_error({rule.key: [message]}, endpoint.style))
        self.check_application(app, values["applicationId"])
        self.require_channel(app, feature=FEATURE_PRODUCT_GENERATION)
        user_id: str = values["userId"]
        asset = self.state.assets.get(values["backgroundRemovedImageAssetId"])
        if asset is None or asset.application_id != app.application_id or asset.user_id != user_id:
            engine = Msg.ASSET_ENGINE.format(
                asset_id=values["backgroundRemovedImageAssetId"], user_id=user_id
            )
            errors = {
                f"engine: {endpoint.function}": [engine],
                f"business: {endpoint.function}": [Msg.ASSET_BUSINESS],
            }
            raise Problem(responses.layered_error(404, errors))
        process = self.state.start_process(
            app, user_id, FEATURE_PRODUCT_GENERATION, len(prompts), None, None, received
        )
        return responses.single_progress(process, self.options, with_ids=True)

    async def _record(self, request: web.Request, endpoint: Endpoint) -> Any:
        """Keep what a plain call received (its query and JSON body) for tests; the decoded body."""
        body: Any = None
        if endpoint.body == JSON and request.content_type == "application/json":
            await continue_body(request)
            try:
                body = msgspec.json.decode(await request.read())
            except msgspec.DecodeError:
                body = None
        query: dict[str, list[str]] = {}
        for name, value in request.query.items():
            query.setdefault(name, []).append(value)
        frozen = MappingProxyType({k: tuple(v) for k, v in query.items()})
        self.state.received.append(ReceivedCall(request.method, endpoint.route, frozen, body))
        return body

    async def product_preset_keys(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET Image/ProductGeneration/PresetKeys (assumed answer: categories of preset keys)."""
        app = self.authenticate(request)
        await self._record(request, endpoint)
        values = self.validated(endpoint, query_inputs(request))
        if values["applicationId"] is not None:
            self.check_application(app, values["applicationId"])
        return responses.json_response(features.preset_keys_body())

    async def scan_my_website(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET ScanMyWebsite: synchronous (assumed answer: see ``_features.scan_body``)."""
        app = self.authenticate(request)
        await self._record(request, endpoint)
        values = self.validated(endpoint, query_inputs(request))
        self.check_application(app, values["applicationId"])
        include = values["includeLogoContent"]
        body = features.scan_body(
            values["url"],
            include is None or include,
            bool(values["advanceMode"]),  # documented defaults
        )
        return responses.json_response(body)

    async def text_ads(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """POST (a new ad text) and PUT (a new version of one, by ``adTextId``) Text/Generation/Ads."""
        app = self.authenticate(request)
        body = await self._record(request, endpoint)
        values = self.validated(endpoint, await json_inputs(request))
        self.check_application(app, values["applicationId"])
        user_id: str = values["userId"]
        fields = {
            str(k): v
            for k, v in (body if isinstance(body, dict) else {}).items()
            if str(k).lower() not in ("applicationid", "userid", "adtextid") and not str(k).startswith("$")
        }
        if request.method == "POST":
            now = iso_utc(self.state.clock.wall())
            ad = AdText(self.state.new_uuid(), app.application_id, user_id, now, fields)
            self.state.ad_texts[ad.ad_text_id] = ad
        else:
            found = self.state.ad_texts.get(values["adTextId"])
            if found is None or found.application_id != app.application_id or found.user_id != user_id:
                engine = Msg.AD_TEXT_ENGINE.format(ad_text_id=values["adTextId"], user_id=user_id)
                business = Msg.AD_TEXT_BUSINESS.format(user_id=user_id)
                errors = {
                    f"engine: {endpoint.function}": [engine],
                    f"business: {endpoint.function}": [business],
                }
                raise Problem(responses.layered_error(404, errors))
            ad = found
            ad.version += 1
            ad.request.update(fields)
        return responses.json_response(features.ad_text_body(ad))

    async def text_list(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET Text/Generation/UserAd and ApplicationAllAds: a wrapped list, empty when there is none
        (assumed: no "nothing found" error is documented for them)."""
        app = self.authenticate(request)
        await self._record(request, endpoint)
        values = self.validated(endpoint, query_inputs(request))
        self.check_application(app, values["applicationId"])
        user_id: str | None = values.get("userId")
        ads = [
            ad
            for ad in self.state.ad_texts.values()
            if ad.application_id == app.application_id and (user_id is None or ad.user_id == user_id)
        ]
        return responses.json_response(features.ad_text_list_body(ads))

    async def text_operation(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        """GET ProductDescription, POST AdStrategies, AdCopies and the Craft calls (assumed answers)."""
        app = self.authenticate(request)
        body = await self._record(request, endpoint)
        if endpoint.body == QUERY:
            values = self.validated(endpoint, query_inputs(request))
            fields: dict[str, object] = dict(request.query)
        else:
            values = self.validated(endpoint, await json_inputs(request))
            fields = dict(body) if isinstance(body, dict) else {}
        self.check_application(app, values["applicationId"])
        operation = endpoint.route.rsplit("/", 1)[1]
        return responses.json_response(features.text_operation_body(operation, fields))

    # testing-only routes ------------------------------------------------------------------------------

    async def _control_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw) if raw.strip() else {}
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return body

    def _control_application(self, body: dict[str, Any]) -> Application:
        application_id = body.get("applicationId")
        if application_id is None and self.state.primary is not None:
            return self.state.primary
        app = self.state.applications.get(parse_guid(str(application_id)) or "")
        if app is None:
            raise web.HTTPNotFound(text=f"no application {application_id!r}")
        return app

    async def list_channels(self, request: web.Request) -> web.StreamResponse:
        """GET /_emulator/notification-channels[?applicationId=]: the application's channels."""
        app = self._control_application(dict(request.query))
        channels = [
            {
                "id": c.channel_id,
                "kind": c.kind,
                "url": c.url,
                "includeImageData": c.include_image_data,
                "active": c.active,
            }
            for c in app.channels.values()
        ]
        return responses.json_response(channels)

    async def add_channel(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/notification-channels: add a channel.

        Body: ``{"kind", "url", "includeImageData"}`` and optionally ``"applicationId"``.
        """
        body = await self._control_body(request)
        app = self._control_application(body)
        try:
            channel_id = self.state.add_channel(
                app,
                str(body.get("kind", "webhook")),
                str(body.get("url", "")),
                bool(body.get("includeImageData", False)),
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return responses.json_response({"id": channel_id}, status=201)

    async def remove_channels(self, request: web.Request) -> web.StreamResponse:
        """DELETE /_emulator/notification-channels[?applicationId=]: remove every channel."""
        self._control_application(dict(request.query)).channels.clear()
        return web.Response(status=204)

    async def advance(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/advance ``{"seconds": n}``: move the emulator's clock forward."""
        body = await self._control_body(request)
        try:
            self.state.advance(float(body.get("seconds", 0)))
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(status=204)

    async def expire_access_tokens(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/expire-access-tokens: every issued access token expires now."""
        self.state.expire_access_tokens()
        return web.Response(status=204)

    async def fail_next(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/fail-next ``{"route", "status", "count", "retryAfter"}``."""
        body = await self._control_body(request)
        try:
            queue_failure(
                self.state,
                str(body["route"]),
                int(body.get("status", 500)),
                int(body.get("count", 1)),
                int(body.get("retryAfter", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad fail-next request: {exc}") from None
        return web.Response(status=204)

    async def truncate_next_download(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/truncate-next-download ``{"taskId", "afterBytes", "count"}``."""
        body = await self._control_body(request)
        try:
            self.state.truncate_next_download(
                str(body["taskId"]), int(body.get("afterBytes", 0)), int(body.get("count", 1))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad truncate-next-download request: {exc}") from None
        return web.Response(status=204)

    async def request_counts(self, request: web.Request) -> web.StreamResponse:
        """GET /_emulator/requests: ``{"METHOD route": count}``."""
        return responses.json_response(dict(self.state.requests))

    async def rate_counts(self, request: web.Request) -> web.StreamResponse:
        """GET /_emulator/rate[?applicationId=]: the application's rate limit and its counters
        ``{"rate", "burst", "accepted", "limited"}`` (requests served, and answered 429)."""
        app = self._control_application(dict(request.query))
        counts = self.state.limiter.counts(app.application_id)
        limiter = self.state.limiter
        body = {"rate": limiter.rate, "burst": limiter.burst if limiter.rate else None}
        return responses.json_response({**body, "accepted": counts.accepted, "limited": counts.limited})

    async def set_rate_limit(self, request: web.Request) -> web.StreamResponse:
        """POST /_emulator/rate ``{"rate", "burst", "resetCounts"}``: set (``"rate": null``: lift) the
        rate limit of every application; ``resetCounts`` zeroes the counters."""
        body = await self._control_body(request)
        try:
            rate = body.get("rate")
            burst = body.get("burst")
            self.state.limiter.configure(
                None if rate is None else float(rate), None if burst is None else float(burst)
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad rate request: {exc}") from None
        if body.get("resetCounts"):
            self.state.limiter.reset_counts()
        return web.Response(status=204)

    async def processes_per_input(self, request: web.Request) -> web.StreamResponse:
        """GET /_emulator/processes-per-input: ``{"<sha256 of the first upload>": processes}`` (testing
        only: a crash test in another process counts renders per input)."""
        return responses.json_response(dict(self.state.processes_per_input()))

    async def list_processes(self, request: web.Request) -> web.StreamResponse:
        """GET /_emulator/processes?userId=: a user's processes as the emulator sees them, with each task's
        ``finishedAt`` / ``finishesAt`` on the emulator clock (``time.monotonic()`` plus what was advanced),
        so another process can measure how soon a client noticed a task's end."""
        user = parse_guid(request.query.get("userId", ""))
        if user is None:
            return responses.json_response({"error": "userId must be a GUID"}, status=400)
        body = [
            {
                "processId": p.process_id,
                "feature": p.feature,
                "state": p.state,
                "tasks": {
                    t.task_id: {"state": t.state, "finishedAt": t.finished_at, "finishesAt": t.finishes_at}
                    for t in p.tasks.values()
                },
            }
            for p in (process.snapshot() for process in self.state.processes_for(user))
        ]
        return responses.json_response(body)


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (a fault): the response returned is never sent."""
    if request.transport is not None:
        request.transport.close()
    response = web.Response(status=500)
    response.force_close()
    return response
