"""The package's shape: imports point down the layers of docs/layering.py, and files stay readable in a sitting.

docs/layering.py is also what docs/make_figures.py draws docs/architecture.md's picture from.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "tinygrad_attn"
LINE_BUDGET = 400  # a file above it is probably two files, unless its first lines say why it is one
BUDGET_NOTE = "line budget:"

spec = importlib.util.spec_from_file_location("layering", ROOT / "docs" / "layering.py")
layering = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layering)
LEVEL = {module: i for i, (_, modules) in enumerate(layering.LAYERS) for module in modules}


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(modules - set(LEVEL)) == [], "add these modules to LAYERS in docs/layering.py"
    assert sorted(set(LEVEL) - modules) == [], "LAYERS names modules that do not exist"


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} ({layering.LAYERS[LEVEL[a]][0]}) imports {b} ({layering.LAYERS[LEVEL[b]][0]})"
                    for a, b in layering.imports_between_modules()
                    if a in LEVEL and b in LEVEL and LEVEL[b] > LEVEL[a])
    assert upward == []


def test_no_import_cycles_between_modules():
    edges = layering.imports_between_modules(at_load_only=True)  # what runs when a module loads
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state = {}  # module -> "open" while on the path, "done" after

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_stay_within_the_line_budget(path):
    lines = path.read_text().splitlines()
    if len(lines) > LINE_BUDGET:
        head = "\n".join(lines[:15]).lower()
        assert BUDGET_NOTE in head, (
            f"{path.relative_to(ROOT)} has {len(lines)} lines (budget {LINE_BUDGET}): split it, or say in its "
            f"first lines why it is one file ('{BUDGET_NOTE} ...')"
        )
