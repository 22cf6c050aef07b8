"""`wattbench serve`: the service under uvicorn (one `error:` line for a bad or busy port)."""

from __future__ import annotations

import socket

from wattbench.cli_support import CliError, Parser, fail
from wattbench.config import ConfigError, get_settings

#: Seconds an idle keep-alive connection stays open. Well above clients' own expiry (httpx: 5 s), so a client
#: never reuses a connection the server is closing at that very moment (uvicorn's default is 5 s: a race).
KEEP_ALIVE_S = 75


def cli_serve(argv: list[str]) -> int:
    """`wattbench serve [--host H] [--port P]`: run the service under uvicorn."""
    parser = Parser(prog="wattbench serve", description="Run the wattbench service.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    try:
        args = parser.parse_args(argv)
        try:
            get_settings()
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        if not 0 < args.port < 65536:
            raise CliError(f"--port must be 1-65535, got {args.port}")
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            try:
                probe.bind((args.host, args.port))
            except OSError as exc:  # before loading the model, not after
                raise CliError(
                    f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port"
                ) from None
    except CliError as exc:
        return fail(str(exc))
    import uvicorn

    uvicorn.run("wattbench.service.app:app", host=args.host, port=args.port, log_level=args.log_level,
                timeout_keep_alive=KEEP_ALIVE_S)
    return 0
