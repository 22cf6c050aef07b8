"""A scripted OpenAI-compatible server that batches like an engine: at most `cap` requests run at once, the rest
wait in a FIFO queue. It serves what a vLLM deployment with dcgm-exporter beside it would:

    POST /v1/chat/completions   streamed: a first token after ttft_s, then one every itl_s, `tokens` in all
    GET  /v1/models
    GET  /metrics               vLLM names: vllm:num_requests_running / _waiting (its real counts at the scrape),
                                vllm:kv_cache_usage_perc (running / cap), vllm:prompt_tokens_total,
                                vllm:generation_tokens_total
    GET  /dcgm                  dcgm-exporter names for `gpus` GPUs: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ, the
                                exact integral of its power since start) and DCGM_FI_DEV_POWER_USAGE (W), where each
                                GPU draws idle_w + running_w x (running requests) / gpus

metrics_mode makes /metrics hostile: "missing" (404), "hang" (answers after 30 s once `vanish_after` scrapes were
answered), "lie" (NaN running, negative waiting, a counter going down every scrape), "vanish" (404 after
`vanish_after` scrapes), "html" (a web page).

    with BatchingServer(cap=16) as server:   # a thread on 127.0.0.1
        server.url, server.metrics_url, server.dcgm_url, server.energy_j(), server.busy_s
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchingServer:
    cap: int = 16
    ttft_s: float = 0.02
    itl_s: float = 0.02
    tokens: int = 8
    prompt_tokens: int = 12
    idle_w: float = 100.0
    running_w: float = 20.0  # per running request, over all GPUs
    gpus: int = 2
    metrics_mode: str = "ok"
    vanish_after: int = 3
    running: int = 0
    waiting: int = 0
    generated: int = 0
    prompted: int = 0
    scrapes: int = 0
    busy_s: float = 0.0  # sum over requests of the time each one ran (not waited)
    _energy_j: float = 0.0
    _last_t: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the energy model: power = idle_w + running_w x running, integrated exactly at every change --------
    def _advance(self, now: float) -> None:
        self._energy_j += (self.idle_w + self.running_w * self.running) * (now - self._last_t)
        self._last_t = now

    def _change_running(self, delta: int) -> None:
        with self._lock:
            self._advance(time.monotonic())
            self.running += delta

    def energy_j(self) -> float:
        with self._lock:
            self._advance(time.monotonic())
            return self._energy_j

    # -- HTTP -------------------------------------------------------------------------------------------
    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        tokens = int(body.get("max_tokens") or self.tokens)
        tokens = min(tokens, self.tokens)
        self.waiting += 1
        await self._slots.acquire()
        self.waiting -= 1
        self._change_running(+1)
        started = time.monotonic()
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await asyncio.sleep(self.ttft_s)
            for i in range(tokens):
                if i:
                    await asyncio.sleep(self.itl_s)
                chunk = {"id": "c", "object": "chat.completion.chunk", "model": "batching",
                         "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.generated += tokens
            self.prompted += self.prompt_tokens
            last = {"id": "c", "object": "chat.completion.chunk", "model": "batching",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": tokens,
                              "total_tokens": self.prompt_tokens + tokens}}
            await resp.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        finally:
            self.busy_s += time.monotonic() - started
            self._change_running(-1)
            self._slots.release()
        return resp

    async def _models(self, request: Any) -> Any:
        from aiohttp import web
        return web.json_response({"object": "list", "data": [{"id": "batching", "object": "model",
                                                              "owned_by": "vllm"}]})

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        self.scrapes += 1
        mode = self.metrics_mode
        if mode == "missing" or (mode == "vanish" and self.scrapes > self.vanish_after):
            return web.Response(status=404, text="Not Found")
        if mode == "hang" and self.scrapes > self.vanish_after:
            await asyncio.sleep(30)
        if mode == "html":
            return web.Response(text="<html><body>metrics</body></html>", content_type="text/html")
        running, waiting = float(self.running), float(self.waiting)
        generated = float(self.generated)
        if mode == "lie":
            running, waiting, generated = float("nan"), -3.0, float(1000 - self.scrapes)
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="batching"}} {running}\n'
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="batching"}} {waiting}\n'
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="batching"}} {self.running / self.cap}\n'
            "# TYPE vllm:prompt_tokens counter\n"
            f'vllm:prompt_tokens_total{{engine="0",model_name="batching"}} {float(self.prompted)}\n'
            "# TYPE vllm:generation_tokens counter\n"
            f'vllm:generation_tokens_total{{engine="0",model_name="batching"}} {generated}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def _dcgm(self, request: Any) -> Any:
        from aiohttp import web

        energy_j, running = self.energy_j(), self.running
        lines = ["# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).", "# TYPE DCGM_FI_DEV_POWER_USAGE gauge"]
        per_gpu_w = (self.idle_w + self.running_w * running) / self.gpus
        labels = [f'gpu="{i}",UUID="GPU-stub-{i}",device="nvidia{i}",modelName="NVIDIA H200",Hostname="stub"'
                  for i in range(self.gpus)]
        lines += [f"DCGM_FI_DEV_POWER_USAGE{{{lab}}} {per_gpu_w:.3f}" for lab in labels]
        lines += ["# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
                  "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"]
        lines += [f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{lab}}} {int(energy_j * 1000 / self.gpus)}"
                  for lab in labels]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # -- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> BatchingServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the batching server did not start")
        return self

    def _main(self, ready: threading.Event) -> None:
        from aiohttp import web

        async def run() -> None:
            self._slots = asyncio.Semaphore(self.cap)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/metrics", self._metrics)
            app.router.add_get("/dcgm", self._dcgm)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stop = asyncio.Event()
            ready.set()
            await self._stop.wait()
            await self._runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(run())
        self._loop.close()

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def dcgm_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dcgm"
