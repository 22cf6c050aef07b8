"""Serving engines' metric names by role (wattbench/data/server_metrics.json, each engine's source cited) and the
view of one scrape in those roles: running, waiting, kv_usage, token and prefix-cache counters.

Values that lie (NaN, infinite, negative) are dropped from the view and named in `rejected`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from wattbench.paths import DATA_DIR
from wattbench.telemetry.prometheus import Series

SERVER_METRICS_PATH = DATA_DIR / "server_metrics.json"

ROLES = ("running", "waiting", "kv_usage", "prompt_tokens_total", "generation_tokens_total",
         "prefix_cache_queries_total", "prefix_cache_hits_total", "prefix_cache_hit_rate", "preemptions_total")
MEAN_ROLES = frozenset({"kv_usage", "prefix_cache_hit_rate"})  # averaged over label sets; the others summed
#: Raw series kept per sample besides the roles (histogram buckets left out), at most this many.
MAX_RAW_SERIES = 400


@lru_cache(maxsize=1)
def server_metrics_table() -> dict[str, Any]:
    """wattbench/data/server_metrics.json (engines' names with their sources, dcgm-exporter's)."""
    return json.loads(SERVER_METRICS_PATH.read_text(encoding="utf-8"))


@dataclass
class EngineView:
    """One scrape in roles: engine (vllm, sglang, tgi, llamacpp or None), values by role, rejected values."""

    engine: str | None
    values: dict[str, float] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    raw: dict[str, float] = field(default_factory=dict)


def lookup(series: Series, name: str) -> list[tuple[dict[str, str], float]] | None:
    """The samples of `name`, or of `name`_total: prometheus_client's parser appends _total to the samples of a
    family TYPEd counter whose exposition omits it (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, tgi_request_success)."""
    found = series.get(name)
    return found if found is not None else series.get(name + "_total")


def _label_text(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def engine_view(series: Series) -> EngineView:
    """The engine whose names the scrape carries (the one with most roles present) and each role's value."""
    engines = server_metrics_table()["engines"]
    best, best_hits = None, 0
    for name, spec in engines.items():
        hits = sum(1 for names in spec["roles"].values() if any(lookup(series, n) for n in names))
        if hits > best_hits:
            best, best_hits = name, hits
    view = EngineView(best)
    if best is not None:
        for role, names in engines[best]["roles"].items():
            sample_name = next((n for n in names if lookup(series, n)), None)
            if sample_name is None:
                continue
            values = [v for _, v in lookup(series, sample_name) or []]
            bad = [v for v in values if not math.isfinite(v) or v < 0]
            if bad:
                view.rejected.append(f"{sample_name} = {bad[0]}")
                continue
            view.values[role] = math.fsum(values) / (len(values) if role in MEAN_ROLES else 1)
    for name, samples in series.items():
        if name.endswith("_bucket") or name.endswith("_created"):
            continue
        for labels, value in samples:
            if len(view.raw) >= MAX_RAW_SERIES:
                return view
            if math.isfinite(value):
                view.raw[name + _label_text(labels)] = value
    return view


@dataclass(frozen=True)
class GpuReading:
    """One GPU of a dcgm-exporter scrape: id (host/UUID or gpu index), model, energy_mj counter, power_w."""

    gpu_id: str
    model: str | None
    energy_mj: float | None
    power_w: float | None


def dcgm_readings(series: Series) -> tuple[list[GpuReading], list[str]]:
    """Each GPU's energy counter (mJ) and power (W) from a dcgm-exporter scrape, and the values rejected."""
    spec = server_metrics_table()["dcgm"]
    by_id: dict[str, dict[str, Any]] = {}
    rejected: list[str] = []
    for key, name in (("energy_mj", spec["energy_mj"]), ("power_w", spec["power_w"])):
        for labels, value in lookup(series, name) or []:
            gpu_id = "/".join(labels[k] for k in spec["id_labels"] if labels.get(k)) or "gpu"
            entry = by_id.setdefault(gpu_id, {"model": labels.get(spec["model_label"])})
            if not math.isfinite(value) or value < 0:
                rejected.append(f"{name}{{{gpu_id}}} = {value}")
                continue
            entry[key] = value
    readings = [GpuReading(gpu_id, e.get("model"), e.get("energy_mj"), e.get("power_w"))
                for gpu_id, e in sorted(by_id.items())]
    return readings, rejected
