"""The ASGI baseline of ``benchmarks.webhosts``: FastAPI with the async client and ``receiver.asgi``, with
the same routes and answers as ``examples/flask_app.py`` (submit answers 202 and the wait runs in the
background; the status route reports it), so that the hosts differ only by their stack.

Served by ``uvicorn benchmarks._webhost_asgi:app`` with the ``ADCREATIVE_*`` variables,
``ADCREATIVE_WEBHOOK_TOKEN`` and ``ADCREATIVE_USER_ID`` set.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adcreative_async import AdCreativeClient, RenderJob
from adcreative_async.notifications import NotificationHub, WebhookReceiver

WEBHOOK_PATH = "/webhooks/adcreative"
WAIT_TIMEOUT = 600.0

hub = NotificationHub()
receiver = WebhookReceiver(hub, path_token=os.environ["ADCREATIVE_WEBHOOK_TOKEN"])
renders: dict[str, dict[str, Any]] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AdCreativeClient(push=hub) as client, anyio.create_task_group() as tasks:
        app.state.client = client
        app.state.tasks = tasks
        yield
        tasks.cancel_scope.cancel()


app = FastAPI(lifespan=lifespan)
app.mount(WEBHOOK_PATH, receiver.asgi)


async def _wait(job: RenderJob, record: dict[str, Any]) -> None:
    outcome: dict[str, Any]
    try:
        progress = await job.result(timeout=WAIT_TIMEOUT)
    except Exception as exc:
        outcome = {"status": "failed", "error": type(exc).__name__}
    else:
        outcome = {"status": "succeeded", "task_ids": list(progress.succeeded_task_ids)}
    outcome["seconds"] = round(time.monotonic() - record["submitted_at"], 4)
    record.clear()
    record.update(outcome)


@app.post("/background-removals", status_code=202)
async def start_background_removal(request: Request) -> dict[str, Any]:
    """Start a render; its wait runs in the background."""
    submitted_at = time.monotonic()
    client: AdCreativeClient = request.app.state.client
    job = await client.background_remover.remove(await request.body())
    record: dict[str, Any] = {"status": "running", "submitted_at": submitted_at}
    renders[job.process_id] = record
    request.app.state.tasks.start_soon(_wait, job, record)
    return {"id": job.process_id, "status_url": f"/jobs/{job.process_id}"}


@app.get("/jobs/{process_id}", response_model=None)
async def job_status(process_id: str) -> dict[str, Any] | JSONResponse:
    """A render's status."""
    record = renders.get(process_id)
    if record is None:
        return JSONResponse({"error": "no such render"}, status_code=404)
    if record["status"] == "running":
        return {"status": "running"}
    return record


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Push messages taken, poll requests sent."""
    counters = request.app.state.client.scheduler_stats
    return {"pid": os.getpid(), "pushes": counters["pushes"], "polls": counters["requests"]}
