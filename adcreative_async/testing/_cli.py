"""The emulator's command line: ``python -m adcreative_async.testing`` (also ``adcreative emulator``).

Serves until Ctrl-C or SIGTERM and prints, once started, its ``base_url`` and the emulator-generated
test credentials: one JSON line (``--format json``, the default), for another program to read; or
``export ADCREATIVE_...=`` lines (``--format env``) for a shell, which the CLI and an
``AdCreativeClient()`` configured from the environment then use. ``--detach`` serves from a process of
its own and returns at once, so that a shell can ``eval`` the lines (as with ``ssh-agent``)::

    eval "$(adcreative emulator --format env --detach)"
    adcreative remove-bg photos/ -o cutouts/          # against the emulator, no account
    kill "$ADCREATIVE_EMULATOR_PID"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

import msgspec

from .._config import (
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_APPLICATION_ID,
    ENV_BASE_URL,
    ENV_JWT_PRIVATE_KEY,
    ENV_USER_ID,
)
from ._emulator import Emulator
from ._ratelimit import parse_rate

#: What ``adcreative emulator --help`` says after the options: the testing-only routes and examples.
EPILOG = """\
testing-only routes (no authentication), under BASE_URL/_emulator/:
  POST advance {"seconds": n}             move the emulator's clock forward
  POST expire-access-tokens               every issued access token expires now
  POST fail-next {"route", "status", "count", "retryAfter"}
                                          the next calls of a route (e.g.
                                          Image/BackgroundRemoving/AdCreative) answer
                                          that status instead of being served
  POST truncate-next-download {"taskId", "afterBytes", "count"}
                                          cut the next downloads of a task mid-body
  GET  requests                           requests received: {"METHOD route": count}
  GET  rate[?applicationId=]              the account rate limit and its counters:
                                          {"rate", "burst", "accepted", "limited"}
  POST rate {"rate", "burst", "resetCounts"}
                                          change (or lift: "rate": null) the limit
  GET  processes[?userId=]                the processes as the emulator sees them
  GET  processes-per-input                renders per input (by the SHA-256 of the
                                          first upload): what a test of "exactly
                                          once" counts
  GET|POST|DELETE notification-channels   the application's channels

--stamp-inputs writes the SHA-256 of a render's input into each PNG result (a
tEXt chunk, read by adcreative_async.testing.input_stamp), so that a test can
tell that a file came from its own input. --webhook URL gives the application
an active webhook channel: every progress message is POSTed to URL, to try push
notifications end to end.

examples:
  adcreative emulator --port 8080 --task-duration 1 3 --seed 7
  adcreative emulator --rate-limit 20/s --burst 20        # 429 past 20 requests/s
  eval "$(adcreative emulator --format env --detach)"   # ADCREATIVE_* set
  adcreative remove-bg photos/ -o cutouts/              # against it, no account
  kill "$ADCREATIVE_EMULATOR_PID"
"""


def _parser(prog: str = "python -m adcreative_async.testing") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an emulated AdCreative.ai API on a local port, for other programs and tests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--format",
        choices=("json", "env"),
        default="json",
        help="json: one JSON line (default); env: `export ADCREATIVE_...=` lines for a shell's eval",
    )
    add(
        "--detach",
        action="store_true",
        help="serve from a background process, print, and return (its pid in ADCREATIVE_EMULATOR_PID)",
    )
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    add("--application-id", help="application id (random by default)")
    add("--api-key", help="API key (random by default)")
    add("--api-secret", help="API secret (random by default)")
    add("--jwt-private-key", help="JWT private key (random by default)")
    add("--access-token-lifetime", type=float, default=3600.0, metavar="SECONDS")
    add("--refresh-token-lifetime", type=float, default=7 * 86400.0, metavar="SECONDS")
    add("--rotate-refresh-tokens", action="store_true", help="RefreshJwtToken issues a new refresh token")
    add(
        "--task-duration",
        type=float,
        nargs="+",
        default=[0.5],
        metavar="SECONDS",
        help="seconds until a task finishes; two values: a uniform jitter range",
    )
    add("--no-auto-complete", action="store_true", help="tasks never finish on their own")
    add("--no-notification-channel", action="store_true", help="start without an active channel")
    add(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="an active webhook channel posting every progress message to URL (repeat for more)",
    )
    add("--no-list-finished", action="store_true", help="finished processes leave unfiltered lists")
    add("--partial-tasks", action="store_true", help="progress objects list only half their tasks")
    add("--unknown-task-state", type=int, metavar="STATE", help="running tasks report this state")
    add("--task-failure-rate", type=float, default=0.0, metavar="P")
    add("--read-after-write-lag", type=float, default=0.0, metavar="SECONDS")
    add(
        "--start-latency",
        type=float,
        nargs="+",
        default=[0.0],
        metavar="SECONDS",
        help="seconds between a start call making its render and its answer; two values: a range",
    )
    add("--image-format", choices=("png", "jpeg"), default="png")
    add("--image-size", type=int, nargs=2, default=[64, 64], metavar=("WIDTH", "HEIGHT"))
    add("--seed", type=int, help="seed of ids, jitter and failures")
    add("--tasks-per-size", type=int, default=5, metavar="N")
    add(
        "--download-size",
        type=int,
        metavar="BYTES",
        help="downloads are PNGs of exactly this many bytes, streamed in constant memory",
    )
    add("--range-requests", action="store_true", help="downloads honour Range (206, Content-Range)")
    add(
        "--stamp-inputs",
        action="store_true",
        help="testing only: PNG results carry their input's SHA-256 in a tEXt chunk",
    )
    add(
        "--rate-limit",
        type=parse_rate,
        metavar="RATE",
        help="requests each application may make per second (e.g. 20/s, 1200/min): a token bucket; "
        "a request over it is answered 429 with Retry-After (default: no limit)",
    )
    add("--burst", type=float, metavar="N", help="the rate limit's bucket size (default: one second's worth)")
    add(
        "--no-channel-required-for-background-removal",
        action="store_true",
        help="background removal works without a notification channel",
    )
    return parser


def _seconds(values: list[float], option: str) -> float | tuple[float, float]:
    """One value, or two as a (low, high) range."""
    if len(values) > 2:
        raise ValueError(f"{option} takes one or two values")
    return (values[0], values[1]) if len(values) == 2 else values[0]


def _emulator(args: argparse.Namespace) -> Emulator:
    duration = _seconds(args.task_duration, "--task-duration")
    return Emulator(
        host=args.host,
        port=args.port,
        application_id=args.application_id,
        api_key=args.api_key,
        api_secret=args.api_secret,
        jwt_private_key=args.jwt_private_key,
        access_token_lifetime=args.access_token_lifetime,
        refresh_token_lifetime=args.refresh_token_lifetime,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
        task_duration=duration,
        auto_complete=not args.no_auto_complete,
        notification_channel=not args.no_notification_channel,
        list_finished=not args.no_list_finished,
        partial_tasks=args.partial_tasks,
        unknown_task_state=args.unknown_task_state,
        task_failure_rate=args.task_failure_rate,
        read_after_write_lag=args.read_after_write_lag,
        start_latency=_seconds(args.start_latency, "--start-latency"),
        image_format=args.image_format,
        image_size=(args.image_size[0], args.image_size[1]),
        seed=args.seed,
        tasks_per_size=args.tasks_per_size,
        channel_required_for_background_removal=not args.no_channel_required_for_background_removal,
        download_size=args.download_size,
        range_requests=args.range_requests,
        stamp_inputs=args.stamp_inputs,
        rate_limit=args.rate_limit,
        rate_burst=args.burst,
    )


#: The user id ``--format env`` sets (``ADCREATIVE_USER_ID``): any GUID works, and the CLI needs one.
EMULATOR_USER_ID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
#: ``--format env --detach`` names the background process's pid with this variable.
ENV_EMULATOR_PID = "ADCREATIVE_EMULATOR_PID"
_ENV_NAMES = (
    ("base_url", ENV_BASE_URL),
    ("application_id", ENV_APPLICATION_ID),
    ("api_key", ENV_API_KEY),
    ("api_secret", ENV_API_SECRET),
    ("jwt_private_key", ENV_JWT_PRIVATE_KEY),
)


def env_lines(credentials: Mapping[str, str], *, pid: int | None = None) -> str:
    """``export NAME=value`` lines (values quoted for POSIX shells) for an emulator's credentials."""
    pairs = [(name, credentials[key]) for key, name in _ENV_NAMES]
    pairs.append((ENV_USER_ID, EMULATOR_USER_ID))
    if pid is not None:
        pairs.append((ENV_EMULATOR_PID, str(pid)))
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in pairs)


def _announce(credentials: Mapping[str, str], output: str, pid: int | None = None) -> str:
    if output == "env":
        return env_lines(credentials, pid=pid)
    document = dict(credentials) if pid is None else {**credentials, "pid": pid}
    return msgspec.json.encode(document).decode() + "\n"


async def _serve(emulator: Emulator, output: str, webhooks: Sequence[str] = ()) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
            loop.add_signal_handler(signum, stop.set)
    async with emulator:
        for url in webhooks:
            emulator.add_notification_channel("webhook", url)
        credentials: dict[str, str] = {key: str(value) for key, value in emulator.credentials.items()}
        sys.stdout.write(_announce(credentials, output))
        sys.stdout.flush()
        await stop.wait()


def _detach(argv: Sequence[str], output: str) -> int:
    """Serve from a new process of its own session; print what it announced (and its pid); return."""
    args = [a for a in argv if a != "--detach"]
    child = subprocess.Popen(  # the last --format wins: the child announces itself in JSON
        [sys.executable, "-m", "adcreative_async.testing", *args, "--format", "json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the shell does not reach it; `kill PID` stops it
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.stdout.close()  # it prints nothing more; the shell's $(...) ends with this process
    if not line:
        sys.stderr.write(f"the emulator did not start (exit status {child.wait()})\n")
        return 1
    credentials = msgspec.json.decode(line)
    sys.stdout.write(_announce(credentials, output, pid=child.pid))
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the emulator from the command line until interrupted; returns the exit status (``prog``: the
    name its help shows, ``adcreative emulator`` from the console script).

    Example::

        $ python -m adcreative_async.testing --port 8080 --task-duration 1 3 --seed 7
        {"application_id":"...","api_key":"...","api_secret":"...","jwt_private_key":"...","base_url":"http://127.0.0.1:8080"}
        $ eval "$(python -m adcreative_async.testing --format env --detach)"   # ADCREATIVE_* set
    """
    parser = _parser() if prog is None else _parser(prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        emulator = _emulator(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.detach:
        return _detach(argv, args.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(emulator, args.format, args.webhook))
    return 0
