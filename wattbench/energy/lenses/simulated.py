"""Lens "simulated": each measured request replayed on a deployment profile (GPU x datacenter)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from wattbench.energy.accounting import (
    carbon_gco2e,
    compute_energy_kwh,
    energy_cost_usd,
    energy_kwh_from_power,
    gpu_power_w,
    idle_energy_kwh,
    pue_overhead_kwh,
    total_cost_usd,
)
from wattbench.energy.hardware import DeploymentProfile
from wattbench.energy.roofline import (
    TP_SIZES,
    ModelDoesNotFitError,
    fits,
    min_gpus_that_fit,
    model_shape,
    require_positive,
    simulate_inference,
)

#: The per-profile CSV columns that `calculate_enhanced_metrics` returns (docs/architecture.md), in order.
PROFILE_COLUMNS: tuple[str, ...] = (
    "profile", "gpu", "gpu_count", "datacenter", "location", "tdp_w", "idle_w", "pue", "grid_gco2e_per_kwh",
    "electricity_usd_per_kwh", "energy_method", "sim_latency_s", "idle_s", "compute_energy_kwh",
    "idle_energy_kwh", "pue_overhead_kwh", "energy_kwh", "energy_kwh_min", "energy_kwh_max", "carbon_gco2e",
    "carbon_gco2e_min", "carbon_gco2e_max", "energy_cost_usd", "total_cost_usd",
)


#: Lower end of the original accounting's range: a GPU decoding one sequence draws about half of (TDP - idle)
#: above idle, not TDP. Measured: H200, Llama-3.1-8B-shaped bf16 decode at batch 1 drew 390 W with idle 81 W
#: and TDP 700 W, (390 - 81) / (700 - 81) = 0.50 (docs/measurements/h200_gpu_check_2026-12-01.json).
#: The original's TDP is the top of the range.
LATENCY_X_TDP_MIN_UTILISATION = 0.50


def _number(measured: Mapping[str, Any], key: str) -> float:
    value = measured.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"measured[{key!r}] must be a number >= 0 (got {value!r})")
    return float(value)


def calculate_enhanced_metrics(measured: Mapping[str, Any], profile: DeploymentProfile, *, idle_s: float = 0.0,
                               active_params_b: float | None = None,
                               total_params_b: float | None = None,
                               shape: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The per-profile CSV columns (simulated lens) for one measured request on `profile`.

    energy_method "measured_latency_x_tdp" (the original notebook's accounting, used for API models of
    unknown size): compute energy = TDP x GPUs x measured latency. "roofline" (when active_params_b, or the
    response's model_params_b, is known): compute energy = this request's share of the GPU-board energy
    that simulate_inference predicts for the same tokens on this profile (sim_latency_s = its latency).
    Both add idle energy (idle power x idle_s) and PUE overhead, kept apart; carbon is operational
    (kWh x grid intensity), as in the original. A model too big for the profile's GPUs is simulated on the
    smallest count that fits, and gpu_count says so. Without token counts the original accounting is used.
    shape: the model's known architecture (open_models.shape_for_model: layers, hidden size, KV heads,
    experts), which overrides the sizes given; without it the shape is derived from the parameter counts.
    """
    latency_s = _number(measured, "latency_s")
    require_positive("idle_s", idle_s, allow_zero=True)
    gpu, dc = profile.gpu, profile.datacenter
    shape_kwargs = dict(shape or {})
    params_b = shape_kwargs.pop("active_params_b", None)
    total_params_b = shape_kwargs.pop("total_params_b", total_params_b)
    if params_b is None:
        params_b = active_params_b if active_params_b is not None else measured.get("model_params_b")
    gpu_count = profile.gpu_count
    if measured.get("prompt_tokens") is None or measured.get("completion_tokens") is None:
        params_b = None  # the roofline needs token counts; energy_method says which method was used
    if params_b is None:
        method = "measured_latency_x_tdp"
        sim_latency_s = latency_s
        compute = compute_energy_kwh(gpu.tdp_w, gpu_count, latency_s)
        floor_w = gpu_power_w(gpu.tdp_w, gpu.idle_w, LATENCY_X_TDP_MIN_UTILISATION)
        compute_min, compute_max = energy_kwh_from_power(floor_w * gpu_count, latency_s), compute
    else:
        method = "roofline"
        prompt_tokens = int(_number(measured, "prompt_tokens"))
        output_tokens = max(1, int(_number(measured, "completion_tokens")))
        model = model_shape(active_params_b=float(params_b), total_params_b=total_params_b, **shape_kwargs)
        context = prompt_tokens + output_tokens
        if not fits(gpu, gpu_count, model, profile.bytes_per_param, context):
            needed = min_gpus_that_fit(gpu, model, profile.bytes_per_param, context)
            if needed is None:
                raise ModelDoesNotFitError(
                    f"profile {profile.key}: a {model.total_params_b:g}B model does not fit even on "
                    f"{TP_SIZES[-1]} x {gpu.key}", None)
            gpu_count = needed
        sim = simulate_inference(gpu=gpu, num_gpus=gpu_count, active_params_b=float(params_b),
                                 total_params_b=total_params_b, bytes_per_param=profile.bytes_per_param,
                                 batch_size=profile.batch_size, prompt_tokens=prompt_tokens,
                                 output_tokens=output_tokens, datacenter=dc, **shape_kwargs)
        sim_latency_s = sim.latency_s
        compute, compute_min, compute_max = sim.gpu_energy_kwh, sim.gpu_energy_kwh_min, sim.gpu_energy_kwh_max
    idle = idle_energy_kwh(gpu.idle_w, gpu_count, idle_s)

    def with_pue(it_kwh: float) -> float:
        return it_kwh + pue_overhead_kwh(it_kwh, dc.pue)

    energy = with_pue(compute + idle)
    cost = energy_cost_usd(energy, dc.electricity_usd_per_kwh)
    api_cost = measured.get("cost_usd")
    row = {
        "profile": profile.key, "gpu": gpu.key, "gpu_count": gpu_count, "datacenter": dc.key,
        "location": dc.location, "tdp_w": gpu.tdp_w, "idle_w": gpu.idle_w, "pue": dc.pue,
        "grid_gco2e_per_kwh": dc.grid_gco2e_per_kwh, "electricity_usd_per_kwh": dc.electricity_usd_per_kwh,
        "energy_method": method, "sim_latency_s": sim_latency_s, "idle_s": float(idle_s),
        "compute_energy_kwh": compute, "idle_energy_kwh": idle,
        "pue_overhead_kwh": pue_overhead_kwh(compute + idle, dc.pue), "energy_kwh": energy,
        "energy_kwh_min": with_pue(compute_min + idle), "energy_kwh_max": with_pue(compute_max + idle),
        "carbon_gco2e": carbon_gco2e(energy, dc.grid_gco2e_per_kwh),
        "carbon_gco2e_min": carbon_gco2e(with_pue(compute_min + idle), dc.grid_gco2e_per_kwh),
        "carbon_gco2e_max": carbon_gco2e(with_pue(compute_max + idle), dc.grid_gco2e_per_kwh),
        "energy_cost_usd": cost,
        "total_cost_usd": total_cost_usd(api_cost if isinstance(api_cost, (int, float)) else None, cost),
    }
    return {column: row[column] for column in PROFILE_COLUMNS}
