"""Log-domain and saturated-gradient accuracy beyond SciPy and PyTorch, on
every backend (issue: accuracy).  Reference values from mpmath (50 digits)."""

import numpy as np
import pytest

import fastact

mpmath = pytest.importorskip("mpmath")
mpmath.mp.dps = 50


def rel(a, b):
    return abs(float(a) - float(b)) / abs(float(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_keeps_tiny_terms(backend, dtype):
    got = fastact.logsumexp(np.array([0.0, -40.0], dtype))
    want = mpmath.log(1 + mpmath.exp(-40))  # 4.248e-18; PyTorch returns 0.0
    assert rel(got, want) < 4 * np.finfo(dtype).eps
    got = fastact.log_softmax(np.array([40.0, 0.0], dtype))[0]
    assert rel(got, -want) < 4 * np.finfo(dtype).eps  # SciPy and PyTorch return 0


def test_softplus_default_is_exact_threshold_is_pytorch(backend):
    x = np.array([20.5, 30.0, 36.0])
    want = [mpmath.log1p(mpmath.exp(v)) for v in x]
    got = fastact.softplus(x)
    assert max(rel(g, w) for g, w in zip(got, want)) < 2 * np.finfo(float).eps
    np.testing.assert_array_equal(fastact.softplus(x, threshold=20.0), x)  # PyTorch's cut
    assert rel(fastact.softplus(x, threshold=20.0)[0], want[0]) > 5e-11
    np.testing.assert_allclose(fastact.softplus_backward(np.ones(3), x),
                               [float(1 / (1 + mpmath.exp(-v))) for v in x], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gradients_from_x(backend, dtype):
    x = np.array([17.0, 30.0, -17.0, 0.5], dtype)
    g = np.ones_like(x)
    want = [mpmath.exp(-abs(v)) / (1 + mpmath.exp(-abs(v))) ** 2 for v in x]
    from_x = fastact.sigmoid_backward(g, x=x)
    assert max(rel(a, w) for a, w in zip(from_x, want)) < 8 * np.finfo(dtype).eps
    if dtype == np.float32:
        # from y = sigmoid(17) (1 or 1 - 6e-8 in float32), y (1 - y) is 0 or
        # 6e-8: no correct digit
        assert rel(fastact.sigmoid_backward(g, fastact.sigmoid(x))[0], want[0]) > 0.3
    x = np.array([10.0, 20.0, -10.0, 0.3], dtype)
    want = [1 / mpmath.cosh(v) ** 2 for v in x]
    from_x = fastact.tanh_backward(np.ones_like(x), x=x)
    assert max(rel(a, w) for a, w in zip(from_x, want)) < 8 * np.finfo(dtype).eps
    if dtype == np.float32:  # y = tanh(10) is 1 within an ulp: (1-y)(1+y) has no correct digit
        assert rel(fastact.tanh_backward(np.ones_like(x), fastact.tanh(x))[0], want[0]) > 0.3


def test_exactly_one_of_y_or_x(backend):
    with pytest.raises(TypeError):
        fastact.sigmoid_backward([1.0])
    with pytest.raises(TypeError):
        fastact.tanh_backward([1.0], [0.5], x=[0.1])
