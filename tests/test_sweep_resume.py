"""`wattbench sweep --resume` with options again (issue 20 item 8): the same ones resume, other ones are refused
with one line naming the option and what the sweep has (not the old points run silently, nor a message about
an option never given); options left out are the saved ones."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wattbench.cli import main
from wattbench.cli_support import CliError
from wattbench.runs.sweep import Sweep, parse_sweep

TARGET = ["--base-url", "http://127.0.0.1:9/v1", "--model", "m"]


def planned(tmp_path: Path, *load: str) -> Sweep:
    sweep = Sweep(*parse_sweep([*TARGET, *load, "--out", str(tmp_path)]))
    sweep.load_or_plan()
    return sweep


def resumed(tmp_path: Path, *argv: str) -> Sweep:
    sweep = Sweep(*parse_sweep([*TARGET, "--resume", *argv, "--out", str(tmp_path)]))
    sweep.load_or_plan()
    return sweep


def test_resume_without_options_takes_the_saved_ones(tmp_path: Path) -> None:
    planned(tmp_path, "--concurrency", "1,8", "--requests-per-point", "6")
    sweep = resumed(tmp_path)
    assert ([p.label for p in sweep.points], sweep.options.requests_per_point) == (["c1", "c8"], 6)
    again = resumed(tmp_path, "--concurrency", "8,1", "--requests-per-point", "6")
    assert ([p.label for p in again.points], again.options.requests_per_point) == (["c1", "c8"], 6)


@pytest.mark.parametrize(("argv", "message"), [
    (["--concurrency", "1,4"], "--concurrency 1,4 is not the sweep's in {out} (it has the points c1, c8): drop "
     "--concurrency to resume it as it was, or choose another --out for a new sweep"),
    (["--rate", "2"], "--rate 2 is not the sweep's in {out} (it has the points c1, c8): drop --rate to resume it as "
     "it was, or choose another --out for a new sweep"),
    (["--auto"], "--auto is not the sweep's in {out} (it has the points c1, c8): drop --auto to resume it as it "
     "was, or choose another --out for a new sweep"),
    (["--requests-per-point", "9"], "--requests-per-point 9 is not the sweep's in {out} (it has 6): drop "
     "--requests-per-point to resume it as it was, or choose another --out for a new sweep"),
])
def test_other_options_on_resume_are_refused_naming_them(argv: list[str], message: str, tmp_path: Path) -> None:
    planned(tmp_path, "--concurrency", "1,8", "--requests-per-point", "6")
    with pytest.raises(CliError) as caught:
        resumed(tmp_path, *argv)
    assert str(caught.value) == message.format(out=tmp_path)


def test_the_cli_says_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planned(tmp_path, "--concurrency", "1,8")
    assert main(["sweep", *TARGET, "--resume", "--concurrency", "2", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --concurrency 2 is not the sweep's in {tmp_path} (it has the points "
                                       "c1, c8): drop --concurrency to resume it as it was, or choose another --out "
                                       "for a new sweep\n")


def test_help_into_a_closed_pipe_is_no_traceback() -> None:
    done = subprocess.run(f"'{sys.executable}' -m wattbench sweep --help | head -1", shell=True,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.stdout.splitlines(), done.stderr) == (["usage: wattbench sweep [--concurrency CONCURRENCY] "
                                                        "[--rate RATE] [--auto]"], "")
