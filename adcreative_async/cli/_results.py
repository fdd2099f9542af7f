"""The results of a command run item by item, as they come: streamed out, counted, never kept per input.

A bulk command's memory must not grow with its inputs (issue 23): nothing here holds a row per input.

- ``--json``: JSON Lines. Each item is one object (``"type": "item"``) printed and flushed as the item
  finishes; the command's last line is its summary (``"type": "summary"``): the counts, the failures
  per error code, the first :data:`MAX_FAILURES_SHOWN` failures, and where the full list is. A script
  reads the output line by line; a stream without a summary line was interrupted.
- Otherwise ``--summary all`` prints each item's row as it finishes, then the counts; ``--summary failed``
  (the default) a table of the first :data:`MAX_FAILURES_SHOWN` failures at the end, with where the rest
  are; ``--summary none`` nothing.
- The full list of failures: the run ledger (``adcreative runs show DIR --state failed``) when it is the
  output folder's SQLite file; else, with an output folder, :data:`FAILURES_FILE` in it, a line of JSON
  per failure appended as the item fails (this run's failures: an earlier run's file is replaced).

:class:`LiveRows` keeps the display rows of the items in flight only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar, overload

from .._errors import NotStartedError
from ._common import Session
from ._display import Display

__all__ = ["FAILURES_FILE", "MAX_FAILURES_SHOWN", "LazySequence", "LiveRows", "Results", "error_code"]

#: Failures shown in the summary (the table, and the ``--json`` summary's ``failures_sample``); the rest
#: are counted, and listed where the summary says.
MAX_FAILURES_SHOWN = 20
#: Where a run without its output folder's SQLite ledger lists every failure (a line of JSON each).
FAILURES_FILE = ".adcreative-failures.jsonl"

T = TypeVar("T")
R = TypeVar("R")


def error_code(error: BaseException) -> str:
    """An error's code, as the run ledger records it: its class name (a failure recorded by an earlier
    run: the code recorded)."""
    code = getattr(error, "code", None)
    if type(error).__name__ == "RecordedError" and isinstance(code, str) and code:
        return code
    return type(error).__name__


def error_document(error: BaseException | None) -> dict[str, str] | None:
    """An item's error in its JSON line (None for none)."""
    if error is None:
        return None
    return {"type": error_code(error), "message": str(error)}


class LazySequence(Sequence[R]):
    """``[make(item) for item in items]`` without the list: each element made when it is read (a bulk run
    reads its inputs as it goes, so a million requests are never held at once)."""

    def __init__(self, items: Sequence[T], make: Callable[[T], R]) -> None:
        self._items: Sequence[Any] = items
        self._make: Callable[[Any], R] = make

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[R]: ...

    def __getitem__(self, index: int | slice) -> R | Sequence[R]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])

    def __iter__(self) -> Iterator[R]:
        return map(self._make, self._items)


class LiveRows:
    """The display rows of the items in flight: an item's row is added when it is first seen and leaves
    when it is done (an item finished before gets its row only to be marked done)."""

    def __init__(self, display: Display) -> None:
        self._display = display
        self._rows: dict[int, int] = {}  # item index -> display row, items in flight only

    def of(self, index: int, label: str, *, total: float | None = 100) -> int:
        """The row of item ``index`` (added now, labelled ``label``, if it has none)."""
        row = self._rows.get(index)
        if row is None:
            row = self._rows[index] = self._display.add(label, total=total)
        return row

    def done(self, index: int, label: str, *, ok: bool, status: str) -> None:
        """Mark item ``index`` finished: its row leaves."""
        row = self._rows.pop(index, None)
        if row is None:
            row = self._display.add(label)
        self._display.done(row, ok=ok, status=status)


class Results:
    """A command's item results: each streamed as it comes (see the module doc) and counted.

    Args:
        session: the command's session (its ``--json`` and ``--summary``).
        columns: the summary table's columns (an item's rows have as many cells).
        full_list: where every failure is listed, said in the summary (a command, or None when only
            ``--json`` lists them); replaced by the failures file's path when ``failures_file`` is given.
        failures_file: a file to list each failure in, as it happens (replaced if it exists).
    """

    def __init__(
        self,
        session: Session,
        columns: Sequence[str],
        *,
        full_list: str | None = None,
        failures_file: Path | None = None,
    ) -> None:
        self._session = session
        self._columns = list(columns)
        self._mode: str = getattr(session.args, "summary", "all")
        self.succeeded = 0
        self.failed = 0
        self.not_started = 0
        self.resumed = 0
        self.errors: Counter[str] = Counter()  # failures per error code: bounded by the codes, not items
        self._sample: list[dict[str, Any]] = []
        self._sample_rows: list[list[Any]] = []
        self._failures_path = failures_file
        self._failures: IO[str] | None = None
        self.full_list = str(failures_file) if failures_file is not None else full_list
        if failures_file is not None:
            with contextlib.suppress(FileNotFoundError):  # this run's failures only: not an earlier run's
                failures_file.unlink()

    @property
    def total(self) -> int:
        """Items reported so far."""
        return self.succeeded + self.failed + self.not_started

    def add(
        self,
        document: dict[str, Any],
        rows: Sequence[Sequence[Any]],
        *,
        error: BaseException | None,
        resumed: bool = False,
        echo: bool = False,
    ) -> None:
        """Report one item as it finishes: ``document`` is its JSON line (``--json``), ``rows`` its rows of
        the summary table (printed now with ``--summary all``, or ``echo``)."""
        session = self._session
        self.resumed += resumed
        if error is None:
            self.succeeded += 1
        elif isinstance(error, NotStartedError):  # --max-renders: not a failure, left for the next run
            self.not_started += 1
        else:
            self.failed += 1
            self.errors[error_code(error)] += 1
            if len(self._sample) < MAX_FAILURES_SHOWN:
                self._sample.append(document)
                self._sample_rows.extend(list(row) for row in rows)
            self._list_failure(document, error)
        if session.json:
            session.emit({"type": "item", **document})
        elif (echo or self._mode == "all") and self._mode != "none":
            for row in rows:
                session.display.echo("  ".join("" if cell is None else str(cell) for cell in row))

    def _list_failure(self, document: dict[str, Any], error: BaseException) -> None:
        if self._failures_path is None:
            return
        if self._failures is None:
            descriptor = os.open(self._failures_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._failures = os.fdopen(descriptor, "a", encoding="utf-8", buffering=1)  # a line at a time
        label = document.get("input", document.get("brief", document.get("task_id")))
        line = {"input": label, "error": error_document(error)}
        self._failures.write(json.dumps(line, default=str) + "\n")

    def close(self) -> None:
        """Close the failures file (idempotent)."""
        if self._failures is not None:
            self._failures.close()
            self._failures = None

    def finish(self, **extra: Any) -> int:
        """Set the command's summary document (the last ``--json`` line) and say what was not started
        (``--max-renders``); returns the number of items that failed."""
        self.close()
        session = self._session
        session.document = {
            "type": "summary",
            "ok": self.failed == 0,
            **extra,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "not_started": self.not_started,
            "errors": dict(self.errors),
            "failures_sample": self._sample,
            "failures_list": self.full_list if self.failed else None,
        }
        if self.not_started:
            session.say(
                f"--max-renders: {getattr(session.args, 'max_renders', None)} start call(s) sent; "
                f"{self.not_started} input(s) not started: run the same command again to go on (nothing "
                "done is sent again)"
            )
        return self.failed

    def summary(self, title: str) -> None:
        """Print the summary as ``--summary`` asks (never with ``--json``): the title; with ``failed``
        the first failures' rows, the failures per error code and where the rest are listed."""
        session = self._session
        if session.json or self._mode == "none":
            return
        if not self.failed:
            _line(session, title)
            return
        codes = ", ".join(f"{n} {code}" for code, n in self.errors.most_common())
        if self._mode == "failed":
            session.table(f"{title}; failed ({codes}):", self._columns, self._sample_rows)
            if self.failed > len(self._sample):
                _line(session, f"... and {self.failed - len(self._sample)} more failed: {self._where()}")
        else:  # every item's row was printed as it finished
            _line(session, f"{title}; failed: {codes}")
            if self.full_list:
                _line(session, f"every failure: {self.full_list}")

    def _where(self) -> str:
        return self.full_list or "run with --json for every item"


def _line(session: Session, text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
