"""Lens "measured GPU (NVML)": the GPUs' own energy counters over the run, shared out among the requests.

When the machine running `wattbench run` has NVIDIA GPUs (the server under test beside it, e.g. vLLM on the
same box), the runner reads NVML's total-energy counter of every visible GPU over the whole run
(wattbench.energy.nvml.NvmlEnergyMeter) and gives each request its share of the energy spent while it was
in flight: between consecutive samples and request start/end events, the energy is split equally among the
requests in flight; energy spent with none in flight is idle and charged to no request (it is reported in
the run's summary). The runner stores the share on each record (gpu_energy_j); this lens turns it into the
CSV's columns.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wattbench.energy.hardware import J_PER_KWH
from wattbench.energy.lenses.base import Column, Lens

LABEL = "measured GPU (NVML)"
#: How a request's share is computed (written to gpu_energy_method with the NVML method used).
ATTRIBUTION = "equal share of the GPUs' energy among the requests in flight"


def fill(record: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """gpu_energy_kwh and its method from the record's gpu_energy_j (None when no GPU was measured)."""
    joules = record.get("gpu_energy_j")
    if joules is None:
        return {}
    return {"gpu_energy_kwh": float(joules) / J_PER_KWH, "gpu_energy_method": record.get("gpu_energy_method"),
            "gpu_energy_devices": record.get("gpu_energy_devices")}


LENS = Lens(
    key="gpu", label=LABEL, level="request",
    note="NVML energy counters of the GPUs beside the runner, each request's share while it was in flight",
    columns={
        "gpu_energy_kwh": Column("kWh", LABEL, "this request's share of the measured GPUs' energy (NVML counters; "
                                 "equal share among the requests in flight)"),
        "gpu_energy_method": Column("", LABEL, "nvml_total_energy or nvml_power_sampling, and how it was shared"),
        "gpu_energy_devices": Column("", LABEL, "the measured GPUs, e.g. '1 x NVIDIA H200'"),
    },
    energy_column="gpu_energy_kwh", source_column="gpu_energy_devices", bar_label="measured GPU:<br>{source}",
    fill=fill,
)
