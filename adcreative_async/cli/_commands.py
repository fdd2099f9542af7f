"""The subcommands that talk to the API: ``remove-bg``, ``generate``, ``edit``, ``status``, ``download``.

Each is ``async def command(session) -> exit code`` on the public SDK: it shows live rows on the session's
display, fills ``session.document`` (the last line of ``--json``) and prints a summary. The commands that
work item by item report each item as it finishes (``_results``: a JSON line with ``--json``) and keep
counts, never a row per input: their memory is bounded by the items in flight, whatever the inputs'
number (the inputs themselves aside: the list of image paths the preflight checked).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .. import (
    AdCreativeClient,
    AdCreativeError,
    BulkOutcome,
    BulkRun,
    Progress,
    RenderJob,
    RenderResource,
    RenderState,
    TaskUpdate,
)
from .._naming import Namer
from ..ledger import RenderRequest, RunLedger
from ._common import EXIT_FAILED, EXIT_OK, Session, UsageError, feature_resource, one_line
from ._inputs import Brief, ImageItem, refuse_shared_names
from ._preflight import check_credentials
from ._results import FAILURES_FILE, LazySequence, LiveRows, Results, error_document
from ._runs import (
    dry_run_lookup,
    interrupted_message,
    open_run_ledger,
    say_interrupted,
    spend_line,
    uses_folder_ledger,
)

__all__ = ["download", "edit", "generate", "remove_bg", "status"]

#: Features ``status`` and ``download`` look in when ``--feature`` is not given.
FEATURES = ("creatives", "background-remover")


def _short(exc: BaseException | None) -> str:
    """An item's error on one line, whole (the API's reason is what the operator acts on); "" for none."""
    return "" if exc is None else one_line(exc)


def _saved(files: Sequence[Path], error: BaseException | None, before: str = "") -> str:
    """An item's status once done: the first file saved, or its error."""
    return f"saved {files[0].name}{before}" if error is None and files else _short(error)


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
    args = session.args
    items: Sequence[ImageItem] = args.items
    if args.dry_run:  # what a run would spend, from the ledger as it is: nothing written
        requests = LazySequence(items, _bg_request)
        async with dry_run_lookup(args, Path(args.output)) as lookup:
            line = await spend_line(requests, None, lookup)
        session.say(f"dry run: {line}; nothing was sent")
        session.document = {"ok": True, "dry_run": True}
        return EXIT_OK
    out = Path(args.output)
    ledger = await open_run_ledger(session, out)
    try:
        user_id = session.user_id() if ledger is None else None
        if ledger is not None:
            session.say(await spend_line(LazySequence(items, _bg_request), ledger))
        results = _results(session, ["input", "result", "output"], out)

        async def submit(client: AdCreativeClient, index: int) -> RenderJob:
            return await client.background_remover.remove(items[index].path, user_id=user_id)

        def name(fields: Any) -> str:  # a function of the input's identity (ImageItem.output_name)
            item: ImageItem = items[fields["index"]]
            return item.output_name(fields["suffix"])

        def report(outcome: BulkOutcome[Any]) -> str:
            item, error, ok = items[outcome.index], outcome.error, outcome.ok
            before = " (before)" if outcome.resumed else ""
            document = _bg_item(item, ok, outcome.job, outcome.files, error)
            if ledger is not None:
                document["resumed"] = outcome.resumed
            result = ("ok" if ok else "FAILED") + before
            output = ", ".join(str(f) for f in outcome.files) if ok else _short(error)
            results.add(document, [[str(item.path), result, output]], error=error, resumed=outcome.resumed)
            return _saved(outcome.files, error, before)

        await _run_items(
            session,
            _Items(
                len(items),
                lambda index: items[index].label,
                request=lambda index: _bg_request(items[index]),
                submit=submit,
                submitted=lambda job: "submitted",
                status=_bg_status,
                recorded=lambda index: str(items[index].path),
                name=name,
            ),
            ledger=ledger,
            dest=out,
            results=results,
            report=report,
        )
        failed = results.finish(output=str(out), **_resumed(results, ledger), **_rate(session))
        session.display.close()
        title = f"Background removal: {len(items) - failed} of {len(items)} succeeded"
        results.summary(title + _resumed_note(results, ledger, len(items)))
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        if ledger is not None:
            with anyio.CancelScope(shield=True):
                await ledger.close()


def _bg_request(item: ImageItem) -> RenderRequest:
    return RenderRequest.remove_background(item.path, label=str(item.path))


def _bg_status(update: TaskUpdate) -> str:
    return "downloading" if update.succeeded else _render_status(update)


def _results(session: Session, columns: Sequence[str], out: Path | None) -> Results:
    """The command's results: every failure listed by the output folder's run ledger (``runs show``),
    else in a failures file of the output folder, else by ``--json`` only."""
    if out is not None and uses_folder_ledger(session.args):
        return Results(session, columns, full_list=f"adcreative runs show {out} --state failed")
    if out is not None:
        return Results(session, columns, failures_file=out / FAILURES_FILE)
    return Results(session, columns)


def _bg_item(
    item: ImageItem, ok: bool, job: RenderJob | None, files: Sequence[Path], error: BaseException | None
) -> dict[str, Any]:
    return {
        "input": str(item.path),
        "ok": ok,
        "process_id": job.process_id if job else None,
        "task_ids": list(job.task_ids) if job else [],
        "files": [str(f) for f in files],
        "error": error_document(error),
    }


@dataclass(frozen=True)
class _Items:
    """A bulk command's inputs, by position (``0 .. count - 1``), as a run reads them: what an input is
    shown as, its request (with a run ledger) or its start call (without), the status of its row once
    submitted and on each update, its label in the run ledger (its request's), and its results' name
    (None: named after their task)."""

    count: int
    label: Callable[[int], str]
    request: Callable[[int], RenderRequest]
    submit: Callable[[AdCreativeClient, int], Awaitable[RenderJob]]
    submitted: Callable[[RenderJob], str]
    status: Callable[[TaskUpdate], str]
    recorded: Callable[[int], str]
    name: Namer | None = None


async def _run_items(
    session: Session,
    items: _Items,
    *,
    ledger: RunLedger | None,
    dest: Path | None,
    results: Results,
    report: Callable[[BulkOutcome[Any]], str],
) -> None:
    """Run a bulk command's inputs: through the run ledger when there is one (resumable), else each by
    its start call; each outcome goes to ``report`` as it comes (which adds it to ``results`` and
    returns its row's last status). Its memory is the items in flight: the inputs are read by position
    (a sequence: the check of their names reads them once more, holding none).

    On Ctrl-C with a ledger, where the run stands is said (done, paid for, not started, failed) with
    the command that resumes it, then the cancellation goes on.
    """
    args = session.args
    display = session.display
    rows = LiveRows(display)

    def on_update(outcome: BulkOutcome[Any], update: TaskUpdate) -> None:
        row = rows.of(outcome.index, items.label(outcome.index))
        display.update(row, status=items.status(update), completed=update.progress.progress)

    async def submit(client: AdCreativeClient, index: int) -> RenderJob:
        display.update(rows.of(index, items.label(index)), status="uploading")
        job = await items.submit(client, index)
        display.update(rows.of(index, items.label(index)), status=items.submitted(job))
        return job

    options: dict[str, Any] = {
        "dest": dest,
        "name": items.name,
        "upload_concurrency": args.concurrency,
        "download_concurrency": args.concurrency,
        "item_timeout": args.timeout,
        "max_renders": getattr(args, "max_renders", None),
        "on_update": on_update,
    }
    positions = range(items.count)  # read as the run goes: never a list of N
    run: BulkRun[Any]
    if ledger is not None:
        run = session.client.bulk(LazySequence(positions, items.request), ledger=ledger, **options)
    else:
        run = session.client.bulk(positions, submit, **options)
    try:
        async with run:
            async for outcome in run:
                status = report(outcome)
                rows.done(outcome.index, items.label(outcome.index), ok=outcome.ok, status=status)
    except anyio.get_cancelled_exc_class():
        if ledger is None:
            raise
        results.close()
        display.close()  # the live display first: it would erase what follows
        with anyio.CancelScope(shield=True):
            labels = map(items.recorded, positions)  # read once, a hash each kept
            say_interrupted(await interrupted_message(ledger, labels, args.command_line))
        raise
    finally:
        results.close()


def _resumed(results: Results, ledger: RunLedger | None) -> dict[str, int]:
    """The summary's ``resumed`` count: with a run ledger only."""
    return {} if ledger is None else {"resumed": results.resumed}


def _resumed_note(results: Results, ledger: RunLedger | None, count: int) -> str:
    """What the summary adds with a run ledger: what this run did, and what an earlier one had."""
    if ledger is None:
        return ""
    resumed = results.resumed
    return f" ({count - resumed} finished in this run, {resumed} finished before and not rendered again)"


def _rate(session: Session) -> dict[str, Any]:
    """The summary's ``rate``: what the client's rate control learned (nothing when it is off)."""
    status = session.client.rate_status
    if status is None:
        return {}
    return {
        "rate": {
            "requests_per_second": status.rate,
            "account_rate": status.account_rate,
            "workers": status.workers,
            "throttled": status.throttled,
            "cuts": status.cuts,
        }
    }


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


_GENERATE_COLUMNS = ("brief", "process", "task", "state", "file")


async def generate(session: Session) -> int:
    """``adcreative generate --brief FILE``: generate ad creatives from briefs; wait; download."""
    args = session.args
    briefs: list[Brief] = args.briefs
    out = Path(args.output) if args.output else None
    user_id = session.user_id() if args.no_wait or out is None or args.no_ledger else None

    await check_credentials(session.client.creatives)
    if args.no_wait:
        return await _submit_only(session, briefs, user_id)
    ledger = await open_run_ledger(session, out) if out is not None else None
    try:
        name = None
        if ledger is not None:
            stems = _brief_stems(briefs)

            def name(fields: Any) -> str:
                return f"{stems[fields['index']]}-{fields['task_index'] + 1}{fields['suffix']}"

        async def submit(client: AdCreativeClient, index: int) -> RenderJob:
            return await client.creatives.generate(**briefs[index].kwargs, user_id=session.user_id())

        results = _results(session, _GENERATE_COLUMNS, out)

        def report(outcome: BulkOutcome[Any]) -> str:
            brief, job, error, ok = briefs[outcome.index], outcome.job, outcome.error, outcome.ok
            document: dict[str, Any] = {"brief": brief.label, "ok": ok}
            if ledger is not None:
                document["resumed"] = outcome.resumed
            document.update(
                job=_job_document(job), files=[str(f) for f in outcome.files], error=error_document(error)
            )
            rows = _task_rows(brief.label, job, outcome.files, error)
            results.add(document, rows, error=error, resumed=outcome.resumed)
            done = (f"{len(outcome.files)} files" if out else "complete") + (
                " (before)" if outcome.resumed else ""
            )
            return done if ok else _short(error)

        await _run_items(
            session,
            _Items(
                len(briefs),
                lambda index: briefs[index].label,
                request=lambda index: _brief_request(briefs[index]),
                submit=submit,
                submitted=lambda job: f"submitted {len(job.task_ids)} tasks",
                status=_render_status,
                recorded=lambda index: briefs[index].label,
                name=name,
            ),
            ledger=ledger,
            dest=out,
            results=results,
            report=report,
        )
        failed = results.finish(**_resumed(results, ledger), **_rate(session))
        session.display.close()
        title = f"Creatives: {len(briefs) - failed} of {len(briefs)} briefs succeeded"
        results.summary(title + _resumed_note(results, ledger, len(briefs)))
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        if ledger is not None:
            with anyio.CancelScope(shield=True):
                await ledger.close()


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


def _brief_request(brief: Brief) -> RenderRequest:
    return RenderRequest.generate_creatives(**brief.kwargs, label=brief.label)


async def _submit_only(session: Session, briefs: Sequence[Brief], user_id: str | None) -> int:
    """``generate --no-wait``: each brief's start call, ``--concurrency`` at a time; each submitted
    brief's ids printed as it is submitted (they are the command's output)."""
    display = session.display
    rows = LiveRows(display)
    pending = iter(enumerate(briefs))  # taken by the workers as they free up: never a task per brief
    results = Results(session, ["brief", "process", "tasks"])

    async def worker() -> None:
        for index, brief in pending:
            job: RenderJob | None = None
            error: BaseException | None = None
            display.update(rows.of(index, brief.label), status="uploading")
            try:
                job = await session.client.creatives.generate(**brief.kwargs, user_id=user_id)
            except AdCreativeError as exc:
                error = exc
            ok = error is None
            rows.done(index, brief.label, ok=ok, status="submitted" if ok else _short(error))
            document = {
                "brief": brief.label,
                "ok": ok,
                "job": _job_document(job),
                "error": error_document(error),
            }
            row = [
                brief.label,
                job.process_id if job else "FAILED",
                " ".join(job.task_ids) if job else _short(error),
            ]
            results.add(document, [row], error=error, echo=True)

    async with anyio.create_task_group() as group:
        for _ in range(min(session.args.concurrency, len(briefs))):
            group.start_soon(worker)
    failed = results.finish()
    display.close()
    results.summary(f"Creatives submitted: {len(briefs) - failed} of {len(briefs)}")
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
        document.update(ok=False, job=job.to_wire(), error=error_document(exc))
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
    # a row per task up front: the tasks of one process (a handful), not a bulk run's inputs
    rows = [display.add(task_id[:8], total=None, status="waiting") for task_id in task_ids]
    limiter = anyio.CapacityLimiter(args.concurrency)
    results = Results(session, ["task", "file", "bytes"])

    async def one(index: int, task_id: str) -> None:
        row = rows[index]
        file: Path | None = None
        error: AdCreativeError | None = None

        def on_progress(done: int, total: int | None) -> None:
            display.update(row, completed=done, total=total)

        async with limiter:
            display.update(row, status="downloading")
            try:
                file = await resource.download(
                    args.process_id, task_id, out, low_resolution=args.low_resolution, on_progress=on_progress
                )
            except AdCreativeError as exc:
                error = exc
        display.done(row, ok=error is None, status=f"saved {file.name}" if file else _short(error))
        size = (await anyio.Path(file).stat()).st_size if file else ""
        document = {"task_id": task_id, "ok": error is None, "file": str(file) if file else None}
        results.add(
            {**document, "error": error_document(error)},
            [[task_id, str(file) if file else _short(error), size]],
            error=error,
        )

    async with anyio.create_task_group() as group:
        for index, task_id in enumerate(task_ids):
            group.start_soon(one, index, task_id)
    display.close()
    failed = results.finish(feature=resource.feature.name, process_id=args.process_id)
    results.summary(f"Downloads of process {args.process_id}: {len(task_ids) - failed} of {len(task_ids)}")
    return EXIT_FAILED if failed else EXIT_OK
