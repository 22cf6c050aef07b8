"""Stub HTTP servers on 127.0.0.1 for tests and benchmarks.

`ChatStub` is a real threaded HTTP server that speaks the wattbench service's API (`GET /health`,
`POST /chat`, the /chat response schema of docs/architecture.md) and answers each request as a *behavior*
says: a normal answer, an HTTP error (500, 429 + Retry-After, ...), a slow answer, or a dropped connection.
It records every request it receives, so a test can count what was sent. Only the standard library is used,
so importing this is cheap.

    with ChatStub(script=[status(500), ok()]) as stub:
        ...  # POST {stub.url}/chat: first a 500, then an answer
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

ReplyKind = Literal["ok", "status", "drop", "slow"]


@dataclass(frozen=True)
class Reply:
    """What the stub does with one request."""

    kind: ReplyKind = "ok"
    status_code: int = 200
    detail: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def ok() -> Reply:
    """A normal /chat answer (`slow` delays one)."""
    return Reply("ok")


def status(code: int, detail: str = "stub error", retry_after: str | None = None) -> Reply:
    """An HTTP error `{"detail": detail}` with an optional Retry-After header."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply("status", status_code=code, detail=detail, headers=headers)


def drop() -> Reply:
    """Close the connection without sending any response."""
    return Reply("drop")


def slow(delay_s: float) -> Reply:
    """A normal answer that starts only after `delay_s` seconds."""
    return Reply("slow", delay_s=delay_s)


@dataclass(frozen=True)
class Received:
    """One request as the stub saw it."""

    t_s: float  # time.monotonic() when it arrived
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    reply: Reply
    t_end_s: float | None = None  # time.monotonic() when the answer was written (None: no answer)


class SmoothRateLimiter:
    """At most `per_minute` requests per minute, evenly spaced (GCRA with a burst of `burst`).

    `check()` admits a request (returns None) or returns the seconds until the next one would be admitted.
    """

    def __init__(
        self, per_minute: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = 60.0 / per_minute
        self.burst = burst
        self._clock = clock
        self._tat = 0.0  # theoretical arrival time of the next request
        self._lock = threading.Lock()

    def check(self) -> float | None:
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            allow_at = tat - (self.burst - 1) * self.interval_s
            if now < allow_at:
                return allow_at - now
            self._tat = tat + self.interval_s
            return None


def rate_limited(
    per_minute: float, burst: int = 1, *, with_ms: bool = True
) -> Callable[[int, dict[str, Any]], Reply]:
    """A behavior: answer while under `per_minute`, else 429 with Retry-After (integer seconds, rounded up)
    and, when with_ms, retry-after-ms (milliseconds, rounded up; the header OpenAI and Azure OpenAI send)."""
    limiter = SmoothRateLimiter(per_minute, burst)

    def behave(_index: int, _body: dict[str, Any]) -> Reply:
        wait_s = limiter.check()
        if wait_s is None:
            return ok()
        headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}
        if with_ms:
            headers["retry-after-ms"] = str(math.ceil(wait_s * 1000))
        return Reply("status", status_code=429, detail="rate limit exceeded; retry later", headers=headers)

    return behave


def chat_response(
    prompt: str,
    text: str,
    *,
    latency_s: float = 0.0,
    model: str = "stub/echo",
    model_params_b: float | None = 0.135,
    cost_usd: float | None = 0.0,
) -> dict[str, Any]:
    """A /chat response as docs/architecture.md specifies it, with word counts as token counts."""
    prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
    ttft_s = latency_s / 2
    return {
        "request_id": f"stub-{time.monotonic_ns()}",
        "model": model,
        "route": "Flash-Balanced",
        "route_reason": "stub",
        "temperature": 0.5,
        "text": text,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "token_source": "estimated",
        "ttft_s": ttft_s,
        "latency_s": latency_s,
        "tpot_s": (latency_s - ttft_s) / (completion_tokens - 1) if completion_tokens >= 2 else None,
        "tokens_per_s": completion_tokens / latency_s if latency_s > 0 else 0.0,
        "cost_usd": cost_usd,
        "created_at": "2026-01-01T00:00:00+00:00",
        "finish_reason": "stop",
        "measured_energy_kwh": None,
        "measured_energy_method": None,
        "model_params_b": model_params_b,
    }


Behavior = Callable[[int, dict[str, Any]], Reply]


class ChatStub:
    """A threaded HTTP server on 127.0.0.1 (free port) that plays the wattbench service.

    behavior: called with (index of the /chat request, its JSON body) and returns a Reply; or
    script: Replies used in order for the first /chat requests, then `ok()`.
    answers: prompt -> answer text (default: "stub answer to: <prompt>").
    token: when set, /chat wants `Authorization: Bearer <token>` and answers 401 otherwise.
    health: the JSON that GET /health answers (default: the service's answer when its model is ready).
    """

    def __init__(
        self,
        behavior: Behavior | None = None,
        *,
        script: Sequence[Reply] = (),
        answers: Mapping[str, str] | None = None,
        token: str | None = None,
        latency_s: float = 0.01,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        self._behavior = behavior
        self._script = list(script)
        self.answers = dict(answers or {})
        self.token = token
        self.latency_s = latency_s
        self.health_queries: list[str] = []  # the query string of each GET /health
        self.health = (
            dict(health)
            if health is not None
            else {
                "status": "ok",
                "model": "stub/echo",
                "ready": True,
                "detail": None,
                "auth_required": token is not None,
            }
        )
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._chat_count = 0
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> ChatStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
                return None

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/health":
                    stub.health_queries.append(url.query)
                    self._send_json(200, stub.health)
                else:
                    self._send_json(404, {"detail": f"no route {self.path}"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                body = json.loads(raw or b"{}")
                stub._handle_chat(self, body)

            def _send_json(
                self, code: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChatStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._url is not None, "start() the stub first"
        return self._url

    # -- what was received -----------------------------------------------------------------------------
    def chat_requests(self) -> list[Received]:
        """The /chat requests received so far, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.path == "/chat"]

    def served(self) -> list[Received]:
        """The /chat requests that got a 200 answer, in arrival order."""
        return [r for r in self.chat_requests() if r.reply.kind in ("ok", "slow") and r.t_end_s is not None]

    # -- request handling ------------------------------------------------------------------------------
    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            index = self._chat_count
            self._chat_count += 1
            if self._behavior is None:
                return self._script[index] if index < len(self._script) else ok()
        return self._behavior(index, body)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until no request is being answered (e.g. after its client was killed); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    return True
            time.sleep(0.005)
        return False

    def _handle_chat(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._handle_chat_counted(handler, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handle_chat_counted(self, handler: Any, body: dict[str, Any]) -> None:
        t_s = time.monotonic()
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if handler.path != "/chat":
            handler._send_json(404, {"detail": f"no route {handler.path}"})
            return
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            reply = status(401, "missing or wrong bearer token; set WATTBENCH_API_TOKEN")
        else:
            reply = self._next_reply(body)
        def record(t_end_s: float | None) -> int:
            with self._lock:
                self.received.append(Received(t_s, handler.path, body, headers, reply, t_end_s))
                return len(self.received) - 1

        self._answer(handler, reply, body, record)

    def _answer(
        self, handler: Any, reply: Reply, body: dict[str, Any], record: Callable[[float | None], int]
    ) -> None:
        """Record the request, then write the reply. The record (with the time the answer goes out) is made
        before the answer leaves: made after, a client could already see its answer, and send its next
        request, while the stub has not yet listed this one."""
        if reply.kind == "drop":
            record(None)
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.kind == "status":
            record(time.monotonic())
            handler._send_json(reply.status_code, {"detail": reply.detail}, reply.headers)
            return
        if reply.delay_s:
            time.sleep(reply.delay_s)
        prompt = str(body.get("prompt", ""))
        text = self.answers.get(prompt, f"stub answer to: {prompt}")
        payload = chat_response(
            prompt, text, latency_s=self.latency_s, model=str(body.get("model") or "stub/echo")
        )
        index = record(time.monotonic())
        try:
            handler._send_json(200, payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): no answer
            with self._lock:
                self.received[index] = replace(self.received[index], t_end_s=None)
