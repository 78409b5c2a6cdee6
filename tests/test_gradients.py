"""Every backward kernel against central finite differences of its forward
pass (float64, every backend), for L(x) = sum(g * forward(x))."""

import numpy as np
import pytest
from conftest import KERNELS

import fastact
from fastact import _registry

BACKWARD = [k for k in KERNELS if _registry.KERNELS[k].is_backward]


def _numeric_grad(L, x, h=1e-6):
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        step = h * max(1.0, abs(flat[i]))
        keep = flat[i]
        flat[i] = keep + step
        up = L(x)
        flat[i] = keep - step
        down = L(x)
        flat[i] = keep
        gf[i] = (up - down) / (2 * step)
    return g


def _problem(kernel, axis, reduction="none"):
    """(L, x, analytic gradient at x) for backward kernel `kernel`."""
    k = _registry.KERNELS[kernel]
    f = _registry.KERNELS[k.forward]
    rng = np.random.default_rng(1)
    shape = (3, 5)
    lo, hi = f.domain
    x = rng.uniform(lo, hi, shape)
    if lo == 0.0:
        x = np.clip(x, 0.05, 0.95)
    params = dict(f.params)
    kind = k.kind
    if kind == "elementwise_backward":
        fwd = getattr(fastact, f.api)
        kw = {**dict(f.api_kwargs), **params}
        g = rng.normal(size=shape)

        def L(z):
            return float(np.sum(g * fwd(z, **kw)))

        saved = fwd(x, **kw) if k.saved == "y" else x
        bw = getattr(fastact, k.api)
        if k.saved_kw:
            return L, x, bw(g, **dict(k.api_kwargs), **params, **{k.saved_kw: saved})
        return L, x, bw(g, saved, **dict(k.api_kwargs), **params)
    if kind == "rows_backward":
        fwd = getattr(fastact, f.api)
        g = rng.normal(size=shape)
        return (lambda z: float(np.sum(g * fwd(z, axis=axis)))), x, getattr(fastact, k.api)(g, fwd(x, axis=axis), axis=axis)
    if kind == "rows_reduce_backward":
        lse = fastact.logsumexp(x, axis=axis)
        g = rng.normal(size=lse.shape)
        return (lambda z: float(np.sum(g * fastact.logsumexp(z, axis=axis)))), x, fastact.logsumexp_backward(g, x, lse, axis=axis)
    if kind == "binary_backward":
        t = rng.uniform(size=shape)
        loss = fastact.binary_cross_entropy_with_logits
        grad = 0.7 if reduction != "none" else rng.normal(size=shape)
        red = reduction

        def L(z):
            return float(np.sum(grad * loss(z, t, reduction=red)))

        return L, x, fastact.binary_cross_entropy_with_logits_backward(x, t, grad=grad, reduction=red)
    # cross-entropy, class axis `axis`
    C = shape[axis]
    red_shape = tuple(s for i, s in enumerate(shape) if i != axis % 2)
    if kind == "loss_index_grad":
        t = rng.integers(0, C, size=red_shape)
        t.flat[0] = -100  # one ignored sample
    else:
        t = fastact.softmax(rng.normal(size=shape), axis=axis)
    kw = dict(axis=axis, label_smoothing=0.2, reduction=reduction)
    grad = rng.normal(size=red_shape) if reduction == "none" else 0.7

    def L(z):
        return float(np.sum(grad * fastact.cross_entropy(z, t, **kw)))

    return L, x, fastact.cross_entropy_backward(x, t, grad=grad, **kw)


@pytest.mark.parametrize("kernel", BACKWARD)
@pytest.mark.parametrize("axis", [-1, 0])
def test_backward_matches_finite_differences(backend, kernel, axis):
    kind = _registry.KERNELS[kernel].kind
    if axis == 0 and kind.startswith("elementwise"):
        pytest.skip("elementwise: no axis")
    L, x, analytic = _problem(kernel, axis)
    numeric = _numeric_grad(L, x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kernel", ["cross_entropy_index_grad", "cross_entropy_prob_grad", "bce_with_logits_backward"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_gradients_for_reductions(backend, kernel, reduction):
    L, x, analytic = _problem(kernel, -1, reduction)
    np.testing.assert_allclose(analytic, _numeric_grad(L, x.copy()), rtol=1e-6, atol=1e-8)


def test_fused_cross_entropy_equals_separate_calls(backend):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    t = rng.integers(0, 6, size=8)
    t[2] = 4
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"ignore_index": 4}):
        loss, d = fastact.cross_entropy_with_grad(x, t, **kw)
        np.testing.assert_allclose(loss, fastact.cross_entropy(x, t, **kw), rtol=2e-6)
        np.testing.assert_array_equal(d, fastact.cross_entropy_backward(x, t, **kw))
        assert loss.dtype == d.dtype == np.float32
