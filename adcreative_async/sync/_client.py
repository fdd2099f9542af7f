"""SyncAdCreativeClient: the AdCreative.ai client for sync code, on one event-loop thread of its own."""

from __future__ import annotations

import atexit
import inspect
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from .._bulk import BulkRun
from .._client import AdCreativeClient
from .._clock import Clock
from .._config import Limits, PollPolicy, Timeout, TransferOptions
from .._errors import ClientNotOpenError
from .._jobs import RenderJob
from .._ratelimit import RateStatus
from ..notifications._hub import NotificationHub
from ..resources import Resource
from ._bulk import SyncBulkRun
from ._jobs import SyncRenderJob, unwrap_jobs
from ._portal import NOT_OPEN, BlockingIterator, LoopThread, SyncObject, blocking, on_loop
from ._resources import (
    SyncAdTextsResource,
    SyncBackgroundRemoverResource,
    SyncCreativesResource,
    SyncFaceEnhancerResource,
    SyncProductPhotoshootResource,
    SyncRenderResource,
    SyncResource,
    SyncScanMyWebsiteResource,
    SyncStockImagesResource,
    SyncUpscalerResource,
)

__all__ = ["SyncAdCreativeClient"]

P = ParamSpec("P")
S = TypeVar("S")

#: Seconds the interpreter's exit waits for each client left open to close (its session, its loop
#: thread) before going on without it (assumed: a bound, so that a stuck loop cannot hang the exit).
EXIT_CLOSE_TIMEOUT = 5.0

FORKED = (
    "this client was opened in the parent of this process (a fork: its loop thread is not here): "
    "create and open a client in each process (e.g. in a gunicorn post_fork hook or a Celery "
    "worker_process_init handler)"
)

#: The clients open now, closed at interpreter exit if the program did not close them.
_OPEN_CLIENTS: set[SyncAdCreativeClient] = set()
_OPEN_CLIENTS_LOCK = threading.Lock()


def _same_parameters(
    init: Callable[Concatenate[Any, P], None],
) -> Callable[[Callable[Concatenate[S, ...], None]], Callable[Concatenate[S, P], None]]:
    """Give a ``**options`` forwarding ``__init__`` the parameters of ``init``, for type checkers
    (a ParamSpec) and for ``inspect.signature``/``help()``."""

    def decorate(func: Callable[Concatenate[S, ...], None]) -> Callable[Concatenate[S, P], None]:
        func.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
        return func

    return decorate


def _bulk(owner: SyncObject, run: BulkRun[Any]) -> SyncBulkRun[Any]:
    return SyncBulkRun(owner._client, run)


class SyncAdCreativeClient(SyncObject):
    """The AdCreative.ai client for sync code: scripts, notebooks, Django/Flask views, Celery tasks.

    The same surface as :class:`~adcreative_async.AdCreativeClient`, blocking: every resource, job,
    wait (plain iterators), download (``with`` streams), bulk run, with the same parameters and
    results. It runs an ``AdCreativeClient`` on an event loop in a daemon thread of its own (one per
    client), so it works where a loop already runs in the calling thread (Jupyter), and it is safe to
    call from many threads at once (a web server's threads, a thread pool): their calls run concurrently
    on its loop, sharing one connection pool, one token and one poll scheduler.

    Example::

        from adcreative_async import SyncAdCreativeClient

        with SyncAdCreativeClient() as client:          # credentials from ADCREATIVE_* variables
            job = client.background_remover.remove("product.jpg")
            for update in job.wait_until_complete(timeout=600):
                if update.succeeded:
                    job.download(update.task_id, "out/")

    Or ``client.open()`` once (at start-up) and ``client.close()`` at the end: from any thread; a client
    still open at interpreter exit is closed then. It takes the keyword arguments of
    :class:`~adcreative_async.AdCreativeClient` (credentials are checked here).

    Callbacks (``on_progress``, ``on_upload_progress``, a bulk run's ``submit`` and ``on_update``) run on
    the client's loop thread: they must not block, and must not call this client (use the async client
    a bulk ``submit`` is given).

    Raises:
        ConfigurationError: a credential is missing or malformed.
    """

    @_same_parameters(AdCreativeClient.__init__)
    def __init__(self, **options: Any) -> None:
        client = AdCreativeClient(**options)
        super().__init__(self, client)
        self._async = client
        self._loop: LoopThread | None = None
        self._forked = False  # opened in a parent process: unusable here (see _forget_after_fork)
        self._lifetime_lock = threading.Lock()
        self.creatives = SyncCreativesResource(self, client.creatives)
        """AdCreative generation and editing (seed 001)."""
        self.background_remover = SyncBackgroundRemoverResource(self, client.background_remover)
        """Background removal (seed 000)."""
        self.upscaler = SyncUpscalerResource(self, client.upscaler)
        """Image upscaling."""
        self.face_enhancer = SyncFaceEnhancerResource(self, client.face_enhancer)
        """Face enhancement."""
        self.stock_images = SyncStockImagesResource(self, client.stock_images)
        """Stock image generation from a prompt."""
        self.product_photoshoot = SyncProductPhotoshootResource(self, client.product_photoshoot)
        """Product photoshoots."""
        self.scan_my_website = SyncScanMyWebsiteResource(self, client.scan_my_website)
        """Brand, logos and colours of a website."""
        self.ad_texts = SyncAdTextsResource(self, client.ad_texts)
        """Ad text generation and crafting."""
        self._twins: dict[int, SyncResource] = {
            id(twin.async_resource): twin
            for twin in (
                self.creatives,
                self.background_remover,
                self.upscaler,
                self.face_enhancer,
                self.stock_images,
                self.product_photoshoot,
                self.scan_my_website,
                self.ad_texts,
            )
        }

    def __repr__(self) -> str:
        return "Sync" + repr(self._async)

    @property
    def async_client(self) -> AdCreativeClient:
        """The :class:`~adcreative_async.AdCreativeClient` this runs (use it only on this client's loop,
        e.g. in a bulk ``submit``)."""
        return self._async

    # ----------------------------------------------------------------------------------- lifetime

    def open(self) -> None:
        """Start the client's loop thread and open the async client on it. Idempotent."""
        with self._lifetime_lock:
            if self._forked:
                raise ClientNotOpenError(FORKED)
            if self._loop is not None:
                return
            loop = LoopThread()
            loop.start()
            try:
                loop.submit(self._async.open)
            except BaseException:
                loop.stop()
                raise
            self._loop = loop
        with _OPEN_CLIENTS_LOCK:
            _OPEN_CLIENTS.add(self)

    def close(self) -> None:
        """Close the async client (its waits end with ClientNotOpenError), cancel the calls still running
        in other threads (they raise ClientNotOpenError), stop the loop thread. Idempotent; from any
        thread but the client's own loop thread (a callback)."""
        self._close(timeout=None)

    def _close(self, timeout: float | None) -> None:
        with self._lifetime_lock:
            loop = self._loop
            if loop is None:
                return
            if loop.in_loop_thread():
                raise RuntimeError("a sync client cannot be closed from its own loop thread (a callback)")
            self._loop = None  # new calls now raise ClientNotOpenError
            with _OPEN_CLIENTS_LOCK:
                _OPEN_CLIENTS.discard(self)
            try:
                loop.submit(self._async.aclose, timeout=timeout)
            finally:
                loop.stop(timeout=timeout)

    def __enter__(self) -> SyncAdCreativeClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether the client is inside its lifetime."""
        return self._loop is not None

    def _running_loop(self) -> LoopThread:
        loop = self._loop
        if loop is None:
            raise ClientNotOpenError(FORKED if self._forked else NOT_OPEN)
        return loop

    # --------------------------------------------------------------------------- configuration

    @property
    def application_id(self) -> str:
        """The application's GUID."""
        return self._async.application_id

    @property
    def base_url(self) -> str:
        """The API host."""
        return self._async.base_url

    @property
    def user_id(self) -> str | None:
        """The default user of calls that take one."""
        return self._async.user_id

    @property
    def timeout(self) -> Timeout:
        """Connect/read/pool/total timeouts."""
        return self._async.timeout

    @property
    def limits(self) -> Limits:
        """Connection pool limits."""
        return self._async.limits

    @property
    def transfer(self) -> TransferOptions:
        """Chunk size, maximum upload size, file worker threads."""
        return self._async.transfer

    @property
    def poll_policy(self) -> PollPolicy:
        """How the poll scheduler paces progress calls."""
        return self._async.poll_policy

    @property
    def push(self) -> NotificationHub | None:
        """The notification hub that feeds waits, if any."""
        return self._async.push

    @property
    def strict_validation(self) -> bool:
        """Whether values the SDK does not know are refused before sending."""
        return self._async.strict_validation

    @property
    def reconcile_submissions(self) -> bool:
        """Whether failed start calls that may have reached the server are reconciled."""
        return self._async.reconcile_submissions

    @property
    def unique_user_per_submission(self) -> bool:
        """Strong mode: a fresh user id per start call."""
        return self._async.unique_user_per_submission

    @property
    def exclusive_user_ids(self) -> bool:
        """Whether this client declared itself the only writer of its user ids (reconciliation may adopt)."""
        return self._async.exclusive_user_ids

    @property
    def clock(self) -> Clock:
        """The clock of every sleep and time reading."""
        return self._async.clock

    @property
    def scheduler_stats(self) -> dict[str, int]:
        """The poll scheduler's counters (see ``AdCreativeClient.scheduler_stats``)."""
        return self._async.scheduler_stats

    @property
    def token_requests(self) -> int:
        """Token requests made so far (GenerateJwtToken and RefreshJwtToken)."""
        return self._async.token_requests

    @property
    def rate_status(self) -> RateStatus | None:
        """What the adaptive rate control knows now (see ``AdCreativeClient.rate_status``)."""
        return self._async.rate_status

    # ------------------------------------------------------------------------------------ helpers

    def _twin(self, resource: Resource) -> Any:
        """The sync twin of one of this client's async resources."""
        return self._twins[id(resource)]

    def resource(self, feature: str) -> SyncRenderResource:
        """The resource of a feature by name (``"creatives"``, ``"background_remover"``).

        Raises:
            InvalidRequestError: for an unknown feature name.
        """
        twin: SyncRenderResource = self._twin(self._async.resource(feature))
        return twin

    def job_from_json(self, data: bytes | str | Mapping[str, Any]) -> SyncRenderJob:
        """Rebuild a job from its JSON form (``job.to_json()``), bound to this client."""
        return SyncRenderJob(self._async.job_from_json(data), self)

    def as_completed(
        self, jobs: Iterable[SyncRenderJob | RenderJob], *, timeout: float | None = None
    ) -> Iterator[SyncRenderJob]:
        """Yield jobs as their processes finish (successfully or not: check ``job.failed``); the
        handles given are the ones yielded. See :func:`adcreative_async.as_completed`.

        Raises:
            WaitTimeoutError: ``timeout`` ran out (``error.pending_jobs``: the async handles).
            RenderNotFoundError: the server no longer knows one of the processes.
        """
        async_jobs, handles = unwrap_jobs(jobs)
        iterator = self._running_loop().submit(self._async.as_completed, (async_jobs,), {"timeout": timeout})

        def handle(job: RenderJob) -> SyncRenderJob:
            return handles.get(id(job)) or SyncRenderJob(job, self)

        return BlockingIterator(self, iterator, handle)

    bulk = on_loop(AdCreativeClient.bulk, _bulk)
    process_many = blocking(AdCreativeClient.process_many)

    @classmethod
    def _close_all_at_exit(cls) -> None:
        with _OPEN_CLIENTS_LOCK:
            clients = list(_OPEN_CLIENTS)
        for client in clients:
            try:
                client._close(timeout=EXIT_CLOSE_TIMEOUT)
            except Exception:  # nothing to report to at exit; the loop thread is a daemon
                continue


def _forget_after_fork() -> None:
    """In a forked child: the open clients' loop threads stayed in the parent, so a call would wait
    forever; mark them unusable instead (ClientNotOpenError saying what to do)."""
    global _OPEN_CLIENTS_LOCK
    _OPEN_CLIENTS_LOCK = threading.Lock()  # another thread may have held it at the fork
    for client in _OPEN_CLIENTS:
        client._forked = True
        client._loop = None
        client._lifetime_lock = threading.Lock()
    _OPEN_CLIENTS.clear()


atexit.register(SyncAdCreativeClient._close_all_at_exit)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
