"""SyncDownloadStream: the sync twin of :class:`~adcreative_async.DownloadStream`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING

from .._downloads import DownloadStream
from ._portal import BlockingIterator, SyncObject

if TYPE_CHECKING:
    from ._client import SyncAdCreativeClient

__all__ = ["SyncDownloadStream"]


class SyncDownloadStream(SyncObject):
    """One task's result as a stream of bytes, used with ``with``; see
    :class:`~adcreative_async.DownloadStream` (same attributes, iteration blocking).

    Example::

        with client.creatives.stream_download(process_id, task_id) as stream:
            print(stream.content_length, stream.content_type, stream.filename)
            for chunk in stream.iter_bytes():
                sink.write(chunk)

    Entering sends the request (and raises the API's errors); leaving closes the connection, read to
    the end or not. The stream is entered and left in one task of the client's loop, so a ``timeout``
    total covers the whole block.
    """

    def __init__(self, client: SyncAdCreativeClient, stream: DownloadStream) -> None:
        super().__init__(client, stream)
        self._stream = stream
        self._held: AbstractContextManager[DownloadStream] | None = None

    def __repr__(self) -> str:
        return "<Sync" + repr(self._stream)[1:]

    def __enter__(self) -> SyncDownloadStream:
        if self._stream.is_open:  # opened by open() or open_download(): ``with`` only closes it
            return self
        if self._held is not None:
            raise RuntimeError("a DownloadStream can be entered once; call stream_download() again")
        held = self._loop_thread().wrap_context(self._stream)
        held.__enter__()
        self._held = held
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.__exit__(exc_type, exc, tb)
        elif self._stream.is_open:
            self.close()

    def open(self) -> SyncDownloadStream:
        """Send the request and return this stream, its headers readable, its body not read yet; for
        code that cannot hold a ``with`` block open. Call :meth:`close` when done (``open_download()``
        of a resource or a job does this call for you).

        Raises:
            RenderNotReadyError, NotFoundError and the API's other errors, APIConnectionError.
        """
        self._call("open", (), {})
        return self

    def close(self) -> None:
        """Close the connection (read to the end or not). Idempotent."""
        if self._held is not None:
            self.__exit__(None, None, None)
        elif self._stream.is_open:
            self._call("aclose", (), {})

    @property
    def is_open(self) -> bool:
        """Whether the request was sent and the stream is not closed yet."""
        return self._held is not None or self._stream.is_open

    @property
    def process_id(self) -> str:
        """The render process (canonical GUID)."""
        return self._stream.process_id

    @property
    def task_id(self) -> str:
        """The task whose result this is (canonical GUID)."""
        return self._stream.task_id

    @property
    def content_length(self) -> int | None:
        """The body's length from ``Content-Length``, or None when the server did not send one."""
        return self._stream.content_length

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` the server sent (``"image/png"``), if any."""
        return self._stream.content_type

    @property
    def filename(self) -> str | None:
        """The file name of ``Content-Disposition`` made safe, or None."""
        return self._stream.filename

    @property
    def bytes_received(self) -> int:
        """Bytes of the body read so far."""
        return self._stream.bytes_received

    def iter_bytes(self, chunk_size: int | None = None) -> BlockingIterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes (default: the client's ``chunk_size``).

        Raises:
            IncompleteDownloadError: at the end, when the body is incomplete.
            APIConnectionError / APITimeoutError: the connection failed or stalled past the read timeout.
        """
        return BlockingIterator(self, self._stream.iter_bytes(chunk_size))
