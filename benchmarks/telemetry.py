"""The cost of OpenTelemetry per request: not installed, installed but off, on without an SDK, on with one.

Run from the repository root (see ``benchmarks/README.md``)::

    python -m benchmarks.telemetry           # 3,000 requests per run, 5 runs of each mode, alternating
    python -m benchmarks.telemetry --quick   # 100 requests, 1 run each: CI keeps it working

Each run is a fresh client process sending N progress requests one after another
(``background_remover.user_progress()``, a 200 with one process) to an emulator in another process, and
measuring its own CPU time (``time.process_time``) and wall time over them, after a warm-up. Modes:

- ``absent``: ``opentelemetry`` cannot be imported in that process (as if not installed);
  ``AdCreativeClient()`` without telemetry. The baseline.
- ``off``: the packages installed, telemetry off (the default).
- ``on, no SDK``: ``telemetry=True`` with no SDK configured (the API's no-op providers).
- ``on, SDK``: ``telemetry=Telemetry(...)`` with the SDK: a tracer provider whose batch span processor
  exports to an exporter that drops the spans, and a meter provider with an in-memory reader (read once
  at the end): what a traced application pays, exporter I/O aside.

Also, in one more process, the instrumentation alone: what the transport calls per request attempt
(start a span and its timing, end them with a status), timed without any I/O, so free of the noise of
a loaded machine; ``off`` is the one ``is None`` test the transport makes.

Prints a table (CPU microseconds per request, median of the runs with min and max, and the difference
from ``absent`` by medians and by minimums), writes ``benchmarks/results/telemetry.json``
(``telemetry-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import cell, credentials_of, emulator, machine, run_child, summary, write_results

MODULE = "benchmarks.telemetry"
MODES = ("absent", "off", "on, no SDK", "on, SDK")
USER = "2581c740-8e9d-4d63-96bc-5665bb9a646b"
WARMUP = 50


async def _measure(mode: str, credentials: dict[str, Any], requests: int) -> dict[str, float]:
    """In the child: N sequential progress requests; CPU and wall seconds."""
    from adcreative_async import AdCreativeClient, Telemetry
    from adcreative_async.testing import sample_image

    telemetry: Any = None
    shutdown: list[Any] = []
    if mode == "on, no SDK":
        telemetry = True
    elif mode == "on, SDK":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
        shutdown = [tracer_provider, meter_provider]
    async with AdCreativeClient(**credentials, user_id=USER, telemetry=telemetry) as client:
        await client.background_remover.remove(sample_image("png", (8, 8)))  # the listing: one process
        for _ in range(WARMUP):
            await client.background_remover.user_progress()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await client.background_remover.user_progress()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if mode == "on, SDK":
        reader.get_metrics_data()
    for provider in shutdown:
        provider.shutdown()
    loaded = [m for m, module in sys.modules.items() if m.startswith("opentelemetry") and module is not None]
    return {"cpu": cpu, "wall": wall, "opentelemetry_loaded": float(bool(loaded))}


def _hooks_alone(iterations: int) -> dict[str, float]:
    """In the child: CPU microseconds of the instrumentation of one request without the request (what
    the transport calls per attempt: start the span and timing, end them with a status), by mode."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from adcreative_async import SystemClock, Telemetry
    from adcreative_async._telemetry import build_instruments
    from adcreative_async._transport import Request

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    req = Request("GET", "Image/BackgroundRemoving/CheckUserProgress", query=[("userId", USER)])
    modes = {
        "off": None,
        "on, no SDK": build_instruments(True, base_url="http://127.0.0.1:1", clock=SystemClock()),
        "on, SDK": build_instruments(
            Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider),
            base_url="http://127.0.0.1:1",
            clock=SystemClock(),
        ),
    }
    figures: dict[str, float] = {}
    for mode, telemetry in modes.items():
        started = time.process_time()
        for _ in range(iterations):
            span = telemetry.http_request(req, 0) if telemetry is not None else None
            if span is not None:
                span.end(200, received=512)
        figures[mode] = (time.process_time() - started) / iterations * 1e6
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return figures


def child(mode: str, params: dict[str, Any]) -> None:
    """Entry point of a scenario process: print its figures as one JSON line."""
    import anyio

    if mode == "hooks":
        print(json.dumps(_hooks_alone(params["iterations"])))
        return
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import opentelemetry -> ImportError
    result = anyio.run(_measure, mode, params["credentials"], params["requests"])
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--requests", type=int, help="requests per run (default 3,000; 100 with --quick)")
    parser.add_argument("--runs", type=int, help="runs of each mode (default 5; 1 with --quick)")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return 0
    requests = args.requests or (100 if args.quick else 3000)
    runs = args.runs or (1 if args.quick else 5)
    figures: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with emulator() as info:
        params = {"credentials": credentials_of(info), "requests": requests}
        for _ in range(runs):
            for mode in MODES:  # alternating, so that load on the machine hits every mode alike
                figures[mode].append(run_child(MODULE, mode, params))
        hooks = run_child(MODULE, "hooks", {"iterations": 2000 if args.quick else 50_000})
    per_request = {
        mode: summary([r["cpu"] / requests * 1e6 for r in results]) for mode, results in figures.items()
    }
    wall_per_request = {
        mode: summary([r["wall"] / requests * 1e6 for r in results]) for mode, results in figures.items()
    }
    baseline = per_request["absent"]["median"]
    result: dict[str, Any] = {
        "machine": machine(),
        "requests": requests,
        "runs": runs,
        "cpu_us_per_request": per_request,
        "wall_us_per_request": wall_per_request,
        "overhead_us_vs_absent": {m: s["median"] - baseline for m, s in per_request.items()},
        "overhead_us_vs_absent_by_min": {
            m: s["min"] - per_request["absent"]["min"] for m, s in per_request.items()
        },
        "instrumentation_alone_us_per_request": hooks,
        "ratio_vs_absent": {m: s["median"] / baseline for m, s in per_request.items()},
        "opentelemetry_loaded": {m: any(r["opentelemetry_loaded"] for r in rs) for m, rs in figures.items()},
        "raw": figures,
    }
    print(f"{requests} progress requests per run, {runs} run(s) per mode, emulator in its own process")
    print(
        f"{'mode':<12} {'CPU us/request':>18} {'vs absent (median/min)':>24} {'hooks alone':>12} "
        f"{'wall us/request':>20} {'otel loaded':>12}"
    )
    for mode in MODES:
        overhead = per_request[mode]["median"] - baseline
        by_min = result["overhead_us_vs_absent_by_min"][mode]
        alone = f"{hooks[mode]:.2f}us" if mode in hooks else "-"
        loaded = result["opentelemetry_loaded"][mode]
        print(
            f"{mode:<12} {cell(per_request[mode], '.0f'):>18} {overhead:>+10.1f} / {by_min:>+8.1f}us "
            f"{alone:>12} {cell(wall_per_request[mode], '.0f'):>20} {loaded!s:>12}"
        )
    spread = statistics.median(
        (s["max"] - s["min"]) / s["median"] for s in per_request.values() if s["median"]
    )
    print(f"(run-to-run spread of the medians: about {spread:.0%}; a difference below it is noise)")
    path = write_results("telemetry-quick" if args.quick else "telemetry", result, args.output)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
