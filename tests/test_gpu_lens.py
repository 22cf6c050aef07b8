"""The measured-GPU lens end to end: `wattbench run` on a machine whose NVML (a scripted fake at the seam, the
`pynvml` module itself) reports one GPU at a constant power; the shares, the CSV columns and the report's
simulated / measured ratio are checked against hand computations from the run's own records."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_nvml import FakeGpu, FakeNvml
from stub_servers import ChatStub, slow

from wattbench.energy.hardware import J_PER_KWH, gpu_key_for_device_name
from wattbench.runs.run import cli_run

POWER_W = 300.0
GPU_NAME = "NVIDIA H100 80GB HBM3"  # what NVML calls an H100 SXM


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(f'{{"id": "p{i}", "prompt": "question {i}"}}\n' for i in range(4)))
    return path


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml([FakeGpu(name=GPU_NAME, power_w=POWER_W)], time.time)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("WATTBENCH_API_TOKEN", raising=False)
    return fake


def shares_by_hand(spans: list[tuple[float, float]], t0: float, t1: float, power_w: float) -> list[float]:
    """Constant power: each instant's energy is split equally among the requests in flight then."""
    edges = sorted({t0, t1, *(t for span in spans for t in span if t0 < t < t1)})
    shares = [0.0] * len(spans)
    for a, b in zip(edges, edges[1:]):
        inside = [i for i, (s, e) in enumerate(spans) if s <= a and e >= b]
        for i in inside:
            shares[i] += power_w * (b - a) / len(inside)
    return shares


@pytest.mark.slow  # real clock: the fake NVML's counters follow it; bounds on measured time belong to the slow lane
def test_run_measures_the_gpu_and_gives_each_request_its_share(
    tmp_path: Path, prompts: Path, fake_gpu: FakeNvml, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with ChatStub(script=[slow(0.3), slow(0.5), slow(0.2), slow(0.4)]) as stub:
        code = cli_run(["--server-url", stub.url, "--prompts", str(prompts), "--out", str(out), "--no-progress",
                        "--concurrency", "2", "--profiles", "H100_LOW_CARBON,T4_COLAB"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"measuring GPU energy with NVML: nvml_total_energy on 1 device(s) [0]: {GPU_NAME}" in printed
    [run_dir] = (out / "runs").iterdir()
    lines = [json.loads(line) for line in (run_dir / "gpu_energy.jsonl").read_text().splitlines()]
    summary = lines[-1]["session_summary"]
    shares = {line["key"]: line["gpu_energy_j"] for line in lines[:-1]}
    # constant 300 W: the window's energy is power x its length; nothing is lost in the split
    # (the fake's counters follow the real clock; a thread preempted between reading the clock and a counter
    # shifts a sample by up to milliseconds on a loaded machine: 1% covers that, a lost interval does not)
    assert summary["total_j"] == pytest.approx(POWER_W * summary["window_s"], rel=0.01)
    assert sum(shares.values()) + summary["idle_j"] == pytest.approx(summary["total_j"], rel=1e-12)
    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert sorted(shares) == sorted(r["key"] for r in records) and len(shares) == 4
    # each share recomputed by hand from the records' own start and end times (the measured window holds them
    # all: the meter starts before the first request is sent and stops after the last answer)
    spans = [(r["t_start_epoch_s"], r["t_end_epoch_s"]) for r in records]
    by_hand = shares_by_hand(spans, min(spans)[0] - 1.0, max(e for _, e in spans) + 1.0, POWER_W)
    for record, expected in zip(records, by_hand):
        assert shares[record["key"]] == pytest.approx(expected, rel=0.01)  # clock skew as above
    # two at a time: a request's share is at most its whole time at full power, at least half of it
    for record in records:
        alone = POWER_W * (record["t_end_epoch_s"] - record["t_start_epoch_s"])
        assert 0.99 * alone / 2 <= shares[record["key"]] <= 1.01 * alone  # 1%: clock skew, whole mJ

    [csv_path] = out.glob("ai_metrics_*.csv")
    df = pd.read_csv(csv_path)
    h100 = df[df["profile"] == "H100_LOW_CARBON"].set_index("request_id")
    for key, joules in shares.items():
        assert h100.loc[key, "gpu_energy_kwh"] == pytest.approx(joules / J_PER_KWH)
        assert h100.loc[key, "gpu_energy_devices"] == f"1 x {GPU_NAME}"
        assert h100.loc[key, "gpu_energy_method"] == (
            "nvml_total_energy: equal share of the GPUs' energy among the requests in flight")
    # the report sets the simulated profile on the measured GPU model against the measurement
    report = (out / "report.txt").read_text()
    assert "SIMULATED VS MEASURED GPU ENERGY" in report
    simulated = h100["compute_energy_kwh"].sum()
    measured = sum(shares.values()) / J_PER_KWH
    ratio = f"{simulated / measured:.3g}"
    # the section's own row (the frontier lines further down also name the profile and the measured GPUs)
    section = report.split("SIMULATED VS MEASURED GPU ENERGY", 1)[1].split("\n\n", 1)[0]
    [line] = [ln for ln in section.splitlines() if "H100_LOW_CARBON" in ln and GPU_NAME in ln]
    assert line.rstrip().endswith(ratio)
    assert "measured GPU (NVML)" in report


def test_gpu_energy_on_without_a_gpu_is_one_error_line(
    tmp_path: Path, prompts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], time.time, mode="no_driver"))
    with ChatStub() as stub:
        code = cli_run(["--server-url", stub.url, "--prompts", str(prompts), "--out", str(tmp_path / "out"),
                        "--no-progress", "--no-report", "--gpu-energy", "on"])
        assert stub.chat_requests() == []  # refused before anything was sent
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --gpu-energy on, but no GPU can be measured: NVML unavailable")
    assert err.count("\n") == 1


def test_without_nvml_auto_measures_nothing_and_says_nothing(
    tmp_path: Path, prompts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], time.time, mode="no_library"))
    with ChatStub() as stub:
        assert cli_run(["--server-url", stub.url, "--prompts", str(prompts), "--out", str(tmp_path / "out"),
                        "--no-progress", "--no-report"]) == 0
    assert "GPU energy" not in capsys.readouterr().out
    [csv_path] = (tmp_path / "out").glob("ai_metrics_*.csv")
    assert pd.read_csv(csv_path)["gpu_energy_kwh"].isna().all()


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H200", "H200"), ("NVIDIA H100 80GB HBM3", "H100_SXM"), ("NVIDIA H100 PCIe", "H100_PCIE"),
    ("NVIDIA A100-SXM4-40GB", "A100_40GB_SXM"), ("NVIDIA A100-SXM4-80GB", "A100_80GB_SXM"),
    ("NVIDIA A100 80GB PCIe", "A100_80GB_PCIE"), ("Tesla T4", "T4"), ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"),
    ("NVIDIA B200", "B200"), ("NVIDIA GeForce RTX 4090", None),
])
def test_nvml_names_map_to_gpu_keys(name: str, key: str | None) -> None:
    keys = ["T4", "L4", "L40S", "A100_40GB_SXM", "A100_80GB_SXM", "A100_80GB_PCIE", "H100_SXM", "H100_PCIE",
            "H200", "B200"]
    assert gpu_key_for_device_name(name, keys) == key
