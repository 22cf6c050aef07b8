"""A fast mock OpenAI-compatible server with injected delays, for tests and benchmarks/bench_load.py.

POST /v1/chat/completions (stream or not) answers `tokens` tokens: the first after `ttft_s`, then one every
`itl_s`, each in its own server-sent event, then a usage event and `data: [DONE]`. Like vLLM it honours
`max_tokens` (a cap on the answer), `min_tokens` (a floor) and `ignore_eos` (answer exactly max_tokens), and
counts the prompt with `count_prompt` when given (else 8 tokens). GET /v1/models lists `mock`, owned by
`owned_by` ("vllm" makes wattbench's --output-enforce auto send ignore_eos / min_tokens). An optional service delay per request `queue_s` is added before anything (a server made slow on
purpose). Plain asyncio streams and a minimal HTTP/1.1 parser (keep-alive, Content-Length bodies), so one
process sustains thousands of requests/s; uvloop is used when installed and asked for.

    with MockOpenAIServer(ttft_s=0.1, itl_s=0.01, tokens=64) as server:   # a thread, for tests
        ... server.url ...  # http://127.0.0.1:<port>/v1

    python tests/mock_openai_server.py --port 8001 --ttft-ms 100 --itl-ms 10 --tokens 64   # a process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delays:
    ttft_s: float = 0.1
    itl_s: float = 0.01
    tokens: int = 64
    queue_s: float = 0.0  # extra wait before the request is looked at
    requests: list[tuple[float, float]] = field(default_factory=list)  # (received, finished) perf_counter
    request_ids: list[str] = field(default_factory=list)  # X-Wattbench-Request of each chat request (run/key)
    uuids: list[str] = field(default_factory=list)  # X-Request-ID of each chat request
    count_prompt: Callable[[str], int] | None = None  # the prompt's tokens in usage (default 8)
    owned_by: str = "mock"
    bodies: list[dict[str, Any]] = field(default_factory=list)  # each chat request's JSON body
    first_s: list[float] = field(default_factory=list)  # each streamed answer: its first token's write - arrival


def answer_tokens(natural: int, request: dict[str, Any]) -> int:
    """Tokens answered, as vLLM's sampler decides: ignore_eos runs to max_tokens; else the natural length
    (where EOS would come) capped by max_tokens and raised to min_tokens."""
    cap = request.get("max_tokens") or request.get("max_completion_tokens")
    if request.get("ignore_eos") and cap:
        return int(cap)
    n = min(natural, int(cap)) if cap else natural
    floor = int(request.get("min_tokens") or 0)
    return min(max(n, floor), int(cap)) if cap else max(n, floor)


def _models(owned_by: str) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": owned_by}]}).encode()


def _head(status: str, ctype: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", "Connection: keep-alive"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _answer(delays: Delays, body: bytes, writer: asyncio.StreamWriter) -> None:
    t_in = time.perf_counter()
    request = json.loads(body or b"{}")
    delays.bodies.append(request)
    model = request.get("model", "mock")
    tokens = answer_tokens(delays.tokens, request)
    prompt = " ".join(str(m.get("content") or "") for m in request.get("messages") or [])
    prompt_tokens = delays.count_prompt(prompt) if delays.count_prompt else 8
    if delays.queue_s:
        await asyncio.sleep(delays.queue_s)
    if not request.get("stream"):
        await asyncio.sleep(delays.ttft_s + delays.itl_s * max(0, tokens - 1))
        payload = json.dumps({
            "id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * tokens},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                      "total_tokens": prompt_tokens + tokens}}).encode()
        writer.write(_head("200 OK", "application/json", len(payload)) + payload)
        delays.requests.append((t_in, time.perf_counter()))
        return
    prefix = b'data: {"id":"x","object":"chat.completion.chunk","model":"' + model.encode() + b'","choices":'
    writer.write(_head("200 OK", "text/event-stream"))
    start = time.perf_counter()
    for i in range(tokens):  # token i is due at start + ttft + i * itl (no drift from late wakeups)
        due = start + delays.ttft_s + i * delays.itl_s - time.perf_counter()
        if due > 0:
            await asyncio.sleep(due)
        writer.write(_chunk(prefix + b'[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'))
        if i == 0:  # the server's own TTFT: what it took, on its clock, before the first token left
            delays.first_s.append(time.perf_counter() - t_in)
    usage = (prefix + b'[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
             b'data: {"id":"x","object":"chat.completion.chunk","model":"' + model.encode() + b'","choices":[],"usage":'
             b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n'
             % (prompt_tokens, tokens, tokens + prompt_tokens))
    writer.write(_chunk(usage) + b"0\r\n\r\n")
    delays.requests.append((t_in, time.perf_counter()))


async def _serve_connection(delays: Delays, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            first, _, rest = head.partition(b"\r\n")
            method, path = first.split(b" ")[:2]
            length, request_id, request_uuid = 0, "", ""
            for line in rest.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                elif line[:13].lower() == b"x-request-id:":
                    request_uuid = line[13:].strip().decode()
                elif line[:20].lower() == b"x-wattbench-request:":
                    request_id = line[20:].strip().decode()
            body = await reader.readexactly(length) if length else b""
            if method == b"GET" and path == b"/stats":  # what the server saw (benchmarks read it between rounds)
                stats = json.dumps({"requests": len(delays.requests), "first_s": delays.first_s}).encode()
                writer.write(_head("200 OK", "application/json", len(stats)) + stats)
            elif method == b"GET" and path.endswith(b"/models"):
                models = _models(delays.owned_by)
                writer.write(_head("200 OK", "application/json", len(models)) + models)
            elif method == b"POST" and path.endswith(b"/chat/completions"):
                delays.request_ids.append(request_id)
                delays.uuids.append(request_uuid)
                await _answer(delays, body, writer)
            else:
                writer.write(_head("404 Not Found", "application/json", 2) + b"{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(delays: Delays, sock: socket.socket, ready: threading.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_connection(delays, r, w), sock=sock, backlog=4096)
    if ready is not None:
        ready.set()
    async with server:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()


class MockOpenAIServer:
    """The mock in a background thread (its own event loop) on 127.0.0.1, for tests."""

    def __init__(self, ttft_s: float = 0.1, itl_s: float = 0.01, tokens: int = 64, queue_s: float = 0.0,
                 count_prompt: Callable[[str], int] | None = None, owned_by: str = "mock") -> None:
        self.delays = Delays(ttft_s, itl_s, tokens, queue_s, count_prompt=count_prompt, owned_by=owned_by)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4096)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        self._loop.run_until_complete(serve(self.delays, self._sock, self._ready, self._stop))
        pending = asyncio.all_tasks(self._loop)  # open keep-alive connections: end them inside the loop
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def __enter__(self) -> MockOpenAIServer:
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


def main() -> None:
    p = argparse.ArgumentParser(description="mock OpenAI-compatible server with injected TTFT / ITL")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    delays = Delays(args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens)
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(serve(delays, sock))


if __name__ == "__main__":
    main()
