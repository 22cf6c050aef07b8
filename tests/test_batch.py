"""BatchProcessor against real HTTP stub servers on 127.0.0.1: retries, rate limits, load modes, the run file,
enrichment, and the `run` command line."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from stub_servers import ChatStub, Reply, drop, ok, slow, status

from wattbench.analysis.outputs import write_frame_csv
from wattbench.redact import shown_url
from wattbench.analysis.enrich import build_dataframe, idle_gaps_s
from wattbench.loadgen.limiter import AdaptiveLimiter, RetryPolicy, backoff_delay_s
from wattbench.protocol.ratelimit import retry_after_s as parse_retry_after
from wattbench.loadgen.plan import RequestRecord, Schedule, WorkItem, arrival_offsets_s, plan_requests
from wattbench.workloads.prompts import PromptSpec
from wattbench.runs.run import cli_run, run_benchmark
from wattbench.client.transport import ServiceTransport
from wattbench.loadgen.sender import AuthRejectedError, BatchProcessor, Progress, ServiceGoneError
from wattbench.client.service_process import free_port
from wattbench.loadgen.plan import RecordSinkError
from wattbench.runs.store import RunStore, RunStoreError, pending_items

FAST_RETRY = RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.02)
PROMPTS = [
    PromptSpec("capital", "What is the capital of France?", "factual", "Paris", "contains"),
    PromptSpec("haiku", "Write a haiku about the ocean.", "creative"),
]


def send(stub: ChatStub, items: list[WorkItem], *, token: str | None = None, model: str | None = None,
         concurrency: int = 1, rate_rps: float | None = None, warmup: int = 0, **kwargs: Any) -> list[RequestRecord]:
    """The items sent to the stub's /chat: the transport, the schedule, and BatchProcessor's own options."""
    kwargs.setdefault("retry", FAST_RETRY)
    transport = ServiceTransport(stub.url, token=token, model=model)
    schedule = Schedule(concurrency=concurrency, rate_rps=rate_rps, warmup=warmup, seed=0)
    return BatchProcessor(transport, schedule=schedule, progress=False, **kwargs).run_sync(items)


def one_item() -> list[WorkItem]:
    return [WorkItem(PROMPTS[0], 0)]


# -- retries against a real server -------------------------------------------------------------------------


def test_served_request_is_recorded_with_the_services_answer() -> None:
    with ChatStub(answers={PROMPTS[0].prompt: "Paris."}) as stub:
        [record] = send(stub, one_item())
        [received] = stub.chat_requests()
    assert (record.success, record.attempts, record.rate_limited, record.error) == (True, 1, 0, None)
    assert record.response["text"] == "Paris."
    assert record.key == "capital-r0"
    # no model: the service's default; "stream": the runner times the first token itself
    assert received.body == {"prompt": "What is the capital of France?", "stream": True}
    # the readable id, and a UUID made from it (the same on every attempt and after a resume)
    assert received.headers["x-wattbench-request"] == "capital-r0"
    assert received.headers["x-request-id"] == "fb066f4b-0a34-50f6-b85a-fb408c7b8cd4"  # uuid5, computed once


def test_429_waits_out_retry_after_then_succeeds() -> None:
    with ChatStub(script=[status(429, "slow down", retry_after="0.3")]) as stub:
        [record] = send(stub, one_item())
        first, second = stub.chat_requests()
    assert (record.success, record.attempts, record.rate_limited) == (True, 2, 1)
    assert second.t_s - first.t_s >= 0.3  # the retry came no sooner than Retry-After allowed
    assert record.retry_wait_s >= 0.3  # and that wait is counted apart from latency
    # a retry is the same request to the server: the same ids
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "fb066f4b-0a34-50f6-b85a-fb408c7b8cd4"


def test_500s_are_retried_with_backoff() -> None:
    with ChatStub(script=[status(500), status(503)]) as stub:
        [record] = send(stub, one_item())
        assert len(stub.chat_requests()) == 3
    assert (record.success, record.attempts, record.status_code, record.error) == (True, 3, 200, None)


def test_dropped_connection_is_retried() -> None:
    with ChatStub(script=[drop()]) as stub:
        [record] = send(stub, one_item())
        assert len(stub.chat_requests()) == 2
    assert (record.success, record.attempts) == (True, 2)


def test_slow_answer_times_out_and_is_retried() -> None:
    with ChatStub(script=[slow(0.5)]) as stub:
        [record] = send(stub, one_item(), timeout_s=0.1)
    assert (record.success, record.attempts) == (True, 2)


def test_persistent_500_is_a_failed_record_after_max_attempts() -> None:
    with ChatStub(lambda i, body: status(500, "model crashed")) as stub:
        [record] = send(stub, one_item(), retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01))
        assert len(stub.chat_requests()) == 3
    assert (record.success, record.attempts, record.status_code) == (False, 3, 500)
    assert record.error == "HTTP 500: model crashed"
    assert record.response is None and record.client_latency_s is None


def test_timeouts_until_max_attempts_give_a_clear_error() -> None:
    with ChatStub(lambda i, body: slow(0.3)) as stub:
        [record] = send(
            stub, one_item(), timeout_s=0.05, retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01)
        )
    assert (record.success, record.attempts, record.status_code) == (False, 2, None)
    assert record.error == "timed out after 0.05 s"


def test_422_is_not_retried() -> None:
    with ChatStub(script=[status(422, "invalid request: prompt: too long")]) as stub:
        [record] = send(stub, one_item())
        assert len(stub.chat_requests()) == 1
    assert (record.success, record.attempts, record.error) == (
        False,
        1,
        "HTTP 422: invalid request: prompt: too long",
    )


def test_token_is_sent_and_a_refused_token_stops_the_run() -> None:
    with ChatStub(token="s3cret") as stub:
        [record] = send(stub, one_item(), token="s3cret")
        assert record.success
        assert stub.chat_requests()[0].headers["authorization"] == "Bearer s3cret"
        with pytest.raises(AuthRejectedError) as info:
            send(stub, one_item(), token="xyzzy-42")
    assert str(info.value) == (
        "HTTP 401: missing or wrong bearer token; set WATTBENCH_API_TOKEN (the service "
        "refused the token: set WATTBENCH_API_TOKEN or pass --token)"
    )
    assert "xyzzy-42" not in str(info.value)  # the token is never echoed


def test_refused_connections_stop_the_run() -> None:
    port = free_port()  # nothing listens there
    processor = BatchProcessor(
        ServiceTransport(f"http://127.0.0.1:{port}"),
        progress=False,
        retry=RetryPolicy(backoff_base_s=0.01, abort_after_connect_failures=3),
    )
    with pytest.raises(ServiceGoneError) as info:
        processor.run_sync(one_item())
    assert str(info.value).startswith(
        f"the service at http://127.0.0.1:{port} refused 3 connections in a row"
    )
    assert str(info.value).endswith("start the service again and rerun with --resume")


def test_model_is_sent_when_given() -> None:
    with ChatStub() as stub:
        [record] = send(stub, one_item(), model="gemini/gemini-2.5-flash")
        assert stub.chat_requests()[0].body == {
            "prompt": PROMPTS[0].prompt,
            "model": "gemini/gemini-2.5-flash",
            "stream": True,
        }
    assert record.response["model"] == "gemini/gemini-2.5-flash"


@pytest.mark.parametrize(
    ("model", "service_model", "expected"),
    [("gemini/gemini-2.5-flash", "stub/echo", "gemini/gemini-2.5-flash"), (None, "stub/echo", "stub/echo")],
)
def test_an_unanswered_request_keeps_the_model_it_asked_for(
    model: str | None, service_model: str, expected: str
) -> None:
    with ChatStub(script=[status(422, "prompt too long")]) as stub:
        [record] = send(stub, one_item(), model=model, service_model=service_model)
    assert (record.success, record.response, record.requested_model) == (False, None, expected)
    df = build_dataframe(
        [record], {"A": {}}, run_id="r", enhance=fake_enhance, provider_estimate=lambda *a: None
    )
    assert df["model"].tolist() == [expected]


# -- load modes ---------------------------------------------------------------------------------------------


def test_warmup_requests_are_sent_but_not_recorded() -> None:
    items = plan_requests(PROMPTS, repeats=2)
    with ChatStub() as stub:
        records = send(stub, items, warmup=2)
        assert len(stub.chat_requests()) == 6
    assert sorted(r.key for r in records) == ["capital-r0", "capital-r1", "haiku-r0", "haiku-r1"]


def max_overlap(stub: ChatStub) -> int:
    """The most requests the stub was answering at one time."""
    events = sorted(
        [(r.t_s, 1) for r in stub.chat_requests()] + [(r.t_end_s, -1) for r in stub.chat_requests()]
    )
    current = best = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bounds_requests_in_flight(concurrency: int) -> None:
    items = [WorkItem(PromptSpec(f"p{i}", f"prompt {i}"), 0) for i in range(6)]
    with ChatStub(lambda i, body: slow(0.2)) as stub:
        records = send(stub, items, concurrency=concurrency)
        assert max_overlap(stub) == concurrency
    assert len(records) == 6 and all(r.success for r in records)


def test_rate_mode_spaces_the_sends() -> None:
    items = [WorkItem(PromptSpec(f"p{i}", f"prompt {i}"), 0) for i in range(4)]
    with ChatStub() as stub:
        records = send(stub, items, rate_rps=10.0, concurrency=8)
    starts = [r.t_start_epoch_s for r in sorted(records, key=lambda r: r.key)]
    # request i is sent i/10 s after the first, never sooner (0.05 s: the first one's own start-up)
    assert [t - starts[0] >= i / 10 - 0.05 for i, t in enumerate(starts)] == [True] * 4


def test_arrival_offsets_constant_and_poisson() -> None:
    assert arrival_offsets_s(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    offsets = arrival_offsets_s(4001, 5.0, "poisson", random.Random(7))
    assert offsets[0] == 0.0
    assert offsets[-1] / 4000 == pytest.approx(1 / 5.0, rel=0.05)  # mean gap 1/rate
    with pytest.raises(ValueError, match="unknown arrival 'burst'; use constant or poisson"):
        arrival_offsets_s(2, 1.0, "burst")  # type: ignore[arg-type]


class _TopRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


class _BottomRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def test_backoff_is_exponential_with_equal_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    assert [backoff_delay_s(k, policy, _TopRng()) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [backoff_delay_s(k, policy, _BottomRng()) for k in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"Retry-After": "2", "retry-after-ms": "1500"}) == 1.5
    assert (
        parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now_epoch_s=1445412480.0) == 10.0
    )  # 07:28:00 GMT
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_limiter_halves_on_429_and_grows_on_success() -> None:
    limiter = AdaptiveLimiter(8)
    for expected in (4.0, 2.0, 1.0, 1.0):
        await limiter.acquire()
        await limiter.release("rate_limited", 0.0)
        assert limiter.limit == expected
    for expected in (2.0, 2.5, 2.9):
        await limiter.acquire()
        await limiter.release("ok")
        assert limiter.limit == pytest.approx(expected)
    await limiter.acquire()
    await limiter.release("error")
    assert limiter.limit == pytest.approx(2.9)


async def test_limiter_gate_holds_every_request_until_retry_after() -> None:
    limiter = AdaptiveLimiter(4)
    await limiter.acquire()
    await limiter.release("rate_limited", 0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    waited = await limiter.acquire()
    assert loop.time() - t0 >= 0.19 and waited >= 0.19


# -- the run file -------------------------------------------------------------------------------------------


def record_dict(key: str, success: bool = True, **extra: Any) -> dict[str, Any]:
    return {"key": key, "success": success, **extra}


def test_run_store_appends_and_repairs_a_cut_last_line(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, {"model": None, "repeats": 1}, run_id="run1")
    store.append(record_dict("a-r0"))
    store.append(record_dict("b-r0"))
    store.close()
    with open(store.records_path, "a") as fh:
        fh.write('{"key": "c-r0", "succ')  # a kill in the middle of a write
    assert [r["key"] for r in store.load_records()] == ["a-r0", "b-r0"]
    assert store.records_path.read_text().endswith('"success": true}\n')  # the cut line is gone
    store.append(record_dict("c-r0"))
    store.close()
    assert [r["key"] for r in RunStore.open(tmp_path, "run1").load_records()] == ["a-r0", "b-r0", "c-r0"]


def test_run_store_open_latest_and_refuse_mismatch(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError) as info:
        RunStore.open(tmp_path)
    assert str(info.value) == f"nothing to resume: no run under {tmp_path}/runs; drop --resume to start one"
    RunStore.create(tmp_path, {"model": None, "repeats": 1, "profiles": ["T4_COLAB"]}, run_id="old")
    newest = RunStore.create(tmp_path, {"model": None, "repeats": 2, "profiles": ["T4_COLAB"]}, run_id="new")
    assert RunStore.open(tmp_path).run_id == "new"
    newest.check_matches({"model": None, "repeats": 2, "profiles": ["T4_COLAB"]})
    with pytest.raises(RunStoreError) as info:
        newest.check_matches({"repeats": 3})
    assert str(info.value) == (
        "cannot resume run new: its repeats was 2, now 3; rerun with the run's options, "
        "or drop --resume to start a new run"
    )


def test_pending_items_are_the_missing_and_the_failed() -> None:
    items = plan_requests(PROMPTS, repeats=2)
    records = [record_dict("capital-r0"), record_dict("haiku-r0", success=False)]
    assert [i.key for i in pending_items(items, records)] == ["haiku-r0", "capital-r1", "haiku-r1"]
    records.append(record_dict("haiku-r0"))  # served on a resume: the last record wins
    assert [i.key for i in pending_items(items, records)] == ["capital-r1", "haiku-r1"]


# -- enrichment ---------------------------------------------------------------------------------------------


def timed(key: str, start: float, end: float, session: str = "s1", success: bool = True) -> dict[str, Any]:
    return {
        "key": key,
        "t_start_epoch_s": start,
        "t_end_epoch_s": end,
        "session": session,
        "success": success,
    }


def test_idle_gaps_between_served_requests() -> None:
    records = [
        timed("a", 100.0, 101.0),
        timed("b", 103.5, 104.0),  # idle 101.0 -> 103.5
        timed("c", 103.8, 106.0),  # starts while b is in flight: no idle
        timed("x", 106.5, 107.0, success=False),  # failed requests do not count
        timed("d", 110.0, 111.0),  # idle since c ended at 106.0
        timed("e", 500.0, 501.0, session="s2"),  # a resumed session starts fresh
    ]
    assert idle_gaps_s(records) == {"a": 0.0, "b": 2.5, "c": 0.0, "d": 4.0, "e": 0.0}


def full_record(key: str, prompt: PromptSpec, text: str | None, start: float, **extra: Any) -> dict[str, Any]:
    response = (
        None
        if text is None
        else {
            "request_id": f"svc-{key}",
            "model": "stub/echo",
            "route": "Flash-Precise",
            "text": text,
            "latency_s": 2.0,
            "ttft_s": 0.5,
            "prompt_tokens": 7,
            "completion_tokens": 20,
            "total_tokens": 27,
            "cost_usd": 0.001,
            "model_params_b": 0.135,
        }
    )
    base = {
        "key": key,
        "prompt_id": prompt.prompt_id,
        "repeat": 0,
        "prompt": prompt.prompt,
        "category": prompt.category,
        "expected": prompt.expected,
        "grader": prompt.grader,
        "tolerance": prompt.tolerance,
        "session": "s1",
        "success": text is not None,
        "error": None if text is not None else "HTTP 500: boom",
        "status_code": 200 if text else 500,
        "attempts": 1,
        "rate_limited": 0,
        "retry_wait_s": 0.0,
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "t_start_epoch_s": start,
        "t_end_epoch_s": start + 2.0,
        "client_latency_s": 2.01 if text else None,
        "response": response,
    }
    return {**base, **extra}


def fake_enhance(
    measured: dict[str, Any],
    profile: dict[str, Any],
    *,
    idle_s: float,
    shape: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A stand-in for calculate_enhanced_metrics: energy = watts x latency, plus idle."""
    energy_kwh = profile["w"] * (measured["latency_s"] + idle_s) / 3.6e6
    return {
        "profile": profile["name"],
        "idle_s": idle_s,
        "energy_kwh": energy_kwh,
        "total_cost_usd": measured["cost_usd"] + energy_kwh * 0.1,
        "seen_params_b": (shape or {}).get("active_params_b"),
    }


def test_build_dataframe_one_row_per_request_and_profile() -> None:
    records = [
        full_record("capital-r0", PROMPTS[0], "Paris is the capital.", 1000.0),
        full_record("haiku-r0", PROMPTS[1], None, 1003.0),  # failed
        full_record("capital-r1", PROMPTS[0], "Lyon.", 1005.0, repeat=1),
    ]
    profiles = {"A": {"name": "A", "w": 360.0}, "B": {"name": "B", "w": 36.0}}
    df = build_dataframe(
        records,
        profiles,
        run_id="run1",
        enhance=fake_enhance,
        provider_estimate=lambda model, tokens, latency: {"provider_energy_kwh": tokens * 1e-6},
    )
    assert list(df.columns[:4]) == ["run_id", "request_id", "prompt_id", "repeat"]
    assert list(df["request_id"]) == [
        "capital-r0",
        "capital-r0",
        "haiku-r0",
        "haiku-r0",
        "capital-r1",
        "capital-r1",
    ]
    assert list(df["profile"]) == ["A", "B"] * 3
    assert list(df["t_start_s"]) == [0.0, 0.0, 3.0, 3.0, 5.0, 5.0]
    assert list(df["correct"]) == [True, True, None, None, False, False]
    served_a = df[(df["request_id"] == "capital-r1") & (df["profile"] == "A")].iloc[0]
    # idle since capital-r0 ended at 1002.0 (the failed haiku does not count): 3 s; energy 360 W x (3 s idle +
    # the 2.01 s the client waited: the lenses use the client's latency, not the service's 2.0 s)
    assert served_a["idle_s"] == 3.0
    assert served_a["energy_kwh"] == pytest.approx(360 * 5.01 / 3.6e6)
    assert served_a["total_cost_usd"] == pytest.approx(0.001 + 360 * 5.01 / 3.6e6 * 0.1)
    assert (served_a["latency_s"], served_a["service_latency_s"]) == (2.01, 2.0)
    assert served_a["service_overhead_s"] == pytest.approx(0.01)
    # not streamed: TTFT = the service's 0.5 s + the client's extra 0.01 s, and it says so
    assert (served_a["ttft_s"], served_a["timing_source"]) == (pytest.approx(0.51), "estimated")
    assert (served_a["path"], served_a["phase"]) == ("service", "measure")
    assert served_a["provider_energy_kwh"] == pytest.approx(20e-6)
    assert served_a["seen_params_b"] == 0.135
    assert served_a["service_request_id"] == "svc-capital-r1"
    failed = df[df["request_id"] == "haiku-r0"]
    assert failed["energy_kwh"].isna().all() and failed["error"].eq("HTTP 500: boom").all()
    assert list(failed["profile"]) == ["A", "B"]


# -- the command line ---------------------------------------------------------------------------------------


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"id": "capital", "prompt": "What is the capital of France?", "expected": "Paris"}\n'
        '{"id": "sum", "prompt": "What is 2+3?", "expected": 5, "grader": "number"}\n'
        '{"id": "poem", "prompt": "Write a poem."}\n'
    )
    return path


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from wattbench.config import get_settings

    monkeypatch.delenv("WATTBENCH_API_TOKEN", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def cli(url: str, prompts: Path, out: Path, *argv: str) -> int:
    """`wattbench run` against `url` with the prompts file, into `out`, without report or progress bar."""
    return cli_run(
        ["--server-url", url, "--prompts", str(prompts), "--out", str(out), "--no-report", "--no-progress",
         "--profiles", "T4_COLAB,A100_SIMULATED", *argv]
    )  # fmt: skip


def test_cli_writes_one_row_per_request_and_profile(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    answers = {"What is the capital of France?": "Paris.", "What is 2+3?": "2+3 is 4."}
    with ChatStub(answers=answers) as stub:
        code = cli(stub.url, prompts_file, tmp_path / "out", "--repeats", "2", "--warmup", "1")
        assert len(stub.chat_requests()) == 1 + 6
    assert code == 0
    [csv_path] = (tmp_path / "out").glob("ai_metrics_*.csv")
    assert f"wrote {csv_path} (6 requests x 2 profiles = 12 rows; run file " in capsys.readouterr().out
    df = pd.read_csv(csv_path)
    required = [
        "request_id",
        "prompt",
        "route",
        "model",
        "success",
        "error",
        "attempts",
        "retry_wait_s",
        "latency_s",
        "ttft_s",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "correct",
        "profile",
        "energy_kwh",
        "carbon_gco2e",
        "energy_cost_usd",
        "total_cost_usd",
    ]
    assert [c for c in required if c not in df.columns] == []
    assert len(df) == 12 and df.groupby(["request_id", "profile"]).size().eq(1).all()
    correct = df.drop_duplicates("request_id").set_index("request_id")["correct"]
    assert {k: None if pd.isna(v) else bool(v) for k, v in correct.items()} == {
        "capital-r0": True,
        "sum-r0": False,
        "poem-r0": None,
        "capital-r1": True,
        "sum-r1": False,
        "poem-r1": None,
    }
    assert df["success"].all()
    from wattbench import energy as gpu_profiles

    profiles = gpu_profiles.load_profiles()
    for row in df.to_dict("records"):  # each row's energy is the simulated lens of its own measurement
        measured = {k: row[k] for k in ("latency_s", "prompt_tokens", "completion_tokens", "cost_usd")}
        want = gpu_profiles.calculate_enhanced_metrics(
            measured, profiles[row["profile"]], idle_s=row["idle_s"], active_params_b=0.135,
            total_params_b=0.135,
        )
        assert row["energy_kwh"] == pytest.approx(want["energy_kwh"], rel=1e-9)
        assert row["energy_kwh"] == pytest.approx(
            row["compute_energy_kwh"] + row["idle_energy_kwh"] + row["pue_overhead_kwh"], rel=1e-9
        )


def assert_one_error_line(capsys: pytest.CaptureFixture[str], expected: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert err.strip() == expected, err


def test_cli_bad_prompts_file_is_one_line_and_nothing_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": }\n')
    with ChatStub() as stub:
        code = cli(stub.url, bad, tmp_path / "out")
        assert stub.received == []
    assert code == 2
    assert_one_error_line(capsys, "error: bad.jsonl line 2 is not valid JSON (Expecting value at column 12)")
    assert not (tmp_path / "out").exists()


def test_cli_unreachable_server(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert cli(url, prompts_file, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: cannot reach the service at {url} (ConnectError: ")
    assert err.endswith(
        "start it with `wattbench serve` or leave out --server-url to let run start one\n"
    )
    assert not (tmp_path / "out").exists()


def test_credentials_in_the_url_are_never_printed_or_written(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with ChatStub(script=[ok(), status(422, "no")]) as stub:
        url = stub.url.replace("http://", "http://user:s3cret-pw@")
        assert cli(url, prompts_file, tmp_path / "out", "--warmup", "0", "--max-attempts", "1") == 1
        assert stub.chat_requests()[0].headers["authorization"].startswith("Basic ")  # they were used
    shown = stub.url.replace("http://", "http://***@")
    assert f"requests to {shown}\n" in capsys.readouterr().out
    assert shown_url("https://a:b@host:8000/x?y=1") == "https://***@host:8000/x?y=1"
    assert shown_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    written = [p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == 3 and not any("s3cret-pw" in text for text in written)  # CSV, manifest, run file


@pytest.mark.parametrize(
    ("health", "message"),
    [
        (
            {"status": "degraded", "ready": False, "detail": "the GGUF file is missing"},
            "error: the service at {url} is up but its model is not ready: the GGUF file is missing",
        ),
        (
            {"status": "degraded", "ready": False, "detail": "cannot load the model:\n  GGUF file missing\n"},
            "error: the service at {url} is up but its model is not ready: "
            "cannot load the model: GGUF file missing",
        ),
        (
            {"status": "ok", "ready": True, "auth_required": True},
            "error: the service at {url} wants a bearer token: set WATTBENCH_API_TOKEN or pass --token",
        ),
    ],
)
def test_cli_service_not_usable(
    tmp_path: Path,
    prompts_file: Path,
    no_env_token: None,
    health: dict[str, Any],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ChatStub(health=health) as stub:
        assert cli(stub.url, prompts_file, tmp_path) == 2
        assert stub.chat_requests() == []
    assert_one_error_line(capsys, message.format(url=stub.url))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "error: --concurrency must be >= 1, not 0"),
        (
            ["--concurrency", "2", "--rate", "3"],
            "error: argument --rate: not allowed with argument --concurrency",
        ),
        (["--rate", "-1"], "error: --rate must be a number of requests per second > 0, not -1.0"),
        (["--repeats", "x"], "error: argument --repeats: invalid int value: 'x'"),
        (["--profiles", "T4_COLAB,NOPE"], "error: unknown profile(s) NOPE; choose from: "),
        (["--resume"], "error: nothing to resume: no run under {out}/runs; drop --resume to start one"),
        (["--timeout", "nan"], "error: --timeout must be a number of seconds > 0, not nan"),
        (
            ["--prompts", "{tmp}"],
            "error: prompts file {tmp} is a directory; give the .jsonl or .csv file in it",
        ),
    ],
)
def test_cli_bad_options(
    tmp_path: Path, prompts_file: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli("http://127.0.0.1:9", prompts_file, out, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message.format(out=out, tmp=tmp_path)), err


def test_cli_unusable_url_or_out_is_one_line_and_nothing_is_sent(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("http://[::1", prompts_file, tmp_path / "out") == 2
    assert_one_error_line(
        capsys,
        "error: --server-url 'http://[::1' is not a valid URL (Invalid port: ':1'); "
        "e.g. http://127.0.0.1:8000",
    )
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with ChatStub() as stub:
        assert cli(stub.url, prompts_file, a_file) == 2
        assert stub.received == []
    assert_one_error_line(capsys, f"error: --out {a_file} is a file; give a directory")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("requests.jsonl", "error: {run}/requests.jsonl line 4 is not a request record; delete that line "
         "(that request is then sent again) and rerun"),
        ("manifest.json", "error: {run}/manifest.json is damaged (Expecting value: line 1 column 1 "
         "(char 0)); start a new run without --resume"),
    ],
)  # fmt: skip
def test_cli_resume_of_a_damaged_run_is_one_line(
    tmp_path: Path, prompts_file: Path, damage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ChatStub(script=[ok(), status(422, "no")]) as stub:
        assert cli(stub.url, prompts_file, tmp_path, "--warmup", "0", "--max-attempts", "1") == 1
        [run] = (tmp_path / "runs").iterdir()
        with open(run / damage, "w" if damage == "manifest.json" else "a") as fh:
            fh.write("not json\n")
        capsys.readouterr()
        assert cli(stub.url, prompts_file, tmp_path, "--resume") == 2
        assert len(stub.received) == 3  # the first run's; none for the resume
    assert_one_error_line(capsys, message.format(run=run))


MY_PROFILES = (
    '{"profiles": [{"key": "MY_H200", "gpu": "H200", "gpu_count": 2, "datacenter": "aws_eu_north_1",'
    ' "batch_size": 32, "bytes_per_param": 1, "description": "2x H200, fp8, Stockholm"}]}'
)


def test_cli_profiles_file_adds_the_users_profiles(
    tmp_path: Path, prompts_file: Path, no_env_token: None
) -> None:
    import json

    import pandas as pd

    mine = tmp_path / "mine.json"
    mine.write_text(MY_PROFILES)
    out = tmp_path / "out"
    with ChatStub() as stub:
        code = cli(
            stub.url, prompts_file, out, "--warmup", "0",
            "--profiles-file", str(mine), "--profiles", "MY_H200,T4_COLAB",
        )  # fmt: skip
    assert code == 0
    df = pd.read_csv(next(out.glob("ai_metrics_*.csv")))
    mine_rows = df[df["profile"] == "MY_H200"]
    assert len(mine_rows) == 3 and sorted(df["profile"].unique()) == ["MY_H200", "T4_COLAB"]
    assert set(zip(mine_rows["gpu"], mine_rows["gpu_count"], mine_rows["datacenter"], mine_rows["pue"])) == {
        ("H200", 2, "aws_eu_north_1", 1.15)
    }
    [manifest] = out.glob("runs/*/manifest.json")
    assert json.loads(manifest.read_text())["profiles_file"] == str(mine.resolve())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: --profiles-file: {path}: file not found"),
        ("", "error: --profiles-file: {path}: invalid JSON at line 1, column 1: Expecting value"),
        (
            '{"profiles": [{"key": "X"}]}',
            "error: --profiles-file: {path}: profiles[0] (key 'X'): field 'gpu': Field required",
        ),
        (
            '{"other": []}',
            "error: --profiles-file: {path}: no 'profiles', 'gpus' or 'datacenters' rows found",
        ),
    ],
)
def test_cli_bad_profiles_file_is_one_line_and_nothing_is_sent(
    tmp_path: Path,
    prompts_file: Path,
    content: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "mine.json"
    if content is not None:
        path.write_text(content)
    with ChatStub() as stub:
        code = cli(stub.url, prompts_file, tmp_path / "out", "--profiles-file", str(path))
        assert stub.received == []
    assert code == 2
    assert_one_error_line(capsys, message.format(path=path))
    assert not (tmp_path / "out").exists()


def test_cli_report_that_cannot_be_written_is_one_line_and_the_csv_is_kept(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "report.txt").mkdir()  # where the report's text file should go
    with ChatStub() as stub:
        code = cli_run(
            ["--server-url", stub.url, "--prompts", str(prompts_file), "--out", str(tmp_path),
             "--warmup", "0", "--profiles", "T4_COLAB", "--no-progress"]
        )  # fmt: skip
    assert code == 2
    [csv_path] = tmp_path.glob("ai_metrics_*.csv")
    assert_one_error_line(
        capsys,
        f"error: {csv_path} is written, but not the report ([Errno 21] Is a directory: "
        f"'{tmp_path / 'report.txt'}'); rerun it with `wattbench report {csv_path}`",
    )


def test_cli_failed_requests_are_rows_and_exit_1(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    def behave(index: int, body: dict[str, Any]) -> Reply:
        return status(500, "model crashed") if body["prompt"] == "Write a poem." else ok()

    with ChatStub(behave) as stub:
        code = cli(stub.url, prompts_file, tmp_path, "--max-attempts", "2", "--warmup", "0")
    assert code == 1
    df = pd.read_csv(next(tmp_path.glob("ai_metrics_*.csv")))
    poem = df[df["request_id"] == "poem-r0"]
    assert list(poem["profile"]) == ["T4_COLAB", "A100_SIMULATED"]
    assert poem["success"].eq(False).all() and poem["error"].eq("HTTP 500: model crashed").all()
    assert poem["attempts"].eq(2).all() and poem["energy_kwh"].isna().all()
    assert poem["model"].eq("stub/echo").all()  # the service's /health model: no --model was given
    assert "served 2/3 requests" in capsys.readouterr().out


def test_run_benchmark_from_python(tmp_path: Path, prompts_file: Path, no_env_token: None) -> None:
    with ChatStub(answers={"What is the capital of France?": "Paris"}) as stub:
        result = run_benchmark(
            stub.url,
            prompts=str(prompts_file),
            out=str(tmp_path),
            concurrency=2,
            profiles="T4_COLAB",
            no_report=True,
            no_progress=True,
            warmup=0,
        )
    assert (result.exit_code, result.stopped) == (0, None)
    assert result.csv_path.parent == tmp_path and result.csv_path.exists()
    assert sorted(result.frame["request_id"]) == ["capital-r0", "poem-r0", "sum-r0"]
    assert result.frame.set_index("request_id").loc["capital-r0", "correct"] is True
    with pytest.raises(
        ValueError, match="^unknown option\\(s\\) colour; use the long options of `wattbench run`$"
    ):
        run_benchmark(stub.url, colour="red")
    with pytest.raises(ValueError, match="^--repeats must be >= 1, not 0$"):
        run_benchmark(stub.url, prompts=str(prompts_file), repeats=0)


def test_a_run_file_that_cannot_be_written_stops_the_run_with_a_message() -> None:
    def full_disk(record: RequestRecord) -> None:
        raise OSError(28, "No space left on device")

    with ChatStub() as stub:
        with pytest.raises(RecordSinkError) as info:
            send(stub, one_item(), on_record=full_disk)
    assert str(info.value) == (
        "cannot write the run file ([Errno 28] No space left on device); free the disk and "
        "rerun with --resume: what was written so far is kept"
    )


def test_a_profile_that_cannot_simulate_a_request_keeps_the_row_and_says_why() -> None:
    def too_big(measured: dict[str, Any], profile: dict[str, Any], **_: Any) -> dict[str, Any]:
        raise ValueError("profile T4: a 405B model does not fit even on 8 x T4")

    df = build_dataframe(
        [full_record("capital-r0", PROMPTS[0], "Paris", 1000.0)],
        {"T4": {}},
        run_id="r",
        enhance=too_big,
        provider_estimate=lambda *a: None,
    )
    row = df.iloc[0]
    assert (row["profile"], row["success"]) == ("T4", True)
    assert row["energy_method"] == "not simulated: profile T4: a 405B model does not fit even on 8 x T4"
    assert pd_isna(row["energy_kwh"])


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_progress_postfix_counts_failures_retries_and_tokens_per_second() -> None:
    import time

    totals = Progress(failed=1, retries=3, completion_tokens=200, started_s=time.monotonic() - 10.0)
    postfix = totals.postfix()
    assert (postfix["failed"], postfix["retries"]) == (1, 3)
    assert postfix["tok/s"] == pytest.approx(20.0, abs=0.2)


def test_write_frame_csv_writes_what_to_csv_writes_with_12_significant_digits(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(
        {
            "request_id": ["a-r0", "b-r0", "c-r0"],
            "status_code": [200.0, None, 429.0],  # float with NaN, as build_dataframe makes it
            "attempts": [1, 2, 3],
            "latency_s": [0.1 + 0.2, 1234567.891234567, float("nan")],
            "energy_kwh": [1.23456789012345e-7, 0.0, -2.5],
            "success": [True, False, True],
            "correct": pd.array([True, None, False], dtype="boolean"),
            "response_text": ['He said "hi", then left', "line one\nline two", None],
            "expected": ['["Paris", "paris"]', 5.0, None],
        }
    )
    path = tmp_path / "run.csv"
    write_frame_csv(df, path)
    assert path.read_text(encoding="utf-8") == (
        "request_id,status_code,attempts,latency_s,energy_kwh,success,correct,response_text,expected\n"
        'a-r0,200,1,0.3,1.23456789012e-07,True,True,"He said ""hi"", then left","[""Paris"", ""paris""]"\n'
        'b-r0,,2,1234567.89123,0,False,,"line one\nline two",5.0\n'
        "c-r0,429,3,,-2.5,True,False,,\n"
    )
    theirs = tmp_path / "pandas.csv"
    df.to_csv(theirs, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(path), pd.read_csv(theirs), check_dtype=False, rtol=1e-11)



def test_cli_checks_the_requested_model_not_the_default(
    tmp_path: Path, prompts_file: Path, no_env_token: None, capsys: pytest.CaptureFixture[str]
) -> None:
    health = {"status": "degraded", "ready": False, "model": "gemini/gemini-2.5-flash",
              "detail": "missing key: set GEMINI_API_KEY"}
    with ChatStub(health=health) as stub:
        assert cli(stub.url, prompts_file, tmp_path, "--model", "gemini/gemini-2.5-flash") == 2
        assert stub.health_queries == ["model=gemini%2Fgemini-2.5-flash"]
        assert stub.chat_requests() == []
    assert_one_error_line(capsys, f"error: the service at {stub.url} is up but its model is not ready: "
                                  "missing key: set GEMINI_API_KEY")


@pytest.mark.parametrize(("options", "message"), [
    ({"concurrency": 0}, "concurrency must be >= 1, not 0"),
    ({"rate_rps": 0.0}, "rate must be > 0 requests per second, not 0.0"),
    ({"warmup": -1}, "warmup must be >= 0, not -1"),
])
def test_a_schedule_refuses_what_cannot_be_sent(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Schedule(**options)
    assert str(caught.value) == message


def test_the_load_generator_takes_a_transport_not_a_url() -> None:
    # the target is named once, by the transport (base URL, token, model), not again beside it
    with pytest.raises(TypeError, match=r"^BatchProcessor takes a transport, not a URL: ServiceTransport\(url\)"):
        BatchProcessor("http://127.0.0.1:9")  # type: ignore[arg-type]
