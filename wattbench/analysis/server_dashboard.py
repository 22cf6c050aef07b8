"""The server's time-series panel (server_timeseries.html beside the dashboards): running and waiting requests and
KV-cache usage over each run, from the samples of telemetry/sampler.py."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattbench.analysis.site import figure_html

SERVER_TIMESERIES_HTML = "server_timeseries.html"


def timeseries_figure(samples_by_run: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """Running and waiting requests (and KV usage, right axis) against seconds since each run's first sample."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for run_id, samples in samples_by_run.items():
        if not samples:
            continue
        t0 = float(samples[0]["t_epoch_s"])
        for role, dash in (("running", "solid"), ("waiting", "dot")):
            points = [(float(s["t_epoch_s"]) - t0, s[role]) for s in samples if isinstance(s.get(role), int | float)]
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines",
                                     line={"shape": "hv", "dash": dash}, name=f"{run_id}: {role}"))
        kv = [(float(s["t_epoch_s"]) - t0, s["kv_usage"]) for s in samples if isinstance(s.get("kv_usage"), int | float)]
        if kv:
            fig.add_trace(go.Scatter(x=[p[0] for p in kv], y=[p[1] for p in kv], mode="lines", yaxis="y2",
                                     line={"shape": "hv", "width": 1}, name=f"{run_id}: KV usage"))
    fig.update_layout(title="Server view: running vs waiting requests over the run (the server's own metrics)",
                      xaxis_title="seconds since the run's first sample", yaxis_title="requests",
                      yaxis2={"title": "KV-cache usage", "overlaying": "y", "side": "right", "tickformat": ".0%",
                              "range": [0, 1]})
    return fig


def write_timeseries(samples_by_run: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | Path
                     ) -> Path | None:
    """server_timeseries.html in out_dir (next to the dashboards, sharing plotly.min.js); None without samples."""
    if not any(samples_by_run.values()):
        return None
    path = Path(out_dir) / SERVER_TIMESERIES_HTML
    path.write_text(figure_html(timeseries_figure(samples_by_run), "Server view"), encoding="utf-8")
    return path
