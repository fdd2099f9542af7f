"""What the CLI reads of a run ledger is bounded whatever the run's size (issue 23: a million items): the
Ctrl-C summary, the spend line of a resumed run and ``runs show`` keep counts, the failures they show and
a hash per input, never the run's records; ``runs show --ledger`` reads a PostgreSQL run (read-only: no
schema made, no run registered), its DSN never printed."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import pytest

from adcreative_async.cli import _runs, main
from adcreative_async.cli._results import LazySequence
from adcreative_async.cli._runs import interrupted_message, spend_line
from adcreative_async.ledger import NewItem, RenderRequest, SqliteLedger, request_keys
from adcreative_async.testing import EmulatorThread, sample_image

POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN", "")  # (cli_env clears ADCREATIVE_*)
N = 20_000
FAILED = 12
R = TypeVar("R")


def peak_of(work: Callable[[], R]) -> tuple[R, int]:
    """What ``work()`` returns, and the most memory it held at once (bytes, tracemalloc)."""
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def request(index: int) -> RenderRequest:
    return RenderRequest.remove_background(index.to_bytes(4, "big"), label=f"in/photo-{index:06d}.png")


async def keys_of(requests: LazySequence[RenderRequest]) -> list[str]:
    keys = await request_keys(requests, None)
    assert all(isinstance(key, str) for key in keys)
    return [str(key) for key in keys]


async def a_large_run(path: Path, *, failed: int = FAILED) -> list[str]:
    """A run ledger of :data:`N` registered inputs (:func:`request`), the first ``failed`` failed."""
    keys = await keys_of(LazySequence(range(N), request))
    async with SqliteLedger(path) as ledger:
        items = [NewItem(key, i, request(i).label, "background_remover") for i, key in enumerate(keys)]
        for start in range(0, N, 5000):
            await ledger.register(items[start : start + 5000])
        for key in keys[:failed]:
            await ledger.failed(key, "BadRequestError", "the API refused the image")
    return keys


def run_async(work: Callable[[], Awaitable[R]]) -> R:
    return anyio.run(work)


def test_the_ctrl_c_summary_keeps_counts_and_a_hash_per_input(tmp_path: Path) -> None:
    run_async(lambda: a_large_run(tmp_path / "run.sqlite"))

    async def summary() -> str:
        async with SqliteLedger(tmp_path / "run.sqlite") as ledger:
            labels = (request(i).label for i in range(N))
            return await interrupted_message(ledger, labels, ["remove-bg", "in/", "-o", "out/"])

    message, peak = peak_of(lambda: run_async(summary))
    lines = message.splitlines()
    assert lines[0].startswith(f"interrupted: of {N} input(s), 0 done, 0 paid for")
    assert lines[0].endswith(f"{N - FAILED} not started, {FAILED} failed:")
    assert lines[1] == "  in/photo-000000.png: BadRequestError: the API refused the image"
    assert len([line for line in lines if "BadRequestError" in line]) == _runs.MAX_FAILED_SHOWN
    assert (
        f"... and {FAILED - _runs.MAX_FAILED_SHOWN} more (adcreative runs show out/ --state failed)"
        in message
    )
    # the records are read a batch at a time: what stays is a hash per input (about 60-90 bytes)
    # (measured: 237 bytes per input, the event loop and the ledger's thread included; 738 before)
    assert peak / N < 400, f"{peak / N:.0f} bytes per input"


def test_the_spend_line_of_a_resumed_run_looks_inputs_up_a_chunk_at_a_time(tmp_path: Path) -> None:
    run_async(lambda: a_large_run(tmp_path / "run.sqlite", failed=0))

    async def line() -> str:
        async with SqliteLedger(tmp_path / "run.sqlite") as ledger:
            requests = LazySequence(range(N), request)  # as the CLI's: made when read
            return await spend_line(requests, ledger)

    said, peak = peak_of(lambda: run_async(line))
    assert said == f"{N} input(s), 0 done already: {N} to render ({N} render(s) to be paid)"
    # (measured: 257 bytes per input, a chunk of 2,048 requests and the event loop included; 775 before)
    assert peak / N < 500, f"{peak / N:.0f} bytes per input"


def test_the_spend_line_counts_an_input_given_twice_once(tmp_path: Path) -> None:
    keys = run_async(lambda: a_large_run(tmp_path / "run.sqlite", failed=3))

    async def line() -> str:
        async with SqliteLedger(tmp_path / "run.sqlite") as ledger:
            # the first 3000 inputs, then the same 3000 again: across the chunks the spend line reads
            requests = LazySequence(list(range(3000)) * 2, request)
            return await spend_line(requests, ledger)

    assert len(keys) == N
    said = run_async(line)
    assert said == (
        "6000 input(s), 3000 the same as another (one render, a file each), 0 done already, 3 failed "
        "before (--retry-failed renders them again): 2997 to render (2997 render(s) to be paid)"
    )


class Discard(io.StringIO):
    """stdout that counts what is written and keeps none of it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.tail = ""

    def write(self, text: str) -> int:
        self.written += len(text)
        self.tail = (self.tail + text)[-200:]
        return len(text)


def test_runs_show_streams_a_large_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    run_async(lambda: a_large_run(out / ".adcreative-run.sqlite"))
    stdout = Discard()
    monkeypatch.setattr("sys.stdout", stdout)
    code, peak = peak_of(lambda: main(["runs", "show", str(out), "--json"]))
    assert code == 0
    assert stdout.written > N * 200  # every item was written
    assert stdout.tail.endswith('"owner": null}]}\n')
    # read and written a batch at a time: not a record nor a line per item held
    # (measured: 2.7 MiB; 35 MiB before)
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB for {N} items"


def test_runs_show_prints_a_long_table_a_page_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runs, "SHOW_PAGE", 7)
    out = tmp_path / "out"
    out.mkdir()

    async def small() -> None:
        async with SqliteLedger(out / ".adcreative-run.sqlite") as ledger:
            await ledger.register(
                [NewItem(f"k{i:02d}", i, f"p{i:02d}.png", "background_remover") for i in range(20)]
            )
            for i in range(0, 20, 2):
                await ledger.failed(f"k{i:02d}", "BadRequestError", "refused")

    run_async(small)
    assert main(["runs", "show", str(out), "--state", "failed"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("Run ledger") == 1
    assert "10 pending, 10 failed; 10 failed shown" in printed
    shown = [f"p{i:02d}.png" for i in range(20) if f"p{i:02d}.png" in printed]
    assert shown == [f"p{i:02d}.png" for i in range(0, 20, 2)]  # in order, pages after the first untitled


def test_runs_show_reads_the_sqlite_file_given_as_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere.sqlite"

    async def one() -> None:
        async with SqliteLedger(path) as ledger:
            await ledger.register([NewItem("k1", 0, "a.png", "background_remover")])

    run_async(one)
    assert main(["runs", "show", "--ledger", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ledger"] == str(path)
    assert [item["label"] for item in document["items"]] == ["a.png"]
    assert main(["runs", "show"]) == 2  # neither a folder nor --ledger
    assert "give the run's output folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def dsn() -> str:
    if not POSTGRES_DSN:
        pytest.skip("ADCREATIVE_TEST_POSTGRES_DSN is not set")
    return POSTGRES_DSN


def _secret_parts(dsn: str) -> list[str]:
    parts = urlsplit(dsn)
    return [dsn, *(p for p in (parts.password,) if p and len(p) >= 4)]


def _registered_runs(dsn: str, run: str) -> int:
    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            found: int = await conn.fetchval("SELECT count(*) FROM adcreative_runs WHERE run = $1", run)
            return found
        finally:
            await conn.close()

    return anyio.run(count)


@pytest.mark.postgres
def test_runs_show_reads_a_postgresql_run_and_never_shows_its_dsn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: EmulatorThread, dsn: str
) -> None:
    run = f"show-{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"photo-{i}.jpg").write_bytes(sample_image("jpeg", (30 + i, 30)))
    out = tmp_path / run  # the folder's name is the run's, as the run command names it
    assert main(["remove-bg", str(folder), "-o", str(out), "--ledger", dsn, "--json"]) == 0
    outputs = [capsys.readouterr()]

    assert main(["runs", "show", "--ledger", f"{dsn}#{run}", "--json"]) == 0
    outputs.append(capsys.readouterr())
    document = json.loads(outputs[-1].out)
    assert document["counts"]["downloaded"] == 3
    assert document["ledger"] == f"postgresql://...#{run}"
    assert sorted(Path(item["label"]).name for item in document["items"]) == [
        "photo-0.jpg",
        "photo-1.jpg",
        "photo-2.jpg",
    ]
    assert all(item["current"] and item["state"] == "downloaded" for item in document["items"])

    assert main(["runs", "show", str(out), "--ledger", dsn]) == 0  # the run named by the folder
    outputs.append(capsys.readouterr())
    assert "3 downloaded" in outputs[-1].out

    unknown = f"none-{uuid.uuid4().hex[:10]}"
    assert main(["runs", "show", "--ledger", f"{dsn}#{unknown}", "--state", "failed"]) == 0
    outputs.append(capsys.readouterr())
    assert "no items" in outputs[-1].out
    assert _registered_runs(dsn, unknown) == 0  # read only: the run was not made by looking at it

    for captured in outputs:
        for text in (captured.out, captured.err):
            for secret in _secret_parts(dsn):
                assert secret not in text


def test_runs_show_of_an_unreachable_postgresql_ledger_masks_the_dsn(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pa55word-" + uuid.uuid4().hex[:6]
    wrong = f"postgresql://worker:{password}@127.0.0.1:1/renders#batch"  # nothing listens on port 1
    monkeypatch.setenv("ADCREATIVE_LEDGER", wrong)  # the variable, as the option
    assert main(["runs", "show"]) == 2
    captured = capsys.readouterr()
    assert "cannot read the PostgreSQL run ledger" in captured.err
    for text in (captured.out, captured.err):
        assert password not in text
        assert "worker" not in text


@pytest.mark.postgres
def test_the_ctrl_c_summary_of_a_postgresql_run_reads_its_current_records(dsn: str) -> None:
    from adcreative_async.ledger import PostgresLedger

    async def summary() -> str:
        async with PostgresLedger(dsn, run=f"stop-{uuid.uuid4().hex[:10]}") as ledger:
            await ledger.register(
                [NewItem(f"k{i}", i, f"p{i}.png", "background_remover") for i in range(5)]
                + [NewItem("k0-old", 5, "gone.png", "background_remover")]
            )
            await ledger.downloaded("k1", ["out/p1.png"])
            await ledger.failed("k2", "BadRequestError", "refused")
            # p0.png changed since: its earlier record (failed) is not today's
            await ledger.register([NewItem("k0-new", 6, "p0.png", "background_remover")])
            await ledger.failed("k0", "BadRequestError", "the old content")
            labels = iter([f"p{i}.png" for i in range(5)] + ["p9.png"])  # p9: not recorded yet
            return await interrupted_message(ledger, labels, ["remove-bg", "in/"])

    first = run_async(summary).splitlines()[0]
    assert first.startswith("interrupted: of 6 input(s), 1 done, 0 paid for")
    assert first.endswith("4 not started, 1 failed:")
