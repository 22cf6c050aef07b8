"""Counting tokens offline for workloads: the target's own tokenizer where one is at hand, else LiteLLM's
default counter, else a stated approximation.

In order (`token_counter(model, tokenizer)`):

1. `--tokenizer FILE`: a Hugging Face `tokenizer.json` (read with the `tokenizers` package);
2. the model's `tokenizer.json` in the local Hugging Face cache (`$HF_HOME/hub/models--ORG--NAME/...`), never
   downloaded;
3. LiteLLM's default counter for models it has no tokenizer for: tiktoken's `cl100k_base`, read from the copy
   LiteLLM ships (its `litellm_core_utils/tokenizers` folder), so nothing is fetched and LiteLLM itself is not
   imported (seconds of CPU);
4. 4 characters per token (OpenAI's rule of thumb for English text), said as such in `TokenCounter.name`.

The name of the counter used goes into the workload's manifest, so a report can say which tokens were counted.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: English text averages about 4 characters per token with GPT-style BPE tokenizers (OpenAI's tokenizer
#: help page: "one token generally corresponds to ~4 characters of text for common English text").
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class TokenCounter:
    """encode(text) -> token ids (or pseudo-ids), decode(ids) -> text; name says which counter it is."""

    name: str
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]

    def count(self, text: str) -> int:
        return len(self.encode(text))


def token_counter(model: str | None = None, tokenizer: str | os.PathLike[str] | None = None) -> TokenCounter:
    """The best counter available offline for `model` (see the module's docstring); ValueError for a
    --tokenizer file that cannot be read."""
    if tokenizer is not None:
        return _hf_counter(Path(tokenizer), f"tokenizer file {Path(tokenizer).name}")
    cached = _cached_tokenizer_json(model) if model else None
    if cached is not None:
        try:
            return _hf_counter(cached, f"{model} tokenizer (local Hugging Face cache)")
        except ValueError:
            pass  # a damaged cache entry: fall through to LiteLLM's counter
    return _tiktoken_counter() or _chars_counter()


def _hf_counter(path: Path, name: str) -> TokenCounter:
    if importlib.util.find_spec("tokenizers") is None:
        raise ValueError(f"--tokenizer {path} needs the tokenizers package (pip install tokenizers)")
    from tokenizers import Tokenizer  # ~0.1 s; only when a tokenizer file is used

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception subclasses
        raise ValueError(f"cannot read tokenizer {path} ({exc})") from None
    return TokenCounter(name, lambda text: tok.encode(text, add_special_tokens=False).ids,
                        lambda ids: tok.decode(ids))


def _cached_tokenizer_json(model: str) -> Path | None:
    """tokenizer.json of `model` in the local Hugging Face hub cache (no download), or None."""
    if "/" not in model:
        return None
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    repo = hub / ("models--" + model.strip("/").replace("/", "--"))
    found = sorted(repo.glob("snapshots/*/tokenizer.json")) if repo.is_dir() else []
    return found[-1] if found else None


def litellm_tiktoken_dir() -> Path | None:
    """The folder where LiteLLM ships tiktoken's encodings (found without importing LiteLLM)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def _tiktoken_counter() -> TokenCounter | None:
    folder = litellm_tiktoken_dir()
    if folder is None or importlib.util.find_spec("tiktoken") is None:
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(folder))  # LiteLLM sets the same; read, never fetched
    import tiktoken  # ~0.1 s

    try:
        enc = tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - offline and not cached: tiktoken raises requests' errors
        return None
    return TokenCounter("LiteLLM's default counter (tiktoken cl100k_base)",
                        lambda text: enc.encode(text, disallowed_special=()), lambda ids: enc.decode(ids))


def _chars_counter() -> TokenCounter:
    def encode(text: str) -> list[int]:
        return list(range((len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN))

    def decode(ids: list[int]) -> str:  # only used on text this counter cut: see workloads.synthetic_text
        raise NotImplementedError

    return TokenCounter(f"approximation: {CHARS_PER_TOKEN} characters per token (no tokenizer offline)",
                        encode, decode)
