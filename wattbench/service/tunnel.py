"""A public URL for the local service through ngrok (pyngrok), or one clear line saying why not.

`open_tunnel(port, authtoken)` returns the public https URL, or None after printing one line: no token,
the ngrok agent could not be downloaded (no network), the token was rejected, or the agent did not come up
within its deadline. It never raises for those and never prints the token (ngrok's own error text quotes
it; it is redacted from everything this module prints or lets pyngrok log).

A public /chat without auth lets anyone spend your quota: before starting a service that a tunnel will
expose, call `ensure_api_token()` so that the service requires `Authorization: Bearer <WATTBENCH_API_TOKEN>`;
`open_tunnel` refuses a service whose /health does not say `auth_required: true`.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

#: Seconds allowed for downloading the ngrok agent on first use (urllib timeout per read).
NGROK_DOWNLOAD_TIMEOUT_S = 10.0
#: Seconds allowed for the whole tunnel (download + agent start + tunnel creation) before giving up.
TUNNEL_DEADLINE_S = 30.0
#: Environment variable the service reads its bearer token from (config.Settings.api_token).
API_TOKEN_ENV = "WATTBENCH_API_TOKEN"
#: Seconds allowed for the service's GET /health when checking that it requires a token.
HEALTH_TIMEOUT_S = 5.0
#: Extra seconds before giving up on an agent that stopped logging altogether.
BACKSTOP_MARGIN_S = 5.0
#: Longest reason quoted in the one-line message.
MAX_REASON_CHARS = 320

Echo = Callable[[str], None]


@dataclass
class _Attempt:
    url: str | None = None
    error: str | None = None


class _RedactFilter(logging.Filter):
    """Replaces a secret in log records with '***' (ngrok's error lines quote the authtoken)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._secret in message:
            record.msg, record.args = message.replace(self._secret, "***"), ()
        if record.exc_info and not record.exc_text:
            # a formatter prints exc_text when set: format the traceback now, redacted
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self._secret in record.exc_text:
            record.exc_text = record.exc_text.replace(self._secret, "***")
        return True


def _secret_value(secret: Any) -> str:
    """The plain value of a SecretStr, str or None ('' when unset)."""
    if secret is None:
        return ""
    getter = getattr(secret, "get_secret_value", None)
    return str(getter() if getter is not None else secret).strip()


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced by '***'."""
    return text.replace(secret, "***") if secret else text


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Collapse whitespace (ngrok errors span lines, some as literal '\\n') and cut to `limit` chars."""
    flat = " ".join(text.replace("\\r", " ").replace("\\n", " ").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def ensure_api_token(environ: MutableMapping[str, str] | None = None) -> tuple[str, bool]:
    """The service's bearer token from WATTBENCH_API_TOKEN, generating and setting one when unset.

    Returns (token, generated). Call it before starting a service that a tunnel will expose.
    """
    env = os.environ if environ is None else environ
    token = env.get(API_TOKEN_ENV, "").strip()
    if token:
        return token, False
    token = secrets.token_urlsafe(32)
    env[API_TOKEN_ENV] = token
    return token, True


def _quiet_unconfigured_logging() -> None:
    """Give pyngrok's loggers a NullHandler, as a library should have: with no logging configured, Python
    would otherwise print every agent error line to stderr (the caller gets one line instead)."""
    pyngrok_logger = logging.getLogger("pyngrok")
    if not any(isinstance(handler, logging.NullHandler) for handler in pyngrok_logger.handlers):
        pyngrok_logger.addHandler(logging.NullHandler())


def service_requires_auth(port: int, timeout_s: float = HEALTH_TIMEOUT_S) -> bool | None:
    """What GET http://127.0.0.1:`port`/health says in `auth_required`; None when it cannot be read."""
    import httpx

    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=timeout_s, trust_env=False)
        value = response.json().get("auth_required") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def _pyngrok_config(authtoken: str, ngrok_path: str | None, config_path: str | None, startup_s: float) -> Any:
    from pyngrok import conf

    return conf.PyngrokConfig(
        ngrok_path=ngrok_path,
        config_path=config_path,
        auth_token=authtoken,
        monitor_thread=False,
        startup_timeout=startup_s,  # type: ignore[arg-type]  # pyngrok compares it with time.time() sums
    )


def _connect(port: int, pyngrok_config: Any, download_timeout_s: float, attempt: _Attempt) -> None:
    """Install the agent if missing, start it and open an http tunnel; the outcome goes into `attempt`."""
    from pyngrok import installer, ngrok
    from pyngrok.exception import PyngrokError, PyngrokNgrokInstallError

    try:
        if not os.path.exists(pyngrok_config.ngrok_path):
            # pyngrok draws a progress bar on stdout; keep the notebook to our one line.
            with contextlib.redirect_stdout(io.StringIO()):
                installer.install_ngrok(
                    pyngrok_config.ngrok_path,
                    ngrok_version=pyngrok_config.ngrok_version,
                    timeout=download_timeout_s,
                )
        attempt.url = ngrok.connect(str(port), "http", pyngrok_config=pyngrok_config).public_url
    except PyngrokNgrokInstallError as exc:
        attempt.error = f"could not download the ngrok agent, no network? ({exc})"
    except PyngrokError as exc:
        reason = getattr(exc, "ngrok_error", None) or str(exc)
        attempt.error = f"ngrok could not start: {reason}"
    except OSError as exc:
        attempt.error = f"could not run the ngrok agent: {exc}"


def open_tunnel(
    port: int,
    authtoken: Any,
    *,
    ngrok_path: str | None = None,
    config_path: str | None = None,
    deadline_s: float = TUNNEL_DEADLINE_S,
    download_timeout_s: float = NGROK_DOWNLOAD_TIMEOUT_S,
    require_auth: bool = True,
    echo: Echo = print,
) -> str | None:
    """Open an ngrok http tunnel to 127.0.0.1:`port`; the public URL, or None after one `echo`ed line.

    `authtoken` is a str, a pydantic SecretStr or None. With `require_auth` (the default) the service's
    /health must say `auth_required: true`, else no tunnel is opened. `ngrok_path` / `config_path` default to
    pyngrok's (~/.config/ngrok); the agent is downloaded there on first use (each read bounded by
    `download_timeout_s`). The agent gets `deadline_s` to connect (offline it keeps retrying and is stopped).
    """
    local = f"http://127.0.0.1:{port}"
    token = _secret_value(authtoken)
    if not token:
        echo(f"tunnel: NGROK_AUTHTOKEN is not set, so no public URL; the service stays at {local}")
        return None
    if require_auth:
        auth = service_requires_auth(port)
        if auth is not True:
            why = "could not read its /health" if auth is None else "it does not require a token"
            echo(f"tunnel: not opened, the service at {local} would be public but {why}; set "
                 f"{API_TOKEN_ENV} (tunnel.ensure_api_token()) before starting it")
            return None

    pyngrok_config = _pyngrok_config(token, ngrok_path, config_path, deadline_s)
    _quiet_unconfigured_logging()
    redacting = _RedactFilter(token)
    loggers = [logging.getLogger(name) for name in ("pyngrok", "pyngrok.process", "pyngrok.process.ngrok")]
    for log in loggers:
        log.addFilter(redacting)
    attempt = _Attempt()
    worker = threading.Thread(
        target=_connect, args=(port, pyngrok_config, download_timeout_s, attempt), daemon=True, name="ngrok"
    )
    backstop_s = deadline_s + download_timeout_s + BACKSTOP_MARGIN_S
    try:
        worker.start()
        # pyngrok enforces deadline_s itself while the agent logs; the backstop covers an agent that
        # goes silent (pyngrok's own atexit hook then ends it).
        worker.join(backstop_s)
        if worker.is_alive():
            attempt.error = f"the ngrok agent did not answer within {backstop_s:g} s"
    finally:
        if not worker.is_alive():  # a worker still running may yet log the token: keep redacting then
            for log in loggers:
                log.removeFilter(redacting)

    if attempt.url is None:
        reason = one_line(redact(attempt.error or "ngrok returned no public URL", token))
        echo(f"tunnel: not opened, {reason}; the service stays at {local}")
        return None
    echo(f"tunnel: {attempt.url} -> {local} (requests need 'Authorization: Bearer <{API_TOKEN_ENV}>')")
    return attempt.url


def close_tunnel(public_url: str | None = None, *, ngrok_path: str | None = None) -> None:
    """Close `public_url` (if given) and stop the ngrok agent that pyngrok started for `ngrok_path`."""
    from pyngrok import conf, ngrok
    from pyngrok.exception import PyngrokError

    pyngrok_config = conf.PyngrokConfig(ngrok_path=ngrok_path, monitor_thread=False)
    if public_url is not None:
        try:
            ngrok.disconnect(public_url, pyngrok_config=pyngrok_config)
        except PyngrokError as exc:
            logging.getLogger(__name__).warning("tunnel: could not close %s: %s", public_url, exc)
    ngrok.kill(pyngrok_config=pyngrok_config)
