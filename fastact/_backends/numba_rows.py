"""Explicit vector code for the row kernels, as Numba intrinsics.

Short rows (``vrow*``, ``vrows*``): a row of a few elements is too short
for LLVM's loop vectorizer -- a loop over 16 elements runs through the
vectorizer's run-time checks, a partly vectorized epilogue and spills of
the exp constants, about 60 cycles a row.  Here a whole row is one masked
vector load (``llvm.masked.load``), the work is done on the vector, the
reductions are pairwise shuffle trees and the result is one masked store;
``vrows_*`` do R rows step by step so that their dependency chains overlap
(~7 cycles a row of 16 float32).  Without AVX-512 the masked stores are
plain stores of the row's power-of-two pieces and the masked loads plain
loads where the vector lies in the array (``MASKED_STORES``: AVX2's
vmaskmovps stores are microcode on AMD Zen 3).  Rows of up to 8 entries take 8 lanes (and
in float64 rows of up to 4, 4 lanes), chosen at run time (``_by_width``).
log_softmax and logsumexp keep R rows in registers from load to store,
their R log1p as one vector (``vrows_log_softmax``, ``vrows_logsumexp``).
Rows of 2, 4 or 8 entries can also go several to a vector (``vpack_*``:
whole-vector loads and stores, per-row reductions by butterflies).  Rows
of a few registers (up to 16) go one at a time in registers (``vrowp_*``:
a compile-time count of 512-bit pieces, chosen at run time from the row
length, trees over the pieces and one horizontal reduction).

Long rows (``vsum_*``, ``vmap_*``): loops over full vectors and one masked
tail, with vector accumulators summed in a fixed pairwise order -- no
run-time overlap tests (out may be the input: each vector is loaded before
it is stored), no scalar epilogue, and the same bits wherever the code is
inlined (a prange region included).

Each intrinsic takes flat C-contiguous arrays, an element offset and a
length; lanes past the row are neither read nor written.  The math is
``numba_math``'s IR emitters, shared with the scalar helpers.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from .numba_math import (_EFLAGS, const, emit_exp, emit_exp_neg, emit_fkey, emit_from_fkey, emit_log1p, llvm_call,
                          target_features)


#: whether llvm.masked.store is cheap on the target.  With AVX-512 it is one
#: store under a mask register; without, LLVM emits vmaskmovps/pd, which AMD
#: Zen 3 runs in microcode: 8 ns a row of 8 float32 against 1.6 ns for a
#: plain store (C, AVX2).  Without AVX-512 the stores of row prefixes
#: (_store_prefix) are plain stores of power-of-two pieces, and masks that
#: are all set (rows with a finite max, the common case) plain stores.
MASKED_STORES = "+avx512f" in target_features()


def _splat(b, s, w):
    """The scalar s in each of w lanes."""
    i32 = ir.IntType(32)
    v = b.insert_element(ir.Constant(ir.VectorType(s.type, w), ir.Undefined), s, ir.Constant(i32, 0))
    return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, w), [ir.Constant(i32, 0)] * w))


def _prefix_mask(b, n, w):
    """<w x i1>: lane k set for k < n (n an integer, any width)."""
    i32 = ir.IntType(32)
    n32 = b.trunc(n, i32) if n.type.width > 32 else n
    iota = ir.Constant(ir.VectorType(i32, w), [ir.Constant(i32, i) for i in range(w)])
    return b.icmp_unsigned("<", iota, _splat(b, n32, w))


def _store_prefix(b, v, ptr, n, align):
    """Store lanes [0, n) of v at the element pointer ptr (all of them for
    n >= the lanes of v), nothing past them.  Where masked stores are
    slow: the whole vector when n covers it, else the pieces of n's binary
    digits, largest first, each a plain store (n is the same for every row
    of a call, so the branches are predicted)."""
    w = v.type.count
    ety = v.type.element
    if MASKED_STORES:
        _masked_store(b, v, ptr, align, _prefix_mask(b, n, w))
        return
    i32 = ir.IntType(32)
    ptr = b.bitcast(ptr, ety.as_pointer())
    full = b.icmp_unsigned(">=", n, ir.Constant(n.type, w))
    with b.if_else(full) as (whole, pieces):
        with whole:
            b.store(v, b.bitcast(ptr, v.type.as_pointer()), align=align)
        with pieces:
            cur, p = v, w // 2
            while p >= 1:
                # cur holds the 2p lanes from ptr on; n's bits below 2p remain
                bit = b.icmp_unsigned("!=", b.and_(n, ir.Constant(n.type, p)), ir.Constant(n.type, 0))
                if p == 1:
                    lo = b.extract_element(cur, ir.Constant(i32, 0))
                    with b.if_then(bit):
                        b.store(lo, ptr, align=align)
                    break
                lo = b.shuffle_vector(cur, cur, ir.Constant(ir.VectorType(i32, p), [ir.Constant(i32, i) for i in range(p)]))
                hi = b.shuffle_vector(cur, cur, ir.Constant(ir.VectorType(i32, p),
                                                            [ir.Constant(i32, i + p) for i in range(p)]))
                with b.if_then(bit):
                    b.store(lo, b.bitcast(ptr, lo.type.as_pointer()), align=align)
                cur = b.select(bit, hi, lo)
                ptr = b.select(bit, b.gep(ptr, [ir.Constant(ir.IntType(64), p)]), ptr)
                p //= 2


def _vl(v):
    if isinstance(v, types.IntegerLiteral):
        return v.literal_value
    return None


def _given(t):
    """Whether an optional argument was passed (not None or omitted)."""
    return not isinstance(t, (types.NoneType, types.Omitted))


def _flat(t):
    return isinstance(t, types.Array) and t.ndim == 1 and isinstance(t.dtype, types.Float)


class _Row:
    """Masked access to ``n`` elements of a flat array at an offset."""

    def __init__(self, context, builder, arrty, arr, off, n, vl):
        self.b = builder
        self.ety = context.get_value_type(arrty.dtype)
        self.vty = ir.VectorType(self.ety, vl)
        self.vl = vl
        a = context.make_array(arrty)(context, builder, value=arr)
        self.ptr = builder.gep(a.data, [off])
        self.end = builder.gep(a.data, [a.nitems])
        i32 = ir.IntType(32)
        self.n32 = builder.trunc(n, i32)
        self.mask = _prefix_mask(builder, self.n32, vl)
        self.align = ir.Constant(i32, 4 if isinstance(self.ety, ir.FloatType) else 8)

    def load(self, fill):
        return _load_row(self.b, self, self.ptr, fill)

    def store(self, v, ptr=None, when=None):
        """The row's lanes of v to ptr (default: the row), only if the
        scalar flag when (default: always)."""
        b = self.b
        ptr = self.ptr if ptr is None else ptr
        if when is None:
            _store_prefix(b, v, ptr, self.n32, self.align.constant)
            return
        if MASKED_STORES:
            _masked_store(b, v, ptr, self.align.constant, b.and_(self.mask, self.splat(when)))
            return
        with b.if_then(when):
            _store_prefix(b, v, ptr, self.n32, self.align.constant)

    def splat(self, s):
        """s (a float or a flag) in every lane."""
        return _splat(self.b, s, self.vl)



def _masked_load_args(b, row, ptr, fill):
    """(function, arguments) of a masked load of row's lanes at ptr."""
    name = f"llvm.masked.load.v{row.vl}{'f32' if isinstance(row.ety, ir.FloatType) else 'f64'}.p0"
    fnty = ir.FunctionType(row.vty, [row.ptr.type, ir.IntType(32), row.mask.type, row.vty])
    fn = cgutils.get_or_insert_function(b.module, fnty, name)
    return fn, [ptr, row.align, row.mask, const(row.vty, fill)]


def _load_row(b, row, ptr, fill):
    """A row's lanes at ptr, the others fill (llvm.masked.load).  Where
    masked stores are slow, vmaskmovps loads are too (rows of 10 float32,
    C, Zen 3: 7.1 ns a row against 4.2 with plain loads): a plain load and
    a select when the whole vector lies in the array (the lanes past the
    row are never used: a load that races with another thread's store of
    them gives undefined lanes, which the select drops), else the masked
    load (the array's last rows)."""
    fn, args = _masked_load_args(b, row, ptr, fill)
    if MASKED_STORES:
        return b.call(fn, args)
    i64 = ir.IntType(64)
    room = b.icmp_unsigned("<=", b.ptrtoint(b.gep(ptr, [ir.Constant(i64, row.vl)]), i64),
                           b.ptrtoint(row.end, i64))
    with b.if_else(room) as (whole, part):
        with whole:
            v_whole = b.load(b.bitcast(ptr, row.vty.as_pointer()), align=row.align.constant)
            v_whole = b.select(row.mask, v_whole, const(row.vty, fill))
            at_whole = b.block
        with part:
            v_part = b.call(fn, args)
            at_part = b.block
    v = b.phi(row.vty)
    v.add_incoming(v_whole, at_whole)
    v.add_incoming(v_part, at_part)
    return v


def _masked_store(b, v, ptr, align, mask):
    """Store the lanes of v where mask is set (llvm.masked.store; where
    that is slow, a plain store when every lane is set)."""
    n = v.type.count
    ptr = b.bitcast(ptr, v.type.element.as_pointer())
    name = f"llvm.masked.store.v{n}{'f32' if isinstance(v.type.element, ir.FloatType) else 'f64'}.p0"
    fnty = ir.FunctionType(ir.VoidType(), [v.type, ptr.type, ir.IntType(32), mask.type])
    fn = cgutils.get_or_insert_function(b.module, fnty, name)
    if MASKED_STORES:
        b.call(fn, [v, ptr, ir.Constant(ir.IntType(32), align), mask])
        return
    iN = ir.IntType(n)
    every = b.icmp_unsigned("==", b.bitcast(mask, iN), ir.Constant(iN, (1 << n) - 1))
    with b.if_else(every) as (whole, some):
        with whole:
            b.store(v, b.bitcast(ptr, v.type.as_pointer()), align=align)
        with some:
            b.call(fn, [v, ptr, ir.Constant(ir.IntType(32), align), mask])


def _out_ptr(context, builder, arrty, arr, off):
    a = context.make_array(arrty)(context, builder, value=arr)
    return builder.gep(a.data, [off])


def _reduce_fadd(b, v, acc_ty=None):
    """Sum of the lanes of v, optionally in a wider type, in a fixed
    pairwise order (halves added lane by lane): the same bits however the
    surrounding code is compiled."""
    if acc_ty is not None and acc_ty != v.type.element:
        v = b.fpext(v, ir.VectorType(acc_ty, v.type.count))
    i32 = ir.IntType(32)
    c = v.type.count
    while c > 1:
        h = c // 2
        lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), [ir.Constant(i32, i) for i in range(h)]))
        hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), [ir.Constant(i32, i + h) for i in range(h)]))
        v = b.fadd(lo, hi, flags=_EFLAGS)
        c = h
    return b.extract_element(v, ir.Constant(i32, 0))


def _reduce_smax(b, k):
    ety = k.type.element
    return llvm_call(b, "vector.reduce.smax", ety, k, suffix=f"v{k.type.count}i{ety.width}")


def _check(arr, vl, *more):
    return _flat(arr) and vl is not None and all(m is None or m == arr.dtype for m in more)


def _widths(vl, dtype, narrow=True):
    """Vector widths for rows of up to vl entries: narrower ones too unless
    not narrow (4 and 8 lanes in float64, 8 in float32, where 4 gained
    5-15% more, not worth its compile time)."""
    if not narrow:
        return [vl]
    return [w for w in ((4, 8) if dtype == types.float64 else (8,)) if w < vl] + [vl]


def _by_width(b, n, widths, emit):
    """emit(w) for the narrowest w of widths with n <= w, chosen at run
    time: a row of 8 float64 in 16 lanes does twice the work (two zmm), and
    short rows pay for every lane (softmax over rows of 4 and 8 against 16
    lanes: float64 0.4x and 0.55x the time, float32 0.7x and 0.65x).  emit
    returns a list of values, merged here (phi) into the result.  Each width
    is more code for LLVM to compile: the last few rows of a multi-row
    kernel take only the widest."""
    vl = widths[-1]
    done = b.append_basic_block("width.done")
    results = []
    for w in widths:
        if w != vl:
            this, other = b.append_basic_block(f"width{w}"), b.append_basic_block(f"width{w}.no")
            b.cbranch(b.icmp_signed("<=", n, ir.Constant(n.type, w)), this, other)
            b.position_at_end(this)
        results.append((emit(w), b.block))
        b.branch(done)
        if w != vl:
            b.position_at_end(other)
    b.position_at_end(done)
    return _merge(b, results)


def _merge(b, results):
    """At the join of the branches: one phi per value of the (values,
    block) pairs the branches gave."""
    merged = []
    for k, v in enumerate(results[0][0]):
        phi = b.phi(v.type)
        for vals, block in results:
            phi.add_incoming(vals[k], block)
        merged.append(phi)
    return merged


# ---------------------------------------------------------------------------
# reductions


@intrinsic
def vrow_max(typingctx, x, off, n, VL):
    """Max of the row (NaN-aware through keys: +NaN wins, -NaN loses)."""
    vl = _vl(VL)
    if not _check(x, vl):
        return None

    def codegen(context, builder, sig, args):
        row = _Row(context, builder, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        k = _reduce_smax(builder, emit_fkey(builder, v))
        return emit_from_fkey(builder, k, row.ety)

    return x.dtype(x, off, n, VL), codegen


@intrinsic
def vrow_sumexp(typingctx, x, off, n, m, out, VL):
    """sum(exp(x - m)) over the row, storing exp(x - m) into ``out``."""
    vl = _vl(VL)
    if not (_check(x, vl, m) and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        row = _Row(context, builder, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        e = emit_exp_neg(builder, builder.fsub(v, row.splat(args[3]), flags=_EFLAGS))
        row.store(e, _out_ptr(context, builder, sig.args[4], args[4], args[1]))
        return _reduce_fadd(builder, e)

    return x.dtype(x, off, n, m, out, VL), codegen


@intrinsic
def vrow_rest(typingctx, x, off, n, m, VL):
    """(sum over the row of exp(x - m) except the maxima's own terms,
    count of maxima), accumulated in float64: the rest sum of a row is
    sum + (count - 1) over all its pieces.  Kept apart so that pieces
    without a maximum add their terms to the sum, not (terms - 1) + 1,
    which lost terms below 2^-53 (logsumexp of [0, -80, ...] over rows
    of 17-64 took only the first 16 lanes' terms).  The sum is NaN if the
    row has a NaN."""
    vl = _vl(VL)
    if not _check(x, vl, m):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        d = b.fsub(v, row.splat(args[3]), flags=_EFLAGS)
        e = emit_exp_neg(b, d)
        zero = const(row.vty, 0.0)
        is_max = b.and_(b.fcmp_ordered("==", d, zero), row.mask)
        e = b.select(is_max, zero, e)
        dbl = ir.DoubleType()
        s = _reduce_fadd(b, e, dbl)
        cnt = b.sitofp(
            llvm_call(b, "ctpop", ir.IntType(vl), b.bitcast(is_max, ir.IntType(vl)), suffix=f"i{vl}"),
            dbl,
        )
        return context.make_tuple(b, sig.return_type, [s, cnt])

    return types.UniTuple(types.float64, 2)(x, off, n, m, VL), codegen


@intrinsic
def vrow_sum(typingctx, x, off, n, VL):
    """sum of the row, accumulated in float64."""
    vl = _vl(VL)
    if not _check(x, vl):
        return None

    def codegen(context, builder, sig, args):
        row = _Row(context, builder, sig.args[0], args[0], args[1], args[2], vl)
        return _reduce_fadd(builder, row.load(0.0), ir.DoubleType())

    return types.float64(x, off, n, VL), codegen


@intrinsic
def vrow_dot(typingctx, x, y, off, n, VL):
    """sum of x*y over the row, products and sum in float64."""
    vl = _vl(VL)
    if not (_check(x, vl) and _flat(y) and y.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rx = _Row(context, b, sig.args[0], args[0], args[2], args[3], vl)
        ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], vl)
        dv = ir.VectorType(ir.DoubleType(), vl)
        vx, vy = rx.load(0.0), ry.load(0.0)
        if vx.type != dv:
            vx, vy = b.fpext(vx, dv), b.fpext(vy, dv)
        return _reduce_fadd(b, b.fmul(vx, vy, flags=_EFLAGS))

    return types.float64(x, y, off, n, VL), codegen


# ---------------------------------------------------------------------------
# element-wise row updates: each formula once (``_op_*``: input vectors and
# splatted scalars in, the output vector out), applied to a short row as one
# masked vector (``vrow_*``) or streamed over a long one (``vmap_*``).  The
# arguments are always: input arrays, off, n, scalars, out (, VL).


def _op_scale(b, v, s):  # x * c
    return b.fmul(v[0], s[0], flags=_EFLAGS)


def _op_sub2(b, v, s):  # (x - a) - c
    return b.fsub(b.fsub(v[0], s[0], flags=_EFLAGS), s[1], flags=_EFLAGS)


def _op_softmax_bwd(b, v, s):  # y * (g - dot)
    return b.fmul(v[1], b.fsub(v[0], s[0], flags=_EFLAGS), flags=_EFLAGS)


def _op_log_softmax_bwd(b, v, s):  # g - exp(y) * total
    return b.fsub(v[0], b.fmul(emit_exp(b, v[1]), s[0], flags=_EFLAGS), flags=_EFLAGS)


def _op_lse_bwd(b, v, s):  # g * exp(x - lse)
    return b.fmul(s[0], emit_exp(b, b.fsub(v[0], s[1], flags=_EFLAGS)), flags=_EFLAGS)


def _op_ce_grad(b, v, s):  # sc * (exp(x - m) * inv - q)
    e = emit_exp_neg(b, b.fsub(v[0], s[0], flags=_EFLAGS))
    return b.fmul(s[2], b.fsub(b.fmul(e, s[1], flags=_EFLAGS), s[3], flags=_EFLAGS), flags=_EFLAGS)


def _op_ce_prob_grad(b, v, s):  # sc * ((exp(x - m) * inv) * qs - (qa * p + qb))
    e = b.fmul(emit_exp_neg(b, b.fsub(v[0], s[0], flags=_EFLAGS)), s[1], flags=_EFLAGS)
    q = b.fadd(b.fmul(s[4], v[1], flags=_EFLAGS), s[5], flags=_EFLAGS)
    return b.fmul(s[2], b.fsub(b.fmul(e, s[3], flags=_EFLAGS), q, flags=_EFLAGS), flags=_EFLAGS)


def _row_update(op, nin, args):
    """Typing and codegen of ``vrow_*``: out = op(...) over one short row
    (masked store into ``out`` at the same offset)."""
    *front, out, VL = args
    arrs, scalars = front[:nin], front[nin + 2:]
    vl = _vl(VL)
    if not (_check(arrs[0], vl, *scalars)
            and all(_flat(t) and t.dtype == arrs[0].dtype for t in (*arrs[1:], out))):
        return None

    def codegen(context, builder, sig, a):
        off, n = a[nin], a[nin + 1]
        rows = [_Row(context, builder, sig.args[i], a[i], off, n, vl) for i in range(nin)]
        v = op(builder, [r.load(0.0) for r in rows], [rows[0].splat(c) for c in a[nin + 2:-2]])
        rows[0].store(v, _out_ptr(context, builder, sig.args[-2], a[-2], off))
        return context.get_dummy_value()

    return types.none(*args), codegen


@intrinsic
def vrow_scale(typingctx, x, off, n, c, out, VL):
    """out = x * c over the row."""
    return _row_update(_op_scale, 1, (x, off, n, c, out, VL))


@intrinsic
def vrow_sub2(typingctx, x, off, n, a, c, out, VL):
    """out = (x - a) - c over the row."""
    return _row_update(_op_sub2, 1, (x, off, n, a, c, out, VL))


@intrinsic
def vrow_softmax_bwd(typingctx, g, y, off, n, dot, out, VL):
    """out = y * (g - dot) over the row."""
    return _row_update(_op_softmax_bwd, 2, (g, y, off, n, dot, out, VL))


@intrinsic
def vrow_log_softmax_bwd(typingctx, g, y, off, n, total, out, VL):
    """out = g - exp(y) * total over the row."""
    return _row_update(_op_log_softmax_bwd, 2, (g, y, off, n, total, out, VL))


@intrinsic
def vrow_lse_bwd(typingctx, x, off, n, g, lse, out, VL):
    """out = g * exp(x - lse) over the row."""
    return _row_update(_op_lse_bwd, 1, (x, off, n, g, lse, out, VL))


@intrinsic
def vrow_ce_grad(typingctx, x, off, n, m, inv, sc, q, out, VL):
    return _row_update(_op_ce_grad, 1, (x, off, n, m, inv, sc, q, out, VL))


@intrinsic
def vrow_ce_prob_grad(typingctx, x, p, off, n, m, inv, sc, qs, qa, qb, out, VL):
    return _row_update(_op_ce_prob_grad, 2, (x, p, off, n, m, inv, sc, qs, qa, qb, out, VL))


@intrinsic
def stack_array(typingctx, N, like):
    """A 1-D array of ``N`` (an integer literal) elements of the type of the
    float ``like``, on the stack of the calling function (no allocation;
    valid until the function returns)."""
    count = _vl(N)
    if count is None or not isinstance(like, types.Float):
        return None
    arrty = types.Array(like, 1, "C")

    def codegen(context, builder, sig, args):
        ety = context.get_value_type(like)
        buf = cgutils.alloca_once(builder, ety, size=count)
        buf.align = 64  # whole cache lines: the tiles' 64-byte row vectors never split one
        ary = context.make_array(arrty)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(ety))
        populate_array(
            ary,
            data=buf,
            shape=[context.get_constant(types.intp, count)],
            strides=[itemsize],
            itemsize=itemsize,
            meminfo=None,
        )
        return ary._getvalue()

    return arrty(N, like), codegen


# ---------------------------------------------------------------------------
# fused whole-row operations for n <= VL: one load, one store per row


@intrinsic
def vrow_softmax_bwd1(typingctx, g, y, off, n, out, VL):
    """out = y * (g - sum(g * y)) over a row of n <= VL elements.  The
    sum is in the data type, pairwise over the lanes, as the Cython
    kernels' short rows (at most 16 products, 4 levels: error <= 4 eps
    sum |g y|); summed in float64 it took 1.6-1.8x as long (float32 rows of
    10-16, AMD Zen 3: the conversions)."""
    vl = _vl(VL)
    if not (_check(g, vl) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder

        def emit(w):
            rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], w)
            ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], w)
            vg, vy = rg.load(0.0), ry.load(0.0)
            dot = _reduce_fadd(b, b.fmul(vg, vy, flags=_EFLAGS))
            v = b.fmul(vy, b.fsub(vg, rg.splat(dot), flags=_EFLAGS), flags=_EFLAGS)
            rg.store(v, _out_ptr(context, b, sig.args[4], args[4], args[2]))
            return []

        _by_width(b, args[3], _widths(vl, g.dtype), emit)
        return context.get_dummy_value()

    return types.none(g, y, off, n, out, VL), codegen


@intrinsic
def vrow_log_softmax_bwd1(typingctx, g, y, off, n, out, VL):
    """out = g - exp(y) * sum(g) over a row of n <= VL elements (the sum in
    the data type, pairwise, as vrow_softmax_bwd1)."""
    vl = _vl(VL)
    if not (_check(g, vl) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder

        def emit(w):
            rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], w)
            ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], w)
            vg, vy = rg.load(0.0), ry.load(0.0)
            tot = _reduce_fadd(b, vg)
            v = b.fsub(vg, b.fmul(emit_exp(b, vy), rg.splat(tot), flags=_EFLAGS), flags=_EFLAGS)
            rg.store(v, _out_ptr(context, b, sig.args[4], args[4], args[2]))
            return []

        _by_width(b, args[3], _widths(vl, g.dtype), emit)
        return context.get_dummy_value()

    return types.none(g, y, off, n, out, VL), codegen


# ---------------------------------------------------------------------------
# streaming loops for long rows: the same operations over n elements of any
# length, VL lanes at a time (full vectors, then one masked tail), with
# vector accumulators summed in a fixed pairwise order at the end.  Written
# in IR rather than as Numba loops: no run-time overlap tests (out may be
# the input, each vector is loaded before it is stored), no scalar epilogue,
# and the same summation order wherever the code is inlined.


class _Stream:
    """Vector access to n elements at ``off`` of flat arrays of one dtype."""

    @classmethod
    def of(cls, context, builder, sig, args, arrs, at):
        """The stream over the intrinsic's array arguments at positions
        ``arrs``, from its (off, n) arguments at positions at, at + 1."""
        return cls(context, builder, [sig.args[k] for k in arrs], [args[k] for k in arrs],
                   args[at], args[at + 1], VLS)

    def __init__(self, context, builder, arrtys, arrs, off, n, vl):
        self.b = builder
        self.vl = vl
        self.ety = context.get_value_type(arrtys[0].dtype)
        self.vty = ir.VectorType(self.ety, vl)
        self.ptrs = [builder.gep(context.make_array(t)(context, builder, value=a).data, [off])
                     for t, a in zip(arrtys, arrs)]
        i64 = ir.IntType(64)
        self.nvec = builder.udiv(n, ir.Constant(i64, vl))
        self.tail_off = builder.mul(self.nvec, ir.Constant(i64, vl))
        i32 = ir.IntType(32)
        self.rem = builder.trunc(builder.sub(n, self.tail_off), i32)
        self.mask = _prefix_mask(builder, self.rem, vl)
        self.align = ir.Constant(i32, 4 if isinstance(self.ety, ir.FloatType) else 8)
        self.suffix = f"v{vl}{'f32' if isinstance(self.ety, ir.FloatType) else 'f64'}.p0"

    def splat(self, s):
        return _splat(self.b, s, self.vl)

    def _vptr(self, k, elem):
        return self.b.gep(self.ptrs[k], [elem])

    def load(self, k, elem):
        """Full vector of array k at element offset elem (unaligned)."""
        p = self.b.bitcast(self._vptr(k, elem), self.vty.as_pointer())
        return self.b.load(p, align=self.align.constant)

    def store(self, k, elem, v):
        p = self.b.bitcast(self._vptr(k, elem), self.vty.as_pointer())
        self.b.store(v, p, align=self.align.constant)

    def load_tail(self, k, fill):
        b = self.b
        fnty = ir.FunctionType(self.vty, [self.ptrs[k].type, ir.IntType(32), self.mask.type, self.vty])
        fn = cgutils.get_or_insert_function(b.module, fnty, "llvm.masked.load." + self.suffix)
        return b.call(fn, [self._vptr(k, self.tail_off), self.align, self.mask, const(self.vty, fill)])

    def store_tail(self, k, v):
        _store_prefix(self.b, v, self._vptr(k, self.tail_off), self.rem, self.align.constant)

    def run(self, body, fills, nacc=0):
        """body(values, accs, store) -> new accs, over full vectors then the
        tail; ``values`` are the loaded vectors of the input arrays (the
        ``len(fills)`` first arrays; tail lanes hold ``fills``), ``store(k, v)``
        writes v to array k.  Returns the accumulators (vectors)."""
        b = self.b
        zero = const(self.vty, 0.0)
        slots = [cgutils.alloca_once_value(b, zero) for _ in range(nacc)]
        with cgutils.for_range(b, self.nvec) as loop:
            elem = b.mul(loop.index, ir.Constant(ir.IntType(64), self.vl))
            vals = [self.load(k, elem) for k in range(len(fills))]
            accs = [b.load(s) for s in slots]
            new = body(vals, accs, lambda k, v: self.store(k, elem, v))
            for s, v in zip(slots, new or ()):
                b.store(v, s)
        vals = [self.load_tail(k, f) for k, f in enumerate(fills)]
        accs = [b.load(s) for s in slots]
        new = body(vals, accs, lambda k, v: self.store_tail(k, v), tail=True)
        return list(new or ())


def _sig(arrays, scalars):
    """Typing check: flat float arrays of one dtype, scalars of it."""
    if not all(_flat(a) for a in arrays):
        return None
    dt = arrays[0].dtype
    if any(a.dtype != dt for a in arrays) or any(s != dt for s in scalars):
        return None
    return dt


@intrinsic
def vsum_exp(typingctx, x, off, n, m, out):
    """sum over x[off:off+n] of exp(x - m), in pairwise lane order, storing
    exp(x - m) into out[off:off+n] (out may be x).  For x <= m (exp_neg)."""
    dt = _sig([x, out], [m])
    if dt is None:
        return None

    def codegen(context, builder, sig, args):
        b = builder
        st = _Stream.of(context, b, sig, args, [0, 4], 1)
        mv = st.splat(args[3])

        def body(vals, accs, store, tail=False):
            e = emit_exp_neg(b, b.fsub(vals[0], mv, flags=_EFLAGS))
            store(1, e)
            return [b.fadd(accs[0], e, flags=_EFLAGS)]

        (acc,) = st.run(body, [float("-inf")], 1)
        return _reduce_fadd(b, acc)

    return dt(x, off, n, m, out), codegen


@intrinsic
def vsum_rest(typingctx, x, off, n, m, out):
    """(sum of exp(x - m) over the terms other than the maxima, number of
    maxima), over x[off:off+n], both in x's dtype (pairwise lane order).
    Unless out is None, x - m is also stored into out[off:off+n] (out may
    be x): log_softmax's first half, computed while the exps keep the core
    busy instead of in a pass of its own."""
    store_out = _given(out)
    dt = _sig([x, out] if store_out else [x], [m])
    if dt is None:
        return None

    def codegen(context, builder, sig, args):
        b = builder
        arrs = [0, 4] if store_out else [0]
        st = _Stream.of(context, b, sig, args, arrs, 1)
        mv = st.splat(args[3])
        zero = const(st.vty, 0.0)

        def body(vals, accs, store, tail=False):
            d = b.fsub(vals[0], mv, flags=_EFLAGS)
            if store_out:
                store(1, d)
            w = b.uitofp(b.fcmp_ordered("==", d, zero), st.vty)
            e = b.fsub(emit_exp_neg(b, d), w, flags=_EFLAGS)
            return [b.fadd(accs[0], e, flags=_EFLAGS), b.fadd(accs[1], w, flags=_EFLAGS)]

        acc, cnt = st.run(body, [float("-inf")], 2)
        return context.make_tuple(b, sig.return_type, (_reduce_fadd(b, acc), _reduce_fadd(b, cnt)))

    return types.UniTuple(dt, 2)(x, off, n, m, out), codegen


@intrinsic
def vsum_dot(typingctx, g, y, off, n):
    """sum of g * y over [off, off + n) (pairwise lane order)."""
    dt = _sig([g, y], [])
    if dt is None:
        return None

    def codegen(context, builder, sig, args):
        b = builder
        st = _Stream.of(context, b, sig, args, [0, 1], 2)

        def body(vals, accs, store, tail=False):
            return [llvm_call(b, "fmuladd", st.vty, vals[0], vals[1], accs[0])]

        (acc,) = st.run(body, [0.0, 0.0], 1)
        return _reduce_fadd(b, acc)

    return dt(g, y, off, n), codegen


@intrinsic
def vsum_plain(typingctx, g, off, n):
    """sum of g over [off, off + n) (pairwise lane order)."""
    dt = _sig([g], [])
    if dt is None:
        return None

    def codegen(context, builder, sig, args):
        b = builder
        st = _Stream.of(context, b, sig, args, [0], 1)

        def body(vals, accs, store, tail=False):
            return [b.fadd(accs[0], vals[0], flags=_EFLAGS)]

        (acc,) = st.run(body, [0.0], 1)
        return _reduce_fadd(b, acc)

    return dt(g, off, n), codegen


@intrinsic
def vsum_qlp(typingctx, x, p, off, n, m, L, qa, qb):
    """sum over [off, off + n) of q * ((x - m) - L), the cross-entropy terms
    (pairwise lane order), with q = qa if p is None, else qa * p + qb; a
    term with q == 0 counts 0 whatever its log-probability."""
    has_p = _given(p)
    dt = _sig([x, p] if has_p else [x], [m, L, qa, qb])
    if dt is None:
        return None

    def codegen(context, builder, sig, args):
        b = builder
        arrs = [0, 1] if has_p else [0]
        st = _Stream.of(context, b, sig, args, arrs, 2)
        mv, lv, qav, qbv = (st.splat(a) for a in args[4:8])
        zero = const(st.vty, 0.0)

        def body(vals, accs, store, tail=False):
            lp = b.fsub(b.fsub(vals[0], mv, flags=_EFLAGS), lv, flags=_EFLAGS)
            q = b.fadd(b.fmul(qav, vals[1], flags=_EFLAGS), qbv, flags=_EFLAGS) if has_p else qav
            keep = b.fcmp_unordered("!=", q, zero)
            if tail:
                keep = b.and_(keep, st.mask)
            return [b.fadd(accs[0], b.select(keep, b.fmul(q, lp, flags=_EFLAGS), zero), flags=_EFLAGS)]

        (acc,) = st.run(body, [0.0] * len(arrs), 1)
        return _reduce_fadd(b, acc)

    return dt(x, p, off, n, m, L, qa, qb), codegen


def _stream_update(op, nin, args):
    """Typing and codegen of ``vmap_*``: out = op(...) over [off, off + n)
    (out may be any of the inputs: each vector is loaded before it is
    stored)."""
    *front, out = args
    arrs, scalars = front[:nin], front[nin + 2:]
    if _sig([*arrs, out], scalars) is None:
        return None

    def codegen(context, builder, sig, a):
        st = _Stream.of(context, builder, sig, a, [*range(nin), len(a) - 1], nin)
        sv = [st.splat(c) for c in a[nin + 2:-1]]

        def body(vals, accs, store, tail=False):
            store(nin, op(builder, vals, sv))

        st.run(body, [0.0] * nin)
        return context.get_dummy_value()

    return types.none(*args), codegen


@intrinsic
def vmap_scale(typingctx, x, off, n, c, out):
    """out = x * c over [off, off + n) (out may be x)."""
    return _stream_update(_op_scale, 1, (x, off, n, c, out))


@intrinsic
def vmap_sub2(typingctx, x, off, n, a, c, out):
    """out = (x - a) - c over [off, off + n) (out may be x)."""
    return _stream_update(_op_sub2, 1, (x, off, n, a, c, out))


@intrinsic
def vmap_softmax_bwd(typingctx, g, y, off, n, d, out):
    """out = y * (g - d) over [off, off + n) (out may be g or y)."""
    return _stream_update(_op_softmax_bwd, 2, (g, y, off, n, d, out))


@intrinsic
def vmap_log_softmax_bwd(typingctx, g, y, off, n, t, out):
    """out = g - exp(y) * t over [off, off + n) (out may be g or y)."""
    return _stream_update(_op_log_softmax_bwd, 2, (g, y, off, n, t, out))


@intrinsic
def vmap_lse_bwd(typingctx, x, off, n, g, lse, out):
    """out = g * exp(x - lse) over [off, off + n) (out may be x)."""
    return _stream_update(_op_lse_bwd, 1, (x, off, n, g, lse, out))


@intrinsic
def vmap_ce_grad(typingctx, x, off, n, m, inv, sc, q, out):
    """out = sc * (exp(x - m) * inv - q) over [off, off + n) (out may be x)."""
    return _stream_update(_op_ce_grad, 1, (x, off, n, m, inv, sc, q, out))


@intrinsic
def vmap_ce_prob_grad(typingctx, x, p, off, n, m, inv, sc, qs, qa, qb, out):
    """out = sc * ((exp(x - m) * inv) * qs - (qa * p + qb)) over
    [off, off + n) (out may be x or p)."""
    return _stream_update(_op_ce_prob_grad, 2, (x, p, off, n, m, inv, sc, qs, qa, qb, out))


#: lanes of the streaming loops
VLS = 16


# ---------------------------------------------------------------------------
# several short rows at once: a row's work is a long chain of dependent
# steps (horizontal max, exp, horizontal sum, division); emitting R rows
# step by step gives the out-of-order core R independent chains to overlap
# (one row at a time is latency-bound at ~25 cycles a row).


def _reduce_multi(b, vs, op, flags=_EFLAGS):
    """Horizontal reduction of each vector of vs (pairwise halves), the
    steps of all vectors interleaved; op is 'fadd' or 'smax'."""
    i32 = ir.IntType(32)
    c = vs[0].type.count
    while c > 1:
        h = c // 2
        lo_idx = ir.Constant(ir.VectorType(i32, h), [ir.Constant(i32, i) for i in range(h)])
        hi_idx = ir.Constant(ir.VectorType(i32, h), [ir.Constant(i32, i + h) for i in range(h)])
        los = [b.shuffle_vector(v, v, lo_idx) for v in vs]
        his = [b.shuffle_vector(v, v, hi_idx) for v in vs]
        if op == "fadd":
            vs = [b.fadd(lo, hi, flags=flags) for lo, hi in zip(los, his)]
        elif op == "fmax":
            # (lo > hi ? lo : hi): one vmaxps a step.  A NaN may or may not
            # survive, which is enough: if it is dropped, x - max is NaN in
            # its lane and the row's sum is NaN.
            vs = [b.select(b.fcmp_ordered(">", lo, hi), lo, hi) for lo, hi in zip(los, his)]
        else:
            ety = vs[0].type.element
            vs = [llvm_call(b, "smax", lo.type, lo, hi, suffix=f"v{h}i{ety.width}") for lo, hi in zip(los, his)]
        c = h
    return [b.extract_element(v, ir.Constant(i32, 0)) for v in vs]


class _Rows(_Row):
    """R rows of n <= VL elements at off, off + n, ..., of a flat array."""

    def __init__(self, context, builder, arrty, arr, off, n, vl, R):
        super().__init__(context, builder, arrty, arr, off, n, vl)
        self.n = n
        self.ptrs = [builder.gep(self.ptr, [builder.mul(n, ir.Constant(n.type, k))]) for k in range(R)]

    def loads(self, fill):
        return [_load_row(self.b, self, p, fill) for p in self.ptrs]

    def stores(self, vs, out_base):
        for k, v in enumerate(vs):
            self.store(v, self.b.gep(out_base, [self.b.mul(self.n, ir.Constant(self.n.type, k))]))


def _rows_literal(R):
    return R.literal_value if isinstance(R, types.IntegerLiteral) else None


def _max_rest(b, rows, vs):
    """(maxima, x - max vectors, rests) of the rows' vectors vs: rest =
    sum + (count - 1) as from ``vrow_rest``, in the data type (at most
    VL - 1 terms below 1, summed pairwise; meaningless when the max is not
    finite)."""
    ety, vl = rows.ety, rows.vl
    ms = _reduce_multi(b, vs, "fmax")
    ds = [b.fsub(v, rows.splat(m), flags=_EFLAGS) for v, m in zip(vs, ms)]
    zero = const(rows.vty, 0.0)
    tops = [b.and_(b.fcmp_ordered("==", d, zero), rows.mask) for d in ds]
    es = [b.select(t, zero, emit_exp_neg(b, d)) for t, d in zip(tops, ds)]
    ss = _reduce_multi(b, es, "fadd")
    cnts = [b.sitofp(llvm_call(b, "ctpop", ir.IntType(vl), b.bitcast(t, ir.IntType(vl)), suffix=f"i{vl}"), ety)
            for t in tops]
    rests = [b.fadd(s, b.fsub(c, ir.Constant(ety, 1.0))) for s, c in zip(ss, cnts)]
    return ms, ds, rests


def _gather(b, scalars):
    """The scalars as the lanes of one vector."""
    i32 = ir.IntType(32)
    v = ir.Constant(ir.VectorType(scalars[0].type, len(scalars)), ir.Undefined)
    for k, s in enumerate(scalars):
        v = b.insert_element(v, s, ir.Constant(i32, k))
    return v


def _lse_rows(b, ms, rests):
    """(log1p(rest) of the rows as one vector, lanes of the rows whose max
    is finite): one vector log1p for R rows instead of R scalar ones."""
    mv, rv = _gather(b, ms), _gather(b, rests)
    ty = mv.type
    fin = b.fcmp_ordered("<", llvm_call(b, "fabs", ty, mv), const(ty, float("inf")))
    return emit_log1p(b, b.select(fin, rv, const(ty, 0.0))), fin


def _add_wide(b, m, L):
    """m + L (vectors) added in float64, rounded once to their type (the
    log-sum-exp of a row from its max and log1p(rest))."""
    if m.type.element == ir.DoubleType():
        return b.fadd(m, L)
    dv = ir.VectorType(ir.DoubleType(), m.type.count)
    return b.fptrunc(b.fadd(b.fpext(m, dv), b.fpext(L, dv)), m.type)


def _nonfinite_bits(b, fin):
    """Bit k set when row k's max is not finite (rows left to the caller)."""
    return b.zext(b.bitcast(b.not_(fin), ir.IntType(fin.type.count)), ir.IntType(64))


def _rows_intrinsic(x, out, VL, R, body):
    """Typing check and code of a vrows_* intrinsic (x, off, n, out, ...,
    VL, R) writing to out: body(rows, context, sig, args) -> [] or [an
    int64], for each width (_by_width)."""
    vl, nr = _vl(VL), _rows_literal(R)
    if not (_check(x, vl) and nr and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        def emit(w):
            return body(_Rows(context, builder, sig.args[0], args[0], args[1], args[2], w, nr), context, sig, args)

        res = _by_width(builder, args[2], _widths(vl, x.dtype, nr > 1), emit)
        return res[0] if res else context.get_dummy_value()

    return codegen


@intrinsic
def vrows_softmax(typingctx, x, off, n, out, VL, R):
    """out = softmax(x) over R consecutive rows of n <= VL elements at off.
    IEEE arithmetic gives the contract's NaN rows: a max of +inf or NaN
    makes x - m NaN somewhere, an all -inf row gives -inf - -inf = NaN, and
    a NaN makes the sum NaN."""
    def body(rows, context, sig, args):
        b = rows.b
        vs = rows.loads(float("-inf"))
        ms = _reduce_multi(b, vs, "fmax")
        es = [emit_exp_neg(b, b.fsub(v, rows.splat(m), flags=_EFLAGS)) for v, m in zip(vs, ms)]
        ss = _reduce_multi(b, es, "fadd")
        invs = [b.fdiv(ir.Constant(rows.ety, 1.0), s) for s in ss]
        outs = [b.fmul(e, rows.splat(i), flags=_EFLAGS) for e, i in zip(es, invs)]
        rows.stores(outs, _out_ptr(context, b, sig.args[3], args[3], args[1]))
        return []

    cg = _rows_intrinsic(x, out, VL, R, body)
    return cg and (types.none(x, off, n, out, VL, R), cg)


# Rows of 2, 4 or 8 entries (fewer than a vector's lanes) packed several to
# a 512-bit vector: plain loads and stores of whole vectors, each row's max
# and sum over its own lanes by a butterfly (log2 n shuffle steps leave the
# result in every lane of the row; the same order of additions, so the same
# bits, as the halves of _reduce_multi).  softmax over 1M entries against
# one row per (narrowest) vector: float32 rows of 2 0.13x the time, 4 0.31x,
# 8 0.67x; float64 rows of 2 0.29x, 4 0.64x.

#: bits of the packed vectors
PACK_BITS = 512


def _pack_lanes(dtype):
    return PACK_BITS // (32 if dtype == types.float32 else 64)


@intrinsic
def pack_lanes(typingctx, arr):
    """Lanes of a packed vector of arr's dtype (a constant)."""
    if not _flat(arr):
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(64), _pack_lanes(sig.args[0].dtype))

    return types.int64(arr), codegen


def _butterfly(b, v, g, op):
    """op over each group of g lanes of v, the result in every lane."""
    i32 = ir.IntType(32)
    p = v.type.count
    s = g // 2
    while s >= 1:
        w = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, p), [ir.Constant(i32, i ^ s) for i in range(p)]))
        v = b.fadd(v, w, flags=_EFLAGS) if op == "fadd" else b.select(b.fcmp_ordered(">", v, w), v, w)
        s //= 2
    return v


def _by_group(b, n, p, emit, gmax):
    """emit(g) -> int64 for the row length n = g of 2, 4, ... < p lanes and
    <= gmax (0 for other n), merged."""
    done = b.append_basic_block("group.done")
    results = []
    g = 2
    while g < p and g <= gmax:
        this, other = b.append_basic_block(f"group{g}"), b.append_basic_block(f"group{g}.no")
        b.cbranch(b.icmp_signed("==", n, ir.Constant(n.type, g)), this, other)
        b.position_at_end(this)
        results.append((emit(g), b.block))
        b.branch(done)
        b.position_at_end(other)
        g *= 2
    results.append((ir.Constant(ir.IntType(64), 0), b.block))
    b.branch(done)
    b.position_at_end(done)
    phi = b.phi(ir.IntType(64))
    for v, block in results:
        phi.add_incoming(v, block)
    return phi


class _Packed:
    """R whole vectors of pack lanes at element off (argument ``at``) of
    the first array argument (and of others: ``base``)."""

    def __init__(self, context, b, sig, args, nr, at=1):
        self.context, self.sig, self.args, self.at = context, sig, args, at
        self.b, self.nr = b, nr
        ety = context.get_value_type(sig.args[0].dtype)
        self.p = _pack_lanes(sig.args[0].dtype)
        self.vty = ir.VectorType(ety, self.p)
        self.align = 4 if isinstance(ety, ir.FloatType) else 8
        self.src = self.base(0)

    def base(self, i):
        """Pointer to element off of array argument i."""
        return _out_ptr(self.context, self.b, self.sig.args[i], self.args[i], self.args[self.at])

    def ptr(self, base, k):
        return self.b.bitcast(self.b.gep(base, [ir.Constant(ir.IntType(64), k * self.p)]), self.vty.as_pointer())

    def loads(self, base=None):
        base = self.src if base is None else base
        return [self.b.load(self.ptr(base, k), align=self.align) for k in range(self.nr)]

    def stores(self, vs, i):
        """vs to array argument i."""
        dst = self.base(i)
        for k, v in enumerate(vs):
            self.b.store(v, self.ptr(dst, k), align=self.align)

    def max_rest(self, g):
        """(max, x - max, rest, max finite) of each vector, per lane (see
        _max_rest: the same sums in the same order)."""
        b = self.b
        out = []
        for v in self.loads():
            m = _butterfly(b, v, g, "fmax")
            d = b.fsub(v, m, flags=_EFLAGS)
            zero = const(self.vty, 0.0)
            top = b.fcmp_ordered("==", d, zero)
            s = _butterfly(b, b.select(top, zero, emit_exp_neg(b, d)), g, "fadd")
            cnt = _butterfly(b, b.uitofp(top, self.vty), g, "fadd")
            rest = b.fadd(s, b.fsub(cnt, const(self.vty, 1.0)))
            fin = b.fcmp_ordered("<", llvm_call(b, "fabs", self.vty, m), const(self.vty, float("inf")))
            out.append((m, d, rest, self.from_lane0(fin, g)))
        return out

    def from_lane0(self, v, g):
        """Each row's lane 0 in all its lanes.  The butterfly max of a row
        with a NaN may differ between its lanes (a compare with NaN picks
        either side); the row's sum is then NaN, every lane's result NaN,
        and lane 0 alone decides whether the row is written here or left
        to the caller."""
        i32 = ir.IntType(32)
        return self.b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, self.p),
                                                       [ir.Constant(i32, i - i % g) for i in range(self.p)]))

    def row_lanes(self, v, g):
        """Lane 0 of each row of g lanes of v (one per row)."""
        i32 = ir.IntType(32)
        return self.b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, self.p // g),
                                                       [ir.Constant(i32, i) for i in range(0, self.p, g)]))


def _scale_rows(b, vs, sums, g):
    """vs[k] / sums[k] (each row's sum in every lane of the row) with one
    division for every min(g, len(vs)) vectors: lane i of the divisor takes
    the sum of vector (i % g) % G of its group -- each row of each vector in
    one lane --, and a shuffle spreads each row's reciprocal back over its
    lanes.  The same 1/sum as a division per vector, so the same bits
    (softmax over rows of 2-8, 1M entries: 0.93-0.99x the time of a division
    per vector; in the Cython kernels, where the divisions were not
    overlapped as well, 0.65-0.8x)."""
    i32 = ir.IntType(32)
    p = vs[0].type.count
    G = min(g, len(vs))
    out = []
    for k0 in range(0, len(vs), G):
        grp = range(k0, min(k0 + G, len(vs)))
        d = sums[k0]
        for j in grp[1:]:
            pick = ir.Constant(ir.VectorType(ir.IntType(1), p), [(i % g) % G == j - k0 for i in range(p)])
            d = b.select(pick, sums[j], d)
        r = b.fdiv(const(vs[0].type, 1.0), d)
        for j in grp:
            idx = [ir.Constant(i32, i - i % g + (j - k0)) for i in range(p)]
            out.append(b.fmul(vs[j], b.shuffle_vector(r, r, ir.Constant(ir.VectorType(i32, p), idx)),
                              flags=_EFLAGS))
    return out


#: vectors a vpack_* call does (the caller steps PACK_R * lanes / n rows)
PACK_R = 4

#: log_softmax and logsumexp pack rows of 2 and 4 only: with two rows to a
#: vector (float32 rows of 8) their fused rows (vrows_*) are faster (1M
#: entries: packed 1.1-1.25x their time), with four or more the packed ones
#: (float32 rows of 2 and 4: 0.3-0.6x the tiles' time)
PACK_LSE = 4


def _pack_intrinsic(x, out, body, at=1, *more, gmax=PACK_BITS):
    """Typing and code of a vpack_* intrinsic (x, [y,] off, n, out; off is
    argument ``at``) over PACK_R vectors -> int64 bad-row bits: body(pk, g,
    context, sig, args) for each packable row length g <= gmax, 0 for other
    n."""
    nr = PACK_R
    if not (_check(x, 1) and all(_flat(a) and a.dtype == x.dtype for a in (out,) + more)):
        return None

    def codegen(context, builder, sig, args):
        pk = _Packed(context, builder, sig, args, nr, at)
        return _by_group(builder, args[at + 1], pk.p, lambda g: body(pk, g, context, sig, args), gmax)

    return codegen


@intrinsic
def vpack_softmax(typingctx, x, off, n, out):
    """out = softmax(x) over the R * pack_lanes / n rows of n entries at off,
    n one of 2, 4, ... below pack_lanes (other n: nothing done); NaN rows as
    vrows_softmax.  Returns 0 (every row done)."""
    def body(pk, g, context, sig, args):
        b = pk.b
        es = [emit_exp_neg(b, b.fsub(v, _butterfly(b, v, g, "fmax"), flags=_EFLAGS)) for v in pk.loads()]
        pk.stores(_scale_rows(b, es, [_butterfly(b, e, g, "fadd") for e in es], g), 3)
        return ir.Constant(ir.IntType(64), 0)

    cg = _pack_intrinsic(x, out, body)
    return cg and (types.int64(x, off, n, out), cg)


@intrinsic
def vpack_softmax_bwd(typingctx, g, y, off, n, out):
    """out = y * (g - sum(g * y)) over packed rows (as vpack_softmax; the
    sums in the data type, as vrow_softmax_bwd1).  Returns 0."""
    def body(pk, gl, context, sig, args):
        b = pk.b
        outs = []
        for vg, vy in zip(pk.loads(), pk.loads(pk.base(1))):
            dot = _butterfly(b, b.fmul(vg, vy, flags=_EFLAGS), gl, "fadd")
            outs.append(b.fmul(vy, b.fsub(vg, dot, flags=_EFLAGS), flags=_EFLAGS))
        pk.stores(outs, 4)
        return ir.Constant(ir.IntType(64), 0)

    cg = _pack_intrinsic(g, out, body, 2, y)
    return cg and (types.int64(g, y, off, n, out), cg)


@intrinsic
def vpack_log_softmax_bwd(typingctx, g, y, off, n, out):
    """out = g - exp(y) * sum(g) over packed rows (as vpack_softmax; the
    sums in the data type, as vrow_log_softmax_bwd1).  Returns 0."""
    def body(pk, gl, context, sig, args):
        b = pk.b
        outs = [b.fsub(vg, b.fmul(emit_exp(b, vy), _butterfly(b, vg, gl, "fadd"), flags=_EFLAGS), flags=_EFLAGS)
                for vg, vy in zip(pk.loads(), pk.loads(pk.base(1)))]
        pk.stores(outs, 4)
        return ir.Constant(ir.IntType(64), 0)

    cg = _pack_intrinsic(g, out, body, 2, y)
    return cg and (types.int64(g, y, off, n, out), cg)


def _concat(b, vs):
    """The lanes of the vectors vs (all of one type) one after another."""
    i32 = ir.IntType(32)
    while len(vs) > 1:
        n = vs[0].type.count
        idx = ir.Constant(ir.VectorType(i32, 2 * n), [ir.Constant(i32, i) for i in range(2 * n)])
        vs = [b.shuffle_vector(vs[k], vs[k + 1], idx) for k in range(0, len(vs) - 1, 2)] + \
            ([vs[-1]] if len(vs) % 2 else [])
    return vs[0]


def _pack_lse(pk, g):
    """(stats of each vector, log1p(rest) of all the rows as one vector --
    one log1p per row, not per lane --, lanes of rows with a finite max)."""
    b = pk.b
    stats = pk.max_rest(g)
    rests = _concat(b, [pk.row_lanes(b.select(fin, rest, const(pk.vty, 0.0)), g) for m, d, rest, fin in stats])
    fins = _concat(b, [pk.row_lanes(fin, g) for m, d, rest, fin in stats])
    return stats, emit_log1p(b, rests), fins


@intrinsic
def vpack_log_softmax(typingctx, x, off, n, out):
    """out = (x - m) - log1p(rest) over packed rows of up to PACK_LSE
    entries (as vpack_softmax); returns the bits of the rows with a
    non-finite max, not written (as vrows_log_softmax)."""
    def body(pk, g, context, sig, args):
        b = pk.b
        i32 = ir.IntType(32)
        q = pk.p // g
        dst = _out_ptr(context, b, sig.args[3], args[3], args[1])
        stats, L, fins = _pack_lse(pk, g)
        for k, (m, d, rest, fin) in enumerate(stats):
            Lk = b.shuffle_vector(L, L, ir.Constant(ir.VectorType(i32, pk.p),
                                                    [ir.Constant(i32, k * q + i // g) for i in range(pk.p)]))
            _masked_store(b, b.fsub(d, Lk, flags=_EFLAGS), pk.ptr(dst, k), pk.align, fin)
        return _nonfinite_bits(b, fins)

    cg = _pack_intrinsic(x, out, body, gmax=PACK_LSE)
    return cg and (types.int64(x, off, n, out), cg)


@intrinsic
def vpack_logsumexp(typingctx, x, off, n, out):
    """out[off / n + row] = m + log1p(rest) (the sum in float64) over packed
    rows of up to PACK_LSE entries (as vpack_softmax); returns the bits of
    the rows with a non-finite max, not written."""
    def body(pk, g, context, sig, args):
        b = pk.b
        stats, L, fins = _pack_lse(pk, g)
        m = _concat(b, [pk.row_lanes(st[0], g) for st in stats])
        ooff = b.sdiv(args[1], args[2])
        _masked_store(b, _add_wide(b, m, L), _out_ptr(context, b, sig.args[3], args[3], ooff), pk.align, fins)
        return _nonfinite_bits(b, fins)

    cg = _pack_intrinsic(x, out, body, gmax=PACK_LSE)
    return cg and (types.int64(x, off, n, out), cg)


@intrinsic
def vrows_max_rest(typingctx, x, off, n, VL, R):
    """(max_0 .. max_{R-1}, rest_0 .. rest_{R-1}) of R consecutive rows of
    n <= VL elements at off (see _max_rest)."""
    vl, nr = _vl(VL), _rows_literal(R)
    if not (_check(x, vl) and nr):
        return None
    retty = types.UniTuple(x.dtype, 2 * nr)

    def codegen(context, builder, sig, args):
        b = builder

        def emit(w):
            rows = _Rows(context, b, sig.args[0], args[0], args[1], args[2], w, nr)
            ms, _, rests = _max_rest(b, rows, rows.loads(float("-inf")))
            return ms + rests

        return context.make_tuple(b, sig.return_type, _by_width(b, args[2], _widths(vl, x.dtype, nr > 1), emit))

    return retty(x, off, n, VL, R), codegen


@intrinsic
def vrows_log_softmax(typingctx, x, off, n, out, VL, R):
    """out = (x - m) - log1p(rest) over R consecutive rows of n <= VL
    elements at off, in registers from one load to one store per row.
    Returns a bit mask of the rows whose max is not finite: nothing is
    written for them (out may be x); the caller finishes them."""
    def body(rows, context, sig, args):
        b = rows.b
        ms, ds, rests = _max_rest(b, rows, rows.loads(float("-inf")))
        L, fin = _lse_rows(b, ms, rests)
        base = _out_ptr(context, b, sig.args[3], args[3], args[1])
        for k, d in enumerate(ds):
            lane = ir.Constant(ir.IntType(32), k)
            rows.store(b.fsub(d, rows.splat(b.extract_element(L, lane)), flags=_EFLAGS),
                       b.gep(base, [b.mul(rows.n, ir.Constant(rows.n.type, k))]),
                       when=b.extract_element(fin, lane))
        return [_nonfinite_bits(b, fin)]

    cg = _rows_intrinsic(x, out, VL, R, body)
    return cg and (types.int64(x, off, n, out, VL, R), cg)


@intrinsic
def vrows_logsumexp(typingctx, x, off, n, out, ooff, VL, R):
    """out[ooff + k] = m_k + log1p(rest_k) (the sum in float64) for R
    consecutive rows of n <= VL elements at off.  Returns a bit mask of the
    rows whose max is not finite: nothing is written for them."""
    def body(rows, context, sig, args):
        b = rows.b
        ms, _, rests = _max_rest(b, rows, rows.loads(float("-inf")))
        L, fin = _lse_rows(b, ms, rests)
        _masked_store(b, _add_wide(b, _gather(b, ms), L), _out_ptr(context, b, sig.args[3], args[3], args[4]),
                      rows.align.constant, fin)
        return [_nonfinite_bits(b, fin)]

    cg = _rows_intrinsic(x, out, VL, R, body)
    return cg and (types.int64(x, off, n, out, ooff, VL, R), cg)


@intrinsic
def flat(typingctx, a):
    """The 1-D view of a C-contiguous array (no reshape call: a new array
    struct on the same data)."""
    if not (isinstance(a, types.Array) and a.layout == "C"):
        return None
    ret = a.copy(ndim=1, layout="C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        dst = context.make_array(sig.return_type)(context, builder)
        populate_array(
            dst,
            data=src.data,
            shape=[src.nitems],
            strides=[src.itemsize],
            itemsize=src.itemsize,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        out = dst._getvalue()
        if context.enable_nrt:
            context.nrt.incref(builder, sig.return_type, out)
        return out

    return ret(a), codegen


# ---------------------------------------------------------------------------
# transposed tiles of short rows: VL rows x VL entries through registers


def _transpose(b, vs):
    """The VL columns of the VL x VL matrix whose rows are the vectors vs.
    Bit h of the (row, column) index pair is swapped for h = VL/2 .. 1, each
    step one two-source shuffle per vector (2 log2(VL) shuffles a vector)."""
    vl = len(vs)
    i32 = ir.IntType(32)
    vs = list(vs)
    h = vl // 2
    while h:
        lo = ir.Constant(ir.VectorType(i32, vl), [c if not c & h else vl + (c ^ h) for c in range(vl)])
        hi = ir.Constant(ir.VectorType(i32, vl), [c ^ h if not c & h else vl + c for c in range(vl)])
        for i in range(vl):
            if not i & h:
                a, c = vs[i], vs[i + h]
                vs[i], vs[i + h] = b.shuffle_vector(a, c, lo), b.shuffle_vector(a, c, hi)
        h //= 2
    return vs


def _strided(b, row, stride, k):
    return b.gep(row.ptr, [b.mul(stride, ir.Constant(stride.type, k))])


def _tile_move(src, dst, vl):
    """Codegen for the VL x VL block moves below: VL vectors from the rows
    of ``src`` (argument positions of array, offset, count, row stride) go
    through _transpose to the rows of ``dst`` (the same four); a count
    argument of None means all VL entries."""

    def codegen(context, builder, sig, args):
        b = builder
        full = ir.Constant(ir.IntType(64), vl)

        def row(spec):
            a, o, c, s = spec
            cnt = full if c is None else args[c]
            return _Row(context, b, sig.args[a], args[a], args[o], cnt, vl), args[s]

        s_row, s_stride = row(src)
        vs = [_load_row(b, s_row, _strided(b, s_row, s_stride, k), 0.0) for k in range(vl)]
        d_row, d_stride = row(dst)
        for j, v in enumerate(_transpose(b, vs)):
            d_row.store(v, _strided(b, d_row, d_stride, j))
        return context.get_dummy_value()

    return codegen


@intrinsic
def prefetch_line(typingctx, a, off, write):
    """Prefetch the cache line of a[off] (a flat float array) into L1, for
    writing if the literal ``write`` is 1.  A hint: never faults, so off
    may be past the array's end (the callers keep it inside all the same)."""
    w = _vl(write)
    if not (_flat(a) and w in (0, 1)):
        return None

    def codegen(context, builder, sig, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        ptr = builder.bitcast(_out_ptr(context, builder, sig.args[0], args[0], args[1]), i8p)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, w), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(a, off, write), codegen


@intrinsic
def vtile_in(typingctx, x, off, cnt, n, t, toff, W, VL):
    """Entry c of the VL rows at x[off + k n] (k < VL; entries c >= cnt read
    as 0) to t[toff + c W + k], for every c < VL: t must have room for VL
    vectors of VL entries, W apart."""
    vl = _vl(VL)
    if not (_check(x, vl) and _flat(t) and t.dtype == x.dtype):
        return None
    return types.none(x, off, cnt, n, t, toff, W, VL), _tile_move((0, 1, 2, 3), (4, 5, None, 6), vl)


@intrinsic
def vtile_out(typingctx, t, toff, W, out, off, cnt, n, VL):
    """The inverse of vtile_in: t[toff + c W + k] to out[off + k n + c] for
    k < VL and c < cnt (nothing else of out is written)."""
    vl = _vl(VL)
    if not (_check(t, vl) and _flat(out) and out.dtype == t.dtype):
        return None
    return types.none(t, toff, W, out, off, cnt, n, VL), _tile_move((0, 1, None, 2), (3, 4, 5, 6), vl)


#: row lengths whose tile moves (tile_move_small) are written out for
#: each length, the entries of a row one by one
SMALL_TILE_LENGTHS = (3, 5, 6, 7)


@intrinsic
def tile_move_small(typingctx, rows, off, n, t, W, into):
    """W rows of n entries, rows[off + k n + j], into a tile as t[j W + k]
    (k < W, j < n) if the literal ``into`` is 1, else the tile back into the
    rows: scalar loads and stores in a loop over k, the n of each row
    written out for each length of SMALL_TILE_LENGTHS (a loop over j for
    other lengths).  For rows this short the VL x VL transposes of vtile_in
    cost as much as for VL columns; written as Numba loops with n a
    constant at each call, these moves added 2-3 s to a tile kernel's first
    compilation (Numba's front end), here next to nothing."""
    w, d = _vl(W), _vl(into)
    if not (_flat(rows) and _flat(t) and rows.dtype == t.dtype and w and d in (0, 1)):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rp = _out_ptr(context, b, sig.args[0], args[0], args[1])
        tp = _out_ptr(context, b, sig.args[3], args[3], ir.Constant(args[1].type, 0))
        nn = b.sext(args[2], args[1].type) if args[2].type != args[1].type else args[2]
        ity = nn.type

        def move(k, j, L):
            ri = b.add(b.mul(k, L), j)
            ti = b.add(b.mul(j, ir.Constant(ity, w)), k)
            src, dst = (b.gep(rp, [ri]), b.gep(tp, [ti])) if d else (b.gep(tp, [ti]), b.gep(rp, [ri]))
            b.store(b.load(src), dst)

        done = b.append_basic_block("tms.done")
        other = b.append_basic_block("tms.other")
        sw = b.switch(nn, other)
        for L in SMALL_TILE_LENGTHS:
            blk = b.append_basic_block(f"tms.n{L}")
            sw.add_case(ir.Constant(ity, L), blk)
            b.position_at_end(blk)
            with cgutils.for_range(b, ir.Constant(ity, w)) as loop:
                for j in range(L):
                    move(loop.index, ir.Constant(ity, j), ir.Constant(ity, L))
            b.branch(done)
        b.position_at_end(other)
        with cgutils.for_range(b, ir.Constant(ity, w)) as outer:
            with cgutils.for_range(b, nn) as inner:
                move(outer.index, inner.index, nn)
        b.branch(done)
        b.position_at_end(done)
        return context.get_dummy_value()

    return types.none(rows, off, n, t, W, into), codegen


# ---------------------------------------------------------------------------
# rows of a few registers, one row at a time in registers (the lengths by
# kernel: numba_jit._SHORT_ROWS).  In pieces of VL lanes such a row paid a
# horizontal reduction for each piece, one after the other (max, sum, dot),
# and float64 rows of 17 did 32 lanes of work.  Here the row is P pieces
# of one 512-bit register each (P a compile-time constant, chosen at run
# time from n): the pieces wholly inside the row plain loads and stores,
# the others masked; max and sums go lane by lane over the pieces in a
# fixed pairwise tree and then once across the lanes.

#: lanes of a piece, by element bits (one 512-bit register)
PIECE_LANES = {32: 16, 64: 8}

#: the piece counts compiled: a row of n entries takes the first P >= n /
#: lanes, its pieces past the row masked off (each P is code to compile:
#: every count from 2 to 16 took float32 log_softmax_backward's first call
#: from 0.1 s to 2.2 s; at most 23% of the lanes are wasted this way)
PIECE_COUNTS = (2, 3, 4, 5, 6, 8, 10, 12, 16)


class _Pieces:
    """A row of n entries at ``off`` of a flat array, as P vectors of
    ``w`` lanes: the first ``full`` whole (n > full * w), the others
    masked to the row."""

    def __init__(self, context, builder, arrty, arr, off, n, P, full):
        b = self.b = builder
        self.ety = context.get_value_type(arrty.dtype)
        self.w = PIECE_LANES[arrty.dtype.bitwidth]
        self.vty = ir.VectorType(self.ety, self.w)
        self.P, self.full = P, full
        self.align = 4 if isinstance(self.ety, ir.FloatType) else 8
        a = context.make_array(arrty)(context, builder, value=arr)
        self.ptr = b.gep(a.data, [off])
        zero = ir.Constant(n.type, 0)
        self.tail = []
        for k in range(full, P):
            head = ir.Constant(n.type, k * self.w)
            left = b.sub(n, head)
            left = b.select(b.icmp_signed(">", left, zero), left, zero)
            self.tail.append(_Row(context, b, arrty, arr, b.add(off, head), left, self.w))

    def _at(self, base, k):
        return self.b.gep(base, [ir.Constant(ir.IntType(64), k * self.w)])

    def loads(self, fill):
        b = self.b
        vs = [b.load(b.bitcast(self._at(self.ptr, k), self.vty.as_pointer()), align=self.align)
              for k in range(self.full)]
        return vs + [r.load(fill) for r in self.tail]

    def stores(self, vs, base):
        """vs to the row at the element pointer base (the pieces past the
        whole ones masked)."""
        b = self.b
        for k in range(self.full):
            b.store(vs[k], b.bitcast(self._at(base, k), self.vty.as_pointer()), align=self.align)
        for k, r in enumerate(self.tail, self.full):
            r.store(vs[k], self._at(base, k))

    def masks(self):
        """Each piece's lanes of the row."""
        i1 = ir.IntType(1)
        every = ir.Constant(ir.VectorType(i1, self.w), [ir.Constant(i1, 1)] * self.w)
        return [every] * self.full + [r.mask for r in self.tail]

    def splat(self, s):
        return _splat(self.b, s, self.w)


def _tree(vs, op):
    """vs combined lane by lane, pairwise (neighbours first): one vector."""
    vs = list(vs)
    while len(vs) > 1:
        nxt = [op(vs[i], vs[i + 1]) for i in range(0, len(vs) - 1, 2)]
        vs = nxt + ([vs[-1]] if len(vs) % 2 else [])
    return vs[0]


def _tree_max(b, vs):
    # as _reduce_multi's "fmax": a NaN may or may not survive; if dropped,
    # x - max is NaN in its lane and the row's sum is NaN
    return _reduce_multi(b, [_tree(vs, lambda u, v: b.select(b.fcmp_ordered(">", u, v), u, v))], "fmax")[0]


def _tree_sum(b, vs, wide=False):
    """Sum of all lanes of vs; with wide, float32 pieces are summed in
    float32 down to one vector and across its lanes in float64 (returned
    as float64)."""
    v = _tree(vs, lambda u, w: b.fadd(u, w, flags=_EFLAGS))
    return _reduce_fadd(b, v, ir.DoubleType() if wide else None)


def _by_pieces(b, n, w, pmax, emit):
    """emit(P, full) for the first P of PIECE_COUNTS (up to pmax) with n <=
    P w, full the count before it (n > full w: the caller's promise that
    n > w), as a switch on ceil(n / w); emit returns a list of values,
    merged (phi)."""
    counts = [P for P in PIECE_COUNTS if P <= pmax]
    p = b.udiv(b.add(n, ir.Constant(n.type, w - 1)), ir.Constant(n.type, w))
    done = b.append_basic_block("pieces.done")
    blocks = [b.append_basic_block(f"pieces{P}") for P in counts]
    sw = b.switch(p, blocks[-1])
    prev = 1
    for P, blk in zip(counts, blocks):
        for q in range(prev + 1, P + 1):
            if P != counts[-1]:
                sw.add_case(ir.Constant(p.type, q), blk)
        prev = P
    results = []
    prev = 1
    for P, blk in zip(counts, blocks):
        b.position_at_end(blk)
        results.append((emit(P, prev), b.block))
        b.branch(done)
        prev = P
    b.position_at_end(done)
    return _merge(b, results)


def _pieces_intrinsic(arrays, out, PMAX, body):
    """Typing check and code of a vrowp_* intrinsic: body(rows, context,
    sig, args) -> [] or [an int64] for each piece count (rows: a _Pieces per array
    argument at the positions ``arrays``; args[len(arrays)] is off, the next
    n)."""
    pmax = _vl(PMAX)
    dt = _sig(list(arrays) + [out], [])
    if dt is None or pmax is None or pmax < 2:
        return None
    na = len(arrays)
    w = PIECE_LANES[dt.bitwidth]

    def codegen(context, builder, sig, args):
        off, n = args[na], args[na + 1]

        def emit(P, full):
            rows = [_Pieces(context, builder, sig.args[k], args[k], off, n, P, full) for k in range(na)]
            return body(rows, context, sig, args)

        res = _by_pieces(builder, n, w, pmax, emit)
        return res[0] if res else context.get_dummy_value()

    return codegen


@intrinsic
def vrowp_softmax(typingctx, x, off, n, out, PMAX):
    """out = softmax(x) over a row of n entries, lanes < n <= PMAX * lanes
    (the NaN rows as vrows_softmax)."""
    def body(rows, context, sig, args):
        r = rows[0]
        b = r.b
        vs = r.loads(float("-inf"))
        ms = r.splat(_tree_max(b, vs))
        es = [emit_exp_neg(b, b.fsub(v, ms, flags=_EFLAGS)) for v in vs]
        inv = r.splat(b.fdiv(ir.Constant(r.ety, 1.0), _tree_sum(b, es)))
        r.stores([b.fmul(e, inv, flags=_EFLAGS) for e in es], _out_ptr(context, b, sig.args[3], args[3], args[1]))
        return []

    cg = _pieces_intrinsic([x], out, PMAX, body)
    return cg and (types.none(x, off, n, out, PMAX), cg)


def _pieces_rest(b, r, vs):
    """(max, the pieces x - max, rest) of a row's pieces: rest = sum +
    (count - 1) over all the pieces (see vrow_rest), in the data type;
    meaningless when the max is not finite."""
    m = _tree_max(b, vs)
    ms = r.splat(m)
    ds = [b.fsub(v, ms, flags=_EFLAGS) for v in vs]
    zero = const(r.vty, 0.0)
    tops = [b.and_(b.fcmp_ordered("==", d, zero), k) for d, k in zip(ds, r.masks())]
    es = [b.select(t, zero, emit_exp_neg(b, d)) for t, d in zip(tops, ds)]
    iw = ir.IntType(r.w)
    cnt = _tree([llvm_call(b, "ctpop", iw, b.bitcast(t, iw), suffix=f"i{r.w}") for t in tops], lambda u, v: b.add(u, v))
    rest = b.fadd(_tree_sum(b, es), b.fsub(b.uitofp(cnt, r.ety), ir.Constant(r.ety, 1.0)))
    return m, ds, rest


@intrinsic
def vrowp_max_rest(typingctx, x, off, n, PMAX):
    """(max, rest) of a row of n entries (lanes < n <= PMAX * lanes), as
    vrows_max_rest."""
    pmax = _vl(PMAX)
    if not (_flat(x) and pmax):
        return None
    w = PIECE_LANES[x.dtype.bitwidth]

    def codegen(context, builder, sig, args):
        def emit(P, full):
            r = _Pieces(context, builder, sig.args[0], args[0], args[1], args[2], P, full)
            m, _, rest = _pieces_rest(builder, r, r.loads(float("-inf")))
            return [m, rest]

        return context.make_tuple(builder, sig.return_type, _by_pieces(builder, args[2], w, pmax, emit))

    return types.UniTuple(x.dtype, 2)(x, off, n, PMAX), codegen


@intrinsic
def vrowp_sub2(typingctx, x, off, n, a, c, out, PMAX):
    """out = (x - a) - c over a row of n entries (lanes < n <= PMAX * lanes)."""
    def body(rows, context, sig, args):
        b, r = rows[0].b, rows[0]
        av, cv = r.splat(args[3]), r.splat(args[4])
        r.stores([b.fsub(b.fsub(v, av, flags=_EFLAGS), cv, flags=_EFLAGS) for v in r.loads(0.0)],
                 _out_ptr(context, b, sig.args[5], args[5], args[1]))
        return []

    if not (_flat(x) and a == x.dtype and c == x.dtype):
        return None
    cg = _pieces_intrinsic([x], out, PMAX, body)
    return cg and (types.none(x, off, n, a, c, out, PMAX), cg)


def _narrow_sum(b, r, s):
    """A _tree_sum(wide=True) back in the data type."""
    return s if r.ety == ir.DoubleType() else b.fptrunc(s, r.ety)


@intrinsic
def vrowp_softmax_bwd(typingctx, g, y, off, n, out, PMAX):
    """out = y * (g - sum(g * y)) over a row of n entries (lanes < n <= PMAX
    * lanes): products in the data type, summed pairwise over the pieces and
    then across the lanes (float32: the last in float64)."""
    def body(rows, context, sig, args):
        rg, ry = rows
        b = rg.b
        vg, vy = rg.loads(0.0), ry.loads(0.0)
        dot = _narrow_sum(b, rg, _tree_sum(b, [b.fmul(u, v, flags=_EFLAGS) for u, v in zip(vg, vy)], wide=True))
        ds = rg.splat(dot)
        outs = [b.fmul(v, b.fsub(u, ds, flags=_EFLAGS), flags=_EFLAGS) for u, v in zip(vg, vy)]
        rg.stores(outs, _out_ptr(context, b, sig.args[4], args[4], args[2]))
        return []

    cg = _pieces_intrinsic([g, y], out, PMAX, body)
    return cg and (types.none(g, y, off, n, out, PMAX), cg)


@intrinsic
def vrowp_log_softmax_bwd(typingctx, g, y, off, n, out, PMAX):
    """out = g - exp(y) * sum(g) over a row of n entries (lanes < n <=
    PMAX * lanes; the sum as vrowp_softmax_bwd's)."""
    def body(rows, context, sig, args):
        rg, ry = rows
        b = rg.b
        vg, vy = rg.loads(0.0), ry.loads(0.0)
        ts = rg.splat(_narrow_sum(b, rg, _tree_sum(b, vg, wide=True)))
        outs = [b.fsub(u, b.fmul(emit_exp(b, v), ts, flags=_EFLAGS), flags=_EFLAGS) for u, v in zip(vg, vy)]
        rg.stores(outs, _out_ptr(context, b, sig.args[4], args[4], args[2]))
        return []

    cg = _pieces_intrinsic([g, y], out, PMAX, body)
    return cg and (types.none(g, y, off, n, out, PMAX), cg)
