"""ServiceProcess: a real uvicorn child process on a free 127.0.0.1 port, stopped without orphans."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx
import pytest

from wattbench.client.service_process import ServiceProcess, ServiceStartError

# A tiny ASGI app (no framework): /health answers 200, and at import it may start a grandchild that ignores
# SIGTERM (an orphan candidate) and writes its pid to a file.
TINY_APP = textwrap.dedent("""
    import os, subprocess, sys
    HEALTH_STATUS = int(os.environ.get("TINY_HEALTH_STATUS", "200"))
    if os.environ.get("TINY_CRASH"):
        raise RuntimeError("tiny app refuses to start: TINY_CRASH is set")
    if os.environ.get("TINY_GRANDCHILD_PID_FILE"):
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        open(os.environ["TINY_GRANDCHILD_PID_FILE"], "w").write(str(child.pid))

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        code = HEALTH_STATUS if scope["path"] == "/health" else 404
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status": "ok"}'})
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.py").write_text(TINY_APP)
    return tmp_path


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_starts_on_a_free_port_answers_and_stops(app_dir: Path) -> None:
    with ServiceProcess(app="tiny:app", app_dir=app_dir, log_path=app_dir / "service.log") as service:
        assert service.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{service.url}/health").json() == {"status": "ok"}
        pid = service.process.pid
    assert service.process is None
    assert not alive(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/health")


def test_stop_leaves_no_orphan_in_the_process_group(app_dir: Path) -> None:
    pid_file = app_dir / "grandchild.pid"
    service = ServiceProcess(
        app="tiny:app", app_dir=app_dir, env={"TINY_GRANDCHILD_PID_FILE": str(pid_file)}, stop_grace_s=1.0
    ).start()
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)
    service.stop()
    deadline = time.monotonic() + 2.0  # SIGKILL was sent to the group; its delivery is asynchronous
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(grandchild)


def test_a_crashing_app_raises_with_the_log_tail(app_dir: Path) -> None:
    service = ServiceProcess(
        app="tiny:app", app_dir=app_dir, env={"TINY_CRASH": "1"}, log_path=app_dir / "crash.log"
    )
    with pytest.raises(ServiceStartError) as info:
        service.start()
    message = str(info.value)
    assert message.startswith(
        f"the service exited with code 1 before answering /health; log {app_dir}/crash.log, last lines:\n"
    )
    assert message.endswith("RuntimeError: tiny app refuses to start: TINY_CRASH is set")
    assert service.process is None


def test_health_that_never_answers_200_hits_the_deadline(app_dir: Path) -> None:
    service = ServiceProcess(
        app="tiny:app",
        app_dir=app_dir,
        env={"TINY_HEALTH_STATUS": "503"},
        log_path=app_dir / "s.log",
        startup_timeout_s=1.0,
    )
    with pytest.raises(ServiceStartError) as info:
        service.start()
    assert str(info.value) == (
        f"the service did not answer GET /health within 1 s (GET /health answered "
        f"HTTP 503); log {app_dir}/s.log"
    )
    assert service.process is None


def test_url_before_start_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"the service is not started: call start\(\)"):
        _ = ServiceProcess().url


@pytest.mark.slow
def test_the_real_app_starts_and_stops(tmp_path: Path) -> None:
    with ServiceProcess(log_path=tmp_path / "app.log", startup_timeout_s=180) as service:
        health = httpx.get(f"{service.url}/health").json()
        pid = service.process.pid
    assert health["status"] in ("ok", "degraded") and "model" in health
    assert not alive(pid)
