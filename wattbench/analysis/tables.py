"""The analysis tables: percentiles, efficiency per 1K tokens, energy parts, routes, accuracy, goodput, lenses."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from wattbench.energy import hardware
from wattbench.energy.hardware import gpu_key_for_device_name
from wattbench.energy.lenses import LENSES, provider

DEFAULT_SLO_TTFT_S = 0.5  # interactive-chat TTFT target (the README's goodput SLO: ttft <= 0.5 s)


DEFAULT_SLO_TPOT_S = 0.05  # 50 ms per output token, about 20 tokens/s, faster than reading speed (the README's goodput SLO)


PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


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
    """Energy per 1K tokens of each model under each lens of the registry, with its range where it has one.

    Long format: model, lens (its label), source (profile name, 'EcoLogits', the measuring method or the
    measured GPUs), requests (with a value), energy_kwh, energy_kwh_per_1k_tokens, _min, _max. Per-profile
    lenses have one row per profile, from eff (efficiency_table(df), computed here when the caller has not).
    """
    rows: list[dict] = []
    req = successful(requests_of(df))
    for lens in LENSES:
        if lens.level == "profile":
            if eff is None:
                eff = efficiency_table(df)
            for rec in eff.itertuples(index=False):
                rows.append(dict(model=rec.model, lens=lens.label, source=rec.profile, requests=rec.requests,
                                 energy_kwh=rec.energy_kwh, energy_kwh_per_1k_tokens=rec.energy_kwh_per_1k_tokens,
                                 energy_kwh_per_1k_tokens_min=rec.energy_kwh_per_1k_tokens_min,
                                 energy_kwh_per_1k_tokens_max=rec.energy_kwh_per_1k_tokens_max))
            continue
        if lens.energy_column not in req:
            continue
        have = req[req[lens.energy_column].notna()]
        keys = ["model"] + ([lens.source_column] if lens.source_column else [])
        for key, frame in have.groupby(keys, sort=True, dropna=False):
            model = key[0] if isinstance(key, tuple) else key
            source = key[1] if isinstance(key, tuple) and len(key) > 1 else None
            source = None if source is None or pd.isna(source) else str(source)
            tokens = frame["total_tokens"].sum()

            def per_1k(column: str | None) -> float:
                return _per_1k_scalar(frame[column].sum(), tokens) if column else math.nan

            rows.append(dict(model=model, lens=lens.label_for(source),
                             source=source or ("EcoLogits" if lens is provider.LENS else "unknown"),
                             requests=len(frame), energy_kwh=frame[lens.energy_column].sum(),
                             energy_kwh_per_1k_tokens=per_1k(lens.energy_column),
                             energy_kwh_per_1k_tokens_min=per_1k(lens.energy_min_column),
                             energy_kwh_per_1k_tokens_max=per_1k(lens.energy_max_column)))
    cols = ["model", "lens", "source", "requests", "energy_kwh", "energy_kwh_per_1k_tokens",
            "energy_kwh_per_1k_tokens_min", "energy_kwh_per_1k_tokens_max"]
    order = {lens.label: i for i, lens in enumerate(LENSES)} | {
        label: i for i, lens in enumerate(LENSES) for label in lens.method_labels.values()}
    out = pd.DataFrame(rows, columns=cols)
    rank = out["lens"].map(lambda v: order.get(v, len(LENSES)))
    return out.assign(_rank=rank).sort_values(["_rank", "model", "source"], kind="stable").drop(columns="_rank")\
        .reset_index(drop=True)


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
        loaded = hardware.load_profiles()
    except (OSError, ValueError) as exc:
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


def gpu_check_table(df: pd.DataFrame) -> pd.DataFrame:
    """Simulated vs measured GPU energy for the GPUs the run measured: wattbench checking its own model.

    For each model and measured set of GPUs (gpu_energy_devices), over the requests that have a measured share:
    measured GPU-board kWh per 1K tokens (sum gpu_energy_kwh / tokens) next to the simulated lens's GPU-board
    kWh per 1K tokens (compute_energy_kwh, no idle, no PUE) of each profile on the same GPU model, and their
    ratio simulated / measured. A measured GPU that no profile uses gets a row with profile empty.
    """
    cols = ["model", "measured_gpus", "profile", "batch_note", "requests", "measured_kwh_per_1k_tokens",
            "simulated_kwh_per_1k_tokens", "simulated_over_measured"]
    if "gpu_energy_kwh" not in df:
        return pd.DataFrame(columns=cols)
    req = successful(requests_of(df))
    measured = req[req["gpu_energy_kwh"].notna()]
    rows: list[dict] = []
    sim = simulated(df)
    for (model, devices), frame in measured.groupby(["model", "gpu_energy_devices"], sort=True, dropna=False):
        tokens = frame["total_tokens"].sum()
        meas = _per_1k_scalar(frame["gpu_energy_kwh"].sum(), tokens)
        name = str(devices).split(" x ", 1)[-1] if isinstance(devices, str) else ""
        same = sim[(sim["model"] == model) & sim["request_id"].isin(frame["request_id"])]
        profiles = [p for p, gpu in same.groupby("profile")["gpu"].first().items()
                    if gpu_key_for_device_name(name, [str(gpu)]) is not None]
        if not profiles:
            rows.append(dict(model=model, measured_gpus=devices, profile=None, batch_note=None,
                             requests=len(frame), measured_kwh_per_1k_tokens=meas,
                             simulated_kwh_per_1k_tokens=math.nan, simulated_over_measured=math.nan))
        for profile in profiles:
            p = same[same["profile"] == profile]
            simulated_1k = _per_1k_scalar(p["compute_energy_kwh"].sum(), p["total_tokens"].sum())
            rows.append(dict(model=model, measured_gpus=devices, profile=profile,
                             batch_note=f"{p['energy_method'].iloc[0]}", requests=len(frame),
                             measured_kwh_per_1k_tokens=meas, simulated_kwh_per_1k_tokens=simulated_1k,
                             simulated_over_measured=simulated_1k / meas if meas and meas > 0 else math.nan))
    return pd.DataFrame(rows, columns=cols)
