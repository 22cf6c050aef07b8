"""The direct path: `wattbench run --base-url URL --model NAME` sends to an OpenAI-compatible server (vLLM,
SGLang, llama.cpp server, Ollama, TGI) itself, without the service in between; requests are timed by
transport.OpenAITransport where the bytes arrive."""

from __future__ import annotations

from typing import Any

from wattbench.cli_support import CliError
from wattbench.redact import shown_url
from wattbench.runs.config import RunConfig
from wattbench.client.transport import OpenAITransport, error_detail


def direct_transport(config: RunConfig, api_key: str | None, output_enforce: str = "max-tokens") -> OpenAITransport:
    """The transport of the direct path for this config (the model is required by RunConfig); output_enforce:
    how each prompt's max_tokens is asked for (workloads.resolve_enforce)."""
    assert config.model is not None and config.base_url is not None
    return OpenAITransport(config.base_url, model=config.model, api_key=api_key, output_enforce=output_enforce)


def check_server(base_url: str, api_key: str | None, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """CliError unless GET <base_url>/models answers (200, or 404 from a server without that route); a 401/403
    says to give the key. Returns the /models JSON when there is one."""
    import httpx

    shown = shown_url(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
    except httpx.InvalidURL as exc:
        raise CliError(f"--base-url {shown!r} is not a valid URL ({exc}); e.g. http://127.0.0.1:8000/v1") from None
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the server at {shown} ({type(exc).__name__}: {exc}); check --base-url "
            "(an OpenAI-compatible root such as http://127.0.0.1:8000/v1)"
        ) from None
    if resp.status_code in (401, 403):
        raise CliError(
            f"the server at {shown} refused the key (HTTP {resp.status_code}): pass --api-key or set OPENAI_API_KEY"
        )
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise CliError(
            f"the server at {shown} answered GET /models with HTTP {resp.status_code}: {error_detail(resp.content)}"
        )
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
