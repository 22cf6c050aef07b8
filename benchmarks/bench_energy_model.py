"""Check the roofline energy model against physics, reference figures and EcoLogits' fixed-batch estimate.

    .venv/bin/python benchmarks/bench_energy_model.py

Prints four tables (no timing, no network, < 2 s):
1. reference checks: each prediction next to the range it should fall in, with where the range comes from;
2. a batch sweep of Llama-3.1-8B on one H100 and Llama-3.1-70B on four, next to EcoLogits 0.11.3's GPU-energy
   formula, which assumes batch 64 whatever the server runs (ecologits/impacts/llm.py, BATCH_SIZE = 64);
3. one workload across every GPU (what `wattbench simulate --compare` prints);
4. long reasoning outputs (200 prompt + 4000 output tokens) at growing batch sizes.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wattbench import energy as gp

WORKLOAD = {"prompt_tokens": 512, "output_tokens": 512}


@dataclass(frozen=True)
class Check:
    label: str
    value: float
    low: float
    high: float
    unit: str
    source: str

    @property
    def ok(self) -> bool:
        return self.low <= self.value <= self.high


def sim(**kw: object) -> gp.InferenceEstimate:
    args: dict[str, object] = {**WORKLOAD, "datacenter": "world_average"}
    args.update(kw)
    return gp.simulate_inference(**args)  # type: ignore[arg-type]


def reference_checks() -> list[Check]:
    """Predictions next to the ranges they should fall in."""
    h100 = gp.load_gpus()["H100_SXM"]
    b1 = sim(gpu="H100_SXM", active_params_b=8, batch_size=1)
    b64 = sim(gpu="H100_SXM", active_params_b=8, batch_size=64)
    b128 = sim(gpu="H100_SXM", active_params_b=8, batch_size=128)
    l70_4 = sim(gpu="H100_SXM", num_gpus=4, active_params_b=70, batch_size=64)
    l70_8 = sim(gpu="H100_SXM", num_gpus=8, active_params_b=70, batch_size=256)
    big = sim(gpu="H100_SXM", active_params_b=8, batch_size=512)
    guide = "issue 3 physics guidance (published vLLM / ML.ENERGY measurements; workload not stated)"
    return [
        Check("8B bf16 1xH100 b=1: ITL", b1.decode_s_per_token * 1e3, 6.0, 7.0, "ms", guide),
        Check("8B b=1 ITL >= weights / HBM peak", b1.decode_s_per_token * 1e3, 16e9 / 3.35e12 * 1e3, math.inf, "ms",
              "physics: 16 GB read per token at 3.35 TB/s"),
        Check("8B b=64: ITL", b64.decode_s_per_token * 1e3, 12.0, 20.0, "ms", guide),
        Check("8B b=128: ITL", b128.decode_s_per_token * 1e3, 12.0, 20.0, "ms", guide),
        Check("8B b=64: J/token", b64.gpu_energy_j_per_token, 0.1, 0.3, "J", guide),
        Check("8B b=128: J/token", b128.gpu_energy_j_per_token, 0.1, 0.3, "J", guide),
        Check("70B bf16 4xH100 b=64: J/token", l70_4.gpu_energy_j_per_token, 0.5, 2.0, "J", guide),
        Check("70B bf16 8xH100 b=256: J/token", l70_8.gpu_energy_j_per_token, 0.5, 2.0, "J", guide),
        Check("8B b=512 power, share of TDP", big.gpu_power_w / h100.tdp_w, 0.60, 0.85, "",
              "issue 3: large-batch decode on H100 draws ~60-85% of TDP (ML.ENERGY)"),
        Check("8B b=1 power, share of TDP", b1.gpu_power_w / h100.tdp_w, 0.0, 0.60, "",
              "Splitwise (Patel et al. 2024): token phase well below TDP"),
        Check("prefill 8B 512 tok >= FLOPs / peak", b1.prefill_s * 1e3, 2 * 8e9 * 512 / 989e12 * 1e3, math.inf, "ms",
              "physics: 2 x 8e9 x 512 FLOP at 989 TFLOPS"),
    ]


def ecologits_gpu_j_per_token(active_params_b: float, total_params_b: float, batch_size: int = 64) -> float:
    """EcoLogits 0.11.3's GPU energy per output token (all GPUs it assumes), in J, at its batch size."""
    from ecologits.impacts import llm

    per_gpu_wh = llm.GPU_ENERGY_ALPHA * math.exp(llm.GPU_ENERGY_BETA * batch_size) * active_params_b \
        + llm.GPU_ENERGY_GAMMA
    memory_gb = 1.2 * total_params_b * llm.MODEL_QUANTIZATION_BITS / 8
    gpus = 2 ** math.ceil(math.log2(math.ceil(memory_gb / llm.GPU_MEMORY)))
    return per_gpu_wh * gpus * 3600.0


def main() -> int:
    print("1. Reference checks (512 prompt + 512 output tokens unless stated)")
    checks = reference_checks()
    width = max(len(c.label) for c in checks)
    for c in checks:
        high = "inf" if math.isinf(c.high) else f"{c.high:.3g}"
        print(f"  {'ok ' if c.ok else 'OUT'} {c.label:<{width}}  {c.value:8.3f} {c.unit:<2} in [{c.low:.3g}, {high}]"
              f"  <- {c.source}")
    print(f"  {sum(c.ok for c in checks)}/{len(checks)} within range\n")

    print("2. Batch sweep (512 prompt + 512 output tokens): roofline vs EcoLogits' fixed batch 64")
    print(f"  {'model':<22} {'batch':>5} {'eff':>5} {'ITL ms':>7} {'W/GPU':>6} {'J/tok':>7} {'range':>13} "
          f"{'EcoLogits J/tok':>15} {'ratio':>6}")
    for label, kw in (("8B bf16, 1 x H100", {"num_gpus": 1, "active_params_b": 8}),
                      ("70B bf16, 4 x H100", {"num_gpus": 4, "active_params_b": 70}),
                      ("405B fp8, 8 x H100", {"num_gpus": 8, "active_params_b": 405, "bytes_per_param": 1}),
                      ("30B-A3B MoE, 1 x H100", {"num_gpus": 1, "active_params_b": 3.3, "total_params_b": 30.5}),
                      ("8B bf16, 1 x B200", {"num_gpus": 1, "active_params_b": 8, "gpu": "B200"})):
        args = {"gpu": "H100_SXM", **kw}
        eco = ecologits_gpu_j_per_token(float(args["active_params_b"]),  # type: ignore[arg-type]
                                        float(args.get("total_params_b") or args["active_params_b"]))  # type: ignore[arg-type]
        for batch in (8, 64, 256, 1024):
            e = sim(batch_size=batch, **args)
            print(f"  {label:<22} {batch:>5} {e.effective_batch_size:>5} {e.decode_s_per_token * 1e3:>7.1f} "
                  f"{e.gpu_power_w:>6.0f} {e.gpu_energy_j_per_token:>7.3f} "
                  f"{e.gpu_energy_j_per_token_min:>6.3f}-{e.gpu_energy_j_per_token_max:<6.3f} {eco:>15.3f} "
                  f"{eco / e.gpu_energy_j_per_token:>6.2f}")
    print("  (EcoLogits' value does not move with the batch; ours falls as weight reads are shared.)\n")

    print("3. Llama-3.1-8B bf16, batch 64, across GPUs")
    dc = gp.load_datacenters()["world_average"]
    rows = []
    for gpu in gp.load_gpus().values():
        shape = gp.model_shape(active_params_b=8)
        n = gp.min_gpus_that_fit(gpu, shape, 2.0, 1024)
        if n is not None:
            rows.append(gp.simulate_inference(gpu=gpu, num_gpus=n, active_params_b=8, batch_size=64, datacenter=dc,
                                              **WORKLOAD))
    print("  " + gp.format_table(rows).replace("\n", "\n  "))
    print("\n4. Long reasoning outputs (200 prompt + 4000 output tokens), 8B bf16 on one H100")
    for batch in (8, 64, 128, 256):
        e = sim(gpu="H100_SXM", active_params_b=8, batch_size=batch, prompt_tokens=200, output_tokens=4000)
        print(f"  batch {batch:>4} (runs {e.effective_batch_size:>4}): ITL {e.decode_s_per_token * 1e3:6.1f} ms, "
              f"{e.gpu_power_w:4.0f} W, {e.gpu_energy_j_per_token:.3f} J/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
