"""The predictive model: a roofline of LLM serving (simulate_inference), calibrated on measured GPU energy.

Shape of the model (unchanged): prefill is compute-bound, decode bandwidth-bound; the weights are read once
per step and shared by the batch, the KV cache is read per sequence; a mixture of experts reads the experts its
tokens touch; 1-byte weights use fp8 tensor peaks; tensor parallelism adds two all-reduces per layer; every
step pays a fixed CPU-side overhead plus a per-sequence one and a fixed kernel time per layer; board power
lies between idle and TDP as a function of how busy HBM, the tensor cores and the latency-bound kernels are.

Fitted values live in efficiency.json next to this file (method, data and leave-one-model-out errors are in
its `_about`); this module holds no measured-model names and no per-model tables.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wattbench.energy.accounting import carbon_gco2e, energy_cost_usd, gpu_power_w
from wattbench.energy.hardware import (
    HARDWARE_LIFETIME_S,
    HOST_W_PER_GPU,
    J_PER_KWH,
    SERVER_EMBODIED_KGCO2E_PER_GPU,
    Datacenter,
    GPUSpec,
    find_gpu,
    load_datacenters,
    load_gpus,
    lookup,
)
from wattbench.paths import DATA_DIR


class ModelDoesNotFitError(ValueError):
    """The model's weights plus one sequence's KV cache do not fit in the chosen GPUs."""

    def __init__(self, message: str, min_gpus: int | None) -> None:
        super().__init__(message)
        self.min_gpus = min_gpus


#: Fitted values (efficiency.json, same folder): NOMINAL / OPTIMISTIC / PESSIMISTIC and per-GPU factors.
EFFICIENCY_PATH = DATA_DIR / "efficiency.json"

#: vLLM's default gpu_memory_utilization (vllm EngineArgs, 0.9): the share of GPU memory it claims.
USABLE_MEMORY_FRACTION = 0.90
#: Per-GPU memory kept for activations, CUDA graphs and the allocator; approx., vLLM's start-up profiling
#: typically finds 1-4 GiB for 8B-70B models.
ACTIVATION_RESERVE_GIB = 2.0
GIB = 2 ** 30
#: Layer count of a dense decoder as a function of its size, fitted to Llama-3.x 1B (16 layers), 8B (32)
#: and 405B (126) (their config.json): layers = 15.5 x params_b ** 0.349. For a mixture of experts the
#: size used is sqrt(total x active). Pass num_layers when you know it. (Kept: a log-log fit to 22 other dense
#: configs, Qwen2.5/Qwen3/Llama-2/Mistral/Gemma-2/Phi-3, gives 21.3 x P ** 0.268, no closer on big models.)
LAYERS_COEFF, LAYERS_EXPONENT = 15.5, 0.349
#: Parameters per layer ~ 12 x hidden^2 (attention 4 h^2 + MLP 8 h^2, Kaplan et al. 2020, arXiv:2001.08361).
PARAMS_PER_LAYER_PER_HIDDEN2 = 12.0
#: Share of a mixture-of-experts model's active parameters that every token uses (attention, embeddings,
#: shared experts): from config.json of Mixtral-8x7B (0.12), Qwen3-30B-A3B (0.45), Qwen3-235B-A22B (0.35),
#: gpt-oss-120b (0.29), DeepSeek-V3 (0.45); rounded mean 0.35.
MOE_SHARED_FRACTION_OF_ACTIVE = 0.35
#: KV heads (x 128 head dim) when not given: 8 for dense models (Llama 3.x, Qwen2.5/3 dense >= 8B, Mistral)
#: and 4 for a mixture of experts (Qwen3-30B-A3B and -235B-A22B config.json; DeepSeek's MLA cache is smaller).
DEFAULT_KV_HEADS_DENSE, DEFAULT_KV_HEADS_MOE = 8, 4
#: Valid tensor-parallel sizes tried when looking for the smallest GPU count that fits.
TP_SIZES = (1, 2, 4, 8, 16, 32, 64)
#: Bytes of one activation value in the all-reduce messages (bf16 activations, also with fp8 weights).
ACTIVATION_BYTES = 2.0


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks, fixed overheads, and the power model's coefficients.

    Fitted fields (efficiency.json gives the values, bounds and the fit's provenance):
    * hbm_fraction: share of datasheet HBM bandwidth that weight streaming reaches (bounds 0.5-0.95).
    * kv_hbm_fraction: share of HBM bandwidth reached by paged-attention KV reads (0.3-0.9).
    * mfu: share of the dense bf16 tensor peak reached by a serving step's matmuls (0.2-0.8).
    * fp8_mfu_factor: share of bf16's MFU that fp8 GEMMs reach of their (2x) peak (0.5-1).
    * fp8_hbm_factor: weight-streaming efficiency of fp8 (scaled) GEMMs relative to bf16 ones (0.5-1).
    * moe_compute_factor: grouped expert GEMMs' efficiency relative to dense GEMMs (0.2-1).
    * moe_hbm_factor: bandwidth efficiency of expert weight reads relative to dense ones (0.5-1).
    * allreduce_latency_nvlink_s: fixed time of one small all-reduce over NVLink (5-60 us).
    * step_overhead_s, per_sequence_overhead_s: the server's CPU work per step (0-6 ms) and per running
      sequence (0-60 us): scheduling, input preparation, sampling, detokenisation.
    * layer_kernel_s, moe_layer_kernel_s: fixed time per layer that no bandwidth removes (launch, norms,
      rotary, routing and token sorting for a MoE layer) (0-100 us; 0-300 us).
    * power_memory_coeff, power_compute_coeff, power_sync_coeff: share of (TDP - idle) drawn while HBM
      streams, while tensor cores are busy, and while latency-bound kernels / all-reduces run (0-1 each);
      combined as 1 - (1 - a_m m)(1 - a_c c)(1 - a_s s).
    Fixed fields (not fitted):
    * link_fraction 0.7, allreduce_latency_pcie_s 30 us: NCCL / vLLM custom all-reduce reach ~70% of
      NVLink bandwidth; small-message latency over PCIe ~30 us (nccl-tests, approx.; no PCIe rows in the data).
    * max_batched_tokens 8192: vLLM's default token budget per step for chunked prefill (approx.).
    * roofline_sharpness 4: memory and compute overlap imperfectly; step = (m^k + c^k)^(1/k).
    """

    hbm_fraction: float
    kv_hbm_fraction: float
    mfu: float
    fp8_mfu_factor: float
    fp8_hbm_factor: float
    moe_compute_factor: float
    moe_hbm_factor: float
    allreduce_latency_nvlink_s: float
    step_overhead_s: float
    per_sequence_overhead_s: float
    layer_kernel_s: float
    moe_layer_kernel_s: float
    power_memory_coeff: float
    power_compute_coeff: float
    power_sync_coeff: float
    link_fraction: float = 0.70
    allreduce_latency_pcie_s: float = 30e-6
    max_batched_tokens: int = 8192
    roofline_sharpness: float = 4.0


@dataclass(frozen=True)
class GPUFactors:
    """Per-GPU corrections to an Efficiency set (software maturity of a GPU generation), fitted per GPU key.

    hbm_factor multiplies the achieved bandwidth fractions (0.6-1.1, result capped at 0.95 of datasheet);
    kernel_factor multiplies the fixed per-layer kernel time (0.5-2); power_factor multiplies the power
    coefficients (0.5-1.5, result capped at 1). GPUs not in the data use `default` (H100's, the reference).
    """

    hbm_factor: float = 1.0
    kernel_factor: float = 1.0
    power_factor: float = 1.0


#: Cap on any achieved share of datasheet HBM bandwidth after all factors (STREAM-like kernels reach ~0.95).
MAX_HBM_FRACTION = 0.95


def load_efficiency(path: Path | str = EFFICIENCY_PATH) -> dict[str, Any]:
    """efficiency.json as a dict: `nominal`, `optimistic`, `pessimistic` (Efficiency fields) and `gpu_factors`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def efficiency_from_dict(values: Mapping[str, Any]) -> Efficiency:
    """An Efficiency from a mapping of its field names (keys starting with '_' are comments)."""
    names = {f.name for f in fields(Efficiency)}
    return Efficiency(**{k: v for k, v in values.items() if k in names})


def gpu_factors_from_dict(table: Mapping[str, Any]) -> dict[str, GPUFactors]:
    """GPU key -> GPUFactors, with 'default' for GPUs the data did not cover."""
    names = {f.name for f in fields(GPUFactors)}
    return {key: GPUFactors(**{k: v for k, v in row.items() if k in names})
            for key, row in table.items() if not key.startswith("_")}


_FITTED = load_efficiency()
NOMINAL = efficiency_from_dict(_FITTED["nominal"])
#: The fast, frugal end of the range (min energy / latency); derived from the LOMO residual spread.
OPTIMISTIC = efficiency_from_dict(_FITTED["optimistic"])
#: The slow, power-hungry end of the range (max energy / latency); derived from the LOMO residual spread.
PESSIMISTIC = efficiency_from_dict(_FITTED["pessimistic"])
GPU_FACTORS: dict[str, GPUFactors] = gpu_factors_from_dict(_FITTED["gpu_factors"])


def gpu_factors(gpu: GPUSpec, table: Mapping[str, GPUFactors] | None = None) -> GPUFactors:
    """The GPU's fitted factors, or the table's 'default' for a GPU the calibration data did not cover."""
    table = GPU_FACTORS if table is None else table
    return table.get(gpu.key) or table.get("default") or GPUFactors()


@dataclass(frozen=True)
class ModelShape:
    """What the roofline needs to know about a transformer; derived from its size when not given."""

    active_params_b: float
    total_params_b: float
    num_layers: int
    hidden_size: int
    num_kv_heads: int
    head_dim: int
    kv_bytes_per_value: float
    shared_params_b: float          # read by every token (all of a dense model)
    routed_fraction_per_token: float  # share of the routed (expert) weights one token touches; 1.0 if dense

    @property
    def is_moe(self) -> bool:
        return self.routed_fraction_per_token < 1.0


def default_num_layers(active_params_b: float, total_params_b: float) -> int:
    """Layer count estimated from the parameter count (LAYERS_COEFF x size ** LAYERS_EXPONENT)."""
    size_b = total_params_b if total_params_b <= active_params_b else math.sqrt(total_params_b * active_params_b)
    return max(1, round(LAYERS_COEFF * size_b ** LAYERS_EXPONENT))


def default_hidden_size(active_params_b: float, num_layers: int) -> int:
    """Hidden size from params ~ 12 x layers x hidden^2."""
    return max(64, round(math.sqrt(active_params_b * 1e9 / (PARAMS_PER_LAYER_PER_HIDDEN2 * num_layers))))


def model_shape(*, active_params_b: float, total_params_b: float | None = None, num_layers: int | None = None,
                hidden_size: int | None = None, num_kv_heads: int | None = None, head_dim: int = 128,
                kv_bytes_per_value: float = 2.0, num_experts: int | None = None,
                experts_per_token: int | None = None) -> ModelShape:
    """The model's shape, with documented defaults for what is not given (DEFAULT_KV_HEADS_*, LAYERS_*)."""
    total = active_params_b if total_params_b is None else total_params_b
    if total < active_params_b:
        raise ValueError(f"total_params_b ({total:g}) must be >= active_params_b ({active_params_b:g})")
    layers = num_layers or default_num_layers(active_params_b, total)
    hidden = hidden_size or default_hidden_size(active_params_b, layers)
    dense = total <= active_params_b * 1.0001
    if num_kv_heads is None:
        num_kv_heads = DEFAULT_KV_HEADS_DENSE if dense else DEFAULT_KV_HEADS_MOE
    if dense:
        return ModelShape(active_params_b, total, layers, hidden, num_kv_heads, head_dim, kv_bytes_per_value,
                          shared_params_b=total, routed_fraction_per_token=1.0)
    shared = MOE_SHARED_FRACTION_OF_ACTIVE * active_params_b
    if num_experts and experts_per_token:
        fraction = experts_per_token / num_experts
    else:
        fraction = (active_params_b - shared) / (total - shared)
    return ModelShape(active_params_b, total, layers, hidden, num_kv_heads, head_dim, kv_bytes_per_value,
                      shared_params_b=shared, routed_fraction_per_token=min(max(fraction, 1e-6), 1.0))


def kv_bytes_per_token(shape: ModelShape) -> float:
    """KV-cache bytes one token occupies across all GPUs: 2 (K, V) x layers x KV heads x head dim x bytes."""
    return 2.0 * shape.num_layers * shape.num_kv_heads * shape.head_dim * shape.kv_bytes_per_value


def kv_shards(shape: ModelShape, num_gpus: int) -> int:
    """Ways the KV cache is split by tensor parallelism (KV heads are replicated beyond their count)."""
    return max(1, min(num_gpus, shape.num_kv_heads))


def weights_gb(shape: ModelShape, bytes_per_param: float) -> float:
    """Weight bytes of the whole model, in GB (1e9)."""
    return shape.total_params_b * bytes_per_param


def kv_capacity_bytes_per_gpu(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float) -> float:
    """Memory left per GPU for the KV cache after weights and the activation reserve (may be negative)."""
    usable = USABLE_MEMORY_FRACTION * gpu.memory_gb * GIB - ACTIVATION_RESERVE_GIB * GIB
    return usable - weights_gb(shape, bytes_per_param) * 1e9 / num_gpus


def fits(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, context_tokens: int) -> bool:
    """Whether the weights plus the KV cache of one `context_tokens` sequence fit in the GPUs."""
    per_gpu_kv = kv_bytes_per_token(shape) / kv_shards(shape, num_gpus) * context_tokens
    return kv_capacity_bytes_per_gpu(gpu, num_gpus, shape, bytes_per_param) >= per_gpu_kv


def min_gpus_that_fit(gpu: GPUSpec, shape: ModelShape, bytes_per_param: float, context_tokens: int) -> int | None:
    """The smallest tensor-parallel GPU count (a power of two) that fits the model, or None beyond 64."""
    return next((n for n in TP_SIZES if fits(gpu, n, shape, bytes_per_param, context_tokens)), None)


def moe_fraction_touched(routed_fraction_per_token: float, tokens: float) -> float:
    """Expected share of expert weights read in a step of `tokens` tokens: 1 - (1 - p) ** tokens."""
    if routed_fraction_per_token >= 1.0:
        return 1.0
    return 1.0 - (1.0 - routed_fraction_per_token) ** max(tokens, 1.0)


def smooth_max(a: float, b: float, sharpness: float) -> float:
    """(a^k + b^k)^(1/k): the roofline's max with a rounded knee."""
    if a <= 0 or b <= 0:
        return max(a, b)
    return (a ** sharpness + b ** sharpness) ** (1.0 / sharpness)


def peak_tflops(gpu: GPUSpec, bytes_per_param: float) -> float:
    """Dense tensor peak used for the model's matmuls: fp8 for 1-byte weights where the GPU has it."""
    if bytes_per_param <= 1.0 and gpu.fp8_dense_tflops:
        return gpu.fp8_dense_tflops
    return gpu.bf16_dense_tflops


def uses_fp8(gpu: GPUSpec, bytes_per_param: float) -> bool:
    """Whether 1-byte weights run fp8 GEMMs (the GPU has an fp8 peak)."""
    return bytes_per_param <= 1.0 and gpu.fp8_dense_tflops is not None


def weight_hbm_fraction(gpu: GPUSpec, bytes_per_param: float, eff: Efficiency, factors: GPUFactors) -> float:
    """Achieved share of datasheet bandwidth for weight streaming: hbm_fraction x GPU x fp8 factors, capped."""
    fraction = eff.hbm_fraction * factors.hbm_factor * (eff.fp8_hbm_factor if uses_fp8(gpu, bytes_per_param) else 1.0)
    return min(fraction, MAX_HBM_FRACTION)


def effective_mfu(gpu: GPUSpec, shape: ModelShape, bytes_per_param: float, eff: Efficiency) -> float:
    """MFU of the step's matmuls: mfu x MoE factor (grouped GEMMs) x fp8 factor (fp8 GEMMs)."""
    mfu = eff.mfu * (eff.moe_compute_factor if shape.is_moe else 1.0)
    return mfu * (eff.fp8_mfu_factor if uses_fp8(gpu, bytes_per_param) else 1.0)


def allreduce_s(gpu: GPUSpec, num_gpus: int, tokens: float, hidden_size: int, eff: Efficiency) -> float:
    """One ring all-reduce of the step's activations: latency + 2 (n-1)/n x bytes at link_fraction of a link."""
    latency = eff.allreduce_latency_nvlink_s if gpu.interconnect == "nvlink" else eff.allreduce_latency_pcie_s
    message_bytes = tokens * hidden_size * ACTIVATION_BYTES
    per_direction = gpu.interconnect_gb_s / 2 * 1e9 * eff.link_fraction
    return latency + message_bytes * 2.0 * (num_gpus - 1) / num_gpus / per_direction


@dataclass(frozen=True)
class StepTime:
    """Time of one forward step on `num_gpus` GPUs, by component (seconds)."""

    memory_s: float
    compute_s: float
    comm_s: float
    overhead_s: float
    step_s: float
    kernel_s: float = 0.0  # fixed per-layer kernel time (busy GPU, little bandwidth)

    @property
    def bound(self) -> str:
        """What takes most of the step: memory, compute, communication or overhead (CPU-side work)."""
        parts = {"memory": self.memory_s, "compute": self.compute_s, "communication": self.comm_s,
                 "overhead": self.overhead_s + self.kernel_s}
        return max(parts, key=lambda k: parts[k])


def step_time(*, gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, decode_tokens: float,
              prefill_tokens: float, decode_context_tokens: float, prefill_context_tokens: float,
              eff: Efficiency, factors: GPUFactors | None = None) -> StepTime:
    """One engine step: `decode_tokens` sequences each emit a token, plus `prefill_tokens` prompt tokens.

    memory: weights read once per step (shared by the batch; for a MoE the experts its tokens touch, at
    moe_hbm_factor) at weight_hbm_fraction of datasheet bandwidth, plus every sequence's KV cache at
    kv_hbm_fraction, split over the GPUs. compute: 2 FLOPs per active parameter per token + attention
    (4 x layers x hidden x context) at effective_mfu of the dense peak. comm: two all-reduces per layer under
    tensor parallelism. kernel: fixed time per layer. overhead: the server's per-step and per-sequence CPU work.
    """
    factors = gpu_factors(gpu) if factors is None else factors
    tokens = decode_tokens + prefill_tokens
    bandwidth = gpu.memory_bandwidth_gb_s * 1e9 * weight_hbm_fraction(gpu, bytes_per_param, eff, factors)
    routed_b = (shape.total_params_b - shape.shared_params_b) * moe_fraction_touched(
        shape.routed_fraction_per_token, tokens)
    weight_s = (shape.shared_params_b + routed_b / eff.moe_hbm_factor) * 1e9 * bytes_per_param / num_gpus / bandwidth
    kv_bytes = decode_tokens * decode_context_tokens * kv_bytes_per_token(shape) / kv_shards(shape, num_gpus)
    kv_fraction = min(eff.kv_hbm_fraction * factors.hbm_factor, MAX_HBM_FRACTION)
    memory_s = weight_s + kv_bytes / (gpu.memory_bandwidth_gb_s * 1e9 * kv_fraction)

    attention_flops = 4.0 * shape.num_layers * shape.hidden_size * (
        decode_tokens * decode_context_tokens + prefill_tokens * prefill_context_tokens)
    flops = 2.0 * shape.active_params_b * 1e9 * tokens + attention_flops
    compute_s = flops / (num_gpus * peak_tflops(gpu, bytes_per_param) * 1e12
                         * effective_mfu(gpu, shape, bytes_per_param, eff))

    comm_s = 2 * shape.num_layers * allreduce_s(gpu, num_gpus, tokens, shape.hidden_size, eff) if num_gpus > 1 else 0.0
    kernel_s = shape.num_layers * factors.kernel_factor * (
        eff.layer_kernel_s + (eff.moe_layer_kernel_s if shape.is_moe else 0.0))
    overhead_s = eff.step_overhead_s + eff.per_sequence_overhead_s * decode_tokens
    step_s = smooth_max(memory_s, compute_s, eff.roofline_sharpness) + kernel_s + comm_s + overhead_s
    return StepTime(memory_s, compute_s, comm_s, overhead_s, step_s, kernel_s)


def utilisation(step: StepTime, eff: Efficiency, factors: GPUFactors | None = None) -> float:
    """Share of (TDP - idle) drawn: 1 - (1 - a_m x memory busy)(1 - a_c x compute busy)(1 - a_s x sync busy).

    memory busy: share of the step that HBM streams; compute busy: share that the tensor cores need at their
    MFU; sync busy: share spent in latency-bound per-layer kernels and all-reduces (SMs spin, little
    bandwidth). The CPU-side overhead draws idle power only. factors.power_factor scales the coefficients.
    """
    scale = 1.0 if factors is None else factors.power_factor
    memory_busy = min(step.memory_s / step.step_s, 1.0)
    compute_busy = min(step.compute_s / step.step_s, 1.0)
    sync_busy = min((step.comm_s + step.kernel_s) / step.step_s, 1.0)
    a_m = min(eff.power_memory_coeff * scale, 1.0)
    a_c = min(eff.power_compute_coeff * scale, 1.0)
    a_s = min(eff.power_sync_coeff * scale, 1.0)
    return 1.0 - (1.0 - a_m * memory_busy) * (1.0 - a_c * compute_busy) * (1.0 - a_s * sync_busy)


def effective_batch_size(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float,
                         batch_size: int, prompt_tokens: int, output_tokens: int) -> int:
    """Sequences that run together: the batch, capped by KV-cache memory at the mean context length."""
    mean_context = prompt_tokens + output_tokens / 2.0
    per_seq = kv_bytes_per_token(shape) / kv_shards(shape, num_gpus) * mean_context
    capacity = kv_capacity_bytes_per_gpu(gpu, num_gpus, shape, bytes_per_param)
    return max(1, min(batch_size, int(capacity // per_seq))) if per_seq > 0 else batch_size


@dataclass(frozen=True)
class PrefillSchedule:
    """How prompts mix into a steady stream of decode steps (vLLM chunked prefill).

    A server running `batch` sequences of `output_tokens` starts batch / output_tokens new ones per step,
    i.e. prefills that many prompts' tokens per step on average. They arrive in chunks of `chunk_tokens`
    (a whole prompt, or the step's token budget) in a share `prefill_step_share` of the steps.
    """

    chunk_tokens: float
    prefill_step_share: float


def prefill_schedule(batch: int, prompt_tokens: int, output_tokens: int, max_batched_tokens: int
                     ) -> PrefillSchedule:
    """Chunk size and share of steps that carry prompt tokens, in steady state."""
    per_step = batch * prompt_tokens / output_tokens
    if per_step <= 0:
        return PrefillSchedule(0.0, 0.0)
    budget = max(max_batched_tokens - batch, 1)
    chunk = min(max(float(prompt_tokens), per_step), float(budget))
    return PrefillSchedule(chunk, min(1.0, per_step / chunk))


@dataclass(frozen=True)
class _Point:
    prefill_s: float
    decode_s_per_token: float   # mean inter-token latency: decode steps and prompt-carrying steps
    median_step_s: float        # the step most tokens see (decode-only unless most steps carry a prompt)
    gpu_power_w: float          # time-weighted mean board power per GPU
    utilisation: float
    gpu_energy_j_per_token: float
    bound: str


def _simulate_point(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, batch: int,
                    prompt_tokens: int, output_tokens: int, eff: Efficiency,
                    factors: GPUFactors | None = None) -> _Point:
    """Latency and GPU energy per output token at one set of efficiencies, in steady state.

    Steps are of two kinds: decode-only (batch tokens), and decode + a prompt chunk (PrefillSchedule).
    Energy per output token averages both kinds, so it includes the prompts' work, as a power meter sees it.
    """
    factors = gpu_factors(gpu) if factors is None else factors
    mean_context = prompt_tokens + output_tokens / 2.0
    common = {"gpu": gpu, "num_gpus": num_gpus, "shape": shape, "bytes_per_param": bytes_per_param,
              "decode_context_tokens": mean_context, "prefill_context_tokens": prompt_tokens / 2.0, "eff": eff,
              "factors": factors}
    schedule = prefill_schedule(batch, prompt_tokens, output_tokens, eff.max_batched_tokens)
    decode = step_time(decode_tokens=batch, prefill_tokens=0, **common)
    mixed = step_time(decode_tokens=batch, prefill_tokens=schedule.chunk_tokens, **common)
    alone = step_time(decode_tokens=batch - 1, prefill_tokens=prompt_tokens, **common)
    share = schedule.prefill_step_share
    power_decode = gpu_power_w(gpu.tdp_w, gpu.idle_w, utilisation(decode, eff, factors))
    power_mixed = gpu_power_w(gpu.tdp_w, gpu.idle_w, utilisation(mixed, eff, factors))
    mean_step = (1 - share) * decode.step_s + share * mixed.step_s
    energy_per_step_j = num_gpus * ((1 - share) * decode.step_s * power_decode + share * mixed.step_s * power_mixed)
    mean_power = energy_per_step_j / num_gpus / mean_step
    typical = decode if share < 0.5 else mixed
    return _Point(
        prefill_s=alone.step_s, decode_s_per_token=mean_step, median_step_s=typical.step_s, gpu_power_w=mean_power,
        utilisation=(mean_power - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w),
        gpu_energy_j_per_token=energy_per_step_j / batch, bound=typical.bound)


@dataclass(frozen=True)
class InferenceEstimate:
    """A predicted request on a deployment: latency, power, energy (GPU boards and whole request), carbon.

    decode_s_per_token: the mean inter-token latency a sequence sees over its life (its TPOT), counting the
    steps that also prefill other requests' prompts; decode_s_per_token_median: the step most tokens see.
    gpu_energy_j_per_token: all GPUs' boards per output token (prompt work included), no host, no PUE.
    energy_kwh: this request's share of GPUs + host, times PUE. carbon_gco2e: operational + embodied share.
    water_l: on-site cooling water, IT energy x the datacenter's WUE (The Green Grid's definition).
    *_min / *_max: the OPTIMISTIC / PESSIMISTIC efficiency sets.
    """

    gpu: str
    num_gpus: int
    datacenter: str
    batch_size: int
    effective_batch_size: int
    kv_limited: bool
    prompt_tokens: int
    output_tokens: int
    bound: str
    prefill_s: float
    decode_s_per_token: float
    decode_s_per_token_min: float
    decode_s_per_token_max: float
    decode_s_per_token_median: float
    latency_s: float
    latency_s_min: float
    latency_s_max: float
    tokens_per_s: float
    throughput_tokens_per_s: float
    gpu_utilisation: float
    gpu_power_w: float
    gpu_energy_j_per_token: float
    gpu_energy_j_per_token_min: float
    gpu_energy_j_per_token_max: float
    gpu_energy_kwh: float
    gpu_energy_kwh_min: float
    gpu_energy_kwh_max: float
    host_energy_kwh: float
    pue: float
    energy_kwh: float
    energy_kwh_min: float
    energy_kwh_max: float
    grid_gco2e_per_kwh: float
    operational_carbon_gco2e: float
    embodied_carbon_gco2e: float
    carbon_gco2e: float
    carbon_gco2e_min: float
    carbon_gco2e_max: float
    energy_cost_usd: float
    water_l: float
    rental_usd_per_million_tokens: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for --json and DataFrames)."""
        return asdict(self)


def require_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")


def simulate_inference(*, gpu: GPUSpec | str, num_gpus: int = 1, active_params_b: float,
                       total_params_b: float | None = None, bytes_per_param: float = 2.0, batch_size: int = 1,
                       prompt_tokens: int, output_tokens: int, datacenter: Datacenter | str | None = None,
                       num_layers: int | None = None, hidden_size: int | None = None,
                       num_kv_heads: int | None = None,
                       head_dim: int = 128, kv_bytes_per_value: float = 2.0, num_experts: int | None = None,
                       experts_per_token: int | None = None, host_w_per_gpu: float = HOST_W_PER_GPU,
                       efficiency: Efficiency = NOMINAL,
                       efficiency_range: tuple[Efficiency, Efficiency] = (OPTIMISTIC, PESSIMISTIC),
                       ) -> InferenceEstimate:
    """Predict one request served on `num_gpus` x `gpu` among `batch_size` concurrent requests.

    Prefill is compute-bound, decode memory-bound (weights read once per step and shared by the batch,
    KV cache per sequence); tensor parallelism adds all-reduces; a mixture of experts reads the experts its
    tokens touch; 1-byte weights use fp8 tensor peaks; power rises from idle to TDP with utilisation.
    `datacenter` (key or object; default "world_average") sets PUE and grid intensity.
    Raises ModelDoesNotFitError naming the smallest GPU count that fits, ValueError for bad input.
    """
    gpu_spec = find_gpu(load_gpus(), gpu) if isinstance(gpu, str) else gpu
    if datacenter is None or isinstance(datacenter, str):
        dc = lookup(load_datacenters(), datacenter or "world_average", "datacenter")
    else:
        dc = datacenter
    for name, value in (("num_gpus", num_gpus), ("active_params_b", active_params_b),
                        ("bytes_per_param", bytes_per_param), ("batch_size", batch_size),
                        ("output_tokens", output_tokens)):
        require_positive(name, value)
    require_positive("prompt_tokens", prompt_tokens, allow_zero=True)
    shape = model_shape(active_params_b=active_params_b, total_params_b=total_params_b, num_layers=num_layers,
                        hidden_size=hidden_size, num_kv_heads=num_kv_heads, head_dim=head_dim,
                        kv_bytes_per_value=kv_bytes_per_value, num_experts=num_experts,
                        experts_per_token=experts_per_token)
    context = prompt_tokens + output_tokens
    if not fits(gpu_spec, num_gpus, shape, bytes_per_param, context):
        need = min_gpus_that_fit(gpu_spec, shape, bytes_per_param, context)
        hint = (f"the smallest GPU count that fits is {need}" if need is not None
                else f"it does not fit even on {TP_SIZES[-1]} GPUs")
        raise ModelDoesNotFitError(
            f"model does not fit: {shape.total_params_b:g}B params x {bytes_per_param:g} bytes = "
            f"{weights_gb(shape, bytes_per_param):.1f} GB of weights plus the KV cache of one {context}-token "
            f"sequence exceed {num_gpus} x {gpu_spec.key} ({gpu_spec.memory_gb:g} GB each, "
            f"{USABLE_MEMORY_FRACTION:.0%} usable); {hint}", need)

    batch = effective_batch_size(gpu_spec, num_gpus, shape, bytes_per_param, batch_size, prompt_tokens,
                                 output_tokens)
    args = (gpu_spec, num_gpus, shape, bytes_per_param, batch, prompt_tokens, output_tokens)
    mid = _simulate_point(*args, efficiency)
    low = _simulate_point(*args, efficiency_range[0])
    high = _simulate_point(*args, efficiency_range[1])

    def latency(p: _Point) -> float:
        return p.prefill_s + (output_tokens - 1) * p.decode_s_per_token

    def gpu_kwh(p: _Point) -> float:
        return p.gpu_energy_j_per_token * output_tokens / J_PER_KWH

    def host_kwh(p: _Point) -> float:
        return host_w_per_gpu * num_gpus * p.decode_s_per_token * output_tokens / batch / J_PER_KWH

    def total_kwh(p: _Point) -> float:
        return (gpu_kwh(p) + host_kwh(p)) * dc.pue

    def embodied_g(p: _Point) -> float:
        gpu_seconds = num_gpus * p.decode_s_per_token * output_tokens / batch
        per_gpu_kg = gpu_spec.embodied_kgco2e + SERVER_EMBODIED_KGCO2E_PER_GPU
        return per_gpu_kg * 1000.0 * gpu_seconds / HARDWARE_LIFETIME_S

    def carbon(p: _Point) -> float:
        return carbon_gco2e(total_kwh(p), dc.grid_gco2e_per_kwh) + embodied_g(p)

    rental_per_token = gpu_spec.rental_usd_per_gpu_hour * num_gpus / 3600.0 * mid.decode_s_per_token / batch
    return InferenceEstimate(
        gpu=gpu_spec.key, num_gpus=num_gpus, datacenter=dc.key, batch_size=batch_size,
        effective_batch_size=batch, kv_limited=batch < batch_size, prompt_tokens=prompt_tokens,
        output_tokens=output_tokens, bound=mid.bound,
        prefill_s=mid.prefill_s, decode_s_per_token=mid.decode_s_per_token,
        decode_s_per_token_min=low.decode_s_per_token, decode_s_per_token_max=high.decode_s_per_token,
        decode_s_per_token_median=mid.median_step_s,
        latency_s=latency(mid), latency_s_min=latency(low), latency_s_max=latency(high),
        tokens_per_s=1.0 / mid.decode_s_per_token, throughput_tokens_per_s=batch / mid.decode_s_per_token,
        gpu_utilisation=mid.utilisation, gpu_power_w=mid.gpu_power_w,
        gpu_energy_j_per_token=mid.gpu_energy_j_per_token, gpu_energy_j_per_token_min=low.gpu_energy_j_per_token,
        gpu_energy_j_per_token_max=high.gpu_energy_j_per_token,
        gpu_energy_kwh=gpu_kwh(mid), gpu_energy_kwh_min=gpu_kwh(low), gpu_energy_kwh_max=gpu_kwh(high),
        host_energy_kwh=host_kwh(mid), pue=dc.pue,
        energy_kwh=total_kwh(mid), energy_kwh_min=total_kwh(low), energy_kwh_max=total_kwh(high),
        grid_gco2e_per_kwh=dc.grid_gco2e_per_kwh,
        operational_carbon_gco2e=carbon_gco2e(total_kwh(mid), dc.grid_gco2e_per_kwh),
        embodied_carbon_gco2e=embodied_g(mid), carbon_gco2e=carbon(mid), carbon_gco2e_min=carbon(low),
        carbon_gco2e_max=carbon(high), energy_cost_usd=energy_cost_usd(total_kwh(mid), dc.electricity_usd_per_kwh),
        water_l=(gpu_kwh(mid) + host_kwh(mid)) * dc.wue_l_per_kwh,
        rental_usd_per_million_tokens=rental_per_token * 1e6,
    )
