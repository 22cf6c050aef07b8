"""GPU / datacenter deployment profiles and the energy, carbon and cost maths.

What a notebook or a test imports (`import gpu_profiles`); the code lives in the package (wattbench/energy/).
This module is its table of contents."""

# deployment profiles and their data
from wattbench.energy import (  # noqa: F401 - re-exported
    DEFAULT_PROFILES,
    DataFileError,
    Datacenter,
    DeploymentProfile,
    GPUSpec,
    find_gpu,
    load_datacenters,
    load_gpus,
    load_profiles,
    resolve_grid,
)
# the original notebook's accounting
from wattbench.energy import (  # noqa: F401 - re-exported
    J_PER_KWH,
    carbon_gco2e,
    compute_energy_kwh,
    energy_cost_usd,
    energy_kwh_from_power,
    gpu_power_w,
    idle_energy_kwh,
    pue_overhead_kwh,
    total_cost_usd,
)
# the roofline model
from wattbench.energy import (  # noqa: F401 - re-exported
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
# the lenses: simulated per profile, provider-side, measured
from wattbench.energy import (  # noqa: F401 - re-exported
    PROFILE_COLUMNS,
    calculate_enhanced_metrics,
    provider_side_estimate,
    provider_side_unavailable_reason,
    CODECARBON_DEFAULT_W_PER_CORE,
    EnergyMeter,
    rapl_delta_uj,
    rapl_domains,
)
# `wattbench simulate`
from wattbench.energy import (  # noqa: F401 - re-exported
    cli_simulate,
    format_table,
)

__all__ = [
    "DEFAULT_PROFILES", "DataFileError", "Datacenter", "DeploymentProfile", "GPUSpec", "find_gpu", "load_datacenters", "load_gpus", "load_profiles", "resolve_grid",
    "J_PER_KWH", "carbon_gco2e", "compute_energy_kwh", "energy_cost_usd", "energy_kwh_from_power", "gpu_power_w", "idle_energy_kwh", "pue_overhead_kwh", "total_cost_usd",
    "NOMINAL", "OPTIMISTIC", "PESSIMISTIC", "Efficiency", "InferenceEstimate", "ModelDoesNotFitError", "ModelShape", "PrefillSchedule", "StepTime", "fits", "kv_bytes_per_token", "min_gpus_that_fit", "model_shape", "moe_fraction_touched", "peak_tflops", "prefill_schedule", "simulate_inference", "step_time", "utilisation",
    "PROFILE_COLUMNS", "calculate_enhanced_metrics", "provider_side_estimate", "provider_side_unavailable_reason", "CODECARBON_DEFAULT_W_PER_CORE", "EnergyMeter", "rapl_delta_uj", "rapl_domains",
    "cli_simulate", "format_table",
]
