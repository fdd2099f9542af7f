"""Awaited processes missing from a listing, in the poll scheduler: the grace for read-after-write lag,
asking by id, and listings that omit finished processes (see :mod:`._polling`'s module doc).

:class:`MissingLookups` is a part of :class:`~adcreative_async._polling.PollScheduler` (one of its base
classes), kept apart because it is one responsibility: what becomes of an awaited process that a listing
does not show (looked for later, asked for by id, presumed finished, or gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from ._errors import AdCreativeError
from ._poll_state import _UserPoller

if TYPE_CHECKING:
    from ._clock import Clock
    from ._config import PollPolicy
    from ._models import Progress
    from ._poll_state import _TokenBucket

__all__ = ["OMISSION_EVIDENCE", "MissingLookups"]

#: A (feature, user) poller's listing is taken to omit finished processes once this many awaited processes
#: were missing from it and then found finished when asked for by id. assumed: the docs allow a listing
#: to leave finished processes out but do not say that it does so consistently; one observation is taken
#: as evidence that it always does. Only waiters that download right after rely on it (a process that
#: leaves the listing is then presumed finished, and downloaded), and a refused download still asks for
#: the process by id: a wrong presumption costs that request, never a wrong outcome.
OMISSION_EVIDENCE = 1


class MissingLookups:
    """The missing-process part of the poll scheduler (a base class of it: see the module doc)."""

    if TYPE_CHECKING:  # provided by PollScheduler
        policy: PollPolicy
        _clock: Clock
        _bucket: _TokenBucket
        _limiter: anyio.CapacityLimiter | None

        def _count_request(self, poller: _UserPoller) -> None: ...
        def _after_error(self, poller: _UserPoller, error: AdCreativeError) -> None: ...
        def _store(self, poller: _UserPoller, items: Iterable[Progress], sent_at: float) -> set[str]: ...
        @staticmethod
        def _owner(poller: _UserPoller, process_id: str) -> str: ...

    async def _look_for_missing(
        self, poller: _UserPoller, missing: list[str], sent_at: float, *, asked_by_id: bool
    ) -> set[str]:
        """Awaited processes absent from an answer.

        A process just submitted may lag behind the listing: it gets the grace period. A process seen
        before (finished ones may leave the listing) or past its grace is asked for by id; if even that
        finds nothing after the grace, it is gone (its waiters get a NotFoundError).

        A listing may omit finished processes (the docs allow it): then every finished process costs
        one request by id, per-item work like its download, not polling. So the first lookup of a
        process in its cycle is not held to the poll rate (:attr:`PollPolicy.max_requests_per_second`:
        20/s would cap a bulk run at 20 items a second, the stall of issue 23), only to the limit on
        poll requests in flight; lookups run concurrently, and a process asked for again in the same
        cycle (it is still missing) waits for the rate limit like any poll.

        Once the listing is known to omit finished processes (:data:`OMISSION_EVIDENCE`: while it is not,
        one of the processes that could be presumed is asked for first), a process whose waiters all
        download right after is not asked for: it is marked vanished and its waiters woken (see
        :meth:`vanished`).
        """
        now = self._clock.monotonic()
        grace = self.policy.not_found_grace
        feature = poller.key[0]
        user = poller.user
        changed: set[str] = set()
        ask: list[str] = []
        for pid in missing:
            interest = poller.interest[pid]
            if interest.missing_since is None:
                interest.missing_since = sent_at
            in_grace = now - interest.started < grace
            if in_grace and pid not in poller.cache:
                continue  # read-after-write lag: the listing will catch up
            if asked_by_id:
                if not in_grace:
                    poller.gone[pid] = _not_found(feature, user, pid)
                    changed.add(pid)
                continue
            ask.append(pid)
        presumable = [pid for pid in ask if poller.presumable(pid)]
        if presumable and poller.omissions < OMISSION_EVIDENCE:
            # no evidence yet: one of them is asked for first; if it is finished, the others are presumed
            changed |= await self._ask_by_id(poller, presumable[:1], sent_at, now)
            ask.remove(presumable[0])
        if presumable and poller.omissions >= OMISSION_EVIDENCE:
            for pid in presumable:
                vanishing = poller.interest.get(pid)
                if vanishing is not None and vanishing.watches and not vanishing.vanished:
                    vanishing.vanished = True
                    changed.add(pid)
            taken = set(presumable)
            ask = [pid for pid in ask if pid not in taken]
        if ask:
            changed |= await self._ask_by_id(poller, ask, sent_at, now)
        return changed

    async def _ask_by_id(self, poller: _UserPoller, ask: list[str], sent_at: float, now: float) -> set[str]:
        """Ask for each of ``ask`` (missing from a listing) by id, concurrently (see
        :meth:`_look_for_missing`); the ids that changed (or are gone)."""
        grace = self.policy.not_found_grace
        feature = poller.key[0]
        user = poller.user
        changed: set[str] = set()
        found: dict[str, list[Progress]] = {}
        errors: list[AdCreativeError] = []
        assert self._limiter is not None
        limiter = self._limiter

        async def look_up(pid: str, first: bool) -> None:
            async with limiter:
                if errors:
                    return  # one failure ends this tick's lookups: the next tick asks again
                try:
                    if not first:
                        await self._bucket.acquire()
                    self._count_request(poller)
                    found[pid] = await poller.resource.user_progress(self._owner(poller, pid), pid)
                except AdCreativeError as exc:
                    errors.append(exc)

        async with anyio.create_task_group() as group:
            for pid in ask:
                interest = poller.interest[pid]
                first = interest.looked_up is None
                interest.looked_up = sent_at
                group.start_soon(look_up, pid, first)
        for pid in ask:
            answer = found.get(pid)
            if answer is None:
                continue  # not asked (an error ended the lookups)
            match = [p for p in answer if p.image_render_process_id.lower() == pid]
            if match:
                if match[0].is_complete:  # finished, yet missing from the listing: it omits finished ones
                    poller.omissions += 1
                changed |= self._store(poller, match, sent_at)
            elif (known := poller.interest.get(pid)) is not None and now - known.started >= grace:
                poller.gone[pid] = _not_found(feature, user, pid)
                changed.add(pid)
        if errors:
            self._after_error(poller, errors[0])
        return changed


def _not_found(feature: str, user: str, process_id: str) -> AdCreativeError:
    from ._errors import NotFoundError

    return NotFoundError(
        f"process {process_id} ({feature}) is not listed for its user, also when asked for by id, "
        "after the grace period: the server does not know it",
        status=404,
    )
