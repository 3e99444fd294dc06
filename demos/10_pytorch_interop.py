# %% [markdown]
# # 10. PyTorch interop: the same transformer, two engines
#
# Our modules use PyTorch's names, arguments and mask conventions, so a
# `torch.nn.Transformer`'s weights load straight into ours. Here we prove the two are
# the same function: same outputs under every kind of mask, same gradients for every
# weight, and weights that travel back to PyTorch. This demo needs PyTorch; without it
# it says so and stops.

# %%
import importlib.util

if importlib.util.find_spec("torch") is None:
    print("skipped: this demo compares against PyTorch, which is not installed (pip install torch)")
    raise SystemExit(0)

# %%
import warnings

import numpy as np
import torch

import tinygrad_attn as tga
from tinygrad_attn import nn
from tinygrad_attn.interop import load_torch_state_dict, to_torch_state_dict
from tinygrad_attn.optim import SGD

warnings.filterwarnings("ignore", category=UserWarning, module="torch")  # its nested-tensor notice
np.set_printoptions(precision=3, suppress=True)
torch.manual_seed(0)
tga.manual_seed(0)
rng = np.random.default_rng(0)
d_model, nhead, layers, d_ff = 32, 4, 2, 64
print("torch", torch.__version__)

# %% [markdown]
# ## Load torch's weights into ours
# Both models are built with the same arguments (batch-first, no dropout). PyTorch packs
# the query, key and value projections into one `in_proj_weight` (3 d_model, d_model);
# we keep them apart as w_q, w_k and w_v, named as in the paper. `load_torch_state_dict`
# splits and renames; everything else keeps its name.

# %%
ref = torch.nn.Transformer(d_model, nhead, layers, layers, d_ff, dropout=0.0, batch_first=True)
ours = nn.Transformer(d_model, nhead, layers, layers, d_ff, dropout=0.0)
theirs = ref.state_dict()
load_torch_state_dict(ours, theirs)
print(f"{len(theirs)} torch tensors -> {len(ours.state_dict())} of ours "
      f"({sum(p.numel() for p in ref.parameters()):,} numbers in both)")
name = "encoder.layers.0.self_attn"
print(f"torch {name}.in_proj_weight {tuple(theirs[name + '.in_proj_weight'].shape)} -> ours",
      {k.split(".")[-2]: v.shape for k, v in ours.state_dict().items()
       if k.startswith(name + ".w_") and k.endswith("weight") and "w_o" not in k})
theirs_key, ours_key = "decoder.layers.0.multihead_attn.out_proj.weight", "decoder.layers.0.cross_attn.w_o.weight"
same = np.array_equal(theirs[theirs_key].numpy(), ours.state_dict()[ours_key])
print(f"torch {theirs_key} -> ours {ours_key}: equal {same}")
assert same

# %% [markdown]
# ## Same outputs, under masks
# A batch of three: the second and third sources end in padding, the first target is
# padded, and the decoder gets the causal mask. Both engines run it in float32, then
# again in float64 so the only difference left is rounding.

# %%
B, S, T = 3, 7, 5
src_pad = np.zeros((B, S), dtype=bool)
src_pad[1, 5:], src_pad[2, 3:] = True, True  # True = padding, ignored
tgt_pad = np.zeros((B, T), dtype=bool)
tgt_pad[0, 4:] = True
causal = nn.Transformer.generate_square_subsequent_mask(T)  # -inf above the diagonal
masks = {"src_key_padding_mask": src_pad, "memory_key_padding_mask": src_pad,
         "tgt_key_padding_mask": tgt_pad, "tgt_mask": causal}
src = rng.standard_normal((B, S, d_model))
tgt = rng.standard_normal((B, T, d_model))

def run_both(dtype):
    """Forward both models in ``dtype``; returns the outputs and their inputs (which need gradients)."""
    ref.to(getattr(torch, np.dtype(dtype).name))
    ours.to(dtype)
    s, t = (tga.Tensor(a, dtype=dtype, requires_grad=True) for a in (src, tgt))
    ts, tt = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (src, tgt))
    out = ours(s, t, **{k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in masks.items()})
    want = ref(ts, tt, **{k: torch.tensor(v.astype(dtype) if v.dtype.kind == "f" else v)
                          for k, v in masks.items()})
    return out, want, (s, t), (ts, tt)

for dtype in (np.float32, np.float64):
    out, want, _, _ = run_both(dtype)
    diff = np.abs(out.numpy() - want.detach().numpy()).max()
    print(f"{np.dtype(dtype).name}: output {out.shape}, max |ours - torch| = {diff:.2e}")
    assert diff < (1e-4 if dtype == np.float32 else 1e-10)

# %% [markdown]
# ## Same gradients
# Backpropagate one random cotangent (a random upstream gradient, so that every entry of
# every gradient matters) through both, in float64. `to_torch_state_dict(grads=True)`
# returns our gradients under PyTorch's names, packed as PyTorch packs them, so the two
# dictionaries compare key by key.

# %%
out, want, (s, t), (ts, tt) = run_both(np.float64)
cotangent = rng.standard_normal(out.shape)
out.backward(cotangent)
want.backward(torch.tensor(cotangent))
our_grads = to_torch_state_dict(ours, grads=True)
worst = max((np.abs(our_grads[k] - p.grad.numpy()).max(), k) for k, p in ref.named_parameters())
print(f"{len(our_grads)} parameter gradients compared; largest difference {worst[0]:.2e} (in {worst[1]})")
for name, ours_g, torch_g in (("src", s.grad.numpy(), ts.grad.numpy()), ("tgt", t.grad.numpy(), tt.grad.numpy())):
    print(f"gradient of the {name} input: max difference {np.abs(ours_g - torch_g).max():.2e}")
print("gradient reaching a padded source position:", np.abs(s.grad.numpy()[2, 3:]).max(),
      " (padded keys get no weight, so nothing flows back to them)")
assert worst[0] < 1e-9

# %% [markdown]
# ## And back to PyTorch
# Train our copy for a few SGD steps so its weights are no longer torch's, then load
# them into a fresh `torch.nn.Transformer` with `to_torch_state_dict` and PyTorch's own
# `load_state_dict`: the fresh torch model now computes what ours computes.

# %%
ours.to(np.float32)
opt = SGD(ours.parameters(), lr=0.1)
for _ in range(3):
    y = ours(tga.Tensor(src, dtype=np.float32), tga.Tensor(tgt, dtype=np.float32), **masks)
    loss = (y * y).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
fresh = torch.nn.Transformer(d_model, nhead, layers, layers, d_ff, dropout=0.0, batch_first=True)
fresh.load_state_dict({k: torch.tensor(v) for k, v in to_torch_state_dict(ours).items()})
ref.to(torch.float32)
ts, tt = torch.tensor(src, dtype=torch.float32), torch.tensor(tgt, dtype=torch.float32)
torch_masks = {k: torch.tensor(v) for k, v in masks.items()}
y = ours(tga.Tensor(src, dtype=np.float32), tga.Tensor(tgt, dtype=np.float32), **masks).numpy()
with torch.no_grad():
    before = np.abs(ref(ts, tt, **torch_masks).numpy() - y).max()
    after = np.abs(fresh(ts, tt, **torch_masks).numpy() - y).max()
print(f"after 3 SGD steps on our side: the original torch model differs by {before:.3f};")
print(f"a fresh torch model loaded with our weights differs by {after:.2e}")
assert after < 1e-4
