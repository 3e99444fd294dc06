"""draw_graph: the computation graph of a Tensor or Value as a graphviz.Digraph.

    g = draw_graph(loss, depth=2, model=model)   # one box per module below depth 2
    save(g, "loss.svg")                          # writes loss.dot too; needs Graphviz's `dot` for SVG

graphviz (the Python package) is imported only inside draw_graph, and rendering needs
the `dot` program; without it save() still writes the DOT text and says how to install it.
"""

import functools
import shutil
import subprocess
import sys
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np

from ._layout import Graph, Unit, nearest, plan, walk

FILL = {
    "op": "#ffffff",
    "param": "#fcd9a8",
    "input": "#bfe0fb",
    "const": "#e4e4e4",
    "module": "#cdeccd",
    "omitted": "#ffffff",
}
LEGEND = {
    "op": "op",
    "param": "parameter",
    "input": "input",
    "const": "constant",
    "module": "module (collapsed)",
}
IDS_SHOWN = 12  # an integer leaf (token ids, targets) lists this many of its numbers
CLUSTER_FILL = ["#f6f8fb", "#eef2f8", "#e6ecf5", "#dee6f2", "#d6e0ef", "#cedaec"]
INSTALL_HINT = (
    "Install Graphviz to render it: apt-get install graphviz (Debian/Ubuntu), brew install graphviz\n"
    "(macOS), conda install graphviz, or see https://graphviz.org/download/ ."
)


def draw_graph(
    output,
    depth=None,
    show=("shape",),
    model=None,
    params=None,
    inputs=None,
    backward=False,
    max_nodes=300,
    fold=True,
    small=6,
    legend=True,
    title=None,
    rankdir="TB",
    open=None,
    graph=None,
):
    """The graph that computed ``output`` (a Tensor or a Value), as a graphviz.Digraph.

    depth: draw modules nested deeper than this as one box each (in/out shapes, parameter count);
      None draws every op. fold: of a ModuleList's identical layers draw the first one open and the rest
      (layers.1 .. layers.5, each feeding the next) as one 'x5' box; below ``depth``, all six as one 'x6'.
    show: any of 'shape' (shape and dtype), 'data', 'grad' (values when at most ``small`` elements, else
      min/mean/max for data and the norm for grad), 'grad_stats' (min/mean/max of grad). A Value always
      shows its data and grad.
    model / params / inputs: where parameter names come from (a Module, or {name: tensor}) and which
      leaves are inputs; by default the root module is found from the ops' scopes.
    backward: number the nodes in the order backward() visits them and draw the gradients' edges.
    open: the keys of a chain of module calls (('root', 'encoder'), as explore() passes) to draw open
      instead of ``depth``. graph: a prebuilt _layout.Graph of ``output``, for drawing many pictures of one graph.
    max_nodes: above this many drawn nodes, collapse modules (then keep the nodes nearest the output),
      and say so in the picture.
    """
    g = graph or Graph(output, model=model, params=params, inputs=inputs)
    units, edges, notes = _fit(g, depth, fold, max_nodes, open)
    steps = _steps(output, g) if backward else {}
    dot = _picture_class()(
        "computation",
        graph_attr={
            "rankdir": rankdir,
            "nodesep": "0.25",
            "ranksep": "0.35",
            "fontname": "Helvetica",
            "fontsize": "11",
            "labelloc": "t",
            "labeljust": "l",
            "newrank": "true",
            **({"label": "\n".join(([title] if title else []) + notes) + "\n"} if title or notes else {}),
        },
        node_attr={"fontname": "Helvetica", "fontsize": "10", "style": "filled", "penwidth": "0.8"},
        edge_attr={"arrowsize": "0.6", "color": "#555555"},
    )
    ids = {u.key: unit_id(g, u) for u in units}
    tree = {}  # chain of frame ids -> (chain, [units], {child chains})
    for u in units:
        _place(tree, u.chain, u)
    _emit(dot, g, tree, (), ids, show, small, steps, 0)
    for (a, b), (p, i) in edges.items():
        if a in ids and b in ids:  # both ends drawn (not cut by the node budget)
            dot.edge(ids[a], ids[b], **_edge_style(g, p, i, steps))
    if legend:
        _legend(dot, g, units, backward)
    return dot


@functools.cache
def _picture_class():
    """graphviz.Digraph whose notebook display, without `dot`, shows the DOT text and the install hint."""
    import graphviz

    class Picture(graphviz.Digraph):
        def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
            if shutil.which("dot") is None:
                return {
                    "text/plain": "Graphviz's `dot` program was not found; here is the DOT text.\n"
                    + INSTALL_HINT
                    + "\n\n"
                    + self.source
                }
            return super()._repr_mimebundle_(include, exclude, **kwargs)

    return Picture


def unit_id(g, u):
    """The DOT name of a drawn unit, the same in every picture of one graph: 'n12' for node 12, 'b' + the
    frame key for a module box (its first frame when folded)."""
    if u.box_chain is not None:
        return "b" + g.frame_key(u.box_chain)
    return "omitted" if u.key == "omitted" else f"n{u.members[0]}"


def _fit(g, depth, fold, max_nodes, open=None):
    """Plan at the asked depth; over budget, collapse modules, then keep the nodes nearest the output."""
    units, of, edges = plan(g, depth, fold, open)
    notes, total = [], len(units)
    if len(units) > max_nodes:
        deepest = max((len(c) for c in g.chain), default=0)
        for d in range(min(deepest, depth if depth is not None else deepest) - 1, -1, -1):
            units, of, edges = plan(g, d, fold)
            if len(units) <= max_nodes:
                notes.append(
                    f"collapsed to depth {d}: the full graph has {total:,} nodes, over the "
                    f"max_nodes={max_nodes} budget; pass depth= for more or less detail"
                )
                break
    if len(units) > max_nodes:
        out_key = of[len(g.nodes) - 1].key
        keep = nearest(units, edges, out_key, max_nodes - 1)
        hidden = [u for u in units if u.key not in keep]
        notes.append(
            f"showing the {len(keep):,} nodes nearest the output: {len(hidden):,} earlier nodes "
            f"(of {total:,}) are summarised in one box, over the max_nodes={max_nodes} budget"
        )
        omitted = Unit("omitted", ())
        omitted.members = [i for u in hidden for i in u.members]
        for (a, b), pi in list(edges.items()):
            if a not in keep and b in keep:
                edges.setdefault(("omitted", b), pi)
        units = [omitted] + [u for u in units if u.key in keep]
    for note in notes:
        warnings.warn("draw_graph: " + note, stacklevel=3)
    return units, edges, notes


def _place(tree, chain, unit):
    node = tree.setdefault((), ((), [], {}))
    for k in range(1, len(chain) + 1):
        key = tuple(id(f) for f in chain[:k])
        child = tree.setdefault(key, (chain[:k], [], {}))
        node[2][key] = child
        node = child
    node[1].append(unit)


def _emit(dot, g, tree, key, ids, show, small, steps, level):
    _, units, children = tree[key]
    for u in units:
        dot.node(ids[u.key], _label(g, u, show, small, steps), **_node_style(g, u))
    for child_key, (child_chain, _, _) in children.items():
        name = "cluster_" + g.frame_key(child_chain)
        with dot.subgraph(name=name) as sub:
            sub.attr(
                label=g.frame_label(child_chain),
                style="rounded,filled",
                color="#9aa7b8",
                fillcolor=CLUSTER_FILL[level % len(CLUSTER_FILL)],
                fontsize="11",
            )
            _emit(sub, g, tree, child_key, ids, show, small, steps, level + 1)


def _label(g, u, show, small, steps):
    if u.key == "omitted":
        ops = sum(1 for i in u.members if g.kind[i] == "op")
        return f"... {len(u.members):,} earlier nodes\n({ops:,} ops) not drawn"
    if u.box_chain is not None:
        name, stem = g.frame_label(u.box_chain), ""
        if u.folded:
            base, _, cls = name.partition(" ")
            stem = base.rstrip("0123456789")
            name = f"{stem}{u.folded[0]}-{u.folded[-1]} {cls}  x{len(u.folded)}"
        lines = [name]
        if not g.scalar:
            lines += [f"{name}: {_shapes(g, ids)}" for name, ids in (("in", u.ins), ("out", u.outs)) if ids]
        n = g.param_count(u.box_chain, u.members)
        lines.append(f"params: {_count(n)}" + (" each" if u.folded else ""))
        ops = sum(1 for i in u.members if g.kind[i] == "op") // max(1, len(u.folded))
        lines.append(f"{ops:,} op{'s' * (ops != 1)}" + (" each" if u.folded else ""))
        if u.folded and u.folded[0] > 0:
            lines.append(f"same layers as {stem}0, drawn open")
        numbered = [steps[i] for i in u.members if i in steps]
        if numbered:
            lines.append(f"backward steps {min(numbered)}-{max(numbered)}")
        return "\n".join(lines)
    i = u.members[0]
    node, kind = g.nodes[i], g.kind[i]
    head = node._op if kind == "op" else (g.label[i] or kind)
    if kind == "op" and not g.scalar:
        consts = [_num(g.nodes[p].data) for p in g.parents[i] if g.kind[p] == "scalar"]
        head = " ".join([head] + consts)
    if i in steps:
        head = f"[{steps[i]}] {head}"
    lines = [head]
    if g.scalar:
        lines += [f"data {node.data:.4f}", f"grad {node.grad:.4f}"]
        return "\n".join(lines)
    if "shape" in show:
        lines.append(f"{tuple(node.data.shape)} {node.data.dtype}")
    if kind != "op" and node.data.dtype.kind in "iu":  # token ids, targets: the numbers are the point
        lines.append(_ids(node.data))
    elif "data" in show:
        lines.append("data " + _summary(node.data, small, norm=False))
    if node.grad is not None and ("grad" in show or "grad_stats" in show):
        gd = np.asarray(node.grad.data)
        lines.append(
            "grad "
            + (_summary(gd, small, norm=False) if "grad_stats" in show else _summary(gd, small, norm=True))
        )
    if i in steps and len([c for c in g.consumers[i] if c in steps]) > 1:
        lines.append(f"grad sums {len([c for c in g.consumers[i] if c in steps])} paths")
    return "\n".join(lines)


def _node_style(g, u):
    if u.key == "omitted":
        return {"shape": "note", "style": "dashed", "fillcolor": FILL["omitted"]}
    if u.box_chain is not None:
        return {"shape": "box3d" if u.folded else "box", "fillcolor": FILL["module"], "penwidth": "1.2"}
    i = u.members[0]
    kind = g.kind[i]
    style = {"shape": "box", "fillcolor": FILL[kind], "style": "rounded,filled" if kind == "op" else "filled"}
    if kind != "op":
        style["shape"] = "ellipse" if g.scalar else "box"
    if i == len(g.nodes) - 1:
        style["penwidth"], style["peripheries"] = "1.5", "2"
    return style


def _edge_style(g, p, i, steps):
    if not steps:
        return {}
    if p in steps and i in steps:
        return {
            "dir": "back",
            "color": "#c0392b",
            "fontcolor": "#c0392b",
            "label": str(steps[i]),
            "fontsize": "9",
            "fontname": "Helvetica",
        }
    return {"style": "dashed", "color": "#aaaaaa"}


def _steps(output, g):
    """Node index -> its place (1, 2, ...) in the order backward() propagates gradients."""
    order = reversed(output._topo())
    return {g.index[id(n)]: k for k, n in enumerate((n for n in order if id(n) in g.index), 1)}


def _legend(dot, g, units, backward):
    kinds = {"op"} | {g.kind[u.members[0]] for u in units if u.box_chain is None and u.key != "omitted"}
    kinds |= {"module"} if any(u.box_chain is not None for u in units) else set()
    with dot.subgraph(name="cluster_legend") as leg:
        leg.attr(label="legend", style="rounded", color="#bbbbbb", fontsize="10")
        shown = [k for k in LEGEND if k in kinds]
        for k in shown:
            text = LEGEND[k] + ("\n[k] = backward step" if backward and k == "op" else "")
            leg.node(
                f"legend_{k}",
                text,
                shape="ellipse" if g.scalar and k not in ("op", "module") else "box",  # as the nodes are drawn
                fillcolor=FILL[k],
                fontsize="9",
                style="rounded,filled" if k == "op" else "filled",
            )
        for a, b in pairwise(shown):
            leg.edge(f"legend_{a}", f"legend_{b}", style="invis")


def _shapes(g, idx):
    shapes = list(dict.fromkeys(tuple(g.nodes[i].data.shape) for i in idx))
    return ", ".join(str(s) for s in shapes) if shapes else "-"


def _count(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,}"


def _num(a):
    return f"{np.asarray(a).item():.6g}"


def _ids(a):
    """'ids 101 1996 4937 ...': the first IDS_SHOWN integers of ``a``, row after row."""
    flat = a.ravel()
    return " ".join(["ids"] + [str(v) for v in flat[:IDS_SHOWN]] + ["..."] * (flat.size > IDS_SHOWN))


def _summary(a, small, norm):
    a = np.asarray(a)
    if a.size <= small:
        return np.array2string(
            a.ravel() if a.ndim > 1 else a, precision=3, separator=", ", suppress_small=True
        )
    if norm:
        return f"norm {float(np.linalg.norm(a.astype(np.float64))):.4g}"
    return f"min {a.min():.3g} mean {a.mean():.3g} max {a.max():.3g}"


def retain_grads(output):
    """Make every op result in ``output``'s graph keep its .grad, for draw_graph to show after backward."""
    for node in walk(output):
        if node._parents and hasattr(node, "retain_grad"):
            node.retain_grad()
    return output


def save(graph, path, format=None, keep_dot=True):
    """Render ``graph`` to ``path`` (.svg, .png, .pdf; .dot/.gv for the text alone). Returns the file written.

    Without Graphviz's `dot` program nothing fails: the DOT text is written and the message says
    how to install Graphviz.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    dot_path = path if fmt in ("dot", "gv") else path.with_suffix(".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(graph.source)
    if fmt in ("dot", "gv"):
        return dot_path
    exe = shutil.which("dot")
    if exe is None:
        print(
            f"Graphviz's `dot` program was not found, so only the DOT text was written: {dot_path}\n"
            + INSTALL_HINT,
            file=sys.stderr,
        )
        return dot_path
    subprocess.run([exe, f"-T{fmt}", str(dot_path), "-o", str(path)], check=True)
    if not keep_dot:
        dot_path.unlink()
    return path


def render_svgs(sources):
    """SVG text for each DOT source, from one run of Graphviz's `dot` (it lays out each graph of its input)."""
    out = subprocess.run([shutil.which("dot"), "-Tsvg"], input="\n".join(sources), capture_output=True, text=True,
                         check=True)
    svgs = ["<svg" + s for s in out.stdout.split("<svg")[1:]]
    assert len(svgs) == len(sources), f"render_svgs: dot returned {len(svgs)} pictures for {len(sources)} graphs"
    return svgs
