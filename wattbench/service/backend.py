"""The model seam: every model call in wattbench goes through `ModelBackend.stream`.

`LiteLLMBackend` is the real one (any LiteLLM model string, the embedded local model included).
Tests swap in a fake that implements the same protocol (see tests/conftest.py) through FastAPI's
`app.dependency_overrides[get_backend]`.

Provider errors are translated here, once, into `BackendError` subclasses that carry the HTTP status the
service answers with and a message that says what to fix. Secrets never appear in those messages.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from wattbench import redact
from wattbench.config import LOCAL_MODEL, Settings  # importing config selects LiteLLM's bundled price map
from wattbench.protocol.ratelimit import retry_after_headers
from wattbench.protocol.ratelimit import retry_after_s as retry_after_s_of
from wattbench.redact import short

log = logging.getLogger("wattbench.backend")


@dataclass
class GenerationRequest:
    model: str
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamEvent:
    """One piece of a streamed answer: text, or (last) the usage and finish reason."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    energy_kwh: float | None = None
    energy_method: str | None = None
    raw: bytes = b""  # the upstream's bytes this event was read from, for a stream that forwards them as they came


class BackendError(Exception):
    """A model call failed; `status_code` is what the service answers, `message` says what to fix."""

    status_code = 502

    def __init__(self, message: str, *, retry_after: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        if retry_after_s is None and retry_after:
            retry_after_s = retry_after_s_of({"retry-after": retry_after})
        self.retry_after_s = retry_after_s
        self.retry_after = retry_after if retry_after else retry_after_headers(retry_after_s).get("Retry-After")

    def retry_headers(self) -> dict[str, str]:
        """What the service sends with this error (protocol.ratelimit.retry_after_headers)."""
        return retry_after_headers(self.retry_after_s)


class RateLimited(BackendError):
    status_code = 429


class BadModelRequest(BackendError):
    status_code = 422


class UpstreamTimeout(BackendError):
    status_code = 504


class UpstreamUnavailable(BackendError):
    status_code = 502


class ModelBackend(Protocol):
    """What the service needs from a model."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]: ...

    def ready(self, model: str) -> tuple[bool, str]: ...

    def model_params_b(self, model: str) -> float | None: ...

    def count_tokens(self, model: str, messages: list[dict[str, str]] | None = None, text: str = "") -> int: ...


def key_variable(model: str, settings: Settings) -> str:
    """The environment variable that holds the key for `model` (named in error messages, never its value)."""
    if settings.api_base:
        return "WATTBENCH_API_BASE_KEY"
    provider = model.split("/", 1)[0] if "/" in model else ""
    known = {
        "gemini": "GEMINI_API_KEY",
        "openai": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        "groq": "GROQ_API_KEY",
        "mistral": "MISTRAL_API_KEY",
        "together_ai": "TOGETHERAI_API_KEY",
        "deepseek": "DEEPSEEK_API_KEY",
    }
    if provider in known:
        return known[provider]
    if not provider and model.startswith(("gpt-", "o1", "o3", "o4")):
        return "OPENAI_API_KEY"
    return f"{provider.upper() or 'PROVIDER'}_API_KEY"


class LiteLLMBackend:
    """The real backend: LiteLLM streaming, with the embedded model registered as a custom provider."""

    def __init__(self, settings: Settings):
        import litellm

        self._litellm = litellm
        self._settings = settings
        litellm.suppress_debug_info = True
        litellm.drop_params = True  # e.g. temperature for models that fix it
        self._local = None
        if self._runs_local_default:
            self.local()  # register early so /health can say whether the model is there

    @property
    def _runs_local_default(self) -> bool:
        """Whether requests that name no model run the embedded model (not a mock answer)."""
        return self._settings.default_model() == LOCAL_MODEL and self._settings.mock_response is None

    def local(self) -> Any:
        if self._local is None:
            from wattbench.service import local_llm

            self._local = local_llm.register(
                self._settings.local_model_path,
                n_ctx=self._settings.local_n_ctx,
                n_threads=self._settings.local_n_threads,
            )
        return self._local

    def warm_up(self) -> None:
        """Load the local model now (startup), so the first request is not the one that pays for it."""
        if self._runs_local_default:
            self.local().load()

    def ready(self, model: str) -> tuple[bool, str]:
        if self._settings.mock_response is not None:
            return True, "mock responses (WATTBENCH_MOCK_RESPONSE)"
        if model == LOCAL_MODEL:
            from wattbench.service.local_llm import LocalModelError

            try:
                path = self.local().model_path
            except LocalModelError as exc:  # reported by /health, not raised
                return False, str(exc)
            if not path.is_file():  # the file name only: /health must not map the machine's disk
                return False, f"local model file not found: {path.name} (check WATTBENCH_LOCAL_MODEL_PATH)"
            return True, f"local GGUF {path.name}" + ("" if self.local().loaded else " (loads on first request)")
        if self._settings.api_base:
            return True, f"OpenAI-compatible server at {redact.shown_url(self._settings.api_base)}"
        check = self._litellm.validate_environment(model=model)
        missing = check.get("missing_keys") or []
        if missing:
            return False, f"missing key: set {key_variable(model, self._settings)}"
        return True, "key present"

    def model_params_b(self, model: str) -> float | None:
        if model == LOCAL_MODEL and self._local is not None:
            return self._local.params_b
        return None

    def count_tokens(self, model: str, messages: list[dict[str, str]] | None = None, text: str = "") -> int:
        if messages is not None:
            return int(self._litellm.token_counter(model=model, messages=messages))
        return int(self._litellm.token_counter(model=model, text=text))

    def _call_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            model=request.model,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            timeout=self._settings.request_timeout_s,
            num_retries=0,  # the batch runner owns retries: a 429 must reach it with its Retry-After
            max_retries=0,
            metadata=request.metadata,
        )
        if request.model == LOCAL_MODEL:
            self.local()  # registers the provider (LiteLLM resolves it even for a mock answer); loads nothing
        if self._settings.mock_response is not None:
            kwargs["mock_response"] = self._settings.mock_response
            return kwargs
        if request.model == LOCAL_MODEL:
            return kwargs
        if self._settings.api_base:
            kwargs["api_base"] = self._settings.api_base
            key = self._settings.api_base_key
            kwargs["api_key"] = key.get_secret_value() if key else "not-needed"
        elif request.model.startswith("gemini/") and self._settings.gemini_api_key is not None:
            kwargs["api_key"] = self._settings.gemini_api_key.get_secret_value()
        return kwargs

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        litellm = self._litellm
        kwargs = self._call_kwargs(request)
        if "api_key" not in kwargs and "mock_response" not in kwargs and request.model != LOCAL_MODEL:
            ok, why = self.ready(request.model)
            if not ok:
                raise UpstreamUnavailable(f"{why} to use model {request.model}")
        stats = None
        if request.model == LOCAL_MODEL:
            from wattbench.service import local_llm

            stats = local_llm.GenerationStats()
            local_llm.current_stats.set(stats)  # this request's holder; the provider fills it in
        try:
            response = await litellm.acompletion(**kwargs)
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                choices = getattr(chunk, "choices", None) or []
                text = ""
                finish = None
                if choices:
                    delta = getattr(choices[0], "delta", None)
                    text = (getattr(delta, "content", None) or "") if delta is not None else ""
                    finish = getattr(choices[0], "finish_reason", None)
                event = StreamEvent(text=text, finish_reason=finish)
                if usage is not None and getattr(usage, "completion_tokens", None) is not None:
                    event.prompt_tokens = usage.prompt_tokens
                    event.completion_tokens = usage.completion_tokens
                if event.text or event.finish_reason or event.completion_tokens is not None:
                    yield event
            if stats is not None and stats.energy_method is not None:
                yield StreamEvent(energy_kwh=stats.energy_kwh, energy_method=stats.energy_method)
        except BackendError:
            raise
        except Exception as exc:
            raise translate_error(exc, request.model, self._settings) from exc


def _retry_after_s(exc: Exception) -> float | None:
    for holder in (getattr(exc, "response", None), exc):
        for attr in ("headers", "litellm_response_headers"):
            headers = getattr(holder, attr, None)
            if headers:
                try:
                    seconds = retry_after_s_of(headers)
                except (TypeError, ValueError, AttributeError):
                    seconds = None
                if seconds is not None:
                    return seconds
    return None


def translate_error(exc: Exception, model: str, settings: Settings) -> BackendError:
    """Map a LiteLLM / provider exception to the service's error, with a message that says what to fix."""
    import litellm

    name = type(exc).__name__
    detail = short(scrub(getattr(exc, "message", None) or str(exc), settings))
    if isinstance(exc, litellm.RateLimitError):
        return RateLimited(f"the provider rate-limited model {model}: {detail}", retry_after_s=_retry_after_s(exc))
    if isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)):
        var = key_variable(model, settings)
        return UpstreamUnavailable(f"the provider rejected the API key for {model}: check {var}")
    if isinstance(exc, litellm.Timeout):
        return UpstreamTimeout(
            f"model {model} did not answer within {settings.request_timeout_s:g} s "
            "(raise WATTBENCH_REQUEST_TIMEOUT_S or lower max_tokens)"
        )
    if isinstance(exc, (litellm.NotFoundError,)):
        return BadModelRequest(f"model {model} was not found by its provider: {detail}")
    if isinstance(exc, (litellm.ContextWindowExceededError, litellm.BadRequestError)):
        if "api key" in detail.lower() or "api_key" in detail.lower():
            return UpstreamUnavailable(f"no usable API key for {model}: set {key_variable(model, settings)}")
        if "LLM Provider NOT provided" in detail:
            return BadModelRequest(
                f"unknown model {model!r}: use a LiteLLM model string such as gemini/gemini-2.5-flash"
            )
        return BadModelRequest(f"the provider refused the request for {model}: {detail}")
    if isinstance(exc, litellm.APIConnectionError):
        where = settings.api_base or "the provider"
        return UpstreamUnavailable(f"cannot reach {where} for model {model}: {detail}")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status == 400:
        return BadModelRequest(f"the provider refused the request for {model}: {detail}")
    return UpstreamUnavailable(f"model {model} failed ({name}): {detail}")


def scrub(text: str, settings: Settings | None = None) -> str:
    """redact.scrub: every secret the process can hold (the settings' own included) masked."""
    extra = []
    if settings is not None:
        extra = [getattr(settings, name) for name in type(settings).model_fields]
        extra = [v for v in extra if hasattr(v, "get_secret_value")]
    return redact.scrub(text, extra=extra)
