"""Flask backend under gunicorn's sync workers: the sync client, webhooks through the WSGI adapter.

One ``SyncAdCreativeClient`` per worker process (made by the app factory, which gunicorn runs in each
worker: do not use ``--preload``), its notification hub fed by ``receiver.wsgi`` mounted at
``/webhooks/adcreative/<token>``. A sync worker serves one request at a time, so no view waits for a
render: the submit view starts the render, hands its wait to the client's loop thread
(``job.result_future()``) and answers 202 at once; the wait resolves there when the webhook arrives (or
by polling, the safety net), and the status view reports it.

Needs ``pip install '.[examples]'`` (Flask, gunicorn). Against the built-in emulator (no account), which
posts its webhooks to this app::

    export ADCREATIVE_WEBHOOK_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
    eval "$(adcreative emulator --format env --detach \\
        --webhook http://127.0.0.1:8000/webhooks/adcreative/$ADCREATIVE_WEBHOOK_TOKEN)"
    export ADCREATIVE_USER_ID=2581c740-8e9d-4d63-96bc-5665bb9a646b
    gunicorn -w 2 -b 127.0.0.1:8000 'examples.flask_app:create_app()'

    curl -s --data-binary @examples/assets/product-1.jpg localhost:8000/background-removals
    curl -s localhost:8000/jobs/PROCESS_ID          # {"status": "succeeded", "task_ids": [...], ...}
    curl -s -o cutout.png localhost:8000/jobs/PROCESS_ID/tasks/TASK_ID/result

Against the real API: set the ADCREATIVE_* credentials and ADCREATIVE_USER_ID, a long random
ADCREATIVE_WEBHOOK_TOKEN, and register ``https://<your host>/webhooks/adcreative/<token>`` as the
application's webhook notification channel. Several workers share that one URL: a worker that receives
a message for another worker's render keeps polling at its normal pace (see README, "Web backends").
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from adcreative_async import (
    InvalidRequestError,
    NotFoundError,
    PollPolicy,
    Progress,
    RenderNotReadyError,
    SyncAdCreativeClient,
)
from adcreative_async.notifications import NotificationHub, WebhookReceiver

WEBHOOK_PATH = "/webhooks/adcreative"
#: How long a render is awaited before its status says it failed (WaitTimeoutError).
WAIT_TIMEOUT = float(os.environ.get("EXAMPLE_WAIT_TIMEOUT") or 600)
#: Renders remembered per worker for the status view (the oldest are forgotten first).
REMEMBERED = 10_000


@dataclass
class Render:
    """A render this worker started: its wait (on the client's loop) and when it was submitted."""

    submitted_at: float
    wait: concurrent.futures.Future[Progress]
    resolved_at: float | None = None


def status_of(render: Render) -> dict[str, Any]:
    """What a browser may see of a render: no account identifiers (application or user id)."""
    if not render.wait.done() or render.resolved_at is None:  # (its callback runs right after it is done)
        return {"status": "running"}
    seconds = round(render.resolved_at - render.submitted_at, 4)
    error = render.wait.exception()
    if error is not None:
        return {"status": "failed", "error": type(error).__name__, "seconds": seconds}
    progress = render.wait.result()
    return {"status": "succeeded", "task_ids": list(progress.succeeded_task_ids), "seconds": seconds}


def create_app(*, poll_interval: float | None = None) -> Flask:
    """The application, with its client open (credentials from the ADCREATIVE_* variables).

    Args:
        poll_interval: a fixed poll interval instead of the default pacing (default: the
            ``EXAMPLE_POLL_INTERVAL`` variable, if set; tests give a long one to show that waits resolve
            by push).
    """
    if poll_interval is None and os.environ.get("EXAMPLE_POLL_INTERVAL"):
        poll_interval = float(os.environ["EXAMPLE_POLL_INTERVAL"])
    hub = NotificationHub()
    # The API signs nothing: the unguessable last path segment is what keeps strangers out. Keep it out
    # of logs too (the access log's request line holds it).
    token = os.environ.get("ADCREATIVE_WEBHOOK_TOKEN") or secrets.token_urlsafe(32)
    receiver = WebhookReceiver(hub, path_token=token)
    options: dict[str, Any] = {"push": hub}
    if poll_interval is not None:
        options["poll_policy"] = PollPolicy(
            initial_interval=poll_interval, max_interval=poll_interval, min_interval=poll_interval
        )
    client = SyncAdCreativeClient(**options)
    client.open()  # in this worker process; closed at exit
    renders: OrderedDict[str, Render] = OrderedDict()
    lock = threading.Lock()  # the status view reads what the client's loop thread writes

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 50 * 1024 * 1024
    # POST /webhooks/adcreative/<token>: checked in this worker's thread, handed to the client's loop.
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {WEBHOOK_PATH: receiver.wsgi})  # type: ignore[method-assign]

    @app.post("/background-removals")
    def start_background_removal() -> tuple[Response, int]:
        """Start removing the background of the image sent as the body; answers at once (202)."""
        submitted_at = time.monotonic()
        try:
            job = client.background_remover.remove(request.get_data())
        except InvalidRequestError as exc:  # not an image, empty body...
            return jsonify(error=str(exc)), 422
        render = Render(submitted_at, job.result_future(timeout=WAIT_TIMEOUT))

        def resolved(_: concurrent.futures.Future[Progress]) -> None:  # on the client's loop thread
            render.resolved_at = time.monotonic()

        with lock:
            renders[job.process_id] = render
            while len(renders) > REMEMBERED:
                renders.popitem(last=False)
        render.wait.add_done_callback(resolved)
        return jsonify(id=job.process_id, status_url=f"/jobs/{job.process_id}"), 202

    @app.get("/jobs/<process_id>")
    def job_status(process_id: str) -> Response | tuple[Response, int]:
        """A render's status. One this worker started is answered from its wait (no request); another
        (started by another worker, or before a restart) costs one progress request."""
        with lock:
            render = renders.get(process_id)
        if render is not None:
            return jsonify(status_of(render))
        try:
            progress = client.background_remover.process_progress(process_id)
        except (InvalidRequestError, NotFoundError):
            return jsonify(error="no such render"), 404  # nothing of the request echoed back
        if not progress.is_complete:
            return jsonify(status="running")
        status = "failed" if progress.failed_task_ids and not progress.succeeded_task_ids else "succeeded"
        return jsonify(status=status, task_ids=list(progress.succeeded_task_ids), seconds=None)

    @app.get("/jobs/<process_id>/tasks/<task_id>/result")
    def task_result(process_id: str, task_id: str) -> Response:
        """Stream one task's result to the caller (this worker is busy until it is sent)."""
        try:
            stream = client.background_remover.open_download(process_id, task_id)
        except RenderNotReadyError:
            abort(409)
        except (InvalidRequestError, NotFoundError):
            abort(404)

        def chunks() -> Iterator[bytes]:
            with stream:
                yield from stream.iter_bytes()

        return Response(chunks(), content_type=stream.content_type or "application/octet-stream")

    @app.get("/stats")
    def stats() -> Response:
        """This worker's wait counters: push messages taken, poll requests sent (no identifiers)."""
        counters = client.scheduler_stats
        return jsonify(pid=os.getpid(), pushes=counters["pushes"], polls=counters["requests"])

    return app
