"""Prompts files as a resource bound (issue 20 item 9): read line by line, a deeply nested line and an overlong
line are one-line errors, a device or a FIFO is named as such (not "does not exist")."""
from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from wattbench.workloads.prompts import MAX_LINE_BYTES, PromptsFileError, load_prompts, prompts_sha256


def test_a_deeply_nested_line_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"prompt": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(PromptsFileError) as caught:
        load_prompts(path)
    assert str(caught.value) == ('deep.jsonl line 2 is nested too deeply to be a prompt row; give one flat JSON '
                                 'object like {"prompt": "..."}')


def test_an_overlong_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("prompt\n" + "x" * (MAX_LINE_BYTES + 10) + "\n")
    with pytest.raises(PromptsFileError) as caught:
        load_prompts(path)
    assert str(caught.value) == "long.csv line 2 is over 4,194,304 characters; a prompt holds at most 32,000"


def test_dev_zero_is_not_a_regular_file() -> None:
    with pytest.raises(PromptsFileError) as caught:
        load_prompts("/dev/zero")
    assert str(caught.value) == ("prompts file /dev/zero is not a regular file (a device, a pipe or a socket); "
                                 "give a .jsonl or .csv file")


def test_a_fifo_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "prompts.jsonl"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(PromptsFileError) as caught:
        load_prompts(fifo)
    assert str(caught.value) == (f"prompts file {fifo} is not a regular file (a device, a pipe or a socket); give a "
                                 ".jsonl or .csv file")


def test_a_large_file_is_streamed(tmp_path: Path) -> None:
    """200,000 rows (~9 MB): the peak of Python allocations while loading stays below the file's size plus
    its specs (read whole and split, it was several times the file)."""
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("id,prompt\n")
        for i in range(200_000):
            out.write(f"r{i},prompt number {i} padded to some length\n")
    tracemalloc.start()
    specs = load_prompts(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (len(specs), specs[-1].prompt_id) == (200_000, "r199999")
    per_spec = peak / len(specs)
    assert per_spec < 800, f"{per_spec:.0f} bytes per row at the peak"
    assert len(prompts_sha256(path)) == 64
