"""What may leave the process: the one place that masks secrets.

Every message that leaves a wattbench process goes through `scrub` first: HTTP error details, log records
(`install_log_scrubbing`), run files, the CSV and the report (through the run file), CLI error lines, and
OpenTelemetry spans (`scrub_value` on attributes and events). It masks

* the value of every environment variable whose name says it is a secret: `*_API_KEY`, `*_KEY` of a known
  provider, `*_TOKEN`, `*_AUTHTOKEN` (NGROK_AUTHTOKEN), `*SECRET*`, `*PASSWORD*`, read at each call, so a key set
  after start-up is masked too;
* every value handed to `register_secret` (the settings register theirs, including those read from `.env`);
* `Bearer ...` / `Basic ...` credentials, `Authorization:` / `api-key:` style header values, `key=` / `token=` URL
  parameters, and the `user:password@` part of URLs, whatever their value.

A masked secret reads `***`. Values shorter than MIN_SECRET_CHARS are not searched for (masking "1" everywhere
would garble every number); header and URL patterns still mask them in place.
"""
from __future__ import annotations

import base64
import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
#: Shortest secret value searched for verbatim.
MIN_SECRET_CHARS = 4

_SECRET_NAME = re.compile(
    r"(?i)(_API_KEY|_APIKEY|_ACCESS_KEY|_PRIVATE_KEY|_TOKEN|AUTHTOKEN|SECRET|PASSWORD|PASSWD|_CREDENTIALS?)"
    r"|^(API_KEY|TOKEN)$"
)
_registered: set[str] = set()
_lock = threading.Lock()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ (or a bare token@) in a URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@"), r"\1" + MASK + "@"),
    # Authorization: Bearer x / Basic x and the headers that carry keys, in any notation (HTTP, dict, JSON)
    (re.compile(r"(?i)(\b(?:authorization|proxy-authorization|x-api-key|api-key|x-goog-api-key|"
                r"anthropic-api-key|ocp-apim-subscription-key)[\"']?\s*[:=]\s*[\"']?(?>(?:[a-z]+\s+)?))"
                r"(?!<)[^\s\"',}]{3,}"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}"), r"\1" + MASK),
    (re.compile(r"\b(Basic\s+)[A-Za-z0-9+/]{12,}={0,2}"), r"\1" + MASK),
    # key=..., api_key=..., token=..., secret=... (URL parameters, kwargs reprs)
    (re.compile(r"(?i)\b(key|api_key|apikey|token|access_token|secret|password|sig)(=|\": \"|': ')"
                r"[^&\s'\"]+"), r"\1\2" + MASK),
)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    return bool(_SECRET_NAME.search(name))


def register_secret(value: Any) -> None:
    """Mask `value` (a str or a pydantic SecretStr) from now on, wherever a message leaves the process."""
    getter = getattr(value, "get_secret_value", None)
    text = str(getter() if getter is not None else value or "")
    if len(text.strip()) >= MIN_SECRET_CHARS:
        with _lock:
            _registered.add(text.strip())


_env_cache: tuple[Any, list[str]] = (None, [])


def _env_secrets(environ: Mapping[str, str] | None) -> set[str]:
    """The secret values of the environment; os.environ's are cached until it changes (checked on its raw data,
    cheaply, at each call: a key set after start-up is still masked)."""
    global _env_cache
    if environ is not None:
        return {v.strip() for k, v in environ.items() if v and is_secret_name(k)}
    raw = getattr(os.environ, "_data", None)
    key = tuple(raw.items()) if isinstance(raw, dict) else None
    if key is not None and key == _env_cache[0]:
        return set(_env_cache[1])
    found = {v.strip() for k, v in os.environ.items() if v and is_secret_name(k)}
    _env_cache = (key, sorted(found))
    return found


def secret_values(environ: Mapping[str, str] | None = None, extra: Iterable[Any] = ()) -> list[str]:
    """Every secret value to mask, longest first (so a secret that contains another is masked whole)."""
    found = _env_secrets(environ)
    with _lock:
        found |= _registered
    for value in extra:
        getter = getattr(value, "get_secret_value", None)
        found.add(str(getter() if getter is not None else value or "").strip())
    return _with_encodings(frozenset(found))


@functools.lru_cache(maxsize=64)
def _with_encodings(found: frozenset[str]) -> list[str]:
    values = {v for v in found if len(v) >= MIN_SECRET_CHARS}
    # a secret may also travel base64-encoded (HTTP Basic auth, a data: URL)
    values |= {base64.b64encode(v.encode()).decode().rstrip("=") for v in list(values) if len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def mask_secrets(text: Any, extra: Iterable[Any] = ()) -> str:
    """`text` with the value of every secret the process holds masked (no pattern): for text that is data,
    such as a model's answer or a prompt, where a code sample's `Authorization: Bearer <example>` must stay."""
    text = text if isinstance(text, str) else str(text)
    for value in secret_values(extra=extra):
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub(text: Any, extra: Iterable[Any] = ()) -> str:
    """`text` with every secret the process can hold masked, and every credential-shaped part (bearer tokens,
    key headers and parameters, URL passwords) too: for messages (errors, logs, spans)."""
    text = mask_secrets(text, extra)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: Any, *, patterns: bool = True) -> Any:
    """scrub() (or, with patterns=False, mask_secrets()) for structured data (span attributes, records): strings
    in dicts, lists and tuples; other values as they are."""
    if isinstance(value, str):
        return scrub(value) if patterns else mask_secrets(value)
    if isinstance(value, bytes):
        return scrub_value(value.decode("utf-8", "replace"), patterns=patterns).encode()
    if isinstance(value, Mapping):
        return {k: scrub_value(v, patterns=patterns) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v, patterns=patterns) for v in value)
    return value


#: Fields of a record that are messages (scrubbed whole); every other field is data (secret values masked).
MESSAGE_FIELDS = frozenset({"error", "detail", "route_reason"})


def scrub_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record (a run-file line, a CSV row) as it may be written: messages scrubbed, data masked."""
    return {k: scrub_value(v, patterns=k in MESSAGE_FIELDS) for k, v in record.items()}


def short(text: str, limit: int = 300) -> str:
    """A message on one line, cut to `limit` characters (an error quoted from a provider or a server)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_url(url: str) -> str:
    """`url` as it may be printed or written: a user:password part becomes ***, key parameters too."""
    return scrub(re.sub(r"//[^/@]*@", "//" + MASK + "@", url, count=1))


# ---- logs ---------------------------------------------------------------------------------------------------
_installed = False


def _scrubbed_arg(value: Any) -> Any:
    """One log argument, masked in place: numbers and None as they are (a `%d` still formats), text and any
    other object as scrubbed text, a mapping or a sequence element by element (its shape kept)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {k: _scrubbed_arg(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrubbed_arg(v) for v in value)
    return scrub(value)


def _scrubbed_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message, arguments and traceback masked. The arguments keep their shape (a tuple of
    five stays a tuple of five), because formatters unpack them: uvicorn's access formatter does (issue 20)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format: leave it to the handler, which reports it (masked: _handle_error)
        return record
    if scrub(message) != message:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, Mapping):
            record.args = _scrubbed_arg(record.args)
        elif record.args:
            record.args = tuple(_scrubbed_arg(a) for a in record.args)
        try:
            masked = record.getMessage()
        except Exception:  # a %d given a masked object: the masked text alone
            masked = None
        if masked is None or scrub(masked) != masked:  # a secret split between the format and its arguments
            record.msg, record.args = scrub(message), ()
    if record.exc_info and not record.exc_text:
        # a formatter prints exc_text when set: format the traceback now, masked
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


def _handle_error(self: logging.Handler, record: logging.LogRecord) -> None:
    """Handler.handleError, on one masked line: Python's own prints the exception being handled, whose
    message may carry a provider's key, and about 60 lines of stack for each record."""
    if not logging.raiseExceptions or not sys.stderr:
        return
    kind, exc = sys.exc_info()[:2]
    what = f"{kind.__name__}: {exc}" if kind is not None else "unknown error"
    try:
        sys.stderr.write(scrub(short(f"logging error: {what} (in a record of {record.name!r} from "
                                     f"{record.filename}:{record.lineno})", 500)) + "\n")
    except (OSError, ValueError):  # stderr closed
        pass


def install_log_scrubbing() -> None:
    """Mask secrets in every log record this process creates (any logger, any handler: uvicorn's, LiteLLM's)
    and in uncaught exceptions printed by Python itself. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    factory = logging.getLogRecordFactory()

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _scrubbed_record(factory(*args, **kwargs))

    logging.setLogRecordFactory(make)
    logging.Handler.handleError = _handle_error  # type: ignore[method-assign]

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        import traceback

        sys.stderr.write(scrub("".join(traceback.format_exception(kind, exc, tb))))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        import traceback

        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        name = args.thread.name if args.thread is not None else "?"
        sys.stderr.write(f"Exception in thread {name}:\n" + scrub(text))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
