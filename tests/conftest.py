"""Shared test fixtures: a queue-driven fake at the model seam and a scripted clock."""
from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Keys from the developer's shell must never leak into tests (nor their outputs).
for _name in ("GEMINI_API_KEY", "WATTBENCH_MODEL", "WATTBENCH_API_TOKEN", "WATTBENCH_API_BASE",
              "WATTBENCH_MOCK_RESPONSE",
              "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "NGROK_AUTHTOKEN"):
    os.environ.pop(_name, None)


@dataclass
class Scripted:
    """One scripted answer of the fake backend."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", " world"])
    usage: tuple[int, int] | None = (7, 2)  # (prompt_tokens, completion_tokens); None = provider gave none
    error: Exception | None = None
    finish_reason: str = "stop"


class FakeBackend:
    """A real implementation of the ModelBackend protocol that answers from a queue of scripts."""

    def __init__(self, scripts: Iterable[Scripted] = ()):
        self.queue: deque[Scripted] = deque(scripts)
        self.requests: list = []

    def push(self, *scripts: Scripted) -> None:
        self.queue.extend(scripts)

    async def stream(self, request) -> AsyncIterator:
        from wattbench.service.backend import StreamEvent

        self.requests.append(request)
        script = self.queue.popleft() if self.queue else Scripted()
        if script.error is not None:
            raise script.error
        for piece in script.pieces:
            yield StreamEvent(text=piece)
        yield StreamEvent(finish_reason=script.finish_reason)
        if script.usage is not None:
            yield StreamEvent(prompt_tokens=script.usage[0], completion_tokens=script.usage[1])

    def ready(self, model: str) -> tuple[bool, str]:
        return True, "fake backend"

    def model_params_b(self, model: str) -> float | None:
        return None

    def count_tokens(self, model: str, messages=None, text: str = "") -> int:
        """Whitespace words: a deterministic stand-in for a tokenizer."""
        if messages is not None:
            return sum(len(m["content"].split()) for m in messages)
        return len(text.split())


class ScriptedClock:
    """Returns the given readings in order (then keeps returning the last one)."""

    def __init__(self, *readings: float):
        self.readings = deque(readings)
        self.last = readings[0] if readings else 0.0

    def __call__(self) -> float:
        if self.readings:
            self.last = self.readings.popleft()
        return self.last


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def make_client(fake_backend):
    """Build a TestClient of app.app with the fake backend, given settings and an optional clock."""
    from fastapi.testclient import TestClient

    from wattbench.config import Settings, get_settings
    from wattbench.service import app as app_module

    made = []

    def build(settings: Settings | None = None, clock: Callable[[], float] | None = None, backend=None):
        settings = settings or Settings(_env_file=None)
        overrides = app_module.app.dependency_overrides
        overrides[get_settings] = lambda: settings
        overrides[app_module.get_backend] = lambda: backend or fake_backend
        if clock is not None:
            overrides[app_module.get_clock] = lambda: clock
        client = TestClient(app_module.app)
        made.append(client)
        return client

    yield build
    app_module.app.dependency_overrides.clear()
