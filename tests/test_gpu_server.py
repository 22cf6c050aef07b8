"""gpu_server.py --dry-run as a subprocess on a free port: streaming, usage, [DONE], errors, batching, SIGTERM.

    pytest -q tests/test_gpu_server.py     # needs torch (a CPU wheel is enough) and aiohttp; skipped otherwise
"""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import importlib.util

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="the GPU test server needs torch (pip install torch; a CPU wheel runs its --dry-run here)")

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent / "benchmarks" / "gpu" / "gpu_server.py"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(SERVER), "--dry-run", "--port", str(self.port), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        ready = threading.Event()
        self.stdout: list[str] = []

        def read_stdout() -> None:
            for line in self.proc.stdout:
                self.stdout.append(line)
                if line.startswith("ready on "):
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S):
            self.stop()
            raise AssertionError(f"server not ready in {READY_TIMEOUT_S} s; stderr:\n{''.join(self.stderr)[-3000:]}")
        assert self.stdout[-1].strip() == f"ready on http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("server did not stop on the signal") from None
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    s = Running()
    yield s
    s.stop()


def parse_sse(raw: str) -> list[str]:
    return [block[len("data: "):] for block in raw.split("\n\n") if block.startswith("data: ")]


async def stream_one(client: httpx.AsyncClient, base: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True,
            "max_tokens": max_tokens, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = (await resp.aread()).decode()
    datas = parse_sse(raw)
    out = {"done": datas[-1] == "[DONE]", "content": [], "roles": 0, "finish": [], "usage": None,
           "elapsed_s": time.perf_counter() - t0, "ids": set()}
    for d in datas:
        if d == "[DONE]":
            continue
        chunk = json.loads(d)
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == MODEL
        out["ids"].add(chunk["id"])
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if delta.get("role"):
                out["roles"] += 1
            if delta.get("content"):
                out["content"].append(delta["content"])
            if choice.get("finish_reason"):
                out["finish"].append(choice["finish_reason"])
    return out


async def many(base: str, prompts: list[str], max_tokens: list[int]) -> list[dict]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        return await asyncio.gather(*(stream_one(client, base, p, m) for p, m in zip(prompts, max_tokens)))


def test_models_and_health(server):
    r = httpx.get(f"{server.base}/v1/models", timeout=10)
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == [MODEL]
    h = httpx.get(f"{server.base}/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok"


def test_eight_concurrent_streams(server):
    prompts = [f"prompt number {i}: " + "x" * (10 * i) for i in range(8)]
    results = asyncio.run(asyncio.wait_for(many(server.base, prompts, [16] * 8), 60))
    assert len(results) == 8
    for i, r in enumerate(results):
        assert len(r["content"]) == 16, r
        assert r["roles"] == 1
        assert r["finish"] == ["length"]
        assert r["done"]
        assert len(r["ids"]) == 1
        expected_prompt = max(1, -(-len(prompts[i].encode()) // 4))
        assert r["usage"] == {"prompt_tokens": expected_prompt, "completion_tokens": 16,
                              "total_tokens": expected_prompt + 16}
    health = httpx.get(f"{server.base}/health", timeout=10).json()
    assert health["max_active"] >= 2  # they really were decoded together


def test_batching_does_not_change_a_sequence(server):
    """A sequence's tokens are the same alone and among others that finish at different times (slot compaction
    moves K/V; masked attention keeps sequences apart)."""
    prompts = [f"the same prompt {i} " * (i + 1) for i in range(8)]
    alone = [asyncio.run(asyncio.wait_for(many(server.base, [p], [24]), 60))[0]["content"] for p in prompts[:3]]
    together = asyncio.run(asyncio.wait_for(many(server.base, prompts, [24, 24, 24, 3, 9, 1, 15, 20]), 60))
    assert [len(r["content"]) for r in together] == [24, 24, 24, 3, 9, 1, 15, 20]
    assert [r["content"] for r in together[:3]] == alone


def test_more_requests_than_slots(server):
    n = 20  # max batch 8 in the dry run: requests wait and are admitted as slots free up
    results = asyncio.run(asyncio.wait_for(many(server.base, [f"q{i}" for i in range(n)], [5 + i for i in range(n)]),
                                           90))
    assert [len(r["content"]) for r in results] == [5 + i for i in range(n)]
    assert all(r["done"] and r["usage"]["completion_tokens"] == 5 + i for i, r in enumerate(results))


def test_non_streaming(server):
    r = httpx.post(f"{server.base}/v1/chat/completions", timeout=30, json={
        "model": "anything", "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 7,
        "ignore_eos": True, "min_tokens": 7})
    assert r.status_code == 200
    doc = r.json()
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["finish_reason"] == "length"
    assert len(doc["choices"][0]["message"]["content"].split()) == 7
    assert doc["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}


def test_prompt_capped_to_context(server):
    r = httpx.post(f"{server.base}/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "user", "content": "y" * 4000}], "max_tokens": 100})
    assert r.status_code == 200
    assert r.json()["usage"] == {"prompt_tokens": 28, "completion_tokens": 100, "total_tokens": 128}


@pytest.mark.parametrize("body, status", [
    ("not json", 400),
    (json.dumps({"messages": []}), 400),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}), 400),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 128}), 400),  # context 128
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}), 400),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "n": 2}), 400),
])
def test_errors_are_json(server, body, status):
    r = httpx.post(f"{server.base}/v1/chat/completions", content=body, timeout=10,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert r.json()["error"]["code"] == status
    r = httpx.get(f"{server.base}/v1/nothing", timeout=10)
    assert r.status_code == 404 and "error" in r.json()


def test_client_disconnect_frees_the_slot(server):
    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"messages": [{"role": "user", "content": "long"}], "stream": True, "max_tokens": 120}
            async with client.stream("POST", f"{server.base}/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_bytes():
                    break  # hang up after the first bytes
        await asyncio.sleep(1.0)

    asyncio.run(asyncio.wait_for(go(), 30))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        h = httpx.get(f"{server.base}/health", timeout=10).json()
        if h["active"] == 0:
            break
        time.sleep(0.2)
    assert h["active"] == 0
    r = asyncio.run(asyncio.wait_for(many(server.base, ["after"], [4]), 30))[0]
    assert len(r["content"]) == 4 and r["done"]


def test_sigterm_during_streams_stops_cleanly():
    s = Running("--context", "4096")
    got: list = []

    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            try:
                got.append(await stream_one(client, s.base, "slow", 4000))
            except Exception as exc:  # noqa: BLE001 - the stream ends early: an error event or a closed connection
                got.append(exc)

    t = threading.Thread(target=lambda: asyncio.run(asyncio.wait_for(go(), 60)), daemon=True)
    t.start()
    time.sleep(1.5)
    rc = s.stop(signal.SIGTERM, timeout_s=30)
    t.join(30)
    assert rc == 0, "".join(s.stderr)[-2000:]
    assert got, "the client never returned"
    if isinstance(got[0], dict):
        assert len(got[0]["content"]) < 4000
    assert any("stopped:" in line for line in s.stderr)
