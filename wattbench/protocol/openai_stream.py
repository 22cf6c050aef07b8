"""OpenAI-compatible streamed chat completions (`"stream": true`): what one event's JSON carries, checked.

`StreamReader.read(data)` takes the data of one server-sent event and returns the text it carries; it keeps the
finish reason, the usage of the final chunk (`stream_options.include_usage`) and the model name, and notes
`data: [DONE]`. Whatever is not what the protocol promises is refused with a StreamError that says what was
seen (an event that is not a JSON object, a choice that is not an object, a usage count that is not a
non-negative whole number below MAX_TOKENS); an `error` object inside the stream is an UpstreamError. A stream
is finished when it said [DONE] or gave a finish reason: a stream cut before that is not an answer.
Both the client's direct path (client/transport.py) and the service's pass-through (service/passthrough.py)
read streams with it.
"""
from __future__ import annotations

import json
import math
from typing import Any

#: More tokens than any model produces or reads in one request: a usage count above it is a lie, not a count.
MAX_TOKENS = 10_000_000


class StreamError(ValueError):
    """The server's stream broke the protocol; the message says what was seen."""


class UpstreamError(Exception):
    """The server sent an `error` object inside its stream."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def token_count(value: Any, name: str) -> int | None:
    """A usage count as an int: None when absent, StreamError unless a whole number in [0, MAX_TOKENS]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and (not math.isfinite(value) or not value.is_integer())):
        raise StreamError(f"usage.{name} is {json.dumps(value)[:40]}: not a token count")
    if not 0 <= value <= MAX_TOKENS:
        raise StreamError(f"usage.{name} is {value:g}: not a token count (0 to {MAX_TOKENS:,})")
    return int(value)


def _error_code(error: Any) -> int | None:
    code = error.get("code") if isinstance(error, dict) else None
    try:
        code = int(code) if code is not None and not isinstance(code, bool) else None
    except (TypeError, ValueError):
        return None
    return code if code is not None and 400 <= code <= 599 else None


class StreamReader:
    """One streamed answer, read event by event."""

    def __init__(self) -> None:
        self.done = False  # `data: [DONE]` was seen
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    @property
    def finished(self) -> bool:
        """Whether the stream ended as the protocol ends one ([DONE] or a finish reason)."""
        return self.done or self.finish_reason is not None

    def read(self, data: bytes) -> str:
        """The text of one event's data (empty for [DONE], keep-alives and chunks without content)."""
        data = data.strip()
        if not data:
            return ""
        if data == b"[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise StreamError(f"an event that is not JSON: {data[:100]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamError(f"an event that is not a JSON object: {data[:100]!r}")
        choices = chunk.get("choices")
        if chunk.get("error") is not None and not choices:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise UpstreamError(str(message), _error_code(error))
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if usage is not None:
            if not isinstance(usage, dict):
                raise StreamError(f"usage that is not an object: {json.dumps(usage)[:60]}")
            completion = token_count(usage.get("completion_tokens"), "completion_tokens")
            if completion is not None:
                self.completion_tokens = completion
                self.prompt_tokens = token_count(usage.get("prompt_tokens"), "prompt_tokens")
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise StreamError(f"choices that are not a list: {json.dumps(choices)[:60]}")
        texts = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise StreamError(f"a choice that is not an object: {json.dumps(choice)[:60]}")
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                raise StreamError(f"a delta that is not an object: {json.dumps(delta)[:60]}")
            content = (delta or {}).get("content")
            if content is not None and not isinstance(content, str):
                raise StreamError(f"content that is not text: {json.dumps(content)[:60]}")
            if content:
                texts.append(content)
            reason = choice.get("finish_reason")
            if reason is not None:
                if not isinstance(reason, str):
                    raise StreamError(f"a finish_reason that is not text: {json.dumps(reason)[:60]}")
                self.finish_reason = reason
        return "".join(texts)
