"""Plausible ranges for a simulated workload: one pure check that `simulate` (and, once wired, the roofline
model itself) runs before any arithmetic, so nonsense is refused with one line instead of overflowing or
printing figures for a machine that cannot exist.

    problem = workload_problem(params_b=8, num_gpus=1_000_000)   # "num_gpus 1000000 is outside 1-4096"
    check_workload(params_b=1e300)                              # raises ValueError with that line

The bounds are generous (a few times past the largest models and deployments in use): they catch typos and
overflow, not unusual but real configurations.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

#: (lowest, highest) accepted value of each input; None = no bound on that side.
LIMITS: Mapping[str, tuple[float, float]] = {
    "params_b": (1e-4, 1e5),  # 100k parameters .. 100 trillion
    "active_params_b": (1e-4, 1e5),
    "num_gpus": (1, 4096),
    "batch_size": (1, 1_000_000),
    "prompt_tokens": (0, 100_000_000),
    "output_tokens": (1, 100_000_000),
    "num_layers": (1, 10_000),
    "hidden_size": (1, 1_000_000),
    "num_kv_heads": (1, 100_000),
    "head_dim": (1, 65_536),
    "num_experts": (1, 100_000),
    "experts_per_token": (1, 100_000),
    "bytes_per_param": (0.0625, 16.0),  # 1/2 bit .. fp128
}

#: How each input is named on the command line (for the message).
FLAGS: Mapping[str, str] = {
    "params_b": "--params-b", "active_params_b": "--active-params-b", "num_gpus": "--num-gpus",
    "batch_size": "--batch-size", "prompt_tokens": "--prompt-tokens", "output_tokens": "--output-tokens",
    "num_layers": "--layers", "hidden_size": "--hidden-size", "num_kv_heads": "--kv-heads",
    "head_dim": "--head-dim", "num_experts": "--experts", "experts_per_token": "--experts-per-token",
    "bytes_per_param": "--bytes-per-param",
}


def workload_problem(**values: float | int | None) -> str | None:
    """The first problem with the given inputs (names as in LIMITS; None = not given), or None when they are
    plausible: a value that is not a finite number, one outside its range, more active than total parameters,
    or more experts per token than experts (or one of the two without the other)."""
    for name, value in values.items():
        if value is None:
            continue
        if name not in LIMITS:
            raise TypeError(f"workload_problem() got an unknown input {name!r}")
        flag = FLAGS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{flag} must be a finite number, not {value!r}"
        low, high = LIMITS[name]
        if not low <= value <= high:
            shown = str(value) if isinstance(value, int) else f"{value:g}"
            return f"{flag} {shown} is outside the plausible range {low:g}-{high:g}"
    params, active = values.get("params_b"), values.get("active_params_b")
    if params is not None and active is not None and active > params:
        return f"--active-params-b ({active:g}) cannot exceed --params-b ({params:g})"
    experts, per_token = values.get("num_experts"), values.get("experts_per_token")
    if (experts is None) != (per_token is None):
        return "--experts and --experts-per-token go together: give both (a mixture of experts) or neither"
    if experts is not None and per_token is not None and per_token > experts:
        return f"--experts-per-token ({per_token:g}) cannot exceed --experts ({experts:g})"
    return None


def check_workload(**values: float | int | None) -> None:
    """ValueError with workload_problem()'s line when the inputs are not plausible."""
    problem = workload_problem(**values)
    if problem is not None:
        raise ValueError(problem)
