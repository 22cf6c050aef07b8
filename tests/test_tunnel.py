"""tunnel.py against a stand-in ngrok agent: a small script that speaks ngrok's startup log (logfmt on
stdout) and its local agent API on 127.0.0.1, the two things pyngrok reads. No network is used."""
from __future__ import annotations

import logging
import stat
import sys
import textwrap
from pathlib import Path

import pytest

import tunnel

GOOD_TOKEN = "2good_fake_ngrok_token_0123456789"
BAD_TOKEN = "2bad_fake_ngrok_token_9876543210"
PUBLIC_URL = "https://wattbench-test.ngrok-free.app"

# The agent's behaviour follows ngrok v3: `ngrok start --none --log stdout --authtoken T` logs
# "starting web service ... addr=", "tunnel session started", "client session established", then serves
# /api/endpoints; a rejected token logs lvl=eror with err="authentication failed ... Your authtoken: T"
# (ERR_NGROK_105) and exits 1.
FAKE_NGROK = textwrap.dedent(
    f"""\
    #!{sys.executable}
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    args = sys.argv[1:]
    token = args[args.index("--authtoken") + 1] if "--authtoken" in args else ""
    if token == "OFFLINE":  # ngrok with no route to its servers: serves its API, retries and logs errors
        print('t=2026-01-01T00:00:00+0000 lvl=info msg="starting web service" obj=web addr=127.0.0.1:9', flush=True)
        for _ in range(600):
            print('t=2026-01-01T00:00:00+0000 lvl=eror msg="failed to reconnect session" obj=csess id=1 '
                  'err="failed to dial ngrok server with address connect.ngrok-agent.com:443: '
                  'dial tcp: lookup connect.ngrok-agent.com: no such host"', flush=True)
            time.sleep(0.1)
        sys.exit(0)
    if token != {GOOD_TOKEN!r}:
        print('t=2026-01-01T00:00:00+0000 lvl=eror msg="failed to reconnect session" obj=csess id=1 '
              'err="authentication failed: The authtoken you specified does not look like a proper ngrok '
              'tunnel authtoken.\\\\nYour authtoken: ' + token + '\\\\n\\\\nERR_NGROK_105\\\\n"', flush=True)
        sys.exit(1)

    class Api(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {{"endpoints": []}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(201, {{"name": body.get("name", "t"), "public_url": {PUBLIC_URL!r},
                              "upstream": {{"url": body.get("upstream", {{}}).get("url")}}}})

        def do_DELETE(self):
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    port = server.server_address[1]
    print(f't=2026-01-01T00:00:00+0000 lvl=info msg="starting web service" obj=web addr=127.0.0.1:{{port}}',
          flush=True)
    print('t=2026-01-01T00:00:00+0000 lvl=info msg="tunnel session started" obj=tunnels.session', flush=True)
    print('t=2026-01-01T00:00:00+0000 lvl=info msg="client session established" obj=csess id=1', flush=True)
    server.serve_forever()
    """
)


@pytest.fixture()
def fake_ngrok(tmp_path: Path) -> dict[str, str]:
    """Paths of the stand-in agent and of an ngrok config file in tmp_path."""
    path = tmp_path / "ngrok"
    path.write_text(FAKE_NGROK)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "ngrok.yml"
    config.write_text("version: '3'\n")
    return {"ngrok_path": str(path), "config_path": str(config)}


def test_no_token_prints_one_line_and_returns_none() -> None:
    lines: list[str] = []
    assert tunnel.open_tunnel(8123, None, echo=lines.append) is None
    assert lines == ["tunnel: NGROK_AUTHTOKEN is not set, so no public URL; the service stays at http://127.0.0.1:8123"]


def test_blank_secret_counts_as_no_token() -> None:
    from pydantic import SecretStr

    lines: list[str] = []
    assert tunnel.open_tunnel(8123, SecretStr("  "), echo=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("tunnel: NGROK_AUTHTOKEN is not set")


def test_good_token_returns_public_url_and_close_stops_agent(fake_ngrok: dict[str, str]) -> None:
    from pydantic import SecretStr
    from pyngrok import process

    lines: list[str] = []
    url = tunnel.open_tunnel(8123, SecretStr(GOOD_TOKEN), echo=lines.append, **fake_ngrok)
    try:
        assert url == PUBLIC_URL
        assert lines == [
            f"tunnel: {PUBLIC_URL} -> http://127.0.0.1:8123 "
            "(requests need 'Authorization: Bearer <WATTBENCH_API_TOKEN>')"
        ]
        assert process.is_process_running(fake_ngrok["ngrok_path"])
    finally:
        tunnel.close_tunnel(url, ngrok_path=fake_ngrok["ngrok_path"])
    assert not process.is_process_running(fake_ngrok["ngrok_path"])


def test_rejected_token_costs_one_line_without_the_token(
    fake_ngrok: dict[str, str], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    assert tunnel.open_tunnel(8124, BAD_TOKEN, echo=lines.append, **fake_ngrok) is None
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
    assert tunnel.open_tunnel(8125, "OFFLINE", deadline_s=0.5, echo=lines.append, **fake_ngrok) is None
    assert lines == [
        "tunnel: not opened, ngrok could not start: failed to dial ngrok server with address "
        "connect.ngrok-agent.com:443: dial tcp: lookup connect.ngrok-agent.com: no such host; "
        "the service stays at http://127.0.0.1:8125"
    ]
    assert not process.is_process_running(fake_ngrok["ngrok_path"])


NO_NETWORK_SCRIPT = """
import sys, tunnel
url = tunnel.open_tunnel(8126, sys.argv[1], ngrok_path=sys.argv[2], config_path=sys.argv[3])
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
        [sys.executable, "-c", NO_NETWORK_SCRIPT, BAD_TOKEN, fake_ngrok["ngrok_path"], fake_ngrok["config_path"]],
        cwd=Path(tunnel.__file__).parent, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("tunnel: not opened, ngrok could not start: authentication failed:")
    assert BAD_TOKEN not in done.stdout
