import json

import pytest

from wattbench.energy import open_models as om
from wattbench.energy.open_models import OpenModelsError, bytes_per_param_hint, load_open_models, resolve_open_model, roofline_kwargs

MODELS = load_open_models()

# (LiteLLM model string, expected key) -- hand-written
CASES = [
    ("openai/meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
    ("hosted_vllm/meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
    ("Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
    ("LLAMA-3.1-8B-INSTRUCT", "meta-llama/Llama-3.1-8B-Instruct"),
    ("ollama/llama3.1:8b", "meta-llama/Llama-3.1-8B-Instruct"),
    ("ollama_chat/llama3.1:8b-instruct-q4_K_M", "meta-llama/Llama-3.1-8B-Instruct"),
    ("ollama/llama3.1", "meta-llama/Llama-3.1-8B-Instruct"),
    ("llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct"),
    ("together_ai/meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", "meta-llama/Llama-3.1-70B-Instruct"),
    ("fireworks_ai/accounts/fireworks/models/llama-v3p1-405b-instruct", "meta-llama/Llama-3.1-405B-Instruct"),
    ("groq/llama-3.3-70b-versatile", "meta-llama/Llama-3.3-70B-Instruct"),
    ("hosted_vllm/RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8", "meta-llama/Llama-3.1-8B-Instruct"),
    ("vllm/hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "meta-llama/Llama-3.1-70B-Instruct"),
    ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", "meta-llama/Llama-3.2-3B-Instruct"),
    ("ollama/llama3.2:1b", "meta-llama/Llama-3.2-1B-Instruct"),
    ("openrouter/meta-llama/llama-4-maverick", "meta-llama/Llama-4-Maverick-17B-128E-Instruct"),
    ("together_ai/meta-llama/Llama-4-Scout-17B-16E-Instruct", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    ("ollama/llama4:scout", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-7B-Instruct"),
    ("huggingface/Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct"),
    ("bartowski/Qwen2.5-14B-Instruct-GGUF", "Qwen/Qwen2.5-14B-Instruct"),
    ("ollama/qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("qwen3:30b-a3b", "Qwen/Qwen3-30B-A3B"),
    ("ollama/qwen3:30b-a3b-q4_K_M", "Qwen/Qwen3-30B-A3B"),
    ("hosted_vllm/Qwen/Qwen3-30B-A3B-Instruct-2507-FP8", "Qwen/Qwen3-30B-A3B"),
    ("openrouter/qwen/qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B"),
    ("Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B"),
    ("qwen3:1.7b", "Qwen/Qwen3-1.7B"),
    ("mlx-community/Qwen3-4B-4bit", "Qwen/Qwen3-4B"),
    ("Qwen/Qwen3-8B-Base", "Qwen/Qwen3-8B"),
    ("deepinfra/Qwen/Qwen3-14B", "Qwen/Qwen3-14B"),
    ("Qwen/Qwen3-32B-AWQ", "Qwen/Qwen3-32B"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"),
    ("openrouter/mistralai/mistral-small-24b-instruct-2501:free", "mistralai/Mistral-Small-24B-Instruct-2501"),
    ("ollama/mixtral:8x7b", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ("mistralai/Mixtral-8x22B-Instruct-v0.1", "mistralai/Mixtral-8x22B-Instruct-v0.1"),
    ("gemma2:9b", "google/gemma-2-9b-it"),
    ("google/gemma-2-27b-it", "google/gemma-2-27b-it"),
    ("gemma3:27b", "google/gemma-3-27b-it"),
    ("ollama/gemma3:27b-it-qat", "google/gemma-3-27b-it"),
    ("lmstudio-community/gemma-3-12b-it-GGUF", "google/gemma-3-12b-it"),
    ("gemma3:1b", "google/gemma-3-1b-it"),
    ("google/gemma-3-4b-it", "google/gemma-3-4b-it"),
    ("microsoft/phi-4", "microsoft/phi-4"),
    ("ollama/phi4", "microsoft/phi-4"),
    ("phi3:mini", "microsoft/Phi-3-mini-4k-instruct"),
    ("microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3.5-mini-instruct"),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-ai/DeepSeek-V3"),
    ("openrouter/deepseek/deepseek-r1", "deepseek-ai/DeepSeek-R1"),
    ("together_ai/deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1"),
    ("gpt-oss:20b", "openai/gpt-oss-20b"),
    ("openai/gpt-oss-120b", "openai/gpt-oss-120b"),
    ("groq/openai/gpt-oss-120b", "openai/gpt-oss-120b"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("smollm2:360m", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    ("ollama/smollm2:1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    ("hosted_vllm/nvidia/NVIDIA-Nemotron-Nano-9B-v2", "nvidia/NVIDIA-Nemotron-Nano-9B-v2"),
]


@pytest.mark.parametrize("string,key", CASES)
def test_resolves(string, key):
    row = resolve_open_model(string)
    assert (row.key if row else None) == key


@pytest.mark.parametrize("string", [
    "gpt-4o", "openai/gpt-4o-mini", "claude-3-5-sonnet-20241022", "", "   ", "llama", "ollama/llama3:8b",
    "meta-llama/Meta-Llama-3-8B-Instruct",          # Llama 3 (8k context), not 3.1
    "mistralai/Mistral-7B-Instruct-v0.2",           # different vocab from v0.3
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",     # a distill, not R1
    "ollama/deepseek-r1", "deepseek-r1:8b", "deepseek-r1:latest",  # Ollama's deepseek-r1 default is a distill
    "qwen2.5-coder:7b", "Qwen/Qwen3-72B", "meta-llama/Llama-4-Behemoth", "qwen3:31b-a3b", "llama3.1:9b", "gemma3:28b", "gpt-oss:21b",
])
def test_unknown_returns_none(string):
    assert resolve_open_model(string) is None


def test_70b_is_never_8b():
    for s in ("llama3.1:70b", "ollama/llama3.1:70b-instruct-q4_K_M", "meta-llama/Llama-3.1-70B-Instruct",
              "groq/llama-3.1-70b-versatile", "llama-3.1-70b"):
        row = resolve_open_model(s)
        assert row is not None and row.key == "meta-llama/Llama-3.1-70B-Instruct", s
        assert row.num_layers == 80
    assert resolve_open_model("llama3.1:8b").num_layers == 32


def test_explicit_models_argument_is_used(tmp_path):
    only = {k: v for k, v in MODELS.items() if k.startswith("Qwen/")}
    assert resolve_open_model("llama3.1:8b", only) is None
    assert resolve_open_model("qwen3:8b", only).key == "Qwen/Qwen3-8B"


@pytest.mark.parametrize("string,expected", [
    ("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8", 1.0),
    ("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8-dynamic", 1.0),
    ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8", 1.0),
    ("RedHatAI/Qwen2.5-7B-Instruct-quantized.w8a8", 1.0),
    ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", 0.5),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", 0.5),
    ("ollama/llama3.1:8b-instruct-q4_K_M", 0.5),
    ("ollama/llama3.1:8b-instruct-q8_0", 1.0),
    ("ollama/llama3.1:8b-instruct-fp16", 2.0),
    ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", 0.5),
    ("meta-llama/Llama-3.1-8B-Instruct", 2.0),
    ("deepseek-ai/DeepSeek-V3", 1.0),   # row default: official FP8 release
    ("openai/gpt-oss-120b", 0.56),      # row default: MXFP4 experts
])
def test_bytes_per_param_hint(string, expected):
    row = resolve_open_model(string)
    assert row is not None
    assert bytes_per_param_hint(string, row) == pytest.approx(expected)


def test_bytes_hint_ollama_default_opt_in():
    row = resolve_open_model("ollama/llama3.1:8b")
    assert bytes_per_param_hint("ollama/llama3.1:8b", row) == 2.0
    assert bytes_per_param_hint("ollama/llama3.1:8b", row, assume_ollama_q4=True) == 0.5
    assert bytes_per_param_hint("some/unknown-model") is None


def test_roofline_kwargs_feed_the_simulator_signature():
    keys = {"active_params_b", "total_params_b", "num_layers", "hidden_size", "num_kv_heads", "head_dim",
            "num_experts", "experts_per_token"}
    for row in MODELS.values():
        kw = roofline_kwargs(row)
        assert set(kw) == keys
        assert kw["total_params_b"] >= kw["active_params_b"] > 0
    ds = roofline_kwargs(MODELS["deepseek-ai/DeepSeek-V3"])
    assert 2 * ds["num_kv_heads"] * ds["head_dim"] == 512 + 64          # MLA latent + rope key
    nano = MODELS["nvidia/NVIDIA-Nemotron-Nano-9B-v2"]
    kw = roofline_kwargs(nano)
    true_kv = 2 * nano.num_attention_layers * nano.num_kv_heads * nano.head_dim
    assert abs(2 * kw["num_layers"] * kw["num_kv_heads"] * kw["head_dim"] / true_kv - 1) < 0.05
    llama = roofline_kwargs(MODELS["meta-llama/Llama-3.1-8B-Instruct"])
    assert (llama["num_kv_heads"], llama["head_dim"], llama["num_experts"]) == (8, 128, None)


# ------------------------------------------------------------------------------------------ data checks

def test_enough_rows_and_required_families():
    assert len(MODELS) >= 30
    for key in ["meta-llama/Llama-3.1-405B-Instruct", "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
                "Qwen/Qwen3-235B-A22B", "mistralai/Mixtral-8x22B-Instruct-v0.1", "google/gemma-3-27b-it",
                "deepseek-ai/DeepSeek-R1", "openai/gpt-oss-20b", "HuggingFaceTB/SmolLM2-135M-Instruct",
                "nvidia/NVIDIA-Nemotron-Nano-9B-v2"]:
        assert key in MODELS


def _dense_params_b(r):
    attn = r.hidden_size * r.num_attention_heads * r.head_dim * 2 + r.hidden_size * r.num_kv_heads * r.head_dim * 2
    mlp = 3 * r.hidden_size * r.intermediate_size          # gated MLP: gate, up, down
    emb = r.vocab_size * r.hidden_size * (1 if r.tie_word_embeddings else 2)
    return (r.num_layers * (attn + mlp) + emb) / 1e9


@pytest.mark.parametrize("key", [k for k, r in MODELS.items() if r.arch == "dense"])
def test_dense_shape_reproduces_param_count(key):
    """Params recomputed from the config shape match the card's count: catches a mistyped layer/hidden/ff/vocab."""
    r = MODELS[key]
    est = _dense_params_b(r) + (r.vision_params_b or 0.0)
    # 3%: card counts are rounded (Qwen2.5-32B "32.5B" vs 32.76B computed); a mistyped layer count,
    # intermediate size, head count or an untied/tied embedding mix-up moves the estimate by more.
    assert est == pytest.approx(r.total_params_b, rel=0.03), f"{key}: shape gives {est:.2f}B, card {r.total_params_b}B"


@pytest.mark.parametrize("key", [k for k, r in MODELS.items() if r.arch == "dense"])
def test_dense_rule_of_thumb_within_factor(key):
    """12 x layers x hidden^2 + embeddings is within a factor 2.5 of the real count (the roofline's fallback).

    Gemma 2 27B (ffn = 8 x hidden) is the worst case at ~0.47x; a hidden size off by a factor 2 fails."""
    r = MODELS[key]
    est = (12 * r.num_layers * r.hidden_size ** 2 + r.vocab_size * r.hidden_size) / 1e9
    assert 0.4 < est / r.total_params_b < 2.5, f"{key}: {est:.2f}B vs {r.total_params_b}B"


def _moe_params_b(r):
    """All-layer-MoE estimate (Mixtral, Qwen3-MoE, gpt-oss): attention + routed experts + embeddings."""
    attn = r.hidden_size * r.num_attention_heads * r.head_dim * 2 + r.hidden_size * r.num_kv_heads * r.head_dim * 2
    expert = 3 * r.hidden_size * r.moe_intermediate_size
    emb = r.vocab_size * r.hidden_size * (1 if r.tie_word_embeddings else 2)
    total = r.num_layers * (attn + r.num_experts * expert) + emb
    # active counts the output projection but not the input-embedding lookup (gpt-oss card: 3.6B)
    active = r.num_layers * (attn + r.experts_per_token * expert) + r.vocab_size * r.hidden_size
    return total / 1e9, active / 1e9


@pytest.mark.parametrize("key", ["mistralai/Mixtral-8x7B-Instruct-v0.1", "mistralai/Mixtral-8x22B-Instruct-v0.1",
                                 "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B", "openai/gpt-oss-20b",
                                 "openai/gpt-oss-120b"])
def test_uniform_moe_shape_reproduces_total_and_active(key):
    r = MODELS[key]
    total, active = _moe_params_b(r)
    assert total == pytest.approx(r.total_params_b, rel=0.06), f"{key}: total {total:.1f}B"
    assert active == pytest.approx(r.active_params_b, rel=0.12), f"{key}: active {active:.2f}B"


def test_kv_heads_and_head_dim_consistent():
    for r in MODELS.values():
        assert r.num_attention_heads % r.num_kv_heads == 0, r.key
        # head_dim is hidden/heads unless the config sets it explicitly (Gemma, Qwen3, gpt-oss, Mistral Small, MLA)
        assert 32 <= r.head_dim <= 256, r.key


def test_every_row_cites_config_and_params():
    for r in MODELS.values():
        assert r.sources["config"] == f"https://huggingface.co/{r.key}/blob/main/config.json"
        if r.provenance == "memory":
            assert "from memory of" in r.sources["shape"], r.key
        if r.provenance == "mixed":
            assert "from memory of" in r.sources["shape"] or "not re-read" in r.sources["shape"], r.key


def test_file_has_about():
    data = json.loads(om.MODELS_JSON.read_text())
    assert data["_about"] and isinstance(data["models"], list)


# ------------------------------------------------------------------------------------------ validation

def _write(tmp_path, rows):
    p = tmp_path / "models.json"
    p.write_text(json.dumps({"_about": {"what": "test"}, "models": rows}))
    return p


def _good_row():
    return json.loads(om.MODELS_JSON.read_text())["models"][0]


def test_loads_a_good_temp_file(tmp_path):
    rows = load_open_models(_write(tmp_path, [_good_row()]))
    assert list(rows) == [_good_row()["key"]]


def test_validation_error_names_row_and_field(tmp_path):
    bad = _good_row()
    bad["num_kv_heads"] = "eight"
    with pytest.raises(OpenModelsError) as exc:
        load_open_models(_write(tmp_path, [_good_row() | {"key": "x/ok", "aliases": [], "sources": _good_row()["sources"] | {"config": "https://huggingface.co/x/ok/blob/main/config.json"}}, bad]))
    msg = str(exc.value)
    assert "row 1" in msg and bad["key"] in msg and "num_kv_heads" in msg


def test_validation_rejects_moe_without_experts(tmp_path):
    bad = _good_row() | {"arch": "moe", "active_params_b": 1.0}
    with pytest.raises(OpenModelsError) as exc:
        load_open_models(_write(tmp_path, [bad]))
    assert "row 0" in str(exc.value) and "num_experts" in str(exc.value)


def test_validation_rejects_wrong_config_url(tmp_path):
    bad = _good_row()
    bad["sources"] = dict(bad["sources"], config="https://example.com/config.json")
    with pytest.raises(OpenModelsError, match=r"row 0 .*sources"):
        load_open_models(_write(tmp_path, [bad]))


def test_validation_rejects_unknown_field(tmp_path):
    with pytest.raises(OpenModelsError, match="num_layerz"):
        load_open_models(_write(tmp_path, [_good_row() | {"num_layerz": 3}]))


def test_ambiguous_aliases_are_rejected(tmp_path):
    a = _good_row()
    b = json.loads(om.MODELS_JSON.read_text())["models"][1]
    b = dict(b, aliases=list(b["aliases"]) + ["llama3.1:8b"])   # already the 8B row's alias
    with pytest.raises(OpenModelsError, match="aliases"):
        load_open_models(_write(tmp_path, [a, b]))
