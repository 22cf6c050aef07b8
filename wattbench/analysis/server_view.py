"""The report's SERVER VIEW and its time-series panel: what the server said about itself while it was measured.

From the CSV (any run, also `wattbench report`): per run, the concurrency the client asked for and kept in flight
beside the batch the server ran (server_batch: its running requests while each request was in flight) and its
queue (server_queue), and a plain warning when the client asked for more than the server runs (the rest only
queue). From the run directory's samples (telemetry/sampler.py; given by `run` and `sweep`): the running and
waiting requests over the run, KV-cache usage, and server-side vs client-side output tokens per second. The
time-series panel is analysis/server_dashboard.py.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wattbench.protocol.metrics import in_flight

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: The client "asks for more than the server runs" when it asked for at least this many more in flight.
OVERASK_MARGIN = 1.0


def server_view_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: requested concurrency, the client's mean in flight, the server's batch (mean, max over requests)
    and queue (mean), the simulated lens's batch source. Empty when no request has a server_batch."""
    import pandas as pd

    cols = ["run_id", "requested_concurrency", "client_in_flight", "server_batch_mean", "server_batch_max",
            "server_queue_mean", "sim_batch_source", "requests"]
    if "server_batch" not in df.columns or df["server_batch"].isna().all():
        return pd.DataFrame(columns=cols)
    req = df.drop_duplicates(["run_id", "request_id"])
    req = req[req["success"].astype(bool)]
    rows = []
    for run_id, g in req.groupby("run_id", sort=False):
        spans = [(float(s), float(s) + float(lat)) for s, lat in zip(g["t_start_s"], g["latency_s"])
                 if not (math.isnan(float(s)) or math.isnan(float(lat)))]
        client_mean, _, _ = in_flight(spans)
        batch = g["server_batch"].astype(float)
        source = g["sim_batch_source"].dropna() if "sim_batch_source" in g else pd.Series([], dtype=object)
        rows.append([run_id, _first(g, "requested_concurrency"), client_mean, batch.mean(), batch.max(),
                     g["server_queue"].astype(float).mean(), source.mode().iloc[0] if len(source) else None,
                     len(g)])
    return pd.DataFrame(rows, columns=cols)


def _num(value: Any, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(float(value), spec)


def _first(g: pd.DataFrame, column: str) -> Any:
    if column not in g:
        return None
    values = g[column].dropna()
    return values.iloc[0] if len(values) else None


def overask_warnings(table: pd.DataFrame) -> list[str]:
    """One line per run whose client asked for more in flight than the server ran."""
    lines = []
    for r in table.itertuples(index=False):
        asked = r.requested_concurrency
        if asked is None or (isinstance(asked, float) and math.isnan(asked)) or math.isnan(r.server_batch_max):
            continue
        if float(asked) >= r.server_batch_max + OVERASK_MARGIN and r.server_queue_mean >= OVERASK_MARGIN:
            lines.append(
                f"warning: run {r.run_id} asked for {_num(asked, '.4g')} requests in flight, but the server ran at "
                f"most {_num(r.server_batch_max, '.3g')} at once (mean {_num(r.server_batch_mean, '.3g')}) and "
                f"kept {_num(r.server_queue_mean, '.3g')} waiting on average: the rest only queue (their time to "
                "first token grows; the energy per request does not fall below the server's batch)")
    return lines


def samples_summary(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Over a run's samples (one session or several): window, running / waiting / KV usage (time-weighted mean,
    max) and the server's output and prompt tokens per second (counter increases, a decrease counted as a
    reset, over the sampled time)."""
    out: dict[str, Any] = {"samples": len(samples), "engine": next((s.get("engine") for s in samples
                                                                     if s.get("engine")), None)}
    if len(samples) < 2:
        return out
    out["window_s"] = _covered_s(samples)
    for role in ("running", "waiting", "kv_usage"):
        steps = [(float(s["t_epoch_s"]), float(s[role])) for s in samples if isinstance(s.get(role), int | float)]
        if steps:
            out[f"{role}_mean"] = _step_mean(steps, samples)
            out[f"{role}_max"] = max(v for _, v in steps)
    for role, name in (("generation_tokens_total", "server_output_tokens_per_s"),
                       ("prompt_tokens_total", "server_prompt_tokens_per_s")):
        increase = _counter_increase(samples, role)
        if increase is not None and out["window_s"] > 0:
            out[name] = increase / out["window_s"]
    return out


def _pairs(samples: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Consecutive samples of the same session."""
    return [(a, b) for a, b in zip(samples, samples[1:]) if a.get("session") == b.get("session")]


def _covered_s(samples: Sequence[Mapping[str, Any]]) -> float:
    return sum(float(b["t_epoch_s"]) - float(a["t_epoch_s"]) for a, b in _pairs(samples))


def _step_mean(steps: Sequence[tuple[float, float]], samples: Sequence[Mapping[str, Any]]) -> float:
    value_at = dict(steps)
    area = covered = 0.0
    for a, b in _pairs(samples):
        t_a = float(a["t_epoch_s"])
        if t_a in value_at:
            dt = float(b["t_epoch_s"]) - t_a
            area += value_at[t_a] * dt
            covered += dt
    return area / covered if covered > 0 else math.nan


def _counter_increase(samples: Sequence[Mapping[str, Any]], role: str) -> float | None:
    total, seen = 0.0, False
    for a, b in _pairs(samples):
        va, vb = a.get(role), b.get(role)
        if isinstance(va, int | float) and isinstance(vb, int | float):
            total += vb - va if vb >= va else vb
            seen = True
    return total if seen else None


def client_output_tokens_per_s(df: pd.DataFrame) -> float:
    """Output tokens the client received per second of the run (first send to last answer)."""
    req = df.drop_duplicates(["run_id", "request_id"])
    req = req[req["success"].astype(bool)]
    if req.empty:
        return math.nan
    span = float((req["t_start_s"] + req["latency_s"]).max() - req["t_start_s"].min())
    return float(req["completion_tokens"].sum()) / span if span > 0 else math.nan


def samples_table(df: pd.DataFrame, samples_by_run: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """Per run with samples: engine, samples, running / waiting / KV usage (mean, max), the server's and the
    client's output tokens per second."""
    import pandas as pd

    rows = []
    for run_id, samples in samples_by_run.items():
        if not samples:
            continue
        s = samples_summary(samples)
        run_df = df[df["run_id"] == run_id] if "run_id" in df else df
        rows.append({"run_id": run_id, "engine": s.get("engine"), "samples": s["samples"],
                     **{k: s.get(k) for k in ("running_mean", "running_max", "waiting_mean", "waiting_max",
                                              "kv_usage_mean", "kv_usage_max", "server_output_tokens_per_s")},
                     "client_output_tokens_per_s": client_output_tokens_per_s(run_df) if len(run_df) else math.nan})
    return pd.DataFrame(rows)
