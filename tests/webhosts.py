"""Real web hosts as subprocesses on loopback, for tests of the examples under gunicorn: an emulator
process posting its webhooks to the host, the host serving an example app, and a small HTTP client
(the process and HTTP helpers of ``benchmarks/_hosts.py``, with the tests' shorter timeouts)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _hosts
from benchmarks._hosts import ROOT, emulator, emulator_env, free_port, no_control_socket

TOKEN = "webhost-test-token-0123456789abcdef"
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
NO_CONTROL_SOCKET = no_control_socket()
STOP_TIMEOUT = 15  # seconds a process is given to exit after SIGTERM
REQUEST_TIMEOUT = 30  # seconds


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it lingers; waits for it."""
    _hosts.stop(process, STOP_TIMEOUT)


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request; (status, decoded JSON body or None)."""
    return _hosts.request(method, url, body, timeout=REQUEST_TIMEOUT)


@contextlib.contextmanager
def emulator_process(webhook_url: str, *flags: str) -> Iterator[dict[str, str]]:
    """An emulator in its own process posting every notification to ``webhook_url``; yields the
    ``ADCREATIVE_*`` variables that point a client at it."""
    with emulator("--webhook", webhook_url, *flags, stop_timeout=STOP_TIMEOUT) as info:
        yield emulator_env(info)


@contextlib.contextmanager
def gunicorn(
    app: str, port: int, env: dict[str, str], *, workers: int = 1, log: Path | None = None
) -> Iterator[str]:
    """``gunicorn -k sync -w N`` serving ``app`` on 127.0.0.1:``port``; yields its base URL once it
    answers. Its output goes to ``log`` (or nowhere)."""
    command = [
        sys.executable, "-m", "gunicorn", "-k", "sync", "-w", str(workers), "-b", f"127.0.0.1:{port}",
        "--graceful-timeout", "5", "--timeout", "60", *NO_CONTROL_SOCKET, app,
    ]  # fmt: skip
    environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    sink = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=sink, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    try:
        _hosts.wait_until_answers(process, f"{base}/stats", "gunicorn", request_timeout=REQUEST_TIMEOUT)
        yield base
    finally:
        stop(process)
        if log is not None and not isinstance(sink, int):
            sink.close()


def worker_stats(base: str, workers: int, attempts: int = 200) -> dict[int, dict[str, Any]]:
    """``/stats`` of every worker (requests land on any worker: asked until each has answered)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(attempts):
        _, stats = request("GET", f"{base}/stats")
        seen[stats["pid"]] = stats
        if len(seen) == workers:
            break
    return seen


def submit_and_collect(base: str, image: bytes, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    """Submit ``count`` renders, then ask their status until every one has ended; their final statuses.
    A status answered by a worker that does not hold the render has no ``seconds``: asked again."""
    ids = []
    for _ in range(count):
        status, answer = request("POST", f"{base}/background-removals", image)
        assert status == 202, answer
        ids.append(answer["id"])
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(final) < count:
        for process_id in ids:
            if process_id in final:
                continue
            _, answer = request("GET", f"{base}/jobs/{process_id}")
            if answer.get("status") in ("succeeded", "failed") and answer.get("seconds") is not None:
                final[process_id] = {**answer, "id": process_id}
        if time.monotonic() > deadline:
            raise AssertionError(f"{count - len(final)} renders never ended")
        time.sleep(0.02)
    return [final[process_id] for process_id in ids]


def host_env(emulator_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The variables of an example host: the emulator's credentials, the user, the token, ``extra``."""
    return {**emulator_env, "ADCREATIVE_USER_ID": USER, "ADCREATIVE_WEBHOOK_TOKEN": TOKEN, **extra}


def webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhooks/adcreative/{TOKEN}"


__all__: Sequence[str] = [
    "TOKEN",
    "emulator_process",
    "free_port",
    "gunicorn",
    "host_env",
    "request",
    "submit_and_collect",
    "webhook_url",
    "worker_stats",
]
