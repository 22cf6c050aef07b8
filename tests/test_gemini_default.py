"""The Gemini default: the seed's gemini/gemini-2.5-flash until LiteLLM's price map says it is past its
deprecation date, then the newest stable Gemini Flash of that map, said in one line at start-up and in
/health; WATTBENCH_MODEL still selects the old one (with its warning). Price maps whose dates the test sets."""
from __future__ import annotations

import logging

import pytest

from wattbench.config import GEMINI_MODEL, Settings
from wattbench.service.cost import gemini_default, newest_gemini_flash

CHAT = {"mode": "chat", "input_cost_per_token": 3e-7, "output_cost_per_token": 2.5e-6,
        "litellm_provider": "gemini"}
MAP = {
    GEMINI_MODEL: {**CHAT, "deprecation_date": "2026-12-01"},
    "gemini/gemini-3-flash-preview": CHAT,  # preview: never the default
    "gemini/gemini-3.5-flash": CHAT,
    "gemini/gemini-3.8-flash": CHAT,
    "gemini/gemini-3.10-flash": CHAT,  # 3.10 is newer than 3.8 (numbers, not text)
    "gemini/gemini-3.11-flash-lite": CHAT,  # lite: only when there is no Flash
    "gemini/gemini-4-flash": {**CHAT, "deprecation_date": "2026-12-03"},  # newer, but past its date too
    "gemini/gemini-4.1-flash-image": {**CHAT, "mode": "image_generation"},
    "gemini/gemini-flash-latest": CHAT,  # an alias, not a version
    "gemini/gemini-4.2-flash": {**CHAT, "mode": "audio_speech"},
    "gpt-4o-mini": CHAT,
}
NOTE = ("default model: gemini/gemini-3.10-flash, the newest stable Gemini Flash in LiteLLM's model map "
        "(gemini/gemini-2.5-flash was deprecated on 2026-12-01; WATTBENCH_MODEL=gemini/gemini-2.5-flash still "
        "selects it)")


def test_past_its_date_the_default_is_the_newest_stable_flash_and_says_so() -> None:
    assert gemini_default(MAP, today="2026-12-04") == ("gemini/gemini-3.10-flash", NOTE)
    # the date itself counts as past; gemini-4-flash is not past its own date yet, so it is the newest
    assert gemini_default(MAP, today="2026-12-01") == ("gemini/gemini-4-flash", NOTE.replace(
        "gemini/gemini-3.10-flash,", "gemini/gemini-4-flash,"))


def test_before_its_date_the_seeds_model_stays_the_default() -> None:
    assert gemini_default(MAP, today="2026-11-30") == (GEMINI_MODEL, None)
    assert gemini_default({GEMINI_MODEL: CHAT}, today="2030-01-01") == (GEMINI_MODEL, None)  # no date at all


def test_a_lite_model_only_when_there_is_no_flash_and_none_when_there_is_neither() -> None:
    lite_only = {k: v for k, v in MAP.items() if k.endswith("-lite") or k == GEMINI_MODEL}
    assert newest_gemini_flash(lite_only, "2026-12-04") == "gemini/gemini-3.11-flash-lite"
    assert newest_gemini_flash({GEMINI_MODEL: MAP[GEMINI_MODEL]}, "2026-12-04") is None
    # no successor: the seed's model stays (its deprecation warning says the rest)
    assert gemini_default({GEMINI_MODEL: MAP[GEMINI_MODEL]}, today="2026-12-04") == (GEMINI_MODEL, None)


@pytest.fixture
def price_map(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's loaded map with the seed's model long past its date and a successor no real map has."""
    import litellm

    monkeypatch.setitem(litellm.model_cost, GEMINI_MODEL, {**litellm.model_cost[GEMINI_MODEL],
                                                           "deprecation_date": "2000-01-01"})
    monkeypatch.setitem(litellm.model_cost, "gemini/gemini-99.1-flash", dict(CHAT))


SUCCESSOR_NOTE = ("default model: gemini/gemini-99.1-flash, the newest stable Gemini Flash in LiteLLM's model map "
                  "(gemini/gemini-2.5-flash was deprecated on 2000-01-01; WATTBENCH_MODEL=gemini/gemini-2.5-flash "
                  "still selects it)")


def test_with_a_key_and_no_model_the_service_uses_the_successor_and_says_so(
        price_map: None, make_client, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, GEMINI_API_KEY="AIza-test-key")
    assert settings.default_model() == "gemini/gemini-99.1-flash"
    with caplog.at_level(logging.WARNING, logger="wattbench.app"), make_client(settings) as client:
        body = client.get("/health").json()
    assert [r.getMessage() for r in caplog.records if r.name == "wattbench.app"] == [SUCCESSOR_NOTE]
    assert (body["model"], body["model_note"], body["deprecation"]) == (
        "gemini/gemini-99.1-flash", SUCCESSOR_NOTE, None)
    assert "AIza-test-key" not in str(body)


def test_wattbench_model_still_selects_the_old_one_with_its_warning(
        price_map: None, make_client, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, GEMINI_API_KEY="AIza-test-key", WATTBENCH_MODEL=GEMINI_MODEL)
    with caplog.at_level(logging.WARNING, logger="wattbench.app"), make_client(settings) as client:
        body = client.get("/health").json()
    warning = ("gemini/gemini-2.5-flash was deprecated on 2000-01-01 according to LiteLLM's model map; "
               "set WATTBENCH_MODEL to a newer model")
    assert [r.getMessage() for r in caplog.records if r.name == "wattbench.app"] == [warning]
    assert (body["model"], body["model_note"], body["deprecation"]) == (GEMINI_MODEL, None, warning)


def test_a_run_with_a_key_and_no_model_says_so_in_its_manifest_and_report(
        price_map: None, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from stub_servers import ChatStub

    from wattbench.config import get_settings
    from wattbench.runs.run import run_benchmark

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "capital", "prompt": "What is the capital of France?", "expected": "Paris"}\n')
    for name in ("WATTBENCH_API_TOKEN", "WATTBENCH_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key")
    get_settings.cache_clear()
    try:
        with ChatStub(answers={"What is the capital of France?": "Paris"}) as stub:
            result = run_benchmark(stub.url, prompts=str(prompts), out=str(tmp_path / "out"),
                                   profiles="T4_COLAB", no_progress=True, warmup=0)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    [manifest] = (tmp_path / "out" / "runs").glob("*/manifest.json")
    assert json.loads(manifest.read_text())["model_note"] == SUCCESSOR_NOTE
    report = (tmp_path / "out" / "report.txt").read_text(encoding="utf-8")
    assert SUCCESSOR_NOTE in report
    assert "AIza-test-key" not in manifest.read_text() + report
