"""nn.Seq2Seq / make_model: cached decoding equals full recomputation, a tiny model overfits, bad input."""

import inspect

import numpy as np
import pytest

from tinygrad_attn import functional as F
from tinygrad_attn import manual_seed, nn, no_grad
from tinygrad_attn.tensor import Tensor

R = np.random.default_rng(0)
PAD = 0


def tiny(norm_first=False, dtype=np.float64, **kwargs):
    manual_seed(0)
    return nn.make_model(12, 11, N=2, d_model=16, d_ff=32, h=4, dropout=0.0, norm_first=norm_first,
                         **kwargs).to(dtype).eval()


def _batch():
    src = R.integers(1, 12, (3, 6))
    src[1, 4:] = PAD
    src[2, 5:] = PAD
    return src, F.padding_mask(src, PAD)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_cached_decoding_gives_the_logits_of_full_recomputation(norm_first):
    model = tiny(norm_first)
    src, src_pad = _batch()
    tgt = R.integers(1, 11, (3, 7))
    with no_grad():
        full = model(src, tgt, src_key_padding_mask=src_pad).data  # (B, T, V), causal
        memory = model.encode(src, src_key_padding_mask=src_pad)
        cache = model.new_cache()
        first = model.decode(tgt[:, :2], memory, memory_key_padding_mask=src_pad, cache=cache)  # a prefix
        steps = [first.data] + [model.decode(tgt[:, t:t + 1], memory, memory_key_padding_mask=src_pad,
                                             cache=cache).data for t in range(2, 7)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)
    assert cache.length == 7 and cache.layers[0]["self"]["k"].shape == (3, 4, 7, 4)
    assert cache.layers[1]["cross"]["k"].shape == (3, 4, 6, 4)
    attn = model.transformer.decoder.layers[0].self_attn.attn_weights
    assert attn.shape == (3, 4, 1, 7)  # the last step's query against all seven keys


def test_cache_reorder_follows_the_chosen_rows():
    model = tiny()
    src, src_pad = _batch()
    tgt = R.integers(1, 11, (3, 4))
    rows = np.array([2, 2, 0])
    with no_grad():
        memory = model.encode(src, src_key_padding_mask=src_pad)
        cache = nn.KVCache()
        model.decode(tgt[:, :3], memory, memory_key_padding_mask=src_pad, cache=cache)
        cache.reorder(rows)
        step = model.decode(tgt[rows, 3:4], memory[rows], memory_key_padding_mask=src_pad[rows], cache=cache)
        full = model(src[rows], tgt[rows], src_key_padding_mask=src_pad[rows])
    np.testing.assert_allclose(step.data[:, 0], full.data[:, 3], rtol=1e-10, atol=1e-12)


def test_decode_is_causal_by_default():
    model = tiny()
    src, src_pad = _batch()
    tgt = R.integers(1, 11, (3, 5))
    changed = tgt.copy()
    changed[:, 3:] = (changed[:, 3:] % 10) + 1  # a different future
    a = model(src, tgt, src_key_padding_mask=src_pad).data
    b = model(src, changed, src_key_padding_mask=src_pad).data
    np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-12)
    assert not np.allclose(a[:, 3:], b[:, 3:])
    padded = src.copy()
    padded[src_pad] = 7  # what stands at a padded source position cannot matter
    c = model(padded, tgt, src_key_padding_mask=src_pad).data
    np.testing.assert_allclose(a, c, rtol=1e-12)


def _adam_step(params, state, lr=3e-3, b1=0.9, b2=0.98, eps=1e-9):
    state["t"] = state.get("t", 0) + 1
    for i, p in enumerate(params):
        g = p.grad.data
        m, v = state.get(i, (np.zeros_like(g), np.zeros_like(g)))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        state[i] = (m, v)
        p.data = p.data - lr * (m / (1 - b1 ** state["t"])) / (np.sqrt(v / (1 - b2 ** state["t"])) + eps)


def test_a_tiny_model_overfits_one_batch():
    manual_seed(0)
    model = nn.make_model(8, 8, N=1, d_model=32, d_ff=64, h=4, dropout=0.0, tie_weights=True)
    src = R.integers(2, 8, (8, 6))
    tgt = np.concatenate([np.ones((8, 1), int), src], axis=1)  # copy task, 1 = BOS
    params = list(model.parameters())
    state, losses = {}, []
    for _ in range(120):
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 8), tgt[:, 1:].reshape(-1))
        model.zero_grad()
        loss.backward()
        _adam_step(params, state)
        losses.append(loss.item())
    assert losses[-1] < 0.05 < losses[0]
    assert np.all(model(src, tgt[:, :-1]).data.argmax(-1) == src)


def test_weight_tying_shares_one_parameter():
    model = tiny(tie_weights=True)
    assert model.generator.weight is model.tgt_embed.weight
    names = [n for n, _ in model.named_parameters()]
    assert "generator.weight" not in names and "generator.weight" in model.state_dict()


def test_make_model_has_the_papers_defaults():
    defaults = {k: v.default for k, v in inspect.signature(nn.make_model).parameters.items()}
    assert {k: defaults[k] for k in ("N", "d_model", "d_ff", "h", "dropout")} == \
        {"N": 6, "d_model": 512, "d_ff": 2048, "h": 8, "dropout": 0.1}


def test_make_model_is_seq2seq_in_the_papers_shorthand():
    manual_seed(0)
    short = nn.make_model(12, 11, N=3, d_model=16, d_ff=24, h=2, dropout=0.2)
    manual_seed(0)
    full = nn.Seq2Seq(12, 11, d_model=16, nhead=2, num_encoder_layers=3, num_decoder_layers=3,
                      dim_feedforward=24, dropout=0.2)
    layer = short.transformer.decoder.layers[0]
    assert (len(short.transformer.encoder.layers), len(short.transformer.decoder.layers)) == (3, 3)
    assert (layer.self_attn.num_heads, layer.feed_forward.w_1.out_features, layer.dropout1.p) == (2, 24, 0.2)
    assert short.state_dict().keys() == full.state_dict().keys()
    for name, value in full.state_dict().items():
        np.testing.assert_array_equal(short.state_dict()[name], value, err_msg=name)


@pytest.mark.parametrize("call, kind, words", [
    (lambda m: m(np.array([[1, 12]]), np.array([[1, 2]])), IndexError, ["token id 12", "vocabulary of 12"]),
    (lambda m: m(np.array([[1, 2]]), np.array([[-1, 2]])), IndexError, ["token id -1", "vocabulary of 11"]),
    (lambda m: m(np.array([[1.0, 2.0]]), np.array([[1, 2]])), TypeError, ["integers", "float64"]),
    (lambda m: m(np.array([1, 2]), np.array([[1, 2]])), ValueError, ["src", "(B, L)", "(2,)"]),
    (lambda m: m.transformer(Tensor(np.ones((1, 2, 8))), Tensor(np.ones((1, 2, 16)))), ValueError,
     ["d_model=16", "(1, 2, 8)"]),
    (lambda m: m(np.array([[1, 2]]), np.array([[1, 2]]), src_key_padding_mask=np.zeros((1, 3), bool)),
     ValueError, ["key_padding_mask", "(1, 3)", "(1, 2)"]),
    (lambda m: m(np.array([[1, 2]]), np.array([[1, 2]]), tgt_mask=np.zeros((2, 2), np.int32)), TypeError,
     ["tgt_mask", "int32", "bool"]),
    (lambda m: nn.Transformer(d_model=16, nhead=5), ValueError, ["nhead=5", "d_model=16"]),
])
def test_bad_input_errors(call, kind, words):
    with pytest.raises(kind) as info:
        call(tiny())
    for w in words:
        assert w in str(info.value)


# ---------------------------------------------------------------- initialisation and embedding scale


def test_multihead_attention_init_is_pytorchs_packed_xavier_with_zero_biases():
    e = 256
    bound = np.sqrt(6.0 / (4 * e))  # xavier_uniform over the packed (3E, E) in_proj: fan_in + fan_out = 4E
    manual_seed(0)
    mha = nn.MultiheadAttention(e, 8)
    for lin in (mha.w_q, mha.w_k, mha.w_v):
        w = np.abs(lin.weight.data)
        assert w.max() <= bound and w.max() > 0.95 * bound
        assert abs(lin.weight.data.mean()) < 0.05 * bound
    for lin in (mha.w_q, mha.w_k, mha.w_v, mha.w_o):
        np.testing.assert_array_equal(lin.bias.data, 0.0)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(e, 8)
    w = ref.in_proj_weight.detach().abs().numpy()
    assert w.max() <= bound and w.max() > 0.95 * bound
    assert not ref.in_proj_bias.detach().any() and not ref.out_proj.bias.detach().any()


def test_seq2seq_scales_embeddings_by_sqrt_d_model_before_adding_positions(monkeypatch):
    model, d = tiny(), 16
    seen = {}
    for name in ("encoder", "decoder"):
        stack = getattr(model.transformer, name)
        original = stack.forward

        def spy(x, *args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, []).append(x.data.copy())
            return _original(x, *args, **kwargs)

        monkeypatch.setattr(stack, "forward", spy)
    src, tgt = R.integers(1, 12, (2, 6)), R.integers(1, 11, (2, 4))
    pe = model.positional.pe
    with no_grad():
        model(src, tgt)
        cache = model.new_cache()
        memory = model.encode(src)
        model.decode(tgt[:, :3], memory, cache=cache)
        model.decode(tgt[:, 3:], memory, cache=cache)  # one step at position 3
    src_want = model.src_embed.weight.data[src] * np.sqrt(d) + pe[:6]
    tgt_want = model.tgt_embed.weight.data[tgt] * np.sqrt(d) + pe[:4]
    np.testing.assert_allclose(seen["encoder"][0], src_want, rtol=1e-12)
    np.testing.assert_allclose(seen["decoder"][0], tgt_want, rtol=1e-12)
    np.testing.assert_allclose(seen["decoder"][1], tgt_want[:, :3], rtol=1e-12)
    np.testing.assert_allclose(seen["decoder"][2], tgt_want[:, 3:], rtol=1e-12)
