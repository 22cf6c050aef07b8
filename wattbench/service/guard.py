"""The guard in front of every route: the bearer token is checked before the body is read, bodies are capped."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from wattbench import redact
from wattbench.config import ConfigError, Settings, get_settings
from wattbench.limits import MAX_BATCH_BODY_BYTES, MAX_CHAT_BODY_BYTES

UNAUTHORIZED = "missing or wrong bearer token: send 'Authorization: Bearer <WATTBENCH_API_TOKEN>'"


OPEN_PATHS = frozenset({"/health"})


def token_ok(authorization: str | None, settings: Settings) -> bool:
    """Whether an Authorization header value carries the service's token (True when auth is off)."""
    if not settings.auth_required:
        return True
    assert settings.api_token is not None
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(given.strip().encode(), settings.api_token.get_secret_value().encode())


def app_settings(app: Any) -> Settings:
    """The settings the routes get (a test's dependency override included)."""
    provider = getattr(app, "dependency_overrides", {}).get(get_settings, get_settings)
    return provider()


def body_limit(path: str) -> int:
    """The largest request body read for `path` (bytes): /chat one prompt and a system text, else a batch."""
    return MAX_CHAT_BODY_BYTES if path == "/chat" else MAX_BATCH_BODY_BYTES


class GuardMiddleware:
    """Before anything else reads a request: the bearer token (every path but /health, the docs and
    /openapi.json included), then the body size (Content-Length, and the bytes actually received, so a chunked
    body cannot exceed it either). A refused request is answered without its body being read or parsed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if path not in OPEN_PATHS:
            try:
                settings = app_settings(scope.get("app"))
            except ConfigError as exc:
                await _send_error(send, 500, str(exc))
                return
            if not token_ok(headers.get("authorization"), settings):
                await _send_error(send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = body_limit(path)
        too_large = f"request body over {limit} bytes; send fewer or shorter prompts"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, too_large)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                await _send_error(send, 413, too_large)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Callable, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps({"detail": redact.scrub(detail)}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
