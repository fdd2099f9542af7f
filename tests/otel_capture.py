"""OpenTelemetry's in-memory span exporter and metric reader, wired to a :class:`Telemetry`, for tests."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adcreative_async import Telemetry


@dataclass
class Capture:
    """What a client recorded: its spans and its metrics."""

    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @classmethod
    def start(cls) -> Capture:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[metrics])
        telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
        return cls(telemetry, spans, metrics, tracer_provider, meter_provider)

    def stop(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def total(self, name: str, **attributes: object) -> float:
        """The sum of a counter's points (or a histogram's counts) whose attributes include these."""
        data = self.metrics.get_metrics_data()
        found = 0.0
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        point_attributes = point.attributes or {}
                        if any(point_attributes.get(k) != v for k, v in attributes.items()):
                            continue
                        if isinstance(point, NumberDataPoint):
                            found += point.value
                        elif isinstance(point, HistogramDataPoint):
                            found += point.count
        return found
