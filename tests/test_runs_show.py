"""``adcreative runs show``: read-only (the ledger file byte-identical, no file made beside it), one line
for a file that is not a ledger, and an earlier record of an input that changed since marked as such
(not counted as today's failure)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from adcreative_async.cli import main
from adcreative_async.ledger import NewItem, SqliteLedger
from adcreative_async.testing import sample_image


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(sample_image("png", (8, 8), (i, 2, 3)))
    out = tmp_path / "out"
    assert main(["remove-bg", str(photos), "-o", str(out), "--emulator", "--json"]) == 0
    return out


def test_runs_show_writes_nothing_and_makes_no_files(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    before = snapshot(finished_run)
    assert main(["runs", "show", str(finished_run), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["counts"]["downloaded"] == 3
    assert main(["runs", "show", str(finished_run)]) == 0
    assert snapshot(finished_run) == before  # no -wal, no -shm, not a byte changed


@pytest.mark.parametrize("kind", ["text", "other program's database"])
def test_a_file_that_is_not_a_ledger_gets_one_line_and_is_left_as_it_was(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "thing.db"
    if kind == "text":
        target.write_text("hello\n")
    else:
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
        conn.close()
    before = snapshot(tmp_path)
    code = main(["runs", "show", str(target)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "not a run ledger" in err or "not a database" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before  # no tables added, no switch to WAL, no files beside it


def test_an_earlier_record_of_a_changed_input_is_marked_and_not_counted_as_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ".adcreative-run.sqlite"
    clock = iter(float(t) for t in range(1000, 2000))

    async def record() -> None:
        async with SqliteLedger(path, clock=lambda: next(clock)) as ledger:
            await ledger.register([NewItem("old-key", 0, "photos/shoe.jpg", "background_remover")])
            await ledger.failed("old-key", "BadRequestError", "400: the image could not be read")
            await ledger.register([NewItem("new-key", 1, "photos/shoe.jpg", "background_remover")])
            await ledger.submitted("new-key", "pid", "uid", ["tid"])
            await ledger.downloaded("new-key", ["out/shoe.png"])

    anyio.run(record)
    assert main(["runs", "show", str(tmp_path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["counts"]["failed"] == 0
    assert document["counts"]["downloaded"] == 1
    assert document["earlier"] == 1
    by_key = {item["key"]: item for item in document["items"]}
    assert by_key["old-key"]["current"] is False
    assert by_key["new-key"]["current"] is True
    assert main(["runs", "show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "photos/shoe.jpg (earlier)" in out
    assert "1 earlier record(s)" in out
