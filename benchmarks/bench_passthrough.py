"""What the model seam costs the service: LiteLLM's stream vs the pass-through's, per request and per chunk.

  .venv/bin/python benchmarks/bench_passthrough.py [--requests 200] [--concurrency 1,16] [--rounds 3]

Two instant mock OpenAI-compatible servers (tests/mock_openai_server.py, own processes) stream 1 and 64 content
chunks. In this process the two backends of the seam (service/backend.py LiteLLMBackend and
service/passthrough.py PassthroughBackend, the same GenerationRequest) consume `--requests` streams from each, at
each concurrency, alternating in rounds (A B B A ...). The process's CPU seconds (time.process_time) per request
give, with c(n) = a + n b for n chunks: per chunk b = (c(64) - c(1)) / 63 and per request a = c(1) - b. Prints
both backends side by side and the ratio LiteLLM / pass-through. The service's own work around the seam
(routing, the /chat answer, the SSE out) is the same for both and is not in these figures; benchmarks/
bench_load.py measures the whole service path.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from wattbench.config import Settings  # noqa: E402
from wattbench.client.service_process import free_port  # noqa: E402
from wattbench.service.backend import GenerationRequest, LiteLLMBackend  # noqa: E402
from wattbench.service.passthrough import PassthroughBackend  # noqa: E402

CHUNKS = (1, 64)


def start_mock(tokens: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "mock_openai_server.py"), "--port", str(port),
                             "--ttft-ms", "0", "--itl-ms", "0", "--tokens", str(tokens), "--uvloop"])
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            httpx.get(f"{url}/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the mock server did not start")


async def consume(backend: object, n: int, concurrency: int) -> float:
    """CPU seconds of this process per request for `n` streams consumed to the end, `concurrency` at a time."""
    request = GenerationRequest(model="openai/mock", messages=[{"role": "user", "content": "Say something."}],
                                temperature=0.5, max_tokens=256)
    limit = asyncio.Semaphore(concurrency)
    texts = []

    async def one() -> None:
        async with limit:
            parts = [event.text async for event in backend.stream(request)]  # type: ignore[attr-defined]
            texts.append("".join(parts))

    cpu0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu = time.process_time() - cpu0
    if any(not t for t in texts):
        raise RuntimeError("a stream came back empty")
    return cpu / n


async def main_async(args: argparse.Namespace) -> int:
    levels = [int(c) for c in args.concurrency.split(",")]
    mocks = {n: start_mock(n) for n in CHUNKS}
    cpu: dict[tuple[str, int, int], list[float]] = {}
    try:
        backends = {}
        for n, (_, url) in mocks.items():
            settings = Settings(_env_file=None, WATTBENCH_API_BASE=url, WATTBENCH_MODEL="openai/mock")
            backends[("litellm", n)] = LiteLLMBackend(settings)
            backends[("passthrough", n)] = PassthroughBackend(settings)
        for (_, n), backend in backends.items():  # warm: imports, connections, LiteLLM's first-call work
            await consume(backend, 8, 4)
        for rnd in range(args.rounds):
            order = ["litellm", "passthrough"] if rnd % 2 == 0 else ["passthrough", "litellm"]
            for c in levels:
                for name in order:
                    for n in CHUNKS:
                        cpu.setdefault((name, c, n), []).append(await consume(backends[(name, n)], args.requests, c))
        for key, backend in backends.items():
            if key[0] == "passthrough":
                await backend.aclose()  # type: ignore[attr-defined]
    finally:
        for proc, _ in mocks.values():
            proc.terminate()
            proc.wait()

    print(f"\nCPU of this process, median of {args.rounds} rounds x {args.requests} requests "
          "(per chunk: (c64 - c1) / 63; per request: c1 - per chunk)")
    print(f"{'concurrency':>11} {'backend':>12} {'ms/req (1 chunk)':>17} {'ms/req (64)':>12} "
          f"{'per request ms':>15} {'per chunk us':>13}")
    for c in levels:
        row = {}
        for name in ("litellm", "passthrough"):
            c1, c64 = (statistics.median(cpu[(name, c, n)]) for n in CHUNKS)
            chunk = (c64 - c1) / (CHUNKS[1] - CHUNKS[0])
            row[name] = (c1 - chunk, chunk, c64)
            print(f"{c:>11} {name:>12} {1000 * c1:>17.3f} {1000 * c64:>12.3f} {1000 * (c1 - chunk):>15.3f} "
                  f"{1e6 * chunk:>13.1f}")
        lit, thr = row["litellm"], row["passthrough"]
        print(f"{c:>11} {'ratio L/P':>12} {'':>17} {lit[2] / thr[2]:>12.1f} {lit[0] / thr[0]:>15.1f} "
              f"{lit[1] / thr[1]:>13.1f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--rounds", type=int, default=3)
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
