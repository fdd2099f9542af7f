"""Fencing of a worker's claims: each claim's epoch and local lease deadline (:class:`_Hold`), the lease
guard that stops a start call's upload once the lease (less a margin) has run out, and the error of an
item lost to another worker. Why it is safe, and what it cannot cover: "Fencing" in
:mod:`adcreative_async.ledger._base`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import AdCreativeError, UploadAbortedError

__all__ = ["SEND_MARGIN", "SEND_MARGIN_SHARE", "FencedDriver"]

#: assumed (nothing bounds it: a network can hold bytes for any time): the last bytes of a start call's
#: request, written after its last send-guard check passed (the rest of a chunk, the closing boundary,
#: what the kernel's socket buffer holds), reach the server within this many seconds. A worker's lease
#: guard refuses to send once its local lease deadline minus this margin has passed, and a takeover
#: waits this much (and ``reconcile_grace``) past the lapse before it may conclude that the old owner's
#: call made nothing (see "Fencing" in :mod:`adcreative_async.ledger._base`).
SEND_MARGIN = 5.0
#: The margin is at most this share of the lease: a lease shorter than ``SEND_MARGIN / SEND_MARGIN_SHARE``
#: (25 s) shortens it with it. Short leases are for local setups (an emulator on loopback, tests), where
#: a request's bytes arrive in milliseconds; a worker could not send at all with a margin near its lease.
SEND_MARGIN_SHARE = 0.2


@dataclass
class _Hold:
    """This worker's claim on an item: its fencing epoch, and its local lease deadline (client clock:
    the reading taken before the write that set or extended the lease, plus the lease)."""

    epoch: int
    deadline: float
    claimed_at: float  # the client clock when the claim returned (for a takeover's grace)


class FencedDriver(Protocol):
    """What the lease guard reads of the run's driver (``ledger._run.LedgerDriver``)."""

    _holds: dict[str, _Hold]
    _unsent: set[str]
    _margin: float
    _client: Any


class _LeaseGuard:
    """A send guard (see :func:`adcreative_async._files.send_guard`) that stops a start call's upload
    once this worker's lease on the item, less the margin, has run out: a worker paused mid-upload and
    resumed after its lease lapsed never completes the request."""

    def __init__(self, driver: FencedDriver, key: str) -> None:
        self._driver = driver
        self._key = key
        self.refused = False

    def check(self) -> None:
        """Refuse (UploadAbortedError) unless the lease holds for the margin still."""
        driver = self._driver
        hold = driver._holds.get(self._key)
        if hold is None or driver._client.clock.monotonic() >= hold.deadline - driver._margin:
            self.refused = True
            raise UploadAbortedError(
                f"the claim on item {self._key} ran out (less the {driver._margin:g} s margin) before its "
                "start call was sent: another worker may hold it now"
            )

    def begin(self, param: str) -> None:
        """See :class:`adcreative_async._files.SendGuard`."""
        self.check()

    def chunk(self, param: str, data: bytes) -> None:
        """See :class:`adcreative_async._files.SendGuard`."""
        self.check()

    def end(self, param: str) -> None:
        """See :class:`adcreative_async._files.SendGuard`: past it, the call may have been made."""
        self.check()
        self._driver._unsent.discard(self._key)


class _LostClaim(AdCreativeError):
    """This worker's claim on an item lapsed before its intent: another worker may hold it now."""
