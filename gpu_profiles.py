"""GPU, datacenter and deployment-profile data, and wattbench's energy, carbon and cost maths.

Three lenses, each labelled in every output (README, section "Energy model"):

* simulated, per deployment profile: `calculate_enhanced_metrics` (the original notebook's accounting,
  or a roofline prediction from `simulate_inference` when the model size is known);
* provider-side, for API models: `provider_side_estimate` (EcoLogits, with its min/max range);
* measured, for the local model: `EnergyMeter` (RAPL or NVML counters, else a CPU-time estimate).

Every coefficient is a named constant with its source next to it; tables live in data/*.json.
This module never imports litellm, and imports EcoLogits only inside `provider_side_estimate`.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATA_DIR = Path(__file__).resolve().parent / "data"
GPUS_PATH = DATA_DIR / "gpus.json"
DATACENTERS_PATH = DATA_DIR / "datacenters.json"
PROFILES_PATH = DATA_DIR / "profiles.json"

#: Profiles used when the user chooses none: the original notebook's three, plus a low-carbon H100.
DEFAULT_PROFILES: tuple[str, ...] = ("T4_COLAB", "A100_SIMULATED", "L40S_SIMULATED", "H100_LOW_CARBON")

#: The per-profile CSV columns that `calculate_enhanced_metrics` returns (docs/architecture.md), in order.
PROFILE_COLUMNS: tuple[str, ...] = (
    "profile", "gpu", "gpu_count", "datacenter", "location", "tdp_w", "idle_w", "pue", "grid_gco2e_per_kwh",
    "electricity_usd_per_kwh", "energy_method", "sim_latency_s", "idle_s", "compute_energy_kwh",
    "idle_energy_kwh", "pue_overhead_kwh", "energy_kwh", "energy_kwh_min", "energy_kwh_max", "carbon_gco2e",
    "carbon_gco2e_min", "carbon_gco2e_max", "energy_cost_usd", "total_cost_usd",
)

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
#: CPU power per busy core when no counter is readable: CodeCarbon 3.3.2 DEFAULT_POWER_PER_CORE = 4 W
#: (codecarbon/core/cpu.py), CodeCarbon's fallback when the CPU model is not in its TDP table.
CODECARBON_DEFAULT_W_PER_CORE = 4.0


class DataFileError(ValueError):
    """A data file (built-in or the user's) is missing, unreadable, or has a bad row."""


class ModelDoesNotFitError(ValueError):
    """The model's weights plus one sequence's KV cache do not fit in the chosen GPUs."""

    def __init__(self, message: str, min_gpus: int | None) -> None:
        super().__init__(message)
        self.min_gpus = min_gpus


# ----------------------------------------------------------------------------------------------------------
# Data rows
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# The original notebook's accounting (pure functions)
# ----------------------------------------------------------------------------------------------------------

def energy_kwh_from_power(power_w: float, duration_s: float) -> float:
    """Energy in kWh of a constant `power_w` over `duration_s`."""
    return power_w * duration_s / J_PER_KWH


def compute_energy_kwh(tdp_w: float, gpu_count: int, active_s: float) -> float:
    """The original's compute energy: every GPU at TDP for the active time."""
    return energy_kwh_from_power(tdp_w * gpu_count, active_s)


def idle_energy_kwh(idle_w: float, gpu_count: int, idle_s: float) -> float:
    """Energy of the GPUs idling between requests."""
    return energy_kwh_from_power(idle_w * gpu_count, idle_s)


def pue_overhead_kwh(it_energy_kwh: float, pue: float) -> float:
    """Facility overhead (cooling, power conversion) on top of the IT energy: IT x (PUE - 1)."""
    return it_energy_kwh * (pue - 1.0)


def carbon_gco2e(energy_kwh: float, grid_gco2e_per_kwh: float) -> float:
    """Operational carbon: energy x grid carbon intensity."""
    return energy_kwh * grid_gco2e_per_kwh


def energy_cost_usd(energy_kwh: float, electricity_usd_per_kwh: float) -> float:
    """What the electricity costs."""
    return energy_kwh * electricity_usd_per_kwh


def total_cost_usd(api_cost_usd: float | None, energy_cost: float) -> float:
    """TCO of a request: API price (0 when unknown) + energy cost."""
    return (api_cost_usd or 0.0) + energy_cost


def gpu_power_w(tdp_w: float, idle_w: float, utilisation: float) -> float:
    """Board power between idle and TDP at a utilisation in [0, 1]."""
    return idle_w + (tdp_w - idle_w) * min(max(utilisation, 0.0), 1.0)


# ----------------------------------------------------------------------------------------------------------
# The predictive model: a roofline of LLM serving (simulate_inference)
# ----------------------------------------------------------------------------------------------------------

#: vLLM's default gpu_memory_utilization (vllm EngineArgs, 0.9): the share of GPU memory it claims.
USABLE_MEMORY_FRACTION = 0.90
#: Per-GPU memory kept for activations, CUDA graphs and the allocator; approx., vLLM's start-up profiling
#: typically finds 1-4 GiB for 8B-70B models.
ACTIVATION_RESERVE_GIB = 2.0
GIB = 2 ** 30
#: Layer count of a dense decoder as a function of its size, fitted to Llama-3.x 1B (16 layers), 8B (32)
#: and 405B (126) (their config.json): layers = 15.5 x params_b ** 0.349. For a mixture of experts the
#: size used is sqrt(total x active). Pass num_layers when you know it.
LAYERS_COEFF, LAYERS_EXPONENT = 15.5, 0.349
#: Parameters per layer ~ 12 x hidden^2 (attention 4 h^2 + MLP 8 h^2, Kaplan et al. 2020, arXiv:2001.08361).
PARAMS_PER_LAYER_PER_HIDDEN2 = 12.0
#: Share of a mixture-of-experts model's active parameters that every token uses (attention, embeddings,
#: shared experts): from config.json of Mixtral-8x7B (0.12), Qwen3-30B-A3B (0.45), Qwen3-235B-A22B (0.35),
#: gpt-oss-120b (0.29), DeepSeek-V3 (0.45); rounded mean 0.35.
MOE_SHARED_FRACTION_OF_ACTIVE = 0.35
DEFAULT_KV_HEADS_DENSE, DEFAULT_KV_HEADS_MOE = 8, 4  # see model_shape
#: Valid tensor-parallel sizes tried when looking for the smallest GPU count that fits.
TP_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks, fixed overheads, and the power model's coefficients.

    Sources (README "Energy model" lists them with the checks):
    * hbm_fraction: weight-streaming GEMV/GEMM kernels reach ~75-92% of datasheet HBM bandwidth; vLLM
      Llama-3.1-8B bf16 on one H100 SXM at batch 1 runs ~6-7 ms per token = 16 GB / (3.35 TB/s x 0.85)
      + per-layer kernel time + step overhead.
    * layer_kernel_s / moe_layer_kernel_s: fixed time per layer that no bandwidth removes (a dense layer is
      ~8 kernels of ~2-3 us each under CUDA graphs; a MoE layer adds routing, token sorting and two grouped
      GEMMs, ~80 us at small batch, as batch-1 ITLs of Qwen3-30B-A3B and gpt-oss-120b on H100 suggest;
      approx.).
    * kv_hbm_fraction: paged-attention decode kernels read the KV cache in small blocks through block
      tables and reach ~50-60% of HBM bandwidth at contexts of a few thousand tokens (FlashInfer paper,
      Ye et al. 2025, arXiv:2501.01005, decode attention bandwidth utilisation, approx.).
    * mfu: large bf16 GEMMs on H100 reach ~65-75% of dense peak (NVIDIA cuBLAS / Transformer Engine
      results); a serving step's mix of GEMM shapes, attention and norms gets ~60%. Small-row GEMMs are
      memory-bound, which the roofline itself captures. fp8_mfu_factor: fp8 GEMMs reach a lower share of
      their (2x) peak, ~80% of bf16's share.
    * moe_compute_factor: grouped expert GEMMs run at ~70% of dense GEMM efficiency (vLLM fused-MoE
      kernels, approx.).
    * link_fraction / allreduce latency: NCCL / vLLM custom all-reduce reach ~70% of NVLink bandwidth;
      small-message latency ~15 us on NVLink, ~30 us over PCIe (nccl-tests, approx.).
    * step_overhead_s / per_sequence_overhead_s: vLLM scheduling, input preparation, sampling and
      detokenisation, ~0.6 ms per step plus ~20 us per running sequence (vLLM v0.6 performance blog, 2024:
      CPU overhead was a large share of ITL at high batch; approx.).
    * max_batched_tokens: vLLM's default token budget per step for chunked prefill (8192, approx.).
    * power_*_coeff: share of (TDP - idle) drawn while HBM streams / tensor cores are busy, combined as
      1 - (1 - a_m m)(1 - a_c c); chosen so that batch-1 decode on H100 draws ~50% of TDP, large-batch
      decode ~60-85% and prefill ~90% (Splitwise, Patel et al. ISCA 2024: token phase well below TDP,
      prompt phase near it; ML.ENERGY benchmark, Chung et al. 2025, arXiv:2505.06371).
    * roofline_sharpness: memory and compute overlap imperfectly; step = (m^k + c^k)^(1/k), k = 4.
    """

    hbm_fraction: float = 0.85
    kv_hbm_fraction: float = 0.55
    mfu: float = 0.60
    fp8_mfu_factor: float = 0.80
    moe_compute_factor: float = 0.70
    link_fraction: float = 0.70
    allreduce_latency_nvlink_s: float = 15e-6
    allreduce_latency_pcie_s: float = 30e-6
    step_overhead_s: float = 0.6e-3
    per_sequence_overhead_s: float = 20e-6
    layer_kernel_s: float = 20e-6
    moe_layer_kernel_s: float = 80e-6
    max_batched_tokens: int = 8192
    power_memory_coeff: float = 0.50
    power_compute_coeff: float = 1.00
    roofline_sharpness: float = 4.0


NOMINAL = Efficiency()
#: The fast, frugal end of the range (min energy / latency).
OPTIMISTIC = Efficiency(hbm_fraction=0.92, kv_hbm_fraction=0.70, mfu=0.70, link_fraction=0.80,
                        allreduce_latency_nvlink_s=10e-6, step_overhead_s=0.4e-3, per_sequence_overhead_s=10e-6,
                        layer_kernel_s=12e-6, moe_layer_kernel_s=50e-6,
                        power_memory_coeff=0.43, power_compute_coeff=0.85)
#: The slow, power-hungry end of the range (max energy / latency).
PESSIMISTIC = Efficiency(hbm_fraction=0.75, kv_hbm_fraction=0.42, mfu=0.48, link_fraction=0.60,
                         allreduce_latency_nvlink_s=25e-6, step_overhead_s=1.0e-3, per_sequence_overhead_s=35e-6,
                         layer_kernel_s=30e-6, moe_layer_kernel_s=120e-6,
                         power_memory_coeff=0.58, power_compute_coeff=1.0)


@dataclass(frozen=True)
class ModelShape:
    """What the roofline needs to know about a transformer; derived from its size when not given."""

    active_params_b: float
    total_params_b: float
    num_layers: int
    hidden_size: int
    num_kv_heads: int
    head_dim: int
    kv_bytes_per_value: float
    shared_params_b: float          # read by every token (all of a dense model)
    routed_fraction_per_token: float  # share of the routed (expert) weights one token touches; 1.0 if dense

    @property
    def is_moe(self) -> bool:
        return self.routed_fraction_per_token < 1.0


def default_num_layers(active_params_b: float, total_params_b: float) -> int:
    """Layer count estimated from the parameter count (LAYERS_COEFF x size ** LAYERS_EXPONENT)."""
    size_b = total_params_b if total_params_b <= active_params_b else math.sqrt(total_params_b * active_params_b)
    return max(1, round(LAYERS_COEFF * size_b ** LAYERS_EXPONENT))


def default_hidden_size(active_params_b: float, num_layers: int) -> int:
    """Hidden size from params ~ 12 x layers x hidden^2."""
    return max(64, round(math.sqrt(active_params_b * 1e9 / (PARAMS_PER_LAYER_PER_HIDDEN2 * num_layers))))


def model_shape(*, active_params_b: float, total_params_b: float | None = None, num_layers: int | None = None,
                hidden_size: int | None = None, num_kv_heads: int | None = None, head_dim: int = 128,
                kv_bytes_per_value: float = 2.0, num_experts: int | None = None,
                experts_per_token: int | None = None) -> ModelShape:
    """The model's shape, with documented defaults for what is not given.

    KV heads default to 8 x 128 for a dense model (Llama 3.x, Qwen2.5/3 dense >= 8B, Mistral) and 4 x 128 for
    a mixture of experts (Qwen3-30B-A3B and -235B-A22B config.json; DeepSeek's MLA cache is smaller still).
    """
    total = active_params_b if total_params_b is None else total_params_b
    if total < active_params_b:
        raise ValueError(f"total_params_b ({total:g}) must be >= active_params_b ({active_params_b:g})")
    layers = num_layers or default_num_layers(active_params_b, total)
    hidden = hidden_size or default_hidden_size(active_params_b, layers)
    dense = total <= active_params_b * 1.0001
    if num_kv_heads is None:
        num_kv_heads = DEFAULT_KV_HEADS_DENSE if dense else DEFAULT_KV_HEADS_MOE
    if dense:
        return ModelShape(active_params_b, total, layers, hidden, num_kv_heads, head_dim, kv_bytes_per_value,
                          shared_params_b=total, routed_fraction_per_token=1.0)
    shared = MOE_SHARED_FRACTION_OF_ACTIVE * active_params_b
    if num_experts and experts_per_token:
        fraction = experts_per_token / num_experts
    else:
        fraction = (active_params_b - shared) / (total - shared)
    return ModelShape(active_params_b, total, layers, hidden, num_kv_heads, head_dim, kv_bytes_per_value,
                      shared_params_b=shared, routed_fraction_per_token=min(max(fraction, 1e-6), 1.0))


def kv_bytes_per_token(shape: ModelShape) -> float:
    """KV-cache bytes one token occupies across all GPUs: 2 (K, V) x layers x KV heads x head dim x bytes."""
    return 2.0 * shape.num_layers * shape.num_kv_heads * shape.head_dim * shape.kv_bytes_per_value


def kv_shards(shape: ModelShape, num_gpus: int) -> int:
    """Ways the KV cache is split by tensor parallelism (KV heads are replicated beyond their count)."""
    return max(1, min(num_gpus, shape.num_kv_heads))


def weights_gb(shape: ModelShape, bytes_per_param: float) -> float:
    """Weight bytes of the whole model, in GB (1e9)."""
    return shape.total_params_b * bytes_per_param


def kv_capacity_bytes_per_gpu(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float) -> float:
    """Memory left per GPU for the KV cache after weights and the activation reserve (may be negative)."""
    usable = USABLE_MEMORY_FRACTION * gpu.memory_gb * GIB - ACTIVATION_RESERVE_GIB * GIB
    return usable - weights_gb(shape, bytes_per_param) * 1e9 / num_gpus


def fits(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, context_tokens: int) -> bool:
    """Whether the weights plus the KV cache of one `context_tokens` sequence fit in the GPUs."""
    per_gpu_kv = kv_bytes_per_token(shape) / kv_shards(shape, num_gpus) * context_tokens
    return kv_capacity_bytes_per_gpu(gpu, num_gpus, shape, bytes_per_param) >= per_gpu_kv


def min_gpus_that_fit(gpu: GPUSpec, shape: ModelShape, bytes_per_param: float, context_tokens: int) -> int | None:
    """The smallest tensor-parallel GPU count (a power of two) that fits the model, or None beyond 64."""
    return next((n for n in TP_SIZES if fits(gpu, n, shape, bytes_per_param, context_tokens)), None)


def moe_fraction_touched(routed_fraction_per_token: float, tokens: float) -> float:
    """Expected share of expert weights read in a step of `tokens` tokens: 1 - (1 - p) ** tokens."""
    if routed_fraction_per_token >= 1.0:
        return 1.0
    return 1.0 - (1.0 - routed_fraction_per_token) ** max(tokens, 1.0)


def smooth_max(a: float, b: float, sharpness: float) -> float:
    """(a^k + b^k)^(1/k): the roofline's max with a rounded knee."""
    if a <= 0 or b <= 0:
        return max(a, b)
    return (a ** sharpness + b ** sharpness) ** (1.0 / sharpness)


def peak_tflops(gpu: GPUSpec, bytes_per_param: float) -> float:
    """Dense tensor peak used for the model's matmuls: fp8 for 1-byte weights where the GPU has it."""
    if bytes_per_param <= 1.0 and gpu.fp8_dense_tflops:
        return gpu.fp8_dense_tflops
    return gpu.bf16_dense_tflops


@dataclass(frozen=True)
class StepTime:
    """Time of one forward step on `num_gpus` GPUs, by component (seconds)."""

    memory_s: float
    compute_s: float
    comm_s: float
    overhead_s: float
    step_s: float
    kernel_s: float = 0.0  # fixed per-layer kernel time (busy GPU, little bandwidth)

    @property
    def bound(self) -> str:
        """What takes most of the step: memory, compute, communication or overhead (CPU-side work)."""
        parts = {"memory": self.memory_s, "compute": self.compute_s, "communication": self.comm_s,
                 "overhead": self.overhead_s + self.kernel_s}
        return max(parts, key=lambda k: parts[k])


def step_time(*, gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, decode_tokens: float,
              prefill_tokens: float, decode_context_tokens: float, prefill_context_tokens: float,
              eff: Efficiency) -> StepTime:
    """One engine step: `decode_tokens` sequences each emit a token, plus `prefill_tokens` prompt tokens.

    memory: weights read once per step (shared by the batch; for a MoE the experts its tokens touch) at
    hbm_fraction of datasheet bandwidth, plus every sequence's KV cache at kv_hbm_fraction, split over the
    GPUs. compute: 2 FLOPs per active parameter per token + attention (4 x layers x hidden x context) at
    mfu of the dense peak (fp8 peak for 1-byte weights). comm: two all-reduces per layer under tensor parallelism.
    kernel: fixed time per layer. overhead: the server's per-step and per-sequence CPU work.
    """
    tokens = decode_tokens + prefill_tokens
    routed_b = shape.total_params_b - shape.shared_params_b
    params_read_b = shape.shared_params_b + routed_b * moe_fraction_touched(shape.routed_fraction_per_token, tokens)
    weight_bytes = params_read_b * 1e9 * bytes_per_param / num_gpus
    kv_bytes = decode_tokens * decode_context_tokens * kv_bytes_per_token(shape) / kv_shards(shape, num_gpus)
    bandwidth = gpu.memory_bandwidth_gb_s * 1e9
    memory_s = weight_bytes / (bandwidth * eff.hbm_fraction) + kv_bytes / (bandwidth * eff.kv_hbm_fraction)

    attention_flops = 4.0 * shape.num_layers * shape.hidden_size * (
        decode_tokens * decode_context_tokens + prefill_tokens * prefill_context_tokens)
    flops = 2.0 * shape.active_params_b * 1e9 * tokens + attention_flops
    mfu = eff.mfu * (eff.moe_compute_factor if shape.is_moe else 1.0)
    if bytes_per_param <= 1.0 and gpu.fp8_dense_tflops:
        mfu *= eff.fp8_mfu_factor
    compute_s = flops / (num_gpus * peak_tflops(gpu, bytes_per_param) * 1e12 * mfu)

    comm_s = 0.0
    if num_gpus > 1:
        latency = eff.allreduce_latency_nvlink_s if gpu.interconnect == "nvlink" else eff.allreduce_latency_pcie_s
        message_bytes = tokens * shape.hidden_size * 2.0  # bf16 activations
        per_direction = gpu.interconnect_gb_s / 2 * 1e9 * eff.link_fraction
        per_allreduce = latency + message_bytes * 2.0 * (num_gpus - 1) / num_gpus / per_direction
        comm_s = 2 * shape.num_layers * per_allreduce

    kernel_s = shape.num_layers * (eff.layer_kernel_s + (eff.moe_layer_kernel_s if shape.is_moe else 0.0))
    overhead_s = eff.step_overhead_s + eff.per_sequence_overhead_s * decode_tokens
    step_s = smooth_max(memory_s, compute_s, eff.roofline_sharpness) + kernel_s + comm_s + overhead_s
    return StepTime(memory_s, compute_s, comm_s, overhead_s, step_s, kernel_s)


def utilisation(step: StepTime, eff: Efficiency) -> float:
    """Share of (TDP - idle) drawn: 1 - (1 - a_m x memory busy)(1 - a_c x compute busy).

    memory busy: share of the step that HBM streams, all-reduces and fixed per-layer kernel time included
    (NVLink all-reduce kernels stream HBM and keep SMs spinning); compute busy: share that the tensor cores
    need at mfu.
    """
    memory_busy = min((step.memory_s + step.comm_s + step.kernel_s) / step.step_s, 1.0)
    compute_busy = min(step.compute_s / step.step_s, 1.0)
    a_m, a_c = min(eff.power_memory_coeff, 1.0), min(eff.power_compute_coeff, 1.0)
    return 1.0 - (1.0 - a_m * memory_busy) * (1.0 - a_c * compute_busy)


def effective_batch_size(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float,
                         batch_size: int, prompt_tokens: int, output_tokens: int) -> int:
    """Sequences that run together: the batch, capped by KV-cache memory at the mean context length."""
    mean_context = prompt_tokens + output_tokens / 2.0
    per_seq = kv_bytes_per_token(shape) / kv_shards(shape, num_gpus) * mean_context
    capacity = kv_capacity_bytes_per_gpu(gpu, num_gpus, shape, bytes_per_param)
    return max(1, min(batch_size, int(capacity // per_seq))) if per_seq > 0 else batch_size


@dataclass(frozen=True)
class PrefillSchedule:
    """How prompts mix into a steady stream of decode steps (vLLM chunked prefill).

    A server running `batch` sequences of `output_tokens` starts batch / output_tokens new ones per step,
    i.e. prefills that many prompts' tokens per step on average. They arrive in chunks of `chunk_tokens`
    (a whole prompt, or the step's token budget) in a share `prefill_step_share` of the steps.
    """

    chunk_tokens: float
    prefill_step_share: float


def prefill_schedule(batch: int, prompt_tokens: int, output_tokens: int, max_batched_tokens: int
                     ) -> PrefillSchedule:
    """Chunk size and share of steps that carry prompt tokens, in steady state."""
    per_step = batch * prompt_tokens / output_tokens
    if per_step <= 0:
        return PrefillSchedule(0.0, 0.0)
    budget = max(max_batched_tokens - batch, 1)
    chunk = min(max(float(prompt_tokens), per_step), float(budget))
    return PrefillSchedule(chunk, min(1.0, per_step / chunk))


@dataclass(frozen=True)
class _Point:
    prefill_s: float
    decode_s_per_token: float   # mean inter-token latency: decode steps and prompt-carrying steps
    median_step_s: float        # the step most tokens see (decode-only unless most steps carry a prompt)
    gpu_power_w: float          # time-weighted mean board power per GPU
    utilisation: float
    gpu_energy_j_per_token: float
    bound: str


def _simulate_point(gpu: GPUSpec, num_gpus: int, shape: ModelShape, bytes_per_param: float, batch: int,
                    prompt_tokens: int, output_tokens: int, eff: Efficiency) -> _Point:
    """Latency and GPU energy per output token at one set of efficiencies, in steady state.

    Steps are of two kinds: decode-only (batch tokens), and decode + a prompt chunk (PrefillSchedule).
    Energy per output token averages both kinds, so it includes the prompts' work, as a power meter sees it.
    """
    mean_context = prompt_tokens + output_tokens / 2.0
    common = {"gpu": gpu, "num_gpus": num_gpus, "shape": shape, "bytes_per_param": bytes_per_param,
                  "decode_context_tokens": mean_context, "prefill_context_tokens": prompt_tokens / 2.0, "eff": eff}
    schedule = prefill_schedule(batch, prompt_tokens, output_tokens, eff.max_batched_tokens)
    decode = step_time(decode_tokens=batch, prefill_tokens=0, **common)
    mixed = step_time(decode_tokens=batch, prefill_tokens=schedule.chunk_tokens, **common)
    alone = step_time(decode_tokens=batch - 1, prefill_tokens=prompt_tokens, **common)
    share = schedule.prefill_step_share
    power_decode = gpu_power_w(gpu.tdp_w, gpu.idle_w, utilisation(decode, eff))
    power_mixed = gpu_power_w(gpu.tdp_w, gpu.idle_w, utilisation(mixed, eff))
    mean_step = (1 - share) * decode.step_s + share * mixed.step_s
    energy_per_step_j = num_gpus * ((1 - share) * decode.step_s * power_decode + share * mixed.step_s * power_mixed)
    mean_power = energy_per_step_j / num_gpus / mean_step
    typical = decode if share < 0.5 else mixed
    return _Point(
        prefill_s=alone.step_s, decode_s_per_token=mean_step, median_step_s=typical.step_s, gpu_power_w=mean_power,
        utilisation=(mean_power - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w),
        gpu_energy_j_per_token=energy_per_step_j / batch, bound=typical.bound)


@dataclass(frozen=True)
class InferenceEstimate:
    """A predicted request on a deployment: latency, power, energy (GPU boards and whole request), carbon.

    decode_s_per_token: the mean inter-token latency a sequence sees over its life (its TPOT), counting the
    steps that also prefill other requests' prompts; decode_s_per_token_median: the step most tokens see.
    gpu_energy_j_per_token: all GPUs' boards per output token (prompt work included), no host, no PUE.
    energy_kwh: this request's share of GPUs + host, times PUE. carbon_gco2e: operational + embodied share.
    water_l: on-site cooling water, IT energy x the datacenter's WUE (The Green Grid's definition).
    *_min / *_max: the OPTIMISTIC / PESSIMISTIC efficiency sets.
    """

    gpu: str
    num_gpus: int
    datacenter: str
    batch_size: int
    effective_batch_size: int
    kv_limited: bool
    prompt_tokens: int
    output_tokens: int
    bound: str
    prefill_s: float
    decode_s_per_token: float
    decode_s_per_token_min: float
    decode_s_per_token_max: float
    decode_s_per_token_median: float
    latency_s: float
    latency_s_min: float
    latency_s_max: float
    tokens_per_s: float
    throughput_tokens_per_s: float
    gpu_utilisation: float
    gpu_power_w: float
    gpu_energy_j_per_token: float
    gpu_energy_j_per_token_min: float
    gpu_energy_j_per_token_max: float
    gpu_energy_kwh: float
    gpu_energy_kwh_min: float
    gpu_energy_kwh_max: float
    host_energy_kwh: float
    pue: float
    energy_kwh: float
    energy_kwh_min: float
    energy_kwh_max: float
    grid_gco2e_per_kwh: float
    operational_carbon_gco2e: float
    embodied_carbon_gco2e: float
    carbon_gco2e: float
    carbon_gco2e_min: float
    carbon_gco2e_max: float
    energy_cost_usd: float
    water_l: float
    rental_usd_per_million_tokens: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for --json and DataFrames)."""
        return asdict(self)


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


def _lookup(table: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; valid keys: {', '.join(table)}")
    return table[key]


def _require_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")


def simulate_inference(*, gpu: GPUSpec | str, num_gpus: int = 1, active_params_b: float,
                       total_params_b: float | None = None, bytes_per_param: float = 2.0, batch_size: int = 1,
                       prompt_tokens: int, output_tokens: int, datacenter: Datacenter | str | None = None,
                       num_layers: int | None = None, hidden_size: int | None = None,
                       num_kv_heads: int | None = None,
                       head_dim: int = 128, kv_bytes_per_value: float = 2.0, num_experts: int | None = None,
                       experts_per_token: int | None = None, host_w_per_gpu: float = HOST_W_PER_GPU,
                       efficiency: Efficiency = NOMINAL,
                       efficiency_range: tuple[Efficiency, Efficiency] = (OPTIMISTIC, PESSIMISTIC),
                       ) -> InferenceEstimate:
    """Predict one request served on `num_gpus` x `gpu` among `batch_size` concurrent requests.

    Prefill is compute-bound, decode memory-bound (weights read once per step and shared by the batch,
    KV cache per sequence); tensor parallelism adds all-reduces; a mixture of experts reads the experts its
    tokens touch; 1-byte weights use fp8 tensor peaks; power rises from idle to TDP with utilisation.
    `datacenter` (key or object; default "world_average") sets PUE and grid intensity.
    Raises ModelDoesNotFitError naming the smallest GPU count that fits, ValueError for bad input.
    """
    gpu_spec = find_gpu(load_gpus(), gpu) if isinstance(gpu, str) else gpu
    if datacenter is None or isinstance(datacenter, str):
        dc = _lookup(load_datacenters(), datacenter or "world_average", "datacenter")
    else:
        dc = datacenter
    for name, value in (("num_gpus", num_gpus), ("active_params_b", active_params_b),
                        ("bytes_per_param", bytes_per_param), ("batch_size", batch_size),
                        ("output_tokens", output_tokens)):
        _require_positive(name, value)
    _require_positive("prompt_tokens", prompt_tokens, allow_zero=True)
    shape = model_shape(active_params_b=active_params_b, total_params_b=total_params_b, num_layers=num_layers,
                        hidden_size=hidden_size, num_kv_heads=num_kv_heads, head_dim=head_dim,
                        kv_bytes_per_value=kv_bytes_per_value, num_experts=num_experts,
                        experts_per_token=experts_per_token)
    context = prompt_tokens + output_tokens
    if not fits(gpu_spec, num_gpus, shape, bytes_per_param, context):
        need = min_gpus_that_fit(gpu_spec, shape, bytes_per_param, context)
        hint = (f"the smallest GPU count that fits is {need}" if need is not None
                else f"it does not fit even on {TP_SIZES[-1]} GPUs")
        raise ModelDoesNotFitError(
            f"model does not fit: {shape.total_params_b:g}B params x {bytes_per_param:g} bytes = "
            f"{weights_gb(shape, bytes_per_param):.1f} GB of weights plus the KV cache of one {context}-token "
            f"sequence exceed {num_gpus} x {gpu_spec.key} ({gpu_spec.memory_gb:g} GB each, "
            f"{USABLE_MEMORY_FRACTION:.0%} usable); {hint}", need)

    batch = effective_batch_size(gpu_spec, num_gpus, shape, bytes_per_param, batch_size, prompt_tokens,
                                 output_tokens)
    args = (gpu_spec, num_gpus, shape, bytes_per_param, batch, prompt_tokens, output_tokens)
    mid = _simulate_point(*args, efficiency)
    low = _simulate_point(*args, efficiency_range[0])
    high = _simulate_point(*args, efficiency_range[1])

    def latency(p: _Point) -> float:
        return p.prefill_s + (output_tokens - 1) * p.decode_s_per_token

    def gpu_kwh(p: _Point) -> float:
        return p.gpu_energy_j_per_token * output_tokens / J_PER_KWH

    def host_kwh(p: _Point) -> float:
        return host_w_per_gpu * num_gpus * p.decode_s_per_token * output_tokens / batch / J_PER_KWH

    def total_kwh(p: _Point) -> float:
        return (gpu_kwh(p) + host_kwh(p)) * dc.pue

    def embodied_g(p: _Point) -> float:
        gpu_seconds = num_gpus * p.decode_s_per_token * output_tokens / batch
        per_gpu_kg = gpu_spec.embodied_kgco2e + SERVER_EMBODIED_KGCO2E_PER_GPU
        return per_gpu_kg * 1000.0 * gpu_seconds / HARDWARE_LIFETIME_S

    def carbon(p: _Point) -> float:
        return carbon_gco2e(total_kwh(p), dc.grid_gco2e_per_kwh) + embodied_g(p)

    rental_per_token = gpu_spec.rental_usd_per_gpu_hour * num_gpus / 3600.0 * mid.decode_s_per_token / batch
    return InferenceEstimate(
        gpu=gpu_spec.key, num_gpus=num_gpus, datacenter=dc.key, batch_size=batch_size,
        effective_batch_size=batch, kv_limited=batch < batch_size, prompt_tokens=prompt_tokens,
        output_tokens=output_tokens, bound=mid.bound,
        prefill_s=mid.prefill_s, decode_s_per_token=mid.decode_s_per_token,
        decode_s_per_token_min=low.decode_s_per_token, decode_s_per_token_max=high.decode_s_per_token,
        decode_s_per_token_median=mid.median_step_s,
        latency_s=latency(mid), latency_s_min=latency(low), latency_s_max=latency(high),
        tokens_per_s=1.0 / mid.decode_s_per_token, throughput_tokens_per_s=batch / mid.decode_s_per_token,
        gpu_utilisation=mid.utilisation, gpu_power_w=mid.gpu_power_w,
        gpu_energy_j_per_token=mid.gpu_energy_j_per_token, gpu_energy_j_per_token_min=low.gpu_energy_j_per_token,
        gpu_energy_j_per_token_max=high.gpu_energy_j_per_token,
        gpu_energy_kwh=gpu_kwh(mid), gpu_energy_kwh_min=gpu_kwh(low), gpu_energy_kwh_max=gpu_kwh(high),
        host_energy_kwh=host_kwh(mid), pue=dc.pue,
        energy_kwh=total_kwh(mid), energy_kwh_min=total_kwh(low), energy_kwh_max=total_kwh(high),
        grid_gco2e_per_kwh=dc.grid_gco2e_per_kwh,
        operational_carbon_gco2e=carbon_gco2e(total_kwh(mid), dc.grid_gco2e_per_kwh),
        embodied_carbon_gco2e=embodied_g(mid), carbon_gco2e=carbon(mid), carbon_gco2e_min=carbon(low),
        carbon_gco2e_max=carbon(high), energy_cost_usd=energy_cost_usd(total_kwh(mid), dc.electricity_usd_per_kwh),
        water_l=(gpu_kwh(mid) + host_kwh(mid)) * dc.wue_l_per_kwh,
        rental_usd_per_million_tokens=rental_per_token * 1e6,
    )


# ----------------------------------------------------------------------------------------------------------
# Lens 1: simulated, per deployment profile (the CSV's per-profile columns)
# ----------------------------------------------------------------------------------------------------------

#: Lower end of the original accounting's range: a GPU at batch-1 decode draws ~50% of (TDP - idle) above
#: idle rather than TDP (NOMINAL power_memory_coeff 0.50, see Efficiency); the original's TDP is the top.
LATENCY_X_TDP_MIN_UTILISATION = NOMINAL.power_memory_coeff


def _number(measured: Mapping[str, Any], key: str) -> float:
    value = measured.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"measured[{key!r}] must be a number >= 0 (got {value!r})")
    return float(value)


def calculate_enhanced_metrics(measured: Mapping[str, Any], profile: DeploymentProfile, *, idle_s: float = 0.0,
                               active_params_b: float | None = None,
                               total_params_b: float | None = None) -> dict[str, Any]:
    """The per-profile CSV columns (simulated lens) for one measured request on `profile`.

    energy_method "measured_latency_x_tdp" (the original notebook's accounting, used for API models of
    unknown size): compute energy = TDP x GPUs x measured latency. "roofline" (when active_params_b, or the
    response's model_params_b, is known): compute energy = this request's share of the GPU-board energy
    that simulate_inference predicts for the same tokens on this profile (sim_latency_s = its latency).
    Both add idle energy (idle power x idle_s) and PUE overhead, kept apart; carbon is operational
    (kWh x grid intensity), as in the original. A model too big for the profile's GPUs is simulated on the
    smallest count that fits, and gpu_count says so. Without token counts the original accounting is used.
    """
    latency_s = _number(measured, "latency_s")
    _require_positive("idle_s", idle_s, allow_zero=True)
    gpu, dc = profile.gpu, profile.datacenter
    params_b = active_params_b if active_params_b is not None else measured.get("model_params_b")
    gpu_count = profile.gpu_count
    if measured.get("prompt_tokens") is None or measured.get("completion_tokens") is None:
        params_b = None  # the roofline needs token counts; energy_method says which method was used
    if params_b is None:
        method = "measured_latency_x_tdp"
        sim_latency_s = latency_s
        compute = compute_energy_kwh(gpu.tdp_w, gpu_count, latency_s)
        floor_w = gpu_power_w(gpu.tdp_w, gpu.idle_w, LATENCY_X_TDP_MIN_UTILISATION)
        compute_min, compute_max = energy_kwh_from_power(floor_w * gpu_count, latency_s), compute
    else:
        method = "roofline"
        prompt_tokens = int(_number(measured, "prompt_tokens"))
        output_tokens = max(1, int(_number(measured, "completion_tokens")))
        shape = model_shape(active_params_b=float(params_b), total_params_b=total_params_b)
        context = prompt_tokens + output_tokens
        if not fits(gpu, gpu_count, shape, profile.bytes_per_param, context):
            needed = min_gpus_that_fit(gpu, shape, profile.bytes_per_param, context)
            if needed is None:
                raise ModelDoesNotFitError(
                    f"profile {profile.key}: a {shape.total_params_b:g}B model does not fit even on "
                    f"{TP_SIZES[-1]} x {gpu.key}", None)
            gpu_count = needed
        sim = simulate_inference(gpu=gpu, num_gpus=gpu_count, active_params_b=float(params_b),
                                 total_params_b=total_params_b, bytes_per_param=profile.bytes_per_param,
                                 batch_size=profile.batch_size, prompt_tokens=prompt_tokens,
                                 output_tokens=output_tokens, datacenter=dc)
        sim_latency_s = sim.latency_s
        compute, compute_min, compute_max = sim.gpu_energy_kwh, sim.gpu_energy_kwh_min, sim.gpu_energy_kwh_max
    idle = idle_energy_kwh(gpu.idle_w, gpu_count, idle_s)

    def with_pue(it_kwh: float) -> float:
        return it_kwh + pue_overhead_kwh(it_kwh, dc.pue)

    energy = with_pue(compute + idle)
    cost = energy_cost_usd(energy, dc.electricity_usd_per_kwh)
    api_cost = measured.get("cost_usd")
    row = {
        "profile": profile.key, "gpu": gpu.key, "gpu_count": gpu_count, "datacenter": dc.key,
        "location": dc.location, "tdp_w": gpu.tdp_w, "idle_w": gpu.idle_w, "pue": dc.pue,
        "grid_gco2e_per_kwh": dc.grid_gco2e_per_kwh, "electricity_usd_per_kwh": dc.electricity_usd_per_kwh,
        "energy_method": method, "sim_latency_s": sim_latency_s, "idle_s": float(idle_s),
        "compute_energy_kwh": compute, "idle_energy_kwh": idle,
        "pue_overhead_kwh": pue_overhead_kwh(compute + idle, dc.pue), "energy_kwh": energy,
        "energy_kwh_min": with_pue(compute_min + idle), "energy_kwh_max": with_pue(compute_max + idle),
        "carbon_gco2e": carbon_gco2e(energy, dc.grid_gco2e_per_kwh),
        "carbon_gco2e_min": carbon_gco2e(with_pue(compute_min + idle), dc.grid_gco2e_per_kwh),
        "carbon_gco2e_max": carbon_gco2e(with_pue(compute_max + idle), dc.grid_gco2e_per_kwh),
        "energy_cost_usd": cost,
        "total_cost_usd": total_cost_usd(api_cost if isinstance(api_cost, (int, float)) else None, cost),
    }
    return {column: row[column] for column in PROFILE_COLUMNS}


# ----------------------------------------------------------------------------------------------------------
# Lens 2: provider-side, for API models (EcoLogits)
# ----------------------------------------------------------------------------------------------------------

#: LiteLLM provider prefixes -> EcoLogits provider names (ecologits/model_repository.py Providers).
ECOLOGITS_PROVIDERS = {
    "gemini": "google_genai", "vertex_ai": "google_genai", "google": "google_genai", "google_genai": "google_genai",
    "openai": "openai", "anthropic": "anthropic", "mistral": "mistralai", "mistralai": "mistralai",
    "cohere": "cohere", "huggingface": "huggingface_hub",
}
#: Model-name prefixes of bare LiteLLM model strings (no "provider/").
_BARE_NAME_PROVIDERS = (("gemini", "google_genai"), ("gemma", "google_genai"), ("gpt-", "openai"),
                        ("o1", "openai"), ("o3", "openai"), ("o4", "openai"), ("claude", "anthropic"),
                        ("mistral", "mistralai"), ("command", "cohere"))


def ecologits_model_id(model: str) -> tuple[str, str] | None:
    """(EcoLogits provider, model name) for a LiteLLM model string, or None if no provider maps."""
    prefix, _, name = model.partition("/")
    if name:
        provider = ECOLOGITS_PROVIDERS.get(prefix.lower())
        return (provider, name) if provider else None
    for start, provider in _BARE_NAME_PROVIDERS:
        if model.lower().startswith(start):
            return provider, model
    return None


def provider_side_unavailable_reason(model: str) -> str | None:
    """Why provider_side_estimate(model, ...) is None, or None when EcoLogits covers the model."""
    ident = ecologits_model_id(model)
    if ident is None:
        return f"EcoLogits has no provider for {model!r} (local or self-hosted model)"
    if importlib.util.find_spec("ecologits") is None:
        return "EcoLogits is not installed (pip install ecologits)"
    from ecologits.model_repository import models

    if models.find_model(provider=ident[0], model_name=ident[1]) is None:
        return f"EcoLogits does not list model {ident[1]!r} for provider {ident[0]!r}"
    return None


def _range(value: Any) -> tuple[float, float, float]:
    """(central, min, max) of an EcoLogits value that is a float or a RangeValue."""
    if hasattr(value, "min") and hasattr(value, "max"):
        return (float(value.min) + float(value.max)) / 2.0, float(value.min), float(value.max)
    return float(value), float(value), float(value)


def provider_side_estimate(model: str, completion_tokens: int, latency_s: float) -> dict[str, float] | None:
    """EcoLogits' estimate of what the provider's datacenter spends on one request (provider-side lens).

    Keys: provider_energy_kwh(_min/_max) and provider_carbon_gco2e(_min/_max) (usage + embodied, as
    EcoLogits computes it); the central value is the middle of EcoLogits' range. None when EcoLogits does not
    cover the model (see provider_side_unavailable_reason).
    """
    if completion_tokens < 0 or latency_s < 0:
        raise ValueError(f"completion_tokens and latency_s must be >= 0 (got {completion_tokens}, {latency_s})")
    if provider_side_unavailable_reason(model) is not None:
        return None
    from ecologits.tracers.utils import llm_impacts

    provider, name = ecologits_model_id(model)  # type: ignore[misc]
    impacts = llm_impacts(provider=provider, model_name=name, output_token_count=completion_tokens,
                          request_latency=latency_s)
    if impacts.energy is None or impacts.gwp is None:
        return None
    energy, energy_min, energy_max = _range(impacts.energy.value)
    gwp, gwp_min, gwp_max = _range(impacts.gwp.value)  # kgCO2e
    return {
        "provider_energy_kwh": energy, "provider_energy_kwh_min": energy_min, "provider_energy_kwh_max": energy_max,
        "provider_carbon_gco2e": gwp * 1000.0, "provider_carbon_gco2e_min": gwp_min * 1000.0,
        "provider_carbon_gco2e_max": gwp_max * 1000.0,
    }


# ----------------------------------------------------------------------------------------------------------
# Lens 3: measured, for the local model
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RaplDomain:
    """A top-level RAPL package domain: its energy counter and the value at which it wraps."""

    energy_path: Path
    max_energy_uj: int


def rapl_domains(powercap_root: Path) -> list[RaplDomain]:
    """Readable top-level RAPL package domains (intel-rapl:N, not their sub-zones), or [] if none."""
    domains = []
    for zone in sorted(powercap_root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        try:
            int((zone / "energy_uj").read_text())
            max_uj = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return []
        domains.append(RaplDomain(zone / "energy_uj", max_uj))
    return domains


def rapl_delta_uj(start_uj: int, end_uj: int, max_energy_uj: int) -> int:
    """Energy between two counter readings, allowing for one wraparound at max_energy_uj."""
    return end_uj - start_uj if end_uj >= start_uj else end_uj + max_energy_uj - start_uj


class EnergyMeter:
    """Energy of the code run inside `with EnergyMeter() as meter:`; then .energy_kwh and .method.

    method "rapl": CPU package counters (/sys/class/powercap/intel-rapl:N; the whole package, every process).
    method "nvml": total GPU energy counters (pynvml, Volta or newer).
    method "cpu_time_estimate": no counter readable; this process's CPU seconds x watts_per_cpu_core
    (CodeCarbon's fallback constant, 4 W per core). An estimate, never called a measurement. CPU time counts
    every thread of this process, so overlapping generations share it.
    If a counter that worked at the start fails at the end, energy_kwh stays None and .unavailable says why.
    """

    def __init__(self, *, powercap_root: Path | str = "/sys/class/powercap", nvml: Any | None = None,
                 use_nvml: bool = True, cpu_time_s: Callable[[], float] = time.process_time,
                 watts_per_cpu_core: float = CODECARBON_DEFAULT_W_PER_CORE) -> None:
        self._powercap_root = Path(powercap_root)
        self._nvml = nvml
        self._use_nvml = use_nvml
        self._cpu_time_s = cpu_time_s
        self._watts_per_cpu_core = watts_per_cpu_core
        self.method: str | None = None
        self.energy_kwh: float | None = None
        self.unavailable: str | None = None
        self._rapl: list[RaplDomain] = []
        self._start_rapl_uj: list[int] = []
        self._start_value = 0.0

    def _nvml_module(self) -> Any | None:
        """pynvml (or the injected stand-in), or None when it is not installed or not wanted."""
        if not self._use_nvml:
            return None
        if self._nvml is not None:
            return self._nvml
        if importlib.util.find_spec("pynvml") is None:
            return None
        import pynvml

        return pynvml

    @staticmethod
    def _nvml_total_mj(nv: Any) -> int:
        return sum(nv.nvmlDeviceGetTotalEnergyConsumption(nv.nvmlDeviceGetHandleByIndex(i))
                   for i in range(nv.nvmlDeviceGetCount()))

    def _start_nvml(self) -> bool:
        nv = self._nvml_module()
        if nv is None:
            return False
        try:
            nv.nvmlInit()
            if nv.nvmlDeviceGetCount() < 1:
                return False
            self._start_value = float(self._nvml_total_mj(nv))
        except nv.NVMLError:  # no driver, no GPU, or a GPU without an energy counter (pre-Volta)
            return False
        self._nvml = nv
        return True

    def __enter__(self) -> Self:
        self.energy_kwh, self.unavailable = None, None
        self._rapl = rapl_domains(self._powercap_root)
        if self._rapl:
            try:
                self._start_rapl_uj = [int(d.energy_path.read_text()) for d in self._rapl]
                self.method = "rapl"
                return self
            except (OSError, ValueError):
                self._rapl = []
        if self._start_nvml():
            self.method = "nvml"
            return self
        self.method = "cpu_time_estimate"
        self._start_value = self._cpu_time_s()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.method == "rapl":
            try:
                joules = sum(rapl_delta_uj(s, int(d.energy_path.read_text()), d.max_energy_uj)
                             for s, d in zip(self._start_rapl_uj, self._rapl)) / 1e6
            except (OSError, ValueError) as exc:
                self.unavailable = f"RAPL counter unreadable at the end: {exc}"
                return
        elif self.method == "nvml":
            try:
                joules = (self._nvml_total_mj(self._nvml) - self._start_value) / 1000.0
            except self._nvml.NVMLError as exc:
                self.unavailable = f"NVML energy counter unreadable at the end: {exc}"
                return
        else:
            joules = (self._cpu_time_s() - self._start_value) * self._watts_per_cpu_core
        self.energy_kwh = max(joules, 0.0) / J_PER_KWH


# ----------------------------------------------------------------------------------------------------------
# CLI: python wattbench.py simulate ...
# ----------------------------------------------------------------------------------------------------------

class _CliError(Exception):
    """A bad argument: printed as one `error: ...` line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises _CliError instead of printing its usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _CliError(message)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def build_simulate_parser() -> argparse.ArgumentParser:
    """The `simulate` subcommand's arguments."""
    p = _Parser(
        prog="python wattbench.py simulate",
        description="Predict latency, GPU power, energy and carbon of serving an LLM on a GPU (roofline model).")
    p.add_argument("--params-b", type=_positive_float, default=None,
                   help="model size in billions of parameters (total, for a mixture of experts)")
    p.add_argument("--active-params-b", type=_positive_float, default=None,
                   help="active parameters per token, billions (mixture of experts; default = --params-b)")
    p.add_argument("--gpu", default=None, help="GPU key (default H100_SXM, or the --profile's)")
    p.add_argument("--num-gpus", type=_positive_int, default=None,
                   help="tensor-parallel GPU count (default: the --profile's, else the smallest that fits)")
    dtype = p.add_mutually_exclusive_group()
    dtype.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default=None,
                       help="weight type (default bf16, or the --profile's)")
    dtype.add_argument("--bytes-per-param", type=_positive_float, default=None)
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="concurrent requests (default 1, or the --profile's)")
    p.add_argument("--prompt-tokens", type=_non_negative_int, default=512)
    p.add_argument("--output-tokens", type=_positive_int, default=256)
    p.add_argument("--datacenter", default=None, help="datacenter key (default world_average, or the --profile's)")
    p.add_argument("--profile", default=None, help="deployment profile: its GPU, count, datacenter, batch, dtype")
    p.add_argument("--profiles-file", default=None, help="your profiles JSON (added to data/profiles.json)")
    p.add_argument("--layers", type=_positive_int, default=None, help="number of layers (default: from size)")
    p.add_argument("--hidden-size", type=_positive_int, default=None)
    p.add_argument("--kv-heads", type=_positive_int, default=None, help="KV heads (default 8 dense, 4 MoE)")
    p.add_argument("--head-dim", type=_positive_int, default=128)
    p.add_argument("--experts", type=_positive_int, default=None, help="routed experts (mixture of experts)")
    p.add_argument("--experts-per-token", type=_positive_int, default=None)
    p.add_argument("--compare", action="store_true", help="the same workload on every GPU")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--gpus-file", default=None, help="another gpus.json")
    p.add_argument("--datacenters-file", default=None, help="another datacenters.json")
    p.add_argument("--list", action="store_true", help="list GPUs, datacenters and profiles, then exit")
    return p


@dataclass(frozen=True)
class _Workload:
    """The simulate command's arguments, with a profile's and the defaults' values filled in."""

    gpu: GPUSpec
    num_gpus: int | None
    datacenter: Datacenter
    batch_size: int
    bytes_per_param: float
    dtype_label: str


def _resolve_workload(args: argparse.Namespace, gpus: Mapping[str, GPUSpec],
                      datacenters: Mapping[str, Datacenter]) -> _Workload:
    """Explicit flags win over the --profile's values, which win over the defaults."""
    profile = None
    if args.profile:
        profile = _lookup(load_profiles(args.profiles_file), args.profile, "profile")
    elif args.profiles_file:
        raise _CliError("--profiles-file needs --profile NAME")
    gpu = find_gpu(gpus, args.gpu) if args.gpu else (profile.gpu if profile else gpus["H100_SXM"])
    dc = (_lookup(datacenters, args.datacenter, "datacenter") if args.datacenter
          else profile.datacenter if profile else _lookup(datacenters, "world_average", "datacenter"))
    num_gpus = args.num_gpus or (profile.gpu_count if profile and not args.gpu else None)
    batch = args.batch_size or (profile.batch_size if profile else 1)
    if args.dtype or args.bytes_per_param:
        bytes_per_param = args.bytes_per_param or DTYPE_BYTES[args.dtype]
        label = args.dtype or f"{bytes_per_param:g} bytes/param"
    else:
        bytes_per_param = profile.bytes_per_param if profile else 2.0
        label = {2.0: "bf16", 1.0: "fp8"}.get(bytes_per_param, f"{bytes_per_param:g} bytes/param")
    return _Workload(gpu, num_gpus, dc, batch, bytes_per_param, label)


def _shape_from_args(args: argparse.Namespace) -> ModelShape:
    active = args.active_params_b or args.params_b
    if active > args.params_b:
        raise _CliError(f"--active-params-b ({active:g}) cannot exceed --params-b ({args.params_b:g})")
    return model_shape(active_params_b=active, total_params_b=args.params_b, num_layers=args.layers,
                       hidden_size=args.hidden_size, num_kv_heads=args.kv_heads, head_dim=args.head_dim,
                       num_experts=args.experts, experts_per_token=args.experts_per_token)


def _simulate_from_args(args: argparse.Namespace, work: _Workload, gpu: GPUSpec, num_gpus: int | None
                        ) -> InferenceEstimate:
    """One estimate; num_gpus None = the smallest count that fits."""
    shape = _shape_from_args(args)
    if num_gpus is None:
        num_gpus = min_gpus_that_fit(gpu, shape, work.bytes_per_param, args.prompt_tokens + args.output_tokens)
        if num_gpus is None:
            raise _CliError(f"a {args.params_b:g}B model does not fit even on {TP_SIZES[-1]} x {gpu.key}")
    return simulate_inference(
        gpu=gpu, num_gpus=num_gpus, active_params_b=shape.active_params_b, total_params_b=shape.total_params_b,
        bytes_per_param=work.bytes_per_param, batch_size=work.batch_size, prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens, datacenter=work.datacenter, num_layers=shape.num_layers,
        hidden_size=shape.hidden_size, num_kv_heads=shape.num_kv_heads, head_dim=shape.head_dim,
        num_experts=args.experts, experts_per_token=args.experts_per_token)


def format_listing(gpus: Mapping[str, GPUSpec], datacenters: Mapping[str, Datacenter],
                   profiles: Mapping[str, DeploymentProfile]) -> str:
    """What --list prints: the keys the other flags accept, with their main figures."""
    lines = ["GPUs:"]
    lines += [f"  {g.key:<15} {g.tdp_w:>5g} W  {g.memory_gb:>4g} GB  {g.memory_bandwidth_gb_s:>5g} GB/s  "
              f"{g.bf16_dense_tflops:>5g} bf16 TFLOPS  {g.name}" for g in gpus.values()]
    lines.append("Datacenters:")
    lines += [f"  {d.key:<18} PUE {d.pue:<5g} {d.grid_gco2e_per_kwh:>8.1f} gCO2e/kWh  ${d.electricity_usd_per_kwh:<6g}/kWh  "
              f"{d.location}" for d in datacenters.values()]
    lines.append("Profiles:")
    lines += [f"  {p.key:<19} {p.gpu_count} x {p.gpu.key:<14} in {p.datacenter.key:<18} batch {p.batch_size}"
              for p in profiles.values()]
    return "\n".join(lines)


TABLE_COLUMNS = (  # (header, InferenceEstimate field or callable, format)
    ("gpu", "gpu", "{}"), ("n", "num_gpus", "{}"), ("batch", "effective_batch_size", "{}"),
    ("bound", "bound", "{}"), ("prefill_s", "prefill_s", "{:.3f}"),
    ("itl_ms", lambda e: e.decode_s_per_token * 1e3, "{:.2f}"),
    ("tok/s/seq", "tokens_per_s", "{:.1f}"), ("tok/s", "throughput_tokens_per_s", "{:.0f}"),
    ("W/gpu", "gpu_power_w", "{:.0f}"), ("J/tok", "gpu_energy_j_per_token", "{:.4g}"),
    ("J/tok range", lambda e: f"{e.gpu_energy_j_per_token_min:.3g}-{e.gpu_energy_j_per_token_max:.3g}", "{}"),
    ("latency_s", "latency_s", "{:.2f}"), ("Wh/req", lambda e: e.energy_kwh * 1e3, "{:.4g}"),
    ("gCO2e/req", "carbon_gco2e", "{:.4g}"), ("$/Mtok rent", "rental_usd_per_million_tokens", "{:.3g}"),
)


def format_table(estimates: list[InferenceEstimate]) -> str:
    """Fixed-width text table of estimates, one row each."""
    rows = [[h for h, _, _ in TABLE_COLUMNS]]
    for est in estimates:
        rows.append([fmt.format(get(est) if callable(get) else getattr(est, get)) for _, get, fmt in TABLE_COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows)


def cli_simulate(argv: list[str]) -> int:
    """`python wattbench.py simulate`: print the prediction as a table (or --json); exit 2 on bad input."""
    try:
        args = build_simulate_parser().parse_args(argv)
    except _CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        gpus = load_gpus(args.gpus_file)
        datacenters = load_datacenters(args.datacenters_file)
        if args.list:
            print(format_listing(gpus, datacenters, load_profiles(args.profiles_file)))
            return 0
        if args.params_b is None:
            raise _CliError("--params-b is required: the model size in billions of parameters, e.g. --params-b 8")
        work = _resolve_workload(args, gpus, datacenters)
        if args.compare:
            estimates = []
            shape = _shape_from_args(args)
            context = args.prompt_tokens + args.output_tokens
            for gpu in gpus.values():
                # a GPU too small for the requested count gets the smallest count that fits
                n = work.num_gpus if work.num_gpus and fits(gpu, work.num_gpus, shape, work.bytes_per_param,
                                                            context) else None
                try:
                    estimates.append(_simulate_from_args(args, work, gpu, n))
                except _CliError as exc:
                    print(f"note: {gpu.key}: {exc}", file=sys.stderr)
        else:
            estimates = [_simulate_from_args(args, work, work.gpu, work.num_gpus)]
    except (_CliError, DataFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload: Any = [e.to_dict() for e in estimates] if args.compare else estimates[0].to_dict()
        print(json.dumps(payload, indent=2))
        return 0
    dc = work.datacenter
    active = f", {args.active_params_b:g}B active" if args.active_params_b else ""
    print(f"{args.params_b:g}B params{active}, {work.dtype_label}, batch {work.batch_size}, {args.prompt_tokens} "
          f"prompt + {args.output_tokens} output tokens, datacenter {dc.key} (PUE {dc.pue:g}, "
          f"{dc.grid_gco2e_per_kwh:g} gCO2e/kWh)")
    print(format_table(estimates))
    print("itl = mean inter-token latency; J/tok = all GPU boards per output token (prompts included), no host or "
          "PUE; Wh/req and gCO2e/req include host share, PUE and embodied carbon.")
    return 0
