"""The primitives: NumPy forward passes, each beside its vector-Jacobian product.

Every op takes ndarrays (plus plain-Python options) and returns ``(out, vjp)``.
``vjp(g)`` maps the gradient of the output to one gradient per array input,
in the input's order (``None`` where an input gets no gradient).

An op returns its gradients at the *broadcast* shape; the engine in
tensor.py sums them back to each input's shape, once, for every op.

(line budget: over 400 lines on purpose: every primitive in one file reads as one table.)
"""

import math

import numpy as np

# ---------------------------------------------------------------- elementwise binary


def add(x, y):
    """z = x + y    dx = g, dy = g"""
    return x + y, lambda g: (g, g)


def sub(x, y):
    """z = x - y    dx = g, dy = -g"""
    return x - y, lambda g: (g, -g)


def mul(x, y):
    """z = x * y    dx = g * y, dy = g * x"""
    return x * y, lambda g: (g * y, g * x)


def div(x, y):
    """z = x / y    dx = g / y, dy = -g * z / y"""
    z = x / y
    return z, lambda g: (g / y, -g * z / y)


def pow_const(x, c):
    """z = x ** c (c a constant)    dx = g * c * x ** (c - 1)  (0 when c = 0, even at x = 0)"""
    if c == 0:
        return np.ones_like(x), lambda g: (np.zeros_like(g),)
    return x**c, lambda g: (g * c * x ** (c - 1),)


def power(x, y):
    """z = x ** y    dx = g * y * x ** (y - 1), dy = g * z * log(x)  (0 where x = 0 <= y, as in PyTorch)"""
    z = x**y

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = np.where(y == 0, 0.0, g * y * x ** (y - 1))  # x ** 0 is constant, even at x = 0
            return dx, np.where((x == 0) & (y >= 0), 0.0, g * z * np.log(x))

    return z, vjp


# ---------------------------------------------------------------- elementwise unary


def neg(x):
    """z = -x    dx = -g"""
    return -x, lambda g: (-g,)


def exp(x):
    """z = exp(x)    dx = g * z"""
    z = np.exp(x)
    return z, lambda g: (g * z,)


def log(x):
    """z = log(x)    dx = g / x"""
    return np.log(x), lambda g: (g / x,)


def sqrt(x):
    """z = sqrt(x)    dx = g / (2 z)"""
    z = np.sqrt(x)
    return z, lambda g: (g / (2 * z),)


def tanh(x):
    """z = tanh(x)    dx = g * (1 - z^2)"""
    z = np.tanh(x)
    return z, lambda g: (g * (1 - z * z),)


def sigmoid(x):
    """z = 1 / (1 + exp(-x))    dx = g * z * (1 - z)"""
    z = np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)  # never overflows
    return z, lambda g: (g * z * (1 - z),)


def relu(x):
    """z = max(x, 0)    dx = g * (x > 0)"""
    return np.maximum(x, 0), lambda g: (g * (x > 0),)


# erf(x) ~ x P(x^2) / Q(x^2) for |x| <= 3.9 (beyond, erf is +-1 to float32 rounding), coefficients from t^0 up.
# Fitted for this project by iterated weighted least squares (Sanathanan-Koerner) on 6,000 points of
# [0, 3.9] against math.erf: in float64 arithmetic the fit is within 5e-8 of erf everywhere.
_ERF_P = (1.1283790890045529, 0.18988450373847202, 0.05270899716251642, 0.0037522238425351075,
          0.00028616600475669593, 2.0744227799129877e-06)
_ERF_Q = (1.0, 0.5016130692036705, 0.11392060385960524, 0.014939695850466781, 0.0011623204352632626,
          3.841178760412983e-05)


def _erf(x):
    """erf(x) elementwise, in x's dtype, without a Python call per element.

    float32: the rational fit above, evaluated in float64 (float32 arithmetic alone loses 4e-7 near |x| = 3.6):
    within 1e-7 of math.erf. float64: within 2e-15 of math.erf, from the series
    erf(a) = 2/sqrt(pi) e^(-a^2) sum (2a^2)^n a / (2n+1)!!  (no cancellation: every term is positive) for a < 3
    and erfc's continued fraction e^(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))) beyond.
    """
    if x.dtype != np.float64:
        a = np.clip(x, -3.9, 3.9).astype(np.float64)
        s = a * a
        p, q = s * _ERF_P[-1], s * _ERF_Q[-1]
        for cp, cq in zip(_ERF_P[-2:0:-1], _ERF_Q[-2:0:-1]):  # Horner, in place: p = (p + c) s
            p += cp
            p *= s
            q += cq
            q *= s
        p += _ERF_P[0]
        p *= a
        q += _ERF_Q[0]
        p /= q
        return p.astype(x.dtype)
    a = np.abs(x)
    out = np.empty_like(a)
    near = a < 3.0
    s = a[near]
    term, total, s2 = s, s, 2 * s * s
    for n in range(1, 60):  # by n = 60 the terms are below 1e-17 of the sum for every a < 3
        term = term * s2 / (2 * n + 1)
        total = total + term
    out[near] = 2 / math.sqrt(math.pi) * np.exp(-s * s) * total
    far = a[~near]
    frac = far
    for k in range(80, 0, -1):  # 80 levels settle the fraction to float64 rounding for a >= 3
        frac = far + (k / 2) / frac
    out[~near] = 1 - np.exp(-far * far) / math.sqrt(math.pi) / frac
    return np.copysign(out, x)


def gelu(x):
    """z = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 the normal CDF    dx = g * (Phi(x) + x * phi(x))"""
    cdf = _erf(x * x.dtype.type(1 / math.sqrt(2)))
    cdf += 1
    cdf *= 0.5

    def vjp(g):
        pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return (g * (cdf + x * pdf),)

    return x * cdf, vjp


def gelu_tanh(x):
    """z = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    dx = g * (1/2 (1 + t) + x/2 (1 - t^2) du/dx), t = tanh(u)"""
    k = math.sqrt(2 / math.pi)
    t = np.tanh(k * (x + 0.044715 * x**3))
    du = k * (1 + 3 * 0.044715 * x * x)
    return 0.5 * x * (1 + t), lambda g: (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)


def astype(x, dtype):
    """z = x as dtype    dx = g as x's dtype"""
    return x.astype(dtype), lambda g: (g.astype(x.dtype),)


# ---------------------------------------------------------------- reductions


def _keep(g, shape, axis, keepdims):
    """Put back the axes a reduction removed, so g broadcasts against its input."""
    if axis is None or keepdims:
        return g if keepdims else np.reshape(g, (1,) * len(shape))
    return np.expand_dims(g, axis)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (the op is called sum)
    """z = sum(x, axis)    dx = g broadcast back over axis"""
    z = np.sum(x, axis=axis, keepdims=keepdims)
    return z, lambda g: (np.broadcast_to(_keep(g, x.shape, axis, keepdims), x.shape),)


def mean(x, axis=None, keepdims=False):
    """z = mean(x, axis)    dx = g / n broadcast back over axis (n elements averaged)"""
    z = np.mean(x, axis=axis, keepdims=keepdims)
    n = x.size // z.size if z.size else 1  # (the builtins sum and max are shadowed in this file)
    return z, lambda g: (np.broadcast_to(_keep(g, x.shape, axis, keepdims) / n, x.shape),)


def max(x, axis=None, keepdims=False):  # noqa: A001 (the op is called max)
    """z = max(x, axis)    dx = g at the maxima, shared equally between ties"""
    z = np.max(x, axis=axis, keepdims=True)

    def vjp(g):
        hit = x == z
        return (_keep(g, x.shape, axis, keepdims) * hit / hit.sum(axis=axis, keepdims=True),)

    return (z if keepdims else np.squeeze(z, axis=axis)), vjp


# ---------------------------------------------------------------- linear algebra


def matmul(x, y):
    """z = x @ y    dx = g @ y^T, dy = x^T @ g (on the last two axes; 1-D operands as vectors)"""
    z = x @ y

    def vjp(g):
        x2 = x[None, :] if x.ndim == 1 else x  # a vector is a one-row matrix on the left...
        y2 = y[:, None] if y.ndim == 1 else y  # ...and a one-column matrix on the right
        g2 = np.reshape(g, np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2]) + (x2.shape[-2], y2.shape[-1]))
        dx = g2 @ np.swapaxes(y2, -1, -2)
        dy = np.swapaxes(x2, -1, -2) @ g2
        return (dx[..., 0, :] if x.ndim == 1 else dx), (dy[..., 0] if y.ndim == 1 else dy)

    return z, vjp


# ---------------------------------------------------------------- shape


def reshape(x, shape):
    """z = x viewed as shape    dx = g viewed as x's shape"""
    return np.reshape(x, shape), lambda g: (np.reshape(g, x.shape),)


def permute(x, axes):
    """z = x with its axes reordered    dx = g with the order undone"""
    inverse = tuple(np.argsort([a % x.ndim for a in axes]))  # negative axes count from the end
    return np.transpose(x, axes), lambda g: (np.transpose(g, inverse),)


def transpose(x, a, b):
    """z = x with axes a and b swapped    dx = g with them swapped back"""
    return np.swapaxes(x, a, b), lambda g: (np.swapaxes(g, a, b),)


def broadcast_to(x, shape):
    """z = x repeated to shape    dx = g (the engine sums the repeats)"""
    return np.broadcast_to(x, shape), lambda g: (g,)


def _is_basic(index):
    """True for an index of ints, slices, None and Ellipsis only: it picks each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts)


def getitem(x, index):
    """z = x[index]    dx = zeros with g added at index (repeated indices accumulate)"""

    def vjp(g):
        dx = np.zeros_like(x)
        if _is_basic(index):
            dx[index] = g
        else:
            np.add.at(dx, index, g)
        return (dx,)

    return x[index], vjp


def masked_fill(x, mask, value):
    """z = value where mask else x    dx = g where not mask else 0"""
    return np.where(mask, np.asarray(value, dtype=x.dtype), x), lambda g: (np.where(mask, 0, g),)


def where(x, y, cond):
    """z = x where cond else y    dx = g where cond, dy = g where not cond"""
    return np.where(cond, x, y), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g))


def cat(*xs, axis=0):
    """z = xs joined along axis    dx_i = the slice of g that came from xs[i]"""
    ends = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return np.concatenate(xs, axis=axis), lambda g: tuple(np.split(g, ends, axis=axis))


def stack(*xs, axis=0):
    """z = xs stacked on a new axis    dx_i = g taken at index i of that axis"""
    z = np.stack(xs, axis=axis)
    return z, lambda g: tuple(np.take(g, i, axis=axis) for i in range(len(xs)))


# ---------------------------------------------------------------- fused


def softmax(x, axis=-1):
    """z = exp(x - max) / sum(exp(x - max))    dx = z * (g - sum(g * z))"""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))  # initial: an empty axis is fine
    z = e / np.sum(e, axis=axis, keepdims=True)
    return z, lambda g: (z * (g - np.sum(g * z, axis=axis, keepdims=True)),)


def log_softmax(x, axis=-1):
    """z = x - max - log(sum(exp(x - max)))    dx = g - softmax(x) * sum(g)"""
    shifted = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    with np.errstate(divide="ignore"):  # log(0) only for an empty axis, whose result is empty anyway
        z = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return z, lambda g: (g - np.exp(z) * np.sum(g, axis=axis, keepdims=True),)


# ---- fused (nn)
# Composite ops for the transformer with one hand-written VJP each: fewer graph nodes and fewer
# temporaries than the same math spelled with the primitives above. tests/test_functional.py checks
# every one against its composite.


def linear(x, weight, bias=None):
    """z = x @ W^T + b    dx = g @ W, dW = g^T @ x (over all leading axes), db = sum(g)

    The leading axes are flattened into one: a single 2-D product runs far faster than a batched one,
    and db as the product 1^T g (a GEMV) beats g.sum(axis=0) 2-5x.
    """
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    z = x2 @ weight.T  # (N, out)
    if bias is not None:
        z += bias
    z = z.reshape(x.shape[:-1] + (weight.shape[0],))

    def vjp(g):
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        dx, dw = (g2 @ weight).reshape(x.shape), g2.T @ x2
        return (dx, dw) if bias is None else (dx, dw, np.ones(len(g2), g.dtype) @ g2)  # 1^T g: a GEMV

    return z, vjp


def layer_norm(x, weight, bias, axes=(-1,), eps=1e-5):
    """z = (x - mean) / sqrt(var + eps) * w + b, biased var over axes
    dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * w, xh = normalised x;
    dw = g * xh, db = g (the engine sums them over the leading axes)

    Like PyTorch it keeps x, mean and rstd for the backward and recomputes xh there: x is in the graph anyway.
    """
    mu = np.mean(x, axis=axes, keepdims=True)
    z = x - mu  # the arrays named z and dx below are this op's own: updated in place, no temporaries
    rstd = 1.0 / np.sqrt(np.mean(np.square(z), axis=axes, keepdims=True) + eps)
    z *= rstd
    z *= weight
    z += bias

    def vjp(g):
        xh = x - mu
        xh *= rstd
        dx = g * weight  # dxh
        dx -= np.mean(dx, axis=axes, keepdims=True) + xh * np.mean(dx * xh, axis=axes, keepdims=True)
        dx *= rstd
        return dx, g * xh, g

    return z, vjp


def masked_softmax(x, bias=None, scale=1.0, axis=-1):
    """z = softmax(scale * x + bias), bias a constant (-inf masks); a row all at -inf gives z = 0
    dx = scale * z * (g - sum(g * z))"""
    if scale != 1.0:
        x = x * x.dtype.type(scale)
    if bias is not None:
        x = x + bias
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # an empty row of keys gives an empty row
    m[np.isneginf(m)] = 0  # a fully masked row: exp(-inf - 0) = 0 everywhere ...
    z = np.exp(x - m)  # z and dx are this op's own arrays: normalised and scaled in place
    s = np.sum(z, axis=axis, keepdims=True)
    s[s == 0] = 1  # ... and 0 / 1 = 0, never 0 / 0
    z /= s

    def vjp(g):
        dx = g * z
        dx -= z * np.sum(dx, axis=axis, keepdims=True)  # z * (g - sum(g * z))
        if scale != 1.0:
            dx *= dx.dtype.type(scale)
        return (dx,)

    return z, vjp


def dropout(x, keep):
    """z = x * keep, keep a constant (0 where dropped, 1 / (1 - p) where kept)    dx = g * keep"""
    return x * keep, lambda g: (g * keep,)


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """logits (N, C), target (N,) ints; p = softmax(logits), e = (1 - s) onehot(t) + s / C
    z_i = -sum_c e_ic log p_ic for kept rows (t_i != ignore_index), 0 otherwise; mean over kept rows
    dlogits_i = g_i (p_i - e_i) on kept rows"""
    n, c = logits.shape
    keep = target != ignore_index
    t = np.where(keep, target, 0)
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    logp = shifted - lse  # (N, C)
    rows = np.arange(n)
    per = -(1.0 - label_smoothing) * logp[rows, t]
    if label_smoothing:
        per = per - label_smoothing / c * np.sum(logp, axis=1)
    per = np.where(keep, per, 0).astype(logits.dtype, copy=False)
    count = int(keep.sum())
    if reduction == "none":
        z = per
    elif reduction == "sum":
        z = per.sum()
    else:
        z = per.sum() / count if count else np.asarray(np.nan, dtype=logits.dtype)  # as PyTorch: 0 / 0

    def vjp(g):
        gi = g if reduction == "none" else np.broadcast_to(g / count if reduction == "mean" else g, (n,))
        d = np.exp(logp)
        if label_smoothing:
            d -= label_smoothing / c
        d[rows, t] -= 1.0 - label_smoothing
        d *= (gi * keep)[:, None]
        return d, None  # no gradient for the integer targets

    return z, vjp


def embedding(weight, ids, padding_idx=None):
    """z = W[ids]    dW = the rows of g added into the rows they came from (none into padding_idx)

    The sum runs over ids sorted once, one np.add.reduceat per run of equal ids: 5-10x np.add.at's speed.
    """

    def vjp(g):
        flat = ids.ravel()
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.diff(sorted_ids, prepend=-1))  # where each run of one id begins
        dw = np.zeros_like(weight)
        if flat.size:
            dw[sorted_ids[starts]] = np.add.reduceat(g.reshape(-1, weight.shape[1])[order], starts)
        if padding_idx is not None:
            dw[padding_idx] = 0
        return (dw,)

    return weight[ids], vjp
