"""The package's layers, bottom to top, and the imports between its modules, read from the source.

docs/make_figures.py draws the architecture picture from these; tests/test_layering.py checks that
every import points down (or sideways within a layer, without cycles), so the picture cannot lie.
"""

import ast
from pathlib import Path

LAYERS = [  # bottom to top: a module may import its own layer and the layers below it
    ("primitives", ["ops", "rng", "topo", "env"]),
    ("engines", ["tensor", "tensor_methods", "creation", "scalar", "gradcheck"]),
    ("composites", ["functional"]),
    ("modules", ["nn"]),
    ("around the model", ["optim", "serialization", "interop", "data", "decoding", "train", "pretrained"]),
    ("pictures", ["viz"]),
    ("command line", ["cli"]),  # the tools: tour, demo, train, bench, graph, attention, embed
]


def imports_between_modules(at_load_only=False):
    """{(importer, imported)} among the package's top-level modules, read from the source with ast.

    at_load_only: only the imports that run when the module loads, not those inside functions (how a
    module reaches one that imports it, such as tensor_methods reaching tensor, or how heavy packages load on use).
    """
    package = Path(__file__).parent.parent / "tinygrad_attn"
    modules = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    edges = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts  # ('nn', 'attention') for nn/attention.py
        for node in _imports(ast.parse(path.read_text()), at_load_only):
            if not node.level:
                continue  # only relative imports name the package's own modules
            folder = list(parts[:-1])[: len(parts) - node.level]  # the package `from .`, `from ..` point at
            target = folder + (node.module.split(".") if node.module else [])
            for name in [target[0]] if target else [alias.name for alias in node.names]:
                if name in modules and name != parts[0]:
                    edges.add((parts[0], name))
    return edges


def _imports(tree, at_load_only):
    """Every `from ... import` in the tree; with at_load_only, not those inside function bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ImportFrom):
            yield node
        if at_load_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
