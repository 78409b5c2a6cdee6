"""fastact's kernels for your own Numba code.

Every function here is a Numba ``@njit`` function: call it from inside your
own ``@njit`` (or ``parallel=True``) functions, where it compiles into your
loop -- the scalar ones inline and vectorize with it -- or from Python.
They are the same compiled code as fastact's ``"numba"`` backend: float32
stays in float32 (its own polynomials, not float64 ``math.exp``), the
results are those of ``fastact`` within the documented error bound, and
NaN / inf follow ``fastact`` (see ``fastact._registry``).  Importing this
module imports Numba; nothing is compiled until a function is first used
(then cached on disk).

Scalar functions (float32 or float64 in, same type out; integers are taken
as float64):
    ``sigmoid``, ``log_sigmoid``, ``logit``, ``softplus(x, beta, threshold)``,
    ``tanh``, ``relu``, ``leaky_relu(x, negative_slope)``, ``gelu``,
    ``gelu_tanh``, ``silu``, and the building blocks ``exp``, ``log``,
    ``log1p``, ``erfc``.

Row functions, on 1-D float32 or float64 arrays of one dtype (any layout;
C-contiguous rows take the fast paths, others are copied):
    ``softmax_row(x, out)``, ``log_softmax_row(x, out)``,
    ``logsumexp_row(x) -> scalar``, ``softmax_backward_row(grad, y, out)``,
    ``log_softmax_backward_row(grad, y, out)``.
``out`` may be the input itself.  They run on the calling thread (use
``numba.prange`` over rows in your own code to parallelize).  None of SciPy,
PyTorch or JAX offers this.

Example: attention weights with a causal mask, all in one compiled loop.

>>> import numpy as np, numba, fastact.numba as fn
>>> @numba.njit
... def causal_softmax(scores):
...     out = np.empty_like(scores)
...     for i in range(scores.shape[0]):
...         row = scores[i].copy()
...         row[i + 1:] = -np.inf
...         fn.softmax_row(row, out[i])
...     return out
>>> causal_softmax(np.zeros((3, 3))).round(3).tolist()
[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.333, 0.333, 0.333]]

and a scalar activation inside a loop (it vectorizes with the loop):

>>> @numba.njit
... def gated(a, b):
...     out = np.empty_like(a)
...     for i in range(a.size):
...         out[i] = a[i] * fn.sigmoid(b[i])
...     return out
>>> gated(np.ones(2, np.float32), np.zeros(2, np.float32))
array([0.5, 0.5], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from ._backends import numba_jit as _k
from ._backends import numba_math as _m
from ._backends.numba_math import K, always_inline, wide
from ._backends.numba_rows import stack_array as _stack_array

__all__ = [
    "exp", "log", "log1p", "erfc",
    "sigmoid", "log_sigmoid", "logit", "softplus", "tanh", "relu", "leaky_relu",
    "gelu", "gelu_tanh", "silu",
    "softmax_row", "log_softmax_row", "logsumexp_row",
    "softmax_backward_row", "log_softmax_backward_row",
]

_JIT = _m.JIT


@intrinsic
def _float(typingctx, x):
    """x as a float: float32/float64 unchanged, integers and bools as float64."""
    if isinstance(x, types.Float):
        ret = x
    elif isinstance(x, (types.Integer, types.Boolean)):
        ret = types.float64
    else:
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], sig.return_type)

    return ret(x), codegen


# ---------------------------------------------------------------------------
# scalars


@njit(**_JIT)
def exp(x):
    """e**x (<= 1 ULP; overflow inf, underflow through subnormals to 0)."""
    always_inline()
    return _m.exp(_float(x))


@njit(**_JIT)
def log(x):
    """Natural logarithm (<= 1 ULP; log(0) = -inf, negative gives NaN)."""
    always_inline()
    return _m.log(_float(x))


@njit(**_JIT)
def log1p(x):
    """log(1 + x), accurate for tiny x (<= 1 ULP)."""
    always_inline()
    return _m.log1p(_float(x))


@njit(**_JIT)
def erfc(x):
    """Complementary error function, relative accuracy in both tails."""
    always_inline()
    return _m.erfc(_float(x))


@njit(**_JIT)
def sigmoid(x):
    """1 / (1 + exp(-x)), no overflow for any x."""
    always_inline()
    return _k._f_sigmoid(_float(x))


@njit(**_JIT)
def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), accurate for large |x|."""
    always_inline()
    return _k._f_log_sigmoid(_float(x))


@njit(**_JIT)
def logit(p):
    """log(p / (1 - p)); logit(0) = -inf, logit(1) = inf."""
    always_inline()
    return _k._f_logit(_float(p))


@njit(**_JIT)
def softplus(x, beta=1.0, threshold=math.inf):
    """log(1 + exp(beta x)) / beta; x itself where beta x > threshold
    (PyTorch's cut; the default is exact everywhere)."""
    always_inline()
    v = _float(x)
    return _k._f_softplus(v, K(v, beta), K(v, threshold))


@njit(**_JIT)
def tanh(x):
    """Hyperbolic tangent (<= 2 ULP)."""
    always_inline()
    return _m.tanh(_float(x))


@njit(**_JIT)
def relu(x):
    """max(x, 0), NaN for NaN."""
    always_inline()
    return _k._f_relu(_float(x))


@njit(**_JIT)
def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, else negative_slope * x."""
    always_inline()
    v = _float(x)
    return _k._f_leaky_relu(v, K(v, negative_slope))


@njit(**_JIT)
def gelu(x):
    """x * Phi(x), Phi the standard normal CDF (the exact, erf form)."""
    always_inline()
    return _k._f_gelu(_float(x))


@njit(**_JIT)
def gelu_tanh(x):
    """The tanh approximation of GELU, as PyTorch's ``approximate="tanh"``."""
    always_inline()
    return _k._f_gelu_tanh(_float(x))


@njit(**_JIT)
def silu(x):
    """x * sigmoid(x)."""
    always_inline()
    return _k._f_silu(_float(x))


# ---------------------------------------------------------------------------
# rows: an implementation per layout, chosen when Numba types the call


def _check_rows(fname, *arrays):
    for a in arrays:
        if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(a.dtype, types.Float)):
            raise TypingError(f"fastact.numba.{fname} takes 1-D float32/float64 arrays, got {a}")
    if len({a.dtype for a in arrays}) != 1:
        raise TypingError(f"fastact.numba.{fname}: the arrays must share one dtype, got {arrays}")
    return all(a.layout == "C" for a in arrays)


def _stub(name):
    def stub(*args):  # pragma: no cover - typing stub, replaced by its overload
        pass
    stub.__name__ = stub.__qualname__ = "_" + name
    return stub


def _map_row(name, flat):
    """Row function (x, out) running the backend's row kernel ``flat``."""
    stub = _stub(name)

    @overload(stub, jit_options=_JIT)
    def _ov(x, out):
        if _check_rows(name, x, out):
            def impl(x, out):
                if x.size:
                    flat(x, out, x.size, 0, 1)
            return impl

        def impl_copy(x, out):
            xc = np.ascontiguousarray(x)
            oc = np.empty(x.size, xc.dtype)
            if x.size:
                flat(xc, oc, x.size, 0, 1)
            out[:] = oc
        return impl_copy
    return stub


def _map_row2(name, flat):
    """Row function (g, y, out) running the backend's row kernel ``flat``."""
    stub = _stub(name)

    @overload(stub, jit_options=_JIT)
    def _ov(g, y, out):
        if _check_rows(name, g, y, out):
            def impl(g, y, out):
                if y.size:
                    flat(g, y, out, y.size, 0, 1)
            return impl

        def impl_copy(g, y, out):
            gc = np.ascontiguousarray(g)
            yc = np.ascontiguousarray(y)
            oc = np.empty(y.size, yc.dtype)
            if y.size:
                flat(gc, yc, oc, y.size, 0, 1)
            out[:] = oc
        return impl_copy
    return stub


_softmax_row = _map_row("softmax_row", _k._flat_softmax)
_log_softmax_row = _map_row("log_softmax_row", _k._flat_log_softmax)
_softmax_backward_row = _map_row2("softmax_backward_row", _k._flat_softmax_backward)
_log_softmax_backward_row = _map_row2("log_softmax_backward_row", _k._flat_log_softmax_backward)


def _logsumexp_row(x):  # pragma: no cover - typing stub
    pass


@overload(_logsumexp_row, jit_options=_JIT)
def _ov_logsumexp_row(x):
    _check_rows("logsumexp_row", x)

    def impl(x):
        if x.size == 0:
            return _m.KA(x, -math.inf)
        xc = np.ascontiguousarray(x)
        r = _stack_array(1, xc[0])
        _k._flat_logsumexp(xc, r, x.size, 0, 1)
        return r[0]
    return impl


@njit(**_JIT)
def softmax_row(x, out):
    """out = softmax(x) over the 1-D array x (out may be x).

    A row whose maximum is not finite (NaN or +inf in it, or all -inf) is
    NaN, as in ``fastact.softmax``.
    """
    wide()
    _softmax_row(x, out)


@njit(**_JIT)
def log_softmax_row(x, out):
    """out = x - logsumexp(x) over the 1-D array x (out may be x)."""
    wide()
    _log_softmax_row(x, out)


@njit(**_JIT)
def logsumexp_row(x):
    """log(sum(exp(x))) of the 1-D array x, in x's dtype: -inf if x is
    empty or all -inf, +inf with a +inf, NaN with a NaN.  Keeps full relative
    accuracy when the other terms are tiny (logsumexp_row([0, -40]) is
    4.2e-18, not 0)."""
    wide()
    return _logsumexp_row(x)


@njit(**_JIT)
def softmax_backward_row(grad, y, out):
    """out = y * (grad - sum(grad * y)), y = softmax(x) (out may be grad or y)."""
    wide()
    _softmax_backward_row(grad, y, out)


@njit(**_JIT)
def log_softmax_backward_row(grad, y, out):
    """out = grad - exp(y) * sum(grad), y = log_softmax(x) (out may be grad or y)."""
    wide()
    _log_softmax_backward_row(grad, y, out)
