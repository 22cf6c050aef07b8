"""wattbench: what serving an LLM costs in time, money, accuracy, energy and carbon.

The layout is the table of contents:

- ``wattbench.service``  the FastAPI service (/chat, /batch, /health), router, cost, model seam, embedded model,
  tracing, tunnel
- ``wattbench.protocol`` what both ends of the wire share: OpenAI streaming (SSE), Retry-After, the metric formulas
- ``wattbench.workloads`` what is sent: prompts files, graders, synthetic / ShareGPT / dataset / trace workloads
- ``wattbench.client``   how one request is sent and timed: the transports, the service child process
- ``wattbench.loadgen``  how load is generated: the plan, the sender, retries and the limiter, workers, Ray
- ``wattbench.runs``     ``wattbench run`` and ``wattbench sweep``: the config, the run store and resume
- ``wattbench.energy``   GPU / datacenter / profile data, the roofline model, the seed's accounting, the lenses
- ``wattbench.analysis`` the CSV rows (enrichment), tables, the report, the dashboards, writing outputs
- ``wattbench.cli``      the ``wattbench`` command
"""
__version__ = "0.2.0"
