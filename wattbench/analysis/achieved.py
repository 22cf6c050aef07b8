"""Achieved load, from the CSV alone: requests in flight (time-averaged and most), requests/s and output
tokens/s over the client's wall span, against what was asked for; and where the time went (the model call in
the service vs the service's overhead and queueing). Rows of the warmup / cooldown phases are left out."""

from __future__ import annotations

import math

import pandas as pd

from wattbench.analysis.tables import requests_of
from wattbench.protocol.metrics import in_flight

SHORTFALL_TOLERANCE = 0.9  # achieved mean in flight below 90% of what could be in flight: flagged


def measured_phase(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the statistics use: phase 'measure' (all rows of a CSV without a phase column)."""
    if "phase" not in df.columns:
        return df
    return df[df["phase"].isna() | (df["phase"] == "measure")]


def load_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: path, requests, served, requested vs achieved concurrency, span, req/s and output tokens/s over
    the client's wall span (first send to last finish of the measured phase), mean latency seen by the client
    vs the service's own, and `shortfall` (empty when the load asked for was reached)."""
    req = requests_of(measured_phase(df))
    rows = []
    for run_id, run in req.groupby("run_id", sort=True):
        ok = run[run["success"]]
        starts = run["t_start_s"]
        ends = (run["t_start_s"] + run["latency_s"]).fillna(run["t_start_s"])
        served = ok["t_start_s"].astype(float)
        mean, most, span = in_flight(list(zip(served, served + ok["latency_s"].astype(float), strict=True)))
        full_span = float(ends.max() - starts.min()) if len(run) else 0.0
        requested = first_value(run, "requested_concurrency")
        rate = first_value(run, "requested_rate_rps")
        row = dict(
            run_id=run_id, path=first_value(run, "path") or "service", requests=len(run), served=len(ok),
            requested_concurrency=requested, requested_rate_rps=rate,
            achieved_concurrency_mean=mean, achieved_concurrency_max=most, span_s=full_span,
            throughput_rps=len(ok) / full_span if full_span > 0 else math.nan,
            output_tokens_per_s=float(ok["completion_tokens"].sum()) / full_span if full_span > 0 else math.nan,
            latency_s_mean=ok["latency_s"].mean(), ttft_s_mean=ok["ttft_s"].mean(),
            service_latency_s_mean=_mean(ok, "service_latency_s"),
            service_overhead_s_mean=_mean(ok, "service_overhead_s"),
        )
        row["shortfall"] = _shortfall(row)
        rows.append(row)
    return pd.DataFrame(rows)


def first_value(frame: pd.DataFrame, column: str) -> object:
    """The first non-empty value of `column`, None when the column is missing or empty."""
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    return values.iloc[0] if not values.empty else None


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(frame[column].mean()) if column in frame.columns and frame[column].notna().any() else math.nan


def _shortfall(row: dict) -> str:
    """Why the achieved load fell short of the requested one ('' when it did not, or nothing was asked)."""
    requested = row["requested_concurrency"]
    if requested is None or row["requested_rate_rps"] is not None or not row["served"]:
        return ""
    possible = min(float(requested), float(row["served"]))
    mean = row["achieved_concurrency_mean"]
    if not (mean < SHORTFALL_TOLERANCE * possible):
        return ""
    words = (f"achieved {mean:.1f} requests in flight on average of {possible:g} possible "
             f"({1 - mean / possible:.0%} short)")
    service, overhead = row["service_latency_s_mean"], row["service_overhead_s_mean"]
    if not math.isnan(service) and not math.isnan(overhead):
        words += (f"; of the client's mean latency {row['latency_s_mean']:.3f} s, the model call in the service "
                  f"took {service:.3f} s and the service's overhead and queueing {overhead:.3f} s")
    return words + "; the rest is time between requests on the client (see client CPU below)"


def load_text(table: pd.DataFrame, notes: list[str] | tuple[str, ...] = (), markdown: bool = False) -> str:
    """The report's 'Load' section: requested vs achieved, per run, and the run's notes (stop reason, CPU)."""
    lines = []
    for row in table.itertuples(index=False):
        asked = (f"rate {row.requested_rate_rps:g} req/s" if _present(row.requested_rate_rps)
                 else f"concurrency {row.requested_concurrency:g}" if _present(row.requested_concurrency)
                 else "load not recorded")
        lines.append(
            f"run {row.run_id} ({row.path} path): asked {asked}; achieved {row.achieved_concurrency_mean:.2f} "
            f"in flight on average, {row.achieved_concurrency_max} at most; {row.served}/{row.requests} served "
            f"in {row.span_s:.3f} s = {row.throughput_rps:.3f} req/s, {row.output_tokens_per_s:.1f} output "
            f"tokens/s; mean latency {row.latency_s_mean:.4f} s, TTFT {row.ttft_s_mean:.4f} s (client)"
            + (f"; service's own latency {row.service_latency_s_mean:.4f} s, overhead and queueing "
               f"{row.service_overhead_s_mean:.4f} s" if not math.isnan(row.service_latency_s_mean) else "")
        )
        if row.shortfall:
            lines.append(f"SHORT OF THE REQUESTED LOAD: {row.shortfall}")
    lines += list(notes)
    lines.append("Throughput = served requests / the client's wall span (first send to last finish); latency and "
                 "TTFT are timed by the client where the bytes arrive; warmup / cooldown rows are left out.")
    bullet = "- " if markdown else ""
    return "\n".join(bullet + line for line in lines)


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
