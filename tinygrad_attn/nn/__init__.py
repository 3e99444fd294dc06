"""Modules with PyTorch's names, arguments and mask semantics (batch-first): tinygrad_attn.nn."""

from .attention import MultiheadAttention, spelled_out
from .layers import (
    GELU,
    AdditiveAttention,
    Dropout,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    PositionalEncoding,
    ReLU,
    Softmax,
)
from .model import Seq2Seq, make_model
from .module import Module, ModuleList, Parameter
from .transformer import (
    KVCache,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "GELU", "AdditiveAttention", "Dropout", "Embedding", "FeedForward", "KVCache", "LayerNorm", "Linear",
    "Module", "ModuleList", "MultiheadAttention", "Parameter", "PositionalEncoding", "ReLU", "Seq2Seq",
    "Softmax", "Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
    "TransformerEncoderLayer", "make_model", "spelled_out",
]
