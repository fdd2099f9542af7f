"""The run ledger's interface: one durable record per bulk item, and what every backend must do.

An item is keyed by its idempotency key (see :mod:`adcreative_async.ledger._requests`): the input's content
hash, the request's canonical parameters and the feature. Its life::

    pending -> submitting (intent, durable before the paid call) -> submitted (process id, right after)
            -> downloaded (files)          failed (typed error)          unknown (the render may exist)

Many workers share one ledger through claims: a worker owns an item while its lease runs (renewed while
the worker lives); an item whose lease lapsed passes to whoever claims it next. Every write that matters
for exactly-once is fenced by the lease: a worker that lost an item cannot record an intent for it.

What is stored: keys (hashes), labels (the input's name as the caller gave it), feature names, states,
process, task and user ids, file paths, error codes and messages, times. Never a credential: nothing of
the client's configuration reaches a ledger.
"""

from __future__ import annotations

import enum
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import msgspec

from .._errors import LedgerError

__all__ = [
    "DEFAULT_LEASE",
    "FINAL_STATES",
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

    @property
    def final(self) -> bool:
        """Whether the item is done with (downloaded or failed)."""
        return self.state in FINAL_STATES


#: Writes behind are committed by the write that makes them this many, if no other write came first (a
#: claim, a read, the lease renewal, a release): measured with PostgreSQL, a bulk run's last flush of
#: about 1,000 downloads took 0.19 s at its end.
BEHIND_ROWS = 128


class WrittenBehind:
    """An item's answer and download not yet written (the SQLite and PostgreSQL backends write them
    behind, with their next write): its state, process id, user id, task ids and files (JSON lists); a
    None keeps the stored value."""

    __slots__ = ("files", "process_id", "state", "task_ids", "user_id")

    def __init__(self) -> None:
        self.state = ""
        self.process_id: str | None = None
        self.user_id: str | None = None
        self.task_ids: str | None = None
        self.files: str | None = None

    def answered(self, process_id: str, user_id: str, task_ids: Sequence[str]) -> None:
        """The start call's answer (a download noted already stays the state)."""
        if self.state != ItemState.DOWNLOADED.value:
            self.state = ItemState.SUBMITTED.value
        self.process_id, self.user_id = process_id, user_id
        self.task_ids = msgspec.json.encode(list(dict.fromkeys(task_ids))).decode()

    def downloaded(self, files: Sequence[str]) -> None:
        """The item's files: it is finished."""
        self.state = ItemState.DOWNLOADED.value
        self.files = msgspec.json.encode(list(files)).decode()

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
            for name in ("process_id", "user_id", "task_ids", "files"):
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


def new_worker_id() -> str:
    """A worker's id: host, pid namespace, process id and a random part (readable in ``runs show``)."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dead_here(owner: str) -> bool:
    """Whether ``owner`` (a worker id) is a process of this machine and pid namespace that is gone: its
    claims can be taken over at once (a process that no longer exists sends nothing)."""
    parts = owner.split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host, namespace, pid = parts[0], parts[1], int(parts[2])
    if host != socket.gethostname() or namespace != _pid_namespace() or pid == os.getpid():
        return False
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
    from many tasks at once; every write is durable (committed) when it returns.

    Attributes:
        run: the run's name: one ledger (a file, a database) can hold several runs.
    """

    run: str

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

    # ------------------------------------------------------------------------------------ claiming

    @abstractmethod
    async def register(self, items: Sequence[NewItem]) -> None:
        """Add the items not yet known as pending (known ones are left as they are)."""

    @abstractmethod
    async def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[ItemRecord]:
        """Claim, for ``lease`` seconds, the items of ``keys`` that are not final and not held by another
        live claim (never held, released, lapsed, or already ``owner``'s); returns them as claimed."""

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
                and await self.intent(record.key, owner, wanted[1], lease)
            ):
                intended.add(record.key)
                record = msgspec.structs.replace(record, state=ItemState.SUBMITTING, user_id=wanted[1])
            records.append(record)
        return records, intended

    @abstractmethod
    async def renew(self, owner: str, lease: float) -> int:
        """Extend every live claim of ``owner`` by ``lease`` seconds from now; how many."""

    @abstractmethod
    async def release(self, owner: str) -> None:
        """Give up every claim of ``owner`` (a clean stop): others may take the items at once."""

    # ------------------------------------------------------------------------------------- writing

    @abstractmethod
    async def intent(self, key: str, owner: str, user_id: str, lease: float) -> bool:
        """Record the intent to send a start call (state ``submitting``), durable when this returns.

        Fenced: False (nothing written) when ``owner`` no longer holds a live claim on the item; the
        caller must then not send the call.
        """

    @abstractmethod
    async def submitted(self, key: str, process_id: str, user_id: str, task_ids: Sequence[str]) -> None:
        """Record the start call's answer (or the adopted process): state ``submitted``."""

    @abstractmethod
    async def tasks(self, key: str, task_ids: Sequence[str]) -> None:
        """Record more task ids of a submitted item (servers may list tasks late)."""

    @abstractmethod
    async def downloaded(self, key: str, files: Sequence[str]) -> None:
        """The item is finished: its files. The claim ends."""

    @abstractmethod
    async def failed(self, key: str, code: str, message: str, *, state: ItemState = ItemState.FAILED) -> None:
        """The item is finished with an error (``failed``), or its render may exist (``unknown``)."""

    @abstractmethod
    async def requeue(self, key: str) -> None:
        """Back to ``pending`` (its start call is proven never to have made a render), keeping the claim."""

    @abstractmethod
    async def retry_failed(self) -> int:
        """Every failed item back to ``pending`` with its attempt incremented; how many."""

    @abstractmethod
    async def reset_unfinished(self) -> int:
        """Every item started but not finished (``submitting``, ``submitted``) back to ``pending`` with its
        attempt incremented: for renders known to be gone (the server they were sent to no longer exists,
        as an emulator that was stopped); how many. Never use it against a live server: those renders
        would be made again."""

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
