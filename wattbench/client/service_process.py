"""Run the wattbench service (app.py under uvicorn) as a child process on 127.0.0.1.

    with ServiceProcess() as service:          # a free port; waits until GET /health answers
        BatchProcessor(ServiceTransport(service.url), ...)

The child runs in its own process group; stop() sends SIGTERM to the group, then SIGKILL after a grace period,
and an atexit hook stops anything still running. A parent that dies without running any of that (SIGKILL, a
crash) takes the child with it: on Linux the kernel sends the child SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG, set between fork and exec). So no orphan is left behind. Used by `wattbench run` and
the notebook.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any


class ServiceStartError(RuntimeError):
    """The service did not come up; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServiceProcess:
    """`python -m uvicorn <app>` as a subprocess (default: the installed wattbench.service.app:app; `app_dir`, when
    given, is put first on the import path and is the child's working directory).

    host/port: where it listens (port None: a free one). env: variables added to this process's environment.
    log_path: where its stdout+stderr go (default: a temporary file). startup_timeout_s: how long to wait for
    GET /health to answer 200. app: the ASGI app as "module:attribute". stop_grace_s: time between SIGTERM and
    SIGKILL. Start it from a thread that lives as long as the service (the main thread): the parent-death signal
    follows the thread that started the child.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 120.0,
        *,
        app: str = "wattbench.service.app:app",
        app_dir: str | os.PathLike[str] | None = None,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.app = app
        self.app_dir = Path(app_dir) if app_dir is not None else None
        self.stop_grace_s = stop_grace_s
        self.process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError(
                "the service is not started: call start() or use `with ServiceProcess() as s:`"
            )
        return self._url

    #: Seconds uvicorn keeps an idle keep-alive connection (above httpx's 5 s expiry: no reuse-while-closing race).
    keep_alive_s: int = 75

    def command(self) -> list[str]:
        """The command line of the child."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            str(self.keep_alive_s),
            *(["--app-dir", str(self.app_dir)] if self.app_dir is not None else []),
        ]

    def start(self) -> ServiceProcess:
        """Start the child and wait until GET /health answers 200; raise ServiceStartError otherwise."""
        if self.process is not None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        self._url = f"http://{self.host}:{self.port}"
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="wattbench-service-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.app_dir,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        atexit.register(self.stop)
        try:
            self._wait_healthy()
        except ServiceStartError:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout_s
        last_problem = "no answer yet"
        assert self.process is not None
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise self._start_error(f"the service exited with code {code} before answering /health")
            try:
                resp = httpx.get(f"{self.url}/health", timeout=2.0)
                if resp.status_code == 200:
                    return
                last_problem = f"GET /health answered HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last_problem = f"{type(exc).__name__}"
            time.sleep(0.1)
        raise self._start_error(
            f"the service did not answer GET /health within {self.startup_timeout_s:g} s ({last_problem})"
        )

    def _start_error(self, reason: str) -> ServiceStartError:
        assert self.log_path is not None
        tail = log_tail(self.log_path)
        return ServiceStartError(
            f"{reason}; log {self.log_path}" + (f", last lines:\n{tail}" if tail else "")
        )

    def stop(self) -> int | None:
        """Stop the child and its process group: SIGTERM, then SIGKILL after stop_grace_s. Returns its exit
        code."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            code = process.poll()
            if code is None:
                code = self._terminate(process)
            atexit.unregister(self.stop)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code

    def _terminate(self, process: subprocess.Popen[bytes]) -> int:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            code = process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            code = process.wait()
        _signal_group(process.pid, signal.SIGKILL)  # anything the child left in its group
        return code

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Any:
    """A preexec_fn (runs in the child between fork and exec) that makes the kernel SIGKILL the child when the
    parent dies; None where prctl is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session=True: the group id is the child's pid
    except ProcessLookupError:
        return  # already gone
