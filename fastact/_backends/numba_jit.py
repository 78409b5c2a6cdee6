"""The Numba backend: every kernel of ``fastact._registry`` JIT-compiled,
vectorized (AVX-512 where present) and multi-threaded above a work threshold.

Layout and semantics follow the kernel contract of ``fastact._registry``;
the results follow the NumPy reference (``numpy_ref``) within a few ULP
(see ``numba_math`` for the accuracy of the scalar helpers).

How the kernels are built
-------------------------
* The math (exp, log1p, tanh, erfc, ...) is ``numba_math``: branch-free
  helpers that LLVM vectorizes, in float32 for float32 data.
* Each kernel is a small ``parallel=True`` driver (this module's public
  names, the registry's kernel names) around a serial, vectorized "run"
  function over a range of the work.  The driver goes parallel (``prange``
  over ``fastact.get_num_threads()`` chunks) only when the estimated
  single-thread time exceeds ``PAR_NS``, and only if no other Python
  thread's kernel is running a parallel region (then it runs serially on
  its own thread: no oversubscription, no nested thread pools).
* Rows of up to 64 elements (``inner == 1``) go through ``numba_rows``:
  one masked vector per row.  Longer rows use fused loops: max (integer
  keys, see ``numba_math.fkey``), exp-and-sum in 1024-element blocks
  (float32 partial sums, float64 total), scale.  ``inner > 1`` reduces
  lane-wise, vectorized along ``inner``, 256 lanes at a time.
* ``out`` may be exactly an input: such calls take separate loops that read
  and write through ``out`` only (a loop reading one array and writing
  another that LLVM cannot prove distinct is guarded by an overlap test and
  runs scalar when they are the same).
* Functions are compiled on first use and cached on disk (``cache=True``;
  ``NUMBA_CACHE_DIR`` is honoured, and a read-only install falls back to
  Numba's user-wide cache directory, or to no caching if there is none).
"""

from __future__ import annotations

try:
    import numba
except ImportError as exc:  # pragma: no cover - exercised without numba
    exc.fastact_reason = "numba is not installed (pip install numba)"
    raise

import math

import numpy as np
from numba import njit, prange

from . import numba_math as _m
from .numba_math import (
    CACHE,
    FASTMATH,
    always_inline,
    never_inline,
    K,
    KA,
    copysign,
    erfc,
    exp,
    fabs,
    fkey,
    from_fkey,
    imax,
    log,
    log1p,
    log1p_unit,
    log1pexp_neg_abs,
    max_threads,
    radd,
    rdiv,
    sigmoid as _sigmoid,
    tanh as _tanh,
    try_lock,
    unlock,
    wide,
)
from .numba_rows import (
    vrow_dot,
    vrow_log_softmax_bwd,
    vrow_lse_bwd,
    vrow_max,
    vrow_rest,
    vrow_scale,
    vrow_softmax_bwd,
    vrow_sub2,
    vrow_sum,
    vrow_sumexp,
    stack_array,
)

NAME = "numba"


_JIT = _m.JIT
_PAR = dict(_JIT, parallel=True)
_HLP = _m.HELPER

#: a kernel runs multi-threaded only if its estimated single-thread time
#: is at least this many nanoseconds (see tools/numba_threshold.py)
PAR_NS = 200_000.0
#: elements per block of the long-row sums
BLK = 1024
#: lanes per tile of the inner > 1 reductions
TW = 256


def set_num_threads(n: int) -> None:
    """Hook called by ``fastact.set_num_threads`` (and at load)."""
    _m.set_max_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))


# ---------------------------------------------------------------------------
# shared small pieces


@njit(**_HLP)
def _nthreads(work_ns):
    """Chunks to split the work into: 1 (serial) or the thread count, in
    which case the caller holds the parallel-region lock and must unlock."""
    always_inline()
    t = max_threads()
    if t > 1 and work_ns >= PAR_NS and try_lock():
        return t
    return 1


@njit(**_HLP)
def _same(a, b):
    always_inline()
    return a.ctypes.data == b.ctypes.data


@njit(**_HLP)
def _finite(v):
    always_inline()
    return fabs(v) < K(v, math.inf)


@njit(**_HLP)
def _nan(v):
    always_inline()
    return K(v, math.inf) - K(v, math.inf)


@njit(**_HLP)
def _limit(x, v, lo, hi):
    """v, or its limit lo / hi beyond |x| > 1e10 (NaN stays NaN)."""
    always_inline()
    if x < K(x, -1e10):
        return lo
    if x > K(x, 1e10):
        return hi
    return v


@njit(**_HLP)
def _sig_pair(x):
    """(sigmoid(x), sigmoid(-x)) with one exp and one division."""
    always_inline()
    e = exp(-fabs(x))
    r = rdiv(K(x, 1.0), K(x, 1.0) + e)
    if x >= K(x, 0.0):
        return r, e * r
    return e * r, r


_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_GELU_C = 0.044715
_GELU_C3 = 3 * _GELU_C
_TWO_SQRT_2_OVER_PI = 2 * 0.7978845608028654


@njit(**_HLP)
def _ndtr(x):
    """Standard normal CDF as the reference computes it: 0.5 erfc(-x/sqrt2)
    with -x/sqrt2 rounded to the data type."""
    always_inline()
    return erfc(-x * K(x, _SQRT1_2)) * K(x, 0.5)


@njit(**_HLP)
def _gelu_tanh_arg(x):
    always_inline()
    return K(x, _TWO_SQRT_2_OVER_PI) * (x + K(x, _GELU_C) * x * x * x)


# ---------------------------------------------------------------------------
# elementwise scalar functions (each once; the kernels below map them)


@njit(**_HLP)
def _f_sigmoid(x):
    always_inline()
    return _sigmoid(x)


@njit(**_HLP)
def _f_log_sigmoid(x):
    always_inline()
    mn = x if x < K(x, 0.0) else K(x, 0.0)
    return mn - log1pexp_neg_abs(x)


@njit(**_HLP)
def _f_logit(x):
    always_inline()
    # near 1/2: 2 atanh(2x - 1) = log1p(2y / (1 - y)), exact 2x - 1; else
    # log(x / (1 - x)) (x = 0, 1 give -inf, inf; outside [0, 1] NaN)
    y = K(x, 2.0) * x - K(x, 1.0)
    near = log1p(rdiv(K(x, 2.0) * y, K(x, 1.0) - y))
    far = log(x / (K(x, 1.0) - x))
    return near if fabs(x - K(x, 0.5)) < K(x, 0.25) else far


@njit(**_HLP)
def _f_softplus(x, beta, threshold):
    always_inline()
    bx = x * beta
    pos = bx if bx > K(x, 0.0) else K(x, 0.0)
    v = (pos + log1pexp_neg_abs(bx)) / beta
    return x if bx > threshold else v


@njit(**_HLP)
def _f_tanh(x):
    always_inline()
    return _tanh(x)


@njit(**_HLP)
def _f_relu(x):
    always_inline()
    if x > K(x, 0.0):
        return x
    return x if x != x else K(x, 0.0)


@njit(**_HLP)
def _f_leaky_relu(x, slope):
    always_inline()
    return x if x > K(x, 0.0) else x * slope


@njit(**_HLP)
def _f_gelu(x):
    always_inline()
    return _limit(x, x * _ndtr(x), K(x, -0.0), x)


@njit(**_HLP)
def _f_gelu_tanh(x):
    always_inline()
    return _limit(x, x * _sigmoid(_gelu_tanh_arg(x)), K(x, -0.0), x)


@njit(**_HLP)
def _f_silu(x):
    always_inline()
    return _limit(x, x * _sigmoid(x), K(x, -0.0), x)


@njit(**_HLP)
def _b_sigmoid(g, y):
    always_inline()
    return g * y * (K(y, 1.0) - y)


@njit(**_HLP)
def _b_sigmoid_x(g, x):
    always_inline()
    # sigmoid(x) sigmoid(-x) = e / (1 + e)^2, e = exp(-|x|)
    e = exp(-fabs(x))
    d = K(x, 1.0) + e
    return g * rdiv(e, d * d)


@njit(**_HLP)
def _b_tanh_x(g, x):
    always_inline()
    # 1 / cosh(x)^2 = 4 e / (1 + e)^2, e = exp(-2|x|)
    e = exp(K(x, -2.0) * fabs(x))
    d = K(x, 1.0) + e
    return g * rdiv(K(x, 4.0) * e, d * d)


@njit(**_HLP)
def _b_log_sigmoid(g, x):
    always_inline()
    return g * _sigmoid(-x)


@njit(**_HLP)
def _b_logit(g, p):
    always_inline()
    return g / (p * (K(p, 1.0) - p))


@njit(**_HLP)
def _b_softplus(g, x, beta, threshold):
    always_inline()
    bx = x * beta
    return g if bx > threshold else g * _sigmoid(bx)


@njit(**_HLP)
def _b_tanh(g, y):
    always_inline()
    return g * ((K(y, 1.0) - y) * (K(y, 1.0) + y))


@njit(**_HLP)
def _b_relu(g, x):
    always_inline()
    if x > K(x, 0.0):
        return g
    return x if x != x else K(x, 0.0)


@njit(**_HLP)
def _b_leaky_relu(g, x, slope):
    always_inline()
    if x > K(x, 0.0):
        return g
    return x if x != x else g * slope


@njit(**_HLP)
def _b_gelu(g, x):
    always_inline()
    pdf = exp(K(x, -0.5) * x * x) * K(x, _INV_SQRT_2PI)
    d = _ndtr(x) + x * pdf
    return g * _limit(x, d, K(x, 0.0), K(x, 1.0))


@njit(**_HLP)
def _b_gelu_tanh(g, x):
    always_inline()
    s, sc = _sig_pair(_gelu_tanh_arg(x))
    dz = K(x, _TWO_SQRT_2_OVER_PI) * (K(x, 1.0) + K(x, _GELU_C3) * x * x)
    d = s + x * s * sc * dz
    return g * _limit(x, d, K(x, 0.0), K(x, 1.0))


@njit(**_HLP)
def _b_silu(g, x):
    always_inline()
    s, sc = _sig_pair(x)
    return g * _limit(x, s + x * s * sc, K(x, 0.0), K(x, 1.0))


@njit(**_HLP)
def _f_bce(x, t):
    always_inline()
    pos = x if x > K(x, 0.0) else K(x, 0.0)
    pos = x if x != x else pos
    return pos - x * t + log1pexp_neg_abs(x)


@njit(**_HLP)
def _b_bce(x, t, scale):
    always_inline()
    return scale * (_sigmoid(x) - t)


# ---------------------------------------------------------------------------
# elementwise kernels
#
# _e_<name>(x, out, *p): the serial loop (the in-place call reads through
# out); <name>(x, out, *p): the driver.  Backward: _e_<name>(g, s, out, *p)
# with out possibly g or s.  Cost estimates are float32 ns per element
# (float64 is about twice, and is not distinguished).


# ---------------------------------------------------------------------------
# elementwise kernels
#
# _e_<name>(x, out, *params): the serial loop (an in-place call reads through
# ``out``); <name>(x, out, *params): the driver.  Backward kernels take
# (g, s, out, *params), ``out`` possibly ``g`` or ``s``.  The number after
# ``n *`` is the float32 cost in ns per element for the thread decision.


@njit(**_JIT)
def _e_sigmoid(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_sigmoid(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_sigmoid(x[i])


@njit(**_PAR)
def sigmoid(x, out):
    n = x.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_sigmoid(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_sigmoid(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_log_sigmoid(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_log_sigmoid(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_log_sigmoid(x[i])


@njit(**_PAR)
def log_sigmoid(x, out):
    n = x.size
    nt = _nthreads(n * 0.8)
    if nt == 1:
        _e_log_sigmoid(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_log_sigmoid(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_logit(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_logit(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_logit(x[i])


@njit(**_PAR)
def logit(x, out):
    n = x.size
    nt = _nthreads(n * 1.2)
    if nt == 1:
        _e_logit(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_logit(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_softplus(x, out, beta, threshold):
    never_inline()
    wide()
    beta_ = KA(out, beta)
    threshold_ = KA(out, threshold)
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_softplus(out[i], beta_, threshold_)
    else:
        for i in range(x.size):
            out[i] = _f_softplus(x[i], beta_, threshold_)


@njit(**_PAR)
def softplus(x, out, beta, threshold):
    n = x.size
    nt = _nthreads(n * 0.8)
    if nt == 1:
        _e_softplus(x, out, beta, threshold)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_softplus(x[a:b], out[a:b], beta, threshold)
    unlock()


@njit(**_JIT)
def _e_tanh(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_tanh(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_tanh(x[i])


@njit(**_PAR)
def tanh(x, out):
    n = x.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_tanh(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_tanh(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_relu(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_relu(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_relu(x[i])


@njit(**_PAR)
def relu(x, out):
    n = x.size
    nt = _nthreads(n * 0.25)
    if nt == 1:
        _e_relu(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_relu(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_leaky_relu(x, out, negative_slope):
    never_inline()
    wide()
    negative_slope_ = KA(out, negative_slope)
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_leaky_relu(out[i], negative_slope_)
    else:
        for i in range(x.size):
            out[i] = _f_leaky_relu(x[i], negative_slope_)


@njit(**_PAR)
def leaky_relu(x, out, negative_slope):
    n = x.size
    nt = _nthreads(n * 0.25)
    if nt == 1:
        _e_leaky_relu(x, out, negative_slope)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_leaky_relu(x[a:b], out[a:b], negative_slope)
    unlock()


@njit(**_JIT)
def _e_gelu(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_gelu(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_gelu(x[i])


@njit(**_PAR)
def gelu(x, out):
    n = x.size
    nt = _nthreads(n * 1.0)
    if nt == 1:
        _e_gelu(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_gelu(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_gelu_tanh(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_gelu_tanh(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_gelu_tanh(x[i])


@njit(**_PAR)
def gelu_tanh(x, out):
    n = x.size
    nt = _nthreads(n * 0.5)
    if nt == 1:
        _e_gelu_tanh(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_gelu_tanh(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_silu(x, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_silu(out[i])
    else:
        for i in range(x.size):
            out[i] = _f_silu(x[i])


@njit(**_PAR)
def silu(x, out):
    n = x.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_silu(x, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_silu(x[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_sigmoid_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_sigmoid(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_sigmoid(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_sigmoid(g[i], s[i])


@njit(**_PAR)
def sigmoid_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.3)
    if nt == 1:
        _e_sigmoid_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_sigmoid_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_sigmoid_backward_x(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_sigmoid_x(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_sigmoid_x(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_sigmoid_x(g[i], s[i])


@njit(**_PAR)
def sigmoid_backward_x(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_sigmoid_backward_x(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_sigmoid_backward_x(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_tanh_backward_x(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_tanh_x(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_tanh_x(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_tanh_x(g[i], s[i])


@njit(**_PAR)
def tanh_backward_x(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_tanh_backward_x(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_tanh_backward_x(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_log_sigmoid_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_log_sigmoid(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_log_sigmoid(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_log_sigmoid(g[i], s[i])


@njit(**_PAR)
def log_sigmoid_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.5)
    if nt == 1:
        _e_log_sigmoid_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_log_sigmoid_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_logit_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_logit(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_logit(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_logit(g[i], s[i])


@njit(**_PAR)
def logit_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.4)
    if nt == 1:
        _e_logit_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_logit_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_softplus_backward(g, s, out, beta, threshold):
    never_inline()
    wide()
    beta_ = KA(out, beta)
    threshold_ = KA(out, threshold)
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_softplus(out[i], s[i], beta_, threshold_)
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_softplus(g[i], out[i], beta_, threshold_)
    else:
        for i in range(out.size):
            out[i] = _b_softplus(g[i], s[i], beta_, threshold_)


@njit(**_PAR)
def softplus_backward(g, s, out, beta, threshold):
    n = out.size
    nt = _nthreads(n * 0.5)
    if nt == 1:
        _e_softplus_backward(g, s, out, beta, threshold)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_softplus_backward(g[a:b], s[a:b], out[a:b], beta, threshold)
    unlock()


@njit(**_JIT)
def _e_tanh_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_tanh(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_tanh(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_tanh(g[i], s[i])


@njit(**_PAR)
def tanh_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.3)
    if nt == 1:
        _e_tanh_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_tanh_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_relu_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_relu(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_relu(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_relu(g[i], s[i])


@njit(**_PAR)
def relu_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.3)
    if nt == 1:
        _e_relu_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_relu_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_leaky_relu_backward(g, s, out, negative_slope):
    never_inline()
    wide()
    negative_slope_ = KA(out, negative_slope)
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_leaky_relu(out[i], s[i], negative_slope_)
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_leaky_relu(g[i], out[i], negative_slope_)
    else:
        for i in range(out.size):
            out[i] = _b_leaky_relu(g[i], s[i], negative_slope_)


@njit(**_PAR)
def leaky_relu_backward(g, s, out, negative_slope):
    n = out.size
    nt = _nthreads(n * 0.3)
    if nt == 1:
        _e_leaky_relu_backward(g, s, out, negative_slope)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_leaky_relu_backward(g[a:b], s[a:b], out[a:b], negative_slope)
    unlock()


@njit(**_JIT)
def _e_gelu_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_gelu(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_gelu(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_gelu(g[i], s[i])


@njit(**_PAR)
def gelu_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 1.2)
    if nt == 1:
        _e_gelu_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_gelu_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_gelu_tanh_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_gelu_tanh(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_gelu_tanh(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_gelu_tanh(g[i], s[i])


@njit(**_PAR)
def gelu_tanh_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.6)
    if nt == 1:
        _e_gelu_tanh_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_gelu_tanh_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_silu_backward(g, s, out):
    never_inline()
    wide()
    if _same(g, out):
        for i in range(out.size):
            out[i] = _b_silu(out[i], s[i])
    elif _same(s, out):
        for i in range(out.size):
            out[i] = _b_silu(g[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _b_silu(g[i], s[i])


@njit(**_PAR)
def silu_backward(g, s, out):
    n = out.size
    nt = _nthreads(n * 0.5)
    if nt == 1:
        _e_silu_backward(g, s, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_silu_backward(g[a:b], s[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_bce_with_logits(x, t, out):
    never_inline()
    wide()
    if _same(x, out):
        for i in range(out.size):
            out[i] = _f_bce(out[i], t[i])
    elif _same(t, out):
        for i in range(out.size):
            out[i] = _f_bce(x[i], out[i])
    else:
        for i in range(out.size):
            out[i] = _f_bce(x[i], t[i])


@njit(**_PAR)
def bce_with_logits(x, t, out):
    n = out.size
    nt = _nthreads(n * 0.8)
    if nt == 1:
        _e_bce_with_logits(x, t, out)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_bce_with_logits(x[a:b], t[a:b], out[a:b])
    unlock()


@njit(**_JIT)
def _e_bce_with_logits_backward(x, t, out, scale):
    never_inline()
    wide()
    sc = KA(out, scale)
    if _same(x, out):
        for i in range(out.size):
            out[i] = _b_bce(out[i], t[i], sc)
    elif _same(t, out):
        for i in range(out.size):
            out[i] = _b_bce(x[i], out[i], sc)
    else:
        for i in range(out.size):
            out[i] = _b_bce(x[i], t[i], sc)


@njit(**_PAR)
def bce_with_logits_backward(x, t, out, scale):
    n = out.size
    nt = _nthreads(n * 0.5)
    if nt == 1:
        _e_bce_with_logits_backward(x, t, out, scale)
        return
    for c in prange(nt):
        a, b = c * n // nt, (c + 1) * n // nt
        _e_bce_with_logits_backward(x[a:b], t[a:b], out[a:b], scale)
    unlock()


# ---------------------------------------------------------------------------
# rows, inner == 1: long rows (n > 64) as fused loops


@njit(**_HLP)
def _row_max(xr):
    """Row maximum through integer keys (vectorized, log-depth reduction):
    +NaN gives NaN; -NaN is passed over (its exp makes the sums NaN)."""
    always_inline()
    km = fkey(K(xr[0], -math.inf))
    for j in range(xr.size):
        km = imax(km, fkey(xr[j]))
    return from_fkey(km, xr[0])


@njit(**_HLP)
def _row_hasnan(xr):
    always_inline()
    h = False
    for j in range(xr.size):
        h |= xr[j] != xr[j]
    return h


@njit(**_HLP)
def _row_sumexp(xr, dst, m):
    """sum(exp(x - m)) in float64, writing exp(x - m) into dst; blocks of
    BLK summed in the data type (vectorized), block sums in float64."""
    always_inline()
    n = xr.size
    tot = 0.0
    for b0 in range(0, n, BLK):
        b1 = min(b0 + BLK, n)
        xb = xr[b0:b1]
        db = dst[b0:b1]
        s = K(m, 0.0)
        for j in range(xb.size):
            e = exp(xb[j] - m)
            db[j] = e
            s = radd(s, e)
        tot += s
    return tot


@njit(**_HLP)
def _row_rest(xr, m):
    """sum(exp(x - m)) without one maximum's own term, in float64: the
    other terms, plus (number of maxima - 1).  log1p of it keeps full
    relative accuracy when the other terms are tiny."""
    always_inline()
    n = xr.size
    tot = 0.0
    cnt = 0.0
    zero = K(m, 0.0)
    one = K(m, 1.0)
    for b0 in range(0, n, BLK):
        b1 = min(b0 + BLK, n)
        xb = xr[b0:b1]
        s = zero
        c = zero
        for j in range(xb.size):
            d = xb[j] - m
            e = exp(d)
            top = d == zero
            s = radd(s, zero if top else e)
            c = radd(c, one if top else zero)
        tot += s
        cnt += c
    return tot + (cnt - 1.0)


@njit(**_HLP)
def _long_softmax(xr, orow, scratch, inplace):
    always_inline()
    m = _row_max(xr)
    if not _finite(m):
        for j in range(orow.size):
            orow[j] = _nan(m)
        return
    if inplace:
        tmp = scratch[: orow.size]
        inv = K(m, 1.0 / _row_sumexp(orow, tmp, m))
        for j in range(orow.size):
            orow[j] = tmp[j] * inv
    else:
        inv = K(m, 1.0 / _row_sumexp(xr, orow, m))
        for j in range(orow.size):
            orow[j] = orow[j] * inv


@njit(**_HLP)
def _log_softmax_nonfinite(xr, orow, m):
    """Row whose max is not finite: x - m, all NaN if the row has a NaN
    (as the reference, whose max propagates NaN)."""
    always_inline()
    if _row_hasnan(xr):
        m = _nan(m)
    for j in range(orow.size):
        orow[j] = xr[j] - m


@njit(**_HLP)
def _long_log_softmax(xr, orow, inplace):
    always_inline()
    m = _row_max(xr)
    if not _finite(m):
        _log_softmax_nonfinite(xr, orow, m)
        return
    L = K(m, log1p(_row_rest(xr, m)))
    if inplace:
        for j in range(orow.size):
            orow[j] = (orow[j] - m) - L
    else:
        for j in range(orow.size):
            orow[j] = (xr[j] - m) - L


@njit(**_HLP)
def _lse_of(m, rest, hasnan_row):
    """log-sum-exp of a row from its max and rest (reference semantics)."""
    always_inline()
    if _finite(m):
        return K(m, np.float64(m) + log1p(rest))
    return _nan(m) if hasnan_row else m


# ---------------------------------------------------------------------------
# rows, inner == 1: short rows (n <= 64), masked vectors of VL lanes per row
# (one for n <= VL), in blocks of _RB rows so that the per-row divisions and
# log1p run vectorized

VL = 16
_RB = 64
TINY = 64


@njit(**_HLP)
def _kmax(a, b):
    """max of two floats in key order (NaN-aware as fkey)."""
    always_inline()
    return from_fkey(imax(fkey(a), fkey(b)), a)


@njit(**_HLP)
def _t_max(xf, off, n):
    always_inline()
    m = vrow_max(xf, off, min(n, VL), VL)
    for c0 in range(VL, n, VL):
        m = _kmax(m, vrow_max(xf, off + c0, min(VL, n - c0), VL))
    return m


@njit(**_HLP)
def _t_rest(xf, off, n, m):
    always_inline()
    rest = vrow_rest(xf, off, min(n, VL), m, VL)
    for c0 in range(VL, n, VL):
        rest += vrow_rest(xf, off + c0, min(VL, n - c0), m, VL) + 1.0
    return rest


@njit(**_HLP)
def _t_block_rest(xf, n, b0, b1, mb, lb):
    """For rows b0..b1: max into mb, log1p(rest) into lb (float64; 0 for a
    row with a non-finite max)."""
    always_inline()
    for r in range(b0, b1):
        m = _t_max(xf, r * n, n)
        mb[r - b0] = m
        lb[r - b0] = _t_rest(xf, r * n, n, m) if _finite(m) else 0.0
    _log1p_block(lb, b1 - b0)


@njit(**_JIT)
def _log1p_block(lb, count):
    wide()
    for i in range(count):
        lb[i] = log1p(lb[i])


@njit(**_HLP)
def _tiny_softmax(xf, of, n, r0, r1):
    always_inline()
    sb = stack_array(64, xf[0])
    for b0 in range(r0, r1, _RB):
        b1 = min(b0 + _RB, r1)
        for r in range(b0, b1):
            off = r * n
            m = _t_max(xf, off, n)
            if _finite(m):
                s = vrow_sumexp(xf, off, min(n, VL), m, of, VL)
                for c0 in range(VL, n, VL):
                    s += vrow_sumexp(xf, off + c0, min(VL, n - c0), m, of, VL)
            else:
                s = _nan(m)
            sb[r - b0] = s
        for i in range(b1 - b0):
            sb[i] = K(sb[i], 1.0) / sb[i]
        for r in range(b0, b1):
            for c0 in range(0, n, VL):
                vrow_scale(of, r * n + c0, min(VL, n - c0), sb[r - b0], of, VL)


@njit(**_HLP)
def _tiny_log_softmax(xf, of, n, r0, r1):
    always_inline()
    mb = stack_array(64, xf[0])
    lb = stack_array(64, 0.0)
    for b0 in range(r0, r1, _RB):
        b1 = min(b0 + _RB, r1)
        _t_block_rest(xf, n, b0, b1, mb, lb)
        for r in range(b0, b1):
            m = mb[r - b0]
            if _finite(m):
                L = K(m, lb[r - b0])
                for c0 in range(0, n, VL):
                    vrow_sub2(xf, r * n + c0, min(VL, n - c0), m, L, of, VL)
            else:
                _log_softmax_nonfinite(xf[r * n:r * n + n], of[r * n:r * n + n], m)


@njit(**_HLP)
def _tiny_logsumexp(xf, of, n, r0, r1):
    always_inline()
    mb = stack_array(64, xf[0])
    lb = stack_array(64, 0.0)
    for b0 in range(r0, r1, _RB):
        b1 = min(b0 + _RB, r1)
        _t_block_rest(xf, n, b0, b1, mb, lb)
        for r in range(b0, b1):
            m = mb[r - b0]
            if _finite(m):
                of[r] = K(m, np.float64(m) + lb[r - b0])
            else:
                of[r] = _lse_of(m, 0.0, _row_hasnan(xf[r * n:r * n + n]))


@njit(**_JIT)
def _rows_softmax(xf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        _tiny_softmax(xf, of, n, r0, r1)
    elif _same(xf, of):
        scratch = np.empty(n, xf.dtype)
        for r in range(r0, r1):
            _long_softmax(of[r * n:r * n + n], of[r * n:r * n + n], scratch, True)
    else:
        for r in range(r0, r1):
            _long_softmax(xf[r * n:r * n + n], of[r * n:r * n + n], of, False)


@njit(**_JIT)
def _rows_log_softmax(xf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        _tiny_log_softmax(xf, of, n, r0, r1)
    elif _same(xf, of):
        for r in range(r0, r1):
            _long_log_softmax(of[r * n:r * n + n], of[r * n:r * n + n], True)
    else:
        for r in range(r0, r1):
            _long_log_softmax(xf[r * n:r * n + n], of[r * n:r * n + n], False)


@njit(**_JIT)
def _rows_logsumexp(xf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        _tiny_logsumexp(xf, of, n, r0, r1)
    else:
        for r in range(r0, r1):
            xr = xf[r * n:r * n + n]
            m = _row_max(xr)
            if _finite(m):
                of[r] = _lse_of(m, _row_rest(xr, m), False)
            else:
                of[r] = _lse_of(m, 0.0, _row_hasnan(xr))


@njit(**_JIT)
def _rows_softmax_backward(gf, yf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        for r in range(r0, r1):
            dot = 0.0
            for c0 in range(0, n, VL):
                dot += vrow_dot(gf, yf, r * n + c0, min(VL, n - c0), VL)
            d = K(of[0], dot)
            for c0 in range(0, n, VL):
                vrow_softmax_bwd(gf, yf, r * n + c0, min(VL, n - c0), d, of, VL)
        return
    for r in range(r0, r1):
        gr = gf[r * n:r * n + n]
        yr = yf[r * n:r * n + n]
        orow = of[r * n:r * n + n]
        dot = 0.0
        for b0 in range(0, n, BLK):
            b1 = min(b0 + BLK, n)
            gb = gr[b0:b1]
            yb = yr[b0:b1]
            s = K(orow[0], 0.0)
            for j in range(gb.size):
                s = radd(s, gb[j] * yb[j])
            dot += s
        d = K(orow[0], dot)
        if _same(gf, of):
            for j in range(n):
                orow[j] = yr[j] * (orow[j] - d)
        elif _same(yf, of):
            for j in range(n):
                orow[j] = orow[j] * (gr[j] - d)
        else:
            for j in range(n):
                orow[j] = yr[j] * (gr[j] - d)


@njit(**_JIT)
def _rows_log_softmax_backward(gf, yf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        for r in range(r0, r1):
            tot = 0.0
            for c0 in range(0, n, VL):
                tot += vrow_sum(gf, r * n + c0, min(VL, n - c0), VL)
            t = K(of[0], tot)
            for c0 in range(0, n, VL):
                vrow_log_softmax_bwd(gf, yf, r * n + c0, min(VL, n - c0), t, of, VL)
        return
    for r in range(r0, r1):
        gr = gf[r * n:r * n + n]
        yr = yf[r * n:r * n + n]
        orow = of[r * n:r * n + n]
        tot = 0.0
        for b0 in range(0, n, BLK):
            b1 = min(b0 + BLK, n)
            gb = gr[b0:b1]
            s = K(orow[0], 0.0)
            for j in range(gb.size):
                s = radd(s, gb[j])
            tot += s
        t = K(orow[0], tot)
        if _same(gf, of):
            for j in range(n):
                orow[j] = orow[j] - exp(yr[j]) * t
        elif _same(yf, of):
            for j in range(n):
                orow[j] = gr[j] - exp(orow[j]) * t
        else:
            for j in range(n):
                orow[j] = gr[j] - exp(yr[j]) * t


@njit(**_JIT)
def _rows_logsumexp_backward(gf, xf, lf, of, n, r0, r1):
    never_inline()
    wide()
    if n <= TINY:
        for r in range(r0, r1):
            for c0 in range(0, n, VL):
                vrow_lse_bwd(xf, r * n + c0, min(VL, n - c0), gf[r], lf[r], of, VL)
    elif _same(xf, of):
        for r in range(r0, r1):
            orow = of[r * n:r * n + n]
            g = gf[r]
            lse = lf[r]
            for j in range(n):
                orow[j] = g * exp(orow[j] - lse)
    else:
        for r in range(r0, r1):
            xr = xf[r * n:r * n + n]
            orow = of[r * n:r * n + n]
            g = gf[r]
            lse = lf[r]
            for j in range(n):
                orow[j] = g * exp(xr[j] - lse)


# ---------------------------------------------------------------------------
# rows, inner > 1: lane-wise reductions over n, vectorized along inner, in
# tiles of TW lanes; work units are (outer index, tile) pairs


@njit(**_HLP)
def _tile(u, ntile, n, inner):
    """(offset of the tile's first element, width, offset in the reduced
    (outer, inner) array) of work unit u."""
    always_inline()
    o = u // ntile
    k0 = (u - o * ntile) * TW
    return o * n * inner + k0, min(TW, inner - k0), o * inner + k0


@njit(**_HLP)
def _lane_max(xf, base, w, n, inner, m):
    """m[k] = max over j of x[j, k], NaN if any is NaN (as np.max)."""
    always_inline()
    for k in range(w):
        m[k] = K(m[0], -math.inf)
    for j in range(n):
        xs = xf[base + j * inner:base + j * inner + w]
        for k in range(w):
            v = xs[k]
            mv = m[k]
            m[k] = v if (v > mv or v != v) else mv


@njit(**_HLP)
def _lane_rest(src, base, w, n, inner, m, rk, ck):
    """rk[k] = sum over j of exp(x - m) without one maximum's term
    (float64; garbage where m is not finite)."""
    always_inline()
    for k in range(w):
        rk[k] = 0.0
        ck[k] = 0.0
    for j in range(n):
        xs = src[base + j * inner:base + j * inner + w]
        for k in range(w):
            d = xs[k] - m[k]
            top = d == K(d, 0.0)
            rk[k] += 0.0 if top else np.float64(exp(d))
            ck[k] += 1.0 if top else 0.0
    for k in range(w):
        rk[k] = rk[k] + (ck[k] - 1.0)


@njit(**_JIT)
def _lanes_softmax(xf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    mk = np.empty(TW, xf.dtype)
    ik = np.empty(TW, xf.dtype)
    sk = np.empty(TW, np.float64)
    inplace = _same(xf, of)
    for u in range(u0, u1):
        base, w, _ = _tile(u, ntile, n, inner)
        _lane_max(xf, base, w, n, inner, mk)
        for k in range(w):
            sk[k] = 0.0
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            if inplace:
                for k in range(w):
                    e = exp(os[k] - mk[k])
                    os[k] = e
                    sk[k] += e
            else:
                xs = xf[a:a + w]
                for k in range(w):
                    e = exp(xs[k] - mk[k])
                    os[k] = e
                    sk[k] += e
        for k in range(w):
            ik[k] = K(mk[k], 1.0 / sk[k]) if _finite(mk[k]) else _nan(mk[k])
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            for k in range(w):
                os[k] = os[k] * ik[k]


@njit(**_JIT)
def _lanes_log_softmax(xf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    mk = np.empty(TW, xf.dtype)
    lk = np.empty(TW, xf.dtype)
    rk = np.empty(TW, np.float64)
    ck = np.empty(TW, np.float64)
    inplace = _same(xf, of)
    for u in range(u0, u1):
        base, w, _ = _tile(u, ntile, n, inner)
        _lane_max(xf, base, w, n, inner, mk)
        _lane_rest(xf, base, w, n, inner, mk, rk, ck)
        for k in range(w):
            lk[k] = K(mk[k], log1p(rk[k])) if _finite(mk[k]) else K(mk[k], 0.0)
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            if inplace:
                for k in range(w):
                    os[k] = (os[k] - mk[k]) - lk[k]
            else:
                xs = xf[a:a + w]
                for k in range(w):
                    os[k] = (xs[k] - mk[k]) - lk[k]


@njit(**_JIT)
def _lanes_logsumexp(xf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    mk = np.empty(TW, xf.dtype)
    rk = np.empty(TW, np.float64)
    ck = np.empty(TW, np.float64)
    for u in range(u0, u1):
        base, w, ob = _tile(u, ntile, n, inner)
        _lane_max(xf, base, w, n, inner, mk)
        _lane_rest(xf, base, w, n, inner, mk, rk, ck)
        os = of[ob:ob + w]
        for k in range(w):
            m = mk[k]
            os[k] = K(m, np.float64(m) + log1p(rk[k])) if _finite(m) else m


@njit(**_JIT)
def _lanes_softmax_backward(gf, yf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    dk = np.empty(TW, np.float64)
    ek = np.empty(TW, of.dtype)
    for u in range(u0, u1):
        base, w, _ = _tile(u, ntile, n, inner)
        for k in range(w):
            dk[k] = 0.0
        for j in range(n):
            a = base + j * inner
            gs = gf[a:a + w]
            ys = yf[a:a + w]
            for k in range(w):
                dk[k] += np.float64(gs[k] * ys[k])
        for k in range(w):
            ek[k] = K(ek[0], dk[k])
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            if _same(gf, of):
                ys = yf[a:a + w]
                for k in range(w):
                    os[k] = ys[k] * (os[k] - ek[k])
            elif _same(yf, of):
                gs = gf[a:a + w]
                for k in range(w):
                    os[k] = os[k] * (gs[k] - ek[k])
            else:
                gs = gf[a:a + w]
                ys = yf[a:a + w]
                for k in range(w):
                    os[k] = ys[k] * (gs[k] - ek[k])


@njit(**_JIT)
def _lanes_log_softmax_backward(gf, yf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    dk = np.empty(TW, np.float64)
    ek = np.empty(TW, of.dtype)
    for u in range(u0, u1):
        base, w, _ = _tile(u, ntile, n, inner)
        for k in range(w):
            dk[k] = 0.0
        for j in range(n):
            a = base + j * inner
            gs = gf[a:a + w]
            for k in range(w):
                dk[k] += gs[k]
        for k in range(w):
            ek[k] = K(ek[0], dk[k])
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            if _same(gf, of):
                ys = yf[a:a + w]
                for k in range(w):
                    os[k] = os[k] - exp(ys[k]) * ek[k]
            elif _same(yf, of):
                gs = gf[a:a + w]
                for k in range(w):
                    os[k] = gs[k] - exp(os[k]) * ek[k]
            else:
                gs = gf[a:a + w]
                ys = yf[a:a + w]
                for k in range(w):
                    os[k] = gs[k] - exp(ys[k]) * ek[k]


@njit(**_JIT)
def _lanes_logsumexp_backward(gf, xf, lf, of, n, inner, ntile, u0, u1):
    never_inline()
    wide()
    for u in range(u0, u1):
        base, w, ob = _tile(u, ntile, n, inner)
        gs = gf[ob:ob + w]
        ls = lf[ob:ob + w]
        for j in range(n):
            a = base + j * inner
            os = of[a:a + w]
            if _same(xf, of):
                for k in range(w):
                    os[k] = gs[k] * exp(os[k] - ls[k])
            else:
                xs = xf[a:a + w]
                for k in range(w):
                    os[k] = gs[k] * exp(xs[k] - ls[k])


# ---------------------------------------------------------------------------
# row kernel drivers


@njit(**_PAR)
def softmax(x, out):
    o, n, inner = x.shape
    if x.size == 0:
        return
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    nt = _nthreads(x.size * 0.5)
    if inner == 1:
        if nt == 1:
            _rows_softmax(xf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_softmax(xf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_softmax(xf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_softmax(xf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


@njit(**_PAR)
def log_softmax(x, out):
    o, n, inner = x.shape
    if x.size == 0:
        return
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    nt = _nthreads(x.size * 0.6)
    if inner == 1:
        if nt == 1:
            _rows_log_softmax(xf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_log_softmax(xf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_log_softmax(xf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_log_softmax(xf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


@njit(**_PAR)
def logsumexp(x, out):
    o, n, inner = x.shape
    if out.size == 0:
        return
    of = out.reshape(out.size)
    if n == 0:
        for i in range(of.size):
            of[i] = KA(of, -math.inf)
        return
    xf = x.reshape(x.size)
    nt = _nthreads(x.size * 0.4)
    if inner == 1:
        if nt == 1:
            _rows_logsumexp(xf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_logsumexp(xf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_logsumexp(xf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_logsumexp(xf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


@njit(**_PAR)
def softmax_backward(grad, y, out):
    o, n, inner = y.shape
    if y.size == 0:
        return
    gf = grad.reshape(grad.size)
    yf = y.reshape(y.size)
    of = out.reshape(out.size)
    nt = _nthreads(y.size * 0.3)
    if inner == 1:
        if nt == 1:
            _rows_softmax_backward(gf, yf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_softmax_backward(gf, yf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_softmax_backward(gf, yf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_softmax_backward(gf, yf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


@njit(**_PAR)
def log_softmax_backward(grad, y, out):
    o, n, inner = y.shape
    if y.size == 0:
        return
    gf = grad.reshape(grad.size)
    yf = y.reshape(y.size)
    of = out.reshape(out.size)
    nt = _nthreads(y.size * 0.4)
    if inner == 1:
        if nt == 1:
            _rows_log_softmax_backward(gf, yf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_log_softmax_backward(gf, yf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_log_softmax_backward(gf, yf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_log_softmax_backward(gf, yf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


@njit(**_PAR)
def logsumexp_backward(grad, x, lse, out):
    o, n, inner = x.shape
    if x.size == 0:
        return
    gf = grad.reshape(grad.size)
    xf = x.reshape(x.size)
    lf = lse.reshape(lse.size)
    of = out.reshape(out.size)
    nt = _nthreads(x.size * 0.4)
    if inner == 1:
        if nt == 1:
            _rows_logsumexp_backward(gf, xf, lf, of, n, 0, o)
            return
        for c in prange(nt):
            _rows_logsumexp_backward(gf, xf, lf, of, n, c * o // nt, (c + 1) * o // nt)
    else:
        ntile = (inner + TW - 1) // TW
        U = o * ntile
        if nt == 1:
            _lanes_logsumexp_backward(gf, xf, lf, of, n, inner, ntile, 0, U)
            return
        for c in prange(nt):
            _lanes_logsumexp_backward(gf, xf, lf, of, n, inner, ntile, c * U // nt, (c + 1) * U // nt)
    unlock()


# ---------------------------------------------------------------------------
# cross-entropy: per sample, on a contiguous copy of the sample's logits
# (gathered along the class axis when inner > 1).  With
# q = (1 - eps) onehot(t) + eps / C (or (1 - eps) p + eps / C):
#   loss = -sum_c q_c log_softmax(x)_c   (terms with q_c == 0 count 0)
#   dx   = scale * (softmax(x) sum(q) - q)


@njit(**_HLP)
def _ce_stats(xr):
    """(m, lse shift L, 1/(1 + rest) in float64): log_softmax_c =
    (x_c - m) - L and softmax_c = exp(x_c - m) * inv, with the reference's
    values for a row whose max is not finite (inv NaN)."""
    always_inline()
    m = _row_max(xr)
    if _finite(m):
        rest = _row_rest(xr, m)
        return m, K(m, log1p(rest)), 1.0 / (1.0 + rest)
    if _row_hasnan(xr):
        m = _nan(m)
    return m, K(m, 0.0), math.nan


@njit(**_JIT)
def _ce_index_run(xf, tf, sf, lf, df, C, inner, s0, s1, ignore_index, eps, grad):
    never_inline()
    wide()
    xr = np.empty(C, xf.dtype)
    z = KA(xr, 0.0)
    qo = KA(xr, eps / C) if eps != 0.0 else z
    qt = KA(xr, 1.0 - eps) + qo
    for s in range(s0, s1):
        o = s // inner
        base = o * C * inner + (s - o * inner)
        t = tf[s]
        sc = sf[s] if grad else z
        if t == ignore_index:
            lf[s] = z
            if grad:
                for c in range(C):
                    df[base + c * inner] = z
            continue
        for c in range(C):
            xr[c] = xf[base + c * inner]
        m, L, inv = _ce_stats(xr)
        acc = 0.0
        for c in range(C):
            q = qt if c == t else qo
            lp = (xr[c] - m) - L
            acc += 0.0 if q == z else np.float64(q * lp)
        lf[s] = -K(z, acc)
        if grad:
            for c in range(C):
                q = qt if c == t else qo
                p = K(z, np.float64(exp(xr[c] - m)) * inv)
                df[base + c * inner] = sc * (p - q)


@njit(**_PAR)
def cross_entropy_index(x, target, loss, ignore_index, label_smoothing):
    o, C, inner = x.shape
    S = o * inner
    if S == 0:
        return
    xf = x.reshape(x.size)
    tf = target.reshape(target.size)
    lf = loss.reshape(loss.size)
    nt = _nthreads(x.size * 2.0)
    if nt == 1:
        _ce_index_run(xf, tf, lf, lf, lf, C, inner, 0, S, ignore_index, label_smoothing, False)
        return
    for c in prange(nt):
        _ce_index_run(xf, tf, lf, lf, lf, C, inner, c * S // nt, (c + 1) * S // nt,
                      ignore_index, label_smoothing, False)
    unlock()


@njit(**_PAR)
def cross_entropy_index_grad(x, target, scale, loss, dx, ignore_index, label_smoothing):
    o, C, inner = x.shape
    S = o * inner
    if S == 0:
        return
    xf = x.reshape(x.size)
    tf = target.reshape(target.size)
    sf = scale.reshape(scale.size)
    lf = loss.reshape(loss.size)
    df = dx.reshape(dx.size)
    nt = _nthreads(x.size * 3.0)
    if nt == 1:
        _ce_index_run(xf, tf, sf, lf, df, C, inner, 0, S, ignore_index, label_smoothing, True)
        return
    for c in prange(nt):
        _ce_index_run(xf, tf, sf, lf, df, C, inner, c * S // nt, (c + 1) * S // nt,
                      ignore_index, label_smoothing, True)
    unlock()


@njit(**_JIT)
def _ce_prob_run(xf, pf, sf, lf, df, C, inner, s0, s1, eps, grad):
    never_inline()
    wide()
    xr = np.empty(C, xf.dtype)
    qr = np.empty(C, xf.dtype)
    z = KA(xr, 0.0)
    keep = KA(xr, 1.0 - eps)
    add = KA(xr, eps / C)
    for s in range(s0, s1):
        o = s // inner
        base = o * C * inner + (s - o * inner)
        sc = sf[s] if grad else z
        for c in range(C):
            xr[c] = xf[base + c * inner]
        if eps != 0.0:
            for c in range(C):
                qr[c] = keep * pf[base + c * inner] + add
        else:
            for c in range(C):
                qr[c] = pf[base + c * inner]
        m, L, inv = _ce_stats(xr)
        acc = 0.0
        qsum = 0.0
        for c in range(C):
            q = qr[c]
            lp = (xr[c] - m) - L
            acc += 0.0 if q == z else np.float64(q * lp)
            qsum += q
        lf[s] = -K(z, acc)
        if grad:
            qs = K(z, qsum)
            for c in range(C):
                p = K(z, np.float64(exp(xr[c] - m)) * inv)
                df[base + c * inner] = sc * (p * qs - qr[c])


@njit(**_PAR)
def cross_entropy_prob(x, p, loss, label_smoothing):
    o, C, inner = x.shape
    S = o * inner
    if S == 0:
        return
    xf = x.reshape(x.size)
    pf = p.reshape(p.size)
    lf = loss.reshape(loss.size)
    nt = _nthreads(x.size * 2.0)
    if nt == 1:
        _ce_prob_run(xf, pf, lf, lf, lf, C, inner, 0, S, label_smoothing, False)
        return
    for c in prange(nt):
        _ce_prob_run(xf, pf, lf, lf, lf, C, inner, c * S // nt, (c + 1) * S // nt, label_smoothing, False)
    unlock()


@njit(**_PAR)
def cross_entropy_prob_grad(x, p, scale, loss, dx, label_smoothing):
    o, C, inner = x.shape
    S = o * inner
    if S == 0:
        return
    xf = x.reshape(x.size)
    pf = p.reshape(p.size)
    sf = scale.reshape(scale.size)
    lf = loss.reshape(loss.size)
    df = dx.reshape(dx.size)
    nt = _nthreads(x.size * 3.0)
    if nt == 1:
        _ce_prob_run(xf, pf, sf, lf, df, C, inner, 0, S, label_smoothing, True)
        return
    for c in prange(nt):
        _ce_prob_run(xf, pf, sf, lf, df, C, inner, c * S // nt, (c + 1) * S // nt, label_smoothing, True)
    unlock()
