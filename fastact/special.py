"""Drop-in replacements for ``scipy.special`` softmax, log_softmax, logsumexp,
expit, logit and log_expit.

Same signatures, defaults (``axis=None``), dtype rules and edge-case results
as SciPy.  Real inputs run on fastact's kernels; what those do not cover
(complex input, ``b=`` weights, ``return_sign=True``, object arrays) takes a
NumPy reference path that gives SciPy's answers and raises only where SciPy
raises.  Results that are 0-d come back as NumPy scalars, as from SciPy.

>>> import numpy as np
>>> from fastact import special
>>> float(special.logsumexp(np.arange(10)))
9.45862974442671
>>> special.expit(np.float32(0.0)).dtype
dtype('float32')
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _api, _dispatch

__all__ = ["softmax", "log_softmax", "logsumexp", "expit", "logit", "log_expit"]


def _real(a) -> bool:
    return a.dtype.kind in "fbiu"


def _scalar_if_0d(r):
    return r[()] if isinstance(r, np.ndarray) and r.ndim == 0 else r


# ---------------------------------------------------------------------------
# softmax family


def softmax(x: ArrayLike, axis=None):
    """Softmax, as ``scipy.special.softmax``: over the whole array by default.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis to compute values along.  Default is None: the whole array.

    Returns
    -------
    ndarray or scalar
        Same shape as ``x``; sums to 1 along ``axis``.

    Examples
    --------
    >>> from fastact import special
    >>> special.softmax([[1.0, 1.0], [1.0, 1.0]]).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    a = np.asarray(x)
    if _real(a):
        return _scalar_if_0d(_api.softmax(a, axis=axis))
    # reference path (complex, object): SciPy's definition, max-shifted
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: ArrayLike, axis=None):
    """Log of softmax, as ``scipy.special.log_softmax``.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis to compute values along.  Default is None: the whole array.

    Returns
    -------
    ndarray or scalar
        Same shape as ``x``.

    Examples
    --------
    >>> from fastact import special
    >>> special.log_softmax([1000.0, 1.0]).tolist()
    [0.0, -999.0]
    """
    a = np.asarray(x)
    if _real(a):
        return _scalar_if_0d(_api.log_softmax(a, axis=axis))
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.max(a, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        d = a - m
        return d - np.log(np.sum(np.exp(d), axis=axis, keepdims=True))


def logsumexp(a: ArrayLike, axis=None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: bool = False):
    """Log of the sum of exponentials, as ``scipy.special.logsumexp``.

    Parameters
    ----------
    a : array_like
        Input array.
    axis : None or int or tuple of ints, optional
        Axis or axes to sum over; all by default.
    b : array_like, optional
        Weights for ``exp(a)``, broadcastable with ``a``; may be negative.
    keepdims : bool, optional
        Keep the reduced axes as length-1 dimensions.
    return_sign : bool, optional
        Also return the sign of the sum (a phase for complex input); when
        False a negative sum gives NaN.

    Returns
    -------
    res : ndarray or scalar
        ``log(sum(b * exp(a)))``, or ``log|sum|`` with ``return_sign``.
    sgn : ndarray or scalar
        Only with ``return_sign=True``.

    Examples
    --------
    >>> from fastact import special
    >>> r, s = special.logsumexp([1, 2], b=[1, -1], return_sign=True)
    >>> round(float(r), 6), float(s)
    (1.541325, -1.0)
    """
    arr = np.asarray(a)
    if b is None and not return_sign and _real(arr):
        if arr.ndim == 0:
            arr = arr.reshape(1)
        return _scalar_if_0d(_api.logsumexp(arr, axis=axis, keepdims=keepdims))
    return _logsumexp_reference(arr, axis, b, keepdims, return_sign)


def _logsumexp_reference(a, axis, b, keepdims, return_sign):
    """logsumexp with weights, sign and complex support, in NumPy."""
    if b is not None:
        b = np.asarray(b)
        dt = np.result_type(a, b)
    else:
        dt = a.dtype
    if dt.kind not in "fc":
        dt = np.result_type(dt, np.float64) if dt.kind in "biu" else dt
    a = np.atleast_1d(a).astype(dt, copy=False)
    if b is not None:
        a, b = np.broadcast_arrays(a, np.atleast_1d(b).astype(dt, copy=False))
    axes = _dispatch.normalize_axes(axis, a.ndim)
    kept = [i for i in range(a.ndim) if i not in axes]
    red_shape = tuple(a.shape[i] for i in kept)
    keep_shape = tuple(1 if i in axes else s for i, s in enumerate(a.shape))

    def rows(v):  # reduced axes flattened into the last one
        return np.moveaxis(v, axes, range(-len(axes), 0)).reshape(red_shape + (-1,))

    A = rows(a)
    B = None if b is None else rows(b)
    if A.shape[-1] == 0:
        out = np.full(red_shape, -np.inf, dt)
        sgn = np.sign(out)
    else:
        with np.errstate(all="ignore"):
            out, sgn = _lse_rows(A, B, return_sign)
    if dt.kind == "c":
        if return_sign:
            sgn = sgn.real + 1j * _wrap_phase(sgn.imag)
        else:
            out = out.real + 1j * _wrap_phase(out.imag)
        out = out.astype(dt, copy=False) if not return_sign else out
    if keepdims:
        out = out.reshape(keep_shape)
        sgn = sgn.reshape(keep_shape) if sgn is not None else None
    out = _scalar_if_0d(out)
    if return_sign:
        return out, _scalar_if_0d(sgn)
    return out


def _lse_rows(A, B, return_sign):
    """Stable log|sum B exp(A)| over the last axis, and its sign/phase.

    The term with the largest real part is taken out of the sum and its
    weight m kept apart, so the result is log(m) + a_max + log1p(s/m):
    accurate even when the other terms are far below it.  Where that is
    not finite, the direct log(sum(b exp(a))) decides (C99 rules for
    complex infinities)."""
    direct = np.exp(A) if B is None else B * np.exp(A)
    total = direct.sum(axis=-1)
    sgn_direct = np.sign(total) if return_sign else None
    out_direct = np.log(np.abs(total) if return_sign else total)

    if B is not None:  # a zero weight removes its term, even an inf/NaN one
        A = np.where(B == 0, -np.inf, A)
    re = A.real
    rmax = re.max(axis=-1, keepdims=True)
    pick = np.argmax(re == rmax, axis=-1)[..., None]  # one element of max real part
    a_max = np.take_along_axis(A, pick, axis=-1)
    if A.dtype.kind == "c":
        is_max = np.zeros(A.shape, bool)
        np.put_along_axis(is_max, pick, True, axis=-1)
    else:
        is_max = A == a_max
    w = is_max.astype(A.dtype) if B is None else np.where(is_max, B, 0)
    m = w.sum(axis=-1, keepdims=True)
    terms = np.exp(np.where(is_max, -np.inf, A) - a_max)
    s = (terms if B is None else B * terms).sum(axis=-1, keepdims=True)
    s = np.where(s == 0, s, s / m)
    sgn = np.sign(s + 1) * np.sign(m)
    if A.dtype.kind == "c":
        sgn = sgn * np.exp(1j * a_max.imag)
    else:
        s = np.where(s < -1, -s - 2, s)  # log|1 + s| for s < -1
        m = np.abs(m)
    out = (np.log1p(s) + np.log(m) + a_max)[..., 0]
    sgn = sgn[..., 0]
    if return_sign:
        out = out.real
    elif A.dtype.kind != "c":
        out = np.where(sgn < 0, np.nan, out)
    finite = np.isfinite(out)
    out = np.where(finite, out, out_direct)
    if return_sign:
        sgn = np.where(finite, sgn, sgn_direct)
    return out, sgn


def _wrap_phase(theta):
    """Angles into (-pi, pi], untouched (bit for bit) where already inside."""
    wrapped = -((np.pi - theta) % (2 * np.pi) - np.pi)
    return np.where(np.abs(theta) < np.pi, theta, wrapped)


# ---------------------------------------------------------------------------
# the ufuncs: expit, logit, log_expit

_LOOPS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.longdouble))


def _ufunc_like(name, kernel, x, out, where, casting, dtype):
    a = np.asarray(x)
    if dtype is not None:
        loop = np.dtype(dtype)
        if loop not in _LOOPS:
            raise TypeError(f"No loop matching the specified signature and casting was found for ufunc {name}")
    elif a.dtype in _LOOPS:
        loop = a.dtype.newbyteorder("=")
    elif a.dtype.kind in "biuf":
        loop = np.dtype(np.float64)
    else:
        raise TypeError(
            f"ufunc '{name}' not supported for the input types, and the inputs could not "
            "be safely coerced to any supported types according to the casting rule ''safe''"
        )
    if not np.can_cast(a.dtype, loop, casting=casting):
        raise TypeError(f"Cannot cast ufunc '{name}' input from {a.dtype} to {loop} with casting rule {casting!r}")
    if isinstance(out, tuple):
        if len(out) != 1:
            raise ValueError(f"{name} has 1 output, got {len(out)} in out=")
        out = out[0]
    a = a.astype(loop, copy=False)
    if out is None:
        r = _dispatch.elementwise(kernel, a, None)
        if where is not True:
            raise TypeError(f"{name}: where= needs out= (the result would be uninitialized elsewhere)")
        return _scalar_if_0d(r)
    if not isinstance(out, np.ndarray):
        raise TypeError("return arrays must be of ArrayType")
    if where is True and out.dtype == loop and out.shape == a.shape:
        return _dispatch.elementwise(kernel, a, out)
    r = _dispatch.elementwise(kernel, a, None)
    np.copyto(out, np.broadcast_to(r, out.shape), casting=casting, where=where)
    return out


_UFUNC_DOC = """{summary}

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray or 1-tuple of ndarray, optional
        Where to write the result.
    where : array_like of bool, optional
        With ``out``: write only where True (as a NumPy ufunc).
    casting : str, optional
        Casting rule for the input and ``out`` (default ``"same_kind"``).
    dtype : dtype, optional
        Loop to compute in: float32, float64 or long double.

    Returns
    -------
    ndarray or scalar
        float32 stays float32, long double stays long double, every other
        real type gives float64 (SciPy's loops).

    Examples
    --------
    >>> import numpy as np
    >>> from fastact import special
    >>> {example}
    """


def expit(x: ArrayLike, /, out=None, *, where=True, casting: str = "same_kind", dtype=None):
    return _ufunc_like("expit", "sigmoid", x, out, where, casting, dtype)


def logit(x: ArrayLike, /, out=None, *, where=True, casting: str = "same_kind", dtype=None):
    return _ufunc_like("logit", "logit", x, out, where, casting, dtype)


def log_expit(x: ArrayLike, /, out=None, *, where=True, casting: str = "same_kind", dtype=None):
    return _ufunc_like("log_expit", "log_sigmoid", x, out, where, casting, dtype)


expit.__doc__ = _UFUNC_DOC.format(
    summary="Logistic sigmoid ``1 / (1 + exp(-x))``, as ``scipy.special.expit``.",
    example="special.expit(np.array([-1000.0, 0.0, 1000.0])).tolist()\n    [0.0, 0.5, 1.0]",
)
logit.__doc__ = _UFUNC_DOC.format(
    summary="Log-odds ``log(p / (1 - p))``, as ``scipy.special.logit``.",
    example="special.logit(np.array([0.0, 0.5, 1.0, 2.0])).tolist()\n    [-inf, 0.0, inf, nan]",
)
log_expit.__doc__ = _UFUNC_DOC.format(
    summary="``log(expit(x))``, accurate for large ``|x|``, as ``scipy.special.log_expit``.",
    example="special.log_expit(np.array([-1000.0, 0.0])).tolist()\n    [-1000.0, -0.6931471805599453]",
)
