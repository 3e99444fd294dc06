"""tinygrad_attn.interop: the Transformer against torch.nn.Transformer, value and every parameter gradient."""

import contextlib
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_attn as tga
from tinygrad_attn import nn
from tinygrad_attn.interop import load_torch_state_dict, to_torch_state_dict
from tinygrad_attn.tensor import Tensor

R = np.random.default_rng(0)
D, H, FF = 8, 2, 16
B, S, T = 3, 5, 4

SRC_PAD = np.zeros((B, S), bool)
SRC_PAD[1, 3:] = True
SRC_PAD[2, 4:] = True
TGT_PAD = np.zeros((B, T), bool)
TGT_PAD[0, 3:] = True
CAUSAL = nn.Transformer.generate_square_subsequent_mask(T)

MASKS = [
    ("padding", {"src_key_padding_mask": SRC_PAD, "memory_key_padding_mask": SRC_PAD}),
    ("causal", {"tgt_mask": CAUSAL}),
    ("causal_and_padding", {"tgt_mask": CAUSAL, "src_key_padding_mask": SRC_PAD,
                            "tgt_key_padding_mask": TGT_PAD, "memory_key_padding_mask": SRC_PAD}),
    ("bool_causal_and_float_src_mask", {"tgt_mask": np.triu(np.ones((T, T), bool), 1),
                                        "tgt_key_padding_mask": TGT_PAD,
                                        "src_mask": R.standard_normal((S, S))}),
]


def _pair(torch, norm_first, activation="relu"):
    ref = torch.nn.Transformer(D, H, 2, 2, FF, dropout=0.0, activation=activation, batch_first=True,
                               norm_first=norm_first)
    ours = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, activation=activation, norm_first=norm_first)
    return ref, ours


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("name, masks", MASKS, ids=[m[0] for m in MASKS])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_transformer_matches_torch_values_and_every_gradient(norm_first, name, masks, dtype, tol):
    torch = pytest.importorskip("torch")
    ref, ours = _pair(torch, norm_first)
    ref.to(getattr(torch, np.dtype(dtype).name))
    ours.to(dtype)
    load_torch_state_dict(ours, ref.state_dict())
    src, tgt = R.standard_normal((B, S, D)).astype(dtype), R.standard_normal((B, T, D)).astype(dtype)
    masks = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in masks.items()}
    s, t = Tensor(src, dtype=dtype, requires_grad=True), Tensor(tgt, dtype=dtype, requires_grad=True)
    ts, tt = torch.tensor(src, requires_grad=True), torch.tensor(tgt, requires_grad=True)
    out = ours(s, t, **masks)
    want = ref(ts, tt, **{k: torch.tensor(v) for k, v in masks.items()})
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=tol, atol=tol)
    u = R.standard_normal(out.shape).astype(dtype)
    out.backward(u)
    want.backward(torch.tensor(u))
    np.testing.assert_allclose(s.grad.data, ts.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=tol, atol=tol)
    grads = to_torch_state_dict(ours, grads=True)
    named = dict(ref.named_parameters())
    assert set(grads) == set(named)
    for k, p in named.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=tol, atol=tol, err_msg=k)


def test_decoder_layer_gelu_and_names_round_trip_into_torch():
    torch = pytest.importorskip("torch")
    ref = torch.nn.TransformerDecoderLayer(D, H, FF, 0.0, "gelu", batch_first=True).double()
    ours = nn.TransformerDecoderLayer(D, H, FF, 0.0, "gelu").double()
    exported = to_torch_state_dict(ours)
    assert set(exported) == set(ref.state_dict())
    assert exported["self_attn.in_proj_weight"].shape == (3 * D, D)
    ref.load_state_dict({k: torch.tensor(v) for k, v in exported.items()}, strict=True)
    x, mem = R.standard_normal((2, 3, D)), R.standard_normal((2, 4, D))
    want = ref(torch.tensor(x), torch.tensor(mem)).detach().numpy()
    got = ours(Tensor(x, dtype=np.float64), Tensor(mem, dtype=np.float64)).data
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_split_projections_when_kdim_differs_and_ndarray_values():
    torch = pytest.importorskip("torch")
    ref = torch.nn.MultiheadAttention(4, 2, kdim=3, vdim=5, batch_first=True).double()
    mha = nn.MultiheadAttention(4, 2, kdim=3, vdim=5).double()
    load_torch_state_dict(mha, {k: v.numpy() for k, v in ref.state_dict().items()})  # plain ndarrays
    assert set(to_torch_state_dict(mha)) == set(ref.state_dict())
    q, k, v = R.standard_normal((1, 2, 4)), R.standard_normal((1, 3, 3)), R.standard_normal((1, 3, 5))
    want = ref(torch.tensor(q), torch.tensor(k), torch.tensor(v))[0].detach().numpy()
    got = mha(*[Tensor(a, dtype=np.float64) for a in (q, k, v)])[0].data
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_load_torch_state_dict_reports_mismatches_under_our_names():
    torch = pytest.importorskip("torch")
    ref = torch.nn.TransformerEncoderLayer(D, H, FF, batch_first=True)
    ours = nn.TransformerEncoderLayer(D, H, 2 * FF)
    with pytest.raises(KeyError) as info:
        load_torch_state_dict(ours, ref.state_dict())
    assert "feed_forward.w_1.weight: checkpoint (16, 8), model (32, 8)" in str(info.value)


def test_to_torch_grads_none_before_backward():
    grads = to_torch_state_dict(nn.MultiheadAttention(4, 2), grads=True)
    assert set(grads) == {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    assert all(g is None for g in grads.values())


def test_importing_interop_does_not_import_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "import tinygrad_attn.interop, tinygrad_attn.nn\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_packed_in_proj_that_does_not_split_in_three_is_named():
    attn = nn.MultiheadAttention(4, 2)
    state = {"in_proj_weight": np.ones((10, 4)), "in_proj_bias": np.ones(12),
             "out_proj.weight": np.ones((4, 4)), "out_proj.bias": np.ones(4)}
    with pytest.raises(ValueError, match=r"in_proj_weight has shape \(10, 4\).*3 \* embed_dim"):
        load_torch_state_dict(attn, state)


def test_state_dicts_of_torch_parameters_that_require_grad_load_and_save(tmp_path):
    torch = pytest.importorskip("torch")
    ref = torch.nn.Linear(3, 2)  # its parameters require grad: np.asarray alone refuses them
    ours = tga.nn.Linear(3, 2)
    params = dict(ref.named_parameters())
    ours.load_state_dict(params)
    np.testing.assert_array_equal(ours.weight.data, ref.weight.detach().numpy())
    tga.save(params, tmp_path / "p.npz")
    np.testing.assert_array_equal(tga.load(tmp_path / "p.npz")["bias"], ref.bias.detach().numpy())


# Inference (eval, no grad) on a padded batch: PyTorch's TransformerEncoder skips the padding with nested
# tensors on its conditions, and ours does the same on the same conditions, so outputs agree at every
# position, the zeros at skipped padding included. Each row: encoder layer and stack arguments, the padding,
# and whether both skip it.
LEFT_PAD = SRC_PAD[:, ::-1].copy()  # padding first: a real token after padding
FLOAT_PAD = np.where(SRC_PAD, -np.inf, 0.0).astype(np.float32)
INFERENCE = [
    ("relu", {}, {}, SRC_PAD, True),
    ("float_mask", {}, {}, FLOAT_PAD, True),  # 0 / -inf, as PyTorch turns a bool mask into
    ("gelu", {"activation": "gelu"}, {}, SRC_PAD, True),
    ("padding_first", {}, {}, LEFT_PAD, False),  # mask_check refuses it
    ("enable_nested_tensor_false", {}, {"enable_nested_tensor": False}, SRC_PAD, False),
    ("mask_check_false", {}, {"mask_check": False}, SRC_PAD, True),
    ("norm_first", {"norm_first": True}, {}, SRC_PAD, False),
    ("one_head", {"nhead": 1}, {}, SRC_PAD, False),  # an odd number of heads
    ("no_bias", {"bias": False}, {}, SRC_PAD, False),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's: nested tensors are a prototype
@pytest.mark.parametrize("name, layer_args, stack_args, pad, skipped", INFERENCE, ids=[c[0] for c in INFERENCE])
def test_encoder_inference_skips_the_padding_where_torch_does(name, layer_args, stack_args, pad, skipped):
    torch = pytest.importorskip("torch")
    layer_args = {"d_model": D, "nhead": H, "dim_feedforward": FF, "dropout": 0.0, **layer_args}
    ref = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**layer_args, batch_first=True), 2,
                                      **stack_args).eval()
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_args), 2, **stack_args).eval()
    load_torch_state_dict(ours, ref.state_dict())
    src = R.standard_normal((B, S, D)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.tensor(src), src_key_padding_mask=torch.tensor(pad)).numpy()
    with tga.no_grad():
        got = ours(Tensor(src), src_key_padding_mask=pad).data
    assert ours.use_nested_tensor == ref.use_nested_tensor
    padded = pad if pad.dtype == bool else np.isneginf(pad)
    assert (not want[padded].any()) == skipped  # the row's case is the one it names, on both sides
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training, grad", [(False, True), (True, False)], ids=["eval_with_grad", "training"])
def test_encoder_computes_the_padding_when_training_or_recording_a_graph(training, grad):
    torch = pytest.importorskip("torch")
    ref = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, H, FF, 0.0, batch_first=True), 2)
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, 0.0), 2)
    ref.train(training), ours.train(training)
    load_torch_state_dict(ours, ref.state_dict())
    src = R.standard_normal((B, S, D)).astype(np.float32)
    with torch.set_grad_enabled(grad):
        want = ref(torch.tensor(src), src_key_padding_mask=torch.tensor(SRC_PAD)).detach().numpy()
    with contextlib.nullcontext() if grad else tga.no_grad():
        got = ours(Tensor(src), src_key_padding_mask=SRC_PAD)
    assert want[SRC_PAD].any()
    np.testing.assert_allclose(got.data, want, rtol=1e-5, atol=1e-5)
    if grad:
        got.sum().backward()
        assert ours.layers[0].feed_forward.w_1.weight.grad is not None


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_transformer_inference_on_a_padded_source_matches_torch():
    """nn.Transformer's encoder skips the source's padding too (the memory is its final norm's bias there),
    and the decoder, told to ignore those keys, gives PyTorch's output."""
    torch = pytest.importorskip("torch")
    ref, ours = _pair(torch, norm_first=False)
    ref.eval(), ours.eval()
    load_torch_state_dict(ours, ref.state_dict())
    src, tgt = R.standard_normal((B, S, D)).astype(np.float32), R.standard_normal((B, T, D)).astype(np.float32)
    masks = {"src_key_padding_mask": SRC_PAD, "memory_key_padding_mask": SRC_PAD, "tgt_mask": CAUSAL}
    with torch.no_grad():
        want = ref(torch.tensor(src), torch.tensor(tgt), **{k: torch.tensor(v) for k, v in masks.items()}).numpy()
        memory = ref.encoder(torch.tensor(src), src_key_padding_mask=torch.tensor(SRC_PAD)).numpy()
    with tga.no_grad():
        got = ours(Tensor(src), Tensor(tgt), **masks).data
        ours_memory = ours.encoder(Tensor(src), src_key_padding_mask=SRC_PAD).data
    np.testing.assert_allclose(ours_memory, memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_memory[SRC_PAD], np.broadcast_to(ours.encoder.norm.bias.data, (3, D)),
                               rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
