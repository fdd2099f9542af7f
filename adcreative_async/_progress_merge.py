"""Merging what is known of a render process: push messages into the cached snapshot, and a poll's
partial ``tasks`` map into what an earlier poll or message told.

Counts are never invented: a completed count is raised only to the tasks known terminal, and a task the
server already counted is never counted twice. Used by the poll scheduler (:mod:`._polling`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from ._models import TERMINAL_STATES, Progress, RenderState
from ._poll_state import Snapshot

if TYPE_CHECKING:
    from .notifications._messages import ProgressNotification

__all__ = ["SILENT_PROGRESS_FIELDS", "keep_known_tasks", "merge_progress", "with_task_state"]


def _task_key(tasks: Mapping[str, int], task_id: str) -> str:
    """The key ``tasks`` already uses for ``task_id`` (GUIDs compared case-insensitively), else it."""
    if task_id in tasks:
        return task_id
    lowered = task_id.lower()
    for key in tasks:
        if key.lower() == lowered:
            return key
    return task_id


def _counted(progress: Progress, tasks: dict[str, RenderState]) -> Progress:
    """``progress`` with ``tasks``, its completed count raised to the tasks known terminal (evidence, so
    never more than are: a task counted by the server but not listed is not counted twice), and its
    percentage raised to match when the total is known."""
    completed = progress.completed_task_count
    total = progress.total_task_count
    terminal = sum(1 for state in tasks.values() if state in TERMINAL_STATES)
    if terminal > completed:
        completed = min(terminal, total) if total else terminal
    percent = progress.progress
    if total:
        percent = max(percent, completed * 100 // total)
    unchanged = completed == progress.completed_task_count and percent == progress.progress
    if unchanged and tasks == progress.tasks:
        return progress
    return msgspec.structs.replace(progress, tasks=tasks, completed_task_count=completed, progress=percent)


def with_task_state(progress: Progress, task_id: str, state: int) -> Progress:
    """``progress`` with one task's state set (from a task-completed message), counts updated.

    A task the snapshot does not list (the ``tasks`` map may be partial) is added once; the completed
    count becomes the larger of the server's count and the tasks known terminal, so a task the server
    already counted is never counted again.
    """
    tasks = dict(progress.tasks)
    tasks[_task_key(tasks, task_id)] = RenderState(state)
    return _counted(progress, tasks)


def merge_progress(known: Progress | None, message: ProgressNotification) -> Progress:
    """What a progress message says, merged into what is known of the process.

    The docs show no progress message (all ten types "share one structure", reference §2.5): a field a
    message leaves at its default says nothing (assumed: :data:`SILENT_PROGRESS_FIELDS`). Known tasks are
    kept and the message's states set on them; counts come from the message only when it has a total;
    the percentage only when it has counts or a non-zero value; the state, outcome and render
    kind/type only when given. Counts are never invented (see :func:`with_task_state`).
    """
    said = message.to_progress()
    if known is None:
        return _counted(said, dict(said.tasks))
    tasks = dict(known.tasks)
    for task_id, state in said.tasks.items():
        tasks[_task_key(tasks, task_id)] = state
    has_counts = said.total_task_count > 0
    merged = msgspec.structs.replace(
        known,
        message_type=said.message_type or known.message_type,
        application_id=said.application_id or known.application_id,
        user_id=said.user_id or known.user_id,
        request_render_state=said.request_render_state or known.request_render_state,
        total_task_count=said.total_task_count if has_counts else known.total_task_count,
        completed_task_count=said.completed_task_count if has_counts else known.completed_task_count,
        progress=said.progress if has_counts or said.progress else known.progress,
        render_kind=said.render_kind if said.render_kind is not None else known.render_kind,
        render_type=said.render_type if said.render_type is not None else known.render_type,
        is_successful=said.is_successful and known.is_successful,
        error_message=said.error_message or known.error_message,
        tasks=known.tasks,
    )
    return _counted(merged, tasks)


#: assumed: the progress message's body is undocumented; a field at its default value in a message
#: (absent, or zero / empty / null) says nothing about the process, and what is known is kept.
SILENT_PROGRESS_FIELDS: tuple[str, ...] = (
    "tasks",
    "total_task_count",
    "completed_task_count",
    "progress",
    "request_render_state",
    "render_kind",
    "render_type",
    "error_message",
)


def keep_known_tasks(old: Snapshot, new: Progress, not_before: float) -> Progress:
    """A poll's answer, keeping the task states a partial ``tasks`` map leaves out (the seeds list 2 of
    10): a task learnt earlier in the same cycle (from a push, or an earlier poll) stays known."""
    if old.sent_at < not_before:
        return new  # the old snapshot is of a previous cycle
    old_tasks = old.progress.tasks
    new_tasks = new.tasks
    if len(new_tasks) >= len(old_tasks) and all(task in new_tasks for task in old_tasks):
        return new
    tasks = dict(old_tasks)
    for task_id, state in new_tasks.items():
        tasks[_task_key(tasks, task_id)] = state
    return _counted(new, tasks)
