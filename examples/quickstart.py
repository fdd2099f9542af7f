"""Quick start: generate ad creatives and remove a background, polling progress by hand, then download.

Runs against the built-in emulator, so it needs no account::

    python examples/quickstart.py [OUTPUT_DIR]

Against the real API, drop the emulator and let the client read ADCREATIVE_* environment variables:
``async with AdCreativeClient(user_id=...) as client:``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from adcreative_async import AdCreativeClient, Progress, RenderJob, RenderKind, RenderType
from adcreative_async.testing import Emulator, sample_image

USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"  # any fixed GUID works for a single-user integration


async def poll(job: RenderJob, every: float = 0.2) -> Progress:
    """Ask for the job's progress until the process is complete (the hand-written way)."""
    while True:
        progress = await job.refresh()  # one filtered CheckUserProgress call
        print(
            f"{job.feature:>18}: {progress.progress:>3}% ({progress.completed_task_count}/"
            f"{progress.total_task_count} tasks)"
        )
        if progress.is_complete:
            return progress
        await anyio.sleep(every)


async def main(output: Path) -> None:
    async with (
        Emulator(task_duration=(0.2, 1.0)) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER_ID) as client,
    ):
        creatives = await client.creatives.generate(
            brand_image=sample_image("png", (128, 128)),  # a path, bytes or a binary file all work
            background_image=sample_image("jpeg", (512, 512)),
            main_headline="Introducing Our Latest Product",
            punchline="Revolutionizing the industry.",
            action_text="Learn More",
            color1_hex="#fc2c2c",
            color2_hex="#002c2c",
            render_kind=RenderKind.POST,
            render_type=RenderType.SVG,
        )
        cutout = await client.background_remover.remove(sample_image("jpeg", (320, 240)))

        async with anyio.create_task_group() as tg:  # both renders advance at the same time
            tg.start_soon(poll, creatives)
            tg.start_soon(poll, cutout)

        # Each file is named after what it came from (download_all() would name them <task id>.png).
        for n, task_id in enumerate(creatives.task_ids, 1):
            print(f"creative {n} -> {await creatives.download(task_id, output / f'creative-{n}.png')}")
        [cutout_task] = cutout.task_ids
        print(f"product photo -> {await cutout.download(cutout_task, output / 'product-cutout.png')}")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-output"))
