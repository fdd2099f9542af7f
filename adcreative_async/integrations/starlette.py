"""Starlette and FastAPI: a task's result streamed as an HTTP response, in constant memory.

Needs Starlette (FastAPI includes it). Use with a stream from ``open_download()``, which raises the
SDK's errors (``RenderNotReadyError``, ``NotFoundError`` …) before the response starts, so that your
handler can turn them into HTTP errors::

    from adcreative_async.integrations.starlette import streaming_response

    @app.get("/results/{process_id}/{task_id}")
    async def result(process_id: str, task_id: str) -> StreamingResponse:
        stream = await client.background_remover.open_download(process_id, task_id)
        return streaming_response(stream)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .._downloads import DownloadStream, safe_filename

__all__ = ["DownloadResponse", "streaming_response"]

#: What a response says when the server sent no ``Content-Type``.
FALLBACK_MEDIA_TYPE = "application/octet-stream"


class DownloadResponse(StreamingResponse):
    """A :class:`~starlette.responses.StreamingResponse` of an open :class:`DownloadStream` that closes
    the stream however the response ends: sent in full, failed, or the caller gone."""

    def __init__(
        self,
        stream: DownloadStream,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.stream = stream
        super().__init__(
            stream.iter_bytes(),
            status_code=status_code,
            headers=headers,
            media_type=media_type,
            background=background,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.stream.aclose()  # shielded: it runs even when the response was cancelled


def streaming_response(
    stream: DownloadStream,
    *,
    filename: str | None = None,
    headers: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> DownloadResponse:
    """The response streaming an open ``stream`` (from ``open_download()``) to the caller.

    It carries the server's ``Content-Type`` (``application/octet-stream`` when none) and
    ``Content-Length`` when known, and closes the stream when the response ends, whatever the ending.

    Args:
        stream: an open stream (``await resource.open_download(...)`` or ``await job.open_download(...)``).
        filename: send ``Content-Disposition: attachment`` with this name, made safe (no path, no
            control characters; see :func:`~adcreative_async._downloads.safe_filename`); default none.
        headers: more response headers (they win over the ones above).
        status_code: the response status (default 200).

    Raises:
        ClientNotOpenError: the stream is not open (use ``open_download()``, not ``stream_download()``).
    """
    all_headers: dict[str, str] = {}
    if stream.content_length is not None:
        all_headers["Content-Length"] = str(stream.content_length)
    name = safe_filename(filename)
    if name is not None:
        fallback = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        disposition = f'attachment; filename="{fallback}"'
        if fallback != name:  # RFC 6266: the real name for clients that read it, UTF-8 percent-encoded
            disposition += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
        all_headers["Content-Disposition"] = disposition
    all_headers.update(headers or {})
    return DownloadResponse(
        stream,
        status_code=status_code,
        headers=all_headers,
        media_type=stream.content_type or FALLBACK_MEDIA_TYPE,
    )
