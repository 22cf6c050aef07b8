"""The typed configuration of one `wattbench run`, shared by the command line and `run_benchmark(**options)`.

`RunConfig` is a frozen dataclass, checked once when it is built (`RunConfig.from_argv` for the CLI,
`RunConfig.from_options` for Python); every later step reads its fields, never an argparse Namespace.
Bad values raise CliError with the message the CLI prints after `error:` (run_benchmark turns it into
ValueError).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from wattbench.cli_support import CliError, Parser
from wattbench.loadgen.limiter import RetryPolicy
from wattbench.workloads.sources import add_workload_arguments, check_workload_options, has_workload

# option names of `wattbench run` whose field carries its unit (`run_benchmark(rate=2)` and
# `run_benchmark(rate_rps=2)` both work)
OPTION_ALIASES: dict[str, str] = {
    "rate": "rate_rps",
    "timeout": "timeout_s",
    "max_duration": "max_duration_s",
    "warmup_seconds": "warmup_s",
    "cooldown_seconds": "cooldown_s",
    "request_budget": "request_budget_s",
}


@dataclass(frozen=True)
class RunConfig:
    """Every option of `wattbench run`, checked. Units are in the names (seconds: _s, requests/s: _rps)."""

    server_url: str | None = None  # a running wattbench service (default: start one)
    token: str | None = field(default=None, repr=False)  # the service's bearer token; never printed
    base_url: str | None = None  # direct path: an OpenAI-compatible server, e.g. http://host:8000/v1
    api_key: str | None = field(default=None, repr=False)  # direct path key (default env OPENAI_API_KEY)
    model: str | None = None
    prompts: str | None = None
    concurrency: int | None = None
    rate_rps: float | None = None
    arrival: Literal["constant", "poisson"] = "constant"
    max_concurrency: int = 32
    repeats: int | None = None
    warmup: int = 1  # unrecorded warm-up requests sent first
    warmup_s: float = 0.0  # recorded requests sent in the first warmup_s seconds: phase "warmup"
    cooldown: int = 0  # the last `cooldown` requests to finish: phase "cooldown"
    cooldown_s: float = 0.0  # recorded requests still running in the last cooldown_s seconds: "cooldown"
    max_duration_s: float | None = None  # stop sending after this many seconds (a clean stop)
    max_errors: int | None = None  # stop after this many failed requests
    max_error_rate: float | None = None  # stop when failed / finished exceeds this (after 10 finished)
    workers: int | Literal["auto"] = "auto"  # load-generating processes (direct path); auto: loadgen.workers.auto_workers
    ray: str | None = None  # run the workers on Ray: "local" (ray.init() here) or a cluster address
    stream: bool = True  # service path: ask /chat for server-sent events (client-side TTFT)
    profiles: str | None = None
    profiles_file: str | None = None
    out: str = "outputs"
    resume: str | None = None
    timeout_s: float = 300.0
    max_attempts: int = RetryPolicy.max_attempts
    request_budget_s: float | None = None  # seconds per request, all attempts and waits (default 3 x timeout_s)
    max_answer_chars: int = 100_000  # characters of an answer's text recorded (loadgen.sender.MAX_ANSWER_CHARS)
    max_429: int = RetryPolicy.max_rate_limited  # 429 answers one request may get before it is given up
    seed: int | None = None
    gpu_energy: Literal["auto", "on", "off"] = "auto"  # NVML on the runner's machine (the measured-GPU lens)
    no_report: bool = False
    no_progress: bool = False
    # workloads (workloads/sources.py); default: the 12 graded prompts
    synthetic: bool = False
    input_tokens: str | None = None  # N, uniform:LOW:HIGH or normal:MEAN:STDEV
    output_tokens: str | None = None
    num_prompts: int | None = None
    dataset: str | None = None  # ShareGPT-style JSON file, or hf:NAME
    dataset_split: str = "train"
    dataset_column: str | None = None
    trace: str | None = None  # JSONL trace: timestamps + lengths, replayed at its pace / trace_speed
    trace_speed: float = 1.0
    tokenizer: str | None = None
    output_enforce: Literal["auto", "vllm", "max-tokens", "off"] = "auto"
    # the batch the simulated lens runs the roofline at: the server's (sampled running requests), the concurrency
    # the run achieved, or the profile's; None: server when server metrics exist, else energy_batch_fallback
    energy_batch: Literal["server", "achieved", "profile"] | None = None
    energy_batch_fallback: Literal["profile", "achieved"] = "profile"  # `wattbench sweep` sets achieved
    # server-side truth (wattbench/telemetry/): the engine's Prometheus metrics and dcgm-exporter endpoints
    server_metrics: str = "auto"  # URL | auto (the --base-url's origin + /metrics) | off
    server_metrics_interval_s: float = 1.0
    gpu_metrics: str | None = None  # comma-separated dcgm-exporter URLs
    calibrate_from_measured: bool = False  # scale every profile's simulated lens by measured / simulated

    def __post_init__(self) -> None:
        _check(self)

    @property
    def path(self) -> str:
        """Which path measures: 'direct' (--base-url) or 'service'."""
        return "direct" if self.base_url else "service"

    @property
    def gpu_metric_urls(self) -> list[str]:
        """--gpu-metrics as a list of URLs."""
        return [u.strip() for u in (self.gpu_metrics or "").split(",") if u.strip()]

    @property
    def in_flight(self) -> int:
        """The most requests in flight: --concurrency, or --max-concurrency with --rate."""
        if self.rate_rps is not None or self.trace:
            return self.max_concurrency
        return self.concurrency or 1

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> RunConfig:
        """The CLI's options (CliError for bad ones; SystemExit for --help)."""
        args = parser().parse_args(list(argv))
        return cls(**vars(args))

    @classmethod
    def from_options(cls, server_url: str | None = None, **options: Any) -> RunConfig:
        """`run_benchmark`'s keyword arguments: the long options with underscores (or the field names)."""
        names = {f.name for f in fields(cls)}
        given = {OPTION_ALIASES.get(k, k): v for k, v in options.items()}
        unknown = [k for k in options if OPTION_ALIASES.get(k, k) not in names]
        if unknown:
            raise CliError(f"unknown option(s) {', '.join(unknown)}; use the long options of `wattbench run`")
        return cls(server_url=server_url, **given)

    def with_defaults_from(self, previous: Mapping[str, Any]) -> RunConfig:
        """Fill what was not given from a resumed run's manifest."""
        return replace(
            self,
            prompts=self.prompts or (None if has_workload(self) else previous.get("prompts_path")),
            profiles_file=self.profiles_file or previous.get("profiles_file"),
            profiles=self.profiles or ",".join(previous.get("profiles") or []) or None,
            model=self.model if self.model is not None else previous.get("model"),
            repeats=self.repeats or previous.get("repeats") or 1,
        )


def _check(c: RunConfig) -> None:
    """CliError for the first bad value, worded as the CLI's option."""
    if c.concurrency is not None and c.rate_rps is not None:
        raise CliError("give --concurrency or --rate, not both")
    if c.base_url and c.server_url:
        raise CliError("give --base-url (direct) or --server-url (through the service), not both")
    if c.gpu_energy not in ("auto", "on", "off"):
        raise CliError(f"--gpu-energy must be auto, on or off, not {c.gpu_energy!r}")
    if c.arrival not in ("constant", "poisson"):
        raise CliError(f"--arrival must be constant or poisson, not {c.arrival!r}")
    for name in ("concurrency", "repeats", "max_concurrency", "max_attempts", "max_429", "max_answer_chars", "max_errors"):
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, not {value}")
    for name in ("warmup", "cooldown"):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CliError(f"--{name} must be >= 0, not {value}")
    if c.rate_rps is not None and not _positive(c.rate_rps):
        raise CliError(f"--rate must be a number of requests per second > 0, not {c.rate_rps}")
    if not _positive(c.timeout_s):
        raise CliError(f"--timeout must be a number of seconds > 0, not {c.timeout_s}")
    if c.request_budget_s is not None and not _positive(c.request_budget_s):
        raise CliError(f"--request-budget must be a number of seconds > 0, not {c.request_budget_s}")
    if c.max_duration_s is not None and not _positive(c.max_duration_s):
        raise CliError(f"--max-duration must be a number of seconds > 0, not {c.max_duration_s}")
    for name, flag in (("warmup_s", "--warmup-seconds"), ("cooldown_s", "--cooldown-seconds")):
        value = getattr(c, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise CliError(f"{flag} must be a number of seconds >= 0, not {value}")
    if c.max_error_rate is not None and not (
        isinstance(c.max_error_rate, int | float) and 0 <= c.max_error_rate < 1
    ):
        raise CliError(f"--max-error-rate must be a fraction 0 <= rate < 1, not {c.max_error_rate}")
    if c.base_url and not c.base_url.startswith(("http://", "https://")):
        raise CliError("--base-url must start with http:// or https://, e.g. http://127.0.0.1:8000/v1")
    if c.base_url and not c.model:
        raise CliError("--base-url needs --model NAME (the model name the server serves)")
    if c.workers != "auto" and (not isinstance(c.workers, int) or isinstance(c.workers, bool) or c.workers < 1):
        raise CliError(f"--workers must be auto or a number >= 1, not {c.workers!r}")
    if c.workers != "auto" and c.workers > 1 and not c.base_url:
        raise CliError("--workers needs --base-url (worker processes drive the direct path)")
    if c.ray is not None and not c.base_url:
        raise CliError("--ray needs --base-url (Ray workers drive the direct path)")
    if c.ray is not None and importlib.util.find_spec("ray") is None:
        raise CliError("--ray needs Ray on this machine: pip install 'wattbench[ray]'")
    if Path(c.out).exists() and not Path(c.out).is_dir():
        raise CliError(f"--out {c.out} is a file; give a directory")
    if c.energy_batch not in (None, "server", "profile", "achieved"):
        raise CliError(f"--energy-batch must be server, achieved or profile, not {c.energy_batch!r}")
    if c.energy_batch == "server" and c.server_metrics == "off":
        raise CliError("--energy-batch server needs the server's metrics: drop --server-metrics off")
    if c.server_metrics not in ("auto", "off") and not c.server_metrics.startswith(("http://", "https://")):
        raise CliError(f"--server-metrics must be auto, off or a URL (http://host:8000/metrics), not "
                       f"{c.server_metrics!r}")
    if not (_positive(c.server_metrics_interval_s) and c.server_metrics_interval_s >= 0.01):
        raise CliError(f"--server-metrics-interval must be a number of seconds >= 0.01, not "
                       f"{c.server_metrics_interval_s}")
    bad = [u for u in c.gpu_metric_urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise CliError(f"--gpu-metrics takes comma-separated URLs (http://gpu-node:9400/metrics), not {bad[0]!r}")
    check_workload_options(c)


def _workers(text: str) -> int | str:
    """--workers: auto or a whole number (checked by _check)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a number >= 1, not {text!r}") from None


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0 and math.isfinite(value)


def parser() -> argparse.ArgumentParser:
    """The options of `wattbench run` (dest = RunConfig field)."""
    p = Parser(
        prog="wattbench run",
        description="Benchmark a model through the wattbench service (or directly against an OpenAI-compatible "
        "server with --base-url) and write outputs/ai_metrics_<timestamp>.csv (one row per request x "
        "deployment profile).",
    )
    p.add_argument("--server-url", help="a running service (default: start app.py on a free 127.0.0.1 port)")
    p.add_argument("--token", help="bearer token for the service (default: env WATTBENCH_API_TOKEN)")
    p.add_argument(
        "--base-url",
        help="direct path: send to this OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, TGI), "
        "e.g. http://127.0.0.1:8000/v1, instead of through the service",
    )
    p.add_argument("--api-key", help="with --base-url: the server's key (default: env OPENAI_API_KEY)")
    p.add_argument("--model", help="model sent with each request (service path default: the service's)")
    p.add_argument("--prompts", help="JSONL or CSV prompts file (default: the 12 graded prompts shipped)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, help="requests in flight at most (default 1: sequential)")
    load.add_argument("--rate", dest="rate_rps", type=float, help="send at this many requests per second instead")
    p.add_argument("--arrival", choices=("constant", "poisson"), default="constant",
                   help="with --rate: evenly spaced or Poisson arrivals (default constant)")
    p.add_argument("--max-concurrency", type=int, default=32, help="with --rate: cap on requests in flight")
    p.add_argument("--repeats", type=int, help="send each prompt this many times (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up requests first (default 1)")
    p.add_argument("--warmup-seconds", dest="warmup_s", type=float, default=0.0,
                   help="requests sent in the first S seconds are marked phase=warmup and left out of the "
                   "statistics")
    p.add_argument("--cooldown", type=int, default=0,
                   help="the last N requests to finish are marked phase=cooldown and left out of the statistics")
    p.add_argument("--cooldown-seconds", dest="cooldown_s", type=float, default=0.0,
                   help="requests still running in the last S seconds are marked phase=cooldown")
    p.add_argument("--max-duration", dest="max_duration_s", type=float,
                   help="stop cleanly after S seconds of sending (resume sends the rest)")
    p.add_argument("--max-errors", type=int, help="stop cleanly after N failed requests")
    p.add_argument("--max-error-rate", type=float,
                   help="stop cleanly when failed / finished requests exceeds this fraction (after 10 finished)")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="with --base-url: load-generating processes, or auto (default): one per 32 streams in "
                   "flight or 140 req/s, at most one per CPU and per 100 requests; one writer keeps the run file")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="with --base-url: run the --workers workers as Ray tasks (pip install 'wattbench[ray]'): "
                   "on a new local Ray runtime, or on the cluster at ADDRESS (auto, ray://head:10001)")
    p.add_argument("--no-stream", dest="stream", action="store_false",
                   help="service path: ask /chat for one JSON answer (no client-side TTFT) instead of events")
    p.add_argument("--profiles", help="comma-separated deployment profiles (default: T4_COLAB,A100_SIMULATED,L40S_SIMULATED,H100_LOW_CARBON; `wattbench simulate --list` shows all)")
    p.add_argument("--profiles-file", metavar="FILE",
                   help="your JSON file of gpus / datacenters / profiles, added to the built-in ones "
                   "(same fields as wattbench/data/profiles.json)")
    p.add_argument("--out", default="outputs", help="output directory (default outputs/)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID",
                   help="finish an interrupted run (default: the latest under --out/runs/), sending only what "
                   "is missing")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=300.0,
                   help="seconds per request attempt (default 300)")
    p.add_argument("--max-attempts", type=int, default=RetryPolicy.max_attempts,
                   help="attempts per request for 5xx / timeouts / dropped connections")
    p.add_argument("--request-budget", dest="request_budget_s", type=float,
                   help="seconds one request may take, all its attempts and waits together (default 3 x --timeout)"
                   "; a request over it is recorded as failed")
    p.add_argument("--max-answer-chars", type=int, default=100_000,
                   help="characters of each answer's text recorded (default 100000); a longer one is cut and its "
                   "length recorded (text_chars)")
    p.add_argument("--max-429", dest="max_429", type=int, default=RetryPolicy.max_rate_limited,
                   help=f"429 answers one request may get before it is recorded as failed (default "
                   f"{RetryPolicy.max_rate_limited})")
    p.add_argument("--seed", type=int, help="seed for jitter and Poisson arrivals")
    p.add_argument("--gpu-energy", choices=("auto", "on", "off"), default="auto",
                   help="measure the GPUs beside the runner with NVML (auto: when there are NVIDIA GPUs; on: "
                        "required; off: never) and give each request its share (the 'measured GPU' lens)")
    p.add_argument("--no-report", action="store_true", help="write only the CSV (no dashboards or report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--energy-batch", choices=("server", "achieved", "profile"), default=None,
                   help="simulated lens: run the roofline at the batch the server ran (its sampled running "
                        "requests while each request was in flight; the default when server metrics exist), at "
                        "the concurrency this run achieved (the default of `wattbench sweep` without them) or at "
                        "the profile's batch (the default of `run` without them)")
    p.add_argument("--server-metrics", default="auto", metavar="URL|auto|off",
                   help="the serving engine's Prometheus endpoint (vLLM, SGLang, TGI, llama.cpp), sampled "
                        "through the run: server_batch / server_queue per request and the report's SERVER VIEW "
                        "(default auto: the --base-url's origin + /metrics, when it answers)")
    p.add_argument("--server-metrics-interval", dest="server_metrics_interval_s", type=float, default=1.0,
                   help="seconds between samples of --server-metrics and --gpu-metrics (default 1)")
    p.add_argument("--gpu-metrics", metavar="URL[,URL...]",
                   help="dcgm-exporter endpoints of the server's GPUs (any node): their energy counters shared "
                        "among the requests in flight (the measured-GPU lens, gpu_energy_method dcgm)")
    p.add_argument("--calibrate-from-measured", action="store_true",
                   help="scale every profile's simulated lens by this run's measured / simulated energy on the "
                        "measured GPU model (assumes the same serving software on the other GPUs)")
    add_workload_arguments(p)
    return p


def retry_policy(config: RunConfig) -> RetryPolicy:
    """The retry policy and request budget the run's options ask for."""
    return RetryPolicy(max_attempts=config.max_attempts, max_rate_limited=config.max_429,
                       budget_s=config.request_budget_s)
