"""What `uvicorn app:app` loads: the wattbench FastAPI service.

The service lives in the package (wattbench/service/); this module is its table of contents.

    uvicorn app:app            from the checkout (or `wattbench serve`)

Routes: POST /chat (one prompt), POST /batch (several), GET /health (status; details with the token).
"""
from wattbench.protocol.metrics import timing_from_clock as timing_metrics  # noqa: F401 - the metric formulas
from wattbench.service.app import app  # noqa: F401 - re-exported: the service's front door
from wattbench.service.cost import calculate_cost, deprecation_notice  # noqa: F401
from wattbench.service.router import RouteDecision, load_routes, smart_router  # noqa: F401
from wattbench.service.schemas import (  # noqa: F401
    BatchRequest,
    BatchResponse,
    ChatRequest,
    ChatResponse,
    HealthResponse,
)
from wattbench.service.serve import cli_serve  # noqa: F401

__all__ = [
    "app", "smart_router", "RouteDecision", "load_routes", "calculate_cost", "deprecation_notice",
    "timing_metrics", "cli_serve", "ChatRequest", "ChatResponse", "BatchRequest", "BatchResponse",
    "HealthResponse",
]
