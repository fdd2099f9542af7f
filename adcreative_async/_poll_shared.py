"""Shared listings: one ``CheckApplicationAllProgresses`` answer serving the ticks of several users'
pollers of one feature (see :mod:`._polling`'s module doc for the rule and its pacing).

:class:`SharedListings` is a part of :class:`~adcreative_async._polling.PollScheduler` (its base class),
kept apart because it is one responsibility: deciding when a shared tick is cheaper than the users' own
polls, sending it (single flight per feature), and handing each user's part of it to its poller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    AdCreativeError,
    APIConnectionError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from ._poll_state import APPLICATION_SCOPE, _UserPoller

if TYPE_CHECKING:
    from ._clock import Clock
    from ._config import PollPolicy
    from ._listing import ProgressListing
    from ._poll_state import UserKey, _ListingReads, _TokenBucket

__all__ = ["REQUEST_COST_IN_ITEMS", "SHARED_MIN_SAVING", "SHARED_RELIST_AFTER", "SharedListings"]

logger = logging.getLogger("adcreative_async.polling")

#: Client CPU of one progress request, in units of "one more process in a listing" (its bytes read and
#: decoded). Measured by ``python -m benchmarks.polling`` (its "filtered-polling rule" line): a filtered
#: request per awaited process beats one unfiltered listing when
#: ``(awaited - 1) * REQUEST_COST_IN_ITEMS < listed - awaited``.
REQUEST_COST_IN_ITEMS = 140
#: When the application's listing was found dearer than separate user listings, it is measured again
#: after this many seconds (of the client's clock).
SHARED_RELIST_AFTER = 60.0
#: A shared listing is used when the users' own polls would cost at least this many times as much: one
#: large answer per tick, so a small saving is not worth it (measured when a listing was decoded in one
#: piece, before it was read as a stream: 10,000 waits over 10 users, 1.1x cheaper shared, loop lag p99
#: 32 -> 80 ms; not measured again since).
SHARED_MIN_SAVING = 1.5


class SharedListings:
    """The shared-listing part of the poll scheduler (a base class of it: see the module doc)."""

    if TYPE_CHECKING:  # provided by PollScheduler
        policy: PollPolicy
        _clock: Clock
        _pollers: dict[UserKey, _UserPoller]
        _bucket: _TokenBucket
        _reads: _ListingReads
        _limiter: anyio.CapacityLimiter | None
        _shared_flight: dict[str, anyio.Event]
        _app_listed: dict[str, tuple[int, float]]
        _no_shared: set[str]

        def _count_request(self, poller: _UserPoller) -> None: ...
        def _after_error(self, poller: _UserPoller, error: AdCreativeError) -> None: ...
        def _pushed(self, poller: _UserPoller, now: float) -> bool: ...
        def _paced(self, poller: _UserPoller, delay: float, now: float) -> float: ...
        async def _take_answer(
            self,
            poller: _UserPoller,
            listing: ProgressListing,
            awaited: list[str],
            sent_at: float,
            *,
            asked_by_id: bool,
            indices: Iterable[int] | None = None,
        ) -> tuple[set[str], float]: ...

    def _peers(self, poller: _UserPoller) -> list[_UserPoller]:
        """The user pollers of ``poller``'s feature that one application listing would serve now."""
        feature = poller.key[0]
        return [
            p
            for p in self._pollers.values()
            if p.key[0] == feature and p.key[1] != APPLICATION_SCOPE and p.blocked
        ]

    def _share(self, poller: _UserPoller, now: float) -> list[_UserPoller] | None:
        """The pollers a shared tick would serve, or None when ``poller`` polls alone: one user only,
        shared listings off or refused, or the application's listing dearer than the users' own (see
        the module doc)."""
        feature = poller.key[0]
        if not self.policy.share_listings or poller.key[1] == APPLICATION_SCOPE or feature in self._no_shared:
            return None
        if poller.resource.feature.is_assumed("application_progress_route"):
            return None  # an application listing the docs do not show: never sent unasked
        peers = self._peers(poller)
        if len(peers) < 2:
            return None
        measured = self._app_listed.get(feature)
        if measured is None or now - measured[1] >= SHARED_RELIST_AFTER:
            return peers  # (re-)measure it
        shared = REQUEST_COST_IN_ITEMS + measured[0]
        return peers if shared * SHARED_MIN_SAVING <= _separate_cost(peers) else None

    async def _poll_shared(self, poller: _UserPoller) -> bool:
        """One application listing for the ticks of every awaited user of ``poller``'s feature (single
        flight: a poller due while one is in flight waits for it). False when ``poller`` polls alone."""
        feature = poller.key[0]
        flight = self._shared_flight.get(feature)
        if flight is not None:
            await flight.wait()
            return True
        peers = self._share(poller, self._clock.monotonic())
        if peers is None:
            return False
        flight = self._shared_flight[feature] = anyio.Event()
        try:
            return await self._shared_tick(poller, peers)
        finally:
            del self._shared_flight[feature]
            flight.set()

    async def _shared_tick(self, poller: _UserPoller, peers: list[_UserPoller]) -> bool:
        feature = poller.key[0]
        # The processes each peer follows when the listing is asked for: their elements are kept (the
        # rest is counted per peer's user and dropped as it is read).
        follower: dict[str, int] = {}
        for n, peer in enumerate(peers):
            follower.update(dict.fromkeys(peer.followed(), n))
        sent_at = self._clock.monotonic()
        assert self._limiter is not None
        async with self._limiter:
            try:
                await self._bucket.acquire()
                self._count_request(poller)
                listing = await poller.resource._listing(None, follower, [peer.key[1] for peer in peers])
            except AdCreativeError as exc:
                if _is_transient(exc):
                    for peer in peers:
                        peer.ticks += 1
                        self._after_error(peer, exc)
                    return True
                # the application's listing is refused (not allowed, not routed): users poll alone
                logger.info("shared listing of %s refused (%s): polling each user", feature, exc)
                self._no_shared.add(feature)
                return False
        now = self._clock.monotonic()
        self._app_listed[feature] = (len(listing), now)
        # The kept elements each peer follows (by id).
        mine: list[list[int]] = [[] for _ in peers]
        for index, listed in enumerate(listing.ids):
            follows = follower.get(listed.image_render_process_id.lower())
            if follows is not None:
                mine[follows].append(index)
        # What the users' own polls would cost a tick, against the shared listing's: the shared tick
        # comes that many times as often, so that it costs what they would have (users whose pushes
        # flow poll only to reconcile: they add nothing to the pace).
        for peer in peers:
            peer.listed = listing.users.get(peer.key[1], 0)
        counts = [len(peer.awaited()) for peer in peers]  # once for the share and the floor
        paced = [(peer.listed, counts[n]) for n, peer in enumerate(peers) if not self._pushed(peer, now)]
        share = _cost(paced) / (REQUEST_COST_IN_ITEMS + len(listing))
        # a large listing: polled more slowly (read for every peer's awaited processes)
        floor = self._reads.floor(len(listing), sum(counts), self.policy, now)
        for n, peer in enumerate(peers):
            peer.ticks += 1
            peer.last_error = None
            # missing from the listing, of its awaited processes: those it was read for (one awaited
            # since then is looked for in the next tick's)
            awaited = [pid for pid in peer.awaited() if follower.get(pid) == n]
            changed, now = await self._take_answer(
                peer, listing, awaited, sent_at, asked_by_id=False, indices=mine[n]
            )
            delay = self._shared_delay(peer, changed, now, share)
            delay = max(delay, peer.paced_from(sent_at, floor, now))
            due = now + self._paced(peer, delay, now)
            if due < peer.next_due and peer.wake_scope is not None and peer is not poller:
                peer.wake_scope.cancel()  # asleep until a later tick of its own: it comes due sooner
            peer.next_due = due
            peer.wake_changed(changed)
        return True

    def _shared_delay(self, poller: _UserPoller, changed: set[str], now: float, share: float) -> float:
        """The delay of a poll that serves several users' ticks: ``share`` times shorter than the users'
        own (floored at ``min_interval``), while the backoff advances at their own pace only (a tick of
        their own is due), and restarts when something changed."""
        if changed:
            poller.own_due = now  # back to fast polls now
        if now >= poller.own_due:
            poller.own_delay = poller.next_delay(now)
            poller.own_due = now + poller.own_delay
        return max(self.policy.min_interval, poller.own_delay / max(1.0, share))


def _separate_cost(pollers: Iterable[_UserPoller]) -> int:
    """What one tick of these users' own polls costs, in items (see :data:`REQUEST_COST_IN_ITEMS`): a
    listing each, or one request per awaited process, whichever is cheaper."""
    return _cost((p.listed, len(p.awaited())) for p in pollers)


def _cost(pollers: Iterable[tuple[int, int]]) -> int:
    """:func:`_separate_cost` of users given as (elements listed, processes awaited)."""
    return sum(
        min(REQUEST_COST_IN_ITEMS + listed, REQUEST_COST_IN_ITEMS * max(1, awaited))
        for listed, awaited in pollers
    )


def _is_transient(error: AdCreativeError) -> bool:
    return isinstance(error, (ServerError, RateLimitError, APIConnectionError, UnexpectedResponseError))
