"""Where requests are timed: one attempt of one request, sent to the service (/chat) or directly to an
OpenAI-compatible server (/chat/completions), with perf_counter timestamps taken as each chunk's bytes
arrive and the events parsed only after the stream has ended (so parsing never delays a timestamp).

Both transports return an `Attempt`: what the answer means for the request (served, rate-limited, retry, give
up), the answer as a /chat-shaped dict, and what the client itself saw (ttft_s, latency_s, inter-chunk gap).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from wattbench.redact import short, shown_url
from wattbench.protocol.metrics import content_timing, timing_fields
from wattbench.protocol.ratelimit import retry_after_s
from wattbench.protocol.openai_stream import StreamError, StreamReader, UpstreamError
from wattbench.protocol.sse import EventTooLarge, event_fields, sse_events
from wattbench.workloads.sources import output_length_fields

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import httpx

    from wattbench.loadgen.plan import WorkItem


PATH_SERVICE = "service"


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


async def _timed_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float
) -> tuple[float, float, int, Mapping[str, str], str, list[tuple[float, bytes]]]:
    """POST and read the answer's bytes as they arrive: (epoch at send, perf_counter at send, status, headers,
    content type, [(perf_counter at arrival, bytes)])."""
    started_epoch_s, t0 = time.time(), time.perf_counter()
    chunks: list[tuple[float, bytes]] = []
    perf = time.perf_counter
    async with client.stream("POST", url, json=body, headers=headers, timeout=timeout_s) as resp:
        async for data in resp.aiter_raw():
            chunks.append((perf(), data))
        if not chunks:
            chunks.append((perf(), b""))
        return started_epoch_s, t0, resp.status_code, resp.headers, resp.headers.get("content-type", ""), chunks


def transport_failure(exc: Exception, base_url: str, timeout_s: float) -> Attempt:
    """An attempt that got no HTTP answer: timed out, refused, or dropped."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return Attempt("transient", error=f"timed out after {timeout_s:g} s ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return Attempt("connect", error=f"cannot connect to {shown_url(base_url)} ({exc})")
    return Attempt("transient", error=f"connection dropped ({type(exc).__name__}: {exc})")


class ServiceTransport:
    """POST <service>/chat. With stream=True it asks for server-sent events (`"stream": true`): the client
    then times the first token and the last byte itself; a JSON answer (an older service) is still read."""

    path = PATH_SERVICE

    def __init__(self, base_url: str, *, token: str | None, model: str | None, stream: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.model = model
        self.stream = stream

    async def send(self, client: httpx.AsyncClient, item: WorkItem, request_id: str, timeout_s: float) -> Attempt:
        import httpx

        body: dict[str, Any] = {"prompt": item.spec.prompt}
        if item.spec.max_tokens:  # /chat takes it as a cap (the service path cannot ask for more)
            body["max_tokens"] = item.spec.max_tokens
        if self.model:
            body["model"] = self.model
        if self.stream:
            body["stream"] = True
        headers = {"X-Request-ID": request_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        t0 = time.perf_counter()
        started_epoch_s = time.time()
        try:
            started_epoch_s, t0, status, resp_headers, ctype, chunks = await _timed_stream(
                client, f"{self.base_url}/chat", body, headers, timeout_s
            )
        except httpx.TransportError as exc:
            attempt = transport_failure(exc, self.base_url, timeout_s)
            attempt.started_epoch_s, attempt.elapsed_s = started_epoch_s, time.perf_counter() - t0
            return attempt
        t_end = chunks[-1][0]
        if status == 200 and ctype.startswith("text/event-stream"):
            attempt = self._from_events(t0, t_end, chunks)
        else:
            attempt = classify_response(status, resp_headers, b"".join(d for _, d in chunks))
            attempt.elapsed_s = t_end - t0
        attempt.started_epoch_s = started_epoch_s
        return attempt

    @staticmethod
    def _from_events(t0: float, t_end: float, chunks: list[tuple[float, bytes]]) -> Attempt:
        times: list[float] = []
        result: dict[str, Any] | None = None
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
            elif data and data != b'{"text":""}':
                times.append(t)
        if not isinstance(result, dict) or "text" not in result:
            return Attempt("transient", 200, "the service's event stream ended without a result event",
                           elapsed_s=t_end - t0)
        ttft, latency, itl = content_timing(t0, times, t_end)
        return Attempt("ok", 200, response=result, elapsed_s=latency, ttft_s=ttft, itl_s=itl)


class OpenAITransport:
    """The direct path: POST <base_url>/chat/completions (OpenAI-compatible streaming) to the server under
    test, with `stream_options.include_usage` so token counts are the server's.

    It keeps its own aiohttp session (a pool of `connections`, made on the first send in the running event
    loop; `aclose` closes it): aiohttp reads a streamed chunk with several times less CPU than httpx, which
    is what keeps the client off the measured path at high concurrency (benchmarks/bench_load.py). The
    httpx client BatchProcessor passes in is not used."""

    path = PATH_DIRECT

    def __init__(self, base_url: str, *, model: str, api_key: str | None = None, max_tokens: int | None = None,
                 connections: int = 0, output_enforce: str = "max-tokens"):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.max_tokens = max_tokens
        self.connections = connections  # 0: as many as requests in flight
        self.output_enforce = output_enforce  # how a prompt's max_tokens is asked for (workloads.py)
        self._session: Any = None
        import aiohttp  # ~0.2 s: paid here, before any request is timed, and only by the direct path

        self._aiohttp = aiohttp

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self, timeout_s: float) -> Any:
        aiohttp = self._aiohttp
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, force_close=False),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            )
        return self._session

    async def send(self, client: Any, item: WorkItem, request_id: str, timeout_s: float) -> Attempt:
        aiohttp = self._aiohttp
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": item.spec.prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        body.update(output_length_fields(item.spec.max_tokens, self.output_enforce))
        headers = {"X-Request-ID": request_id, "Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode()
        session = self._get_session(timeout_s)
        perf = time.perf_counter
        chunks: list[tuple[float, bytes]] = []
        started_epoch_s, t0 = time.time(), perf()
        try:
            async with session.post(f"{self.base_url}/chat/completions", data=data, headers=headers,
                                    allow_redirects=False) as resp:  # another server is not the one measured
                async for piece in resp.content.iter_any():
                    chunks.append((perf(), piece))
                status, resp_headers = resp.status, resp.headers
                ctype = resp.headers.get("Content-Type", "")
        except TimeoutError:
            return Attempt("transient", error=f"timed out after {timeout_s:g} s", started_epoch_s=started_epoch_s,
                           elapsed_s=perf() - t0)
        except aiohttp.ClientConnectorError as exc:
            return Attempt("connect", error=f"cannot connect to {shown_url(self.base_url)} ({exc})",
                           started_epoch_s=started_epoch_s, elapsed_s=perf() - t0)
        except aiohttp.ClientError as exc:
            return Attempt("transient", error=f"connection dropped ({type(exc).__name__}: {short(str(exc))})",
                           started_epoch_s=started_epoch_s, elapsed_s=perf() - t0)
        if not chunks:
            chunks.append((perf(), b""))
        t_end = chunks[-1][0]
        if 300 <= status < 400:
            where = shown_url(resp_headers.get("Location", "")) or "nowhere"
            attempt = Attempt("fatal", status, f"the server redirected to {where} (HTTP {status}); redirects are not "
                              "followed (the server measured must be the one named): give --base-url its address",
                              elapsed_s=t_end - t0)
        elif status != 200:
            attempt = classify_error(status, error_detail(b"".join(d for _, d in chunks)),
                                     retry_after_s(resp_headers), DIRECT_AUTH_HINT)
            attempt.elapsed_s = t_end - t0
        elif not ctype.startswith("text/event-stream"):
            attempt = Attempt("fatal", 200, f"the server answered 200 with {ctype or 'no content type'}, not an "
                              "event stream (does it stream chat completions? check --base-url)", elapsed_s=t_end - t0)
        else:
            attempt = self._from_events(t0, t_end, chunks)
        attempt.started_epoch_s = started_epoch_s
        return attempt

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
