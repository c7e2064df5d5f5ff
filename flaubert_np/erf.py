"""erf in float32, which NumPy lacks and exact GELU needs (torch.nn.functional.gelu's default).

Vectorised from fdlibm's s_erff.c (Sun Microsystems, 1993: "Permission to use, copy, modify, and
distribute this software is freely granted, provided that this notice is preserved."). Its
rational approximations, one per interval of |x|, stay within ~1 ulp.
"""

from __future__ import annotations

import numpy as np

_ERX = np.float32(8.4506291151e-01)  # fdlibm's c, the constant term near |x| = 1
_PP = (1.2837916613e-01, -3.2504209876e-01, -2.8481749818e-02, -5.7702702470e-03,
       -2.3763017452e-05)  # fmt: skip
_QQ = (1.0, 3.9791721106e-01, 6.5022252500e-02, 5.0813062117e-03, 1.3249473704e-04,
       -3.9602282413e-06)  # fmt: skip
_PA = (-2.3621185683e-03, 4.1485610604e-01, -3.7220788002e-01, 3.1834661961e-01,
       -1.1089469492e-01, 3.5478305072e-02, -2.1663755178e-03)  # fmt: skip
_QA = (1.0, 1.0642088205e-01, 5.4039794207e-01, 7.1828655899e-02, 1.2617121637e-01,
       1.3637083583e-02, 1.1984500103e-02)  # fmt: skip
_RA = (-9.8649440333e-03, -6.9385856390e-01, -1.0558626175e01, -6.2375331879e01,
       -1.6239666748e02, -1.8460508728e02, -8.1287437439e01, -9.8143291473e00)  # fmt: skip
_SA = (1.0, 1.9651271820e01, 1.3765776062e02, 4.3456588745e02, 6.4538726807e02,
       4.2900814819e02, 1.0863500214e02, 6.5702495575e00, -6.0424413532e-02)  # fmt: skip
_RB = (-9.8649431020e-03, -7.9928326607e-01, -1.7757955551e01, -1.6063638306e02,
       -6.3756646729e02, -1.0250950928e03, -4.8351919556e02)  # fmt: skip
_SB = (1.0, 3.0338060379e01, 3.2579251099e02, 1.5367296143e03, 3.1998581543e03,
       2.5530502930e03, 4.7452853394e02, -2.2440952301e01)  # fmt: skip


def _poly(coefs: tuple[float, ...], z: np.ndarray) -> np.ndarray:
    """coefs[0] + coefs[1] z + coefs[2] z² + ..., by Horner's rule in float32."""
    result = np.float32(coefs[-1]) * z + np.float32(coefs[-2])
    for c in reversed(coefs[:-2]):
        result = result * z + np.float32(c)
    return result


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float32, within 1e-7 of the exact value (NumPy has none).

    [...] -> [...]. Piecewise in |x|, as fdlibm's erff:
      |x| < 0.84375          erf(x) = x + x P(x²)/Q(x²)
      0.84375 <= |x| < 1.25  erf(x) = sign(x) (c + P(|x|-1)/Q(|x|-1)), c = 0.84506291151
      1.25 <= |x| < 6        erf(x) = sign(x) (1 - exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / |x|)
      |x| >= 6               erf(x) = sign(x)
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    out = x.copy()  # NaN stays NaN: it falls in no interval below

    small = a < 0.84375
    xs = x[small]
    z = xs * xs
    out[small] = xs + xs * (_poly(_PP, z) / _poly(_QQ, z))

    near_one = (a >= 0.84375) & (a < 1.25)
    s = a[near_one] - np.float32(1)
    out[near_one] = np.copysign(_ERX + _poly(_PA, s) / _poly(_QA, s), x[near_one])

    for low, high, r, q in ((1.25, 1 / 0.35, _RA, _SA), (1 / 0.35, 6.0, _RB, _SB)):
        tail = (a >= low) & (a < high)
        at = a[tail]
        s = np.float32(1) / (at * at)
        erfc = np.exp(-at * at - np.float32(0.5625) + _poly(r, s) / _poly(q, s)) / at
        out[tail] = np.copysign(np.float32(1) - erfc, x[tail])

    big = a >= 6
    out[big] = np.copysign(np.float32(1), x[big])
    return out
