"""The API contract of shared/API.md that is not per-kernel math: dtype rules,
axes, array-likes, errors (with nothing written), backends and threads."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from numpy.exceptions import AxisError

import fastact
from fastact import _registry
from fastact import testing as ft


def _public_functions():
    names = sorted({k.api for k in _registry.KERNELS.values()})
    return names + ["softmax_jacobian", "cross_entropy_with_grad"]


def test_every_api_md_name_exists():
    api_md = [
        "softmax", "log_softmax", "logsumexp", "sigmoid", "log_sigmoid", "logit",
        "softplus", "tanh", "relu", "leaky_relu", "gelu", "silu", "cross_entropy",
        "binary_cross_entropy_with_logits", "softmax_backward", "log_softmax_backward",
        "logsumexp_backward", "sigmoid_backward", "log_sigmoid_backward", "logit_backward",
        "softplus_backward", "tanh_backward", "relu_backward", "leaky_relu_backward",
        "gelu_backward", "silu_backward", "cross_entropy_backward",
        "binary_cross_entropy_with_logits_backward", "softmax_jacobian",
        "cross_entropy_with_grad", "backends", "get_backend", "set_backend",
        "use_backend", "set_num_threads", "get_num_threads",
    ]
    missing = [n for n in api_md if not callable(getattr(fastact, n, None))]
    assert not missing
    assert set(api_md) <= set(fastact.__all__)
    assert set(_public_functions()) <= set(api_md)


def test_every_public_function_has_a_docstring_example():
    for name in _public_functions():
        doc = getattr(fastact, name).__doc__
        assert doc and ">>> " in doc and "Examples" in doc, name


# ---------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("kernel", list(_registry.KERNELS))
def test_dtype_rules(backend, kernel):
    c32 = ft.case(kernel, (3, 6), np.float32, -1)
    r32 = ft.run(c32)
    assert r32.dtype == np.float32
    # float16 computes in float32 and returns float16
    def to(dt):
        return lambda a: a.astype(dt) if a.dtype.kind == "f" else a
    c16 = c32.map(to(np.float16))
    r16 = ft.run(c16)
    assert r16.dtype == np.float16
    r16_via32 = ft.run(c16.map(to(np.float32)))
    np.testing.assert_array_equal(r16, r16_via32.astype(np.float16))


@pytest.mark.parametrize("func", ["softmax", "log_softmax", "logsumexp", "sigmoid", "log_sigmoid",
                                  "softplus", "tanh", "relu", "leaky_relu", "gelu", "silu", "logit"])
def test_ints_bools_lists_and_scalars_give_float64(backend, func):
    f = getattr(fastact, func)
    ints = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int8)
    r = f(ints)
    assert r.dtype == np.float64
    np.testing.assert_array_equal(r, f(ints.astype(np.float64)))
    assert f(ints.astype(bool)).dtype == np.float64
    np.testing.assert_array_equal(f([[0, 1, 2], [3, 4, 5]]), r)
    s = f(0.25)
    assert isinstance(s, np.ndarray) and s.dtype == np.float64


def test_longdouble_goes_through_reference(backend):
    x = np.linspace(-3, 3, 7).astype(np.longdouble)
    r = fastact.softmax(x)
    assert r.dtype == np.longdouble
    with fastact.use_backend("numpy"):
        np.testing.assert_array_equal(r, fastact.softmax(x))


def test_complex_and_non_numeric_raise_type_error(backend):
    for bad in (np.ones(3, complex), np.array(["a", "b"]), np.array([1, None], object), None, "text"):
        with pytest.raises(TypeError):
            fastact.softmax(bad)
        with pytest.raises(TypeError):
            fastact.sigmoid(bad)
    with pytest.raises(TypeError):
        fastact.softmax_backward(np.ones(3), np.ones(3, complex))


# ---------------------------------------------------------------------------
# axes


def test_axis_variants_agree_with_moved_axis(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5))
    for axis in (0, 1, 2, -1, -2, -3):
        moved = np.moveaxis(x, axis, -1)
        np.testing.assert_allclose(np.moveaxis(fastact.softmax(x, axis=axis), axis, -1),
                                   fastact.softmax(moved), rtol=1e-14)
        np.testing.assert_allclose(fastact.logsumexp(x, axis=axis), fastact.logsumexp(moved), rtol=1e-14)
    np.testing.assert_allclose(fastact.softmax(x, axis=None).sum(), 1.0)
    np.testing.assert_allclose(fastact.softmax(x, axis=(0, 2)).sum(axis=(0, 2)), np.ones(4))
    np.testing.assert_allclose(fastact.logsumexp(x, axis=(0, 2)),
                               np.log(np.exp(x).sum(axis=(0, 2))), rtol=1e-14)
    np.testing.assert_allclose(fastact.logsumexp(x, axis=(2, 0)), fastact.logsumexp(x, axis=[0, 2]))
    assert fastact.logsumexp(x, axis=1, keepdims=True).shape == (3, 1, 5)
    assert fastact.logsumexp(x, axis=None).shape == ()
    np.testing.assert_array_equal(fastact.logsumexp(x, axis=()), x)
    np.testing.assert_array_equal(fastact.softmax(x, axis=()), np.ones_like(x))


def test_zero_d_is_one_row(backend):
    for axis in (-1, 0, None, ()):
        assert fastact.softmax(np.float64(3.0), axis=axis) == 1.0
        assert fastact.log_softmax(3.0, axis=axis) == 0.0
        assert fastact.logsumexp(3.0, axis=axis) == 3.0
    with pytest.raises(AxisError):
        fastact.softmax(3.0, axis=1)


@pytest.mark.parametrize("func", ["softmax", "log_softmax", "logsumexp"])
def test_bad_axis(backend, func):
    f = getattr(fastact, func)
    x = np.ones((2, 3))
    for axis in (2, -3, (0, 2)):
        with pytest.raises(AxisError):
            f(x, axis=axis)
    with pytest.raises(ValueError, match="duplicate"):
        f(x, axis=(1, -1))
    for axis in (1.0, "0", [[0]]):
        with pytest.raises(TypeError):
            f(x, axis=axis)


def test_backward_shape_mismatch_raises_and_writes_nothing(backend):
    out = np.full((2, 3), 7.0)
    with pytest.raises(ValueError, match="shape"):
        fastact.softmax_backward(np.ones((2, 4)), np.ones((2, 3)), out=out)
    with pytest.raises(ValueError, match="shape"):
        fastact.sigmoid_backward(np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        fastact.logsumexp_backward(np.ones(3), np.ones((2, 3)), np.ones(2))
    assert (out == 7.0).all()


def test_parameter_errors(backend):
    with pytest.raises(ValueError, match="approximate"):
        fastact.gelu([1.0], approximate="erf")
    with pytest.raises(ValueError, match="beta"):
        fastact.softplus([1.0], beta=0.0)
    with pytest.raises(TypeError):
        fastact.leaky_relu([1.0], negative_slope="a")


# ---------------------------------------------------------------------------
# losses: errors


def test_cross_entropy_errors(backend):
    x = np.zeros((4, 3))
    with pytest.raises(IndexError, match="out of bounds"):
        fastact.cross_entropy(x, [0, 1, 3, 0])
    with pytest.raises(IndexError):
        fastact.cross_entropy(x, [0, -1, 2, 0])
    fastact.cross_entropy(x, [0, -100, 2, 0])  # ignore_index is fine
    with pytest.raises(ValueError, match="shape"):
        fastact.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="shape"):
        fastact.cross_entropy(x, np.ones((4, 2)) / 2)
    with pytest.raises(TypeError):
        fastact.cross_entropy(x, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="reduction"):
        fastact.cross_entropy(x, [0, 1, 2, 0], reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        fastact.cross_entropy(x, [0, 1, 2, 0], label_smoothing=1.5)
    with pytest.raises(ValueError):
        fastact.cross_entropy(np.zeros((4, 0)), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="scalar"):
        fastact.cross_entropy_backward(x, [0, 1, 2, 0], grad=np.ones(4))
    with pytest.raises(ValueError, match="broadcast"):
        fastact.cross_entropy_backward(x, [0, 1, 2, 0], grad=np.ones(3), reduction="none")


def test_cross_entropy_reductions_follow_pytorch_definitions(backend):
    x = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0]])
    t = np.array([0, -100, 2])
    per = fastact.cross_entropy(x, t, reduction="none")
    assert per[1] == 0.0
    np.testing.assert_allclose(fastact.cross_entropy(x, t, reduction="sum"), per.sum())
    np.testing.assert_allclose(fastact.cross_entropy(x, t), per.sum() / 2)  # 2 not ignored
    assert np.isnan(fastact.cross_entropy(x, [-100, -100, -100]))  # 0 / 0, as PyTorch
    # label smoothing: (1 - eps) * nll + eps * mean over classes of -log p
    lp = fastact.log_softmax(x)
    eps = 0.3
    want = -(1 - eps) * lp[[0, 2], [0, 2]] - eps * lp[[0, 2]].mean(axis=1)
    np.testing.assert_allclose(fastact.cross_entropy(x, t, reduction="none", label_smoothing=eps)[[0, 2]], want)
    # a zero-probability class contributes 0 even at -inf logit
    z = np.array([[-np.inf, 0.0]])
    assert fastact.cross_entropy(z, [[0.0, 1.0]]) == 0.0
    # class axis other than the last (PyTorch's (N, C, d) layout with axis=1)
    x3 = np.random.default_rng(0).normal(size=(2, 4, 3))
    t3 = np.array([[0, 1, 3], [2, 2, 0]])
    np.testing.assert_allclose(fastact.cross_entropy(x3, t3, axis=1, reduction="none"),
                               fastact.cross_entropy(np.moveaxis(x3, 1, -1), t3, reduction="none"))


# ---------------------------------------------------------------------------
# backends


def test_backends_listing():
    bs = fastact.backends()
    assert bs[-1] == "numpy"
    assert list(bs) == [b for b in ("cython", "numba", "numpy") if b in bs]
    status = fastact.backend_status()
    assert set(status) == {"cython", "numba", "numpy"}
    for name, why in status.items():
        assert (why is None) == (name in bs)
        if why is not None:
            assert isinstance(why, str) and why


def test_default_backend_is_fastest_present():
    code = "import fastact; print(fastact.get_backend(), fastact.backends()[0])"
    env = {k: v for k, v in os.environ.items() if k != "FASTACT_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    got, fastest = out.stdout.split()
    assert got == fastest


def test_set_and_use_backend():
    before = fastact.get_backend()
    try:
        fastact.set_backend("numpy")
        assert fastact.get_backend() == "numpy"
        for b in fastact.backends():
            with fastact.use_backend(b):
                assert fastact.get_backend() == b
            assert fastact.get_backend() == "numpy"
    finally:
        fastact.set_backend(before)
    with pytest.raises(ValueError, match="unknown backend"):
        fastact.set_backend("cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        with fastact.use_backend("torch"):
            pass
    for name, why in fastact.backend_status().items():
        if why is not None:
            with pytest.raises(ValueError, match="not available"):
                fastact.set_backend(name)
    assert fastact.get_backend() == before


def test_use_backend_is_local_to_a_thread():
    seen = {}
    ready, done = threading.Event(), threading.Event()

    def other():
        ready.wait()
        seen["other"] = fastact.get_backend()
        done.set()

    t = threading.Thread(target=other)
    t.start()
    default = fastact.get_backend()
    with fastact.use_backend("numpy"):
        ready.set()
        done.wait()
        assert fastact.get_backend() == "numpy"
    t.join()
    assert seen["other"] == default


def test_environment_variables():
    env = dict(os.environ, FASTACT_BACKEND="numpy", FASTACT_NUM_THREADS="3")
    code = "import fastact; print(fastact.get_backend(), fastact.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["numpy", "3"]
    env["FASTACT_BACKEND"] = "nonsense"
    code = "import fastact\ntry:\n    fastact.softmax([1.0])\nexcept ValueError as e:\n    print('ValueError', e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.startswith("ValueError unknown backend 'nonsense'")


def test_threads_setting():
    n = fastact.get_num_threads()
    try:
        fastact.set_num_threads(1)
        assert fastact.get_num_threads() == 1
        fastact.set_num_threads(np.int64(2))
        assert fastact.get_num_threads() == 2
        for bad in (0, -1):
            with pytest.raises(ValueError):
                fastact.set_num_threads(bad)
        for bad in (1.5, "2", None, True):
            with pytest.raises(TypeError):
                fastact.set_num_threads(bad)
        assert fastact.get_num_threads() == 2
    finally:
        fastact.set_num_threads(n)


def test_import_does_not_load_numba_or_compile():
    code = "import sys, fastact; fastact.sigmoid([1.0]) if False else None; print('numba' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "FASTACT_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kernel", list(_registry.KERNELS))
def test_concurrent_calls_match_serial(backend, kernel):
    """8 Python threads calling a kernel at once get the same bits as serial
    calls (small arrays take the single-threaded paths, the large one may
    start the backend's own threads)."""
    cases = [ft.case(kernel, shape, np.float32, -1, seed=i)
             for i, shape in enumerate([(64, 257)] * 7 + [(512, 1024)])]
    serial = [ft.run(c) for c in cases]
    results = [None] * len(cases)

    def work(i):
        with fastact.use_backend(backend):
            for _ in range(5):
                results[i] = ft.run(cases[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for a, b in zip(results, serial):
        np.testing.assert_array_equal(a, b)


def test_process_pools_fork_and_spawn_with_every_backend():
    import multiprocessing as mp

    x = np.random.default_rng(0).normal(size=(1024, 513)).astype(np.float32)
    for method in ("fork", "spawn"):
        if method not in mp.get_all_start_methods():
            continue
        for b in fastact.backends():
            with fastact.use_backend(b):
                want = fastact.softmax(x)  # the parent has run (and cached) the kernel
            with mp.get_context(method).Pool(2) as pool:
                got = pool.starmap(_child_run, [(b, x), (b, x)])
            for r in got:
                np.testing.assert_array_equal(r, want)


def _child_run(backend, x):
    with fastact.use_backend(backend):
        return fastact.softmax(x)


def test_floating_point_environment_unchanged_after_every_kernel():
    """No backend turns on flush-to-zero or changes rounding (a build linked
    with -ffast-math would, for the whole process)."""
    code = """
import numpy as np, fastact
from fastact import _registry, testing as ft
tiny = np.float64(5e-324)
for b in fastact.backends():
    with fastact.use_backend(b):
        for k in _registry.KERNELS:
            for dt in (np.float32, np.float64):
                ft.run(ft.case(k, (8, 33), dt, -1))
assert tiny * 1 != 0 and np.float32(1e-45) * np.float32(1) != 0, "flush-to-zero is on"
assert np.float64(1) + np.float64(2.0 ** -53) == 1 and np.float64(1) + np.float64(2.0 ** -52) != 1
assert np.nextafter(np.float64(1), 2) - 1 == 2.0 ** -52
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_errors_leave_out_and_inputs_untouched(backend):
    x = np.arange(6.0).reshape(2, 3)
    x0 = x.copy()
    out = np.full((2, 3), 7.0)
    for call, exc in [
        (lambda: fastact.softmax(x, axis=2, out=out), AxisError),
        (lambda: fastact.softmax(x, axis=(0, 0), out=out), ValueError),
        (lambda: fastact.log_softmax(np.array([["a"] * 3] * 2), out=out), TypeError),
        (lambda: fastact.softmax_backward(np.ones((2, 3), complex), x, out=out), TypeError),
        (lambda: fastact.sigmoid(x, out=out.astype(np.float32)), ValueError),
        (lambda: fastact.softplus(x, beta=0, out=out), ValueError),
        (lambda: fastact.logsumexp(x, axis=1, out=out), ValueError),
        (lambda: fastact.gelu(x, approximate="bad", out=out), ValueError),
    ]:
        with pytest.raises(exc):
            call()
        np.testing.assert_array_equal(out, 7.0)
        np.testing.assert_array_equal(x, x0)


def test_fork_child_runs_single_threaded_and_works():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    x = np.random.default_rng(0).normal(size=(2048, 512)).astype(np.float32)
    want = fastact.softmax(x)  # the parent has run its kernels (and thread pools)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map(_child_softmax, [x, x])
    for threads, r in got:
        assert threads == 1
        np.testing.assert_array_equal(r, want)


def _child_softmax(x):
    return fastact.get_num_threads(), fastact.softmax(x)


_ROW_KERNELS = [k for k, v in _registry.KERNELS.items() if v.kind.startswith("rows")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contiguous_single_axis_calls_make_no_plan(backend, dtype, monkeypatch):
    """A single int axis of a C-contiguous float32/float64 array, with or
    without a matching out=, goes straight to the kernel: no Plan is made
    (the general path costs 11-12 us per call)."""
    from fastact import _dispatch
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    g = rng.standard_normal((3, 4, 5)).astype(dtype)
    want = {}
    for axis in (-1, 0, 1):
        want[axis] = (fastact.softmax(x, axis=axis), fastact.logsumexp(x, axis=axis),
                      fastact.softmax_backward(g, x, axis=axis))

    def no_plan(*args, **kwargs):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(_dispatch, "Plan", no_plan)
    for axis in (-1, 0, 1):
        for with_out in (False, True):
            got = []
            for f, args, w in zip((fastact.softmax, fastact.logsumexp, fastact.softmax_backward),
                                  ((x,), (x,), (g, x)), want[axis]):
                o = np.empty_like(w) if with_out else None
                r = f(*args, axis=axis, out=o)
                assert o is None or r is o
                got.append(r)
            for r, w in zip(got, want[axis]):
                np.testing.assert_array_equal(r, w)


@pytest.mark.parametrize("kernel", _ROW_KERNELS)
def test_any_single_axis_fast_path_matches_general_path(backend, kernel):
    # an int axis of a C-contiguous array is a reshape (the dispatch fast
    # path); the same axis as a 1-tuple goes through the general planning:
    # same canonical layout, same kernel, so bit-for-bit the same result
    for shape in ((3, 4, 5), (6, 7), (2, 1, 3, 4), (4, 0, 3)):
        for axis in range(-len(shape), len(shape)):
            if shape[axis] == 0:
                continue
            c = ft.case(kernel, shape, np.float32, axis, seed=len(shape) + axis)
            fast = ft.run(c)
            general = ft.run(ft.Case(c.kernel, c.args, {**c.kwargs, "axis": (axis,)}))
            np.testing.assert_array_equal(fast, general, err_msg=f"{shape} axis={axis}")
            out = np.full_like(fast, np.nan)
            assert ft.run(c, out=out) is out
            np.testing.assert_array_equal(out, general, err_msg=f"{shape} axis={axis} out=")
            if c.kernel.kind == "rows_reduce" and general.size:
                # an out over x's own memory is refused, with x untouched
                fresh = c.map(np.copy)
                x = fresh.arrays[0]
                view = x.reshape(-1)[:general.size].reshape(general.shape)
                with pytest.raises(ValueError, match="overlaps"):
                    ft.run(fresh, out=view)
                np.testing.assert_array_equal(x, c.arrays[0])


def test_logsumexp_backward_out_overlapping_grad_or_lse_is_refused(backend):
    """out may not share memory with the reduced inputs either: the fast
    path checks them as the general one does, before anything is written."""
    x = np.random.default_rng(3).standard_normal((4, 5))
    lse = fastact.logsumexp(x, axis=-1)
    for name in ("grad", "lse"):
        buf = np.zeros(20)
        out = buf.reshape(4, 5)
        view = buf[5:9]
        view[:] = lse if name == "lse" else 1.0
        args = (np.ones(4), x, view) if name == "lse" else (view, x, lse)
        before = buf.copy()
        with pytest.raises(ValueError, match="overlaps"):
            fastact.logsumexp_backward(*args, out=out)
        np.testing.assert_array_equal(buf, before)
