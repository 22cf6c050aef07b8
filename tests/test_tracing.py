"""tracing.py: LiteLLM calls traced to a Langfuse stand-in (an OTLP/HTTP receiver on 127.0.0.1), decoded."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receiver import OtlpReceiver

from wattbench.config import Settings
from wattbench.service import tracing

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_KEY = "pk-lf-test-1234"
SECRET_KEY = "sk-lf-test-secret-5678"
REQUEST_ID = "0123456789abcdef0123456789abcdef"  # app.py's request ids are uuid4().hex


def langfuse_settings(host: str) -> Settings:
    return Settings(langfuse_public_key=PUBLIC_KEY, langfuse_secret_key=SECRET_KEY, langfuse_host=host)


def app_metadata(route: str, temperature: float, model: str) -> dict[str, object]:
    """The metadata app.py passes with every model call (see app.py chat())."""
    return {
        "request_id": REQUEST_ID,
        "route": route,
        "temperature": temperature,
        "trace_name": "wattbench-chat",
        "generation_name": route,
        "trace_id": REQUEST_ID,
        "tags": [route, model],
    }


def test_traces_endpoint_normalises_the_host() -> None:
    path = "/api/public/otel/v1/traces"
    assert tracing.traces_endpoint("cloud.langfuse.com") == "https://cloud.langfuse.com" + path
    assert tracing.traces_endpoint("http://127.0.0.1:3000/") == "http://127.0.0.1:3000" + path


def test_authorization_header_is_basic_public_colon_secret() -> None:
    assert tracing.authorization_header("pk", "sk") == "Basic cGs6c2s="  # base64("pk:sk")


def test_target_needs_both_keys_and_hides_headers_from_repr() -> None:
    assert tracing.tracing_target(Settings(langfuse_public_key=PUBLIC_KEY)) is None
    assert tracing.tracing_target(Settings(langfuse_secret_key=SECRET_KEY)) is None
    target = tracing.tracing_target(langfuse_settings("http://127.0.0.1:9"))
    assert target is not None
    assert target.endpoint == "http://127.0.0.1:9/api/public/otel/v1/traces"
    assert target.headers["x-langfuse-ingestion-version"] == "4"
    assert SECRET_KEY not in repr(target)


NO_KEYS_SCRIPT = """
import sys
from wattbench.service import tracing
from wattbench.config import Settings
on = tracing.configure_tracing(Settings(langfuse_public_key=sys.argv[1] or None))
print(on, tracing.tracing_enabled(), "litellm" in sys.modules, "opentelemetry.sdk.trace" in sys.modules)
"""


@pytest.mark.parametrize("public_key", ["", PUBLIC_KEY])
def test_without_both_keys_nothing_is_registered_or_imported(public_key: str) -> None:
    # A fresh interpreter: with a key missing, tracing neither imports litellm nor builds an exporter.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}
    done = subprocess.run([sys.executable, "-c", NO_KEYS_SCRIPT, public_key], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False False False False\n"


async def test_every_litellm_call_becomes_one_langfuse_generation() -> None:
    import litellm

    with OtlpReceiver() as receiver:
        settings = langfuse_settings(receiver.url)
        assert tracing.configure_tracing(settings) is True
        assert tracing.configure_tracing(settings) is True  # configuring again must not trace twice
        try:
            response = await litellm.acompletion(
                model="gemini/gemini-2.5-flash",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                mock_response="Paris",
                temperature=0.1,
                metadata=app_metadata("Flash-Precise", 0.1, "gemini/gemini-2.5-flash"),
            )
            assert await tracing.flush_tracing() is True
            # flushed means exported: the span is at the receiver before shutdown (which exports again)
            flushed = [r for r in receiver.received if r.path == "/api/public/otel/v1/traces"]
        finally:
            tracing.shutdown_tracing()
        assert len(flushed) == 1
        assert tracing.tracing_enabled() is False
        assert not any(type(cb).__name__ == "LangfuseOtelLogger" for cb in litellm.callbacks)

    assert response.choices[0].message.content == "Paris"
    [request] = [r for r in receiver.received if r.path == "/api/public/otel/v1/traces"]
    expected_auth = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert request.headers["authorization"] == expected_auth
    assert request.headers["content-type"] == "application/x-protobuf"

    [generation] = receiver.generations()
    attrs = generation.attributes
    # route, request id and temperature, as app.py passes them
    assert attrs["langfuse.generation.name"] == "Flash-Precise"
    assert attrs["langfuse.trace.name"] == "wattbench-chat"
    assert attrs["langfuse.trace.id"] == REQUEST_ID
    assert json.loads(attrs["langfuse.trace.tags"]) == ["Flash-Precise", "gemini/gemini-2.5-flash"]
    assert attrs["llm.request.temperature"] == pytest.approx(0.1)
    # tokens and cost: LiteLLM's mock usage is 10 prompt + 20 completion tokens; gemini-2.5-flash costs
    # $0.30 / $2.50 per 1M tokens in LiteLLM's bundled price map -> 10 * 0.30e-6 + 20 * 2.50e-6 = 5.3e-5 USD
    assert attrs["llm.token_count.prompt"] == 10
    assert attrs["llm.token_count.completion"] == 20
    assert attrs["llm.token_count.total"] == 30
    assert attrs["llm.cost.total"] == pytest.approx(5.3e-5)
    assert attrs["llm.model_name"] == "gemini-2.5-flash"
    assert json.loads(attrs["langfuse.observation.output"]) == {"role": "assistant", "content": "Paris"}
    # the keys travel in the Authorization header only
    assert all(SECRET_KEY not in str(v) for span in receiver.spans() for v in span.attributes.values())


async def test_flush_and_shutdown_are_no_ops_when_tracing_is_off() -> None:
    tracing.shutdown_tracing()
    assert await tracing.flush_tracing() is True
    tracing.shutdown_tracing()
    assert tracing.tracing_enabled() is False


@pytest.mark.slow
def test_service_traces_each_chat_with_its_route_request_id_tokens_and_cost() -> None:
    # The real service (uvicorn subprocess; app.py's lifespan calls configure_tracing, and flush_tracing at
    # shutdown) with LiteLLM's mock_response in place of Gemini; Langfuse is the loopback receiver.
    import httpx

    from wattbench.client.service_process import ServiceProcess

    with OtlpReceiver() as receiver:
        env = {
            "WATTBENCH_MODEL": "gemini/gemini-2.5-flash",
            "GEMINI_API_KEY": "fake-gemini-key",
            "WATTBENCH_MOCK_RESPONSE": "Paris",
            "LANGFUSE_PUBLIC_KEY": PUBLIC_KEY,
            "LANGFUSE_SECRET_KEY": SECRET_KEY,
            "LANGFUSE_HOST": receiver.url,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # Spans wait in the batch for a minute: only the flush at the service's shutdown can deliver them.
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        }
        with ServiceProcess(env=env, startup_timeout_s=180) as service:
            answers = [
                httpx.post(f"{service.url}/chat", json={"prompt": prompt}, timeout=30).json()
                for prompt in ("What is the capital of France?", "Write a Python function to reverse a list.")
            ]
            assert receiver.generations() == []
        generations = receiver.generations()  # the service has stopped (SIGTERM)

    assert len(generations) == 2
    by_request = {g.attributes["langfuse.trace.id"]: g.attributes for g in generations}
    assert set(by_request) == {a["request_id"] for a in answers}
    for answer in answers:
        attrs = by_request[answer["request_id"]]
        assert attrs["langfuse.generation.name"] == answer["route"]
        assert json.loads(attrs["langfuse.trace.tags"]) == [answer["route"], "gemini/gemini-2.5-flash"]
        assert attrs["llm.request.temperature"] == pytest.approx(answer["temperature"])
        assert attrs["llm.token_count.prompt"] == answer["prompt_tokens"]
        assert attrs["llm.token_count.completion"] == answer["completion_tokens"]
        assert attrs["llm.cost.total"] == pytest.approx(answer["cost_usd"])
    assert answers[0]["route"] != answers[1]["route"]  # two routes, two temperatures
