"""The SDK's own multipart/form-data body (``_multipart.FormBody``, issue 23: a small upload's form
without aiohttp's payload machinery) is byte for byte what aiohttp's ``MultipartWriter`` sends for
the same parts and boundary, sized the same way, and a small form goes out in one write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adcreative_async._files import Upload, prepare_upload
from adcreative_async._multipart import CORK_BYTES, FormBody, FormItem
from adcreative_async.testing import sample_image

pytestmark = pytest.mark.anyio


class Recorder:
    """A stream writer's stand-in: what was written, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(chunk))

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)


async def upload_of(value: object, wire: str = "uploadedImage", param: str = "image") -> Upload:
    import anyio

    return await prepare_upload(
        value,
        param=param,
        wire=wire,
        strict=True,
        limiter=anyio.CapacityLimiter(2),
        chunk_size=4096,
        max_size=None,
        inline=True,
    )


async def aiohttp_body(form: list[FormItem], boundary: str) -> tuple[bytes, int | None]:
    """What aiohttp's MultipartWriter writes for ``form`` (file parts as bytes payloads)."""
    writer = aiohttp.MultipartWriter("form-data", boundary=boundary)
    for item in form:
        if isinstance(item, Upload):
            reader = await item.open()
            data = b""
            while chunk := await reader.read():
                data += chunk
            part = writer.append_payload(aiohttp.payload.BytesPayload(data, content_type=item.content_type))
            part.set_content_disposition("form-data", name=item.wire, filename=item.filename)
        else:
            name, text = item
            writer.append(text).set_content_disposition("form-data", name=name)
    recorder = Recorder()
    await writer.write(recorder)  # type: ignore[arg-type]
    return recorder.body, writer.size


async def test_a_form_is_written_as_aiohttp_writes_it_boundary_for_boundary(tmp_path: Any) -> None:
    path = tmp_path / 'photo é "1".png'
    path.write_bytes(sample_image("png", (64, 64)))
    form: list[FormItem] = [
        ("applicationId", "0b1e9a7c-1111-4222-8333-944445555666"),
        ("userId", 'ü ß "quoted"'),
        await upload_of(path),
        ("prompt", ""),
        await upload_of(sample_image("jpeg", (8, 8)), wire="mask", param="mask"),
    ]
    boundary = "f00dfeedcafe0123456789abcdef0123"
    expected, expected_size = await aiohttp_body(form, boundary)
    body = FormBody(form, boundary=boundary)
    recorder = Recorder()
    await body.write_with_length(recorder, body.size)
    assert recorder.body == expected
    assert body.size == expected_size == len(expected)
    assert body.content_type == f"multipart/form-data; boundary={boundary}"
    assert len(recorder.writes) == 1  # a small form: one write
    assert await body.as_bytes() == expected  # a second pass over the (replayable) uploads


async def test_a_file_part_of_a_chunk_or_more_is_written_as_it_is_read() -> None:
    data = sample_image("png", (8, 8)) + b"\0" * (2 * CORK_BYTES)
    upload = await upload_of(data)
    form: list[FormItem] = [("applicationId", "a"), upload]
    boundary = "0123456789abcdef0123456789abcdef"
    expected, _ = await aiohttp_body(form, boundary)
    body = FormBody(form, boundary=boundary)
    recorder = Recorder()
    await body.write(recorder)
    assert recorder.body == expected
    assert len(recorder.writes) > 1  # not held whole


async def test_an_upload_of_unknown_size_makes_a_chunked_body_and_counts_what_was_sent() -> None:
    image = sample_image("png", (16, 16))

    async def pieces() -> AsyncIterator[bytes]:
        yield image[:10]
        yield image[10:]

    upload = await upload_of(pieces())
    progress: list[tuple[int, int | None]] = []
    body = FormBody([("userId", "u"), upload], on_progress=lambda done, total: progress.append((done, total)))
    assert body.size is None
    recorder = Recorder()
    await body.write(recorder)
    assert body.sent == len(image)
    assert progress[-1] == (len(image), None)
    assert image in recorder.body
