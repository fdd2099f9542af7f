"""The emulator's command line: ``python -m adcreative_async.testing``.

Serves until Ctrl-C or SIGTERM and prints, once started, one JSON line with ``base_url`` and the
emulator-generated test credentials, so that another process (a benchmark, a demo) can read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import msgspec

from ._emulator import Emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adcreative_async.testing",
        description="Serve an emulated AdCreative.ai API on a local port.",
    )
    add = parser.add_argument
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
    add("--no-list-finished", action="store_true", help="finished processes leave unfiltered lists")
    add("--partial-tasks", action="store_true", help="progress objects list only half their tasks")
    add("--unknown-task-state", type=int, metavar="STATE", help="running tasks report this state")
    add("--task-failure-rate", type=float, default=0.0, metavar="P")
    add("--read-after-write-lag", type=float, default=0.0, metavar="SECONDS")
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
        "--no-channel-required-for-background-removal",
        action="store_true",
        help="background removal works without a notification channel",
    )
    return parser


def _emulator(args: argparse.Namespace) -> Emulator:
    durations: list[float] = args.task_duration
    if len(durations) > 2:
        raise ValueError("--task-duration takes one or two values")
    duration: float | tuple[float, float] = (
        (durations[0], durations[1]) if len(durations) == 2 else durations[0]
    )
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
        image_format=args.image_format,
        image_size=(args.image_size[0], args.image_size[1]),
        seed=args.seed,
        tasks_per_size=args.tasks_per_size,
        channel_required_for_background_removal=not args.no_channel_required_for_background_removal,
        download_size=args.download_size,
        range_requests=args.range_requests,
        stamp_inputs=args.stamp_inputs,
    )


async def _serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
            loop.add_signal_handler(signum, stop.set)
    async with emulator:
        sys.stdout.write(msgspec.json.encode(emulator.credentials).decode() + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator from the command line until interrupted; returns the exit status.

    Example::

        $ python -m adcreative_async.testing --port 8080 --task-duration 1 3 --seed 7
        {"application_id":"...","api_key":"...","api_secret":"...","jwt_private_key":"...","base_url":"http://127.0.0.1:8080"}
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        emulator = _emulator(args)
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(emulator))
    return 0
