"""How long the analysis takes on a big run, and how big its HTML is.

  .venv/bin/python benchmarks/bench_report.py [--rows 100000] [--profiles 4] [--text-chars 600] [--out DIR]

Makes a seeded synthetic run of ROWS rows (requests x profiles, tests/fixtures_frame.synthetic_frame), then
times, in one go, what `wattbench run` + `wattbench report` do after the requests: write the CSV, read it
back, and write the six dashboards, index.html, plotly.min.js, the summary CSV and the report
(report.build_outputs). Targets from issue 5: at most 20 s for 100,000 rows, all HTML together at most 6 MB
(plotly.min.js, written once beside the pages, is counted apart).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_frame import synthetic_frame  # noqa: E402

from wattbench.analysis.outputs import (
    build_outputs,
    write_frame_csv,  # noqa: E402
)

TARGET_S = 20.0
TARGET_HTML_BYTES = 6 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; exit 1 when a target is missed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=4)
    p.add_argument("--out", type=Path, help="keep the outputs here (default: a temporary directory)")
    p.add_argument("--text-chars", type=int, default=600,
                   help="length of each response_text (default 600, about 150 tokens)")
    args = p.parse_args(argv)

    df = synthetic_frame(args.rows, n_profiles=args.profiles, seed=0, text_chars=args.text_chars)
    out = args.out or Path(tempfile.mkdtemp(prefix="wattbench-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "ai_metrics_20261127_000000.csv"

    t0 = time.perf_counter()
    write_frame_csv(df, csv)  # what `wattbench run` does (batch.write_csv)
    t_csv = time.perf_counter()
    result = build_outputs(csv, out, sources={})
    t_end = time.perf_counter()

    html = sorted(out.glob("*.html"))
    html_bytes = sum(p.stat().st_size for p in html)
    total_s = t_end - t0
    print(f"rows: {len(df):,} ({df['request_id'].nunique():,} requests x {args.profiles} profiles); "
          f"CSV {csv.stat().st_size / 1e6:.1f} MB, response_text {args.text_chars} chars")
    print(f"write CSV:                         {t_csv - t0:6.2f} s")
    print(f"read CSV + report + 6 dashboards:  {t_end - t_csv:6.2f} s")
    print(f"total:                             {total_s:6.2f} s   (target <= {TARGET_S:.0f} s; "
          f"ratio {total_s / TARGET_S:.2f} of the budget)")
    for path in html:
        print(f"  {path.name:<34} {path.stat().st_size / 1024:8.1f} KiB")
    print(f"all HTML:                          {html_bytes / 2**20:6.2f} MiB (target <= 6 MiB; "
          f"ratio {html_bytes / TARGET_HTML_BYTES:.2f})")
    print(f"plotly.min.js (once, beside them): {Path(result['plotly_js']).stat().st_size / 2**20:6.2f} MiB")
    print(f"outputs in {out}")
    ok = total_s <= TARGET_S and html_bytes <= TARGET_HTML_BYTES
    print("within both targets" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
