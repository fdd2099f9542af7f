"""The Flask and Django examples under real gunicorn sync workers (subprocesses on loopback), an emulator
process posting its webhooks to them: renders submitted with the sync client resolve by push through the
sync adapter; with two workers behind one webhook URL, every render resolves at the normal poll pace at
worst (a push for another worker's render never slows a worker's polls)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from webhosts import (
    emulator_process,
    free_port,
    gunicorn,
    host_env,
    submit_and_collect,
    webhook_url,
    worker_stats,
)

from adcreative_async.testing import sample_image

pytest.importorskip("gunicorn")

PNG = sample_image("png", (16, 16))
APPS = {
    "flask": "examples.flask_app:create_app()",
    "django": "examples.django_app:application",
}


@pytest.mark.parametrize("framework", sorted(APPS))
def test_example_under_gunicorn_resolves_sync_waits_by_push(framework: str, tmp_path: Path) -> None:
    pytest.importorskip(framework)
    port = free_port()
    with emulator_process(webhook_url(port), "--task-duration", "0.1", "0.4") as emulator_env:
        # Polls only every 120 s: a render seen done within the test came by push.
        env = host_env(emulator_env, EXAMPLE_POLL_INTERVAL="120")
        with gunicorn(APPS[framework], port, env, workers=1, log=tmp_path / "gunicorn.log") as base:
            results = submit_and_collect(base, PNG, count=8)
            stats = worker_stats(base, workers=1)
            if framework == "flask":  # its result route streams the task's image
                first = results[0]
                with urllib.request.urlopen(
                    f"{base}/jobs/{first['id']}/tasks/{first['task_ids'][0]}/result", timeout=30
                ) as response:
                    assert response.read().startswith(b"\x89PNG")
    assert [r["status"] for r in results] == ["succeeded"] * 8
    assert all(len(r["task_ids"]) == 1 for r in results)
    (worker,) = stats.values()
    assert worker["polls"] == 0  # not one poll: every wait resolved by a webhook
    assert worker["pushes"] >= 8


def test_two_gunicorn_workers_behind_one_webhook_url_all_resolve_at_the_normal_pace(tmp_path: Path) -> None:
    # Each webhook lands on either worker. A worker that receives a message for the other's render
    # must not slow its own polls to the 30 s reconcile interval: its renders whose messages went to the
    # other worker are then seen by its polls (default pace, <= 5 s). The waits time out after 15 s
    # (before: renders whose message went to the other worker waited ~30 s and failed).
    pytest.importorskip("flask")
    port = free_port()
    with emulator_process(webhook_url(port), "--task-duration", "1.5", "2.5") as emulator_env:
        env = host_env(emulator_env, EXAMPLE_WAIT_TIMEOUT="15")
        with gunicorn(APPS["flask"], port, env, workers=2, log=tmp_path / "gunicorn.log") as base:
            results = submit_and_collect(base, PNG, count=16)
            stats = worker_stats(base, workers=2)
    assert len(stats) == 2  # both workers served
    failures = [r for r in results if r["status"] != "succeeded"]
    assert failures == []
    assert sum(s["pushes"] for s in stats.values()) >= 16  # webhooks reached the workers
