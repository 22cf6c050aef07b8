"""Service overhead and embedded-model throughput, measured side by side in one run.

  .venv/bin/python benchmarks/bench_service.py [--requests 400] [--concurrency 8] [--tokens 96] [--rounds 3]

Prints two ratios (targets from issue 2):
  1. /chat requests/s (uvicorn on 127.0.0.1, LiteLLM mock_response) over bare `litellm.acompletion` calls/s
     with the same arguments (streaming, consumed to the end)           target >= 0.8
  2. output tokens/s of the embedded model through /chat over direct llama-cpp-python   target >= 0.9
The two sides of each ratio alternate in rounds (A B A B ...) so that machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402

MOCK_MODEL = "gemini/gemini-2.5-flash"
MOCK_TEXT = "Paris is the capital of France."
LONG_PROMPT = "Write a long story about a lighthouse keeper and a storm."


async def _bare_litellm(n: int, concurrency: int) -> float:
    import litellm

    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            response = await litellm.acompletion(
                model=MOCK_MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0.1, max_tokens=256, stream=True, stream_options={"include_usage": True},
                mock_response=MOCK_TEXT, num_retries=0, max_retries=0, metadata={})
            async for _ in response:
                pass

    await asyncio.gather(*(one() for _ in range(10)))  # warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def _service(url: str, n: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        limit = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with limit:
                response = await client.post("/chat", json={"prompt": "What is the capital of France?"})
                response.raise_for_status()

        await asyncio.gather(*(one() for _ in range(10)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def _direct_llama_tokens_per_s(llm, tokens: int) -> float:
    t0 = time.perf_counter()
    count = 0
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=tokens,
                                            temperature=0.7, stream=True, seed=1):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
    return count / (time.perf_counter() - t0)


def _chat_tokens_per_s(url: str, tokens: int) -> float:
    t0 = time.perf_counter()
    body = httpx.post(f"{url}/chat", json={"prompt": LONG_PROMPT, "max_tokens": tokens, "temperature": 0.7},
                      timeout=300).json()
    return body["completion_tokens"] / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads on both sides (default 1: spinning threads collapse when another "
                             "process holds a core of a 2-core machine)")
    parser.add_argument("--only", choices=["overhead", "throughput"], help="run one of the two measurements")
    args = parser.parse_args()
    if args.only != "throughput":
        measure_overhead(args)
    if args.only != "overhead":
        measure_throughput(args)
    return 0


def measure_overhead(args: argparse.Namespace) -> None:
    from wattbench.client.service_process import ServiceProcess

    overhead_env = {"WATTBENCH_MOCK_RESPONSE": MOCK_TEXT, "WATTBENCH_MODEL": MOCK_MODEL}
    bare, served = [], []
    with ServiceProcess(env=overhead_env) as service:
        url = service.url
        for _ in range(args.rounds):
            bare.append(asyncio.run(_bare_litellm(args.requests, args.concurrency)))
            served.append(asyncio.run(_service(url, args.requests, args.concurrency)))
    ratio1 = statistics.median(served) / statistics.median(bare)
    print(f"bare litellm.acompletion (mock, streamed): {statistics.median(bare):7.1f} calls/s  "
          f"rounds {[round(x, 1) for x in bare]}")
    print(f"/chat via uvicorn (mock backend):          {statistics.median(served):7.1f} req/s    "
          f"rounds {[round(x, 1) for x in served]}")
    print(f"RATIO 1  /chat req/s over bare acompletion calls/s = {ratio1:.2f}   (target >= 0.8)")



def measure_throughput(args: argparse.Namespace) -> None:
    from llama_cpp import Llama

    from wattbench.client.service_process import ServiceProcess
    from wattbench.service import local_llm

    direct, through = [], []
    llm = Llama(model_path=str(local_llm.find_default_gguf()), n_ctx=2048, n_threads=args.threads, verbose=False)
    print(f"llama.cpp threads on both sides: {args.threads}")
    with ServiceProcess(env={"WATTBENCH_LOCAL_N_THREADS": str(args.threads)}) as service:
        url = service.url
        _chat_tokens_per_s(url, 8)  # warm-up both
        _direct_llama_tokens_per_s(llm, 8)
        for _ in range(args.rounds):
            direct.append(_direct_llama_tokens_per_s(llm, args.tokens))
            through.append(_chat_tokens_per_s(url, args.tokens))
    ratio2 = statistics.median(through) / statistics.median(direct)
    print(f"direct llama-cpp-python: {statistics.median(direct):6.1f} output tokens/s  "
          f"rounds {[round(x, 1) for x in direct]}")
    print(f"through /chat:           {statistics.median(through):6.1f} output tokens/s  "
          f"rounds {[round(x, 1) for x in through]}")
    print(f"RATIO 2  /chat tokens/s over direct llama-cpp-python = {ratio2:.2f}   (target >= 0.9)")


if __name__ == "__main__":
    sys.exit(main())
