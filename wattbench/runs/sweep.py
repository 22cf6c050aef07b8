"""`wattbench sweep`: one workload at a list of loads (or GuideLLM-style auto), for one model or several, each
load point a complete, resumable `wattbench run` inside one output directory; then one CSV, the report and the
dashboards (with the frontier) over every point.

    <out>/sweep.json                 the plan and each point's state (pending, stopped, done), rewritten atomically
    <out>/workloads/                 the workload, built once (workloads/sources.py)
    <out>/points/<model>__<load>/    each point's run: runs/<run_id>/ (the run file), its CSV
    <out>/ai_metrics_<UTC>.csv       every point together; report.txt, report.md, the seven dashboards

Each point's simulated energy uses the batch the server ran (its sampled running requests, `--energy-batch
server`) when the server's metrics answer, else the batch that point achieved (`--energy-batch achieved`). A point that fails
its SLOs badly (p90 TTFT or ITL above --stop-slo-factor x the SLO) or whose errors pile up (more than
--stop-error-rate of its requests; also its stop rule while running) ends that model's sweep: higher loads are
skipped. The first Ctrl-C ends the current point cleanly (requests in flight are finished and recorded);
`wattbench sweep ... --resume` goes on from there. A second Ctrl-C aborts at once (what was recorded is kept).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wattbench.analysis.frontier import point_table
from wattbench.analysis.tables import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S
from wattbench.cli_support import CliError, Parser, one_line, positive_float, positive_int
from wattbench.client.service_process import ServiceProcess, ServiceStartError
from wattbench.runs.config import RunConfig
from wattbench.runs.config import parser as run_parser
from wattbench.runs.run import execute
from wattbench.runs.sweep_outputs import write_sweep_outputs
from wattbench.runs.sweep_progress import PointProgress
from wattbench.runs.gpu_energy import GpuEnergyUnavailable
from wattbench.workloads.prompts import DEFAULT_PROMPTS_PATH, PromptsFileError, load_prompts
from wattbench.runs.store import RecordSinkError
from wattbench.workloads.sources import build_workload, has_workload, write_workload

SWEEP_JSON = "sweep.json"


@dataclass
class Point:
    """One load point of one model: concurrency or rate (auto: 'sync' / 'throughput' probes first)."""

    label: str
    model: str | None
    concurrency: int | None = None
    rate_rps: float | None = None
    kind: str = "point"  # point | sync | throughput | trace
    status: str = "pending"  # pending | stopped | done | skipped
    run_id: str | None = None
    csv: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        model = (self.model or "default").replace("/", "_").replace(":", "_")
        return f"{model}__{self.label}"


@dataclass(frozen=True)
class SweepOptions:
    concurrency: list[int] | None
    rate: list[float] | None
    auto: bool
    points: int
    requests_per_point: int
    models: list[str | None]
    interleave: bool
    slo_ttft_s: float
    slo_tpot_s: float
    stop_slo_factor: float
    stop_error_rate: float
    resume: bool
    given: frozenset[str] = frozenset()  # the sweep options given on the command line (checked on --resume)


def _list_of(kind: type, flag: str):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise CliError(f"{flag} takes a comma-separated list of numbers, e.g. 1,8,32; not {text!r}") from None
        if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
            raise CliError(f"{flag} values must be > 0, not {text!r}")
        return sorted(set(values))
    return parse


def sweep_parser() -> Parser:
    p = Parser(prog="wattbench sweep", add_help=False, allow_abbrev=False,
               description="Run one workload at several loads (and models) and write the frontier. Every option "
               "of `wattbench run` works too (target, workload, profiles, --out, stop rules).")
    p.add_argument("--concurrency", type=_list_of(int, "--concurrency"), help="loads: closed-loop users, e.g. 1,8,32")
    p.add_argument("--rate", type=_list_of(float, "--rate"), help="loads: requests per second, e.g. 1,2,4")
    p.add_argument("--auto", action="store_true",
                   help="GuideLLM-style: concurrency 1 (synchronous), then --max-concurrency (saturating), then "
                        "--points rates evenly between their throughputs")
    p.add_argument("--points", type=positive_int, default=4, help="with --auto: rates between (default 4)")
    p.add_argument("--requests-per-point", type=positive_int, default=50, help="requests at each point (default 50)")
    p.add_argument("--models", help="comma-separated models: the same workload sent to each")
    p.add_argument("--interleave", action="store_true",
                   help="with --models: point by point, every model in turn (same minutes of network weather); "
                        "default: one model's whole sweep after another")
    p.add_argument("--slo-ttft-s", type=positive_float, default=DEFAULT_SLO_TTFT_S,
                   help=f"p90 TTFT target (default {DEFAULT_SLO_TTFT_S})")
    p.add_argument("--slo-tpot-s", type=positive_float, default=DEFAULT_SLO_TPOT_S,
                   help=f"p90 ITL target (default {DEFAULT_SLO_TPOT_S})")
    p.add_argument("--stop-slo-factor", type=float, default=4.0,
                   help="skip higher loads after a point whose p90 TTFT or ITL exceeds this x the SLO (default 4; "
                        "0: never)")
    p.add_argument("--stop-error-rate", type=float, default=0.5,
                   help="skip higher loads after a point with more than this fraction failed (default 0.5)")
    p.add_argument("--resume", action="store_true", help="go on with the sweep in --out (its sweep.json)")
    p.add_argument("-h", "--help", action="store_true")
    return p


def parse_sweep(argv: Sequence[str]) -> tuple[SweepOptions, RunConfig]:
    """The sweep's own options and the run options every point shares (CliError for bad input)."""
    args, rest = sweep_parser().parse_known_args(list(argv))
    if args.help:
        print(sweep_parser().format_help())
        print("\nand the options of `wattbench run`:\n")
        print(run_parser().format_help().split("options:", 1)[-1])
        raise SystemExit(0)
    listed = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else []
    if listed and any(a == "--model" or a.startswith("--model=") for a in rest):
        raise CliError("give --model or --models, not both")
    # every other option, checked as `run` checks it (with the first of --models as its model)
    base = RunConfig.from_argv(rest + (["--model", listed[0]] if listed else []))
    loads = [n for n, v in (("--concurrency", args.concurrency), ("--rate", args.rate), ("--auto", args.auto)) if v]
    if len(loads) > 1:
        raise CliError(f"give one of --concurrency LIST, --rate LIST or --auto, not {' and '.join(loads)}")
    if not loads and not base.trace and not args.resume:
        raise CliError("give the loads: --concurrency 1,8,32, --rate 1,2,4 or --auto (or --trace FILE)")
    if loads and base.trace:
        raise CliError("--trace is replayed at its own pace: drop " + loads[0])
    if args.stop_slo_factor < 0 or not 0 <= args.stop_error_rate <= 1:
        raise CliError("--stop-slo-factor must be >= 0 and --stop-error-rate a fraction 0..1")
    models: list[str | None] = list(listed) if listed else [base.model]
    if base.base_url and not all(models):
        raise CliError("--base-url needs --model NAME or --models A,B")
    flags = {action.dest: action.option_strings[0] for action in sweep_parser()._actions if action.option_strings}
    given = frozenset(flag for flag in flags.values()
                      if any(a == flag or a.startswith(flag + "=") for a in argv))
    options = SweepOptions(args.concurrency, args.rate, args.auto, args.points, args.requests_per_point, models,
                           args.interleave, args.slo_ttft_s, args.slo_tpot_s, args.stop_slo_factor,
                           args.stop_error_rate, args.resume, given)
    return options, base


def plan_points(options: SweepOptions, trace: bool) -> list[Point]:
    """The points known before sending (auto: the two probes; the rates between come after them)."""
    per_model: list[list[Point]] = []
    for model in options.models:
        if trace:
            pts = [Point("trace", model, kind="trace")]
        elif options.auto:
            pts = [Point("sync", model, concurrency=1, kind="sync"), Point("throughput", model, kind="throughput")]
        elif options.rate:
            pts = [Point(f"r{r:g}", model, rate_rps=r) for r in options.rate]
        else:
            pts = [Point(f"c{c}", model, concurrency=c) for c in options.concurrency or [1]]
        per_model.append(pts)
    if options.interleave:
        return [p for group in zip(*per_model, strict=True) for p in group]
    return [p for pts in per_model for p in pts]


def resumed_options(options: SweepOptions, saved: dict[str, Any], points: list[Point], trace: bool,
                    out: Path) -> SweepOptions:
    """The options of a resumed sweep: its saved ones; an option given again must say the same (CliError
    naming it and what the sweep in `out` has, not a point run silently at the old load, issue 20)."""

    def refuse(flag: str, value: str, has: str) -> CliError:
        given_as = f"{flag} {value}" if value else flag
        return CliError(f"{given_as} is not the sweep's in {out} (it has {has}): drop {flag} to resume it as it "
                        "was, or choose another --out for a new sweep")

    given = options.given
    n_saved = int(saved.get("requests_per_point") or options.requests_per_point)
    if "--requests-per-point" in given and options.requests_per_point != n_saved:
        raise refuse("--requests-per-point", str(options.requests_per_point), str(n_saved))
    saved_models = list(dict.fromkeys(p.model for p in points))
    if "--models" in given and sorted(map(str, options.models)) != sorted(map(str, saved_models)):
        raise refuse("--models", ",".join(map(str, options.models)), ",".join(map(str, saved_models)))
    load_flags = [f for f in ("--concurrency", "--rate", "--auto") if f in given]
    if load_flags and not trace:
        planned = [(p.label, p.model) for p in plan_points(replace(options, models=saved_models), trace)]
        have = [(p.label, p.model) for p in points]
        auto = bool(saved.get("auto"))
        same = options.auto == auto and (set(planned) <= set(have) if auto else sorted(planned) == sorted(have))
        if not same:
            value = {"--concurrency": ",".join(map(str, options.concurrency or [])),
                     "--rate": ",".join(f"{r:g}" for r in options.rate or []), "--auto": ""}[load_flags[0]]
            labels = ", ".join(dict.fromkeys(label for label, _ in have))
            raise refuse(load_flags[0], value, "the points " + labels + (" (--auto)" if auto else ""))
    return replace(options, requests_per_point=n_saved,
                   points=int(saved.get("auto_points") or options.points), auto=bool(saved.get("auto", options.auto)))


def auto_rates(sync_rps: float, max_rps: float, n: int) -> list[float]:
    """n rates evenly between the synchronous and the saturating throughput (both excluded)."""
    if not (max_rps > sync_rps > 0):
        return []
    return [round(sync_rps + (max_rps - sync_rps) * i / (n + 1), 4) for i in range(1, n + 1)]


class Sweep:
    """The sweep's state on disk (sweep.json) and the loop over its points."""

    def __init__(self, options: SweepOptions, base: RunConfig) -> None:
        self.options, self.base = options, base
        self.out = Path(base.out)
        self.state_path = self.out / SWEEP_JSON
        self.points: list[Point] = []
        self.prompts_path: str | None = None
        self.frames: dict[str, Any] = {}  # CSV path -> the frame of each point run in this process
        self.interrupted: str | None = None
        self.started = time.monotonic()
        self.done_requests = 0

    # -- state --------------------------------------------------------------------------------------------
    def load_or_plan(self) -> None:
        if self.options.resume:
            if not self.state_path.is_file():
                raise CliError(f"nothing to resume: no {SWEEP_JSON} in {self.out}; drop --resume to start a sweep")
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            self.points = [Point(**p) for p in data["points"]]
            self.prompts_path = data["prompts"]
            self.meta = data
            self.options = resumed_options(self.options, data, self.points, bool(self.base.trace), self.out)
            return
        if self.state_path.is_file():
            raise CliError(f"{self.out} already holds a sweep ({SWEEP_JSON}): add --resume to go on with it, or "
                           "choose another --out")
        self.prompts_path = self._workload()
        self.points = plan_points(self.options, bool(self.base.trace))
        self.meta = {"requests_per_point": self.options.requests_per_point, "auto_points": self.options.points,
                     "auto": self.options.auto, "slo_ttft_s": self.options.slo_ttft_s,
                     "slo_tpot_s": self.options.slo_tpot_s}
        self.save()

    def _workload(self) -> str:
        """The workload, built once for every point: a prompts file (with enough prompts for a point)."""
        if has_workload(self.base):
            n = self.options.requests_per_point
            config = replace(self.base, num_prompts=self.base.num_prompts or (None if self.base.trace else n))
            specs, info = build_workload(config)
            return str(write_workload(specs, info, self.out))
        path = Path(self.base.prompts or DEFAULT_PROMPTS_PATH)
        try:
            load_prompts(path)
        except PromptsFileError as exc:
            raise CliError(str(exc)) from None
        return str(path.resolve())

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {**self.meta, "prompts": self.prompts_path, "points": [p.__dict__ for p in self.points]}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    # -- one point ------------------------------------------------------------------------------------------
    def point_config(self, point: Point, server_url: str | None) -> RunConfig:
        n = self.options.requests_per_point
        prompts = load_prompts(self.prompts_path)  # type: ignore[arg-type]
        repeats = 1 if point.kind == "trace" else max(1, math.ceil(n / len(prompts)))
        folder = self.out / "points" / point.folder
        resume = "latest" if (folder / "runs").is_dir() and any((folder / "runs").iterdir()) else None
        concurrency = point.concurrency
        if point.kind == "throughput":
            concurrency = self.base.max_concurrency
        return replace(
            self.base, prompts=self.prompts_path, synthetic=False, dataset=None, trace=None, input_tokens=None,
            model=point.model, concurrency=concurrency, rate_rps=point.rate_rps, repeats=repeats,
            out=str(folder), resume=resume, no_report=True, no_progress=True,
            energy_batch=self.base.energy_batch, energy_batch_fallback="achieved",
            calibrate_from_measured=False,  # the sweep calibrates every point from one (sweep_outputs.py)
            server_url=server_url or self.base.server_url,
            max_error_rate=self.base.max_error_rate if self.base.max_error_rate is not None
            else (self.options.stop_error_rate if self.options.stop_error_rate < 1 else None),
        )

    def run_point(self, index: int, point: Point, server_url: str | None) -> None:
        config = self.point_config(point, server_url)
        total = len(load_prompts(config.prompts)) * (config.repeats or 1)  # type: ignore[arg-type]
        progress = PointProgress(f"[{index + 1}/{len(self.points)}] {point.model or 'default'} {point.label}",
                                 total, self.eta_s, show=not self.base.no_progress)
        print(f"sweep point {index + 1}/{len(self.points)}: {point.model or '(service default)'} at "
              f"{describe_load(config)} -> {config.out}", flush=True)
        try:
            result = execute(config, should_stop=lambda: self.interrupted, observe=progress.record)
        finally:
            progress.close()
            self.done_requests += progress.done
        point.run_id, point.csv = result.run_id, str(result.csv_path)
        self.frames[point.csv] = result.frame  # the sweep's outputs use it as it is, without reading the CSV back
        point.result = point_result(result.frame)
        point.status = "stopped" if result.stopped and self.interrupted else "done"
        self.save()

    def eta_s(self, current_left: int, current_done: int = 0) -> float | None:
        """Seconds left in the sweep at this session's pace (requests left / requests per second so far)."""
        elapsed = time.monotonic() - self.started
        if self.done_requests + current_done <= 0 or elapsed <= 0:
            return None
        later = sum(1 for p in self.points if p.status == "pending") - 1
        left = current_left + max(0, later) * self.options.requests_per_point
        return left / ((self.done_requests + current_done) / elapsed)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, server_url: str | None) -> list[str]:
        """Every pending point in order; returns the notes for the report (early stops, interruption)."""
        notes: list[str] = []
        skip_models: set[str | None] = set()
        i = 0
        while i < len(self.points):
            point = self.points[i]
            if point.status == "done" or point.status == "skipped":
                i += 1
                continue
            if point.model in skip_models:
                point.status = "skipped"
                self.save()
                i += 1
                continue
            self.run_point(i, point, server_url)
            if self.interrupted:
                notes.append(f"sweep interrupted at {point.label} ({point.model}); rerun with --resume")
                return notes
            self._after(point, i, notes, skip_models)
            i += 1
        return notes

    def _after(self, point: Point, index: int, notes: list[str], skip_models: set[str | None]) -> None:
        r = point.result
        line = (f"{point.model or 'default'} {point.label}: {r.get('served')}/{r.get('requests')} served, "
                f"{r.get('throughput_rps', math.nan):.2f} req/s, p50 latency {r.get('latency_p50_s', math.nan):.3f}"
                f" s, p90 TTFT {r.get('ttft_p90_s', math.nan):.3f} s")
        print(f"point done: {line}", flush=True)
        if point.kind == "throughput":
            sync = next((p for p in self.points if p.model == point.model and p.kind == "sync"), None)
            rates = auto_rates((sync.result if sync else {}).get("throughput_rps", 0.0),
                               r.get("throughput_rps", 0.0), self.options.points)
            new = [Point(f"r{x:g}", point.model, rate_rps=x) for x in rates]
            self.points[index + 1:index + 1] = new
            notes.append(f"{point.model or 'default'}: synchronous {sync.result.get('throughput_rps', 0):.3f} req/s"
                         f", saturating {r.get('throughput_rps', 0):.3f} req/s at concurrency "
                         f"{self.base.max_concurrency}; rates between: {', '.join(f'{x:g}' for x in rates)}"
                         if sync else "auto: no synchronous point")
            self.save()
            return  # the saturating probe is expected to miss the SLOs
        why = self._bad(r)
        if why:
            skip_models.add(point.model)
            notes.append(f"{point.model or 'default'}: stopped after {point.label}: {why}; higher loads skipped")
            print(f"early stop: {notes[-1]}", flush=True)

    def _bad(self, r: dict[str, Any]) -> str | None:
        o = self.options
        requests = r.get("requests") or 0
        errors = requests - (r.get("served") or 0)
        if requests and errors / requests > o.stop_error_rate:
            return f"{errors} of {requests} requests failed (> --stop-error-rate {o.stop_error_rate:g})"
        if o.stop_slo_factor > 0:
            ttft, itl = r.get("ttft_p90_s", math.nan), r.get("itl_p90_s", math.nan)
            if ttft > o.stop_slo_factor * o.slo_ttft_s:
                return (f"p90 TTFT {ttft:.3f} s > {o.stop_slo_factor:g} x the SLO {o.slo_ttft_s:g} s "
                        "(--stop-slo-factor)")
            if itl > o.stop_slo_factor * o.slo_tpot_s:
                return f"p90 ITL {itl:.4f} s > {o.stop_slo_factor:g} x the SLO {o.slo_tpot_s:g} s (--stop-slo-factor)"
        return None


def describe_load(config: RunConfig) -> str:
    if config.rate_rps is not None:
        return f"rate {config.rate_rps:g} req/s (at most {config.max_concurrency} in flight)"
    return f"concurrency {config.concurrency or 1}"


def point_result(frame: Any) -> dict[str, Any]:
    """A point's figures for the early-stop rules and the progress lines (the client's view)."""
    table = point_table(frame)
    if table.empty:
        return {"requests": 0, "served": 0}
    row = table.iloc[0]
    keys = ("requests", "served", "throughput_rps", "latency_p50_s", "ttft_p90_s", "itl_p90_s",
            "achieved_concurrency", "output_tokens_per_s")
    return {k: (float(row[k]) if k not in ("requests", "served") else int(row[k])) for k in keys}


class _CtrlC:
    """The first Ctrl-C asks the current point to stop cleanly; the second aborts."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.previous: Any = None

    def __enter__(self) -> _CtrlC:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.sweep.interrupted = ("interrupted (Ctrl-C): nothing more was sent, the requests in flight were finished "
                                  "and recorded; `wattbench sweep ... --resume` goes on from this point")
        print("\nCtrl-C: finishing the requests in flight (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def execute_sweep(options: SweepOptions, base: RunConfig) -> int:
    """Run (or resume) the sweep, then write the combined CSV, report and dashboards. 0: every point done and
    every request served; 1: some failed or a point stopped early; 130: interrupted (resume goes on)."""
    sweep = Sweep(options, base)
    sweep.load_or_plan()
    with _CtrlC(sweep):
        if base.base_url or base.server_url:
            notes = sweep.run(None)
        else:  # the service path without --server-url: one service for every point
            try:
                with ServiceProcess(log_path=sweep.out / "service.log") as service:
                    notes = sweep.run(service.url)
            except ServiceStartError as exc:
                raise CliError(str(exc).splitlines()[0]) from None
    done = [p for p in sweep.points if p.csv]
    code = write_sweep_outputs(sweep, done, notes)
    if sweep.interrupted:
        print(f"interrupted: rerun `wattbench sweep --out {base.out} --resume` (with the same target options) to "
              "go on", file=sys.stderr)
        return 130
    return code


def cli_sweep(argv: Sequence[str]) -> int:
    """`wattbench sweep ...` (see the module's docstring)."""
    try:
        options, base = parse_sweep(argv)
        return execute_sweep(options, base)
    except (CliError, RecordSinkError, GpuEnergyUnavailable) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
