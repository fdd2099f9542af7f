"""Bulk runs through a run ledger against the emulator: resume, reconciliation of unanswered start calls,
takeover, naming, and what the server sees (renders per input, the listings used)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import FAST_POLLS

from adcreative_async import (
    AdCreativeClient,
    BulkOutcome,
    InvalidRequestError,
    RenderMayExistError,
    RetryPolicy,
)
from adcreative_async.ledger import (
    ItemRecord,
    ItemState,
    MemoryLedger,
    NewItem,
    RecordedError,
    RenderRequest,
    SqliteLedger,
    derived_user_id,
    request_keys,
)
from adcreative_async.testing import Emulator, input_stamp, sample_image

pytestmark = pytest.mark.anyio

BG_START = "Image/BackgroundRemoving/AdCreative"
BG_PROGRESS = "Image/BackgroundRemoving/CheckUserProgress"
BG_APP_PROGRESS = "Image/BackgroundRemoving/CheckApplicationAllProgresses"
QUICK_RECONCILE = RetryPolicy(reconcile_grace=0.05, reconcile_interval=0.01)


def make_inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo-{i:03d}.png"
        path.write_bytes(sample_image("png", (8, 8), (i % 256, i // 256, 7)))
        paths.append(path)
    return paths


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(task_duration=0.02, seed=3, stamp_inputs=True) as emu:
        yield emu


def client_of(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(
        **emulator.credentials, trust_env=False, poll_policy=FAST_POLLS, retry=QUICK_RECONCILE
    )


def assert_files_from_own_inputs(outcomes: list[object], by_stem: dict[str, Path]) -> None:
    for outcome in outcomes:
        files = outcome.files  # type: ignore[attr-defined]
        assert len(files) == 1
        source = by_stem[files[0].stem]
        assert input_stamp(files[0].read_bytes()) == digest(source)


async def test_a_rerun_renders_nothing_again_and_reports_the_finished_items(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 12)
    out = tmp_path / "out"
    ledger = tmp_path / "out" / "run.sqlite"
    async with client_of(emulator) as client:
        first = await client.process_many(
            paths, request=RenderRequest.remove_background, dest=out, ledger=ledger, name="{stem}{suffix}"
        )
        assert all(o.ok and not o.resumed for o in first)
        assert emulator.request_count(BG_START) == 12
        again = await client.process_many(
            paths, request=RenderRequest.remove_background, dest=out, ledger=ledger, name="{stem}{suffix}"
        )
    assert emulator.request_count(BG_START) == 12  # nothing rendered twice
    assert [o.index for o in again] == list(range(12))
    assert all(o.ok and o.resumed for o in again)
    assert [o.files for o in again] == [o.files for o in first]
    assert [o.job.process_id for o in again if o.job] == [o.job.process_id for o in first if o.job]
    assert set(emulator.processes_per_input().values()) == {1}
    assert_files_from_own_inputs(list(again), {p.stem: p for p in paths})


class _CallLog(MemoryLedger):
    """A memory ledger that notes which of its records a run reads, and when it records an intent."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, frozenset[str] | None]] = []

    async def records(self, keys: Sequence[str] | None = None) -> dict[str, ItemRecord]:
        self.calls.append(("records", None if keys is None else frozenset(keys)))
        return await super().records(keys)

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        self.calls.append(("intent", frozenset([key])))
        self.calls.append(("single intent", frozenset([key])))
        return await super().intent(key, owner, user_id, lease, epoch=epoch)

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        claimed, intended = await super().claim_and_intend(keys, owner, lease, intents)
        if intended:
            self.calls.append(("intent", frozenset(intended)))
        return claimed, intended


async def test_the_claims_write_the_intents_of_the_items_they_take(
    emulator: Emulator, tmp_path: Path
) -> None:
    """One write per claim window on the way of the start calls, not a claim and then an intent batch."""
    paths = make_inputs(tmp_path / "in", 40)
    ledger = _CallLog()
    async with client_of(emulator) as client:
        outcomes = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
    assert all(o.ok for o in outcomes)
    assert emulator.request_count(BG_START) == 40
    intents = [keys for name, keys in ledger.calls if name == "intent"]
    assert intents  # each noted by claim_and_intend, none by intent(): every one written with its claim
    assert not any(name == "single intent" for name, _ in ledger.calls)
    assert sum(len(keys or ()) for keys in intents) == 40


async def test_a_resume_starts_the_remaining_work_before_looking_at_the_finished_items(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 12)
    ledger = _CallLog()
    async with client_of(emulator) as client:
        first = await client.process_many(paths[:10], request=RenderRequest.remove_background, ledger=ledger)
        finished = {o.key for o in first}
        ledger.calls.clear()
        again = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
    assert emulator.request_count(BG_START) == 12
    assert [o.resumed for o in again] == [True] * 10 + [False] * 2
    first_intent = next(i for i, (name, _) in enumerate(ledger.calls) if name == "intent")
    before = ledger.calls[:first_intent]
    # nothing of the finished items was read before the remaining work started: not every record, not
    # theirs one by one; they were read after
    assert all(keys is not None and not keys & finished for name, keys in before if name == "records")
    assert any(keys is not None and keys & finished for name, keys in ledger.calls[first_intent:])


async def test_a_resume_renders_an_input_changed_since_it_was_rendered(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 4)
    ledger = tmp_path / "run.sqlite"
    async with client_of(emulator) as client:
        first = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
        paths[2].write_bytes(sample_image("png", (8, 8), (1, 2, 250)))  # same name, new content
        again = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
    assert emulator.request_count(BG_START) == 5
    assert [o.resumed for o in again] == [True, True, False, True]
    assert again[2].ok
    assert again[2].key != first[2].key
    assert [o.key for o in again if o.index != 2] == [o.key for o in first if o.index != 2]


async def test_waits_poll_the_application_listing_not_each_derived_user(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 30)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=MemoryLedger()
        )
    assert all(o.ok for o in outcomes)
    users = {o.job.user_id for o in outcomes if o.job}
    assert len(users) == 30  # one user per item: its listing answers for that item alone
    assert emulator.request_count(BG_APP_PROGRESS) >= 1
    # per user, there would be at least one listing per item (a baseline before its start call, or its
    # polls); what remains are the scheduler's asks by id when few processes are awaited
    assert emulator.request_count(BG_PROGRESS) < len(paths)


async def test_a_submitted_item_is_awaited_by_its_process_id_without_a_new_start(
    emulator: Emulator, tmp_path: Path
) -> None:
    [path] = make_inputs(tmp_path / "in", 1)
    ledger = MemoryLedger()
    request = RenderRequest.remove_background(path)
    [key] = await request_keys([request], ledger)
    assert isinstance(key, str)
    async with client_of(emulator) as client:
        user = derived_user_id(ledger.namespace, key, 0)
        job = await client.background_remover.remove(path, user_id=user)  # made before a "crash"
        await ledger.register([NewItem(key, 0, str(path), "background_remover")])
        await ledger.claim([key], "gone-worker", 0.01)
        assert await ledger.intent(key, "gone-worker", user, 0.01)
        await ledger.submitted(key, job.process_id, user, job.task_ids)
        await anyio.sleep(0.02)  # the dead worker's lease lapses
        [outcome] = await client.process_many([request], dest=tmp_path / "out", ledger=ledger)
    assert outcome.ok
    assert outcome.job is not None
    assert outcome.job.process_id == job.process_id
    assert emulator.request_count(BG_START) == 1


async def _crashed_intent(
    emulator: Emulator, ledger: MemoryLedger, request: RenderRequest, *, made: bool
) -> tuple[str, str]:
    """An item whose intent is recorded and whose start call's answer was lost (``made``: it reached the
    server)."""
    [key] = await request_keys([request], ledger)
    assert isinstance(key, str)
    user = derived_user_id(ledger.namespace, key, 0)
    await ledger.register([NewItem(key, 0, request.label, "background_remover")])
    await ledger.claim([key], "gone-worker", 0.01)
    assert await ledger.intent(key, "gone-worker", user, 0.01)
    if made:
        async with client_of(emulator) as other:
            await other.background_remover.remove(request.params["image"], user_id=user)
    await anyio.sleep(0.02)
    return key, user


async def test_an_unanswered_start_call_that_made_a_render_is_adopted(
    emulator: Emulator, tmp_path: Path
) -> None:
    [path] = make_inputs(tmp_path / "in", 1)
    ledger = MemoryLedger()
    request = RenderRequest.remove_background(path)
    key, _ = await _crashed_intent(emulator, ledger, request, made=True)
    async with client_of(emulator) as client:
        [outcome] = await client.process_many([request], dest=tmp_path / "out", ledger=ledger)
    assert outcome.ok
    assert emulator.request_count(BG_START) == 1  # adopted: no second start call
    assert (await ledger.records([key]))[key].state is ItemState.DOWNLOADED


async def test_an_unanswered_start_call_proven_to_have_made_nothing_is_sent_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 3)
    ledger = MemoryLedger()
    requests = [RenderRequest.remove_background(p) for p in paths]
    await _crashed_intent(emulator, ledger, requests[0], made=False)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(requests, dest=tmp_path / "out", ledger=ledger)
    assert all(o.ok for o in outcomes)
    # the other items finished first; one of them, still listed, proved finished processes stay listed
    assert emulator.request_count(BG_START) == 3
    assert set(emulator.processes_per_input().values()) == {1}


async def test_without_proof_an_unanswered_start_call_stays_unknown(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path / "in", 2)
    ledger = MemoryLedger()
    requests = [RenderRequest.remove_background(p) for p in paths]
    async with Emulator(task_duration=0.02, list_finished=False) as emulator:
        key, user = await _crashed_intent(emulator, ledger, requests[0], made=False)
        async with client_of(emulator) as client:
            outcomes = await client.process_many(requests, dest=tmp_path / "out", ledger=ledger)
        assert emulator.request_count(BG_START) == 1  # the other item only: never sent again
    assert isinstance(outcomes[0].error, RenderMayExistError)
    assert outcomes[0].error.user_id == user  # where to look, for the caller's code
    assert user not in str(outcomes[0].error)  # not in the text that logs and traces copy
    assert outcomes[1].ok
    record = (await ledger.records([key]))[key]
    assert (record.state, record.error_code) == (ItemState.UNKNOWN, "RenderMayExistError")
    async with Emulator() as emu2, client_of(emu2) as client:
        [again] = await client.process_many(requests[:1], ledger=ledger)
        assert emu2.request_count(BG_START) == 0  # reconciled again, still not provable: not sent
    assert not again.resumed
    assert isinstance(again.error, RenderMayExistError)


async def test_failures_are_recorded_and_retried_only_when_asked(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path / "in", 2)
    ledger = SqliteLedger(tmp_path / "run.sqlite")
    emulator = Emulator(task_duration=0.02, task_failure_rate=1.0, seed=1)
    async with emulator, client_of(emulator) as client:
        first = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
        assert [o.error.__class__.__name__ for o in first] == ["RenderFailedError"] * 2
        again = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
        assert emulator.request_count(BG_START) == 2
        assert all(isinstance(o.error, RecordedError) and o.resumed for o in again)
        assert again[0].error is not None
        assert "RenderFailedError" in str(again[0].error)
        async with ledger:
            assert await ledger.retry_failed() == 2
        retried = await client.process_many(paths, request=RenderRequest.remove_background, ledger=ledger)
        assert emulator.request_count(BG_START) == 4
    assert not any(o.resumed for o in retried)
    users = {o.job.user_id for o in first if o.job} | {o.job.user_id for o in retried if o.job}
    assert len(users) == 4  # a retry is a new attempt with a user of its own


async def test_the_same_input_twice_is_rendered_once(emulator: Emulator, tmp_path: Path) -> None:
    [path] = make_inputs(tmp_path / "in", 1)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            [path, path, Path(path)],
            request=RenderRequest.remove_background,
            dest=tmp_path / "out",
            ledger=MemoryLedger(),
        )
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert all(o.ok for o in outcomes)
    assert len({o.files[0] for o in outcomes}) == 1
    assert emulator.request_count(BG_START) == 1


async def test_two_workers_share_the_items_and_render_each_once(emulator: Emulator, tmp_path: Path) -> None:
    paths = make_inputs(tmp_path / "in", 40)
    ledger = SqliteLedger(tmp_path / "shared.sqlite")
    other = SqliteLedger(tmp_path / "shared.sqlite")
    results: list[list[BulkOutcome[Path]]] = []

    async def worker(led: SqliteLedger) -> None:
        async with client_of(emulator) as client:
            results.append(
                list(
                    await client.process_many(
                        paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=led
                    )
                )
            )

    async with anyio.create_task_group() as group:
        group.start_soon(worker, ledger)
        group.start_soon(worker, other)
    assert emulator.request_count(BG_START) == 40
    assert set(emulator.processes_per_input().values()) == {1}
    assert sum(1 for r in results for o in r if not o.resumed) == 40  # each item run by one worker
    assert all(o.ok for r in results for o in r)


async def test_names_come_from_the_input_and_the_file_at_an_items_name_is_its_own(
    emulator: Emulator, tmp_path: Path
) -> None:
    paths = make_inputs(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo-001.png").write_bytes(b"an earlier result of photo-001")
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            paths,
            request=RenderRequest.remove_background,
            dest=out,
            ledger=MemoryLedger(),
            name="{stem}{suffix}",
        )
    assert outcomes[0].ok
    assert outcomes[0].files == [out / "photo-000.png"]
    # a name is a function of the input: the file there is the item's own, replaced atomically
    assert outcomes[1].ok
    assert outcomes[1].files == [out / "photo-001.png"]
    assert (out / "photo-001.png").read_bytes() != b"an earlier result of photo-001"


async def test_names_work_without_a_ledger_too(emulator: Emulator, tmp_path: Path) -> None:
    paths = make_inputs(tmp_path / "in", 2)
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            paths,
            lambda c, p: c.background_remover.remove(p, user_id="2581c740-8e9d-4d63-96bc-5665bb9a646b"),
            dest=tmp_path / "out",
            name=lambda f: f"{f['index']}-{f['stem']}.{f['ext']}",
        )
    assert [o.files[0].name for o in outcomes] == ["0-photo-000.png", "1-photo-001.png"]


async def test_a_ledger_needs_requests_not_a_submit_callable(emulator: Emulator, tmp_path: Path) -> None:
    async with client_of(emulator) as client:
        with pytest.raises(InvalidRequestError, match="RenderRequest"):
            client.bulk([tmp_path], lambda c, p: c.background_remover.remove(p), ledger=MemoryLedger())
        with pytest.raises(InvalidRequestError, match="unknown field"):
            client.bulk([tmp_path], request=RenderRequest.remove_background, name="{nope}")
        [outcome] = await client.process_many(
            [tmp_path / "missing.png"], request=RenderRequest.remove_background, ledger=MemoryLedger()
        )
    assert isinstance(outcome.error, InvalidRequestError)
    assert emulator.request_count(BG_START) == 0


async def test_lost_and_refused_start_answers_never_make_a_second_render(tmp_path: Path) -> None:
    from adcreative_async.testing import Faults

    paths = make_inputs(tmp_path / "in", 40)
    faults = {BG_START: Faults(lost_response=0.2, server_error=0.1, reset=0.1)}
    async with Emulator(task_duration=0.02, seed=5, stamp_inputs=True, faults=faults) as emulator:
        async with client_of(emulator) as client:
            outcomes = await client.process_many(
                paths, request=RenderRequest.remove_background, dest=tmp_path / "out", ledger=MemoryLedger()
            )
        assert emulator.injected_faults  # the faults did happen
        counts = emulator.processes_per_input()
    assert set(counts.values()) <= {1}  # never two renders of one input
    for outcome in outcomes:
        # a lost answer was adopted; a refused call (5xx before serving) is a typed failure, retryable
        assert outcome.ok or outcome.error is not None
        if outcome.ok:
            assert counts[digest(paths[outcome.index])] == 1
    assert sum(o.ok for o in outcomes) == len(counts)


class _CommitLog(SqliteLedger):
    """A SQLite ledger that counts its synced commits (those holding intents) and the intents written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.synced_commits = 0
        self.intents = 0

    def _apply(self, batch: list[tuple[Any, Any]], behind: dict[str, Any], **kw: Any) -> Any:
        self.synced_commits += any(slot.durable for _, slot in batch)
        return super()._apply(batch, behind, **kw)

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        self.intents += 1
        return await super().intent(key, owner, user_id, lease, epoch=epoch)

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        claimed, intended = await super().claim_and_intend(keys, owner, lease, intents)
        self.intents += len(intended)
        return claimed, intended


async def test_intents_of_items_claimed_together_are_committed_together(
    emulator: Emulator, tmp_path: Path
) -> None:
    # One upload at a time: were intents written inside the upload slot, each would be a commit of
    # its own (one synced commit per start call); they are written as the items are claimed.
    paths = make_inputs(tmp_path / "in", 32)
    ledger = _CommitLog(tmp_path / "run.sqlite")
    async with client_of(emulator) as client:
        outcomes = await client.process_many(
            paths, request=RenderRequest.remove_background, ledger=ledger, upload_concurrency=1
        )
    assert all(o.ok for o in outcomes)
    assert emulator.request_count(BG_START) == 32
    assert set(emulator.processes_per_input().values()) == {1}
    assert ledger.intents == 32  # one intent per item (none went stale: lease 30 s)
    assert ledger.synced_commits <= 4  # 32 intents in a few commits, not 32


class _IntentLog(MemoryLedger):
    """A memory ledger that counts the intents written per item."""

    def __init__(self) -> None:
        super().__init__()
        self.intents: dict[str, int] = {}

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        self.intents[key] = self.intents.get(key, 0) + 1
        return await super().intent(key, owner, user_id, lease, epoch=epoch)

    async def claim_and_intend(
        self, keys: Sequence[str], owner: str, lease: float, intents: Mapping[str, tuple[int, str]]
    ) -> tuple[list[ItemRecord], set[str]]:
        claimed, intended = await super().claim_and_intend(keys, owner, lease, intents)
        for key in intended:
            self.intents[key] = self.intents.get(key, 0) + 1
        return claimed, intended


async def test_an_intent_that_waited_long_for_an_upload_slot_is_written_again_before_its_call(
    tmp_path: Path,
) -> None:
    # lease 0.3 s, grace 0.05 s: a start call follows its intent by at most (0.3 - 0.05) / 4 s; each
    # start call takes 0.1 s, so every item queued behind the first waits longer than that for the slot
    paths = make_inputs(tmp_path / "in", 4)
    ledger = _IntentLog()
    async with Emulator(task_duration=0.02, seed=3, start_latency=0.1) as emulator:
        async with client_of(emulator) as client:
            outcomes = await client.process_many(
                paths,
                request=RenderRequest.remove_background,
                ledger=ledger,
                upload_concurrency=1,
                lease=0.3,
            )
        assert emulator.request_count(BG_START) == 4
        assert set(emulator.processes_per_input().values()) == {1}
    assert all(o.ok for o in outcomes)
    counts = sorted(ledger.intents.values())
    assert max(counts) == 2  # ahead, then again in the slot: never more
    assert counts.count(2) >= 3  # every item that waited for the slot


class CountingLedger(MemoryLedger):
    """Counts lease renewals."""

    renewals = 0

    async def renew(self, owner: str, lease: float) -> set[str]:
        CountingLedger.renewals += 1
        return await super().renew(owner, lease)


async def test_claims_are_renewed_while_the_worker_lives(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path / "in", 4)
    ledger = CountingLedger()
    async with Emulator(task_duration=0.3, seed=2) as emulator, client_of(emulator) as client:
        outcomes = await client.process_many(
            paths, request=RenderRequest.remove_background, ledger=ledger, lease=0.09
        )
        assert emulator.request_count(BG_START) == 4
    assert all(o.ok for o in outcomes)
    assert CountingLedger.renewals >= 2  # every lease / 3 while the renders ran
    assert all(r.owner is None for r in (await ledger.records()).values())  # released at the end


class LapsingLedger(MemoryLedger):
    """Finds the lease lapsed at the first renewal of each item's intent (its worker paused past it),
    though no other worker took the item."""

    def __init__(self) -> None:
        super().__init__()
        self.lapsed: set[str] = set()

    async def intent(
        self, key: str, owner: str, user_id: str, lease: float, *, epoch: int | None = None
    ) -> bool:
        if key not in self.lapsed:
            self.lapsed.add(key)
            return False
        return await super().intent(key, owner, user_id, lease, epoch=epoch)


async def test_an_intent_whose_lease_lapsed_before_its_call_is_put_back_and_rendered_once(
    tmp_path: Path,
) -> None:
    # The claim wrote each item's intent; the lease lapsed before the call (a loaded machine): no call
    # was sent, so the item goes back to pending and is rendered, never reported as "may exist".
    paths = make_inputs(tmp_path / "in", 4)
    ledger = LapsingLedger()
    # finished renders leave the listing: a call that may have been made could never be ruled out
    async with Emulator(task_duration=0.02, seed=3, start_latency=0.1, list_finished=False) as emulator:
        async with client_of(emulator) as client:
            outcomes = await client.process_many(
                paths,
                request=RenderRequest.remove_background,
                ledger=ledger,
                upload_concurrency=1,  # the claim writes the intents; each renews its own in the slot
                lease=0.3,
            )
        assert emulator.request_count(BG_START) == 4
        assert set(emulator.processes_per_input().values()) == {1}
    assert len(ledger.lapsed) >= 3  # every item that waited for the slot met the lapse
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert {r.state for r in (await ledger.records()).values()} == {ItemState.DOWNLOADED}


def test_a_dead_process_of_this_machine_is_recognised(tmp_path: Path) -> None:
    import subprocess
    import sys

    from adcreative_async.ledger import new_worker_id
    from adcreative_async.ledger._base import dead_here

    mine = new_worker_id()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host, namespace, _, started, tail = mine.split(":")
    gone = f"{host}:{namespace}:{child.stdout.strip()}:{started}:{tail}"
    assert dead_here(gone)
    assert dead_here(f"{host}:{namespace}:{child.stdout.strip()}:{tail}")  # an id of an earlier version
    assert not dead_here(mine)  # this very process
    assert not dead_here(f"elsewhere:{namespace}:{child.stdout.strip()}:{tail}")  # another machine
    assert not dead_here("worker-3")  # a named worker: only its lease can lapse
