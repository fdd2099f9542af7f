"""The bulk driver's change signal: waiters woken by the next fire, no event made without a waiter."""

from __future__ import annotations

import anyio
import pytest

from adcreative_async.ledger._signal import Signal

pytestmark = pytest.mark.anyio


async def test_a_fire_wakes_every_task_waiting_then_and_later_waiters_wait_for_the_next() -> None:
    signal = Signal()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await signal.wait()
        woken.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter, "a")
        group.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        signal.fire()
        await anyio.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"]
        group.start_soon(waiter, "c")
        await anyio.wait_all_tasks_blocked()
        assert "c" not in woken  # the earlier fire does not wake a later waiter
        signal.fire()
    assert sorted(woken) == ["a", "b", "c"]


async def test_firing_with_nobody_waiting_makes_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = anyio.Event

    def counted() -> anyio.Event:
        event = real()
        made.append(event)
        return event

    monkeypatch.setattr(anyio, "Event", counted)
    signal = Signal()
    for _ in range(100):
        signal.fire()
    assert made == []
    with anyio.move_on_after(0.001):
        await signal.wait()
    assert len(made) == 1
