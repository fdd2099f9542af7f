"""Django backend in one file, under gunicorn's sync workers: the sync client, webhooks through
``receiver.handle_sync`` in a view.

A minimal project (settings, URLs and views here): one ``SyncAdCreativeClient`` per worker process,
opened on first use in that process (in a full project: ``AppConfig.ready()``), its notification hub fed by
the webhook view. A sync worker serves one request at a time, so no view waits for a render: the submit
view starts it, hands its wait to the client's loop thread (``job.result_future()``) and answers 202 at
once; the status view reports the result when the webhook (or, failing it, polling) resolved the wait.

Needs ``pip install '.[examples]'`` (Django, gunicorn). Against the built-in emulator (no account), which
posts its webhooks to this app::

    export ADCREATIVE_WEBHOOK_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
    eval "$(adcreative emulator --format env --detach \\
        --webhook http://127.0.0.1:8000/webhooks/adcreative/$ADCREATIVE_WEBHOOK_TOKEN)"
    export ADCREATIVE_USER_ID=2581c740-8e9d-4d63-96bc-5665bb9a646b
    gunicorn -w 2 -b 127.0.0.1:8000 examples.django_app:application

    curl -s --data-binary @examples/assets/product-1.jpg localhost:8000/background-removals
    curl -s localhost:8000/jobs/PROCESS_ID          # {"status": "succeeded", "task_ids": [...], ...}

Against the real API: set the ADCREATIVE_* credentials and ADCREATIVE_USER_ID, a long random
ADCREATIVE_WEBHOOK_TOKEN, ``DJANGO_ALLOWED_HOSTS``, and register
``https://<your host>/webhooks/adcreative/<token>`` as the application's webhook notification channel.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from adcreative_async import InvalidRequestError, NotFoundError, PollPolicy, Progress, SyncAdCreativeClient
from adcreative_async.notifications import DEFAULT_MAX_BODY_SIZE, NotificationHub, WebhookReceiver

#: How long a render is awaited before its status says it failed (WaitTimeoutError).
WAIT_TIMEOUT = float(os.environ.get("EXAMPLE_WAIT_TIMEOUT") or 600)
#: Renders remembered per worker for the status view (the oldest are forgotten first).
REMEMBERED = 10_000

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32),
    ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(","),
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    # Webhook bodies may carry images as base64: let the receiver's own limit apply (64 MiB).
    DATA_UPLOAD_MAX_MEMORY_SIZE=DEFAULT_MAX_BODY_SIZE,
)

# The API signs nothing: the unguessable last path segment is what keeps strangers out.
hub = NotificationHub()
receiver = WebhookReceiver(
    hub, path_token=os.environ.get("ADCREATIVE_WEBHOOK_TOKEN") or secrets.token_urlsafe(32)
)


class _Client:
    """This process's client, opened on first use (after gunicorn forked the worker)."""

    def __init__(self) -> None:
        self._client: SyncAdCreativeClient | None = None
        self._lock = threading.Lock()

    def get(self) -> SyncAdCreativeClient:
        with self._lock:
            if self._client is None:
                options: dict[str, Any] = {"push": hub}
                interval = os.environ.get("EXAMPLE_POLL_INTERVAL")  # tests: a long one shows push at work
                if interval:
                    seconds = float(interval)
                    options["poll_policy"] = PollPolicy(
                        initial_interval=seconds, max_interval=seconds, min_interval=seconds
                    )
                client = SyncAdCreativeClient(**options)
                client.open()  # closed at exit
                self._client = client
            return self._client


client = _Client()


@dataclass
class Render:
    """A render this worker started: its wait (on the client's loop) and when it was submitted."""

    submitted_at: float
    wait: concurrent.futures.Future[Progress]
    resolved_at: float | None = None


renders: OrderedDict[str, Render] = OrderedDict()
renders_lock = threading.Lock()  # the status view reads what the client's loop thread writes


def adcreative_webhook(request: HttpRequest, token: str) -> HttpResponse:
    """POST /webhooks/adcreative/<token>: checked here (method, token, size, body), handed to the client's
    loop. (A webhook carries no CSRF token: the route is ``csrf_exempt``, see ``urlpatterns``.)"""
    client.get()  # the hub feeds this process's client (opened if this is the first request)
    status, payload = receiver.handle_sync(
        request.headers,
        request.body,
        path=request.path,
        method=request.method or "",
        environ=request.META,  # gunicorn -w 2: each worker gets part of the messages
    )
    return HttpResponse(payload, status=status, content_type="application/json")


def start_background_removal(request: HttpRequest) -> JsonResponse:
    """Start removing the background of the image sent as the body; answers at once (202)."""
    if request.method != "POST":
        return JsonResponse({"error": "POST an image"}, status=405)
    submitted_at = time.monotonic()
    try:
        job = client.get().background_remover.remove(request.body)
    except InvalidRequestError as exc:  # not an image, empty body...
        return JsonResponse({"error": str(exc)}, status=422)
    render = Render(submitted_at, job.result_future(timeout=WAIT_TIMEOUT))

    def resolved(_: concurrent.futures.Future[Progress]) -> None:  # on the client's loop thread
        render.resolved_at = time.monotonic()

    with renders_lock:
        renders[job.process_id] = render
        while len(renders) > REMEMBERED:
            renders.popitem(last=False)
    render.wait.add_done_callback(resolved)
    return JsonResponse({"id": job.process_id, "status_url": f"/jobs/{job.process_id}"}, status=202)


def job_status(request: HttpRequest, process_id: str) -> JsonResponse:
    """A render's status, without account identifiers. One this worker started is answered from its
    wait (no request); another (another worker's, or from before a restart) costs one progress request."""
    with renders_lock:
        render = renders.get(process_id)
    if render is not None:
        if not render.wait.done() or render.resolved_at is None:
            return JsonResponse({"status": "running"})
        seconds = round(render.resolved_at - render.submitted_at, 4)
        error = render.wait.exception()
        if error is not None:
            return JsonResponse({"status": "failed", "error": type(error).__name__, "seconds": seconds})
        task_ids = list(render.wait.result().succeeded_task_ids)
        return JsonResponse({"status": "succeeded", "task_ids": task_ids, "seconds": seconds})
    try:
        progress = client.get().background_remover.process_progress(process_id)
    except (InvalidRequestError, NotFoundError):
        return JsonResponse({"error": "no such render"}, status=404)  # nothing of the request echoed
    if not progress.is_complete:
        return JsonResponse({"status": "running"})
    status = "failed" if progress.failed_task_ids and not progress.succeeded_task_ids else "succeeded"
    return JsonResponse({"status": status, "task_ids": list(progress.succeeded_task_ids), "seconds": None})


def stats(request: HttpRequest) -> JsonResponse:
    """This worker's wait counters: push messages taken, poll requests sent (no identifiers)."""
    counters = client.get().scheduler_stats
    return JsonResponse({"pid": os.getpid(), "pushes": counters["pushes"], "polls": counters["requests"]})


urlpatterns = [
    # csrf_exempt as a call, not a decorator: Django ships no type hints (mypy --strict would refuse it)
    path("webhooks/adcreative/<str:token>", csrf_exempt(adcreative_webhook)),
    path("background-removals", csrf_exempt(start_background_removal)),
    path("jobs/<str:process_id>", job_status),
    path("stats", stats),
]

application = get_wsgi_application()
