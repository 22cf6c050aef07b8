"""The frontier: for every model x deployment profile x load point (a run of a sweep), cost, energy and carbon
per 1K tokens against p90 TTFT, p90 ITL and throughput; the Pareto front; the SLO line; and the cheapest and the
greenest configuration that meets the SLOs.

A load point is one run (run_id): one concurrency or rate of `wattbench sweep`, or one `wattbench run`. Its
energy is the simulated lens's at the batch the run achieved when it was run with `--energy-batch achieved`
(every sweep point is): the `sim_batch_size` column says which batch each row was simulated at.
Cost = total_cost_usd (the API price where known + the energy's cost), as everywhere in the report.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from wattbench.analysis.plotting import MODEL_COLORS, base_layout, no_data, short_model
from wattbench.analysis.achieved import first_value, measured_phase
from wattbench.analysis.report import fmt_num
from wattbench.analysis.tables import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S, per_1k, run_span_s, simulated

#: (column, label, unit) of the three footprints per 1K tokens on the frontier's y axes
FOOTPRINTS: tuple[tuple[str, str, str], ...] = (
    ("cost_usd_per_1k_tokens", "cost", "USD / 1K tokens"),
    ("energy_kwh_per_1k_tokens", "energy", "kWh / 1K tokens"),
    ("carbon_gco2e_per_1k_tokens", "carbon", "gCO2e / 1K tokens"),
)
#: (column, label) of the three service measures on the frontier's x axes
MEASURES: tuple[tuple[str, str], ...] = (
    ("ttft_p90_s", "p90 TTFT (s)"),
    ("itl_p90_s", "p90 ITL (s)"),
    ("output_tokens_per_s", "throughput (output tokens/s)"),
)


def _load_label(row: pd.Series) -> str:
    rate, conc = row.get("requested_rate_rps"), row.get("requested_concurrency")
    if rate is not None and not pd.isna(rate):
        return f"rate {rate:g}/s"
    if conc is not None and not pd.isna(conc):
        return f"c{conc:g}"
    return str(row["run_id"])


def point_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run x model (the client's view, one row per request): requests, served, achieved concurrency,
    throughput over the run's wall span, p50 / p90 latency, p90 TTFT and p90 ITL (itl_s, else tpot_s)."""
    req = measured_phase(df).drop_duplicates(["run_id", "request_id"])
    rows = []
    for (run_id, model), run in req.groupby(["run_id", "model"], sort=False):
        ok = run[run["success"].astype(bool)]
        span = run_span_s(run) if len(ok) else math.nan
        itl = ok["itl_s"] if "itl_s" in ok.columns and ok["itl_s"].notna().any() else ok["tpot_s"]
        busy = float(ok["latency_s"].sum())
        rows.append(dict(
            run_id=run_id, model=model, requests=len(run), served=len(ok), errors=len(run) - len(ok),
            requested_concurrency=first_value(run, "requested_concurrency"),
            requested_rate_rps=first_value(run, "requested_rate_rps"),
            achieved_concurrency=busy / span if span and span > 0 else math.nan,
            throughput_rps=len(ok) / span if span and span > 0 else math.nan,
            output_tokens_per_s=float(ok["completion_tokens"].sum()) / span if span and span > 0 else math.nan,
            latency_p50_s=ok["latency_s"].quantile(0.5), ttft_p90_s=ok["ttft_s"].quantile(0.9),
            itl_p90_s=itl.quantile(0.9) if itl.notna().any() else math.nan,
        ))
    return pd.DataFrame(rows)


def frontier_table(df: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                   slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> pd.DataFrame:
    """One row per model x profile x load point: the point's service measures (point_table), its footprints
    per 1K tokens on the profile (simulated lens, total tokens), the batch it was simulated at, whether it meets
    the SLOs (p90 TTFT <= slo_ttft_s and p90 ITL <= slo_tpot_s, nothing failed), and for each footprint whether
    it is on the Pareto front of (p90 TTFT, footprint): no other row is at least as good on both and better
    on one. Empty when nothing was simulated."""
    points = point_table(df)
    ok = simulated(df)
    if ok.empty or points.empty:
        return pd.DataFrame()
    g = ok.groupby(["run_id", "model", "profile"], sort=False)
    sums = g[["total_tokens", "total_cost_usd", "energy_kwh", "carbon_gco2e"]].sum(min_count=1)
    sums["sim_batch_size"] = g["sim_batch_size"].median() if "sim_batch_size" in ok.columns else math.nan
    # the measured GPU lens (NVML beside the client, or dcgm of the serving GPUs): request-level, the same on
    # every profile's rows; shown beside the simulated figure, never instead of it
    sums["measured_energy_kwh"] = (g["gpu_energy_kwh"].sum(min_count=1) if "gpu_energy_kwh" in ok.columns
                                   else math.nan)
    sums["measured_devices"] = (g["gpu_energy_devices"].first() if "gpu_energy_devices" in ok.columns else None)
    sums = sums.reset_index()
    tokens = sums["total_tokens"]
    sums["cost_usd_per_1k_tokens"] = per_1k(sums["total_cost_usd"], tokens)
    sums["energy_kwh_per_1k_tokens"] = per_1k(sums["energy_kwh"], tokens)
    sums["carbon_gco2e_per_1k_tokens"] = per_1k(sums["carbon_gco2e"], tokens)
    sums["measured_energy_kwh_per_1k_tokens"] = per_1k(sums["measured_energy_kwh"], tokens)
    out = points.merge(sums, on=["run_id", "model"], how="inner")
    out["load"] = out.apply(_load_label, axis=1)
    out["meets_slo"] = ((out["ttft_p90_s"] <= slo_ttft_s)
                        & (out["itl_p90_s"].isna() | (out["itl_p90_s"] <= slo_tpot_s)) & (out["errors"] == 0))
    for column, label, _ in FOOTPRINTS:
        out[f"pareto_{label}"] = pareto_mask(out["ttft_p90_s"], out[column])
    sort = ["model", "profile", "requested_concurrency", "requested_rate_rps", "run_id"]
    return out.sort_values(sort, ignore_index=True, na_position="last")


def pareto_mask(x: pd.Series, y: pd.Series) -> pd.Series:
    """True where (x, y) is not dominated (both minimised): no other point has x' <= x and y' <= y with one
    of them strictly smaller. NaN points are never on the front."""
    xs, ys = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    front = []
    for i in range(len(xs)):
        if math.isnan(xs[i]) or math.isnan(ys[i]):
            front.append(False)
            continue
        dominated = any(j != i and xs[j] <= xs[i] and ys[j] <= ys[i] and (xs[j] < xs[i] or ys[j] < ys[i])
                        for j in range(len(xs)) if not (math.isnan(xs[j]) or math.isnan(ys[j])))
        front.append(not dominated)
    return pd.Series(front, index=x.index)


def recommend(table: pd.DataFrame) -> dict[str, pd.Series | None]:
    """The cheapest and the greenest rows that meet the SLOs (None when no row does)."""
    if table.empty:
        return {"cheapest": None, "greenest": None}
    good = table[table["meets_slo"]]
    picks: dict[str, pd.Series | None] = {}
    for name, column in (("cheapest", "cost_usd_per_1k_tokens"), ("greenest", "carbon_gco2e_per_1k_tokens")):
        ranked = good.dropna(subset=[column]).sort_values([column, "ttft_p90_s"])
        picks[name] = ranked.iloc[0] if not ranked.empty else None
    return picks


def _describe(row: pd.Series) -> str:
    return (f"{row['model']} on {row['profile']} at {row['load']} (achieved {row['achieved_concurrency']:.1f} in "
            f"flight, simulated batch {fmt_num(row['sim_batch_size'], '.3g')}): "
            f"{fmt_num(row['cost_usd_per_1k_tokens'])} USD, {fmt_num(row['energy_kwh_per_1k_tokens'])} kWh, "
            f"{fmt_num(row['carbon_gco2e_per_1k_tokens'])} gCO2e per 1K tokens; p90 TTFT "
            f"{row['ttft_p90_s']:.3f} s, p90 ITL {fmt_num(row['itl_p90_s'], '.4f')} s, "
            f"{row['output_tokens_per_s']:.1f} output tokens/s" + _measured(row))


def _measured(row: Any) -> str:
    """'; measured on <GPUs>: X kWh per 1K tokens' where the point has measured GPU energy, else ''."""
    get = row.get if hasattr(row, "get") else lambda name, default=None: getattr(row, name, default)
    value = get("measured_energy_kwh_per_1k_tokens", math.nan)
    if value is None or pd.isna(value):
        return ""
    return f"; measured on {get('measured_devices') or 'its GPUs'}: {fmt_num(value)} kWh per 1K tokens"


def recommendation_lines(table: pd.DataFrame, slo_ttft_s: float, slo_tpot_s: float) -> list[str]:
    """What the report says: the cheapest and the greenest configuration meeting the SLOs."""
    slo = f"p90 TTFT <= {slo_ttft_s:g} s and p90 ITL <= {slo_tpot_s:g} s, no failed request"
    if table.empty:
        return ["No load point was simulated on a profile: nothing to recommend."]
    picks = recommend(table)
    if picks["cheapest"] is None:
        best = table.sort_values("ttft_p90_s").iloc[0]
        return [f"No configuration meets the SLOs ({slo}) among {len(table)} model x profile x load points; "
                f"the lowest p90 TTFT was {best['ttft_p90_s']:.3f} s ({best['model']} at {best['load']})."]
    lines = [f"SLOs: {slo}; {int(table['meets_slo'].sum())} of {len(table)} model x profile x load points meet "
             "them."]
    lines.append("CHEAPEST meeting the SLOs: " + _describe(picks["cheapest"]))
    lines.append("GREENEST meeting the SLOs: " + _describe(picks["greenest"]))  # type: ignore[arg-type]
    return lines


def frontier_text(table: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S, markdown: bool = False) -> str:
    """The report's FRONTIER section: the recommendation, then one line per model x profile x load point."""
    lines = recommendation_lines(table, slo_ttft_s, slo_tpot_s)
    for row in ([] if table.empty else table.itertuples(index=False)):
        marks = [label for _, label, _ in FOOTPRINTS if getattr(row, f"pareto_{label}")]
        lines.append(
            f"{row.model} | {row.profile} | {row.load}: {row.served}/{row.requests} served, "
            f"{row.achieved_concurrency:.1f} in flight, batch {fmt_num(row.sim_batch_size, '.3g')}, "
            f"{row.output_tokens_per_s:.1f} tok/s, p90 TTFT {row.ttft_p90_s:.3f} s, p90 ITL "
            f"{fmt_num(row.itl_p90_s, '.4f')} s; {fmt_num(row.cost_usd_per_1k_tokens)} USD, "
            f"{fmt_num(row.energy_kwh_per_1k_tokens)} kWh, {fmt_num(row.carbon_gco2e_per_1k_tokens)} gCO2e "
            f"/ 1K tokens; {'meets' if row.meets_slo else 'misses'} the SLOs"
            + _measured(row) + (f"; Pareto front ({', '.join(marks)} vs p90 TTFT)" if marks else ""))
    lines.append("Energy at each load point is the roofline's at sim_batch_size: the batch the server ran (its "
                 "metrics, --energy-batch server) or else, for a sweep point, the batch the run achieved; cost = API "
                 "price + energy cost.")
    bullet = "- " if markdown else ""
    return "\n".join(bullet + line for line in lines)


def make_frontier(df: pd.DataFrame, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> go.Figure:
    """frontier_analysis.html: rows cost / energy / carbon per 1K tokens, columns p90 TTFT / p90 ITL /
    throughput; one line per model x profile through its load points, the Pareto front (vs p90 TTFT) as
    stars, the SLO as a dashed line, points missing the SLOs hollow."""
    table = frontier_table(df, slo_ttft_s, slo_tpot_s)
    titles = [f"{flabel} vs {mlabel}" for _, flabel, _ in FOOTPRINTS for _, mlabel in MEASURES]
    fig = make_subplots(rows=3, cols=3, vertical_spacing=0.09, horizontal_spacing=0.07, subplot_titles=titles)
    if table.empty:
        for r in (1, 2, 3):
            for c in (1, 2, 3):
                no_data(fig, r, c, "no simulated load point")
        return base_layout(fig, "Frontier: footprint per 1K tokens vs latency and throughput", 3)
    models = list(dict.fromkeys(table["model"]))
    symbols = ("circle", "square", "diamond", "triangle-up", "cross", "x", "pentagon", "hexagon")
    profiles = list(dict.fromkeys(table["profile"]))
    for (model, profile), line in table.groupby(["model", "profile"], sort=False):
        name = f"{short_model(model)} | {profile}"
        color = MODEL_COLORS[models.index(model) % len(MODEL_COLORS)]
        symbol = symbols[profiles.index(profile) % len(symbols)]
        for r, (fcol, _, _) in enumerate(FOOTPRINTS, start=1):
            for c, (mcol, _) in enumerate(MEASURES, start=1):
                fig.add_trace(go.Scatter(
                    x=line[mcol], y=line[fcol], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=(r, c) == (1, 1), line=dict(color=color, width=1.5),
                    marker=dict(symbol=[symbol if ok else f"{symbol}-open" for ok in line["meets_slo"]],
                                size=9, color=color),
                    text=[f"{name}<br>{load}: batch {fmt_num(b, '.3g')}{_measured(row).replace('; ', '<br>')}"
                          for load, b, (_, row) in zip(line["load"], line["sim_batch_size"], line.iterrows(),
                                                       strict=True)],
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}<extra></extra>"), row=r, col=c)
    for r, (fcol, flabel, unit) in enumerate(FOOTPRINTS, start=1):
        front = table[table[f"pareto_{flabel}"]].sort_values("ttft_p90_s")
        fig.add_trace(go.Scatter(
            x=front["ttft_p90_s"], y=front[fcol], mode="markers+lines", name="Pareto front (vs p90 TTFT)",
            legendgroup="pareto", showlegend=r == 1, line=dict(color="black", dash="dot", width=1),
            marker=dict(symbol="star", size=14, color="rgba(0,0,0,0)", line=dict(color="black", width=1.5)),
            hoverinfo="skip"), row=r, col=1)
        fig.add_vline(x=slo_ttft_s, line=dict(color="#C8553D", dash="dash"), row=r, col=1)
        fig.add_vline(x=slo_tpot_s, line=dict(color="#C8553D", dash="dash"), row=r, col=2)
        fig.update_yaxes(title_text=unit, type="log", row=r, col=1)
        fig.update_yaxes(type="log", row=r, col=2)
        fig.update_yaxes(type="log", row=r, col=3)
    for c, (_, mlabel) in enumerate(MEASURES, start=1):
        fig.update_xaxes(title_text=mlabel, row=3, col=c)
    picks = recommendation_lines(table, slo_ttft_s, slo_tpot_s)
    note = (f"SLO (dashed): p90 TTFT {slo_ttft_s:g} s, p90 ITL {slo_tpot_s:g} s; hollow = misses the SLOs; "
            "stars = Pareto front.<br>" + "<br>".join(picks[1:] or picks[:1]))
    return base_layout(fig, "Frontier: cost, energy and carbon per 1K tokens vs p90 TTFT, ITL and throughput", 3,
                        note=note)
