"""Offline start-up: the service (and so the notebook and the CLI) loads LiteLLM's bundled price map unless
WATTBENCH_REMOTE_PRICE_MAP asks for the remote one. A fresh interpreter imports app.py the way `uvicorn app:app`
does, with LiteLLM's remote map URL pointed at a server on 127.0.0.1 that counts its visitors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wattbench.config import use_bundled_price_map

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import app, litellm; from wattbench.config import get_settings; "
         "print(litellm.model_cost['gemini/gemini-2.5-flash']['deprecation_date'], get_settings().default_model())")


def test_the_bundled_map_unless_the_remote_one_is_asked_for() -> None:
    env: dict[str, str] = {}
    assert use_bundled_price_map(env) is True and env == {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env = {"WATTBENCH_REMOTE_PRICE_MAP": "1"}
    assert use_bundled_price_map(env) is False and env == {"WATTBENCH_REMOTE_PRICE_MAP": "1"}
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "False"}  # the user's own LiteLLM setting stays
    assert use_bundled_price_map(env) is False and env == {"LITELLM_LOCAL_MODEL_COST_MAP": "False"}


@pytest.fixture
def map_server() -> Iterator[tuple[str, list[str]]]:
    """A price-map server: LiteLLM's bundled map with the seed's model deprecated on 2000-01-01 and a
    gemini-99.1-flash no real map has; yields (url, the paths asked for)."""
    import litellm

    bundled = Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json"
    data = json.loads(bundled.read_text(encoding="utf-8"))
    data["gemini/gemini-2.5-flash"]["deprecation_date"] = "2000-01-01"
    data["gemini/gemini-99.1-flash"] = dict(data["gemini/gemini-2.5-flash"], deprecation_date=None)
    body = json.dumps(data).encode()
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/map.json", asked
    server.shutdown()
    server.server_close()


def _start(url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "WATTBENCH_MODEL", "WATTBENCH_REMOTE_PRICE_MAP")}
    env.update(PYTHONPATH=str(ROOT), LITELLM_MODEL_COST_MAP_URL=url, GEMINI_API_KEY="AIza-test-key", **extra)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_importing_the_service_asks_no_network_for_prices(map_server: tuple[str, list[str]]) -> None:
    url, asked = map_server
    done = _start(url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert asked == []
    assert "cost map" not in done.stderr.lower() and "AIza-test-key" not in done.stdout + done.stderr
    # the bundled map's own date for the seed's model (the installed LiteLLM's)
    assert done.stdout.split()[0] == "2026-12-01"


@pytest.mark.slow
def test_the_remote_map_when_asked_for_and_its_dates_choose_the_default(
        map_server: tuple[str, list[str]]) -> None:
    url, asked = map_server
    done = _start(url, WATTBENCH_REMOTE_PRICE_MAP="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert asked == ["/map.json"]
    assert done.stdout.split() == ["2000-01-01", "gemini/gemini-99.1-flash"]
