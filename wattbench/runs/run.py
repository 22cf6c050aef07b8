"""`wattbench run`: options, checks before sending, the service process, sending, writing the outputs."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattbench.analysis.outputs import build_run_outputs, summary_line, write_csv
from wattbench.cli_support import CliError, one_line
from wattbench.client.service_process import ServiceProcess, ServiceStartError
from wattbench.config import ConfigError, get_settings
from wattbench.energy import hardware
from wattbench.limits import MAX_PROMPT_CHARS
from wattbench.loadgen.ray_workers import RayPool  # Ray itself is imported only when --ray is given
from wattbench.redact import shown_url
from wattbench.runs.config import RunConfig, retry_policy
from wattbench.client.direct import check_server, direct_transport
from wattbench.client.transport import ServiceTransport, Transport
from wattbench.analysis.enrich import build_dataframe
from wattbench.runs.gpu_energy import GpuEnergyRun, GpuEnergyUnavailable, with_gpu_energy
from wattbench.loadgen.plan import Schedule, WorkItem, plan_requests
from wattbench.workloads.prompts import (
    DEFAULT_PROMPTS_PATH,
    PromptsFileError,
    PromptSpec,
    load_prompts,
    prompts_sha256,
)
from wattbench.loadgen.sender import (
    AuthRejectedError,
    BatchProcessor,
    RunStopped,
    ServiceGoneError,
    StopRules,
    error_detail,
)
from wattbench.runs.store import RecordSinkError, RunStore, pending_items
from wattbench.telemetry.session import ServerTelemetry, TelemetryUnavailable, server_samples, with_server_metrics
from wattbench.loadgen.workers import WorkerError, auto_workers, run_in_workers, usable_cpus
from wattbench.workloads.sources import build_workload, has_workload, resolve_enforce, write_workload

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import pandas as pd


@dataclass
class RunOptions:
    """The checked options of one `run`: the config (what was not given filled in from a resumed run's
    manifest), prompts and profiles loaded; a resumed run has its store, a new one only its manifest."""

    config: RunConfig
    prompts: list[PromptSpec]
    profiles: dict[str, Any]
    manifest: dict[str, Any]
    store: RunStore | None = None
    should_stop: Callable[[], object] | None = None  # a caller's stop (e.g. Ctrl-C in a sweep): a reason or False
    workers: int = 1  # load-generating processes this session (choose_workers)
    workers_reason: str = ""  # how they were chosen, in words
    observe: Callable[[Any], None] | None = None  # called with each record after it is stored (sweep progress)
    telemetry: ServerTelemetry = field(default_factory=ServerTelemetry)  # server metrics / dcgm (none: inactive)

    @property
    def model(self) -> str | None:
        return self.config.model

    @property
    def repeats(self) -> int:
        return self.config.repeats or 1


@dataclass
class RunResult:
    """What one `run` produced: exit_code 0 (every request served) or 1 (some failed, or the run stopped
    on an error rule); `stopped` says why a run stopped early (what was measured is saved)."""

    exit_code: int
    run_id: str
    csv_path: Path
    frame: pd.DataFrame
    stopped: str | None = None


@dataclass
class _Sent:
    """What sending produced: the store, why it stopped early (None: it did not), whether that stop was a
    clean one (a stop rule), and the client's CPU seconds per request sent."""

    store: RunStore
    stopped: str | None = None
    clean_stop: bool = False
    client_cpu_s_per_request: float | None = None
    workers: int = 1
    ray: bool = False
    workers_reason: str = ""
    send_wall_s: float | None = None  # how long sending took (the client's busy share is its CPU over this)
    client_cpu_s: float | None = None  # the client's CPU seconds over all its processes


def cli_run(argv: Sequence[str]) -> int:
    """`wattbench run ...`: returns 0 when every request was served, 1 when some failed or the run
    stopped on an error (what was measured is saved), 2 for bad input."""
    try:
        config = RunConfig.from_argv(argv)
        result = execute(config)
    except (CliError, RecordSinkError, GpuEnergyUnavailable, ConfigError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out unwritable or full at a step not named above: one line, the run file is kept
        print(f"error: {one_line(out_error(_out_of(argv), exc))}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    return result.exit_code


def run_benchmark(server_url: str | None = None, **options: Any) -> RunResult:
    """`wattbench run` from Python (a notebook): keyword arguments are the command's long options with
    underscores (prompts="my.jsonl", concurrency=4, rate=2.0, repeats=3, profiles="T4_COLAB,A100_SIMULATED",
    out="outputs", resume="latest", token=..., base_url=..., max_duration=60, no_report=True, ...) or the
    RunConfig field names (rate_rps=2.0, timeout_s=...). Raises ValueError for bad input."""
    try:
        return execute(RunConfig.from_options(server_url, **options))
    except (CliError, GpuEnergyUnavailable) as exc:
        raise ValueError(str(exc)) from None


def execute(config: RunConfig, *, should_stop: Callable[[], object] | None = None,
            observe: Callable[[Any], None] | None = None) -> RunResult:
    """Check the config against what it names (prompts, profiles, a run to resume), then run it.
    should_stop / observe: see RunOptions (what `wattbench sweep` passes)."""
    return _execute(replace(_prepare(config), should_stop=should_stop, observe=observe))


def _prepare(config: RunConfig) -> RunOptions:
    """Check everything that can be checked before a request is sent."""
    check_writable(config.out)
    store, previous = _open_store(config)
    config = config.with_defaults_from(previous)
    workload: dict[str, Any] = {}
    if has_workload(config):  # synthetic / dataset / trace: written once as a prompts file, then used as one
        specs, workload = build_workload(config)
        prompts_path = write_workload(specs, workload, config.out)
    else:
        prompts_path = Path(config.prompts or DEFAULT_PROMPTS_PATH)
    try:
        prompts = load_prompts(prompts_path)
        if not config.base_url:  # through the service: its limit (a server reached directly has its own)
            check_prompt_sizes(prompts, prompts_path)
    except PromptsFileError as exc:
        raise CliError(str(exc)) from None
    profiles = _select_profiles(config.profiles, config.profiles_file)
    manifest = {
        "prompts_path": str(prompts_path.resolve()),
        "prompts_sha256": prompts_sha256(prompts_path),
        "model": config.model,
        "model_note": _model_note(config),
        "profiles": list(profiles),
        "profiles_file": str(Path(config.profiles_file).resolve()) if config.profiles_file else None,
        "repeats": config.repeats,
        "path": config.path,
        "base_url": shown_url(config.base_url) if config.base_url else None,
        "requested_concurrency": config.in_flight,
        "requested_rate_rps": config.rate_rps,
        "warmup_s": config.warmup_s,
        "cooldown_s": config.cooldown_s,
        "cooldown": config.cooldown,
        "energy_batch": config.energy_batch,
        "energy_batch_fallback": config.energy_batch_fallback,
        "calibrate_from_measured": config.calibrate_from_measured,
        **workload,
    }
    if store is not None:
        try:
            store.check_matches(manifest)
        except RecordSinkError as exc:
            raise CliError(str(exc)) from None
    return RunOptions(config, prompts, profiles, manifest, store)


def _model_note(config: RunConfig) -> str | None:
    """Why the service's default model is not the seed's Gemini model (its successor, config.py), for a run
    that names no model, as this environment's settings say (those of the service that run or the notebook
    starts); None with --model or --base-url."""
    if config.model or config.base_url:
        return None
    return get_settings().default_model_note()


def _open_store(config: RunConfig) -> tuple[RunStore | None, dict[str, Any]]:
    if config.resume is None:
        return None, {}
    try:
        store = RunStore.open(config.out, None if config.resume == "latest" else config.resume)
        return store, store.manifest()
    except RecordSinkError as exc:
        raise CliError(str(exc)) from None


def _select_profiles(spec: str | None, profiles_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The chosen deployment profiles by name (default: gpu_profiles.DEFAULT_PROFILES), from the built-in ones
    plus the user's `profiles_file`."""
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


def _execute(options: RunOptions) -> RunResult:
    """Send what is missing, then build the CSV (and the report) from the whole run file."""
    config = options.config
    items = plan_requests(options.prompts, options.repeats)
    store = options.store
    todo = pending_items(items, store.records()) if store is not None else items
    sent = None
    if todo:
        options.workers, options.workers_reason = choose_workers(config, len(todo))
        options.manifest["workers"] = options.workers
        print(f"workers: {processes(options.workers)} ({options.workers_reason})", flush=True)
        with GpuEnergyRun(config.gpu_energy) as gpu:  # NVML, when the runner's machine has NVIDIA GPUs
            sent = _send(options, items, todo)
        gpu.save(sent.store)
        options.telemetry.save(sent.store)  # dcgm shares of this session
    store = sent.store if sent is not None else store
    assert store is not None
    load = {**options.manifest, **store.manifest()}  # a resumed run keeps the load it was started with
    records = with_server_metrics(store.directory, with_gpu_energy(store.directory, store.records()))
    df = build_dataframe(records, options.profiles, run_id=store.run_id, load=load)
    try:
        csv_path = write_csv(df, Path(config.out))
    except OSError as exc:
        raise CliError(
            f"cannot write the CSV in {config.out} ({exc.strerror or exc}); every request is kept in "
            f"{store.records_path}: free space and rerun with --resume {store.run_id}"
        ) from None
    print(
        f"wrote {csv_path} ({df['request_id'].nunique()} requests x {len(options.profiles)} profiles = "
        f"{len(df)} rows; run file {store.records_path})"
    )
    notes = [n for n in (options.manifest.get("model_note"),) if n] + _load_notes(sent, store, len(items))
    for note in notes:
        print(note)
    if not config.no_report:
        build_run_outputs(df, Path(config.out), csv_path, notes=notes,
                          server_samples={store.run_id: server_samples(store.directory)})
    print(summary_line(df))
    stopped = sent.stopped if sent is not None else None
    if stopped and not sent.clean_stop:  # type: ignore[union-attr]
        print(f"error: {one_line(stopped)}", file=sys.stderr)
    failed = not bool(df["success"].all())
    code = 1 if failed or (stopped and not sent.clean_stop) else 0  # type: ignore[union-attr]
    return RunResult(code, store.run_id, csv_path, df, stopped)


def _load_notes(sent: _Sent | None, store: RunStore, planned: int) -> list[str]:
    """What the report says about this session's sending: why it stopped early, and the client's CPU."""
    if sent is None:
        return []
    notes = []
    if sent.stopped:
        left = planned - len({r["key"] for r in store.records() if r.get("success")})
        notes.append(f"{sent.stopped}; {left} of {planned} requests not served yet: rerun with "
                     f"--resume {store.run_id} to send them")
    if sent.client_cpu_s_per_request is not None:
        where = f"{sent.workers} Ray worker{'s' if sent.workers > 1 else ''}" if sent.ray else processes(sent.workers)
        busy = client_busy(sent)
        notes.append(f"client CPU: {sent.client_cpu_s_per_request * 1000:.2f} ms per request ({where}"
                     + (f"; {sent.workers_reason}" if sent.workers_reason else "")
                     + (f"; busy {busy:.0%} of the {sent.send_wall_s:.1f} s of sending" if busy is not None else "")
                     + ")")
        if busy is not None and busy >= CLIENT_SATURATED:
            more = "" if sent.ray else f": rerun with --workers {sent.workers + 1} or more, or on a bigger machine"
            notes.append(f"THE CLIENT WAS THE LIMIT: its CPU was busy {busy:.0%} of the sending time, so its "
                         f"timings include its own queueing{more}")
    return notes


#: The client's CPU over its sending time (all its processes) from which the client itself is the limit: its
#: event loops were rarely idle, so a chunk's timestamp waited for the loop.
CLIENT_SATURATED = 0.85


def processes(n: int) -> str:
    return f"{n} load-generating process{'es' if n != 1 else ''}"


def client_busy(sent: _Sent) -> float | None:
    """The client's CPU seconds over (sending time x its processes); None when not measured."""
    if sent.client_cpu_s is None or not sent.send_wall_s or sent.ray:
        return None
    return sent.client_cpu_s / (sent.send_wall_s * max(1, sent.workers))


def choose_workers(config: RunConfig, requests: int, cpus: int | None = None) -> tuple[int, str]:
    """The load-generating processes of this session and why: --workers N as given; auto on the direct path by
    loadgen.workers.auto_workers over `cpus` (default: the CPUs this process may use); one on the service path
    (worker processes drive the direct path)."""
    if config.workers != "auto":
        return config.workers, f"--workers {config.workers}"
    if not config.base_url:
        return 1, "the service path"
    if config.trace:
        return 1, "a trace is replayed by one process"
    n, why = auto_workers(config.in_flight, config.rate_rps, requests, cpus or usable_cpus())
    return n, f"auto: {why}"


def _send(options: RunOptions, items: list[WorkItem], todo: list[WorkItem]) -> _Sent:
    """Reach (or start) the service, or the server itself with --base-url; send `todo` and append each record
    to the run file (created now for a new run)."""
    config = options.config
    if config.base_url:
        api_key = config.api_key or os.environ.get("OPENAI_API_KEY") or None
        models = check_server(config.base_url, api_key)
        _resolve_telemetry(options)
        enforce = resolve_enforce(config.output_enforce, models)
        options.manifest["output_enforce"] = enforce
        transport = direct_transport(config, api_key, output_enforce=enforce)
        return _send_to(transport, None, options, items, todo)
    options.manifest["output_enforce"] = "max-tokens" if config.output_enforce != "off" else "off"
    _resolve_telemetry(options)
    token = config.token or _default_token()
    if config.server_url:
        service_model = check_service(config.server_url, token, model=options.model)
        return _send_to(_service_transport(config.server_url, token, options), service_model, options, items, todo)
    if options.store is None:  # on disk before the service starts: a run killed at any point can be resumed
        options.store = _create_store(config, options)
    try:
        with ServiceProcess(log_path=Path(config.out) / "service.log") as service:
            service_model = check_service(service.url, token, model=options.model)
            return _send_to(_service_transport(service.url, token, options), service_model, options, items, todo)
    except ServiceStartError as exc:
        lines = str(exc).splitlines()
        raise CliError(
            lines[0] + (f" (last log line: {lines[-1].strip()})" if len(lines) > 1 else "")
        ) from None


def _resolve_telemetry(options: RunOptions) -> None:
    """The server-metrics and dcgm endpoints this run samples, checked once before sending (CliError for one
    given explicitly that does not answer); named in the manifest."""
    config = options.config
    try:
        options.telemetry = ServerTelemetry.resolve(config.server_metrics, config.base_url, config.gpu_metric_urls,
                                                    interval_s=config.server_metrics_interval_s)
    except TelemetryUnavailable as exc:
        raise CliError(str(exc)) from None
    options.manifest["server_metrics"] = shown_url(options.telemetry.server_url) if options.telemetry.server_url \
        else None
    options.manifest["server_engine"] = options.telemetry.engine
    options.manifest["gpu_metrics"] = [shown_url(u) for u in options.telemetry.gpu_urls] or None


def _service_transport(url: str, token: str | None, options: RunOptions) -> ServiceTransport:
    return ServiceTransport(url, token=token, model=options.model, stream=options.config.stream)


def _send_to(
    transport: Transport,
    service_model: str | None,
    options: RunOptions,
    items: list[WorkItem],
    todo: list[WorkItem],
) -> _Sent:
    config = options.config
    store = options.store or _create_store(config, options)
    trace = bool(items) and all(item.spec.arrival_s is not None for item in items)  # replayed at its own pace
    schedule = Schedule(concurrency=config.max_concurrency if trace else config.in_flight, rate_rps=config.rate_rps,
                        arrival="trace" if trace else config.arrival, warmup=config.warmup, seed=config.seed)
    processor = BatchProcessor(
        transport,
        schedule=schedule,
        retry=retry_policy(config),
        stop=StopRules(config.max_duration_s, config.max_errors, config.max_error_rate),
        on_record=store.append if options.observe is None else _and_then(store.append, options.observe),
        should_stop=options.should_stop,
        timeout_s=config.timeout_s,
        run_id=store.run_id,
        service_model=service_model,
        max_answer_chars=config.max_answer_chars,
        progress=not config.no_progress,
    )
    url = transport.base_url
    print(
        f"run {store.run_id}: sending {len(todo)} of {len(items)} requests to {shown_url(url)}"
        + (" (resumed)" if len(todo) < len(items) else ""),
        flush=True,
    )
    sent = _Sent(store, workers_reason=options.workers_reason)
    t0 = time.monotonic()
    # the server metrics / dcgm sampler: a thread, off the event loop that times the requests
    with options.telemetry.sampling(store.directory, session=uuid.uuid4().hex[:8]):
        try:
            if config.ray is not None:
                sent.client_cpu_s_per_request = run_in_workers(processor, todo, options.workers, store,
                                                               RayPool(config.ray))
                sent.workers, sent.ray = options.workers, True
            elif options.workers > 1:
                sent.client_cpu_s_per_request = run_in_workers(processor, todo, options.workers, store)
                sent.workers = options.workers
            else:
                records = processor.run_sync(todo, done_before=len(items) - len(todo), total=len(items))
                sent.client_cpu_s_per_request = processor.client_cpu_s / max(1, len(records))
        except RunStopped as exc:
            sent.stopped, sent.clean_stop = str(exc), True
            sent.client_cpu_s_per_request = processor.client_cpu_s / max(1, processor.finished)
        except RecordSinkError as exc:  # the run file cannot be written (disk full): stop, exit 2; it keeps
            # what it has
            raise CliError(str(exc)) from None
        except (ServiceGoneError, AuthRejectedError, WorkerError) as exc:
            sent.stopped = str(exc)
        finally:
            store.close()
    sent.send_wall_s, sent.client_cpu_s = time.monotonic() - t0, processor.client_cpu_s
    return sent


def _and_then(first: Callable[[Any], None], then: Callable[[Any], None]) -> Callable[[Any], None]:
    """on_record that stores a record (first) and then shows it (then)."""
    def both(record: Any) -> None:
        first(record)
        then(record)

    return both


def _create_store(config: RunConfig, options: RunOptions) -> RunStore:
    try:
        return RunStore.create(config.out, options.manifest)
    except OSError as exc:
        raise CliError(f"cannot create the run under --out {config.out} ({exc.strerror or exc})") from None


def check_writable(out: str | os.PathLike[str]) -> None:
    """CliError (one line) unless --out is, or can be created as, a directory this process can write in.
    Creates nothing: an existing directory gets a probe file (removed at once), a missing one is checked at
    its nearest existing parent."""
    path = Path(out).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        if existing == path:
            probe = path / f".wattbench-write-check-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(existing))
    except OSError as exc:
        raise CliError(f"--out {out} cannot be written ({exc.strerror or type(exc).__name__}"
                       f"{': ' + str(exc.filename) if exc.filename else ''}); give a writable directory") from None


def _out_of(argv: Sequence[str]) -> str:
    """The --out of a command line (for an error line written after RunConfig is out of reach)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--out="):
            return arg.split("=", 1)[1]
    return RunConfig.out


def out_error(out: str, exc: OSError) -> str:
    """One line for a write that failed under --out after the run began (what was recorded stays on disk)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"cannot write under --out {out}: {exc.strerror or type(exc).__name__}{where}; every request "
            "recorded so far is kept in its run file: free space or fix permissions, then rerun with --resume")


def check_prompt_sizes(prompts: Sequence[PromptSpec], source: Path) -> None:
    """PromptsFileError for a prompt the service would refuse (over MAX_PROMPT_CHARS), before anything is sent."""
    for spec in prompts:
        if len(spec.prompt) > MAX_PROMPT_CHARS:
            raise PromptsFileError(
                f"{source}: prompt {spec.prompt_id!r} has {len(spec.prompt)} characters; the service accepts at "
                f"most {MAX_PROMPT_CHARS}: shorten it or split it"
            )
