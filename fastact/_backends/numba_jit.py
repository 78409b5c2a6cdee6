"""The Numba backend: every kernel of ``fastact._registry`` JIT-compiled,
vectorized (512-bit on AVX-512 CPUs) and multi-threaded above a work
threshold.

Layout and semantics follow the kernel contract of ``fastact._registry``;
results follow the NumPy reference (``numpy_ref``) within the registry's
bounds (the scalar helpers' accuracy is in ``numba_math``).

How the kernels are built
-------------------------
* The math (exp, log1p, tanh, erfc, ...) is ``numba_math``: branch-free,
  float32 in float32, written once as LLVM IR emitters or as small compiled
  helpers that LLVM inlines into the loops, where they vectorize.
* Elementwise kernels are compiled loops (``_e_<name>``).  Row kernels go
  one of three ways, each its own compiled function so that a workload
  compiles only what it uses: short rows as masked vectors, several rows
  at a time, or one row of a few registers at a time in registers
  (``_rt_*``, ``numba_rows``; the lengths by kernel in ``_SHORT_ROWS``;
  with ``TWR`` rows or more of lengths the tiles take (``_TILE_MAX``),
  ``_rtt_*``: transposed tiles first); longer rows
  as explicit vector loops (``_rl_*``: key max, exp-and-sum in blocks of
  ``BLK`` with sums in 16 lanes added in a fixed order, scale); and
  ``inner > 1`` lane-wise along ``inner`` (``_lanes_*``).
* The compiled functions that only call a body by name (``_e_*``, the row
  paths ``_rt_*`` / ``_rtt_*`` / ``_rl_*`` / ``_lanes_*`` and every ``_p*``
  parallel version) are generated into ``numba_gen.py`` by
  ``tools/gen_numba_kernels.py`` as ordinary module-level functions (so
  that the disk cache keeps them), and imported here.
* The registry's kernels are thin Python functions: small work calls the
  serial compiled function directly; work estimated above ``PAR_NS``
  single-thread nanoseconds, with ``fastact.get_num_threads() > 1``, runs
  the ``prange`` version (``_p*``, compiled on first use) on that many
  threads -- unless another Python thread is in a parallel kernel, then
  serially (no oversubscription; safe with Numba's workqueue layer).
  Results are the same bits whatever the thread count.
* ``out`` may be exactly an input: every loop loads before it stores, and
  the vector loops are written so that LLVM needs no overlap test.
* Functions are compiled on first use and cached on disk (``cache=True``,
  keyed on all the backend's source files, ``numba_gen.py`` included, see
  ``numba_math``); ``NUMBA_CACHE_DIR`` is honoured, a read-only install
  falls back to Numba's user-wide cache directory, or to no caching if
  none is writable.
"""

from __future__ import annotations

try:
    import numba
except ImportError as exc:  # pragma: no cover - exercised without numba
    exc.fastact_reason = "numba is not installed (pip install numba)"
    raise

import math
import threading

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .. import _registry
from . import numba_math as _m
from .numba_math import (
    CACHE,  # noqa: F401 - whether compiled code is cached (reported by tests)
    FASTMATH,
    always_inline,
    never_inline,
    K,
    KA,
    erfc,
    exp,
    exp_neg,
    exp_neg_sub,
    exp_neg_sub_zx,
    exp_neg_zx,
    fabs,
    fkey,
    from_fkey,
    imax,
    ind,
    is_f32,
    log,
    log1p,
    log1pexp_neg_abs,
    minnum,
    sigmoid as _sigmoid,
    sigmoid_sub as _sigmoid_sub,
    tanh as _tanh,
    wide,
)
from .numba_rows import (
    MASKED_STORES,
    SMALL_TILE_LENGTHS,
    tile_move_small,
    vrow_ce_grad,
    vrow_ce_prob_grad,
    vrow_dot,
    vrow_log_softmax_bwd,
    vrow_log_softmax_bwd1,
    vrow_lse_bwd,
    vrows_log_softmax,
    vrows_logsumexp,
    vrows_max_rest,
    vrows_softmax,
    vpack_log_softmax,
    vpack_logsumexp,
    vpack_softmax,
    PACK_LSE,
    PACK_R,
    vpack_softmax_bwd,
    vpack_log_softmax_bwd,
    pack_lanes,
    prefetch_line,
    vtile_in,
    vtile_out,
    flat,
    vrow_softmax_bwd1,
    vrowp_log_softmax_bwd,
    vrowp_max_rest,
    vrowp_sub2,
    vrowp_softmax,
    vrowp_softmax_bwd,
    vrow_max,
    vrow_rest,
    vrow_scale,
    vrow_softmax_bwd,
    vrow_sub2,
    vrow_sum,
    vrow_sumexp,
    stack_array,
    vmap_ce_grad,
    vmap_ce_prob_grad,
    vmap_lse_bwd,
    vmap_log_softmax_bwd,
    vmap_scale,
    vmap_softmax_bwd,
    vmap_sub2,
    vsum_dot,
    vsum_exp,
    vsum_plain,
    vsum_qlp,
    vsum_rest,
)

NAME = "numba"


_JIT = _m.JIT
_PAR = dict(_JIT, parallel=True)
_HLP = _m.HELPER
#: helpers with loops: inlined by Numba (their loops then vectorize in the
#: kernel, with its context; LLVM-inlining a separately vectorized helper
#: gave slower code)
_INL = dict(nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
#: kernels whose loops call inlined helpers on arrays once per row: without
#: NRT, Numba emits no reference counting for those arguments (an atomic
#: increment and decrement per row and array that its pruning pass left in
#: place: cross-entropy over rows of 16 ran 3.7x slower).  They must not
#: allocate.
_NONRT = dict(_JIT, _nrt=False)

#: a kernel runs multi-threaded only if its estimated single-thread time
#: is at least this many nanoseconds.  Measured with tools/numba_threshold.py
#: on an idle 2-core AVX-512 VM: a parallel region costs ~2 us to start when
#: libgomp's threads spin between regions, but ~60 us with
#: OMP_WAIT_POLICY=passive (what fastact's Cython backend sets when it loads
#: the same libgomp first, to spare a busy machine the spinning); there
#: 2 threads break even at ~250 us of work and give 1.25x at 0.35 ms,
#: 1.45x at 0.7 ms, 2.0x at 1.7 ms and more.
PAR_NS = 300_000.0
#: elements per block of the long-row sums
BLK = 1024
#: lanes per tile of the inner > 1 reductions
TW = 256


# ---------------------------------------------------------------------------
# shared small pieces


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
def _neg_inf_limit(x, v):
    """x * f(x) for f a CDF-like factor: -0.0 at x = -inf (where it would be
    -inf * 0).  Elsewhere the product already is the limit: f's exp_neg
    gives exactly 0 far left and 1 far right."""
    always_inline()
    return K(x, -0.0) if x == K(x, -math.inf) else v


@njit(**_HLP)
def _sig_pair(x):
    """(sigmoid(x), sigmoid(-x)) with one exp and one division (subnormal
    values kept: the callers multiply them by x)."""
    always_inline()
    e = exp_neg_sub(-fabs(x))
    r = K(x, 1.0) / (K(x, 1.0) + e)
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
    near = log1p(K(x, 2.0) * y / (K(x, 1.0) - y))  # (not rdiv: x = 1 divides by 0)
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
    return _neg_inf_limit(x, x * _ndtr(x))


@njit(**_HLP)
def _f_gelu_tanh(x):
    always_inline()
    return _neg_inf_limit(x, x * _sigmoid(_gelu_tanh_arg(x)))  # (as silu)


@njit(**_HLP)
def _f_silu(x):
    always_inline()
    # sigmoid's exp flushes below the normal range: for x < -87.3 (float32)
    # the result is -0.0 where the exact one is ~x * 1e-38 (|error| < 1.3e-36;
    # float64: x < -708, |error| < 2e-305).  Keeping those would cost 25%.
    return _neg_inf_limit(x, x * _sigmoid(x))


@njit(**_HLP)
def _b_sigmoid(g, y):
    always_inline()
    return g * y * (K(y, 1.0) - y)


@njit(**_HLP)
def _b_sigmoid_x(g, x):
    always_inline()
    # sigmoid(x) sigmoid(-x) = e / (1 + e)^2, e = exp(-|x|)
    e = exp_neg(-fabs(x))
    d = K(x, 1.0) + e
    return g * (e / (d * d))


@njit(**_HLP)
def _b_tanh_x(g, x):
    always_inline()
    # 1 / cosh(x)^2 = 4 e / (1 + e)^2, e = exp(-2|x|)
    e = exp_neg_sub(K(x, -2.0) * fabs(x))
    d = K(x, 1.0) + e
    return g * (K(x, 4.0) * e / (d * d))


@njit(**_HLP)
def _b_log_sigmoid(g, x):
    always_inline()
    return g * _sigmoid_sub(-x)


@njit(**_HLP)
def _b_logit(g, p):
    always_inline()
    return g / (p * (K(p, 1.0) - p))


@njit(**_HLP)
def _b_softplus(g, x, beta, threshold):
    always_inline()
    bx = x * beta
    return g if bx > threshold else g * _sigmoid_sub(bx)


@njit(**_HLP)
def _b_tanh(g, y):
    always_inline()
    return g * ((K(y, 1.0) - y) * (K(y, 1.0) + y))


@njit(**_HLP)
def _b_relu(g, x):
    always_inline()
    # min(|g|, 0) is +0 for every g (NaN too): a zero that uses g, so that
    # LLVM does not fold the load of g into a masked load, which waits for
    # x's load and compare (relu_backward (4096, 1024) float32 took 1.35x
    # as long that way, AVX-512 and AVX2 alike)
    z = x if x != x else minnum(fabs(g), K(x, 0.0))
    return g if x > K(x, 0.0) else z


@njit(**_HLP)
def _b_leaky_relu(g, x, slope):
    always_inline()
    if x > K(x, 0.0):
        return g
    return x if x != x else g * slope


@njit(**_HLP)
def _b_gelu(g, x):
    always_inline()
    pdf = exp_neg_sub_zx(K(x, -0.5) * x * x) * K(x, _INV_SQRT_2PI)
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
def _f_bce_with_logits(x, t):
    always_inline()
    pos = x if x > K(x, 0.0) else K(x, 0.0)
    pos = x if x != x else pos
    return pos - x * t + log1pexp_neg_abs(x)


@njit(**_HLP)
def _b_bce_with_logits(x, t, scale):
    always_inline()
    return scale * (_sigmoid(x) - t)


# ---------------------------------------------------------------------------
# rows, inner == 1: long rows (n > 64) as fused loops


@njit(**_INL)
def _row_max(xr):
    """Row maximum through integer keys (vectorized, log-depth reduction):
    +NaN gives NaN; -NaN is passed over (its exp makes the sums NaN)."""
    km = fkey(K(xr[0], -math.inf))
    for j in range(xr.size):
        km = imax(km, fkey(xr[j]))
    return from_fkey(km, xr[0])


@njit(**_INL)
def _row_hasnan(xr):
    h = False
    for j in range(xr.size):
        h |= xr[j] != xr[j]
    return h


# Long rows stream through numba_rows' vector loops (v*): sums in 16 lanes
# added in a fixed pairwise order, per block of BLK elements, block sums in
# float64 -- vectorized, accurate for long rows, and the same bits however
# and wherever the code is compiled (serial or inside a parallel region).


@njit(**_INL)
def _lrow_sumexp(xf, of, off, n, m):
    """sum(exp(x - m)) over the row at off (float64), storing exp(x - m)
    into of at the same place (of may be xf)."""
    tot = 0.0
    for b0 in range(0, n, BLK):
        tot += vsum_exp(xf, off + b0, min(BLK, n - b0), m, of)
    return tot


@njit(**_INL)
def _lrow_rest(xf, off, n, m, of=None):
    """sum(exp(x - m)) over the row without one maximum's own term (float64):
    the other terms, plus (number of maxima - 1).  log1p of it keeps full
    relative accuracy when the other terms are tiny.  Stores x - m into of
    at the same place unless of is None."""
    tot = 0.0
    cnt = 0.0
    for b0 in range(0, n, BLK):
        s, c = vsum_rest(xf, off + b0, min(BLK, n - b0), m, of)
        tot += s
        cnt += c
    return tot + (cnt - 1.0)


@njit(**_INL)
def _lrow_dot(gf, yf, off, n):
    tot = 0.0
    for b0 in range(0, n, BLK):
        tot += vsum_dot(gf, yf, off + b0, min(BLK, n - b0))
    return tot


@njit(**_INL)
def _lrow_sum(gf, off, n):
    tot = 0.0
    for b0 in range(0, n, BLK):
        tot += vsum_plain(gf, off + b0, min(BLK, n - b0))
    return tot


@njit(**_INL)
def _log_softmax_nonfinite(xr, orow, m):
    """Row whose max is not finite: x - m, all NaN if the row has a NaN
    (as the reference, whose max propagates NaN)."""
    if _row_hasnan(xr):
        m = _nan(m)
    for j in range(orow.size):
        orow[j] = xr[j] - m


@njit(**_HLP)
def _lse_of(m, rest, hasnan_row):
    """log-sum-exp of a row from its max and rest (reference semantics)."""
    always_inline()
    if _finite(m):
        return K(m, np.float64(m) + log1p(rest))
    return _lse_nonfinite(m, hasnan_row)


@njit(**_HLP)
def _lse_nonfinite(m, hasnan_row):
    """log-sum-exp of a row whose max m is not finite: NaN if the row has a
    NaN, else m (+inf, or -inf for an all -inf row)."""
    always_inline()
    return _nan(m) if hasnan_row else m


# ---------------------------------------------------------------------------
# rows, inner == 1: short rows (n <= 64), masked vectors of VL lanes per row
# (one for n <= VL), in blocks of _RB rows so that the per-row divisions and
# log1p run vectorized

VL = 16
_RB = 64
TINY = 64
#: most pieces (512-bit registers) of a row kept in registers
#: (numba_rows.vrowp_*; rows of up to 16 or 8 times as many float32 or
#: float64 entries), for the kernels of one input array and of two.  With
#: AVX2 a piece is two of its 16 registers: past 8 pieces (one input) or
#: 4 (two) they spill, and such rows were up to 1.5-1.9x as slow as on the
#: long-row path (float32 softmax_backward rows of 200, float64 of 100).
#: log_softmax_backward keeps g's pieces live across its sum and needs
#: exp's constants beside them: with 13-16 pieces (float32 rows of 200,
#: float64 of 128) it was 1.2-1.3x as slow as the long-row path over 1M
#: entries, with 8 0.8-0.9x.
PIECES_FWD = 16 if MASKED_STORES else 8
PIECES_BWD = 16 if MASKED_STORES else 4
PIECES_LSMBWD = 8 if MASKED_STORES else 4


@njit(**_HLP)
def _in_pieces(xf, n, P):
    """Whether rows of n entries of xf fit in P pieces (512-bit registers)."""
    always_inline()
    return n <= P * (16 if is_f32(xf) else 8)


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
    s, cnt = vrow_rest(xf, off, min(n, VL), m, VL)
    for c0 in range(VL, n, VL):
        s2, c2 = vrow_rest(xf, off + c0, min(VL, n - c0), m, VL)
        s += s2
        cnt += c2
    return s + (cnt - 1.0)


@njit(**_HLP)
def _t_block_rest(xf, n, b0, b1, mb, lb, ib=None):
    """For rows b0..b1 of n > VL entries: max into mb, log1p(rest) into lb
    (both in the data type; 0 for a row with a non-finite max) and, unless
    ib is None, 1 / (1 + rest) into ib."""
    always_inline()
    if _in_pieces(xf, n, PIECES_FWD):
        for r in range(b0, b1):
            _ahead(xf, r * n + AHEAD, n, False)
            m, rest = vrowp_max_rest(xf, r * n, n, PIECES_FWD)
            mb[r - b0] = m
            lb[r - b0] = rest if _finite(m) else K(m, 0.0)
    else:
        for r in range(b0, b1):
            m = _t_max(xf, r * n, n)
            mb[r - b0] = m
            lb[r - b0] = K(m, _t_rest(xf, r * n, n, m)) if _finite(m) else K(m, 0.0)
    _t_block_finish(lb, b1 - b0, ib)


@njit(**_HLP)
def _t_block_rest_short(xf, n, b0, b1, mb, lb, ib=None):
    """_t_block_rest for rows of n <= VL entries (cross-entropy; the
    log_softmax and logsumexp kernels fuse their rows instead)."""
    always_inline()
    r = b0
    while r + 4 <= b1:
        m0, m1, m2, m3, s0, s1, s2, s3 = vrows_max_rest(xf, r * n, n, VL, 4)
        i = r - b0
        mb[i], mb[i + 1], mb[i + 2], mb[i + 3] = m0, m1, m2, m3
        lb[i] = s0 if _finite(m0) else K(m0, 0.0)
        lb[i + 1] = s1 if _finite(m1) else K(m1, 0.0)
        lb[i + 2] = s2 if _finite(m2) else K(m2, 0.0)
        lb[i + 3] = s3 if _finite(m3) else K(m3, 0.0)
        r += 4
    for rr in range(r, b1):
        m, rest = vrows_max_rest(xf, rr * n, n, VL, 1)
        mb[rr - b0] = m
        lb[rr - b0] = rest if _finite(m) else K(m, 0.0)
    _t_block_finish(lb, b1 - b0, ib)


@njit(**_HLP)
def _t_block_finish(lb, count, ib):
    always_inline()
    if ib is not None:
        for i in range(count):
            ib[i] = K(lb[i], 1.0) / (K(lb[i], 1.0) + lb[i])
    _log1p_block(lb, count)


@njit(**_JIT)
def _log1p_block(lb, count):
    wide()
    for i in range(count):
        lb[i] = log1p(lb[i])


@njit(**_INL)
def _tiny_softmax(xf, of, n, r0, r1):
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


@njit(**_INL)
def _tiny_log_softmax(xf, of, n, r0, r1):
    mb = stack_array(64, xf[0])
    lb = stack_array(64, xf[0])
    for b0 in range(r0, r1, _RB):
        b1 = min(b0 + _RB, r1)
        _t_block_rest(xf, n, b0, b1, mb, lb)
        for r in range(b0, b1):
            m = mb[r - b0]
            if _finite(m):
                L = K(m, lb[r - b0])
                if _in_pieces(xf, n, PIECES_FWD):
                    vrowp_sub2(xf, r * n, n, m, L, of, PIECES_FWD)
                else:
                    for c0 in range(0, n, VL):
                        vrow_sub2(xf, r * n + c0, min(VL, n - c0), m, L, of, VL)
            else:
                _log_softmax_nonfinite(xf[r * n:r * n + n], of[r * n:r * n + n], m)


@njit(**_INL)
def _tiny_logsumexp(xf, of, n, r0, r1):
    mb = stack_array(64, xf[0])
    lb = stack_array(64, xf[0])
    for b0 in range(r0, r1, _RB):
        b1 = min(b0 + _RB, r1)
        _t_block_rest(xf, n, b0, b1, mb, lb)
        for r in range(b0, b1):
            m = mb[r - b0]
            if _finite(m):
                of[r] = K(m, np.float64(m) + lb[r - b0])
            else:
                of[r] = _lse_nonfinite(m, _row_hasnan(xf[r * n:r * n + n]))


@njit(**_INL)
def _packed(ins, of, n, r0, r1, kernel, fix, nmax):
    """Rows r0.. of n = 2, 4, ... <= nmax entries (below a vector's lanes)
    of the arrays ins packed several to a vector (numba_rows.vpack_*), PACK_R
    vectors at a time, the rows the kernel leaves (non-finite max) to fix.
    Returns the first row left."""
    p = pack_lanes(of)
    if n >= p or n > nmax or n & (n - 1) or n < 2:
        return r0
    step = PACK_R * (p // n)
    r = r0
    while r + step <= r1:
        bad = kernel(*ins, r * n, n, of)
        if bad:
            fix(ins[0], of, n, r * n, bad)
        r += step
    return r


@njit(**_HLP)
def _no_fix(xf, of, n, off, bad):
    always_inline()


#: entries ahead of the current row that the short rows below prefetch
AHEAD = 1024


@njit(**_INL)
def _far(a):
    """Whether a is 6 MiB or more (see _ahead).  Left to the hardware
    prefetcher, the short rows of arrays of 6-8 MiB took 1.5-3x their time
    in the caches, in phases (times varied 1.5-2.5x between processes and
    over seconds within one; the 32 MiB L3 is shared with the host's other
    guests): float64 softmax rows of 12 over 1M entries (8 MiB) 768-2104
    us, prefetched 731-750; float32 softmax_backward rows of 3 over 2M
    entries (7.6 MiB) 1494 -> 408.  At 6 MiB, in quiet phases, the
    forward rows take 1.03-1.08x as long with the prefetches (float32
    softmax rows of 3 289-302 -> 313-317 us) and the backward passes
    0.75-0.9x (float64 softmax_backward rows of 5 510-704 -> 368-396);
    arrays of 4-5 MiB took 1.05-1.15x as long with them (float32 logsumexp
    rows of 3 over 1.2M entries 484 -> 574), of 2-4 MiB 1.1-1.4x (float32
    softmax_backward over 1M)."""
    return a.size * (4 if is_f32(a) else 8) >= (6 << 20)


@njit(**_INL)
def _ahead(a, lo, cnt, w):
    """Prefetch the lines of a[lo:lo + cnt] (those inside a), for writing
    if w, when a is 6 MiB or more.  The short rows below (a row or a few at a
    time in masked vectors) and the tiles kept their loads waiting on
    memory past the caches: the hardware prefetcher did not run ahead of
    them (see docs/benchmarks.md, 2026-12-06 from 08:48).  In the caches
    the prefetches only cost."""
    if not _far(a):
        return
    step = 16 if is_f32(a) else 8  # entries a line, a constant (a.itemsize is not)
    hi = min(lo + cnt, a.size)
    while lo < hi:  # (a range with a step divides)
        if w:
            prefetch_line(a, lo, 1)
        else:
            prefetch_line(a, lo, 0)
        lo += step


@njit(**_INL)
def _ahead_tile(a, r, r1, n, w):
    """_ahead over the next tile's rows (r + TWR.., up to r1) of a."""
    _ahead(a, (r + TWR) * n, min(TWR, r1 - r - TWR) * n, w)


@njit(**_INL)
def _ft_softmax(xf, of, n, r0, r1):
    if n <= VL:
        r = _packed((xf,), of, n, r0, r1, vpack_softmax, _no_fix, VL)
        if is_f32(xf):  # 8 rows (8 zmm) at a time in float32, 4 in float64
            while r + 8 <= r1:
                _ahead(xf, r * n + AHEAD, 8 * n, False)
                vrows_softmax(xf, r * n, n, of, VL, 8)
                r += 8
        else:
            while r + 4 <= r1:
                _ahead(xf, r * n + AHEAD, 4 * n, False)
                vrows_softmax(xf, r * n, n, of, VL, 4)
                r += 4
        for rr in range(r, r1):
            vrows_softmax(xf, rr * n, n, of, VL, 1)
    elif _in_pieces(xf, n, PIECES_FWD):
        for r in range(r0, r1):
            vrowp_softmax(xf, r * n, n, of, PIECES_FWD)
    else:
        _tiny_softmax(xf, of, n, r0, r1)


@njit(**_INL)
def _fl_softmax(xf, of, n, r0, r1):
    for r in range(r0, r1):
        off = r * n
        m = _row_max(xf[off:off + n])
        if _finite(m):
            inv = KA(of, 1.0 / _lrow_sumexp(xf, of, off, n, m))
            vmap_scale(of, off, n, inv, of)
        else:
            for j in range(off, off + n):
                of[j] = _nan(m)


@njit(**_INL)
def _ft_log_softmax(xf, of, n, r0, r1):
    if n <= VL:  # fused, R rows at a time (as _ft_softmax); rows with a
        # non-finite max are left to _log_softmax_fix
        r = _packed((xf,), of, n, r0, r1, vpack_log_softmax, _log_softmax_fix, PACK_LSE)
        if is_f32(xf):
            while r + 8 <= r1:
                _ahead(xf, r * n + AHEAD, 8 * n, False)
                _log_softmax_fix(xf, of, n, r * n, vrows_log_softmax(xf, r * n, n, of, VL, 8))
                r += 8
        else:
            while r + 4 <= r1:
                _ahead(xf, r * n + AHEAD, 4 * n, False)
                _log_softmax_fix(xf, of, n, r * n, vrows_log_softmax(xf, r * n, n, of, VL, 4))
                r += 4
        for rr in range(r, r1):
            _log_softmax_fix(xf, of, n, rr * n, vrows_log_softmax(xf, rr * n, n, of, VL, 1))
    else:
        _tiny_log_softmax(xf, of, n, r0, r1)


@njit(**_HLP)
def _log_softmax_fix(xf, of, n, off, bad):
    """The rows at off + k n, k a set bit of bad (their max is not finite;
    off, not a row number: the first row's is a literal 0, and a literal
    argument would compile this a second time)."""
    always_inline()
    k = 0
    while bad:
        if bad & 1:
            o = off + k * n
            _log_softmax_nonfinite(xf[o:o + n], of[o:o + n], _t_max(xf, o, n))
        bad >>= 1
        k += 1


@njit(**_INL)
def _fl_log_softmax(xf, of, n, r0, r1):
    for r in range(r0, r1):
        off = r * n
        m = _row_max(xf[off:off + n])
        if _finite(m):
            lse = KA(of, log1p(_lrow_rest(xf, off, n, m, of)))
            vmap_sub2(of, off, n, KA(of, 0.0), lse, of)  # (x - m) - lse
        else:
            _log_softmax_nonfinite(xf[off:off + n], of[off:off + n], m)


@njit(**_INL)
def _ft_logsumexp(xf, of, n, r0, r1):
    if n <= VL:  # as _ft_log_softmax
        r = _packed((xf,), of, n, r0, r1, vpack_logsumexp, _logsumexp_fix, PACK_LSE)
        if is_f32(xf):
            while r + 8 <= r1:
                _ahead(xf, r * n + AHEAD, 8 * n, False)
                _logsumexp_fix(xf, of, n, r * n, vrows_logsumexp(xf, r * n, n, of, r, VL, 8))
                r += 8
        else:
            while r + 4 <= r1:
                _ahead(xf, r * n + AHEAD, 4 * n, False)
                _logsumexp_fix(xf, of, n, r * n, vrows_logsumexp(xf, r * n, n, of, r, VL, 4))
                r += 4
        for rr in range(r, r1):
            _logsumexp_fix(xf, of, n, rr * n, vrows_logsumexp(xf, rr * n, n, of, rr, VL, 1))
    else:
        _tiny_logsumexp(xf, of, n, r0, r1)


@njit(**_HLP)
def _logsumexp_fix(xf, of, n, off, bad):
    """As _log_softmax_fix: out[row] for the rows at off + k n."""
    always_inline()
    k = 0
    while bad:
        if bad & 1:
            o = off + k * n
            of[o // n] = _lse_nonfinite(_t_max(xf, o, n), _row_hasnan(xf[o:o + n]))
        bad >>= 1
        k += 1


@njit(**_INL)
def _fl_logsumexp(xf, of, n, r0, r1):
    for r in range(r0, r1):
        xr = xf[r * n:r * n + n]
        m = _row_max(xr)
        if _finite(m):
            of[r] = _lse_of(m, _lrow_rest(xf, r * n, n, m), False)
        else:
            of[r] = _lse_nonfinite(m, _row_hasnan(xr))


@njit(**_INL)
def _vrow_softmax_bwd1(gf, yf, off, n, of):
    vrow_softmax_bwd1(gf, yf, off, n, of, VL)


@njit(**_INL)
def _vrow_log_softmax_bwd1(gf, yf, off, n, of):
    vrow_log_softmax_bwd1(gf, yf, off, n, of, VL)


@njit(**_INL)
def _bwd_rows(gf, yf, of, n, r0, r1, row):
    """row(gf, yf, r n, n, of) for rows r0..r1, prefetching ahead where the
    arrays are past the caches in a loop of its own (tested in the row
    loop, the rows of 5-12 took 1.1-1.3x as long in cache)."""
    if _far(gf):
        for c in range(r0, r1, 8):
            _ahead(gf, c * n + AHEAD, 8 * n, False)
            _ahead(yf, c * n + AHEAD, 8 * n, False)
            for r in range(c, min(c + 8, r1)):
                row(gf, yf, r * n, n, of)
    else:
        for r in range(r0, r1):
            row(gf, yf, r * n, n, of)


@njit(**_INL)
def _ft_softmax_backward(gf, yf, of, n, r0, r1):
    if n <= VL:
        r0 = _packed((gf, yf), of, n, r0, r1, vpack_softmax_bwd, _no_fix, VL)
        _bwd_rows(gf, yf, of, n, r0, r1, _vrow_softmax_bwd1)
        return
    if _in_pieces(gf, n, PIECES_BWD):
        for r in range(r0, r1):
            vrowp_softmax_bwd(gf, yf, r * n, n, of, PIECES_BWD)
        return
    for r in range(r0, r1):
        dot = 0.0
        for c0 in range(0, n, VL):
            dot += vrow_dot(gf, yf, r * n + c0, min(VL, n - c0), VL)
        d = KA(of, dot)
        for c0 in range(0, n, VL):
            vrow_softmax_bwd(gf, yf, r * n + c0, min(VL, n - c0), d, of, VL)


@njit(**_INL)
def _fl_softmax_backward(gf, yf, of, n, r0, r1):
    for r in range(r0, r1):
        vmap_softmax_bwd(gf, yf, r * n, n, KA(of, _lrow_dot(gf, yf, r * n, n)), of)


@njit(**_INL)
def _ft_log_softmax_backward(gf, yf, of, n, r0, r1):
    if n <= VL:
        r0 = _packed((gf, yf), of, n, r0, r1, vpack_log_softmax_bwd, _no_fix, VL)
        _bwd_rows(gf, yf, of, n, r0, r1, _vrow_log_softmax_bwd1)
        return
    if _in_pieces(gf, n, PIECES_LSMBWD):
        for r in range(r0, r1):
            vrowp_log_softmax_bwd(gf, yf, r * n, n, of, PIECES_LSMBWD)
        return
    for r in range(r0, r1):
        tot = 0.0
        for c0 in range(0, n, VL):
            tot += vrow_sum(gf, r * n + c0, min(VL, n - c0), VL)
        t = KA(of, tot)
        for c0 in range(0, n, VL):
            vrow_log_softmax_bwd(gf, yf, r * n + c0, min(VL, n - c0), t, of, VL)


@njit(**_INL)
def _fl_log_softmax_backward(gf, yf, of, n, r0, r1):
    for r in range(r0, r1):
        vmap_log_softmax_bwd(gf, yf, r * n, n, KA(of, _lrow_sum(gf, r * n, n)), of)


@njit(**_INL)
def _ft_logsumexp_backward(gf, xf, lf, of, n, r0, r1):
    for r in range(r0, r1):
        for c0 in range(0, n, VL):
            vrow_lse_bwd(xf, r * n + c0, min(VL, n - c0), gf[r], lf[r], of, VL)


@njit(**_INL)
def _fl_logsumexp_backward(gf, xf, lf, of, n, r0, r1):
    for r in range(r0, r1):
        vmap_lse_bwd(xf, r * n, n, gf[r], lf[r], of)


# ---------------------------------------------------------------------------
# rows, inner > 1: lane-wise reductions over n, vectorized along inner, in
# tiles of TW lanes; work units are (outer index, tile) pairs


@njit(**_INL)
def _units(x):
    """Work units of an (outer, n, inner) array: outer * tiles of inner."""
    return x.shape[0] * ((x.shape[2] + TW - 1) // TW)


@njit(**_HLP)
def _tile(u, ntile, n, inner):
    """(offset of the tile's first element, width, offset in the reduced
    (outer, inner) array) of work unit u."""
    always_inline()
    o = u // ntile
    k0 = (u - o * ntile) * TW
    return o * n * inner + k0, min(TW, inner - k0), o * inner + k0


@njit(**_INL)
def _lane_max(xf, base, w, n, inner, m):
    """m[k] = max over j of x[j, k], NaN if any is NaN (as np.max)."""
    for k in range(w):
        m[k] = K(m[0], -math.inf)
    for j in range(n):
        xs = xf[base + j * inner:base + j * inner + w]
        for k in range(w):
            v = xs[k]
            mv = m[k]
            m[k] = v if (v > mv or v != v) else mv


# Lane sums run in the data type over blocks of JB rows, then in float64 (as
# the Cython lanes): a float64 add per entry meant a conversion per entry and
# half the lanes per instruction (1M float32 entries, Intel: softmax over
# rows of 20 through tiles 1093 -> 825-860 us; over axis 1 of (1024, 10,
# 100) 1140 -> 728 us)
JB = 16


@njit(**_INL)
def _lane_rest(src, base, w, n, inner, m, rk, ck, pr, pc):
    """rk[k] = sum over j of exp(x - m) without one maximum's term
    (float64; garbage where m is not finite); ck, pr, pc: scratch (ck
    float64, pr and pc in the data type)."""
    for k in range(w):
        rk[k] = 0.0
        ck[k] = 0.0
    for j0 in range(0, n, JB):
        for k in range(w):
            pr[k] = 0.0
            pc[k] = 0.0
        for j in range(j0, min(j0 + JB, n)):
            xs = src[base + j * inner:base + j * inner + w]
            for k in range(w):
                d = xs[k] - m[k]
                t = ind(d == K(d, 0.0), d)
                pr[k] += exp_neg(d) - t
                pc[k] += t
        for k in range(w):
            rk[k] += np.float64(pr[k])
            ck[k] += np.float64(pc[k])
    for k in range(w):
        rk[k] = rk[k] + (ck[k] - 1.0)


@njit(**_INL)
def _lane_softmax(xf, of, base, w, n, inner, ob, mk, ik, pk, sk, ck):
    """softmax along lanes base..base+w of (n, inner) at base (mk, ik, sk:
    scratch of >= w entries, sk float64; ob, pk, ck unused: the three
    forward lane kernels take the same arguments)."""
    _lane_max(xf, base, w, n, inner, mk)
    for k in range(w):
        sk[k] = 0.0
    inplace = _same(xf, of)
    for j0 in range(0, n, JB):
        for k in range(w):
            ik[k] = 0.0  # the block's partial sums, before ik holds 1/sum
        for j in range(j0, min(j0 + JB, n)):
            a = base + j * inner
            os = of[a:a + w]
            if inplace:
                for k in range(w):
                    e = exp_neg(os[k] - mk[k])
                    os[k] = e
                    ik[k] += e
            else:
                xs = xf[a:a + w]
                for k in range(w):
                    e = exp_neg(xs[k] - mk[k])
                    os[k] = e
                    ik[k] += e
        for k in range(w):
            sk[k] += np.float64(ik[k])
    for k in range(w):
        ik[k] = K(mk[k], 1.0 / sk[k]) if _finite(mk[k]) else _nan(mk[k])
    for j in range(n):
        a = base + j * inner
        os = of[a:a + w]
        for k in range(w):
            os[k] = os[k] * ik[k]


@njit(**_INL)
def _lane_log_softmax(xf, of, base, w, n, inner, ob, mk, lk, pk, rk, ck):
    """log_softmax along lanes (as _lane_softmax; pk in the data type, rk
    and ck float64; ob unused)."""
    _lane_max(xf, base, w, n, inner, mk)
    _lane_rest(xf, base, w, n, inner, mk, rk, ck, lk, pk)
    for k in range(w):
        lk[k] = K(mk[k], log1p(rk[k])) if _finite(mk[k]) else K(mk[k], 0.0)
    inplace = _same(xf, of)
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


@njit(**_INL)
def _lane_logsumexp(xf, of, base, w, n, inner, ob, mk, lk, pk, rk, ck):
    """logsumexp along lanes into of[ob:ob + w] (as _lane_log_softmax)."""
    _lane_max(xf, base, w, n, inner, mk)
    _lane_rest(xf, base, w, n, inner, mk, rk, ck, lk, pk)
    os = of[ob:ob + w]
    for k in range(w):
        m = mk[k]
        os[k] = K(m, np.float64(m) + log1p(rk[k])) if _finite(m) else m


# A narrow inner axis (inner < NW / 4) makes lanes too narrow to vectorize:
# the loops over them ran in their scalar epilogues.  For short reductions
# (n <= NN), G = NW // inner consecutive blocks go side by side into a tile
# of NW lanes (row j of the tile: row j of each block), on the stack, and the
# lane code computes along the tile, as in the Cython kernels (1M entries,
# axis 1, Intel: float32 softmax of (25000, 10, 4) 4.8 -> 2.0 ms, of (10000,
# 10, 10) 3.2 -> 1.7 ms; the other four row kernels 0.23-0.44x the time,
# float64 0.23-0.28x; at inner = 16 no gain).
NW = 64
NN = 32


@njit(**_NONRT)
def _blocks_move(a, b, o, G, n, inner, to_tile):
    """Blocks o..o+G of (outer, n, inner) a to the tile b, row j of block g
    at b[j NW + g inner], or (not to_tile) back from the tile a to b.  (A
    function of its own: compiled once, not at each of its call sites.)"""
    never_inline()
    for g in range(G):
        for j in range(n):
            p = ((o + g) * n + j) * inner
            t = j * NW + g * inner
            # slices first: indices from range() need no negative-index fixup
            src = a[p:p + inner] if to_tile else a[t:t + inner]
            dst = b[t:t + inner] if to_tile else b[p:p + inner]
            for k in range(inner):
                dst[k] = src[k]


@njit(**_HLP)
def _lane_step(n, inner):
    """Work units per step of a lane driver: a group of narrow blocks, or 1."""
    always_inline()
    return NW // inner if 4 * inner < NW and n <= NN else 1


@njit(**_HLP)
def _lane_unit(u, u1, step, ntile, n, inner):
    """(R, offset, width, reduced offset) of the step at unit u: R > 0
    narrow blocks, the offset then in the tile (step > 1), else R = 0 and
    the unit's own (see _tile)."""
    always_inline()
    if step > 1:
        R = min(step, u1 - u)
        return R, 0, R * inner, u * inner
    base, w, ob = _tile(u, ntile, n, inner)
    return 0, base, w, ob


@njit(**_INL)
def _lanesr_forward(x, out, u0, u1, lane, back):
    """Work units u0..u1 of an (outer, n, inner) array through lane, one of
    the three forward lane kernels above.  Narrow blocks go through the tile
    (back: lane writes a full-shaped result, in the tile, which then goes
    back to out).  One call site of lane for both: each is a copy of the
    lane code to compile (a second one made first calls 2-3x slower)."""
    wide()
    _, n, inner = x.shape
    xf = flat(x)
    of = flat(out)
    ntile = (inner + TW - 1) // TW
    mk = np.empty(TW, xf.dtype)
    lk = np.empty(TW, xf.dtype)
    pk = np.empty(TW, xf.dtype)
    rk = np.empty(TW, np.float64)
    ck = np.empty(TW, np.float64)
    tb = stack_array(2048, xf[0])  # NN x NW
    step = _lane_step(n, inner)
    for u in range(u0, u1, step):
        R, base, w, ob = _lane_unit(u, u1, step, ntile, n, inner)
        if R:
            _blocks_move(xf, tb, u, R, n, inner, True)
            src, dst, st = tb, tb if back else of, NW
        else:
            src, dst, st = xf, of, inner
        lane(src, dst, base, w, n, st, ob, mk, lk, pk, rk, ck)
        if R and back:
            _blocks_move(tb, of, u, R, n, inner, False)


@njit(**_INL)
def _lanesr_softmax(x, out, u0, u1):
    _lanesr_forward(x, out, u0, u1, _lane_softmax, True)


@njit(**_INL)
def _lanesr_log_softmax(x, out, u0, u1):
    _lanesr_forward(x, out, u0, u1, _lane_log_softmax, True)


@njit(**_INL)
def _lanesr_logsumexp(x, out, u0, u1):
    _lanesr_forward(x, out, u0, u1, _lane_logsumexp, False)


# Short rows through transposed tiles: TWR rows at a time go into a
# tile whose row j holds entry j of each of them (vtile_in: blocks of VL x
# VL through registers), the lane code above computes along the tile, and
# vtile_out writes the rows back.  One row per vector instead leaves each
# row's maximum and sum to horizontal reductions, which at these lengths
# cost more than the exps (1M entries, Intel, against one row per vector:
# rows of 20 0.38-0.62x the time, rows of 3-4 0.36-0.61x, log_softmax and
# logsumexp over rows of 10 0.69-0.71x; softmax over rows of 10 the same).
# The tile (up to 2 VL rows of TWR) and the scratch live on the stack.
# Rows of up to SMALL_TILE entries move by scalar loads and stores
# instead, written out for each length (tile_move_small): the VL x VL
# transposes cost the same for 3 columns as for 16 (1M entries, AMD Zen 5,
# float32 log_softmax rows of 3 / 5 / 6 / 7 1082-1107 / 744-758 / 647-668 /
# 592-606 -> 651-752 / 513-575 / 509-551 / 497-578 us, float64 logsumexp
# 1345-1368 / 1006-1014 / 919-930 / 860-878 -> 942-968 / 792-793 /
# 750-802 / 702-746; as Numba loops with n not a constant 1.1-1.7x slower
# than that; rows of 9-15 1.3-1.8x slower than the transposes in float32,
# 0.9-1.15x in float64).  As the Cython tiles' moves (_short), which GCC
# compiles for each n.

TWR = 64
SMALL_TILE = max(SMALL_TILE_LENGTHS)


@njit(**_INL)
def _tile_in(xf, r, n, tb):
    if n <= SMALL_TILE:
        tile_move_small(xf, r * n, n, tb, TWR, 1)
        return
    for b0 in range(0, TWR, VL):
        for c0 in range(0, n, VL):
            vtile_in(xf, (r + b0) * n + c0, n - c0, n, tb, c0 * TWR + b0, TWR, VL)


@njit(**_INL)
def _tile_out(tb, r, n, of):
    if n <= SMALL_TILE:
        tile_move_small(of, r * n, n, tb, TWR, 0)
        return
    for b0 in range(0, TWR, VL):
        for c0 in range(0, n, VL):
            vtile_out(tb, c0 * TWR + b0, TWR, of, (r + b0) * n + c0, n - c0, n, VL)


@njit(**_INL)
def _tile_rows(xf, of, n, r0, r1, lane, back):
    """Rows r0.. of n <= _TILE_ROWS entries (float32) tile by tile, up to the last
    whole tile: lane, a forward lane kernel, computes along the tile, in
    place when back (the tile is then written back to rows r.. of of), else
    with its results straight to of.  Returns the first row left."""
    tb = stack_array(10240, xf[0])  # TWR x the longest rows of _TILE_ROWS
    mk = stack_array(64, xf[0])
    lk = stack_array(64, xf[0])
    pk = stack_array(64, xf[0])
    rk = stack_array(64, 0.0)
    ck = stack_array(64, 0.0)
    dst = tb if back else of
    r = r0
    while r + TWR <= r1:
        _ahead_tile(xf, r, r1, n, False)
        if back:
            _ahead_tile(of, r, r1, n, True)
        _tile_in(xf, r, n, tb)
        lane(tb, dst, 0, TWR, n, TWR, r, mk, lk, pk, rk, ck)
        if back:
            _tile_out(tb, r, n, of)
        r += TWR
    return r


@njit(**_NONRT)
def _tiles_softmax(xf, of, n, r0, r1):
    never_inline()
    wide()
    return _tile_rows(xf, of, n, r0, r1, _lane_softmax, True)


@njit(**_NONRT)
def _tiles_log_softmax(xf, of, n, r0, r1):
    never_inline()
    wide()
    return _tile_rows(xf, of, n, r0, r1, _lane_log_softmax, True)


@njit(**_NONRT)
def _tiles_logsumexp(xf, of, n, r0, r1):
    never_inline()
    wide()
    return _tile_rows(xf, of, n, r0, r1, _lane_logsumexp, False)  # results straight to of


def _tile_path(tiles, nmax=2 * VL, whole=3 * VL, nmin=1, packed=0, nmax64=0, small=0):
    """g(*arrays, n, r0, r1): tiles(...) for float32 rows of nmin <= n <=
    nmax entries that are not whole vectors or are at least ``whole`` long,
    or of n <= small, and are not packed (1, 2, 4, ... up to ``packed``:
    see _packed), and for float64 rows of n <= nmax64 that are not packed;
    else r0 (no row done).  Chosen when the caller is typed, so that a
    dtype without tiles never compiles the tile code (each tile function
    adds 1.5-2 s to a kernel's first compilation)."""

    def g(*args):
        raise NotImplementedError  # only called from compiled code

    @overload(g)
    def _g(*args):
        if args[0].dtype == types.float32:
            def run(*args):
                n = args[-3]
                fits = (nmin <= n <= nmax and (n % VL != 0 or n >= whole)) or n <= small
                return tiles(*args) if fits and not (n <= packed and n & (n - 1) == 0) else args[-2]
            return run
        if args[0].dtype == types.float64 and nmax64:
            def run64(*args):
                n = args[-3]
                fits = n <= nmax64 and not (n <= packed and n & (n - 1) == 0)
                return tiles(*args) if fits else args[-2]
            return run64
        return lambda *args: args[-2]

    return g


# Rows of whole vectors, against one row per vector (1M entries, Intel):
# logsumexp rows of 16 0.70-0.83x the time, 32 0.61-0.64x; log_softmax 32
# 0.80x, 16 1.09-1.11x; softmax 16 1.4-1.6x, 32 0.95-0.96x.  Since rows of
# n <= 8 take 8 lanes (numba_rows._by_width) and rows of 2, 4 (softmax: 8
# too) are packed several to a vector (_packed), softmax rows of 2-16 cost
# 0.72-1.07x their tiles' time (packed rows of 2: 0.13x), so softmax tiles
# only rows of 17-31; log_softmax and logsumexp tile neither packed rows
# (0.3-0.7x) nor, for log_softmax, rows of 8 (fused rows 0.81-0.97x);
# other rows of 3-14 stay tiled (rows 0.9-1.3x the tiles' time).  Since
# the scalar moves of rows of up to SMALL_TILE (above), softmax tiles rows
# of 3-7 as well (1M entries, Zen 5: rows of 3 / 5 / 6 / 7 1112 / 676 /
# 563 / 485 -> 399 / 336 / 356 / 363 us; rows of 9-16, through transposes,
# stay 1.0-1.3x faster in registers).
#
# Longer rows, up to _TILE_ROWS (the kernels' own drivers send float32
# arrays of TWR rows or more with rows up to that long to the short-row
# path): 1M entries, AMD Zen 5, against rows one or a few at a time, us:
# softmax rows of 33 651 -> 348, 48 448 -> 299, 64 408 -> 293 (100
# 371 -> 311 but 65 396 -> 440, 128 1.15x: not tiled past 64);
# log_softmax 920 -> 420, 650 -> 351, 619 -> 340, 100 544 -> 354, 160
# 406 -> 371 (200 1.05x); logsumexp 825 -> 301, 588 -> 265, 555 -> 262,
# 100 460 -> 265, 160 342 -> 274 (200 1.0x)
_TILE_ROWS = {"softmax": 64, "log_softmax": 160, "logsumexp": 160}
#: and float64 (rows of 2 and 4 are packed instead), against 4 rows at a
#: time in registers, 1M entries, Zen 5: logsumexp over rows of 3-16, which
#: writes no tile back (rows of 3 0.60x the time, 5 0.60-0.68x, 7-11
#: 0.73-0.89x, 14-16 0.85-1.0x); since the scalar moves of rows of up to
#: SMALL_TILE, log_softmax over rows of 3-15 (3 / 5 / 6 / 7 2652 / 1812 /
#: 1518 / 1319 -> 1189 / 1048 / 977 / 999 us; 9 / 10 / 12 1543 / 1379 /
#: 1252 -> 1173 / 1044 / 908 through 16 x 16 transposes; 16 0.9-1.15x,
#: not tiled) and softmax over rows of 3-6 (1461 / 1086 / 872 -> 723 / 730
#: / 707; past the caches, 8M entries, 1515 / 1070 / 890 -> 803-852 / 800 /
#: 860; rows of 7 the same in cache but 1.15-1.25x slower past it, and 9-16
#: through transposes 0.83-1.4x: not tiled).
_TILE_ROWS64 = {"softmax": 6, "log_softmax": 15, "logsumexp": 16}
_tiled_softmax = _tile_path(_tiles_softmax, _TILE_ROWS["softmax"], nmin=VL + 1, packed=8,
                            small=SMALL_TILE, nmax64=_TILE_ROWS64["softmax"])
_tiled_log_softmax = _tile_path(_tiles_log_softmax, _TILE_ROWS["log_softmax"], whole=2 * VL,
                                packed=2 * PACK_LSE, nmax64=_TILE_ROWS64["log_softmax"])
_tiled_logsumexp = _tile_path(_tiles_logsumexp, _TILE_ROWS["logsumexp"], whole=VL, packed=PACK_LSE,
                              nmax64=_TILE_ROWS64["logsumexp"])


@njit(**_INL)
def _lane_rows_backward(gf, yf, of, base, w, n, inner, dk, ek, term, update):
    """Backward of softmax / log_softmax along lanes base..base+w: s = sum
    over the row of term(g, y) (blocks of JB rows in the data type, then
    float64), then out = update(g, y, s); dk float64 and ek data-type
    scratch."""
    for k in range(w):
        dk[k] = 0.0
    for j0 in range(0, n, JB):
        for k in range(w):
            ek[k] = 0.0
        for j in range(j0, min(j0 + JB, n)):
            a = base + j * inner
            gs = gf[a:a + w]
            ys = yf[a:a + w]
            for k in range(w):
                ek[k] += term(gs[k], ys[k])
        for k in range(w):
            dk[k] += np.float64(ek[k])
    for k in range(w):
        ek[k] = K(ek[0], dk[k])
    for j in range(n):
        # read an input that is also the output through out: LLVM then
        # needs no overlap test to vectorize
        a = base + j * inner
        os = of[a:a + w]
        if _same(gf, of):
            ys = yf[a:a + w]
            for k in range(w):
                os[k] = update(os[k], ys[k], ek[k])
        elif _same(yf, of):
            gs = gf[a:a + w]
            for k in range(w):
                os[k] = update(gs[k], os[k], ek[k])
        else:
            gs = gf[a:a + w]
            ys = yf[a:a + w]
            for k in range(w):
                os[k] = update(gs[k], ys[k], ek[k])


@njit(**_INL)
def _lanesr_rows_backward(g, y, out, u0, u1, term, update):
    """Work units u0..u1 of a softmax or log_softmax backward pass (narrow
    blocks through tiles of g and y, as in _lanesr_forward)."""
    wide()
    _, n, inner = y.shape
    ntile = (inner + TW - 1) // TW
    gf = flat(g)
    yf = flat(y)
    of = flat(out)
    dk = np.empty(TW, np.float64)
    ek = np.empty(TW, of.dtype)
    tg = stack_array(2048, gf[0])
    ty = stack_array(2048, gf[0])
    step = _lane_step(n, inner)
    for u in range(u0, u1, step):
        R, base, w, _ = _lane_unit(u, u1, step, ntile, n, inner)
        if R:
            _blocks_move(gf, tg, u, R, n, inner, True)
            _blocks_move(yf, ty, u, R, n, inner, True)
            sg, sy, dst, st = tg, ty, tg, NW
        else:
            sg, sy, dst, st = gf, yf, of, inner
        _lane_rows_backward(sg, sy, dst, base, w, n, st, dk, ek, term, update)
        if R:
            _blocks_move(tg, of, u, R, n, inner, False)


@njit(**_HLP)
def _softmax_bwd_term(g, y):
    always_inline()
    return g * y


@njit(**_HLP)
def _softmax_bwd_update(g, y, s):
    always_inline()
    return y * (g - s)


@njit(**_HLP)
def _log_softmax_bwd_term(g, y):
    always_inline()
    return g


@njit(**_HLP)
def _log_softmax_bwd_update(g, y, s):
    always_inline()
    return g - exp(y) * s


@njit(**_INL)
def _lanesr_softmax_backward(g, y, out, u0, u1):
    _lanesr_rows_backward(g, y, out, u0, u1, _softmax_bwd_term, _softmax_bwd_update)


@njit(**_INL)
def _lanesr_log_softmax_backward(g, y, out, u0, u1):
    _lanesr_rows_backward(g, y, out, u0, u1, _log_softmax_bwd_term, _log_softmax_bwd_update)


@njit(**_INL)
def _lane_lse_bwd(gs, ls, xf, of, base, w, n, inner):
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


@njit(**_INL)
def _lanesr_logsumexp_backward(g, x, lse, out, u0, u1):
    wide()
    _, n, inner = x.shape
    ntile = (inner + TW - 1) // TW
    gf = flat(g)
    xf = flat(x)
    lf = flat(lse)
    of = flat(out)
    tb = stack_array(2048, xf[0])
    step = _lane_step(n, inner)
    for u in range(u0, u1, step):
        R, base, w, ob = _lane_unit(u, u1, step, ntile, n, inner)
        if R:
            _blocks_move(xf, tb, u, R, n, inner, True)
            src, dst, st = tb, tb, NW
        else:
            src, dst, st = xf, of, inner
        _lane_lse_bwd(gf[ob:ob + w], lf[ob:ob + w], src, dst, base, w, n, st)
        if R:
            _blocks_move(tb, of, u, R, n, inner, False)


@njit(**_NONRT)
def _tiles_log_softmax_backward(gf, yf, of, n, r0, r1):
    """log_softmax_backward as _tiles_softmax (both inputs through tiles).
    Rows of up to 8 entries only (1M entries, against one row per vector:
    rows of 3 and 5 0.73-0.74x the time, 7-8 0.95-0.97x, 10-20 1.03-1.08x,
    31 1.39x); for softmax_backward one row per vector was as fast or
    faster at every length (1.07x at 3, 1.15-1.43x at 10-31)."""
    never_inline()
    wide()
    tg = stack_array(2048, gf[0])
    ty = stack_array(2048, gf[0])
    dk = stack_array(64, 0.0)
    ek = stack_array(64, gf[0])
    r = r0
    while r + TWR <= r1:
        _ahead_tile(gf, r, r1, n, False)
        _ahead_tile(yf, r, r1, n, False)
        _tile_in(gf, r, n, tg)
        _tile_in(yf, r, n, ty)
        _lane_rows_backward(tg, ty, tg, 0, TWR, n, TWR, dk, ek, _log_softmax_bwd_term, _log_softmax_bwd_update)
        _tile_out(tg, r, n, of)
        r += TWR
    return r


# packed rows of 2, 4, 8 (_packed) take 0.2-0.63x the tiles' time.  Float64
# rows of 3 and 5, with their scalar moves (SMALL_TILE), 0.45-0.8x the time
# of one row at a time (1M entries, Zen 5: 1364-1438 / ~1000 -> 621-654 /
# 719-927 us); past the caches (8M entries) rows of 3 0.8x, 5 1.0-1.15x,
# 6 1.45x (in cache 0.7-0.9x), 7 1.0x in cache: not tiled from 6
_LSMBWD_TILE_ROWS = 8
_LSMBWD_TILE_ROWS64 = 5
_tiled_log_softmax_backward = _tile_path(_tiles_log_softmax_backward, _LSMBWD_TILE_ROWS, packed=8,
                                         nmax64=_LSMBWD_TILE_ROWS64)


# ---------------------------------------------------------------------------
# the compiled functions that call the bodies above, generated into
# numba_gen.py by tools/gen_numba_kernels.py (module-level functions, so that
# Numba's disk cache keeps them; they differ only by the names they call):
#
#   _e_<name>(inputs, out, *params)  elementwise: the serial loop over the
#                                   scalar function _f_<name> / _b_<...>
#                                   (an in-place call reads through out)
#   _p_<name>(..., nt)               its parallel version, nt chunks
#   _rt_<name>(arrays)               rows of <= TINY elements (_ft_<name>)
#   _rtt_<name>(arrays)              the same, float32 tiles first
#                                   (_tiled_<name>; the kernels that have them)
#   _rl_<name>(arrays)               longer rows (_fl_<name>)
#   _lanes_<name>(arrays)            inner > 1 (_lanesr_<name>)
#   _prt_ / _prl_ / _pl_<name>(arrays, nt)   parallel versions of _rt_ /
#                                   _rl_ / _lanes_: prange over chunks of
#                                   rows / work units (compiled on first use)
#   _rtr_ / _rttr_ / _rlr_<name>(arrays, r0, r1)   _rt_ / _rtt_ / _rl_ on
#                                   rows r0..r1
#   _flat_<name>(flat arrays, n, r0, r1)     either path (fastact.numba)
#
# Each path is its own compiled function so that a workload compiles only the
# path it uses.  numba_gen imports the bodies from this module: it must be
# imported here, after them.

from .numba_gen import *  # noqa: E402,F401,F403 - the generated functions (see numba_gen.__all__)


# ---------------------------------------------------------------------------
# cross-entropy.  With q = (1 - eps) onehot(t) + eps / C (or
# (1 - eps) p + eps / C), each rounded in the data type:
#   loss = -sum_c q_c log_softmax(x)_c   (terms with q_c == 0 count 0)
#   dx   = scale * (softmax(x) sum(q) - q)   (index targets: softmax(x) - q)
# where log_softmax_c = (x_c - m) - L and softmax_c = exp(x_c - m) * inv,
# from the row's max m, L = log1p(rest) and inv = 1 / (1 + rest) (rest as
# in _lrow_rest: the sum without the maximum's own term).  q is qa p + qb,
# or qa at the target class and qb elsewhere (index targets).
# Contiguous rows are computed in place with the row intrinsics, short ones
# in blocks of _RB rows: their m, L and inv from the vectorized block step
# of log_softmax, then the block's losses, then its gradients; whole blocks
# of up to _CE_TILE32 classes take all three along the lanes of a transposed
# tile (float32 gradients up to _CE_GRAD_TILE32 classes).  With
# inner >= _CE_LANES_MIN up to TW samples of one outer index go side by side
# along inner (_ce_lanes); with a narrower inner each sample's logits are
# gathered into a contiguous buffer first and its gradient scattered back.


@njit(**_INL)
def _ce_nonfinite(xf, off, C, m):
    """(m, L, inv) of a row whose max is not finite, as the reference has
    them (m NaN if the row has a NaN, inv NaN)."""
    if _row_hasnan(xf[off:off + C]):
        m = _nan(m)
    return m, K(m, 0.0), K(m, math.nan)


@njit(**_INL)
def _ce_stats(xf, off, C):
    """(m, L, inv) of the row xf[off:off + C], in its dtype."""
    m = _row_max(xf[off:off + C])
    if _finite(m):
        rest = _lrow_rest(xf, off, C, m)
        return m, K(m, log1p(rest)), K(m, 1.0 / (1.0 + rest))
    return _ce_nonfinite(xf, off, C, m)


@njit(**_INL)
def _lrow_qlp(xf, pf, off, n, m, L, qa, qb):
    """sum of q * log_softmax over [off, off + n) (float64; see vsum_qlp)."""
    tot = 0.0
    for b0 in range(0, n, BLK):
        tot += vsum_qlp(xf, pf, off + b0, min(BLK, n - b0), m, L, qa, qb)
    return tot


@njit(**_INL)
def _ce_loss(xf, tf, pf, s, off, C, m, L, qa, qb, ignore_index, index):
    """The loss of sample s, its row at off."""
    z = K(m, 0.0)
    if not index:
        return -K(m, _lrow_qlp(xf, pf, off, C, m, L, qa, qb))
    t = tf[s]
    if t == ignore_index:
        return z
    tv = 0 <= t < C
    acc = 0.0
    if qb != z:
        if tv:  # the target's own term is added below, with its own q
            acc = (_lrow_qlp(xf, None, off, t, m, L, qb, z)
                   + _lrow_qlp(xf, None, off + t + 1, C - t - 1, m, L, qb, z))
        else:
            acc = _lrow_qlp(xf, None, off, C, m, L, qb, z)
    if tv and qa != z:
        acc += np.float64(qa * ((xf[off + t] - m) - L))
    return -K(m, acc)


@njit(**_INL)
def _ce_grad(xf, tf, pf, sf, df, s, off, C, m, inv, qa, qb, ignore_index, index):
    """The gradient of sample s into df at off (its row at off)."""
    sc = sf[s]
    if not index:
        qs = K(m, np.float64(qa) * _lrow_sum(pf, off, C) + np.float64(qb) * C)
        if C <= TINY:
            for c0 in range(0, C, VL):
                vrow_ce_prob_grad(xf, pf, off + c0, min(VL, C - c0), m, inv, sc, qs, qa, qb, df, VL)
        else:
            vmap_ce_prob_grad(xf, pf, off, C, m, inv, sc, qs, qa, qb, df)
        return
    t = tf[s]
    if t == ignore_index:
        for c in range(C):
            df[off + c] = K(m, 0.0)
        return
    if C <= TINY:
        for c0 in range(0, C, VL):
            vrow_ce_grad(xf, off + c0, min(VL, C - c0), m, inv, sc, qb, df, VL)
    else:
        vmap_ce_grad(xf, off, C, m, inv, sc, qb, df)
    if 0 <= t < C:
        df[off + t] = sc * (exp_neg_zx(xf[off + t] - m) * inv - qa)


@njit(**_INL)
def _lane_block_rest(src, base, w, n, S, mb, lb, ib, rk, ck, pr, pc):
    """_t_block_rest for w rows side by side, entry j of row k at
    src[base + j S + k]: their maxima and rest sums along the lanes."""
    _lane_max(src, base, w, n, S, mb)
    _lane_rest(src, base, w, n, S, mb, rk, ck, pr, pc)
    for k in range(w):
        lb[k] = K(mb[k], rk[k]) if _finite(mb[k]) else K(mb[k], 0.0)
    _t_block_finish(lb, w, ib)


@njit(**_INL)
def _t_block_rest_tile(xf, n, b0, tb, mb, lb, ib, rk, ck, pr, pc):
    """_t_block_rest_short for the TWR rows from b0 through a transposed
    tile: their maxima and rest sums along its lanes."""
    _tile_in(xf, b0, n, tb)
    _lane_block_rest(tb, 0, TWR, n, TWR, mb, lb, ib, rk, ck, pr, pc)


# The lane functions below compute w samples side by side, their logits
# (and target probabilities) at xs[base + j S + k] for class j and lane k:
# TWR samples of a transposed tile (S = w = TWR), or w consecutive samples
# of an (outer, C, inner) array (S = inner).  Their targets, scales and
# losses come as slices tt, st, lt of the samples: tf[b0 + k] in a lane
# loop kept Numba's negative-index wraparound, and LLVM gathered them one
# address per lane (float32 loss over 3 classes, 1M logits: 1588 ->
# 845-892 us).


@njit(**_INL)
def _ce_grad_lanes(xs, ds, base, S, w, tt, st, C, mb, ib, qa, qb, ignore_index):
    """_ce_grad of w samples with class-index targets tt into ds, laid
    out as xs (ds may be xs)."""
    z = K(mb[0], 0.0)
    for j in range(C):
        row = xs[base + j * S:base + j * S + w]
        drow = ds[base + j * S:base + j * S + w]
        for k in range(w):
            t = tt[k]
            g = st[k] * (exp_neg_zx(row[k] - mb[k]) * ib[k] - (qa if t == j else qb))
            drow[k] = z if t == ignore_index else g


@njit(**_INL)
def _ce_loss_lanes(xs, ps, base, S, w, tt, lt, C, mb, lb, qa, qb, ignore_index, index, acc, part):
    """_ce_loss of w samples into lt: class-index targets tt if index, else
    the target probabilities ps, laid out as xs; acc (float64) and part:
    scratch.  The terms are those of _ce_loss (q == 0 counts 0 whatever the
    log-probability), summed in the data type over blocks of JB classes,
    then in float64."""
    z = K(mb[0], 0.0)
    for k in range(w):
        acc[k] = 0.0
    for j0 in range(0, C, JB):
        for k in range(w):
            part[k] = z
        for j in range(j0, min(j0 + JB, C)):
            row = xs[base + j * S:base + j * S + w]
            if index:
                for k in range(w):
                    q = qa if tt[k] == j else qb
                    part[k] += z if q == z else q * ((row[k] - mb[k]) - lb[k])
            else:
                prow = ps[base + j * S:base + j * S + w]
                for k in range(w):
                    q = qa * prow[k] + qb
                    part[k] += z if q == z else q * ((row[k] - mb[k]) - lb[k])
        for k in range(w):
            acc[k] += np.float64(part[k])
    for k in range(w):
        lt[k] = -K(z, acc[k])
    if index:
        for k in range(w):
            lt[k] = z if tt[k] == ignore_index else lt[k]


@njit(**_INL)
def _ce_prob_grad_lanes(xs, ps, ds, base, S, w, st, C, mb, ib, qa, qb, qs):
    """_ce_grad of w samples with target probabilities ps into ds, laid
    out as xs (ds may be xs); qs: float64 scratch (each sample's sum(q))."""
    for k in range(w):
        qs[k] = 0.0
    for j in range(C):
        prow = ps[base + j * S:base + j * S + w]
        for k in range(w):
            qs[k] += np.float64(prow[k])
    for k in range(w):
        qs[k] = np.float64(qa) * qs[k] + np.float64(qb) * C
    for j in range(C):
        row = xs[base + j * S:base + j * S + w]
        prow = ps[base + j * S:base + j * S + w]
        drow = ds[base + j * S:base + j * S + w]
        for k in range(w):
            e = exp_neg_zx(row[k] - mb[k]) * ib[k]
            drow[k] = st[k] * (e * K(e, qs[k]) - (qa * prow[k] + qb))


#: longest rows (classes) of a cross-entropy whose blocks of TWR samples
#: take their maxima and rest sums through a tile, float32 and float64.
#: The loss alone over index targets, 1M logits, Zen 5, against 4 rows at a
#: time in registers (_t_block_rest_short), us: float32 3 / 5 / 7 / 10 / 24
#: / 32 classes 2708 / 1628 / 1180 / 922 / 584 / 433 -> 1639 / 1091 / 925 /
#: 682 / 457 / 384 (16: the same); float64 3 / 5 / 7 / 10 3302 / 2023 /
#: 1455 / 1380 -> 2097 / 1625 / 1314 / 1222, but 16-32 1.13-1.16x slower.
#: On the Intel Xeon VM (2026-12-06) float64 11-16 classes gained too, ns a
#: logit, 240K logits: loss over 11 / 12 / 14 classes 2.01-2.06 / 1.84-1.89
#: / 1.62-1.64 -> 1.53-1.57 / 1.46-1.53 / 1.44-1.46, with the gradient
#: 3.73-3.97 / 3.50-3.63 / 3.02-3.08 -> 2.92-2.94 / 2.88-3.06 / 2.79-2.81,
#: probability targets with the gradient 4.03-4.12 / 3.68-3.71 / 3.22-3.23
#: -> 2.94-3.05 / 2.80-2.94 / 2.82-2.95; 16 classes the same in the caches
#: (index gradient 2.65-2.74 -> 2.78-2.87) and faster past them (4M logits:
#: 3.74-3.79 -> 3.18-3.51); Zen 5 was not measured again.
_CE_TILE32 = 32
_CE_TILE64 = 16
#: and whose gradients are computed there too, float32 (float64: all of
#: _CE_TILE64), then go back into the rows (scalar moves up to SMALL_TILE
#: classes, then the transposes).  1M logits, Zen 5, loss and gradient of
#: index targets, us: float32 3 / 5 / 6 / 7 classes 4200-4251 / 2604-2679 /
#: 2254-2277 / 1967-1976 -> 2631-2661 / 1970-2164 / 1795-1848 / 1736-1763;
#: float64 6891-7035 / 4420-4441 / 3772-3786 / 3289-3300 -> 3391-3519 /
#: 2836-2884 / 2627-2659 / 2502-2555.  Through the transposes, against a
#: masked vector per sample (the gather-free tile functions): float32 8 / 10
#: / 16 classes 1790 / 1496-1659 / 1044-1059 -> 1129-1253 / 980-1061 /
#: 859-931 (probability targets 2383-2539 / 2124-2331 / 1153-1190 ->
#: 1931-2026 / 1230-1484 / 1047-1198), 16M logits 40060-41140 / - /
#: 26804-27099 -> 31661-32590 / - / 25493-25576; float64 8M logits, 8 / 10
#: classes 34657-35858 / 29545-29726 -> 29878-31159 / 27399-29257; float32
#: 32 classes 5% slower past the caches
_CE_GRAD_TILE32 = 16


#: the narrowest inner axis whose samples go side by side along it
#: (_ce_lanes) rather than one at a time, gathered into a row, by itemsize.
#: 1M logits, 10 classes, loss / with the gradient (index targets), us:
#: float32 inner 2 6454 / 7423 -> 8387 / 11690, 3 6451 / 7439 -> 6931 /
#: 9895, 4 6451 / 7394 -> 3838 / 6793, 100 6389 / 7273 -> 567 / 1028;
#: float64 4 6883 / 8254 -> 7366 / 11155, 6 6817 / 8118 -> 6481 / 10456, 8
#: 6792 / 8164 -> 2554 / 3357, 100 6705 / 9236 -> 1007 / 1695; float32 over
#: 3 classes, inner 8 17782 / 20146 -> 4504 / 5135, 16384 13369 / 15138 ->
#: 674 / 1026
_CE_LANES_MIN = {4: 4, 8: 8}


@njit(**_HLP)
def _ce_q(lf, eps, C, index):
    """(qa, qb): q = qa p + qb, or qa at the target class and qb elsewhere."""
    always_inline()
    qb = KA(lf, eps / C) if eps != 0.0 else KA(lf, 0.0)
    return (KA(lf, 1.0 - eps) + qb if index else KA(lf, 1.0 - eps)), qb


@njit(**_NONRT)
def _ce_lanes(xf, tf, pf, sf, lf, df, C, inner, s0, s1, ignore_index, eps, grad, index, buf):
    """_ce_run for inner >= _CE_LANES_MIN (buf unused): up to TW
    consecutive samples of one outer index at a time, side by side along
    inner, through the lane functions with stride inner.  A compiled
    function of its own: a call on rows (inner 1) does not compile it."""
    never_inline()
    wide()
    z = KA(lf, 0.0)
    qa, qb = _ce_q(lf, eps, C, index)
    mb = stack_array(256, z)  # TW
    lb = stack_array(256, z)
    ib = stack_array(256, z)
    lp = stack_array(256, z)
    lc = stack_array(256, z)
    rk = stack_array(256, 0.0)
    ck = stack_array(256, 0.0)
    s = s0
    while s < s1:
        o = s // inner
        k0 = s - o * inner
        w = min(TW, inner - k0, s1 - s)
        base = o * C * inner + k0
        _lane_block_rest(xf, base, w, C, inner, mb, lb, ib, rk, ck, lp, lc)
        for k in range(w):
            if not _finite(mb[k]):  # as _ce_nonfinite (a NaN lane's max is NaN already)
                lb[k], ib[k] = K(mb[k], 0.0), K(mb[k], math.nan)
        tt = tf[s:s + w] if index else tf[:0]
        _ce_loss_lanes(xf, pf, base, inner, w, tt, lf[s:s + w], C, mb, lb, qa, qb, ignore_index, index, ck, lp)
        if grad:
            if index:
                _ce_grad_lanes(xf, df, base, inner, w, tt, sf[s:s + w], C, mb, ib, qa, qb, ignore_index)
            else:
                _ce_prob_grad_lanes(xf, pf, df, base, inner, w, sf[s:s + w], C, mb, ib, qa, qb, rk)
        s += w


@njit(**_NONRT)
def _ce_run(xf, tf, pf, sf, lf, df, C, inner, s0, s1, ignore_index, eps, grad, index, buf):
    """Samples s0..s1 of an (outer, C, inner) problem, C >= 1: class-index
    targets tf if index, else probabilities pf (the other one is not read);
    buf: 3 C elements of scratch (1 < inner < _CE_LANES_MIN)."""
    never_inline()
    wide()
    z = KA(lf, 0.0)
    qa, qb = _ce_q(lf, eps, C, index)
    if inner == 1 and C <= TINY:
        mb = stack_array(64, z)
        lb = stack_array(64, z)
        ib = stack_array(64, z)
        tb = stack_array(2048, z)  # TWR x _CE_TILE32
        pt = stack_array(2048, z)  # their target probabilities
        rk = stack_array(64, 0.0)
        ck = stack_array(64, 0.0)
        lp = stack_array(64, z)  # the lanes' partial sums (_lane_rest)
        lc = stack_array(64, z)
        tiled = C <= (_CE_TILE32 if is_f32(xf) else _CE_TILE64)
        # the next block's rows prefetched past the caches (_far): samples
        # of up to 128 bytes waited on memory (16M float32 logits, 10
        # classes: the loss 1.9x, 8.6 ms in the caches per 16M, 17.1 ms
        # past them -> 8.2-8.6 prefetched); longer ones, which the hardware
        # prefetcher follows, took 1.05-1.45x as long with it (float64 32
        # classes, float32 48-64)
        ahead = C <= (32 if is_f32(xf) else 16)
        for b0 in range(s0, s1, _RB):
            b1 = min(b0 + _RB, s1)
            if ahead:
                cnt = min(_RB, s1 - b1) * C
                _ahead(xf, b1 * C, cnt, False)
                if not index:
                    _ahead(pf, b1 * C, cnt, False)
                if grad:
                    _ahead(df, b1 * C, cnt, True)
            whole = tiled and b1 - b0 == TWR
            if whole:
                _t_block_rest_tile(xf, C, b0, tb, mb, lb, ib, rk, ck, lp, lc)
            elif C <= VL:
                _t_block_rest_short(xf, C, b0, b1, mb, lb, ib)
            else:
                _t_block_rest(xf, C, b0, b1, mb, lb, ib)
            for i in range(b1 - b0):
                if not _finite(mb[i]):
                    mb[i], lb[i], ib[i] = _ce_nonfinite(xf, (b0 + i) * C, C, mb[i])
            tt = tf[b0:b0 + TWR] if index else tf[:0]
            if whole:
                if not index:
                    _tile_in(pf, b0, C, pt)
                _ce_loss_lanes(tb, pt, 0, TWR, TWR, tt, lf[b0:b0 + TWR], C, mb, lb, qa, qb, ignore_index, index,
                               ck, lp)
            else:
                for s in range(b0, b1):
                    lf[s] = _ce_loss(xf, tf, pf, s, s * C, C, mb[s - b0], lb[s - b0], qa, qb, ignore_index, index)
            if grad and whole and C <= (_CE_GRAD_TILE32 if is_f32(xf) else _CE_TILE64):
                if index:
                    _ce_grad_lanes(tb, tb, 0, TWR, TWR, tt, sf[b0:b0 + TWR], C, mb, ib, qa, qb, ignore_index)
                else:
                    _ce_prob_grad_lanes(tb, pt, tb, 0, TWR, TWR, sf[b0:b0 + TWR], C, mb, ib, qa, qb, rk)
                _tile_out(tb, b0, C, df)
            elif grad:
                for s in range(b0, b1):
                    _ce_grad(xf, tf, pf, sf, df, s, s * C, C, mb[s - b0], ib[s - b0], qa, qb, ignore_index, index)
    elif inner == 1:
        for s in range(s0, s1):
            m, L, inv = _ce_stats(xf, s * C, C)
            lf[s] = _ce_loss(xf, tf, pf, s, s * C, C, m, L, qa, qb, ignore_index, index)
            if grad:
                _ce_grad(xf, tf, pf, sf, df, s, s * C, C, m, inv, qa, qb, ignore_index, index)
    else:
        xr = buf[:C]
        pr = buf[C:2 * C]
        dr = buf[2 * C:3 * C]
        for s in range(s0, s1):
            o = s // inner
            base = o * C * inner + (s - o * inner)
            for c in range(C):
                xr[c] = xf[base + c * inner]
            if not index:
                for c in range(C):
                    pr[c] = pf[base + c * inner]
            m, L, inv = _ce_stats(xr, 0, C)
            lf[s] = _ce_loss(xr, tf, pr, s, 0, C, m, L, qa, qb, ignore_index, index)
            if grad:
                _ce_grad(xr, tf, pr, sf, dr, s, 0, C, m, inv, qa, qb, ignore_index, index)
                for c in range(C):
                    df[base + c * inner] = dr[c]


@njit(**_PAR)
def _p_ce(xf, tf, pf, sf, lf, df, C, inner, ignore_index, eps, grad, index, buf, nt):
    nt = min(nt, buf.shape[0])  # one scratch row per chunk (the count may have changed since)
    S = lf.size
    for c in prange(nt):
        _ce_run(xf, tf, pf, sf, lf, df, C, inner, c * S // nt, (c + 1) * S // nt, ignore_index, eps, grad, index,
                buf[c])


@njit(**_PAR)
def _p_ce_lanes(xf, tf, pf, sf, lf, df, C, inner, ignore_index, eps, grad, index, buf, nt):
    nt = min(nt, buf.shape[0])
    S = lf.size
    for c in prange(nt):
        _ce_lanes(xf, tf, pf, sf, lf, df, C, inner, c * S // nt, (c + 1) * S // nt, ignore_index, eps, grad, index,
                  buf[c])


# ---------------------------------------------------------------------------
# the kernels: thin Python functions that run the serial compiled function,
# or its parallel version when the work is large enough, fastact's thread
# count is above 1 and no other Python thread is in a parallel kernel (one
# parallel region at a time: no oversubscription, and safe with Numba's
# workqueue threading layer, which does not support concurrent regions).

#: fastact's thread count (set through set_num_threads, clamped to Numba's pool)
_NT = [1]
_PLOCK = threading.Lock()


class _Alias:
    """Holds an ``__array_interface__`` for ``_rw``."""

    __slots__ = ("__array_interface__", "base")


def _rw(a):
    """``a`` when it is writeable, else an alias of its memory flagged
    writeable.  Numba types a read-only array as a type of its own, so every
    kernel would be compiled (1-7 s, then cached) a second time for
    read-only inputs, with the same machine code.  The kernels never write
    an input (``out`` is never read-only: the dispatch rejects that), so the
    alias is only a typing device; the drivers apply it to inputs only."""
    if a.flags.writeable:
        return a
    h = _Alias()
    face = dict(a.__array_interface__)
    face["data"] = (face["data"][0], False)
    h.__array_interface__, h.base = face, a
    return np.asarray(h)


def _drop_inner(arrays):
    """The arrays of an inner == 1 call without their last (unit) axis: the
    2-D form the inner == 1 paths are compiled for (see _rows1)."""
    return [a.reshape(a.shape[:-1]) for a in arrays]


def set_num_threads(n: int) -> None:
    """Hook called by ``fastact.set_num_threads`` (and when the backend loads)."""
    _NT[0] = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


def _parallel(par, args) -> bool:
    """``par(*args, nt)`` on fastact's thread count; False if another thread
    holds the parallel region (the caller then runs serially)."""
    if not _PLOCK.acquire(False):
        return False
    try:
        nt = _NT[0]
        # numba's thread count is per Python thread: set it for this call
        prev = numba.get_num_threads()
        numba.set_num_threads(nt)
        try:
            par(*args, nt)
        finally:
            numba.set_num_threads(prev)
    finally:
        _PLOCK.release()
    return True


def _serial_below(cost_ns):
    """Array size in bytes below which a kernel costing ``cost_ns`` per
    float32 element runs serially (float64 elements cost about twice as
    much, as they are twice the bytes)."""
    return PAR_NS / cost_ns * 4


# Elementwise wrappers, with and without scalar parameters: one wrapper
# taking ``*p`` for both would cost ~120 ns more per call without parameters
# (measured against the (64, 10) call budget of ~2 us)
def _ew1(run, par, cost):
    limit = _serial_below(cost)

    def kernel(x, out):
        if not x.flags.writeable:
            x = _rw(x)
        if x.ndim != 1:  # any shape, as flat (see _registry); the jitted code is 1-D
            x, out = x.reshape(-1), out.reshape(-1)
        if x.nbytes < limit or _NT[0] < 2 or not _parallel(par, (x, out)):
            run(x, out)

    return kernel


def _ew1p(run, par, cost):
    limit = _serial_below(cost)

    def kernel(x, out, *p):
        if not x.flags.writeable:
            x = _rw(x)
        if x.ndim != 1:
            x, out = x.reshape(-1), out.reshape(-1)
        if x.nbytes < limit or _NT[0] < 2 or not _parallel(par, (x, out) + p):
            run(x, out, *p)

    return kernel


def _ew2(run, par, cost):
    limit = _serial_below(cost)

    def kernel(a, b, out):
        if not (a.flags.writeable and b.flags.writeable):
            a, b = _rw(a), _rw(b)
        if out.ndim != 1:
            a, b, out = a.reshape(-1), b.reshape(-1), out.reshape(-1)
        if out.nbytes < limit or _NT[0] < 2 or not _parallel(par, (a, b, out)):
            run(a, b, out)

    return kernel


def _ew2p(run, par, cost):
    limit = _serial_below(cost)

    def kernel(a, b, out, *p):
        if not (a.flags.writeable and b.flags.writeable):
            a, b = _rw(a), _rw(b)
        if out.ndim != 1:
            a, b, out = a.reshape(-1), b.reshape(-1), out.reshape(-1)
        if out.nbytes < limit or _NT[0] < 2 or not _parallel(par, (a, b, out) + p):
            run(a, b, out, *p)

    return kernel


def _paths(name):
    """The serial and parallel compiled functions of row kernel ``name``:
    rows of <= TINY elements without and with the float32 tiles (the same
    function if the kernel has no tiles), longer rows (all on (outer, n)
    arrays), and inner > 1 (on (outer, n, inner) arrays)."""
    g = globals()
    rt = g["_rt_" + name]
    return (rt, g.get("_rtt_" + name, rt)) + tuple(
        g[p + name] for p in ("_rl_", "_lanes_", "_prt_", "_prl_", "_pl_"))


# The tile path of short rows (_tiled_*) takes whole tiles of TWR
# rows, so an array of fewer rows never runs it; its code is then left out:
# _rt_* has no tiles and _rtt_* has them, used from TWR rows on.  The tile
# code is most of a short-row kernel's first compilation (float32, empty
# cache: softmax 2.4-2.8 s with it, 0.9-1.0 s without; log_softmax 3.4-4.0 /
# 1.5 s; log_softmax_backward 1.8-2.2 / 0.2-0.3 s).


# The row drivers hand inner == 1 work over as (outer, n) arrays (the 2-D
# form of _registry, dropping a unit inner axis), so that each path is
# compiled for one array rank; rows of <= TINY elements and longer ones are
# separate compiled functions, so a first call compiles only the one it uses.

#: longest rows (entries) a row kernel takes through its short-row path, by
#: (kernel, itemsize): up to the rows the register pieces hold (vrowp_*,
#: PIECES_FWD / PIECES_BWD), past which the long-row path (vsum_* /
#: vmap_*) takes over.  Against the long-row path and the pieces of 16
#: lanes each with its own horizontal sum they replaced, see
#: docs/benchmarks.md (2026-12-06).
_SHORT_ROWS = {**{(k, 4): 16 * PIECES_FWD for k in ("softmax", "log_softmax", "logsumexp")},
               **{(k, 8): 8 * PIECES_FWD for k in ("softmax", "log_softmax", "logsumexp")},
               ("softmax_backward", 4): 16 * PIECES_BWD, ("softmax_backward", 8): 8 * PIECES_BWD,
               ("log_softmax_backward", 4): 16 * PIECES_LSMBWD, ("log_softmax_backward", 8): 8 * PIECES_LSMBWD}


#: longest rows the tiles of a kernel take (_tiled_*), by itemsize
_TILE_MAX = {name: {4: _TILE_ROWS.get(name, 0), 8: _TILE_ROWS64.get(name, 0)}
             for name in ("softmax", "log_softmax", "logsumexp")}
_TILE_MAX["log_softmax_backward"] = {4: _LSMBWD_TILE_ROWS, 8: _LSMBWD_TILE_ROWS64}


def _takes_tiles(x, longest):
    """Whether the (outer, n) array x goes to the compiled function with
    the tiles (_rtt_*): a whole tile of rows (TWR) of at most
    ``longest[itemsize]`` entries.  Other rows go to one without the tile
    code, which is most of a first compilation (see above)."""
    return x.shape[0] >= TWR and x.shape[1] <= longest.get(x.itemsize, 0)


def _short_rows(name):
    """{itemsize: the longest rows of name's short-row path}."""
    return {size: _SHORT_ROWS.get((name, size), TINY) for size in (4, 8)}


def _rows1(name, cost):
    """Row kernel k(x, out), x (outer, n) or (outer, n, inner)."""
    rt, rtt, rl, lanes, prt, prl, plan = _paths(name)
    limit = _serial_below(cost)
    short = _short_rows(name)
    tiled = _TILE_MAX.get(name, {})

    def kernel(x, out):
        if not x.flags.writeable:
            x = _rw(x)
        if x.ndim == 3:
            if x.shape[2] != 1:
                if x.nbytes < limit or _NT[0] < 2 or not _parallel(plan, (x, out)):
                    lanes(x, out)
                return
            x, out = _drop_inner((x, out))
        if _takes_tiles(x, tiled):
            run, par = rtt, prt
        elif x.shape[1] <= short[x.itemsize]:
            run, par = rt, prt
        else:
            run, par = rl, prl
        if x.nbytes < limit or _NT[0] < 2 or not _parallel(par, (x, out)):
            run(x, out)

    return kernel


def _rows2(name, cost):
    """Row kernel k(g, y, out), all (outer, n) or (outer, n, inner)."""
    rt, rtt, rl, lanes, prt, prl, plan = _paths(name)
    limit = _serial_below(cost)
    short = _short_rows(name)
    tiled = _TILE_MAX.get(name, {})

    def kernel(g, y, out):
        if not (g.flags.writeable and y.flags.writeable):
            g, y = _rw(g), _rw(y)
        if y.ndim == 3:
            if y.shape[2] != 1:
                if y.nbytes < limit or _NT[0] < 2 or not _parallel(plan, (g, y, out)):
                    lanes(g, y, out)
                return
            g, y, out = _drop_inner((g, y, out))
        if _takes_tiles(y, tiled):
            run, par = rtt, prt
        elif y.shape[1] <= short[y.itemsize]:
            run, par = rt, prt
        else:
            run, par = rl, prl
        if y.nbytes < limit or _NT[0] < 2 or not _parallel(par, (g, y, out)):
            run(g, y, out)

    return kernel


def _named(k, name, doc):
    k.__name__ = k.__qualname__ = name
    k.__doc__ = doc
    return k


# cost in ns per float32 element, one thread, measured at 1M elements
# (tools/numba_threshold.py; python -m fastact bench), for the thread
# decision; every elementwise kernel of the registry has one
_EW_COST = {
    "sigmoid": 0.35, "log_sigmoid": 0.7, "logit": 0.9, "softplus": 0.8, "tanh": 0.33,
    "relu": 0.3, "leaky_relu": 0.3, "gelu": 0.75, "gelu_tanh": 0.45, "silu": 0.35,
    "sigmoid_backward": 0.45, "sigmoid_backward_x": 0.5, "tanh_backward_x": 0.5,
    "log_sigmoid_backward": 0.5, "logit_backward": 0.45, "softplus_backward": 0.55,
    "tanh_backward": 0.45, "relu_backward": 0.45, "leaky_relu_backward": 0.45,
    "gelu_backward": 1.0, "gelu_tanh_backward": 0.6, "silu_backward": 0.55,
    "bce_with_logits": 0.8, "bce_with_logits_backward": 0.5,
}

for _k in _registry.KERNELS.values():
    if _k.kind in ("elementwise", "elementwise_backward", "binary", "binary_backward"):
        _make = ((_ew1p if _k.params else _ew1) if _k.kind == "elementwise" else
                 (_ew2p if _k.params else _ew2))
        globals()[_k.name] = _named(
            _make(globals()["_e_" + _k.name], globals()["_p_" + _k.name], _EW_COST[_k.name]),
            _k.name, f"Kernel ``{_k.name}`` (see fastact._registry), float32 or float64.")

softmax = _named(_rows1("softmax", 0.42), "softmax", "Kernel ``softmax``: x, out (outer, n, inner).")
log_softmax = _named(_rows1("log_softmax", 0.7), "log_softmax",
                     "Kernel ``log_softmax``: x, out (outer, n, inner).")
logsumexp = _named(_rows1("logsumexp", 0.6), "logsumexp",
                   "Kernel ``logsumexp``: x (outer, n, inner), out (outer, inner).")
softmax_backward = _named(_rows2("softmax_backward", 0.45), "softmax_backward",
                          "Kernel ``softmax_backward``: grad, y, out (outer, n, inner).")
log_softmax_backward = _named(_rows2("log_softmax_backward", 0.55), "log_softmax_backward",
                              "Kernel ``log_softmax_backward``: grad, y, out (outer, n, inner).")
_logsumexp_rows = logsumexp


def logsumexp(x, out):  # noqa: F811 - an empty row gives -inf
    """Kernel ``logsumexp``: x (outer, n, inner), out (outer, inner)."""
    if x.shape[1] == 0:
        if out.size:
            out[...] = -np.inf
        return
    _logsumexp_rows(x, out)


_LSEB_LIMIT = _serial_below(0.5)


def logsumexp_backward(grad, x, lse, out):
    """Kernel ``logsumexp_backward``: grad, lse (outer, inner); x, out
    (outer, n, inner); or grad, lse (outer,) with x, out (outer, n)."""
    if not (grad.flags.writeable and x.flags.writeable and lse.flags.writeable):
        grad, x, lse = _rw(grad), _rw(x), _rw(lse)
    if x.ndim == 3 and x.shape[2] == 1:  # (as in _rows1)
        grad, x, lse, out = _drop_inner((grad, x, lse, out))
    rt, _, rl, lanes, prt, prl, plan = _LSEB_PATHS
    if x.ndim == 2:
        run, par = (rt, prt) if x.shape[1] <= TINY else (rl, prl)
    else:
        run, par = lanes, plan
    if x.nbytes < _LSEB_LIMIT or _NT[0] < 2 or not _parallel(par, (grad, x, lse, out)):
        run(grad, x, lse, out)


_LSEB_PATHS = _paths("logsumexp_backward")


_CE_LIMIT = _serial_below(2.0)
_CEG_LIMIT = _serial_below(3.0)
_NO_TARGET = np.zeros(1, np.intp)


def _cross_entropy(x, target, p, scale, loss, dx, ignore_index, label_smoothing):
    """The four cross-entropy kernels: index (target) or probability (p)
    targets, with the gradient when dx is given."""
    o, C, i = x.shape
    if loss.size == 0:
        return
    lf = loss.reshape(-1)
    tf = None if target is None else target.reshape(-1)
    if C == 0:  # an empty sum: -0.0 (0 for an ignored sample)
        lf[...] = -0.0
        if tf is not None:
            lf[tf == ignore_index] = 0.0
        return
    grad = dx is not None
    xf = _rw(x).reshape(-1)
    tf = None if tf is None else _rw(tf)
    p = None if p is None else _rw(p)
    scale = None if scale is None else _rw(scale)
    # arrays a call does not read are stand-ins of the right type
    args = (xf, _NO_TARGET if tf is None else tf, xf if p is None else p.reshape(-1),
            scale.reshape(-1) if grad else lf, lf, dx.reshape(-1) if grad else lf, C, i,
            int(ignore_index), float(label_smoothing), grad, tf is not None)
    lanes = i >= _CE_LANES_MIN[x.itemsize]
    run, par = (_ce_lanes, _p_ce_lanes) if lanes else (_ce_run, _p_ce)
    buf = np.empty((_NT[0], 3 * C if i > 1 and not lanes else 0), x.dtype)
    limit = _CEG_LIMIT if grad else _CE_LIMIT
    if x.nbytes < limit or _NT[0] < 2 or not _parallel(par, args + (buf,)):
        run(*args[:8], 0, lf.size, *args[8:], buf[0])


def cross_entropy_index(x, target, loss, ignore_index, label_smoothing):
    """Kernel ``cross_entropy_index`` (see fastact._registry)."""
    _cross_entropy(x, target, None, None, loss, None, ignore_index, label_smoothing)


def cross_entropy_index_grad(x, target, scale, loss, dx, ignore_index, label_smoothing):
    """Kernel ``cross_entropy_index_grad`` (see fastact._registry)."""
    _cross_entropy(x, target, None, scale, loss, dx, ignore_index, label_smoothing)


def cross_entropy_prob(x, p, loss, label_smoothing):
    """Kernel ``cross_entropy_prob`` (see fastact._registry)."""
    _cross_entropy(x, None, p, None, loss, None, -100, label_smoothing)


def cross_entropy_prob_grad(x, p, scale, loss, dx, label_smoothing):
    """Kernel ``cross_entropy_prob_grad`` (see fastact._registry)."""
    _cross_entropy(x, None, p, scale, loss, dx, -100, label_smoothing)


# ---------------------------------------------------------------------------
# filling the disk cache ahead of use (python -m fastact compile)

#: rows past every kernel's short-row path (_SHORT_ROWS)
_LONG = 16 * max(PIECES_FWD, PIECES_BWD) + 44

#: per registry kind, (shape, axis) of calls that between them reach every
#: serial compiled path: for the row kernels, short rows (fewer than TWR of
#: them, then a whole tile: the float32 tile path), long rows, inner > 1
_WARM_SERIAL = {
    "elementwise": [((16,), -1)],
    "rows": [((8, 10), -1), ((TWR, 10), -1), ((8, _LONG), -1), ((8, 10, 3), 1)],
    "loss": [((8, 10), -1), ((8, 10, 3), 1), ((8, 10, 8), 1)],
}
#: and the parallel versions: work above every kernel's serial limit
_WARM_PARALLEL = {
    "elementwise": [((1 << 22,), -1)],
    "rows": [((1 << 18, 10), -1), ((1 << 14, _LONG), -1), ((1 << 12, 10, 64), 1)],
    "loss": [((1 << 18, 10), -1), ((1 << 14, 10, 16), 1)],
}


def _warm_group(kind):
    if kind.startswith("rows"):
        return "rows"
    return "loss" if kind.startswith("loss") else "elementwise"


def precompile(kernels, dtypes, nthreads, progress=None):
    """Compile (or load from the cache) every path of ``kernels`` in
    ``dtypes`` -- the parallel versions too when ``nthreads`` > 1 -- by
    calling the public functions on small and large inputs, so that later
    processes find all of it in Numba's disk cache.  Returns the seconds
    spent per (kernel, dtype) and the thread count the parallel versions ran
    on (``nthreads`` within Numba's pool; 1: none compiled)."""
    import time

    import fastact
    from fastact import testing as ft

    seconds = {}
    used = 1
    prev = fastact.get_num_threads()
    try:
        with fastact.use_backend("numba"):
            for kernel in kernels:
                group = _warm_group(_registry.KERNELS[kernel].kind)
                for dtype in dtypes:
                    if progress:
                        progress(kernel, dtype)
                    t0 = time.perf_counter()
                    fastact.set_num_threads(1)
                    for shape, axis in _WARM_SERIAL[group]:
                        ft.run(ft.case(kernel, shape, dtype, axis))
                    fastact.set_num_threads(nthreads)
                    used = _NT[0]
                    if used > 1:
                        for shape, axis in _WARM_PARALLEL[group]:
                            ft.run(ft.case(kernel, shape, dtype, axis))
                    seconds[kernel, np.dtype(dtype).name] = time.perf_counter() - t0
    finally:
        fastact.set_num_threads(prev)
    return seconds, used
