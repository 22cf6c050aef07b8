"""A hostile OpenAI-compatible upstream: every malformed or abusive answer a server can give, chosen per request
by the prompt (the last message's content, e.g. "hostile:html"), so one server drives the direct path
(`wattbench run --base-url`) and the pass-through (the service with WATTBENCH_API_BASE) alike.

    with HostileServer() as server:      # a thread on 127.0.0.1
        ... server.url ...               # http://127.0.0.1:<port>/v1
        server.hits["html"]              # requests that asked for that answer
        server.redirect_target_hits      # requests that reached the server a redirect pointed to

Each answer's name is a key of BEHAVIOURS; any other prompt gets a good stream (OK_TEXT, usage 5 + 2).
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

OK_TEXT = "Hello there"
HUGE_EVENT_BYTES = 20 * 1024 * 1024  # one 20 MB event (protocol.sse.MAX_EVENT_BYTES is 1 MiB)


def _event(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "model": "hostile",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def _usage(prompt: Any = 5, completion: Any = 2) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "model": "hostile", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 7}}


GOOD_EVENTS = [_event(_delta("Hello")), _event(_delta(" there")), _event(_delta("", "stop")), _event(_usage()),
               b"data: [DONE]\n\n"]


def _head(status: str, ctype: str | None, extra: tuple[str, ...] = (), length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *extra]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Writer = asyncio.StreamWriter
Behaviour = Callable[["HostileServer", Writer], Awaitable[None]]


async def _stream(writer: Writer, events: list[bytes], extra: tuple[str, ...] = (), end: bool = True) -> None:
    writer.write(_head("200 OK", "text/event-stream", extra))
    for event in events:
        writer.write(_chunk(event))
        await writer.drain()
    if end:
        writer.write(b"0\r\n\r\n")


async def _ok(server: HostileServer, w: Writer) -> None:
    await _stream(w, GOOD_EVENTS)


async def _body(w: Writer, status: str, ctype: str, body: bytes, extra: tuple[str, ...] = ()) -> None:
    w.write(_head(status, ctype, extra, len(body)) + body)


async def _html(server: HostileServer, w: Writer) -> None:
    await _body(w, "200 OK", "text/html; charset=utf-8", b"<html><body>Welcome to nginx!</body></html>")


async def _json(server: HostileServer, w: Writer) -> None:  # a whole chat.completion where a stream was asked
    await _body(w, "200 OK", "application/json", json.dumps({
        "object": "chat.completion", "model": "hostile",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": OK_TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode())


async def _reset(server: HostileServer, w: Writer) -> None:  # a reset mid-stream: no [DONE], no finish reason
    await _stream(w, GOOD_EVENTS[:1], end=False)
    await asyncio.sleep(0.05)
    w.transport.abort()


async def _cut(server: HostileServer, w: Writer) -> None:  # a clean end of the body, but not of the stream
    await _stream(w, GOOD_EVENTS[:2])


def _events(*events: bytes) -> Behaviour:
    async def answer(server: HostileServer, w: Writer) -> None:
        await _stream(w, [*events, b"data: [DONE]\n\n"])

    return answer


async def _huge(server: HostileServer, w: Writer) -> None:
    await _stream(w, [_event(_delta("x" * HUGE_EVENT_BYTES)), *GOOD_EVENTS[2:]])


async def _endless(server: HostileServer, w: Writer) -> None:  # tokens as fast as it can, for ever
    w.write(_head("200 OK", "text/event-stream"))
    server.streaming += 1
    try:
        while True:
            w.write(_chunk(_event(_delta("more "))))
            await w.drain()
            server.endless_events += 1
            await asyncio.sleep(0.005)
    finally:
        server.streaming -= 1


async def _stall(server: HostileServer, w: Writer) -> None:  # one token, then silence with the connection open
    await _stream(w, GOOD_EVENTS[:1], end=False)
    server.streaming += 1
    try:
        await asyncio.sleep(3600)
    finally:
        server.streaming -= 1


async def _ratelimit(server: HostileServer, w: Writer) -> None:  # an exhausted quota, said to the millisecond
    await _body(w, "429 Too Many Requests", "application/json",
                b'{"error": {"message": "quota exhausted", "type": "rate_limit"}}',
                ("retry-after-ms: 20", "Retry-After: 1"))


async def _redirect(server: HostileServer, w: Writer) -> None:  # to another server, which would answer well
    await _body(w, "307 Temporary Redirect", "text/plain", b"moved",
                (f"Location: http://127.0.0.1:{server.redirect_port}/v1/chat/completions",))


async def _gzip_lie(server: HostileServer, w: Writer) -> None:  # says gzip, sends plain text
    await _stream(w, GOOD_EVENTS, extra=("Content-Encoding: gzip",))


async def _slow_drip(server: HostileServer, w: Writer) -> None:  # one token every 0.2 s, for ever
    w.write(_head("200 OK", "text/event-stream"))
    server.streaming += 1
    try:
        while True:
            w.write(_chunk(_event(_delta("drip "))))
            await w.drain()
            await asyncio.sleep(0.2)
    finally:
        server.streaming -= 1


BEHAVIOURS: dict[str, Behaviour] = {
    "ok": _ok,
    "html": _html,
    "json": _json,
    "reset": _reset,
    "cut": _cut,
    "not_object": _events(_event(b"42")),
    "choice_not_object": _events(_event({"choices": ["x"]})),
    "delta_not_object": _events(_event({"choices": [{"index": 0, "delta": "hi"}]})),
    "not_json": _events(_event(b"{not json")),
    "usage_negative": _events(_event(_delta("Hi", "stop")), _event(_usage(completion=-5))),
    "usage_huge": _events(_event(_delta("Hi", "stop")), _event(_usage(completion=1e30))),
    "usage_text": _events(_event(_delta("Hi", "stop")), _event(_usage(completion="abc"))),
    "error_event": _events(_event({"error": {"message": "out of KV cache", "code": 503}})),
    "huge_event": _huge,
    "endless": _endless,
    "stall": _stall,
    "ratelimit": _ratelimit,
    "redirect": _redirect,
    "gzip_lie": _gzip_lie,
    "slow_drip": _slow_drip,
}


def behaviour_of(body: dict[str, Any]) -> str:
    """The answer a request asks for: its last message's content after "hostile:" (default "ok")."""
    messages = body.get("messages") or [{}]
    content = str(messages[-1].get("content") or "")
    name = content.removeprefix("hostile:").strip() if content.startswith("hostile:") else "ok"
    return name if name in BEHAVIOURS else "ok"


class HostileServer:
    """The hostile upstream in a thread; `redirect_port` is a second listener that counts what reaches it."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.redirect_target_hits = 0
        self.streaming = 0  # answers being streamed now (endless, stall, slow_drip): 0 once their client left
        self.endless_events = 0
        self._socks = [socket.socket(), socket.socket()]
        for sock in self._socks:
            sock.bind(("127.0.0.1", 0))
            sock.listen(256)
        self.port = self._socks[0].getsockname()[1]
        self.redirect_port = self._socks[1].getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer, target: bool) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            first, _, rest = head.partition(b"\r\n")
            path = first.split(b" ")[1] if b" " in first else b""
            length = next((int(line.split(b":", 1)[1]) for line in rest.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = json.loads(await reader.readexactly(length) or b"{}") if length else {}
            if target:
                self.redirect_target_hits += 1
                await _ok(self, writer)
            elif path.endswith(b"/models"):
                await _body(writer, "200 OK", "application/json",
                            b'{"object": "list", "data": [{"id": "hostile", "object": "model"}]}')
            else:
                name = behaviour_of(body)
                self.hits[name] += 1
                answer = asyncio.ensure_future(BEHAVIOURS[name](self, writer))
                gone = asyncio.ensure_future(reader.read())  # b"" once the client has closed the connection
                await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
                for task in (answer, gone):
                    task.cancel()
                await asyncio.gather(answer, gone, return_exceptions=True)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            servers = [await asyncio.start_server(lambda r, w, t=i == 1: self._serve(r, w, t), sock=sock)
                       for i, sock in enumerate(self._socks)]
            self._ready.set()
            await self._stop.wait()
            for server in servers:
                server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:  # answers still streaming (endless, stall): end them before the loop closes
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self._loop.run_until_complete(main())

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
