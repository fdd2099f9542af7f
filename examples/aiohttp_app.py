"""aiohttp backend: one AdCreativeClient for the app's lifetime (a cleanup context), an endpoint that
starts a background removal, one that reports a job's progress, one that streams a result to the caller,
and the webhook sub-application the service's notifications arrive on (its hub attached to the client,
so waits resolve on push).

Needs nothing beyond adcreative-async. Run it against the built-in emulator (no account); with
``ADCREATIVE_PUBLIC_URL`` the emulator posts its webhook notifications to this app::

    ADCREATIVE_PUBLIC_URL=http://127.0.0.1:8080 python examples/aiohttp_app.py --emulator --port 8080

    curl -s --data-binary @examples/assets/product-1.jpg localhost:8080/background-removals
    curl -s localhost:8080/jobs/background_remover/PROCESS_ID
    curl -s -o cutout.png localhost:8080/jobs/background_remover/PROCESS_ID/tasks/TASK_ID/result

Against the real API: set the ADCREATIVE_* variables (ADCREATIVE_USER_ID included) and leave out
``--emulator`` (``ADCREATIVE_EMULATOR=1`` is the same as ``--emulator``); set ADCREATIVE_WEBHOOK_TOKEN to a
long random value and register ``https://<your host>/webhooks/adcreative/<token>`` as the webhook channel.

The browser sees process and task ids only: never the user id (the client's default user here; in a real
app, the one your session maps the caller to), the application id, or the SDK's error messages beyond what
it may know (a 404 says "no such job").
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from adcreative_async import AdCreativeClient, InvalidRequestError, NotFoundError
from adcreative_async.notifications import NotificationHub, WebhookReceiver
from adcreative_async.notifications.aiohttp import webhook_app
from adcreative_async.testing import Emulator

DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
WEBHOOK_PATH = "/webhooks/adcreative"
CLIENT = web.AppKey("adcreative", AdCreativeClient)
WEBHOOK_TOKEN = web.AppKey("webhook_token", str)

routes = web.RouteTableDef()

#: What a 404 tells the browser (the SDK's message is for your logs: the browser needs no more).
NO_SUCH_JOB = "no such job"
NO_SUCH_TASK = "no such task, or no result for it"


@routes.post("/background-removals")
async def start_background_removal(request: web.Request) -> web.Response:
    """Start removing the background of the image sent as the request body (streamed)."""
    client = request.app[CLIENT]
    try:
        job = await client.background_remover.remove(request.content.iter_chunked(64 * 1024))
    except InvalidRequestError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    # Not job.to_dict(): it holds the application and user ids, which are not the browser's.
    return web.json_response({"process_id": job.process_id, "task_ids": list(job.task_ids)}, status=202)


@routes.get("/jobs/{feature}/{process_id}")
async def job_progress(request: web.Request) -> web.Response:
    """A job's progress now (one progress request)."""
    client = request.app[CLIENT]
    try:
        resource = client.resource(request.match_info["feature"])
        progress = await resource.process_progress(request.match_info["process_id"])
    except InvalidRequestError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    except NotFoundError:
        raise web.HTTPNotFound(text=NO_SUCH_JOB) from None
    return web.json_response(
        {
            "process_id": progress.process_id,
            "progress": progress.progress,
            "complete": progress.is_complete,
            "succeeded_task_ids": progress.succeeded_task_ids,
            "failed_task_ids": progress.failed_task_ids,
        }
    )


@routes.get("/jobs/{feature}/{process_id}/tasks/{task_id}/result")
async def task_result(request: web.Request) -> web.StreamResponse:
    """Stream one task's result to the caller as it arrives (constant memory, no temporary file)."""
    client = request.app[CLIENT]
    info = request.match_info
    try:
        stream = client.resource(info["feature"]).stream_download(info["process_id"], info["task_id"])
        async with stream:
            response = web.StreamResponse()
            response.content_type = stream.content_type or "application/octet-stream"
            if stream.content_length is not None:
                response.content_length = stream.content_length
            await response.prepare(request)
            async for chunk in stream.iter_bytes():
                await response.write(chunk)
            await response.write_eof()
            return response
    except InvalidRequestError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    except NotFoundError:
        raise web.HTTPNotFound(text=NO_SUCH_TASK) from None


def create_app(
    *, use_emulator: bool | None = None, emulator_options: dict[str, Any] | None = None
) -> web.Application:
    """The application; the client (and, with the emulator, the emulator) lives in a cleanup context."""
    if use_emulator is None:
        use_emulator = emulator_options is not None or os.environ.get("ADCREATIVE_EMULATOR") == "1"

    # Webhook notifications go to a hub that the client listens to: waits resolve as messages arrive.
    # The API signs nothing: the unguessable path token is what keeps strangers out.
    hub = NotificationHub()
    token = os.environ.get("ADCREATIVE_WEBHOOK_TOKEN") or secrets.token_urlsafe(32)

    async def adcreative_client(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if use_emulator:
                options = emulator_options if emulator_options is not None else {"task_duration": (0.2, 1.0)}
                emulator = await stack.enter_async_context(Emulator(**options))
                public_url = os.environ.get("ADCREATIVE_PUBLIC_URL")
                if public_url:  # the emulator posts its notifications to this app, as the API would
                    emulator.add_notification_channel(
                        "webhook", f"{public_url.rstrip('/')}{WEBHOOK_PATH}/{token}"
                    )
                client = AdCreativeClient(**emulator.credentials, user_id=DEMO_USER, push=hub)
            else:
                client = AdCreativeClient(push=hub)
            app[CLIENT] = await stack.enter_async_context(client)
            yield

    app = web.Application()
    app.add_routes(routes)
    app.add_subapp(f"{WEBHOOK_PATH}/", webhook_app(WebhookReceiver(hub, path_token=token)))
    app[WEBHOOK_TOKEN] = token
    app.cleanup_ctx.append(adcreative_client)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the aiohttp example.")
    parser.add_argument("--emulator", action="store_true", help="use a built-in emulator (no account)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(create_app(use_emulator=args.emulator or None), host=args.host, port=args.port)
