"""What every subcommand shares: the client (real or against an in-process emulator, its rate control),
the display, the JSON output (JSON Lines: see ``_results``), error reporting without secrets, exit codes,
and Ctrl-C.

Exit codes: 0 everything succeeded; 1 an item or the call failed; 2 a usage or configuration error
(bad arguments, a missing credential, a missing optional dependency); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from .. import (
    AdCreativeClient,
    AdCreativeError,
    ConfigurationError,
    InvalidRequestError,
    PollPolicy,
    RateControl,
    RenderResource,
    RunAbortedError,
)
from ..testing import Emulator
from ._display import (
    CLI_EXTRA_HINT,
    BarsDisplay,
    Display,
    LinesDisplay,
    MissingExtraError,
    SilentDisplay,
    have_rich,
    print_table,
)

T = TypeVar("T")

__all__ = [
    "DEMO_USER",
    "ENV_EMULATOR",
    "ENV_EMULATOR_OPTIONS",
    "ENV_LEDGER",
    "ENV_MAX_RATE",
    "ENV_RATE_CONTROL",
    "ENV_START_RATE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SECRET_OPTIONS",
    "Session",
    "UsageError",
    "dsn_secrets",
    "feature_resource",
    "is_dsn",
    "one_line",
    "rate_control",
    "run_command",
    "run_interruptibly",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: ``ADCREATIVE_EMULATOR=1`` is the same as ``--emulator``.
ENV_EMULATOR = "ADCREATIVE_EMULATOR"
#: A JSON object of :class:`~adcreative_async.testing.Emulator` keyword options for ``--emulator``
#: (e.g. ``{"task_duration": 3, "task_failure_rate": 0.2}``).
ENV_EMULATOR_OPTIONS = "ADCREATIVE_EMULATOR_OPTIONS"
#: The user of ``--emulator`` runs when no ``--user-id`` / ``ADCREATIVE_USER_ID`` is given.
DEMO_USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
#: How the in-process emulator paces its tasks unless ADCREATIVE_EMULATOR_OPTIONS says otherwise.
EMULATOR_DEFAULTS: dict[str, Any] = {"task_duration": (0.3, 1.2)}

#: Polling against the in-process emulator: it answers in microseconds, so waits need not start at 0.5 s.
EMULATOR_POLL_POLICY = PollPolicy(initial_interval=0.05, max_interval=0.5, min_interval=0.02)

#: Options whose values are never shown, whatever goes wrong.
SECRET_OPTIONS = ("--api-key", "--api-secret", "--jwt-private-key")
_SECRET_ENV = ("ADCREATIVE_API_KEY", "ADCREATIVE_API_SECRET", "ADCREATIVE_JWT_PRIVATE_KEY")


class UsageError(Exception):
    """A mistake in the command line or its inputs (exit code 2); the message says what to change."""


#: ``ADCREATIVE_RATE_CONTROL=1`` is ``--rate-control``; ``ADCREATIVE_MAX_RATE`` and ``ADCREATIVE_START_RATE``
#: are ``--max-rate`` and ``--start-rate`` (an option given wins over its variable).
ENV_RATE_CONTROL = "ADCREATIVE_RATE_CONTROL"
ENV_MAX_RATE = "ADCREATIVE_MAX_RATE"
ENV_START_RATE = "ADCREATIVE_START_RATE"
_TRUE = ("1", "true", "yes", "on")


def requests_per_second(text: str, where: str) -> float:
    """A rate option's value: a positive, finite number of requests per second.

    Raises:
        UsageError: naming ``where`` (the option or variable) and the value.
    """
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: not a number of requests per second: {text!r}") from None
    if not 0 < value < math.inf:
        raise UsageError(f"{where}: must be a positive number of requests per second, got {text!r}")
    return value


def rate_control(args: argparse.Namespace) -> RateControl | None:
    """The client's rate control (see :class:`~adcreative_async.RateControl`) from ``--rate-control``,
    ``--max-rate`` and ``--start-rate`` or their ``ADCREATIVE_*`` variables: None when none is given.

    ``--max-rate R``: this process never sends more than R requests a second (paced at R from its first
    request, lower after 429s). ``--start-rate R``: the account rate that workers sharing a PostgreSQL
    run ledger probe from before the first 429 teaches them the account's limit. Either turns the
    adaptive control on (requests paced at the rate 429s teach), as ``--rate-control`` does.

    Raises:
        UsageError: a value is not a positive number (checked before any request).
    """
    rates: dict[str, float | None] = {}
    for name, option, env in (
        ("max_rate", "--max-rate", ENV_MAX_RATE),
        ("start_rate", "--start-rate", ENV_START_RATE),
    ):
        given = getattr(args, name, None)
        if given is not None:
            rates[name] = requests_per_second(str(given), option)
        elif os.environ.get(env, "").strip():
            rates[name] = requests_per_second(os.environ[env].strip(), env)
    wanted = getattr(args, "rate_control", False) is True
    wanted = wanted or os.environ.get(ENV_RATE_CONTROL, "").strip().lower() in _TRUE
    if not wanted and not rates:
        return None
    options: dict[str, Any] = {}
    max_rate = rates.get("max_rate")
    if max_rate is not None:  # a cap from the first request: paced at it, never grown past it
        options.update(max_rate=max_rate, initial_rate=max_rate, min_rate=min(RateControl.min_rate, max_rate))
    if rates.get("start_rate") is not None:
        options["start_rate"] = rates["start_rate"]
    try:
        return RateControl(**options)
    except ValueError as exc:  # pragma: no cover - the values are checked above
        raise UsageError(str(exc)) from None


def secret_values(argv: Sequence[str]) -> list[str]:
    """The secrets given on the command line or in the environment, to redact from any output.

    A value following an option that starts like a secret option counts too (``--api-secrett VALUE``
    is a typo argparse would echo).
    """
    found: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if not any(name.startswith(option) for option in SECRET_OPTIONS):
            continue
        if equals:
            found.append(value)
        elif i + 1 < len(args):
            found.append(args[i + 1])
    found.extend(os.environ[name] for name in _SECRET_ENV if os.environ.get(name))
    for i, arg in enumerate(args):  # a PostgreSQL ledger's DSN: the whole of it, and its password
        name, equals, value = arg.partition("=")
        if name.startswith("--ledger"):
            found.extend(dsn_secrets(value if equals else args[i + 1] if i + 1 < len(args) else ""))
    found.extend(dsn_secrets(os.environ.get(ENV_LEDGER, "")))
    return [value for value in found if len(value) >= 4]  # redacting "a" would mangle every message


#: ``ADCREATIVE_LEDGER`` is ``--ledger`` (a SQLite file, or a ``postgresql://`` DSN: a secret).
ENV_LEDGER = "ADCREATIVE_LEDGER"


def is_dsn(spec: str) -> bool:
    """Whether a ``--ledger`` value is a PostgreSQL DSN (never shown: it may hold a password)."""
    return spec.strip().lower().startswith(("postgresql://", "postgres://"))


def dsn_secrets(spec: str) -> list[str]:
    """What to redact of a ``--ledger`` value: a DSN whole, and its password alone (as it may appear
    decoded or encoded in a driver's message); nothing for a file path."""
    if not is_dsn(spec):
        return []
    from urllib.parse import unquote, urlsplit

    found = [spec.strip(), spec.strip().partition("#")[0]]
    try:
        password = urlsplit(spec.strip()).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return found


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def want_emulator(args: argparse.Namespace) -> bool:
    """``--emulator``, or ``ADCREATIVE_EMULATOR`` set to a true value."""
    if getattr(args, "emulator", False):
        return True
    return os.environ.get(ENV_EMULATOR, "").strip().lower() in ("1", "true", "yes", "on")


def emulator_options() -> dict[str, Any]:
    """The in-process emulator's options: the defaults updated with ``ADCREATIVE_EMULATOR_OPTIONS``."""
    options = dict(EMULATOR_DEFAULTS)
    raw = os.environ.get(ENV_EMULATOR_OPTIONS, "").strip()
    if raw:
        try:
            extra = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"{ENV_EMULATOR_OPTIONS} is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise UsageError(f"{ENV_EMULATOR_OPTIONS} must be a JSON object of Emulator options")
        options.update(extra)
    for name in ("task_duration", "image_size"):
        if isinstance(options.get(name), list):
            options[name] = tuple(options[name])
    return options


def feature_resource(client: AdCreativeClient, name: str) -> RenderResource:
    """A client resource by its CLI name (``creatives``, ``background-remover``)."""
    try:
        return client.resource(name.replace("-", "_"))
    except InvalidRequestError:
        raise UsageError(f"unknown feature {name!r}: use creatives or background-remover") from None


@dataclass
class Session:
    """One command's run: its arguments, client, display and (with ``--emulator``) emulator."""

    args: argparse.Namespace
    client: AdCreativeClient
    display: Display
    emulator: Emulator | None = None
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def json(self) -> bool:
        """Whether the output is JSON Lines (``--json``)."""
        return bool(self.args.json)

    def emit(self, document: dict[str, Any]) -> None:
        """Print one line of ``--json`` output now (an item as it finishes), flushed."""
        _print_json(document)

    def user_id(self, *, required: bool = True) -> str | None:
        """The user of this run: ``--user-id``, ``ADCREATIVE_USER_ID``, or the emulator's demo user."""
        if self.client.user_id is None and required:
            raise UsageError(
                "a user id is needed: pass --user-id or set ADCREATIVE_USER_ID "
                "(any fixed GUID works for an integration without sub-users)"
            )
        return self.client.user_id

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Print a summary table (not in ``--json`` mode)."""
        if self.json:
            return
        console = self.display.console if isinstance(self.display, BarsDisplay) else None
        print_table(title, columns, rows, console=console)

    def say(self, message: str) -> None:
        """A line for people (not in ``--json`` mode)."""
        if not self.json:
            self.display.log(message)


def make_display(
    args: argparse.Namespace, title: str, overall_total: int | None, *, rich_required: bool = True
) -> Display:
    """The display ``--progress`` and ``--json`` ask for.

    ``auto`` draws bars on a terminal and plain lines elsewhere (logs, pipes, CI).

    Raises:
        MissingExtraError: bars were asked for (or ``rich_required``) and rich is not installed.
    """
    if args.json:
        return SilentDisplay(title, overall_total=overall_total)
    mode = args.progress
    if rich_required and not have_rich():
        raise MissingExtraError(f"adcreative {args.command} needs the cli extra: {CLI_EXTRA_HINT}")
    if mode == "off":
        return SilentDisplay(title, overall_total=overall_total)
    if mode == "lines":
        return LinesDisplay(title, overall_total=overall_total)
    if mode == "bars":
        return BarsDisplay(title, overall_total=overall_total)
    if have_rich():
        from rich.console import Console

        console = Console()
        if console.is_terminal:
            return BarsDisplay(title, overall_total=overall_total, console=console)
    return LinesDisplay(title, overall_total=overall_total)


@asynccontextmanager
async def open_client(
    args: argparse.Namespace, say: Callable[[str], None]
) -> AsyncIterator[tuple[AdCreativeClient, Emulator | None]]:
    """The client of this run: against an in-process emulator (``--emulator``), or the real API with
    credentials from the flags or the ``ADCREATIVE_*`` variables."""
    async with AsyncExitStack() as stack:
        emulator: Emulator | None = None
        user_id = args.user_id
        if want_emulator(args):
            try:
                emulator = Emulator(**emulator_options())
            except TypeError as exc:
                raise UsageError(f"{ENV_EMULATOR_OPTIONS}: {exc}") from None
            await stack.enter_async_context(emulator)
            say(f"using an in-process emulator at {emulator.base_url} (no account, nothing billed)")
            credentials: dict[str, Any] = dict(emulator.credentials)
            if user_id is None and not os.environ.get("ADCREATIVE_USER_ID"):
                user_id = DEMO_USER
        else:
            credentials = {
                name: getattr(args, name)
                for name in ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
                if getattr(args, name, None) is not None
            }
        client = AdCreativeClient(
            **credentials,
            user_id=user_id,
            poll_policy=EMULATOR_POLL_POLICY if emulator else None,
            rate_control=getattr(args, "rate_settings", None),
        )
        await stack.enter_async_context(client)
        yield client, emulator


Command = Callable[[Session], Awaitable[int]]


def _error_document(exc: BaseException, secrets: Sequence[str]) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type(exc).__name__, "message": redact(str(exc), secrets)}}


def one_line(exc: BaseException) -> str:
    """An error as ``Type: message`` on one line, whole: never cut (the operator acts on all of it)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _print_json(document: dict[str, Any]) -> None:
    """One line of JSON (every ``--json`` output is JSON Lines: a script reads it line by line)."""
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def _print_error(message: str, secrets: Sequence[str]) -> None:
    sys.stderr.write(f"adcreative: {redact(message, secrets)}\n")
    sys.stderr.flush()


async def _run(
    command: Command,
    args: argparse.Namespace,
    title: str,
    overall_total: int | None,
    rich_required: bool,
    secrets: Sequence[str],
) -> int:
    with make_display(args, title, overall_total, rich_required=rich_required) as display:

        def say(message: str) -> None:
            if not args.json:
                display.log(message)

        try:
            async with open_client(args, say) as (client, emulator):
                session = Session(args, client, display, emulator)
                code = await command(session)
        except ConfigurationError as exc:
            display.close()
            _report(args, exc, secrets, hint=True)
            return EXIT_USAGE
        except RunAbortedError as exc:  # a setup error stopped a bulk run: one line, nothing failed
            display.close()
            _report(args, exc, secrets, hint=isinstance(exc.cause, ConfigurationError))
            return EXIT_USAGE
        except AdCreativeError as exc:
            display.close()
            _report(args, exc, secrets)
            return EXIT_FAILED
    if args.json:
        _print_json(session.document)
    return code


def _report(args: argparse.Namespace, exc: BaseException, secrets: Sequence[str], hint: bool = False) -> None:
    message = str(exc)
    if hint:
        message += (
            "\n  set the ADCREATIVE_* environment variables or pass --application-id, --api-key, "
            "--api-secret, --jwt-private-key; or add --emulator to try it against a local emulator"
        )
    if args.json:
        _print_json(_error_document(exc, secrets))
    _print_error(message, secrets)


def run_interruptibly(func: Callable[..., Awaitable[T]], *args: Any) -> T | None:
    """``anyio.run(func, *args)``, where SIGINT (Ctrl-C) and SIGTERM cancel ``func``: None then.

    The signals are received in the event loop and cancel the work like any cancellation, so every
    cleanup runs (atomic downloads remove their temporary files, the client and the emulator close),
    the same way on every supported Python: the runner's own SIGINT handling turns into a bare
    ``CancelledError`` on Python 3.10. A second Ctrl-C during the cleanup raises KeyboardInterrupt.
    Where signals cannot be received in the loop (Windows, a thread), KeyboardInterrupt is raised as
    usual.
    """

    async def runner() -> T | None:
        results: list[T] = []
        errors: list[Exception] = []
        interrupted = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal interrupted
            try:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        interrupted = True
                        scope.cancel()
                        return
            except (NotImplementedError, ValueError, RuntimeError):  # Windows, not the main thread
                return

        async def work(scope: anyio.CancelScope) -> None:
            try:
                results.append(await func(*args))
            except Exception as exc:  # re-raised below, outside the task group (no ExceptionGroup)
                errors.append(exc)
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch, group.cancel_scope)
            group.start_soon(work, group.cancel_scope)
        if errors:
            raise errors[0]
        if interrupted or not results:
            return None
        return results[0]

    return anyio.run(runner)


def run_command(
    command: Command,
    args: argparse.Namespace,
    argv: Sequence[str],
    *,
    title: str = "",
    overall_total: int | None = None,
    rich_required: bool = True,
) -> int:
    """Run a subcommand's coroutine under ``anyio.run``; returns the exit code.

    Ctrl-C cancels the run (see :func:`run_interruptibly`): downloads in flight are removed, the client
    and emulator close, and the exit code is 130.
    """
    secrets = secret_values(argv)
    try:
        code = run_interruptibly(_run, command, args, title, overall_total, rich_required, secrets)
        if code is None:
            raise KeyboardInterrupt
        return code
    except KeyboardInterrupt:
        _print_error("interrupted", secrets)
        return EXIT_INTERRUPTED
    except (UsageError, MissingExtraError) as exc:
        if args.json:
            _print_json(_error_document(exc, secrets))
        _print_error(str(exc), secrets)
        return EXIT_USAGE
