import math

import numpy as np
import pytest

from tinygrad_attn import optim
from tinygrad_attn.tensor import Tensor

SHAPES = [(3, 4), (5,), ()]


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def grads_for(step, seed=0):
    rng = np.random.default_rng(1000 + step + seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def run_ours(make, steps=6):
    params = [Tensor(w.copy(), requires_grad=True) for w in make_params()]
    opt = make(params)
    for t in range(steps):
        opt.zero_grad()
        for p, g in zip(params, grads_for(t)):
            p.grad = Tensor(g)
        opt.step()
    return [p.data for p in params], opt


def run_torch(torch, make, steps=6):
    params = [torch.tensor(w.copy(), requires_grad=True) for w in make_params()]
    opt = make(params)
    for t in range(steps):
        opt.zero_grad()
        for p, g in zip(params, grads_for(t)):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


CASES = [  # (our optimiser, torch's name, keyword arguments)
    (optim.SGD, "SGD", {"lr": 0.1}),
    (optim.SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "dampening": 0.1}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.01, "nesterov": True}),
    (optim.Adam, "Adam", {"lr": 0.01}),
    (optim.Adam, "Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    (optim.AdamW, "AdamW", {"lr": 0.01}),
    (optim.AdamW, "AdamW", {"lr": 0.03, "betas": (0.5, 0.9), "weight_decay": 0.3}),
]


@pytest.mark.parametrize("ours, name, kwargs", CASES)
def test_matches_torch(ours, name, kwargs):
    torch = pytest.importorskip("torch")
    got, _ = run_ours(lambda ps: ours(ps, **kwargs))
    want = run_torch(torch, lambda ps: getattr(torch.optim, name)(ps, **kwargs))
    for g, w, start in zip(got, want, make_params()):
        assert g.dtype == np.float32
        assert not np.allclose(g, start)  # the parameters moved
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_adam_step_by_formula():
    w0, g = np.float32([1.0, -2.0]), np.float32([0.5, 0.25])
    p = Tensor(w0.copy(), requires_grad=True)
    p.grad = Tensor(g)
    optim.Adam([p], lr=0.1).step()
    # after one step m_hat = g and v_hat = g^2, so each weight moves by lr * g / (|g| + eps) = lr * sign(g)
    np.testing.assert_allclose(p.data, w0 - 0.1 * np.sign(g), rtol=1e-6)


def test_state_dict_round_trip_continues_identically():
    def make(ps):
        return optim.Adam(ps, lr=0.01, weight_decay=0.1)

    full, _ = run_ours(make, steps=6)
    part, opt = run_ours(make, steps=3)
    state = opt.state_dict()
    assert set(state) >= {"lr", "betas", "0.exp_avg", "0.exp_avg_sq", "0.step"}
    params = [Tensor(w.copy(), requires_grad=True) for w in part]
    opt2 = optim.Adam(params, lr=123.0)
    opt2.load_state_dict(state)
    assert opt2.lr == 0.01 and opt2.betas == (0.9, 0.999)
    for t in range(3, 6):
        for p, g in zip(params, grads_for(t)):
            p.grad = Tensor(g)
        opt2.step()
    for a, b in zip(full, params):
        np.testing.assert_array_equal(a, b.data)


def test_load_state_dict_rejects_wrong_shapes_and_changes_nothing():
    _, opt = run_ours(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), steps=2)
    state = opt.state_dict()
    state["0.momentum_buffer"] = np.zeros((4, 3), np.float32)
    params = [Tensor(w, requires_grad=True) for w in make_params()]
    fresh = optim.SGD(params, lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match=r"0.momentum_buffer.*\(4, 3\).*\(3, 4\)"):
        fresh.load_state_dict(state)
    assert fresh.lr == 0.5 and fresh.state == [{}, {}, {}]


def test_zero_grad_sets_none_and_missing_grads_are_skipped():
    params = [Tensor(w.copy(), requires_grad=True) for w in make_params()]
    opt = optim.SGD(params, lr=0.1)
    params[0].grad = Tensor(np.ones(SHAPES[0], np.float32))
    opt.step()
    np.testing.assert_allclose(params[0].data, make_params()[0] - 0.1)
    np.testing.assert_array_equal(params[1].data, make_params()[1])
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("max_norm, norm_type", [(0.5, 2.0), (100.0, 2.0), (0.5, 1.0), (0.3, math.inf)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    torch = pytest.importorskip("torch")
    grads = grads_for(0)
    ours = [Tensor(w, requires_grad=True) for w in make_params()]
    shared = grads[0]
    for p, g in zip(ours, grads):
        p.grad = Tensor(g)
    theirs = [torch.tensor(w, requires_grad=True) for w in make_params()]
    for p, g in zip(theirs, grads):
        p.grad = torch.tensor(g.copy())
    total = optim.clip_grad_norm_(ours, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total == pytest.approx(want.item(), rel=1e-5)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(shared, grads_for(0)[0])  # clipped out of place


def _opt(lr=0.1):
    return optim.SGD([Tensor(np.zeros(2, np.float32), requires_grad=True)], lr=lr)


def lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.optimizer.lr)
        scheduler.step()
    return out


def test_noam_schedule_follows_the_formula():
    d_model, warmup, factor = 64, 10, 2.0
    got = lrs(optim.NoamLR(_opt(), d_model, warmup, factor), 30)
    want = [factor * d_model**-0.5 * min(n**-0.5, n * warmup**-1.5) for n in range(1, 31)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.argmax(got) == warmup - 1  # the peak is the warmup-th update


def test_cosine_schedule_warms_up_then_decays():
    got = lrs(optim.CosineLR(_opt(lr=0.5), total_steps=20, warmup=4, min_lr=0.1), 22)
    want = [0.5 * n / 4 for n in range(1, 5)] + [
        0.1 + 0.2 * (1 + math.cos(math.pi * min((n - 4) / 16, 1))) for n in range(5, 23)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[3] == pytest.approx(0.5) and got[-1] == pytest.approx(0.1)


def test_lambda_lr_and_scheduler_state():
    sched = optim.LambdaLR(_opt(lr=0.2), lambda n: 1.0 / n)
    np.testing.assert_allclose(lrs(sched, 4), [0.2, 0.1, 0.2 / 3, 0.05])
    other = optim.LambdaLR(_opt(lr=0.2), lambda n: 1.0 / n)
    other.load_state_dict(sched.state_dict())
    assert other.optimizer.lr == pytest.approx(0.2 / 5)


def test_bad_hyperparameters_are_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([Tensor(np.zeros(1), requires_grad=True)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=0.1, nesterov=True)


def test_clip_grad_norm_keeps_float64_gradients_float64():
    p = Tensor(np.ones(3), dtype=np.float64, requires_grad=True)
    p.grad = Tensor(np.full(3, 10.0), dtype=np.float64)
    optim.clip_grad_norm_([p], max_norm=1.0)
    assert p.grad.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(p.grad.numpy()), 1.0, rtol=1e-5)
