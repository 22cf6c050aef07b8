"""The service's request and response schemas (pydantic): /chat, /batch, /health and errors."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from wattbench.limits import MAX_BATCH_PROMPTS, MAX_PROMPT_CHARS

BLANK_PROMPT = "prompt must contain some non-whitespace text"


#: A LiteLLM model string, `[provider/]name`: starts with a letter, no blank, no empty part ("0" is no model:
#: refused as invalid, as the schema says, not as a model the provider does not know; issue 20).
MODEL_PATTERN = r"^[A-Za-z][^\s/]*(/[^\s/]+)*$"


class ChatOptions(BaseModel):
    model: str | None = Field(None, min_length=1, max_length=200, pattern=MODEL_PATTERN,
                              description="LiteLLM model string, [provider/]name")
    temperature: float | None = Field(None, ge=0, le=2, description="overrides the route's temperature")
    max_tokens: int | None = Field(None, ge=1, le=8192)
    system: str | None = Field(None, max_length=MAX_PROMPT_CHARS)

    @field_validator("temperature", "max_tokens", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        """JSON true/false is not a number (pydantic would read false as 0)."""
        if isinstance(value, bool):
            raise ValueError("must be a number, not true or false")
        return value


class ChatRequest(ChatOptions):
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    stream: bool = Field(False, strict=True, description="answer as server-sent events (text as it comes, then the result); "
                         "see wattbench/service/streaming.py")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(BLANK_PROMPT)
        return value


class BatchRequest(ChatOptions):
    prompts: list[Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]] = Field(
        ..., min_length=1, max_length=MAX_BATCH_PROMPTS
    )


class ChatResponse(BaseModel):
    request_id: str
    model: str
    route: str
    route_reason: str
    temperature: float
    text: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    token_source: str
    ttft_s: float
    latency_s: float
    tpot_s: float | None
    tokens_per_s: float | None
    cost_usd: float | None
    created_at: str
    finish_reason: str | None = None
    measured_energy_kwh: float | None = None
    measured_energy_method: str | None = None
    model_params_b: float | None = None


class BatchItemError(BaseModel):
    prompt_index: int
    error: str
    status_code: int
    retry_after: str | None = None
    retry_after_ms: int | None = None


class ErrorResponse(BaseModel):
    """Every error the service answers: one line saying what went wrong and what to do."""

    detail: str


class BatchResponse(BaseModel):
    results: list[ChatResponse | BatchItemError]


class HealthResponse(BaseModel):
    """Without the token (when one is set) only status, ready and auth_required; the rest needs the token."""

    status: str
    ready: bool
    auth_required: bool
    model: str | None = None
    detail: str | None = None
    deprecation: str | None = None
    # Why the default model is not the seed's Gemini model (it is past its deprecation date), in one line.
    model_note: str | None = None
