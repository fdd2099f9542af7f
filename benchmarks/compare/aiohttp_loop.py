"""The baseline's per-job loop on aiohttp, without the SDK: with msgspec models, or with the standard
library's ``json``.

One ``ClientSession`` (a connector of 100 connections). One asyncio task per job, all gathered, at most
100 requests in flight (as in the baseline): a token once, a multipart upload, a filtered
``CheckUserProgress`` every ``interval`` seconds until done, each succeeded task streamed to a file.

Two codecs (``params["codec"]``):

- ``msgspec``: structs and decoders built once (``dict[str, int | str]`` for ``tasks``, then the ``$``
  keys dropped: msgspec rejects ``"$id": "2"`` in a ``dict[str, int]``);
- ``json``: ``json.loads`` and plain dicts, the ``$`` keys skipped where ``tasks`` is read, as a user
  without a model library writes it.

This module does not import the SDK. Run by ``python -m benchmarks.compare``, one workload per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

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


@dataclass(frozen=True)
class State:
    """What the loop reads of a progress object, whichever codec decoded it."""

    process_id: str
    progress: float
    total: int
    completed: int
    tasks: dict[str, int]

    @property
    def is_complete(self) -> bool:
        """Progress 100, every task counted complete, every listed task in a terminal state."""
        return (
            self.progress >= 100
            and self.completed >= self.total
            and all(state in TERMINAL_STATES for state in self.tasks.values())
        )


def _from_dict(p: dict[str, Any]) -> State:
    tasks = {k: int(v) for k, v in p.get("tasks", {}).items() if not k.startswith("$")}
    return State(
        p["imageRenderProcessId"],
        p.get("progress", 0),
        p.get("totalTaskCount", 0),
        p.get("completedTaskCount", 0),
        tasks,
    )


@dataclass(frozen=True)
class Codec:
    """How response bodies become a token and progress states."""

    token: Callable[[bytes], str]
    progress: Callable[[bytes], State]
    listing: Callable[[bytes], list[State]]


def _json_listing(body: bytes) -> list[State]:
    data = json.loads(body)
    values = data["$values"] if isinstance(data, dict) else data
    return [_from_dict(p) for p in values]


def _msgspec_codec() -> Codec:
    """The msgspec codec (``_loop_msgspec``: msgspec is imported only for it, so that the json
    contender's process never imports msgspec, as a user of the standard library's json would not)."""
    from benchmarks.compare import _loop_msgspec as m

    return Codec(
        token=lambda body: m.TOKEN.decode(body).access_token,
        progress=lambda body: m.state_of(m.PROGRESS.decode(body)),
        listing=lambda body: [m.state_of(p) for p in m.PROGRESS_LIST.decode(body).values],
    )


def _json_codec() -> Codec:
    return Codec(
        token=lambda body: str(json.loads(body)["accessToken"]),
        progress=lambda body: _from_dict(json.loads(body)),
        listing=_json_listing,
    )


#: The codecs by name, each built when a contender asks for it.
CODECS: dict[str, Callable[[], Codec]] = {"msgspec": _msgspec_codec, "json": _json_codec}


class Api:
    """The API calls, on one ``ClientSession``; at most ``limit`` requests in flight (None: no bound),
    as in the httpx baseline (aiohttp's connector queues waiters cheaply, so the bound changes little)."""

    def __init__(
        self, http: aiohttp.ClientSession, application_id: str, limit: int | None, codec: Codec
    ) -> None:
        self.http = http
        self.application_id = application_id
        self.codec = codec
        self.slots: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(limit) if limit else contextlib.nullcontext()
        )

    async def get_token(self, credentials: dict[str, str]) -> str:
        """A JWT for the application."""
        body = {"applicationId": self.application_id, "jwtPrivateKey": credentials["jwt_private_key"]}
        route = f"{API}/Authorization/GenerateJwtToken"
        async with self.slots, self.http.post(route, json=body) as response:
            response.raise_for_status()
            return self.codec.token(await response.read())

    async def remove_background(self, item: Item) -> State:
        """Start a background removal (multipart upload)."""
        image = await asyncio.to_thread(item.path.read_bytes)
        form = aiohttp.FormData()
        form.add_field("applicationId", self.application_id)
        form.add_field("userId", item.user)
        form.add_field("uploadedImage", image, filename=item.path.name, content_type="image/png")
        route = f"{API}/Image/BackgroundRemoving/AdCreative"
        async with self.slots, self.http.post(route, data=form) as response:
            response.raise_for_status()
            return self.codec.progress(await response.read())

    async def check_progress(self, user: str, process_id: str) -> State:
        """One process's progress: CheckUserProgress filtered by its id."""
        params = {"userId": user, "imageBackgroundRemoverProcessId": process_id}
        route = f"{API}/Image/BackgroundRemoving/CheckUserProgress"
        async with self.slots, self.http.get(route, params=params) as response:
            response.raise_for_status()
            listing = self.codec.listing(await response.read())
        for state in listing:
            if state.process_id == process_id:
                return state
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
    state = await api.remove_background(item)
    run.submitted.append(time.monotonic())
    process_id = state.process_id
    while not state.is_complete:
        await asyncio.sleep(run.interval)
        state = await api.check_progress(item.user, process_id)
    run.detected[process_id] = time.monotonic()
    for task_id, task_state in state.tasks.items():
        if task_state == SUCCEEDED:
            await api.download(process_id, task_id, run.out_dir / f"{task_id}.png")


async def per_job(run: BulkRun) -> None:
    """Every item at once; requests bounded by the pool size (``params["bounded"]``, default true);
    the codec is ``params["codec"]`` (default msgspec)."""
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
        codec = CODECS[str(run.params.get("codec", "msgspec"))]()
        api = Api(http, credentials["application_id"], limit, codec)
        http.headers["Authorization"] = f"Bearer {await api.get_token(credentials)}"
        results = await asyncio.gather(
            *(process_one(api, run, item) for item in run.items), return_exceptions=True
        )
    record_errors(run, results)


if __name__ == "__main__":
    sys.exit(child_main({"per-job": per_job}))
