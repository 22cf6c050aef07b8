"""The cheap model seam for OpenAI-compatible upstreams: their server-sent events streamed through with aiohttp.

LiteLLM turns every streamed chunk into pydantic objects and runs its callbacks on it (benchmarks/
bench_passthrough.py measures what that costs per request and per chunk). When the model is served by an
OpenAI-compatible server at WATTBENCH_API_BASE (`openai/...`, `hosted_vllm/...` and the other prefixes LiteLLM
sends to an OpenAI-compatible base URL, see OPENAI_COMPATIBLE), `PassthroughBackend` posts the request itself
and reads the events as they arrive: the text of each (pieces read together are yielded together), the
finish reason, and the usage of the final chunk. Nothing else is built per chunk. Every piece of bytes is
yielded with its event (StreamEvent.raw, an empty event when the piece completed none), so a streamed /chat
forwards the upstream's events as they came instead of re-encoding each (streaming.py).

It keeps the seam's contract (backend.ModelBackend): the same request body LiteLLM sends (model without its
prefix, messages, temperature, max_tokens, stream with usage), the same BackendError subclasses and messages
(translate_status / translate_exception), secrets never in a message. `select_backend(settings)` is the
selection hook app.py calls: it gives LiteLLMBackend alone when pass-through cannot apply, else `PerModel`,
which sends each request to the pass-through or to LiteLLM by its model. LiteLLM keeps every other provider,
the embedded model, mock answers (WATTBENCH_MOCK_RESPONSE) and Langfuse tracing (its callback makes the spans;
with LANGFUSE_* keys set, every request goes through LiteLLM). WATTBENCH_PASSTHROUGH=0 turns it off.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from wattbench.config import LOCAL_MODEL, Settings
from wattbench.protocol.openai_stream import StreamError, StreamReader, UpstreamError
from wattbench.protocol.ratelimit import retry_after_s
from wattbench.protocol.sse import EventTooLarge, SseSplitter, event_fields
from wattbench.redact import short, shown_url
from wattbench.service.backend import (
    BackendError,
    BadModelRequest,
    GenerationRequest,
    LiteLLMBackend,
    RateLimited,
    StreamEvent,
    UpstreamTimeout,
    UpstreamUnavailable,
    key_variable,
    scrub,
)

log = logging.getLogger("wattbench.passthrough")

#: LiteLLM provider prefixes that speak OpenAI's chat completions API to the given api_base.
OPENAI_COMPATIBLE = ("openai", "hosted_vllm", "custom_openai", "lm_studio", "llamafile", "litellm_proxy")

#: The most bytes of an error answer read to quote in the message.
_ERROR_BODY_LIMIT = 4096

#: HTTP status -> the LiteLLM exception name its messages carry for "model X failed (NAME): ..."
_STATUS_NAMES = {500: "InternalServerError", 502: "ServiceUnavailableError", 503: "ServiceUnavailableError"}


def upstream_model(model: str, settings: Settings) -> str | None:
    """The model name to send upstream when `model` goes through the pass-through, else None."""
    if not settings.passthrough or not settings.api_base or settings.mock_response is not None:
        return None
    if settings.langfuse_public_key and settings.langfuse_secret_key is not None:
        return None  # the spans are made by LiteLLM's callback
    if model == LOCAL_MODEL or "/" not in model:
        return None
    provider, name = model.split("/", 1)
    return name if provider in OPENAI_COMPATIBLE and name else None


class PassthroughBackend:
    """An OpenAI-compatible server's stream, read as bytes (backend.ModelBackend)."""

    def __init__(self, settings: Settings, count_tokens: Callable[..., int] | None = None) -> None:
        if not settings.api_base:
            raise ValueError("the pass-through needs WATTBENCH_API_BASE")
        self._settings = settings
        self._url = settings.api_base.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if settings.api_base_key is not None and settings.api_base_key.get_secret_value():
            self._headers["Authorization"] = f"Bearer {settings.api_base_key.get_secret_value()}"
        self._count_tokens = count_tokens
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        """One keep-alive session per event loop (the service has one; each test client has its own)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            timeout = self._settings.request_timeout_s  # per connect / read, as LiteLLM's client applies it
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
                auto_decompress=True,
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def ready(self, model: str) -> tuple[bool, str]:
        return True, f"OpenAI-compatible server at {shown_url(self._settings.api_base or '')} (streamed through)"

    def model_params_b(self, model: str) -> float | None:
        return None

    def count_tokens(self, model: str, messages: list[dict[str, str]] | None = None, text: str = "") -> int:
        if self._count_tokens is None:  # a rough estimate: ~4 characters per token
            chars = sum(len(m.get("content", "")) for m in messages) if messages is not None else len(text)
            return max(1, round(chars / 4)) if chars else 0
        return self._count_tokens(model, messages=messages, text=text)

    def body(self, request: GenerationRequest) -> bytes:
        """What LiteLLM would send for `request` (its model's prefix dropped)."""
        name = request.model.split("/", 1)[1] if "/" in request.model else request.model
        return json.dumps({
            "model": name, "messages": request.messages, "temperature": request.temperature,
            "max_tokens": request.max_tokens, "stream": True, "stream_options": {"include_usage": True},
        }).encode()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        model = request.model
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.deadline_s()
        try:
            async with self._client().post(self._url, data=self.body(request), headers=self._headers,
                                           allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    raise UpstreamUnavailable(
                        f"model {model} failed (HTTP {resp.status}): {shown_url(self._settings.api_base or '')} "
                        f"redirected to {shown_url(resp.headers.get('Location', '')) or 'nowhere'}; redirects are "
                        "not followed: set WATTBENCH_API_BASE to the server's own address")
                if resp.status != 200:
                    raw = await resp.content.read(_ERROR_BODY_LIMIT)
                    raise translate_status(resp.status, raw, resp.headers, model, self._settings)
                ctype = resp.headers.get("Content-Type", "")
                if not ctype.startswith("text/event-stream"):
                    raise UpstreamUnavailable(
                        f"model {model} failed (APIError): the server answered 200 with {ctype or 'no content type'}"
                        ", not an event stream")
                parser = SseParser()
                async for data in resp.content.iter_any():
                    event = parser.feed(data) or StreamEvent()
                    event.raw = data  # every piece, as it came: a streamed /chat forwards it (streaming.py)
                    yield event
                    if parser.done:
                        break
                    if loop.time() > deadline:  # an upstream that keeps sending: a total limit per request
                        raise UpstreamTimeout(
                            f"model {model} did not finish within {self._settings.deadline_s():g} s in all (raise "
                            "WATTBENCH_REQUEST_DEADLINE_S or lower max_tokens)")
                if not parser.finished:
                    raise UpstreamUnavailable(
                        f"model {model} failed (APIError): the stream ended before it finished "
                        "(no finish reason, no [DONE])")
        except BackendError:
            raise
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise translate_exception(exc, model, self._settings) from exc
        except (StreamError, EventTooLarge) as exc:
            raise UpstreamUnavailable(
                f"model {model} failed (APIError): the server sent {scrub(short(str(exc)), self._settings)}") from exc
        except UpstreamEventError as exc:
            raise UpstreamUnavailable(
                f"model {model} failed (APIError): {scrub(short(str(exc)), self._settings)}") from exc


#: The error an upstream sends inside its stream (protocol.openai_stream.UpstreamError).
UpstreamEventError = UpstreamError


class SseParser:
    """An OpenAI-compatible stream, fed as bytes arrive (protocol.sse + protocol.openai_stream).

    `feed(bytes)` returns one StreamEvent for every complete event in the bytes so far (their texts joined,
    the finish reason and the usage when one of them carries it), or None when none is complete or none says
    anything. `done` turns True at `data: [DONE]`; `finished` when the stream ended as the protocol ends one."""

    def __init__(self) -> None:
        self._splitter = SseSplitter()
        self._reader = StreamReader()
        self._usage_sent = False
        self._finish_sent = False

    @property
    def done(self) -> bool:
        return self._reader.done

    @property
    def finished(self) -> bool:
        return self._reader.finished

    def feed(self, data: bytes) -> StreamEvent | None:
        blocks = self._splitter.feed(data)
        if not blocks:
            return None
        reader = self._reader
        text = "".join(reader.read(event_fields(block)[1]) for block in blocks)
        event = StreamEvent(text=text)
        said = False
        if reader.finish_reason is not None and not self._finish_sent:
            event.finish_reason, self._finish_sent, said = reader.finish_reason, True, True
        if reader.completion_tokens is not None and not self._usage_sent:
            event.prompt_tokens, event.completion_tokens = reader.prompt_tokens, reader.completion_tokens
            self._usage_sent, said = True, True
        return event if said or text else None


def _detail(raw: bytes) -> str:
    """The message of an OpenAI-style error answer ({"error": {"message": ...}}), else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def translate_status(
    status: int, raw: bytes, headers: Any, model: str, settings: Settings
) -> BackendError:
    """An upstream's non-200 answer -> the service's error, worded as backend.translate_error words LiteLLM's;
    a 429's wait read from every header that says it (retry-after-ms first: the provider's precision)."""
    detail = scrub(short(_detail(raw)), settings)
    if status == 429:
        return RateLimited(f"the provider rate-limited model {model}: {detail}", retry_after_s=retry_after_s(headers))
    if status in (401, 403):
        return UpstreamUnavailable(
            f"the provider rejected the API key for {model}: check {key_variable(model, settings)}")
    if status in (408, 504):
        return _timeout(model, settings)
    if status == 404:
        return BadModelRequest(f"model {model} was not found by its provider: {detail}")
    if status in (400, 413, 422):
        if "api key" in detail.lower() or "api_key" in detail.lower():
            return UpstreamUnavailable(f"no usable API key for {model}: set {key_variable(model, settings)}")
        return BadModelRequest(f"the provider refused the request for {model}: {detail}")
    name = _STATUS_NAMES.get(status, f"HTTP {status}")
    return UpstreamUnavailable(f"model {model} failed ({name}): {detail}")


def translate_exception(exc: BaseException, model: str, settings: Settings) -> BackendError:
    """A transport failure -> the service's error (a timeout: 504; anything else: cannot reach)."""
    if isinstance(exc, asyncio.TimeoutError):
        return _timeout(model, settings)
    if isinstance(exc, aiohttp.ClientPayloadError):  # reached, but the answer broke off or cannot be decoded
        detail = scrub(short(str(exc) or type(exc).__name__), settings)
        return UpstreamUnavailable(f"model {model} failed (APIError): the answer broke off: {detail}")
    if isinstance(exc, json.JSONDecodeError):
        return UpstreamUnavailable(f"model {model} failed (APIError): the server sent an event that is not JSON")
    where = shown_url(settings.api_base or "the provider")
    detail = scrub(short(str(exc) or type(exc).__name__), settings)
    return UpstreamUnavailable(f"cannot reach {where} for model {model}: {detail}")


def _timeout(model: str, settings: Settings) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"model {model} did not answer within {settings.request_timeout_s:g} s "
        "(raise WATTBENCH_REQUEST_TIMEOUT_S or lower max_tokens)"
    )


class PerModel:
    """The seam with two backends: each request goes to the pass-through when its model is served by the
    OpenAI-compatible upstream (upstream_model), else to LiteLLM."""

    def __init__(self, settings: Settings, litellm_backend: LiteLLMBackend) -> None:
        self._settings = settings
        self.litellm = litellm_backend
        self.passthrough = PassthroughBackend(settings, count_tokens=litellm_backend.count_tokens)

    def backend_for(self, model: str) -> Any:
        return self.passthrough if upstream_model(model, self._settings) is not None else self.litellm

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        return self.backend_for(request.model).stream(request)

    def ready(self, model: str) -> tuple[bool, str]:
        return self.backend_for(model).ready(model)

    def model_params_b(self, model: str) -> float | None:
        return self.backend_for(model).model_params_b(model)

    def count_tokens(self, model: str, messages: list[dict[str, str]] | None = None, text: str = "") -> int:
        return self.litellm.count_tokens(model, messages=messages, text=text)

    def __getattr__(self, name: str) -> Any:  # warm_up, local, ...: LiteLLM's
        return getattr(self.litellm, name)


def select_backend(settings: Settings) -> Any:
    """The service's backend (the selection hook app.py calls): LiteLLM for every provider, with OpenAI-compatible
    upstreams at WATTBENCH_API_BASE streamed through (PerModel) unless that is off or cannot apply."""
    litellm_backend = LiteLLMBackend(settings)
    if not settings.passthrough or not settings.api_base or settings.mock_response is not None:
        return litellm_backend
    return PerModel(settings, litellm_backend)
