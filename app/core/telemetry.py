"""Seeing inside a running agent: OpenTelemetry traces, Prometheus metrics, and the log format.

Traces: when the standard OpenTelemetry variables name an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, OTLP over HTTP), every
client gets `temporalio.contrib.opentelemetry`'s plugin, so the workers built on those clients
trace too, and one trace follows a message from the chat's `send_message` through the workflow,
each activity and each Nexus operation into the other team's namespace. The plugin's interceptor
parents an Update handler's work under the span of the client that sent the Update (the older
`TracingInterceptor` parents it under the workflow's start, which would make one trace of a whole
conversation), and its replay-safe tracer provider never ends a span while a workflow replays, so
replays add no spans. With no endpoint, nothing is installed: no interceptor, no exporter, no
cost. Metrics: a worker whose `PROMETHEUS_BIND_ADDRESS` is `host:port` serves the SDK runtime's
metrics and the agent's own (recorded through the SDK's meters, see `app/agent/metrics.py`) at
`http://host:port/metrics`, named the Prometheus way (`_total`, `_seconds`). Logs: `LOG_FORMAT=json`
makes each record one JSON object, with the fields a record carries in `extra`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from opentelemetry import trace
from temporalio.plugin import SimplePlugin
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from app.core.config import load_env

METRICS_ADDRESS = "PROMETHEUS_BIND_ADDRESS"
TRACES_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

# Seconds: an LLM call or a turn takes from tens of milliseconds (a local model) to minutes.
DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
# US dollars per call: from a small model's short call to a large model's long one.
COST_BUCKETS = [0.00001, 0.0001, 0.001, 0.01, 0.1, 1]
BUCKETS = {
    "agent_turn_duration": DURATION_BUCKETS,
    "agent_llm_call_duration": DURATION_BUCKETS,
    "agent_llm_call_cost": COST_BUCKETS,
}

_tracer_provider: Any = None
_instruments: dict[Hashable, Any] = {}
_Instrument = TypeVar("_Instrument")


class TelemetrySettingError(ValueError):
    """A telemetry setting that cannot work; the message names the variable and the fix."""


def tracing_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported over OTLP."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in TRACES_ENDPOINTS)


def start_tracing(service_name: str, exporter: Any = None) -> bool:
    """Install this process's tracer provider, once; returns whether traces are recorded.

    Spans go to `exporter` when given (tests), else over OTLP/HTTP to the configured endpoint;
    with neither, nothing is installed. The first call in a process wins.
    """
    global _tracer_provider
    if _tracer_provider is not None:
        return True
    load_env()
    if exporter is None and not tracing_configured():
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from temporalio.contrib.opentelemetry import create_tracer_provider

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, name the service instead.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = create_tracer_provider(resource=Resource.create(named))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter reads the endpoint, headers and timeout from the standard variables.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer_provider = provider
    return True


def tracing_plugins() -> list[SimplePlugin]:
    """The plugins every client gets: the OpenTelemetry one once tracing has started."""
    if _tracer_provider is None:
        return []
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin

    return [OpenTelemetryPlugin(add_temporal_spans=True)]


def flush_traces(timeout_seconds: float = 5.0) -> None:
    """Send the spans still buffered (a worker ends with `os._exit`, which skips `atexit`)."""
    if _tracer_provider is not None:
        _tracer_provider.force_flush(int(timeout_seconds * 1000))


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits, or None when nothing is traced."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def cached_instrument(key: Hashable, create: Callable[[], _Instrument]) -> _Instrument:
    """The instrument `create` makes, made once per `key` (its meter, name and labels).

    Measured on this machine: creating an instrument and its label set costs about five times
    as much as recording on one made before, and a turn records about fifteen values.
    """
    found = _instruments.get(key)
    if found is None:
        found = _instruments[key] = create()
    return found


def metrics_runtime(env: Mapping[str, str] | None = None) -> Runtime | None:
    """The SDK runtime serving Prometheus metrics at `PROMETHEUS_BIND_ADDRESS`, or None if unset.

    Raises `TelemetrySettingError` for an address that is not `host:port` or is in use.
    """
    env = os.environ if env is None else env
    address = env.get(METRICS_ADDRESS, "").strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if host.lower() == "localhost":
        host = "127.0.0.1"  # the SDK takes an IP address, not a host name
    config = PrometheusConfig(
        bind_address=f"{host}:{port}",
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides=BUCKETS,
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config))
    except ValueError as err:
        raise TelemetrySettingError(
            f"{METRICS_ADDRESS}={address!r} cannot serve metrics ({err}); give a free "
            "IP:port such as 127.0.0.1:9464, or leave it unset"
        ) from None


def start_worker_telemetry(service_name: str) -> None:
    """For a worker program, before it connects: traces if configured, metrics if asked for."""
    load_env()
    start_tracing(service_name)
    runtime = metrics_runtime()
    if runtime is not None:
        Runtime.set_default(runtime, error_if_already_set=True)
        logging.getLogger(__name__).info(
            "Metrics: http://%s/metrics", os.environ[METRICS_ADDRESS].strip()
        )


# The attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_handler_formatter() -> logging.Formatter:
    """The formatter `LOG_FORMAT` asks for: `json`, or one line of text (the default)."""
    load_env()
    if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
