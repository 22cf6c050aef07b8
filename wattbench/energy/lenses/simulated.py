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
from wattbench.energy.lenses.base import Column, Lens
from wattbench.energy.roofline import (
    TP_SIZES,
    ModelDoesNotFitError,
    fits,
    min_gpus_that_fit,
    model_shape,
    require_positive,
    simulate_inference,
)

LABEL = "simulated"
#: The per-profile CSV columns that `calculate_enhanced_metrics` returns, in order, with unit and meaning.
COLUMNS: dict[str, Column] = {
    "profile": Column("", LABEL, "deployment profile name (GPU x datacenter), e.g. A100_SIMULATED"),
    "gpu": Column("", LABEL, "GPU model of the profile"),
    "gpu_count": Column("", LABEL, "GPUs per replica (tensor parallel; raised to the fewest the model fits on)"),
    "datacenter": Column("", LABEL, "datacenter / cloud region id"),
    "location": Column("", LABEL, "where the datacenter is"),
    "tdp_w": Column("W", LABEL, "GPU thermal design power, per GPU"),
    "idle_w": Column("W", LABEL, "GPU idle power, per GPU"),
    "pue": Column("", LABEL, "datacenter power usage effectiveness (facility / IT energy)"),
    "grid_gco2e_per_kwh": Column("gCO2e/kWh", LABEL, "carbon intensity of the datacenter's grid"),
    "electricity_usd_per_kwh": Column("USD/kWh", LABEL, "electricity price at the datacenter"),
    "energy_method": Column("", LABEL, "roofline (model size known) or measured_latency_x_tdp (the original's "
                            "accounting: TDP x GPUs x measured latency)"),
    "sim_latency_s": Column("s", LABEL, "predicted time of this request on the profile's GPUs (roofline), or the "
                            "measured latency for measured_latency_x_tdp"),
    "sim_batch_size": Column("", LABEL, "requests the GPUs served together in this simulation: the profile's "
                             "batch_size, or the concurrency the run achieved (--energy-batch achieved, every "
                             "sweep), capped by KV-cache memory; latency x TDP shares the GPUs among them"),
    "idle_s": Column("s", LABEL, "time the service sat idle before this request, charged to it"),
    "compute_energy_kwh": Column("kWh", LABEL, "GPU energy while computing this request"),
    "idle_energy_kwh": Column("kWh", LABEL, "GPU energy while idle, charged to this request"),
    "pue_overhead_kwh": Column("kWh", LABEL, "facility overhead: (PUE - 1) x IT energy"),
    "energy_kwh": Column("kWh", LABEL, "compute + idle + PUE overhead"),
    "energy_kwh_min": Column("kWh", LABEL, "low end of the energy range"),
    "energy_kwh_max": Column("kWh", LABEL, "high end of the energy range"),
    "carbon_gco2e": Column("gCO2e", LABEL, "energy_kwh x grid intensity (operational carbon)"),
    "carbon_gco2e_min": Column("gCO2e", LABEL, "low end of the carbon range"),
    "carbon_gco2e_max": Column("gCO2e", LABEL, "high end of the carbon range"),
    "energy_cost_usd": Column("USD", LABEL, "energy_kwh x electricity price"),
    "total_cost_usd": Column("USD", LABEL, "cost_usd (0 when unknown) + energy_cost_usd"),
}
#: The per-profile CSV columns that `calculate_enhanced_metrics` returns (docs/outputs.md), in order.
PROFILE_COLUMNS: tuple[str, ...] = tuple(COLUMNS)


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
                               shape: Mapping[str, Any] | None = None,
                               batch_size: int | None = None) -> dict[str, Any]:
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
    batch_size: the requests served together, instead of the profile's batch_size (a sweep passes the
    concurrency each load point achieved, so that the energy per request falls as the batch grows); with the
    latency x TDP accounting the GPUs' energy over the request's latency is then shared among that many.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
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
        batch = batch_size or 1  # the original accounting charges each request the whole GPUs
        compute, compute_min, compute_max = compute / batch, compute_min / batch, compute_max / batch
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
                                 batch_size=batch_size or profile.batch_size, prompt_tokens=prompt_tokens,
                                 output_tokens=output_tokens, datacenter=dc, **shape_kwargs)
        sim_latency_s = sim.latency_s
        batch = sim.effective_batch_size
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
        "energy_method": method, "sim_latency_s": sim_latency_s, "sim_batch_size": batch, "idle_s": float(idle_s),
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


LENS = Lens(
    key="simulated", label=LABEL, level="profile",
    note="each measured request replayed on a modelled GPU x datacenter profile (roofline, or latency x TDP)",
    columns=COLUMNS, energy_column="energy_kwh", energy_min_column="energy_kwh_min",
    energy_max_column="energy_kwh_max", source_column="profile", bar_label="{source}<br>[simulated]",
)
