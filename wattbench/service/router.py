"""smart_router: a route and a temperature for each prompt from weighted signals (wattbench/data/routes.json),
matched with RE2 so that routing is linear-time for any input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2

from wattbench.paths import DATA_DIR

ROUTES_FILE = DATA_DIR / "routes.json"


#: Prompts longer than this are routed in a worker thread, so that the event loop keeps answering (/health).
ROUTE_INLINE_CHARS = 2_000


@dataclass(frozen=True)
class RouteDecision:
    route: str
    temperature: float
    reason: str


@dataclass(frozen=True)
class _Route:
    name: str
    temperature: float
    signals: tuple[tuple[Any, int], ...]  # (re2 pattern, weight)


def compile_signal(pattern: str) -> Any:
    """A route signal compiled with RE2, a regex engine whose matching time is linear in the input whatever the
    pattern (no backtracking): a prompt can never make routing slow. Case-insensitive, like the data file says.
    RE2 refuses what it cannot run in linear time (backreferences, lookaround): ValueError then."""
    options = re2.Options()
    options.case_sensitive = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ValueError(f"route signal {pattern!r} is not a linear-time (RE2) pattern: {exc}") from None


@lru_cache(maxsize=4)
def load_routes(path: Path = ROUTES_FILE) -> tuple[tuple[_Route, ...], str]:
    """Read the routes data file: (routes in tie-break order, fallback route name)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    routes = []
    for item in raw["routes"]:
        temperature = float(item["temperature"])
        if not 0.1 <= temperature <= 0.9:
            raise ValueError(f"{path}: route {item['name']}: temperature {temperature} is outside 0.1-0.9")
        signals = tuple((compile_signal(s["pattern"]), int(s["weight"])) for s in item["signals"])
        routes.append(_Route(item["name"], temperature, signals))
    fallback = raw["fallback"]
    if fallback not in {r.name for r in routes}:
        raise ValueError(f"{path}: fallback route {fallback!r} is not defined")
    return tuple(routes), fallback


def smart_router(prompt: str) -> RouteDecision:
    """Pick the route (and its temperature) for a prompt; `reason` names what matched."""
    routes, fallback = load_routes()
    best: tuple[int, _Route, list[str]] | None = None
    for route in routes:
        score, hits = 0, []
        for pattern, weight in route.signals:
            match = pattern.search(prompt)
            if match:
                score += weight
                hits.append(match.group(0).strip())
        if score > 0 and (best is None or score > best[0]):
            best = (score, route, hits)
    if best is None:
        route = next(r for r in routes if r.name == fallback)
        return RouteDecision(route.name, route.temperature, "no signal matched; default route")
    score, route, hits = best
    quoted = ", ".join(repr(h) for h in dict.fromkeys(hits))
    return RouteDecision(route.name, route.temperature, f"matched {quoted} (score {score})")
