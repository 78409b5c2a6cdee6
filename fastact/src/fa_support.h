/*
 * fa_support.h -- the few things the Cython kernels of fastact need from C.
 *
 * Everything here is `static inline`, so that each extension module that
 * includes it (the baseline `fastact._kernels` and the x86-64-v3 / -v4
 * variants built from the same Cython source) gets its own copy compiled for
 * its own instruction set, and the compiler can inline and vectorize it.
 *
 *  - bit casts between floats and unsigned integers (through memcpy, which
 *    compilers turn into a register move, and which is well defined C);
 *  - the low part of an exact product (FMA where the target has it, Dekker's
 *    splitting where it does not);
 *  - run-time CPU detection for the SIMD level;
 *  - OpenMP queries that also compile without OpenMP.
 *
 * No floating-point environment is touched anywhere (no fesetenv, no
 * MXCSR changes), and the extension must never be linked with -ffast-math.
 */
#ifndef FASTACT_FA_SUPPORT_H
#define FASTACT_FA_SUPPORT_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>
#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static inline uint32_t fa_f32_bits(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float fa_bits_f32(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }
static inline uint64_t fa_f64_bits(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
static inline double fa_bits_f64(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* ------------------------------------------------------------------------
 * Exact products: a * b = hi + lo exactly, with hi = fl(a * b).
 *
 * With a hardware FMA, lo = fma(a, b, -hi).  Without one (x86-64 baseline)
 * Dekker's algorithm: split each factor into halves whose products are
 * exact.  The Dekker path must not be compiled with FP contraction into FMA
 * instructions, which cannot happen on a target that has no FMA.
 */
/* Bytes per SIMD register of the target the file is compiled for: a short
 * row whose length in bytes is not a multiple of it is not written row by
 * row (GCC would leave a scalar remainder of every row), but through a
 * transposed tile. */
#if defined(__AVX512F__)
#define FA_VEC_BYTES 64
#elif defined(__AVX__)
#define FA_VEC_BYTES 32
#else
#define FA_VEC_BYTES 16
#endif

/* exp's constants, written once: the scalar exps of _kernels_body.pxi
 * (exp_*, expn_*, expm1n_* through _expm1r_*) and the vector ones below
 * (fa_vexpn_big_*).  x = n ln2 + r with n = rint(x log2e) by the 1.5*2^p
 * trick (MAGIC), ln2 in two parts (the high one with trailing zero bits, so
 * n * LN2HI is exact), and exp(r) = 1 + r + r^2 P(r), P's minimax
 * coefficients C0.. (see the pxi for the accuracy). */
#define FA_EXP32_LOG2E 1.44269504088896341f
#define FA_EXP32_MAGIC 12582912.0f
#define FA_LN2HI_F32 0.693145751953125f
#define FA_LN2LO_F32 1.428606765330187e-06f
#define FA_EXP32_C0 0.499999934517084335897f
#define FA_EXP32_C1 0.166665206898330188061f
#define FA_EXP32_C2 0.0416683873612611455482f
#define FA_EXP32_C3 0.00836870982417119432296f
#define FA_EXP32_C4 0.00138146132607797708093f
#define FA_EXP64_LOG2E 1.4426950408889634
#define FA_EXP64_MAGIC 6755399441055744.0
#define FA_LN2HI_F64 0.6931471803691238
#define FA_LN2LO_F64 1.9082149292705877e-10
#define FA_EXP64_C0 0.500000000000001061675
#define FA_EXP64_C1 0.166666666666664127759
#define FA_EXP64_C2 0.0416666666665302659992
#define FA_EXP64_C3 0.0083333333334943329904
#define FA_EXP64_C4 0.00138888889435976896333
#define FA_EXP64_C5 0.000198412695067796630235
#define FA_EXP64_C6 0.0000248014931361972530688
#define FA_EXP64_C7 0.00000275575862664084875914
#define FA_EXP64_C8 2.76302339149586352775e-7
#define FA_EXP64_C9 2.50000722921512436658e-8
/* the clamps of x: below LO every exp is 0 (after its single rounding into
 * the subnormals), above HI inf */
#define FA_EXP32_LO -104.0f
#define FA_EXP32_HI 100.0f
#define FA_EXP64_LO -760.0
#define FA_EXP64_HI 720.0
/* below ZERO exp(x) rounds to 0 (ln 2^-150 = -103.972, ln 2^-1075 =
 * -745.133).  The vector exps give those lanes 0 outright: computed
 * through an underflow (or a subnormal on the way to 0), they cost a
 * microcode assist of ~150 cycles for the whole vector on Intel cores
 * (Xeon, AVX-512: float32 softmax of rows half -inf, as attention masks
 * make them, 2.65 ns an entry against 0.39; Zen 5 has no such assist). */
#define FA_EXP32_ZERO -103.98f
#define FA_EXP64_ZERO -745.2
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA) \
    || defined(__powerpc64__) || defined(__s390x__)
#define FA_HAVE_FMA 1
static inline float fa_two_prod_lo_f32(float a, float b, float hi) { return __builtin_fmaf(a, b, -hi); }
static inline double fa_two_prod_lo_f64(double a, double b, double hi) { return __builtin_fma(a, b, -hi); }
#else
#define FA_HAVE_FMA 0
static inline float fa_two_prod_lo_f32(float a, float b, float hi)
{
    const float k = 4097.0f; /* 2^12 + 1 */
    float ca = k * a, cb = k * b;
    float ah = ca - (ca - a), al = a - ah;
    float bh = cb - (cb - b), bl = b - bh;
    return ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
}
static inline double fa_two_prod_lo_f64(double a, double b, double hi)
{
    const double k = 134217729.0; /* 2^27 + 1 */
    double ca = k * a, cb = k * b;
    double ah = ca - (ca - a), al = a - ah;
    double bh = cb - (cb - b), bl = b - bh;
    return ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
}
#endif

/* relu's derivative applied to g: g where x > 0, x where x is NaN, +0
 * elsewhere.  With AVX-512 the select is made of sign masks of integer
 * differences instead of a comparison: from a comparison's mask GCC (and
 * LLVM) fold the load of g into a masked load (vmovups {k}{z}), which cannot
 * start before x is loaded and compared -- relu_backward (4096, 1024) took
 * 1.6-1.7x as long on AMD Zen 5.  Without AVX-512 the comparison stays
 * (AVX2: two compares, an and and a blend that reads g unmasked; the
 * integer masks took 3-7% longer there). */
#if FA_VEC_BYTES == 64
#define FA_RELU_BWD(T, SFX, UT, IT, B)                                         \
static inline T fa_relu_bwd_##SFX(T g, T x)                                    \
{                                                                               \
    UT xb = fa_##SFX##_bits(x), sign = (UT)1 << (B - 1);                        \
    /* all ones where 0 < bits < sign: x > 0 (or a NaN, handled next) */        \
    UT pos = ~(UT)((IT)((xb - 1) | xb) >> (B - 1));                             \
    /* all ones where |x|'s bits exceed infinity's: x is NaN */                 \
    UT nan = (UT)((IT)(fa_##SFX##_bits((T)INFINITY) - (xb & ~sign)) >> (B - 1)); \
    return fa_bits_##SFX((fa_##SFX##_bits(g) & pos & ~nan) | (xb & nan));       \
}
#else
#define FA_RELU_BWD(T, SFX, UT, IT, B)                                         \
static inline T fa_relu_bwd_##SFX(T g, T x)                                    \
{                                                                               \
    T z = x != x ? x : (T)0;    /* first: one blend with g, loaded plainly */  \
    return x > 0 ? g : z;                                                       \
}
#endif
FA_RELU_BWD(float, f32, uint32_t, int32_t, 32)
FA_RELU_BWD(double, f64, uint64_t, int64_t, 64)

/* ------------------------------------------------------------------------
 * Run-time SIMD level: 4 = x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), 3 = x86-64-v3
 * (AVX2, FMA, BMI1/2, F16C, MOVBE, LZCNT), 0 = anything else.  The
 * compiler's CPU model checks both the CPUID bits and that the OS saves the
 * wider register state (XGETBV).
 */
static inline int fa_cpu_level(void)
{
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    if (__builtin_cpu_supports("x86-64-v4")) return 4;
    if (__builtin_cpu_supports("x86-64-v3")) return 3;
#else
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
             && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
             && __builtin_cpu_supports("f16c");
    int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
             && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
             && __builtin_cpu_supports("avx512vl");
    if (v4) return 4;
    if (v3) return 3;
#endif
#endif
    return 0;
}

/* ------------------------------------------------------------------------
 * OpenMP, or its absence. */
static inline int fa_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline int fa_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Prefetch the first `bytes` (rounded to lines) of the next row while the
 * current one is computed from L1: the row passes are compute-bound, and the
 * hardware prefetcher only starts on the next row's first demand misses. */
#if defined(__GNUC__) || defined(__clang__)
#define FA_PREFETCH_RANGE(NAME, Q, RW)                                          \
static inline void NAME(Q void *p, ptrdiff_t bytes)                            \
{                                                                               \
    Q char *c = (Q char *)p;                                                    \
    ptrdiff_t i;                                                                \
    for (i = 0; i < bytes; i += 64)                                             \
        __builtin_prefetch(c + i, RW, 3);                                       \
}
#else
#define FA_PREFETCH_RANGE(NAME, Q, RW)                                          \
static inline void NAME(Q void *p, ptrdiff_t bytes) { (void)p; (void)bytes; }
#endif
FA_PREFETCH_RANGE(fa_prefetch_range, const, 0)
/* the same for lines about to be written (prefetchw) */
FA_PREFETCH_RANGE(fa_prefetchw_range, , 1)

/* wall-clock seconds (only used around parallel regions) */
static inline double fa_wtime(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0.0;
#endif
}

/* number of threads actually running the current parallel region (1 outside) */
static inline int fa_omp_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Reductions over one short contiguous row whose length n is a multiple of
 * the register width (the callers check n * itemsize % FA_VEC_BYTES == 0 and
 * inline these with a constant n; n = 0 gives the empty sum, 0, and max,
 * -inf): one register of partial results, then a halving tree in a fixed
 * order.  Written with intrinsics where the target has AVX/AVX-512: from
 * plain C, GCC vectorized the loop over rows instead and built the tree out
 * of one permutation per lane (rows of 16 float32 at (65536, 16): 520 us
 * against 305 us for Numba's per-row registers).  The max ignores NaN (-inf
 * when every entry is NaN): v > t ? v : t, which is what maxps(v, t)
 * computes.  fa_rowsub (out = a - c, out may be a) is here for the same
 * reason: GCC vectorized its plain-C loop over the rows, with a transpose
 * in and out (x86-64-v3, 1M entries: float32 log_softmax rows of 16 1670 ->
 * 1085 us, float64 rows of 16 3186 -> 1860 us). */
#if FA_VEC_BYTES >= 32
#include <immintrin.h>
static inline float fa_hsum256_f32(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}
static inline float fa_hmax256_f32(__m256 v)
{
    __m128 a = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    a = _mm_max_ps(_mm_movehl_ps(a, a), a);
    return _mm_cvtss_f32(_mm_max_ss(_mm_movehdup_ps(a), a));
}
static inline double fa_hsum256_f64(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}
static inline double fa_hmax256_f64(__m256d v)
{
    __m128d a = _mm_max_pd(_mm256_extractf128_pd(v, 1), _mm256_castpd256_pd128(v));
    return _mm_cvtsd_f64(_mm_max_sd(_mm_unpackhi_pd(a, a), a));
}
#endif
#if FA_VEC_BYTES == 64
#define FA_VF32 __m512
#define FA_VF64 __m512d
#define FA_LOAD_f32 _mm512_loadu_ps
#define FA_LOAD_f64 _mm512_loadu_pd
#define FA_OP(op, sfx) _mm512_##op##_##sfx
/* the upper half of a float32 register through the float64 extract, which
 * AVX-512F has (the float32 one needs AVX512DQ) */
static inline __m256 fa_hi256_f32(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
static inline float fa_hsum_vf32(__m512 v)
{
    return fa_hsum256_f32(_mm256_add_ps(_mm512_castps512_ps256(v), fa_hi256_f32(v)));
}
static inline float fa_hmax_vf32(__m512 v)
{
    return fa_hmax256_f32(_mm256_max_ps(fa_hi256_f32(v), _mm512_castps512_ps256(v)));
}
static inline double fa_hsum_vf64(__m512d v)
{
    return fa_hsum256_f64(_mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1)));
}
static inline double fa_hmax_vf64(__m512d v)
{
    return fa_hmax256_f64(_mm256_max_pd(_mm512_extractf64x4_pd(v, 1), _mm512_castpd512_pd256(v)));
}
#elif FA_VEC_BYTES == 32
#define FA_VF32 __m256
#define FA_VF64 __m256d
#define FA_LOAD_f32 _mm256_loadu_ps
#define FA_LOAD_f64 _mm256_loadu_pd
#define FA_OP(op, sfx) _mm256_##op##_##sfx
#define fa_hsum_vf32 fa_hsum256_f32
#define fa_hmax_vf32 fa_hmax256_f32
#define fa_hsum_vf64 fa_hsum256_f64
#define fa_hmax_vf64 fa_hmax256_f64
#endif

#ifdef FA_VF32
#define FA_ROW_REDUCE(T, V, SFX, PS)                                            \
static inline T fa_rowdot_##SFX(const T *a, const T *b, ptrdiff_t n)            \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    V t = FA_OP(setzero, PS)();                                                 \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        t = FA_OP(add, PS)(t, FA_OP(mul, PS)(FA_LOAD_##SFX(a + i), FA_LOAD_##SFX(b + i))); \
    return fa_hsum_v##SFX(t);                                                   \
}                                                                               \
static inline T fa_rowsum_##SFX(const T *a, ptrdiff_t n)                        \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    V t = FA_OP(setzero, PS)();                                                 \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        t = FA_OP(add, PS)(t, FA_LOAD_##SFX(a + i));                            \
    return fa_hsum_v##SFX(t);                                                   \
}                                                                               \
static inline T fa_rowmax_##SFX(const T *a, ptrdiff_t n)                        \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    V t = FA_OP(set1, PS)(-(T)INFINITY);                                        \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        t = FA_OP(max, PS)(FA_LOAD_##SFX(a + i), t);                            \
    return fa_hmax_v##SFX(t);                                                   \
}                                                                               \
static inline void fa_rowsub_##SFX(const T *a, T c, T *out, ptrdiff_t n)        \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    V cv = FA_OP(set1, PS)(c);                                                  \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        FA_OP(storeu, PS)(out + i, FA_OP(sub, PS)(FA_LOAD_##SFX(a + i), cv));   \
}
FA_ROW_REDUCE(float, FA_VF32, f32, ps)
FA_ROW_REDUCE(double, FA_VF64, f64, pd)
#else
/* no vector intrinsics here: the same order of operations in plain C */
#define FA_ROW_REDUCE(T, SFX)                                                   \
static inline T fa_hsum_##SFX(T *t, int w)                                      \
{                                                                               \
    for (int h = w / 2; h >= 1; h /= 2)                                         \
        for (int k = 0; k < h; k++) t[k] += t[k + h];                           \
    return t[0];                                                                \
}                                                                               \
static inline T fa_rowdot_##SFX(const T *a, const T *b, ptrdiff_t n)            \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    T t[W];                                                                     \
    for (int k = 0; k < W; k++) t[k] = 0;                                       \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        for (int k = 0; k < W; k++) t[k] += a[i + k] * b[i + k];                \
    return fa_hsum_##SFX(t, W);                                                 \
}                                                                               \
static inline T fa_rowsum_##SFX(const T *a, ptrdiff_t n)                        \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    T t[W];                                                                     \
    for (int k = 0; k < W; k++) t[k] = 0;                                       \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        for (int k = 0; k < W; k++) t[k] += a[i + k];                           \
    return fa_hsum_##SFX(t, W);                                                 \
}                                                                               \
static inline T fa_rowmax_##SFX(const T *a, ptrdiff_t n)                        \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    T t[W], v;                                                                  \
    for (int k = 0; k < W; k++) t[k] = -(T)INFINITY;                            \
    for (ptrdiff_t i = 0; i < n; i += W)                                        \
        for (int k = 0; k < W; k++) { v = a[i + k]; t[k] = v > t[k] ? v : t[k]; } \
    for (int h = W / 2; h >= 1; h /= 2)                                         \
        for (int k = 0; k < h; k++) { v = t[k + h]; t[k] = v > t[k] ? v : t[k]; } \
    return t[0];                                                                \
}                                                                               \
static inline void fa_rowsub_##SFX(const T *a, T c, T *out, ptrdiff_t n)        \
{                                                                               \
    for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i] - c;                        \
}
FA_ROW_REDUCE(float, f32)
FA_ROW_REDUCE(double, f64)
#endif

/* Tiles of float32 short rows (n <= 32): tile[j*ts + r] = rows[r*n + j]
 * for r < R, j < n (to_tile = 1), or back (to_tile = 0; a constant at each
 * inlined call).  With AVX-512, blocks of 16 rows by 16 columns go through
 * registers: masked loads of the row pieces (nothing is read past a row or
 * the last row), an in-register 16 x 16 transpose, whole-register stores
 * into the tile (its lanes >= R are written but never read as results), and
 * masked stores back into the rows (AVX2: 8 x 8 blocks, see there; one
 * fa_tile_f32 below for both, over the row-piece ops defined here).  GCC's
 * own code for these loops, even with a constant n, was one scalar load and
 * store per entry.  FA_TILE_SIMD says whether this path exists; without it
 * the callers keep their own loops and the plain-C version below is not
 * used. */
#if FA_VEC_BYTES == 64
#define FA_TILE_SIMD 1
static inline void fa_tr16_f32(__m512 *r)
{
    __m512 t[16], u0, u1, u2, u3;
    __m512d a, b;
    int i, c;
    for (i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g + 3 */
    for (i = 0; i < 16; i += 4) {
        a = _mm512_castps_pd(t[i]);
        b = _mm512_castps_pd(t[i + 2]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        a = _mm512_castps_pd(t[i + 1]);
        b = _mm512_castps_pd(t[i + 3]);
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    }
    for (c = 0; c < 4; c++) {
        u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
        u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
    for (i = 0; i < 16; i++)
        r[i] = t[i];
}
#define fa_tr_f32 fa_tr16_f32
/* pieces of a row (for fa_tile_f32, fa_rows_n and fa_pack_n below), a
 * piece being the first c lanes of a register (fa_piece_of(c), made once
 * per call or block): loaded with the other
 * lanes cleared (whole where avail entries can be read, masked otherwise),
 * stored by a masked store, filled past c with f by fa_rfill.  Only the
 * padded rows (op | 16) are loaded whole: a masked load of a piece's few
 * entries touches one cache line where a whole register, unaligned, splits
 * two (softmax_backward float32 rows of 20 took 1.5x as long, rows of 10-12
 * 1.13-1.19x, on AMD Zen 5). */
#define FA_RLOAD_INSIDE 0
#define FA_PIECE_OPS(T, V, SFX, PS, MT, W)                                      \
typedef struct { MT m; } fa_piece_##SFX;        /* the lanes below c */        \
static inline fa_piece_##SFX fa_piece_of_##SFX(int c)                           \
{                                                                               \
    fa_piece_##SFX q;                                                           \
    q.m = c >= W ? (MT)~0u : (MT)((1u << c) - 1);                               \
    return q;                                                                   \
}                                                                               \
static inline V fa_rload_##SFX(const T *p, fa_piece_##SFX q, ptrdiff_t avail)  \
{                                                                               \
    if (avail >= W)                                                             \
        return _mm512_maskz_mov_##PS(q.m, _mm512_loadu_##PS(p));                \
    return _mm512_maskz_loadu_##PS(q.m, p);                                     \
}                                                                               \
static inline void fa_rstore_##SFX(T *p, V v, fa_piece_##SFX q)                 \
{                                                                               \
    _mm512_mask_storeu_##PS(p, q.m, v);                                         \
}                                                                               \
static inline V fa_rfill_##SFX(V v, fa_piece_##SFX q, T f)                      \
{                                                                               \
    return _mm512_mask_mov_##PS(_mm512_set1_##PS(f), q.m, v);                   \
}
FA_PIECE_OPS(float, __m512, f32, ps, __mmask16, 16)
FA_PIECE_OPS(double, __m512d, f64, pd, __mmask8, 8)
#elif FA_VEC_BYTES == 32 && defined(__AVX2__)
/* AVX2: blocks of 8 rows by 8 columns through an in-register 8 x 8
 * transpose.  No masked moves (microcode on AMD Zen 3): a row piece is one
 * plain 8-entry load, its lanes past the piece cleared, unless those 8
 * entries would reach past the R rows, when the piece is copied into a
 * zeroed buffer first (the block's last row or two); back into the rows,
 * pieces of 4, 2 and 1 entries are stored. */
#define FA_TILE_SIMD 1
/* pieces of a row: stores of the first c lanes of a register in pieces of
 * 4, 2 and 1 entries (2 and 1 for float64), never past them; loads of a
 * whole register where avail entries can be read (a zero-padded copy
 * otherwise); a mask of the lanes below c */
static inline void fa_store_part_f32(float *p, __m256 v, int c)
{
    __m128 h = _mm256_castps256_ps128(v);
    if (c >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    if (c & 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (c & 2) {
        _mm_storel_pi((__m64 *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
    }
    if (c & 1)
        _mm_store_ss(p, h);
}
static inline void fa_store_part_f64(double *p, __m256d v, int c)
{
    __m128d h = _mm256_castpd256_pd128(v);
    if (c >= 4) {
        _mm256_storeu_pd(p, v);
        return;
    }
    if (c & 2) {
        _mm_storeu_pd(p, h);
        h = _mm256_extractf128_pd(v, 1);
        p += 2;
    }
    if (c & 1)
        _mm_store_sd(p, h);
}
#define FA_PART_OPS(T, V, SFX, PS, W, CMPLANES)                                 \
static inline V fa_load_part_##SFX(const T *p, ptrdiff_t avail)                 \
{                                                                               \
    T buf[W];                                                                   \
    if (avail >= W)                                                             \
        return _mm256_loadu_##PS(p);                                            \
    memset(buf, 0, sizeof buf);                                                 \
    if (avail > 0)                                                              \
        memcpy(buf, p, (size_t)avail * sizeof(T));                              \
    return _mm256_loadu_##PS(buf);                                              \
}                                                                               \
/* all bits set in lanes < c */                                                 \
static inline V fa_lanes_##SFX(int c)                                           \
{                                                                               \
    return CMPLANES;                                                            \
}
FA_PART_OPS(float, __m256, f32, ps, 8,
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c),
                                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))))
FA_PART_OPS(double, __m256d, f64, pd, 4,
            _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(c),
                                                   _mm256_setr_epi64x(0, 1, 2, 3))))
static inline void fa_tr8_f32(__m256 *r)
{
    __m256 t[8], u[8];
    int i;
    for (i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      /* a0 b0 a1 b1 | a4 b4 a5 b5 */
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  /* a2 b2 a3 b3 | a6 b6 a7 b7 */
    }
    for (i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);      /* column 0 | 4 of 4 rows */
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);  /* 1 | 5 */
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);  /* 2 | 6 */
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);  /* 3 | 7 */
    }
    for (i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}
#define fa_tr_f32 fa_tr8_f32
/* pieces of a row (for fa_tile_f32, fa_rows_n and fa_pack_n below)
 * without masked moves (the ops of the AVX-512 ones): whole-register loads
 * where avail entries can be read
 * (a zero-padded copy otherwise), the lanes past c cleared by a lane mask;
 * stores in pieces never past c (fa_store_part, above); filled past c with
 * f by a blend */
#define FA_RLOAD_INSIDE 1
#define FA_PIECE_OPS(T, V, SFX, PS)                                             \
typedef struct { V m; int c; } fa_piece_##SFX;  /* the lanes below c */        \
static inline fa_piece_##SFX fa_piece_of_##SFX(int c)                           \
{                                                                               \
    fa_piece_##SFX q;                                                           \
    q.m = fa_lanes_##SFX(c);                                                    \
    q.c = c;                                                                    \
    return q;                                                                   \
}                                                                               \
static inline V fa_rload_##SFX(const T *p, fa_piece_##SFX q, ptrdiff_t avail)  \
{                                                                               \
    return _mm256_and_##PS(q.m, fa_load_part_##SFX(p, avail));                  \
}                                                                               \
static inline void fa_rstore_##SFX(T *p, V v, fa_piece_##SFX q)                 \
{                                                                               \
    fa_store_part_##SFX(p, v, q.c);                                             \
}                                                                               \
static inline V fa_rfill_##SFX(V v, fa_piece_##SFX q, T f)                      \
{                                                                               \
    return _mm256_blendv_##PS(_mm256_set1_##PS(f), v, q.m);                     \
}
FA_PIECE_OPS(float, __m256, f32, ps)
FA_PIECE_OPS(double, __m256d, f64, pd)
#else
#define FA_TILE_SIMD 0
static inline void fa_tile_f32(const float *src, float *dst, ptrdiff_t n, ptrdiff_t R, ptrdiff_t ts,
                               int to_tile)
{
    for (ptrdiff_t r = 0; r < R; r++)
        for (ptrdiff_t j = 0; j < n; j++) {
            if (to_tile)
                dst[j * ts + r] = src[r * n + j];
            else
                dst[r * n + j] = src[j * ts + r];
        }
}
#endif
#if FA_TILE_SIMD
/* blocks of W rows by W columns: the rows' pieces (fa_rload, cleared past
 * the block's columns; nothing read past the last row), a transpose in
 * registers, whole-register stores into the tile; back: whole loads from
 * the tile, the transpose, stores of the pieces (fa_rstore) */
static inline void fa_tile_f32(const float *src, float *dst, ptrdiff_t n, ptrdiff_t R, ptrdiff_t ts,
                               int to_tile)
{
    enum { W = FA_VEC_BYTES / sizeof(float) };
    FA_VF32 v[W];
    fa_piece_f32 q;
    ptrdiff_t r0, c0, i, rows, cols, at;
    for (r0 = 0; r0 < R; r0 += W) {
        rows = R - r0 < W ? R - r0 : W;
        for (c0 = 0; c0 < n; c0 += W) {
            cols = n - c0 < W ? n - c0 : W;
            q = fa_piece_of_f32((int)cols);
            if (to_tile) {
                for (i = 0; i < W; i++) {
                    at = (r0 + i) * n + c0;
                    v[i] = i < rows ? fa_rload_f32(src + at, q, FA_RLOAD_INSIDE ? R * n - at : 0)
                                    : FA_OP(setzero, ps)();
                }
                fa_tr_f32(v);
                for (i = 0; i < cols; i++)
                    FA_OP(storeu, ps)(dst + (c0 + i) * ts + r0, v[i]);
            } else {
                for (i = 0; i < W; i++)
                    v[i] = i < cols ? FA_OP(loadu, ps)(src + (c0 + i) * ts + r0) : FA_OP(setzero, ps)();
                fa_tr_f32(v);
                for (i = 0; i < rows; i++)
                    fa_rstore_f32(dst + (r0 + i) * n + c0, v[i], q);
            }
        }
    }
}
#endif

/* Packed short rows: rows of n = 2-16 entries (n a power of two, at most
 * FA_PACK_MAX_BYTES, a whole register: float32 2-16, float64 2-8 with
 * AVX-512; 2-8 and 2-4 with AVX2) several to a register (or one, filling
 * it), so that a block of rows is loaded and stored whole instead of
 * being transposed into a tile.  A row's max and sum are formed in its own
 * lanes by a butterfly: lane k is combined with lane k^1, then k^2, k^4 and
 * k^8 (an in-lane permute within 128 bits, swaps of 128- or 256-bit blocks
 * beyond), so
 * that every lane of a row ends with the same value -- its sum is the same
 * additions, in the same order, in each lane -- and a row's result never
 * depends on the rows packed with it (thread splits change no bit).  The max
 * is maxps(v, swapped), as v > t ? v : t elsewhere: with a NaN in a row the
 * lanes may disagree on the max, but every x - max of that row is then NaN
 * or meets a NaN in the row's sum, so the whole row comes out NaN either way.
 *
 * fa_pack_f32/f64(op, a, b, out, len, n) over len entries, out may be a or
 * b; for the packed n len is a multiple of the register's lanes W, other n
 * (up to 2W: fa_rows_n below) take len a multiple of n:
 *   0 FA_PK_MAX     out = the row's max, in each of its lanes
 *   1 FA_PK_SCALE   out = a / the row's sum of a
 *   2 FA_PK_SUM     out = the row's sum of a, in each of its lanes
 *   3 FA_PK_SMBWD   out = b * (a - the row's sum of a*b)
 *   4 FA_PK_ROWSUM  out[r] = the sum of row r of a: one entry a row
 *   5 FA_PK_FIRST   out[r] = a[r*n]: one entry a row
 *   6 FA_PK_SPREAD  out = a[r] in each lane of row r (a has len / n entries)
 *   7               out = softmax of the row, fused (fa_rows_mid only)
 *   8 FA_PK_MAXREST out[2r] = the max m of row r, out[2r + 1] its rest sum:
 *                   exp(a - m) summed over the entries other than m, plus
 *                   the count of m less one (fa_rows_mid only; see
 *                   fastact's _restsum for why the max's own 1 is kept out)
 *   9 FA_PK_SUB2    out = (a - b[2r]) - b[2r + 1] in row r (fa_rows_mid only)
 *   op | 16         the same, a readable 2W entries past len: whole-register
 *                   loads for the rows one at a time (a masked load of
 *                   entries just stored waits for the stores to reach the
 *                   cache: softmax over float64 rows of 3 took 8x as long
 *                   with masked loads of its exps)
 *   op | 32         the same, each row prefetching the lines 1024 entries
 *                   ahead (fa_rows_mid's rows of 3-16 registers, set for
 *                   arrays past the caches: float32 logsumexp over rows of
 *                   128-256 and 16M entries took 3-4x its in-cache time)
 * FA_PACK says whether a SIMD path exists (AVX-512, or AVX2: rows of 2, 4
 * and 8 float32, 2 and 4 float64), FA_MASKED_ROWS whether fa_rows_n has one
 * (AVX-512 with masked loads and stores; AVX2 with plain loads, lane masks
 * and stores in pieces: AMD Zen 3 runs vmaskmovps in microcode); the plain-C
 * versions below (the same butterflies) are only there so that the callers
 * compile. */
/* a row's max or sum in each of its lanes: log2 n butterfly steps over
 * fa_pswap (one per register width below) */
#define FA_PBUTTERFLY(V, SFX, PS)                                               \
static inline __attribute__((always_inline)) V fa_pmax_v##SFX(V v, int n)      \
{                                                                               \
    for (int s = 1; s < n; s *= 2)                                              \
        v = FA_OP(max, PS)(v, fa_pswap_##SFX(v, s));                            \
    return v;                                                                   \
}                                                                               \
static inline __attribute__((always_inline)) V fa_psum_v##SFX(V v, int n)      \
{                                                                               \
    for (int s = 1; s < n; s *= 2)                                              \
        v = FA_OP(add, PS)(v, fa_pswap_##SFX(v, s));                            \
    return v;                                                                   \
}
#if FA_VEC_BYTES == 64
#define FA_PACK 1
#define FA_PACK_MAX_BYTES 64      /* up to a whole register */
#define FA_MASKED_ROWS 1
static inline __m512 fa_pswap_f32(__m512 v, int s)
{
    return s == 1 ? _mm512_permute_ps(v, 0xB1)           /* k ^ 1 */
         : s == 2 ? _mm512_permute_ps(v, 0x4E)           /* k ^ 2 */
         : s == 4 ? _mm512_shuffle_f32x4(v, v, 0xB1)     /* k ^ 4 */
                  : _mm512_shuffle_f32x4(v, v, 0x4E);    /* k ^ 8 */
}
static inline __m512d fa_pswap_f64(__m512d v, int s)
{
    return s == 1 ? _mm512_permute_pd(v, 0x55)           /* k ^ 1 */
         : s == 2 ? _mm512_shuffle_f64x2(v, v, 0xB1)     /* k ^ 2 */
                  : _mm512_shuffle_f64x2(v, v, 0x4E);    /* k ^ 4 */
}
FA_PBUTTERFLY(__m512, f32, ps)
FA_PBUTTERFLY(__m512d, f64, pd)
/* lane k of the result = lane src[k] of v */
static inline __m512 fa_perm_f32(__m512 v, const int *src)
{
    return _mm512_permutexvar_ps(_mm512_setr_epi32(src[0], src[1], src[2], src[3], src[4], src[5], src[6],
                                                   src[7], src[8], src[9], src[10], src[11], src[12],
                                                   src[13], src[14], src[15]), v);
}
static inline __m512d fa_perm_f64(__m512d v, const int *src)
{
    return _mm512_permutexvar_pd(_mm512_setr_epi64(src[0], src[1], src[2], src[3], src[4], src[5], src[6],
                                                   src[7]), v);
}
/* for fa_pack_n (below): s with the lanes k % n == j taken from x; the
 * first q entries at p in the low lanes, the others cleared */
#define FA_PACKED_LANE_OPS(T, V, SFX, PS, MT, W)                                \
static inline V fa_blend_rowlane_##SFX(V s, V x, int j, int n)                  \
{                                                                               \
    MT m = 0;                                                                   \
    for (int k = j; k < W; k += n)                                              \
        m |= (MT)1 << k;                                                        \
    return _mm512_mask_blend_##PS(m, s, x);                                     \
}                                                                               \
static inline V fa_load_low_##SFX(const T *p, int q)                            \
{                                                                               \
    return _mm512_maskz_loadu_##PS((MT)((1u << q) - 1), p);                     \
}
FA_PACKED_LANE_OPS(float, __m512, f32, ps, __mmask16, 16)
FA_PACKED_LANE_OPS(double, __m512d, f64, pd, __mmask8, 8)
#elif FA_VEC_BYTES == 32 && defined(__AVX2__)
/* AVX2: the butterflies of the AVX-512 path (in-lane permutes, a swap of
 * the 128-bit halves for rows of a whole register), blendv for the
 * row-lane blends, permutevar8x32 for the permutes (float64 lanes as pairs
 * of 32-bit ones), plain 4-, 8- or 16-byte loads of the W / n entries that
 * op 6 reads and stores in pieces of those ops 4-5 write (no masked
 * moves: microcode on AMD Zen 3).  Rows of a
 * whole register (8 float32, 4 float64) pack too: one register a row, but
 * the butterflies leave the row's max and sum in every lane, where the
 * row-wise path's horizontal reductions ended in a scalar to broadcast back
 * -- a chain of dependent shuffles per row (as with AVX-512, for softmax:
 * float32 rows of 16 0.72x the time, float64 rows of 8 0.76x, Zen 5). */
#define FA_PACK 1
#define FA_PACK_MAX_BYTES 32      /* up to a whole register */
#define FA_MASKED_ROWS 1
static inline __m256 fa_pswap_f32(__m256 v, int s)
{
    return s == 1 ? _mm256_permute_ps(v, 0xB1)           /* k ^ 1 */
         : s == 2 ? _mm256_permute_ps(v, 0x4E)           /* k ^ 2 */
                  : _mm256_permute2f128_ps(v, v, 0x01);  /* k ^ 4 */
}
static inline __m256d fa_pswap_f64(__m256d v, int s)
{
    return s == 1 ? _mm256_permute_pd(v, 0x5)            /* k ^ 1 */
                  : _mm256_permute2f128_pd(v, v, 0x01);  /* k ^ 2 */
}
FA_PBUTTERFLY(__m256, f32, ps)
FA_PBUTTERFLY(__m256d, f64, pd)
/* a 4-byte load (_mm_loadu_si32 needs GCC 11) */
static inline __m128i fa_load4(const void *p)
{
    int32_t t;
    memcpy(&t, p, 4);
    return _mm_cvtsi32_si128(t);
}
/* lane k of the result = lane src[k] of v */
static inline __m256 fa_perm_f32(__m256 v, const int *src)
{
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(src[0], src[1], src[2], src[3], src[4], src[5],
                                                         src[6], src[7]));
}
static inline __m256d fa_perm_f64(__m256d v, const int *src)
{
    __m256i ix = _mm256_setr_epi32(2 * src[0], 2 * src[0] + 1, 2 * src[1], 2 * src[1] + 1, 2 * src[2],
                                   2 * src[2] + 1, 2 * src[3], 2 * src[3] + 1);
    return _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), ix));
}
#define FA_PACKED_LANE_OPS(T, V, SFX, PS, IT, W)                                \
static inline V fa_blend_rowlane_##SFX(V s, V x, int j, int n)                  \
{                                                                               \
    IT bits[W];                                                                 \
    for (int k = 0; k < W; k++)                                                 \
        bits[k] = k % n == j ? (IT)-1 : 0;                                      \
    return _mm256_blendv_##PS(s, x, _mm256_castsi256_##PS(_mm256_loadu_si256((const __m256i *)bits))); \
}                                                                               \
static inline V fa_load_low_##SFX(const T *p, int q)                            \
{                                                                               \
    __m128i lo = q * sizeof(T) == 16 ? _mm_loadu_si128((const __m128i *)p)      \
               : q * sizeof(T) == 8 ? _mm_loadl_epi64((const __m128i *)p)       \
                                    : fa_load4(p);                              \
    return _mm256_castsi256_##PS(_mm256_castsi128_si256(lo));                   \
}
FA_PACKED_LANE_OPS(float, __m256, f32, ps, int32_t, 8)
FA_PACKED_LANE_OPS(double, __m256d, f64, pd, int64_t, 4)
#else
#define FA_PACK 0
#define FA_PACK_MAX_BYTES (FA_VEC_BYTES / 2)
#define FA_MASKED_ROWS 0
#define FA_PACK_OPS(T, SFX)                                                     \
static inline void                                                             \
fa_pack_n_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n)   \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    T v[W], u[W], y[W];                                                         \
    int s, k;                                                                   \
    op &= 15;                                                                   \
    for (ptrdiff_t i = 0; i < len; i += W) {                                    \
        if (op == 6) {                                                          \
            for (k = 0; k < W; k++)                                             \
                out[i + k] = a[(i + k) / n];                                    \
            continue;                                                           \
        }                                                                       \
        for (k = 0; k < W; k++) {                                               \
            y[k] = op == 3 ? b[i + k] : 0;                                      \
            v[k] = op == 3 ? a[i + k] * y[k] : a[i + k];                        \
        }                                                                       \
        for (s = 1; s < n && op != 5; s *= 2) {                                 \
            for (k = 0; k < W; k++)                                             \
                u[k] = v[(k ^ s) & (W - 1)];                                    \
            for (k = 0; k < W; k++)                                             \
                v[k] = op == 0 ? (v[k] > u[k] ? v[k] : u[k]) : v[k] + u[k];     \
        }                                                                       \
        for (k = 0; k < W; k++) {                                               \
            if (op >= 4) {                                                      \
                if (k % n == 0)                                                 \
                    out[(i + k) / n] = v[k];                                    \
            } else {                                                            \
                out[i + k] = op == 1 ? a[i + k] * (1 / v[k])                    \
                           : op == 3 ? y[k] * (a[i + k] - v[k]) : v[k];         \
            }                                                                   \
        }                                                                       \
    }                                                                           \
}
FA_PACK_OPS(float, f32)
FA_PACK_OPS(double, f64)
#endif
#if FA_PACK
/* op (see above) over rows packed W / n to a register: the butterflies
 * leave each row's max or sum in all of its lanes; ops 4-6 read or write
 * one entry a row, gathered to (spread from) the low lanes by a permute */
#define FA_PACK_OPS(T, V, SFX, PS)                                              \
static inline __attribute__((always_inline)) void                              \
fa_pack_n_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n)   \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    V va, vb, s, v[16];                                                         \
    int src[W];                                                                 \
    ptrdiff_t i = 0;                                                            \
    int j, k, q = W / n;        /* rows a register */                          \
    fa_piece_##SFX low = fa_piece_of_##SFX(q);                                  \
    op &= 15;                   /* whole registers: padding makes no odds */    \
    if (op == 1) {                                                              \
        /* one division for n registers: lane k of the divisor is a sum of     \
         * register k % n (any lane of a row holds the row's sum), and each    \
         * register's reciprocals are spread back by a permute (a division     \
         * per register: softmax over rows of 2 took 1.55x (float32) and      \
         * 1.26x (float64) as long with AVX-512) */                           \
        for (; i + n * W <= len; i += n * W) {                                  \
            for (j = 0; j < n; j++)                                             \
                v[j] = FA_OP(loadu, PS)(a + i + j * W);                         \
            s = fa_psum_v##SFX(v[0], n);                                        \
            for (j = 1; j < n; j++)                                             \
                s = fa_blend_rowlane_##SFX(s, fa_psum_v##SFX(v[j], n), j, n);   \
            s = FA_OP(div, PS)(FA_OP(set1, PS)(1), s);                          \
            for (j = 0; j < n; j++) {                                           \
                for (k = 0; k < W; k++)                                         \
                    src[k] = (k & ~(n - 1)) + j;                                \
                FA_OP(storeu, PS)(out + i + j * W, FA_OP(mul, PS)(v[j], fa_perm_##SFX(s, src))); \
            }                                                                   \
        }                                                                       \
    }                                                                           \
    if (op == 6) {                                                              \
        for (k = 0; k < W; k++)                                                 \
            src[k] = k / n;                                                     \
        for (; i < len; i += W)                                                 \
            FA_OP(storeu, PS)(out + i, fa_perm_##SFX(fa_load_low_##SFX(a + i / n, q), src)); \
        return;                                                                 \
    }                                                                           \
    for (k = 0; k < W; k++)                                                     \
        src[k] = k < q ? k * n : 0;     /* the first lane of each row, low */   \
    for (; i < len; i += W) {                                                   \
        va = FA_OP(loadu, PS)(a + i);                                           \
        if (op == 0) {                                                          \
            s = fa_pmax_v##SFX(va, n);                                          \
        } else if (op == 1) {                                                   \
            s = FA_OP(div, PS)(FA_OP(set1, PS)(1), fa_psum_v##SFX(va, n));      \
            s = FA_OP(mul, PS)(va, s);                                          \
        } else if (op == 2 || op == 4) {                                        \
            s = fa_psum_v##SFX(va, n);                                          \
        } else if (op == 3) {                                                   \
            vb = FA_OP(loadu, PS)(b + i);                                       \
            s = fa_psum_v##SFX(FA_OP(mul, PS)(va, vb), n);                      \
            s = FA_OP(mul, PS)(vb, FA_OP(sub, PS)(va, s));                      \
        } else {                                                                \
            s = va;                                                             \
        }                                                                       \
        if (op >= 4)                                                            \
            fa_rstore_##SFX(out + i / n, fa_perm_##SFX(s, src), low);           \
        else                                                                    \
            FA_OP(storeu, PS)(out + i, s);                                      \
    }                                                                           \
}
FA_PACK_OPS(float, FA_VF32, f32, ps)
FA_PACK_OPS(double, FA_VF64, f64, pd)
#endif
#if FA_MASKED_ROWS
/* Rows of another length, one at a time (n <= 2W: fa_rows_n, the ops of
 * fa_pack_n, len a multiple of n; up to FA_MID_PIECES registers:
 * fa_rows_mid), in np = ceil(n / W) pieces: np - 1 whole registers and a
 * last piece (fa_rload: nothing read past the row unless it can be read,
 * the other lanes cleared -- op | 16: readable 2W past every row;
 * FA_RLOAD_INSIDE: whether the rest of the input counts as readable); the
 * row's max or sum by a tree over the pieces and the halving tree of
 * fa_hmax/fa_hsum_v*; stores of the pieces (the last by fa_rstore, never
 * past the row).  One scalar per row, so a row's lanes never disagree.  np
 * is a constant at each call (fa_rows_n's and fa_rows_mid's switches): the
 * loops unroll and a row stays in registers from its loads to its stores.
 * One row at a time through the kernels' own row loops, rows of 3-16
 * registers were latency-bound (see fastact's _masked_rows). */
#define FA_MID_PIECES 16
/* the sum of the np pieces p (destroyed): a tree over the pieces, then the
 * register's lanes, in double from 3 pieces up (float32 lanes widened to
 * two float64 registers).  All in float32, a row of 100 had its
 * log_softmax_backward 8.6 eps(|ref|+1) off (the last levels' partials
 * reach ~10 x the sum), 3.5 so (the row path's double sums: 4.4); the
 * whole tree in double gave 0.8 but took 1.3-2x as long, this 1.0-1.1x
 * (AVX2 1.05-1.15x).  Rows of up to 2 pieces sum as they always have. */
static inline __attribute__((always_inline)) double fa_piecesum_f64(FA_VF64 *p, const int np)
{
    /* unrolled (GCC left the tree of 5-7 pieces a loop over p in memory) */
#pragma GCC unroll 8
    for (int h = 1; h < np; h *= 2)
#pragma GCC unroll 16
        for (int k = 0; k + h < np; k += 2 * h)
            p[k] = FA_OP(add, pd)(p[k], p[k + h]);
    return fa_hsum_vf64(p[0]);
}
static inline __attribute__((always_inline)) float fa_piecesum_f32(FA_VF32 *p, const int np)
{
    FA_VF32 v;
#pragma GCC unroll 8
    for (int h = 1; h < np; h *= 2)
#pragma GCC unroll 16
        for (int k = 0; k + h < np; k += 2 * h)
            p[k] = FA_OP(add, ps)(p[k], p[k + h]);
    v = p[0];
    if (np <= 2)
        return fa_hsum_vf32(v);
#if FA_VEC_BYTES == 64
    return (float)fa_hsum_vf64(_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                                             _mm512_cvtps_pd(fa_hi256_f32(v))));
#else
    return (float)fa_hsum_vf64(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                             _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
#endif
}
/* exp(x) times 2^600 (float64) or 2^64 (float32), for x <= 0 or NaN, in
 * every lane: expn_big_f64/f32 of _kernels_body.pxi (the same FA_EXP*
 * constants, range reduction and polynomial; see there why it is accurate
 * and why the scaling) in intrinsics, for the fused rows (ops 7 and 8 below) */
#if FA_VEC_BYTES == 64
#define FA_I64(v) _mm512_castpd_si512(v)
#define FA_F64(v) _mm512_castsi512_pd(v)
#define FA_I32(v) _mm512_castps_si512(v)
#define FA_F32(v) _mm512_castsi512_ps(v)
#define FA_IOP(op) _mm512_##op
#define FA_SET1_I64(c) _mm512_set1_epi64(c)
#else
#define FA_I64(v) _mm256_castpd_si256(v)
#define FA_F64(v) _mm256_castsi256_pd(v)
#define FA_I32(v) _mm256_castps_si256(v)
#define FA_F32(v) _mm256_castsi256_ps(v)
#define FA_IOP(op) _mm256_##op
#define FA_SET1_I64(c) _mm256_set1_epi64x(c)
#endif
#define FA_C64(c) FA_OP(set1, pd)(c)
#define FA_C32(c) FA_OP(set1, ps)(c)
/* v where x >= lo or x is NaN, else 0 */
#if FA_VEC_BYTES == 64
#define FA_ZERO_BELOW(PS, x, lo, v) _mm512_maskz_mov_##PS(_mm512_cmp_##PS##_mask(x, lo, _CMP_NLT_UQ), v)
#else
#define FA_ZERO_BELOW(PS, x, lo, v) _mm256_and_##PS(_mm256_cmp_##PS(x, lo, _CMP_NLT_UQ), v)
#endif
/* 1 + expm1(r) for x = n ln2 + r (x clamped by the caller), and t: n in its
 * low bits (t - MAGIC = n) */
static inline __attribute__((always_inline)) FA_VF64 fa_vexp1r_f64(FA_VF64 x, FA_VF64 *tp)
{
    FA_VF64 t, kf, r, r2, r4, lo, hi, p;
    t = FA_OP(fmadd, pd)(x, FA_C64(FA_EXP64_LOG2E), FA_C64(FA_EXP64_MAGIC));
    kf = FA_OP(sub, pd)(t, FA_C64(FA_EXP64_MAGIC));
    r = FA_OP(fnmadd, pd)(kf, FA_C64(FA_LN2HI_F64), x);
    r = FA_OP(fnmadd, pd)(kf, FA_C64(FA_LN2LO_F64), r);
    r2 = FA_OP(mul, pd)(r, r);
    r4 = FA_OP(mul, pd)(r2, r2);
    lo = FA_OP(fmadd, pd)(r2, FA_OP(fmadd, pd)(r, FA_C64(FA_EXP64_C3), FA_C64(FA_EXP64_C2)),
                          FA_OP(fmadd, pd)(r, FA_C64(FA_EXP64_C1), FA_C64(FA_EXP64_C0)));
    hi = FA_OP(fmadd, pd)(r4, FA_OP(fmadd, pd)(r, FA_C64(FA_EXP64_C9), FA_C64(FA_EXP64_C8)),
                          FA_OP(fmadd, pd)(r2, FA_OP(fmadd, pd)(r, FA_C64(FA_EXP64_C7), FA_C64(FA_EXP64_C6)),
                                        FA_OP(fmadd, pd)(r, FA_C64(FA_EXP64_C5), FA_C64(FA_EXP64_C4))));
    p = FA_OP(fmadd, pd)(r4, hi, lo);
    *tp = t;
    return FA_OP(add, pd)(FA_C64(1.0), FA_OP(fmadd, pd)(r2, p, r));
}
static inline __attribute__((always_inline)) FA_VF32 fa_vexp1r_f32(FA_VF32 x, FA_VF32 *tp)
{
    FA_VF32 t, kf, r, p;
    t = FA_OP(fmadd, ps)(x, FA_C32(FA_EXP32_LOG2E), FA_C32(FA_EXP32_MAGIC));
    kf = FA_OP(sub, ps)(t, FA_C32(FA_EXP32_MAGIC));
    r = FA_OP(fnmadd, ps)(kf, FA_C32(FA_LN2HI_F32), x);
    r = FA_OP(fnmadd, ps)(kf, FA_C32(FA_LN2LO_F32), r);
    p = FA_OP(fmadd, ps)(r, FA_C32(FA_EXP32_C4), FA_C32(FA_EXP32_C3));
    p = FA_OP(fmadd, ps)(r, p, FA_C32(FA_EXP32_C2));
    p = FA_OP(fmadd, ps)(r, p, FA_C32(FA_EXP32_C1));
    p = FA_OP(fmadd, ps)(r, p, FA_C32(FA_EXP32_C0));
    *tp = t;
    return FA_OP(add, ps)(FA_C32(1.0f), FA_OP(fmadd, ps)(FA_OP(mul, ps)(r, r), p, r));
}
static inline __attribute__((always_inline)) FA_VF64 fa_vexpn_big_f64(FA_VF64 x)
{
    FA_VF64 t, p;
    p = fa_vexp1r_f64(FA_OP(max, pd)(FA_C64(FA_EXP64_LO), x), &t);     /* a NaN x passes */
    p = FA_OP(mul, pd)(p, FA_F64(FA_IOP(slli_epi64)(
        FA_IOP(sub_epi64)(FA_I64(t), FA_SET1_I64((long long)(0x4338000000000000ULL - 1623ULL))), 52)));
    /* normal, but the caller's unscaling would underflow (FA_EXP64_ZERO) */
    return FA_ZERO_BELOW(pd, x, FA_C64(FA_EXP64_ZERO), p);
}
static inline __attribute__((always_inline)) FA_VF32 fa_vexpn_big_f32(FA_VF32 x)
{
    FA_VF32 t, p;
    p = fa_vexp1r_f32(FA_OP(max, ps)(FA_C32(FA_EXP32_LO), x), &t);
    p = FA_OP(mul, ps)(p, FA_F32(FA_IOP(slli_epi32)(
        FA_IOP(sub_epi32)(FA_I32(t), FA_IOP(set1_epi32)((int)(0x4B400000U - 191U))), 23)));
    return FA_ZERO_BELOW(ps, x, FA_C32(FA_EXP32_ZERO), p);
}
/* a piece's terms of a rest sum (FA_PK_MAXREST): exp(v - m) scaled as
 * fa_vexpn_big's, 0 at the lanes equal to m (counted into *c) and past the
 * piece.  The test is v == m, not v - m == 0: with m = +inf the infinite
 * entries count as maxima (rest = count - 1, finite) instead of giving
 * exp(inf - inf) = NaN; with m = -inf (all -inf) every entry is one. */
#if FA_VEC_BYTES == 64
#define FA_REST_PIECE(V, SFX, PS)                                               \
static inline __attribute__((always_inline)) V                                 \
fa_rest_piece_##SFX(V v, V m, fa_piece_##SFX q, int *c)                         \
{                                                                               \
    unsigned eq = _mm512_mask_cmp_##PS##_mask(q.m, v, m, _CMP_EQ_OQ);           \
    *c += __builtin_popcount(eq);                                               \
    return _mm512_maskz_mov_##PS(q.m & ~eq, fa_vexpn_big_##SFX(_mm512_sub_##PS(v, m))); \
}
#else
#define FA_REST_PIECE(V, SFX, PS)                                               \
static inline __attribute__((always_inline)) V                                 \
fa_rest_piece_##SFX(V v, V m, fa_piece_##SFX q, int *c)                         \
{                                                                               \
    V eq = _mm256_cmp_##PS(v, m, _CMP_EQ_OQ);                                   \
    *c += __builtin_popcount(_mm256_movemask_##PS(_mm256_and_##PS(eq, q.m)));   \
    return _mm256_and_##PS(_mm256_andnot_##PS(eq, q.m),                         \
                           fa_vexpn_big_##SFX(_mm256_sub_##PS(v, m)));          \
}
#endif
FA_REST_PIECE(FA_VF32, f32, ps)
FA_REST_PIECE(FA_VF64, f64, pd)
#define FA_ROWS_NP_OPS(T, V, SFX, PS)                                           \
static inline __attribute__((always_inline)) void                              \
fa_rows_np_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n,  \
                 const int np)                                                  \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    const int last = (np - 1) * W;                                              \
    fa_piece_##SFX ql = fa_piece_of_##SFX(n - last), qw = fa_piece_of_##SFX(W); \
    V va[FA_MID_PIECES], vb[FA_MID_PIECES], p[FA_MID_PIECES], s, s2;            \
    T t;                                                                        \
    ptrdiff_t i, r, ra;                                                         \
    int k, c, pad = op & 16, ahead = op & 32;                                   \
    op &= 15;                                                                   \
    for (i = 0, r = 0; i < len; i += n, r++) {                                  \
        if (ahead)                                                              \
            fa_prefetch_range(a + i + 1024, np * FA_VEC_BYTES);                 \
        if (op == 5) {                                                          \
            out[r] = a[i];                                                      \
            continue;                                                           \
        }                                                                       \
        if (op == 6) {                                                          \
            s = FA_OP(set1, PS)(a[r]);                                          \
            for (k = 0; k < np - 1; k++)                                        \
                FA_OP(storeu, PS)(out + i + k * W, s);                          \
            fa_rstore_##SFX(out + i + last, s, ql);                             \
            continue;                                                           \
        }                                                                       \
        /* entries readable at the last piece */                                \
        ra = pad ? 2 * W : FA_RLOAD_INSIDE ? len - i - last : 0;                \
        for (k = 0; k < np - 1; k++)                                            \
            va[k] = FA_OP(loadu, PS)(a + i + k * W);                            \
        va[np - 1] = fa_rload_##SFX(a + i + last, ql, ra);                      \
        if (op == 0 || op == 7 || op == 8) {                                    \
            for (k = 0; k < np - 1; k++)                                        \
                p[k] = va[k];                                                   \
            p[np - 1] = fa_rfill_##SFX(va[np - 1], ql, -(T)INFINITY);           \
            _Pragma("GCC unroll 8")                                             \
            for (int h = 1; h < np; h *= 2)                                     \
                _Pragma("GCC unroll 16")                                        \
                for (k = 0; k + h < np; k += 2 * h)                             \
                    p[k] = FA_OP(max, PS)(p[k + h], p[k]);                      \
            t = fa_hmax_v##SFX(p[0]);                                           \
            if (op == 7) {                                                      \
                /* softmax, fused: the exps (scaled, see fa_vexpn_big), their  \
                 * sum, 1 / sum in double, the row scaled */                    \
                s = FA_OP(set1, PS)(t);                                         \
                for (k = 0; k < np; k++)                                        \
                    va[k] = fa_vexpn_big_##SFX(FA_OP(sub, PS)(va[k], s));       \
                va[np - 1] = fa_rfill_##SFX(va[np - 1], ql, (T)0);              \
                for (k = 0; k < np; k++)                                        \
                    p[k] = va[k];                                               \
                s = FA_OP(set1, PS)((T)(1.0 / (double)fa_piecesum_##SFX(p, np))); \
                for (k = 0; k < np; k++)                                        \
                    va[k] = FA_OP(mul, PS)(va[k], s);                           \
            } else if (op == 8) {                                               \
                /* the max and the rest sum (exps scaled by 2^600 / 2^64,     \
                 * unscaled once in the sum), one pair a row */                 \
                s = FA_OP(set1, PS)(t);                                         \
                c = 0;                                                          \
                for (k = 0; k < np - 1; k++)                                    \
                    p[k] = fa_rest_piece_##SFX(va[k], s, qw, &c);               \
                p[np - 1] = fa_rest_piece_##SFX(va[np - 1], s, ql, &c);         \
                out[2 * r] = t;                                                 \
                out[2 * r + 1] = (T)((double)fa_piecesum_##SFX(p, np)          \
                                     * (sizeof(T) == 8 ? 0x1p-600 : 0x1p-64)    \
                                     + (double)(c - 1));                        \
                continue;                                                       \
            }                                                                   \
        } else if (op == 9) {                                                   \
            s = FA_OP(set1, PS)(b[2 * r]);                                      \
            s2 = FA_OP(set1, PS)(b[2 * r + 1]);                                 \
            for (k = 0; k < np; k++)                                            \
                va[k] = FA_OP(sub, PS)(FA_OP(sub, PS)(va[k], s), s2);           \
        } else if (op == 3) {                                                   \
            for (k = 0; k < np - 1; k++)                                        \
                vb[k] = FA_OP(loadu, PS)(b + i + k * W);                        \
            vb[np - 1] = fa_rload_##SFX(b + i + last, ql, ra);                  \
            for (k = 0; k < np; k++)                                            \
                p[k] = FA_OP(mul, PS)(va[k], vb[k]);                            \
            t = (T)fa_piecesum_##SFX(p, np);                                        \
            s = FA_OP(set1, PS)(t);                                             \
            for (k = 0; k < np; k++)                                            \
                va[k] = FA_OP(mul, PS)(vb[k], FA_OP(sub, PS)(va[k], s));        \
        } else {                                                                \
            for (k = 0; k < np; k++)                                            \
                p[k] = va[k];                                                   \
            t = (T)fa_piecesum_##SFX(p, np);                                        \
        }                                                                       \
        if (op == 4) {                                                          \
            out[r] = t;                                                         \
            continue;                                                           \
        }                                                                       \
        if (op == 1) {                                                          \
            s = FA_OP(set1, PS)((T)1 / t);                                      \
            for (k = 0; k < np; k++)                                            \
                va[k] = FA_OP(mul, PS)(va[k], s);                               \
        } else if (op != 3 && op != 7 && op != 9) {                             \
            for (k = 0; k < np; k++)                                            \
                va[k] = FA_OP(set1, PS)(t);                                     \
        }                                                                       \
        for (k = 0; k < np - 1; k++)                                            \
            FA_OP(storeu, PS)(out + i + k * W, va[k]);                          \
        fa_rstore_##SFX(out + i + last, va[np - 1], ql);                        \
    }                                                                           \
}                                                                               \
/* ops 7 (FA_PK_SOFTMAX), 8 (FA_PK_MAXREST) and 9 (FA_PK_SUB2) over rows of  \
 * more than FA_MID_PIECES registers, the only ops the kernels send there:    \
 * the pieces                                                                 \
 * are loaded from memory (L1) in loops instead of kept in registers, into    \
 * four maxima and four partial sums (fa_piecesum's tree over those).        \
 * Against the row path (_rowmax, _restsum, whose 64 partial sums and       \
 * counts a row cost ~250 cycles of set-up and trees), float32 rows of 300,  \
 * Zen 5, in cache: logsumexp 434 -> 238 us per 1M entries, log_softmax     \
 * 484 -> 270 (the limits in fastact's _rest_mid). */                       \
static inline __attribute__((always_inline)) void                              \
fa_rows_loop_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n) \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    const int np = (n + W - 1) / W, last = (np - 1) * W;                        \
    fa_piece_##SFX ql = fa_piece_of_##SFX(n - last), qw = fa_piece_of_##SFX(W); \
    V p[4], vl, s, s2;                                                          \
    const T *x;                                                                 \
    T t;                                                                        \
    ptrdiff_t i, r, ra;                                                         \
    int k, c, pad = op & 16;                                                    \
    op &= 15;                                                                   \
    for (i = 0, r = 0; i < len; i += n, r++) {                                  \
        x = a + i;                                                              \
        ra = pad ? 2 * W : FA_RLOAD_INSIDE ? len - i - last : 0;                \
        vl = fa_rload_##SFX(x + last, ql, ra);                                  \
        if (op == 9) {                                                          \
            s = FA_OP(set1, PS)(b[2 * r]);                                      \
            s2 = FA_OP(set1, PS)(b[2 * r + 1]);                                 \
            for (k = 0; k < np - 1; k++)                                        \
                FA_OP(storeu, PS)(out + i + k * W, FA_OP(sub, PS)(              \
                    FA_OP(sub, PS)(FA_OP(loadu, PS)(x + k * W), s), s2));       \
            fa_rstore_##SFX(out + i + last, FA_OP(sub, PS)(FA_OP(sub, PS)(vl, s), s2), ql); \
            continue;                                                           \
        }                                                                       \
        p[0] = p[1] = p[2] = p[3] = fa_rfill_##SFX(vl, ql, -(T)INFINITY);       \
        for (k = 0; k < np - 1; k++)                                            \
            p[k & 3] = FA_OP(max, PS)(FA_OP(loadu, PS)(x + k * W), p[k & 3]);   \
        t = fa_hmax_v##SFX(FA_OP(max, PS)(FA_OP(max, PS)(p[0], p[1]),          \
                                          FA_OP(max, PS)(p[2], p[3])));         \
        s = FA_OP(set1, PS)(t);                                                 \
        if (op == 7) {                                                          \
            /* the exps (scaled, see fa_vexpn_big) into out as they are      \
             * summed, then out scaled by 1 / sum (in double); out may be a: \
             * each piece is read before it is written */                   \
            vl = fa_rfill_##SFX(fa_vexpn_big_##SFX(FA_OP(sub, PS)(vl, s)), ql, (T)0); \
            p[0] = vl;                                                          \
            p[1] = p[2] = p[3] = FA_OP(setzero, PS)();                          \
            for (k = 0; k < np - 1; k++) {                                      \
                s2 = fa_vexpn_big_##SFX(FA_OP(sub, PS)(FA_OP(loadu, PS)(x + k * W), s)); \
                FA_OP(storeu, PS)(out + i + k * W, s2);                         \
                p[(k + 1) & 3] = FA_OP(add, PS)(p[(k + 1) & 3], s2);            \
            }                                                                   \
            s = FA_OP(set1, PS)((T)(1.0 / (double)fa_piecesum_##SFX(p, 4)));   \
            for (k = 0; k < np - 1; k++)                                        \
                FA_OP(storeu, PS)(out + i + k * W, FA_OP(mul, PS)(              \
                    FA_OP(loadu, PS)(out + i + k * W), s));                     \
            fa_rstore_##SFX(out + i + last, FA_OP(mul, PS)(vl, s), ql);         \
            continue;                                                           \
        }                                                                       \
        c = 0;                                                                  \
        p[0] = fa_rest_piece_##SFX(vl, s, ql, &c);                              \
        p[1] = p[2] = p[3] = FA_OP(setzero, PS)();                              \
        for (k = 0; k < np - 1; k++)                                            \
            p[(k + 1) & 3] = FA_OP(add, PS)(p[(k + 1) & 3],                     \
                fa_rest_piece_##SFX(FA_OP(loadu, PS)(x + k * W), s, qw, &c));   \
        out[2 * r] = t;                                                         \
        out[2 * r + 1] = (T)((double)fa_piecesum_##SFX(p, 4)                   \
                             * (sizeof(T) == 8 ? 0x1p-600 : 0x1p-64)            \
                             + (double)(c - 1));                                \
    }                                                                           \
}                                                                               \
static inline __attribute__((always_inline)) void                              \
fa_rows_mid_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n) \
{                                                                               \
    enum { W = FA_VEC_BYTES / sizeof(T) };                                      \
    if ((n + W - 1) / W > FA_MID_PIECES) {                                      \
        fa_rows_loop_##SFX(op, a, b, out, len, n);                              \
        return;                                                                 \
    }                                                                           \
    switch ((n + W - 1) / W) {                                                  \
    case 3: fa_rows_np_##SFX(op, a, b, out, len, n, 3); break;                  \
    case 4: fa_rows_np_##SFX(op, a, b, out, len, n, 4); break;                  \
    case 5: fa_rows_np_##SFX(op, a, b, out, len, n, 5); break;                  \
    case 6: fa_rows_np_##SFX(op, a, b, out, len, n, 6); break;                  \
    case 7: fa_rows_np_##SFX(op, a, b, out, len, n, 7); break;                  \
    case 8: fa_rows_np_##SFX(op, a, b, out, len, n, 8); break;                  \
    case 9: fa_rows_np_##SFX(op, a, b, out, len, n, 9); break;                  \
    case 10: fa_rows_np_##SFX(op, a, b, out, len, n, 10); break;                  \
    case 11: fa_rows_np_##SFX(op, a, b, out, len, n, 11); break;                  \
    case 12: fa_rows_np_##SFX(op, a, b, out, len, n, 12); break;                  \
    case 13: fa_rows_np_##SFX(op, a, b, out, len, n, 13); break;                  \
    case 14: fa_rows_np_##SFX(op, a, b, out, len, n, 14); break;                  \
    case 15: fa_rows_np_##SFX(op, a, b, out, len, n, 15); break;                  \
    default: fa_rows_np_##SFX(op, a, b, out, len, n, 16); break;                 \
    }                                                                           \
}
FA_ROWS_NP_OPS(float, FA_VF32, f32, ps)
FA_ROWS_NP_OPS(double, FA_VF64, f64, pd)
#define FA_ROWS_OPS(T, SFX)                                                     \
static inline __attribute__((always_inline)) void                              \
fa_rows_n_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n)   \
{                                                                               \
    if (n > (int)(FA_VEC_BYTES / sizeof(T)))                                    \
        fa_rows_np_##SFX(op, a, b, out, len, n, 2);                             \
    else                                                                        \
        fa_rows_np_##SFX(op, a, b, out, len, n, 1);                             \
}
FA_ROWS_OPS(float, f32)
FA_ROWS_OPS(double, f64)
#else
#define FA_ROWS_OPS(T, SFX)                                                     \
static inline void                                                             \
fa_rows_n_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n)   \
{                                                                               \
    T t, v;                                                                     \
    ptrdiff_t i, r;                                                             \
    int j;                                                                      \
    op &= 15;                                                                   \
    for (i = 0, r = 0; i < len; i += n, r++) {                                  \
        t = op == 0 ? -(T)INFINITY : 0;                                         \
        for (j = 0; j < n && op != 5 && op != 6; j++) {                         \
            v = op == 3 ? a[i + j] * b[i + j] : a[i + j];                       \
            t = op == 0 ? (v > t ? v : t) : t + v;                              \
        }                                                                       \
        if (op >= 4) {                                                          \
            if (op == 6)                                                        \
                for (j = 0; j < n; j++) out[i + j] = a[r];                      \
            else                                                                \
                out[r] = op == 4 ? t : a[i];                                    \
            continue;                                                           \
        }                                                                       \
        for (j = 0; j < n; j++)                                                 \
            out[i + j] = op == 1 ? a[i + j] * (1 / t)                           \
                       : op == 3 ? b[i + j] * (a[i + j] - t) : t;               \
    }                                                                           \
}
FA_ROWS_OPS(float, f32)
FA_ROWS_OPS(double, f64)
#define fa_rows_mid_f32 fa_rows_n_f32
#define fa_rows_mid_f64 fa_rows_n_f64
#endif
#if FA_VEC_BYTES == 64
/* exp over a contiguous row with 2^n applied by one vscalef (AVX-512):
 *   op 0  out = a - exp(b) * c     (log_softmax_backward: g - exp(y) sum(g))
 *   op 1  out = c * exp(a - d)     (logsumexp_backward: g exp(x - lse))
 * exp is exp_f32/f64 of _kernels_body.pxi (x clamped to FA_EXP*_HI, 0
 * below FA_EXP*_ZERO, NaN passing, fa_vexp1r's reduction and polynomial); vscalef
 * rounds p 2^n once, subnormal and overflowing results included, as the
 * pxi's two integer scalings do: the same bits.  GCC's vectorized loop of
 * the pxi's exp took 1.4x Numba's time (which scales by vscalef) over
 * float32 rows of 1000. */
#define FA_SCALEF 1
#define FA_EXP_ROW(T, V, SFX, PS, MASK, ZERO, HI)                               \
static inline __attribute__((always_inline)) V fa_vexp_##SFX(V x)              \
{                                                                               \
    V t, p;                                                                     \
    /* the lanes whose exp is 0 computed as exp(0), then zeroed (see ZERO) */   \
    MASK keep = _mm512_cmp_##PS##_mask(x, _mm512_set1_##PS(ZERO), _CMP_NLT_UQ); \
    x = _mm512_min_##PS(_mm512_set1_##PS(HI), _mm512_maskz_mov_##PS(keep, x)); \
    p = fa_vexp1r_##SFX(x, &t);                                                 \
    return _mm512_maskz_scalef_##PS(keep, p, _mm512_sub_##PS(t, _mm512_set1_##PS(sizeof(T) == 4 \
                                    ? (T)FA_EXP32_MAGIC : (T)FA_EXP64_MAGIC))); \
}                                                                               \
static inline __attribute__((always_inline)) V                                 \
fa_exp_op_##SFX(int op, V va, V vb, V vc, V vd)                                 \
{                                                                               \
    return op == 0 ? _mm512_fnmadd_##PS(fa_vexp_##SFX(vb), vc, va)              \
                   : _mm512_mul_##PS(vc, fa_vexp_##SFX(_mm512_sub_##PS(va, vd))); \
}                                                                               \
static inline __attribute__((always_inline)) void                              \
fa_exp_row_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t n, T c, T d) \
{                                                                               \
    enum { W = 64 / sizeof(T) };                                                \
    V vc = _mm512_set1_##PS(c), vd = _mm512_set1_##PS(d), vb = vd;              \
    ptrdiff_t i;                                                                \
    MASK k;                                                                     \
    for (i = 0; i + W <= n; i += W) {                                           \
        if (op == 0)                                                            \
            vb = _mm512_loadu_##PS(b + i);                                      \
        _mm512_storeu_##PS(out + i, fa_exp_op_##SFX(op, _mm512_loadu_##PS(a + i), vb, vc, vd)); \
    }                                                                           \
    if (i < n) {                                                                \
        k = (MASK)((1u << (n - i)) - 1u);                                       \
        if (op == 0)                                                            \
            vb = _mm512_maskz_loadu_##PS(k, b + i);                             \
        _mm512_mask_storeu_##PS(out + i, k, fa_exp_op_##SFX(op, _mm512_maskz_loadu_##PS(k, a + i), \
                                                          vb, vc, vd));         \
    }                                                                           \
}
FA_EXP_ROW(float, __m512, f32, ps, __mmask16, FA_EXP32_ZERO, FA_EXP32_HI)
FA_EXP_ROW(double, __m512d, f64, pd, __mmask8, FA_EXP64_ZERO, FA_EXP64_HI)
#else
/* no vscalef: the kernels keep their own loops (they test FA_SCALEF first,
 * so these are never reached) */
#define FA_SCALEF 0
#define fa_exp_row_f32(op, a, b, out, n, c, d) ((void)0)
#define fa_exp_row_f64(op, a, b, out, n, c, d) ((void)0)
#endif
/* f(a, b, out, rows, n) from a function of its own, which the compiler
 * does not inline: keeps the packed rows' code (fastact's _packed_rows) out
 * of the kernels that call it.  Inlined there, GCC compiled the kernels'
 * other short-row paths differently (float64 softmax over rows of 8 took
 * 1.2x as long). */
#if defined(_MSC_VER)
#define FA_NOINLINE __declspec(noinline)
#define FA_ALWAYS_INLINE __forceinline
#else
#define FA_NOINLINE __attribute__((noinline))
#define FA_ALWAYS_INLINE inline __attribute__((always_inline))
#endif
typedef void (*fa_rows_f32)(const float *, const float *, float *, ptrdiff_t, ptrdiff_t);
typedef void (*fa_rows_f64)(const double *, const double *, double *, ptrdiff_t, ptrdiff_t);
static FA_NOINLINE void fa_outline_f32(fa_rows_f32 f, const float *a, const float *b, float *out,
                                       ptrdiff_t rows, ptrdiff_t n)
{
    f(a, b, out, rows, n);
}
static FA_NOINLINE void fa_outline_f64(fa_rows_f64 f, const double *a, const double *b, double *out,
                                       ptrdiff_t rows, ptrdiff_t n)
{
    f(a, b, out, rows, n);
}

/* packed for n = 2, 4, 8, 16 up to FA_PACK_MAX_BYTES (defined with FA_PACK),
 * row by row for other n; each packed n gets its own copy of the loop, with
 * the butterfly unrolled.  Inlined into each call, whose op is a constant
 * there: one loop per op without the tests of op in every row (as a
 * function of its own it ran them; softmax_backward float32 rows of 10-12
 * took 1.3-1.6x as long on AMD Zen 5, float64 rows of 6 1.1-1.3x, with
 * AVX-512 and AVX2 alike). */
#define FA_PACK_ENTRY(T, SFX)                                                   \
static FA_ALWAYS_INLINE void                                                   \
fa_pack_##SFX(int op, const T *a, const T *b, T *out, ptrdiff_t len, int n)     \
{                                                                               \
    if (n < 2 || (n & (n - 1)) || n * (int)sizeof(T) > FA_PACK_MAX_BYTES)      \
        fa_rows_n_##SFX(op, a, b, out, len, n);                                 \
    else if (n == 2)                                                            \
        fa_pack_n_##SFX(op, a, b, out, len, 2);                                 \
    else if (n == 4)                                                            \
        fa_pack_n_##SFX(op, a, b, out, len, 4);                                 \
    else if (n == 8)                                                            \
        fa_pack_n_##SFX(op, a, b, out, len, 8);                                 \
    else                                                                        \
        fa_pack_n_##SFX(op, a, b, out, len, 16);                                \
}
FA_PACK_ENTRY(float, f32)
FA_PACK_ENTRY(double, f64)
/* fa_pack's ops over rows past two registers (fa_rows_mid), called from
 * kernels of their own: inlined next to fa_pack's code, the code of both
 * made float32 softmax_backward over rows of 17-31 1.12-1.25x as long */
static FA_ALWAYS_INLINE void fa_pack_mid_f32(int op, const float *a, const float *b, float *out,
                                             ptrdiff_t len, int n)
{
    fa_rows_mid_f32(op, a, b, out, len, n);
}
static FA_ALWAYS_INLINE void fa_pack_mid_f64(int op, const double *a, const double *b, double *out,
                                             ptrdiff_t len, int n)
{
    fa_rows_mid_f64(op, a, b, out, len, n);
}

#endif /* FASTACT_FA_SUPPORT_H */
