"""Retries and adaptive concurrency: the retry policy, backoff with jitter, the AIMD concurrency limiter
(Retry-After is read by protocol.ratelimit)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


#: The request budget's default: this many per-attempt timeouts, for all attempts and waits of one request.
BUDGET_TIMEOUTS = 3

#: How a request given up by its budget begins its error (the report counts them by these words).
BUDGET_SPENT = "request budget spent"
RATE_LIMIT_CAP = "429 cap reached"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a request is recorded as failed: attempts, 429 waits, and a total budget."""

    max_attempts: int = 6  # attempts for transient failures: 5xx, timeouts, dropped connections
    max_rate_limited: int = 30  # 429s one request may get before it is recorded as failed (an exhausted quota)
    budget_s: float | None = None  # seconds one request may take, attempts and waits together (None: default)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    default_retry_after_s: float = 1.0  # a 429 without a usable Retry-After
    max_retry_after_s: float = 300.0
    abort_after_connect_failures: int = 8  # consecutive refused connections: the service is gone


def request_budget_s(policy: RetryPolicy, timeout_s: float) -> float:
    """Seconds one request may take across its attempts and waits: the policy's, else BUDGET_TIMEOUTS
    per-attempt timeouts (a stalled server then costs 3 timeouts per request, not 6)."""
    return policy.budget_s if policy.budget_s is not None else BUDGET_TIMEOUTS * timeout_s


def backoff_delay_s(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with equal jitter before retry number `retry` (1 = the first retry):
    half of min(max, base * 2**(retry-1)) plus a uniform draw of up to the other half."""
    cap = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (retry - 1))
    return cap / 2 + rng.uniform(0.0, cap / 2)


class AdaptiveLimiter:
    """Bounds the requests in flight. A 429 halves the bound (never below 1) and closes a gate until its
    Retry-After has passed; each success grows the bound by 1/bound (one more per window of successes), up to
    `max_concurrency`. So a rate-limited endpoint is used at its limit, not beyond it."""

    def __init__(self, max_concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.limit = float(max_concurrency)
        self.in_flight = 0
        self.gate_until = 0.0
        self._clock = clock
        self._cond = asyncio.Condition()

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds spent waiting at the rate-limit gate."""
        gate_wait_s = 0.0
        async with self._cond:
            while True:
                now = self._clock()
                if now < self.gate_until:
                    try:
                        await asyncio.wait_for(self._cond.wait(), timeout=self.gate_until - now)
                    except TimeoutError:
                        pass  # the gate opened: check again
                    gate_wait_s += self._clock() - now
                    continue
                if self.in_flight < max(1, int(self.limit)):
                    self.in_flight += 1
                    return gate_wait_s
                await self._cond.wait()

    async def release(
        self, outcome: Literal["ok", "rate_limited", "error"], retry_after_s: float = 0.0
    ) -> None:
        """Give the slot back and adapt the bound to the outcome."""
        async with self._cond:
            self.in_flight -= 1
            if outcome == "ok":
                self.limit = min(float(self.max_concurrency), self.limit + 1.0 / self.limit)
            elif outcome == "rate_limited":
                self.limit = max(1.0, self.limit / 2)
                self.gate_until = max(self.gate_until, self._clock() + retry_after_s)
            self._cond.notify_all()
