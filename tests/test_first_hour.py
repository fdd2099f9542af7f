"""The first hour with the SDK, as a new user meets it: README's first sample runs as is, the error tree
README draws is the real one, "not found" catches every not-found, a download of an unfinished task
says so, a stream's headers are readable without dunders, names and types agree, and the CLI's
helpers (emulator environment, demo directory) do what a shell user expects."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from helpers import FAST_POLLS

import adcreative_async
from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    JobError,
    NotFoundError,
    RenderNotFoundError,
    RenderNotReadyError,
    RenderState,
    RetryPolicy,
    ServerError,
)
from adcreative_async.testing import Emulator, EmulatorThread, sample_image

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"
PNG = sample_image("png", (16, 16))

pytestmark = pytest.mark.anyio


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(auto_complete=False, seed=11) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[AdCreativeClient]:
    async with AdCreativeClient(**emu.credentials, user_id=USER, poll_policy=FAST_POLLS) as c:
        yield c


# ------------------------------------------------------------------------------------ error tree


def _tree(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(class, parent, other bases in parentheses) for every line of README's error tree."""
    block = text.split("### Errors", 1)[1].split("```", 2)[1]
    placed: list[tuple[str, str, tuple[str, ...]]] = []
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^([│ ]*(?:[├└]── )?)(\w+)(?: \(([\w, ]+)\))?", line)
        if match is None or not match.group(2):
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        extra = tuple(b.strip() for b in (match.group(3) or "").split(",") if b.strip())
        placed.append((match.group(2), parent, extra))
        stack.append((depth, match.group(2)))
    return placed


def test_readme_error_tree_lists_every_exported_error_where_it_inherits() -> None:
    placed = _tree(README.read_text())
    exported = {
        name
        for name in adcreative_async.__all__
        if inspect.isclass(getattr(adcreative_async, name))
        and issubclass(getattr(adcreative_async, name), AdCreativeError)
    }
    assert exported - {name for name, _, _ in placed} == set()
    for name, parent, extra in placed:
        cls = getattr(adcreative_async, name)
        if parent:
            assert issubclass(cls, getattr(adcreative_async, parent)), (name, parent)
        for base in extra:
            base_cls = getattr(adcreative_async, base, None) or __builtins__[base]  # type: ignore[index]
            assert issubclass(cls, base_cls), (name, base)


async def test_a_process_the_server_forgot_is_a_not_found_error_carrying_the_job(
    emu: Emulator, client: AdCreativeClient
) -> None:
    job = client.background_remover.job(UNKNOWN)
    with pytest.raises(NotFoundError) as caught:  # what a user catching "not found" writes
        await job.result(timeout=30)
    error = caught.value
    assert isinstance(error, RenderNotFoundError)
    assert isinstance(error, JobError)
    assert (error.status, error.job) == (404, job)


# ------------------------------------------------------------------------------- not ready yet


async def test_downloading_an_unfinished_task_says_it_is_not_ready(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    job = await client.background_remover.remove(PNG)
    task = job.task_ids[0]
    with pytest.raises(RenderNotReadyError) as caught:
        await job.download(task, tmp_path)
    error = caught.value
    assert isinstance(error, NotFoundError)
    assert (error.task_id, error.process_id, error.state) == (task, job.process_id, RenderState.STARTED)
    assert "no result yet" in str(error)
    assert "Image content not found" not in str(error)
    with pytest.raises(RenderNotReadyError):
        async with job.stream_download(task):
            pass
    with pytest.raises(RenderNotReadyError):  # the resource call, with the client's default user
        await client.background_remover.download(job.process_id, task, tmp_path)
    assert list(tmp_path.iterdir()) == []

    emu.fail_task(task)
    with pytest.raises(RenderNotReadyError) as caught:
        await job.download(task, tmp_path)
    assert caught.value.state == RenderState.FAILED
    assert "failed: it has no result" in str(caught.value)


async def test_a_404_for_unknown_ids_stays_a_plain_not_found(
    emu: Emulator, client: AdCreativeClient, tmp_path: Path
) -> None:
    job = await client.background_remover.remove(PNG)
    emu.finish_process(job.process_id)
    with pytest.raises(NotFoundError) as caught:
        await job.download(UNKNOWN, tmp_path)
    assert not isinstance(caught.value, RenderNotReadyError)
    assert (await job.download(job.task_ids[0], tmp_path)).exists()


async def test_without_a_user_to_ask_the_404_is_kept_and_no_progress_call_is_made(emu: Emulator) -> None:
    async with AdCreativeClient(**emu.credentials) as client:
        job = await client.background_remover.remove(PNG, user_id=USER)
        before = emu.request_count("Image/BackgroundRemoving/CheckUserProgress")
        with pytest.raises(NotFoundError) as caught:
            await client.background_remover.download(job.process_id, job.task_ids[0], "unused/")
        assert not isinstance(caught.value, RenderNotReadyError)
        assert emu.request_count("Image/BackgroundRemoving/CheckUserProgress") == before


# ------------------------------------------------------------------------------- per-call retry


@pytest.mark.parametrize(("retry", "attempts"), [(None, 4), (1, 1), (2, 2), (RetryPolicy(max_attempts=3), 3)])
async def test_retries_can_be_changed_per_call(
    emu: Emulator, client: AdCreativeClient, retry: RetryPolicy | int | None, attempts: int
) -> None:
    fast = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=None)
    async with AdCreativeClient(**emu.credentials, user_id=USER, retry=fast) as quick:
        emu.fail_next("Image/BackgroundRemoving/CheckUserProgress", 503, count=10)
        if isinstance(retry, RetryPolicy):
            retry = RetryPolicy(max_attempts=retry.max_attempts, initial_backoff=0.001, jitter=None)
        with pytest.raises(ServerError):
            await quick.background_remover.user_progress(retry=retry)
        assert emu.request_count("Image/BackgroundRemoving/CheckUserProgress") == attempts


@pytest.mark.parametrize("retry", [1, 2])
async def test_a_process_progress_call_takes_the_per_call_options_too(
    emu: Emulator, client: AdCreativeClient, retry: int
) -> None:
    job = await client.background_remover.remove(PNG)
    before = emu.request_count("Image/BackgroundRemoving/CheckUserProgress")
    emu.fail_next("Image/BackgroundRemoving/CheckUserProgress", 503, count=retry)  # one per attempt
    with pytest.raises(ServerError):
        await client.background_remover.process_progress(job.process_id, retry=retry, timeout=30)
    assert emu.request_count("Image/BackgroundRemoving/CheckUserProgress") - before == retry
    progress = await client.background_remover.process_progress(
        job.process_id, extra_headers={"x-trace": "1"}, retry=RetryPolicy(max_attempts=1)
    )
    assert progress.process_id == job.process_id


@pytest.mark.parametrize("bad", [0, True, 2.5, "3"])
async def test_a_bad_per_call_retry_is_refused_before_sending(
    emu: Emulator, client: AdCreativeClient, bad: object
) -> None:
    with pytest.raises(adcreative_async.InvalidRequestError, match="retry"):
        await client.background_remover.user_progress(retry=bad)  # type: ignore[arg-type]
    assert emu.request_count("Image/BackgroundRemoving/CheckUserProgress") == 0


_SIZES = {"KiB": 1 << 10, "MiB": 1 << 20}


def _readme_value(text: str) -> object:
    """A value as README's option table writes it: a Python literal, or a size such as ``256 KiB``."""
    number, _, unit = text.partition(" ")
    if unit in _SIZES:
        return int(number) * _SIZES[unit]
    return ast.literal_eval(text)


def test_readme_lists_every_client_option_with_its_real_defaults() -> None:
    readme = README.read_text()
    credentials = readme.split("## Install and credentials", 1)[1].split("\n## ", 1)[0]
    table = readme.split("Client options (", 1)[1].split("\n### ", 1)[0]
    parameters = inspect.signature(AdCreativeClient).parameters
    unlisted = {
        name for name in parameters if f"`{name}=" not in table and f"| `{name}` |" not in credentials
    }
    assert unlisted == set()  # every keyword of AdCreativeClient, in one table or the other
    checked = 0
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) < 2 or cells[1] != "as shown":
            continue
        for name, value in re.findall(r"`(\w+)=([^`]+)`", cells[0]):
            shown = re.fullmatch(r"(\w+)\((.*)\)", value)
            if shown is None:  # a plain keyword: the signature's default
                assert _readme_value(value) == parameters[name].default, (name, value)
                checked += 1
                continue
            default = getattr(adcreative_async, shown.group(1))()  # the client's default when None
            for field, text in re.findall(r"(\w+)=((?:\{[^}]*\}|[^,])+)", shown.group(2)):
                assert _readme_value(text.strip()) == getattr(default, field), (name, field, text)
                checked += 1
    assert checked > 30


# ---------------------------------------------------------------- streams for web responses


def _load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_open_download_reads_headers_before_the_body_and_aclose_closes(
    emu: Emulator, client: AdCreativeClient
) -> None:
    job = await client.background_remover.remove(PNG)
    emu.finish_process(job.process_id)
    stream = await job.open_download(job.task_ids[0])
    assert "not open" not in repr(stream)
    assert stream.content_type == "image/png"
    assert stream.content_length is not None
    body = b"".join([chunk async for chunk in stream.iter_bytes()])
    assert len(body) == stream.content_length
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert not stream.is_open
    resource_stream = await client.background_remover.open_download(job.process_id, job.task_ids[0])
    try:
        assert resource_stream.content_type == "image/png"
    finally:
        await resource_stream.aclose()
    assert emu.download_count(job.task_ids[0]) == 2


async def test_streaming_response_closes_the_stream_when_the_caller_goes_away(emu: Emulator) -> None:
    from starlette.requests import ClientDisconnect

    from adcreative_async.integrations.starlette import streaming_response

    async with (
        Emulator(download_size=2 * 1024 * 1024, task_duration=0.01) as big,
        AdCreativeClient(**big.credentials, user_id=USER, poll_policy=FAST_POLLS) as client,
    ):
        job = await client.background_remover.remove(PNG)
        await job.result(timeout=30)
        stream = await job.open_download(job.task_ids[0])
        response = streaming_response(stream, filename="cut out é.png")
        headers = dict(response.headers)
        assert headers["content-type"] == "image/png"
        assert headers["content-length"] == str(2 * 1024 * 1024)
        assert headers["content-disposition"] == (
            "attachment; filename=\"cut out _.png\"; filename*=UTF-8''cut%20out%20%C3%A9.png"
        )
        sent: list[int] = []

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body":
                sent.append(len(message["body"]))  # type: ignore[arg-type]
                raise OSError("the caller hung up")

        async def receive() -> dict[str, object]:
            raise AssertionError("not read under ASGI 2.4")  # pragma: no cover

        scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
        with pytest.raises(ClientDisconnect):
            await response(scope, receive, send)  # type: ignore[arg-type]
        assert len(sent) == 1  # the first chunk, then the caller was gone
        assert not stream.is_open


async def test_fastapi_example_answers_404_for_an_unknown_process_and_409_for_an_unfinished_task() -> None:
    httpx = pytest.importorskip("httpx")
    app = _load_example("fastapi_app").create_app(emulator_options={"auto_complete": False})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        waited = await http.get(f"/jobs/background_remover/{UNKNOWN}/wait")
        assert waited.status_code == 404, waited.text
        # what a browser may know, and no more: not the SDK's message, which names the process's user
        assert waited.json()["detail"] == "no such job"
        started = (await http.post("/background-removals", content=PNG)).json()
        assert set(started) == {"process_id", "task_ids"}  # not job.to_dict(): no user or application id
        task = started["task_ids"][0]
        url = f"/jobs/background_remover/{started['process_id']}/tasks/{task}/result"
        early = await http.get(url)
        assert early.status_code == 409, early.text
        assert "no result yet" in early.json()["detail"]


# ----------------------------------------------------------------------- names and types agree


async def test_task_states_are_render_states_and_unknown_ones_are_kept() -> None:
    from adcreative_async._models import PROGRESS_DECODER

    progress = PROGRESS_DECODER.decode(
        b'{"imageRenderProcessId": "p", "tasks": {"$id": "2", "a": 5, "b": 1, "c": 42}, "progress": 40}'
    )
    assert progress.tasks == {"a": RenderState.SUCCEEDED, "b": RenderState.STARTED, "c": 42}
    assert all(isinstance(state, RenderState) for state in progress.tasks.values())
    assert progress.tasks["c"].name == "UNNAMED_42"
    assert progress.task_state("a") is progress.tasks["a"]


async def test_job_to_dict_uses_python_names_and_every_form_loads_back(
    emu: Emulator, client: AdCreativeClient
) -> None:
    job = await client.background_remover.remove(PNG)
    as_dict = job.to_dict()
    assert {"process_id", "user_id", "task_ids", "progress"} <= as_dict.keys()
    assert as_dict["process_id"] == job.process_id
    assert as_dict["progress"]["image_render_process_id"] == job.process_id
    wire = job.to_wire()
    assert wire["processId"] == job.process_id
    assert wire["progress"]["imageRenderProcessId"] == job.process_id
    assert msgspec.json.decode(job.to_json()) == wire
    old_json = (  # a job stored by an earlier version (camelCase)
        f'{{"feature":"background_remover","processId":"{job.process_id}","userId":"{USER}",'
        f'"taskIds":["{job.task_ids[0]}"],"format":1}}'
    )
    for stored in (as_dict, wire, job.to_json(), old_json, msgspec.json.encode(as_dict)):
        loaded = client.job_from_json(stored)
        assert (loaded.process_id, loaded.user_id) == (job.process_id, USER)
        assert loaded.task_ids[0] == job.task_ids[0]
    assert client.job_from_json(as_dict).progress == job.progress


def test_every_resource_method_that_is_not_awaited_says_it_sends_nothing() -> None:
    from adcreative_async.resources import RenderResource
    from adcreative_async.resources.product_photoshoot import ProductPhotoshootResource

    for cls in (RenderResource, ProductPhotoshootResource):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_") or inspect.iscoroutinefunction(member):
                continue
            assert "sends nothing" in " ".join((member.__doc__ or "").split()), f"{cls.__name__}.{name}"


# --------------------------------------------------------------------------------------- logging


async def test_a_new_users_first_render_logs_nothing_that_looks_like_an_error(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="adcreative_async")
    async with (
        Emulator(task_duration=0.01) as emu,
        AdCreativeClient(**emu.credentials, user_id=USER, poll_policy=FAST_POLLS) as client,
    ):
        job = await client.background_remover.remove(PNG)  # a baseline listing first: 404 "nothing"
        await job.result(timeout=30)
        await job.download_all(tmp_path)
    records = [r for r in caplog.records if r.name.startswith("adcreative_async")]
    assert any("nothing found" in r.getMessage() for r in records)  # the baseline listing was logged
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    looks_bad = re.compile(r"\w+Error\b|\berror\b|\bfail", re.IGNORECASE)
    assert [r.getMessage() for r in records if looks_bad.search(r.getMessage())] == []


def test_readme_lists_every_logger_of_the_package() -> None:
    names = set()
    for path in (ROOT / "adcreative_async").rglob("*.py"):
        names |= set(re.findall(r'getLogger\("([\w.]+)"\)', path.read_text()))
    section = README.read_text().split("### Logging", 1)[1].split("\n## ", 1)[0]
    assert names
    assert {name for name in names if f"`{name}`" not in section} == set()


# ------------------------------------------------------------------------------- README's first


def test_readmes_first_code_sample_runs_as_is_without_an_account(tmp_path: Path) -> None:
    first = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert first is not None
    script = tmp_path / "first.py"
    script.write_text(first.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "SUCCEEDED" in done.stdout
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


# ------------------------------------------------------------------------------------ CLI helpers


def test_emulator_env_format_is_evaluated_by_a_shell_and_the_cli_then_uses_it() -> None:
    key = "k3y with 'quotes' $dollar \"double\""
    python = shlex.quote(sys.executable)
    script = f"""
        set -e
        eval "$({python} -m adcreative_async.cli emulator --format env --detach --api-key {shlex.quote(key)})"
        trap 'kill "$ADCREATIVE_EMULATOR_PID"' EXIT
        printf '%s\\n' "$ADCREATIVE_API_KEY" "$ADCREATIVE_BASE_URL" "$ADCREATIVE_USER_ID"
        {python} -m adcreative_async.cli status --json
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    api_key, base_url, user_id, *document = done.stdout.splitlines()
    assert api_key == key
    assert base_url.startswith("http://127.0.0.1:")
    assert user_id == USER
    assert json.loads("\n".join(document)) == {"ok": True, "scope": "user", "processes": []}


def test_demo_writes_to_a_new_temporary_directory_and_names_results_after_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adcreative_async.cli import main

    work, temp = tmp_path / "checkout", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["demo", "--task-duration", "0.05", "--progress", "lines"]) == 0
    out = capsys.readouterr().out
    assert list(work.iterdir()) == []  # nothing in the current directory
    [where] = list(temp.iterdir())
    assert f"results will be written to {where}/" in out
    assert f"done: 9 files in {where}/" in out
    backgrounds = sorted(p.name for p in (where / "backgrounds").iterdir())
    assert backgrounds == [f"product-{n}.png" for n in range(1, 5)]
    assert sorted(p.name for p in (where / "inputs").iterdir()) == [f"product-{n}.jpg" for n in range(1, 5)]
    assert sorted(p.name for p in (where / "creatives").iterdir()) == [
        f"creative-{n}.png" for n in range(1, 6)
    ]
    assert re.search(r"inputs/product-3\.jpg\s+.\s+backgrounds/product-3\.png", out)


def test_live_bars_draw_only_the_rows_in_progress_bounded_by_the_terminal() -> None:
    from rich.console import Console

    from adcreative_async.cli._display import BarsDisplay

    console = Console(file=io.StringIO(), force_terminal=True, width=120, height=30)
    display = BarsDisplay("background removal", overall_total=1000, console=console)
    try:
        rows = [display.add(f"photo-{n:04d}.jpg") for n in range(1000)]
        [overall] = display.frame_lines()  # queued rows are counted, not drawn
        assert "0/1000 done · 0 running · 1000 queued" in overall
        for row in rows[:600]:
            display.update(row, status="uploading")
        for row in rows[:100]:
            display.done(row, ok=True, status="saved")
        display.done(rows[100], ok=False, status="boom")
        lines = display.frame_lines()
    finally:
        display.close()
    room = 30 - BarsDisplay.RESERVED_LINES
    assert len(lines) == room + 1  # the rows that fit (one of them the "more" line), and the overall bar
    assert [line.split()[1] for line in lines[: room - 1]] == [f"photo-{n:04d}.jpg" for n in range(101, 126)]
    assert lines[room - 1].strip() == f"… and {499 - (room - 1)} more in progress"
    assert "101/1000 done · 499 running · 400 queued · [1 failed]" in lines[-1]


@pytest.mark.parametrize(("summary", "listed"), [("failed", "failed"), ("all", "all"), ("none", "none")])
def test_the_summary_table_lists_what_failed_unless_asked(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    summary: str,
    listed: str,
) -> None:
    from adcreative_async.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(5):
        (folder / f"photo-{n}.jpg").write_bytes(sample_image("jpeg", (20 + n, 20)))
    with EmulatorThread(task_duration=0.01, seed=3) as emulator:
        for name, value in emulator.credentials.items():
            monkeypatch.setenv(f"ADCREATIVE_{name.upper()}", str(value))
        # the first start call is refused by the API: an item's own failure
        emulator.fail_next("Image/BackgroundRemoving/AdCreative", 400)
        argv = ["remove-bg", str(folder), "-o", str(tmp_path / "out"), "--progress", "off"]
        assert main([*argv, "--summary", summary]) == 1
    out = capsys.readouterr().out
    shown = {n for n in range(5) if f"photo-{n}.jpg" in out}
    if listed == "failed":
        assert len(shown) == 1  # the one the API refused (which one: the order of the uploads)
    else:
        assert shown == {"all": {0, 1, 2, 3, 4}, "none": set()}[listed]
    assert ("Background removal: 4 of 5 succeeded" in out) is (summary != "none")
