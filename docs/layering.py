"""The package's layers, bottom to top, and the imports between its modules, read from the source.

docs/make_figures.py draws the architecture picture from these; tests/test_layering.py checks that
every import points down (or sideways within a layer, without cycles), so the picture cannot lie.
"""

import ast
from pathlib import Path

LAYERS = [  # bottom to top: a module may import its own layer and the layers below it
    ("primitives", ["ops", "rng", "topo", "env"]),
    ("engines", ["tensor", "scalar", "gradcheck"]),
    ("composites", ["functional"]),
    ("modules", ["nn"]),
    ("around the model", ["optim", "serialization", "interop", "data", "decoding", "train", "pretrained"]),
    ("pictures", ["viz"]),
    ("command line", ["cli"]),  # the tools: tour, demo, train, bench, graph, attention, embed
]


def imports_between_modules():
    """{(importer, imported)} among the package's top-level modules, read from the source with ast."""
    package = Path(__file__).parent.parent / "tinygrad_attn"
    modules = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    edges = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts  # ('nn', 'attention') for nn/attention.py
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue  # only relative imports name the package's own modules
            folder = list(parts[:-1])[: len(parts) - node.level]  # the package `from .`, `from ..` point at
            target = folder + (node.module.split(".") if node.module else [])
            for name in [target[0]] if target else [alias.name for alias in node.names]:
                if name in modules and name != parts[0]:
                    edges.add((parts[0], name))
    return edges
