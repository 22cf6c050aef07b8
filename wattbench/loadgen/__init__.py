"""How load is generated: the plan, the sender (BatchProcessor), retries and the limiter, worker processes, Ray."""
