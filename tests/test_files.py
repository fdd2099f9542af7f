"""Upload inputs (path, bytes, file objects, async iterables) and atomic downloads, without a server."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import struct
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from helpers import count_thread_calls, eventually

from adcreative_async import IncompleteDownloadError, InvalidRequestError
from adcreative_async._files import SMALL_UPLOAD, Upload, prepare_upload, sniff_type
from adcreative_async._filewrite import write_atomically

pytestmark = pytest.mark.anyio


def make_png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = make_png()
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + b"\x00" * 64 + b"\xff\xd9"


async def _prepare(value: object, *, strict: bool = True, max_size: int | None = None) -> Upload:
    return await prepare_upload(
        value,
        param="brand_image",
        wire="brandImage",
        strict=strict,
        limiter=anyio.CapacityLimiter(2),
        chunk_size=7,
        max_size=max_size,
    )


async def _read_all(upload: Upload) -> bytes:
    reader = await upload.open()
    parts = []
    try:
        while chunk := await reader.read():
            assert len(chunk) <= 40  # chunked, never whole (a sniffed head of 32+ bytes may come first)
            parts.append(chunk)
    finally:
        await reader.aclose()
    return b"".join(parts)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (PNG, "png"),
        (JPEG, "jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"GIF89a....", "gif"),
        (b"II*\x00....", "tiff"),
        (b"\x00\x00\x00\x18ftypavif", "avif"),
        (b"\x00\x00\x00\x18ftypheic", "heic"),
        (b"%PDF-1.6", "pdf"),
        (b"hello world", None),
        (b"", None),
    ],
)
def test_types_are_sniffed_from_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_type(head) == kind


async def test_path_input_is_sized_replayable_and_named(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(PNG)
    upload = await _prepare(str(path))
    assert (upload.filename, upload.content_type, upload.kind) == ("logo.png", "image/png", "png")
    assert upload.size == len(PNG)
    assert upload.replayable
    assert await _read_all(upload) == PNG
    assert await _read_all(upload) == PNG  # a second pass, e.g. the 401 retry


class GatedOpen:
    """``Path.open`` of one file, held in the worker thread until :attr:`gate` is set; keeps the handles."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.handles: list[Any] = []
        real_open = Path.open

        def gated_open(target: Path, *args: Any, **kwargs: Any) -> Any:
            if target != path or threading.current_thread() is threading.main_thread():
                return real_open(target, *args, **kwargs)
            self.entered.set()
            self.gate.wait(10)
            handle = real_open(target, *args, **kwargs)
            self.handles.append(handle)
            return handle

        monkeypatch.setattr(Path, "open", gated_open)


async def test_a_pass_cancelled_while_its_file_opens_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(PNG + b"\x00" * SMALL_UPLOAD)  # large enough to be read from the file
    upload = await _prepare(path)
    opening = GatedOpen(path, monkeypatch)
    # aiohttp's body writer: a plain asyncio task, cancelled natively when the server answers first
    writer = asyncio.get_running_loop().create_task(upload.open())
    await eventually(opening.entered.is_set)  # the worker thread is inside open()
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    opening.gate.set()  # the file opens now, for no one
    await eventually(lambda: len(opening.handles) == 1 and opening.handles[0].closed)


async def test_a_pass_whose_closing_is_cancelled_still_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(PNG + b"\x00" * SMALL_UPLOAD)  # large enough to be read from the file
    limiter = anyio.CapacityLimiter(1)
    upload = await prepare_upload(
        path,
        param="brand_image",
        wire="brandImage",
        strict=True,
        limiter=limiter,
        chunk_size=7,
        max_size=None,
    )
    opening = GatedOpen(path, monkeypatch)
    opening.gate.set()
    reader = await upload.open()
    busy = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: anyio.to_thread.run_sync(busy.wait, 10, limiter=limiter))  # the only thread
        await eventually(lambda: limiter.borrowed_tokens == 1)
        closing = asyncio.get_running_loop().create_task(reader.aclose())
        await anyio.wait_all_tasks_blocked()  # waiting for a thread to close the file
        closing.cancel()  # aiohttp may cancel its body writer twice: the second lands here
        with pytest.raises(asyncio.CancelledError):
            await closing
        busy.set()
    (handle,) = opening.handles
    assert handle.closed


async def test_a_small_file_is_read_in_one_worker_thread_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(PNG)
    calls = count_thread_calls(monkeypatch)
    upload = await _prepare(path)
    assert await _read_all(upload) == PNG
    assert await _read_all(upload) == PNG  # a replay too
    assert len(calls) == 1  # checked and read whole at once; sent from memory
    large = tmp_path / "large.png"
    large.write_bytes(PNG + b"\x00" * SMALL_UPLOAD)
    calls.clear()
    upload = await _prepare(large)
    assert await _read_all(upload) == large.read_bytes()  # streamed in chunks from the file
    assert len(calls) > 3


async def test_a_small_download_is_created_then_written_and_renamed_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_thread_calls(monkeypatch)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(PNG), 10):
            yield PNG[i : i + 10]

    path = await write_atomically(
        body(),
        os.path.join(tmp_path, "out", ""),
        default_stem="task",
        content_type="image/png",
        expected_length=len(PNG),
        limiter=anyio.CapacityLimiter(1),
    )
    assert path == tmp_path / "out" / "task.png"
    assert path.read_bytes() == PNG
    assert len(calls) == 2  # the temporary file before the body; its bytes, close and rename after


async def test_bytes_input(tmp_path: Path) -> None:
    upload = await _prepare(bytearray(JPEG))
    assert (upload.filename, upload.content_type, upload.size) == ("brand_image.jpg", "image/jpeg", len(JPEG))
    assert await _read_all(upload) == JPEG


async def test_seekable_file_object_is_read_from_its_position_and_left_open() -> None:
    fileobj = io.BytesIO(b"junk" + PNG)
    fileobj.seek(4)
    upload = await _prepare(fileobj)
    assert upload.size == len(PNG)
    assert upload.replayable
    assert fileobj.tell() == 4  # sniffing did not move it
    assert await _read_all(upload) == PNG
    assert await _read_all(upload) == PNG
    assert not fileobj.closed


async def test_real_file_object_is_never_closed(tmp_path: Path) -> None:
    path = tmp_path / "bg.jpg"
    path.write_bytes(JPEG)
    with path.open("rb") as fh:
        upload = await _prepare(fh)
        assert upload.filename == "bg.jpg"
        assert await _read_all(upload) == JPEG
        assert not fh.closed


class _Pipe(io.RawIOBase):
    """A readable, non-seekable stream."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


async def test_non_seekable_file_keeps_its_sniffed_head_and_is_not_replayable() -> None:
    upload = await _prepare(_Pipe(PNG))
    assert upload.size is None
    assert not upload.replayable
    assert await _read_all(upload) == PNG
    with pytest.raises(InvalidRequestError, match="cannot be sent twice"):
        await upload.open()


async def test_async_iterable_input_streams_once() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(PNG), 5):
            yield PNG[i : i + 5]

    upload = await _prepare(chunks())
    assert upload.kind == "png"
    assert upload.size is None
    assert not upload.replayable
    assert await _read_all(upload) == PNG
    with pytest.raises(InvalidRequestError, match=r"brand_image \(brandImage\).*async iterable"):
        await upload.open()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.png"), "file not found"),
        (lambda p: str(p), "is a directory"),
        (lambda p: b"", "is empty"),
        (lambda p: io.BytesIO(b""), "is empty"),
        (lambda p: io.StringIO("text"), "binary mode"),
        (lambda p: b"this is not an image at all", "not an image the SDK recognises"),
        (lambda p: b"GIF89a" + b"\x00" * 40, "is a GIF image"),
        (lambda p: 42, "must be a path, bytes"),
    ],
)
async def test_bad_inputs_are_refused_naming_the_parameter(
    tmp_path: Path, make: object, message: str
) -> None:
    value = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InvalidRequestError, match=message) as info:
        await _prepare(value)
    assert str(info.value).startswith("brand_image (brandImage): ")
    assert info.value.field == "brand_image"


async def test_relaxed_mode_sends_unknown_types_but_never_empty_files() -> None:
    upload = await _prepare(b"GIF89a" + b"\x00" * 40, strict=False)
    assert upload.content_type == "image/gif"
    upload = await _prepare(b"some bytes", strict=False)
    assert upload.content_type == "application/octet-stream"
    with pytest.raises(InvalidRequestError, match="is empty"):
        await _prepare(b"", strict=False)


async def test_max_upload_size_is_enforced_before_sending(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="over the client's max_upload_size of 10 bytes"):
        await _prepare(PNG, max_size=10)


# ------------------------------------------------------------------------------------------ downloads


async def _chunks(data: bytes, size: int = 5) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _write(
    dest: Path | str, data: bytes, expected: int | None, content_type: str | None = None
) -> Path:
    return await write_atomically(
        _chunks(data),
        dest,
        default_stem="5cccaa6b-7391-4b4a-976a-08e9e38ff400",
        content_type=content_type,
        expected_length=expected,
        limiter=anyio.CapacityLimiter(2),
    )


async def test_download_into_a_directory_names_the_file_after_task_and_type(tmp_path: Path) -> None:
    path = await _write(tmp_path, PNG, len(PNG))
    assert path == tmp_path / "5cccaa6b-7391-4b4a-976a-08e9e38ff400.png"
    assert path.read_bytes() == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


async def test_download_to_a_new_directory_with_trailing_separator(tmp_path: Path) -> None:
    path = await _write(f"{tmp_path}/new/dir/", JPEG, None)
    assert path == tmp_path / "new" / "dir" / "5cccaa6b-7391-4b4a-976a-08e9e38ff400.jpg"


async def test_download_to_a_file_path(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.bin"
    path = await _write(target, PNG, None)
    assert path == target
    assert target.read_bytes() == PNG


@pytest.mark.parametrize("stem", ["../x", "/../../x", "a/b", "a\\b", "..", ".", "", "a\x00"])
async def test_a_file_name_stem_is_never_a_path(tmp_path: Path, stem: str) -> None:
    inside = tmp_path / "a" / "b"
    inside.mkdir(parents=True)
    with pytest.raises(ValueError, match="plain name"):
        await write_atomically(
            _chunks(PNG),
            inside,
            default_stem=stem,
            content_type=None,
            expected_length=None,
            limiter=anyio.CapacityLimiter(1),
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_unknown_type_uses_content_type_extension(tmp_path: Path) -> None:
    path = await _write(tmp_path, b"%not-sniffable", 14, content_type="image/webp")
    assert path.suffix == ".webp"


@pytest.mark.parametrize(
    ("data", "expected", "message"),
    [
        (PNG[:-10], len(PNG), "received"),
        (PNG + b"extra", len(PNG), "received"),
        (PNG[:-4], None, "end marker is missing"),
        (JPEG[:-2], None, "end marker is missing"),
    ],
)
async def test_incomplete_downloads_leave_nothing(
    tmp_path: Path, data: bytes, expected: int | None, message: str
) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(IncompleteDownloadError, match=message):
        await _write(tmp_path, data, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


async def test_cancelled_download_leaves_nothing(tmp_path: Path) -> None:
    started = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield PNG[:10]
        started.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await write_atomically(
                slow(),
                tmp_path,
                default_stem="t",
                content_type=None,
                expected_length=None,
                limiter=anyio.CapacityLimiter(1),
                batch_size=1,  # the first bytes are written at once: the temporary file is made
            )

        tg.start_soon(run)
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        assert len(os.listdir(tmp_path)) == 1  # the temporary file exists meanwhile
        tg.cancel_scope.cancel()
    assert os.listdir(tmp_path) == []


async def test_a_download_cancelled_while_its_file_is_created_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, gate = threading.Event(), threading.Event()
    real_open = os.open

    def gated_open(name: Any, *args: Any, **kwargs: Any) -> int:
        if str(name).endswith(".part"):
            entered.set()
            gate.wait(10)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", gated_open)
    writing = asyncio.get_running_loop().create_task(_write(tmp_path, PNG, len(PNG)))
    await eventually(entered.is_set)
    writing.cancel()  # a plain asyncio cancellation (asyncio.wait_for, asyncio.timeout)
    with pytest.raises(asyncio.CancelledError):
        await writing
    gate.set()  # the temporary file is created now, for no one
    await eventually(lambda: os.listdir(tmp_path) == [])
    gc.collect()  # its handle was closed: no ResourceWarning


async def test_progress_callback_reports_bytes(tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    await write_atomically(
        _chunks(PNG, 20),
        tmp_path,
        default_stem="t",
        content_type=None,
        expected_length=len(PNG),
        limiter=anyio.CapacityLimiter(1),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (len(PNG), len(PNG))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
