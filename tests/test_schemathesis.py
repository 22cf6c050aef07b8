"""Schemathesis against the real service (uvicorn on 127.0.0.1, LiteLLM's mock_response instead of a model),
with and without a token: every answer must be documented by /openapi.json (status, headers, body schema),
none may be a server error, and none may hang (each request has a 10 s limit; Hypothesis' deadline is 5 s).

The example count is modest so that the suite stays fast; `WATTBENCH_SCHEMATHESIS_EXAMPLES` raises it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from wattbench.client.service_process import ServiceProcess

TOKEN = "schemathesis-token-5f0c2a"
EXAMPLES = int(os.environ.get("WATTBENCH_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module", params=["no token", "token"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    env = {"WATTBENCH_MOCK_RESPONSE": "Paris.", "WATTBENCH_MODEL": "gpt-4o-mini", "WATTBENCH_API_TOKEN": ""}
    headers: dict[str, str] = {}
    if request.param == "token":
        env["WATTBENCH_API_TOKEN"] = TOKEN
        headers = {"Authorization": f"Bearer {TOKEN}"}
    else:
        env.pop("WATTBENCH_API_TOKEN")
    log = tmp_path_factory.mktemp("schemathesis") / "service.log"
    saved = os.environ.pop("WATTBENCH_API_TOKEN", None)
    try:
        with ServiceProcess(env=env, log_path=log) as process:
            yield {"url": process.url, "headers": headers, "log": log, "token": bool(headers)}
    finally:
        if saved is not None:
            os.environ["WATTBENCH_API_TOKEN"] = saved


def run_schemathesis(url: str, headers: dict[str, str]) -> list[str]:
    """Every operation of the service's own /openapi.json, EXAMPLES generated cases each (valid and invalid
    data), every schemathesis check on each answer. Returns the operations it ran."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)
    ran = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            # positive_data_acceptance is left out: a schema-valid request naming a model no provider knows is
            # rightly refused (422, documented); the schema cannot list every model LiteLLM knows.
            case.call_and_validate(headers=dict(headers), timeout=10, excluded_checks=[positive_data_acceptance])

        check()
        ran.append(operation.label)
    return ran


@pytest.mark.slow
def test_every_answer_is_documented_and_none_is_a_server_error(service: dict) -> None:
    ran = run_schemathesis(service["url"], service["headers"])
    assert {"POST /chat", "POST /batch", "GET /health"} <= set(ran)
    assert "Traceback" not in service["log"].read_text()


def test_the_schema_documents_the_errors_the_service_sends(service: dict) -> None:
    import httpx

    document = httpx.get(f"{service['url']}/openapi.json", headers=service["headers"], timeout=10).json()
    chat = document["paths"]["/chat"]["post"]["responses"]
    expected = {"200", "400", "413", "422", "429", "500", "502", "504"} | ({"401"} if service["token"] else set())
    assert set(chat) == expected
    assert chat["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert ("securitySchemes" in document["components"]) == service["token"]
