"""Writing the run's CSV: pandas' `df.to_csv` against `write_frame_csv`, side by side in one run.

  .venv/bin/python benchmarks/bench_csv.py [--rows 100000] [--profiles 4] [--text-chars 600] [--rounds 2]

Makes the seeded synthetic run of benchmarks/bench_report.py (tests/fixtures_frame.synthetic_frame), writes
it with both writers, alternating, `--rounds` times each, and prints the best time of each and their ratio.
Then it reads both files back with pandas and prints the largest relative difference between any two numbers
and whether every text cell is the same, so that the speed is not bought with lost precision.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from fixtures_frame import synthetic_frame  # noqa: E402

from wattbench.analysis.outputs import write_frame_csv


def seconds(write: Callable[[], object]) -> float:
    """How long one call of write() takes."""
    t0 = time.perf_counter()
    write()
    return time.perf_counter() - t0


def largest_relative_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The largest |x - y| / |x| over the numeric cells of two frames read back from CSV (0 where x is 0)."""
    worst = 0.0
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]) and not pd.api.types.is_bool_dtype(a[col]):
            x, y = a[col].to_numpy(dtype=float), b[col].to_numpy(dtype=float)
            both = ~np.isnan(x) & ~np.isnan(y) & (x != 0)
            if both.any():
                worst = max(worst, float(np.max(np.abs(x[both] - y[both]) / np.abs(x[both]))))
    return worst


def texts_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Every non-numeric cell (and every missing one) the same in both frames."""
    for col in a.columns:
        if not pd.api.types.is_numeric_dtype(a[col]) or pd.api.types.is_bool_dtype(a[col]):
            if not a[col].astype("string").equals(b[col].astype("string")):
                return False
        elif not a[col].isna().equals(b[col].isna()):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Time both writers and print the figures; exit 1 when the files read back differ beyond 1e-11."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--profiles", type=int, default=4)
    p.add_argument("--text-chars", type=int, default=600)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)

    df = synthetic_frame(args.rows, n_profiles=args.profiles, seed=0, text_chars=args.text_chars)
    out = Path(tempfile.mkdtemp(prefix="wattbench-bench-csv-"))
    before, after = out / "pandas.csv", out / "batch.csv"
    pandas_s = batch_s = float("inf")
    for _ in range(args.rounds):  # alternate, so that both see the same machine load
        pandas_s = min(pandas_s, seconds(lambda: df.to_csv(before, index=False)))
        batch_s = min(batch_s, seconds(lambda: write_frame_csv(df, after)))

    a, b = pd.read_csv(before, low_memory=False), pd.read_csv(after, low_memory=False)
    worst = largest_relative_difference(a, b)
    same_text = texts_equal(a, b)
    print(f"rows: {len(df):,} x {len(df.columns)} columns, response_text {args.text_chars} chars; "
          f"best of {args.rounds} rounds each, alternating")
    print(f"pandas df.to_csv:        {pandas_s:6.2f} s  ({before.stat().st_size / 1e6:.1f} MB)")
    print(f"write_frame_csv:   {batch_s:6.2f} s  ({after.stat().st_size / 1e6:.1f} MB)")
    print(f"ratio (pandas / batch):  {pandas_s / batch_s:6.2f}x faster")
    print(f"read back: largest relative difference between numbers {worst:.1e}; "
          f"text and missing cells {'identical' if same_text else 'DIFFER'}")
    ok = same_text and worst <= 1e-11 and list(a.columns) == list(b.columns) and len(a) == len(b)
    print("same data" if ok else "DATA DIFFERS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
