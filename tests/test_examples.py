"""Every example of ``examples/`` runs against the emulator: the scripts, the FastAPI and aiohttp backends
(driven in process), and the user test suite of the pytest plugin."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from adcreative_async.testing import sample_image

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAST: dict[str, Any] = {"task_duration": 0.02}


def load(name: str) -> ModuleType:
    """Import an example by file name (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_quickstart_saves_every_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await load("quickstart").main(tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))  # 5 creatives and 1 cutout, named by origin
    assert names == [*(f"creative-{n}.png" for n in range(1, 6)), "product-cutout.png"]
    assert "100% (5/5 tasks)" in capsys.readouterr().out


async def test_bulk_folder_script_with_samples(tmp_path: Path) -> None:
    result = await anyio.run_process(
        [sys.executable, str(EXAMPLES / "bulk_folder.py"), "--emulator", "--samples", "3",
         str(tmp_path / "in"), str(tmp_path / "out")],
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"3 of 3 succeeded" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "product-1.jpg.png",  # named after the inputs, product-N.jpg, suffix kept
        "product-2.jpg.png",
        "product-3.jpg.png",
    ]
    assert (
        f"{tmp_path / 'in' / 'product-2.jpg'} -> {tmp_path / 'out' / 'product-2.jpg.png'}".encode()
        in result.stdout
    )


async def test_bulk_folder_never_overwrites_one_inputs_result_with_anothers(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "shoe.jpg").write_bytes(sample_image("jpeg", (64, 48)))
    (folder / "shoe.png").write_bytes(sample_image("png", (48, 64)))  # the same stem: shoe.png both
    (folder / "hat.jpg").write_bytes(sample_image("jpeg", (32, 32)))
    result = await anyio.run_process(
        [sys.executable, str(EXAMPLES / "bulk_folder.py"), "--emulator", str(folder), str(tmp_path / "out")],
        check=False,
    )
    files = sorted(f.name for f in (tmp_path / "out").iterdir())
    assert files == ["hat.jpg.png", "shoe.jpg.png", "shoe.png.png"]  # each input's own name
    assert result.returncode == 0
    assert b"3 of 3 succeeded" in result.stdout


async def test_fastapi_app_starts_reports_and_streams() -> None:
    httpx = pytest.importorskip("httpx")
    app = load("fastapi_app").create_app(emulator_options=FAST)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        response = await http.post("/background-removals", content=sample_image("jpeg", (64, 48)))
        assert response.status_code == 202, response.text
        job = response.json()
        url = f"/jobs/background_remover/{job['process_id']}"
        with anyio.fail_after(10):
            while True:  # a client of the backend polls it
                status = (await http.get(url)).json()
                if status["complete"]:
                    break
                await anyio.sleep(0.02)
        [task_id] = status["succeeded_task_ids"]
        result = await http.get(f"{url}/tasks/{task_id}/result")
        assert result.status_code == 200
        assert result.headers["content-type"] == "image/png"
        assert result.content.startswith(b"\x89PNG")
        assert int(result.headers["content-length"]) == len(result.content)

        missing = await http.get(f"{url}/tasks/0f8fad5b-d9cb-469f-a165-70867728950e/result")
        assert missing.status_code == 404
        refused = await http.post("/background-removals", content=b"not an image")
        assert refused.status_code == 422
        token = app.state.webhook_token
        assert (await http.post("/webhooks/adcreative/not-the-token-0123456789", json={})).status_code == 404
        unknown = await http.post(f"/webhooks/adcreative/{token}", json={"MessageType": "ImageVideoProgress"})
        assert (unknown.status_code, unknown.json()["status"]) == (200, "ignored")
        assert (await http.post(f"/webhooks/adcreative/{token}", content=b"{broken")).status_code == 400


async def test_aiohttp_app_starts_reports_and_streams() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    module = load("aiohttp_app")
    app = module.create_app(emulator_options=FAST)
    async with TestClient(TestServer(app)) as http:
        response = await http.post("/background-removals", data=sample_image("png", (40, 40)))
        assert response.status == 202, await response.text()
        job = await response.json()
        url = f"/jobs/background_remover/{job['process_id']}"
        with anyio.fail_after(10):
            while True:
                status = await (await http.get(url)).json()
                if status["complete"]:
                    break
                await anyio.sleep(0.02)
        [task_id] = status["succeeded_task_ids"]
        result = await http.get(f"{url}/tasks/{task_id}/result")
        assert result.status == 200
        assert (await result.read()).startswith(b"\x89PNG")
        assert (await http.get(f"{url}/tasks/0f8fad5b-d9cb-469f-a165-70867728950e/result")).status == 404
        assert (await http.post("/background-removals", data=b"nope")).status == 422
        assert (await http.get("/jobs/nope/0f8fad5b-d9cb-469f-a165-70867728950e")).status == 422
        token = app[module.WEBHOOK_TOKEN]
        assert (await http.post("/webhooks/adcreative/not-the-token-0123456789", json={})).status == 404
        assert (await http.post(f"/webhooks/adcreative/{token}", data=b"{broken")).status == 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_fastapi_webhook_route_resolves_waits_by_push(monkeypatch: pytest.MonkeyPatch) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    port = free_port()
    monkeypatch.setenv("ADCREATIVE_PUBLIC_URL", f"http://127.0.0.1:{port}")  # where the emulator posts
    app = load("fastapi_app").create_app(emulator_options={"task_duration": 0.05})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await anyio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            job = (await http.post("/background-removals", content=sample_image("png", (16, 16)))).json()
            done = await http.get(f"/jobs/background_remover/{job['process_id']}/wait", timeout=20)
            assert done.status_code == 200, done.text
            assert len(done.json()["succeeded_task_ids"]) == 1
        assert app.state.adcreative.scheduler_stats["pushes"] >= 1  # the webhook route delivered
        server.should_exit = True


async def test_aiohttp_webhook_subapp_resolves_waits_by_push(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    port = free_port()
    monkeypatch.setenv("ADCREATIVE_PUBLIC_URL", f"http://127.0.0.1:{port}")
    module = load("aiohttp_app")
    app = module.create_app(emulator_options={"task_duration": 0.05})
    async with TestClient(TestServer(app, port=port)) as http:
        job = await (await http.post("/background-removals", data=sample_image("png", (16, 16)))).json()
        client = app[module.CLIENT]
        progress = await client.background_remover.job(job["process_id"]).result(timeout=20)
        assert progress.is_complete
        assert client.scheduler_stats["pushes"] >= 1


def test_user_suite_of_the_pytest_plugin_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_pipeline=(EXAMPLES / "test_my_pipeline.py").read_text())
    result = pytester.runpytest_inprocess(
        "-p", "no:asyncio", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "error"
    )
    result.assert_outcomes(passed=4)
