"""Reconciliation never adopts another call's render: each race of issue 12 against the emulator over
loopback, with a small gateway in front of it that fails a chosen start call after (or before) the
render was made, or holds its answer while the render is already listed.

A process is adopted only when it provably belongs to the call (see ``adcreative_async/_reconcile.py``);
otherwise the call raises ``RenderMayExistError`` naming the candidates, and never says a render was
"probably not created" or an edit "probably not applied" when that cannot be known.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from aiohttp import web
from helpers import creative_inputs, eventually

from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    APITimeoutError,
    ManualClock,
    RenderJob,
    RenderKind,
    RenderMayExistError,
    RetryPolicy,
    ServerError,
    Timeout,
)
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
BG_START = "Image/BackgroundRemoving/AdCreative"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
GEN_START = "Image/Generation/AdCreativesByKind"
GEN_EDIT = "Image/Editing/AdCreativesByTasks"
GEN_PROGRESS = "Image/Generation/CheckUserProgress"
TOKEN = "Authorization/GenerateJwtToken"
IMAGES = [sample_image("png", (8 + i, 8)) for i in range(8)]  # distinct inputs
#: Short real graces: each test's decision waits at most this long for renders that never come.
QUICK = RetryPolicy(jitter=None, initial_backoff=0.005, reconcile_grace=0.4, reconcile_interval=0.01)


@dataclass
class Gateway:
    """A middleware in front of the emulator.

    Start calls (to ``start_route``) follow ``plans`` in arrival order: ``"ok"`` served as usual,
    ``"502"`` answered 502 without being served, ``"made-502"`` served (the render exists) and then
    answered 502, ``"made-502-late"`` the same after the next start call was answered, ``"held"`` served
    and answered only once a listing that began after the render was made has been answered (or
    ``release`` is set, or ``hold_at_most`` seconds passed). Listings of ``progress_route`` are
    counted.
    """

    start_route: str = BG_START
    progress_route: str = BG_PROGRESS
    plans: list[str] = field(default_factory=list)
    starts: int = 0
    answered_starts: int = 0
    listings_begun: int = 0
    listings_answered: list[int] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)
    hold_at_most: float = 0.25
    hooks: dict[str, Callable[[web.Request], Awaitable[None]]] = field(default_factory=dict)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.path.removeprefix("/api/v1/")
        if route in self.hooks:
            await self.hooks[route](request)
        if route == self.progress_route:
            self.listings_begun += 1
            number = self.listings_begun
            response = await handler(request)
            self.listings_answered.append(number)
            return response
        if route != self.start_route:
            return await handler(request)
        plan = self.plans[self.starts] if self.starts < len(self.plans) else "ok"
        self.starts += 1
        try:
            if plan == "502":
                return web.Response(status=502, text="502 Bad Gateway")
            response = await handler(request)  # the render is made
            if plan == "made-502-late":
                started = self.starts
                while self.answered_starts < started and not self.release.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
            if plan in ("made-502", "made-502-late"):
                return web.Response(status=502, text="502 Bad Gateway")
            if plan == "held":
                begun = self.listings_begun
                with anyio.move_on_after(self.hold_at_most):
                    while not self.release.is_set() and not any(n > begun for n in self.listings_answered):  # noqa: ASYNC110
                        await asyncio.sleep(0.002)
            return response
        finally:
            self.answered_starts += 1


@asynccontextmanager
async def emulator_behind(gateway: Gateway, **options: object) -> AsyncIterator[Emulator]:
    emulator = Emulator(seed=12, **options)  # type: ignore[arg-type]
    emulator.app.middlewares.append(gateway.middleware)
    async with emulator:
        yield emulator


def client_for(emulator: Emulator, *, exclusive: bool = False, **options: object) -> AdCreativeClient:
    options.setdefault("retry", QUICK)
    if exclusive:
        options["exclusive_user_ids"] = True
    return AdCreativeClient(
        **emulator.credentials,
        user_id=USER,
        trust_env=False,
        **options,  # type: ignore[arg-type]
    )


async def outcome(call: Awaitable[RenderJob]) -> RenderJob | AdCreativeError:
    try:
        return await call
    except AdCreativeError as exc:
        return exc


def processes(emulator: Emulator) -> list[str]:
    return [p.process_id for p in emulator.processes_for(USER)]


# --------------------------------------------------------------------------------------- scenario 1


@pytest.mark.parametrize("exclusive", [False, True], ids=["default", "exclusive-user-ids"])
async def test_a_start_sent_during_a_reconcile_window_is_never_adopted_by_it(exclusive: bool) -> None:
    # A fails ambiguously having made nothing; C is started while A's reconcile is listing, and C's
    # render is listed before C's answer arrives. A must not take C's render.
    gateway = Gateway(plans=["502", "held"])
    async with emulator_behind(gateway) as emulator, client_for(emulator, exclusive=exclusive) as client:
        results: dict[str, RenderJob | AdCreativeError] = {}

        async def first() -> None:
            results["a"] = await outcome(client.background_remover.remove(IMAGES[0]))
            gateway.release.set()

        async def second() -> None:
            await eventually(lambda: gateway.starts == 1 and gateway.listings_begun >= 2)  # A reconciles
            results["c"] = await outcome(client.background_remover.remove(IMAGES[1]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
        (made,) = processes(emulator)  # C's render only: A's call was never served
    c, a = results["c"], results["a"]
    assert isinstance(c, RenderJob)
    assert c.process_id == made
    assert isinstance(a, RenderMayExistError), f"A adopted {a!r}"
    assert a.candidates == ()  # C's answer was awaited before A read a listing with C's render
    assert "may still exist" in str(a)
    assert "probably" not in str(a)
    assert gateway.starts == 2  # nothing sent twice


@pytest.mark.parametrize("exclusive", [False, True], ids=["default", "exclusive-user-ids"])
async def test_a_start_in_flight_when_another_fails_is_not_adopted_by_it(exclusive: bool) -> None:
    # B is in flight (its render made, its answer on its way) when A fails ambiguously.
    gateway = Gateway(plans=["ok", "502"])
    async with (
        emulator_behind(gateway, start_latency=0.1) as emulator,
        client_for(emulator, exclusive=exclusive) as client,
    ):
        results: dict[str, RenderJob | AdCreativeError] = {}

        async def first() -> None:
            results["b"] = await outcome(client.background_remover.remove(IMAGES[0]))

        async def second() -> None:
            await eventually(lambda: len(processes(emulator)) == 1)  # B's render exists, unanswered
            results["a"] = await outcome(client.background_remover.remove(IMAGES[1]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
        (made,) = processes(emulator)
    b, a = results["b"], results["a"]
    assert isinstance(b, RenderJob)
    assert b.process_id == made
    assert isinstance(a, RenderMayExistError)
    assert a.candidates == ()


# --------------------------------------------------------------------------------------- scenario 2


@pytest.mark.parametrize("exclusive", [False, True], ids=["default", "exclusive-user-ids"])
async def test_two_ambiguous_failures_and_one_render_adopt_nothing_and_both_name_it(exclusive: bool) -> None:
    # The first call makes the render and fails with 502 after the second (which made nothing) failed.
    gateway = Gateway(plans=["made-502-late", "502"])
    async with emulator_behind(gateway) as emulator, client_for(emulator, exclusive=exclusive) as client:
        results: list[RenderJob | AdCreativeError] = []

        async def start(image: bytes) -> None:
            results.append(await outcome(client.background_remover.remove(image)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(start, IMAGES[0])
            await eventually(lambda: gateway.starts == 1)
            tg.start_soon(start, IMAGES[1])
        (made,) = processes(emulator)
    assert len(results) == 2
    for result in results:  # which call made it cannot be told: neither takes it, both name it
        assert isinstance(result, RenderMayExistError), f"adopted {result!r}"
        assert [c.process_id for c in result.candidates] == [made]
        assert "probably" not in str(result)
    assert gateway.starts == 2


async def test_ambiguous_failures_with_told_apart_candidates_each_adopt_their_own() -> None:
    # Two creatives of different render kinds fail together, each after making its render: the
    # listing tells them apart (render kind), so each adopts its own.
    gateway = Gateway(start_route=GEN_START, progress_route=GEN_PROGRESS, plans=["made-502-late", "made-502"])
    async with emulator_behind(gateway) as emulator, client_for(emulator, exclusive=True) as client:
        results: dict[int, RenderJob | AdCreativeError] = {}

        async def start(kind: RenderKind) -> None:
            results[kind] = await outcome(client.creatives.generate(**creative_inputs(render_kind=kind)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(start, RenderKind.POST)
            await eventually(lambda: gateway.starts == 1)
            tg.start_soon(start, RenderKind.STORY)
        kinds = {p.process_id: p.inputs.fields["renderKind"][0] for p in emulator.processes_for(USER)}
    assert len(kinds) == 2
    for kind, result in results.items():
        assert isinstance(result, RenderJob), result
        assert kinds[result.process_id] == str(int(kind))


# --------------------------------------------------------------------------------------- scenario 3


async def test_a_worker_never_adopts_the_render_of_another_worker_sharing_its_user_id() -> None:
    # Two clients (two worker processes) share one user id, as README allows. Worker 1's call fails
    # with a gateway 502 having made nothing; worker 2 starts a render while worker 1 reconciles.
    gateway = Gateway(plans=["502", "held"])
    clock = ManualClock()
    async with (
        emulator_behind(gateway) as emulator,
        client_for(emulator, clock=clock, retry=RetryPolicy(jitter=None, reconcile_grace=5)) as worker1,
        client_for(emulator) as worker2,
    ):
        results: dict[str, RenderJob | AdCreativeError] = {}

        async def first() -> None:
            results["1"] = await outcome(worker1.background_remover.remove(IMAGES[0]))
            gateway.release.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await eventually(lambda: clock.sleepers == 1)  # worker 1 listed once and waits to list again
            tg.start_soon(lambda: _store(results, "2", worker2.background_remover.remove(IMAGES[1])))
            await eventually(lambda: len(processes(emulator)) == 1)  # worker 2's render exists
            while "1" not in results:  # worker 1 lists again (and again) until its grace ends
                await clock.advance(1.0)
                await eventually(lambda: clock.sleepers == 1 or "1" in results)
        (made,) = processes(emulator)
    one, two = results["1"], results["2"]
    assert isinstance(two, RenderJob)
    assert two.process_id == made
    assert isinstance(one, RenderMayExistError), f"worker 1 adopted worker 2's render: {one!r}"
    assert [c.process_id for c in one.candidates] == [made]  # named: it may be its render, unproven
    assert "exclusive_user_ids" in str(one)


async def _store(
    results: dict[str, RenderJob | AdCreativeError], key: str, call: Awaitable[RenderJob]
) -> None:
    results[key] = await outcome(call)


# --------------------------------------------------------------------------------------- scenario 4


@pytest.mark.parametrize("failure", ["503", "timeout"])
async def test_a_token_failure_during_a_start_call_is_raised_as_is_and_never_reconciled(failure: str) -> None:
    gateway = Gateway()
    blocked = anyio.Event()

    async def token_hook(request: web.Request) -> None:
        if failure == "timeout":
            with anyio.move_on_after(1):
                await blocked.wait()  # past the client's read timeout

    gateway.hooks[TOKEN] = token_hook
    async with emulator_behind(gateway) as emulator:
        if failure == "503":
            emulator.fail_next(TOKEN, 503, count=100)
        client = client_for(
            emulator,
            retry=RetryPolicy(max_attempts=1, reconcile_grace=0.4, reconcile_interval=0.01),
            timeout=Timeout(read=0.05),
        )
        async with client:
            error = await outcome(client.background_remover.remove(IMAGES[0]))
            blocked.set()
        starts = emulator.request_count(BG_START)
        listings = emulator.request_count(BG_PROGRESS)
    expected = ServerError if failure == "503" else APITimeoutError
    assert isinstance(error, expected), repr(error)  # the token error itself, typed
    assert error.before_send
    assert starts == 0  # the start call was never sent ...
    assert listings == 0  # ... and nothing was reconciled (the baseline listing failed on its token too)


# --------------------------------------------------------------------------------------- scenario 5


async def test_an_edit_answered_after_the_timeout_with_its_rerender_done_is_not_called_unapplied() -> None:
    gateway = Gateway(start_route=GEN_EDIT, progress_route=GEN_PROGRESS)

    async with emulator_behind(gateway, task_duration=0.0) as emulator:
        client = client_for(emulator, timeout=Timeout(read=0.1))
        async with client:
            job = await client.creatives.generate(**creative_inputs())
            final = await job.result(timeout=5)
            edited = next(iter(final.tasks))
            # the edit is served (its tasks re-run and end at once); its answer is held until the
            # client, past its read timeout, has listed the user's processes
            gateway.plans = ["held"]
            error = await outcome(client.creatives.edit([edited], punchline="new"))
        restarted = emulator.task(edited)
    assert restarted.state == 5  # the edit was applied, and its re-render already finished
    assert isinstance(error, RenderMayExistError), repr(error)
    assert "probably" not in str(error)
    assert "may not have been applied, or it was applied" in str(error)


async def test_a_start_whose_finished_render_is_not_listed_is_not_called_uncreated() -> None:
    gateway = Gateway(plans=["made-502"])
    async with emulator_behind(gateway, task_duration=0.0, list_finished=False) as emulator:
        async with client_for(emulator) as client:
            error = await outcome(client.background_remover.remove(IMAGES[0]))
        made = processes(emulator)
    assert len(made) == 1  # it was created (and finished at once, so the listing omits it)
    assert isinstance(error, RenderMayExistError), repr(error)
    assert "probably" not in str(error)
    assert "may still exist" in str(error)
    assert "omit finished processes" in str(error)


# -------------------------------------------------------------------------------------- scenario 16


async def test_concurrent_first_submissions_share_one_baseline_listing_per_user() -> None:
    users = [f"2581c740-8e9d-4d63-96bc-{i:012d}" for i in range(10)]
    gateway = Gateway()
    async with emulator_behind(gateway) as emulator, client_for(emulator) as client:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(_remove, client, IMAGES[i % len(IMAGES)], users[i % 10])
        listings = emulator.request_count(BG_PROGRESS)
        starts = emulator.request_count(BG_START)
    assert starts == 200
    assert listings == 10  # one per (feature, user), however many first calls wait for it


async def _remove(client: AdCreativeClient, image: bytes, user: str) -> None:
    await client.background_remover.remove(image, user_id=user)


# ------------------------------------------------------------------------------------ more of the rule


@pytest.mark.parametrize("exclusive", [False, True], ids=["default", "exclusive-user-ids"])
async def test_a_cancelled_start_is_never_adopted_by_another_call(exclusive: bool) -> None:
    # B is cancelled while its render exists and its answer is held; A then fails having made
    # nothing: B's render may be B's, so A must not take it.
    gateway = Gateway(plans=["held", "502"])
    async with emulator_behind(gateway) as emulator, client_for(emulator, exclusive=exclusive) as client:
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.background_remover.remove, IMAGES[0])
                await eventually(lambda: len(processes(emulator)) == 1)
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        error = await outcome(client.background_remover.remove(IMAGES[1]))
        gateway.release.set()
        (abandoned,) = processes(emulator)
    assert isinstance(error, RenderMayExistError), f"adopted the cancelled call's render: {error!r}"
    assert [c.process_id for c in error.candidates] == [abandoned]  # it may be A's: named, not taken
    assert "1 other start call of this client for this user" in str(error)


async def test_strong_mode_adopts_a_lost_answer_and_forgets_its_made_up_users() -> None:
    gateway = Gateway(plans=["made-502", "ok"])
    async with emulator_behind(gateway) as emulator:
        async with client_for(emulator, unique_user_per_submission=True) as client:
            lost = await client.background_remover.remove(IMAGES[0])
            answered = await client.background_remover.remove(IMAGES[1])
            assert client._ledger._users == {}  # nothing kept per made-up user once it is settled
        by_user = {p.process_id: p.user_id for p in (emulator.process(pid) for pid in (lost.process_id,))}
    assert by_user[lost.process_id] == lost.user_id != answered.user_id


async def test_a_reconcile_cancelled_midway_still_keeps_its_possible_render_from_others() -> None:
    # X made its render (listed only after a lag) and failed; its reconcile is cancelled before the
    # render shows. Y then fails having made nothing: the render, when it shows, may be X's.
    gateway = Gateway(plans=["made-502", "502"])
    async with (
        emulator_behind(gateway, read_after_write_lag=0.15) as emulator,
        client_for(emulator, exclusive=True) as client,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.background_remover.remove, IMAGES[0])
            await eventually(lambda: gateway.listings_begun >= 2)  # X reconciles: listed once at least
            tg.cancel_scope.cancel()
        error = await outcome(client.background_remover.remove(IMAGES[1]))
        (made,) = processes(emulator)
    assert isinstance(error, RenderMayExistError), f"adopted the render of a cancelled reconcile: {error!r}"
    assert [c.process_id for c in error.candidates] == [made]


async def test_a_user_id_declared_exclusive_through_the_ledger_hook_is_adopted_for() -> None:
    # The hook a run ledger uses for user ids it derives per item: only that user's lost answers are
    # adopted; another user's are still named (another client may write for it).
    other = "30430501-840a-4cbb-a1dd-b00f722bd79f"
    gateway = Gateway(plans=["made-502", "made-502"])
    async with emulator_behind(gateway) as emulator, client_for(emulator) as client:
        client._ledger.exclusive_user("background_remover", USER)
        adopted = await outcome(client.background_remover.remove(IMAGES[0]))
        named = await outcome(client.background_remover.remove(IMAGES[1], user_id=other))
        (made,) = processes(emulator)
        (made_for_other,) = [p.process_id for p in emulator.processes_for(other)]
    assert isinstance(adopted, RenderJob)
    assert adopted.process_id == made
    assert isinstance(named, RenderMayExistError)
    assert [c.process_id for c in named.candidates] == [made_for_other]
