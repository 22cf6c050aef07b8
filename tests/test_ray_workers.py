"""The load-generating workers on Ray (loadgen/ray_workers.py) against a mock OpenAI-compatible server on
127.0.0.1, with a local Ray runtime and two workers: nothing lost, nothing counted twice, resume exact."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mock_openai_server import MockOpenAIServer

from wattbench.runs.run import cli_run, run_benchmark

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'wattbench[ray]' (or -r requirements-dev.txt)")


@pytest.mark.slow  # starts a local Ray runtime (several processes, seconds)
def test_ray_workers_record_everything_once_through_one_writer_and_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"q {i}"}) + "\n" for i in range(60)))
    options = dict(model="mock", prompts=str(prompts), concurrency=4, workers=2, ray="local",
                   out=str(tmp_path / "out"), profiles="T4_COLAB", no_progress=True, no_report=True, warmup=0)
    with MockOpenAIServer(ttft_s=0.1, itl_s=0.005, tokens=4) as server:
        first = run_benchmark(base_url=server.url, max_duration=0.5, **options)
        sent_first = list(server.delays.request_ids)
        second = run_benchmark(base_url=server.url, resume=first.run_id, **options)
        sent_all = list(server.delays.request_ids)
    assert not ray.is_initialized()  # the runtime it started is shut down again
    keys = sorted(f"q{i}-r0" for i in range(60))
    assert second.stopped is None and sorted(second.frame["request_id"]) == keys
    assert (second.frame["path"] == "direct").all() and second.frame["success"].all()
    # every request sent once over both sessions (nothing lost, nothing twice), the resumed ones only once
    assert sorted(k.split("/", 1)[1] for k in sent_all) == keys
    assert len(sent_first) == len(first.frame) and 0 < len(first.frame) < 60, first.stopped
    run_file = tmp_path / "out" / "runs" / first.run_id / "requests.jsonl"
    written = [json.loads(line)["key"] for line in run_file.read_text().splitlines()]
    assert sorted(written) == sorted(set(written)) and len(written) == 60  # each record written once


def test_ray_needs_the_direct_path(tmp_path: Path, capsys) -> None:
    assert cli_run(["--ray", "--out", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err == "error: --ray needs --base-url (Ray workers drive the direct path)\n"
