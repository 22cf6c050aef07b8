"""calculate_cost: a request's API price from LiteLLM's maintained price map; deprecation notices; the
Gemini default's successor when the seed's model is past its deprecation date in that map."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

from wattbench.config import GEMINI_MODEL, LOCAL_MODEL

log = logging.getLogger("wattbench.app")
_warned_unpriced: set[str] = set()


def calculate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """API cost in USD from LiteLLM's maintained price map; 0 for the local model; None (and a warning)
    when the map has no price for the model."""
    if model == LOCAL_MODEL or model.startswith("wattbench-local/"):
        return 0.0
    import litellm

    try:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception as exc:  # litellm raises a bare Exception for unmapped models
        if "isn't mapped" not in str(exc) and "not mapped" not in str(exc) and "not found" not in str(exc).lower():
            raise
        if model not in _warned_unpriced:
            _warned_unpriced.add(model)
            message = f"no price known for model {model!r} in LiteLLM's price map; cost_usd is empty"
            log.warning(message)
            warnings.warn(message, stacklevel=2)
        return None
    return float(prompt_usd) + float(completion_usd)


def deprecation_notice(model: str) -> str | None:
    """A warning when LiteLLM's price map marks `model` deprecated (e.g. gemini-2.5-flash: 2026-12-01)."""
    if model == LOCAL_MODEL:
        return None
    import litellm

    entry = litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1]) or {}
    date = entry.get("deprecation_date")
    if not date:
        return None
    today = datetime.now(timezone.utc).date().isoformat()
    verb = "was deprecated on" if date <= today else "will be deprecated on"
    return f"{model} {verb} {date} according to LiteLLM's model map; set WATTBENCH_MODEL to a newer model"


#: A stable Gemini Flash in LiteLLM's map: gemini/gemini-<version>-flash, or -flash-lite (no preview, image,
#: audio or "latest" alias: those carry more words).
GEMINI_FLASH = re.compile(r"^gemini/gemini-(\d+(?:\.\d+)*)-flash(-lite)?$")


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def past_deprecation(entry: Mapping[str, Any], today: str) -> bool:
    """Whether a price-map entry's deprecation_date (YYYY-MM-DD) is today or earlier."""
    when = entry.get("deprecation_date")
    return bool(when) and str(when) <= today


def newest_gemini_flash(model_cost: Mapping[str, Mapping[str, Any]], today: str) -> str | None:
    """The newest stable Gemini Flash chat model of the map that is not past its deprecation date; a Flash
    Lite only when there is no Flash; None when there is neither."""
    found = []
    for name, entry in model_cost.items():
        match = GEMINI_FLASH.match(name)
        if match and entry.get("mode", "chat") == "chat" and not past_deprecation(entry, today):
            version = tuple(int(part) for part in match.group(1).split("."))
            found.append((match.group(2) is None, version, name))  # a Flash before any Lite
    return max(found)[2] if found else None


def gemini_default(model_cost: Mapping[str, Mapping[str, Any]] | None = None, today: str | None = None) \
        -> tuple[str, str | None]:
    """(the default model when GEMINI_API_KEY is set, the one line that says why it is not the seed's).
    The seed's model (config.GEMINI_MODEL) while it is not past its deprecation date in LiteLLM's map (or
    when the map has no successor); else the newest stable Gemini Flash there. Default: the installed map,
    today (UTC)."""
    if model_cost is None:
        import litellm

        model_cost = litellm.model_cost
    today = today or _today()
    seed = model_cost.get(GEMINI_MODEL, {})
    if not past_deprecation(seed, today):
        return GEMINI_MODEL, None
    successor = newest_gemini_flash(model_cost, today)
    if successor is None:
        return GEMINI_MODEL, None
    return successor, (f"default model: {successor}, the newest stable Gemini Flash in LiteLLM's model map "
                       f"({GEMINI_MODEL} was deprecated on {seed['deprecation_date']}; "
                       f"WATTBENCH_MODEL={GEMINI_MODEL} still selects it)")
