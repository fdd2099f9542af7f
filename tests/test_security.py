"""Secrets never leak: a full flow at DEBUG logging (every logger: the SDK's, aiohttp's, the emulator's)
never shows the API key, the secret, the private key, an access or a refresh token — not in log records,
reprs, exception messages, chained causes or contexts, nor in JSON-encoded jobs. Credentials never go to
another host (see also test_transport's redirect test), and downloads never write outside their
destination (test_streaming's server-file-name tests)."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from adcreative_async import (
    AdCreativeClient,
    AdCreativeError,
    AuthenticationError,
    PollPolicy,
    RenderFailedError,
    RetryPolicy,
)
from adcreative_async.testing import Credentials, Emulator, Faults, sample_image

pytestmark = pytest.mark.anyio

USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
PNG = sample_image("png", (8, 8))


class Everything(logging.Handler):
    """Keeps every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def chain(error: BaseException) -> list[BaseException]:
    """An exception and every cause and context behind it."""
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        stack += [current.__cause__, current.__context__]
    return seen


def describe(error: BaseException) -> str:
    """Everything an error shows: its chain's messages, reprs, attributes and formatted traceback."""
    parts = []
    for item in chain(error):
        parts += [str(item), repr(item), repr(vars(item)) if hasattr(item, "__dict__") else ""]
    parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


async def test_a_full_flow_at_debug_never_shows_a_secret(all_logs: Everything, tmp_path: Path) -> None:
    seen_text: list[str] = []
    tokens: set[str] = set()
    async with Emulator(
        task_duration=0.02, faults={"Image/BackgroundRemoving/Download": Faults(truncate=0.3)}, seed=3
    ) as emulator:
        credentials = emulator.credentials
        client = AdCreativeClient(
            **credentials,
            user_id=USER,
            trust_env=False,
            poll_policy=PollPolicy(initial_interval=0.02, max_interval=0.05, min_interval=0.01),
            retry=RetryPolicy(initial_backoff=0.01, reconcile_grace=0.5),
        )
        async with client:
            job = await client.background_remover.remove(PNG)
            await job.result(timeout=10)
            token = client._transport.tokens.token
            assert token is not None
            tokens |= {token.access_token, token.refresh_token or ""}
            await job.download(job.task_ids[0], tmp_path, resume=True)  # may be cut once: resumes
            emulator.expire_access_tokens()  # a renewal, so a second token exists
            creative = await client.creatives.generate(
                brand_image=PNG,
                background_image=PNG,
                main_headline="h",
                punchline="p",
                action_text="a",
                color1_hex="#fff",
                color2_hex="#000",
                render_kind=1,
                render_type=2,
            )
            emulator.fail_task(creative.task_ids[0])
            for task in creative.task_ids[1:]:
                emulator.finish_task(task)
            with pytest.raises(RenderFailedError) as failed:
                await creative.result(timeout=10)
            seen_text.append(describe(failed.value))
            token = client._transport.tokens.token
            assert token is not None
            tokens |= {token.access_token, token.refresh_token or ""}
            emulator.fail_next("Image/BackgroundRemoving/AdCreative", 503)  # an ambiguous start
            with pytest.raises(AdCreativeError) as ambiguous:
                await client.background_remover.remove(PNG)
            seen_text.append(describe(ambiguous.value))
            seen_text += [repr(client), repr(client._transport), repr(client._transport.tokens), repr(token)]
            seen_text += [repr(job), job.to_json().decode(), repr(creative), creative.to_json().decode()]
        wrong_credentials: Credentials = {**credentials, "api_secret": "not-the-secret-0000"}
        wrong = AdCreativeClient(**wrong_credentials, user_id=USER, trust_env=False)
        async with wrong:
            with pytest.raises(AuthenticationError) as denied:
                await wrong.background_remover.user_progress()
            seen_text.append(describe(denied.value))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    unreachable_credentials: Credentials = {**credentials, "base_url": f"http://127.0.0.1:{dead}"}
    nowhere = AdCreativeClient(**unreachable_credentials, user_id=USER, trust_env=False)
    async with nowhere:
        with pytest.raises(AdCreativeError) as unreachable:
            await nowhere.background_remover.user_progress()
        seen_text.append(describe(unreachable.value))

    secrets = [credentials["api_key"], credentials["api_secret"], credentials["jwt_private_key"], *tokens]
    secrets = [s for s in secrets if s]
    assert len(secrets) >= 5  # key, secret, private key, two access tokens (refresh tokens too)
    text = "\n".join(all_logs.lines + seen_text)
    assert any(line.startswith("adcreative_async") for line in all_logs.lines)  # the SDK did log
    assert any(line.startswith("adcreative_async.auth DEBUG") for line in all_logs.lines)
    for secret in secrets:
        assert secret not in text
    for error in (failed.value, ambiguous.value, denied.value, unreachable.value):
        for item in chain(error):
            assert not type(item).__module__.startswith("aiohttp")  # never chained: they carry headers
