"""Processes and HTTP on loopback with the standard library only, shared by the benchmarks and the tests
(``benchmarks/_harness.py``, ``benchmarks/webhosts.py``, ``tests/webhosts.py`` and the tests' emulator
fixtures): a free port, an emulator in its own process, a server waited on until it answers, stopping a
process, one HTTP request, gunicorn's control socket turned off.

The timeouts are parameters: the tests wait less than the benchmarks, whose hosts run under load.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The emulator's startup line's keys -> the ``ADCREATIVE_*`` variables that point a client at it.
ENV_NAMES = {
    "base_url": "ADCREATIVE_BASE_URL",
    "application_id": "ADCREATIVE_APPLICATION_ID",
    "api_key": "ADCREATIVE_API_KEY",
    "api_secret": "ADCREATIVE_API_SECRET",
    "jwt_private_key": "ADCREATIVE_JWT_PRIVATE_KEY",
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it lingers ``timeout`` seconds; waits for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def request(method: str, url: str, body: bytes | None = None, *, timeout: float = 60) -> tuple[int, Any]:
    """One HTTP request; (status, decoded JSON body or None)."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, None


def no_control_socket() -> list[str]:
    """gunicorn >= 25 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): servers run
    side by side would take it from one another, so it is turned off where it exists."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return []
    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def emulator_env(info: dict[str, Any]) -> dict[str, str]:
    """The ``ADCREATIVE_*`` variables that point a client at the emulator of startup line ``info``."""
    return {name: str(info[key]) for key, name in ENV_NAMES.items()}


@contextlib.contextmanager
def emulator(*flags: str, stop_timeout: float = 30) -> Iterator[dict[str, Any]]:
    """An emulator in its own process (``python -m adcreative_async.testing --port 0 *flags``); yields its
    startup line (credentials and base URL), plus ``pid``."""
    command = [sys.executable, "-m", "adcreative_async.testing", "--port", "0", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator did not start (exit status {process.wait()})")
        info: dict[str, Any] = json.loads(line)
        info["pid"] = process.pid
        yield info
    finally:
        stop(process, stop_timeout)
        if process.stdout is not None:
            process.stdout.close()


def wait_until_answers(
    process: subprocess.Popen[Any], url: str, name: str, *, seconds: float = 60, request_timeout: float = 60
) -> None:
    """Ask ``url`` every 50 ms until the server ``process`` answers (any status); RuntimeError if it exits
    or has not answered after ``seconds``. (A real server is waited on: the sleeps are real.)"""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            request("GET", url, timeout=request_timeout)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer in {seconds:g} s")
        time.sleep(0.05)
