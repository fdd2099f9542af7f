"""Push in three web hosts: submit->result latency of renders awaited in a FastAPI app (uvicorn, the ASGI
adapter), a Flask app under gunicorn with one sync worker (the sync client, the WSGI adapter) and the same
Flask app with two sync workers behind one webhook URL.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.webhosts            # 50 renders per host, 3 rounds (the hosts' order rotates)
    python -m benchmarks.webhosts --quick    # 5 renders, 1 round: CI keeps it working

Each host is a server process on loopback with an emulator process of its own (same seed, so the same
render durations, 0.5-2 s) posting its webhooks to the host. The benchmark submits the renders over HTTP
(``POST /background-removals``: the app starts the render and hands its wait to the client, 202), then
reads each render's status until it has ended; the latency is what the app measured from entering its
submit view to its wait resolving (``seconds``), so the benchmark's own status requests do not count.
Hosts: ``asgi`` is ``benchmarks/_webhost_asgi.py`` (the same routes as the Flask example, async);
``gunicorn-1`` and ``gunicorn-2`` serve ``examples/flask_app.py``. Also counted: the push messages taken
and the poll requests sent by the hosts' clients (``/stats`` of every worker).

Goals (issue 22): p50 of gunicorn-1 <= 1.5x the ASGI app's; max of gunicorn-2 <= 2x the ASGI app's.
Prints a table, writes ``benchmarks/results/webhosts.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from adcreative_async.testing import sample_image
from benchmarks._harness import ROOT, emulator, machine, percentile, write_results
from benchmarks._hosts import emulator_env, free_port, no_control_socket, request, stop, wait_until_answers

IMAGE = sample_image("png", (8, 8))
TOKEN = "webhosts-benchmark-token-0123456789"
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
GOALS = {"gunicorn-1 p50 / asgi p50": 1.5, "gunicorn-2 max / asgi max": 2.0}


@dataclass(frozen=True)
class Host:
    name: str
    workers: int

    def command(self, port: int) -> list[str]:
        if self.name == "asgi":
            return [
                sys.executable, "-m", "uvicorn", "benchmarks._webhost_asgi:app", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
        return [
            sys.executable, "-m", "gunicorn", "-k", "sync", "-w", str(self.workers),
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", *no_control_socket(),
            "examples.flask_app:create_app()",
        ]  # fmt: skip


HOSTS = (Host("asgi", 1), Host("gunicorn-1", 1), Host("gunicorn-2", 2))


@contextlib.contextmanager
def _served(host: Host, seed: int) -> Iterator[str]:
    """An emulator posting to ``host``, and the host; yields the host's base URL once it answers."""
    port = free_port()
    flags = ["--seed", str(seed), "--task-duration", "0.5", "2"]
    with emulator(*flags, "--webhook", f"http://127.0.0.1:{port}/webhooks/adcreative/{TOKEN}") as info:
        env = {
            **os.environ,
            **emulator_env(info),
            "ADCREATIVE_USER_ID": USER,
            "ADCREATIVE_WEBHOOK_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT),
        }
        server = subprocess.Popen(host.command(port), cwd=ROOT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_answers(server, f"{base}/stats", host.name)
            yield base
        finally:
            stop(server)


def run_host(host: Host, renders: int, seed: int) -> dict[str, Any]:
    """Submit ``renders`` to ``host`` and collect their latencies and the workers' counters."""
    with _served(host, seed) as base:
        ids = []
        for _ in range(renders):
            status, answer = request("POST", f"{base}/background-removals", IMAGE)
            if status != 202:
                raise RuntimeError(f"{host.name}: submit answered {status}: {answer}")
            ids.append(answer["id"])
        results: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 300
        while len(results) < renders:
            time.sleep(0.5)  # the latency is measured by the app: asking often would only load it
            for process_id in ids:
                if process_id not in results:
                    _, answer = request("GET", f"{base}/jobs/{process_id}")
                    if isinstance(answer, dict) and answer.get("seconds") is not None:
                        results[process_id] = answer  # (another worker's answer has none: asked again)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}: {renders - len(results)} renders never ended")
        workers: dict[int, dict[str, Any]] = {}
        for _ in range(200):
            _, counters = request("GET", f"{base}/stats")
            workers[counters["pid"]] = counters
            if len(workers) == host.workers:
                break
    failed = sum(1 for r in results.values() if r["status"] != "succeeded")
    return {
        "seconds": [results[i]["seconds"] for i in ids],
        "failed": failed,
        "pushes": sum(w["pushes"] for w in workers.values()),
        "polls": sum(w["polls"] for w in workers.values()),
        "workers": len(workers),  # the workers whose /stats answered (their counters are summed)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 renders, 1 round (CI)")
    parser.add_argument("--renders", type=int, help="renders per host per round (default 50)")
    parser.add_argument("--rounds", type=int, help="rounds, the hosts' order rotating (default 3)")
    parser.add_argument("--output", help="where to write the JSON (default benchmarks/results/webhosts.json)")
    args = parser.parse_args()
    renders = args.renders or (5 if args.quick else 50)
    rounds = args.rounds or (1 if args.quick else 3)
    samples: dict[str, list[float]] = {h.name: [] for h in HOSTS}
    counters = {h.name: {"pushes": 0, "polls": 0, "failed": 0, "workers": 0} for h in HOSTS}
    for round_ in range(rounds):
        order = HOSTS[round_ % len(HOSTS) :] + HOSTS[: round_ % len(HOSTS)]
        for host in order:
            outcome = run_host(host, renders, seed=round_ + 1)
            samples[host.name].extend(outcome["seconds"])
            for key in ("pushes", "polls", "failed"):
                counters[host.name][key] += outcome[key]
            counters[host.name]["workers"] = max(counters[host.name]["workers"], outcome["workers"])
            print(f"round {round_ + 1}: {host.name} done", file=sys.stderr)
    table: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        table[name] = {"p50": percentile(values, 50), "p90": percentile(values, 90), "max": max(values)}
    base = table["asgi"]
    ratios = {
        name: {"p50": row["p50"] / base["p50"], "max": row["max"] / base["max"]}
        for name, row in table.items()
    }
    print(f"\n{renders} renders per host x {rounds} round(s), renders of 0.5-2 s; submit->result seconds")
    columns = ("p50", "p90", "max", "p50 x", "max x", "pushes", "polls", "failed", "workers")
    print(f"{'host':<12}" + "".join(f"{c:>8}" for c in columns))
    for name, row in table.items():
        c = counters[name]
        print(
            f"{name:<12}{row['p50']:>8.3f}{row['p90']:>8.3f}{row['max']:>8.3f}"
            f"{ratios[name]['p50']:>8.2f}{ratios[name]['max']:>8.2f}{c['pushes']:>8}{c['polls']:>8}{c['failed']:>8}"
            f"{c['workers']:>8}"
        )
    checks = {
        "gunicorn-1 p50 / asgi p50": ratios["gunicorn-1"]["p50"],
        "gunicorn-2 max / asgi max": ratios["gunicorn-2"]["max"],
    }
    for name, value in checks.items():
        print(f"goal {name} <= {GOALS[name]}: {value:.2f} {'met' if value <= GOALS[name] else 'NOT met'}")
    data = {
        "machine": machine(),
        "renders": renders,
        "rounds": rounds,
        "table": table,
        "ratios": ratios,
        "counters": counters,
        "goals": GOALS,
        "checks": checks,
        "samples": samples,
    }
    write_results("webhosts", data, args.output)


if __name__ == "__main__":
    main()
