"""A hostile OpenAI-compatible provider on 127.0.0.1: it echoes every header it receives (the Authorization
header with the API key included) in whatever it answers, and fails in the way the last user message asks:

  "fail 401"      401 invalid key, headers echoed in the error message
  "fail 429"      429 (Retry-After: 1, retry-after-ms: 40), headers echoed; the next request with the same
                  prompt is answered
  "fail 500"      500 with the headers and a fake traceback quoting them
  "fail timeout"  waits `slow_s` seconds before answering
  "fail drop"     closes the connection without an answer
  anything else   streams an answer whose text echoes the headers

    with EchoProvider() as provider:
        provider.url  # http://127.0.0.1:PORT/v1
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: EchoProvider._Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _echo(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.headers.items())

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        stub = self.server.stub
        messages = request.get("messages") or [{}]
        prompt = str(messages[-1].get("content", ""))
        with stub.lock:
            stub.requests.append({"prompt": prompt, "headers": dict(self.headers.items())})
            seen = stub.seen.get(prompt, 0)
            stub.seen[prompt] = seen + 1
        echo = self._echo()
        if "fail 401" in prompt:
            self._json(401, {"error": {"message": f"Incorrect API key provided. You sent: {echo}",
                                       "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif "fail 429" in prompt and seen == 0:
            self._json(429, {"error": {"message": f"Rate limit reached. Request headers: {echo}",
                                       "type": "rate_limit"}}, {"Retry-After": "1", "retry-after-ms": "40"})
        elif "fail 500" in prompt:
            trace = f'Traceback (most recent call last):\n  File "proxy.py", line 1\nKeyError: {echo!r}'
            self._json(500, {"error": {"message": f"internal error with headers {echo}\n{trace}",
                                       "type": "server_error"}})
        elif "fail timeout" in prompt:
            time.sleep(stub.slow_s)
            self._json(200, {"choices": []})
        elif "fail drop" in prompt:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._stream(request, f"You sent: {echo}")

    def _stream(self, request: dict, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0, "model": request["model"]}
        chunk = dict(base, choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        done = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        usage = dict(base, choices=[], usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
        for event in (chunk, done, usage):
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class EchoProvider:
    """Context manager: `with EchoProvider() as p: p.url` -> http://127.0.0.1:PORT/v1"""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        stub: EchoProvider

    def __init__(self, slow_s: float = 3.0) -> None:
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self._server = self._Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> EchoProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
