"""Fit roofline.py's efficiencies to the ML.ENERGY v3 measurements; leave-one-model-out (LOMO) evaluation.

    .venv/bin/python fit_calibration.py          # fit, LOMO, derive the range sets, write efficiency.json

Method: bounded non-linear least squares (scipy.optimize.least_squares, trust-region reflective, soft-L1 loss)
on log(pred / measured) of J per output token and of median inter-token latency (decode_s_per_token_median),
one residual each per configuration, every parameter inside its physical bounds (PARAMS). Hybrid
(Mamba-Transformer) rows are left out of every fit: parameter counts cannot describe their layers; they are
still predicted and reported. The model sees only what the issue's evaluation passes: parameter counts,
bytes per parameter, GPU, GPU count, round(avg_batch), round(avg_out_len) and a fixed prompt length.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from wattbench.energy import roofline as rl

HERE = Path(__file__).resolve().parent
#: ML.ENERGY Leaderboard v3 measurements (README.md beside it): a copy of shared/data/mlenergy_v3_calibration.csv.
DATA_PATH = HERE / "mlenergy_v3_calibration.csv"
GPU_KEYS = {"H100": "H100_SXM", "B200": "B200"}
PROMPT_TOKENS = 500          # lm-arena-chat prompts: short chats, a few hundred tokens (README of the data)
HYBRID_ARCH = "Mamba-Transformer Hybrid"
FITTED_GPU_KEYS = ("B200",)  # H100_SXM is the reference (factors 1); 'default' = the reference


@dataclass(frozen=True)
class Param:
    name: str        # Efficiency field, or "<GPU key>.<GPUFactors field>"
    low: float
    high: float
    init: float
    why: str         # physical meaning of the bounds


PARAMS: tuple[Param, ...] = (
    Param("hbm_fraction", 0.50, 0.95, 0.85, "achieved / datasheet HBM bandwidth, weight streaming"),
    Param("kv_hbm_fraction", 0.30, 0.90, 0.55, "achieved / datasheet HBM bandwidth, paged KV reads"),
    Param("mfu", 0.20, 0.80, 0.60, "achieved / dense bf16 tensor peak"),
    Param("fp8_mfu_factor", 0.50, 1.00, 0.80, "fp8 MFU relative to bf16 MFU"),
    Param("fp8_hbm_factor", 0.50, 1.00, 0.90, "fp8 weight-streaming efficiency relative to bf16"),
    Param("moe_compute_factor", 0.20, 1.00, 0.70, "grouped expert GEMM efficiency relative to dense"),
    Param("moe_hbm_factor", 0.50, 1.00, 0.90, "expert weight-read efficiency relative to dense"),
    Param("allreduce_latency_nvlink_s", 5e-6, 60e-6, 15e-6, "small all-reduce latency on NVLink"),
    Param("step_overhead_s", 0.0, 6e-3, 0.6e-3, "CPU work per engine step"),
    Param("per_sequence_overhead_s", 0.0, 60e-6, 20e-6, "CPU work per running sequence per step"),
    Param("layer_kernel_s", 0.0, 100e-6, 20e-6, "fixed kernel time per layer"),
    Param("moe_layer_kernel_s", 0.0, 300e-6, 80e-6, "extra fixed kernel time per MoE layer"),
    Param("power_memory_coeff", 0.0, 1.0, 0.5, "share of TDP-idle while HBM streams"),
    Param("power_compute_coeff", 0.0, 1.0, 1.0, "share of TDP-idle while tensor cores are busy"),
    Param("power_sync_coeff", 0.0, 1.0, 0.5, "share of TDP-idle in latency-bound kernels / all-reduces"),
    Param("B200.hbm_factor", 0.60, 1.10, 1.0, "B200 bandwidth efficiency relative to H100 (software maturity)"),
    Param("B200.kernel_factor", 0.50, 2.00, 1.0, "B200 per-layer kernel time relative to H100"),
    Param("B200.power_factor", 0.50, 1.50, 1.0, "B200 power coefficients relative to H100"),
)
EFF_NAMES = [p.name for p in PARAMS if "." not in p.name]


@dataclass(frozen=True)
class Row:
    model: str
    arch: str
    gpu: str
    num_gpus: int
    active_b: float
    total_b: float
    bytes_per_param: float
    batch: int
    out_len: int
    j_per_token: float
    median_itl_s: float
    avg_power_w: float


def load_rows(path: Path = DATA_PATH) -> list[Row]:
    """The measured configurations, with the inputs the evaluation passes to simulate_inference."""
    with path.open(newline="") as f:
        return [Row(r["model"], r["arch"], r["gpu"], int(r["num_gpus"]), float(r["active_b"]), float(r["total_b"]),
                    1.0 if r["precision"] == "fp8" else 2.0, max(1, round(float(r["avg_batch"]))),
                    round(float(r["avg_out_len"])), float(r["j_per_token"]), float(r["median_itl_ms"]) / 1e3,
                    float(r["avg_power_w"])) for r in csv.DictReader(f)]


def sets_from_vector(x: np.ndarray) -> tuple[rl.Efficiency, dict[str, rl.GPUFactors]]:
    """Efficiency and GPU factors from a parameter vector ordered as PARAMS."""
    values = dict(zip([p.name for p in PARAMS], map(float, x)))
    eff = rl.efficiency_from_dict({k: values[k] for k in EFF_NAMES})
    factors = {"H100_SXM": rl.GPUFactors(), "default": rl.GPUFactors()}
    for key in FITTED_GPU_KEYS:
        factors[key] = rl.GPUFactors(**{k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(key + ".")})
    return eff, factors


_GPUS = rl.load_gpus()


def predict(rows: list[Row], eff: rl.Efficiency, factors: dict[str, rl.GPUFactors],
            prompt_tokens: int = PROMPT_TOKENS) -> np.ndarray:
    """(n, 4) array: J/token, mean ITL s, median ITL s, W (all GPUs), from the same path as simulate_inference."""
    out = np.empty((len(rows), 4))
    for i, r in enumerate(rows):
        gpu = _GPUS[GPU_KEYS[r.gpu]]
        shape = rl.model_shape(active_params_b=r.active_b, total_params_b=r.total_b)
        batch = rl.effective_batch_size(gpu, r.num_gpus, shape, r.bytes_per_param, r.batch, prompt_tokens, r.out_len)
        p = rl._simulate_point(gpu, r.num_gpus, shape, r.bytes_per_param, batch, prompt_tokens, r.out_len, eff,
                               rl.gpu_factors(gpu, factors))
        out[i] = (p.gpu_energy_j_per_token, p.decode_s_per_token, p.median_step_s, p.gpu_power_w * r.num_gpus)
    return out


#: Weight of the weak prior pulling each parameter towards its literature value (Param.init), per parameter, in
#: units of its bound width; keeps poorly identified parameters (seen in few models) near physical priors.
PRIOR_WEIGHT = float(__import__("os").environ.get("CALIB_PRIOR_WEIGHT", "0"))


def prior_residuals(x: np.ndarray) -> np.ndarray:
    """PRIOR_WEIGHT x (x - init) / (high - low) for every parameter."""
    return np.array([PRIOR_WEIGHT * (v - p.init) / (p.high - p.low) for v, p in zip(x, PARAMS)])


def residuals(x: np.ndarray, rows: list[Row], prompt_tokens: int) -> np.ndarray:
    eff, factors = sets_from_vector(x)
    pred = predict(rows, eff, factors, prompt_tokens)
    meas_j = np.array([r.j_per_token for r in rows])
    meas_itl = np.array([r.median_itl_s for r in rows])
    return np.concatenate([np.log(pred[:, 0] / meas_j), np.log(pred[:, 2] / meas_itl), prior_residuals(x)])


def fit(rows: list[Row], prompt_tokens: int = PROMPT_TOKENS, x0: np.ndarray | None = None) -> np.ndarray:
    """Bounded robust least squares of log errors; hybrid rows excluded."""
    train = [r for r in rows if r.arch != HYBRID_ARCH]
    low = np.array([p.low for p in PARAMS])
    high = np.array([p.high for p in PARAMS])
    x0 = np.array([p.init for p in PARAMS]) if x0 is None else x0
    x0 = np.clip(x0, low + 1e-9 * (high - low), high - 1e-9 * (high - low))
    scale = np.maximum(np.abs(x0), (high - low) * 0.05)
    res = least_squares(residuals, x0, bounds=(low, high), args=(train, prompt_tokens), loss="soft_l1",
                        f_scale=0.2, x_scale=scale, diff_step=1e-3, max_nfev=400)
    return res.x


def lomo(rows: list[Row], prompt_tokens: int = PROMPT_TOKENS, x0: np.ndarray | None = None
         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Held-out predictions (n, 4) for every row, each from a fit without its model; and the per-model fits."""
    pred = np.empty((len(rows), 4))
    fits: dict[str, np.ndarray] = {}
    for model in sorted({r.model for r in rows}):
        x = fit([r for r in rows if r.model != model], prompt_tokens, x0)
        fits[model] = x
        idx = [i for i, r in enumerate(rows) if r.model == model]
        eff, factors = sets_from_vector(x)
        pred[idx] = predict([rows[i] for i in idx], eff, factors, prompt_tokens)
    return pred, fits


def error_factor(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """max(pred / meas, meas / pred)."""
    return np.maximum(pred / meas, meas / pred)


# ---------------------------------------------------------------------------------------- range sets
#: Quantiles of the LOMO log residuals that the OPTIMISTIC / PESSIMISTIC sets are placed at.
RANGE_QUANTILES = (0.05, 0.95)
#: Time-like fields shortened by the optimistic set (and lengthened by the pessimistic one) and the
#: efficiency fields raised (lowered) by the same factor; the power coefficients move with the power factor.
TIME_FIELDS = ("allreduce_latency_nvlink_s", "step_overhead_s", "per_sequence_overhead_s", "layer_kernel_s",
               "moe_layer_kernel_s")
EFFICIENCY_FIELDS = ("hbm_fraction", "kv_hbm_fraction", "mfu")
POWER_FIELDS = ("power_memory_coeff", "power_compute_coeff", "power_sync_coeff")
BOUNDS = {p.name: (p.low, p.high) for p in PARAMS}


def scaled_set(eff: rl.Efficiency, time_factor: float, power_factor: float) -> rl.Efficiency:
    """eff with every time x time_factor, every efficiency / time_factor, power coefficients x power_factor,
    each clipped to its physical bounds."""
    changes: dict[str, float] = {}
    for name in TIME_FIELDS:
        changes[name] = float(np.clip(getattr(eff, name) * time_factor, *BOUNDS[name]))
    for name in EFFICIENCY_FIELDS:
        changes[name] = float(np.clip(getattr(eff, name) / time_factor, *BOUNDS[name]))
    for name in POWER_FIELDS:
        changes[name] = float(np.clip(getattr(eff, name) * power_factor, *BOUNDS[name]))
    return replace(eff, **changes)


def range_factors(rows: list[Row], held_out: np.ndarray) -> dict[str, float]:
    """Time and power factors from the LOMO residual quantiles (hybrid rows excluded).

    ITL residual quantile -> time factor; (J residual - ITL-mean residual) quantile -> power factor.
    """
    keep = np.array([r.arch != HYBRID_ARCH for r in rows])
    meas_j = np.array([r.j_per_token for r in rows])[keep]
    meas_itl = np.array([r.median_itl_s for r in rows])[keep]
    meas_w = np.array([r.avg_power_w for r in rows])[keep]
    log_itl = np.log(meas_itl / held_out[keep, 2])
    log_w = np.log(meas_w / held_out[keep, 3])
    q_lo, q_hi = RANGE_QUANTILES
    return {"time_low": float(math.exp(np.quantile(log_itl, q_lo))),
            "time_high": float(math.exp(np.quantile(log_itl, q_hi))),
            "power_low": float(math.exp(np.quantile(log_w, q_lo))),
            "power_high": float(math.exp(np.quantile(log_w, q_hi))),
            "j_low": float(math.exp(np.quantile(np.log(meas_j / held_out[keep, 0]), q_lo))),
            "j_high": float(math.exp(np.quantile(np.log(meas_j / held_out[keep, 0]), q_hi)))}


def main() -> int:
    rows = load_rows()
    print(f"{len(rows)} rows; fitting all non-hybrid rows ...", flush=True)
    x_all = fit(rows)
    print("LOMO ...", flush=True)
    held, fits = lomo(rows)  # cold start from the priors: no information from the held-out model
    ranges = range_factors(rows, held)
    eff, factors = sets_from_vector(x_all)
    # power coefficients move by the power residual quantile; times by the latency residual quantile
    optimistic = scaled_set(eff, ranges["time_low"], ranges["power_low"])
    pessimistic = scaled_set(eff, ranges["time_high"], ranges["power_high"])
    ej = error_factor(held[:, 0], np.array([r.j_per_token for r in rows]))
    ei = error_factor(held[:, 2], np.array([r.median_itl_s for r in rows]))
    nonhyb = np.array([r.arch != HYBRID_ARCH for r in rows])
    spread = {p.name: [float(min(f[i] for f in fits.values())), float(max(f[i] for f in fits.values()))]
              for i, p in enumerate(PARAMS)}
    about = {
        "data": str(DATA_PATH) + " (ML.ENERGY Leaderboard v3, lm-arena-chat, vLLM; 183 configurations of 9 models "
                "on H100 SXM and B200)",
        "method": "scipy.optimize.least_squares (trf, soft_l1, f_scale 0.2) on log(pred/meas) of J/token and of "
                  "median ITL vs decode_s_per_token_median; inputs as the issue's evaluation: parameter counts "
                  f"only, round(avg_batch), round(avg_out_len), prompt_tokens {PROMPT_TOKENS}, bytes_per_param 1 for "
                  "fp8 else 2; every value inside its bounds; Mamba-Transformer hybrid rows excluded from the fit. "
                  "nominal = fit on all other rows. optimistic / pessimistic = nominal with times x (and "
                  "efficiencies /) the 5% / 95% quantile of the LOMO median-ITL ratio meas/pred, power coefficients "
                  "x the 5% / 95% quantile of the LOMO power ratio, clipped to the bounds.",
        "date": _dt.date.today().isoformat(),
        "lomo": {
            "j_per_token_median_error_factor_all": float(np.median(ej)),
            "j_per_token_within_1.5x_all": float(np.mean(ej <= 1.5)),
            "median_itl_median_error_factor_all": float(np.median(ei)),
            "median_itl_within_1.5x_all": float(np.mean(ei <= 1.5)),
            "j_per_token_median_error_factor_no_hybrid": float(np.median(ej[nonhyb])),
            "j_per_token_within_1.5x_no_hybrid": float(np.mean(ej[nonhyb] <= 1.5)),
            "median_itl_median_error_factor_no_hybrid": float(np.median(ei[nonhyb])),
            "median_itl_within_1.5x_no_hybrid": float(np.mean(ei[nonhyb] <= 1.5)),
            "range_factors": ranges,
            "per_parameter_min_max_over_lomo_fits": spread,
        },
        "bounds": {p.name: [p.low, p.high, p.why] for p in PARAMS},
        "script": "fit_calibration.py (bench_calibration.py prints the tables)",
    }
    out = {
        "_about": about,
        "nominal": {name: getattr(eff, name) for name in EFF_NAMES},
        "optimistic": {name: getattr(optimistic, name) for name in EFF_NAMES},
        "pessimistic": {name: getattr(pessimistic, name) for name in EFF_NAMES},
        "gpu_factors": {
            "_about": "H100_SXM is the reference (1, 1, 1); 'default' (GPUs not in the data) = the reference",
            **{k: {"hbm_factor": v.hbm_factor, "kernel_factor": v.kernel_factor, "power_factor": v.power_factor}
               for k, v in factors.items()}},
    }
    (Path(rl.EFFICIENCY_PATH)).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out["nominal"], indent=1), json.dumps(out["gpu_factors"], indent=1))
    print(json.dumps(about["lomo"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
