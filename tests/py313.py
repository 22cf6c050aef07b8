"""CPython 3.13 (Colab's Python since 2026-08-19) for the tests: a Debian 13 root that scripts/py313_root.sh
builds once and caches (/var/cache/wattbench/py313), venvs in it, and commands run in it with folders of this
machine visible at the same paths. Needs root (debootstrap, chroot, a private mount namespace)."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "py313_root.sh"


def unavailable() -> str | None:
    """Why the root cannot be built or entered here, or None."""
    if os.geteuid() != 0:
        return "the Python 3.13 root needs root (debootstrap, chroot, unshare): run the tests as root"
    missing = [tool for tool in ("unshare", "chroot", "mount") if shutil.which(tool) is None]
    return f"the Python 3.13 root needs {', '.join(missing)}" if missing else None


def _script(*args: str, timeout: float) -> str:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    assert done.returncode == 0, f"bash scripts/py313_root.sh {' '.join(args)} failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def build() -> Path:
    """The root (built when missing: about 2 min, more on a slow mirror)."""
    return Path(_script("build", timeout=1800))


def venv(*requirements: Path) -> Path:
    """A venv in the root holding `requirements` (cached by their contents), as a path inside the root."""
    return Path(_script("venv", *map(str, requirements), timeout=3600))


def command(argv: Iterable[str], binds: Iterable[Path] = ()) -> list[str]:
    """The command line that runs `argv` in the root, in the current directory, `binds` visible."""
    return ["bash", str(SCRIPT), "run", *(arg for b in binds for arg in ("--bind", str(b))), "--", *argv]


def run(argv: Iterable[str], *, binds: Iterable[Path] = (), cwd: Path = ROOT,
        env: Mapping[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the root (cwd visible there at the same path); stdout and stderr captured."""
    return subprocess.run(command(argv, binds), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
