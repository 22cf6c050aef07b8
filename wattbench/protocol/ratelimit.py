"""How long a provider asks a client to wait, as precisely as it says it (the service reads it from its
upstream; the client reads it from the service or the server it benchmarks)."""
from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(value: str) -> float | None:
    """Seconds from plain seconds ('1.5') or OpenAI's reset durations ('20ms', '1.5s', '6m0s'); None when
    unreadable (negative, NaN and infinite values included)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return None
        seconds = sum(float(n) * _DURATION_S[u] for n, u in parts)
    return seconds if 0.0 <= seconds < float("inf") else None


def retry_after_s(headers: Mapping[str, Any] | Any, now_epoch_s: float | None = None) -> float | None:
    """Seconds to wait from a response's headers, in this order: `retry-after-ms` (milliseconds), then
    `Retry-After` (seconds, fractional, a duration such as '1.5s', or an HTTP date), then the rate-limit reset
    headers (x-ratelimit-reset-requests / -tokens durations, anthropic-ratelimit-*-reset timestamps: the longest
    of them). None when none is readable."""
    lower = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    now = time.time() if now_epoch_s is None else now_epoch_s
    ms = duration_s(lower.get("retry-after-ms", "")) if lower.get("retry-after-ms") else None
    if ms is not None:
        return ms / 1000.0
    value = lower.get("retry-after", "").strip()
    if value:
        seconds = duration_s(value)
        if seconds is not None:
            return seconds
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass  # neither seconds nor a date: try the reset headers
    resets = []
    for name, raw in lower.items():
        seconds: float | None
        if name.startswith("x-ratelimit-reset"):
            seconds = duration_s(raw)
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            try:
                seconds = max(0.0, datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() - now)
            except ValueError:
                seconds = None
        else:
            continue
        if seconds is not None:
            resets.append(seconds)
    return max(resets) if resets else None


def retry_after_headers(seconds: float | None) -> dict[str, str]:
    """The headers a 429 answer carries for a wait of `seconds`: `Retry-After` in whole seconds (rounded up,
    as RFC 9110 allows no fraction) and `retry-after-ms` with the precise value."""
    if seconds is None:
        return {}
    seconds = max(0.0, seconds)
    return {"Retry-After": str(max(0, int(-(-seconds // 1)))), "retry-after-ms": str(round(seconds * 1000))}
