"""Module, Parameter and ModuleList, with PyTorch's semantics.

Assigning a Parameter, a Module or a ModuleList to an attribute registers it; named_parameters()
walks the tree with dotted paths (``encoder.layers.0.self_attn.w_q.weight``). Calling a module runs
its forward inside ``tensor.scope(self)``, so every op result records the modules it was made in.
"""

import warnings
from collections import namedtuple

import numpy as np

from ..tensor import Tensor, scope, unwrap


class Parameter(Tensor):
    """A Tensor that a Module registers: float32 unless dtype says otherwise, requires_grad=True."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        if dtype is None:
            dtype = data.dtype if isinstance(data, Tensor) else np.float32
        super().__init__(data, requires_grad=True, dtype=dtype)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class: subclasses call super().__init__(), assign their parts, and define forward()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: cannot assign {name!r} before Module.__init__(); "
                f"call super().__init__() first in __init__"
            )
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(
                f"{type(self).__name__}.{name} is a Parameter; assigning a {type(value).__name__} would drop it "
                f"from parameters() and the optimiser. Wrap it: {name} = Parameter(...), or set .data in place"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        with scope(self):
            return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # ------------------------------------------------------------ the tree

    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and all below it, each module once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack.extend(reversed([(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()]))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter), each shared (tied) Parameter once unless remove_duplicate=False."""
        seen = set()
        tree = self._all_modules(prefix) if recurse else [(prefix, self)]
        for name, m in tree:
            for k, p in m._parameters.items():
                if remove_duplicate and id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{name}.{k}" if name else k), p

    def _all_modules(self, prefix=""):
        """Like named_modules but a module reached by two paths appears under both (state_dict's view)."""
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            yield name, m
            stack.extend(reversed([(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()]))

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ state

    def state_dict(self):
        """{dotted name: a copy of the parameter's ndarray}; a tied parameter appears under every name."""
        return {k: p.data.copy() for k, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters, keeping their dtypes.

        Any mis-shaped key, and with strict=True any missing or unexpected key, raises one error that
        names them all, and then nothing has changed. With strict=False a partial match loads what matches
        and warns about the rest, and a state with no key in common is an error (the names are wrong).
        Returns (missing_keys, unexpected_keys).
        """
        own = dict(self.named_parameters(remove_duplicate=False))
        values = {k: unwrap(v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in values]
        unexpected = [k for k in values if k not in own]
        shapes = [f"{k}: checkpoint {values[k].shape}, model {own[k].shape}"
                  for k in own if k in values and values[k].shape != own[k].shape]
        problems = []
        if own and values and len(missing) == len(own):
            problems.append(f"no key matches (the model has e.g. {next(iter(own))!r}, the state "
                            f"{next(iter(values))!r})")
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if shapes:
            problems.append("shape mismatches: " + "; ".join(shapes))
        converted = {}
        for k, p in own.items():  # convert every value before assigning any, so a bad one changes nothing
            if k in values:
                try:
                    converted[k] = np.array(values[k], dtype=p.dtype)
                except (TypeError, ValueError) as e:
                    problems.append(f"{k}: cannot convert {values[k].dtype} to {p.dtype} ({e})")
        if problems:
            raise KeyError(
                f"load_state_dict: the state does not fit this {type(self).__name__} ("
                + " | ".join(problems) + "); nothing was loaded. Was it saved from a model built with other "
                "arguments? (strict=False skips missing and unexpected keys)"
            )
        for k, value in converted.items():
            own[k].data = value
        if missing or unexpected:
            warnings.warn(f"load_state_dict: loaded {len(converted)} of {len(own)} parameters; missing: "
                          f"{', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'}",
                          stacklevel=2)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ modes, dtype, gradients

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's .grad to None."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype):
        """Cast every parameter to a float dtype in place (np.float64 for gradchecks and exact checks)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: parameters must be floating point, got {dtype}")
        for p in self.parameters():
            p.data, p.grad = p.data.astype(dtype), None
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ------------------------------------------------------------ repr

    def extra_repr(self):
        return ""

    def __repr__(self):
        n = self.num_parameters()
        head = f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        if not lines:
            return head + (f"  # {n:,} parameters" if n else "")
        return f"{head[:-1]}\n" + "\n".join(lines) + f"\n)  # {n:,} parameters"


class ModuleList(Module):
    """A list of modules, registered as ``0``, ``1``, ... (so paths read ``layers.0.self_attn``)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it and call its modules")
