"""``adcreative demo``: the whole flow against an emulator started in this process, with no credentials.

Generates ad creatives while a bulk job removes the backgrounds of several product photos, shows every
render's progress live (``wait_until_complete()`` and the bulk helper, on the client's one poll
scheduler), edits two creatives, follows the new cycle, and downloads every result.

Works with the core install alone: progress bars when rich (the ``cli`` extra) is installed and the
output is a terminal, one plain line per change otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from .. import (
    AdCreativeClient,
    BulkOutcome,
    RenderJob,
    RenderKind,
    RenderType,
    TaskUpdate,
)
from ..testing import Emulator, sample_image
from ._common import DEMO_USER, EXIT_INTERRUPTED, EXIT_USAGE, make_display, run_interruptibly
from ._display import Display, MissingExtraError, print_table

__all__ = ["run_demo"]

PRODUCT_PHOTOS = 4
#: The demo edits this many creatives (the first ones), with this headline.
EDITED = 2
EDITED_HEADLINE = "Now 20% off"


def _status(update: TaskUpdate) -> str:
    progress = update.progress
    return f"{progress.completed_task_count}/{progress.total_task_count} tasks"


async def _follow(job: RenderJob, display: Display, row: int) -> None:
    async for update in job.wait_until_complete(timeout=120):
        display.update(row, status=_status(update), completed=update.progress.progress)


async def _creatives(client: AdCreativeClient, output: Path, display: Display) -> list[Path]:
    row = display.add("creatives", status="uploading")
    job = await client.creatives.generate(
        brand_image=sample_image("png", (256, 256)),
        background_image=sample_image("jpeg", (640, 640)),
        main_headline="Introducing Our Latest Product",
        punchline="Revolutionizing the industry.",
        action_text="Learn More",
        color1_hex="#fc2c2c",
        color2_hex="#002c2c",
        color3_hex="#cccccc",
        description="A stunning new way to showcase your brand.",
        render_kind=RenderKind.POST,
        render_type=RenderType.SVG,
    )
    display.log(f"creatives: process {job.process_id} started with {len(job.task_ids)} tasks")
    await _follow(job, display, row)
    display.done(row, ok=not job.failed, status=f"{len(job.task_ids)} creatives")
    edit_row = display.add("creatives (edit 2)", status="uploading")
    edited = await client.creatives.edit(
        job.task_ids[:EDITED], main_headline=EDITED_HEADLINE, color1_hex="#1a73e8"
    )
    assert edited.progress is not None
    display.log(f"creatives: edited 2 of them, the process is back to {edited.progress.progress}%")
    await _follow(edited, display, edit_row)
    display.update(edit_row, status="downloading")
    # Named after the brief and the task's place in it (not the task id), so that each file says
    # where it came from: creatives/creative-1.png is the process's first task.
    assert edited.progress is not None
    files = [
        await edited.download(task_id, output / "creatives" / f"creative-{n}.png")
        for n, task_id in enumerate(edited.task_ids, 1)
        if task_id in edited.progress.succeeded_task_ids
    ]
    display.done(edit_row, ok=not edited.failed, status=f"saved {len(files)} files")
    return files


async def _backgrounds(client: AdCreativeClient, output: Path, display: Display) -> list[BulkOutcome[Path]]:
    inputs = output / "inputs"
    await anyio.Path(inputs).mkdir(parents=True, exist_ok=True)
    photos: list[Path] = []
    for i in range(PRODUCT_PHOTOS):
        photo = inputs / f"product-{i + 1}.jpg"
        await anyio.Path(photo).write_bytes(sample_image("jpeg", (320 + 40 * i, 240)))
        photos.append(photo)
    rows = [display.add(f"background {photo.name}") for photo in photos]

    def on_update(outcome: BulkOutcome[Path], update: TaskUpdate) -> None:
        status = "downloading" if update.succeeded else _status(update)
        display.update(rows[outcome.index], status=status, completed=update.progress.progress)

    outcomes: list[BulkOutcome[Path]] = []
    async with client.bulk(
        photos,
        lambda c, photo: c.background_remover.remove(photo),
        dest=output / "backgrounds",  # saved as each render succeeds ...
        name="{stem}{suffix}",  # ... named after its input: inputs/product-1.jpg -> backgrounds/product-1.png
        upload_concurrency=2,
        on_update=on_update,
    ) as run:
        async for outcome in run:
            name = outcome.files[0].name if outcome.files else ""
            status = f"saved {name}" if outcome.ok else f"failed: {outcome.error}"
            display.done(rows[outcome.index], ok=outcome.ok, status=status)
            outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: o.index)


async def _demo(output: Path, task_duration: float, args: argparse.Namespace) -> int:
    spread = (task_duration * 0.4, task_duration * 1.6)
    with make_display(args, "demo", 2 + PRODUCT_PHOTOS, rich_required=False) as display:
        async with Emulator(task_duration=spread) as emulator:
            display.log(f"emulator listening on {emulator.base_url} (no real credentials involved)")
            async with AdCreativeClient(**emulator.credentials, user_id=DEMO_USER) as client:
                creatives: list[Path] = []
                outcomes: list[BulkOutcome[Path]] = []

                async def creatives_flow() -> None:
                    creatives.extend(await _creatives(client, output, display))

                async def backgrounds_flow() -> None:
                    outcomes.extend(await _backgrounds(client, output, display))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(creatives_flow)
                    tg.start_soon(backgrounds_flow)
                polls = client.scheduler_stats["requests"]
            calls = sum(emulator.requests.values())
    failed = [o for o in outcomes if not o.ok]
    files = creatives + [f for o in outcomes for f in o.files]
    summary = (
        f"{len(files)} files in {output}/; {1 + PRODUCT_PHOTOS} renders followed with {polls} progress "
        f"requests (at most one per user per tick, not one per render); {calls} API calls in all"
    )
    if args.json:
        document: dict[str, Any] = {
            "ok": not failed,
            "output": str(output),
            "files": [str(f) for f in files],
            "progress_requests": polls,
            "api_calls": calls,
        }
        sys.stdout.write(json.dumps(document) + "\n")
        return 1 if failed else 0
    rows: list[list[Any]] = []
    for n, f in enumerate(creatives, 1):
        source = f"creatives brief, task {n}" + (f" (edited: {EDITED_HEADLINE!r})" if n <= EDITED else "")
        rows.append([source, f.relative_to(output), (await anyio.Path(f).stat()).st_size])
    for outcome in outcomes:
        item = outcome.item.relative_to(output)
        for f in outcome.files:
            rows.append([item, f.relative_to(output), (await anyio.Path(f).stat()).st_size])
        if not outcome.ok:
            rows.append([item, f"FAILED: {outcome.error}", ""])
    print_table(f"Demo results in {output}/", ["input", "output", "bytes"], rows)
    print(f"done: {summary}", flush=True)
    return 1 if failed else 0


def run_demo(
    output: str | None = None,
    *,
    task_duration: float = 1.5,
    progress: str = "auto",
    json_output: bool = False,
) -> int:
    """Run the demo; returns the exit code (1 if any render failed, 130 when interrupted).

    Args:
        output: the directory for the results; None: a new temporary directory (kept, and printed, so
            that you can look at the files; nothing is written to the current directory).
        task_duration: emulated seconds per task (jittered).
        progress: ``auto``, ``bars``, ``lines`` or ``off`` (see ``adcreative --help``).
        json_output: print one JSON document, on one line, at the end instead of progress and a table.
    """
    args = argparse.Namespace(progress=progress, json=json_output, command="demo")
    where = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="adcreative-demo-"))
    if not json_output:
        print(f"results will be written to {where}/", flush=True)
    try:
        code = run_interruptibly(_demo, where, task_duration, args)
        if code is None:
            raise KeyboardInterrupt
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except MissingExtraError as exc:
        print(f"adcreative: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
