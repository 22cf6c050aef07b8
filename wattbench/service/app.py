"""The wattbench service: POST /chat, POST /batch, GET /health (FastAPI).

Start it with `uvicorn app:app` or `wattbench serve`. Every model call goes through the model seam
(backend.py, or passthrough.py for OpenAI-compatible upstreams); routing (router.py), pricing (cost.py),
schemas (schemas.py) and the guard (guard.py) live beside it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from wattbench import __version__, redact
from wattbench.config import ConfigError, Settings, get_settings
from wattbench.protocol.metrics import timing_from_clock
from wattbench.protocol.openai_stream import StreamError, token_count
from wattbench.service import tracing
from wattbench.service.backend import BackendError, GenerationRequest
from wattbench.service.cost import calculate_cost, deprecation_notice
from wattbench.service.passthrough import select_backend
from wattbench.service.guard import OPEN_PATHS, GuardMiddleware, app_settings, token_ok
from wattbench.service.router import ROUTE_INLINE_CHARS, RouteDecision, smart_router
from wattbench.service.schemas import (
    BLANK_PROMPT,
    BatchItemError,
    BatchRequest,
    BatchResponse,
    ChatOptions,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    HealthResponse,
)
from wattbench.service.streaming import sse_response

log = logging.getLogger("wattbench.app")


redact.install_log_scrubbing()  # every log line and traceback of the service process is masked








# The dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, and three such trips
# per request (settings, backend, clock) were the service's warm-up under load: 64 requests arriving together
# queued for the pool's 40 threads, which were started as they were first needed, and each trip waited for the
# GIL and the loop (benchmarks/bench_load.py: the first waves' service_overhead_s).
async def get_backend(request: Request) -> Any:
    """The model backend (real LiteLLM one, built once per app); tests override this dependency."""
    backend = getattr(request.app.state, "backend", None)
    if backend is None:
        backend = request.app.state.backend = select_backend(get_settings())
    return backend


async def get_clock() -> Callable[[], float]:
    """The monotonic clock used for every timing; tests override it with a scripted one."""
    return time.perf_counter


class ServiceError(Exception):
    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code, self.detail, self.headers = status_code, detail, headers or {}


async def run_chat(
    prompt: str, options: ChatOptions, backend: Any, settings: Settings, clock: Callable[[], float]
) -> ChatResponse:
    """Route, call the model once (streaming), and measure it."""
    request_id = uuid.uuid4().hex
    created_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    decision = await route(prompt)
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
            if event.completion_tokens is not None:  # checked whatever the backend: LiteLLM passes -5 on
                prompt_tokens = token_count(event.prompt_tokens, "prompt_tokens")
                completion_tokens = token_count(event.completion_tokens, "completion_tokens")
            if event.energy_method is not None:
                energy_kwh, energy_method = event.energy_kwh, event.energy_method
    except BackendError as exc:
        raise ServiceError(exc.status_code, exc.message, exc.retry_headers()) from exc
    except StreamError as exc:  # an impossible token count: the answer is not one (issue 20 item 5)
        raise ServiceError(502, f"model {model} failed (APIError): the provider sent {exc}") from exc
    except asyncio.TimeoutError as exc:
        raise ServiceError(504, f"model {model} did not answer in time") from exc
    t_end = clock()
    if not parts and completion_tokens is None:  # LiteLLM makes "stop" of an HTML page or a JSON where a stream
        raise ServiceError(502, f"model {model} failed (APIError): the provider sent no text and no usage "
                           "(not a chat completions stream)")
    text = redact.mask_secrets("".join(parts))  # a provider that echoes its key in the answer does not leak it
    token_source = "provider"
    if completion_tokens is None:
        token_source = "estimated"
        prompt_tokens, completion_tokens = await _off_loop_if_long(
            len(prompt) + len(text), _estimate_tokens, backend, model, messages, text
        )
    prompt_tokens = int(prompt_tokens or 0)
    completion_tokens = int(completion_tokens)
    timing = timing_from_clock(t_sent, t_first, t_end, completion_tokens)
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


async def route(prompt: str) -> RouteDecision:
    """smart_router, in a worker thread for a long prompt (RE2 is linear, but 100 prompts of 32k characters
    are still CPU work that must not hold up the event loop)."""
    return await _off_loop_if_long(len(prompt), smart_router, prompt)


async def _off_loop_if_long(size: int, func: Callable[..., Any], *args: Any) -> Any:
    if size <= ROUTE_INLINE_CHARS:
        return func(*args)
    return await asyncio.to_thread(func, *args)


def _estimate_tokens(backend: Any, model: str, messages: list[dict[str, str]], text: str) -> tuple[int, int]:
    return backend.count_tokens(model, messages=messages), (backend.count_tokens(model, text=text) if text else 0)


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
                ms = exc.headers.get("retry-after-ms")
                return BatchItemError(prompt_index=index, error=redact.scrub(exc.detail),
                                      status_code=exc.status_code, retry_after=exc.headers.get("Retry-After"),
                                      retry_after_ms=int(ms) if ms else None)

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(body.prompts)))
    return BatchResponse(results=list(results))


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Say why the default model is not the seed's (its successor) and warn about a deprecated one; build the
    real backend and load its model before serving (unless a test put a fake in); trace to Langfuse when its
    keys are set; flush the traces on shutdown."""
    try:
        settings = app_settings(app)
    except ConfigError as exc:  # one line in the log and exit 2, not a traceback
        log.error("%s", exc)
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(2)
    for notice in (settings.default_model_note(), deprecation_notice(settings.default_model())):
        if notice:  # one line each: the default's successor, a deprecated model
            log.warning(notice)
    traced = False
    if get_backend not in app.dependency_overrides and getattr(app.state, "backend", None) is None:
        from wattbench.service.local_llm import LocalModelError  # deferred: imports LiteLLM (seconds)

        app.state.backend = select_backend(settings)
        try:
            await asyncio.to_thread(app.state.backend.warm_up)
        except (LocalModelError, OSError) as exc:  # the service still starts; /health reports why
            log.error("the default model could not be loaded: %s", exc)
        traced = tracing.configure_tracing(settings)
    try:
        yield
    finally:
        if traced:  # uvicorn re-raises SIGTERM after shutdown, so atexit hooks would never flush
            await tracing.flush_tracing()
            tracing.shutdown_tracing()


app = FastAPI(title="wattbench", version=__version__, lifespan=lifespan,
              description="LLM serving benchmark: latency, cost, accuracy, energy and carbon.")


app.add_middleware(GuardMiddleware)


def _error_json(status_code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": redact.scrub(detail)}, status_code=status_code, headers=headers)


@app.exception_handler(ServiceError)
async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return _error_json(exc.status_code, exc.detail, exc.headers)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error_json(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "string_pattern_mismatch" and where.endswith("model"):
            message = "not a model string: use [provider/]name, such as gemini/gemini-2.5-flash"
        problems.append(f"{where}: {message}")
    return _error_json(422, "invalid request: " + "; ".join(problems))


@app.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return _error_json(500, f"internal error ({type(exc).__name__}); see the service log")


async def route_settings(request: Request) -> Settings:
    """get_settings (or a test's override of it), on the loop rather than in the thread pool."""
    return app_settings(request.app)


SettingsDep = Annotated[Settings, Depends(route_settings)]


BackendDep = Annotated[Any, Depends(get_backend)]


ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "the body is not readable (not UTF-8 JSON)",
        401: "missing or wrong bearer token (only when WATTBENCH_API_TOKEN is set)",
        413: "the body is over the size limit",
        422: "invalid request (the detail names each field), or a model the provider does not know",
        429: "the provider rate-limited the model; wait Retry-After seconds (retry-after-ms: milliseconds)",
        500: "an unexpected error in the service (see its log)",
        502: "the provider failed or is unreachable, or its key is missing or rejected",
        504: "the model did not answer in time",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": what[code]}
        if code == 429:
            entry["headers"] = {
                "Retry-After": {"description": "whole seconds to wait", "schema": {"type": "string"}},
                "retry-after-ms": {"description": "milliseconds to wait", "schema": {"type": "string"}},
            }
        if code == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[code] = entry
    return out


@app.get("/health", response_model=HealthResponse, responses=_error_responses(422, 500))
def health(request: Request, settings: SettingsDep, backend: BackendDep,
           model: Annotated[str | None, Query(max_length=200, description="check this model, not the default "
                                                                          "(needs the token when one is set)")]
           = None) -> Any:
    """Open to everyone. Without the token (when WATTBENCH_API_TOKEN is set) it says only status, ready and
    auth_required, for the default model; with it (or with auth off) also the model, why it is (not) ready and
    any deprecation, every secret masked."""
    auth_required = settings.auth_required
    if not token_ok(request.headers.get("authorization"), settings):
        ready, _ = backend.ready(settings.default_model())
        return JSONResponse({"status": "ok" if ready else "degraded", "ready": ready, "auth_required": auth_required})
    note = settings.default_model_note() if model is None else None
    model = model or settings.default_model()
    ready, detail = backend.ready(model)
    return HealthResponse(status="ok" if ready else "degraded", model=model, ready=ready,
                          detail=redact.scrub(detail), auth_required=auth_required,
                          deprecation=deprecation_notice(model), model_note=note)


# The routes serialise their pydantic result once themselves (`_json`) instead of letting FastAPI validate it
# a second time against response_model (benchmarks/bench_service.py: ratio 1 went from 0.72 to 0.89 with this).
# The schemas still document the responses in OpenAPI.
def _json(model: BaseModel) -> Response:
    return Response(content=model.__pydantic_serializer__.to_json(model), media_type="application/json")


_CHAT_ERRORS = _error_responses(400, 401, 413, 422, 429, 500, 502, 504)


_BATCH_ERRORS = _error_responses(400, 401, 413, 422, 500)


_CHAT_200 = {
    "model": ChatResponse,
    "description": "the answer as JSON; with \"stream\": true, server-sent events (data: {\"text\"}, then "
                   "event: result with this JSON, or event: error with {status_code, detail, retry_after, "
                   "retry_after_ms})",
    # each event's data is a JSON object: {"text": ...}, the ChatResponse, or the error
    "content": {"text/event-stream": {"schema": {"type": "object"}}},
}


#: What a JSON route answers when its client left before the answer (nginx's "client closed request"):
#: nobody reads it; the model call was cancelled.
CLIENT_GONE = 499


async def _client_gone(request: Request) -> None:
    """Return once the client has closed the connection (the body was read before: only a disconnect comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _while_connected(request: Request, work: Awaitable[BaseModel]) -> Response:
    """`work` as JSON, cancelled as soon as its client has gone: a JSON /chat must not keep reading its upstream
    for nobody (a streamed /chat is cancelled by the response itself; issue 20)."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)
    if task.cancelled():
        return Response(status_code=CLIENT_GONE)
    return _json(task.result())


@app.post("/chat", response_model=None, responses={200: _CHAT_200, **_CHAT_ERRORS})
async def chat(request: Request, body: ChatRequest, settings: SettingsDep, backend: BackendDep,
               clock: ClockDep) -> Response:
    if body.stream:  # opt-in: server-sent events, so the client times the first token itself
        return sse_response(lambda b: run_chat(body.prompt, body, b, settings, clock), backend, (ServiceError,))
    return await _while_connected(request, run_chat(body.prompt, body, backend, settings, clock))


@app.post("/batch", response_model=None, responses={200: {"model": BatchResponse}, **_BATCH_ERRORS})
async def batch(request: Request, body: BatchRequest, settings: SettingsDep, backend: BackendDep,
                clock: ClockDep) -> Response:
    return await _while_connected(request, run_batch(body, backend, settings, clock))


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the service as configured: the bearer scheme (and the 401s) only when a token is
    set, every error as {"detail": "<one line>"}."""
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    paths = document.get("paths", {})
    for path, operations in paths.items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if not settings.auth_required or path in OPEN_PATHS:
                responses.pop("401", None)
            elif path not in OPEN_PATHS:
                operation["security"] = [{"bearerAuth": []}]
    if settings.auth_required:
        components = document.setdefault("components", {})
        components["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "WATTBENCH_API_TOKEN"}
        }
    return document


def _openapi() -> dict[str, Any]:
    settings = app_settings(app)
    key = settings.auth_required
    cached = getattr(app.state, "openapi_cache", None)
    if cached is None or cached[0] != key:
        cached = app.state.openapi_cache = (key, openapi_document(settings))
    return cached[1]


app.openapi = _openapi  # type: ignore[method-assign]
