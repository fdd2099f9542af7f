"""``adcreative demo``: the whole flow against an emulator started in this process, with no credentials.

Generates ad creatives and removes a background at the same time, follows every task as it changes,
edits two creatives, follows the new cycle, and downloads every result.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from .. import AdCreativeClient, Progress, RenderJob, RenderKind, RenderState, RenderType
from ..testing import Emulator, sample_image

__all__ = ["run_demo"]

DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
POLL_INTERVAL = 0.25


class _Printer:
    def __init__(self) -> None:
        self._start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self._start:5.1f}s] {message}", flush=True)


async def _follow(job: RenderJob, label: str, say: _Printer) -> Progress:
    """Poll one job's progress by hand, printing each task state change, until it is complete."""
    seen: dict[str, int] = {}
    while True:
        progress = await job.refresh()
        for task_id, state in progress.tasks.items():
            if seen.get(task_id) != state:
                before = RenderState(seen[task_id]).name if task_id in seen else "-"
                say(
                    f"{label:<18} task {task_id[:8]}  {before:>9} -> {RenderState(state).name:<9}"
                    f" progress {progress.progress:>3}%"
                )
                seen[task_id] = state
        if progress.is_complete:
            return progress
        await anyio.sleep(POLL_INTERVAL)


async def _demo(output: Path, task_duration: float) -> int:
    say = _Printer()
    spread = (task_duration * 0.4, task_duration * 1.6)
    async with Emulator(task_duration=spread) as emulator:
        say(f"emulator listening on {emulator.base_url} (no real credentials involved)")
        async with AdCreativeClient(**emulator.credentials, user_id=DEMO_USER) as client:
            creatives = await client.creatives.generate(
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
            say(f"generation started: process {creatives.process_id}, {len(creatives.task_ids)} tasks")
            cutout = await client.background_remover.remove(sample_image("jpeg", (480, 320)))
            say(f"background removal started: process {cutout.process_id}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(_follow, creatives, "creatives", say)
                tg.start_soon(_follow, cutout, "background remover", say)

            edited_ids = list(creatives.task_ids[:2])
            edited = await client.creatives.edit(
                edited_ids, main_headline="Now 20% off", color1_hex="#1a73e8"
            )
            assert edited.progress is not None
            say(f"edited 2 creatives: process progress back to {edited.progress.progress}%")
            await _follow(edited, "creatives (edit)", say)

            paths = await edited.download_all(output) + await cutout.download_all(output)
            for path in paths:
                size = (await anyio.Path(path).stat()).st_size
                say(f"downloaded {path} ({size} bytes)")
        calls = sum(emulator.requests.values())
        say(f"done: {len(paths)} files in {output}/, {calls} API calls to the emulator")
    return 0


def run_demo(output: str, *, task_duration: float = 1.5) -> int:
    """Run the demo; returns the exit code (130 when interrupted)."""
    try:
        return anyio.run(_demo, Path(output), task_duration)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
