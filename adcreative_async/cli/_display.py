"""What the console script shows while it works: live progress rows, log lines and a summary table.

Three displays share one small interface, chosen by ``--progress`` (and ``--json``):

- :class:`BarsDisplay`: rich's live progress bars, one row per job (or file) and an overall row, for a
  terminal. Needs the ``cli`` extra (``rich``).
- :class:`LinesDisplay`: one plain line per change of a row's status, for logs and pipes; needs nothing
  beyond the core install (``adcreative demo`` falls back to it).
- :class:`SilentDisplay`: nothing at all, for ``--json`` (the command prints one document at the end).

Summary tables are drawn by rich when it is installed, else as aligned plain text.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = [
    "CLI_EXTRA_HINT",
    "BarsDisplay",
    "Display",
    "LinesDisplay",
    "MissingExtraError",
    "SilentDisplay",
    "have_rich",
    "print_table",
]

CLI_EXTRA_HINT = "pip install 'adcreative-async[cli]'"


class MissingExtraError(Exception):
    """An optional dependency of the console script is not installed; the message says what to install."""


def have_rich() -> bool:
    """Whether rich (the ``cli`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class _Row:
    label: str
    status: str
    completed: float | None
    total: float | None
    finished: bool = False


class Display:
    """The interface of every display; this base class shows nothing (see :class:`SilentDisplay`).

    Rows are jobs or files. ``total`` is the unit of ``completed`` (100 for a render's percent, bytes for
    a download; None when unknown). The overall row counts finished rows.
    """

    def __init__(self, title: str = "", *, overall_total: int | None = None) -> None:
        self.title = title
        self.overall_total = overall_total
        self._rows: list[_Row] = []
        self.finished = 0

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop live output (idempotent)."""

    def add(self, label: str, *, total: float | None = 100, status: str = "queued") -> int:
        """Add a row; returns its id."""
        self._rows.append(_Row(label, status, 0, total))
        return len(self._rows) - 1

    def update(
        self,
        row: int,
        *,
        status: str | None = None,
        completed: float | None = None,
        total: float | None = None,
    ) -> None:
        """Change a row's status text, progress or total (None leaves a value as it is)."""
        state = self._rows[row]
        if total is not None:
            state.total = total
        if completed is not None:
            state.completed = completed
        if status is not None and status != state.status:
            state.status = status
            self._status_changed(row, state)
        self._progress_changed(row, state)

    def done(self, row: int, *, ok: bool, status: str) -> None:
        """Mark a row finished (the overall row advances)."""
        state = self._rows[row]
        if state.finished:
            return
        state.finished = True
        self.finished += 1
        if ok and state.total is not None:
            state.completed = state.total
        state.status = status
        self._finished(row, state, ok)

    def log(self, message: str) -> None:
        """A message line above the live rows."""

    def set_overall(self, total: int) -> None:
        """Set (or change) how many rows the overall row counts to."""
        self.overall_total = total

    def _status_changed(self, row: int, state: _Row) -> None:
        pass

    def _progress_changed(self, row: int, state: _Row) -> None:
        pass

    def _finished(self, row: int, state: _Row, ok: bool) -> None:
        pass


class SilentDisplay(Display):
    """Shows nothing (``--json``)."""


class LinesDisplay(Display):
    """One plain line per status change, prefixed with the seconds elapsed; no dependency."""

    def __init__(
        self, title: str = "", *, overall_total: int | None = None, stream: TextIO | None = None
    ) -> None:
        super().__init__(title, overall_total=overall_total)
        self._stream = stream
        self._start = time.monotonic()

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(f"[{time.monotonic() - self._start:5.1f}s] {text}\n")
        stream.flush()

    def log(self, message: str) -> None:
        self._write(message)

    def _line(self, state: _Row) -> str:
        percent = ""
        if state.total == 100 and state.completed is not None:  # a render's percent
            percent = f" {state.completed:>3.0f}%"
        return f"{state.label:<24} {state.status}{percent}"

    def _status_changed(self, row: int, state: _Row) -> None:
        self._write(self._line(state))

    def _finished(self, row: int, state: _Row, ok: bool) -> None:
        overall = f" ({self.finished}/{self.overall_total})" if self.overall_total else ""
        self._write(f"{state.label:<24} {'done' if ok else 'FAILED'}: {state.status}{overall}")


class BarsDisplay(Display):
    """rich's live progress bars: an overall row and one row per job or file.

    With many rows, finished ones are hidden (they are in the summary table) so the live view stays on
    what is still running.

    Raises:
        MissingExtraError: rich is not installed.
    """

    #: Beyond this many rows, finished rows are hidden from the live view.
    MAX_VISIBLE_FINISHED = 8

    def __init__(
        self,
        title: str = "",
        *,
        overall_total: int | None = None,
        console: Console | None = None,
    ) -> None:
        super().__init__(title, overall_total=overall_total)
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            raise MissingExtraError(f"progress bars need the cli extra: {CLI_EXTRA_HINT}") from None
        self.console = console or Console()
        self._progress: Progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=32),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=10,
        )
        self._tasks: list[TaskID] = []
        self._overall: TaskID | None = None
        if overall_total is not None:
            self.set_overall(overall_total)
        self._progress.start()
        self._closed = False

    def set_overall(self, total: int) -> None:
        super().set_overall(total)
        if self._overall is None:
            self._overall = self._progress.add_task(self.title or "overall", total=total, status="")
        self._progress.update(
            self._overall, total=total, completed=self.finished, status=f"{self.finished}/{total}"
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._progress.stop()

    def log(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)

    def add(self, label: str, *, total: float | None = 100, status: str = "queued") -> int:
        row = super().add(label, total=total, status=status)
        self._tasks.append(self._progress.add_task(label, total=total, status=status))
        return row

    def _progress_changed(self, row: int, state: _Row) -> None:
        self._progress.update(
            self._tasks[row], completed=state.completed or 0, total=state.total, status=state.status
        )

    def _finished(self, row: int, state: _Row, ok: bool) -> None:
        status = state.status if ok else f"[red]FAILED[/red] {_escape(state.status)}"
        self._progress.update(
            self._tasks[row], completed=state.completed or 0, total=state.total, status=status
        )
        self._progress.stop_task(self._tasks[row])
        if len(self._tasks) > self.MAX_VISIBLE_FINISHED:
            self._progress.update(self._tasks[row], visible=False)
        if self._overall is not None:
            self._progress.update(
                self._overall, completed=self.finished, status=f"{self.finished}/{self.overall_total}"
            )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    console: Console | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print a summary table: rich's when rich is installed, else aligned plain text."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    if have_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*(_escape(cell) for cell in row))
        if console is None:
            console = Console(file=stream)
            if not console.is_terminal:  # logs and pipes: no folding at 80 columns
                console = Console(file=stream, width=max(console.width, 200))
        console.print(table)
        return
    out = stream or sys.stdout
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    out.write(f"{title}\n")
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.flush()
