"""Side by side: does wattbench measure the server, or itself? (issue 12)

  .venv/bin/python benchmarks/bench_load.py [--concurrency 1,16,64,256] [--rounds 2] [--requests-per-user 4]

A mock OpenAI-compatible server (tests/mock_openai_server.py, its own process, uvloop) streams 64 tokens with an
injected TTFT of 100 ms and 10 ms between tokens. First its own ceiling is measured (an instant server driven by
a bare raw-socket client), then, alternating tools in rounds at each concurrency:
  direct   wattbench's direct path (BatchProcessor + OpenAITransport -> mock), one process
  direct-w the direct path with the default worker choice (`--workers auto`: loadgen/workers.auto_workers; the
           row is left out where auto picks one process, the same as `direct`)
  service  wattbench's service path (BatchProcessor -> /chat streamed -> the pass-through -> mock), uvicorn
           child (service/passthrough.py: the mock is an OpenAI-compatible upstream, openai/mock)
  service-litellm  the same with WATTBENCH_PASSTHROUGH=0 (-> LiteLLM -> mock); --no-litellm-service skips it
  guidellm / aiperf   when installed (else skipped with a message)
and once more against an instant server (0 / 0 ms) at the highest concurrency. Prints req/s, output tokens/s,
mean TTFT and ITL against the injected values, client CPU per request, and direct / service and direct / peer
ratios. Numbers are from this machine at this moment; ratios are what to read.

The mock also says what it saw (GET /stats): each answer's first token left it `srv TTFT` after the request
arrived, on its own clock. On shared cores that is late too (its timers fire late under load), so the client's
own error is `TTFT - srv TTFT` (column `client +ms`: request and answer on the wire and in the client's event
loop; through the service, the service's hops as well), beside the distance from the injected 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from wattbench.loadgen.plan import Schedule, WorkItem  # noqa: E402
from wattbench.workloads.prompts import PromptSpec  # noqa: E402
from wattbench.loadgen.sender import BatchProcessor  # noqa: E402
from wattbench.client.service_process import ServiceProcess, free_port  # noqa: E402
from wattbench.client.transport import OpenAITransport, ServiceTransport  # noqa: E402
from wattbench.loadgen.workers import auto_workers, run_in_workers, usable_cpus  # noqa: E402

TOKENS = 64


def start_mock(ttft_ms: float, itl_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "mock_openai_server.py"), "--port", str(port),
                             "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--tokens", str(TOKENS),
                             "--uvloop"])
    url = f"http://127.0.0.1:{port}/v1"
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"{url}/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the mock server did not start")


async def raw_ceiling(port: int, concurrency: int, seconds: float) -> float:
    """Requests/s a bare raw-socket client gets from the mock (keep-alive, stream consumed to the end)."""
    body = b'{"model":"mock","stream":true,"messages":[{"role":"user","content":"x"}]}'
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    done = 0
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            writer.write(request)
            await reader.readuntil(b"0\r\n\r\n")
            done += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return done / (time.perf_counter() - t0)


def items(n: int) -> list[WorkItem]:
    return [WorkItem(PromptSpec(f"p{i}", f"Say something about the number {i}."), 0) for i in range(n)]


class _Records(list):
    """The one writer of run_in_workers (store.append_many), in memory."""

    append_many = list.extend


def server_first_s(mock_url: str) -> list[float]:
    """Each streamed answer's TTFT as the mock itself timed it, in order (tests/mock_openai_server.py /stats)."""
    import json
    import urllib.request

    origin = mock_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{origin}/stats", timeout=30) as answer:
        return json.loads(answer.read())["first_s"]


def wattbench_round(url: str, concurrency: int, n: int, transport: object | None,
                    workers: int = 1) -> dict[str, float]:
    processor = BatchProcessor(transport or ServiceTransport(url), schedule=Schedule(concurrency=concurrency),
                               progress=False, timeout_s=120)
    t0 = time.perf_counter()
    if workers > 1:
        records = _Records()
        run_in_workers(processor, items(n), workers, records)
    else:
        records = processor.run_sync(items(n))
    wall = time.perf_counter() - t0
    ok = [r for r in records if r.success]
    if not ok:
        raise RuntimeError(f"every request failed, e.g. {records[0].error}")
    span = max(r.t_end_epoch_s for r in ok) - min(r.t_start_epoch_s for r in ok)
    itls = [r.client_itl_s for r in ok if r.client_itl_s is not None]
    return {
        "rps": len(ok) / span, "tok_s": sum(int(r.response["completion_tokens"]) for r in ok) / span,
        "ttft_ms": 1000 * statistics.fmean(r.client_ttft_s for r in ok if r.client_ttft_s is not None),
        "itl_ms": 1000 * statistics.fmean(itls) if itls else float("nan"),
        "cpu_ms": 1000 * processor.client_cpu_s / max(1, len(records)), "failed": len(records) - len(ok),
        "wall_s": wall, "ttft_p50_ms": 1000 * statistics.median(r.client_ttft_s for r in ok),
    }


def instant_row(levels: list[int], requests_per_user: int) -> None:
    """The mock's own ceiling, then the direct path against the instant server at the highest concurrency."""
    instant, instant_url = start_mock(0.0, 0.0)
    try:
        port = int(instant_url.rsplit(":", 1)[1].split("/")[0])
        ceiling = asyncio.run(raw_ceiling(port, 128, 3.0))
        print(f"mock server ceiling (instant, {TOKENS} tokens, raw client, 128 connections): {ceiling:.0f} req/s")
        direct_instant = wattbench_round(instant_url, max(levels), max(levels) * requests_per_user,
                                         OpenAITransport(instant_url, model="mock"))
        print(f"direct path, instant server, concurrency {max(levels)}: {direct_instant['rps']:.0f} req/s, "
              f"client CPU {direct_instant['cpu_ms']:.2f} ms/request")
        n = max(levels) * requests_per_user
        workers, _ = auto_workers(max(levels), None, n, usable_cpus())
        if workers > 1:
            with_workers = wattbench_round(instant_url, max(levels), n, OpenAITransport(instant_url, model="mock"),
                                           workers)
            print(f"direct path, {workers} processes (auto), instant server, concurrency {max(levels)}: "
                  f"{with_workers['rps']:.0f} req/s, client CPU {with_workers['cpu_ms']:.2f} ms/request")
    finally:
        instant.terminate()
        instant.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", default="1,16,64,256")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests-per-user", type=int, default=4)
    p.add_argument("--no-service", action="store_true", help="skip the service path")
    p.add_argument("--no-direct", action="store_true", help="skip the direct path (and the instant-server row)")
    p.add_argument("--no-litellm-service", dest="litellm_service", action="store_false",
                   help="skip the service path through LiteLLM (WATTBENCH_PASSTHROUGH=0; slow at high concurrency)")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    for tool in ("guidellm", "aiperf"):
        if shutil.which(tool) is None:
            print(f"{tool}: not installed, skipped (pip install {tool} to compare with it)")

    if not args.no_direct:
        instant_row(levels, args.requests_per_user)

    mock, url = start_mock(100.0, 10.0)
    env = {"WATTBENCH_API_BASE": url, "WATTBENCH_MODEL": "openai/mock"}
    services = {}
    if not args.no_service:
        services["service"] = ServiceProcess(env=env, log_path=Path("/tmp/bench_load_service.log"))
    if args.litellm_service:
        services["service-litellm"] = ServiceProcess(env={**env, "WATTBENCH_PASSTHROUGH": "0"},
                                                     log_path=Path("/tmp/bench_load_service_litellm.log"))
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for service in services.values():
            service.__enter__()
        for rnd in range(args.rounds):
            for c in levels:
                n = max(8, c * args.requests_per_user)
                workers, _ = auto_workers(c, None, n, usable_cpus())
                tools = [] if args.no_direct else [("direct", url, OpenAITransport(url, model="mock"), 1)]
                if workers > 1 and not args.no_direct:
                    tools.append(("direct-w", url, OpenAITransport(url, model="mock"), workers))
                tools += [(name, service.url, None, 1) for name, service in services.items()]
                for name, target, transport, w in (tools if rnd % 2 == 0 else tools[::-1]):
                    seen = len(server_first_s(url))
                    result = wattbench_round(target, c, n, transport, w)
                    server = server_first_s(url)[seen:]
                    result["srv_ttft_ms"] = 1000 * statistics.fmean(server) if server else float("nan")
                    result["client_ms"] = result["ttft_ms"] - result["srv_ttft_ms"]
                    result["workers"] = w
                    results.setdefault((name, c), []).append(result)
    finally:
        for service in services.values():
            service.__exit__(None, None, None)
        mock.terminate()
        mock.wait()

    print("\ninjected: TTFT 100 ms, ITL 10 ms, 64 tokens; ranges are min-max over rounds")
    print(f"{'path':15} {'conc':>5} {'req/s':>14} {'tok/s':>16} {'TTFT ms':>14} {'TTFT p50':>14} {'srv TTFT':>14} "
          f"{'client +ms':>12} {'ITL ms':>12} {'CPU ms/req':>11} {'failed':>6}")
    for (name, c), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        def rng(key: str, spec: str = ".1f") -> str:
            lo, hi = min(r[key] for r in runs), max(r[key] for r in runs)
            return f"{lo:{spec}}-{hi:{spec}}"
        label = f"{name} ({runs[0]['workers']:.0f})" if name == "direct-w" else name
        print(f"{label:15} {c:>5} {rng('rps'):>14} {rng('tok_s', '.0f'):>16} {rng('ttft_ms'):>14} "
              f"{rng('ttft_p50_ms'):>14} {rng('srv_ttft_ms'):>14} {rng('client_ms'):>12} "
              f"{rng('itl_ms', '.2f'):>12} {rng('cpu_ms', '.2f'):>11} "
              f"{sum(r['failed'] for r in runs):>6.0f}")
    for name in services if not args.no_direct else ():
        print(f"\nratio {name} / direct req/s, and {name}'s TTFT and ITL over direct's (same concurrency, "
              "same rounds):")
        for c in levels:
            d, s = results[("direct", c)], results[(name, c)]
            mean = lambda runs, key: statistics.fmean(r[key] for r in runs)  # noqa: E731
            print(f"  concurrency {c}: req/s {mean(s, 'rps') / mean(d, 'rps'):.2f}; TTFT "
                  f"{mean(s, 'ttft_ms') - mean(d, 'ttft_ms'):+.1f} ms; ITL {mean(s, 'itl_ms') - mean(d, 'itl_ms'):+.2f} ms")
    if not args.no_direct:
        print("\nthe direct path as `wattbench run` sends by default (--workers auto) against the injected 100 ms / 10 ms "
              "(targets: TTFT +5 ms at 64, +25 ms at 256; ITL +0.5 ms):")
        mean = lambda runs, key: statistics.fmean(r[key] for r in runs)  # noqa: E731
        for c in levels:
            runs = results.get(("direct-w", c)) or results[("direct", c)]
            print(f"  concurrency {c} ({runs[0]['workers']:.0f} process{'es' if runs[0]['workers'] > 1 else ''}): "
                  f"TTFT {mean(runs, 'ttft_ms') - 100:+.1f} ms (the mock's own {mean(runs, 'srv_ttft_ms') - 100:+.1f} "
                  f"ms, the client's {mean(runs, 'client_ms'):+.1f} ms); ITL {mean(runs, 'itl_ms') - 10:+.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
