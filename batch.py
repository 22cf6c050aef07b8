"""The batch runner: send prompts to the wattbench service's /chat, keep every result, grade it, and combine
each measured request with every deployment profile.

Pieces, each usable on its own (the notebook calls them directly):

- prompts:   `load_prompts(path)` reads JSONL or CSV into `PromptSpec`s; `check_accuracy` grades an answer.
- sending:   `BatchProcessor` posts to `<base_url>/chat` with an httpx.AsyncClient the caller may pass in;
             sequential, fixed concurrency N, or a constant / Poisson request rate; warm-up requests; repeats;
             429s wait out their Retry-After and halve the concurrency, other transient failures back off
             exponentially with jitter; each finished request becomes a `RequestRecord`.
- keeping:   `RunStore` appends each record to a JSONL run file (flushed, fsynced) before it counts as done,
             next to a manifest; `--resume` sends only what the run file lacks.
- enriching: `build_dataframe(records, profiles)` gives one row per request x profile in the CSV schema of
             docs/architecture.md (simulated lens from gpu_profiles, provider-side and measured lenses).
- the CLI:   `cli_run(argv)` is `python wattbench.py run`.

httpx, pandas, tqdm and gpu_profiles are imported only where needed; litellm never.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import email.utils
import hashlib
import json
import math
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import httpx
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_PROMPTS_PATH = REPO_ROOT / "data" / "test_prompts.jsonl"
GRADERS: tuple[str, ...] = ("contains", "regex", "number", "exact", "none")
Arrival = Literal["constant", "poisson"]

# ----------------------------------------------------------------------------------------------------------
# Prompts and graders
# ----------------------------------------------------------------------------------------------------------


class PromptsFileError(ValueError):
    """A prompts file that cannot be used; the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class PromptSpec:
    """One prompt to send, with how to grade its answer."""

    prompt_id: str
    prompt: str
    category: str | None = None
    expected: str | float | list[str] | None = None
    grader: str = "none"
    tolerance: float = 0.0


def load_prompts(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """Read prompts from JSONL (one object per line with a "prompt" field; optional "id", "category",
    "expected", "grader", "tolerance") or CSV (a "prompt" column, the same optional columns)."""
    p = Path(path)
    if p.is_dir():
        raise PromptsFileError(f"prompts file {p} is a directory; give the .jsonl or .csv file in it")
    if not p.is_file():
        raise PromptsFileError(f"prompts file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl_rows(p)
    elif suffix == ".csv":
        rows = _read_csv_rows(p)
    else:
        raise PromptsFileError(
            f"prompts file {p}: unsupported extension {suffix or '(none)'!r}; "
            "use .jsonl (one JSON object per "
            'line with a "prompt" field) or .csv (with a "prompt" column)'
        )
    specs = [_prompt_from_row(row, where, index) for index, (where, row) in enumerate(rows, start=1)]
    if not specs:
        raise PromptsFileError(f"prompts file {p} has no prompts")
    seen: dict[str, str] = {}
    for spec, (where, _) in zip(specs, rows, strict=True):
        if spec.prompt_id in seen:
            raise PromptsFileError(
                f"{where}: id {spec.prompt_id!r} is used twice (also {seen[spec.prompt_id]})"
            )
        seen[spec.prompt_id] = where
    return specs


def _read_jsonl_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptsFileError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise PromptsFileError(f'{where} must be a JSON object like {{"prompt": "..."}}')
        rows.append((where, row))
    return rows


def _read_csv_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(_read_text(path).splitlines())
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "prompt" not in fields:
        raise PromptsFileError(
            f'prompts file {path.name} has no "prompt" column (found: {", ".join(fields)})'
        )
    rows = []
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v if v not in ("", None) else None) for k, v in raw.items()}
        rows.append((f"{path.name} line {lineno}", row))
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptsFileError(f"prompts file {path.name} is not UTF-8 text ({exc.reason})") from None


def _prompt_from_row(row: Mapping[str, Any], where: str, index: int) -> PromptSpec:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptsFileError(f'{where} has no "prompt" (a non-empty string)')
    expected = row.get("expected")
    expected = None if expected in ("", None) else expected
    grader = str(row.get("grader") or ("contains" if expected is not None else "none")).strip().lower()
    if grader not in GRADERS:
        raise PromptsFileError(f"{where}: unknown grader {grader!r}; use one of {', '.join(GRADERS)}")
    if grader != "none" and expected is None:
        raise PromptsFileError(f'{where}: grader {grader!r} needs an "expected" value')
    tolerance = _parse_tolerance(row.get("tolerance"), where)
    expected = _check_expected(expected, grader, where)
    category = row.get("category")
    return PromptSpec(
        prompt_id=str(row.get("id") or f"p{index:03d}"),
        prompt=prompt,
        category=str(category) if category not in ("", None) else None,
        expected=expected,
        grader=grader,
        tolerance=tolerance,
    )


def _parse_tolerance(value: Any, where: str) -> float:
    if value in ("", None):
        return 0.0
    try:
        tolerance = float(value)
    except (TypeError, ValueError):
        raise PromptsFileError(f"{where}: tolerance {value!r} is not a number") from None
    if not math.isfinite(tolerance) or tolerance < 0:
        raise PromptsFileError(f"{where}: tolerance must be a number >= 0, not {value!r}")
    return tolerance


def _check_expected(expected: Any, grader: str, where: str) -> str | float | list[str] | None:
    if grader == "none" or expected is None:
        return expected
    if grader == "number":
        try:
            return float(expected)
        except (TypeError, ValueError):
            raise PromptsFileError(
                f"{where}: grader 'number' needs a numeric expected value, not {expected!r}"
            ) from None
    if (
        grader == "contains"
        and isinstance(expected, list)
        and expected
        and all(isinstance(e, str) for e in expected)
    ):
        return list(expected)
    if not isinstance(expected, str):
        raise PromptsFileError(f"{where}: grader {grader!r} needs expected to be a string, not {expected!r}")
    if grader == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            raise PromptsFileError(f"{where}: expected is not a valid regular expression ({exc})") from None
    return expected


_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def numbers_in(text: str) -> list[float]:
    """The numbers written in `text`: digits (with thousands commas, decimals, exponents) and the words
    zero..twenty."""
    found = [float(m.group().replace(",", "")) for m in _NUMBER_RE.finditer(text)]
    found += [_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS]
    return found


def _normalise(text: str) -> str:
    return " ".join(text.casefold().strip().strip("\"'`").rstrip(".!?").split())


def check_accuracy(
    answer: str | None,
    expected: str | float | list[str] | None,
    grader: str = "contains",
    tolerance: float = 0.0,
) -> bool | None:
    """Grade `answer`: True / False, or None when there is nothing to grade against.

    contains: any expected string occurs in the answer (case-insensitive); regex: re.search with IGNORECASE
    and DOTALL; number: some number in the answer is within `tolerance` of expected; exact: equal after
    trimming whitespace, quotes, final punctuation and case; none: None.
    """
    if grader == "none" or expected is None:
        return None
    if answer is None:
        return False
    if grader == "contains":
        options = expected if isinstance(expected, list) else [str(expected)]
        return any(o.casefold() in answer.casefold() for o in options)
    if grader == "regex":
        return re.search(str(expected), answer, re.IGNORECASE | re.DOTALL) is not None
    if grader == "number":
        target = float(expected)  # type: ignore[arg-type]
        return any(abs(n - target) <= tolerance + 1e-9 * max(1.0, abs(target)) for n in numbers_in(answer))
    if grader == "exact":
        return _normalise(answer) == _normalise(str(expected))
    raise ValueError(f"unknown grader {grader!r}; use one of {', '.join(GRADERS)}")


def prompts_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a prompts file's bytes (the manifest uses it to refuse resuming with other prompts)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Work items and records
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """One prompt x repeat: sent once per run."""

    spec: PromptSpec
    repeat: int

    @property
    def key(self) -> str:
        return request_key(self.spec.prompt_id, self.repeat)


def request_key(prompt_id: str, repeat: int) -> str:
    """The stable id of a prompt x repeat within a run (the CSV's request_id)."""
    return f"{prompt_id}-r{repeat}"


def plan_requests(prompts: Sequence[PromptSpec], repeats: int = 1) -> list[WorkItem]:
    """Every prompt once per repeat, repeat by repeat."""
    return [WorkItem(spec, r) for r in range(repeats) for spec in prompts]


@dataclass
class RequestRecord:
    """A finished request (served or failed) as it is written to the run file."""

    key: str
    prompt_id: str
    repeat: int
    prompt: str
    category: str | None
    expected: str | float | list[str] | None
    grader: str
    tolerance: float
    session: str
    success: bool
    error: str | None
    status_code: int | None
    attempts: int
    rate_limited: int  # how many of the attempts got a 429
    retry_wait_s: float  # time spent waiting before retries and at the rate-limit gate: not latency
    started_at: str  # ISO-8601 UTC, when the last attempt was sent
    t_start_epoch_s: float
    t_end_epoch_s: float
    client_latency_s: float | None  # the last attempt's HTTP round trip, seen by the client
    response: dict[str, Any] | None = None
    requested_model: str | None = None  # the model asked for (or the service's default): kept when unanswered


# ----------------------------------------------------------------------------------------------------------
# Retries and adaptive concurrency
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a request is recorded as failed."""

    max_attempts: int = 6  # attempts for transient failures: 5xx, timeouts, dropped connections
    max_rate_limited: int = 100  # 429s one request may get before it is recorded as failed
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    default_retry_after_s: float = 1.0  # a 429 without a usable Retry-After
    max_retry_after_s: float = 300.0
    abort_after_connect_failures: int = 8  # consecutive refused connections: the service is gone


def backoff_delay_s(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with equal jitter before retry number `retry` (1 = the first retry):
    half of min(max, base * 2**(retry-1)) plus a uniform draw of up to the other half."""
    cap = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (retry - 1))
    return cap / 2 + rng.uniform(0.0, cap / 2)


def parse_retry_after(headers: Mapping[str, str], now_epoch_s: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (milliseconds) or `Retry-After` (seconds, possibly fractional, or
    an HTTP date); None when neither is present or readable."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if lower.get("retry-after-ms"):
            return max(0.0, float(lower["retry-after-ms"]) / 1000.0)
    except ValueError:
        pass  # unreadable: fall back to Retry-After
    value = (lower.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number of seconds: an HTTP date?
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_epoch_s is None else now_epoch_s
    return max(0.0, when.timestamp() - now)


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


def arrival_offsets_s(
    n: int, rate_rps: float, arrival: Arrival = "constant", rng: random.Random | None = None
) -> list[float]:
    """Send times (seconds after the start) of n requests at `rate_rps` requests per second: evenly spaced
    (constant) or with exponential gaps (poisson); the first is at 0."""
    if rate_rps <= 0:
        raise ValueError(f"rate must be > 0 requests per second, not {rate_rps}")
    if arrival == "constant":
        return [i / rate_rps for i in range(n)]
    if arrival == "poisson":
        rng = rng or random.Random()
        offsets, t = [], 0.0
        for _ in range(n):
            offsets.append(t)
            t += rng.expovariate(rate_rps)
        return offsets
    raise ValueError(f"unknown arrival {arrival!r}; use constant or poisson")


# ----------------------------------------------------------------------------------------------------------
# The batch processor
# ----------------------------------------------------------------------------------------------------------


class ServiceGoneError(RuntimeError):
    """The service stopped answering (refused connections); what was measured is saved."""


class AuthRejectedError(RuntimeError):
    """The service refused the bearer token (401/403); nothing more can succeed."""


@dataclass
class _Attempt:
    kind: Literal["ok", "rate_limited", "transient", "connect", "auth", "fatal"]
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    response: dict[str, Any] | None = None
    started_epoch_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class Progress:
    """Running totals for the progress bar."""

    failed: int = 0
    retries: int = 0
    completion_tokens: int = 0
    started_s: float = field(default_factory=time.monotonic)

    def postfix(self) -> dict[str, Any]:
        elapsed_s = max(1e-9, time.monotonic() - self.started_s)
        return {
            "failed": self.failed,
            "retries": self.retries,
            "tok/s": round(self.completion_tokens / elapsed_s, 1),
        }


class BatchProcessor:
    """Sends WorkItems to `<base_url>/chat` and returns a RequestRecord for each.

    base_url: the service (e.g. ServiceProcess.url); token: sent as `Authorization: Bearer`, never printed;
    client: an httpx.AsyncClient (created and closed here when None); concurrency: the most requests in flight
    (1 = sequential); rate_rps: send at this many requests per second instead (arrival constant or poisson;
    concurrency then caps what may be in flight); warmup: requests sent first and not recorded;
    model: sent as "model" (None: the service's default); service_model: the service's default model (its
    /health "model"), recorded with requests the service never answered when `model` is None; on_record:
    called with each record as soon as it is final (the CLI appends it to the run file there), before it
    counts as done.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 1,
        rate_rps: float | None = None,
        arrival: Arrival = "constant",
        warmup: int = 0,
        model: str | None = None,
        service_model: str | None = None,
        timeout_s: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        seed: int | None = None,
        on_record: Callable[[RequestRecord], None] | None = None,
        progress: bool = True,
        run_id: str = "",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        if rate_rps is not None and rate_rps <= 0:
            raise ValueError(f"rate must be > 0 requests per second, not {rate_rps}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, not {warmup}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = client
        self.concurrency = concurrency
        self.rate_rps = rate_rps
        self.arrival = arrival
        self.warmup = warmup
        self.model = model
        self.service_model = service_model
        self.timeout_s = timeout_s
        self.retry = retry
        self.rng = random.Random(seed)
        self.on_record = on_record
        self.progress = progress
        self.run_id = run_id
        self.session = uuid.uuid4().hex[:8]
        self.limiter: AdaptiveLimiter | None = None
        self._connect_failures = 0
        self._totals = Progress()

    # -- public ----------------------------------------------------------------------------------------
    async def run(
        self, items: Sequence[WorkItem], *, done_before: int = 0, total: int | None = None
    ) -> list[RequestRecord]:
        """Send the warm-up requests, then every item; return the records in the order they finished.

        Raises ServiceGoneError / AuthRejectedError when going on is pointless (RunStoreError when on_record
        cannot write); every record finished before that has already been passed to on_record."""
        import httpx

        own_client = self._client is None
        client = self._client or httpx.AsyncClient(timeout=self.timeout_s)
        try:
            self.limiter = AdaptiveLimiter(self.concurrency)
            await self._warm_up(client, items)
            self._totals = Progress()  # tokens/s counts from here, after the warm-up
            bar = self._make_bar(total if total is not None else len(items) + done_before, done_before)
            try:
                return await self._send_all(client, items, bar)
            finally:
                if bar is not None:
                    bar.close()
        finally:
            if own_client:
                await client.aclose()

    def run_sync(self, items: Sequence[WorkItem], **kwargs: Any) -> list[RequestRecord]:
        """`run` for callers without an event loop; inside Jupyter (a loop is running) it runs in a thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(items, **kwargs))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.run(items, **kwargs)).result()

    # -- sending ---------------------------------------------------------------------------------------
    async def _warm_up(self, client: httpx.AsyncClient, items: Sequence[WorkItem]) -> None:
        for i in range(self.warmup if items else 0):
            await self._send_item(client, items[i % len(items)], request_id=f"warmup-{i}")

    async def _send_all(
        self, client: httpx.AsyncClient, items: Sequence[WorkItem], bar: Any
    ) -> list[RequestRecord]:
        records: list[RequestRecord] = []

        async def one(item: WorkItem, delay_s: float = 0.0) -> None:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            record = await self._send_item(client, item)
            if self.on_record is not None:
                try:
                    self.on_record(record)  # persisted before it counts as done
                except OSError as exc:
                    raise RunStoreError(
                        f"cannot write the run file ({exc}); free the disk and rerun with "
                        "--resume: what was written so far is kept"
                    ) from None
            records.append(record)
            self._count(record, bar)

        offsets = (
            arrival_offsets_s(len(items), self.rate_rps, self.arrival, self.rng)
            if self.rate_rps is not None
            else [0.0] * len(items)
        )
        try:
            async with asyncio.TaskGroup() as group:
                for item, offset in zip(items, offsets, strict=True):
                    group.create_task(one(item, offset))
        except* (ServiceGoneError, AuthRejectedError, RunStoreError) as eg:
            raise eg.exceptions[0] from None
        return records

    async def _send_item(
        self, client: httpx.AsyncClient, item: WorkItem, request_id: str | None = None
    ) -> RequestRecord:
        """Send one item until it is served or given up on (request_id: the X-Request-ID, default its key)."""
        assert self.limiter is not None
        attempts = rate_limited = transient = 0
        wait_s = 0.0
        while True:
            wait_s += await self.limiter.acquire()
            attempt = await self._attempt(client, item, request_id or item.key)
            attempts += 1
            if attempt.kind == "rate_limited":
                rate_limited += 1
                delay_s = min(
                    self.retry.max_retry_after_s,
                    attempt.retry_after_s
                    if attempt.retry_after_s is not None
                    else self.retry.default_retry_after_s,
                )
                await self.limiter.release("rate_limited", delay_s)
                if rate_limited >= self.retry.max_rate_limited:
                    return self._record(item, attempt, attempts, rate_limited, wait_s)
                continue  # the limiter's gate makes this request (and every other) wait delay_s
            await self.limiter.release("ok" if attempt.kind == "ok" else "error")
            self._note_connect(attempt)
            if attempt.kind in ("ok", "fatal"):
                return self._record(item, attempt, attempts, rate_limited, wait_s)
            if attempt.kind == "auth":
                raise AuthRejectedError(attempt.error)
            transient += 1
            if transient >= self.retry.max_attempts:
                return self._record(item, attempt, attempts, rate_limited, wait_s)
            delay_s = attempt.retry_after_s or backoff_delay_s(transient, self.retry, self.rng)
            await asyncio.sleep(delay_s)
            wait_s += delay_s

    def _note_connect(self, attempt: _Attempt) -> None:
        if attempt.kind != "connect":
            self._connect_failures = 0
            return
        self._connect_failures += 1
        if self._connect_failures >= self.retry.abort_after_connect_failures:
            raise ServiceGoneError(
                f"the service at {shown_url(self.base_url)} refused {self._connect_failures} "
                "connections in a row "
                f"({attempt.error}); what was measured is saved: "
                "start the service again and rerun with --resume"
            )

    async def _attempt(self, client: httpx.AsyncClient, item: WorkItem, request_id: str) -> _Attempt:
        import httpx

        body: dict[str, Any] = {"prompt": item.spec.prompt}
        if self.model:
            body["model"] = self.model
        headers = {"X-Request-ID": f"{self.run_id}/{request_id}" if self.run_id else request_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started_epoch_s, t0 = time.time(), time.perf_counter()
        try:
            resp = await client.post(
                f"{self.base_url}/chat", json=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.TransportError as exc:
            attempt = self._transport_failure(exc)
        else:
            attempt = classify_response(resp.status_code, resp.headers, resp.content)
        attempt.started_epoch_s, attempt.elapsed_s = started_epoch_s, time.perf_counter() - t0
        return attempt

    def _transport_failure(self, exc: httpx.TransportError) -> _Attempt:
        """An attempt that got no HTTP answer: timed out, refused, or dropped."""
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return _Attempt("transient", error=f"timed out after {self.timeout_s:g} s ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return _Attempt("connect", error=f"cannot connect to {shown_url(self.base_url)} ({exc})")
        return _Attempt("transient", error=f"connection dropped ({type(exc).__name__}: {exc})")

    def _record(
        self, item: WorkItem, attempt: _Attempt, attempts: int, rate_limited: int, wait_s: float
    ) -> RequestRecord:
        spec = item.spec
        return RequestRecord(
            key=item.key,
            prompt_id=spec.prompt_id,
            repeat=item.repeat,
            prompt=spec.prompt,
            category=spec.category,
            expected=spec.expected,
            grader=spec.grader,
            tolerance=spec.tolerance,
            session=self.session,
            success=attempt.kind == "ok",
            error=attempt.error,
            status_code=attempt.status_code,
            attempts=attempts,
            rate_limited=rate_limited,
            retry_wait_s=round(wait_s, 6),
            started_at=iso_utc(attempt.started_epoch_s),
            t_start_epoch_s=attempt.started_epoch_s,
            t_end_epoch_s=attempt.started_epoch_s + attempt.elapsed_s,
            client_latency_s=attempt.elapsed_s if attempt.kind == "ok" else None,
            response=attempt.response,
            requested_model=self.model or self.service_model,
        )

    # -- progress --------------------------------------------------------------------------------------
    def _make_bar(self, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc="requests", unit="req", dynamic_ncols=True)

    def _count(self, record: RequestRecord, bar: Any) -> None:
        totals = self._totals
        totals.failed += 0 if record.success else 1
        totals.retries += record.attempts - 1
        totals.completion_tokens += int((record.response or {}).get("completion_tokens") or 0)
        if bar is not None:
            bar.set_postfix(totals.postfix(), refresh=False)
            bar.update(1)  # redraws, with the postfix just set


def classify_response(status_code: int, headers: Mapping[str, str], content: bytes) -> _Attempt:
    """What one HTTP answer from /chat means for the request: served, rate-limited, retry, or give up."""
    if status_code == 200:
        try:
            payload = json.loads(content)
        except ValueError:
            return _Attempt("fatal", 200, "the service answered 200 with a body that is not JSON")
        if not isinstance(payload, dict) or "text" not in payload:
            return _Attempt(
                "fatal", 200, 'the service answered 200 without a "text" field (not a /chat answer)'
            )
        return _Attempt("ok", 200, response=payload)
    detail = _error_detail(content)
    error = f"HTTP {status_code}: {detail}"
    if status_code == 429:
        return _Attempt("rate_limited", 429, error, retry_after_s=parse_retry_after(headers))
    if status_code in (401, 403):
        return _Attempt(
            "auth",
            status_code,
            f"{error} (the service refused the token: set WATTBENCH_API_TOKEN or pass --token)",
        )
    if status_code >= 500 or status_code == 408:
        return _Attempt("transient", status_code, error, retry_after_s=parse_retry_after(headers))
    return _Attempt("fatal", status_code, error)


def _error_detail(content: bytes) -> str:
    try:
        payload = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:300] or "(empty body)"
    if isinstance(payload, dict) and "detail" in payload:
        return str(payload["detail"])[:300]
    return json.dumps(payload)[:300]


def iso_utc(epoch_s: float) -> str:
    """An epoch time as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------------------------------------
# The run file
# ----------------------------------------------------------------------------------------------------------


class RunStoreError(ValueError):
    """A run that cannot be resumed as asked; the message says why and what to do."""


MANIFEST_CHECKED = ("prompts_sha256", "model", "profiles", "repeats")


class RunStore:
    """A run on disk: `<out>/runs/<run_id>/manifest.json` and `requests.jsonl` (one finished request per
    line, appended, flushed and fsynced before the request counts as done)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.run_id = self.directory.name
        self.manifest_path = self.directory / "manifest.json"
        self.records_path = self.directory / "requests.jsonl"
        self._handle: Any = None

    @classmethod
    def create(
        cls, out_dir: str | os.PathLike[str], manifest: Mapping[str, Any], run_id: str | None = None
    ) -> RunStore:
        """Start a new run under `out_dir/runs/`."""
        run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
        store = cls(Path(out_dir) / "runs" / run_id)
        store.directory.mkdir(parents=True, exist_ok=False)
        data = {"run_id": run_id, "created_at": iso_utc(time.time()), **manifest}
        _write_atomic(store.manifest_path, json.dumps(data, indent=2) + "\n")
        store.records_path.touch()
        return store

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], run_id: str | None = None) -> RunStore:
        """An existing run: `run_id`, or the most recently started one under `out_dir/runs/`."""
        runs_dir = Path(out_dir) / "runs"
        if run_id:
            store = cls(runs_dir / run_id)
            if not store.manifest_path.is_file():
                raise RunStoreError(f"no run {run_id!r} under {runs_dir} (no manifest.json there)")
            return store
        candidates = sorted(p.parent for p in runs_dir.glob("*/manifest.json")) if runs_dir.is_dir() else []
        if not candidates:
            raise RunStoreError(f"nothing to resume: no run under {runs_dir}; drop --resume to start one")
        return cls(max(candidates, key=lambda d: d.joinpath("manifest.json").stat().st_mtime_ns))

    def manifest(self) -> dict[str, Any]:
        """The run's manifest.json; RunStoreError when it is not a JSON object."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunStoreError(
                f"{self.manifest_path} is damaged ({exc}); start a new run without --resume"
            ) from None
        if not isinstance(data, dict):
            raise RunStoreError(
                f"{self.manifest_path} is not a JSON object; start a new run without --resume"
            )
        return data

    def check_matches(self, wanted: Mapping[str, Any]) -> None:
        """Refuse to resume when the prompts, model, profiles or repeats differ from the run's manifest."""
        have = self.manifest()
        for key in MANIFEST_CHECKED:
            if key in wanted and have.get(key) != wanted[key]:
                what = "prompts file content" if key == "prompts_sha256" else key
                raise RunStoreError(
                    f"cannot resume run {self.run_id}: "
                    f"its {what} was {have.get(key)!r}, now {wanted[key]!r}; "
                    "rerun with the run's options, or drop --resume to start a new run"
                )

    def load_records(self) -> list[dict[str, Any]]:
        """Every complete line of the run file. A last line cut short by a kill is dropped and cut off the
        file, so that appending goes on cleanly."""
        if not self.records_path.is_file():
            return []
        data = self.records_path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.records_path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        records = []
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if line.strip():
                records.append(self._parse_line(line, lineno))
        return records

    def _parse_line(self, line: bytes, lineno: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as exc:
            record = exc
        if not isinstance(record, dict) or not {"key", "success"} <= record.keys():
            raise RunStoreError(
                f"{self.records_path} line {lineno} is not a request record; delete that line "
                "(that request is then sent again) and rerun"
            )
        return record

    def append(self, record: RequestRecord | Mapping[str, Any]) -> None:
        """Write one finished request and make it durable (flush + fsync) before returning."""
        if self._handle is None:
            self._handle = open(self.records_path, "a", encoding="utf-8")
        row = asdict(record) if isinstance(record, RequestRecord) else dict(record)
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def latest_by_key(records: Iterable[Mapping[str, Any] | RequestRecord]) -> dict[str, dict[str, Any]]:
    """The last record of each request key (a resumed run may have retried a failed request)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        row = asdict(record) if isinstance(record, RequestRecord) else dict(record)
        latest[row["key"]] = row
    return latest


def pending_items(items: Sequence[WorkItem], records: Iterable[Mapping[str, Any]]) -> list[WorkItem]:
    """The items a resumed run still has to send: never served (missing, or recorded as failed)."""
    served = {key for key, r in latest_by_key(records).items() if r.get("success")}
    return [item for item in items if item.key not in served]


# ----------------------------------------------------------------------------------------------------------
# Enrichment: measured requests x deployment profiles -> the CSV rows
# ----------------------------------------------------------------------------------------------------------

_RESPONSE_MEASURES = (  # the /chat response's measurements, each a CSV column of the same name
    "latency_s",
    "ttft_s",
    "tpot_s",
    "tokens_per_s",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "token_source",
    "cost_usd",
)
_PROVIDER_KEYS = (
    "provider_energy_kwh",
    "provider_energy_kwh_min",
    "provider_energy_kwh_max",
    "provider_carbon_gco2e",
    "provider_carbon_gco2e_min",
    "provider_carbon_gco2e_max",
)
REQUEST_COLUMNS: tuple[str, ...] = (
    "run_id",
    "request_id",
    "prompt_id",
    "repeat",
    "prompt",
    "category",
    "route",
    "route_reason",
    "temperature",
    "model",
    "success",
    "error",
    "status_code",
    "attempts",
    "retry_wait_s",
    "started_at",
    "t_start_s",
    *_RESPONSE_MEASURES,
    "expected",
    "grader",
    "correct",
    "response_text",
    "measured_energy_kwh",
    "measured_energy_method",
    *_PROVIDER_KEYS,
)
EXTRA_REQUEST_COLUMNS: tuple[str, ...] = ("client_latency_s", "service_request_id", "session")
_RESPONSE_FIELDS = (
    "route",
    "route_reason",
    "temperature",
    "model",
    *_RESPONSE_MEASURES,
    "measured_energy_kwh",
    "measured_energy_method",
)


def idle_gaps_s(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per served request: the time the service sat idle before it, i.e. from the end of the latest earlier
    served request of the same session to this one's start (0 when another was still in flight, and for the
    first of each session)."""
    gaps: dict[str, float] = {}
    by_session: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("success"):
            by_session.setdefault(r.get("session", ""), []).append(r)
    for session_records in by_session.values():
        latest_end: float | None = None
        for r in sorted(session_records, key=lambda r: r["t_start_epoch_s"]):
            start = r["t_start_epoch_s"]
            gaps[r["key"]] = 0.0 if latest_end is None else max(0.0, start - latest_end)
            latest_end = r["t_end_epoch_s"] if latest_end is None else max(latest_end, r["t_end_epoch_s"])
    return gaps


def request_row(record: Mapping[str, Any], run_id: str, t0_epoch_s: float) -> dict[str, Any]:
    """The per-request CSV columns of one record."""
    response = record.get("response") or {}
    expected = record.get("expected")
    row: dict[str, Any] = {
        "run_id": run_id,
        "request_id": record["key"],
        "prompt_id": record["prompt_id"],
        "repeat": record["repeat"],
        "prompt": record["prompt"],
        "category": record.get("category"),
        "success": bool(record["success"]),
        "error": record.get("error"),
        "status_code": record.get("status_code"),
        "attempts": record["attempts"],
        "retry_wait_s": record["retry_wait_s"],
        "started_at": record["started_at"],
        "t_start_s": round(record["t_start_epoch_s"] - t0_epoch_s, 6),
        "expected": json.dumps(expected) if isinstance(expected, list) else expected,
        "grader": record.get("grader"),
        "correct": check_accuracy(
            response.get("text") if record["success"] else None,
            expected,
            record.get("grader") or "none",
            float(record.get("tolerance") or 0.0),
        ),
        "response_text": response.get("text"),
        "client_latency_s": record.get("client_latency_s"),
        "service_request_id": response.get("request_id"),
        "session": record.get("session"),
    }
    for name in _RESPONSE_FIELDS:
        row[name] = response.get(name)
    if row["model"] is None:  # never answered: the model that was asked for
        row["model"] = record.get("requested_model")
    for name in _PROVIDER_KEYS:
        row[name] = None
    return row


def build_dataframe(
    records: Iterable[Mapping[str, Any] | RequestRecord],
    profiles: Mapping[str, Any],
    *,
    run_id: str,
    enhance: Callable[..., Mapping[str, Any]] | None = None,
    provider_estimate: Callable[..., Mapping[str, Any] | None] | None = None,
) -> pd.DataFrame:
    """One row per request (the last record of each key) x profile, in the column order of the CSV contract.

    records: RequestRecords, or their dicts as read back from a run file (RunStore.load_records()).
    profiles: name -> DeploymentProfile (gpu_profiles.load_profiles()). enhance / provider_estimate default to
    gpu_profiles.calculate_enhanced_metrics / provider_side_estimate. A failed request still gets its rows,
    with empty energy columns."""
    import pandas as pd

    import gpu_profiles

    enhance = enhance or gpu_profiles.calculate_enhanced_metrics
    provider_estimate = provider_estimate or gpu_profiles.provider_side_estimate
    latest = sorted(latest_by_key(records).values(), key=lambda r: r["t_start_epoch_s"])
    t0 = min((r["t_start_epoch_s"] for r in latest), default=0.0)
    gaps = idle_gaps_s(latest)
    rows: list[dict[str, Any]] = []
    for record in latest:
        base = request_row(record, run_id, t0)
        if record["success"]:
            base.update(_provider_columns(base, provider_estimate))
        for name, profile in profiles.items():
            rows.append(
                {**base, **_profile_columns(record, name, profile, gaps.get(record["key"], 0.0), enhance)}
            )
    columns = list(REQUEST_COLUMNS) + list(EXTRA_REQUEST_COLUMNS) + list(gpu_profiles.PROFILE_COLUMNS)
    extra = [c for row in rows for c in row if c not in columns]
    return pd.DataFrame(rows, columns=columns + list(dict.fromkeys(extra)))


def _provider_columns(
    base: Mapping[str, Any], provider_estimate: Callable[..., Mapping[str, Any] | None]
) -> dict[str, Any]:
    estimate = provider_estimate(
        str(base["model"]), int(base["completion_tokens"] or 0), float(base["latency_s"] or 0.0)
    )
    return {k: estimate.get(k) for k in _PROVIDER_KEYS} if estimate else {}


def _profile_columns(
    record: Mapping[str, Any],
    name: str,
    profile: Any,
    idle_s: float,
    enhance: Callable[..., Mapping[str, Any]],
) -> dict[str, Any]:
    if not record["success"]:
        return {"profile": name}
    response = record["response"]
    params_b = response.get("model_params_b")
    try:
        metrics = dict(
            enhance(response, profile, idle_s=idle_s, active_params_b=params_b, total_params_b=params_b)
        )
    except ValueError as exc:  # e.g. gpu_profiles.ModelDoesNotFitError: the row stays, without energy
        return {"profile": name, "energy_method": f"not simulated: {exc}"}
    metrics["profile"] = metrics.get("profile") or name
    return metrics


# ----------------------------------------------------------------------------------------------------------
# The command line: python wattbench.py run
# ----------------------------------------------------------------------------------------------------------


class CliError(Exception):
    """Bad input for `wattbench.py run`: printed as one `error: ...` line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="wattbench.py run",
        description="Benchmark a model through the wattbench service and "
        "write outputs/ai_metrics_<timestamp>.csv (one row per request x deployment profile).",
    )
    p.add_argument("--server-url", help="a running service (default: start app.py on a free 127.0.0.1 port)")
    p.add_argument("--token", help="bearer token for the service (default: env WATTBENCH_API_TOKEN)")
    p.add_argument("--model", help="LiteLLM model string sent with each request (default: the service's)")
    p.add_argument(
        "--prompts",
        help=f"JSONL or CSV prompts file (default: {DEFAULT_PROMPTS_PATH.relative_to(REPO_ROOT)})",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, help="requests in flight at most (default 1: sequential)")
    load.add_argument("--rate", type=float, help="send at this many requests per second instead")
    p.add_argument(
        "--arrival",
        choices=("constant", "poisson"),
        default="constant",
        help="with --rate: evenly spaced or Poisson arrivals (default constant)",
    )
    p.add_argument("--max-concurrency", type=int, default=32, help="with --rate: cap on requests in flight")
    p.add_argument("--repeats", type=int, help="send each prompt this many times (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up requests first (default 1)")
    p.add_argument(
        "--profiles", help="comma-separated deployment profiles (default: gpu_profiles.DEFAULT_PROFILES)"
    )
    p.add_argument(
        "--profiles-file",
        metavar="FILE",
        help="your JSON file of gpus / datacenters / profiles, added to the built-in ones "
        "(gpu_profiles.load_profiles(FILE))",
    )
    p.add_argument("--out", default="outputs", help="output directory (default outputs/)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="finish an interrupted run (default: the latest under --out/runs/), "
        "sending only what is missing",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request attempt (default 300)")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=RetryPolicy.max_attempts,
        help="attempts per request for 5xx / timeouts / dropped connections",
    )
    p.add_argument("--seed", type=int, help="seed for jitter and Poisson arrivals")
    p.add_argument("--no-report", action="store_true", help="write only the CSV (no dashboards or report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@dataclass
class RunOptions:
    """The checked options of one `run`: a resumed run has its store, a new one only its manifest."""

    prompts: list[PromptSpec]
    profiles: dict[str, Any]
    model: str | None
    repeats: int
    manifest: dict[str, Any]
    store: RunStore | None = None


@dataclass
class RunResult:
    """What one `run` produced: exit_code 0 (every request served) or 1 (some failed, or the run stopped
    early: `stopped` says why; what was measured is saved)."""

    exit_code: int
    run_id: str
    csv_path: Path
    frame: pd.DataFrame
    stopped: str | None = None


def cli_run(argv: Sequence[str]) -> int:
    """`python wattbench.py run ...`: returns 0 when every request was served, 1 when some failed or the run
    stopped early (what was measured is saved), 2 for bad input."""
    try:
        args = _parser().parse_args(list(argv))
        result = _execute(args, _prepare(args))
    except (CliError, RunStoreError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if result.stopped:
        print(f"error: {one_line(result.stopped)}", file=sys.stderr)
    return result.exit_code


def shown_url(url: str) -> str:
    """`url` as it may be printed or written: a user:password part becomes ***."""
    return re.sub(r"//[^/@]*@", "//***@", url, count=1)


def one_line(text: str) -> str:
    """`text` with its line breaks (e.g. from a service's error detail) folded into spaces."""
    return " ".join(text.split())


def run_benchmark(server_url: str | None = None, **options: Any) -> RunResult:
    """`wattbench.py run` from Python (a notebook): keyword arguments are the command's long options with
    underscores (prompts="my.jsonl", concurrency=4, rate=2.0, repeats=3, profiles="T4_COLAB,A100_SIMULATED",
    out="outputs", resume="latest", token=..., no_report=True, ...). Raises ValueError for bad input."""
    args = _parser().parse_args([])
    unknown = [k for k in options if not hasattr(args, k)]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; use the long options of `wattbench.py run`"
        )
    args.server_url = server_url
    for key, value in options.items():
        setattr(args, key, value)
    if args.concurrency is not None and args.rate is not None:
        raise ValueError("give concurrency or rate, not both")
    try:
        return _execute(args, _prepare(args))
    except CliError as exc:
        raise ValueError(str(exc)) from None


def _prepare(args: argparse.Namespace) -> RunOptions:
    """Check everything that can be checked before a request is sent."""
    for name in ("concurrency", "repeats", "max_concurrency", "max_attempts"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, not {value}")
    if args.warmup < 0:
        raise CliError(f"--warmup must be >= 0, not {args.warmup}")
    if args.rate is not None and not (args.rate > 0 and math.isfinite(args.rate)):
        raise CliError(f"--rate must be a number of requests per second > 0, not {args.rate}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise CliError(f"--timeout must be a number of seconds > 0, not {args.timeout}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file; give a directory")
    store, previous = _open_store(args)
    prompts_path = Path(args.prompts or previous.get("prompts_path") or DEFAULT_PROMPTS_PATH)
    try:
        prompts = load_prompts(prompts_path)
    except PromptsFileError as exc:
        raise CliError(str(exc)) from None
    profiles_file = args.profiles_file or previous.get("profiles_file")
    profiles = _select_profiles(
        args.profiles or ",".join(previous.get("profiles") or []) or None, profiles_file
    )
    model = args.model if args.model is not None else previous.get("model")
    repeats = args.repeats or previous.get("repeats") or 1
    manifest = {
        "prompts_path": str(prompts_path.resolve()),
        "prompts_sha256": prompts_sha256(prompts_path),
        "model": model,
        "profiles": list(profiles),
        "profiles_file": str(Path(profiles_file).resolve()) if profiles_file else None,
        "repeats": repeats,
    }
    if store is not None:
        try:
            store.check_matches(manifest)
        except RunStoreError as exc:
            raise CliError(str(exc)) from None
    return RunOptions(prompts, profiles, model, repeats, manifest, store)


def _open_store(args: argparse.Namespace) -> tuple[RunStore | None, dict[str, Any]]:
    if args.resume is None:
        return None, {}
    try:
        store = RunStore.open(args.out, None if args.resume == "latest" else args.resume)
        return store, store.manifest()
    except RunStoreError as exc:
        raise CliError(str(exc)) from None


def _select_profiles(spec: str | None, profiles_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The chosen deployment profiles by name (default: gpu_profiles.DEFAULT_PROFILES), from the built-in ones
    plus the user's `profiles_file`."""
    import gpu_profiles

    try:
        available = gpu_profiles.load_profiles(profiles_file)
    except gpu_profiles.DataFileError as exc:
        raise CliError(f"--profiles-file: {exc}") from None
    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else list(gpu_profiles.DEFAULT_PROFILES)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise CliError(
            f"unknown profile(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(sorted(available))}"
        )
    return {n: available[n] for n in names}


def _default_token() -> str | None:
    from config import get_settings

    secret = get_settings().api_token
    return secret.get_secret_value() if secret is not None else None


def check_service(
    base_url: str, token: str | None, timeout_s: float = 5.0, model: str | None = None
) -> str | None:
    """Raise CliError unless GET <base_url>/health answers 200, says the model (`model`, else the service's
    default) is ready, and a token is at hand when the service wants one; return the model /health names."""
    import httpx

    shown = shown_url(base_url)
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/health", params={"model": model} if model else None,
                         timeout=timeout_s)
    except httpx.InvalidURL as exc:
        raise CliError(
            f"--server-url {shown!r} is not a valid URL ({exc}); e.g. http://127.0.0.1:8000"
        ) from None
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the service at {shown} ({type(exc).__name__}: {exc}); start it with "
            "`python wattbench.py serve` or leave out --server-url to let run start one"
        ) from None
    if resp.status_code != 200:
        raise CliError(
            f"the service at {shown} answered GET /health with HTTP {resp.status_code}: "
            f"{_error_detail(resp.content)}"
        )
    try:
        health = resp.json()
    except ValueError:
        health = {}
    health = health if isinstance(health, dict) else {}
    if health.get("ready") is False:
        raise CliError(
            f"the service at {shown} is up but its model is not ready: "
            f"{health.get('detail') or 'see the service log'}"
        )
    if health.get("auth_required") and not token:
        raise CliError(
            f"the service at {shown} wants a bearer token: set WATTBENCH_API_TOKEN or pass --token"
        )
    model = health.get("model")
    return model if isinstance(model, str) and model else None


def _execute(args: argparse.Namespace, options: RunOptions) -> RunResult:
    """Send what is missing, then build the CSV (and the report) from the whole run file."""
    items = plan_requests(options.prompts, options.repeats)
    store, stopped = options.store, None
    todo = pending_items(items, store.load_records()) if store is not None else items
    if todo:
        store, stopped = _send(args, options, items, todo)
    assert store is not None
    df = build_dataframe(store.load_records(), options.profiles, run_id=store.run_id)
    try:
        csv_path = write_csv(df, Path(args.out))
    except OSError as exc:
        raise CliError(
            f"cannot write the CSV in {args.out} ({exc.strerror or exc}); every request is kept in "
            f"{store.records_path}: free space and rerun with --resume {store.run_id}"
        ) from None
    print(
        f"wrote {csv_path} ({df['request_id'].nunique()} requests x {len(options.profiles)} profiles = "
        f"{len(df)} rows; run file {store.records_path})"
    )
    if not args.no_report:
        _build_outputs(df, Path(args.out), csv_path)
    print(summary_line(df))
    code = 1 if stopped or not bool(df["success"].all()) else 0
    return RunResult(code, store.run_id, csv_path, df, stopped)


def _send(
    args: argparse.Namespace, options: RunOptions, items: list[WorkItem], todo: list[WorkItem]
) -> tuple[RunStore, str | None]:
    """Reach (or start) the service, send `todo` and append each record to the run file (created now for a new
    run). Returns the store and why the run stopped early (None when it did not)."""
    from server import ServiceProcess, ServiceStartError

    token = args.token or _default_token()
    if args.server_url:
        service_model = check_service(args.server_url, token, model=options.model)
        return _send_to(args.server_url, token, service_model, args, options, items, todo)
    try:
        with ServiceProcess(log_path=Path(args.out) / "service.log") as service:
            service_model = check_service(service.url, token, model=options.model)
            return _send_to(service.url, token, service_model, args, options, items, todo)
    except ServiceStartError as exc:
        lines = str(exc).splitlines()
        raise CliError(
            lines[0] + (f" (last log line: {lines[-1].strip()})" if len(lines) > 1 else "")
        ) from None


def _send_to(
    url: str,
    token: str | None,
    service_model: str | None,
    args: argparse.Namespace,
    options: RunOptions,
    items: list[WorkItem],
    todo: list[WorkItem],
) -> tuple[RunStore, str | None]:
    try:
        store = options.store or RunStore.create(args.out, options.manifest)
    except OSError as exc:
        raise CliError(f"cannot create the run under --out {args.out} ({exc.strerror or exc})") from None
    processor = BatchProcessor(
        url,
        token=token,
        concurrency=args.max_concurrency if args.rate else (args.concurrency or 1),
        rate_rps=args.rate,
        arrival=args.arrival,
        warmup=args.warmup,
        model=options.model,
        service_model=service_model,
        timeout_s=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        seed=args.seed,
        on_record=store.append,
        progress=not args.no_progress,
        run_id=store.run_id,
    )
    print(
        f"run {store.run_id}: sending {len(todo)} of {len(items)} requests to {shown_url(url)}"
        + (" (resumed)" if options.store is not None else ""),
        flush=True,
    )
    try:
        processor.run_sync(todo, done_before=len(items) - len(todo), total=len(items))
    except (ServiceGoneError, AuthRejectedError, RunStoreError) as exc:
        return store, str(exc)
    finally:
        store.close()
    return store, None


def write_csv(df: pd.DataFrame, out_dir: Path) -> Path:
    """Write `ai_metrics_<UTC timestamp>.csv` under out_dir and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ai_metrics_{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}.csv"
    write_frame_csv(df, path)
    return path


CSV_FLOAT_FORMAT = "%.12g"  # 12 significant digits: far finer than any measured or simulated figure


def write_frame_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """`df.to_csv(path, index=False)`, about six times as fast on a large run (benchmarks/bench_csv.py):
    floats with 12 significant digits (whole numbers without ".0"), missing values empty, text quoted as the
    csv module does (QUOTE_MINIMAL)."""
    cells = [csv_cells(df[name]) for name in df.columns]
    header = ",".join(_csv_quote(str(name)) for name in df.columns)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        fh.writelines(line + "\n" for line in map(",".join, zip(*cells, strict=True)))


def csv_cells(column: pd.Series) -> list[str]:
    """A column's values as CSV fields: floats as CSV_FLOAT_FORMAT, missing ('' for None, NaN, NA) empty, text
    quoted where it holds a comma, quote or line break."""
    import numpy as np
    import pandas as pd

    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":
        # a run repeats its numbers (each request once per profile, each profile's constants once per
        # request): format each distinct value once; code -1 (NaN) takes the "" appended last
        codes, distinct = pd.factorize(column, use_na_sentinel=True)
        fmt = CSV_FLOAT_FORMAT if column.dtype.kind == "f" else "%d"
        fields = np.array([fmt % v for v in distinct.tolist()] + [""], dtype=object)
        return fields[codes].tolist()
    na = pd.NA
    return ["" if v is None or v is na or (isinstance(v, float) and v != v) else _csv_quote(str(v))
            for v in column.tolist()]


def _csv_quote(text: str) -> str:
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _build_outputs(df: pd.DataFrame, out_dir: Path, csv_path: Path) -> None:
    """The dashboards and the report (report.build_outputs); CliError when they cannot be written."""
    import report

    try:
        outputs = report.build_outputs(df, out_dir)
    except (OSError, report.ReportInputError) as exc:
        raise CliError(
            f"{csv_path} is written, but not the report ({exc}); "
            f"rerun it with `python wattbench.py report {csv_path}`"
        ) from None
    print(outputs["report_text"])
    print(f"wrote {outputs['index']}")
    print(f"wrote {outputs['report_txt']}")


def summary_line(df: pd.DataFrame) -> str:
    """A one-line summary of a run's DataFrame: requests served, accuracy, median latency, tokens."""
    per_request = df.drop_duplicates("request_id")
    served = per_request[per_request["success"].astype(bool)]
    graded = served["correct"].dropna()
    accuracy = f"{graded.astype(bool).mean():.0%} of {len(graded)} graded" if len(graded) else "n/a"
    latency = f"{served['latency_s'].median():.2f} s" if len(served) else "n/a"
    return (
        f"served {len(served)}/{len(per_request)} requests; accuracy {accuracy}; median latency {latency}; "
        f"{int(served['completion_tokens'].fillna(0).sum())} completion tokens"
    )
