"""The background sampler: scrape the server's metrics and each dcgm-exporter every interval_s, off the load
generator's event loop (a daemon thread), and append one JSONL line per scrape to the run directory.

    server_metrics.jsonl  {"t_epoch_s", "session", "url", "engine", "running", "waiting", "kv_usage", ...counters,
                           "raw": {...} on the first, every RAW_EVERY-th and the last sample}
    gpu_metrics.jsonl     {"t_epoch_s", "session", "url", "gpus": [{"id", "model", "energy_mj", "power_w"}]}

t_epoch_s is the client's clock (time.time) when the scrape returned, the clock of the records' t_start_epoch_s /
t_end_epoch_s. An endpoint that hangs (each scrape bounded by timeout_s), answers garbage, lies (NaN, negative, a
counter going down) or vanishes costs one warning line per endpoint and kind of trouble, never the run.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wattbench.redact import shown_url
from wattbench.telemetry.engines import dcgm_readings, engine_view
from wattbench.telemetry.prometheus import ExpositionError, Fetch, ScrapeError, fetch, parse_exposition

SERVER_FILE = "server_metrics.jsonl"
GPU_FILE = "gpu_metrics.jsonl"
RAW_EVERY = 30
COUNTER_ROLES = ("prompt_tokens_total", "generation_tokens_total", "prefix_cache_queries_total",
                 "prefix_cache_hits_total", "preemptions_total")


class MetricsSampler:
    """Scrape `server_url` (engine metrics) and `gpu_urls` (dcgm-exporter) every interval_s in a thread.

    directory: where the JSONL files are appended; session: an id written on every line (one sending session).
    fetch / clock / say: seams for tests (clock must be the records' epoch clock)."""

    def __init__(self, directory: str | Path, *, server_url: str | None, gpu_urls: Sequence[str] = (),
                 interval_s: float = 1.0, timeout_s: float | None = None, session: str = "",
                 fetch_text: Fetch = fetch, clock: Callable[[], float] = time.time,
                 say: Callable[[str], None] = print) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval_s must be > 0, not {interval_s!r}")
        self.directory = Path(directory)
        self.server_url, self.gpu_urls = server_url, list(gpu_urls)
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else min(1.0, max(0.2, interval_s))
        self.session = session
        self._fetch, self._clock, self._say = fetch_text, clock, say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[tuple[str, str]] = set()
        self._last_counters: dict[str, dict[str, float]] = {}
        self.server_samples: list[dict[str, Any]] = []
        self.gpu_samples: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._count = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> MetricsSampler:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="wattbench-metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (waiting at most one scrape's timeout per endpoint) and take a last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * (1 + len(self.gpu_urls)) + 1.0)
            self._thread = None
        self.sample(raw=True)

    def __enter__(self) -> MetricsSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    # -- one tick --------------------------------------------------------------------------------------------
    def sample(self, raw: bool = False) -> None:
        """Scrape every endpoint once and append what answered."""
        self._count += 1
        if self.server_url:
            line = self._server_line(self.server_url, raw or self._count % RAW_EVERY == 1)
            if line is not None:
                self.server_samples.append(line)
                self._append(SERVER_FILE, line)
        for url in self.gpu_urls:
            line = self._gpu_line(url)
            if line is not None:
                self.gpu_samples.append(line)
                self._append(GPU_FILE, line)

    def _scrape(self, url: str) -> tuple[float, Any] | None:
        try:
            series = parse_exposition(self._fetch(url, self.timeout_s))
        except (ScrapeError, ExpositionError) as exc:
            self.warn(url, type(exc).__name__, f"{exc}; samples from it are missing, the run goes on")
            return None
        return self._clock(), series

    def _server_line(self, url: str, raw: bool) -> dict[str, Any] | None:
        got = self._scrape(url)
        if got is None:
            return None
        t, series = got
        view = engine_view(series)
        for text in view.rejected:
            self.warn(url, "rejected", f"dropped an impossible value ({text})")
        self._check_counters(url, {k: v for k, v in view.values.items() if k in COUNTER_ROLES})
        line: dict[str, Any] = {"t_epoch_s": t, "session": self.session, "url": shown_url(url),
                                "engine": view.engine, **view.values}
        if view.engine is None:
            self.warn(url, "engine", "no known engine series (vLLM, SGLang, TGI, llama.cpp); raw series kept")
        if raw or view.engine is None:
            line["raw"] = view.raw
        return line

    def _gpu_line(self, url: str) -> dict[str, Any] | None:
        got = self._scrape(url)
        if got is None:
            return None
        t, series = got
        readings, rejected = dcgm_readings(series)
        for text in rejected:
            self.warn(url, "rejected", f"dropped an impossible value ({text})")
        if not readings:
            self.warn(url, "empty", "no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION or DCGM_FI_DEV_POWER_USAGE series")
            return None
        self._check_counters(url, {r.gpu_id: r.energy_mj for r in readings if r.energy_mj is not None})
        return {"t_epoch_s": t, "session": self.session, "url": shown_url(url),
                "gpus": [{"id": r.gpu_id, "model": r.model, "energy_mj": r.energy_mj, "power_w": r.power_w}
                         for r in readings]}

    def _check_counters(self, url: str, counters: dict[str, float]) -> None:
        last = self._last_counters.setdefault(url, {})
        for name, value in counters.items():
            if name in last and value < last[name]:
                self.warn(url, "decreasing", f"counter {name} went down ({last[name]:g} -> {value:g}): "
                          "counted as a reset, starting over from 0")
            last[name] = value

    def warn(self, url: str, kind: str, text: str) -> None:
        """One warning line per endpoint and kind of trouble."""
        if (url, kind) in self._warned:
            return
        self._warned.add((url, kind))
        message = f"warning: metrics at {shown_url(url)}: {text}"
        self.warnings.append(message)
        self._say(message)

    def _append(self, name: str, line: dict[str, Any]) -> None:
        try:
            with open(self.directory / name, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        except OSError as exc:  # a full disk loses samples, not the run
            self.warn(str(self.directory / name), "write", f"cannot append ({exc.strerror or exc})")


def read_samples(directory: str | Path, name: str) -> list[dict[str, Any]]:
    """Every complete line of a sample file in the run directory, in time order ([] when there is none)."""
    path = Path(directory) / name
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except ValueError:  # a line cut short by a kill
            continue
        if isinstance(line, dict) and isinstance(line.get("t_epoch_s"), int | float):
            lines.append(line)
    return sorted(lines, key=lambda line: line["t_epoch_s"])
