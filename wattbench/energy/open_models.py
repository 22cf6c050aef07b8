"""Architecture shapes of well-known open-weight LLMs, and a resolver from LiteLLM model strings to them.

``load_open_models()`` reads and validates ``models.json`` (path in ``MODELS_JSON``);
``resolve_open_model("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct-FP8")`` returns the row, or ``None``;
``bytes_per_param_hint(model_string, row)`` reads the quantisation out of the string;
``roofline_kwargs(row)`` gives the shape keyword arguments of ``wattbench.energy.roofline.model_shape``.

Resolution is exact after normalisation, never fuzzy: a string that does not normalise to the
canonical form of a row's key or one of its aliases resolves to ``None``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattbench.paths import DATA_DIR

#: The data file: one row per open model, each citing its config.json.
MODELS_JSON = DATA_DIR / "models.json"
#: Size of a model that is not in models.json, in billions of (active) parameters, from the environment.
PARAMS_ENV = "WATTBENCH_MODEL_PARAMS_B"

HF_CONFIG_URL = "https://huggingface.co/{key}/blob/main/config.json"


class OpenModel(BaseModel):
    """One row of models.json: an open-weight model's architecture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
    aliases: tuple[str, ...] = ()
    arch: Literal["dense", "moe", "hybrid"]
    total_params_b: float = Field(gt=0)
    active_params_b: float = Field(gt=0)
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    num_experts: int | None = Field(default=None, gt=1)
    experts_per_token: int | None = Field(default=None, gt=0)
    max_position_embeddings: int = Field(gt=0)
    default_bytes_per_param: float = Field(gt=0, le=4)
    intermediate_size: int = Field(gt=0)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool
    provenance: Literal["stored", "mixed", "memory"]
    kv_lora_rank: int | None = Field(default=None, gt=0)       # MLA (DeepSeek) latent width
    qk_rope_head_dim: int | None = Field(default=None, gt=0)   # MLA decoupled rope key width
    num_attention_layers: int | None = Field(default=None, gt=0)  # hybrids: blocks that hold a KV cache
    vision_params_b: float | None = Field(default=None, ge=0)    # vision encoder counted in total_params_b
    notes: str | None = None
    sources: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> "OpenModel":
        if self.active_params_b > self.total_params_b:
            raise ValueError(f"active_params_b ({self.active_params_b}) exceeds total_params_b ({self.total_params_b})")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads ({self.num_kv_heads}) does not divide num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.arch == "moe":
            if self.num_experts is None or self.experts_per_token is None:
                raise ValueError("num_experts and experts_per_token are required when arch is 'moe'")
            if self.experts_per_token >= self.num_experts:
                raise ValueError(f"experts_per_token ({self.experts_per_token}) must be < num_experts ({self.num_experts})")
            if self.active_params_b >= self.total_params_b:
                raise ValueError("active_params_b must be < total_params_b for a mixture of experts")
        else:
            if self.num_experts is not None or self.experts_per_token is not None:
                raise ValueError(f"num_experts/experts_per_token must be null when arch is '{self.arch}'")
            if self.active_params_b != self.total_params_b:
                raise ValueError(f"active_params_b must equal total_params_b when arch is '{self.arch}'")
        if self.arch == "hybrid" and self.num_attention_layers is None:
            raise ValueError("num_attention_layers is required when arch is 'hybrid'")
        if self.num_attention_layers is not None and self.num_attention_layers > self.num_layers:
            raise ValueError("num_attention_layers exceeds num_layers")
        if (self.kv_lora_rank is None) != (self.qk_rope_head_dim is None):
            raise ValueError("kv_lora_rank and qk_rope_head_dim go together (MLA)")
        want = HF_CONFIG_URL.format(key=self.key)
        if self.sources.get("config") != want:
            raise ValueError(f"sources.config must be {want!r}")
        for field in ("shape", "params"):
            if not self.sources.get(field, "").strip():
                raise ValueError(f"sources.{field} must say where the numbers come from")
        return self

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None


class OpenModelsError(ValueError):
    """models.json is malformed; the message names the row and the field."""


def load_open_models(path: str | Path | None = None) -> dict[str, OpenModel]:
    """Rows of models.json (default ``MODELS_JSON``) by key, validated; raises OpenModelsError naming row and field."""
    path = Path(path) if path is not None else MODELS_JSON
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or "_about" not in data:
        raise OpenModelsError(f"{path}: expected an object with '_about' and a 'models' list")
    rows: dict[str, OpenModel] = {}
    for i, raw in enumerate(data["models"]):
        name = raw.get("key", "?") if isinstance(raw, dict) else "?"
        try:
            row = OpenModel.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"field '{'.'.join(str(p) for p in err['loc']) or '(row)'}': {err['msg']}" for err in exc.errors())
            raise OpenModelsError(f"{path.name} row {i} ({name}): {problems}") from None
        if row.key in rows:
            raise OpenModelsError(f"{path.name} row {i} ({name}): field 'key': duplicate key")
        rows[row.key] = row
    _build_index(tuple(rows.values()), path.name)  # fails on two rows that normalise to the same name
    return rows


# --------------------------------------------------------------------------------------------- resolution

# LiteLLM provider routes (first path segment) removed before matching. "openai/" is both a route and
# OpenAI's Hugging Face org; stripping it is harmless because the org is dropped anyway.
PROVIDER_PREFIXES = (
    "fireworks_ai/accounts/fireworks/models/", "accounts/fireworks/models/",
    "openai/", "hosted_vllm/", "vllm/", "ollama_chat/", "ollama/", "together_ai/", "together/", "groq/",
    "fireworks_ai/", "huggingface/", "hf/", "deepinfra/", "openrouter/", "text-completion-openai/",
    "nvidia_nim/", "nscale/", "novita/", "nebius/", "featherless_ai/", "lambda_ai/", "hyperbolic/",
    "cerebras/", "sambanova/", "lm_studio/", "llamafile/", "litellm_proxy/", "azure_ai/", "databricks/",
    "friendliai/", "baseten/", "replicate/", "anyscale/", "perplexity/", "cloudflare/", "watsonx/",
    "sagemaker/", "bedrock/", "vertex_ai/", "custom_openai/", "xinference/", "oobabooga/", "empower/",
)
OLLAMA_PREFIXES = ("ollama/", "ollama_chat/")
# OpenRouter variant suffixes written like an Ollama tag.
_ROUTER_TAGS = {"free", "nitro", "floor", "beta", "extended", "online", "thinking", "exacto"}
# Trailing name tokens that do not change the architecture: quantisation, packaging, tuning stage, dates.
_DROP_TOKEN = re.compile(
    r"[-_.](fp8(?:[-_]dynamic)?|fp16|bf16|fp4|mxfp4|nvfp4|int[48]|w\d+a\d+|awq|gptq|gguf|mlx|exl2|onnx|"
    r"bnb|nf4|\d+bits?|q\d(?:_k)?(?:_[a-z0-9]+)?|qat|quantized|dynamic|"
    r"instruct|it|chat|hf|base|pt|turbo|instant|versatile|thinking|\d{4})$")
# Ollama names whose untagged default is a different model from the same-named HF repo
# (ollama "deepseek-r1" = an 8B distill, not the 671B model).
_OLLAMA_DEFAULT_IS_OTHER = {"deepseek-r1"}


def _strip_provider(s: str) -> tuple[str, bool]:
    """(string without LiteLLM provider routes, whether an Ollama route was seen)."""
    ollama = False
    changed = True
    while changed:
        changed = False
        for p in PROVIDER_PREFIXES:
            if s.startswith(p):
                ollama = ollama or p in OLLAMA_PREFIXES
                s = s[len(p):]
                changed = True
                break
    return s, ollama


def _canon(name: str) -> str:
    """Canonical form used for matching: no org, no 'meta-', no quant/stage/date suffixes, 'llama-3.1' -> 'llama3.1'."""
    s = name.strip().lower().replace(" ", "-")
    s = s.rsplit("/", 1)[-1]
    if s.startswith("meta-llama-"):
        s = s[len("meta-"):]
    s = re.sub(r"v(\d+)p(\d+)", r"\1.\2", s)           # fireworks 'llama-v3p1-8b' -> 'llama-3.1-8b'
    prev = None
    while prev != s:
        prev = s
        s = _DROP_TOKEN.sub("", s)
    s = s.replace("_", "-")
    s = re.sub(r"(?<=[a-z])-(?=\d)", "", s)            # 'llama-3.1-8b' -> 'llama3.1-8b', 'phi-4' -> 'phi4'
    return s


def _ollama_canon(s: str) -> str | None:
    """'llama3.1:8b-instruct-q4_K_M' -> canonical 'llama3.1-8b'; tags without a size keep only the name."""
    name, _, tag = s.partition(":")
    tag = tag.lower()
    if tag in _ROUTER_TAGS or tag in ("", "latest"):
        return _canon(name)
    keep = []
    for tok in tag.split("-"):
        if re.fullmatch(r"\d+(\.\d+)?[bm]|\d+x\d+b|a\d+(\.\d+)?b|e\d+b|v\d+(\.\d+)?|scout|maverick|mini|small", tok):
            keep.append(tok)
    return _canon(name + ("-" + "-".join(keep) if keep else ""))


def _build_index(rows: tuple[OpenModel, ...], label: str = "models") -> dict[str, OpenModel]:
    index: dict[str, OpenModel] = {}
    for row in rows:
        names = {row.key, *row.aliases}
        forms = set()
        for n in names:
            forms.add(n.lower())
            forms.add(_ollama_canon(n) if ":" in n else _canon(n))
        for f in forms:
            other = index.get(f)
            if other is not None and other.key != row.key:
                raise OpenModelsError(f"{label}: rows {other.key} and {row.key} both answer to {f!r} "
                                      "(field 'aliases'); the resolver would be ambiguous")
            index[f] = row
    return index


@lru_cache(maxsize=1)
def _default_models() -> dict[str, OpenModel]:
    return load_open_models()


@lru_cache(maxsize=1)
def _default_index() -> dict[str, OpenModel]:
    return _build_index(tuple(_default_models().values()))


def resolve_open_model(model: str, models: dict[str, OpenModel] | None = None) -> OpenModel | None:
    """The row a LiteLLM model string names, or None. Exact match after normalisation; never a guess."""
    if not model or not model.strip():
        return None
    index = _default_index() if models is None else _build_index(tuple(models.values()))
    s, via_ollama = _strip_provider(model.strip())
    name, colon, tag = s.partition(":")
    if (via_ollama or colon) and tag.lower() in ("", "latest") and _canon(name) in _OLLAMA_DEFAULT_IS_OTHER:
        return None  # Ollama's untagged default is a different model
    if s.lower() in index:
        return index[s.lower()]
    return index.get(_ollama_canon(s) if colon else _canon(s))


# ------------------------------------------------------------------------------------ bytes per param

def bytes_per_param_hint(model_string: str, row: OpenModel | None = None, *, assume_ollama_q4: bool = False) -> float | None:
    """Weight bytes per parameter implied by the model string, else the row's default (None without a row).

    fp8 / int8 / w8a* / q8_* -> 1.0; 4-bit (awq, gptq-int4, int4, w4a*, q4_*, nf4, bnb-4bit, 4bit, mxfp4,
    nvfp4, fp4) -> 0.5; other GGUF k-quants q2..q6 -> bits/8; fp16 / bf16 -> 2.0. Plain AWQ and GPTQ are
    4-bit unless the string says otherwise. Ollama tags without a quantisation are Q4_K_M in the Ollama
    library; pass assume_ollama_q4=True to count them as 0.5 (off by default: the string does not say so).
    """
    s = model_string.lower()
    tokens = re.split(r"[-_./:]", s)
    m = re.search(r"(?:^|[-_./:])q([2-8])(?:_|$|[-./:])", s)
    if m:
        return int(m.group(1)) / 8
    m = re.search(r"(?:^|[-_./:])w(\d+)a\d+", s)
    if m:
        return int(m.group(1)) / 8
    if any(t in ("int4", "4bit", "nf4", "mxfp4", "nvfp4", "fp4", "awq") for t in tokens) or "gptq" in tokens and "int8" not in tokens:
        return 0.5
    if any(t in ("fp8", "int8", "8bit") for t in tokens):
        return 1.0
    if any(t in ("fp16", "bf16", "f16") for t in tokens):
        return 2.0
    if assume_ollama_q4 and (_strip_provider(model_string.strip())[1] or ":" in model_string):
        return 0.5
    return row.default_bytes_per_param if row is not None else None


# ------------------------------------------------------------------------------------------ roofline

def roofline_kwargs(row: OpenModel) -> dict:
    """Shape keyword arguments for wattbench.energy.roofline.model_shape / simulate_inference.

    The roofline sizes the KV cache as 2 x num_layers x num_kv_heads x head_dim values per token, so:
    - MLA rows (DeepSeek) report num_kv_heads=1 and head_dim=(kv_lora_rank + qk_rope_head_dim)/2, which makes
      2 x 1 x head_dim the 576 cached values per layer (the latent is replicated, not split, across TP ranks);
    - hybrid rows (Mamba + attention) keep num_layers = all blocks and scale head_dim by
      num_attention_layers / num_layers, so only the attention blocks' cache is counted (Mamba state ignored).
    Sliding-window layers (Gemma, gpt-oss) are not modelled: their KV cache is overestimated at long context.
    """
    kv_heads, head_dim = row.num_kv_heads, row.head_dim
    if row.is_mla:
        kv_heads, head_dim = 1, (row.kv_lora_rank + row.qk_rope_head_dim) // 2
    elif row.arch == "hybrid" and row.num_attention_layers:
        head_dim = max(1, round(row.head_dim * row.num_attention_layers / row.num_layers))
    return {
        "active_params_b": row.active_params_b,
        "total_params_b": row.total_params_b,
        "num_layers": row.num_layers,
        "hidden_size": row.hidden_size,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "num_experts": row.num_experts,
        "experts_per_token": row.experts_per_token,
    }


def shape_for_model(model: str | None, *, params_b: float | None = None,
                    environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str] | None:
    """What the roofline knows about `model`: (shape keyword arguments, where they came from), or None.

    In order: `params_b` (the caller's, e.g. `wattbench run --model-params-b`), a row of models.json that the
    LiteLLM model string names, then WATTBENCH_MODEL_PARAMS_B; None when nothing says how big the model is
    (the simulated lens then uses the original notebook's latency x TDP accounting, labelled as such).
    """
    if params_b is not None:
        return {"active_params_b": float(params_b), "total_params_b": float(params_b)}, "given size"
    row = resolve_open_model(model) if model else None
    if row is not None:
        return roofline_kwargs(row), f"models.json: {row.key}"
    raw = (os.environ if environ is None else environ).get(PARAMS_ENV, "").strip()
    if raw:
        try:
            size = float(raw)
        except ValueError:
            raise ValueError(f"{PARAMS_ENV}={raw!r} is not a number of billions of parameters, e.g. 8") from None
        if not (size > 0 and math.isfinite(size)):
            raise ValueError(f"{PARAMS_ENV} must be > 0 (billions of parameters), got {raw!r}")
        return {"active_params_b": size, "total_params_b": size}, PARAMS_ENV
    return None
