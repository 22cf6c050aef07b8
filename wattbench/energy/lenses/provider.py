"""Lens "provider-side (EcoLogits)": what an API provider's datacenter spends on a request."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from wattbench.energy.lenses.base import Column, Lens

#: LiteLLM provider prefixes -> EcoLogits provider names (ecologits/model_repository.py Providers).
ECOLOGITS_PROVIDERS = {
    "gemini": "google_genai", "vertex_ai": "google_genai", "google": "google_genai", "google_genai": "google_genai",
    "openai": "openai", "anthropic": "anthropic", "mistral": "mistralai", "mistralai": "mistralai",
    "cohere": "cohere", "huggingface": "huggingface_hub",
}


#: Model-name prefixes of bare LiteLLM model strings (no "provider/").
_BARE_NAME_PROVIDERS = (("gemini", "google_genai"), ("gemma", "google_genai"), ("gpt-", "openai"),
                        ("o1", "openai"), ("o3", "openai"), ("o4", "openai"), ("claude", "anthropic"),
                        ("mistral", "mistralai"), ("command", "cohere"))


def ecologits_model_id(model: str) -> tuple[str, str] | None:
    """(EcoLogits provider, model name) for a LiteLLM model string, or None if no provider maps."""
    prefix, _, name = model.partition("/")
    if name:
        provider = ECOLOGITS_PROVIDERS.get(prefix.lower())
        return (provider, name) if provider else None
    for start, provider in _BARE_NAME_PROVIDERS:
        if model.lower().startswith(start):
            return provider, model
    return None


def provider_side_unavailable_reason(model: str) -> str | None:
    """Why provider_side_estimate(model, ...) is None, or None when EcoLogits covers the model."""
    ident = ecologits_model_id(model)
    if ident is None:
        return f"EcoLogits has no provider for {model!r} (local or self-hosted model)"
    if importlib.util.find_spec("ecologits") is None:
        return "EcoLogits is not installed (pip install ecologits)"
    from ecologits.model_repository import models

    if models.find_model(provider=ident[0], model_name=ident[1]) is None:
        return f"EcoLogits does not list model {ident[1]!r} for provider {ident[0]!r}"
    return None


def _range(value: Any) -> tuple[float, float, float]:
    """(central, min, max) of an EcoLogits value that is a float or a RangeValue."""
    if hasattr(value, "min") and hasattr(value, "max"):
        return (float(value.min) + float(value.max)) / 2.0, float(value.min), float(value.max)
    return float(value), float(value), float(value)


def provider_side_estimate(model: str, completion_tokens: int, latency_s: float) -> dict[str, float] | None:
    """EcoLogits' estimate of what the provider's datacenter spends on one request (provider-side lens).

    Keys: provider_energy_kwh(_min/_max) and provider_carbon_gco2e(_min/_max) (usage + embodied, as
    EcoLogits computes it); the central value is the middle of EcoLogits' range. None when EcoLogits does not
    cover the model (see provider_side_unavailable_reason).
    """
    if completion_tokens < 0 or latency_s < 0:
        raise ValueError(f"completion_tokens and latency_s must be >= 0 (got {completion_tokens}, {latency_s})")
    if provider_side_unavailable_reason(model) is not None:
        return None
    from ecologits.tracers.utils import llm_impacts

    provider, name = ecologits_model_id(model)  # type: ignore[misc]
    impacts = llm_impacts(provider=provider, model_name=name, output_token_count=completion_tokens,
                          request_latency=latency_s)
    if impacts.energy is None or impacts.gwp is None:
        return None
    energy, energy_min, energy_max = _range(impacts.energy.value)
    gwp, gwp_min, gwp_max = _range(impacts.gwp.value)  # kgCO2e
    return {
        "provider_energy_kwh": energy, "provider_energy_kwh_min": energy_min, "provider_energy_kwh_max": energy_max,
        "provider_carbon_gco2e": gwp * 1000.0, "provider_carbon_gco2e_min": gwp_min * 1000.0,
        "provider_carbon_gco2e_max": gwp_max * 1000.0,
    }


LABEL = "provider-side (EcoLogits)"
_P = LABEL
COLUMNS = {
    "provider_energy_kwh": Column("kWh", _P, "provider's datacenter energy for this request (EcoLogits)"),
    "provider_energy_kwh_min": Column("kWh", _P, "low end of the EcoLogits range"),
    "provider_energy_kwh_max": Column("kWh", _P, "high end of the EcoLogits range"),
    "provider_carbon_gco2e": Column("gCO2e", _P, "provider-side carbon (EcoLogits, usage phase)"),
    "provider_carbon_gco2e_min": Column("gCO2e", _P, "low end of the EcoLogits range"),
    "provider_carbon_gco2e_max": Column("gCO2e", _P, "high end of the EcoLogits range"),
}
Estimate = Callable[[str, int, float], Mapping[str, Any] | None]


def fill(record: Mapping[str, Any], row: Mapping[str, Any], estimate: Estimate | None = None) -> dict[str, Any]:
    """EcoLogits' estimate for this request from its model, output tokens and latency; empty when it has none."""
    result = (estimate or provider_side_estimate)(
        str(row["model"]), int(row.get("completion_tokens") or 0), float(row.get("latency_s") or 0.0))
    return {k: result.get(k) for k in COLUMNS} if result else {}


LENS = Lens(
    key="provider", label=LABEL, level="request",
    note="the API provider's datacenter for this request, estimated by EcoLogits (range from its model)",
    columns=COLUMNS, energy_column="provider_energy_kwh", energy_min_column="provider_energy_kwh_min",
    energy_max_column="provider_energy_kwh_max", bar_label="provider-side<br>(EcoLogits)", fill=fill,
)
