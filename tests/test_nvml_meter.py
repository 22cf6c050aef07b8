"""Tests for nvml_meter against fake_nvml; every expected value is computed by hand in the comment beside it."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_nvml import FakeClock, FakeGpu, FakeNvml
from wattbench.energy.nvml import (METHOD_POWER_SAMPLING, METHOD_TOTAL_ENERGY, NvmlEnergyMeter, NvmlUnavailableError, Sample,
                        attribute_energy, visible_device_indices)

HERE = Path(__file__).resolve().parent
NO_ENV: dict[str, str] = {}  # no CUDA_VISIBLE_DEVICES, whatever the test machine has


def make(gpus, *, clock=None, **kwargs):
    clock = clock or FakeClock()
    nv = FakeNvml(gpus, clock)
    kwargs.setdefault("env", NO_ENV)
    kwargs.setdefault("interval_s", None)
    return nv, clock, NvmlEnergyMeter(nvml=nv, clock=clock, **kwargs)


# -- total energy counter --------------------------------------------------------------------------------------

def test_two_devices_300w_and_100w_for_10s_is_4000j():
    nv, clock, meter = make([FakeGpu(power_w=300.0), FakeGpu(power_w=100.0)])
    with meter:
        clock.advance(10.0)
    assert meter.method == METHOD_TOTAL_ENERGY
    assert meter.energy_j == pytest.approx(4000.0)  # (300 + 100) W x 10 s
    assert meter.duration_s == pytest.approx(10.0)
    assert meter.energy_between(0.0, 10.0, device=0) == pytest.approx(3000.0)
    assert meter.energy_between(0.0, 10.0, device=1) == pytest.approx(1000.0)
    assert nv.init_calls == nv.shutdown_calls == 1 and not nv.initialized


def test_start_and_stop_read_the_counters_exactly_not_only_the_sampler():
    # Counter starts at 100 W x 5 s = 500 J when the meter starts at t=5; stop at t=8 -> 300 J, only 2 samples.
    nv, clock, meter = make([FakeGpu(power_w=100.0)], clock=FakeClock(5.0))
    meter.start()
    clock.advance(3.0)
    meter.stop()
    assert [s.t_s for s in meter.samples] == [5.0, 8.0]
    assert meter.energy_j == pytest.approx(300.0)


def test_energy_between_interpolates_linearly_between_samples():
    # 100 W for t < 5, 300 W after; samples only at 0 and 10: cumulative 0 and 500 + 1500 = 2000 J.
    # Linear: 200 J/s, so [0, 2] -> 400 J (the truth is 200 J: interpolation is only as good as the sampling).
    nv, clock, meter = make([FakeGpu(power_schedule=[(0.0, 100.0), (5.0, 300.0)])])
    with meter:
        clock.advance(10.0)
    assert meter.energy_between(0.0, 2.0) == pytest.approx(400.0)
    # With a sample at t=5 the pieces are exact: [4, 6] -> 100 + 300 = 400 J, [0, 2] -> 200 J.
    nv, clock, meter = make([FakeGpu(power_schedule=[(0.0, 100.0), (5.0, 300.0)])])
    with meter:
        clock.advance(5.0)
        meter.sample()
        clock.advance(5.0)
    assert meter.energy_between(4.0, 6.0) == pytest.approx(400.0)
    assert meter.energy_between(0.0, 2.0) == pytest.approx(200.0)
    assert meter.energy_between(3.0, 3.0) == 0.0
    with pytest.raises(ValueError, match="outside the sampled window"):
        meter.energy_between(-1.0, 2.0)
    with pytest.raises(ValueError, match="before"):
        meter.energy_between(6.0, 4.0)


def test_counter_reset_is_flagged_and_never_negative():
    # 100 W; the counter restarts from 0 at t=2.5. Samples at 0,1,2,3,4: raw 0,100,200,50,150 (J).
    # [0,2] = 200 J; [2,3] counter went back -> counted 0 (flagged); [3,4] = 100 J. Total 300 J.
    nv, clock, meter = make([FakeGpu(power_w=100.0, reset_at_s=[2.5])])
    with meter:
        for _ in range(3):
            clock.advance(1.0)
            meter.sample()
        clock.advance(1.0)
    assert meter.energy_j == pytest.approx(300.0)
    assert len(meter.counter_resets) == 1
    reset = meter.counter_resets[0]
    assert (reset.t_s, reset.device_index, reset.previous_mj, reset.current_mj) == (3.0, 0, 200_000, 50_000)
    energies = [s.total_energy_j for s in meter.samples]
    assert energies == sorted(energies)  # cumulative never decreases
    assert all(meter.energy_between(a, a + 1.0) >= 0 for a in range(4))


def test_context_manager_stops_and_shuts_down_on_error():
    nv, clock, meter = make([FakeGpu(power_w=100.0)])
    with pytest.raises(KeyError):
        with meter:
            clock.advance(2.0)
            raise KeyError("boom")
    assert meter.energy_j == pytest.approx(200.0)
    assert nv.shutdown_calls == 1 and not nv.initialized


def test_start_twice_and_stop_unstarted_are_errors():
    nv, clock, meter = make([FakeGpu()])
    with pytest.raises(RuntimeError, match="not started"):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError, match="already started"):
        meter.start()
    meter.stop()
    assert nv.shutdown_calls == 1


def test_read_power_records_power_readings():
    nv, clock, meter = make([FakeGpu(power_w=250.0), FakeGpu(power_w=50.0)], read_power=True)
    with meter:
        clock.advance(1.0)
    assert [s.power_w for s in meter.samples] == [(250.0, 50.0), (250.0, 50.0)]
    assert meter.energy_j == pytest.approx(300.0)


@pytest.mark.slow  # real clock: bounds on measured time belong to the slow lane
def test_background_sampler_thread_with_real_clock():
    # The fake's counters follow the real monotonic clock: energy = 200 W x elapsed, read exactly at start/stop.
    nv = FakeNvml([FakeGpu(power_w=200.0)], time.monotonic)
    meter = NvmlEnergyMeter(nvml=nv, interval_s=0.01, env=NO_ENV)
    with meter:
        time.sleep(0.25)
    samples = meter.samples
    assert len(samples) >= 5
    assert [s.t_s for s in samples] == sorted(s.t_s for s in samples)
    # The real clock and the fake's counters are read one after the other, so a thread preempted between the
    # two readings (a loaded machine) shifts a reading by microseconds to milliseconds: allow 1% (a broken
    # sampler is off by far more: a missing or doubled interval is 4% of this window or worse).
    assert meter.energy_j == pytest.approx(200.0 * meter.duration_s, rel=0.01)
    assert meter.errors == [] and nv.shutdown_calls == 1


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        NvmlEnergyMeter(nvml=FakeNvml([FakeGpu()]), interval_s=0)


# -- power-sampling fallback (pre-Volta) -----------------------------------------------------------------------

def test_power_sampling_fallback_constant_power():
    # Energy counter NotSupported; 250 W constant, samples at 0..4 s -> trapezoids 4 x 250 = 1000 J.
    nv, clock, meter = make([FakeGpu(power_w=250.0, energy_supported=False)])
    with meter:
        for _ in range(3):
            clock.advance(1.0)
            meter.sample()
        clock.advance(1.0)
    assert meter.method == METHOD_POWER_SAMPLING
    assert meter.energy_j == pytest.approx(1000.0)


def test_power_sampling_fallback_is_a_trapezoid_integral():
    # 100 W until t=3, then 300 W; readings at t=0,2,4: 100, 100, 300 W.
    # [0,2]: (100+100)/2 x 2 = 200 J; [2,4]: (100+300)/2 x 2 = 400 J -> 600 J (the truth is 500 J).
    nv, clock, meter = make([FakeGpu(power_schedule=[(0.0, 100.0), (3.0, 300.0)], energy_supported=False)])
    with meter:
        clock.advance(2.0)
        meter.sample()
        clock.advance(2.0)
    assert meter.energy_j == pytest.approx(600.0)
    assert meter.energy_between(0.0, 1.0) == pytest.approx(100.0)


def test_fallback_used_for_all_devices_when_one_lacks_the_counter():
    # Device 0 has the counter, device 1 does not -> power sampling for both: (100 + 300) W x 2 s = 800 J.
    nv, clock, meter = make([FakeGpu(power_w=100.0), FakeGpu(power_w=300.0, energy_supported=False)])
    with meter:
        clock.advance(2.0)
    assert meter.method == METHOD_POWER_SAMPLING
    assert meter.energy_j == pytest.approx(800.0)


# -- availability ----------------------------------------------------------------------------------------------

def test_missing_pynvml_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    ok, reason = NvmlEnergyMeter.available()
    assert ok is False
    assert "pip install nvidia-ml-py" in reason and "\n" not in reason
    with pytest.raises(NvmlUnavailableError, match="pip install nvidia-ml-py"):
        NvmlEnergyMeter().start()


@pytest.mark.parametrize("mode, words", [("no_driver", "driver is not loaded"),
                                         ("no_library", "libnvidia-ml.so not found")])
def test_no_driver(mode, words):
    nv = FakeNvml([FakeGpu()], FakeClock(), mode=mode)
    ok, reason = NvmlEnergyMeter.available(nvml=nv, env=NO_ENV)
    assert ok is False and words in reason and "\n" not in reason
    with pytest.raises(NvmlUnavailableError, match=words):
        NvmlEnergyMeter(nvml=nv, env=NO_ENV).start()
    assert nv.shutdown_calls == 0  # never initialised


def test_no_gpu_is_unavailable_and_shuts_down():
    nv = FakeNvml([], FakeClock())
    ok, reason = NvmlEnergyMeter.available(nvml=nv, env=NO_ENV)
    assert ok is False and "no NVIDIA GPU" in reason
    with pytest.raises(NvmlUnavailableError, match="no NVIDIA GPU"):
        NvmlEnergyMeter(nvml=nv, env=NO_ENV).start()
    assert nv.init_calls == nv.shutdown_calls == 2 and not nv.initialized


def test_available_names_the_method():
    ok, reason = NvmlEnergyMeter.available(nvml=FakeNvml([FakeGpu(name="NVIDIA H200")]), env=NO_ENV)
    assert ok and reason.startswith("nvml_total_energy on 1 device(s) [0]: NVIDIA H200")
    ok, reason = NvmlEnergyMeter.available(nvml=FakeNvml([FakeGpu(name="Tesla P100", energy_supported=False)]),
                                           env=NO_ENV)
    assert ok and reason.startswith("nvml_power_sampling")


def test_nothing_readable_is_unavailable():
    nv = FakeNvml([FakeGpu(energy_supported=False, power_supported=False)])
    ok, reason = NvmlEnergyMeter.available(nvml=nv, env=NO_ENV)
    assert ok is False and "neither the total energy counter nor power readings" in reason
    assert nv.init_calls == nv.shutdown_calls == 1


# -- CUDA_VISIBLE_DEVICES ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, indices, has_note", [
    (None, [0, 1, 2, 3], False),
    ("2,0", [2, 0], False),
    (" 1 , 3 ", [1, 3], False),
    ("1,7,3", [1], True),  # like CUDA: read up to the first invalid index
    ("1,-1,3", [1], True),
    ("", [], True),
    ("GPU-8a4b7e5c-1111-2222-3333-444455556666", [0, 1, 2, 3], True),
])
def test_visible_device_indices(value, indices, has_note):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    got, note = visible_device_indices(4, env)
    assert got == indices and (note is not None) == has_note


def test_meter_honours_cuda_visible_devices():
    gpus = [FakeGpu(power_w=w) for w in (100.0, 200.0, 300.0, 400.0)]
    nv, clock, meter = make(gpus, env={"CUDA_VISIBLE_DEVICES": "2,0"})
    with meter:
        clock.advance(10.0)
    assert meter.device_indices == [2, 0]
    assert meter.energy_j == pytest.approx(4000.0)  # (300 + 100) W x 10 s
    assert meter.energy_between(0.0, 10.0, device=2) == pytest.approx(3000.0)
    # explicit devices win over the environment
    nv, clock, meter = make(gpus, devices=[3], env={"CUDA_VISIBLE_DEVICES": "0"})
    with meter:
        clock.advance(10.0)
    assert meter.energy_j == pytest.approx(4000.0)  # 400 W x 10 s
    ok, reason = NvmlEnergyMeter.available(nvml=FakeNvml(gpus), env={"CUDA_VISIBLE_DEVICES": ""})
    assert ok is False and "CUDA_VISIBLE_DEVICES is empty" in reason


def test_meter_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nv = FakeNvml([FakeGpu(power_w=100.0), FakeGpu(power_w=50.0)], FakeClock())
    meter = NvmlEnergyMeter(nvml=nv, clock=nv.clock, interval_s=None)
    with meter:
        nv.clock.advance(2.0)
    assert meter.device_indices == [1] and meter.energy_j == pytest.approx(100.0)


# -- attribution -------------------------------------------------------------------------------------------------

def _run(power_w, duration_s, sample_every_s=None):
    nv, clock, meter = make([FakeGpu(power_w=power_w)])
    with meter:
        if sample_every_s:
            while clock() + sample_every_s < duration_s:
                clock.advance(sample_every_s)
                meter.sample()
        clock.set(duration_s)
    return meter


def test_two_overlapping_requests_at_400w():
    # A=[0,6], B=[4,10], 400 W. [0,4]: A alone 1600 J; [4,6]: 800 J split 400/400; [6,10]: B alone 1600 J.
    # A = 1600 + 400 = 2000 J, B = 400 + 1600 = 2000 J, idle 0, total 4000 J.
    for every in (None, 1.0, 0.7):  # coarse or fine sampling: constant power, same answer
        meter = _run(400.0, 10.0, every)
        result = meter.attribute([(0.0, 6.0), (4.0, 10.0)])
        assert result.per_request_j == pytest.approx([2000.0, 2000.0])
        assert result.idle_j == pytest.approx(0.0, abs=1e-9)
        assert result.total_j == pytest.approx(4000.0)
        assert "equal share of NVML energy (nvml_total_energy) among in-flight requests" in result.method


def test_idle_energy_is_reported_separately():
    # 100 W over [0,12]; A=[1,3], B=[2,5].
    # idle [0,1] 100; A alone [1,2] 100; both [2,3] 100 -> 50/50; B alone [3,5] 200; idle [5,12] 700.
    # A = 150, B = 250, idle = 800, total = 1200 J.
    result = _run(100.0, 12.0).attribute([(1.0, 3.0), (2.0, 5.0)])
    assert result.per_request_j == pytest.approx([150.0, 250.0])
    assert result.idle_j == pytest.approx(800.0)
    assert result.total_j == pytest.approx(1200.0)


def test_shares_follow_power_over_time():
    # 100 W on [0,5), 300 W on [5,10]; sample at 5. A=[0,5] gets 500 J, B=[5,10] 1500 J, C=[0,10] shares both:
    # [0,5]: 500 split A/C -> 250 each; [5,10]: 1500 split B/C -> 750 each. A=250, B=750, C=1000.
    nv, clock, meter = make([FakeGpu(power_schedule=[(0.0, 100.0), (5.0, 300.0)])])
    with meter:
        clock.advance(5.0)
        meter.sample()
        clock.advance(5.0)
    result = meter.attribute([(0.0, 5.0), (5.0, 10.0), (0.0, 10.0)])
    assert result.per_request_j == pytest.approx([250.0, 750.0, 1000.0])
    assert result.idle_j == 0.0 and result.total_j == pytest.approx(2000.0)


def test_sum_of_shares_plus_idle_equals_total_exactly():
    # [0,8], 256 J/s. Cuts at 0,1,2,3,4,5,6,7,8; requests A=[1,3], B=[2,6], C=[2,7], D=[5,8].
    # [0,1] idle 256; [1,2] A 256; [2,3] A,B,C 256/3 each; [3,5] B,C 256 each; [5,6] B,C,D 256/3 each;
    # [6,7] C,D 128 each; [7,8] D 256. A = 256 + 256/3, B = 256 + 512/3, C = 384 + 512/3, D = 384 + 256/3.
    samples = [(0.0, 0.0), (4.0, 1024.0), (8.0, 2048.0)]
    result = attribute_energy([(1.0, 3.0), (2.0, 6.0), (2.0, 7.0), (5.0, 8.0)], samples)
    assert result.per_request_j == pytest.approx([256 + 256 / 3, 256 + 512 / 3, 384 + 512 / 3, 384 + 256 / 3])
    assert result.idle_j == 256.0
    assert math.fsum(result.per_request_j + [result.idle_j]) == result.total_j == 2048.0
    assert sum(result.per_request_j) + result.idle_j == pytest.approx(result.total_j, rel=1e-15)
    # Awkward numbers: still exact in the fsum sense, and total_j is the window's energy.
    samples = [Sample(t, (e, e / 3.0)) for t, e in [(0.1, 0.0), (1.37, 91.3), (2.9, 190.77), (4.21, 260.01)]]
    requests = [(0.3, 2.2), (0.11, 4.0), (1.5, 1.9), (3.3, 9.0), (-1.0, 0.2)]
    result = attribute_energy(requests, samples)
    assert math.fsum(result.per_request_j + [result.idle_j]) == result.total_j
    assert result.total_j == pytest.approx(260.01 * 4 / 3, rel=1e-14)
    assert all(x >= 0 for x in result.per_request_j) and result.idle_j >= 0


def test_requests_outside_the_window_get_only_their_covered_part():
    # 100 W over [0,10]: [-2,2] covers 2 s -> 200 J; [12,15] nothing; idle 8 s -> 800 J.
    result = _run(100.0, 10.0).attribute([(-2.0, 2.0), (12.0, 15.0)])
    assert result.per_request_j == pytest.approx([200.0, 0.0])
    assert result.idle_j == pytest.approx(800.0)


def test_request_objects_and_bad_input():
    class Req:
        def __init__(self, start_s, end_s):
            self.start_s, self.end_s = start_s, end_s

    samples = [(0.0, 0.0), (10.0, 1000.0)]
    assert attribute_energy([Req(0.0, 10.0)], samples).per_request_j == [1000.0]
    assert attribute_energy([], samples).idle_j == 1000.0
    with pytest.raises(ValueError, match="before it starts"):
        attribute_energy([(5.0, 4.0)], samples)
    with pytest.raises(ValueError, match="two samples"):
        attribute_energy([(0.0, 1.0)], samples[:1])


# -- gpu_check dry run -------------------------------------------------------------------------------------------

def test_gpu_check_dry_run(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed here; the dry run of gpu_check.py needs it (CPU wheel is enough)")
    env = {**os.environ, "OUT": str(tmp_path)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "gpu" / "gpu_check.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc == json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["dry_run"] is True and doc["errors"] == [], doc["errors"]
    assert doc["nvml"]["available"] is True and doc["nvml"]["method"] == METHOD_TOTAL_ENERGY
    # the fake GPU draws a constant 150 W in the dry run
    assert doc["idle_before_work"]["avg_power_w"] == pytest.approx(150.0, rel=1e-3)
    assert [d["batch"] for d in doc["decode"]] == doc["config"]["batch_sizes"]
    for d in doc["decode"]:
        assert d["error"] is None
        assert d["avg_power_w"] == pytest.approx(150.0, rel=1e-3)
        assert d["tokens_per_s"] == pytest.approx(d["batch"] / d["step_s"])
        assert d["j_per_token"] == pytest.approx(d["energy_j"] / (d["steps"] * d["batch"]))
        assert d["attribution"]["per_sequence_j"] == pytest.approx(d["energy_j"] / d["batch"])
        assert d["attribution"]["sum_matches_total"] is True
    assert doc["prefill"]["error"] is None and doc["prefill"]["j_per_token"] > 0


def test_decode_attention_grouping_is_exact_gqa():
    # gpu_check's decode lays the 4 query heads of each KV group out as 4 query rows; that must equal standard GQA
    # (kv heads repeated per query head, head h -> kv head h // 4) for one new token attending to the whole cache.
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    f = torch.nn.functional
    b, qh, kvh, d, length = 3, 8, 2, 16, 11
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, qh * d, generator=gen)
    k = torch.randn(b, kvh, length, d, generator=gen)
    v = torch.randn(b, kvh, length, d, generator=gen)
    grouped = f.scaled_dot_product_attention(q.view(b, kvh, qh // kvh, d), k, v).reshape(b, qh * d)
    reference = f.scaled_dot_product_attention(q.view(b, qh, 1, d), k.repeat_interleave(qh // kvh, dim=1),
                                               v.repeat_interleave(qh // kvh, dim=1)).reshape(b, qh * d)
    assert torch.allclose(grouped, reference, atol=1e-5)
