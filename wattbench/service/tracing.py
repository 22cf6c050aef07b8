"""Langfuse tracing of every model call, through LiteLLM's `langfuse_otel` callback.

With LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY set (and LANGFUSE_HOST for a self-hosted Langfuse),
`configure_tracing(settings)` registers LiteLLM's Langfuse OpenTelemetry logger: each LiteLLM call then
becomes one OTLP span (a Langfuse "generation") posted as protobuf to
`$LANGFUSE_HOST/api/public/otel/v1/traces`, carrying the model, the tokens, the cost, the temperature and
the metadata that app.py passes (request_id, route, temperature, trace_name, generation_name, tags).
With no keys it returns False, registers nothing, sends nothing and waits for nothing.

The span pipeline (TracerProvider -> BatchSpanProcessor -> OTLP/HTTP exporter) belongs to this module,
so that `flush_tracing()` / `shutdown_tracing()` can push what is buffered without waiting on a timer.
The keys travel only in the exporter's Authorization header: they are never printed, logged or returned.

`import litellm` is deferred to `configure_tracing`, and happens only when tracing is on.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wattbench import redact

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

#: Where Langfuse accepts OTLP/HTTP traces, relative to LANGFUSE_HOST (Langfuse docs, "OpenTelemetry").
OTLP_TRACES_PATH = "/api/public/otel/v1/traces"
#: Langfuse's v4 ingestion path; LiteLLM's langfuse_otel sends the same header.
INGESTION_VERSION_HEADER = ("x-langfuse-ingestion-version", "4")
#: Upper bound on one OTLP export (seconds): an unreachable Langfuse costs at most this per batch.
EXPORT_TIMEOUT_S = 5.0
#: Longest a finished span waits in the batch before export (OTel's default is 5 s; OTEL_BSP_SCHEDULE_DELAY in
#: milliseconds overrides it). Short, so that traces show up while a run goes on; app.py flushes at shutdown.
EXPORT_DELAY_S = 0.5
#: The OpenTelemetry service.name of the spans.
SERVICE_NAME = "wattbench"


class LangfuseSettings(Protocol):
    """The part of config.Settings that tracing reads."""

    langfuse_public_key: str | None
    langfuse_secret_key: Any  # pydantic SecretStr | None
    langfuse_host: str


@dataclass(frozen=True)
class TracingTarget:
    """Where spans go and the headers that authorise them. `repr` never shows the headers."""

    endpoint: str
    headers: dict[str, str] = field(repr=False)


@dataclass
class _ActiveTracing:
    provider: TracerProvider
    callback: object


# The one pipeline this process registered (None when tracing is off). Held so that flush and
# shutdown reach the BatchSpanProcessor that LiteLLM's logger writes into.
_active: _ActiveTracing | None = None


def _secret_value(secret: Any) -> str:
    """The plain value of a SecretStr, str or None ('' when unset)."""
    if secret is None:
        return ""
    getter = getattr(secret, "get_secret_value", None)
    return str(getter() if getter is not None else secret)


def traces_endpoint(host: str) -> str:
    """The OTLP traces URL for a Langfuse host ('cloud.langfuse.com' means https)."""
    host = host.strip()
    if not host.startswith(("http://", "https://")):
        host = f"https://{host}"
    return host.rstrip("/") + OTLP_TRACES_PATH


def authorization_header(public_key: str, secret_key: str) -> str:
    """HTTP Basic credentials, public key as user and secret key as password (Langfuse OTLP auth)."""
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    return f"Basic {token}"


def tracing_target(settings: LangfuseSettings) -> TracingTarget | None:
    """The Langfuse endpoint and auth headers, or None when either key is missing."""
    public_key = (settings.langfuse_public_key or "").strip()
    secret_key = _secret_value(settings.langfuse_secret_key).strip()
    if not public_key or not secret_key:
        return None
    headers = {
        "Authorization": authorization_header(public_key, secret_key),
        INGESTION_VERSION_HEADER[0]: INGESTION_VERSION_HEADER[1],
    }
    return TracingTarget(endpoint=traces_endpoint(settings.langfuse_host), headers=headers)


def _build_provider(target: TracingTarget) -> TracerProvider:
    """A TracerProvider that batches spans to the target over OTLP/HTTP (protobuf)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = ScrubbingExporter(OTLPSpanExporter(
        endpoint=target.endpoint, headers=dict(target.headers), timeout=EXPORT_TIMEOUT_S
    ))
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    # OpenTelemetry's own OTEL_BSP_SCHEDULE_DELAY (milliseconds), when set, wins over EXPORT_DELAY_S.
    delay_ms = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else int(EXPORT_DELAY_S * 1000)
    processor = BatchSpanProcessor(
        exporter,
        schedule_delay_millis=delay_ms,
        export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000),
    )
    provider.add_span_processor(processor)
    return provider


def scrub_span(span: Any) -> Any:
    """A copy of a finished span with every secret masked (redact.scrub) in its name, attributes, events
    (exception messages and stack traces included), links and status description."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link
    from opentelemetry.trace.status import Status

    def attrs(mapping: Any) -> dict[str, Any] | None:
        return None if mapping is None else {k: redact.scrub_value(v) for k, v in mapping.items()}

    status = span.status
    if status is not None and status.description:
        status = Status(status.status_code, redact.scrub(status.description))
    return ReadableSpan(
        name=redact.scrub(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attrs(span.attributes),
        events=[Event(e.name, attrs(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, attrs(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter:
    """A SpanExporter that masks secrets in every span before the wrapped exporter sends it: provider errors
    and tracebacks that LiteLLM records on a span can quote keys and Authorization headers."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def export(self, spans: Any) -> Any:
        return self._inner.export([scrub_span(s) for s in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _build_callback(target: TracingTarget, provider: TracerProvider) -> object:
    """LiteLLM's Langfuse OTel logger writing into our provider (it adds the Langfuse span attributes)."""
    from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger
    from litellm.integrations.opentelemetry import OpenTelemetryConfig

    # headers=None: the logger then uses the tracer of the provider passed in rather than building
    # its own exporter per credential set; the credentials live in our exporter only.
    config = OpenTelemetryConfig(exporter="otlp_http", endpoint=target.endpoint, headers=None)
    # Its constructor warns "Proxy Server is not installed. Skipping OpenTelemetry initialization." (LiteLLM's
    # proxy hook, irrelevant here), which reads as if tracing were off: keep that one quiet.
    litellm_logger = logging.getLogger("LiteLLM")
    level = litellm_logger.level
    litellm_logger.setLevel(logging.ERROR)
    try:
        return LangfuseOtelLogger(config=config, callback_name="langfuse_otel", tracer_provider=provider)
    finally:
        litellm_logger.setLevel(level)


def configure_tracing(settings: LangfuseSettings) -> bool:
    """Trace every LiteLLM call to Langfuse when both keys are set; True when tracing is on.

    Calling it again replaces the previous registration (no duplicate spans). With a key missing it
    turns off what an earlier call registered, registers nothing and returns False at once.
    """
    target = tracing_target(settings)
    if target is None:
        shutdown_tracing()
        return False

    import litellm

    shutdown_tracing()
    provider = _build_provider(target)
    callback = _build_callback(target, provider)
    litellm.callbacks = [*litellm.callbacks, callback]
    global _active
    _active = _ActiveTracing(provider=provider, callback=callback)
    logger.info("tracing: every model call is traced to Langfuse at %s", target.endpoint)
    return True


def tracing_enabled() -> bool:
    """Whether configure_tracing registered a Langfuse pipeline in this process."""
    return _active is not None


async def _drain_spawned_logging_tasks(timeout_s: float) -> None:
    """Wait for the tasks LiteLLM spawned to enqueue its logging callbacks (LiteLLM >= 1.8x keeps them in
    `litellm.responses.streaming_iterator`; older releases enqueue directly, and there is nothing to wait for)."""
    try:
        from litellm.responses.streaming_iterator import drain_logging_tasks
    except ImportError:
        await asyncio.sleep(0)
        return
    await drain_logging_tasks(timeout=timeout_s)


async def flush_tracing(timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
    """Finish LiteLLM's pending logging callbacks, then export every buffered span.

    Returns True when everything was exported within `timeout_s` (or tracing is off).
    """
    if _active is None:
        return True
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    try:
        # acompletion returns before its success callback is queued: LiteLLM spawns a task that enqueues it on
        # the logging worker (whose queue does not exist before the first one). Wait for those tasks first,
        # or the worker's flush finds nothing to wait for and the span is made after the export.
        await asyncio.wait_for(_drain_spawned_logging_tasks(timeout_s), timeout=timeout_s)
        await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), timeout=timeout_s)
    except TimeoutError:
        logger.warning("tracing: LiteLLM's logging callbacks did not finish within %.1f s", timeout_s)
        return False
    provider = _active.provider
    return await asyncio.to_thread(provider.force_flush, int(timeout_s * 1000))


def shutdown_tracing() -> None:
    """Export what is buffered, stop the exporter and unregister the callback (no-op when off)."""
    global _active
    if _active is None:
        return
    active, _active = _active, None
    import litellm

    litellm.callbacks = [cb for cb in litellm.callbacks if cb is not active.callback]
    active.provider.shutdown()
