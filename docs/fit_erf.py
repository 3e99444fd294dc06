"""Fit the rational function behind float32 erf in tinygrad_attn/ops.py, and check it.

    python docs/fit_erf.py

ops._erf_of_abs computes erf in float32 as

    erf(a) = (1 - e^(-a^2)) + e^(-a^2) a F(a),    F(a) = (1 - erfcx(a)) / a ~ P(a) / Q(a),    0 <= a <= 4

(erfcx(a) = e^(a^2) erfc(a); the identity is erf = 1 - e^(-a^2) erfcx; ops._erf(x) is erf(|x|) with x's
sign). This script fits P (degree 3) and Q
(degree 4, Q(0) = 1) to F on [0, 4], minimising the largest relative error: Sanathanan-Koerner iterations (a
linear least-squares problem each, weighted by 1/Q from the last one) with Lawson's reweighting toward the
largest errors. The reference F comes from ops._erf in float64 (within 2e-15 of math.erf), so NumPy is all it
needs. It prints the coefficients to paste into ops.py and the float32 result's largest error against
math.erf over [-10, 10].
"""

import math

import numpy as np

from tinygrad_attn import ops

A = 4.0  # beyond it erf(a) is 1 to float32 rounding: erfc(4) = 1.5e-8


def fit(a, f, p_degree=3, q_degree=4, iterations=40):
    """Coefficients (from a^0 up) of P, Q with P / Q ~ f at the points a, Q(0) = 1, in relative error."""
    q_values, lawson = np.ones_like(a), np.ones_like(a)
    for _ in range(iterations):
        # P(a) - f Q(a) = 0, linear in the unknowns p_0..p_m, q_1..q_n
        powers = a[:, None] ** np.arange(max(p_degree, q_degree) + 1)
        rows = np.hstack([powers[:, : p_degree + 1], -f[:, None] * powers[:, 1 : q_degree + 1]])
        weight = lawson / (q_values * f)
        solution = np.linalg.lstsq(rows * weight[:, None], f * weight, rcond=None)[0]
        p, q = solution[: p_degree + 1], np.concatenate([[1.0], solution[p_degree + 1 :]])
        q_values = np.polyval(q[::-1], a)
        error = np.abs(np.polyval(p[::-1], a) / q_values / f - 1)
        lawson = lawson * np.sqrt(error / error.max()) + 1e-12
        lawson /= lawson.max()
    return p, q, error.max()


def main():
    a = np.linspace(1e-6, A, 8001)
    erfcx = (1 - ops._erf(a)) * np.exp(a * a)
    p, q, relative = fit(a, (1 - erfcx) / a)
    print(f"largest relative error of P/Q against F on [0, {A}]: {relative:.1e}")
    print("_ERF_P =", tuple(float(c) for c in p))
    print("_ERF_Q =", tuple(float(c) for c in q))

    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    reference = np.array([math.erf(float(v)) for v in x])
    print(f"ops._erf(float32) today: largest error {np.abs(ops._erf(x) - reference).max():.2e} over [-10, 10]")


if __name__ == "__main__":
    main()
