"""Where requests are timed: one attempt of one request, sent to the service (/chat) or directly to an
OpenAI-compatible server (/chat/completions), with perf_counter timestamps taken as each chunk's bytes
arrive and the events parsed only after the stream has ended (so parsing never delays a timestamp). Both
paths send with the same aiohttp code (_StreamingPost) and read events with protocol/.

Both transports return an `Attempt`: what the answer means for the request (served, rate-limited, retry, give
up), the answer as a /chat-shaped dict, and what the client itself saw (ttft_s, latency_s, inter-chunk gap).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp

from wattbench.redact import short, shown_url
from wattbench.protocol.metrics import content_timing, timing_fields
from wattbench.protocol.ratelimit import retry_after_s
from wattbench.protocol.openai_stream import StreamError, StreamReader, UpstreamError
from wattbench.protocol.sse import EventTooLarge, event_fields, sse_events
from wattbench.workloads.sources import output_length_fields

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from wattbench.loadgen.plan import WorkItem


PATH_SERVICE = "service"

#: The header that carries a request's readable id, `<run id>/<request id>` (warm-ups: `warmup-<n>`).
REQUEST_KEY_HEADER = "X-Wattbench-Request"
#: The namespace of the UUIDs sent as X-Request-ID (uuid5 of the readable id).
REQUEST_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://wattbench.invalid/request")


def request_headers(request_id: str) -> dict[str, str]:
    """The headers that name one request: X-Request-ID is a UUID (servers built on starlette-context, such as
    llama-cpp-python's, answer 400 to any other form), the same for every attempt and after a resume (uuid5 of
    the readable id, which goes in X-Wattbench-Request to find the request in a server's logs)."""
    return {"X-Request-ID": str(uuid.uuid5(REQUEST_ID_NAMESPACE, request_id)), REQUEST_KEY_HEADER: request_id,
            "Content-Type": "application/json"}


PATH_DIRECT = "direct"


@dataclass
class Attempt:
    kind: Literal["ok", "rate_limited", "transient", "connect", "auth", "fatal"]
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    response: dict[str, Any] | None = None
    started_epoch_s: float = 0.0
    elapsed_s: float = 0.0  # send to last byte, seen by the client
    ttft_s: float | None = None  # send to the first non-empty content chunk, seen by the client
    send_wait_s: float = 0.0  # the client's own time before the request's bytes went out (not in the timings)
    itl_s: float | None = None  # mean gap between content chunks after the first, seen by the client


def classify_response(status_code: int, headers: Mapping[str, str], content: bytes) -> Attempt:
    """What one HTTP answer from /chat means for the request: served, rate-limited, retry, or give up."""
    if status_code == 200:
        try:
            payload = json.loads(content)
        except ValueError:
            return Attempt("fatal", 200, "the service answered 200 with a body that is not JSON")
        if not isinstance(payload, dict) or "text" not in payload:
            return Attempt("fatal", 200, 'the service answered 200 without a "text" field (not a /chat answer)')
        return Attempt("ok", 200, response=payload)
    return classify_error(status_code, error_detail(content), retry_after_s(headers))


SERVICE_AUTH_HINT = "the service refused the token: set WATTBENCH_API_TOKEN or pass --token"


DIRECT_AUTH_HINT = "the server refused the key: pass --api-key or set OPENAI_API_KEY"


def classify_error(
    status_code: int, detail: str, retry_after_s: float | None = None, auth_hint: str = SERVICE_AUTH_HINT
) -> Attempt:
    """An HTTP error status (or one the service reported inside its event stream)."""
    error = f"HTTP {status_code}: {detail}"
    if status_code == 429:
        return Attempt("rate_limited", 429, error, retry_after_s=retry_after_s)
    if status_code in (401, 403):
        return Attempt("auth", status_code, f"{error} ({auth_hint})")
    if status_code >= 500 or status_code == 408:
        return Attempt("transient", status_code, error, retry_after_s=retry_after_s)
    return Attempt("fatal", status_code, error)


def error_detail(content: bytes) -> str:
    try:
        payload = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:300] or "(empty body)"
    if isinstance(payload, dict) and "detail" in payload:
        return str(payload["detail"])[:300]
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):  # OpenAI's error shape
        return str(payload["error"].get("message") or payload["error"])[:300]
    return json.dumps(payload)[:300]


#: Seconds an idle connection is kept for reuse: below the keep-alive timeout of common servers (uvicorn's
#: default 5 s, node's 5 s), so the client drops an idle connection before the server closes it; reusing one the
#: server is closing at that moment is a dropped connection (issue 10), retried all the same (transient).
KEEPALIVE_EXPIRY_S = 2.0


class Transport(Protocol):
    """How one attempt of one request is sent and timed (BatchProcessor's seam). A transport owns its
    connection pool: made in the running event loop on the first send, closed by `aclose`."""

    path: str
    base_url: str  # the target, without a trailing slash
    model: str | None  # the model asked for (None: the service's default)

    async def send(self, item: WorkItem, request_id: str, timeout_s: float) -> Attempt: ...

    async def aclose(self) -> None: ...


@dataclass
class _Answer:
    """An HTTP answer read to its end: perf_counter at send, status, headers, content type and the body as
    [(perf_counter at arrival, bytes)] (never empty: a body-less answer is one empty piece at its end)."""

    t0: float  # when the request's last byte was handed to the socket (the timings start here)
    status: int
    headers: Mapping[str, str]
    ctype: str
    chunks: list[tuple[float, bytes]]
    send_wait_s: float = 0.0  # from the call to that moment: connection, scheduling in this event loop

    @property
    def t_end(self) -> float:
        return self.chunks[-1][0]

    def body(self) -> bytes:
        return b"".join(d for _, d in self.chunks)


async def _on_request_sent(session: Any, context: Any, params: Any) -> None:
    """aiohttp's request-chunk-sent signal, awaited just before the bytes are handed to the socket: the time
    the request left this client, in the request's own trace context (a dict)."""
    sent = context.trace_request_ctx
    if sent is not None:
        sent["t"] = time.perf_counter()


class _StreamingPost:
    """What both transports share: an aiohttp session (one pool per event loop, `connections` at most, 0: as
    many as requests in flight; idle connections dropped after KEEPALIVE_EXPIRY_S), and one POST whose
    answer is read as its bytes arrive, each piece stamped with perf_counter before anything parses it.
    aiohttp reads a streamed chunk with several times less CPU than httpx (benchmarks/bench_load.py).

    The timings start when the request's bytes are handed to the socket, not when `send` is called: in between
    is this client's own work (a new connection, aiohttp's steps, each a turn of an event loop that may be busy
    with other streams: 12-13 ms on average, p90 22-26 ms, at 64 streams in one process on 2 cores, against
    about 1 ms for a raw socket). That
    time is the client's, not the server's; it is kept apart as `send_wait_s`."""

    def __init__(self, base_url: str, connections: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_chunk_sent.append(_on_request_sent)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=KEEPALIVE_EXPIRY_S),
                auto_decompress=True, trace_configs=[trace],
            )
        return self._session

    async def _post(self, url: str, data: bytes, headers: dict[str, str], timeout_s: float) -> _Answer | Attempt:
        """The answer, or a failed Attempt when none came (timed out, refused, dropped); `started_epoch_s`
        is set on either by the caller."""
        session = self._client()
        perf = time.perf_counter
        chunks: list[tuple[float, bytes]] = []
        sent: dict[str, float] = {}
        called = perf()
        try:
            async with session.post(url, data=data, headers=headers, allow_redirects=False,  # another server
                                    timeout=aiohttp.ClientTimeout(total=timeout_s),  # is not the one measured
                                    trace_request_ctx=sent) as resp:
                async for piece in resp.content.iter_any():
                    chunks.append((perf(), piece))
                status, resp_headers = resp.status, resp.headers
        except TimeoutError:
            return Attempt("transient", error=f"timed out after {timeout_s:g} s", elapsed_s=perf() - called)
        except aiohttp.ClientConnectorError as exc:
            return Attempt("connect", error=f"cannot connect to {shown_url(self.base_url)} ({exc})",
                           elapsed_s=perf() - called)
        except aiohttp.ClientError as exc:
            return Attempt("transient", error=f"connection dropped ({type(exc).__name__}: {short(str(exc))})",
                           elapsed_s=perf() - called)
        if not chunks:
            chunks.append((perf(), b""))
        t0 = sent.get("t", called)
        return _Answer(t0, status, resp_headers, resp_headers.get("Content-Type", ""), chunks, t0 - called)


def _stamped(attempt: Attempt, answer: _Answer | Attempt, started_epoch_s: float) -> Attempt:
    """The attempt with when it was sent (epoch) and, when an answer came, the client's own wait before it."""
    if isinstance(answer, _Answer):
        attempt.send_wait_s = answer.send_wait_s
    attempt.started_epoch_s = started_epoch_s
    return attempt


class ServiceTransport(_StreamingPost):
    """POST <service>/chat. With stream=True it asks for server-sent events (`"stream": true`): the client
    then times the first token and the last byte itself; a JSON answer (an older service) is still read.

    The events are the service's own (`data: {"text": ...}`, the LiteLLM path) or an OpenAI-compatible
    upstream's chunks forwarded as they came (the pass-through), then `event: result` or `event: error`."""

    path = PATH_SERVICE

    def __init__(self, base_url: str, *, token: str | None = None, model: str | None = None, stream: bool = True,
                 connections: int = 0) -> None:
        super().__init__(base_url, connections)
        self._token = token
        self.model = model
        self.stream = stream

    async def send(self, item: WorkItem, request_id: str, timeout_s: float) -> Attempt:
        body: dict[str, Any] = {"prompt": item.spec.prompt}
        if item.spec.max_tokens:  # /chat takes it as a cap (the service path cannot ask for more)
            body["max_tokens"] = item.spec.max_tokens
        if self.model:
            body["model"] = self.model
        if self.stream:
            body["stream"] = True
        headers = request_headers(request_id)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started_epoch_s = time.time()
        answer = await self._post(f"{self.base_url}/chat", json.dumps(body).encode(), headers, timeout_s)
        if isinstance(answer, Attempt):
            attempt = answer
        elif answer.status == 200 and answer.ctype.startswith("text/event-stream"):
            attempt = service_events_attempt(answer.t0, answer.t_end, answer.chunks)
        else:
            attempt = classify_response(answer.status, answer.headers, answer.body())
            attempt.elapsed_s = answer.t_end - answer.t0
        return _stamped(attempt, answer, started_epoch_s)


def service_events_attempt(t0: float, t_end: float, chunks: list[tuple[float, bytes]]) -> Attempt:
    """The Attempt of a streamed /chat answer: content times from the text events (or the forwarded upstream
    chunks that carry content), the answer from `event: result`, or the error of `event: error`."""
    times: list[float] = []
    result: dict[str, Any] | None = None
    reader = StreamReader()
    for t, event in sse_events(chunks):
        name, data = event_fields(event)
        if name == "result":
            result = json.loads(data)
        elif name == "error":
            err = json.loads(data)
            retry = {"retry-after": str(err.get("retry_after") or ""),
                     "retry-after-ms": str(err.get("retry_after_ms") or "")}  # ms: the provider's precision
            attempt = classify_error(int(err.get("status_code") or 502), str(err.get("detail")),
                                     retry_after_s(retry))
            attempt.elapsed_s = t_end - t0
            return attempt
        elif data.startswith(b'{"text"'):  # the service's own text event
            if data != b'{"text":""}':
                times.append(t)
        elif data:  # an upstream's chunk, forwarded: content or not (role, usage, [DONE])
            try:
                if reader.read(data):
                    times.append(t)
            except (StreamError, UpstreamError):
                pass  # the service judged the stream: its result or error event says what it was
    if not isinstance(result, dict) or "text" not in result:
        return Attempt("transient", 200, "the service's event stream ended without a result event",
                       elapsed_s=t_end - t0)
    ttft, latency, itl = content_timing(t0, times, t_end)
    return Attempt("ok", 200, response=result, elapsed_s=latency, ttft_s=ttft, itl_s=itl)


class OpenAITransport(_StreamingPost):
    """The direct path: POST <base_url>/chat/completions (OpenAI-compatible streaming) to the server under
    test, with `stream_options.include_usage` so token counts are the server's."""

    path = PATH_DIRECT

    def __init__(self, base_url: str, *, model: str, api_key: str | None = None, max_tokens: int | None = None,
                 connections: int = 0, output_enforce: str = "max-tokens"):
        super().__init__(base_url, connections)
        self.model = model
        self._api_key = api_key
        self.max_tokens = max_tokens
        self.output_enforce = output_enforce  # how a prompt's max_tokens is asked for (workloads.py)

    async def send(self, item: WorkItem, request_id: str, timeout_s: float) -> Attempt:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": item.spec.prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        body.update(output_length_fields(item.spec.max_tokens, self.output_enforce))
        headers = request_headers(request_id)
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        started_epoch_s = time.time()
        answer = await self._post(f"{self.base_url}/chat/completions", json.dumps(body).encode(), headers,
                                  timeout_s)
        if isinstance(answer, Attempt):
            attempt = answer
        elif 300 <= answer.status < 400:
            where = shown_url(answer.headers.get("Location", "")) or "nowhere"
            attempt = Attempt("fatal", answer.status, f"the server redirected to {where} (HTTP {answer.status}); "
                              "redirects are not followed (the server measured must be the one named): give "
                              "--base-url its address", elapsed_s=answer.t_end - answer.t0)
        elif answer.status != 200:
            attempt = classify_error(answer.status, error_detail(answer.body()), retry_after_s(answer.headers),
                                     DIRECT_AUTH_HINT)
            attempt.elapsed_s = answer.t_end - answer.t0
        elif not answer.ctype.startswith("text/event-stream"):
            attempt = Attempt("fatal", 200, f"the server answered 200 with {answer.ctype or 'no content type'}, "
                              "not an event stream (does it stream chat completions? check --base-url)",
                              elapsed_s=answer.t_end - answer.t0)
        else:
            attempt = self._from_events(answer.t0, answer.t_end, answer.chunks)
        return _stamped(attempt, answer, started_epoch_s)

    def _from_events(self, t0: float, t_end: float, chunks: list[tuple[float, bytes]]) -> Attempt:
        times: list[float] = []
        parts: list[str] = []
        reader = StreamReader()
        try:
            for t, event in sse_events(chunks):
                text = reader.read(event_fields(event)[1])
                if text:
                    times.append(t)
                    parts.append(text)
        except UpstreamError as exc:
            attempt = classify_error(exc.code or 502, short(str(exc)), auth_hint=DIRECT_AUTH_HINT)
            attempt.elapsed_s = t_end - t0
            return attempt
        except (StreamError, EventTooLarge) as exc:
            return Attempt("fatal", 200, f"the server broke the streaming protocol: {short(str(exc))}",
                           elapsed_s=t_end - t0)
        if not reader.finished:
            return Attempt("transient", 200, "the stream ended before it finished (no finish reason, no [DONE])",
                           elapsed_s=t_end - t0)
        ttft, latency, itl = content_timing(t0, times, t_end)
        if reader.completion_tokens is not None:
            prompt_tokens, completion_tokens = reader.prompt_tokens or 0, reader.completion_tokens
            source = "provider"
        else:  # no usage from the server: one token per content chunk, the usual streaming granularity
            prompt_tokens, completion_tokens, source = 0, len(times), "estimated"
        response = {
            "model": reader.model or self.model, "text": "".join(parts), "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "token_source": source, "cost_usd": None, "finish_reason": reader.finish_reason,
            **timing_fields(ttft, latency, completion_tokens),
        }
        return Attempt("ok", 200, response=response, elapsed_s=latency, ttft_s=ttft, itl_s=itl)
