"""No duplicate paid renders, and never another call's render: what the client does when a start or
edit call may or may not have reached the server.

A start call is sent again only when it surely never left (connection refused, connect timeout); a
failure to obtain its access token is not a send (the token error is raised as is, ``before_send``).
After an ambiguous failure — the connection dropped after sending, the read timed out, a gateway answered
502/503/504, a 200 whose body could not be read — the render may exist. The call is never sent again;
the client reconciles, and **adopts a process only when it provably belongs to this call**:

- the client knows the process ids it has seen for each (feature, user): a listing taken before its
  first start call for that user (one listing, shared by concurrent first calls), its own answers, and
  every full listing since; a process first seen after a call was sent is *new* for that call;
- while a reconcile of (feature, user) is open, that user's new start (and edit) calls wait at a gate,
  so none is sent during the listing window; the reconcile waits until every call of that user already
  in flight is answered (it loops until quiet), and the ambiguous failures among them join it: they form
  one group, decided together;
- a process is adopted by a call only when it is the one new matching process for that call, no other
  member of its group could have made it, the client had a baseline listing when the call was sent, and
  no other client writes for that user: the user declared this client the only writer of its user ids
  (``AdCreativeClient(exclusive_user_ids=True)``), or the user id is this call's own (strong mode,
  ``unique_user_per_submission=True``, or :meth:`SubmissionLedger.exclusive_user`);
- every process a reconcile adopted or named is claimed: it is never offered to another reconcile.

Otherwise the call raises :class:`RenderMayExistError` saying only what is known: the candidates (new
matching processes that may be its render) and why none can be proven its own, or that no new process
appeared within the grace period (``RetryPolicy.reconcile_grace``; assumed longer than the listing's
read-after-write lag) — never that the render was "probably not created". Whether to start again is
the caller's decision.

An ambiguous edit re-opens an existing process: it is adopted when its edited tasks are seen running
again; otherwise the error says the edit may or may not have been applied (a re-render that already
finished leaves no trace in the listing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ._clock import Clock
from ._config import RetryPolicy
from ._errors import AdCreativeError, APIConnectionError, ServerError, UnexpectedResponseError
from ._models import TERMINAL_STATES, Progress

if TYPE_CHECKING:
    from .resources._base import RenderResource

__all__ = ["RenderMayExistError", "SubmissionLedger", "is_ambiguous"]

logger = logging.getLogger("adcreative_async.reconcile")

#: Statuses after which a start call may still have made a render: the API's own 500 (it may fail after
#: creating the process) and a gateway's 502/503/504 (the API behind it may have served the call).
AMBIGUOUS_STATUSES = frozenset({500, 502, 503, 504})
#: Process ids remembered per (feature, user); beyond it the oldest are forgotten, and the next start
#: call for that user lists its processes again first (a forgotten process would look new).
MAX_KNOWN_PER_USER = 50_000
#: Task ids of edits remembered per (feature, user): a process showing one is never a start's render.
MAX_EDITED_TASKS_PER_USER = 10_000


class RenderMayExistError(AdCreativeError):
    """A start or edit call failed in a way that leaves open whether the render exists (and costs).

    The SDK did not send it again, and adopted nothing it could not prove to be this call's. Check
    ``candidates`` (new processes of the user that match the request) or list the user's processes
    before deciding to start again.

    Attributes:
        feature, user_id: where the render would be.
        candidates: new matching processes, one of which may be this call's render; none of them is
            provably its own (the message says why). Empty: none appeared within the grace period,
            yet the render may still exist (the listing may lag, or omit finished processes).
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
    body could not be read (the render exists; its id was lost) all qualify. A failure to obtain the
    call's access token (``before_send``) never does: the call was not sent.
    """
    if error.before_send:
        return False
    if isinstance(error, APIConnectionError):
        return error.sent is not False
    if isinstance(error, UnexpectedResponseError):
        return error.status < 300
    return isinstance(error, ServerError) and error.status in AMBIGUOUS_STATUSES


@dataclass(eq=False)
class Submission:
    """One paid call of this client for a (feature, user), from the gate to its answer.

    Attributes:
        resource, user_id: the feature and user it is for.
        mark: where that ledger's record of seen processes stood when the call was sent.
        baseline: whether the ledger knew the user's processes (a listing) when the call was sent.
        matches: whether a listed process could be this start call's render; None for an edit.
        edited_task_ids: an edit's tasks.
    """

    resource: RenderResource
    user_id: str
    mark: int
    baseline: bool
    matches: Callable[[Progress], bool] | None
    edited_task_ids: tuple[str, ...] = ()
    cause: AdCreativeError | None = None
    group: _Group | None = None
    outcome: Progress | RenderMayExistError | None = None

    @property
    def feature(self) -> str:
        """The feature's name."""
        return self.resource.feature.name


@dataclass(eq=False)
class _Group:
    """Ambiguous start calls of one (feature, user) whose windows overlap: decided together."""

    resource: RenderResource
    user_id: str
    members: list[Submission] = field(default_factory=list)
    decided: anyio.Event = field(default_factory=anyio.Event)
    deadline: float | None = None  # set once every call of the user is answered
    listing: list[Progress] | None = None  # the last listing read


@dataclass(eq=False)
class _BaselineFlight:
    done: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False  # False when its leader was cancelled: a waiter leads the next one


@dataclass(eq=False)
class _UserLedger:
    key: tuple[str, str]
    known: dict[str, int] = field(default_factory=dict)  # process id -> when first seen; oldest first
    claimed: dict[str, None] = field(default_factory=dict)  # answered, adopted or named: never offered
    edited: dict[str, None] = field(default_factory=dict)  # task ids of this client's edits
    seen: int = 0  # a counter: the "when" of ``known``
    forgot: int = 0  # ``seen`` when processes were last forgotten (MAX_KNOWN_PER_USER)
    baseline: bool = False
    exclusive: bool = False  # no other client writes for this user
    fresh: bool = False  # a user id made up for one start call: forgotten once it is settled
    flight: _BaselineFlight | None = None
    in_flight: int = 0
    idle: anyio.Event | None = None
    group: _Group | None = None  # an undecided reconcile: the gate is closed while it is set
    driver: anyio.Lock = field(default_factory=anyio.Lock)

    def new_since(self, mark: int, process_id: str) -> bool:
        """Whether ``process_id`` was unknown at ``mark`` and belongs to no call or reconcile."""
        pid = process_id.lower()
        when = self.known.get(pid)
        return (when is None or when > mark) and pid not in self.claimed

    def edited_by_this_client(self, progress: Progress) -> bool:
        """Whether the process shows a task this client edited (an old process, re-opened)."""
        return any(task.lower() in self.edited for task in progress.tasks)


class SubmissionLedger:
    """Per client: the process ids seen for each (feature, user), the calls in flight, and the reconcile
    groups (see the module docstring for the rule).

    Args:
        clock: the client's clock.
        policy: ``reconcile_grace`` and ``reconcile_interval`` come from it.
        exclusive: the user declared this client the only writer of its user ids.
        fresh_users: every start call uses a made-up user id (strong mode): a listing of any other
            user is of no use to a reconcile, and is not recorded.
    """

    def __init__(
        self, clock: Clock, policy: RetryPolicy, *, exclusive: bool = False, fresh_users: bool = False
    ) -> None:
        self._clock = clock
        self._grace = policy.reconcile_grace
        self._interval = policy.reconcile_interval
        self._exclusive = exclusive
        self._fresh_users = fresh_users
        self._users: dict[tuple[str, str], _UserLedger] = {}

    def _ledger(self, feature: str, user_id: str) -> _UserLedger:
        key = (feature, user_id.lower())
        ledger = self._users.get(key)
        if ledger is None:
            ledger = self._users[key] = _UserLedger(key)
        return ledger

    # ------------------------------------------------------------------------------------ records

    def saw(self, feature: str, user_id: str, process_ids: Iterable[str], *, answered: bool = False) -> None:
        """Record processes seen in a listing, or (``answered``) returned by this client's own calls."""
        ledger = self._users.get((feature, user_id.lower()))
        if ledger is None:
            return  # no call of this client for that user yet: nothing to tell apart
        _record(ledger, process_ids, claim=answered)

    def listed(self, feature: str, user_id: str, process_ids: Iterable[str]) -> None:
        """Record a full listing of the user's processes: it also serves as the baseline."""
        ledger = self._users.get((feature, user_id.lower()))
        if ledger is None:
            if self._fresh_users:
                return  # a made-up user already settled (and forgotten), or one no start call uses
            ledger = self._ledger(feature, user_id)
        _record(ledger, process_ids, claim=False)
        if len(ledger.known) < MAX_KNOWN_PER_USER:
            ledger.baseline = True

    def exclusive_user(self, feature: str, user_id: str, *, fresh: bool = False) -> None:
        """Declare ``user_id`` written by this client alone (for ``feature``): its reconciles may adopt.

        The hook for any source of that knowledge: strong mode's made-up user ids, a run ledger that
        derives one user id per item, a caller's own bookkeeping.

        Args:
            fresh: the user id was just made up: it has no processes yet (no listing needed).
        """
        ledger = self._ledger(feature, user_id)
        ledger.exclusive = True
        if fresh:
            ledger.fresh = ledger.baseline = True

    def fresh_user(self, feature: str, user_id: str) -> None:
        """A user id made up for one start call: this client alone writes it, and it has no processes."""
        self.exclusive_user(feature, user_id, fresh=True)

    # ------------------------------------------------------------------------------ a call's life

    async def before_start(self, resource: RenderResource, user_id: str) -> None:
        """Before the first start call for a (feature, user): list what exists already.

        One listing per (feature, user): concurrent first calls share it. If it fails, the calls go on
        without a baseline (their reconciles then adopt nothing); a later call tries again.
        """
        ledger = self._ledger(resource.feature.name, user_id)
        while not ledger.baseline:
            flight = ledger.flight
            if flight is not None:
                await flight.done.wait()
                if flight.finished:
                    return
                continue  # its leader was cancelled: lead the next one
            flight = ledger.flight = _BaselineFlight()
            try:
                await resource.user_progress(user_id)  # a full listing: recorded through listed()
                flight.finished = True
            except AdCreativeError as exc:  # no baseline: the reconciles of these calls adopt nothing
                flight.finished = True
                logger.info("no baseline listing for %s/%s: %s", resource.feature.name, user_id, exc)
            finally:
                ledger.flight = None
                flight.done.set()
            return

    async def admit(
        self,
        resource: RenderResource,
        user_id: str,
        matches: Callable[[Progress], bool] | None,
        edited_task_ids: Iterable[str] = (),
    ) -> Submission:
        """Pass the gate of (feature, user) and count the call as in flight: call just before sending.

        While a reconcile of that user is open, this waits until it is decided (helping to decide it
        if no one else is), so that no call is sent during its listing window.

        Args:
            matches: for a start call, whether a listed process could be its render; None for an edit.
            edited_task_ids: an edit's tasks (a process showing one is never a start's render).
        """
        feature = resource.feature.name
        ledger = self._ledger(feature, user_id)
        while ledger.group is not None:
            await self._decided(ledger, ledger.group)
        ledger.in_flight += 1
        edited = tuple(edited_task_ids)
        _bounded(ledger.edited, (t.lower() for t in edited), MAX_EDITED_TASKS_PER_USER)
        return Submission(resource, user_id, ledger.seen, ledger.baseline, matches, edited)

    def answered(self, call: Submission, progress: Progress) -> None:
        """The call returned ``progress``: its process is claimed (never another call's)."""
        ledger = self._ledger(call.feature, call.user_id)
        _record(ledger, [progress.image_render_process_id], claim=True)
        self._done(ledger)

    def failed(self, call: Submission, error: AdCreativeError | None) -> None:
        """The call failed (``error``) or was abandoned (None: cancelled while it may have been sent).

        A start call that may have reached the server joins the user's open reconcile group (opening
        one, which closes the gate); anything else made nothing.
        """
        ledger = self._ledger(call.feature, call.user_id)
        # an abandoned call of a made-up user: no later call can be confused with its render
        abandoned_alone = error is None and ledger.fresh
        if call.matches is not None and (error is None or is_ambiguous(error)) and not abandoned_alone:
            group = ledger.group
            if group is None:
                group = ledger.group = _Group(call.resource, call.user_id)
            call.cause = error
            call.group = group
            group.members.append(call)
        self._done(ledger)

    def _done(self, ledger: _UserLedger) -> None:
        ledger.in_flight -= 1
        if ledger.in_flight <= 0 and ledger.idle is not None:
            ledger.idle.set()
            ledger.idle = None
        self._forget_if_settled(ledger)

    def _forget_if_settled(self, ledger: _UserLedger) -> None:
        if ledger.fresh and ledger.in_flight <= 0 and ledger.group is None:
            self._users.pop(ledger.key, None)

    async def settle(self, call: Submission) -> Progress:
        """After :meth:`failed` with an ambiguous error: the process this call provably made.

        Raises:
            RenderMayExistError: what is known (the candidates, and why none is provably this call's).
        """
        group = call.group
        assert group is not None, "settle() follows failed() with an ambiguous error"
        ledger = self._ledger(call.feature, call.user_id)
        await self._decided(ledger, group)
        self._forget_if_settled(ledger)
        outcome = call.outcome
        assert outcome is not None
        if isinstance(outcome, RenderMayExistError):
            raise outcome
        logger.warning("adopted process %s after an ambiguous start call", outcome.process_id)
        return outcome

    # --------------------------------------------------------------------------- deciding a group

    async def _decided(self, ledger: _UserLedger, group: _Group) -> None:
        """Until ``group`` is decided; one task at a time decides it (another takes over if it is
        cancelled, so that a group is never left undecided while someone waits for it)."""
        while not group.decided.is_set():
            async with ledger.driver:
                if not group.decided.is_set():
                    await self._drive(ledger, group)

    async def _drive(self, ledger: _UserLedger, group: _Group) -> None:
        while ledger.in_flight > 0:  # the gate is closed: in flight only decreases, and the
            if ledger.idle is None:  # ambiguous failures among them join this group
                ledger.idle = anyio.Event()
            await ledger.idle.wait()
        if group.deadline is None:
            group.deadline = self._clock.monotonic() + self._grace
        while True:
            error: AdCreativeError | None = None
            try:
                group.listing = await group.resource.user_progress(group.user_id)
            except AdCreativeError as exc:
                error = exc
            if self._clock.monotonic() >= group.deadline or (error is None and self._complete(ledger, group)):
                self._decide(ledger, group, error)
                return
            await self._clock.sleep(self._interval)

    def _candidates(self, ledger: _UserLedger, group: _Group) -> dict[Submission, list[Progress]]:
        pool = [p for p in group.listing or () if not ledger.edited_by_this_client(p)]
        found: dict[Submission, list[Progress]] = {}
        for member in group.members:
            matches = member.matches or (lambda progress: False)
            found[member] = [p for p in pool if ledger.new_since(member.mark, p.process_id) and matches(p)]
        return found

    def _complete(self, ledger: _UserLedger, group: _Group) -> bool:
        """Whether the listing can show nothing more of the group: when only its members write for the
        user and each can have made one process, as many new processes as members have appeared."""
        if not (self._exclusive or ledger.exclusive) or not all(m.baseline for m in group.members):
            return False  # another writer's process may stand in for a member's lagging one
        found = {_pid(p) for ps in self._candidates(ledger, group).values() for p in ps}
        return len(found) >= len(group.members)

    def _decide(self, ledger: _UserLedger, group: _Group, error: AdCreativeError | None) -> None:
        """Give every member its outcome, claim every process named, open the gate. Synchronous: the
        listing, the decision and the claims are one step."""
        candidates = self._candidates(ledger, group)
        exclusive = self._exclusive or ledger.exclusive
        for member in group.members:
            mine = candidates[member]
            ids = {_pid(p) for p in mine}
            others = (other for other in group.members if other is not member)
            rivals = sum(1 for other in others if ids & {_pid(p) for p in candidates[other]})
            provable = exclusive and member.baseline and ledger.forgot <= member.mark
            if error is None and provable and len(mine) == 1 and rivals == 0:
                member.outcome = mine[0]
                continue
            member.outcome = self._may_exist(
                ledger,
                member,
                mine,
                exclusive=exclusive,
                rivals=rivals,
                unreadable=error,
                read=group.listing,
            )
        _record(
            ledger,
            (p.image_render_process_id for ps in candidates.values() for p in ps),
            claim=True,
        )
        ledger.group = None
        group.decided.set()

    def _may_exist(
        self,
        ledger: _UserLedger,
        member: Submission,
        mine: list[Progress],
        *,
        exclusive: bool,
        rivals: int,
        unreadable: AdCreativeError | None,
        read: list[Progress] | None,
    ) -> RenderMayExistError:
        cause = member.cause
        user = member.user_id
        feature = member.feature
        failed = f"a {feature} start call failed ({cause})"
        if read is None:
            message = (
                f"{failed} and the user's processes could not be read ({unreadable}): the render may "
                "exist; check the user's processes before starting again"
            )
        elif not mine:
            message = (
                f"{failed}; no new process of user {user} appeared in the listing within "
                f"{self._grace:g} s. The render may still exist (the listing may lag, or omit finished "
                "processes): check the user's processes before starting again"
            )
        else:
            reasons = []
            if not exclusive:
                reasons.append(
                    "another client may start renders for this user (declare this client the only "
                    "writer of its user ids with exclusive_user_ids=True, or use "
                    "unique_user_per_submission=True)"
                )
            if not member.baseline or ledger.forgot > member.mark:
                reasons.append("the user's processes could not be listed before the call was sent")
            if rivals:
                reasons.append(
                    f"{rivals} other start call{'s' if rivals > 1 else ''} of this client for this user "
                    "failed at the same time and may have made them"
                )
            if unreadable is not None:
                reasons.append(f"the last listing failed ({unreadable})")
            if not reasons:
                reasons.append(f"{len(mine)} new processes appeared")
            ids = ", ".join(p.image_render_process_id for p in mine)
            noun = "process" if len(mine) == 1 else "processes"
            message = (
                f"{failed}; {len(mine)} new matching {noun} of user {user} ({ids}) may be its render, "
                f"but none can be proven its own: {'; '.join(reasons)}. Check them before starting again"
            )
        return RenderMayExistError(message, feature=feature, user_id=user, candidates=mine, cause=cause)

    # ------------------------------------------------------------------------------------- edits

    async def reconcile_edit(
        self, resource: RenderResource, user_id: str, task_ids: Iterable[str], cause: AdCreativeError
    ) -> Progress:
        """After an ambiguous edit call: the re-opened process if its edited tasks are seen running
        again, else RenderMayExistError (the edit is never sent again)."""
        wanted = {t.lower() for t in task_ids}
        feature = resource.feature.name
        deadline = self._clock.monotonic() + self._grace
        seen_tasks = False
        while True:
            error: AdCreativeError | None = None
            listing: list[Progress] = []
            try:
                listing = await resource.user_progress(user_id)
            except AdCreativeError as exc:
                error = exc
            for progress in listing:
                states = {t.lower(): s for t, s in progress.tasks.items()}
                edited = wanted & states.keys()
                seen_tasks = seen_tasks or bool(edited)
                if edited and any(states[t] not in TERMINAL_STATES for t in edited):
                    logger.warning("adopted process %s after an ambiguous edit", progress.process_id)
                    self.saw(feature, user_id, [progress.image_render_process_id], answered=True)
                    return progress
            if self._clock.monotonic() >= deadline:
                break
            await self._clock.sleep(self._interval)
        if error is not None and not seen_tasks:
            message = (
                f"an edit failed ({cause}) and the user's processes could not be read ({error}): "
                "the edit may have been applied; check the results before editing again"
            )
        elif seen_tasks:
            message = (
                f"an edit failed ({cause}); its tasks were not seen running again within "
                f"{self._grace:g} s. The edit may not have been applied, or it was applied and its "
                "re-render already finished (the listing cannot tell them apart): check the results "
                "before editing again"
            )
        else:
            message = (
                f"an edit failed ({cause}); its tasks were not in the user's listing within "
                f"{self._grace:g} s (the listing may omit finished processes), so whether the edit was "
                "applied is unknown: check the results before editing again"
            )
        raise RenderMayExistError(message, feature=feature, user_id=user_id, cause=cause)


def _pid(progress: Progress) -> str:
    return progress.image_render_process_id.lower()


def _record(ledger: _UserLedger, process_ids: Iterable[str], *, claim: bool) -> None:
    known = ledger.known
    for process_id in process_ids:
        pid = process_id.lower()
        if pid not in known:
            ledger.seen += 1
            known[pid] = ledger.seen
        if claim:
            ledger.claimed[pid] = None
    if len(known) > MAX_KNOWN_PER_USER:
        # forget the oldest: a forgotten process would look new, so the next start call lists again
        # first, and the calls sent before now adopt nothing
        ledger.baseline = False
        ledger.forgot = ledger.seen
        while len(known) > MAX_KNOWN_PER_USER:
            pid = next(iter(known))
            del known[pid]
            ledger.claimed.pop(pid, None)


def _bounded(table: dict[str, None], keys: Iterable[str], limit: int) -> None:
    for key in keys:
        table[key] = None
    while len(table) > limit:
        del table[next(iter(table))]
