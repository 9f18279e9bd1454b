"""Traces, metrics and logs that never carry prompt or completion text.

Traces: OpenTelemetry, one server span per request with a child span per pipeline stage and
GenAI semantic-convention attributes; exported over OTLP/HTTP when configured, to the
console (or a file) in development, else not at all. Metrics: Prometheus, in a registry of
their own, served on a separate listener and/or at ``/metrics`` behind a key. Logs: JSON
lines with the request id.

What may be recorded: model names, token counts, durations, statuses, per-type PII counts,
upstream names, engine slots. What never is: message content, completions, tool arguments,
PII values, API keys. Exceptions are logged by type and frame, not by message (a message can
quote request data).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.pii.entities import BUILTIN

if TYPE_CHECKING:
    from gateway.exchange import RequestRecord

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
tracer = trace.get_tracer("confidential-gateway")


# -- logs --------------------------------------------------------------------------------
class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["frames"] = [
                f"{frame.filename}:{frame.lineno}:{frame.name}"
                for frame in traceback.extract_tb(record.exc_info[2])[-8:]
            ]
        return json.dumps(entry, ensure_ascii=False)


class TextLogFormatter(logging.Formatter):
    """Plain lines; an exception as its type and frames only (its text may quote a request)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = self._line(record)
        if record.exc_info and record.exc_info[0] is not None:
            frames = traceback.extract_tb(record.exc_info[2])[-8:]
            line += f"\n  exception {record.exc_info[0].__name__}" + "".join(
                f"\n    at {frame.filename}:{frame.lineno}:{frame.name}" for frame in frames
            )
        return line

    def _line(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        return self.formatMessage(record)


def configure_logging(level: str, fmt: str, stream: IO[str] = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(TextLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO: noise.
    for chatty in ("httpx",):
        logging.getLogger(chatty).setLevel(logging.WARNING)


log = logging.getLogger("gateway.requests")


# -- traces ------------------------------------------------------------------------------
def configure_tracing(
    *,
    exporter: str,
    service_name: str,
    otlp_endpoint: str | None,
    console_file: Path | None,
    export_interval_ms: int,
) -> TracerProvider | None:
    if exporter == "none":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert otlp_endpoint is not None
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"),
                schedule_delay_millis=export_interval_ms,
            )
        )
    else:
        out = console_file.open("a") if console_file else sys.stdout
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
    trace.set_tracer_provider(provider)
    return provider


# The GenAI semantic conventions' operation names, by endpoint.
GENAI_OPERATIONS = {
    "chat": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


def genai_attributes(
    model: str, usage: Any, finish_reasons: Iterable[str], endpoint: str = "chat"
) -> dict[str, Any]:
    """GenAI semantic-convention attributes for a finished request."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": GENAI_OPERATIONS.get(endpoint, endpoint),
        "gen_ai.request.model": model,
    }
    if isinstance(usage, dict):
        attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
        attributes["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens") or 0)
    reasons = [r for r in finish_reasons if r]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    return attributes


# -- metrics -----------------------------------------------------------------------------
class EngineStatsCollector(Collector):
    """Engine slots, queue depth and restarts, from the gateway's latest engine polls."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, float]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        busy = GaugeMetricFamily(
            "gateway_engine_slots_busy", "Engine slots generating", labels=["engine"]
        )
        total = GaugeMetricFamily(
            "gateway_engine_slots", "Engine slots in total", labels=["engine"]
        )
        queue = GaugeMetricFamily(
            "gateway_engine_queue_depth", "Requests waiting for a slot", labels=["engine"]
        )
        restarts = GaugeMetricFamily(
            "gateway_engine_restarts", "Engine restarts since start", labels=["engine"]
        )
        for engine, values in sorted(self.stats.items()):
            busy.add_metric([engine], values.get("busy", 0))
            total.add_metric([engine], values.get("total", 0))
            queue.add_metric([engine], values.get("queue", 0))
            restarts.add_metric([engine], values.get("restarts", 0))
        yield from (busy, total, queue, restarts)


OTHER_LABEL = "other"


class GatewayMetrics:
    """Prometheus series whose labels only ever take configured values.

    A label value a client could choose (a model name it made up, an entity type) would be a
    new series per request: anything outside ``models`` / ``entity_types`` counts as "other".
    """

    def __init__(
        self, *, models: Iterable[str] = (), entity_types: Iterable[str] = BUILTIN
    ) -> None:
        self._models = frozenset(models)
        self._entity_types = frozenset(entity_types)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Requests by endpoint", ["model", "status", "endpoint"], registry=r
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Chat request duration",
            ["model"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["model"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.tokens = Counter("gateway_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.decode_rate = Histogram(
            "gateway_output_tokens_per_second",
            "Per-request output token rate",
            ["model"],
            registry=r,
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
        )
        self.pii = Counter("gateway_pii_entities", "PII values tokenized", ["type"], registry=r)
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Upstream failures", ["upstream"], registry=r
        )
        self.engines = EngineStatsCollector()
        r.register(self.engines)
        # Shared state (gateway/shared_state): 1 while Redis answers (always 1 for memory).
        self.shared_state_available = Gauge(
            "gateway_shared_state_available",
            "Whether the shared state store (Redis) answers this replica",
            registry=r,
        )
        self.shared_state_available.set(1)
        self.shared_state_fallbacks = Counter(
            "gateway_shared_state_fallbacks",
            "Operations served locally (or refused) because the shared state store did not "
            "answer, by component (limits, auth_guard, tokens, heartbeat)",
            ["component"],
            registry=r,
        )

    def observe_request(
        self,
        *,
        model: str,
        status: int,
        started: float,
        usage: Any,
        first_token_at: float | None,
        pii_counts: dict[str, int] | None,
        endpoint: str = "chat",
    ) -> None:
        elapsed = time.monotonic() - started
        model = model if model in self._models else OTHER_LABEL
        endpoint = endpoint if endpoint in GENAI_OPERATIONS else OTHER_LABEL
        status_label = str(status) if 100 <= status <= 599 else OTHER_LABEL
        self.requests.labels(model, status_label, endpoint).inc()
        self.duration.labels(model).observe(elapsed)
        if first_token_at is not None:
            self.ttft.labels(model).observe(first_token_at - started)
        if isinstance(usage, dict):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            self.tokens.labels(model, "prompt").inc(prompt)
            self.tokens.labels(model, "completion").inc(completion)
            if completion and elapsed > 0:
                self.decode_rate.labels(model).observe(completion / elapsed)
        for entity, count in (pii_counts or {}).items():
            self.pii.labels(entity if entity in self._entity_types else OTHER_LABEL).inc(count)


# -- one request's finish ----------------------------------------------------------------
def record_finish(
    metrics: GatewayMetrics, record: RequestRecord, status: int, error_code: str | None
) -> None:
    """Close the request's span, log its line and count it: names, numbers and types only."""
    exchange = record.exchange
    model = record.facts.model or "unknown"
    usage = exchange.usage if exchange else None
    pii_counts = exchange.pii.counts if exchange and exchange.pii else None
    span = record.span
    if span is not None:
        reasons = exchange.finish_reasons if exchange else ()
        span.set_attributes(genai_attributes(model, usage, reasons, record.endpoint))
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("gateway.request_id", record.facts.request_id)
        if error_code:
            span.set_attribute("gateway.error_code", error_code)
        if record.first_token_at is not None:
            ttft = round((record.first_token_at - record.started) * 1000, 3)
            span.set_attribute("gateway.ttft_ms", ttft)
        if exchange is not None and exchange.engine is not None:
            span.set_attribute("gateway.engine.queue_ms", exchange.engine.queue_ms)
            span.set_attribute("gateway.engine.slots", list(exchange.engine.slots))
        if exchange is not None and exchange.routed is not None:
            span.set_attribute("gateway.upstream", exchange.routed.upstream)
            span.set_attribute("gateway.upstream.in_guest", exchange.routed.in_guest)
        for entity, count in (pii_counts or {}).items():
            span.set_attribute(f"gateway.pii.{entity}", count)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        record.span = None
    log.info(
        f"{record.endpoint} request finished",
        extra={
            "fields": {
                "endpoint": record.endpoint,
                "model": model,
                "status": status,
                "error_code": error_code,
                "duration_ms": round((time.monotonic() - record.started) * 1000, 3),
                "prompt_tokens": (usage or {}).get("prompt_tokens"),
                "completion_tokens": (usage or {}).get("completion_tokens"),
                "upstream": exchange.routed.upstream if exchange and exchange.routed else None,
                "pii_counts": pii_counts,
            }
        },
    )
    metrics.observe_request(
        model=model,
        status=status,
        started=record.started,
        usage=usage,
        first_token_at=record.first_token_at,
        pii_counts=pii_counts,
        endpoint=record.endpoint,
    )
