"""flaubert_np.erf against math.erf: every interval of the approximation, and special values."""

import math

import numpy as np

from flaubert_np.erf import erf

RNG = np.random.default_rng(0)


def test_erf_within_1e7_of_math_erf_on_a_dense_grid():
    # Every interval of the piecewise approximation, its boundaries, and the tails.
    grid = np.linspace(-10, 10, 400_001, dtype=np.float32)
    edges = np.float32([0.84375, 1.25, 1 / 0.35, 6.0, 1e-30, 1e-8, 0.0, 3.4e38])
    x = np.concatenate([grid, edges, -edges, np.nextafter(edges, np.float32(0))])
    exact = np.array([math.erf(float(v)) for v in x])
    got = erf(x)
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() <= 1e-7
    # Tiny arguments keep their relative accuracy (erf(x) ~ 2x/sqrt(pi)).
    tiny = np.float32([1e-30, 1e-20, 1e-10, -1e-10])
    exact_tiny = np.array([math.erf(float(v)) for v in tiny])
    assert np.allclose(erf(tiny), exact_tiny, rtol=1e-6, atol=0)


def test_erf_special_values():
    got = erf(np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    assert got[0] == 1 and got[1] == -1 and np.isnan(got[2])
    assert got[3] == 0 and np.signbit(got[4])


def test_erf_shape_is_kept():
    x = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    assert erf(x).shape == (2, 3, 5)
