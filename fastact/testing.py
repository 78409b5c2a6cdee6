"""Inputs and calls for every registry kernel: the one table that drives the
test suite, the benchmarks (asv and ``python -m fastact bench``) and the
self-check.

``case(kernel, shape, dtype, axis)`` builds realistic arguments for the
public function that reaches ``kernel`` (backward kernels get the saved
forward input or output they expect), and ``run(case)`` calls it, so that
tests and benchmarks exercise the dispatch layer exactly as users do.
``layouts(x)`` gives the same values in every memory layout the dispatch
layer must handle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _registry

__all__ = ["Case", "case", "run", "reference", "layouts", "nasty", "compare", "EDGE_VALUES", "edge_rows"]

#: values every elementwise kernel must handle without warnings
EDGE_VALUES = (
    np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, -1e-300,
    5e-324, 1e-30, -1e-30, 20.0, -20.0, 88.7, -88.7, 89.0, -104.0, 709.8, -745.2,
    1e10, -1e10, 1e30, -1e30, 1e300, -1e300, 3.4e38, -3.4e38,
)


def edge_rows():
    """Rows with NaN/inf mixes for the row kernels (each row is one case)."""
    inf, nan = np.inf, np.nan
    return np.array([
        [1.0, 2.0, 3.0, 4.0],
        [nan, 1.0, 2.0, 3.0],
        [1.0, nan, inf, -inf],
        [inf, 1.0, 2.0, 3.0],
        [inf, inf, 1.0, 0.0],
        [inf, -inf, 0.0, 0.0],
        [-inf, -inf, -inf, -inf],
        [-inf, 0.0, -inf, 1.0],
        [-inf, -inf, 5.0, -inf],
        [1000.0, 970.0, 940.0, -1000.0],
        [-1000.0, -1000.0, -1000.0, -1000.0],
        [0.0, -40.0, -80.0, -745.0],
        [3e38, -3e38, 0.0, 1.0],
        [5e-324, -5e-324, 0.0, -0.0],
    ])


def plant_special_rows(x, forward, low=-80.0, top=1):
    """Plant the special rows of the row-path tests into ``x`` (rows, n), in
    place: row 0 a NaN in the middle, row 1 +inf last, row 2 all -inf, row 3
    -inf first; with more than 68 rows also row 66 all +inf and row 67 a NaN
    next to last.  For a forward input (not g of a backward pass, where
    g - dot would be ill-conditioned) row 4 is ``low`` but 0 at ``top`` and
    row 68 has two equal maxima.  Returns log1p((n - 1) exp(low)), the
    logsumexp of row 4 (-log_softmax at ``top``), which a kernel must give
    to full relative accuracy, or None for a backward input."""
    n = x.shape[1]
    x[0, n // 2], x[1, -1], x[2, :], x[3, 0] = np.nan, np.inf, -np.inf, -np.inf
    if forward:
        x[4, :], x[4, top] = low, 0
    if x.shape[0] > 68:
        x[66, :], x[67, n - 2] = np.inf, np.nan
        if forward:
            x[68, 2], x[68, n - 3] = 50, 50
    return float(np.log1p((n - 1) * np.exp(low))) if forward else None


def tiny_rest_error(kernel, r, top, tiny):
    """Relative error of row 4 of plant_special_rows in result r of
    log_softmax or logsumexp (None for the other kernels)."""
    if kernel not in ("log_softmax", "logsumexp"):
        return None
    got = float(r[4]) if kernel == "logsumexp" else -float(r[4, top])
    return abs(got - tiny) / tiny


def nasty(dtype=np.float64, seed=0):
    """``(name, array)`` pairs of hostile inputs every kernel must handle like
    the reference: NaN/inf mixes, all -inf and +inf rows, huge and tiny
    magnitudes, subnormals, 0-d, empty shapes, and the values of a random
    array in every memory layout of :func:`layouts` (strided, negative
    strides, F order, byte-swapped, read-only)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        yield "edge-values", np.array(EDGE_VALUES).astype(dtype).reshape(1, -1)
        yield "edge-rows", edge_rows().astype(dtype)
    fin = np.finfo(dtype)
    yield "huge", (rng.uniform(-1, 1, (3, 8)) * fin.max / 4).astype(dtype)
    yield "tiny", (rng.uniform(-1, 1, (3, 8)) * fin.tiny * 4).astype(dtype)
    yield "subnormal", (rng.uniform(-1, 1, (3, 8)) * fin.tiny / 2 ** 10).astype(dtype)
    yield "all-minus-inf", np.full((2, 5), -np.inf, dtype)
    yield "all-plus-inf", np.full((2, 5), np.inf, dtype)
    yield "all-nan", np.full((2, 5), np.nan, dtype)
    yield "0-d", np.array(0.75, dtype)
    yield "empty-rows", np.zeros((0, 5), dtype)
    yield "empty-cols", np.zeros((5, 0), dtype)
    base = rng.normal(size=(6, 9)).astype(dtype) * 3
    for name, a in layouts(base):
        if name != "C":
            yield name, a


@dataclasses.dataclass
class Case:
    kernel: _registry.Kernel
    args: tuple
    kwargs: dict

    @property
    def func(self):
        import fastact

        return getattr(fastact, self.kernel.api)

    @property
    def arrays(self) -> list:
        """Every array argument, positional then keyword."""
        return [a for a in (*self.args, *self.kwargs.values()) if isinstance(a, np.ndarray)]

    @property
    def main(self) -> np.ndarray:
        """The array the kernel's cost scales with (for GB/s figures)."""
        return max(self.arrays, key=lambda a: a.size)

    def map(self, fn) -> "Case":
        """The same case with ``fn`` applied to every array argument."""
        def f(a):
            return fn(a) if isinstance(a, np.ndarray) else a
        return Case(self.kernel, tuple(f(a) for a in self.args),
                    {k: f(v) for k, v in self.kwargs.items()})


def _draw(rng, shape, dtype, domain):
    lo, hi = domain
    x = rng.uniform(lo, hi, size=shape)
    if lo == 0.0:  # probabilities: keep away from exact 0 and 1
        x = np.clip(x, 1e-3, 1 - 1e-3)
    return x.astype(dtype)


def case(kernel, shape=(4, 7), dtype=np.float64, axis=-1, seed=0, x=None) -> Case:
    """Arguments for the public call that reaches ``kernel``.

    ``shape`` is the shape of the main input; for the losses ``axis`` is the
    class axis (and for row kernels, the reduced axis).  ``x`` replaces the
    random forward input (its shape wins over ``shape``).
    """
    import fastact

    k = _registry.KERNELS[kernel] if isinstance(kernel, str) else kernel
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    kw = dict(k.api_kwargs)
    params = dict(k.params)
    if x is None:
        x = _draw(rng, shape, dtype, k.domain)
    else:
        x = np.asarray(x, dtype)
        shape = x.shape
    kind = k.kind

    def ref(name, *a, **kwa):
        with fastact.use_backend("numpy"):
            return np.asarray(getattr(fastact, name)(*a, **kwa)).astype(dtype)

    if kind == "elementwise":
        kw.update(params)
        return Case(k, (x,), kw)
    if kind == "elementwise_backward":
        f = _registry.KERNELS[k.forward]
        kw.update(params)
        g = _draw(rng, shape, dtype, (-2.0, 2.0))
        s = ref(f.api, x, **dict(f.api_kwargs), **params) if k.saved == "y" else x
        if k.saved_kw:
            kw[k.saved_kw] = s
            return Case(k, (g,), kw)
        return Case(k, (g, s), kw)
    if kind in ("rows", "rows_reduce"):
        return Case(k, (x,), {"axis": axis})
    if kind == "rows_backward":
        g = _draw(rng, shape, dtype, (-2.0, 2.0))
        return Case(k, (g, ref(k.forward, x, axis=axis)), {"axis": axis})
    if kind == "rows_reduce_backward":
        lse = ref("logsumexp", x, axis=axis)
        g = _draw(rng, lse.shape, dtype, (-2.0, 2.0))
        return Case(k, (g, x, lse), {"axis": axis})
    if kind in ("binary", "binary_backward"):
        t = _draw(rng, shape, dtype, (0.0, 1.0))
        if kind == "binary":
            return Case(k, (x, t), {"reduction": "none"})
        return Case(k, (x, t), {"reduction": "sum", "grad": params["scale"]})
    # losses: class axis `axis`
    kw = {"axis": axis, "reduction": "none", **params}
    C = x.shape[axis] if x.ndim else 1
    red = tuple(s for i, s in enumerate(x.shape) if i != axis % max(x.ndim, 1))
    if kind.startswith("loss_index"):
        t = rng.integers(0, max(C, 1), size=red)
        t[rng.uniform(size=red) < 0.15] = params["ignore_index"]
    else:
        t = rng.uniform(size=x.shape)
        t[rng.uniform(size=x.shape) < 0.2] = 0.0  # exact zeros: 0 * log p = 0
        t = (t / np.maximum(t.sum(axis=axis, keepdims=True), 1e-30)).astype(dtype)
    if kind.endswith("_grad"):
        kw["grad"] = _draw(rng, red, dtype, (-2.0, 2.0))
    return Case(k, (x, t), kw)


def run(c: Case, out=None):
    """Call the public function of case ``c`` (with ``out=`` if given)."""
    kw = dict(c.kwargs)
    if out is not None:
        kw["out"] = out
    return c.func(*c.args, **kw)


def reference(c: Case):
    """Result of case ``c`` on the NumPy reference backend."""
    import fastact

    with fastact.use_backend("numpy"):
        return run(c)


def layouts(x: np.ndarray):
    """``(name, array)`` pairs holding the values of ``x`` in different
    memory layouts: C, F, strided, negative strides, permuted axes,
    byte-swapped and read-only."""
    yield "C", np.array(x, order="C")
    if x.ndim >= 2:
        yield "F", np.asfortranarray(x)
        perm = (1, 0) + tuple(range(2, x.ndim))
        yield "permuted", np.ascontiguousarray(x.transpose(perm)).transpose(perm)
    if x.ndim >= 1:
        big = np.zeros(tuple(2 * s for s in x.shape), x.dtype)
        sl = tuple(slice(None, None, 2) for _ in x.shape)
        big[sl] = x
        yield "strided", big[sl]
        flip = tuple(slice(None, None, -1) for _ in x.shape)
        yield "negative-stride", np.ascontiguousarray(x[flip])[flip]
    yield "byteswapped", x.astype(x.dtype.newbyteorder()) if x.dtype.itemsize > 1 else x
    ro = np.array(x)
    ro.flags.writeable = False
    yield "read-only", ro


def compare(r, ref, scale=1.0):
    """Compare a result with its reference.

    Returns ``(problem, ulps)``: ``problem`` is None or a message about a
    shape/dtype/NaN/inf mismatch (these must match exactly), and ``ulps``
    is the largest error on finite values in units of
    ``eps * (|ref| + scale)``, i.e. ULPs with an absolute floor at ``scale``.
    """
    r, ref = np.asarray(r), np.asarray(ref)
    if r.shape != ref.shape:
        return f"shape {r.shape} != {ref.shape}", np.inf
    if r.dtype != ref.dtype:
        return f"dtype {r.dtype} != {ref.dtype}", np.inf
    if r.size == 0:
        return None, 0.0
    nan_r, nan_ref = np.isnan(r), np.isnan(ref)
    if (nan_r != nan_ref).any():
        bad = nan_r != nan_ref
        return f"NaN mismatch at {np.argwhere(bad)[:3].tolist()}: {r[bad][:3]} vs {ref[bad][:3]}", np.inf
    inf = np.isinf(ref) | np.isinf(r)
    if (inf & (r != ref)).any():
        bad = inf & (r != ref)
        return f"inf mismatch at {np.argwhere(bad)[:3].tolist()}: {r[bad][:3]} vs {ref[bad][:3]}", np.inf
    fin = ~(nan_ref | inf)
    if not fin.any():
        return None, 0.0
    eps = float(np.finfo(r.dtype).eps)
    a = r[fin].astype(np.float64)
    b = ref[fin].astype(np.float64)
    with np.errstate(all="ignore"):
        ulps = np.abs(a - b) / (eps * (np.abs(b) + scale))
    return None, float(ulps.max())
