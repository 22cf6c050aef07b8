"""The README and docs/ say what the code does: size, the two commands, links that resolve."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short_and_holds_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 12 * 1024
    assert "bash scripts/benchmark.sh" in readme and "bash scripts/test.sh" in readme
    # CI runs the README's test command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^exec bash scripts/test\.sh\s*$", ci, flags=re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    broken = [link for link in links if not re.match(r"^[a-z]+://", link) and not (page.parent / link).exists()]
    assert broken == []


def test_running_page_documents_the_load_columns() -> None:
    from wattbench.analysis.schema import load_schema_markdown

    assert load_schema_markdown() in (ROOT / "docs" / "running.md").read_text(encoding="utf-8")


def test_sweeps_page_documents_the_workload_columns_and_short_examples() -> None:
    from wattbench.analysis.schema import workload_schema_markdown

    text = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    assert workload_schema_markdown() in text
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2 and all(len(b.strip().splitlines()) < 10 for b in blocks[:2])
    assert "wattbench sweep" in blocks[0] and "wattbench report" in blocks[1]


def architecture_tree() -> set[str]:
    """The module paths docs/architecture.md's tree names, from its indentation (`wattbench/` then packages)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("```\n", 2)[1]
    stack: list[tuple[int, str]] = []
    named: set[str] = set()
    for line in block.splitlines():
        entry = line.strip().split(" ", 1)[0]
        if not entry or not (entry.endswith("/") or entry.endswith(".py")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(name for _, name in stack) + entry
        if entry.endswith("/"):
            stack.append((indent, entry))
        elif path.startswith("wattbench/"):
            named.add(path)
    return named


def test_the_architecture_page_has_a_line_for_every_module() -> None:
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "wattbench").rglob("*.py") if p.name != "__init__.py"}
    named = architecture_tree()
    assert sorted(modules - named) == [], "modules without a line in docs/architecture.md"
    assert sorted(named - modules) == [], "lines in docs/architecture.md for modules that do not exist"


def test_the_architecture_check_reads_nesting() -> None:  # the test above must be able to fail
    named = architecture_tree()
    assert {"wattbench/protocol/sse.py", "wattbench/energy/lenses/gpu.py", "wattbench/cli.py"} <= named
    assert "wattbench/sse.py" not in named and "wattbench/lenses/gpu.py" not in named


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_every_python_block_in_the_docs_is_run_below() -> None:
    # a new block joins the test that runs it (the two below), or it drifts from the code unseen
    blocks = {str(page.relative_to(ROOT)): len(python_blocks(page)) for page in PAGES if python_blocks(page)}
    assert blocks == {"docs/outputs.md": 1, "docs/running.md": 1}


def test_the_python_blocks_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/running.md: a real service child on 127.0.0.1 (a fixed answer instead of the model), the real sender;
    # then docs/outputs.md on the CSV of what it measured
    import plotly.graph_objects as go

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTBENCH_MOCK_RESPONSE", "Paris.")
    monkeypatch.delenv("WATTBENCH_API_TOKEN", raising=False)
    shown: list[str] = []
    monkeypatch.setattr(go.Figure, "show", lambda fig, *a, **k: shown.append(fig.layout.title.text))
    [running] = python_blocks(ROOT / "docs" / "running.md")
    scope: dict = {}
    exec(compile(running, "docs/running.md", "exec"), scope)
    df = scope["df"]
    assert len(df) == 12 * 4 and df["success"].all()  # the 12 default prompts on the four default profiles
    assert set(df["response_text"]) == {"Paris."}
    df.to_csv(tmp_path / "run.csv", index=False)
    [outputs] = python_blocks(ROOT / "docs" / "outputs.md")
    scope = {"csv_path": str(tmp_path / "run.csv"), "df": df}
    exec(compile(outputs, "docs/outputs.md", "exec"), scope)
    assert "requests: 12 (12 successful, 0 failed); rows (request x profile): 48" in scope["out"]["report_text"]
    assert shown == ["GPU comparison: carbon, cost, latency and energy per deployment profile"]
    assert sorted(p.name for p in (tmp_path / "outputs").glob("*.html")) == sorted(
        [*(Path(path).name for path in scope["out"]["dashboards"].values()), "index.html"])
    assert len(scope["out"]["dashboards"]) == 7
