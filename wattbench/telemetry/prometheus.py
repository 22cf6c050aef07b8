"""Prometheus text exposition: parse it (prometheus_client's parser) and fetch it over HTTP with a short timeout.

`parse_exposition(text)` -> {sample name: [(labels, value), ...]}; ExpositionError when the text is not
Prometheus text (an HTML page, JSON). `fetch(url, timeout_s)` -> the body; ScrapeError (one line) otherwise.
"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from wattbench.redact import shown_url

Series = dict[str, list[tuple[dict[str, str], float]]]
#: fetch(url, timeout_s) -> body text; raises ScrapeError. Tests pass their own.
Fetch = Callable[[str, float], str]


class ExpositionError(ValueError):
    """The text is not Prometheus text exposition."""


class ScrapeError(RuntimeError):
    """A metrics endpoint did not answer with a body; the message is one line."""


def parse_exposition(text: str) -> Series:
    """Every sample of a Prometheus text exposition by sample name (counters keep their _total)."""
    series: Series = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except ValueError as exc:
        raise ExpositionError(f"not Prometheus text ({str(exc)[:80]})") from None
    return series


def fetch(url: str, timeout_s: float) -> str:
    """GET url; the body of a 200 answer, else ScrapeError."""
    try:
        resp = httpx.get(url, timeout=timeout_s, headers={"Accept": "text/plain"})
    except httpx.HTTPError as exc:
        raise ScrapeError(f"{shown_url(url)}: {type(exc).__name__} {str(exc)[:80]}".rstrip()) from None
    if resp.status_code != 200:
        raise ScrapeError(f"{shown_url(url)}: HTTP {resp.status_code}")
    return resp.text


def metrics_url_for(base_url: str) -> str:
    """The conventional metrics endpoint of an OpenAI-compatible server: its origin + /metrics
    (http://host:8000/v1 -> http://host:8000/metrics)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))
