"""smart_router sorts prompts it has never seen into the five routes."""
from __future__ import annotations

import json

import pytest

from wattbench.service.router import ROUTES_FILE, load_routes, smart_router

CASES = [
    # factual questions and calculations -> Precise
    ("What is the capital of Australia?", "Precise"),
    ("Who wrote Pride and Prejudice?", "Precise"),
    ("How many legs does a spider have?", "Precise"),
    ("What is 17 * 23?", "Precise"),
    ("When did the Berlin Wall fall?", "Precise"),
    ("Convert 100 degrees Fahrenheit to Celsius.", "Precise"),
    # code in any language -> Coder
    ("Write a Python function that checks whether a string is a palindrome.", "Coder"),
    ("Give me a SQL query that returns the ten most recent orders per customer.", "Coder"),
    ("How do I reverse a linked list in Rust?", "Coder"),
    ("Fix this bug: def add(a, b): return a - b", "Coder"),
    ("Implement binary search in JavaScript", "Coder"),
    ("Write a bash script that renames every .txt file to .md", "Coder"),
    # creative writing -> Creative
    ("Write a haiku about autumn leaves.", "Creative"),
    ("Tell me a short story about a robot who learns to paint.", "Creative"),
    ("Compose a limerick about a cat on a train.", "Creative"),
    ("Imagine a city on Mars and describe a morning there.", "Creative"),
    # analysis and comparison -> Analyst
    ("Compare PostgreSQL and MongoDB for an analytics workload.", "Analyst"),
    ("What are the pros and cons of remote work?", "Analyst"),
    ("Explain why inflation hurts people on fixed incomes.", "Analyst"),
    ("Analyze the trade-offs between renting and buying a home.", "Analyst"),
    ("Nuclear versus solar power: which should a small country prioritise?", "Analyst"),
    # nothing specific -> Balanced
    ("Hello there!", "Balanced"),
    ("I'm feeling a bit tired today.", "Balanced"),
]


@pytest.mark.parametrize(("prompt", "route"), CASES)
def test_router_sorts_unseen_prompts(prompt, route):
    assert smart_router(prompt).route == route


def test_temperatures_come_from_the_data_file():
    assert smart_router("What is the capital of France?").temperature == 0.1
    assert smart_router("Write a haiku about rain").temperature == 0.9
    assert smart_router("Write a Python function to add two numbers").temperature == 0.2
    assert smart_router("Compare cats and dogs as pets").temperature == 0.5
    assert smart_router("Hello!").temperature == 0.7


def test_reason_names_what_matched():
    decision = smart_router("Write a haiku about rain")
    assert decision.reason == "matched 'haiku', 'Write a haiku about' (score 4)"
    assert smart_router("Hello!").reason == "no signal matched; default route"


def test_routes_file_is_validated(tmp_path):
    bad = json.loads(ROUTES_FILE.read_text())
    bad["routes"][0]["temperature"] = 1.5
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="route Coder: temperature 1.5 is outside 0.1-0.9"):
        load_routes(path)
