"""Run-all time of benchmark.ipynb with the embedded default model, against a budget of 120 s on 2 cores.

Executes the notebook alone in a fresh temporary directory (as after a Colab upload, everything installed)
with nbclient and no keys, then, side by side in the same run, the same work through the command line
(`wattbench run`, same prompts, same max_tokens). Prints the wall time of each stage of the notebook, the
totals, Run-all / budget (target <= 1.0) and notebook / CLI (what the notebook adds: kernel, inline figures).

    .venv/bin/python benchmarks/bench_notebook.py [--prompts 12] [--max-tokens 128] [--no-cli]

Other load on the machine matters a lot to the embedded model (llama.cpp on every core): `uptime` is printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUDGET_S = 120.0  # issue 6: Run-all with the embedded default, once installed, on this 2-core machine


def _seconds(cell: dict) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def stage_times(nb: dict) -> list[tuple[str, float]]:
    """(section heading, seconds) summed over the code cells under each '## ' heading."""
    stages: list[tuple[str, float]] = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            headings = [line[3:].strip() for line in cell["source"].splitlines() if line.startswith("## ")]
            if headings:
                stages.append((headings[0], 0.0))
        elif stages:
            name, total = stages[-1]
            stages[-1] = (name, total + (_seconds(cell) or 0.0))
    return stages


def run_notebook(work: Path, env: dict[str, str]) -> tuple[float, dict]:
    """Execute benchmark.ipynb in `work`; (wall seconds, executed notebook)."""
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(ROOT / "benchmark.ipynb", work / "benchmark.ipynb")
    nb = nbformat.read(work / "benchmark.ipynb", as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        start = time.perf_counter()
        resources = {"metadata": {"path": str(work)}}
        client = NotebookClient(nb, timeout=900, kernel_name="python3", resources=resources)
        client.execute()
        wall_s = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return wall_s, nb


def run_cli(out: Path, env: dict[str, str], prompts: int) -> float:
    """`wattbench run` on the first `prompts` prompts; wall seconds."""
    from wattbench.workloads.prompts import DEFAULT_PROMPTS_PATH

    out.mkdir(parents=True, exist_ok=True)
    subset = out / "prompts.jsonl"
    lines = Path(DEFAULT_PROMPTS_PATH).read_text(encoding="utf-8").splitlines()
    subset.write_text("\n".join([line for line in lines if line.strip()][:prompts]) + "\n", encoding="utf-8")
    start = time.perf_counter()
    command = [sys.executable, "-m", "wattbench", "run", "--prompts", str(subset), "--out", str(out),
               "--no-progress"]
    subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12, help="the first N test prompts (default: all 12)")
    parser.add_argument("--max-tokens", type=int, default=128, help="answer cap (notebook default: 128)")
    parser.add_argument("--no-cli", action="store_true", help="time the notebook only")
    args = parser.parse_args()

    for name in ("GEMINI_API_KEY", "WATTBENCH_MODEL", "NGROK_AUTHTOKEN", "LANGFUSE_PUBLIC_KEY",
                 "LANGFUSE_SECRET_KEY", "WATTBENCH_API_TOKEN"):
        os.environ.pop(name, None)
    env = {"WATTBENCH_MAX_TOKENS": str(args.max_tokens), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if args.prompts != 12:
        env["WATTBENCH_PROMPT_LIMIT"] = str(args.prompts)
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="wattbench-nb-") as tmp:
        work = Path(tmp) / "colab"
        work.mkdir()
        wall_s, nb = run_notebook(work, env)
        print(f"notebook Run-all, {args.prompts} prompts, max_tokens {args.max_tokens}, embedded model:")
        for name, seconds in stage_times(nb):
            print(f"  {name:<28} {seconds:7.1f} s")
        print(f"  {'total (wall, incl. kernel)':<28} {wall_s:7.1f} s")
        print(f"Run-all / budget {BUDGET_S:g} s = {wall_s / BUDGET_S:.2f}  (target <= 1.0)")
        if not args.no_cli:
            cli_s = run_cli(Path(tmp) / "cli", env, args.prompts)
            print(f"CLI `wattbench run`, same work: {cli_s:.1f} s; notebook / CLI = {wall_s / cli_s:.2f}")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
