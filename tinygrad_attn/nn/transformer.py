"""The encoder-decoder transformer, with PyTorch's nn.Transformer arguments (batch-first).

Post-norm by default, x = LayerNorm(x + Sublayer(x)) as in the paper; norm_first=True gives pre-norm,
x = x + Sublayer(LayerNorm(x)). Masks use the module convention: bool True = ignore, float = added.
"""

import copy

import numpy as np

from .. import functional as F
from ..tensor import is_grad_enabled, unwrap
from . import init
from .attention import MultiheadAttention, check_heads
from .layers import _ACTIVATIONS, Dropout, FeedForward, LayerNorm
from .module import Module, ModuleList


class KVCache:
    """What a decoder keeps between incremental decoding steps.

    ``length``: target positions seen so far; ``layers[i]``: decoder layer i's
    ``{"self": {"k", "v"}, "cross": {"static": True, "k", "v"}}``, tensors (B, h, L, d_k). Self-attention
    keys/values grow by one step per call; the memory's cross-attention keys/values are computed once.
    ``reorder(index)`` picks batch rows (beam search: which hypothesis each beam continues).
    """

    def __init__(self):
        self.length = 0
        self.layers = []

    def layer(self, i):
        while len(self.layers) <= i:
            self.layers.append({"self": {}, "cross": {"static": True}})
        return self.layers[i]

    def reorder(self, index):
        index = np.asarray(index)
        for entry in self.layers:
            for part in entry.values():
                for name in ("k", "v"):
                    if name in part:
                        part[name] = part[name][index]  # (B', h, L, d_k)
        return self


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, each with dropout, a residual and a LayerNorm."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True, dtype=np.float32):
        super().__init__()
        _batch_first(batch_first, "TransformerEncoderLayer")
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, dtype=dtype)
        self.feed_forward = FeedForward(d_model, dim_feedforward, dropout, activation, bias, dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src  # (B, S, d_model)
        if self.norm_first:  # pre-norm: x + Sublayer(LayerNorm(x))
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))  # LayerNorm(x + ...)
        return self.norm2(x + self._ff_block(x))

    def forward_rows(self, x, packing, src_mask):
        """forward (post-norm) for a padded batch's real tokens given as rows, x (N, d_model), with the Packing
        that says where each sits: TransformerEncoder's inference path. Attention needs the tokens back in
        their sequences, where src_mask hides the padding; every other step works token by token."""
        attended = self.self_attn.self_attention_on_rows(x, packing, src_mask)
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        out, _ = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                need_weights=False, is_causal=is_causal)
        return self.dropout1(out)

    def _ff_block(self, x):
        return self.dropout2(self.feed_forward(x))


class TransformerDecoderLayer(Module):
    """Masked self-attention, cross-attention to the memory (PyTorch's multihead_attn), feed-forward."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True, dtype=np.float32):
        super().__init__()
        _batch_first(batch_first, "TransformerDecoderLayer")
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, dtype=dtype)
        self.cross_attn = MultiheadAttention(d_model, nhead, dropout, bias, dtype=dtype)
        self.feed_forward = FeedForward(d_model, dim_feedforward, dropout, activation, bias, dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1, self.dropout2, self.dropout3 = Dropout(dropout), Dropout(dropout), Dropout(dropout)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False, cache=None):
        """cache: None, or this layer's entry of a KVCache (``KVCache.layer(i)``)."""
        own, cross = (None, None) if cache is None else (cache["self"], cache["cross"])
        x = tgt  # (B, T, d_model)
        if self.norm_first:  # pre-norm: x + Sublayer(LayerNorm(x))
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal, own)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal, cross)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal, own))  # post-norm
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal,
                                           cross))
        return self.norm3(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal, kv_cache):
        out, _ = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                need_weights=False, is_causal=is_causal, kv_cache=kv_cache)
        return self.dropout1(out)

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal, kv_cache):
        out, _ = self.cross_attn(x, memory, memory, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                 need_weights=False, is_causal=is_causal, kv_cache=kv_cache)
        return self.dropout2(out)

    def _ff_block(self, x):
        return self.dropout3(self.feed_forward(x))


def _batch_first(batch_first, where):
    if not batch_first:
        raise ValueError(f"{where}: only batch_first=True is supported; inputs are (B, L, d_model)")


def _mask_once(layers, mask, pad, shape, dtype, is_causal, where):
    """A stack's masks merged into one additive bias (B or 1, h or 1, T, S), built once for all layers."""
    if mask is None and pad is None and not is_causal or not len(layers):
        return mask
    b, t, s = shape
    return F.merge_masks(mask, pad, b, layers[0].self_attn.num_heads, t, s, dtype, is_causal, where)


class TransformerEncoder(Module):
    """num_layers copies of encoder_layer (deep copies, as PyTorch), then an optional final norm.

    Inference skips the padding, as PyTorch's does with its nested tensors (enable_nested_tensor): no real
    token reads a padded position (attention masks them as keys, every other step works token by token),
    so only the real tokens are computed, packed as rows (see Packing), and the padded positions come out
    as zeros (then the final norm). It takes that path on PyTorch's conditions, so both give the same numbers
    at every position: a src_key_padding_mask (bool, or float 0 / -inf) with the padding at each row's end
    (mask_check; the packing itself would work for any pattern), no mask, eval mode, nothing that needs a
    gradient, and post-norm TransformerEncoderLayers with biases, ReLU or GELU, one eps and an even number
    of heads. Ours also wants exactly that class (a subclass's forward would be bypassed), no is_causal,
    and some padding to skip.
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers, self.norm = num_layers, norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check  # PyTorch's attributes
        self.use_nested_tensor = enable_nested_tensor and _skips_padding(encoder_layer)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=False):
        b, s = src.shape[0], src.shape[1]
        bias = _mask_once(self.layers, mask, src_key_padding_mask, (b, s, s), src.dtype, is_causal,
                          "TransformerEncoder (mask / src_key_padding_mask)")
        packing = self._packing(src, mask, src_key_padding_mask, is_causal)
        if packing is None:
            x = src  # (B, S, d_model)
            for layer in self.layers:
                x = layer(x, src_mask=bias)
        else:  # inference on a padded batch: the real tokens alone
            x = packing.pack(src)  # (N, d_model)
            for layer in self.layers:
                x = layer.forward_rows(x, packing, bias)
            x = packing.unpack(x)  # (B, S, d_model), zeros at the padding
        return self.norm(x) if self.norm is not None else x

    def _packing(self, src, mask, src_key_padding_mask, is_causal):
        """A Packing of src's real tokens when this forward can skip the padding, else None."""
        if (not self.use_nested_tensor or not len(self.layers) or src.ndim != 3 or mask is not None or is_causal
                or src_key_padding_mask is None or not all(_skips_padding(layer) for layer in self.layers)
                or self.layers[0].training):
            return None
        if is_grad_enabled() and (src.requires_grad or any(p.requires_grad for p in self.parameters())):
            return None  # the graph to record covers every position
        pad = unwrap(src_key_padding_mask)
        if pad.dtype != bool:  # a float mask: padding at -inf, 0 elsewhere (other values add to the scores)
            if not np.all((pad == 0) | np.isneginf(pad)):
                return None
            pad = np.isneginf(pad)
        if not pad.any() or self.mask_check and (pad[:, :-1] > pad[:, 1:]).any():  # a real token after padding
            return None
        return Packing(pad)


def _skips_padding(layer):
    """The layer conditions of TransformerEncoder's inference path (PyTorch's, and exactly this class)."""
    return (type(layer) is TransformerEncoderLayer and not layer.norm_first
            and layer.self_attn.w_q.bias is not None and layer.norm1.eps == layer.norm2.eps
            and layer.feed_forward.activation in _ACTIVATIONS.values() and layer.self_attn.num_heads % 2 == 0)


class Packing:
    """Where a padded batch's real tokens sit, to compute them alone: pack(x (B, S, E)) gives them as rows
    (N, E) in reading order, unpack(rows) puts them back, with zeros at the padding (unpack(*parts) puts
    several sets of rows back side by side: self-attention's q, k, v). Both are ops with VJPs (a gather,
    ops.unpack_rows), so a graph through them is a graph like any other. (PyTorch's pack_padded_sequence
    packs a batch of sequences the same way for its RNNs.)

    key_padding_mask: (B, S) bool, True = padding.
    """

    def __init__(self, key_padding_mask):
        pad = np.asarray(key_padding_mask, bool)
        self.batch, self.length = pad.shape
        self.tokens = np.flatnonzero(~pad.reshape(-1))  # each real token's place among the B * S positions

    def pack(self, x):
        return x.reshape(self.batch * self.length, x.shape[-1])[self.tokens]  # (N, E)

    def unpack(self, *rows):
        padded = F.unpack_rows(rows, self.tokens, self.batch * self.length)
        return padded.reshape(self.batch, self.length, padded.shape[-1])  # (B, S, the rows' widths summed)


class TransformerDecoder(Module):
    """num_layers copies of decoder_layer, then an optional final norm; takes a KVCache for decoding."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        self.num_layers, self.norm = num_layers, norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False, cache=None):
        """With a KVCache, tgt holds only the new steps; tgt_key_padding_mask (if any) covers all steps
        so far, (B, cache.length + T); tgt_is_causal makes the mask over absolute positions."""
        b, t, s = tgt.shape[0], tgt.shape[1], memory.shape[1]
        past = cache.length if cache is not None else 0
        where = "TransformerDecoder ({} / {})"
        self_bias = _mask_once(self.layers, tgt_mask, tgt_key_padding_mask, (b, t, past + t), tgt.dtype,
                               tgt_is_causal, where.format("tgt_mask", "tgt_key_padding_mask"))
        cross_bias = _mask_once(self.layers, memory_mask, memory_key_padding_mask, (b, t, s), tgt.dtype,
                                memory_is_causal, where.format("memory_mask", "memory_key_padding_mask"))
        x = tgt  # (B, T, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask=self_bias, memory_mask=cross_bias,
                      cache=None if cache is None else cache.layer(i))
        if cache is not None:
            cache.length += t
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """PyTorch's nn.Transformer (batch_first=True): encoder and decoder stacks, each with a final LayerNorm.

    forward(src (B, S, d_model), tgt (B, T, d_model), src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=False, tgt_is_causal=False, memory_is_causal=False) -> (B, T, d_model).
    Parameters with more than one axis get xavier_uniform initialisation, as PyTorch's.
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
                 custom_decoder=None, layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True,
                 dtype=np.float32):
        super().__init__()
        check_heads(d_model, nhead, "Transformer")
        layer = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                     activation=activation, layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                     norm_first=norm_first, bias=bias, dtype=dtype)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        if custom_encoder is None:
            norm = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
            custom_encoder = TransformerEncoder(TransformerEncoderLayer(**layer), num_encoder_layers, norm)
        if custom_decoder is None:
            norm = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
            custom_decoder = TransformerDecoder(TransformerDecoderLayer(**layer), num_decoder_layers, norm)
        self.encoder, self.decoder = custom_encoder, custom_decoder
        self._reset_parameters()

    def _reset_parameters(self):
        """PyTorch's: xavier_uniform on every parameter with more than one axis. PyTorch's attention holds
        w_q, w_k, w_v as one in_proj_weight (3E, E), so they are drawn as that one matrix."""
        packed = set()
        for m in self.modules():
            if isinstance(m, MultiheadAttention):
                m._xavier_in_proj()
                packed |= {id(m.w_q.weight), id(m.w_k.weight), id(m.w_v.weight)}
        for p in self.parameters():
            if p.ndim > 1 and id(p) not in packed:
                init.xavier_uniform_(p)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=False,
                tgt_is_causal=False, memory_is_causal=False):
        if src.ndim != 3 or tgt.ndim != 3 or src.shape[0] != tgt.shape[0]:
            raise ValueError(f"Transformer: src {src.shape} and tgt {tgt.shape} must be (B, S, d_model) and "
                             f"(B, T, d_model) with one batch size B")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"Transformer: src {src.shape} and tgt {tgt.shape} must both end in d_model="
                             f"{self.d_model}; embed the tokens to d_model features first")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)  # (B, S, d_model)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, dtype=np.float32):
        """PyTorch's (sz, sz) float mask: -inf above the diagonal (future positions), 0 elsewhere."""
        return np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1)

    def extra_repr(self):
        return f"d_model={self.d_model}, nhead={self.nhead}"
