"""Opt-in streaming of /chat as server-sent events (`"stream": true` in the body).

The JSON answer stays /chat's default. A streamed answer is one `data: {"text": ...}` event per piece of text
as the model produces it (pieces that arrived together are sent together) or, from an OpenAI-compatible
upstream through the pass-through, the upstream's own events forwarded byte for byte as they arrive (no event
decoded and encoded again here: the pass-through reads what accounting needs), then `event: result` carrying the
same ChatResponse JSON as the default answer (the service's own timings inside), or `event: error` carrying
{"status_code", "detail", "retry_after", "retry_after_ms"} when the model call fails. The client times the first text event and
the last byte itself: that is the latency a user of the service sees, queueing in the service included.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from wattbench import redact

log = logging.getLogger("wattbench.streaming")

EVENT_STREAM = "text/event-stream"


class _Tee:
    """The model backend, with what each event brings also put on a queue as it is produced: the upstream's
    bytes when the backend forwards them (the pass-through: StreamEvent.raw), else the piece of text."""

    def __init__(self, backend: Any, queue: asyncio.Queue[str | bytes | None]) -> None:
        self._backend, self._queue = backend, queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        async for event in self._backend.stream(request):
            if event.raw:
                self._queue.put_nowait(event.raw)
            elif event.text:
                self._queue.put_nowait(event.text)
            yield event


#: How a forwarded stream may end an event; anything else gets a blank line before the service's own event.
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


def _masked(data: bytes, secrets: list[bytes]) -> bytes:
    """Forwarded bytes with every secret value the process holds masked (a provider may echo its key)."""
    for value in secrets:
        if value in data:
            data = data.replace(value, redact.MASK.encode())
    return data


def sse_response(
    work: Callable[[Any], Awaitable[BaseModel]], backend: Any, errors: tuple[type[Exception], ...]
) -> StreamingResponse:
    """Run `work(backend)` (the /chat work) and stream its text as it comes, then its result.

    errors: the exception types that carry `status_code`, `detail` and `headers` (the service's ServiceError);
    they become an `error` event, anything else an `error` event with status 500 (and a log line)."""
    return StreamingResponse(_events(work, backend, errors), media_type=EVENT_STREAM,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(
    work: Callable[[Any], Awaitable[BaseModel]], backend: Any, errors: tuple[type[Exception], ...]
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
    task = asyncio.ensure_future(work(_Tee(backend, queue)))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    secrets = [v.encode() for v in redact.secret_values()]
    last = b"\n\n"  # the end of what was sent last
    try:
        done = False
        while not done:
            pieces = [await queue.get()]
            while not queue.empty():
                pieces.append(queue.get_nowait())
            done = pieces[-1] is None
            raw = b"".join(p for p in pieces if isinstance(p, bytes))
            if raw:  # an upstream's events, forwarded as they came
                last = (last + raw)[-4:]
                yield _masked(raw, secrets) if secrets else raw
            text = "".join(p for p in pieces if isinstance(p, str))
            if text:  # secret values masked, as in the JSON answer (a provider may echo its key)
                yield b"data: " + json.dumps({"text": redact.mask_secrets(text)}).encode() + b"\n\n"
                last = b"\n\n"
        if not last.endswith(_EVENT_ENDS):  # the upstream's last event was not terminated
            yield b"\n\n"
        try:
            result = task.result()
        except errors as exc:
            headers = exc.headers  # type: ignore[attr-defined]
            ms = headers.get("retry-after-ms")
            error = {"status_code": exc.status_code, "detail": redact.scrub(exc.detail),  # type: ignore[attr-defined]
                     "retry_after": headers.get("Retry-After"), "retry_after_ms": int(ms) if ms else None}
            yield b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"
        except Exception as exc:  # noqa: BLE001 - the stream has begun: report it in the stream, and log it
            log.exception("unexpected error in a streamed /chat")
            error = {"status_code": 500, "detail": f"internal error ({type(exc).__name__}); see the service log",
                     "retry_after": None, "retry_after_ms": None}
            yield b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"
        else:
            yield b"event: result\ndata: " + result.__pydantic_serializer__.to_json(result) + b"\n\n"
    finally:
        if not task.done():  # the client went away: stop the model call
            task.cancel()
