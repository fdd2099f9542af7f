"""The msgspec models of the hand-written aiohttp loop (``aiohttp_loop``'s ``msgspec`` codec), apart
so that its ``json`` codec's process never imports msgspec."""

from __future__ import annotations

import msgspec

from benchmarks.compare.aiohttp_loop import State


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


class ProgressList(msgspec.Struct):
    """CheckUserProgress's ``{"$id": "1", "$values": [...]}`` wrapper."""

    values: list[Progress] = msgspec.field(name="$values", default_factory=list)


TOKEN = msgspec.json.Decoder(Token)
PROGRESS = msgspec.json.Decoder(Progress)
PROGRESS_LIST = msgspec.json.Decoder(ProgressList)


def state_of(p: Progress) -> State:
    """What the loop reads of a decoded progress object."""
    tasks = {k: int(v) for k, v in p.tasks.items() if not k.startswith("$")}
    return State(p.image_render_process_id, p.progress, p.total_task_count, p.completed_task_count, tasks)
