"""A sweep's outputs: every point's CSV together in one `ai_metrics_<UTC>.csv`, then the report (with its
FRONTIER section and recommendation) and the seven dashboards, in the sweep's --out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wattbench.analysis.calibration import calibrate_frame, efficiency_table
from wattbench.analysis.frontier import frontier_table, recommendation_lines
from wattbench.analysis.outputs import build_outputs, write_csv
from wattbench.analysis.reading import ReportInputError, read_metrics_csv
from wattbench.cli_support import CliError
from wattbench.telemetry.session import server_samples


def combined_frame(csv_paths: Sequence[str | Path]) -> Any:
    """The points' CSVs read back (analysis.reading) and concatenated."""
    import pandas as pd

    frames = []
    for path in csv_paths:
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
    df = combined_frame([p.csv for p in done])
    notes = list(notes)
    if sweep.base.calibrate_from_measured:
        df, line = calibrate_frame(df, reference_point(df))
        notes.append(line)
        print(line)
    csv_path = write_csv(df, sweep.out)
    samples = {p.run_id: server_samples(Path(p.csv).parent / "runs" / p.run_id) for p in done if p.run_id}
    outputs = build_outputs(df, sweep.out, slo_ttft_s=options.slo_ttft_s, slo_tpot_s=options.slo_tpot_s,
                            notes=notes, server_samples=samples)
    table = frontier_table(df, options.slo_ttft_s, options.slo_tpot_s)
    requests = len(df.drop_duplicates(["run_id", "request_id"]))
    print(f"wrote {csv_path} ({len(done)} points, {requests} requests x {df['profile'].nunique()} profiles = "
          f"{len(df)} rows)")
    print(f"wrote {outputs['dashboards']['frontier']}")  # type: ignore[index]
    print(f"wrote {outputs['report_txt']}")
    for line in list(notes) + recommendation_lines(table, options.slo_ttft_s, options.slo_tpot_s):
        print(line)
    skipped = any(p.status in ("skipped", "pending", "stopped") for p in sweep.points)
    return 1 if skipped or not bool(df["success"].all()) else 0
