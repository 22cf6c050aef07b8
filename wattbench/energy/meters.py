"""Energy meters of the machine wattbench runs on: RAPL (CPU package), NVML (GPUs), else CPU time x W/core."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from wattbench.energy.hardware import J_PER_KWH

#: CPU power per busy core when no counter is readable: CodeCarbon 3.3.2 DEFAULT_POWER_PER_CORE = 4 W
#: (codecarbon/core/cpu.py), CodeCarbon's fallback when the CPU model is not in its TDP table.
CODECARBON_DEFAULT_W_PER_CORE = 4.0


@dataclass(frozen=True)
class RaplDomain:
    """A top-level RAPL package domain: its energy counter and the value at which it wraps."""

    energy_path: Path
    max_energy_uj: int


def rapl_domains(powercap_root: Path) -> list[RaplDomain]:
    """Readable top-level RAPL package domains (intel-rapl:N, not their sub-zones), or [] if none."""
    domains = []
    for zone in sorted(powercap_root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        try:
            int((zone / "energy_uj").read_text())
            max_uj = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return []
        domains.append(RaplDomain(zone / "energy_uj", max_uj))
    return domains


def rapl_delta_uj(start_uj: int, end_uj: int, max_energy_uj: int) -> int:
    """Energy between two counter readings, allowing for one wraparound at max_energy_uj."""
    return end_uj - start_uj if end_uj >= start_uj else end_uj + max_energy_uj - start_uj


class EnergyMeter:
    """Energy of the code run inside `with EnergyMeter() as meter:`; then .energy_kwh and .method.

    method "rapl": CPU package counters (/sys/class/powercap/intel-rapl:N; the whole package, every process).
    method "nvml": total GPU energy counters (pynvml, Volta or newer).
    method "cpu_time_estimate": no counter readable; this process's CPU seconds x watts_per_cpu_core
    (CodeCarbon's fallback constant, 4 W per core). An estimate, never called a measurement. CPU time counts
    every thread of this process, so overlapping generations share it.
    If a counter that worked at the start fails at the end, energy_kwh stays None and .unavailable says why.
    """

    def __init__(self, *, powercap_root: Path | str = "/sys/class/powercap", nvml: Any | None = None,
                 use_nvml: bool = True, cpu_time_s: Callable[[], float] = time.process_time,
                 watts_per_cpu_core: float = CODECARBON_DEFAULT_W_PER_CORE) -> None:
        self._powercap_root = Path(powercap_root)
        self._nvml = nvml
        self._use_nvml = use_nvml
        self._cpu_time_s = cpu_time_s
        self._watts_per_cpu_core = watts_per_cpu_core
        self.method: str | None = None
        self.energy_kwh: float | None = None
        self.unavailable: str | None = None
        self._rapl: list[RaplDomain] = []
        self._start_rapl_uj: list[int] = []
        self._start_value = 0.0

    def _nvml_module(self) -> Any | None:
        """pynvml (or the injected stand-in), or None when it is not installed or not wanted."""
        if not self._use_nvml:
            return None
        if self._nvml is not None:
            return self._nvml
        if importlib.util.find_spec("pynvml") is None:
            return None
        import pynvml

        return pynvml

    @staticmethod
    def _nvml_total_mj(nv: Any) -> int:
        return sum(nv.nvmlDeviceGetTotalEnergyConsumption(nv.nvmlDeviceGetHandleByIndex(i))
                   for i in range(nv.nvmlDeviceGetCount()))

    def _start_nvml(self) -> bool:
        nv = self._nvml_module()
        if nv is None:
            return False
        try:
            nv.nvmlInit()
            if nv.nvmlDeviceGetCount() < 1:
                return False
            self._start_value = float(self._nvml_total_mj(nv))
        except nv.NVMLError:  # no driver, no GPU, or a GPU without an energy counter (pre-Volta)
            return False
        self._nvml = nv
        return True

    def __enter__(self) -> Self:
        self.energy_kwh, self.unavailable = None, None
        self._rapl = rapl_domains(self._powercap_root)
        if self._rapl:
            try:
                self._start_rapl_uj = [int(d.energy_path.read_text()) for d in self._rapl]
                self.method = "rapl"
                return self
            except (OSError, ValueError):
                self._rapl = []
        if self._start_nvml():
            self.method = "nvml"
            return self
        self.method = "cpu_time_estimate"
        self._start_value = self._cpu_time_s()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.method == "rapl":
            try:
                joules = sum(rapl_delta_uj(s, int(d.energy_path.read_text()), d.max_energy_uj)
                             for s, d in zip(self._start_rapl_uj, self._rapl)) / 1e6
            except (OSError, ValueError) as exc:
                self.unavailable = f"RAPL counter unreadable at the end: {exc}"
                return
        elif self.method == "nvml":
            try:
                joules = (self._nvml_total_mj(self._nvml) - self._start_value) / 1000.0
            except self._nvml.NVMLError as exc:
                self.unavailable = f"NVML energy counter unreadable at the end: {exc}"
                return
        else:
            joules = (self._cpu_time_s() - self._start_value) * self._watts_per_cpu_core
        self.energy_kwh = max(joules, 0.0) / J_PER_KWH
