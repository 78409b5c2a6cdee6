"""Every registry kernel, on every backend, against the NumPy reference:
dtypes, shapes, axes, memory layouts, edge values, out=, in-place.

Everything here is generated from ``fastact._registry``: a new kernel or a
new backend joins these tests without a line changed.
"""

import numpy as np
import pytest
from conftest import KERNELS, assert_close, ulps_for

import fastact
from fastact import _registry
from fastact import testing as ft

KIND = {name: k.kind for name, k in _registry.KERNELS.items()}
ROWS = ("rows", "rows_reduce", "rows_backward", "rows_reduce_backward")
LOSSES = ("loss_index", "loss_index_grad", "loss_prob", "loss_prob_grad")

# (shape, axis) cases; axis matters for row kernels and losses only
ROW_CASES = [
    ((5, 17), -1), ((5, 17), 0), ((3, 4, 9), 1), ((3, 4, 9), -1), ((3, 4, 9), (0, 2)),
    ((3, 4, 9), None), ((3, 4, 9), (1, 2)), ((2, 1500), -1), ((40, 3), 0), ((7,), 0),
]
LOSS_CASES = [((5, 17), -1), ((5, 17), 0), ((3, 4, 9), 1), ((6, 3), -1), ((2, 1500), -1), ((7,), 0)]
ELEMENTWISE_CASES = [((5, 17), -1), ((3, 4, 9), -1), ((1000,), -1)]


def cases_for(kernel):
    kind = KIND[kernel]
    if kind in ROWS:
        return ROW_CASES
    if kind in LOSSES:
        return LOSS_CASES
    return ELEMENTWISE_CASES


PARAMS = [
    pytest.param(k, shape, axis, id=f"{k}-{shape}-{axis}".replace(" ", ""))
    for k in KERNELS
    for shape, axis in cases_for(k)
]


def _n(shape, axis):
    if axis is None:
        return int(np.prod(shape))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([shape[a] for a in axes]))


@pytest.mark.parametrize("kernel,shape,axis", PARAMS)
def test_matches_reference_in_every_layout(backend, dtype, kernel, shape, axis):
    c = ft.case(kernel, shape, dtype, axis)
    ref = ft.reference(c)
    ulps = ulps_for(kernel, _n(shape, axis))
    for name, _ in ft.layouts(c.main):
        def make(a, name=name):
            return dict(ft.layouts(a)).get(name, a)
        lc = c.map(make)
        snapshot = [a.copy() for a in lc.arrays]
        r = ft.run(lc)
        assert_close(r, ref, ulps, what=f"{backend} {kernel} {name}")
        for a, s in zip(lc.arrays, snapshot):  # inputs are never written
            np.testing.assert_array_equal(a, s)
    # mixed layouts: the first array C, the others F-ordered
    if len(c.arrays) > 1 and len(shape) > 1:
        first = c.arrays[0]
        mixed = c.map(lambda a: a if a is first or a.ndim < 2 else np.asfortranarray(a))
        assert_close(ft.run(mixed), ref, ulps, what=f"{backend} {kernel} mixed")


@pytest.mark.parametrize("kernel", KERNELS)
def test_out_argument(backend, dtype, kernel):
    c = ft.case(kernel, (6, 11), dtype, -1)
    if KIND[kernel] in LOSSES or KIND[kernel] == "binary_backward" or KIND[kernel] == "binary":
        pytest.skip("losses return new arrays (no out=)")
    ref = ft.reference(c)
    ulps = ulps_for(kernel, 11)
    # a fresh C buffer, an F buffer, a strided buffer
    for out in (np.empty_like(ref), np.asfortranarray(np.empty_like(ref)),
                np.zeros((2 * ref.shape[0],) + ref.shape[1:], ref.dtype)[::2]):
        r = ft.run(c, out=out)
        assert r is out
        assert_close(out, ref, ulps, what=f"{kernel} out")
    # in place: out is one of the inputs of the same shape
    for i, a in enumerate(c.arrays):
        if a.shape == ref.shape and a.dtype == ref.dtype:
            fresh = c.map(np.copy)
            target = fresh.arrays[i]
            r = ft.run(fresh, out=target)
            assert r is target and np.shares_memory(r, target)
            assert_close(r, ref, ulps, what=f"{kernel} in place on array {i}")
    # out overlapping an input without being it is an error (as in PyTorch),
    # raised before anything is written
    if KIND[kernel] in ("elementwise", "rows", "elementwise_backward", "rows_backward"):
        first = c.arrays[0]
        buf = np.zeros((ref.shape[0] + 1,) + ref.shape[1:], ref.dtype)
        buf[1:] = first
        shifted = c.map(lambda a: buf[1:] if a is first else a)
        before = buf.copy()
        with pytest.raises(ValueError, match="overlaps"):
            ft.run(shifted, out=buf[:-1])
        np.testing.assert_array_equal(buf, before)
    # out owns its memory and an input is a view of exactly that memory:
    # in place (owning its data does not make out disjoint from views of it)
    for i, a in enumerate(c.arrays):
        if a.shape == ref.shape and a.dtype == ref.dtype:
            own = np.array(a)
            viewed = c.map(lambda b, a=a: own[...] if b is a else b)
            assert ft.run(viewed, out=own) is own
            assert_close(own, ref, ulps, what=f"{kernel} out owning the memory input {i} views")


@pytest.mark.parametrize("kernel", KERNELS)
def test_bad_out_writes_nothing(backend, kernel):
    c = ft.case(kernel, (4, 5), np.float64, -1)
    if KIND[kernel] in LOSSES + ("binary", "binary_backward"):
        pytest.skip("losses take no out=")
    ref = ft.reference(c)
    for bad in (np.full((5, 4), 7.0), np.full(ref.shape, 7, np.float32), np.full(ref.shape[:-1] + (ref.shape[-1] + 1,), 7.0)):
        before = bad.copy()
        with pytest.raises(ValueError) as e:
            ft.run(c, out=bad)
        assert str(bad.shape) in str(e.value) or str(bad.dtype) in str(e.value)
        np.testing.assert_array_equal(bad, before)
    ro = np.zeros_like(ref)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ft.run(c, out=ro)
    with pytest.raises(TypeError):
        ft.run(c, out=[0.0] * ref.size)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ("elementwise", "elementwise_backward")])
def test_edge_values_elementwise(backend, dtype, kernel):
    k = _registry.KERNELS[kernel]
    vals = np.array(ft.EDGE_VALUES)
    # and where exp(-|x|), exp(-1.5|x|) (softplus's test beta) are subnormal
    tails = np.array([-60.0, -65.0, -95.0, -100.0, -480.0, -490.0, -720.0, -740.0])
    with np.errstate(over="ignore"):
        x = np.concatenate([vals, tails]).astype(dtype)
    if k.domain == (0.0, 1.0):  # logit: also the ends and outside [0, 1]
        x = np.concatenate([x, np.array([0.0, 1.0, 0.25, 0.75, 1 - 1e-7, 1e-7], dtype)])
    kw = dict(k.api_kwargs)
    kw.update(k.params)
    func = getattr(fastact, k.api)
    if k.is_backward:
        # every gradient value, the edge ones too, against every input value
        with np.errstate(over="ignore"):
            gv = np.concatenate([vals, np.linspace(-2, 2, 9)]).astype(dtype)
        x, g = (a.ravel() for a in np.meshgrid(x, gv))
        args = (g, x)
    else:
        args = (x,)
    r = func(*args, **kw)
    with fastact.use_backend("numpy"):
        ref = func(*args, **kw)
    assert_close(r, ref, ulps_for(kernel), what=f"{backend} {kernel} edge")
    # zeros keep their sign as the reference gives it
    zero = (ref == 0) & (r == 0)
    assert (np.signbit(r[zero]) == np.signbit(ref[zero])).all(), \
        f"{backend} {kernel}: signed zeros at {np.argwhere(zero & (np.signbit(r) != np.signbit(ref)))[:4].tolist()}"


def _check_edge_rows(backend, kernel, x, axis):
    """The row kernel on rows x along axis (backward passes: the gradient of
    the forward pass at x) against the reference."""
    k = _registry.KERNELS[kernel]
    if k.kind in ("rows", "rows_reduce"):
        args = (x,)
    elif k.kind == "rows_backward":
        with fastact.use_backend("numpy"):
            y = getattr(fastact, k.forward)(x, axis=axis)
        args = (np.ones_like(x) * 0.5, y)
    else:
        with fastact.use_backend("numpy"):
            lse = fastact.logsumexp(x, axis=axis)
        args = (np.ones_like(lse), x, lse)
    r = getattr(fastact, k.api)(*args, axis=axis)
    with fastact.use_backend("numpy"):
        ref = getattr(fastact, k.api)(*args, axis=axis)
    assert_close(r, ref, ulps_for(kernel, x.shape[axis]), what=f"{backend} {kernel} axis={axis}")


@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ROWS])
def test_edge_rows(backend, dtype, kernel):
    with np.errstate(over="ignore"):
        x = ft.edge_rows().astype(dtype)
    for axis, xx in ((-1, x), (0, np.ascontiguousarray(x.T))):
        _check_edge_rows(backend, kernel, xx, axis)


def _check_new_and_in_place(c, ulps, what):
    """Case c into a new array, and in place on each input that can be the
    output, against the reference."""
    ref = ft.reference(c)
    assert_close(ft.run(c), ref, ulps, what=what)
    for i, a in enumerate(c.arrays):
        if a.shape == ref.shape and a.dtype == ref.dtype:
            fresh = c.map(np.copy)
            r = ft.run(fresh, out=fresh.arrays[i])
            assert_close(r, ref, ulps, what=f"{what} in place on array {i}")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8, 10, 15, 16, 17, 20, 31, 32])
@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ROWS])
def test_short_rows(backend, dtype, kernel, n):
    """Contiguous short rows, which the Cython kernels compute row by row
    when they fill whole SIMD registers (4-32 entries, by vector width) and
    otherwise through transposed tiles of 64 rows, as the Numba kernels do
    for some lengths (70 rows: a whole tile and part of one; rows of 3-7
    moved into and out of the tile by loops compiled for each length; 17-31
    entries: two register columns, the second partial): random rows into a new array and
    in place, and the edge rows' NaN/inf mixes repeated over 84 rows (the
    NaN and inf rows inside a whole tile)."""
    _check_new_and_in_place(ft.case(kernel, (70, n), dtype, -1), ulps_for(kernel, n),
                            f"{backend} {kernel} rows of {n}")
    with np.errstate(over="ignore"):
        x = np.tile(ft.edge_rows(), (6, -(-n // 4)))[:, :n].astype(dtype)
    _check_edge_rows(backend, kernel, x, -1)


@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward"])
def test_packed_rows_with_nan_and_inf_anywhere(backend, dtype, kernel):
    """Rows of 2, 4, 8 and 16 entries, which the compiled kernels pack
    several (or one) to a SIMD register (a row with a NaN may then get
    different maxima in its lanes; each row's sums by butterflies over its
    lanes), and rows of 7 and 20, which the Cython backward passes take one
    at a time with masked loads: NaN, +inf and -inf anywhere (random; for
    the backward passes in both inputs), 301 rows (whole blocks, the last
    register partial), into a new array and in place."""
    rng = np.random.default_rng(5)
    for n in (2, 4, 7, 8, 16, 20):
        x = rng.uniform(-5, 5, (301, n)).astype(dtype)
        pick = np.array([np.nan, np.inf, -np.inf, 1.0])
        special = rng.choice(pick, size=x.shape, p=[0.1, 0.1, 0.2, 0.6])
        c = ft.case(kernel, x.shape, dtype, -1, x=np.where(special == 1.0, x, special).astype(dtype))
        if KIND[kernel] == "rows_backward":
            g = c.arrays[0]
            special = rng.choice(pick, size=x.shape, p=[0.02, 0.02, 0.02, 0.94])
            g[...] = np.where(special == 1.0, g, special)
        _check_new_and_in_place(c, ulps_for(kernel, n), f"{backend} {kernel} rows of {n}")


@pytest.mark.parametrize("n", [7, 24, 200])
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward"])
def test_short_rows_past_the_caches(backend, dtype, kernel, n):
    """Short rows of arrays past 6 MiB, where the compiled kernels prefetch
    ahead (the float32 tiles; the backward passes' rows one at a time,
    which Numba then takes 8 rows a step in a loop of its own;
    log_softmax's and logsumexp's rows of a few registers, the Cython ones
    with a flag in fa_rows_np's op), the last rows not a whole tile or
    step: into a new array, against the reference, NaN and inf rows among
    them."""
    rows = (8 << 20) // (n * np.dtype(dtype).itemsize) + 77
    c = ft.case(kernel, (rows, n), dtype, -1)
    x = c.arrays[-1] if KIND[kernel] == "rows_backward" else c.arrays[0]
    x[[5, rows // 2, rows - 3]] = np.array([np.nan, np.inf, -np.inf], dtype)[:, None]
    assert_close(ft.run(c), ft.reference(c), ulps_for(kernel, n), what=f"{backend} {kernel} {rows} rows of {n}")


@pytest.mark.parametrize("C", [3, 10, 24])
@pytest.mark.parametrize("kernel", [k for k, v in _registry.KERNELS.items() if v.kind.startswith("loss")])
def test_losses_past_the_caches(backend, dtype, kernel, C):
    """Cross-entropy over logits past 6 MiB, where the compiled kernels
    prefetch the next block of samples (logits, probability targets, the
    gradient's rows for writing; the prefetches themselves change no
    result, the blocks' bounds around them could), the last block not
    whole, NaN and inf logits among them, against the reference."""
    rows = (6 << 20) // (C * np.dtype(dtype).itemsize) + 77
    c = ft.case(kernel, (rows, C), dtype, -1, seed=C)
    x = c.arrays[0]
    x[[5, rows // 2, rows - 3], 0] = np.array([np.nan, np.inf, -np.inf], dtype)
    x[rows - 40, :] = -np.inf
    assert_close(ft.run(c), ft.reference(c), ulps_for(kernel, C), what=f"{backend} {kernel} {rows} samples of {C}")


@pytest.mark.parametrize("n", [300, 1000, 1001, 1007, 4099])
@pytest.mark.parametrize("kernel", ["log_softmax_backward", "logsumexp_backward"])
def test_long_row_exps_at_the_range_ends(backend, dtype, kernel, n):
    """The exps of the long-row backward passes (exp(y), exp(x - lse); the
    Cython AVX-512 loop scales them by vscalef and ends in a masked part
    register) at arguments where exp overflows, is subnormal or underflows
    to 0, NaN and +-inf among ordinary values, rows of every length mod 16
    past the packed paths, against the reference."""
    rng = np.random.default_rng(11)
    ends = ([88.7, 89.0, -87.3, -88.0, -100.0, -103.9, -104.0, -104.5] if dtype == np.float32
            else [709.0, 710.0, -708.0, -740.0, -745.0, -746.0, -760.0, -761.0])
    vals = np.array(ends + [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30])
    rows = 3
    a = rng.standard_normal((rows, n)) * 5
    pick = rng.random((rows, n)) < 0.3
    a[pick] = rng.choice(vals, size=int(pick.sum()))
    a = a.astype(dtype)
    if kernel == "log_softmax_backward":  # g > 0: a sum of g without cancellation
        args = (rng.uniform(0.5, 1.5, (rows, n)).astype(dtype), a)
    else:
        args = (rng.standard_normal(rows).astype(dtype), a, rng.uniform(-3, 3, rows).astype(dtype))
    func = getattr(fastact, kernel)
    r = func(*args, axis=-1)
    with fastact.use_backend("numpy"):
        ref = func(*args, axis=-1)
    assert_close(r, ref, ulps_for(kernel, n), what=f"{backend} {kernel} rows of {n}")


@pytest.mark.parametrize("n", [2, 5, 16, 17, 40, 64, 65, 100, 130, 131, 1000, 1031])
def test_tiny_rest_terms_are_kept(backend, dtype, n):
    """logsumexp keeps the largest term out of the sum: for rows [0, -80,
    ..., -80] it is (n - 1) exp(-80) to full relative accuracy (not 0, as
    log(1 + tiny) gives), and so are -log_softmax of the 0 and the
    cross-entropy of its class.  Every row length path (short, packed, several
    vector chunks -- where the terms of chunks without the max were once
    lost --, long rows), one row and 70, the 0 first and last (a last 0 in
    the entries after the vector chunks once lost the terms before it
    there: rows of 130 0.8% off)."""
    want = (n - 1) * np.exp(np.float64(-80))
    for rows in (1, 70):
        for at in (0, n - 1):
            x = np.full((rows, n), -80.0, dtype)
            x[:, at] = 0
            got = {
                "logsumexp": fastact.logsumexp(x),
                "-log_softmax": -fastact.log_softmax(x)[:, at],
                "cross_entropy": fastact.cross_entropy(x, np.full(rows, at, np.int64), reduction="none"),
            }
            for what, r in got.items():
                np.testing.assert_allclose(r.astype(np.float64), want, rtol=1e-5,
                                           err_msg=f"{backend} {what} rows of {n} ({rows} rows, 0 at {at})")


@pytest.mark.parametrize("shape", [(37, 5, 3), (70, 9, 2), (9, 32, 15), (5, 33, 7), (6, 6, 16), (4, 3, 33),
                                   (5, 4, 48), (4, 5, 64), (3, 7, 100), (2, 40, 127)])
@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ROWS])
def test_narrow_lanes(backend, dtype, kernel, shape):
    """Axis 1 of (outer, n, inner) with a narrow inner axis, which the
    compiled kernels take several outer blocks side by side (inner < 16
    and n <= 32: 64 // inner blocks a group, the last group partial; the
    other shapes are just past the limits), and wider inner axes, which
    the Cython lane helpers split into sub-chunks of 64, 32 and 16 lanes
    and a rest (48, 64, 100 = 64 + 32 + 4, 127 = 64 + 32 + 16 + 15): random
    input into a new array and in place, and the edge rows' NaN/inf mixes
    as lanes."""
    _check_new_and_in_place(ft.case(kernel, shape, dtype, 1), ulps_for(kernel, shape[1]),
                            f"{backend} {kernel} {shape}")
    o, n, inner = shape
    e = ft.edge_rows()
    with np.errstate(over="ignore"):
        lanes = np.tile(e, (-(-o * inner // len(e)), -(-n // e.shape[1])))[:o * inner, :n].astype(dtype)
    x = np.ascontiguousarray(lanes.reshape(o, inner, n).transpose(0, 2, 1))
    _check_edge_rows(backend, kernel, x, 1)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ROWS])
def test_row_kernels_take_implicit_inner(backend, dtype, kernel):
    """A row kernel called with (outer, n) arrays and (outer,) reduced ones
    (how the dispatch hands over 2-D inputs) computes exactly what it does
    with the explicit (outer, n, 1) and (outer, 1)."""
    rng = np.random.default_rng(3)
    o, n = 70, 10
    kind = KIND[kernel]
    full = [rng.standard_normal((o, n)).astype(dtype) for _ in range(2)]
    red = [rng.standard_normal(o).astype(dtype) for _ in range(2)]
    ins = {"rows": full[:1], "rows_reduce": full[:1], "rows_backward": full,
           "rows_reduce_backward": [red[0], full[0], red[1]]}[kind]
    out = np.empty(o if kind == "rows_reduce" else (o, n), dtype)
    k = getattr(fastact._config.current(), kernel)
    k(*ins, out)
    out3 = np.empty(out.shape + (1,), dtype)
    k(*[a.reshape(a.shape + (1,)) for a in ins], out3)
    np.testing.assert_array_equal(out, out3.reshape(out.shape))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0,), ()], ids=str)
def test_empty_and_zero_d(backend, dtype, kernel, shape):
    kind = KIND[kernel]
    if kind in LOSSES or kind in ("binary", "binary_backward"):
        if shape == () or shape[-1] == 0:
            pytest.skip("a loss needs classes / elements")
    c = ft.case(kernel, shape, dtype, -1)
    ref = ft.reference(c)
    r = ft.run(c)
    assert_close(r, ref, ulps_for(kernel), what=f"{kernel} {shape}")
    if kind == "rows_reduce" and shape and shape[-1] == 0:
        assert (np.asarray(r) == -np.inf).all()  # empty sum: log 0


@pytest.mark.parametrize("kernel", [k for k in KERNELS if KIND[k] in ROWS])
def test_long_rows_float32(backend, kernel):
    """Blocked/pairwise sums: 2^17 columns stay within a few ULP per sqrt(n)."""
    c = ft.case(kernel, (2, 1 << 17), np.float32, -1)
    ref = ft.reference(c)
    assert_close(ft.run(c), ref, ulps_for(kernel, 1 << 17), what=f"{kernel} long rows")


@pytest.mark.parametrize("kernel", KERNELS)
def test_nasty_arrays(backend, dtype, kernel):
    """Every kernel on every hostile input of fastact.testing.nasty agrees
    with the reference (NaN/inf exactly) and never warns or raises."""
    kind = KIND[kernel]
    for name, x in ft.nasty(dtype):
        if kind in LOSSES and (x.ndim == 0 or x.shape[-1] == 0):
            continue  # a loss needs a class axis with classes
        if kind in LOSSES or kind in ("binary", "binary_backward"):
            x = np.where(np.isfinite(x), x, 0).astype(x.dtype)  # losses: IEEE on finite logits only
        c = ft.case(kernel, dtype=dtype, axis=-1, x=x)
        ref = ft.reference(c)
        r = ft.run(c)
        assert_close(r, ref, ulps_for(kernel, x.shape[-1] if x.ndim else 1), what=f"{backend} {kernel} {name}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_large_arrays_threads_agree(backend, kernel):
    """Arrays large enough for the multi-threaded paths: two threads give the
    same bits as one, and both match the reference.  Rows of 1024, and for
    the row kernels rows of 100 (one or a few registers a row)."""
    cases = [((512, 1024), -1)]
    if KIND[kernel] in ROWS + LOSSES:
        cases += [((512, 1024), 0), ((16384, 100), -1)]
    before = fastact.get_num_threads()
    try:
        for dtype in (np.float32, np.float64):
            for shape, axis in cases:
                c = ft.case(kernel, shape, dtype, axis)
                fastact.set_num_threads(1)
                one = ft.run(c)
                fastact.set_num_threads(2)
                two = ft.run(c)
                np.testing.assert_array_equal(one, two, err_msg=f"{kernel} {dtype} axis={axis}")
                assert_close(two, ft.reference(c), ulps_for(kernel, shape[axis]),
                             what=f"{backend} {kernel} {np.dtype(dtype).name} axis={axis}")
    finally:
        fastact.set_num_threads(before)
