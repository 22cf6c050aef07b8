"""report.py: tables, text, summary CSV, input checks and `wattbench report`, on the hand-made fixture.

Expected numbers are worked out by hand from tests/fixtures_frame.py (the sums are written there).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fixtures_frame import ALL_COLUMNS, GEMINI, LOCAL, fixture_frame

from wattbench.analysis.cli import cli_report
from wattbench.analysis.outputs import build_outputs
from wattbench.analysis.reading import ReportInputError, is_prepared, prepare, read_metrics_csv, resolve_csv
from wattbench.analysis.report import SUMMARY_CSV, render_report
from wattbench.analysis.schema import (
    CSV_SCHEMA,
    LENS_ESTIMATED,
    LENS_PROVIDER,
    LENS_SIMULATED,
    schema_markdown,
)
from wattbench.analysis.tables import (
    accuracy_table,
    efficiency_table,
    energy_breakdown,
    failures_table,
    goodput_table,
    lens_table,
    percentile_table,
    profile_sources,
    profile_table,
    route_latency_table,
    summary_table,
)

ROOT = Path(__file__).resolve().parents[1]
approx = pytest.approx


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return prepare(fixture_frame())


def _row(table: pd.DataFrame, **keys) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for k, v in keys.items():
        mask &= table[k] == v
    rows = table[mask]
    assert len(rows) == 1, f"{keys}: {len(rows)} rows"
    return rows.iloc[0]


# ----------------------------------------------------------------------------------------------- tables


def test_efficiency_per_1k_tokens_and_ranks(df):
    eff = efficiency_table(df)
    t4 = _row(eff, model=GEMINI, profile="T4_COLAB")
    a100 = _row(eff, model=GEMINI, profile="A100_SIMULATED")
    # 400 tokens -> divide by 0.4. T4: carbon 0.06 g, total cost 0.00075 + 1.5e-5 $; A100: 0.0121 g, 0.0007984 $
    assert t4["requests"] == 4  # the failed request has no energy and is not ranked
    assert t4["carbon_gco2e_per_1k_tokens"] == approx(0.15)
    assert t4["carbon_gco2e_per_1k_tokens_min"] == approx(0.075)
    assert t4["carbon_gco2e_per_1k_tokens_max"] == approx(0.3)
    assert t4["total_cost_usd_per_1k_tokens"] == approx(0.0019125)
    assert t4["energy_kwh_per_1k_tokens"] == approx(3.75e-4)
    assert a100["carbon_gco2e_per_1k_tokens"] == approx(0.03025)
    assert a100["total_cost_usd_per_1k_tokens"] == approx(0.001996)
    assert (a100["rank_carbon"], a100["rank_cost"]) == (1, 2)
    assert (t4["rank_carbon"], t4["rank_cost"]) == (2, 1)
    local_t4 = _row(eff, model=LOCAL, profile="T4_COLAB")
    # local: 80 tokens; T4 energy (8e-6 + 4e-5) * 1.25 = 6e-5 kWh -> 0.024 g -> 0.3 g per 1K tokens
    assert local_t4["carbon_gco2e_per_1k_tokens"] == approx(0.3)
    assert local_t4["cost_usd_per_1k_tokens"] == approx(0.0)


def test_idle_vs_compute_shares(df):
    bd = energy_breakdown(df)
    t4 = _row(bd, model=GEMINI, profile="T4_COLAB")
    assert t4["compute_energy_kwh"] == approx(4e-5)
    assert t4["idle_energy_kwh"] == approx(8e-5)
    assert t4["pue_overhead_kwh"] == approx(3e-5)
    assert (t4["compute_share"], t4["idle_share"], t4["pue_overhead_share"]) == approx((0.4 / 1.5, 0.8 / 1.5, 0.2))
    a100 = _row(bd, model=GEMINI, profile="A100_SIMULATED")
    assert a100["idle_share"] == approx(2e-4 / 2.42e-4)


def test_percentiles_count_each_request_once(df):
    pct = percentile_table(df, by=("model",))
    g = _row(pct, model=GEMINI)
    # latencies of the 4 successful Gemini requests, sorted: 1.0, 1.5, 2.0, 4.0 (linear interpolation)
    assert g["requests"] == 4
    assert (g["latency_s_p50"], g["latency_s_p90"], g["latency_s_p95"], g["latency_s_p99"]) == approx(
        (1.75, 3.4, 3.7, 3.94))
    # TTFT 0.2, 0.3, 0.4, 0.6
    assert (g["ttft_s_p50"], g["ttft_s_p90"]) == approx((0.35, 0.54))
    assert g["tpot_s_p99"] == approx(0.02)  # r4 has 1 output token: no tpot, not a zero


def test_latency_per_route(df):
    routes = route_latency_table(df)
    coder = _row(routes, model=GEMINI, route="Flash-Coder")
    assert (coder["requests"], coder["successes"]) == (3, 2)
    assert coder["latency_s_mean"] == approx(2.75)
    assert coder["latency_s_p90"] == approx(1.5 + 0.9 * 2.5)
    assert coder["tokens_per_s_mean"] == approx((171 / 4.0 + 1 / 1.5) / 2)


def test_accuracy_counts_only_graded_prompts(df):
    acc = accuracy_table(df)
    assert _row(acc, model=GEMINI, route="(all)")[["graded", "correct", "accuracy"]].tolist() == [2, 1, 0.5]
    coder = _row(acc, model=GEMINI, route="Flash-Coder")
    assert coder["graded"] == 0 and pd.isna(coder["accuracy"])
    assert _row(acc, model=LOCAL, route="Flash-Precise")["accuracy"] == 1.0


def test_goodput_default_slo(df):
    gp = goodput_table(df)
    g = _row(gp, model=GEMINI)
    # r1 (ttft .2), r2 (.4), r4 (.3, one token: TTFT only) meet; r3 (.6) misses; r5 failed. Span 0 .. 7 + 1.5
    assert (g["requests"], g["successes"], g["meeting_slo"]) == (5, 4, 3)
    assert g["slo_attainment"] == approx(0.6)
    assert g["span_s"] == approx(8.5)
    assert g["goodput_rps"] == approx(3 / 8.5)
    assert g["throughput_rps"] == approx(4 / 8.5)
    local = _row(gp, model=LOCAL)
    assert (local["meeting_slo"], local["span_s"], local["goodput_rps"]) == (1, approx(2.0), approx(0.5))


def test_goodput_follows_the_users_slos(df):
    loose = _row(goodput_table(df, slo_ttft_s=1.0, slo_tpot_s=0.05), model=GEMINI)
    assert loose["meeting_slo"] == 4
    tight_tpot = _row(goodput_table(df, slo_ttft_s=1.0, slo_tpot_s=0.01), model=GEMINI)
    assert tight_tpot["meeting_slo"] == 1  # every tpot is 0.02 s; only the 1-token r4 passes


def test_goodput_spans_add_up_over_runs(df):
    two_runs = pd.concat([df, df.assign(run_id="run-c")], ignore_index=True)
    g = _row(goodput_table(two_runs), model=GEMINI)
    assert (g["meeting_slo"], g["span_s"]) == (6, approx(17.0))


def test_energy_by_lens(df):
    lenses = lens_table(df)
    prov = _row(lenses, model=GEMINI, lens=LENS_PROVIDER)
    # 4.1e-5 + 8.1e-5 + 1.71e-4 + 1e-6 = 2.94e-4 kWh over 400 tokens
    assert prov["energy_kwh"] == approx(2.94e-4)
    assert (prov["energy_kwh_per_1k_tokens"], prov["energy_kwh_per_1k_tokens_min"],
            prov["energy_kwh_per_1k_tokens_max"]) == approx((7.35e-4, 3.675e-4, 1.47e-3))
    est = _row(lenses, model=LOCAL, lens=LENS_ESTIMATED)
    assert est["source"] == "cpu_time_estimate"
    assert est["energy_kwh_per_1k_tokens"] == approx(4e-6 / 0.08)
    assert len(lenses[lenses["lens"] == LENS_SIMULATED]) == 4


def test_summary_row_per_model_route_profile(df):
    summary = summary_table(df)
    assert len(summary) == 6  # gemini x 2 routes x 2 profiles + local x 1 route x 2 profiles
    row = _row(summary, model=GEMINI, route="Flash-Coder", profile="T4_COLAB")
    assert (row["requests"], row["successes"], row["graded"]) == (3, 2, 0)
    assert row["success_rate"] == approx(2 / 3)
    assert row["slo_attainment"] == approx(1 / 3)
    # r3: (2e-5 + 2e-5) * 1.25 = 5e-5 kWh; r4: (5e-6 + 2e-5) * 1.25 = 3.125e-5 kWh; x 400 g/kWh; 250 tokens
    assert row["energy_kwh"] == approx(8.125e-5)
    assert row["carbon_gco2e_per_1k_tokens"] == approx(8.125e-5 * 400 / 0.25)
    assert row["latency_s_p50"] == approx(2.75)
    assert pd.isna(row["accuracy"])


def test_failures_listed(df):
    fail = failures_table(df)
    assert fail[["model", "status_code", "requests"]].values.tolist() == [[GEMINI, 429.0, 1]]


# ----------------------------------------------------------------------------------------------- text


def test_report_text_sections_and_numbers(df):
    sources = {"T4_COLAB": {"TDP": "T4 datasheet (2019): 70 W", "grid intensity": "codecarbon gcp us-central1"}}
    text = render_report(df, sources=sources)
    for title in ("EFFICIENCY RANKINGS PER 1K TOKENS", "IDLE VS COMPUTE ENERGY", "LATENCY PER ROUTE",
                  "PERCENTILES PER MODEL", "ACCURACY", "GOODPUT (SLO: ttft <= 0.5 s and tpot <= 0.05 s",
                  "ENERGY BY LENS", "FAILURES", "PROFILE ASSUMPTIONS"):
        assert title in text
    assert "requests: 7 (6 successful, 1 failed); rows (request x profile): 14" in text
    assert "lowest carbon per 1K tokens: A100_SIMULATED; lowest total cost per 1K tokens: T4_COLAB" in text
    assert "0.15 [0.075-0.3]" in text  # T4 gCO2e per 1K tokens with its range
    assert "4e-05 (26.7%)" in text and "8e-05 (53.3%)" in text  # T4 compute and idle energy with shares
    assert re.search(r"gemini/gemini-2\.5-flash\s+5\s+4\s+3\s+60\.0%\s+8\.50\s+0\.4706\s+0\.3529", text)
    assert "    TDP: T4 datasheet (2019): 70 W" in text
    assert "A100_SIMULATED: not known to this installation's profiles" in text


def test_report_cites_gpu_profiles_sources_when_profiles_match(df):
    import gpu_profiles as real
    names = list(real.load_profiles())
    sources = profile_sources(names[:1])
    prof = real.load_profiles()[names[0]]
    assert sources[names[0]]["TDP"] == prof.gpu.sources["tdp_w"]
    assert sources[names[0]]["PUE"] == prof.datacenter.sources["pue"]


def test_custom_slo_in_report_title(df):
    text = render_report(df, slo_ttft_s=1.0, slo_tpot_s=0.01, sources={})
    assert "GOODPUT (SLO: ttft <= 1 s and tpot <= 0.01 s" in text


# ----------------------------------------------------------------------------------------------- input


def test_csv_round_trip_keeps_values(tmp_path, df):
    path = tmp_path / "ai_metrics_20261127_120000.csv"
    fixture_frame().to_csv(path, index=False)
    back = read_metrics_csv(path)
    assert back["success"].dtype == bool
    assert back["correct"].dtype == "boolean"
    assert int(back["correct"].sum()) == 2 * 3  # r1, r6, r7 on both profiles
    assert _row(efficiency_table(back), model=GEMINI, profile="T4_COLAB")["carbon_gco2e_per_1k_tokens"] \
        == approx(0.15)


def test_missing_columns_named(tmp_path):
    path = tmp_path / "ai_metrics_x.csv"
    fixture_frame().drop(columns=["ttft_s", "carbon_gco2e"]).to_csv(path, index=False)
    with pytest.raises(ReportInputError) as err:
        read_metrics_csv(path)
    assert str(err.value) == (f"{path}: not a wattbench metrics CSV, missing 2 column(s): ttft_s, carbon_gco2e "
                              "(schema: docs/outputs.md)")


@pytest.mark.parametrize("column, value, message", [
    ("latency_s", "1.5 s", "row 3, column 'latency_s': '1.5 s' is not a number; correct it or leave the cell empty"),
    ("success", "yes", "row 3, column 'success': 'yes' is not True or False"),
])
def test_a_cell_that_would_be_misread_is_named(tmp_path, column, value, message):
    path = tmp_path / "ai_metrics_x.csv"
    frame = fixture_frame()
    frame[column] = frame[column].astype(object)
    frame.loc[2, column] = value
    frame.to_csv(path, index=False)
    with pytest.raises(ReportInputError) as err:
        read_metrics_csv(path)
    assert str(err.value) == f"{path}: {message}"


def test_empty_and_header_only_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ReportInputError, match=r"empty\.csv: file is empty \(no header, no rows\)"):
        read_metrics_csv(empty)
    header = tmp_path / "header.csv"
    header.write_text(",".join(ALL_COLUMNS) + "\n")
    with pytest.raises(ReportInputError, match=r"header\.csv: has a header but no rows; nothing to report"):
        read_metrics_csv(header)


def test_run_dir_resolves_to_newest_csv(tmp_path):
    old, new = tmp_path / "ai_metrics_20260101_000000.csv", tmp_path / "ai_metrics_20260102_000000.csv"
    for i, path in enumerate((old, new)):
        path.write_text("x\n1\n")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    (tmp_path / SUMMARY_CSV).write_text("y\n")
    assert resolve_csv(tmp_path) == new
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ReportInputError, match=r"empty: no ai_metrics_\*\.csv in this directory"):
        resolve_csv(empty_dir)
    with pytest.raises(ReportInputError, match="no such file or directory"):
        resolve_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------------------------- outputs + CLI


def test_build_outputs_writes_everything_once(tmp_path):
    result = build_outputs(fixture_frame(), tmp_path, sources={})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([
        "advanced_hardware_metrics.html", "carbon_energy_analysis.html", "efficiency_comparison.html",
        "frontier_analysis.html",
        "gpu_comparison_dashboard.html", "index.html", "model_performance_analysis.html", "plotly.min.js",
        "report.md", "report.txt", "summary_model_route_profile.csv", "time_series_analysis.html"])
    assert result["report_txt"].read_text() == result["report_text"]
    summary = pd.read_csv(result["summary_csv"])
    assert len(summary) == 6
    for path in result["dashboards"].values():
        page = path.read_text()
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in page
        assert "cdn.plot.ly" not in page
        assert path.stat().st_size < 100_000  # plotly.js (4.8 MB) is not inlined


def test_cli_report_run_dir(tmp_path, capsys):
    csv = tmp_path / "ai_metrics_20261127_120000.csv"
    fixture_frame().to_csv(csv, index=False)
    out = tmp_path / "out"
    assert cli_report([str(tmp_path), "--out", str(out), "--slo-ttft-s", "1", "--slo-tpot-s", "0.05"]) == 0
    stdout = capsys.readouterr().out
    assert "GOODPUT (SLO: ttft <= 1 s and tpot <= 0.05 s" in stdout
    assert f"read {csv}" in stdout
    assert (out / "efficiency_comparison.html").is_file() and (out / "report.txt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/run.csv"], "error: /nonexistent/run.csv: no such file or directory"),
    (["x.csv", "--slo-ttft-s", "-1"], "error: argument --slo-ttft-s: must be > 0, got '-1'"),
    (["x.csv", "--slo-tpot-s", "fast"], "error: argument --slo-tpot-s: expected a number, got 'fast'"),
    ([], "error: the following arguments are required: source"),
])
def test_cli_report_bad_input_is_one_line(argv, message, capsys):
    assert cli_report(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n"
    assert captured.out == ""


def test_cli_report_wrong_schema_through_wattbench(tmp_path):
    bad = tmp_path / "ai_metrics_bad.csv"
    bad.write_text("latency,tokens\n1.0,20\n")
    proc = subprocess.run([sys.executable, "-m", "wattbench", "report", str(bad)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {bad}: not a wattbench metrics CSV, missing 62 column(s): run_id, ")
    assert "Traceback" not in proc.stderr


def test_analysis_modules_do_not_import_litellm():
    code = ("import sys, wattbench.analysis.outputs, wattbench.analysis.cli; "
            "print('litellm' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.strip() == "False", proc.stderr


# ----------------------------------------------------------------------------------------------- schema docs


def _documented_schema() -> str:
    text = (ROOT / "docs" / "outputs.md").read_text()
    return text.split("<!-- section:schema -->", 1)[1].split("<!-- /section:schema -->", 1)[0]


def test_schema_is_the_writers_columns():
    assert list(CSV_SCHEMA) == list(ALL_COLUMNS)


def test_docs_document_every_column():
    section = _documented_schema()
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]*) \|", section, flags=re.M))
    assert list(rows) == list(CSV_SCHEMA)
    assert all(rows[name].strip() == (col.unit or "") for name, col in CSV_SCHEMA.items())
    assert schema_markdown() in section  # lens and meaning too, cell for cell


def test_unanswered_request_takes_its_runs_only_model(df):
    raw = fixture_frame()
    raw.loc[raw["request_id"] == "r5", ["model", "route"]] = None  # run-a has only Gemini
    prepared = prepare(raw)
    assert goodput_table(prepared)[["model", "requests"]].values.tolist() == [[GEMINI, 5], [LOCAL, 2]]
    assert failures_table(prepared)["model"].tolist() == [GEMINI]
    routes = route_latency_table(prepared)
    unknown = _row(routes, model=GEMINI, route="(unknown)")
    assert (unknown["requests"], unknown["successes"]) == (1, 0)


def test_unanswered_request_in_a_run_of_two_models_stays_unknown(df):
    raw = fixture_frame().assign(run_id="one-run")
    raw.loc[raw["request_id"] == "r5", "model"] = None
    gp = goodput_table(prepare(raw))
    assert gp[["model", "requests"]].values.tolist() == [["(unknown)", 1], [GEMINI, 4], [LOCAL, 2]]


def test_markdown_report_has_real_tables(df):
    md = render_report(df, sources={}, markdown=True)
    assert md.startswith("# wattbench report\n\n- runs: run-a, run-b\n")
    assert "## GOODPUT (SLO: ttft <= 0.5 s and tpot <= 0.05 s" in md
    assert "| gemini/gemini-2.5-flash | 5 | 4 | 3 | 60.0% | 8.50 | 0.4706 | 0.3529 |" in md
    assert "| 1 | 2 | A100_SIMULATED | NVIDIA A100 80GB | Stockholm, SE | 4 | 0.001996 |" in md


def test_build_outputs_writes_text_and_markdown(tmp_path):
    result = build_outputs(fixture_frame(), tmp_path, sources={})
    assert result["report_text"].startswith("WATTBENCH REPORT\n================\nruns: run-a, run-b\n")
    assert result["report_md"].read_text().startswith("# wattbench report\n")


def test_prepare_is_idempotent_and_cheap_the_second_time():
    raw = fixture_frame()
    once = prepare(raw)
    assert once is not raw and not is_prepared(raw)  # raw has object text columns and None models
    assert prepare(once) is once
    assert once["t_start_s"].dtype == float and once["success"].dtype == bool


def test_csv_without_text_columns_is_still_rejected(tmp_path):
    path = tmp_path / "ai_metrics_x.csv"
    fixture_frame().drop(columns=["response_text"]).to_csv(path, index=False)
    with pytest.raises(ReportInputError, match="missing 1 column\\(s\\): response_text"):
        read_metrics_csv(path)


# ----------------------------------------------------------------------------------------------- contract


def _record(key: str, model: str, start: float, *, text: str | None, params_b: float | None,
            completion: int = 40, grader: str | None = "contains", expected: str | None = "Paris") -> dict:
    """A run-file record as batch.RunStore keeps it."""
    response = None if text is None else {
        "request_id": f"svc-{key}", "model": model, "route": "Precise", "route_reason": "test",
        "temperature": 0.1, "text": text, "prompt_tokens": 10, "completion_tokens": completion,
        "total_tokens": 10 + completion, "token_source": "provider", "ttft_s": 0.25, "latency_s": 1.25,
        "tpot_s": 1.0 / (completion - 1), "tokens_per_s": completion / 1.25, "cost_usd": 0.0001,
        "created_at": "2026-11-27T12:00:00Z", "finish_reason": "stop", "measured_energy_kwh": None,
        "measured_energy_method": None, "model_params_b": params_b}
    return {"key": key, "prompt_id": key.split("-r")[0], "repeat": 0, "prompt": "What is the capital of France?",
            "category": "factual", "expected": expected, "grader": grader, "tolerance": 0.0, "session": "s",
            "success": text is not None, "error": None if text else "HTTP 500: boom",
            "status_code": 200 if text else 500, "attempts": 1, "rate_limited": 0, "retry_wait_s": 0.0,
            "started_at": "2026-11-27T12:00:00.000+00:00", "t_start_epoch_s": start, "t_end_epoch_s": start + 1.25,
            "client_latency_s": 1.26 if text else None, "response": response}


def test_csv_written_by_batch_with_real_profiles_is_reported(tmp_path):
    """The real writers (analysis.enrich.build_dataframe + gpu_profiles) -> CSV -> report: the contract holds."""
    import gpu_profiles

    from wattbench.analysis import enrich, outputs
    profiles = {k: v for k, v in gpu_profiles.load_profiles().items() if k in ("T4_COLAB", "A100_SIMULATED")}
    records = [
        _record("capital-r0", "gemini/gemini-2.5-flash", 100.0, text="Paris.", params_b=None),
        _record("capital2-r0", "local/smollm2", 102.0, text="It is Lyon.", params_b=0.135),
        _record("poem-r0", "gemini/gemini-2.5-flash", 104.0, text=None, params_b=None),
    ]
    frame = enrich.build_dataframe(records, profiles, run_id="run-x")
    csv = outputs.write_csv(frame, tmp_path)
    df = read_metrics_csv(csv)
    assert len(df) == 6 and df["success"].tolist() == [True, True, True, True, False, False]
    assert df["correct"].tolist()[:4] == [True, True, False, False]
    eff = efficiency_table(df)
    assert sorted(eff["profile"]) == ["A100_SIMULATED", "A100_SIMULATED", "T4_COLAB", "T4_COLAB"]
    t4 = _row(eff, model="gemini/gemini-2.5-flash", profile="T4_COLAB")
    row = frame[(frame["request_id"] == "capital-r0") & (frame["profile"] == "T4_COLAB")].iloc[0]
    assert t4["carbon_gco2e_per_1k_tokens"] == approx(row["carbon_gco2e"] / 0.05)  # 50 tokens
    assert t4["total_cost_usd_per_1k_tokens"] == approx(row["total_cost_usd"] / 0.05)
    gp = goodput_table(df)  # the failed request has no answer, so no model: it is counted as (unknown)
    assert gp[["model", "requests", "meeting_slo"]].values.tolist() == [
        ["(unknown)", 1, 0], ["gemini/gemini-2.5-flash", 1, 1], ["local/smollm2", 1, 1]]  # ttft .25, tpot 1/39
    result = build_outputs(csv, tmp_path / "out")
    text = result["report_text"]
    assert "requests: 3 (2 successful, 1 failed)" in text
    tdp_source = profiles["T4_COLAB"].gpu.sources["tdp_w"]
    assert f"    TDP: {tdp_source}" in text


def test_multiline_error_stays_on_one_table_row():
    raw = fixture_frame()
    raw.loc[raw["request_id"] == "r5", "error"] = "HTTP 502:\nupstream said\n" + "x" * 300
    text = render_report(raw, sources={})
    failures = text.split("FAILURES\n========\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(failures) == 3  # header, rule, one row
    assert failures[2].endswith("HTTP 502: upstream said " + "x" * 133 + "...")


def test_rows_a_profile_could_not_simulate_are_left_out_and_named():
    raw = fixture_frame()
    gone = (raw["request_id"] == "r3") & (raw["profile"] == "T4_COLAB")
    energy_cols = [c for c in raw.columns if "energy_kwh" in c and not c.startswith(("provider", "measured"))]
    raw.loc[gone, energy_cols + ["carbon_gco2e", "carbon_gco2e_min", "carbon_gco2e_max", "energy_cost_usd",
                                 "total_cost_usd", "sim_latency_s"]] = float("nan")
    raw.loc[gone, "energy_method"] = "not simulated: too big for T4"
    df = prepare(raw)
    t4 = _row(efficiency_table(df), model=GEMINI, profile="T4_COLAB")
    # r1, r2, r4: (5e-6 + 2e-5) * 1.25 + (1e-5 + 2e-5) * 1.25 + (5e-6 + 2e-5) * 1.25 = 1e-4 kWh; 200 tokens
    assert t4["requests"] == 3
    assert t4["carbon_gco2e_per_1k_tokens"] == approx(1e-4 * 400 / 0.2)
    row = _row(summary_table(df), model=GEMINI, route="Flash-Coder", profile="T4_COLAB")
    assert row["carbon_gco2e_per_1k_tokens"] == approx(3.125e-5 * 400 / 0.05)  # r4 alone
    assert _row(profile_table(df), profile="T4_COLAB")["energy_method"] == "roofline"
    text = render_report(df, sources={})
    assert "served but not simulated on a profile (left out of its energy figures):" in text
    assert re.search(r"T4_COLAB\s+1\s+not simulated: too big for T4", text)
