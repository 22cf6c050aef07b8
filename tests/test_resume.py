"""Nothing lost: `wattbench run` killed with SIGKILL in the middle, then `--resume`, sends only what is
missing, and the CSV has every request exactly once. A real subprocess against a stub server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from stub_servers import ChatStub, slow

from wattbench.runs.store import RunStore

REPO_ROOT = Path(__file__).resolve().parents[1]
N_PROMPTS, REPEATS = 6, 2


def run_cmd(url: str, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wattbench",
        "run",
        "--server-url",
        url,
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--profiles",
        "T4_COLAB",
        "--no-report",
        "--no-progress",
        *extra,
    ]


def keys_sent(stub: ChatStub, since: int = 0) -> list[str]:
    """The request keys of the measured /chat requests the stub received (warm-ups left out)."""
    ids = [r.headers["x-wattbench-request"].split("/", 1)[1] for r in stub.chat_requests()[since:]]
    return [i for i in ids if not i.startswith("warmup-")]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(f'{{"id": "q{i}", "prompt": "question {i}"}}\n' for i in range(N_PROMPTS)))
    return path


def test_sigkill_then_resume_sends_only_what_is_missing(tmp_path: Path, prompts: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("WATTBENCH_API_TOKEN", None)
    all_keys = {f"q{i}-r{r}" for r in range(REPEATS) for i in range(N_PROMPTS)}
    with ChatStub(lambda i, body: slow(0.15)) as stub:
        child = subprocess.Popen(
            run_cmd(stub.url, prompts, out, "--repeats", str(REPEATS)),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        run_file = None
        while time.monotonic() < deadline and child.poll() is None:
            run_file = next(out.glob("runs/*/requests.jsonl"), None)
            if run_file is not None and run_file.read_text().count("\n") >= 4:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.communicate()[0].decode()  # still running: kill it mid-run
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert stub.wait_idle()  # the answer it was writing when the client died is logged
        store = RunStore(run_file.parent)
        saved = {r["key"] for r in store.load_records()}
        assert 4 <= len(saved) < len(all_keys)
        before = len(stub.chat_requests())

        resumed = subprocess.run(
            run_cmd(stub.url, prompts, out, "--resume"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sent_again = keys_sent(stub, since=before)

    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"run {store.run_id}: sending {len(all_keys) - len(saved)} of {len(all_keys)} requests"
        in resumed.stdout
    )
    assert sorted(sent_again) == sorted(all_keys - saved)  # only the missing, each once
    df = pd.read_csv(next(out.glob("ai_metrics_*.csv")))
    assert sorted(df["request_id"]) == sorted(all_keys)  # every request exactly once (one profile)
    assert df["success"].all() and set(df["run_id"]) == {store.run_id}
    assert df["session"].nunique() == 2


def test_resume_refuses_other_options(tmp_path: Path, prompts: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("WATTBENCH_API_TOKEN", None)
    with ChatStub() as stub:
        first = subprocess.run(
            run_cmd(stub.url, prompts, out, "--warmup", "0"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        sent = len(stub.chat_requests())
        again = subprocess.run(
            run_cmd(stub.url, prompts, out, "--resume", "--repeats", "3"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert len(stub.chat_requests()) == sent  # nothing sent
    [run_dir] = (out / "runs").iterdir()
    assert again.returncode == 2
    assert again.stderr == (
        f"error: cannot resume run {run_dir.name}: its repeats was 1, now 3; rerun with the "
        "run's options, or drop --resume to start a new run\n"
    )
