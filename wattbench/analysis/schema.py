"""The CSV schema: every column with its unit, its lens (where its number comes from) and its meaning.

The client's columns (what the benchmark client and the service record: time, tokens, price, answers) are
listed here; each energy lens declares its own (wattbench/energy/lenses/), and the schema is the two together
in the registry's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattbench.energy.lenses import LENSES, gpu, measured, provider, simulated
from wattbench.energy.lenses.base import CLIENT, Column

if TYPE_CHECKING:  # pragma: no cover - type hints only; this module is imported without pandas too
    import pandas as pd

REQUEST_LEVEL = CLIENT
LENS_SIMULATED = simulated.LABEL
LENS_PROVIDER = provider.LABEL
LENS_MEASURED = measured.LABEL
LENS_ESTIMATED = measured.ESTIMATED
MEASURED_METHODS = dict(measured.LENS.method_labels)
_R = CLIENT

#: What the client and the service record for each request.
CLIENT_COLUMNS: dict[str, Column] = {
    "run_id": Column("", _R, "id of the benchmark run (one `wattbench run`)"),
    "request_id": Column("", _R, "id of the request (unique within a run); repeated on each profile row"),
    "prompt_id": Column("", _R, "id of the test prompt (data/test_prompts.jsonl)"),
    "repeat": Column("", _R, "repeat index of the prompt in this run, from 0"),
    "prompt": Column("", _R, "the prompt text"),
    "category": Column("", _R, "prompt category from the prompt file (factual, code, ...)"),
    "route": Column("", _R, "route chosen by smart_router, e.g. Flash-Coder"),
    "route_reason": Column("", _R, "why smart_router chose that route"),
    "temperature": Column("", _R, "sampling temperature the route set"),
    "model": Column("", _R, "LiteLLM model string that answered"),
    "success": Column("bool", _R, "True when the service answered 200 with text"),
    "error": Column("", _R, "what went wrong, empty on success"),
    "status_code": Column("", _R, "HTTP status of the last attempt"),
    "attempts": Column("", _R, "HTTP attempts made (retries on 429/5xx)"),
    "retry_wait_s": Column("s", _R, "time spent waiting before retries (not part of latency)"),
    "started_at": Column("ISO-8601 UTC", _R, "when the request was sent"),
    "t_start_s": Column("s", _R, "send time in seconds since the run's first request"),
    "latency_s": Column("s", _R, "end-to-end latency: send to last byte"),
    "ttft_s": Column("s", _R, "time to first token: send to the first non-empty streamed chunk"),
    "tpot_s": Column("s", _R, "time per output token: (latency_s - ttft_s) / (completion_tokens - 1); empty below 2"),
    "tokens_per_s": Column("tokens/s", _R, "output tokens per second: completion_tokens / latency_s"),
    "prompt_tokens": Column("tokens", _R, "input tokens (provider usage, or estimated: see token_source)"),
    "completion_tokens": Column("tokens", _R, "output tokens"),
    "total_tokens": Column("tokens", _R, "prompt_tokens + completion_tokens"),
    "token_source": Column("", _R, "'provider' (usage reported by the API) or 'estimated'"),
    "cost_usd": Column("USD", _R, "API price of the request from LiteLLM's price map; empty when unknown"),
    "expected": Column("", _R, "expected answer of a graded prompt"),
    "grader": Column("", _R, "how the answer is graded; empty for ungraded prompts"),
    "correct": Column("bool", _R, "True/False for graded prompts, empty otherwise"),
    "response_text": Column("", _R, "the model's answer"),
}

#: Every CSV column in order: the client's, then each lens's (request-level lenses, then per-profile ones).
CSV_SCHEMA: dict[str, Column] = {
    **CLIENT_COLUMNS,
    **{name: col for lens in LENSES if lens.level == "request" for name, col in lens.columns.items()},
    **{name: col for lens in LENSES if lens.level == "profile" for name, col in lens.columns.items()},
}


def markdown_table(schema: dict[str, Column]) -> str:
    """A schema as a Markdown table: column, unit, lens, meaning (the docs' tables are generated with it)."""
    lines = ["| column | unit | lens | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {col.unit} | {col.lens} | {col.meaning} |" for name, col in schema.items()]
    return "\n".join(lines)


#: The columns of one request (every profile row repeats them): the client's, then the request-level lenses'.
REQUEST_COLUMNS: tuple[str, ...] = tuple(
    name for name in CSV_SCHEMA if name not in {c for lens in LENSES if lens.level == "profile" for c in lens.columns})

#: Written after the request's columns for auditing, not part of the documented schema: the latency the client
#: measured before the timing columns took it over, the service's own request id, the sending session's id.
AUDIT_COLUMNS: tuple[str, ...] = ("client_latency_s", "service_request_id", "session")


#: Columns a CSV written before they existed may lack (read back as empty): the GPU lens's, sim_batch_size.
OPTIONAL_COLUMNS: tuple[str, ...] = (*gpu.LENS.columns, "sim_batch_size")
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in CSV_SCHEMA if c not in OPTIONAL_COLUMNS)


def with_optional_columns(df: pd.DataFrame) -> pd.DataFrame:
    """df with every OPTIONAL_COLUMNS column it lacks added, empty."""
    missing = [c for c in OPTIONAL_COLUMNS if c not in df.columns]
    return df.assign(**{c: None for c in missing}) if missing else df


# Columns a run writes since wattbench measures on the client (issue 15: the numbers a run reports are the
# numbers it saw). latency_s, ttft_s, tpot_s and tokens_per_s above are the client's; these say how they were
# measured and keep the service's own timings apart. Optional when reading (older CSVs lack them).
LOAD_SCHEMA: dict[str, Column] = {
    "path": Column("", _R, "which path measured the row: service (runner -> /chat -> model) or direct "
                   "(runner -> the OpenAI-compatible server itself)"),
    "timing_source": Column("", _R, "client (latency and TTFT timed by the runner where the bytes arrive) or "
                            "estimated (an unstreamed answer: TTFT = service_ttft_s + the client's extra wait)"),
    "phase": Column("", _R, "warmup, measure or cooldown (--warmup-seconds / --cooldown / --cooldown-seconds); "
                    "the report's statistics use measure only"),
    "service_latency_s": Column("s", _R, "latency as the service timed it, around the model call only"),
    "service_ttft_s": Column("s", _R, "TTFT as the service timed it, around the model call only"),
    "service_overhead_s": Column("s", _R, "latency_s - service_latency_s: time in the service outside the model "
                                 "call (queueing, routing, serialising) plus the network"),
    "itl_s": Column("s", _R, "mean gap between streamed content chunks after the first, seen by the client"),
    "requested_concurrency": Column("", _R, "requests in flight asked for (--concurrency, or --max-concurrency "
                                    "with --rate)"),
    "requested_rate_rps": Column("req/s", _R, "--rate asked for; empty in concurrency mode"),
}


#: What the server said about itself (wattbench/telemetry/: its Prometheus metrics sampled through the run) and
#: how the simulated lens chose its batch; empty when the server has no metrics endpoint.
SERVER_SCHEMA: dict[str, Column] = {
    "server_batch": Column("requests", "server", "time-weighted mean of the server's running requests (vllm:num_"
                           "requests_running, sglang:num_running_reqs, tgi_batch_current_size, llamacpp:requests_"
                           "processing) while this request was in flight; empty without server metrics"),
    "server_queue": Column("requests", "server", "the same for the server's waiting requests (vllm:num_requests_"
                           "waiting, sglang:num_queue_reqs, tgi_queue_size, llamacpp:requests_deferred)"),
    "sim_batch_source": Column("", _R, "where sim_batch_size came from: server (round(server_batch)), achieved "
                               "(the run's mean in-flight requests) or profile (the profile's batch_size)"),
    "calibration_factor": Column("", _R, "--calibrate-from-measured: measured / simulated GPU energy of this run on "
                                 "the measured GPU model, applied to every profile's simulated energy; empty "
                                 "when not calibrated"),
    "calibration_source": Column("", _R, "what calibration_factor was measured on: the GPU model, the method and "
                                 "the requests it compares"),
}


def server_schema_markdown() -> str:
    """SERVER_SCHEMA as a Markdown table (docs/server-metrics.md)."""
    return markdown_table(SERVER_SCHEMA)


#: What a workload asked for (workloads/sources.py), beside what came back (prompt_tokens, completion_tokens).
WORKLOAD_SCHEMA: dict[str, Column] = {
    "target_input_tokens": Column("tokens", _R, "the prompt's length as the workload counted it (synthetic, "
                                  "dataset, trace; the counter is named in the run's manifest); empty otherwise"),
    "target_output_tokens": Column("tokens", _R, "the output length asked for (max_tokens); empty when none was"),
    "output_enforced": Column("", _R, "how target_output_tokens was asked for: vllm (max_tokens + ignore_eos + "
                              "min_tokens), max-tokens (a cap only) or off"),
}


def workload_schema_markdown() -> str:
    """WORKLOAD_SCHEMA as a Markdown table (docs/sweeps.md)."""
    return markdown_table(WORKLOAD_SCHEMA)


def load_schema_markdown() -> str:
    """LOAD_SCHEMA as a Markdown table (docs/running.md)."""
    return markdown_table(LOAD_SCHEMA)


NUMERIC_COLUMNS: tuple[str, ...] = tuple(
    name for name, col in CSV_SCHEMA.items()
    if col.unit not in ("", "bool", "ISO-8601 UTC") or name in {
        "repeat", "temperature", "status_code", "attempts", "gpu_count", "pue", "sim_batch_size"}
) + ("server_batch", "server_queue", "calibration_factor")


TEXT_COLUMNS: tuple[str, ...] = ("run_id", "request_id", "model", "route", "profile", "gpu", "datacenter",
                                 "location", "category", "measured_energy_method", "gpu_energy_method",
                                 "gpu_energy_devices", "error")


def schema_markdown() -> str:
    """The CSV schema as a Markdown table (the README's copy is checked against it by the tests)."""
    return markdown_table(CSV_SCHEMA)
