"""The promises of issue 20 as a matrix: each promise is one test parametrized over every path it applies to, in
real processes. A new path joins the matrix here when it is added.

Paths: the service started as `uvicorn app:app`, as `wattbench serve`, by `wattbench run` (ServiceProcess, as
the notebook starts it too); its LiteLLM backend and its pass-through; the direct path, with --workers and
with --ray. Upstreams: tests/echo_provider.py (echoes the key into its errors) and tests/hostile_server.py.

Promises here, and where the others are proven:
- no secret in any byte printed, stderr included, and no "--- Logging error ---" (here; the files written:
  tests/test_canary_secrets.py)
- a failed or unfinished answer never counted as served (here; every malformed answer on both paths:
  tests/test_hostile.py)
- no request outlives its budget: a JSON /chat whose client left stops reading its upstream (here); the
  client's budget: tests/test_budget.py; the pass-through's total limit: tests/test_hostile.py (endless)
- 429 waits as precise as the provider says: tests/test_hostile.py (ratelimit), benchmarks/bench_ratelimit.py
- nothing lost or counted twice on kill + resume: tests/test_resume.py, tests/test_hardening.py
"""
from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from echo_provider import EchoProvider
from hostile_server import HostileServer

from wattbench.client.service_process import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary5p9w"
SECRETS = {name: f"{CANARY}-{name.lower()}" for name in (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "WATTBENCH_API_BASE_KEY", "LANGFUSE_SECRET_KEY", "NGROK_AUTHTOKEN")}
STARTS = ["uvicorn app:app", "wattbench serve", "wattbench run"]
BACKENDS = {"litellm": "0", "passthrough": "1"}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def service(start: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """The service started as `start`, its stdout and stderr in `log`; yields its URL."""
    full_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env}
    full_env.pop("WATTBENCH_API_TOKEN", None)
    if start == "wattbench run":  # what `wattbench run` (and the notebook) start
        with ServiceProcess(env=full_env, log_path=log) as process:
            yield process.url
        return
    port = _free_port()
    argv = ([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
            if start == "uvicorn app:app" else
            [sys.executable, "-m", "wattbench", "serve", "--host", "127.0.0.1", "--port", str(port)])
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise AssertionError(f"{start} did not start: {log.read_text()[-2000:]}")
            yield url
        finally:
            process.terminate()
            process.wait(30)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("start", STARTS)
def test_no_secret_and_no_logging_error_in_what_the_service_prints(start: str, backend: str,
                                                                  tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with EchoProvider(slow_s=1.0) as provider:
        env = {**SECRETS, "WATTBENCH_API_BASE": provider.url, "WATTBENCH_MODEL": "openai/echo",
               "WATTBENCH_PASSTHROUGH": BACKENDS[backend], "WATTBENCH_REQUEST_TIMEOUT_S": "0.5"}
        with service(start, env, log) as url:
            statuses = [httpx.post(f"{url}/chat", json={"prompt": prompt}, timeout=30).status_code
                        for prompt in ("fail 401 please", "fail 500 please", "fail drop please", "Hi there")]
    printed = log.read_text(errors="replace")
    assert statuses[0] == 502 and statuses[-1] == 200, statuses
    assert "POST /chat HTTP/1.1" in printed or start == "wattbench run"  # the access log did print
    assert CANARY not in printed
    assert "--- Logging error ---" not in printed and "Traceback" not in printed, printed[-3000:]


def _run(argv: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, str]], str]:
    done = subprocess.run([sys.executable, "-m", "wattbench", "run", *argv, "--out", str(out), "--warmup", "0",
                           "--no-progress", "--no-report", "--profiles", "T4_COLAB", "--timeout", "2",
                           "--max-attempts", "2"],
                          cwd=REPO_ROOT, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)
    rows = list(csv.DictReader(next(out.glob("ai_metrics_*.csv")).open())) if any(out.glob("*.csv")) else []
    return done.returncode, rows, done.stderr


UNFINISHED = ["cut", "reset", "json", "html", "usage_huge", "usage_negative", "not_object", "error_event"]
PATHS = {
    "direct": ["--concurrency", "4"],
    "direct --workers 2": ["--concurrency", "4", "--workers", "2"],
    "direct --ray": ["--concurrency", "4", "--ray"],
    "service (pass-through)": ["--concurrency", "4"],
    "service (LiteLLM)": ["--concurrency", "4"],
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_failed_or_unfinished_answer_is_never_counted_as_served(path: str, tmp_path: Path) -> None:
    if path.endswith("--ray"):
        pytest.importorskip("ray")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "{n}", "prompt": "hostile:{n}"}}\n' for n in ["ok", *UNFINISHED]))
    with HostileServer() as server:
        if path.startswith("direct"):
            code, rows, stderr = _run(["--base-url", server.url, "--model", "hostile", "--prompts", str(prompts),
                                       *PATHS[path]], tmp_path / "out")
        else:
            env = {"WATTBENCH_API_BASE": server.url, "WATTBENCH_MODEL": "openai/hostile",
                   "WATTBENCH_PASSTHROUGH": "1" if "pass-through" in path else "0"}
            code, rows, stderr = _run(["--prompts", str(prompts), *PATHS[path]], tmp_path / "out", env)
    assert code == 1, stderr[-3000:]  # some failed: by design
    served = {row["request_id"] for row in rows if row["success"] == "True"}
    assert served == {"ok-r0"}, (rows, stderr[-3000:])
    assert {row["request_id"] for row in rows} == {f"{n}-r0" for n in ["ok", *UNFINISHED]}
    assert "Traceback" not in stderr


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_json_chat_stops_reading_its_upstream_when_its_client_leaves(backend: str, tmp_path: Path) -> None:
    with HostileServer() as server:
        env = {"WATTBENCH_API_BASE": server.url, "WATTBENCH_MODEL": "openai/hostile",
               "WATTBENCH_PASSTHROUGH": BACKENDS[backend], "WATTBENCH_REQUEST_TIMEOUT_S": "30"}
        with service("uvicorn app:app", env, tmp_path / "service.log") as url:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/chat", json={"prompt": "hostile:slow_drip"}, timeout=1.0)
            deadline = time.monotonic() + 10  # a bound on waiting, not a timing assertion
            while server.streaming and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.hits["slow_drip"] >= 1
            assert server.streaming == 0  # before the fix: read for the 90 s deadline, 30 s per drip-read
