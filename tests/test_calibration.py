"""Tests of the calibrated roofline (roofline.py + efficiency.json).

    .venv/bin/python -m pytest -q tests/test_calibration.py   # the LOMO test (slow lane) refits 9 times
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from wattbench.energy import roofline as rl


def _load_fit():
    """fit_calibration.py in benchmarks/calibration/ (a script of the repository, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration" / "fit_calibration.py"
    spec = importlib.util.spec_from_file_location("fit_calibration", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fc = _load_fit()

ROOT = Path(__file__).resolve().parents[1]
EFFICIENCY_JSON = ROOT / "wattbench" / "data" / "efficiency.json"
H100 = rl.load_gpus()["H100_SXM"]
B200 = rl.load_gpus()["B200"]
#: Round numbers, so that the physics can be checked by hand independently of the fit.
ROUND = rl.Efficiency(hbm_fraction=0.8, kv_hbm_fraction=0.5, mfu=0.5, fp8_mfu_factor=0.8, fp8_hbm_factor=0.75,
                      moe_compute_factor=0.5, moe_hbm_factor=0.8, allreduce_latency_nvlink_s=20e-6,
                      step_overhead_s=1e-3, per_sequence_overhead_s=10e-6, layer_kernel_s=10e-6,
                      moe_layer_kernel_s=100e-6, power_memory_coeff=0.5, power_compute_coeff=1.0,
                      power_sync_coeff=0.25)


def test_decode_step_by_hand() -> None:
    # 8B dense bf16, 32 layers, hidden 4096, 8 KV heads x 128, batch 10 at context 1000, one H100 SXM.
    shape = rl.model_shape(active_params_b=8.0, num_layers=32, hidden_size=4096)
    step = rl.step_time(gpu=H100, num_gpus=1, shape=shape, bytes_per_param=2.0, decode_tokens=10, prefill_tokens=0,
                        decode_context_tokens=1000, prefill_context_tokens=0, eff=ROUND, factors=rl.GPUFactors())
    weights_s = 16e9 / (3350e9 * 0.8)                    # 5.970 ms
    kv_s = 10 * 1000 * 131072 / (3350e9 * 0.5)           # 0.783 ms
    assert step.memory_s == pytest.approx(weights_s + kv_s)
    flops = 2 * 8e9 * 10 + 4 * 32 * 4096 * 10 * 1000      # 1.652e11
    assert step.compute_s == pytest.approx(flops / (989e12 * 0.5))
    assert step.kernel_s == pytest.approx(32 * 10e-6)
    assert step.overhead_s == pytest.approx(1e-3 + 10 * 10e-6)
    assert step.comm_s == 0.0
    memory_bound = (step.memory_s ** 4 + step.compute_s ** 4) ** 0.25
    assert step.step_s == pytest.approx(memory_bound + 32 * 10e-6 + 1.1e-3)
    # power: 1 - (1 - 0.5 m)(1 - 1.0 c)(1 - 0.25 s) of (700 - 80) W above 80 W
    m, c, s = step.memory_s / step.step_s, step.compute_s / step.step_s, step.kernel_s / step.step_s
    util = 1 - (1 - 0.5 * m) * (1 - c) * (1 - 0.25 * s)
    assert rl.utilisation(step, ROUND) == pytest.approx(util)
    assert 80 + 620 * util == pytest.approx(rl.gpu_power_w(700, 80, rl.utilisation(step, ROUND)))


def test_tensor_parallel_fp8_and_gpu_factors_by_hand() -> None:
    shape = rl.model_shape(active_params_b=70.0, num_layers=80, hidden_size=8192)
    factors = rl.GPUFactors(hbm_factor=0.5, kernel_factor=2.0, power_factor=1.0)
    step = rl.step_time(gpu=H100, num_gpus=4, shape=shape, bytes_per_param=1.0, decode_tokens=8, prefill_tokens=0,
                        decode_context_tokens=0, prefill_context_tokens=0, eff=ROUND, factors=factors)
    # fp8 weights: 70 GB / 4 GPUs at 3350 GB/s x 0.8 (hbm) x 0.75 (fp8) x 0.5 (GPU factor)
    assert step.memory_s == pytest.approx(70e9 / 4 / (3350e9 * 0.8 * 0.75 * 0.5))
    # two all-reduces per layer: 20 us + 8 x 8192 x 2 B x 2 x 3/4 over 450 GB/s x 0.7
    assert step.comm_s == pytest.approx(160 * (20e-6 + 8 * 8192 * 2 * 1.5 / (450e9 * 0.7)))
    assert step.kernel_s == pytest.approx(80 * 10e-6 * 2.0)
    assert step.compute_s == pytest.approx(2 * 70e9 * 8 / (4 * 1979e12 * 0.5 * 0.8))


def test_moe_reads_the_experts_its_tokens_touch() -> None:
    shape = rl.model_shape(active_params_b=3.0, total_params_b=30.0, num_experts=128, experts_per_token=8)
    common = {"gpu": H100, "num_gpus": 1, "shape": shape, "bytes_per_param": 2.0, "prefill_tokens": 0,
              "decode_context_tokens": 0, "prefill_context_tokens": 0, "eff": ROUND, "factors": rl.GPUFactors()}
    one = rl.step_time(decode_tokens=1, **common)
    # shared 1.05B + 28.95B x 1/16 of experts read at 0.8 x moe_hbm_factor 0.8
    assert one.memory_s == pytest.approx((1.05e9 + 28.95e9 / 16 / 0.8) * 2 / (3350e9 * 0.8))
    assert one.kernel_s == pytest.approx(shape.num_layers * (10e-6 + 100e-6))
    many = rl.step_time(decode_tokens=1024, **common)
    assert many.memory_s == pytest.approx((1.05e9 + 28.95e9 / 0.8) * 2 / (3350e9 * 0.8), rel=1e-6)


def _fitted_values() -> dict[str, float]:
    data = json.loads(EFFICIENCY_JSON.read_text())
    values = {}
    for set_name in ("nominal", "optimistic", "pessimistic"):
        values.update({f"{set_name}:{k}": v for k, v in data[set_name].items()})
    for gpu, row in data["gpu_factors"].items():
        if not gpu.startswith("_"):
            values.update({f"{gpu}.{k}": v for k, v in row.items()})
    return values


def test_every_fitted_value_is_inside_its_physical_bounds() -> None:
    bounds = {p.name: (p.low, p.high) for p in fc.PARAMS}
    values = _fitted_values()
    checked = 0
    for key, value in values.items():
        name = key.split(":", 1)[-1]
        if name.startswith("default.") or name.startswith("H100_SXM."):
            assert value == 1.0
            continue
        low, high = bounds[name]
        assert low - 1e-12 <= value <= high + 1e-12, (key, value, low, high)
        checked += 1
    assert checked == 3 * len(fc.EFF_NAMES) + len(fc.PARAMS) - len(fc.EFF_NAMES)


def test_no_model_names_in_the_model() -> None:
    names = {r.model for r in fc.load_rows()}
    words = {w.lower() for n in names for w in n.replace("-", " ").split() if len(w) > 3 and not w[0].isdigit()}
    words -= {"instruct", "nano"}  # generic words
    for path in (ROOT / "wattbench" / "energy" / "roofline.py", EFFICIENCY_JSON):
        text = path.read_text().lower()
        code = text if path.suffix == ".json" else "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("#"))
        # comments may cite config.json facts; code and fitted values may not name a model
        for name in names:
            assert name.lower() not in code, (path.name, name)
    assert words  # the check above had names to look for


@pytest.mark.parametrize("gpu,num_gpus,active,total,bpp", [("H100_SXM", 1, 8, 8, 2), ("B200", 1, 32, 32, 2),
                                                           ("H100_SXM", 2, 3, 30, 2), ("H100_SXM", 8, 22, 235, 1)])
def test_joules_fall_and_latency_rises_with_batch(gpu: str, num_gpus: int, active: float, total: float,
                                                  bpp: float) -> None:
    runs = [rl.simulate_inference(gpu=gpu, num_gpus=num_gpus, active_params_b=active, total_params_b=total,
                                  bytes_per_param=bpp, batch_size=b, prompt_tokens=500, output_tokens=500)
            for b in (1, 8, 32, 128, 256)]
    joules = [e.gpu_energy_j_per_token for e in runs]
    itl = [e.decode_s_per_token for e in runs]
    assert joules == sorted(joules, reverse=True) and joules[0] > 4 * joules[-1]
    assert itl == sorted(itl)
    for e in runs:
        assert e.gpu_energy_j_per_token_min <= e.gpu_energy_j_per_token <= e.gpu_energy_j_per_token_max
        assert e.decode_s_per_token_min <= e.decode_s_per_token <= e.decode_s_per_token_max
        assert 0.0 <= e.gpu_utilisation <= 1.0


def test_batch_one_decode_is_slower_than_reading_the_weights() -> None:
    e = rl.simulate_inference(gpu="H100_SXM", active_params_b=8, prompt_tokens=500, output_tokens=500)
    assert e.decode_s_per_token > 16e9 / 3350e9  # physics floor: 16 GB per token at datasheet bandwidth
    assert e.decode_s_per_token < 2.5 * 16e9 / 3350e9


def test_callers_arguments_and_fields_are_kept() -> None:
    # What callers pass and read (issue 11: simulate_inference keeps its signature and return fields).
    params = inspect.signature(rl.simulate_inference).parameters
    for name in ("gpu", "num_gpus", "active_params_b", "total_params_b", "bytes_per_param", "batch_size",
                 "prompt_tokens", "output_tokens", "datacenter", "num_layers", "hidden_size", "num_kv_heads",
                 "head_dim", "num_experts", "experts_per_token", "efficiency", "efficiency_range"):
        assert name in params, name
    names = {f.name for f in dataclasses.fields(rl.InferenceEstimate)}
    for name in ("gpu_energy_j_per_token", "gpu_energy_j_per_token_min", "gpu_energy_j_per_token_max",
                 "decode_s_per_token", "decode_s_per_token_min", "decode_s_per_token_max",
                 "decode_s_per_token_median", "latency_s", "energy_kwh", "carbon_gco2e"):
        assert name in names, name


def test_gpu_outside_the_data_uses_the_default_factors() -> None:
    assert rl.gpu_factors(rl.load_gpus()["A100_80GB_SXM"]) == rl.GPU_FACTORS["default"]
    assert rl.gpu_factors(B200) == rl.GPU_FACTORS["B200"]


@pytest.mark.slow
def test_leave_one_model_out_within_targets() -> None:
    rows = fc.load_rows()
    held, _ = fc.lomo(rows)
    err_j = fc.error_factor(held[:, 0], np.array([r.j_per_token for r in rows]))
    err_i = fc.error_factor(held[:, 2], np.array([r.median_itl_s for r in rows]))
    assert np.median(err_j) <= 1.25 and np.median(err_i) <= 1.30 and np.mean(err_j <= 1.5) >= 0.75
    for gpu in ("H100", "B200"):
        idx = np.array([r.gpu == gpu for r in rows])
        assert np.median(err_j[idx]) <= 1.25 and np.median(err_i[idx]) <= 1.30 and np.mean(err_j[idx] <= 1.5) >= 0.75
    dense = np.array([r.arch == "Dense Transformer" for r in rows])
    assert np.median(err_j[dense]) <= 1.25 and np.mean(err_j[dense] <= 1.5) >= 0.75
    moe = np.array([r.arch == "MoE" for r in rows])
    assert np.median(err_i[moe]) <= 1.30
    assert math.isfinite(np.median(err_j[moe])) and np.median(err_j[moe]) <= 1.35  # MoE J/token: see report
