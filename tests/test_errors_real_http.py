"""The error mapping through the real backends (LiteLLM, and the pass-through of OpenAI-compatible upstreams)
against an OpenAI-compatible stub on 127.0.0.1: both give the same answers and the same errors."""
from __future__ import annotations

import pytest
from openai_stub import OpenAIStub

from wattbench.config import Settings


@pytest.fixture(scope="module")
def stub():
    with OpenAIStub(slow_s=3.0) as server:
        yield server


@pytest.fixture(params=["litellm", "passthrough"])
def real_client(request, make_client, stub):
    """A client of the service whose backend is the one the selection hook builds, with the pass-through
    off (every model through LiteLLM) or on (openai/... streamed through)."""
    from wattbench.service.passthrough import PerModel, select_backend

    opened = []

    def build(model: str, **extra):
        settings = Settings(_env_file=None, WATTBENCH_API_BASE=stub.url, WATTBENCH_MODEL=f"openai/{model}",
                            WATTBENCH_REQUEST_TIMEOUT_S=0.5,
                            WATTBENCH_PASSTHROUGH=request.param == "passthrough", **extra)
        backend = select_backend(settings)
        assert isinstance(backend, PerModel) is (request.param == "passthrough")
        client = make_client(settings, backend=backend).__enter__()  # one event loop for its requests
        opened.append((client, backend))
        return client

    yield build
    for client, backend in opened:
        if isinstance(backend, PerModel):  # its keep-alive connections, closed in their own loop
            client.portal.call(backend.passthrough.aclose)
        client.__exit__(None, None, None)


def test_streams_text_usage_and_ttft_through_litellm(real_client, stub):
    response = real_client("ok").post("/chat", json={"prompt": "Say hello", "max_tokens": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "Hello from the stub"
    assert (body["prompt_tokens"], body["completion_tokens"], body["token_source"]) == (11, 4, "provider")
    assert 0 < body["ttft_s"] <= body["latency_s"]
    assert body["cost_usd"] is None  # a self-hosted model has no price in LiteLLM's map
    sent = stub.requests[-1]["body"]
    assert sent["model"] == "ok" and sent["max_tokens"] == 10 and sent["stream"] is True


def test_429_passes_retry_after_on(real_client):
    response = real_client("ratelimit").post("/chat", json={"prompt": "hi"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["detail"].startswith("the provider rate-limited model openai/ratelimit")


def test_bad_key_is_a_502_naming_the_variable(real_client):
    response = real_client("badkey", WATTBENCH_API_BASE_KEY="sk-secret-value-123").post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    assert response.json() == {
        "detail": "the provider rejected the API key for openai/badkey: check WATTBENCH_API_BASE_KEY"}
    assert "sk-secret-value-123" not in response.text


def test_slow_provider_is_a_504(real_client):
    response = real_client("slow").post("/chat", json={"prompt": "hi"})
    assert response.status_code == 504
    assert response.json() == {"detail": "model openai/slow did not answer within 0.5 s "
                                         "(raise WATTBENCH_REQUEST_TIMEOUT_S or lower max_tokens)"}


def test_provider_500_is_a_502_not_a_500(real_client):
    response = real_client("boom").post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    assert "openai/boom" in response.json()["detail"]


def test_missing_gemini_key_is_a_502_naming_the_variable(make_client):
    from wattbench.service.backend import LiteLLMBackend

    settings = Settings(_env_file=None, WATTBENCH_MODEL="gemini/gemini-2.5-flash")
    response = make_client(settings, backend=LiteLLMBackend(settings)).post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    assert response.json() == {"detail": "missing key: set GEMINI_API_KEY to use model gemini/gemini-2.5-flash"}


def test_batch_item_errors_do_not_fail_the_batch(real_client):
    response = real_client("ratelimit").post("/batch", json={"prompts": ["a", "b"]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["prompt_index"], r["status_code"], r["retry_after"]) for r in results] == [(0, 429, "7"), (1, 429, "7")]


def test_unknown_model_string_is_a_422_that_says_what_to_use(make_client):
    from wattbench.service.backend import LiteLLMBackend

    settings = Settings(_env_file=None)
    response = make_client(settings, backend=LiteLLMBackend(settings)).post(
        "/chat", json={"prompt": "hi", "model": "not-a-real-model"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "unknown model 'not-a-real-model': use a LiteLLM model string such as gemini/gemini-2.5-flash"}


def test_health_checks_a_named_model(make_client):
    from wattbench.service.backend import LiteLLMBackend

    settings = Settings(_env_file=None)
    client = make_client(settings, backend=LiteLLMBackend(settings))
    body = client.get("/health", params={"model": "gemini/gemini-2.5-flash"}).json()
    assert (body["model"], body["ready"], body["status"]) == ("gemini/gemini-2.5-flash", False, "degraded")
    assert body["detail"] == "missing key: set GEMINI_API_KEY"
    default = client.get("/health").json()
    assert default["model"] == "wattbench-local/smollm2-135m-instruct" and default["ready"] is True


def test_mock_mode_answers_for_the_embedded_model_name_without_loading_it(make_client):
    from wattbench.service.backend import LiteLLMBackend

    settings = Settings(_env_file=None, WATTBENCH_MOCK_RESPONSE="Paris is the capital of France.")
    backend = LiteLLMBackend(settings)
    response = make_client(settings, backend=backend).post("/chat", json={"prompt": "Capital of France?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["text"], body["cost_usd"]) == (
        "wattbench-local/smollm2-135m-instruct", "Paris is the capital of France.", 0.0)
    assert backend.local().loaded is False
