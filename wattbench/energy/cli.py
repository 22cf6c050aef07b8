"""`wattbench simulate`: predict latency, energy and carbon of a workload on one GPU profile or all of them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattbench.cli_support import CliError, Parser, non_negative_int, positive_float, positive_int
from wattbench.energy.hardware import (
    Datacenter,
    DataFileError,
    DeploymentProfile,
    GPUSpec,
    find_gpu,
    load_datacenters,
    load_gpus,
    load_profiles,
    lookup,
)
from wattbench.energy.open_models import resolve_open_model, roofline_kwargs
from wattbench.energy.roofline import (
    TP_SIZES,
    InferenceEstimate,
    ModelShape,
    fits,
    min_gpus_that_fit,
    model_shape,
    simulate_inference,
)
from wattbench.energy.validate import workload_problem

#: Head dimension when neither --head-dim nor --model gives one (Llama 3.x, Qwen, Mistral: 128).
HEAD_DIM_DEFAULT = 128
DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def build_simulate_parser() -> argparse.ArgumentParser:
    """The `simulate` subcommand's arguments."""
    p = Parser(
        prog="wattbench simulate",
        description="Predict latency, GPU power, energy and carbon of serving an LLM on a GPU (roofline model).")
    p.add_argument("--model", default=None,
                   help="an open model by name (e.g. meta-llama/Llama-3.1-8B-Instruct, ollama/qwen3:30b-a3b): its "
                        "true shape from wattbench/data/models.json; options given explicitly win")
    p.add_argument("--params-b", type=positive_float, default=None,
                   help="model size in billions of parameters (total, for a mixture of experts)")
    p.add_argument("--active-params-b", type=positive_float, default=None,
                   help="active parameters per token, billions (mixture of experts; default = --params-b)")
    p.add_argument("--gpu", default=None, help="GPU key (default H100_SXM, or the --profile's)")
    p.add_argument("--num-gpus", type=positive_int, default=None,
                   help="tensor-parallel GPU count (default: the --profile's, else the smallest that fits)")
    dtype = p.add_mutually_exclusive_group()
    dtype.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default=None,
                       help="weight type (default bf16, or the --profile's)")
    dtype.add_argument("--bytes-per-param", type=positive_float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="concurrent requests (default 1, or the --profile's)")
    p.add_argument("--prompt-tokens", type=non_negative_int, default=512)
    p.add_argument("--output-tokens", type=positive_int, default=256)
    p.add_argument("--datacenter", default=None, help="datacenter key (default world_average, or the --profile's)")
    p.add_argument("--profile", default=None, help="deployment profile: its GPU, count, datacenter, batch, dtype")
    p.add_argument("--profiles-file", default=None, help="your profiles JSON (added to data/profiles.json)")
    p.add_argument("--layers", type=positive_int, default=None, help="number of layers (default: from size)")
    p.add_argument("--hidden-size", type=positive_int, default=None)
    p.add_argument("--kv-heads", type=positive_int, default=None, help="KV heads (default 8 dense, 4 MoE)")
    p.add_argument("--head-dim", type=positive_int, default=HEAD_DIM_DEFAULT)
    p.add_argument("--experts", type=positive_int, default=None, help="routed experts (mixture of experts)")
    p.add_argument("--experts-per-token", type=positive_int, default=None)
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
        profile = lookup(load_profiles(args.profiles_file), args.profile, "profile")
    elif args.profiles_file:
        raise CliError("--profiles-file needs --profile NAME")
    gpu = find_gpu(gpus, args.gpu) if args.gpu else (profile.gpu if profile else gpus["H100_SXM"])
    dc = (lookup(datacenters, args.datacenter, "datacenter") if args.datacenter
          else profile.datacenter if profile else lookup(datacenters, "world_average", "datacenter"))
    num_gpus = args.num_gpus or (profile.gpu_count if profile and not args.gpu else None)
    batch = args.batch_size or (profile.batch_size if profile else 1)
    if args.dtype or args.bytes_per_param:
        bytes_per_param = args.bytes_per_param or DTYPE_BYTES[args.dtype]
        label = args.dtype or f"{bytes_per_param:g} bytes/param"
    else:
        bytes_per_param = profile.bytes_per_param if profile else 2.0
        label = {2.0: "bf16", 1.0: "fp8"}.get(bytes_per_param, f"{bytes_per_param:g} bytes/param")
    return _Workload(gpu, num_gpus, dc, batch, bytes_per_param, label)


def _apply_open_model(args: argparse.Namespace) -> None:
    """Fill the shape options that were not given from the --model's row of models.json."""
    row = resolve_open_model(args.model)
    if row is None:
        raise CliError(f"unknown model {args.model!r}: it is not in wattbench/data/models.json; give its size "
                       "with --params-b (and --active-params-b for a mixture of experts)")
    known = roofline_kwargs(row)
    for option, key in (("params_b", "total_params_b"), ("active_params_b", "active_params_b"),
                        ("layers", "num_layers"), ("hidden_size", "hidden_size"), ("kv_heads", "num_kv_heads"),
                        ("experts", "num_experts"), ("experts_per_token", "experts_per_token")):
        if getattr(args, option) is None:
            setattr(args, option, known[key])
    if args.head_dim == HEAD_DIM_DEFAULT:
        args.head_dim = known["head_dim"]
    args.model = row.key


def _used_shape(args: argparse.Namespace) -> dict[str, Any]:
    """The model and shape an estimate used, for --json."""
    shape = _shape_from_args(args)
    return {"model": args.model, "total_params_b": shape.total_params_b, "active_params_b": shape.active_params_b,
            "num_layers": shape.num_layers, "hidden_size": shape.hidden_size, "num_kv_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim, "num_experts": args.experts, "experts_per_token": args.experts_per_token}


def _shape_from_args(args: argparse.Namespace) -> ModelShape:
    active = args.active_params_b or args.params_b
    if active > args.params_b:
        raise CliError(f"--active-params-b ({active:g}) cannot exceed --params-b ({args.params_b:g})")
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
            raise CliError(f"a {args.params_b:g}B model does not fit even on {TP_SIZES[-1]} x {gpu.key}")
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
    """`wattbench simulate`: print the prediction as a table (or --json); exit 2 on bad input."""
    try:
        args = build_simulate_parser().parse_args(argv)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        gpus = load_gpus(args.gpus_file)
        datacenters = load_datacenters(args.datacenters_file)
        if args.list:
            print(format_listing(gpus, datacenters, load_profiles(args.profiles_file)))
            return 0
        if args.model is not None:
            _apply_open_model(args)
        if args.params_b is None:
            raise CliError("--params-b is required: the model size in billions of parameters, e.g. --params-b 8 "
                           "(or --model NAME for an open model wattbench knows)")
        work = _resolve_workload(args, gpus, datacenters)
        problem = workload_problem(
            params_b=args.params_b, active_params_b=args.active_params_b, num_gpus=work.num_gpus,
            batch_size=work.batch_size, prompt_tokens=args.prompt_tokens, output_tokens=args.output_tokens,
            num_layers=args.layers, hidden_size=args.hidden_size, num_kv_heads=args.kv_heads,
            head_dim=args.head_dim, num_experts=args.experts, experts_per_token=args.experts_per_token,
            bytes_per_param=work.bytes_per_param)
        if problem is not None:
            raise CliError(problem)
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
                except CliError as exc:
                    print(f"note: {gpu.key}: {exc}", file=sys.stderr)
        else:
            estimates = [_simulate_from_args(args, work, work.gpu, work.num_gpus)]
    except (CliError, DataFileError, ValueError, ArithmeticError) as exc:  # overflow too: one line, never a traceback
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
    if args.json:
        used = _used_shape(args)
        payload: Any = ([{**used, **e.to_dict()} for e in estimates] if args.compare
                        else {**used, **estimates[0].to_dict()})
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
