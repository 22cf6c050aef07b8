"""dashboards.py: the values inside the six figures, on the hand-made fixture (tests/fixtures_frame.py)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from fixtures_frame import GEMINI, LOCAL, fixture_frame, synthetic_frame

from wattbench.analysis.dashboards import (
    hardware_table,
    make_advanced_hardware,
    make_carbon_energy,
    make_efficiency_comparison,
    make_gpu_comparison,
    make_model_performance,
    make_time_series,
    sample_positions,
)
from wattbench.analysis.plotting import short_model
from wattbench.analysis.reading import ReportInputError
from wattbench.analysis.site import DASHBOARDS, make_all, write_dashboards
from wattbench.analysis.tables import successful

approx = pytest.approx
G, L = short_model(GEMINI), short_model(LOCAL)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return fixture_frame()


def traces_in(fig: go.Figure, row: int, col: int) -> list:
    """The traces drawn on subplot (row, col)."""
    sub = fig.get_subplot(row, col)
    xref = sub.xaxis.plotly_name.replace("axis", "")
    return [t for t in fig.data if getattr(t, "xaxis", None) == xref]


def trace(fig: go.Figure, row: int, col: int, name: str):
    found = [t for t in traces_in(fig, row, col) if t.name == name]
    assert len(found) == 1, f"{name!r} on ({row},{col}): {[t.name for t in traces_in(fig, row, col)]}"
    return found[0]


def subplot_titles(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.xref == "paper" and a.yanchor == "bottom"]


def test_gpu_comparison_values(df):
    fig = make_gpu_comparison(df)
    carbon = trace(fig, 1, 1, G)
    assert list(carbon.x) == ["A100_SIMULATED", "T4_COLAB"]
    assert list(carbon.y) == approx([0.03025, 0.15])
    assert list(carbon.error_y.array) == approx([0.03025, 0.15])  # max = 2 x mid
    assert list(carbon.error_y.arrayminus) == approx([0.015125, 0.075])  # min = mid / 2
    assert list(trace(fig, 1, 2, G).y) == approx([0.001996, 0.0019125])
    # latency: measured p50 1.75 s; simulated T4 0.01 s/token over 41, 81, 171, 1 tokens -> p50 0.61 s
    p50 = trace(fig, 2, 1, f"{G} p50")
    assert list(p50.x) == ["measured", "A100_SIMULATED<br>[simulated]", "T4_COLAB<br>[simulated]"]
    assert list(p50.y) == approx([1.75, 0.122, 0.61])
    lens_g = dict(zip(trace(fig, 2, 2, G).x, trace(fig, 2, 2, G).y))
    assert lens_g["provider-side<br>(EcoLogits)"] == approx(7.35e-4)
    assert lens_g["T4_COLAB<br>[simulated]"] == approx(3.75e-4)
    lens_l = dict(zip(trace(fig, 2, 2, L).x, trace(fig, 2, 2, L).y))
    assert lens_l["estimated:<br>cpu_time_estimate"] == approx(5e-5)
    assert fig.layout.xaxis4.categoryarray[-2:] == ("provider-side<br>(EcoLogits)", "estimated:<br>cpu_time_estimate")


def test_model_performance_values(df):
    fig = make_model_performance(df)
    cost = trace(fig, 1, 1, G)
    assert dict(zip(cost.x, cost.y)) == approx({"Flash-Coder": (0.0004 + 0.00005) / 2,
                                                "Flash-Precise": (0.0001 + 0.0002) / 2})
    acc = trace(fig, 1, 3, G)
    assert (list(acc.x), list(acc.y), list(acc.text)) == (["Flash-Precise"], approx([50.0]), ["1/2"])
    assert list(trace(fig, 1, 3, L).y) == approx([100.0])
    p90 = trace(fig, 2, 1, f"{G} p90")
    assert dict(zip(p90.x, p90.y)) == approx({"Flash-Coder": 3.75, "Flash-Precise": 1.9})
    ttft_p50 = trace(fig, 2, 2, f"{L} p50")
    assert list(ttft_p50.y) == approx([0.4])
    assert trace(fig, 2, 3, f"{G} p99").offsetgroup == GEMINI  # p50/p90/p99 of one model overlay


def test_carbon_energy_values(df):
    fig = make_carbon_energy(df)
    loc = traces_in(fig, 1, 1)[0]
    # T4, both models: 0.06 + 0.024 gCO2e
    assert dict(zip(loc.x, loc.y))["Iowa, US<br>(T4_COLAB)"] == approx(0.084)
    compute, idle, pue = (trace(fig, 1, 2, f"{p} energy") for p in ("compute", "idle", "PUE overhead"))
    t4 = list(compute.x).index("T4_COLAB")
    assert compute.y[t4] == approx(4e-5 + 8e-6)
    assert idle.y[t4] == approx(8e-5 + 4e-5)
    assert idle.base[t4] == approx(compute.y[t4])  # stacked on compute
    assert pue.base[t4] == approx(4.8e-5 + 1.2e-4)
    assert compute.text[t4] == "22.9%"  # 4.8e-5 / 2.1e-4
    lens = dict(zip(trace(fig, 2, 1, G).x, trace(fig, 2, 1, G).y))
    assert lens["provider-side<br>(EcoLogits)"] == approx(2.94e-4 * 300 / 0.4)
    assert lens["T4_COLAB<br>[simulated]"] == approx(0.15)


def test_time_series_shows_all_or_says_it_samples(df):
    full = make_time_series(df)
    assert "all 7 requests shown" in subplot_titles(full)[0]
    latency = trace(full, 1, 1, f"latency {G}")
    assert list(latency.x) == [0.0, 1.0, 3.0, 7.0]
    failed = trace(full, 1, 1, "failed (1)")
    assert list(failed.x) == [8.0]
    cum = trace(full, 3, 1, "T4_COLAB cumulative carbon")
    assert cum.y[-1] == approx(0.084)
    sampled = make_time_series(df, max_points=3)
    assert "showing 3 of 7 requests" in subplot_titles(sampled)[0]


def test_sampling_keeps_ends_and_caps_points():
    assert sample_positions(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_positions(3, 4).tolist() == [0, 1, 2]
    big = synthetic_frame(8000, n_profiles=2, seed=3)
    fig = make_time_series(big, max_points=500)
    assert max(len(t.x) for t in fig.data) <= 500
    cum = successful(big)
    last = trace(fig, 3, 1, "PROFILE_0 cumulative carbon").y[-1]
    assert last == approx(cum[cum["profile"] == "PROFILE_0"]["carbon_gco2e"].sum())


def test_hardware_values(df):
    hw = hardware_table(df, {"NVIDIA T4": 16.0})
    t4 = hw[hw["profile"] == "T4_COLAB"].iloc[0]
    # 0.01 s per output token on T4 -> 100 tokens/s; compute 4.8e-5 kWh = 172.8 J over 294 + 62 output tokens
    assert t4["sim_tokens_per_s"] == approx(100.0)
    assert t4["compute_j_per_output_token"] == approx(172.8 / 356)
    a100 = hw[hw["profile"] == "A100_SIMULATED"].iloc[0]
    assert a100["compute_j_per_output_token"] == approx((2e-5 + 4e-6) * 3.6e6 / 356)
    assert pd.isna(a100["memory_gb"])
    fig = make_advanced_hardware(df, {"NVIDIA T4": 16.0})
    mem = trace(fig, 1, 2, "memory")
    assert (list(mem.x), list(mem.y)) == ([16.0], approx([100.0]))
    tdp = trace(fig, 1, 1, "TDP")
    assert dict(zip(tdp.x, tdp.y)) == approx({400.0: (0.0121 + 0.0057200) / 0.48, 70.0: (0.06 + 0.024) / 0.48})


def test_hardware_without_memory_says_so(df):
    fig = make_advanced_hardware(df, None)
    assert traces_in(fig, 1, 2) == []
    notes = [a.text for a in fig.layout.annotations if a.xref == "x2 domain"]
    assert notes == ["GPU memory unknown: gpu_profiles not importable or its GPUs not in this CSV"]


def test_efficiency_rankings_and_goodput(df):
    fig = make_efficiency_comparison(df)
    carbon = trace(fig, 1, 2, "carbon")
    # horizontal bars: the last drawn is at the top, so the best (lowest) comes last
    assert list(carbon.y)[-1] == f"A100_SIMULATED · {G}"
    assert list(carbon.x) == sorted(carbon.x, reverse=True)
    goodput = trace(fig, 1, 3, "goodput (meeting the SLOs)")
    assert dict(zip(goodput.x, goodput.y)) == approx({G: 3 / 8.5, L: 0.5})
    assert list(goodput.text) == ["60.0% meet", "50.0% meet"]
    table = [t for t in fig.data if t.type == "table"][0]
    cells = table.cells.values
    assert list(cells[1][:2]) == ["A100_SIMULATED", "T4_COLAB"]
    assert list(cells[7][:2]) == ["0.03025 [0.01513-0.0605]", "0.15 [0.075-0.3]"]
    tight = make_efficiency_comparison(df, slo_ttft_s=1.0, slo_tpot_s=0.05)
    assert dict(zip(trace(tight, 1, 3, "goodput (meeting the SLOs)").x,
                    trace(tight, 1, 3, "goodput (meeting the SLOs)").y)) == approx({G: 4 / 8.5, L: 1.0})


def test_every_energy_panel_names_its_lens(df):
    lens_words = ("[simulated]", "EcoLogits", "every lens", "measured")
    for name, fig in make_all(df).items():
        for title in subplot_titles(fig):
            if "kWh" in title or "gCO2e" in title or " W" in title:
                assert any(w in title for w in lens_words), f"{name}: {title!r}"


def test_figures_are_pure(df):
    before = df.copy()
    make_all(df)
    pd.testing.assert_frame_equal(df, before)


def test_write_dashboards_writes_plotly_once(tmp_path, df):
    first = write_dashboards(df, tmp_path, gpu_memory_gb={})
    js = first["plotly_js"]
    mtime = js.stat().st_mtime_ns
    second = write_dashboards(df, tmp_path, gpu_memory_gb={})
    assert js.stat().st_mtime_ns == mtime  # the same file is not rewritten
    assert [p.name for p in second["dashboards"].values()] == [f for f, _ in DASHBOARDS.values()]
    assert sorted(p.name for p in tmp_path.glob("*.js")) == ["plotly.min.js"]
    page = (tmp_path / "time_series_analysis.html").read_text()
    assert "<title>Performance over the run and cumulative carbon</title>" in page
    index = first["index"].read_text()
    assert all(f'href="{f}"' in index for f, _ in DASHBOARDS.values())


def test_failed_only_run_still_draws_and_says_why_panels_are_empty(df):
    figs = make_all(df[~df["success"]])
    assert list(figs) == list(DASHBOARDS)
    notes = {name: [a.text for a in fig.layout.annotations] for name, fig in figs.items()}
    assert "no successful request" in notes["gpu_comparison"]
    assert "no successful request" in notes["carbon_energy"]
    assert "no graded prompt in this run" in notes["model_performance"]
    assert len(figs["gpu_comparison"].data) == 0


def test_frame_without_schema_columns_is_a_clear_error(df):
    with pytest.raises(ReportInputError) as err:
        make_gpu_comparison(df.drop(columns=["energy_kwh"]))
    assert str(err.value) == ("DataFrame: not a wattbench metrics CSV, missing 1 column(s): energy_kwh "
                              "(schema: docs/outputs.md)")


def test_free_model_cost_panel_says_so(df):
    fig = make_model_performance(df[df["model"] == LOCAL])
    assert [a.text for a in fig.layout.annotations if a.xref == "x domain"] == [
        "API cost is $0 for every request (a local model)"]


def test_figures_need_no_long_text_columns(df):
    lean = df.drop(columns=["prompt", "response_text", "expected", "route_reason", "started_at"])
    fig = make_gpu_comparison(lean)
    assert list(trace(fig, 1, 1, G).y) == approx([0.03025, 0.15])
