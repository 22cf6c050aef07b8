"""`wattbench sweep` end to end against the mock OpenAI-compatible server on 127.0.0.1: points, the frontier,
the recommendation, early stop, auto mode, a clean stop and --resume; the simulated lens at the achieved batch;
a two-model comparison rendered in headless Chromium."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from wattbench.analysis.frontier import frontier_table, pareto_mask, recommend, recommendation_lines
from wattbench.analysis.reading import read_metrics_csv
from wattbench.cli import main
from wattbench.energy.hardware import load_profiles
from wattbench.energy.lenses.simulated import calculate_enhanced_metrics
from wattbench.analysis.outputs import write_csv
from wattbench.runs.sweep import Sweep, auto_rates, parse_sweep
from wattbench.runs.sweep_outputs import combined_frame

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai_server import MockOpenAIServer  # noqa: E402

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
COMMON = ["--synthetic", "--input-tokens", "64", "--output-tokens", "16", "--profiles", "A100_SIMULATED,T4_COLAB",
          "--gpu-energy", "off", "--warmup", "0", "--no-progress"]


@pytest.fixture(scope="module")
def server():
    # requests of ~50 ms: long beside the client's own per-request work on a loaded machine, so 4 in flight overlap
    with MockOpenAIServer(ttft_s=0.02, itl_s=0.002, tokens=16, owned_by="vllm") as s:
        yield s


def _combined(out: Path) -> pd.DataFrame:
    return read_metrics_csv(sorted(out.glob("ai_metrics_*.csv"))[-1])


def test_batch_override_lowers_energy_per_request() -> None:
    profile = load_profiles()["A100_SIMULATED"]
    measured = {"latency_s": 1.0, "prompt_tokens": 64, "completion_tokens": 16, "model_params_b": 8.0}
    one = calculate_enhanced_metrics(measured, profile)
    sixteen = calculate_enhanced_metrics(measured, profile, batch_size=16)
    assert one["sim_batch_size"] == 1 and sixteen["sim_batch_size"] == 16
    assert sixteen["compute_energy_kwh"] < one["compute_energy_kwh"] / 4  # weights read once per step, shared
    tdp = calculate_enhanced_metrics({"latency_s": 2.0}, profile, batch_size=4)  # latency x TDP: shared by 4
    assert tdp["compute_energy_kwh"] == pytest.approx(profile.gpu.tdp_w * 2.0 / 4 / 3.6e6)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, not 0"):
        calculate_enhanced_metrics(measured, profile, batch_size=0)


def test_pareto_and_recommendation_by_hand() -> None:
    x = pd.Series([0.1, 0.2, 0.3, 0.15])
    y = pd.Series([5.0, 3.0, 4.0, 6.0])
    assert list(pareto_mask(x, y)) == [True, True, False, False]
    table = pd.DataFrame({"meets_slo": [True, True, False], "cost_usd_per_1k_tokens": [2.0, 1.0, 0.5],
                          "carbon_gco2e_per_1k_tokens": [1.0, 3.0, 0.1], "ttft_p90_s": [0.1, 0.2, 0.9]})
    picks = recommend(table)
    assert picks["cheapest"]["cost_usd_per_1k_tokens"] == 1.0  # the 0.5 one misses the SLOs
    assert picks["greenest"]["carbon_gco2e_per_1k_tokens"] == 1.0


def test_auto_rates_are_evenly_between() -> None:
    assert auto_rates(2.0, 10.0, 3) == [4.0, 6.0, 8.0]
    assert auto_rates(5.0, 5.0, 3) == []


def test_sweep_two_models_interleaved_end_to_end(server, tmp_path: Path, capsys) -> None:
    code = main(["sweep", "--base-url", server.url, "--models", f"{LLAMA},{QWEN}", "--interleave",
                 "--concurrency", "1,4", "--requests-per-point", "8", "--out", str(tmp_path), *COMMON])
    printed = capsys.readouterr().out
    assert code == 0
    state = json.loads((tmp_path / "sweep.json").read_text())
    assert [(p["model"], p["label"], p["status"]) for p in state["points"]] == [
        (LLAMA, "c1", "done"), (QWEN, "c1", "done"), (LLAMA, "c4", "done"), (QWEN, "c4", "done")]
    df = _combined(tmp_path)
    assert len(df) == 4 * 8 * 2 and df["success"].all()
    assert set(df["energy_method"]) == {"roofline"}
    a100 = df[df["profile"] == "A100_SIMULATED"]
    batch = a100.groupby("requested_concurrency")["sim_batch_size"].unique()
    assert list(batch.loc[1.0]) == [1] and batch.loc[4.0].min() >= 2  # the batch each point achieved
    table = frontier_table(df, 0.5, 0.05)
    assert len(table) == 2 * 2 * 2  # models x profiles x loads
    llama = table[(table["model"] == LLAMA) & (table["profile"] == "A100_SIMULATED")].set_index("load")
    assert llama.loc["c4", "energy_kwh_per_1k_tokens"] < llama.loc["c1", "energy_kwh_per_1k_tokens"]
    assert (tmp_path / "frontier_analysis.html").is_file()
    report = (tmp_path / "report.txt").read_text()
    assert "FRONTIER: COST, ENERGY AND CARBON PER 1K TOKENS" in report
    pick = recommend(table)["cheapest"]
    assert f"CHEAPEST meeting the SLOs: {pick['model']} on {pick['profile']} at {pick['load']}" in report
    assert "GREENEST meeting the SLOs: " in printed
    workloads = list((tmp_path / "workloads").glob("workload-*.jsonl"))
    assert len(workloads) == 1  # built once for every point
    # the combined CSV is built from the frames the sweep held, not read back: the same bytes as from the CSVs
    again = write_csv(combined_frame([p["csv"] for p in state["points"]]), tmp_path / "again")
    assert again.read_bytes() == sorted(tmp_path.glob("ai_metrics_*.csv"))[-1].read_bytes()


def test_a_point_failing_its_slos_badly_skips_higher_loads(server, tmp_path: Path, capsys) -> None:
    code = main(["sweep", "--base-url", server.url, "--model", LLAMA, "--concurrency", "1,2,4",
                 "--requests-per-point", "4", "--slo-ttft-s", "0.0001", "--stop-slo-factor", "2",
                 "--out", str(tmp_path), *COMMON])
    assert code == 1
    state = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["status"] for p in state["points"]] == ["done", "skipped", "skipped"]
    assert "stopped after c1: p90 TTFT" in capsys.readouterr().out
    assert "No configuration meets the SLOs" in (tmp_path / "report.txt").read_text()


def test_auto_mode_probes_then_fills_rates(server, tmp_path: Path) -> None:
    code = main(["sweep", "--base-url", server.url, "--model", LLAMA, "--auto", "--points", "2",
                 "--max-concurrency", "4", "--requests-per-point", "6", "--out", str(tmp_path), *COMMON])
    assert code == 0
    points = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert [p["kind"] for p in points] == ["sync", "throughput", "point", "point"]
    sync, top = points[0]["result"]["throughput_rps"], points[1]["result"]["throughput_rps"]
    assert [p["rate_rps"] for p in points[2:]] == auto_rates(sync, top, 2)


class _InterruptAfter(Sweep):
    """A sweep whose Ctrl-C arrives after `n` stop checks of the sender (the real clean-stop path)."""

    n = 3
    _asked = 0

    @property
    def interrupted(self):  # type: ignore[override]
        self._asked += 1
        return "interrupted (Ctrl-C) in a test" if self._asked > self.n else None

    @interrupted.setter
    def interrupted(self, value) -> None:
        pass


def test_a_clean_stop_then_resume_sends_each_request_once(server, tmp_path: Path) -> None:
    argv = ["--base-url", server.url, "--model", LLAMA, "--concurrency", "1,2", "--requests-per-point", "6",
            "--out", str(tmp_path), *COMMON]
    options, base = parse_sweep(argv)
    sweep = _InterruptAfter(options, base)
    sweep.load_or_plan()
    notes = sweep.run(None)
    assert notes and notes[0].startswith("sweep interrupted at c1")
    assert [p.status for p in sweep.points] == ["stopped", "pending"]
    before = len(server.delays.bodies)
    run_file = next((tmp_path / "points").glob("*__c1/runs/*/requests.jsonl"))
    recorded = len(run_file.read_text().splitlines())
    assert 1 <= recorded < 6
    code = main(["sweep", "--resume", *argv])
    assert code == 0
    points = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert [p["status"] for p in points] == ["done", "done"]
    df = _combined(tmp_path)
    per_point = df[df["profile"] == "A100_SIMULATED"].groupby("run_id")["request_id"]
    assert sorted(per_point.nunique()) == [6, 6] and all(per_point.count() == 6)
    assert len(server.delays.bodies) - before == 12 - recorded  # what the first point recorded: not sent again


def test_sweep_input_errors_are_one_line(tmp_path: Path, capsys) -> None:
    code = main(["sweep", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == ("error: give the loads: --concurrency 1,8,32, --rate 1,2,4 or --auto "
                                       "(or --trace FILE)\n")
    code = main(["sweep", "--concurrency", "1,x", "--out", str(tmp_path)])
    assert capsys.readouterr().err.startswith("error: --concurrency takes a comma-separated list") and code == 2
    code = main(["sweep", "--resume", "--out", str(tmp_path)])
    assert code == 2 and "nothing to resume: no sweep.json" in capsys.readouterr().err


def test_a_point_with_measured_gpu_energy_shows_it_beside_the_simulated_figure() -> None:
    from fixtures_frame import fixture_frame

    df = fixture_frame()
    assert "measured on" not in " ".join(recommendation_lines(frontier_table(df, 10, 10), 10, 10))
    served = df["success"].astype(bool)
    df.loc[served, "gpu_energy_kwh"] = 0.001  # each request's share, request-level (the same on every profile row)
    df.loc[served, "gpu_energy_devices"] = "1 x NVIDIA H200 (dcgm)"
    table = frontier_table(df, 10, 10)
    lines = recommendation_lines(table, 10, 10)
    # run-b: r6 (30 tokens) and r7 (50 tokens), 0.001 kWh each: 0.002 kWh / 80 tokens = 0.025 kWh per 1K tokens
    assert lines[1].startswith("CHEAPEST meeting the SLOs: local/smollm2-135m on T4_COLAB at run-b")
    assert lines[1].endswith("; measured on 1 x NVIDIA H200 (dcgm): 0.025 kWh per 1K tokens")
    assert "0.00075 kWh" in lines[1]  # the simulated figure stays
    assert table["measured_energy_kwh_per_1k_tokens"].tolist()[2:] == pytest.approx([0.025, 0.025])
    from wattbench.analysis.frontier import make_frontier

    hover = make_frontier(df, 10, 10).data[0].text[0]
    assert hover.endswith("<br>measured on 1 x NVIDIA H200 (dcgm): 0.01 kWh per 1K tokens")  # run-a: 4 x 0.001 kWh / 400 tokens
