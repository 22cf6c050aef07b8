"""Measured GPU energy through NVML, with a fakeable seam, and per-request attribution of that energy.

`NvmlEnergyMeter` reads each selected GPU's energy counter (nvmlDeviceGetTotalEnergyConsumption: millijoules
since the driver loaded; Volta or newer) at start, at stop, on demand (`sample()`) and from a background thread
every `interval_s`, and keeps (t_s, cumulative energy_j per device) samples, so the energy over any interval inside
the run can be read (`energy_between`, linear between samples). Where the counter is not supported (pre-Volta:
NVMLError_NotSupported) it integrates nvmlDeviceGetPowerUsage readings (milliwatts) by the trapezoid rule instead;
`method` names which: "nvml_total_energy" or "nvml_power_sampling".

`attribute_energy(requests, samples)` splits that energy among requests by time in flight (see its docstring).

pynvml (package nvidia-ml-py) is imported only when no `nvml` stand-in is passed; the stand-in needs the same
functions and an `NVMLError` exception class (see fake_nvml.py).
"""
from __future__ import annotations

import bisect
import importlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Self

METHOD_TOTAL_ENERGY = "nvml_total_energy"
METHOD_POWER_SAMPLING = "nvml_power_sampling"
PIP_HINT = "pip install nvidia-ml-py"

# NVML return codes (nvml.h), used when an exception carries only `.value`.
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12


class NvmlUnavailableError(RuntimeError):
    """NVML cannot measure here; the message is one line saying why (and how to fix it where that is known)."""


@dataclass(frozen=True)
class Sample:
    """One reading: t_s on the meter's clock, cumulative energy_j per device since start() (never decreasing),
    and power_w per device when power was read (power-sampling mode, or read_power=True)."""

    t_s: float
    energy_j: tuple[float, ...]
    power_w: tuple[float, ...] | None = None

    @property
    def total_energy_j(self) -> float:
        return math.fsum(self.energy_j)


@dataclass(frozen=True)
class CounterReset:
    """A device's energy counter read lower than the previous reading (driver reload / GPU reset).
    The interval spanning it is counted as zero energy for that device (an undercount, never negative)."""

    t_s: float
    device_index: int
    previous_mj: int
    current_mj: int


@dataclass(frozen=True)
class Attribution:
    """per_request_j[i] is request i's share; idle_j is energy while no request was in flight;
    total_j is the energy over the whole sampled window, exactly math.fsum(per_request_j + [idle_j])."""

    per_request_j: list[float]
    idle_j: float
    total_j: float
    method: str


# ------------------------------------------------------------------------------------------------------------
# NVML loading, error classification, device selection
# ------------------------------------------------------------------------------------------------------------

def load_nvml(nvml: Any | None = None) -> Any:
    """The stand-in if given, else the pynvml module; NvmlUnavailableError when pynvml is not installed."""
    if nvml is not None:
        return nvml
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailableError(f"NVML unavailable: the pynvml module is not installed ({exc}); "
                                   f"fix: {PIP_HINT}") from exc


def _error_value(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _is_not_supported(nv: Any, exc: BaseException) -> bool:
    cls = getattr(nv, "NVMLError_NotSupported", None)
    if isinstance(cls, type) and isinstance(exc, cls):
        return True
    return _error_value(exc) == getattr(nv, "NVML_ERROR_NOT_SUPPORTED", _NVML_ERROR_NOT_SUPPORTED)


def _init_failure_reason(nv: Any, exc: BaseException) -> str:
    value = _error_value(exc)
    if value == getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", _NVML_ERROR_LIBRARY_NOT_FOUND):
        return (f"NVML unavailable: libnvidia-ml.so not found - no NVIDIA driver installed on this machine ({exc})")
    if value == getattr(nv, "NVML_ERROR_DRIVER_NOT_LOADED", _NVML_ERROR_DRIVER_NOT_LOADED):
        return f"NVML unavailable: the NVIDIA driver is not loaded - no GPU or driver not running ({exc})"
    if value == getattr(nv, "NVML_ERROR_NO_PERMISSION", _NVML_ERROR_NO_PERMISSION):
        return f"NVML unavailable: no permission to open the NVIDIA device ({exc})"
    return f"NVML unavailable: nvmlInit failed ({exc})"


def visible_device_indices(device_count: int, env: Mapping[str, str] | None = None) -> tuple[list[int], str | None]:
    """NVML indices to measure: CUDA_VISIBLE_DEVICES when it lists integers, else all devices.

    Returns (indices, note). Like CUDA, the list is read up to its first invalid entry (a negative or
    out-of-range index); an empty CUDA_VISIBLE_DEVICES hides every GPU. Entries that are not integers (GPU-/MIG-
    UUIDs) are not resolved here: all devices are measured and the note says so. NVML indices follow PCI bus order;
    CUDA's follow it only with CUDA_DEVICE_ORDER=PCI_BUS_ID (on a one-GPU machine they agree).
    """
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(device_count)), None
    entries = [e.strip() for e in raw.split(",")] if raw.strip() else []
    if not entries:
        return [], "CUDA_VISIBLE_DEVICES is empty, so no GPU is visible"
    try:
        numbers = [int(e) for e in entries]
    except ValueError:
        return list(range(device_count)), (f"CUDA_VISIBLE_DEVICES={raw!r} does not list integer indices; "
                                           f"measuring all {device_count} device(s)")
    chosen: list[int] = []
    for n in numbers:
        if n < 0 or n >= device_count or n in chosen:
            note = f"CUDA_VISIBLE_DEVICES={raw!r}: entries from {n} on ignored (invalid index, as CUDA does)"
            return chosen, note
        chosen.append(n)
    return chosen, None


@dataclass(frozen=True)
class _Probe:
    method: str
    indices: list[int]
    names: list[str]
    note: str | None


def _probe(nv: Any, devices: Sequence[int] | None, env: Mapping[str, str] | None) -> _Probe:
    """With NVML initialised: the devices to read and the method; NvmlUnavailableError when nothing can be read."""
    err = nv.NVMLError
    count = nv.nvmlDeviceGetCount()
    if count < 1:
        raise NvmlUnavailableError("NVML unavailable: the driver is loaded but NVML finds no NVIDIA GPU")
    note = None
    if devices is None:
        indices, note = visible_device_indices(count, env)
    else:
        indices = list(devices)
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise NvmlUnavailableError(f"NVML unavailable: device indices {bad} out of range (NVML sees {count})")
    if not indices:
        raise NvmlUnavailableError(f"NVML unavailable: no device selected ({note or 'empty device list'})")
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices]
    names = [_as_str(nv.nvmlDeviceGetName(h)) for h in handles]
    method = METHOD_TOTAL_ENERGY
    for i, h in zip(indices, handles):
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(h)
        except err as exc:
            if not _is_not_supported(nv, exc):
                raise
            method = METHOD_POWER_SAMPLING
            break
    if method == METHOD_POWER_SAMPLING:
        for i, h in zip(indices, handles):
            try:
                nv.nvmlDeviceGetPowerUsage(h)
            except err as exc:
                if not _is_not_supported(nv, exc):
                    raise
                raise NvmlUnavailableError(
                    f"NVML unavailable: device {i} ({names[indices.index(i)]}) supports neither the total energy "
                    f"counter nor power readings ({exc})") from exc
    return _Probe(method, indices, names, note)


def _as_str(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


# ------------------------------------------------------------------------------------------------------------
# The meter
# ------------------------------------------------------------------------------------------------------------

class NvmlEnergyMeter:
    """GPU energy from NVML over a run: `with NvmlEnergyMeter() as m: ...`, then m.energy_j, m.samples,
    m.energy_between(t0, t1), m.attribute(requests).

    nvml: pynvml or a stand-in (fake_nvml.FakeNvml); imported lazily when None.
    clock: seconds, monotonic (time.monotonic); sample times and request times must use the same clock.
    devices: NVML indices; None = CUDA_VISIBLE_DEVICES when it lists integers, else all.
    interval_s: background sampling period; None = no thread (samples only at start, stop and sample()).
    read_power: also read nvmlDeviceGetPowerUsage at every sample (always done in power-sampling mode).
    """

    def __init__(self, *, nvml: Any | None = None, clock: Callable[[], float] = time.monotonic,
                 devices: Sequence[int] | None = None, interval_s: float | None = 0.1, read_power: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        if interval_s is not None and not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 or None, got {interval_s!r}")
        self._nvml_arg = nvml
        self._clock = clock
        self._devices_arg = None if devices is None else list(devices)
        self.interval_s = interval_s
        self.read_power = read_power
        self._env = env
        self._nv: Any | None = None
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._last_raw_mj: list[int] = []
        self._acc_j: list[float] = []
        self._last_power_w: list[float] = []
        self.method: str | None = None
        self.device_indices: list[int] = []
        self.device_names: list[str] = []
        self.note: str | None = None
        self._samples: list[Sample] = []
        self.counter_resets: list[CounterReset] = []
        self.errors: list[str] = []
        self.unavailable: str | None = None

    # -- availability ------------------------------------------------------------------------------------
    @classmethod
    def available(cls, *, nvml: Any | None = None, devices: Sequence[int] | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[bool, str]:
        """(True, "<method> on N device(s): names") or (False, one line saying why and, where known, how to fix)."""
        try:
            nv = load_nvml(nvml)
        except NvmlUnavailableError as exc:
            return False, str(exc)
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            return False, _init_failure_reason(nv, exc)
        try:
            probe = _probe(nv, devices, env)
        except NvmlUnavailableError as exc:
            return False, str(exc)
        except nv.NVMLError as exc:
            return False, f"NVML unavailable: reading the devices failed ({exc})"
        finally:
            nv.nvmlShutdown()
        text = f"{probe.method} on {len(probe.indices)} device(s) {probe.indices}: {', '.join(probe.names)}"
        return True, text + (f" ({probe.note})" if probe.note else "")

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Initialise NVML, read every counter now (the first sample, at energy 0), start the sampler thread."""
        if self._running:
            raise RuntimeError("NvmlEnergyMeter already started")
        nv = load_nvml(self._nvml_arg)
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise NvmlUnavailableError(_init_failure_reason(nv, exc)) from exc
        try:
            try:
                probe = _probe(nv, self._devices_arg, self._env)
            except nv.NVMLError as exc:
                raise NvmlUnavailableError(f"NVML unavailable: reading the devices failed ({exc})") from exc
            self._nv = nv
            self.method, self.device_indices, self.device_names, self.note = (
                probe.method, probe.indices, probe.names, probe.note)
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in probe.indices]
            self._samples, self.counter_resets, self.errors, self.unavailable = [], [], [], None
            self._first_sample()
        except BaseException:
            self._nv = None
            nv.nvmlShutdown()
            raise
        self._running = True
        if self.interval_s is not None:
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._run_sampler, name="nvml-energy-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampler, read every counter now (the last sample), shut NVML down (always)."""
        if not self._running:
            raise RuntimeError("NvmlEnergyMeter not started")
        nv = self._nv
        try:
            if self._thread is not None:
                self._stop_event.set()
                self._thread.join()
                self._thread = None
            try:
                self.sample()
            except nv.NVMLError as exc:
                self.unavailable = f"NVML counter unreadable at stop: {exc}; energy ends at the last good sample"
                self.errors.append(self.unavailable)
        finally:
            self._running = False
            self._nv = None
            nv.nvmlShutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- sampling --------------------------------------------------------------------------------------------
    def _read(self) -> tuple[float, list[int] | None, list[float] | None]:
        nv = self._nv
        t_before = self._clock()
        raw = ([int(nv.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]
               if self.method == METHOD_TOTAL_ENERGY else None)
        power = ([nv.nvmlDeviceGetPowerUsage(h) / 1000.0 for h in self._handles]
                 if self.method == METHOD_POWER_SAMPLING or self.read_power else None)
        t_after = self._clock()
        return (t_before + t_after) / 2.0, raw, power

    def _first_sample(self) -> None:
        with self._lock:
            t, raw, power = self._read()
            n = len(self._handles)
            self._last_raw_mj = raw if raw is not None else [0] * n
            self._last_power_w = power if power is not None else [0.0] * n
            self._acc_j = [0.0] * n
            self._samples.append(Sample(t, tuple(self._acc_j), None if power is None else tuple(power)))

    def sample(self) -> float:
        """Read every counter now and record it; returns the sample's time (use it as an exact window edge)."""
        if self._nv is None:
            raise RuntimeError("NvmlEnergyMeter not started")
        with self._lock:
            t, raw, power = self._read()
            t_prev = self._samples[-1].t_s
            t = max(t, t_prev)  # a clock must not run backwards between samples
            for d in range(len(self._handles)):
                if raw is not None:
                    delta_mj = raw[d] - self._last_raw_mj[d]
                    if delta_mj < 0:
                        self.counter_resets.append(CounterReset(t, self.device_indices[d], self._last_raw_mj[d],
                                                                raw[d]))
                        delta_mj = 0
                    self._acc_j[d] += delta_mj / 1000.0
                    self._last_raw_mj[d] = raw[d]
                else:
                    assert power is not None
                    self._acc_j[d] += (self._last_power_w[d] + power[d]) / 2.0 * (t - t_prev)
                if power is not None:
                    self._last_power_w[d] = power[d]
            self._samples.append(Sample(t, tuple(self._acc_j), None if power is None else tuple(power)))
            return t

    def _run_sampler(self) -> None:
        nv = self._nv
        while not self._stop_event.wait(self.interval_s):
            try:
                self.sample()
            except nv.NVMLError as exc:  # recorded; the next sample (or stop's) carries on from the last good one
                self.errors.append(f"t={self._clock():.3f}s: NVML read failed in the sampler: {exc}")

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    @property
    def energy_j(self) -> float:
        """Energy of all selected devices from start to the last sample (stop)."""
        s = self.samples
        return s[-1].total_energy_j - s[0].total_energy_j if s else 0.0

    @property
    def duration_s(self) -> float:
        s = self.samples
        return s[-1].t_s - s[0].t_s if s else 0.0

    def energy_between(self, t0_s: float, t1_s: float, *, device: int | None = None) -> float:
        """Joules between t0_s and t1_s (all devices, or the NVML index `device`), linear between samples."""
        samples = self.samples
        if device is None:
            values = [s.total_energy_j for s in samples]
        else:
            d = self.device_indices.index(device)
            values = [s.energy_j[d] for s in samples]
        return _energy_between([s.t_s for s in samples], values, t0_s, t1_s)

    def attribute(self, requests: Iterable[Any]) -> Attribution:
        return attribute_energy(requests, self.samples, source=f"NVML energy ({self.method})")


# ------------------------------------------------------------------------------------------------------------
# Interpolation and attribution
# ------------------------------------------------------------------------------------------------------------

def _cumulative_at(times: Sequence[float], values: Sequence[float], t: float) -> float:
    if not times or t < times[0] or t > times[-1]:
        span = f"[{times[0]}, {times[-1]}]" if times else "(no samples)"
        raise ValueError(f"time {t} is outside the sampled window {span}")
    i = bisect.bisect_right(times, t) - 1
    if times[i] == t or i == len(times) - 1:
        return values[i]
    t_a, t_b = times[i], times[i + 1]
    return values[i] + (values[i + 1] - values[i]) * (t - t_a) / (t_b - t_a)


def _energy_between(times: Sequence[float], values: Sequence[float], t0: float, t1: float) -> float:
    if t1 < t0:
        raise ValueError(f"t1_s ({t1}) is before t0_s ({t0})")
    return _cumulative_at(times, values, t1) - _cumulative_at(times, values, t0)


def _sample_point(s: Any) -> tuple[float, float]:
    if isinstance(s, Sample):
        return s.t_s, s.total_energy_j
    t, e = s
    return float(t), (math.fsum(e) if isinstance(e, Sequence) else float(e))


def _request_span(r: Any) -> tuple[float, float]:
    if hasattr(r, "start_s") and hasattr(r, "end_s"):
        start, end = r.start_s, r.end_s
    else:
        start, end = r
    start, end = float(start), float(end)
    if not end >= start:
        raise ValueError(f"request ends ({end}) before it starts ({start})")
    return start, end


def attribute_energy(requests: Iterable[Any], samples: Sequence[Any], *, source: str = "NVML energy"
                     ) -> Attribution:
    """Split the energy of the sampled window among requests by time in flight.

    requests: (start_s, end_s) pairs or objects with .start_s/.end_s, on the samples' clock.
    samples: Sample objects or (t_s, cumulative energy_j) pairs (energy a number or per-device sequence), in
    time order. Cumulative energy is linear between samples.

    Rule: the window [first sample, last sample] is cut at every sample time and every request start/end inside
    it; the energy of each piece is split equally among the requests in flight during all of it, or counted as
    idle when none is. Parts of requests outside the window get nothing. Shares are summed as exact rationals and
    rounded once; total_j = math.fsum(per_request_j + [idle_j]) exactly (conservation), which equals the window's
    energy E(last) - E(first) to float rounding.
    """
    spans = [_request_span(r) for r in requests]
    points = [_sample_point(s) for s in samples]
    if len(points) < 2:
        raise ValueError("attribution needs at least two samples")
    times = [t for t, _ in points]
    values = [e for _, e in points]
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError("samples are not in time order")
    lo, hi = times[0], times[-1]
    cuts = set(times)
    for start, end in spans:
        cuts.update(t for t in (start, end) if lo < t < hi)
    edges = sorted(cuts)
    shares = [Fraction(0)] * len(spans)
    idle = Fraction(0)
    total = Fraction(0)
    e_prev = _cumulative_at(times, values, edges[0])
    for a, b in zip(edges, edges[1:]):
        e_b = max(_cumulative_at(times, values, b), e_prev)  # interpolation rounding must not go backwards
        piece = Fraction(e_b) - Fraction(e_prev)
        e_prev = e_b
        total += piece
        in_flight = [i for i, (start, end) in enumerate(spans) if start <= a and end >= b]
        if in_flight:
            each = piece / len(in_flight)
            for i in in_flight:
                shares[i] += each
        else:
            idle += piece
    per_request_j = [float(s) for s in shares]
    idle_j = float(idle)
    # total_j is the exactly rounded sum of the reported parts, so math.fsum(per_request_j + [idle_j]) == total_j
    # holds exactly; it differs from the window's measured energy (float(total)) by rounding only.
    total_j = math.fsum(per_request_j + [idle_j])
    assert math.isclose(total_j, float(total), rel_tol=1e-12, abs_tol=1e-9), (total_j, float(total))
    return Attribution(per_request_j=per_request_j, idle_j=idle_j, total_j=total_j,
                       method=f"equal share of {source} among in-flight requests per interval between "
                              f"samples/request events; idle_j = energy with none in flight")
