"""Deadlines of calls: ``Timeout.total`` across every attempt of a call (and the token request it
needs), the extra time a start call's files get, and the typed error of each timeout.

The transport asks :func:`call_deadline` once per call, sends each attempt with what is left, and
raises :func:`timeout_error` when a timeout runs out. Times are on the event loop's clock
(``anyio.current_time()``), as aiohttp's own timeouts are.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

from ._config import MIN_UPLOAD_RATE, Timeout
from ._errors import APITimeoutError

__all__ = ["CALL_DEADLINE", "call_deadline", "timeout_error", "upload_allowance"]

#: The deadline (loop clock) of the call being sent in this context: a request made on its behalf (the
#: token request an attempt needs) ends by it too.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("adcreative_call_deadline", default=None)

_API_PREFIX = "/api/v1/"


def upload_allowance(sizes: Iterable[int | None], max_upload_size: int | None) -> float | None:
    """Seconds a start call's default deadline grows by for files of these sizes (at
    :data:`~adcreative_async._config.MIN_UPLOAD_RATE`); a file of unknown size counts as
    ``max_upload_size``; None when that is unbounded too (then the call has no deadline)."""
    total = 0
    for size in sizes:
        if size is None:
            size = max_upload_size
            if size is None:
                return None
        total += size
    return total / MIN_UPLOAD_RATE


def call_deadline(
    limits: Timeout,
    now: float,
    *,
    per_call: bool,
    upload_sizes: list[int | None] | None,
    max_upload_size: int | None,
) -> tuple[float | None, bool]:
    """When a call must be over, and whether that is plainly ``limits.total`` from ``now`` (the
    client's timeouts, no enclosing call, no files: its first attempt can use the session's timeouts).

    Args:
        limits: the call's timeouts.
        now: the loop clock now.
        per_call: whether ``limits`` were given for this call (then no upload allowance is added).
        upload_sizes: the sizes of the call's files (None: no form).
        max_upload_size: what a file of unknown size counts as.
    """
    outer = CALL_DEADLINE.get()
    total = limits.total
    plain = outer is None and not per_call
    if total is not None and not per_call and upload_sizes is not None:
        allowance = upload_allowance(upload_sizes, max_upload_size)
        total = None if allowance is None else total + allowance
        plain = False
    own = None if total is None else now + total
    if outer is None:
        return own, plain
    return (outer if own is None else min(own, outer)), False


def _seconds(value: float | None) -> str:
    return "the time allowed" if value is None else f"{value:g} s"


def timeout_error(
    limit: str, method: str, route: str, limits: Timeout | None, *, detail: str = "", sent: bool | None
) -> APITimeoutError:
    """The SDK's error for the ``limit`` (``"connect"``, ``"read"`` or ``"total"``) of ``limits`` running
    out on ``method route``; ``detail`` names the underlying exception, if any."""
    what = f"{method} {_API_PREFIX}{route}"
    seconds = getattr(limits, limit, None) if limits is not None else None
    cause = f" ({detail})" if detail else ""
    if limit == "connect":
        message = f"connect timeout on {what}{cause}"
    elif limit == "read":
        message = f"read timeout on {what}: no data for {_seconds(seconds)}{cause}"
    else:
        message = (
            f"{what} got no complete answer within the call's total timeout ({_seconds(seconds)}, "
            "retries included): the API did not answer in time. Pass timeout= (seconds, or "
            "Timeout(total=...)) to the call or the client to allow longer"
        )
    return APITimeoutError(message, method=method, path=route, sent=sent, limit=limit, seconds=seconds)
