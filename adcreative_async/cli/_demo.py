"""``adcreative demo``: the whole flow against an emulator started in this process, with no credentials.

Generates ad creatives while a bulk job removes the backgrounds of several product photos, prints every
task as it changes (``wait_until_complete()`` and the bulk helper, on the client's one poll scheduler),
edits two creatives, follows the new cycle, and downloads every result.
"""

from __future__ import annotations

import time
from pathlib import Path

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

__all__ = ["run_demo"]

DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PRODUCT_PHOTOS = 4


class _Printer:
    def __init__(self) -> None:
        self._start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self._start:5.1f}s] {message}", flush=True)

    def update(self, label: str, update: TaskUpdate) -> None:
        before = update.previous.name if update.previous is not None else "-"
        self(
            f"{label:<22} task {update.task_id[:8]}  {before:>9} -> {update.state.name:<9}"
            f" process {update.progress.progress:>3}%"
        )


async def _follow(job: RenderJob, label: str, say: _Printer) -> None:
    async for update in job.wait_until_complete(timeout=120):
        say.update(label, update)


async def _creatives(client: AdCreativeClient, output: Path, say: _Printer) -> list[Path]:
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
    say(f"creatives: process {job.process_id} started with {len(job.task_ids)} tasks")
    await _follow(job, "creatives", say)
    edited = await client.creatives.edit(job.task_ids[:2], main_headline="Now 20% off", color1_hex="#1a73e8")
    assert edited.progress is not None
    say(f"creatives: edited 2 of them, the process is back to {edited.progress.progress}%")
    await _follow(edited, "creatives (edited)", say)
    return await edited.download_all(output / "creatives")


async def _backgrounds(client: AdCreativeClient, output: Path, say: _Printer) -> list[BulkOutcome[bytes]]:
    photos = [sample_image("jpeg", (320 + 40 * i, 240)) for i in range(PRODUCT_PHOTOS)]

    def on_update(outcome: BulkOutcome[bytes], update: TaskUpdate) -> None:
        say.update(f"background #{outcome.index + 1}", update)

    outcomes = await client.process_many(
        photos,
        lambda c, photo: c.background_remover.remove(photo),
        dest=output / "backgrounds",
        upload_concurrency=2,
        on_update=on_update,
    )
    for outcome in outcomes:
        result = f"saved {outcome.files[0]}" if outcome.ok else f"failed: {outcome.error}"
        say(f"background #{outcome.index + 1}: {result}")
    return outcomes


async def _demo(output: Path, task_duration: float) -> int:
    say = _Printer()
    spread = (task_duration * 0.4, task_duration * 1.6)
    async with Emulator(task_duration=spread) as emulator:
        say(f"emulator listening on {emulator.base_url} (no real credentials involved)")
        async with AdCreativeClient(**emulator.credentials, user_id=DEMO_USER) as client:
            creatives: list[Path] = []
            outcomes: list[BulkOutcome[bytes]] = []

            async def creatives_flow() -> None:
                creatives.extend(await _creatives(client, output, say))

            async def backgrounds_flow() -> None:
                outcomes.extend(await _backgrounds(client, output, say))

            async with anyio.create_task_group() as tg:
                tg.start_soon(creatives_flow)
                tg.start_soon(backgrounds_flow)
            for path in creatives:
                size = (await anyio.Path(path).stat()).st_size
                say(f"creatives: saved {path} ({size} bytes)")
            polls = client.scheduler_stats["requests"]
        failed = [o for o in outcomes if not o.ok]
        say(
            f"done: {len(creatives) + sum(len(o.files) for o in outcomes)} files in {output}/; "
            f"{1 + PRODUCT_PHOTOS} renders followed with {polls} progress requests "
            f"(one per user per tick, not one per render); {sum(emulator.requests.values())} API calls in all"
        )
    return 1 if failed else 0


def run_demo(output: str, *, task_duration: float = 1.5) -> int:
    """Run the demo; returns the exit code (1 if any render failed, 130 when interrupted)."""
    try:
        return anyio.run(_demo, Path(output), task_duration)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
