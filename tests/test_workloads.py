"""Workloads (workloads/sources.py): synthetic lengths against a server that honours max_tokens, the dataset
loaders on small files in tests/data/, traces, and the options' one-line errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from wattbench.cli import main
from wattbench.runs.config import RunConfig
from wattbench.loadgen.plan import WorkItem, trace_offsets_s
from wattbench.workloads.prompts import PromptsFileError, PromptSpec, load_prompts
from wattbench.runs.run import execute
from wattbench.workloads.tokens import token_counter
from wattbench.workloads.sources import (
    Lengths,
    WorkloadError,
    output_length_fields,
    parse_lengths,
    resolve_enforce,
    rows_to_prompts,
    sharegpt_prompts,
    synthetic_prompts,
    trace_prompts,
)

sys.path.insert(0, str(Path(__file__).parent))
from mock_openai_server import MockOpenAIServer, answer_tokens  # noqa: E402

DATA = Path(__file__).parent / "data"
COUNTER = token_counter()


def test_the_counter_offline_is_litellms_cl100k() -> None:
    assert COUNTER.name == "LiteLLM's default counter (tiktoken cl100k_base)"
    assert COUNTER.count("hello world") == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("512", Lengths("fixed", 512)), ("uniform:256:1024", Lengths("uniform", 256, 1024)),
    ("normal:512:64", Lengths("normal", 512.0, 64.0))])
def test_lengths_parse(text: str, expected: Lengths) -> None:
    assert parse_lengths(text, "--input-tokens") == expected


@pytest.mark.parametrize("text", ["0", "uniform:9:3", "normal:5", "lots", "uniform:a:b"])
def test_bad_lengths_say_the_three_forms(text: str) -> None:
    with pytest.raises(WorkloadError, match=r"give N \(fixed\), uniform:LOW:HIGH or normal:MEAN:STDEV"):
        parse_lengths(text, "--input-tokens")


def test_synthetic_prompts_have_their_lengths_and_no_shared_prefix() -> None:
    fixed = synthetic_prompts(20, Lengths("fixed", 300), Lengths("fixed", 64), COUNTER, seed=3)
    assert all(abs(COUNTER.count(s.prompt) - 300) <= 15 and s.max_tokens == 64 for s in fixed)
    assert [s.input_tokens for s in fixed] == [COUNTER.count(s.prompt) for s in fixed]
    assert all(s.prompt.startswith(f"[{i}] ") for i, s in enumerate(fixed))
    spread = [s.input_tokens for s in synthetic_prompts(40, Lengths("uniform", 100, 900), None, COUNTER, seed=1)]
    assert min(spread) >= 95 and max(spread) <= 945 and max(spread) - min(spread) > 400
    assert synthetic_prompts(3, Lengths("fixed", 50), None, COUNTER, seed=7) == synthetic_prompts(
        3, Lengths("fixed", 50), None, COUNTER, seed=7)  # the same seed, the same workload (resume)


def test_mock_answers_like_vllms_sampler() -> None:
    assert answer_tokens(20, {"max_tokens": 128}) == 20  # EOS comes first
    assert answer_tokens(20, {"max_tokens": 128, "ignore_eos": True}) == 128
    assert answer_tokens(20, {"max_tokens": 128, "min_tokens": 100}) == 100
    assert answer_tokens(200, {"max_tokens": 128}) == 128


def _run(url: str, tmp_path: Path, **options) -> object:
    config = RunConfig(base_url=url, model="mock", out=str(tmp_path), no_report=True, no_progress=True,
                       gpu_energy="off", warmup=0, profiles="A100_SIMULATED", **options)
    return execute(config)


def test_synthetic_lengths_within_5_percent_on_a_vllm_style_server(tmp_path: Path) -> None:
    with MockOpenAIServer(ttft_s=0.001, itl_s=0.0005, tokens=20, count_prompt=COUNTER.count,
                          owned_by="vllm") as server:
        result = _run(server.url, tmp_path, synthetic=True, input_tokens="uniform:200:600",
                      output_tokens="normal:128:16", num_prompts=24, concurrency=4)
        bodies = list(server.delays.bodies)
    df = result.frame
    assert len(df) == 24 and df["success"].all()
    assert ((df["prompt_tokens"] - df["target_input_tokens"]).abs() <= 0.05 * df["target_input_tokens"]).all()
    assert (df["completion_tokens"] == df["target_output_tokens"]).all()  # ignore_eos + min_tokens: exact
    assert set(df["output_enforced"]) == {"vllm"}
    assert all(b["ignore_eos"] is True and b["min_tokens"] == b["max_tokens"] for b in bodies)
    manifest = json.loads((tmp_path / "runs" / result.run_id / "manifest.json").read_text())
    assert manifest["token_counter"] == COUNTER.name and manifest["output_enforce"] == "vllm"


def test_a_server_that_only_caps_is_recorded_as_such(tmp_path: Path) -> None:
    with MockOpenAIServer(ttft_s=0.001, itl_s=0.0005, tokens=20, count_prompt=COUNTER.count) as server:
        result = _run(server.url, tmp_path, synthetic=True, input_tokens="64", output_tokens="128",
                      num_prompts=4)
        bodies = list(server.delays.bodies)
    df = result.frame
    assert list(df["completion_tokens"]) == [20] * 4 and list(df["target_output_tokens"]) == [128] * 4
    assert set(df["output_enforced"]) == {"max-tokens"}
    assert all("ignore_eos" not in b and b["max_tokens"] == 128 for b in bodies)


def test_resume_of_a_synthetic_run_finds_the_same_workload(tmp_path: Path) -> None:
    with MockOpenAIServer(ttft_s=0.001, itl_s=0.0005, tokens=4) as server:
        first = _run(server.url, tmp_path, synthetic=True, input_tokens="32", num_prompts=3)
        again = _run(server.url, tmp_path, synthetic=True, input_tokens="32", num_prompts=3, resume="latest")
        sent = len(server.delays.bodies)
    assert again.run_id == first.run_id and sent == 3  # nothing sent twice


def test_sharegpt_loader() -> None:
    specs = sharegpt_prompts(DATA / "sharegpt_small.json", COUNTER, limit=10)
    assert [s.prompt_id for s in specs] == ["conv-a", "conv-b", "conv-c"]
    assert specs[0].prompt == "What is the capital of France? Answer in one sentence."
    assert specs[0].max_tokens == COUNTER.count("The capital of France is Paris, which is also its largest city.")
    assert specs[2].max_tokens == COUNTER.count("2, 3 and 5.")
    assert [s.prompt_id for s in sharegpt_prompts(DATA / "sharegpt_small.json", COUNTER, limit=2)] == [
        "conv-a", "conv-b"]


def test_sharegpt_loader_rejects_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"prompt": "x"}')
    with pytest.raises(WorkloadError, match=r'must be a JSON list of \{"conversations"'):
        sharegpt_prompts(bad, COUNTER, 5)


def test_dataset_rows_loader() -> None:
    rows = [json.loads(line) for line in (DATA / "hf_rows_small.jsonl").read_text().splitlines()]
    specs = rows_to_prompts(rows, None, COUNTER, "hf:test")
    assert [s.prompt for s in specs] == ["How many legs does a spider have?",
                                         "What colour is the sky on a clear day?"]
    with pytest.raises(WorkloadError, match="no prompt column"):
        rows_to_prompts(rows, "missing", COUNTER, "hf:test")


def test_trace_loader_sorts_scales_and_fills_prompts() -> None:
    specs = trace_prompts(DATA / "trace_small.jsonl", COUNTER, speed=2.0)
    assert [s.arrival_s for s in specs] == [0.0, 0.125, 0.25, 1.0]  # (ms - 1000) / 1000 / 2, sorted
    assert [s.max_tokens for s in specs] == [16, 4, 8, 32]
    assert specs[2].prompt == "Say hello to the trace."
    assert abs(specs[3].input_tokens - 200) <= 10
    items = [WorkItem(s, 0) for s in specs[1:]]
    assert trace_offsets_s(items) == [0.0, 0.125, 0.875]  # a resumed trace starts at once


def test_trace_replays_against_the_server(tmp_path: Path) -> None:
    with MockOpenAIServer(ttft_s=0.001, itl_s=0.0005, tokens=50) as server:
        result = _run(server.url, tmp_path, trace=str(DATA / "trace_small.jsonl"), trace_speed=20.0,
                      output_enforce="vllm")
    df = result.frame.sort_values("t_start_s")
    assert list(df["prompt_id"]) == ["tr00000", "tr00001", "tr00002", "tr00003"]
    assert list(df["completion_tokens"]) == [16, 4, 8, 32]


def test_prompts_file_workload_fields(tmp_path: Path) -> None:
    good = tmp_path / "w.jsonl"
    good.write_text('{"prompt": "hi", "max_tokens": 7, "input_tokens": 1, "arrival_s": 0.5}\n')
    assert load_prompts(good) == [PromptSpec("p001", "hi", input_tokens=1, max_tokens=7, arrival_s=0.5)]
    good.write_text('{"prompt": "hi", "max_tokens": 0}\n')
    with pytest.raises(PromptsFileError, match=r"w.jsonl line 1: max_tokens must be a whole number >= 1, not 0"):
        load_prompts(good)


def test_enforce_modes() -> None:
    assert resolve_enforce("auto", {"data": [{"id": "m", "owned_by": "vllm"}]}) == "vllm"
    assert resolve_enforce("auto", {"data": [{"id": "m", "owned_by": "openai"}]}) == "max-tokens"
    assert resolve_enforce("auto", None) == "max-tokens"
    assert output_length_fields(5, "vllm") == {"max_tokens": 5, "min_tokens": 5, "ignore_eos": True}
    assert output_length_fields(5, "off") == {} and output_length_fields(None, "vllm") == {}


@pytest.mark.parametrize(("argv", "message"), [
    (["--synthetic"], "error: --synthetic needs --input-tokens N"),
    (["--synthetic", "--input-tokens", "8", "--prompts", "x.jsonl"], "error: give one workload, not --prompts and "
                                                                     "--synthetic"),
    (["--input-tokens", "8"], "error: --input-tokens needs --synthetic"),
    (["--trace", "t.jsonl", "--concurrency", "4"], "error: --trace sets its own arrival times"),
    (["--dataset", "nope.json"], "error: --dataset nope.json does not exist"),
])
def test_bad_workload_options_are_one_line(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    code = main(["run", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.mark.skipif(__import__("importlib").util.find_spec("datasets") is not None,
                    reason="datasets is installed here")
def test_hugging_face_without_datasets_is_one_clear_line(capsys, tmp_path: Path) -> None:
    code = main(["run", "--out", str(tmp_path), "--dataset", "hf:tatsu-lab/alpaca"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("error: --dataset hf:tatsu-lab/alpaca needs the datasets package (pip install datasets) and "
                   "network access; or save it as ShareGPT JSON / JSONL and pass the file\n")
