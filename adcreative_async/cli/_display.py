"""What the console script shows while it works: live progress rows, log lines and a summary table.

Three displays share one small interface, chosen by ``--progress`` (and ``--json``):

- :class:`BarsDisplay`: live bars for a terminal: the jobs (or files) in progress, as many as fit, under
  an overall bar; drawing costs the same whatever the number of items. Needs the ``cli`` extra (``rich``).
- :class:`LinesDisplay`: one plain line per change of a row's status, for logs and pipes; needs nothing
  beyond the core install (``adcreative demo`` falls back to it).
- :class:`SilentDisplay`: nothing at all, for ``--json`` (the command prints JSON Lines instead).

A display keeps only the rows not finished: a row leaves when it is done (the commands add an item's row
when the item starts), so its memory is bounded by the items in flight, whatever the number of inputs.

Summary tables are drawn by rich when it is installed, else as aligned plain text.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.text import Text

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

CLI_EXTRA_HINT = "pip install rich (the SDK's cli extra)"


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
        self._rows: dict[int, _Row] = {}  # the rows not finished: a finished row leaves
        self.added = 0
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
        """Add a row; returns its id (kept until :meth:`done`)."""
        row = self.added
        self._rows[row] = _Row(label, status, 0, total)
        self.added += 1
        return row

    def update(
        self,
        row: int,
        *,
        status: str | None = None,
        completed: float | None = None,
        total: float | None = None,
    ) -> None:
        """Change a row's status text, progress or total (None leaves a value as it is; a row that is
        done is left as it is)."""
        state = self._rows.get(row)
        if state is None:
            return
        if total is not None:
            state.total = total
        if completed is not None:
            state.completed = completed
        if status is not None and status != state.status:
            state.status = status
            self._status_changed(row, state)
        self._progress_changed(row, state)

    def done(self, row: int, *, ok: bool, status: str) -> None:
        """Mark a row finished (the overall row advances); it leaves the display."""
        state = self._rows.pop(row, None)
        if state is None or state.finished:
            return
        state.finished = True
        self.finished += 1
        if ok and state.total is not None:
            state.completed = state.total
        state.status = status
        self._finished(row, state, ok)

    def log(self, message: str) -> None:
        """A message line above the live rows."""

    def echo(self, message: str) -> None:
        """A line of the command's output (an item's result, as it finishes): printed by every display,
        above the live rows."""
        sys.stdout.write(message + "\n")
        sys.stdout.flush()

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

    def echo(self, message: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(message + "\n")
        stream.flush()

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
    """Live bars for a terminal: the rows in progress, as many as the terminal has room for, under an
    overall bar.

    Only rows that started and did not finish are drawn (queued ones are counted on the overall bar,
    finished ones are in the summary table); beyond the terminal's height less
    :attr:`RESERVED_LINES`, the rest are counted ("… and 12 more in progress"). A frame costs the same
    whatever the number of rows, and updating a row costs no drawing at all: frames are drawn
    :attr:`REFRESH_PER_SECOND` times a second from the rows' current state.

    Raises:
        MissingExtraError: rich is not installed.
    """

    #: Frames drawn per second.
    REFRESH_PER_SECOND = 8
    #: Lines of the terminal kept free: the overall bar, the "… more" line, the prompt, one spare.
    RESERVED_LINES = 4
    #: Width of a bar, in cells.
    BAR_WIDTH = 24
    #: Width of a row's label, in cells.
    LABEL_WIDTH = 24

    _SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(
        self,
        title: str = "",
        *,
        overall_total: int | None = None,
        console: Console | None = None,
        max_rows: int | None = None,
    ) -> None:
        super().__init__(title, overall_total=overall_total)
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            raise MissingExtraError(f"progress bars need the cli extra: {CLI_EXTRA_HINT}") from None
        self.console = console or Console()
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}  # row -> when it started; in the order rows started
        self.failed = 0
        self._started_at = time.monotonic()
        self._live = Live(
            console=self.console,
            refresh_per_second=self.REFRESH_PER_SECOND,
            get_renderable=self._frame,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        self._closed = False

    @property
    def max_rows(self) -> int:
        """How many rows a frame draws at most (``max_rows=``, else the terminal's height less
        :attr:`RESERVED_LINES`, at least 1)."""
        if self._max_rows is not None:
            return self._max_rows
        return max(1, self.console.size.height - self.RESERVED_LINES)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()
            if not self.console.is_terminal:
                self.console.line()  # rich ends the last frame with a newline on terminals only

    def log(self, message: str) -> None:
        self._live.console.print(message, markup=False, highlight=False)

    def echo(self, message: str) -> None:
        self.log(message)

    def _progress_changed(self, row: int, state: _Row) -> None:
        if row not in self._active and not state.finished and state.status != "queued":
            with self._lock:
                self._active[row] = time.monotonic()

    def _finished(self, row: int, state: _Row, ok: bool) -> None:
        with self._lock:
            self._active.pop(row, None)
            if not ok:
                self.failed += 1

    # ----------------------------------------------------------------------------------- drawing

    def frame_lines(self) -> list[str]:
        """The lines the next frame draws, as plain text (for tests and logs)."""
        console = self.console
        lines = console.render_lines(self._frame(), console.options, pad=False)
        return ["".join(segment.text for segment in line).rstrip() for line in lines]

    def _frame(self) -> Group:
        from rich.console import Group
        from rich.text import Text

        limit = self.max_rows
        with self._lock:
            active = list(self._active.items())
            failed = self.failed
        shown = active[:limit] if len(active) <= limit else active[: max(0, limit - 1)]
        now = time.monotonic()
        rows = [(self._rows.get(row), started) for row, started in shown]  # (one may be done meanwhile)
        lines: list[Text] = [self._row_line(state, started, now) for state, started in rows if state]
        hidden = len(active) - len(shown)
        if hidden:
            lines.append(Text(f"  … and {hidden} more in progress", style="dim"))
        total = self.overall_total if self.overall_total is not None else self.added
        queued = max(0, max(total, self.added) - self.finished - len(active))
        counts = f"{self.finished}/{total} done · {len(active)} running · {queued} queued"
        if failed:
            counts += f" · [{failed} failed]"
        overall = Text(f"{self._SPINNER[int(now * 10) % 10]} ", style="cyan")
        overall.append(_fit(self.title or "overall", self.LABEL_WIDTH), style="bold")
        overall.append(" ")
        overall.append_text(self._bar(self.finished, total))
        overall.append(f" {_clock(now - self._started_at)}", style="yellow")
        overall.append(f" {counts}", style="red" if failed else None)
        lines.append(overall)
        for line in lines:
            line.no_wrap = True
            line.overflow = "ellipsis"
        return Group(*lines)

    def _row_line(self, state: _Row, started: float, now: float) -> Text:
        from rich.text import Text

        line = Text(f"{self._SPINNER[int((now - started) * 10) % 10]} ", style="green")
        line.append(_fit(state.label, self.LABEL_WIDTH), style="bold")
        line.append(" ")
        completed = state.completed or 0
        if state.total:
            line.append_text(self._bar(completed, state.total))
            if state.total == 100:  # a render's percent
                line.append(f" {completed:>3.0f}%")
            else:
                line.append(f" {completed / state.total:>4.0%}")
        else:
            line.append(" " * self.BAR_WIDTH)
            if completed:
                line.append(f" {completed / (1 << 20):.1f} MiB")
        line.append(f" {_clock(now - started)}", style="yellow")
        line.append(f" {state.status}")
        return line

    def _bar(self, completed: float, total: float | None) -> Text:
        from rich.text import Text

        width = self.BAR_WIDTH
        done = 0 if not total else min(width, int(width * completed / total))
        bar = Text("━" * done, style="bar.finished" if done == width else "bar.complete")
        bar.append("━" * (width - done), style="bar.back")
        return bar


def _fit(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) or padded to ``width`` characters."""
    return text[: width - 1] + "…" if len(text) > width else text.ljust(width)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    console: Console | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print a summary table: rich's when rich is installed, else aligned plain text (``title`` None:
    without a title, e.g. a long table's next page)."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    if have_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*(_escape(cell) for cell in row))
        if console is None:
            console = Console(file=stream)
            if not console.is_terminal:  # logs and pipes: no folding at 80 columns
                console = Console(file=stream, width=max(console.width, 200))
        # the title on a line of its own: as a table's title it is cut to the table's width
        if title is not None:
            console.print(_escape(title), soft_wrap=True)
        if cells:
            console.print(table)
        return
    out = stream or sys.stdout
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    if title is not None:
        out.write(f"{title}\n")
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.flush()
