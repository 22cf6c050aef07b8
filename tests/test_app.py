"""The service through a fake at the model seam: fields, timing maths, validation, auth, /batch, /health."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import FakeBackend, Scripted, ScriptedClock

from wattbench.config import LOCAL_MODEL, Settings
from wattbench.protocol.metrics import timing_from_clock as timing_metrics
from wattbench.service.backend import BadModelRequest, RateLimited, UpstreamTimeout, UpstreamUnavailable

REQUIRED_FIELDS = {
    "request_id", "model", "route", "temperature", "text", "prompt_tokens", "completion_tokens", "total_tokens",
    "token_source", "ttft_s", "latency_s", "tpot_s", "tokens_per_s", "cost_usd", "created_at",
}


def test_timing_metrics_hand_computed():
    # sent at 10.0, first token at 10.5, last byte at 12.0, 4 tokens:
    # ttft 0.5, latency 2.0, tpot (2.0 - 0.5) / 3 = 0.5, tokens/s 4 / 2.0 = 2.0
    assert timing_metrics(10.0, 10.5, 12.0, 4) == pytest.approx(
        {"ttft_s": 0.5, "latency_s": 2.0, "tpot_s": 0.5, "tokens_per_s": 2.0}
    )
    single = timing_metrics(0.0, 0.25, 0.25, 1)
    assert single["tpot_s"] is None and single["tokens_per_s"] == pytest.approx(4.0)


def test_chat_answers_every_field_with_measured_timing(make_client, fake_backend):
    fake_backend.push(Scripted(pieces=["Paris", " is", " the", " capital."], usage=(12, 4)))
    client = make_client(Settings(_env_file=None, model="gemini/gemini-2.5-flash"),
                         clock=ScriptedClock(100.0, 100.4, 101.9))
    response = client.post("/chat", json={"prompt": "What is the capital of France?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert REQUIRED_FIELDS <= body.keys()
    assert body["text"] == "Paris is the capital."
    assert body["model"] == "gemini/gemini-2.5-flash"
    assert body["route"] == "Precise" and body["temperature"] == 0.1
    assert (body["prompt_tokens"], body["completion_tokens"], body["total_tokens"]) == (12, 4, 16)
    assert body["token_source"] == "provider"
    assert body["ttft_s"] == pytest.approx(0.4)
    assert body["latency_s"] == pytest.approx(1.9)
    assert body["tpot_s"] == pytest.approx(1.5 / 3)
    assert body["tokens_per_s"] == pytest.approx(4 / 1.9)
    assert body["cost_usd"] == pytest.approx(12 * 0.30e-6 + 4 * 2.50e-6)
    assert datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")).utcoffset() == timedelta(0)
    sent = fake_backend.requests[0]
    assert sent.temperature == 0.1 and sent.max_tokens == 256
    assert sent.metadata["route"] == "Precise" and sent.metadata["request_id"] == body["request_id"]


def test_explicit_temperature_model_and_system_win(make_client, fake_backend):
    client = make_client()
    response = client.post("/chat", json={"prompt": "Write a haiku about rain", "temperature": 0.0,
                                          "model": "openai/gpt-4o-mini", "max_tokens": 5, "system": "Be brief."})
    assert response.status_code == 200, response.text
    assert response.json()["temperature"] == 0.0 and response.json()["route"] == "Creative"
    sent = fake_backend.requests[0]
    assert sent.model == "openai/gpt-4o-mini" and sent.max_tokens == 5
    assert sent.messages == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Write a haiku about rain"}]


def test_tokens_are_estimated_when_the_provider_gives_no_usage(make_client, fake_backend):
    fake_backend.push(Scripted(pieces=["one two", " three"], usage=None))
    body = make_client().post("/chat", json={"prompt": "say three words please"}).json()
    assert body["token_source"] == "estimated"
    assert (body["prompt_tokens"], body["completion_tokens"]) == (4, 3)


def test_default_model_is_local_without_keys(make_client):
    body = make_client().post("/chat", json={"prompt": "hi"}).json()
    assert body["model"] == LOCAL_MODEL and body["cost_usd"] == 0.0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "invalid request: prompt: Field required"),
        ({"prompt": ""}, "invalid request: prompt: String should have at least 1 character"),
        ({"prompt": "   "}, "invalid request: prompt: prompt must contain some non-whitespace text"),
        ({"prompt": "x" * 32_001}, "invalid request: prompt: String should have at most 32000 characters"),
        ({"prompt": "hi", "temperature": 2.5}, "invalid request: temperature: Input should be less than or equal to 2"),
        ({"prompt": "hi", "max_tokens": 0}, "invalid request: max_tokens: Input should be greater than or equal to 1"),
        ({"prompt": "hi", "max_tokens": 9000},
         "invalid request: max_tokens: Input should be less than or equal to 8192"),
    ],
)
def test_bad_input_is_a_422_that_says_what_to_fix(make_client, payload, message):
    response = make_client().post("/chat", json=payload)
    assert response.status_code == 422
    assert response.json() == {"detail": message}


def test_batch_limits(make_client):
    client = make_client()
    assert client.post("/batch", json={"prompts": []}).json() == {
        "detail": "invalid request: prompts: List should have at least 1 item after validation, not 0"}
    response = client.post("/batch", json={"prompts": ["hi"] * 101})
    assert response.status_code == 422
    assert response.json()["detail"] == "invalid request: prompts: List should have at most 100 items after validation, not 101"


@pytest.mark.parametrize(
    ("error", "status", "detail", "retry_after"),
    [
        (RateLimited("the provider rate-limited model m: slow down", retry_after="7"), 429,
         "the provider rate-limited model m: slow down", "7"),
        (UpstreamUnavailable("the provider rejected the API key for m: check GEMINI_API_KEY"), 502,
         "the provider rejected the API key for m: check GEMINI_API_KEY", None),
        (UpstreamTimeout("model m did not answer within 1 s"), 504, "model m did not answer within 1 s", None),
        (BadModelRequest("unknown model 'x'"), 422, "unknown model 'x'", None),
    ],
)
def test_backend_errors_map_to_http(make_client, fake_backend, error, status, detail, retry_after):
    fake_backend.push(Scripted(error=error))
    response = make_client().post("/chat", json={"prompt": "hi"})
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert response.headers.get("retry-after") == retry_after


def test_batch_keeps_order_and_reports_failed_items(make_client, fake_backend):
    fake_backend.push(
        Scripted(pieces=["first"], usage=(3, 1)),
        Scripted(error=RateLimited("rate-limited", retry_after="2")),
        Scripted(pieces=["third"], usage=(3, 1)),
    )
    settings = Settings(_env_file=None, WATTBENCH_BATCH_CONCURRENCY=1)
    response = make_client(settings).post("/batch", json={"prompts": ["a", "b", "c"], "max_tokens": 8})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r.get("text") for r in results] == ["first", None, "third"]
    assert results[1] == {"prompt_index": 1, "error": "rate-limited", "status_code": 429, "retry_after": "2",
                          "retry_after_ms": 2000}


def test_auth_required_on_everything_but_health(make_client):
    client = make_client(Settings(_env_file=None, WATTBENCH_API_TOKEN="s3cret-token"))
    unauthorised = client.post("/chat", json={"prompt": "hi"})
    assert unauthorised.status_code == 401
    assert unauthorised.json() == {
        "detail": "missing or wrong bearer token: send 'Authorization: Bearer <WATTBENCH_API_TOKEN>'"}
    assert client.post("/chat", json={"prompt": "hi"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/batch", json={"prompts": ["hi"]}).status_code == 401
    ok = client.post("/chat", json={"prompt": "hi"}, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["auth_required"] is True
    assert "s3cret-token" not in health.text + ok.text


def test_health_reports_model_and_readiness(make_client):
    body = make_client().get("/health").json()
    assert body == {"status": "ok", "model": LOCAL_MODEL, "ready": True, "detail": "fake backend",
                    "auth_required": False, "deprecation": None, "model_note": None}


def test_health_warns_about_a_deprecated_model_chosen_by_name(make_client):
    settings = Settings(_env_file=None, GEMINI_API_KEY="AIza-test-key", WATTBENCH_MODEL="gemini/gemini-2.5-flash")
    body = make_client(settings).get("/health").json()
    assert body["model"] == "gemini/gemini-2.5-flash"
    assert "2026-12-01" in body["deprecation"]
    assert body["model_note"] is None
    assert "AIza-test-key" not in str(body)


def test_batch_runs_items_concurrently_but_bounded(make_client):
    backend = FakeBackend([Scripted(pieces=[f"answer {i}"], usage=(2, 2)) for i in range(5)])
    settings = Settings(_env_file=None, WATTBENCH_BATCH_CONCURRENCY=2)
    results = make_client(settings, backend=backend).post("/batch", json={"prompts": list("abcde")}).json()["results"]
    assert len(results) == 5 and len(backend.requests) == 5
    assert {r["text"] for r in results} == {f"answer {i}" for i in range(5)}


def test_serve_cli_bad_port_is_one_line(capsys):
    from wattbench.service.serve import cli_serve

    assert cli_serve(["--port", "x"]) == 2
    assert capsys.readouterr().err == "error: argument --port: invalid int value: 'x'\n"
    assert cli_serve(["--port", "70000"]) == 2
    assert capsys.readouterr().err == "error: --port must be 1-65535, got 70000\n"


def test_serve_cli_port_in_use_is_one_line_before_loading_anything(capsys):
    import socket

    from wattbench.service.serve import cli_serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli_serve(["--port", str(port)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port\n")


@pytest.mark.parametrize(("body", "detail"), [
    ({"prompt": "hi", "model": "0"},
     "invalid request: model: not a model string: use [provider/]name, such as gemini/gemini-2.5-flash"),
    ({"prompt": "hi", "model": "openai//x"},
     "invalid request: model: not a model string: use [provider/]name, such as gemini/gemini-2.5-flash"),
    ({"prompt": "hi", "temperature": False}, "invalid request: temperature: must be a number, not true or false"),
    ({"prompt": "hi", "max_tokens": True}, "invalid request: max_tokens: must be a number, not true or false"),
    ({"prompt": "hi", "stream": 0}, "invalid request: stream: Input should be a valid boolean"),
    ({"prompts": ["hi"], "model": "0"},
     "invalid request: model: not a model string: use [provider/]name, such as gemini/gemini-2.5-flash"),
])
def test_what_the_schema_refuses_the_service_refuses(body: dict, detail: str, make_client) -> None:
    """Schemathesis' findings (issue 20): "0" is no model string, JSON false is no temperature."""
    client = make_client()
    response = client.post("/batch" if "prompts" in body else "/chat", json=body)
    assert (response.status_code, response.json()) == (422, {"detail": detail})
    options = client.get("/openapi.json").json()["components"]["schemas"]["ChatRequest"]["properties"]
    assert options["model"]["anyOf"][0]["pattern"] == "^[A-Za-z][^\\s/]*(/[^\\s/]+)*$"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", "ollama/llama3:8b",
                                   "wattbench-local/smollm2-135m-instruct"])
def test_model_strings_in_use_still_pass(model: str, make_client) -> None:
    assert make_client().post("/chat", json={"prompt": "hi", "model": model, "temperature": 1}).status_code == 200
