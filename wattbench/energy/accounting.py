"""The original notebook's accounting as small pure functions: compute, idle, PUE overhead, carbon, cost."""

from __future__ import annotations

from wattbench.energy.hardware import J_PER_KWH


def energy_kwh_from_power(power_w: float, duration_s: float) -> float:
    """Energy in kWh of a constant `power_w` over `duration_s`."""
    return power_w * duration_s / J_PER_KWH


def compute_energy_kwh(tdp_w: float, gpu_count: int, active_s: float) -> float:
    """The original's compute energy: every GPU at TDP for the active time."""
    return energy_kwh_from_power(tdp_w * gpu_count, active_s)


def idle_energy_kwh(idle_w: float, gpu_count: int, idle_s: float) -> float:
    """Energy of the GPUs idling between requests."""
    return energy_kwh_from_power(idle_w * gpu_count, idle_s)


def pue_overhead_kwh(it_energy_kwh: float, pue: float) -> float:
    """Facility overhead (cooling, power conversion) on top of the IT energy: IT x (PUE - 1)."""
    return it_energy_kwh * (pue - 1.0)


def carbon_gco2e(energy_kwh: float, grid_gco2e_per_kwh: float) -> float:
    """Operational carbon: energy x grid carbon intensity."""
    return energy_kwh * grid_gco2e_per_kwh


def energy_cost_usd(energy_kwh: float, electricity_usd_per_kwh: float) -> float:
    """What the electricity costs."""
    return energy_kwh * electricity_usd_per_kwh


def total_cost_usd(api_cost_usd: float | None, energy_cost: float) -> float:
    """TCO of a request: API price (0 when unknown) + energy cost."""
    return (api_cost_usd or 0.0) + energy_cost


def gpu_power_w(tdp_w: float, idle_w: float, utilisation: float) -> float:
    """Board power between idle and TDP at a utilisation in [0, 1]."""
    return idle_w + (tdp_w - idle_w) * min(max(utilisation, 0.0), 1.0)
