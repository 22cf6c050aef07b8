"""A tiny OTLP/HTTP trace receiver on 127.0.0.1, standing in for Langfuse in tests.

It accepts POST /api/public/otel/v1/traces (protobuf ExportTraceServiceRequest, gzip or not), answers 200 with
an empty ExportTraceServiceResponse, and keeps every decoded span with its attributes as plain Python values.

    with OtlpReceiver() as receiver:
        settings = Settings(langfuse_host=receiver.url, ...)
        ...
        receiver.spans()  # [Span(name=..., attributes={...}), ...]
"""
from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACES_PATH = "/api/public/otel/v1/traces"


@dataclass
class Span:
    name: str
    attributes: dict[str, Any]
    trace_id: str


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


def _any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def decode_spans(body: bytes) -> list[Span]:
    """Every span of an ExportTraceServiceRequest body."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    return [
        Span(name=span.name, attributes={a.key: _any_value(a.value) for a in span.attributes},
             trace_id=span.trace_id.hex())
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


@dataclass
class OtlpReceiver:
    """The receiver; `url` is the Langfuse host to configure (http://127.0.0.1:PORT)."""

    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = 200 if self.path == TRACES_PATH else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="otlp-receiver")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def spans(self) -> list[Span]:
        """The spans of every request received on the traces path, in arrival order."""
        bodies = [item.body for item in self.received if item.path == TRACES_PATH]
        return [span for body in bodies for span in decode_spans(body)]

    def generations(self) -> list[Span]:
        """The spans that Langfuse shows as generations (one per model call)."""
        return [s for s in self.spans() if s.attributes.get("langfuse.observation.type") == "generation"]
