"""Tests specific to the "numba" backend (fastact._backends.numba_*) and to
fastact.numba, the functions Numba users call from their own @njit code.

The registry-driven suite (test_backends.py) already runs every kernel on
this backend against the NumPy reference through the public API.  Here: the
public Numba API called from a user's @njit function, the accuracy of the
scalar helpers against high-precision references, the vector code (zmm on
AVX-512), the paths inside the row kernels at their boundaries, the thread
decision and concurrent Python threads, and the compilation cache (nothing
compiled at import, read-only installs, stale-cache protection).
"""

import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastact
from fastact import _registry
from fastact import testing as ft

numba = pytest.importorskip("numba")
nj = pytest.importorskip("fastact._backends.numba_jit")
import fastact.numba as fn  # noqa: E402
from fastact._backends import numba_math as nm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastact.__file__)))
DTYPES = (np.float32, np.float64)


def run_py(code, env=None, timeout=600, cwd=ROOT, drop=("NUMBA_CACHE_DIR",)):
    """Run ``code`` in a fresh interpreter; return its stdout (asserting rc 0).
    ``drop``: environment variables to unset."""
    e = {k: v for k, v in os.environ.items() if k not in drop}
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       env=e, timeout=timeout, cwd=cwd)
    assert r.returncode == 0, f"subprocess failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def ref(fname, *args, **kw):
    with fastact.use_backend("numpy"):
        return getattr(fastact, fname)(*args, **kw)


def close(a, b, kernel, n=1, what=""):
    problem, err = ft.compare(a, b)
    assert problem is None, f"{kernel} {what}: {problem}"
    bound = _registry.ulps_bound(kernel, n)
    assert err <= bound, f"{kernel} {what}: {err:.1f} ulp (bound {bound})"


# ---------------------------------------------------------------------------
# fastact.numba from a user's @njit code


@numba.njit
def _user_rows(x, g):
    """A user's compiled function doing its own loop over rows."""
    n = x.shape[0]
    sm = np.empty_like(x)
    ls = np.empty_like(x)
    lse = np.empty(n, x.dtype)
    dsm = np.empty_like(x)
    dls = np.empty_like(x)
    for i in range(n):
        fn.softmax_row(x[i], sm[i])
        fn.log_softmax_row(x[i], ls[i])
        lse[i] = fn.logsumexp_row(x[i])
        fn.softmax_backward_row(g[i], sm[i], dsm[i])
        fn.log_softmax_backward_row(g[i], ls[i], dls[i])
    return sm, ls, lse, dsm, dls


@numba.njit
def _user_scalars(x, p):
    out = np.empty((10,) + x.shape, x.dtype)
    for i in range(x.size):
        v = x[i]
        out[0, i] = fn.sigmoid(v)
        out[1, i] = fn.log_sigmoid(v)
        out[2, i] = fn.softplus(v, 1.5, 20.0)
        out[3, i] = fn.tanh(v)
        out[4, i] = fn.relu(v)
        out[5, i] = fn.leaky_relu(v, 0.01)
        out[6, i] = fn.gelu(v)
        out[7, i] = fn.gelu_tanh(v)
        out[8, i] = fn.silu(v)
        out[9, i] = fn.logit(p[i])
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [1, 5, 16, 17, 40, 64, 100, 3000])
def test_user_njit_calls_the_row_functions(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.uniform(-10, 10, (6, n)).astype(dtype)
    x[1, 0] = -np.inf
    if n > 2:
        x[2, :2] = -40.0 + x[2].max()  # tiny terms
    x[3, -1] = np.nan
    x[4, 0] = np.inf
    g = rng.uniform(-2, 2, (6, n)).astype(dtype)
    sm, ls, lse, dsm, dls = _user_rows(x, g)
    close(sm, ref("softmax", x), "softmax", n)
    close(ls, ref("log_softmax", x), "log_softmax", n)
    close(lse, ref("logsumexp", x), "logsumexp", n)
    rsm, rls = ref("softmax", x), ref("log_softmax", x)
    close(dsm, ref("softmax_backward", g, rsm), "softmax_backward", n)
    close(dls, ref("log_softmax_backward", g, rls), "log_softmax_backward", n)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_user_njit_calls_the_scalar_functions(dtype):
    with np.errstate(over="ignore"):
        edge = np.array(ft.EDGE_VALUES).astype(dtype)
    x = np.concatenate([edge, np.linspace(-12, 12, 1001).astype(dtype)])
    p = np.concatenate([edge, np.linspace(0, 1, 1001).astype(dtype)])
    out = _user_scalars(x, p)
    assert out.dtype == dtype
    close(out[0], ref("sigmoid", x), "sigmoid")
    close(out[1], ref("log_sigmoid", x), "log_sigmoid")
    close(out[2], ref("softplus", x, beta=1.5, threshold=20.0), "softplus")
    close(out[3], ref("tanh", x), "tanh")
    close(out[4], ref("relu", x), "relu")
    close(out[5], ref("leaky_relu", x, negative_slope=0.01), "leaky_relu")
    close(out[6], ref("gelu", x), "gelu")
    close(out[7], ref("gelu", x, approximate="tanh"), "gelu_tanh")
    close(out[8], ref("silu", x), "silu")
    close(out[9], ref("logit", p), "logit")


@numba.njit(parallel=True)
def _user_parallel_softmax(x):
    out = np.empty_like(x)
    for i in numba.prange(x.shape[0]):
        fn.softmax_row(x[i], out[i])
    return out


def test_user_prange_over_rows():
    x = np.random.default_rng(5).standard_normal((333, 70)).astype(np.float32)
    close(_user_parallel_softmax(x), ref("softmax", x), "softmax", 70)


def test_row_functions_any_layout_in_place_and_types():
    x = np.random.default_rng(0).standard_normal((40, 7))
    out = np.empty(40)
    fn.softmax_row(x[:, 3], out)  # strided input: copied, same result
    close(out, ref("softmax", x[:, 3]), "softmax", 40)
    col = np.array(x[:, 2])
    fn.log_softmax_row(col, col)  # in place
    close(col, ref("log_softmax", x[:, 2]), "log_softmax", 40)
    assert fn.logsumexp_row(np.zeros(0)) == -np.inf
    assert fn.logsumexp_row(np.array([0.0, -40.0])) == pytest.approx(4.248354255291589e-18, rel=1e-15)
    assert np.float32(fn.logsumexp_row(np.array([0.0, -40.0], np.float32))) == np.float32(4.2483543e-18)
    assert fn.sigmoid(0) == 0.5  # integers are taken as float64
    with pytest.raises(numba.core.errors.TypingError, match="one dtype"):
        fn.softmax_row(np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(numba.core.errors.TypingError, match="1-D"):
        fn.softmax_row(np.zeros((3, 3)), np.zeros((3, 3)))


def test_fastact_numba_docstring_examples():
    import doctest

    r = doctest.testmod(fn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted > 0 and r.failed == 0


# ---------------------------------------------------------------------------
# accuracy of the scalar helpers (documented in numba_math's docstring)

#: max ULP of each helper over the samples below, (float32, float64)
HELPER_ULPS = {
    "exp": (1.1, 1.1), "exp_neg": (1.1, 1.1), "exp_neg_sub": (1.1, 1.1), "expm1_neg": (1.2, 1.3), "log": (1.3, 1.3), "log1p": (2.2, 1.7),
    "tanh": (2.6, 2.7), "sigmoid": (2.4, 2.4), "log1pexp_neg_abs": (2.0, 2.0), "erfc": (5.0, 5.0),
}
#: helpers that flush subnormal results to 0 (built on exp_neg)
FLUSHED = ("sigmoid", "log1pexp_neg_abs", "erfc")
DOMAINS = {
    "exp": [(-103.9, -87.0), (-745.0, -708.0), (-20, 20), (80, 88.7), (700, 709.7), (-1, 1)],
    "exp_neg": [(-87.3, 0), (-708.3, -600), (-1, 0)],  # normal results (below: 0)
    "exp_neg_sub": [(-103.9, -87.0), (-745.0, -708.0), (-20, 0)],  # subnormal results kept
    "expm1_neg": [(-50, 0), (-1, 0), (-1e-3, 0)],
    "log": [(0, 2), (1e-3, 1e6), (1e-40, 1e-37), (1e-310, 1e-307)],
    "log1p": [(-1, 1), (-1e-3, 1e-3), (0, 1e6)],
    "tanh": [(-20, 20), (-1, 1), (-1e-3, 1e-3)],
    "sigmoid": [(-110, 110), (-10, 10)],
    "log1pexp_neg_abs": [(-20, 20), (-110, 110)],
    "erfc": [(-6, 6), (0.4, 0.6), (0.5, 27.2), (9, 10.05)],
}


def _map(helper):
    f = getattr(nm, helper)

    @numba.njit(fastmath=nm.FASTMATH, error_model="numpy")
    def k(x, out):
        nm.wide()
        for i in range(x.size):
            out[i] = f(x[i])

    return k


def _reference(helper, x):
    """float64 for float32 arguments, long double (or mpmath) for float64."""
    if helper == "erfc":
        import mpmath

        mpmath.mp.dps = 40
        return np.array([float(mpmath.erfc(mpmath.mpf(float(v)))) if x.dtype == np.float32
                         else mpmath.erfc(mpmath.mpf(float(v))) for v in x], dtype=object)
    w = x.astype(np.float64 if x.dtype == np.float32 else np.longdouble)
    with np.errstate(all="ignore"):
        return {
            "exp": np.exp, "exp_neg": np.exp, "exp_neg_sub": np.exp, "expm1_neg": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "log1pexp_neg_abs": lambda v: np.log1p(np.exp(-np.abs(v))),
        }[helper](w)


def _ulps(got, exact, dtype):
    """|got - exact| in ULPs of the result type (subnormals: ULP of the
    smallest normal)."""
    import mpmath

    ti = np.finfo(dtype)
    errs = []
    for g, e in zip(got, exact):
        e = mpmath.mpf(e) if not isinstance(e, mpmath.mpf) else e
        if not mpmath.isfinite(e):
            assert g == float(e) or (mpmath.isnan(e) and np.isnan(g))
            continue
        if abs(e) < ti.tiny:  # subnormal results may be flushed to 0
            assert abs(mpmath.mpf(float(g)) - e) < ti.tiny
            continue
        mag = max(abs(e), mpmath.mpf(float(ti.tiny)))
        ulp = mpmath.mpf(2) ** (mpmath.floor(mpmath.log(mag, 2)) - ti.nmant)
        errs.append(float(abs(mpmath.mpf(float(g)) - e) / ulp))
    return max(errs)


#: both ways exp scales by 2**n: vscalef (AVX-512 hosts) and integer
#: exponent bits (every host; the only way without AVX-512)
SCALEF = [pytest.param(True, id="scalef", marks=pytest.mark.skipif(not nm.SCALEF, reason="no AVX-512")),
          pytest.param(False, id="intscale")]


@pytest.mark.parametrize("scalef", SCALEF)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("helper", list(HELPER_ULPS))
def test_helper_accuracy(helper, dtype, scalef, monkeypatch):
    monkeypatch.setattr(nm, "SCALEF", scalef)  # read when _map's function compiles
    rng = np.random.default_rng(7)
    k = _map(helper)
    worst = 0.0
    domains = DOMAINS[helper]
    flushed = helper in FLUSHED
    if scalef and helper in ("exp_neg", "sigmoid", "log1pexp_neg_abs"):
        # vscalef keeps the subnormal results that the integer form flushes
        flushed = False
        if helper == "exp_neg":
            domains = domains + DOMAINS["exp_neg_sub"][:2]
    for lo, hi in domains:
        N = 1500 if helper == "erfc" else 20000
        x = (np.exp(rng.uniform(np.log(lo), np.log(hi), N)) if lo > 0 and hi / lo > 1e3
             else rng.uniform(lo, hi, N)).astype(dtype)
        out = np.empty_like(x)
        k(x, out)
        exact = _reference(helper, x)
        if helper != "erfc":  # vectorized ULPs with the float64 / long double reference
            t = np.finfo(dtype)
            mag = np.maximum(np.abs(exact.astype(np.longdouble)), np.longdouble(t.tiny))
            ulp = np.exp2(np.floor(np.log2(mag)) - t.nmant)
            fin = np.isfinite(exact) & (np.abs(exact) <= t.max)  # else the result is +-inf / NaN
            with np.errstate(over="ignore"):
                assert np.array_equal(out[~fin], exact[~fin].astype(dtype), equal_nan=True)
            if flushed:  # subnormal results may be 0: absolute error < tiny
                sub = fin & (np.abs(exact) < t.tiny)
                assert np.all(np.abs(out[sub] - exact[sub]) < t.tiny)
                fin &= ~sub
            e = float(np.max(np.abs(out[fin].astype(np.longdouble) - exact[fin]) / ulp[fin], initial=0))
        else:
            e = _ulps(out, exact, dtype)
        worst = max(worst, e)
    bound = HELPER_ULPS[helper][dtype == np.float64]
    assert worst <= bound, f"{helper} {np.dtype(dtype).name}: {worst:.2f} ULP > documented {bound}"


@pytest.mark.parametrize("scalef", SCALEF)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_helper_special_values(dtype, scalef, monkeypatch):
    monkeypatch.setattr(nm, "SCALEF", scalef)
    sp = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0], dtype)
    expect = {
        "exp": [1, 1, np.inf, 0, np.nan, np.exp(-1.0), np.e],
        "log": [-np.inf, -np.inf, np.inf, np.nan, np.nan, np.nan, 0],
        "log1p": [0, 0, np.inf, np.nan, np.nan, -np.inf, np.log(2)],
        "tanh": [0, 0, 1, -1, np.nan, np.tanh(-1.0), np.tanh(1.0)],
        "sigmoid": [0.5, 0.5, 1, 0, np.nan, 1 / (1 + np.e), 1 / (1 + np.exp(-1.0))],
        "erfc": [1, 1, 0, 2, np.nan, 1.8427007929497148, 0.15729920705028513],
    }
    for helper, e in expect.items():
        out = np.empty_like(sp)
        _map(helper)(sp, out)
        np.testing.assert_allclose(out, np.array(e, dtype), rtol=4 * np.finfo(dtype).eps, err_msg=helper)


# ---------------------------------------------------------------------------
# vector code


def _cpu_has_avx512():
    try:
        import llvmlite.binding as ll

        return "+avx512f" in ll.get_host_cpu_features().flatten()
    except Exception:  # pragma: no cover
        return False


def _fresh_asm(dispatcher, *args):
    """Assembly of a freshly compiled copy (cached code cannot be inspected)."""
    opts = dict(nm.JIT, cache=False)
    d = numba.njit(**opts)(dispatcher.py_func)
    d(*args)
    return d.inspect_asm(d.signatures[0])


@pytest.mark.skipif(not _cpu_has_avx512(), reason="CPU without AVX-512")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_hot_loops_use_512_bit_vectors(dtype):
    x = np.linspace(-5, 5, 4096).astype(dtype)
    o = np.empty_like(x)
    for disp, args in ((nj._e_sigmoid, (x, o)), (nj._e_gelu, (x, o)), (nj._e_tanh_backward, (x, x, o)),
                       (nj._rl_softmax, (x.reshape(4, 1024), o.reshape(4, 1024)))):
        asm = _fresh_asm(disp, *args)
        name = disp.py_func.__name__
        # packed arithmetic on zmm registers (vfmadd...ps/pd, vmulps/pd ... %zmm)
        packed = [ln for ln in asm.splitlines() if "zmm" in ln and ("vfmadd" in ln or "vmulp" in ln)]
        assert len(packed) >= 8, f"{name}: no 512-bit vector arithmetic"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_short_rows_use_masked_vectors(dtype):
    # a row of <= 16 elements is one vector load/store (numba_rows): masked
    # with AVX-512; without it plain, never vmaskmovps/pd stores (microcode
    # on AMD Zen 3: 5x the time of a plain store)
    x = np.linspace(-5, 5, 100).astype(dtype).reshape(10, 10, 1)
    asm = _fresh_asm(nj._rt_softmax, x, np.empty_like(x))
    lines = asm.splitlines()
    if _cpu_has_avx512():
        masked = [ln for ln in lines if "{%k" in ln and ("vmov" in ln or "vblendm" in ln)]
        assert masked, "no masked vector load/store in the short-row path"
    else:
        # AT&T order: vmaskmovps %ymm_data, %ymm_mask, (mem) is the store
        stores = [ln for ln in lines if "vmaskmov" in ln and ln.rstrip().endswith(")")]
        assert not stores, f"masked stores in the short-row path: {stores[:3]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_relu_backward_loads_the_gradient_unmasked(dtype):
    # a masked load of g ({%k} on AVX-512, vmaskmov on AVX2) waits for x's
    # load and compare: relu_backward took 1.35x as long (_b_relu)
    x = np.linspace(-5, 5, 4096).astype(dtype)
    asm = _fresh_asm(nj._e_relu_backward, x, x, np.empty_like(x))
    loads = [ln for ln in asm.splitlines()
             if ("vmaskmov" in ln or ("vmov" in ln and "{%k" in ln)) and "(%" in ln.split(",")[0]]
    assert not loads, f"masked loads in relu_backward: {loads[:3]}"


def _store_probe(masked, scalef, monkeypatch):
    """njit functions around the row intrinsics, compiled here (no cache)
    with numba_rows.MASKED_STORES = masked and numba_math.SCALEF = scalef:
    whichever the CPU, both ways of storing a row prefix are exercised, and
    on AVX-512 hosts both ways of scaling exp's result."""
    from fastact._backends import numba_rows as nr

    monkeypatch.setattr(nr, "MASKED_STORES", masked)
    monkeypatch.setattr(nm, "SCALEF", scalef)
    jit = numba.njit(**dict(nm.JIT, cache=False))

    @jit
    def scale(x, off, n, c, out):
        nr.vrow_scale(x, off, n, c, out, 16)

    @jit
    def tile_out(t, out, off, cnt, n):
        nr.vtile_out(t, 0, 16, out, off, cnt, n, 16)

    @jit
    def stream_scale(x, off, n, c, out):
        nr.vmap_scale(x, off, n, c, out)

    @jit
    def rows_lsm(x, n, out):
        return nr.vrows_log_softmax(x, 0, n, out, 16, 4)

    @jit
    def rows_lse(x, n, out):
        return nr.vrows_logsumexp(x, 0, n, out, 1, 16, 4)

    @jit
    def sum_exp(x, off, n, m, out):
        return nr.vsum_exp(x, off, n, m, out)

    return scale, tile_out, stream_scale, rows_lsm, rows_lse, sum_exp


@pytest.mark.parametrize("scalef", SCALEF)
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_row_stores_write_the_row_and_nothing_else(dtype, masked, scalef, monkeypatch):
    """Each way of storing part of a vector (masked stores; pieces of plain
    stores where those are slow) writes exactly the row's entries -- counts
    of 0 to past a vector, rows at the array's end (masked loads there),
    rows skipped for a non-finite max -- and reads nothing past the array."""
    scale, tile_out, stream_scale, rows_lsm, rows_lse, sum_exp = _store_probe(masked, scalef, monkeypatch)
    x = np.arange(1, 41, dtype=dtype)
    c = dtype(2)
    for n in range(17):
        for off in (3, 40 - n):  # inside the array, and its last n entries
            out = np.full(40, -7, dtype)
            scale(x, off, n, c, out)
            want = np.full(40, -7, dtype)
            want[off:off + n] = 2 * x[off:off + n]
            np.testing.assert_array_equal(out, want, err_msg=f"vrow_scale n={n} off={off}")
    t = np.arange(1, 257, dtype=dtype)
    for cnt in (1, 5, 8, 15, 16, 17, 20):  # entries per row; more than 16: all 16
        n = max(cnt, 16) + 3
        out = np.full(16 * n, -7, dtype)
        tile_out(t, out, 0, cnt, n)
        got = out.reshape(16, n)
        k = min(cnt, 16)
        np.testing.assert_array_equal(got[:, :k], t.reshape(16, 16)[:k].T, err_msg=f"vtile_out cnt={cnt}")
        assert (got[:, k:] == -7).all(), f"vtile_out cnt={cnt} wrote past the rows"
    for n in range(40):
        out = np.full(50, -7, dtype)
        stream_scale(np.arange(1, 51, dtype=dtype), 5, n, c, out)
        want = np.full(50, -7, dtype)
        want[5:5 + n] = 2 * np.arange(6, 6 + n, dtype=dtype)
        np.testing.assert_array_equal(out, want, err_msg=f"vmap_scale n={n}")
    for n in (3, 10, 16):
        xr = np.linspace(-3, 3, 4 * n).astype(dtype).reshape(4, n)
        xr[1, 0] = np.inf  # a non-finite max: that row is left to the caller
        out = np.full((4, n), -7, dtype)
        bad = rows_lsm(xr.ravel(), n, out.ravel())
        assert bad == 0b10
        assert (out[1] == -7).all()
        want = ref("log_softmax", xr[[0, 2, 3]].astype(np.float64), axis=-1)
        close(out[[0, 2, 3]], want.astype(dtype), "log_softmax", n, f"vrows n={n}")
        for fin in (True, False):
            xs = xr.copy()
            if fin:
                xs[1, 0] = 0.5
            out = np.full(6, -7, dtype)
            bad = rows_lse(xs.ravel(), n, out)
            assert bad == (0 if fin else 0b10)
            keep = [0, 1, 2, 3] if fin else [0, 2, 3]
            assert out[0] == -7 and out[5] == -7 and (fin or out[2] == -7)
            want = ref("logsumexp", xs[keep].astype(np.float64), axis=-1).astype(dtype)
            close(out[1:5][keep], want, "logsumexp", n, f"vrows n={n} finite={fin}")
    # the long rows' exp stream, down to results that underflow to 0: each
    # within 1 ULP of the float64 / long double exp (subnormals as 0 or
    # within a subnormal ULP), the sum within the sum's rounding
    lo = -104.0 if dtype == np.float32 else -746.0
    for n in (0, 5, 16, 100, 1000):
        x = np.concatenate([[0.0], np.linspace(lo, 0, max(n - 1, 0))])[:n].astype(dtype)
        out = np.full(n + 10, -7, dtype)
        s = sum_exp(np.concatenate([np.zeros(5, dtype), x, np.zeros(5, dtype)]), 5, n, dtype(0), out)
        assert (out[:5] == -7).all() and (out[5 + n:] == -7).all()
        exact = np.exp(x.astype(np.float64 if dtype == np.float32 else np.longdouble))
        t = np.finfo(dtype)
        err = np.abs(out[5:5 + n] - exact) / np.maximum(np.spacing(exact.astype(dtype)), t.smallest_subnormal)
        normal = exact >= t.tiny
        assert np.all(err[normal] <= 1.0), f"sum_exp n={n}: {err[normal].max()} ULP"
        sub = out[5:5 + n][~normal]
        assert np.all((sub == 0) | (err[~normal] <= 1.0))
        if scalef:  # vscalef keeps them
            assert np.all(err[~normal] <= 1.0)
        assert abs(s - exact.sum()) <= 4 * n * t.eps * max(exact.sum(), 1), f"sum_exp n={n}"


# ---------------------------------------------------------------------------
# row kernels: each path (single vector n <= 16 -- 4, 8 or 16 lanes --,
# chunked n <= 64, long rows, lanes for inner > 1) at its boundaries, with
# non-finite rows, in place

ROW_KERNELS = [k for k, v in _registry.KERNELS.items() if v.kind.startswith("rows")]


def _row_input(n, inner, dtype, seed):
    rng = np.random.default_rng(seed)
    # 37 rows: blocks of 8 and 4 short rows at a time, and the remainders
    x = rng.uniform(-10, 10, (37 if inner == 1 else 7, n, inner)).astype(dtype)
    x[1, 0] = np.nan
    x[2, -1] = np.inf
    x[3] = -np.inf
    x[4, : max(1, n // 2)] = -np.inf
    x[5] = -3.0
    if n > 1:
        x[6, 1:] = x[6, 0] - 40.0  # the rest is tiny: log1p keeps it
    if x.shape[0] > 20:  # non-finite rows inside a block of rows, too
        x[9, -1] = np.nan
        x[13] = -np.inf
        x[18, 0] = np.inf
        x[22, :] = 5.0
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", ROW_KERNELS)
def test_row_paths_at_their_boundaries(kernel, dtype):
    k = _registry.KERNELS[kernel]
    for n in (1, 2, 4, 5, 8, 9, 15, 16, 17, 33, 63, 64, 65, 1024, 1025):
        for inner in (1, 3, 257):
            if n * inner > 70000:
                continue
            x = _row_input(n, inner, dtype, n * inner)
            g = np.random.default_rng(1).uniform(-2, 2, x.shape).astype(dtype)
            if k.kind in ("rows", "rows_reduce"):
                args = (x,)
            elif k.kind == "rows_backward":
                args = (g, ref(k.forward, x, axis=1))
            else:
                lse = ref("logsumexp", x, axis=1)
                args = (g[:, 0], x, lse)
            want = ref(k.api, *args, axis=1)
            with fastact.use_backend("numba"):
                got = getattr(fastact, k.api)(*args, axis=1)
                close(got, want, kernel, n, f"n={n} inner={inner}")
                if k.kind != "rows_reduce":  # in place on each same-shaped input
                    for i, a in enumerate(args):
                        if a.shape == want.shape:
                            fresh = [np.copy(b) for b in args]
                            r = getattr(fastact, k.api)(*fresh, axis=1, out=fresh[i])
                            close(r, want, kernel, n, f"n={n} inner={inner} in place on {i}")


LOSS_KERNELS = [k for k, v in _registry.KERNELS.items() if v.kind.startswith("loss")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", LOSS_KERNELS)
def test_losses_over_classes_of_each_vector_width(kernel, dtype):
    """Cross-entropy over C <= 16 classes takes each row's max and rest in
    4, 8 or 16 lanes by C (4 rows at a time, then one by one), and for
    whole blocks of TWR samples of up to _CE_TILE32 / _CE_TILE64 classes
    along the lanes of a transposed tile, with their losses (and their
    gradients, float32 up to _CE_GRAD_TILE32 classes): 37 samples, and 150
    (two whole tiles and 22 samples), with NaN/inf logits inside and after the blocks
    of 4 and in both tiles, and a -inf logit in a finite row (its term
    counts 0 where q is 0: no smoothing, a zero probability); with and
    without label smoothing."""
    for C in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 16, 17, 32, 33):
        for S, eps in ((37, 0.1), (150, 0.1), (150, 0.0)):
            c = ft.case(kernel, (S, C), dtype, -1, seed=S + C)
            c.kwargs["label_smoothing"] = eps
            x = c.arrays[0]
            x[1, 0], x[2, -1], x[6, :], x[35, 0] = np.nan, np.inf, -np.inf, np.inf
            if S > 100:
                x[70, :], x[99, C // 2], x[127, -1], x[80, 0] = -np.inf, np.nan, np.inf, -np.inf
            with fastact.use_backend("numba"):
                got = ft.run(c)
            problem, err = ft.compare(got, ft.reference(c))
            assert problem is None and err <= _registry.ulps_bound(kernel, C), (kernel, C, S, eps, problem, err)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", LOSS_KERNELS)
def test_losses_along_the_inner_axis(kernel, dtype):
    """Cross-entropy with the classes not last ((outer, C, inner), axis=1):
    from inner = _CE_LANES_MIN up to TW samples of one outer index side by
    side along inner, narrower inners one sample at a time: inners about
    the limit and past TW, NaN/inf logits, with and without smoothing; then
    a call large enough for two threads, whose halves split an outer
    index's samples."""
    lim = nj._CE_LANES_MIN[np.dtype(dtype).itemsize]
    for (outer, C, inner), eps in (((3, 1, 5), 0.1), ((3, 3, lim - 1), 0.1), ((3, 3, lim), 0.1),
                                   ((3, 4, 9), 0.0), ((2, 17, nj.TW + 44), 0.1), ((2, 5, nj.TW + 44), 0.0)):
        c = ft.case(kernel, (outer, C, inner), dtype, 1, seed=C + inner)
        c.kwargs["label_smoothing"] = eps
        x = c.arrays[0]
        x[0, 0, 1], x[1, :, 2], x[1, C // 2, 3 % inner], x[2 % outer, 0, inner - 1] = np.nan, -np.inf, np.inf, -np.inf
        with fastact.use_backend("numba"):
            got = ft.run(c)
        problem, err = ft.compare(got, ft.reference(c))
        assert problem is None and err <= _registry.ulps_bound(kernel, C), ((outer, C, inner), eps, problem, err)
    n0 = fastact.get_num_threads()
    try:
        fastact.set_num_threads(2)
        if nj._NT[0] < 2:
            return
        c = ft.case(kernel, (3, 17, 6000), dtype, 1, seed=5)
        assert c.arrays[0].nbytes > nj._CEG_LIMIT
        with fastact.use_backend("numba"):
            got = ft.run(c)
        problem, err = ft.compare(got, ft.reference(c))
        assert problem is None and err <= _registry.ulps_bound(kernel, 17), ("two threads", problem, err)
    finally:
        fastact.set_num_threads(n0)


def _compiled_signatures():
    """Every (function, argument types) the backend has compiled or loaded."""
    return {(name, sig) for name, f in vars(nj).items() if isinstance(f, numba.core.dispatcher.Dispatcher)
            for sig in f.signatures}


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", tuple(_registry.KERNELS))
def test_read_only_and_unit_inner_inputs_compile_nothing_new(kernel, dtype):
    """Read-only inputs, and rows reached as (outer, n, 1), run the code
    compiled for the plain 2-D call: Numba types either as new argument
    types, and would compile each kernel again for them (1-7 s apiece)."""
    k = _registry.KERNELS[kernel]
    c = ft.case(kernel, (5, 17), dtype, -1)
    want = ft.reference(c)
    n = 17 if k.kind.startswith("rows") else 1
    with fastact.use_backend("numba"):
        close(ft.run(c), want, kernel, n, "plain")
        before = _compiled_signatures()
        ro = c.map(_read_only)
        close(ft.run(ro), want, kernel, n, "read-only")
        if k.kind.startswith("rows"):  # the same rows with a unit middle axis
            c3 = c.map(lambda a: a.reshape(a.shape[0], 1, *a.shape[1:]))
            close(ft.run(c3), want.reshape(c3.main.shape[:2] + want.shape[1:]), kernel, n, "(5, 1, 17)")
    assert _compiled_signatures() == before, sorted(_compiled_signatures() - before)


TILED = [k for k in ROW_KERNELS if hasattr(nj, "_rtt_" + k)]


@pytest.mark.parametrize("kernel", TILED)
def test_short_rows_take_the_tile_path_from_one_whole_tile(kernel, monkeypatch):
    """Short rows go to the compiled function with the tile path (_rtt_*)
    only when there is a whole tile of rows and the rows are no longer
    than its tiles take in their dtype (_TILE_MAX); otherwise to the one
    without it (_rt_*) up to the kernel's short-row limit."""
    calls = []
    for p in ("_rt_", "_rtt_"):
        monkeypatch.setattr(nj, p + kernel, lambda *a, p=p: calls.append(p))
    k = _registry.KERNELS[kernel]
    driver = (nj._rows2 if k.kind == "rows_backward" else nj._rows1)(kernel, 1.0)

    def call(rows, n, dtype):
        x = np.ones((rows, n), dtype)
        out = np.empty(rows, dtype) if k.kind == "rows_reduce" else np.empty_like(x)
        driver(*((x, x, out) if k.kind == "rows_backward" else (x, out)))

    for rows, dtype in ((nj.TWR - 1, np.float32), (nj.TWR, np.float32), (5 * nj.TWR, np.float32),
                        (nj.TWR, np.float64)):
        short = nj._short_rows(kernel)[np.dtype(dtype).itemsize]
        tmax = nj._TILE_MAX[kernel][np.dtype(dtype).itemsize]
        tiled = rows >= nj.TWR and tmax > 0
        for n in sorted({3, 10, tmax, tmax + 1, short} - {0, 1}):
            tiles = tiled and n <= tmax
            if n > short and not tiles:
                continue
            call(rows, n, dtype)
            assert calls.pop() == ("_rtt_" if tiles else "_rt_"), (rows, dtype, n)
        call(rows, max(short, tmax if tiled else 0) + 1, dtype)  # the long-row path, neither of these
    assert calls == []


@pytest.mark.parametrize("kernel", sorted(nj._TILE_ROWS))
def test_long_rows_in_tiles(kernel):
    """float32 rows of 33 up to _TILE_ROWS entries through the tiles: whole
    tiles and the rows after them (70 rows), NaN/inf/-inf rows and entries
    inside the first tile and in the rows left over, at each register count
    around the limit."""
    top = nj._TILE_ROWS[kernel]
    for n in sorted({33, 47, 48, 64, 65, 100, top - 1, top, top + 1}):
        c = ft.case(kernel, (70, n), np.float32, -1, seed=n)
        x = c.arrays[0]
        x[1, 0], x[2, -1], x[6, :], x[9, 3], x[66, :] = np.nan, np.inf, -np.inf, -np.inf, np.inf
        x[67, n // 2] = np.nan
        with fastact.use_backend("numba"):
            got = ft.run(c)
        problem, err = ft.compare(got, ft.reference(c))
        assert problem is None and err <= _registry.ulps_bound(kernel, n), (kernel, n, problem, err)


def _piece_lengths(dtype, top):
    """Row lengths at each end of every piece count up to top the register
    rows compile (numba_rows.PIECE_COUNTS, pieces of one 512-bit register),
    and the first length past them (the long-row path)."""
    from fastact._backends import numba_rows as nr
    w = nr.PIECE_LANES[np.dtype(dtype).itemsize * 8]
    lengths, prev = set(), 1
    for P in (P for P in nr.PIECE_COUNTS if P <= top):
        lengths |= {prev * w + 1, prev * w + 2, P * w - 1, P * w}
        prev = P
    return sorted(lengths | {top * w + 1})


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward", "cross_entropy_index_grad"])
def test_rows_in_register_pieces(kernel, dtype):
    """Rows of a few registers, one row at a time in registers (vrowp_*):
    both ends of every piece count (the pieces past the row masked off),
    in 5 rows and in 70 (float32: tiles first where they take the rows),
    with NaN, +inf, -inf rows and entries (for the backward passes in g),
    an all -inf row and a row whose terms but the max are tiny, into new
    arrays."""
    top = {"softmax_backward": nj.PIECES_BWD, "log_softmax_backward": nj.PIECES_LSMBWD}.get(kernel, nj.PIECES_FWD)
    for n in _piece_lengths(dtype, top):
        for rows in (5, 70):
            c = ft.case(kernel, (rows, n), dtype, -1, seed=n + rows)
            tiny = ft.plant_special_rows(c.arrays[0], not kernel.endswith("backward"))
            with fastact.use_backend("numba"):
                got = ft.run(c)
            problem, err = ft.compare(got, ft.reference(c))
            bound = _registry.ulps_bound(kernel, n)
            assert problem is None and err <= bound, (kernel, n, rows, problem, err)
            err = ft.tiny_rest_error(kernel, got, 1, tiny)
            assert err is None or err <= 4 * np.finfo(dtype).eps, (kernel, n, rows, err)


@pytest.mark.parametrize("kernel", [k for k in sorted(nj._TILE_MAX) if nj._TILE_MAX[k][8]])
def test_float64_rows_in_tiles(kernel):
    """float64 rows of 3 up to one past the tiles' limit (_TILE_MAX; from a
    whole tile of rows, rows of 3-7 moved by numba_rows.tile_move_small):
    64, 70 and 130 rows (whole tiles and rows left over), NaN, +inf, -inf
    and all -inf rows inside a tile and after it, and a row whose terms but
    the max are tiny (kept to full accuracy)."""
    for n in range(3, nj._TILE_MAX[kernel][8] + 2):
        for rows in (64, 70, 130):
            c = ft.case(kernel, (rows, n), np.float64, -1, seed=n * rows)
            x = c.arrays[0]
            tiny = ft.plant_special_rows(x, not kernel.endswith("backward"))
            x[rows - 2, :], x[rows - 1, n // 2] = np.inf, np.nan
            with fastact.use_backend("numba"):
                got = ft.run(c)
            problem, err = ft.compare(got, ft.reference(c))
            assert problem is None and err <= _registry.ulps_bound(kernel, n), (kernel, n, rows, problem, err)
            err = ft.tiny_rest_error(kernel, got, 1, tiny)
            assert err is None or err <= 4 * np.finfo(np.float64).eps, (kernel, n, rows, err)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_tile_moves_of_short_rows(dtype):
    """numba_rows.tile_move_small, at every length up to SMALL_TILE (those
    written out and the loop for the others): into the tile, entry j of
    row k at t[j W + k], nothing else of the tile written; back, the rows
    and nothing past them."""
    from numba import njit

    from fastact._backends import numba_rows as nr

    @njit
    def move(rows, off, n, t, into):
        if into:
            nr.tile_move_small(rows, off, n, t, 8, 1)
        else:
            nr.tile_move_small(rows, off, n, t, 8, 0)

    for n in range(1, nj.SMALL_TILE + 1):
        rows = np.arange(3 + 8 * n + 5, dtype=dtype)
        t = np.full(8 * n + 4, -7, dtype)
        move(rows, 3, n, t, True)
        block = rows[3:3 + 8 * n].reshape(8, n)
        np.testing.assert_array_equal(t[:8 * n].reshape(n, 8), block.T, err_msg=f"into, n={n}")
        assert (t[8 * n:] == -7).all(), n
        back = np.full_like(rows, -5)
        move(back, 3, n, t, False)
        np.testing.assert_array_equal(back[3:3 + 8 * n], rows[3:3 + 8 * n], err_msg=f"back, n={n}")
        assert (back[:3] == -5).all() and (back[3 + 8 * n:] == -5).all(), n


def test_stack_arrays_start_on_a_cache_line():
    """numba_rows.stack_array's buffers are 64-byte aligned: the tiles'
    row vectors are whole cache lines (at the stack's 16-byte alignment
    three rows in four split two, and the kernels' times varied with the
    call depth: float64 log_softmax over rows of 12 0.85x the time aligned)."""
    from numba import njit

    from fastact._backends import numba_rows as nr

    @njit
    def addr(v):
        a = nr.stack_array(64, v)
        b = nr.stack_array(48, v)
        a[0] = v
        b[0] = v
        return a.ctypes.data, b.ctypes.data

    for v in (np.float32(1.0), np.float64(1.0)):
        assert all(p % 64 == 0 for p in addr(v)), v
        assert "align 64" in next(iter(addr.inspect_llvm().values()))


def test_fewer_rows_than_a_tile_compile_no_tiles(tmp_path):
    """The tile code doubles a short-row kernel's first compilation; a call
    with fewer than TWR rows cannot use it and does not compile it."""
    out = run_py("""
        import numpy as np, fastact
        import fastact._backends.numba_jit as nj
        from fastact import testing as ft, _registry
        fastact.set_backend("numba")
        worst = 0.0
        for kernel, n in (("softmax", 10), ("log_softmax_backward", 5)):
            c = ft.case(kernel, (nj.TWR - 1, n), np.float32, -1)
            problem, err = ft.compare(ft.run(c), ft.reference(c))
            assert problem is None and err <= _registry.ulps_bound(kernel, n), (kernel, problem, err)
        print(sorted(name for name, f in vars(nj).items()
                     if name.startswith("_tiles_") and getattr(f, "signatures", None)))
    """, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------
# threads


def test_thread_decision_follows_set_num_threads(monkeypatch):
    calls = []
    real = nj._parallel

    def spy(par, args):
        calls.append(par.py_func.__name__)
        return real(par, args)

    monkeypatch.setattr(nj, "_parallel", spy)
    x = np.random.default_rng(0).standard_normal((2048, 1024)).astype(np.float32)  # 8 MB
    small = x[:4, :16].copy()
    n0 = fastact.get_num_threads()
    try:
        with fastact.use_backend("numba"):
            fastact.set_num_threads(1)
            want = fastact.softmax(x)
            assert calls == []
            fastact.set_num_threads(2)
            fastact.softmax(small)
            assert calls == []  # small work: serial whatever the thread count
            got = fastact.softmax(x)
            fastact.sigmoid(x)
            fastact.softmax(np.ascontiguousarray(x.T), axis=0)
    finally:
        fastact.set_num_threads(n0)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert calls == ["_prl_softmax", "_p_sigmoid", "_pl_softmax"]
        assert np.array_equal(got, want)  # row-wise: splitting changes nothing


def test_concurrent_python_threads():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((256 + 64 * i, 700)).astype(np.float32) for i in range(4)]
    with fastact.use_backend("numba"):
        want = [(fastact.softmax(x), fastact.logsumexp(x, axis=0), fastact.gelu(x)) for x in xs]
    errors = []

    def work(i):
        try:
            with fastact.use_backend("numba"):
                for _ in range(15):
                    got = (fastact.softmax(xs[i]), fastact.logsumexp(xs[i], axis=0), fastact.gelu(xs[i]))
                    for a, b in zip(got, want[i]):
                        np.testing.assert_array_equal(a, b)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_set_num_threads_is_clamped_to_numbas_pool():
    n0 = fastact.get_num_threads()
    try:
        fastact.set_num_threads(10_000)
        assert nj._NT[0] == numba.config.NUMBA_NUM_THREADS
        fastact.set_num_threads(1)
        assert nj._NT[0] == 1
    finally:
        fastact.set_num_threads(n0)


# ---------------------------------------------------------------------------
# compilation and the cache


def test_import_compiles_nothing():
    out = run_py("""
        import sys, time
        t = time.perf_counter()
        import fastact
        print('numba' in sys.modules)
        import fastact._backends.numba_jit as nj, fastact.numba as fn
        from numba.core.registry import CPUDispatcher
        ds = [d for m in (nj, fn) for d in vars(m).values() if isinstance(d, CPUDispatcher)]
        print(len(ds) > 50, sum(len(d.signatures) for d in ds))
    """)
    assert out.split() == ["False", "True", "0"]


def test_stale_cache_guard_covers_every_backend_file():
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    ours = [c for c in impl._locator_classes if getattr(c, "_fastact", False)]
    assert len(ours) == 3
    names = {os.path.basename(f) for f in nm._SOURCES}
    assert names == {"numba_math.py", "numba_rows.py", "numba_jit.py", "numba_gen.py", "numba.py"}
    # a helper's file is part of every kernel's cache key
    kernel = ours[1].from_function(nj._e_sigmoid.py_func, nj.__file__)
    helper = ours[1].from_function(nm.tanh.py_func, nm.__file__)
    assert kernel.get_source_stamp() == helper.get_source_stamp()
    assert ours[1].from_function(test_import_compiles_nothing, __file__) is None  # not ours


def test_generated_kernels_are_up_to_date(tmp_path):
    """numba_gen.py is what tools/gen_numba_kernels.py writes now (after
    editing its tables or templates: python tools/gen_numba_kernels.py), its
    functions are numba_jit's, and they are under the stale-cache guard."""
    tool = os.path.join(ROOT, "tools", "gen_numba_kernels.py")
    if not os.path.exists(tool):
        pytest.skip("no tools/ beside the package (an installed wheel)")
    fresh = tmp_path / "numba_gen.py"
    subprocess.run([sys.executable, tool, str(fresh)], check=True, timeout=120)
    from fastact._backends import numba_gen as ng

    with open(ng.__file__, encoding="utf-8") as fh:
        committed = fh.read()
    assert fresh.read_text(encoding="utf-8") == committed, \
        "fastact/_backends/numba_gen.py is out of date: run python tools/gen_numba_kernels.py"
    r = subprocess.run([sys.executable, tool, "--check", ng.__file__], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from numba.core.registry import CPUDispatcher

    assert len(ng.__all__) > 100
    for name in ng.__all__:
        assert isinstance(getattr(ng, name), CPUDispatcher), name
        assert getattr(nj, name) is getattr(ng, name), name
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    ours = [c for c in impl._locator_classes if getattr(c, "_fastact", False)]
    gen = ours[1].from_function(ng._rt_softmax.py_func, ng.__file__)
    helper = ours[1].from_function(nm.tanh.py_func, nm.__file__)
    assert gen is not None and gen.get_source_stamp() == helper.get_source_stamp()


def _copy_package(dst):
    pkg = os.path.join(dst, "fastact")
    shutil.copytree(os.path.dirname(fastact.__file__), pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    return pkg


CODE_RUN = """
    import numpy as np, fastact
    import fastact._backends.numba_jit as nj
    assert fastact.backend_status()["numba"] is None, fastact.backend_status()
    with fastact.use_backend("numba"):
        r = fastact.softmax(np.array([[1.0, 2.0, 3.0]]))
    assert abs(r.sum() - 1) < 1e-12
    print(nj.CACHE, sum(nj._e_sigmoid.stats.cache_hits.values()) + sum(nj._rt_softmax.stats.cache_hits.values()))
"""


def test_compile_command_fills_the_cache(tmp_path):
    """``python -m fastact compile`` leaves every path of the kernels it was
    given in the disk cache: a later process calling them on any layout
    (short rows, a whole tile of them, long rows, inner > 1) compiles
    nothing."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    out = run_py("""
        from fastact.__main__ import main
        raise SystemExit(main(["compile", "--kernels", "softmax,relu", "--dtypes", "float32",
                               "--threads", "1"]))
    """, env=env)
    assert "2 kernel/dtype pairs" in out and "(serial versions only)" in out, out
    out = run_py("""
        import numpy as np, fastact
        import fastact._backends.numba_jit as nj
        from fastact import testing as ft
        from numba.core.registry import CPUDispatcher
        fastact.set_backend("numba")
        for kernel, shape, axis in (("relu", (5, 3), -1), ("softmax", (3, 7), -1),
                                    ("softmax", (100, 5), -1), ("softmax", (3, 300), -1),
                                    ("softmax", (2, 7, 5), 1)):
            c = ft.case(kernel, shape, np.float32, axis)
            problem, err = ft.compare(ft.run(c), ft.reference(c))
            assert problem is None, (kernel, shape, problem)
        ds = [d for d in vars(nj).values() if isinstance(d, CPUDispatcher)]
        print(sum(sum(d.stats.cache_misses.values()) for d in ds),
              sum(sum(d.stats.cache_hits.values()) for d in ds) > 0)
    """, env=env)
    assert out.split() == ["0", "True"], out


@pytest.mark.parametrize("args, message", [
    (("--kernels", "softmax,nope"), "unknown kernels: nope"),
    (("--dtypes", "float32,float16"), "--dtypes: float32 and/or float64"),
    (("--threads", "0"), "--threads must be >= 1"),
])
def test_compile_command_refuses_bad_arguments(args, message):
    r = subprocess.run([sys.executable, "-m", "fastact", "compile", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_cache_dir_from_numba_cache_dir(tmp_path):
    src = tmp_path / "src"
    _copy_package(src)
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(src)}
    first = run_py(CODE_RUN, env=env, cwd=str(tmp_path)).split()
    assert first == ["True", "0"]
    assert any(f.endswith(".nbi") for _, _, fs in os.walk(cache) for f in fs)
    second = run_py(CODE_RUN, env=env, cwd=str(tmp_path)).split()
    assert second == ["True", "1"]  # loaded from the cache, not recompiled


def test_read_only_install(tmp_path):
    """A read-only site-packages: the cache goes to the user-wide cache dir
    (or, with none writable, functions are compiled per process); never an
    import error."""
    src = tmp_path / "site"
    pkg = _copy_package(src)
    # unwritable in-tree cache dirs, even for root: a file where each
    # __pycache__ directory would go (and read-only permissions)
    for d in (pkg, os.path.join(pkg, "_backends")):
        with open(os.path.join(d, "__pycache__"), "w"):
            pass
    for d, _, fs in os.walk(src):
        os.chmod(d, 0o555)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o444)
    home = tmp_path / "home"
    home.mkdir()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {"PYTHONPATH": str(src), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    try:
        out = run_py(CODE_RUN, env=env, cwd=str(tmp_path)).split()
        assert out == ["True", "0"]
        assert any(f.endswith(".nbi") for _, _, fs in os.walk(home) for f in fs)
        out = run_py(CODE_RUN, env=env, cwd=str(tmp_path)).split()
        assert out == ["True", "1"]  # the user-wide cache is used
        # nowhere writable: still imports and computes, without a cache
        env.update(HOME=str(blocker), XDG_CACHE_HOME=str(blocker / "cache"))
        out = run_py(CODE_RUN, env=env, cwd=str(tmp_path)).split()
        assert out == ["False", "0"]
    finally:
        for d, _, fs in os.walk(tmp_path):
            os.chmod(d, 0o755)


def test_without_numba_the_backend_is_reported_missing():
    out = run_py("""
        import sys
        sys.modules["numba"] = None  # import numba raises ImportError
        import fastact
        print(fastact.backends()[-1], "numba" in fastact.backends())
        print(fastact.backend_status()["numba"])
        print(fastact.softmax([0.0, 0.0]).tolist())
        from fastact.__main__ import main
        print("compile:", main(["compile", "--kernels", "relu"]))
    """)
    lines = out.splitlines()
    assert lines[0] == "numpy False"
    assert "numba is not installed" in lines[1]
    assert lines[2] == "[0.5, 0.5]"
    assert lines[3] == "compile: 1"  # (the reason goes to stderr)


def test_short_rows_prefetch_from_6_mib():
    """The short-row paths prefetch ahead from arrays of 6 MiB on (_far):
    left to the hardware prefetcher, 6-8 MiB arrays (the benchmarks' 1M
    float64 entries are 8) took up to 3x their time in the caches."""
    from fastact._backends import numba_jit as nj

    for dtype in (np.float32, np.float64):
        n = (6 << 20) // np.dtype(dtype).itemsize
        assert nj._far(np.empty(n, dtype)), dtype
        assert not nj._far(np.empty(n - 1, dtype)), dtype
