"""Every endpoint of both seed documents, end to end: the SDK against the emulator over loopback."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from helpers import creative_inputs

from adcreative_async import (
    AdCreativeClient,
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    ManualClock,
    NoActiveNotificationChannelError,
    NotFoundError,
    RenderJob,
    RenderKind,
    RenderState,
    ServerError,
)
from adcreative_async._transport import TOKEN_RENEWALS
from adcreative_async.testing import Credentials, Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
OTHER_USER = "30430501-840a-4cbb-a1dd-b00f722bd79f"
GEN_START = "Image/Generation/AdCreativesByKind"
GEN_EDIT = "Image/Editing/AdCreativesByTasks"
GEN_PROGRESS = "Image/Generation/CheckUserProgress"
GEN_APP_PROGRESS = "Image/Generation/CheckApplicationAllProgresses"
GEN_DOWNLOAD = "Image/Generation/Download"
BG_START = "Image/BackgroundRemoving/AdCreative"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
BG_DOWNLOAD = "Image/BackgroundRemoving/Download"
TOKEN_ROUTES = ("Authorization/GenerateJwtToken", "Authorization/RefreshJwtToken")

PNG = sample_image("png", (16, 16))
JPEG = sample_image("jpeg", (16, 16))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=7) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as c:
        yield c


def token_requests(emulator: Emulator) -> int:
    return sum(emulator.request_count(r) for r in TOKEN_ROUTES)


# ------------------------------------------------------------------------------------------ generation


async def test_generate_sends_every_field_with_its_wire_name(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    job = await client.creatives.generate(
        **creative_inputs(
            color3_hex="#cccccc",
            description="A stunning new way to showcase your brand.",
            button_icon_class="fa-solid fa-angle-right",
            font_identifier="Inter",
        )
    )
    assert job.feature == "creatives"
    assert job.user_id == USER
    assert len(job.task_ids) == 5
    assert job.progress is not None
    assert job.progress.message_type == "ImageGenerationProgress"
    assert job.progress.render_kind == RenderKind.POST
    assert set(job.progress.tasks.values()) == {RenderState.STARTED}
    inputs = emulator.process(job.process_id).inputs
    assert inputs.content_type == "multipart/form-data"
    assert dict(inputs.fields) == {
        "actionText": ("Learn More",),
        "applicationId": (emulator.application_id,),
        "color1Hex": ("#fc2c2c",),
        "color2Hex": ("#002c2c",),
        "mainHeadline": ("Introducing Our Latest Product",),
        "punchline": ("Revolutionizing the industry.",),
        "renderKind": ("1",),
        "renderType": ("2",),
        "userId": (USER,),
        "description": ("A stunning new way to showcase your brand.",),
        "buttonIconClass": ("fa-solid fa-angle-right",),
        "fontIdentifier": ("Inter",),
        "color3Hex": ("#cccccc",),
    }
    assert set(inputs.files) == {"backgroundImage", "brandImage"}
    assert inputs.files["brandImage"].size == len(PNG)
    assert inputs.files["brandImage"].content_type == "image/png"
    assert inputs.files["backgroundImage"].image_type == "jpeg"


async def test_unset_optional_fields_are_not_sent(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.creatives.generate(**creative_inputs())
    fields = emulator.process(job.process_id).inputs.fields
    assert not {"description", "buttonIconClass", "fontIdentifier", "color3Hex"} & set(fields)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"main_headline": "x" * 256}, r"main_headline \(mainHeadline\): must be at most 255"),
        ({"action_text": "😀" * 51}, r"action_text \(actionText\): must be at most 100"),
        ({"description": "d" * 1001}, r"description: must be at most 1000"),
        ({"color2_hex": "blue"}, r"color2_hex \(color2Hex\): must be a hex colour"),
        ({"render_kind": RenderKind.FULL_HD}, r"render_kind \(renderKind\): must be one of"),
        ({"render_type": 3}, r"render_type \(renderType\): must be one of"),
        ({"punchline": "  "}, r"punchline: is required"),
        ({"brand_image": b""}, r"brand_image \(brandImage\): is empty"),
        ({"background_image": b"not an image"}, r"background_image \(backgroundImage\): is not an image"),
        ({"brand_image": "/no/such/logo.png"}, r"brand_image \(brandImage\): file not found"),
        ({"user_id": "not-a-guid"}, r"user_id: must be a GUID"),
    ],
)
async def test_generate_validates_before_sending(
    emulator: Emulator, client: AdCreativeClient, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        await client.creatives.generate(**creative_inputs(**overrides))
    assert emulator.request_count(GEN_START) == 0


async def test_relaxed_validation_lets_the_server_decide(emulator: Emulator) -> None:
    async with AdCreativeClient(
        **emulator.credentials, user_id=USER, strict_validation=False, trust_env=False
    ) as client:
        with pytest.raises(BadRequestError) as info:
            await client.creatives.generate(**creative_inputs(render_kind=4096))
    error = info.value
    assert error.status == 400
    assert emulator.request_count(GEN_START) == 1
    # the server names its form field; the error names the Python parameter too
    assert "render_kind" in error.field_errors()
    assert "(parameter render_kind)" in str(error)


async def test_generate_without_a_notification_channel(emulator: Emulator, client: AdCreativeClient) -> None:
    emulator.remove_notification_channels()
    with pytest.raises(NoActiveNotificationChannelError, match="No active notification channel") as info:
        await client.creatives.generate(**creative_inputs())
    assert info.value.status == 404
    assert info.value.trace_id
    emulator.add_notification_channel()
    await client.creatives.generate(**creative_inputs())


async def test_edit_reopens_the_process_and_sends_only_set_fields() -> None:
    async with (
        Emulator(auto_complete=False, tasks_per_size=10) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        job = await client.creatives.generate(**creative_inputs())
        emulator.finish_process(job.process_id)
        done = await job.refresh()
        assert done.is_complete
        assert done.progress == 100
        edited_ids = list(job.task_ids[:2])
        edited = await client.creatives.edit(
            edited_ids, main_headline="Main headline yeni", background_image=JPEG
        )
        assert edited.process_id == job.process_id
        assert edited.progress is not None
        assert (edited.progress.progress, edited.progress.completed_task_count) == (80, 8)
        assert {edited.progress.tasks[t] for t in edited_ids} == {RenderState.STARTED}
        (edit_inputs,) = emulator.process(job.process_id).edits
        assert dict(edit_inputs.fields) == {
            "applicationId": (emulator.application_id,),
            "userId": (USER,),
            "taskIds": tuple(edited_ids),  # one multipart part per id
            "mainHeadline": ("Main headline yeni",),
        }
        assert set(edit_inputs.files) == {"backgroundImage"}
        for task_id in edited_ids:
            emulator.finish_task(task_id)
        assert (await edited.refresh()).is_complete


async def test_edit_of_a_running_process_is_refused_by_the_server(
    emulator: Emulator, client: AdCreativeClient
) -> None:
    started = await client.creatives.generate(**creative_inputs())
    with pytest.raises(BadRequestError):
        await client.creatives.edit(started.task_ids[:1], punchline="new")


async def test_edit_validates_before_sending(emulator: Emulator, client: AdCreativeClient) -> None:
    with pytest.raises(InvalidRequestError, match=r"task_ids \(taskIds\): must list at least one GUID"):
        await client.creatives.edit([])
    with pytest.raises(InvalidRequestError, match=r"task_ids \(taskIds\): must be a GUID"):
        await client.creatives.edit(["taskId1"])
    with pytest.raises(InvalidRequestError, match=r"color3_hex \(color3Hex\): must be a hex colour"):
        await client.creatives.edit([str(uuid.uuid4())], color3_hex="#12")
    assert emulator.request_count(GEN_EDIT) == 0


async def test_edit_without_a_notification_channel(emulator: Emulator, client: AdCreativeClient) -> None:
    job = await client.creatives.generate(**creative_inputs())
    emulator.finish_process(job.process_id)
    emulator.remove_notification_channels()
    with pytest.raises(NoActiveNotificationChannelError):
        await client.creatives.edit(job.task_ids[:1], punchline="p")


# ---------------------------------------------------------------------------------------------- progress


async def test_user_and_application_progress(emulator: Emulator, client: AdCreativeClient) -> None:
    first = await client.creatives.generate(**creative_inputs())
    second = await client.creatives.generate(**creative_inputs())
    other = await client.creatives.generate(**creative_inputs(user_id=OTHER_USER))
    mine = await client.creatives.user_progress()
    assert {p.process_id for p in mine} == {first.process_id, second.process_id}
    (only,) = await client.creatives.user_progress(USER, second.process_id)
    assert only.process_id == second.process_id
    everyone = await client.creatives.application_progress()
    assert {p.process_id for p in everyone} == {first.process_id, second.process_id, other.process_id}
    assert all(p.message_type == "ImageGenerationProgress" for p in everyone)


async def test_nothing_found_means_an_empty_list(emulator: Emulator, client: AdCreativeClient) -> None:
    # generation answers 400 for "nothing found", Background Remover 404 (seeds 001 and 000)
    assert await client.creatives.user_progress() == []
    assert await client.creatives.user_progress(USER, str(uuid.uuid4())) == []
    assert await client.creatives.application_progress() == []
    assert await client.background_remover.user_progress() == []
    assert await client.background_remover.application_progress() == []
    assert emulator.request_count(GEN_PROGRESS) == 2
    assert emulator.request_count(BG_PROGRESS) == 1


async def test_other_progress_errors_are_not_masked(emulator: Emulator, client: AdCreativeClient) -> None:
    emulator.fail_next(GEN_PROGRESS, 500)
    with pytest.raises(ServerError, match="An unexpected error occurred while checking image generation"):
        await client.creatives.user_progress()
    emulator.fail_next(BG_PROGRESS, 404)
    with pytest.raises(NotFoundError):
        await client.background_remover.user_progress()


async def test_process_progress_of_an_unknown_process_is_not_found(client: AdCreativeClient) -> None:
    with pytest.raises(NotFoundError, match=r"was not found for the user$"):
        await client.creatives.process_progress(str(uuid.uuid4()))


# -------------------------------------------------------------------------------------- background remover


async def test_background_removal_end_to_end(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    image = tmp_path / "product.jpg"
    image.write_bytes(JPEG)
    job = await client.background_remover.remove(image)
    assert job.feature == "background_remover"
    assert job.progress is not None
    assert job.progress.render_type == 8
    assert job.progress.render_kind is None
    (task_id,) = job.task_ids
    inputs = emulator.process(job.process_id).inputs
    assert dict(inputs.fields) == {"applicationId": (emulator.application_id,), "userId": (USER,)}
    assert inputs.files["uploadedImage"].filename == "product.jpg"
    (listed,) = await client.background_remover.user_progress(USER, job.process_id)
    assert listed.tasks == {task_id: RenderState.STARTED}
    emulator.finish_task(task_id)
    progress = await job.refresh()
    assert progress.is_complete
    path = await job.download(task_id, tmp_path)
    assert path == tmp_path / f"{task_id}.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert emulator.download_count(task_id) == 1
    (request_key,) = [k for k in emulator.requests if BG_DOWNLOAD in k]
    assert request_key == f"GET {BG_DOWNLOAD}"


async def test_remove_validates_before_sending(emulator: Emulator, client: AdCreativeClient) -> None:
    for bad, message in [
        (b"", "is empty"),
        (b"GIF89a" + bytes(40), "is a GIF image"),
        (12, "must be a path, bytes"),
    ]:
        with pytest.raises(InvalidRequestError, match=rf"^image \(uploadedImage\): .*{message}"):
            await client.background_remover.remove(bad)  # type: ignore[arg-type]
    assert emulator.request_count(BG_START) == 0


# ---------------------------------------------------------------------------------------------- downloads


async def test_download_writes_atomically_and_counts(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    job = await client.creatives.generate(**creative_inputs())
    emulator.finish_process(job.process_id)
    task_id = job.task_ids[0]
    target = tmp_path / "results" / "first.png"
    assert await client.creatives.download(job.process_id, task_id, target) == target
    small = await client.creatives.download(
        job.process_id, task_id, tmp_path / "small.png", low_resolution=True
    )
    assert target.stat().st_size > small.stat().st_size
    assert emulator.download_count(task_id) == 2
    assert emulator.process_download_count(job.process_id) == 2
    paths = await (await _refreshed(job)).download_all(tmp_path / "all")
    assert sorted(p.name for p in paths) == sorted(f"{t}.png" for t in job.task_ids)


async def _refreshed(job: RenderJob) -> RenderJob:
    await job.refresh()
    return job


async def test_download_of_an_unfinished_task_is_not_found_and_writes_nothing(
    emulator: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    job = await client.creatives.generate(**creative_inputs())
    with pytest.raises(NotFoundError, match="has no result yet"):  # a RenderNotReadyError
        await client.creatives.download(job.process_id, job.task_ids[0], tmp_path)
    assert os.listdir(tmp_path) == []


async def test_download_refuses_ids_that_are_not_guids(emulator: Emulator, client: AdCreativeClient) -> None:
    with pytest.raises(InvalidRequestError, match=r"task_id: must be a GUID"):
        await client.background_remover.download(
            str(uuid.uuid4()), "e6c59f37-a794-234f-56yu-c9ef79dc042c", "."
        )
    assert emulator.request_count(BG_DOWNLOAD) == 0


# ------------------------------------------------------------------------------------------------- auth


async def test_500_coroutines_with_an_expired_token_make_one_token_request() -> None:
    clock = ManualClock()
    async with (
        Emulator(access_token_lifetime=3600) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, clock=clock, trust_env=False) as client,
    ):
        await client.creatives.user_progress()
        assert token_requests(emulator) == 1
        await clock.advance(3600)  # the client's token is now expired by its own clock
        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(client.creatives.user_progress)
        assert token_requests(emulator) == 2
        assert emulator.request_count("Authorization/RefreshJwtToken") == 1
        assert emulator.request_count(GEN_PROGRESS) == 501


async def test_a_token_service_failing_in_the_renewal_window_fails_no_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    async with (
        Emulator(access_token_lifetime=3600) as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, clock=clock, trust_env=False) as client,
    ):
        await client.creatives.user_progress()
        await clock.advance(3600 - 30)  # the client renews 60 s before expiry: the token is still valid
        emulator.fail_next("Authorization/RefreshJwtToken", 500)
        emulator.fail_next("Authorization/GenerateJwtToken", 500)
        with caplog.at_level(logging.WARNING, logger="adcreative_async.auth"):
            await client.creatives.user_progress()  # served with the still-valid token
        assert "early token renewal failed (ServerError)" in caplog.text
        assert token_requests(emulator) == 3  # the token, then the failed refresh and generate
        for _ in range(5):
            await client.creatives.user_progress()
        assert token_requests(emulator) == 3  # no new attempt on every call: it backs off
        await clock.advance(1)
        await client.creatives.user_progress()
        assert token_requests(emulator) == 4  # tried again, renewed
        assert emulator.request_count("Authorization/RefreshJwtToken") == 2
        assert emulator.request_count(GEN_PROGRESS) == 8


async def test_server_side_expiry_gives_one_renewal_for_500_concurrent_401s() -> None:
    async with (
        Emulator() as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        await client.creatives.user_progress()
        emulator.expire_access_tokens()
        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(client.creatives.user_progress)
        assert token_requests(emulator) == 2  # the first token, and one renewal
        # each call that met a 401 retried once with the renewed token
        assert 501 < emulator.request_count(GEN_PROGRESS) <= 1001


async def test_a_token_refused_again_right_after_its_renewal_is_renewed_once_more() -> None:
    # A token revoked or expired right after it was issued (a key rotation, a clock step): the call is
    # not failed as if the credentials were wrong (which stops a bulk run): a second renewal serves it.
    async with (
        Emulator() as emulator,
        AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client,
    ):
        await client.creatives.user_progress()
        emulator.fail_next(GEN_PROGRESS, 401, count=2)  # the token, then the renewed one, refused
        await client.creatives.user_progress()
        assert emulator.request_count(GEN_PROGRESS) == 4
        assert token_requests(emulator) == 3  # the first token and two renewals


async def test_wrong_api_credentials_stop_after_the_renewals(emulator: Emulator) -> None:
    wrong_key: Credentials = {**emulator.credentials, "api_key": "wrong-key"}
    async with AdCreativeClient(**wrong_key, user_id=USER, trust_env=False) as client:
        with pytest.raises(AuthenticationError):
            await client.creatives.user_progress()
    assert emulator.request_count(GEN_PROGRESS) == 1 + TOKEN_RENEWALS  # never more
    assert token_requests(emulator) == 1 + TOKEN_RENEWALS


async def test_wrong_credentials_are_authentication_errors(emulator: Emulator) -> None:
    wrong_key: Credentials = {**emulator.credentials, "api_key": "wrong-key"}
    async with AdCreativeClient(**wrong_key, user_id=USER, trust_env=False) as client:
        with pytest.raises(AuthenticationError, match="Token is missing, invalid"):
            await client.creatives.user_progress()
    wrong_private: Credentials = {**emulator.credentials, "jwt_private_key": "wrong"}
    async with AdCreativeClient(**wrong_private, user_id=USER, trust_env=False) as client:
        with pytest.raises(AuthenticationError):
            await client.creatives.user_progress()


# ------------------------------------------------------------------------------------------------- jobs


async def test_job_survives_json_and_resumes_in_another_client(emulator: Emulator, tmp_path: Path) -> None:
    async with AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as first:
        job = await first.background_remover.remove(PNG)
        stored = job.to_json()
    for secret in (emulator.api_key, emulator.api_secret, emulator.jwt_private_key):
        assert secret.encode() not in stored
    emulator.finish_process(job.process_id)
    async with AdCreativeClient(**emulator.credentials, trust_env=False) as second:
        resumed = second.job_from_json(stored)
        assert resumed == job
        assert resumed.task_ids == job.task_ids
        assert resumed.progress == job.progress
        progress = await resumed.refresh()
        assert progress.is_complete
        (path,) = await resumed.download_all(tmp_path)
        assert path.exists()
        rebuilt = second.background_remover.job(job.process_id, user_id=USER)
        assert rebuilt == job
        assert (await rebuilt.refresh()).is_complete


def test_unbound_job_explains_how_to_bind() -> None:
    job = RenderJob(feature="creatives", process_id=str(uuid.uuid4()), user_id=USER)
    with pytest.raises(InvalidRequestError, match="job_from_json"):
        _ = job.resource
    with pytest.raises(InvalidRequestError, match="not a RenderJob"):
        RenderJob.from_json(b'{"feature": 1}')


# ------------------------------------------------------------------------------------------------ secrets


async def test_debug_logs_of_a_full_flow_never_show_credentials(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    async with AdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False) as client:
        job = await client.background_remover.remove(PNG)
        emulator.finish_process(job.process_id)
        await job.refresh()
        await job.download_all(tmp_path)
        token = client._transport.tokens.token
        assert token is not None
        secrets = [
            emulator.api_key,
            emulator.api_secret,
            emulator.jwt_private_key,
            token.access_token,
            token.refresh_token or "unset",
        ]
    text = caplog.text + repr(client) + repr(job) + job.to_json().decode()
    assert caplog.records  # the flow did log at DEBUG
    for secret in secrets:
        assert secret not in text
