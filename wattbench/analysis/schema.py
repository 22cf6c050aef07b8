"""The CSV schema: every column with its unit, its lens (where its number comes from) and its meaning."""

from __future__ import annotations

from dataclasses import dataclass

LENS_SIMULATED = "simulated"


LENS_PROVIDER = "provider-side (EcoLogits)"


LENS_MEASURED = "measured"


LENS_ESTIMATED = "estimated"


MEASURED_METHODS = {"rapl": LENS_MEASURED, "nvml": LENS_MEASURED, "cpu_time_estimate": LENS_ESTIMATED}


REQUEST_LEVEL = "client"  # columns the benchmark client / service records directly (time, tokens, price)


@dataclass(frozen=True)
class Column:
    """One CSV column: unit ('' when none), lens (where its number comes from) and meaning."""

    unit: str
    lens: str
    meaning: str


_R, _S, _P, _M = REQUEST_LEVEL, LENS_SIMULATED, LENS_PROVIDER, "measured / estimated"


CSV_SCHEMA: dict[str, Column] = {
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
    "measured_energy_kwh": Column("kWh", _M, "energy of this generation on the serving machine (local model only)"),
    "measured_energy_method": Column("", _M, "rapl or nvml (measured), cpu_time_estimate (estimated)"),
    "provider_energy_kwh": Column("kWh", _P, "provider's datacenter energy for this request (EcoLogits)"),
    "provider_energy_kwh_min": Column("kWh", _P, "low end of the EcoLogits range"),
    "provider_energy_kwh_max": Column("kWh", _P, "high end of the EcoLogits range"),
    "provider_carbon_gco2e": Column("gCO2e", _P, "provider-side carbon (EcoLogits, usage phase)"),
    "provider_carbon_gco2e_min": Column("gCO2e", _P, "low end of the EcoLogits range"),
    "provider_carbon_gco2e_max": Column("gCO2e", _P, "high end of the EcoLogits range"),
    "profile": Column("", _S, "deployment profile name (GPU x datacenter), e.g. A100_SIMULATED"),
    "gpu": Column("", _S, "GPU model of the profile"),
    "gpu_count": Column("", _S, "GPUs per replica (tensor parallel; raised to the fewest the model fits on)"),
    "datacenter": Column("", _S, "datacenter / cloud region id"),
    "location": Column("", _S, "where the datacenter is"),
    "tdp_w": Column("W", _S, "GPU thermal design power, per GPU"),
    "idle_w": Column("W", _S, "GPU idle power, per GPU"),
    "pue": Column("", _S, "datacenter power usage effectiveness (facility / IT energy)"),
    "grid_gco2e_per_kwh": Column("gCO2e/kWh", _S, "carbon intensity of the datacenter's grid"),
    "electricity_usd_per_kwh": Column("USD/kWh", _S, "electricity price at the datacenter"),
    "energy_method": Column("", _S, "roofline (model size known) or measured_latency_x_tdp (the original's "
                            "accounting: TDP x GPUs x measured latency)"),
    "sim_latency_s": Column("s", _S, "predicted time of this request on the profile's GPUs (roofline), or the "
                            "measured latency for measured_latency_x_tdp"),
    "idle_s": Column("s", _S, "time the service sat idle before this request, charged to it"),
    "compute_energy_kwh": Column("kWh", _S, "GPU energy while computing this request"),
    "idle_energy_kwh": Column("kWh", _S, "GPU energy while idle, charged to this request"),
    "pue_overhead_kwh": Column("kWh", _S, "facility overhead: (PUE - 1) x IT energy"),
    "energy_kwh": Column("kWh", _S, "compute + idle + PUE overhead"),
    "energy_kwh_min": Column("kWh", _S, "low end of the energy range"),
    "energy_kwh_max": Column("kWh", _S, "high end of the energy range"),
    "carbon_gco2e": Column("gCO2e", _S, "energy_kwh x grid intensity (operational carbon)"),
    "carbon_gco2e_min": Column("gCO2e", _S, "low end of the carbon range"),
    "carbon_gco2e_max": Column("gCO2e", _S, "high end of the carbon range"),
    "energy_cost_usd": Column("USD", _S, "energy_kwh x electricity price"),
    "total_cost_usd": Column("USD", _S, "cost_usd (0 when unknown) + energy_cost_usd"),
}


REQUIRED_COLUMNS: tuple[str, ...] = tuple(CSV_SCHEMA)


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


def load_schema_markdown() -> str:
    """LOAD_SCHEMA as a Markdown table (docs/running.md)."""
    lines = ["| column | unit | lens | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {col.unit} | {col.lens} | {col.meaning} |" for name, col in LOAD_SCHEMA.items()]
    return "\n".join(lines)


NUMERIC_COLUMNS: tuple[str, ...] = tuple(
    name for name, col in CSV_SCHEMA.items()
    if col.unit not in ("", "bool", "ISO-8601 UTC") or name in {
        "repeat", "temperature", "status_code", "attempts", "gpu_count", "pue"}
)


TEXT_COLUMNS: tuple[str, ...] = ("run_id", "request_id", "model", "route", "profile", "gpu", "datacenter",
                                 "location", "category", "measured_energy_method", "error")


def schema_markdown() -> str:
    """The CSV schema as a Markdown table (the README's copy is checked against it by the tests)."""
    lines = ["| column | unit | lens | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {col.unit} | {col.lens} | {col.meaning} |" for name, col in CSV_SCHEMA.items()]
    return "\n".join(lines)
