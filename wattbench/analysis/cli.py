"""`wattbench report CSV_OR_RUN_DIR`: rebuild the dashboards, the summary CSV and the report from a CSV."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from wattbench.analysis.outputs import build_outputs
from wattbench.analysis.reading import ReportInputError, read_metrics_csv, resolve_csv
from wattbench.analysis.tables import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S
from wattbench.cli_support import CliError, Parser, fail, positive_float


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of `wattbench report`."""
    p = Parser(prog="wattbench report",
                description="Rebuild the dashboards, index.html, the summary CSV and the report from a "
                            "metrics CSV (or the newest ai_metrics_*.csv in a run directory).")
    p.add_argument("source", nargs="+",
                   help="ai_metrics_*.csv file(s), or run directories such as outputs/; several are compared "
                        "(models, profiles and load points side by side, the frontier over all of them)")
    p.add_argument("--out", help="directory to write into (default: the first CSV's directory)")
    p.add_argument("--slo-ttft-s", type=positive_float, default=DEFAULT_SLO_TTFT_S,
                   help=f"TTFT target for goodput, seconds (default {DEFAULT_SLO_TTFT_S})")
    p.add_argument("--slo-tpot-s", type=positive_float, default=DEFAULT_SLO_TPOT_S,
                   help=f"time-per-output-token target for goodput, seconds (default {DEFAULT_SLO_TPOT_S})")
    return p


def cli_report(argv: Sequence[str]) -> int:
    """`wattbench report CSV_OR_RUN_DIR [MORE ...] [--out DIR] [--slo-ttft-s S] [--slo-tpot-s S]`."""
    parser = make_parser()
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(list(argv))
        csv_paths = [resolve_csv(Path(source)) for source in args.source]
        df = combine([read_metrics_csv(path) for path in csv_paths], csv_paths)
    except (CliError, ReportInputError) as exc:
        return fail(str(exc))
    csv_path = csv_paths[0]
    out_dir = Path(args.out) if args.out else csv_path.parent
    try:
        result = build_outputs(df, out_dir, slo_ttft_s=args.slo_ttft_s, slo_tpot_s=args.slo_tpot_s)
    except OSError as exc:
        return fail(f"cannot write to {out_dir}: {exc.strerror or exc}; choose another --out")
    print(result["report_text"], end="")
    print(f"\nread {', '.join(str(p) for p in csv_paths)}")
    paths = [*result["dashboards"].values(), result["index"], result["summary_csv"], result["report_txt"],
             result["report_md"]]  # type: ignore[union-attr]
    print(f"wrote {len(paths)} files to {out_dir}: " + ", ".join(Path(p).name for p in paths))
    print(f"open {result['index']} in a browser (works offline; plotly.min.js is beside it)")
    return 0


def combine(frames: list, paths: Sequence[Path]):  # noqa: ANN201 - a DataFrame
    """Several CSVs as one frame. The same run in two files (one CSV copied, or a sweep's CSV beside its
    points') is kept once, from the first file that holds it."""
    import pandas as pd

    if len(frames) == 1:
        return frames[0]
    seen: set[str] = set()
    kept = []
    for frame in frames:
        runs = set(frame["run_id"].astype(str))
        kept.append(frame[~frame["run_id"].astype(str).isin(seen)])
        seen |= runs
    df = pd.concat(kept, ignore_index=True)
    if df.empty:
        raise ReportInputError(f"no rows in {', '.join(str(p) for p in paths)}")
    return df
