"""What benchmark.ipynb needs beyond the other modules: keys and a profiles table.

Keys come from the environment, then Colab secrets, then a hidden prompt, and the prompt only when
someone is there to answer (Colab, or a terminal). A found key is put into this process's environment,
where config.Settings and the service subprocess read it; it is never printed or returned, only where
it came from ("environment", "Colab secrets", "prompt").

What the notebook installs, and how, is wattbench.install.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KeySpec:
    """An environment variable the notebook looks for; `ask`: it may be asked for with a hidden prompt."""

    name: str
    ask: bool
    purpose: str


KEYS: tuple[KeySpec, ...] = (
    KeySpec("GEMINI_API_KEY", True, "a Gemini Flash model instead of the embedded model"),
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
