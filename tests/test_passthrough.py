"""The pass-through of OpenAI-compatible upstreams (wattbench/service/passthrough.py): which models take it, that
it sends what LiteLLM sends and answers what LiteLLM answers, its event parser, and its errors."""
from __future__ import annotations

import json
import socket

import pytest
from openai_stub import OpenAIStub

from wattbench.config import LOCAL_MODEL, Settings
from wattbench.protocol.openai_stream import StreamReader
from wattbench.protocol.sse import event_fields
from wattbench.service.backend import LiteLLMBackend, StreamEvent
from wattbench.service.passthrough import PerModel, SseParser, UpstreamEventError, select_backend, upstream_model

BASE = "http://127.0.0.1:9/v1"


def settings(**env) -> Settings:
    return Settings(_env_file=None, **env)


@pytest.mark.parametrize(("model", "env", "expected"), [
    ("openai/llama", {"WATTBENCH_API_BASE": BASE}, "llama"),
    ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", {"WATTBENCH_API_BASE": BASE}, "meta-llama/Llama-3.1-8B-Instruct"),
    ("lm_studio/qwen", {"WATTBENCH_API_BASE": BASE}, "qwen"),
    ("gemini/gemini-2.5-flash", {"WATTBENCH_API_BASE": BASE}, None),  # not OpenAI's API
    ("ollama/llama3", {"WATTBENCH_API_BASE": BASE}, None),  # Ollama's own API: LiteLLM
    (LOCAL_MODEL, {"WATTBENCH_API_BASE": BASE}, None),
    ("gpt-4o", {"WATTBENCH_API_BASE": BASE}, None),  # no provider prefix: LiteLLM decides
    ("openai/llama", {}, None),  # no WATTBENCH_API_BASE: api.openai.com through LiteLLM
    ("openai/llama", {"WATTBENCH_API_BASE": BASE, "WATTBENCH_PASSTHROUGH": "0"}, None),
    ("openai/llama", {"WATTBENCH_API_BASE": BASE, "WATTBENCH_MOCK_RESPONSE": "hi"}, None),
    ("openai/llama", {"WATTBENCH_API_BASE": BASE, "LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk-x"}, None),
])
def test_which_models_are_streamed_through(model, env, expected):
    assert upstream_model(model, settings(**env)) == expected


def test_the_hook_gives_litellm_alone_when_nothing_can_pass_through():
    assert type(select_backend(settings())) is LiteLLMBackend
    assert type(select_backend(settings(WATTBENCH_API_BASE=BASE, WATTBENCH_PASSTHROUGH="false"))) is LiteLLMBackend
    both = select_backend(settings(WATTBENCH_API_BASE=BASE))
    assert isinstance(both, PerModel)
    assert both.backend_for("openai/x") is both.passthrough
    assert both.backend_for("gemini/gemini-2.5-flash") is both.litellm
    assert both.ready("openai/x") == (True, "OpenAI-compatible server at http://127.0.0.1:9/v1 (streamed through)")


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


STREAM = (
    b": keep-alive comment\n\n"
    + _event({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
    + _event({"choices": [{"index": 0, "delta": {"content": "Bonjour"}, "finish_reason": None}]})
    + _event({"choices": [{"index": 0, "delta": {"content": ", \u00e7a va"}, "finish_reason": None}]})
    + _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    + _event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
    + b"data: [DONE]\n\n"
)


def _summary(events: list[StreamEvent]) -> tuple[str, str | None, int | None, int | None]:
    finish = next((e.finish_reason for e in events if e.finish_reason), None)
    usage = next(((e.prompt_tokens, e.completion_tokens) for e in events if e.completion_tokens is not None),
                 (None, None))
    return "".join(e.text for e in events), finish, *usage


@pytest.mark.parametrize("step", [1, 7, 64, len(STREAM)])
def test_the_parser_reads_the_same_answer_however_the_bytes_are_cut(step):
    parser = SseParser()
    events = [parser.feed(STREAM[i:i + step]) for i in range(0, len(STREAM), step)]
    assert _summary([e for e in events if e is not None]) == ("Bonjour, \u00e7a va", "stop", 9, 3)
    assert parser.done


def test_the_parser_joins_what_arrived_together_and_reads_crlf():
    parser = SseParser()
    event = parser.feed(STREAM.replace(b"\n", b"\r\n"))
    assert (event.text, event.finish_reason, event.prompt_tokens, event.completion_tokens) == (
        "Bonjour, \u00e7a va", "stop", 9, 3)
    assert parser.feed(b"") is None


@pytest.fixture(scope="module")
def stub():
    with OpenAIStub(slow_s=3.0) as server:
        yield server


@pytest.fixture
def client_for(make_client):
    opened = []

    def build(env: dict, model: str):
        config = settings(WATTBENCH_MODEL=model, WATTBENCH_REQUEST_TIMEOUT_S=0.5, **env)
        backend = select_backend(config)
        client = make_client(config, backend=backend).__enter__()
        opened.append((client, backend))
        return client

    yield build
    for client, backend in opened:
        if isinstance(backend, PerModel):
            client.portal.call(backend.passthrough.aclose)
        client.__exit__(None, None, None)


@pytest.mark.filterwarnings("ignore:no price known")
def test_it_sends_what_litellm_sends(client_for, stub):
    bodies = []
    for passthrough in ("0", "1"):
        client = client_for({"WATTBENCH_API_BASE": stub.url, "WATTBENCH_PASSTHROUGH": passthrough,
                             "WATTBENCH_API_BASE_KEY": "sk-base-key-4242"}, "openai/ok")
        answer = client.post("/chat", json={"prompt": "Write a haiku about rain", "max_tokens": 12,
                                            "system": "Be brief."})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["text"], body["prompt_tokens"], body["completion_tokens"], body["finish_reason"]) == (
            "Hello from the stub", 11, 4, "stop")
        sent = stub.requests[-1]
        assert sent["path"] == "/v1/chat/completions"
        assert sent["authorization"] == "Bearer sk-base-key-4242"
        bodies.append({k: sent["body"][k] for k in
                       ("model", "messages", "temperature", "max_tokens", "stream", "stream_options")})
        assert "sk-base-key-4242" not in answer.text
    assert bodies[0] == bodies[1]
    assert bodies[1]["model"] == "ok" and bodies[1]["temperature"] == body["temperature"]


@pytest.mark.filterwarnings("ignore:no price known")
def test_a_streamed_chat_through_the_passthrough(client_for, stub):
    client = client_for({"WATTBENCH_API_BASE": stub.url}, "openai/ok")
    with client.stream("POST", "/chat", json={"prompt": "Say hello", "stream": True}) as response:
        raw = b"".join(response.iter_bytes())
    assert response.status_code == 200
    blocks = [b for b in raw.split(b"\n\n") if b]
    # the upstream's events come through byte for byte (none decoded and encoded again), then the service's result
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "ok"}
    chunks = [dict(base, choices=[{"index": 0, "delta": {"content": p}, "finish_reason": None}])
              for p in ["Hello", " from", " the", " stub"]]
    chunks += [dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
               dict(base, choices=[], usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})]
    assert blocks[:-1] == [b"data: " + json.dumps(c).encode() for c in chunks] + [b"data: [DONE]"]  # openai_stub.py
    reader = StreamReader()
    assert "".join(reader.read(event_fields(b)[1]) for b in blocks[:-1]) == "Hello from the stub"
    assert blocks[-1].startswith(b"event: result\ndata: ")
    result = json.loads(blocks[-1].split(b"data: ", 1)[1])
    assert (result["text"], result["completion_tokens"], result["token_source"]) == ("Hello from the stub", 4,
                                                                                     "provider")


def test_an_unreachable_upstream_is_a_502_that_names_it(client_for):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:pw-secret-77@127.0.0.1:{port}/v1"
    response = client_for({"WATTBENCH_API_BASE": url}, "openai/ok").post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert detail.startswith(f"cannot reach http://***@127.0.0.1:{port}/v1 for model openai/ok: ")
    assert "pw-secret-77" not in response.text


def test_an_error_inside_the_stream_is_raised_with_its_message():
    parser = SseParser()
    with pytest.raises(UpstreamEventError) as caught:
        parser.feed(_event({"error": {"message": "out of KV cache", "type": "server_error"}}))
    assert str(caught.value) == "out of KV cache"
