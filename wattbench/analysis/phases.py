"""Phases and achieved load of a run, from the client's own timestamps (pure functions over run records).

A request's phase is "warmup" when it was sent in the first `warmup_s` seconds of the run, "cooldown" when it
was still running in the last `cooldown_s` seconds or is among the last `cooldown` requests to finish, and
"measure" otherwise; the report's statistics use the "measure" phase only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PHASE_WARMUP = "warmup"


PHASE_MEASURE = "measure"


PHASE_COOLDOWN = "cooldown"


def _end(record: Mapping[str, Any]) -> float:
    return float(record["t_end_epoch_s"])


def phases(
    records: Sequence[Mapping[str, Any]], warmup_s: float = 0.0, cooldown_s: float = 0.0, cooldown: int = 0
) -> dict[str, str]:
    """key -> phase of each record (the last record of each key), from the client's send and finish times."""
    if not records:
        return {}
    first_start = min(float(r["t_start_epoch_s"]) for r in records)
    last_end = max(_end(r) for r in records)
    by_end = sorted(records, key=_end)
    last_keys = {r["key"] for r in by_end[len(by_end) - cooldown:]} if cooldown > 0 else set()
    out: dict[str, str] = {}
    for r in records:
        if warmup_s > 0 and float(r["t_start_epoch_s"]) - first_start < warmup_s:
            out[r["key"]] = PHASE_WARMUP
        elif r["key"] in last_keys or (cooldown_s > 0 and _end(r) > last_end - cooldown_s):
            out[r["key"]] = PHASE_COOLDOWN
        else:
            out[r["key"]] = PHASE_MEASURE
    return out
