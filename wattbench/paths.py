"""Where wattbench's own data files live (installed with the package)."""
from __future__ import annotations

from pathlib import Path

#: Tables as data files, each row citing its source: GPUs, datacenters, profiles, routes, prompts.
DATA_DIR = Path(__file__).resolve().parent / "data"
