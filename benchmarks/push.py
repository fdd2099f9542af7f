"""Push benchmarks: detection latency with webhook push vs polling, and receiver/consumer throughput.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.push            # 300 jobs; 20,000 webhook posts; 20,000 RabbitMQ messages
    python -m benchmarks.push --quick    # tiny sizes, seconds: CI keeps it working

Scenarios:

- ``latency``: background removals (renders of 0.5-2 s) awaited in a client process, against an emulator in
  another process; with push, the emulator posts its notifications to a webhook receiver served by the
  client process (a ``NotificationHub`` attached to the client); without, the client polls (default
  ``PollPolicy``). Detection latency = when ``job.result()`` returned - when the emulator ended the task
  (``/_emulator/processes``, on the machine's shared monotonic clock).
- ``webhook``: a receiver process (aiohttp + ``WebhookReceiver``, one event loop: one core) takes N posts
  from a load process with 64 connections: messages per second, and ``WebhookReceiver.handle()`` alone
  (decode + hub) in one process as the ceiling.
- ``rabbitmq``: N messages queued, then consumed by a ``RabbitMQSource`` (work-queue mode): messages per
  second. Needs a broker: ``ADCREATIVE_TEST_AMQP_URL``, or a private node started with ``.ci/rabbitmq``
  when ``rabbitmq-server`` is installed; otherwise skipped.

Prints a table, writes ``benchmarks/results/push.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from adcreative_async import AdCreativeClient, RenderJob, Timeout
from adcreative_async.notifications import NotificationHub, TaskCompletedNotification, WebhookReceiver
from adcreative_async.notifications.aiohttp import webhook_app
from adcreative_async.testing import sample_image
from benchmarks._harness import (
    ROOT,
    credentials_of,
    emulator,
    machine,
    percentile,
    run_child,
    summary,
    write_results,
)

MODULE = "benchmarks.push"
IMAGE = sample_image("png", (8, 8))
GOALS = {"push_latency_p99": 0.050}


@dataclass(frozen=True)
class Plan:
    jobs: int
    users: int
    webhook_posts: int
    rabbitmq_messages: int
    runs: int


FULL = Plan(jobs=300, users=5, webhook_posts=20_000, rabbitmq_messages=20_000, runs=3)
QUICK = Plan(jobs=20, users=2, webhook_posts=500, rabbitmq_messages=500, runs=1)


def _message(i: int) -> bytes:
    return json.dumps(
        {
            "MessageType": "ImageBackgroundRemovingTaskCompleted",
            "ApplicationId": str(uuid.UUID(int=1)),
            "UserId": str(uuid.UUID(int=2)),
            "ImageRenderProcessId": str(uuid.UUID(int=i + 10)),
            "TaskId": str(uuid.UUID(int=i + 10**9)),
            "ImageContentBytes": None,
            "IsSuccessful": True,
            "ErrorMessage": "",
        }
    ).encode()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


# ---------------------------------------------------------------------------------------------- latency


async def child_latency(params: dict[str, Any]) -> dict[str, Any]:
    """Submit and await jobs, with a webhook receiver (push) or without (polling)."""
    credentials: dict[str, str] = params["credentials"]
    base_url = credentials["base_url"]
    users = [str(uuid.uuid4()) for _ in range(params["users"])]
    hub = NotificationHub() if params["push"] else None
    detected: dict[str, float] = {}
    runner = None
    async with aiohttp.ClientSession() as session:
        if hub is not None:
            token = uuid.uuid4().hex
            app = web.Application()
            app.add_subapp("/hooks/", webhook_app(WebhookReceiver(hub, path_token=token)))
            runner, url = await _serve(app)
            body = {"kind": "webhook", "url": f"{url}/hooks/{token}"}
            async with session.post(f"{base_url}/_emulator/notification-channels", json=body) as response:
                response.raise_for_status()
        try:
            async with AdCreativeClient(
                **credentials,  # type: ignore[arg-type]
                push=hub,
                trust_env=False,
                timeout=Timeout(connect=10, read=120),
            ) as client:
                limiter = anyio.CapacityLimiter(16)

                async def one(i: int) -> None:
                    async with limiter:
                        job: RenderJob = await client.background_remover.remove(
                            IMAGE, user_id=users[i % len(users)]
                        )
                    await job.result(timeout=120)
                    detected[job.process_id] = time.monotonic()

                async with anyio.create_task_group() as tg:
                    for i in range(params["jobs"]):
                        tg.start_soon(one, i)
                polls = client.scheduler_stats["requests"]
            finished: dict[str, float] = {}
            for user in users:
                async with session.get(
                    f"{base_url}/_emulator/processes", params={"userId": user}
                ) as response:
                    for process in await response.json():
                        ends = [t["finishedAt"] for t in process["tasks"].values()]
                        if ends and all(e is not None for e in ends):
                            finished[process["processId"]] = max(ends)
        finally:
            if runner is not None:
                await runner.cleanup()
    latencies = [detected[p] - finished[p] for p in detected if p in finished]
    return {
        "push": params["push"],
        "jobs": len(detected),
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "progress_requests": polls,
    }


# ---------------------------------------------------------------------------------------------- webhook


async def child_receiver(params: dict[str, Any]) -> dict[str, Any]:
    """Serve a webhook receiver until ``count`` messages were handled; report the time it took."""
    hub = NotificationHub(dedup_window=params["count"] * 2)
    handled = 0
    first: float | None = None
    done = anyio.Event()

    def count(message: Any) -> None:
        nonlocal handled, first
        if first is None:
            first = time.perf_counter()
        handled += 1
        if handled >= params["count"]:
            done.set()

    hub.subscribe(count)
    runner, url = await _serve(webhook_app(WebhookReceiver(hub)))
    print(json.dumps({"url": url}), flush=True)
    cpu = time.process_time()
    await done.wait()
    elapsed = time.perf_counter() - (first or time.perf_counter())
    cpu = time.process_time() - cpu
    await runner.cleanup()
    return {"messages": handled, "seconds": elapsed, "per_second": handled / elapsed, "cpu_seconds": cpu}


async def _load(url: str, count: int, connections: int) -> None:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        limiter = anyio.CapacityLimiter(connections)

        async def post(i: int) -> None:
            async with limiter, session.post(url, data=_message(i)) as response:
                await response.read()

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(post, i)


async def child_load(params: dict[str, Any]) -> dict[str, Any]:
    """The load process: ``count`` posts over 64 connections."""
    await _load(params["url"], params["count"], 64)
    return {}


def webhook_throughput(count: int) -> dict[str, Any]:
    """Receiver process + load process; messages per second of the receiver."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--child", "receiver", json.dumps({"count": count})],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        url = json.loads(receiver.stdout.readline())["url"]
        run_child(MODULE, "load", {"url": url, "count": count})
        result: dict[str, Any] = json.loads(receiver.stdout.readline())
    finally:
        receiver.wait(timeout=60)
    return result


async def child_handle(params: dict[str, Any]) -> dict[str, Any]:
    """``WebhookReceiver.handle()`` alone: decode and publish to a hub with one subscriber."""
    hub = NotificationHub(dedup_window=params["count"] * 2)
    hub.subscribe(lambda m: None)
    receiver = WebhookReceiver(hub)
    bodies = [_message(i) for i in range(params["count"])]
    start = time.perf_counter()
    for body in bodies:
        await receiver.handle(method="POST", path="/", headers={}, body=body)
    elapsed = time.perf_counter() - start
    return {"messages": len(bodies), "per_second": len(bodies) / elapsed}


# --------------------------------------------------------------------------------------------- rabbitmq


async def child_rabbitmq(params: dict[str, Any]) -> dict[str, Any]:
    """Queue ``count`` messages, then consume them with a RabbitMQSource (work queue)."""
    from adcreative_async.notifications.rabbitmq import RabbitMQPublisher, RabbitMQSource

    url, count = params["url"], params["count"]
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    origin = NotificationHub(dedup_window=count * 2)
    consumer_hub = NotificationHub(dedup_window=count * 2)
    received = 0
    done = anyio.Event()

    def on_message(message: Any) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    consumer_hub.subscribe(on_message)
    source = RabbitMQSource(consumer_hub, url, mode="work_queue", queue=queue, prefetch=256)
    await source.start()
    await source.close()  # the durable queue exists and is bound: fill it while nobody consumes
    async with RabbitMQPublisher(origin, url, sources=["bench"]):
        for i in range(count):
            message = TaskCompletedNotification(
                message_type="ImageBackgroundRemovingTaskCompleted",
                user_id=str(uuid.UUID(int=2)),
                image_render_process_id=str(uuid.UUID(int=i + 10)),
                task_id=str(uuid.UUID(int=i + 10**9)),
            )
            await origin.publish(message, source="bench")
    start = time.perf_counter()
    cpu = time.process_time()
    async with RabbitMQSource(consumer_hub, url, mode="work_queue", queue=queue, prefetch=256):
        await done.wait()
    elapsed = time.perf_counter() - start
    return {"messages": received, "per_second": received / elapsed, "cpu_seconds": time.process_time() - cpu}


@contextmanager
def broker() -> Iterator[str | None]:
    """A broker URL: the environment's, a private node, or None."""
    url = os.environ.get("ADCREATIVE_TEST_AMQP_URL")
    if url:
        yield url
        return
    if not (shutil.which("rabbitmq-server") or os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server")):
        yield None
        return
    state = tempfile.mkdtemp(prefix="bench-rabbitmq-")
    script = str(ROOT / ".ci" / "rabbitmq")
    started = subprocess.run([script, "start", state], capture_output=True, text=True, check=False)
    try:
        yield started.stdout.strip() if started.returncode == 0 else None
    finally:
        subprocess.run([script, "stop", state], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


CHILDREN = {
    "latency": child_latency,
    "receiver": child_receiver,
    "load": child_load,
    "handle": child_handle,
    "rabbitmq": child_rabbitmq,
}


def run(plan: Plan) -> dict[str, Any]:
    """Every scenario; medians over ``plan.runs`` for latency."""
    latency: dict[str, Any] = {}
    for push in (True, False):
        runs = []
        for _ in range(plan.runs):
            with emulator("--task-duration", "0.5", "2") as info:
                params = {
                    "credentials": credentials_of(info),
                    "push": push,
                    "jobs": plan.jobs,
                    "users": plan.users,
                }
                runs.append(run_child(MODULE, "latency", params))
        latency["push" if push else "polling"] = {
            "runs": runs,
            **{
                k: summary([float(r[k]) for r in runs])
                for k in ("latency_p50", "latency_p99", "progress_requests")
            },
        }
    webhook = webhook_throughput(plan.webhook_posts)
    handle = run_child(MODULE, "handle", {"count": plan.webhook_posts})
    with broker() as url:
        rabbitmq = (
            run_child(MODULE, "rabbitmq", {"url": url, "count": plan.rabbitmq_messages}) if url else None
        )
    return {
        "machine": machine(),
        "plan": asdict(plan),
        "latency": latency,
        "webhook": webhook,
        "handle": handle,
        "rabbitmq": rabbitmq,
        "goals": GOALS,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(data: dict[str, Any]) -> str:
    """The human-readable report."""
    plan = data["plan"]
    lines = [
        f"Push: {plan['jobs']} jobs over {plan['users']} users, renders of 0.5-2 s; median of {plan['runs']} "
        f"run(s); {data['machine']['cores']} cores",
        "",
        f"{'':<9} {'detect p50':>11} {'detect p99':>11} {'progress requests':>18}",
    ]
    for name, row in data["latency"].items():
        lines.append(
            f"{name:<9} {_ms(row['latency_p50']['median']):>11} {_ms(row['latency_p99']['median']):>11} "
            f"{row['progress_requests']['median']:>18.0f}"
        )
    push_p99 = data["latency"]["push"]["latency_p99"]["median"]
    lines += [
        "",
        f"push detection p99 {_ms(push_p99)} (goal < {_ms(GOALS['push_latency_p99'])})",
        f"webhook receiver (aiohttp, one process): {data['webhook']['per_second']:,.0f} messages/s "
        f"over HTTP; WebhookReceiver.handle() alone {data['handle']['per_second']:,.0f} messages/s",
    ]
    rabbit = data["rabbitmq"]
    lines.append(
        f"RabbitMQ consumer (work queue, prefetch 256): {rabbit['per_second']:,.0f} messages/s"
        if rabbit
        else "RabbitMQ consumer: skipped (no broker: set ADCREATIVE_TEST_AMQP_URL or install rabbitmq-server)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one scenario in this process)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.push", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, params = args.child
        print(json.dumps(anyio.run(CHILDREN[kind], json.loads(params))), flush=True)
        return 0
    data = run(QUICK if args.quick else FULL)
    print(table(data))
    print(f"\nwrote {write_results('push-quick' if args.quick else 'push', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
