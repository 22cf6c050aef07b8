"""Log scrubbing (wattbench/redact.py) under the formatters the service really runs with: uvicorn's access
formatter unpacks record.args, so masking must keep their shape; and when a handler fails anyway, Python's
fallback must not print the exception being handled (a provider's message with the key) nor 60 lines."""
from __future__ import annotations

import io
import re
import logging

import pytest
from uvicorn.logging import AccessFormatter

from wattbench import redact

SECRET = "sk-canary-log-9f8e7d6c"


@pytest.fixture
def stream_logger(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    redact.install_log_scrubbing()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("wattbench.test.access")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler, out
    logger.removeHandler(handler)


def test_uvicorn_access_lines_format_and_are_masked(stream_logger, capsys: pytest.CaptureFixture[str]) -> None:
    logger, handler, out = stream_logger
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", "/chat", "1.1", 200)
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5001", "GET", f"/health?key={SECRET}", "1.1", 401)
    assert out.getvalue().splitlines() == [
        '127.0.0.1:5000 - "POST /chat HTTP/1.1" 200 OK',
        '127.0.0.1:5001 - "GET /health?key=*** HTTP/1.1" 401 Unauthorized',
    ]
    assert capsys.readouterr().err == ""  # no "--- Logging error ---"


def test_a_secret_in_an_argument_of_any_type_is_masked(stream_logger) -> None:
    logger, _handler, out = stream_logger
    logger.error("provider said %s after %d tries (%r)", RuntimeError(f"bad key {SECRET}"), 3, {"k": SECRET})
    assert out.getvalue() == "provider said bad key *** after 3 tries ({'k': '***'})\n"


def test_a_failing_handler_prints_one_masked_line_not_the_handled_exception(
        stream_logger, capsys: pytest.CaptureFixture[str]) -> None:
    logger, handler, _out = stream_logger

    class Broken(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            raise ValueError(f"cannot format: key {SECRET}")

    handler.setFormatter(Broken())
    try:
        raise RuntimeError(f"AuthenticationError: Incorrect API key provided: {SECRET}")
    except RuntimeError:
        logger.info("a request failed")
    err = capsys.readouterr().err
    assert re.fullmatch(r"logging error: ValueError: cannot format: key \*\*\* \(in a record of "
                        r"'wattbench.test.access' from test_log_scrubbing.py:\d+\)\n", err), err
