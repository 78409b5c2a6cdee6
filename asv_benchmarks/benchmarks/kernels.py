"""fastact's asv benchmarks, generated from the kernel registry.

One timing class per registry kernel (``Time_<kernel>``), parametrized by
implementation (fastact's backends first, then the peers PyTorch, SciPy and
hand-written NumPy), dtype, shape, axis and thread count; a ``Track``
class records each kernel's max ULP error against the NumPy reference so
accuracy regressions show up next to speed.  Unavailable implementations
raise NotImplementedError in setup (asv skips them); JIT compilation and
warm-up happen in setup and are never timed.

Row kernels and losses also get a ``TimeShortRows_<kernel>`` class: 1M
entries in rows (classes) of 3 to 32 along the last axis, single-threaded,
fastact's compiled backends against PyTorch: the shapes that take the
backends' tiled and blocked short-row paths, which the main shapes miss.

Every kernel whose inputs may be any real also gets a ``TimeFar_<kernel>``
class: every other entry along the last axis far below the rest (-1e4: a
masked attention score, a saturated pre-activation), whose exps round to 0
-- computed through an underflow, those cost Intel cores a microcode assist
a vector (7-10x the time) -- in rows of 12 and 1024, single-threaded.

FASTACT_ASV_SHAPES (e.g. "64x10"), FASTACT_ASV_SHORT_SHAPES,
FASTACT_ASV_FAR_SHAPES and FASTACT_ASV_KERNELS (e.g. "softmax,sigmoid") restrict the shapes and
kernels; FASTACT_ASV_SMOKE=1
shrinks the suite to one small case per kind of benchmark (CI smoke run:
asv starts a process per parameter combination).
"""

import os

import numpy as np

import fastact
from fastact import _bench, _registry
from fastact import testing as ft

SMOKE = os.environ.get("FASTACT_ASV_SMOKE", "") not in ("", "0")
IMPLS = ["fastact-cython", "fastact-numba", "fastact-numpy", "torch", "scipy", "numpy"]
DTYPES = ["float32", "float64"]
# small; cache-resident (fits the 2 MiB per-core L2); larger than L2
SHAPES = os.environ.get("FASTACT_ASV_SHAPES", "64x10,256x512,4096x1024").split(",")
THREADS = [1, 2]
# 1M entries each; rows of 3, 7 and 12 are odd lengths, 16 and 32 whole vectors
SHORT_SHAPES = os.environ.get("FASTACT_ASV_SHORT_SHAPES",
                              "349525x3,149796x7,87381x12,65536x16,32768x32").split(",")
SHORT_IMPLS = ["fastact-cython", "fastact-numba", "torch"]
FAR_SHAPES = os.environ.get("FASTACT_ASV_FAR_SHAPES", "87381x12,1024x1024").split(",")
FAR = -1e4
KERNELS = [k for k in os.environ.get("FASTACT_ASV_KERNELS", ",".join(_registry.KERNELS)).split(",")
           if k in _registry.KERNELS]
if SMOKE:
    IMPLS, DTYPES, SHAPES, THREADS = [f"fastact-{fastact.backends()[0]}", "torch"], ["float32"], ["64x10"], [1]
    KERNELS = ["softmax", "logsumexp_backward", "cross_entropy_index_grad"]
    SHORT_IMPLS, SHORT_SHAPES, FAR_SHAPES = IMPLS, ["200x3"], ["200x3"]
AXIS_KINDS = ("rows", "rows_reduce", "rows_backward", "rows_reduce_backward",
              "loss_index", "loss_index_grad", "loss_prob", "loss_prob_grad")


def _shape(text):
    return tuple(int(v) for v in text.split("x"))


class _Timing:
    kernel = None
    api = None  # call another public function on the same case (fused CE)
    far = False  # every other entry along the last axis at FAR
    param_names = ["impl", "dtype", "shape", "axis", "threads"]
    timeout = 120

    def setup(self, impl, dtype, shape, axis, threads):
        shp = _shape(shape)
        if threads > 1 and np.prod(shp) < 1 << 16:
            raise NotImplementedError("small arrays run single-threaded")
        x = None
        if self.far:
            x = np.random.default_rng(0).standard_normal(shp).astype(dtype)
            x[..., 1::2] = FAR
        case = ft.case(self.kernel, shp, dtype, axis, x=x)
        if impl.startswith("fastact-"):
            backend = impl[len("fastact-"):]
            if backend not in fastact.backends():
                raise NotImplementedError(fastact.backend_status()[backend])
            fastact.set_backend(backend)
            fastact.set_num_threads(threads)
            func = getattr(fastact, self.api) if self.api else case.func
            self.fn = lambda: func(*case.args, **case.kwargs)
        else:
            if self.api:
                raise NotImplementedError("no fused peer")
            try:
                fn = _bench.PEERS[impl](case)
            except ImportError:
                fn = None
            if fn is None:
                raise NotImplementedError(f"{impl} has no {self.kernel}")
            if impl == "torch":
                import torch

                torch.set_num_threads(threads)
            self.fn = fn
        self.fn()  # compile / warm up outside the timing

    def time_call(self, *params):
        self.fn()


def _timing_class(name, kernel, api=None):
    k = _registry.KERNELS[kernel]
    axes = [-1, 0] if k.kind in AXIS_KINDS and not SMOKE else [-1]
    return type(name, (_Timing,), {
        "kernel": kernel, "api": api,
        "params": [IMPLS, DTYPES, SHAPES, axes, THREADS],
    })


def _short_rows_class(name, kernel, far=False):
    return type(name, (_Timing,), {
        "kernel": kernel, "api": None, "far": far,
        "params": [SHORT_IMPLS, DTYPES, FAR_SHAPES if far else SHORT_SHAPES, [-1], [1]],
    })


for _name in KERNELS:
    globals()[f"Time_{_name}"] = _timing_class(f"Time_{_name}", _name)
    if _registry.KERNELS[_name].kind in AXIS_KINDS:
        globals()[f"TimeShortRows_{_name}"] = _short_rows_class(f"TimeShortRows_{_name}", _name)
    if _registry.KERNELS[_name].domain[0] < 0:
        globals()[f"TimeFar_{_name}"] = _short_rows_class(f"TimeFar_{_name}", _name, far=True)
if "cross_entropy_index_grad" in KERNELS:
    # the fused loss-and-gradient call on the same inputs as the CE backward
    Time_cross_entropy_with_grad = _timing_class(
        "Time_cross_entropy_with_grad", "cross_entropy_index_grad", api="cross_entropy_with_grad")


class Track:
    """Max error in ULP of every kernel against the NumPy reference."""

    param_names = ["backend", "dtype", "kernel"]
    params = [["cython", "numba", "numpy"] if not SMOKE else [fastact.backends()[0]], DTYPES, KERNELS]
    unit = "ulp"

    def setup(self, backend, dtype, kernel):
        if backend not in fastact.backends():
            raise NotImplementedError(fastact.backend_status()[backend])

    def track_max_ulp(self, backend, dtype, kernel):
        worst = 0.0
        for shape, axis in (((64, 257), -1), ((33, 40), 0), ((4, 5000), -1)):
            c = ft.case(kernel, shape, dtype, axis)
            ref = ft.reference(c)
            with fastact.use_backend(backend):
                problem, err = ft.compare(ft.run(c), ref)
            if problem:
                return float("inf")
            worst = max(worst, err)
        return worst
