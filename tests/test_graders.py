"""Graders (check_accuracy) and prompts files (load_prompts): real files, exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattbench.workloads.graders import check_accuracy, numbers_in
from wattbench.workloads.prompts import DEFAULT_PROMPTS_PATH, PromptsFileError, PromptSpec, load_prompts

# -- graders ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected", "result"),
    [
        ("The capital of France is Paris.", "Paris", True),
        ("the capital is PARIS", "Paris", True),
        ("Lyon is lovely.", "Paris", False),
        ("It was written by William Shakespeare.", ["Shakespeare", "Marlowe"], True),
        ("Christopher Marlowe", ["Shakespeare", "Marlowe"], True),
        ("Ben Jonson", ["Shakespeare", "Marlowe"], False),
    ],
)
def test_contains(answer: str, expected: str | list[str], result: bool) -> None:
    assert check_accuracy(answer, expected, "contains") is result


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        ("The symbol is Au.", True),
        ("au", True),  # IGNORECASE
        ("Gold is Aurum", False),  # \b: 'Au' inside a word does not count
    ],
)
def test_regex(answer: str, result: bool) -> None:
    assert check_accuracy(answer, r"\bAu\b", "regex") is result


def test_regex_spans_lines() -> None:
    answer = "SELECT *\nFROM users\nWHERE age > 30;"
    assert check_accuracy(answer, r"select\s.*from\s+users.*where.*age\s*>\s*30", "regex") is True


@pytest.mark.parametrize(
    ("answer", "expected", "tolerance", "result"),
    [
        ("15 multiplied by 12 is 180.", 180.0, 0.0, True),
        ("15 multiplied by 12 is 170.", 180.0, 0.0, False),
        ("The speed is 60 km/h", 60.0, 0.0, True),
        ("roughly 3.14", 3.14159, 0.01, True),
        ("roughly 3.1", 3.14159, 0.01, False),
        ("There are seven continents.", 7.0, 0.0, True),
        ("It costs 1,250 dollars", 1250.0, 0.0, True),
        ("Temperature: -5 degrees", -5.0, 0.0, True),
        ("no number here", 7.0, 0.0, False),
    ],
)
def test_number(answer: str, expected: float, tolerance: float, result: bool) -> None:
    assert check_accuracy(answer, expected, "number", tolerance) is result


def test_numbers_in_reads_digits_commas_decimals_and_words() -> None:
    assert numbers_in("15-12 is 3, then 1,000.5 and twelve, 2e3") == [15.0, 12.0, 3.0, 1000.5, 2000.0, 12.0]


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        ("Paris", True),
        ("  paris.  ", True),
        ('"Paris"', True),
        ("Paris, France", False),
    ],
)
def test_exact(answer: str, result: bool) -> None:
    assert check_accuracy(answer, "Paris", "exact") is result


def test_none_grader_and_missing_expected_give_none() -> None:
    assert check_accuracy("a haiku", None, "none") is None
    assert check_accuracy("a haiku", "x", "none") is None
    assert check_accuracy("a haiku", None, "contains") is None


def test_no_answer_is_wrong() -> None:
    assert check_accuracy(None, "Paris", "contains") is False


def test_unknown_grader_raises() -> None:
    with pytest.raises(
        ValueError, match="unknown grader 'fuzzy'; use one of contains, regex, number, exact, none"
    ):
        check_accuracy("x", "x", "fuzzy")


# -- the bundled prompts ------------------------------------------------------------------------------------


def test_bundled_prompts_are_the_originals_mix() -> None:
    prompts = load_prompts(DEFAULT_PROMPTS_PATH)
    assert len(prompts) == 12
    categories = [p.category for p in prompts]
    assert {c: categories.count(c) for c in set(categories)} == {
        "factual": 5,
        "coding": 3,
        "creative": 2,
        "analytical": 2,
    }
    assert prompts[0] == PromptSpec(
        "factual-capital-france", "What is the capital of France?", "factual", "Paris", "contains", 0.0
    )
    # every row cites a source
    rows = [json.loads(line) for line in DEFAULT_PROMPTS_PATH.read_text().splitlines()]
    assert all(row.get("source") for row in rows)


@pytest.mark.parametrize(
    ("prompt_id", "good", "bad"),
    [
        ("factual-gold-symbol", "The chemical symbol for gold is Au.", "Gold's symbol is Ag."),
        ("math-train-speed", "Its average speed is 60 km/h.", "Its average speed is 240 km/h."),
        (
            "code-python-factorial",
            "def factorial(n):\n    return 1 if n == 0 else n * factorial(n - 1)",
            "Use math.factorial.",
        ),
        ("code-sql-users", "SELECT * FROM users WHERE age > 30;", "SELECT * FROM users;"),
        ("code-js-reverse", "const reverse = s => s.split('').reverse().join('');", "Use reverse()."),
        (
            "analysis-solar-wind",
            "Solar is predictable by day; wind blows at night.",
            "Solar panels are cheap.",
        ),
    ],
)
def test_bundled_graders_separate_right_from_wrong(prompt_id: str, good: str, bad: str) -> None:
    spec = {p.prompt_id: p for p in load_prompts(DEFAULT_PROMPTS_PATH)}[prompt_id]
    assert check_accuracy(good, spec.expected, spec.grader, spec.tolerance) is True
    assert check_accuracy(bad, spec.expected, spec.grader, spec.tolerance) is False


# -- user prompts files -------------------------------------------------------------------------------------


def test_jsonl_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"prompt": "Capital of Italy?", "expected": "Rome"}\n\n'
        '{"prompt": "Say 2+2", "expected": "4", "grader": "number", "tolerance": 0.5, "id": "sum"}\n'
        '{"prompt": "A poem"}\n'
    )
    assert load_prompts(path) == [
        PromptSpec("p001", "Capital of Italy?", None, "Rome", "contains", 0.0),
        PromptSpec("sum", "Say 2+2", None, 4.0, "number", 0.5),
        PromptSpec("p003", "A poem", None, None, "none", 0.0),
    ]


def test_csv_with_a_prompt_column(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        'prompt,expected,category\nCapital of Italy?,Rome,factual\n"Write a poem, please",,creative\n'
    )
    assert load_prompts(path) == [
        PromptSpec("p001", "Capital of Italy?", "factual", "Rome", "contains", 0.0),
        PromptSpec("p002", "Write a poem, please", "creative", None, "none", 0.0),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "a.jsonl",
            '{"prompt": "ok"}\n{"prompt": "broken"\n',
            "a.jsonl line 2 is not valid JSON (Expecting ',' delimiter at column 20)",
        ),
        (
            "a.jsonl",
            '["not", "an", "object"]\n',
            'a.jsonl line 1 must be a JSON object like {"prompt": "..."}',
        ),
        ("a.jsonl", '{"text": "no prompt field"}\n', 'a.jsonl line 1 has no "prompt" (a non-empty string)'),
        (
            "a.jsonl",
            '{"prompt": "x", "grader": "fuzzy", "expected": "y"}\n',
            "a.jsonl line 1: unknown grader 'fuzzy'; use one of contains, regex, number, exact, none",
        ),
        (
            "a.jsonl",
            '{"prompt": "x", "grader": "regex"}\n',
            "a.jsonl line 1: grader 'regex' needs an \"expected\" value",
        ),
        (
            "a.jsonl",
            '{"prompt": "x", "grader": "number", "expected": "seven"}\n',
            "a.jsonl line 1: grader 'number' needs a numeric expected value, not 'seven'",
        ),
        (
            "a.jsonl",
            '{"prompt": "x", "grader": "regex", "expected": "("}\n',
            "a.jsonl line 1: expected is not a valid regular expression "
            "(missing ), unterminated subpattern at position 0)",
        ),
        (
            "a.jsonl",
            '{"prompt": "x", "expected": "1", "grader": "number", "tolerance": -1}\n',
            "a.jsonl line 1: tolerance must be a number >= 0, not -1",
        ),
        (
            "a.jsonl",
            '{"prompt": "x", "id": "a"}\n{"prompt": "y", "id": "a"}\n',
            "a.jsonl line 2: id 'a' is used twice (also a.jsonl line 1)",
        ),
        ("a.jsonl", "\n\n", "prompts file {dir}/a.jsonl has no prompts"),
        (
            "a.csv",
            "question,answer\nx,y\n",
            'prompts file a.csv has no "prompt" column (found: question, answer)',
        ),
        (
            "a.txt",
            "hello\n",
            "prompts file {dir}/a.txt: unsupported extension '.txt'; use .jsonl (one JSON object per "
            'line with a "prompt" field) or .csv (with a "prompt" column)',
        ),
    ],
)
def test_bad_prompts_files_say_what_to_fix(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptsFileError) as info:
        load_prompts(path)
    assert str(info.value) == message.replace("{dir}", str(tmp_path))


def test_missing_prompts_file(tmp_path: Path) -> None:
    with pytest.raises(PromptsFileError) as info:
        load_prompts(tmp_path / "nope.jsonl")
    assert str(info.value) == f"prompts file {tmp_path}/nope.jsonl does not exist"
