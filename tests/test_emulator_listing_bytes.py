"""The emulator's progress listings are built from each process's cached encoding: their bytes are
exactly those of the objects built anew (``progress_object`` through ``json_response``), wrapped with
Newtonsoft's ``"$id"`` numbering or plain, as processes start, finish, fail and are edited."""

from __future__ import annotations

import random

import pytest

from adcreative_async.testing._options import EmulatorOptions
from adcreative_async.testing._responses import _encoder, _Ids, progress_list, progress_object
from adcreative_async.testing._state import (
    FEATURE_BACKGROUND_REMOVAL,
    FEATURE_GENERATION,
    Process,
    Task,
    TaskState,
)


def _reference(processes: list[Process], options: EmulatorOptions, *, wrapped: bool) -> bytes:
    if not wrapped:
        return _encoder.encode([progress_object(p, options) for p in processes])
    ids = _Ids()
    wrapper = {"$id": ids.next()}
    wrapper["$values"] = [progress_object(p, options, ids) for p in processes]  # type: ignore[assignment]
    return _encoder.encode(wrapper)


def _process(n: int, tasks: int, feature: str) -> Process:
    return Process(
        process_id=f"00000000-0000-4000-8000-{n:012d}",
        application_id="11111111-2222-4333-8444-555555555555",
        user_id=f"66666666-7777-4888-9999-{n:012d}",
        feature=feature,
        render_kind=None if feature == FEATURE_BACKGROUND_REMOVAL else 1,
        render_type=None,
        created_at=0.0,
        visible_at=0.0,
        tasks={
            f"aaaaaaaa-0000-4000-8000-{n:06d}{t:06d}": Task(
                task_id=f"aaaaaaaa-0000-4000-8000-{n:06d}{t:06d}",
                state=TaskState.STARTED,
                finishes_at=None,
                fails=False,
            )
            for t in range(tasks)
        },
        inputs=None,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("partial", [False, True])
def test_a_listing_has_the_bytes_of_its_objects_as_processes_change(wrapped: bool, partial: bool) -> None:
    dice = random.Random(7)
    options = EmulatorOptions(partial_tasks=partial)
    feature = FEATURE_BACKGROUND_REMOVAL if wrapped else FEATURE_GENERATION
    processes = [_process(n, dice.choice([1, 2, 4]), feature) for n in range(30)]
    for _ in range(40):  # the listing read, then some tasks move on (and back, as an edit does)
        body = progress_list(processes, options, wrapped=wrapped).body
        assert body == _reference(processes, options, wrapped=wrapped)
        for process in dice.sample(processes, 5):
            task = dice.choice(list(process.tasks.values()))
            task.state = dice.choice([TaskState.STARTED, TaskState.SUCCEEDED, TaskState.FAILED])
            task.error_message = "it failed" if task.state == TaskState.FAILED else ""
    other = EmulatorOptions(partial_tasks=not partial)  # the options changed: nothing stale is served
    assert progress_list(processes, other, wrapped=wrapped).body == _reference(
        processes, other, wrapped=wrapped
    )
    assert progress_list([], options, wrapped=wrapped).body == _reference([], options, wrapped=wrapped)
