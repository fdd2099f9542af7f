"""Send guards: checks made as a start call's upload goes out, which can stop it before the request is
complete (and then the server made nothing)."""

from __future__ import annotations

import pytest
from helpers import FAST_POLLS

from adcreative_async import AdCreativeClient, UploadAbortedError
from adcreative_async._files import send_guard, send_guards
from adcreative_async.testing import Emulator, sample_image

pytestmark = pytest.mark.anyio

BG_START = "Image/BackgroundRemoving/AdCreative"


class Recorder:
    """Records what it sees; refuses at ``refuse_at`` ("begin", "chunk" or "end") when set."""

    def __init__(self, refuse_at: str | None = None) -> None:
        self.refuse_at = refuse_at
        self.events: list[tuple[str, str, int]] = []

    def _maybe_refuse(self, where: str) -> None:
        if where == self.refuse_at:
            raise UploadAbortedError(f"refused at {where}")

    def begin(self, param: str) -> None:
        self.events.append(("begin", param, 0))
        self._maybe_refuse("begin")

    def chunk(self, param: str, data: bytes) -> None:
        self.events.append(("chunk", param, len(data)))
        self._maybe_refuse("chunk")

    def end(self, param: str) -> None:
        self.events.append(("end", param, 0))
        self._maybe_refuse("end")


def client_of(emulator: Emulator) -> AdCreativeClient:
    return AdCreativeClient(
        **emulator.credentials,
        user_id="00000000-0000-4000-8000-000000000001",
        trust_env=False,
        poll_policy=FAST_POLLS,
    )


async def test_a_guard_sees_every_byte_of_the_upload_in_order() -> None:
    image = sample_image("png", (64, 64), (1, 2, 3))
    guard = Recorder()
    async with Emulator() as emulator, client_of(emulator) as client:
        with send_guard(guard):
            job = await client.background_remover.remove(image)
        assert job.process_id
    assert guard.events[0][0] == "begin"
    assert guard.events[-1][0] == "end"
    assert sum(size for kind, _, size in guard.events if kind == "chunk") == len(image)
    assert {param for _, param, _ in guard.events} == {"image"}


@pytest.mark.parametrize("refuse_at", ["begin", "chunk", "end"])
async def test_a_guard_that_refuses_stops_the_call_before_the_server_makes_anything(refuse_at: str) -> None:
    async with Emulator() as emulator, client_of(emulator) as client:
        with (
            send_guard(Recorder(refuse_at)),
            pytest.raises(UploadAbortedError, match=f"refused at {refuse_at}"),
        ):
            await client.background_remover.remove(sample_image("png", (64, 64), (1, 2, 3)))
        assert sum(emulator.processes_per_input().values()) == 0
        # nothing blind: the refused call was not sent again
        assert emulator.request_count(BG_START) <= 1
        # and the guard is gone after its block: the same call goes through
        job = await client.background_remover.remove(sample_image("png", (64, 64), (1, 2, 3)))
        assert job.process_id
        assert sum(emulator.processes_per_input().values()) == 1


async def test_guards_nest_and_are_scoped_to_their_block() -> None:
    outer, inner = Recorder(), Recorder()
    assert send_guards() == ()
    with send_guard(outer):
        with send_guard(inner):
            assert send_guards() == (outer, inner)
        assert send_guards() == (outer,)
    assert send_guards() == ()
