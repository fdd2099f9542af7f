"""The awaiting layer: wait_until_complete(), the one coalescing poll scheduler, as_completed, bulk.

Most tests drive the emulator by hand (``auto_complete=False``) with a fast poll policy; pacing and
deadlines use the client's ManualClock, so nothing waits for real beyond milliseconds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from helpers import FAST_POLLS, client_of, eventually
from miniapi import MiniAPI

from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    AuthenticationError,
    ClientNotOpenError,
    InvalidRequestError,
    ManualClock,
    PollPolicy,
    RenderFailedError,
    RenderJob,
    RenderKind,
    RenderNotFoundError,
    RenderState,
    RenderType,
    TaskUpdate,
    WaitTimeoutError,
)
from adcreative_async._polling import APPLICATION_SCOPE_SHARE, REQUEST_COST_IN_ITEMS, SHARED_RELIST_AFTER
from adcreative_async._transport import TOKEN_RENEWALS
from adcreative_async.notifications import NotificationHub, ProgressNotification, decode_notification
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
USERS = [str(uuid.UUID(int=i + 1)) for i in range(3)]
GEN_PROGRESS = "Image/Generation/CheckUserProgress"
GEN_APP_PROGRESS = "Image/Generation/CheckApplicationAllProgresses"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
BG_APP_PROGRESS = "Image/BackgroundRemoving/CheckApplicationAllProgresses"
PNG = sample_image("png", (8, 8))


async def generate(client: AdCreativeClient, user: str = USER) -> RenderJob:
    return await client.creatives.generate(
        brand_image=PNG,
        background_image=PNG,
        main_headline="Introducing Our Latest Product",
        punchline="Revolutionizing the industry.",
        action_text="Learn More",
        color1_hex="#fc2c2c",
        color2_hex="#002c2c",
        render_kind=RenderKind.POST,
        render_type=RenderType.SVG,
        user_id=user,
    )


class Collector:
    """Runs a job's wait in a task and keeps what it yields and how it ended."""

    def __init__(self, job: RenderJob, **kwargs: object) -> None:
        self.job = job
        self.kwargs = kwargs
        self.updates: list[TaskUpdate] = []
        self.error: BaseException | None = None
        self.done = False

    async def run(self) -> None:
        try:
            async for update in self.job.wait_until_complete(**self.kwargs):  # type: ignore[arg-type]
                self.updates.append(update)
        except AdCreativeError as exc:
            self.error = exc
        self.done = True

    def transitions(self) -> list[tuple[str, RenderState | None, RenderState]]:
        return [(u.task_id, u.previous, u.state) for u in self.updates]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=3) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with client_of(emulator, USER) as c:
        yield c


# ----------------------------------------------------------------------------------- wait_until_complete


async def test_wait_yields_current_states_first_then_only_changes(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await generate(client)
    tasks = list(job.task_ids)
    collector = Collector(job)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run)
        await eventually(lambda: len(collector.updates) == 5)
        assert collector.transitions() == [(t, None, RenderState.STARTED) for t in tasks]
        polls = emulator.request_count(GEN_PROGRESS)
        await eventually(lambda: emulator.request_count(GEN_PROGRESS) >= polls + 3)
        assert len(collector.updates) == 5  # polls without a change yield nothing
        emulator.finish_task(tasks[0])
        await eventually(lambda: len(collector.updates) == 6)
        assert collector.transitions()[-1] == (tasks[0], RenderState.STARTED, RenderState.SUCCEEDED)
        assert collector.updates[-1].progress.progress == 20
        assert collector.updates[-1].succeeded
        for task in tasks[1:]:
            emulator.finish_task(task)
    assert collector.done
    assert collector.error is None
    assert len(collector.updates) == 10
    assert job.is_complete
    assert job.progress is not None
    assert job.progress.progress == 100


async def test_result_returns_the_final_progress(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)
    emulator.finish_process(job.process_id)
    progress = await job.result(timeout=5)
    assert progress.is_complete
    assert progress is job.progress


async def test_partial_task_maps_complete_by_counts(client: AdCreativeClient) -> None:
    async with (
        Emulator(auto_complete=False, partial_tasks=True) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False) as c,
    ):
        job = await generate(c)
        listed = list(job.task_ids)
        assert len(listed) == 3  # the emulator lists 3 of the 5 tasks, like the seeds' 2 of 5
        collector = Collector(job)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await eventually(lambda: len(collector.updates) == 3)
            for task in listed:
                emulator.finish_task(task)
            await eventually(lambda: len(collector.updates) == 6)
            await anyio.sleep(0.05)
            assert not collector.done  # listed tasks done, but 2 of 5 are not: not complete
            emulator.finish_process(job.process_id)
        assert collector.done
        assert job.progress is not None
        assert (job.progress.completed_task_count, job.progress.progress) == (5, 100)


async def test_unknown_states_are_yielded_and_not_terminal() -> None:
    async with (
        Emulator(auto_complete=False, unknown_task_state=7) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False) as c,
    ):
        job = await c.background_remover.remove(PNG)
        collector = Collector(job)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await eventually(lambda: len(collector.updates) == 1)
            assert collector.updates[0].state == 7
            assert collector.updates[0].state.name == "UNNAMED_7"
            assert not collector.updates[0].is_terminal
            emulator.finish_process(job.process_id)
        assert collector.transitions()[-1][1:] == (RenderState(7), RenderState.SUCCEEDED)
        assert collector.error is None


async def test_new_task_ids_appearing_later_are_reported() -> None:
    process = str(uuid.uuid4())
    first, later = str(uuid.uuid4()), str(uuid.uuid4())
    listings = [
        {first: 1},
        {first: 5, later: 1},
        {first: 5, later: 5},
    ]
    calls = 0

    async with MiniAPI() as api:

        @api.route("GET", "/api/v1/Image/BackgroundRemoving/CheckUserProgress")
        async def progress(request: web.Request) -> web.StreamResponse:
            nonlocal calls
            tasks = listings[min(calls, len(listings) - 1)]
            calls += 1
            done = sum(1 for s in tasks.values() if s == 5)
            body = {
                "$id": "1",
                "$values": [
                    {
                        "imageRenderProcessId": process,
                        "userId": USER,
                        "totalTaskCount": 2,
                        "completedTaskCount": done,
                        "progress": done * 50,
                        "tasks": {"$id": "3", **tasks},
                    }
                ],
            }
            return web.json_response(body)

        async with AdCreativeClient(
            **api.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as c:
            job = c.background_remover.job(process)
            updates = [u async for u in job.wait_until_complete(timeout=5)]
    assert [(u.task_id, u.previous, u.state) for u in updates] == [
        (first, None, RenderState.STARTED),
        (first, RenderState.STARTED, RenderState.SUCCEEDED),
        (later, None, RenderState.STARTED),
        (later, RenderState.STARTED, RenderState.SUCCEEDED),
    ]
    assert job.task_ids == (first, later)


async def test_failed_task_is_reported_then_raises(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await generate(client)
    bad, *good = job.task_ids
    emulator.fail_task(bad, message="The renderer crashed.")
    for task in good:
        emulator.finish_task(task)
    updates: list[TaskUpdate] = []

    async def follow() -> None:
        async for update in job.wait_until_complete(timeout=5):
            updates.append(update)

    with pytest.raises(RenderFailedError) as info:
        await follow()
    error = info.value
    assert error.job is job
    assert error.failed_task_ids == (bad,)
    assert error.server_message == "The renderer crashed."
    assert "The renderer crashed." in str(error)
    assert any(u.task_id == bad and u.failed for u in updates)  # the update came first
    assert error.progress is not None
    assert error.progress.is_complete
    assert job.failed


async def test_failure_can_be_reported_without_raising(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)
    (task,) = job.task_ids
    emulator.fail_task(task)
    progress = await job.result(timeout=5, raise_on_failure=False)
    assert progress.failed_task_ids == [task]
    assert job.failed
    with pytest.raises(RenderFailedError):
        job.raise_for_failure()


async def test_edit_waits_for_the_new_cycle(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await generate(client)
    emulator.finish_process(job.process_id)
    await job.result(timeout=5)  # the scheduler's cache now holds the completed snapshot
    edited = await client.creatives.edit(job.task_ids[:2], punchline="new")
    assert edited.progress is not None
    assert edited.progress.progress == 60
    collector = Collector(edited)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run)
        polls = emulator.request_count(GEN_PROGRESS)
        await eventually(lambda: emulator.request_count(GEN_PROGRESS) >= polls + 3)
        assert not collector.done  # the cached 100 % from before the edit did not complete it
        for task in job.task_ids[:2]:
            emulator.finish_task(task)
    assert collector.done
    assert collector.error is None
    assert edited.is_complete
    back = [(t, p, s) for t, p, s in collector.transitions() if p is not None]
    assert back == [(t, RenderState.STARTED, RenderState.SUCCEEDED) for t in job.task_ids[:2]]


async def test_an_edit_that_ends_where_the_old_cycle_ended_still_completes(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await generate(client)
    emulator.finish_process(job.process_id)
    await job.result(timeout=5)  # the cache holds the completed snapshot, from before the edit
    edited = await client.creatives.edit(job.task_ids[:2], punchline="new")
    for task in job.task_ids[:2]:
        emulator.finish_task(task)  # the new cycle ends before any poll: the same progress as before
    edited.progress = None  # not even the edit's own answer in the cache: only the polls can tell
    progress = await edited.result(timeout=5)
    assert progress == job.progress  # nothing differs from the pre-edit answer but the time it was sent
    assert edited.is_complete


async def test_data_from_a_poll_sent_before_the_edit_returned_is_ignored(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await generate(client)
    emulator.finish_process(job.process_id)
    done = await job.result(timeout=5)
    edited = await client.creatives.edit(job.task_ids[:1], punchline="new")
    scheduler = client._poll_scheduler()
    snap = scheduler.snapshot(("creatives", USER), job.process_id)
    assert snap is not None
    assert not snap.progress.is_complete  # the edit's answer, kept when the edit returned
    # The complete listing of a poll sent just before the edit returned, answered late: ignored.
    poller = scheduler._pollers[("creatives", USER.lower())]
    assert not scheduler._store(poller, [done], edited._not_before - 0.001)
    assert scheduler.snapshot(("creatives", USER), job.process_id) is snap
    iterator = edited.wait_until_complete(timeout=5)
    first = [await iterator.__anext__() for _ in range(5)]
    assert {u.previous for u in first} == {None}
    assert not edited.is_complete


# ---------------------------------------------------------------------------------------- deadlines


async def test_timeout_raises_with_the_job_and_its_last_progress(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(**emulator.credentials, user_id=USER, clock=clock, trust_env=False) as client:
        job = await client.background_remover.remove(PNG)
        result: list[BaseException] = []

        async def wait() -> None:
            try:
                await job.result(timeout=30)
            except WaitTimeoutError as exc:
                result.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(29.9)
            assert not result
            await clock.advance(0.2)
            await eventually(lambda: bool(result))
    (error,) = result
    assert isinstance(error, WaitTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.job is job
    assert error.progress is job.progress
    assert client.scheduler_stats["waiters"] == 0


async def test_timeout_zero_after_start_still_reports_current_states(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await client.background_remover.remove(PNG)
    updates: list[TaskUpdate] = []

    async def follow() -> None:
        async for update in job.wait_until_complete(timeout=0):
            updates.append(update)

    with pytest.raises(WaitTimeoutError):
        await follow()
    assert len(updates) == 1


# ------------------------------------------------------------------------------- nothing left behind


def _connections_in_use(client: AdCreativeClient) -> int:
    session = client._transport._session
    assert session is not None
    return len(session.connector._acquired)  # type: ignore[union-attr]


async def test_break_deregisters_before_control_returns(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await generate(client)
    async for update in job.wait_until_complete(timeout=60):
        assert client.scheduler_stats["waiters"] == 0  # between items nothing is registered
        if update.previous is None:
            break
    assert client.scheduler_stats["waiters"] == 0
    await eventually(lambda: client.scheduler_stats["pollers"] == 0)  # at most its in-flight poll
    assert _connections_in_use(client) == 0
    scheduler = client._poll_scheduler()
    assert not scheduler._deadline_running


async def test_cancelling_a_wait_leaves_nothing_behind(emulator: Emulator, client: AdCreativeClient) -> None:
    jobs = [await generate(client, user) for user in USERS]
    started = anyio.Event()

    async def wait_all() -> None:
        started.set()
        async for _ in client.as_completed(jobs, timeout=60):
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_all)
        await started.wait()
        await eventually(lambda: client.scheduler_stats["pollers"] == 3)
        # three users: their ticks shared by one application listing
        await eventually(lambda: emulator.request_count(GEN_APP_PROGRESS) >= 2)
        tg.cancel_scope.cancel()
    assert client.scheduler_stats["waiters"] == 0
    await eventually(lambda: client.scheduler_stats["pollers"] == 0)  # at most its in-flight poll
    assert _connections_in_use(client) == 0
    assert not client._poll_scheduler()._deadline_running


async def test_waiting_needs_the_client_lifetime(emulator: Emulator) -> None:
    client = AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False)
    job = client.background_remover.job(str(uuid.uuid4()))
    with pytest.raises(ClientNotOpenError, match="async with AdCreativeClient"):
        job.wait_until_complete()


async def test_closing_the_client_ends_waits_with_a_clear_error(emulator: Emulator) -> None:
    errors: list[BaseException] = []

    async def wait(job: RenderJob) -> None:
        try:
            await job.result()
        except ClientNotOpenError as exc:
            errors.append(exc)

    async with (
        anyio.create_task_group() as tg,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        tg.start_soon(wait, job)  # a waiter outside the client's own task group (e.g. a request handler)
        await eventually(lambda: emulator.request_count(BG_PROGRESS) >= 2)
        # the client is closed here, while the waiter still waits
    assert len(errors) == 1
    assert "closed while waiting" in str(errors[0])


# --------------------------------------------------------------------------------------- coalescing


async def test_one_request_per_user_per_tick_whatever_the_number_of_jobs(emulator: Emulator) -> None:
    clock = ManualClock()
    policy = PollPolicy(
        initial_interval=1.0, max_interval=1.0, min_interval=1.0, jitter=None, burst=50, share_listings=False
    )
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        jobs = [await client.background_remover.remove(PNG, user_id=USERS[i % 3]) for i in range(60)]
        baseline = emulator.request_count(BG_PROGRESS)  # one listing per user before its first start
        assert baseline == 3
        counts: list[int] = []
        done: list[RenderJob] = []

        async def wait_all() -> None:
            async for job in client.as_completed(jobs):
                done.append(job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            await anyio.wait_all_tasks_blocked()
            for tick in range(1, 4):
                await clock.advance(1.0)
                await eventually(lambda t=tick: emulator.request_count(BG_PROGRESS) >= baseline + 3 * t)  # type: ignore[misc]
                await anyio.sleep(0.01)
                counts.append(emulator.request_count(BG_PROGRESS) - baseline)
            for job in jobs:
                emulator.finish_process(job.process_id)
            await clock.advance(1.0)
            await eventually(lambda: len(done) == 60)
    assert counts == [3, 6, 9]  # 60 jobs, 3 users: 3 requests a tick, not 60
    assert emulator.request_count(BG_PROGRESS) - baseline == 12
    assert {j.process_id for j in done} == {j.process_id for j in jobs}


SHARED = PollPolicy(initial_interval=0.9, max_interval=0.9, min_interval=0.1, jitter=None, burst=50)


async def _ticked(client: AdCreativeClient, ticks: int) -> None:
    """Until every poller with waiters has finished ``ticks`` ticks (a request the emulator counted may
    still be on its way back: the manual clock must not move before its poller has rescheduled)."""
    pollers = client._poll_scheduler()._pollers.values()
    await eventually(lambda: all(p.ticks >= ticks for p in pollers if p.blocked))


async def _wait_for_all(client: AdCreativeClient, jobs: list[RenderJob], done: list[RenderJob]) -> None:
    async for job in client.as_completed(jobs):
        done.append(job)


async def test_several_users_share_one_application_listing_at_their_cost_rate(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        jobs = [await client.background_remover.remove(PNG, user_id=USERS[i % 3]) for i in range(30)]
        emulator.requests.clear()  # forget the listings taken before the start calls
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, jobs, done)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(0.9)  # the three users' first tick: one listing serves them all
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 1)
            await _ticked(client, 1)
            # the next one as much sooner as it is cheaper than the users' own listings (a request and
            # 10 processes each) together: it costs what they would have
            ratio = 3 * (REQUEST_COST_IN_ITEMS + 10) / (REQUEST_COST_IN_ITEMS + 30)
            await clock.advance(0.9 / ratio - 0.01)
            await anyio.sleep(0.02)
            assert emulator.request_count(BG_APP_PROGRESS) == 1
            await clock.advance(0.02)
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 2)
            for job in jobs[:15]:
                emulator.finish_process(job.process_id)
            await clock.advance(0.9)
            await eventually(lambda: len(done) == 15)
            for job in jobs[15:]:
                emulator.finish_process(job.process_id)
            for _ in range(3):
                await clock.advance(0.9)
                await anyio.sleep(0.01)
            await eventually(lambda: len(done) == 30)
    assert emulator.request_count(BG_PROGRESS) == 0  # no user polled alone
    assert sorted(j.process_id for j in done) == sorted(j.process_id for j in jobs)
    for job in done:  # each job got its own process's result
        assert job.progress is not None
        assert job.progress.image_render_process_id.lower() == job.process_id.lower()
        assert job.progress.is_complete


async def test_application_scope_polls_come_twice_as_often_as_one_listing(emulator: Emulator) -> None:
    """The run ledger's waits (a user per process, awaited through the application listing):
    APPLICATION_SCOPE_SHARE times as often as one listing's own pace."""
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        started = [await client.background_remover.remove(PNG, user_id=str(uuid.uuid4())) for _ in range(3)]
        jobs = [
            client.background_remover.job(j.process_id, user_id=j.user_id)._poll_by_application()
            for j in started
        ]
        emulator.requests.clear()
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, jobs, done)
            # jobs rebuilt from ids: polled at once (nothing known of them yet)
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 1)
            await _ticked(client, 1)
            ratio = APPLICATION_SCOPE_SHARE
            await clock.advance(0.9 / ratio - 0.01)
            await anyio.sleep(0.02)
            assert emulator.request_count(BG_APP_PROGRESS) == 1
            await clock.advance(0.02)
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 2)
            for job in jobs:
                emulator.finish_process(job.process_id)
            await clock.advance(0.9)
            await eventually(lambda: len(done) == 3)
    assert emulator.request_count(BG_PROGRESS) == 0


async def test_application_scope_keeps_its_pace_when_it_asks_for_its_last_processes_by_id(
    emulator: Emulator,
) -> None:
    """The end of a ledger run: few processes awaited in a large listing are asked for by id, still
    APPLICATION_SCOPE_SHARE times as often as one listing's own pace."""
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        for _ in range(40):  # the application's other processes
            await client.background_remover.remove(PNG, user_id=str(uuid.uuid4()))
        mine = await client.background_remover.remove(PNG, user_id=str(uuid.uuid4()))
        job = client.background_remover.job(mine.process_id, user_id=mine.user_id)._poll_by_application()
        emulator.requests.clear()
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, [job], done)
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 1)  # measures the listing
            await _ticked(client, 1)
            interval = 0.9 / APPLICATION_SCOPE_SHARE
            await clock.advance(interval + 0.01)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 1)  # by id, under its user
            await _ticked(client, 2)
            await clock.advance(interval - 0.02)
            await anyio.sleep(0.02)
            assert emulator.request_count(BG_PROGRESS) == 1
            await clock.advance(0.03)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 2)
            emulator.finish_process(job.process_id)
            await clock.advance(interval + 0.01)
            await eventually(lambda: len(done) == 1)
    assert emulator.request_count(BG_APP_PROGRESS) == 1


async def test_one_user_polls_its_own_listing(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        jobs = [await client.background_remover.remove(PNG, user_id=USERS[0]) for _ in range(5)]
        emulator.requests.clear()
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, jobs, done)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(0.9)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 1)
            for job in jobs:
                emulator.finish_process(job.process_id)
            await clock.advance(0.9)
            await eventually(lambda: len(done) == 5)
    assert emulator.request_count(BG_APP_PROGRESS) == 0


async def test_a_refused_application_listing_leaves_each_user_polling_alone(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        jobs = [await client.background_remover.remove(PNG, user_id=USERS[i % 3]) for i in range(6)]
        emulator.requests.clear()
        emulator.fail_next(BG_APP_PROGRESS, status=403)
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, jobs, done)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(0.9)  # refused: the same tick polls each user
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 3)
            await _ticked(client, 1)
            await clock.advance(0.9)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 6)
            await _ticked(client, 2)
            for job in jobs:
                emulator.finish_process(job.process_id)
            await clock.advance(0.9)
            await eventually(lambda: len(done) == 6)
    assert emulator.request_count(BG_APP_PROGRESS) == 1  # never asked again
    assert not any(isinstance(j, BaseException) for j in done)


async def test_an_application_listing_dearer_than_the_users_own_is_not_shared(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=SHARED, clock=clock, trust_env=False
    ) as client:
        others = [await client.background_remover.remove(PNG, user_id=str(uuid.uuid4())) for _ in range(300)]
        for job in others:  # another part of the application: 300 processes in its listing
            emulator.finish_process(job.process_id)
        jobs = [await client.background_remover.remove(PNG, user_id=USERS[i]) for i in range(2)]
        emulator.requests.clear()
        done: list[RenderJob] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_all, client, jobs, done)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(0.9)  # measured once (and that answer used)
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 1)
            await _ticked(client, 1)
            for tick in (1, 2):  # then each user alone: 2 requests of ~1 process beat one of 302
                await clock.advance(0.9)
                await eventually(lambda t=tick: emulator.request_count(BG_PROGRESS) == 2 * t)  # type: ignore[misc]
                await _ticked(client, 1 + tick)
            assert emulator.request_count(BG_APP_PROGRESS) == 1
            await clock.advance(SHARED_RELIST_AFTER)  # measured again after a while
            await eventually(lambda: emulator.request_count(BG_APP_PROGRESS) == 2)
            for job in jobs:
                emulator.finish_process(job.process_id)
            await clock.advance(0.9)
            await eventually(lambda: len(done) == 2)


async def test_a_poll_that_brings_nothing_new_keeps_the_snapshot(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await generate(client)
    scheduler = client._poll_scheduler()
    collector = Collector(job, timeout=5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run)
        await eventually(lambda: len(collector.updates) == 5)
        polls = emulator.request_count(GEN_PROGRESS)
        await eventually(lambda: emulator.request_count(GEN_PROGRESS) >= polls + 1)
        before = scheduler.snapshot(("creatives", USER), job.process_id)
        await eventually(lambda: emulator.request_count(GEN_PROGRESS) >= polls + 4)
        after = scheduler.snapshot(("creatives", USER), job.process_id)
        assert before is not None
        assert after is before
        emulator.finish_task(job.task_ids[0])
        await eventually(lambda: len(collector.updates) == 6)
        changed = scheduler.snapshot(("creatives", USER), job.process_id)
        assert changed is not None
        assert changed.version > before.version
        emulator.finish_process(job.process_id)
    assert collector.error is None


async def test_many_waiters_on_one_job_share_its_polls(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)
    results: list[float] = []

    async def wait() -> None:
        results.append((await job.result(timeout=5)).progress)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(wait)
        await eventually(lambda: emulator.request_count(BG_PROGRESS) >= 3)
        emulator.finish_process(job.process_id)
    assert results == [100] * 50
    assert emulator.request_count(BG_PROGRESS) < 20


# ------------------------------------------------------------------------------------------ pacing


async def test_polls_back_off_and_reset_on_change(emulator: Emulator) -> None:
    clock = ManualClock()
    # age_fraction=100: the render's age never caps the backoff here (see the next test)
    policy = PollPolicy(initial_interval=1.0, max_interval=8.0, factor=2.0, age_fraction=100, jitter=None)
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        job = await generate(client)
        collector = Collector(job)
        times: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await anyio.wait_all_tasks_blocked()
            start = clock.monotonic()
            for _ in range(80):
                before = emulator.request_count(GEN_PROGRESS)
                await clock.advance(0.5)
                await anyio.sleep(0.005)
                if emulator.request_count(GEN_PROGRESS) > before:
                    times.append(clock.monotonic() - start)
                    if len(times) == 5:
                        emulator.finish_task(job.task_ids[0])  # a change: back to fast polls
                if len(times) == 8:
                    break
            tg.cancel_scope.cancel()
    gaps = [round(b - a, 1) for a, b in zip([0.0, *times], times, strict=False)]
    # 1 s after submission, then 1, 2, 4, 8 (capped); the change seen at the 6th poll resets to 1, 2
    assert gaps[:5] == [1.0, 1.0, 2.0, 4.0, 8.0]
    assert gaps[5] == 8.0
    assert gaps[6:] == [1.0, 2.0]


async def test_polls_stay_within_a_fraction_of_the_youngest_renders_age(emulator: Emulator) -> None:
    clock = ManualClock()
    policy = PollPolicy(initial_interval=1.0, max_interval=8.0, factor=2.0, age_fraction=0.25, jitter=None)
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        job = await generate(client)
        submitted = clock.monotonic()
        times: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(Collector(job).run)
            await anyio.wait_all_tasks_blocked()
            for _ in range(80):
                before = emulator.request_count(GEN_PROGRESS)
                await clock.advance(0.25)
                await anyio.sleep(0.002)
                if emulator.request_count(GEN_PROGRESS) > before:
                    times.append(clock.monotonic() - submitted)
                if len(times) == 8:
                    break
            tg.cancel_scope.cancel()
    gaps = [round(b - a, 2) for a, b in zip([0.0, *times], times, strict=False)]
    # Nothing changes, so the backoff would go 1, 1, 2, 4, 8; a quarter of the render's age caps it
    # (never below 1 s): 1 s until the render is 4 s old, then 1.25 s (at 5 s), 1.6 s (at 6.25 s,
    # seen on the next 0.25 s step: 8 s), 2 s.
    assert gaps == [1.0, 1.0, 1.0, 1.0, 1.0, 1.25, 1.75, 2.0]


async def test_429_retry_after_is_honoured(emulator: Emulator) -> None:
    clock = ManualClock()
    policy = PollPolicy(initial_interval=1.0, max_interval=1.0, min_interval=1.0, jitter=None)
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        job = await client.background_remover.remove(PNG)
        emulator.requests.clear()  # forget the listing taken before the start call
        emulator.fail_next(BG_PROGRESS, 429, retry_after=30)
        collector = Collector(job)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(1.0)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 1)  # answered 429
            await anyio.sleep(0.01)
            for _ in range(28):
                await clock.advance(1.0)
            await anyio.sleep(0.01)
            assert emulator.request_count(BG_PROGRESS) == 1  # nothing before Retry-After
            emulator.finish_process(job.process_id)
            await clock.advance(2.0)
            await eventually(lambda: collector.done)
        assert collector.error is None
        assert emulator.request_count(BG_PROGRESS) == 2


async def test_client_wide_rate_limit_on_polls(emulator: Emulator) -> None:
    clock = ManualClock()
    policy = PollPolicy(
        initial_interval=1.0,
        max_interval=1.0,
        min_interval=1.0,
        jitter=None,
        max_requests_per_second=2.0,
        burst=2,
        share_listings=False,  # each user polls alone: 6 requests due at once
    )
    users = [str(uuid.uuid4()) for _ in range(6)]
    async with AdCreativeClient(
        **emulator.credentials, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        jobs = [await client.background_remover.remove(PNG, user_id=u) for u in users]
        emulator.requests.clear()  # forget the listings taken before the start calls

        async def wait_all() -> None:
            async for _ in client.as_completed(jobs):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(1.0)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 2)
            await anyio.sleep(0.02)
            assert emulator.request_count(BG_PROGRESS) == 2  # 6 users due, 2 allowed at once
            await clock.advance(0.5)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) == 3)
            tg.cancel_scope.cancel()


async def test_a_failing_poll_never_fails_the_wait(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)
    emulator.fail_next(BG_PROGRESS, 503, count=3)
    emulator.fail_next(BG_PROGRESS, 500, count=2)
    emulator.finish_process(job.process_id)
    progress = await job.result(timeout=5)
    assert progress.is_complete
    assert emulator.request_count(BG_PROGRESS) >= 6


async def test_a_permanent_error_reaches_the_waiter(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)
    emulator.fail_next(BG_PROGRESS, 401, count=1 + TOKEN_RENEWALS)  # each renewal's retry meets one too
    with pytest.raises(AuthenticationError):
        await job.result(timeout=5)
    assert client.scheduler_stats["waiters"] == 0


async def test_the_scheduler_never_raises_into_the_client(
    emulator: Emulator, client: AdCreativeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await client.background_remover.remove(PNG)

    async def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.background_remover, "user_progress", broken)
    monkeypatch.setattr(client.background_remover, "_listing", broken)  # the scheduler's listing call
    with pytest.raises(AdCreativeError, match="poller failed: RuntimeError"):
        await job.result(timeout=5)
    monkeypatch.undo()
    emulator.finish_process(job.process_id)
    assert (await job.result(timeout=5)).is_complete  # the client and its task group live on


# ------------------------------------------------------------------------- missing processes, resume


async def test_read_after_write_lag_is_waited_out() -> None:
    async with (
        Emulator(auto_complete=False, read_after_write_lag=0.1) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        assert await client.background_remover.user_progress() == []  # not visible yet
        emulator.finish_process(job.process_id)
        assert (await job.result(timeout=5)).is_complete


async def test_an_unknown_process_is_not_found_after_the_grace(emulator: Emulator) -> None:
    clock = ManualClock()
    policy = PollPolicy(
        initial_interval=1.0, max_interval=1.0, min_interval=1.0, jitter=None, not_found_grace=10
    )
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, poll_policy=policy, clock=clock, trust_env=False
    ) as client:
        job = client.background_remover.job(str(uuid.uuid4()))
        errors: list[BaseException] = []

        async def wait() -> None:
            try:
                await job.result()
            except RenderNotFoundError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            for _ in range(9):
                await clock.advance(1.0)
                await anyio.sleep(0.005)
            assert not errors
            for _ in range(3):
                await clock.advance(1.0)
                await anyio.sleep(0.005)
            await eventually(lambda: bool(errors))
    assert errors[0].job is job  # type: ignore[attr-defined]


async def test_finished_processes_dropped_from_listings_are_asked_for_by_id() -> None:
    async with (
        Emulator(auto_complete=False, list_finished=False) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as client,
    ):
        job = await client.background_remover.remove(PNG)
        collector = Collector(job, timeout=5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            await eventually(lambda: emulator.request_count(BG_PROGRESS) >= 2)  # seen in the listing
            emulator.finish_process(job.process_id)
            assert await client.background_remover.user_progress() == []  # gone from the listing
        assert collector.error is None
        assert job.is_complete


async def test_resume_a_rebuilt_job_in_another_client(emulator: Emulator) -> None:
    async with AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as first:
        stored = (await generate(first)).to_json()
    record = json.loads(stored)
    async with AdCreativeClient(**emulator.credentials, poll_policy=FAST_POLLS, trust_env=False) as second:
        job = second.job_from_json(stored)
        emulator.finish_process(job.process_id)
        updates = [u async for u in job.wait_until_complete(timeout=5)]
        assert [u.state for u in updates].count(RenderState.SUCCEEDED) == 5
        by_ids = second.creatives.wait_until_complete(record["processId"], user_id=USER, timeout=5)
        assert len([u async for u in by_ids]) == 5  # a fresh handle reports the current states


async def test_large_history_is_polled_by_process_id() -> None:
    process = str(uuid.uuid4())
    history = [
        {
            "imageRenderProcessId": str(uuid.uuid4()),
            "progress": 100,
            "totalTaskCount": 1,
            "completedTaskCount": 1,
            "tasks": {str(uuid.uuid4()): 5},
        }
        for _ in range(400)
    ]
    mine = {
        "imageRenderProcessId": process,
        "progress": 0,
        "totalTaskCount": 1,
        "completedTaskCount": 0,
        "tasks": {"t1": 1},
    }
    queries: list[dict[str, str]] = []

    async with MiniAPI() as api:

        @api.route("GET", "/api/v1/Image/BackgroundRemoving/CheckUserProgress")
        async def progress(request: web.Request) -> web.StreamResponse:
            queries.append(dict(request.query))
            if "imageBackgroundRemoverProcessId" in request.query:
                return web.json_response([mine])
            return web.json_response([*history, mine])

        async with AdCreativeClient(
            **api.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as c:
            collector = Collector(c.background_remover.job(process), timeout=5)
            async with anyio.create_task_group() as tg:
                tg.start_soon(collector.run)
                await eventually(lambda: len(queries) >= 4)
                mine.update({"progress": 100, "completedTaskCount": 1, "tasks": {"t1": 5}})
            assert collector.error is None
            assert collector.done
    assert "imageBackgroundRemoverProcessId" not in queries[0]  # one listing measures the history
    assert all(q.get("imageBackgroundRemoverProcessId") == process for q in queries[1:4])


# ------------------------------------------------------------------------------- as_completed, bulk


async def test_as_completed_yields_jobs_as_they_finish(emulator: Emulator, client: AdCreativeClient) -> None:
    jobs = [await client.background_remover.remove(PNG) for _ in range(3)]
    order: list[RenderJob] = []
    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            async for job in client.as_completed(jobs, timeout=5):
                order.append(job)

        tg.start_soon(consume)
        for job in (jobs[2], jobs[0], jobs[1]):
            emulator.finish_process(job.process_id)
            await eventually(lambda j=job: j in order)  # type: ignore[misc]
    assert order == [jobs[2], jobs[0], jobs[1]]


async def test_as_completed_timeout_lists_the_pending_jobs(emulator: Emulator) -> None:
    clock = ManualClock()
    async with AdCreativeClient(**emulator.credentials, user_id=USER, clock=clock, trust_env=False) as client:
        jobs = [await client.background_remover.remove(PNG) for _ in range(2)]
        emulator.finish_process(jobs[0].process_id)
        errors: list[WaitTimeoutError] = []
        finished: list[RenderJob] = []

        async def consume() -> None:
            try:
                async for job in client.as_completed(jobs, timeout=10):
                    finished.append(job)
            except WaitTimeoutError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for _ in range(12):
                await clock.advance(1.0)
                await anyio.sleep(0.005)
            await eventually(lambda: bool(errors))
    assert finished == [jobs[0]]
    assert errors[0].pending_jobs == (jobs[1],)


async def test_bulk_isolates_failures_and_downloads_as_tasks_succeed(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    items: list[bytes] = [PNG, b"not an image", PNG, PNG]
    seen: list[tuple[int, RenderState]] = []

    async def submit(c: AdCreativeClient, image: bytes) -> RenderJob:
        return await c.background_remover.remove(image)

    def on_update(outcome: object, update: TaskUpdate) -> None:
        seen.append((outcome.index, update.state))  # type: ignore[attr-defined]

    async with client.bulk(items, submit, dest=tmp_path, on_update=on_update) as run:
        outcomes = {}
        async for outcome in run:
            outcomes[outcome.index] = outcome
            if len(outcomes) == 1:  # the bad input fails first, at submission
                assert outcome.index == 1
                await eventually(lambda: len(emulator.processes_for(USER)) == 3)
                failing, *others = emulator.processes_for(USER)
                (task,) = failing.tasks
                emulator.fail_task(task)
                for process in others:
                    emulator.finish_process(process.process_id)
    assert isinstance(outcomes[1].error, InvalidRequestError)
    assert outcomes[1].job is None
    failed = [o for o in outcomes.values() if isinstance(o.error, RenderFailedError)]
    assert len(failed) == 1
    ok = [o for o in outcomes.values() if o.ok]
    assert len(ok) == 2
    for outcome in ok:
        (path,) = outcome.files
        assert path.parent == tmp_path
        assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(o.files[0].name for o in ok)
    assert (2, RenderState.SUCCEEDED) in seen or (0, RenderState.SUCCEEDED) in seen


async def test_process_many_returns_outcomes_in_input_order(tmp_path: Path) -> None:
    async with (
        Emulator(task_duration=(0.01, 0.05)) as emulator,
        AdCreativeClient(
            **emulator.credentials, user_id=USER, poll_policy=FAST_POLLS, trust_env=False
        ) as client,
    ):
        images = [sample_image("png", (4 + i, 4)) for i in range(12)]
        outcomes = await client.process_many(
            images,
            lambda c, image: c.background_remover.remove(image),
            dest=tmp_path,
            upload_concurrency=3,
            download_concurrency=2,
            item_timeout=10,
        )
    assert [o.index for o in outcomes] == list(range(12))
    assert all(o.ok for o in outcomes)
    assert len(list(tmp_path.iterdir())) == 12
    assert emulator.request_count(BG_PROGRESS) < 12 * 3


async def test_leaving_a_bulk_run_early_cancels_the_rest(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    items = [PNG] * 5
    async with client.bulk(items, lambda c, image: c.background_remover.remove(image)) as run:
        await eventually(lambda: emulator.request_count("Image/BackgroundRemoving/AdCreative") == 5)
    assert client.scheduler_stats["waiters"] == 0
    await eventually(lambda: client.scheduler_stats["pollers"] == 0)
    assert len(run) == 5


class CallerError(Exception):
    """An error of the caller's own code inside ``async with client.bulk(...)``."""


async def test_an_item_timeout_is_the_outcome_error_itself(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    outcomes = await client.process_many(
        [PNG, PNG], lambda c, image: c.background_remover.remove(image), item_timeout=0
    )
    for outcome in outcomes:
        assert type(outcome.error) is WaitTimeoutError
        assert outcome.errors == [outcome.error]
        assert outcome.error.job is outcome.job


async def test_a_local_error_while_downloading_is_the_outcome_error_itself(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    async with client.bulk(
        [PNG], lambda c, image: c.background_remover.remove(image), dest=not_a_directory
    ) as run:
        await eventually(lambda: len(emulator.processes_for(USER)) == 1)
        not_a_directory.rmdir()  # the folder (checked before the start call) is replaced by a file
        not_a_directory.write_bytes(b"")
        emulator.finish_process(emulator.processes_for(USER)[0].process_id)
        (outcome,) = [outcome async for outcome in run]
    assert isinstance(outcome.error, OSError)
    assert outcome.errors == [outcome.error]
    assert outcome.files == []


async def test_every_error_of_an_item_is_kept(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    async with client.bulk([USER], generate, dest=not_a_directory) as run:
        await eventually(lambda: len(emulator.processes_for(USER)) == 1)
        not_a_directory.rmdir()  # the folder (checked before the start call) is replaced by a file
        not_a_directory.write_bytes(b"")
        first, second, *rest = emulator.processes_for(USER)[0].tasks
        emulator.finish_task(first)  # its download fails: the file is in the way
        emulator.fail_task(second)  # and the render fails
        for task in rest:
            emulator.finish_task(task)
        (outcome,) = [outcome async for outcome in run]
    assert sorted(type(e).__name__ for e in outcome.errors) == sorted(
        ["FileExistsError"] * (1 + len(rest)) + ["RenderFailedError"]
    )
    assert outcome.error is outcome.errors[0]


async def test_the_callers_own_error_inside_a_bulk_run_propagates_as_itself(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    async def fail_inside_the_block() -> None:
        async with client.bulk([PNG] * 3, lambda c, image: c.background_remover.remove(image)):
            await eventually(lambda: emulator.request_count("Image/BackgroundRemoving/AdCreative") == 3)
            raise CallerError("the caller's own code failed")

    with pytest.raises(CallerError):
        await fail_inside_the_block()
    assert client.scheduler_stats["waiters"] == 0


# ------------------------------------------------------------------------------- work per wake


def _done_message(job: RenderJob, task_id: str) -> ProgressNotification:
    body = {
        "MessageType": "ImageBackgroundRemovingProgress",
        "UserId": job.user_id,
        "ImageRenderProcessId": job.process_id,
        "RequestRenderState": 5,
        "TotalTaskCount": 1,
        "CompletedTaskCount": 1,
        "Progress": 100,
        "Tasks": {task_id: 5},
    }
    message = decode_notification(json.dumps(body).encode())
    assert isinstance(message, ProgressNotification)
    return message


async def test_as_completed_work_per_wake_is_what_changed(emulator: Emulator) -> None:
    hub = NotificationHub()
    quiet = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)
    count = 1000
    async with AdCreativeClient(
        **emulator.credentials,
        user_id=USER,
        poll_policy=quiet,
        clock=ManualClock(),
        push=hub,
        trust_env=False,
    ) as client:
        await client.background_remover.remove(PNG)  # the user has a listing
        jobs = [client.background_remover.job(str(uuid.uuid4())) for _ in range(count)]
        scheduler = client._poll_scheduler()
        reads = 0
        snapshot = scheduler.snapshot

        def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return snapshot(*args)

        scheduler.snapshot = counted  # type: ignore[method-assign,assignment]
        done: list[RenderJob] = []

        async def consume() -> None:
            async for job in client.as_completed(jobs):
                done.append(job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            for i, job in enumerate(jobs):  # one completion per wake
                await hub.publish(_done_message(job, str(uuid.uuid4())))
                for _ in range(100):  # the consumer takes it (a few loop turns, no sleep)
                    if len(done) == i + 1:
                        break
                    await anyio.lowlevel.checkpoint()
                assert len(done) == i + 1
    assert done == jobs
    # Each completion reads the one snapshot that changed (plus the first scan of every job), and
    # each job is attached once: O(changed) per wake, not O(jobs still running).
    assert reads <= 2 * count + 10
    assert scheduler.attachments == count


async def test_finished_waits_leave_the_deadline_heap(emulator: Emulator) -> None:
    hub = NotificationHub()
    quiet = PollPolicy(initial_interval=30, max_interval=30, min_interval=30, jitter=None)
    async with AdCreativeClient(
        **emulator.credentials,
        user_id=USER,
        poll_policy=quiet,
        clock=ManualClock(),
        push=hub,
        trust_env=False,
    ) as client:
        long = await client.background_remover.remove(PNG)
        jobs = [client.background_remover.job(str(uuid.uuid4())) for _ in range(5000)]
        scheduler = client._poll_scheduler()

        async def wait(job: RenderJob, seconds: float) -> None:
            await job.result(timeout=seconds)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, long, 100)  # the earliest deadline, and it stays
            for job in jobs:
                tg.start_soon(wait, job, 1000)
            await anyio.wait_all_tasks_blocked()
            assert client.scheduler_stats["waiters"] == 5001
            for job in jobs:
                await hub.publish(_done_message(job, str(uuid.uuid4())))
            await anyio.wait_all_tasks_blocked()
            assert all(job.is_complete for job in jobs)
            assert client.scheduler_stats["waiters"] == 1
            assert len(scheduler._deadlines) <= 100  # not 5,001: finished waits left the heap
            tg.cancel_scope.cancel()
