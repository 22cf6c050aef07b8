"""The two metrics endpoints of gpu_server.py, in the formats wattbench samples (--server-metrics, --gpu-metrics):

* `engine_exposition(engine)`: vLLM's names (vllm-project/vllm vllm/v1/metrics/loggers.py, v0.10+) for the
  engine's state at the scrape: vllm:num_requests_running (sequences in the decode batch), vllm:num_requests_waiting
  (queued, not yet admitted), vllm:kv_cache_usage_perc (cached positions / (slots x context)), and the counters
  vllm:prompt_tokens_total, vllm:generation_tokens_total, vllm:request_success_total.
* `GpuMeter.exposition()`: dcgm-exporter's names (NVIDIA/dcgm-exporter, etc/default-counters.csv) for this machine's
  GPUs read from NVML: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ, nvmlDeviceGetTotalEnergyConsumption) and
  DCGM_FI_DEV_POWER_USAGE (W, nvmlDeviceGetPowerUsage), labels gpu, UUID, device, modelName, Hostname. In a dry run
  without NVML the energy is MODELLED (idle_w + active_w x running sequences, integrated at each scrape) and
  modelName says so: a CPU stand-in for tests, not a measurement.

Standalone (no wattbench import): the GPU machine runs gpu_server.py with torch and aiohttp only.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any


def engine_exposition(engine: Any) -> str:
    """vLLM-style /metrics of a gpu_server Engine (read without its lock: len() of lists under the GIL)."""
    active = list(engine.active)
    running, waiting = len(active), len(engine.waiting)
    cached = sum(seq.pos for seq in active)
    kv = cached / max(1, engine.max_batch * engine.context)
    st = engine.stats
    labels = 'engine="0",model_name="gpu_server"'
    return "".join([
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n",
        "# TYPE vllm:num_requests_running gauge\n",
        f"vllm:num_requests_running{{{labels}}} {float(running)}\n",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n",
        "# TYPE vllm:num_requests_waiting gauge\n",
        f"vllm:num_requests_waiting{{{labels}}} {float(waiting)}\n",
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n",
        "# TYPE vllm:kv_cache_usage_perc gauge\n",
        f"vllm:kv_cache_usage_perc{{{labels}}} {kv}\n",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n",
        "# TYPE vllm:prompt_tokens_total counter\n",
        f"vllm:prompt_tokens_total{{{labels}}} {float(st.prompt_tokens)}\n",
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n",
        "# TYPE vllm:generation_tokens_total counter\n",
        f"vllm:generation_tokens_total{{{labels}}} {float(st.tokens)}\n",
        "# HELP vllm:request_success_total Count of successfully processed requests.\n",
        "# TYPE vllm:request_success_total counter\n",
        f"vllm:request_success_total{{{labels}}} {float(st.completed)}\n",
    ])


class GpuMeter:
    """dcgm-exporter-style energy and power of this machine's GPUs.

    nvml: pynvml or a stand-in (tests/fake_nvml.FakeNvml); None: import pynvml. When NVML cannot start and
    `modelled` is (idle_w, active_w, running()), the energy is modelled instead (dry runs on CPU)."""

    def __init__(self, nvml: Any | None = None, modelled: tuple[float, float, Any] | None = None) -> None:
        self.hostname = socket.gethostname()
        self.nv: Any = None
        self.handles: list[Any] = []
        self.names: list[str] = []
        self.uuids: list[str] = []
        self.modelled = None
        self.note = ""
        self._lock = threading.Lock()
        try:
            nv = nvml
            if nv is None:
                import pynvml as nv  # type: ignore[no-redef]
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
            self.handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.names = [_text(nv.nvmlDeviceGetName(h)) for h in self.handles]
            get_uuid = getattr(nv, "nvmlDeviceGetUUID", None)
            self.uuids = [_text(get_uuid(h)) if get_uuid else f"GPU-{i}" for i, h in enumerate(self.handles)]
            self.nv = nv
            self.note = f"NVML: {count} GPU(s) {', '.join(self.names)}"
        except Exception as exc:  # noqa: BLE001 - any NVML failure: modelled (dry run) or unavailable
            self.note = f"NVML unavailable ({type(exc).__name__}: {exc})"
            if modelled is not None:
                idle_w, active_w, running = modelled
                self.modelled = {"idle_w": idle_w, "active_w": active_w, "running": running,
                                 "energy_j": 0.0, "t": time.monotonic()}
                self.note += f"; MODELLED energy: {idle_w:g} W + {active_w:g} W per running sequence"

    @property
    def available(self) -> bool:
        return self.nv is not None or self.modelled is not None

    def _read(self) -> list[tuple[str, str, str, float, float]]:
        """(gpu index, UUID, model, energy mJ, power W) per GPU."""
        if self.nv is not None:
            nv = self.nv
            return [(str(i), self.uuids[i], self.names[i], float(nv.nvmlDeviceGetTotalEnergyConsumption(h)),
                     nv.nvmlDeviceGetPowerUsage(h) / 1000.0) for i, h in enumerate(self.handles)]
        m = self.modelled
        assert m is not None
        with self._lock:
            now = time.monotonic()
            power_w = m["idle_w"] + m["active_w"] * m["running"]()
            m["energy_j"] += power_w * (now - m["t"])
            m["t"] = now
            return [("0", "GPU-dry-run", "dry run (MODELLED power, not measured)", m["energy_j"] * 1000.0, power_w)]

    def exposition(self) -> str:
        """The dcgm-exporter text for every GPU (ValueError when nothing can be read)."""
        if not self.available:
            raise ValueError(self.note)
        rows = self._read()
        lines = ["# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).", "# TYPE DCGM_FI_DEV_POWER_USAGE gauge"]
        labels = [f'gpu="{i}",UUID="{u}",device="nvidia{i}",modelName="{m}",Hostname="{self.hostname}"'
                  for i, u, m, _, _ in rows]
        lines += [f"DCGM_FI_DEV_POWER_USAGE{{{lab}}} {row[4]:.3f}" for lab, row in zip(labels, rows)]
        lines += ["# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
                  "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"]
        lines += [f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{lab}}} {int(row[3])}" for lab, row in zip(labels, rows)]
        return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
