"""The 23 worked examples of shared/WORKED_EXAMPLES.md, one test each, run
with fastact's own kernels on every backend (the `backend` fixture).

Printed figures are asserted to their 4 significant digits; identities
exactly or to a few ULP."""

import numpy as np
import pytest

import fastact


def sig4(a, b):
    """a and b agree to 4 significant digits (half a unit in the 4th)."""
    np.testing.assert_allclose(a, b, rtol=5e-4, atol=0)


def ulps(a, b, n, dtype=np.float64):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(a - b) <= n * eps * np.maximum(np.abs(b), np.finfo(dtype).tiny)), (a, b)


# ---------------------------------------------------------------- softmax


def test_01_softmax_3_1_minus2(backend):
    s = fastact.softmax([3.0, 1.0, -2.0])
    sig4(s, [0.8756, 0.1185, 0.005899])
    # the exercise's 0.8759 is a rounding slip: 20.0855 / 22.9391 = 0.8756
    assert abs(s[0] - 0.8759) > 2e-4


def test_02_softmax_5_2_minus1(backend):
    sig4(fastact.softmax([5.0, 2.0, -1.0]), [0.9503, 0.04731, 0.002356])


def test_03_softmax_7_1_2p2_predicts_first_class(backend):
    s = fastact.softmax([7.0, 1.0, 2.2])
    sig4(s, [0.9894, 0.002452, 0.008143])
    assert np.argmax(s) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_04_shift_invariance_with_large_constant(backend, dtype):
    z = np.array([3.0, 1.0, -2.0, 0.5], dtype)
    for c in (1000.0, -1000.0, 1e4):
        shifted = (z.astype(np.float64) + c).astype(dtype)
        with np.errstate(over="ignore"):
            assert not np.isfinite(np.exp(shifted.astype(dtype))).all() or c < 0
        # z + c is rounded in dtype; compare with the softmax of the rounded
        # differences, which is what shift invariance promises
        expect = fastact.softmax((shifted.astype(np.float64) - c).astype(dtype))
        ulps(fastact.softmax(shifted), expect, 8, dtype)


def test_05_softmax_50_20_minus10_and_1000_970_940(backend):
    a = fastact.softmax([50.0, 20.0, -10.0])
    sig4(a[1:], [9.358e-14, 8.757e-27])
    ulps(a[0], 1 - 9.358e-14, 1)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(np.float64(1000.0)))  # exp(1000) overflows...
    b = fastact.softmax([1000.0, 970.0, 940.0])
    np.testing.assert_array_equal(a, b)  # ...but the max-shifted softmax is identical
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(np.float32(88.8))) and np.isfinite(np.exp(np.float32(88.7)))
        assert np.isinf(np.exp(709.8)) and np.isfinite(np.exp(709.7))


def test_06_ratio_of_outputs_is_exp_of_difference(backend):
    z = np.array([1.3, -0.4, 2.2, 0.0])
    s = fastact.softmax(z)
    for i in range(4):
        for j in range(4):
            ulps(s[i] / s[j], np.exp(z[i] - z[j]), 8)


def test_07_jacobian_symmetric_rows_sum_zero_and_backward_is_g_at_J(backend):
    s = fastact.softmax([0.5, -1.0, 2.0, 0.1])
    J = fastact.softmax_jacobian(s)
    np.testing.assert_array_equal(J, np.diag(s) - np.outer(s, s))
    np.testing.assert_array_equal(J, J.T)
    np.testing.assert_allclose(J.sum(axis=1), 0, atol=4 * np.finfo(float).eps)
    g = np.array([0.3, -1.2, 0.7, 2.0])
    np.testing.assert_allclose(fastact.softmax_backward(g, s), g @ J, rtol=1e-14, atol=1e-16)
    # the delta formula ds_i/dz_j = s_i (delta_ij - s_j)
    for i in range(4):
        for j in range(4):
            assert J[i, j] == pytest.approx(s[i] * ((i == j) - s[j]), rel=1e-15, abs=1e-17)


def test_08_two_classes_is_sigmoid_of_difference(backend):
    for z1, z2 in [(0.3, -1.1), (5.0, 2.0), (-4.0, 3.0)]:
        ulps(fastact.softmax([z1, z2])[0], fastact.sigmoid(z1 - z2), 4)
    s32 = fastact.softmax(np.array([36.0, 0.0], np.float32))
    assert s32[0] == np.float32(1.0)  # sigmoid(36) is 1 to float32 precision
    assert fastact.sigmoid(np.float32(36.0)) == np.float32(1.0)
    ulps(fastact.softmax([36.0, 0.0])[0], fastact.sigmoid(36.0), 2)


# ------------------------------------------ sigmoid, logit, tanh, softplus, relu


def test_09_sigmoid_derivative_is_s_minus_s_squared(backend):
    x = np.linspace(-8, 8, 33)
    s = fastact.sigmoid(x)
    d = fastact.sigmoid_backward(np.ones_like(x), s)
    np.testing.assert_allclose(d, s * (1 - s), rtol=1e-15)
    np.testing.assert_allclose(d, s - s ** 2, rtol=1e-12, atol=1e-17)


def test_10_sigmoid_derivative_at_zero_even_and_symmetry(backend):
    assert fastact.sigmoid_backward(1.0, fastact.sigmoid(0.0)) == 0.25
    h = 1e-4  # sigmoid''(0) = 0: the derivative is flat at 0
    dp = fastact.sigmoid_backward(1.0, fastact.sigmoid(h))
    dm = fastact.sigmoid_backward(1.0, fastact.sigmoid(-h))
    assert abs((dp - dm) / (2 * h)) < 1e-12
    x = np.linspace(0.1, 15, 50)
    # from y = sigmoid(x) near 1, 1 - y carries an absolute rounding error of
    # eps/2: the even symmetry holds to that absolute accuracy
    np.testing.assert_allclose(fastact.sigmoid_backward(np.ones_like(x), fastact.sigmoid(-x)),
                               fastact.sigmoid_backward(np.ones_like(x), fastact.sigmoid(x)),
                               rtol=1e-14, atol=np.finfo(float).eps)
    np.testing.assert_allclose(fastact.sigmoid(x) + fastact.sigmoid(-x), 1.0, rtol=0, atol=np.finfo(float).eps)


def test_11_logit_inverts_sigmoid(backend):
    x = np.linspace(-10, 10, 41)
    np.testing.assert_allclose(fastact.logit(fastact.sigmoid(x)), x, rtol=1e-9, atol=1e-15)
    p = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(fastact.sigmoid(fastact.logit(p)), p, rtol=2e-16 * 4)
    np.testing.assert_allclose(fastact.logit(p), np.log(p / (1 - p)), rtol=1e-13, atol=1e-15)


def test_12_tanh_derivative(backend):
    z = np.linspace(-4, 4, 17)
    y = fastact.tanh(z)
    np.testing.assert_allclose(fastact.tanh_backward(np.ones_like(z), y), 1 - y ** 2, rtol=1e-14, atol=1e-16)


def test_13_softplus_and_its_derivative(backend):
    z = np.linspace(-15, 15, 31)
    sp = fastact.softplus(z, threshold=np.inf)
    np.testing.assert_allclose(sp, np.log1p(np.exp(z)), rtol=1e-15)
    np.testing.assert_allclose(fastact.softplus_backward(np.ones_like(z), z, threshold=np.inf),
                               fastact.sigmoid(z), rtol=1e-15)


def test_14_relu_derivative_zero_at_zero(backend):
    z = np.array([-2.0, -1e-30, 0.0, -0.0, 1e-30, 3.0])
    d = fastact.relu_backward(np.ones_like(z), z)
    np.testing.assert_array_equal(d, [0, 0, 0, 0, 1, 1])  # PyTorch: 0 at z = 0


def test_15_dead_relu_gets_zero_weight_gradient(backend):
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 1.0, size=(32, 3))  # positive inputs
    w = np.array([-1.0, -0.5, -2.0])  # every pre-activation negative
    z = X @ w
    assert (z < 0).all()
    dL_dy = rng.normal(size=32)
    dz = fastact.relu_backward(dL_dy, z)
    dw = X.T @ dz
    np.testing.assert_array_equal(dw, 0.0)


# -------------------------------------------- cross-entropy and likelihood


def test_16_cross_entropy_7_1_2p2_class0(backend):
    loss = fastact.cross_entropy([[7.0, 1.0, 2.2]], [0])
    sig4(loss, 0.01065)
    ulps(loss, -fastact.log_softmax([7.0, 1.0, 2.2])[0], 4)
    # -log(0.9894...): log of a rounded value near 1 magnifies its rounding
    np.testing.assert_allclose(loss, -np.log(fastact.softmax([7.0, 1.0, 2.2])[0]), rtol=1e-13)


def test_17_cross_entropy_is_kl_plus_entropy(backend):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 4))
    p = fastact.softmax(rng.normal(size=(5, 4)) * 2)
    q = fastact.softmax(z)
    H = -(p * np.log(p)).sum(axis=1)
    KL = (p * (np.log(p) - np.log(q))).sum(axis=1)
    np.testing.assert_allclose(fastact.cross_entropy(z, p, reduction="none"), KL + H, rtol=1e-13)
    # one-hot targets: entropy 0, mean CE = mean KL = negative mean log-likelihood
    y = np.array([0, 3, 1, 1, 2])
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(fastact.cross_entropy(z, y), fastact.cross_entropy(z, onehot), rtol=1e-15)
    np.testing.assert_allclose(fastact.cross_entropy(z, y), -np.mean(np.log(q[np.arange(5), y])), rtol=1e-14)


def test_18_mean_cross_entropy_gradient(backend):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, size=6)
    g = fastact.cross_entropy_backward(z, y)
    np.testing.assert_allclose(g, (fastact.softmax(z) - np.eye(5)[y]) / 6, rtol=1e-14, atol=1e-17)


# ----------------------------------------------- backpropagation, chain rule


def test_19_one_tanh_neuron(backend):
    x1, x2, w1, w2, b = 0.7, -1.3, 0.4, 0.9, 0.1
    z = w1 * x1 + w2 * x2 + b
    F = fastact.tanh(z)
    dF_dz = fastact.tanh_backward(1.0, F)
    assert dF_dz * x1 == pytest.approx((1 - np.tanh(z) ** 2) * x1, rel=1e-14)
    assert dF_dz * x2 == pytest.approx((1 - np.tanh(z) ** 2) * x2, rel=1e-14)


def _fd(f, v, h=1e-6):
    return (f(v + h) - f(v - h)) / (2 * h)


def test_20_two_sigmoid_layers(backend):
    x, w1, b1, w2, b2 = 0.8, -1.2, 0.3, 2.1, -0.4

    def y_of(w1_):
        return float(fastact.sigmoid(w2 * fastact.sigmoid(w1_ * x + b1) + b2))

    a1 = fastact.sigmoid(w1 * x + b1)
    y = fastact.sigmoid(w2 * a1 + b2)
    dy_dz2 = fastact.sigmoid_backward(1.0, y)
    dy_dz1 = fastact.sigmoid_backward(dy_dz2 * w2, a1)
    dy_dw1 = dy_dz1 * x
    assert dy_dw1 == pytest.approx(y * (1 - y) * w2 * a1 * (1 - a1) * x, rel=1e-14)
    assert dy_dw1 == pytest.approx(_fd(y_of, w1), rel=1e-8)


def test_21_softplus_network_derivative_depends_on_b2(backend):
    x, w1, b1, w2 = 0.5, 1.5, -0.2, -0.7

    def dy_dx(b2):
        z1 = w1 * x + b1
        z2 = w2 * fastact.softplus(z1) + b2
        d_z2 = fastact.softplus_backward(1.0, z2)  # sigmoid(z2)
        return fastact.softplus_backward(d_z2 * w2, z1) * w1  # * sigmoid(z1) * w1

    for b2 in (0.0, 1.0):
        z1 = w1 * x + b1
        z2 = w2 * np.log1p(np.exp(z1)) + b2
        assert dy_dx(b2) == pytest.approx(fastact.sigmoid(z2) * w2 * fastact.sigmoid(z1) * w1, rel=1e-14)

        def y_of(x_, b2=b2):
            return float(fastact.softplus(w2 * fastact.softplus(w1 * x_ + b1) + b2))

        assert dy_dx(b2) == pytest.approx(_fd(y_of, x), rel=1e-8)
    assert abs(dy_dx(0.0) - dy_dx(1.0)) > 1e-3  # the exercise's claim is wrong


def test_22_sum_over_paths(backend):
    # e = e(c, d), c = a + b, d = b + 1: de/dc = 2, de/dd = 3
    de_dc, de_dd, dc_da, dc_db, dd_db = 2.0, 3.0, 1.0, 1.0, 1.0
    de_db = de_dc * dc_db + de_dd * dd_db
    de_da = de_dc * dc_da
    assert (de_db, de_da) == (5.0, 2.0)

    # the same graph pushed through fastact kernels: e = 2 relu(c) + 3 relu(d)
    def e(a, b):
        return 2 * fastact.relu(a + b) + 3 * fastact.relu(b + 1.0)

    a, b = 0.5, 0.25
    grad_c = fastact.relu_backward(2.0, a + b)
    grad_d = fastact.relu_backward(3.0, b + 1.0)
    assert (grad_c + grad_d, grad_c) == (5.0, 2.0)
    assert _fd(lambda v: float(e(a, v)), b) == pytest.approx(5.0, rel=1e-8)
    assert _fd(lambda v: float(e(v, b)), a) == pytest.approx(2.0, rel=1e-8)


def test_23_parameter_count_6_32_32_32_4(backend):
    sizes = [6, 32, 32, 32, 4]
    per_layer = [i * o + o for i, o in zip(sizes, sizes[1:])]
    assert per_layer == [224, 1056, 1056, 132]
    assert sum(per_layer) == 2468
    # and such a network runs forward and backward through fastact
    rng = np.random.default_rng(0)
    Ws = [rng.normal(size=(i, o)) * 0.3 for i, o in zip(sizes, sizes[1:])]
    bs = [np.zeros(o) for o in sizes[1:]]
    assert sum(W.size + b.size for W, b in zip(Ws, bs)) == 2468
    h = rng.normal(size=(10, 6))
    for W, b in zip(Ws[:-1], bs[:-1]):
        h = fastact.gelu(h @ W + b)
    logits = h @ Ws[-1] + bs[-1]
    loss, d = fastact.cross_entropy_with_grad(logits, rng.integers(0, 4, size=10))
    assert logits.shape == d.shape == (10, 4) and np.isfinite(loss)
