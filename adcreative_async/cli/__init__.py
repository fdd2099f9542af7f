"""The ``adcreative`` console script: the AdCreative.ai API from a shell, on the public SDK only.

Subcommands: ``demo`` (a full flow against a built-in emulator; works with the core install
alone), ``remove-bg``, ``generate``, ``edit``, ``status``, ``download``, ``runs`` and ``emulator``. The
display of the others needs the ``cli`` extra (``pip install '.[cli]'``) unless ``--json``
is given. ``remove-bg`` and ``generate -o`` are resumable: see ``_runs``.

Global options (before or after the subcommand): ``--emulator`` (or ``ADCREATIVE_EMULATOR=1``) runs
against an in-process emulator with no account; ``--json`` prints JSON Lines instead of bars and tables
(a line per item as it finishes, then a summary line: see ``_results``); ``--progress
auto|bars|lines|off``; rate control as ``--rate-control``, ``--max-rate``, ``--start-rate``; credentials as
``--application-id``, ``--api-key``, ``--api-secret``, ``--jwt-private-key``, ``--base-url``, ``--user-id``
or the ``ADCREATIVE_*`` variables (secrets, and a ``--ledger`` DSN, are never printed).

Exit codes (every command; :data:`EXIT_CODES_HELP`): 0 all done; 1 some items failed (the API refused
an input or a render failed: ``--retry-failed``), or an unexpected error; 2 a usage or setup error
(options, paths, credentials, an unreachable API, an unwritable folder: nothing was sent or recorded as
failed); 130 interrupted (Ctrl-C, SIGTERM: the same command resumes).

Example::

    $ adcreative remove-bg photos/ -o cutouts/ --emulator
    $ adcreative generate --brief brief.toml -o creatives/ --json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    SECRET_OPTIONS,
    UsageError,
    one_line,
    rate_control,
    redact,
    requests_per_second,
    run_command,
    secret_values,
)

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with the secrets of the command line redacted from its error messages."""

    redacted: tuple[str, ...] = ()

    def error(self, message: str) -> NoReturn:
        super().error(redact(message, self.redacted))


def _whole(text: str, minimum: int) -> int:
    """A whole number of at least ``minimum`` (argparse's type check of an option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def _nonnegative(text: str) -> int:
    return _whole(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _rate(text: str) -> float:
    """A rate option's value (argparse's type check): a positive number of requests per second."""
    try:
        return requests_per_second(text, "value")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None


def _add_global(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every subcommand takes, before or after its name: listed once, in ``adcreative
    --help`` (``suppress``: a subcommand's copy, accepted but not listed again in its help)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def shown(text: str) -> str:
        return argparse.SUPPRESS if suppress else text

    group: Any = parser if suppress else parser.add_argument_group("global options")
    group.add_argument(
        "--emulator",
        action="store_true",
        default=default(False),
        help=shown(
            "run against an emulator started in this process: no account needed (or ADCREATIVE_EMULATOR=1)"
        ),
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help=shown(
            'print JSON Lines, no bars: one object per item as it finishes ("type": "item"), then '
            'the summary ("type": "summary": counts, failures per error code, the first 20); '
            "other commands print one object, on one line (changed: was one document of every item)"
        ),
    )
    group.add_argument(
        "--progress",
        choices=("auto", "bars", "lines", "off"),
        default=default("auto"),
        help=shown("bars on a terminal, plain lines otherwise (default: auto)"),
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help=shown("show the traceback of an unexpected error (otherwise one line)"),
    )
    rate: Any = (
        parser
        if suppress
        else parser.add_argument_group(
            "rate control",
            "pace requests to the account's rate limit (AIMD on 429s; shared by the workers of a PostgreSQL "
            "--ledger); off by default",
        )
    )
    rate.add_argument(
        "--rate-control",
        action="store_true",
        default=default(False),
        help=shown("pace requests at the rate the API's 429s teach (or ADCREATIVE_RATE_CONTROL=1)"),
    )
    rate.add_argument(
        "--max-rate",
        type=_rate,
        default=default(None),
        metavar="REQ_PER_S",
        help=shown(
            "never send more than this many requests a second; implies --rate-control (ADCREATIVE_MAX_RATE)"
        ),
    )
    rate.add_argument(
        "--start-rate",
        type=_rate,
        default=default(None),
        metavar="REQ_PER_S",
        help=shown(
            "workers sharing a PostgreSQL --ledger probe from this account rate until the first 429 "
            "(default 20, split among them); implies --rate-control (ADCREATIVE_START_RATE)"
        ),
    )
    creds: Any = (
        parser
        if suppress
        else parser.add_argument_group(
            "credentials", "default: the ADCREATIVE_* environment variables (prefer them for secrets)"
        )
    )
    for flag, env in (
        ("--application-id", "ADCREATIVE_APPLICATION_ID"),
        ("--api-key", "ADCREATIVE_API_KEY"),
        ("--api-secret", "ADCREATIVE_API_SECRET"),
        ("--jwt-private-key", "ADCREATIVE_JWT_PRIVATE_KEY"),
        ("--base-url", "ADCREATIVE_BASE_URL"),
        ("--user-id", "ADCREATIVE_USER_ID"),
    ):
        creds.add_argument(
            flag,
            default=default(None),
            metavar="SECRET" if flag in SECRET_OPTIONS else "VALUE",
            help=shown(f"({env})"),
        )


#: The exit codes, in ``adcreative --help`` (and docs/cli.md): the same for every command.
EXIT_CODES_HELP = """\
exit codes (every command):
  0    all done
  1    some items failed: the API refused an input or a render failed (--retry-failed
       renders them again); or an unexpected error (--debug shows its traceback)
  2    usage or setup error: options, paths, input images, credentials, an unreachable API,
       an unwritable folder or run ledger; nothing was sent or recorded as failed
  130  interrupted (Ctrl-C, SIGTERM): run the same command again to resume
"""

#: Said at the end of every subcommand's help, after its examples.
GLOBAL_NOTE = (
    "global options (--emulator, --json, --progress, rate control, credentials) go before or after the\n"
    "command: see `adcreative --help`"
)


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped as usual; an epilog (examples) printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("examples:", "exit codes")) or text == GLOBAL_NOTE:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _parser(redacted: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser_class = type("Parser", (_Parser,), {"redacted": tuple(redacted)})
    parser: argparse.ArgumentParser = parser_class(
        prog="adcreative",
        description="The AdCreative.ai API from the command line (adcreative-async). "
        "Try any command with --emulator: no account needed.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
    )
    _add_global(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, description: str, examples: str = "") -> argparse.ArgumentParser:
        epilog = f"examples:\n{examples}\n{GLOBAL_NOTE}" if examples else GLOBAL_NOTE
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=epilog,
            formatter_class=_HelpFormatter,
            allow_abbrev=False,
        )
        _add_global(sub, suppress=True)
        return sub

    demo = command(
        "demo",
        "run a full flow against a built-in emulator (no credentials needed)",
        "Generate ad creatives while a bulk job removes the backgrounds of product photos, edit two "
        "creatives and download every result, against an emulator started in this process.",
        "  adcreative demo\n  adcreative demo -o results/ --task-duration 0.5\n",
    )
    demo.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="directory for the results (default: a new temporary directory, printed at the start and end)",
    )
    demo.add_argument(
        "--task-duration",
        type=float,
        default=1.5,
        help="emulated seconds per task, jittered (default: %(default)s)",
    )

    remove = command(
        "remove-bg",
        "remove the background of images (files and folders), in bulk",
        "Remove the background of every image given (files, and the .jpg/.jpeg/.png/.webp files of "
        "folders); each result is saved as OUTPUT/<the input's path relative to its folder>, its suffix "
        "replaced by the result's when they are the same and kept otherwise (cat.png -> cat.png, "
        "cat.jpg -> cat.jpg.png): a function of the input alone, so inputs added later never take "
        "another's name; two inputs that would share a name are refused before anything is sent.",
        "  adcreative remove-bg photos/ -o cutouts/ --emulator    # try it, no account\n"
        "  adcreative remove-bg photos/ -o cutouts/ -r -c 8       # subfolders too, 8 transfers at once\n"
        "  adcreative remove-bg photos/ -o cutouts/               # again: renders only what is not done\n"
        "  adcreative remove-bg photos/ -o cutouts/ --retry-failed\n",
    )
    remove.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders of images")
    remove.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the results")
    remove.add_argument("-r", "--recursive", action="store_true", help="include the subfolders of folders")
    _add_concurrency(remove)
    _add_timeout(remove)
    _add_summary(remove)
    _add_resume(remove)

    gen = command(
        "generate",
        "generate ad creatives from briefs (TOML or JSON)",
        "Generate ad creatives from brief files: the keyword arguments of client.creatives.generate() in "
        "snake_case, image paths relative to the brief; a `briefs` list for several.",
        "  adcreative generate --brief brief.toml -o creatives/ --emulator\n"
        "  adcreative generate --brief a.toml --brief b.json --no-wait --json\n",
    )
    gen.add_argument(
        "--brief",
        action="append",
        required=True,
        metavar="FILE",
        dest="brief_files",
        help="a brief (.toml or .json); repeat for more",
    )
    gen.add_argument("-o", "--output", metavar="DIR", help="download the results into DIR")
    gen.add_argument("--no-wait", action="store_true", help="submit and print the ids, without waiting")
    _add_concurrency(gen)
    _add_timeout(gen)
    _add_summary(gen)
    _add_resume(gen)

    ed = command(
        "edit",
        "re-generate creatives (task ids) with changes",
        "Edit tasks of a completed creatives process: only the changes given are sent.",
        "  adcreative edit TASK_ID --main-headline 'Now 20% off' -o edited/\n",
    )
    ed.add_argument("task_ids", nargs="+", metavar="TASK_ID", help="tasks of one completed process")
    changes = ed.add_argument_group("changes")
    for name in (
        "main-headline",
        "punchline",
        "action-text",
        "description",
        "button-icon-class",
        "font-identifier",
    ):
        changes.add_argument(f"--{name}", metavar="TEXT")
    for name in ("color1-hex", "color2-hex", "color3-hex"):
        changes.add_argument(f"--{name}", metavar="#RRGGBB")
    for name in ("brand-image", "background-image"):
        changes.add_argument(f"--{name}", metavar="PATH")
    ed.add_argument("-o", "--output", metavar="DIR", help="download the edited results into DIR")
    ed.add_argument("--no-wait", action="store_true", help="submit and print the ids, without waiting")
    _add_timeout(ed)

    st = command(
        "status",
        "list render processes and their progress",
        "The render processes of the user (--user-id) or of the whole application (--application).",
        "  adcreative status --application\n  adcreative status PROCESS_ID --feature background-remover\n",
    )
    st.add_argument("process_id", nargs="?", metavar="PROCESS_ID", help="only this process")
    st.add_argument("--application", action="store_true", help="every process of the application")
    _add_feature(st)

    dl = command(
        "download",
        "download results of a render process",
        "Download the given tasks of a process, or every succeeded task when none is given.",
        "  adcreative download PROCESS_ID -o results/\n"
        "  adcreative download PROCESS_ID TASK_ID -o results/ --low-resolution\n",
    )
    dl.add_argument("process_id", metavar="PROCESS_ID")
    dl.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="default: every succeeded task")
    dl.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the files")
    dl.add_argument("--low-resolution", action="store_true", help="the low-resolution renditions")
    _add_feature(dl)
    _add_concurrency(dl)
    _add_summary(dl)

    runs = command(
        "runs",
        "show the items of a resumable run (the run ledger of an output folder)",
        "remove-bg and generate -o DIR keep a run ledger in DIR: every item, its state, process and files.",
        "  adcreative runs show cutouts/\n  adcreative runs show cutouts/ --state failed --json\n"
        "  adcreative runs show --ledger 'postgresql://me@db/renders#cutouts' --state failed\n",
    )
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="SUBCOMMAND")
    show = runs_commands.add_parser(
        "show",
        help="list a run's items and their states",
        epilog=GLOBAL_NOTE,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
    )
    _add_global(show, suppress=True)
    show.add_argument(
        "run",
        metavar="DIR",
        nargs="?",
        help="a bulk command's output folder (or its .adcreative-run.sqlite); with a --ledger DSN, the "
        "folder whose name names the run",
    )
    show.add_argument(
        "--ledger",
        metavar="FILE_OR_DSN",
        help="the run ledger the run command was given: a SQLite file, or a postgresql://user@host/db "
        "DSN (#NAME at its end names the run; default: DIR's name); read only, never printed (or "
        "ADCREATIVE_LEDGER)",
    )
    show.add_argument(
        "--state",
        action="append",
        choices=("pending", "submitting", "submitted", "downloaded", "failed", "unknown"),
        help="only items in this state (repeat for more)",
    )

    commands.add_parser(
        "emulator",
        help="serve an emulated API for other programs and tests (adcreative emulator --help)",
        add_help=False,
    )
    return parser


def _add_concurrency(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--concurrency",
        type=_positive,
        default=4,
        metavar="N",
        help="uploads and downloads in flight (default: 4)",
    )


def _add_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--summary",
        choices=("failed", "all", "none"),
        default="failed",
        help="at the end: the counts and a table of the first 20 failures with where the rest are listed "
        "(failed, the default); each item's row as it finishes, then the counts (all); nothing (none)",
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="give up waiting for a render after this long"
    )


def _add_resume(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "resuming",
        "the output folder keeps a run ledger (.adcreative-run.sqlite): the same command run again renders "
        "only what was not rendered",
    )
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--restart",
        action="store_true",
        help="forget the folder's run and render every input again (each a new paid render: asks first, "
        "or needs --yes)",
    )
    choice.add_argument("--retry-failed", action="store_true", help="render the failed items again")
    choice.add_argument(
        "--no-ledger",
        action="store_true",
        help="no run ledger: no resume; start calls use --user-id instead of a user id per item",
    )
    group.add_argument(
        "--yes", action="store_true", help="confirm what costs renders again (--restart) without asking"
    )
    group.add_argument(
        "--ledger",
        metavar="FILE_OR_DSN",
        help="the run ledger: a SQLite file, or a postgresql://user@host/db DSN shared by workers on many "
        "machines (#NAME at its end names the run; default: the output folder's name); never printed "
        "(default: DIR/.adcreative-run.sqlite; or ADCREATIVE_LEDGER)",
    )
    group.add_argument(
        "--max-renders",
        type=_nonnegative,
        metavar="N",
        help="send at most N start calls (paid renders), then stop cleanly: the rest stay for the next run",
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="say what the run would spend (inputs, done, to download, renders to be paid) and stop: "
        "nothing is sent or written",
    )


def _add_feature(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--feature", choices=("creatives", "background-remover"), help="default: look in every feature"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the process exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from ..testing import main as emulator_main

        return emulator_main(args_list[1:], prog="adcreative emulator")
    secrets = secret_values(args_list)
    try:
        args = _parser(secrets).parse_args(args_list)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command not in ("demo", "runs"):  # checked before any request
            args.rate_settings = rate_control(args)
        return _dispatch(args, args_list)
    except UsageError as exc:
        sys.stderr.write(f"adcreative: {redact(str(exc), secrets)}\n")
        return EXIT_USAGE
    except Exception as exc:  # a bug, or something nobody foresaw: one line, unless --debug
        if getattr(args, "debug", False):
            raise
        sys.stderr.write(
            f"adcreative: unexpected error: {redact(one_line(exc), secrets)} (run again with --debug for the "
            "traceback; a resumable run resumes where it stopped)\n"
        )
        return EXIT_FAILED


def _check_before_start(output: str | None, images: Iterable[Path]) -> None:
    """What can be checked before the client opens: the output folder and the input images (see
    ``_preflight``; the credentials are checked by the command, with its client)."""
    from ._preflight import check_images, check_output_folder

    if output is not None:
        check_output_folder(Path(output))
    check_images(images)


def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import _commands

    args.command_line = list(argv)  # (what resumes an interrupted run: see _runs.resume_command)
    from ._inputs import collect_images, load_briefs

    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(
            args.output, task_duration=args.task_duration, progress=args.progress, json_output=args.json
        )
    if args.command == "remove-bg":
        args.items = collect_images(args.paths, recursive=args.recursive)
        _check_before_start(args.output, (item.path for item in args.items))
        return run_command(
            _commands.remove_bg, args, argv, title="background removal", overall_total=len(args.items)
        )
    if args.command == "generate":
        args.briefs = load_briefs(args.brief_files)
        images = [
            v for b in args.briefs for k, v in b.kwargs.items() if k in ("brand_image", "background_image")
        ]
        _check_before_start(args.output, images)
        return run_command(_commands.generate, args, argv, title="creatives", overall_total=len(args.briefs))
    if args.command == "edit":
        _check_before_start(args.output, [])
        return run_command(_commands.edit, args, argv, title="edit")
    if args.command == "runs":
        from ._runs import runs_command

        return runs_command(args)
    if args.command == "status":
        return run_command(_commands.status, args, argv)
    if args.command == "download":
        _check_before_start(args.output, [])
        return run_command(_commands.download, args, argv, title="downloads", overall_total=None)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses them
