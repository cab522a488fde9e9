"""Optional OpenTelemetry tracing: a tracer provider is installed only when the OTEL_* variables
ask for one (FastAPI then opens the spans itself).
"""

import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

SERVICE_NAME = "employee-records-api"
EXPORTERS = ("otlp", "console")


def requested_exporter(env: Mapping[str, str] = os.environ) -> str | None:
    """The span exporter the environment asks for, or None when tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter if exporter != "none" else None
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(env.get(name) for name in endpoints) else None


def configure_tracing() -> object | None:
    """Install the global tracer provider when asked; returns it (to shut down) or None."""
    exporter_name = requested_exporter()
    if exporter_name is None:
        return None
    if exporter_name not in EXPORTERS:
        logger.error("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console)", exporter_name)
        return None
    # Imported only when tracing is on: the SDK and the exporter stay off the default path.
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return None  # already installed in this process (another app instance, a wrapper)
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger.info("tracing on: spans go to the %s exporter", exporter_name)
    return provider


def shutdown_tracing(provider: object | None) -> None:
    """Flush the spans still queued (the batch processor sends every few seconds)."""
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()
