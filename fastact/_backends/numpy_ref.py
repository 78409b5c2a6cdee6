"""The NumPy backend: the reference every other backend is tested against,
and the fallback when no compiled backend is present.

Kernels follow the contract in ``fastact._registry``: canonical C-contiguous
arrays in, every output element written, no warnings.  They are generic over
the floating dtype (float32, float64 and long double).  Row reductions
accumulate in at least float64, so that this backend is a better oracle than
the float32 kernels it checks.
"""

from __future__ import annotations

import functools
import math

import numpy as np

NAME = "numpy"

_SQRT1_2 = 0.7071067811865476  # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2*pi)
_SQRT_2_OVER_PI = 0.7978845608028654  # sqrt(2/pi)
_GELU_C = 0.044715
# Beyond this |x| the x*f(x) activations equal their limits to every digit
# of every supported dtype; using the limit avoids inf*0 (and x**2 overflow).
_BIG = 1e10

_erfc_obj = np.frompyfunc(math.erfc, 1, 1)


def _quiet(f):
    """Run a kernel with floating-point warnings off: overflow to inf and
    log(0) = -inf are the intended IEEE results here."""

    @functools.wraps(f)
    def wrapper(*args):
        with np.errstate(all="ignore"):
            f(*args)

    return wrapper


def _rows(main):
    """A row kernel that also takes ``(outer, n)`` arrays with ``(outer,)``
    reduced ones (inner = 1 left implicit, see ``fastact._registry``):
    ``args[main]`` is a full-shaped one; every array then gets the trailing
    axis back, as a view."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args):
            if args[main].ndim == 2:
                args = tuple(a.reshape(a.shape + (1,)) for a in args)
            f(*args)

        return wrapper

    return deco


def _acc(dtype):
    """Accumulator dtype for sums: at least float64."""
    return np.result_type(dtype, np.float64)


# ---------------------------------------------------------------------------
# scalar math (vectorized over arrays), each formula once


def _sigmoid(x):
    # exp(-|x|) never overflows; the two branches are the same function
    # written so that no intermediate exceeds 1.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _log1pexp_neg_abs(x):
    """log(1 + exp(-|x|)): in (0, log 2], no overflow, no cancellation."""
    return np.log1p(np.exp(-np.abs(x)))


def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): both terms are >= 0, so no
    # cancellation, and exp never overflows.
    return np.maximum(x, 0) + _log1pexp_neg_abs(x)


def _ndtr(x):
    """Standard normal CDF through erfc, which keeps full relative accuracy in
    the lower tail where 1 + erf(x) would cancel."""
    t = (-x * _SQRT1_2).astype(np.float64)
    return _erfc_obj(t).astype(x.dtype) * x.dtype.type(0.5)


def _ndtr_pdf(x):
    return np.exp(-0.5 * x * x) * x.dtype.type(_INV_SQRT_2PI)


def _gelu_tanh_arg(x):
    """2u with u = sqrt(2/pi) (x + 0.044715 x^3): gelu_tanh = x sigmoid(2u),
    since (1 + tanh u)/2 = sigmoid(2u) (no cancellation for x << 0)."""
    return 2 * _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)


def _limit(x, value, lo, hi):
    """Replace value where |x| > _BIG (NaN stays NaN) by lo (x < 0) / hi."""
    return np.where(x < -_BIG, lo, np.where(x > _BIG, hi, value)).astype(x.dtype, copy=False)


def _nan_if_nan(x, value):
    return np.where(np.isnan(x), x, value)


# ---------------------------------------------------------------------------
# elementwise forward


@_quiet
def sigmoid(x, out):
    out[...] = _sigmoid(x)


@_quiet
def log_sigmoid(x, out):
    # -softplus(-x) = min(x, 0) - log(1 + e^-|x|)
    out[...] = np.minimum(x, 0) - _log1pexp_neg_abs(x)


@_quiet
def logit(x, out):
    # Near p = 1/2 the quotient p/(1-p) is close to 1 and log() would lose
    # relative accuracy; 2 atanh(2p - 1) is the same function and 2p - 1 is
    # exact there.  Away from 1/2, log(p / (1-p)) is accurate (1 - p is exact
    # for p >= 1/2, and p/(1-p) is far from 1).  p = 0, 1 give -inf, inf;
    # p outside [0, 1] gives NaN.
    near = np.abs(x - 0.5) < 0.25
    out[...] = np.where(near, 2 * np.arctanh(2 * x - 1), np.log(x / (1 - x)))


@_quiet
def softplus(x, out, beta, threshold):
    # PyTorch: x where beta*x > threshold, else log(1 + exp(beta x)) / beta,
    # here in the overflow-free form.
    bx = x * x.dtype.type(beta)
    out[...] = np.where(bx > threshold, x, _softplus(bx) / x.dtype.type(beta))


@_quiet
def tanh(x, out):
    np.tanh(x, out=out)


@_quiet
def relu(x, out):
    out[...] = np.where(x > 0, x, _nan_if_nan(x, 0)).astype(x.dtype, copy=False)


@_quiet
def leaky_relu(x, out, negative_slope):
    out[...] = np.where(x > 0, x, x * x.dtype.type(negative_slope))


@_quiet
def gelu(x, out):
    # x * Phi(x); the limit at -inf is 0 (x * Phi(x) would be -inf * 0).
    out[...] = _limit(x, x * _ndtr(x), x.dtype.type(-0.0), x)


@_quiet
def gelu_tanh(x, out):
    out[...] = _limit(x, x * _sigmoid(_gelu_tanh_arg(x)), x.dtype.type(-0.0), x)


@_quiet
def silu(x, out):
    out[...] = _limit(x, x * _sigmoid(x), x.dtype.type(-0.0), x)


# ---------------------------------------------------------------------------
# elementwise backward


@_quiet
def sigmoid_backward(grad, y, out):
    out[...] = grad * y * (1 - y)


@_quiet
def sigmoid_backward_x(grad, x, out):
    # sigmoid(x) sigmoid(-x) = e / (1 + e)^2 with e = exp(-|x|): no 1 - y
    # cancellation, so it keeps full relative accuracy where sigmoid
    # saturates, and e never overflows.
    e = np.exp(-np.abs(x))
    out[...] = grad * (e / ((1 + e) * (1 + e)))


@_quiet
def tanh_backward_x(grad, x, out):
    # 1 / cosh(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|): exact-relative for
    # large |x| where 1 - tanh(x)^2 would be 0, and no overflow.
    e = np.exp(-2 * np.abs(x))
    out[...] = grad * (4 * e / ((1 + e) * (1 + e)))


@_quiet
def log_sigmoid_backward(grad, x, out):
    out[...] = grad * _sigmoid(-x)


@_quiet
def logit_backward(grad, p, out):
    out[...] = grad / (p * (1 - p))


@_quiet
def softplus_backward(grad, x, out, beta, threshold):
    bx = x * x.dtype.type(beta)
    out[...] = np.where(bx > threshold, grad, grad * _sigmoid(bx))


@_quiet
def tanh_backward(grad, y, out):
    # (1 - y)(1 + y) rather than 1 - y^2: 1 - y is exact for y near 1.
    out[...] = grad * ((1 - y) * (1 + y))


@_quiet
def relu_backward(grad, x, out):
    # derivative 0 at x == 0 (PyTorch's convention); NaN input gives NaN
    out[...] = np.where(x > 0, grad, _nan_if_nan(x, 0)).astype(x.dtype, copy=False)


@_quiet
def leaky_relu_backward(grad, x, out, negative_slope):
    out[...] = np.where(x > 0, grad, _nan_if_nan(x, grad * x.dtype.type(negative_slope)))


@_quiet
def gelu_backward(grad, x, out):
    d = _ndtr(x) + x * _ndtr_pdf(x)
    out[...] = grad * _limit(x, d, 0, 1)


@_quiet
def gelu_tanh_backward(grad, x, out):
    z = _gelu_tanh_arg(x)
    s, sc = _sigmoid(z), _sigmoid(-z)  # s * sc = s(1-s) without cancellation
    dz = 2 * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
    out[...] = grad * _limit(x, s + x * s * sc * dz, 0, 1)


@_quiet
def silu_backward(grad, x, out):
    s, sc = _sigmoid(x), _sigmoid(-x)
    out[...] = grad * _limit(x, s + x * s * sc, 0, 1)


# ---------------------------------------------------------------------------
# rows: (outer, n, inner), reduced over axis 1


def _row_parts(x):
    """Max-shifted pieces of a row: m, finite(m), x - m, and
    rest = sum over all but one maximum of exp(x - m).

    The maximum's own term (exactly 1) is kept out of the sum so that
    log(1 + rest) can be formed with log1p: log-sum-exp then keeps full
    relative accuracy when the other terms are tiny (logsumexp([0, -40])
    is 4.2e-18, not 0).  A NaN anywhere makes the sum NaN: x == m is false
    for it, so it is never the excluded term.
    """
    m = x.max(axis=1, keepdims=True)
    ok = np.isfinite(m)
    d = x - np.where(ok, m, 0)
    t = np.exp(d)
    is_max = x == m
    acc = _acc(x.dtype)
    rest = np.where(is_max, 0, t).sum(axis=1, keepdims=True, dtype=acc)
    rest += is_max.sum(axis=1, keepdims=True) - 1
    return m, ok, d, t, rest


@_rows(0)
@_quiet
def softmax(x, out):
    if x.shape[1] == 0:
        return
    m, ok, d, t, rest = _row_parts(x)
    out[...] = np.where(ok, t / (1 + rest), np.nan)


@_rows(0)
@_quiet
def log_softmax(x, out):
    if x.shape[1] == 0:
        return
    m, ok, d, t, rest = _row_parts(x)
    out[...] = np.where(ok, d - np.log1p(rest), x - m)


def _logsumexp_keepdims(x):
    if x.shape[1] == 0:
        return np.full(x.shape[:1] + (1,) + x.shape[2:], -np.inf, x.dtype)
    m, ok, d, t, rest = _row_parts(x)
    return np.where(ok, m + np.log1p(rest), m).astype(x.dtype, copy=False)


@_rows(0)
@_quiet
def logsumexp(x, out):
    out[...] = _logsumexp_keepdims(x)[:, 0, :]


@_rows(1)
@_quiet
def softmax_backward(grad, y, out):
    dot = (grad * y).sum(axis=1, keepdims=True, dtype=_acc(y.dtype))
    out[...] = y * (grad - dot.astype(y.dtype))


@_rows(1)
@_quiet
def log_softmax_backward(grad, y, out):
    total = grad.sum(axis=1, keepdims=True, dtype=_acc(y.dtype))
    out[...] = grad - np.exp(y) * total.astype(y.dtype)


@_rows(1)
@_quiet
def logsumexp_backward(grad, x, lse, out):
    out[...] = grad[:, None, :] * np.exp(x - lse[:, None, :])


# ---------------------------------------------------------------------------
# losses


@_quiet
def bce_with_logits(x, target, out):
    # -[t log s(x) + (1-t) log(1-s(x))] = max(x,0) - x t + log(1 + e^-|x|)
    out[...] = np.maximum(x, 0) - x * target + _log1pexp_neg_abs(x)


@_quiet
def bce_with_logits_backward(x, target, out, scale):
    out[...] = x.dtype.type(scale) * (_sigmoid(x) - target)


def _softmax_of(x):
    p = np.empty_like(x)
    softmax(x, p)
    return p


def _log_softmax_of(x):
    lp = np.empty_like(x)
    log_softmax(x, lp)
    return lp


def _smoothed_onehot(x, target, valid, eps):
    C = x.shape[1]
    q = np.zeros(x.shape, x.dtype)
    t = np.where(valid, target, 0)
    np.put_along_axis(q, t[:, None, :], 1 - eps, axis=1)
    return q + x.dtype.type(eps / C) if eps else q


def _loss_from_q(x, q):
    # -sum_c q_c log p_c with 0 * log 0 = 0 (as xlogy): a class the target
    # gives no weight cannot make the loss NaN.
    lp = _log_softmax_of(x)
    terms = np.where(q == 0, 0, q * lp)
    return -terms.sum(axis=1, dtype=_acc(x.dtype)).astype(x.dtype)


@_quiet
def _ce_index(x, target, scale, loss, dx, ignore_index, label_smoothing):
    valid = target != ignore_index
    q = _smoothed_onehot(x, target, valid, label_smoothing)
    loss[...] = np.where(valid, _loss_from_q(x, q), 0)
    if dx is not None:
        g = scale[:, None, :] * (_softmax_of(x) - q)
        dx[...] = np.where(valid[:, None, :], g, 0)


def cross_entropy_index(x, target, loss, ignore_index, label_smoothing):
    _ce_index(x, target, None, loss, None, ignore_index, label_smoothing)


def cross_entropy_index_grad(x, target, scale, loss, dx, ignore_index, label_smoothing):
    _ce_index(x, target, scale, loss, dx, ignore_index, label_smoothing)


@_quiet
def _ce_prob(x, p, scale, loss, dx, label_smoothing):
    eps = label_smoothing
    q = (1 - eps) * p + x.dtype.type(eps / x.shape[1]) if eps else p
    loss[...] = _loss_from_q(x, q)
    if dx is not None:
        qsum = q.sum(axis=1, keepdims=True, dtype=_acc(x.dtype)).astype(x.dtype)
        dx[...] = scale[:, None, :] * (_softmax_of(x) * qsum - q)


def cross_entropy_prob(x, p, loss, label_smoothing):
    _ce_prob(x, p, None, loss, None, label_smoothing)


def cross_entropy_prob_grad(x, p, scale, loss, dx, label_smoothing):
    _ce_prob(x, p, scale, loss, dx, label_smoothing)


# ---------------------------------------------------------------------------
# elementwise kernels take arrays of any shape as flat (see fastact._registry);
# the formulas above are written for 1-D arrays (on 0-d ones NumPy returns
# scalars)


def _flat(f):
    @functools.wraps(f)
    def wrapper(*args):
        if args[0].ndim != 1:
            args = tuple(a.reshape(-1) if isinstance(a, np.ndarray) else a for a in args)
        f(*args)

    return wrapper


def _flatten_elementwise():
    from .._registry import KERNELS

    g = globals()
    for k in KERNELS.values():
        if k.kind in ("elementwise", "elementwise_backward", "binary", "binary_backward"):
            g[k.name] = _flat(g[k.name])


_flatten_elementwise()
