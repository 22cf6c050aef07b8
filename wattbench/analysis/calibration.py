"""Self-calibration: the serving stack's efficiency against the roofline, from a measured GPU lens.

Where a run has measured GPU energy (NVML beside the runner, or dcgm-exporter of the server's GPUs), the ratio
measured / simulated on the SAME GPU model (a profile whose GPU the measured devices name) says how far the serving
software is from the roofline's ideal (attention over a padded window, scheduling gaps, kernels): the stack's
efficiency, per run (per sweep point). `--calibrate-from-measured` multiplies every profile's simulated GPU energy
by that ratio. What it assumes: the same serving software would behave the same on the other GPUs.

The comparison is GPU-board energy of the served requests on both sides: the measured shares (idle excluded) over
the simulated compute_energy_kwh (idle and PUE excluded) of the matching profile's rows.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from wattbench.energy.accounting import carbon_gco2e
from wattbench.energy.hardware import gpu_key_for_device_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def gpu_matches(profile_gpu: Any, devices: Any) -> bool:
    """The measured devices ('1 x NVIDIA H200', '2 x NVIDIA H200 (dcgm)') are the profile's GPU model (H200), as
    hardware.gpu_key_for_device_name reads NVML's names."""
    if not isinstance(profile_gpu, str) or not isinstance(devices, str):
        return False
    name = devices.split(" x ", 1)[-1].removesuffix(" (dcgm)")
    return gpu_key_for_device_name(name, [profile_gpu]) is not None


def efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run (sweep point) and matching profile: requests compared, measured J / request, simulated J / request
    (uncalibrated compute) and measured / simulated. Empty when nothing was measured on a profile's GPU model."""
    import pandas as pd

    columns = ["run_id", "profile", "gpu", "requests", "measured_j_per_request", "simulated_j_per_request",
               "measured_over_simulated", "devices", "sim_batch_size"]
    if "gpu_energy_kwh" not in df.columns or df["gpu_energy_kwh"].isna().all():
        return pd.DataFrame(columns=columns)
    rows = []
    ok = df[df["success"].astype(bool) & df["gpu_energy_kwh"].notna() & df["compute_energy_kwh"].notna()]
    for (run_id, profile), group in ok.groupby(["run_id", "profile"], sort=False):
        devices = group["gpu_energy_devices"].iloc[0]
        if not gpu_matches(group["gpu"].iloc[0], devices):
            continue
        factor = group["calibration_factor"].fillna(1.0) if "calibration_factor" in group else 1.0
        measured_j = float(group["gpu_energy_kwh"].sum()) * 3.6e6
        simulated_j = float((group["compute_energy_kwh"] / factor).sum()) * 3.6e6
        n = len(group)
        rows.append([run_id, profile, group["gpu"].iloc[0], n, measured_j / n, simulated_j / n,
                     measured_j / simulated_j if simulated_j > 0 else math.nan, devices,
                     float(group["sim_batch_size"].mean())])
    return pd.DataFrame(rows, columns=columns)


def calibration_factor(df: pd.DataFrame, reference_run_id: str | None = None) -> tuple[float, str] | None:
    """measured / simulated of `reference_run_id` (default: every run together), and where it comes from;
    None when nothing was measured on a profile's GPU model."""
    table = efficiency_table(df)
    if reference_run_id is not None:
        table = table[table["run_id"] == reference_run_id]
    if table.empty:
        return None
    measured = float((table["measured_j_per_request"] * table["requests"]).sum())
    simulated = float((table["simulated_j_per_request"] * table["requests"]).sum())
    if not simulated > 0:
        return None
    first = table.iloc[0]
    runs = ", ".join(dict.fromkeys(str(r) for r in table["run_id"]))
    source = (f"measured {first['devices']} / simulated {first['profile']} ({first['gpu']}), "
              f"{int(table['requests'].sum())} requests of run(s) {runs}")
    return measured / simulated, source


def apply_calibration(df: pd.DataFrame, factor: float, source: str) -> pd.DataFrame:
    """Every profile row's simulated GPU compute energy x factor, and what follows from it (energy with PUE,
    its range, carbon, energy cost); calibration_factor / calibration_source say so."""
    out = df.copy()
    out["calibration_factor"] = out["calibration_factor"].astype(float) if "calibration_factor" in out else math.nan
    out["calibration_source"] = out["calibration_source"].astype(object) if "calibration_source" in out else None
    ok = out["compute_energy_kwh"].notna()
    old_kwh = out.loc[ok, "energy_kwh"]
    out.loc[ok, "compute_energy_kwh"] = out.loc[ok, "compute_energy_kwh"] * factor
    it_kwh = out.loc[ok, "compute_energy_kwh"] + out.loc[ok, "idle_energy_kwh"]
    out.loc[ok, "pue_overhead_kwh"] = it_kwh * (out.loc[ok, "pue"] - 1.0)
    out.loc[ok, "energy_kwh"] = it_kwh * out.loc[ok, "pue"]
    scale = (out.loc[ok, "energy_kwh"] / old_kwh).where(old_kwh > 0, 1.0)  # the range moves with its middle
    for column in ("energy_kwh_min", "energy_kwh_max"):
        out.loc[ok, column] = out.loc[ok, column] * scale
    for carbon, energy in (("carbon_gco2e", "energy_kwh"), ("carbon_gco2e_min", "energy_kwh_min"),
                           ("carbon_gco2e_max", "energy_kwh_max")):
        out.loc[ok, carbon] = carbon_gco2e(out.loc[ok, energy], out.loc[ok, "grid_gco2e_per_kwh"])
    cost = out.loc[ok, "energy_kwh"] * out.loc[ok, "electricity_usd_per_kwh"]
    out.loc[ok, "total_cost_usd"] = out.loc[ok, "total_cost_usd"] - out.loc[ok, "energy_cost_usd"] + cost
    out.loc[ok, "energy_cost_usd"] = cost
    out.loc[ok, "calibration_factor"] = factor
    out.loc[ok, "calibration_source"] = source
    return out


def calibrate_frame(df: pd.DataFrame, reference_run_id: str | None = None) -> tuple[pd.DataFrame, str]:
    """df calibrated from its measured GPU lens (see the module docstring), and one line saying what was done."""
    found = calibration_factor(df, reference_run_id)
    if found is None:
        return df, ("--calibrate-from-measured: no measured GPU energy on a profile's GPU model in this run; the "
                    "simulated lens is not calibrated")
    factor, source = found
    return apply_calibration(df, factor, source), (
        f"calibrated: every profile's simulated GPU energy x {factor:.3f} ({source}); assumes the same serving "
        "software on the other GPUs")
