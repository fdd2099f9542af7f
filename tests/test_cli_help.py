"""The command line's help reads like git's: global options listed once (``adcreative --help``), each
subcommand its own options with examples; the emulator's help names it as the console script runs it and
documents its testing-only routes; and the emulator's ``--webhook`` delivers push to a URL."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from adcreative_async import AdCreativeClient
from adcreative_async.cli import main
from adcreative_async.testing import sample_image

COMMANDS = ["demo", "remove-bg", "generate", "edit", "status", "download", "runs"]
GLOBAL_FLAGS = ["--emulator", "--progress", "--application-id", "--api-key", "--api-secret", "--base-url"]


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def test_global_options_are_listed_once_in_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = main_help(capsys)
    for flag in GLOBAL_FLAGS:
        assert flag in text


def main_help(capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["--help"])
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_subcommand_help_shows_its_own_options_and_examples_not_the_global_ones(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, command)
    options = text.split("examples:")[0].split("global options (")[0]
    for flag in GLOBAL_FLAGS:
        assert flag not in options, f"{command} --help repeats {flag}"
    assert "see `adcreative --help`" in text
    if command != "runs":
        assert "examples:\n  adcreative " in text


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    code = main([command, "--help"])
    assert code == 0
    return capsys.readouterr().out


def test_global_options_are_still_accepted_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["runs", "show", "/nowhere/at/all", "--json", "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2  # parsed: the folder is what is wrong, not the options
    assert "no run ledger" in err


def test_the_emulator_help_names_the_console_script_and_documents_its_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: adcreative emulator")
    assert "python -m" not in text.split("\n\n")[0]
    for route in ("fail-next", "processes-per-input", "truncate-next-download", "advance", "requests"):
        assert route in text
    assert "--stamp-inputs" in text
    assert "--webhook URL" in text


class Received:
    """The messages a webhook receiver got, and an event set at each."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.arrived = anyio.Event()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Received]]:
    """A webhook receiver on a loopback port: its URL and what it got."""
    received = Received()

    async def hook(request: web.Request) -> web.Response:
        received.messages.append((await request.text()).lower())
        received.arrived.set()
        received.arrived = anyio.Event()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_the_emulators_webhook_option_posts_progress_messages_to_the_url(
    receiver: tuple[str, Received],
) -> None:
    url, received = receiver
    command = [
        sys.executable,
        "-m",
        "adcreative_async.cli",
        "emulator",
        "--task-duration",
        "0.1",
        "--webhook",
        url,
    ]
    process = await anyio.open_process(command)
    try:
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await process.stdout.receive(1)
        info = json.loads(line)
        keys = ("application_id", "api_key", "api_secret", "jwt_private_key", "base_url")
        credentials = {k: info[k] for k in keys}
        async with AdCreativeClient(
            **credentials, user_id="2581c740-8e9d-4d63-96bc-5665bb9a646b", trust_env=False
        ) as client:
            job = await client.background_remover.remove(sample_image("png", (8, 8)))
            await job.result(timeout=30)
        with anyio.fail_after(10):
            while not any(job.process_id.lower() in m for m in received.messages):
                await received.arrived.wait()
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        await process.aclose()
