"""Calibration report: the fitted efficiencies, leave-one-model-out errors, range coverage, EcoLogits on the same rows.

    .venv/bin/python bench_calibration.py            # ~2 min on 2 cores (10 fits at prompt 500, 2 more LOMOs)
    .venv/bin/python bench_calibration.py --quick    # skip the prompt-length sensitivity LOMOs

Error factor = max(pred / meas, meas / pred). LOMO: fit on 8 models, predict the 9th (fit_calibration.lomo).
The range (_min/_max) is checked through simulate_inference itself, with the efficiency.json sets.
"""
from __future__ import annotations

import math
from pathlib import Path
import sys
from collections.abc import Callable

import numpy as np

from wattbench.energy import roofline as rl


def _load_fit():
    """fit_calibration.py beside this script (a script of the repository, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "fit_calibration.py"
    spec = importlib.util.spec_from_file_location("fit_calibration", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fc = _load_fit()

TARGETS = {"j_median": 1.25, "itl_median": 1.30, "within_1.5x": 0.75}


def ecologits_gpu_j_per_token(active_params_b: float, total_params_b: float, batch_size: int) -> float:
    """EcoLogits 0.11.3's GPU energy per output token, all GPUs it assumes, in J, at `batch_size`.

    ecologits/impacts/llm.py: gpu_energy = (ALPHA x exp(BETA x batch) x active_B + GAMMA) Wh per token per GPU;
    gpu_required_count = 2 ** ceil(log2(ceil(1.2 x total_B x 16 / 8 / 80 GB))).
    """
    from ecologits.impacts import llm

    per_gpu_wh = llm.gpu_energy(model_active_parameter_count=active_params_b, output_token_count=1,
                                batch_size=batch_size, gpu_energy_alpha=llm.GPU_ENERGY_ALPHA,
                                gpu_energy_beta=llm.GPU_ENERGY_BETA, gpu_energy_gamma=llm.GPU_ENERGY_GAMMA) * 1000
    memory = llm.model_required_memory(model_total_parameter_count=total_params_b,
                                       model_quantization_bits=llm.MODEL_QUANTIZATION_BITS)
    gpus = llm.gpu_required_count(model_required_memory=memory, gpu_memory=llm.GPU_MEMORY)
    return per_gpu_wh * gpus * 3600.0


def summary(err: np.ndarray) -> str:
    return f"{np.median(err):5.2f} {np.mean(err <= 1.5):5.0%}"


def table(rows: list[fc.Row], err_j: np.ndarray, err_i: np.ndarray, key: Callable[[fc.Row], str], title: str) -> None:
    print(f"  {title:<34} {'n':>3}   J/tok med  <=1.5x   ITL med  <=1.5x")
    for group in sorted({key(r) for r in rows}):
        idx = np.array([key(r) == group for r in rows])
        ok = (np.median(err_j[idx]) <= TARGETS["j_median"] and np.median(err_i[idx]) <= TARGETS["itl_median"]
              and np.mean(err_j[idx] <= 1.5) >= TARGETS["within_1.5x"])
        print(f"  {group[:34]:<34} {idx.sum():>3}   {summary(err_j[idx])}      {summary(err_i[idx])}"
              f"   {'ok' if ok else 'MISS'}")


def print_fit() -> None:
    print("1. Fitted values (efficiency.json, all non-hybrid rows, prompt 500) with bounds")
    values = {**{n: getattr(rl.NOMINAL, n) for n in fc.EFF_NAMES},
              **{f"{k}.{f}": getattr(v, f) for k, v in rl.GPU_FACTORS.items() for f in ("hbm_factor", "kernel_factor",
                                                                                       "power_factor")}}
    for p in fc.PARAMS:
        v = values[p.name]
        at = " (at bound)" if min(abs(v - p.low), abs(v - p.high)) <= 1e-6 * max(abs(p.high), 1e-9) else ""
        lo, hi = getattr(rl.OPTIMISTIC, p.name, None), getattr(rl.PESSIMISTIC, p.name, None)
        rng = f"  optimistic {lo:.4g} / pessimistic {hi:.4g}" if lo is not None else ""
        print(f"  {p.name:<28} {v:10.4g}  in [{p.low:g}, {p.high:g}]{at}{rng}")
    print()


def coverage(rows: list[fc.Row]) -> None:
    """How many measured values lie in simulate_inference's [_min, _max] (efficiency.json range sets)."""
    cj = ci = cim = n = 0
    for r in rows:
        e = rl.simulate_inference(gpu=fc.GPU_KEYS[r.gpu], num_gpus=r.num_gpus, active_params_b=r.active_b,
                                  total_params_b=r.total_b, bytes_per_param=r.bytes_per_param, batch_size=r.batch,
                                  prompt_tokens=fc.PROMPT_TOKENS, output_tokens=r.out_len)
        n += 1
        cj += e.gpu_energy_j_per_token_min <= r.j_per_token <= e.gpu_energy_j_per_token_max
        ci += e.decode_s_per_token_min <= r.median_itl_s <= e.decode_s_per_token_max
        # the median step scales like the mean one between the sets
        lo = e.decode_s_per_token_median * e.decode_s_per_token_min / e.decode_s_per_token
        hi = e.decode_s_per_token_median * e.decode_s_per_token_max / e.decode_s_per_token
        cim += lo <= r.median_itl_s <= hi
    print(f"4. Range coverage (simulate_inference, NOMINAL fit, OPTIMISTIC/PESSIMISTIC sets), {n} configurations:")
    print(f"  J/token in [gpu_energy_j_per_token_min, _max]:      {cj}/{n} ({cj / n:.0%})")
    print(f"  median ITL in [decode_s_per_token_min, _max]:       {ci}/{n} ({ci / n:.0%})")
    print(f"  median ITL in median step x [min/mid, max/mid]:     {cim}/{n} ({cim / n:.0%})\n")


def main(argv: list[str]) -> int:
    rows = fc.load_rows()
    meas_j = np.array([r.j_per_token for r in rows])
    meas_i = np.array([r.median_itl_s for r in rows])
    print_fit()

    print(f"2. Leave-one-model-out (fit on 8 models, predict the 9th), prompt_tokens {fc.PROMPT_TOKENS}", flush=True)
    held, _ = fc.lomo(rows)
    err_j = fc.error_factor(held[:, 0], meas_j)
    err_i = fc.error_factor(held[:, 2], meas_i)
    err_mean = fc.error_factor(held[:, 1], meas_i)
    nonhyb = np.array([r.arch != fc.HYBRID_ARCH for r in rows])
    print(f"  targets: J/token median <= {TARGETS['j_median']}, ITL median <= {TARGETS['itl_median']}, "
          f">= {TARGETS['within_1.5x']:.0%} within 1.5x (J/token)")
    print(f"  overall (all 183):          J/tok {summary(err_j)}   ITL {summary(err_i)}")
    print(f"  overall (no hybrid, {nonhyb.sum()}):   J/tok {summary(err_j[nonhyb])}   ITL {summary(err_i[nonhyb])}")
    table(rows, err_j, err_i, lambda r: r.gpu, "per GPU")
    table([r for r in rows if r.arch != fc.HYBRID_ARCH], err_j[nonhyb], err_i[nonhyb], lambda r: r.gpu,
          "per GPU, no hybrid")
    table(rows, err_j, err_i, lambda r: r.arch, "per architecture")
    table(rows, err_j, err_i, lambda r: r.model, "per model (held out)")
    table(rows, err_j, err_i, lambda r: f"{r.model[:22]} {r.gpu} x{r.num_gpus}", "per deployment")
    bias_j = np.log(held[:, 0] / meas_j)
    print("  signed median log-ratio pred/meas per model (J, ITL): " + ", ".join(
        f"{m.split('-Instruct')[0][:16]} {np.median(bias_j[[r.model == m for r in rows]]):+.2f}/"
        f"{np.median(np.log(held[[r.model == m for r in rows], 2] / meas_i[[r.model == m for r in rows]])):+.2f}"
        for m in sorted({r.model for r in rows})))
    print(f"  measured median ITL vs decode_s_per_token (mean step): median error {np.median(err_mean):.2f}, "
          f"{np.mean(err_mean <= 1.5):.0%} within 1.5x; vs decode_s_per_token_median: {np.median(err_i):.2f}, "
          f"{np.mean(err_i <= 1.5):.0%}\n")

    print("3. EcoLogits 0.11.3 GPU energy formula at the true batch (round(avg_batch)), same rows")
    eco = np.array([ecologits_gpu_j_per_token(r.active_b, r.total_b, r.batch) for r in rows])
    eco64 = np.array([ecologits_gpu_j_per_token(r.active_b, r.total_b, 64) for r in rows])
    err_e = fc.error_factor(eco, meas_j)
    print(f"  overall: J/tok median error {np.median(err_e):.2f}, {np.mean(err_e <= 1.5):.0%} within 1.5x "
          f"(at its default batch 64: {np.median(fc.error_factor(eco64, meas_j)):.2f}, "
          f"{np.mean(fc.error_factor(eco64, meas_j) <= 1.5):.0%})")
    for key, name in ((lambda r: r.gpu, "GPU"), (lambda r: r.arch, "arch"), (lambda r: r.model, "model")):
        parts = []
        for group in sorted({key(r) for r in rows}):
            idx = np.array([key(r) == group for r in rows])
            parts.append(f"{group[:24]} {np.median(err_e[idx]):.2f}/{np.mean(err_e[idx] <= 1.5):.0%}")
        print(f"  per {name}: " + "; ".join(parts))
    print()

    coverage(rows)

    if "--quick" not in argv:
        print("5. Prompt-length sensitivity (LOMO refit at each prompt length; targets judged at 500)")
        for prompt in (250, 500, 1000):
            h, _ = (held, None) if prompt == fc.PROMPT_TOKENS else fc.lomo(rows, prompt)
            ej, ei = fc.error_factor(h[:, 0], meas_j), fc.error_factor(h[:, 2], meas_i)
            print(f"  prompt {prompt:>4}: J/tok {summary(ej)}  ITL {summary(ei)}   (no hybrid: J/tok "
                  f"{summary(ej[nonhyb])}  ITL {summary(ei[nonhyb])})", flush=True)
        print("  and the efficiency.json fit (prompt 500) evaluated at other prompt lengths, no refit:")
        for prompt in (250, 1000):
            p = fc.predict(rows, rl.NOMINAL, rl.GPU_FACTORS, prompt)
            print(f"  prompt {prompt:>4}: J/tok {summary(fc.error_factor(p[:, 0], meas_j))}  "
                  f"ITL {summary(fc.error_factor(p[:, 2], meas_i))}  (in-sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
