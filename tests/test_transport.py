"""The client's reading of a streamed /chat (client/transport.py): the service's own text events and an
upstream's events forwarded by the pass-through are timed alike; the real path end to end (issue 21)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from wattbench.client.service_process import ServiceProcess
from wattbench.client.transport import ServiceTransport, service_events_attempt
from wattbench.loadgen.plan import Schedule, WorkItem
from wattbench.loadgen.sender import BatchProcessor
from wattbench.workloads.prompts import PromptSpec

RESULT = b'event: result\ndata: {"text": "Hi there", "completion_tokens": 2}\n\n'


def chunk(delta: dict, **extra) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}
                                  ).encode() + b"\n\n"


def test_a_forwarded_stream_is_timed_from_the_first_content_not_the_role_chunk() -> None:
    chunks = [(10.10, chunk({"role": "assistant"})), (10.25, chunk({"content": "Hi"})),
              (10.35, chunk({"content": " there"})), (10.40, b"data: [DONE]\n\n"), (10.50, RESULT)]
    attempt = service_events_attempt(10.0, 10.50, chunks)
    assert (attempt.kind, attempt.response["text"]) == ("ok", "Hi there")
    # first content at 10.25 (the role chunk at 10.10 carries none); one gap of 0.10 s; last byte at 10.50
    assert (attempt.ttft_s, attempt.itl_s, attempt.elapsed_s) == (pytest.approx(0.25), pytest.approx(0.10),
                                                                  pytest.approx(0.50))


def test_the_services_own_text_events_are_timed_as_before() -> None:
    chunks = [(1.2, b'data: {"text":""}\n\n'), (1.3, b'data: {"text": "Hi"}\n\n'),
              (1.6, b'data: {"text": " there"}\n\n'), (1.7, RESULT)]
    attempt = service_events_attempt(1.0, 1.7, chunks)
    assert (attempt.ttft_s, attempt.itl_s, attempt.elapsed_s) == (pytest.approx(0.3), pytest.approx(0.3),
                                                                  pytest.approx(0.7))


def test_an_error_event_after_forwarded_bytes_is_the_attempts_error() -> None:
    chunks = [(1.1, chunk({"content": "Hi"})),
              (1.2, b'event: error\ndata: {"status_code": 502, "detail": "model m failed", "retry_after": null, '
                    b'"retry_after_ms": null}\n\n')]
    attempt = service_events_attempt(1.0, 1.2, chunks)
    assert (attempt.kind, attempt.status_code, attempt.error) == ("transient", 502, "HTTP 502: model m failed")


@pytest.mark.slow  # starts the service (LiteLLM's import: seconds)
def test_the_service_path_through_the_passthrough_end_to_end(tmp_path: Path) -> None:
    with OpenAIStub() as stub:
        env = {"WATTBENCH_API_BASE": stub.url, "WATTBENCH_MODEL": "openai/ok", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        with ServiceProcess(env=env, log_path=tmp_path / "service.log") as service:
            items = [WorkItem(PromptSpec(f"p{i}", f"prompt {i}"), 0) for i in range(4)]
            records = BatchProcessor(ServiceTransport(service.url), schedule=Schedule(concurrency=2),
                                     progress=False).run_sync(items)
    assert sorted(r.key for r in records) == ["p0-r0", "p1-r0", "p2-r0", "p3-r0"]
    for r in records:
        assert (r.success, r.path, r.response["text"], r.response["completion_tokens"]) == (
            True, "service", "Hello from the stub", 4)
        assert r.client_ttft_s is not None and r.client_ttft_s <= r.client_latency_s
