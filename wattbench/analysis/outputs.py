"""Writing a run's outputs: the CSV (fast, exact), then the dashboards and the report."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wattbench.analysis.frontier import frontier_table, frontier_text
from wattbench.analysis.achieved import load_table, load_text, measured_phase
from wattbench.analysis.reading import ReportInputError, lean, load_input
from wattbench.analysis.report import (
    REPORT_MD,
    REPORT_TXT,
    SUMMARY_CSV,
    format_report,
    report_tables,
    server_view_section,
)
from wattbench.analysis.server_dashboard import write_timeseries
from wattbench.analysis.site import write_dashboards
from wattbench.analysis.tables import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S, profile_sources, summary_table
from wattbench.cli_support import CliError

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import pandas as pd


def write_csv(df: pd.DataFrame, out_dir: Path) -> Path:
    """Write `ai_metrics_<UTC timestamp>.csv` under out_dir and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ai_metrics_{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}.csv"
    write_frame_csv(df, path)
    return path


CSV_FLOAT_FORMAT = "%.12g"  # 12 significant digits: far finer than any measured or simulated figure


def write_frame_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """`df.to_csv(path, index=False)`, about six times as fast on a large run (benchmarks/bench_csv.py):
    floats with 12 significant digits (whole numbers without ".0"), missing values empty, text quoted as the
    csv module does (QUOTE_MINIMAL)."""
    cells = [csv_cells(df[name]) for name in df.columns]
    header = ",".join(_csv_quote(str(name)) for name in df.columns)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        fh.writelines(line + "\n" for line in map(",".join, zip(*cells, strict=True)))


def csv_cells(column: pd.Series) -> list[str]:
    """A column's values as CSV fields: floats as CSV_FLOAT_FORMAT, missing ('' for None, NaN, NA) empty, text
    quoted where it holds a comma, quote or line break."""
    import numpy as np
    import pandas as pd

    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":
        # a run repeats its numbers (each request once per profile, each profile's constants once per
        # request): format each distinct value once; code -1 (NaN) takes the "" appended last
        codes, distinct = pd.factorize(column, use_na_sentinel=True)
        fmt = CSV_FLOAT_FORMAT if column.dtype.kind == "f" else "%d"
        fields = np.array([fmt % v for v in distinct.tolist()] + [""], dtype=object)
        return fields[codes].tolist()
    na = pd.NA
    return ["" if v is None or v is na or (isinstance(v, float) and v != v) else _csv_quote(str(v))
            for v in column.tolist()]


def _csv_quote(text: str) -> str:
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def build_run_outputs(df: pd.DataFrame, out_dir: Path, csv_path: Path, notes: Sequence[str] = (),
                      server_samples: Mapping[str, Sequence[Mapping[str, object]]] | None = None) -> None:
    """The dashboards and the report (report.build_outputs); CliError when they cannot be written. notes: lines
    for the report's LOAD section (why the run stopped early, the client's CPU per request); server_samples:
    the server's metric samples by run id (the SERVER VIEW and its time-series panel)."""

    try:
        outputs = build_outputs(df, out_dir, notes=notes, server_samples=server_samples)
    except (OSError, ReportInputError) as exc:
        raise CliError(
            f"{csv_path} is written, but not the report ({exc}); "
            f"rerun it with `wattbench report {csv_path}`"
        ) from None
    print(outputs["report_text"])
    print(f"wrote {outputs['index']}")
    print(f"wrote {outputs['report_txt']}")


def summary_line(df: pd.DataFrame) -> str:
    """A one-line summary of a run's DataFrame: requests served, accuracy, median latency, tokens."""
    per_request = df.drop_duplicates("request_id")
    served = per_request[per_request["success"].astype(bool)]
    graded = served["correct"].dropna()
    accuracy = f"{graded.astype(bool).mean():.0%} of {len(graded)} graded" if len(graded) else "n/a"
    latency = f"{served['latency_s'].median():.2f} s" if len(served) else "n/a"
    return (
        f"served {len(served)}/{len(per_request)} requests; accuracy {accuracy}; median latency {latency}; "
        f"{int(served['completion_tokens'].fillna(0).sum())} completion tokens"
    )




def build_outputs(df_or_csv: pd.DataFrame | str | Path, out_dir: str | Path, *,
                  slo_ttft_s: float = DEFAULT_SLO_TTFT_S, slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                  sources: Mapping[str, Mapping[str, str]] | None = None,
                  notes: Sequence[str] = (),
                  server_samples: Mapping[str, Sequence[Mapping[str, object]]] | None = None) -> dict[str, object]:
    """Write the seven dashboards, index.html, plotly.min.js, the summary CSV, report.txt and report.md.

    Returns {"dashboards": {name: Path}, "index": Path, "plotly_js": Path, "summary_csv": Path,
    "report_txt": Path, "report_md": Path, "report_text": str, "server_timeseries": Path | None, "frontier_table":
    DataFrame}. Raises ReportInputError for unusable input.
    `sources` defaults to profile_sources() (citations from gpu_profiles when importable). The statistics use the
    rows of the measure phase; the LOAD section (requested vs achieved load, and `notes`) follows, then the
    SERVER VIEW when the server's metrics were sampled (server_samples by run id: also server_timeseries.html).
    """

    full = lean(load_input(df_or_csv))
    load = load_table(full)
    df = measured_phase(full)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if sources is None:
        sources = profile_sources(df["profile"].dropna().astype(str).unique())
    tables = report_tables(df, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    text = format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources)
    markdown = format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources, markdown=True)
    title = "LOAD: REQUESTED VS ACHIEVED (client-side)"
    text += f"\n{title}\n{'=' * len(title)}\n{load_text(load, list(notes))}\n"
    markdown += f"\n## {title}\n\n{load_text(load, list(notes), markdown=True)}\n"
    for md in (False, True):
        view = server_view_section(full, server_samples, markdown=md)
        if view is not None and md:
            markdown += f"\n{view}\n"
        elif view is not None:
            text += f"\n{view}\n"
    frontier = frontier_table(full, slo_ttft_s, slo_tpot_s)
    title = "FRONTIER: COST, ENERGY AND CARBON PER 1K TOKENS VS LATENCY, PER LOAD POINT"
    text += f"\n{title}\n{'=' * len(title)}\n{frontier_text(frontier, slo_ttft_s, slo_tpot_s)}\n"
    markdown += f"\n## {title}\n\n{frontier_text(frontier, slo_ttft_s, slo_tpot_s, markdown=True)}\n"
    written = write_dashboards(df, out, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    timeseries = write_timeseries(server_samples or {}, out)
    summary_path = out / SUMMARY_CSV
    summary_table(df, slo_ttft_s, slo_tpot_s).to_csv(summary_path, index=False)
    txt_path, md_path = out / REPORT_TXT, out / REPORT_MD
    txt_path.write_text(text, encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    return {"dashboards": written["dashboards"], "index": written["index"], "plotly_js": written["plotly_js"],
            "summary_csv": summary_path, "report_txt": txt_path, "report_md": md_path, "report_text": text,
            "server_timeseries": timeseries, "frontier_table": frontier}
