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


# erf in float32: erf(a) = 1 - e^(-a^2) erfcx(a) = (1 - e^(-a^2)) + e^(-a^2) a F(a) for a >= 0, where
# F(a) = (1 - erfcx(a)) / a ~ P(a) / Q(a) on [0, 4] (erfcx(a) = e^(a^2) erfc(a)). Coefficients from a^0 up,
# all positive, fitted by docs/fit_erf.py: P / Q is within 1.2e-8 of F.
_ERF_P = (1.1283791535919407, 1.207890021850879, 0.5415665472306583, 0.09725474528852512)
_ERF_Q = (1.0, 1.9566905679060649, 1.5473699106828165, 0.5960896966182803, 0.0972732006725105)


def _erf_of_abs(a):
    """erf(a) for a >= 0 (erf is odd: _erf below restores the sign), without a Python call per element; in
    float64 for float64 a, else in float32. Pass an array nobody else needs: in float32 it is clipped in place.

    float32: from the fit above, within 1.4e-7 of math.erf (float32 spacing below 1 is 6e-8). Both terms are
    positive and each is accurate in absolute terms: 1 - e^(-a^2) to its rounding, and every rounding in
    e^(-a^2) a P / Q is relative to a value below 0.3, so nothing cancels.
    float64: within 2e-15 of math.erf, from the series
    erf(a) = 2/sqrt(pi) e^(-a^2) sum (2a^2)^n a / (2n+1)!!  (no cancellation: every term is positive) for a < 3
    and erfc's continued fraction e^(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))) beyond.
    """
    if a.dtype != np.float64:
        shape = a.shape
        a = a.reshape(-1).astype(np.float32, copy=False)  # 1-D: the steps below work in place on arrays
        np.clip(a, 0.0, 4.0, out=a)  # erf is 1 in float32 beyond 4; P / Q stays finite (a = inf, a^3 overflows)
        e = np.square(a)
        np.negative(e, out=e)
        np.exp(e, out=e)  # e^(-a^2)
        z = _horner(_ERF_P, a)
        z /= _horner(_ERF_Q, a)  # F(a)
        z *= a
        z *= e
        np.subtract(1, e, out=e)  # 1 - e^(-a^2)
        z += e
        return z.reshape(shape)
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
    return out


def _erf(x):
    """erf(x) elementwise, in x's dtype: erf(x) = sign(x) erf(|x|)."""
    return np.copysign(_erf_of_abs(np.abs(x)), x).astype(x.dtype, copy=False)


def _horner(coefficients, a):
    """c_0 + c_1 a + c_2 a^2 + ... in a's dtype, as (((c_n a + c_n-1) a + ...) a + c_0), in one new array."""
    c = [a.dtype.type(v) for v in coefficients]
    z = a * c[-1]
    for v in c[-2:0:-1]:
        z += v
        z *= a
    z += c[0]
    return z


def gelu(x):
    """z = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 the normal CDF    dx = g * (Phi(x) + x * phi(x))

    erf is odd, so x erf(x / sqrt 2) = |x| erf(|x| / sqrt 2) and z = (x + |x| erf(|x| / sqrt 2)) / 2: the
    forward needs no sign, which NumPy restores slowly (np.copysign costs as much as five other passes); the
    VJP, which needs Phi, restores it. float16 is computed in float32 (erf's dtype) and rounded once.
    """
    magnitude = np.abs(x)
    erf_of_magnitude = _erf_of_abs(magnitude * x.dtype.type(1 / math.sqrt(2)))
    z = erf_of_magnitude * magnitude
    z += x
    z *= 0.5

    def vjp(g):
        cdf = np.copysign(erf_of_magnitude, x)
        cdf += 1
        cdf *= 0.5
        pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
        return ((g * (cdf + x * pdf)).astype(x.dtype, copy=False),)

    return z.astype(x.dtype, copy=False), vjp


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


def unpack_rows(*parts, where, length):
    """z (length, W) zeros, but z[where] = the parts (N, w_i) side by side, W the sum of their widths: rows put
    back at their places in a longer, padded layout (nn's Packing.unpack)    dpart_i = g[where], part i's columns

    The parts are 2-D and of one dtype (F.unpack_rows checks). One array and one write per part: cheaper than
    joining the parts, adding a row of zeros and gathering.
    """
    widths = [part.shape[-1] for part in parts]
    ends = np.cumsum(widths)
    z = np.zeros((length, ends[-1]), parts[0].dtype)
    for part, end, width in zip(parts, ends, widths):
        z[where, end - width : end] = part

    def vjp(g):
        return tuple(np.split(g[where], ends[:-1], axis=-1))

    return z, vjp


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
    """z = (x - mean) / sqrt(var + eps) * w + b, biased var over axes (the trailing ones, w's shape)
    dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * w, xh = (x - mean) * rstd the normalised x;
    dw = sum of g * xh, db = sum of g, both over the leading axes

    x is seen as rows (its leading axes) of features (the normalised ones), and every sum is a product with a
    vector, a GEMV: a row's mean is _row_sums(x) / n, and with u = g * (x - mean),
    mean(dxh * xh) = rstd * (u @ w) / n and dw = rstd^T u, so the backward needs no xh of its own.
    Like PyTorch it keeps x, mean and rstd.
    """
    n = len(axes)
    assert axes == tuple(range(-n, 0)), f"layer_norm normalises over trailing axes, got {axes}"
    features = weight.size
    rows = x.reshape(math.prod(x.shape[: x.ndim - n]), features)  # (rows, features)
    mu = _row_sums(rows) / features  # (rows, 1)
    z = rows - mu  # the arrays named z, u and v are this op's own: updated in place, no temporaries
    rstd = 1.0 / np.sqrt(np.einsum("rf,rf->r", z, z)[:, None] / features + eps)  # no array of the squares
    z *= rstd
    z *= weight.reshape(-1)
    z += bias.reshape(-1)

    def vjp(g):
        g2, w = g.reshape(rows.shape), weight.reshape(-1)
        v = rows - mu
        u = g2 * v
        dw = rstd[:, 0] @ u
        mean_dxh, mean_dxh_xh = (g2 @ w)[:, None] / features, rstd * (u @ w)[:, None] / features
        dx = np.multiply(g2, w, out=u)  # dxh, in u's place now that its sums are taken
        dx -= mean_dxh
        v *= rstd * mean_dxh_xh  # xh * mean(dxh * xh)
        dx -= v
        dx *= rstd
        db = np.ones(len(g2), g.dtype) @ g2
        return dx.reshape(x.shape), dw.reshape(weight.shape), db.reshape(bias.shape)

    return z.reshape(x.shape), vjp


def masked_softmax(x, bias=None, scale=1.0, out=None):
    """z = softmax(scale * x + bias) over the last axis (the keys), bias a constant (-inf masks); a row all
    at -inf gives z = 0    dx = scale * z * (g - sum(g * z))

    ``out``: the array to write z into, of z's shape; x itself when the caller owns x (the attention ops do).
    Likewise ``vjp(g, out)`` writes dx into out, g itself when the caller owns g.
    """
    shape = x.shape if bias is None else np.broadcast_shapes(x.shape, np.shape(bias))  # a mask may add batch axes
    out = np.empty(shape, x.dtype) if out is None else out
    z = np.multiply(x, x.dtype.type(scale), out=out)  # this op's own array: all in place
    if bias is not None:
        z += bias
    m = _row_max(z)  # an empty row of keys gives -inf
    m[np.isneginf(m)] = 0  # a fully masked row: exp(-inf - 0) = 0 everywhere ...
    z -= m
    np.exp(z, out=z)
    s = _row_sums(z)
    s[s == 0] = 1  # ... and 0 / 1 = 0, never 0 / 0
    z /= s

    def vjp(g, out=None):
        # g - sum(g * z), the sums by einsum, which makes no array of the products
        dx = np.subtract(g, np.einsum("...k,...k->...", g, z)[..., None], out=out)
        dx *= z
        dx *= dx.dtype.type(scale)
        return (dx,)

    return z, vjp


def self_attention(qkv, heads, bias=None, scale=1.0, keep=None, weights=None):
    """Multi-head self-attention's core on one packed projection, as PyTorch's in_proj feeds it.

    qkv (B, T, 3E) is [q | k | v], each E = heads * d features; per head, on (T, d) slices,
    w = softmax(scale * q k^T + bias) (masked_softmax, in place of the scores, in ``weights`` when given),
    p = w * keep (dropout; keep = 1 without it) and c = p v; z (B, T, E) is the heads' c side by side.
    dv = p^T g, dp = g v^T, ds = masked_softmax's VJP of dp * keep, dq = ds k, dk = ds^T q

    q, k, v and the heads' c are strided views, which matmul reads and writes in place, and dq, dk, dv land
    in one (B, T, 3E) array: the packed projection's backward is then one product, not three and a sum.
    """
    z, heads_vjp = _attend(*_heads(qkv, 3, heads), bias, scale, keep, weights)

    def vjp(g):
        dqkv = np.empty_like(qkv)
        heads_vjp(g, *_heads(dqkv, 3, heads))
        return (dqkv,)

    return z, vjp


def cross_attention(q, kv, heads, bias=None, scale=1.0, keep=None, weights=None):
    """self_attention's math for queries of one sequence and keys and values of another (the memory):
    q (B, T, E), kv (B, S, 2E) = [k | v] from one packed projection; z (B, T, E), weights (B, h, T, S)."""
    z, heads_vjp = _attend(*_heads(q, 1, heads), *_heads(kv, 2, heads), bias, scale, keep, weights)

    def vjp(g):
        dq, dkv = np.empty_like(q), np.empty_like(kv)
        heads_vjp(g, *_heads(dq, 1, heads), *_heads(dkv, 2, heads))
        return dq, dkv

    return z, vjp


def _heads(x, n, heads):
    """(B, L, n * E) -> n views (B, h, L, d) of x, the heads of its n packed parts: no copies."""
    b, length, width = x.shape
    return x.reshape(b, length, n, heads, width // (n * heads)).transpose(2, 0, 3, 1, 4)


def _attend(q, k, v, bias, scale, keep, weights):
    """The two ops above on heads (B, h, T, d), (B, h, S, d), (B, h, S, d): z (B, T, E) and
    vjp(g, dq, dk, dv), which writes the three gradients into the views it is given."""
    scores = np.matmul(q, k.swapaxes(-1, -2), out=weights)  # (B, h, T, S), made into the weights in place:
    w, softmax_vjp = masked_softmax(scores, bias, scale, out=scores)  # one array for both
    p = w if keep is None else w * keep
    b, h, t, d = q.shape
    z = np.empty((b, t, h * d), q.dtype)
    (heads_of_z,) = _heads(z, 1, h)
    np.matmul(p, v, out=heads_of_z)

    def vjp(g, dq, dk, dv):
        (g4,) = _heads(g, 1, h)
        np.matmul(p.swapaxes(-1, -2), g4, out=dv)
        dp = g4 @ v.swapaxes(-1, -2)
        if keep is not None:
            dp *= keep
        (ds,) = softmax_vjp(dp, out=dp)
        np.matmul(ds, k, out=dq)
        np.matmul(ds.swapaxes(-1, -2), q, out=dk)

    return z, vjp


def _row_sums(x):
    """Sums over the last axis, kept as a size-1 axis: the product rows @ 1, a GEMV, which beats NumPy's
    reduction over short rows (a layer's features, an attention row's keys) 3-6x."""
    rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
    return (rows @ np.ones(x.shape[-1], x.dtype)).reshape(x.shape[:-1] + (1,))


def _row_max(x):
    """Maxima over the last axis, kept as a size-1 axis (-inf for an empty row). NumPy reduces each row in its
    own inner-loop call, which costs more than the work when rows are short (an attention row of a few dozen
    keys): there the maxima across a transposed copy's rows are 3-6x faster, while the copy fits in one core's
    L2; beyond it, the copy's strided writes lose (6x slower at 16384 rows of 64 keys)."""
    rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
    if x.shape[-1] <= _SHORT_ROW and x.nbytes <= _L2_BYTES:
        m = np.ascontiguousarray(rows.T).max(axis=0, initial=-np.inf)
    else:
        m = rows.max(axis=1, initial=-np.inf)
    return m.reshape(x.shape[:-1] + (1,))


_SHORT_ROW, _L2_BYTES = 48, 2 << 20  # keys; one core's L2 cache on the machines measured (docs/benchmarks.md)


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
        return dw, None  # the ids get no gradient

    return weight[ids], vjp
