"""The package's layout keeps its promises: no import cycles, no module past ~600 lines, the design card's
top-level modules are complete tables of contents, and they work from the checkout."""
from __future__ import annotations

import ast
import collections
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wattbench"
MAX_LINES = 650  # "no module should pass ~600 lines"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (imports inside functions are deferred)."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wattbench"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_no_import_cycles() -> None:
    graph = _import_graph(_modules())
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_sees_imports() -> None:  # the cycle test above must be able to fail
    graph = _import_graph(_modules())
    assert "wattbench.energy.roofline" in graph["wattbench.energy.lenses.simulated"]
    assert "wattbench.analysis.tables" in graph["wattbench.analysis.report"]


def test_no_module_is_too_long() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_top_level_modules_are_explicit_tables_of_contents() -> None:
    for name in ("app.py", "gpu_profiles.py"):
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        star = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]
        assert star == [], name
        exported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        declared = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")
        assert set(ast.literal_eval(declared.value)) == exported, name


def test_design_card_names_work_from_the_checkout() -> None:
    code = ("import gpu_profiles, app; "
            "print(gpu_profiles.simulate_inference(gpu='H100_SXM', active_params_b=8, prompt_tokens=100, "
            "output_tokens=10).gpu, type(app.app).__name__, app.smart_router('What is 2+3?').route)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["H100_SXM", "FastAPI", "Precise"]
