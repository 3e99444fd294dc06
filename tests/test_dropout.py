"""Dropout in every place the modules use it: functional.dropout and nn.Dropout, the attention weights,
the feed-forward network, the residual dropouts of the encoder and decoder layers, the positional encoding.

Each dropout site gets a test in which it is the only one with p > 0, so removing any one site fails.
"""

import functools

import numpy as np
import pytest

from tinygrad_attn import functional as F
from tinygrad_attn import manual_seed, nn
from tinygrad_attn.tensor import Tensor

R = np.random.default_rng(0)
P = 0.3


def T(a):
    return Tensor(a, dtype=np.float64)


def _dropout_fn(kind, p, training=True):
    if kind == "functional":
        return lambda x: F.dropout(x, p, training)
    layer = nn.Dropout(p)
    layer.train(training)
    return layer


# ---------------------------------------------------------------- functional.dropout and nn.Dropout


@pytest.mark.parametrize("kind", ["functional", "module"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout_zeros_about_p_and_scales_survivors_by_exactly_one_over_one_minus_p(kind, dtype):
    x = Tensor(np.ones((300, 400)), dtype=dtype)
    manual_seed(0)
    y = _dropout_fn(kind, P)(x).data
    dropped = y == 0
    assert abs(dropped.mean() - P) < 0.01  # 120,000 draws: the standard error is 0.0013
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[~dropped], dtype(1.0 / (1.0 - P)))  # exactly, not approximately


@pytest.mark.parametrize("kind", ["functional", "module"])
def test_dropout_scales_any_input_and_the_backward_uses_the_same_mask(kind):
    data = R.standard_normal((50, 60)) + 5.0  # never 0, so a zero output means dropped
    x = Tensor(data, dtype=np.float64, requires_grad=True)
    manual_seed(3)
    y = _dropout_fn(kind, P)(x)
    kept = y.data != 0
    assert 0.2 < 1 - kept.mean() < 0.4
    np.testing.assert_allclose(y.data[kept], data[kept] / (1 - P), rtol=1e-14)
    g = R.standard_normal(y.shape)  # a random cotangent, not ones
    y.backward(g)
    want = np.where(kept, g / (1 - P), 0.0)  # zero where dropped, g / (1 - p) where kept
    np.testing.assert_allclose(x.grad.data, want, rtol=1e-14)
    assert np.all(x.grad.data[~kept] == 0)


@pytest.mark.parametrize("kind", ["functional", "module"])
def test_dropout_is_the_identity_in_eval_mode_and_at_p_zero(kind):
    data = R.standard_normal((40, 50))
    x = Tensor(data, dtype=np.float64, requires_grad=True)
    for fn in (_dropout_fn(kind, P, training=False), _dropout_fn(kind, 0.0, training=True)):
        y = fn(x)
        np.testing.assert_array_equal(y.data, data)
        g = R.standard_normal(y.shape)
        x.grad = None
        y.backward(g)
        np.testing.assert_array_equal(x.grad.data, g)


def test_nn_dropout_follows_train_and_eval():
    x = Tensor(np.ones((100, 100)), dtype=np.float64)
    layer = nn.Dropout(0.5)
    manual_seed(0)
    assert (layer(x).data == 0).mean() > 0.4  # training by default
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, 1.0)
    layer.train()
    assert (layer(x).data == 0).mean() > 0.4


def test_dropout_is_repeatable_under_manual_seed_and_differs_between_draws():
    x = Tensor(np.ones((30, 30)), dtype=np.float64)
    manual_seed(7)
    a, b = F.dropout(x, P).data, F.dropout(x, P).data
    manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, P).data, a)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- MultiheadAttention


def _mha(p, e=8, h=2):
    manual_seed(0)
    return nn.MultiheadAttention(e, h, dropout=p).double()


def _np_mha_output(mha, value, weights):
    """w_o(weights @ w_v(value)) in NumPy, weights (B, h, T, S) as returned."""
    b, s, e = value.shape
    v = value @ mha.w_v.weight.data.T + mha.w_v.bias.data
    v = v.reshape(b, s, mha.num_heads, mha.d_k).transpose(0, 2, 1, 3)  # (B, h, S, d_k)
    ctx = (weights @ v).transpose(0, 2, 1, 3).reshape(b, -1, e)
    return ctx @ mha.w_o.weight.data.T + mha.w_o.bias.data


def test_mha_train_returns_dropped_rescaled_weights_and_keeps_the_undropped_ones():
    mha = _mha(P)
    q, kv = R.standard_normal((4, 10, 8)), R.standard_normal((4, 12, 8))
    manual_seed(1)
    out, w = mha(T(q), T(kv), T(kv), average_attn_weights=False)
    before = mha.attn_weights  # for visualisation: before dropout, rows sum to 1
    assert before.shape == w.shape == (4, 2, 10, 12)
    np.testing.assert_allclose(before.sum(-1), 1.0, rtol=1e-12)
    dropped = w.data == 0
    assert 0.2 < dropped.mean() < 0.4
    # the returned weights are after dropout (as PyTorch): 0 or the undropped weight / (1 - p)
    np.testing.assert_allclose(w.data[~dropped], before[~dropped] / (1 - P), rtol=1e-12)
    assert not np.allclose(w.data.sum(-1), 1.0)
    # and the output is made from exactly those (dropped) weights
    np.testing.assert_allclose(out.data, _np_mha_output(mha, kv, w.data), rtol=1e-10, atol=1e-12)


def test_mha_averaged_weights_are_the_mean_of_the_dropped_heads():
    mha = _mha(P)
    x = T(R.standard_normal((2, 6, 8)))
    manual_seed(5)
    _, per_head = mha(x, x, x, average_attn_weights=False)
    manual_seed(5)
    _, averaged = mha(x, x, x)
    np.testing.assert_allclose(averaged.data, per_head.data.mean(1), rtol=1e-12)
    assert not np.allclose(averaged.data, mha.attn_weights.mean(1))


def test_mha_two_train_calls_differ_and_eval_calls_are_identical():
    mha = _mha(P)
    x = T(R.standard_normal((2, 7, 8)))
    out1, w1 = mha(x, x, x)
    out2, w2 = mha(x, x, x)
    assert not np.allclose(out1.data, out2.data) and not np.allclose(w1.data, w2.data)
    mha.eval()
    (out3, w3), (out4, w4) = mha(x, x, x, average_attn_weights=False), mha(x, x, x, average_attn_weights=False)
    np.testing.assert_array_equal(out3.data, out4.data)
    np.testing.assert_array_equal(w3.data, w4.data)
    np.testing.assert_array_equal(w3.data, mha.attn_weights)  # no dropout in eval
    np.testing.assert_allclose(w3.data.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out3.data, _np_mha_output(mha, x.data, w3.data), rtol=1e-10, atol=1e-12)


def test_mha_with_p_zero_is_the_same_in_train_and_eval():
    mha = _mha(0.0)
    x = T(R.standard_normal((2, 5, 8)))
    out_train, w_train = mha(x, x, x)
    mha.eval()
    out_eval, w_eval = mha(x, x, x)
    np.testing.assert_array_equal(out_train.data, out_eval.data)
    np.testing.assert_array_equal(w_train.data, w_eval.data)


# ---------------------------------------------------------------- FeedForward and PositionalEncoding


def _train_and_eval(module, *args, seed=0, **kwargs):
    module.train()
    manual_seed(seed)
    train = module(*args, **kwargs).data
    module.eval()
    return train, module(*args, **kwargs).data


def test_feed_forward_dropout_acts_on_the_hidden_layer():
    manual_seed(0)
    ff = nn.FeedForward(8, 64, dropout=0.5).double()
    x = T(R.standard_normal((3, 5, 8)))
    train, evaluated = _train_and_eval(ff, x)
    assert not np.allclose(train, evaluated)
    # by hand: w_2(dropout(relu(w_1 x))), the dropped hidden units are the ones that differ
    hidden = np.maximum(x.data @ ff.w_1.weight.data.T + ff.w_1.bias.data, 0)
    manual_seed(0)
    dropped_hidden = F.dropout(T(hidden), 0.5).data
    np.testing.assert_allclose(train, dropped_hidden @ ff.w_2.weight.data.T + ff.w_2.bias.data, rtol=1e-10)
    ff0 = nn.FeedForward(8, 64, dropout=0.0).double()
    train0, eval0 = _train_and_eval(ff0, x)
    np.testing.assert_array_equal(train0, eval0)


def test_positional_encoding_dropout():
    pe = nn.PositionalEncoding(16, dropout=P, max_len=100)
    x = Tensor(R.standard_normal((4, 50, 16)), dtype=np.float64)
    want = x.data + pe.pe[:50]
    train, evaluated = _train_and_eval(pe, x)
    np.testing.assert_allclose(evaluated, want, rtol=1e-14)
    dropped = train == 0
    assert 0.2 < dropped.mean() < 0.4
    np.testing.assert_allclose(train[~dropped], want[~dropped] / (1 - P), rtol=1e-14)
    # two train-mode calls draw two masks
    manual_seed(1)
    pe.train()
    assert not np.array_equal(pe(x).data, pe(x).data)
    train0, eval0 = _train_and_eval(nn.PositionalEncoding(16, dropout=0.0, max_len=100), x)
    np.testing.assert_array_equal(train0, eval0)


# ---------------------------------------------------------------- encoder and decoder layers, site by site

D, H, FF = 8, 2, 16


def _set(module, path, p):
    *parents, name = path.split(".")
    owner = functools.reduce(getattr, parents, module)
    setattr(owner, name, p)


ENCODER_SITES = ["self_attn.dropout", "feed_forward.dropout.p", "dropout1.p", "dropout2.p"]
DECODER_SITES = ["self_attn.dropout", "cross_attn.dropout", "feed_forward.dropout.p", "dropout1.p",
                 "dropout2.p", "dropout3.p"]


def _layer(cls, norm_first, site=None, p=0.5):
    """A float64 encoder or decoder layer with dropout off, then p switched on at one site."""
    manual_seed(0)
    layer = cls(D, H, FF, dropout=0.0, norm_first=norm_first).double()
    if site is not None:
        _set(layer, site, p)
    return layer


def _encoder_layer(norm_first, site=None, p=0.5):
    return _layer(nn.TransformerEncoderLayer, norm_first, site, p)


def _decoder_layer(norm_first, site=None, p=0.5):
    return _layer(nn.TransformerDecoderLayer, norm_first, site, p)


NORM = pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])


@NORM
@pytest.mark.parametrize("site", ENCODER_SITES)
def test_encoder_layer_each_dropout_site_changes_the_train_output(norm_first, site):
    x = T(R.standard_normal((2, 6, D)))
    train, evaluated = _train_and_eval(_encoder_layer(norm_first, site), x)
    np.testing.assert_array_equal(evaluated, _train_and_eval(_encoder_layer(norm_first), x)[1])
    assert not np.allclose(train, evaluated), f"dropout at {site} had no effect in train mode"


@NORM
@pytest.mark.parametrize("site", DECODER_SITES)
def test_decoder_layer_each_dropout_site_changes_the_train_output(norm_first, site):
    tgt, memory = T(R.standard_normal((2, 5, D))), T(R.standard_normal((2, 7, D)))
    train, evaluated = _train_and_eval(_decoder_layer(norm_first, site), tgt, memory, tgt_is_causal=True)
    np.testing.assert_array_equal(evaluated, _train_and_eval(_decoder_layer(norm_first), tgt, memory,
                                                             tgt_is_causal=True)[1])
    assert not np.allclose(train, evaluated), f"dropout at {site} had no effect in train mode"


@NORM
def test_layers_with_p_zero_are_the_same_in_train_and_eval(norm_first):
    x, memory = T(R.standard_normal((2, 5, D))), T(R.standard_normal((2, 7, D)))
    train, evaluated = _train_and_eval(_encoder_layer(norm_first), x)
    np.testing.assert_array_equal(train, evaluated)
    train, evaluated = _train_and_eval(_decoder_layer(norm_first), x, memory, tgt_is_causal=True)
    np.testing.assert_array_equal(train, evaluated)


@NORM
def test_encoder_layer_with_dropout_differs_between_train_calls_not_eval_calls(norm_first):
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.1, norm_first=norm_first).double()
    x = T(R.standard_normal((2, 6, D)))
    assert not np.allclose(layer(x).data, layer(x).data)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, layer(x).data)


def test_post_norm_encoder_layer_residual_dropout_by_hand():
    """norm1(x + dropout1(self_attn(x))), then norm2(h + dropout2(ffn(h))): dropout1 alone, rebuilt."""
    layer = _encoder_layer(False, "dropout1.p", P)
    x = T(R.standard_normal((2, 6, D)))
    layer.train()
    manual_seed(4)
    got = layer(x).data
    layer.eval()
    sa = layer.self_attn(x, x, x)[0]
    manual_seed(4)  # the only draw in the forward above is dropout1's
    h = layer.norm1(x + F.dropout(sa, P))
    want = layer.norm2(h + layer.feed_forward(h)).data
    np.testing.assert_allclose(got, want, rtol=1e-12)


@NORM
def test_transformer_and_seq2seq_with_p_zero_are_the_same_in_train_and_eval(norm_first):
    manual_seed(0)
    model = nn.make_model(10, 10, N=1, d_model=D, d_ff=FF, h=H, dropout=0.0, norm_first=norm_first).double()
    src, tgt = R.integers(1, 10, (2, 6)), R.integers(1, 10, (2, 5))
    train, evaluated = _train_and_eval(model, src, tgt)
    np.testing.assert_array_equal(train, evaluated)
    # only the positional encoding's dropout on: train differs from eval
    model.positional.dropout.p = 0.5
    train, evaluated = _train_and_eval(model, src, tgt)
    assert not np.allclose(train, evaluated)
