"""The load-generating workers on Ray (`--ray [ADDRESS]`, `pip install 'wattbench[ray]'`), for loads one client
machine cannot drive.

Same design as the worker processes (loadgen/workers.py, whose writer loop `run_in_workers` drives this pool):
each worker is a Ray task running `workers._worker_main` over its share of the items, with its own event loop
and monotonic clock. Its records go, in batches every FLUSH_S seconds from a thread beside its event loop, to
one small Ray actor (the mailbox) that the parent drains; the parent is the one writer of the run file, so the
append-only run file and --resume stay exact. A stop (an error rule the parent judged, or --max-duration) reaches
the workers in the mailbox's answer to their next batch. Ray does the transport, placement and failure
reporting: there is no cluster protocol of wattbench's own.

`ray.init()` starts a local Ray runtime unless an address is given (`--ray auto`, `--ray ray://head:10001`,
`--ray head:6379`); a Ray already initialised (a notebook) is used as it is. Every node needs wattbench
installed and must reach --base-url.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from wattbench.cli_support import one_line
from wattbench.loadgen.workers import WorkerError, WorkerSpec, _worker_main

#: Seconds between a worker's batches to the mailbox (and its look at the stop flag).
FLUSH_S = 0.05
#: Seconds the parent waits between two looks at an empty mailbox.
POLL_S = 0.02

RAY_MISSING = "--ray needs Ray on this machine: pip install 'wattbench[ray]'"


def _ray() -> Any:
    try:
        import ray  # deferred: an optional extra, and seconds to import
    except ImportError:
        raise WorkerError(RAY_MISSING) from None
    return ray


class _Mailbox:
    """The Ray actor between the workers and the parent: records and _Done messages in, the stop flag out."""

    def __init__(self) -> None:
        self._messages: list[Any] = []
        self._stop = False

    def put(self, batch: list[Any]) -> bool:
        self._messages.extend(batch)
        return self._stop

    def drain(self) -> list[Any]:
        batch, self._messages = self._messages, []
        return batch

    def stop(self) -> None:
        self._stop = True


class _Forwarder:
    """In a worker: `put` (called by its event loop) only appends; a thread sends the batches to the mailbox,
    so the event loop never waits on Ray. `is_set` is the stop flag the mailbox last answered."""

    def __init__(self, mailbox: Any) -> None:
        self._ray = _ray()
        self._mailbox = mailbox
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._stop = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def put(self, message: Any) -> None:
        with self._lock:
            self._pending.append(message)

    def is_set(self) -> bool:
        return self._stop

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        self._stop = self._ray.get(self._mailbox.put.remote(batch)) or self._stop

    def _loop(self) -> None:
        while not self._closing.wait(FLUSH_S):
            self._flush()

    def close(self) -> None:
        """Send what is left (the worker's _Done last)."""
        self._closing.set()
        self._thread.join()
        self._flush()


def _ray_worker(index: int, spec: WorkerSpec, items: list[Any], mailbox: Any) -> None:
    """A Ray task: one worker, its messages forwarded to the mailbox before it returns."""
    forwarder = _Forwarder(mailbox)
    try:
        _worker_main(index, spec, items, forwarder, forwarder)
    finally:
        forwarder.close()


class RayPool:
    """The workers as Ray tasks (loadgen/workers.py's pool interface)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = None if address in (None, "", "local") else address
        self._ray = _ray()
        self._started_ray = False
        self._tasks: list[Any] = []
        self._local: deque[Any] = deque()
        self._mailbox: Any = None

    def start(self, spec: WorkerSpec, shares: list[list[Any]]) -> None:
        ray = self._ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing sent anywhere
            options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            if self.address is None:  # a local runtime with a CPU for each worker
                options["num_cpus"] = max(len(shares), os.cpu_count() or 1)
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise WorkerError(f"cannot start or reach Ray at {self.address or 'a new local runtime'}: "
                                  f"{exc}") from None
            self._started_ray = True
        self._mailbox = ray.remote(num_cpus=0)(_Mailbox).remote()
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_worker)  # a retry would send its share again
        self._tasks = [task.remote(i, spec, share, self._mailbox) for i, share in enumerate(shares)]

    def _drain(self) -> None:
        self._local.extend(self._ray.get(self._mailbox.drain.remote()))

    def get(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not self._local:
            self._drain()
            if self._local or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        return self._local.popleft() if self._local else None

    def alive(self) -> bool:
        """Whether a message may still come; WorkerError when a task failed (e.g. its node went away)."""
        ready, _ = self._ray.wait(self._tasks, num_returns=len(self._tasks), timeout=0)
        for ref in ready:
            try:
                self._ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - any of Ray's task errors: the run stops, its file is kept
                raise WorkerError(f"a Ray worker failed ({type(exc).__name__}: {one_line(str(exc))}); what "
                                  "was measured is saved: rerun with --resume") from None
        if len(ready) < len(self._tasks):
            return True
        self._drain()  # every task ended: what they sent before ending is in the mailbox
        return bool(self._local)

    def ended(self) -> dict[int, str]:
        """Workers gone without reporting: none to list here, a failed Ray task raises in alive()."""
        return {}

    def stop(self) -> None:
        self._mailbox.stop.remote()

    def close(self) -> None:
        ray = self._ray
        try:
            if self._tasks:
                _, running = ray.wait(self._tasks, num_returns=len(self._tasks), timeout=10)
                for ref in running:
                    ray.cancel(ref, force=True)
        finally:
            if self._started_ray:
                ray.shutdown()
