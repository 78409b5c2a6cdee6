"""Cross-entropy and binary cross-entropy with logits, forward, backward and
fused, with PyTorch's definitions of ``reduction``, ``label_smoothing`` and
``ignore_index``.  Validation and layout go through ``fastact._dispatch``;
the per-sample math is the registry's loss kernels."""

from __future__ import annotations


import operator

import numpy as np
from numpy.typing import ArrayLike

from . import _dispatch as _d

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class _CE:
    """A validated cross-entropy problem in canonical layout."""

    def __init__(self, logits, target, axis, reduction, label_smoothing, ignore_index):
        _check_reduction(reduction)
        x = _d.asarray(logits, "logits")
        if x.ndim == 0:
            raise ValueError("logits must have at least one dimension (the class axis)")
        if isinstance(axis, (tuple, list)) or axis is None:
            raise TypeError("cross-entropy takes a single integer class axis")
        axes = _d.normalize_axes(axis, x.ndim)
        eps = _d.check_scalar(label_smoothing, "label_smoothing")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        ignore_index = _d.check_scalar(ignore_index, "ignore_index", integer=True)
        t = target if isinstance(target, np.ndarray) else np.asarray(target)
        self.rdt = _d.result_dtype(x)
        cdt = self.cdt = _d.compute_dtype(self.rdt)
        x = _d.cast(x, cdt)
        plan = self.plan = _d.Plan(x, axes)
        C = plan.n
        if C == 0:
            raise ValueError("logits have no classes along the class axis")
        red = plan.reduced_shape()
        if t.dtype.kind in "iu":
            if t.shape != red:
                raise ValueError(
                    f"class-index target has shape {t.shape}; logits of shape {x.shape} "
                    f"with class axis {axis} need target shape {red}"
                )
            lo, hi = (t.min(), t.max()) if t.size else (0, 0)
            if lo < 0 or hi >= C:  # out of range, or ignore_index: look closer
                bad = (t != ignore_index) & ((t < 0) | (t >= C))
                if bad.any():
                    raise IndexError(
                        f"target {t[bad].flat[0]} is out of bounds for {C} classes "
                        f"(and is not ignore_index={ignore_index})"
                    )
            self.index = True
            self.target = plan.canon_reduced(t.astype(np.intp, copy=False))
            self.params = (ignore_index, eps)
            if lo <= ignore_index <= hi:
                self.count = int(np.count_nonzero(t != ignore_index))
            else:
                self.count = t.size
        elif t.dtype.kind == "f" or t.dtype.kind == "b":
            if t.shape != x.shape:
                raise ValueError(
                    f"probability target has shape {t.shape}, but logits have shape {x.shape}"
                )
            self.index = False
            self.target = plan.canon(_d.cast(t, cdt) if t.dtype.kind == "f" else t.astype(cdt))
            self.params = (eps,)
            self.count = plan.outer * plan.inner
        else:
            raise TypeError(
                "target must be integer class indices or a float array of "
                f"probabilities, got dtype {t.dtype}"
            )
        self.x = plan.canon(x)
        self.reduction = reduction
        self.table = _d.table_for(cdt)

    def _kernel(self, grad):
        kind = "cross_entropy_index" if self.index else "cross_entropy_prob"
        return getattr(self.table, kind + ("_grad" if grad else ""))

    def loss(self):
        lc, loss = self.plan.new_reduced(self.cdt)
        self._kernel(False)(self.x, self.target, lc, *self.params)
        return _reduce(loss, self.reduction, self.count, self.rdt)

    def grad(self, grad):
        """(reduced loss, dlogits) for upstream gradient ``grad``."""
        red = self.plan.reduced_shape()
        scale = _scale(grad, self.reduction, self.count, red, self.cdt)
        sc = self.plan.canon_reduced(scale)
        lc, loss = self.plan.new_reduced(self.cdt)
        dc, dx = self.plan.new(self.cdt)
        self._kernel(True)(self.x, self.target, sc, lc, dc, *self.params)
        return _reduce(loss, self.reduction, self.count, self.rdt), dx.astype(self.rdt, copy=False)


def _scale(grad, reduction, count, shape, dt):
    """Per-sample weight of dL/d(loss_i) for the given reduction."""
    g = _d.asarray(grad, "grad")
    if reduction == "none":
        try:
            return np.array(np.broadcast_to(g, shape), dtype=dt, order="C")
        except ValueError:
            raise ValueError(
                f"grad has shape {g.shape}, which does not broadcast to the "
                f"per-sample loss shape {shape}"
            ) from None
    if g.size != 1:
        raise ValueError(f"with reduction={reduction!r} grad must be a scalar, got shape {g.shape}")
    v = g.reshape(()).astype(np.float64)
    if reduction == "mean":
        v = v / count if count else v * np.nan
    return np.full(shape, v, dtype=dt)


def _reduce(loss, reduction, count, rdt):
    if reduction == "none":
        return loss.astype(rdt, copy=False)
    total = loss.sum(dtype=np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / np.float64(count) if count else np.float64(np.nan)
    return np.asarray(total, dtype=rdt)


_CE_PARAMS = """
    logits : array_like
        Unnormalized scores; the classes run along ``axis``.
    target : array_like
        Either integer class indices, shaped as ``logits`` without ``axis``,
        or class probabilities (float), shaped as ``logits``.
    axis : int, optional
        The class axis (default: the last; PyTorch uses 1).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: per-sample losses.  ``"sum"``: their sum.  ``"mean"``:
        the sum divided by the number of samples whose target is not
        ``ignore_index`` (index targets) or by the number of samples
        (probability targets); NaN when that is 0.
    label_smoothing : float, optional
        In [0, 1]: the target becomes ``(1 - eps) * target + eps / C``.
    ignore_index : int, optional
        Index targets equal to it contribute neither loss nor gradient."""


def cross_entropy(logits: ArrayLike, target: ArrayLike, axis: int = -1, *, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100) -> np.ndarray:
    """Cross-entropy between ``softmax(logits)`` and ``target``.

    Parameters
    ----------%(ce_params)s

    Returns
    -------
    ndarray
        0-d for ``"mean"``/``"sum"``, else the per-sample losses.

    Raises
    ------
    IndexError
        If a class index is outside ``[0, C)`` and is not ``ignore_index``.

    Notes
    -----
    Per sample, ``-sum_c q_c log_softmax(logits)_c`` with the smoothed target
    ``q``.  A class with ``q_c = 0`` contributes 0 even where its
    log-probability is -inf.  Matches ``torch.nn.functional.cross_entropy``
    (with ``axis=1``) on finite logits.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> round(float(fastact.cross_entropy([[7.0, 1.0, 2.2]], [0])), 5)
    0.01065
    >>> round(float(fastact.cross_entropy([[0.0, 0.0]], [[0.5, 0.5]])), 4)
    0.6931
    """
    return _CE(logits, target, axis, reduction, label_smoothing, ignore_index).loss()


def cross_entropy_backward(logits: ArrayLike, target: ArrayLike, axis: int = -1, *, grad: ArrayLike = 1.0, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to the logits.

    Parameters
    ----------%(ce_params)s
    grad : float or array_like, optional
        dL/d(loss): a scalar for ``"mean"``/``"sum"``, or an array that
        broadcasts to the per-sample losses for ``"none"``.

    Returns
    -------
    ndarray
        dL/d(logits), shaped as ``logits``: ``scale * (softmax * sum(q) - q)``
        where ``scale`` is ``grad`` divided by the count for ``"mean"``.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> z = np.array([[1.0, 2.0], [0.0, 0.0]])
    >>> g = fastact.cross_entropy_backward(z, [1, 0])
    >>> np.allclose(g, (fastact.softmax(z) - np.eye(2)[[1, 0]]) / 2)
    True
    """
    return _CE(logits, target, axis, reduction, label_smoothing, ignore_index).grad(grad)[1]


def cross_entropy_with_grad(logits: ArrayLike, target: ArrayLike, axis: int = -1, *, grad: ArrayLike = 1.0, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100) -> tuple[np.ndarray, np.ndarray]:
    """Fused :func:`cross_entropy` and :func:`cross_entropy_backward`.

    One pass over the logits computes both the loss and its gradient, which
    is what a training step needs.

    Parameters
    ----------%(ce_params)s
    grad : float or array_like, optional
        dL/d(loss), as in :func:`cross_entropy_backward`.

    Returns
    -------
    loss : ndarray
        As :func:`cross_entropy`.
    dlogits : ndarray
        As :func:`cross_entropy_backward`.

    Examples
    --------
    >>> import numpy as np, fastact
    >>> loss, d = fastact.cross_entropy_with_grad([[0.0, 0.0]], [1])
    >>> round(float(loss), 4), d.tolist()
    (0.6931, [[0.5, -0.5]])
    """
    return _CE(logits, target, axis, reduction, label_smoothing, ignore_index).grad(grad)


# ---------------------------------------------------------------------------
# binary cross-entropy with logits


def _bce_inputs(logits, target, reduction):
    _check_reduction(reduction)
    x = _d.asarray(logits, "logits")
    t = _d.asarray(target, "target")
    _d.check_same_shape(x, t, "logits", "target")
    rdt = _d.result_dtype(x)
    cdt = _d.compute_dtype(rdt)
    x = _d.cast(x, cdt)
    plan = _d.Plan(x, ())
    return plan, plan.canon(x).reshape(-1), plan.canon(_d.cast(t, cdt)).reshape(-1), rdt, cdt


for _f in (cross_entropy, cross_entropy_backward, cross_entropy_with_grad):
    _f.__doc__ = _f.__doc__ % {"ce_params": _CE_PARAMS}
del _f


def binary_cross_entropy_with_logits(logits: ArrayLike, target: ArrayLike, *, reduction: str = "mean") -> np.ndarray:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``target``.

    Parameters
    ----------
    logits : array_like
        Unnormalized log-odds.
    target : array_like
        Targets in [0, 1], same shape as ``logits``.
    reduction : {"mean", "sum", "none"}, optional
        Mean or sum over all elements, or the elementwise losses.

    Returns
    -------
    ndarray
        0-d for ``"mean"``/``"sum"``.

    Notes
    -----
    ``max(x, 0) - x * t + log1p(exp(-|x|))``: never overflows, never takes
    the log of 0.  Infinite logits follow IEEE arithmetic on this formula.

    Examples
    --------
    >>> import fastact
    >>> round(float(fastact.binary_cross_entropy_with_logits([0.0, 100.0], [1.0, 1.0])), 4)
    0.3466
    """
    plan, xc, tc, rdt, cdt = _bce_inputs(logits, target, reduction)
    c, loss = plan.new(cdt)
    _d.table_for(cdt).bce_with_logits(xc, tc, c.reshape(-1))
    return _reduce(loss, reduction, loss.size, rdt)


def binary_cross_entropy_with_logits_backward(logits: ArrayLike, target: ArrayLike, *, grad: ArrayLike = 1.0, reduction: str = "mean") -> np.ndarray:
    """Gradient of :func:`binary_cross_entropy_with_logits` w.r.t. the logits.

    Parameters
    ----------
    logits, target : array_like
        As in the forward pass.
    grad : float or array_like, optional
        dL/d(loss): a scalar for ``"mean"``/``"sum"``, or an array that
        broadcasts to ``logits`` for ``"none"``.
    reduction : {"mean", "sum", "none"}, optional
        As in the forward pass.

    Returns
    -------
    ndarray
        ``grad * (sigmoid(logits) - target)``, divided by the number of
        elements for ``"mean"``.

    Examples
    --------
    >>> import fastact
    >>> fastact.binary_cross_entropy_with_logits_backward([0.0, 0.0], [1.0, 0.0]).tolist()
    [-0.25, 0.25]
    """
    plan, xc, tc, rdt, cdt = _bce_inputs(logits, target, reduction)
    shape = plan.shape
    if reduction == "none":
        g = _scale(grad, "none", 0, shape, cdt)
        scale = 1.0
    else:
        scale = float(_scale(grad, reduction, xc.size, (), np.float64))
    c, dx = plan.new(cdt)
    _d.table_for(cdt).bce_with_logits_backward(xc, tc, c.reshape(-1), scale)
    if reduction == "none":
        dx *= g
    return dx.astype(rdt, copy=False)
