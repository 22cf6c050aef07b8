"""Workloads beyond the 12 graded prompts: synthetic prompts of chosen token lengths, ShareGPT-style JSON,
Hugging Face datasets by name, and request traces (timestamps + lengths) replayed at their own pace or scaled.

Every workload is written once as a prompts JSONL file under `<out>/workloads/` (prompt, id, and the optional
`input_tokens`, `max_tokens`, `arrival_s` that prompts.load_prompts reads) and the run uses that file: the run's
manifest keeps its SHA-256, so `--resume` refuses another workload and sends exactly what is missing.

Output length: each prompt may carry `max_tokens` (the requested output length). The direct path sends it as
`max_tokens`; on a vLLM-style server (vLLM, SGLang: `--output-enforce vllm`, or `auto` when its /models says
`owned_by` vllm / sglang) it also sends `ignore_eos: true` and `min_tokens`, so the answer has exactly that
length. The service path sends `max_tokens` to /chat (a cap only). The CSV records the target
(`target_output_tokens`) and how it was enforced (`output_enforced`) beside what came back (`completion_tokens`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wattbench.cli_support import CliError
from wattbench.workloads.prompts import PromptSpec
from wattbench.workloads.tokens import CHARS_PER_TOKEN, TokenCounter, token_counter

ENFORCE_MODES = ("auto", "vllm", "max-tokens", "off")
#: /models `owned_by` values of servers that take ignore_eos and min_tokens (vLLM's and SGLang's samplers)
VLLM_STYLE_OWNERS = ("vllm", "sglang")
DEFAULT_NUM_PROMPTS = 100

# A neutral word pool for synthetic prompts (the words do not matter to a server, the token count does).
_WORDS = (
    "the river carries light across a quiet valley where farmers measure rain and engineers count every watt "
    "that a server spends while answering questions about history science music cities markets weather and "
    "the long patient work of building bridges roads schools gardens libraries harbours railways and clocks"
).split()


class WorkloadError(CliError):
    """A workload that cannot be built; the message names the option or file and what to fix."""


@dataclass(frozen=True)
class Lengths:
    """A token-length distribution: fixed N, uniform:LOW:HIGH, or normal:MEAN:STDEV (clipped to >= 1)."""

    kind: Literal["fixed", "uniform", "normal"]
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return int(self.a)
        if self.kind == "uniform":
            return rng.randint(int(self.a), int(self.b))
        return max(1, round(rng.gauss(self.a, self.b)))

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a


def parse_lengths(text: str, flag: str) -> Lengths:
    """`512`, `uniform:256:1024` or `normal:512:64` -> Lengths; WorkloadError naming `flag` otherwise."""
    parts = str(text).strip().split(":")
    try:
        if len(parts) == 1:
            value = int(parts[0])
            if value >= 1:
                return Lengths("fixed", value)
        elif parts[0] == "uniform" and len(parts) == 3:
            low, high = int(parts[1]), int(parts[2])
            if 1 <= low <= high:
                return Lengths("uniform", low, high)
        elif parts[0] == "normal" and len(parts) == 3:
            mean, stdev = float(parts[1]), float(parts[2])
            if mean >= 1 and stdev >= 0 and math.isfinite(mean + stdev):
                return Lengths("normal", mean, stdev)
    except ValueError:
        pass
    raise WorkloadError(f"{flag} {text!r}: give N (fixed), uniform:LOW:HIGH or normal:MEAN:STDEV, tokens >= 1")


def add_workload_arguments(p: argparse.ArgumentParser) -> None:
    """The workload options shared by `wattbench run` and `wattbench sweep` (dest = RunConfig field)."""
    g = p.add_argument_group("workload (default: the 12 graded prompts; docs/sweeps.md)")
    g.add_argument("--synthetic", action="store_true",
                   help="synthetic prompts of --input-tokens tokens, answers of --output-tokens tokens")
    g.add_argument("--input-tokens", help="prompt length in tokens: N, uniform:LOW:HIGH or normal:MEAN:STDEV")
    g.add_argument("--output-tokens",
                   help="answer length in tokens (sent as max_tokens; + ignore_eos/min_tokens on vLLM-style "
                        "servers): N, uniform:LOW:HIGH or normal:MEAN:STDEV")
    g.add_argument("--num-prompts", type=int,
                   help=f"prompts to build or take from a dataset (default {DEFAULT_NUM_PROMPTS})")
    g.add_argument("--dataset", help="ShareGPT-style JSON file, or hf:NAME for a Hugging Face dataset "
                   "(needs the datasets package and network)")
    g.add_argument("--dataset-split", default="train", help="with hf:NAME: the split (default train)")
    g.add_argument("--dataset-column", help="with hf:NAME: the prompt column (default: prompt, question, "
                   "instruction, text, or ShareGPT conversations)")
    g.add_argument("--trace", help="JSONL request trace: timestamp (ms) or timestamp_s, input_length, "
                   "output_length [, prompt]; replayed at its own pace")
    g.add_argument("--trace-speed", type=float, default=1.0,
                   help="with --trace: time scale (2 = twice as fast, 0.5 = half speed)")
    g.add_argument("--tokenizer", help="a tokenizer.json to count tokens with (default: the model's in the "
                   "local Hugging Face cache, else LiteLLM's counter)")
    g.add_argument("--output-enforce", choices=ENFORCE_MODES, default="auto",
                   help="how the output length is enforced on the direct path: vllm (max_tokens + ignore_eos + "
                        "min_tokens), max-tokens (a cap only), off, auto (vllm when /models says vLLM/SGLang)")


def check_workload_options(c: Any) -> None:
    """CliError for workload options that contradict each other (c: a RunConfig)."""
    sources = [name for name, on in (("--prompts", c.prompts), ("--synthetic", c.synthetic),
                                     ("--dataset", c.dataset), ("--trace", c.trace)) if on]
    if len(sources) > 1:
        raise WorkloadError(f"give one workload, not {' and '.join(sources)}")
    if c.input_tokens is not None:
        parse_lengths(c.input_tokens, "--input-tokens")
        if not (c.synthetic or c.trace):
            raise WorkloadError("--input-tokens needs --synthetic")
    if c.output_tokens is not None:
        parse_lengths(c.output_tokens, "--output-tokens")
    if c.synthetic and c.input_tokens is None:
        raise WorkloadError("--synthetic needs --input-tokens N (and usually --output-tokens M)")
    if c.num_prompts is not None and (isinstance(c.num_prompts, bool) or not isinstance(c.num_prompts, int)
                                      or c.num_prompts < 1):
        raise WorkloadError(f"--num-prompts must be >= 1, not {c.num_prompts}")
    if not (isinstance(c.trace_speed, int | float) and c.trace_speed > 0 and math.isfinite(c.trace_speed)):
        raise WorkloadError(f"--trace-speed must be a number > 0, not {c.trace_speed}")
    if c.output_enforce not in ENFORCE_MODES:
        raise WorkloadError(f"--output-enforce must be one of {', '.join(ENFORCE_MODES)}")
    if c.trace and (c.concurrency is not None or c.rate_rps is not None):
        raise WorkloadError("--trace sets its own arrival times: drop --concurrency / --rate "
                            "(--max-concurrency caps what is in flight; --trace-speed scales it)")
    if c.trace and c.workers != "auto" and c.workers > 1:
        raise WorkloadError("--trace is replayed by one process: drop --workers")


def has_workload(c: Any) -> bool:
    """Whether the config asks for a built workload (else: --prompts or the 12 graded prompts)."""
    return bool(c.synthetic or c.dataset or c.trace)


# -- building ----------------------------------------------------------------------------------------------
def synthetic_text(counter: TokenCounter, tokens: int, rng: random.Random, prefix: str = "") -> tuple[str, int]:
    """A prompt of `tokens` tokens by `counter` (prefix included, so that no two prompts share a cached
    prefix): (text, its token count)."""
    words = [prefix] if prefix else []
    approx = counter.name.startswith("approximation")
    target_chars = tokens * CHARS_PER_TOKEN
    if approx:
        while len(" ".join(words)) < target_chars:
            words.append(rng.choice(_WORDS))
        text = " ".join(words)[:target_chars]
        return text, counter.count(text)
    ids: list[int] = []
    while len(ids) < tokens:  # a word is about one token: add what is missing, then count again
        words.extend(rng.choice(_WORDS) for _ in range(tokens - len(ids) + 4))
        ids = counter.encode(" ".join(words))
    ids = ids[:tokens]
    text = counter.decode(ids)
    return text, counter.count(text)


def synthetic_prompts(n: int, input_tokens: Lengths, output_tokens: Lengths | None, counter: TokenCounter,
                      seed: int = 0) -> list[PromptSpec]:
    """n synthetic prompts, each starting with its own number (no shared prefix for a cache to reuse)."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        want = input_tokens.sample(rng)
        text, got = synthetic_text(counter, want, rng, prefix=f"[{i}]")
        specs.append(PromptSpec(prompt_id=f"syn{i:05d}", prompt=text, category="synthetic", input_tokens=got,
                                max_tokens=output_tokens.sample(rng) if output_tokens else None))
    return specs


def sharegpt_prompts(path: Path, counter: TokenCounter, limit: int) -> list[PromptSpec]:
    """The first `limit` conversations of a ShareGPT-style JSON file (a list of {"conversations": [{"from":
    "human", "value": ...}, {"from": "gpt", "value": ...}, ...]}): the first human turn is the prompt, the
    reply's length (in tokens) its requested output length, as vLLM's benchmark does."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"--dataset {path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"--dataset {path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise WorkloadError(f'--dataset {path} must be a JSON list of {{"conversations": [...]}} objects')
    specs = []
    for index, entry in enumerate(data):
        pair = _first_exchange(entry)
        if pair is None:
            continue
        prompt, reply = pair
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        specs.append(PromptSpec(prompt_id=str(entry_id or f"sg{index:05d}"), prompt=prompt, category="sharegpt",
                                input_tokens=counter.count(prompt), max_tokens=max(1, counter.count(reply))))
        if len(specs) >= limit:
            break
    if not specs:
        raise WorkloadError(f"--dataset {path} has no conversation with a human turn followed by a reply")
    return _unique_ids(specs)


def _first_exchange(entry: Any) -> tuple[str, str] | None:
    turns = entry.get("conversations") or entry.get("conversation") if isinstance(entry, dict) else entry
    if not isinstance(turns, list):
        return None
    texts = [(str(t.get("from") or t.get("role") or ""), t.get("value") or t.get("content"))
             for t in turns if isinstance(t, dict)]
    for (who, text), (_, reply) in zip(texts, texts[1:], strict=False):
        if who in ("human", "user") and isinstance(text, str) and text.strip() and isinstance(reply, str):
            return text, reply
    return None


def _unique_ids(specs: list[PromptSpec]) -> list[PromptSpec]:
    seen: set[str] = set()
    out = []
    for i, spec in enumerate(specs):
        pid = spec.prompt_id if spec.prompt_id not in seen else f"{spec.prompt_id}-{i}"
        seen.add(pid)
        out.append(spec if pid == spec.prompt_id else PromptSpec(**{**spec.__dict__, "prompt_id": pid}))
    return out


PROMPT_COLUMNS = ("prompt", "question", "instruction", "text", "input")


def hf_prompts(name: str, split: str, column: str | None, counter: TokenCounter, limit: int) -> list[PromptSpec]:
    """The first `limit` rows of a Hugging Face dataset, streamed (needs `datasets` and the network)."""
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise WorkloadError(f"--dataset hf:{name} needs the datasets package (pip install datasets) and "
                            "network access; or save it as ShareGPT JSON / JSONL and pass the file")
    import datasets  # seconds: only for a Hugging Face workload

    try:
        rows = datasets.load_dataset(name, split=split, streaming=True)
        taken = list(rows.take(limit))
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds (offline, not found, auth)
        raise WorkloadError(f"--dataset hf:{name} (split {split}) cannot be loaded: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''} (offline? name or split wrong?)")
    return rows_to_prompts(taken, column, counter, f"hf:{name}")


def rows_to_prompts(rows: Sequence[Mapping[str, Any]], column: str | None, counter: TokenCounter,
                    where: str) -> list[PromptSpec]:
    """Dataset rows -> prompts: `column` (or the first of PROMPT_COLUMNS present), or ShareGPT conversations."""
    specs = []
    for index, row in enumerate(rows):
        name = column or next((c for c in PROMPT_COLUMNS if isinstance(row.get(c), str)), None)
        if name is None and ("conversations" in row or "conversation" in row):
            pair = _first_exchange(row)
            if pair is not None:
                specs.append(PromptSpec(f"hf{index:05d}", pair[0], "dataset", input_tokens=counter.count(pair[0]),
                                        max_tokens=max(1, counter.count(pair[1]))))
            continue
        text = row.get(name) if name else None
        if name is None or column and name not in row:
            raise WorkloadError(f"{where}: no prompt column (have {', '.join(row)}); pass --dataset-column")
        if isinstance(text, str) and text.strip():
            specs.append(PromptSpec(f"hf{index:05d}", text, "dataset", input_tokens=counter.count(text)))
    if not specs:
        raise WorkloadError(f"{where}: no usable prompt in the rows read")
    return specs


def trace_prompts(path: Path, counter: TokenCounter, speed: float = 1.0, limit: int | None = None,
                  seed: int = 0) -> list[PromptSpec]:
    """A request trace, one JSON object per line: `timestamp` (milliseconds, as in Mooncake / AIPerf traces)
    or `timestamp_s`, `input_length` and `output_length` (or input_tokens / output_tokens), optional `prompt`.
    A line without a prompt gets a synthetic one of input_length tokens. arrival_s = time since the first
    request / speed."""
    if not path.is_file():
        raise WorkloadError(f"--trace {path} does not exist")
    rng = random.Random(seed)
    rows: list[tuple[float, int, int, str | None]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"--trace {path.name} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise WorkloadError(f"{where} must be a JSON object")
        rows.append((_trace_time(row, where), _trace_int(row, where, "input_length", "input_tokens"),
                     _trace_int(row, where, "output_length", "output_tokens"), row.get("prompt")))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise WorkloadError(f"--trace {path} has no requests")
    t0 = min(r[0] for r in rows)
    specs = []
    for i, (t, n_in, n_out, prompt) in enumerate(sorted(rows, key=lambda r: r[0])):
        if isinstance(prompt, str) and prompt.strip():
            text, got = prompt, counter.count(prompt)
        else:
            text, got = synthetic_text(counter, n_in, rng, prefix=f"[{i}]")
        specs.append(PromptSpec(f"tr{i:05d}", text, "trace", input_tokens=got, max_tokens=n_out,
                                arrival_s=round((t - t0) / speed, 6)))
    return specs


def _trace_time(row: Mapping[str, Any], where: str) -> float:
    value = row.get("timestamp_s", None)
    scale = 1.0
    if value is None:
        value, scale = row.get("timestamp"), 1000.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise WorkloadError(f"{where}: needs timestamp (ms) or timestamp_s, a number >= 0")
    return float(value) / scale


def _trace_int(row: Mapping[str, Any], where: str, *names: str) -> int:
    value = next((row[n] for n in names if n in row), None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"{where}: needs {names[0]}, a whole number of tokens >= 1")
    return value


def build_workload(c: Any) -> tuple[list[PromptSpec], dict[str, Any]]:
    """The prompts the config asks for, and what the manifest says about them (c: a RunConfig)."""
    counter = _counter(c)
    seed = c.seed if c.seed is not None else 0
    limit = c.num_prompts or DEFAULT_NUM_PROMPTS
    output = parse_lengths(c.output_tokens, "--output-tokens") if c.output_tokens else None
    if c.synthetic:
        specs = synthetic_prompts(limit, parse_lengths(c.input_tokens, "--input-tokens"), output, counter, seed)
        kind = f"synthetic input {c.input_tokens} output {c.output_tokens or 'free'} tokens"
    elif c.trace:
        specs = trace_prompts(Path(c.trace), counter, c.trace_speed, c.num_prompts, seed)
        kind = f"trace {Path(c.trace).name} x{c.trace_speed:g} speed"
    elif str(c.dataset).startswith("hf:"):
        specs = hf_prompts(c.dataset[3:], c.dataset_split, c.dataset_column, counter, limit)
        kind = f"Hugging Face {c.dataset[3:]} ({c.dataset_split})"
    else:
        path = Path(c.dataset)
        if not path.is_file():
            raise WorkloadError(f"--dataset {path} does not exist (a ShareGPT-style .json, or hf:NAME)")
        specs = sharegpt_prompts(path, counter, limit)
        kind = f"ShareGPT {path.name}"
    if output is not None and not c.synthetic:  # --output-tokens overrides a dataset's reply lengths
        rng = random.Random(seed)
        specs = [PromptSpec(**{**s.__dict__, "max_tokens": output.sample(rng)}) for s in specs]
    return specs, {"workload": kind, "token_counter": counter.name}


def _counter(c: Any) -> TokenCounter:
    try:
        return token_counter(c.model, c.tokenizer)
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None


def write_workload(specs: Iterable[PromptSpec], info: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write the prompts as JSONL under `<out_dir>/workloads/` (named by their content's hash) and return it;
    the same workload gives the same file, so `--resume` finds it unchanged."""
    lines = []
    for s in specs:
        row: dict[str, Any] = {"id": s.prompt_id, "prompt": s.prompt, "category": s.category}
        for name in ("input_tokens", "max_tokens", "arrival_s"):
            if getattr(s, name) is not None:
                row[name] = getattr(s, name)
        lines.append(json.dumps(row, ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = Path(out_dir) / "workloads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workload-{digest}.jsonl"
    if not path.is_file():
        path.write_text(text, encoding="utf-8")
        path.with_suffix(".json").write_text(json.dumps(dict(info), indent=2) + "\n", encoding="utf-8")
    return path


def workload_info(prompts_path: str | Path) -> dict[str, Any]:
    """What write_workload said about a workload file (empty for a plain prompts file)."""
    side = Path(prompts_path).with_suffix(".json")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_enforce(mode: str, models_json: Mapping[str, Any] | None) -> str:
    """auto -> vllm when the server's /models names vLLM or SGLang as owner, else max-tokens."""
    if mode != "auto":
        return mode
    data = (models_json or {}).get("data") or []
    owners = {str(m.get("owned_by") or "").lower() for m in data if isinstance(m, dict)}
    return "vllm" if owners & set(VLLM_STYLE_OWNERS) else "max-tokens"


def output_length_fields(max_tokens: int | None, mode: str) -> dict[str, Any]:
    """The request body fields that ask for `max_tokens` output tokens under enforce `mode`."""
    if not max_tokens or mode == "off":
        return {}
    if mode == "vllm":
        return {"max_tokens": max_tokens, "min_tokens": max_tokens, "ignore_eos": True}
    return {"max_tokens": max_tokens}
