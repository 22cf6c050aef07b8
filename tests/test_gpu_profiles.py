"""Tests of gpu_profiles: data files, the original accounting, the roofline model, the three lenses, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattbench import energy as gp

REPO = Path(__file__).resolve().parent.parent


def make_gpu(**overrides: object) -> gp.GPUSpec:
    """A round-number GPU so that expectations can be computed by hand."""
    fields: dict[str, object] = {
        "key": "TESTGPU", "name": "Test GPU", "tdp_w": 400.0, "idle_w": 100.0, "memory_gb": 80.0, "bf16_dense_tflops": 100.0,
        "fp8_dense_tflops": 200.0, "memory_bandwidth_gb_s": 1000.0, "interconnect": "nvlink", "interconnect_gb_s": 400.0,
        "embodied_kgco2e": 100.0, "rental_usd_per_gpu_hour": 2.0}
    fields.update(overrides)
    fields["sources"] = {k: "test" for k in fields if k not in ("key", "name", "interconnect")}
    return gp.GPUSpec.model_validate(fields)


def make_dc(**overrides: object) -> gp.Datacenter:
    fields: dict[str, object] = {"key": "testdc", "name": "Test DC", "location": "Testland", "pue": 1.5, "wue_l_per_kwh": 1.0,
                                     "grid_gco2e_per_kwh": 400.0, "electricity_usd_per_kwh": 0.10}
    fields.update(overrides)
    fields["sources"] = {k: "test" for k in ("pue", "wue_l_per_kwh", "grid_gco2e_per_kwh", "electricity_usd_per_kwh")}
    return gp.Datacenter.model_validate(fields)


def make_profile(gpu: gp.GPUSpec | None = None, dc: gp.Datacenter | None = None, **kw: object) -> gp.DeploymentProfile:
    return gp.DeploymentProfile(key="TEST", gpu=gpu or make_gpu(), gpu_count=int(kw.pop("gpu_count", 1)),
                                datacenter=dc or make_dc(), **kw)


# ---------------------------------------------------------------------------------------------------- data files

def test_builtin_gpus_cover_the_issue_list_with_datasheet_values() -> None:
    gpus = gp.load_gpus()
    assert {"T4", "L4", "L40S", "A100_40GB_SXM", "A100_80GB_SXM", "A100_80GB_PCIE", "H100_SXM", "H100_PCIE",
            "H200", "B200"} <= set(gpus)
    h100 = gpus["H100_SXM"]
    assert (h100.tdp_w, h100.memory_gb, h100.bf16_dense_tflops, h100.fp8_dense_tflops,
            h100.memory_bandwidth_gb_s) == (700, 80, 989, 1979, 3350)
    assert gpus["T4"].tdp_w == 70 and gpus["T4"].fp8_dense_tflops is None


def test_gpus_are_found_by_alias() -> None:
    gpus = gp.load_gpus()
    assert gp.find_gpu(gpus, "h100").key == "H100_SXM"
    assert gp.find_gpu(gpus, "H100-SXM5").key == "H100_SXM"
    assert gp.find_gpu(gpus, "a100 80gb").key == "A100_80GB_SXM"
    with pytest.raises(ValueError, match=r"^unknown GPU 'V100'; valid keys: T4, L4, L40S, A100_40GB_SXM"):
        gp.find_gpu(gpus, "V100")


def test_every_builtin_number_cites_a_source() -> None:
    for gpu in gp.load_gpus().values():
        assert set(gpu.sources) >= {"tdp_w", "idle_w", "memory_gb", "memory_bandwidth_gb_s", "embodied_kgco2e"}
    for dc in gp.load_datacenters(resolve=False).values():
        assert set(dc.sources) == {"pue", "wue_l_per_kwh", "grid_gco2e_per_kwh", "electricity_usd_per_kwh"}


def test_default_profiles_exist_and_keep_the_original_three() -> None:
    profiles = gp.load_profiles()
    assert gp.DEFAULT_PROFILES[:3] == ("T4_COLAB", "A100_SIMULATED", "L40S_SIMULATED")
    assert set(gp.DEFAULT_PROFILES) <= set(profiles)
    assert profiles["T4_COLAB"].gpu.key == "T4" and profiles["A100_SIMULATED"].gpu.key == "A100_80GB_SXM"
    assert profiles["L40S_SIMULATED"].gpu.key == "L40S"


def test_user_profile_file_adds_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"profiles": [
        {"key": "MY_H200", "gpu": "H200", "gpu_count": 2, "datacenter": "aws_eu_north_1", "batch_size": 32}]}))
    profiles = gp.load_profiles(path)
    assert profiles["MY_H200"].gpu.memory_gb == 141 and profiles["MY_H200"].gpu_count == 2
    assert "T4_COLAB" in profiles


def test_user_file_adds_a_gpu_and_a_datacenter(tmp_path: Path) -> None:
    gpu = make_gpu(key="MI300X").model_dump()
    dc = make_dc(key="my_dc", grid={"dataset": "codecarbon_country", "key": "FRA"}).model_dump()
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"gpus": [gpu], "datacenters": [dc], "profiles": [
        {"key": "MINE", "gpu": "MI300X", "gpu_count": 1, "datacenter": "my_dc"}]}))
    mine = gp.load_profiles(path)["MINE"]
    assert mine.gpu.tdp_w == 400 and mine.datacenter.pue == 1.5
    assert mine.datacenter.grid_gco2e_per_kwh == pytest.approx(56.039)  # CodeCarbon's France 2023 value


@pytest.mark.parametrize(("name", "text", "message"), [
    pytest.param("empty.json", "{}", r"empty.json: no 'profiles', 'gpus' or 'datacenters' rows found$",
                 id="empty-file-is-refused"),
    pytest.param("bad.json", json.dumps({"profiles": [{"key": "X", "gpu": "V100", "gpu_count": 1,
                                                       "datacenter": "us_average"}]}),
                 r"profiles\[0\] \(key 'X'\): field 'gpu': unknown GPU 'V100'; valid keys: T4, L4, L40S, ",
                 id="unknown-gpu-lists-valid-keys"),
    pytest.param("broken.json", '{"profiles": [\n  {"key": }\n]}',
                 r"broken.json: invalid JSON at line 2, column 11", id="invalid-json-says-where"),
])
def test_bad_user_profile_file_says_what_is_wrong(name: str, text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(gp.DataFileError, match=message):
        gp.load_profiles(path)


def test_corrupt_package_file_falls_back_to_the_data_file(tmp_path: Path) -> None:
    mix = tmp_path / "cc" / "data" / "private_infra"
    mix.mkdir(parents=True)
    (mix / "global_energy_mix.json").write_text("{not json")
    dc = make_dc(grid={"dataset": "codecarbon_country", "key": "FRA"})
    resolved = gp.resolve_grid(dc, {"codecarbon": tmp_path / "cc"})
    assert resolved.grid_gco2e_per_kwh == 400.0 and resolved.grid_source_used == "data file: test"


def test_bad_profile_row_names_the_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"profiles": [
        {"key": "OK", "gpu": "T4", "gpu_count": 1, "datacenter": "us_average"},
        {"key": "BROKEN", "gpu": "T4", "gpu_count": 0, "datacenter": "us_average"}]}))
    with pytest.raises(gp.DataFileError) as exc:
        gp.load_profiles(path)
    assert str(exc.value) == (f"{path}: profiles[1] (key 'BROKEN'): field 'gpu_count': "
                              "Input should be greater than or equal to 1")


def test_gpu_row_without_a_source_is_refused(tmp_path: Path) -> None:
    row = make_gpu().model_dump()
    row["key"] = "NOSRC"
    del row["sources"]["tdp_w"]
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps({"gpus": [row]}))
    with pytest.raises(gp.DataFileError) as exc:
        gp.load_gpus(path)
    assert str(exc.value) == (f"{path}: gpus[0] (key 'NOSRC'): Value error, sources.tdp_w is missing: "
                              "cite where the number 400.0 comes from")


def test_grid_intensity_read_from_codecarbon_files(tmp_path: Path) -> None:
    cloud = tmp_path / "cc" / "data" / "cloud"
    cloud.mkdir(parents=True)
    (cloud / "impact.csv").write_text("provider,region,impact\ngcp,xx-test1,123\n", encoding="utf-8")
    state_dir = tmp_path / "cc" / "data" / "private_infra" / "2023"
    state_dir.mkdir(parents=True)
    (state_dir / "usa_emissions.json").write_text(json.dumps({"virginia": {"emissions": 1000.0}}))
    dirs = {"codecarbon": tmp_path / "cc", "ecologits": None}
    dc = make_dc(grid={"dataset": "codecarbon_gcp_region", "key": "xx-test1"})
    assert gp.resolve_grid(dc, dirs).grid_gco2e_per_kwh == 123
    state = make_dc(grid={"dataset": "codecarbon_us_state", "key": "virginia"})
    assert gp.resolve_grid(state, dirs).grid_gco2e_per_kwh == pytest.approx(453.592)  # 1000 lbs/MWh
    missing = make_dc(grid={"dataset": "codecarbon_gcp_region", "key": "nowhere"})
    fallback = gp.resolve_grid(missing, dirs)
    assert fallback.grid_gco2e_per_kwh == 400.0 and fallback.grid_source_used == "data file: test"


def test_builtin_grid_values_come_from_the_installed_packages() -> None:
    dcs = gp.load_datacenters()
    assert dcs["gcp_us_central1"].grid_gco2e_per_kwh == 430  # codecarbon cloud/impact.csv
    assert dcs["aws_us_east_1"].grid_gco2e_per_kwh == pytest.approx(539.599 * 0.45359237, abs=1e-3)  # eGRID lbs
    assert dcs["world_average"].grid_source_used.startswith("ecologits")


# ------------------------------------------------------------------------------------- the original accounting

def test_original_accounting_by_hand() -> None:
    # 400 W TDP x 2 s = 800 J; idle 100 W x 5 s = 500 J; IT 1300 J = 3.6111e-4 kWh; PUE 1.5 adds half.
    row = gp.calculate_enhanced_metrics({"latency_s": 2.0, "cost_usd": 0.001}, make_profile(), idle_s=5.0)
    assert tuple(row) == gp.PROFILE_COLUMNS
    assert row["energy_method"] == "measured_latency_x_tdp" and row["sim_latency_s"] == 2.0
    assert row["compute_energy_kwh"] == pytest.approx(800 / 3.6e6)
    assert row["idle_energy_kwh"] == pytest.approx(500 / 3.6e6)
    assert row["pue_overhead_kwh"] == pytest.approx(650 / 3.6e6)
    assert row["energy_kwh"] == pytest.approx(1950 / 3.6e6)
    assert row["carbon_gco2e"] == pytest.approx(1950 / 3.6e6 * 400)
    assert row["energy_cost_usd"] == pytest.approx(1950 / 3.6e6 * 0.10)
    assert row["total_cost_usd"] == pytest.approx(0.001 + 1950 / 3.6e6 * 0.10)
    # range: compute at idle + 50% of (TDP - idle) = 250 W -> 500 J, + 500 J idle, x 1.5
    assert row["energy_kwh_min"] == pytest.approx(1500 / 3.6e6)
    assert row["energy_kwh_max"] == pytest.approx(row["energy_kwh"])


def test_unknown_api_cost_counts_as_zero_in_total() -> None:
    row = gp.calculate_enhanced_metrics({"latency_s": 1.0, "cost_usd": None}, make_profile())
    assert row["total_cost_usd"] == pytest.approx(row["energy_cost_usd"])


def test_missing_latency_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"measured\['latency_s'\] must be a number >= 0 \(got None\)"):
        gp.calculate_enhanced_metrics({"prompt_tokens": 3}, make_profile())


def test_original_profiles_keep_the_originals_carbon_ordering() -> None:
    # The original README ranks carbon per 1K tokens T4 < L40S < A100 (same requests on each profile).
    profiles = gp.load_profiles()
    measured = {"latency_s": 2.169, "completion_tokens": 300, "cost_usd": 0.0}
    carbon = {k: gp.calculate_enhanced_metrics(measured, profiles[k], idle_s=5.0)["carbon_gco2e"]
              for k in ("T4_COLAB", "L40S_SIMULATED", "A100_SIMULATED")}
    assert carbon["T4_COLAB"] < carbon["L40S_SIMULATED"] < carbon["A100_SIMULATED"]


def test_roofline_method_when_the_model_size_is_known() -> None:
    measured = {"latency_s": 9.0, "prompt_tokens": 100, "completion_tokens": 200, "model_params_b": 8.0}
    profile = make_profile(gpu_count=1)
    row = gp.calculate_enhanced_metrics(measured, profile, idle_s=1.0)
    sim = gp.simulate_inference(gpu=profile.gpu, active_params_b=8.0, prompt_tokens=100, output_tokens=200,
                                datacenter=profile.datacenter)
    assert row["energy_method"] == "roofline"
    assert row["sim_latency_s"] == pytest.approx(sim.latency_s)
    assert row["compute_energy_kwh"] == pytest.approx(sim.gpu_energy_kwh)
    assert row["energy_kwh"] == pytest.approx((sim.gpu_energy_kwh + 100 / 3.6e6) * 1.5)
    assert row["energy_kwh_min"] < row["energy_kwh"] < row["energy_kwh_max"]


def test_without_token_counts_the_original_accounting_is_used() -> None:
    row = gp.calculate_enhanced_metrics({"latency_s": 2.0, "model_params_b": 8.0}, make_profile())
    assert row["energy_method"] == "measured_latency_x_tdp"
    assert row["compute_energy_kwh"] == pytest.approx(800 / 3.6e6)


def test_roofline_uses_the_smallest_gpu_count_that_fits() -> None:
    measured = {"latency_s": 3.0, "prompt_tokens": 100, "completion_tokens": 100}
    row = gp.calculate_enhanced_metrics(measured, make_profile(), active_params_b=70.0)
    assert row["gpu_count"] == 2  # 140 GB of bf16 weights on 80 GB GPUs


# ------------------------------------------------------------------------------------------------- the roofline

#: Round, test-owned efficiencies, so the by-hand tests check the formulas, not the fitted values (those are
#: checked against measurements in benchmarks/bench_calibration.py and test_calibration.py).
EFF = gp.Efficiency(hbm_fraction=0.85, kv_hbm_fraction=0.55, mfu=0.6, fp8_mfu_factor=0.8, fp8_hbm_factor=1.0,
                    moe_compute_factor=0.7, moe_hbm_factor=1.0, allreduce_latency_nvlink_s=15e-6,
                    step_overhead_s=0.6e-3, per_sequence_overhead_s=20e-6, layer_kernel_s=20e-6,
                    moe_layer_kernel_s=80e-6, power_memory_coeff=0.5, power_compute_coeff=1.0, power_sync_coeff=0.0)


def test_step_time_by_hand() -> None:
    # 8B dense, bf16, 32 layers, hidden 4096, 8 KV heads x 128, one sequence at context 1000 on TESTGPU.
    shape = gp.model_shape(active_params_b=8.0, num_layers=32, hidden_size=4096)
    step = gp.step_time(gpu=make_gpu(), num_gpus=1, shape=shape, bytes_per_param=2.0, decode_tokens=1,
                        prefill_tokens=0, decode_context_tokens=1000, prefill_context_tokens=0, eff=EFF)
    # weights 16e9 B at 1000 GB/s x 0.85 = 0.0188235294 s; KV 131072 B x 1000 at 1000 GB/s x 0.55 = 2.383127e-4 s
    assert step.memory_s == pytest.approx(0.0190618421)
    # 2 x 8e9 + 4 x 32 x 4096 x 1000 = 1.6524288e10 FLOP at 100 TFLOPS x 0.6 -> 2.754048e-4 s
    assert step.compute_s == pytest.approx(2.754048e-4)
    assert step.comm_s == 0.0 and step.overhead_s == pytest.approx(0.62e-3)  # 0.6 ms + 20 us x 1
    assert step.kernel_s == pytest.approx(32 * 20e-6)
    # (0.0190618^4 + 0.0002754^4)^(1/4) = 0.0190618 (memory-bound), + 0.64 ms kernels + 0.62 ms overhead
    assert step.step_s == pytest.approx(0.0203218, rel=1e-5)
    assert step.bound == "memory"


def test_tensor_parallel_allreduce_by_hand() -> None:
    shape = gp.model_shape(active_params_b=8.0, num_layers=32, hidden_size=4096)
    step = gp.step_time(gpu=make_gpu(), num_gpus=2, shape=shape, bytes_per_param=2.0, decode_tokens=10,
                        prefill_tokens=0, decode_context_tokens=100, prefill_context_tokens=0, eff=EFF)
    # message 10 x 4096 x 2 = 81920 B; ring moves 2 x (1/2) of it at 200 GB/s x 0.7 -> 5.851e-7 s + 15 us
    assert step.comm_s == pytest.approx(64 * (15e-6 + 81920 / 140e9))


def test_kv_cache_and_power_formulas_by_hand() -> None:
    shape = gp.model_shape(active_params_b=70.0, num_layers=80, num_kv_heads=8, head_dim=128)
    assert gp.kv_bytes_per_token(shape) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert gp.gpu_power_w(700, 80, 0.5) == 390
    step = gp.StepTime(memory_s=1.0, compute_s=0.5, comm_s=0.0, overhead_s=0.0, step_s=1.0)
    # 1 - (1 - 0.5 x 1.0)(1 - 1.0 x 0.5) = 1 - 0.5 x 0.5 = 0.75
    assert gp.utilisation(step, EFF) == pytest.approx(0.75)


def test_moe_reads_more_experts_as_the_batch_grows() -> None:
    assert gp.moe_fraction_touched(0.5, 2) == pytest.approx(0.75)
    shape = gp.model_shape(active_params_b=3.0, total_params_b=30.0, num_experts=128, experts_per_token=8)
    assert shape.routed_fraction_per_token == pytest.approx(1 / 16)
    assert shape.shared_params_b == pytest.approx(1.05)
    common = {"gpu": make_gpu(), "num_gpus": 1, "shape": shape, "bytes_per_param": 2.0, "prefill_tokens": 0,
                  "decode_context_tokens": 0, "prefill_context_tokens": 0, "eff": EFF}
    one = gp.step_time(decode_tokens=1, **common)
    # batch 1: shared 1.05B + 28.95B x 1/16 = 2.859375B params x 2 B at 850 GB/s
    assert one.memory_s == pytest.approx(2.859375e9 * 2 / 850e9)
    many = gp.step_time(decode_tokens=512, **common)
    assert many.memory_s == pytest.approx(30e9 * 2 / 850e9, rel=1e-6)  # every expert touched
    assert one.kernel_s == pytest.approx(shape.num_layers * (20e-6 + 80e-6))  # MoE layers cost more


def test_fp8_weights_halve_weight_reads_and_use_fp8_peak() -> None:
    gpu = make_gpu()
    assert gp.peak_tflops(gpu, 1.0) == 200 and gp.peak_tflops(gpu, 2.0) == 100
    assert gp.peak_tflops(make_gpu(fp8_dense_tflops=None), 1.0) == 100
    shape = gp.model_shape(active_params_b=8.0, num_layers=32, hidden_size=4096)
    common = {"gpu": gpu, "num_gpus": 1, "shape": shape, "decode_tokens": 1, "prefill_tokens": 0,
              "decode_context_tokens": 0, "prefill_context_tokens": 0, "eff": EFF}
    bf16 = gp.step_time(bytes_per_param=2.0, **common)
    fp8 = gp.step_time(bytes_per_param=1.0, **common)
    assert fp8.memory_s == pytest.approx(bf16.memory_s / 2)  # half the bytes at the same bandwidth (factor 1)
    assert fp8.compute_s == pytest.approx(bf16.compute_s * 100 / (200 * 0.8))  # fp8 peak, 80% of bf16's MFU


def test_larger_batch_fewer_joules_per_token() -> None:
    joules = [gp.simulate_inference(gpu="H100_SXM", active_params_b=8, batch_size=b, prompt_tokens=512,
                                    output_tokens=256, datacenter=make_dc()).gpu_energy_j_per_token
              for b in (1, 8, 64, 256, 1024)]
    assert joules == sorted(joules, reverse=True) and joules[0] > 5 * joules[-1]


def test_more_bandwidth_faster_decode() -> None:
    slow = gp.simulate_inference(gpu=make_gpu(), active_params_b=8, prompt_tokens=100, output_tokens=100,
                                 datacenter=make_dc())
    fast = gp.simulate_inference(gpu=make_gpu(memory_bandwidth_gb_s=2000), active_params_b=8, prompt_tokens=100,
                                 output_tokens=100, datacenter=make_dc())
    assert fast.decode_s_per_token < 0.6 * slow.decode_s_per_token


def test_model_too_big_for_one_gpu_names_the_smallest_count() -> None:
    with pytest.raises(gp.ModelDoesNotFitError) as exc:
        gp.simulate_inference(gpu="H100_SXM", active_params_b=70, prompt_tokens=1000, output_tokens=1000)
    assert exc.value.min_gpus == 2
    assert str(exc.value).endswith("the smallest GPU count that fits is 2")
    with pytest.raises(gp.ModelDoesNotFitError, match="the smallest GPU count that fits is 16"):
        gp.simulate_inference(gpu="H100_SXM", num_gpus=8, active_params_b=405, prompt_tokens=100,
                              output_tokens=100)


def test_batch_capped_by_kv_cache_memory() -> None:
    est = gp.simulate_inference(gpu="H100_SXM", active_params_b=8, batch_size=1024, prompt_tokens=2000,
                                output_tokens=2000, datacenter=make_dc())
    assert est.kv_limited and est.effective_batch_size < 1024
    # capacity = 0.9 x 80 GiB - 2 GiB - 16 GB; per sequence 131072 B x 3000 tokens
    capacity = 0.9 * 80 * 2**30 - 2 * 2**30 - 16e9
    assert est.effective_batch_size == int(capacity // (131072 * 3000))


def test_decode_cannot_beat_the_bandwidth_bound() -> None:
    # physics: a batch-1 step must read all 16 GB of weights; at 3.35 TB/s that is 4.78 ms
    est = gp.simulate_inference(gpu="H100_SXM", active_params_b=8, prompt_tokens=100, output_tokens=100)
    assert 16e9 / 3.35e12 < est.decode_s_per_token_min < est.decode_s_per_token < 2 * 16e9 / 3.35e12


def test_energy_and_carbon_add_up() -> None:
    dc = make_dc()
    est = gp.simulate_inference(gpu=make_gpu(), active_params_b=8, batch_size=4, prompt_tokens=100,
                                output_tokens=200, datacenter=dc)
    assert est.gpu_energy_kwh == pytest.approx(est.gpu_energy_j_per_token * 200 / 3.6e6)
    assert est.energy_kwh == pytest.approx((est.gpu_energy_kwh + est.host_energy_kwh) * 1.5)
    assert est.operational_carbon_gco2e == pytest.approx(est.energy_kwh * 400)
    assert est.carbon_gco2e == pytest.approx(est.operational_carbon_gco2e + est.embodied_carbon_gco2e)
    assert est.water_l == pytest.approx((est.gpu_energy_kwh + est.host_energy_kwh) * 1.0)  # WUE 1 L/kWh
    # GPU-seconds of this request = host energy / 150 W; embodied = (100 kg GPU + 712.5 kg server share) over 3 years
    gpu_seconds = est.host_energy_kwh * 3.6e6 / 150.0
    assert gpu_seconds == pytest.approx(est.decode_s_per_token * 200 / 4)
    assert est.embodied_carbon_gco2e == pytest.approx(812.5e3 * gpu_seconds / (3 * 365 * 24 * 3600))
    assert est.carbon_gco2e_min < est.carbon_gco2e < est.carbon_gco2e_max


def test_bad_simulation_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"batch_size must be > 0 \(got 0\)"):
        gp.simulate_inference(gpu="H100_SXM", active_params_b=8, batch_size=0, prompt_tokens=1, output_tokens=1)
    with pytest.raises(ValueError, match=r"unknown GPU 'V100'; valid keys: T4, L4"):
        gp.simulate_inference(gpu="V100", active_params_b=8, prompt_tokens=1, output_tokens=1)


# ------------------------------------------------------------------------------------------ provider-side lens

def test_provider_side_estimate_matches_ecologits_range() -> None:
    from ecologits.tracers.utils import llm_impacts

    est = gp.provider_side_estimate("gemini/gemini-2.5-flash", 200, 3.0)
    ref = llm_impacts(provider="google_genai", model_name="gemini-2.5-flash", output_token_count=200,
                      request_latency=3.0)
    assert est is not None
    assert est["provider_energy_kwh_min"] == pytest.approx(ref.energy.value.min)
    assert est["provider_energy_kwh_max"] == pytest.approx(ref.energy.value.max)
    assert est["provider_energy_kwh"] == pytest.approx((ref.energy.value.min + ref.energy.value.max) / 2)
    assert est["provider_carbon_gco2e_max"] == pytest.approx(ref.gwp.value.max * 1000)


def test_provider_side_none_with_reason_for_local_models() -> None:
    assert gp.provider_side_estimate("wattbench-local/smollm2-135m-instruct", 10, 1.0) is None
    assert gp.provider_side_unavailable_reason("wattbench-local/smollm2-135m-instruct") == (
        "EcoLogits has no provider for 'wattbench-local/smollm2-135m-instruct' (local or self-hosted model)")
    assert gp.provider_side_unavailable_reason("gemini/gemini-0.1-imaginary") == (
        "EcoLogits does not list model 'gemini-0.1-imaginary' for provider 'google_genai'")


def test_gpu_profiles_never_imports_litellm() -> None:
    code = ("import sys, gpu_profiles as g; g.provider_side_estimate('gemini/gemini-2.5-flash', 5, 1.0); "
            "g.load_profiles(); print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------- measured lens

def write_rapl(root: Path, zone: str, energy_uj: int, max_uj: int = 1_000_000_000) -> None:
    (root / zone).mkdir(parents=True, exist_ok=True)
    (root / zone / "energy_uj").write_text(str(energy_uj))
    (root / zone / "max_energy_range_uj").write_text(str(max_uj))


def test_rapl_wraparound() -> None:
    assert gp.rapl_delta_uj(900, 100, 1000) == 200
    assert gp.rapl_delta_uj(100, 900, 1000) == 800


def test_energy_meter_reads_rapl_packages_not_subzones(tmp_path: Path) -> None:
    write_rapl(tmp_path, "intel-rapl:0", 5_000_000)
    write_rapl(tmp_path, "intel-rapl:1", 999_000_000)
    write_rapl(tmp_path, "intel-rapl:0:0", 0)  # core sub-zone: counted inside package 0
    with gp.EnergyMeter(powercap_root=tmp_path, use_nvml=False) as meter:
        write_rapl(tmp_path, "intel-rapl:0", 8_600_000)   # +3.6 J
        write_rapl(tmp_path, "intel-rapl:1", 600_000)     # wrapped: +1.6 J
        write_rapl(tmp_path, "intel-rapl:0:0", 50_000_000)
    assert meter.method == "rapl"
    assert meter.energy_kwh == pytest.approx(5.2 / 3.6e6)


class FakeNVML:
    """Stands in for pynvml at EnergyMeter's `nvml` seam: two GPUs whose counters rise by 1500 mJ each read."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.reads = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        self.reads += 1
        return 10_000 + 1_500 * (self.reads > 2)


def test_energy_meter_uses_nvml_when_no_rapl(tmp_path: Path) -> None:
    with gp.EnergyMeter(powercap_root=tmp_path / "none", nvml=FakeNVML()) as meter:
        pass
    assert meter.method == "nvml"
    assert meter.energy_kwh == pytest.approx(3.0 / 3.6e6)  # 2 GPUs x 1500 mJ


class NoCounterNVML(FakeNVML):
    """A GPU without an energy counter (pre-Volta): the read raises NVMLError."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        raise self.NVMLError("Not Supported")


def test_energy_meter_skips_nvml_without_energy_counter(tmp_path: Path) -> None:
    clock = iter([1.0, 2.0])
    with gp.EnergyMeter(powercap_root=tmp_path / "none", nvml=NoCounterNVML(), cpu_time_s=lambda: next(clock)) as m:
        pass
    assert m.method == "cpu_time_estimate" and m.energy_kwh == pytest.approx(4.0 / 3.6e6)


def test_energy_meter_reports_none_and_why_when_rapl_vanishes(tmp_path: Path) -> None:
    write_rapl(tmp_path, "intel-rapl:0", 1000)
    with gp.EnergyMeter(powercap_root=tmp_path, use_nvml=False) as meter:
        (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    assert meter.method == "rapl" and meter.energy_kwh is None
    assert meter.unavailable is not None and meter.unavailable.startswith("RAPL counter unreadable at the end: ")


def test_energy_meter_falls_back_to_a_labelled_cpu_time_estimate(tmp_path: Path) -> None:
    clock = iter([10.0, 12.5])
    with gp.EnergyMeter(powercap_root=tmp_path / "none", use_nvml=False, cpu_time_s=lambda: next(clock)) as meter:
        pass
    assert meter.method == "cpu_time_estimate"
    assert meter.energy_kwh == pytest.approx(2.5 * 4.0 / 3.6e6)  # CodeCarbon's 4 W per core


def test_unreadable_rapl_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "energy_uj").mkdir()  # reading a directory raises OSError, like EACCES
    assert gp.rapl_domains(tmp_path) == []


# --------------------------------------------------------------------------------------------------------- CLI

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wattbench", "simulate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_unknown_gpu_names_valid_keys() -> None:
    out = run_cli("--gpu", "V100", "--params-b", "8")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: unknown GPU 'V100'; valid keys: T4, L4, L40S, A100_40GB_SXM")
    assert out.stderr.count("\n") == 1


def test_cli_model_too_big_for_requested_gpus() -> None:
    out = run_cli("--gpu", "H100_SXM", "--num-gpus", "1", "--params-b", "70")
    assert out.returncode == 2
    assert out.stderr.startswith("error: model does not fit: 70B params x 2 bytes = 140.0 GB")
    assert out.stderr.strip().endswith("the smallest GPU count that fits is 2")


def test_cli_json_and_compare() -> None:
    single = run_cli("--gpu", "H100_SXM", "--params-b", "8", "--batch-size", "64", "--json")
    assert single.returncode == 0, single.stderr
    data = json.loads(single.stdout)
    assert data["gpu"] == "H100_SXM" and data["num_gpus"] == 1 and data["batch_size"] == 64
    compare = run_cli("--params-b", "8", "--batch-size", "64", "--compare")
    assert compare.returncode == 0, compare.stderr
    lines = compare.stdout.splitlines()
    assert len(lines) == 1 + 1 + len(gp.load_gpus()) + 1  # title, header, one row per GPU, legend
    assert lines[1].split()[:3] == ["gpu", "n", "batch"]


def test_prefill_schedule_by_hand() -> None:
    # 64 sequences of 256 output tokens: 0.25 new requests per step, each a 512-token prompt in one chunk
    assert gp.prefill_schedule(64, 512, 256, 8192) == gp.PrefillSchedule(512.0, 0.25)
    # 512 sequences: 2 new requests per step -> 1024 prompt tokens in every step
    assert gp.prefill_schedule(512, 512, 256, 8192) == gp.PrefillSchedule(1024.0, 1.0)
    # a 20000-token prompt is cut to the step budget (8192 - 8 decode tokens)
    assert gp.prefill_schedule(8, 20000, 1000, 8192) == gp.PrefillSchedule(8184.0, pytest.approx(160 / 8184))
    assert gp.prefill_schedule(8, 0, 100, 8192) == gp.PrefillSchedule(0.0, 0.0)


def test_energy_per_token_averages_decode_and_prompt_steps() -> None:
    gpu, shape = make_gpu(), gp.model_shape(active_params_b=8.0)
    est = gp.simulate_inference(gpu=gpu, active_params_b=8, batch_size=64, prompt_tokens=512, output_tokens=256,
                                datacenter=make_dc())
    common = {"gpu": gpu, "num_gpus": 1, "shape": shape, "bytes_per_param": 2.0, "decode_tokens": 64,
                  "decode_context_tokens": 640, "prefill_context_tokens": 256, "eff": gp.NOMINAL}
    decode = gp.step_time(prefill_tokens=0, **common)
    mixed = gp.step_time(prefill_tokens=512, **common)

    def power(step: gp.StepTime) -> float:
        return gp.gpu_power_w(400, 100, gp.utilisation(step, gp.NOMINAL))

    expected = (0.75 * decode.step_s * power(decode) + 0.25 * mixed.step_s * power(mixed)) / 64
    assert est.gpu_energy_j_per_token == pytest.approx(expected)
    assert est.decode_s_per_token == pytest.approx(0.75 * decode.step_s + 0.25 * mixed.step_s)
    assert est.decode_s_per_token_median == pytest.approx(decode.step_s)


def test_cli_profile_supplies_gpu_count_datacenter_and_batch(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"profiles": [{"key": "MINE", "gpu": "H200", "gpu_count": 2,
                                              "datacenter": "aws_eu_north_1", "batch_size": 32, "bytes_per_param": 1}]}))
    out = run_cli("--params-b", "70", "--profile", "MINE", "--profiles-file", str(path), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["gpu"], data["num_gpus"], data["datacenter"], data["batch_size"]) == ("H200", 2, "aws_eu_north_1", 32)
    expected = gp.simulate_inference(gpu="H200", num_gpus=2, active_params_b=70, total_params_b=70, bytes_per_param=1,
                                     batch_size=32, prompt_tokens=512, output_tokens=256, datacenter="aws_eu_north_1")
    assert data["gpu_energy_j_per_token"] == pytest.approx(expected.gpu_energy_j_per_token)


def test_cli_requires_params_and_lists_keys() -> None:
    missing = run_cli("--gpu", "H100_SXM")
    assert missing.returncode == 2
    assert missing.stderr == ("error: --params-b is required: the model size in billions of parameters, e.g. "
                              "--params-b 8 (or --model NAME for an open model wattbench knows)\n")
    listing = run_cli("--list")
    assert listing.returncode == 0
    assert "  H100_SXM          700 W    80 GB   3350 GB/s    989 bf16 TFLOPS  NVIDIA H100 SXM5 80GB" in listing.stdout
    assert "T4_COLAB" in listing.stdout and "world_average" in listing.stdout


def test_cli_bad_number_is_one_error_line() -> None:
    out = run_cli("--params-b", "-3")
    assert (out.returncode, out.stdout, out.stderr) == (2, "", "error: argument --params-b: must be > 0, got '-3'\n")


# argparse lists the choices without quotes since Python 3.12.8 and 3.13.1 (Colab's 3.13 among them).
_UNQUOTED = sys.version_info >= (3, 13, 1) or (3, 12, 8) <= sys.version_info < (3, 13)
DTYPES = ", ".join(f"{d}" if _UNQUOTED else f"'{d}'" for d in ("bf16", "fp16", "fp8", "int4", "int8"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--params-b", "x"], "error: argument --params-b: expected a number, got 'x'"),
    (["--params-b", "8", "--dtype", "fp4"], f"error: argument --dtype: invalid choice: 'fp4' (choose from {DTYPES})"),
    (["--params-b", "8", "--bogus"], "error: unrecognized arguments: --bogus"),
    (["--params-b", "8", "--profile", "T4_COLAB", "--profiles-file", "{dir}"],
     "error: {dir}: is a directory, not a JSON file"),
])
def test_cli_bad_input_is_one_error_line(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert gp.cli_simulate([a.format(dir=tmp_path) for a in argv]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message.format(dir=tmp_path) + "\n")


@pytest.mark.parametrize("params_b", [0.135, 8.0, 70.0])
def test_every_builtin_profile_gives_a_complete_row(params_b: float) -> None:
    measured = {"latency_s": 1.5, "prompt_tokens": 40, "completion_tokens": 120, "cost_usd": None,
                "model_params_b": params_b}
    for profile in gp.load_profiles().values():
        row = gp.calculate_enhanced_metrics(measured, profile, idle_s=0.5)
        assert row["energy_method"] == "roofline"
        assert row["gpu_count"] >= profile.gpu_count
        assert 0 < row["energy_kwh_min"] <= row["energy_kwh"] <= row["energy_kwh_max"]
        assert row["energy_kwh"] == pytest.approx(
            row["compute_energy_kwh"] + row["idle_energy_kwh"] + row["pue_overhead_kwh"])


# -- open models by name ------------------------------------------------------------------------------------


def test_simulate_takes_an_open_models_shape_by_name() -> None:
    out = run_cli("--model", "openai/meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100_SXM", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # Llama-3.1-8B-Instruct's config.json: 32 layers, hidden 4096, 8 KV heads x 128; 8.03B parameters
    assert (data["model"], data["num_layers"], data["hidden_size"], data["num_kv_heads"], data["head_dim"]) == (
        "meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 8, 128)
    assert data["total_params_b"] == data["active_params_b"] == pytest.approx(8.03, abs=0.01)
    direct = gp.simulate_inference(gpu="H100_SXM", active_params_b=data["active_params_b"],
                                   total_params_b=data["total_params_b"], num_layers=32, hidden_size=4096,
                                   num_kv_heads=8, head_dim=128, prompt_tokens=512, output_tokens=256)
    assert data["gpu_energy_j_per_token"] == pytest.approx(direct.gpu_energy_j_per_token)


def test_simulate_moe_by_ollama_tag_and_explicit_options_win() -> None:
    out = run_cli("--model", "ollama/qwen3:30b-a3b", "--layers", "40", "--json")
    data = json.loads(out.stdout)
    # Qwen3-30B-A3B: 128 experts, 8 per token, 4 KV heads; --layers 40 overrides its 48
    assert (data["num_experts"], data["experts_per_token"], data["num_kv_heads"], data["num_layers"]) == (
        128, 8, 4, 40)
    assert data["active_params_b"] < data["total_params_b"]


def test_simulate_unknown_model_is_one_error_line() -> None:
    out = run_cli("--model", "acme/unknown-42b")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == ("error: unknown model 'acme/unknown-42b': it is not in wattbench/data/models.json; give "
                          "its size with --params-b (and --active-params-b for a mixture of experts)\n")


def test_a_run_against_a_named_open_model_uses_the_roofline_with_its_shape(monkeypatch) -> None:
    monkeypatch.delenv("WATTBENCH_MODEL_PARAMS_B", raising=False)
    profile = gp.load_profiles()["H100_LOW_CARBON"]
    measured = {"latency_s": 2.0, "prompt_tokens": 100, "completion_tokens": 50, "cost_usd": None,
                "model": "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct"}
    from wattbench.energy.open_models import shape_for_model

    shape, source = shape_for_model(measured["model"])
    assert source == "models.json: meta-llama/Llama-3.1-8B-Instruct"
    row = gp.calculate_enhanced_metrics(measured, profile, shape=shape)
    assert row["energy_method"] == "roofline"
    sim = gp.simulate_inference(gpu=profile.gpu, num_gpus=profile.gpu_count, active_params_b=shape["active_params_b"],
                                total_params_b=shape["total_params_b"], num_layers=32, hidden_size=4096,
                                num_kv_heads=8, head_dim=128, bytes_per_param=profile.bytes_per_param,
                                batch_size=profile.batch_size, prompt_tokens=100, output_tokens=50,
                                datacenter=profile.datacenter)
    assert row["compute_energy_kwh"] == pytest.approx(sim.gpu_energy_kwh)
    # an unknown model stays on the original accounting, labelled as such
    unknown = gp.calculate_enhanced_metrics({**measured, "model": "acme/x"}, profile, shape=None)
    assert unknown["energy_method"] == "measured_latency_x_tdp"


def test_model_size_from_the_environment(monkeypatch) -> None:
    from wattbench.energy.open_models import shape_for_model

    monkeypatch.setenv("WATTBENCH_MODEL_PARAMS_B", "13")
    assert shape_for_model("acme/private-13b") == ({"active_params_b": 13.0, "total_params_b": 13.0},
                                                   "WATTBENCH_MODEL_PARAMS_B")
    assert shape_for_model("acme/private-13b", params_b=7.0)[1] == "given size"
    monkeypatch.setenv("WATTBENCH_MODEL_PARAMS_B", "thirteen")
    with pytest.raises(ValueError, match="^WATTBENCH_MODEL_PARAMS_B='thirteen' is not a number"):
        shape_for_model("acme/private-13b")
