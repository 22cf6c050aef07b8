"""wattbench service: POST /chat, POST /batch, GET /health, plus smart_router and calculate_cost.

Start it with `uvicorn app:app` or `wattbench serve`. Every model call goes through the model
seam in backend.py (LiteLLM). Routes are thin: they validate, call one function, and map errors to HTTP.
Importing this module is cheap: LiteLLM is imported only when the first real backend is built.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator

from wattbench.config import LOCAL_MODEL, Settings, get_settings
from wattbench.paths import DATA_DIR
from wattbench.service.streaming import sse_response

log = logging.getLogger("wattbench.app")
ROUTES_FILE = DATA_DIR / "routes.json"

MAX_PROMPT_CHARS = 32_000
BLANK_PROMPT = "prompt must contain some non-whitespace text"


# ---- smart_router ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteDecision:
    route: str
    temperature: float
    reason: str


@dataclass(frozen=True)
class _Route:
    name: str
    temperature: float
    signals: tuple[tuple[re.Pattern[str], int], ...]


@lru_cache(maxsize=4)
def load_routes(path: Path = ROUTES_FILE) -> tuple[tuple[_Route, ...], str]:
    """Read the routes data file: (routes in tie-break order, fallback route name)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    routes = []
    for item in raw["routes"]:
        temperature = float(item["temperature"])
        if not 0.1 <= temperature <= 0.9:
            raise ValueError(f"{path}: route {item['name']}: temperature {temperature} is outside 0.1-0.9")
        signals = tuple((re.compile(s["pattern"], re.IGNORECASE), int(s["weight"])) for s in item["signals"])
        routes.append(_Route(item["name"], temperature, signals))
    fallback = raw["fallback"]
    if fallback not in {r.name for r in routes}:
        raise ValueError(f"{path}: fallback route {fallback!r} is not defined")
    return tuple(routes), fallback


def smart_router(prompt: str) -> RouteDecision:
    """Pick the route (and its temperature) for a prompt; `reason` names what matched."""
    routes, fallback = load_routes()
    best: tuple[int, _Route, list[str]] | None = None
    for route in routes:
        score, hits = 0, []
        for pattern, weight in route.signals:
            match = pattern.search(prompt)
            if match:
                score += weight
                hits.append(match.group(0).strip())
        if score > 0 and (best is None or score > best[0]):
            best = (score, route, hits)
    if best is None:
        route = next(r for r in routes if r.name == fallback)
        return RouteDecision(route.name, route.temperature, "no signal matched; default route")
    score, route, hits = best
    quoted = ", ".join(repr(h) for h in dict.fromkeys(hits))
    return RouteDecision(route.name, route.temperature, f"matched {quoted} (score {score})")


# ---- calculate_cost ----------------------------------------------------------------------------------
_warned_unpriced: set[str] = set()


def calculate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """API cost in USD from LiteLLM's maintained price map; 0 for the local model; None (and a warning)
    when the map has no price for the model."""
    if model == LOCAL_MODEL or model.startswith("wattbench-local/"):
        return 0.0
    import litellm

    try:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception as exc:  # litellm raises a bare Exception for unmapped models
        if "isn't mapped" not in str(exc) and "not mapped" not in str(exc) and "not found" not in str(exc).lower():
            raise
        if model not in _warned_unpriced:
            _warned_unpriced.add(model)
            message = f"no price known for model {model!r} in LiteLLM's price map; cost_usd is empty"
            log.warning(message)
            warnings.warn(message, stacklevel=2)
        return None
    return float(prompt_usd) + float(completion_usd)


def deprecation_notice(model: str) -> str | None:
    """A warning when LiteLLM's price map marks `model` deprecated (e.g. gemini-2.5-flash: 2026-12-01)."""
    if model == LOCAL_MODEL:
        return None
    import litellm

    entry = litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1]) or {}
    date = entry.get("deprecation_date")
    if not date:
        return None
    today = datetime.now(timezone.utc).date().isoformat()
    verb = "was deprecated on" if date <= today else "will be deprecated on"
    return f"{model} {verb} {date} according to LiteLLM's model map; set WATTBENCH_MODEL to a newer model"


# ---- timing ------------------------------------------------------------------------------------------
def timing_metrics(
    t_sent: float, t_first: float | None, t_end: float, completion_tokens: int
) -> dict[str, float | None]:
    """ttft_s, latency_s, tpot_s and tokens_per_s from clock readings (see README: metric definitions)."""
    latency = max(0.0, t_end - t_sent)
    ttft = max(0.0, (t_first if t_first is not None else t_end) - t_sent)
    tpot = (latency - ttft) / (completion_tokens - 1) if completion_tokens >= 2 else None
    tokens_per_s = completion_tokens / latency if latency > 0 else None
    return {"ttft_s": ttft, "latency_s": latency, "tpot_s": tpot, "tokens_per_s": tokens_per_s}


# ---- schemas -----------------------------------------------------------------------------------------
class ChatOptions(BaseModel):
    model: str | None = Field(None, min_length=1, max_length=200, description="LiteLLM model string")
    temperature: float | None = Field(None, ge=0, le=2, description="overrides the route's temperature")
    max_tokens: int | None = Field(None, ge=1, le=8192)
    system: str | None = Field(None, max_length=MAX_PROMPT_CHARS)


class ChatRequest(ChatOptions):
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    stream: bool = Field(False, description="answer as server-sent events (text as it comes, then the result); "
                         "see wattbench/service/streaming.py")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(BLANK_PROMPT)
        return value


class BatchRequest(ChatOptions):
    prompts: list[Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]] = Field(
        ..., min_length=1, max_length=100
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


class BatchResponse(BaseModel):
    results: list[ChatResponse | BatchItemError]


class HealthResponse(BaseModel):
    status: str
    model: str
    ready: bool
    detail: str
    auth_required: bool
    deprecation: str | None = None


# ---- dependencies ------------------------------------------------------------------------------------
def get_backend(request: Request) -> Any:
    """The model backend (real LiteLLM one, built once per app); tests override this dependency."""
    backend = getattr(request.app.state, "backend", None)
    if backend is None:
        from wattbench.service.passthrough import select_backend

        backend = request.app.state.backend = select_backend(get_settings())
    return backend


def get_clock() -> Callable[[], float]:
    """The monotonic clock used for every timing; tests override it with a scripted one."""
    return time.perf_counter


_bearer = HTTPBearer(auto_error=False)


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """When WATTBENCH_API_TOKEN is set, every route but /health needs `Authorization: Bearer <token>`."""
    expected = settings.api_token.get_secret_value() if settings.api_token else ""
    if not expected:
        return
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(
            401,
            "missing or wrong bearer token: send 'Authorization: Bearer <WATTBENCH_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


class ServiceError(Exception):
    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code, self.detail, self.headers = status_code, detail, headers or {}


# ---- the work ----------------------------------------------------------------------------------------
async def run_chat(
    prompt: str, options: ChatOptions, backend: Any, settings: Settings, clock: Callable[[], float]
) -> ChatResponse:
    """Route, call the model once (streaming), and measure it."""
    from wattbench.service.backend import BackendError, GenerationRequest

    request_id = uuid.uuid4().hex
    created_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    decision = smart_router(prompt)
    temperature = options.temperature if options.temperature is not None else decision.temperature
    model = options.model or settings.default_model()
    messages = ([{"role": "system", "content": options.system}] if options.system else []) + [
        {"role": "user", "content": prompt}
    ]
    gen = GenerationRequest(
        model=model,
        messages=messages,
        temperature=temperature,
        max_tokens=options.max_tokens or settings.default_max_tokens,
        metadata={
            "request_id": request_id,
            "route": decision.route,
            "temperature": temperature,
            "trace_name": "wattbench-chat",
            "generation_name": decision.route,
            "trace_id": request_id,
            "tags": [decision.route, model],
            "trace_metadata": {"request_id": request_id, "route": decision.route, "temperature": temperature},
        },
    )
    parts: list[str] = []
    t_first: float | None = None
    prompt_tokens = completion_tokens = None
    finish_reason = None
    energy_kwh = energy_method = None
    t_sent = clock()
    try:
        async for event in backend.stream(gen):
            if event.text:
                if t_first is None:
                    t_first = clock()
                parts.append(event.text)
            if event.finish_reason:
                finish_reason = event.finish_reason
            if event.completion_tokens is not None:
                prompt_tokens, completion_tokens = event.prompt_tokens, event.completion_tokens
            if event.energy_method is not None:
                energy_kwh, energy_method = event.energy_kwh, event.energy_method
    except BackendError as exc:
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else {}
        raise ServiceError(exc.status_code, exc.message, headers) from exc
    except asyncio.TimeoutError as exc:
        raise ServiceError(504, f"model {model} did not answer in time") from exc
    t_end = clock()
    text = "".join(parts)
    token_source = "provider"
    if completion_tokens is None:
        token_source = "estimated"
        prompt_tokens = backend.count_tokens(model, messages=messages)
        completion_tokens = backend.count_tokens(model, text=text) if text else 0
    prompt_tokens = int(prompt_tokens or 0)
    completion_tokens = int(completion_tokens)
    timing = timing_metrics(t_sent, t_first, t_end, completion_tokens)
    return ChatResponse(
        request_id=request_id,
        model=model,
        route=decision.route,
        route_reason=decision.reason,
        temperature=temperature,
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        token_source=token_source,
        cost_usd=calculate_cost(model, prompt_tokens, completion_tokens),
        created_at=created_at,
        finish_reason=finish_reason,
        measured_energy_kwh=energy_kwh,
        measured_energy_method=energy_method,
        model_params_b=backend.model_params_b(model),
        **timing,
    )


async def run_batch(
    body: BatchRequest, backend: Any, settings: Settings, clock: Callable[[], float]
) -> BatchResponse:
    """Every prompt once, at most `batch_concurrency` at a time; a failed item is an entry, not a failure."""
    limit = asyncio.Semaphore(settings.batch_concurrency)
    options = ChatOptions(**body.model_dump(include={"model", "temperature", "max_tokens", "system"}))

    async def one(index: int, prompt: str) -> ChatResponse | BatchItemError:
        if not prompt.strip():
            return BatchItemError(prompt_index=index, error=BLANK_PROMPT,
                                  status_code=422)
        async with limit:
            try:
                return await run_chat(prompt, options, backend, settings, clock)
            except ServiceError as exc:
                return BatchItemError(prompt_index=index, error=exc.detail, status_code=exc.status_code,
                                      retry_after=exc.headers.get("Retry-After"))

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(body.prompts)))
    return BatchResponse(results=list(results))


# ---- the app -----------------------------------------------------------------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI):
    """Build the real backend and load its model before serving (unless a test put a fake in), warn about a
    deprecated default, and trace to Langfuse when its keys are set; flush the traces on shutdown."""
    settings = get_settings()
    traced = False
    if get_backend not in app.dependency_overrides and getattr(app.state, "backend", None) is None:
        from wattbench.service import tracing
        from wattbench.service.local_llm import LocalModelError
        from wattbench.service.passthrough import select_backend

        app.state.backend = select_backend(settings)
        try:
            await asyncio.to_thread(app.state.backend.warm_up)
        except (LocalModelError, OSError) as exc:  # the service still starts; /health reports why
            log.error("the default model could not be loaded: %s", exc)
        notice = deprecation_notice(settings.default_model())
        if notice:
            log.warning(notice)
        traced = tracing.configure_tracing(settings)
    try:
        yield
    finally:
        if traced:  # uvicorn re-raises SIGTERM after shutdown, so atexit hooks would never flush
            await tracing.flush_tracing()
            tracing.shutdown_tracing()


app = FastAPI(title="wattbench", version="0.1.0", lifespan=lifespan,
              description="LLM serving benchmark: latency, cost, accuracy, energy and carbon.")


@app.exception_handler(ServiceError)
async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)


@app.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the service log"}, status_code=500)


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendDep = Annotated[Any, Depends(get_backend)]
ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


@app.get("/health", response_model=HealthResponse)
def health(settings: SettingsDep, backend: BackendDep,
           model: Annotated[str | None, Query(max_length=200, description="check this model, not the default")]
           = None) -> HealthResponse:
    model = model or settings.default_model()
    ready, detail = backend.ready(model)
    return HealthResponse(status="ok" if ready else "degraded", model=model, ready=ready, detail=detail,
                          auth_required=settings.api_token is not None, deprecation=deprecation_notice(model))


# The routes serialise their pydantic result once themselves (`_json`) instead of letting FastAPI validate it
# a second time against response_model (benchmarks/bench_service.py: ratio 1 went from 0.72 to 0.89 with this).
# The schemas still document the responses in OpenAPI.
def _json(model: BaseModel) -> Response:
    return Response(content=model.__pydantic_serializer__.to_json(model), media_type="application/json")


@app.post("/chat", response_model=None, responses={200: {"model": ChatResponse}},
          dependencies=[Depends(require_token)])
async def chat(body: ChatRequest, settings: SettingsDep, backend: BackendDep, clock: ClockDep) -> Response:
    if body.stream:  # opt-in: server-sent events, so the client times the first token itself
        return sse_response(lambda b: run_chat(body.prompt, body, b, settings, clock), backend, (ServiceError,))
    return _json(await run_chat(body.prompt, body, backend, settings, clock))


@app.post("/batch", response_model=None, responses={200: {"model": BatchResponse}},
          dependencies=[Depends(require_token)])
async def batch(body: BatchRequest, settings: SettingsDep, backend: BackendDep, clock: ClockDep) -> Response:
    return _json(await run_batch(body, backend, settings, clock))


class _ServeArgError(Exception):
    """Bad input for `wattbench serve`: one `error: ...` line, exit 2."""


class _ServeParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ServeArgError(message)


def cli_serve(argv: list[str]) -> int:
    """`wattbench serve [--host H] [--port P]`: run the service under uvicorn."""
    parser = _ServeParser(prog="wattbench serve", description="Run the wattbench service.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    try:
        args = parser.parse_args(argv)
        if not 0 < args.port < 65536:
            raise _ServeArgError(f"--port must be 1-65535, got {args.port}")
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            try:
                probe.bind((args.host, args.port))
            except OSError as exc:  # before loading the model, not after
                raise _ServeArgError(
                    f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port"
                ) from None
    except _ServeArgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run("wattbench.service.app:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0
