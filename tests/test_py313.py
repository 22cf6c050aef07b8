"""CPython 3.13 with the project's pins: requirements-dev.txt installs there (llama-cpp-python built from
source, every other pin a wheel), wattbench builds as a wheel, and the fast test lane passes, in the Debian 13
root of scripts/py313_root.sh (Python 3.13.5; Colab runs 3.13.15, and a machine of this project with Debian 13
has 3.13 as its python3). The venv is cached in the root by the requirements' contents: built once (about
7 min on 2 cores, the llama.cpp build), reused after. Times: docs/notebook.md."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import py313
import pytest

from wattbench import install

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pins_python() -> Path:
    if py313.unavailable():
        pytest.skip(py313.unavailable())
    py313.build()
    return py313.venv(ROOT / "requirements-dev.txt", ROOT / "requirements.txt") / "bin" / "python"


@pytest.mark.slow
def test_every_pin_installs_on_python_3_13(pins_python: Path) -> None:
    done = py313.run([str(pins_python), "-c", "import platform; print(platform.python_version())"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith("3.13.")
    listed = py313.run([str(pins_python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    versions = {install.canonical(row["name"]): row["version"] for row in json.loads(listed.stdout)}
    pins = install.parse_requirements(ROOT / "requirements-dev.txt", python_version="3.13") + \
        install.parse_requirements(ROOT / "requirements.txt", python_version="3.13")
    assert {install.canonical(name): versions.get(install.canonical(name)) for name, _ in pins} == {
        install.canonical(name): version for name, version in pins}


@pytest.mark.slow
def test_wattbench_builds_and_the_fast_lane_passes_on_python_3_13(pins_python: Path,
                                                                   tmp_path: Path) -> None:
    # built from a copy of what the package is made of (a build writes build/ and *.egg-info where it runs)
    source = tmp_path / "src"
    shutil.copytree(ROOT / "wattbench", source / "wattbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel = py313.run([str(pins_python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                      binds=[tmp_path], timeout=600)
    assert wheel.returncode == 0, wheel.stdout[-3000:] + wheel.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("*.whl")] == ["wattbench-0.2.0-py3-none-any.whl"]
    lane = py313.run(["env", f"PYTHONPATH={ROOT}", "LITELLM_LOCAL_MODEL_COST_MAP=True", str(pins_python), "-m",
                      "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"], timeout=1800)
    summary = lane.stdout.strip().splitlines()[-1]
    assert lane.returncode == 0 and " passed" in summary and "failed" not in summary, lane.stdout[-5000:]
