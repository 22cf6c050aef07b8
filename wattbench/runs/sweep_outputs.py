"""A sweep's outputs: every point's CSV together in one `ai_metrics_<UTC>.csv`, then the report (with its
FRONTIER section and recommendation) and the seven dashboards, in the sweep's --out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattbench.analysis.calibration import calibrate_frame, efficiency_table
from wattbench.analysis.frontier import recommendation_lines
from wattbench.analysis.outputs import build_outputs, write_csv
from wattbench.analysis.reading import ReportInputError, prepare, read_metrics_csv
from wattbench.cli_support import CliError
from wattbench.telemetry.session import server_samples


def combined_frame(csv_paths: Sequence[str | Path], held: Mapping[str, Any] | None = None) -> Any:
    """The points' frames concatenated: those this process holds (`held`, by CSV path) as they are, the others
    (points of an earlier session of a resumed sweep) read back from their CSVs (analysis.reading)."""
    import pandas as pd

    held = held or {}
    frames = []
    for path in csv_paths:
        if str(path) in held:
            frames.append(prepare(held[str(path)]))  # the dtypes and fills of a CSV read back, without reading
            continue
        try:
            frames.append(read_metrics_csv(Path(path)))
        except ReportInputError as exc:
            raise CliError(f"sweep point CSV {path}: {exc}") from None
    return pd.concat(frames, ignore_index=True)


def reference_point(df: Any) -> str | None:
    """The run (load point) a sweep calibrates from: the first point with measured GPU energy on a profile's GPU
    model (the lowest load of the first model). None: nothing measured."""
    table = efficiency_table(df)
    return None if table.empty else str(table["run_id"].iloc[0])


def write_sweep_outputs(sweep: Any, done: Sequence[Any], notes: Sequence[str]) -> int:
    """Write the combined CSV, report and dashboards; print the recommendation. Returns 0 when every point ran
    and every request was served, 1 otherwise."""
    if not done:
        print("no sweep point finished: nothing to report", flush=True)
        return 1
    options = sweep.options
    df = combined_frame([p.csv for p in done], sweep.frames)
    notes = list(notes)
    if sweep.base.calibrate_from_measured:
        df, line = calibrate_frame(df, reference_point(df))
        notes.append(line)
        print(line)
    csv_path = write_csv(df, sweep.out)
    samples = {p.run_id: server_samples(Path(p.csv).parent / "runs" / p.run_id) for p in done if p.run_id}
    outputs = build_outputs(df, sweep.out, slo_ttft_s=options.slo_ttft_s, slo_tpot_s=options.slo_tpot_s,
                            notes=notes, server_samples=samples)
    table = outputs["frontier_table"]
    requests = len(df.drop_duplicates(["run_id", "request_id"]))
    print(f"wrote {csv_path} ({len(done)} points, {requests} requests x {df['profile'].nunique()} profiles = "
          f"{len(df)} rows)")
    print(f"wrote {outputs['dashboards']['frontier']}")  # type: ignore[index]
    print(f"wrote {outputs['report_txt']}")
    for line in list(notes) + recommendation_lines(table, options.slo_ttft_s, options.slo_tpot_s):
        print(line)
    skipped = any(p.status in ("skipped", "pending", "stopped") for p in sweep.points)
    return 1 if skipped or not bool(df["success"].all()) else 0
