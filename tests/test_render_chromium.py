"""Real-browser check: headless Chromium opens each dashboard from disk, offline, and must find a rendered
Plotly plot and no JavaScript error, no failed load, and no request that leaves file://.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in NUL
on fds 3 and 4), so no browser-driver package and no port are needed. Run as a script to take screenshots:

    .venv/bin/python tests/test_render_chromium.py docs/screenshots [CSV]
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from wattbench.analysis.outputs import build_outputs
from wattbench.analysis.site import DASHBOARDS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PLOT_SELECTOR = ".js-plotly-plot .main-svg"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", "--mute-audio")


class BrowserError(RuntimeError):
    """Chromium did not answer as the DevTools protocol says it should."""


class PipeBrowser:
    """Headless Chromium on a DevTools pipe: open pages, collect errors and requests, take screenshots."""

    def __init__(self, chromium: str, *, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="wattbench-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _wire_fds() -> None:  # in the child, before exec: its fd 3 reads commands, fd 4 writes replies
            high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)
            os.close(high_r)
            os.close(high_w)

        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            close_fds=False, preexec_fn=_wire_fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict] = []

    def close(self) -> None:
        """Stop Chromium and remove its profile."""
        try:
            self.send("Browser.close", timeout_s=5)
        except (BrowserError, OSError):
            pass  # it may already be gone; terminate below makes sure
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        """The next JSON message from Chromium."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit {self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout_s: float | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg: dict = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str, timeout_s: float) -> dict:
        """Wait for an event of this session (one already received counts)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def open_page(self, url: str, *, width: int = 1400, height: int = 1000, settle_timeout_s: float = 15.0,
                  wait_for_plot: bool = True) -> "PageResult":
        """Load url in a new tab; wait for the load event and (wait_for_plot) for a rendered plot or the timeout."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self._events = [e for e in self._events if e.get("sessionId") != session]
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session, settle_timeout_s)
        deadline = time.monotonic() + (settle_timeout_s if wait_for_plot else 0.0)
        plots = self.evaluate(f"document.querySelectorAll({json.dumps(PLOT_SELECTOR)}).length", session)
        while not plots and time.monotonic() < deadline:
            time.sleep(0.1)
            plots = self.evaluate(f"document.querySelectorAll({json.dumps(PLOT_SELECTOR)}).length", session)
        self.evaluate("1", session)  # flush events raised during the render
        result = PageResult(url=url, session=session, target=target, plots=int(plots or 0))
        for ev in [e for e in self._events if e.get("sessionId") == session]:
            result.add_event(ev)
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return result

    def evaluate(self, expression: str, session: str) -> object:
        """The value of a JavaScript expression in the page."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return reply.get("result", {}).get("value")

    def screenshot(self, page: "PageResult", path: Path) -> Path:
        """Save a PNG of the page's viewport."""
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=page.session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close_page(self, page: "PageResult") -> None:
        """Close the page's tab."""
        self.send("Target.closeTarget", {"targetId": page.target})


class PageResult:
    """What one page did: plots rendered, JavaScript errors, failed loads and every URL requested."""

    def __init__(self, url: str, session: str, target: str, plots: int) -> None:
        self.url, self.session, self.target, self.plots = url, session, target, plots
        self.errors: list[str] = []
        self.requests: list[str] = []

    def add_event(self, ev: dict) -> None:
        """Record an error or a request from a DevTools event."""
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            desc = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.errors.append(f"exception: {desc.splitlines()[0]}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            self.errors.append(f"load failed: {params.get('errorText')}")

    @property
    def external_requests(self) -> list[str]:
        """Requested URLs that are not local files or inline data."""
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:", "blob:"))]


# ----------------------------------------------------------------------------------------------- tests

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                                   "(Debian packages chromium, chromium-driver); CI installs it")]


@pytest.fixture(scope="module")
def browser():
    b = PipeBrowser(CHROMIUM)  # type: ignore[arg-type]
    yield b
    b.close()


@pytest.fixture(scope="module", params=["fixture", "synthetic-6000-rows"])
def built(request, tmp_path_factory):
    """Outputs of the hand-made fixture (two models, a failure) and of a larger synthetic run."""
    from fixtures_frame import fixture_frame, synthetic_frame

    frame = fixture_frame() if request.param == "fixture" else synthetic_frame(6000, n_profiles=3, seed=2)
    out = tmp_path_factory.mktemp("dash")
    return build_outputs(frame, out, sources={})


def test_each_dashboard_renders_offline_without_errors(browser, built):

    assert set(built["dashboards"]) == set(DASHBOARDS)
    for name, path in built["dashboards"].items():
        page = browser.open_page(Path(path).as_uri())
        assert page.errors == [], f"{name}: {page.errors}"
        assert page.plots >= 1, f"{name}: no rendered plot ({PLOT_SELECTOR})"
        assert page.external_requests == [], f"{name} fetched {page.external_requests}"
        assert any(u.endswith("/plotly.min.js") for u in page.requests), f"{name} did not load plotly.min.js"
        browser.close_page(page)


def test_index_links_every_dashboard_file(browser, built):

    page = browser.open_page(Path(built["index"]).as_uri(), wait_for_plot=False)
    hrefs = browser.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))",
                             page.session)
    assert page.errors == []
    assert [f for f, _ in DASHBOARDS.values()] == [h for h in hrefs if h.endswith(".html")]
    browser.close_page(page)


def test_check_catches_a_missing_plotly_js(browser, built, tmp_path):
    """The same dashboard without plotly.min.js beside it: the check must see the failure."""
    src = Path(built["dashboards"]["gpu_comparison"])
    copy = tmp_path / src.name
    copy.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    page = browser.open_page(copy.as_uri(), wait_for_plot=False)
    assert page.plots == 0
    assert any("Plotly is not defined" in e for e in page.errors), page.errors
    browser.close_page(page)


def test_check_catches_a_script_error_and_a_network_fetch(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script src='https://cdn.plot.ly/plotly-3.0.0.min.js'></script>"
                   "<script>window.notAFunction();</script></body></html>", encoding="utf-8")
    page = browser.open_page(bad.as_uri(), wait_for_plot=False)
    assert page.plots == 0
    assert page.external_requests == ["https://cdn.plot.ly/plotly-3.0.0.min.js"]
    assert any("window.notAFunction is not a function" in e for e in page.errors), page.errors
    browser.close_page(page)


# ----------------------------------------------------------------------------------------------- screenshots


def take_screenshots(out_dir: Path, csv: Path | None = None) -> list[Path]:
    """Build the dashboards (from csv, or from a synthetic 2,000-row frame) and save a PNG of each."""
    from fixtures_frame import synthetic_frame

    if CHROMIUM is None:
        raise SystemExit("error: chromium is not installed")
    work = Path(tempfile.mkdtemp(prefix="wattbench-shots-"))
    source = csv if csv else synthetic_frame(2000, n_profiles=3, seed=1)
    built = build_outputs(source, work, sources={})
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    b = PipeBrowser(CHROMIUM)
    try:
        for name, path in built["dashboards"].items():
            page = b.open_page(Path(path).as_uri())
            if page.errors or not page.plots:
                raise SystemExit(f"error: {name} did not render: {page.errors}")
            time.sleep(0.5)
            shots.append(b.screenshot(page, out_dir / f"{Path(DASHBOARDS[name][0]).stem}.png"))
            b.close_page(page)
    finally:
        b.close()
        shutil.rmtree(work, ignore_errors=True)
    return shots


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: tests/test_render_chromium.py OUT_DIR [CSV]")
    for shot in take_screenshots(Path(args[0]), Path(args[1]) if len(args) > 1 else None):
        print(f"{shot} {shot.stat().st_size} bytes")


def test_a_two_model_comparison_renders(browser, tmp_path, capsys):
    """Two runs of two models against the mock server, compared by `wattbench report A.csv B.csv`: every
    dashboard (the frontier too) renders, and the frontier holds both models."""
    sys.path.insert(0, str(Path(__file__).parent))
    from mock_openai_server import MockOpenAIServer

    from wattbench.cli import main
    from wattbench.runs.config import RunConfig
    from wattbench.runs.run import execute

    csvs = []
    with MockOpenAIServer(ttft_s=0.002, itl_s=0.001, tokens=12) as server:
        for model in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"):
            result = execute(RunConfig(base_url=server.url, model=model, out=str(tmp_path / model.split("/")[0]),
                                       synthetic=True, input_tokens="32", output_tokens="12", num_prompts=6,
                                       concurrency=2, no_report=True, no_progress=True, gpu_energy="off",
                                       profiles="A100_SIMULATED,T4_COLAB", energy_batch="achieved"))
            csvs.append(str(result.csv_path))
    out = tmp_path / "comparison"
    assert main(["report", *csvs, "--out", str(out)]) == 0
    assert "CHEAPEST meeting the SLOs" in capsys.readouterr().out
    for filename, _ in DASHBOARDS.values():
        page = browser.open_page((out / filename).as_uri())
        assert page.errors == [] and page.plots >= 1 and page.external_requests == [], filename
        if filename == "frontier_analysis.html":
            names = browser.evaluate("Array.from(document.querySelectorAll('.legendtext')).map(e => e.textContent)",
                                     page.session)
            assert {"Llama-3.1-8B-Instruct | A100_SIMULATED", "Qwen2.5-7B-Instruct | T4_COLAB"} <= set(names), names
        browser.close_page(page)
