"""Composites on Tensor: the functions the modules in tinygrad_attn.nn are made of.

Masks, two conventions, both PyTorch's:
- modules (nn.MultiheadAttention, the Transformer) and ``merge_masks``: a bool True key is IGNORED;
- ``scaled_dot_product_attention``: a bool True key TAKES PART.
A float mask is added to the attention scores in both (0 keeps, -inf removes). ``padding_mask`` and
``causal_mask`` build masks in the module convention. A query whose every key is masked gets all-zero
weights (a zero context), never NaN: ops.masked_softmax is the one place that decides it.
"""

import math
from functools import lru_cache

import numpy as np

from . import ops
from .rng import generator
from .tensor import Tensor, apply, unwrap

# ---------------------------------------------------------------- layers and activations


def linear(x, weight, bias=None):
    """x @ weight^T + bias, weight of shape (out, in) as in PyTorch."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} has {x.shape[-1]} features but the weight {weight.shape} "
            f"expects {weight.shape[1]}; the last axis of the input must be in_features"
        )
    return apply(ops.linear, x, weight) if bias is None else apply(ops.linear, x, weight, bias)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, stable for any logits (the Tensor method)."""
    return x.softmax(axis)


def log_softmax(x, axis=-1):
    """x - log(sum(exp(x))) along ``axis``, stable for any logits (the Tensor method)."""
    return x.log_softmax(axis)


def relu(x):
    """max(x, 0)."""
    return x.relu()


def gelu(x, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF; ``approximate='tanh'`` as in PyTorch."""
    return x.gelu(approximate)


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p).

    The identity when not training or p == 0. Draws come from tinygrad_attn.rng (see manual_seed).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return apply(ops.dropout, x, keep=_keep(x.shape, p, x.dtype))


def _keep(shape, p, dtype):
    """Dropout's multiplier for p > 0: 0 where an element is dropped, 1 / (1 - p) where it is kept."""
    if p == 1.0:
        return np.zeros(shape, dtype)
    kept = generator().random(shape, dtype=dtype if dtype == np.float32 else np.float64) >= p
    return (kept * dtype.type(1.0 / (1.0 - p))).astype(dtype, copy=False)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing ``normalized_shape`` axes
    (biased variance, as PyTorch)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(
            f"layer_norm: input of shape {x.shape} does not end in normalized_shape {shape}; "
            f"d_model of the input and of the LayerNorm must agree"
        )
    weight = weight if weight is not None else Tensor(np.ones(shape, dtype=x.dtype), dtype=x.dtype)
    bias = bias if bias is not None else Tensor(np.zeros(shape, dtype=x.dtype), dtype=x.dtype)
    if weight.shape != shape or bias.shape != shape:
        raise ValueError(f"layer_norm: weight {weight.shape} and bias {bias.shape} must both have "
                         f"normalized_shape {shape}")
    return apply(ops.layer_norm, x, weight, bias, axes=tuple(range(-len(shape), 0)), eps=eps)


def token_ids(ids, name="ids"):
    """The Tensor embedding() reads its ids from, so a drawn graph starts at them: a Tensor is kept as it is;
    an array or list becomes one named ``name``, its dtype kept, which draw_graph shows as an input node."""
    if isinstance(ids, Tensor):
        return ids
    data = unwrap(ids)
    tensor = Tensor(data, dtype=data.dtype)
    tensor.name = name
    return tensor


def embedding(ids, weight, padding_idx=None):
    """weight[ids]; ids must be integers in [0, num_embeddings); padding_idx's row gets no gradient.

    The ids are an input of the op (see token_ids) that needs no gradient: the table's is the only one.
    """
    ids = token_ids(ids)
    if weight.ndim != 2:
        raise ValueError(f"embedding: the table must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    n, data = weight.shape[0], ids.data
    if data.dtype.kind not in "iu":
        raise TypeError(f"embedding: token ids must be integers, got dtype {data.dtype} (shape {data.shape})")
    if data.size and (data.min() < 0 or data.max() >= n):
        bad = data[(data < 0) | (data >= n)]
        raise IndexError(
            f"embedding: token id {int(bad[0])} is outside the vocabulary of {n} tokens (ids of shape "
            f"{data.shape} range {int(data.min())}..{int(data.max())}); enlarge the vocabulary or fix the ids"
        )
    return apply(ops.embedding, weight, ids, padding_idx=padding_idx)


def unpack_rows(parts, where, length):
    """Rows put back in a padded layout: (length, W) zeros with row where[i] = row i of the parts side by side,
    parts 2-D Tensors (N, w_i) of one dtype, W the sum of the w_i (nn's Packing.unpack; see ops.unpack_rows)."""
    fits = [isinstance(p, Tensor) and p.ndim == 2 and len(p) == len(where) for p in parts]
    if not parts or not all(fits) or len({p.dtype for p in parts}) > 1:
        seen = [f"{type(p).__name__} {np.shape(p)} {getattr(p, 'dtype', '')}".strip() for p in parts]
        raise ValueError(f"unpack_rows: parts {seen} for {len(where)} places: give one or more 2-D (N, width) "
                         f"Tensors of one dtype, N = len(where)")
    return apply(ops.unpack_rows, *parts, where=where, length=length)


# ---------------------------------------------------------------- loss


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross-entropy on logits (N, C) or (N, C, d1, ...) and integer targets (N,) or (N, d1, ...).

    With smoothing s: loss_i = (1 - s) * -log p_i[t_i] + s * mean_c(-log p_ic); rows whose target is
    ignore_index count for nothing, and 'mean' divides by the rows that count (NaN if none, as PyTorch).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}")
    if logits.ndim < 1 or logits.shape[:1] + logits.shape[2:] != target.shape or logits.ndim == 1:
        raise ValueError(
            f"cross_entropy: logits of shape {logits.shape} and target of shape {target.shape} do not fit; "
            f"logits are (N, C) or (N, C, d1, ...) and target (N,) or (N, d1, ...)"
        )
    c = logits.shape[1]
    t = target.data
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        raise IndexError(
            f"cross_entropy: target {int(t[bad][0])} is not a class in 0..{c - 1} (nor ignore_index)"
        )
    rest = logits.shape[2:]
    if rest:  # classes last, then one row per position: (N * d1 * ..., C)
        logits = logits.reshape(logits.shape[0], c, -1).transpose(1, 2).reshape(-1, c)
        target = target.reshape(-1)
    loss = apply(ops.cross_entropy, logits, target, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction)
    return loss.reshape(t.shape) if reduction == "none" and rest else loss


# ---------------------------------------------------------------- masks


def padding_mask(ids, pad_idx):
    """(B, S) bool, True at padding: a key_padding_mask (module convention, True = ignore)."""
    ids = unwrap(ids)
    return ids == pad_idx


@lru_cache(maxsize=64)
def _causal(size, offset):
    mask = np.triu(np.ones((size, size + offset), dtype=bool), k=1 + offset)
    mask.flags.writeable = False
    return mask


def causal_mask(size, offset=0):
    """(size, offset + size) bool, True where key j comes after query i (module convention, True = ignore).

    ``offset`` past positions (already in a KV cache) precede the queries and are all visible.
    Built once per shape and shared read-only.
    """
    return _causal(int(size), int(offset))


def _as_array(mask):
    return unwrap(mask)


def _as_bias(mask, dtype, name, where):
    """A mask in the module convention as an additive float array: True -> -inf, False -> 0."""
    if mask.dtype == np.bool_:
        return np.where(mask, dtype.type(-np.inf), dtype.type(0))
    if mask.dtype.kind == "f":
        return mask.astype(dtype, copy=False)
    raise TypeError(
        f"{where}: {name} has dtype {mask.dtype}; pass a bool mask (True = ignore this key) or a float "
        f"mask that is added to the scores (0 keeps, -inf removes)"
    )


def merge_masks(attn_mask, key_padding_mask, batch, num_heads, tgt_len, src_len, dtype,
                is_causal=False, where="MultiheadAttention"):
    """One additive bias of shape (B or 1, h or 1, T, S) from module-convention masks, or None.

    attn_mask: (T, S), (B * h, T, S) or (B or 1, h or 1, T or 1, S); key_padding_mask: (B, S).
    is_causal with no attn_mask builds the causal mask. Masks are constants: no gradient flows into them.
    """
    dtype = np.dtype(dtype)
    bias = None
    if attn_mask is None and is_causal:
        attn_mask = causal_mask(tgt_len, src_len - tgt_len)
    if attn_mask is not None:
        m = _as_array(attn_mask)
        allowed = [(tgt_len, src_len), (batch * num_heads, tgt_len, src_len)]
        if m.shape == allowed[0]:
            bias = _as_bias(m, dtype, "attn_mask", where)[None, None]  # (1, 1, T, S)
        elif m.shape == allowed[1]:
            bias = _as_bias(m, dtype, "attn_mask", where).reshape(batch, num_heads, tgt_len, src_len)
        elif m.ndim == 4 and m.shape[0] in (1, batch) and m.shape[1] in (1, num_heads) \
                and m.shape[2] in (1, tgt_len) and m.shape[3] == src_len:  # merged already, e.g. (B, 1, 1, S)
            bias = _as_bias(m, dtype, "attn_mask", where)
        else:
            raise ValueError(
                f"{where}: attn_mask has shape {m.shape} but {tgt_len} queries attend to {src_len} keys; "
                f"pass (T, S) = {allowed[0]}, (B * num_heads, T, S) = {allowed[1]} or (B, num_heads, T, S)"
            )
    if key_padding_mask is not None:
        m = _as_array(key_padding_mask)
        if m.shape != (batch, src_len):
            raise ValueError(
                f"{where}: key_padding_mask has shape {m.shape} but it must be (B, S) = {(batch, src_len)}, "
                f"True at the keys to ignore"
            )
        pad = _as_bias(m, dtype, "key_padding_mask", where)[:, None, None, :]  # (B, 1, 1, S)
        bias = pad if bias is None else bias + pad
    return bias


# ---------------------------------------------------------------- attention


def masked_softmax(scores, bias=None, scale=1.0):
    """softmax(scale * scores + bias) on the last axis; a row masked entirely (all -inf) gives zeros, not NaN.

    ``bias``: None, a constant float ndarray (-inf removes), or a Tensor (a float mask with a gradient).
    """
    if isinstance(bias, Tensor):
        scores, bias, scale = scores * scale + bias, None, 1.0
    elif bias is not None:
        bias = np.asarray(bias)
        try:
            np.broadcast_shapes(scores.shape, bias.shape)
        except ValueError:
            raise ValueError(f"masked_softmax: a bias of shape {bias.shape} does not broadcast against scores of "
                             f"shape {scores.shape}; give one entry per key on its last axis, (..., T, S)") from None
    return apply(ops.masked_softmax, scores, bias=bias, scale=scale)


def attention(q, k, v, bias=None, dropout_p=0.0, training=True, scale=None):
    """dropout(softmax(q k^T * scale + bias)) v on (..., T, d_k), (..., S, d_k), (..., S, d_v); scale
    defaults to 1 / sqrt(d_k). Returns (context (..., T, d_v), weights, dropped): weights (..., T, S) before
    dropout, so they sum to 1 (or 0 for a fully masked query), and dropped, the weights that multiplied v.

    ``bias`` is a constant float ndarray or a Tensor (a float mask that may carry a gradient).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1)  # (..., T, S)
    weights = masked_softmax(scores, bias, scale)
    dropped = dropout(weights, dropout_p, training)
    return dropped @ v, weights, dropped  # (..., T, d_v)


def self_attention(qkv, num_heads, bias=None, dropout_p=0.0, training=True):
    """attention() for self-attention whose q, k, v come from one packed projection, as one op.

    qkv (B, T, 3E) is [q | k | v]; bias (B or 1, h or 1, T, T) as merge_masks makes it, a constant.
    Returns (context (B, T, E), the heads side by side; weights, an ndarray (B, h, T, T) before dropout).
    The same numbers as splitting qkv into heads and calling attention(), with fewer copies and one GEMM
    fewer in the projection's backward: see ops.self_attention.
    """
    _check_packed("self_attention", "qkv", qkv, 3, num_heads)
    b, t, e3 = qkv.shape
    return _run_packed(ops.self_attention, (qkv,), (b, num_heads, t, t), e3 // 3 // num_heads, bias, dropout_p,
                       training)


def cross_attention(q, kv, num_heads, bias=None, dropout_p=0.0, training=True):
    """self_attention() for queries q (B, T, E) and the keys and values of another sequence from one packed
    projection, kv (B, S, 2E) = [k | v]; bias (B or 1, h or 1, T, S). Returns (context (B, T, E), weights
    (B, h, T, S)), the numbers attention() gives on the heads of q, k and v: see ops.cross_attention."""
    _check_packed("cross_attention", "q", q, 1, num_heads)
    _check_packed("cross_attention", "kv", kv, 2, num_heads)
    if q.shape[0] != kv.shape[0] or 2 * q.shape[-1] != kv.shape[-1]:
        raise ValueError(f"cross_attention: q {q.shape} and kv {kv.shape}: kv must be (B, S, 2E) for q (B, T, E), "
                         f"one batch and kv twice q's features")
    (b, t, e), s = q.shape, kv.shape[1]
    return _run_packed(ops.cross_attention, (q, kv), (b, num_heads, t, s), e // num_heads, bias, dropout_p,
                       training)


def _check_packed(where, name, x, parts, num_heads):
    """x must be a Tensor (B, L, parts * E) whose E splits into num_heads heads."""
    if isinstance(x, Tensor) and x.ndim == 3 and num_heads > 0 and x.shape[-1] % (parts * num_heads) == 0:
        return
    form = {"q": "(B, T, E)", "kv": "(B, S, 2E)", "qkv": "(B, T, 3E)"}[name]
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: {name} is a {type(x).__name__}; it must be a {form} Tensor, a projection's output")
    raise ValueError(f"{where}: {name} is {x.shape}; it must be a {form} Tensor with E a multiple of "
                     f"num_heads={num_heads}, num_heads heads of d_k features each")


def _run_packed(op, inputs, weights_shape, d_k, bias, dropout_p, training):
    """Run ops.self_attention or ops.cross_attention: the weights' array (B, h, T, S), the mask checked
    against it, dropout's keep."""
    where = op.__name__
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{where}: dropout_p must be in [0, 1], got {dropout_p}")
    if isinstance(bias, Tensor):
        raise TypeError(f"{where}: bias is a Tensor; this op takes a constant mask (an ndarray). For a bias "
                        "with a gradient, split the heads and call attention()")
    dtype = inputs[0].dtype
    weights = np.empty(weights_shape, dtype)
    if bias is not None:
        bias = np.asarray(bias)
        if bias.ndim > 4 or any(n not in (1, m) for n, m in zip(bias.shape[::-1], weights_shape[::-1])):
            raise ValueError(f"{where}: a bias of shape {bias.shape} does not broadcast to the weights {weights_shape} "
                             f"without adding axes; give (B or 1, h or 1, T or 1, S)")
    keep = _keep(weights_shape, dropout_p, dtype) if training and dropout_p > 0 else None
    context = apply(op, *inputs, heads=weights_shape[1], bias=bias, scale=1.0 / math.sqrt(d_k), keep=keep,
                    weights=weights)
    return context, weights


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None):
    """PyTorch's F.scaled_dot_product_attention: softmax(q k^T / sqrt(d_k) + mask) v.

    Here a bool attn_mask True means the key TAKES PART (the opposite of the modules); a float mask
    is added. is_causal lets query i see keys j <= i. Dropout applies whenever dropout_p > 0.
    """
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise ValueError(
            f"scaled_dot_product_attention: query {query.shape}, key {key.shape}, value {value.shape}: each needs "
            f"at least 2 axes (..., L, d); a single query vector is query[None] (one row, T = 1)"
        )
    if any(x.dtype.kind != "f" for x in (query, key, value)):
        raise TypeError(
            f"scaled_dot_product_attention: query {query.dtype}, key {key.dtype}, value {value.dtype}: attention "
            f"runs on floating-point tensors; convert with .astype(np.float32)"
        )
    if query.shape[-1] == 0:
        raise ValueError(f"scaled_dot_product_attention: query {query.shape}: the feature size d_k is 0, so "
                         f"there is nothing to score (and 1 / sqrt(d_k) is undefined)")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: query {query.shape}, key {key.shape}, value {value.shape}: "
            f"query and key need one feature size d_k, key and value one length S"
        )
    t, s = query.shape[-2], key.shape[-2]
    bias = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass attn_mask or is_causal=True, not both")
        later = np.triu(np.ones((t, s), dtype=bool), k=1)  # key j after query i (top-left aligned)
        bias = _as_bias(later, np.dtype(query.dtype), "is_causal", "scaled_dot_product_attention")
    elif isinstance(attn_mask, Tensor) and attn_mask.requires_grad:
        bias = attn_mask
    elif attn_mask is not None:
        m = _as_array(attn_mask)
        if m.dtype != np.bool_ and m.dtype.kind != "f":
            raise TypeError(
                f"scaled_dot_product_attention: attn_mask has dtype {m.dtype}; pass a bool mask (True = this key "
                f"takes part, as in PyTorch's function) or a float mask that is added to the scores (0 keeps, "
                f"-inf removes)"
            )
        try:
            np.broadcast_shapes(m.shape, query.shape[:-2] + (t, s))
        except ValueError:
            raise ValueError(
                f"scaled_dot_product_attention: attn_mask of shape {m.shape} does not broadcast to the "
                f"scores' shape {query.shape[:-2] + (t, s)}"
            ) from None
        bias = _as_bias(~m if m.dtype == np.bool_ else m, np.dtype(query.dtype), "attn_mask",
                        "scaled_dot_product_attention")
    return attention(query, key, value, bias, dropout_p, True, scale)[0]
