"""`wattbench run`: options, checks before sending, the service process, sending, writing the outputs."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.analysis.outputs import build_run_outputs, summary_line, write_csv
from wattbench.cli_support import CliError, Parser, one_line
from wattbench.redact import shown_url
from wattbench.runner.enrich import build_dataframe
from wattbench.runner.gpu_energy import MODES as GPU_ENERGY_MODES
from wattbench.runner.gpu_energy import GpuEnergyRun, GpuEnergyUnavailable, with_gpu_energy
from wattbench.runner.limiter import RetryPolicy
from wattbench.runner.plan import WorkItem, plan_requests
from wattbench.runner.prompts import (
    DEFAULT_PROMPTS_PATH,
    PromptsFileError,
    PromptSpec,
    load_prompts,
    prompts_sha256,
)
from wattbench.runner.sender import AuthRejectedError, BatchProcessor, ServiceGoneError, error_detail
from wattbench.runner.store import RunStore, RunStoreError, pending_items

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import pandas as pd


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="wattbench run",
        description="Benchmark a model through the wattbench service and "
        "write outputs/ai_metrics_<timestamp>.csv (one row per request x deployment profile).",
    )
    p.add_argument("--server-url", help="a running service (default: start app.py on a free 127.0.0.1 port)")
    p.add_argument("--token", help="bearer token for the service (default: env WATTBENCH_API_TOKEN)")
    p.add_argument("--model", help="LiteLLM model string sent with each request (default: the service's)")
    p.add_argument(
        "--prompts",
        help="JSONL or CSV prompts file (default: the 12 graded prompts shipped with wattbench)",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, help="requests in flight at most (default 1: sequential)")
    load.add_argument("--rate", type=float, help="send at this many requests per second instead")
    p.add_argument(
        "--arrival",
        choices=("constant", "poisson"),
        default="constant",
        help="with --rate: evenly spaced or Poisson arrivals (default constant)",
    )
    p.add_argument("--max-concurrency", type=int, default=32, help="with --rate: cap on requests in flight")
    p.add_argument("--repeats", type=int, help="send each prompt this many times (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up requests first (default 1)")
    p.add_argument(
        "--profiles", help="comma-separated deployment profiles (default: gpu_profiles.DEFAULT_PROFILES)"
    )
    p.add_argument(
        "--profiles-file",
        metavar="FILE",
        help="your JSON file of gpus / datacenters / profiles, added to the built-in ones "
        "(gpu_profiles.load_profiles(FILE))",
    )
    p.add_argument("--out", default="outputs", help="output directory (default outputs/)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="finish an interrupted run (default: the latest under --out/runs/), "
        "sending only what is missing",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request attempt (default 300)")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=RetryPolicy.max_attempts,
        help="attempts per request for 5xx / timeouts / dropped connections",
    )
    p.add_argument("--seed", type=int, help="seed for jitter and Poisson arrivals")
    p.add_argument("--gpu-energy", choices=GPU_ENERGY_MODES, default="auto",
                   help="measure the GPUs beside the runner with NVML (auto: when there are NVIDIA GPUs; on: "
                        "required; off: never) and give each request its share (the 'measured GPU' lens)")
    p.add_argument("--no-report", action="store_true", help="write only the CSV (no dashboards or report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@dataclass
class RunOptions:
    """The checked options of one `run`: a resumed run has its store, a new one only its manifest."""

    prompts: list[PromptSpec]
    profiles: dict[str, Any]
    model: str | None
    repeats: int
    manifest: dict[str, Any]
    store: RunStore | None = None


@dataclass
class RunResult:
    """What one `run` produced: exit_code 0 (every request served) or 1 (some failed, or the run stopped
    early: `stopped` says why; what was measured is saved)."""

    exit_code: int
    run_id: str
    csv_path: Path
    frame: pd.DataFrame
    stopped: str | None = None


def cli_run(argv: Sequence[str]) -> int:
    """`wattbench run ...`: returns 0 when every request was served, 1 when some failed or the run
    stopped early (what was measured is saved), 2 for bad input."""
    try:
        args = _parser().parse_args(list(argv))
        result = _execute(args, _prepare(args))
    except (CliError, RunStoreError, GpuEnergyUnavailable) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if result.stopped:
        print(f"error: {one_line(result.stopped)}", file=sys.stderr)
    return result.exit_code


def run_benchmark(server_url: str | None = None, **options: Any) -> RunResult:
    """`wattbench run` from Python (a notebook): keyword arguments are the command's long options with
    underscores (prompts="my.jsonl", concurrency=4, rate=2.0, repeats=3, profiles="T4_COLAB,A100_SIMULATED",
    out="outputs", resume="latest", token=..., no_report=True, ...). Raises ValueError for bad input."""
    args = _parser().parse_args([])
    unknown = [k for k in options if not hasattr(args, k)]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; use the long options of `wattbench run`"
        )
    args.server_url = server_url
    for key, value in options.items():
        setattr(args, key, value)
    if args.concurrency is not None and args.rate is not None:
        raise ValueError("give concurrency or rate, not both")
    try:
        return _execute(args, _prepare(args))
    except (CliError, GpuEnergyUnavailable) as exc:
        raise ValueError(str(exc)) from None


def _prepare(args: argparse.Namespace) -> RunOptions:
    """Check everything that can be checked before a request is sent."""
    for name in ("concurrency", "repeats", "max_concurrency", "max_attempts"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, not {value}")
    if args.warmup < 0:
        raise CliError(f"--warmup must be >= 0, not {args.warmup}")
    if args.rate is not None and not (args.rate > 0 and math.isfinite(args.rate)):
        raise CliError(f"--rate must be a number of requests per second > 0, not {args.rate}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise CliError(f"--timeout must be a number of seconds > 0, not {args.timeout}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file; give a directory")
    store, previous = _open_store(args)
    prompts_path = Path(args.prompts or previous.get("prompts_path") or DEFAULT_PROMPTS_PATH)
    try:
        prompts = load_prompts(prompts_path)
    except PromptsFileError as exc:
        raise CliError(str(exc)) from None
    profiles_file = args.profiles_file or previous.get("profiles_file")
    profiles = _select_profiles(
        args.profiles or ",".join(previous.get("profiles") or []) or None, profiles_file
    )
    model = args.model if args.model is not None else previous.get("model")
    repeats = args.repeats or previous.get("repeats") or 1
    manifest = {
        "prompts_path": str(prompts_path.resolve()),
        "prompts_sha256": prompts_sha256(prompts_path),
        "model": model,
        "profiles": list(profiles),
        "profiles_file": str(Path(profiles_file).resolve()) if profiles_file else None,
        "repeats": repeats,
    }
    if store is not None:
        try:
            store.check_matches(manifest)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
    return RunOptions(prompts, profiles, model, repeats, manifest, store)


def _open_store(args: argparse.Namespace) -> tuple[RunStore | None, dict[str, Any]]:
    if args.resume is None:
        return None, {}
    try:
        store = RunStore.open(args.out, None if args.resume == "latest" else args.resume)
        return store, store.manifest()
    except RunStoreError as exc:
        raise CliError(str(exc)) from None


def _select_profiles(spec: str | None, profiles_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The chosen deployment profiles by name (default: gpu_profiles.DEFAULT_PROFILES), from the built-in ones
    plus the user's `profiles_file`."""
    from wattbench.energy import hardware

    try:
        available = hardware.load_profiles(profiles_file)
    except hardware.DataFileError as exc:
        raise CliError(f"--profiles-file: {exc}") from None
    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else list(hardware.DEFAULT_PROFILES)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise CliError(
            f"unknown profile(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(sorted(available))}"
        )
    return {n: available[n] for n in names}


def _default_token() -> str | None:
    from wattbench.config import get_settings

    secret = get_settings().api_token
    return secret.get_secret_value() if secret is not None else None


def check_service(
    base_url: str, token: str | None, timeout_s: float = 5.0, model: str | None = None
) -> str | None:
    """Raise CliError unless GET <base_url>/health answers 200, says the model (`model`, else the service's
    default) is ready, and a token is at hand when the service wants one; return the model /health names."""
    import httpx

    shown = shown_url(base_url)
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/health", params={"model": model} if model else None,
                         timeout=timeout_s)
    except httpx.InvalidURL as exc:
        raise CliError(
            f"--server-url {shown!r} is not a valid URL ({exc}); e.g. http://127.0.0.1:8000"
        ) from None
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the service at {shown} ({type(exc).__name__}: {exc}); start it with "
            "`wattbench serve` or leave out --server-url to let run start one"
        ) from None
    if resp.status_code != 200:
        raise CliError(
            f"the service at {shown} answered GET /health with HTTP {resp.status_code}: "
            f"{error_detail(resp.content)}"
        )
    try:
        health = resp.json()
    except ValueError:
        health = {}
    health = health if isinstance(health, dict) else {}
    if health.get("ready") is False:
        raise CliError(
            f"the service at {shown} is up but its model is not ready: "
            f"{health.get('detail') or 'see the service log'}"
        )
    if health.get("auth_required") and not token:
        raise CliError(
            f"the service at {shown} wants a bearer token: set WATTBENCH_API_TOKEN or pass --token"
        )
    model = health.get("model")
    return model if isinstance(model, str) and model else None


def _execute(args: argparse.Namespace, options: RunOptions) -> RunResult:
    """Send what is missing, then build the CSV (and the report) from the whole run file."""
    items = plan_requests(options.prompts, options.repeats)
    store, stopped = options.store, None
    todo = pending_items(items, store.load_records()) if store is not None else items
    if todo:
        with GpuEnergyRun(args.gpu_energy) as gpu:  # NVML, when the runner's machine has NVIDIA GPUs
            store, stopped = _send(args, options, items, todo)
        gpu.save(store)
    assert store is not None
    records = with_gpu_energy(store.directory, store.load_records())
    df = build_dataframe(records, options.profiles, run_id=store.run_id)
    try:
        csv_path = write_csv(df, Path(args.out))
    except OSError as exc:
        raise CliError(
            f"cannot write the CSV in {args.out} ({exc.strerror or exc}); every request is kept in "
            f"{store.records_path}: free space and rerun with --resume {store.run_id}"
        ) from None
    print(
        f"wrote {csv_path} ({df['request_id'].nunique()} requests x {len(options.profiles)} profiles = "
        f"{len(df)} rows; run file {store.records_path})"
    )
    if not args.no_report:
        build_run_outputs(df, Path(args.out), csv_path)
    print(summary_line(df))
    code = 1 if stopped or not bool(df["success"].all()) else 0
    return RunResult(code, store.run_id, csv_path, df, stopped)


def _send(
    args: argparse.Namespace, options: RunOptions, items: list[WorkItem], todo: list[WorkItem]
) -> tuple[RunStore, str | None]:
    """Reach (or start) the service, send `todo` and append each record to the run file (created now for a new
    run). Returns the store and why the run stopped early (None when it did not)."""
    from wattbench.runner.service_process import ServiceProcess, ServiceStartError

    token = args.token or _default_token()
    if args.server_url:
        service_model = check_service(args.server_url, token, model=options.model)
        return _send_to(args.server_url, token, service_model, args, options, items, todo)
    try:
        with ServiceProcess(log_path=Path(args.out) / "service.log") as service:
            service_model = check_service(service.url, token, model=options.model)
            return _send_to(service.url, token, service_model, args, options, items, todo)
    except ServiceStartError as exc:
        lines = str(exc).splitlines()
        raise CliError(
            lines[0] + (f" (last log line: {lines[-1].strip()})" if len(lines) > 1 else "")
        ) from None


def _send_to(
    url: str,
    token: str | None,
    service_model: str | None,
    args: argparse.Namespace,
    options: RunOptions,
    items: list[WorkItem],
    todo: list[WorkItem],
) -> tuple[RunStore, str | None]:
    try:
        store = options.store or RunStore.create(args.out, options.manifest)
    except OSError as exc:
        raise CliError(f"cannot create the run under --out {args.out} ({exc.strerror or exc})") from None
    processor = BatchProcessor(
        url,
        token=token,
        concurrency=args.max_concurrency if args.rate else (args.concurrency or 1),
        rate_rps=args.rate,
        arrival=args.arrival,
        warmup=args.warmup,
        model=options.model,
        service_model=service_model,
        timeout_s=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        seed=args.seed,
        on_record=store.append,
        progress=not args.no_progress,
        run_id=store.run_id,
    )
    print(
        f"run {store.run_id}: sending {len(todo)} of {len(items)} requests to {shown_url(url)}"
        + (" (resumed)" if options.store is not None else ""),
        flush=True,
    )
    try:
        processor.run_sync(todo, done_before=len(items) - len(todo), total=len(items))
    except (ServiceGoneError, AuthRejectedError, RunStoreError) as exc:
        return store, str(exc)
    finally:
        store.close()
    return store, None
