"""A stand-in ngrok agent for tests: a script that speaks ngrok's startup log (logfmt on stdout) and its local
agent API on 127.0.0.1, the two things pyngrok reads. No network is used.

Token GOOD_TOKEN: the agent comes up and every tunnel gets PUBLIC_URL. Token "OFFLINE": it logs connection
errors forever, as ngrok does with no route to its servers. Any other token: rejected as ngrok v3 does
(ERR_NGROK_105, quoting the token), exit 1.
"""
from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

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
    if token == "OFFLINE":  # ngrok with no route to its servers: it retries and logs errors, never exits
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




def write_fake_ngrok(directory: Path) -> dict[str, str]:
    """Write the agent (and an ngrok config file) into `directory`; {"ngrok_path", "config_path"}."""
    path = directory / "ngrok"
    path.write_text(FAKE_NGROK)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    config = directory / "ngrok.yml"
    config.write_text("version: '3'\n")
    return {"ngrok_path": str(path), "config_path": str(config)}
