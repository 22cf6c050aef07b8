"""Server-side truth: the serving engine's Prometheus metrics and remote GPUs' energy (dcgm-exporter), sampled
beside a run and turned into per-request figures (server_batch, server_queue, the dcgm share of GPU energy)."""
