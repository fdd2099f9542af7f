"""A listing that omits finished processes costs a bulk run no request per item.

Once a (feature, user) listing is seen to leave a finished process out, a bulk item whose process leaves
the listing is downloaded at once instead of being asked for by id: a download that succeeds proves its
task succeeded; a refused one (the task failed) costs one request by id, which tells the real state. A
plain waiter is never told anything the API did not say. Against the emulator over loopback
(``list_finished=False`` is its ``--no-list-finished``), every result checked against its own input.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import eventually

from adcreative_async import (
    AdCreativeClient,
    BulkOutcome,
    PollPolicy,
    Progress,
    RenderFailedError,
    RenderState,
)
from adcreative_async.ledger import RenderRequest
from adcreative_async.testing import Emulator, input_stamp, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROGRESS_ROUTES = (
    "Image/BackgroundRemoving/CheckUserProgress",
    "Image/BackgroundRemoving/CheckApplicationAllProgresses",
)
#: Polls a few times a second: a run of a few hundred items makes tens of listings, far fewer than items.
POLICY = PollPolicy(
    initial_interval=0.1,
    max_interval=0.2,
    min_interval=0.05,
    jitter=None,
    max_requests_per_second=10_000,
    burst=100,
    not_found_grace=0.5,
)
ITEMS = 300


def make_inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo-{i:04d}.png"
        path.write_bytes(sample_image("png", (8, 8), (i % 256, i // 256, 7)))
        paths.append(path)
    return paths


def assert_own_results(outcomes: list[BulkOutcome[Any]], paths: list[Path]) -> None:
    by_stem = {p.stem: p for p in paths}
    for outcome in outcomes:
        if not outcome.ok:
            continue
        assert len(outcome.files) == 1
        source = by_stem[outcome.files[0].stem]
        assert input_stamp(outcome.files[0].read_bytes()) == hashlib.sha256(source.read_bytes()).hexdigest()


async def bulk_run(
    tmp_path: Path, name: str, *, list_finished: bool, ledger: bool, failure_rate: float = 0.0
) -> tuple[list[BulkOutcome[Any]], int, Counter[str], list[Path]]:
    """A bulk run of ITEMS images with downloads: its outcomes, its progress requests (at the server),
    the processes asked for by id (and how often), and its inputs."""
    paths = make_inputs(tmp_path / name / "in", ITEMS)
    out = tmp_path / name / "out"
    async with (
        Emulator(
            task_duration=(0.05, 0.15),
            list_finished=list_finished,
            task_failure_rate=failure_rate,
            stamp_inputs=True,
            seed=11,
        ) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, poll_policy=POLICY, trust_env=False) as client,
    ):
        asked: Counter[str] = Counter()
        resource = client.background_remover
        user_progress = resource.user_progress

        async def counting(user_id: Any = None, process_id: Any = None, **kwargs: Any) -> list[Progress]:
            if process_id is not None:
                asked[str(process_id).lower()] += 1
            return await user_progress(user_id, process_id, **kwargs)

        resource.user_progress = counting  # type: ignore[method-assign]
        with anyio.fail_after(120):
            outcomes = await client.process_many(
                paths,
                request=RenderRequest.remove_background,
                dest=out,
                name="{stem}{suffix}",
                ledger=out / "run.sqlite" if ledger else None,
            )
        requests = sum(emulator.request_count(route) for route in PROGRESS_ROUTES)
        assert set(emulator.processes_per_input().values()) == {1}  # each input rendered once
    return outcomes, requests, asked, paths


@pytest.mark.parametrize("ledger", [False, True], ids=["no-ledger", "sqlite-ledger"])
async def test_a_listing_without_finished_processes_costs_a_bulk_run_no_request_per_item(
    tmp_path: Path, ledger: bool
) -> None:
    normal, normal_requests, _, paths = await bulk_run(tmp_path, "normal", list_finished=True, ledger=ledger)
    omitting, requests, asked, omitting_paths = await bulk_run(
        tmp_path, "omitting", list_finished=False, ledger=ledger
    )
    assert len(normal) == len(omitting) == ITEMS
    assert all(o.ok for o in normal)
    assert all(o.ok for o in omitting)
    assert_own_results(normal, paths)
    assert_own_results(omitting, omitting_paths)
    # before: one request by id per finished process, on top of the listings (here ITEMS more); the
    # listings' own count moves with the machine's load (paced polls), hence the small allowance
    assert requests <= 2 * normal_requests + ITEMS // 10, (requests, normal_requests, len(asked))
    assert asked  # the evidence: a process missing from the listing and found finished by id
    assert len(asked) < ITEMS // 4
    assert all(o.job is not None and o.job.is_complete and not o.job.failed for o in omitting)


async def test_failed_renders_that_leave_the_listing_are_reported_with_their_real_state_after_one_lookup(
    tmp_path: Path,
) -> None:
    outcomes, _, asked, paths = await bulk_run(
        tmp_path, "failing", list_finished=False, ledger=False, failure_rate=0.2
    )
    failed = [o for o in outcomes if not o.ok]
    succeeded = [o for o in outcomes if o.ok]
    assert failed
    assert succeeded
    for outcome in failed:
        assert isinstance(outcome.error, RenderFailedError)
        assert outcome.files == []
        job = outcome.job
        assert job is not None
        assert job.progress is not None
        assert job.progress.failed_task_ids  # the server's own answer, asked for by id
        assert all(job.progress.tasks[t] == RenderState.FAILED for t in job.progress.failed_task_ids)
        assert asked[job.process_id.lower()] == 1  # one lookup (after its refused download)
    assert_own_results(succeeded, paths)
    # the succeeded ones were not asked for, but for the first few that showed the listing omits them
    looked_up = [o for o in succeeded if o.job is not None and asked[o.job.process_id.lower()]]
    assert len(looked_up) < len(succeeded) // 4


async def test_a_plain_waiter_still_gets_the_real_state_of_a_process_that_left_the_listing() -> None:
    async with (
        Emulator(auto_complete=False, list_finished=False, seed=5) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, poll_policy=POLICY, trust_env=False) as client,
    ):
        png = sample_image("png", (8, 8))
        first, second = [await client.background_remover.remove(png) for _ in range(2)]
        scheduler = client._poll_scheduler()
        async with anyio.create_task_group() as group:
            group.start_soon(first.result)
            await eventually(lambda: scheduler.requests >= 1)
            emulator.finish_process(first.process_id)  # leaves the listing: asked for by id (the evidence)
        assert first.is_complete
        assert second.progress is not None
        emulator.fail_task(next(iter(second.progress.tasks)))
        with pytest.raises(RenderFailedError):
            await second.result()
    assert second.progress is not None
    assert second.progress.failed_task_ids  # the API's answer, not a presumption


async def test_a_process_presumed_finished_but_still_running_is_awaited_and_downloaded_once_done(
    tmp_path: Path,
) -> None:
    """New processes stay out of every progress answer for a while (read-after-write lag): one missing
    from the listing is presumed finished, its download refused, and it is then awaited by id until it
    really succeeded; nothing is started again, each result is its own input's."""
    paths = make_inputs(tmp_path / "in", 6)
    async with (
        Emulator(
            task_duration=1.0, list_finished=False, read_after_write_lag=0.6, stamp_inputs=True, seed=13
        ) as emulator,
        AdCreativeClient(
            **emulator.credentials,
            user_id=USER,
            poll_policy=dataclasses.replace(POLICY, not_found_grace=5.0),  # longer than the lag
            trust_env=False,
        ) as client,
    ):
        request = RenderRequest.remove_background
        with anyio.fail_after(60):
            # the first run shows that the listing omits finished processes (one asked for by id)...
            first = await client.process_many(
                paths[:1], request=request, dest=tmp_path / "out", name="{stem}{suffix}"
            )
            # ...so the next run's processes, missing from the listing while they lag, are presumed finished
            rest = await client.process_many(
                paths[1:], request=request, dest=tmp_path / "out", name="{stem}{suffix}"
            )
        downloads = emulator.request_count("Image/BackgroundRemoving/Download")
        assert set(emulator.processes_per_input().values()) == {1}
    outcomes = first + rest
    assert all(o.ok for o in outcomes), [o.errors for o in outcomes]
    assert_own_results(outcomes, paths)
    assert downloads > len(paths)  # refused downloads of the processes presumed finished too early
