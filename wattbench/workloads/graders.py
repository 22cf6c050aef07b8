"""Graders: does an answer contain / match / equal the expected one (numbers read from words and digits)."""

from __future__ import annotations

import re

from wattbench.workloads.prompts import GRADERS


_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def numbers_in(text: str) -> list[float]:
    """The numbers written in `text`: digits (with thousands commas, decimals, exponents) and the words
    zero..twenty."""
    found = [float(m.group().replace(",", "")) for m in _NUMBER_RE.finditer(text)]
    found += [_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS]
    return found


def _normalise(text: str) -> str:
    return " ".join(text.casefold().strip().strip("\"'`").rstrip(".!?").split())


def check_accuracy(
    answer: str | None,
    expected: str | float | list[str] | None,
    grader: str = "contains",
    tolerance: float = 0.0,
) -> bool | None:
    """Grade `answer`: True / False, or None when there is nothing to grade against.

    contains: any expected string occurs in the answer (case-insensitive); regex: re.search with IGNORECASE
    and DOTALL; number: some number in the answer is within `tolerance` of expected; exact: equal after
    trimming whitespace, quotes, final punctuation and case; none: None.
    """
    if grader == "none" or expected is None:
        return None
    if answer is None:
        return False
    if grader == "contains":
        options = expected if isinstance(expected, list) else [str(expected)]
        return any(o.casefold() in answer.casefold() for o in options)
    if grader == "regex":
        return re.search(str(expected), answer, re.IGNORECASE | re.DOTALL) is not None
    if grader == "number":
        target = float(expected)  # type: ignore[arg-type]
        return any(abs(n - target) <= tolerance + 1e-9 * max(1.0, abs(target)) for n in numbers_in(answer))
    if grader == "exact":
        return _normalise(answer) == _normalise(str(expected))
    raise ValueError(f"unknown grader {grader!r}; use one of {', '.join(GRADERS)}")
