"""The request budget (loadgen/limiter.py, loadgen/sender.py): one request's attempts and waits together stop
at its budget (default 3 per-attempt timeouts), 429s at a cap; the report says how many requests hit either.
A scripted transport at the seam; the hostile server's stalled stream for the real path."""
from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from hostile_server import HostileServer

from wattbench.analysis.report import _budget_lines, budget_counts
from wattbench.cli import main
from wattbench.client.transport import Attempt, OpenAITransport
from wattbench.loadgen.limiter import RetryPolicy, request_budget_s
from wattbench.loadgen.plan import RequestRecord, WorkItem
from wattbench.loadgen.sender import BatchProcessor
from wattbench.runs.config import RunConfig, retry_policy
from wattbench.workloads.prompts import PromptSpec


class ScriptedTransport:
    """Answers each attempt from a list (the last repeats); "hang" never answers."""

    path, base_url, model = "direct", "http://127.0.0.1:9", "scripted"

    def __init__(self, *answers: Attempt | str) -> None:
        self.answers = list(answers)
        self.sent = 0

    async def send(self, item, request_id, timeout_s) -> Attempt:  # client/transport.Transport
        answer = self.answers[min(self.sent, len(self.answers) - 1)]
        self.sent += 1
        if answer == "hang":
            await asyncio.Event().wait()
        return answer  # type: ignore[return-value]

    async def aclose(self) -> None:
        pass


def one(transport: ScriptedTransport, **policy) -> RequestRecord:
    processor = BatchProcessor(transport, progress=False, timeout_s=10,
                               retry=RetryPolicy(backoff_base_s=0.001, **policy))
    return asyncio.run(processor.run([WorkItem(PromptSpec(prompt_id="p", prompt="hi"), 0)]))[0]


def test_the_default_budget_is_three_attempt_timeouts() -> None:
    assert request_budget_s(RetryPolicy(), 300.0) == 900.0
    assert request_budget_s(RetryPolicy(budget_s=42.0), 300.0) == 42.0
    config = RunConfig.from_argv(["--request-budget", "90", "--max-429", "7", "--max-attempts", "3"])
    assert retry_policy(config) == RetryPolicy(max_attempts=3, max_rate_limited=7, budget_s=90.0)
    assert retry_policy(RunConfig.from_argv([])) == RetryPolicy(max_rate_limited=30)


def test_an_attempt_that_never_ends_stops_at_the_budget() -> None:
    record = one(ScriptedTransport("hang"), budget_s=0.05)
    assert (record.success, record.attempts, record.error) == (
        False, 1, "request budget spent (0.05 s per request): an attempt still running after 1 attempts")


def test_a_429_wait_past_the_budget_is_not_waited() -> None:
    limited = Attempt("rate_limited", 429, "HTTP 429: slow down", retry_after_s=120.0)
    record = one(ScriptedTransport(limited), budget_s=30.0)
    assert (record.success, record.attempts, record.rate_limited, record.status_code, record.error) == (
        False, 1, 1, 429, "request budget spent (30 s per request): a 429 asked to wait 120 s more after 1 "
        "attempts; the last attempt: HTTP 429: slow down")


def test_a_retry_wait_past_the_budget_is_not_waited() -> None:
    failing = Attempt("transient", 503, "HTTP 503: busy", retry_after_s=60.0)
    record = one(ScriptedTransport(failing), budget_s=30.0)
    assert (record.success, record.attempts, record.error) == (
        False, 1, "request budget spent (30 s per request): a retry would wait 60 s more after 1 attempts; the "
        "last attempt: HTTP 503: busy")


def test_an_exhausted_quota_stops_at_the_429_cap() -> None:
    limited = Attempt("rate_limited", 429, "HTTP 429: quota exhausted", retry_after_s=0.001)
    transport = ScriptedTransport(limited)
    record = one(transport, max_rate_limited=4)
    assert (record.success, record.attempts, record.rate_limited, transport.sent, record.error) == (
        False, 4, 4, 4, "429 cap reached: rate-limited 4 times (at most 4 per request); the last: HTTP 429: "
        "quota exhausted")


def test_a_request_served_within_its_budget_is_served() -> None:
    served = Attempt("ok", 200, response={"text": "hi", "completion_tokens": 1}, elapsed_s=0.01)
    flaky = Attempt("transient", 503, "HTTP 503: busy", retry_after_s=0.001)
    record = one(ScriptedTransport(flaky, served), budget_s=30.0)
    assert (record.success, record.attempts, record.error) == (True, 2, None)


def test_a_stalled_server_costs_the_budget_not_six_timeouts() -> None:
    """Real path: the hostile server's stalled stream, the direct transport, the default budget."""
    with HostileServer() as server:
        processor = BatchProcessor(OpenAITransport(server.url, model="hostile"),
                                   progress=False, timeout_s=0.2, retry=RetryPolicy(backoff_base_s=0.001))
        record = asyncio.run(processor.run([WorkItem(PromptSpec(prompt_id="s", prompt="hostile:stall"), 0)]))[0]
    assert record.success is False
    assert record.error.startswith("request budget spent (0.6 s per request): "), record.error
    assert 2 <= record.attempts <= 4  # 0.2 s timeouts, ms backoffs: 3 fit in 0.6 s (not the 6 of max_attempts)


def test_the_report_counts_the_requests_their_budget_gave_up() -> None:
    req = pd.DataFrame({"error": [None, "request budget spent (9 s per request): ...", "HTTP 500: x",
                                  "429 cap reached: rate-limited 30 times", "request budget spent (9 s ...)"]})
    assert budget_counts(req) == (2, 1)
    assert _budget_lines(req) == ["requests given up by their budget: 3 (2 over the request budget of time "
                                  "(--request-budget), 1 at the 429 cap (--max-429))"]
    assert _budget_lines(req.iloc[[0, 2]]) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--request-budget", "0"], "error: --request-budget must be a number of seconds > 0, not 0.0"),
    (["--max-429", "0"], "error: --max-429 must be >= 1, not 0"),
])
def test_bad_budget_options_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_an_answer_over_the_cap_is_cut_and_the_cap_recorded() -> None:
    long = Attempt("ok", 200, response={"text": "abcdef" * 10, "completion_tokens": 60}, elapsed_s=0.01)
    processor = BatchProcessor(ScriptedTransport(long), progress=False,
                               max_answer_chars=8)
    record = asyncio.run(processor.run([WorkItem(PromptSpec(prompt_id="p", prompt="hi"), 0)]))[0]
    assert record.response == {"text": "abcdefab", "completion_tokens": 60, "text_capped_at": 8, "text_chars": 60}
    assert RunConfig.from_argv(["--max-answer-chars", "5"]).max_answer_chars == 5
