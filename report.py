"""The analysis of a wattbench run: tables, the printed report, the summary CSV and `wattbench.py report`.

Every table is a pure function of the metrics DataFrame (one row per request x deployment profile, in the CSV
schema of docs/architecture.md). `build_outputs` writes the six dashboards (dashboards.py), index.html,
plotly.min.js, the summary CSV, report.txt and report.md; `cli_report` backs `python wattbench.py report`.

Energy lenses (every energy number says which one it is):
  simulated                  per deployment profile (GPU x datacenter), from gpu_profiles (columns energy_kwh, ...)
  provider-side (EcoLogits)  the API provider's datacenter, for API models (provider_* columns)
  measured / estimated       the serving machine for the local model (measured_energy_kwh; RAPL/NVML = measured,
                             cpu_time_estimate = estimated)
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEFAULT_SLO_TTFT_S = 0.5  # interactive-chat TTFT target (DESIGN.md: "ttft <= 0.5 s")
DEFAULT_SLO_TPOT_S = 0.05  # 50 ms per output token, about 20 tokens/s, faster than reading speed (DESIGN.md)
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
SUMMARY_CSV = "summary_model_route_profile.csv"
REPORT_TXT = "report.txt"
REPORT_MD = "report.md"
CSV_GLOB = "ai_metrics_*.csv"

LENS_SIMULATED = "simulated"
LENS_PROVIDER = "provider-side (EcoLogits)"
LENS_MEASURED = "measured"
LENS_ESTIMATED = "estimated"
MEASURED_METHODS = {"rapl": LENS_MEASURED, "nvml": LENS_MEASURED, "cpu_time_estimate": LENS_ESTIMATED}

UNKNOWN = "(unknown)"
REQUEST_LEVEL = "client"  # columns the benchmark client / service records directly (time, tokens, price)


@dataclass(frozen=True)
class Column:
    """One CSV column: unit ('' when none), lens (where its number comes from) and meaning."""

    unit: str
    lens: str
    meaning: str


_R, _S, _P, _M = REQUEST_LEVEL, LENS_SIMULATED, LENS_PROVIDER, "measured / estimated"
CSV_SCHEMA: dict[str, Column] = {
    "run_id": Column("", _R, "id of the benchmark run (one `wattbench.py run`)"),
    "request_id": Column("", _R, "id of the request (unique within a run); repeated on each profile row"),
    "prompt_id": Column("", _R, "id of the test prompt (data/test_prompts.jsonl)"),
    "repeat": Column("", _R, "repeat index of the prompt in this run, from 0"),
    "prompt": Column("", _R, "the prompt text"),
    "category": Column("", _R, "prompt category from the prompt file (factual, code, ...)"),
    "route": Column("", _R, "route chosen by smart_router, e.g. Flash-Coder"),
    "route_reason": Column("", _R, "why smart_router chose that route"),
    "temperature": Column("", _R, "sampling temperature the route set"),
    "model": Column("", _R, "LiteLLM model string that answered"),
    "success": Column("bool", _R, "True when the service answered 200 with text"),
    "error": Column("", _R, "what went wrong, empty on success"),
    "status_code": Column("", _R, "HTTP status of the last attempt"),
    "attempts": Column("", _R, "HTTP attempts made (retries on 429/5xx)"),
    "retry_wait_s": Column("s", _R, "time spent waiting before retries (not part of latency)"),
    "started_at": Column("ISO-8601 UTC", _R, "when the request was sent"),
    "t_start_s": Column("s", _R, "send time in seconds since the run's first request"),
    "latency_s": Column("s", _R, "end-to-end latency: send to last byte"),
    "ttft_s": Column("s", _R, "time to first token: send to the first non-empty streamed chunk"),
    "tpot_s": Column("s", _R, "time per output token: (latency_s - ttft_s) / (completion_tokens - 1); empty below 2"),
    "tokens_per_s": Column("tokens/s", _R, "output tokens per second: completion_tokens / latency_s"),
    "prompt_tokens": Column("tokens", _R, "input tokens (provider usage, or estimated: see token_source)"),
    "completion_tokens": Column("tokens", _R, "output tokens"),
    "total_tokens": Column("tokens", _R, "prompt_tokens + completion_tokens"),
    "token_source": Column("", _R, "'provider' (usage reported by the API) or 'estimated'"),
    "cost_usd": Column("USD", _R, "API price of the request from LiteLLM's price map; empty when unknown"),
    "expected": Column("", _R, "expected answer of a graded prompt"),
    "grader": Column("", _R, "how the answer is graded; empty for ungraded prompts"),
    "correct": Column("bool", _R, "True/False for graded prompts, empty otherwise"),
    "response_text": Column("", _R, "the model's answer"),
    "measured_energy_kwh": Column("kWh", _M, "energy of this generation on the serving machine (local model only)"),
    "measured_energy_method": Column("", _M, "rapl or nvml (measured), cpu_time_estimate (estimated)"),
    "provider_energy_kwh": Column("kWh", _P, "provider's datacenter energy for this request (EcoLogits)"),
    "provider_energy_kwh_min": Column("kWh", _P, "low end of the EcoLogits range"),
    "provider_energy_kwh_max": Column("kWh", _P, "high end of the EcoLogits range"),
    "provider_carbon_gco2e": Column("gCO2e", _P, "provider-side carbon (EcoLogits, usage phase)"),
    "provider_carbon_gco2e_min": Column("gCO2e", _P, "low end of the EcoLogits range"),
    "provider_carbon_gco2e_max": Column("gCO2e", _P, "high end of the EcoLogits range"),
    "profile": Column("", _S, "deployment profile name (GPU x datacenter), e.g. A100_SIMULATED"),
    "gpu": Column("", _S, "GPU model of the profile"),
    "gpu_count": Column("", _S, "GPUs per replica (tensor parallel; raised to the fewest the model fits on)"),
    "datacenter": Column("", _S, "datacenter / cloud region id"),
    "location": Column("", _S, "where the datacenter is"),
    "tdp_w": Column("W", _S, "GPU thermal design power, per GPU"),
    "idle_w": Column("W", _S, "GPU idle power, per GPU"),
    "pue": Column("", _S, "datacenter power usage effectiveness (facility / IT energy)"),
    "grid_gco2e_per_kwh": Column("gCO2e/kWh", _S, "carbon intensity of the datacenter's grid"),
    "electricity_usd_per_kwh": Column("USD/kWh", _S, "electricity price at the datacenter"),
    "energy_method": Column("", _S, "roofline (model size known) or measured_latency_x_tdp (the original's "
                            "accounting: TDP x GPUs x measured latency)"),
    "sim_latency_s": Column("s", _S, "predicted time of this request on the profile's GPUs (roofline), or the "
                            "measured latency for measured_latency_x_tdp"),
    "idle_s": Column("s", _S, "time the service sat idle before this request, charged to it"),
    "compute_energy_kwh": Column("kWh", _S, "GPU energy while computing this request"),
    "idle_energy_kwh": Column("kWh", _S, "GPU energy while idle, charged to this request"),
    "pue_overhead_kwh": Column("kWh", _S, "facility overhead: (PUE - 1) x IT energy"),
    "energy_kwh": Column("kWh", _S, "compute + idle + PUE overhead"),
    "energy_kwh_min": Column("kWh", _S, "low end of the energy range"),
    "energy_kwh_max": Column("kWh", _S, "high end of the energy range"),
    "carbon_gco2e": Column("gCO2e", _S, "energy_kwh x grid intensity (operational carbon)"),
    "carbon_gco2e_min": Column("gCO2e", _S, "low end of the carbon range"),
    "carbon_gco2e_max": Column("gCO2e", _S, "high end of the carbon range"),
    "energy_cost_usd": Column("USD", _S, "energy_kwh x electricity price"),
    "total_cost_usd": Column("USD", _S, "cost_usd (0 when unknown) + energy_cost_usd"),
}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(CSV_SCHEMA)

NUMERIC_COLUMNS: tuple[str, ...] = tuple(
    name for name, col in CSV_SCHEMA.items()
    if col.unit not in ("", "bool", "ISO-8601 UTC") or name in {
        "repeat", "temperature", "status_code", "attempts", "gpu_count", "pue"}
)
TEXT_COLUMNS: tuple[str, ...] = ("run_id", "request_id", "model", "route", "profile", "gpu", "datacenter",
                                 "location", "category", "measured_energy_method", "error")


class ReportInputError(ValueError):
    """Input the report cannot use; the message names the file and says what to fix."""


def schema_markdown() -> str:
    """The CSV schema as a Markdown table (the README's copy is checked against it by the tests)."""
    lines = ["| column | unit | lens | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {col.unit} | {col.lens} | {col.meaning} |" for name, col in CSV_SCHEMA.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- input


def resolve_csv(path: Path) -> Path:
    """The CSV to read: `path` itself, or the newest ai_metrics_*.csv in a run directory."""
    if path.is_dir():
        found = sorted(path.glob(CSV_GLOB), key=lambda p: (p.stat().st_mtime, p.name))
        if not found:
            raise ReportInputError(f"{path}: no {CSV_GLOB} in this directory; run `python wattbench.py run` "
                                   "first or pass the CSV file")
        return found[-1]
    if not path.exists():
        raise ReportInputError(f"{path}: no such file or directory")
    return path


def missing_columns(columns: Iterable[str], required: Sequence[str] = REQUIRED_COLUMNS) -> list[str]:
    """The required columns that are not in `columns`, in schema order."""
    present = set(columns)
    return [c for c in required if c not in present]


def check_frame(df: pd.DataFrame, source: str = "DataFrame", required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise ReportInputError naming `source` when df lacks required columns or has no rows."""
    missing = missing_columns(df.columns, required)
    if missing:
        raise ReportInputError(f"{source}: not a wattbench metrics CSV, missing {len(missing)} column(s): "
                               f"{', '.join(missing)} (schema: docs/architecture.md)")
    if df.empty:
        raise ReportInputError(f"{source}: has a header but no rows; nothing to report")


def read_metrics_csv(path: Path) -> pd.DataFrame:
    """Read and check a metrics CSV; ReportInputError (one line, naming the file) when it cannot be used."""
    try:
        df = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise ReportInputError(f"{path}: file is empty (no header, no rows); run `python wattbench.py run` "
                               "first") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportInputError(f"{path}: cannot be parsed as CSV: {first_line}") from None
    except IsADirectoryError:
        raise ReportInputError(f"{path}: is a directory without {CSV_GLOB}") from None
    except PermissionError:
        raise ReportInputError(f"{path}: permission denied; make the file readable") from None
    check_frame(df, str(path))
    check_cells(df, str(path))
    return prepare(df)


SUCCESS_VALUES = frozenset({True, False, "True", "False", "true", "false", "TRUE", "FALSE", 1, 0, "1", "0"})


def check_cells(df: pd.DataFrame, source: str) -> None:
    """ReportInputError naming the row, the column and the value when a number column holds text that is not a
    number, or `success` holds something other than True / False (either would silently change the figures)."""
    for col in NUMERIC_COLUMNS:
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            _raise_first_bad(df, col, bad, source, "is not a number; correct it or leave the cell empty")
    if "success" in df.columns and df["success"].dtype != bool:
        bad = ~df["success"].isin(SUCCESS_VALUES) & df["success"].notna()
        _raise_first_bad(df, "success", bad, source, "is not True or False")


def _raise_first_bad(df: pd.DataFrame, col: str, bad: pd.Series, source: str, what: str) -> None:
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise ReportInputError(f"{source}: row {position + 1}, column {col!r}: {df[col].iloc[position]!r} {what}")


def _to_bool(values: pd.Series, *, nullable: bool) -> pd.Series:
    """Booleans from a column read back from CSV (True/False, 'true'/'false', 1/0; other values -> NA)."""
    if values.dtype == bool and not nullable:
        return values
    mapping = {True: True, False: False, "True": True, "False": False, "true": True, "false": False,
               "TRUE": True, "FALSE": False, 1: True, 0: False, "1": True, "0": False, 1.0: True, 0.0: False}
    mapped = values.map(lambda v: mapping.get(v, pd.NA) if not (isinstance(v, float) and math.isnan(v)) else pd.NA)
    out = mapped.astype("boolean")
    return out if nullable else out.fillna(False).astype(bool)


TEXT_ONLY_COLUMNS: tuple[str, ...] = ("prompt", "response_text", "expected", "route_reason", "started_at")
ANALYSIS_COLUMNS: tuple[str, ...] = tuple(c for c in REQUIRED_COLUMNS if c not in TEXT_ONLY_COLUMNS)


def lean(df: pd.DataFrame) -> pd.DataFrame:
    """df without the long text columns no table or figure reads (prompt, response_text, ...): row filters on
    100,000 rows copy much less."""
    return df.drop(columns=[c for c in TEXT_ONLY_COLUMNS if c in df.columns])


def is_prepared(df: pd.DataFrame) -> bool:
    """True when df already has the dtypes that prepare() gives."""
    def has(col: str) -> bool:
        return col in df.columns

    return (all(pd.api.types.is_float_dtype(df[c]) for c in NUMERIC_COLUMNS if has(c))
            and all(pd.api.types.is_string_dtype(df[c]) for c in TEXT_COLUMNS if has(c))
            and all(not df[c].isna().any() for c in ("model", "route", "run_id") if has(c))
            and (not has("success") or df["success"].dtype == bool)
            and (not has("correct") or df["correct"].dtype == "boolean"))


def _model_of_unanswered(df: pd.DataFrame) -> pd.Series:
    """The model column, where a request without one (never answered) takes its run's model when the run
    has exactly one; otherwise it stays missing."""
    models = df["model"]
    if not models.isna().any():
        return models
    per_run = df.dropna(subset=["model"]).groupby("run_id", dropna=False)["model"].unique()
    single = {run: found[0] for run, found in per_run.items() if len(found) == 1}
    return models.fillna(df["run_id"].map(single))


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """df with the schema's dtypes: numbers as float, success as bool, correct as nullable boolean, a missing
    model / route / run_id as '(unknown)'. A copy; df itself when it is already so (nothing here mutates it)."""
    if is_prepared(df):
        return df
    out = df.copy()
    for col in NUMERIC_COLUMNS:
        if col in out.columns and not pd.api.types.is_float_dtype(out[col]):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in TEXT_COLUMNS:
        if col in out.columns and not pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype("string")
    if {"model", "run_id"} <= set(out.columns):
        out["model"] = _model_of_unanswered(out)
    for col in ("model", "route", "run_id"):
        if col in out.columns:
            out[col] = out[col].fillna(UNKNOWN)  # a request the service never answered still counts
    if "success" in out.columns:
        out["success"] = _to_bool(out["success"], nullable=False)
    if "correct" in out.columns:
        out["correct"] = _to_bool(out["correct"], nullable=True)
    return out


# ----------------------------------------------------------------------------------------------- tables


def requests_of(df: pd.DataFrame) -> pd.DataFrame:
    """One row per request (the per-request columns repeat on each profile row)."""
    return df.drop_duplicates(subset=["run_id", "request_id"], keep="first")


def successful(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of successful requests."""
    return df[df["success"]]


def simulated(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of successful requests that their profile could simulate (energy_kwh present); the others say
    why in energy_method ("not simulated: ...")."""
    return df[df["success"] & df["energy_kwh"].notna()]


def not_simulated_table(df: pd.DataFrame) -> pd.DataFrame:
    """Successful requests a profile could not simulate: profile, energy_method (the reason), rows."""
    rows = df[df["success"] & df["energy_kwh"].isna()]
    cols = ["profile", "energy_method"]
    if rows.empty:
        return pd.DataFrame(columns=cols + ["rows"])
    return rows.groupby(cols, sort=True, dropna=False).size().rename("rows").reset_index()


def percentile_table(df: pd.DataFrame, by: Sequence[str] = ("model",),
                     metrics: Sequence[str] = ("latency_s", "ttft_s", "tpot_s"),
                     percentiles: Sequence[int] = PERCENTILES) -> pd.DataFrame:
    """p50/p90/p95/p99 (linear interpolation) of each metric over successful requests, per group.

    Columns: the `by` keys, requests (successful, per group), then <metric>_p<q> for each metric and q.
    """
    req = successful(requests_of(df))
    grouped = req.groupby(list(by), sort=True, dropna=False)
    out = grouped.size().rename("requests").to_frame()
    for metric in metrics:
        for q in percentiles:
            out[f"{metric}_p{q}"] = grouped[metric].quantile(q / 100.0)
    return out.reset_index()


def per_1k(total: pd.Series, tokens: pd.Series) -> pd.Series:
    """total / (tokens / 1000), NaN where there are no tokens."""
    return total / (tokens.where(tokens > 0) / 1000.0)


def efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x profile over successful requests: totals, per-1K-token figures (simulated lens) and ranks.

    rank_cost / rank_carbon rank the profiles of one model by total_cost_usd_per_1k_tokens and
    carbon_gco2e_per_1k_tokens (1 = lowest). Requests a profile could not simulate are left out of its figures.
    """
    ok = simulated(df)
    sums = ["total_tokens", "cost_usd", "energy_cost_usd", "total_cost_usd", "energy_kwh", "energy_kwh_min",
            "energy_kwh_max", "carbon_gco2e", "carbon_gco2e_min", "carbon_gco2e_max"]
    g = ok.groupby(["model", "profile"], sort=True)
    out = g[sums].sum(min_count=1)
    out.insert(0, "requests", g.size())
    firsts = g[["gpu", "gpu_count", "location"]].first()
    out = firsts.join(out)
    tokens = out["total_tokens"]
    out["cost_usd_per_1k_tokens"] = per_1k(out["cost_usd"].fillna(0.0), tokens)
    out["total_cost_usd_per_1k_tokens"] = per_1k(out["total_cost_usd"], tokens)
    for base in ("energy_kwh", "carbon_gco2e"):
        for suffix in ("", "_min", "_max"):
            out[f"{base}_per_1k_tokens{suffix}"] = per_1k(out[f"{base}{suffix}"], tokens)
    out = out.reset_index()
    out["rank_cost"] = out.groupby("model")["total_cost_usd_per_1k_tokens"].rank(method="min").astype("Int64")
    out["rank_carbon"] = out.groupby("model")["carbon_gco2e_per_1k_tokens"].rank(method="min").astype("Int64")
    return out.sort_values(["model", "rank_carbon", "profile"], ignore_index=True)


def energy_breakdown(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x profile: compute, idle and PUE-overhead energy (simulated lens) and their shares of energy_kwh."""
    ok = simulated(df)
    parts = ["compute_energy_kwh", "idle_energy_kwh", "pue_overhead_kwh", "energy_kwh"]
    out = ok.groupby(["model", "profile"], sort=True)[parts].sum(min_count=1).reset_index()
    total = out["energy_kwh"].where(out["energy_kwh"] > 0)
    for part, share in (("compute_energy_kwh", "compute_share"), ("idle_energy_kwh", "idle_share"),
                        ("pue_overhead_kwh", "pue_overhead_share")):
        out[share] = out[part] / total
    return out


ROUTE_PCT_COLUMNS: tuple[str, ...] = tuple(f"{m}_p{q}" for m in ("latency_s", "ttft_s") for q in (50, 90, 99))


def route_latency_table(df: pd.DataFrame, pct: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model x route: requests, successes, mean latency/TTFT/tokens/s and latency, TTFT p50/p90/p99.

    pct: percentile_table(df, by=("model", "route")) when the caller has it already (only ROUTE_PCT_COLUMNS
    are taken from it)."""
    req = requests_of(df)
    g = req.groupby(["model", "route"], sort=True)
    out = pd.DataFrame({"requests": g.size(), "successes": g["success"].sum()})
    ok = successful(req).groupby(["model", "route"], sort=True)
    out["latency_s_mean"] = ok["latency_s"].mean()
    out["ttft_s_mean"] = ok["ttft_s"].mean()
    out["tokens_per_s_mean"] = ok["tokens_per_s"].mean()
    out["cost_usd_mean"] = ok["cost_usd"].mean()
    out["temperature"] = g["temperature"].first()
    if pct is None:
        pct = percentile_table(df, by=("model", "route"), metrics=("latency_s", "ttft_s"), percentiles=(50, 90, 99))
    out = out.reset_index().merge(pct[["model", "route", *ROUTE_PCT_COLUMNS]], on=["model", "route"], how="left")
    return out.sort_values(["model", "latency_s_mean"], ignore_index=True)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x route, plus one row per model with route '(all)': graded, correct and accuracy (0..1).

    Only successful requests with a grader count; a failed request is not graded. Accuracy is NaN with no
    graded request.
    """
    req = successful(requests_of(df))
    graded = req[req["correct"].notna()].assign(correct_int=lambda d: d["correct"].astype(int))

    def _agg(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        all_groups = req.groupby(keys, sort=True).size().rename("requests")
        g = frame.groupby(keys, sort=True)["correct_int"]
        out = pd.DataFrame({"requests": all_groups})
        out["graded"] = g.size().reindex(out.index).fillna(0).astype(int)
        out["correct"] = g.sum().reindex(out.index).fillna(0).astype(int)
        return out.reset_index()

    by_route = _agg(graded, ["model", "route"])
    by_model = _agg(graded, ["model"]).assign(route="(all)")
    out = pd.concat([by_route, by_model[by_route.columns]], ignore_index=True)
    out["accuracy"] = out["correct"] / out["graded"].where(out["graded"] > 0)
    return out.sort_values(["model", "route"], ignore_index=True)


def meets_slo(req: pd.DataFrame, slo_ttft_s: float, slo_tpot_s: float) -> pd.Series:
    """True for successful requests with ttft_s <= slo_ttft_s and tpot_s <= slo_tpot_s.

    A request with fewer than 2 output tokens has no tpot_s and is judged on TTFT alone.
    """
    tpot_ok = req["tpot_s"].isna() | (req["tpot_s"] <= slo_tpot_s)
    return req["success"] & (req["ttft_s"] <= slo_ttft_s) & tpot_ok


def run_span_s(req: pd.DataFrame) -> float:
    """Wall span of one run's requests: first send to last finish (t_start_s + latency_s), in seconds."""
    start = req["t_start_s"].min()
    ends = (req["t_start_s"] + req["latency_s"]).dropna()
    end = max(ends.max() if not ends.empty else start, req["t_start_s"].max())
    return float(end - start)


def goodput_table(df: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> pd.DataFrame:
    """Per model: requests, successes, requests meeting the SLOs, SLO attainment (of all requests),
    wall span (summed over runs), throughput and goodput in requests/s."""
    req = requests_of(df).assign(meets=lambda d: meets_slo(d, slo_ttft_s, slo_tpot_s))
    rows = []
    for model, frame in req.groupby("model", sort=True):
        span = sum(run_span_s(run) for _, run in frame.groupby("run_id", sort=True))
        n_ok, n_meet = int(frame["success"].sum()), int(frame["meets"].sum())
        rows.append(dict(model=model, requests=len(frame), successes=n_ok, meeting_slo=n_meet,
                         slo_attainment=n_meet / len(frame), span_s=span,
                         throughput_rps=n_ok / span if span > 0 else math.nan,
                         goodput_rps=n_meet / span if span > 0 else math.nan,
                         slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s))
    return pd.DataFrame(rows)


def lens_table(df: pd.DataFrame, eff: pd.DataFrame | None = None) -> pd.DataFrame:
    """Energy per 1K tokens of each model under each lens, with its range where it has one.

    Long format: model, lens, source (profile name, 'EcoLogits' or the measuring method), requests (with a
    value), energy_kwh, energy_kwh_per_1k_tokens, _min, _max. The simulated lens has one row per profile,
    from eff (efficiency_table(df), computed here when the caller has not).
    """
    rows: list[dict] = []
    if eff is None:
        eff = efficiency_table(df)
    for rec in eff.itertuples(index=False):
        rows.append(dict(model=rec.model, lens=LENS_SIMULATED, source=rec.profile, requests=rec.requests,
                         energy_kwh=rec.energy_kwh, energy_kwh_per_1k_tokens=rec.energy_kwh_per_1k_tokens,
                         energy_kwh_per_1k_tokens_min=rec.energy_kwh_per_1k_tokens_min,
                         energy_kwh_per_1k_tokens_max=rec.energy_kwh_per_1k_tokens_max))
    req = successful(requests_of(df))
    prov = req[req["provider_energy_kwh"].notna()]
    for model, frame in prov.groupby("model", sort=True):
        tokens = frame["total_tokens"].sum()
        rows.append(dict(model=model, lens=LENS_PROVIDER, source="EcoLogits", requests=len(frame),
                         energy_kwh=frame["provider_energy_kwh"].sum(),
                         energy_kwh_per_1k_tokens=_per_1k_scalar(frame["provider_energy_kwh"].sum(), tokens),
                         energy_kwh_per_1k_tokens_min=_per_1k_scalar(frame["provider_energy_kwh_min"].sum(), tokens),
                         energy_kwh_per_1k_tokens_max=_per_1k_scalar(frame["provider_energy_kwh_max"].sum(), tokens)))
    meas = req[req["measured_energy_kwh"].notna()]
    for (model, method), frame in meas.groupby(["model", "measured_energy_method"], sort=True, dropna=False):
        tokens = frame["total_tokens"].sum()
        method_s = "unknown" if pd.isna(method) else str(method)
        rows.append(dict(model=model, lens=MEASURED_METHODS.get(method_s, LENS_MEASURED), source=method_s,
                         requests=len(frame), energy_kwh=frame["measured_energy_kwh"].sum(),
                         energy_kwh_per_1k_tokens=_per_1k_scalar(frame["measured_energy_kwh"].sum(), tokens),
                         energy_kwh_per_1k_tokens_min=math.nan, energy_kwh_per_1k_tokens_max=math.nan))
    cols = ["model", "lens", "source", "requests", "energy_kwh", "energy_kwh_per_1k_tokens",
            "energy_kwh_per_1k_tokens_min", "energy_kwh_per_1k_tokens_max"]
    return pd.DataFrame(rows, columns=cols)


def _per_1k_scalar(total: float, tokens: float) -> float:
    """total / (tokens / 1000), NaN without tokens."""
    return float(total) / (float(tokens) / 1000.0) if tokens and tokens > 0 else math.nan


def failures_table(df: pd.DataFrame) -> pd.DataFrame:
    """Failed requests per model, status code and error text."""
    req = requests_of(df)
    failed = req[~req["success"]]
    cols = ["model", "status_code", "error"]
    if failed.empty:
        return pd.DataFrame(columns=cols + ["requests"])
    return (failed.groupby(cols, sort=True, dropna=False).size().rename("requests").reset_index()
            .sort_values(["model", "requests"], ascending=[True, False], ignore_index=True))


PROFILE_FIELDS: tuple[str, ...] = ("gpu", "gpu_count", "datacenter", "location", "tdp_w", "idle_w", "pue",
                                   "grid_gco2e_per_kwh", "electricity_usd_per_kwh", "energy_method")


def profile_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per profile with the assumptions the CSV records (TDP, idle power, PUE, grid, price, ...);
    energy_method as the simulated rows give it."""
    ordered = pd.concat([simulated(df), df])  # first() takes a simulated row's values where there is one
    return ordered.groupby("profile", sort=True)[list(PROFILE_FIELDS)].first().reset_index()


def summary_table(df: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> pd.DataFrame:
    """The summary CSV: one row per model x route x profile (all lenses side by side, labelled by name)."""
    keys = ["model", "route", "profile"]
    data = df.assign(meets_slo=meets_slo(df, slo_ttft_s, slo_tpot_s),
                     correct_f=df["correct"].astype("Float64"),
                     simulated_tokens=df["total_tokens"].where(df["energy_kwh"].notna()))
    g = data.groupby(keys, sort=True)
    ok = data[data["success"]].groupby(keys, sort=True)
    out = pd.DataFrame({"requests": g.size(), "successes": g["success"].sum()})
    out = g[["gpu", "location"]].first().join(out)
    out["success_rate"] = out["successes"] / out["requests"]
    out["graded"] = ok["correct_f"].count()
    out["accuracy"] = ok["correct_f"].mean().astype(float)
    out["slo_attainment"] = g["meets_slo"].mean()
    for metric in ("latency_s", "ttft_s", "tpot_s"):
        out[f"{metric}_mean"] = ok[metric].mean()
        for q in PERCENTILES:
            out[f"{metric}_p{q}"] = ok[metric].quantile(q / 100.0)
    out["tokens_per_s_mean"] = ok["tokens_per_s"].mean()
    out["sim_latency_s_mean"] = ok["sim_latency_s"].mean()
    sums = ["total_tokens", "cost_usd", "energy_cost_usd", "total_cost_usd", "compute_energy_kwh",
            "idle_energy_kwh", "pue_overhead_kwh", "energy_kwh", "energy_kwh_min", "energy_kwh_max",
            "carbon_gco2e", "carbon_gco2e_min", "carbon_gco2e_max", "provider_energy_kwh",
            "provider_energy_kwh_min", "provider_energy_kwh_max", "provider_carbon_gco2e",
            "provider_carbon_gco2e_min", "provider_carbon_gco2e_max", "measured_energy_kwh", "simulated_tokens"]
    summed = ok[sums].sum(min_count=1)
    out = out.join(summed)
    out["total_cost_usd_per_1k_tokens"] = per_1k(out["total_cost_usd"], out["simulated_tokens"])
    out["carbon_gco2e_per_1k_tokens"] = per_1k(out["carbon_gco2e"], out["simulated_tokens"])
    out["energy_kwh_per_1k_tokens"] = per_1k(out["energy_kwh"], out["simulated_tokens"])
    return out.reset_index()


# ----------------------------------------------------------------------------------------------- sources


SOURCE_FIELDS: tuple[tuple[str, str, str], ...] = (
    # (label in the report, "gpu" or "datacenter", key in that object's `sources`)
    ("TDP", "gpu", "tdp_w"), ("idle power", "gpu", "idle_w"), ("PUE", "datacenter", "pue"),
    ("grid intensity", "datacenter", "grid_gco2e_per_kwh"),
    ("electricity price", "datacenter", "electricity_usd_per_kwh"),
)


def profile_sources(profiles: Iterable[str]) -> dict[str, dict[str, str]]:
    """Citations of each profile's TDP, idle power, PUE, grid intensity and price from
    gpu_profiles.load_profiles(): {profile: {label: citation}}.

    The report works from the CSV alone; this only adds the citations. When gpu_profiles cannot be read the
    result is {"__error__": {"error": reason}}.
    """
    try:
        import gpu_profiles  # noqa: PLC0415 - optional: the report must work from the CSV alone
        loaded = gpu_profiles.load_profiles()
    except (ImportError, OSError, ValueError, AttributeError) as exc:
        return {"__error__": {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}}
    out: dict[str, dict[str, str]] = {}
    for name in profiles:
        prof = loaded.get(name)
        if prof is not None:
            out[name] = sources_of_profile(prof)
    return out


def sources_of_profile(profile: object) -> dict[str, str]:
    """{label: citation} for one gpu_profiles.DeploymentProfile (missing citations are left out)."""
    out: dict[str, str] = {}
    for label, part, key in SOURCE_FIELDS:
        obj = getattr(profile, part, None)
        cited = getattr(obj, "sources", None) or {}
        text = str(cited.get(key, "")) if isinstance(cited, Mapping) else ""
        if key == "grid_gco2e_per_kwh" and getattr(obj, "grid_source_used", ""):
            used = str(getattr(obj, "grid_source_used"))
            text = used if not text or text in used else f"{used} (data file: {text})"
        if text:
            out[label] = text
    return out


# ----------------------------------------------------------------------------------------------- text


def fmt_num(value: object, spec: str = ".4g") -> str:
    """A number for the report: 'n/a' for missing, otherwise format(value, spec)."""
    if value is None or value is pd.NA:
        return "n/a"
    try:
        fval = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(fval):
        return "n/a"
    return format(round(fval), spec) if spec.endswith("d") else format(fval, spec)


def fmt_pct(value: object) -> str:
    """A fraction 0..1 as a percentage with one decimal ('n/a' when missing)."""
    return "n/a" if fmt_num(value) == "n/a" else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]


Fmt = Callable[[object], str]


def text_table(df: pd.DataFrame, columns: Sequence[tuple[str, str, Fmt | None]]) -> str:
    """A fixed-width text table: columns are (column, header, formatter or None for str)."""
    headers = [h for _, h, _ in columns]
    body = [[(f or _str)(row[c]) for c, _, f in columns] for _, row in df.iterrows()]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


def md_table(df: pd.DataFrame, columns: Sequence[tuple[str, str, Fmt | None]]) -> str:
    """The same table as text_table, in Markdown."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell((f or _str)(row[c])) for c, _, f in columns) + " |" for _, row in df.iterrows()]
    return "\n".join(lines)


TableFn = Callable[[pd.DataFrame, Sequence[tuple[str, str, "Fmt | None"]]], str]


def _str(value: object) -> str:
    """str() with 'n/a' for missing values."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return " ".join(str(value).split())  # one line per table row


def _f(spec: str) -> Fmt:
    """A formatter for text_table."""
    return lambda v: fmt_num(v, spec)


def fmt_range(mid: object, low: object, high: object, spec: str = ".4g") -> str:
    """'mid [low-high]' or just 'mid' without a range."""
    if fmt_num(low) == "n/a" or fmt_num(high) == "n/a":
        return fmt_num(mid, spec)
    return f"{fmt_num(mid, spec)} [{fmt_num(low, spec)}-{fmt_num(high, spec)}]"


def report_tables(df: pd.DataFrame, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> dict[str, pd.DataFrame]:
    """Every table of the report, computed once: efficiency, breakdown, routes, percentiles (per model and per
    route), accuracy, goodput, lenses, failures, profiles, plus 'rows' (df) and 'requests'."""
    check_frame(df, required=ANALYSIS_COLUMNS)
    df = lean(prepare(df))
    eff, pct_route = efficiency_table(df), percentile_table(df, by=("model", "route"))
    return {
        "rows": df, "requests": requests_of(df), "efficiency": eff,
        "breakdown": energy_breakdown(df), "routes": route_latency_table(df, pct_route),
        "pct_model": percentile_table(df, by=("model",)), "pct_route": pct_route,
        "accuracy": accuracy_table(df), "goodput": goodput_table(df, slo_ttft_s, slo_tpot_s),
        "lenses": lens_table(df, eff), "failures": failures_table(df), "profiles": profile_table(df),
        "not_simulated": not_simulated_table(df),
    }


def format_report(tables: Mapping[str, pd.DataFrame], *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S, sources: Mapping[str, Mapping[str, str]] | None = None,
                  markdown: bool = False) -> str:
    """The report from report_tables(): fixed-width text, or Markdown with real tables."""
    t: TableFn = md_table if markdown else text_table
    section = _md_section if markdown else _section
    sections = [
        _overview(tables["rows"], tables["requests"], markdown),
        section("EFFICIENCY RANKINGS PER 1K TOKENS (simulated lens; total cost = API price + energy cost; "
                "[min-max] ranges)", _rankings_text(tables["efficiency"], t)),
        section("IDLE VS COMPUTE ENERGY (simulated lens, successful requests)",
                _breakdown_text(tables["breakdown"], t)),
        section("LATENCY PER ROUTE (seconds; successful requests)", _routes_text(tables["routes"], t)),
        section("PERCENTILES PER MODEL (seconds)", _percentiles_text(tables["pct_model"], t)),
        section("PERCENTILES PER ROUTE (seconds)", _percentiles_text(tables["pct_route"], t)),
        section("ACCURACY (graded prompts only)", _accuracy_text(tables["accuracy"], t)),
        section(f"GOODPUT (SLO: ttft <= {slo_ttft_s:g} s and tpot <= {slo_tpot_s:g} s; change with "
                "--slo-ttft-s / --slo-tpot-s)", _goodput_text(tables["goodput"], t)),
        section("ENERGY BY LENS (kWh per 1K tokens)", _lens_text(tables["lenses"], t)),
        section("FAILURES", _failures_text(tables["failures"], t, tables["not_simulated"])),
        section("PROFILE ASSUMPTIONS (simulated lens)", _profiles_text(tables["profiles"], sources or {}, t)),
    ]
    return "\n\n".join(sections) + "\n"


def render_report(df: pd.DataFrame, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                  sources: Mapping[str, Mapping[str, str]] | None = None, markdown: bool = False) -> str:
    """The printed report: overview, efficiency rankings per 1K tokens, idle vs compute energy, latency per
    route, percentiles, accuracy, goodput against the SLOs, energy by lens, failures and profile assumptions."""
    tables = report_tables(df, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    return format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources, markdown=markdown)


def _section(title: str, body: str) -> str:
    """A titled block of the text report."""
    return f"{title}\n{'=' * min(len(title), 100)}\n{body}"


def _md_section(title: str, body: str) -> str:
    """A titled block of the Markdown report."""
    return f"## {title}\n\n{body}"


def _overview(df: pd.DataFrame, req: pd.DataFrame, markdown: bool = False) -> str:
    """Header lines: runs, models, requests, profiles, time span and the lens legend."""
    n_ok = int(req["success"].sum())
    runs = ", ".join(sorted(req["run_id"].dropna().astype(str).unique()))
    models = ", ".join(sorted(req["model"].dropna().astype(str).unique()))
    profiles = ", ".join(sorted(df["profile"].dropna().astype(str).unique()))
    facts = [
        f"runs: {runs}",
        f"models: {models}",
        f"requests: {len(req)} ({n_ok} successful, {len(req) - n_ok} failed); rows (request x profile): {len(df)}",
        f"profiles: {profiles}",
        f"tokens (successful requests): {int(successful(req)['total_tokens'].sum())}",
        f"API cost: ${fmt_num(successful(req)['cost_usd'].sum(), '.6g')}",
        "lenses: simulated = per GPU/datacenter profile (model of the hardware); provider-side (EcoLogits) = the "
        "API provider's datacenter; measured/estimated = the machine that served the local model",
    ]
    if markdown:
        return "# wattbench report\n\n" + "\n".join(f"- {fact}" for fact in facts)
    return "WATTBENCH REPORT\n================\n" + "\n".join(facts)


def _rankings_text(eff: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Efficiency ranking tables, one per model."""
    if eff.empty:
        return "no successful request: nothing to rank"
    blocks = []
    for model, frame in eff.groupby("model", sort=True):
        table = frame.assign(
            carbon=lambda d: [fmt_range(m, lo, hi, ".4g") for m, lo, hi in zip(
                d["carbon_gco2e_per_1k_tokens"], d["carbon_gco2e_per_1k_tokens_min"],
                d["carbon_gco2e_per_1k_tokens_max"])],
            energy=lambda d: [fmt_range(m, lo, hi, ".3g") for m, lo, hi in zip(
                d["energy_kwh_per_1k_tokens"], d["energy_kwh_per_1k_tokens_min"],
                d["energy_kwh_per_1k_tokens_max"])],
        )
        blocks.append(f"model: {model}\n\n" + tf(table, [
            ("rank_carbon", "carbon rank", _str), ("rank_cost", "cost rank", _str), ("profile", "profile", None),
            ("gpu", "GPU", None), ("location", "location", None), ("requests", "requests", _f("d")),
            ("total_cost_usd_per_1k_tokens", "total $/1K tok", _f(".6g")),
            ("cost_usd_per_1k_tokens", "API $/1K tok", _f(".6g")),
            ("carbon", "gCO2e/1K tok", None), ("energy", "kWh/1K tok", None)]))
        best_c = frame.loc[frame["rank_carbon"] == 1, "profile"].tolist()
        best_cost = frame.loc[frame["rank_cost"] == 1, "profile"].tolist()
        blocks[-1] += (f"\n\nlowest carbon per 1K tokens: {', '.join(best_c) or 'n/a'}; "
                       f"lowest total cost per 1K tokens: {', '.join(best_cost) or 'n/a'}")
    return "\n\n".join(blocks)


def _breakdown_text(bd: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Idle / compute / PUE-overhead energy with shares."""
    if bd.empty:
        return "no successful request"
    table = bd.assign(
        compute=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["compute_energy_kwh"], bd["compute_share"])],
        idle=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["idle_energy_kwh"], bd["idle_share"])],
        pue=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["pue_overhead_kwh"], bd["pue_overhead_share"])],
    )
    text = tf(table, [("model", "model", None), ("profile", "profile", None),
                              ("compute", "compute kWh (share)", None), ("idle", "idle kWh (share)", None),
                              ("pue", "PUE overhead kWh (share)", None), ("energy_kwh", "total kWh", _f(".4g"))])
    idle_total, all_total = bd["idle_energy_kwh"].sum(), bd["energy_kwh"].sum()
    if all_total > 0 and idle_total / all_total > 0.5:
        text += ("\n\nidle energy is most of the total: batching requests and scaling to zero save more than a "
                 "faster GPU")
    return text


def _routes_text(routes: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Latency per route."""
    return tf(routes, [
        ("model", "model", None), ("route", "route", None), ("temperature", "temp", _f(".2g")),
        ("requests", "requests", _f("d")), ("successes", "ok", _f("d")),
        ("latency_s_mean", "latency mean", _f(".3f")), ("latency_s_p50", "p50", _f(".3f")),
        ("latency_s_p90", "p90", _f(".3f")), ("latency_s_p99", "p99", _f(".3f")),
        ("ttft_s_p50", "ttft p50", _f(".3f")), ("ttft_s_p90", "ttft p90", _f(".3f")),
        ("ttft_s_p99", "ttft p99", _f(".3f")), ("tokens_per_s_mean", "tok/s mean", _f(".1f"))])


def _percentiles_text(pct: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Latency, TTFT and TPOT percentiles, one line per group and metric."""
    keys = [c for c in ("model", "route") if c in pct.columns]
    rows = []
    for rec in pct.to_dict("records"):
        for metric in ("latency_s", "ttft_s", "tpot_s"):
            rows.append({**{k: rec[k] for k in keys}, "metric": metric, "n": rec["requests"],
                         **{f"p{q}": rec[f"{metric}_p{q}"] for q in PERCENTILES}})
    table = pd.DataFrame(rows)
    if table.empty:
        return "no successful request"
    return tf(table, [(k, k, None) for k in keys] + [("metric", "metric", None), ("n", "n", _f("d"))]
                      + [(f"p{q}", f"p{q}", _f(".4f")) for q in PERCENTILES])


def _accuracy_text(acc: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Accuracy per route and model."""
    return tf(acc, [("model", "model", None), ("route", "route", None),
                            ("requests", "successful", _f("d")), ("graded", "graded", _f("d")),
                            ("correct", "correct", _f("d")), ("accuracy", "accuracy", fmt_pct)])


def _goodput_text(gp: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Goodput and SLO attainment per model."""
    return tf(gp, [("model", "model", None), ("requests", "requests", _f("d")),
                           ("successes", "ok", _f("d")), ("meeting_slo", "meeting SLO", _f("d")),
                           ("slo_attainment", "attainment", fmt_pct), ("span_s", "wall span s", _f(".2f")),
                           ("throughput_rps", "throughput req/s", _f(".4g")),
                           ("goodput_rps", "goodput req/s", _f(".4g"))]) + (
        "\n\ngoodput = requests meeting both SLOs / wall span of the run (first send to last finish); a request "
        "with fewer than 2 output tokens is judged on TTFT alone; failed requests never meet the SLO")


def _lens_text(lenses: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Energy per 1K tokens under each lens."""
    if lenses.empty:
        return "no energy figure"
    table = lenses.assign(per_1k=[fmt_range(m, lo, hi, ".4g") for m, lo, hi in zip(
        lenses["energy_kwh_per_1k_tokens"], lenses["energy_kwh_per_1k_tokens_min"],
        lenses["energy_kwh_per_1k_tokens_max"])])
    return tf(table, [("model", "model", None), ("lens", "lens", None), ("source", "source", None),
                              ("requests", "requests", _f("d")), ("energy_kwh", "kWh total", _f(".4g")),
                              ("per_1k", "kWh/1K tokens [min-max]", None)])


def _failures_text(fail: pd.DataFrame, tf: TableFn = text_table,
                   not_simulated: pd.DataFrame | None = None) -> str:
    """Failed requests by status and error, and the rows a profile could not simulate."""
    parts = ["no failed request" if fail.empty else tf(fail, [
        ("model", "model", None), ("status_code", "status", _f(".0f")), ("requests", "requests", _f("d")),
        ("error", "error", _clip)])]
    if not_simulated is not None and not not_simulated.empty:
        parts.append("served but not simulated on a profile (left out of its energy figures):\n\n" + tf(
            not_simulated, [("profile", "profile", None), ("rows", "rows", _f("d")),
                            ("energy_method", "reason", _clip)]))
    return "\n\n".join(parts)


def _clip(value: object, width: int = 160) -> str:
    """_str, cut to `width` characters with an ellipsis."""
    text = _str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _profiles_text(profiles: pd.DataFrame, sources: Mapping[str, Mapping[str, str]],
                   tf: TableFn = text_table) -> str:
    """Profile assumptions and their sources."""
    text = tf(profiles, [
        ("profile", "profile", None), ("gpu", "GPU", None), ("gpu_count", "GPUs", _f(".0f")),
        ("tdp_w", "TDP W", _f(".4g")), ("idle_w", "idle W", _f(".4g")), ("pue", "PUE", _f(".3g")),
        ("grid_gco2e_per_kwh", "grid gCO2e/kWh", _f(".4g")),
        ("electricity_usd_per_kwh", "$/kWh", _f(".3g")), ("location", "location", None),
        ("energy_method", "method", None)])
    item, sub = ("- ", "  - ") if tf is md_table else ("  ", "    ")
    lines = [text, "", "sources (from gpu_profiles as installed here; the numbers above are the CSV's):"]
    if "__error__" in sources:
        lines.append(f"{item}gpu_profiles could not be read ({sources['__error__']['error']}); the numbers above "
                     "come from the CSV")
    for name in profiles["profile"]:
        src = sources.get(str(name))
        if not src:
            lines.append(f"{item}{name}: not known to gpu_profiles here; see the data files of the run that wrote "
                         "the CSV")
            continue
        lines.append(f"{item}{name}:")
        lines.extend(f"{sub}{label}: {citation}" for label, citation in src.items())
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- outputs


def load_input(df_or_csv: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A checked, prepared frame from a DataFrame, a CSV path or a run directory."""
    if isinstance(df_or_csv, pd.DataFrame):
        check_frame(df_or_csv)
        return prepare(df_or_csv)
    return read_metrics_csv(resolve_csv(Path(df_or_csv)))


def build_outputs(df_or_csv: pd.DataFrame | str | Path, out_dir: str | Path, *,
                  slo_ttft_s: float = DEFAULT_SLO_TTFT_S, slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                  sources: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, object]:
    """Write the six dashboards, index.html, plotly.min.js, the summary CSV, report.txt and report.md.

    Returns {"dashboards": {name: Path}, "index": Path, "plotly_js": Path, "summary_csv": Path,
    "report_txt": Path, "report_md": Path, "report_text": str}. Raises ReportInputError for unusable input.
    `sources` defaults to profile_sources() (citations from gpu_profiles when importable).
    """
    import dashboards  # noqa: PLC0415 - dashboards imports this module

    df = lean(load_input(df_or_csv))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if sources is None:
        sources = profile_sources(df["profile"].dropna().astype(str).unique())
    tables = report_tables(df, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    text = format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources)
    markdown = format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources, markdown=True)
    written = dashboards.write_dashboards(df, out, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    summary_path = out / SUMMARY_CSV
    summary_table(df, slo_ttft_s, slo_tpot_s).to_csv(summary_path, index=False)
    txt_path, md_path = out / REPORT_TXT, out / REPORT_MD
    txt_path.write_text(text, encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    return {"dashboards": written["dashboards"], "index": written["index"], "plotly_js": written["plotly_js"],
            "summary_csv": summary_path, "report_txt": txt_path, "report_md": md_path, "report_text": text}


class _ArgError(Exception):
    """argparse found bad arguments."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


def _positive(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of `wattbench.py report`."""
    p = _Parser(prog="python wattbench.py report",
                description="Rebuild the six dashboards, index.html, the summary CSV and the report from a "
                            "metrics CSV (or the newest ai_metrics_*.csv in a run directory).")
    p.add_argument("source", help="ai_metrics_*.csv file, or a run directory such as outputs/")
    p.add_argument("--out", help="directory to write into (default: the CSV's directory)")
    p.add_argument("--slo-ttft-s", type=_positive, default=DEFAULT_SLO_TTFT_S,
                   help=f"TTFT target for goodput, seconds (default {DEFAULT_SLO_TTFT_S})")
    p.add_argument("--slo-tpot-s", type=_positive, default=DEFAULT_SLO_TPOT_S,
                   help=f"time-per-output-token target for goodput, seconds (default {DEFAULT_SLO_TPOT_S})")
    return p


def cli_report(argv: Sequence[str]) -> int:
    """`python wattbench.py report CSV_OR_RUN_DIR [--out DIR] [--slo-ttft-s S] [--slo-tpot-s S]`."""
    parser = make_parser()
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(list(argv))
        csv_path = resolve_csv(Path(args.source))
        df = read_metrics_csv(csv_path)
    except (_ArgError, ReportInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else csv_path.parent
    try:
        result = build_outputs(df, out_dir, slo_ttft_s=args.slo_ttft_s, slo_tpot_s=args.slo_tpot_s)
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc.strerror or exc}; choose another --out", file=sys.stderr)
        return 2
    print(result["report_text"], end="")
    print(f"\nread {csv_path}")
    paths = [*result["dashboards"].values(), result["index"], result["summary_csv"], result["report_txt"],
             result["report_md"]]  # type: ignore[union-attr]
    print(f"wrote {len(paths)} files to {out_dir}: " + ", ".join(Path(p).name for p in paths))
    print(f"open {result['index']} in a browser (works offline; plotly.min.js is beside it)")
    return 0
