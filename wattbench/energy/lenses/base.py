"""What an energy lens is: the CSV columns it owns (unit, meaning), its label, and how it fills them.

A lens is one way of knowing a request's energy: simulated on a deployment profile, estimated provider-side
(EcoLogits), measured on the serving machine (RAPL / CPU time), measured on its GPUs (NVML). Each lens module
declares one `Lens`; the registry (wattbench.energy.lenses.LENSES) is what the CSV schema, the enrichment, the
report and the dashboards iterate over, so adding a lens is one module plus its registration.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The "lens" of columns that the benchmark client / service records directly (time, tokens, price).
CLIENT = "client"


@dataclass(frozen=True)
class Column:
    """One CSV column: unit ('' when none), lens (where its number comes from) and meaning."""

    unit: str
    lens: str
    meaning: str


#: fill(record, row) -> the lens's columns for one served request (record: the run file's dict; row: the
#: request's CSV row so far, client columns filled in). Profile-level lenses fill per profile instead.
RequestFill = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Lens:
    """One energy lens.

    key: stable id; label: how reports and dashboards name it; note: one line saying what it measures.
    level: "request" (one value per request) or "profile" (one per request x deployment profile).
    columns: the CSV columns it owns, in order. energy_column (+ _min/_max): its energy per request, kWh,
    summed for "energy per 1K tokens". source_column: the column naming the method or profile it used
    (one row of the lens table per source); method_labels: a source value that changes the label
    (e.g. a CPU-time estimate is "estimated", not "measured"). bar_label: the dashboards' bar label.
    """

    key: str
    label: str
    note: str
    level: Literal["request", "profile"]
    columns: Mapping[str, Column]
    energy_column: str
    energy_min_column: str | None = None
    energy_max_column: str | None = None
    source_column: str | None = None
    method_labels: Mapping[str, str] = field(default_factory=dict)
    bar_label: str = "{label}:<br>{source}"
    fill: RequestFill | None = None

    def label_for(self, source: str | None) -> str:
        """The label of this lens's rows whose source_column is `source`."""
        return self.method_labels.get(str(source), self.label) if source is not None else self.label

    def bar(self, source: str | None) -> str:
        """The dashboards' label for one (lens, source) bar."""
        return self.bar_label.format(label=self.label_for(source), source=source)
