"""The six original dashboards as Plotly figures (GPU comparison, model performance, carbon and energy, time
series, hardware, efficiency), each with its energy lens named; the seventh, the frontier, is in frontier.py."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from wattbench.analysis.plotting import (
    DEFAULT_MAX_POINTS,
    PART_COLORS,
    PCT_COLORS,
    PCT_SHOWN,
    PROVIDER_LABEL,
    SIM,
    base_layout,
    checked,
    error_y,
    group_label,
    model_color,
    models_of,
    no_data,
    percentile_bars,
    short_model,
)
from wattbench.analysis.report import fmt_num, fmt_pct, fmt_range
from wattbench.analysis.tables import (
    DEFAULT_SLO_TPOT_S,
    DEFAULT_SLO_TTFT_S,
    accuracy_table,
    efficiency_table,
    energy_breakdown,
    goodput_table,
    gpu_check_table,
    lens_table,
    per_1k,
    percentile_table,
    requests_of,
    route_latency_table,
    simulated,
    successful,
)
from wattbench.energy.lenses import gpu, lens_by_label
from wattbench.energy import hardware


def make_gpu_comparison(df: pd.DataFrame) -> go.Figure:
    """GPU comparison: carbon, total cost, latency and energy per deployment profile.

    Carbon and energy per 1K tokens carry min-max error bars; latency shows p50/p90/p99 of the measured
    request and of the simulated time on each profile; the energy panel adds the provider-side and
    measured/estimated lenses as their own bars.
    """
    df = checked(df)
    ranked = efficiency_table(df)
    eff = ranked.sort_values(["model", "profile"])
    models = models_of(df)
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.16, horizontal_spacing=0.1, subplot_titles=(
        f"Carbon per 1K tokens, gCO2e {SIM} (bars: min-max)",
        f"Total cost per 1K tokens, USD (API price + energy cost {SIM})",
        "Latency, s: measured vs simulated on each profile (p50 dark, p90, p99 light)",
        "Energy per 1K tokens, kWh, every lens (bars: min-max)"))
    for model, frame in eff.groupby("model", sort=True):
        fig.add_trace(go.Bar(name=short_model(model), x=frame["profile"], y=frame["carbon_gco2e_per_1k_tokens"],
                             error_y=error_y(frame["carbon_gco2e_per_1k_tokens"],
                                              frame["carbon_gco2e_per_1k_tokens_min"],
                                              frame["carbon_gco2e_per_1k_tokens_max"]),
                             customdata=np.stack([frame["gpu"], frame["location"]], axis=-1),
                             hovertemplate="%{x}<br>%{customdata[0]}, %{customdata[1]}<br>%{y:.4g} gCO2e/1K "
                                           "tokens [simulated]<extra>%{fullData.name}</extra>",
                             legendgroup=model, marker_color=model_color(model, models)), row=1, col=1)
        fig.add_trace(go.Bar(name=short_model(model), x=frame["profile"], y=frame["total_cost_usd_per_1k_tokens"],
                             showlegend=False, legendgroup=model, marker_color=model_color(model, models),
                             hovertemplate="%{x}<br>$%{y:.6g} per 1K tokens<extra>%{fullData.name}</extra>"),
                      row=1, col=2)
    _latency_panel(fig, df, row=2, col=1)
    _lens_energy_panel(fig, lens_table(df, ranked), models, row=2, col=2, df=df)
    fig.update_yaxes(title_text="gCO2e / 1K tokens", row=1, col=1)
    fig.update_yaxes(title_text="USD / 1K tokens", row=1, col=2)
    fig.update_yaxes(title_text="seconds (log)", type="log", row=2, col=1)
    fig.update_yaxes(title_text="kWh / 1K tokens", type="log", row=2, col=2)
    return base_layout(fig, "GPU comparison: carbon, cost, latency and energy per deployment profile", 2)


def latency_by_profile(df: pd.DataFrame) -> pd.DataFrame:
    """p50/p90/p99 latency per model: as measured, and sim_latency_s on each profile.

    Columns: model, source ('measured' or '<profile> [simulated]'), p50, p90, p99 (seconds); successful
    requests only.
    """
    rows = []
    req = successful(requests_of(df))
    for model, frame in req.groupby("model", sort=True):
        rows.append(dict(model=model, source="measured",
                         **{f"p{q}": frame["latency_s"].quantile(q / 100) for q in PCT_SHOWN}))
    ok = simulated(df)
    for (model, profile), frame in ok.groupby(["model", "profile"], sort=True):
        rows.append(dict(model=model, source=f"{profile}<br>{SIM}",
                         **{f"p{q}": frame["sim_latency_s"].quantile(q / 100) for q in PCT_SHOWN}))
    return pd.DataFrame(rows, columns=["model", "source", *(f"p{q}" for q in PCT_SHOWN)])


def _latency_panel(fig: go.Figure, df: pd.DataFrame, row: int, col: int) -> None:
    """Grouped p50/p90/p99 bars of measured and simulated latency."""
    percentile_bars(fig, latency_by_profile(df), "source", models_of(df), row, col, legend=False)


def lens_labels(lenses: pd.DataFrame) -> list[str]:
    """Bar labels for tables.lens_table rows, as each lens of the registry words them ('<profile><br>[simulated]',
    'provider-side<br>(EcoLogits)', 'measured:<br>rapl', 'measured GPU:<br>1 x NVIDIA H200', ...)."""
    labels = []
    for source, label in zip(lenses["source"], lenses["lens"]):
        lens = lens_by_label(str(label))
        labels.append(lens.bar(source) if lens is not None else f"{label}:<br>{source}")
    return labels


def _gpu_ratio_text(df: pd.DataFrame, lenses: pd.DataFrame) -> list[str]:
    """For each lens_table row of the measured-GPU lens: 'simulated / measured = R (PROFILE)'; '' for the rest."""
    check = gpu_check_table(df).dropna(subset=["simulated_over_measured"])
    texts = []
    for model, label, source in zip(lenses["model"], lenses["lens"], lenses["source"]):
        rows = check[(check["model"] == model) & (check["measured_gpus"] == source)] if label == gpu.LABEL else check[:0]
        texts.append("<br>".join(f"sim/meas {r.simulated_over_measured:.2f}x ({r.profile})"
                                 for r in rows.itertuples(index=False)))
    return texts


def _lens_energy_panel(fig: go.Figure, lenses: pd.DataFrame, models: list[str], row: int, col: int,
                       df: pd.DataFrame | None = None) -> None:
    """Energy per 1K tokens under every lens (tables.lens_table), one bar per (lens, source), per model; a
    measured-GPU bar carries the simulated / measured ratio of the profiles on that GPU model."""
    if lenses.empty:
        no_data(fig, row, col, "no successful request")
        return
    lenses = lenses.assign(label=lens_labels(lenses),
                           ratio=_gpu_ratio_text(df, lenses) if df is not None else [""] * len(lenses))
    order = list(dict.fromkeys(lenses["label"]))  # lens_table is in the registry's order
    fig.update_xaxes(categoryorder="array", categoryarray=order, row=row, col=col)
    for model, frame in lenses.groupby("model", sort=True):
        fig.add_trace(go.Bar(name=short_model(model), x=frame["label"], y=frame["energy_kwh_per_1k_tokens"],
                             error_y=error_y(frame["energy_kwh_per_1k_tokens"],
                                              frame["energy_kwh_per_1k_tokens_min"],
                                              frame["energy_kwh_per_1k_tokens_max"]),
                             text=frame["ratio"], textposition="outside",
                             showlegend=False, legendgroup=model, marker_color=model_color(model, models),
                             hovertemplate="%{x}<br>%{y:.4g} kWh/1K tokens<br>%{text}<extra>%{fullData.name}</extra>"),
                      row=row, col=col)


def make_model_performance(df: pd.DataFrame) -> go.Figure:
    """Model / route performance: API cost, throughput, accuracy, and latency, TTFT, TPOT percentiles
    (p50/p90/p99 drawn over each other, darker = lower percentile). One colour per model."""
    df = checked(df)
    models = models_of(df)
    pct = percentile_table(df, by=("model", "route"), percentiles=PCT_SHOWN)
    routes = route_latency_table(df, pct).sort_values(["model", "route"], ignore_index=True)
    acc = accuracy_table(df)
    graded = acc[(acc["route"] != "(all)") & (acc["graded"] > 0)].sort_values(["model", "route"])
    fig = make_subplots(rows=2, cols=3, vertical_spacing=0.2, horizontal_spacing=0.07, subplot_titles=(
        "API cost per request, USD (mean)", "Throughput, output tokens/s (mean)",
        "Accuracy, % of graded prompts (text: correct/graded)", "Latency, s (p50 dark, p90, p99 light)",
        "TTFT, s (p50 dark, p90, p99 light)", "TPOT, s per output token (p50 dark, p90, p99 light)"))
    for model in models:
        color = model_color(model, models)
        r = routes[routes["model"] == model]
        fig.add_trace(go.Bar(name=short_model(model), x=r["route"], y=r["cost_usd_mean"], marker_color=color,
                             legendgroup=model, customdata=r["requests"],
                             hovertemplate="%{x}<br>$%{y:.6g} per request<br>%{customdata} requests"
                                           "<extra>%{fullData.name}</extra>"), row=1, col=1)
        fig.add_trace(go.Bar(name=short_model(model), x=r["route"], y=r["tokens_per_s_mean"], marker_color=color,
                             legendgroup=model, showlegend=False,
                             hovertemplate="%{x}<br>%{y:.1f} tokens/s<extra>%{fullData.name}</extra>"), row=1, col=2)
        g = graded[graded["model"] == model]
        if not g.empty:
            fig.add_trace(go.Bar(name=short_model(model), x=g["route"], y=g["accuracy"] * 100, marker_color=color,
                                 text=[f"{c}/{n}" for c, n in zip(g["correct"], g["graded"])], textposition="auto",
                                 textangle=0, legendgroup=model, showlegend=False,
                                 hovertemplate="%{x}<br>%{y:.1f}% (%{text} correct)<extra>%{fullData.name}</extra>"),
                          row=1, col=3)
    if graded.empty:
        no_data(fig, 1, 3, "no graded prompt in this run")
    costs = routes["cost_usd_mean"]
    if costs.isna().all():
        no_data(fig, 1, 1, "API price unknown for this model (LiteLLM has no price for it)")
    elif (costs.fillna(0) == 0).all():
        no_data(fig, 1, 1, "API cost is $0 for every request (a local model)")
    for col, metric in ((1, "latency_s"), (2, "ttft_s"), (3, "tpot_s")):
        table = pct[["model", "route"]].assign(**{f"p{q}": pct[f"{metric}_p{q}"] for q in PCT_SHOWN})
        percentile_bars(fig, table, "route", models, 2, col, legend=False)
    fig.update_yaxes(title_text="USD", row=1, col=1)
    fig.update_yaxes(title_text="tokens/s", row=1, col=2)
    fig.update_yaxes(title_text="%", range=[0, 105], row=1, col=3)
    for col in (1, 2, 3):
        fig.update_yaxes(title_text="seconds", row=2, col=col)
    return base_layout(fig, "Model and route performance: cost, throughput, accuracy, latency percentiles", 2,
                        note="Measured per request by the benchmark client (no energy lens on this page). "
                             "Percentile bars: darkest p50, then p90, lightest p99.")


def carbon_by_location(df: pd.DataFrame) -> pd.DataFrame:
    """Simulated carbon of successful requests per datacenter location: total, min, max, grid intensity."""
    ok = simulated(df)
    g = ok.groupby(["location", "profile"], sort=True)
    out = g[["carbon_gco2e", "carbon_gco2e_min", "carbon_gco2e_max", "total_tokens"]].sum(min_count=1)
    out["grid_gco2e_per_kwh"] = g["grid_gco2e_per_kwh"].first()
    return out.reset_index()


def make_carbon_energy(df: pd.DataFrame) -> go.Figure:
    """Carbon by location, idle vs compute vs PUE-overhead energy with shares, carbon per 1K tokens by lens,
    and carbon by prompt category."""
    df = checked(df)
    loc = carbon_by_location(df)
    bd = energy_breakdown(df).groupby("profile", sort=True)[
        ["compute_energy_kwh", "idle_energy_kwh", "pue_overhead_kwh", "energy_kwh"]].sum(min_count=1).reset_index()
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.16, horizontal_spacing=0.1, subplot_titles=(
        f"Carbon by datacenter location, gCO2e {SIM} (bars: min-max)",
        f"Idle vs compute vs PUE-overhead energy, kWh {SIM} (text: share)",
        "Carbon per 1K tokens, gCO2e: simulated profiles vs provider-side (EcoLogits)",
        f"Carbon by prompt category, gCO2e {SIM}"))
    fig.add_trace(go.Bar(name="carbon", x=[f"{lo}<br>({p})" for lo, p in zip(loc["location"], loc["profile"])],
                         y=loc["carbon_gco2e"], marker_color="#54A24B", showlegend=False,
                         error_y=error_y(loc["carbon_gco2e"], loc["carbon_gco2e_min"], loc["carbon_gco2e_max"]),
                         customdata=loc["grid_gco2e_per_kwh"],
                         hovertemplate="%{x}<br>%{y:.4g} gCO2e<br>grid %{customdata:.0f} gCO2e/kWh"
                                       "<extra>simulated</extra>"), row=1, col=1)
    _energy_parts_panel(fig, bd, row=1, col=2)
    _carbon_lens_panel(fig, df, row=2, col=1)
    cat = simulated(df).groupby(["category", "profile"], sort=True)["carbon_gco2e"].sum(min_count=1)
    for profile, frame in cat.reset_index().groupby("profile", sort=True):
        fig.add_trace(go.Bar(name=str(profile), x=frame["category"], y=frame["carbon_gco2e"],
                             legendgroup=f"cat-{profile}",
                             hovertemplate="%{x}<br>%{y:.4g} gCO2e<extra>%{fullData.name} [simulated]</extra>"),
                      row=2, col=2)
    fig.update_yaxes(title_text="gCO2e", row=1, col=1)
    fig.update_yaxes(title_text="kWh", row=1, col=2)
    fig.update_yaxes(title_text="gCO2e / 1K tokens", type="log", row=2, col=1)
    fig.update_yaxes(title_text="gCO2e", row=2, col=2)
    fig.update_layout(uniformtext_minsize=9, uniformtext_mode="hide")  # no unreadable share labels
    return base_layout(fig, "Carbon and energy: by location, idle vs compute, by lens, by category", 2)


def _energy_parts_panel(fig: go.Figure, bd: pd.DataFrame, row: int, col: int) -> None:
    """Compute, idle and PUE-overhead energy per profile as stacked bars (explicit bases, one offset group,
    so the other panels keep grouped bars), each labelled with its share of the total."""
    total = bd["energy_kwh"].where(bd["energy_kwh"] > 0)
    base = np.zeros(len(bd))
    for part, column in (("compute", "compute_energy_kwh"), ("idle", "idle_energy_kwh"),
                         ("PUE overhead", "pue_overhead_kwh")):
        y = bd[column].to_numpy(dtype=float)
        share = bd[column] / total
        fig.add_trace(go.Bar(name=f"{part} energy", x=bd["profile"], y=y, base=base.copy(),
                             marker_color=PART_COLORS[part], offsetgroup="energy-parts",
                             text=[fmt_pct(s) for s in share], textposition="inside", legendgroup=part,
                             hovertemplate="%{x}<br>" + part + " %{y:.4g} kWh (%{text})<extra>simulated</extra>"),
                      row=row, col=col)
        base = base + np.nan_to_num(y)


def _carbon_lens_panel(fig: go.Figure, df: pd.DataFrame, row: int, col: int) -> None:
    """Carbon per 1K tokens: simulated per profile and provider-side (EcoLogits), per model, with ranges."""
    eff = efficiency_table(df).sort_values(["model", "profile"])
    req = successful(requests_of(df))
    prov = req[req["provider_carbon_gco2e"].notna()]
    rows = [dict(model=r.model, label=f"{r.profile}<br>{SIM}", mid=r.carbon_gco2e_per_1k_tokens,
                 low=r.carbon_gco2e_per_1k_tokens_min, high=r.carbon_gco2e_per_1k_tokens_max)
            for r in eff.itertuples(index=False)]
    for model, frame in prov.groupby("model", sort=True):
        k = frame["total_tokens"].sum() / 1000.0
        rows.append(dict(model=model, label=PROVIDER_LABEL, mid=frame["provider_carbon_gco2e"].sum() / k,
                         low=frame["provider_carbon_gco2e_min"].sum() / k,
                         high=frame["provider_carbon_gco2e_max"].sum() / k))
    table = pd.DataFrame(rows, columns=["model", "label", "mid", "low", "high"])
    if table.empty:
        no_data(fig, row, col, "no successful request")
        return
    models = models_of(df)
    for model, frame in table.groupby("model", sort=True):
        fig.add_trace(go.Bar(name=short_model(str(model)), x=frame["label"], y=frame["mid"], showlegend=False,
                             marker_color=model_color(str(model), models),
                             error_y=error_y(frame["mid"], frame["low"], frame["high"]),
                             hovertemplate="%{x}<br>%{y:.4g} gCO2e/1K tokens<extra>%{fullData.name}</extra>"),
                      row=row, col=col)


def sample_positions(n: int, max_points: int) -> np.ndarray:
    """At most max_points evenly spaced indices into range(n), first and last included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def binned_percentiles(req: pd.DataFrame, metric: str, n_bins: int = 40) -> pd.DataFrame:
    """p50/p90/p99 of `metric` in n_bins equal slices of t_start_s (successful requests): t_mid_s, p50, p90, p99."""
    ok = successful(req).dropna(subset=[metric, "t_start_s"])
    if ok.empty:
        return pd.DataFrame(columns=["t_mid_s", "p50", "p90", "p99"])
    bins = pd.cut(ok["t_start_s"], bins=max(1, min(n_bins, len(ok))))
    g = ok.groupby(bins, observed=True)[metric]
    out = pd.DataFrame({f"p{q}": g.quantile(q / 100) for q in PCT_SHOWN})
    out.insert(0, "t_mid_s", [iv.mid for iv in out.index])
    return out.reset_index(drop=True)


def make_time_series(df: pd.DataFrame, max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """Performance over the run: latency and TTFT per request (sampled to max_points), rolling p50/p90/p99,
    tokens/s, failures, and cumulative simulated carbon per profile."""
    df = checked(df)
    req = requests_of(df).sort_values("t_start_s", kind="stable", ignore_index=True)
    keep = sample_positions(len(req), max_points)
    shown = req.iloc[keep]
    ok_shown = shown[shown["success"]]
    note = (f"showing {len(shown):,} of {len(req):,} requests (evenly spaced in send order)"
            if len(shown) < len(req) else f"all {len(req):,} requests shown")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=(
        f"Latency and TTFT per request, s ({note}); lines: p50/p90/p99 of latency over time",
        "Output tokens/s per request", f"Cumulative carbon per profile, gCO2e {SIM} (all requests)"))
    models = models_of(df)
    for model, frame in ok_shown.groupby("model", sort=True):
        color = model_color(str(model), models)
        fig.add_trace(go.Scattergl(name=f"latency {short_model(model)}", x=frame["t_start_s"], y=frame["latency_s"],
                                   mode="markers", marker=dict(size=5, opacity=0.6, color=color),
                                   legendgroup=str(model),
                                   customdata=frame["route"],
                                   hovertemplate="t=%{x:.1f}s<br>latency %{y:.3f}s<br>%{customdata}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scattergl(name=f"TTFT {short_model(model)}", x=frame["t_start_s"], y=frame["ttft_s"], mode="markers",
                                   marker=dict(size=4, symbol="diamond", opacity=0.35, color=color),
                                   legendgroup=str(model),
                                   hovertemplate="t=%{x:.1f}s<br>TTFT %{y:.3f}s<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scattergl(name=f"tokens/s {short_model(model)}", x=frame["t_start_s"], y=frame["tokens_per_s"],
                                   mode="markers", marker=dict(size=4, opacity=0.6, color=color),
                                   legendgroup=str(model), showlegend=False, hovertemplate="t=%{x:.1f}s<br>%{y:.1f} tokens/s<extra></extra>"),
                      row=2, col=1)
    bins = binned_percentiles(req, "latency_s")
    for q in PCT_SHOWN:
        fig.add_trace(go.Scatter(name=f"latency p{q} over time", x=bins["t_mid_s"], y=bins[f"p{q}"], mode="lines",
                                 line=dict(color=PCT_COLORS[q], width=2)), row=1, col=1)
    failed = req[~req["success"]]
    if not failed.empty:
        fail_shown = failed.iloc[sample_positions(len(failed), max_points)]
        fig.add_trace(go.Scattergl(name=f"failed ({len(failed)})", x=fail_shown["t_start_s"],
                                   y=np.zeros(len(fail_shown)), mode="markers",
                                   marker=dict(symbol="x", color="#E45756", size=8),
                                   customdata=fail_shown["status_code"],
                                   hovertemplate="t=%{x:.1f}s<br>failed, HTTP %{customdata}<extra></extra>"),
                      row=1, col=1)
    for profile, curve in cumulative_carbon(df, max_points).groupby("profile", sort=True):
        fig.add_trace(go.Scatter(name=f"{profile} cumulative carbon", x=curve["t_start_s"],
                                 y=curve["cumulative_carbon_gco2e"], mode="lines",
                                 hovertemplate="t=%{x:.1f}s<br>%{y:.4g} gCO2e<extra>%{fullData.name}</extra>"),
                      row=3, col=1)
    fig.update_yaxes(title_text="seconds", row=1, col=1)
    fig.update_yaxes(title_text="tokens/s", row=2, col=1)
    fig.update_yaxes(title_text="gCO2e", row=3, col=1)
    fig.update_xaxes(title_text="seconds since the run's first request (t_start_s)", row=3, col=1)
    return base_layout(fig, "Performance over the run", 3)


def cumulative_carbon(df: pd.DataFrame, max_points: int = DEFAULT_MAX_POINTS) -> pd.DataFrame:
    """Running total of simulated carbon per profile in send order, at most max_points points per profile.

    Columns: profile, t_start_s, cumulative_carbon_gco2e (the total is over all rows; only the points are
    sampled, the last point is always the full total).
    """
    ok = simulated(df)[["profile", "t_start_s", "carbon_gco2e"]].dropna(subset=["t_start_s"])
    parts = []
    for profile, frame in ok.groupby("profile", sort=True):
        frame = frame.sort_values("t_start_s", kind="stable")
        cum = frame["carbon_gco2e"].fillna(0.0).cumsum().to_numpy()
        idx = sample_positions(len(frame), max_points)
        parts.append(pd.DataFrame({"profile": profile, "t_start_s": frame["t_start_s"].to_numpy()[idx],
                                   "cumulative_carbon_gco2e": cum[idx]}))
    if not parts:
        return pd.DataFrame(columns=["profile", "t_start_s", "cumulative_carbon_gco2e"])
    return pd.concat(parts, ignore_index=True)


def hardware_table(df: pd.DataFrame, gpu_memory_gb: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per profile (successful requests, simulated lens): GPU, gpu_count, TDP, grid intensity, PUE, memory,
    carbon per 1K tokens (+ range), simulated output tokens/s and compute energy per output token.

    sim_tokens_per_s = sum(completion_tokens) / sum(sim_latency_s); compute_j_per_output_token =
    sum(compute_energy_kwh) * 3.6e6 / sum(completion_tokens) (prefill included). memory_gb (per GPU) comes from
    gpu_memory_gb by GPU name; NaN when unknown.
    """
    ok = simulated(df)
    g = ok.groupby("profile", sort=True)
    out = g[["gpu", "gpu_count", "location", "tdp_w", "idle_w", "pue", "grid_gco2e_per_kwh"]].first()
    sums = g[["completion_tokens", "sim_latency_s", "compute_energy_kwh", "total_tokens", "carbon_gco2e",
              "carbon_gco2e_min", "carbon_gco2e_max"]].sum(min_count=1)
    sim_s = sums["sim_latency_s"].where(sums["sim_latency_s"] > 0)
    out["sim_tokens_per_s"] = sums["completion_tokens"] / sim_s
    tokens = sums["completion_tokens"].where(sums["completion_tokens"] > 0)
    out["compute_j_per_output_token"] = sums["compute_energy_kwh"] * 3.6e6 / tokens
    for suffix in ("", "_min", "_max"):
        out[f"carbon_gco2e_per_1k_tokens{suffix}"] = per_1k(sums[f"carbon_gco2e{suffix}"],
                                                                    sums["total_tokens"])
    memory = dict(gpu_memory_gb or {})
    out["memory_gb"] = [float(memory.get(str(gpu), np.nan)) for gpu in out["gpu"]]
    return out.reset_index()


def make_advanced_hardware(df: pd.DataFrame, gpu_memory_gb: Mapping[str, float] | None = None) -> go.Figure:
    """Hardware: TDP vs carbon per 1K tokens, GPU memory vs simulated throughput, grid intensity vs carbon,
    and simulated speed vs compute energy per output token. gpu_memory_gb maps the CSV's gpu names to
    memory per GPU (gpu_memory_from_profiles() gives it when gpu_profiles is importable)."""
    df = checked(df)
    hw = hardware_table(df, gpu_memory_gb)
    hover = [f"{p}<br>{g} x{c:.0f}, {loc}" for p, g, c, loc in
             zip(hw["profile"], hw["gpu"], hw["gpu_count"], hw["location"])]
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.16, horizontal_spacing=0.1, subplot_titles=(
        f"TDP per GPU, W vs carbon per 1K tokens, gCO2e {SIM}",
        f"GPU memory, GB vs output tokens/s {SIM}",
        f"Grid intensity, gCO2e/kWh vs carbon per 1K tokens {SIM}",
        f"Speed vs energy: output tokens/s vs compute J per output token {SIM}"))
    err = error_y(hw["carbon_gco2e_per_1k_tokens"], hw["carbon_gco2e_per_1k_tokens_min"],
                   hw["carbon_gco2e_per_1k_tokens_max"])
    points = dict(mode="markers+text", textposition="top center", showlegend=False, cliponaxis=False)
    fig.add_trace(go.Scatter(name="TDP", x=hw["tdp_w"], y=hw["carbon_gco2e_per_1k_tokens"], text=hw["profile"],
                             error_y=err, marker=dict(size=12, color="#4C78A8"), customdata=hover,
                             hovertemplate="%{customdata}<br>TDP %{x:.0f} W<br>%{y:.4g} gCO2e/1K tokens"
                                           "<extra>simulated</extra>", **points), row=1, col=1)
    known = hw[hw["memory_gb"].notna()]
    if known.empty:
        no_data(fig, 1, 2, "GPU memory unknown: gpu_profiles not importable or its GPUs not in this CSV")
    else:
        fig.add_trace(go.Scatter(name="memory", x=known["memory_gb"], y=known["sim_tokens_per_s"],
                                 text=known["profile"], marker=dict(size=12, color="#2A9D8F"),
                                 customdata=[h for h, m in zip(hover, hw["memory_gb"].notna()) if m],
                                 hovertemplate="%{customdata}<br>%{x:.0f} GB per GPU<br>%{y:.1f} output tokens/s"
                                               "<extra>simulated</extra>", **points), row=1, col=2)
    fig.add_trace(go.Scatter(name="grid", x=hw["grid_gco2e_per_kwh"], y=hw["carbon_gco2e_per_1k_tokens"],
                             text=hw["profile"], error_y=err, marker=dict(size=12, color="#54A24B"),
                             customdata=hover, hovertemplate="%{customdata}<br>%{x:.0f} gCO2e/kWh<br>%{y:.4g} "
                                                             "gCO2e/1K tokens<extra>simulated</extra>", **points),
                  row=2, col=1)
    fig.add_trace(go.Scatter(name="speed vs energy", x=hw["sim_tokens_per_s"], y=hw["compute_j_per_output_token"],
                             text=hw["profile"], marker=dict(size=12, color="#F58518"), customdata=hover,
                             hovertemplate="%{customdata}<br>%{x:.1f} output tokens/s<br>%{y:.4g} J per output "
                                           "token<extra>simulated</extra>", **points), row=2, col=2)
    for row, col, title in ((1, 1, "TDP per GPU, W"), (1, 2, "memory per GPU, GB"), (2, 1, "grid gCO2e/kWh"),
                            (2, 2, "output tokens/s (simulated)")):
        fig.update_xaxes(title_text=title, row=row, col=col, rangemode="tozero")
    fig.update_yaxes(title_text="gCO2e / 1K tokens", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="output tokens/s (simulated)", row=1, col=2, rangemode="tozero")
    fig.update_yaxes(title_text="gCO2e / 1K tokens", row=2, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="J per output token (compute)", row=2, col=2, rangemode="tozero")
    return base_layout(fig, "Advanced hardware metrics: TDP, memory, grid and power per profile", 2)


def gpu_memory_from_profiles() -> dict[str, float]:
    """GPU key and name -> memory per GPU in GB from the GPU table; {} when the table cannot be read."""
    try:
        gpus = hardware.load_gpus()
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    for key, spec in gpus.items():
        out[str(key)] = out[spec.name] = float(spec.memory_gb)
    return out


def make_efficiency_comparison(df: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                               slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> go.Figure:
    """Efficiency rankings: total cost and carbon per 1K tokens (ranked, with ranges), goodput against the SLOs
    per model, and the ranking table."""
    df = checked(df)
    eff = efficiency_table(df)
    models = models_of(df)
    eff = eff.assign(label=group_label(eff, "profile", len(models) > 1),
                     color=[model_color(m, models) for m in eff["model"]])
    gp = goodput_table(df, slo_ttft_s, slo_tpot_s)
    fig = make_subplots(rows=2, cols=3, vertical_spacing=0.14, horizontal_spacing=0.17,
                        row_heights=[0.58, 0.42],
                        specs=[[{}, {}, {}], [{"type": "table", "colspan": 3}, None, None]], subplot_titles=(
        f"Total cost per 1K tokens, USD<br>(API + energy {SIM}), best at top",
        f"Carbon per 1K tokens, gCO2e {SIM}<br>best at top (bars: min-max)",
        f"Goodput, requests/s<br>meeting TTFT <= {slo_ttft_s:g} s and TPOT <= {slo_tpot_s:g} s",
        "Ranking per 1K tokens, per model (1 = best)"))
    by_cost = eff.sort_values("total_cost_usd_per_1k_tokens", ascending=False)
    fig.add_trace(go.Bar(name="total cost", orientation="h", y=by_cost["label"],
                         x=by_cost["total_cost_usd_per_1k_tokens"], marker_color=by_cost["color"], showlegend=False,
                         hovertemplate="%{y}<br>$%{x:.6g} per 1K tokens<extra></extra>"), row=1, col=1)
    by_carbon = eff.sort_values("carbon_gco2e_per_1k_tokens", ascending=False)
    fig.add_trace(go.Bar(name="carbon", orientation="h", y=by_carbon["label"],
                         x=by_carbon["carbon_gco2e_per_1k_tokens"], marker_color=by_carbon["color"],
                         showlegend=False,
                         error_x=error_y(by_carbon["carbon_gco2e_per_1k_tokens"],
                                          by_carbon["carbon_gco2e_per_1k_tokens_min"],
                                          by_carbon["carbon_gco2e_per_1k_tokens_max"]),
                         hovertemplate="%{y}<br>%{x:.4g} gCO2e per 1K tokens<extra>simulated</extra>"), row=1, col=2)
    gp_x = [short_model(m) for m in gp["model"]]
    fig.add_trace(go.Bar(name="throughput (all successes)", x=gp_x, y=gp["throughput_rps"],
                         marker_color="#BAB0AC", hovertemplate="%{x}<br>%{y:.4g} req/s<extra></extra>"), row=1, col=3)
    fig.add_trace(go.Bar(name="goodput (meeting the SLOs)", x=gp_x, y=gp["goodput_rps"], marker_color="#F58518",
                         text=[f"{fmt_pct(a)} meet" for a in gp["slo_attainment"]], textangle=0,
                         textposition="auto", hovertemplate="%{x}<br>%{y:.4g} req/s (%{text})<extra></extra>"),
                  row=1, col=3)
    ranked = eff.sort_values(["model", "rank_carbon", "profile"])
    fig.add_trace(go.Table(
        columnwidth=[2.2, 1.6, 1.6, 1.4, 0.8, 0.8, 1.2, 1.4, 1.4],
        header=dict(values=["model", "profile", "GPU", "location", "carbon rank", "cost rank", "USD / 1K tokens",
                            "gCO2e / 1K tokens [simulated]", "kWh / 1K tokens [simulated]"],
                    align="left", fill_color="#eeeeee"),
        cells=dict(values=[[short_model(m) for m in ranked["model"]], ranked["profile"],
                           [f"{g} x{c:.0f}" for g, c in zip(ranked["gpu"], ranked["gpu_count"])],
                           ranked["location"], ranked["rank_carbon"].astype(str), ranked["rank_cost"].astype(str),
                           [fmt_num(v, ".6g") for v in ranked["total_cost_usd_per_1k_tokens"]],
                           [fmt_range(m, lo, hi, ".4g") for m, lo, hi in zip(
                               ranked["carbon_gco2e_per_1k_tokens"], ranked["carbon_gco2e_per_1k_tokens_min"],
                               ranked["carbon_gco2e_per_1k_tokens_max"])],
                           [fmt_num(v, ".4g") for v in ranked["energy_kwh_per_1k_tokens"]]],
                   align="left")), row=2, col=1)
    fig.update_xaxes(title_text="USD / 1K tokens", row=1, col=1)
    fig.update_xaxes(title_text="gCO2e / 1K tokens", row=1, col=2)
    fig.update_yaxes(title_text="requests/s", row=1, col=3)
    return base_layout(fig, "Efficiency comparison: cost and carbon rankings, goodput", 2)
