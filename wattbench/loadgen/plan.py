"""The load plan: work items (prompt x repeat), their send times, and RequestRecord (one finished request)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from wattbench.workloads.prompts import PromptSpec


Arrival = Literal["constant", "poisson", "trace"]


@dataclass(frozen=True)
class Schedule:
    """When requests are sent. Closed loop: `concurrency` users, each sending its next request when the last
    one finished. Open loop: `rate_rps` requests per second (arrival "constant" or "poisson"; "trace": at each
    item's own offset), with `concurrency` as the cap on what may be in flight. `warmup` requests go first and
    are not recorded; `seed` fixes poisson arrivals and retry jitter."""

    concurrency: int = 1
    rate_rps: float | None = None
    arrival: Arrival = "constant"
    warmup: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {self.concurrency}")
        if self.rate_rps is not None and self.rate_rps <= 0:
            raise ValueError(f"rate must be > 0 requests per second, not {self.rate_rps}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, not {self.warmup}")


@dataclass(frozen=True)
class WorkItem:
    """One prompt x repeat: sent once per run."""

    spec: PromptSpec
    repeat: int

    @property
    def key(self) -> str:
        return request_key(self.spec.prompt_id, self.repeat)


def request_key(prompt_id: str, repeat: int) -> str:
    """The stable id of a prompt x repeat within a run (the CSV's request_id)."""
    return f"{prompt_id}-r{repeat}"


def plan_requests(prompts: Sequence[PromptSpec], repeats: int = 1) -> list[WorkItem]:
    """Every prompt once per repeat, repeat by repeat."""
    return [WorkItem(spec, r) for r in range(repeats) for spec in prompts]


@dataclass
class RequestRecord:
    """A finished request (served or failed) as it is written to the run file."""

    key: str
    prompt_id: str
    repeat: int
    prompt: str
    category: str | None
    expected: str | float | list[str] | None
    grader: str
    tolerance: float
    session: str
    success: bool
    error: str | None
    status_code: int | None
    attempts: int
    rate_limited: int  # how many of the attempts got a 429
    retry_wait_s: float  # time spent waiting before retries and at the rate-limit gate: not latency
    started_at: str  # ISO-8601 UTC, when the last attempt was sent
    t_start_epoch_s: float
    t_end_epoch_s: float
    client_latency_s: float | None  # the last attempt's HTTP round trip, seen by the client
    response: dict[str, Any] | None = None
    requested_model: str | None = None  # the model asked for (or the service's default): kept when unanswered
    client_ttft_s: float | None = None  # send to the first streamed content chunk, seen by the client
    client_itl_s: float | None = None  # mean gap between streamed content chunks, seen by the client
    path: str = "service"  # which path measured it: "service" (/chat) or "direct" (the server itself)
    target_input_tokens: int | None = None  # the workload's prompt length (workloads/sources.py)
    target_output_tokens: int | None = None  # the output length asked for (max_tokens)
    client_send_wait_s: float | None = None  # the client's own time before the request's bytes went out


def arrival_offsets_s(
    n: int, rate_rps: float, arrival: Arrival = "constant", rng: random.Random | None = None
) -> list[float]:
    """Send times (seconds after the start) of n requests at `rate_rps` requests per second: evenly spaced
    (constant) or with exponential gaps (poisson); the first is at 0."""
    if rate_rps <= 0:
        raise ValueError(f"rate must be > 0 requests per second, not {rate_rps}")
    if arrival == "constant":
        return [i / rate_rps for i in range(n)]
    if arrival == "poisson":
        rng = rng or random.Random()
        offsets, t = [], 0.0
        for _ in range(n):
            offsets.append(t)
            t += rng.expovariate(rate_rps)
        return offsets
    raise ValueError(f"unknown arrival {arrival!r}; use constant or poisson")


def trace_offsets_s(items: Sequence[WorkItem]) -> list[float]:
    """Send times of a trace's items: each one's arrival_s, counted from the earliest still to send (a resumed
    trace starts at once)."""
    times = [item.spec.arrival_s or 0.0 for item in items]
    first = min(times, default=0.0)
    return [t - first for t in times]


def iso_utc(epoch_s: float) -> str:
    """An epoch time as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")


class RecordSinkError(ValueError):
    """A finished record could not be kept (the run file cannot be written); the message says what to do."""


def latest_by_key(records: Iterable[Mapping[str, Any] | RequestRecord]) -> dict[str, dict[str, Any]]:
    """The last record of each request key (a resumed run may have retried a failed request)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        row = asdict(record) if isinstance(record, RequestRecord) else dict(record)
        latest[row["key"]] = row
    return latest
