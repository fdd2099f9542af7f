"""The baseline: the bulk workload as a competent user would write it without the SDK.

httpx for HTTP (one ``AsyncClient``, keep-alive, a pool of 100 connections, all kept alive) and pydantic
v2 for the models (``model_validate_json``, the Rust parser; a ``mode="before"`` validator drops
Newtonsoft's ``$id`` from ``tasks``). One asyncio task per job, all gathered, with at most 100 requests
in flight (a semaphore as large as the pool, see :class:`Api`): a token once, a multipart upload, then
every second a ``CheckUserProgress`` filtered by the process id until the process is done (the
documented rule), then each succeeded task streamed to a file. No retries (the emulator does not fail).

This module imports neither the SDK nor aiohttp: its process's memory and CPU are the baseline's own.
Run by ``python -m benchmarks.compare``, one workload per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

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


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys (``$id``, ``messageType``…) ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Token(ApiModel):
    """GenerateJwtToken's answer (only what is used)."""

    access_token: str


class Progress(ApiModel):
    """A render process's progress."""

    image_render_process_id: str
    request_render_state: int = 0
    total_task_count: int = 0
    completed_task_count: int = 0
    progress: float = 0
    tasks: dict[str, int] = Field(default_factory=dict)
    is_successful: bool = True
    error_message: str | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _drop_metadata(cls, value: Any) -> Any:
        """Newtonsoft puts ``"$id": "2"`` inside the tasks map: metadata, not a task."""
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if not k.startswith("$")}
        return value

    @property
    def is_complete(self) -> bool:
        """Progress 100, every task counted complete, every listed task in a terminal state."""
        return (
            self.progress >= 100
            and self.completed_task_count >= self.total_task_count
            and all(state in TERMINAL_STATES for state in self.tasks.values())
        )


class ProgressList(BaseModel):
    """CheckUserProgress's ``{"$id": "1", "$values": [...]}`` wrapper."""

    values: list[Progress] = Field(default_factory=list, alias="$values")


class Api:
    """The API calls, on one ``AsyncClient``; at most ``limit`` requests in flight (None: no bound).

    The bound is what a competent user adds: queueing 1,000 requests on httpx's pool costs O(queued x
    connections) per request in httpcore 1.0 (encode/httpx#3215), so requests wait on a semaphore
    instead, as many as there are connections.
    """

    def __init__(self, http: httpx.AsyncClient, application_id: str, limit: int | None) -> None:
        self.http = http
        self.application_id = application_id
        self.slots: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(limit) if limit else contextlib.nullcontext()
        )

    async def get_token(self, credentials: dict[str, str]) -> str:
        """A JWT for the application."""
        body = {"applicationId": self.application_id, "jwtPrivateKey": credentials["jwt_private_key"]}
        async with self.slots:
            response = await self.http.post(f"{API}/Authorization/GenerateJwtToken", json=body)
        response.raise_for_status()
        return Token.model_validate_json(response.content).access_token

    async def remove_background(self, item: Item) -> Progress:
        """Start a background removal (multipart upload)."""
        image = await asyncio.to_thread(item.path.read_bytes)
        async with self.slots:
            response = await self.http.post(
                f"{API}/Image/BackgroundRemoving/AdCreative",
                data={"applicationId": self.application_id, "userId": item.user},
                files={"uploadedImage": (item.path.name, image, "image/png")},
            )
        response.raise_for_status()
        return Progress.model_validate_json(response.content)

    async def check_progress(self, user: str, process_id: str) -> Progress:
        """One process's progress: CheckUserProgress filtered by its id."""
        async with self.slots:
            response = await self.http.get(
                f"{API}/Image/BackgroundRemoving/CheckUserProgress",
                params={"userId": user, "imageBackgroundRemoverProcessId": process_id},
            )
        response.raise_for_status()
        for progress in ProgressList.model_validate_json(response.content).values:
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
        async with self.slots, self.http.stream("GET", route, params=params) as response:
            response.raise_for_status()
            with open(dest, "wb") as file:  # noqa: ASYNC230 - small files, written as users commonly do
                async for chunk in response.aiter_bytes():
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
    for task_id, state in progress.tasks.items():
        if state == SUCCEEDED:
            await api.download(process_id, task_id, run.out_dir / f"{task_id}.png")


async def per_job(run: BulkRun) -> None:
    """Every item at once; requests bounded by the pool size (``params["bounded"]``, default true)."""
    credentials = run.credentials
    async with httpx.AsyncClient(
        base_url=credentials["base_url"],
        headers={
            "Accept": "application/json",
            "x-api-key": credentials["api_key"],
            "x-api-secret": credentials["api_secret"],
        },
        limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
        timeout=httpx.Timeout(60.0),  # also the pool wait (unbounded, 1,000 jobs queue for 100 connections)
        trust_env=False,
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
