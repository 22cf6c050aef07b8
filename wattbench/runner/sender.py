"""The sender: BatchProcessor posts each work item to the service, times it, retries it, records it."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from wattbench.redact import shown_url
from wattbench.runner.limiter import AdaptiveLimiter, RetryPolicy, backoff_delay_s, parse_retry_after
from wattbench.runner.plan import Arrival, RequestRecord, WorkItem, arrival_offsets_s, iso_utc
from wattbench.runner.store import RunStoreError

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import httpx


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
    detail = error_detail(content)
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


def error_detail(content: bytes) -> str:
    try:
        payload = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:300] or "(empty body)"
    if isinstance(payload, dict) and "detail" in payload:
        return str(payload["detail"])[:300]
    return json.dumps(payload)[:300]
