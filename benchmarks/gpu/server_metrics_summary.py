#!/usr/bin/env python3
"""Per load point of a `wattbench sweep` run with --server-metrics and --gpu-metrics (and NVML beside it): what
the server ran, the measured GPU energy per request by both meters, the simulated lens at the server's batch, and
the simulated lens self-calibrated from one reference point.

    python benchmarks/gpu/server_metrics_summary.py SWEEP_OUT --profile H200_E2E --reference c8 --json OUT.json

Reads SWEEP_OUT/sweep.json and each point's run directory: requests.jsonl, gpu_energy.jsonl (NVML shares),
dcgm_energy.jsonl (dcgm-exporter shares), server_metrics.jsonl, and the point's CSV (simulated rows of
--profile). Prints one line per point and writes the raw figures as JSON. measured J / request = (sum of the
requests' shares) / requests (idle energy excluded, as in the CSV); simulated J / request = the profile's
compute_energy_kwh per request (GPU board, no idle, no PUE) at sim_batch_size.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

J_PER_KWH = 3.6e6


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def _shares(path: Path) -> tuple[dict[str, float], list[dict[str, Any]]]:
    entries = _lines(path)
    shares = {e["key"]: float(e["gpu_energy_j"]) for e in entries if "key" in e}
    return shares, [e["session_summary"] for e in entries if "session_summary" in e]


def point_figures(point: dict[str, Any], out: Path, profile: str) -> dict[str, Any]:
    import pandas as pd

    run_dir = out / "points" / _folder(point) / "runs" / str(point.get("run_id"))
    keys = {r["key"] for r in _lines(run_dir / "requests.jsonl") if r.get("success")}
    nvml, nvml_sessions = _shares(run_dir / "gpu_energy.jsonl")
    dcgm, dcgm_sessions = _shares(run_dir / "dcgm_energy.jsonl")
    samples = _lines(run_dir / "server_metrics.jsonl")
    running = [s["running"] for s in samples if isinstance(s.get("running"), (int, float))]
    waiting = [s["waiting"] for s in samples if isinstance(s.get("waiting"), (int, float))]
    fig: dict[str, Any] = {"label": point["label"], "concurrency": point.get("concurrency"), "served": len(keys),
                           "server_running_max": max(running, default=None),
                           "server_waiting_max": max(waiting, default=None),
                           "nvml_j_per_request": _per_request(nvml, keys),
                           "dcgm_j_per_request": _per_request(dcgm, keys),
                           "nvml_total_j": sum(s["total_j"] for s in nvml_sessions) or None,
                           "dcgm_total_j": sum(s["total_j"] for s in dcgm_sessions) or None}
    if fig["nvml_total_j"] and fig["dcgm_total_j"]:
        fig["dcgm_over_nvml_total"] = fig["dcgm_total_j"] / fig["nvml_total_j"]
    if point.get("csv") and Path(point["csv"]).is_file():
        df = pd.read_csv(point["csv"])
        rows = df[(df["profile"] == profile) & df["success"].astype(bool)]
        if len(rows):
            fig["simulated_j_per_request"] = float(rows["compute_energy_kwh"].mean()) * J_PER_KWH
            fig["sim_batch_size_mean"] = float(rows["sim_batch_size"].mean())
            fig["sim_batch_source"] = ",".join(sorted(rows["sim_batch_source"].dropna().astype(str).unique())) \
                if "sim_batch_source" in rows else None
            fig["server_batch_mean"] = float(rows["server_batch"].mean()) if "server_batch" in rows else None
            fig["client_in_flight_requested"] = point.get("concurrency")
    measured = fig["nvml_j_per_request"] or fig["dcgm_j_per_request"]
    if measured and fig.get("simulated_j_per_request"):
        fig["simulated_over_measured"] = fig["simulated_j_per_request"] / measured
    return fig


def _per_request(shares: dict[str, float], keys: set[str]) -> float | None:
    got = [shares[k] for k in keys if k in shares]
    return sum(got) / len(got) if got else None


def _folder(point: dict[str, Any]) -> str:
    model = (point.get("model") or "default").replace("/", "_").replace(":", "_")
    return f"{model}__{point['label']}"


def calibrate(figures: list[dict[str, Any]], reference: str) -> float | None:
    """factor = measured / simulated at the reference point; each point's calibrated simulated / measured."""
    ref = next((f for f in figures if f["label"] == reference and f.get("simulated_over_measured")), None)
    if ref is None:
        return None
    factor = 1.0 / ref["simulated_over_measured"]
    for f in figures:
        if f.get("simulated_over_measured"):
            f["calibrated_over_measured"] = f["simulated_over_measured"] * factor
            f["within_1_25x"] = 1 / 1.25 <= f["calibrated_over_measured"] <= 1.25
    return factor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--profile", default="H200_E2E")
    p.add_argument("--reference", default="c8", help="the point the calibration comes from (default c8)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    state = json.loads((args.out / "sweep.json").read_text(encoding="utf-8"))
    figures = [point_figures(pt, args.out, args.profile) for pt in state["points"] if pt.get("run_id")]
    factor = calibrate(figures, args.reference)

    def f(value: Any, spec: str = ".3g") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    print(f"{'point':>6} {'served':>6} {'srv run max':>11} {'srv wait max':>12} {'srv batch':>9} {'sim batch':>9} "
          f"{'NVML J/req':>10} {'dcgm J/req':>10} {'dcgm/NVML':>9} {'sim J/req':>9} {'sim/meas':>8} "
          f"{'calib/meas':>10}")
    for x in figures:
        print(f"{x['label']:>6} {x['served']:>6} {f(x['server_running_max']):>11} {f(x['server_waiting_max']):>12} "
              f"{f(x.get('server_batch_mean')):>9} {f(x.get('sim_batch_size_mean')):>9} "
              f"{f(x['nvml_j_per_request']):>10} {f(x['dcgm_j_per_request']):>10} "
              f"{f(x.get('dcgm_over_nvml_total'), '.4f'):>9} {f(x.get('simulated_j_per_request')):>9} "
              f"{f(x.get('simulated_over_measured'), '.3f'):>8} {f(x.get('calibrated_over_measured'), '.3f'):>10}")
    print(f"calibration factor (measured / simulated at {args.reference}): {f(factor, '.4f')}")
    others = [x for x in figures if x["label"] != args.reference and "within_1_25x" in x]
    if others:
        ok = sum(1 for x in others if x["within_1_25x"])
        print(f"calibrated simulated lens within 1.25x of the measurement at {ok} of {len(others)} other points")
    if args.json:
        args.json.write_text(json.dumps({"reference": args.reference, "calibration_factor": factor,
                                         "profile": args.profile, "points": figures}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
