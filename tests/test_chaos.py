"""The chaos suite: 500 jobs through the bulk helper while the emulator injects about 10 % faults on
every route (5xx, 429, connection resets, lost answers, slow answers, malformed JSON, truncated downloads)
and access tokens expire mid-run.

Every job must end downloaded or with a typed error that carries what is known; no render may be
submitted twice; no partial file may be left; no task, connection or file handle may leak. It prints the
figures README's "Reliability" section quotes.
"""

from __future__ import annotations

import asyncio
import collections
import os
from pathlib import Path

import anyio
import pytest

from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    BulkOutcome,
    PollPolicy,
    RenderJob,
    RetryPolicy,
    Timeout,
)
from adcreative_async.testing import Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
JOBS = 500
FAULTS = Faults(
    server_error=0.03,
    rate_limit=0.02,
    reset=0.01,
    lost_response=0.02,
    slow=0.01,
    slow_seconds=1.0,
    malformed=0.01,
    truncate=0.02,
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts file handles through /proc")
@pytest.mark.parametrize("strong", [False, True], ids=["reconcile", "unique-user-per-start"])
async def test_500_jobs_through_faults_end_well_once_and_leave_nothing_behind(
    tmp_path: Path, strong: bool
) -> None:
    images = [sample_image("png", (8 + i % 40, 8 + i // 40)) for i in range(JOBS)]  # each one distinct
    out = tmp_path / "out"
    fds_before = open_fds()
    tasks_before = len(asyncio.all_tasks())
    async with Emulator(task_duration=(0.05, 0.3), faults={"*": FAULTS}, seed=20261122) as emulator:
        client = AdCreativeClient(
            **emulator.credentials,
            user_id=USER,
            trust_env=False,
            timeout=Timeout(connect=2, read=0.5),
            retry=RetryPolicy(initial_backoff=0.02, max_backoff=0.5, max_total=10, reconcile_grace=3),
            poll_policy=PollPolicy(initial_interval=0.05, max_interval=0.2, min_interval=0.02),
            unique_user_per_submission=strong,
        )
        async with client:

            async def expire_tokens() -> None:
                for _ in range(5):
                    await anyio.sleep(0.7)
                    emulator.expire_access_tokens()  # every client's token dies mid-run

            async def submit(c: AdCreativeClient, image: bytes) -> RenderJob:
                return await c.background_remover.remove(image)

            async with anyio.create_task_group() as tg:
                tg.start_soon(expire_tokens)
                outcomes: list[BulkOutcome[bytes]] = await client.process_many(
                    images, submit, dest=out, upload_concurrency=16, download_concurrency=16, item_timeout=60
                )
        processes = [emulator.process(pid) for pid in emulator._state.processes]
        injected = emulator.injected_faults

    # every job ended: downloaded, or a typed error with what is known
    assert len(outcomes) == JOBS
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        assert isinstance(outcome.error, AdCreativeError), repr(outcome.error)
    for outcome in ok:
        assert len(outcome.files) == 1
    # no render submitted twice: at most one process per distinct input
    per_input = collections.Counter(p.inputs.files["uploadedImage"].sha256 for p in processes)
    assert per_input
    assert max(per_input.values()) == 1
    # no job lost: every process the emulator made is one an outcome knows
    known = {o.job.process_id for o in outcomes if o.job is not None}
    unknown = [p.process_id for p in processes if p.process_id not in known]
    may_exist = [o for o in failed if type(o.error).__name__ == "RenderMayExistError"]
    assert len(unknown) <= len(may_exist)  # only where the SDK said "it may exist"
    if strong:
        assert unknown == []  # a lost answer is always found: its user id is its own
    # no partial files, and every file complete
    written = sorted(out.iterdir()) if out.exists() else []
    assert all(not p.name.startswith(".") and not p.name.endswith(".part") for p in written)
    assert len(written) == sum(len(o.files) for o in outcomes)
    assert all(p.read_bytes().endswith(b"IEND\xaeB`\x82") for p in written)
    # no leaked task, connection or file handle
    await anyio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() <= fds_before
    kinds = collections.Counter(type(o.error).__name__ for o in failed)
    mode = "unique user per start" if strong else "reconcile"
    print(
        f"\nchaos ({mode}): {JOBS} jobs, {sum(injected.values())} faults injected "
        f"{dict(sorted(injected.items()))}; "
        f"{len(ok)} downloaded, {len(failed)} typed errors {dict(kinds)}; "
        f"{len(processes)} renders, 0 duplicates, {len(unknown)} unknown to the caller; "
        f"{len(written)} files, 0 partial"
    )
