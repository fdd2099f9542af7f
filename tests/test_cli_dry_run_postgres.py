"""``--dry-run`` with a PostgreSQL ``--ledger``: what a run would spend, read from the database on a
read-only connection, writing nothing (no run registered, no schema made) and never showing the DSN.
Against a real PostgreSQL server (``ADCREATIVE_TEST_POSTGRES_DSN``) and the emulator."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from adcreative_async.cli import main
from adcreative_async.testing import sample_image

pytestmark = pytest.mark.postgres

POSTGRES_DSN = os.environ.get("ADCREATIVE_TEST_POSTGRES_DSN", "")
BG_START = "Image/BackgroundRemoving/AdCreative"


@pytest.fixture
def dsn() -> str:
    if not POSTGRES_DSN:
        pytest.skip("ADCREATIVE_TEST_POSTGRES_DSN is not set")
    return POSTGRES_DSN


def photo(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"p{n}.png").write_bytes(sample_image("png", (8 + n, 9)))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--progress", "lines"])
    out, err = capsys.readouterr()
    return code, out + err


def runs_named(dsn: str, name: str) -> int:
    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("SELECT to_regclass('adcreative_runs')") is None:
                return 0
            found: int = await conn.fetchval("SELECT count(*) FROM adcreative_runs WHERE run = $1", name)
            return found
        finally:
            await conn.close()

    return anyio.run(count)


def test_a_dry_run_reads_a_postgresql_ledger_and_writes_nothing(
    dsn: str, tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    name = f"dry-{uuid.uuid4().hex[:10]}"
    ledger = f"{dsn}#{name}"
    for n in range(2):
        photo(folder, n)
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out), "--dry-run", "--ledger", ledger)
    assert code == 0, said
    assert (
        "dry run: 2 input(s), 0 done already: 2 to render (2 render(s) to be paid); nothing was sent" in said
    )
    assert runs_named(dsn, name) == 0  # nothing registered by the dry run
    assert cli_env.request_count(BG_START) == 0
    assert run(capsys, "remove-bg", str(folder), "-o", str(out), "--ledger", ledger)[0] == 0
    photo(folder, 2)
    code, said = run(capsys, "remove-bg", str(folder), "-o", str(out), "--dry-run", "--ledger", ledger)
    assert code == 0, said
    assert "dry run: 3 input(s), 2 done already: 1 to render (1 render(s) to be paid)" in said
    assert cli_env.request_count(BG_START) == 2
    assert dsn not in said


def test_a_dry_run_of_an_unreachable_postgresql_ledger_masks_the_dsn(
    tmp_path: Path, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "pa55word-" + uuid.uuid4().hex[:6]
    wrong = f"postgresql://worker:{password}@127.0.0.1:1/renders#batch"  # nothing listens on port 1
    photo(tmp_path / "in", 0)
    code, said = run(
        capsys, "remove-bg", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dry-run", "--ledger", wrong
    )
    assert code == 2
    assert "cannot read the PostgreSQL run ledger" in said
    assert password not in said
    assert "worker" not in said
