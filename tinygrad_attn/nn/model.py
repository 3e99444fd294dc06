"""A sequence-to-sequence model: embeddings scaled by sqrt(d_model), positional encoding, the Transformer,
and an output projection (the ``generator``) to target-vocabulary logits.

    model = make_model(src_vocab=20, tgt_vocab=20, N=2, d_model=128, d_ff=512, h=4, dropout=0.1)
    src_pad = F.padding_mask(src, pad_idx)                         # (B, S) bool, True = padding
    logits = model(src, tgt_in, src_key_padding_mask=src_pad)     # (B, T, tgt_vocab); causal by default

Incremental decoding with a KV cache (exactly the logits of full recomputation, one new token per step):

    with no_grad():
        memory = model.encode(src, src_key_padding_mask=src_pad)   # (B, S, d_model), once
        cache = KVCache()                                          # or model.new_cache()
        ys = np.full((B, 1), bos)
        for _ in range(max_len):
            logits = model.decode(ys[:, -1:], memory, memory_key_padding_mask=src_pad, cache=cache)  # (B,1,V)
            ys = np.concatenate([ys, logits.data[:, -1].argmax(-1)[:, None]], axis=1)

Feed only the new tokens each step; the cache knows their positions (``cache.length``). For beam search,
``cache.reorder(rows)`` keeps the batch rows each beam continues (and index memory / src_pad the same way).
The first call may feed several tokens (a prefix); each step sees itself and everything before it.
"""

import math

import numpy as np

from .. import functional as F
from ..tensor import unwrap
from . import init
from .layers import Embedding, Linear, PositionalEncoding
from .module import Module
from .transformer import KVCache, Transformer


class Seq2Seq(Module):
    """Encoder-decoder transformer on token ids: encode(src) -> memory, decode(tgt, memory) -> logits."""

    def __init__(self, src_vocab, tgt_vocab, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation="relu", norm_first=False, layer_norm_eps=1e-5,
                 tie_weights=False, padding_idx=None, max_len=5000, dtype=np.float32):
        super().__init__()
        self.d_model, self.scale = d_model, math.sqrt(d_model)
        self.transformer = Transformer(d_model=d_model, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                       num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                                       dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                                       norm_first=norm_first, dtype=dtype)
        self.src_embed = Embedding(src_vocab, d_model, padding_idx, dtype)
        self.tgt_embed = Embedding(tgt_vocab, d_model, padding_idx, dtype)
        self.positional = PositionalEncoding(d_model, dropout, max_len)
        self.generator = Linear(d_model, tgt_vocab, dtype=dtype)
        self._reset_parameters()
        if tie_weights:
            self.generator.weight = self.tgt_embed.weight  # one Parameter, (tgt_vocab, d_model)

    def _reset_parameters(self):
        """The Transformer initialised itself; the embeddings and the generator's weight get xavier_uniform,
        as in the Annotated Transformer, and the padding rows stay zero."""
        for p in (self.src_embed.weight, self.tgt_embed.weight, self.generator.weight):
            init.xavier_uniform_(p)
        self.src_embed._fill_padding_idx_with_zero()
        self.tgt_embed._fill_padding_idx_with_zero()

    def new_cache(self):
        return KVCache()

    def encode(self, src, src_key_padding_mask=None):
        """src ids (B, S) -> memory (B, S, d_model)."""
        x = self.positional(self.src_embed(_ids(src, "src")) * self.scale)  # (B, S, d_model)
        return self.transformer.encoder(x, src_key_padding_mask=src_key_padding_mask)

    def decode(self, tgt, memory, tgt_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
               cache=None):
        """tgt ids (B, T) and memory (B, S, d_model) -> logits (B, T, tgt_vocab).

        tgt_mask=None means causal (each step sees itself and earlier steps). With a KVCache, tgt holds
        only the new steps and tgt_key_padding_mask, if given, covers every step so far.
        """
        start = cache.length if cache is not None else 0
        x = self.positional(self.tgt_embed(_ids(tgt, "tgt")) * self.scale, start=start)  # (B, T, d_model)
        x = self.transformer.decoder(x, memory, tgt_mask=tgt_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                                     memory_key_padding_mask=memory_key_padding_mask,
                                     tgt_is_causal=tgt_mask is None, cache=cache)
        return self.generator(x)  # (B, T, tgt_vocab)

    def forward(self, src, tgt, src_key_padding_mask=None, tgt_key_padding_mask=None, tgt_mask=None):
        """Teacher-forced logits (B, T, tgt_vocab); the source padding mask also masks the memory."""
        memory = self.encode(src, src_key_padding_mask)
        return self.decode(tgt, memory, tgt_mask, tgt_key_padding_mask, src_key_padding_mask)


def _ids(ids, name):
    """The (B, L) token ids as a Tensor named after the argument, 'src' or 'tgt': a drawn graph's input node."""
    data = unwrap(ids)
    if data.ndim != 2:
        raise ValueError(f"Seq2Seq: {name} token ids must be (B, L), got shape {data.shape}")
    return F.token_ids(data, name)


def make_model(src_vocab, tgt_vocab, N=6, d_model=512, d_ff=2048, h=8, dropout=0.1, **kwargs):
    """The paper's base model (N=6, d_model=512, d_ff=2048, h=8, dropout=0.1) in its own shorthand:
    N -> num_encoder_layers = num_decoder_layers, d_ff -> dim_feedforward, h -> nhead. kwargs go to Seq2Seq
    (activation, norm_first, tie_weights, padding_idx, max_len, dtype)."""
    return Seq2Seq(src_vocab, tgt_vocab, d_model=d_model, nhead=h, num_encoder_layers=N, num_decoder_layers=N,
                   dim_feedforward=d_ff, dropout=dropout, **kwargs)
