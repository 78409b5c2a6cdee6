"""Explicit vector code for short rows (n <= 64), as Numba intrinsics.

A row of a few elements is too short for LLVM's loop vectorizer: a loop
over 16 elements runs through the vectorizer's run-time checks, a partly
vectorized epilogue and spills of the exp constants, about 60 cycles a row.
Here a whole row is one masked vector load (``llvm.masked.load``), the work
is done on the vector, reductions are ``llvm.vector.reduce.*`` (log-depth
trees) and the result is one masked store: ~15-20 cycles a row.

Each intrinsic takes a flat C-contiguous array, the offset of the row in it,
the row length ``n`` and the vector length ``VL`` (an integer literal,
``n <= VL``); lanes at and beyond ``n`` are neither read nor written.  The
math is ``numba_math``'s IR emitters, so these rows are bit-for-bit the same
computation as the long-row loops.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from .numba_math import _EFLAGS, const, emit_exp, emit_fkey, emit_from_fkey, llvm_call



def _vl(v):
    if isinstance(v, types.IntegerLiteral):
        return v.literal_value
    return None


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
        i32 = ir.IntType(32)
        iota = ir.Constant(ir.VectorType(i32, vl), [ir.Constant(i32, i) for i in range(vl)])
        n32 = builder.trunc(n, i32)
        nv = builder.insert_element(ir.Constant(ir.VectorType(i32, vl), ir.Undefined), n32, ir.Constant(i32, 0))
        nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(i32, vl), [ir.Constant(i32, 0)] * vl))
        self.mask = builder.icmp_unsigned("<", iota, nv)
        self.align = ir.Constant(i32, 4 if isinstance(self.ety, ir.FloatType) else 8)

    def load(self, fill):
        b = self.b
        pt = const(self.vty, fill)
        name = f"llvm.masked.load.v{self.vl}{'f32' if isinstance(self.ety, ir.FloatType) else 'f64'}.p0"
        fnty = ir.FunctionType(self.vty, [self.ptr.type, ir.IntType(32), self.mask.type, self.vty])
        fn = cgutils.get_or_insert_function(b.module, fnty, name)
        return b.call(fn, [self.ptr, self.align, self.mask, pt])

    def store(self, v, ptr=None, extra_mask=None):
        b = self.b
        mask = self.mask if extra_mask is None else b.and_(self.mask, extra_mask)
        name = f"llvm.masked.store.v{self.vl}{'f32' if isinstance(self.ety, ir.FloatType) else 'f64'}.p0"
        fnty = ir.FunctionType(ir.VoidType(), [self.vty, self.ptr.type, ir.IntType(32), mask.type])
        fn = cgutils.get_or_insert_function(b.module, fnty, name)
        b.call(fn, [v, self.ptr if ptr is None else ptr, self.align, mask])

    def splat(self, s):
        b = self.b
        i32 = ir.IntType(32)
        v = b.insert_element(ir.Constant(self.vty, ir.Undefined), s, ir.Constant(i32, 0))
        return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, self.vl), [ir.Constant(i32, 0)] * self.vl))



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
        e = emit_exp(builder, builder.fsub(v, row.splat(args[3]), flags=_EFLAGS))
        row.store(e, _out_ptr(context, builder, sig.args[4], args[4], args[1]))
        return _reduce_fadd(builder, e)

    return x.dtype(x, off, n, m, out, VL), codegen


@intrinsic
def vrow_rest(typingctx, x, off, n, m, VL):
    """sum over the row of exp(x - m) except one maximum's own term (1):
    the sum of the other terms plus (count of maxima - 1).  Accumulated in
    float64.  NaN if the row has a NaN."""
    vl = _vl(VL)
    if not _check(x, vl, m):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        d = b.fsub(v, row.splat(args[3]), flags=_EFLAGS)
        e = emit_exp(b, d)
        zero = const(row.vty, 0.0)
        is_max = b.and_(b.fcmp_ordered("==", d, zero), row.mask)
        e = b.select(is_max, zero, e)
        dbl = ir.DoubleType()
        s = _reduce_fadd(b, e, dbl)
        cnt = b.sitofp(
            llvm_call(b, "ctpop", ir.IntType(vl), b.bitcast(is_max, ir.IntType(vl)), suffix=f"i{vl}"),
            dbl,
        )
        return b.fadd(s, b.fsub(cnt, ir.Constant(dbl, 1.0)))

    return types.float64(x, off, n, m, VL), codegen


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
# element-wise row updates (masked store into ``out`` at the same offset)


@intrinsic
def vrow_scale(typingctx, x, off, n, c, out, VL):
    """out = x * c over the row."""
    vl = _vl(VL)
    if not (_check(x, vl, c) and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        row = _Row(context, builder, sig.args[0], args[0], args[1], args[2], vl)
        v = builder.fmul(row.load(0.0), row.splat(args[3]), flags=_EFLAGS)
        row.store(v, _out_ptr(context, builder, sig.args[4], args[4], args[1]))
        return context.get_dummy_value()

    return types.none(x, off, n, c, out, VL), codegen


@intrinsic
def vrow_sub2(typingctx, x, off, n, a, c, out, VL):
    """out = (x - a) - c over the row."""
    vl = _vl(VL)
    if not (_check(x, vl, a, c) and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        v = b.fsub(b.fsub(row.load(0.0), row.splat(args[3]), flags=_EFLAGS), row.splat(args[4]), flags=_EFLAGS)
        row.store(v, _out_ptr(context, b, sig.args[5], args[5], args[1]))
        return context.get_dummy_value()

    return types.none(x, off, n, a, c, out, VL), codegen


@intrinsic
def vrow_softmax_bwd(typingctx, g, y, off, n, dot, out, VL):
    """out = y * (g - dot) over the row."""
    vl = _vl(VL)
    if not (_check(g, vl, dot) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], vl)
        ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], vl)
        v = b.fmul(ry.load(0.0), b.fsub(rg.load(0.0), rg.splat(args[4]), flags=_EFLAGS), flags=_EFLAGS)
        rg.store(v, _out_ptr(context, b, sig.args[5], args[5], args[2]))
        return context.get_dummy_value()

    return types.none(g, y, off, n, dot, out, VL), codegen


@intrinsic
def vrow_log_softmax_bwd(typingctx, g, y, off, n, total, out, VL):
    """out = g - exp(y) * total over the row."""
    vl = _vl(VL)
    if not (_check(g, vl, total) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], vl)
        ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], vl)
        e = emit_exp(b, ry.load(0.0))
        v = b.fsub(rg.load(0.0), b.fmul(e, rg.splat(args[4]), flags=_EFLAGS), flags=_EFLAGS)
        rg.store(v, _out_ptr(context, b, sig.args[5], args[5], args[2]))
        return context.get_dummy_value()

    return types.none(g, y, off, n, total, out, VL), codegen


@intrinsic
def vrow_lse_bwd(typingctx, x, off, n, g, lse, out, VL):
    """out = g * exp(x - lse) over the row."""
    vl = _vl(VL)
    if not (_check(x, vl, g, lse) and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        e = emit_exp(b, b.fsub(row.load(0.0), row.splat(args[4]), flags=_EFLAGS))
        v = b.fmul(row.splat(args[3]), e, flags=_EFLAGS)
        row.store(v, _out_ptr(context, b, sig.args[5], args[5], args[1]))
        return context.get_dummy_value()

    return types.none(x, off, n, g, lse, out, VL), codegen


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


def _hmax(b, v, ety):
    """max of the lanes of v in key order (+NaN wins, -NaN loses)."""
    return emit_from_fkey(b, _reduce_smax(b, emit_fkey(b, v)), ety)


@intrinsic
def vrow_softmax1(typingctx, x, off, n, out, VL):
    """out = softmax(x) over a row of n <= VL elements.  IEEE arithmetic
    gives the contract's NaN rows: a max of +inf or NaN makes x - m NaN
    somewhere, an all -inf row gives -inf - -inf = NaN, and a NaN makes the
    sum NaN."""
    vl = _vl(VL)
    if not (_check(x, vl) and _flat(out) and out.dtype == x.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        m = _hmax(b, v, row.ety)
        e = emit_exp(b, b.fsub(v, row.splat(m), flags=_EFLAGS))
        s = _reduce_fadd(b, e)
        inv = b.fdiv(ir.Constant(row.ety, 1.0), s)
        row.store(b.fmul(e, row.splat(inv), flags=_EFLAGS), _out_ptr(context, b, sig.args[3], args[3], args[1]))
        return context.get_dummy_value()

    return types.none(x, off, n, out, VL), codegen


@intrinsic
def vrow_max_rest(typingctx, x, off, n, VL):
    """(max, rest) of a row of n <= VL elements: rest as in ``vrow_rest``
    (float64; meaningless when the max is not finite)."""
    vl = _vl(VL)
    if not _check(x, vl):
        return None
    retty = types.Tuple((x.dtype, types.float64))

    def codegen(context, builder, sig, args):
        b = builder
        row = _Row(context, b, sig.args[0], args[0], args[1], args[2], vl)
        v = row.load(float("-inf"))
        m = _hmax(b, v, row.ety)
        d = b.fsub(v, row.splat(m), flags=_EFLAGS)
        e = emit_exp(b, d)
        zero = const(row.vty, 0.0)
        is_max = b.and_(b.fcmp_ordered("==", d, zero), row.mask)
        e = b.select(is_max, zero, e)
        dbl = ir.DoubleType()
        s = _reduce_fadd(b, e, dbl)
        cnt = b.sitofp(
            llvm_call(b, "ctpop", ir.IntType(vl), b.bitcast(is_max, ir.IntType(vl)), suffix=f"i{vl}"),
            dbl,
        )
        rest = b.fadd(s, b.fsub(cnt, ir.Constant(dbl, 1.0)))
        return context.make_tuple(b, sig.return_type, (m, rest))

    return retty(x, off, n, VL), codegen


@intrinsic
def vrow_softmax_bwd1(typingctx, g, y, off, n, out, VL):
    """out = y * (g - sum(g * y)) over a row of n <= VL elements (the sum
    in float64)."""
    vl = _vl(VL)
    if not (_check(g, vl) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], vl)
        ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], vl)
        vg, vy = rg.load(0.0), ry.load(0.0)
        dv = ir.VectorType(ir.DoubleType(), vl)
        if vg.type != dv:
            dot = _reduce_fadd(b, b.fmul(b.fpext(vg, dv), b.fpext(vy, dv), flags=_EFLAGS))
            dot = b.fptrunc(dot, rg.ety)
        else:
            dot = _reduce_fadd(b, b.fmul(vg, vy, flags=_EFLAGS))
        v = b.fmul(vy, b.fsub(vg, rg.splat(dot), flags=_EFLAGS), flags=_EFLAGS)
        rg.store(v, _out_ptr(context, b, sig.args[4], args[4], args[2]))
        return context.get_dummy_value()

    return types.none(g, y, off, n, out, VL), codegen


@intrinsic
def vrow_log_softmax_bwd1(typingctx, g, y, off, n, out, VL):
    """out = g - exp(y) * sum(g) over a row of n <= VL elements (the sum in
    float64)."""
    vl = _vl(VL)
    if not (_check(g, vl) and _flat(y) and _flat(out) and y.dtype == out.dtype == g.dtype):
        return None

    def codegen(context, builder, sig, args):
        b = builder
        rg = _Row(context, b, sig.args[0], args[0], args[2], args[3], vl)
        ry = _Row(context, b, sig.args[1], args[1], args[2], args[3], vl)
        vg, vy = rg.load(0.0), ry.load(0.0)
        tot = _reduce_fadd(b, vg, ir.DoubleType())
        if rg.ety != tot.type:
            tot = b.fptrunc(tot, rg.ety)
        v = b.fsub(vg, b.fmul(emit_exp(b, vy), rg.splat(tot), flags=_EFLAGS), flags=_EFLAGS)
        rg.store(v, _out_ptr(context, b, sig.args[4], args[4], args[2]))
        return context.get_dummy_value()

    return types.none(g, y, off, n, out, VL), codegen
