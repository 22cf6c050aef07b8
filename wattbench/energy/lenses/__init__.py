"""The energy lenses, one module each, and their registry.

- ``measured``   the serving machine's counters for the embedded model (RAPL, else a CPU-time estimate)
- ``gpu``        NVML energy counters of the GPUs beside the runner, shared among requests in flight
- ``provider``   EcoLogits' provider-side estimate for API models
- ``simulated``  each request replayed on a deployment profile (roofline or the original's latency x TDP)

``LENSES`` is the order in which the report and the dashboards show them (and the CSV its request-level
lenses; the per-profile columns come last). To add a lens: write its
module (a ``Lens`` with its columns and fill function) and add it here.
"""
from wattbench.energy.lenses import gpu, measured, provider, simulated
from wattbench.energy.lenses.base import CLIENT, Column, Lens

LENSES: tuple[Lens, ...] = (simulated.LENS, provider.LENS, measured.LENS, gpu.LENS)


def request_lenses() -> tuple[Lens, ...]:
    """The lenses with one value per request (filled once per request, before the profiles)."""
    return tuple(lens for lens in LENSES if lens.level == "request")


def lens_by_label(label: str) -> Lens | None:
    """The lens whose label (or one of its method labels) is `label`."""
    return next((lens for lens in LENSES if label == lens.label or label in lens.method_labels.values()), None)


__all__ = ["CLIENT", "LENSES", "Column", "Lens", "gpu", "lens_by_label", "measured", "provider", "request_lenses",
           "simulated"]
