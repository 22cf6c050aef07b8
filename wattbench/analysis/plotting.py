"""What every dashboard shares: colours, labels, error bars, the layout with its lens note, percentile bars."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from wattbench.analysis.reading import ANALYSIS_COLUMNS, check_frame, lean, prepare
from wattbench.analysis.schema import LENS_SIMULATED
from wattbench.energy.lenses import LENSES

DEFAULT_MAX_POINTS = 2000


PCT_SHOWN: tuple[int, ...] = (50, 90, 99)


SIM = f"[{LENS_SIMULATED}]"


PROVIDER_LABEL = "provider-side<br>(EcoLogits)"


PCT_COLORS = {50: "#9ECAE1", 90: "#4292C6", 99: "#08519C"}  # light to dark: higher percentile, darker


MODEL_COLORS = ("#7B4FA0", "#E8833A", "#2A9D8F", "#C8553D", "#8D99AE", "#B5838D")


PART_COLORS = {"compute": "#4C78A8", "idle": "#BAB0AC", "PUE overhead": "#F58518"}


LENS_NOTE = "Lenses: " + "; ".join(f"{lens.label} = {lens.note}" for lens in LENSES) + "."


def checked(df: pd.DataFrame) -> pd.DataFrame:
    """df prepared (report.prepare) and lean (report.lean); report.ReportInputError naming the missing columns
    when it is not in the schema."""
    check_frame(df, required=ANALYSIS_COLUMNS)
    return lean(prepare(df))


def error_y(mid: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    """Asymmetric error bars from a min/max range (none where the range is missing)."""
    return dict(type="data", symmetric=False, array=(high - mid).to_numpy(dtype=float),
                arrayminus=(mid - low).to_numpy(dtype=float), visible=True, thickness=1.2)


def models_of(df: pd.DataFrame) -> list[str]:
    """The models in the frame, sorted."""
    return sorted(df["model"].dropna().astype(str).unique())


def short_model(model: str) -> str:
    """The model name without its provider prefix: 'gemini/gemini-2.5-flash' -> 'gemini-2.5-flash'."""
    return str(model).rsplit("/", 1)[-1]


def model_color(model: str, models: list[str]) -> str:
    """The same colour for a model on every panel."""
    return MODEL_COLORS[models.index(model) % len(MODEL_COLORS)] if model in models else MODEL_COLORS[-1]


def group_label(frame: pd.DataFrame, key: str, multi_model: bool) -> list[str]:
    """Category labels: the key, plus the short model name when the frame holds several models."""
    if not multi_model:
        return frame[key].astype(str).tolist()
    return [f"{k} · {short_model(m)}" for k, m in zip(frame[key].astype(str), frame["model"].astype(str))]


def base_layout(fig: go.Figure, title: str, n_rows: int, note: str = LENS_NOTE) -> go.Figure:
    """Title, size, legend and the footnote shared by all dashboards."""
    fig.update_layout(title=dict(text=title, x=0.01), height={1: 500, 2: 860}.get(n_rows, 1000),
                      template="plotly_white",
                      barmode="group", legend=dict(x=1.01, y=1, xanchor="left", yanchor="top", font=dict(size=11)),
                      margin=dict(t=110, b=110, r=10))
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=-0.09, showarrow=False,
                           font=dict(size=11, color="#555"), xanchor="left", yanchor="top")
    return fig


def no_data(fig: go.Figure, row: int, col: int, text: str) -> None:
    """Write `text` in the middle of an empty subplot."""
    sub = fig.get_subplot(row, col)
    xref = sub.xaxis.plotly_name.replace("axis", "")
    yref = sub.yaxis.plotly_name.replace("axis", "")
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref=f"{xref} domain", yref=f"{yref} domain",
                       font=dict(color="#888"))


PCT_OPACITY = {50: 1.0, 90: 0.6, 99: 0.3}


def percentile_bars(fig: go.Figure, table: pd.DataFrame, xcol: str, models: list[str], row: int, col: int,
                     *, legend: bool, unit: str = "s") -> None:
    """p99, p90 and p50 bars drawn over each other (one offset group per model, darker = lower percentile).

    table: model, xcol, p50, p90, p99.
    """
    for model in models:
        frame = table[table["model"] == model]
        if frame.empty:
            continue
        for q in sorted(PCT_SHOWN, reverse=True):
            fig.add_trace(go.Bar(name=f"{short_model(model)} p{q}", x=frame[xcol].astype(str), y=frame[f"p{q}"],
                                 offsetgroup=model, marker_color=model_color(model, models),
                                 marker_opacity=PCT_OPACITY[q], legendgroup=f"{model}-p{q}", showlegend=legend,
                                 hovertemplate="%{x}<br>p" + str(q) + " %{y:.4g} " + unit
                                               + "<extra>%{fullData.name}</extra>"), row=row, col=col)
