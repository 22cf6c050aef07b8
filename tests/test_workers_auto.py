"""`--workers auto` (the default): how many load-generating processes a run starts and why, what it says, and
when the report says the client itself was the limit (issue 21)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from mock_openai_server import MockOpenAIServer

from wattbench.cli_support import CliError
from wattbench.loadgen.workers import auto_workers
from wattbench.runs.config import RunConfig
from wattbench.runs.run import _load_notes, _Sent, choose_workers, run_benchmark
from wattbench.runs.store import RunStore


@pytest.mark.parametrize(("in_flight", "rate", "requests", "cpus", "expected"), [
    (64, None, 256, 2, (2, "64 in flight / 32 per process, 2 CPUs, 256 requests")),
    (256, None, 1024, 2, (2, "256 in flight / 32 per process, 2 CPUs, 1024 requests")),  # the CPUs cap it
    (512, None, 20_000, 16, (16, "512 in flight / 32 per process, 16 CPUs, 20000 requests")),
    (1, None, 12, 8, (1, "1 in flight / 32 per process, 8 CPUs, 12 requests")),
    (64, None, 150, 8, (1, "64 in flight / 32 per process, 8 CPUs, 150 requests")),  # 75 each: not worth a start
    (32, 300.0, 1000, 4, (3, "300 req/s / 140 per process, 4 CPUs, 1000 requests")),  # ceil(300 / 140) = 3
])
def test_auto_picks_one_process_per_32_streams_or_140_rps_within_cpus_and_requests(in_flight, rate, requests,
                                                                                   cpus, expected):
    assert auto_workers(in_flight, rate, requests, cpus) == expected


def test_the_choice_follows_the_path_and_a_given_number_wins() -> None:
    direct = dict(base_url="http://127.0.0.1:9/v1", model="m", concurrency=64)
    assert choose_workers(RunConfig(**direct), 256, cpus=4) == (
        2, "auto: 64 in flight / 32 per process, 4 CPUs, 256 requests")
    assert choose_workers(RunConfig(**direct, workers=3), 256, cpus=4) == (3, "--workers 3")
    assert choose_workers(RunConfig(concurrency=64), 256, cpus=4) == (1, "the service path")
    assert RunConfig().workers == "auto"


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "--workers must be auto or a number >= 1, not 0"),
    (["--workers", "many"], "argument --workers: must be auto or a number >= 1, not 'many'"),
])
def test_bad_workers_are_refused_with_what_to_give(argv, message) -> None:
    with pytest.raises(CliError) as caught:
        RunConfig.from_argv(argv)
    assert str(caught.value) == message


def test_the_report_says_when_the_client_was_the_limit() -> None:
    # 2 processes busy 1.8 s of CPU each over 2.0 s of sending: 90% >= 85%
    busy = _Sent(store=None, client_cpu_s_per_request=0.0036, workers=2,  # type: ignore[arg-type]
                 workers_reason="auto: 64 in flight / 32 per process, 2 CPUs, 1000 requests",
                 send_wall_s=2.0, client_cpu_s=3.6)
    assert _load_notes(busy, None, 1000) == [  # type: ignore[arg-type]
        "client CPU: 3.60 ms per request (2 load-generating processes; auto: 64 in flight / 32 per process, 2 CPUs, "
        "1000 requests; busy 90% of the 2.0 s of sending)",
        "THE CLIENT WAS THE LIMIT: its CPU was busy 90% of the sending time, so its timings include its own "
        "queueing: rerun with --workers 3 or more, or on a bigger machine",
    ]
    idle = _Sent(store=None, client_cpu_s_per_request=0.001, workers=1,  # type: ignore[arg-type]
                 workers_reason="--workers 1", send_wall_s=4.0, client_cpu_s=1.0)
    assert _load_notes(idle, None, 1000) == [  # type: ignore[arg-type]
        "client CPU: 1.00 ms per request (1 load-generating process; --workers 1; busy 25% of the 4.0 s of sending)"]


def test_a_default_run_on_the_direct_path_starts_the_processes_it_chose_and_loses_nothing(
        tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "prompt {i}"}}\n' for i in range(100)))
    with MockOpenAIServer(tokens=3) as server:
        result = run_benchmark(base_url=server.url, model="mock", prompts=str(prompts), repeats=2, concurrency=64,
                               out=str(tmp_path / "out"), profiles="T4_COLAB", no_report=True, no_progress=True,
                               warmup=0)
        sent = sorted(k.split("/", 1)[1] for k in server.delays.request_ids)
    out = capsys.readouterr().out
    chosen, _ = choose_workers(RunConfig(base_url=server.url, model="mock", concurrency=64), 200)
    assert f"workers: {chosen} load-generating process" in out
    keys = sorted(f"p{i}-r{r}" for i in range(100) for r in range(2))
    assert result.exit_code == 0 and sorted(result.frame["request_id"]) == keys
    assert sent == keys  # every request sent once, whatever the number of processes
    assert RunStore.open(tmp_path / "out", result.run_id).manifest()["workers"] == chosen


def test_a_killed_worker_is_named_the_others_stop_and_resume_sends_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing
    import os
    import signal
    import threading
    import time

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "prompt {i}"}}\n' for i in range(60)))
    options = dict(model="mock", prompts=str(prompts), concurrency=2, workers=2, out=str(tmp_path / "out"),
                   profiles="T4_COLAB", no_report=True, no_progress=True, warmup=0, max_answer_chars=3)
    killed: list[int] = []

    def kill_one_worker(server: MockOpenAIServer) -> None:
        deadline = time.monotonic() + 60
        while len(server.delays.request_ids) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        [first, *_] = multiprocessing.active_children()  # one of the two workers (their names count per session)
        killed.append(first.pid)
        os.kill(first.pid, signal.SIGKILL)

    with MockOpenAIServer(ttft_s=0.05, itl_s=0.005, tokens=4) as server:
        killer = threading.Thread(target=kill_one_worker, args=(server,))
        killer.start()
        first = run_benchmark(base_url=server.url, **options)
        killer.join()
        sent_first = list(server.delays.request_ids)
        second = run_benchmark(base_url=server.url, resume=first.run_id, **options)
        sent_all = list(server.delays.request_ids)
    assert killed
    # one line naming the worker, how it ended and what to do; the other worker stopped too
    assert re.fullmatch(r"worker [01] \(30 requests\) ended, killed by SIGKILL, before it finished its share; what "
                        r"was measured is saved: rerun with --resume", first.stopped or ""), first.stopped
    assert 6 <= len(sent_first) < 60
    # nothing lost, nothing counted twice: the resumed run holds every request once
    keys = sorted(f"p{i}-r0" for i in range(60))
    assert second.stopped is None and sorted(second.frame["request_id"]) == keys
    served_first = set(first.frame["request_id"])
    resent = [k.split("/", 1)[1] for k in sent_all[len(sent_first):]]
    assert sorted(resent) == sorted(set(keys) - served_first)
    # --max-answer-chars reaches the worker processes: each answer's text cut at 3 characters
    assert second.frame["response_text"].str.len().max() == 3
