"""Canary test: a canary in every secret variable, a provider that echoes every header it receives and fails in
every way (401, 429, 500, timeout, dropped connection), Langfuse tracing on; then every byte wattbench wrote
(HTTP answers, stdout/stderr, the service log, the run file, the CSV, the report and dashboards of `run` and of
`report`, the OTLP payloads) is searched for every canary, raw and in the encodings it could travel in: 0 hits.

It drives the real thing: `wattbench run` starting the real service (uvicorn) that calls the provider through
LiteLLM, and `wattbench report`. See docs/security.md."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import httpx
import pytest
from echo_provider import EchoProvider
from otlp_receiver import OtlpReceiver

from wattbench.client.service_process import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary7q3x"
SECRETS = {
    name: f"{CANARY}-{name.lower().replace('_', '-')}-k9"
    for name in (
        "OPENAI_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "HF_TOKEN",
        "WATTBENCH_API_BASE_KEY", "WATTBENCH_API_TOKEN", "LANGFUSE_SECRET_KEY", "NGROK_AUTHTOKEN",
        "MY_SERVICE_SECRET", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
    )
}
LANGFUSE_PUBLIC_KEY = "pk-lf-public-7a1b"
PROMPTS = ["What is 2 + 2?", "fail 401 please", "fail 429 please", "fail 500 please", "fail timeout please",
           "fail drop please"]


def forms(secret: str) -> set[str]:
    """A secret as it could appear in an output: raw, URL-quoted, base64 alone or in a Basic header."""
    out = {secret, urllib.parse.quote(secret, safe=""), base64.b64encode(secret.encode()).decode().rstrip("=")}
    out.add(base64.b64encode(f"{LANGFUSE_PUBLIC_KEY}:{secret}".encode()).decode().rstrip("="))
    return out


ALL_FORMS = {form: name for name, secret in SECRETS.items() for form in forms(secret)}


def leaks(texts: dict[str, bytes]) -> list[str]:
    found = {f"{ALL_FORMS[form]} in {where}" for where, data in texts.items() for form in ALL_FORMS
             if form.encode() in data}
    found |= {f"the canary in {where}" for where, data in texts.items() if CANARY.encode() in data}
    return sorted(found)


def canary_env(provider: EchoProvider, receiver: OtlpReceiver) -> dict[str, str]:
    return {
        **os.environ,
        **SECRETS,
        "LANGFUSE_PUBLIC_KEY": LANGFUSE_PUBLIC_KEY,
        "LANGFUSE_HOST": receiver.url,
        "WATTBENCH_API_BASE": provider.url,
        "WATTBENCH_MODEL": "openai/echo",
        "WATTBENCH_REQUEST_TIMEOUT_S": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


@pytest.mark.slow
def test_no_canary_in_anything_wattbench_writes(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "{p}"}}\n' for i, p in enumerate(PROMPTS)))
    out = tmp_path / "out"
    texts: dict[str, bytes] = {}
    with EchoProvider(slow_s=1.5) as provider, OtlpReceiver() as receiver:
        env = canary_env(provider, receiver)
        # 1. the service directly: every failure's HTTP answer, and /health with and without the token
        with ServiceProcess(env=env, log_path=tmp_path / "direct-service.log") as service:
            auth = {"Authorization": f"Bearer {SECRETS['WATTBENCH_API_TOKEN']}"}
            with httpx.Client(base_url=service.url, timeout=30) as client:
                for i, prompt in enumerate(PROMPTS):
                    answer = client.post("/chat", json={"prompt": prompt}, headers=auth)
                    texts[f"/chat {prompt!r} ({answer.status_code})"] = answer.content + str(answer.headers).encode()
                    streamed = client.post("/chat", json={"prompt": prompt, "stream": True}, headers=auth)
                    texts[f"/chat stream {prompt!r}"] = streamed.content
                batch = client.post("/batch", json={"prompts": PROMPTS}, headers=auth)
                texts["/batch"] = batch.content
                texts["/health"] = client.get("/health").content
                texts["/health with token"] = client.get("/health", headers=auth).content
                texts["/health?model= with token"] = client.get(
                    "/health", params={"model": "anthropic/claude-3-5-haiku"}, headers=auth).content
                texts["/openapi.json"] = client.get("/openapi.json", headers=auth).content
                texts["/chat without token"] = client.post("/chat", json={"prompt": "hi"}).content
        statuses = {k for k in texts if k.startswith("/chat '")}
        assert any("(200)" in k for k in statuses) and any("(502)" in k for k in statuses), statuses
        # 2. `wattbench run` end to end (it starts its own service), then `wattbench report` on its CSV
        run = subprocess.run(
            [sys.executable, "-m", "wattbench", "run", "--prompts", str(prompts), "--out", str(out),
             "--profiles", "T4_COLAB", "--warmup", "0", "--no-progress", "--max-attempts", "2"],
            cwd=REPO_ROOT, env=env, capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr[-3000:]  # some requests failed, by design
        csv = next(out.glob("ai_metrics_*.csv"))
        report_out = tmp_path / "report"
        report = subprocess.run(
            [sys.executable, "-m", "wattbench", "report", str(csv), "--out", str(report_out)],
            cwd=REPO_ROOT, env=env, capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        for name, done in (("run", run), ("report", report)):
            texts[f"{name} stdout"], texts[f"{name} stderr"] = done.stdout, done.stderr
        assert receiver.received, "no OTLP payload arrived: the tracing part of the test did not run"
        for i, item in enumerate(receiver.received):
            texts[f"OTLP payload {i}"] = item.body
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != prompts)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {"out/service.log", "out/report.txt", "out/index.html", "direct-service.log"} <= names, names
    assert any(n.endswith("/requests.jsonl") for n in names), names
    for path in written:
        texts[path.relative_to(tmp_path).as_posix()] = path.read_bytes()
    # the provider did receive the secrets (so they were there to leak), and the search does find text
    assert any(SECRETS["WATTBENCH_API_BASE_KEY"] in str(r["headers"]) for r in provider.requests)
    assert b"fail 500 please" in texts[csv.relative_to(tmp_path).as_posix()]
    assert leaks(texts) == []
