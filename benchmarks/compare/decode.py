"""Decoding one large CheckUserProgress answer: the SDK against json.loads + dataclasses and pydantic v2.

The body is what the seeds show, at scale: Newtonsoft's ``{"$id": "1", "$values": [...]}`` wrapper, a
``$id`` in every progress object and in every ``tasks`` map. Each contender turns it into the same typed
objects with the same fields (the SDK's :class:`~adcreative_async.Progress` fields), ``$`` keys dropped:

- ``sdk``: :func:`adcreative_async._models.decode_progress_list` (msgspec, decoder built once).
- ``json+dataclasses``: ``json.loads``, then each dict into a frozen, slotted dataclass, ``$`` keys filtered.
- ``pydantic``: ``model_validate_json`` (pydantic-core's parser) on a wrapper model, a ``mode="before"``
  validator dropping ``$`` keys from ``tasks``; camelCase aliases generated.

All three run in one process, alternating (the order rotates every repetition), after a warm-up; each
result is checked equal to the others'. Run by ``python -m benchmarks.compare``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from adcreative_async._models import decode_progress_list

WARMUP = 5


def listing(count: int, seed: int = 1) -> bytes:
    """A CheckUserProgress answer of ``count`` background removals, shaped like the seeds'."""
    rng = random.Random(seed)

    def guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    application, user = guid(), guid()
    next_id = iter(range(1, 4 * count + 2))
    wrapper: dict[str, Any] = {"$id": str(next(next_id))}
    values: list[dict[str, Any]] = []
    for i in range(count):
        done = i % 4 != 0
        item: dict[str, Any] = {"$id": str(next(next_id))}
        item |= {
            "messageType": "ImageBackgroundRemovingProgress",
            "requestRenderState": 5 if done else 1,
            "applicationId": application,
            "userId": user,
            "imageRenderProcessId": guid(),
            "totalTaskCount": 1,
            "completedTaskCount": 1 if done else 0,
            "progress": 100 if done else 0,
            "tasks": {"$id": str(next(next_id)), guid(): 5 if done else 1},
            "renderType": 8,
            "isSuccessful": True,
            "errorMessage": "",
        }
        values.append(item)
    wrapper["$values"] = values
    return json.dumps(wrapper, indent=2).encode()  # indented, as the seeds show it


# --------------------------------------------------------------------------- json.loads + dataclasses


@dataclass(frozen=True, slots=True)
class PlainProgress:
    """The SDK's Progress fields, as a plain dataclass."""

    image_render_process_id: str
    message_type: str
    request_render_state: int
    application_id: str
    user_id: str
    total_task_count: int
    completed_task_count: int
    progress: float
    tasks: dict[str, int]
    render_kind: int | None
    render_type: int | None
    is_successful: bool
    error_message: str | None


def plain_decode(body: bytes) -> list[PlainProgress]:
    """``json.loads``, unwrap ``$values``, drop ``$`` keys, build dataclasses."""
    data = json.loads(body)
    items: list[dict[str, Any]] = data["$values"] if isinstance(data, dict) else data
    return [
        PlainProgress(
            image_render_process_id=d["imageRenderProcessId"],
            message_type=d.get("messageType", ""),
            request_render_state=d.get("requestRenderState", 0),
            application_id=d.get("applicationId", ""),
            user_id=d.get("userId", ""),
            total_task_count=d.get("totalTaskCount", 0),
            completed_task_count=d.get("completedTaskCount", 0),
            progress=d.get("progress", 0),
            tasks={k: v for k, v in d.get("tasks", {}).items() if not k.startswith("$")},
            render_kind=d.get("renderKind"),
            render_type=d.get("renderType"),
            is_successful=d.get("isSuccessful", True),
            error_message=d.get("errorMessage", ""),
        )
        for d in items
    ]


# ------------------------------------------------------------------------------------------- pydantic


class PydanticProgress(BaseModel):
    """The SDK's Progress fields, as a pydantic v2 model."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    image_render_process_id: str
    message_type: str = ""
    request_render_state: int = 0
    application_id: str = ""
    user_id: str = ""
    total_task_count: int = 0
    completed_task_count: int = 0
    progress: int | float = 0
    tasks: dict[str, int] = Field(default_factory=dict)
    render_kind: int | None = None
    render_type: int | None = None
    is_successful: bool = True
    error_message: str | None = ""

    @field_validator("tasks", mode="before")
    @classmethod
    def _drop_metadata(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if not k.startswith("$")}
        return value


class PydanticList(BaseModel):
    """The ``$values`` wrapper."""

    values: list[PydanticProgress] = Field(default_factory=list, alias="$values")


def pydantic_decode(body: bytes) -> list[PydanticProgress]:
    """``model_validate_json`` on the wrapper."""
    return PydanticList.model_validate_json(body).values


# -------------------------------------------------------------------------------------------- the run

DECODERS: dict[str, Callable[[bytes], Sequence[Any]]] = {
    "sdk": decode_progress_list,
    "json+dataclasses": plain_decode,
    "pydantic": pydantic_decode,
}


def _normalised(items: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            p.image_render_process_id,
            p.request_render_state,
            p.completed_task_count,
            p.progress,
            dict(p.tasks),
            p.render_type,
            p.is_successful,
        )
        for p in items
    ]


def child_decode(params: dict[str, Any]) -> dict[str, Any]:
    """Every decoder ``reps`` times on the same body, alternating; seconds per decode."""
    body = listing(params["processes"])
    expected = _normalised(DECODERS["sdk"](body))
    for name, decode in DECODERS.items():
        if _normalised(decode(body)) != expected:
            raise AssertionError(f"{name} decodes the listing differently from the SDK")
    names = list(DECODERS)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(WARMUP + params["reps"]):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            decode = DECODERS[name]
            start = time.perf_counter()
            decode(body)
            elapsed = time.perf_counter() - start
            if rep >= WARMUP:
                samples[name].append(elapsed)
    return {
        "processes": params["processes"],
        "body_bytes": len(body),
        "reps": params["reps"],
        "seconds": samples,
        "median_seconds": {name: statistics.median(s) for name, s in samples.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``--child decode PARAMS``: print the result as one JSON line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[:2] != ["--child", "decode"]:
        print("usage: python -m benchmarks.compare.decode --child decode PARAMS", file=sys.stderr)
        return 2
    print(json.dumps(child_decode(json.loads(args[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
