"""Push messages in the poll scheduler: merging a message into what is known and waking its waiters, and
how the flow of messages paces a (feature, user)'s polls (see :mod:`._polling`'s module doc).

:class:`PushPacing` is a part of :class:`~adcreative_async._polling.PollScheduler` (one of its base
classes), kept apart because it is one responsibility: what a message changes, and whether messages flow
to this client alone (a shared webhook URL or competing queue consumers keep the normal pace).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ._models import TERMINAL_STATES, Progress
from ._poll_state import APPLICATION_SCOPE, Snapshot, _Interest, _UserPoller
from ._progress_merge import merge_progress, with_task_state

if TYPE_CHECKING:
    from ._clock import Clock
    from ._config import PollPolicy
    from ._poll_state import UserKey
    from ._telemetry import Instruments
    from .notifications._messages import ProgressNotification, TaskCompletedNotification

__all__ = ["OWN_PUSHES_REMEMBERED", "PushPacing"]

#: Processes whose push messages this scheduler took are remembered (the most recent this many), so that a
#: late message for one of them (after its wait ended and its interest was forgotten) is not taken for
#: another client's: such "foreign" messages keep polling at its normal pace.
OWN_PUSHES_REMEMBERED = 4096


class PushPacing:
    """The push-message part of the poll scheduler (a base class of it: see the module doc)."""

    if TYPE_CHECKING:  # provided by PollScheduler
        policy: PollPolicy
        _clock: Clock
        _pollers: dict[UserKey, _UserPoller]
        _telemetry: Instruments | None
        _own_pushed: OrderedDict[str, None]
        pushes: int
        foreign_pushes: int

    def _pushed(self, poller: _UserPoller, now: float) -> bool:
        """Whether push messages flow for this (feature, user), and only to this client: while messages
        for processes it does not hold come too, its own may go elsewhere (a shared webhook URL)."""
        quiet = self.policy.push_quiet_after
        pushed, shared = poller.last_push_at, poller.shared_at
        return pushed is not None and now - pushed < quiet and (shared is None or now - shared >= quiet)

    def _paced(self, poller: _UserPoller, delay: float, now: float) -> float:
        """The poll delay: slowed to the reconcile interval while push messages flow for this
        (feature, user)."""
        hinted = poller.hinted_at
        if hinted is not None:  # confirm_push: a poll sent after the message answers it
            poller.hinted_at = None
            if poller.last_poll_at is None or poller.last_poll_at < hinted:
                return 0.0  # this one was sent before it: once more, now (once: the hint is spent)
        if self._pushed(poller, now):
            return max(delay, self.policy.push_reconcile_interval)
        return delay

    def push(self, message: TaskCompletedNotification | ProgressNotification, *, paces: bool = True) -> None:
        """A push notification: merge it into the process's snapshot now and wake its waiters.

        What a message says is merged into what is known (see :func:`merge_progress` and
        :func:`with_task_state`): a progress message without tasks or counts keeps the known ones, and
        counts are never invented. A message that changes nothing (a duplicate) is dropped; one older
        than what is known (a task going back from a terminal state, fewer tasks complete) is ignored
        unless an edit started a new cycle.

        Args:
            paces: whether the flow of messages may slow the polls: False when the hub's deliveries are
                split among processes (gunicorn workers behind one webhook URL), where this client's
                own messages may land in another process. A message for a process this client does
                not hold says the same of its (feature, user).
        """
        now = self._clock.monotonic()
        self.pushes += 1
        if self.policy.confirm_push:
            self._confirm(message, now)
            return
        key = (message.feature, message.user_id.lower())
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers.get((message.feature, APPLICATION_SCOPE))
        if poller is None:
            return
        pid = message.image_render_process_id.lower()
        interest = poller.interest.get(pid)
        foreign = interest is None and pid not in self._own_pushed
        if foreign:
            self.foreign_pushes += 1
        if foreign or not paces:  # messages for this key are shared: ours may land elsewhere
            slowed = self._pushed(poller, now)
            poller.shared_at = now
            if slowed:  # a poll put off to the reconcile interval comes at the normal pace again
                poller.reset_pacing(now, poller.next_delay(now))
        if interest is None:
            return  # nobody follows it (a poll will tell whoever asks later)
        if paces:
            poller.last_push_at = now
            self._own_pushed[pid] = None
            self._own_pushed.move_to_end(pid)
            if len(self._own_pushed) > OWN_PUSHES_REMEMBERED:
                self._own_pushed.popitem(last=False)
        from .notifications._messages import ProgressNotification  # with push only (import footprint)

        current = poller.cache.get(pid)
        known = current.progress if current is not None else None
        if isinstance(message, ProgressNotification):
            progress = merge_progress(known, message)
        else:
            base = known
            if base is None:
                base = Progress(
                    image_render_process_id=message.image_render_process_id,
                    message_type=message.message_type.replace("TaskCompleted", "Progress"),
                    application_id=message.application_id,
                    user_id=message.user_id,
                )
            progress = with_task_state(base, message.task_id, int(message.state))
        if current is not None and (current.progress == progress or self._stale(interest, current, progress)):
            return
        interest.missing_since = None
        poller.cache[pid] = Snapshot(progress, now)
        if self._telemetry is not None:
            self._telemetry.push_applied(pid, progress)
        poller.wake_changed((pid,))

    def _confirm(self, message: TaskCompletedNotification | ProgressNotification, now: float) -> None:
        """``PollPolicy.confirm_push``: a message is a hint. If a waiter awaits its process, the poller
        of its (feature, user) polls now, or right after the poll on its way (sent before the message,
        its answer may predate it: see :meth:`_paced`); nothing of the message is merged, so only the
        API's answer can complete a wait."""
        poller = self._pollers.get((message.feature, message.user_id.lower()))
        if poller is None:
            poller = self._pollers.get((message.feature, APPLICATION_SCOPE))
        if poller is None:
            return
        interest = poller.interest.get(message.image_render_process_id.lower())
        if interest is None or not any(watch.blocked for watch in interest.watches):
            return
        poller.hinted_at = now
        if poller.next_due <= now:
            return  # due already, or on its way
        poller.next_due = now
        if poller.wake_scope is not None:
            poller.wake_scope.cancel()

    @staticmethod
    def _stale(interest: _Interest, current: Snapshot, new: Progress) -> bool:
        """Whether ``new`` goes back from ``current`` without an edit that started a new cycle since."""
        if interest.not_before > current.sent_at:
            return False  # an edit re-opened the process after the cached snapshot: going back is right
        old = current.progress
        if new.completed_task_count < old.completed_task_count:
            return True
        new_tasks = new.tasks
        return any(
            state in TERMINAL_STATES and new_tasks.get(task, state) not in TERMINAL_STATES
            for task, state in old.tasks.items()
        )
