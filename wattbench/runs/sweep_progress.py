"""A sweep point's progress bar: requests done, errors, current req/s, p50 latency, and the sweep's ETA."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW = 20  # the last requests that "current req/s" is measured over


class PointProgress:
    """Fed each record as it is stored (run.execute's observe); draws one tqdm bar per point (stderr)."""

    def __init__(self, desc: str, total: int, eta_s: Callable[[int, int], float | None], show: bool = True) -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.finishes: deque[float] = deque(maxlen=WINDOW)
        self.eta_s = eta_s
        self.bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)

    def record(self, record: Any) -> None:
        self.done += 1
        self.finishes.append(time.monotonic())
        if not record.success:
            self.errors += 1
        elif record.client_latency_s is not None:
            self.latencies.append(float(record.client_latency_s))
        if self.bar is not None:
            self.bar.set_postfix(self.postfix(), refresh=False)
            self.bar.update(1)

    def current_rps(self) -> float | None:
        if len(self.finishes) < 2 or self.finishes[-1] <= self.finishes[0]:
            return None
        return (len(self.finishes) - 1) / (self.finishes[-1] - self.finishes[0])

    def postfix(self) -> dict[str, Any]:
        rps = self.current_rps()
        eta = self.eta_s(max(0, self.total - self.done), self.done)
        return {"err": self.errors, "req/s": "-" if rps is None else f"{rps:.2f}",
                "p50": "-" if not self.latencies else f"{statistics.median(self.latencies):.3f}s",
                "sweep ETA": "-" if eta is None else _clock(eta)}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
