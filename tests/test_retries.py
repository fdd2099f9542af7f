"""The retry policy: GETs retried on transient failures with backoff and Retry-After; POSTs only when they
surely never reached the server; a one-shot body (an async iterable) sent again only while never read."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web
from helpers import eventually
from miniapi import MiniAPI
from test_files import PNG
from test_transport import BG_PROGRESS, BG_START, PROCESS, PROGRESS_ITEM, TASK, USER

from adcreative_async import (
    AdCreativeClient,
    APIConnectionError,
    ManualClock,
    RateLimitError,
    RenderMayExistError,
    RetryPolicy,
    ServerError,
)

pytestmark = pytest.mark.anyio

NO_JITTER = RetryPolicy(jitter=None)


@pytest.fixture
async def api() -> AsyncIterator[MiniAPI]:
    async with MiniAPI() as server:
        yield server


def client_for(
    api: MiniAPI, clock: ManualClock | None = None, retry: RetryPolicy = NO_JITTER, *, exclusive: bool = False
) -> AdCreativeClient:
    return AdCreativeClient(
        **api.credentials,
        user_id=USER,
        trust_env=False,
        clock=clock,
        retry=retry,
        exclusive_user_ids=exclusive,
    )


def flaky(api: MiniAPI, method: str, path: str, failures: list[int], body: object) -> list[int]:
    """Answer each status of ``failures`` in turn (0: drop the connection), then 200 with ``body``."""
    seen: list[int] = []

    @api.route(method, path)
    async def handler(request: web.Request) -> web.StreamResponse:
        status = failures[len(seen)] if len(seen) < len(failures) else 200
        seen.append(status)
        if status == 0:
            assert request.transport is not None
            request.transport.close()  # the connection drops with no answer
            return web.Response()
        if status != 200:
            return web.json_response({"title": "x"}, status=status, headers={"Retry-After": "0"})
        return web.json_response(body)

    return seen


async def test_gets_are_retried_on_transient_failures(api: MiniAPI) -> None:
    seen = flaky(api, "GET", BG_PROGRESS, [503, 0, 502, 429], [PROGRESS_ITEM])
    async with client_for(
        api, retry=RetryPolicy(max_attempts=5, initial_backoff=0.001, jitter=None)
    ) as client:
        assert len(await client.background_remover.user_progress()) == 1
        assert client._transport.retries >= 3  # aiohttp may itself resend a GET whose connection dropped
    assert seen == [503, 0, 502, 429, 200]


async def test_retries_are_bounded_by_attempts(api: MiniAPI) -> None:
    seen = flaky(api, "GET", BG_PROGRESS, [503] * 10, [])
    async with client_for(api, retry=RetryPolicy(max_attempts=3, initial_backoff=0.001)) as client:
        with pytest.raises(ServerError):
            await client.background_remover.user_progress()
    assert len(seen) == 3


async def test_retry_after_is_honoured_on_the_client_clock(api: MiniAPI) -> None:
    calls = 0

    @api.route("GET", BG_PROGRESS)
    async def limited(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response({"title": "slow down"}, status=429, headers={"Retry-After": "7"})
        return web.json_response([])

    clock = ManualClock()
    async with client_for(api, clock) as client:
        result: list[object] = []

        async def call() -> None:
            result.append(await client.background_remover.user_progress())

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await eventually(lambda: calls == 1)
            await anyio.sleep(0.01)
            await clock.advance(6.9)
            await anyio.sleep(0.01)
            assert calls == 1
            await clock.advance(0.2)
            await eventually(lambda: bool(result))
    assert calls == 2


async def test_a_retry_after_beyond_the_cap_is_not_waited(api: MiniAPI) -> None:
    api.answer("GET", BG_PROGRESS, 429, {"title": "later"}, headers={"Retry-After": "3600"})
    async with client_for(api) as client:
        with pytest.raises(RateLimitError) as info:
            await client.background_remover.user_progress()
    assert info.value.retry_after == 3600
    assert len(api.requests_to(BG_PROGRESS)) == 1


def made_then_lost(api: MiniAPI, failure: int) -> list[int]:
    """The start call makes a render (listed from then on), then fails with ``failure``."""
    listing: list[object] = []
    api.route("GET", BG_PROGRESS)(lambda request: _json(listing))
    seen = flaky(api, "POST", BG_START, [failure], {**PROGRESS_ITEM, "$id": "1"})
    original = api.routes[("POST", BG_START)]

    async def made_then_failed(request: web.Request) -> web.StreamResponse:
        listing.append(PROGRESS_ITEM)  # the server made the render ... and the answer is lost
        return await original(request)

    api.routes[("POST", BG_START)] = made_then_failed
    return seen


@pytest.mark.parametrize("failure", [503, 0])
async def test_a_start_whose_answer_was_lost_is_adopted_not_resent(api: MiniAPI, failure: int) -> None:
    seen = made_then_lost(api, failure)
    async with client_for(api, exclusive=True) as client:
        job = await client.background_remover.remove(PNG)
    assert job.process_id == PROGRESS_ITEM["imageRenderProcessId"]
    assert seen == [failure]  # sent once: one paid render


async def test_without_exclusive_user_ids_a_lost_start_is_named_not_adopted(api: MiniAPI) -> None:
    seen = made_then_lost(api, 503)
    async with client_for(api, retry=QUICK_RECONCILE) as client:  # another worker may share the user
        with pytest.raises(RenderMayExistError, match="exclusive_user_ids=True") as info:
            await client.background_remover.remove(PNG)
    assert [c.process_id for c in info.value.candidates] == [PROGRESS_ITEM["imageRenderProcessId"]]
    assert seen == [503]


async def test_a_lost_start_with_nothing_to_adopt_raises_render_may_exist(api: MiniAPI) -> None:
    api.route("GET", BG_PROGRESS)(lambda request: _json([]))
    seen = flaky(api, "POST", BG_START, [503], {})
    clock = ManualClock()
    async with client_for(api, clock) as client:
        errors: list[RenderMayExistError] = []

        async def start() -> None:
            try:
                await client.background_remover.remove(PNG)
            except RenderMayExistError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            for _ in range(12):
                await eventually(lambda: clock.sleepers == 1 or bool(errors))
                await clock.advance(1.0)
            await eventually(lambda: bool(errors))
    (error,) = errors
    assert error.candidates == ()
    assert isinstance(error.cause, ServerError)
    assert "may still exist" in str(error)
    assert "probably" not in str(error)  # nothing is known of it: the message says only that
    assert seen == [503]


def listings(api: MiniAPI, answers: list[object], path: str = BG_PROGRESS) -> list[object]:
    """Answer CheckUserProgress with each of ``answers`` in turn (an int: that status), the last one
    from then on; the answers given, in order."""
    given: list[object] = []

    @api.route("GET", path)
    async def handler(request: web.Request) -> web.StreamResponse:
        answer = answers[min(len(given), len(answers) - 1)]
        given.append(answer)
        if isinstance(answer, int):
            return web.json_response({"title": "no listing now"}, status=answer)
        return web.json_response(answer)

    return given


QUICK_RECONCILE = RetryPolicy(jitter=None, reconcile_grace=0.3, reconcile_interval=0.01)


async def test_a_listing_that_fails_while_reconciling_is_tried_again(api: MiniAPI) -> None:
    given = listings(api, [[], 400, 400, [PROGRESS_ITEM]])  # the baseline, two failures, the render
    seen = flaky(api, "POST", BG_START, [503], {})
    async with client_for(api, retry=QUICK_RECONCILE, exclusive=True) as client:
        job = await client.background_remover.remove(PNG)
    assert job.process_id == PROGRESS_ITEM["imageRenderProcessId"]
    assert given == [[], 400, 400, [PROGRESS_ITEM]]
    assert seen == [503]


async def test_a_listing_that_keeps_failing_raises_render_may_exist(api: MiniAPI) -> None:
    given = listings(api, [[], 400])
    seen = flaky(api, "POST", BG_START, [503], {})
    async with client_for(api, retry=QUICK_RECONCILE) as client:
        with pytest.raises(RenderMayExistError, match="could not be read") as info:
            await client.background_remover.remove(PNG)
    assert isinstance(info.value.cause, ServerError)
    assert "the render may exist" in str(info.value)
    assert len(given) > 2  # tried again until the grace ran out
    assert seen == [503]


GEN_PROGRESS = "/api/v1/Image/Generation/CheckUserProgress"
EDIT = "/api/v1/Image/Editing/AdCreativesByTasks"
EDITED, KEPT = TASK, "0b88cf18-a7de-485f-bbfb-f44130b73807"


def generation(edited_state: int) -> dict[str, object]:
    """A creatives process of two tasks, the edited one in ``edited_state``."""
    done = 1 + (edited_state == 5)
    return {
        **PROGRESS_ITEM,
        "messageType": "ImageGenerationProgress",
        "totalTaskCount": 2,
        "completedTaskCount": done,
        "progress": 50 * done,
        "tasks": {"$id": "3", EDITED: edited_state, KEPT: 5},
    }


async def test_an_edit_whose_answer_was_lost_is_adopted_once_its_tasks_reopen(api: MiniAPI) -> None:
    given = listings(api, [[generation(5)], 400, [generation(1)]], GEN_PROGRESS)
    seen = flaky(api, "POST", EDIT, [503], {})
    async with client_for(api, retry=QUICK_RECONCILE) as client:
        job = await client.creatives.edit([EDITED], punchline="new")
    assert job.process_id == PROCESS
    assert job.progress is not None
    assert job.progress.tasks[EDITED] == 1
    assert given[:3] == [[generation(5)], 400, [generation(1)]]  # not yet re-opened, a failure, re-opened
    assert seen == [503]  # sent once


async def test_an_edit_whose_tasks_never_reopen_raises_render_may_exist(api: MiniAPI) -> None:
    given = listings(api, [[generation(5)]], GEN_PROGRESS)
    seen = flaky(api, "POST", EDIT, [503], {})
    async with client_for(api, retry=QUICK_RECONCILE) as client:
        with pytest.raises(RenderMayExistError, match="not seen running again") as info:
            await client.creatives.edit([EDITED], punchline="new")
    assert isinstance(info.value.cause, ServerError)
    assert len(given) > 1
    assert seen == [503]


async def test_an_edit_whose_listing_keeps_failing_raises_render_may_exist(api: MiniAPI) -> None:
    given = listings(api, [400], GEN_PROGRESS)
    seen = flaky(api, "POST", EDIT, [503], {})
    async with client_for(api, retry=QUICK_RECONCILE) as client:
        with pytest.raises(RenderMayExistError, match="could not be read") as info:
            await client.creatives.edit([EDITED], punchline="new")
    assert "the edit may have been applied" in str(info.value)
    assert isinstance(info.value.cause, ServerError)
    assert len(given) > 1
    assert seen == [503]


async def test_two_new_processes_cannot_be_told_apart(api: MiniAPI) -> None:
    other = {**PROGRESS_ITEM, "imageRenderProcessId": "5cccaa6b-7391-4b4a-976a-08e9e38ff400"}
    listing: list[object] = []
    api.route("GET", BG_PROGRESS)(lambda request: _json(listing))
    flaky(api, "POST", BG_START, [0], {})

    async def made_two(request: web.Request) -> web.StreamResponse:
        listing.extend([PROGRESS_ITEM, other])  # e.g. another client of the same user started one too
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    api.routes[("POST", BG_START)] = made_two
    async with client_for(api, retry=QUICK_RECONCILE, exclusive=True) as client:
        with pytest.raises(RenderMayExistError, match="2 new matching processes") as info:
            await client.background_remover.remove(PNG)
    assert len(info.value.candidates) == 2


async def test_strong_mode_gives_each_start_its_own_user(api: MiniAPI) -> None:
    users: list[str] = []

    @api.route("POST", BG_START)
    async def start(request: web.Request) -> web.StreamResponse:
        form = {name: value for name, value, _ in api.requests_to(BG_START)[-1].form}  # read by MiniAPI
        users.append(str(form["userId"]))
        return web.json_response({**PROGRESS_ITEM, "userId": users[-1]})

    async with AdCreativeClient(
        **api.credentials, user_id=USER, trust_env=False, unique_user_per_submission=True
    ) as client:
        first = await client.background_remover.remove(PNG)
        second = await client.background_remover.remove(PNG)
    assert len(set(users)) == 2
    assert USER not in users
    assert (first.user_id, second.user_id) == tuple(users)
    assert api.requests_to(BG_PROGRESS) == []  # fresh users: no listing needed beforehand


def _json(body: object) -> Any:
    async def answer() -> web.StreamResponse:
        return web.json_response(body)

    return answer()


async def test_posts_that_never_left_are_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = ManualClock()
    api = MiniAPI(port)
    api.answer("POST", BG_START, 200, {**PROGRESS_ITEM, "$id": "1"})
    credentials = api.credentials
    credentials["base_url"] = f"http://127.0.0.1:{port}"
    client = AdCreativeClient(
        **credentials,
        user_id=USER,
        trust_env=False,
        clock=clock,
        retry=NO_JITTER,
    )
    async with client:
        jobs: list[object] = []

        async def start() -> None:
            jobs.append(await client.background_remover.remove(PNG))

        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await eventually(lambda: clock.sleepers == 1)  # the token request was refused: backing off
            async with api:  # the server comes up
                await clock.advance(1.0)
                await eventually(lambda: bool(jobs))
            assert client._transport.retries >= 1
    assert len(api.requests_to(BG_START)) == 1
    assert api.tokens_issued == 1


async def test_a_one_shot_body_is_sent_again_only_while_it_was_never_read() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    fast = RetryPolicy(jitter=None, initial_backoff=0.001, max_backoff=0.002)

    async def image() -> AsyncIterator[bytes]:
        yield PNG

    async with MiniAPI() as api:
        api.answer("GET", BG_PROGRESS, 200, [])
        async with client_for(api, retry=fast) as client:
            await client.background_remover.user_progress()  # a token is at hand
            live, client._transport.base_url = client._transport.base_url, f"http://127.0.0.1:{dead}"
            with pytest.raises(APIConnectionError) as info:
                await client.background_remover.remove(image())
            assert info.value.sent is False  # refused: the body was never read, so it was tried again
            assert client._transport.retries == fast.max_attempts - 1
            client._transport.base_url = live
            seen = flaky(api, "POST", BG_START, [429], {**PROGRESS_ITEM, "$id": "1"})
            with pytest.raises(RateLimitError):  # answered after the server read the body: not again
                await client.background_remover.remove(image())
            assert seen == [429]
            seen.clear()
            job = await client.background_remover.remove(PNG)  # bytes can be sent again
            assert (seen, job.process_id) == ([429, 200], PROCESS)


async def test_a_refresh_is_never_repeated(api: MiniAPI) -> None:
    refreshes = 0

    @api.route("POST", "/api/v1/Authorization/RefreshJwtToken")
    async def refresh(request: web.Request) -> web.StreamResponse:
        nonlocal refreshes
        refreshes += 1
        return web.json_response({"title": "busy"}, status=503)

    async with client_for(api) as client:
        assert client._transport.retry.max_attempts > 1
        with pytest.raises(ServerError):
            await client._transport._send_token_request("Authorization/RefreshJwtToken", b"{}")
    assert refreshes == 1
