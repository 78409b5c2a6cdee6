"""Property tests (hypothesis) on every backend: identities that must hold for
any input, not just the ones we thought of."""

import numpy as np
import pytest

import fastact

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

# the backend fixture only selects a backend for the whole test: it needs no
# reset between examples
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def arrays(dtype, lo=-1e3, hi=1e3, min_side=1):
    return hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=min_side, max_side=12),
        elements=st.floats(lo, hi, width=np.dtype(dtype).itemsize * 8),
    )


dtypes = st.sampled_from([np.float32, np.float64])


@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_softmax_sums_to_one_and_is_shift_invariant(backend, data, dtype):
    x = data.draw(arrays(dtype))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    s = fastact.softmax(x, axis=axis)
    eps = np.finfo(dtype).eps
    n = x.shape[axis]
    assert np.all(s >= 0) and np.all(s <= 1)
    np.testing.assert_allclose(s.sum(axis=axis, dtype=np.float64), 1.0, atol=4 * n * eps)
    # shift by a constant exactly representable next to x: results agree to
    # the rounding of x + c itself (condition ~ |x - max| eps per entry)
    c = dtype(64.0)
    xs = x + c
    back = (xs - c)
    if np.array_equal(back, x):
        np.testing.assert_allclose(fastact.softmax(xs, axis=axis), s, rtol=64 * eps, atol=8 * eps)


@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_log_softmax_is_log_of_softmax_and_lse_consistent(backend, data, dtype):
    x = data.draw(arrays(dtype, -30, 30))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    ls = fastact.log_softmax(x, axis=axis)
    s = fastact.softmax(x, axis=axis)
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny
    ok = s > 1e3 * tiny  # where softmax is representable
    n = x.shape[axis]
    np.testing.assert_allclose(np.exp(ls.astype(np.float64))[ok], s[ok], rtol=(16 + 4 * n) * eps * 30)
    lse = fastact.logsumexp(x, axis=axis, keepdims=True)
    np.testing.assert_allclose(ls, x - lse, atol=(8 + 2 * n) * eps * 32)


@SETTINGS
@given(x=arrays(np.float64, -30, 30))
def test_logit_inverts_sigmoid(backend, x):
    s = fastact.sigmoid(x)
    back = fastact.logit(s)
    # sigmoid(x) rounds to 1 eps; its inverse amplifies that by 1/(s (1-s))
    tol = 4 * np.finfo(float).eps / np.maximum(s * (1 - s), 1e-300) * np.maximum(s, 1 - s)
    assert np.all(np.abs(back - x) <= np.maximum(tol, 1e-15 * np.abs(x)))


@SETTINGS
@given(x=arrays(np.float64, -700, 700), dtype=dtypes)
def test_log_sigmoid_softplus_identities(backend, x, dtype):
    x = x.astype(dtype)
    eps = np.finfo(dtype).eps
    # log_sigmoid(x) = -softplus(-x) exactly (same formula), and
    # softplus(x) - softplus(-x) = x
    np.testing.assert_allclose(fastact.log_sigmoid(x), -fastact.softplus(-x, threshold=np.inf),
                               rtol=4 * eps, atol=4 * np.finfo(dtype).tiny)
    d = fastact.softplus(x, threshold=np.inf).astype(np.float64) - fastact.softplus(-x, threshold=np.inf)
    np.testing.assert_allclose(d, x, rtol=8 * eps, atol=8 * eps)


@SETTINGS
@given(data=st.data())
def test_backward_rows_match_jacobian(backend, data):
    y = fastact.softmax(data.draw(arrays(np.float64, -5, 5)))
    g = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-3, 3)))
    J = fastact.softmax_jacobian(y)
    want = np.einsum("...i,...ij->...j", g, J)
    np.testing.assert_allclose(fastact.softmax_backward(g, y), want, rtol=1e-12, atol=1e-14)
