"""Rate limits without loss: 36 requests against a /chat stub on 127.0.0.1 that allows R requests per minute.

The stub admits one request per 60/R s (GCRA, burst 1) and answers 429 with Retry-After (integer seconds) and
retry-after-ms beyond it. The ideal span from the first to the last served request is 35 x 60/R s. Prints lost
requests, the measured span, the ideal and their ratio (target: lost = 0, ratio <= 1.15), for BatchProcessor
starting at several concurrencies, and for the original notebook's strategy (sequential, sleep between calls,
no retry), scaled down in time.

    .venv/bin/python benchmarks/bench_ratelimit.py [--rpm 180] [--requests 36] [--integer-retry-after]

With only an integer Retry-After (no retry-after-ms) a wait can only be whole seconds, so below 60 requests
per minute the span stays near ideal, above it each 429 costs up to a second: --integer-retry-after shows it.

--through-service puts the real service (uvicorn) between the runner and the rate limit: an OpenAI-compatible
provider stub that allows R requests per minute and answers 429 with Retry-After and retry-after-ms, as OpenAI
does. The service must pass the milliseconds on (issue 10: LiteLLM passed on only the whole seconds, 1.4x the
ideal span at 120/min; issue 20: the pass-through did too). It runs the pass-through backend (the default for an
openai/ model at WATTBENCH_API_BASE); --litellm runs the LiteLLM backend instead (WATTBENCH_PASSTHROUGH=0).

    .venv/bin/python benchmarks/bench_ratelimit.py --through-service --rpm 120 [--litellm]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stub_servers import ChatStub, SmoothRateLimiter, rate_limited  # noqa: E402

from wattbench.loadgen.plan import Schedule, plan_requests
from wattbench.workloads.prompts import PromptSpec
from wattbench.loadgen.sender import BatchProcessor
from wattbench.client.transport import ServiceTransport


def span_s(stub: ChatStub) -> float:
    """Seconds between the first and the last served request, as the server saw them arrive."""
    served = stub.served()
    return served[-1].t_s - served[0].t_s if len(served) > 1 else 0.0


def run_wattbench(rpm: float, n: int, concurrency: int, with_ms: bool = True) -> tuple[int, float, int]:
    """BatchProcessor against a fresh stub: (lost, span_s, 429s seen)."""
    prompts = [PromptSpec(f"p{i:02d}", f"prompt {i}") for i in range(n)]
    with ChatStub(rate_limited(rpm, with_ms=with_ms)) as stub:
        records = BatchProcessor(ServiceTransport(stub.url), schedule=Schedule(concurrency=concurrency, seed=1),
                                 progress=False).run_sync(
            plan_requests(prompts)
        )
        lost = sum(not r.success for r in records)
        return lost, span_s(stub), sum(r.rate_limited for r in records)


def run_original(rpm: float, n: int, sleep_s: float) -> tuple[int, float]:
    """The original notebook's loop: one call, then sleep, no retry. Returns (lost, span_s)."""
    with ChatStub(rate_limited(rpm)) as stub, httpx.Client(timeout=10) as client:
        lost = 0
        for i in range(n):
            lost += client.post(f"{stub.url}/chat", json={"prompt": f"prompt {i}"}).status_code != 200
            time.sleep(sleep_s)
        return lost, span_s(stub)


def rate_limited_provider(rpm: float):
    """An OpenAI-compatible provider on 127.0.0.1 that allows `rpm` requests per minute (GCRA, burst 1) and
    answers 429 with Retry-After (whole seconds, rounded up) and retry-after-ms beyond it. Returns
    (server, base_url, served arrival times)."""
    import json
    import math
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    limiter = SmoothRateLimiter(rpm)
    served: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            wait_s = limiter.check()
            if wait_s is not None:
                body = json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit"}}).encode()
                self.send_response(429)
                self.send_header("Retry-After", str(max(1, math.ceil(wait_s))))
                self.send_header("retry-after-ms", str(math.ceil(wait_s * 1000)))
            else:
                served.append(time.monotonic())
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": request["model"],
                         "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
                body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1", served


def run_through_service(rpm: float, n: int, concurrency: int, litellm: bool = False) -> tuple[int, float, int]:
    """BatchProcessor -> the service (pass-through, or LiteLLM) -> a rate-limited provider: (lost, span_s, 429s
    seen)."""
    from wattbench.client.service_process import ServiceProcess

    server, url, served = rate_limited_provider(rpm)
    prompts = [PromptSpec(f"p{i:02d}", f"prompt {i}") for i in range(n)]
    env = {"WATTBENCH_API_BASE": url, "WATTBENCH_MODEL": "openai/limited", "WATTBENCH_MOCK_RESPONSE": "",
           "WATTBENCH_PASSTHROUGH": "0" if litellm else "1"}
    env_clear = {k: v for k, v in env.items() if v}
    try:
        import os

        for name in ("WATTBENCH_MOCK_RESPONSE", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):  # else LiteLLM
            os.environ.pop(name, None)
        with ServiceProcess(env=env_clear) as service:
            time.sleep(60.0 / rpm)  # the /health probes did not call the provider; start on a fresh window
            records = BatchProcessor(ServiceTransport(service.url), schedule=Schedule(concurrency=concurrency, seed=1),
                                     progress=False).run_sync(
                plan_requests(prompts)
            )
    finally:
        server.shutdown()
    span = served[-1] - served[0] if len(served) > 1 else 0.0
    return sum(not r.success for r in records), span, sum(r.rate_limited for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=float, default=180.0, help="requests per minute the stub allows")
    parser.add_argument("--requests", type=int, default=36)
    parser.add_argument(
        "--integer-retry-after",
        action="store_true",
        help="also run against a stub that sends only an integer Retry-After (no retry-after-ms)",
    )
    parser.add_argument(
        "--through-service",
        action="store_true",
        help="only the runner -> the real service -> a rate-limited OpenAI-compatible provider",
    )
    parser.add_argument("--litellm", action="store_true",
                        help="with --through-service: the LiteLLM backend (default: the pass-through)")
    args = parser.parse_args()
    n, rpm = args.requests, args.rpm
    ideal_s = (n - 1) * 60.0 / rpm
    print(f"{n} requests, stub allows {rpm:g}/min (one per {60 / rpm:.3f} s); ideal span {ideal_s:.2f} s")
    if args.through_service:
        for concurrency in (1, 4, 16):
            lost, span, n429 = run_through_service(rpm, n, concurrency, litellm=args.litellm)
            backend = "LiteLLM" if args.litellm else "pass-through"
            print(f"through the service ({backend}), concurrency<={concurrency:<3d} lost = {lost}  span = {span:.2f} s  "
                  f"ideal = {ideal_s:.2f} s  ratio = {span / ideal_s:.3f}  (429s absorbed: {n429})")
        return
    for concurrency in (1, 4, 16):
        lost, span, n429 = run_wattbench(rpm, n, concurrency)
        print(
            f"wattbench concurrency<={concurrency:<3d} lost = {lost}  span = {span:.2f} s  "
            f"ideal = {ideal_s:.2f} s"
            f"  ratio = {span / ideal_s:.3f}  (429s absorbed: {n429})"
        )
    if args.integer_retry_after:
        lost, span, n429 = run_wattbench(rpm, n, 4, with_ms=False)
        print(
            f"wattbench concurrency<=4, integer Retry-After only  lost = {lost}  span = {span:.2f} s  "
            f"ratio = {span / ideal_s:.3f}  (429s absorbed: {n429})"
        )
    # The original: Gemini's free tier allowed 10 requests/min (one per 6 s) and it slept 5 s between calls.
    # Same ratio, scaled down to this stub's interval: sleep = 5/6 of 60/rpm.
    sleep_s = 5 / 6 * 60 / rpm
    lost, span = run_original(rpm, n, sleep_s)
    print(
        f"original (sleep {sleep_s:.3f} s, no retry, scaled from 5 s vs 10/min)  lost = {lost}  "
        f"span = {span:.2f} s"
    )


if __name__ == "__main__":
    main()
