#!/usr/bin/env python3
"""One-shot real-GPU check for the NVML energy lens: prints one JSON document (and writes $OUT/gpu_check.json).

    python3 benchmarks/gpu/gpu_check.py            # on the GPU machine (one H200; torch + nvidia-ml-py)
    python3 benchmarks/gpu/gpu_check.py --dry-run  # here: CPU, tiny shapes, fake NVML at a constant 150 W

Phases (each records its error string and the run carries on; a global time budget skips what no longer fits,
and a hard watchdog prints what was gathered if anything hangs):
  nvml       GPU name, driver, power limit, energy-counter support and how often the counter changes;
  idle       average power over 3 s before any work (torch not even imported);
  model      a Llama-3.1-8B-shaped decoder (32 layers, hidden 4096, 32 q / 8 KV heads x 128, SwiGLU 14336,
             vocab 128256, RMSNorm, untied LM head) with RANDOM bf16 weights made on the GPU, a static KV cache
             for 128 sequences x (1024 + 1) positions, then 3 s of loaded idle;
  decode     per batch size 1, 8, 32, 128 at 1024 tokens of context: one decode step (embedding, per layer
             qkv -> write K/V -> attention over the cache -> o-proj -> SwiGLU MLP, LM head, greedy argmax fed back)
             captured in a CUDA graph, replayed for >= 5 s; step_s, tokens_per_s, avg_power_w, j_per_token, and the
             window's energy attributed to the batch's sequences with attribute_energy;
  prefill    batch 8 x 1024 new tokens (causal attention, K/V written to the cache, LM head on the last position
             only, as serving engines do), repeated for >= 3 s because one forward (~0.3 s) is too short for the
             energy counter; time and energy per token.
Rotary embeddings are skipped. Attention for decode uses SDPA with the 4 query heads of each KV group laid out
as 4 query rows against that group's cache (exact GQA, no K/V copies, no causal mask needed for one new token).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load_module(path: Path, name: str) -> Any:
    """A module by file path: the GPU machine has torch and nvidia-ml-py but not wattbench's dependencies
    (pydantic, ...), so wattbench.energy's package __init__ must not run there."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_nvml = _load_module(ROOT / "wattbench" / "energy" / "nvml.py", "wattbench_nvml")
NvmlEnergyMeter, attribute_energy, load_nvml = _nvml.NvmlEnergyMeter, _nvml.attribute_energy, _nvml.load_nvml

SCHEMA = "wattbench.gpu_check/1"


@dataclass(frozen=True)
class Config:
    layers: int = 32
    hidden: int = 4096
    q_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    mlp: int = 14336
    vocab: int = 128256
    context: int = 1024
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    decode_window_s: float = 5.0
    idle_s: float = 3.0
    loaded_idle_s: float = 3.0
    counter_probe_s: float = 1.0
    prefill_batch: int = 8
    prefill_tokens: int = 1024
    prefill_window_s: float = 3.0
    sampler_interval_s: float = 0.1
    budget_s: float = 200.0      # phases are skipped once they no longer fit in this
    hard_limit_s: float = 225.0  # watchdog: print what was gathered and exit
    device: str = "cuda"


DRY = Config(layers=2, hidden=256, q_heads=4, kv_heads=2, head_dim=64, mlp=512, vocab=1000, context=32,
             batch_sizes=(1, 4), decode_window_s=0.3, idle_s=0.3, loaded_idle_s=0.2, counter_probe_s=0.2,
             prefill_batch=2, prefill_tokens=32, prefill_window_s=0.2, sampler_interval_s=0.02, budget_s=120.0,
             hard_limit_s=150.0, device="cpu")
DRY_POWER_W = 150.0


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    cfg: Config
    dry_run: bool
    t_start: float = field(default_factory=time.monotonic)
    doc: dict[str, Any] = field(default_factory=dict)
    phase: str = "start"

    def remaining_s(self) -> float:
        return self.cfg.budget_s - (time.monotonic() - self.t_start)

    def error(self, where: str, exc: BaseException) -> str:
        text = f"{where}: {type(exc).__name__}: {exc}"
        self.doc["errors"].append(text)
        log(text + "\n" + "".join(traceback.format_exception(exc))[-2000:])
        return text

    def fits(self, where: str, need_s: float) -> bool:
        if self.remaining_s() >= need_s:
            return True
        self.doc["skipped"].append(f"{where}: needs ~{need_s:.0f} s, {self.remaining_s():.0f} s of budget left")
        log(f"skipping {where}: time budget")
        return False


def emit(doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, default=str)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(text + "\n")
    print(text, flush=True)


def start_watchdog(run: Run) -> threading.Timer:
    def fire() -> None:
        try:
            run.doc["errors"].append(f"hard time limit {run.cfg.hard_limit_s:.0f} s hit during phase {run.phase!r}; "
                                     "partial results")
            run.doc["elapsed_s"] = time.monotonic() - run.t_start
            emit(run.doc)
        finally:
            os._exit(3)

    timer = threading.Timer(run.cfg.hard_limit_s, fire)
    timer.daemon = True
    timer.start()
    return timer


# ------------------------------------------------------------------------------------------------------------
# NVML phases
# ------------------------------------------------------------------------------------------------------------

def make_nvml(dry_run: bool) -> Any:
    if not dry_run:
        return load_nvml()
    fake = _load_module(ROOT / "tests" / "fake_nvml.py", "fake_nvml")
    FakeGpu, FakeNvml = fake.FakeGpu, fake.FakeNvml
    return FakeNvml([FakeGpu(name="Fake GPU (dry run)", power_w=DRY_POWER_W)], time.monotonic)


def nvml_info(nv: Any, index: int, probe_s: float) -> dict[str, Any]:
    """Driver, power limit, memory; and how often the energy counter changes (polled as fast as possible)."""
    info: dict[str, Any] = {}
    nv.nvmlInit()
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        extras = {
            "uuid": lambda: nv.nvmlDeviceGetUUID(h),
            "driver_version": lambda: nv.nvmlSystemGetDriverVersion(),
            "power_limit_w": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
            "memory_total_gb": lambda: nv.nvmlDeviceGetMemoryInfo(h).total / 1e9,
            "temperature_c": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        }
        for key, read in extras.items():
            try:
                value = read()
                info[key] = value.decode() if isinstance(value, bytes) else value
            except AttributeError:
                info[key] = None  # not in this pynvml / the fake
            except nv.NVMLError as exc:
                info[key] = f"unreadable: {exc}"
        try:
            changes, last, n = [], nv.nvmlDeviceGetTotalEnergyConsumption(h), 0
            t_end = time.monotonic() + probe_s
            while time.monotonic() < t_end:
                value = nv.nvmlDeviceGetTotalEnergyConsumption(h)
                n += 1
                if value != last:
                    changes.append(time.monotonic())
                    last = value
            gaps = [b - a for a, b in zip(changes, changes[1:])]
            info["energy_counter_probe"] = {
                "reads": n, "changes": len(changes), "probe_s": probe_s,
                "median_update_interval_s": statistics.median(gaps) if gaps else None,
                "max_update_interval_s": max(gaps) if gaps else None,
            }
        except nv.NVMLError as exc:
            info["energy_counter_probe"] = f"unreadable: {exc}"
    finally:
        nv.nvmlShutdown()
    return info


def window(meter: NvmlEnergyMeter, t0: float, t1: float) -> dict[str, Any]:
    """Energy, average power and the mean of NVML's own power readings over [t0, t1] (meter-clock times)."""
    energy_j = meter.energy_between(t0, t1)
    powers = [sum(s.power_w) for s in meter.samples if s.power_w is not None and t0 <= s.t_s <= t1]
    return {"window_s": t1 - t0, "energy_j": energy_j, "avg_power_w": energy_j / (t1 - t0) if t1 > t0 else None,
            "nvml_power_usage_mean_w": statistics.fmean(powers) if powers else None,
            "power_readings": len(powers)}


def idle_phase(run: Run, meter: NvmlEnergyMeter, seconds: float) -> dict[str, Any]:
    t0 = meter.sample()
    time.sleep(seconds)
    t1 = meter.sample()
    return window(meter, t0, t1)


# ------------------------------------------------------------------------------------------------------------
# The model (torch imported only after the idle phase)
# ------------------------------------------------------------------------------------------------------------

class Model:
    def __init__(self, torch: Any, cfg: Config, max_batch: int) -> None:
        self.torch, self.cfg = torch, cfg
        dev, dt = torch.device(cfg.device), torch.bfloat16
        self.device = dev
        q_dim, kv_dim = cfg.q_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim

        def weight(*shape: int) -> Any:
            return torch.empty(*shape, device=dev, dtype=dt).normal_(0.0, 0.02)

        def ones(n: int) -> Any:
            return torch.ones(n, device=dev, dtype=dt)

        self.embed = weight(cfg.vocab, cfg.hidden)
        self.layers = [{
            "attn_norm": ones(cfg.hidden),
            "wqkv": weight(q_dim + 2 * kv_dim, cfg.hidden),
            "wo": weight(cfg.hidden, q_dim),
            "mlp_norm": ones(cfg.hidden),
            "wgu": weight(2 * cfg.mlp, cfg.hidden),
            "wdown": weight(cfg.hidden, cfg.mlp),
        } for _ in range(cfg.layers)]
        self.final_norm = ones(cfg.hidden)
        self.lm_head = weight(cfg.vocab, cfg.hidden)
        self.params = sum(t.numel() for t in [self.embed, self.final_norm, self.lm_head]
                          + [t for layer in self.layers for t in layer.values()])
        # Static KV cache: [layer, sequence, kv head, position, head_dim]; context positions + 1 for the new token.
        self.cache_len = cfg.context + 1
        shape = (cfg.layers, max_batch, cfg.kv_heads, self.cache_len, cfg.head_dim)
        self.k_cache = torch.empty(shape, device=dev, dtype=dt).normal_()
        self.v_cache = torch.empty(shape, device=dev, dtype=dt).normal_()
        self.gqa_mode = self._pick_gqa_mode()

    def _pick_gqa_mode(self) -> str:
        """Prefill attention: SDPA's enable_gqa where this torch has it, else K/V repeated per query head."""
        torch, f = self.torch, self.torch.nn.functional
        q = torch.zeros(1, 4, 3, 8, device=self.device, dtype=torch.bfloat16)
        kv = torch.zeros(1, 2, 3, 8, device=self.device, dtype=torch.bfloat16)
        try:
            f.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            return "enable_gqa"
        except (TypeError, RuntimeError):
            return "repeat_interleave"

    def rms_norm(self, x: Any, w: Any, eps: float = 1e-5) -> Any:
        xf = x.float()
        return (xf * self.torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

    def mlp(self, x: Any, layer: dict[str, Any]) -> Any:
        f = self.torch.nn.functional
        gate, up = f.linear(self.rms_norm(x, layer["mlp_norm"]), layer["wgu"]).chunk(2, dim=-1)
        return x + f.linear(f.silu(gate) * up, layer["wdown"])

    def decode_step(self, tokens: Any) -> None:
        """One new token for each of len(tokens) sequences, each with cfg.context tokens already cached;
        the greedy next token is written back into `tokens` (so graph replays feed themselves)."""
        f, cfg = self.torch.nn.functional, self.cfg
        b, pos, d, g = tokens.shape[0], cfg.context, cfg.head_dim, cfg.q_heads // cfg.kv_heads
        q_dim, kv_dim = cfg.q_heads * d, cfg.kv_heads * d
        x = f.embedding(tokens, self.embed)  # [b, hidden]
        for i, layer in enumerate(self.layers):
            q, k, v = f.linear(self.rms_norm(x, layer["attn_norm"]), layer["wqkv"]).split([q_dim, kv_dim, kv_dim], -1)
            self.k_cache[i, :b, :, pos].copy_(k.view(b, cfg.kv_heads, d))
            self.v_cache[i, :b, :, pos].copy_(v.view(b, cfg.kv_heads, d))
            # q head h = group * g + j attends with kv head `group`: the g heads of a group are g query rows.
            attn = f.scaled_dot_product_attention(q.view(b, cfg.kv_heads, g, d), self.k_cache[i, :b],
                                                  self.v_cache[i, :b])
            x = x + f.linear(attn.reshape(b, q_dim), layer["wo"])
            x = self.mlp(x, layer)
        logits = f.linear(self.rms_norm(x, self.final_norm), self.lm_head)
        tokens.copy_(logits.argmax(dim=-1))

    def prefill(self, tokens: Any) -> Any:
        """Causal forward of [b, t] new tokens; K/V written to the cache; logits of the last position only."""
        f, cfg = self.torch.nn.functional, self.cfg
        b, t, d, g = tokens.shape[0], tokens.shape[1], cfg.head_dim, cfg.q_heads // cfg.kv_heads
        q_dim, kv_dim = cfg.q_heads * d, cfg.kv_heads * d
        x = f.embedding(tokens, self.embed)  # [b, t, hidden]
        for i, layer in enumerate(self.layers):
            q, k, v = f.linear(self.rms_norm(x, layer["attn_norm"]), layer["wqkv"]).split([q_dim, kv_dim, kv_dim], -1)
            q = q.view(b, t, cfg.q_heads, d).transpose(1, 2)
            k = k.view(b, t, cfg.kv_heads, d).transpose(1, 2)
            v = v.view(b, t, cfg.kv_heads, d).transpose(1, 2)
            self.k_cache[i, :b, :, :t].copy_(k)
            self.v_cache[i, :b, :, :t].copy_(v)
            if self.gqa_mode == "enable_gqa":
                attn = f.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                attn = f.scaled_dot_product_attention(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1),
                                                      is_causal=True)
            x = x + f.linear(attn.transpose(1, 2).reshape(b, t, q_dim), layer["wo"])
            x = self.mlp(x, layer)
        logits = f.linear(self.rms_norm(x[:, -1], self.final_norm), self.lm_head)
        return logits.argmax(dim=-1)


def sync(torch: Any, cfg: Config) -> None:
    if cfg.device == "cuda":
        torch.cuda.synchronize()


def decode_phase(run: Run, torch: Any, model: Model, meter: NvmlEnergyMeter, batch: int) -> dict[str, Any]:
    cfg = run.cfg
    result: dict[str, Any] = {"batch": batch, "context_tokens": cfg.context, "error": None}
    tokens = torch.randint(0, cfg.vocab, (batch,), device=model.device)
    graph = None
    if cfg.device == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model.decode_step(tokens)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model.decode_step(tokens)
            torch.cuda.synchronize()
            result["cuda_graph"] = True
        except RuntimeError as exc:
            graph = None
            result["cuda_graph"] = False
            result["cuda_graph_error"] = run.error(f"decode batch {batch}: CUDA graph capture (eager instead)", exc)
    else:
        result["cuda_graph"] = False
        model.decode_step(tokens)
    step = graph.replay if graph is not None else (lambda: model.decode_step(tokens))

    for _ in range(3):
        step()
    sync(torch, cfg)
    probe_steps = 20 if cfg.device == "cuda" else 3
    w0 = time.perf_counter()
    for _ in range(probe_steps):
        step()
    sync(torch, cfg)
    est_step_s = max((time.perf_counter() - w0) / probe_steps, 1e-6)
    # Replay in chunks of ~0.25 s until the window has lasted decode_window_s (one sync per chunk: a bubble of
    # microseconds against a quarter second); stop early only if the time budget runs out.
    chunk = max(1, math.ceil(0.25 / est_step_s)) if cfg.device == "cuda" else 1
    steps = 0
    sync(torch, cfg)
    t0 = meter.sample()
    w0 = time.perf_counter()
    while True:
        for _ in range(chunk):
            step()
        sync(torch, cfg)
        steps += chunk
        wall_s = time.perf_counter() - w0
        if wall_s >= cfg.decode_window_s or run.remaining_s() < 5.0:
            break
    t1 = meter.sample()
    result["window_complete"] = wall_s >= cfg.decode_window_s

    step_s = wall_s / steps
    w = window(meter, t0, t1)
    energy_j = w["energy_j"]
    in_window = [s for s in meter.samples if t0 <= s.t_s <= t1]
    attribution = attribute_energy([(t0, t1)] * batch, in_window, source=f"NVML energy ({meter.method})")
    shares = attribution.per_request_j
    result.update({
        "steps": steps, "wall_s": wall_s, "step_s": step_s, "inter_token_latency_s": step_s,
        "tokens_per_s": batch / step_s, **w, "j_per_token": energy_j / (steps * batch),
        "attribution": {
            "method": attribution.method, "per_sequence_j": shares[0], "sequences": batch,
            "idle_j": attribution.idle_j, "total_j": attribution.total_j,
            "all_shares_equal": max(shares) - min(shares) <= 1e-9 * max(abs(shares[0]), 1.0),
            "sum_matches_total": math.fsum(shares + [attribution.idle_j]) == attribution.total_j
                                 and math.isclose(attribution.total_j, energy_j, rel_tol=1e-9, abs_tol=1e-9),
            "per_sequence_j_per_token": shares[0] / steps,
        },
    })
    if cfg.device == "cuda":
        result["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    del graph
    return result


def prefill_phase(run: Run, torch: Any, model: Model, meter: NvmlEnergyMeter) -> dict[str, Any]:
    cfg = run.cfg
    b, t = cfg.prefill_batch, cfg.prefill_tokens
    result: dict[str, Any] = {"batch": b, "new_tokens_per_sequence": t, "error": None,
                              "gqa_mode": model.gqa_mode}
    tokens = torch.randint(0, cfg.vocab, (b, t), device=model.device)
    model.prefill(tokens)  # warm-up (kernel selection, cuBLAS workspaces)
    sync(torch, cfg)
    w0 = time.perf_counter()
    model.prefill(tokens)
    sync(torch, cfg)
    est_s = max(time.perf_counter() - w0, 1e-6)
    reps = 0
    sync(torch, cfg)
    t0 = meter.sample()
    w0 = time.perf_counter()
    while True:
        model.prefill(tokens)
        sync(torch, cfg)
        reps += 1
        wall_s = time.perf_counter() - w0
        if wall_s >= cfg.prefill_window_s or run.remaining_s() < est_s + 3.0:
            break
    t1 = meter.sample()
    result["window_complete"] = wall_s >= cfg.prefill_window_s
    w = window(meter, t0, t1)
    n_tokens = reps * b * t
    result.update({"forwards": reps, "wall_s": wall_s, "forward_s": wall_s / reps,
                   "tokens_per_s": n_tokens / wall_s, **w, "j_per_token": w["energy_j"] / n_tokens})
    return result


# ------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, fake NVML (for testing)")
    parser.add_argument("--budget-s", type=float, default=None, help="phase time budget (default 200; dry 120)")
    args = parser.parse_args(argv)
    cfg = DRY if args.dry_run else Config()
    if args.budget_s is not None:
        cfg = Config(**{**asdict(cfg), "budget_s": args.budget_s, "hard_limit_s": args.budget_s + 25.0})
    run = Run(cfg, args.dry_run)
    doc = run.doc
    doc.update({"schema": SCHEMA, "dry_run": args.dry_run, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "python": platform.python_version(), "host": platform.node(),
                "config": {**asdict(cfg), "batch_sizes": list(cfg.batch_sizes)}, "errors": [], "skipped": []})
    doc.update({"nvml": None, "idle_before_work": None, "torch": None, "model": None, "idle_loaded": None,
                "decode": [], "prefill": None})
    watchdog = start_watchdog(run)

    meter: NvmlEnergyMeter | None = None
    try:
        # -- nvml ----------------------------------------------------------------------------------------------
        run.phase = "nvml"
        try:
            nv = make_nvml(args.dry_run)
            ok, reason = NvmlEnergyMeter.available(nvml=nv)
            doc["nvml"] = {"available": ok, "reason": reason,
                           "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
            env = None
            if not ok and "CUDA_VISIBLE_DEVICES" in os.environ:
                # e.g. a container whose NVML sees only its own GPU while CUDA_VISIBLE_DEVICES names a host index
                ok, retry = NvmlEnergyMeter.available(nvml=nv, env={})
                if ok:
                    env = {}
                    doc["nvml"]["reason"] = f"{retry} (CUDA_VISIBLE_DEVICES ignored: {reason})"
            doc["nvml"]["available"] = ok
            if not ok:
                doc["errors"].append(f"nvml: {doc['nvml']['reason']}")
            if ok:
                meter = NvmlEnergyMeter(nvml=nv, interval_s=cfg.sampler_interval_s, read_power=True, env=env)
                meter.start()
                doc["nvml"].update({"method": meter.method, "device_indices": meter.device_indices,
                                    "device_names": meter.device_names, "note": meter.note,
                                    "energy_counter_supported": meter.method == "nvml_total_energy",
                                    "sampler_interval_s": cfg.sampler_interval_s})
                doc["nvml"].update(nvml_info(nv, meter.device_indices[0], cfg.counter_probe_s))
        except Exception as exc:  # NvmlUnavailableError, any NVMLError: recorded, the torch phases still run
            run.error("nvml", exc)
        log(f"nvml: {doc['nvml']}")

        # -- idle before work -----------------------------------------------------------------------------------
        run.phase = "idle_before_work"
        if meter is not None and run.fits("idle_before_work", cfg.idle_s + 1):
            try:
                doc["idle_before_work"] = idle_phase(run, meter, cfg.idle_s)
                log(f"idle: {doc['idle_before_work']}")
            except Exception as exc:
                run.error("idle_before_work", exc)

        # -- torch and the model ----------------------------------------------------------------------------------
        run.phase = "model"
        torch = model = None
        try:
            import torch  # noqa: PLC0415 - after the idle phase on purpose

            doc["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
            if cfg.device == "cuda":
                if not torch.cuda.is_available():
                    raise RuntimeError("torch.cuda.is_available() is False")
                props = torch.cuda.get_device_properties(0)
                doc["torch"]["device_name"] = props.name
                doc["torch"]["device_uuid"] = str(getattr(props, "uuid", None))  # compare with nvml.uuid
                free_b, total_b = torch.cuda.mem_get_info()
                doc["torch"]["memory_free_gb_before"] = free_b / 1e9
                doc["torch"]["memory_total_gb"] = total_b / 1e9
            torch.set_grad_enabled(False)
            w0 = time.perf_counter()
            model = Model(torch, cfg, max(cfg.batch_sizes + (cfg.prefill_batch,)))
            sync(torch, cfg)
            doc["model"] = {"params": model.params, "params_b": model.params / 1e9, "dtype": "bfloat16",
                            "weights": "random normal(0, 0.02), made on the device",
                            "kv_cache_gb": 2 * model.k_cache.numel() * 2 / 1e9, "cache_positions": model.cache_len,
                            "build_s": time.perf_counter() - w0, "decode_attention": "sdpa, q heads grouped per kv head",
                            "prefill_gqa_mode": model.gqa_mode, "rotary": "skipped"}
            if cfg.device == "cuda":
                doc["model"]["memory_allocated_gb"] = torch.cuda.memory_allocated() / 1e9
            log(f"model: {doc['model']}")
        except Exception as exc:
            run.error("model", exc)
            model = None

        if meter is not None and model is not None and run.fits("idle_loaded", cfg.loaded_idle_s + 1):
            run.phase = "idle_loaded"
            try:
                doc["idle_loaded"] = idle_phase(run, meter, cfg.loaded_idle_s)
            except Exception as exc:
                run.error("idle_loaded", exc)

        # -- decode -----------------------------------------------------------------------------------------------
        if model is not None and meter is not None:
            for batch in cfg.batch_sizes:
                run.phase = f"decode batch {batch}"
                if not run.fits(run.phase, cfg.decode_window_s * 1.1 + 8):
                    continue
                try:
                    result = decode_phase(run, torch, model, meter, batch)
                except Exception as exc:
                    result = {"batch": batch, "error": run.error(run.phase, exc)}
                doc["decode"].append(result)
                log(f"{run.phase}: " + json.dumps({k: result.get(k) for k in
                                                   ("step_s", "tokens_per_s", "avg_power_w", "j_per_token")}))
                if cfg.device == "cuda":
                    torch.cuda.empty_cache()

        # -- prefill ----------------------------------------------------------------------------------------------
            run.phase = "prefill"
            if run.fits("prefill", cfg.prefill_window_s + 8):
                try:
                    doc["prefill"] = prefill_phase(run, torch, model, meter)
                except Exception as exc:
                    doc["prefill"] = {"error": run.error("prefill", exc)}
                log(f"prefill: {doc['prefill']}")
        elif meter is None:
            doc["skipped"].append("decode, prefill: no NVML energy meter")
    finally:
        run.phase = "finish"
        if meter is not None:
            try:
                meter.stop()
            except Exception as exc:
                run.error("meter.stop", exc)
            doc["meter"] = {"samples": len(meter.samples), "duration_s": meter.duration_s,
                            "energy_j": meter.energy_j, "counter_resets": [asdict(r) for r in meter.counter_resets],
                            "errors": meter.errors, "unavailable": meter.unavailable}
        watchdog.cancel()
        doc["elapsed_s"] = time.monotonic() - run.t_start
        emit(doc)
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
