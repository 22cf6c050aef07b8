"""Load generation spread over worker processes, for when one event loop saturates (`--workers N`, direct path;
`--workers auto`, the default, picks N with auto_workers).

Each worker process runs its own event loop and BatchProcessor (a monotonic clock per worker: every record's
timings are differences of that worker's perf_counter) over its share of the items, at its share of the
concurrency or rate. Every finished record goes back over one queue to the parent, which is the one writer:
it appends the record to the run file (fsynced) before it counts as done, so the append-only run file and
--resume keep their guarantees (a record a worker finished but the parent never wrote is sent again on resume;
the store keeps the last record of each key, so nothing counts twice). The error stop rules are judged by the
parent over all workers and reach them through one shared event.

Where the workers run is a pool (start / get / alive / stop / close): ProcessPool here (processes on this
machine), RayPool in loadgen/ray_workers.py (Ray tasks, `--ray`, for loads one machine cannot drive); the
writer loop, `run_in_workers`, is the same for both.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_module
import signal
import time
from dataclasses import dataclass
from typing import Any

from wattbench.loadgen.limiter import RetryPolicy
from wattbench.loadgen.plan import RequestRecord, Schedule, WorkItem
from wattbench.loadgen.sender import MAX_ANSWER_CHARS, BatchProcessor, RunStopped, StopRules
from wattbench.client.transport import OpenAITransport


#: Streams one load-generating process keeps in flight before its own event loop shows in what it measures: on a
#: 2-core machine at 64 streams (TTFT 100 ms, 10 ms between tokens) one process read TTFT 7.6-8.7 ms long and two
#: processes 4.2 ms; at 256, one 71-92 ms and two 19-20 ms (issue 21's table; benchmarks/bench_load.py).
STREAMS_PER_WORKER = 32

#: Requests per second one process sends with its loop half idle: the direct path spends ~3.5 ms of CPU per
#: streamed request of 64 chunks (benchmarks/bench_load.py), ~280 requests/s to saturate a core.
RPS_PER_WORKER = 140.0

#: Requests below which one more process does not pay for its start-up (~0.5 s: a Python, wattbench and aiohttp
#: imported, its connections opened) on a benchmark's scale.
MIN_REQUESTS_PER_WORKER = 100


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a container's cpuset), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def auto_workers(in_flight: int, rate_rps: float | None, requests: int, cpus: int) -> tuple[int, str]:
    """How many load-generating processes `--workers auto` starts, and why in words: one per STREAMS_PER_WORKER
    streams in flight (with --rate: one per RPS_PER_WORKER requests per second), no more than the CPUs, and
    none that would send fewer than MIN_REQUESTS_PER_WORKER requests."""
    if rate_rps is not None:
        wanted, why = math.ceil(rate_rps / RPS_PER_WORKER), f"{rate_rps:g} req/s / {RPS_PER_WORKER:g} per process"
    else:
        wanted, why = math.ceil(in_flight / STREAMS_PER_WORKER), (f"{in_flight} in flight / {STREAMS_PER_WORKER} "
                                                                  "per process")
    n = max(1, min(wanted, cpus, requests // MIN_REQUESTS_PER_WORKER))
    return n, f"{why}, {cpus} CPU{'s' if cpus != 1 else ''}, {requests} requests"


#: The most records the writer commits with one fsync (what arrived while it wrote the last ones): one fsync per
#: record capped the writer near 5,000 records/s, the rate eight workers reach against an instant server.
WRITE_BATCH = 1024


class WorkerError(RuntimeError):
    """A worker process failed; what was recorded before is saved (resume sends the rest)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to rebuild its BatchProcessor (picklable; the key travels to the child
    process only, never to a file or a log)."""

    base_url: str
    model: str
    api_key: str | None
    concurrency: int
    rate_rps: float | None
    arrival: str
    timeout_s: float
    retry: RetryPolicy
    seed: int | None
    run_id: str
    max_duration_s: float | None
    output_enforce: str = "max-tokens"  # how each prompt's max_tokens is asked for (workloads.py)
    max_answer_chars: int = MAX_ANSWER_CHARS  # characters of an answer's text recorded (--max-answer-chars)


@dataclass
class _Done:
    worker: int
    cpu_s: float
    sent: int
    error: str | None = None


def _worker_main(index: int, spec: WorkerSpec, items: list[WorkItem], out: Any, stop: Any) -> None:
    transport = OpenAITransport(spec.base_url, model=spec.model, api_key=spec.api_key,
                                output_enforce=spec.output_enforce)
    schedule = Schedule(concurrency=spec.concurrency, rate_rps=spec.rate_rps, arrival=spec.arrival,  # type: ignore[arg-type]
                        seed=None if spec.seed is None else spec.seed + index)
    processor = BatchProcessor(
        transport, schedule=schedule, retry=spec.retry, stop=StopRules(max_duration_s=spec.max_duration_s),
        on_record=out.put, should_stop=stop.is_set, timeout_s=spec.timeout_s, run_id=spec.run_id,
        max_answer_chars=spec.max_answer_chars, progress=False,
    )
    error = None
    try:
        processor.run_sync(items)
    except RunStopped:
        pass  # the parent knows why (it set the event, or the duration is shared)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the run with it
        error = f"{type(exc).__name__}: {exc}"
    out.put(_Done(index, processor.client_cpu_s, processor.finished, error))


def split(items: list[WorkItem], n: int) -> list[list[WorkItem]]:
    """Round-robin shares: every item in exactly one share."""
    return [items[i::n] for i in range(n)]


class ProcessPool:
    """Worker processes on this machine (multiprocessing, spawn): one queue to the parent, one shared event."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")  # no fork of a process that may hold threads (httpx, tqdm)
        self._out, self._stop = self._ctx.Queue(), self._ctx.Event()
        self._procs: list[Any] = []

    def start(self, spec: WorkerSpec, shares: list[list[WorkItem]]) -> None:
        self._procs = [self._ctx.Process(target=_worker_main, args=(i, spec, share, self._out, self._stop),
                                         daemon=True) for i, share in enumerate(shares)]
        for proc in self._procs:
            proc.start()

    def get(self, timeout_s: float) -> Any:
        """The next message (a RequestRecord or a worker's _Done), or None after `timeout_s`."""
        try:
            return self._out.get(timeout=timeout_s)
        except queue_module.Empty:
            return None

    def alive(self) -> bool:
        """Whether a message may still come."""
        return any(p.is_alive() for p in self._procs) or not self._out.empty()

    def ended(self) -> dict[int, str]:
        """The workers whose process ended with a failure ({index: how}, e.g. "killed by SIGKILL"): a worker
        that finishes, fails in Python or is stopped exits 0 after reporting."""
        return {i: exit_description(p.exitcode) for i, p in enumerate(self._procs)
                if p.exitcode is not None and p.exitcode != 0}

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


def exit_description(exitcode: int) -> str:
    """How a process ended, from multiprocessing's exitcode (a negative code is the signal that killed it)."""
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


#: Seconds between the writer's checks that every worker process is still there.
LIVENESS_CHECK_S = 0.5


def worker_spec(processor: BatchProcessor, n: int) -> WorkerSpec:
    """What each of `n` workers needs to send like `processor` (its share of the concurrency or rate)."""
    transport = processor.transport
    if not isinstance(transport, OpenAITransport):
        raise ValueError("worker processes drive the direct path (--base-url) only")
    return WorkerSpec(
        transport.base_url, transport.model, transport._api_key,  # noqa: SLF001 - handed to the workers only
        max(1, -(-processor.schedule.concurrency // n)),
        processor.schedule.rate_rps / n if processor.schedule.rate_rps else None,
        processor.schedule.arrival, processor.timeout_s, processor.retry, None, processor.run_id,
        processor.stop.max_duration_s, transport.output_enforce, processor.max_answer_chars,
    )


def run_in_workers(processor: BatchProcessor, todo: list[WorkItem], workers: int, store: Any,
                   pool: Any = None) -> float:
    """Send `todo` from `workers` workers configured like `processor` (direct path): processes on this machine,
    or the workers of `pool` (ProcessPool's methods; loadgen/ray_workers.py RayPool); the parent appends the
    records to `store` (store.append_many: what arrived together, made durable at once). Returns the client's CPU seconds per request (all workers). Raises RunStopped when a
    stop rule was hit, WorkerError when a worker failed."""
    shares = [s for s in split(todo, workers) if s]
    n = len(shares)
    spec = worker_spec(processor, n)
    pool = pool if pool is not None else ProcessPool()
    rules = StopRules(max_errors=processor.stop.max_errors, max_error_rate=processor.stop.max_error_rate)
    finished = failed = 0
    cpu_s, errors, reason = 0.0, [], None
    t0, done = time.monotonic(), 0
    reported: set[int] = set()  # workers whose _Done arrived, or that were found dead
    checked = t0
    try:
        pool.start(spec, shares)
        while done < n:
            message = pool.get(LIVENESS_CHECK_S)
            if message is None or time.monotonic() - checked >= LIVENESS_CHECK_S:
                checked = time.monotonic()
                for index, how in pool.ended().items():
                    if index not in reported:  # gone without reporting: the others stop, their records are kept
                        reported.add(index)
                        done += 1
                        errors.append(f"worker {index} ({len(shares[index])} requests) ended, {how}, before it "
                                      "finished its share")
                        pool.stop()
            if message is None:
                if done < n and not pool.alive():
                    raise WorkerError("every worker process ended without reporting; see its output")
                continue
            messages = [message]  # and whatever else has arrived: committed together (one fsync)
            while len(messages) < WRITE_BATCH and (message := pool.get(0.0)) is not None:
                messages.append(message)
            records: list[RequestRecord] = []
            for message in messages:
                if isinstance(message, _Done):
                    if message.worker in reported:
                        continue
                    reported.add(message.worker)
                    done += 1
                    cpu_s += message.cpu_s
                    if message.error:
                        errors.append(f"worker {message.worker}: {message.error}")
                else:
                    records.append(message)
            store.append_many(records)  # the one writer: durable before they count as done
            for record in records:
                finished += 1
                failed += 0 if record.success else 1
                reason = reason or rules.reason(0.0, finished, failed)
            if reason:
                pool.stop()
    finally:
        pool.close()
    if errors:
        raise WorkerError("; ".join(errors) + "; what was measured is saved: rerun with --resume")
    duration = processor.stop.max_duration_s
    if reason is None and duration is not None and time.monotonic() - t0 >= duration and finished < len(todo):
        reason = StopRules(max_duration_s=duration).reason(duration, finished, 0)
    processor.client_cpu_s, processor._finished = cpu_s, finished  # noqa: SLF001 - totals for the caller
    if reason:
        raise RunStopped(reason)
    return cpu_s / max(1, finished)
