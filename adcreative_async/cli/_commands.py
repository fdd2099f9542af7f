"""The subcommands that talk to the API: ``remove-bg``, ``generate``, ``edit``, ``status``, ``download``.

Each is ``async def command(session) -> exit code`` on the public SDK: it shows live rows on the session's
display, fills ``session.document`` (printed as JSON with ``--json``) and prints a summary table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from .. import (
    AdCreativeClient,
    AdCreativeError,
    BulkOutcome,
    Progress,
    RenderJob,
    RenderResource,
    RenderState,
    TaskUpdate,
)
from ..ledger import RenderRequest, RunLedger
from ._common import EXIT_FAILED, EXIT_OK, Session, UsageError, feature_resource, one_line
from ._inputs import Brief, ImageItem, refuse_shared_names
from ._preflight import check_credentials
from ._runs import LEDGER_FILE, interrupted_message, open_run_ledger, say_interrupted, spend_line

__all__ = ["download", "edit", "generate", "remove_bg", "status"]

#: Features ``status`` and ``download`` look in when ``--feature`` is not given.
FEATURES = ("creatives", "background-remover")


def _error(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    return {"type": type(exc).__name__, "message": str(exc)}


def _short(exc: BaseException | None) -> str:
    """An item's error on one line, whole (the API's reason is what the operator acts on); "" for none."""
    return "" if exc is None else one_line(exc)


def _state_name(state: int) -> str:
    return RenderState(state).name.lower().replace("_", " ")


def _render_status(update: TaskUpdate) -> str:
    progress = update.progress
    return f"rendering {progress.completed_task_count}/{progress.total_task_count} tasks"


# --------------------------------------------------------------------------------------- remove-bg


async def remove_bg(session: Session) -> int:
    """``adcreative remove-bg PATHS... -o DIR``: remove the background of every image, in bulk; resumable
    (the run ledger in DIR) unless ``--no-ledger``."""
    await check_credentials(session.client.background_remover)
    if session.args.dry_run:  # what a run would spend, from the ledger as it is: nothing written
        requests = [_bg_request(item) for item in session.args.items]
        path = None if session.args.no_ledger else Path(session.args.output) / LEDGER_FILE
        session.say(f"dry run: {await spend_line(requests, None, path)}; nothing was sent")
        session.document["dry_run"] = True
        return EXIT_OK
    ledger = await open_run_ledger(session, Path(session.args.output))
    if ledger is None:
        return await _remove_bg_unrecorded(session)
    try:
        return await _remove_bg_recorded(session, ledger)
    finally:
        with anyio.CancelScope(shield=True):
            await ledger.close()


def _bg_request(item: ImageItem) -> RenderRequest:
    return RenderRequest.remove_background(item.path, label=str(item.path))


async def _remove_bg_recorded(session: Session, ledger: RunLedger) -> int:
    args = session.args
    items: list[ImageItem] = args.items
    out = Path(args.output)
    display = session.display
    rows = [display.add(item.label) for item in items]

    def on_update(outcome: BulkOutcome[RenderRequest], update: TaskUpdate) -> None:
        status = "downloading" if update.succeeded else _render_status(update)
        display.update(rows[outcome.index], status=status, completed=update.progress.progress)

    def name(fields: Any) -> str:  # a function of the input's identity (ImageItem.output_name)
        item: ImageItem = items[fields["index"]]
        return item.output_name(fields["suffix"])

    requests = [_bg_request(item) for item in items]
    session.say(await spend_line(requests, ledger))
    results: list[dict[str, Any]] = [{} for _ in items]
    table: list[list[Any]] = [[] for _ in items]
    resumed = 0
    try:
        async with session.client.bulk(
            requests,
            dest=out,
            ledger=ledger,
            name=name,
            upload_concurrency=args.concurrency,
            download_concurrency=args.concurrency,
            item_timeout=args.timeout,
            max_renders=getattr(args, "max_renders", None),
            on_update=on_update,
        ) as run:
            async for outcome in run:
                index, item, job, error = outcome.index, items[outcome.index], outcome.job, outcome.error
                ok = outcome.ok
                resumed += outcome.resumed
                before = " (before)" if outcome.resumed else ""
                display.done(
                    rows[index],
                    ok=ok,
                    status=(
                        f"saved {outcome.files[0].name}{before}" if ok and outcome.files else _short(error)
                    ),
                )
                results[index] = {
                    "input": str(item.path),
                    "ok": ok,
                    "resumed": outcome.resumed,
                    "process_id": job.process_id if job else None,
                    "task_ids": list(job.task_ids) if job else [],
                    "files": [str(f) for f in outcome.files],
                    "error": _error(error),
                }
                table[index] = [
                    str(item.path),
                    ("ok" if ok else "FAILED") + before,
                    ", ".join(str(f) for f in outcome.files) if ok else _short(error),
                ]
    except anyio.get_cancelled_exc_class():
        display.close()  # the live display first: it would erase what follows
        with anyio.CancelScope(shield=True):
            labels = [request.label for request in requests]
            say_interrupted(await interrupted_message(ledger, labels, args.command_line))
        raise
    failed = _report_items(session, results, output=str(out), resumed=resumed)
    display.close()
    rendered = len(items) - resumed
    session.summary(
        f"Background removal: {len(items) - failed} of {len(items)} succeeded "
        f"({rendered} finished in this run, {resumed} finished before and not rendered again)",
        ["input", "result", "output"],
        table,
        failed=[not r["ok"] for r in results],
    )
    return EXIT_FAILED if failed else EXIT_OK


async def _remove_bg_unrecorded(session: Session) -> int:
    args = session.args
    items: list[ImageItem] = args.items
    out = Path(args.output)
    display = session.display
    user_id = session.user_id()
    rows = [display.add(item.label) for item in items]

    def on_update(outcome: BulkOutcome[tuple[int, ImageItem]], update: TaskUpdate) -> None:
        row = rows[outcome.item[0]]
        status = "downloading" if update.succeeded else _render_status(update)
        display.update(row, status=status, completed=update.progress.progress)

    async def submit(client: AdCreativeClient, entry: tuple[int, ImageItem]) -> RenderJob:
        index, item = entry
        display.update(rows[index], status="uploading")
        job = await client.background_remover.remove(item.path, user_id=user_id)
        display.update(rows[index], status="submitted")
        return job

    def name(fields: Any) -> str:  # straight to the input's own name (checked before the start call)
        item: ImageItem = items[fields["index"]]
        return item.output_name(fields["suffix"])

    results: list[dict[str, Any]] = [{} for _ in items]
    table: list[list[Any]] = [[] for _ in items]
    async with session.client.bulk(
        list(enumerate(items)),
        submit,
        dest=out,
        name=name,
        upload_concurrency=args.concurrency,
        download_concurrency=args.concurrency,
        item_timeout=args.timeout,
        max_renders=getattr(args, "max_renders", None),
        on_update=on_update,
    ) as run:
        async for outcome in run:
            index, item = outcome.item
            files = outcome.files
            error = outcome.error
            ok = error is None
            job = outcome.job
            display.done(
                rows[index], ok=ok, status=f"saved {files[0].name}" if ok and files else _short(error)
            )
            results[index] = {
                "input": str(item.path),
                "ok": ok,
                "process_id": job.process_id if job else None,
                "task_ids": list(job.task_ids) if job else [],
                "files": [str(f) for f in files],
                "error": _error(error),
            }
            table[index] = [
                str(item.path),
                "ok" if ok else "FAILED",
                ", ".join(str(f) for f in files) if ok else _short(error),
            ]
    failed = _report_items(session, results, output=str(out))
    display.close()
    session.summary(
        f"Background removal: {len(items) - failed} of {len(items)} succeeded",
        ["input", "result", "output"],
        table,
        failed=[not r["ok"] for r in results],
    )
    return EXIT_FAILED if failed else EXIT_OK


def _report_items(session: Session, results: list[dict[str, Any]], **extra: Any) -> int:
    """Set the JSON document of a command run item by item (each result has an ``ok``); the number
    that failed."""
    not_started = sum(1 for r in results if (r.get("error") or {}).get("type") == "NotStartedError")
    failed = sum(1 for r in results if not r["ok"]) - not_started
    session.document = {
        "ok": failed == 0,
        **extra,
        "succeeded": len(results) - failed - not_started,
        "failed": failed,
        "not_started": not_started,
        "items": results,
    }
    if not_started:
        session.say(
            f"--max-renders: {getattr(session.args, 'max_renders', None)} start call(s) sent; {not_started} "
            "input(s) not started: run the same command again to go on (nothing done is sent again)"
        )
    return failed


# ---------------------------------------------------------------------------------------- generate


def _task_rows(
    label: str, job: RenderJob | None, files: Sequence[Path], error: BaseException | None
) -> list[list[Any]]:
    if job is None:
        return [[label, "-", "-", "FAILED", _short(error)]]
    by_task = {f.stem.lower(): f for f in files}
    for position, task_id in enumerate(job.task_ids):  # files named after their brief: "<brief>-<n>"
        by_task.update({task_id.lower(): f for f in files if f.stem.endswith(f"-{position + 1}")})
    tasks = job.progress.tasks if job.progress is not None else dict.fromkeys(job.task_ids, 1)
    return [
        [label, job.process_id, task_id, _state_name(state), str(by_task.get(task_id.lower(), ""))]
        for task_id, state in tasks.items()
    ] or [[label, job.process_id, "-", "-", _short(error)]]


def _job_document(job: RenderJob | None) -> dict[str, Any] | None:
    return None if job is None else job.to_wire()


async def generate(session: Session) -> int:
    """``adcreative generate --brief FILE``: generate ad creatives from briefs; wait; download."""
    args = session.args
    briefs: list[Brief] = args.briefs
    display = session.display
    out = Path(args.output) if args.output else None
    rows = [display.add(brief.label) for brief in briefs]
    user_id = session.user_id() if args.no_wait or out is None or args.no_ledger else None

    await check_credentials(session.client.creatives)
    if args.no_wait:
        return await _submit_only(session, briefs, rows, user_id)
    ledger = await open_run_ledger(session, out) if out is not None else None
    if ledger is not None:
        try:
            return await _generate_recorded(session, ledger, rows)
        finally:
            with anyio.CancelScope(shield=True):
                await ledger.close()

    def on_update(outcome: BulkOutcome[tuple[int, Brief]], update: TaskUpdate) -> None:
        display.update(
            rows[outcome.item[0]], status=_render_status(update), completed=update.progress.progress
        )

    async def submit(client: AdCreativeClient, entry: tuple[int, Brief]) -> RenderJob:
        index, brief = entry
        display.update(rows[index], status="uploading")
        job = await client.creatives.generate(**brief.kwargs, user_id=session.user_id())
        display.update(rows[index], status=f"submitted {len(job.task_ids)} tasks")
        return job

    results: list[dict[str, Any]] = [{} for _ in briefs]
    table: list[list[list[Any]]] = [[] for _ in briefs]
    async with session.client.bulk(
        list(enumerate(briefs)),
        submit,
        dest=out,
        upload_concurrency=args.concurrency,
        download_concurrency=args.concurrency,
        item_timeout=args.timeout,
        max_renders=getattr(args, "max_renders", None),
        on_update=on_update,
    ) as run:
        async for outcome in run:
            index, brief = outcome.item
            job = outcome.job
            ok = outcome.ok
            done = f"{len(outcome.files)} files" if out else "complete"
            display.done(rows[index], ok=ok, status=done if ok else _short(outcome.error))
            results[index] = {
                "brief": brief.label,
                "ok": ok,
                "job": _job_document(job),
                "files": [str(f) for f in outcome.files],
                "error": _error(outcome.error),
            }
            table[index] = _task_rows(brief.label, job, outcome.files, outcome.error)
    failed = _report_items(session, results)
    display.close()
    session.summary(
        f"Creatives: {len(briefs) - failed} of {len(briefs)} briefs succeeded",
        ["brief", "process", "task", "state", "file"],
        [row for rows_of_brief in table for row in rows_of_brief],
        failed=[not r["ok"] for r, rows_of_brief in zip(results, table, strict=True) for _ in rows_of_brief],
    )
    return EXIT_FAILED if failed else EXIT_OK


def _brief_stems(briefs: Sequence[Brief]) -> list[str]:
    """Output names of briefs, each a function of its brief alone (never of the other briefs):
    ``brief.toml`` -> ``brief``, ``brief.toml#2`` -> ``brief-2``.

    Raises:
        UsageError: two different briefs would share a name (``a/brief.toml`` and ``b/brief.json``).
    """
    stems = []
    for brief in briefs:
        file, _, entry = brief.label.partition("#")
        stems.append(f"{Path(file).stem}-{entry}" if entry else Path(file).stem)
    refuse_shared_names(
        [(i, brief.label, stem) for i, (brief, stem) in enumerate(zip(briefs, stems, strict=True))]
    )
    return stems


async def _generate_recorded(session: Session, ledger: RunLedger, rows: Sequence[int]) -> int:
    args = session.args
    briefs: list[Brief] = args.briefs
    display = session.display
    out = Path(args.output)
    stems = _brief_stems(briefs)

    def on_update(outcome: BulkOutcome[RenderRequest], update: TaskUpdate) -> None:
        display.update(rows[outcome.index], status=_render_status(update), completed=update.progress.progress)

    def name(fields: Any) -> str:
        return f"{stems[fields['index']]}-{fields['task_index'] + 1}{fields['suffix']}"

    requests = [RenderRequest.generate_creatives(**brief.kwargs, label=brief.label) for brief in briefs]
    results: list[dict[str, Any]] = [{} for _ in briefs]
    table: list[list[list[Any]]] = [[] for _ in briefs]
    resumed = 0
    try:
        async with session.client.bulk(
            requests,
            dest=out,
            ledger=ledger,
            name=name,
            upload_concurrency=args.concurrency,
            download_concurrency=args.concurrency,
            item_timeout=args.timeout,
            max_renders=getattr(args, "max_renders", None),
            on_update=on_update,
        ) as run:
            async for outcome in run:
                index, brief, job = outcome.index, briefs[outcome.index], outcome.job
                ok = outcome.ok
                resumed += outcome.resumed
                done = f"{len(outcome.files)} files" + (" (before)" if outcome.resumed else "")
                display.done(rows[index], ok=ok, status=done if ok else _short(outcome.error))
                results[index] = {
                    "brief": brief.label,
                    "ok": ok,
                    "resumed": outcome.resumed,
                    "job": _job_document(job),
                    "files": [str(f) for f in outcome.files],
                    "error": _error(outcome.error),
                }
                table[index] = _task_rows(brief.label, job, outcome.files, outcome.error)
    except anyio.get_cancelled_exc_class():
        display.close()  # the live display first: it would erase what follows
        with anyio.CancelScope(shield=True):
            labels = [request.label for request in requests]
            say_interrupted(await interrupted_message(ledger, labels, session.args.command_line))
        raise
    failed = _report_items(session, results, resumed=resumed)
    display.close()
    session.summary(
        f"Creatives: {len(briefs) - failed} of {len(briefs)} briefs succeeded "
        f"({len(briefs) - resumed} finished in this run, {resumed} finished before and not rendered again)",
        ["brief", "process", "task", "state", "file"],
        [row for rows_of_brief in table for row in rows_of_brief],
        failed=[not r["ok"] for r, rows_of_brief in zip(results, table, strict=True) for _ in rows_of_brief],
    )
    return EXIT_FAILED if failed else EXIT_OK


async def _submit_only(
    session: Session, briefs: Sequence[Brief], rows: Sequence[int], user_id: str | None
) -> int:
    display = session.display
    limiter = anyio.CapacityLimiter(session.args.concurrency)
    results: list[dict[str, Any]] = [{} for _ in briefs]

    async def one(index: int, brief: Brief) -> None:
        job: RenderJob | None = None
        error: BaseException | None = None
        async with limiter:
            display.update(rows[index], status="uploading")
            try:
                job = await session.client.creatives.generate(**brief.kwargs, user_id=user_id)
            except AdCreativeError as exc:
                error = exc
        display.done(rows[index], ok=error is None, status="submitted" if error is None else _short(error))
        results[index] = {
            "brief": brief.label,
            "ok": error is None,
            "job": _job_document(job),
            "error": _error(error),
        }

    async with anyio.create_task_group() as group:
        for index, brief in enumerate(briefs):
            group.start_soon(one, index, brief)
    failed = _report_items(session, results)
    display.close()
    session.table(
        f"Creatives submitted: {len(briefs) - failed} of {len(briefs)}",
        ["brief", "process", "tasks"],
        [
            [
                r["brief"],
                r["job"]["processId"] if r["job"] else "FAILED",
                " ".join(r["job"]["taskIds"]) if r["job"] else r["error"]["message"],
            ]
            for r in results
        ],
    )
    return EXIT_FAILED if failed else EXIT_OK


# -------------------------------------------------------------------------------------------- edit

#: ``edit`` options -> ``client.creatives.edit()`` parameters.
EDIT_TEXT_FIELDS = (
    "main_headline",
    "punchline",
    "action_text",
    "description",
    "button_icon_class",
    "font_identifier",
    "color1_hex",
    "color2_hex",
    "color3_hex",
)
EDIT_IMAGE_FIELDS = ("brand_image", "background_image")


async def _existing_file(raw: str, option: str) -> Path:
    path = await anyio.Path(raw).expanduser()
    if not await path.is_file():
        raise UsageError(f"{option}: no such file: {raw}")
    return Path(path)


async def edit(session: Session) -> int:
    """``adcreative edit TASK_ID... --main-headline ...``: re-generate creatives with changes."""
    args = session.args
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in EDIT_TEXT_FIELDS + EDIT_IMAGE_FIELDS
        if getattr(args, name) is not None
    }
    for name in EDIT_IMAGE_FIELDS:
        if name in changes:
            changes[name] = await _existing_file(changes[name], f"--{name.replace('_', '-')}")
    if not changes:
        raise UsageError(
            "nothing to change: pass at least one of --main-headline, --punchline, ... (see --help)"
        )
    user_id = session.user_id()
    display = session.display
    row = display.add(f"edit ({len(args.task_ids)} tasks)", status="uploading")
    job = await session.client.creatives.edit(args.task_ids, **changes, user_id=user_id)
    edited = {t.lower() for t in args.task_ids}
    document: dict[str, Any] = {"ok": True, "job": job.to_wire(), "files": [], "error": None}
    session.document = document
    if args.no_wait:
        display.done(row, ok=True, status=f"submitted: process {job.process_id}")
        display.close()
        session.table("Edit submitted", ["process", "tasks"], [[job.process_id, " ".join(args.task_ids)]])
        return EXIT_OK
    display.update(row, status="rendering", completed=job.progress.progress if job.progress else 0)
    try:
        async for update in job.wait_until_complete(timeout=args.timeout, raise_on_failure=False):
            if update.task_id.lower() in edited or update.progress.progress >= 100:
                display.update(row, status=_render_status(update), completed=update.progress.progress)
    except AdCreativeError as exc:  # a timeout, the process gone
        display.done(row, ok=False, status=_short(exc))
        display.close()
        document.update(ok=False, job=job.to_wire(), error=_error(exc))
        session.say(f"adcreative: {exc}")
        return EXIT_FAILED
    assert job.progress is not None
    states = {t.lower(): s for t, s in job.progress.tasks.items()}
    files: dict[str, Path] = {}
    errors: dict[str, BaseException] = {}
    if args.output:
        display.update(row, status="downloading")
        for task_id in args.task_ids:
            if states.get(task_id.lower()) == RenderState.SUCCEEDED:
                try:
                    files[task_id] = await job.download(task_id, os.path.join(args.output, ""))
                except AdCreativeError as exc:
                    errors[task_id] = exc
    failed = [t for t in args.task_ids if states.get(t.lower()) != RenderState.SUCCEEDED or t in errors]
    ok = not failed
    display.done(row, ok=ok, status="done" if ok else f"{len(failed)} task(s) failed")
    display.close()
    document.update(
        ok=ok,
        job=job.to_wire(),
        files=[str(f) for f in files.values()],
        failed_task_ids=failed,
        error=None
        if ok
        else {"type": "RenderFailedError", "message": job.progress.error_message or "tasks failed"},
    )
    session.table(
        f"Edit of process {job.process_id}",
        ["task", "state", "file"],
        [
            [
                t,
                _state_name(states[t.lower()]) if t.lower() in states else "not listed",
                str(files.get(t, _short(errors.get(t)))),
            ]
            for t in args.task_ids
        ],
    )
    return EXIT_OK if ok else EXIT_FAILED


# ------------------------------------------------------------------------------------------ status


def _progress_document(feature: str, progress: Progress) -> dict[str, Any]:
    import msgspec

    return {"feature": feature, **msgspec.to_builtins(progress)}


async def _listing(session: Session, feature: str) -> list[Progress]:
    resource = feature_resource(session.client, feature)
    if session.args.application:
        return await resource.application_progress()
    return await resource.user_progress(session.user_id(), session.args.process_id)


async def status(session: Session) -> int:
    """``adcreative status``: the user's (or the application's) render processes as a table."""
    args = session.args
    features = [args.feature] if args.feature else list(FEATURES)
    found: list[tuple[str, Progress]] = []
    for feature in features:
        for progress in await _listing(session, feature):
            if args.process_id is None or progress.image_render_process_id.lower() == args.process_id.lower():
                found.append((feature, progress))
    session.document = {
        "ok": True,
        "scope": "application" if args.application else "user",
        "processes": [_progress_document(f, p) for f, p in found],
    }
    session.display.close()
    if not found:
        where = "the application" if args.application else "the user (--user-id)"
        session.say(f"no render processes found for {where}")
        return EXIT_OK
    session.table(
        "Render processes of " + ("the application" if args.application else "the user (--user-id)"),
        ["feature", "process", "user", "state", "progress", "tasks", "succeeded", "failed", "error"],
        [
            [
                feature,
                p.image_render_process_id,
                p.user_id,
                _state_name(p.request_render_state),
                f"{p.progress}%",
                f"{p.completed_task_count}/{p.total_task_count}",
                len(p.succeeded_task_ids),
                len(p.failed_task_ids),
                p.error_message or "",
            ]
            for feature, p in found
        ],
    )
    return EXIT_OK


# ---------------------------------------------------------------------------------------- download


async def _find_process(session: Session, process_id: str) -> tuple[RenderResource, Progress]:
    args = session.args
    features = [args.feature] if args.feature else list(FEATURES)
    user_id = session.client.user_id
    for feature in features:
        resource = feature_resource(session.client, feature)
        listing = (
            await resource.user_progress(user_id, process_id)
            if user_id is not None
            else await resource.application_progress()
        )
        for progress in listing:
            if progress.image_render_process_id.lower() == process_id.lower():
                return resource, progress
    where = "the user (--user-id)" if user_id else "the application"
    raise UsageError(
        f"render process {process_id} was not found for {where} (features: {', '.join(features)})"
    )


async def download(session: Session) -> int:
    """``adcreative download PROCESS_ID [TASK_ID...] -o DIR``: download results, several at once."""
    args = session.args
    display = session.display
    if args.task_ids and args.feature:
        resource = feature_resource(session.client, args.feature)
        task_ids: list[str] = list(args.task_ids)
    else:
        resource, progress = await _find_process(session, args.process_id)
        task_ids = list(args.task_ids) or progress.succeeded_task_ids
        if not task_ids:
            raise UsageError(
                f"render process {args.process_id} has no succeeded task yet ({progress.progress}%): "
                "nothing to download"
            )
    out = os.path.join(args.output, "")
    display.set_overall(len(task_ids))
    rows = [display.add(task_id[:8], total=None, status="waiting") for task_id in task_ids]
    limiter = anyio.CapacityLimiter(args.concurrency)
    files: dict[str, Path] = {}
    errors: dict[str, BaseException] = {}

    async def one(index: int, task_id: str) -> None:
        row = rows[index]

        def on_progress(done: int, total: int | None) -> None:
            display.update(row, completed=done, total=total)

        async with limiter:
            display.update(row, status="downloading")
            try:
                files[task_id] = await resource.download(
                    args.process_id, task_id, out, low_resolution=args.low_resolution, on_progress=on_progress
                )
            except AdCreativeError as exc:
                errors[task_id] = exc
        display.done(
            row,
            ok=task_id not in errors,
            status=f"saved {files[task_id].name}" if task_id in files else _short(errors.get(task_id)),
        )

    async with anyio.create_task_group() as group:
        for index, task_id in enumerate(task_ids):
            group.start_soon(one, index, task_id)
    display.close()
    session.document = {
        "ok": not errors,
        "feature": resource.feature.name,
        "process_id": args.process_id,
        "items": [
            {
                "task_id": t,
                "ok": t not in errors,
                "file": str(files[t]) if t in files else None,
                "error": _error(errors.get(t)),
            }
            for t in task_ids
        ],
    }
    session.summary(
        f"Downloads of process {args.process_id}: {len(files)} of {len(task_ids)}",
        ["task", "file", "bytes"],
        _download_rows(task_ids, files, errors),
        failed=[t in errors for t in task_ids],
    )
    return EXIT_FAILED if errors else EXIT_OK


def _download_rows(
    task_ids: Sequence[str], files: dict[str, Path], errors: dict[str, BaseException]
) -> list[list[Any]]:
    return [
        [t, str(files[t]), files[t].stat().st_size] if t in files else [t, _short(errors.get(t)), ""]
        for t in task_ids
    ]
