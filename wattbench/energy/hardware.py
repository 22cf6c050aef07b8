"""The data layer: GPUs, datacenters and deployment profiles read from wattbench/data/*.json, each number
with its source; grid intensities from CodeCarbon / EcoLogits data where they ship it."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattbench.paths import DATA_DIR

GPUS_PATH = DATA_DIR / "gpus.json"


DATACENTERS_PATH = DATA_DIR / "datacenters.json"


PROFILES_PATH = DATA_DIR / "profiles.json"


#: Profiles used when the user chooses none: the original notebook's three, plus a low-carbon H100.
DEFAULT_PROFILES: tuple[str, ...] = ("T4_COLAB", "A100_SIMULATED", "L40S_SIMULATED", "H100_LOW_CARBON")


J_PER_KWH = 3.6e6


#: 1 lb = 453.59237 g (exact, international pound); lbs/MWh -> g/kWh.
G_PER_KWH_PER_LBS_PER_MWH = 0.45359237


#: Host (CPU, RAM, NIC, fans) power per GPU: EcoLogits 0.11.3 SERVER_POWER 1.2 kW for SERVER_GPUS 8
#: (ecologits/impacts/llm.py), GPUs excluded.
HOST_W_PER_GPU = 1200.0 / 8


#: Embodied carbon of the server around the GPUs, per GPU: EcoLogits 0.11.3 SERVER_EMBODIED_IMPACT_GWP
#: 5700 kgCO2e for an 8-GPU server (ecologits/impacts/llm.py).
SERVER_EMBODIED_KGCO2E_PER_GPU = 5700.0 / 8


#: Hardware lifetime over which embodied carbon is spread: EcoLogits 0.11.3 HARDWARE_LIFESPAN, 3 years.
HARDWARE_LIFETIME_S = 3 * 365 * 24 * 3600


class DataFileError(ValueError):
    """A data file (built-in or the user's) is missing, unreadable, or has a bad row."""


def _check_sources(row: BaseModel, fields: tuple[str, ...]) -> None:
    """Raise if a number in `fields` has no citation in `row.sources`."""
    sources: dict[str, str] = row.sources
    for name in fields:
        if getattr(row, name) is not None and not str(sources.get(name, "")).strip():
            raise ValueError(f"sources.{name} is missing: cite where the number {getattr(row, name)} comes from")


class GPUSpec(BaseModel):
    """One GPU model's datasheet figures (data/gpus.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    name: str
    tdp_w: float = Field(gt=0)
    idle_w: float = Field(ge=0)
    memory_gb: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    fp8_dense_tflops: float | None = Field(default=None, gt=0)
    memory_bandwidth_gb_s: float = Field(gt=0)
    interconnect: Literal["nvlink", "pcie"]
    interconnect_gb_s: float = Field(gt=0)
    embodied_kgco2e: float = Field(ge=0)
    rental_usd_per_gpu_hour: float = Field(ge=0)
    sources: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> GPUSpec:
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) must be below tdp_w ({self.tdp_w:g})")
        _check_sources(self, (
            "tdp_w", "idle_w", "memory_gb", "bf16_dense_tflops", "fp8_dense_tflops", "memory_bandwidth_gb_s",
            "interconnect_gb_s", "embodied_kgco2e", "rental_usd_per_gpu_hour",
        ))
        return self


class GridSource(BaseModel):
    """Where a datacenter's grid carbon intensity is read at run time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Literal["codecarbon_gcp_region", "codecarbon_country", "codecarbon_us_state", "ecologits_zone"]
    key: str = Field(min_length=1)


class Datacenter(BaseModel):
    """A datacenter / cloud region (data/datacenters.json).

    `grid_gco2e_per_kwh` is the value in use: from the installed package's dataset named by `grid` when
    available, else the data file's own value; `grid_source_used` says which.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    name: str
    location: str
    pue: float = Field(ge=1.0)
    wue_l_per_kwh: float = Field(ge=0)
    grid: GridSource | None = None
    grid_gco2e_per_kwh: float = Field(ge=0)
    electricity_usd_per_kwh: float = Field(ge=0)
    sources: dict[str, str]
    grid_source_used: str = ""

    @model_validator(mode="after")
    def _cited(self) -> Datacenter:
        _check_sources(self, ("pue", "wue_l_per_kwh", "grid_gco2e_per_kwh", "electricity_usd_per_kwh"))
        return self


class ProfileRow(BaseModel):
    """A deployment profile as written in a data file: keys of a GPU and a datacenter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    gpu: str
    gpu_count: int = Field(ge=1)
    datacenter: str
    batch_size: int = Field(default=1, ge=1)
    bytes_per_param: float = Field(default=2.0, gt=0, le=4)
    description: str = ""


class DeploymentProfile(BaseModel):
    """A GPU (x count) in a datacenter, serving `batch_size` requests at a time."""

    model_config = ConfigDict(frozen=True)

    key: str
    gpu: GPUSpec
    gpu_count: int = Field(ge=1)
    datacenter: Datacenter
    batch_size: int = Field(default=1, ge=1)
    bytes_per_param: float = Field(default=2.0, gt=0)
    description: str = ""


Row = TypeVar("Row", bound=BaseModel)


def _read_section(path: Path, section: str) -> list[Any]:
    """The list under `section` in the JSON file at `path`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataFileError(f"{path}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: expected a JSON object with a {section!r} list")
    rows = data.get(section, [])
    if not isinstance(rows, list):
        raise DataFileError(f"{path}: {section!r} must be a list of objects")
    return rows


def _validate_rows(path: Path, section: str, rows: list[Any], model: type[Row]) -> dict[str, Row]:
    """Validate rows into `model`, keyed by `key`; a bad row raises naming the row and the field."""
    out: dict[str, Row] = {}
    for index, raw in enumerate(rows):
        label = f"{section}[{index}]"
        if isinstance(raw, dict) and isinstance(raw.get("key"), str):
            label += f" (key {raw['key']!r})"
        if not isinstance(raw, dict):
            raise DataFileError(f"{path}: {label}: expected an object, got {type(raw).__name__}")
        try:
            row = model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            field = f"field {where!r}: " if where else ""
            raise DataFileError(f"{path}: {label}: {field}{err['msg']}") from None
        key = row.key
        if key in out:
            raise DataFileError(f"{path}: {label}: duplicate key {key!r}")
        out[key] = row
    return out


def load_gpus(path: Path | str | None = None) -> dict[str, GPUSpec]:
    """GPU specs by key from `path` (default data/gpus.json)."""
    path = Path(path) if path is not None else GPUS_PATH
    return _validate_rows(path, "gpus", _read_section(path, "gpus"), GPUSpec)


def _package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def grid_intensity_from_package(source: GridSource, package_dirs: Mapping[str, Path | None] | None = None
                                ) -> tuple[float, str] | None:
    """(gCO2e/kWh, description) from the maintained dataset that CodeCarbon or EcoLogits ships, or None.

    None when the package is not installed, its file is unreadable, or it does not list the key.
    """
    try:
        return _read_package_grid(source, package_dirs)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the caller falls back to the data file's value and says so in grid_source_used


def _read_package_grid(source: GridSource, package_dirs: Mapping[str, Path | None] | None
                       ) -> tuple[float, str] | None:
    dirs = package_dirs if package_dirs is not None else {
        "codecarbon": _package_dir("codecarbon"), "ecologits": _package_dir("ecologits")}
    if source.dataset == "ecologits_zone":
        root = dirs.get("ecologits")
        file = root / "data" / "electricity_mixes.json" if root else None
        if file is None or not file.is_file():
            return None
        mixes = json.loads(file.read_text(encoding="utf-8")).get("electricity_mixes", [])
        for mix in mixes:
            if mix.get("name") == source.key:
                return float(mix["gwp"]) * 1000.0, f"ecologits data/electricity_mixes.json zone {source.key}"
        return None
    root = dirs.get("codecarbon")
    if root is None:
        return None
    if source.dataset == "codecarbon_gcp_region":
        file = root / "data" / "cloud" / "impact.csv"
        if not file.is_file():
            return None
        with file.open(encoding="utf-8-sig", newline="") as fh:
            for rec in csv.DictReader(fh):
                if rec.get("provider") == "gcp" and rec.get("region") == source.key:
                    return float(rec["impact"]), f"codecarbon data/cloud/impact.csv gcp {source.key}"
        return None
    if source.dataset == "codecarbon_country":
        file = root / "data" / "private_infra" / "global_energy_mix.json"
        if not file.is_file():
            return None
        entry = json.loads(file.read_text(encoding="utf-8")).get(source.key)
        if not entry or entry.get("carbon_intensity") is None:
            return None
        return float(entry["carbon_intensity"]), (
            f"codecarbon data/private_infra/global_energy_mix.json {source.key} ({entry.get('year', '?')})")
    # codecarbon_us_state: the newest year folder that has usa_emissions.json (EPA eGRID, lbs/MWh).
    candidates = sorted((root / "data" / "private_infra").glob("*/usa_emissions.json"))
    if not candidates:
        return None
    entry = json.loads(candidates[-1].read_text(encoding="utf-8")).get(source.key)
    if not entry or entry.get("emissions") is None:
        return None
    return float(entry["emissions"]) * G_PER_KWH_PER_LBS_PER_MWH, (
        f"codecarbon {candidates[-1].parent.name}/usa_emissions.json {source.key} (EPA eGRID)")


def resolve_grid(dc: Datacenter, package_dirs: Mapping[str, Path | None] | None = None) -> Datacenter:
    """The datacenter with its grid intensity from the installed dataset, else its data-file fallback."""
    found = grid_intensity_from_package(dc.grid, package_dirs) if dc.grid is not None else None
    if found is None:
        return dc.model_copy(update={"grid_source_used": f"data file: {dc.sources.get('grid_gco2e_per_kwh', '')}"})
    value, description = found
    return dc.model_copy(update={"grid_gco2e_per_kwh": round(value, 3), "grid_source_used": description})


def load_datacenters(path: Path | str | None = None, *, resolve: bool = True) -> dict[str, Datacenter]:
    """Datacenters by key from `path` (default data/datacenters.json), grid intensity resolved at run time."""
    path = Path(path) if path is not None else DATACENTERS_PATH
    rows = _validate_rows(path, "datacenters", _read_section(path, "datacenters"), Datacenter)
    return {k: resolve_grid(v) for k, v in rows.items()} if resolve else rows


def _build_profiles(path: Path, rows: dict[str, ProfileRow], gpus: Mapping[str, GPUSpec],
                    datacenters: Mapping[str, Datacenter]) -> dict[str, DeploymentProfile]:
    out: dict[str, DeploymentProfile] = {}
    for index, (key, row) in enumerate(rows.items()):
        label = f"{path}: profiles[{index}] (key {key!r})"
        if row.gpu not in gpus:
            raise DataFileError(f"{label}: field 'gpu': unknown GPU {row.gpu!r}; valid keys: {', '.join(gpus)}")
        if row.datacenter not in datacenters:
            raise DataFileError(f"{label}: field 'datacenter': unknown datacenter {row.datacenter!r}; "
                                f"valid keys: {', '.join(datacenters)}")
        out[key] = DeploymentProfile(
            key=key, gpu=gpus[row.gpu], gpu_count=row.gpu_count, datacenter=datacenters[row.datacenter],
            batch_size=row.batch_size, bytes_per_param=row.bytes_per_param, description=row.description)
    return out


def load_profiles(extra_path: Path | str | None = None) -> dict[str, DeploymentProfile]:
    """Built-in deployment profiles plus the user's file.

    The user's JSON file may hold "gpus", "datacenters" and "profiles" lists in the built-in files' format;
    its rows are added to (or replace same-key) built-in rows. A bad row raises DataFileError naming the
    file, the row and the field.
    """
    gpus = load_gpus()
    datacenters = load_datacenters()
    profiles = _build_profiles(PROFILES_PATH, _validate_rows(
        PROFILES_PATH, "profiles", _read_section(PROFILES_PATH, "profiles"), ProfileRow), gpus, datacenters)
    if extra_path is None:
        return profiles
    path = Path(extra_path)
    user_gpus = _validate_rows(path, "gpus", _read_section(path, "gpus"), GPUSpec)
    user_dcs = _validate_rows(path, "datacenters", _read_section(path, "datacenters"), Datacenter)
    user_rows = _validate_rows(path, "profiles", _read_section(path, "profiles"), ProfileRow)
    if not (user_gpus or user_dcs or user_rows):
        raise DataFileError(f"{path}: no 'profiles', 'gpus' or 'datacenters' rows found")
    gpus = {**gpus, **user_gpus}
    datacenters = {**datacenters, **{k: resolve_grid(v) for k, v in user_dcs.items()}}
    return {**profiles, **_build_profiles(path, user_rows, gpus, datacenters)}


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip()).upper()


def find_gpu(gpus: Mapping[str, GPUSpec], name: str) -> GPUSpec:
    """The GPU whose key or alias is `name` (case-insensitive, '-' or ' ' for '_'); ValueError listing keys."""
    if name in gpus:
        return gpus[name]
    wanted = _normalise_name(name)
    for gpu in gpus.values():
        if wanted in {_normalise_name(n) for n in (gpu.key, *gpu.aliases)}:
            return gpu
    raise ValueError(f"unknown GPU {name!r}; valid keys: {', '.join(gpus)}")


def lookup(table: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; valid keys: {', '.join(table)}")
    return table[key]


def gpu_key_for_device_name(device_name: str, keys: Iterable[str]) -> str | None:
    """The gpus.json key of a GPU as NVML names it ('NVIDIA H200' -> 'H200', 'NVIDIA H100 80GB HBM3' ->
    'H100_SXM', 'NVIDIA A100-SXM4-40GB' -> 'A100_40GB_SXM'), or None when no key has its model number."""
    tokens = [t for t in re.split(r"[^A-Z0-9]+", device_name.upper()) if t and t not in ("NVIDIA", "TESLA")]
    if not tokens:
        return None
    candidates = [k for k in keys if k.upper().split("_")[0] == tokens[0]]
    if not candidates:
        return None
    form = "PCIE" if "PCIE" in tokens else "SXM"
    memory = next((t for t in tokens if t.endswith("GB")), None)

    def score(key: str) -> tuple[int, int]:
        parts = key.upper().split("_")
        return (int(form in parts or (form == "SXM" and "PCIE" not in parts)), int(memory in parts))

    return max(candidates, key=score)
