"""Scalar math for the Numba backend, written once, inlined into every kernel.

Everything here is generic over float32 and float64: each type is computed
in its own precision (a float32 ``exp`` never goes through float64).  The
helpers are branch-free, so that LLVM vectorizes the loops that call them
(llvmlite has no vector math library: a loop over ``math.exp`` stays
scalar).

Building blocks (``numba.extending.intrinsic``, emitting LLVM IR directly):

``emit_*``              IR emitters (exp, log1p, Cody-Waite reduction, 2**n
                        scaling by exponent bits, Horner polynomials, float
                        keys)
                        that work on scalars and on vectors: the scalar
                        helpers below and the explicit vector code of the
                        short rows (``numba_rows``) share them
``K(x, c)``, ``KA(a, c)``, ``KD(x, c32, c64)``
                        constants in the float type of ``x`` / array ``a``
``poly(x, "NAME")``     Horner polynomial with the per-precision
                        coefficients ``_POLY["NAME"]`` (``llvm.fmuladd``)
``fkey`` / ``imax``     row maxima through integer keys (an integer max
                        reduction vectorizes and ends in a log-depth tree;
                        ``max()`` and ``llvm.maxnum`` do neither)
``ind(c, x)``           1.0 / 0.0 without a select (a select feeding a sum
                        stops LLVM from vectorizing it)
``fma``, ``fabs``, ``copysign``, ``split_sqrt2``, ``scale2``, ``pow2``
``is_f32(a)``           the dtype test as an IR constant (dead branch dropped)
``wide()``              prefer 512-bit vectors in the calling function
``always_inline()``     helpers are ordinary compiled functions that LLVM
                        inlines into the kernels' loops

Accuracy: the largest error found by ``tests/test_numba_backend.py``
(``test_helper_accuracy``: 20,000 random points per range, normal, huge
and subnormal results included; float32 against float64, float64 against
long double or, for erfc, mpmath), in ULPs of the result type:

=====================  =========  =========
helper                 float32    float64
=====================  =========  =========
exp                    1.1        1.1
exp_neg (x <= 0)       1.1        1.1     (below the normal range: 0 [*])
exp_neg_sub (x <= 0)   1.1        1.1     (subnormal results kept)
expm1_neg (x <= 0)     1.2        1.3
log                    1.3        1.3
log1p                  2.2        1.7
tanh                   2.6        2.7
sigmoid                2.4        2.4     (subnormal results: 0 [*])
log1p(exp(-|x|))       2.0        2.0     (subnormal results: 0 [*])
erfc                   5          5
=====================  =========  =========

[*] where the CPU has no AVX-512: with it (``SCALEF``) every exp ends in
one vscalef, which keeps subnormal results.

The fastmath flags of every kernel are ``FASTMATH`` below: contraction into
FMA, reciprocal, no signed zeros, approximate-function; never ``nnan`` /
``ninf`` (NaN and inf keep their IEEE meaning) and never ``reassoc``
(LLVM would undo the Cody-Waite range reduction of ``exp``, and sums would
depend on how each copy of a loop was vectorized: the kernels sum in fixed
lanes instead, see ``numba_jit``).
"""

from __future__ import annotations

import hashlib
import os

from llvmlite import ir
import llvmlite.binding as llvm
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic

#: fastmath flags of every kernel (no 'nnan', 'ninf', 'reassoc')
FASTMATH = {"contract", "arcp", "nsz", "afn"}


# The backend's compiled functions span several files (numba_math.py,
# numba_rows.py, numba_jit.py, numba_gen.py, fastact/numba.py).  Numba keys a
# cached function on its own source file only, so editing a helper here would
# leave stale machine code behind for every kernel that inlined it.  These
# locators (tried before Numba's own, for the backend's files only) key the
# cache of all of them on the contents of all of them.
_SOURCES = tuple(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), f)
    for f in ("numba_math.py", "numba_rows.py", "numba_jit.py", "numba_gen.py",
              os.path.join(os.pardir, "numba.py"))
)


def _install_cache_locators():
    try:
        from numba.core import caching

        def cls(name):
            return getattr(caching, name, None) or getattr(caching, "_" + name)

        bases = [cls("UserProvidedCacheLocator"), cls("InTreeCacheLocator"), cls("UserWideCacheLocator")]
        registry = cls("CacheImpl")._locator_classes
    except (ImportError, AttributeError):  # pragma: no cover - other Numba
        return
    if any(getattr(c, "_fastact", False) for c in registry):
        return
    ours = {os.path.normcase(os.path.realpath(f)) for f in _SOURCES}
    digest = hashlib.sha256()
    for f in _SOURCES:
        try:
            with open(f, "rb") as fh:
                digest.update(fh.read())
        except OSError:
            pass
    stamp = digest.digest()

    def make(base):
        class Locator(base):
            _fastact = True

            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.normcase(os.path.realpath(py_file)) not in ours:
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return stamp

        Locator.__name__ = Locator.__qualname__ = "Fastact" + base.__name__
        return Locator

    registry[:0] = [make(b) for b in bases]


_install_cache_locators()


def _probe():  # pragma: no cover - only decorated, never called
    return 0


def _cache_available() -> bool:
    """Whether Numba can cache functions of this package's files (in-tree
    ``__pycache__``, else ``NUMBA_CACHE_DIR`` or Numba's user-wide cache
    directory).  If none is writable, functions are compiled per process
    instead of failing to import."""
    try:
        njit(cache=True)(_probe)
    except Exception:
        return False
    return True


#: whether compiled functions are cached on disk
CACHE = _cache_available()
#: options of every compiled function of the backend
JIT = dict(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=CACHE)
#: scalar helpers: ordinary functions that LLVM inlines (``always_inline``)
HELPER = JIT

# ---------------------------------------------------------------------------
# polynomial coefficients (tools/numba_fit_coeffs.py regenerates them), lowest
# degree first; each (float32 tuple, float64 tuple)

_POLY = {
    # exp(r) = 1 + r + r^2 EXP(r), |r| <= ln2/2
    "EXP": (
        (0.5, 0.16666576266288757, 0.04166685417294502, 0.008363226428627968,
         0.0013901321217417717),
        (0.5000000000000001, 0.16666666666666644, 0.04166666666662385,
         0.008333333333356445, 0.0013888888917366607, 0.00019841269784213526,
         2.480152104172087e-05, 2.755735569893974e-06, 2.76202152670826e-07,
         2.5068212846794942e-08),
    ),
    # log(1+f) = f - (f^2/2 - s (f^2/2 + z LOG(z))), s = f/(2+f), z = s^2
    "LOG": (
        (0.6666666865348816, 0.4000012278556824, 0.28550755977630615,
         0.233321413397789),
        (0.666666666666667, 0.3999999999989856, 0.2857142862638533,
         0.22222211070313275, 0.18182893681743922, 0.15331574006254206,
         0.14618234102619715),
    ),
    # log(1+u) for u in [0, 1] with no range reduction: s = u/(2+u) <= 1/3,
    # log(1+u) = u - (u^2/2 - s (u^2/2 + z LOG1P01(z))), z = s^2 <= 1/9
    "LOG1P01": (
        (0.66666413132732578575, 0.400216990582231674807, 0.279991410895086054312,
         0.28024458792490232821),
        (0.666666666666663037971, 0.40000000000157244514, 0.285714285478536920594,
         0.222222239697419881025, 0.181817439245675965119, 0.153865599302846228286,
         0.133009734965683710497, 0.12106086921061411632, 0.0834009877232041985598,
         0.170185800640972266697),
    ),
    # erfc(a) = exp(-a^2) ERFC(t) / (a + 3), t = (a - 3)/(a + 3), a >= 0
    "ERFC": (
        (1.0740069150924683, -0.8833944797515869, 0.590228259563446,
         -0.31046590209007263, 0.11952938884496689, -0.026840519160032272,
         -0.001228290842846036, 0.0030810360331088305, -0.0004796636349055916,
         -0.0003235014737583697),
        (1.0740069070883398, -0.8833944531698822, 0.5902283571040958,
         -0.31046726190071816, 0.11952776128764278, -0.026827234619975222,
         -0.0012124166347595874, 0.0030340619389997428, -0.0005483096130935289,
         -0.0002767773684445054, 0.00010756103293797895, 3.039592081220309e-05,
         -1.746903556040965e-05, -4.74249516720272e-06, 2.7623800875836e-06,
         9.857942947634823e-07, -4.0483774784790274e-07, -2.1724236814428126e-07,
         4.512441040570928e-08, 3.8350325375877326e-08, -2.1103213402930643e-09,
         -3.421845306845561e-09),
    ),
}

# bit layout of the two float types: (int type, mantissa bits, exponent bias)
_LAYOUT = {32: (ir.IntType(32), 23, 127), 64: (ir.IntType(64), 52, 1023)}
# 1.5 * 2**mant: adding it rounds to an integer kept in the low mantissa bits
_SHIFTER = {32: 12582912.0, 64: 6755399441055744.0}


def _bits(ty):
    return 32 if ty == types.float32 else 64


def _is_float(*tys):
    return all(isinstance(t, types.Float) for t in tys)


def target_features():
    """The CPU features Numba compiles for here (NUMBA_CPU_FEATURES, else the
    host's): what its target machine and its cache index use."""
    feats = config.CPU_FEATURES if config.CPU_FEATURES is not None else llvm.get_host_cpu_features().flatten()
    return set(feats.split(","))


#: whether exp's final p * 2**n is AVX-512's vscalef (read when a kernel is
#: compiled; tests set it to compile both forms).  One instruction, rounded
#: once, overflowing to inf and underflowing gradually through the
#: subnormals, where the integer form needs two multiplications by 2**n1 and
#: 2**n2 (or flushes subnormal results, as exp_neg did): float32
#: sigmoid/silu/softplus 0.86-0.90x the time, softmax 0.86x in cache on AMD
#: Zen 5.  Without AVX-512 LLVM expands llvm.ldexp into a longer sequence
#: than the integer form, so that stays.
SCALEF = {"+avx512f", "+avx512vl"} <= target_features()


# ---------------------------------------------------------------------------
# IR emitters: each works on a float or double value and on vectors of them,
# so that the scalar helpers below (vectorized by LLVM's loop vectorizer) and
# the explicit vector code of the short-row kernels (numba_rows.py) share one
# implementation.

#: flags of the arithmetic the emitters produce (a subset of FASTMATH)
_EFLAGS = ("nsz", "contract")


def _elem(ty):
    return ty.element if isinstance(ty, ir.VectorType) else ty


def _fbits(ty):
    return 32 if isinstance(_elem(ty), ir.FloatType) else 64


def _suffix(ty):
    e = "f32" if _fbits(ty) == 32 else "f64"
    return f"v{ty.count}{e}" if isinstance(ty, ir.VectorType) else e


def const(ty, v):
    """The constant ``v`` in type ``ty`` (splat for a vector type)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, v)] * ty.count)
    return ir.Constant(ty, v)


def int_type(ty):
    """The integer (vector) type with the width of float (vector) type ``ty``."""
    it = ir.IntType(_fbits(ty))
    return ir.VectorType(it, ty.count) if isinstance(ty, ir.VectorType) else it


def llvm_call(builder, base, ty, *args, suffix=None):
    """Call ``llvm.<base>.<suffix of ty>`` returning ``ty``."""
    name = f"llvm.{base}.{suffix or _suffix(ty)}"
    fnty = ir.FunctionType(ty, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, args)


def _fmuladd(b, x, y, z):
    return llvm_call(b, "fmuladd", x.type, x, y, z)


def emit_poly(b, x, key):
    """Horner evaluation of ``_POLY[key]`` at ``x`` (llvm.fmuladd)."""
    ty = x.type
    coeffs = _POLY[key][0 if _fbits(ty) == 32 else 1]
    acc = const(ty, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = _fmuladd(b, acc, x, const(ty, c))
    return acc


def _clamp(b, x, lo, hi):
    """min(max(x, lo), hi) keeping NaN (compare-and-select)."""
    ty = x.type
    if hi is not None:
        h = const(ty, hi)
        x = b.select(b.fcmp_ordered(">", x, h), h, x)
    if lo is not None:
        l_ = const(ty, lo)
        x = b.select(b.fcmp_ordered("<", x, l_), l_, x)
    return x


_EXP_HI = {32: 89.0, 64: 710.0}
_EXP_LO = {32: -104.0, 64: -746.0}
# ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with few bits so that n * _LN2_HI is exact
_LN2_HI = {32: 0.693359375, 64: 0.6931457519531250}
_LN2_LO = {32: -2.12194440e-4, 64: 1.4286068203094172e-06}


def emit_reduce(b, x, lo=None, hi=None):
    """(n, r): x = n ln2 + r, |r| <= ln2/2 (Cody-Waite), n held as
    ``z = SHIFTER + n``; x first clamped to [lo, hi] (NaN kept)."""
    ty = x.type
    bits = _fbits(ty)
    x = _clamp(b, x, lo, hi)
    sh = const(ty, _SHIFTER[bits])
    z = _fmuladd(b, x, const(ty, 1.4426950408889634), sh)
    n = b.fsub(z, sh, flags=_EFLAGS)
    r = _fmuladd(b, n, const(ty, -_LN2_HI[bits]), x)
    r = _fmuladd(b, n, const(ty, -_LN2_LO[bits]), r)
    return z, r


def emit_ldexp(b, p, z, keep=None):
    """p * 2**n (z = SHIFTER + n) through vscalef (only when SCALEF).  The
    explicit vectors of the row kernels call the x86 intrinsic with n as a
    float; scalar code (vectorized by LLVM) goes through llvm.ldexp with n
    taken from z's low bits -- integer arithmetic, defined for any z (a NaN
    p stays NaN whatever n is) where fptosi of a NaN would be poison --
    and 0 where ``keep`` (if given) is false."""
    ty = p.type
    bits = _fbits(ty)
    width = bits * ty.count if isinstance(ty, ir.VectorType) else 0
    if width in (128, 256, 512):
        n = b.fsub(z, const(ty, _SHIFTER[bits]), flags=_EFLAGS)
        mty = ir.IntType(max(8, ty.count))
        if keep is None:
            mask, other = ir.Constant(mty, -1), p
        else:  # zero-masked: no assist in the masked lanes
            mask, other = b.bitcast(keep, ir.IntType(ty.count)), const(ty, 0.0)
            if ty.count < 8:
                mask = b.zext(mask, mty)
        args = [p, n, other, mask] + ([ir.Constant(ir.IntType(32), 4)] if width == 512 else [])  # 4: MXCSR rounding
        fnty = ir.FunctionType(ty, [a.type for a in args])
        name = f"llvm.x86.avx512.mask.scalef.{'ps' if bits == 32 else 'pd'}.{width}"
        return b.call(cgutils.get_or_insert_function(b.module, fnty, name), args)
    n = _shifted_int(b, z)
    i32 = ir.IntType(32)
    isuf = "i32"
    if isinstance(ty, ir.VectorType):
        i32 = ir.VectorType(i32, ty.count)
        isuf = f"v{ty.count}i32"
    if bits == 64:
        n = b.trunc(n, i32)
    e = llvm_call(b, "ldexp", ty, p, n, suffix=f"{_suffix(ty)}.{isuf}")
    return e if keep is None else b.select(keep, e, const(ty, 0.0))


def _exp_poly(b, r):
    """e**r for |r| <= ln2/2: 1 + (r + r^2 q(r)), the small terms summed first."""
    t = _fmuladd(b, b.fmul(r, r, flags=_EFLAGS), emit_poly(b, r, "EXP"), r)
    return b.fadd(const(r.type, 1.0), t, flags=_EFLAGS)


def emit_exp_parts(b, x):
    """(p, z) with e**x = p * 2**n, z = SHIFTER + n, p in [0.7, 1.5]."""
    bits = _fbits(x.type)
    z, r = emit_reduce(b, x, _EXP_LO[bits], _EXP_HI[bits])
    return _exp_poly(b, r), z


# below this e**x rounds to 0
_EXP_ZERO = {32: -103.98, 64: -745.2}


def _exponent_scale(b, e, ty):
    """2**e as a float from integer e (within the normal range)."""
    bits = _fbits(ty)
    ity, mant, bias = _LAYOUT[bits]
    it = int_type(ty)
    v = b.shl(b.add(e, const(it, bias)), const(it, mant))
    return b.bitcast(v, ty)


def _shifted_int(b, z):
    it = int_type(z.type)
    si = ir.Constant(ir.IntType(_fbits(z.type)), 0)
    si = b.bitcast(const(z.type, _SHIFTER[_fbits(z.type)]), it)
    return b.sub(b.bitcast(z, it), si)


def emit_scale2(b, p, z):
    """p * 2**n (z = SHIFTER + n) in two exact steps so that inf, normal and
    subnormal results are all right, rounded once."""
    ty = p.type
    it = int_type(ty)
    n = _shifted_int(b, z)
    e1 = b.ashr(n, const(it, 1))
    e2 = b.sub(n, e1)
    s1 = _exponent_scale(b, e1, ty)
    s2 = _exponent_scale(b, e2, ty)
    return b.fmul(b.fmul(p, s1, flags=_EFLAGS), s2, flags=_EFLAGS)


def emit_pow2(b, z):
    """2**n for z = SHIFTER + n, n within the normal exponent range."""
    ty = z.type
    bits = _fbits(ty)
    it = int_type(ty)
    ity, mant, bias = _LAYOUT[bits]
    sh = b.bitcast(const(ty, _SHIFTER[bits]), it)
    e = b.sub(b.bitcast(z, it), b.sub(sh, const(it, bias)))  # constant folded: one sub
    return b.bitcast(b.shl(e, const(it, mant)), ty)


def emit_exp(b, x):
    """e**x, <= 1 ULP (overflow inf, underflow through subnormals to 0).

    No lane whose result is 0 (-inf included) goes through a subnormal
    intermediate or an underflow, which costs a ~150-cycle microcode assist
    for the whole vector on Intel cores -- vscalef's underflow to 0 too
    (Xeon, AVX-512: float64 softmax rows of 12, whose masked lanes are
    exp(-inf), 6.3 ns an entry against 0.9; Zen 5 has no such assist).
    Only lanes whose result is itself subnormal pay it.  With SCALEF, x
    clamped and one zero-masked vscalef (see ``emit_exp_neg``; its callers
    here do not merge the mask away: log_softmax_backward and
    logsumexp_backward of -inf entries as fast as of others); otherwise
    those lanes are computed as e**0 and replaced by 0, 2**n applied in two
    exact integer steps.
    """
    ty = x.type
    zero = b.fcmp_ordered("<", x, const(ty, _EXP_ZERO[_fbits(ty)]))
    if SCALEF:
        return emit_ldexp(b, *emit_exp_parts(b, x), b.not_(zero))
    p, z = emit_exp_parts(b, b.select(zero, const(ty, 0.0), x))
    return b.select(zero, const(ty, 0.0), emit_scale2(b, p, z))


# below this e**x is subnormal (exp_neg gives 0 there)
_EXP_NORMAL = {32: -87.33654, 64: -708.39641}


def emit_exp_neg(b, x, subnormals=False, zero_x=False):
    """e**x for x <= 0 (or NaN), <= 1 ULP on normal results.  No overflow
    handling.  For the arguments the kernels build as x - max(x), -|x|,
    -x^2, whose results are summed with or compared to numbers near 1.

    With SCALEF (AVX-512) one vscalef scales, subnormal results included.
    Otherwise results below the smallest normal number are flushed to 0 (an
    absolute error under 1.2e-38 / 2.2e-308) with one integer scaling step
    where ``emit_exp`` takes two -- about 30% fewer instructions -- unless
    ``subnormals``: two steps (~10% more work), for products x * e**-|x|
    that are normal numbers when e**-|x| is not (silu's x * sigmoid(x) near
    x = -90).  Either way the lanes below the bound give 0, never an
    underflow (see ``emit_exp``): computed as e**0 and replaced by 0, or
    (scalar code with SCALEF, unless ``zero_x``) through a zero-masked
    vscalef."""
    ty = x.type
    bits = _fbits(ty)
    lo = _EXP_ZERO[bits] if SCALEF or subnormals else _EXP_NORMAL[bits]
    under = b.fcmp_ordered("<", x, const(ty, lo))
    if SCALEF and not (zero_x or isinstance(ty, ir.VectorType)):
        # scalar code: x clamped, and LLVM's vectors fold the select into a
        # zero-masked vscalef, whose masked lanes take no assist (sigmoid,
        # softplus of -1e4: as fast as of 0; zeroing x instead cost sigmoid
        # 6-18% and silu_backward 5-17%).  But where the caller multiplies
        # the result (e * c), LLVM may move the select past the product and
        # leave the vscalef unmasked: such callers ask for ``zero_x``
        # (gelu_backward of -1e4: 5.2 ns an entry against 0.9 zeroed).  The
        # explicit vectors of the row kernels always zero x (there LLVM
        # merged the select with the kernels' own: float64 cross-entropy
        # over 12 classes 7.4 ns a logit against 1.8).
        z, r = emit_reduce(b, x, _EXP_LO[bits], None)
        return emit_ldexp(b, _exp_poly(b, r), z, b.not_(under))
    z, r = emit_reduce(b, b.select(under, const(ty, 0.0), x), None, None)
    p = _exp_poly(b, r)
    if SCALEF:
        e = emit_ldexp(b, p, z)
    elif subnormals:
        e = emit_scale2(b, p, z)
    else:
        e = b.fmul(p, emit_pow2(b, z), flags=_EFLAGS)
    return b.select(under, const(ty, 0.0), e)


def emit_fkey(b, x):
    """Integer with the order of float x (see ``fkey``)."""
    bits = _fbits(x.type)
    it = int_type(x.type)
    v = b.bitcast(x, it)
    sgn = b.ashr(v, const(it, bits - 1))
    return b.xor(v, b.and_(sgn, const(it, (1 << (bits - 1)) - 1)))


def emit_from_fkey(b, k, fty):
    bits = _fbits(fty)
    it = k.type
    sgn = b.ashr(k, const(it, bits - 1))
    v = b.xor(k, b.and_(sgn, const(it, (1 << (bits - 1)) - 1)))
    return b.bitcast(v, fty)


def emit_split_sqrt2(b, u):
    """(m, k) with u = m * 2**k, m in [sqrt(2)/2, sqrt(2)), k as a float,
    for positive normal u (exponent and mantissa bits, no division)."""
    ty = u.type
    bits = _fbits(ty)
    ity, mant, bias = _LAYOUT[bits]
    it = int_type(ty)
    one = b.bitcast(const(ty, 1.0), it)
    r2 = b.bitcast(const(ty, 0.7071067811865476), it)
    ix = b.add(b.bitcast(u, it), b.sub(one, r2))
    k = b.sub(b.ashr(ix, const(it, mant)), const(it, bias))
    m = b.bitcast(b.add(b.and_(ix, const(it, (1 << mant) - 1)), r2), ty)
    return m, b.sitofp(k, ty)


def _fop(b, op, x, y):
    return getattr(b, op)(x, y, flags=_EFLAGS)


def emit_log1pf(b, f):
    """log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1]: with s = f/(2+f),
    log(1+f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + s^2 LOG(s^2))), the
    f^2/2 split off so that the polynomial only corrects a small term."""
    ty = f.type
    s = _fop(b, "fdiv", f, _fop(b, "fadd", const(ty, 2.0), f))
    z = _fop(b, "fmul", s, s)
    hfsq = _fop(b, "fmul", _fop(b, "fmul", const(ty, 0.5), f), f)
    t = _fop(b, "fmul", s, _fop(b, "fadd", hfsq, _fop(b, "fmul", z, emit_poly(b, z, "LOG"))))
    return _fop(b, "fsub", f, _fop(b, "fsub", hfsq, t))


def emit_log1p(b, x):
    """log(1 + x), <= 2.2 ULP (float32) / 1.7 (float64); log1p(-1) = -inf,
    x < -1 gives NaN, +inf and NaN pass through.

    u = 1 + x is split as m 2**k (m near 1); the rounding error of forming u
    is put back as c / u (c = x - (u - 1), or 1 - (u - x) when k > 0 and x
    is the larger term), so that tiny x keep full relative accuracy."""
    ty = x.type
    bits = _fbits(ty)
    one = const(ty, 1.0)
    u = _fop(b, "fadd", one, x)
    m, k = emit_split_sqrt2(b, u)
    c = b.select(
        b.fcmp_ordered(">", k, const(ty, 0.0)),
        _fop(b, "fsub", one, _fop(b, "fsub", u, x)),
        _fop(b, "fsub", x, _fop(b, "fsub", u, one)),
    )
    c = _fop(b, "fdiv", c, u)
    lp = emit_log1pf(b, _fop(b, "fsub", m, one))
    r = _fmuladd(b, k, const(ty, _LN2_HI[bits]), _fop(b, "fadd", lp, _fmuladd(b, k, const(ty, _LN2_LO[bits]), c)))
    r = b.select(b.fcmp_ordered("<", x, const(ty, float("inf"))), r, x)  # +inf, NaN
    r = b.select(b.fcmp_ordered("==", u, const(ty, 0.0)), const(ty, float("-inf")), r)
    return b.select(b.fcmp_ordered("<", x, const(ty, -1.0)), const(ty, float("nan")), r)


# ---------------------------------------------------------------------------
# intrinsics


@intrinsic
def K(typingctx, like, value):
    """``value`` (a Python number) as a constant of the float type of ``like``."""
    if not _is_float(like):
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[1], sig.args[1], sig.return_type)

    return like(like, value), codegen


@intrinsic
def KA(typingctx, arr, value):
    """``value`` as a constant of the element type of the float array ``arr``."""
    if not (isinstance(arr, types.Array) and _is_float(arr.dtype)):
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[1], sig.args[1], sig.return_type)

    return arr.dtype(arr, value), codegen


@intrinsic
def KD(typingctx, like, c32, c64):
    """``c32`` if ``like`` is float32 else ``c64``, in the type of ``like``."""
    if not _is_float(like):
        return None

    def codegen(context, builder, sig, args):
        i = 1 if sig.return_type == types.float32 else 2
        return context.cast(builder, args[i], sig.args[i], sig.return_type)

    return like(like, c32, c64), codegen


def _call(builder, name, ty, *args):
    fnty = ir.FunctionType(ty, [ty] * len(args))
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, args)


def _llvm_name(base, ty):
    return f"llvm.{base}.{'f32' if ty == types.float32 else 'f64'}"


@intrinsic
def poly(typingctx, x, name):
    """Horner evaluation of the coefficients ``_POLY[name]`` at ``x``."""
    if not (_is_float(x) and isinstance(name, types.StringLiteral)):
        return None
    key = name.literal_value
    if key not in _POLY:
        return None

    def codegen(context, builder, sig, args):
        return emit_poly(builder, args[0], key)

    return x(x, name), codegen


def _unary_llvm(base):
    @intrinsic
    def f(typingctx, x):
        if not _is_float(x):
            return None

        def codegen(context, builder, sig, args):
            ty = sig.return_type
            return _call(builder, _llvm_name(base, ty), context.get_value_type(ty), *args)

        return x(x), codegen

    return f


def _binary_llvm(base):
    @intrinsic
    def f(typingctx, x, y):
        if not (_is_float(x) and x == y):
            return None

        def codegen(context, builder, sig, args):
            ty = sig.return_type
            return _call(builder, _llvm_name(base, ty), context.get_value_type(ty), *args)

        return x(x, y), codegen

    return f


fabs = _unary_llvm("fabs")
copysign = _binary_llvm("copysign")
minnum = _binary_llvm("minnum")  # the non-NaN one of two, else NaN


@intrinsic
def fma(typingctx, x, y, z):
    """x * y + z with one rounding (``llvm.fma``)."""
    if not (_is_float(x) and x == y == z):
        return None

    def codegen(context, builder, sig, args):
        ty = sig.return_type
        return _call(builder, _llvm_name("fma", ty), context.get_value_type(ty), *args)

    return x(x, y, z), codegen


@intrinsic
def fkey(typingctx, x):
    """An integer with the order of the float ``x`` (a signed-magnitude to
    two's-complement map of its bits; +NaN sorts above +inf, -NaN below
    -inf).  Row maxima are taken over keys: an integer max reduction
    vectorizes and reduces with a log-depth tree, whereas a vector
    ``llvm.maxnum`` reduction is finished element by element."""
    if not _is_float(x):
        return None
    ity = types.int32 if x == types.float32 else types.int64

    def codegen(context, builder, sig, args):
        return emit_fkey(builder, args[0])

    return ity(x), codegen


@intrinsic
def from_fkey(typingctx, k, like):
    """The float of a key made by ``fkey`` (the map is its own inverse)."""
    if not (isinstance(k, types.Integer) and _is_float(like)):
        return None

    def codegen(context, builder, sig, args):
        return emit_from_fkey(builder, args[0], context.get_value_type(sig.return_type))

    return like(k, like), codegen


@intrinsic
def imax(typingctx, a, b):
    """Signed integer max (``llvm.smax``), for key reductions."""
    if not (isinstance(a, types.Integer) and a == b):
        return None

    def codegen(context, builder, sig, args):
        lty = context.get_value_type(sig.return_type)
        fnty = ir.FunctionType(lty, [lty, lty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.smax.i{lty.width}")
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def is_f32(typingctx, arr):
    """Whether ``arr`` holds float32, as a constant in the IR: LLVM drops the
    other branch before optimizing it (``arr.itemsize`` is loaded from the
    array at run time, so both branches were compiled)."""
    if not (isinstance(arr, types.Array) and _is_float(arr.dtype)):
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(1), sig.args[0].dtype == types.float32)

    return types.boolean(arr), codegen


@intrinsic
def ind(typingctx, cond, like):
    """1.0 if ``cond`` else 0.0, in the float type of ``like``, without a
    branch or select (``uitofp``): a select feeding a reduction keeps LLVM
    from vectorizing it."""
    if not (isinstance(cond, types.Boolean) and _is_float(like)):
        return None

    def codegen(context, builder, sig, args):
        return builder.uitofp(args[0], context.get_value_type(sig.return_type))

    return like(cond, like), codegen


@intrinsic
def scale2(typingctx, p, z):
    """``p * 2**n`` where ``z = SHIFTER + n`` holds the integer n in its low
    mantissa bits (see ``emit_scale2``)."""
    if not (_is_float(p) and p == z):
        return None

    def codegen(context, builder, sig, args):
        return emit_scale2(builder, *args)

    return p(p, z), codegen


@intrinsic
def pow2(typingctx, z):
    """``2**n`` where ``z = SHIFTER + n`` (n within the normal exponent range)."""
    if not _is_float(z):
        return None

    def codegen(context, builder, sig, args):
        return emit_pow2(builder, args[0])

    return z(z), codegen


@intrinsic
def exp(typingctx, x):
    """e**x, <= 1 ULP; overflow gives inf, underflow subnormals then 0."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_exp(builder, args[0])

    return x(x), codegen


@intrinsic
def exp_neg(typingctx, x):
    """e**x for x <= 0 (or NaN); subnormal results flushed to 0 (see
    ``emit_exp_neg``)."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_exp_neg(builder, args[0])

    return x(x), codegen


@intrinsic
def exp_neg_sub(typingctx, x):
    """e**x for x <= 0 (or NaN), subnormal results kept (see
    ``emit_exp_neg``)."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_exp_neg(builder, args[0], subnormals=True)

    return x(x), codegen


@intrinsic
def exp_neg_zx(typingctx, x):
    """``exp_neg`` for callers that multiply its result: lanes whose result
    is 0 computed from x = 0 (see ``emit_exp_neg``)."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_exp_neg(builder, args[0], zero_x=True)

    return x(x), codegen


@intrinsic
def exp_neg_sub_zx(typingctx, x):
    """``exp_neg_sub`` for callers that multiply its result (see
    ``exp_neg_zx``)."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_exp_neg(builder, args[0], subnormals=True, zero_x=True)

    return x(x), codegen


@intrinsic
def exp_parts(typingctx, x):
    """``(p, z)`` with e**x = scale2(p, z), p in [0.7, 1.5]: callers fold
    factors into p before the final scaling, so that no intermediate is a
    (slow) subnormal."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        p, z = emit_exp_parts(builder, args[0])
        return context.make_tuple(builder, sig.return_type, (p, z))

    return types.UniTuple(x, 2)(x), codegen


@intrinsic
def split_sqrt2(typingctx, u):
    """``(m, k)`` with ``u = m * 2**k``, ``m`` in [sqrt(2)/2, sqrt(2)), for
    positive normal ``u`` (``k`` returned as a float)."""
    if not _is_float(u):
        return None

    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, sig.return_type, emit_split_sqrt2(builder, args[0]))

    return types.UniTuple(u, 2)(u), codegen


@intrinsic
def _log1pf(typingctx, f):
    """log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1] (``emit_log1pf``)."""
    if not _is_float(f):
        return None

    def codegen(context, builder, sig, args):
        return emit_log1pf(builder, args[0])

    return f(f), codegen


@intrinsic
def log1p(typingctx, x):
    """log(1 + x), <= 2.2 ULP; log1p(-1) = -inf, x < -1 gives NaN (see
    ``emit_log1p``)."""
    if not _is_float(x):
        return None

    def codegen(context, builder, sig, args):
        return emit_log1p(builder, args[0])

    return x(x), codegen


# ---------------------------------------------------------------------------
# function attributes


def _fn_attr(builder, attr):
    try:
        set.add(builder.function.attributes, attr)
    except Exception:  # pragma: no cover - llvmlite internals changed
        pass


@intrinsic
def wide(typingctx):
    """Let LLVM use 512-bit vectors in the calling function.

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors; for these
    compute-bound loops (exp, erf polynomials) the full zmm width is faster.
    Sets the function attribute ``"prefer-vector-width"="512"``; CPUs
    without AVX-512 are unaffected.
    """

    def codegen(context, builder, sig, args):
        _fn_attr(builder, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def always_inline(typingctx):
    """Mark the calling function ``alwaysinline`` for LLVM.

    The scalar helpers are ordinary Numba functions (compiled once per
    type, cheap for Numba's front end) that LLVM then inlines into every
    loop that calls them, where they vectorize.  (Numba-level
    ``inline="always"`` gives the same code but re-types the inlined IR at
    every call site: seconds of compile time per kernel.)"""

    def codegen(context, builder, sig, args):
        _fn_attr(builder, "alwaysinline")
        # a helper's own loops are vectorized in its own module, before it
        # is inlined: give them the kernels' vector width
        _fn_attr(builder, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def never_inline(typingctx):
    """Mark the calling function ``noinline`` for LLVM (the serial run
    functions, called from both branches of a parallel driver)."""

    def codegen(context, builder, sig, args):
        _fn_attr(builder, "noinline")
        return context.get_dummy_value()

    return types.none(), codegen


# ---------------------------------------------------------------------------
# scalar functions (generic over float32 / float64)

_LN2 = 0.6931471805599453
_LOG2E = 1.4426950408889634


@njit(**HELPER)
def expm1_neg(x):
    """e**x - 1 for x <= 0 (or NaN), relative error <= 2 ULP."""
    always_inline()
    lo = KD(x, -20.0, -45.0)
    x = lo if x < lo else x
    sh = KD(x, 12582912.0, 6755399441055744.0)
    z = x * K(x, _LOG2E) + sh
    n = z - sh
    r = x - n * KD(x, 0.693359375, 0.6931457519531250)
    r = r - n * KD(x, -2.12194440e-4, 1.4286068203094172e-06)
    em = r + r * r * poly(r, "EXP")
    s = pow2(z)
    return s * em + (s - K(x, 1.0))


@njit(**HELPER)
def log(x):
    """Natural log, <= 1 ULP; log(0) = -inf, log(x<0) = NaN."""
    always_inline()
    tiny = x < KD(x, 1.1754943508222875e-38, 2.2250738585072014e-308)
    u = x * KD(x, 16777216.0, 18014398509481984.0) if tiny else x
    mk = split_sqrt2(u)
    m = mk[0]
    k = mk[1] - (KD(x, 24.0, 54.0) if tiny else K(x, 0.0))
    f = m - K(x, 1.0)
    r = k * KD(x, 0.693359375, 0.6931457519531250) + (
        _log1pf(f) + k * KD(x, -2.12194440e-4, 1.4286068203094172e-06)
    )
    inf = K(x, 1.0) / K(x, 0.0)
    r = x if not (x < inf) else r  # +inf, NaN
    r = -inf if x == K(x, 0.0) else r
    r = (x - x) / K(x, 0.0) if x < K(x, 0.0) else r  # NaN
    return r


@njit(**HELPER)
def tanh(x):
    """tanh, <= 2 ULP: -t/(2+t) with t = expm1(-2|x|)."""
    always_inline()
    t = expm1_neg(K(x, -2.0) * fabs(x))
    y = -t / (K(x, 2.0) + t)
    return copysign(y, x)


@njit(**HELPER)
def _sigmoid_e(x, e):
    """1 / (1 + e**-x) from e = e**-|x|, without overflow (the reference's
    formula)."""
    always_inline()
    num = K(x, 1.0) if x >= K(x, 0.0) else e
    return num / (K(x, 1.0) + e)


@njit(**HELPER)
def sigmoid(x):
    """sigmoid(x); results below the smallest normal number flushed to 0."""
    always_inline()
    return _sigmoid_e(x, exp_neg(-fabs(x)))


@njit(**HELPER)
def sigmoid_sub(x):
    """sigmoid(x) with subnormal results kept, for callers that multiply it
    by a gradient: inf * a subnormal is inf, as in the reference, where a
    flushed 0 would give NaN."""
    always_inline()
    return _sigmoid_e(x, exp_neg_sub(-fabs(x)))


@njit(**HELPER)
def log1p_unit(y):
    """log(1 + y) for y in [0, 1] (or NaN), <= 2 ULP; cheaper than log1p:
    1 + y is never formed (no rounding to undo) and the interval needs no
    range reduction: s = y/(2+y) <= 1/3, one polynomial in s^2 (4 terms in
    float32, 10 in float64)."""
    always_inline()
    s = y / (K(y, 2.0) + y)
    z = s * s
    hf = K(y, 0.5) * y * y
    return y - (hf - s * (hf + z * poly(z, "LOG1P01")))


@njit(**HELPER)
def log1pexp_neg_abs(x):
    """log(1 + e**-|x|), in (0, log 2]."""
    always_inline()
    return log1p_unit(exp_neg(-fabs(x)))


@njit(**HELPER)
def erfc(x):
    """Complementary error function, relative accuracy in both tails (<= 5
    ULP); results below the normal range are flushed to 0.

    One formula for all |x|: erfc(a) = exp(-a^2) G(t) / (a + 3) with
    t = (a - 3)/(a + 3) in [-1, 1) and G a single minimax polynomial (degree
    9 in float32, 21 in float64), a^2 = hi + lo exactly (FMA) so that
    exp(-a^2) keeps its accuracy for large a; erfc(-a) = 2 - erfc(a).
    """
    always_inline()
    a = fabs(x)
    big = KD(x, 10.5, 28.0)
    ac = big if a > big else a  # NaN passes through
    hi = ac * ac
    lo = fma(ac, ac, -hi)
    inv = K(x, 1.0) / (ac + K(x, 3.0))
    t = (ac - K(x, 3.0)) * inv
    q = exp_neg(-hi) * (poly(t, "ERFC") * inv)
    q = q - q * lo
    return K(x, 2.0) - q if x < K(x, 0.0) else q
