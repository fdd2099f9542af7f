"""The chaos suite: 300 background removals over 10 users through the bulk helper, against an emulator
that answers start calls 50-300 ms after it made the render (as a real service does) and injects about
11 % faults on every route (5xx before or after serving, 429, connection resets, lost answers, slow
answers past the read timeout, malformed JSON, truncated downloads), while every access token expires
mid-run. Each mode runs with one client, and with two clients (two workers) sharing the user ids.

Every run must show: 0 wrong results (each downloaded file is the render of its own input), 0 duplicate
renders (at most one process per input), 0 renders unknown to the caller (every process on the server is
held by exactly one item, or named in a ``RenderMayExistError``'s candidates), 0 ResourceWarnings and 0
partial files. ``pytest -s tests/test_chaos.py`` prints the figures README's "Reliability" section quotes.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    BulkOutcome,
    PollPolicy,
    RenderJob,
    RenderMayExistError,
    RetryPolicy,
    Timeout,
)
from adcreative_async.testing import Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USERS = [f"2581c740-8e9d-4d63-96bc-{i:012x}" for i in range(10)]
JOBS = 300
FAULTS = Faults(
    server_error=0.02,  # 500/502/503/504, the request not served
    served_error=0.01,  # served (a render may exist), then a gateway's 502/503/504
    rate_limit=0.02,
    reset=0.01,
    lost_response=0.02,  # served, then the connection drops before the answer
    slow=0.01,
    slow_seconds=1.2,  # past the client's read timeout (1 s): the render is made 0.2 s after it
    malformed=0.01,
    truncate=0.01,
)
START_LATENCY = (0.05, 0.3)
RETRY = RetryPolicy(
    initial_backoff=0.02,
    max_backoff=0.5,
    max_total=10,
    reconcile_grace=1.5,  # assumed longer than a slow answer's render lag (0.2 s + latency), with room
    reconcile_interval=0.1,
)
#: Fast polls, and no client-side poll rate cap worth the name: strong mode polls one user per item.
POLLS = PollPolicy(
    initial_interval=0.05,
    max_interval=0.3,
    min_interval=0.02,
    max_requests_per_second=1000,
    burst=100,
    max_concurrent_polls=16,
)


@dataclass(frozen=True)
class Mode:
    name: str
    clients: int
    strong: bool = False
    exclusive: bool = False


MODES = [
    Mode("reconcile (default)", 1),
    Mode("reconcile (default), 2 clients sharing user ids", 2),
    Mode("reconcile, exclusive_user_ids=True", 1, exclusive=True),
    Mode("unique user per start", 1, strong=True),
    Mode("unique user per start, 2 clients sharing user ids", 2, strong=True),
]

HEADER = (
    "| run | faults injected | downloaded | typed errors | of which naming candidates | renders made "
    "| wrong results | duplicates | renders unknown to the caller | ResourceWarnings | partial files |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.fixture(scope="module")
def figures() -> Iterator[list[str]]:
    rows: list[str] = []
    yield rows
    if rows:
        print("\n\nchaos figures (README, Reliability):\n" + HEADER + "\n" + "\n".join(rows))


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
async def test_300_jobs_through_faults_end_right_once_and_leave_nothing_behind(
    tmp_path: Path, mode: Mode, figures: list[str]
) -> None:
    images = [sample_image("png", (8 + i % 30, 8 + i // 30)) for i in range(JOBS)]  # each one distinct
    digests = [hashlib.sha256(image).hexdigest() for image in images]
    out = tmp_path / "out"
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with Emulator(
            task_duration=(0.05, 0.3), start_latency=START_LATENCY, faults={"*": FAULTS}, seed=20261122
        ) as emulator:
            clients = [
                AdCreativeClient(
                    **emulator.credentials,
                    trust_env=False,
                    timeout=Timeout(connect=2, read=1),
                    retry=RETRY,
                    poll_policy=POLLS,
                    unique_user_per_submission=mode.strong,
                    exclusive_user_ids=mode.exclusive,
                )
                for _ in range(mode.clients)
            ]
            outcomes: list[BulkOutcome[int]] = []

            async def submit(client: AdCreativeClient, index: int) -> RenderJob:
                return await client.background_remover.remove(
                    images[index], user_id=USERS[index % len(USERS)]
                )

            async def work(client: AdCreativeClient, share: list[int]) -> None:
                async with client:
                    outcomes.extend(
                        await client.process_many(
                            share,
                            submit,
                            dest=out,
                            upload_concurrency=32,
                            download_concurrency=16,
                            item_timeout=60,
                        )
                    )

            async def expire_tokens() -> None:
                for _ in range(4):
                    await anyio.sleep(0.7)
                    emulator.expire_access_tokens()  # every client's token dies mid-run

            async with anyio.create_task_group() as tg:
                tg.start_soon(expire_tokens)
                for n, client in enumerate(clients):
                    tg.start_soon(work, client, list(range(n, JOBS, mode.clients)))
            processes = [emulator.process(pid) for pid in emulator._state.processes]
            expected = {
                p.process_id: emulator.result_bytes(task) for p in processes for task in p.tasks
            }  # one task per background removal
            injected = emulator.injected_faults
        await anyio.sleep(0.05)
        gc.collect()
    resource_warnings = [w for w in caught if issubclass(w.category, ResourceWarning)]

    # every job ended: downloaded, or a typed error carrying what is known
    assert sorted(o.item for o in outcomes) == list(range(JOBS))
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        assert isinstance(outcome.error, AdCreativeError), repr(outcome.error)
    # no render made twice: at most one process per input
    per_input = collections.Counter(p.inputs.files["uploadedImage"].sha256 for p in processes)
    duplicates = sum(n - 1 for n in per_input.values())
    # no wrong result: an item's job is the process made from its own input, its file that render's
    made_from = {p.process_id: p.inputs.files["uploadedImage"].sha256 for p in processes}
    wrong = [
        o
        for o in outcomes
        if o.job is not None
        and (
            made_from.get(o.job.process_id) != digests[o.item]
            or any(f.read_bytes() != expected[o.job.process_id] for f in o.files)
        )
    ]
    for outcome in ok:
        assert len(outcome.files) == 1
    # no render unknown to the caller: each held by exactly one item, or named as a candidate
    holders = collections.Counter(o.job.process_id for o in outcomes if o.job is not None)
    named = {
        c.process_id for o in failed if isinstance(o.error, RenderMayExistError) for c in o.error.candidates
    }
    unknown = [p.process_id for p in processes if holders[p.process_id] == 0 and p.process_id not in named]
    held_twice = [pid for pid, n in holders.items() if n > 1]
    # no partial file, and every file complete
    written = sorted(out.iterdir()) if out.exists() else []
    partial = [p for p in written if p.name.startswith(".") or p.name.endswith(".part")]
    partial += [p for p in written if not p.read_bytes().endswith(b"IEND\xaeB`\x82")]
    kinds = collections.Counter(type(o.error).__name__ for o in failed)
    naming = sum(1 for o in failed if isinstance(o.error, RenderMayExistError) and o.error.candidates)
    figures.append(
        f"| {mode.name} | {sum(injected.values())} | {len(ok)} | {len(failed)} "
        f"({', '.join(f'{n} `{k}`' for k, n in kinds.most_common())}) | {naming} | {len(processes)} "
        f"| {len(wrong)} | {duplicates} | {len(unknown)} | {len(resource_warnings)} | {len(partial)} |"
    )
    print(f"\nchaos ({mode.name}): faults {dict(sorted(injected.items()))}")
    assert wrong == [], [(o.item, o.job, o.error) for o in wrong]
    assert held_twice == [], held_twice
    assert duplicates == 0, [d for d, n in per_input.items() if n > 1]
    assert unknown == [], [emulator.process(pid) for pid in unknown]
    assert resource_warnings == [], [str(w.message) for w in resource_warnings]
    assert partial == [], partial
    assert len(written) == sum(len(o.files) for o in outcomes), (written, [o.files for o in outcomes])
    assert len(asyncio.all_tasks()) == tasks_before, asyncio.all_tasks()  # no task outlives the clients
    assert open_fds() <= fds_before  # no connection or file handle left open
