"""Prompts files: JSONL or CSV rows -> PromptSpec (prompt, expected answer, grader), checked row by row."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
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


#: The longest line of a prompts file read (bytes): a prompt of MAX_PROMPT_CHARS characters, each written as
#: a JSON \\u escape, with room for the other fields. A longer line is refused, not read whole.
MAX_LINE_BYTES = 4 * 1024 * 1024


def load_prompts(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """Read prompts from JSONL (one object per line with a "prompt" field; optional "id", "category",
    "expected", "grader", "tolerance") or CSV (a "prompt" column, the same optional columns). The file is read
    line by line (a million-row file is never held whole), and only a regular file is read."""
    p = Path(path)
    if p.is_dir():
        raise PromptsFileError(f"prompts file {p} is a directory; give the .jsonl or .csv file in it")
    if not p.exists():
        raise PromptsFileError(f"prompts file {p} does not exist")
    if not p.is_file():
        raise PromptsFileError(f"prompts file {p} is not a regular file (a device, a pipe or a socket); give a "
                               ".jsonl or .csv file")
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise PromptsFileError(
            f"prompts file {p}: unsupported extension {suffix or '(none)'!r}; "
            "use .jsonl (one JSON object per "
            'line with a "prompt" field) or .csv (with a "prompt" column)'
        )
    specs: list[PromptSpec] = []
    seen: dict[str, str] = {}
    try:
        with p.open(encoding="utf-8-sig", newline="") as handle:
            rows = _jsonl_rows(p, handle) if suffix == ".jsonl" else _csv_rows(p, handle)
            for index, (where, row) in enumerate(rows, start=1):
                spec = _prompt_from_row(row, where, index)
                if spec.prompt_id in seen:
                    raise PromptsFileError(
                        f"{where}: id {spec.prompt_id!r} is used twice (also {seen[spec.prompt_id]})")
                seen[spec.prompt_id] = where
                specs.append(spec)
    except UnicodeDecodeError as exc:
        raise PromptsFileError(f"prompts file {p.name} is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise PromptsFileError(f"prompts file {p.name} is not readable CSV ({exc})") from None
    if not specs:
        raise PromptsFileError(f"prompts file {p} has no prompts")
    return specs


def _lines(path: Path, handle: Any) -> Iterator[str]:
    """The file's lines, none longer than MAX_LINE_BYTES characters (PromptsFileError naming the line)."""
    lineno = 0
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE_BYTES:
            raise PromptsFileError(f"{path.name} line {lineno} is over {MAX_LINE_BYTES:,} characters; a prompt "
                                   "holds at most 32,000")
        yield line


def _jsonl_rows(path: Path, handle: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in enumerate(_lines(path, handle), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            row = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            raise PromptsFileError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise PromptsFileError(f"{where} is nested too deeply to be a prompt row; give one flat JSON "
                                   'object like {"prompt": "..."}') from None
        if not isinstance(row, dict):
            raise PromptsFileError(f'{where} must be a JSON object like {{"prompt": "..."}}')
        yield where, row


def _csv_rows(path: Path, handle: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(_lines(path, handle))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "prompt" not in fields:
        raise PromptsFileError(
            f'prompts file {path.name} has no "prompt" column (found: {", ".join(fields)})'
        )
    for raw in reader:
        row = {(k or "").strip(): (v if v not in ("", None) else None) for k, v in raw.items()}
        yield f"{path.name} line {reader.line_num}", row


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
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:  # in blocks: a large file is not held whole
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
