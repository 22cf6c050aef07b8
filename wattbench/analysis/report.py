"""The printed report (report.txt) and its Markdown twin (report.md), built from the analysis tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from wattbench.loadgen.limiter import BUDGET_SPENT, RATE_LIMIT_CAP
from wattbench.analysis.reading import ANALYSIS_COLUMNS, check_frame, lean, prepare
from wattbench.analysis.server_view import overask_warnings, samples_table, server_view_table
from wattbench.analysis.tables import (
    DEFAULT_SLO_TPOT_S,
    DEFAULT_SLO_TTFT_S,
    PERCENTILES,
    accuracy_table,
    efficiency_table,
    energy_breakdown,
    failures_table,
    goodput_table,
    gpu_check_table,
    lens_table,
    not_simulated_table,
    percentile_table,
    profile_table,
    requests_of,
    route_latency_table,
    successful,
)

SUMMARY_CSV = "summary_model_route_profile.csv"
REPORT_TXT = "report.txt"


REPORT_MD = "report.md"


def fmt_num(value: object, spec: str = ".4g") -> str:
    """A number for the report: 'n/a' for missing, otherwise format(value, spec)."""
    if value is None or value is pd.NA:
        return "n/a"
    try:
        fval = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(fval):
        return "n/a"
    return format(round(fval), spec) if spec.endswith("d") else format(fval, spec)


def fmt_pct(value: object) -> str:
    """A fraction 0..1 as a percentage with one decimal ('n/a' when missing)."""
    return "n/a" if fmt_num(value) == "n/a" else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]


Fmt = Callable[[object], str]


def text_table(df: pd.DataFrame, columns: Sequence[tuple[str, str, Fmt | None]]) -> str:
    """A fixed-width text table: columns are (column, header, formatter or None for str)."""
    headers = [h for _, h, _ in columns]
    body = [[(f or _str)(row[c]) for c, _, f in columns] for _, row in df.iterrows()]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


def md_table(df: pd.DataFrame, columns: Sequence[tuple[str, str, Fmt | None]]) -> str:
    """The same table as text_table, in Markdown."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell((f or _str)(row[c])) for c, _, f in columns) + " |" for _, row in df.iterrows()]
    return "\n".join(lines)


TableFn = Callable[[pd.DataFrame, Sequence[tuple[str, str, "Fmt | None"]]], str]


def _str(value: object) -> str:
    """str() with 'n/a' for missing values."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return " ".join(str(value).split())  # one line per table row


def _f(spec: str) -> Fmt:
    """A formatter for text_table."""
    return lambda v: fmt_num(v, spec)


def fmt_range(mid: object, low: object, high: object, spec: str = ".4g") -> str:
    """'mid [low-high]' or just 'mid' without a range."""
    if fmt_num(low) == "n/a" or fmt_num(high) == "n/a":
        return fmt_num(mid, spec)
    return f"{fmt_num(mid, spec)} [{fmt_num(low, spec)}-{fmt_num(high, spec)}]"


def report_tables(df: pd.DataFrame, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S) -> dict[str, pd.DataFrame]:
    """Every table of the report, computed once: efficiency, breakdown, routes, percentiles (per model and per
    route), accuracy, goodput, lenses, failures, profiles, plus 'rows' (df) and 'requests'."""
    check_frame(df, required=ANALYSIS_COLUMNS)
    df = lean(prepare(df))
    eff, pct_route = efficiency_table(df), percentile_table(df, by=("model", "route"))
    return {
        "rows": df, "requests": requests_of(df), "efficiency": eff,
        "breakdown": energy_breakdown(df), "routes": route_latency_table(df, pct_route),
        "pct_model": percentile_table(df, by=("model",)), "pct_route": pct_route,
        "accuracy": accuracy_table(df), "goodput": goodput_table(df, slo_ttft_s, slo_tpot_s),
        "lenses": lens_table(df, eff), "failures": failures_table(df), "profiles": profile_table(df),
        "not_simulated": not_simulated_table(df), "gpu_check": gpu_check_table(df),
    }


def format_report(tables: Mapping[str, pd.DataFrame], *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S, sources: Mapping[str, Mapping[str, str]] | None = None,
                  markdown: bool = False) -> str:
    """The report from report_tables(): fixed-width text, or Markdown with real tables."""
    t: TableFn = md_table if markdown else text_table
    section = _md_section if markdown else _section
    sections = [
        _overview(tables["rows"], tables["requests"], markdown),
        section("EFFICIENCY RANKINGS PER 1K TOKENS (simulated lens; total cost = API price + energy cost; "
                "[min-max] ranges)", _rankings_text(tables["efficiency"], t)),
        section("IDLE VS COMPUTE ENERGY (simulated lens, successful requests)",
                _breakdown_text(tables["breakdown"], t)),
        section("LATENCY PER ROUTE (seconds; successful requests)", _routes_text(tables["routes"], t)),
        section("PERCENTILES PER MODEL (seconds)", _percentiles_text(tables["pct_model"], t)),
        section("PERCENTILES PER ROUTE (seconds)", _percentiles_text(tables["pct_route"], t)),
        section("ACCURACY (graded prompts only)", _accuracy_text(tables["accuracy"], t)),
        section(f"GOODPUT (SLO: ttft <= {slo_ttft_s:g} s and tpot <= {slo_tpot_s:g} s; change with "
                "--slo-ttft-s / --slo-tpot-s)", _goodput_text(tables["goodput"], t)),
        section("ENERGY BY LENS (kWh per 1K tokens)", _lens_text(tables["lenses"], t)),
        *([section("SIMULATED VS MEASURED GPU ENERGY (GPU boards only: simulated compute energy of the profiles "
                   "on the measured GPU model / the measured share, NVML or dcgm; wattbench checking its own model)",
                   _gpu_check_text(tables["gpu_check"], t))] if len(tables.get("gpu_check", ())) else []),
        section("FAILURES", _failures_text(tables["failures"], t, tables["not_simulated"])),
        section("PROFILE ASSUMPTIONS (simulated lens)", _profiles_text(tables["profiles"], sources or {}, t)),
    ]
    return "\n\n".join(sections) + "\n"


def render_report(df: pd.DataFrame, *, slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
                  slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
                  sources: Mapping[str, Mapping[str, str]] | None = None, markdown: bool = False) -> str:
    """The printed report: overview, efficiency rankings per 1K tokens, idle vs compute energy, latency per
    route, percentiles, accuracy, goodput against the SLOs, energy by lens, failures and profile assumptions."""
    tables = report_tables(df, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s)
    return format_report(tables, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, sources=sources, markdown=markdown)


SERVER_VIEW_TITLE = "SERVER VIEW (the server's own metrics: running vs waiting requests, KV cache, tokens/s)"


def server_view_section(df: pd.DataFrame, samples_by_run: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
                        *, markdown: bool = False) -> str | None:
    """The SERVER VIEW section (title and body); None when the run has neither server_batch values nor samples
    (a server without metrics: the report is unchanged)."""
    table = server_view_table(df)
    samples = samples_table(df, samples_by_run or {})
    if table.empty and samples.empty:
        return None
    t: TableFn = md_table if markdown else text_table
    parts = []
    if not table.empty:
        parts.append(t(table, [("run_id", "run", None), ("requested_concurrency", "asked in flight", _f(".4g")),
                               ("client_in_flight", "client mean in flight", _f(".3g")),
                               ("server_batch_mean", "server batch (mean)", _f(".3g")),
                               ("server_batch_max", "server batch (max)", _f(".3g")),
                               ("server_queue_mean", "server queue (mean)", _f(".3g")),
                               ("sim_batch_source", "simulated batch from", None)]))
    if not samples.empty:
        parts.append(t(samples, [("run_id", "run", None), ("engine", "engine", None), ("samples", "samples", None),
                                 ("running_mean", "running mean", _f(".3g")), ("running_max", "max", _f(".3g")),
                                 ("waiting_mean", "waiting mean", _f(".3g")), ("waiting_max", "max", _f(".3g")),
                                 ("kv_usage_mean", "KV usage mean", fmt_pct), ("kv_usage_max", "max", fmt_pct),
                                 ("server_output_tokens_per_s", "server out tok/s", _f(".4g")),
                                 ("client_output_tokens_per_s", "client out tok/s", _f(".4g"))]))
    warnings = overask_warnings(table) if not table.empty else []
    parts += warnings or ["the client did not ask for more in flight than the server ran"]
    section = _md_section if markdown else _section
    return section(SERVER_VIEW_TITLE, "\n\n".join(parts))


def _section(title: str, body: str) -> str:
    """A titled block of the text report."""
    return f"{title}\n{'=' * min(len(title), 100)}\n{body}"


def budget_counts(req: pd.DataFrame) -> tuple[int, int]:
    """Requests given up by their budget (loadgen.limiter): (time budget spent, 429 cap reached)."""
    if "error" not in req.columns:
        return 0, 0
    errors = req["error"].fillna("").astype(str)
    return int(errors.str.startswith(BUDGET_SPENT).sum()), int(errors.str.startswith(RATE_LIMIT_CAP).sum())


def _budget_lines(req: pd.DataFrame) -> list[str]:
    """The overview's line on requests their budget gave up on (none when no request hit it)."""
    spent, capped = budget_counts(req)
    if not spent and not capped:
        return []
    return [f"requests given up by their budget: {spent + capped} ({spent} over the request budget of time "
            f"(--request-budget), {capped} at the 429 cap (--max-429))"]


def _md_section(title: str, body: str) -> str:
    """A titled block of the Markdown report."""
    return f"## {title}\n\n{body}"


def _overview(df: pd.DataFrame, req: pd.DataFrame, markdown: bool = False) -> str:
    """Header lines: runs, models, requests, profiles, time span and the lens legend."""
    n_ok = int(req["success"].sum())
    runs = ", ".join(sorted(req["run_id"].dropna().astype(str).unique()))
    models = ", ".join(sorted(req["model"].dropna().astype(str).unique()))
    profiles = ", ".join(sorted(df["profile"].dropna().astype(str).unique()))
    facts = [
        f"runs: {runs}",
        f"models: {models}",
        f"requests: {len(req)} ({n_ok} successful, {len(req) - n_ok} failed); rows (request x profile): {len(df)}",
        *_budget_lines(req),
        f"profiles: {profiles}",
        f"tokens (successful requests): {int(successful(req)['total_tokens'].sum())}",
        f"API cost: ${fmt_num(successful(req)['cost_usd'].sum(), '.6g')}",
        "lenses: simulated = per GPU/datacenter profile (model of the hardware); provider-side (EcoLogits) = the "
        "API provider's datacenter; measured/estimated = the machine that served the local model",
    ]
    if markdown:
        return "# wattbench report\n\n" + "\n".join(f"- {fact}" for fact in facts)
    return "WATTBENCH REPORT\n================\n" + "\n".join(facts)


def _rankings_text(eff: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Efficiency ranking tables, one per model."""
    if eff.empty:
        return "no successful request: nothing to rank"
    blocks = []
    for model, frame in eff.groupby("model", sort=True):
        table = frame.assign(
            carbon=lambda d: [fmt_range(m, lo, hi, ".4g") for m, lo, hi in zip(
                d["carbon_gco2e_per_1k_tokens"], d["carbon_gco2e_per_1k_tokens_min"],
                d["carbon_gco2e_per_1k_tokens_max"])],
            energy=lambda d: [fmt_range(m, lo, hi, ".3g") for m, lo, hi in zip(
                d["energy_kwh_per_1k_tokens"], d["energy_kwh_per_1k_tokens_min"],
                d["energy_kwh_per_1k_tokens_max"])],
        )
        blocks.append(f"model: {model}\n\n" + tf(table, [
            ("rank_carbon", "carbon rank", _str), ("rank_cost", "cost rank", _str), ("profile", "profile", None),
            ("gpu", "GPU", None), ("location", "location", None), ("requests", "requests", _f("d")),
            ("total_cost_usd_per_1k_tokens", "total $/1K tok", _f(".6g")),
            ("cost_usd_per_1k_tokens", "API $/1K tok", _f(".6g")),
            ("carbon", "gCO2e/1K tok", None), ("energy", "kWh/1K tok", None)]))
        best_c = frame.loc[frame["rank_carbon"] == 1, "profile"].tolist()
        best_cost = frame.loc[frame["rank_cost"] == 1, "profile"].tolist()
        blocks[-1] += (f"\n\nlowest carbon per 1K tokens: {', '.join(best_c) or 'n/a'}; "
                       f"lowest total cost per 1K tokens: {', '.join(best_cost) or 'n/a'}")
    return "\n\n".join(blocks)


def _breakdown_text(bd: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Idle / compute / PUE-overhead energy with shares."""
    if bd.empty:
        return "no successful request"
    table = bd.assign(
        compute=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["compute_energy_kwh"], bd["compute_share"])],
        idle=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["idle_energy_kwh"], bd["idle_share"])],
        pue=[f"{fmt_num(v, '.4g')} ({fmt_pct(s)})" for v, s in zip(bd["pue_overhead_kwh"], bd["pue_overhead_share"])],
    )
    text = tf(table, [("model", "model", None), ("profile", "profile", None),
                              ("compute", "compute kWh (share)", None), ("idle", "idle kWh (share)", None),
                              ("pue", "PUE overhead kWh (share)", None), ("energy_kwh", "total kWh", _f(".4g"))])
    idle_total, all_total = bd["idle_energy_kwh"].sum(), bd["energy_kwh"].sum()
    if all_total > 0 and idle_total / all_total > 0.5:
        text += ("\n\nidle energy is most of the total: batching requests and scaling to zero save more than a "
                 "faster GPU")
    return text


def _routes_text(routes: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Latency per route."""
    return tf(routes, [
        ("model", "model", None), ("route", "route", None), ("temperature", "temp", _f(".2g")),
        ("requests", "requests", _f("d")), ("successes", "ok", _f("d")),
        ("latency_s_mean", "latency mean", _f(".3f")), ("latency_s_p50", "p50", _f(".3f")),
        ("latency_s_p90", "p90", _f(".3f")), ("latency_s_p99", "p99", _f(".3f")),
        ("ttft_s_p50", "ttft p50", _f(".3f")), ("ttft_s_p90", "ttft p90", _f(".3f")),
        ("ttft_s_p99", "ttft p99", _f(".3f")), ("tokens_per_s_mean", "tok/s mean", _f(".1f"))])


def _percentiles_text(pct: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Latency, TTFT and TPOT percentiles, one line per group and metric."""
    keys = [c for c in ("model", "route") if c in pct.columns]
    rows = []
    for rec in pct.to_dict("records"):
        for metric in ("latency_s", "ttft_s", "tpot_s"):
            rows.append({**{k: rec[k] for k in keys}, "metric": metric, "n": rec["requests"],
                         **{f"p{q}": rec[f"{metric}_p{q}"] for q in PERCENTILES}})
    table = pd.DataFrame(rows)
    if table.empty:
        return "no successful request"
    return tf(table, [(k, k, None) for k in keys] + [("metric", "metric", None), ("n", "n", _f("d"))]
                      + [(f"p{q}", f"p{q}", _f(".4f")) for q in PERCENTILES])


def _accuracy_text(acc: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Accuracy per route and model."""
    return tf(acc, [("model", "model", None), ("route", "route", None),
                            ("requests", "successful", _f("d")), ("graded", "graded", _f("d")),
                            ("correct", "correct", _f("d")), ("accuracy", "accuracy", fmt_pct)])


def _goodput_text(gp: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Goodput and SLO attainment per model."""
    return tf(gp, [("model", "model", None), ("requests", "requests", _f("d")),
                           ("successes", "ok", _f("d")), ("meeting_slo", "meeting SLO", _f("d")),
                           ("slo_attainment", "attainment", fmt_pct), ("span_s", "wall span s", _f(".2f")),
                           ("throughput_rps", "throughput req/s", _f(".4g")),
                           ("goodput_rps", "goodput req/s", _f(".4g"))]) + (
        "\n\ngoodput = requests meeting both SLOs / wall span of the run (first send to last finish); a request "
        "with fewer than 2 output tokens is judged on TTFT alone; failed requests never meet the SLO")


def _lens_text(lenses: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Energy per 1K tokens under each lens."""
    if lenses.empty:
        return "no energy figure"
    table = lenses.assign(per_1k=[fmt_range(m, lo, hi, ".4g") for m, lo, hi in zip(
        lenses["energy_kwh_per_1k_tokens"], lenses["energy_kwh_per_1k_tokens_min"],
        lenses["energy_kwh_per_1k_tokens_max"])])
    return tf(table, [("model", "model", None), ("lens", "lens", None), ("source", "source", None),
                              ("requests", "requests", _f("d")), ("energy_kwh", "kWh total", _f(".4g")),
                              ("per_1k", "kWh/1K tokens [min-max]", None)])


def _gpu_check_text(check: pd.DataFrame, tf: TableFn = text_table) -> str:
    """Simulated / measured GPU energy per model and profile on the measured GPU."""
    table = check.assign(profile=check["profile"].fillna("(no profile on this GPU: add one with --profiles)"))
    return tf(table, [("model", "model", None), ("measured_gpus", "measured GPUs", None),
                      ("profile", "profile", None), ("requests", "requests", _f("d")),
                      ("measured_kwh_per_1k_tokens", "measured kWh/1K", _f(".4g")),
                      ("simulated_kwh_per_1k_tokens", "simulated kWh/1K", _f(".4g")),
                      ("simulated_over_measured", "simulated / measured", _f(".3g"))])


def _failures_text(fail: pd.DataFrame, tf: TableFn = text_table,
                   not_simulated: pd.DataFrame | None = None) -> str:
    """Failed requests by status and error, and the rows a profile could not simulate."""
    parts = ["no failed request" if fail.empty else tf(fail, [
        ("model", "model", None), ("status_code", "status", _f(".0f")), ("requests", "requests", _f("d")),
        ("error", "error", _clip)])]
    if not_simulated is not None and not not_simulated.empty:
        parts.append("served but not simulated on a profile (left out of its energy figures):\n\n" + tf(
            not_simulated, [("profile", "profile", None), ("rows", "rows", _f("d")),
                            ("energy_method", "reason", _clip)]))
    return "\n\n".join(parts)


def _clip(value: object, width: int = 160) -> str:
    """_str, cut to `width` characters with an ellipsis."""
    text = _str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _profiles_text(profiles: pd.DataFrame, sources: Mapping[str, Mapping[str, str]],
                   tf: TableFn = text_table) -> str:
    """Profile assumptions and their sources."""
    text = tf(profiles, [
        ("profile", "profile", None), ("gpu", "GPU", None), ("gpu_count", "GPUs", _f(".0f")),
        ("tdp_w", "TDP W", _f(".4g")), ("idle_w", "idle W", _f(".4g")), ("pue", "PUE", _f(".3g")),
        ("grid_gco2e_per_kwh", "grid gCO2e/kWh", _f(".4g")),
        ("electricity_usd_per_kwh", "$/kWh", _f(".3g")), ("location", "location", None),
        ("energy_method", "method", None)])
    item, sub = ("- ", "  - ") if tf is md_table else ("  ", "    ")
    lines = [text, "", "sources (from wattbench's data files as installed here; the numbers above are the CSV's):"]
    if "__error__" in sources:
        lines.append(f"{item}the profile data could not be read ({sources['__error__']['error']}); the numbers above "
                     "come from the CSV")
    for name in profiles["profile"]:
        src = sources.get(str(name))
        if not src:
            lines.append(f"{item}{name}: not known to this installation's profiles; see the data files of the run that wrote "
                         "the CSV")
            continue
        lines.append(f"{item}{name}:")
        lines.extend(f"{sub}{label}: {citation}" for label, citation in src.items())
    return "\n".join(lines)
