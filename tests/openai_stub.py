"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: its behaviour is chosen by the model name.

  ok          streams "Hello from the stub" in 4 chunks, then usage (11 prompt, 4 completion tokens)
  ratelimit   429 with Retry-After: 7
  badkey      401 invalid API key
  slow        waits `slow_s` seconds before answering (to trigger the client's timeout)
  boom        500 internal error
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: "OpenAIStub._Server"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self.server.stub.requests.append({"path": self.path, "body": request,
                                          "authorization": self.headers.get("Authorization")})
        model = request.get("model", "")
        if model == "ratelimit":
            self._json(429, {"error": {"message": "Rate limit reached for requests", "type": "rate_limit"}},
                       {"Retry-After": "7"})
        elif model == "badkey":
            self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
        elif model == "boom":
            self._json(500, {"error": {"message": "internal error", "type": "server_error"}})
        elif model == "slow":
            time.sleep(self.server.stub.slow_s)
            self._json(200, {"choices": []})
        else:
            self._stream(request)

    def _stream(self, request: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": request["model"]}
        for piece in ["Hello", " from", " the", " stub"]:
            chunk = dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        done = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        self.wfile.write(f"data: {json.dumps(done)}\n\n".encode())
        usage = dict(base, choices=[], usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


class OpenAIStub:
    """Context manager: `with OpenAIStub() as stub: stub.url` -> http://127.0.0.1:PORT/v1"""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        stub: "OpenAIStub"

    def __init__(self, slow_s: float = 3.0):
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self._server = self._Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "OpenAIStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
