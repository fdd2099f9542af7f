"""A model-based test of what an operator does to a bulk run, against the promises of the run ledger.

A hypothesis state machine drives the real ``adcreative remove-bg`` command (subprocesses) over one input
folder and one output folder, against an emulator in its own process with real latency. Its rules are an
operator's actions: run to the end, two runs on the same folder at once (two workers on one ledger),
interrupt a run (Ctrl-C or kill -9) at a random moment, rerun with
``--retry-failed`` or ``--restart``, add, remove or change input files, make the API fail for a while
(503s on start calls, listings or downloads), and run with wrong credentials or against a closed port.

After every step (the invariants, the promises):

- no input content is rendered more often than the operator asked for (once, plus once per ``--restart``
  while it was an input), counted at the emulator;
- no item whose render exists (a process id is recorded) is ``failed`` for anything but the render's own
  failure (the emulator fails none here);
- no run hangs (each has a time limit);
- a setup error stops the run at once, with nothing recorded as failed and nothing rendered;
- after a run that ended without failures, every input has its own byte-exact result (the emulator stamps
  each result with its input's SHA-256).

And at the end, a plain run finishes every input. The number of examples is small in the normal run
(``ADCREATIVE_MODEL_EXAMPLES``, default 4, and steps ``ADCREATIVE_MODEL_STEPS``, default 8); raise them
for a longer search.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from adcreative_async.testing import input_stamp, sample_image
from benchmarks._hosts import emulator as emulator_subprocess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("ADCREATIVE_MODEL_EXAMPLES", "4"))
STEPS = int(os.environ.get("ADCREATIVE_MODEL_STEPS", "8"))
#: A run of a few dozen small inputs takes seconds here; one that takes this long is a hang.
RUN_LIMIT = 120.0
BG_START = "Image/BackgroundRemoving/AdCreative"
BG_APP_PROGRESS = "Image/BackgroundRemoving/CheckApplicationAllProgresses"
BG_DOWNLOAD = "Image/BackgroundRemoving/Download"
LEDGER = ".adcreative-run.sqlite"


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict[str, Any]]:
    """The emulator in its own process, with the latency of a real service."""
    flags = [
        "--task-duration", "0.1", "0.6", "--start-latency", "0.05", "0.3", "--read-after-write-lag", "0.05",
        "--stamp-inputs", "--seed", "23",
    ]  # fmt: skip
    with emulator_subprocess(*flags) as info:
        yield info


def emulator_get(info: dict[str, Any], route: str) -> Any:
    with urllib.request.urlopen(f"{info['base_url']}/_emulator/{route}", timeout=30) as response:
        return json.loads(response.read())


def emulator_post(info: dict[str, Any], route: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{info['base_url']}/_emulator/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Operator(RuleBasedStateMachine):
    """One input folder, one output folder, and an operator (see the module doc)."""

    info: ClassVar[dict[str, Any]] = {}
    examples: ClassVar[Iterator[int]] = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="adcreative-model-"))
        self.inputs = self.folder / "in"
        self.out = self.folder / "out"
        self.inputs.mkdir()
        # other examples' inputs are other contents (the emulator, shared by the examples, counts renders
        # by content): a number of its own (a random one in 0-199 met another example's now and then)
        self.salt = next(Operator.examples)
        self.made = 0
        self.current: dict[str, str] = {}  # input name -> SHA-256
        self.allowed: Counter[str] = Counter()  # renders the operator asked for, by content
        self.ever: set[str] = set()
        self.log: list[str] = []

    # ---------------------------------------------------------------------------------- helpers

    def _write(self, name: str) -> None:
        self.made += 1
        colour = (self.made % 256, self.salt % 256, 200 + self.made // 256 % 50)
        data = sample_image("png", (4, 4 + self.salt // 256), colour)
        (self.inputs / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        self.current[name] = digest
        if digest not in self.ever:
            self.ever.add(digest)
            self.allowed[digest] += 1

    def _env(self, **override: str) -> dict[str, str]:
        env = dict(os.environ)
        keys = {
            "ADCREATIVE_APPLICATION_ID": "application_id",
            "ADCREATIVE_API_KEY": "api_key",
            "ADCREATIVE_API_SECRET": "api_secret",
            "ADCREATIVE_JWT_PRIVATE_KEY": "jwt_private_key",
            "ADCREATIVE_BASE_URL": "base_url",
        }
        for variable, key in keys.items():
            env[variable] = str(self.info[key])
        env.pop("ADCREATIVE_EMULATOR", None)
        env.update(override)
        return env

    def _start(self, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "adcreative_async.cli",
            "remove-bg",
            "--json",
            str(self.inputs),
            "-o",
            str(self.out),
            *flags,
        ]
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.folder,
            env=env or self._env(),
        )

    def _finish(self, process: subprocess.Popen[str], what: str) -> tuple[int, str, str]:
        try:
            stdout, stderr = process.communicate(timeout=RUN_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError(f"{what}: the run did not end within {RUN_LIMIT} s (a hang)") from None
        self.log.append(f"{what}: exit {process.returncode}")
        return process.returncode, stdout, stderr

    def _run(self, *flags: str, what: str) -> tuple[int, str, str]:
        return self._finish(self._start(*flags), what)

    def _ledger_rows(self) -> list[tuple[str, str | None, str | None, str | None]]:
        path = self.out / LEDGER
        if not path.exists():
            return []
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows: list[tuple[str, str | None, str | None, str | None]] = connection.execute(
                "SELECT state, process_id, error_code, label FROM items"
            ).fetchall()
        finally:
            connection.close()
        return rows

    def _failed_count(self) -> int:
        return sum(1 for state, *_ in self._ledger_rows() if state == "failed")

    def _renders(self) -> dict[str, int]:
        counts: dict[str, int] = emulator_get(self.info, "processes-per-input")
        return {digest: counts.get(digest, 0) for digest in self.ever}

    def _check_own_files(self, what: str) -> None:
        """Every current input has its own result: a file in the output folder made from it."""
        stamps: dict[str, list[str]] = {}
        for path in self.out.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                stamp = input_stamp(path.read_bytes())
                if stamp is not None:
                    stamps.setdefault(stamp, []).append(path.name)
        missing = [name for name, digest in self.current.items() if digest not in stamps]
        assert not missing, f"{what}: inputs without their own result: {missing} ({self.log})"

    # -------------------------------------------------------------------------------- the rules

    @initialize(n=st.integers(min_value=3, max_value=24))
    def some_inputs(self, n: int) -> None:
        for i in range(n):
            self._write(f"photo-{i:03d}.png")

    @rule()
    def run_to_the_end(self) -> None:
        code, _, stderr = self._run(what="run")
        assert code in (0, 1), f"run: exit {code}: {stderr[-2000:]}"
        if code == 0:
            self._check_own_files("run")

    @rule(delay=st.floats(min_value=0.0, max_value=1.0))
    def two_runs_at_once(self, delay: float) -> None:
        """Two workers on the same folder (one SQLite ledger): each claims what the other does not hold."""
        first = self._start()
        time.sleep(delay)
        second = self._start()
        for process, name in ((first, "the first of two runs"), (second, "the second of two runs")):
            code, _, stderr = self._finish(process, name)
            assert code in (0, 1), f"{name}: exit {code}: {stderr[-2000:]}"

    @rule(delay=st.floats(min_value=0.3, max_value=3.0), how=st.sampled_from(["SIGINT", "SIGKILL"]))
    def interrupt_a_run(self, delay: float, how: str) -> None:
        process = self._start()
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.Signals[how])
        self._finish(process, f"run interrupted by {how} after {delay:.2f} s")

    @rule()
    def rerun_with_retry_failed(self) -> None:
        code, _, stderr = self._run("--retry-failed", what="--retry-failed")
        assert code in (0, 1), f"--retry-failed: exit {code}: {stderr[-2000:]}"

    @rule()
    def rerun_with_restart(self) -> None:
        for digest in set(self.current.values()):
            self.allowed[digest] += 1  # asked for: a new render of every input
        code, _, stderr = self._run("--restart", "--yes", what="--restart")
        assert code in (0, 1), f"--restart: exit {code}: {stderr[-2000:]}"
        if code == 0:
            self._check_own_files("--restart")

    @rule(n=st.integers(min_value=1, max_value=4))
    def add_inputs(self, n: int) -> None:
        for _ in range(n):
            self._write(f"added-{self.made:04d}.png")

    @rule(data=st.data())
    def remove_an_input(self, data: st.DataObject) -> None:
        if len(self.current) <= 1:
            return
        name = data.draw(st.sampled_from(sorted(self.current)))
        (self.inputs / name).unlink()
        del self.current[name]

    @rule(data=st.data())
    def change_an_input(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.current)))
        self._write(name)

    @rule(
        route=st.sampled_from([BG_START, BG_APP_PROGRESS, BG_DOWNLOAD]),
        status=st.sampled_from([503, 502]),
        count=st.integers(min_value=1, max_value=6),
    )
    def the_api_fails_for_a_while(self, route: str, status: int, count: int) -> None:
        emulator_post(self.info, "fail-next", {"route": route, "status": status, "count": count})
        code, _, stderr = self._run(what=f"run with {count} x {status} on {route}")
        assert code in (0, 1), f"run with faults: exit {code}: {stderr[-2000:]}"

    @rule(setting=st.sampled_from(["credentials", "closed port"]))
    def a_setup_error(self, setting: str) -> None:
        failed_before = self._failed_count()
        renders_before = self._renders()
        if setting == "credentials":
            env = self._env(ADCREATIVE_API_SECRET="wrong-" + uuid.uuid4().hex)
        else:
            env = self._env(ADCREATIVE_BASE_URL=f"http://127.0.0.1:{closed_port()}")
        started = time.monotonic()
        code, _, stderr = self._finish(self._start(env=env), f"run with a setup error ({setting})")
        took = time.monotonic() - started
        assert code == 2, f"a setup error ({setting}) should exit 2, got {code}: {stderr[-2000:]}"
        assert "Traceback" not in stderr, stderr[-2000:]
        assert took < 60, f"a setup error ({setting}) took {took:.1f} s to stop the run"
        assert self._failed_count() == failed_before, f"a setup error ({setting}) recorded items as failed"
        assert self._renders() == renders_before, f"a setup error ({setting}) made renders"

    # ---------------------------------------------------------------------------- the invariants

    @invariant()
    def nothing_is_rendered_more_often_than_asked(self) -> None:
        renders = self._renders()
        over = {d[:12]: (n, self.allowed[d]) for d, n in renders.items() if n > self.allowed[d]}
        assert not over, f"renders past what was asked (renders, allowed): {over} after {self.log}"

    @invariant()
    def no_render_that_exists_is_failed(self) -> None:
        bad = [
            (label, code)
            for state, process, code, label in self._ledger_rows()
            if state == "failed" and process
        ]
        assert not bad, f"items whose render exists were recorded failed: {bad} after {self.log}"

    def teardown(self) -> None:
        try:
            code, _, stderr = self._run(what="the last plain run")
            assert code == 0, f"the last plain run: exit {code}: {stderr[-2000:]} after {self.log}"
            self._check_own_files("the last plain run")
            renders = self._renders()
            for name, digest in self.current.items():
                assert renders[digest] >= 1, f"{name} was never rendered"
            self.nothing_is_rendered_more_often_than_asked()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def test_an_operator_cannot_make_the_ledger_pay_twice_or_lose_a_render(emulator: dict[str, Any]) -> None:
    Operator.info.clear()
    Operator.info.update(emulator)
    run_state_machine_as_test(
        Operator,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("ADCREATIVE_MODEL_RANDOM") != "1",
        ),
    )
