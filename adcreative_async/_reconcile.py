"""No duplicate paid renders: what the client does when a start or edit call may or may not have reached
the server.

A start call is sent again only when it surely never left (connection refused). After an ambiguous
failure — the connection dropped after sending, the read timed out, a gateway answered 502/503/504 — the
render may exist. The client then reconciles: it knows the process ids it has already seen for that
(feature, user) (a listing taken before its first start call for that user, its own start answers, and
every listing since), waits until its other start calls for that user are answered, reads the user's
processes, and adopts a process only if exactly one new process matching the request appeared (a
read-after-write lag gets a grace period). Otherwise it raises :class:`RenderMayExistError` with what is
known, and never sends the call again: whether to retry is the caller's decision.

Strong mode (``AdCreativeClient(unique_user_per_submission=True)``): every start call gets a fresh user
id as its identity, so that a lost answer is found — or known absent — without doubt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ._clock import Clock
from ._config import RetryPolicy
from ._errors import AdCreativeError, APIConnectionError, APIError, ServerError, UnexpectedResponseError
from ._models import TERMINAL_STATES, Progress
from ._telemetry import records_reconciliation

if TYPE_CHECKING:
    from .resources._base import RenderResource

__all__ = ["RenderMayExistError", "SubmissionLedger", "is_ambiguous"]

logger = logging.getLogger("adcreative_async.reconcile")

#: Statuses after which a start call may still have made a render: the API's own 500 (it may fail after
#: creating the process) and a gateway's 502/503/504 (the API behind it may have served the call).
AMBIGUOUS_STATUSES = frozenset({500, 502, 503, 504})
#: Process ids remembered per (feature, user); beyond it the oldest are forgotten.
MAX_KNOWN_PER_USER = 50_000


class RenderMayExistError(AdCreativeError):
    """A start or edit call failed in a way that leaves open whether the render exists (and costs).

    The SDK did not send it again. Check ``candidates`` (new processes of the user that match the request)
    or list the user's processes before deciding to start again.

    Attributes:
        feature, user_id: where the render would be.
        candidates: the new processes that match (0: none appeared within the grace period; 2 or more:
            which one is yours cannot be told).
        cause: what failed (the SDK's error; never an aiohttp exception).
    """

    def __init__(
        self,
        message: str,
        *,
        feature: str,
        user_id: str,
        candidates: Iterable[Progress] = (),
        cause: AdCreativeError | None = None,
    ) -> None:
        super().__init__(message)
        self.feature = feature
        self.user_id = user_id
        self.candidates = tuple(candidates)
        self.cause = cause


def is_ambiguous(error: AdCreativeError) -> bool:
    """Whether a failed call may still have reached the server (and made a render).

    A connection that failed after sending, a read timeout, a gateway's 502/503/504, and a success whose
    body could not be read (the render exists; its id was lost) all qualify.
    """
    if isinstance(error, APIConnectionError):
        return error.sent is not False
    if isinstance(error, UnexpectedResponseError):
        return error.status < 300
    return isinstance(error, ServerError) and error.status in AMBIGUOUS_STATUSES


@dataclass
class _UserLedger:
    known: dict[str, int] = field(default_factory=dict)  # process id -> when first seen; oldest first
    answered: dict[str, None] = field(default_factory=dict)  # processes this client's calls returned
    seen: int = 0  # a counter: the "when" of ``known``
    baseline: bool = False
    in_flight: int = 0
    idle: anyio.Event | None = None

    def new_since(self, mark: int, process_id: str) -> bool:
        """Whether ``process_id`` was unknown at ``mark`` and is not one of this client's answers."""
        pid = process_id.lower()
        when = self.known.get(pid)
        return (when is None or when > mark) and pid not in self.answered


class SubmissionLedger:
    """Per client: the process ids seen for each (feature, user), and the start calls in flight."""

    def __init__(self, clock: Clock, policy: RetryPolicy) -> None:
        self._clock = clock
        self._grace = policy.reconcile_grace
        self._interval = policy.reconcile_interval
        self._users: dict[tuple[str, str], _UserLedger] = {}

    def _ledger(self, feature: str, user_id: str) -> _UserLedger:
        return self._users.setdefault((feature, user_id.lower()), _UserLedger())

    def saw(self, feature: str, user_id: str, process_ids: Iterable[str], *, answered: bool = False) -> None:
        """Record processes seen in a listing, or (``answered``) returned by this client's own calls."""
        ledger = self._ledger(feature, user_id)
        known = ledger.known
        for process_id in process_ids:
            pid = process_id.lower()
            if pid not in known:
                ledger.seen += 1
                known[pid] = ledger.seen
            if answered:
                ledger.answered[pid] = None
        for table in (known, ledger.answered):
            while len(table) > MAX_KNOWN_PER_USER:  # forget the oldest: a reconcile is only more cautious
                del table[next(iter(table))]

    def mark(self, feature: str, user_id: str) -> int:
        """Where the ledger of (feature, user) stands: taken just before a start call is sent."""
        return self._ledger(feature, user_id).seen

    def listed(self, feature: str, user_id: str, process_ids: Iterable[str]) -> None:
        """Record a full listing of the user's processes: it also serves as the baseline."""
        self.saw(feature, user_id, process_ids)
        self._ledger(feature, user_id).baseline = True

    def fresh_user(self, feature: str, user_id: str) -> None:
        """A user id made up for one start call: it has no processes yet (no listing needed)."""
        self._ledger(feature, user_id).baseline = True

    async def before_start(self, resource: RenderResource, user_id: str) -> None:
        """Before the first start call for a (feature, user): list what exists already (one request)."""
        ledger = self._ledger(resource.feature.name, user_id)
        if ledger.baseline:
            return
        try:
            await resource.user_progress(user_id)  # a full listing: recorded through listed()
        except AdCreativeError as exc:  # no baseline: a later reconcile is only more cautious
            logger.info("no baseline listing for %s/%s: %s", resource.feature.name, user_id, exc)

    def started(self, feature: str, user_id: str) -> None:
        """A start call is in flight."""
        self._ledger(feature, user_id).in_flight += 1

    def finished(self, feature: str, user_id: str) -> None:
        """A start call was answered (or failed)."""
        ledger = self._ledger(feature, user_id)
        ledger.in_flight -= 1
        if ledger.in_flight <= 0 and ledger.idle is not None:
            ledger.idle.set()
            ledger.idle = None

    async def _quiet(self, ledger: _UserLedger) -> None:
        """Wait until no other start call for this user is in flight (their processes become known)."""
        while ledger.in_flight > 0:
            if ledger.idle is None:
                ledger.idle = anyio.Event()
            await ledger.idle.wait()

    async def _listing(
        self,
        resource: RenderResource,
        user_id: str,
        deadline: float,
        unreadable: Callable[[AdCreativeError], RenderMayExistError],
    ) -> list[Progress]:
        """The user's processes; a listing can fail too: it is tried again until ``deadline``, then the
        error ``unreadable`` makes of the last failure is raised."""
        while True:
            try:
                return await resource.user_progress(user_id)
            except AdCreativeError as exc:
                if self._clock.monotonic() >= deadline:
                    raise unreadable(exc) from None
                await self._clock.sleep(self._interval)

    @records_reconciliation("start")
    async def reconcile_start(
        self,
        resource: RenderResource,
        user_id: str,
        matches: Callable[[Progress], bool],
        cause: AdCreativeError,
        mark: int,
    ) -> Progress:
        """After an ambiguous start call sent at ``mark``: the one new matching process (not seen before
        it was sent, not another call's answer), or RenderMayExistError."""
        feature = resource.feature.name
        ledger = self._ledger(feature, user_id)
        await self._quiet(ledger)
        deadline = self._clock.monotonic() + self._grace
        while True:
            listing = await self._listing(
                resource,
                user_id,
                deadline,
                lambda exc: RenderMayExistError(
                    f"a {feature} start call failed ({cause}) and the user's processes could not be read "
                    f"({exc}): the render may exist",
                    feature=feature,
                    user_id=user_id,
                    cause=cause,
                ),
            )
            new = [p for p in listing if ledger.new_since(mark, p.image_render_process_id) and matches(p)]
            if len(new) == 1 and ledger.baseline:
                logger.warning("adopted process %s after an ambiguous start call", new[0].process_id)
                return new[0]
            if len(new) > 1 or (new and not ledger.baseline):
                raise RenderMayExistError(
                    f"a {feature} start call failed ({cause}); {len(new)} new matching processes of user "
                    f"{user_id} exist, and which one it made cannot be told: check them before starting "
                    "again",
                    feature=feature,
                    user_id=user_id,
                    candidates=new,
                    cause=cause,
                )
            if self._clock.monotonic() >= deadline:
                raise RenderMayExistError(
                    f"a {feature} start call failed ({cause}); no new process of user {user_id} appeared "
                    f"within {self._grace:.0f} s, so it was probably not created (not sent again: "
                    "starting again is your decision)",
                    feature=feature,
                    user_id=user_id,
                    cause=cause,
                )
            await self._clock.sleep(self._interval)

    @records_reconciliation("edit")
    async def reconcile_edit(
        self, resource: RenderResource, user_id: str, task_ids: Iterable[str], cause: AdCreativeError
    ) -> Progress:
        """After an ambiguous edit call: the re-opened process if its edited tasks went back to running,
        else RenderMayExistError (the edit is never sent again)."""
        wanted = {t.lower() for t in task_ids}
        feature = resource.feature.name
        deadline = self._clock.monotonic() + self._grace
        while True:
            listing = await self._listing(
                resource,
                user_id,
                deadline,
                lambda exc: RenderMayExistError(
                    f"an edit failed ({cause}) and the user's processes could not be read ({exc}): "
                    "the edit may have been applied",
                    feature=feature,
                    user_id=user_id,
                    cause=cause,
                ),
            )
            for progress in listing:
                states = {t.lower(): s for t, s in progress.tasks.items()}
                if wanted & states.keys() and any(
                    states[t] not in TERMINAL_STATES for t in wanted & states.keys()
                ):
                    logger.warning("adopted process %s after an ambiguous edit", progress.process_id)
                    return progress
            if self._clock.monotonic() >= deadline:
                raise RenderMayExistError(
                    f"an edit failed ({cause}); its tasks did not re-open within {self._grace:.0f} s, "
                    "so it was probably not applied (not sent again: editing again is your decision)",
                    feature=feature,
                    user_id=user_id,
                    cause=cause,
                )
            await self._clock.sleep(self._interval)


def reconcilable(error: AdCreativeError) -> bool:
    """Whether an error of a start call calls for reconciliation (vs. being raised as is)."""
    return isinstance(error, (APIConnectionError, APIError)) and is_ambiguous(error)
