"""FastAPI backend: one AdCreativeClient for the app's lifetime, an endpoint that starts a background
removal, one that reports a job's progress, one that waits for it (resolved by webhook push), one that
streams a result to the caller, and the webhook route the service's notifications arrive on.

Needs ``pip install '.[examples]'`` (FastAPI, uvicorn). Run it against the built-in emulator
(no account); ``ADCREATIVE_PUBLIC_URL`` tells the emulator where to post its webhook notifications::

    export ADCREATIVE_EMULATOR=1 ADCREATIVE_PUBLIC_URL=http://127.0.0.1:8000
    uvicorn examples.fastapi_app:app --port 8000
    # or: python examples/fastapi_app.py --emulator --port 8000

    curl -s --data-binary @examples/assets/product-1.jpg -H 'Content-Type: image/jpeg' \\
        localhost:8000/background-removals
    curl -s localhost:8000/jobs/background_remover/PROCESS_ID
    curl -s localhost:8000/jobs/background_remover/PROCESS_ID/wait   # returns on push
    curl -s -o cutout.png localhost:8000/jobs/background_remover/PROCESS_ID/tasks/TASK_ID/result

The browser sees process and task ids only: never the user id (the account's user, or one of your
customers: here the client's default user, in a real app the one your session maps the caller to), the
application id, or the SDK's error messages beyond what it may know (a 404 says "no such job").

Against the real API: set the ADCREATIVE_* variables (ADCREATIVE_USER_ID included), leave out
ADCREATIVE_EMULATOR, set ADCREATIVE_WEBHOOK_TOKEN to a long random value, and register
``https://<your host>/webhooks/adcreative/<token>`` as your application's webhook notification channel.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from adcreative_async import (
    AdCreativeClient,
    InvalidRequestError,
    NotFoundError,
    RenderFailedError,
    RenderNotReadyError,
    WaitTimeoutError,
)
from adcreative_async.integrations.starlette import streaming_response
from adcreative_async.notifications import NotificationHub, WebhookReceiver
from adcreative_async.testing import Emulator

DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
WEBHOOK_PATH = "/webhooks/adcreative"
#: What a 404 tells the browser (the SDK's message is for your logs: the browser needs no more).
NO_SUCH_JOB = "no such job"
NO_SUCH_TASK = "no such task, or no result for it"


def get_client(request: Request) -> AdCreativeClient:
    """The app's client (a FastAPI dependency)."""
    client = request.app.state.adcreative
    assert isinstance(client, AdCreativeClient)
    return client


Client = Annotated[AdCreativeClient, Depends(get_client)]


def create_app(*, emulator_options: dict[str, Any] | None = None) -> FastAPI:
    """The application. With ``ADCREATIVE_EMULATOR=1`` (or ``emulator_options``), the client talks to an
    emulator started in the lifespan; otherwise to the API, with credentials from ADCREATIVE_* variables."""
    use_emulator = emulator_options is not None or os.environ.get("ADCREATIVE_EMULATOR") == "1"
    # Webhook notifications go to a hub that the client listens to: waits resolve as messages arrive.
    # The API signs nothing: the unguessable path token is what keeps strangers out.
    hub = NotificationHub()
    token = os.environ.get("ADCREATIVE_WEBHOOK_TOKEN") or secrets.token_urlsafe(32)
    receiver = WebhookReceiver(hub, path_token=token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The client lives as long as the app: one connection pool, one poll scheduler, for every request.
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
            app.state.adcreative = await stack.enter_async_context(client)
            yield

    app = FastAPI(title="adcreative-async FastAPI example", lifespan=lifespan)
    app.state.webhook_token = token
    app.mount(WEBHOOK_PATH, receiver.asgi)  # POST /webhooks/adcreative/<token>

    @app.post("/background-removals", status_code=202)
    async def start_background_removal(request: Request, client: Client) -> dict[str, Any]:
        """Start removing the background of the image sent as the request body (streamed, never held
        whole in memory)."""
        try:
            job = await client.background_remover.remove(request.stream())
        except InvalidRequestError as exc:  # not an image, empty body...
            raise HTTPException(status_code=422, detail=str(exc)) from None
        # Store job.to_json() if the job must survive a restart: client.job_from_json() resumes it.
        # Not job.to_dict(): it holds the application and user ids, which are not the browser's.
        return {"process_id": job.process_id, "task_ids": list(job.task_ids)}

    @app.get("/jobs/{feature}/{process_id}")
    async def job_progress(feature: str, process_id: str, client: Client) -> dict[str, Any]:
        """A job's progress now (one progress request)."""
        try:
            progress = await client.resource(feature).process_progress(process_id)
        except InvalidRequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except NotFoundError:
            raise HTTPException(status_code=404, detail=NO_SUCH_JOB) from None
        return {
            "process_id": progress.process_id,
            "progress": progress.progress,
            "complete": progress.is_complete,
            "succeeded_task_ids": progress.succeeded_task_ids,
            "failed_task_ids": progress.failed_task_ids,
        }

    @app.get("/jobs/{feature}/{process_id}/wait")
    async def wait_for_job(feature: str, process_id: str, client: Client) -> dict[str, Any]:
        """Wait until the job is complete (at most 60 s): resolved by a webhook message as soon as one
        arrives, by the client's coalesced polling otherwise. An unknown process is a 404 at once."""
        try:
            job = client.resource(feature).job(process_id)
            # One progress request first: an id the server does not know answers 404 now, instead of
            # after the scheduler's grace period for just-started jobs (PollPolicy.not_found_grace).
            await job.refresh()
            progress = await job.result(timeout=60)
        except InvalidRequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except NotFoundError:  # also RenderNotFoundError: the process left the listing meanwhile
            raise HTTPException(status_code=404, detail=NO_SUCH_JOB) from None
        except WaitTimeoutError as exc:
            raise HTTPException(status_code=504, detail=str(exc)) from None
        except RenderFailedError as exc:
            raise HTTPException(status_code=502, detail=str(exc)) from None
        return {"process_id": progress.process_id, "succeeded_task_ids": progress.succeeded_task_ids}

    @app.get("/jobs/{feature}/{process_id}/tasks/{task_id}/result")
    async def task_result(feature: str, process_id: str, task_id: str, client: Client) -> StreamingResponse:
        """Stream one task's result to the caller as it arrives (constant memory, no temporary file)."""
        try:
            # Sends the request: errors become HTTP errors before the response starts.
            stream = await client.resource(feature).open_download(process_id, task_id)
        except InvalidRequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except RenderNotReadyError as exc:  # the task is not finished (or failed): exc.state says which
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except NotFoundError:
            raise HTTPException(status_code=404, detail=NO_SUCH_TASK) from None
        return streaming_response(stream)  # closes the stream however the response ends

    return app


app = create_app()


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the FastAPI example.")
    parser.add_argument("--emulator", action="store_true", help="use a built-in emulator (no account)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(
        create_app(emulator_options={"task_duration": (0.2, 1.0)}) if args.emulator else app,
        host=args.host,
        port=args.port,
    )
