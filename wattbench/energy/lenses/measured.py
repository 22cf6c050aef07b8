"""Lens "measured": energy of each generation on the machine serving the embedded model (the service).

The service reads it around each generation (wattbench.energy.meters.EnergyMeter: RAPL or NVML counters, else
CPU time x W per core, labelled "estimated") and returns it with the answer; this lens copies it to the CSV.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wattbench.energy.lenses.base import Column, Lens

LABEL = "measured"
ESTIMATED = "estimated"
_M = "measured / estimated"


def fill(record: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """The service's measured_energy_kwh / measured_energy_method for this request (None when absent)."""
    response = record.get("response") or {}
    return {"measured_energy_kwh": response.get("measured_energy_kwh"),
            "measured_energy_method": response.get("measured_energy_method")}


LENS = Lens(
    key="measured", label=LABEL, level="request",
    note="energy counters of the machine serving the embedded model (RAPL; CPU time x 4 W/core is 'estimated')",
    columns={
        "measured_energy_kwh": Column("kWh", _M, "energy of this generation on the serving machine (local model only)"),
        "measured_energy_method": Column("", _M, "rapl or nvml (measured), cpu_time_estimate (estimated)"),
    },
    energy_column="measured_energy_kwh", source_column="measured_energy_method",
    method_labels={"rapl": LABEL, "nvml": LABEL, "cpu_time_estimate": ESTIMATED},
    fill=fill,
)
