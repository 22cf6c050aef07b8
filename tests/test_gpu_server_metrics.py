"""gpu_server.py's two metrics endpoints (benchmarks/gpu/gpu_metrics_endpoints.py) read by wattbench's own parsers:
vLLM-style engine metrics from the engine's state, dcgm-style energy from NVML (the fake at the seam)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from fake_nvml import FakeGpu, FakeNvml

from wattbench.telemetry.engines import dcgm_readings, engine_view
from wattbench.telemetry.prometheus import parse_exposition

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks" / "gpu"))
from gpu_metrics_endpoints import GpuMeter, engine_exposition  # noqa: E402


def test_engine_metrics_are_read_as_vllm() -> None:
    engine = SimpleNamespace(active=[SimpleNamespace(pos=100), SimpleNamespace(pos=28)], waiting=[1, 2, 3],
                             max_batch=4, context=64,
                             stats=SimpleNamespace(prompt_tokens=500, tokens=1200, completed=9))
    view = engine_view(parse_exposition(engine_exposition(engine)))
    assert view.engine == "vllm"
    assert view.values == {"running": 2.0, "waiting": 3.0, "kv_usage": 128 / 256, "prompt_tokens_total": 500.0,
                           "generation_tokens_total": 1200.0}


def test_dcgm_endpoint_reads_nvml() -> None:
    clock = {"t": 10.0}
    nv = FakeNvml([FakeGpu(name="NVIDIA H200", power_w=300.0), FakeGpu(name="NVIDIA H200", power_w=100.0)],
                  lambda: clock["t"])
    meter = GpuMeter(nvml=nv)
    readings, rejected = dcgm_readings(parse_exposition(meter.exposition()))
    assert rejected == []
    host = meter.hostname
    assert [(r.gpu_id, r.model, r.energy_mj, r.power_w) for r in readings] == [
        (f"{host}/GPU-0/0", "NVIDIA H200", 3_000_000.0, 300.0), (f"{host}/GPU-1/1", "NVIDIA H200", 1_000_000.0, 100.0)]


def test_without_nvml_a_dry_run_models_its_energy_and_says_so() -> None:
    nv = FakeNvml([FakeGpu()], lambda: 0.0, mode="no_driver")
    meter = GpuMeter(nvml=nv, modelled=(60.0, 10.0, lambda: 2))
    readings, _ = dcgm_readings(parse_exposition(meter.exposition()))
    assert readings[0].model == "dry run (MODELLED power, not measured)"
    assert readings[0].power_w == 80.0
    assert "MODELLED energy: 60 W + 10 W per running sequence" in meter.note
