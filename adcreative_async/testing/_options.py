"""The emulator's behaviour options: one frozen record, checked once.

Every behaviour the documentation leaves open is one of these options, never a silent guess; the
defaults are the plainest reading of the seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._images import png_bytes

__all__ = ["EmulatorOptions"]


@dataclass(frozen=True)
class EmulatorOptions:
    """How the emulated service behaves (every field mirrors an :class:`Emulator` keyword).

    Attributes:
        access_token_lifetime: Seconds an access token stays valid (not documented: option).
        refresh_token_lifetime: Seconds a refresh token stays valid (the docs' example shows 7 days).
        rotate_refresh_tokens: Whether RefreshJwtToken issues a new refresh token and revokes the old
            one (not documented: option).
        task_duration: Seconds until a task finishes on its own; a ``(low, high)`` tuple draws each
            task's duration uniformly from that range.
        auto_complete: False: tasks finish only through the emulator's controls.
        notification_channel: Whether the application starts with an active notification channel.
        list_finished: Whether finished processes stay in unfiltered progress lists (not documented).
        partial_tasks: Whether progress objects list only the first half (rounded up) of their tasks
            in ``tasks`` while the counts stay true (the seeds show 2 of 5 and 4 of 10).
        unknown_task_state: If set, running tasks report this state instead of 1.
        task_failure_rate: Probability that a task ends failed instead of succeeded.
        read_after_write_lag: Seconds a new process stays invisible to the progress endpoints.
        start_latency: Seconds between a start (or edit) call creating its render and its answer
            leaving, as a real service takes to answer: a ``(low, high)`` tuple draws each call's
            latency uniformly from that range. The render exists (and is listed) meanwhile, so a
            client that lists the user's processes sees it before the answer arrives.
        image_format: ``"png"`` or ``"jpeg"``: the format of downloaded images.
        image_size: Pixels (width, height) of downloaded images; low resolution is half of it.
        seed: Seed of the random generators (ids, credentials, jitter, failures); None: unpredictable.
        tasks_per_size: Tasks a generation makes per output size in its renderKind (assumed: the seeds
            show 5 tasks and 10 tasks for the same renderKind 1).
        channel_required_for_background_removal: Whether background removal also needs an active
            notification channel (assumed from the AdCreative page's "before any generation").
        download_size: If set, downloads are PNGs of exactly this many bytes (low resolution: a
            quarter, at least the smaller image), zero-padded and streamed in constant memory, for
            memory tests and benchmarks of very large results (PNG only).
        range_requests: Whether downloads honour ``Range: bytes=…`` with 206 and ``Content-Range``
            (each one counted as a download), with ``Accept-Ranges`` and an ``ETag`` for ``If-Range``.
            Off by default: assumed, the docs say nothing of ranges and ASP.NET's ``File()`` ignores
            them unless range processing is enabled.
        progress_notifications: ``"every_change"`` (default) sends a progress message whenever a
            process's progress changes; ``"on_completion"`` only when all its tasks ended (the docs
            say both, reference §14 item 4).
        notification_loss_rate, notification_duplicate_rate: probabilities that a notification is
            lost, or delivered twice (faults for tests).
        reorder_notifications: deliver each notification after the next one (a fault for tests).
        stamp_inputs: testing only: each PNG result carries the SHA-256 of its process's first uploaded
            image in a tEXt chunk (``adcreative-emulator-input-sha256``), so that a test can check that a
            file comes from its own input (see ``Emulator.processes_per_input``).
        rate_limit: requests per second each application may make (a token bucket per application; a
            request finding it empty is answered 429 with ``Retry-After``, unprocessed); None (default):
            no limit. Assumed: the docs say nothing of rate limits (see ``_ratelimit``).
        rate_burst: the bucket's size, requests (default: one second's worth of ``rate_limit``).
    """

    access_token_lifetime: float = 3600.0
    refresh_token_lifetime: float = 7 * 86400.0
    rotate_refresh_tokens: bool = False
    task_duration: float | tuple[float, float] = 0.5
    auto_complete: bool = True
    notification_channel: bool = True
    list_finished: bool = True
    partial_tasks: bool = False
    unknown_task_state: int | None = None
    task_failure_rate: float = 0.0
    read_after_write_lag: float = 0.0
    start_latency: float | tuple[float, float] = 0.0
    image_format: str = "png"
    image_size: tuple[int, int] = (64, 64)
    seed: int | None = None
    tasks_per_size: int = 5
    channel_required_for_background_removal: bool = True
    download_size: int | None = None
    range_requests: bool = False
    progress_notifications: str = "every_change"
    notification_loss_rate: float = 0.0
    notification_duplicate_rate: float = 0.0
    reorder_notifications: bool = False
    stamp_inputs: bool = False
    rate_limit: float | None = None
    rate_burst: float | None = None

    def __post_init__(self) -> None:
        if self.access_token_lifetime <= 0 or self.refresh_token_lifetime <= 0:
            raise ValueError("token lifetimes must be positive")
        low, high = self.duration_range
        if low < 0 or high < low:
            raise ValueError(f"task_duration must be >= 0 (and low <= high), not {self.task_duration!r}")
        if not 0.0 <= self.task_failure_rate <= 1.0:
            raise ValueError(f"task_failure_rate must be in [0, 1], not {self.task_failure_rate!r}")
        if self.progress_notifications not in ("every_change", "on_completion"):
            raise ValueError("progress_notifications must be 'every_change' or 'on_completion'")
        for rate in (self.notification_loss_rate, self.notification_duplicate_rate):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"notification fault rates must be in [0, 1], not {rate!r}")
        if self.read_after_write_lag < 0:
            raise ValueError("read_after_write_lag must be >= 0")
        low, high = self.latency_range
        if low < 0 or high < low:
            raise ValueError(f"start_latency must be >= 0 (and low <= high), not {self.start_latency!r}")
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', not {self.image_format!r}")
        width, height = self.image_size
        if not (2 <= width <= 65535 and 2 <= height <= 65535):
            raise ValueError(f"image_size must be between 2 and 65535 pixels, not {self.image_size!r}")
        if self.rate_limit is not None and not 0 < self.rate_limit < math.inf:
            raise ValueError(f"rate_limit must be a positive number, not {self.rate_limit!r}")
        if self.rate_burst is not None and not 1 <= self.rate_burst < math.inf:
            raise ValueError(f"rate_burst must be >= 1, not {self.rate_burst!r}")
        if self.tasks_per_size < 1:
            raise ValueError("tasks_per_size must be >= 1")
        if self.download_size is not None:
            if self.image_format != "png":
                raise ValueError("download_size needs image_format='png'")
            # a solid image's compressed size varies by a few bytes with its colour: keep a margin
            minimum = len(png_bytes(width, height)) + 64
            if self.download_size < minimum:
                raise ValueError(
                    f"download_size must be at least {minimum} bytes for a {width}x{height} image, "
                    f"not {self.download_size!r}"
                )

    @property
    def latency_range(self) -> tuple[float, float]:
        """``start_latency`` as a (low, high) range of seconds."""
        return _range(self.start_latency)

    @property
    def duration_range(self) -> tuple[float, float]:
        """``task_duration`` as a (low, high) range of seconds."""
        return _range(self.task_duration)


def _range(value: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, tuple):
        low, high = value
        return float(low), float(high)
    return float(value), float(value)
