"""The `wattbench` command: serve | run | sweep | report | simulate.

Each subcommand lives in the subpackage that owns it; this module only dispatches, so that
`wattbench simulate` never pays for importing the model stack (LiteLLM costs seconds of CPU).
"""
from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "serve": ("wattbench.service.serve", "cli_serve", "start the FastAPI service under uvicorn"),
    "run": ("wattbench.runs.run", "cli_run", "benchmark a model and write the CSV, dashboards and report"),
    "sweep": ("wattbench.runs.sweep", "cli_sweep", "one workload at several loads (and models): the frontier"),
    "report": ("wattbench.analysis.cli", "cli_report", "rebuild the dashboards and the report from a CSV"),
    "simulate": ("wattbench.energy.cli", "cli_simulate", "predict latency, energy and carbon on GPU profiles"),
}

USAGE = "usage: wattbench {serve,run,sweep,report,simulate} [options]   (add --help to any)\n\n" + "\n".join(
    f"  {name:<9} {help_}" for name, (_, _, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wattbench sweep --help | head`: the reader left; no traceback (Python's advice)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
