"""Reading a metrics CSV back: find it, check its columns and cells (errors name the line), prepare types."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from wattbench.analysis.schema import NUMERIC_COLUMNS, REQUIRED_COLUMNS, TEXT_COLUMNS, with_optional_columns

CSV_GLOB = "ai_metrics_*.csv"


UNKNOWN = "(unknown)"


class ReportInputError(ValueError):
    """Input the report cannot use; the message names the file and says what to fix."""


def resolve_csv(path: Path) -> Path:
    """The CSV to read: `path` itself, or the newest ai_metrics_*.csv in a run directory."""
    if path.is_dir():
        found = sorted(path.glob(CSV_GLOB), key=lambda p: (p.stat().st_mtime, p.name))
        if not found:
            raise ReportInputError(f"{path}: no {CSV_GLOB} in this directory; run `wattbench run` "
                                   "first or pass the CSV file")
        return found[-1]
    if not path.exists():
        raise ReportInputError(f"{path}: no such file or directory")
    return path


def missing_columns(columns: Iterable[str], required: Sequence[str] = REQUIRED_COLUMNS) -> list[str]:
    """The required columns that are not in `columns`, in schema order."""
    present = set(columns)
    return [c for c in required if c not in present]


def check_frame(df: pd.DataFrame, source: str = "DataFrame", required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise ReportInputError naming `source` when df lacks required columns or has no rows."""
    missing = missing_columns(df.columns, required)
    if missing:
        raise ReportInputError(f"{source}: not a wattbench metrics CSV, missing {len(missing)} column(s): "
                               f"{', '.join(missing)} (schema: docs/outputs.md)")
    if df.empty:
        raise ReportInputError(f"{source}: has a header but no rows; nothing to report")


def read_metrics_csv(path: Path) -> pd.DataFrame:
    """Read and check a metrics CSV; ReportInputError (one line, naming the file) when it cannot be used."""
    try:
        df = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise ReportInputError(f"{path}: file is empty (no header, no rows); run `wattbench run` "
                               "first") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportInputError(f"{path}: cannot be parsed as CSV: {first_line}") from None
    except IsADirectoryError:
        raise ReportInputError(f"{path}: is a directory without {CSV_GLOB}") from None
    except PermissionError:
        raise ReportInputError(f"{path}: permission denied; make the file readable") from None
    check_frame(df, str(path))
    check_rows(path)
    check_cells(df, str(path))
    return prepare(with_optional_columns(df))


def check_rows(path: Path) -> None:
    """ReportInputError naming the line when a row does not have exactly the header's number of fields, or the
    file ends inside a quoted field: a CSV cut mid-row (a copy interrupted, a full disk) or edited by hand.
    pandas would pad a short row with empty cells and count it; this reads every record once, in C."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            width = len(header)
            for row in reader:
                if len(row) != width and row:
                    cut = " (the file ends there: it was cut mid-row)" if _at_end(fh) else ""
                    raise ReportInputError(
                        f"{path}: line {reader.line_num}: {len(row)} fields where the header has {width}{cut}; "
                        "the row is truncated or malformed: rerun `wattbench run` or restore the file")
        except csv.Error as exc:
            raise ReportInputError(f"{path}: line {reader.line_num}: {exc}; the file is truncated or "
                                   "malformed: rerun `wattbench run` or restore the file") from None


def _at_end(fh: object) -> bool:
    try:
        return fh.read(1) == ""  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return False


SUCCESS_VALUES = frozenset({True, False, "True", "False", "true", "false", "TRUE", "FALSE", 1, 0, "1", "0"})


def check_cells(df: pd.DataFrame, source: str) -> None:
    """ReportInputError naming the row, the column and the value when a number column holds text that is not a
    number, or `success` holds something other than True / False (either would silently change the figures)."""
    for col in NUMERIC_COLUMNS:
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            _raise_first_bad(df, col, bad, source, "is not a number; correct it or leave the cell empty")
    if "success" in df.columns and df["success"].dtype != bool:
        bad = ~df["success"].isin(SUCCESS_VALUES) & df["success"].notna()
        _raise_first_bad(df, "success", bad, source, "is not True or False")


def _raise_first_bad(df: pd.DataFrame, col: str, bad: pd.Series, source: str, what: str) -> None:
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise ReportInputError(f"{source}: row {position + 1}, column {col!r}: {df[col].iloc[position]!r} {what}")


def _to_bool(values: pd.Series, *, nullable: bool) -> pd.Series:
    """Booleans from a column read back from CSV (True/False, 'true'/'false', 1/0; other values -> NA)."""
    if values.dtype == bool and not nullable:
        return values
    mapping = {True: True, False: False, "True": True, "False": False, "true": True, "false": False,
               "TRUE": True, "FALSE": False, 1: True, 0: False, "1": True, "0": False, 1.0: True, 0.0: False}
    mapped = values.map(lambda v: mapping.get(v, pd.NA) if not (isinstance(v, float) and math.isnan(v)) else pd.NA)
    out = mapped.astype("boolean")
    return out if nullable else out.fillna(False).astype(bool)


TEXT_ONLY_COLUMNS: tuple[str, ...] = ("prompt", "response_text", "expected", "route_reason", "started_at")


ANALYSIS_COLUMNS: tuple[str, ...] = tuple(c for c in REQUIRED_COLUMNS if c not in TEXT_ONLY_COLUMNS)


def lean(df: pd.DataFrame) -> pd.DataFrame:
    """df without the long text columns no table or figure reads (prompt, response_text, ...): row filters on
    100,000 rows copy much less."""
    return df.drop(columns=[c for c in TEXT_ONLY_COLUMNS if c in df.columns])


def is_prepared(df: pd.DataFrame) -> bool:
    """True when df already has the dtypes that prepare() gives."""
    def has(col: str) -> bool:
        return col in df.columns

    return (all(pd.api.types.is_float_dtype(df[c]) for c in NUMERIC_COLUMNS if has(c))
            and all(pd.api.types.is_string_dtype(df[c]) for c in TEXT_COLUMNS if has(c))
            and all(not df[c].isna().any() for c in ("model", "route", "run_id") if has(c))
            and (not has("success") or df["success"].dtype == bool)
            and (not has("correct") or df["correct"].dtype == "boolean"))


def _model_of_unanswered(df: pd.DataFrame) -> pd.Series:
    """The model column, where a request without one (never answered) takes its run's model when the run
    has exactly one; otherwise it stays missing."""
    models = df["model"]
    if not models.isna().any():
        return models
    per_run = df.dropna(subset=["model"]).groupby("run_id", dropna=False)["model"].unique()
    single = {run: found[0] for run, found in per_run.items() if len(found) == 1}
    # in the column's own dtype: pandas 2.2 refuses a float NaN fill into a string column
    return models.fillna(df["run_id"].map(single).astype(models.dtype))


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """df with the schema's dtypes: numbers as float, success as bool, correct as nullable boolean, a missing
    model / route / run_id as '(unknown)'. A copy; df itself when it is already so (nothing here mutates it)."""
    if is_prepared(df):
        return df
    out = df.copy()
    for col in NUMERIC_COLUMNS:
        if col in out.columns and not pd.api.types.is_float_dtype(out[col]):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in TEXT_COLUMNS:
        if col in out.columns and not pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype("string")
    if {"model", "run_id"} <= set(out.columns):
        out["model"] = _model_of_unanswered(out)
    for col in ("model", "route", "run_id"):
        if col in out.columns:
            out[col] = out[col].fillna(UNKNOWN)  # a request the service never answered still counts
    if "success" in out.columns:
        out["success"] = _to_bool(out["success"], nullable=False)
    if "correct" in out.columns:
        out["correct"] = _to_bool(out["correct"], nullable=True)
    return out


def load_input(df_or_csv: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A checked, prepared frame from a DataFrame, a CSV path or a run directory."""
    if isinstance(df_or_csv, pd.DataFrame):
        check_frame(df_or_csv)
        return prepare(df_or_csv)
    return read_metrics_csv(resolve_csv(Path(df_or_csv)))
