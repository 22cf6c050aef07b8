"""The command line's one convention: bad input is one `error: ...` line on stderr and exit code 2.

Every subcommand builds its parser from `Parser` (which raises `CliError` instead of printing usage and
exiting), takes numbers through `positive_float` / `positive_int` / `non_negative_int`, and wraps its body in
`run_cli`, which turns CliError (and the errors a command names) into that line, and --help into exit 0.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from wattbench.redact import scrub


class CliError(Exception):
    """Bad input for a command: printed as one `error: ...` line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises CliError instead of printing its usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def whole_number(text: str, minimum: int) -> int:
    """A whole number >= minimum, or argparse.ArgumentTypeError saying what was wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return whole_number(text, 0)


def one_line(text: str) -> str:
    """`text` with its line breaks (e.g. from a service's error detail) folded into spaces, every secret
    masked (redact.scrub): this is what error lines print."""
    return " ".join(scrub(text).split())


def fail(message: str) -> int:
    """Print `error: message` (one line) on stderr; the exit code 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def run_cli(body: Callable[[], int], *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body: CliError and the named `errors` become one `error:` line and exit 2; --help
    (argparse's SystemExit) returns its code."""
    try:
        return body()
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except (CliError, *errors) as exc:
        return fail(str(exc))
