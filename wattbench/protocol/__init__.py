"""What both ends of the wire share, written once: OpenAI-compatible streaming (server-sent events and the
chunks they carry), Retry-After in all its forms, and the metric formulas (TTFT, TPOT, tokens/s, in flight).

The service (service/), the load generator's client (client/) and the analysis (analysis/) call these; none of
them parses an event, a Retry-After header or computes a metric on its own."""
