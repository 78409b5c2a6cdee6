"""The dispatch layer: everything between a user's call and a kernel.

Array-likes become arrays; dtypes are promoted (bool/int -> float64, float16
computed in float32 and returned as float16, byte-swapped made native);
axes are normalized; ``out=`` is checked before anything is written; and any
shape, axis and memory layout is mapped onto the canonical layout the
kernels see (see ``fastact._registry``):

* elementwise kernels get 1-D contiguous arrays (C- or F-ordered inputs are
  viewed, never copied);
* row kernels get a C-contiguous ``(outer, n, inner)`` view reduced over
  ``n``.  When the reduced axes are adjacent in the array's memory order
  (last axis of a C array, first axis of an F array, any axis of a C array
  as ``inner > 1``, ``axis=None``...) this is a view; otherwise (strided
  input, reduced axes not adjacent) one copy is made with the reduced axes
  last.  Results come back in the layout the input had.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from . import _config

try:  # numpy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_NATIVE = (_F32, _F64)

_numpy_table = None


def reference_table():
    global _numpy_table
    if _numpy_table is None:
        _numpy_table = _config._load("numpy")
    return _numpy_table


# ---------------------------------------------------------------------------
# arrays and dtypes


def asarray(x, name: str = "x") -> np.ndarray:
    """``x`` as an ndarray of a real numeric dtype, else TypeError."""
    a = x if type(x) is np.ndarray else np.asarray(x)
    kind = a.dtype.kind
    if kind in "fbiu":
        return a
    if kind == "c":
        raise TypeError(
            f"{name} is complex ({a.dtype}); fastact kernels are real-valued "
            "(fastact.special accepts complex input as SciPy does)"
        )
    raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")


def _float_of(dt: np.dtype) -> np.dtype:
    if dt.kind != "f":
        return _F64
    return dt if dt.isnative else dt.newbyteorder("=")


def result_dtype(*arrays) -> np.dtype:
    """dtype of the result: float inputs keep theirs, bool/int give float64."""
    if len(arrays) == 1:
        return _float_of(arrays[0].dtype)
    return np.result_type(*(_float_of(a.dtype) for a in arrays))


def compute_dtype(rdt: np.dtype) -> np.dtype:
    return _F32 if rdt == _F16 else rdt


def table_for(cdt: np.dtype):
    """Kernel table for a compute dtype: the current backend for float32 and
    float64; the NumPy reference for any other float (long double)."""
    if cdt is _F32 or cdt is _F64 or cdt in _NATIVE:
        return _config.current()
    return reference_table()


def cast(a: np.ndarray, dt: np.dtype) -> np.ndarray:
    return a if a.dtype is dt else a.astype(dt)


def check_out(out, shape, rdt, inputs=(), names=()):
    """Validate ``out`` before anything is computed or written: type, shape,
    dtype, writeable, and no overlap with an input it is not exactly (the
    same memory, shape and strides); PyTorch raises there too."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, but the result has shape {tuple(shape)}")
    if out.dtype != rdt:
        raise ValueError(f"out has dtype {out.dtype}, but the result has dtype {rdt}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    for a, n in zip(inputs, names):
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a) and not _same_view(out, a):
            raise ValueError(
                f"out overlaps {n} without being it; pass {n} itself (in place) or a separate array"
            )


def _same_view(a, b) -> bool:
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def check_same_shape(a, b, an, bn):
    if a.shape != b.shape:
        raise ValueError(f"{an} has shape {a.shape} but {bn} has shape {b.shape}; they must match")


def check_scalar(v, name, integer=False):
    try:
        return operator.index(v) if integer else float(v)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {kind}, got {v!r}") from None


# ---------------------------------------------------------------------------
# axes and the canonical (outer, n, inner) layout


def normalize_axes(axis, ndim: int) -> tuple:
    """Sorted tuple of non-negative axes; ``None`` means all axes.

    A 0-d array accepts ``axis`` in (None, 0, -1, ()) and is treated as a
    single row of length 1, as PyTorch does.
    """
    if axis is None:
        return tuple(range(ndim))
    many = isinstance(axis, (tuple, list))
    axes = tuple(_one_axis(a, ndim) for a in (axis if many else (axis,)))
    if len(set(axes)) != len(axes):
        raise ValueError(f"duplicate value in axis: {axis!r}")
    return () if ndim == 0 else tuple(sorted(axes))


def _one_axis(a, ndim):
    try:
        a = operator.index(a)
    except TypeError:
        raise TypeError(f"axis must be an integer, a tuple of integers or None, got {a!r}") from None
    lim = max(ndim, 1)  # a 0-d array is one row of length 1: axis 0 or -1
    if not -lim <= a < lim:
        raise AxisError(a, ndim)
    return a % lim


class Plan:
    """How arrays of one shape map onto the canonical layout for given axes.

    ``perm`` orders the axes so that the reduced ones are adjacent, starting
    at position ``p0``, in the array's memory order when that already makes
    them adjacent (C or F order: a view); otherwise the reduced axes go last
    and arrays are copied.  ``rest`` are the non-reduced axes in ``perm``
    order; ``identity`` marks the common case where no transpose is needed.
    """

    __slots__ = ("shape", "ndim", "axes", "perm", "p0", "outer", "n", "inner", "rest",
                 "identity", "rest_perm", "rest_identity")

    def __init__(self, a: np.ndarray, axes: tuple):
        nd = a.ndim
        shape = self.shape = a.shape
        self.ndim = nd
        self.axes = axes
        k = len(axes)
        perm = None
        if a.flags.c_contiguous:
            perm = tuple(range(nd))
        elif a.flags.f_contiguous:
            perm = tuple(range(nd - 1, -1, -1))
        if perm is not None and k:
            pos = sorted(perm.index(ax) for ax in axes)
            if pos[-1] - pos[0] != k - 1:
                perm = None  # reduced axes not adjacent in memory
        if perm is None:
            rest = tuple(i for i in range(nd) if i not in axes)
            perm = rest + axes
            p0 = nd - k
        elif k:
            p0 = min(perm.index(ax) for ax in axes)
        else:
            p0 = nd
        self.perm = perm
        self.p0 = p0
        shp = [shape[i] for i in perm]
        self.outer = _prod(shp[:p0])
        self.n = _prod(shp[p0 : p0 + k])
        self.inner = _prod(shp[p0 + k :])
        self.rest = perm[:p0] + perm[p0 + k :]  # non-reduced axes, memory order
        self.identity = perm == tuple(range(nd))
        kept = [i for i in range(nd) if i not in axes]
        self.rest_perm = [kept.index(i) for i in self.rest]
        self.rest_identity = self.rest_perm == list(range(len(kept)))

    # full-shaped arrays -------------------------------------------------
    def canon(self, a: np.ndarray) -> np.ndarray:
        """Canonical (outer, n, inner) array of ``a`` (a view if possible)."""
        v = a if self.identity else a.transpose(self.perm)
        if not v.flags.c_contiguous:
            v = np.ascontiguousarray(v)
        return v.reshape(self.outer, self.n, self.inner)

    def canon_view(self, a: np.ndarray):
        """Canonical view of ``a``, or None if that would need a copy."""
        v = a if self.identity else a.transpose(self.perm)
        if not v.flags.c_contiguous:
            return None
        return v.reshape(self.outer, self.n, self.inner)

    def new(self, dtype):
        """(canonical, result) for a fresh full-shaped array; ``result`` has
        the input's shape and the memory order of the plan."""
        c = np.empty((self.outer, self.n, self.inner), dtype)
        return c, self.uncanon(c)

    def uncanon(self, c: np.ndarray) -> np.ndarray:
        if self.identity:
            return c.reshape(self.shape)
        shp = tuple(self.shape[i] for i in self.perm)
        return c.reshape(shp).transpose(np.argsort(self.perm))

    # reduced arrays (shape of the non-reduced axes, original order) -------
    def reduced_shape(self, keepdims=False):
        if keepdims:
            return tuple(1 if i in self.axes else s for i, s in enumerate(self.shape))
        return tuple(s for i, s in enumerate(self.shape) if i not in self.axes)

    def canon_reduced(self, r: np.ndarray, view_only=False):
        v = r if self.rest_identity else r.transpose(self.rest_perm)
        if not v.flags.c_contiguous:
            if view_only:
                return None
            v = np.ascontiguousarray(v)
        return v.reshape(self.outer, self.inner)

    def new_reduced(self, dtype):
        c = np.empty((self.outer, self.inner), dtype)
        shp = tuple(self.shape[i] for i in self.rest)
        if self.rest_identity:
            return c, c.reshape(shp)
        return c, c.reshape(shp).transpose(np.argsort(self.rest_perm))


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def _same_memory(a, b) -> bool:
    return (
        a.shape == b.shape
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def _out_target(out, canon_out, inputs, rdt, cdt):
    """The canonical array the kernel may write directly, or None when the
    result must go through a temporary (dtype cast, layout, partial overlap)."""
    if canon_out is None or rdt != cdt:
        return None
    for c in inputs:
        if np.may_share_memory(canon_out, c) and not _same_memory(canon_out, c):
            return None
    return canon_out


# ---------------------------------------------------------------------------
# the operations
#
# Each has a fast path for the common call -- C-contiguous float32/float64
# ndarrays of one dtype, the last axis, no out= or an out= that can be written
# directly -- which skips the general planning below; everything else, and
# every error, goes through the general path.  Both give the same results.


def _plain(x, like=None):
    """x is a C-contiguous native float32/float64 ndarray (of like's dtype
    and shape when given)."""
    if type(x) is not np.ndarray:
        return False
    dt = x.dtype
    if like is None:
        return (dt is _F32 or dt is _F64) and x.flags.c_contiguous
    return dt is like.dtype and x.shape == like.shape and x.flags.c_contiguous


def _out_ok(out, dtype, shape, inputs):
    """out can be written by the kernel directly: a C-contiguous writeable
    ndarray of that dtype and shape, and either one of ``inputs`` or disjoint
    from each.  Two arrays that both own their data are separate
    allocations: checking that (~0.1 us) spares np.may_share_memory (~0.3 us,
    a fifth of a (64, 10) softmax call) for the usual preallocated out and
    fresh input."""
    if type(out) is not np.ndarray or out.dtype is not dtype or out.shape != shape:
        return False
    f = out.flags
    if not (f.c_contiguous and f.writeable):
        return False
    own = f.owndata
    for a in inputs:
        if out is not a and not (own and a.flags.owndata) and np.may_share_memory(out, a):
            return False
    return True


def _drop_axis(shape, axis):
    """shape without the (in-range int) axis."""
    ax = axis % len(shape)
    return shape[:ax] + shape[ax + 1:]


def _last_axis(axis, x):
    return type(axis) is int and (axis == -1 or axis == x.ndim - 1) and x.ndim and x.shape[-1]


def _axis3(axis, shape):
    """(outer, n, inner) of a C-contiguous array of ``shape`` reduced over
    ``axis``, a single int in range over a non-empty axis: the canonical
    layout is then a reshape, with no plan (the fast paths below take it for
    any such axis: softmax over the channels of an (N, C, H, W) array costs
    a reshape, not 12 us of planning); None for anything else."""
    if type(axis) is not int:
        return None
    nd = len(shape)
    if not -nd <= axis < nd:
        return None
    ax = axis + nd if axis < 0 else axis
    n = shape[ax]
    if not n:
        return None
    return math.prod(shape[:ax]), n, math.prod(shape[ax + 1:])


def elementwise(name, x, out, params=(), xname="x"):
    """y = f(x) elementwise."""
    if type(x) is np.ndarray:  # fast path, checks inlined: this is per call
        dt = x.dtype
        if (dt is _F32 or dt is _F64) and x.flags.c_contiguous:
            k = getattr(_config.current(), name)
            if out is None:  # (the kernels take any shape as flat: see _registry)
                y = np.empty(x.shape, dt)
                k(x, y, *params)
                return y
            if _out_ok(out, dt, x.shape, (x,)):
                k(x, out, *params)
                return out
    return _map(name, (x,), (xname,), out, params)


def elementwise2(name, a, b, out, params=(), names=("grad", "x")):
    """y = f(a, b) elementwise, a and b of one shape (backward kernels)."""
    if _plain(b) and _plain(a, b) and (out is None or _out_ok(out, b.dtype, b.shape, (a, b))):
        y = np.empty_like(b) if out is None else out
        getattr(_config.current(), name)(a, b, y, *params)
        return y
    return _map(name, (a, b), names, out, params)


def _map(name, arrays, names, out, params):
    arrays = [asarray(a, n) for a, n in zip(arrays, names)]
    for a, n in zip(arrays[1:], names[1:]):
        check_same_shape(arrays[0], a, names[0], n)
    rdt = result_dtype(*arrays)
    if out is not None:
        check_out(out, arrays[0].shape, rdt, arrays, names)
    cdt = compute_dtype(rdt)
    # the layout comes from the last array (the saved x or y), which is the
    # one a training loop most often hands over contiguous
    main = cast(arrays[-1], cdt)
    plan = Plan(main, ())
    flat = [plan.canon(cast(a, cdt)).reshape(-1) for a in arrays[:-1]]
    flat.append(plan.canon(main).reshape(-1))
    return _finish(plan, name, flat, out, params, rdt, cdt, flat=True)


def _finish(plan, name, canon_in, out, params, rdt, cdt, flat=False):
    """Run kernel ``name`` on canonical inputs into ``out`` or a new array;
    ``flat``: the kernel is elementwise and takes 1-D arrays."""
    k = getattr(table_for(cdt), name)
    target = None
    if out is not None:
        cv = plan.canon_view(out)
        if cv is not None and flat:
            cv = cv.reshape(-1)
        target = _out_target(out, cv, canon_in, rdt, cdt)
    if target is not None:
        k(*canon_in, target, *params)
        return out
    c, result = plan.new(cdt)
    k(*canon_in, c.reshape(-1) if flat else c, *params)
    if out is not None:
        np.copyto(out, result, casting="unsafe")
        return out
    return result if rdt == cdt else result.astype(rdt)


def rows(name, x, axis, out):
    """Same-shaped result of a reduction-based op (softmax, log_softmax)."""
    if type(x) is np.ndarray and type(axis) is int:  # fast path, checks inlined
        dt = x.dtype
        shape = x.shape
        if ((dt is _F32 or dt is _F64) and shape and shape[-1] and (axis == -1 or axis == len(shape) - 1)
                and x.flags.c_contiguous and (out is None or _out_ok(out, dt, shape, (x,)))):
            n = shape[-1]
            y = np.empty(shape, dt) if out is None else out
            k = getattr(_config.current(), name)
            if len(shape) == 2:  # (outer, n): inner = 1 implicit (see _registry)
                k(x, y)
            else:
                k(x.reshape(-1, n, 1), y.reshape(-1, n, 1))
            return y
        c3 = _axis3(axis, shape)
        if c3 and _plain(x) and (out is None or _out_ok(out, x.dtype, x.shape, (x,))):
            y = np.empty(shape, dt) if out is None else out
            getattr(_config.current(), name)(x.reshape(c3), y.reshape(c3))
            return y
    return rows_multi(name, (x,), ("x",), axis, out)


def rows_multi(name, arrays, names, axis, out):
    if len(arrays) == 2:  # backward: (grad, y)
        a, b = arrays
        if _plain(b) and _plain(a, b) and (out is None or _out_ok(out, b.dtype, b.shape, (a, b))):
            if _last_axis(axis, b):
                n = b.shape[-1]
                y = np.empty_like(b) if out is None else out
                k = getattr(_config.current(), name)
                if b.ndim == 2:
                    k(a, b, y)
                else:
                    k(a.reshape(-1, n, 1), b.reshape(-1, n, 1), y.reshape(-1, n, 1))
                return y
            c3 = _axis3(axis, b.shape)
            if c3:
                y = np.empty_like(b) if out is None else out
                getattr(_config.current(), name)(a.reshape(c3), b.reshape(c3), y.reshape(c3))
                return y
    arrays = [asarray(a, n) for a, n in zip(arrays, names)]
    for a, n in zip(arrays[1:], names[1:]):
        check_same_shape(arrays[0], a, names[0], n)
    main = arrays[-1]
    axes = normalize_axes(axis, main.ndim)
    rdt = result_dtype(*arrays)
    if out is not None:
        check_out(out, main.shape, rdt, arrays, names)
    cdt = compute_dtype(rdt)
    main = cast(main, cdt)
    plan = Plan(main, axes)
    canon = [plan.canon(cast(a, cdt)) for a in arrays[:-1]] + [plan.canon(main)]
    return _finish(plan, name, canon, out, (), rdt, cdt)


def reduce_rows(name, x, axis, keepdims, out):
    """Reduced result (logsumexp)."""
    if not keepdims and _plain(x):
        if _last_axis(axis, x):
            n = x.shape[-1]
            rs = x.shape[:-1]
            if out is None or _out_ok(out, x.dtype, rs, (x,)):
                r = np.empty(rs, x.dtype) if out is None else out
                k = getattr(_config.current(), name)
                if x.ndim == 2:
                    k(x, r)
                else:
                    k(x.reshape(-1, n, 1), r.reshape(-1, 1))
                return r
        c3 = _axis3(axis, x.shape)
        if c3:
            rs = _drop_axis(x.shape, axis)
            if out is None or _out_ok(out, x.dtype, rs, (x,)):
                r = np.empty(rs, x.dtype) if out is None else out
                getattr(_config.current(), name)(x.reshape(c3), r.reshape(c3[0], c3[2]))
                return r
    x0 = x = asarray(x)
    axes = normalize_axes(axis, x.ndim)
    rdt = result_dtype(x)
    cdt = compute_dtype(rdt)
    x = cast(x, cdt)
    plan = Plan(x, axes)
    shape = plan.reduced_shape(keepdims)
    if out is not None:
        check_out(out, shape, rdt, (x0,), ("x",))
    cx = plan.canon(x)
    k = getattr(table_for(cdt), name)
    if out is not None and rdt == cdt:
        r = np.squeeze(out, axis=plan.axes) if keepdims else out
        cv = plan.canon_reduced(r, view_only=True)
        if cv is not None and not np.may_share_memory(cv, cx):
            k(cx, cv)
            return out
    c, result = plan.new_reduced(cdt)
    k(cx, c)
    if keepdims:
        result = result.reshape(shape)
    if out is not None:
        np.copyto(out, result, casting="unsafe")
        return out
    return result if rdt == cdt else result.astype(rdt)


def reduce_rows_backward(name, grad, x, lse, axis, out):
    """grad * exp(x - lse): grad and lse have the reduced shape."""
    if (_plain(x) and _plain(lse) and _plain(grad, lse) and lse.dtype is x.dtype
            and (out is None or _out_ok(out, x.dtype, x.shape, (grad, x, lse)))):
        if _last_axis(axis, x) and lse.shape == x.shape[:-1]:
            n = x.shape[-1]
            y = np.empty_like(x) if out is None else out
            k = getattr(_config.current(), name)
            if x.ndim == 2:
                k(grad, x, lse, y)
            else:
                k(grad.reshape(-1, 1), x.reshape(-1, n, 1), lse.reshape(-1, 1), y.reshape(-1, n, 1))
            return y
        c3 = _axis3(axis, x.shape)
        if c3 and lse.shape == _drop_axis(x.shape, axis):
            y = np.empty_like(x) if out is None else out
            r2 = (c3[0], c3[2])
            getattr(_config.current(), name)(grad.reshape(r2), x.reshape(c3), lse.reshape(r2), y.reshape(c3))
            return y
    grad, x, lse = asarray(grad, "grad"), asarray(x, "x"), asarray(lse, "lse")
    axes = normalize_axes(axis, x.ndim)
    rdt = result_dtype(grad, x, lse)
    cdt = compute_dtype(rdt)
    xc = cast(x, cdt)
    plan = Plan(xc, axes)
    red, red_k = plan.reduced_shape(), plan.reduced_shape(True)
    for r, n in ((grad, "grad"), (lse, "lse")):
        if r.shape not in (red, red_k):
            raise ValueError(
                f"{n} has shape {r.shape}, but x of shape {x.shape} reduced over "
                f"axis {axis!r} has shape {red} (or {red_k} with keepdims)"
            )
    if out is not None:
        check_out(out, x.shape, rdt, (grad, x, lse), ("grad", "x", "lse"))
    g = plan.canon_reduced(cast(grad, cdt).reshape(red))
    s = plan.canon_reduced(cast(lse, cdt).reshape(red))
    return _finish(plan, name, [g, plan.canon(xc), s], out, (), rdt, cdt)
