"""Server-side truth (issue 19): engine metrics and dcgm-exporter energy, parsed, sampled beside a run and turned
into per-request figures. Pure functions against real exposition samples (tests/data/metrics/) and hand-computed
values; then `wattbench run` against a scripted engine on 127.0.0.1 (tests/batching_server.py: a batch cap, a FIFO
queue, vLLM-style /metrics, a dcgm-style endpoint whose energy follows its own load)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from batching_server import BatchingServer

from wattbench.analysis.enrich import build_dataframe
from wattbench.energy.hardware import load_profiles
from wattbench.runs.run import cli_run
from wattbench.telemetry.attribution import dcgm_shares, gpu_cumulative_j, server_load, time_weighted_mean
from wattbench.telemetry.engines import dcgm_readings, engine_view
from wattbench.telemetry.prometheus import ExpositionError, ScrapeError, metrics_url_for, parse_exposition
from wattbench.telemetry.sampler import GPU_FILE, SERVER_FILE, MetricsSampler, read_samples
from wattbench.telemetry.session import DCGM_ENERGY_FILE, with_server_metrics

DATA = Path(__file__).parent / "data" / "metrics"


def view_of(name: str):
    return engine_view(parse_exposition((DATA / name).read_text(encoding="utf-8")))


# ---- engines by their own names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, engine, values", [
    ("vllm_v1.txt", "vllm", {"running": 21.0, "waiting": 3.0, "kv_usage": 0.375, "prompt_tokens_total": 500000.0,
                             "generation_tokens_total": 50000.0, "prefix_cache_queries_total": 300.0,
                             "prefix_cache_hits_total": 150.0, "preemptions_total": 3.0}),
    ("vllm_v0.txt", "vllm", {"running": 3.0, "waiting": 5.0, "kv_usage": 0.42, "prompt_tokens_total": 12000.0,
                             "generation_tokens_total": 8000.0}),
    ("sglang.txt", "sglang", {"running": 6.0, "waiting": 1.0, "kv_usage": 0.275, "prompt_tokens_total": 8128902.0,
                              "generation_tokens_total": 1000.0, "prefix_cache_hit_rate": 0.0075}),
    ("tgi.txt", "tgi", {"running": 4.0, "waiting": 2.0, "prompt_tokens_total": 3300.0,
                        "generation_tokens_total": 8123.0}),
    ("llamacpp.txt", "llamacpp", {"running": 1.0, "waiting": 2.0, "kv_usage": 0.491063,
                                  "prompt_tokens_total": 8404.0, "generation_tokens_total": 3469.0}),
])
def test_each_engine_is_read_by_its_own_names(name: str, engine: str, values: dict[str, float]) -> None:
    view = view_of(name)
    assert view.engine == engine
    assert view.values == pytest.approx(values)  # summed over engines / ranks; KV usage averaged
    assert view.rejected == []


def test_other_series_are_kept_raw_without_histogram_buckets() -> None:
    view = view_of("vllm_v0.txt")
    assert view.raw['vllm:num_requests_swapped{model_name="Qwen/Qwen2.5-Coder-1.5B-Instruct"}'] == 0.0
    assert not any("_bucket" in key for key in view.raw)


def test_dcgm_exporter_gpus_by_host_uuid_and_index() -> None:
    readings, rejected = dcgm_readings(parse_exposition((DATA / "dcgm_exporter.txt").read_text()))
    assert rejected == []
    assert [(r.gpu_id, r.model, r.energy_mj, r.power_w) for r in readings] == [
        ("gpu1-wl8sg/GPU-5b4e07f6-3a86-4340-039d-25f2a83cdc43/0", "NVIDIA L40S", 5551899580.0, 35.686),
        ("gpu1-wl8sg/GPU-5b4e07f6-3a86-4340-039d-25f2a83cdc44/1", "NVIDIA L40S", 1000000.0, 300.5)]


def test_what_is_not_prometheus_text_is_refused_in_one_line() -> None:
    with pytest.raises(ExpositionError, match="^not Prometheus text"):
        parse_exposition("<html><body>Welcome</body></html>")


def test_lies_are_dropped_and_named() -> None:
    view = engine_view(parse_exposition("vllm:num_requests_running NaN\nvllm:num_requests_waiting -3\n"
                                        "vllm:kv_cache_usage_perc 0.5\n"))
    assert view.values == {"kv_usage": 0.5}
    assert view.rejected == ["vllm:num_requests_running = nan", "vllm:num_requests_waiting = -3.0"]


def test_metrics_url_is_the_origin_plus_metrics() -> None:
    assert metrics_url_for("http://gpu-node:8000/v1") == "http://gpu-node:8000/metrics"
    assert metrics_url_for("https://h.example/openai/v1/") == "https://h.example/metrics"


# ---- per request: step-interpolated gauges ----------------------------------------------------------------------

def test_time_weighted_mean_holds_each_sample_until_the_next() -> None:
    steps = [(0.0, 0.0), (1.0, 16.0), (2.0, 16.0), (3.0, 4.0)]
    assert time_weighted_mean(steps, 0.5, 2.5, stale_s=3.0) == pytest.approx((0.5 * 0 + 1.5 * 16) / 2)
    assert time_weighted_mean(steps, 2.5, 3.5, stale_s=3.0) == pytest.approx((0.5 * 16 + 0.5 * 4) / 1)
    assert time_weighted_mean(steps, 1.5, 1.5, stale_s=3.0) == 16.0
    # known only up to stale_s after the last sample; before the first, nothing
    assert time_weighted_mean(steps, 3.5, 10.0, stale_s=1.0) == 4.0
    assert time_weighted_mean(steps, 4.5, 10.0, stale_s=1.0) is None
    assert time_weighted_mean(steps, -2.0, -1.0, stale_s=1.0) is None


def test_server_load_per_served_request() -> None:
    samples = [{"t_epoch_s": 100.0, "running": 2.0, "waiting": 6.0}, {"t_epoch_s": 101.0, "running": 4.0,
                                                                     "waiting": 0.0}]
    records = [{"key": "a", "success": True, "t_start_epoch_s": 100.0, "t_end_epoch_s": 102.0},
               {"key": "b", "success": False, "t_start_epoch_s": 100.0, "t_end_epoch_s": 101.0}]
    assert server_load(samples, records, stale_s=1.0) == {"a": {"server_batch": 3.0, "server_queue": 3.0}}


# ---- dcgm energy: counters, resets, power, several GPUs -----------------------------------------------------

def _gpu_line(t: float, *gpus: dict) -> dict:
    return {"t_epoch_s": t, "gpus": list(gpus)}


def test_dcgm_counter_deltas_restart_after_a_reset_and_power_is_integrated_where_no_counter() -> None:
    a = "node1/GPU-a/0"
    b = "node2/GPU-b/0"
    lines = [
        _gpu_line(0.0, {"id": a, "model": "NVIDIA H200", "energy_mj": 1000.0}, {"id": b, "power_w": 100.0}),
        _gpu_line(1.0, {"id": a, "model": "NVIDIA H200", "energy_mj": 3000.0}, {"id": b, "power_w": 200.0}),
        _gpu_line(2.0, {"id": a, "model": "NVIDIA H200", "energy_mj": 500.0}, {"id": b, "power_w": 200.0}),
        _gpu_line(3.0, {"id": a, "model": "NVIDIA H200", "energy_mj": 1500.0}, {"id": b, "power_w": 0.0}),
    ]
    series, method, devices = gpu_cumulative_j(lines)
    # a: +2 J, then a reset (500 mJ since it), then +1 J; b: trapezoids 150, 200, 100 J
    assert series == [(0.0, 0.0), (1.0, 2.0 + 150.0), (2.0, 2.5 + 350.0), (3.0, 3.5 + 450.0)]
    assert method == "dcgm_power_sampling+dcgm_total_energy"
    assert devices == ["node1/GPU-a/0 (NVIDIA H200)", "node2/GPU-b/0"]


def test_dcgm_shares_plus_idle_are_the_counters_delta() -> None:
    lines = [_gpu_line(t, {"id": "h/GPU-0/0", "model": "NVIDIA H200", "energy_mj": 1000.0 * 300 * t})
             for t in (0.0, 1.0, 2.0, 3.0, 4.0)]  # 300 W
    records = [{"key": "a", "success": True, "t_start_epoch_s": 0.5, "t_end_epoch_s": 2.5},
               {"key": "b", "success": True, "t_start_epoch_s": 1.5, "t_end_epoch_s": 3.0}]
    shares, summary = dcgm_shares(lines, records, "equal share")
    # a alone 0.5-1.5 (300 J), both 1.5-2.5 (150 J each), b alone 2.5-3 (150 J); idle 0-0.5 and 3-4 (450 J)
    assert [s["gpu_energy_j"] for s in shares] == pytest.approx([450.0, 300.0])
    assert summary["idle_j"] == pytest.approx(450.0)
    assert summary["total_j"] == pytest.approx(1200.0)
    assert shares[0]["gpu_energy_method"] == "dcgm: dcgm_total_energy: equal share"
    assert shares[0]["gpu_energy_devices"] == "1 x NVIDIA H200 (dcgm)"


# ---- the sampler with a scripted fetch: hostile endpoints cost one warning each -----------------------------

class ScriptedFetch:
    """fetch(url, timeout) answering each scrape from a list (an exception is raised)."""

    def __init__(self, answers: list) -> None:
        self.answers = answers
        self.calls = 0

    def __call__(self, url: str, timeout_s: float) -> str:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_sampler_warns_once_per_kind_of_trouble_and_keeps_what_is_good(tmp_path: Path) -> None:
    good = "vllm:num_requests_running 4\nvllm:num_requests_waiting 1\nvllm:generation_tokens_total 100\n"
    fetch = ScriptedFetch([good, "vllm:num_requests_running NaN\nvllm:generation_tokens_total 50\n",
                           ScrapeError("http://h/metrics: ReadTimeout"), ScrapeError("http://h/metrics: HTTP 404"),
                           "<html>gone</html>", good])
    said: list[str] = []
    clock = iter(float(t) for t in range(100, 200))
    sampler = MetricsSampler(tmp_path, server_url="http://h/metrics", interval_s=1.0, session="s1", fetch_text=fetch,
                             clock=lambda: next(clock), say=said.append)
    for _ in range(7):
        sampler.sample()
    assert said == [
        "warning: metrics at http://h/metrics: dropped an impossible value (vllm:num_requests_running = nan)",
        "warning: metrics at http://h/metrics: counter generation_tokens_total went down (100 -> 50): counted as "
        "a reset, starting over from 0",
        "warning: metrics at http://h/metrics: http://h/metrics: ReadTimeout; samples from it are missing, the run "
        "goes on",
        "warning: metrics at http://h/metrics: not Prometheus text (invalid metric name:<html>gone</html>); samples "
        "from it are missing, the run goes on",
    ]
    lines = read_samples(tmp_path, SERVER_FILE)
    assert [(line["t_epoch_s"], line.get("running")) for line in lines] == [
        (100.0, 4.0), (101.0, None), (102.0, 4.0), (103.0, 4.0)]
    assert [line["session"] for line in lines] == ["s1"] * 4


# ---- `wattbench run` against a server that batches 16 and queues the rest -----------------------------------

def _run(server: BatchingServer, out: Path, *extra: str, prompts: int = 128, concurrency: int = 64) -> int:
    return cli_run(["--base-url", server.url, "--model", "batching", "--synthetic", "--input-tokens", "12",
                    "--output-tokens", "8", "--num-prompts", str(prompts), "--concurrency", str(concurrency),
                    "--out", str(out), "--no-progress", "--gpu-energy", "off", "--server-metrics-interval", "0.05",
                    "--profiles", "H200_E2E", "--profiles-file", str(Path(__file__).parents[1] / "benchmarks" /
                                                                    "gpu" / "h200_profile.json"), *extra])


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(sorted(out.glob("ai_metrics_*.csv"))[-1])


def _run_dir(out: Path) -> Path:
    return next((out / "runs").iterdir())


@pytest.mark.slow  # real clock: 50 ms samples of a server that fills up; bounds on it belong to the slow lane
def test_overloaded_server_reports_its_cap_and_dcgm_shares_add_up(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with BatchingServer(cap=16, ttft_s=0.05, itl_s=0.03, tokens=8, idle_w=100.0, running_w=20.0) as server:
        e0 = server.energy_j()
        code = _run(server, out, "--gpu-metrics", server.dcgm_url)
        e1 = server.energy_j()
        busy_s = server.busy_s
    printed = capsys.readouterr().out
    assert code == 0
    df = _csv(out)
    assert len(df) == 128
    # the server never ran more than its cap; every request spent >= 0.26 s (8 tokens) in flight, and a stale
    # sample (50 ms apart, at most ~0.15 s on a loaded machine) can hide the cap for at most that part of it
    assert df["server_batch"].max() == 16.0
    # (the first wave is sent while the server fills up from 0: its requests saw the ramp, not the cap)
    after_first_wave = df.sort_values("t_start_s").iloc[16:]
    assert after_first_wave["server_batch"].min() >= 16 * (1 - 0.15 / 0.26)
    assert df["server_batch"].mean() >= 14.0
    assert df["sim_batch_size"].mode().iloc[0] == 16  # the simulated lens runs at the server's batch ...
    assert set(df["sim_batch_source"]) == {"server"}
    assert df["server_queue"].max() >= 30.0  # ... not at the client's 64, which only queue
    assert "warning: run " in printed and "but the server ran at most 16 at once" in printed
    # dcgm: the requests' shares + idle are the counters' delta over the sampled window
    lines = read_samples(_run_dir(out), GPU_FILE)
    counter_j = sum(g["energy_mj"] for g in lines[-1]["gpus"]) / 1000 - sum(
        g["energy_mj"] for g in lines[0]["gpus"]) / 1000
    summary = [json.loads(t) for t in (_run_dir(out) / DCGM_ENERGY_FILE).read_text().splitlines()][-1]
    shares_j = df["gpu_energy_kwh"].sum() * 3.6e6
    assert shares_j + summary["session_summary"]["idle_j"] == pytest.approx(counter_j, rel=0.01)
    # and that delta is the server's own energy over the window: idle_w x window + running_w x busy time (the
    # requests' running time; all of it inside the window, which opens before the first and closes after the last)
    window_s = lines[-1]["t_epoch_s"] - lines[0]["t_epoch_s"]
    assert counter_j == pytest.approx(100.0 * window_s + 20.0 * busy_s, rel=0.03)
    assert counter_j <= e1 - e0
    assert set(df["gpu_energy_method"]) == {"dcgm: dcgm_total_energy: equal share of the GPUs' energy among the "
                                            "requests in flight"}
    assert set(df["gpu_energy_devices"]) == {"2 x NVIDIA H200 (dcgm)"}
    report = (out / "report.txt").read_text()
    assert "SERVER VIEW" in report and "2 x NVIDIA H200 (dcgm)" in report
    assert (out / "server_timeseries.html").is_file()


def test_resume_keeps_the_samples_and_appends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with BatchingServer(cap=4, ttft_s=0.02, itl_s=0.02, tokens=4) as server:
        assert _run(server, out, "--gpu-metrics", server.dcgm_url, "--max-duration", "0.3", prompts=40,
                    concurrency=4) == 0
        first = (_run_dir(out) / SERVER_FILE).read_text()
        first_dcgm = (_run_dir(out) / DCGM_ENERGY_FILE).read_text()
        assert _run(server, out, "--gpu-metrics", server.dcgm_url, "--resume", prompts=40, concurrency=4) == 0
    run_dir = _run_dir(out)
    assert (run_dir / SERVER_FILE).read_text().startswith(first)
    assert (run_dir / DCGM_ENERGY_FILE).read_text().startswith(first_dcgm)
    sessions = {line["session"] for line in read_samples(run_dir, SERVER_FILE)}
    assert len(sessions) == 2
    df = _csv(out)
    assert len(df) == 40 and df["server_batch"].notna().all() and df["gpu_energy_kwh"].notna().all()


def test_a_server_without_metrics_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with BatchingServer(cap=4, metrics_mode="missing") as server:
        assert _run(server, out, prompts=8, concurrency=2) == 0
    printed = capsys.readouterr().out
    assert f"no server metrics at http://127.0.0.1:{server.port}/metrics (http://127.0.0.1:{server.port}/metrics: " \
           "HTTP 404): server_batch / server_queue stay empty" in printed
    df = _csv(out)
    assert df["server_batch"].isna().all() and df["server_queue"].isna().all()
    # an unknown model: the latency x TDP accounting, which charges each request the whole GPU without a batch
    assert set(df["sim_batch_source"]) == {"profile"} and set(df["sim_batch_size"]) == {1}
    assert "SERVER VIEW" not in (out / "report.txt").read_text()
    assert not (out / "server_timeseries.html").exists()
    run_dir = _run_dir(out)
    assert not (run_dir / SERVER_FILE).exists() and not (run_dir / DCGM_ENERGY_FILE).exists()
    # the same records built with and without the (absent) server files: the same frame
    records = [json.loads(t) for t in (run_dir / "requests.jsonl").read_text().splitlines()]
    profiles = load_profiles(Path(__file__).parents[1] / "benchmarks" / "gpu" / "h200_profile.json")
    profiles = {"H200_E2E": profiles["H200_E2E"]}
    plain = build_dataframe(records, profiles, run_id="r")
    merged = build_dataframe(with_server_metrics(run_dir, records), profiles, run_id="r")
    pd.testing.assert_frame_equal(plain, merged)


@pytest.mark.parametrize("mode, warning", [
    ("lie", "dropped an impossible value (vllm:num_requests_running = nan)"),
    ("vanish", "HTTP 404; samples from it are missing, the run goes on"),
    ("hang", "ReadTimeout"),
])
def test_hostile_metrics_endpoints_cost_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str,
                                                    warning: str) -> None:
    out = tmp_path / "out"
    with BatchingServer(cap=4, metrics_mode=mode, vanish_after=2) as server:
        assert _run(server, out, prompts=16, concurrency=4) == 0
    printed = capsys.readouterr().out
    warnings = [line for line in printed.splitlines() if line.startswith("warning: metrics at")]
    assert any(warning in line for line in warnings), warnings
    assert len(warnings) == len(set(warnings))  # each once
    df = _csv(out)
    assert df["success"].all() and len(df) == 16


def test_explicit_endpoints_that_do_not_answer_are_one_error_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with BatchingServer(cap=4, metrics_mode="missing") as server:
        code = _run(server, tmp_path / "a", "--gpu-metrics", server.metrics_url, prompts=2)
        err = capsys.readouterr().err
        assert code == 2
        assert err == (f"error: --gpu-metrics http://127.0.0.1:{server.port}/metrics does not answer Prometheus "
                       f"metrics (http://127.0.0.1:{server.port}/metrics: HTTP 404); give a dcgm-exporter URL, e.g. "
                       "http://gpu-node:9400/metrics\n")
        code = _run(server, tmp_path / "b", "--server-metrics", server.url + "/nothing", prompts=2)
        assert code == 2
        assert capsys.readouterr().err.startswith(f"error: --server-metrics {server.url}/nothing does not answer")


@pytest.mark.parametrize("argv, message", [
    (["--energy-batch", "server", "--server-metrics", "off"],
     "error: --energy-batch server needs the server's metrics: drop --server-metrics off\n"),
    (["--server-metrics", "gpu-node:8000"],
     "error: --server-metrics must be auto, off or a URL (http://host:8000/metrics), not 'gpu-node:8000'\n"),
    (["--gpu-metrics", "http://a:9400/metrics,node-b"],
     "error: --gpu-metrics takes comma-separated URLs (http://gpu-node:9400/metrics), not 'node-b'\n"),
])
def test_bad_options_are_one_error_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_run(["--base-url", "http://127.0.0.1:9/v1", "--model", "m", *argv]) == 2
    assert capsys.readouterr().err == message


def test_sweep_runs_each_point_at_the_server_batch_and_calibrates_from_one_point(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wattbench.runs.sweep import cli_sweep

    out = tmp_path / "sweep"
    profiles_file = str(Path(__file__).parents[1] / "benchmarks" / "gpu" / "h200_profile.json")
    with BatchingServer(cap=2, ttft_s=0.05, itl_s=0.05, tokens=6) as server:
        code = cli_sweep(["--base-url", server.url, "--model", "batching", "--concurrency", "1,8",
                          "--requests-per-point", "8", "--synthetic", "--input-tokens", "12", "--output-tokens", "6",
                          "--out", str(out), "--no-progress", "--gpu-energy", "off", "--stop-slo-factor", "0",
                          "--server-metrics-interval", "0.05", "--gpu-metrics", server.dcgm_url,
                          "--profiles", "H200_E2E", "--profiles-file", profiles_file, "--calibrate-from-measured"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    df = _csv(out)
    assert set(df["sim_batch_source"]) == {"server"}
    by_point = df.groupby("requested_concurrency")["server_batch"].max()
    # one at a time; then the cap (2: sampled, within one stale sample of it), the rest queued
    assert by_point[1] == 1.0 and 1.75 <= by_point[8] <= 2.0
    assert df[df["requested_concurrency"] == 8]["sim_batch_size"].mode().iloc[0] == 2
    # one factor for every point, from the first point (c1): there the calibrated simulation is the measurement
    assert df["calibration_factor"].nunique() == 1
    c1 = df[df["requested_concurrency"] == 1]
    assert c1["compute_energy_kwh"].sum() == pytest.approx(c1["gpu_energy_kwh"].sum(), rel=1e-9)
    assert f"x {df['calibration_factor'].iloc[0]:.3f} (measured 2 x NVIDIA H200 (dcgm) / simulated H200_E2E " \
           f"(H200), 8 requests of run(s) {c1['run_id'].iloc[0]})" in printed
    report = (out / "report.txt").read_text()
    assert "SERVER VIEW" in report and report.count("asked for 8 requests in flight") == 1


def test_the_server_columns_are_documented() -> None:
    from wattbench.analysis.schema import server_schema_markdown

    page = (Path(__file__).parents[1] / "docs" / "server-metrics.md").read_text(encoding="utf-8")
    assert server_schema_markdown() in page
