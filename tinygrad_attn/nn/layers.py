"""The small layers, with PyTorch's names, shapes and initialisation."""

import math

import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features); PyTorch's U(-1/sqrt(in), 1/sqrt(in)) init."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.zeros((out_features, in_features)), dtype=dtype)
        self.bias = Parameter(np.zeros(out_features), dtype=dtype) if bias else None
        self._reset_parameters()

    def _reset_parameters(self):
        """kaiming_uniform(a=sqrt(5)) as PyTorch, which is U(-1/sqrt(in), 1/sqrt(in)); the bias the same."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        init.uniform_(self.weight, bound)
        if self.bias is not None:
            init.uniform_(self.bias, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        has_bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={has_bias}"


class Embedding(Module):
    """A lookup table (num_embeddings, embedding_dim), N(0, 1) init; padding_idx's row starts at 0 and
    gets no gradient. Ids outside the table are an error."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx={padding_idx} is not a row of a table with "
                             f"{num_embeddings} entries; use an id from 0 to {num_embeddings - 1}")
        self.weight = Parameter(np.zeros((num_embeddings, embedding_dim)), dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self):
        """The padding row is zero (PyTorch's habit); a model that re-draws the table calls this again."""
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """PyTorch's LayerNorm: biased variance over the trailing normalized_shape axes, weight 1, bias 0."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(np.zeros(shape), dtype=dtype) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape), dtype=dtype) if elementwise_affine and bias else None
        self._reset_parameters()

    def _reset_parameters(self):
        if self.weight is not None:
            init.constant_(self.weight, 1.0)
        if self.bias is not None:
            init.constant_(self.bias, 0.0)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout while training; the identity in eval()."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class ReLU(Module):
    """max(x, 0), as a module."""
    def forward(self, x):
        return x.relu()


class GELU(Module):
    """x * Phi(x), as a module; ``approximate='tanh'`` as in PyTorch."""
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return x.gelu(self.approximate)


class Softmax(Module):
    """Softmax along ``dim``, as a module (PyTorch calls the axis dim)."""
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.softmax(self.dim)


class PositionalEncoding(Module):
    """x + PE[start : start + T], then dropout.

    PE[pos, 2i] = sin(pos / 10000^(2i / d_model)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).

    ``start`` is the position of x's first step (a KV-cached decoder passes how many steps it has seen).
    """

    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        position = np.arange(max_len)[:, None]  # (max_len, 1)
        div = np.exp(np.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (ceil(d/2),)
        pe = np.zeros((max_len, d_model))
        pe[:, 0::2] = np.sin(position * div)
        pe[:, 1::2] = np.cos(position * div[: d_model // 2])
        self.pe = pe  # a constant, not a parameter: not in state_dict
        self._pe_cast = {}
        self.dropout = Dropout(dropout)

    def forward(self, x, start=0):
        t = x.shape[1]
        if start + t > len(self.pe):
            raise ValueError(f"PositionalEncoding: positions {start}..{start + t - 1} exceed max_len "
                             f"{len(self.pe)}; build it with a larger max_len")
        pe = self._pe_cast.get(x.dtype)
        if pe is None:
            pe = self._pe_cast[x.dtype] = self.pe.astype(x.dtype)
        return self.dropout(x + pe[start:start + t])  # (B, T, d_model) + (T, d_model)

    def extra_repr(self):
        return f"d_model={self.pe.shape[1]}, max_len={len(self.pe)}"


_ACTIVATIONS = {"relu": lambda x: x.relu(), "gelu": lambda x: x.gelu()}


def activation_fn(activation):
    """'relu', 'gelu' or a callable on Tensors."""
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    return _ACTIVATIONS[activation]


class FeedForward(Module):
    """Position-wise FFN(x) = w_2(dropout(activation(w_1(x)))): PyTorch's linear1 -> w_1, linear2 -> w_2."""

    def __init__(self, d_model, dim_feedforward, dropout=0.1, activation="relu", bias=True, dtype=np.float32):
        super().__init__()
        self.w_1 = Linear(d_model, dim_feedforward, bias, dtype)
        self.w_2 = Linear(dim_feedforward, d_model, bias, dtype)
        self.dropout = Dropout(dropout)
        self.activation = activation_fn(activation)

    def forward(self, x):
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class AdditiveAttention(Module):
    """Bahdanau's additive attention: score(q, k) = v^T tanh(W_q q + W_k k), one hidden layer.

    forward(query (B, T, query_dim), key (B, S, key_dim), value (B, S, d_v), key_padding_mask=None (B, S),
    True = ignore) -> (context (B, T, d_v), weights (B, T, S)); the weights stay in ``attn_weights``.
    """

    def __init__(self, query_dim, key_dim, hidden_dim, dtype=np.float32):
        super().__init__()
        self.w_q = Linear(query_dim, hidden_dim, bias=False, dtype=dtype)
        self.w_k = Linear(key_dim, hidden_dim, bias=False, dtype=dtype)
        self.v = Linear(hidden_dim, 1, bias=False, dtype=dtype)
        self.attn_weights = None

    def forward(self, query, key, value, key_padding_mask=None):
        b, t, s = query.shape[0], query.shape[1], key.shape[1]
        q = self.w_q(query).unsqueeze(2)  # (B, T, 1, hidden)
        k = self.w_k(key).unsqueeze(1)  # (B, 1, S, hidden)
        scores = self.v((q + k).tanh()).reshape(b, t, s)  # (B, T, S)
        bias = F.merge_masks(None, key_padding_mask, b, 1, t, s, scores.dtype, where="AdditiveAttention")
        weights = F.masked_softmax(scores, None if bias is None else bias[:, 0])  # (B, T, S)
        self.attn_weights = weights.data
        return weights @ value, weights  # (B, T, d_v)
