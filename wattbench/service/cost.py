"""calculate_cost: a request's API price from LiteLLM's maintained price map; deprecation notices."""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timezone

from wattbench.config import LOCAL_MODEL

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
