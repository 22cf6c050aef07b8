"""What `uvicorn app:app` loads: the wattbench FastAPI service.

The service lives in the package (wattbench/service/); this module is its table of contents.

    uvicorn app:app            from the checkout (or `wattbench serve`)

Routes: POST /chat (one prompt), POST /batch (several), GET /health (status; details with the token).
"""
from wattbench.service.app import (  # noqa: F401 - re-exported: this module is the service's front door
    ChatRequest,
    ChatResponse,
    BatchRequest,
    BatchResponse,
    HealthResponse,
    app,
    calculate_cost,
    cli_serve,
    deprecation_notice,
    smart_router,
    timing_metrics,
)

__all__ = [
    "app", "smart_router", "calculate_cost", "deprecation_notice", "timing_metrics", "cli_serve",
    "ChatRequest", "ChatResponse", "BatchRequest", "BatchResponse", "HealthResponse",
]
