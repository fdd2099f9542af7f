"""Streaming transfers end to end: sized multipart uploads, ``Expect: 100-continue`` against the emulator,
upload limits and progress, atomic and resumable downloads, the public :class:`DownloadStream`, server
file names made safe, no blocking file I/O in the event loop, and constant memory for large files."""

from __future__ import annotations

import gc
import hashlib
import io
import logging
import os
import shutil
import stat
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from helpers import count_thread_calls, creative_inputs
from miniapi import MiniAPI

from adcreative_async import (
    AdCreativeClient,
    AuthenticationError,
    ClientNotOpenError,
    DownloadStream,
    IncompleteDownloadError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    TransferOptions,
)
from adcreative_async._downloads import disposition_filename, safe_filename
from adcreative_async._transport import TOKEN_RENEWALS
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PROCESS = "e6c59f37-a794-468d-81aa-c9ef79dc042c"
TASK = "50d04155-2bd9-46c1-85cb-47fa18cd02d7"
BG_START = "Image/BackgroundRemoving/AdCreative"
GEN_START = "Image/Generation/AdCreativesByKind"
BG_DOWNLOAD = "Image/BackgroundRemoving/Download"
PNG = sample_image("png", (16, 16))
JPEG = sample_image("jpeg", (16, 16))
MiB = 1 << 20


def sparse_png(path: Path, size: int) -> Path:
    """A file of ``size`` bytes starting like a PNG, made instantly (sparse)."""
    with path.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(size)
    return path


def sha256_of_sparse_png(size: int) -> str:
    digest = hashlib.sha256(PNG)
    zeros = bytes(MiB)
    left = size - len(PNG)
    while left:
        step = min(left, len(zeros))
        digest.update(zeros[:step])
        left -= step
    return digest.hexdigest()


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def client_for(emu: Emulator, **kwargs: Any) -> AdCreativeClient:
    kwargs.setdefault("transfer", TransferOptions(max_upload_size=None))
    return AdCreativeClient(**{**emu.credentials, **kwargs.pop("credentials", {})}, user_id=USER, **kwargs)


async def finished_task(client: AdCreativeClient, emu: Emulator) -> tuple[str, str]:
    job = await client.background_remover.remove(PNG)
    emu.finish_process(job.process_id)
    return job.process_id, job.task_ids[0]


@pytest.fixture
async def api() -> AsyncIterator[MiniAPI]:
    async with MiniAPI() as server:
        yield server


@pytest.fixture
async def mini_client(api: MiniAPI) -> AsyncIterator[AdCreativeClient]:
    async with AdCreativeClient(**api.credentials, user_id=USER, trust_env=False) as client:
        yield client


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=4) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with client_for(emu, trust_env=False) as c:
        yield c


PROGRESS = {
    "$id": "1",
    "messageType": "ImageGenerationProgress",
    "requestRenderState": 1,
    "applicationId": MiniAPI.APP,
    "userId": USER,
    "imageRenderProcessId": PROCESS,
    "totalTaskCount": 1,
    "completedTaskCount": 0,
    "progress": 0,
    "tasks": {"$id": "2", TASK: 1},
    "renderKind": 1,
    "renderType": 2,
    "isSuccessful": True,
    "errorMessage": "",
}


# ------------------------------------------------------------------------------------------------ uploads


async def test_a_two_file_upload_is_one_sized_request_with_typed_named_parts(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path
) -> None:
    api.answer("POST", f"/api/v1/{GEN_START}", 200, PROGRESS)
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    background = io.BytesIO(JPEG)
    background.name = "/somewhere/else/background.jpg"  # only its base name may be sent
    await mini_client.creatives.generate(**creative_inputs(brand_image=logo, background_image=background))
    (seen,) = api.requests_to(f"/api/v1/{GEN_START}")
    assert "Transfer-Encoding" not in seen.headers
    assert int(seen.headers["Content-Length"]) > len(PNG) + len(JPEG)
    assert "Expect" not in seen.headers  # small bodies go out at once
    files = {name: (value, filename) for name, value, filename in seen.form if filename}
    assert files == {"backgroundImage": (JPEG, "background.jpg"), "brandImage": (PNG, "logo.png")}
    types = {
        h["Content-Disposition"].split('name="')[1].split('"')[0]: h["Content-Type"]
        for h in seen.part_headers
        if "filename" in h["Content-Disposition"]
    }
    assert types == {"backgroundImage": "image/jpeg", "brandImage": "image/png"}  # from the bytes


async def test_content_type_comes_from_the_bytes_not_the_name(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path
) -> None:
    api.answer("POST", f"/api/v1/{BG_START}", 200, {**PROGRESS, "renderType": 8})
    misnamed = tmp_path / "photo.png"
    misnamed.write_bytes(JPEG)
    await mini_client.background_remover.remove(misnamed)
    (seen,) = api.requests_to(f"/api/v1/{BG_START}")
    assert seen.part_headers[2]["Content-Type"] == "image/jpeg"
    assert seen.form[2] == ("uploadedImage", JPEG, "photo.png")


async def test_a_large_sized_upload_announces_expect_continue_and_its_length(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path
) -> None:
    api.answer("POST", f"/api/v1/{BG_START}", 200, {**PROGRESS, "renderType": 8})
    source = sparse_png(tmp_path / "big.png", 3 * MiB)
    await mini_client.background_remover.remove(source)
    (seen,) = api.requests_to(f"/api/v1/{BG_START}")
    assert seen.headers["Expect"] == "100-continue"
    assert int(seen.headers["Content-Length"]) > 3 * MiB
    assert "Transfer-Encoding" not in seen.headers
    assert len(seen.form[2][1]) == 3 * MiB


async def test_a_known_size_over_the_limit_is_refused_before_sending(emu: Emulator, tmp_path: Path) -> None:
    source = sparse_png(tmp_path / "big.png", 2 * MiB)
    async with client_for(emu, transfer=TransferOptions(max_upload_size=MiB)) as client:
        with pytest.raises(InvalidRequestError, match=r"image \(uploadedImage\): is 2097152 bytes, over"):
            await client.background_remover.remove(source)
    assert emu.request_count(BG_START) == 0


async def test_an_unknown_size_over_the_limit_fails_while_sending(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield PNG
        for _ in range(8):
            yield bytes(256 * 1024)

    async with client_for(emu, transfer=TransferOptions(max_upload_size=MiB)) as client:
        with pytest.raises(
            InvalidRequestError, match=r"over the client's max_upload_size .* \(found while sending\)"
        ):
            await client.background_remover.remove(stream())
        assert emu.processes_for(USER) == []
        # the connection the broken request used is not reused: the next call works
        assert await client.background_remover.remove(PNG)
    # the emulator takes a client that gives up mid-body in its stride, as a server would
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_upload_progress_reports_bytes_and_total_over_every_file_part(
    client: AdCreativeClient, tmp_path: Path
) -> None:
    seen: list[tuple[int, int | None]] = []
    logo = sparse_png(tmp_path / "logo.png", 2 * MiB)
    await client.creatives.generate(
        **creative_inputs(brand_image=logo), on_upload_progress=lambda done, total: seen.append((done, total))
    )
    total = 2 * MiB + len(JPEG)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) > 2  # several steps: a progress bar moves

    async def stream() -> AsyncIterator[bytes]:
        yield PNG

    unsized: list[tuple[int, int | None]] = []
    await client.background_remover.remove(stream(), on_upload_progress=lambda d, t: unsized.append((d, t)))
    assert unsized[-1] == (len(PNG), None)


# ------------------------------------------------------------------ Expect: 100-continue against the emulator


async def test_bad_credentials_get_the_401_before_a_large_body_is_sent(emu: Emulator, tmp_path: Path) -> None:
    source = sparse_png(tmp_path / "big.png", 64 * MiB)
    sent: list[int] = []
    async with client_for(emu, credentials={"api_secret": "not-the-secret"}) as client:
        with pytest.raises(AuthenticationError, match="Token is missing"):
            await client.background_remover.remove(source, on_upload_progress=lambda d, t: sent.append(d))
    assert sent == []  # not one byte of the body went out, on either attempt
    assert emu.request_count(BG_START) == 1 + TOKEN_RENEWALS  # the 401, then each renewal's retry
    assert emu.processes_for(USER) == []


def _seekable_file(path: Path) -> Any:
    return path.open("rb")


@pytest.mark.parametrize("kind", ["path", "bytes", "seekable file"])
async def test_a_large_upload_is_sent_once_after_a_token_renewal(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path, kind: str
) -> None:
    size = 3 * MiB
    path = sparse_png(tmp_path / "big.png", size)
    await client.background_remover.user_progress()  # a token now...
    emu.expire_access_tokens()  # ...that the next call finds expired on the server
    sent: list[int] = []
    handle = path.open("rb") if kind == "seekable file" else None
    source: Any = {"path": path, "bytes": path.read_bytes(), "seekable file": handle}[kind]
    try:
        job = await client.background_remover.remove(source, on_upload_progress=lambda d, t: sent.append(d))
    finally:
        if handle is not None:
            assert not handle.closed  # the caller's file stays open
            handle.close()
    assert max(sent) == size  # one full pass: the 401 came before the body
    upload = emu.process(job.process_id).inputs.files["uploadedImage"]
    assert (upload.size, upload.sha256) == (size, sha256_of_sparse_png(size))
    assert emu.request_count(BG_START) == 2


async def _stream(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def test_a_large_one_shot_upload_refused_before_its_body_is_renewed_and_sent(
    emu: Emulator, client: AdCreativeClient
) -> None:
    data = PNG + bytes(3 * MiB)
    await client.background_remover.user_progress()  # a token now...
    emu.expire_access_tokens()  # ...that the server no longer accepts
    sent: list[int] = []
    job = await client.background_remover.remove(
        _stream(data), on_upload_progress=lambda d, t: sent.append(d)
    )
    assert max(sent) == len(data)  # one pass: the 401 answered `Expect: 100-continue`, before the body
    upload = emu.process(job.process_id).inputs.files["uploadedImage"]
    assert (upload.size, upload.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert emu.request_count(BG_START) == 2
    assert client.token_requests == 2


async def test_a_401_on_a_one_shot_upload_already_sent_renews_the_token_for_the_next_call(
    emu: Emulator, client: AdCreativeClient
) -> None:
    await client.background_remover.user_progress()
    emu.expire_access_tokens()
    tiny = PNG[:24]  # read whole while its type is sniffed: sized, so no `Expect: 100-continue`
    sent: list[int] = []
    with pytest.raises(AuthenticationError):
        await client.background_remover.remove(_stream(tiny), on_upload_progress=lambda d, t: sent.append(d))
    assert sent == [len(tiny)]  # the body went out: it cannot be sent again
    assert emu.request_count(BG_START) == 1
    job = await client.background_remover.remove(_stream(PNG + bytes(2 * MiB)))  # the next one-shot upload
    assert emu.process(job.process_id).inputs.files["uploadedImage"].size == len(PNG) + 2 * MiB
    assert emu.request_count(BG_START) == 2  # sent once, with a renewed token: no second 401
    assert client.token_requests == 2


@pytest.mark.parametrize("answer", ["401 after expiry", "429"])
async def test_path_uploads_answered_before_their_body_leave_no_file_open(
    emu: Emulator, tmp_path: Path, answer: str
) -> None:
    # The server answers at once, and aiohttp cancels the body writer wherever it is: often inside the
    # worker thread that opens the file (test_files has the deterministic case). An unclosed file is a
    # ResourceWarning when collected: an error here (filterwarnings = error).
    path = tmp_path / "p.png"
    path.write_bytes(PNG)  # small: no `Expect: 100-continue`, the body goes out with the headers
    async with client_for(emu, trust_env=False, retry=RetryPolicy(max_attempts=1)) as client:
        await client.background_remover.user_progress()
        for _ in range(30):
            if answer == "429":
                emu.fail_next(BG_START, 429)
                with pytest.raises(RateLimitError):
                    await client.background_remover.remove(path)
            else:
                emu.expire_access_tokens()
                await client.background_remover.remove(path)  # renewed and sent again
    gc.collect()
    assert emu.request_count(BG_START) == (30 if answer == "429" else 60)


# ------------------------------------------------------------------------------------------------- downloads


async def test_a_download_cut_mid_body_leaves_every_destination_unchanged(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    process_id, task_id = await finished_task(client, emu)
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"old content")
    before = listing(tmp_path)
    for dest in (tmp_path, existing, tmp_path / "new.png", tmp_path / "sub" / "dir" / "x.png"):
        emu.truncate_next_download(task_id, 100)
        with pytest.raises(IncompleteDownloadError, match="cut off"):
            await client.background_remover.download(process_id, task_id, dest)
        assert existing.read_bytes() == b"old content"
    assert listing(tmp_path) == sorted([*before, "sub"])  # parent directories made for it stay
    assert [p.name for p in (tmp_path / "sub").rglob("*")] == ["dir"]
    assert emu.download_count(task_id) == 4  # each cut download counted on the server
    path = await client.background_remover.download(process_id, task_id, existing)  # then it just works
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_a_download_cancelled_mid_body_leaves_nothing(tmp_path: Path) -> None:
    async with (
        Emulator(auto_complete=False, download_size=8 * MiB) as emu,
        # the worker thread writes (in the loop, the first bytes are on disk when first reported: see
        # test_download_stream_writes.py)
        client_for(
            emu, trust_env=False, transfer=TransferOptions(chunk_size=64 * 1024, write_in_loop=False)
        ) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        (tmp_path / "keep.txt").write_text("x")
        during: list[list[str]] = []
        with anyio.CancelScope() as scope:

            def cancel_once_written(done: int, total: int | None) -> None:
                during.append(os.listdir(tmp_path))
                if len(during[-1]) == 2:  # the temporary file is made with the first bytes written
                    scope.cancel()

            await client.background_remover.download(
                process_id, task_id, tmp_path, on_progress=cancel_once_written
            )
        assert scope.cancelled_caught
        assert len(during[0]) == 1  # nothing made before the first bytes are written
        assert len(during[-1]) == 2  # the temporary file existed while the body arrived
        assert listing(tmp_path) == ["keep.txt"]


async def test_every_download_counts_on_the_server(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    process_id, task_id = await finished_task(client, emu)
    await client.background_remover.download(process_id, task_id, tmp_path)
    await client.background_remover.download(process_id, task_id, tmp_path)  # replaces the first
    async with client.background_remover.stream_download(process_id, task_id):
        pass  # a stream counts even unread
    assert emu.download_count(task_id) == 3
    assert listing(tmp_path) == [f"{task_id}.png"]


async def test_resume_continues_a_cut_body_with_a_range(tmp_path: Path) -> None:
    async with (
        Emulator(auto_complete=False, download_size=MiB, range_requests=True) as emu,
        client_for(emu, trust_env=False) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        whole = await client.background_remover.download(process_id, task_id, tmp_path / "whole.png")
        emu.truncate_next_download(task_id, 300_000, count=2)
        seen: list[tuple[int, int | None]] = []
        path = await client.background_remover.download(
            process_id,
            task_id,
            tmp_path / "resumed.png",
            resume=True,
            on_progress=lambda done, total: seen.append((done, total)),
        )
        assert path.read_bytes() == whole.read_bytes()
        assert seen == sorted(seen)  # never back to zero: continued, not restarted
        assert {total for _, total in seen} == {MiB}  # (bytes done, total) from the first bytes on
        assert seen[-1] == (MiB, MiB)
        assert emu.download_count(task_id) == 4  # the whole one, two cut, the last range
        assert listing(tmp_path) == ["resumed.png", "whole.png"]


async def test_resume_starts_again_when_the_server_ignores_ranges(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    process_id, task_id = await finished_task(client, emu)
    emu.truncate_next_download(task_id, 50)
    seen: list[int] = []
    path = await client.background_remover.download(
        process_id, task_id, tmp_path, resume=True, on_progress=lambda d, t: seen.append(d)
    )
    assert 0 in seen[1:]  # the 200 to the range restarted the file from zero
    assert path.read_bytes().endswith(b"IEND\xaeB`\x82")
    assert emu.download_count(task_id) == 2
    assert listing(tmp_path) == [path.name]


async def test_resume_gives_up_after_its_budget_and_writes_nothing(tmp_path: Path) -> None:
    async with (
        Emulator(auto_complete=False, download_size=MiB, range_requests=True) as emu,
        client_for(emu, trust_env=False) as client,
    ):
        process_id, task_id = await finished_task(client, emu)
        emu.truncate_next_download(task_id, 10_000, count=3)
        with pytest.raises(IncompleteDownloadError, match="cut off"):
            await client.background_remover.download(process_id, task_id, tmp_path, resume=2)
        assert emu.download_count(task_id) == 3
        assert listing(tmp_path) == []
        with pytest.raises(InvalidRequestError, match="resume: must be a bool or a count"):
            await client.background_remover.download(process_id, task_id, tmp_path, resume=-1)


def _cut_response(
    status: int, body: bytes, headers: dict[str, str], cut: int | None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        response.content_type = "image/png"
        if cut is not None:
            response.force_close()
        await response.prepare(request)
        await response.write(body[:cut] if cut is not None else body)
        if cut is None:
            await response.write_eof()
        return response

    return respond


async def test_resume_sends_if_range_and_restarts_on_an_unusable_206(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path
) -> None:
    png = sample_image("png", (200, 200))
    answers = [
        _cut_response(200, png, {"ETag": '"v1"'}, cut=100),
        _cut_response(206, png[50:], {"Content-Range": f"bytes 50-{len(png) - 1}/{len(png)}"}, cut=None),
        _cut_response(200, png, {}, cut=None),
    ]

    @api.route("GET", f"/api/v1/{BG_DOWNLOAD}")
    async def download(request: web.Request) -> web.StreamResponse:
        return await answers.pop(0)(request)

    path = await mini_client.background_remover.download(PROCESS, TASK, tmp_path, resume=True)
    assert path.read_bytes() == png
    first, second, third = (s.headers for s in api.requests_to(f"/api/v1/{BG_DOWNLOAD}"))
    assert "Range" not in first
    assert (second["Range"], second["If-Range"]) == ("bytes=100-", '"v1"')
    assert "Range" not in third  # the 206 did not continue at byte 100: asked again without a range
    assert listing(tmp_path) == [f"{TASK}.png"]


async def test_without_content_length_the_end_marker_decides(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path
) -> None:
    bodies = [PNG[:-12], PNG]

    @api.route("GET", f"/api/v1/{BG_DOWNLOAD}")
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(bodies.pop(0))
        await response.write_eof()
        return response

    with pytest.raises(IncompleteDownloadError, match="PNG end marker is missing"):
        await mini_client.background_remover.download(PROCESS, TASK, tmp_path)
    assert listing(tmp_path) == []
    path = await mini_client.background_remover.download(PROCESS, TASK, tmp_path)
    assert path.read_bytes() == PNG


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
async def test_downloaded_files_get_the_usual_permissions(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    process_id, task_id = await finished_task(client, emu)
    path = await client.background_remover.download(process_id, task_id, tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open() makes them, not 0600


@pytest.fixture
async def threads_only(emu: Emulator) -> AsyncIterator[AdCreativeClient]:
    """A client whose file operations all run in worker threads, small files' too."""
    transfer = TransferOptions(max_upload_size=None, inline_small_files=False)
    async with client_for(emu, trust_env=False, transfer=transfer) as c:
        yield c


async def test_a_small_download_to_a_known_directory_costs_one_file_call(
    emu: Emulator, threads_only: AdCreativeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = threads_only
    process_id, task_id = await finished_task(client, emu)
    calls = count_thread_calls(monkeypatch)
    out = tmp_path / "out"
    first = await client.background_remover.download(process_id, task_id, f"{out}/")
    assert len(calls) == 2  # a new destination is prepared before the request (a bad one fails first)
    calls.clear()
    second = await client.background_remover.download(process_id, task_id, out / "again.png")
    assert len(calls) == 2  # another destination: prepared again
    calls.clear()
    await client.background_remover.download(process_id, task_id, f"{out}/")
    assert len(calls) == 1  # created, written, closed and renamed in one call
    assert first.read_bytes() == second.read_bytes()
    # The directory disappears: that download fails (after its request), and the next one prepares
    # the destination again.
    shutil.rmtree(out)
    with pytest.raises(FileNotFoundError):
        await client.background_remover.download(process_id, task_id, f"{out}/")
    assert list(tmp_path.iterdir()) == []
    assert (
        await client.background_remover.download(process_id, task_id, f"{out}/")
    ).read_bytes() == first.read_bytes()


async def test_download_file_io_never_runs_in_the_event_loop_thread(
    emu: Emulator, threads_only: AdCreativeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = threads_only
    process_id, task_id = await finished_task(client, emu)
    loop_thread = threading.current_thread()
    calls: list[tuple[str, bool]] = []

    def record(name: str) -> None:
        calls.append((name, threading.current_thread() is loop_thread))

    def spy(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            record(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    class SpiedFile:
        def __init__(self, handle: Any) -> None:
            self._handle = handle

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self._handle, name)
            if name in ("write", "seek", "truncate", "close"):
                record(f"file.{name}")
            return attribute

    original_fdopen = os.fdopen

    def fdopen(*args: Any, **kwargs: Any) -> Any:
        record("fdopen")
        return SpiedFile(original_fdopen(*args, **kwargs))

    monkeypatch.setattr(os, "fdopen", fdopen)
    for owner, name in [(os, "open"), (os, "replace"), (os, "unlink"), (os.path, "isdir"), (os, "makedirs")]:
        spy(owner, name)
    await client.background_remover.download(process_id, task_id, tmp_path / "a" / "ok.png")
    emu.truncate_next_download(task_id, 10)
    with pytest.raises(IncompleteDownloadError):
        await client.background_remover.download(process_id, task_id, tmp_path)
    monkeypatch.undo()
    names = {name for name, _ in calls}
    assert {"open", "fdopen", "replace", "unlink", "isdir", "makedirs", "file.write", "file.close"} <= names
    assert [name for name, in_loop in calls if in_loop] == []


# ------------------------------------------------------------------------------------------- stream_download


async def test_stream_download_gives_length_type_safe_name_and_the_bytes(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    process_id, task_id = await finished_task(client, emu)
    whole = (await client.background_remover.download(process_id, task_id, tmp_path)).read_bytes()
    chunks: list[bytes] = []
    async with client.background_remover.stream_download(process_id, task_id) as stream:
        assert isinstance(stream, DownloadStream)
        assert (stream.content_length, stream.content_type) == (len(whole), "image/png")
        assert stream.filename == f"{task_id}.png"
        assert (stream.process_id, stream.task_id) == (process_id, task_id)
        async for chunk in stream.iter_bytes(chunk_size=50):
            assert len(chunk) <= 50
            chunks.append(chunk)
        assert stream.bytes_received == len(whole)
    assert b"".join(chunks) == whole


async def test_job_delegates_streaming_and_resumable_downloads(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    job = await client.background_remover.remove(PNG)
    emu.finish_process(job.process_id)
    (task_id,) = job.task_ids
    async with job.stream_download(task_id) as stream:
        streamed = b"".join([chunk async for chunk in stream.iter_bytes()])
    saved = await job.download(task_id, tmp_path, resume=True, use_server_filename=True)
    assert saved.read_bytes() == streamed
    assert saved.name == f"{task_id}.png"
    assert emu.download_count(task_id) == 2


async def test_stream_download_raises_when_the_body_is_cut(emu: Emulator, client: AdCreativeClient) -> None:
    process_id, task_id = await finished_task(client, emu)
    emu.truncate_next_download(task_id, 40)
    received = b""
    async with client.background_remover.stream_download(process_id, task_id) as stream:
        chunks = stream.iter_bytes()
        received += await chunks.__anext__()
        with pytest.raises(IncompleteDownloadError, match="cut off") as info:
            await chunks.__anext__()
    assert len(received) == 40
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


async def test_stream_download_errors_and_misuse(emu: Emulator, client: AdCreativeClient) -> None:
    job = await client.background_remover.remove(PNG)  # not finished
    stream = client.background_remover.stream_download(job.process_id, job.task_ids[0])
    with pytest.raises(ClientNotOpenError, match="async with"):
        _ = stream.content_length
    with pytest.raises(NotFoundError, match="has no result yet"):  # a RenderNotReadyError
        async with stream:
            pass  # pragma: no cover
    with pytest.raises(RuntimeError, match="opened once"):
        async with stream:
            pass  # pragma: no cover
    with pytest.raises(InvalidRequestError, match="task_id: must be a GUID"):
        client.background_remover.stream_download(job.process_id, "nope")
    emu.finish_process(job.process_id)
    async with client.background_remover.stream_download(job.process_id, job.task_ids[0]) as stream:
        async for _chunk in stream.iter_bytes(chunk_size=10):
            break  # leaving early closes the connection; nothing to finalise
    assert emu.download_count(job.task_ids[0]) == 1


# --------------------------------------------------------------------------------------- server file names


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("5cccaa6b.png", "5cccaa6b.png"),
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("C:\\evil.png", "evil.png"),
        ("C:evil.png", "C_evil.png"),
        ("a\x00b.png", "a_b.png"),
        ("\u202egnp.exe", "_gnp.exe"),
        ("tab\there.png", "tab_here.png"),
        ("..", None),
        ("/", None),
        (" . ", None),
        ("", None),
        (None, None),
        (".bashrc", "bashrc"),
        ("CON.png", "_CON.png"),
        ("lpt1", "_lpt1"),
        ("x" * 300 + ".png", "x" * 251 + ".png"),
        ("é" * 200 + ".jpeg", "é" * 125 + ".jpeg"),
    ],
)
def test_server_file_names_are_made_safe(name: str | None, safe: str | None) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("attachment; filename=a.png; filename*=UTF-8''b%20c.png", "b c.png"),
        ("attachment; filename=../../etc/passwd", "../../etc/passwd"),  # aiohttp's reader warns here
        ('attachment; filename="q\\"uote;d.png"', 'q"uote;d.png'),
        ("attachment; filename*=iso-8859-1''caf%E9.png", "café.png"),
        ("attachment", None),
        (None, None),
    ],
)
def test_content_disposition_is_read_leniently(header: str | None, name: str | None) -> None:
    assert disposition_filename(header) == name


@pytest.mark.parametrize(
    ("disposition", "written"),
    [
        ("attachment; filename=../../escape.png", "escape.png"),
        ("attachment; filename*=UTF-8''%2Ftmp%2Fabsolute.png", "absolute.png"),
        ('attachment; filename="..\\\\..\\\\win.ini"', "win.png"),  # the extension names the content
        ("attachment; filename*=UTF-8''nul%00byte.jpeg", "nul_byte.png"),
        ("attachment; filename*=UTF-8''photo.PNG", "photo.PNG"),
        ("attachment; filename=..", f"{TASK}.png"),
        (None, f"{TASK}.png"),
    ],
)
async def test_use_server_filename_never_leaves_the_directory(
    api: MiniAPI, mini_client: AdCreativeClient, tmp_path: Path, disposition: str | None, written: str
) -> None:
    headers = {"Content-Disposition": disposition} if disposition else {}
    api.answer("GET", f"/api/v1/{BG_DOWNLOAD}", 200, PNG, headers=headers)
    target = tmp_path / "inside" / "deeper"
    target.mkdir(parents=True)
    path = await mini_client.background_remover.download(PROCESS, TASK, target, use_server_filename=True)
    assert path == target / written
    assert listing(target) == [written]
    assert listing(tmp_path) == ["inside"]
    assert listing(tmp_path / "inside") == ["deeper"]
    default = await mini_client.background_remover.download(PROCESS, TASK, target)
    assert default.name == f"{TASK}.png"  # the task id unless asked


# ----------------------------------------------------------------------------------------- constant memory


async def test_256_mib_up_and_256_mib_down_keep_the_python_heap_under_8_mib(tmp_path: Path) -> None:
    size = 256 * MiB
    source = sparse_png(tmp_path / "up.png", size)
    async with (
        Emulator(auto_complete=False, download_size=size) as emu,
        client_for(emu, trust_env=False) as client,
    ):
        process_id, task_id = await finished_task(client, emu)  # token, connection, threads: warm
        tracemalloc.start()
        try:
            job = await client.background_remover.remove(source)
            path = await client.background_remover.download(process_id, task_id, tmp_path / "down.png")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert emu.process(job.process_id).inputs.files["uploadedImage"].size == size
        assert path.stat().st_size == size
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
