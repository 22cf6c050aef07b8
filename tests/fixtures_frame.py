"""Deterministic DataFrames in the CSV schema of docs/architecture.md, for tests and benchmarks.

`fixture_frame()` is small and hand-made: every number below is chosen so that the expectations in
tests/test_report.py and tests/test_dashboards.py can be worked out by hand (the sums are written next to
the data). `synthetic_frame(n_rows)` is large and random-but-seeded, for benchmarks/bench_report.py.
Others may import both.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from wattbench.energy.lenses.simulated import PROFILE_COLUMNS
from wattbench.analysis.schema import REQUEST_COLUMNS

GEMINI = "gemini/gemini-2.5-flash"
LOCAL = "local/smollm2-135m"

# The CSV columns, in the order of docs/architecture.md: the writers' own lists.
ALL_COLUMNS: tuple[str, ...] = REQUEST_COLUMNS + PROFILE_COLUMNS

# Two made-up profiles (test data, not real hardware claims). compute_kwh_per_token and idle_kwh_per_request
# drive the per-row energy: compute = total_tokens * compute_kwh_per_token, idle = idle_kwh_per_request,
# pue_overhead = (pue - 1) * (compute + idle).
FIXTURE_PROFILES: dict[str, dict] = {
    "T4_COLAB": dict(gpu="NVIDIA T4", gpu_count=1, datacenter="test-iowa", location="Iowa, US", tdp_w=70.0,
                     idle_w=10.0, pue=1.25, grid_gco2e_per_kwh=400.0, electricity_usd_per_kwh=0.10,
                     compute_kwh_per_token=1e-7, idle_kwh_per_request=2e-5, sim_s_per_token=0.01),
    "A100_SIMULATED": dict(gpu="NVIDIA A100 80GB", gpu_count=2, datacenter="test-stockholm",
                           location="Stockholm, SE", tdp_w=400.0, idle_w=50.0, pue=1.1,
                           grid_gco2e_per_kwh=50.0, electricity_usd_per_kwh=0.20,
                           compute_kwh_per_token=5e-8, idle_kwh_per_request=5e-5, sim_s_per_token=0.002),
}

# One dict per request. Gemini: r1..r4 succeed with total_tokens 50+100+200+50 = 400 and cost_usd
# 0.0001+0.0002+0.0004+0.00005 = 0.00075; r5 failed (429). Local: r6, r7 succeed with 30+50 = 80 tokens.
# tpot_s = (latency_s - ttft_s) / (completion_tokens - 1) = 0.02 everywhere it is defined.
_NAN = math.nan
_REQUESTS: list[dict] = [
    dict(run_id="run-a", request_id="r1", prompt_id="p1", repeat=0, category="factual", route="Flash-Precise",
         model=GEMINI, success=True, status_code=200, t_start_s=0.0, latency_s=1.0, ttft_s=0.2,
         prompt_tokens=9, completion_tokens=41, cost_usd=0.0001, grader="contains", correct=True,
         provider_energy_kwh=4.1e-5),
    dict(run_id="run-a", request_id="r2", prompt_id="p2", repeat=0, category="factual", route="Flash-Precise",
         model=GEMINI, success=True, status_code=200, t_start_s=1.0, latency_s=2.0, ttft_s=0.4,
         prompt_tokens=19, completion_tokens=81, cost_usd=0.0002, grader="contains", correct=False,
         provider_energy_kwh=8.1e-5),
    dict(run_id="run-a", request_id="r3", prompt_id="p3", repeat=0, category="code", route="Flash-Coder",
         model=GEMINI, success=True, status_code=200, t_start_s=3.0, latency_s=4.0, ttft_s=0.6,
         prompt_tokens=29, completion_tokens=171, cost_usd=0.0004, grader=None, correct=None,
         provider_energy_kwh=1.71e-4),
    dict(run_id="run-a", request_id="r4", prompt_id="p4", repeat=0, category="code", route="Flash-Coder",
         model=GEMINI, success=True, status_code=200, t_start_s=7.0, latency_s=1.5, ttft_s=0.3,
         prompt_tokens=49, completion_tokens=1, cost_usd=0.00005, grader=None, correct=None,
         provider_energy_kwh=1e-6),
    dict(run_id="run-a", request_id="r5", prompt_id="p5", repeat=0, category="code", route="Flash-Coder",
         model=GEMINI, success=False, status_code=429, t_start_s=8.0, latency_s=_NAN, ttft_s=_NAN,
         prompt_tokens=_NAN, completion_tokens=_NAN, cost_usd=_NAN, grader=None, correct=None,
         provider_energy_kwh=_NAN, error="rate limited (429) after 3 attempts"),
    dict(run_id="run-b", request_id="r6", prompt_id="p1", repeat=0, category="factual", route="Flash-Precise",
         model=LOCAL, success=True, status_code=200, t_start_s=0.0, latency_s=0.5, ttft_s=0.1,
         prompt_tokens=9, completion_tokens=21, cost_usd=0.0, grader="contains", correct=True,
         provider_energy_kwh=_NAN, measured_energy_kwh=1e-6, measured_energy_method="cpu_time_estimate"),
    dict(run_id="run-b", request_id="r7", prompt_id="p2", repeat=0, category="factual", route="Flash-Precise",
         model=LOCAL, success=True, status_code=200, t_start_s=0.5, latency_s=1.5, ttft_s=0.7,
         prompt_tokens=9, completion_tokens=41, cost_usd=0.0, grader="contains", correct=True,
         provider_energy_kwh=_NAN, measured_energy_kwh=3e-6, measured_energy_method="cpu_time_estimate"),
]


def _request_row(req: dict) -> dict:
    """Complete one hand-written request with the derived per-request columns."""
    row = {col: None for col in REQUEST_COLUMNS}
    row.update(req)
    ok = bool(req["success"])
    completion = req["completion_tokens"]
    row["total_tokens"] = req["prompt_tokens"] + completion if ok else _NAN
    row["tpot_s"] = (req["latency_s"] - req["ttft_s"]) / (completion - 1) if ok and completion >= 2 else _NAN
    row["tokens_per_s"] = completion / req["latency_s"] if ok else _NAN
    row["prompt"] = f"prompt {req['prompt_id']}"
    row["route_reason"] = f"keyword rule for {req['route']}"
    row["temperature"] = 0.1 if req["route"] == "Flash-Precise" else 0.3
    row["error"] = req.get("error")
    row["attempts"] = 3 if not ok else 1
    row["retry_wait_s"] = 2.0 if not ok else 0.0
    row["started_at"] = pd.Timestamp("2026-11-27T12:00:00Z") + pd.Timedelta(seconds=req["t_start_s"])
    row["token_source"] = "provider" if ok else None
    row["expected"] = "yes" if req["grader"] else None
    row["response_text"] = f"answer to {req['prompt_id']}" if ok else None
    row.setdefault("measured_energy_kwh", _NAN)
    pe = req["provider_energy_kwh"]
    row["provider_energy_kwh_min"] = pe * 0.5
    row["provider_energy_kwh_max"] = pe * 2.0
    row["provider_carbon_gco2e"] = pe * 300.0
    row["provider_carbon_gco2e_min"] = pe * 0.5 * 300.0
    row["provider_carbon_gco2e_max"] = pe * 2.0 * 300.0
    return row


def _profile_columns(name: str, spec: dict, req: dict) -> dict:
    """The simulated-lens columns of one request on one fixture profile (empty energy for a failed request)."""
    cols = {k: spec[k] for k in ("gpu", "gpu_count", "datacenter", "location", "tdp_w", "idle_w", "pue",
                                 "grid_gco2e_per_kwh", "electricity_usd_per_kwh")}
    cols["profile"] = name
    cols["energy_method"] = "roofline"
    if not req["success"]:
        cols.update({c: _NAN for c in PROFILE_COLUMNS if c not in cols})
        return cols
    total_tokens = req["prompt_tokens"] + req["completion_tokens"]
    compute = total_tokens * spec["compute_kwh_per_token"]
    idle = spec["idle_kwh_per_request"]
    overhead = (spec["pue"] - 1.0) * (compute + idle)
    energy = compute + idle + overhead
    carbon = energy * spec["grid_gco2e_per_kwh"]
    energy_cost = energy * spec["electricity_usd_per_kwh"]
    cols.update(
        sim_latency_s=req["completion_tokens"] * spec["sim_s_per_token"], sim_batch_size=1, idle_s=1.0,
        compute_energy_kwh=compute, idle_energy_kwh=idle, pue_overhead_kwh=overhead,
        energy_kwh=energy, energy_kwh_min=energy * 0.5, energy_kwh_max=energy * 2.0,
        carbon_gco2e=carbon, carbon_gco2e_min=carbon * 0.5, carbon_gco2e_max=carbon * 2.0,
        energy_cost_usd=energy_cost, total_cost_usd=req["cost_usd"] + energy_cost,
    )
    return cols


def fixture_frame() -> pd.DataFrame:
    """14 rows: 7 requests (5 Gemini incl. one failure, 2 local) x 2 profiles, in the CSV schema.

    Hand sums used by the tests (Gemini, successful rows):
      T4_COLAB: compute 400*1e-7 = 4e-5, idle 4*2e-5 = 8e-5, PUE overhead 0.25*1.2e-4 = 3e-5,
        energy 1.5e-4 kWh, carbon 0.06 g, energy cost 1.5e-5 $, total cost 0.000765 $.
      A100_SIMULATED: compute 2e-5, idle 2e-4, overhead 2.2e-5, energy 2.42e-4 kWh, carbon 0.0121 g,
        energy cost 4.84e-5 $, total cost 0.0007984 $.
    """
    rows = []
    for req in _REQUESTS:
        base = _request_row(req)
        for name, spec in FIXTURE_PROFILES.items():
            rows.append({**base, **_profile_columns(name, spec, req)})
    frame = pd.DataFrame(rows, columns=list(ALL_COLUMNS))
    frame["correct"] = frame["correct"].astype("boolean")
    return frame


def synthetic_frame(n_rows: int, *, n_profiles: int = 4, seed: int = 0, text_chars: int = 140) -> pd.DataFrame:
    """About n_rows rows (requests x n_profiles) of plausible random data in the CSV schema, seeded;
    response_text is text_chars long."""
    rng = np.random.default_rng(seed)
    n_req = max(1, n_rows // n_profiles)
    routes = np.array(["Flash-Precise", "Flash-Coder", "Flash-Creative", "Flash-Analyst", "Flash-Balanced"])
    models = np.array([GEMINI, LOCAL])
    route_idx = rng.integers(0, len(routes), n_req)
    route = routes[route_idx]
    category = np.array(["factual", "code", "creative", "analysis", "general"])[route_idx]
    model = models[rng.integers(0, len(models), n_req)]
    success = rng.random(n_req) > 0.03
    prompt_tokens = rng.integers(8, 400, n_req).astype(float)
    completion = rng.integers(1, 800, n_req).astype(float)
    ttft = rng.gamma(2.0, 0.15, n_req)
    latency = ttft + completion * rng.uniform(0.004, 0.03, n_req)
    t_start = np.cumsum(rng.exponential(0.5, n_req))
    for arr in (prompt_tokens, completion, ttft, latency):
        arr[~success] = np.nan
    total = prompt_tokens + completion
    tpot = np.full(n_req, np.nan)
    multi = completion >= 2
    tpot[multi] = (latency[multi] - ttft[multi]) / (completion[multi] - 1)
    cost = np.where(model == GEMINI, prompt_tokens * 0.30e-6 + completion * 2.50e-6, 0.0)
    graded = rng.random(n_req) < 0.5
    correct = pd.array(np.where(graded, rng.random(n_req) < 0.8, False), dtype="boolean")
    correct[~graded | ~success] = pd.NA
    provider = np.where(model == GEMINI, completion * 1e-6, np.nan)
    measured = np.where(model == LOCAL, completion * 2e-8, np.nan)
    ids = np.char.add("req-", np.arange(n_req).astype(str))
    base = pd.DataFrame({
        "run_id": "run-synthetic", "request_id": ids, "prompt_id": np.char.add("p", (np.arange(n_req) % 40).astype(str)),
        "repeat": np.arange(n_req) // 40, "prompt": "Explain the difference between a list and a tuple in Python.",
        "category": category, "route": route, "route_reason": "keyword rule", "temperature": 0.3, "model": model,
        "success": success, "error": np.where(success, None, "HTTP 429: rate limited"),
        "status_code": np.where(success, 200, 429), "attempts": np.where(success, 1, 3),
        "retry_wait_s": np.where(success, 0.0, 4.0),
        "started_at": (pd.Timestamp("2026-11-27T12:00:00Z") + pd.to_timedelta(t_start, unit="s")).astype(str),
        "t_start_s": t_start, "latency_s": latency, "ttft_s": ttft, "tpot_s": tpot,
        "tokens_per_s": completion / latency, "prompt_tokens": prompt_tokens, "completion_tokens": completion,
        "total_tokens": total, "token_source": "provider", "cost_usd": np.where(success, cost, np.nan),
        "expected": np.where(graded, "42", None), "grader": np.where(graded, "contains", None), "correct": correct,
        "response_text": ("A list is mutable; a tuple is not. " * (text_chars // 35 + 1))[:text_chars], "measured_energy_kwh": measured,
        "measured_energy_method": np.where(model == LOCAL, "cpu_time_estimate", None),
        "gpu_energy_kwh": np.nan, "gpu_energy_method": None, "gpu_energy_devices": None,
        "provider_energy_kwh": provider, "provider_energy_kwh_min": provider * 0.5,
        "provider_energy_kwh_max": provider * 2, "provider_carbon_gco2e": provider * 300,
        "provider_carbon_gco2e_min": provider * 150, "provider_carbon_gco2e_max": provider * 600,
    })
    gpus = [("NVIDIA T4", 70.0, 10.0, 1.12, 450.0, 0.10), ("NVIDIA A100 80GB", 400.0, 50.0, 1.1, 50.0, 0.12),
            ("NVIDIA L40S", 350.0, 35.0, 1.2, 300.0, 0.09), ("NVIDIA H100 SXM", 700.0, 70.0, 1.1, 120.0, 0.11)]
    frames = []
    for i in range(n_profiles):
        gpu, tdp, idle_w, pue, grid, price = gpus[i % len(gpus)]
        sim = latency * (0.3 + 0.2 * i)
        compute = total * (tdp / 1e3) * 1e-6
        idle = np.where(success, idle_w / 1e3 * 0.5 / 3600, np.nan)
        overhead = (pue - 1) * (compute + idle)
        energy = compute + idle + overhead
        carbon = energy * grid
        energy_cost = energy * price
        frames.append(base.assign(
            profile=f"PROFILE_{i}", gpu=gpu, gpu_count=1 + i % 2, datacenter=f"dc-{i}", location=f"Region {i}",
            tdp_w=tdp, idle_w=idle_w, pue=pue, grid_gco2e_per_kwh=grid, electricity_usd_per_kwh=price,
            energy_method="roofline", sim_latency_s=sim, sim_batch_size=1, idle_s=0.5, compute_energy_kwh=compute,
            idle_energy_kwh=idle, pue_overhead_kwh=overhead, energy_kwh=energy, energy_kwh_min=energy * 0.7,
            energy_kwh_max=energy * 1.4, carbon_gco2e=carbon, carbon_gco2e_min=carbon * 0.7,
            carbon_gco2e_max=carbon * 1.4, energy_cost_usd=energy_cost,
            total_cost_usd=np.where(success, cost + energy_cost, np.nan),
        ))
    return pd.concat(frames, ignore_index=True)[list(ALL_COLUMNS)]
