"""explore: a computation graph as one HTML page you click into, inspect and step through.

    page = explore(loss, model=model)   # shows inline in Jupyter
    page.save("graph.html")             # one self-contained file: no network, no third-party code

The page holds one Graphviz layout per *state*. A state is one module call drawn open together with
the calls that contain it (everything else drawn as boxes), so there is one state per module call and
the page stays small; clicking a box switches to its state, clicking an open module's frame to its
parent's. Beside the pictures the page carries every node's statistics, the gradient along every edge
and the order in which backward() (or the forward pass) visits the nodes; explore.js draws from them.
"""

import base64
import gzip
import re
import shutil
import sys

import numpy as np

from .. import ops
from ..tensor import _unbroadcast
from ._layout import Graph
from ._page import page
from .graph import INSTALL_HINT, draw_graph, render_svgs, unit_id

SMALL = 16  # tensors with at most this many elements show their values


def explore(root, model=None, path=None, params=None, inputs=None, title=None):
    """The graph that computed ``root`` (a Tensor or a Value) as an interactive page (a Page).

    It opens at depth 1 (the root module open, its children as boxes); a click opens a box in place.
    Selecting a node shows its op, module, shape, dtype, value and gradient statistics and the primitive
    in ops.py that made it. The step slider lights nodes in backward()'s order (or a forward order: each
    node after its inputs).
    Gradients on inner nodes and edges need the graph: call ``viz.retain_grads(loss)`` and
    ``loss.backward(retain_graph=True)`` first, or explore before backward. ``path=`` saves it too.
    """
    title = title or "computation graph"
    if shutil.which("dot") is None:
        msg = "Graphviz's `dot` program was not found, so the graph cannot be laid out.\n" + INSTALL_HINT
        print("explore: " + msg, file=sys.stderr)
        result = page(title, {"error": msg}, "explore")
    else:
        g = Graph(root, model=model, params=params, inputs=inputs)
        states = _states(g)
        sources = [
            draw_graph(root, graph=g, open=chain, legend=False, max_nodes=10**9).source
            for chain in states.values()
        ]
        svgs = [_trim(svg) for svg in render_svgs(sources)]
        result = page(title, _data(g, root, states, svgs, title), "explore")
    if path is not None:
        result.save(path)
    return result


def _states(g):
    """frame key -> the keys of the chain of module calls that state draws open, root first."""
    states = {}
    for chain in dict.fromkeys(g.chain):
        for k in range(len(chain)):
            key = g.frame_key(chain[: k + 1])
            states.setdefault(key, tuple(g.frame_key(chain[: j + 1]) for j in range(k + 1)))
    first = [k for k, c in states.items() if len(c) == 1]
    if len(first) != 1:  # no single root module (Values, or several models): a state with everything at depth 0
        states = {"": ()} | states
    return states


def _trim(svg):
    """Drop what the page does not use: comments, the XML prologue of the next document, the graph's title."""
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    svg = re.sub(r"<\?xml.*", "", svg, flags=re.S) if svg.rstrip().endswith("?>") else svg
    svg = svg[: svg.rfind("</svg>") + 6]
    graph = r'<g id="graph0" class="graph"([^>]*)>'
    return re.sub(graph + r"\n<title>[^<]*</title>", r'<g id="graph0" class="graph"\1>', svg)


def _pack(text):
    """gzip, then base64: the page unpacks each picture with the browser's DecompressionStream when shown."""
    return base64.b64encode(gzip.compress(text.encode(), 9, mtime=0)).decode("ascii")


def _data(g, root, states, svgs, title):
    flows = _flows(root, g)
    frames = {}
    for chain in dict.fromkeys(g.chain):
        for k in range(len(chain)):
            key = g.frame_key(chain[: k + 1])
            if key not in frames:
                module = chain[k].module
                frames[key] = {
                    "label": g.frame_label(chain[: k + 1]),
                    "path": g.frame_path.get(id(module), key),
                    "cls": type(module).__name__,
                    "params": g.param_count(chain[: k + 1], []),
                }
    nodes = [_node(g, i, flows) for i in range(len(g.nodes))]
    docs = {n["op"]: _doc(n["op"]) for n in nodes if n.get("op")}
    backward = _order(root, g)
    forward = [i for i in range(len(g.nodes)) if g.kind[i] != "scalar"]  # g.nodes is parents first
    return {
        "title": title,
        "scalar": g.scalar,
        "frames": frames,
        "states": {key: {"open": list(chain), "svgz": _pack(svg), "boxes": _boxes(g, chain)}
                   for (key, chain), svg in zip(states.items(), svgs)},
        "start": next(k for k, c in states.items() if len(c) <= 1),
        "nodes": nodes,
        "parents": [list(p) for p in g.parents],
        "edges": {f"{p},{i}": s for (p, i), s in flows[1].items()},
        "docs": docs,
        "backward": backward,
        "forward": forward,
    }


def _node(g, i, flows):
    n, kind = g.nodes[i], g.kind[i]
    chain = g.chain[i]
    module = g.frame_key(chain) if chain else ""
    d = {"kind": kind, "chain": [g.frame_key(chain[: k + 1]) for k in range(len(chain))], "module": module}
    if kind == "op":
        d["op"] = n._op
    else:
        d["name"] = g.label[i] or kind
    data = np.asarray(n.data)
    d["shape"], d["dtype"] = list(data.shape), str(data.dtype)
    d["data"] = _stats(data)
    grad = n.grad.data if hasattr(n.grad, "data") else n.grad
    if grad is None:
        grad = flows[0].get(i)
    if grad is not None:
        d["grad"] = _stats(np.asarray(grad))
    return d


def _stats(a):
    """min, mean, max (and the values of a small array), as 6-digit numbers."""
    a = np.asarray(a)
    if a.size == 0:
        return {}
    f = a.astype(np.float64)
    s = {"min": _r(f.min()), "mean": _r(f.mean()), "max": _r(f.max())}
    if a.size <= SMALL:
        s["values"] = [_r(x) for x in f.ravel()]
    return s


def _r(x):
    x = float(x)
    return x if not np.isfinite(x) or x == 0 else float(f"{x:.6g}")


def _doc(op):
    fn = getattr(ops, op, None)
    return (fn.__doc__ or "").strip().splitlines()[0] if callable(fn) and fn.__doc__ else ""


def _order(root, g):
    """Node indices in the order backward() visits them (the engine's own topological order, reversed)."""
    return [g.index[id(n)] for n in reversed(root._topo()) if id(n) in g.index and g.kind[g.index[id(n)]] != "scalar"]


def _boxes(g, chain):
    """{box name: [frame keys it holds]} for the module boxes of the state drawing ``chain`` open."""
    from ._layout import plan

    units, _, _ = plan(g, fold=True, open=chain)
    boxes = {}
    for u in units:
        if u.box_chain is not None:
            k = len(u.box_chain)
            boxes[unit_id(g, u)] = sorted({g.frame_key(g.chain[i][:k]) for i in u.members if len(g.chain[i]) >= k})
    return boxes


def _flows(root, g):
    """(node -> its gradient, (parent, node) -> stats of the gradient along that edge), replaying
    backward()'s chain rule without touching any .grad; empty where backward() already freed the graph."""
    if g.scalar:
        return {}, {
            (g.index[id(p)], i): _stats(local * n.grad)
            for i, n in enumerate(g.nodes)
            for p, local in zip(n._parents, n._local)
        }
    order = root._topo()
    if root.data.size != 1 or any(n._parents and n._vjp is None for n in order):
        return {}, {}
    totals, edges, grads = {}, {}, {id(root): np.ones_like(root.data)}
    for node in reversed(order):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        totals[g.index[id(node)]] = grad
        for p, pg in zip(node._parents, node._vjp(grad) if node._parents else ()):
            if pg is None or not p.requires_grad:
                continue
            if pg.shape != p.data.shape:
                pg = _unbroadcast(pg, p.data.shape, node._op)
            edges[(g.index[id(p)], g.index[id(node)])] = _stats(pg)
            grads[id(p)] = pg if id(p) not in grads else grads[id(p)] + pg
    return totals, edges
