"""Energy, carbon and cost: the data, the models and the lenses.

- ``hardware``   GPUs, datacenters, deployment profiles (wattbench/data/*.json, every number with its source)
- ``accounting`` the original notebook's accounting as pure functions (compute, idle, PUE, carbon, cost)
- ``roofline``   the predictive model of LLM serving: ``simulate_inference``
- ``meters``     energy counters of this machine (RAPL, NVML, else CPU time)
- ``lenses``     one module per energy lens (simulated, provider-side, measured): columns, labels, filling
- ``cli``        ``wattbench simulate``
"""
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
from wattbench.energy.cli import cli_simulate, format_table
from wattbench.energy.hardware import (
    DEFAULT_PROFILES,
    J_PER_KWH,
    Datacenter,
    DataFileError,
    DeploymentProfile,
    GPUSpec,
    find_gpu,
    load_datacenters,
    load_gpus,
    load_profiles,
    resolve_grid,
)
from wattbench.energy.lenses.provider import provider_side_estimate, provider_side_unavailable_reason
from wattbench.energy.lenses.simulated import PROFILE_COLUMNS, calculate_enhanced_metrics
from wattbench.energy.meters import CODECARBON_DEFAULT_W_PER_CORE, EnergyMeter, rapl_delta_uj, rapl_domains
from wattbench.energy.roofline import (
    NOMINAL,
    OPTIMISTIC,
    PESSIMISTIC,
    Efficiency,
    InferenceEstimate,
    ModelDoesNotFitError,
    ModelShape,
    PrefillSchedule,
    StepTime,
    fits,
    kv_bytes_per_token,
    min_gpus_that_fit,
    model_shape,
    moe_fraction_touched,
    peak_tflops,
    prefill_schedule,
    simulate_inference,
    step_time,
    utilisation,
)

__all__ = [
    "CODECARBON_DEFAULT_W_PER_CORE", "DEFAULT_PROFILES", "J_PER_KWH", "NOMINAL", "OPTIMISTIC", "PESSIMISTIC",
    "PROFILE_COLUMNS", "DataFileError", "Datacenter", "DeploymentProfile", "Efficiency", "EnergyMeter", "GPUSpec",
    "InferenceEstimate", "ModelDoesNotFitError", "ModelShape", "PrefillSchedule", "StepTime",
    "calculate_enhanced_metrics", "carbon_gco2e", "cli_simulate", "compute_energy_kwh", "energy_cost_usd",
    "energy_kwh_from_power", "find_gpu", "fits", "format_table", "gpu_power_w", "idle_energy_kwh",
    "kv_bytes_per_token", "load_datacenters", "load_gpus", "load_profiles", "min_gpus_that_fit", "model_shape",
    "moe_fraction_touched", "peak_tflops", "prefill_schedule", "provider_side_estimate",
    "provider_side_unavailable_reason", "pue_overhead_kwh", "rapl_delta_uj", "rapl_domains", "resolve_grid",
    "simulate_inference", "step_time", "total_cost_usd", "utilisation",
]
