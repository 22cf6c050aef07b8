"""Enrichment: measured requests x deployment profiles -> the CSV rows (each energy lens filled in)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any

from wattbench.energy.lenses import request_lenses
from wattbench.energy.open_models import shape_for_model
from wattbench.workloads.graders import check_accuracy
from wattbench.analysis.phases import PHASE_MEASURE, phases
from wattbench.analysis.calibration import calibrate_frame
from wattbench.analysis.schema import AUDIT_COLUMNS, LOAD_SCHEMA, REQUEST_COLUMNS, SERVER_SCHEMA
from wattbench.loadgen.plan import RequestRecord, latest_by_key
from wattbench.protocol.metrics import in_flight, timing_fields
from wattbench.energy.lenses import provider, simulated


if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    import pandas as pd


_RESPONSE_MEASURES = (  # the /chat response's measurements, each a CSV column of the same name
    "latency_s",
    "ttft_s",
    "tpot_s",
    "tokens_per_s",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "token_source",
    "cost_usd",
)


#: The CSV's column order (the schema is the only list of columns: analysis/schema.py): the request's columns,
#: the audit columns, the load columns, then each profile's (the simulated lens's).
CSV_COLUMNS: tuple[str, ...] = (*REQUEST_COLUMNS, *AUDIT_COLUMNS, *LOAD_SCHEMA, *SERVER_SCHEMA,
                                 *simulated.PROFILE_COLUMNS)


def client_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's answer with the timings the client saw in place of the service's: latency_s (send to last
    byte), ttft_s (send to the first streamed content chunk; the service's when the answer was not streamed),
    tpot_s and tokens_per_s from those. The service's own are kept as service_latency_s / service_ttft_s."""
    response = dict(record.get("response") or {})
    latency = record.get("client_latency_s")
    if not record.get("success") or latency is None:
        return response
    path = record.get("path") or "service"
    service_latency, service_ttft = response.get("latency_s"), response.get("ttft_s")
    ttft = record.get("client_ttft_s")
    source = "client"
    if ttft is None:  # an unstreamed answer: the client saw no first token; its extra wait counts before it
        ttft, source = min(float(service_ttft or 0.0) + max(0.0, latency - float(service_latency or latency)),
                           latency), "estimated"
    tokens = int(response.get("completion_tokens") or 0)
    response.update(**timing_fields(ttft, latency, tokens), timing_source=source)
    if path == "service":
        response.update(service_latency_s=service_latency, service_ttft_s=service_ttft,
                        service_overhead_s=latency - service_latency if service_latency is not None else None)
    return response


_RESPONSE_FIELDS = (
    "route",
    "route_reason",
    "temperature",
    "model",
    *_RESPONSE_MEASURES,
)


def idle_gaps_s(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per served request: the time the service sat idle before it, i.e. from the end of the latest earlier
    served request of the same session to this one's start (0 when another was still in flight, and for the
    first of each session)."""
    gaps: dict[str, float] = {}
    by_session: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("success"):
            by_session.setdefault(r.get("session", ""), []).append(r)
    for session_records in by_session.values():
        latest_end: float | None = None
        for r in sorted(session_records, key=lambda r: r["t_start_epoch_s"]):
            start = r["t_start_epoch_s"]
            gaps[r["key"]] = 0.0 if latest_end is None else max(0.0, start - latest_end)
            latest_end = r["t_end_epoch_s"] if latest_end is None else max(latest_end, r["t_end_epoch_s"])
    return gaps


def request_row(record: Mapping[str, Any], run_id: str, t0_epoch_s: float,
                response: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The per-request CSV columns of one record (timings as the client saw them: `response`, its client_view,
    computed here when not given)."""
    response = client_view(record) if response is None else response
    expected = record.get("expected")
    row: dict[str, Any] = {
        "run_id": run_id,
        "request_id": record["key"],
        "prompt_id": record["prompt_id"],
        "repeat": record["repeat"],
        "prompt": record["prompt"],
        "category": record.get("category"),
        "success": bool(record["success"]),
        "error": record.get("error"),
        "status_code": record.get("status_code"),
        "attempts": record["attempts"],
        "retry_wait_s": record["retry_wait_s"],
        "started_at": record["started_at"],
        "t_start_s": round(record["t_start_epoch_s"] - t0_epoch_s, 6),
        "expected": json.dumps(expected) if isinstance(expected, list) else expected,
        "grader": record.get("grader"),
        "correct": check_accuracy(
            response.get("text") if record["success"] else None,
            expected,
            record.get("grader") or "none",
            float(record.get("tolerance") or 0.0),
        ),
        "response_text": response.get("text"),
        "client_latency_s": record.get("client_latency_s"),
        "service_request_id": response.get("request_id"),
        "session": record.get("session"),
    }
    for name in _RESPONSE_FIELDS:
        row[name] = response.get(name)
    if row["model"] is None:  # never answered: the model that was asked for
        row["model"] = record.get("requested_model")
    for lens in request_lenses():
        row.update(dict.fromkeys(lens.columns))
    row.update({name: response.get(name) for name in ("timing_source", "service_latency_s", "service_ttft_s",
                                                       "service_overhead_s")})
    row.update(path=record.get("path") or "service", itl_s=record.get("client_itl_s"))
    return row


def build_dataframe(
    records: Iterable[Mapping[str, Any] | RequestRecord],
    profiles: Mapping[str, Any],
    *,
    run_id: str,
    enhance: Callable[..., Mapping[str, Any]] | None = None,
    provider_estimate: Callable[..., Mapping[str, Any] | None] | None = None,
    load: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per request (the last record of each key) x profile, in the column order of the CSV contract.

    records: RequestRecords, or their dicts as read back from a run file (RunStore.load_records()).
    profiles: name -> DeploymentProfile (hardware.load_profiles()). enhance / provider_estimate default to
    simulated.calculate_enhanced_metrics / provider.provider_side_estimate. Every request-level lens of the
    registry fills its columns for a served request; a failed request still gets its rows, with empty energy
    columns. load: the run's requested load and phases (requested_concurrency, requested_rate_rps, warmup_s,
    cooldown_s, cooldown), as the run's manifest keeps them."""
    import pandas as pd

    enhance = enhance or simulated.calculate_enhanced_metrics
    provider_estimate = provider_estimate or provider.provider_side_estimate
    latest = sorted(latest_by_key(records).values(), key=lambda r: r["t_start_epoch_s"])
    t0 = min((r["t_start_epoch_s"] for r in latest), default=0.0)
    gaps = idle_gaps_s(latest)
    load = load or {}
    phase_of = phases(latest, float(load.get("warmup_s") or 0.0), float(load.get("cooldown_s") or 0.0),
                      int(load.get("cooldown") or 0))
    source = energy_batch_source(load.get("energy_batch"), load.get("energy_batch_fallback"), latest)
    run_batch = achieved_batch(latest, phase_of) if source == "achieved" else None
    rows: list[dict[str, Any]] = []
    shapes: dict[tuple[Any, Any], Any] = {}
    for record in latest:
        view = client_view(record)  # once per record: the request's row and every profile's use it
        base = request_row(record, run_id, t0, view)
        batch, batch_source = _batch_for(record, source, run_batch)
        base.update(server_batch=record.get("server_batch"), server_queue=record.get("server_queue"),
                    sim_batch_source=batch_source if record["success"] else None)
        enhance_one = partial(enhance, batch_size=batch) if batch is not None else enhance
        base.update(phase=phase_of.get(record["key"], PHASE_MEASURE),
                    requested_concurrency=load.get("requested_concurrency"),
                    requested_rate_rps=load.get("requested_rate_rps"),
                    target_input_tokens=record.get("target_input_tokens"),
                    target_output_tokens=record.get("target_output_tokens"),
                    output_enforced=load.get("output_enforce") if record.get("target_output_tokens") else None)
        if record["success"]:
            for lens in request_lenses():
                fill = partial(provider.fill, estimate=provider_estimate) if lens is provider.LENS else lens.fill
                base.update(fill(record, base))
        shape = None
        if record["success"]:  # a run asks few models: each one's shape is looked up once
            model_key = (view.get("model"), view.get("model_params_b"))
            shape = shapes[model_key] if model_key in shapes else shapes.setdefault(model_key, _shape(view))
        for name, profile in profiles.items():
            rows.append({**base, **_profile_columns(record["success"], view, shape, name, profile,
                                                    gaps.get(record["key"], 0.0), enhance_one)})
    columns = list(CSV_COLUMNS)
    known = set(columns)  # every key of every row, in first-seen order, at C speed (a list scan per key: 2.2 s
    extra = [c for c in dict.fromkeys(chain.from_iterable(rows)) if c not in known]  # at 80,000 rows)
    df = pd.DataFrame(rows, columns=columns + extra)
    if load.get("calibrate_from_measured"):
        df, note = calibrate_frame(df)
        print(note)
    return df


def energy_batch_source(requested: str | None, fallback: str | None, records: Sequence[Mapping[str, Any]]) -> str:
    """The batch the simulated lens uses: `requested` (--energy-batch), or server when some served record has a
    server_batch, else `fallback` (profile for `run`, achieved for `sweep`). server without samples falls back."""
    has_server = any(r.get("success") and r.get("server_batch") is not None for r in records)
    if requested in (None, "auto", "server"):
        return "server" if has_server else (fallback or "profile")
    return requested


def _batch_for(record: Mapping[str, Any], source: str, run_batch: int | None) -> tuple[int | None, str]:
    """(batch_size for the simulated lens, None: the profile's; its source) for one record."""
    if source == "server" and record.get("server_batch") is not None:
        return max(1, round(float(record["server_batch"]))), "server"
    if source == "achieved" and run_batch is not None:
        return run_batch, "achieved"
    return None, "profile"


def achieved_batch(records: Sequence[Mapping[str, Any]], phase_of: Mapping[str, str]) -> int | None:
    """The requests a run kept in flight on average (its served requests of the measure phase, from the
    client's intervals), rounded to a whole batch >= 1: what the server batched at this load point. None when
    nothing was served."""
    served = [r for r in records if r.get("success") and phase_of.get(r["key"], PHASE_MEASURE) == PHASE_MEASURE]
    if not served:
        return None
    mean, _, _ = in_flight([(float(r["t_start_epoch_s"]), float(r["t_end_epoch_s"])) for r in served])
    return max(1, round(mean))


def _shape(view: Mapping[str, Any]) -> Any:
    """The model's shape for the roofline (None: unknown; a ValueError is kept to be reported per profile)."""
    try:
        known = shape_for_model(view.get("model"), params_b=view.get("model_params_b"))
    except ValueError as exc:
        return exc
    return known[0] if known else None


def _profile_columns(
    success: bool,
    view: Mapping[str, Any],
    shape: Any,
    name: str,
    profile: Any,
    idle_s: float,
    enhance: Callable[..., Mapping[str, Any]],
) -> dict[str, Any]:
    """One profile's columns for a request; the energy lenses use the latency the client saw (`view`)."""
    if not success:
        return {"profile": name}
    try:
        if isinstance(shape, ValueError):
            raise shape
        metrics = dict(enhance(view, profile, idle_s=idle_s, shape=shape))
    except ValueError as exc:  # e.g. gpu_profiles.ModelDoesNotFitError: the row stays, without energy
        return {"profile": name, "energy_method": f"not simulated: {exc}"}
    metrics["profile"] = metrics.get("profile") or name
    return metrics
