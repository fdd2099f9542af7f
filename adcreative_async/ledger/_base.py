"""The run ledger's interface: one durable record per bulk item, and what every backend must do.

An item is keyed by its idempotency key (see :mod:`adcreative_async.ledger._requests`): the input's content
hash, the request's canonical parameters and the feature. Its life::

    pending -> submitting (intent, durable before the paid call) -> submitted (process id, right after)
            -> downloaded (files)          failed (typed error)          unknown (the render may exist)

Many workers share one ledger through claims: a worker owns an item while its lease runs (renewed while
the worker lives); an item whose lease lapsed passes to whoever claims it next.

Fencing (why a paused worker neither pays twice nor overwrites). A lease alone is not a lock: a worker
can be stopped for any time (SIGSTOP, a VM pause, a long GC) between checking its lease and acting on
it, and wake up believing it still holds the item (Kleppmann, "How to do distributed locking", 2016).
His remedy is a fencing token that the storage checks on every write; here there are two storages:

- The ledger checks a token. Every claim increments the item's :attr:`~ItemRecord.epoch` and returns
  it; every write of the item's state (intent, answer, task ids, download, failure, requeue, and the
  rows written behind) carries the epoch of the claim it is made under, and the backend writes it only
  if the item's epoch is still that one (one statement: the check and the write are atomic). A worker
  whose item passed to another claim can therefore no longer record an intent, a ``failed``, a requeue
  or a download over the new owner's state. The one exception is an answer (see
  :data:`STALE_ANSWER_RULE`): it names a render that was paid for.
- The API checks nothing (no token, no idempotency key): a start call that reaches it makes a render.
  So the token is checked where the request is made instead, as its bytes leave: the bulk driver
  (:mod:`adcreative_async.ledger._run`) sets a send guard around each start call that refuses, before
  each chunk of the upload and at the end of each file part, once the worker's local lease deadline
  minus a margin (``SEND_MARGIN``) has passed; a refused upload stops before the request is complete,
  and the server makes nothing (``COMPLETE_REQUEST_RULE``, assumed). The local deadline is the client's
  monotonic reading taken *before* the write that set or extended the lease, plus the lease: the
  ledger's lease ends no earlier (its own reading came later), whatever its clock says. The margin
  covers the time the request's last bytes, past the last check, take to reach the server.
- A takeover waits until the old owner can no longer be sending: the lease lapsed at T, so the old
  owner's last check passed before T - margin, its request was complete at the server by T (assumed),
  and its render is listed by T + ``reconcile_grace`` (``UNANSWERED_START_RULE``, assumed). The new
  owner of an item with an intent lists its user's processes until T + margin + ``reconcile_grace``
  (counted from the lapse, :attr:`~ItemRecord.lapsed_for`, not from the old intent) before it may
  conclude that none was made.

Assumed: the ledger's clock and the worker's monotonic clock run at the same rate over a lease (no step
of the wall clock of a SQLite ledger's machine during one); ``time.monotonic`` counts the time a worker
is stopped (it does for SIGSTOP and VM pauses; a machine's own suspend stops Linux's CLOCK_MONOTONIC,
and such a worker's local deadline is late by the suspend: a laptop that sleeps through its lease is
the residual risk, as is a request whose last bytes take longer than the margin to arrive, and a start
call without a file part, whose only check is made before it is sent).

What is stored: keys (hashes), labels (the input's name as the caller gave it), feature names, states,
process, task and user ids, file paths, error codes and messages, times. Never a credential: nothing of
the client's configuration reaches a ledger.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import ClassVar

import msgspec

from .._errors import LedgerError
from .._ratelimit import RateBoard

__all__ = [
    "DEFAULT_LEASE",
    "FINAL_STATES",
    "STALE_ANSWER_RULE",
    "ItemRecord",
    "ItemState",
    "LedgerError",
    "NewItem",
    "RunLedger",
    "SourceHash",
    "dead_here",
    "error_code",
    "new_worker_id",
]

logger = logging.getLogger("adcreative_async.ledger")

#: Seconds a claim lasts unless renewed; a worker renews at a third of it while it lives.
DEFAULT_LEASE = 30.0
#: Longest error message stored (the rest is cut).
MAX_MESSAGE = 2000


class ItemState(str, enum.Enum):
    """Where an item is in its life."""

    PENDING = "pending"
    """Known, nothing sent."""
    SUBMITTING = "submitting"
    """The intent is durable; the start call may be in flight (or may have been, before a crash)."""
    SUBMITTED = "submitted"
    """The start call was answered: the process id is known."""
    DOWNLOADED = "downloaded"
    """Finished: every result is on disk (or nothing was to be downloaded)."""
    FAILED = "failed"
    """Finished with the API's verdict: it refused the input, or the render failed (never for a transient
    error: see :func:`~adcreative_async._errors.error_kind`)."""
    UNKNOWN = "unknown"
    """A start call may have made a render that could not be found or ruled out: never sent again
    blind. Not final: the next run reconciles it again (adopts its render if listed, sends it once it is
    proven never made, else leaves it ``unknown``)."""


#: States in which an item is never claimed again (``retry_failed`` puts failed ones back). ``unknown`` is
#: not one: every run reconciles it again.
FINAL_STATES = frozenset({ItemState.DOWNLOADED, ItemState.FAILED})


class ItemRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One item as the ledger holds it.

    Attributes:
        key: the idempotency key (hex SHA-256 of the input content, parameters and feature).
        seq: the item's position when it was first registered.
        label: the input as the caller named it (a path), for people.
        feature: the feature's name (``"background_remover"``).
        state: see :class:`ItemState`.
        attempt: 0 for the first render; incremented when a failed item is retried.
        user_id: the user of the start call (recorded with the intent).
        process_id, task_ids: the render, once the start call was answered (or reconciled).
        files: the downloaded results.
        error_code, error_message: for ``failed`` and ``unknown``: the error class name and its text.
        owner: the worker holding the claim; lease_until: until when (epoch seconds).
        epoch: the item's fencing token: incremented by every claim (and by the operator's resets); a
            write that carries an older one is refused (see the module doc).
        lapsed_for: on a record a claim returned: how long before the claim (seconds, on the ledger's
            clock) the previous claim lapsed or was released; None when the item had none (or when the
            record was not returned by a claim).
        intent_at: when the intent was recorded (epoch seconds); created_at, updated_at likewise.
    """

    key: str
    seq: int
    label: str
    feature: str
    state: ItemState = ItemState.PENDING
    attempt: int = 0
    user_id: str | None = None
    process_id: str | None = None
    task_ids: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    owner: str | None = None
    lease_until: float | None = None
    intent_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    epoch: int = 0
    lapsed_for: float | None = None

    @property
    def final(self) -> bool:
        """Whether the item is done with (downloaded or failed)."""
        return self.state in FINAL_STATES


#: What a start call's answer does when it reaches the ledger under a stale epoch (the worker's claim had
#: passed to another meanwhile, e.g. it was paused with the call in flight). The render exists and was
#: paid for, so its process id must not be lost; but the item's new owner may hold a render of its own.
#: So it is written (state ``submitted``, its process and task ids; the claim stays the new owner's)
#: only when the item names no render yet, is for the same derived user (the same attempt: a render of
#: this item) and is pending, submitting or unknown: the new owner then finds it recorded (its intent is
#: refused, a reconciliation adopts the same process) and nothing is rendered again. Otherwise it is
#: left out, with a warning naming the process (the item names a render already: most likely the same,
#: adopted by the new owner's reconciliation).
STALE_ANSWER_RULE = "recorded only when the item names no render yet, for the same user"

#: Writes behind are committed by the write that makes them this many, if no other write came first (a
#: claim, a read, the lease renewal, a release): measured with PostgreSQL, a bulk run's last flush of
#: about 1,000 downloads took 0.19 s at its end.
BEHIND_ROWS = 128

_SUBMITTED, _DOWNLOADED = ItemState.SUBMITTED.value, ItemState.DOWNLOADED.value  # (an enum's .value is slow)


class WrittenBehind:
    """An item's answer and download not yet written (the SQLite and PostgreSQL backends write them
    behind, with their next write): its state, process id, user id, task ids and files (JSON lists); a
    None keeps the stored value. ``epoch``: the fencing token of the claim they were made under (None:
    not fenced); a row whose token is no longer the item's is written only as far as
    :data:`STALE_ANSWER_RULE` allows."""

    __slots__ = ("epoch", "files", "process_id", "state", "task_ids", "user_id")

    def __init__(self) -> None:
        self.state = ""
        self.process_id: str | None = None
        self.user_id: str | None = None
        self.task_ids: str | None = None
        self.files: str | None = None
        self.epoch: int | None = None

    def answered(
        self, process_id: str, user_id: str, task_ids: Sequence[str], epoch: int | None = None
    ) -> bool:
        """The start call's answer (a download noted already stays the state); False when it is left out
        (see :meth:`_stale`)."""
        if self._stale(epoch):
            return False
        if self.state != _DOWNLOADED:
            self.state = _SUBMITTED
        self.process_id, self.user_id = process_id, user_id
        self.task_ids = msgspec.json.encode(list(dict.fromkeys(task_ids))).decode()
        self._fence(epoch)
        return True

    def downloaded(self, files: Sequence[str], epoch: int | None = None) -> None:
        """The item's files: it is finished."""
        if self._stale(epoch):
            return
        self.state = _DOWNLOADED
        self.files = msgspec.json.encode(list(files)).decode()
        self._fence(epoch)

    def _stale(self, epoch: int | None) -> bool:
        """Whether a write under ``epoch`` is older than the claim of the row's writes (the same worker
        took the item again meanwhile): it is left out, as the ledger would refuse it."""
        return epoch is not None and self.epoch is not None and epoch < self.epoch

    def _fence(self, epoch: int | None) -> None:
        if epoch is not None:
            self.epoch = epoch if self.epoch is None else max(self.epoch, epoch)

    @staticmethod
    def keep(waiting: dict[str, WrittenBehind], unwritten: dict[str, WrittenBehind]) -> None:
        """Put writes behind that could not be written back among those ``waiting`` for the next write:
        an item's newer write (made meanwhile: its item did not wait) keeps its values, and takes the
        older one's where it has none (a download made while its answer's write failed keeps the
        answer's process id)."""
        for key, older in unwritten.items():
            newer = waiting.setdefault(key, older)
            if newer is older:
                continue
            if older.state == ItemState.DOWNLOADED.value:
                newer.state = older.state
            for name in ("process_id", "user_id", "task_ids", "files", "epoch"):
                if getattr(newer, name) is None:
                    setattr(newer, name, getattr(older, name))


class NewItem(msgspec.Struct, frozen=True):
    """What registering an item needs: its key, position, label and feature."""

    key: str
    seq: int
    label: str
    feature: str


class SourceHash(msgspec.Struct, frozen=True):
    """A file's content hash with what identified the file then (host, path, size, mtime, inode)."""

    host: str
    path: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str


def finished_labels_of(records: Iterable[ItemRecord]) -> set[str]:
    """The labels all of whose records are final (see :meth:`RunLedger.finished_labels`)."""
    labels: dict[str, bool] = {}
    for record in records:
        labels[record.label] = labels.get(record.label, True) and record.final
    return {label for label, final in labels.items() if final}


def finished_example_of(records: Iterable[ItemRecord]) -> ItemRecord | None:
    """A downloaded record with its process id (see :meth:`RunLedger.finished_example`)."""
    return next((r for r in records if r.state is ItemState.DOWNLOADED and r.process_id), None)


#: States an answer under a stale epoch may be recorded over (see :data:`STALE_ANSWER_RULE`).
STALE_ANSWER_STATES = (ItemState.PENDING.value, ItemState.SUBMITTING.value, ItemState.UNKNOWN.value)


def stale_answer_fits(record: ItemRecord | None, user_id: str) -> bool:
    """Whether an answer under a stale epoch is recorded over ``record`` (:data:`STALE_ANSWER_RULE`)."""
    return (
        record is not None
        and record.process_id is None
        and record.state.value in STALE_ANSWER_STATES
        and (record.user_id or "").lower() == user_id.lower()
    )


def stale_answer_left(key: str, process_id: str) -> None:
    """Say that an answer under a stale epoch was left out (:data:`STALE_ANSWER_RULE`): its process id
    names a paid render, and this is where it is kept."""
    logger.warning(
        "item %s: process %s was made by a start call of a worker whose claim had passed to another; "
        "the item names a render already, which is kept (if it is another, process %s is one render "
        "too many)",
        key,
        process_id,
        process_id,
    )


def error_code(error: BaseException) -> str:
    """The stable code stored for an error: its class name (``RenderFailedError``)."""
    return type(error).__name__


def error_message(error: BaseException) -> str:
    """The text stored for an error (cut to :data:`MAX_MESSAGE`). SDK errors never hold secrets."""
    text = str(error)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip().replace("-", "")[:12]
    except OSError:
        return "-"


def _started(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat's 22nd field), or "-"."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            stat = file.read()
    except OSError:
        return "-"
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else "-"


def new_worker_id() -> str:
    """A worker's id: host, pid namespace, process id, the process's start (boot and start time: what a
    process that reuses the pid after a restart cannot have) and a random part (readable in ``runs
    show``)."""
    started = f"{_boot_id()}.{_started(os.getpid())}"
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{started}:{uuid.uuid4().hex[:8]}"


def dead_here(owner: str) -> bool:
    """Whether ``owner`` (a worker id) is a process of this machine and pid namespace that is gone: its
    claims can be taken over at once (a process that no longer exists sends nothing). A process that
    now has its pid is another one when it started at another time or boot (a restarted container
    reuses pids); ids of older versions (without the start) are judged by the pid alone."""
    parts = owner.split(":")
    if len(parts) not in (4, 5) or not parts[2].isdigit():
        return False
    host, namespace, pid = parts[0], parts[1], int(parts[2])
    if host != socket.gethostname() or namespace != _pid_namespace() or pid == os.getpid():
        return False
    if len(parts) == 5:
        boot, _, started = parts[3].partition(".")
        if boot != "-" and boot == _boot_id() and started != "-":
            now = _started(pid)
            if now not in ("-", started):
                return True  # its pid belongs to another process now (it may still exist, below, if "-")
        elif boot != "-" and _boot_id() not in ("-", boot):
            return True  # the machine restarted since: no process of an earlier boot still runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's) or cannot be asked: assume alive
        return False
    return False


class RunLedger(ABC):
    """The durable record of a bulk run's items. Use as an async context manager (or open/close).

    Backends: :class:`~adcreative_async.ledger.SqliteLedger` (a file; the default),
    :class:`~adcreative_async.ledger.PostgresLedger` (workers on many machines),
    :class:`~adcreative_async.ledger.MemoryLedger` (tests). Every method is a coroutine safe to call
    from many tasks at once; every write is durable (committed) when it returns, but for answers
    (:meth:`submitted`) and downloads (:meth:`downloaded`), which the SQLite and PostgreSQL ledgers
    write behind: committed later, before any read and on close (see their modules), and found again
    if lost.

    Attributes:
        run: the run's name: one ledger (a file, a database) can hold several runs.
    """

    run: str
    #: Whether :meth:`submitted` and :meth:`downloaded` hold their write before their first ``await`` and
    #: shield whatever they await (the built-in ledgers: written behind, then committed by a shielded
    #: write), so that a cancellation cannot lose them: a run's driver then calls them as they are, not
    #: in a shielded cancel scope of its own (two per item). False for other ledgers: shielded.
    _records_at_once: ClassVar[bool] = False

    async def __aenter__(self) -> RunLedger:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Open (and create, the first time) the storage. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Close the storage. Idempotent."""

    def rate_board(self, scope: str) -> RateBoard | None:
        """Where workers of this ledger share an account's learned request rate (``scope``: the account's
        fingerprint), once open; None (the default): nowhere, each process learns alone (see
        :class:`~adcreative_async.RateControl`). A PostgreSQL ledger shares it in its database."""
        return None

    @property
    @abstractmethod
    def namespace(self) -> str:
        """The run's namespace (a UUID made when the run was first recorded, new after :meth:`restart`):
        derived user ids come from it, so that two runs never share a user."""

    # ------------------------------------------------------------------------------------ reading

    @abstractmethod
    async def records(self, keys: Sequence[str] | None = None) -> dict[str, ItemRecord]:
        """The records of ``keys`` (those that exist), or of every item of the run."""

    @abstractmethod
    async def counts(self) -> dict[ItemState, int]:
        """How many items are in each state."""

    @abstractmethod
    async def process_ids(self, feature: str, user_id: str) -> set[str]:
        """Every process id the run recorded for (feature, user), lowercase."""

    async def finished_labels(self) -> set[str]:
        """The labels all of whose items are final: a resume looks at the other inputs first (a hint
        for the order of work only: every input's key is still computed and looked up). Backends
        override it with one cheap query; this default reads every record."""
        return finished_labels_of((await self.records()).values())

    async def finished_example(self) -> ItemRecord | None:
        """One downloaded item with its process id, if any (what tells whether the server keeps finished
        processes in listings). Backends override it with one cheap query; this default reads every
        record."""
        return finished_example_of((await self.records()).values())

    async def scan(
        self, visit: Callable[[ItemRecord, bool], None], *, states: Collection[ItemState] | None = None
    ) -> None:
        """Visit every record of the run (only those in ``states`` when given) in registration order,
        each with whether it is its input's latest record (an input whose content changed since has
        an earlier record under the same label). The SQLite and PostgreSQL backends read a batch of
        rows at a time (memory bounded whatever the run's size: see ``ledger._scan``); this default
        reads every record."""
        records = sorted((await self.records()).values(), key=lambda r: r.seq)
        latest: dict[str, ItemRecord] = {}
        for record in records:
            newest = latest.get(record.label)
            if newest is None or (record.created_at, record.seq) > (newest.created_at, newest.seq):
                latest[record.label] = record
        for record in records:
            if not states or record.state in states:
                visit(record, latest[record.label] is record)

    # ------------------------------------------------------------------------------------ claiming

    @abstractmethod
    async def register(self, items: Sequence[NewItem]) -> None:
        """Add the items not yet known as pending (known ones are left as they are)."""

    @abstractmethod
    async def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[ItemRecord]:
        """Claim, for ``lease`` seconds, the items of ``keys`` that are not final and not held by another
        live claim (never held, released, lapsed, or already ``owner``'s); returns them as claimed, each
        with its new :attr:`~ItemRecord.epoch` (incremented: the writes of every earlier claim are
        refused from now on) and :attr:`~ItemRecord.lapsed_for`."""

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        """:meth:`claim`, and with it the intent of each claimed item that is ``pending`` at the attempt
        ``intents`` gives for its key, with the user id it gives, as :meth:`intent` would (durable when
        this returns). Returns the claimed records and the keys whose intents this wrote.

        The backends here make it one write (one commit or statement for the claim and the intents, not
        two on the way of the start calls); this default, for other backends, makes the claim, then the
        intents.
        """
        claimed = await self.claim(keys, owner, lease)
        records: list[ItemRecord] = []
        intended: set[str] = set()
        for record in claimed:
            wanted = intents.get(record.key)
            if (
                wanted is not None
                and record.state is ItemState.PENDING
                and record.attempt == wanted[0]
                and await self.intent(record.key, owner, wanted[1], lease, epoch=record.epoch)
            ):
                intended.add(record.key)
                record = msgspec.structs.replace(record, state=ItemState.SUBMITTING, user_id=wanted[1])
            records.append(record)
        return records, intended

    @abstractmethod
    async def renew(self, owner: str, lease: float) -> set[str]:
        """Extend every live claim of ``owner`` (one whose lease has not lapsed) by ``lease`` seconds from
        now; the keys of those extended (a lapsed claim is never extended: others may hold the item)."""

    @abstractmethod
    async def release(self, owner: str, keys: Sequence[str] | None = None) -> None:
        """Give up every claim of ``owner`` (a clean stop), or only its claims on ``keys`` (items it
        stopped working on): others may take the items at once. The lease ends now (``lease_until`` is
        set to now: the moment a takeover counts from)."""

    # ------------------------------------------------------------------------------------- writing

    # Every write of an item's state takes ``epoch``: the fencing token of the claim it is made under
    # (ItemRecord.epoch as the claim returned it). A write whose token is no longer the item's is refused
    # (the item passed to another claim since); None writes unfenced (tools and tests that own the
    # ledger alone).

    @abstractmethod
    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        """Record the intent to send a start call (state ``submitting``), durable when this returns.

        Fenced: False (nothing written) when ``owner`` no longer holds a live claim on the item (or
        ``epoch`` is no longer the item's), or the item is no longer ``pending`` or ``submitting`` (its
        render is known); the caller must then not send the call.
        """

    @abstractmethod
    async def submitted(
        self, key: str, process_id: str, user_id: str, task_ids: Sequence[str], *, epoch: int | None = None
    ) -> None:
        """Record the start call's answer (or the adopted process): state ``submitted``. Under a stale
        ``epoch``, written only as :data:`STALE_ANSWER_RULE` says."""

    @abstractmethod
    async def tasks(self, key: str, task_ids: Sequence[str], *, epoch: int | None = None) -> None:
        """Record more task ids of a submitted item (servers may list tasks late)."""

    @abstractmethod
    async def downloaded(self, key: str, files: Sequence[str], *, epoch: int | None = None) -> None:
        """The item is finished: its files. The claim ends."""

    @abstractmethod
    async def failed(
        self,
        key: str,
        code: str,
        message: str,
        *,
        state: ItemState = ItemState.FAILED,
        epoch: int | None = None,
    ) -> bool:
        """The item is finished with an error (``failed``), or its render may exist (``unknown``). False
        when refused (``epoch`` is stale)."""

    @abstractmethod
    async def requeue(self, key: str, *, epoch: int | None = None) -> bool:
        """Back to ``pending`` from ``submitting`` or ``unknown`` (its start call is proven never to have
        made a render, or was never sent), keeping the claim. False when refused (``epoch`` is stale, or
        the item is in neither state)."""

    @abstractmethod
    async def retry_failed(self) -> int:
        """Every failed item back to ``pending`` with its attempt and epoch incremented; how many."""

    @abstractmethod
    async def reset_unfinished(self) -> int:
        """Every item started but not finished (``submitting``, ``submitted``) back to ``pending`` with its
        attempt and epoch incremented (a worker still at it can write nothing more): for renders known to
        be gone (the server they were sent to no longer exists, as an emulator that was stopped); how
        many. Never use it against a live server: those renders would be made again."""

    @abstractmethod
    async def restart(self) -> None:
        """Forget every item of the run and take a new namespace (start over)."""

    # ------------------------------------------------------------------------------ source hashes

    @abstractmethod
    async def source_hashes(self, host: str, paths: Sequence[str]) -> dict[str, SourceHash]:
        """The remembered content hashes of files of ``host``, by path."""

    @abstractmethod
    async def remember_sources(self, hashes: Iterable[SourceHash]) -> None:
        """Remember content hashes of files (a cache: a file whose size, mtime or inode changed is
        hashed again)."""
