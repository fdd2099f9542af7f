"""No duplicate paid renders, and never another call's render: what the client does when a start or
edit call may or may not have reached the server.

A start call is sent again only when it surely never left (connection refused, connect timeout); a
failure to obtain its access token is not a send (the token error is raised as is, ``before_send``).
After an ambiguous failure — the connection dropped after sending, the read timed out, a gateway answered
500/502/503/504, a 200 whose body could not be read — the render may exist. The call is never sent
again; the client reconciles, and **adopts a process only when it provably belongs to this call**:

- The client knows, per (feature, user), the process ids it has seen: a listing taken before its first
  start call for that user (one listing, shared by concurrent first calls), its own answers, and every
  full listing since. A process first seen after a call was sent is *new* for that call.
- The failed call lists the user's processes until its grace runs out. It reads a listing only once
  every call of that user sent before the listing was answered has ended: their answers claim their
  processes (a render is listed before its answer arrives), and their ambiguous failures make them
  *unresolved* too. No call waits at a gate: other calls go on being sent meanwhile.
- It adopts a process only if that process is the one new matching process for it, no other unresolved
  call could have made it (one whose window — from its sending to the end of its grace — saw the
  process appear, and whose request it matches; a cancelled call counts), the client had a baseline
  listing when the call was sent, and no other client writes for that user: the user declared this
  client the only writer of its user ids (``AdCreativeClient(exclusive_user_ids=True)``), or the user id
  is this call's own (strong mode, ``unique_user_per_submission=True``), or a caller declared it through
  :meth:`SubmissionLedger.exclusive_user`. An adopted process is claimed: never another call's.

Otherwise the call raises :class:`RenderMayExistError` saying only what is known: the candidates (new
matching processes that may be its render) and why none is provably its own, or that no new process
appeared within the grace period — never that the render was "probably not created".
``RetryPolicy.reconcile_grace`` is assumed longer than the listing's read-after-write lag (and than a
server's work on a request whose answer timed out): a process first listed after a call's grace is not
taken for its render. Whether to start again is the caller's decision.

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
from ._listing import lowered
from ._models import TERMINAL_STATES, Progress
from ._telemetry import records_reconciliation

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

    Its message never names the user (it may be one of your customers): ``user_id`` does.

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
    """One paid call of this client for a (feature, user), from its sending to its outcome.

    Attributes:
        resource, user_id: the feature and user it is for.
        seq: its place in the order of the user's calls (admission).
        mark: where the ledger's record of seen processes stood when it was sent: a process first seen
            later is new for it.
        baseline: whether the ledger knew the user's processes (a listing) when it was sent.
        matches: whether a listed process could be this start call's render; None for an edit.
        edited_task_ids: an edit's tasks.
        failed_at: when it failed ambiguously (or was abandoned), on the client's clock.
        end: where the ledger stood when its window closed (its grace ran out): a process first seen
            later is not its render (``RetryPolicy.reconcile_grace`` is assumed longer than the
            listing's lag). None while open.
        adopted: the process it provably made, once known.
        abandoned: cancelled while it may have been sent: no one settles it.
    """

    resource: RenderResource
    user_id: str
    seq: int
    mark: int
    baseline: bool
    matches: Callable[[Progress], bool] | None
    edited_task_ids: tuple[str, ...] = ()
    cause: AdCreativeError | None = None
    failed_at: float | None = None
    end: int | None = None
    adopted: Progress | None = None
    abandoned: bool = False

    @property
    def feature(self) -> str:
        """The feature's name."""
        return self.resource.feature.name


@dataclass(eq=False)
class _BaselineFlight:
    done: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False  # False when its leader was cancelled: a waiter leads the next one


@dataclass(eq=False)
class _UserLedger:
    key: tuple[str, str]
    known: dict[str, int] = field(default_factory=dict)  # process id -> when first seen; oldest first
    claimed: dict[str, None] = field(default_factory=dict)  # answered or adopted: never another's
    edited: dict[str, None] = field(default_factory=dict)  # task ids of this client's edits
    seen: int = 0  # a counter: the "when" of ``known``
    forgot: int = 0  # ``seen`` when processes were last forgotten (MAX_KNOWN_PER_USER)
    baseline: bool = False
    exclusive: bool = False  # no other client writes for this user
    fresh: bool = False  # a user id made up for one start call: forgotten once it is settled
    flight: _BaselineFlight | None = None
    admitted: int = 0  # calls sent so far (the next call's ``seq``)
    in_flight: dict[int, Submission] = field(default_factory=dict)  # by seq, oldest first
    progress: anyio.Event | None = None  # set (and replaced) whenever a call in flight ends
    unresolved: list[Submission] = field(default_factory=list)  # ambiguous, not provably resolved

    def new_since(self, mark: int, process_id: str) -> bool:
        """Whether ``process_id`` was unknown at ``mark`` and is no call's own (answered or adopted)."""
        pid = process_id.lower()
        when = self.known.get(pid)
        return (when is None or when > mark) and pid not in self.claimed

    def edited_by_this_client(self, progress: Progress) -> bool:
        """Whether the process shows a task this client edited (an old process, re-opened)."""
        return any(task.lower() in self.edited for task in progress.tasks)


class SubmissionLedger:
    """Per client: the process ids seen for each (feature, user), the calls in flight, and the calls
    whose ambiguous failure is not resolved (see the module docstring for the rule).

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
        if ledger is not None:
            _record(ledger, process_ids, claim=answered)

    def listed(
        self, feature: str, user_id: str, process_ids: Iterable[str], *, complete: bool = True
    ) -> None:
        """Record a full listing of the user's processes: it also serves as the baseline.

        Args:
            complete: False for a part of a listing read as a stream (its processes recorded, no
                baseline yet); the call with True (and the last part, or nothing) comes once the whole
                listing was read.
        """
        ledger = self._users.get((feature, user_id.lower()))
        if ledger is None:
            if self._fresh_users:
                return  # a made-up user already settled (and forgotten), or one no start call uses
            ledger = self._ledger(feature, user_id)
        _record(ledger, process_ids, claim=False)
        if complete and len(ledger.known) < MAX_KNOWN_PER_USER:
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
                # a full listing, read as a stream (not held): recorded through listed()
                await resource._listing(user_id)
                flight.finished = True
            except AdCreativeError as exc:  # no baseline: the reconciles of these calls adopt nothing
                flight.finished = True
                logger.info("no baseline listing of a user's %s processes: %s", resource.feature.name, exc)
            finally:
                ledger.flight = None
                flight.done.set()
            return

    def admit(
        self,
        resource: RenderResource,
        user_id: str,
        matches: Callable[[Progress], bool] | None,
        edited_task_ids: Iterable[str] = (),
    ) -> Submission:
        """Count a call as in flight: call it just before sending (no await in between).

        Args:
            matches: for a start call, whether a listed process could be its render; None for an edit.
            edited_task_ids: an edit's tasks (a process showing one is never a start's render).
        """
        ledger = self._ledger(resource.feature.name, user_id)
        edited = tuple(edited_task_ids)
        _bounded(ledger.edited, (t.lower() for t in edited), MAX_EDITED_TASKS_PER_USER)
        call = Submission(resource, user_id, ledger.admitted, ledger.seen, ledger.baseline, matches, edited)
        ledger.admitted += 1
        ledger.in_flight[call.seq] = call
        return call

    def answered(self, call: Submission, progress: Progress) -> None:
        """The call returned ``progress``: its process is claimed (never another call's)."""
        ledger = self._ledger(call.feature, call.user_id)
        _record(ledger, [progress.image_render_process_id], claim=True)
        self._finish(ledger, call)

    def failed(self, call: Submission, error: AdCreativeError | None) -> None:
        """The call failed (``error``) or was abandoned (None: cancelled while it may have been sent).

        A start call that may have reached the server stays unresolved: until it is settled (or its
        grace runs out), a new process may be its render, and no other call adopts such a process.
        """
        ledger = self._ledger(call.feature, call.user_id)
        if call.matches is not None and (error is None or is_ambiguous(error)):
            call.cause = error
            call.failed_at = self._clock.monotonic()
            call.abandoned = error is None
            if not (call.abandoned and ledger.fresh):  # a made-up user's: nothing else can mistake it
                ledger.unresolved.append(call)
        self._finish(ledger, call)

    def _finish(self, ledger: _UserLedger, call: Submission) -> None:
        ledger.in_flight.pop(call.seq, None)
        if ledger.progress is not None:
            ledger.progress.set()
            ledger.progress = None
        self._prune(ledger)

    def _prune(self, ledger: _UserLedger) -> None:
        """Forget unresolved calls that can no longer be mistaken (their window closed before any
        call now open was sent), claims no open call needs (bounded by the calls open, not by the
        calls made), and a made-up user's ledger once its call is settled."""
        self._close_abandoned(ledger)
        open_marks = [c.mark for c in ledger.in_flight.values()]
        open_marks += [c.mark for c in ledger.unresolved if c.end is None]
        oldest = min(open_marks, default=ledger.seen)
        # A claim matters only to calls sent before its process was first seen: once none is open,
        # the process is not new for any call (first seen at or before every open call's mark).
        claimed, known = ledger.claimed, ledger.known
        while claimed:
            pid = next(iter(claimed))
            if known.get(pid, 0) > oldest:
                break
            del claimed[pid]
        ledger.unresolved = [
            c for c in ledger.unresolved if c.adopted is None and (c.end is None or c.end > oldest)
        ]
        if ledger.fresh and not ledger.in_flight and all(c.end is not None for c in ledger.unresolved):
            self._users.pop(ledger.key, None)

    def _close_abandoned(self, ledger: _UserLedger) -> None:
        """No one settles an abandoned call: its window closes when its grace runs out."""
        now = self._clock.monotonic()
        for call in ledger.unresolved:
            if call.abandoned and call.end is None and now >= (call.failed_at or now) + self._grace:
                call.end = ledger.seen

    async def _answered_before(self, ledger: _UserLedger, seq: int) -> None:
        """Until every call sent before ``seq`` has ended: their answers are claimed, their ambiguous
        failures unresolved — either way, no longer mistaken for this call's render."""
        while ledger.in_flight and next(iter(ledger.in_flight)) < seq:
            if ledger.progress is None:
                ledger.progress = anyio.Event()
            await ledger.progress.wait()

    @records_reconciliation("start")
    async def settle(self, call: Submission) -> Progress:
        """After :meth:`failed` with an ambiguous error: the process this call provably made.

        It lists the user's processes until one is provably its render, or its grace runs out. Each
        listing is read only once every call sent before that listing was answered has ended.

        Raises:
            RenderMayExistError: what is known (the candidates, and why none is provably this call's).
        """
        ledger = self._ledger(call.feature, call.user_id)
        assert call.failed_at is not None, "settle() follows failed() with an ambiguous error"
        deadline = call.failed_at + self._grace
        listing: list[Progress] | None = None
        error: AdCreativeError | None = None
        settled = False
        try:
            while True:
                try:
                    current = await call.resource.user_progress(call.user_id)
                    horizon = ledger.admitted  # calls sent before it was answered may be in it
                    await self._answered_before(ledger, horizon)
                    listing, error = current, None
                    adopted = self._adopt(ledger, call, listing)
                    if adopted is not None:
                        settled = True
                        return adopted
                except AdCreativeError as exc:
                    error = exc
                if self._clock.monotonic() >= deadline:
                    break
                await self._clock.sleep(self._interval)
            adopted = self._adopt(ledger, call, listing) if listing is not None else None
            settled = True
            if adopted is not None:
                return adopted
            raise self._may_exist(ledger, call, listing, error)
        finally:
            if settled:
                call.end = ledger.seen  # its window is closed: a process first seen later is not its
            else:
                call.abandoned = True  # cancelled: its window closes when its grace runs out
            self._prune(ledger)

    # ------------------------------------------------------------------------------------ deciding

    def _candidates(
        self, ledger: _UserLedger, call: Submission, listing: Iterable[Progress]
    ) -> list[Progress]:
        """New processes of the listing that could be ``call``'s render."""
        matches = call.matches or (lambda progress: False)
        return [
            p
            for p in listing
            if ledger.new_since(call.mark, p.process_id)
            and matches(p)
            and not ledger.edited_by_this_client(p)
        ]

    def _rivals(self, ledger: _UserLedger, call: Submission, candidates: Iterable[Progress]) -> int:
        """Other unresolved calls that could have made one of ``candidates``."""
        self._close_abandoned(ledger)
        rivals = 0
        for other in ledger.unresolved:
            if other is call or other.adopted is not None or other.matches is None:
                continue
            for progress in candidates:
                first_seen = ledger.known.get(_pid(progress))
                if first_seen is None:  # forgotten: it may be anyone's
                    rivals += 1
                    break
                in_window = other.mark < first_seen and (other.end is None or first_seen <= other.end)
                if in_window and other.matches(progress):
                    rivals += 1
                    break
        return rivals

    def _provable(self, ledger: _UserLedger, call: Submission) -> bool:
        """Whether no other client writes for the user and the call had a complete record."""
        exclusive = self._exclusive or ledger.exclusive
        return exclusive and call.baseline and ledger.forgot <= call.mark

    def _adopt(self, ledger: _UserLedger, call: Submission, listing: Iterable[Progress]) -> Progress | None:
        """The one new matching process if it is provably ``call``'s; it is then claimed."""
        if not self._provable(ledger, call):
            return None
        candidates = self._candidates(ledger, call, listing)
        if len(candidates) != 1 or self._rivals(ledger, call, candidates):
            return None
        (adopted,) = candidates
        call.adopted = adopted
        _record(ledger, [adopted.image_render_process_id], claim=True)
        logger.warning("adopted process %s after an ambiguous start call", adopted.process_id)
        return adopted

    def _may_exist(
        self,
        ledger: _UserLedger,
        call: Submission,
        listing: list[Progress] | None,
        error: AdCreativeError | None,
    ) -> RenderMayExistError:
        cause = call.cause
        user = call.user_id
        feature = call.feature
        failed = f"a {feature} start call failed ({cause})"
        mine = self._candidates(ledger, call, listing or ())
        if listing is None:
            message = (
                f"{failed} and the user's processes could not be read ({error}): the render may "
                "exist; check the user's processes before starting again"
            )
        elif not mine:
            message = (
                f"{failed}; no new process of the user appeared in the listing within "
                f"{self._grace:g} s. The render may still exist (the listing may lag, or omit finished "
                "processes): check the user's processes before starting again"
            )
        else:
            reasons = []
            if not (self._exclusive or ledger.exclusive):
                reasons.append(
                    "another client may start renders for this user (declare this client the only "
                    "writer of its user ids with exclusive_user_ids=True, or use "
                    "unique_user_per_submission=True)"
                )
            if not call.baseline or ledger.forgot > call.mark:
                reasons.append("the user's processes could not be listed before the call was sent")
            rivals = self._rivals(ledger, call, mine)
            if rivals:
                reasons.append(
                    f"{rivals} other start call{'s' if rivals > 1 else ''} of this client for this user "
                    f"failed at the same time and may have made {'it' if len(mine) == 1 else 'them'}"
                )
            if error is not None:
                reasons.append(f"the last listing failed ({error})")
            if not reasons:
                reasons.append(f"{len(mine)} new processes appeared")
            ids = ", ".join(p.image_render_process_id for p in mine)
            noun = "process" if len(mine) == 1 else "processes"
            message = (
                f"{failed}; {len(mine)} new matching {noun} of the user ({ids}) may be its render, "
                f"but none can be proven its own: {'; '.join(reasons)}. Check them before starting again"
            )
        return RenderMayExistError(message, feature=feature, user_id=user, candidates=mine, cause=cause)

    # ------------------------------------------------------------------------------------- edits

    @records_reconciliation("edit")
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
    if not claim:
        # each piece of each listing of the user comes here, nearly all of it known already: told in C
        pids = lowered(list(process_ids))
        if all(map(known.__contains__, pids)):
            return
        process_ids = pids
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
