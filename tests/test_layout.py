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


def _imported(node: ast.AST, modules: dict[str, Path]) -> list[str]:
    """The package modules one import statement names."""
    targets: list[str] = []
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wattbench"):
        targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    elif isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    return [t for t in targets if t in modules]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import statements under `if TYPE_CHECKING:` (never executed)."""
    out: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out.update(id(n) for n in ast.walk(node))
    return out


def _import_graph(modules: dict[str, Path], *, deferred: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports: at module level, and inside functions too (`deferred`: a
    cycle through an import inside a function is a cycle all the same, only later)."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        nodes = ast.walk(tree) if deferred else iter(tree.body)
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
                graph[name].update(t for t in _imported(node, modules) if t != name)
    return graph


def deferred_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports inside a function (not at module level)."""
    modules = _modules()
    out: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body} | _type_checking_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top and (
                    named := _imported(node, modules)):
                out[name].add(max(named, key=len))  # `from wattbench.service import local_llm`: local_llm
    return {k: v for k, v in out.items() if v}


#: The only imports of wattbench's own modules inside functions, each with its reason: local_llm imports
#: LiteLLM and llama-cpp-python at module level (seconds of CPU), paid only when the embedded model is used;
#: config reads the Gemini successor from service.cost (LiteLLM's price map) only when a Gemini key is set.
ALLOWED_DEFERRED = {
    "wattbench.config": {"wattbench.service.cost"},
    "wattbench.service.app": {"wattbench.service.local_llm"},
    "wattbench.service.backend": {"wattbench.service.local_llm"},
}


def test_imports_inside_functions_are_only_the_heavy_ones() -> None:
    assert deferred_imports() == ALLOWED_DEFERRED


def test_no_import_cycles() -> None:
    graph = _import_graph(_modules())
    for module, allowed in ALLOWED_DEFERRED.items():  # the listed deferred imports, each with its reason, only
        graph[module] -= allowed
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
    assert "wattbench.service.local_llm" in graph["wattbench.service.backend"]  # inside a function
    assert "wattbench.service.local_llm" not in _import_graph(_modules(), deferred=False)["wattbench.service.backend"]


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
