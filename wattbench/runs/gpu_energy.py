"""The measured-GPU lens during a run: NVML energy of the GPUs beside the runner, shared among requests.

`GpuEnergyRun(mode)` wraps the sending of one session (`with GpuEnergyRun("auto") as gpu: send...`): in "auto"
it measures when NVML sees an NVIDIA GPU and says so in one line, else stays silent; "on" requires a GPU (one
`error:` line otherwise); "off" never measures. After the session, `gpu.save(store)` gives every request sent
in it its share of the energy (wattbench.energy.nvml.attribute_energy: equal shares among the requests in
flight over each interval; energy with none in flight is idle) and appends the shares to the run directory's
gpu_energy.jsonl, so a resume and a rebuilt CSV keep them. `with_gpu_energy(store, records)` merges them into
the records that the enrichment turns into CSV rows (wattbench.energy.lenses.gpu).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from wattbench.energy.lenses.gpu import ATTRIBUTION
from wattbench.energy.nvml import NvmlEnergyMeter, attribute_energy

GPU_ENERGY_FILE = "gpu_energy.jsonl"
Mode = Literal["auto", "on", "off"]
MODES: tuple[str, ...] = ("auto", "on", "off")


class GpuEnergyUnavailable(RuntimeError):
    """--gpu-energy on, but no GPU can be measured; the message says why."""


class GpuEnergyRun:
    """Measure the GPUs' energy over one sending session (see the module docstring).

    meter_factory: builds the meter (tests pass one over a fake NVML); its clock must be time.time, the
    records' clock (t_start_epoch_s / t_end_epoch_s).
    """

    def __init__(self, mode: Mode = "auto", *, meter_factory: Callable[[], NvmlEnergyMeter] | None = None,
                 available: Callable[[], tuple[bool, str]] | None = None, say: Callable[[str], None] = print
                 ) -> None:
        if mode not in MODES:
            raise ValueError(f"--gpu-energy must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self._factory = meter_factory or (lambda: NvmlEnergyMeter(clock=time.time))
        self._available = available or NvmlEnergyMeter.available
        self._say = say
        self.meter: NvmlEnergyMeter | None = None
        self.summary: dict[str, Any] | None = None

    def __enter__(self) -> GpuEnergyRun:
        if self.mode == "off":
            return self
        ok, reason = self._available()
        if not ok:
            if self.mode == "on":
                raise GpuEnergyUnavailable(f"--gpu-energy on, but no GPU can be measured: {reason}")
            return self
        self.meter = self._factory().start()
        self._say(f"measuring GPU energy with NVML: {reason}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.meter is not None:
            self.meter.stop()

    def devices(self) -> str | None:
        """'1 x NVIDIA H200' (or a list when they differ), None when nothing was measured."""
        if self.meter is None or not self.meter.device_names:
            return None
        names = self.meter.device_names
        return f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)

    def shares(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One line per served record that overlaps the measured window: key, gpu_energy_j, method, devices;
        plus the session's summary in self.summary (window, total, idle)."""
        if self.meter is None or len(self.meter.samples) < 2:
            return []
        samples = self.meter.samples
        t0, t1 = samples[0].t_s, samples[-1].t_s
        served = [r for r in records if r.get("success") and r["t_end_epoch_s"] >= t0 and r["t_start_epoch_s"] <= t1]
        result = attribute_energy([(r["t_start_epoch_s"], r["t_end_epoch_s"]) for r in served], samples)
        method = f"{self.meter.method}: {ATTRIBUTION}"
        devices = self.devices()
        self.summary = {"window_s": t1 - t0, "total_j": result.total_j, "idle_j": result.idle_j,
                        "requests": len(served), "method": method, "devices": devices}
        return [{"key": r["key"], "gpu_energy_j": j, "gpu_energy_method": method, "gpu_energy_devices": devices}
                for r, j in zip(served, result.per_request_j)]

    def save(self, store: Any) -> Path | None:
        """Append this session's shares (and its summary) to the run directory's gpu_energy.jsonl."""
        lines = self.shares(store.records())
        if not lines:
            return None
        path = Path(store.directory) / GPU_ENERGY_FILE
        with open(path, "a", encoding="utf-8") as handle:
            for line in [*lines, {"session_summary": self.summary}]:
                handle.write(json.dumps(line) + "\n")
        summary = self.summary or {}
        self._say(f"GPU energy ({summary.get('devices')}): {summary.get('total_j', 0.0):.1f} J over "
                  f"{summary.get('window_s', 0.0):.1f} s, {summary.get('idle_j', 0.0):.1f} J of it with no request "
                  f"in flight; shares in {path}")
        return path


def with_gpu_energy(run_dir: str | Path, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records with their GPU-energy share (the latest line per key of gpu_energy.jsonl) merged in."""
    path = Path(run_dir) / GPU_ENERGY_FILE
    shares: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "key" in entry:
                shares[entry["key"]] = entry
    return [{**record, **{k: v for k, v in shares.get(record["key"], {}).items() if k != "key"}}
            for record in records]
