"""What the drawing shows: the graph's nodes, their kinds and modules, and how they collapse.

Everything here is plain Python on the engine's records (``_parents``, ``_op``, ``_scope``);
graph.py turns the resulting plan into DOT text. Traversals are iterative, so a
100,000-op chain is walked without recursion. The words used throughout:

- node: one Tensor or Value of the graph, by its index in ``Graph.nodes`` (parents first).
- frame: one call of one module (a Frame). A module called twice, as a shared
  PositionalEncoding is, gives two frames, drawn as two clusters.
- chain: the tuple of frames a node was computed inside, outermost first
  (Seq2Seq > encoder > layers.0 > self_attn); its frame key ('transformer.encoder.layers.0')
  names the innermost one.
- unit: one drawn node of the picture: a single graph node, or a box.
- box: a module call drawn closed, as one unit holding every node inside it. A run of
  identical boxes from one ModuleList (same class, parameter count and shapes, each feeding
  the next) folds into one box: 'layers.1-5 x5'.
"""

from collections import deque
from itertools import pairwise

import numpy as np

from ..nn.module import ModuleList
from ..scalar import Value
from ..tensor import Tensor
from ..topo import topological_order


def walk(output):
    """Every node ``output`` depends on, parents before children, found without recursion."""
    return topological_order(output, lambda node: reversed(node._parents))


class Frame:
    """One call of one module: a module called twice (a shared PositionalEncoding) is two frames."""

    __slots__ = ("call", "module")

    def __init__(self, module, call):
        self.module, self.call = module, call


class Graph:
    """The nodes of one graph with what drawing needs to know about each.

    ``nodes`` parents-first; ``parents[i]`` node indices; ``kind[i]`` is 'op', 'param',
    'input' (a leaf made outside every module, or named: token ids), 'const' (made inside a module) or
    'scalar' (a one-element constant folded into its consumer's label);
    ``chain[i]`` the tuple of Frames (module calls) the node is drawn in; ``frame_path`` maps
    id(module) to its dotted path ('' for a root).
    """

    def __init__(self, output, model=None, params=None, inputs=None, inline_scalars=True):
        self.output, self.scalar = output, isinstance(output, Value)
        self.nodes = walk(output)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.parents = [tuple(self.index[id(p)] for p in n._parents) for n in self.nodes]
        self.consumers = [[] for _ in self.nodes]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.consumers[p].append(i)
        roots = (
            [model]
            if model is not None
            else list({id(n._scope[0]): n._scope[0] for n in self.nodes if n._scope}.values())
        )
        self.frame_path, self.param_name, self.buffer_name = _names(roots, params)
        self.list_index = {  # id(module) -> (id(ModuleList), index) for every layer of a ModuleList
            id(layer): (id(m), k)
            for root in roots if hasattr(root, "modules")
            for m in root.modules() if isinstance(m, ModuleList)
            for k, layer in enumerate(m)
        }
        self._keys, self._counts, self._chain_keys = {}, {}, {}  # memos
        self.op_chain = self._calls()
        self._classify(inputs or (), inline_scalars)

    def _calls(self):
        """Each op's scope as Frames, one per module call: ops of one module joined by an edge, or
        reading the same input, belong to one call (union-find per nesting level, no recursion)."""
        scopes = [n._scope if n._parents else () for n in self.nodes]
        root = [list(range(len(scopes))) for _ in range(max(map(len, scopes), default=0))]

        def find(k, i):
            r = root[k]
            while r[i] != i:
                r[i] = r[r[i]]
                i = r[i]
            return i

        def join(a, b):
            sa, sb, k = scopes[a], scopes[b], 0
            while k < len(sa) and k < len(sb) and sa[k] is sb[k]:
                ra, rb = find(k, a), find(k, b)
                root[k][max(ra, rb)] = min(ra, rb)
                k += 1

        for i, ps in enumerate(self.parents):
            for p in ps:
                join(p, i)
        for cs in self.consumers:
            for a, b in pairwise(cs):
                join(a, b)
        frames, calls, chains = {}, {}, []
        for i, s in enumerate(scopes):
            chain = []
            for k, module in enumerate(s):
                key = (k, find(k, i))
                if key not in frames:
                    calls[id(module)] = calls.get(id(module), 0) + 1
                    frames[key] = Frame(module, calls[id(module)])
                chain.append(frames[key])
            chains.append(tuple(chain))
        return chains

    def _classify(self, inputs, inline_scalars):
        input_ids = {id(t) for t in (inputs.values() if isinstance(inputs, dict) else inputs)}
        owner_chain = {}  # dotted module path -> chain of frames ending in that module's first call
        for chain in self.op_chain:
            for k, f in enumerate(chain):
                path = self.frame_path.get(id(f.module))
                if path is not None:
                    owner_chain.setdefault(path, chain[: k + 1])
        self.kind, self.chain, self.label = [], [], []
        for i, n in enumerate(self.nodes):
            name = getattr(n, "label", None) if self.scalar else n.name
            if n._parents:
                kind, chain = "op", self.op_chain[i]
            elif id(n) in self.param_name:
                kind, name = "param", name or self.param_name[id(n)]
                chain = self._owner(i, self.param_name[id(n)].rpartition(".")[0], owner_chain)
            elif self.scalar:
                kind, chain = ("input" if name or id(n) in input_ids else "const"), ()
            elif id(n) in input_ids:
                kind, chain = "input", ()
            elif n.requires_grad:
                kind, chain = "param", ()
            elif id(n) in self.buffer_name:
                kind, name, chain = "const", name or self.buffer_name[id(n)], self._common(i)
            elif name:  # named by its maker, as functional.token_ids names the ids it wraps
                kind, chain = "input", ()
            elif n.data.size == 1 and inline_scalars and self.consumers[i]:
                kind, chain = "scalar", ()
            elif n.data.size == 1 or n._scope:
                kind, chain = "const", self._common(i)
            else:
                kind, chain = "input", ()
            self.kind.append(kind)
            self.chain.append(tuple(chain))
            self.label.append(name)

    def _owner(self, i, owner, owner_chain):
        """A parameter sits in the call of its module that uses it, else in its consumers' module."""
        for c in self.consumers[i]:
            for k, f in enumerate(self.op_chain[c]):
                if self.frame_path.get(id(f.module)) == owner:
                    return self.op_chain[c][: k + 1]
        return owner_chain.get(owner) or self._common(i)

    def _common(self, i):
        """The innermost module call shared by every consumer of node i."""
        chains = [self.op_chain[c] for c in self.consumers[i]]
        if not chains:
            return ()
        k = 0
        while all(len(c) > k and c[k] is chains[0][k] for c in chains):
            k += 1
        return chains[0][:k]

    def frame_label(self, chain):
        """'layers.0 (EncoderLayer)': the frame's path relative to its parent frame, and its class."""
        frame = chain[-1]
        if isinstance(frame.module, str):
            return frame.module
        cls = type(frame.module).__name__
        path = self.frame_path.get(id(frame.module))
        if not path:
            return cls
        parent = self.frame_path.get(id(chain[-2].module), "") if len(chain) > 1 else ""
        rel = path[len(parent) + 1 :] if parent and path.startswith(parent + ".") else path
        return f"{rel} ({cls})"

    def chain_keys(self, i):
        """The frame keys of node i's chain of module calls, outermost first."""
        if i not in self._chain_keys:
            chain = self.chain[i]
            self._chain_keys[i] = tuple(self.frame_key(chain[: k + 1]) for k in range(len(chain)))
        return self._chain_keys[i]

    def frame_key(self, chain):
        """A readable, unique cluster name for a frame chain."""
        ids = tuple(id(f) for f in chain)
        if ids not in self._keys:
            self._keys[ids] = self._frame_key(chain)
        return self._keys[ids]

    def _frame_key(self, chain):
        frame = chain[-1]
        path = self.frame_path.get(id(frame.module))
        if path is None:
            path = ".".join(self.frame_label(chain[: k + 1]).split(" ")[0] for k in range(len(chain)))
        return (path or "root") + (f"#{frame.call}" if frame.call > 1 else "")

    def param_count(self, chain, members):
        """Parameters of the module at the end of ``chain``; those among ``members`` when it cannot say."""
        module = chain[-1].module
        if hasattr(module, "parameters"):
            if id(module) not in self._counts:
                unique = {id(p): p for p in module.parameters()}
                self._counts[id(module)] = sum(int(np.size(p.data)) for p in unique.values())
            return self._counts[id(module)]
        return sum(int(np.size(self.nodes[i].data)) for i in members if self.kind[i] == "param")


def _names(roots, params):
    """id -> dotted name for modules, parameters and buffers reachable from ``roots``."""
    frame_path, param_name, buffer_name = {}, {}, {}
    for root in roots:
        if root is None or isinstance(root, str):
            continue
        frame_path.setdefault(id(root), "")
        named = root.named_modules() if hasattr(root, "named_modules") else ()
        for path, m in named:
            frame_path.setdefault(id(m), path)
            for attr, v in sorted(getattr(m, "__dict__", {}).items()):
                if isinstance(v, Tensor) and not v.requires_grad:
                    buffer_name.setdefault(id(v), f"{path}.{attr}" if path else attr)
        if hasattr(root, "named_parameters"):
            for path, p in root.named_parameters():
                param_name.setdefault(id(p), path)
    if isinstance(params, dict):
        param_name.update({id(p): n for n, p in params.items()})
    elif params is not None:
        for item in params:
            n, p = item if isinstance(item, tuple) else (f"param{len(param_name)}", item)
            param_name[id(p)] = n
    return frame_path, param_name, buffer_name


# ---------------------------------------------------------------- the plan: units, boxes, edges


class Unit:
    """One drawn node: a graph node, or a collapsed module box holding many."""

    __slots__ = ("box_chain", "chain", "folded", "ins", "key", "members", "outs")

    def __init__(self, key, chain, box_chain=None):
        self.key, self.chain, self.box_chain = key, chain, box_chain
        self.members, self.ins, self.outs, self.folded = [], [], [], []


def plan(graph, depth=None, fold=True, open=None):
    """Group nodes into drawn units; modules deeper than ``depth`` become one box each.

    With ``fold``, only the first of a ModuleList's identical layers is drawn open; the rest are boxes
    that fold into one ('layers.1-5 x5'). ``open``, the frame keys of a chain of module calls
    (('root', 'encoder', 'encoder.layers.0')), replaces ``depth``: those frames are drawn open and every
    other module is a box (runs of identical boxes still fold).
    """
    units, of = {}, [None] * len(graph.nodes)
    repeats = _repeats(graph) if fold and open is None else set()
    for i, kind in enumerate(graph.kind):
        if kind == "scalar":
            continue
        chain = graph.chain[i]
        cut = len(chain) if depth is None else depth
        if open is not None:
            keys = graph.chain_keys(i)
            cut = next((k for k, key in enumerate(keys) if k >= len(open) or key != open[k]), len(chain))
        cut = next((k for k, f in enumerate(chain[:cut]) if id(f) in repeats), cut)
        if len(chain) > cut:
            box = chain[: cut + 1]
            key = ("box",) + tuple(id(f) for f in box)
            unit = units.get(key) or units.setdefault(key, Unit(key, box[:-1], box))
        else:
            key = ("node", i)
            unit = units.setdefault(key, Unit(key, chain))
        unit.members.append(i)
        of[i] = unit
    for i, ps in enumerate(graph.parents):
        for p in ps:
            if of[p] is not None and of[p] is not of[i]:
                if of[i].box_chain is not None and p not in of[i].ins:
                    of[i].ins.append(p)
                if of[p].box_chain is not None and p not in of[p].outs:
                    of[p].outs.append(p)
    out = of[len(graph.nodes) - 1]
    if out.box_chain is not None and len(graph.nodes) - 1 not in out.outs:
        out.outs.append(len(graph.nodes) - 1)
    if fold:
        _fold(graph, units, of)
    edges = {}
    for i, ps in enumerate(graph.parents):
        for p in ps:
            a, b = of[p], of[i]
            if a is not None and a is not b:
                edges.setdefault((a.key, b.key), (p, i))
    return list(dict.fromkeys(units.values())), of, edges


def _repeats(graph):
    """ids of the frames of layers 1, 2, ... of a ModuleList whose layer 0 (same class) is drawn too."""
    first, place = {}, {}
    for chain in dict.fromkeys(graph.chain):
        for k, f in enumerate(chain):
            where = graph.list_index.get(id(f.module))
            if where is not None and id(f) not in place:
                key = (id(chain[k - 1]) if k else None, where[0], type(f.module).__name__)
                place[id(f)] = (key, where[1])
                first[key] = min(first.get(key, where[1]), where[1])
    return {fid for fid, (key, n) in place.items() if n > first[key]}


def _fold(graph, units, of):
    """Fold runs of identical boxes from one ModuleList (layers 0 .. 5: same class, parameter count
    and shapes, each feeding the next) into one box."""
    groups = {}
    for u in units.values():
        if u.box_chain is None:
            continue
        frame = u.box_chain[-1]
        where = graph.list_index.get(id(frame.module))
        if where is None:
            continue
        shapes = (
            []
            if graph.scalar
            else [sorted({graph.nodes[i].data.shape for i in ids}) for ids in (u.ins, u.outs)]
        )
        sig = (
            tuple(id(f) for f in u.chain),
            where[0],
            type(frame.module).__name__,
            frame.call,
            graph.param_count(u.box_chain, u.members),
            repr(shapes),
        )
        groups.setdefault(sig, []).append((where[1], u))
    for group in groups.values():
        group.sort(key=lambda r: r[0])
        runs = [[group[0]]]
        for prev, cur in pairwise(group):
            feeds = cur[0] == prev[0] + 1 and set(prev[1].outs) & set(cur[1].ins)
            runs[-1].append(cur) if feeds else runs.append([cur])
        for run in (r for r in runs if len(r) > 1):
            head = run[0][1]
            head.folded = [n for n, _ in run]
            for _, u in run[1:]:
                head.members += u.members
                head.ins += [i for i in u.ins if i not in head.ins]
                head.outs = u.outs
                for i in u.members:
                    of[i] = head
                units[u.key] = head
            head.ins = [i for i in head.ins if of[i] is not head]


def nearest(units, edges, out_key, budget):
    """The ``budget`` units closest to the output (breadth first against the edges)."""
    into = {}
    for a, b in edges:
        into.setdefault(b, []).append(a)
    keep, queue = {out_key}, deque([out_key])
    while queue and len(keep) < budget:
        for a in into.get(queue.popleft(), ()):
            if a not in keep and len(keep) < budget:
                keep.add(a)
                queue.append(a)
    return keep
