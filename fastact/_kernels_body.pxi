# The kernels of the "cython" backend, written once over the fused type
# `real` (float32 and float64 each get their own native code path).
#
# This file is `include`d by three extension modules that differ only in the
# instruction set they are compiled for:
#
#   fastact._kernels             x86-64 baseline (SSE2) -- or the default
#                                target of any other architecture
#   fastact._kernels_x86_64_v3   -march=x86-64-v3 (AVX2 + FMA)
#   fastact._kernels_x86_64_v4   -march=x86-64-v4 (AVX-512)
#
# `fastact._kernels` detects the CPU at import and takes the table of kernel
# pointers (FaTable, filled by `_fill_table` below) from the best variant
# that imports.  Everything here is `nogil` and `noexcept`: a kernel never
# raises, never allocates on the heap and never touches the floating-point
# environment.
#
# How it vectorizes: the scalar math is a set of `cdef inline` functions with
# no branches that the compiler cannot turn into selects (range reduction by
# the 1.5*2^p "magic" rounding, 2^n built from integer bits, no float->int
# conversion at all), so that GCC turns every loop around them into SIMD code
# of the target's width.  Reductions keep NL (or up to LMAX) partial results
# in small local arrays, which vectorizes without any reassociation flag:
# the build never uses -ffast-math.
#
# Layout contract (see fastact._registry): row kernels get (outer, n, inner)
# C-contiguous arrays.  The entry points below take (outer, n, ni, st): ni
# lanes of the inner axis starting at the given pointers, with st (= inner)
# between consecutive elements of a row, so that the caller may split the
# inner axis between threads.  st == 1 means inner == 1 (rows are contiguous).

from libc.stdint cimport uint32_t, uint64_t
from libc.math cimport INFINITY, NAN, copysign, copysignf
from numpy cimport npy_intp

cdef extern from "fa_support.h" nogil:
    uint32_t fa_f32_bits(float x) noexcept
    float fa_bits_f32(uint32_t u) noexcept
    uint64_t fa_f64_bits(double x) noexcept
    double fa_bits_f64(uint64_t u) noexcept
    float fa_relu_bwd_f32(float g, float x) noexcept
    double fa_relu_bwd_f64(double g, double x) noexcept
    float fa_two_prod_lo_f32(float a, float b, float hi) noexcept
    double fa_two_prod_lo_f64(double a, double b, double hi) noexcept
    int fa_cpu_level() noexcept
    int fa_have_openmp() noexcept
    int fa_omp_max_threads() noexcept
    int fa_omp_team_size() noexcept
    double fa_wtime() noexcept
    void fa_prefetch_range(const void* p, Py_ssize_t nbytes) noexcept
    void fa_prefetchw_range(void* p, Py_ssize_t nbytes) noexcept
    float fa_rowdot_f32(const float* a, const float* b, Py_ssize_t n) noexcept
    double fa_rowdot_f64(const double* a, const double* b, Py_ssize_t n) noexcept
    float fa_rowmax_f32(const float* a, Py_ssize_t n) noexcept
    double fa_rowmax_f64(const double* a, Py_ssize_t n) noexcept
    float fa_rowsum_f32(const float* a, Py_ssize_t n) noexcept
    double fa_rowsum_f64(const double* a, Py_ssize_t n) noexcept
    void fa_rowsub_f32(const float* a, float c, float* out, Py_ssize_t n) noexcept
    void fa_rowsub_f64(const double* a, double c, double* out, Py_ssize_t n) noexcept
    void fa_tile_f32(const float* src, float* dst, Py_ssize_t n, Py_ssize_t R, Py_ssize_t ts,
                     int to_tile) noexcept
    int FA_HAVE_FMA
    int FA_VEC_BYTES
    const float FA_EXP32_LOG2E, FA_EXP32_MAGIC, FA_LN2HI_F32, FA_LN2LO_F32
    const float FA_EXP32_C0, FA_EXP32_C1, FA_EXP32_C2, FA_EXP32_C3, FA_EXP32_C4
    const double FA_EXP64_LOG2E, FA_EXP64_MAGIC, FA_LN2HI_F64, FA_LN2LO_F64
    const double FA_EXP64_C0, FA_EXP64_C1, FA_EXP64_C2, FA_EXP64_C3, FA_EXP64_C4
    const double FA_EXP64_C5, FA_EXP64_C6, FA_EXP64_C7, FA_EXP64_C8, FA_EXP64_C9
    const float FA_EXP32_LO, FA_EXP32_HI, FA_EXP32_ZERO
    const double FA_EXP64_LO, FA_EXP64_HI, FA_EXP64_ZERO
    int FA_TILE_SIMD
    int FA_PACK
    int FA_PACK_MAX_BYTES
    int FA_MASKED_ROWS
    int FA_SCALEF
    void fa_exp_row_f32(int op, const float* a, const float* b, float* out, Py_ssize_t n, float c,
                        float d) noexcept
    void fa_exp_row_f64(int op, const double* a, const double* b, double* out, Py_ssize_t n,
                        double c, double d) noexcept
    void fa_pack_f32(int op, const float* a, const float* b, float* out, Py_ssize_t len, int n) noexcept
    void fa_pack_f64(int op, const double* a, const double* b, double* out, Py_ssize_t len,
                     int n) noexcept
    void fa_pack_mid_f32(int op, const float* a, const float* b, float* out, Py_ssize_t len,
                         int n) noexcept
    void fa_pack_mid_f64(int op, const double* a, const double* b, double* out, Py_ssize_t len,
                         int n) noexcept
    ctypedef void (*fa_rows_f32)(const float*, const float*, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    ctypedef void (*fa_rows_f64)(const double*, const double*, double*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void fa_outline_f32(fa_rows_f32 f, const float* a, const float* b, float* out, Py_ssize_t rows,
                        Py_ssize_t n) noexcept
    void fa_outline_f64(fa_rows_f64 f, const double* a, const double* b, double* out, Py_ssize_t rows,
                        Py_ssize_t n) noexcept

ctypedef fused real:
    float
    double

# sums are accumulated in double for both dtypes
ctypedef double acc_t


# ===========================================================================
# scalar math
#
# Polynomial coefficients were fitted for fastact (weighted Remez exchange in
# mpmath, relative error); the measured errors of the complete functions, in
# units in the last place, are in tests/test_cython_backend.py and the
# backend's report.


# ---- exp -------------------------------------------------------------------
# x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, n rounded with the 1.5*2^p trick,
# whose low mantissa bits are then n itself); exp(r) = 1 + r + r^2 P(r).
# The constants are fa_support.h's FA_EXP32_* / FA_EXP64_* (its vector exp
# uses the same), the reduction and polynomial _expm1r_*, once per type; the
# exps below differ only in their clamps and in how 2^n is applied.

cdef inline (float, float) _expm1r_f32(float x) noexcept nogil:
    # (exp(r) - 1 = r + r^2 P(r), t): x = n ln2 + r, n in t's low bits
    cdef float t, kf, r, p
    t = x * FA_EXP32_LOG2E + FA_EXP32_MAGIC
    kf = t - FA_EXP32_MAGIC
    r = x - kf * FA_LN2HI_F32
    r = r - kf * FA_LN2LO_F32
    p = FA_EXP32_C3 + r * FA_EXP32_C4
    p = FA_EXP32_C2 + r * p
    p = FA_EXP32_C1 + r * p
    p = FA_EXP32_C0 + r * p
    return r + r * r * p, t


cdef inline (double, double) _expm1r_f64(double x) noexcept nogil:
    cdef double t, kf, r, p, r2
    t = x * FA_EXP64_LOG2E + FA_EXP64_MAGIC
    kf = t - FA_EXP64_MAGIC
    r = x - kf * FA_LN2HI_F64
    r = r - kf * FA_LN2LO_F64
    r2 = r * r
    # Estrin-like split of the degree-9 polynomial: shorter dependency chain
    p = ((FA_EXP64_C0 + r * FA_EXP64_C1) + r2 * (FA_EXP64_C2 + r * FA_EXP64_C3)) + (r2 * r2) * (
        ((FA_EXP64_C4 + r * FA_EXP64_C5) + r2 * (FA_EXP64_C6 + r * FA_EXP64_C7))
        + (r2 * r2) * (FA_EXP64_C8 + r * FA_EXP64_C9))
    return r + r2 * p, t


# exp for any x: 2^n applied as two factors 2^n1 * 2^n2 (n1 = floor(n/2))
# so that the result underflows gradually into subnormals with a single
# rounding and overflows to inf.  x is clamped above first (NaN passes the
# clamp untouched).  Below FA_EXP*_ZERO, where the result rounds to 0, it is
# computed as exp(0) and replaced by 0: reached through an underflow, 0
# costs a ~150-cycle assist for the whole vector on Intel cores
# (fa_support.h); the vectorized loops compute both sides of the select.

cdef inline float exp_f32(float x) noexcept nogil:
    cdef float hi = FA_EXP32_HI, one = 1.0
    cdef float q, t
    cdef uint32_t ub, h
    cdef bint zero = x < FA_EXP32_ZERO
    x = 0 if zero else x
    x = hi if x > hi else x
    q, t = _expm1r_f32(x)
    ub = fa_f32_bits(t) - (0x4B400000U - 160U)        # n + 160 >= 0
    h = ub >> 1                                        # n1 + 80
    q = ((one + q) * fa_bits_f32((h + (127U - 80U)) << 23)) * fa_bits_f32((ub - h + (127U - 80U)) << 23)
    return 0 if zero else q


cdef inline double exp_f64(double x) noexcept nogil:
    cdef double hi = FA_EXP64_HI, one = 1.0
    cdef double q, t
    cdef uint64_t ub, h
    cdef bint zero = x < FA_EXP64_ZERO
    x = 0 if zero else x
    x = hi if x > hi else x
    q, t = _expm1r_f64(x)
    ub = fa_f64_bits(t) - (0x4338000000000000ULL - 1100ULL)
    h = ub >> 1
    q = ((one + q) * fa_bits_f64((h + (1023ULL - 550ULL)) << 52)) * fa_bits_f64((ub - h + (1023ULL - 550ULL)) << 52)
    return 0 if zero else q


# exp for x <= 0 (or NaN) only -- every exp in the row kernels and the
# activations is of a non-positive argument (x - max, -|x|, -x^2): no upper
# clamp, and 2^n (n in [-150, 0]) applied as one factor 2^(n+64) and a
# constant 2^-64, which still rounds once into the subnormal range.

cdef inline float expn_f32(float x) noexcept nogil:
    return expn_big_f32(x) * <float>5.421010862427522e-20     # 2^-64


cdef inline float expn_big_f32(float x) noexcept nogil:
    # exp(x) * 2^64, a normal number for every x <= 0: expn_f32 without its
    # last factor
    # (0 where exp(x) rounds to 0, computed as exp(0) like exp_f32's: the
    # vectorized loops compute both sides of the select, and the callers'
    # products by 2^-64 may be moved into it)
    cdef float one = 1.0
    cdef float q, t
    cdef bint zero = x < FA_EXP32_ZERO
    q, t = _expm1r_f32(0 if zero else x)
    q = (one + q) * fa_bits_f32((fa_f32_bits(t) - (0x4B400000U - 191U)) << 23)
    return 0 if zero else q


cdef inline double expn_f64(double x) noexcept nogil:
    return expn_big_f64(x) * 2.409919865102884e-181     # 2^-600


cdef inline double expn_big_f64(double x) noexcept nogil:
    # exp(x) * 2^600, normal for every x <= 0
    cdef double one = 1.0
    cdef double q, t
    cdef bint zero = x < FA_EXP64_ZERO
    q, t = _expm1r_f64(0 if zero else x)
    q = (one + q) * fa_bits_f64((fa_f64_bits(t) - (0x4338000000000000ULL - 1623ULL)) << 52)
    return 0 if zero else q


# ---- expm1 for x <= 0 (tanh) ------------------------------------------------
# expm1(x) = 2^n expm1(r) + (2^n - 1); exact for n == 0 (small |x|), and no
# harmful cancellation for n < 0.  x is clamped at a value where the result
# is -1 in the working precision.

cdef inline float expm1n_f32(float x) noexcept nogil:
    cdef float lo = -20.0, one = 1.0
    cdef float q, t, sc
    x = lo if x < lo else x
    q, t = _expm1r_f32(x)
    sc = fa_bits_f32((fa_f32_bits(t) - (0x4B400000U - 127U)) << 23)
    return sc * q + (sc - one)


cdef inline double expm1n_f64(double x) noexcept nogil:
    cdef double lo = -40.0, one = 1.0
    cdef double q, t, sc
    x = lo if x < lo else x
    q, t = _expm1r_f64(x)
    sc = fa_bits_f64((fa_f64_bits(t) - (0x4338000000000000ULL - 1023ULL)) << 52)
    return sc * q + (sc - one)


# ---- log ---------------------------------------------------------------------
# log(1 + f) = 2 atanh(s), s = f / (2 + f), evaluated as
# f - (f^2/2 - s (f^2/2 + T(s^2))) with T(z) = z U(z) a fitted polynomial.
#
# log1p01: u in [0, 1] only (softplus & co: u = exp(-|x|)); f = u exactly,
# no range reduction.
#
# _logc: log(w) + c/w for a positive normal finite w: w = 2^k m with
# m in [sqrt(1/2), sqrt(2)) by integer arithmetic on the bits; k is turned
# into a float by the 2^p trick (no int->float conversion needed).

cdef inline float log1p01_f32(float u) noexcept nogil:
    cdef float c0 = 0.66666413132732578575, c1 = 0.400216990582231674807
    cdef float c2 = 0.279991410895086054312, c3 = 0.28024458792490232821
    cdef float half = 0.5, two = 2.0
    cdef float s, z, hf, R
    s = u / (two + u)
    z = s * s
    hf = half * u * u
    R = z * (c0 + z * (c1 + z * (c2 + z * c3)))
    return u - (hf - s * (hf + R))


cdef inline double log1p01_f64(double u) noexcept nogil:
    cdef double c0 = 0.666666666666663037971, c1 = 0.40000000000157244514
    cdef double c2 = 0.285714285478536920594, c3 = 0.222222239697419881025
    cdef double c4 = 0.181817439245675965119, c5 = 0.153865599302846228286
    cdef double c6 = 0.133009734965683710497, c7 = 0.12106086921061411632
    cdef double c8 = 0.0834009877232041985598, c9 = 0.170185800640972266697
    cdef double half = 0.5, two = 2.0
    cdef double s, z, z2, hf, R
    s = u / (two + u)
    z = s * s
    z2 = z * z
    hf = half * u * u
    R = ((c0 + z * c1) + z2 * (c2 + z * c3)) + (z2 * z2) * (
        ((c4 + z * c5) + z2 * (c6 + z * c7)) + (z2 * z2) * (c8 + z * c9))
    return u - (hf - s * (hf + z * R))


cdef inline float _logc_f32(float w, float c, float kadj, bint withc) noexcept nogil:
    cdef float c0 = 0.666667763816206211726, c1 = 0.399775415756274935446
    cdef float c2 = 0.29871727757224303116
    cdef float l2h = FA_LN2HI_F32, l2l = FA_LN2LO_F32
    cdef float half = 0.5, one = 1.0, two = 2.0
    cdef float k, m, f, s, z, hf, R, lo
    cdef uint32_t ix = fa_f32_bits(w) + (0x3F800000U - 0x3F3504F3U)
    k = fa_bits_f32((ix >> 23) | 0x4B000000U) - <float>(8388608.0 + 127.0) + kadj
    m = fa_bits_f32((ix & 0x007FFFFFU) + 0x3F3504F3U)
    f = m - one
    hf = half * f * f
    s = f / (two + f)
    z = s * s
    R = z * (c0 + z * (c1 + z * c2))
    lo = k * l2l
    if withc:
        lo = lo + c / w
    return k * l2h + (f - (hf - (s * (hf + R) + lo)))


cdef inline double _logc_f64(double w, double c, double kadj, bint withc) noexcept nogil:
    cdef double c0 = 0.666666666666673441223, c1 = 0.399999999994146783579
    cdef double c2 = 0.285714287423876227286, c3 = 0.222221985731845247926
    cdef double c4 = 0.181835643261196752288, c5 = 0.15314050552112713639
    cdef double c6 = 0.147959497005828582737
    cdef double l2h = FA_LN2HI_F64, l2l = FA_LN2LO_F64
    cdef double half = 0.5, one = 1.0, two = 2.0
    cdef double k, m, f, s, z, z2, hf, R, lo
    cdef uint64_t ix = fa_f64_bits(w) + (0x3FF0000000000000ULL - 0x3FE6A09E667F3BCDULL)
    k = fa_bits_f64((ix >> 52) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0) + kadj
    m = fa_bits_f64((ix & 0x000FFFFFFFFFFFFFULL) + 0x3FE6A09E667F3BCDULL)
    f = m - one
    hf = half * f * f
    s = f / (two + f)
    z = s * s
    z2 = z * z
    R = z * (((c0 + z * c1) + z2 * (c2 + z * c3)) + (z2 * z2) * ((c4 + z * c5) + z2 * c6))
    lo = k * l2l
    if withc:
        lo = lo + c / w
    return k * l2h + (f - (hf - (s * (hf + R) + lo)))


cdef inline float log_f32(float x) noexcept nogil:
    cdef float tiny = 1.17549435e-38, big = 33554432.0, zero = 0.0
    cdef float inf = INFINITY
    cdef bint sub = x < tiny
    cdef float r = _logc_f32(x * big if sub else x, zero, <float>-25.0 if sub else zero, False)
    r = r if x < inf else x          # +inf and NaN
    r = -inf if x == zero else r
    return <float>NAN if x < zero else r


cdef inline double log_f64(double x) noexcept nogil:
    cdef double tiny = 2.2250738585072014e-308, big = 18014398509481984.0, zero = 0.0
    cdef double inf = INFINITY
    cdef bint sub = x < tiny
    cdef double r = _logc_f64(x * big if sub else x, zero, -54.0 if sub else zero, False)
    r = r if x < inf else x
    r = -inf if x == zero else r
    return NAN if x < zero else r


cdef inline float log1p_f32(float u) noexcept nogil:
    # w + c == 1 + u exactly (TwoSum)
    cdef float one = 1.0, zero = 0.0, inf = INFINITY
    cdef float w = one + u
    cdef float bv = w - one
    cdef float av = w - bv
    cdef float c = (one - av) + (u - bv)
    cdef float r = _logc_f32(w, c, zero, True)
    r = r if u < inf else u
    r = -inf if w == zero else r
    return <float>NAN if u < -one else r


cdef inline double log1p_f64(double u) noexcept nogil:
    cdef double one = 1.0, zero = 0.0, inf = INFINITY
    cdef double w = one + u
    cdef double bv = w - one
    cdef double av = w - bv
    cdef double c = (one - av) + (u - bv)
    cdef double r = _logc_f64(w, c, zero, True)
    r = r if u < inf else u
    r = -inf if w == zero else r
    return NAN if u < -one else r


# ---- erfc for a >= 0 (GELU) ---------------------------------------------------
# erfc(a) = exp(-a^2) * erfcx(a), and erfcx(a) (a + K) / (2K) is a smooth
# function of u = (a - K) / (a + K) on the a-range where erfc does not
# underflow; it is fitted by one polynomial P(u).  exp(-a^2) is computed from
# the exact square a^2 = z + zl (one rounding of z would cost up to 2 a^2 ulp).

cdef inline float erfcp_f32(float a) noexcept nogil:
    cdef float amax = 10.5, K = 3.0, twoK = 6.0, one = 1.0
    cdef float p0 = 0.179001151331076037313884669857, p1 = -0.147232415074478841126338076027
    cdef float p2 = 0.0983713797943468225717391975762, p3 = -0.0517443158947539956106884705641
    cdef float p4 = 0.0199215649006428680312434511637, p5 = -0.00447341998922604058776661597721
    cdef float p6 = -0.000204715146004066726504112504846, p7 = 0.000513506018737247348859975188457
    cdef float p8 = -0.0000799439470403496274613611490626, p9 = -0.0000539169139797812192503257220455
    cdef float q, u, v, P, z, zl, u2
    a = amax if a > amax else a
    q = one / (a + K)
    u = (a - K) * q
    v = twoK * q
    u2 = u * u
    P = ((p0 + u * p1) + u2 * (p2 + u * p3)) + (u2 * u2) * (
        ((p4 + u * p5) + u2 * (p6 + u * p7)) + (u2 * u2) * (p8 + u * p9))
    z = a * a
    zl = fa_two_prod_lo_f32(a, a, z)
    # erfc(0) = 1 exactly (the fit is within an ulp of it)
    return one if a == 0 else expn_f32(-z) * ((one - zl) * (v * P))


include "_kernels_erfc64.pxi"


cdef inline real fexp(real x) noexcept nogil:
    if real is float:
        return exp_f32(x)
    else:
        return exp_f64(x)


cdef inline real fexpn(real x) noexcept nogil:
    # exp(x) for x <= 0 or NaN
    if real is float:
        return expn_f32(x)
    else:
        return expn_f64(x)


cdef inline real fexpn_big(real x) noexcept nogil:
    # exp(x) * 2^64 (float) / 2^600 (double) for x <= 0 or NaN
    if real is float:
        return expn_big_f32(x)
    else:
        return expn_big_f64(x)


cdef inline real fexpm1n(real x) noexcept nogil:
    if real is float:
        return expm1n_f32(x)
    else:
        return expm1n_f64(x)


cdef inline real flog1p01(real x) noexcept nogil:
    if real is float:
        return log1p01_f32(x)
    else:
        return log1p01_f64(x)


cdef inline real flog(real x) noexcept nogil:
    if real is float:
        return log_f32(x)
    else:
        return log_f64(x)


cdef inline real flog1p(real x) noexcept nogil:
    if real is float:
        return log1p_f32(x)
    else:
        return log1p_f64(x)


cdef inline real ferfcp(real x) noexcept nogil:
    if real is float:
        return erfcp_f32(x)
    else:
        return erfcp_f64(x)


# ---- activations (same formulas and rounding steps as numpy_ref) -------------

cdef inline real _sigmoid(real x) noexcept nogil:
    cdef real one = 1, zero = 0
    cdef real e = fexpn(-abs(x))
    return (one if x >= zero else e) / (one + e)


cdef inline real _log1pexp_nabs(real x) noexcept nogil:
    # log(1 + exp(-|x|)), in (0, log 2]
    return flog1p01(fexpn(-abs(x)))


cdef inline real _softplus0(real x) noexcept nogil:
    cdef real zero = 0
    return (x if x > zero else zero) + _log1pexp_nabs(x)


cdef inline real _tanh(real x) noexcept nogil:
    cdef real two = 2
    cdef real em = fexpm1n(-two * abs(x))
    if real is float:
        return copysignf(-em / (two + em), x)
    else:
        return copysign(-em / (two + em), x)


cdef inline real _ndtr(real x) noexcept nogil:
    # Phi(x) = erfc(-x / sqrt 2) / 2 with the argument rounded as the
    # reference rounds it
    cdef real s12 = 0.7071067811865476, zero = 0, two = 2, half = 0.5
    cdef real t = -x * s12
    cdef real e = ferfcp(abs(t))
    return (e if t >= zero else two - e) * half


cdef inline real _gelu_tanh_arg(real x) noexcept nogil:
    cdef real a = 2 * 0.7978845608028654, c = 0.044715
    return a * (x + c * x * x * x)


cdef inline real _limit(real x, real v, real lo, real hi) noexcept nogil:
    cdef real big = 1e10
    v = lo if x < -big else v
    return hi if x > big else v


# ===========================================================================
# elementwise kernels: k(x, out, n, p1, p2) and k(a, b, out, n, p1, p2)

cdef void k_sigmoid(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = _sigmoid(x[i])


cdef void k_log_sigmoid(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, zero = 0
    for i in range(n):
        v = x[i]
        out[i] = (v if v < zero else zero) - _log1pexp_nabs(v)


cdef void k_logit(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real p, y, a, b, one = 1, two = 2, half = 0.5, quarter = 0.25
    for i in range(n):
        p = x[i]
        y = two * p - one
        a = flog1p(two * y / (one - y))       # 2 atanh(2p - 1)
        b = flog(p / (one - p))
        out[i] = a if abs(p - half) < quarter else b


cdef void k_softplus(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real beta = <real>p1, thr = <real>p2, ibeta = <real>(1.0 / <real>p1), v, bx
    for i in range(n):
        v = x[i]
        bx = v * beta
        out[i] = v if bx > thr else _softplus0(bx) * ibeta


cdef void k_tanh(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = _tanh(x[i])


cdef void k_relu(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, zero = 0
    for i in range(n):
        v = x[i]
        out[i] = v if v > zero else (v if v != v else zero)


cdef void k_leaky_relu(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, zero = 0, slope = <real>p1
    for i in range(n):
        v = x[i]
        out[i] = v if v > zero else v * slope


cdef void k_gelu(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, nzero = -0.0
    for i in range(n):
        v = x[i]
        out[i] = _limit(v, v * _ndtr(v), nzero, v)


cdef void k_gelu_tanh(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, nzero = -0.0
    for i in range(n):
        v = x[i]
        out[i] = _limit(v, v * _sigmoid(_gelu_tanh_arg(v)), nzero, v)


cdef void k_silu(const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, nzero = -0.0
    for i in range(n):
        v = x[i]
        out[i] = _limit(v, v * _sigmoid(v), nzero, v)


cdef void k_sigmoid_backward(const real* g, const real* y, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real one = 1, v
    for i in range(n):
        v = y[i]
        out[i] = (g[i] * v) * (one - v)


cdef void k_sigmoid_backward_x(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    # sigmoid(x) sigmoid(-x) = e / (1 + e)^2, e = exp(-|x|): no cancellation
    cdef Py_ssize_t i
    cdef real one = 1, e
    for i in range(n):
        e = fexpn(-abs(x[i]))
        out[i] = g[i] * (e / ((one + e) * (one + e)))


cdef void k_tanh_backward_x(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    # 1 / cosh(x)^2 = 4 e / (1 + e)^2, e = exp(-2|x|)
    cdef Py_ssize_t i
    cdef real one = 1, two = 2, four = 4, e
    for i in range(n):
        e = fexpn(-two * abs(x[i]))
        out[i] = g[i] * (four * e / ((one + e) * (one + e)))


cdef void k_log_sigmoid_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = g[i] * _sigmoid(-x[i])


cdef void k_logit_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real one = 1, p
    for i in range(n):
        p = x[i]
        out[i] = g[i] / (p * (one - p))


cdef void k_softplus_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real beta = <real>p1, thr = <real>p2, bx, gv
    for i in range(n):
        bx = x[i] * beta
        gv = g[i]
        out[i] = gv if bx > thr else gv * _sigmoid(bx)


cdef void k_tanh_backward(const real* g, const real* y, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real one = 1, v
    for i in range(n):
        v = y[i]
        out[i] = g[i] * ((one - v) * (one + v))


cdef void k_relu_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    # g if x > 0, x if x is NaN, else 0, without a compare (see fa_support.h)
    cdef Py_ssize_t i
    for i in range(n):
        if real is float:
            out[i] = fa_relu_bwd_f32(g[i], x[i])
        else:
            out[i] = fa_relu_bwd_f64(g[i], x[i])


cdef void k_leaky_relu_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, gv, zero = 0, slope = <real>p1
    for i in range(n):
        v = x[i]
        gv = g[i]
        out[i] = gv if v > zero else (v if v != v else gv * slope)


cdef void k_gelu_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, d, pdf, zero = 0, one = 1, mhalf = -0.5, isq = 0.3989422804014327
    for i in range(n):
        v = x[i]
        pdf = fexpn(mhalf * v * v) * isq
        d = _ndtr(v) + v * pdf
        out[i] = g[i] * _limit(v, d, zero, one)


cdef void k_gelu_tanh_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, z, e, r, s, sc, dz, zero = 0, one = 1
    cdef real a = 2 * 0.7978845608028654, c3 = 3 * 0.044715
    for i in range(n):
        v = x[i]
        z = _gelu_tanh_arg(v)
        e = fexpn(-abs(z))
        r = one / (one + e)
        s = r if z >= zero else e * r
        sc = e * r if z >= zero else r
        dz = a * (one + c3 * v * v)
        out[i] = g[i] * _limit(v, s + v * s * sc * dz, zero, one)


cdef void k_silu_backward(const real* g, const real* x, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, e, r, s, sc, zero = 0, one = 1
    for i in range(n):
        v = x[i]
        e = fexpn(-abs(v))
        r = one / (one + e)
        s = r if v >= zero else e * r
        sc = e * r if v >= zero else r
        out[i] = g[i] * _limit(v, s + v * s * sc, zero, one)


cdef void k_bce(const real* x, const real* t, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v, zero = 0
    for i in range(n):
        v = x[i]
        out[i] = ((v if v > zero else zero) - v * t[i]) + _log1pexp_nabs(v)


cdef void k_bce_backward(const real* x, const real* t, real* out, Py_ssize_t n, double p1, double p2) noexcept nogil:
    cdef Py_ssize_t i
    cdef real scale = <real>p1
    for i in range(n):
        out[i] = scale * (_sigmoid(x[i]) - t[i])


# ===========================================================================
# row kernels
#
# Three code paths per kernel:
#   _xxx_row    one contiguous row (inner == 1).  Work is split into passes
#               that GCC vectorizes well: plain elementwise loops (one
#               aliasing check per loop, vectorized epilogues) and
#               reductions that only load, into NL partial results (4 zmm
#               of float32) so that no reassociation flag is needed.
#               float32 partials are summed in float32 for BLK elements at a
#               time, then in double.
#   _xxx_lanes  L <= LMAX rows side by side, element (j, k) at p[j*st + k]:
#               vectorized across the lanes k.  Used for inner > 1 directly,
#               and for contiguous rows up to a kernel's limit (_tiled: 32
#               entries, or 48-256 with SIMD transposes) after transposing a
#               tile of TR rows (so that (65536, 16) or (10485, 100) is
#               computed 16 rows per instruction instead of one row at a
#               time).
#   xxx_k       the entry point, choosing the path.

cdef enum:
    NL = 64        # partial results of a contiguous-row reduction (_hsum and
                   # _hmax are written for 64)
    NT = 16        # most entries of one SIMD register (see _rpiece)
    RB = 16        # rows a block of _rows_rest
    BLK = 1024     # elements per block of working-precision partial sums
    LMAX = 64      # lanes (inner columns) per chunk in the strided kernels
    JB = 16        # rows of a lane chunk summed in working precision
    TR = 64        # rows per tile in the short-row path
    TS = TR + 16   # elements between the tile rows: not a power of two (with
                   # 64, f32 rows of 32 ran at 0.94 or at 1.35 ns/element
                   # from one build to the next, same transpose code)
    NSHORT = 32    # contiguous rows with n <= NSHORT go through tiles,
                   # their steps compiled for each n (_short)
    NTILE = 256    # and longer ones, up to NTILE float32 entries, where the
                   # kernel's limit in _tiled says so
    TBUF = TS * NTILE // 2   # doubles in a tile buffer
    TGAP = 40      # doubles between cross_entropy's two tile buffers: TBUF
                   # apart (80 KiB, a multiple of 4 KiB) the loads of one
                   # and the stores of the other would alias
    RG = 4         # short rows computed side by side in the row-wise path


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline void _prefetch_row(const real* p, Py_ssize_t n) noexcept nogil:
    # the first 8 KiB of the next row when rows are longer than that (the
    # rest streams in behind the first pass).  Shorter rows are left to the
    # hardware prefetcher: on AMD Zen 4, prefetching each whole next row
    # made rows of 4-8 KiB 7-80% slower ((4096, 1024) float32
    # softmax_backward 2.00 -> 1.12 ms without it, float64 5.43 -> 3.21
    # ms), while for rows of 128-256 KiB it was within -17%..+12%
    cdef Py_ssize_t nb = n * <Py_ssize_t>sizeof(real)
    if nb > 8192:
        fa_prefetch_range(p, 8192)


cdef inline void _prefetch_whole_row(const real* p, Py_ssize_t n) noexcept nogil:
    # softmax's next row, whole up to 8 KiB: unlike the kernels above its
    # four passes over a row of 4-8 KiB (max; exp; sum; scale) left the
    # hardware prefetcher behind.  AMD Zen 5, out= given: (4096, 1024)
    # float32 1345 -> 1052 us, float64 2940 -> 2336 us (AVX2 path 0.80x,
    # 0.92x).  Only for rows of 4 KiB or more in arrays past the L2 size:
    # rows of 100-300 float32 were 4-6% slower with it
    fa_prefetch_range(p, _imin(n * <Py_ssize_t>sizeof(real), 8192))


cdef inline bint _far(Py_ssize_t nbytes) noexcept nogil:
    # whether the short-row paths prefetch ahead (_prefetch_tile,
    # _packed_rows for the backward passes' rows one at a time, and
    # _pk_rest_mid's register rows): an array of 6 MiB or more, whose rows
    # come from memory or an L3 shared with the host's other guests.  The
    # tiles read 64 rows in blocks of 16 x 16 and the rows of one or two
    # registers load masked pieces: the hardware prefetcher did not run
    # ahead of either, nor of the register rows at some lengths (128,
    # 256), and the loads waited on memory (16M float32
    # entries, Zen 5: softmax over rows of 5-40 1.7-3x its time over 1M,
    # logsumexp 2-2.6x, over rows of 256 4x).  In the caches the
    # prefetches only cost (64K entries: log_softmax_backward rows of 5-12
    # 1.1-1.2x the time).  Arrays of 6-8 MiB, once left to the hardware
    # prefetcher, took up to 3x their time in the caches (float32
    # log_softmax rows of 5 over 1.5M entries 1202 -> 693 us prefetched,
    # float64 softmax_backward rows of 5 over 1M (7.6 MiB) 772-1170 ->
    # 391-485); at 4-5 MiB the prefetches gained nothing
    return nbytes >= (6 << 20)


cdef inline Py_ssize_t _nt(size_t itemsize) noexcept nogil:
    # entries of a piece of _rpiece: one SIMD register, but 8 or more
    # (pieces of one AVX2 register of float64, 4 entries, were not
    # vectorized in _restsum: log_softmax over rows of 33-100 took 1.4-1.9x
    # as long as one by one; float32 pieces of two AVX2 registers were
    # 1.1-1.6x as slow as of one)
    cdef Py_ssize_t nt = FA_VEC_BYTES // <Py_ssize_t>itemsize
    return nt if nt >= 8 else 8


cdef inline Py_ssize_t _nblocks(Py_ssize_t n) noexcept nogil:
    # entries of a row taken in blocks of NL lanes (four or more registers
    # side by side, their partials summed by a tree at the end); rows under
    # 2 NL go through one register's pieces alone (_rpiece), whose chain of
    # adds costs less than those trees there (float32 rows of 64-100
    # 0.76-0.95x), but more from 2 NL up (rows of 128-200 1.2-1.9x)
    return n - n % NL if n >= 2 * NL else 0


cdef inline Py_ssize_t _pieces_end(Py_ssize_t n, Py_ssize_t nb, Py_ssize_t nt) noexcept nogil:
    # end of the register pieces after nb: the whole row when it has no
    # blocks (its last piece padded), else the whole pieces only, and the
    # last n % nt entries one by one (a padded piece there made float32
    # log_softmax over rows of 200 1.15x as long)
    return n if nb == 0 else n - (n - nb) % nt


cdef inline const real* _rpiece(const real* x, Py_ssize_t w, Py_ssize_t nt, real pad,
                                real* buf) noexcept nogil:
    # the nt entries from x (_nt), x's own when the piece is
    # whole (w == nt), else its first w copied into buf and padded with pad.
    # Row entries past the blocks of NL lanes went through the reductions
    # one by one: float32 rows of 48 took 3257 us per 1M entries in
    # log_softmax, against 390 for rows of 32
    cdef int k, wi = <int>w   # int lanes: 64-bit index compares took two per register
    if w == nt:
        return x
    for k in range(nt):
        buf[k] = x[k] if k < wi else pad
    return buf


cdef inline acc_t _hsum(acc_t* a) noexcept nogil:
    # pairwise sum of the NL partial sums, level by level (the order of the
    # halving tree a[k] += a[k + w], w = 32, 16, .., 1).  Each level is a
    # loop of constant length: as one loop over w = w // 2, GCC vectorized
    # the wide levels only and ran the others as a scalar loop with its
    # own trip count a row (with _hmax, ~10% of a float32 softmax over rows
    # of 1024 in cache)
    cdef Py_ssize_t k
    for k in range(32):
        a[k] = a[k] + a[k + 32]
    for k in range(16):
        a[k] = a[k] + a[k + 16]
    for k in range(8):
        a[k] = a[k] + a[k + 8]
    for k in range(4):
        a[k] = a[k] + a[k + 4]
    return (a[0] + a[2]) + (a[1] + a[3])


cdef inline real _hmax(real* m) noexcept nogil:
    # maximum of the NL partial maxima by a halving tree, as in _hsum: GCC
    # vectorizes each level, while a running maximum stayed a chain of
    # dependent scalar max instructions (about 8% of a (4096, 1024) float32
    # softmax on Intel)
    cdef Py_ssize_t k
    for k in range(32):
        m[k] = m[k + 32] if m[k + 32] > m[k] else m[k]
    for k in range(16):
        m[k] = m[k + 16] if m[k + 16] > m[k] else m[k]
    for k in range(8):
        m[k] = m[k + 8] if m[k + 8] > m[k] else m[k]
    for k in range(4):
        m[k] = m[k + 4] if m[k + 4] > m[k] else m[k]
    for k in range(2):
        m[k] = m[k + 2] if m[k + 2] > m[k] else m[k]
    return m[1] if m[1] > m[0] else m[0]


cdef inline real _rowmax(const real* x, Py_ssize_t n) noexcept nogil:
    # maximum ignoring NaN (-inf for an empty or all-NaN row); a NaN in the
    # row still makes the row's result NaN through the sums that follow
    cdef real m[NL]
    cdef real buf[NT]
    cdef const real* p
    cdef real v
    cdef Py_ssize_t i, k, nb = _nblocks(n), nt = _nt(sizeof(real))
    for k in range(NL):
        m[k] = -INFINITY
    for i from 0 <= i < nb by NL:
        for k in range(NL):
            v = x[i + k]
            m[k] = v if v > m[k] else m[k]
    for i from nb <= i < n by nt:
        # after blocks (nb > 0: the row has 2 NL entries or more) a part
        # piece at the end is the row's last whole piece, overlapping the
        # one before (a maximum may see an entry twice); one by one, GCC
        # kept the running maximum on the stack, a store-to-load chain of
        # ~10 cycles an entry (20% of float32 logsumexp over rows of 300)
        if nb > 0 and n - i < nt:
            p = x + n - nt
        else:
            p = _rpiece(x + i, _imin(nt, n - i), nt, -INFINITY, buf)
        for k in range(nt):
            v = p[k]
            m[k] = v if v > m[k] else m[k]
    # one tree of NL lanes whether or not the row had blocks (lanes nt.. of
    # a row without blocks stay -inf): with a tree of nt lanes for those
    # rows GCC merged the two trees into one loop with a run-time width
    return _hmax(m)


cdef inline acc_t _rowsum(const real* a, const real* b, Py_ssize_t n) noexcept nogil:
    # sum(a), or sum(a*b) with the products rounded in the working precision
    # as the reference forms them (b may be NULL)
    cdef real part[NL]
    cdef acc_t acc[NL]
    cdef real bufa[NT]
    cdef real bufb[NT]
    cdef const real* pa
    cdef const real* pb
    cdef acc_t t
    cdef Py_ssize_t i, k, w, bb, e, nb = _nblocks(n), nt = _nt(sizeof(real))
    cdef Py_ssize_t ne = _pieces_end(n, nb, nt)
    for k in range(NL):
        acc[k] = 0
    bb = 0
    while bb < nb:
        e = _imin(bb + BLK, nb)
        for k in range(NL):
            part[k] = 0
        if b != NULL:
            for i from bb <= i < e by NL:
                for k in range(NL):
                    part[k] += a[i + k] * b[i + k]
        else:
            for i from bb <= i < e by NL:
                for k in range(NL):
                    part[k] += a[i + k]
        for k in range(NL):
            acc[k] += part[k]
        bb = e
    if ne > nb:
        for k in range(nt):
            part[k] = 0
        for i from nb <= i < ne by nt:
            w = _imin(nt, n - i)
            pa = _rpiece(a + i, w, nt, 0, bufa)
            if b != NULL:
                pb = _rpiece(b + i, w, nt, 0, bufb)
                for k in range(nt):
                    part[k] += pa[k] * pb[k]
            else:
                for k in range(nt):
                    part[k] += pa[k]
        for k in range(nt):
            acc[k] += part[k]
    t = _hsum(acc)   # one tree of NL, as in _rowmax (lanes nt.. 0 there)
    for i in range(ne, n):
        t += <real>(a[i] * b[i]) if b != NULL else a[i]
    return t


cdef inline acc_t _restsum(const real* x, Py_ssize_t n, real m, real* out, bint store) noexcept nogil:
    # sum of exp(x - m) over all but one maximum (see numpy_ref._row_parts):
    # the maximum's own term 1 is kept out so that log1p(rest) stays
    # accurate when the other terms are tiny.  If store, x - m is also
    # stored into out (log_softmax's first half, written while the exps
    # keep the core busy: a separate pass cost about one more array copy).
    # store is a constant at each (inlined) call: with a run-time NULL test
    # GCC made the x86-64-v3 store a vmaskmovpd, microcode on AMD Zen 3
    # ((4096, 1024) float64 log_softmax 12.1 -> 10.1 ms without it)
    cdef real part[NL]
    cdef real cnt[NL]
    cdef acc_t acc[NL]
    cdef acc_t cacc[NL]
    cdef real buf[NT]
    cdef real d[NT]
    cdef const real* p
    cdef real v, zero = 0, one = 1
    cdef acc_t s, t
    cdef Py_ssize_t i, k, w, bb, e, pads, nb = _nblocks(n), nt = _nt(sizeof(real))
    # float64 blocks in 32 lanes (of acc's NL; the others stay 0): 64
    # partial sums and 64 counts are 16 zmm, and GCC spilled them around
    # the exps (log_softmax over rows of 300 1.3x, logsumexp 1.1x as long);
    # float32 in 32 lanes was no faster (rows of 1024 in cache 1.1x slower)
    cdef Py_ssize_t nl = 32 if real is double else NL
    for k in range(NL):
        acc[k] = 0
        cacc[k] = 0
    bb = 0
    while bb < nb:
        e = _imin(bb + BLK, nb)
        for k in range(nl):
            part[k] = 0
            cnt[k] = 0
        for i from bb <= i < e by nl:
            for k in range(nl):
                v = x[i + k]
                if store:
                    out[i + k] = v - m
                part[k] += zero if v == m else fexpn(v - m)
                cnt[k] += one if v == m else zero
        for k in range(nl):
            acc[k] += part[k]
            cacc[k] += cnt[k]
        bb = e
    for k in range(nt):
        part[k] = 0
        cnt[k] = 0
    # register pieces to the row's end, the last one padded: unlike the
    # other reductions (_pieces_end) no entry one by one -- a scalar exp
    # each, ~17% of float32 logsumexp over rows of 300
    for i from nb <= i < n by nt:
        # pads of -inf: exp(-inf - m) = 0, and a maximum only if m is -inf
        # (taken out of the count below; a lane-index test here made GCC
        # split the float64 loop into half-width registers)
        w = _imin(nt, n - i)
        p = _rpiece(x + i, w, nt, -INFINITY, buf)
        for k in range(nt):
            v = p[k]
            d[k] = v - m
            part[k] += zero if v == m else fexpn(v - m)
            cnt[k] += one if v == m else zero
        if store:  # a constant count where it can be: else GCC calls memcpy
            if w == nt:
                for k in range(nt):
                    out[i + k] = d[k]
            else:
                for k in range(w):
                    out[i + k] = d[k]
    for k in range(nt):
        acc[k] += part[k]
        cacc[k] += cnt[k]
    w = (n - nb) % nt
    pads = nt - w if w > 0 and m == -INFINITY else 0
    t = _hsum(cacc) - (1 + pads)   # trees of NL, as in _rowmax
    s = _hsum(acc)
    return s + t


# ---- short rows: row length as a compile-time constant ---------------------
# The short-row steps are compiled once per row length 1..NSHORT (a constant
# n lets GCC turn the transposes into in-register permutations -- measured
# 3x faster than with a run-time n -- and vectorize the row-wise outputs
# along the row).  Each step is one branch of _short_n, selected at compile
# time by the fused tag type; _short is the one dispatch on n.
#
#   _ToTile     tile[j*TS + r] = a[r*n + j]  (TR short rows transposed so that
#               the rows become SIMD lanes; row-outer: contiguous loads)
#   _FromTile   out[r*n + j] = a[j*TS + r]
#   _SmBwd      out = b * (a - c[row])          (a = g, b = y, c = sum(g*y))
#               for rows that do not fill whole SIMD registers, the row
#               scalar from a transposed tile
# The row-by-row steps, for rows of whole SIMD registers only (_rowwise; the
# test leaves no code for the other lengths).  The reductions are
# in-register (fa_rowdot/rowsum/rowmax), and each row is computed into a
# local buffer before any of it is stored: out may be a or b, and with
# loads and stores interleaved GCC wrote the row one scalar at a time.
#   _SmRow      out = softmax(a)
#   _SmBwdRow   out = b * (a - sum(a*b))        (a = g, b = y)
#   _LsmBwd     out = a - exp(b) * sum(a)       (a = g, b = y)
#   _LseBwd     out = a[row] * exp(b - c[row])  (a = g, b = x, c = lse)
#   _LsmRow     out = a - max(a), s[row] = the rest sum of _restsum
#   _LseRow     out[row] = max(a), s[row] = the rest sum
#   _SubRow     out = a - c[row]

ctypedef struct _ToTile:
    char unused
ctypedef struct _FromTile:
    char unused
ctypedef struct _SmBwd:
    char unused
ctypedef struct _LsmBwd:
    char unused
ctypedef struct _LseBwd:
    char unused
ctypedef struct _SmBwdRow:
    char unused
ctypedef struct _SmRow:
    char unused
ctypedef struct _LsmRow:
    char unused
ctypedef struct _LseRow:
    char unused
ctypedef struct _SubRow:
    char unused

ctypedef fused short_op:
    _ToTile
    _FromTile
    _SmBwd
    _LsmBwd
    _LseBwd
    _SmBwdRow
    _SmRow
    _LsmRow
    _LseRow
    _SubRow


cdef inline real _rmax(const real* a, Py_ssize_t n) noexcept nogil:
    if real is float:
        return fa_rowmax_f32(a, n)
    else:
        return fa_rowmax_f64(a, n)


cdef inline real _rsum(const real* a, Py_ssize_t n) noexcept nogil:
    if real is float:
        return fa_rowsum_f32(a, n)
    else:
        return fa_rowsum_f64(a, n)


cdef inline real _rdot(const real* a, const real* b, Py_ssize_t n) noexcept nogil:
    if real is float:
        return fa_rowdot_f32(a, b, n)
    else:
        return fa_rowdot_f64(a, b, n)


cdef inline void _rsub(const real* a, real c, real* out, Py_ssize_t n) noexcept nogil:
    if real is float:
        fa_rowsub_f32(a, c, out, n)
    else:
        fa_rowsub_f64(a, c, out, n)


cdef inline acc_t _rest_row(const real* x, Py_ssize_t n, real m, real* xm) noexcept nogil:
    # _restsum of one row of whole SIMD registers (n <= NSHORT); x - m into
    # xm unless it is NULL
    cdef real pe[NSHORT]
    cdef real pc[NSHORT]
    cdef real v, zero = 0, one = 1
    cdef Py_ssize_t j
    for j in range(n):
        v = x[j]
        if xm != NULL:
            xm[j] = v - m
        pe[j] = zero if v == m else fexpn(v - m)
        pc[j] = one if v == m else zero
    return <acc_t>_rsum(pe, n) + (<acc_t>_rsum(pc, n) - 1)


cdef inline void _softmax_rows(const real* a, real* out, Py_ssize_t n, Py_ssize_t G,
                               real* buf) noexcept nogil:
    # softmax of G consecutive rows of whole SIMD registers (n and G are
    # constants where this is inlined), side by side so that their
    # reductions and exps are independent chains; computed in buf before
    # any of out is written (out may be a)
    cdef real mg[RG]
    cdef Py_ssize_t g, j
    for g in range(G):
        mg[g] = _rmax(a + g * n, n)
    for g in range(G):
        for j in range(n):
            buf[g * n + j] = fexpn_big(a[g * n + j] - mg[g])
    for g in range(G):
        mg[g] = 1 / _rsum(buf + g * n, n)
    for g in range(G):
        for j in range(n):
            buf[g * n + j] = buf[g * n + j] * mg[g]
    for j in range(G * n):
        out[j] = buf[j]


cdef inline void _short_n(short_op* op, const real* a, const real* b, const real* c, real* out,
                          acc_t* s, Py_ssize_t n, Py_ssize_t R) noexcept nogil:
    cdef Py_ssize_t r, j, r1 = 0
    cdef real cr, ar
    cdef real rr[RG * NSHORT]
    if short_op is _ToTile:
        for r in range(R):
            for j in range(n):
                out[j * TS + r] = a[r * n + j]
    elif short_op is _FromTile:
        for r in range(R):
            for j in range(n):
                out[r * n + j] = a[j * TS + r]
    elif short_op is _SmBwd:
        # rows of up to 128 bytes through rr, as in the row-wise steps
        # below: written straight to out (which may be a or b), GCC kept the
        # loop scalar (1M entries: float32 rows of 10 695-736 -> 513-518 us,
        # float64 rows of 10 1975-2031 -> 1594-1668 us; float64 rows of 20
        # took 1.12-1.15x as long that way)
        for r in range(R):
            cr = c[r]
            if n * <Py_ssize_t>sizeof(real) <= 128:
                for j in range(n):
                    rr[j] = b[r * n + j] * (a[r * n + j] - cr)
                for j in range(n):
                    out[r * n + j] = rr[j]
            else:
                for j in range(n):
                    out[r * n + j] = b[r * n + j] * (a[r * n + j] - cr)
    elif n <= NSHORT and _rowwise(n, sizeof(real)) and short_op is _SmRow:
        if FA_VEC_BYTES == 64 and n * <Py_ssize_t>sizeof(real) == 64:
            # rows of one AVX-512 register RG at a time, where one row alone
            # keeps the core waiting on its two horizontal reductions (1M
            # entries, Zen 4: float32 rows of 16 606 -> 518 us, float64 rows
            # of 8 1322 -> 1158 us; rows of 2-4 registers gained nothing or
            # lost 14-25%, and AVX2 rows of one register took 1.9x as long)
            while r1 + RG <= R:
                _softmax_rows(a + r1 * n, out + r1 * n, n, RG, rr)
                r1 += RG
        for r in range(r1, R):
            _softmax_rows(a + r * n, out + r * n, n, 1, rr)
    elif n <= NSHORT and _rowwise(n, sizeof(real)):
        for r in range(R):
            if short_op is _LseRow:
                cr = _rmax(a + r * n, n)
                s[r] = _rest_row(a + r * n, n, cr, <real*>NULL)
                out[r] = cr
            elif short_op is _SubRow:
                _rsub(a + r * n, c[r], out + r * n, n)
            else:
                if short_op is _SmBwdRow:
                    cr = _rdot(a + r * n, b + r * n, n)
                    for j in range(n):
                        rr[j] = b[r * n + j] * (a[r * n + j] - cr)
                elif short_op is _LsmBwd:
                    cr = _rsum(a + r * n, n)
                    for j in range(n):
                        rr[j] = a[r * n + j] - fexp(b[r * n + j]) * cr
                elif short_op is _LseBwd:
                    ar = a[r]
                    cr = c[r]
                    for j in range(n):
                        rr[j] = ar * fexp(b[r * n + j] - cr)
                else:
                    s[r] = _rest_row(a + r * n, n, _rmax(a + r * n, n), rr)
                for j in range(n):
                    out[r * n + j] = rr[j]


cdef void _short(short_op* op, const real* a, const real* b, const real* c, real* out,
                 acc_t* s, Py_ssize_t n, Py_ssize_t R) noexcept nogil:
    if n == 1:
        _short_n(op, a, b, c, out, s, 1, R)
    elif n == 2:
        _short_n(op, a, b, c, out, s, 2, R)
    elif n == 3:
        _short_n(op, a, b, c, out, s, 3, R)
    elif n == 4:
        _short_n(op, a, b, c, out, s, 4, R)
    elif n == 5:
        _short_n(op, a, b, c, out, s, 5, R)
    elif n == 6:
        _short_n(op, a, b, c, out, s, 6, R)
    elif n == 7:
        _short_n(op, a, b, c, out, s, 7, R)
    elif n == 8:
        _short_n(op, a, b, c, out, s, 8, R)
    elif n == 9:
        _short_n(op, a, b, c, out, s, 9, R)
    elif n == 10:
        _short_n(op, a, b, c, out, s, 10, R)
    elif n == 11:
        _short_n(op, a, b, c, out, s, 11, R)
    elif n == 12:
        _short_n(op, a, b, c, out, s, 12, R)
    elif n == 13:
        _short_n(op, a, b, c, out, s, 13, R)
    elif n == 14:
        _short_n(op, a, b, c, out, s, 14, R)
    elif n == 15:
        _short_n(op, a, b, c, out, s, 15, R)
    elif n == 16:
        _short_n(op, a, b, c, out, s, 16, R)
    elif n == 17:
        _short_n(op, a, b, c, out, s, 17, R)
    elif n == 18:
        _short_n(op, a, b, c, out, s, 18, R)
    elif n == 19:
        _short_n(op, a, b, c, out, s, 19, R)
    elif n == 20:
        _short_n(op, a, b, c, out, s, 20, R)
    elif n == 21:
        _short_n(op, a, b, c, out, s, 21, R)
    elif n == 22:
        _short_n(op, a, b, c, out, s, 22, R)
    elif n == 23:
        _short_n(op, a, b, c, out, s, 23, R)
    elif n == 24:
        _short_n(op, a, b, c, out, s, 24, R)
    elif n == 25:
        _short_n(op, a, b, c, out, s, 25, R)
    elif n == 26:
        _short_n(op, a, b, c, out, s, 26, R)
    elif n == 27:
        _short_n(op, a, b, c, out, s, 27, R)
    elif n == 28:
        _short_n(op, a, b, c, out, s, 28, R)
    elif n == 29:
        _short_n(op, a, b, c, out, s, 29, R)
    elif n == 30:
        _short_n(op, a, b, c, out, s, 30, R)
    elif n == 31:
        _short_n(op, a, b, c, out, s, 31, R)
    elif n == 32:
        _short_n(op, a, b, c, out, s, 32, R)
    else:
        _short_n(op, a, b, c, out, s, n, R)


cdef inline bint _rowwise(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # whether rows of n elements are written row by row (whole SIMD
    # registers) rather than through a transposed tile
    return (n * <Py_ssize_t>itemsize) % FA_VEC_BYTES == 0


cdef inline bint _tiled(Py_ssize_t n, size_t itemsize, Py_ssize_t lim32, Py_ssize_t lim64) noexcept nogil:
    # whether contiguous rows of n entries go through transposed tiles of TR
    # rows: always up to NSHORT, and up to a kernel's own limit (float32,
    # float64 entries) where the targets have SIMD transposes (AVX2,
    # AVX-512).  One row at a time a row of 33-256 entries is too short for
    # the pipelines: its reductions are chains of a few dependent registers
    # and horizontal trees, while 64 rows side by side are independent
    # lanes.  1M entries, AMD Zen 5, AVX-512, row path -> tiles, us:
    #   float32  rows of      33          64          128         256
    #   softmax            1149 -> 293  657 -> 257  479 -> 257  320 -> 293
    #   log_softmax        2031 -> 357  852 -> 310  593 -> 301  409 -> 328
    #   logsumexp          1880 -> 327  827 -> 238  532 -> 220  349 -> 243
    #   softmax_backward    697 -> 300  407 -> 228  316 -> 272  (160: 286 -> 289)
    #   log_softmax_bwd     715 -> 388  393 -> 332  (100: 336 -> 345)
    # (the two backward kernels keep NSHORT: their rows past two registers
    # go through registers one row at a time, faster still; _masked_rows)
    #   cross_entropy grad 2568 -> 742 1236 -> 649  802 -> 635  553 -> 670
    # float64 (tiles transposed by scalar code): log_softmax 1575 -> 851
    # (33), 1074 -> 950 (100), 939 -> 970 (128); logsumexp 1275 -> 662,
    # 881 -> 676 (128); softmax 1082 -> 781 (33), 867 -> 803 (48), 750 ->
    # 804 (64); cross_entropy 2846 -> 1388, 1521 -> 1348 (100), 1362 ->
    # 1497 (128); both backward kernels 1.3-2.8x slower from 33 up, and
    # logsumexp_backward (one exp an entry, no reduction) 1.3-2.0x slower
    # in both types: it keeps NSHORT.  The
    # tile buffers (TBUF doubles) hold NTILE float32 or NTILE / 2 float64
    # entries a tile row
    if n <= NSHORT:
        return True
    return FA_TILE_SIMD and n <= (lim32 if itemsize == 4 else lim64)


cdef inline bint _rowwise_rest(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # the same for log_softmax and logsumexp, whose rows take three
    # horizontal reductions (max, rest sum, count of maxima): worth it from
    # two registers a row.  At one register, f32 rows of 16 at (65536, 16)
    # took 976 us (log_softmax) and 813 us (logsumexp) row by row against
    # 735 and 636 us through the tile; rows of 32 took 659 and 569 us
    # against 934 and 758 us (AMD Zen 4)
    return _rowwise(n, itemsize) and n * <Py_ssize_t>itemsize >= 2 * FA_VEC_BYTES


cdef inline void _rows_mul(const real* a, const real* b, real* out, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(m):
        out[i] = a[i] * b[i]


cdef inline bint _tile_simd(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # the register transposes of fa_support.h: float32 rows of 5 or more
    # (AVX-512, softmax over 1M entries, rows of 5-20: 0.65-0.91x the time
    # of GCC's code for a constant n; rows of 3: 1.9x.  AVX2 on Zen 3, 8 x 8
    # blocks: softmax rows of 7-20 0.80-0.89x, 5-6 0.90-0.94x; log_softmax
    # 10-20 0.79-0.89x; log_softmax_backward 7-20 0.87-0.92x;
    # softmax_backward, which transposes only its products, 0.95-1.1x for
    # rows of 7-20 and 1.1x for 5-6).  In float64 they were 0.9x for rows
    # of 5-7 and 1.1-1.4x for rows of 10-20
    return FA_TILE_SIMD and itemsize == 4 and n >= 5


cdef inline void _to_tile(const real* x, real* tile, Py_ssize_t n, Py_ssize_t R) noexcept nogil:
    if real is float and _tile_simd(n, sizeof(real)):
        fa_tile_f32(x, tile, n, R, TS, 1)
    else:
        _short(<_ToTile*>NULL, x, <const real*>NULL, <const real*>NULL, tile, <acc_t*>NULL, n, R)


cdef inline void _from_tile(const real* tile, real* out, Py_ssize_t n, Py_ssize_t R) noexcept nogil:
    if real is float and _tile_simd(n, sizeof(real)):
        fa_tile_f32(tile, out, n, R, TS, 0)
    else:
        _short(<_FromTile*>NULL, tile, <const real*>NULL, <const real*>NULL, out, <acc_t*>NULL, n, R)


cdef inline void _prefetch_next_tile(const real* x, real* out, Py_ssize_t r0, Py_ssize_t outer,
                                     Py_ssize_t n) noexcept nogil:
    # the next tile's rows of x (and of out, for writing)
    cdef Py_ssize_t m = _imin(TR, outer - r0 - TR) * n * <Py_ssize_t>sizeof(real)
    if m > 0:
        fa_prefetch_range(x + (r0 + TR) * n, m)
        if out != NULL:
            fa_prefetchw_range(out + (r0 + TR) * n, m)


cdef inline void _prefetch_tile(const real* x, real* out, Py_ssize_t r0, Py_ssize_t outer,
                                Py_ssize_t n) noexcept nogil:
    # _prefetch_next_tile for the register-transposed tiles of arrays past
    # the caches (_far)
    if _tile_simd(n, sizeof(real)) and _far(outer * n * <Py_ssize_t>sizeof(real)):
        _prefetch_next_tile(x, out, r0, outer, n)


# ---- packed short rows -------------------------------------------------------
# Rows of 2, 4 or 8 entries several to a SIMD register (fa_pack_* in
# fa_support.h: the rows' max and sums by in-register butterflies), and
# for the backward passes and float64 softmax other rows of up to two
# registers one at a time (masked loads and stores with AVX-512, plain
# loads and stores in pieces with AVX2; see _masked_rows), for AVX-512
# and AVX2 builds (other targets keep the tiles).  A
# block of up to PB entries is computed in a few whole-array steps: the
# fa_pack step, then the exps in a plain loop that GCC vectorizes, then
# another fa_pack step.  The last partial register of packed rows is
# computed in a zero-padded copy by the same code, so that each row's
# result is the same wherever a thread's share of the rows begins.
#   _PkSoftmax  out = softmax(a)
#   _PkSmBwd    out = b * (a - sum(a*b))     (a = g, b = y)
#   _PkLsmBwd   out = a - exp(b) * sum(a)    (a = g, b = y)
#   _PkSmBwdMid, _PkLsmBwdMid  the same over rows past two registers
#               (fa_pack_mid), in kernels of their own; so are the fused
#               softmax (_pk_softmax_mid) and log_softmax / logsumexp
#               (_pk_rest_mid) over those rows
#   _PkLsm      out = log_softmax(a)
#   _PkLse      out[row] = logsumexp(a[row])
# log_softmax and logsumexp take the rest sum of _restsum and one log1p a
# row (not a lane): the rows' sums come out one a row (PK_ROWSUM).  The
# log1p is in the working precision, as in the Numba rows (in float64,
# float32 rows of 2 took 1.2x as long); float64 rows stay on the tiles,
# which were as fast (0.94-1.19x the packed rows' time: the exps and log1p
# cost the most there)

cdef enum:
    PB = 256       # entries per block of packed rows
    PK_MAX = 0     # fa_pack ops (see fa_support.h)
    PK_SCALE = 1
    PK_SUM = 2
    PK_SMBWD = 3
    PK_ROWSUM = 4
    PK_FIRST = 5
    PK_SPREAD = 6
    PK_SOFTMAX = 7 # out = softmax(a), fused; rows past two registers only (fa_pack_mid)
    PK_MAXREST = 8 # out = (max, rest sum) pairs, one a row; fa_pack_mid only
    PK_SUB2 = 9    # out = (a - b[2r]) - b[2r + 1] in row r; fa_pack_mid only
    PK_PADDED = 16 # flag: the input readable past its end (see fa_support.h)
    PK_AHEAD = 32  # flag: prefetch 1024 entries ahead of each row (fa_rows_mid)
    VWMAX = 16     # entries per register, at most

ctypedef struct _PkSoftmax:
    char unused
ctypedef struct _PkSmBwd:
    char unused
ctypedef struct _PkLsmBwd:
    char unused
ctypedef struct _PkLsm:
    char unused
ctypedef struct _PkLse:
    char unused
ctypedef struct _PkSmBwdMid:
    char unused
ctypedef struct _PkLsmBwdMid:
    char unused

ctypedef fused pk_op:
    _PkSoftmax
    _PkSmBwd
    _PkLsmBwd
    _PkSmBwdMid
    _PkLsmBwdMid
    _PkLsm
    _PkLse


cdef inline bint _packed(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # rows of a power-of-two length of at most a register (see
    # fa_support.h); the kernels other than softmax take fewer
    # (_packed_rest, _packed_bwd)
    return (FA_PACK and n >= 2 and (n & (n - 1)) == 0
            and n * <Py_ssize_t>itemsize <= FA_PACK_MAX_BYTES)


cdef inline bint _packed_rest(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # log_softmax and logsumexp (float32) pack rows of a whole register with
    # AVX2 (1.4x faster, Zen 3) but not with AVX-512, where rows of 16
    # float32 took 1.10-1.12x as long packed as through their tiles (AMD Zen
    # 5; softmax there: 0.71x)
    return _packed(n, itemsize) and (FA_VEC_BYTES < 64 or 2 * n * <Py_ssize_t>itemsize <= FA_VEC_BYTES)


cdef inline bint _packed_bwd(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # the backward passes pack rows below half a register only: AVX2 rows
    # of a whole one (8 float32, 4 float64), which have no exps before their
    # one reduction, were as fast or faster row by row (1M entries, Zen 3:
    # log_softmax_backward float32 rows of 8 ~770 against ~990 us packed,
    # softmax_backward float64 rows of 4 ~1000 against ~1150), while the
    # forward ones gained 1.3-1.5x (softmax float32 rows of 8 ~1190 -> ~805
    # us, float64 rows of 4 ~3000 -> ~2100; log_softmax float32 rows of 8
    # ~1760 -> ~1230, logsumexp ~1540 -> ~1125)
    return _packed(n, itemsize) and 2 * n * <Py_ssize_t>itemsize <= FA_VEC_BYTES


cdef inline bint _masked_rows(Py_ssize_t n, size_t itemsize, Py_ssize_t nmin, Py_ssize_t nregs) noexcept nogil:
    # rows of nmin entries up to two registers that neither pack nor fill
    # whole registers, which fa_pack takes one at a time with masked loads.
    # 1M entries against the tiles: the backward passes over rows of 5-31
    # 0.53-0.82x the time (float32 softmax_backward over rows of 5-6
    # 1.06-1.23x, of 3 3.3x); float64 softmax over rows of 6-15 0.72-0.95x
    # (5: 1.1x, 3: 2x); float32 softmax (whose tiles transpose in
    # registers) 1.2x and log_softmax/logsumexp 0.72-1.6x (with their row
    # sums' loads unmasked as well), which keep their tiles.  AVX2 (plain
    # loads and stores in pieces, Zen 3, against its register-transposed
    # tiles): softmax_backward float32 rows of 7-15 0.65-0.89x, float64 5-7
    # 0.43-0.60x; log_softmax_backward float32 5-15 0.74-0.83x, float64 5-7
    # 0.71-0.72x; float64 softmax rows of 6-7 0.96-1.05x.
    # Past two registers, up to nregs (fa_rows_mid: the row in registers,
    # whole or not; rows of whole registers up to NSHORT keep the row-wise
    # path: float64 rows of 32 took 1.25x as long in fa_rows_mid).  1M entries, AMD Zen 5, against the tiles or the row path, us:
    # AVX-512 float32 softmax_backward rows of 33 718 -> 149, 64 425 -> 163,
    # 128 309 -> 158, 200 271 -> 190, 256 225 -> 183 (about np.copy's time
    # for its three arrays); log_softmax_backward 744 -> 288, 401 -> 237,
    # 336 -> 245, 317 -> 269, 261 -> 251; float64 softmax_backward rows of
    # 33-64 0.50-0.57x, and (since fa_piecesum's tree is unrolled) 65-128
    # 0.65-0.8x (in cache 0.55-0.6x); float64 log_softmax_backward rows of
    # 17-20 ~1600 -> ~550, 33-48 0.85x, 64-100 0.9-1.05x, 128 0.83x.  AVX2:
    # float32 softmax_backward rows of 20-128 (16 registers) 0.31-0.52x,
    # log_softmax_backward 0.64-0.87x; float64 softmax_backward rows of
    # 33-64 0.55x, log_softmax_backward rows of 9-17 0.45-0.73x, 33-64
    # 0.75-0.85x
    if not FA_MASKED_ROWS or n < nmin or _packed(n, itemsize) or (n <= NSHORT and _rowwise(n, itemsize)):
        return False
    return n * <Py_ssize_t>itemsize <= max(nregs, 2) * FA_VEC_BYTES


cdef inline bint _loop_rows(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # softmax rows of more than 192 bytes, up to 25 float32 / 32 float64
    # registers, one at a time (fa_rows_mid: max, exps, sum and scale in
    # registers up to 16 registers, past them loops over the pieces) instead
    # of the tiles (float32) or the row path.  AMD Zen 5, AVX-512, us per 1M
    # entries against the session-start tree: float32 rows of 64 0.9x, 80
    # 0.82x, 128 0.68x, 200 0.65x, 257-300 0.7x (in cache too); over 4M
    # entries the tiles fell apart (rows of 48-200 606-860 us against
    # 200-280); float64 rows of 129 0.83x, 200 0.93x (4M: 0.75x).  Rows of
    # 33 took 1.25x as long (48: the same), float32 rows of 512-1024 1.05-
    # 1.1x.  AVX2: float32 rows of 64-200 0.78-0.93x (25-33: 1.2x slower:
    # the bound is in bytes), float64 rows of 65-128 0.85-0.9x
    return (FA_MASKED_ROWS and n * <Py_ssize_t>itemsize > 192
            and n * <Py_ssize_t>itemsize <= (32 if itemsize == 8 else 25) * FA_VEC_BYTES)


cdef inline bint _rest_mid(Py_ssize_t n, size_t itemsize) noexcept nogil:
    # log_softmax and logsumexp rows taken by _pk_rest_mid: float64 from 17
    # entries, float32 from 65, up to 16 registers.  1M entries, AMD Zen 5,
    # against the row path (float64) or the tiles (float32 up to 100 / 128):
    # float64 log_softmax rows of 33-128 0.55-0.6x, logsumexp 0.63-0.67x
    # (rows of 17-24 0.9-1.06x); float32 rows of 80-256 0.7-0.85x, but
    # 33-48 1.2-1.5x (their tiles keep them); AVX2 float64 rows of 17-64
    # 0.72-1.0x, float32 65-128 0.76-0.84x.  Past 16 registers (fa_rows_mid
    # loops over the pieces: fa_rows_loop) up to 64 float32 / 32 float64
    # registers, against the row path, in cache (out of cache, 4M entries):
    # float32 log_softmax rows of 257-300 0.55x (0.64x), 400-512 0.75-0.85x,
    # 700-1000 0.75-0.83x (0.89x), logsumexp 257-300 0.54x (0.54x), 1000
    # 0.84x (0.84x); float64 rows of 129 log_softmax 0.77x, logsumexp 0.7x,
    # 200 0.92x / 0.87x.  Further out not: float32 log_softmax rows of 2000
    # 1.33x as long out of cache, float64 rows of 1000 1.2x.  AVX2: float32
    # rows of 129-512 0.6-0.85x, float64 rows of 65-128 0.75-0.88x
    return _masked_rows(n, itemsize, 17 if itemsize == 8 else 65, 32 if itemsize == 8 else 64)


cdef inline void _pk(int op, const real* a, const real* b, real* out, Py_ssize_t len,
                     Py_ssize_t n) noexcept nogil:
    if real is float:
        fa_pack_f32(op, a, b, out, len, <int>n)
    else:
        fa_pack_f64(op, a, b, out, len, <int>n)


cdef inline void _pkm(int op, const real* a, const real* b, real* out, Py_ssize_t len,
                      Py_ssize_t n) noexcept nogil:
    if real is float:
        fa_pack_mid_f32(op, a, b, out, len, <int>n)
    else:
        fa_pack_mid_f64(op, a, b, out, len, <int>n)


cdef inline void _pk_block(pk_op* op, const real* a, const real* b, real* out, Py_ssize_t len,
                           Py_ssize_t n, int pad) noexcept nogil:
    # out has len / n entries for _PkLse, len for the others; pad is
    # PK_PADDED when a and b can be read 2 registers past len
    cdef real t[PB]
    cdef real e[PB + 2 * VWMAX]
    cdef real c[PB]
    cdef real rs[PB]
    cdef real rc[PB]
    cdef real v, zero = 0, one = 1
    cdef Py_ssize_t i, r
    if pk_op is _PkSoftmax and _packed(n, sizeof(real)):
        _pk(PK_MAX, a, <const real*>NULL, t, len, n)
        for i in range(len):
            out[i] = fexpn_big(a[i] - t[i])
        _pk(PK_SCALE, out, <const real*>NULL, out, len, n)
    elif pk_op is _PkSoftmax:
        # the exps into e, not out: the scaling step's row loads then need
        # no masks (see PK_PADDED)
        _pk(PK_MAX | pad, a, <const real*>NULL, t, len, n)
        for i in range(len):
            e[i] = fexpn_big(a[i] - t[i])
        for i in range(len, len + 2 * VWMAX):
            e[i] = zero     # read by the last row's whole loads, lanes cleared
        _pk(PK_SCALE | PK_PADDED, e, <const real*>NULL, out, len, n)
    elif pk_op is _PkSmBwd:
        _pk(PK_SMBWD | pad, a, b, out, len, n)
    elif pk_op is _PkSmBwdMid:
        _pkm(PK_SMBWD | pad, a, b, out, len, n)
    elif pk_op is _PkLsmBwd or pk_op is _PkLsmBwdMid:
        if pk_op is _PkLsmBwd:
            _pk(PK_SUM | pad, a, <const real*>NULL, t, len, n)
        else:
            _pkm(PK_SUM | pad, a, <const real*>NULL, t, len, n)
        for i in range(len):
            out[i] = a[i] - fexp(b[i]) * t[i]
    else:
        _pk(PK_MAX, a, <const real*>NULL, t, len, n)
        for i in range(len):
            v = a[i]
            e[i] = zero if v == t[i] else fexpn(v - t[i])
            c[i] = one if v == t[i] else zero
            if pk_op is _PkLsm:
                out[i] = v - t[i]
        _pk(PK_ROWSUM, e, <const real*>NULL, rs, len, n)
        _pk(PK_ROWSUM, c, <const real*>NULL, rc, len, n)
        if pk_op is _PkLse:
            _pk(PK_FIRST, t, <const real*>NULL, e, len, n)
            for r in range(len // n):
                out[r] = <real>(<acc_t>e[r] + <acc_t>flog1p(rs[r] + (rc[r] - one)))
        else:
            for r in range(len // n):
                rs[r] = flog1p(rs[r] + (rc[r] - one))
            _pk(PK_SPREAD, rs, <const real*>NULL, e, len, n)
            for i in range(len):
                out[i] = out[i] - e[i]


cdef inline void _packed_rows(pk_op* op, const real* a, const real* b, real* out, Py_ssize_t rows,
                       Py_ssize_t n) noexcept nogil:
    cdef real pa[VWMAX]
    cdef real pb[VWMAX]
    cdef Py_ssize_t W = FA_VEC_BYTES // sizeof(real)
    cdef Py_ssize_t len = rows * n, full = len - len % W, i0, i, ahead, per = n if pk_op is _PkLse else 1
    cdef Py_ssize_t step = PB - PB % n
    cdef int pad
    # the backward passes' rows one at a time (masked loads) prefetch both
    # inputs' block four ahead past the caches (_far; the packed rows' whole
    # loads kept the hardware prefetcher ahead: 1.1-1.2x slower with it)
    cdef bint far = ((pk_op is _PkSmBwd or pk_op is _PkLsmBwd) and not _packed(n, sizeof(real))
                     and _far(len * <Py_ssize_t>sizeof(real)))
    if not _packed(n, sizeof(real)):
        full = len      # rows one at a time: no partial register
    for i0 from 0 <= i0 < full by step:
        # the rows one at a time read whole registers past a block's end
        # while the array goes on (AVX2, which has no cheap masked loads:
        # without this the last rows of every block took a zero-padded
        # copy; AVX-512 keeps its masked loads)
        pad = PK_PADDED if FA_VEC_BYTES == 32 and i0 + step + 2 * W <= len else 0
        if far and full - i0 > 4 * step:
            ahead = _imin(step, full - i0 - 4 * step) * <Py_ssize_t>sizeof(real)
            fa_prefetch_range(a + i0 + 4 * step, ahead)
            fa_prefetch_range(b + i0 + 4 * step, ahead)
        _pk_block(op, a + i0, b + i0 if b != NULL else b, out + i0 // per, _imin(step, full - i0), n, pad)
    if full < len:
        for i in range(W):
            pa[i] = a[full + i] if full + i < len else 0
            pb[i] = b[full + i] if b != NULL and full + i < len else 0
        _pk_block(op, pa, pb, pa, W, n, 0)
        for i in range((len - full) // per):
            out[full // per + i] = pa[i]


# the entry points, each called through fa_outline (see fa_support.h)
cdef void _pk_softmax(const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkSoftmax*>NULL, a, b, out, rows, n)


cdef void _pk_softmax_bwd(const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkSmBwd*>NULL, a, b, out, rows, n)


cdef void _pk_log_softmax_bwd(const real* a, const real* b, real* out, Py_ssize_t rows,
                              Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkLsmBwd*>NULL, a, b, out, rows, n)


cdef void _pk_softmax_bwd_mid(const real* a, const real* b, real* out, Py_ssize_t rows,
                              Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkSmBwdMid*>NULL, a, b, out, rows, n)


cdef void _pk_log_softmax_bwd_mid(const real* a, const real* b, real* out, Py_ssize_t rows,
                                  Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkLsmBwdMid*>NULL, a, b, out, rows, n)


cdef void _pk_softmax_mid(const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    # fused: no blocks (nothing between the steps)
    _pkm(PK_SOFTMAX, a, b, out, rows * n, n)


cdef inline void _pk_rest_mid(const real* a, real* out, Py_ssize_t rows, Py_ssize_t n,
                              bint lse) noexcept nogil:
    # rows past two registers, one at a time in registers: each row's max
    # and rest sum (fa_pack_mid's PK_MAXREST), then log1p over the block's
    # rows at once (vectorized; one scalar log1p a row made the rows
    # latency-bound), then out = (x - max) - log1p(rest) by PK_SUB2, or
    # out[row] = max + log1p(rest) (lse)
    cdef real ml[2 * TR]
    cdef acc_t L[TR]
    cdef Py_ssize_t o, r, R
    # past the caches each row prefetches ahead (a whole block at a time
    # was slower: rows of 80-200 1.2-1.5x over 16M entries, 1.1x in cache)
    cdef bint far = _far(rows * n * <Py_ssize_t>sizeof(real))
    for o from 0 <= o < rows by TR:
        R = _imin(TR, rows - o)
        _pkm(PK_MAXREST | (PK_AHEAD if far else 0), a + o * n, <const real*>NULL, ml, R * n, n)
        for r in range(R):
            L[r] = ml[2 * r + 1]
        _lanes_log1p(L, R)
        if lse:
            for r in range(R):
                out[o + r] = <real>(<acc_t>ml[2 * r] + L[r])
        else:
            for r in range(R):
                ml[2 * r + 1] = <real>L[r]
            _pkm(PK_SUB2, a + o * n, ml, out + o * n, R * n, n)


cdef void _pk_log_softmax_mid(const real* a, const real* b, real* out, Py_ssize_t rows,
                              Py_ssize_t n) noexcept nogil:
    _pk_rest_mid(a, out, rows, n, False)


cdef void _pk_logsumexp_mid(const real* a, const real* b, real* out, Py_ssize_t rows,
                            Py_ssize_t n) noexcept nogil:
    _pk_rest_mid(a, out, rows, n, True)


cdef void _pk_log_softmax(const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkLsm*>NULL, a, b, out, rows, n)


cdef void _pk_logsumexp(const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    _packed_rows(<_PkLse*>NULL, a, b, out, rows, n)


cdef inline void _outline(void (*f)(const real*, const real*, real*, Py_ssize_t, Py_ssize_t) noexcept nogil,
                          const real* a, const real* b, real* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    if real is float:
        fa_outline_f32(f, a, b, out, rows, n)
    else:
        fa_outline_f64(f, a, b, out, rows, n)


# ---- narrow lanes: several outer blocks side by side -------------------------
# With a narrow inner axis (st < LMAX / 4) a lane chunk is st wide, and the
# loops over the lanes run mostly in their scalar epilogues.  When a piece
# holds whole blocks (ni == st) of short reductions (n <= NSHORT), G = LMAX //
# st consecutive blocks go side by side into a tile (row j of the tile: row j
# of each block), are computed as one chunk, and go back (1M
# entries, float32, axis 1, Intel: softmax of (25000, 10, 4) 5.5 -> 1.9 ms,
# of (10000, 10, 10) 1.9 -> 1.3 ms, logsumexp 0.18-0.54x the time,
# log_softmax_backward 0.38-0.93x, softmax_backward 0.47-0.92x; with
# st = 16, softmax took 1.1-1.3x longer, so blocks of a whole register stay
# as they are).  The tile-to-tile kernels compute all LMAX lanes of the
# tile (constant width, see the lanes helpers); lanes past G st hold zeros
# (see _blocks_to_tile) and are never copied back.

cdef inline bint _narrow(Py_ssize_t n, Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    return ni == st and 4 * st < LMAX and n <= NSHORT


cdef inline void _blocks_to_tile(const real* x, real* tile, Py_ssize_t n, Py_ssize_t st,
                                 Py_ssize_t G) noexcept nogil:
    # tile[j*TS + g*st + k] = x[(g*n + j)*st + k], and zeros in the lanes
    # G*st..LMAX: the kernels compute all LMAX lanes, and leftover stack
    # bytes there are mostly subnormal numbers (pointers, small integers),
    # which cost microcode assists (float64 log_softmax_backward of (10000,
    # 10, 10) over axis 1 took 2x the time with them)
    cdef Py_ssize_t g, j, k
    cdef const real* src
    cdef real* dst
    for g in range(G):
        for j in range(n):
            src = x + (g * n + j) * st
            dst = tile + j * TS + g * st
            for k in range(st):
                dst[k] = src[k]
    for j in range(n):
        dst = tile + j * TS
        for k in range(G * st, LMAX):
            dst[k] = 0


cdef inline void _blocks_from_tile(const real* tile, real* out, Py_ssize_t n, Py_ssize_t st,
                                   Py_ssize_t G) noexcept nogil:
    cdef Py_ssize_t g, j, k
    cdef const real* src
    cdef real* dst
    for g in range(G):
        for j in range(n):
            src = tile + j * TS + g * st
            dst = out + (g * n + j) * st
            for k in range(st):
                dst[k] = src[k]


# ---- lanes helpers -----------------------------------------------------------
# The reductions keep one partial result per lane across the rows j.  With
# the chunk width a run-time L, GCC keeps those partials in the stack array
# and each row's update is a load, an operation and a store (a store-forward
# chain per row).  So each helper runs its body over sub-chunks of constant
# width 64, 32 or 16 lanes (float32), where the partials stay in zmm
# registers, and only the last < 16 lanes at a run-time width (1M entries,
# axis 1, Intel: (1000, 10, 100) softmax, log_softmax and logsumexp
# 0.83-0.85x the time, (100, 100, 100) 0.80-0.86x).

cdef inline Py_ssize_t _lane_width(Py_ssize_t r, size_t es) noexcept nogil:
    # float64 keeps the whole chunk at a run-time width: 64 lanes are 8 zmm
    # per partial array (too few registers left), and sub-chunks of 32 made
    # the narrow tiles 1.10-1.12x slower (logsumexp, softmax_backward of
    # (10000, 10, 10) over axis 1) for no clear gain elsewhere
    if es != 4:
        return r
    if r >= LMAX:
        return LMAX
    if r >= 32:
        return 32
    if r >= 16:
        return 16
    return r


cdef inline const real* _shift(const real* p, Py_ssize_t k) noexcept nogil:
    return p + k if p != NULL else p


cdef inline void _lanes_max(const real* x, real* m, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t k0 = 0, w
    while k0 < L:
        w = _lane_width(L - k0, sizeof(real))
        if w == LMAX:
            _lanes_max_w(x + k0, m + k0, n, st, LMAX)
        elif w == 32:
            _lanes_max_w(x + k0, m + k0, n, st, 32)
        elif w == 16:
            _lanes_max_w(x + k0, m + k0, n, st, 16)
        else:
            _lanes_max_w(x + k0, m + k0, n, st, w)
        k0 += w


cdef inline void _lanes_max_w(const real* x, real* m, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t j, k
    cdef const real* xr
    cdef real v
    for k in range(L):
        m[k] = -INFINITY
    for j in range(n):
        xr = x + j * st
        for k in range(L):
            v = xr[k]
            m[k] = v if v > m[k] else m[k]


cdef inline void _lanes_sum(const real* a, const real* b, acc_t* s, Py_ssize_t n, Py_ssize_t st,
                            Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t k0 = 0, w
    while k0 < L:
        w = _lane_width(L - k0, sizeof(real))
        if w == LMAX:
            _lanes_sum_w(a + k0, _shift(b, k0), s + k0, n, st, LMAX)
        elif w == 32:
            _lanes_sum_w(a + k0, _shift(b, k0), s + k0, n, st, 32)
        elif w == 16:
            _lanes_sum_w(a + k0, _shift(b, k0), s + k0, n, st, 16)
        else:
            _lanes_sum_w(a + k0, _shift(b, k0), s + k0, n, st, w)
        k0 += w


cdef inline void _lanes_sum_w(const real* a, const real* b, acc_t* s, Py_ssize_t n, Py_ssize_t st,
                            Py_ssize_t L) noexcept nogil:
    # s[k] = sum_j a[j, k] (or of a*b, products rounded in working precision)
    cdef real part[LMAX]
    cdef Py_ssize_t j, k, bb, e
    cdef const real* ar
    cdef const real* br
    for k in range(L):
        s[k] = 0
    bb = 0
    while bb < n:
        e = _imin(bb + JB, n)
        for k in range(L):
            part[k] = 0
        for j in range(bb, e):
            ar = a + j * st
            if b != NULL:
                br = b + j * st
                for k in range(L):
                    part[k] += ar[k] * br[k]
            else:
                for k in range(L):
                    part[k] += ar[k]
        for k in range(L):
            s[k] += part[k]
        bb = e


cdef inline void _lanes_rest(const real* x, const real* m, acc_t* rest, Py_ssize_t n,
                             Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t k0 = 0, w
    while k0 < L:
        w = _lane_width(L - k0, sizeof(real))
        if w == LMAX:
            _lanes_rest_w(x + k0, m + k0, rest + k0, n, st, LMAX)
        elif w == 32:
            _lanes_rest_w(x + k0, m + k0, rest + k0, n, st, 32)
        elif w == 16:
            _lanes_rest_w(x + k0, m + k0, rest + k0, n, st, 16)
        else:
            _lanes_rest_w(x + k0, m + k0, rest + k0, n, st, w)
        k0 += w


cdef inline void _lanes_rest_w(const real* x, const real* m, acc_t* rest, Py_ssize_t n,
                             Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    # rest[k] = sum over all but one maximum of exp(x - m), per lane
    cdef real part[LMAX]
    cdef real cnt[LMAX]
    cdef acc_t cacc[LMAX]
    cdef Py_ssize_t j, k, bb, e
    cdef const real* xr
    cdef real v, zero = 0, one = 1
    for k in range(L):
        rest[k] = 0
        cacc[k] = 0
    bb = 0
    while bb < n:
        e = _imin(bb + JB, n)
        for k in range(L):
            part[k] = 0
            cnt[k] = 0
        for j in range(bb, e):
            xr = x + j * st
            for k in range(L):
                v = xr[k]
                part[k] += zero if v == m[k] else fexpn(v - m[k])
                cnt[k] += one if v == m[k] else zero
        for k in range(L):
            rest[k] += part[k]
            cacc[k] += cnt[k]
        bb = e
    for k in range(L):
        rest[k] = rest[k] + (cacc[k] - 1)


cdef inline void _lanes_log1p(acc_t* r, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(L):
        r[k] = log1p_f64(r[k])


# ---- softmax -------------------------------------------------------------------

cdef void _softmax_row(const real* x, real* out, Py_ssize_t n) noexcept nogil:
    cdef real m = _rowmax(x, n)
    cdef Py_ssize_t i
    cdef real inv
    # the exps scaled by 2^64 / 2^600 (one multiplication less each), which
    # 1 / their sum takes out again: the outputs rounded once, subnormal
    # ones included
    for i in range(n):
        out[i] = fexpn_big(x[i] - m)
    inv = <real>(1.0 / _rowsum(out, <const real*>NULL, n))
    for i in range(n):
        out[i] = out[i] * inv


cdef inline void _lanes_expsum(const real* x, const real* m, real* out, acc_t* s, Py_ssize_t n,
                                Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t k0 = 0, w
    while k0 < L:
        w = _lane_width(L - k0, sizeof(real))
        if w == LMAX:
            _lanes_expsum_w(x + k0, m + k0, out + k0, s + k0, n, st, LMAX)
        elif w == 32:
            _lanes_expsum_w(x + k0, m + k0, out + k0, s + k0, n, st, 32)
        elif w == 16:
            _lanes_expsum_w(x + k0, m + k0, out + k0, s + k0, n, st, 16)
        else:
            _lanes_expsum_w(x + k0, m + k0, out + k0, s + k0, n, st, w)
        k0 += w


cdef inline void _lanes_expsum_w(const real* x, const real* m, real* out, acc_t* s, Py_ssize_t n,
                                  Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    # out[j, k] = exp(x[j, k] - m[k]) and s[k] = sum_j out[j, k]
    cdef real part[LMAX]
    cdef Py_ssize_t j, k, bb, e
    cdef const real* xr
    cdef real* orow
    cdef real t
    for k in range(L):
        s[k] = 0
    bb = 0
    while bb < n:
        e = _imin(bb + JB, n)
        for k in range(L):
            part[k] = 0
        for j in range(bb, e):
            xr = x + j * st
            orow = out + j * st
            for k in range(L):
                t = fexpn_big(xr[k] - m[k])
                orow[k] = t
                part[k] += t
        for k in range(L):
            s[k] += part[k]
        bb = e


cdef void _softmax_lanes(const real* x, real* out, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef real m[LMAX]
    cdef real inv[LMAX]
    cdef acc_t s[LMAX]
    cdef Py_ssize_t j, k
    cdef real* orow
    _lanes_max(x, m, n, st, L)
    _lanes_expsum(x, m, out, s, n, st, L)
    for k in range(L):
        inv[k] = <real>(1.0 / s[k])
    for j in range(n):
        orow = out + j * st
        for k in range(L):
            orow[k] = orow[k] * inv[k]


cdef void softmax_k(const real* x, real* out, Py_ssize_t outer, Py_ssize_t n,
                    Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0
    cdef bint big
    cdef double tileb[TBUF]
    cdef real* tile = <real*>tileb
    if outer <= 0 or n <= 0 or ni <= 0:
        return
    if st == 1:
        if _packed(n, sizeof(real)) or (real is double and _masked_rows(n, sizeof(real), 6, 2)):
            _outline(_pk_softmax[real], x, <const real*>NULL, out, outer, n)
        elif real is double and _masked_rows(n, sizeof(real), 17 if FA_VEC_BYTES == 64 else 13, 16):
            # float64 rows past two registers, up to 16, one at a time in
            # registers, fused (fa_pack_mid's PK_SOFTMAX: max, exps, sum,
            # scale).  1M entries, Zen 5, against the tiles (up to 48) and
            # the row path: rows of 17 0.93x, 20 0.8x, 33-64 0.57-0.7x,
            # 65-128 0.6-0.7x; AVX2 (rows of 13-64) 0.7-0.96x, but rows of
            # 9-10 1.1-1.2x (they keep their tiles).  Through
            # fa_pack's blocks (max, a loop of exps, sums) rows of 33-128
            # were 1.1-1.3x slower; log_softmax and logsumexp that way too
            _outline(_pk_softmax_mid[real], x, <const real*>NULL, out, outer, n)
        elif _loop_rows(n, sizeof(real)):
            _outline(_pk_softmax_mid[real], x, <const real*>NULL, out, outer, n)
        elif n <= NSHORT and _rowwise(n, sizeof(real)):
            _short(<_SmRow*>NULL, x, <const real*>NULL, <const real*>NULL, out, <acc_t*>NULL, n, outer)
        elif _tiled(n, sizeof(real), 256, 48):
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _prefetch_tile(x, out, r0, outer, n)
                _to_tile(x + r0 * n, tile, n, R)
                _softmax_lanes(tile, tile, n, TS, R)
                _from_tile(tile, out + r0 * n, n, R)
        else:
            big = n * <Py_ssize_t>sizeof(real) >= 4096 and outer * n * <Py_ssize_t>sizeof(real) > (1 << 20)
            for o in range(outer):
                if big and o + 1 < outer:
                    _prefetch_whole_row(x + (o + 1) * n, n)
                _softmax_row(x + o * n, out + o * n, n)
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            _blocks_to_tile(x + o * n * st, tile, n, st, R)
            _softmax_lanes(tile, tile, n, TS, LMAX)
            _blocks_from_tile(tile, out + o * n * st, n, st, R)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                _softmax_lanes(x + o * n * st + k0, out + o * n * st + k0, n, st, _imin(LMAX, ni - k0))


# ---- log_softmax -----------------------------------------------------------------

cdef inline void _rows_rest(const real* x, real* out, Py_ssize_t n, Py_ssize_t R, Py_ssize_t left,
                            acc_t* mx, acc_t* L, bint store) noexcept nogil:
    # for R <= RB rows of x: their maxima into mx and log1p of their rest
    # sums into L (x - max into out if store).  The log1p runs once over
    # the block, vectorized, instead of once a row in scalar double code
    # (~40% of log_softmax over float32 rows of 48).  left: rows from x
    # to the array's end (for the prefetch)
    cdef Py_ssize_t r
    cdef real m
    for r in range(RB):
        L[r] = 0
    for r in range(R):
        if r + 1 < left:
            _prefetch_row(x + (r + 1) * n, n)
        m = _rowmax(x + r * n, n)
        mx[r] = m
        L[r] = _restsum(x + r * n, n, m, out + r * n if store else out, store)
    for r in range(RB):
        L[r] = log1p_f64(L[r])


cdef void _log_softmax_rows(const real* x, real* out, Py_ssize_t n, Py_ssize_t R,
                            Py_ssize_t left) noexcept nogil:
    cdef acc_t mx[RB]
    cdef acc_t L[RB]
    cdef Py_ssize_t r, i
    cdef real lr
    cdef real* orow
    _rows_rest(x, out, n, R, left, mx, L, True)
    for r in range(R):
        lr = <real>L[r]
        orow = out + r * n
        for i in range(n):
            orow[i] = orow[i] - lr


cdef void _log_softmax_lanes(const real* x, real* out, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef real m[LMAX]
    cdef real lr[LMAX]
    cdef acc_t lse[LMAX]
    cdef Py_ssize_t j, k
    cdef const real* xr
    cdef real* orow
    _lanes_max(x, m, n, st, L)
    _lanes_rest(x, m, lse, n, st, L)
    _lanes_log1p(lse, L)
    for k in range(L):
        lr[k] = <real>lse[k]
    for j in range(n):
        xr = x + j * st
        orow = out + j * st
        for k in range(L):
            orow[k] = (xr[k] - m[k]) - lr[k]


cdef void log_softmax_k(const real* x, real* out, Py_ssize_t outer, Py_ssize_t n,
                        Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, k, rb
    cdef double tileb[TBUF]
    cdef real* tile = <real*>tileb
    cdef acc_t rs[TR]
    cdef real lr[TR]
    if outer <= 0 or n <= 0 or ni <= 0:
        return
    if st == 1:
        if real is float and _packed_rest(n, sizeof(real)):
            _outline(_pk_log_softmax[real], x, <const real*>NULL, out, outer, n)
        elif _rest_mid(n, sizeof(real)):
            _outline(_pk_log_softmax_mid[real], x, <const real*>NULL, out, outer, n)
        elif n <= NSHORT and _rowwise_rest(n, sizeof(real)):
            # x - max and the rest sums row by row, log1p across TR rows
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _short(<_LsmRow*>NULL, x + r0 * n, <const real*>NULL, <const real*>NULL,
                       out + r0 * n, rs, n, R)
                _lanes_log1p(rs, R)
                for k in range(R):
                    lr[k] = <real>rs[k]
                _short(<_SubRow*>NULL, out + r0 * n, <const real*>NULL, lr, out + r0 * n,
                       <acc_t*>NULL, n, R)
        elif _tiled(n, sizeof(real), 256, 100):
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _prefetch_tile(x, out, r0, outer, n)
                _to_tile(x + r0 * n, tile, n, R)
                _log_softmax_lanes(tile, tile, n, TS, R)
                _from_tile(tile, out + r0 * n, n, R)
        else:
            # blocks of at most 256 KiB of output (and never under a row),
            # so that the last pass finds x - max in L2
            rb = _imin(RB, (1 << 18) // (n * <Py_ssize_t>sizeof(real)))
            rb = rb if rb > 0 else 1
            for o from 0 <= o < outer by rb:
                _log_softmax_rows(x + o * n, out + o * n, n, _imin(rb, outer - o), outer - o)
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            _blocks_to_tile(x + o * n * st, tile, n, st, R)
            _log_softmax_lanes(tile, tile, n, TS, LMAX)
            _blocks_from_tile(tile, out + o * n * st, n, st, R)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                _log_softmax_lanes(x + o * n * st + k0, out + o * n * st + k0, n, st, _imin(LMAX, ni - k0))


# ---- logsumexp (out is (outer, inner): element (o, k) at out[o*st + k]) --------

cdef void _logsumexp_lanes(const real* x, real* out, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef real m[LMAX]
    cdef acc_t lse[LMAX]
    cdef Py_ssize_t k
    _lanes_max(x, m, n, st, L)
    _lanes_rest(x, m, lse, n, st, L)
    _lanes_log1p(lse, L)
    for k in range(L):
        out[k] = <real>(m[k] + lse[k])


cdef void logsumexp_k(const real* x, real* out, Py_ssize_t outer, Py_ssize_t n,
                      Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, k, r
    cdef double tileb[TBUF]
    cdef real* tile = <real*>tileb
    cdef real m
    cdef acc_t mx[RB]
    cdef acc_t L[RB]
    cdef acc_t rs[TR]
    cdef real mr[TR]
    if outer <= 0 or ni <= 0:
        return
    if n <= 0:
        for o in range(outer):
            for k in range(ni):
                out[o * st + k] = -INFINITY
        return
    if st == 1:
        if real is float and _packed_rest(n, sizeof(real)):
            _outline(_pk_logsumexp[real], x, <const real*>NULL, out, outer, n)
        elif _rest_mid(n, sizeof(real)):
            _outline(_pk_logsumexp_mid[real], x, <const real*>NULL, out, outer, n)
        elif n <= NSHORT and _rowwise_rest(n, sizeof(real)):
            # max and rest sum row by row, log1p across TR rows
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _short(<_LseRow*>NULL, x + r0 * n, <const real*>NULL, <const real*>NULL,
                       mr, rs, n, R)
                _lanes_log1p(rs, R)
                for k in range(R):
                    out[r0 + k] = <real>(mr[k] + rs[k])
        elif _tiled(n, sizeof(real), 256, 128):
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _prefetch_tile(x, <real*>NULL, r0, outer, n)
                _to_tile(x + r0 * n, tile, n, R)
                _logsumexp_lanes(tile, out + r0, n, TS, R)
        else:
            for o from 0 <= o < outer by RB:
                R = _imin(RB, outer - o)
                _rows_rest(x + o * n, <real*>NULL, n, R, outer - o, mx, L, False)
                for r in range(R):
                    out[o + r] = <real>(mx[r] + L[r])
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            _blocks_to_tile(x + o * n * st, tile, n, st, R)
            _logsumexp_lanes(tile, out + o * st, n, TS, R * st)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                _logsumexp_lanes(x + o * n * st + k0, out + o * st + k0, n, st, _imin(LMAX, ni - k0))


# ---- softmax_backward: y * (g - sum(g*y)) ------------------------------------------

cdef void _softmax_bwd_row(const real* g, const real* y, real* out, Py_ssize_t n) noexcept nogil:
    cdef real d = <real>_rowsum(g, y, n)
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = y[i] * (g[i] - d)


cdef void _softmax_bwd_lanes(const real* g, const real* y, real* out, Py_ssize_t n,
                             Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef acc_t s[LMAX]
    cdef real d[LMAX]
    cdef Py_ssize_t j, k
    cdef const real* gr
    cdef const real* yr
    cdef real* orow
    _lanes_sum(g, y, s, n, st, L)
    for k in range(L):
        d[k] = <real>s[k]
    for j in range(n):
        gr = g + j * st
        yr = y + j * st
        orow = out + j * st
        for k in range(L):
            orow[k] = yr[k] * (gr[k] - d[k])


cdef void softmax_backward_k(const real* g, const real* y, real* out, Py_ssize_t outer, Py_ssize_t n,
                             Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, off
    cdef real tg[TS * NSHORT]
    cdef real ty[TS * NSHORT]
    cdef acc_t s[TR]
    cdef real d[TR]
    if outer <= 0 or n <= 0 or ni <= 0:
        return
    if st == 1:
        if _packed_bwd(n, sizeof(real)) or _masked_rows(n, sizeof(real), 7 if real is float else 5, 2):
            _outline(_pk_softmax_bwd[real], g, y, out, outer, n)
        elif _masked_rows(n, sizeof(real), 7, 16):
            _outline(_pk_softmax_bwd_mid[real], g, y, out, outer, n)
        elif n <= NSHORT and _rowwise(n, sizeof(real)):
            _short(<_SmBwdRow*>NULL, g, y, <const real*>NULL, out, <acc_t*>NULL, n, outer)
        elif n <= NSHORT:
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                # row sums of g*y (products rounded as the reference rounds
                # them) through one transposed tile, then the rows directly
                _rows_mul(g + r0 * n, y + r0 * n, ty, R * n)
                _to_tile(ty, tg, n, R)
                _lanes_sum(tg, <const real*>NULL, s, n, TS, R)
                for k0 in range(R):
                    d[k0] = <real>s[k0]
                _short(<_SmBwd*>NULL, g + r0 * n, y + r0 * n, d, out + r0 * n, <acc_t*>NULL, n, R)
        else:
            for o in range(outer):
                if o + 1 < outer:
                    _prefetch_row(g + (o + 1) * n, n)
                    _prefetch_row(y + (o + 1) * n, n)
                _softmax_bwd_row(g + o * n, y + o * n, out + o * n, n)
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            off = o * n * st
            _blocks_to_tile(g + off, tg, n, st, R)
            _blocks_to_tile(y + off, ty, n, st, R)
            _softmax_bwd_lanes(tg, ty, tg, n, TS, LMAX)
            _blocks_from_tile(tg, out + off, n, st, R)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                off = o * n * st + k0
                _softmax_bwd_lanes(g + off, y + off, out + off, n, st, _imin(LMAX, ni - k0))


# ---- log_softmax_backward: g - exp(y) * sum(g) ---------------------------------------

cdef inline void _exp_row(int op, const real* a, const real* b, real* out, Py_ssize_t n, real c,
                          real d) noexcept nogil:
    # fa_exp_row's ops 0 (out = a - exp(b) c) and 1 (out = c exp(a - d)):
    # AVX-512 scales exp's 2^n by one vscalef there (1.2-1.3x faster than
    # the loops below); the same bits either way
    cdef Py_ssize_t i
    if FA_SCALEF:
        if real is float:
            fa_exp_row_f32(op, a, b, out, n, c, d)
        else:
            fa_exp_row_f64(op, a, b, out, n, c, d)
    elif op == 0:
        for i in range(n):
            out[i] = a[i] - fexp(b[i]) * c
    else:
        for i in range(n):
            out[i] = c * fexp(a[i] - d)


cdef void _log_softmax_bwd_row(const real* g, const real* y, real* out, Py_ssize_t n) noexcept nogil:
    _exp_row(0, g, y, out, n, <real>_rowsum(g, <const real*>NULL, n), 0)


cdef void _log_softmax_bwd_lanes(const real* g, const real* y, real* out, Py_ssize_t n,
                                 Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef acc_t s[LMAX]
    cdef real d[LMAX]
    cdef Py_ssize_t j, k
    cdef const real* gr
    cdef const real* yr
    cdef real* orow
    _lanes_sum(g, <const real*>NULL, s, n, st, L)
    for k in range(L):
        d[k] = <real>s[k]
    for j in range(n):
        gr = g + j * st
        yr = y + j * st
        orow = out + j * st
        for k in range(L):
            orow[k] = gr[k] - fexp(yr[k]) * d[k]


cdef void log_softmax_backward_k(const real* g, const real* y, real* out, Py_ssize_t outer, Py_ssize_t n,
                                 Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, off
    cdef real tg[TS * NSHORT]
    cdef real ty[TS * NSHORT]
    if outer <= 0 or n <= 0 or ni <= 0:
        return
    if st == 1:
        if _packed_bwd(n, sizeof(real)) or _masked_rows(n, sizeof(real), 5, 2):
            _outline(_pk_log_softmax_bwd[real], g, y, out, outer, n)
        elif _masked_rows(n, sizeof(real), 5, 16):
            _outline(_pk_log_softmax_bwd_mid[real], g, y, out, outer, n)
        elif n <= NSHORT and _rowwise(n, sizeof(real)):
            _short(<_LsmBwd*>NULL, g, y, <const real*>NULL, out, <acc_t*>NULL, n, outer)
        elif n <= NSHORT:
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _to_tile(g + r0 * n, tg, n, R)
                _to_tile(y + r0 * n, ty, n, R)
                _log_softmax_bwd_lanes(tg, ty, tg, n, TS, R)
                _from_tile(tg, out + r0 * n, n, R)
        else:
            for o in range(outer):
                if o + 1 < outer:
                    _prefetch_row(g + (o + 1) * n, n)
                    _prefetch_row(y + (o + 1) * n, n)
                _log_softmax_bwd_row(g + o * n, y + o * n, out + o * n, n)
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            off = o * n * st
            _blocks_to_tile(g + off, tg, n, st, R)
            _blocks_to_tile(y + off, ty, n, st, R)
            _log_softmax_bwd_lanes(tg, ty, tg, n, TS, LMAX)
            _blocks_from_tile(tg, out + off, n, st, R)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                off = o * n * st + k0
                _log_softmax_bwd_lanes(g + off, y + off, out + off, n, st, _imin(LMAX, ni - k0))


# ---- logsumexp_backward: g * exp(x - lse), g and lse reduced (o, k) -------------------

cdef void _lse_bwd_lanes(const real* g, const real* x, const real* lse, real* out, Py_ssize_t n,
                         Py_ssize_t st, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t j, k
    cdef const real* xr
    cdef real* orow
    for j in range(n):
        xr = x + j * st
        orow = out + j * st
        for k in range(L):
            orow[k] = g[k] * fexp(xr[k] - lse[k])


cdef void logsumexp_backward_k(const real* g, const real* x, const real* lse, real* out,
                               Py_ssize_t outer, Py_ssize_t n, Py_ssize_t ni, Py_ssize_t st) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, off
    cdef real tx[TS * NSHORT]
    if outer <= 0 or n <= 0 or ni <= 0:
        return
    if st == 1:
        if n <= NSHORT and _rowwise(n, sizeof(real)):
            _short(<_LseBwd*>NULL, g, x, lse, out, <acc_t*>NULL, n, outer)
        elif n <= NSHORT:
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                _to_tile(x + r0 * n, tx, n, R)
                _lse_bwd_lanes(g + r0, tx, lse + r0, tx, n, TS, R)
                _from_tile(tx, out + r0 * n, n, R)
        else:
            for o in range(outer):
                off = o * n
                _exp_row(1, x + off, <const real*>NULL, out + off, n, g[o], lse[o])
    elif _narrow(n, ni, st):
        for o from 0 <= o < outer by LMAX // st:
            R = _imin(LMAX // st, outer - o)
            _blocks_to_tile(x + o * n * st, tx, n, st, R)
            _lse_bwd_lanes(g + o * st, tx, lse + o * st, tx, n, TS, R * st)
            _blocks_from_tile(tx, out + o * n * st, n, st, R)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                _lse_bwd_lanes(g + o * st + k0, x + o * n * st + k0, lse + o * st + k0,
                               out + o * n * st + k0, n, st, _imin(LMAX, ni - k0))


# ===========================================================================
# cross-entropy
#
# One kernel for the four loss kinds:
#   tidx != NULL  class-index targets (ignore_index honoured), else p is a
#                 probability array shaped like x;
#   dx != NULL    also write dx = scale * (softmax(x) * sum(q) - q) (index
#                 targets: softmax(x) - q, as the reference forms it).
# q = (1 - eps) * onehot + eps / C (or (1 - eps) * p + eps / C), rounded in
# the working precision as the reference rounds it; a class with q == 0
# contributes 0 to the loss whatever its log-probability.  Targets are
# validated by the caller; an out-of-range index is never used to address
# memory (it matches no class).

cdef struct LossQ:
    double onem     # 1 - eps
    double qoff     # eps / C
    bint smooth     # eps != 0


cdef void _ce_lanes(const real* x, const npy_intp* tidx, const real* p, const real* sc,
                    real* loss, real* dx, Py_ssize_t n, Py_ssize_t st, Py_ssize_t L,
                    npy_intp ignore, LossQ q) noexcept nogil:
    cdef real m[LMAX]
    cdef real lr[LMAX]
    cdef real invr[LMAX]
    cdef real qsr[LMAX]
    cdef acc_t lse[LMAX]
    cdef acc_t qs[LMAX]
    cdef acc_t acc[LMAX]
    cdef Py_ssize_t j, k
    cdef const real* xr
    cdef const real* pr
    cdef real* dr
    cdef real v, lp, qc, sm, d, zero = 0, one = 1
    cdef real onem = <real>q.onem, qoff = <real>q.qoff
    cdef real qon = (onem + qoff) if q.smooth else one
    _lanes_max(x, m, n, st, L)
    _lanes_rest(x, m, lse, n, st, L)
    for k in range(L):
        # softmax = exp(x - m) / (1 + rest), NaN where the max is not finite
        invr[k] = <real>(1.0 / (1.0 + lse[k])) if (m[k] - m[k] == 0) else <real>NAN
        qs[k] = 0
        acc[k] = 0
    _lanes_log1p(lse, L)
    for k in range(L):
        lr[k] = <real>lse[k]
    if tidx == NULL:
        for j in range(n):
            pr = p + j * st
            for k in range(L):
                qs[k] += (onem * pr[k] + qoff) if q.smooth else pr[k]
    for k in range(L):
        qsr[k] = <real>qs[k]
    for j in range(n):
        xr = x + j * st
        if tidx != NULL:
            for k in range(L):
                lp = (xr[k] - m[k]) - lr[k]
                qc = qon if tidx[k] == j else qoff
                acc[k] += zero if qc == zero else qc * lp
        else:
            pr = p + j * st
            for k in range(L):
                lp = (xr[k] - m[k]) - lr[k]
                qc = (onem * pr[k] + qoff) if q.smooth else pr[k]
                acc[k] += zero if qc == zero else qc * lp
        if dx != NULL:
            dr = dx + j * st
            if tidx != NULL:
                for k in range(L):
                    sm = fexpn(xr[k] - m[k]) * invr[k]
                    qc = qon if tidx[k] == j else qoff
                    d = sc[k] * (sm - qc)
                    dr[k] = d if tidx[k] != ignore else zero
            else:
                pr = p + j * st
                for k in range(L):
                    sm = fexpn(xr[k] - m[k]) * invr[k]
                    qc = (onem * pr[k] + qoff) if q.smooth else pr[k]
                    dr[k] = sc[k] * (sm * qsr[k] - qc)
    if tidx != NULL:
        for k in range(L):
            loss[k] = <real>(-acc[k]) if tidx[k] != ignore else zero
    else:
        for k in range(L):
            loss[k] = <real>(-acc[k])


cdef inline acc_t _qlpsum(const real* x, const real* p, Py_ssize_t a, Py_ssize_t b, real m, real lse,
                          real qa, real qb, bint smooth) noexcept nogil:
    # sum over [a, b) of q * log_softmax(x) where q = qa (p NULL: class
    # indices) or q = qa * p + qb (smooth) or p; a term with q == 0 is 0
    cdef real part[NL]
    cdef acc_t acc[NL]
    cdef real lp, qc, zero = 0
    cdef Py_ssize_t i, k, bb, e, nb = a + (b - a) - (b - a) % NL
    for k in range(NL):
        acc[k] = 0
    bb = a
    while bb < nb:
        e = _imin(bb + BLK, nb)
        for k in range(NL):
            part[k] = 0
        if p == NULL:
            for i from bb <= i < e by NL:
                for k in range(NL):
                    part[k] += qa * ((x[i + k] - m) - lse)
        else:
            for i from bb <= i < e by NL:
                for k in range(NL):
                    lp = (x[i + k] - m) - lse
                    qc = (qa * p[i + k] + qb) if smooth else p[i + k]
                    part[k] += zero if qc == zero else qc * lp
        for k in range(NL):
            acc[k] += part[k]
        bb = e
    for i in range(nb, b):
        lp = (x[i] - m) - lse
        if p == NULL:
            qc = qa
        else:
            qc = (qa * p[i] + qb) if smooth else p[i]
        acc[0] += zero if qc == zero else qc * lp
    return _hsum(acc)


cdef void _ce_row(const real* x, npy_intp t, const real* p, real scv, real* loss, real* dx,
                  Py_ssize_t n, npy_intp ignore, LossQ q) noexcept nogil:
    # one contiguous row
    cdef Py_ssize_t i
    cdef real m, lp, qc, sm, smt, zero = 0, one = 1, lser, inv, qsr
    cdef acc_t rest, s
    cdef real onem = <real>q.onem, qoff = <real>q.qoff
    cdef real qon = (onem + qoff) if q.smooth else one
    cdef bint tv = 0 <= t < n
    if p == NULL and t == ignore:
        loss[0] = zero
        if dx != NULL:
            for i in range(n):
                dx[i] = zero
        return
    m = _rowmax(x, n)
    rest = _restsum(x, n, m, <real*>NULL, False)
    inv = <real>(1.0 / (1.0 + rest)) if (m - m == 0) else <real>NAN
    lser = <real>log1p_f64(rest)
    if p == NULL:
        # class index: q = qoff for every class but the target (qon)
        s = 0
        if qoff != zero:
            if tv:
                s = _qlpsum(x, p, 0, t, m, lser, qoff, zero, False) + _qlpsum(x, p, t + 1, n, m, lser, qoff, zero, False)
            else:
                s = _qlpsum(x, p, 0, n, m, lser, qoff, zero, False)
        smt = zero
        if tv:
            lp = (x[t] - m) - lser
            if qon != zero:
                s += qon * lp
            smt = fexpn(x[t] - m) * inv
        loss[0] = <real>(-s)
        if dx != NULL:
            for i in range(n):
                dx[i] = scv * (fexpn(x[i] - m) * inv - qoff)
            if tv:
                dx[t] = scv * (smt - qon)
    else:
        qsr = <real>(_rowsum(p, <const real*>NULL, n) * q.onem + qoff * n) if q.smooth else <real>_rowsum(p, <const real*>NULL, n)
        s = _qlpsum(x, p, 0, n, m, lser, onem, qoff, q.smooth)
        loss[0] = <real>(-s)
        if dx != NULL:
            if q.smooth:
                for i in range(n):
                    dx[i] = scv * ((fexpn(x[i] - m) * inv) * qsr - (onem * p[i] + qoff))
            else:
                for i in range(n):
                    dx[i] = scv * ((fexpn(x[i] - m) * inv) * qsr - p[i])


cdef void cross_entropy_k(const real* x, const npy_intp* tidx, const real* p, const real* sc,
                          real* loss, real* dx, Py_ssize_t outer, Py_ssize_t n, Py_ssize_t ni,
                          Py_ssize_t st, npy_intp ignore, double eps) noexcept nogil:
    cdef Py_ssize_t o, r0, R, k0, k, off
    cdef double txtpb[2 * TBUF + TGAP]
    cdef real* tx = <real*>txtpb
    cdef real* tp = <real*>(txtpb + TBUF + TGAP)
    cdef LossQ q
    cdef real nzero = -0.0, zero = 0
    cdef const real* pp
    cdef const npy_intp* pt
    cdef const real* ps
    cdef real* pd
    cdef real scv
    cdef bint ahead
    if outer <= 0 or ni <= 0:
        return
    if n <= 0:
        for o in range(outer):
            for k in range(ni):
                if tidx != NULL and tidx[o * st + k] == ignore:
                    loss[o * st + k] = zero
                else:
                    loss[o * st + k] = nzero
        return
    q.smooth = eps != 0
    q.onem = 1.0 - eps
    q.qoff = eps / n if q.smooth else 0.0
    if st == 1:
        if _tiled(n, sizeof(real), 200, 100):
            # the next tile's samples prefetched past the caches (_far)
            # where the tiles transpose in registers (float32, 5+ classes)
            # and for samples of up to 32 bytes: the tile loads waited on
            # memory.  16M float32 logits, 10 classes, loss 18.9-19.9 ->
            # 9.7-9.9 ms; 4 classes 17.7-18.7 -> 13.2-13.3, probability
            # targets over 3 25.4-25.9 -> 13.9; 8M float64 logits, 3
            # classes 16.2 -> 9.9-10.3.  Float64 samples of 10 classes took
            # 1.1-1.3x as long with it, of 16-32 about the same
            ahead = ((_tile_simd(n, sizeof(real)) or n * <Py_ssize_t>sizeof(real) <= 32)
                     and _far(outer * n * <Py_ssize_t>sizeof(real)))
            for r0 from 0 <= r0 < outer by TR:
                R = _imin(TR, outer - r0)
                if ahead:
                    _prefetch_next_tile(x, dx, r0, outer, n)
                    if p != NULL:
                        _prefetch_next_tile(p, <real*>NULL, r0, outer, n)
                _to_tile(x + r0 * n, tx, n, R)
                pt = NULL
                pp = NULL
                ps = NULL
                pd = NULL
                if tidx != NULL:
                    pt = tidx + r0
                if p != NULL:
                    _to_tile(p + r0 * n, tp, n, R)
                    pp = tp
                if sc != NULL:
                    ps = sc + r0
                if dx != NULL:
                    pd = tx
                _ce_lanes(tx, pt, pp, ps, loss + r0, pd, n, TS, R, ignore, q)
                if dx != NULL:
                    _from_tile(tx, dx + r0 * n, n, R)
        else:
            for o in range(outer):
                off = o * n
                if o + 1 < outer:
                    _prefetch_row(x + off + n, n)
                    if p != NULL:
                        _prefetch_row(p + off + n, n)
                pp = NULL
                pd = NULL
                if p != NULL:
                    pp = p + off
                if dx != NULL:
                    pd = dx + off
                scv = sc[o] if sc != NULL else zero
                _ce_row(x + off, tidx[o] if tidx != NULL else 0, pp, scv, loss + o, pd, n, ignore, q)
    else:
        for o in range(outer):
            for k0 from 0 <= k0 < ni by LMAX:
                off = o * n * st + k0
                pt = NULL
                pp = NULL
                ps = NULL
                pd = NULL
                if tidx != NULL:
                    pt = tidx + o * st + k0
                if p != NULL:
                    pp = p + off
                if sc != NULL:
                    ps = sc + o * st + k0
                if dx != NULL:
                    pd = dx + off
                _ce_lanes(x + off, pt, pp, ps, loss + o * st + k0, pd, n, st, _imin(LMAX, ni - k0), ignore, q)


# ===========================================================================
# the scalar helpers themselves, elementwise (accuracy tests and reports)

cdef void k_math(int which, const real* x, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if which == 0:
        for i in range(n):
            out[i] = fexp(x[i])
    elif which == 1:
        for i in range(n):
            out[i] = fexpn(x[i])
    elif which == 2:
        for i in range(n):
            out[i] = fexpm1n(x[i])
    elif which == 3:
        for i in range(n):
            out[i] = flog(x[i])
    elif which == 4:
        for i in range(n):
            out[i] = flog1p(x[i])
    elif which == 5:
        for i in range(n):
            out[i] = flog1p01(x[i])
    elif which == 6:
        for i in range(n):
            out[i] = ferfcp(x[i])
    elif which == 7:
        for i in range(n):
            out[i] = _tanh(x[i])
    elif which == 8:
        for i in range(n):
            out[i] = _sigmoid(x[i])


# ===========================================================================
# the table of kernel pointers this module exports

ctypedef void (*ew1_f32_t)(const float*, float*, Py_ssize_t, double, double) noexcept nogil
ctypedef void (*ew1_f64_t)(const double*, double*, Py_ssize_t, double, double) noexcept nogil
ctypedef void (*ew2_f32_t)(const float*, const float*, float*, Py_ssize_t, double, double) noexcept nogil
ctypedef void (*ew2_f64_t)(const double*, const double*, double*, Py_ssize_t, double, double) noexcept nogil
ctypedef void (*row1_f32_t)(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*row1_f64_t)(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*row2_f32_t)(const float*, const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*row2_f64_t)(const double*, const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*row3_f32_t)(const float*, const float*, const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*row3_f64_t)(const double*, const double*, const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef void (*loss_f32_t)(const float*, const npy_intp*, const float*, const float*, float*, float*,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, npy_intp, double) noexcept nogil
ctypedef void (*loss_f64_t)(const double*, const npy_intp*, const double*, const double*, double*, double*,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, npy_intp, double) noexcept nogil
ctypedef void (*math_f32_t)(int, const float*, float*, Py_ssize_t) noexcept nogil
ctypedef void (*math_f64_t)(int, const double*, double*, Py_ssize_t) noexcept nogil

cdef enum:
    # elementwise forward
    E_SIGMOID, E_LOG_SIGMOID, E_LOGIT, E_SOFTPLUS, E_TANH, E_RELU, E_LEAKY_RELU,
    E_GELU, E_GELU_TANH, E_SILU, N_EW1

cdef enum:
    # elementwise backward and binary
    B_SIGMOID, B_LOG_SIGMOID, B_LOGIT, B_SOFTPLUS, B_TANH, B_RELU, B_LEAKY_RELU,
    B_GELU, B_GELU_TANH, B_SILU, B_BCE, B_BCE_BACKWARD, B_SIGMOID_X, B_TANH_X, N_EW2

cdef enum:
    R_SOFTMAX, R_LOG_SOFTMAX, R_LOGSUMEXP, N_ROW1

cdef enum:
    R2_SOFTMAX_BACKWARD, R2_LOG_SOFTMAX_BACKWARD, N_ROW2

cdef struct FaTable:
    int level                  # 0 baseline, 3 x86-64-v3, 4 x86-64-v4
    int fma                    # compiled with hardware FMA
    ew1_f32_t ew1_f32[N_EW1]
    ew1_f64_t ew1_f64[N_EW1]
    ew2_f32_t ew2_f32[N_EW2]
    ew2_f64_t ew2_f64[N_EW2]
    row1_f32_t row1_f32[N_ROW1]
    row1_f64_t row1_f64[N_ROW1]
    row2_f32_t row2_f32[N_ROW2]
    row2_f64_t row2_f64[N_ROW2]
    row3_f32_t lse_bwd_f32
    row3_f64_t lse_bwd_f64
    loss_f32_t loss_f32
    loss_f64_t loss_f64
    math_f32_t math_f32
    math_f64_t math_f64


cdef void _fill_table(FaTable* t, int level) noexcept:
    t.level = level
    t.fma = FA_HAVE_FMA
    t.ew1_f32[E_SIGMOID] = k_sigmoid[float]
    t.ew1_f64[E_SIGMOID] = k_sigmoid[double]
    t.ew1_f32[E_LOG_SIGMOID] = k_log_sigmoid[float]
    t.ew1_f64[E_LOG_SIGMOID] = k_log_sigmoid[double]
    t.ew1_f32[E_LOGIT] = k_logit[float]
    t.ew1_f64[E_LOGIT] = k_logit[double]
    t.ew1_f32[E_SOFTPLUS] = k_softplus[float]
    t.ew1_f64[E_SOFTPLUS] = k_softplus[double]
    t.ew1_f32[E_TANH] = k_tanh[float]
    t.ew1_f64[E_TANH] = k_tanh[double]
    t.ew1_f32[E_RELU] = k_relu[float]
    t.ew1_f64[E_RELU] = k_relu[double]
    t.ew1_f32[E_LEAKY_RELU] = k_leaky_relu[float]
    t.ew1_f64[E_LEAKY_RELU] = k_leaky_relu[double]
    t.ew1_f32[E_GELU] = k_gelu[float]
    t.ew1_f64[E_GELU] = k_gelu[double]
    t.ew1_f32[E_GELU_TANH] = k_gelu_tanh[float]
    t.ew1_f64[E_GELU_TANH] = k_gelu_tanh[double]
    t.ew1_f32[E_SILU] = k_silu[float]
    t.ew1_f64[E_SILU] = k_silu[double]

    t.ew2_f32[B_SIGMOID] = k_sigmoid_backward[float]
    t.ew2_f64[B_SIGMOID] = k_sigmoid_backward[double]
    t.ew2_f32[B_LOG_SIGMOID] = k_log_sigmoid_backward[float]
    t.ew2_f64[B_LOG_SIGMOID] = k_log_sigmoid_backward[double]
    t.ew2_f32[B_LOGIT] = k_logit_backward[float]
    t.ew2_f64[B_LOGIT] = k_logit_backward[double]
    t.ew2_f32[B_SOFTPLUS] = k_softplus_backward[float]
    t.ew2_f64[B_SOFTPLUS] = k_softplus_backward[double]
    t.ew2_f32[B_TANH] = k_tanh_backward[float]
    t.ew2_f64[B_TANH] = k_tanh_backward[double]
    t.ew2_f32[B_RELU] = k_relu_backward[float]
    t.ew2_f64[B_RELU] = k_relu_backward[double]
    t.ew2_f32[B_LEAKY_RELU] = k_leaky_relu_backward[float]
    t.ew2_f64[B_LEAKY_RELU] = k_leaky_relu_backward[double]
    t.ew2_f32[B_GELU] = k_gelu_backward[float]
    t.ew2_f64[B_GELU] = k_gelu_backward[double]
    t.ew2_f32[B_GELU_TANH] = k_gelu_tanh_backward[float]
    t.ew2_f64[B_GELU_TANH] = k_gelu_tanh_backward[double]
    t.ew2_f32[B_SILU] = k_silu_backward[float]
    t.ew2_f64[B_SILU] = k_silu_backward[double]
    t.ew2_f32[B_BCE] = k_bce[float]
    t.ew2_f64[B_BCE] = k_bce[double]
    t.ew2_f32[B_BCE_BACKWARD] = k_bce_backward[float]
    t.ew2_f64[B_BCE_BACKWARD] = k_bce_backward[double]
    t.ew2_f32[B_SIGMOID_X] = k_sigmoid_backward_x[float]
    t.ew2_f64[B_SIGMOID_X] = k_sigmoid_backward_x[double]
    t.ew2_f32[B_TANH_X] = k_tanh_backward_x[float]
    t.ew2_f64[B_TANH_X] = k_tanh_backward_x[double]

    t.row1_f32[R_SOFTMAX] = softmax_k[float]
    t.row1_f64[R_SOFTMAX] = softmax_k[double]
    t.row1_f32[R_LOG_SOFTMAX] = log_softmax_k[float]
    t.row1_f64[R_LOG_SOFTMAX] = log_softmax_k[double]
    t.row1_f32[R_LOGSUMEXP] = logsumexp_k[float]
    t.row1_f64[R_LOGSUMEXP] = logsumexp_k[double]
    t.row2_f32[R2_SOFTMAX_BACKWARD] = softmax_backward_k[float]
    t.row2_f64[R2_SOFTMAX_BACKWARD] = softmax_backward_k[double]
    t.row2_f32[R2_LOG_SOFTMAX_BACKWARD] = log_softmax_backward_k[float]
    t.row2_f64[R2_LOG_SOFTMAX_BACKWARD] = log_softmax_backward_k[double]
    t.lse_bwd_f32 = logsumexp_backward_k[float]
    t.lse_bwd_f64 = logsumexp_backward_k[double]
    t.loss_f32 = cross_entropy_k[float]
    t.loss_f64 = cross_entropy_k[double]
    t.math_f32 = k_math[float]
    t.math_f64 = k_math[double]
