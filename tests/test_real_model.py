"""The real path: uvicorn on 127.0.0.1 serving the embedded SmolLM2 model, no keys, no internet."""
from __future__ import annotations

import os

import httpx
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`uvicorn app:app` as a subprocess (conftest removed every key from the environment)."""
    from wattbench.client.service_process import ServiceProcess

    log_path = tmp_path_factory.mktemp("uvicorn") / "service.log"
    with ServiceProcess(env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, log_path=log_path,
                        startup_timeout_s=90) as process:
        yield process.url


def test_health_names_the_embedded_model(service):
    body = httpx.get(f"{service}/health").json()
    assert body["model"] == "wattbench-local/smollm2-135m-instruct"
    assert body["ready"] is True and body["detail"] == "local GGUF SmolLM2-135M-Instruct.Q4_1.gguf"


def test_chat_gets_real_text_from_smollm2(service):
    response = httpx.post(f"{service}/chat", json={"prompt": "What is the capital of France?", "max_tokens": 24},
                          timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "wattbench-local/smollm2-135m-instruct"
    assert body["route"] == "Precise" and body["temperature"] == 0.1
    assert len(body["text"].split()) >= 2
    assert body["token_source"] == "provider"
    assert 1 <= body["completion_tokens"] <= 24
    assert body["prompt_tokens"] >= 10  # the chat template wraps the 7 words in role markers
    assert body["total_tokens"] == body["prompt_tokens"] + body["completion_tokens"]
    assert 0 < body["ttft_s"] <= body["latency_s"]
    assert body["tokens_per_s"] == pytest.approx(body["completion_tokens"] / body["latency_s"])
    assert body["cost_usd"] == 0.0
    assert body["model_params_b"] == pytest.approx(0.1345, abs=0.001)
    assert body["measured_energy_method"] in {"rapl", "nvml", "cpu_time_estimate"}
    if body["measured_energy_method"] == "cpu_time_estimate":
        # CPU seconds x 4 W per core (CodeCarbon's constant); the generation's CPU time is at most
        # its wall time (within the request's latency) on every core of the machine.
        from wattbench.energy.meters import CODECARBON_DEFAULT_W_PER_CORE

        most = body["latency_s"] * (os.cpu_count() or 1) * CODECARBON_DEFAULT_W_PER_CORE / 3.6e6
        assert 0 < body["measured_energy_kwh"] <= most


def test_batch_gets_real_text_for_each_prompt_in_order(service):
    prompts = ["Write a haiku about the sea.", "Write a Python function that adds two numbers."]
    response = httpx.post(f"{service}/batch", json={"prompts": prompts, "max_tokens": 16}, timeout=180)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["route"] for r in results] == ["Creative", "Coder"]
    assert all(r["text"].strip() and 1 <= r["completion_tokens"] <= 16 for r in results)
