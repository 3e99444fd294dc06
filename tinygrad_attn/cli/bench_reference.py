"""The benchmark's models, built twice: with PyTorch's modules (the reference) and with ours, from one
configuration, so that tests/test_bench.py can load the PyTorch model's weights into ours and check that
both compute the same numbers, and the harness can time them against each other.
"""

import math

import numpy as np

from ..nn.model import Seq2Seq


def seq2seq_config(size):
    """The model and batch of W2 ("full") or W3 ("tiny"), in PyTorch's names."""
    if size == "tiny":  # W3: the copy task's size, bound by per-op overhead
        return dict(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64, vocab=11,
                    batch=8, length=10)
    return dict(d_model=128, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=512, vocab=64,
                batch=32, length=32)


def seq2seq_data(c):
    """(source, decoder input, next-token target) integer arrays for the configuration ``c``, seeded."""
    rng = np.random.default_rng(0)
    src = rng.integers(1, c["vocab"], (c["batch"], c["length"]))
    tgt = rng.integers(1, c["vocab"], (c["batch"], c["length"] + 1))
    return src, tgt[:, :-1], tgt[:, 1:]  # source, decoder input, next-token target


def torch_seq2seq(c):
    """The same model in PyTorch: embeddings * sqrt(d), sinusoidal positions, nn.Transformer, projection."""
    import torch

    class Seq2Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            d = c["d_model"]
            self.src_embed = torch.nn.Embedding(c["vocab"], d)
            self.tgt_embed = torch.nn.Embedding(c["vocab"], d)
            pos = np.arange(512)[:, None] / 10000 ** (np.arange(0, d, 2) / d)
            pe = np.zeros((512, d), np.float32)
            pe[:, 0::2], pe[:, 1::2] = np.sin(pos), np.cos(pos)
            self.register_buffer("pe", torch.tensor(pe), persistent=False)  # a constant, as ours
            self.transformer = torch.nn.Transformer(
                d, c["nhead"], c["num_encoder_layers"], c["num_decoder_layers"], c["dim_feedforward"], dropout=0.0,
                batch_first=True,
            )
            self.generator = torch.nn.Linear(d, c["vocab"])
            self.scale = math.sqrt(d)

        def embed(self, table, ids):
            return table(ids) * self.scale + self.pe[: ids.shape[1]]

        def encode(self, src):
            return self.transformer.encoder(self.embed(self.src_embed, src))

        def decode(self, tgt, memory):
            mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            out = self.transformer.decoder(self.embed(self.tgt_embed, tgt), memory, tgt_mask=mask, tgt_is_causal=True)
            return self.generator(out)

        def forward(self, src, tgt):
            return self.decode(tgt, self.encode(src))

    return Seq2Seq()


def our_seq2seq(c):
    """The same model built from our modules."""
    return Seq2Seq(c["vocab"], c["vocab"], d_model=c["d_model"], nhead=c["nhead"],
                   num_encoder_layers=c["num_encoder_layers"], num_decoder_layers=c["num_decoder_layers"],
                   dim_feedforward=c["dim_feedforward"], dropout=0.0)


def torch_greedy_decode(model, src, max_len, bos):
    """Greedy decoding as the classic PyTorch tutorials do it: every step recomputes the whole prefix."""
    import torch

    with torch.no_grad():
        memory = model.encode(src)
        ys = torch.full((src.shape[0], 1), bos, dtype=torch.long)
        for _ in range(max_len):
            nxt = model.decode(ys, memory)[:, -1].argmax(-1, keepdim=True)
            ys = torch.cat([ys, nxt], dim=1)
    return ys[:, 1:]
