"""The bulk commands' run ledger: kept in the output folder, resumed by default; and ``adcreative runs``.

``remove-bg`` and ``generate -o DIR`` record every item in ``DIR/.adcreative-run.sqlite``: the same command
run again (after Ctrl-C, a crash, a reboot) renders only what was not rendered, awaits what was started,
and reports the rest as finished before. ``--restart`` starts over, ``--retry-failed`` retries only the
failed items. ``DIR/.adcreative-run.json`` records which application the renders belong to, as a
fingerprint (a keyed hash: the file never holds the application id): a ledger is never resumed with
other credentials (their processes cannot be seen), except for the in-process emulator, whose renders
die with it (unfinished items are started again).

The ledger itself holds what recovering a render needs: each item's user id (derived for the run, and
the one its progress is asked for) and process id. It is a state store, like a credentials file: written
owner-only (0600, see :func:`adcreative_async.ledger.SqliteLedger`), never meant to be shared or shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio

from ..ledger import (
    FINAL_STATES,
    ItemRecord,
    ItemState,
    LedgerError,
    PostgresLedger,
    RenderRequest,
    RunLedger,
    SqliteLedger,
    request_keys,
)
from ..ledger._scan import PostgresReader, Visit, records_in_file, scan_file, scan_postgres
from ._common import ENV_LEDGER, EXIT_OK, EXIT_USAGE, Session, UsageError, is_dsn
from ._display import print_table

__all__ = [
    "LEDGER_FILE",
    "RUN_INFO_FILE",
    "dry_run_lookup",
    "interrupted_message",
    "open_run_ledger",
    "resume_command",
    "runs_show",
    "spend_line",
]

LEDGER_FILE = ".adcreative-run.sqlite"
RUN_INFO_FILE = ".adcreative-run.json"

#: The key of the run file's application fingerprint (a BLAKE2b keyed hash of the application id).
_FINGERPRINT_KEY = b"adcreative-async run file: application"


def application_fingerprint(application_id: str) -> str:
    """What the run file records of the application: a keyed hash of its id (the same id, in any case,
    gives the same fingerprint; the id cannot be read back from it)."""
    digest = hashlib.blake2b(application_id.lower().encode(), key=_FINGERPRINT_KEY, digest_size=16)
    return digest.hexdigest()


async def open_run_ledger(session: Session, out: Path) -> RunLedger | None:
    """The output folder's ledger, opened, with ``--restart`` / ``--retry-failed`` applied and what is
    resumed said; None with ``--no-ledger``.

    Raises:
        UsageError: the ledger's renders belong to another application (other credentials).
    """
    args = session.args
    spec = ledger_spec(args)
    if getattr(args, "no_ledger", False):
        if spec is not None:
            raise UsageError("--no-ledger and --ledger (or ADCREATIVE_LEDGER): choose one")
        return None
    ledger = _ledger_of(spec, out)
    try:
        await ledger.open()
    except LedgerError as exc:  # its message never holds the DSN's password; redacted again by the caller
        where = (
            "check the DSN and the database"
            if spec is not None and is_dsn(spec)
            else ("remove or move it to start a new run, or choose another -o")
        )
        raise UsageError(f"{exc} ({where})") from None
    try:
        await _check_application(session, ledger, out)
        if args.restart:
            recorded = sum((await ledger.counts()).values())
            _confirm_restart(session, out, recorded)
            await ledger.restart()
            session.say(
                f"--restart: the run ledger in {out} starts over: every input is rendered again "
                f"({recorded} item(s) were recorded)"
            )
        elif args.retry_failed:
            retried = await ledger.retry_failed()
            session.say(f"--retry-failed: {retried} failed item(s) will be rendered again")
        counts = await ledger.counts()
        if any(counts.values()):
            session.say(_resume_line(counts))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ledger.close()
        raise
    return ledger


def ledger_spec(args: Any) -> str | None:
    """``--ledger`` (or ``ADCREATIVE_LEDGER``): a SQLite file or a PostgreSQL DSN; None: the output
    folder's own SQLite file."""
    spec = getattr(args, "ledger", None) or os.environ.get(ENV_LEDGER, "").strip()
    return spec or None


def _ledger_of(spec: str | None, out: Path) -> RunLedger:
    """The ledger ``--ledger`` names (not opened): a PostgreSQL DSN's run is its ``#NAME``, else the
    output folder's name (so that runs into other folders do not share one); a SQLite file; else the
    output folder's own file."""
    if spec is not None and is_dsn(spec):
        dsn, run = _postgres_run(spec, out)
        return PostgresLedger(dsn, run=run)
    return SqliteLedger(os.path.expanduser(spec) if spec is not None else out / LEDGER_FILE)


def _postgres_run(spec: str, out: Path) -> tuple[str, str]:
    """A ``--ledger`` DSN's connection string, and its run: its ``#NAME``, else the output folder's name."""
    dsn, _, name = spec.strip().partition("#")
    return dsn, name or os.path.basename(os.path.abspath(out)) or "default"


def ledger_file(args: Any) -> Path | None:
    """The SQLite run ledger file of a run (``--dry-run`` reads it), None with ``--no-ledger``."""
    if getattr(args, "no_ledger", False):
        return None
    spec = ledger_spec(args)
    return Path(os.path.expanduser(spec)) if spec is not None else Path(args.output) / LEDGER_FILE


def uses_folder_ledger(args: Any) -> bool:
    """Whether the run's ledger is its output folder's own SQLite file (what ``runs show DIR`` reads)."""
    return not getattr(args, "no_ledger", False) and ledger_spec(args) is None


def _confirm_restart(session: Session, out: Path, recorded: int) -> None:
    """``--restart`` renders every input again, each a new paid render: asked on a terminal, else
    ``--yes`` is needed.

    Raises:
        UsageError: not confirmed.
    """
    if session.args.yes or recorded == 0:
        return
    question = (
        f"--restart forgets the {recorded} item(s) recorded in {out} and renders every input again: each "
        "is a new paid render, also those already done."
    )
    if sys.stdin.isatty() and sys.stderr.isatty() and not session.json:
        sys.stderr.write(f"{question} Continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() in ("y", "yes"):
            return
        raise UsageError("--restart not confirmed: nothing was sent")
    raise UsageError(f"{question} Add --yes to confirm (nothing was sent).")


def _resume_line(counts: dict[ItemState, int]) -> str:
    finished = counts[ItemState.DOWNLOADED]
    started = counts[ItemState.SUBMITTED] + counts[ItemState.SUBMITTING]
    failed = counts[ItemState.FAILED]
    unknown = counts[ItemState.UNKNOWN]
    parts = [f"resuming: {finished} item(s) finished before (not rendered again)"]
    if started:
        parts.append(f"{started} started before (awaited, not started again)")
    if failed:
        parts.append(f"{failed} failed before (--retry-failed renders them again)")
    if unknown:
        parts.append(
            f"{unknown} may have been rendered (looked for again now: adopted if found, rendered once "
            "proven never made; see `adcreative runs show`)"
        )
    return ", ".join(parts)


async def _check_application(session: Session, ledger: RunLedger, out: Path) -> None:
    info_path = anyio.Path(out / RUN_INFO_FILE)
    application = application_fingerprint(session.client.application_id)
    emulator = session.emulator is not None
    previous: dict[str, Any] = {}
    if await info_path.exists():
        try:
            previous = json.loads(await info_path.read_text())
        except ValueError:
            previous = {}
    before = previous.get("application")
    if before is None and isinstance(previous.get("application_id"), str):  # a run file of 0.x
        before = application_fingerprint(previous["application_id"])
    if before and before != application and not session.args.restart:
        if emulator and previous.get("emulator"):
            reset = await ledger.reset_unfinished()
            if reset:
                session.say(
                    f"the previous run's emulator is gone with its renders: {reset} unfinished item(s) "
                    "start again (nothing was billed)"
                )
        else:
            raise UsageError(
                f"the run ledger in {out} holds renders of another application than these credentials' "
                "(the run file records a fingerprint of each): use the same credentials, another output "
                "folder, or --restart"
            )
    document = {"application": application, "emulator": emulator}
    await info_path.write_text(json.dumps(document))


#: Options left out of the command shown to resume a run: those that would start it over, and the
#: credentials (never printed; the same environment or options are needed again).
_NOT_RESUMED = frozenset({"--restart", "--yes", "--dry-run"})
_CREDENTIAL_OPTIONS = frozenset(
    {"--application-id", "--api-key", "--api-secret", "--jwt-private-key", "--base-url", "--user-id"}
)


def _option_value(argv: Sequence[str], position: int, equals: str, value: str) -> str:
    """The value of the option at ``position`` of ``argv``: what follows its ``=``, else the next
    argument ("" when there is none)."""
    if equals:
        return value
    return argv[position + 1] if position + 1 < len(argv) else ""


def resume_command(argv: Sequence[str]) -> str:
    """The command that resumes a run started with ``argv``: the same one, without what would start it
    over (``--restart``) and without credentials; a ``--ledger`` DSN is shown as :data:`DSN_SHOWN`."""
    kept: list[str] = []
    skip = False
    masked = False
    for position, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name, equals, value = arg.partition("=")
        if name in _CREDENTIAL_OPTIONS:
            skip = not equals
            continue
        if name in _NOT_RESUMED:
            continue
        if name == "--ledger":
            value = _option_value(argv, position, equals, value)
            skip = not equals
            masked = masked or is_dsn(value)
            kept += ["--ledger", DSN_SHOWN if is_dsn(value) else value]
            continue
        kept.append(arg)
    command = "adcreative " + shlex.join(kept)
    return command + " (--ledger: the same DSN, not shown)" if masked else command


def failures_command(argv: Sequence[str]) -> str:
    """The ``runs show`` command that lists every failure of the run started with ``argv``: by its
    ``--ledger`` (a DSN shown as :data:`DSN_SHOWN`: it may hold a password), else by its output folder."""
    ledger: str | None = None
    output: str | None = None
    for position, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if name in ("--ledger", "-o", "--output"):
            value = _option_value(argv, position, equals, value)
            if name == "--ledger":
                ledger = value
            else:
                output = value
    if ledger is not None and is_dsn(ledger):
        return f"adcreative runs show --ledger {DSN_SHOWN} --state failed (the same DSN, not shown)"
    if ledger is not None:
        return f"adcreative runs show --ledger {shlex.quote(ledger)} --state failed"
    return f"adcreative runs show {shlex.quote(output or 'DIR')} --state failed"


#: A ``--ledger`` DSN in the command shown to resume a run (the DSN may hold a password: never shown).
DSN_SHOWN = "postgresql://..."


async def interrupted_message(ledger: RunLedger, labels: Iterable[str], argv: Sequence[str]) -> str:
    """Where an interrupted run stands, from its ledger (``labels``: the run's inputs, as recorded, read
    once): done, paid for but not yet downloaded (downloaded by a rerun, not paid again), not started,
    failed (the first :data:`MAX_FAILED_SHOWN` with the API's reasons), and the exact command that
    resumes it. Memory: a hash per input (:class:`HashSet`) and the records shown, never the run's
    records (the ledger is read a batch of rows at a time: :meth:`RunLedger.scan`)."""
    wanted = HashSet(labels)
    counts = dict.fromkeys(ItemState, 0)
    shown: list[ItemRecord] = []

    def visit(record: ItemRecord, current: bool) -> None:
        if not current or record.label not in wanted:
            return
        counts[record.state] += 1
        if record.state is ItemState.FAILED and len(shown) < MAX_FAILED_SHOWN:
            shown.append(record)

    await ledger.scan(visit)
    done = counts[ItemState.DOWNLOADED]
    paid = counts[ItemState.SUBMITTED] + counts[ItemState.SUBMITTING]
    failed = counts[ItemState.FAILED]
    unknown = counts[ItemState.UNKNOWN]
    not_started = len(wanted) - done - paid - failed - unknown
    lines = [
        f"interrupted: of {len(wanted)} input(s), {done} done, {paid} paid for but not yet downloaded "
        f"(a rerun downloads them without paying again), {not_started} not started"
        + (f", {unknown} that may have been rendered (a rerun looks for them first)" if unknown else "")
        + (f", {failed} failed:" if failed else "")
    ]
    lines += [f"  {r.label}: {r.error_code}: {r.error_message}" for r in shown]
    if failed > MAX_FAILED_SHOWN:
        lines.append(f"  ... and {failed - MAX_FAILED_SHOWN} more ({failures_command(argv)})")
    lines.append(f"to resume (nothing done is sent again): {resume_command(argv)}")
    return "\n".join(lines)


class HashSet:
    """Which of many strings (a run's input labels, its keys) were seen: a 64-bit hash of each kept
    (about 60 bytes a string), never the string. Two strings hashing alike (about one chance in 10^7
    for a million strings) count as one: what it is used for is counting, never deciding a render."""

    __slots__ = ("_hashes",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._hashes: set[int] = {hash(value) for value in values}

    def add(self, value: str) -> bool:
        """Note ``value``; whether it was new."""
        digest = hash(value)
        if digest in self._hashes:
            return False
        self._hashes.add(digest)
        return True

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and hash(value) in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)


#: Failed items listed by the Ctrl-C summary (the rest are counted).
MAX_FAILED_SHOWN = 10


#: Inputs keyed and looked up in the ledger together by the spend line of a resumed run (its memory).
SPEND_CHUNK = 2048


async def spend_line(
    requests: Sequence[RenderRequest], ledger: RunLedger | None, lookup: Lookup | None = None
) -> str:
    """What a run of ``requests`` will spend, said before it starts: the inputs, those done already, those
    whose render exists (downloaded only), those to reconcile, those failed before, and the renders to
    be paid (one per distinct input: the same content twice is rendered once).

    ``ledger``: the open run ledger; or None to look records up with ``lookup`` without writing anything
    (``--dry-run``: see :func:`dry_run_lookup`; no lookup: nothing done yet). The inputs are keyed and
    looked up
    :data:`SPEND_CHUNK` at a time: memory is a chunk's requests and records, and a hash per distinct
    input (:class:`HashSet`), whatever the run's size.
    """
    if ledger is not None and not any((await ledger.counts()).values()):
        # a first run: nothing is done, and hashing every input here would hold back the first start
        # call until the last file is read (the run hashes them a chunk at a time as it goes)
        return f"{len(requests)} input(s), a new run: up to {len(requests)} to render (one paid render each)"
    seen = HashSet()
    counts = dict.fromkeys(ItemState, 0)
    refused = 0
    for start in range(0, len(requests), SPEND_CHUNK):
        keys = await request_keys(requests[start : start + SPEND_CHUNK], ledger)
        fresh = [key for key in keys if isinstance(key, str) and seen.add(key)]
        refused += len(keys) - sum(1 for key in keys if isinstance(key, str))
        if ledger is not None:
            records = await ledger.records(fresh)
        elif lookup is not None:
            try:
                records = await lookup(fresh)
            except LedgerError as exc:
                raise UsageError(str(exc)) from None
        else:
            records = {}
        for key in fresh:
            record = records.get(key)
            counts[record.state if record is not None else ItemState.PENDING] += 1
    parts = [f"{len(requests)} input(s)"]
    if len(seen) + refused < len(requests):
        parts.append(f"{len(requests) - len(seen) - refused} the same as another (one render, a file each)")
    parts.append(f"{counts[ItemState.DOWNLOADED]} done already")
    if counts[ItemState.SUBMITTED]:
        parts.append(f"{counts[ItemState.SUBMITTED]} to download only (paid before)")
    reconcile = counts[ItemState.SUBMITTING] + counts[ItemState.UNKNOWN]
    if reconcile:
        parts.append(f"{reconcile} to look for first (their start call may have been paid)")
    if counts[ItemState.FAILED]:
        parts.append(f"{counts[ItemState.FAILED]} failed before (--retry-failed renders them again)")
    to_render = counts[ItemState.PENDING]
    return ", ".join(parts) + f": {to_render} to render ({to_render} render(s) to be paid)"


#: The run of a output folder's own SQLite ledger file.
DEFAULT_RUN = "default"

Lookup = Callable[[list[str]], Awaitable[dict[str, ItemRecord]]]
"""The records of some keys (those that exist) in a run ledger, read without writing anything."""


@contextlib.asynccontextmanager
async def dry_run_lookup(args: Any, out: Path) -> AsyncIterator[Lookup | None]:
    """How ``--dry-run`` reads the run's ledger, writing nothing: a PostgreSQL ``--ledger`` on a read-only
    connection of its own (its run: the DSN's ``#NAME``, else the output folder's name, as a run names
    it); a SQLite file read-only (``--ledger FILE``, else the output folder's); None when there is no
    ledger yet (no file), or with ``--no-ledger``.

    Raises:
        UsageError: the PostgreSQL ledger cannot be reached or read (the message never holds the DSN).
    """
    spec = ledger_spec(args)
    if spec is not None and is_dsn(spec) and not getattr(args, "no_ledger", False):
        try:
            async with PostgresReader(*_postgres_run(spec, out)) as reader:
                yield reader.records
        except LedgerError as exc:
            raise UsageError(f"{exc} (check the DSN and the database)") from None
        return
    path = ledger_file(args)
    if path is None or not await anyio.Path(path).exists():
        yield None
        return

    async def read(keys: list[str]) -> dict[str, ItemRecord]:
        return await anyio.to_thread.run_sync(records_in_file, path, DEFAULT_RUN, keys)

    yield read


def say_interrupted(message: str) -> None:
    """Print the Ctrl-C summary on stderr (the display may already be gone)."""
    sys.stderr.write(f"adcreative: {message}\n")
    sys.stderr.flush()


def _ledger_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if path.is_dir():
        path = path / LEDGER_FILE
    if not path.is_file():
        raise UsageError(f"no run ledger at {raw} (a bulk command's output folder, or its {LEDGER_FILE})")
    return path


#: Rows ``runs show`` prints per table: the table is printed a page at a time, never every row held.
SHOW_PAGE = 1000

_Scan = Callable[[Visit, "Collection[ItemState] | None"], None]


def _show_source(raw: str | None, spec: str | None) -> tuple[str, _Scan]:
    """What ``runs show`` reads (shown as), and how: a SQLite file read-only (the output folder's, or
    ``--ledger FILE``), or a PostgreSQL run (``--ledger DSN``: its ``#NAME``, else the folder's name as
    the run commands name it) on a connection of its own. The DSN is never shown."""
    if spec is not None and is_dsn(spec):
        dsn, _, name = spec.strip().partition("#")
        run = name or (os.path.basename(os.path.abspath(os.path.expanduser(raw))) if raw else "")
        if not run:
            raise UsageError(
                "runs show --ledger DSN: give the run's output folder (DIR), or its name as #NAME at the "
                "end of the DSN"
            )

        def scan_database(visit: Visit, states: Collection[ItemState] | None) -> None:
            anyio.run(scan_postgres, dsn, run, visit, states)

        return f"{DSN_SHOWN}#{run}", scan_database
    if spec is None and raw is None:
        raise UsageError("runs show: give the run's output folder (DIR), or --ledger FILE_OR_DSN")
    path = _ledger_path(spec if spec is not None else str(raw))

    def scan_path(visit: Visit, states: Collection[ItemState] | None) -> None:
        scan_file(path, visit, states)

    return str(path), scan_path


def runs_show(raw: str | None, *, states: Sequence[str], as_json: bool, spec: str | None = None) -> int:
    """``adcreative runs show DIR``: the items of the run in DIR (or of ``--ledger FILE_OR_DSN``), read
    without writing anything.

    An item is *current* when it is its input's latest record; an earlier one (the input changed since,
    or was rendered again under other parameters) is marked ``earlier`` and counted apart, so that an
    old failure is not taken for today's. The ledger is read twice, a batch of rows at a time (the
    counts, then the items shown, each printed as it is read: ``--json`` streams its one line, a table
    is printed :data:`SHOW_PAGE` rows at a time): memory is bounded whatever the run's size.
    """
    where, scan = _show_source(raw, spec)
    wanted = {ItemState(state) for state in states}
    counts = {state.value: 0 for state in ItemState}
    every = dict.fromkeys(ItemState, 0)  # records per state, current or earlier: those shown
    earlier = 0

    def count(record: ItemRecord, current: bool) -> None:
        nonlocal earlier
        every[record.state] += 1
        if current:
            counts[record.state.value] += 1
        else:
            earlier += 1

    try:
        scan(count, None)
        if as_json:
            _show_json(where, scan, wanted, counts, earlier)
            return EXIT_OK
        summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no items"
        if earlier:
            summary += f"; {earlier} earlier record(s) of inputs that changed since"
        if states:
            shown = sum(every[state] for state in wanted)
            listed = " or ".join(states)
            summary += f"; {shown} {listed} shown" if shown else f"; no items {listed}"
        _show_table(f"Run ledger {where}: {summary}", scan, wanted)
    except LedgerError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _show_json(
    where: str, scan: _Scan, wanted: Collection[ItemState], counts: dict[str, int], earlier: int
) -> None:
    """The ``--json`` document, one line as every ``--json`` output, its items written as read."""
    head = json.dumps({"ok": True, "ledger": where, "counts": counts, "earlier": earlier})
    out = sys.stdout
    out.write(head[:-1] + ', "items": [')
    separator = ""

    def item(r: ItemRecord, current: bool) -> None:
        nonlocal separator
        document = {
            "label": r.label,
            "key": r.key,
            "feature": r.feature,
            "state": r.state.value,
            "current": current,
            "attempt": r.attempt,
            "process_id": r.process_id,
            "task_ids": list(r.task_ids),
            "files": list(r.files),
            "error": {"code": r.error_code, "message": r.error_message} if r.error_code else None,
            "owner": r.owner if r.state not in FINAL_STATES else None,
        }
        out.write(separator + json.dumps(document))
        separator = ", "

    scan(item, wanted)
    out.write("]}\n")
    out.flush()


def _show_table(title: str, scan: _Scan, wanted: Collection[ItemState]) -> None:
    """The items as a table (titled ``title``), printed :data:`SHOW_PAGE` rows at a time."""
    columns = ["input", "state", "process", "result"]
    page: list[list[str]] = []
    pages = 0

    def flush() -> None:
        nonlocal pages
        print_table(title if pages == 0 else None, columns, page)
        pages += 1
        page.clear()

    def row(r: ItemRecord, current: bool) -> None:
        page.append(
            [
                r.label if current else f"{r.label} (earlier)",
                r.state.value,
                r.process_id or "",
                ", ".join(r.files)
                if r.files
                else (f"{r.error_code}: {r.error_message}" if r.error_code else ""),
            ]
        )
        if len(page) >= SHOW_PAGE:
            flush()

    scan(row, wanted)
    if page or pages == 0:
        flush()


def runs_command(args: Any) -> int:
    """Dispatch ``adcreative runs ...``."""
    if args.runs_command == "show":
        return runs_show(args.run, states=args.state or (), as_json=bool(args.json), spec=ledger_spec(args))
    return EXIT_USAGE  # pragma: no cover - argparse refuses other subcommands
