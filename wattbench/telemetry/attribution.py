"""Per-request figures from the sampled server metrics and remote GPU energy.

server_batch / server_queue: the time-weighted mean of the sampled running / waiting gauge over a request's
[t_start_epoch_s, t_end_epoch_s], the gauge held at each sample's value until the next sample (a step), and
for at most `stale_s` after the last one.

dcgm energy: each GPU's cumulative energy from its DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION deltas (mJ; a counter
that goes down started over: its new value is the energy since the reset), or from its power (W, trapezoids)
where the counter is absent; summed over GPUs and nodes on the samples' times and shared out among the
requests by wattbench.energy.nvml.attribute_energy (equal shares among those in flight; idle when none).
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wattbench.energy.nvml import Attribution, attribute_energy

METHOD_DCGM_ENERGY = "dcgm_total_energy"
METHOD_DCGM_POWER = "dcgm_power_sampling"


def gauge_steps(samples: Sequence[Mapping[str, Any]], role: str) -> list[tuple[float, float]]:
    """(t_epoch_s, value) of every sample that carries `role`, in time order."""
    return sorted((float(s["t_epoch_s"]), float(s[role])) for s in samples
                  if isinstance(s.get(role), int | float) and math.isfinite(s[role]))


def time_weighted_mean(steps: Sequence[tuple[float, float]], t0: float, t1: float, stale_s: float
                       ) -> float | None:
    """Mean of the step function over [t0, t1] where it is known (from the first sample to stale_s after the
    last); None when no part of [t0, t1] is known. A zero-length interval takes the value at t0."""
    if not steps or t1 < t0:
        return None
    times = [t for t, _ in steps]
    if t1 == t0:
        i = bisect.bisect_right(times, t0) - 1
        return steps[i][1] if i >= 0 and t0 - times[i] <= stale_s else None
    covered = area = 0.0
    for i, (t, value) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else t + stale_s
        end = min(end, t + stale_s)
        a, b = max(t, t0), min(end, t1)
        if b > a:
            covered += b - a
            area += value * (b - a)
    return area / covered if covered > 0 else None


def server_load(samples: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]], stale_s: float
                ) -> dict[str, dict[str, float]]:
    """key -> {"server_batch", "server_queue"} for every served record the samples cover."""
    running, waiting = gauge_steps(samples, "running"), gauge_steps(samples, "waiting")
    out: dict[str, dict[str, float]] = {}
    for r in records:
        if not r.get("success"):
            continue
        t0, t1 = float(r["t_start_epoch_s"]), float(r["t_end_epoch_s"])
        values = {"server_batch": time_weighted_mean(running, t0, t1, stale_s),
                  "server_queue": time_weighted_mean(waiting, t0, t1, stale_s)}
        kept = {k: v for k, v in values.items() if v is not None}
        if kept:
            out[r["key"]] = kept
    return out


def gpu_cumulative_j(lines: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[float, float]], str, list[str]]:
    """The summed cumulative energy (t_epoch_s, J from the first sample) of every GPU the dcgm lines name, the
    method (dcgm_total_energy, dcgm_power_sampling, or both joined by '+'), and the GPUs ('host/UUID/index
    (model)'). A GPU missing from some scrapes is interpolated linearly between the ones that have it."""
    per_gpu: dict[str, list[tuple[float, float | None, float | None]]] = {}
    models: dict[str, str | None] = {}
    for line in lines:
        for g in line.get("gpus") or []:
            per_gpu.setdefault(g["id"], []).append((float(line["t_epoch_s"]), g.get("energy_mj"), g.get("power_w")))
            models[g["id"]] = g.get("model")
    times = sorted({float(line["t_epoch_s"]) for line in lines})
    if len(times) < 2 or not per_gpu:
        return [], "", []
    methods: set[str] = set()
    total = [0.0] * len(times)
    for gpu_id, readings in per_gpu.items():
        cumulative, method = _one_gpu_cumulative_j(sorted(readings, key=lambda x: x[0]))
        if not cumulative:
            continue
        methods.add(method)
        ts = [t for t, _ in cumulative]
        for i, t in enumerate(times):
            total[i] += _interp(ts, [e for _, e in cumulative], t)
    devices = [f"{gpu_id} ({models[gpu_id]})" if models.get(gpu_id) else gpu_id for gpu_id in sorted(per_gpu)]
    return list(zip(times, total)), "+".join(sorted(methods)), devices


def _one_gpu_cumulative_j(readings: Sequence[tuple[float, float | None, float | None]]
                          ) -> tuple[list[tuple[float, float]], str]:
    """One GPU's cumulative energy in J at its own reading times: counter deltas (a lower reading is a reset:
    the energy since it is the new reading), else trapezoids of power."""
    use_counter = all(e is not None for _, e, _ in readings)
    points: list[tuple[float, float]] = []
    acc = 0.0
    prev: tuple[float, float | None, float | None] | None = None
    for reading in readings:
        t, energy_mj, power_w = reading
        if not use_counter and power_w is None:
            continue
        if prev is not None:
            if use_counter:
                delta_mj = energy_mj - prev[1]  # type: ignore[operator]
                acc += (delta_mj if delta_mj >= 0 else energy_mj) / 1000.0  # type: ignore[operator]
            else:
                acc += (prev[2] + power_w) / 2.0 * (t - prev[0])  # type: ignore[operator]
        points.append((t, acc))
        prev = reading
    return points, METHOD_DCGM_ENERGY if use_counter else METHOD_DCGM_POWER


def _interp(ts: Sequence[float], values: Sequence[float], t: float) -> float:
    if t <= ts[0]:
        return values[0]
    if t >= ts[-1]:
        return values[-1]
    i = bisect.bisect_right(ts, t) - 1
    return values[i] + (values[i + 1] - values[i]) * (t - ts[i]) / (ts[i + 1] - ts[i])


def dcgm_shares(lines: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]], attribution_note: str
                ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One line per served record inside the sampled window (key, gpu_energy_j, gpu_energy_method,
    gpu_energy_devices) and the window's summary (total_j, idle_j, window_s, requests, method, devices)."""
    series, method, devices = gpu_cumulative_j(lines)
    if len(series) < 2:
        return [], None
    t0, t1 = series[0][0], series[-1][0]
    served = [r for r in records if r.get("success") and r["t_end_epoch_s"] >= t0 and r["t_start_epoch_s"] <= t1]
    result: Attribution = attribute_energy([(r["t_start_epoch_s"], r["t_end_epoch_s"]) for r in served], series,
                                           source=f"dcgm-exporter energy ({method})")
    method_text = f"dcgm: {method}: {attribution_note}"
    shown = describe_devices(devices)
    summary = {"window_s": t1 - t0, "total_j": result.total_j, "idle_j": result.idle_j, "requests": len(served),
               "method": method_text, "devices": shown}
    shares = [{"key": r["key"], "gpu_energy_j": j, "gpu_energy_method": method_text, "gpu_energy_devices": shown}
              for r, j in zip(served, result.per_request_j)]
    return shares, summary


def describe_devices(devices: Sequence[str]) -> str:
    """'2 x NVIDIA H200 (dcgm)' when the models agree, else the list."""
    models = [d.rsplit(" (", 1)[1].rstrip(")") if " (" in d else "GPU" for d in devices]
    if models and len(set(models)) == 1:
        return f"{len(models)} x {models[0]} (dcgm)"
    return ", ".join(devices) + " (dcgm)"
