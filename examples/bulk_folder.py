"""Bulk job: remove the background of every image in a folder, several at once, each item isolated.

Uses ``client.bulk()``: uploads, renders being awaited and downloads have separate limits; each result is
downloaded as soon as its render succeeds; one image's failure never stops the others. Each result is
named after its input, suffix kept (``name="{filename}{suffix}"``: ``photos/shoe.jpg`` ->
``cutouts/shoe.jpg.png``), so ``shoe.jpg`` and ``shoe.png`` never share a name; every name is checked
before the render is paid for, and a rerun replaces each input's own file.
Prints each item as it finishes and exits non-zero if any failed.

Against the built-in emulator (no account; ``--samples N`` first writes N sample photos into INPUT_DIR)::

    python examples/bulk_folder.py --emulator --samples 6 photos/ cutouts/

Against the real API, with the ADCREATIVE_* environment variables set (ADCREATIVE_USER_ID included)::

    python examples/bulk_folder.py photos/ cutouts/

(``ADCREATIVE_EMULATOR=1`` is the same as ``--emulator``.)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio

from adcreative_async import AdCreativeClient
from adcreative_async.testing import Emulator, sample_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


@asynccontextmanager
async def open_client(use_emulator: bool) -> AsyncIterator[AdCreativeClient]:
    """The real API (credentials from ADCREATIVE_* variables), or an emulator started here."""
    async with AsyncExitStack() as stack:
        if use_emulator:
            emulator = await stack.enter_async_context(Emulator(task_duration=(0.1, 0.6)))
            client = AdCreativeClient(**emulator.credentials, user_id=DEMO_USER)
        else:
            client = AdCreativeClient()
        yield await stack.enter_async_context(client)


async def main(paths: list[Path], output_dir: Path, *, use_emulator: bool, concurrency: int) -> int:
    """Run the bulk job; returns the exit code (1 if any image failed)."""
    failed = 0
    async with (
        open_client(use_emulator) as client,
        client.bulk(
            paths,
            lambda c, path: c.background_remover.remove(path),
            dest=output_dir,  # saved atomically as soon as each render succeeds ...
            name="{filename}{suffix}",  # ... named after its input: photos/shoe.jpg -> shoe.jpg.png
            upload_concurrency=concurrency,
            download_concurrency=concurrency,
            item_timeout=600,
        ) as run,
    ):
        async for outcome in run:  # in the order they finish
            if outcome.ok:
                print(f"{outcome.item} -> {', '.join(str(f) for f in outcome.files)}")
            else:
                failed += 1
                print(f"{outcome.item}: FAILED {outcome.error}")
    print(f"{len(paths) - failed} of {len(paths)} succeeded")
    return 1 if failed else 0


def write_samples(folder: Path, count: int) -> None:
    """Sample product photos to try the job with."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"product-{i + 1}.jpg").write_bytes(sample_image("jpeg", (320 + 20 * i, 240)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument(
        "--emulator", action="store_true", default=os.environ.get("ADCREATIVE_EMULATOR") == "1"
    )
    parser.add_argument("--samples", type=int, default=0, help="first write N sample photos into INPUT_DIR")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.samples:
        write_samples(args.input_dir, args.samples)
    images = sorted(p for p in args.input_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        sys.exit(f"no images in {args.input_dir}")
    code = anyio.run(
        lambda: main(images, args.output_dir, use_emulator=args.emulator, concurrency=args.concurrency)
    )
    sys.exit(code)
