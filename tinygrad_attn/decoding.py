"""Greedy decoding and beam search for a Seq2Seq model, with or without its key/value cache.

The model needs ``encode(src, src_key_padding_mask)``, ``decode(tgt, memory,
memory_key_padding_mask=..., cache=...)`` and ``new_cache()`` (a cache with ``reorder(rows)``), as
nn.Seq2Seq has. With ``use_cache=True`` each step feeds only the newest token and the cache holds
the rest; with ``use_cache=False`` every step recomputes the whole prefix. Both give the same tokens.

Outputs are int64 (B, L) arrays of generated ids, BOS left off, each row ending at its EOS and
padded with PAD after it (L <= max_len).
"""

import numpy as np

from . import ops
from .data import BOS, EOS, PAD
from .tensor import no_grad


class _Stepper:
    """Feeds a growing prefix ys (N, t) to the decoder and returns the next-token logits (N, V)."""

    def __init__(self, model, memory, mask, use_cache):
        self.model, self.memory, self.mask = model, memory, mask
        self.cache = model.new_cache() if use_cache else None

    def __call__(self, ys):
        step_in = ys[:, -1:] if self.cache is not None else ys  # (N, 1) or (N, t)
        logits = self.model.decode(step_in, self.memory, memory_key_padding_mask=self.mask, cache=self.cache)
        return logits.data[:, -1]  # (N, V)

    def reorder(self, rows):
        if self.cache is not None:
            self.cache.reorder(rows)


def _encode(model, src, src_key_padding_mask, pad):
    src = np.asarray(src.data if hasattr(src, "grad") else src)
    if src.ndim != 2:
        raise ValueError(f"decoding: src must be token ids (B, S), got shape {src.shape}")
    mask = src == pad if src_key_padding_mask is None else np.asarray(src_key_padding_mask)
    return src, mask, model.encode(src, src_key_padding_mask=mask)


@no_grad()
def greedy_decode(model, src, max_len, src_key_padding_mask=None, use_cache=True, bos=BOS, eos=EOS, pad=PAD):
    """Pick the most likely next token, up to max_len tokens or every row's EOS. Returns (B, L) int64.

    src_key_padding_mask defaults to ``src == pad`` (True = ignore that source position).
    """
    src, mask, memory = _encode(model, src, src_key_padding_mask, pad)
    step = _Stepper(model, memory, mask, use_cache)
    ys = np.full((len(src), 1), bos, dtype=np.int64)  # (B, 1)
    done = np.zeros(len(src), dtype=bool)
    for _ in range(max_len):
        token = step(ys).argmax(axis=-1)  # (B,)
        token[done] = pad
        ys = np.concatenate([ys, token[:, None]], axis=1)  # (B, t + 1)
        done |= token == eos
        if done.all():
            break
    return ys[:, 1:]


def _log_softmax(x):
    """Log-probabilities in float64: beam scores are sums over many steps, so rounding would add up."""
    return ops.log_softmax(x.astype(np.float64))[0]  # the primitive's forward; no graph is needed here


@no_grad()
def beam_search(model, src, beam_size, max_len, length_penalty=1.0, src_key_padding_mask=None, use_cache=True,
                bos=BOS, eos=EOS, pad=PAD, return_scores=False):
    """Keep the beam_size most likely prefixes of each row; return the best finished one, (B, L) int64.

    A prefix's score is its total log-probability (float64). A finished prefix stays in the beam with
    its score; at the end the beams are ranked by score / length ** length_penalty (length counts the
    generated tokens with EOS, as Hugging Face's length_penalty: > 0 favours longer outputs, 0 none).
    With return_scores, also returns those normalised scores (B,). beam_size=1 is greedy decoding.
    """
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
    src, mask, memory = _encode(model, src, src_key_padding_mask, pad)
    b, k = len(src), beam_size
    rows = np.repeat(np.arange(b), k)  # beam j of row i lives at i * k + j
    step = _Stepper(model, memory[rows], mask[rows], use_cache)  # (B * k, S, d_model)
    ys = np.full((b * k, 1), bos, dtype=np.int64)  # (B * k, t)
    scores = np.full((b, k), -np.inf)
    scores[:, 0] = 0.0  # every beam starts as the same empty prefix: expand only the first
    done = np.zeros(b * k, dtype=bool)
    lengths = np.zeros(b * k, dtype=np.int64)
    for _ in range(max_len):
        logp = _log_softmax(step(ys))  # (B * k, V)
        v = logp.shape[-1]
        logp[done] = -np.inf
        logp[done, pad] = 0.0  # a finished prefix has one continuation, PAD, which keeps its score
        candidates = (scores.reshape(-1, 1) + logp).reshape(b, k * v)  # (B, k * V)
        top = np.argsort(-candidates, axis=1, kind="stable")[:, :k]  # (B, k), ties to the lower index
        scores = np.take_along_axis(candidates, top, axis=1)
        parent = (np.arange(b)[:, None] * k + top // v).reshape(-1)  # (B * k,) the prefix each beam extends
        token = (top % v).reshape(-1)
        ys = np.concatenate([ys[parent], token[:, None]], axis=1)
        lengths = lengths[parent] + ~done[parent]
        done = done[parent] | (token == eos)
        step.reorder(parent)
        if done.all():
            break
    normalised = scores / np.maximum(lengths.reshape(b, k), 1) ** length_penalty  # (B, k)
    best = normalised.argmax(axis=1)
    out = ys.reshape(b, k, -1)[np.arange(b), best, 1:]
    return (out, normalised[np.arange(b), best]) if return_scores else out


def sequence_log_prob(model, src, out, src_key_padding_mask=None, bos=BOS, eos=EOS, pad=PAD):
    """Total log-probability (B,) the model gives each output row (up to and including its EOS)."""
    with no_grad():
        src, mask, memory = _encode(model, src, src_key_padding_mask, pad)
        out = np.asarray(out)
        ys = np.concatenate([np.full((len(out), 1), bos, dtype=np.int64), out], axis=1)
        logp = _log_softmax(model.decode(ys[:, :-1], memory, memory_key_padding_mask=mask).data)  # (B, L, V)
        picked = np.take_along_axis(logp, out[..., None], axis=-1)[..., 0]  # (B, L)
        ended = np.cumsum(out == eos, axis=1) - (out == eos)  # > 0 after the EOS
        return np.where(ended > 0, 0.0, picked).sum(axis=1)
