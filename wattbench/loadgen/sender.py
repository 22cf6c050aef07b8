"""The sender: BatchProcessor sends each work item (through a transport: the service's /chat, or an
OpenAI-compatible server directly), retries it, applies the stop rules, and records it."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wattbench.redact import shown_url
from wattbench.loadgen.limiter import (
    BUDGET_SPENT,
    RATE_LIMIT_CAP,
    AdaptiveLimiter,
    RetryPolicy,
    backoff_delay_s,
    request_budget_s,
)
from wattbench.loadgen.plan import (
    RecordSinkError,
    RequestRecord,
    Schedule,
    WorkItem,
    arrival_offsets_s,
    iso_utc,
    trace_offsets_s,
)
from wattbench.client.transport import (  # noqa: F401 - classify_response / error_detail / KEEPALIVE: re-exported
    KEEPALIVE_EXPIRY_S,
    Attempt,
    Transport,
    classify_response,
    error_detail,
)


#: The most characters of an answer's text recorded (the run file, the CSV): an endless answer is cut here.
MAX_ANSWER_CHARS = 100_000


def capped_answer(response: dict[str, Any] | None, limit: int) -> dict[str, Any] | None:
    """The answer as recorded: its text cut to `limit` characters, and then the cap and the text's full length
    recorded beside it (text_capped_at, text_chars)."""
    text = (response or {}).get("text")
    if not isinstance(text, str) or len(text) <= limit:
        return response
    return {**response, "text": text[:limit], "text_capped_at": limit, "text_chars": len(text)}  # type: ignore[dict-item]


class ServiceGoneError(RuntimeError):
    """The service stopped answering (refused connections); what was measured is saved."""


class AuthRejectedError(RuntimeError):
    """The service refused the bearer token (401/403); nothing more can succeed."""


class RunStopped(RuntimeError):
    """A stop rule was hit (--max-duration, --max-errors, --max-error-rate): requests in flight were finished
    and recorded, nothing more was sent; resume sends the rest."""


@dataclass(frozen=True)
class StopRules:
    """When a run stops early, cleanly: after max_duration_s seconds of sending, after max_errors failed
    requests, or when failed / finished exceeds max_error_rate (judged after min_finished requests)."""

    max_duration_s: float | None = None
    max_errors: int | None = None
    max_error_rate: float | None = None
    min_finished: int = 10

    def reason(self, elapsed_s: float, finished: int, failed: int) -> str | None:
        """Why the run must stop now (None: go on)."""
        if self.max_duration_s is not None and elapsed_s >= self.max_duration_s:
            return (f"stopped by --max-duration {self.max_duration_s:g} s: nothing sent after that ({finished} "
                    "requests had finished; those in flight were completed and recorded)")
        if self.max_errors is not None and failed >= self.max_errors:
            return f"stopped by --max-errors {self.max_errors}: {failed} of {finished} requests failed"
        if (self.max_error_rate is not None and finished >= self.min_finished
                and failed / finished > self.max_error_rate):
            return (f"stopped by --max-error-rate {self.max_error_rate:g}: {failed} of {finished} requests "
                    f"failed ({failed / finished:.0%})")
        return None


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
    """Sends WorkItems through a transport and returns a RequestRecord for each: the load generator.

    transport: how one attempt is sent and timed (client/transport.Transport: ServiceTransport for the service's
    /chat, OpenAITransport for an OpenAI-compatible server); it owns its connection pool, is closed at the end of
    `run`, and names the target (base_url, model). schedule: when requests are sent (loadgen/plan.Schedule).
    retry: RetryPolicy (attempts, 429s, backoff, the request budget). stop: StopRules (a rule hit raises
    RunStopped after the requests in flight finished); should_stop: another judge of them (the parent of worker
    processes). on_record: the record sink, called with each record as soon as it is final (the CLI appends it
    to the run file there), before it counts as done.
    timeout_s: per attempt; run_id: prefixed to each request's id on the wire; service_model: the service's
    default model (its /health "model"), recorded with requests it never answered when the transport names no
    model; max_answer_chars: an answer's text is recorded up to this many characters.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        schedule: Schedule = Schedule(),
        retry: RetryPolicy = RetryPolicy(),
        stop: StopRules = StopRules(),
        on_record: Callable[[RequestRecord], None] | None = None,
        should_stop: Callable[[], object] | None = None,
        timeout_s: float = 300.0,
        run_id: str = "",
        service_model: str | None = None,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        progress: bool = True,
    ) -> None:
        if isinstance(transport, str):
            raise TypeError("BatchProcessor takes a transport, not a URL: ServiceTransport(url) for the service, "
                            "OpenAITransport(url, model=...) for an OpenAI-compatible server")
        self.transport: Transport = transport
        self.schedule = schedule
        self.retry = retry
        self.stop = stop
        self.on_record = on_record
        self.should_stop = should_stop
        self.timeout_s = timeout_s
        self.run_id = run_id
        self.service_model = service_model
        self.max_answer_chars = max_answer_chars
        self.progress = progress
        self.path: str = transport.path
        self.rng = random.Random(schedule.seed)
        self.session = uuid.uuid4().hex[:8]
        self.stop_reason: str | None = None
        self.limiter: AdaptiveLimiter | None = None
        self._connect_failures = 0
        self._totals = Progress()
        self._finished = self._failed = 0
        self._t_start = time.monotonic()
        self.client_cpu_s = 0.0  # this process's CPU time while sending (after the warm-up)

    # -- public ----------------------------------------------------------------------------------------
    async def run(
        self, items: Sequence[WorkItem], *, done_before: int = 0, total: int | None = None
    ) -> list[RequestRecord]:
        """Send the warm-up requests, then every item; return the records in the order they finished.

        Raises ServiceGoneError / AuthRejectedError when going on is pointless (RecordSinkError when on_record
        cannot write), RunStopped when a stop rule was hit; every record finished before that has already been
        passed to on_record."""
        try:
            self.limiter = AdaptiveLimiter(self.schedule.concurrency)
            await self._warm_up(items)
            self._totals = Progress()  # tokens/s counts from here, after the warm-up
            self._t_start, cpu0 = time.monotonic(), time.process_time()
            bar = self._make_bar(total if total is not None else len(items) + done_before, done_before)
            try:
                records = await self._send_all(items, bar)
            finally:
                self.client_cpu_s = time.process_time() - cpu0
                if bar is not None:
                    bar.close()
            if self.stop_reason:
                raise RunStopped(self.stop_reason)
            return records
        finally:
            await self.transport.aclose()

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
    async def _warm_up(self, items: Sequence[WorkItem]) -> None:
        for i in range(self.schedule.warmup if items else 0):
            await self._send_item(items[i % len(items)], request_id=f"warmup-{i}")

    async def _send_all(self, items: Sequence[WorkItem], bar: Any) -> list[RequestRecord]:
        records: list[RequestRecord] = []

        async def one(item: WorkItem, delay_s: float = 0.0) -> None:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if self._stopping():
                return
            record = await self._send_item(item)
            if self.on_record is not None:
                try:
                    self.on_record(record)  # persisted before it counts as done
                except OSError as exc:
                    raise RecordSinkError(
                        f"cannot write the run file ({exc}); free the disk and rerun with "
                        "--resume: what was written so far is kept"
                    ) from None
            records.append(record)
            self._count(record, bar)

        async def user(queue: list[WorkItem]) -> None:  # a closed-loop user: one request after another
            while queue and not self._stopping():
                await one(queue.pop())

        try:
            async with asyncio.TaskGroup() as group:
                schedule = self.schedule
                if schedule.rate_rps is not None or schedule.arrival == "trace":
                    offsets = (trace_offsets_s(items) if schedule.arrival == "trace"
                               else arrival_offsets_s(len(items), schedule.rate_rps or 1.0, schedule.arrival,
                                                      self.rng))
                    for item, offset in zip(items, offsets, strict=True):
                        group.create_task(one(item, offset))
                else:  # `concurrency` users share the queue: the requested load is really in flight
                    queue = list(reversed(items))
                    for _ in range(min(schedule.concurrency, len(items))):
                        group.create_task(user(queue))
        except* (ServiceGoneError, AuthRejectedError, RecordSinkError) as eg:
            raise eg.exceptions[0] from None
        return records

    @property
    def finished(self) -> int:
        """Requests finished (served or failed) since the warm-up."""
        return self._finished

    def _stopping(self) -> bool:
        """Whether a stop rule has been hit (then nothing more is sent)."""
        if self.stop_reason is None:
            self.stop_reason = self.stop.reason(time.monotonic() - self._t_start, self._finished, self._failed)
        if self.stop_reason is None and self.should_stop is not None:
            said = self.should_stop()  # a reason (str), or True for the parent of worker processes
            if said:
                self.stop_reason = said if isinstance(said, str) else (
                    "stopped by the parent process (a stop rule over all workers)")
        return self.stop_reason is not None

    async def _send_item(self, item: WorkItem, request_id: str | None = None) -> RequestRecord:
        """Send one item until it is served or given up on (request_id: the X-Request-ID, default its key):
        after max_attempts transient failures, max_rate_limited 429s, or when its budget (attempts and waits
        together, request_budget_s) is spent; a wait that would end past the budget is not waited."""
        assert self.limiter is not None
        attempts = rate_limited = transient = 0
        wait_s = 0.0
        budget_s = request_budget_s(self.retry, self.timeout_s)
        deadline = time.monotonic() + budget_s
        attempt: Attempt | None = None

        def spent(why: str) -> RequestRecord:
            last = f"; the last attempt: {attempt.error}" if attempt is not None and attempt.error else ""
            given_up = Attempt("fatal", attempt.status_code if attempt else None,
                               f"{BUDGET_SPENT} ({budget_s:g} s per request): {why} after {attempts} attempts{last}",
                               started_epoch_s=attempt.started_epoch_s if attempt else time.time(),
                               elapsed_s=attempt.elapsed_s if attempt else 0.0)
            return self._record(item, given_up, attempts, rate_limited, wait_s)

        while True:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    wait_s += await self.limiter.acquire()
            except TimeoutError:
                return spent("waiting for the rate-limit gate")
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    attempt = await self._attempt(item, request_id or item.key)
            except TimeoutError:
                attempts += 1
                await self.limiter.release("error")
                return spent("an attempt still running")
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
                    capped = Attempt("rate_limited", attempt.status_code,
                                     f"{RATE_LIMIT_CAP}: rate-limited {rate_limited} times (at most "
                                     f"{self.retry.max_rate_limited} per request); the last: {attempt.error}",
                                     started_epoch_s=attempt.started_epoch_s, elapsed_s=attempt.elapsed_s)
                    return self._record(item, capped, attempts, rate_limited, wait_s)
                if time.monotonic() + delay_s > deadline:
                    return spent(f"a 429 asked to wait {delay_s:g} s more")
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
            if time.monotonic() + delay_s >= deadline:
                return spent(f"a retry would wait {delay_s:.3g} s more")
            await asyncio.sleep(delay_s)
            wait_s += delay_s

    def _note_connect(self, attempt: Attempt) -> None:
        if attempt.kind != "connect":
            self._connect_failures = 0
            return
        self._connect_failures += 1
        if self._connect_failures >= self.retry.abort_after_connect_failures:
            raise ServiceGoneError(
                f"the service at {shown_url(self.transport.base_url)} refused {self._connect_failures} "
                "connections in a row "
                f"({attempt.error}); what was measured is saved: "
                "start the service again and rerun with --resume"
            )

    async def _attempt(self, item: WorkItem, request_id: str) -> Attempt:
        rid = f"{self.run_id}/{request_id}" if self.run_id else request_id
        return await self.transport.send(item, rid, self.timeout_s)

    def _record(
        self, item: WorkItem, attempt: Attempt, attempts: int, rate_limited: int, wait_s: float
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
            response=capped_answer(attempt.response, self.max_answer_chars),
            requested_model=self.transport.model or self.service_model,
            client_ttft_s=attempt.ttft_s if attempt.kind == "ok" else None,
            client_itl_s=attempt.itl_s if attempt.kind == "ok" else None,
            client_send_wait_s=round(attempt.send_wait_s, 6),
            path=self.path,
            target_input_tokens=spec.input_tokens,
            target_output_tokens=spec.max_tokens,
        )

    # -- progress --------------------------------------------------------------------------------------
    def _make_bar(self, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc="requests", unit="req", dynamic_ncols=True)

    def _count(self, record: RequestRecord, bar: Any) -> None:
        self._finished += 1
        self._failed += 0 if record.success else 1
        totals = self._totals
        totals.failed += 0 if record.success else 1
        totals.retries += record.attempts - 1
        totals.completion_tokens += int((record.response or {}).get("completion_tokens") or 0)
        if bar is not None:
            bar.set_postfix(totals.postfix(), refresh=False)
            bar.update(1)  # redraws, with the postfix just set
