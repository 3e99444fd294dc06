"""Multi-head attention with explicit projections w_q, w_k, w_v, w_o (the paper's names)."""


from contextlib import contextmanager

import numpy as np

from .. import functional as F
from ..creation import cat
from . import init
from .layers import Linear
from .module import Module


def check_heads(d_model, nhead, where, names=("d_model", "nhead")):
    """d_model must split into nhead heads of d_k = d_model / nhead features; names as the caller's args."""
    if nhead <= 0 or d_model % nhead:
        raise ValueError(f"{where}: {names[1]}={nhead} does not divide {names[0]}={d_model}; "
                         f"pick nhead so that d_model / nhead is a whole number (d_k)")


@contextmanager
def spelled_out():
    """Inside it, attention records each of its steps (the projections, the heads, q k^T, the softmax, the
    weighted sum) instead of its fast path's one op: for graphs that show what attention is made of."""
    before, MultiheadAttention.fast_path = MultiheadAttention.fast_path, False
    try:
        yield
    finally:
        MultiheadAttention.fast_path = before


def _packable(*linears):
    """True when the layers can run as one product: plain Linears, with biases all or none."""
    return all(type(lin) is Linear for lin in linears) and len({lin.bias is None for lin in linears}) == 1


class MultiheadAttention(Module):
    """PyTorch's nn.MultiheadAttention, batch-first by default, with Q, K, V and output projections apart.

    forward(query (B, T, E), key (B, S, kdim), value (B, S, vdim), key_padding_mask=None, attn_mask=None,
    need_weights=True, average_attn_weights=True, is_causal=False, kv_cache=None) -> (output, weights)

    Masks (ndarrays or Tensors, constants): a bool True key is IGNORED, a float mask is added to the
    scores. key_padding_mask is (B, S); attn_mask is (T, S), (B * num_heads, T, S) or (B, num_heads, T, S).
    is_causal with no attn_mask builds the causal mask (with one, it is PyTorch's hint and attn_mask is
    used). A query with every key masked gets zero weights and a zero context (PyTorch gives NaN).
    weights: (B, T, S) averaged over heads, (B, num_heads, T, S) with average_attn_weights=False, None with
    need_weights=False; after dropout, as PyTorch. ``self.attn_weights`` keeps the last forward's weights of
    every head before dropout, an ndarray (B, num_heads, T, S), for visualisation.

    kv_cache: a dict this layer keeps keys and values in between decoding steps (see nn.KVCache). With
    ``kv_cache["static"]`` true (cross-attention to a fixed memory) K and V are projected on the first call
    and reused; otherwise each call's new keys and values are appended to the cached ones (self-attention).

    Two routes, one result. Self-attention (query is key is value) without need_weights runs as PyTorch's
    F.multi_head_attention_forward does then: w_q, w_k, w_v as one packed product and one fused op,
    F.self_attention (one node in the graph); attention to a memory (key is value) likewise packs w_k, w_v
    and runs F.cross_attention. Every other call (weights wanted, a kv_cache, key and value apart, w_k and w_v
    not plain Linears with biases all or none), and every call inside ``spelled_out()`` (as the graph pictures
    run), records _attend's steps one by one.
    """

    fast_path = True  # the packed route above; spelled_out() turns it off for every instance, in this process

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None, batch_first=True,
                 dtype=np.float32):
        super().__init__()
        check_heads(embed_dim, num_heads, "MultiheadAttention", ("embed_dim", "num_heads"))
        self.embed_dim, self.num_heads, self.d_k = embed_dim, num_heads, embed_dim // num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.dropout, self.batch_first = dropout, batch_first
        self.w_q = Linear(embed_dim, embed_dim, bias, dtype)
        self.w_k = Linear(self.kdim, embed_dim, bias, dtype)
        self.w_v = Linear(self.vdim, embed_dim, bias, dtype)
        self.w_o = Linear(embed_dim, embed_dim, bias, dtype)
        self._reset_parameters()
        self.attn_weights = None

    def _reset_parameters(self):
        """PyTorch's: xavier_uniform over the in-projection, zero in- and out-projection biases; w_o keeps
        Linear's U(-1/sqrt(E), 1/sqrt(E)). With kdim = vdim = E, w_q, w_k, w_v are one packed (3E, E)."""
        self._xavier_in_proj()
        for lin in (self.w_q, self.w_k, self.w_v, self.w_o):
            if lin.bias is not None:
                init.constant_(lin.bias, 0.0)

    def _xavier_in_proj(self):
        if self.kdim == self.vdim == self.embed_dim:
            init.xavier_uniform_(self.w_q.weight, self.w_k.weight, self.w_v.weight)  # PyTorch's in_proj_weight
        else:  # PyTorch's separate q_proj_weight, k_proj_weight, v_proj_weight
            for lin in (self.w_q, self.w_k, self.w_v):
                init.xavier_uniform_(lin.weight)

    def _heads(self, x, b):
        return x.reshape(b, x.shape[1], self.num_heads, self.d_k).transpose(1, 2)  # (B, h, L, d_k)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None, need_weights=True,
                average_attn_weights=True, is_causal=False, kv_cache=None):
        route = self._route(query, key, value, need_weights, kv_cache)  # before the transposes make new tensors
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        self._check(query, key, value)
        b, t, s = query.shape[0], query.shape[1], key.shape[1]
        if route == "self":  # q, k, v in one product, the attention in one op; the same numbers
            qkv = self._packed_projection(query, self.w_q, self.w_k, self.w_v)  # (B, T, 3E)
            bias = F.merge_masks(attn_mask, key_padding_mask, b, self.num_heads, t, t, qkv.dtype, is_causal)
            context, self.attn_weights = F.self_attention(qkv, self.num_heads, bias, self.dropout, self.training)
        elif route == "cross":  # keys and values of one memory: k, v in one product
            q, kv = self.w_q(query), self._packed_projection(key, self.w_k, self.w_v)  # (B, T, E), (B, S, 2E)
            bias = F.merge_masks(attn_mask, key_padding_mask, b, self.num_heads, t, s, q.dtype, is_causal)
            context, self.attn_weights = F.cross_attention(q, kv, self.num_heads, bias, self.dropout, self.training)
        else:  # the spelled-out route, the only one that returns weights (and so sets dropped)
            context, weights, dropped = self._attend(query, key, value, key_padding_mask, attn_mask, is_causal,
                                                     kv_cache)
            self.attn_weights = weights.data  # (B, h, T, S), before dropout
        out = self.w_o(context)  # (B, T, E)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (T, B, E)
        if not need_weights:
            return out, None
        return out, (dropped.mean(axis=1) if average_attn_weights else dropped)

    def _route(self, query, key, value, need_weights, kv_cache):
        """'self' or 'cross' for the fast path's two forms, None for the spelled-out steps."""
        if not self.fast_path or need_weights or kv_cache is not None or key is not value:
            return None
        if query is key and _packable(self.w_q, self.w_k, self.w_v):
            return "self"
        if _packable(self.w_k, self.w_v):
            return "cross"  # a memory, or self-attention whose w_q cannot join the product
        return None

    def self_attention_on_rows(self, x, packing, attn_mask):
        """Self-attention of a batch whose real tokens come as rows x (N, E), with the Packing that says where
        each sits (TransformerEncoder's inference path): the projections see only the N rows, the attention
        runs on the padded (B, S) layout, where attn_mask (B or 1, num_heads or 1, S, S) must hide the
        padding. Returns (N, E), forward's output at the real tokens. packing.unpack writes the three
        projections' outputs side by side straight into the padded layout: with few rows that copies less than
        joining their weights, as forward does."""
        if not (self.fast_path and _packable(self.w_q, self.w_k, self.w_v)):
            padded = packing.unpack(x)
            out, _ = self(padded, padded, padded, attn_mask=attn_mask, need_weights=False)
            return packing.pack(out)
        qkv = packing.unpack(self.w_q(x), self.w_k(x), self.w_v(x))  # (B, S, 3E)
        context, self.attn_weights = F.self_attention(qkv, self.num_heads, attn_mask, self.dropout, self.training)
        return self.w_o(packing.pack(context))  # (N, E)

    def _packed_projection(self, x, *linears):
        """The Linears' outputs for x side by side, (B, L, n * E), from one product: PyTorch's in_proj_weight is
        w_q, w_k, w_v stacked."""
        weight = cat([lin.weight for lin in linears])  # (n * E, in_features)
        bias = None if linears[0].bias is None else cat([lin.bias for lin in linears])
        return F.linear(x, weight, bias)

    def _attend(self, query, key, value, key_padding_mask, attn_mask, is_causal, kv_cache):
        """The attention spelled out: projections, heads, F.attention. Returns (context (B, T, E), weights,
        dropped), the weights before and after dropout, (B, h, T, S)."""
        b, t = query.shape[0], query.shape[1]
        q = self._heads(self.w_q(query), b)  # (B, h, T, d_k)
        if kv_cache is not None and kv_cache.get("static") and "k" in kv_cache:
            k, v = kv_cache["k"], kv_cache["v"]  # memory's keys and values, projected on the first step
        else:
            k = self._heads(self.w_k(key), b)  # (B, h, S, d_k)
            v = self._heads(self.w_v(value), b)  # (B, h, S, d_k)
            if kv_cache is not None:
                if "k" in kv_cache:  # self-attention: this step's keys and values join the earlier ones
                    k, v = cat([kv_cache["k"], k], axis=2), cat([kv_cache["v"], v], axis=2)  # (B, h, S, d_k)
                kv_cache["k"], kv_cache["v"] = k, v
        s = k.shape[2]
        bias = F.merge_masks(attn_mask, key_padding_mask, b, self.num_heads, t, s, q.dtype, is_causal)
        context, weights, dropped = F.attention(q, k, v, bias, self.dropout, self.training)  # (B, h, T, d_k)
        return context.transpose(1, 2).reshape(b, t, self.embed_dim), weights, dropped

    def _check(self, query, key, value):
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(
                f"MultiheadAttention: query {query.shape}, key {key.shape}, value {value.shape}: expected "
                f"3-D (B, L, E) inputs (batch_first=True); add a batch axis with unsqueeze(0)"
            )
        for name, x, d in (("query", query, self.embed_dim), ("key", key, self.kdim),
                           ("value", value, self.vdim)):
            if x.shape[-1] != d:
                raise ValueError(
                    f"MultiheadAttention: {name} has {x.shape[-1]} features (shape {x.shape}) but the layer "
                    f"was built for {d}; d_model of the input and embed_dim must agree"
                )
        if not query.shape[0] == key.shape[0] == value.shape[0] or key.shape[1] != value.shape[1]:
            raise ValueError(
                f"MultiheadAttention: query {query.shape}, key {key.shape}, value {value.shape}: the batch "
                f"sizes must agree, and key and value need one length S"
            )

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, d_k={self.d_k}, " \
               f"dropout={self.dropout}"
