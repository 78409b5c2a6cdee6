"""Public activations, reductions and their backward passes (``fastact.*``).

Each function validates nothing itself: it names its kernel and hands its
arguments to the dispatch layer, which does the checking, promotion and
layout mapping in one place for all of them.

Conventions shared by every function here
-----------------------------------------
* Array-likes are accepted.  float32 and float64 are computed natively and
  keep their dtype; float16 is computed in float32 and returned as float16;
  bool and integer inputs give float64; other float types (long double) are
  computed by the NumPy reference backend.  Complex or non-numeric input
  raises ``TypeError``.
* ``out=``: the result is written there and ``out`` is returned.  It must
  have exactly the result's shape and dtype (else ``ValueError`` naming
  both, raised before anything is written) and may be an input itself, but
  not overlap an input otherwise (``ValueError``, as PyTorch).
* ``axis``: int, tuple of ints, or None (all axes).  A bad axis raises
  ``numpy.exceptions.AxisError``.  A 0-d input is one row of length 1.
* NaN and inf never raise nor warn; see each function's Notes.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

Axis = Union[int, Tuple[int, ...], None]

from . import _dispatch as _d

__all__ = [
    "softmax", "log_softmax", "logsumexp",
    "sigmoid", "log_sigmoid", "logit", "softplus", "tanh",
    "relu", "leaky_relu", "gelu", "silu",
    "softmax_backward", "log_softmax_backward", "logsumexp_backward",
    "sigmoid_backward", "log_sigmoid_backward", "logit_backward",
    "softplus_backward", "tanh_backward", "relu_backward",
    "leaky_relu_backward", "gelu_backward", "silu_backward",
    "softmax_jacobian",
]


# ---------------------------------------------------------------------------
# reductions along an axis


def softmax(x: ArrayLike, axis: Axis = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax along ``axis``: ``exp(x) / sum(exp(x), axis)``, computed stably.

    Parameters
    ----------
    x : array_like
        Input.
    axis : int, tuple of int or None, optional
        Axis or axes the softmax normalizes over (default: the last).
        ``None`` normalizes over the whole array.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        Same shape as ``x``; sums to 1 along ``axis``.

    Notes
    -----
    The row maximum is subtracted before exponentiating, so no input
    overflows (``softmax([1000, 970, 940])`` equals ``softmax([50, 20, -10])``).
    A row containing NaN or +inf, or made only of -inf, is NaN (as in SciPy
    and PyTorch).

    Examples
    --------
    >>> import numpy as np, fastact
    >>> np.round(fastact.softmax([3.0, 1.0, -2.0]), 4)
    array([0.8756, 0.1185, 0.0059])
    >>> fastact.softmax([[1000.0, 0.0], [0.0, 0.0]], axis=0).tolist()
    [[1.0, 0.5], [0.0, 0.5]]
    """
    return _d.rows("softmax", x, axis, out)


def log_softmax(x: ArrayLike, axis: Axis = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Logarithm of :func:`softmax`: ``x - logsumexp(x, axis)``, accurately.

    Parameters
    ----------
    x : array_like
        Input.
    axis : int, tuple of int or None, optional
        Axis or axes to normalize over (default: the last).
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        Same shape as ``x``.

    Notes
    -----
    Computed as ``(x - max) - log1p(sum of the other exp(x - max))``: the
    maximum's own term is kept out of the sum, so entries stay accurate
    where ``softmax`` saturates (``log_softmax([40, 0])[0]`` is
    -4.248e-18, where ``log(softmax)`` gives 0).  With infinite entries it
    is ``x - logsumexp(x)`` in IEEE arithmetic (``[inf, 0]`` gives
    ``[nan, -inf]``, as SciPy); a NaN makes the row NaN.

    Examples
    --------
    >>> import fastact
    >>> fastact.log_softmax([1000.0, 1.0]).tolist()
    [0.0, -999.0]
    >>> float(fastact.log_softmax([40.0, 0.0])[0])
    -4.248354255291589e-18
    """
    return _d.rows("log_softmax", x, axis, out)


def logsumexp(x: ArrayLike, axis: Axis = -1, *, keepdims: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """``log(sum(exp(x), axis))`` without overflow or loss of small terms.

    Parameters
    ----------
    x : array_like
        Input.
    axis : int, tuple of int or None, optional
        Axis or axes to reduce (default: the last).  ``None`` reduces all.
    keepdims : bool, optional
        Keep the reduced axes as length-1 dimensions.
    out : ndarray, optional
        Where to write the (reduced-shape) result.

    Returns
    -------
    ndarray
        ``x``'s shape without the reduced axes (0-d for a full reduction).

    Notes
    -----
    ``m + log1p(sum of exp(x - m) over all but one maximum)``: accurate to
    the last digit even when the result is barely above ``m``
    (``logsumexp([0, -40]) = 4.248e-18``).  All ``-inf`` gives ``-inf``; a
    ``+inf`` gives ``+inf``; NaN gives NaN; an empty reduction gives -inf.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> float(fastact.logsumexp([1000.0, 1000.0]))  # 1000 + log(2)
    1000.6931471805599
    >>> float(fastact.logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    >>> fastact.logsumexp(np.zeros((2, 3)), axis=0, keepdims=True).shape
    (1, 3)
    """
    return _d.reduce_rows("logsumexp", x, axis, keepdims, out)


def softmax_backward(grad: ArrayLike, y: ArrayLike, axis: Axis = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`softmax`.

    Parameters
    ----------
    grad : array_like
        dL/dy, same shape as ``y``.
    y : array_like
        The forward output ``softmax(x, axis)``.
    axis : int, tuple of int or None, optional
        The axis the forward pass used.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``y``).

    Returns
    -------
    ndarray
        dL/dx = ``y * (grad - sum(grad * y, axis))``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> y = fastact.softmax([1.0, 2.0, 3.0])
    >>> g = np.array([1.0, 0.0, 0.0])
    >>> np.allclose(fastact.softmax_backward(g, y), g @ fastact.softmax_jacobian(y))
    True
    """
    return _d.rows_multi("softmax_backward", (grad, y), ("grad", "y"), axis, out)


def log_softmax_backward(grad: ArrayLike, y: ArrayLike, axis: Axis = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`log_softmax`.

    Parameters
    ----------
    grad : array_like
        dL/dy, same shape as ``y``.
    y : array_like
        The forward output ``log_softmax(x, axis)``.
    axis : int, tuple of int or None, optional
        The axis the forward pass used.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``y``).

    Returns
    -------
    ndarray
        dL/dx = ``grad - exp(y) * sum(grad, axis)``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> y = fastact.log_softmax([0.0, 0.0])
    >>> fastact.log_softmax_backward([1.0, 0.0], y).tolist()
    [0.5, -0.5]
    """
    return _d.rows_multi("log_softmax_backward", (grad, y), ("grad", "y"), axis, out)


def logsumexp_backward(grad: ArrayLike, x: ArrayLike, lse: ArrayLike, axis: Axis = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`logsumexp`.

    Parameters
    ----------
    grad : array_like
        dL/d(lse), shaped as the reduced output (``keepdims=False``; the
        ``keepdims=True`` shape is accepted too).
    x : array_like
        The forward input.
    lse : array_like
        The forward output ``logsumexp(x, axis)``, shaped as ``grad``.
    axis : int, tuple of int or None, optional
        The axis the forward pass used.
    out : ndarray, optional
        Where to write dL/dx, shaped as ``x`` (may be ``x``).

    Returns
    -------
    ndarray
        dL/dx = ``grad * exp(x - lse)`` (broadcast along ``axis``), that is
        ``grad * softmax(x, axis)``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> x = np.log([1.0, 3.0])
    >>> np.round(fastact.logsumexp_backward(2.0, x, fastact.logsumexp(x)), 12).tolist()
    [0.5, 1.5]
    """
    return _d.reduce_rows_backward("logsumexp_backward", grad, x, lse, axis, out)


def softmax_jacobian(y: ArrayLike, axis: int = -1) -> np.ndarray:
    """The full Jacobian of :func:`softmax`, ``diag(y) - y y^T``.

    Parameters
    ----------
    y : array_like
        The softmax output.
    axis : int, optional
        The axis softmax normalized over.

    Returns
    -------
    ndarray
        Shape ``(..., n, n)`` where ``...`` are the other axes of ``y`` in
        order and ``n = y.shape[axis]``; ``J[..., i, j] = d y_i / d x_j``.
        Each Jacobian is symmetric and its rows sum to 0.  It is built with
        NumPy on every backend (it is an outer product, bound by writing
        ``n*n`` values); prefer :func:`softmax_backward` for gradients.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> fastact.softmax_jacobian([0.5, 0.5]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    y = _d.asarray(y, "y")
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError("softmax_jacobian takes a single integer axis")
    (ax,) = _d.normalize_axes(axis, y.ndim) or (0,)
    rdt = _d.result_dtype(y)
    cdt = _d.compute_dtype(rdt)
    ym = np.moveaxis(_d.cast(y, cdt).reshape(y.shape or (1,)), ax, -1)
    jac = ym[..., :, None] * -ym[..., None, :]
    i = np.arange(ym.shape[-1])
    jac[..., i, i] += ym
    return jac.astype(rdt, copy=False)


# ---------------------------------------------------------------------------
# elementwise activations


def sigmoid(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``.

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        Values in [0, 1].

    Notes
    -----
    Evaluated as ``1/(1+e)`` for x >= 0 and ``e/(1+e)`` for x < 0 with
    ``e = exp(-|x|)``: nothing overflows and there is no warning for any
    input.  ``sigmoid(-inf) = 0``, ``sigmoid(inf) = 1``.

    Examples
    --------
    >>> import fastact
    >>> fastact.sigmoid([0.0, -1000.0, 1000.0]).tolist()
    [0.5, 0.0, 1.0]
    """
    return _d.elementwise("sigmoid", x, out)


def log_sigmoid(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """``log(sigmoid(x)) = -softplus(-x)``, accurate for large ``|x|``.

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        Values in (-inf, 0].

    Notes
    -----
    ``min(x, 0) - log1p(exp(-|x|))``: equals ``x`` for very negative x and
    ``-exp(-x)`` for large x, with no overflow.

    Examples
    --------
    >>> import fastact
    >>> fastact.log_sigmoid([-1000.0, 0.0]).tolist()
    [-1000.0, -0.6931471805599453]
    """
    return _d.elementwise("log_sigmoid", x, out)


def logit(p: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Log-odds ``log(p / (1 - p))``, the inverse of :func:`sigmoid`.

    Parameters
    ----------
    p : array_like
        Probabilities.
    out : ndarray, optional
        Where to write the result (may be ``p``).

    Returns
    -------
    ndarray
        ``logit(0) = -inf``, ``logit(1) = inf``, NaN outside [0, 1].

    Notes
    -----
    Near p = 1/2 it is evaluated as ``2 atanh(2p - 1)``, which keeps full
    relative accuracy where the log-odds are close to 0.

    Examples
    --------
    >>> import fastact
    >>> fastact.logit([0.0, 0.5, 1.0]).tolist()
    [-inf, 0.0, inf]
    """
    return _d.elementwise("logit", p, out, xname="p")


def _softplus_params(beta, threshold):
    beta = _d.check_scalar(beta, "beta")
    threshold = float("inf") if threshold is None else _d.check_scalar(threshold, "threshold")
    if beta == 0 or beta != beta:
        raise ValueError(f"beta must be a nonzero number, got {beta!r}")
    return beta, threshold


def softplus(x: ArrayLike, *, beta: float = 1.0, threshold: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Softplus ``log(1 + exp(beta x)) / beta``, exact for every x.

    Parameters
    ----------
    x : array_like
        Input.
    beta : float, optional
        Sharpness (nonzero).
    threshold : float or None, optional
        ``None`` (default): the exact function everywhere.  A number gives
        PyTorch's semantics: ``x`` itself where ``beta * x > threshold``.
        PyTorch's default ``threshold=20`` is off by 6e-11 (relative) at
        x = 20.5 in float64; pass ``threshold=20.0`` to reproduce it.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray

    Notes
    -----
    Computed as ``(max(bx, 0) + log1p(exp(-|bx|))) / beta``: no overflow
    and no cancellation.  ``softplus(-inf) = 0``, ``softplus(inf) = inf``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> np.round(fastact.softplus([0.0, 1.0, 30.0]), 4).tolist()
    [0.6931, 1.3133, 30.0]
    """
    return _d.elementwise("softplus", x, out, _softplus_params(beta, threshold))


def tanh(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Hyperbolic tangent.

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        Values in [-1, 1].

    Examples
    --------
    >>> import fastact
    >>> fastact.tanh([0.0, 100.0]).tolist()
    [0.0, 1.0]
    """
    return _d.elementwise("tanh", x, out)


def relu(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Rectified linear unit ``max(x, 0)`` (NaN stays NaN).

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import fastact
    >>> fastact.relu([-2.0, 0.0, 3.0]).tolist()
    [0.0, 0.0, 3.0]
    """
    return _d.elementwise("relu", x, out)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01, *, out: np.ndarray | None = None) -> np.ndarray:
    """Leaky ReLU: ``x`` for x > 0, ``negative_slope * x`` otherwise.

    Parameters
    ----------
    x : array_like
        Input.
    negative_slope : float, optional
        Slope for x <= 0.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import fastact
    >>> fastact.leaky_relu([-2.0, 3.0], 0.1).tolist()
    [-0.2, 3.0]
    """
    slope = _d.check_scalar(negative_slope, "negative_slope")
    return _d.elementwise("leaky_relu", x, out, (slope,))


def _gelu_kernel(approximate):
    if approximate == "none":
        return "gelu"
    if approximate == "tanh":
        return "gelu_tanh"
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x: ArrayLike, *, approximate: str = "none", out: np.ndarray | None = None) -> np.ndarray:
    """Gaussian error linear unit ``x * Phi(x)``.

    Parameters
    ----------
    x : array_like
        Input.
    approximate : {"none", "tanh"}, optional
        ``"none"``: the exact ``x * (1 + erf(x / sqrt 2)) / 2``.
        ``"tanh"``: ``x * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray

    Notes
    -----
    The exact form uses ``erfc(-x / sqrt 2) / 2`` and the tanh form the
    identity ``(1 + tanh u) / 2 = sigmoid(2u)``, so neither cancels for
    x << 0.  ``gelu(-inf) = 0`` and ``gelu(inf) = inf`` (PyTorch gives NaN
    at -inf).

    Examples
    --------
    >>> import numpy as np, fastact
    >>> np.round(fastact.gelu([-1.0, 0.0, 1.0]), 4).tolist()
    [-0.1587, 0.0, 0.8413]
    >>> np.round(fastact.gelu([1.0], approximate="tanh"), 4).tolist()
    [0.8412]
    """
    return _d.elementwise(_gelu_kernel(approximate), x, out)


def silu(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """SiLU (swish) ``x * sigmoid(x)``.

    Parameters
    ----------
    x : array_like
        Input.
    out : ndarray, optional
        Where to write the result (may be ``x``).

    Returns
    -------
    ndarray
        ``silu(-inf) = 0`` (its limit; PyTorch gives NaN), ``silu(inf) = inf``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> np.round(fastact.silu([-1.0, 0.0, 1.0]), 4).tolist()
    [-0.2689, 0.0, 0.7311]
    """
    return _d.elementwise("silu", x, out)


# ---------------------------------------------------------------------------
# elementwise backward passes


def sigmoid_backward(grad: ArrayLike, y: ArrayLike | None = None, *, x: ArrayLike | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`sigmoid`, from its output ``y`` or input ``x``.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    y : array_like, optional
        The forward output ``sigmoid(x)``, same shape as ``grad``.
    x : array_like, optional (keyword)
        The forward input instead of ``y``: give exactly one of the two.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or the saved array).

    Returns
    -------
    ndarray
        ``grad * y * (1 - y)``, or from ``x``: ``grad * sigmoid(x) *
        sigmoid(-x)``.

    Notes
    -----
    The y-form is what a training loop has, but where the sigmoid saturates
    ``1 - y`` has rounded to 0: in float32 it returns 0 for x >= 17, where
    the true derivative is 4.1e-8.  The x-form keeps full relative accuracy
    for every x.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> fastact.sigmoid_backward([1.0], fastact.sigmoid([0.0])).tolist()
    [0.25]
    >>> x = np.float32([17.0])
    >>> fastact.sigmoid_backward([1.0], fastact.sigmoid(x)).tolist()
    [0.0]
    >>> float(fastact.sigmoid_backward(np.float32([1.0]), x=x)[0])  # doctest: +ELLIPSIS
    4.13993...e-08
    """
    s, name = _saved(y, x, "sigmoid_backward")
    return _d.elementwise2(name, grad, s, out, (), ("grad", "y" if x is None else "x"))


def _saved(y, x, kernel):
    """The y-form kernel from y, or its x-form from x (exactly one given)."""
    if (y is None) == (x is None):
        raise TypeError(f"{kernel} takes exactly one of y (the forward output) or x= (the input)")
    return (y, kernel) if x is None else (x, kernel + "_x")


def log_sigmoid_backward(grad: ArrayLike, x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`log_sigmoid`: ``grad * sigmoid(-x)``.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import fastact
    >>> fastact.log_sigmoid_backward([1.0, 1.0], [0.0, -1000.0]).tolist()
    [0.5, 1.0]
    """
    return _d.elementwise2("log_sigmoid_backward", grad, x, out)


def logit_backward(grad: ArrayLike, p: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`logit`: ``grad / (p * (1 - p))``.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    p : array_like
        The forward input, same shape as ``grad``.
    out : ndarray, optional
        Where to write dL/dp (may be ``grad`` or ``p``).

    Returns
    -------
    ndarray
        Infinite at p = 0 and p = 1 (for nonzero grad).

    Examples
    --------
    >>> import fastact
    >>> fastact.logit_backward([1.0], [0.5]).tolist()
    [4.0]
    """
    return _d.elementwise2("logit_backward", grad, p, out, (), ("grad", "p"))


def softplus_backward(grad: ArrayLike, x: ArrayLike, *, beta: float = 1.0, threshold: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`softplus`: ``grad * sigmoid(beta * x)``.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    beta, threshold : float, optional
        As given to :func:`softplus`; past a threshold the derivative is 1.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import fastact
    >>> fastact.softplus_backward([2.0, 2.0], [0.0, 50.0]).tolist()
    [1.0, 2.0]
    """
    return _d.elementwise2(
        "softplus_backward", grad, x, out, _softplus_params(beta, threshold)
    )


def tanh_backward(grad: ArrayLike, y: ArrayLike | None = None, *, x: ArrayLike | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`tanh`, from its output ``y`` or input ``x``.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    y : array_like, optional
        The forward output ``tanh(x)``, same shape as ``grad``.
    x : array_like, optional (keyword)
        The forward input instead of ``y``: give exactly one of the two.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or the saved array).

    Returns
    -------
    ndarray
        ``grad * (1 - y**2)``, evaluated as ``grad * (1 - y) * (1 + y)``;
        from ``x``: ``grad / cosh(x)**2``.

    Notes
    -----
    From ``y`` the result is 0 once tanh has rounded to 1 (x >= 10 in
    float32, where the true derivative is 8.2e-9); the x-form computes
    ``4 e / (1 + e)^2`` with ``e = exp(-2|x|)``, accurate for every x.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> fastact.tanh_backward([1.0], [0.5]).tolist()
    [0.75]
    >>> float(fastact.tanh_backward(np.float32([1.0]), x=np.float32([10.0]))[0])  # doctest: +ELLIPSIS
    8.24461...e-09
    """
    s, name = _saved(y, x, "tanh_backward")
    return _d.elementwise2(name, grad, s, out, (), ("grad", "y" if x is None else "x"))


def relu_backward(grad: ArrayLike, x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`relu`: ``grad`` where x > 0, else 0.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray
        The derivative at x = 0 is taken as 0 (PyTorch's convention); a NaN
        input gives NaN (PyTorch passes ``grad`` through).

    Examples
    --------
    >>> import fastact
    >>> fastact.relu_backward([5.0, 5.0, 5.0], [-1.0, 0.0, 2.0]).tolist()
    [0.0, 0.0, 5.0]
    """
    return _d.elementwise2("relu_backward", grad, x, out)


def leaky_relu_backward(grad: ArrayLike, x: ArrayLike, negative_slope: float = 0.01, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`leaky_relu`.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    negative_slope : float, optional
        As given to :func:`leaky_relu`.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray
        ``grad`` where x > 0, ``negative_slope * grad`` where x <= 0, NaN
        where x is NaN.

    Examples
    --------
    >>> import fastact
    >>> fastact.leaky_relu_backward([1.0, 1.0], [-1.0, 1.0], 0.1).tolist()
    [0.1, 1.0]
    """
    slope = _d.check_scalar(negative_slope, "negative_slope")
    return _d.elementwise2("leaky_relu_backward", grad, x, out, (slope,))


def gelu_backward(grad: ArrayLike, x: ArrayLike, *, approximate: str = "none", out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`gelu`.

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    approximate : {"none", "tanh"}, optional
        As given to :func:`gelu`.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray
        ``grad * (Phi(x) + x phi(x))`` (exact form); 0 at -inf, 1 at inf.

    Examples
    --------
    >>> import fastact
    >>> fastact.gelu_backward([1.0], [0.0]).tolist()
    [0.5]
    """
    return _d.elementwise2(_gelu_kernel(approximate) + "_backward", grad, x, out)


def silu_backward(grad: ArrayLike, x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward pass of :func:`silu`: ``grad * s (1 + x (1 - s))``, s = sigmoid(x).

    Parameters
    ----------
    grad : array_like
        dL/dy.
    x : array_like
        The forward input, same shape as ``grad``.
    out : ndarray, optional
        Where to write dL/dx (may be ``grad`` or ``x``).

    Returns
    -------
    ndarray
        0 at -inf, 1 at inf.

    Examples
    --------
    >>> import fastact
    >>> fastact.silu_backward([1.0], [0.0]).tolist()
    [0.5]
    """
    return _d.elementwise2("silu_backward", grad, x, out)
