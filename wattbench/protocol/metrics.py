"""The metric formulas, once (the definitions are in the README's metric section):

- ttft_s: send to the first non-empty content chunk; latency_s: send to the last byte;
- tpot_s: (latency_s - ttft_s) / (completion_tokens - 1), None below 2 tokens;
- tokens_per_s: completion_tokens / latency_s;
- itl_s: mean gap between content chunks after the first;
- in flight: time-averaged requests in flight over the wall span (first send to last finish), and the most.

The service times its model call with these, the client times what it saw with these, and the analysis
recomputes a row's metrics from the client's view with these.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def tpot_s(ttft_s: float, latency_s: float, completion_tokens: int) -> float | None:
    """Time per output token after the first (None below two tokens)."""
    return (latency_s - ttft_s) / (completion_tokens - 1) if completion_tokens >= 2 else None


def tokens_per_s(completion_tokens: int, latency_s: float) -> float | None:
    """Output tokens per second over the whole request (None for a zero latency)."""
    return completion_tokens / latency_s if latency_s > 0 else None


def timing_fields(ttft_s: float, latency_s: float, completion_tokens: int) -> dict[str, float | None]:
    """ttft_s, latency_s, tpot_s, tokens_per_s of one request."""
    return {"ttft_s": ttft_s, "latency_s": latency_s, "tpot_s": tpot_s(ttft_s, latency_s, completion_tokens),
            "tokens_per_s": tokens_per_s(completion_tokens, latency_s)}


def timing_from_clock(
    t_sent: float, t_first: float | None, t_end: float, completion_tokens: int
) -> dict[str, float | None]:
    """timing_fields from clock readings: when the request was sent, the first content arrived (None: never)
    and the last byte arrived (readings out of order count as zero durations)."""
    latency = max(0.0, t_end - t_sent)
    ttft = max(0.0, (t_first if t_first is not None else t_end) - t_sent)
    return timing_fields(min(ttft, latency), latency, completion_tokens)


def content_timing(t0: float, times: Sequence[float], t_end: float) -> tuple[float, float, float | None]:
    """(ttft_s, latency_s, itl_s) from the send time, the arrival times of the non-empty content chunks and the
    time of the last byte (no content: the first token is the last byte)."""
    ttft = (times[0] if times else t_end) - t0
    itl = (times[-1] - times[0]) / (len(times) - 1) if len(times) >= 2 else None
    return ttft, t_end - t0, itl


def in_flight(intervals: Sequence[tuple[float, float]]) -> tuple[float, int, float]:
    """(time-averaged requests in flight, most in flight at once, wall span in s) of (start, end) intervals.

    The span is first start to last end; the average is the summed durations over the span (a zero span: the
    most). No intervals: (nan, 0, 0.0), nothing was measured."""
    if not intervals:
        return math.nan, 0, 0.0
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    busy = sum(e - s for s, e in intervals)
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # ends sort first on ties
    current = most = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return (busy / span if span > 0 else float(most)), most, span
