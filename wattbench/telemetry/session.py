"""Server metrics and remote GPU energy over one `wattbench run`: which endpoints, checked before sending; the
sampler around the sending; afterwards the dcgm shares of this session appended to the run directory; and, when
the CSV is built, every record with its server_batch / server_queue / dcgm share merged in.

    telemetry = ServerTelemetry.resolve(server_metrics="auto", base_url=..., gpu_metrics=[...])
    with telemetry.sampling(store.directory, session=...):   # runs/run.py, around the send
        send...
    telemetry.save(store)                                   # dcgm shares -> dcgm_energy.jsonl
    records = with_server_metrics(store.directory, records)  # before the CSV
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattbench.energy.lenses.gpu import ATTRIBUTION
from wattbench.redact import shown_url
from wattbench.telemetry.attribution import dcgm_shares, server_load
from wattbench.telemetry.engines import dcgm_readings, engine_view
from wattbench.telemetry.prometheus import (
    ExpositionError,
    Fetch,
    ScrapeError,
    fetch,
    metrics_url_for,
    parse_exposition,
)
from wattbench.telemetry.sampler import GPU_FILE, SERVER_FILE, MetricsSampler, read_samples

DCGM_ENERGY_FILE = "dcgm_energy.jsonl"
DEFAULT_INTERVAL_S = 1.0
#: A sampled gauge holds its value for at most this many sampling intervals after the sample.
STALE_INTERVALS = 3.0


class TelemetryUnavailable(RuntimeError):
    """An endpoint named explicitly (--server-metrics URL, --gpu-metrics URL) does not answer metrics."""


@dataclass
class ServerTelemetry:
    """The endpoints one run samples (None / empty: nothing) and its sampling interval."""

    server_url: str | None = None
    gpu_urls: list[str] = field(default_factory=list)
    interval_s: float = DEFAULT_INTERVAL_S
    engine: str | None = None
    say: Callable[[str], None] = print
    fetch_text: Fetch = fetch
    sampler: MetricsSampler | None = None

    @property
    def active(self) -> bool:
        return bool(self.server_url or self.gpu_urls)

    @classmethod
    def resolve(cls, server_metrics: str | None, base_url: str | None, gpu_metrics: Sequence[str] = (), *,
                interval_s: float = DEFAULT_INTERVAL_S, fetch_text: Fetch = fetch,
                say: Callable[[str], None] = print) -> ServerTelemetry:
        """Check the endpoints once before sending. auto: base_url's origin + /metrics, used when it answers
        Prometheus text (else nothing, one line says so); a URL given explicitly that does not answer metrics
        raises TelemetryUnavailable."""
        telemetry = cls(interval_s=interval_s, say=say, fetch_text=fetch_text)
        mode = server_metrics or "auto"
        url = None if mode == "off" else (metrics_url_for(base_url) if mode == "auto" and base_url else
                                          None if mode == "auto" else mode)
        if url:
            try:
                view = engine_view(parse_exposition(fetch_text(url, max(2.0, interval_s))))
            except (ScrapeError, ExpositionError) as exc:
                if mode != "auto":
                    raise TelemetryUnavailable(f"--server-metrics {shown_url(url)} does not answer Prometheus "
                                               f"metrics ({exc}); fix the URL or pass --server-metrics off") from None
                say(f"no server metrics at {shown_url(url)} ({exc}): server_batch / server_queue stay empty")
            else:
                telemetry.server_url, telemetry.engine = url, view.engine
                say(f"sampling server metrics at {shown_url(url)} every {interval_s:g} s (engine: "
                    f"{view.engine or 'unknown, raw series kept'})")
        for gpu_url in gpu_metrics:
            try:
                readings, _ = dcgm_readings(parse_exposition(fetch_text(gpu_url, max(2.0, interval_s))))
            except (ScrapeError, ExpositionError) as exc:
                raise TelemetryUnavailable(f"--gpu-metrics {shown_url(gpu_url)} does not answer Prometheus "
                                           f"metrics ({exc}); give a dcgm-exporter URL, e.g. "
                                           "http://gpu-node:9400/metrics") from None
            if not readings:
                raise TelemetryUnavailable(f"--gpu-metrics {shown_url(gpu_url)} has no DCGM_FI_DEV_TOTAL_ENERGY_"
                                           "CONSUMPTION or DCGM_FI_DEV_POWER_USAGE series; is it dcgm-exporter?")
            telemetry.gpu_urls.append(gpu_url)
            say(f"measuring remote GPU energy from {shown_url(gpu_url)}: {len(readings)} GPU(s)")
        return telemetry

    @contextlib.contextmanager
    def sampling(self, directory: str | Path, session: str = "") -> Iterator[ServerTelemetry]:
        """Sample in the background while the body runs (nothing when no endpoint is active)."""
        if not self.active:
            yield self
            return
        self.sampler = MetricsSampler(directory, server_url=self.server_url, gpu_urls=self.gpu_urls,
                                      interval_s=self.interval_s, session=session, fetch_text=self.fetch_text,
                                      say=self.say)
        self.sampler.start()
        try:
            yield self
        finally:
            self.sampler.stop()

    def save(self, store: Any) -> Path | None:
        """Append this session's dcgm shares (and its summary) to the run directory's dcgm_energy.jsonl."""
        if self.sampler is None or not self.sampler.gpu_samples:
            return None
        shares, summary = dcgm_shares(self.sampler.gpu_samples, store.records(), ATTRIBUTION)
        if summary is None:
            return None
        path = Path(store.directory) / DCGM_ENERGY_FILE
        with open(path, "a", encoding="utf-8") as handle:
            for line in [*shares, {"session_summary": summary}]:
                handle.write(json.dumps(line) + "\n")
        self.say(f"GPU energy ({summary['devices']}): {summary['total_j']:.1f} J over {summary['window_s']:.1f} s, "
                 f"{summary['idle_j']:.1f} J of it with no request in flight; shares in {path}")
        return path


def with_server_metrics(run_dir: str | Path, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records with server_batch / server_queue (from server_metrics.jsonl) and, where NVML gave no share,
    the dcgm share (the latest line per key of dcgm_energy.jsonl) merged in. Unchanged without those files."""
    records = [dict(r) for r in records]
    samples = read_samples(run_dir, SERVER_FILE)
    if samples:
        load = server_load(samples, records, stale_s=STALE_INTERVALS * sampling_interval_s(samples))
        for r in records:
            r.update(load.get(r["key"], {}))
    path = Path(run_dir) / DCGM_ENERGY_FILE
    if path.is_file():
        shares = {}
        for text in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(text)
            if "key" in entry:
                shares[entry["key"]] = entry
        for r in records:
            if r.get("gpu_energy_j") is None and r["key"] in shares:
                r.update({k: v for k, v in shares[r["key"]].items() if k != "key"})
    return records


def sampling_interval_s(samples: Sequence[Mapping[str, Any]]) -> float:
    """The median gap between consecutive samples of one session (DEFAULT_INTERVAL_S with fewer than two)."""
    gaps = sorted(b["t_epoch_s"] - a["t_epoch_s"] for a, b in zip(samples, samples[1:])
                  if a.get("session") == b.get("session") and b["t_epoch_s"] > a["t_epoch_s"])
    return gaps[len(gaps) // 2] if gaps else DEFAULT_INTERVAL_S


def server_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's server metric samples (for the report's SERVER VIEW and the time-series panel)."""
    return read_samples(run_dir, SERVER_FILE)


def gpu_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_samples(run_dir, GPU_FILE)


def dcgm_summaries(run_dir: str | Path) -> list[dict[str, Any]]:
    """Each session's dcgm summary (total_j, idle_j, window_s, requests, method, devices)."""
    path = Path(run_dir) / DCGM_ENERGY_FILE
    if not path.is_file():
        return []
    entries = [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    return [e["session_summary"] for e in entries if "session_summary" in e]
