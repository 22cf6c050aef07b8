"""Generate benchmark.ipynb from this file and the repository's modules (the notebook is never hand-edited).

    python scripts/build_notebook.py           write benchmark.ipynb
    python scripts/build_notebook.py --check   exit 1 when benchmark.ipynb differs from what would be written

The notebook is thin: each stage configures, calls the modules and shows the results. So that it also
runs when uploaded alone (Colab), it carries the project's files (EMBEDDED_PATTERNS), one cell each, written
to disk only where they are missing; tests/test_notebook.py fails when those copies differ from the
repository files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "benchmark.ipynb"
#: The project files the notebook carries, as glob patterns relative to the repository root.
EMBEDDED_PATTERNS: tuple[str, ...] = ("app.py", "gpu_profiles.py", "pyproject.toml", "requirements.txt",
                                      "wattbench/*.py",
                                      "wattbench/*/*.py", "wattbench/*/*/*.py",
                                      "wattbench/data/*.json", "wattbench/data/*.jsonl")
#: Carried first: the install cell reads them before anything else.
FIRST = ("pyproject.toml", "requirements.txt")
#: The command that regenerates the notebook.
REBUILD = "python scripts/build_notebook.py"
#: The cell magic that writes a carried file when it is missing (defined in the first code cell).
FILE_MAGIC = "%%project_file"


def embedded_paths(root: Path = ROOT) -> list[str]:
    """The carried files, relative POSIX paths, sorted (FIRST first: they are needed first)."""
    found = {p.relative_to(root).as_posix() for pattern in EMBEDDED_PATTERNS for p in root.glob(pattern)
             if p.is_file()}
    return sorted(found, key=lambda path: (path not in FIRST, path.count("/"), path))


INTRO = """\
# wattbench: what an LLM costs you in time, money and energy

This notebook is the front door of **wattbench**. It starts the FastAPI service, optionally puts it behind
a public ngrok URL and traces every model call to Langfuse, sends the 12 test prompts through it, measures
latency, time to first token, tokens, API cost and accuracy per request, estimates energy (kWh) and carbon
(gCO2e) on several GPU / datacenter deployment profiles, and ends with the CSV, seven interactive Plotly
dashboards and a report.

**Run all** works as it is: with no key it benchmarks the embedded model (SmolLM2-135M-Instruct through
llama-cpp-python) on this machine's CPU. Keys are optional (section 2):

| variable | what it turns on |
|---|---|
| `GEMINI_API_KEY` | a Gemini Flash model instead of the embedded model (gemini-2.5-flash, or its successor once it is deprecated) |
| `WATTBENCH_MODEL` | any LiteLLM model string |
| `NGROK_AUTHTOKEN` | a public URL for the service (which then requires `WATTBENCH_API_TOKEN`) |
| `LANGFUSE_PUBLIC_KEY` + `LANGFUSE_SECRET_KEY` (+ `LANGFUSE_HOST`) | a Langfuse trace of every model call |

- **Colab**: upload this notebook alone (File > Upload notebook) and Run all. It writes the project's files
  next to itself and installs only what is missing or too old (what Colab already has is left alone, so no
  restart). Put keys in Colab secrets (the key icon) or type them when asked. With no key, the embedded
  model's llama-cpp-python is built from source once (about 7 minutes on Colab's 2 CPUs): a key skips it.
- **Locally**: `bash scripts/setup.sh`, then open this notebook from the repository with Jupyter (it uses the
  repository's files) and Run all; keys come from the environment.

Nothing secret is printed, kept in the outputs or written to `outputs/`.
"""

SETUP_MD = """\
## 1. Set-up

The first cell defines `%%project_file PATH`: a cell that starts with it writes PATH only when PATH does not
exist. The collapsed cells after it carry the project's files (generated from the repository by
`scripts/build_notebook.py`): next to the repository they change nothing; uploaded alone, they recreate the
project here.
"""

BOOTSTRAP = '''\
# Where this runs, and the %%project_file cell magic (writes a carried project file only when it is missing).
import os
import sys
from pathlib import Path

from IPython.core.magic import register_cell_magic

IN_COLAB = "google.colab" in sys.modules
if not os.environ.get("WATTBENCH_REMOTE_PRICE_MAP"):  # LiteLLM's bundled price map: no download
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
WRITTEN: list[str] = []


@register_cell_magic
def project_file(line: str, cell: str) -> None:
    """Write `cell` to the path on the magic's line unless that file exists."""
    path = Path(line.strip())
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cell if cell.endswith("\\n") else cell + "\\n", encoding="utf-8")
    WRITTEN.append(path.as_posix())


print(f"working directory: {Path.cwd()}" + (" (Colab)" if IN_COLAB else ""))
'''

INSTALL = '''\
# Packages: what is missing or older than its range in pyproject.toml (an installed version inside the range
# is left alone, so nothing the kernel has loaded is replaced and no restart is needed); a missing package
# comes at its pin in requirements.txt. The embedded model's packages wait for section 2.
import importlib

importlib.invalidate_caches()
from wattbench import install
from wattbench import notebook as nbs

print(f"wrote {len(WRITTEN)} project files from this notebook" if WRITTEN
      else "using the project files already here")
RANGES = install.read_ranges("pyproject.toml")
PINS = install.parse_requirements("requirements.txt")
to_install = install.packages_to_install(RANGES, PINS, skip=install.EMBEDDED_MODEL_PACKAGES)
if to_install:
    print("installing:", " ".join(to_install))
    install.install(to_install)
    importlib.invalidate_caches()
else:
    print("all required packages are installed")
'''

PARAMS_MD = """\
### Parameters

Change them here (or set the variables in the environment before starting Jupyter).
"""

PARAMS = '''\
OUT_DIR = Path(os.environ.get("WATTBENCH_OUT_DIR", "outputs"))  # CSV, dashboards, report, service log
REPEATS = int(os.environ.get("WATTBENCH_REPEATS", "1"))  # each prompt is sent this many times
PROMPT_LIMIT = int(os.environ.get("WATTBENCH_PROMPT_LIMIT", "0")) or None  # the first N prompts; None: all
CONCURRENCY = 1  # requests in flight (1: one at a time)
EMBEDDED_MAX_TOKENS = 128  # answer length cap for the embedded model
'''

KEYS_MD = """\
## 2. Keys

Each key is looked up in the environment, then in Colab secrets, then asked for with a hidden prompt (Colab
or a terminal only; Enter skips it). Only whether a key is set, and where from, is shown.
"""

KEYS = '''\
ask = nbs.hidden_prompt() if nbs.someone_can_answer() else None  # never under nbclient / CI
sources = nbs.load_keys(colab=nbs.colab_secrets(), prompt=ask)
print("\\n".join(nbs.describe_keys(sources)))

from wattbench.config import LOCAL_MODEL, get_settings
from wattbench.service import tracing

get_settings.cache_clear()  # read the environment again, keys included
settings = get_settings()
MODEL = settings.default_model()
print(f"\\nmodel: {MODEL}" + ("  (embedded, on this CPU)" if MODEL == LOCAL_MODEL else ""))
if settings.default_model_note():
    print(settings.default_model_note())
target = tracing.tracing_target(settings)
print(f"tracing: on, to {target.endpoint}" if target
      else "tracing: off (it needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)")
if MODEL == LOCAL_MODEL:
    missing = install.embedded_model_specs("requirements.txt")
    if missing:
        print(install.build_warning())
        print("installing the embedded model's packages:", " ".join(missing))
        print(f"{install.LLAMA}: {install.install_embedded_model(missing)}")
'''

SERVICE_MD = """\
## 3. The service

`app.py` under uvicorn as a subprocess on a free 127.0.0.1 port, ready when `GET /health` answers (a start
that fails shows the tail of the service log). Running the notebook again first stops the service it started
before. When a tunnel is wanted, the service requires `Authorization: Bearer <WATTBENCH_API_TOKEN>` (generated
when unset).
"""

SERVICE = '''\
import httpx

from wattbench.client.service_process import ServiceProcess
from wattbench.service import tunnel

if globals().get("PUBLIC_URL"):  # left by an earlier run of this notebook
    tunnel.close_tunnel(PUBLIC_URL)
PUBLIC_URL = None
if globals().get("SERVICE") is not None:
    SERVICE.stop()
    SERVICE = None

if settings.ngrok_authtoken is not None:
    _, generated = tunnel.ensure_api_token()
    state = "generated for this session" if generated else "set"
    print(f"WATTBENCH_API_TOKEN {state}; the service requires it (not shown: read "
          "os.environ['WATTBENCH_API_TOKEN'] here, or set your own as a key)")
    get_settings.cache_clear()
    settings = get_settings()

service_env = {}
if MODEL == LOCAL_MODEL and "WATTBENCH_MAX_TOKENS" not in os.environ:
    service_env["WATTBENCH_MAX_TOKENS"] = str(EMBEDDED_MAX_TOKENS)
OUT_DIR.mkdir(parents=True, exist_ok=True)
SERVICE = ServiceProcess(env=service_env, log_path=OUT_DIR / "service.log", startup_timeout_s=300).start()
health = httpx.get(f"{SERVICE.url}/health", timeout=10).json()
print(f"service ready at {SERVICE.url}: {health}")
'''

TUNNEL_MD = """\
## 4. Public URL (optional)

With `NGROK_AUTHTOKEN`, pyngrok opens a public https URL to the service. With no token, a rejected token or no
network, one line says so and everything runs at localhost. The batch below always talks to localhost, so the
tunnel's own latency is not part of the measurements.
"""

TUNNEL = '''\
PUBLIC_URL = tunnel.open_tunnel(SERVICE.port, settings.ngrok_authtoken)
if PUBLIC_URL:
    print("try it: curl -H \\"Authorization: Bearer $WATTBENCH_API_TOKEN\\" "
          "-H 'Content-Type: application/json' "
          f"-d '{{\\"prompt\\": \\"What is the capital of France?\\"}}' {PUBLIC_URL}/chat")
'''

PROFILES_MD = """\
## 5. Deployment profiles

Each measured request is combined afterwards with every profile (a GPU in a datacenter): measure once,
simulate many. The sources of every figure are in `wattbench/data/gpus.json` and `wattbench/data/datacenters.json`.
"""

PROFILES = '''\
import gpu_profiles  # the design card's module: profiles and the energy maths

available = gpu_profiles.load_profiles()
PROFILES = {name: available[name] for name in gpu_profiles.DEFAULT_PROFILES}
display(nbs.profiles_frame(PROFILES))
'''

BATCH_MD = """\
## 6. Batch

The test prompts go to `/chat` (one warm-up request first, not recorded); each finished request is appended to
`outputs/runs/<run_id>/requests.jsonl` at once, then every request is combined with every profile into
`outputs/ai_metrics_<timestamp>.csv`.
"""

BATCH = '''\
from wattbench.workloads.prompts import DEFAULT_PROMPTS_PATH
from wattbench.runs.run import run_benchmark

prompts_path = DEFAULT_PROMPTS_PATH
if PROMPT_LIMIT:  # the first N prompts, in a file of their own, so that the run's manifest names what it sent
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    prompts_path = OUT_DIR / f"prompts_first_{PROMPT_LIMIT}.jsonl"
    lines = DEFAULT_PROMPTS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    prompts_path.write_text("".join(lines[:PROMPT_LIMIT]), encoding="utf-8")
# the same code path as `wattbench run` (run file, resume, CSV); the report comes in section 7
RESULT = run_benchmark(SERVICE.url, prompts=str(prompts_path), profiles=",".join(PROFILES),
                       repeats=REPEATS, concurrency=CONCURRENCY, out=str(OUT_DIR), no_report=True)
df, CSV_PATH = RESULT.frame, RESULT.csv_path
'''

ANALYSIS_MD = """\
## 7. Analysis

Per route and per profile, from the CSV. Energy numbers carry their lens: *simulated* (a profile),
*provider-side* (EcoLogits, API models) or *measured / estimated* (this machine, embedded model).
"""

ANALYSIS = '''\
from wattbench.analysis import reading, tables

frame = reading.load_input(CSV_PATH)
display(tables.route_latency_table(frame))
display(tables.accuracy_table(frame))
display(tables.efficiency_table(frame))
display(tables.energy_breakdown(frame))
'''

DASHBOARDS_MD = """\
## 8. Dashboards

The seven dashboards, inline; `build_outputs` also writes them as HTML under `outputs/` with `index.html`.
"""

DASHBOARDS = '''\
from wattbench.analysis import outputs, site

OUTPUTS = outputs.build_outputs(frame, OUT_DIR, notes=[n for n in (settings.default_model_note(),) if n])
figures = site.make_all(frame)
for figure in figures.values():
    figure.show()
print("\\n".join(f"wrote {path}" for path in OUTPUTS["dashboards"].values()))
print(f"wrote {OUTPUTS['index']}")
'''

REPORT_MD = """\
## 9. Report
"""

REPORT = '''\
print(OUTPUTS["report_text"])
print(f"wrote {OUTPUTS['report_txt']} and {OUTPUTS['report_md']}")
'''

SHUTDOWN_MD = """\
## 10. Shut down

Close the tunnel and stop the service (the model calls of this run are traced by now when Langfuse is on).
"""

SHUTDOWN = '''\
if PUBLIC_URL:
    tunnel.close_tunnel(PUBLIC_URL)
    PUBLIC_URL = None
code = SERVICE.stop()
SERVICE = None
print(f"service stopped (exit code {code}); outputs in {OUT_DIR.resolve()}")
'''


def _file_cell_source(path: str, root: Path) -> str:
    return f"{FILE_MAGIC} {path}\n" + (root / path).read_text(encoding="utf-8")


def build(root: Path = ROOT) -> dict:
    """The notebook as a JSON-ready dict (nbformat 4.5, no outputs, deterministic cell ids)."""
    cells: list[dict] = []

    def add(kind: str, source: str, **metadata: object) -> None:
        cell: dict = {"cell_type": kind, "id": f"cell-{len(cells):02d}", "metadata": dict(metadata),
                      "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)

    add("markdown", INTRO)
    add("markdown", SETUP_MD)
    add("code", BOOTSTRAP)
    for path in embedded_paths(root):
        add("code", _file_cell_source(path, root), jupyter={"source_hidden": True}, cellView="form",
            wattbench_file=path)
    add("code", INSTALL)
    add("markdown", PARAMS_MD)
    add("code", PARAMS)
    stages = ((KEYS_MD, KEYS), (SERVICE_MD, SERVICE), (TUNNEL_MD, TUNNEL), (PROFILES_MD, PROFILES),
              (BATCH_MD, BATCH), (ANALYSIS_MD, ANALYSIS), (DASHBOARDS_MD, DASHBOARDS), (REPORT_MD, REPORT),
              (SHUTDOWN_MD, SHUTDOWN))
    for markdown, code in stages:
        add("markdown", markdown)
        add("code", code)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "colab": {"provenance": [], "toc_visible": True},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def render(notebook: dict) -> str:
    """The notebook file's text (stable formatting: rebuilding changes nothing when nothing changed)."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when benchmark.ipynb is not up to date")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        current = NOTEBOOK.read_text(encoding="utf-8") if NOTEBOOK.exists() else ""
        if current != text:
            print(f"error: benchmark.ipynb is out of date; run: {REBUILD}", file=sys.stderr)
            return 1
        print("benchmark.ipynb is up to date")
        return 0
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} ({len(embedded_paths())} project files carried)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
