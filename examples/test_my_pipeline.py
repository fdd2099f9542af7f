"""Testing your own code against the emulator with adcreative-async's pytest plugin.

The plugin is installed with the package: request its fixtures by name, no configuration. Run::

    pytest examples/test_my_pipeline.py

``adcreative_client`` is an open client bound to ``adcreative_emulator`` (an emulator on the test's event
loop: its controls and counters are plain methods). Async tests run under anyio's pytest plugin here
(``pytest.mark.anyio``); with pytest-asyncio, mark them ``@pytest.mark.asyncio`` instead: the fixtures work
under both. A synchronous test gets ``adcreative_emulator_thread``, an emulator in a background thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from adcreative_async import AdCreativeClient, RenderFailedError
from adcreative_async.testing import Emulator, sample_image
from adcreative_async.testing.pytest_plugin import EmulatorThread

# ------------------------------------------------------------------------- the code under test


async def make_cutouts(client: AdCreativeClient, images: list[bytes], out: Path) -> list[Path]:
    """Your pipeline: remove the background of every image and save the results; raise if any failed."""
    outcomes = await client.process_many(
        images, lambda c, image: c.background_remover.remove(image), dest=out
    )
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} cutout(s) failed: {failed[0].error}")
    return [f for o in outcomes for f in o.files]


def make_cutouts_sync(credentials: dict[str, Any], image: bytes, out: Path) -> list[Path]:
    """The same pipeline called from synchronous code (a Django view, a script)."""

    async def run() -> list[Path]:
        async with AdCreativeClient(**credentials, user_id="2581c740-8e9d-4d63-96bc-5665bb9a646b") as client:
            return await make_cutouts(client, [image], out)

    return anyio.run(run)


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.anyio
async def test_every_image_gets_a_cutout(
    adcreative_client: AdCreativeClient, adcreative_emulator: Emulator, tmp_path: Path
) -> None:
    images = [sample_image("jpeg", (64 + i, 48)) for i in range(3)]
    files = await make_cutouts(adcreative_client, images, tmp_path)
    assert len(files) == 3
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)
    assert adcreative_emulator.request_count("Image/BackgroundRemoving/AdCreative") == 3


@pytest.mark.anyio
@pytest.mark.parametrize("adcreative_emulator_options", [{"task_failure_rate": 1.0, "task_duration": 0.01}])
async def test_a_failed_render_is_reported(adcreative_client: AdCreativeClient, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="1 cutout"):
        await make_cutouts(adcreative_client, [sample_image("png", (32, 32))], tmp_path)


@pytest.mark.anyio
@pytest.mark.parametrize("adcreative_emulator_options", [{"auto_complete": False}])
async def test_waiting_follows_the_emulator_controls(
    adcreative_client: AdCreativeClient, adcreative_emulator: Emulator
) -> None:
    job = await adcreative_client.background_remover.remove(sample_image("png", (32, 32)))
    adcreative_emulator.fail_task(job.task_ids[0], "the model could not find a product")
    with pytest.raises(RenderFailedError, match="could not find a product"):
        await job.result(timeout=10)


def test_sync_code_against_the_thread_emulator(
    adcreative_emulator_thread: EmulatorThread, tmp_path: Path
) -> None:
    files = make_cutouts_sync(
        dict(adcreative_emulator_thread.credentials), sample_image("png", (32, 32)), tmp_path
    )
    assert len(files) == 1
    assert adcreative_emulator_thread.download_count(files[0].stem) == 1
