"""Output naming that can never fail a render (issue 20, points 5, 6, 7 and 10): one rule for the SDK and
the CLI. A name is a function of the input's identity, checked before the start call (inside ``dest``,
writable, never shared by two inputs); an item's own earlier file is replaced atomically; duplicate inputs
each get their own file; the key is the hash of the bytes actually uploaded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_POLLS, creative_inputs

from adcreative_async import AdCreativeClient, InputChangedError, InvalidRequestError, RetryPolicy
from adcreative_async.ledger import ItemState, RenderRequest, SqliteLedger, request_keys
from adcreative_async.ledger import _run as ledger_run
from adcreative_async.testing import Emulator, input_stamp, sample_image
from benchmarks._hosts import emulator as emulator_subprocess
from benchmarks._hosts import emulator_env

pytestmark = pytest.mark.anyio

BG_START = "Image/BackgroundRemoving/AdCreative"
QUICK_RECONCILE = RetryPolicy(reconcile_grace=0.05, reconcile_interval=0.01)
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(task_duration=0.02, seed=5, stamp_inputs=True) as emu:
        yield emu


def client_of(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(
        **emulator.credentials, trust_env=False, poll_policy=FAST_POLLS, retry=QUICK_RECONCILE
    )


def image(path: Path, shade: int, kind: str = "png") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sample_image(kind, (8, 8), (shade, 3, 7)))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def renders(emulator: Emulator) -> int:
    return sum(emulator.processes_per_input().values())


# --------------------------------------------------------------------------------- the SDK's names


@pytest.mark.parametrize("with_ledger", [True, False])
async def test_a_template_two_inputs_share_is_refused_before_any_start_call(
    emulator: Emulator, tmp_path: Path, with_ledger: bool
) -> None:
    shoe_jpg = image(tmp_path / "in" / "shoe.jpg", 1, "jpeg")
    shoe_png = image(tmp_path / "in" / "shoe.png", 2)
    other = image(tmp_path / "in" / "boot.png", 3)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            [shoe_jpg, shoe_png, other],
            *(() if with_ledger else (lambda c, p: c.background_remover.remove(p, user_id=USER),)),
            request=RenderRequest.remove_background if with_ledger else None,
            ledger=tmp_path / "run.sqlite" if with_ledger else None,
            dest=tmp_path / "out",
            name="{stem}{suffix}",
        )
    for refused in outcomes[:2]:
        assert isinstance(refused.error, InvalidRequestError)
        assert refused.error.field == "name"
        assert "'shoe.png'" in str(refused.error)
        assert refused.job is None
    assert outcomes[2].ok
    assert renders(emulator) == 1  # only boot.png: nothing paid for a result that could not be saved


async def test_the_filename_field_keeps_same_stem_inputs_apart(emulator: Emulator, tmp_path: Path) -> None:
    shoe_jpg = image(tmp_path / "in" / "shoe.jpg", 1, "jpeg")
    shoe_png = image(tmp_path / "in" / "shoe.png", 2)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            [shoe_jpg, shoe_png],
            request=RenderRequest.remove_background,
            ledger=tmp_path / "run.sqlite",
            dest=tmp_path / "out",
            name="{filename}{suffix}",
        )
    assert [o.files for o in outcomes] == [
        [tmp_path / "out" / "shoe.jpg.png"],
        [tmp_path / "out" / "shoe.png.png"],
    ]
    for outcome, source in zip(outcomes, (shoe_jpg, shoe_png), strict=True):
        assert input_stamp(outcome.files[0].read_bytes()) == sha(source)


@pytest.mark.parametrize("with_ledger", [True, False])
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../{stem}{suffix}", "inside dest"),
        (lambda f: f"/tmp/{f['stem']}{f['suffix']}", "inside dest"),
        ("blocked/{stem}{suffix}", "not a folder"),
        ("taken{suffix}", "is a folder"),
    ],
)
async def test_a_name_that_cannot_be_saved_is_refused_before_the_render_is_paid(
    emulator: Emulator, tmp_path: Path, with_ledger: bool, name: Any, problem: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("a file where a folder would be")
    (out / "taken.png").mkdir()
    source = image(tmp_path / "in" / "cat.png", 4)
    async with client_of(emulator) as client:
        [outcome] = await client.process_many(
            [source],
            *(() if with_ledger else (lambda c, p: c.background_remover.remove(p, user_id=USER),)),
            request=RenderRequest.remove_background if with_ledger else None,
            ledger=tmp_path / "run.sqlite" if with_ledger else None,
            dest=out,
            name=name,
        )
    assert isinstance(outcome.error, InvalidRequestError)
    assert outcome.error.field == "name"
    assert problem in str(outcome.error)
    assert emulator.request_count(BG_START) == 0
    if with_ledger:  # nothing recorded: a fixed name takes the input on the next run
        async with SqliteLedger(tmp_path / "run.sqlite") as ledger:
            assert sum((await ledger.counts()).values()) == 0


async def test_a_template_that_names_every_result_of_a_creative_alike_is_refused_before_sending(
    emulator: Emulator, tmp_path: Path
) -> None:
    request = RenderRequest.generate_creatives(**creative_inputs(), label="brief.toml")
    async with client_of(emulator) as client:
        [outcome] = await client.process_many(
            [request], ledger=tmp_path / "run.sqlite", dest=tmp_path / "out", name="{stem}{suffix}"
        )
    assert isinstance(outcome.error, InvalidRequestError)
    assert "{task_index}" in str(outcome.error)
    assert emulator.request_count("Image/Generation/AdCreativesByKind") == 0
    assert sum(emulator.processes_per_input().values()) == 0


async def test_two_results_of_one_input_never_overwrite_each_other(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with client_of(emulator) as client:
        [outcome] = await client.process_many(
            ["brief"],  # an item the name check cannot see the feature of
            lambda c, _: c.creatives.generate(**creative_inputs(), user_id=USER),
            dest=tmp_path / "out",
            name="{stem}{suffix}",
        )
    assert outcome.job is not None
    assert len(outcome.job.task_ids) > 1
    assert [f.name for f in outcome.files] == ["brief.png"]  # the first result only, kept
    assert all(isinstance(e, InvalidRequestError) for e in outcome.errors)
    assert len(outcome.errors) == len(outcome.job.task_ids) - 1


async def test_a_rerun_of_a_failed_item_replaces_its_own_earlier_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    sources = [image(tmp_path / "in" / f"p{i}.png", i) for i in range(2)]
    out = tmp_path / "out"
    run = tmp_path / "run.sqlite"
    async with client_of(emulator) as client:
        first = await client.process_many(
            sources, request=RenderRequest.remove_background, ledger=run, dest=out, name="{stem}{suffix}"
        )
        assert all(o.ok for o in first)
        (out / "p1.png").write_bytes(b"what a partial earlier attempt left")
        async with SqliteLedger(run) as ledger:  # the item failed after its file was written
            await ledger.failed(first[1].key or "", "IncompleteDownloadError", "cut")
            assert await ledger.retry_failed() == 1
        again = await client.process_many(
            sources, request=RenderRequest.remove_background, ledger=run, dest=out, name="{stem}{suffix}"
        )
    assert [o.resumed for o in again] == [True, False]
    assert again[1].ok, again[1].error
    assert again[1].files == [out / "p1.png"]
    assert input_stamp((out / "p1.png").read_bytes()) == sha(sources[1])
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]


async def test_a_restarted_run_replaces_each_items_own_file(emulator: Emulator, tmp_path: Path) -> None:
    sources = [image(tmp_path / "in" / f"p{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    run = tmp_path / "run.sqlite"
    async with client_of(emulator) as client:
        await client.process_many(
            sources, request=RenderRequest.remove_background, ledger=run, dest=out, name="{stem}{suffix}"
        )
        async with SqliteLedger(run) as ledger:
            await ledger.restart()
        again = await client.process_many(
            sources, request=RenderRequest.remove_background, ledger=run, dest=out, name="{stem}{suffix}"
        )
    assert all(o.ok and not o.resumed for o in again), [o.error for o in again]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]  # nothing stray
    assert renders(emulator) == 6


# ------------------------------------------------------------------------------- duplicate inputs


async def test_a_duplicate_of_an_input_finished_before_gets_its_own_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    first = image(tmp_path / "in" / "first.png", 9)
    out = tmp_path / "out"
    run = tmp_path / "run.sqlite"
    async with client_of(emulator) as client:
        await client.process_many(
            [first], request=RenderRequest.remove_background, ledger=run, dest=out, name="{stem}{suffix}"
        )
        # the same bytes under another name, seen once the first had finished (a rerun, or an input
        # more than a claim window after it)
        later = tmp_path / "in" / "later.png"
        later.write_bytes(first.read_bytes())
        outcomes = await client.process_many(
            [first, later],
            request=RenderRequest.remove_background,
            ledger=run,
            dest=out,
            name="{stem}{suffix}",
        )
    assert [o.files for o in outcomes] == [[out / "first.png"], [out / "later.png"]]
    assert (out / "later.png").read_bytes() == (out / "first.png").read_bytes()
    assert renders(emulator) == 1  # one render for the one content


# ---------------------------------------------------------------------- the key is what was sent


async def test_an_input_changed_after_hashing_is_not_sent_under_its_old_key(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = image(tmp_path / "in" / "cat.png", 1)
    old = source.read_bytes()
    new = sample_image("png", (8, 8), (200, 3, 7))
    from adcreative_async.ledger._requests import request_digests

    real = request_digests

    async def then_changed(requests: Any, ledger: Any) -> Any:
        digests = await real(requests, ledger)
        source.write_bytes(new)  # the user saves over the photo while the run goes on
        return digests

    monkeypatch.setattr(ledger_run, "request_digests", then_changed)
    run = tmp_path / "run.sqlite"
    async with client_of(emulator) as client:
        [outcome] = await client.process_many(
            [source], request=RenderRequest.remove_background, ledger=run, dest=tmp_path / "out"
        )
        assert isinstance(outcome.error, InputChangedError)
        assert "changed during the run" in str(outcome.error)
        assert renders(emulator) == 0  # the call was stopped before its request was complete
        [old_key] = await request_keys([RenderRequest.remove_background(old)], None)
        assert isinstance(old_key, str)
        async with SqliteLedger(run) as ledger:
            record = (await ledger.records([old_key]))[old_key]
            assert record.state is ItemState.PENDING  # not failed: nothing was made
        monkeypatch.setattr(ledger_run, "request_digests", real)
        [again] = await client.process_many(
            [source], request=RenderRequest.remove_background, ledger=run, dest=tmp_path / "out"
        )
    assert again.ok, again.error
    assert not again.resumed
    assert emulator.processes_per_input() == {hashlib.sha256(new).hexdigest(): 1}
    assert input_stamp(again.files[0].read_bytes()) == hashlib.sha256(new).hexdigest()


# ----------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def emulator_process() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """An emulator in its own process, as a user runs it: renders survive the CLI's runs."""
    with emulator_subprocess("--task-duration", "0.02", "0.05", "--stamp-inputs") as info:
        yield info, emulator_env(info)


def adcreative(*argv: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """The ``adcreative`` command in its own process; (exit code, its JSON document, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADCREATIVE_")} | env
    proc = subprocess.run(
        [sys.executable, "-m", "adcreative_async.cli", *argv, "--json"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # --json: JSON Lines
    items = [line for line in lines if line.get("type") == "item"]
    document = {**lines[-1], "items": items} if lines else {}
    return proc.returncode, document, proc.stderr


def renders_per_input(info: dict[str, Any]) -> dict[str, int]:
    with urllib.request.urlopen(f"{info['base_url']}/_emulator/processes-per-input", timeout=30) as response:
        counts: dict[str, int] = json.loads(response.read())
    return counts


def results(out: Path) -> dict[str, str]:
    """Every file of the output folder but the run ledger: name -> the input its content comes from."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.startswith(".adcreative-run"):
            found[path.relative_to(out).as_posix()] = input_stamp(path.read_bytes()) or "?"
    return found


def test_cli_restart_on_a_finished_folder_renders_again_into_each_items_own_file(
    tmp_path: Path, emulator_process: tuple[dict[str, Any], dict[str, str]]
) -> None:
    info, env = emulator_process
    inputs = [image(tmp_path / "in" / f"photo-{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    assert adcreative("remove-bg", str(tmp_path / "in"), "-o", str(out), env=env)[0] == 0
    code, doc, err = adcreative(
        "remove-bg", str(tmp_path / "in"), "-o", str(out), "--restart", "--yes", env=env
    )
    assert code == 0, err
    assert (doc["succeeded"], doc["resumed"]) == (3, 0)
    assert results(out) == {f"photo-{i}.png": sha(inputs[i]) for i in range(3)}  # nothing stray
    assert set(renders_per_input(info).values()) == {2}  # rendered again, as --restart asked


def test_cli_a_photo_added_between_runs_never_takes_an_existing_name(
    tmp_path: Path, emulator_process: tuple[dict[str, Any], dict[str, str]]
) -> None:
    info, env = emulator_process
    folder = tmp_path / "in"
    shoe_png = image(folder / "shoe.png", 1)
    out = tmp_path / "out"
    assert adcreative("remove-bg", str(folder), "-o", str(out), env=env)[0] == 0
    before = results(out)
    shoe_jpg = image(folder / "shoe.jpg", 2, "jpeg")  # sorts before shoe.png
    code, doc, err = adcreative("remove-bg", str(folder), "-o", str(out), env=env)
    assert code == 0, err
    assert doc["resumed"] == 1
    assert results(out) == {"shoe.png": sha(shoe_png), "shoe.jpg.png": sha(shoe_jpg)}
    assert results(out)["shoe.png"] == before["shoe.png"]
    assert set(renders_per_input(info).values()) == {1}


def test_cli_refuses_two_inputs_that_would_share_a_name_before_sending_anything(
    tmp_path: Path, emulator_process: tuple[dict[str, Any], dict[str, str]]
) -> None:
    info, env = emulator_process
    image(tmp_path / "a" / "cat.jpg", 1, "jpeg")
    image(tmp_path / "b" / "cat.jpg", 2, "jpeg")
    out = tmp_path / "out"
    code, _, err = adcreative("remove-bg", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), env=env)
    assert code == 2
    assert "would both be saved as 'cat.jpg.png'" in err
    assert renders_per_input(info) == {}


def test_cli_a_result_that_could_not_be_saved_is_refused_before_it_is_paid(
    tmp_path: Path, emulator_process: tuple[dict[str, Any], dict[str, str]]
) -> None:
    info, env = emulator_process
    image(tmp_path / "in" / "ok.png", 1)
    image(tmp_path / "in" / "sub" / "blocked.png", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the subfolder's results would go")
    code, doc, _ = adcreative("remove-bg", str(tmp_path / "in"), "-r", "-o", str(out), env=env)
    assert code == 1
    by_input = {Path(item["input"]).name: item for item in doc["items"]}
    assert by_input["ok.png"]["ok"]
    assert by_input["blocked.png"]["error"]["type"] == "InvalidRequestError"
    assert "cannot save the result" in by_input["blocked.png"]["error"]["message"]
    assert len(renders_per_input(info)) == 1  # only ok.png was rendered
