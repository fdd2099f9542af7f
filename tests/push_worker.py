"""A second process for ``test_broadcast_resolves_a_wait_in_a_second_process``: waits on a job it did not
start, hearing about it only through RabbitMQ (broadcast mode); prints ``ready``, then ``done polls=N``.

Usage: ``python tests/push_worker.py CREDENTIALS_JSON JOB_JSON``.
"""

from __future__ import annotations

import json
import sys

import anyio

from adcreative_async import AdCreativeClient, PollPolicy
from adcreative_async.notifications import NotificationHub
from adcreative_async.notifications.rabbitmq import RabbitMQSource

NO_POLLING = PollPolicy(initial_interval=60, max_interval=60, min_interval=60, jitter=None)


async def main(credentials: dict[str, str], job_json: str) -> None:
    amqp_url = credentials.pop("amqp_url")
    hub = NotificationHub()
    async with (
        RabbitMQSource(hub, amqp_url, mode="broadcast"),
        AdCreativeClient(**credentials, push=hub, poll_policy=NO_POLLING, trust_env=False) as client,  # type: ignore[arg-type]
    ):
        job = client.job_from_json(job_json)
        job._submitted_at = client.clock.monotonic()  # it exists: no need for a first poll to find it
        print("ready", flush=True)
        await job.result(timeout=30)
        print(f"done polls={client.scheduler_stats['requests']}", flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]), sys.argv[2])
