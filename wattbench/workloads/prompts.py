"""Prompts files: JSONL or CSV rows -> PromptSpec (prompt, expected answer, grader), checked row by row."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattbench.paths import DATA_DIR


DEFAULT_PROMPTS_PATH = DATA_DIR / "test_prompts.jsonl"


GRADERS: tuple[str, ...] = ("contains", "regex", "number", "exact", "none")


class PromptsFileError(ValueError):
    """A prompts file that cannot be used; the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class PromptSpec:
    """One prompt to send, with how to grade its answer."""

    prompt_id: str
    prompt: str
    category: str | None = None
    expected: str | float | list[str] | None = None
    grader: str = "none"
    tolerance: float = 0.0
    input_tokens: int | None = None  # the prompt's length in tokens, as the workload counted it
    max_tokens: int | None = None  # the requested output length (workloads/sources.py: how it is enforced)
    arrival_s: float | None = None  # a trace's send time, seconds after its first request


def load_prompts(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """Read prompts from JSONL (one object per line with a "prompt" field; optional "id", "category",
    "expected", "grader", "tolerance") or CSV (a "prompt" column, the same optional columns)."""
    p = Path(path)
    if p.is_dir():
        raise PromptsFileError(f"prompts file {p} is a directory; give the .jsonl or .csv file in it")
    if not p.is_file():
        raise PromptsFileError(f"prompts file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl_rows(p)
    elif suffix == ".csv":
        rows = _read_csv_rows(p)
    else:
        raise PromptsFileError(
            f"prompts file {p}: unsupported extension {suffix or '(none)'!r}; "
            "use .jsonl (one JSON object per "
            'line with a "prompt" field) or .csv (with a "prompt" column)'
        )
    specs = [_prompt_from_row(row, where, index) for index, (where, row) in enumerate(rows, start=1)]
    if not specs:
        raise PromptsFileError(f"prompts file {p} has no prompts")
    seen: dict[str, str] = {}
    for spec, (where, _) in zip(specs, rows, strict=True):
        if spec.prompt_id in seen:
            raise PromptsFileError(
                f"{where}: id {spec.prompt_id!r} is used twice (also {seen[spec.prompt_id]})"
            )
        seen[spec.prompt_id] = where
    return specs


def _read_jsonl_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptsFileError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise PromptsFileError(f'{where} must be a JSON object like {{"prompt": "..."}}')
        rows.append((where, row))
    return rows


def _read_csv_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(_read_text(path).splitlines())
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "prompt" not in fields:
        raise PromptsFileError(
            f'prompts file {path.name} has no "prompt" column (found: {", ".join(fields)})'
        )
    rows = []
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v if v not in ("", None) else None) for k, v in raw.items()}
        rows.append((f"{path.name} line {lineno}", row))
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptsFileError(f"prompts file {path.name} is not UTF-8 text ({exc.reason})") from None


def _prompt_from_row(row: Mapping[str, Any], where: str, index: int) -> PromptSpec:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptsFileError(f'{where} has no "prompt" (a non-empty string)')
    expected = row.get("expected")
    expected = None if expected in ("", None) else expected
    grader = str(row.get("grader") or ("contains" if expected is not None else "none")).strip().lower()
    if grader not in GRADERS:
        raise PromptsFileError(f"{where}: unknown grader {grader!r}; use one of {', '.join(GRADERS)}")
    if grader != "none" and expected is None:
        raise PromptsFileError(f'{where}: grader {grader!r} needs an "expected" value')
    tolerance = _parse_tolerance(row.get("tolerance"), where)
    expected = _check_expected(expected, grader, where)
    category = row.get("category")
    workload = {name: _optional_number(row.get(name), name, where, kind)
                for name, kind in (("input_tokens", int), ("max_tokens", int), ("arrival_s", float))}
    return PromptSpec(
        prompt_id=str(row.get("id") or f"p{index:03d}"),
        prompt=prompt,
        category=str(category) if category not in ("", None) else None,
        expected=expected,
        grader=grader,
        tolerance=tolerance,
        **workload,
    )


def _optional_number(value: Any, name: str, where: str, kind: type) -> Any:
    """A workload field (input_tokens, max_tokens: whole >= 1; arrival_s: >= 0), or None when absent."""
    if value in ("", None):
        return None
    try:
        number = kind(value) if kind is float else int(str(value))
    except (TypeError, ValueError):
        number = None
    low = 0 if kind is float else 1
    if number is None or not math.isfinite(number) or number < low:
        raise PromptsFileError(f"{where}: {name} must be a {'number' if kind is float else 'whole number'} "
                               f">= {low}, not {value!r}")
    return number


def _parse_tolerance(value: Any, where: str) -> float:
    if value in ("", None):
        return 0.0
    try:
        tolerance = float(value)
    except (TypeError, ValueError):
        raise PromptsFileError(f"{where}: tolerance {value!r} is not a number") from None
    if not math.isfinite(tolerance) or tolerance < 0:
        raise PromptsFileError(f"{where}: tolerance must be a number >= 0, not {value!r}")
    return tolerance


def _check_expected(expected: Any, grader: str, where: str) -> str | float | list[str] | None:
    if grader == "none" or expected is None:
        return expected
    if grader == "number":
        try:
            return float(expected)
        except (TypeError, ValueError):
            raise PromptsFileError(
                f"{where}: grader 'number' needs a numeric expected value, not {expected!r}"
            ) from None
    if (
        grader == "contains"
        and isinstance(expected, list)
        and expected
        and all(isinstance(e, str) for e in expected)
    ):
        return list(expected)
    if not isinstance(expected, str):
        raise PromptsFileError(f"{where}: grader {grader!r} needs expected to be a string, not {expected!r}")
    if grader == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            raise PromptsFileError(f"{where}: expected is not a valid regular expression ({exc})") from None
    return expected


def prompts_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a prompts file's bytes (the manifest uses it to refuse resuming with other prompts)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
