"""Load benchmark of the service (issue 10): figures, not asserts.

  .venv/bin/python benchmarks/bench_service_load.py [--requests 800] [--concurrency 200] [--rounds 2]

Prints
  1. N concurrent POST /chat against the real service (uvicorn on 127.0.0.1, LiteLLM mock_response): req/s,
     p50 / p99 latency, errors by kind (a dropped keep-alive connection shows up as ReadError /
     RemoteProtocolError), and the service's req/s over bare `litellm.acompletion` calls/s at the same
     concurrency (same arguments, streaming, consumed to the end);
  2. smart_router on worst-case prompts of the size limit (32,000 characters): the slowest, in ms
     (target < 50 ms);
  3. GET /health latency (p50 / max, ms) while a POST /batch of 100 worst-case prompts is in flight
     (target < 100 ms).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402

MOCK_MODEL = "gemini/gemini-2.5-flash"
MOCK_TEXT = "Paris is the capital of France."
PROMPT = "What is the capital of France?"
LIMIT = 32_000
WORST_CASE = {
    "digits": "0" * LIMIT,
    "word characters": "a" * LIMIT,
    "spaces": " " * LIMIT,
    "digit operator": "1+" * (LIMIT // 2),
    "SELECT": "select " * (LIMIT // 7),
    "write": "write " * (LIMIT // 6),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def bare_litellm(n: int, concurrency: int) -> float:
    import litellm

    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            response = await litellm.acompletion(
                model=MOCK_MODEL, messages=[{"role": "user", "content": PROMPT}], temperature=0.1,
                max_tokens=256, stream=True, stream_options={"include_usage": True}, mock_response=MOCK_TEXT,
                num_retries=0, max_retries=0, metadata={})
            async for _ in response:
                pass

    await asyncio.gather(*(one() for _ in range(20)))  # warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def load(url: str, n: int, concurrency: int) -> tuple[float, list[float], Counter[str]]:
    """n POST /chat, at most `concurrency` in flight, on one pooled client (keep-alive on, as the runner)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        limit = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with limit:
                t0 = time.perf_counter()
                try:
                    response = await client.post("/chat", json={"prompt": PROMPT})
                except httpx.TransportError as exc:
                    errors[type(exc).__name__] += 1
                    return
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1
                    return
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(min(n, concurrency))))  # warm-up: open the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.perf_counter() - t0
    return n / elapsed, latencies, errors


def router_worst_ms() -> dict[str, float]:
    from wattbench.service.router import smart_router

    out = {}
    for name, prompt in WORST_CASE.items():
        t0 = time.perf_counter()
        smart_router(prompt)
        out[name] = (time.perf_counter() - t0) * 1000
    return out


async def health_while_batch_busy(url: str) -> tuple[list[float], float, int]:
    """/health latencies (s) while one /batch of 100 worst-case prompts runs; the batch's own time and status."""
    prompts = [list(WORST_CASE.values())[i % len(WORST_CASE)] for i in range(100)]
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        t0 = time.perf_counter()
        batch = asyncio.create_task(client.post("/batch", json={"prompts": prompts}))
        latencies = []
        while not batch.done():
            s = time.perf_counter()
            await client.get("/health")
            latencies.append(time.perf_counter() - s)
            await asyncio.sleep(0.01)
        response = await batch
        return latencies, time.perf_counter() - t0, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from wattbench.client.service_process import ServiceProcess

    env = {"WATTBENCH_MOCK_RESPONSE": MOCK_TEXT, "WATTBENCH_MODEL": MOCK_MODEL}
    with ServiceProcess(env=env) as service:
        print(f"1. {args.requests} x POST /chat, {args.concurrency} concurrent, mock backend "
              f"({args.rounds} rounds, service and bare LiteLLM alternating)")
        service_rps, bare_rps, all_latencies, all_errors = [], [], [], Counter()
        for r in range(args.rounds):
            rps, latencies, errors = asyncio.run(load(service.url, args.requests, args.concurrency))
            bare = asyncio.run(bare_litellm(args.requests, args.concurrency))
            service_rps.append(rps)
            bare_rps.append(bare)
            all_latencies += latencies
            all_errors += errors
            print(f"   round {r + 1}: service {rps:7.1f} req/s   bare LiteLLM {bare:7.1f} calls/s   "
                  f"ratio {rps / bare:.2f}   errors {dict(errors) or 0}")
        print(f"   service: {statistics.median(service_rps):.1f} req/s (median), p50 "
              f"{percentile(all_latencies, 0.5) * 1000:.1f} ms, p99 {percentile(all_latencies, 0.99) * 1000:.1f} ms, "
              f"errors {sum(all_errors.values())} of {args.requests * args.rounds} {dict(all_errors)}")
        print(f"   ratio service / bare LiteLLM: {statistics.median(service_rps) / statistics.median(bare_rps):.2f}")

        print(f"2. smart_router on worst-case prompts of {LIMIT} characters (target < 50 ms)")
        for name, ms in router_worst_ms().items():
            print(f"   {name:<16} {ms:7.2f} ms")

        print("3. GET /health while POST /batch carries 100 worst-case prompts (target < 100 ms)")
        latencies, batch_s, status = asyncio.run(health_while_batch_busy(service.url))
        print(f"   /batch answered {status} in {batch_s:.2f} s; {len(latencies)} x /health during it: "
              f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
