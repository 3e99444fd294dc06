"""The scalar Value engine: each op against finite differences and PyTorch, backward semantics,
and one attention head computed with Values and with Tensors, which must agree everywhere."""

import math

import numpy as np
import pytest

from tinygrad_attn import Tensor
from tinygrad_attn.scalar import Value

# (name, f(a, b), a, b): f runs on Values, on floats-in-Values for finite differences, and on torch scalars
OPS = [
    ("add", lambda a, b: a + b, 1.3, -0.7),
    ("sub", lambda a, b: a - b, 1.3, -0.7),
    ("mul", lambda a, b: a * b, 1.3, -0.7),
    ("div", lambda a, b: a / b, 1.3, -0.7),
    ("neg", lambda a, b: -a + b * 0.0, 1.3, -0.7),
    ("radd", lambda a, b: 2.5 + a + b, 1.3, -0.7),
    ("rsub", lambda a, b: 2.5 - a * b, 1.3, -0.7),
    ("rmul", lambda a, b: 3 * a + (-2.0) * b, 1.3, -0.7),
    ("rtruediv", lambda a, b: 2.0 / a + 1 / b, 1.3, -0.7),
    ("pow_int", lambda a, b: a**3 + b**2, 1.3, -0.7),
    ("pow_frac", lambda a, b: a**0.5 * b, 1.3, -0.7),
    ("pow_neg", lambda a, b: a**-2 + b, 1.3, -0.7),
    ("exp", lambda a, b: (a * b).exp(), 1.3, -0.7),
    ("log", lambda a, b: (a * a + b).log(), 1.3, -0.7),
    ("tanh", lambda a, b: (a + b).tanh(), 1.3, -0.7),
    ("relu_positive", lambda a, b: (a * 2.0).relu() * b, 1.3, -0.7),
    ("relu_negative", lambda a, b: (a * b).relu() + b, 1.3, -0.7),
    ("same_value_twice", lambda a, b: a * a + a / (a + 1.0) + b, 1.3, -0.7),
    ("expression", lambda a, b: ((a * b + 1.0).tanh() - (b**2).exp() / a) * (a - b).relu(), 1.3, -0.7),
]
IDS = [o[0] for o in OPS]


@pytest.mark.parametrize("name,f,a,b", OPS, ids=IDS)
def test_value_matches_finite_differences(name, f, a, b):
    va, vb = Value(a), Value(b)
    out = f(va, vb)
    out.backward()
    eps = 1e-6

    def at(x, y):
        return f(Value(x), Value(y)).data

    np.testing.assert_allclose(va.grad, (at(a + eps, b) - at(a - eps, b)) / (2 * eps), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(vb.grad, (at(a, b + eps) - at(a, b - eps)) / (2 * eps), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,f,a,b", OPS, ids=IDS)
def test_value_matches_torch(name, f, a, b):
    torch = pytest.importorskip("torch")
    va, vb = Value(a), Value(b)
    out = f(va, vb)
    out.backward()
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    tout = f(ta, tb)
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-12, abs=1e-14)
    assert va.grad == pytest.approx(ta.grad.item(), rel=1e-12, abs=1e-14)
    assert vb.grad == pytest.approx(tb.grad.item(), rel=1e-12, abs=1e-14)


def test_values_hold_floats_and_record_parents():
    v = Value(2) * Value(3.5)
    assert v.data == 7.0 and isinstance(v.data, float) and v.grad == 0.0
    assert [p.data for p in v._parents] == [2.0, 3.5] and v._op == "*"


def test_value_errors():
    with pytest.raises(TypeError, match="only a constant int or float exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match=r"log: Value\(-1\) is not positive"):
        Value(-1.0).log()


# ---------------------------------------------------------------- backward semantics


def test_grads_accumulate_until_zeroed():
    a = Value(3.0)
    (a * a).backward()
    assert a.grad == 6.0
    (a * 4.0).backward()
    assert a.grad == 10.0
    y = a * a + 1.0
    y.zero_grad()
    assert a.grad == 0.0
    y.backward()
    assert a.grad == 6.0
    y.backward()  # the same graph again: leaves accumulate, intermediates do not double count
    assert a.grad == 12.0


def test_same_value_reached_through_a_sibling():
    # v feeds h directly and through 2h; a sort that marks on push ran h before 2h and lost 2/3
    v = Value(1.0)
    h = v * 3.0
    (h + h * 2.0).backward()
    assert v.grad == 9.0


def test_deep_chain_backpropagates():
    n = 100_000
    x = Value(1.0)
    y = x
    for _ in range(n):
        y = y * 1.00001
    y.backward()
    assert y.data == pytest.approx(1.00001**n, rel=1e-9)
    assert x.grad == pytest.approx(1.00001**n, rel=1e-9)


# ---------------------------------------------------------------- one attention head, Values vs Tensors


def _softmax_values(row):
    m = max(v.data for v in row)  # a constant shift: softmax does not change, exp does not overflow
    es = [(v - m).exp() for v in row]
    total = sum(es[1:], es[0])
    return [e / total for e in es]


def _matmul_values(a, b):
    return [[sum((a[i][k] * b[k][j] for k in range(1, len(b))), a[i][0] * b[0][j]) for j in range(len(b[0]))]
            for i in range(len(a))]


def _transpose(a):
    return [list(col) for col in zip(*a)]


def test_attention_head_values_and_tensors_agree():
    rng = np.random.default_rng(0)
    T, d = 3, 2
    x, w_q, w_k, w_v = rng.standard_normal((T, d)), *(rng.standard_normal((d, d)) for _ in range(3))
    u = rng.standard_normal((T, d))  # random cotangent: loss = sum(out * u)

    # scalars
    X, WQ, WK, WV = ([[Value(e) for e in row] for row in m] for m in (x, w_q, w_k, w_v))
    Q, K, V = _matmul_values(X, WQ), _matmul_values(X, WK), _matmul_values(X, WV)
    scores = [[s / math.sqrt(d) for s in row] for row in _matmul_values(Q, _transpose(K))]
    attn = [_softmax_values(row) for row in scores]
    out = _matmul_values(attn, V)
    loss = sum((out[i][j] * u[i, j] for i in range(T) for j in range(d)), Value(0.0))
    loss.backward()

    # tensors
    tx, twq, twk, twv = (Tensor(m, dtype=np.float64, requires_grad=True) for m in (x, w_q, w_k, w_v))
    q, k, v = tx @ twq, tx @ twk, tx @ twv
    tout = (q @ k.transpose(0, 1) / math.sqrt(d)).softmax(axis=-1) @ v
    (tout * u).sum().backward()

    def data(m):
        return np.array([[e.data for e in row] for row in m])

    def grad(m):
        return np.array([[e.grad for e in row] for row in m])

    np.testing.assert_allclose(data(out), tout.data, rtol=1e-12, atol=1e-14)
    assert loss.data == pytest.approx(float((tout.data * u).sum()), rel=1e-12)
    for name, scalars, tensor in [("x", X, tx), ("w_q", WQ, twq), ("w_k", WK, twk), ("w_v", WV, twv)]:
        assert np.abs(grad(scalars)).max() > 1e-3, f"{name}: a vanishing gradient would make the test weak"
        np.testing.assert_allclose(grad(scalars), tensor.grad.data, rtol=1e-10, atol=1e-12, err_msg=name)


def test_value_to_the_zero_at_zero_has_zero_gradient():
    v = Value(0.0)
    (v**0).backward()
    assert v.grad == 0.0
