#!/usr/bin/env python3
"""A small OpenAI-compatible streaming server that runs a real transformer decode on one NVIDIA GPU.

    python3 gpu_server.py --port 8011 [--max-batch 64] [--context 1024] [--host 127.0.0.1]
    python3 gpu_server.py --port 8011 --dry-run      # CPU, tiny shapes, eager steps (for testing)

Purpose: give wattbench's load generator and its NVML energy lens a server whose GPU work is what an 8B model's
serving really costs, without model weights or a serving stack. Needs only torch and aiohttp.

The model: a Llama-3.1-8B-shaped decoder (32 layers, hidden 4096, 32 query / 8 KV heads x 128, SwiGLU 14336,
vocab 128256, RMSNorm, untied LM head) with RANDOM bf16 weights made on the GPU; rotary embeddings are skipped.
Random weights (seeded: the same every start) never produce EOS, so every request generates exactly `max_tokens`
tokens (greedy argmax; default 128, or context - 1 if smaller; ignore_eos / min_tokens are accepted and change
nothing); each token is sent as a short fake word. Prompt tokens are a deterministic count from the messages'
text (UTF-8 bytes / 4 rounded up, at least 1; capped so prompt + max_tokens <= --context) and deterministic ids.

The engine (one background thread owns the GPU; the asyncio loop only does HTTP):
  * a static KV cache [layer, slot, kv head, position, head_dim] for --max-batch slots x --context positions;
  * each iteration: (a) admit waiting requests into free slots and run one batched prefill forward of their
    prompts (right-padded, causal; split into several forwards above --prefill-tokens padded tokens), writing
    their K/V into their slots; each one's first token comes from the logits at its last prompt position;
    (b) one decode step for all active sequences: CUDA graphs are captured for batch sizes 1, 2, 4, ..., up to
    --max-batch; the smallest graph >= the active count is replayed. Active sequences are always compacted into
    slots 0..n-1 (when one finishes, the last active slot's K/V and state are moved into its slot); the padding
    slots of a graph compute garbage that nobody reads;
    (c) each new token goes to its HTTP stream: one loop.call_soon_threadsafe per iteration hands the batch of
    tokens to the asyncio loop, which puts each into its request's asyncio.Queue.
  * Decode attention: each sequence attends over its slot's WHOLE fixed --context window with a mask that keeps
    only its own positions (<= its current position). The cost is therefore that of a full context window per
    sequence per step (simpler and graph-friendly; a paged/varlen kernel would read only the valid positions).
  * One new token per sequence per step; K/V for the new token is written at each sequence's own position.
  * Fallbacks, logged: if SDPA with the mask fails, decode attention is a plain masked softmax (--decode-attention
    matmul forces it); if CUDA graph capture fails, the decode step runs eagerly. /health shows which was used.

HTTP: GET /metrics (vLLM names: running, waiting, KV usage, token counters) and GET /dcgm/metrics
(dcgm-exporter names: NVML energy counter and power; modelled in a dry run without NVML), both in
gpu_metrics_endpoints.py; GET /v1/models, GET /health, POST /v1/chat/completions (stream true: OpenAI chat.completion.chunk events,
first with the role, one per token, a final one with finish_reason "length", a usage chunk when
stream_options.include_usage is true, then `data: [DONE]`; stream false: one chat.completion JSON with usage).
Any model name is accepted; responses name MODEL_ID. Errors are JSON {"error": {"message", "type", "code"}}.
Prints "ready on http://HOST:PORT" on stdout when it serves; SIGINT / SIGTERM stop it (in-flight requests
get an error event); a second signal exits at once.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_MAX_TOKENS = 128
MAX_WAITING = 4096

WORDS = ("the", "a", "of", "and", "to", "in", "is", "it", "that", "on", "was", "for", "with", "as", "at",
         "by", "this", "from", "or", "an", "be", "are", "not", "but", "all", "we", "can", "one", "its",
         "more", "new", "time", "so", "data", "watt", "joule", "power", "model", "token", "grid", "load",
         "heat", "fast", "slow", "light", "green", "blue", "red", "sun", "wind", "water", "stone", "tree",
         "cloud", "river", "field", "city", "road", "bridge", "tower", "house", "door", "key", "map")


def log(msg: str) -> None:
    print(f"[gpu_server {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Shape:
    layers: int = 32
    hidden: int = 4096
    q_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    mlp: int = 14336
    vocab: int = 128256
    device: str = "cuda"


DRY_SHAPE = Shape(layers=2, hidden=256, q_heads=4, kv_heads=2, head_dim=64, mlp=512, vocab=1000, device="cpu")


def graph_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... below max_batch, and max_batch itself."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    sizes.append(max_batch)
    return sizes


# ------------------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------------------

class Model:
    """Random-weight decoder, static KV cache and the static buffers the decode graphs read and write."""

    def __init__(self, torch: Any, shape: Shape, max_batch: int, context: int) -> None:
        self.torch, self.shape, self.max_batch, self.context = torch, shape, max_batch, context
        dev, dt = torch.device(shape.device), torch.bfloat16
        self.device = dev
        q_dim, kv_dim = shape.q_heads * shape.head_dim, shape.kv_heads * shape.head_dim

        def weight(*dims: int) -> Any:
            return torch.empty(*dims, device=dev, dtype=dt).normal_(0.0, 0.02)

        def ones(n: int) -> Any:
            return torch.ones(n, device=dev, dtype=dt)

        self.embed = weight(shape.vocab, shape.hidden)
        self.layers = [{
            "attn_norm": ones(shape.hidden),
            "wqkv": weight(q_dim + 2 * kv_dim, shape.hidden),
            "wo": weight(shape.hidden, q_dim),
            "mlp_norm": ones(shape.hidden),
            "wgu": weight(2 * shape.mlp, shape.hidden),
            "wdown": weight(shape.hidden, shape.mlp),
        } for _ in range(shape.layers)]
        self.final_norm = ones(shape.hidden)
        self.lm_head = weight(shape.vocab, shape.hidden)
        self.params = sum(t.numel() for t in [self.embed, self.final_norm, self.lm_head]
                          + [t for layer in self.layers for t in layer.values()])
        cache = (shape.layers, max_batch, shape.kv_heads, context, shape.head_dim)
        self.k_cache = torch.zeros(cache, device=dev, dtype=dt)
        self.v_cache = torch.zeros(cache, device=dev, dtype=dt)
        self.kv_bytes = 2 * self.k_cache.numel() * self.k_cache.element_size()
        # Static decode inputs / outputs (graphs use the first b entries).
        self.tok_buf = torch.zeros(max_batch, device=dev, dtype=torch.long)
        self.pos_buf = torch.zeros(max_batch, device=dev, dtype=torch.long)
        self.out_buf = torch.zeros(max_batch, device=dev, dtype=torch.long)
        self.slot_ar = torch.arange(max_batch, device=dev)
        self.pos_ar = torch.arange(context, device=dev)
        self.gqa_mode = self._pick_gqa_mode()
        self.attn_impl = "sdpa"  # decode attention; "matmul" (plain masked softmax) if SDPA fails here

    def _pick_gqa_mode(self) -> str:
        torch, f = self.torch, self.torch.nn.functional
        q = torch.zeros(1, 4, 3, 8, device=self.device, dtype=torch.bfloat16)
        kv = torch.zeros(1, 2, 3, 8, device=self.device, dtype=torch.bfloat16)
        try:
            f.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            return "enable_gqa"
        except (TypeError, RuntimeError):
            return "repeat_interleave"

    def rms_norm(self, x: Any, w: Any, eps: float = 1e-5) -> Any:
        xf = x.float()
        return (xf * self.torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

    def mlp(self, x: Any, layer: dict[str, Any]) -> Any:
        f = self.torch.nn.functional
        gate, up = f.linear(self.rms_norm(x, layer["mlp_norm"]), layer["wgu"]).chunk(2, dim=-1)
        return x + f.linear(f.silu(gate) * up, layer["wdown"])

    def decode_step(self, b: int) -> None:
        """One token for slots 0..b-1: input tok_buf[:b] at positions pos_buf[:b]; greedy next token into
        out_buf[:b]. Each slot writes its new K/V at its own position and attends over its whole window,
        masked to positions <= its own."""
        f, s = self.torch.nn.functional, self.shape
        d, g = s.head_dim, s.q_heads // s.kv_heads
        q_dim, kv_dim = s.q_heads * d, s.kv_heads * d
        tokens, pos, slots = self.tok_buf[:b], self.pos_buf[:b], self.slot_ar[:b]
        mask = (self.pos_ar[None, :] <= pos[:, None]).view(b, 1, 1, self.context)
        x = f.embedding(tokens, self.embed)  # [b, hidden]
        for i, layer in enumerate(self.layers):
            q, k, v = f.linear(self.rms_norm(x, layer["attn_norm"]), layer["wqkv"]).split([q_dim, kv_dim, kv_dim], -1)
            self.k_cache[i, slots, :, pos] = k.reshape(b, s.kv_heads, d)
            self.v_cache[i, slots, :, pos] = v.reshape(b, s.kv_heads, d)
            # q head h = group * g + j uses kv head `group`: the g heads of a group are g query rows (exact GQA).
            attn = self.decode_attention(q.reshape(b, s.kv_heads, g, d), self.k_cache[i, :b], self.v_cache[i, :b],
                                         mask)
            x = x + f.linear(attn.reshape(b, q_dim), layer["wo"])
            x = self.mlp(x, layer)
        logits = f.linear(self.rms_norm(x, self.final_norm), self.lm_head)
        self.out_buf[:b].copy_(logits.argmax(dim=-1))

    def decode_attention(self, q: Any, k: Any, v: Any, mask: Any) -> Any:
        """q [b, kv, g, d] against k, v [b, kv, context, d], bool mask [b, 1, 1, context] (True = attend)."""
        torch = self.torch
        if self.attn_impl == "sdpa":
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # [b, kv, g, context]
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)

    def prefill(self, tokens: Any, lengths: Any, slot0: int) -> Any:
        """Causal forward of right-padded [k, T] prompts into slots slot0..slot0+k-1 (K/V of positions 0..T-1
        written; padding positions are masked out later); the greedy token after each prompt's last position."""
        f, s, torch = self.torch.nn.functional, self.shape, self.torch
        k_, t, d, g = tokens.shape[0], tokens.shape[1], s.head_dim, s.q_heads // s.kv_heads
        q_dim, kv_dim = s.q_heads * d, s.kv_heads * d
        x = f.embedding(tokens, self.embed)  # [k, T, hidden]
        for i, layer in enumerate(self.layers):
            q, k, v = f.linear(self.rms_norm(x, layer["attn_norm"]), layer["wqkv"]).split([q_dim, kv_dim, kv_dim], -1)
            q = q.view(k_, t, s.q_heads, d).transpose(1, 2)
            k = k.view(k_, t, s.kv_heads, d).transpose(1, 2)
            v = v.view(k_, t, s.kv_heads, d).transpose(1, 2)
            self.k_cache[i, slot0:slot0 + k_, :, :t].copy_(k)
            self.v_cache[i, slot0:slot0 + k_, :, :t].copy_(v)
            if self.gqa_mode == "enable_gqa":
                attn = f.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                attn = f.scaled_dot_product_attention(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1),
                                                      is_causal=True)
            x = x + f.linear(attn.transpose(1, 2).reshape(k_, t, q_dim), layer["wo"])
            x = self.mlp(x, layer)
        last = x[torch.arange(k_, device=self.device), lengths - 1]  # [k, hidden]
        logits = f.linear(self.rms_norm(last, self.final_norm), self.lm_head)
        return logits.argmax(dim=-1)

    def move_slot(self, src: int, dst: int, positions: int) -> None:
        """Copy the first `positions` cached positions of slot src into slot dst (all layers)."""
        if positions > 0:
            self.k_cache[:, dst, :, :positions].copy_(self.k_cache[:, src, :, :positions])
            self.v_cache[:, dst, :, :positions].copy_(self.v_cache[:, src, :, :positions])


# ------------------------------------------------------------------------------------------------------------
# Requests and the engine
# ------------------------------------------------------------------------------------------------------------

@dataclass
class GenRequest:
    """One chat completion: made by the HTTP handler, filled by the engine through `queue` (asyncio side).

    Events put on the queue: ("token", word), ("done", None), ("error", message)."""

    rid: str
    prompt_ids: list[int]
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    cancelled: bool = False
    terminated: bool = False  # engine side: a terminal event was sent


@dataclass
class Seq:
    req: GenRequest
    slot: int
    pos: int = 0          # next position to write (= tokens in the cache)
    last_token: int = 0   # the token fed to the next decode step
    generated: int = 0


@dataclass
class Stats:
    submitted: int = 0
    completed: int = 0
    cancelled: int = 0
    errors: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    decode_steps: int = 0
    prefill_forwards: int = 0
    decode_s: float = 0.0
    prefill_s: float = 0.0
    by_graph: dict[int, int] = field(default_factory=dict)
    max_active: int = 0


class Engine:
    def __init__(self, shape: Shape, max_batch: int, context: int, prefill_tokens: int, use_graphs: bool,
                 attention: str = "sdpa") -> None:
        self.shape, self.max_batch, self.context, self.attention = shape, max_batch, context, attention
        self.prefill_tokens, self.use_graphs = prefill_tokens, use_graphs
        self.sizes = graph_sizes(max_batch)
        self.cv = threading.Condition()
        self.waiting: collections.deque[GenRequest] = collections.deque()
        self.active: list[Seq] = []  # active[i].slot == i
        self.stopping = False
        self.ready = threading.Event()
        self.startup_error: str | None = None
        self.alive = False
        self.stats = Stats()
        self.info: dict[str, Any] = {}
        self.graphs: dict[int, Any] = {}
        self.thread = threading.Thread(target=self._thread_main, name="engine", daemon=True)
        self.torch: Any = None
        self.model: Model | None = None

    # -- called from the asyncio thread --------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def submit(self, req: GenRequest) -> str | None:
        """Queue a request; returns an error message (no queueing) when the engine cannot take it."""
        with self.cv:
            if self.stopping or not self.alive:
                return "the engine is not running (starting up, stopped or failed)"
            if len(self.waiting) >= MAX_WAITING:
                return f"too many waiting requests ({MAX_WAITING})"
            self.waiting.append(req)
            self.stats.submitted += 1
            self.cv.notify()
        return None

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()

    # -- the engine thread -----------------------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            import torch
            self.torch = torch
            with torch.no_grad():
                self._build()
                with self.cv:
                    self.alive = not self.stopping
                self.ready.set()
                self._serve()
        except BaseException as exc:  # noqa: BLE001 - startup failures are reported to main
            text = "".join(traceback.format_exception(exc))
            if not self.ready.is_set():
                self.startup_error = text
                self.ready.set()
            else:
                log(f"engine thread died:\n{text}")
        finally:
            with self.cv:
                self.alive = False
                self.stopping = True
            self._fail_everything("the server is shutting down")

    def _sync(self) -> None:
        if self.shape.device == "cuda":
            self.torch.cuda.synchronize()

    def _build(self) -> None:
        torch, s = self.torch, self.shape
        t0 = time.perf_counter()
        if s.device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("torch.cuda.is_available() is False (use --dry-run for CPU)")
            self.event = torch.cuda.Event()
        torch.manual_seed(0)  # the same random weights every start
        model = Model(torch, s, self.max_batch, self.context)
        model.attn_impl = self.attention
        self.model = model
        self._sync()
        self.info = {"params_b": round(model.params / 1e9, 3), "kv_cache_gb": round(model.kv_bytes / 1e9, 2),
                     "gqa_mode": model.gqa_mode, "device": s.device, "max_batch": self.max_batch,
                     "context": self.context, "graph_sizes": self.sizes}
        if s.device == "cuda":
            self.info["device_name"] = torch.cuda.get_device_name(0)
        log(f"model built in {time.perf_counter() - t0:.1f} s: {self.info}")
        # Warm-up: a prefill (kernel selection) and every decode size once, eagerly.
        toks = torch.randint(0, s.vocab, (2, 16), device=model.device)
        model.prefill(toks, torch.tensor([16, 9], device=model.device), 0)
        # pinned host buffers for the per-step copies
        pin = s.device == "cuda"
        self.tok_host = torch.zeros(self.max_batch, dtype=torch.long, pin_memory=pin)
        self.pos_host = torch.zeros(self.max_batch, dtype=torch.long, pin_memory=pin)
        self.out_host = torch.zeros(self.max_batch, dtype=torch.long, pin_memory=pin)
        try:
            self._warm_decode()
        except Exception as exc:  # noqa: BLE001 - e.g. no SDPA kernel for this mask / shape here
            log(f"decode with SDPA failed ({type(exc).__name__}: {exc}); using matmul attention")
            model.attn_impl = "matmul"
            self._sync()
            self._warm_decode()
        if s.device == "cuda":
            if self.use_graphs and not self._capture() and model.attn_impl == "sdpa":
                model.attn_impl = "matmul"
                log("retrying the capture with matmul attention")
                if not self._capture():
                    model.attn_impl = "sdpa"
            self.info["cuda_graphs"] = bool(self.graphs)
            self.info["memory_allocated_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2)
            self.info["memory_reserved_gb"] = round(torch.cuda.memory_reserved() / 1e9, 2)
        else:
            self.info["cuda_graphs"] = False
        self.info["decode_attention"] = model.attn_impl
        model.k_cache.zero_()
        model.v_cache.zero_()
        self._sync()
        log(f"engine ready in {time.perf_counter() - t0:.1f} s: cuda_graphs={self.info['cuda_graphs']}"
            + (f", memory allocated {self.info['memory_allocated_gb']} GB" if s.device == "cuda" else ""))

    def _warm_decode(self) -> None:
        """Every decode size twice, eagerly (on a side stream on CUDA, as graph capture wants)."""
        torch, model = self.torch, self.model
        assert model is not None
        if self.shape.device != "cuda":
            for b in self.sizes:
                model.decode_step(b)
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for b in self.sizes:
                for _ in range(2):
                    model.decode_step(b)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()

    def _capture(self) -> bool:
        """CUDA graphs of the decode step for every size (largest first, one shared memory pool)."""
        torch, model = self.torch, self.model
        assert model is not None
        t1 = time.perf_counter()
        try:
            self._warm_decode()
            pool = torch.cuda.graph_pool_handle()
            for b in sorted(self.sizes, reverse=True):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    model.decode_step(b)
                self.graphs[b] = graph
            torch.cuda.synchronize()
            for b in self.sizes:  # one replay each, to be sure they run
                self.graphs[b].replay()
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - decode eagerly instead
            self.graphs = {}
            log(f"CUDA graph capture failed ({model.attn_impl} attention): {type(exc).__name__}: {exc}")
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
            return False
        log(f"captured CUDA graphs for batch sizes {self.sizes} ({model.attn_impl} attention) "
            f"in {time.perf_counter() - t1:.1f} s")
        return True

    def _serve(self) -> None:
        last_log = time.monotonic()
        logged_tokens = 0
        while True:
            with self.cv:
                while not self.stopping and not self.waiting and not self.active:
                    self.cv.wait(0.5)
                if self.stopping:
                    return
                admit: list[GenRequest] = []
                while self.waiting and len(self.active) + len(admit) < self.max_batch:
                    req = self.waiting.popleft()
                    if req.cancelled:
                        self.stats.cancelled += 1
                        req.terminated = True
                        continue
                    admit.append(req)
            events: list[tuple[GenRequest, tuple[str, Any]]] = []
            try:
                self._iteration(admit, events)
            except Exception as exc:  # noqa: BLE001 - one failed step fails its requests, the server goes on
                log(f"engine step failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}")
                message = f"engine error: {type(exc).__name__}: {exc}"
                for seq in self.active:
                    if not seq.req.terminated:
                        seq.req.terminated = True
                        events.append((seq.req, ("error", message)))
                        self.stats.errors += 1
                for req in admit:
                    if not req.terminated:
                        req.terminated = True
                        events.append((req, ("error", message)))
                        self.stats.errors += 1
                self.active = []
            self._deliver(events)
            now = time.monotonic()
            if now - last_log >= 5.0:
                st = self.stats
                log(f"active {len(self.active)}, waiting {len(self.waiting)}, submitted {st.submitted}, "
                    f"completed {st.completed}, errors {st.errors}, cancelled {st.cancelled}, "
                    f"tokens {st.tokens} ({(st.tokens - logged_tokens) / (now - last_log):.0f}/s), "
                    f"decode steps {st.decode_steps} (mean {1e3 * st.decode_s / max(st.decode_steps, 1):.2f} ms), "
                    f"prefills {st.prefill_forwards} ({st.prefill_s:.2f} s), by graph size {st.by_graph}")
                last_log, logged_tokens = now, st.tokens

    def _iteration(self, admit: list[GenRequest], events: list[tuple[GenRequest, tuple[str, Any]]]) -> None:
        # drop cancelled sequences first (client gone): their slots free up
        gone = [seq for seq in self.active if seq.req.cancelled]
        if gone:
            for seq in gone:
                seq.req.terminated = True
                self.stats.cancelled += 1
            self._retire(gone)
        # (a) admit and prefill
        if admit:
            base = len(self.active)
            new = [Seq(req=req, slot=base + i) for i, req in enumerate(admit)]
            self.active.extend(new)
            self.stats.max_active = max(self.stats.max_active, len(self.active))
            self._prefill(new)
            for seq in new:
                self._emit_token(seq, events)
        finished = [seq for seq in self.active if seq.generated >= seq.req.max_tokens]
        if finished:
            self._retire(finished)
        # (b) decode
        if self.active:
            n = len(self.active)
            b = next(size for size in self.sizes if size >= n)
            next_tokens = self._decode(n, b)
            for seq, tok in zip(self.active, next_tokens):
                seq.last_token = tok
                seq.pos += 1
                seq.generated += 1
                self._emit_token(seq, events)
            finished = [seq for seq in self.active if seq.generated >= seq.req.max_tokens]
            if finished:
                self._retire(finished)

    def _emit_token(self, seq: Seq, events: list[tuple[GenRequest, tuple[str, Any]]]) -> None:
        events.append((seq.req, ("token", seq.last_token)))
        self.stats.tokens += 1
        if seq.generated >= seq.req.max_tokens:
            seq.req.terminated = True
            events.append((seq.req, ("done", None)))
            self.stats.completed += 1

    def _prefill(self, new: list[Seq]) -> None:
        torch, model = self.torch, self.model
        assert model is not None
        t0 = time.perf_counter()
        chunk: list[Seq] = []

        def run(group: list[Seq]) -> None:
            lengths = [len(seq.req.prompt_ids) for seq in group]
            t = max(lengths)
            rows = [seq.req.prompt_ids + [0] * (t - len(seq.req.prompt_ids)) for seq in group]
            tokens = torch.tensor(rows, dtype=torch.long).to(model.device)
            lens = torch.tensor(lengths, dtype=torch.long).to(model.device)
            first_dev = model.prefill(tokens, lens, group[0].slot)
            if self.shape.device == "cuda":
                self.event.record()
                self.event.synchronize()  # waits with the GIL released
            first = first_dev.tolist()
            self.stats.prefill_forwards += 1
            for seq, length, tok in zip(group, lengths, first):
                seq.pos, seq.last_token, seq.generated = length, int(tok), 1
                self.stats.prompt_tokens += length

        for seq in new:  # consecutive slots; split where the padded token count would pass the budget
            longest = max([len(s.req.prompt_ids) for s in chunk] + [len(seq.req.prompt_ids)])
            if chunk and longest * (len(chunk) + 1) > self.prefill_tokens:
                run(chunk)
                chunk = []
            chunk.append(seq)
        if chunk:
            run(chunk)
        self.stats.prefill_s += time.perf_counter() - t0

    def _decode(self, n: int, b: int) -> list[int]:
        model = self.model
        assert model is not None
        t0 = time.perf_counter()
        toks, poss = self.tok_host, self.pos_host
        pad = [0] * (b - n)  # padding slots (free): token 0 at position 0, results unused
        toks[:b].copy_(self.torch.tensor([seq.last_token for seq in self.active] + pad, dtype=self.torch.long))
        poss[:b].copy_(self.torch.tensor([seq.pos for seq in self.active] + pad, dtype=self.torch.long))
        cuda = self.shape.device == "cuda"
        model.tok_buf[:b].copy_(toks[:b], non_blocking=cuda)
        model.pos_buf[:b].copy_(poss[:b], non_blocking=cuda)
        graph = self.graphs.get(b)
        if graph is not None:
            graph.replay()
        else:
            model.decode_step(b)
        if cuda:
            self.out_host[:n].copy_(model.out_buf[:n], non_blocking=True)
            self.event.record()
            self.event.synchronize()  # waits with the GIL released
            out = self.out_host[:n].tolist()
        else:
            out = model.out_buf[:n].tolist()
        self.stats.decode_steps += 1
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.by_graph[b] = self.stats.by_graph.get(b, 0) + 1
        return out

    def _retire(self, done: list[Seq]) -> None:
        """Remove finished sequences, keeping the active ones compacted in slots 0..n-1: each freed slot (highest
        first) takes the last active sequence, K/V and state."""
        model = self.model
        assert model is not None
        for seq in sorted(done, key=lambda s: s.slot, reverse=True):
            last = self.active[-1]
            if last is not seq:
                model.move_slot(last.slot, seq.slot, last.pos)
                last.slot = seq.slot
                self.active[seq.slot] = last
            self.active.pop()

    def _deliver(self, events: list[tuple[GenRequest, tuple[str, Any]]]) -> None:
        if not events:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[GenRequest, tuple[str, Any]]]] = {}
        for item in events:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_dispatch, items)
            except RuntimeError:  # loop closed: nobody is listening any more
                pass

    def _fail_everything(self, message: str) -> None:
        events: list[tuple[GenRequest, tuple[str, Any]]] = []
        with self.cv:
            pending = [seq.req for seq in self.active] + list(self.waiting)
            self.active, self.waiting = [], collections.deque()
        for req in pending:
            if not req.terminated:
                req.terminated = True
                events.append((req, ("error", message)))
        self._deliver(events)


def _dispatch(items: list[tuple[GenRequest, tuple[str, Any]]]) -> None:
    for req, event in items:
        req.queue.put_nowait(event)


# ------------------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------------------

def error_json(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    from aiohttp import web
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


class BadRequest(ValueError):
    pass


def message_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    parts: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            raise BadRequest("each message must be an object")
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for piece in content:
                if isinstance(piece, dict) and isinstance(piece.get("text"), str):
                    parts.append(piece["text"])
        elif content is not None:
            raise BadRequest("message content must be a string or a list of parts")
    return "\n".join(parts)


def prompt_ids(text: str, count: int, vocab: int) -> list[int]:
    """Deterministic token ids for `text` (an LCG seeded by its CRC32)."""
    x = zlib.crc32(text.encode("utf-8")) or 1
    out = []
    for _ in range(count):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x % vocab)
    return out


def int_field(body: dict[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer")
    return value


class Server:
    def __init__(self, engine: Engine, context: int, vocab: int, gpu_meter: Any = None) -> None:
        self.engine, self.context, self.vocab = engine, context, vocab
        self.gpu_meter = gpu_meter
        self.created = int(time.time())
        self.word_json = [json.dumps(w + " ") for w in WORDS]

    def app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def errors(request: Any, handler: Any) -> Any:
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return error_json(exc.status, exc.reason or "error",
                                  "not_found_error" if exc.status == 404 else "invalid_request_error")
            except (asyncio.CancelledError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001
                log(f"handler error: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
                return error_json(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

        app = web.Application(middlewares=[errors], client_max_size=16 * 1024 * 1024)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/health", self.health)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/dcgm/metrics", self.dcgm)
        return app

    async def metrics(self, request: Any) -> Any:
        """vLLM-style engine metrics (gpu_metrics_endpoints.engine_exposition)."""
        from aiohttp import web
        from gpu_metrics_endpoints import engine_exposition
        return web.Response(text=engine_exposition(self.engine), content_type="text/plain")

    async def dcgm(self, request: Any) -> Any:
        """dcgm-exporter-style GPU energy and power read from NVML (gpu_metrics_endpoints.GpuMeter)."""
        from aiohttp import web
        if self.gpu_meter is None or not self.gpu_meter.available:
            note = self.gpu_meter.note if self.gpu_meter is not None else "no GPU meter"
            return error_json(503, note, "server_error")
        text = await asyncio.get_running_loop().run_in_executor(None, self.gpu_meter.exposition)
        return web.Response(text=text, content_type="text/plain")

    async def models(self, request: Any) -> Any:
        from aiohttp import web
        return web.json_response({"object": "list", "data": [{
            "id": MODEL_ID, "object": "model", "created": self.created, "owned_by": "wattbench-gpu-server",
            "root": MODEL_ID, "max_model_len": self.context}]})

    async def health(self, request: Any) -> Any:
        from aiohttp import web
        e = self.engine
        ok = e.alive and not e.stopping
        st = e.stats
        return web.json_response({
            "status": "ok" if ok else "unavailable", "active": len(e.active), "waiting": len(e.waiting),
            "submitted": st.submitted, "completed": st.completed, "errors": st.errors, "cancelled": st.cancelled,
            "tokens": st.tokens, "decode_steps": st.decode_steps, "max_active": st.max_active, **e.info,
        }, status=200 if ok else 503)

    async def chat(self, request: Any) -> Any:
        from aiohttp import web
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error_json(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return error_json(400, "the request body must be a JSON object")
        try:
            text = message_text(body.get("messages"))
            max_tokens = int_field(body, "max_tokens", None)
            if max_tokens is None:
                max_tokens = int_field(body, "max_completion_tokens", None)
            if max_tokens is None:  # not given: 128, or all the context leaves after one prompt token
                max_tokens = min(DEFAULT_MAX_TOKENS, self.context - 1)
            int_field(body, "min_tokens", 0)  # accepted; every request generates max_tokens anyway
            n = int_field(body, "n", 1)
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise BadRequest("'stream' must be true or false")
            stream_options = body.get("stream_options") or {}
            if not isinstance(stream_options, dict):
                raise BadRequest("'stream_options' must be an object")
        except BadRequest as exc:
            return error_json(400, str(exc))
        if n != 1:
            return error_json(400, "only n = 1 is supported")
        if max_tokens is None or max_tokens < 1:
            return error_json(400, "'max_tokens' must be at least 1")
        if max_tokens > self.context - 1:
            return error_json(400, f"'max_tokens' ({max_tokens}) must be at most {self.context - 1} "
                                   f"(context {self.context} including at least one prompt token)")
        count = max(1, math.ceil(len(text.encode("utf-8")) / 4))
        count = min(count, self.context - max_tokens)
        loop = asyncio.get_running_loop()
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        req = GenRequest(rid=rid, prompt_ids=prompt_ids(text, count, self.vocab), max_tokens=max_tokens,
                         loop=loop, queue=asyncio.Queue())
        refused = self.engine.submit(req)
        if refused:
            return error_json(503, refused, "server_error")
        usage = {"prompt_tokens": count, "completion_tokens": max_tokens, "total_tokens": count + max_tokens}
        created = int(time.time())
        try:
            if stream:
                return await self._stream(request, req, created, usage, bool(stream_options.get("include_usage")))
            words: list[str] = []
            while True:
                kind, value = await req.queue.get()
                if kind == "token":
                    words.append(WORDS[value % len(WORDS)] + " ")
                elif kind == "done":
                    break
                else:
                    return error_json(503 if "shutting down" in str(value) else 500, str(value), "server_error")
            return web.json_response({
                "id": rid, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                             "finish_reason": "length", "logprobs": None}],
                "usage": usage})
        finally:
            req.cancelled = True  # no-op when finished; frees the slot when the client went away

    async def _stream(self, request: Any, req: GenRequest, created: int, usage: dict[str, int],
                      include_usage: bool) -> Any:
        from aiohttp import web
        head = json.dumps({"id": req.rid, "object": "chat.completion.chunk", "created": created,
                           "model": MODEL_ID})[:-1]  # without the closing brace
        # Wait for the first event before sending headers: an engine error still becomes an HTTP error.
        first = await req.queue.get()
        if first[0] == "error":
            return error_json(503 if "shutting down" in str(first[1]) else 500, str(first[1]), "server_error")
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "X-Request-ID": request.headers.get("X-Request-ID", req.rid)})
        await resp.prepare(request)
        role = head + ', "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, ' \
                      '"logprobs": null, "finish_reason": null}]}'
        token_prefix = "data: " + head + ', "choices": [{"index": 0, "delta": {"content": '
        token_suffix = '}, "logprobs": null, "finish_reason": null}]}\n\n'
        out = ["data: " + role + "\n\n"]
        event = first
        while True:
            kind, value = event
            if kind == "token":
                out.append(token_prefix + self.word_json[value % len(WORDS)] + token_suffix)
            elif kind == "done":
                out.append("data: " + head + ', "choices": [{"index": 0, "delta": {}, "logprobs": null, '
                                             '"finish_reason": "length"}]}\n\n')
                if include_usage:
                    out.append("data: " + head + ', "choices": [], "usage": ' + json.dumps(usage) + "}\n\n")
                out.append("data: [DONE]\n\n")
            else:
                out.append("data: " + json.dumps({"error": {"message": str(value), "type": "server_error",
                                                            "code": 503 if "shutting down" in str(value) else 500}})
                           + "\n\n")
            if kind != "token" or req.queue.empty():
                await resp.write("".join(out).encode())
                out = []
            if kind != "token":
                break
            event = req.queue.get_nowait() if not req.queue.empty() else await req.queue.get()
        await resp.write_eof()
        return resp


# ------------------------------------------------------------------------------------------------------------

async def serve(args: argparse.Namespace, shape: Shape) -> int:
    from aiohttp import web

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = {"n": 0}

    def on_signal(signame: str) -> None:
        signals["n"] += 1
        if signals["n"] > 1:
            log(f"second {signame}: exiting now")
            os._exit(130)
        log(f"{signame}: stopping")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig.name)
        except (NotImplementedError, RuntimeError):
            pass

    engine = Engine(shape, args.max_batch, args.context, args.prefill_tokens,
                    use_graphs=not args.dry_run and not args.no_graphs, attention=args.decode_attention)
    engine.start()
    while not engine.ready.is_set() and not stop.is_set():
        await asyncio.sleep(0.05)
    if stop.is_set():
        engine.stop()
        return 130
    if engine.startup_error:
        log(f"engine failed to start:\n{engine.startup_error}")
        return 1

    from gpu_metrics_endpoints import GpuMeter
    gpu_meter = GpuMeter(modelled=(60.0, 10.0, lambda: len(engine.active)) if args.dry_run else None)
    log(f"/dcgm/metrics: {gpu_meter.note}")
    server = Server(engine, args.context, shape.vocab, gpu_meter)
    import aiohttp
    try:
        new_aiohttp = tuple(int(x) for x in aiohttp.__version__.split(".")[:2]) >= (3, 9)
    except ValueError:
        new_aiohttp = True
    # aiohttp >= 3.9 takes shutdown_timeout on the runner, older ones on the site (a wrong place fails late)
    runner = web.AppRunner(server.app(), access_log=None, **({"shutdown_timeout": 5.0} if new_aiohttp else {}))
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port, **({} if new_aiohttp else {"shutdown_timeout": 5.0}))
        await site.start()
    except OSError as exc:
        log(f"cannot listen on {args.host}:{args.port}: {exc}")
        engine.stop()
        await runner.cleanup()
        return 1
    print(f"ready on http://{args.host}:{args.port}", flush=True)

    async def watch_engine() -> None:
        while engine.thread.is_alive():
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch_engine())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([watcher, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not engine.thread.is_alive() and not stop.is_set():
        log("the engine thread ended unexpectedly; stopping")
        code = 1
    for task in (watcher, stopper):
        task.cancel()
    engine.stop()
    await loop.run_in_executor(None, engine.thread.join, 15.0)
    await asyncio.sleep(0.05)  # let the final error events reach their handlers
    await runner.cleanup()
    st = engine.stats
    log(f"stopped: submitted {st.submitted}, completed {st.completed}, errors {st.errors}, cancelled "
        f"{st.cancelled}, tokens {st.tokens}, prompt tokens {st.prompt_tokens}, decode steps {st.decode_steps} "
        f"(mean {1e3 * st.decode_s / max(st.decode_steps, 1):.2f} ms), prefill forwards {st.prefill_forwards}, "
        f"max active {st.max_active}, by graph size {st.by_graph}")
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--max-batch", type=int, default=None, help="decode slots (default 64; dry run 8)")
    p.add_argument("--context", type=int, default=None, help="positions per slot (default 1024; dry run 128)")
    p.add_argument("--prefill-tokens", type=int, default=8192,
                   help="padded prompt tokens per prefill forward at most (default 8192)")
    p.add_argument("--no-graphs", action="store_true", help="decode eagerly (no CUDA graphs)")
    p.add_argument("--decode-attention", choices=("sdpa", "matmul"), default="sdpa",
                   help="decode attention kernel (default sdpa; matmul is also the automatic fallback)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, eager steps (for testing)")
    args = p.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the engine thread gets the GIL back quickly after each GPU wait
    shape = DRY_SHAPE if args.dry_run else Shape()
    args.max_batch = args.max_batch or (8 if args.dry_run else 64)
    args.context = args.context or (128 if args.dry_run else 1024)
    if args.max_batch < 1 or args.context < 2 or args.prefill_tokens < 1:
        p.error("--max-batch >= 1, --context >= 2 and --prefill-tokens >= 1 please")
    log(f"starting: {'dry run (CPU, tiny shapes)' if args.dry_run else 'Llama-3.1-8B shape on CUDA'}, "
        f"max batch {args.max_batch}, context {args.context}, pid {os.getpid()}")
    try:
        return asyncio.run(serve(args, shape))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
