"""The streamed /chat's plumbing (service/streaming.py), as an ASGI app sees it: the pieces, then the result;
no model call outlives its response, however the response ends."""
from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from wattbench.service.backend import StreamEvent
from wattbench.service.streaming import sse_response


class Result(BaseModel):
    text: str


class Backend:
    """A model that says `pieces`, then waits for `release` (never set unless a test sets it)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces, self.started, self.cancelled = pieces, False, False
        self.release = asyncio.Event()

    async def stream(self, request: object):
        self.started = True
        try:
            for piece in self.pieces:
                yield StreamEvent(text=piece)
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def work(backend: Backend) -> Result:
    return Result(text="".join([event.text async for event in backend.stream(None)]))


SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST", "path": "/chat",
         "headers": []}


async def never_disconnects() -> dict:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def test_a_whole_stream_then_its_result() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def main() -> None:
        backend = Backend(["Hel", "lo"])
        backend.release.set()
        await sse_response(work, backend, ())(SCOPE, never_disconnects, send)

    asyncio.run(main())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[0]["status"] == 200 and (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert body.endswith(b'event: result\ndata: {"text":"Hello"}\n\n')
    assert body.startswith(b'data: {"text": "Hel')


def test_the_call_is_cancelled_when_the_response_ends_before_its_body() -> None:
    """The client is gone when the response starts: no model call goes on for nobody."""

    async def send(message: dict) -> None:
        raise OSError("the client went away")

    async def main() -> tuple[bool, bool]:
        backend = Backend([])
        response = sse_response(work, backend, ())
        with pytest.raises(BaseException):  # OSError, in an ExceptionGroup on the task-group path
            await response(SCOPE, never_disconnects, send)
        await asyncio.sleep(0.05)
        return backend.started, backend.cancelled  # before asyncio.run cancels what is left

    started, cancelled = asyncio.run(main())
    assert cancelled or not started


def test_the_call_is_cancelled_when_the_client_leaves_mid_stream() -> None:
    sent: list[dict] = []

    async def main() -> tuple[bool, bool]:
        backend = Backend(["a", "b"])
        gone = asyncio.Event()

        async def send(message: dict) -> None:
            sent.append(message)
            if message.get("body"):
                gone.set()  # the first piece reached the client, which then closes

        async def receive() -> dict:
            await gone.wait()
            return {"type": "http.disconnect"}

        await sse_response(work, backend, ())(SCOPE, receive, send)
        await asyncio.sleep(0.05)
        return backend.started, backend.cancelled  # before asyncio.run cancels what is left

    assert asyncio.run(main()) == (True, True)
    assert not any(b"event: result" in m.get("body", b"") for m in sent)
