"""Against the real AdCreative.ai API: run with ``pytest -m live`` and ADCREATIVE_* credentials set.

Read-only by default (tokens, progress lists); a paid render runs only with ADCREATIVE_LIVE_RENDER=1.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from adcreative_async import AdCreativeClient
from adcreative_async.testing import sample_image

REQUIRED = (
    "ADCREATIVE_APPLICATION_ID",
    "ADCREATIVE_API_KEY",
    "ADCREATIVE_API_SECRET",
    "ADCREATIVE_JWT_PRIVATE_KEY",
)
missing = [name for name in REQUIRED if not os.environ.get(name)]

pytestmark = [
    pytest.mark.live,
    pytest.mark.anyio,
    pytest.mark.skipif(bool(missing), reason=f"live tests need {', '.join(missing)} in the environment"),
]


async def test_live_token_and_progress_lists() -> None:
    async with AdCreativeClient(user_id=str(uuid.uuid4())) as client:
        assert await client.background_remover.user_progress() == []
        assert isinstance(await client.creatives.application_progress(), list)
        assert client.token_requests == 1


@pytest.mark.skipif(
    not os.environ.get("ADCREATIVE_LIVE_RENDER"), reason="set ADCREATIVE_LIVE_RENDER=1 to run a paid render"
)
async def test_live_background_removal(tmp_path: Path) -> None:
    async with AdCreativeClient(user_id=os.environ.get("ADCREATIVE_USER_ID") or str(uuid.uuid4())) as client:
        job = await client.background_remover.remove(sample_image("jpeg", (256, 256)))
        assert job.process_id
        progress = await job.refresh()
        assert progress.process_id == job.process_id
