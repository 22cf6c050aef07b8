"""Writing the dashboards: one offline HTML file per figure, plotly.min.js once, and index.html linking them."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from wattbench.analysis.dashboards import (
    gpu_memory_from_profiles,
    make_advanced_hardware,
    make_carbon_energy,
    make_efficiency_comparison,
    make_gpu_comparison,
    make_model_performance,
    make_time_series,
)
from wattbench.analysis.frontier import make_frontier
from wattbench.analysis.plotting import DEFAULT_MAX_POINTS, LENS_NOTE, checked
from wattbench.analysis.report import REPORT_MD, REPORT_TXT, SUMMARY_CSV
from wattbench.analysis.tables import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S

PLOTLY_JS = "plotly.min.js"


INDEX_HTML = "index.html"


DASHBOARDS: dict[str, tuple[str, str]] = {
    "gpu_comparison": ("gpu_comparison_dashboard.html",
                       "GPU comparison: carbon, cost, latency and energy per deployment profile"),
    "model_performance": ("model_performance_analysis.html",
                          "Model / route performance: cost, throughput, accuracy, latency/TTFT/TPOT percentiles"),
    "carbon_energy": ("carbon_energy_analysis.html",
                      "Carbon by location, idle vs compute energy, carbon by lens and by category"),
    "time_series": ("time_series_analysis.html", "Performance over the run and cumulative carbon"),
    "advanced_hardware": ("advanced_hardware_metrics.html", "TDP vs carbon, memory vs throughput, grid, power"),
    "efficiency_comparison": ("efficiency_comparison.html", "Cost and carbon efficiency rankings, goodput"),
    "frontier": ("frontier_analysis.html", "Frontier: cost, energy and carbon per 1K tokens vs p90 TTFT, ITL and "
                 "throughput per model x profile x load point; Pareto front, SLO line, recommendation"),
}


def make_all(df: pd.DataFrame, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
             slo_tpot_s: float = DEFAULT_SLO_TPOT_S, gpu_memory_gb: Mapping[str, float] | None = None,
             max_points: int = DEFAULT_MAX_POINTS) -> dict[str, go.Figure]:
    """The seven figures by name (keys of DASHBOARDS), from one prepared copy of df. gpu_memory_gb defaults to
    gpu_memory_from_profiles()."""
    df = checked(df)
    if gpu_memory_gb is None:
        gpu_memory_gb = gpu_memory_from_profiles()
    makers: dict[str, Callable[[], go.Figure]] = {
        "gpu_comparison": lambda: make_gpu_comparison(df),
        "model_performance": lambda: make_model_performance(df),
        "carbon_energy": lambda: make_carbon_energy(df),
        "time_series": lambda: make_time_series(df, max_points),
        "advanced_hardware": lambda: make_advanced_hardware(df, gpu_memory_gb),
        "efficiency_comparison": lambda: make_efficiency_comparison(df, slo_ttft_s, slo_tpot_s),
        "frontier": lambda: make_frontier(df, slo_ttft_s, slo_tpot_s),
    }
    return {name: make() for name, make in makers.items()}


def figure_html(fig: go.Figure, title: str) -> str:
    """A full HTML page for fig that loads plotly.min.js from beside it (no CDN, nothing inlined)."""
    page = fig.to_html(include_plotlyjs=PLOTLY_JS, full_html=True, config={"displaylogo": False, "responsive": True})
    return page.replace("<head>", f"<head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>", 1)


def write_plotly_js(out_dir: Path) -> Path:
    """Write plotly's bundled plotly.min.js into out_dir unless the same file is already there."""
    from plotly.offline import get_plotlyjs  # noqa: PLC0415 - only needed when writing

    path = out_dir / PLOTLY_JS
    js = get_plotlyjs().encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(js)):
        path.write_bytes(js)
    return path


def index_html(titles: Mapping[str, tuple[str, str]], extra_links: Mapping[str, str]) -> str:
    """index.html: links to the dashboards (file -> description) and the other outputs."""
    items = "\n".join(f'  <li><a href="{html.escape(f)}">{html.escape(f)}</a> &mdash; {html.escape(d)}</li>'
                      for f, d in titles.values())
    extras = "\n".join(f'  <li><a href="{html.escape(f)}">{html.escape(f)}</a> &mdash; {html.escape(d)}</li>'
                       for f, d in extra_links.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wattbench dashboards</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;line-height:1.5}}</style></head>
<body>
<h1>wattbench dashboards</h1>
<ul>
{items}
</ul>
<h2>Report and data</h2>
<ul>
{extras}
</ul>
<p>{html.escape(LENS_NOTE)}</p>
<p>The pages work offline: they load <code>{PLOTLY_JS}</code> from this folder.</p>
</body></html>
"""


def write_dashboards(df: pd.DataFrame, out_dir: str | Path, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                     slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                     gpu_memory_gb: Mapping[str, float] | None = None,
                     max_points: int = DEFAULT_MAX_POINTS) -> dict[str, object]:
    """Write the seven dashboards, index.html and plotly.min.js into out_dir.

    Returns {"dashboards": {name: Path}, "index": Path, "plotly_js": Path}. gpu_memory_gb defaults to
    gpu_memory_from_profiles().
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = make_all(df, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, gpu_memory_gb=gpu_memory_gb,
                       max_points=max_points)
    js = write_plotly_js(out)
    paths: dict[str, Path] = {}
    for name, fig in figures.items():
        filename, title = DASHBOARDS[name]
        path = out / filename
        path.write_text(figure_html(fig, title), encoding="utf-8")
        paths[name] = path
    index = out / INDEX_HTML
    index.write_text(index_html(DASHBOARDS, {
        REPORT_TXT: "the printed report", REPORT_MD: "the report as Markdown",
        SUMMARY_CSV: "summary per model x route x profile"}), encoding="utf-8")
    return {"dashboards": paths, "index": index, "plotly_js": js}
