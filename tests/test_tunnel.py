"""tunnel.py against a stand-in ngrok agent (tests/fake_ngrok.py): no network is used."""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_ngrok import BAD_TOKEN, GOOD_TOKEN, PUBLIC_URL, write_fake_ngrok

from wattbench.service import tunnel


@pytest.fixture()
def fake_ngrok(tmp_path: Path) -> dict[str, str]:
    """Paths of the stand-in agent and of an ngrok config file in tmp_path."""
    return write_fake_ngrok(tmp_path)


@contextmanager
def health_server(body: bytes) -> Iterator[int]:
    """A /health on 127.0.0.1 that answers `body` (JSON); yields its port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_no_token_prints_one_line_and_returns_none() -> None:
    lines: list[str] = []
    assert tunnel.open_tunnel(8123, None, echo=lines.append) is None
    assert lines == [
        "tunnel: NGROK_AUTHTOKEN is not set, so no public URL; the service stays at http://127.0.0.1:8123"
    ]


def test_blank_secret_counts_as_no_token() -> None:
    from pydantic import SecretStr

    lines: list[str] = []
    assert tunnel.open_tunnel(8123, SecretStr("  "), echo=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("tunnel: NGROK_AUTHTOKEN is not set")


def test_good_token_returns_public_url_and_close_stops_agent(fake_ngrok: dict[str, str]) -> None:
    from pydantic import SecretStr
    from pyngrok import process

    lines: list[str] = []
    with health_server(b'{"status": "ok", "auth_required": true}') as port:
        url = tunnel.open_tunnel(port, SecretStr(GOOD_TOKEN), echo=lines.append, **fake_ngrok)
    try:
        assert url == PUBLIC_URL
        assert lines == [
            f"tunnel: {PUBLIC_URL} -> http://127.0.0.1:{port} "
            "(requests need 'Authorization: Bearer <WATTBENCH_API_TOKEN>')"
        ]
        assert process.is_process_running(fake_ngrok["ngrok_path"])
    finally:
        tunnel.close_tunnel(url, ngrok_path=fake_ngrok["ngrok_path"])
    assert not process.is_process_running(fake_ngrok["ngrok_path"])


@pytest.mark.parametrize(("body", "why"), [
    (b'{"status": "ok", "auth_required": false}', "it does not require a token"),
    (b"not json", "could not read its /health"),
])
def test_no_tunnel_to_a_service_that_does_not_require_a_token(fake_ngrok: dict[str, str], body: bytes,
                                                              why: str) -> None:
    from pyngrok import process

    lines: list[str] = []
    with health_server(body) as port:
        assert tunnel.open_tunnel(port, GOOD_TOKEN, echo=lines.append, **fake_ngrok) is None
    assert lines == [
        f"tunnel: not opened, the service at http://127.0.0.1:{port} would be public but {why}; "
        "set WATTBENCH_API_TOKEN (tunnel.ensure_api_token()) before starting it"
    ]
    assert not process.is_process_running(fake_ngrok["ngrok_path"])  # the agent was never started


def test_service_requires_auth_is_none_when_nothing_listens() -> None:
    with health_server(b"{}") as port:
        pass  # closed again: nothing listens on this port now
    assert tunnel.service_requires_auth(port, timeout_s=2) is None


def test_rejected_token_costs_one_line_without_the_token(
    fake_ngrok: dict[str, str], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    assert tunnel.open_tunnel(8124, BAD_TOKEN, require_auth=False, echo=lines.append, **fake_ngrok) is None
    assert lines == [
        "tunnel: not opened, ngrok could not start: authentication failed: The authtoken you specified does "
        "not look like a proper ngrok tunnel authtoken. Your authtoken: *** ERR_NGROK_105; the service stays "
        "at http://127.0.0.1:8124"
    ]
    # pyngrok logs every agent line; the token is redacted there too.
    assert "Your authtoken: ***" in caplog.text
    captured = capsys.readouterr()
    assert BAD_TOKEN not in caplog.text + captured.out + captured.err


def test_agent_without_network_is_stopped_at_the_deadline(fake_ngrok: dict[str, str]) -> None:
    from pyngrok import process

    lines: list[str] = []
    assert tunnel.open_tunnel(8125, "OFFLINE", deadline_s=0.5, require_auth=False, echo=lines.append,
                              **fake_ngrok) is None
    assert lines == [
        "tunnel: not opened, ngrok could not start: failed to dial ngrok server with address "
        "connect.ngrok-agent.com:443: dial tcp: lookup connect.ngrok-agent.com: no such host; "
        "the service stays at http://127.0.0.1:8125"
    ]
    assert not process.is_process_running(fake_ngrok["ngrok_path"])


NO_NETWORK_SCRIPT = """
import sys
from wattbench.service import tunnel
url = tunnel.open_tunnel(8126, sys.argv[1], ngrok_path=sys.argv[2], config_path=sys.argv[3],
                         require_auth=False)
sys.exit(0 if url is None else 1)
"""


def test_no_network_for_the_download_costs_one_line(tmp_path: Path) -> None:
    # A fresh interpreter (urllib caches its proxy settings per process) whose downloads all go to a
    # proxy on loopback port 9, which refuses connections; no ngrok agent is installed yet.
    import os
    import subprocess

    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    missing = tmp_path / "bin" / "ngrok"
    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK_SCRIPT, GOOD_TOKEN, str(missing), str(tmp_path / "ngrok.yml")],
        cwd=Path(tunnel.__file__).parent, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "tunnel: not opened, could not download the ngrok agent, no network? "
        "(An error occurred while downloading ngrok from https://"
    )
    assert lines[0].endswith("Connection refused>); the service stays at http://127.0.0.1:8126")
    assert GOOD_TOKEN not in done.stdout
    assert not missing.exists()


def test_one_line_flattens_ngrok_escapes_and_truncates() -> None:
    assert tunnel.one_line("a\\nb\r\n  c\\r\\n") == "a b c"
    assert tunnel.one_line("x" * 50, limit=10) == "xxxxxxx..."


def test_redact_replaces_every_occurrence() -> None:
    assert tunnel.redact("tok and tok", "tok") == "*** and ***"
    assert tunnel.redact("nothing", "") == "nothing"


def test_ensure_api_token_keeps_an_existing_token() -> None:
    env = {"WATTBENCH_API_TOKEN": "mine"}
    assert tunnel.ensure_api_token(env) == ("mine", False)
    assert env == {"WATTBENCH_API_TOKEN": "mine"}


def test_ensure_api_token_generates_and_sets_one() -> None:
    env: dict[str, str] = {}
    token, generated = tunnel.ensure_api_token(env)
    assert generated is True
    assert env["WATTBENCH_API_TOKEN"] == token
    assert len(token) == 43  # token_urlsafe(32): 32 random bytes in unpadded base64url
    assert tunnel.ensure_api_token(env) == (token, False)


def test_rejected_token_prints_exactly_one_line_with_logging_unconfigured(fake_ngrok: dict[str, str]) -> None:
    # A fresh interpreter with no logging set up: Python would print pyngrok's ERROR records to stderr.
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK_SCRIPT, BAD_TOKEN, *fake_ngrok.values()],
        cwd=Path(tunnel.__file__).parent, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("tunnel: not opened, ngrok could not start: authentication failed:")
    assert BAD_TOKEN not in done.stdout


def test_redact_filter_hides_the_token_in_messages_and_tracebacks():
    import io
    import logging

    from wattbench.service.tunnel import _RedactFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("wattbench.test.redact")
    logger.addHandler(handler)
    logger.addFilter(_RedactFilter("tok_SECRET_123"))
    try:
        try:
            raise RuntimeError("agent refused authtoken tok_SECRET_123")
        except RuntimeError:
            logger.exception("ngrok said %s", "bad token tok_SECRET_123")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "tok_SECRET_123" not in written
    assert "ngrok said bad token ***" in written
    assert "RuntimeError: agent refused authtoken ***" in written
