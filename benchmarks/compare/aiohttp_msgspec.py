"""The baseline's per-job loop on aiohttp and msgspec (the SDK's own libraries), without the SDK.

One ``ClientSession`` (a connector of 100 connections); msgspec structs, decoders built once
(``dict[str, int | str]`` for ``tasks``, then the ``$`` keys dropped: msgspec rejects ``"$id": "2"`` in
a ``dict[str, int]``). One asyncio task per job, all gathered, at most 100 requests in flight (as in the
baseline): a token once, a multipart upload, a filtered ``CheckUserProgress`` every ``interval`` seconds
until done, each succeeded task streamed to a file.

This module does not import the SDK. Run by ``python -m benchmarks.compare``, one workload per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from benchmarks.compare._workload import (
    CONNECTIONS,
    SUCCEEDED,
    TERMINAL_STATES,
    BulkRun,
    Item,
    child_main,
    record_errors,
)

API = "/api/v1"
CHUNK = 64 * 1024


class Token(msgspec.Struct, rename="camel"):
    """GenerateJwtToken's answer (only what is used)."""

    access_token: str


class Progress(msgspec.Struct, frozen=True, rename="camel"):
    """A render process's progress."""

    image_render_process_id: str
    request_render_state: int = 0
    total_task_count: int = 0
    completed_task_count: int = 0
    progress: float = 0
    tasks: dict[str, int | str] = {}
    is_successful: bool = True
    error_message: str | None = None

    @property
    def task_states(self) -> dict[str, int]:
        """The tasks without Newtonsoft's ``$id``."""
        return {k: int(v) for k, v in self.tasks.items() if not k.startswith("$")}

    @property
    def is_complete(self) -> bool:
        """Progress 100, every task counted complete, every listed task in a terminal state."""
        return (
            self.progress >= 100
            and self.completed_task_count >= self.total_task_count
            and all(state in TERMINAL_STATES for state in self.task_states.values())
        )


class ProgressList(msgspec.Struct):
    """CheckUserProgress's ``{"$id": "1", "$values": [...]}`` wrapper."""

    values: list[Progress] = msgspec.field(name="$values", default_factory=list)


TOKEN = msgspec.json.Decoder(Token)
PROGRESS = msgspec.json.Decoder(Progress)
PROGRESS_LIST = msgspec.json.Decoder(ProgressList)


class Api:
    """The API calls, on one ``ClientSession``; at most ``limit`` requests in flight (None: no bound),
    as in the httpx baseline (aiohttp's connector queues waiters cheaply, so the bound changes little)."""

    def __init__(self, http: aiohttp.ClientSession, application_id: str, limit: int | None) -> None:
        self.http = http
        self.application_id = application_id
        self.slots: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(limit) if limit else contextlib.nullcontext()
        )

    async def get_token(self, credentials: dict[str, str]) -> str:
        """A JWT for the application."""
        body = {"applicationId": self.application_id, "jwtPrivateKey": credentials["jwt_private_key"]}
        route = f"{API}/Authorization/GenerateJwtToken"
        async with self.slots, self.http.post(route, json=body) as response:
            response.raise_for_status()
            return TOKEN.decode(await response.read()).access_token

    async def remove_background(self, item: Item) -> Progress:
        """Start a background removal (multipart upload)."""
        image = await asyncio.to_thread(item.path.read_bytes)
        form = aiohttp.FormData()
        form.add_field("applicationId", self.application_id)
        form.add_field("userId", item.user)
        form.add_field("uploadedImage", image, filename=item.path.name, content_type="image/png")
        route = f"{API}/Image/BackgroundRemoving/AdCreative"
        async with self.slots, self.http.post(route, data=form) as response:
            response.raise_for_status()
            return PROGRESS.decode(await response.read())

    async def check_progress(self, user: str, process_id: str) -> Progress:
        """One process's progress: CheckUserProgress filtered by its id."""
        params = {"userId": user, "imageBackgroundRemoverProcessId": process_id}
        route = f"{API}/Image/BackgroundRemoving/CheckUserProgress"
        async with self.slots, self.http.get(route, params=params) as response:
            response.raise_for_status()
            listing = PROGRESS_LIST.decode(await response.read())
        for progress in listing.values:
            if progress.image_render_process_id == process_id:
                return progress
        raise LookupError(f"process {process_id} is not listed")

    async def download(self, process_id: str, task_id: str, dest: Path) -> None:
        """Stream one task's result to a file."""
        params = {
            "applicationId": self.application_id,
            "taskId": task_id,
            "imageBackgroundRemoverProcessId": process_id,
            "lowResolution": "false",
        }
        route = f"{API}/Image/BackgroundRemoving/Download"
        async with self.slots, self.http.get(route, params=params) as response:
            response.raise_for_status()
            with open(dest, "wb") as file:  # noqa: ASYNC230 - small files, written as users commonly do
                async for chunk in response.content.iter_chunked(CHUNK):
                    file.write(chunk)


async def process_one(api: Api, run: BulkRun, item: Item) -> None:
    """Submit, poll every ``run.interval`` seconds until done, download every succeeded task."""
    progress = await api.remove_background(item)
    run.submitted.append(time.monotonic())
    process_id = progress.image_render_process_id
    while not progress.is_complete:
        await asyncio.sleep(run.interval)
        progress = await api.check_progress(item.user, process_id)
    run.detected[process_id] = time.monotonic()
    for task_id, state in progress.task_states.items():
        if state == SUCCEEDED:
            await api.download(process_id, task_id, run.out_dir / f"{task_id}.png")


async def per_job(run: BulkRun) -> None:
    """Every item at once; requests bounded by the pool size (``params["bounded"]``, default true)."""
    credentials = run.credentials
    headers = {
        "Accept": "application/json",
        "x-api-key": credentials["api_key"],
        "x-api-secret": credentials["api_secret"],
    }
    async with aiohttp.ClientSession(
        credentials["base_url"],
        headers=headers,
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
    ) as http:
        limit = CONNECTIONS if run.params.get("bounded", True) else None
        api = Api(http, credentials["application_id"], limit)
        http.headers["Authorization"] = f"Bearer {await api.get_token(credentials)}"
        results = await asyncio.gather(
            *(process_one(api, run, item) for item in run.items), return_exceptions=True
        )
    record_errors(run, results)


if __name__ == "__main__":
    sys.exit(child_main({"per-job": per_job}))
