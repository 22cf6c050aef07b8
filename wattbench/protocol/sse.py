"""Server-sent events (the `text/event-stream` framing of OpenAI-compatible streaming), fed as bytes arrive.

`SseSplitter.feed(bytes)` returns the complete events so far (each the bytes of one event block, CRLF folded to
LF); `event_fields` reads one block's event name and data. `sse_events` splits a whole recorded stream of
(arrival time, bytes) pieces, giving each event the arrival time of the piece that completed it: the client
records pieces as they arrive and splits only after the stream has ended, so parsing never delays a timestamp.
"""
from __future__ import annotations

#: The most bytes one event may hold before the stream is refused (a 20 MB event is not a token).
MAX_EVENT_BYTES = 1 << 20


class EventTooLarge(ValueError):
    """An event grew past MAX_EVENT_BYTES without ending."""


class SseSplitter:
    """Splits a byte stream into server-sent events (blocks separated by a blank line)."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._cr = False  # the last piece ended in "\r": a "\r\n" may straddle two pieces
        self.max_event_bytes = max_event_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by `data` (possibly none)."""
        if self._cr and data.startswith(b"\n"):
            data = data[1:]
        self._cr = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            if len(buffer) > self.max_event_bytes:
                raise EventTooLarge(f"an event of over {self.max_event_bytes} bytes")
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 2:]
        if len(self._buffer) > self.max_event_bytes:
            raise EventTooLarge(f"an event of over {self.max_event_bytes} bytes")
        return [block for block in buffer[:end].split(b"\n\n") if block.strip(b"\n")]

    def close(self) -> bytes | None:
        """What is left after the last blank line: an event the server did not terminate (or None)."""
        rest, self._buffer = self._buffer, b""
        return rest if rest.strip() else None


def event_fields(event: bytes) -> tuple[str, bytes]:
    """(event name, data) of one event block ('message' when it names none; data lines joined by newlines;
    comments such as ': keep-alive', ids and retry fields ignored)."""
    name, data = "message", []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].strip())
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return name, b"\n".join(data)


def sse_events(chunks: list[tuple[float, bytes]],
               max_event_bytes: int = MAX_EVENT_BYTES) -> list[tuple[float, bytes]]:
    """Server-sent events of a recorded stream as (arrival time of the piece that completed the event, event
    bytes); an unterminated last event counts, at the time of the last piece. EventTooLarge past the cap."""
    splitter = SseSplitter(max_event_bytes)
    events: list[tuple[float, bytes]] = []
    for t, data in chunks:
        events.extend((t, block) for block in splitter.feed(data))
    rest = splitter.close()
    if rest is not None and chunks:
        events.append((chunks[-1][0], rest))
    return events
