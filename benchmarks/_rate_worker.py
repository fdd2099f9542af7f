"""One bulk worker of the rate-limit benchmark and test: every ``*.png`` of a folder through
``process_many`` with a run ledger (background removal, results downloaded), with the client's rate
control as ``MODE`` says. Prints ``started`` once its client is open, and at the end one JSON line:
``{"ok", "errors", "throttled", "cuts", "rate", "cpu", "wall"}`` (429s this worker received, cuts of its
rate, its last pace, its CPU and wall seconds from opening the client).

Usage: ``python -m benchmarks._rate_worker CREDENTIALS_JSON INPUT_DIR OUTPUT_DIR LEDGER MODE``, where MODE
is ``shared`` (AIMD, the learned rate shared through a PostgreSQL ledger), ``alone`` (AIMD in each process)
or ``plain`` (no rate control: the retry policy alone, honouring ``Retry-After``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio

from adcreative_async import AdCreativeClient, PollPolicy, RateControl, RetryPolicy
from adcreative_async.ledger import RenderRequest

#: The emulator has no read-after-write lag: a short grace for unanswered start calls.
RETRY = RetryPolicy(reconcile_grace=0.5, reconcile_interval=0.1)
#: Polls as a busy worker makes them (the defaults, faster first polls).
POLLS = PollPolicy(initial_interval=0.25, max_interval=1.0)
MODES = ("shared", "alone", "plain")


def rate_control(mode: str) -> RateControl | None:
    """The client's rate control in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return None if mode == "plain" else RateControl(share=mode == "shared")


async def main(credentials: dict[str, str], paths: list[Path], output: Path, ledger: str, mode: str) -> None:
    cpu, wall = time.process_time(), time.monotonic()
    async with AdCreativeClient(
        **credentials,  # type: ignore[arg-type]
        poll_policy=POLLS,
        retry=RETRY,
        trust_env=False,
        rate_control=rate_control(mode),
    ) as client:
        print("started", flush=True)
        outcomes = await client.process_many(
            paths,
            request=RenderRequest.remove_background,
            dest=output,
            ledger=ledger,
            name="{stem}{suffix}",
            upload_concurrency=8,
            download_concurrency=8,
        )
        status = client.rate_status
    errors = [f"{o.item}: {type(o.error).__name__}: {o.error}" for o in outcomes if o.error is not None]
    summary = {
        "ok": sum(o.ok for o in outcomes),
        "errors": errors,
        "throttled": status.throttled if status else None,
        "cuts": status.cuts if status else None,
        "rate": status.rate if status else None,
        "cpu": time.process_time() - cpu,
        "wall": time.monotonic() - wall,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    inputs = sorted(Path(sys.argv[2]).glob("*.png"))
    anyio.run(main, json.loads(sys.argv[1]), inputs, Path(sys.argv[3]), sys.argv[4], sys.argv[5])
