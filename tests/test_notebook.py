"""benchmark.ipynb: generated from the repository, carries exact copies of its files, and runs headless.

The slow tests execute the notebook alone in an empty directory (as after a Colab upload) with nbclient:
- with no keys and the embedded model (as CI does): the CSV, six dashboards and report; nothing asked, sent or
  opened; running the service cell again stops the first service, and shut-down the second (no orphan);
- with fake keys and mock answers: traces at a loopback OTLP receiver match the CSV, a rejected ngrok token
  (stand-in agent) costs one line, and no key reaches the notebook or any output file;
- with a good ngrok token: the service requires a generated token that no output shows.
"""
from __future__ import annotations

import importlib.util
import json
import re
import socket
from pathlib import Path

import pytest
from fake_ngrok import write_fake_ngrok
from otlp_receiver import OtlpReceiver

from wattbench import notebook as nbs
from wattbench.analysis.site import DASHBOARDS

ROOT = Path(__file__).resolve().parents[1]


def _load_script(path: Path):
    """scripts/build_notebook.py as a module (it is a script of the repository, not part of the package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_notebook = _load_script(ROOT / "scripts" / "build_notebook.py")

NOTEBOOK = ROOT / "benchmark.ipynb"
STAGES = ["1. Set-up", "2. Keys", "3. The service", "4. Public URL (optional)", "5. Deployment profiles",
          "6. Batch", "7. Analysis", "8. Dashboards", "9. Report", "10. Shut down"]


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"])


# ---- the committed notebook -------------------------------------------------------------------------------


def test_notebook_is_what_the_generator_writes() -> None:
    assert NOTEBOOK.read_text(encoding="utf-8") == build_notebook.render(build_notebook.build()), (
        "benchmark.ipynb differs from its generator or from the repository files it carries; "
        "run: python scripts/build_notebook.py"
    )


def test_carried_files_are_exact_copies_of_the_repository_files() -> None:
    carried = {cell["metadata"]["wattbench_file"]: source(cell) for cell in load_notebook()["cells"]
               if "wattbench_file" in cell["metadata"]}
    assert sorted(carried) == sorted(build_notebook.embedded_paths())
    for path, text in carried.items():
        header, _, body = text.partition("\n")
        assert header == f"%%project_file {path}"
        assert body == (ROOT / path).read_text(encoding="utf-8"), (
            f"the notebook's copy of {path} is stale; run: python scripts/build_notebook.py")


def test_carried_files_include_everything_the_pipeline_imports() -> None:
    # Uploaded alone, the notebook must recreate the whole package: every module and data file under
    # wattbench/ (subpackages of subpackages included), and the design card's top-level modules.
    paths = set(build_notebook.embedded_paths())
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "wattbench").rglob("*")
               if p.is_file() and p.suffix in {".py", ".json", ".jsonl"} and "__pycache__" not in p.parts}
    assert package - paths == set()
    assert {"app.py", "gpu_profiles.py", "pyproject.toml", "requirements.txt",
            "wattbench/data/test_prompts.jsonl", "wattbench/energy/lenses/simulated.py"} <= paths
    assert build_notebook.embedded_paths()[:2] == ["pyproject.toml", "requirements.txt"]


def test_stages_are_sections_in_order_and_the_notebook_has_no_outputs() -> None:
    cells = load_notebook()["cells"]
    headings = [line[3:].strip() for cell in cells if cell["cell_type"] == "markdown"
                for line in source(cell).splitlines() if line.startswith("## ")]
    assert headings == STAGES
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_notebook_is_valid_nbformat_4() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"


def test_check_mode_reports_a_stale_notebook_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "benchmark.ipynb"
    stale.write_text("{}\n")
    monkeypatch.setattr(build_notebook, "NOTEBOOK", stale)
    assert build_notebook.main(["--check"]) == 1
    assert capsys.readouterr().err == (
        "error: benchmark.ipynb is out of date; run: python scripts/build_notebook.py\n")


# ---- notebook_support -------------------------------------------------------------------------------------

GEMINI = nbs.KeySpec("GEMINI_API_KEY", True, "")
HOST = nbs.KeySpec("LANGFUSE_HOST", False, "")


def test_key_lookup_prefers_environment_then_colab_then_prompt() -> None:
    asked: list[str] = []

    def prompt(name: str) -> str:
        asked.append(name)
        return "typed"

    def colab(name: str) -> str | None:
        return {"GEMINI_API_KEY": "from-colab"}.get(name)

    assert nbs.find_key(GEMINI, {"GEMINI_API_KEY": " env "}, colab, prompt) == ("env", "environment")
    assert nbs.find_key(GEMINI, {"GEMINI_API_KEY": "  "}, colab, prompt) == ("from-colab", "Colab secrets")
    assert nbs.find_key(GEMINI, {}, None, prompt) == ("typed", "prompt")
    assert nbs.find_key(HOST, {}, None, prompt) == (None, "not set")  # a setting, not a key: never asked
    assert asked == ["GEMINI_API_KEY"]
    assert nbs.find_key(GEMINI, {}, None, None) == (None, "not set")


def test_load_keys_sets_found_keys_and_describes_them_without_values() -> None:
    env = {"LANGFUSE_HOST": "http://127.0.0.1:3000"}
    sources = nbs.load_keys([GEMINI, HOST], environ=env, colab=lambda name: "sk-colab-secret", prompt=None)
    assert sources == {"GEMINI_API_KEY": "Colab secrets", "LANGFUSE_HOST": "environment"}
    assert env == {"LANGFUSE_HOST": "http://127.0.0.1:3000", "GEMINI_API_KEY": "sk-colab-secret"}
    lines = nbs.describe_keys({"GEMINI_API_KEY": "Colab secrets"}, [GEMINI, HOST])
    assert [line.split()[:3] for line in lines] == [
        ["GEMINI_API_KEY", "set", "(Colab"], ["LANGFUSE_HOST", "not", "set"]]
    assert "sk-colab-secret" not in "".join(lines)


# ---- executing it -----------------------------------------------------------------------------------------


def _client(nb: object, cwd: Path):  # -> nbclient.NotebookClient
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})


def _stream_text(cell: dict) -> str:
    streams = [out for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    return "".join(out.get("text", "") for out in streams)


@pytest.mark.slow
def test_set_up_cells_recreate_the_project_files_byte_for_byte_and_keep_existing_ones(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    carried = [cell for cell in nb.cells if "wattbench_file" in cell.metadata]
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    nb.cells = [first_code, *carried]
    (tmp_path / "app.py").write_text("# the user's own app.py\n")
    _client(nb, tmp_path).execute()
    for cell in carried:
        path = cell.metadata["wattbench_file"]
        body = cell.source.partition("\n")[2]  # the file as the notebook carries it
        expected = "# the user's own app.py\n" if path == "app.py" else body
        assert (tmp_path / path).read_text(encoding="utf-8") == expected, path


FAKE_SECRETS = {
    "LANGFUSE_SECRET_KEY": "sk-lf-NOTEBOOK-SECRET-4e1f9a",
    "NGROK_AUTHTOKEN": "2fakeNOTEBOOKngrokTOKEN7c3d1b",
    "WATTBENCH_API_TOKEN": "wb-NOTEBOOK-API-TOKEN-92ab5e",
}
PROMPT_LIMIT = 4


def _cell(nb: object, start: str) -> dict:
    """The first code cell whose source starts with `start`."""
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))  # type: ignore


def _service_url(cell: dict) -> str:
    """The URL that the service cell printed."""
    match = re.search(r"service ready at (\S+):", _stream_text(cell))
    assert match is not None, _stream_text(cell)
    return match.group(1)


def _port_is_closed(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) != 0


def run_notebook(work: Path, env_vars: dict[str, str], *, relaunch: bool = False,
                 extra_cells: tuple[str, ...] = ()) -> dict:
    """Execute benchmark.ipynb alone in the empty directory `work` with these environment variables.

    relaunch: execute the service cell a second time right after the first (as a second Run all would).
    extra_cells: code cells appended at the end. Returns the executed notebook, its text, the service URLs."""
    import nbformat

    (work / "home").mkdir()
    nb = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    nb.cells.extend(nbformat.v4.new_code_cell(code) for code in extra_cells)
    service_cell = next(i for i, c in enumerate(nb.cells) if "SERVICE = ServiceProcess(" in c.source)
    urls = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(work / "home"))  # pyngrok keeps its config under ~/.config/ngrok
        for name, value in env_vars.items():
            env.setenv(name, value)
        client = _client(nb, work)
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
                if index == service_cell:
                    urls.append(_service_url(cell))
                    if relaunch and len(urls) == 1:
                        client.execute_cell(cell, index)
                        urls.append(_service_url(cell))
    return {"work": work, "nb": nb, "text": nbformat.writes(nb), "urls": urls,
            "csv": next((work / "outputs").glob("ai_metrics_*.csv"), None)}


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """No keys at all and the embedded model (as in CI); Langfuse's host points at a receiver that must stay
    empty; the service cell runs twice."""
    with OtlpReceiver() as receiver:
        run = run_notebook(tmp_path_factory.mktemp("colab"), {
            "LANGFUSE_HOST": receiver.url, "WATTBENCH_PROMPT_LIMIT": str(PROMPT_LIMIT),
            "WATTBENCH_MAX_TOKENS": "16",
        }, relaunch=True)
        run["received"] = list(receiver.received)
    return run


@pytest.fixture(scope="module")
def executed_keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fake keys: Langfuse at a loopback receiver, an ngrok token the stand-in agent rejects, a known API
    token; LiteLLM's mock_response answers (fast; the embedded model's run is `executed`)."""
    agent = write_fake_ngrok(tmp_path_factory.mktemp("ngrok"))
    with OtlpReceiver() as receiver:
        run = run_notebook(tmp_path_factory.mktemp("keys"), {
            "LANGFUSE_PUBLIC_KEY": "pk-lf-notebook", "LANGFUSE_HOST": receiver.url, **FAKE_SECRETS,
            "PYNGROK_NGROK_PATH": agent["ngrok_path"],  # the stand-in agent, which rejects this token
            "WATTBENCH_MOCK_RESPONSE": "Paris", "WATTBENCH_MODEL": "gemini/gemini-2.5-flash",
            "WATTBENCH_PROMPT_LIMIT": str(PROMPT_LIMIT),
        })
        run["generations"] = receiver.generations()
    return run


@pytest.mark.slow
def test_run_all_writes_the_csv_the_dashboards_and_the_report(executed: dict) -> None:
    import pandas as pd

    out = executed["work"] / "outputs"
    df = pd.read_csv(executed["csv"])
    assert len(df) == PROMPT_LIMIT * 4  # requests x the 4 default profiles
    assert df["success"].all()
    assert df["model"].unique().tolist() == ["wattbench-local/smollm2-135m-instruct"]
    for filename, _title in DASHBOARDS.values():
        assert (out / filename).stat().st_size > 1000, filename
    assert (out / "index.html").is_file()
    report = (out / "report.txt").read_text(encoding="utf-8")
    assert f"requests: {PROMPT_LIMIT} ({PROMPT_LIMIT} successful, 0 failed)" in report
    assert report in _stream_text(_cell(executed["nb"], 'print(OUTPUTS["report_text"])'))
    figures = [o for c in executed["nb"].cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == len(DASHBOARDS) == 7  # the six of the original, plus the frontier
    # the inline figures are the written ones: the hardware dashboard knows each GPU's memory here too
    assert not any("GPU memory unknown" in json.dumps(o["data"]["application/vnd.plotly.v1+json"])
                   for o in figures)


@pytest.mark.slow
def test_with_no_keys_nothing_is_asked_sent_or_opened(executed: dict) -> None:
    keys = _stream_text(_cell(executed["nb"], "ask = nbs.hidden_prompt()"))
    for spec in nbs.KEYS:
        assert re.search(rf"^{spec.name} +(not set|set \(environment\)) ", keys, re.M), spec.name
    assert re.search(r"^GEMINI_API_KEY +not set ", keys, re.M)
    assert keys.endswith("\nmodel: wattbench-local/smollm2-135m-instruct  (embedded, on this CPU)\n"
                         "tracing: off (it needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)\n")
    assert executed["received"] == []  # Langfuse's host was set, but without keys nothing is sent
    tunnel_cell = _cell(executed["nb"], "PUBLIC_URL = tunnel.open_tunnel(")
    assert _stream_text(tunnel_cell) == (
        f"tunnel: NGROK_AUTHTOKEN is not set, so no public URL; the service stays at {executed['urls'][1]}\n")


@pytest.mark.slow
def test_relaunching_stops_the_first_service_and_shutdown_stops_the_second(executed: dict) -> None:
    first, second = executed["urls"]
    assert first != second
    assert _port_is_closed(first)
    assert _port_is_closed(second)
    assert _stream_text(executed["nb"].cells[-1]).startswith("service stopped (exit code ")


@pytest.mark.slow
def test_a_rejected_ngrok_token_costs_one_line_and_the_run_goes_on(executed_keys: dict) -> None:
    import pandas as pd

    tunnel_cell = _cell(executed_keys["nb"], "PUBLIC_URL = tunnel.open_tunnel(")
    assert len(tunnel_cell.outputs) == 1
    [line] = _stream_text(tunnel_cell).splitlines()
    assert line.startswith("tunnel: not opened, ngrok could not start: authentication failed:")
    assert line.endswith(f"; the service stays at {executed_keys['urls'][0]}")
    assert pd.read_csv(executed_keys["csv"])["success"].all()


@pytest.mark.slow
def test_every_model_call_is_traced_to_langfuse(executed_keys: dict) -> None:
    import pandas as pd

    requests = pd.read_csv(executed_keys["csv"]).drop_duplicates("request_id").set_index("service_request_id")
    generations = {g.attributes["langfuse.trace.id"]: g.attributes for g in executed_keys["generations"]}
    assert len(executed_keys["generations"]) == PROMPT_LIMIT + 1  # + the warm-up request
    assert set(requests.index) <= set(generations)
    for request_id, row in requests.iterrows():
        attrs = generations[request_id]
        assert attrs["langfuse.generation.name"] == row["route"]
        assert attrs["llm.request.temperature"] == pytest.approx(row["temperature"])
        assert attrs["llm.token_count.completion"] == row["completion_tokens"]
        assert attrs["llm.token_count.prompt"] == row["prompt_tokens"]
        assert attrs["llm.cost.total"] == pytest.approx(row["cost_usd"])


@pytest.mark.slow
def test_no_secret_reaches_the_notebook_or_any_output_file(executed_keys: dict) -> None:
    import base64

    basic = base64.b64encode(f"pk-lf-notebook:{FAKE_SECRETS['LANGFUSE_SECRET_KEY']}".encode()).decode()
    files = [p for p in (executed_keys["work"] / "outputs").rglob("*") if p.is_file()]
    assert any(p.name == "service.log" for p in files)
    for secret in [*FAKE_SECRETS.values(), basic]:
        assert secret not in executed_keys["text"]
        for path in files:
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), (secret, path)
    keys = _stream_text(_cell(executed_keys["nb"], "ask = nbs.hidden_prompt()"))
    assert re.search(r"^LANGFUSE_SECRET_KEY +set \(environment\) ", keys, re.M)
    assert re.search(r"^tracing: on, to http://127\.0\.0\.1:\d+/api/public/otel/v1/traces$", keys, re.M)


@pytest.fixture(scope="module")
def executed_public(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A good ngrok token (the stand-in agent) and no WATTBENCH_API_TOKEN, mock answers; a last cell added
    here saves the generated token and says whether the agent still runs."""
    from fake_ngrok import GOOD_TOKEN

    agent = write_fake_ngrok(tmp_path_factory.mktemp("ngrok-good"))
    work = tmp_path_factory.mktemp("public")
    run = run_notebook(work, {
        "NGROK_AUTHTOKEN": GOOD_TOKEN, "PYNGROK_NGROK_PATH": agent["ngrok_path"],
        "WATTBENCH_MOCK_RESPONSE": "Paris", "WATTBENCH_MODEL": "gemini/gemini-2.5-flash",
        "WATTBENCH_PROMPT_LIMIT": "2",
    }, extra_cells=(
        'Path("token.txt").write_text(os.environ["WATTBENCH_API_TOKEN"])\n'
        "from pyngrok import process\n"
        'print("agent running:", process.is_process_running(os.environ["PYNGROK_NGROK_PATH"]))',
    ))
    run["token"] = (work / "token.txt").read_text()
    return run


@pytest.mark.slow
def test_with_a_tunnel_the_service_requires_a_generated_token_never_shown(executed_public: dict) -> None:
    import pandas as pd
    from fake_ngrok import PUBLIC_URL

    cells = executed_public["nb"].cells
    text = _stream_text(next(c for c in cells if "SERVICE = ServiceProcess(" in c.source))
    assert text.startswith("WATTBENCH_API_TOKEN generated for this session; the service requires it")
    assert "'auth_required': True" in text
    tunnel_cell = _cell(executed_public["nb"], "PUBLIC_URL = tunnel.open_tunnel(")
    lines = _stream_text(tunnel_cell).splitlines()
    assert lines[0].startswith(f"tunnel: {PUBLIC_URL} -> http://127.0.0.1:")
    assert lines[1].startswith('try it: curl -H "Authorization: Bearer $WATTBENCH_API_TOKEN"')
    assert pd.read_csv(executed_public["csv"])["success"].all()  # the batch sent the token
    token = executed_public["token"]
    assert len(token) == 43
    assert token not in executed_public["text"]
    for path in (executed_public["work"] / "outputs").rglob("*"):
        if path.is_file():
            assert token not in path.read_text(encoding="utf-8", errors="replace"), path
    assert _stream_text(cells[-1]) == "agent running: False\n"  # shut-down closed the tunnel and its agent
