"""calculate_cost uses LiteLLM's maintained price map, never a hand-typed table."""
from __future__ import annotations

import pytest

from wattbench.config import LOCAL_MODEL
from wattbench.service.cost import calculate_cost, deprecation_notice


def test_gemini_flash_cost_hand_computed():
    # $0.30 per 1M input tokens, $2.50 per 1M output tokens:
    # 1,000 x 0.30e-6 + 500 x 2.50e-6 = 0.0003 + 0.00125 = 0.00155
    assert calculate_cost("gemini/gemini-2.5-flash", 1000, 500) == pytest.approx(0.00155)


def test_other_provider_from_the_same_map():
    import litellm

    entry = litellm.model_cost["gpt-4o-mini"]
    expected = 2000 * entry["input_cost_per_token"] + 100 * entry["output_cost_per_token"]
    assert calculate_cost("gpt-4o-mini", 2000, 100) == pytest.approx(expected)
    assert calculate_cost("gpt-4o-mini", 2000, 100) == pytest.approx(2000 * 0.15e-6 + 100 * 0.60e-6)


def test_local_model_is_free():
    assert calculate_cost(LOCAL_MODEL, 1000, 500) == 0.0


def test_unknown_model_gives_none_and_a_warning():
    with pytest.warns(UserWarning, match="no price known for model 'openai/my-own-finetune-xyz'"):
        assert calculate_cost("openai/my-own-finetune-xyz", 10, 10) is None


def test_deprecation_notice_for_gemini_flash():
    notice = deprecation_notice("gemini/gemini-2.5-flash")
    assert notice is not None
    assert "2026-12-01" in notice and "WATTBENCH_MODEL" in notice
    assert deprecation_notice(LOCAL_MODEL) is None
