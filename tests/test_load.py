"""Client-side truth (issue 15) and the direct path (issue 12): what a run reports is what the client saw.

Real servers on 127.0.0.1: the mock OpenAI-compatible server (known TTFT / ITL) and the wattbench service
under uvicorn with a fake backend, made slow on purpose in front of the model call."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FakeBackend, Scripted
from mock_openai_server import MockOpenAIServer
from stub_servers import ChatStub

from wattbench.analysis.achieved import load_table, load_text
from wattbench.config import Settings, get_settings
from wattbench.runs.config import RunConfig
from wattbench.analysis.enrich import build_dataframe
from wattbench.analysis.phases import phases
from wattbench.protocol.metrics import in_flight
from wattbench.loadgen.plan import Schedule, WorkItem
from wattbench.workloads.prompts import PromptSpec
from wattbench.runs.run import cli_run, run_benchmark
from wattbench.loadgen.sender import BatchProcessor, RunStopped, StopRules
from wattbench.client.service_process import ServiceProcess, free_port
from wattbench.client.transport import OpenAITransport, ServiceTransport
from wattbench.protocol.sse import sse_events
from wattbench.service.backend import RateLimited, StreamEvent


def _passthrough_service(upstream: str) -> ServiceProcess:
    """The service as a child process, its model the mock through the pass-through."""
    return ServiceProcess(env={"WATTBENCH_API_BASE": upstream, "WATTBENCH_MODEL": "openai/mock"}).start()


def items(n: int) -> list[WorkItem]:
    return [WorkItem(PromptSpec(f"p{i}", f"prompt {i}"), 0) for i in range(n)]


class Outer:
    """Wraps a transport and times each attempt from outside: what the client waited, independently."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.path, self.waited = inner, inner.path, {}
        self.base_url, self.model = inner.base_url, inner.model

    async def send(self, item: WorkItem, request_id: str, timeout_s: float) -> Any:
        t0 = time.perf_counter()
        attempt = await self.inner.send(item, request_id, timeout_s)
        self.waited[item.key] = time.perf_counter() - t0
        return attempt

    async def aclose(self) -> None:
        if hasattr(self.inner, "aclose"):
            await self.inner.aclose()


@pytest.mark.slow  # real clock: bounds on measured time belong to the slow lane
@pytest.mark.parametrize("transport", ["direct", "service"])
def test_the_clock_starts_when_the_request_leaves_not_while_the_client_is_busy(transport: str) -> None:
    # The client's event loop is held for 0.3 s after send() is called and before the request's bytes go out
    # (a new connection takes turns of the loop): that wait is the client's, kept apart as send_wait_s; the
    # TTFT and the latency are the server's (the mock: first token 50 ms after the request, 4 tokens 10 ms
    # apart), as a raw socket would see them.
    with MockOpenAIServer(ttft_s=0.05, itl_s=0.01, tokens=4) as server:
        if transport == "direct":
            sender = OpenAITransport(server.url, model="mock")
            send = lambda: sender.send(items(1)[0], "r/p0-r0", 10)  # noqa: E731
        else:
            app = _passthrough_service(server.url)
            sender = ServiceTransport(app.url)
            send = lambda: sender.send(items(1)[0], "r/p0-r0", 10)  # noqa: E731

        async def held() -> Any:
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)  # runs at the next turn of the loop
            try:
                return await send()
            finally:
                await sender.aclose()

        try:
            attempt = asyncio.run(held())
        finally:
            if transport == "service":
                app.stop()
    assert attempt.kind == "ok", attempt.error
    assert attempt.send_wait_s >= 0.3
    assert 0.05 <= attempt.ttft_s < 0.05 + 0.15  # was 0.35 and more: the held loop charged to the server
    assert 0.05 + 3 * 0.01 <= attempt.elapsed_s < 0.08 + 0.15


@pytest.mark.slow  # real clock: bounds on measured time belong to the slow lane
def test_direct_path_times_ttft_and_latency_where_the_bytes_arrive() -> None:
    with MockOpenAIServer(ttft_s=0.1, itl_s=0.01, tokens=20) as server:
        outer = Outer(OpenAITransport(server.url, model="mock"))
        one_by_one = BatchProcessor(outer, progress=False).run_sync(items(3))
        records = BatchProcessor(OpenAITransport(server.url, model="mock"), schedule=Schedule(concurrency=4),
                                 progress=False).run_sync(items(8))
    for r in one_by_one:  # alone on the event loop, what the client waited is what it reports
        assert r.client_latency_s + r.client_send_wait_s == pytest.approx(outer.waited[r.key], abs=0.005)
    assert len(records) == 8 and all(r.success and r.path == "direct" for r in records)
    for r in records:
        # the server cannot answer sooner than its injected delays: 100 ms, then 19 gaps of 10 ms
        assert r.client_ttft_s >= 0.1 and r.client_latency_s >= 0.1 + 19 * 0.01
        assert r.client_itl_s >= 0.0095
        assert (r.response["completion_tokens"], r.response["token_source"]) == (20, "provider")
        assert r.response["text"] == "tok " * 20
    df = build_dataframe(records, {"A": {}}, run_id="r", enhance=lambda *a, **k: {"profile": "A"},
                         provider_estimate=lambda *a: None, load={"requested_concurrency": 4})
    row = df.iloc[0]
    assert (row["path"], row["timing_source"], row["requested_concurrency"]) == ("direct", "client", 4)
    assert pd.isna(row["service_latency_s"])
    table = load_table(df)
    assert table.loc[0, "achieved_concurrency_max"] == 4


@pytest.fixture
def slow_service(monkeypatch: pytest.MonkeyPatch):
    """The real service under uvicorn on 127.0.0.1, with a fake backend (20 ms per piece, 5 pieces) behind a
    dependency that makes every request wait 0.2 s before the service starts timing it."""
    import uvicorn

    from wattbench.service import app as app_module

    class Paced(FakeBackend):
        async def stream(self, request: Any):
            async for event in super().stream(request):
                if event.text:
                    await asyncio.sleep(0.02)
                yield event

    backend = Paced()
    backend.push(*[Scripted(pieces=["a", "b", "c", "d", "e"], usage=(3, 5)) for _ in range(20)])

    async def slow_backend() -> Any:
        await asyncio.sleep(0.2)  # queueing in the service, outside the service's own timing
        return backend

    overrides = app_module.app.dependency_overrides
    overrides[get_settings] = lambda: Settings(_env_file=None)
    overrides[app_module.get_backend] = slow_backend
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_module.app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    overrides.clear()


@pytest.mark.slow  # real clock: bounds on measured time belong to the slow lane
def test_service_path_reports_what_the_client_waited_queueing_included(slow_service: str) -> None:
    outer = Outer(ServiceTransport(slow_service, token=None, model=None, stream=True))
    records = BatchProcessor(outer, schedule=Schedule(concurrency=2), progress=False).run_sync(items(4))
    assert all(r.success for r in records), [r.error for r in records]
    df = build_dataframe(records, {"A": {}}, run_id="r", enhance=lambda *a, **k: {"profile": "A"},
                         provider_estimate=lambda *a: None)
    for r in records:
        row = df[df["request_id"] == r.key].iloc[0]
        # what the client waited = its own wait before the bytes went out + the latency from then on
        assert row["latency_s"] + r.client_send_wait_s == pytest.approx(outer.waited[r.key], abs=0.005)
        assert row["timing_source"] == "client"
        # the service timed only the model call (5 pieces x 20 ms); the client also waited the 0.2 s queue
        # (5 ms of slack, as for the client's timing above: a 20 ms sleep may end a few microseconds early)
        assert row["service_latency_s"] >= 0.1 - 0.005 and row["latency_s"] >= row["service_latency_s"] + 0.2 - 0.005
        assert row["service_overhead_s"] == pytest.approx(row["latency_s"] - row["service_latency_s"])
        assert row["ttft_s"] >= 0.2 + 0.02 - 0.005 and row["service_ttft_s"] < row["ttft_s"] - 0.2 + 0.005
        assert row["completion_tokens"] == 5 and row["response_text"] == "abcde"


def test_chat_streams_events_then_the_result_and_errors_as_events(make_client, fake_backend) -> None:
    fake_backend.push(Scripted(pieces=["Hel", "lo"], usage=(4, 2)),
                      Scripted(error=RateLimited("slow down", retry_after="7")))
    client = make_client()
    resp = client.post("/chat", json={"prompt": "hi", "stream": True})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = resp.content.split(b"\n\n")
    texts = [json.loads(e[6:])["text"] for e in events if e.startswith(b"data: ")]
    assert "".join(texts) == "Hello"
    [result] = [e for e in events if e.startswith(b"event: result\n")]
    payload = json.loads(result.split(b"\n", 1)[1][6:])
    assert (payload["text"], payload["completion_tokens"]) == ("Hello", 2)
    resp = client.post("/chat", json={"prompt": "hi", "stream": True})
    assert resp.content.endswith(b'event: error\ndata: {"status_code": 429, "detail": "slow down", '
                                 b'"retry_after": "7", "retry_after_ms": 7000}\n\n')
    assert client.post("/chat", json={"prompt": "hi"}).headers["content-type"] == "application/json"


def test_sse_events_are_timed_by_the_chunk_that_completes_them() -> None:
    chunks = [(1.0, b"data: a\n"), (2.0, b"\ndata: b\r\n\r\ndata: c"), (3.0, b"\n\n")]
    assert sse_events(chunks) == [(2.0, b"data: a"), (2.0, b"data: b"), (3.0, b"data: c")]


def test_phases_and_in_flight_from_the_clients_times() -> None:
    recs = [{"key": k, "t_start_epoch_s": s, "t_end_epoch_s": e}
            for k, s, e in [("a", 0.0, 2.0), ("b", 0.5, 1.5), ("c", 3.0, 4.0), ("d", 5.0, 9.5), ("e", 8.5, 10.0)]]
    assert phases(recs, warmup_s=1.0, cooldown_s=1.0) == {
        "a": "warmup", "b": "warmup", "c": "measure", "d": "cooldown", "e": "cooldown"}
    assert phases(recs, cooldown=1) == {"a": "measure", "b": "measure", "c": "measure", "d": "measure",
                                        "e": "cooldown"}
    mean, most, span = in_flight([(r["t_start_epoch_s"], r["t_end_epoch_s"]) for r in recs])
    assert (mean, most, span) == (pytest.approx((2 + 1 + 1 + 4.5 + 1.5) / 10), 2, 10.0)


def test_max_duration_stops_cleanly_and_the_report_says_why(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"q {i}"}) + "\n" for i in range(40)))
    with MockOpenAIServer(ttft_s=0.05, itl_s=0.01, tokens=5) as server:
        result = run_benchmark(base_url=server.url, model="mock", prompts=str(prompts), concurrency=2,
                               max_duration=0.3, out=str(tmp_path / "out"), profiles="T4_COLAB",
                               no_progress=True, warmup=0)
        assert result.stopped.startswith("stopped by --max-duration 0.3 s: nothing sent after that (")
        served = len(result.frame)
        assert result.exit_code == 0 and 2 <= served < 40
        report = (tmp_path / "out" / "report.txt").read_text()
        assert "LOAD: REQUESTED VS ACHIEVED" in report and "stopped by --max-duration 0.3 s" in report
        assert f"{40 - served} of 40 requests not served yet: rerun with --resume {result.run_id}" in report
        resumed = run_benchmark(base_url=server.url, model="mock", prompts=str(prompts), concurrency=4,
                                resume=result.run_id, out=str(tmp_path / "out"), profiles="T4_COLAB",
                                no_progress=True, no_report=True, warmup=0)
    assert resumed.stopped is None and sorted(resumed.frame["request_id"]) == sorted(f"q{i}-r0" for i in range(40))
    assert resumed.frame["requested_concurrency"].eq(2).all()  # the load the run was started with


def test_max_errors_stops_after_that_many_failures() -> None:
    from stub_servers import status

    with ChatStub(script=[status(422, "bad")] * 10) as stub:
        processor = BatchProcessor(ServiceTransport(stub.url), progress=False, stop=StopRules(max_errors=3))
        with pytest.raises(RunStopped, match="^stopped by --max-errors 3: 3 of 3 requests failed$"):
            processor.run_sync(items(10))
        assert len(stub.chat_requests()) == 3


def test_report_flags_a_run_short_of_its_requested_concurrency() -> None:
    rows = [dict(run_id="r", request_id=f"q{i}", success=True, t_start_s=float(i), latency_s=1.0, ttft_s=0.1,
                 completion_tokens=10, requested_concurrency=8, requested_rate_rps=None, path="service",
                 service_latency_s=0.4, service_overhead_s=0.6, phase="measure", profile="A") for i in range(10)]
    table = load_table(pd.DataFrame(rows))
    row = table.iloc[0]
    assert (row["achieved_concurrency_mean"], row["achieved_concurrency_max"]) == (1.0, 1)
    assert row["throughput_rps"] == pytest.approx(10 / 10.0)  # served / the client's wall span (0 .. 10 s)
    assert row["shortfall"].startswith("achieved 1.0 requests in flight on average of 8 possible (88% short); "
                                       "of the client's mean latency 1.000 s, the model call in the service took "
                                       "0.400 s and the service's overhead and queueing 0.600 s")
    assert "SHORT OF THE REQUESTED LOAD" in load_text(table)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--base-url", "http://x/v1"], "error: --base-url needs --model NAME (the model name the server serves)"),
        (["--base-url", "ftp://x", "--model", "m"], "error: --base-url must start with http:// or https://"),
        (["--max-duration", "0"], "error: --max-duration must be a number of seconds > 0, not 0.0"),
        (["--max-error-rate", "1.5"], "error: --max-error-rate must be a fraction 0 <= rate < 1, not 1.5"),
        (["--workers", "2"], "error: --workers needs --base-url (worker processes drive the direct path)"),
        (["--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "error: cannot reach the server at "
         "http://127.0.0.1:9/v1 (ConnectError"),
    ],
)
def test_cli_load_options_are_checked(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert cli_run([*argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err


def test_run_config_is_typed_and_shared() -> None:
    config = RunConfig.from_options(None, rate=2.0, timeout=5, api_key="sk-secret", base_url="http://h/v1",
                                    model="m")
    assert (config.rate_rps, config.timeout_s, config.in_flight, config.path) == (2.0, 5, 32, "direct")
    assert "sk-secret" not in repr(config)
    assert config == RunConfig.from_argv(["--rate", "2", "--timeout", "5", "--api-key", "sk-secret",
                                          "--base-url", "http://h/v1", "--model", "m"])
    with pytest.raises(ValueError, match="^--concurrency must be >= 1, not 0$"):
        run_benchmark(None, concurrency=0)
    with pytest.raises(ValueError, match="^give --concurrency or --rate, not both$"):
        run_benchmark(None, concurrency=2, rate=1.0)


def test_stream_event_type_is_the_backends() -> None:  # streaming.py tees the backend's own events
    assert StreamEvent(text="x").text == "x"


def test_worker_processes_record_everything_once_through_one_writer_and_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"q {i}"}) + "\n" for i in range(60)))
    options = dict(model="mock", prompts=str(prompts), concurrency=4, workers=2, out=str(tmp_path / "out"),
                   profiles="T4_COLAB", no_progress=True, no_report=True, warmup=0)
    with MockOpenAIServer(ttft_s=0.1, itl_s=0.005, tokens=4) as server:
        first = run_benchmark(base_url=server.url, max_duration=0.5, **options)
        sent_first = list(server.delays.request_ids)
        second = run_benchmark(base_url=server.url, resume=first.run_id, **options)
        sent_all = list(server.delays.request_ids)
    keys = sorted(f"q{i}-r0" for i in range(60))
    assert second.stopped is None and sorted(second.frame["request_id"]) == keys
    assert (second.frame["path"] == "direct").all()
    # every request sent once over both sessions (nothing lost, nothing twice), the resumed ones only once
    assert sorted(k.split("/", 1)[1] for k in sent_all) == keys
    assert len(sent_first) == len(first.frame) and 0 < len(first.frame) < 60, first.stopped
