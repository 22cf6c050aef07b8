"""wattbench: what serving an LLM costs in time, money, accuracy, energy and carbon.

The layout is the table of contents:

- ``wattbench.service``  the FastAPI service (/chat, /batch, /health), router, cost, model seam, embedded model,
  tracing, tunnel
- ``wattbench.runner``   prompts and graders, load plans, the sender with its limiter and retries, the run store
  and resume, the service process
- ``wattbench.energy``   GPU / datacenter / profile data, the roofline model, the seed's accounting, the lenses
- ``wattbench.analysis`` tables, the report, the dashboards, writing outputs
- ``wattbench.cli``      the ``wattbench`` command
"""
__version__ = "0.2.0"
