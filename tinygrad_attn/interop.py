"""Weights and gradients to and from PyTorch's names, without importing torch.

PyTorch packs the attention input projections into ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,)
(or keeps ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` apart when kdim or vdim differ); here they
are w_q, w_k, w_v. The other renames: out_proj -> w_o, linear1 / linear2 -> feed_forward.w_1 / w_2,
multihead_attn -> cross_attn. Everything else (norm1, layers.0, encoder.norm, ...) keeps its name.
Values may be torch tensors (converted with .detach().cpu().numpy()) or ndarrays.
"""

import numpy as np

from .nn.attention import MultiheadAttention

_RENAMES = {"cross_attn": "multihead_attn", "feed_forward.w_1": "linear1", "feed_forward.w_2": "linear2",
            "w_o": "out_proj"}


def _numpy(value):
    """An ndarray from a torch tensor (duck-typed, so torch need not be importable) or array-like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _torch_name(name):
    for ours, theirs in _RENAMES.items():
        name = name.replace(f".{ours}.", f".{theirs}.")
        if name.startswith(ours + "."):
            name = theirs + name[len(ours):]
    return name


def _table(module):
    """[(torch name, [our names])]: one of ours, or the three of a packed in_proj, in PyTorch's order."""
    mha = {prefix: m for prefix, m in module.named_modules() if isinstance(m, MultiheadAttention)}
    rows, packed = [], set()
    for name in module.state_dict():
        parts = name.split(".")
        owner, proj, rest = ".".join(parts[:-2]), parts[-2] if len(parts) > 1 else "", parts[-1]
        if proj in ("w_q", "w_k", "w_v") and owner in mha:
            m, dot = mha[owner], (owner + "." if owner else "")
            same = m.kdim == m.vdim == m.embed_dim
            if rest == "weight" and not same:
                rows.append((_torch_name(f"{dot}{proj[-1]}_proj_weight"), [name]))
                continue
            key = _torch_name(f"{dot}in_proj_{rest}")
            if key not in packed:
                packed.add(key)
                rows.append((key, [f"{dot}{p}.{rest}" for p in ("w_q", "w_k", "w_v")]))
            continue
        rows.append((_torch_name(name), [name]))
    return rows


def load_torch_state_dict(module, state_dict, strict=True):
    """Load a PyTorch state_dict (nn.Transformer, its stacks and layers, nn.MultiheadAttention, ...) into
    ``module``. Keys PyTorch has and we do not (e.g. none here) or the reverse are reported as by
    Module.load_state_dict, under our names; nothing changes on failure."""
    names = dict(_table(module))
    ours = {}
    for key, value in state_dict.items():
        value = _numpy(value)
        if key in names and len(names[key]) == 3:
            if value.shape[0] % 3:
                raise ValueError(f"load_torch_state_dict: {key} has shape {value.shape}, but a packed in_proj "
                                 f"holds Q, K and V: its first axis must be 3 * embed_dim")
            for name, part in zip(names[key], np.split(value, 3, axis=0)):
                ours[name] = part
        else:
            ours[names[key][0] if key in names else key] = value
    return module.load_state_dict(ours, strict=strict)


def to_torch_state_dict(module, grads=False):
    """{PyTorch name: ndarray}, values or (grads=True) gradients; a missing gradient gives None."""
    params = dict(module.named_parameters(remove_duplicate=False))
    out = {}
    for key, names in _table(module):
        if grads:
            parts = [params[n].grad for n in names]
            missing = any(g is None for g in parts)
            out[key] = None if missing else np.concatenate([g.data for g in parts], axis=0)
        else:
            out[key] = np.concatenate([params[n].data for n in names], axis=0)
    return out
