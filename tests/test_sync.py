"""The sync client against the emulator served from a thread: the core flows (generate, edit, background
removal, wait, download, bulk, errors), many threads at once, closing, and use where a loop already
runs in the calling thread (a notebook)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import FAST_POLLS, JPEG, PNG, creative_inputs

from adcreative_async import (
    AdCreativeClient,
    AuthenticationError,
    BadRequestError,
    BulkOutcome,
    ClientNotOpenError,
    InvalidRequestError,
    NotFoundError,
    RenderFailedError,
    RenderJob,
    RenderNotReadyError,
    RenderState,
    SyncAdCreativeClient,
    TaskUpdate,
    WaitTimeoutError,
)
from adcreative_async.sync import BlockingIterator, SyncRenderJob, as_completed
from adcreative_async.sync._waiter import Waiter
from adcreative_async.testing import EmulatorThread

T = TypeVar("T")

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
GEN_START = "Image/Generation/AdCreativesByKind"
GEN_EDIT = "Image/Editing/AdCreativesByTasks"
BG_START = "Image/BackgroundRemoving/AdCreative"
BG_DOWNLOAD = "Image/BackgroundRemoving/Download"
TOKEN = "Authorization/GenerateJwtToken"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(auto_complete=False, seed=11) as emu:
        yield emu


@pytest.fixture
def client(emulator: EmulatorThread) -> Iterator[SyncAdCreativeClient]:
    with SyncAdCreativeClient(
        **emulator.credentials, user_id=USER, trust_env=False, poll_policy=FAST_POLLS
    ) as c:
        yield c


def remove(client: SyncAdCreativeClient) -> SyncRenderJob:
    return client.background_remover.remove(PNG)


def wait_for(read: Callable[[], list[T]], count: int, seconds: float = 30) -> list[T]:
    """Read until ``count`` items are there (other threads are producing them); fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while len(items := read()) < count:
        assert time.monotonic() < deadline, f"only {len(items)} of {count} after {seconds} s"
        time.sleep(0.002)
    return items


# ------------------------------------------------------------------------------------------ generation


def test_generate_and_wait_as_a_plain_iterator(
    emulator: EmulatorThread, client: SyncAdCreativeClient
) -> None:
    job = client.creatives.generate(**creative_inputs(description="A stunning new way"))
    assert isinstance(job, SyncRenderJob)
    assert (job.feature, job.user_id, len(job.task_ids)) == ("creatives", USER, 5)
    fields = dict(emulator.process(job.process_id).inputs.fields)
    assert fields["mainHeadline"] == ("Introducing Our Latest Product",)
    assert fields["description"] == ("A stunning new way",)
    updates = job.wait_until_complete(timeout=30)
    first = [next(updates) for _ in job.task_ids]  # the states the job already has
    assert {(u.previous, u.state) for u in first} == {(None, RenderState.STARTED)}
    emulator.finish_process(job.process_id)
    rest = list(updates)
    assert all(isinstance(u, TaskUpdate) for u in rest)
    assert {u.task_id for u in rest} == set(job.task_ids)
    assert {(u.previous, u.state) for u in rest} == {(RenderState.STARTED, RenderState.SUCCEEDED)}
    assert job.is_complete
    assert job.progress is not None
    assert job.progress.progress == 100
    assert emulator.request_count(GEN_START) == 1


def test_edit_reopens_the_process(client: SyncAdCreativeClient, emulator: EmulatorThread) -> None:
    job = client.creatives.generate(**creative_inputs())
    emulator.finish_process(job.process_id)
    assert job.result(timeout=30).is_complete
    edited_ids = list(job.task_ids[:2])
    edited = client.creatives.edit(edited_ids, main_headline="Now 20% off", background_image=JPEG)
    assert edited.process_id == job.process_id
    assert edited.progress is not None
    assert {edited.progress.tasks[t] for t in edited_ids} == {RenderState.STARTED}
    (edit,) = emulator.process(job.process_id).edits
    assert edit.fields["taskIds"] == tuple(edited_ids)
    assert edit.fields["mainHeadline"] == ("Now 20% off",)
    for task_id in edited_ids:
        emulator.finish_task(task_id)
    assert edited.result(timeout=30).is_complete
    assert emulator.request_count(GEN_EDIT) == 1


def test_progress_listings(client: SyncAdCreativeClient) -> None:
    job = remove(client)
    (listed,) = client.background_remover.user_progress(USER, job.process_id)
    assert listed.image_render_process_id == job.process_id
    assert [p.image_render_process_id for p in client.background_remover.application_progress()] == [
        job.process_id
    ]
    assert client.background_remover.process_progress(job.process_id).progress == 0
    assert client.creatives.user_progress() == []  # the documented "nothing found"


# ----------------------------------------------------------------------------------- background removal


def test_background_removal_end_to_end(
    emulator: EmulatorThread, client: SyncAdCreativeClient, tmp_path: Path
) -> None:
    image = tmp_path / "product.jpg"
    image.write_bytes(JPEG)
    job = client.background_remover.remove(image)
    (task_id,) = job.task_ids
    assert emulator.process(job.process_id).inputs.files["uploadedImage"].filename == "product.jpg"
    assert not job.refresh().is_complete
    emulator.finish_task(task_id)
    assert job.refresh().is_complete
    path = job.download(task_id, tmp_path)
    assert path == tmp_path / f"{task_id}.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert emulator.download_count(task_id) == 1


# ---------------------------------------------------------------------------------------------- waiting


def test_break_leaves_no_waiter_registered(client: SyncAdCreativeClient) -> None:
    job = remove(client)
    for _ in job.wait_until_complete():
        break
    waiting = job.wait_until_complete()
    assert next(waiting).state == RenderState.STARTED
    assert client.scheduler_stats["waiters"] == 0


def test_wait_timeout_and_failure(emulator: EmulatorThread, client: SyncAdCreativeClient) -> None:
    job = remove(client)
    with pytest.raises(WaitTimeoutError) as info:
        job.result(timeout=0.05)
    assert info.value.job is job.async_job
    emulator.fail_task(job.task_ids[0], "model crashed")
    with pytest.raises(RenderFailedError, match="model crashed"):
        list(job.wait_until_complete(timeout=30))
    assert job.failed
    assert job.result(timeout=30, raise_on_failure=False).is_complete


def test_resource_wait_and_rebuilt_jobs(emulator: EmulatorThread, client: SyncAdCreativeClient) -> None:
    job = remove(client)
    emulator.finish_process(job.process_id)
    states = [u.state for u in client.background_remover.wait_until_complete(job.process_id, timeout=30)]
    assert states[-1] == RenderState.SUCCEEDED
    again = client.job_from_json(job.to_json())
    assert again == job
    assert again.resource is client.background_remover
    assert again.refresh().is_complete
    rebuilt = client.resource("background_remover").job(job.process_id)
    assert isinstance(rebuilt, SyncRenderJob)
    assert rebuilt.result(timeout=30).is_complete


def test_as_completed_yields_the_handles_given(
    emulator: EmulatorThread, client: SyncAdCreativeClient
) -> None:
    jobs = [remove(client) for _ in range(3)]
    emulator.finish_process(jobs[1].process_id)
    finished = as_completed(jobs, timeout=30)
    assert next(finished) is jobs[1]
    for job in (jobs[2], jobs[0]):
        emulator.finish_process(job.process_id)
    assert {id(j) for j in finished} == {id(jobs[0]), id(jobs[2])}


def test_an_unbound_job_keeps_its_data_and_says_how_to_bind(client: SyncAdCreativeClient) -> None:
    job = remove(client)
    loose = SyncRenderJob.from_json(job.to_json())
    assert loose.to_dict() == job.to_dict()
    with pytest.raises(InvalidRequestError, match="not bound to a client"):
        loose.result()
    assert loose.bind(client.background_remover).refresh().image_render_process_id == job.process_id


# -------------------------------------------------------------------------------------------- downloads


def test_stream_download(emulator: EmulatorThread, client: SyncAdCreativeClient, tmp_path: Path) -> None:
    job = remove(client)
    emulator.finish_process(job.process_id)
    task_id = job.task_ids[0]
    reference = job.download(task_id, tmp_path / "ref.png").read_bytes()
    with client.background_remover.stream_download(job.process_id, task_id) as stream:
        assert stream.content_length == len(reference)
        assert stream.content_type == "image/png"
        chunks = list(stream.iter_bytes(chunk_size=64))
        assert stream.bytes_received == len(reference)
    assert b"".join(chunks) == reference
    assert max(len(c) for c in chunks) <= 64
    with job.stream_download(task_id) as stream:
        for _ in stream.iter_bytes(16):
            break  # leaving early closes the connection
    assert emulator.download_count(task_id) == 3


def test_open_download_needs_no_with_block(
    emulator: EmulatorThread, client: SyncAdCreativeClient, tmp_path: Path
) -> None:
    job = remove(client)
    emulator.finish_process(job.process_id)
    task_id = job.task_ids[0]
    reference = job.download(task_id, tmp_path / "ref.png").read_bytes()
    stream = client.background_remover.open_download(job.process_id, task_id)
    assert [stream.is_open] == [True]  # (a list: mypy would narrow the property for the later check)
    assert stream.content_type == "image/png"  # headers readable before the body
    assert b"".join(stream.iter_bytes()) == reference
    stream.close()
    assert not stream.is_open
    stream.close()  # idempotent
    opened = job.open_download(task_id)
    with opened:  # a with block closes an opened stream too
        assert opened.content_length == len(reference)
    assert not opened.is_open
    pending = remove(client)
    with pytest.raises(RenderNotReadyError):
        pending.open_download(pending.task_ids[0])
    assert emulator.download_count(task_id) == 3


def test_download_of_an_unfinished_task(client: SyncAdCreativeClient, tmp_path: Path) -> None:
    job = remove(client)
    with pytest.raises(NotFoundError):
        job.download(job.task_ids[0], tmp_path)
    with pytest.raises(NotFoundError), job.stream_download(job.task_ids[0]):
        pass
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------- bulk


async def submit(client: AdCreativeClient, item: bytes) -> RenderJob:
    return await client.background_remover.remove(item)


def test_process_many_isolates_failures(tmp_path: Path) -> None:
    with (
        EmulatorThread(task_duration=0.01) as emulator,
        SyncAdCreativeClient(
            **emulator.credentials, user_id=USER, trust_env=False, poll_policy=FAST_POLLS
        ) as client,
    ):
        items = [PNG, b"not an image", PNG]
        outcomes = client.process_many(items, submit, dest=tmp_path, item_timeout=30)
        assert [o.index for o in outcomes] == [0, 1, 2]
        assert all(isinstance(o, BulkOutcome) for o in outcomes)
        assert isinstance(outcomes[1].error, InvalidRequestError)
        assert [o.ok for o in outcomes] == [True, False, True]
        assert all(len(o.files) == 1 and o.files[0].is_file() for o in (outcomes[0], outcomes[2]))
        assert emulator.request_count(BG_START) == 2


def test_bulk_yields_outcomes_as_items_finish(
    emulator: EmulatorThread, client: SyncAdCreativeClient, tmp_path: Path
) -> None:
    seen: list[tuple[int, RenderState]] = []
    with client.bulk(
        [PNG, PNG, PNG],
        lambda c, item: c.background_remover.remove(item),
        dest=tmp_path,
        item_timeout=30,
        on_update=lambda outcome, update: seen.append((outcome.index, update.state)),
    ) as run:
        assert len(run) == 3
        processes = wait_for(lambda: emulator.processes_for(USER), count=3)
        for process in processes:
            emulator.finish_process(process.process_id)
        outcomes = list(run)
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    assert all(o.ok and len(o.files) == 1 and o.files[0].exists() for o in outcomes)
    assert {state for _, state in seen} >= {RenderState.SUCCEEDED}


def test_leaving_a_bulk_run_early_cancels_the_rest(
    emulator: EmulatorThread, client: SyncAdCreativeClient
) -> None:
    with client.bulk([PNG, PNG], submit) as run:
        pass
    assert len(run) == 2
    assert client.scheduler_stats["waiters"] == 0


# ----------------------------------------------------------------------------------------------- errors


def test_input_is_refused_before_sending(emulator: EmulatorThread, client: SyncAdCreativeClient) -> None:
    with pytest.raises(InvalidRequestError, match=r"main_headline"):
        client.creatives.generate(**creative_inputs(main_headline="x" * 256))
    with pytest.raises(InvalidRequestError, match=r"^image \(uploadedImage\): .*is empty"):
        client.background_remover.remove(b"")
    with pytest.raises(InvalidRequestError, match="task_id: must be a GUID"):
        client.background_remover.download(str(uuid.uuid4()), "nope", ".")
    assert emulator.request_count(GEN_START) + emulator.request_count(BG_START) == 0


def test_api_errors_come_through_typed(emulator: EmulatorThread, client: SyncAdCreativeClient) -> None:
    started = client.creatives.generate(**creative_inputs())
    with pytest.raises(BadRequestError):
        client.creatives.edit(started.task_ids[:1], punchline="new")  # the process is still running
    creds: dict[str, Any] = {**emulator.credentials, "api_secret": "wrong"}
    with (
        SyncAdCreativeClient(**creds, user_id=USER, trust_env=False) as wrong,
        pytest.raises(AuthenticationError),
    ):
        wrong.background_remover.user_progress()


def test_use_outside_the_lifetime_says_what_to_do(emulator: EmulatorThread) -> None:
    client = SyncAdCreativeClient(**emulator.credentials, user_id=USER, trust_env=False)
    with pytest.raises(ClientNotOpenError, match=r"with SyncAdCreativeClient\(\.\.\.\) as client"):
        client.background_remover.user_progress()
    with client:
        assert client.is_open
        client.background_remover.user_progress()
    with pytest.raises(ClientNotOpenError):
        client.background_remover.user_progress()
    client.close()  # idempotent
    with client:  # and it opens again
        assert client.background_remover.user_progress() == []


def test_a_callback_cannot_call_the_sync_client(client: SyncAdCreativeClient) -> None:
    errors: list[BaseException] = []

    def on_update(outcome: BulkOutcome[bytes], update: TaskUpdate) -> None:
        try:
            client.background_remover.user_progress()
        except RuntimeError as exc:
            errors.append(exc)

    (outcome,) = client.process_many([PNG], submit, on_update=on_update, item_timeout=0.05)
    assert outcome.job is not None
    assert errors
    assert "own event loop thread" in str(errors[0])


# ---------------------------------------------------------------------------------------------- threads


def test_sixteen_threads_share_one_client(
    emulator: EmulatorThread, client: SyncAdCreativeClient, tmp_path: Path
) -> None:
    def work(n: int) -> Path:
        job = remove(client)
        emulator.finish_process(job.process_id)
        job.result(timeout=30)
        return job.download(job.task_ids[0], tmp_path / f"{n}.png")

    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(work, range(64)))
    assert len({p.name for p in paths}) == 64
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert emulator.request_count(BG_START) == 64
    assert emulator.request_count(BG_DOWNLOAD) == 64
    assert client.token_requests == 1  # one token for every thread


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc (Linux)")
def test_a_calling_thread_that_ends_leaves_no_descriptor_open(client: SyncAdCreativeClient) -> None:
    """Each calling thread sleeps on a pipe of its own: it is closed when the thread ends."""
    loop = client._running_loop()

    def open_descriptors() -> int:
        # The loop thread holds a call (and its waiter) until the callback that woke the caller returns:
        # under load it may still be there after the caller has ended and been joined. A round trip of
        # this thread's own runs after that callback, so none is held once it is back.
        loop.submit(lambda: None)
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    results: list[int] = []

    def call(n: int) -> None:
        results.append(loop.submit(lambda: n))

    call(-1)  # this thread's own pipe, made once
    before = open_descriptors()
    for n in range(20):
        thread = threading.Thread(target=call, args=(n,))
        thread.start()
        thread.join(30)
    assert results == list(range(-1, 20))
    assert open_descriptors() == before


def test_closing_from_another_thread_ends_blocked_calls(client: SyncAdCreativeClient) -> None:
    job = remove(client)
    errors: list[BaseException] = []
    waiting = threading.Event()

    def wait() -> None:
        updates = job.wait_until_complete()
        next(updates)
        waiting.set()
        try:
            next(updates)  # blocks: nothing finishes
        except ClientNotOpenError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    assert waiting.wait(30)
    client.close()
    thread.join(30)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert not client.is_open


async def _sleep_until_cancelled(cancelled: threading.Event) -> None:
    """Sleep for an hour; ``cancelled`` is set when the sleep is cancelled."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_a_call_abandoned_by_its_thread_is_cancelled_on_the_loop(client: SyncAdCreativeClient) -> None:
    """What a KeyboardInterrupt in the calling thread does: the call's task is cancelled on the loop."""
    cancelled = threading.Event()

    forever = functools.partial(_sleep_until_cancelled, cancelled)
    with pytest.raises(concurrent.futures.TimeoutError):
        client._running_loop().submit(forever, timeout=0.01)
    assert cancelled.wait(30)
    assert client.background_remover.user_progress() == []  # the client is unharmed


def test_a_late_wake_of_an_abandoned_call_is_not_taken_for_the_next_call(
    client: SyncAdCreativeClient,
) -> None:
    """The abandoned call ends on the loop after its thread stopped waiting, and wakes that thread's
    waiter; the thread's next call must still wait for its own result."""
    loop = client._running_loop()
    cancelled = threading.Event()

    forever = functools.partial(_sleep_until_cancelled, cancelled)

    async def answer() -> int:
        for _ in range(5):  # ends several loop iterations after the abandoned call's late wake
            await asyncio.sleep(0)
        return 7

    with pytest.raises(concurrent.futures.TimeoutError):
        loop.submit(forever, timeout=0.01)
    assert cancelled.wait(30)
    assert [loop.submit(answer) for _ in range(3)] == [7, 7, 7]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals to a thread are POSIX-only")
def test_keyboard_interrupt_ends_a_blocked_call_and_cancels_it(client: SyncAdCreativeClient) -> None:
    """Ctrl+C in the main thread while it waits: KeyboardInterrupt there, the call cancelled on the loop."""
    started, cancelled = threading.Event(), threading.Event()

    async def long_call() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "not interrupted"

    def interrupt() -> None:
        assert started.wait(30)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()
    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            client._running_loop().submit(long_call)
    finally:
        helper.join(30)
    assert cancelled.wait(30)
    assert client.background_remover.user_progress() == []  # the client is unharmed


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals to a thread are POSIX-only")
def test_a_call_from_a_signal_handler_during_a_call_leaves_both_their_results(
    client: SyncAdCreativeClient,
) -> None:
    """A signal handler runs in the waiting thread and calls the client: the inner call must not take
    the outer call's wake (the outer would then sleep forever), nor the outer the inner's."""
    loop = client._running_loop()
    started = threading.Event()
    release: asyncio.Event | None = None
    inner_results: list[str] = []

    async def outer() -> str:
        nonlocal release
        release = asyncio.Event()
        started.set()
        await release.wait()
        return "outer"

    async def inner() -> str:
        assert release is not None
        release.set()  # the outer call ends and wakes its thread while this one still runs
        for _ in range(10):
            await asyncio.sleep(0)
        return "inner"

    def handler(signum: int, frame: object) -> None:
        inner_results.append(loop.submit(inner, timeout=30))

    main = threading.main_thread().ident or 0
    returned = threading.Event()

    def send_signal() -> None:
        assert started.wait(30)
        # Signalled once asleep in its wait (else the handler would run before the wait, and pass).
        for _ in range(3000):
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code is Waiter.wait.__code__:
                break
            time.sleep(0.001)
        time.sleep(0.002)  # from the wait's Python line into its system call
        signal.pthread_kill(main, signal.SIGUSR1)
        if not returned.wait(30):  # the outer call sleeps on: end it with a failure, not a hang
            signal.pthread_kill(main, signal.SIGUSR2)

    def never_woke(signum: int, frame: object) -> None:
        raise AssertionError("the outer call was never woken")

    previous = signal.signal(signal.SIGUSR1, handler), signal.signal(signal.SIGUSR2, never_woke)
    helper = threading.Thread(target=send_signal)
    helper.start()
    try:
        assert loop.submit(outer) == "outer"
    finally:
        returned.set()
        helper.join(30)
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGUSR2, previous[1])
    assert inner_results == ["inner"]


def test_works_where_a_loop_already_runs(emulator: EmulatorThread, client: SyncAdCreativeClient) -> None:
    """As in a notebook cell: the calling thread runs an event loop (blocked while the call runs)."""

    async def cell() -> bool:
        job = remove(client)
        emulator.finish_process(job.process_id)
        return job.result(timeout=30).is_complete

    assert asyncio.run(cell())


def test_blocking_iterator_closes_an_async_generator_on_break(client: SyncAdCreativeClient) -> None:
    closed = threading.Event()
    loop_threads: set[int] = set()

    async def numbers() -> AsyncIterator[int]:
        try:
            for n in range(100):
                loop_threads.add(threading.get_ident())
                yield n
        finally:
            closed.set()

    for n in BlockingIterator(client, numbers()):
        if n == 2:
            break
    assert closed.wait(30)  # the dropped iterator closed the generator on the loop
    assert loop_threads != {threading.get_ident()}
    closed.clear()
    with BlockingIterator(client, numbers()) as iterator:
        assert next(iterator) == 0
    assert closed.is_set()  # closed before the block was left


def test_an_open_client_does_not_hang_interpreter_exit(emulator: EmulatorThread) -> None:
    script = (
        "import sys, json\n"
        "from adcreative_async import SyncAdCreativeClient\n"
        "client = SyncAdCreativeClient(**json.loads(sys.argv[1]), user_id=sys.argv[2], trust_env=False)\n"
        "client.open()\n"
        "print(client.background_remover.user_progress())\n"
    )
    import json

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, json.dumps(dict(emulator.credentials)), USER],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "[]", "")


def _run_client_script(script: str, emulator: EmulatorThread) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; its argv: the emulator's credentials (JSON) and USER."""
    import json

    return subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore::DeprecationWarning",
            "-c",
            script,
            json.dumps(dict(emulator.credentials)),
            USER,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_is_told_to_open_its_own_client(emulator: EmulatorThread) -> None:
    script = (
        "import os, sys, json\n"
        "from adcreative_async import ClientNotOpenError, SyncAdCreativeClient\n"
        "client = SyncAdCreativeClient(**json.loads(sys.argv[1]), user_id=sys.argv[2], trust_env=False)\n"
        "client.open()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        client.background_remover.user_progress()\n"
        "    except ClientNotOpenError as exc:\n"
        "        os._exit(3 if 'create and open a client in each process' in str(exc) else 4)\n"
        "    os._exit(5)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), client.background_remover.user_progress())\n"
        "client.close()\n"
    )
    done = _run_client_script(script, emulator)
    assert (done.returncode, done.stdout.strip()) == (0, "3 []"), done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_waits_on_pipes_of_its_own(emulator: EmulatorThread) -> None:
    """A thread sleeps on a pipe until the loop thread wakes it: a child must not share its parent's
    (the parent's loop thread would wake the child, and one process could take the other's wake)."""
    script = (
        "import os, sys, json\n"
        "from adcreative_async import SyncAdCreativeClient\n"
        "from adcreative_async.sync._waiter import thread_waiter\n"
        "options = dict(**json.loads(sys.argv[1]), user_id=sys.argv[2], trust_env=False)\n"
        "client = SyncAdCreativeClient(**options)\n"
        "client.open()\n"
        "client.background_remover.user_progress()\n"
        "waiter, _ = thread_waiter()\n"
        "waiter.busy = False\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    own, _ = thread_waiter()\n"
        "    own.busy = False\n"
        "    with SyncAdCreativeClient(**options) as child_client:\n"
        "        calls = [child_client.background_remover.user_progress() for _ in range(20)]\n"
        "    os._exit(3 if own is not waiter and calls == [[]] * 20 else 4)\n"
        "calls = [client.background_remover.user_progress() for _ in range(20)]\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), calls == [[]] * 20, thread_waiter()[0] is waiter)\n"
        "client.close()\n"
    )
    done = _run_client_script(script, emulator)
    assert (done.returncode, done.stdout.strip()) == (0, "3 True True"), done.stderr


def test_sync_twins_return_sync_handles(client: SyncAdCreativeClient) -> None:
    job = remove(client)
    values: dict[str, Any] = {"job": client.background_remover.job(job.process_id), "resource": job.resource}
    assert isinstance(values["job"], SyncRenderJob)
    assert values["resource"] is client.background_remover
    assert repr(job).startswith("SyncRenderJob(")
