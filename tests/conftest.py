import numpy as np
import pytest

import fastact
from fastact import _registry

BACKENDS = fastact.backends()
KERNELS = tuple(_registry.KERNELS)
DTYPES = (np.float32, np.float64)

# Error budget of each backend against the NumPy reference, in units of
# eps * (|ref| + scale), i.e. ULPs with an absolute floor at `scale`.  The
# floor is where a kernel's result is a difference of O(1) terms (backward
# passes, losses) and only absolute accuracy is meaningful; the per-kernel
# figures are the documented bounds (see docs/accuracy.md).
DEFAULT_ULPS = 16
KERNEL_ULPS = {
    "gelu": 32,
    "gelu_backward": 64,
    "gelu_tanh_backward": 64,
    "logit_backward": 32,
}
#: long rows accumulate rounding in the sum: allow this many ULPs per
#: sqrt(n) on top (float32 blocked sums stay far below it)
ROW_ULPS_PER_SQRT_N = 2


def ulps_for(kernel, n=1):
    return KERNEL_ULPS.get(kernel, DEFAULT_ULPS) + ROW_ULPS_PER_SQRT_N * int(np.sqrt(n))


def assert_close(r, ref, ulps=DEFAULT_ULPS, scale=1.0, what=""):
    """r equals ref within ulps * eps * (|ref| + scale); NaN and inf exactly."""
    r = np.asarray(r)
    ref = np.asarray(ref)
    assert r.shape == ref.shape, f"{what}: shape {r.shape} != {ref.shape}"
    assert r.dtype == ref.dtype, f"{what}: dtype {r.dtype} != {ref.dtype}"
    if r.size == 0:
        return
    nan_r, nan_ref = np.isnan(r), np.isnan(ref)
    bad = nan_r != nan_ref
    assert not bad.any(), f"{what}: NaN mismatch at {np.argwhere(bad)[:5].tolist()}: {r[bad][:5]} vs {ref[bad][:5]}"
    inf = np.isinf(ref) | np.isinf(r)
    badinf = inf & (r != ref)
    assert not badinf.any(), f"{what}: inf mismatch: {r[badinf][:5]} vs {ref[badinf][:5]}"
    fin = ~(nan_ref | inf)
    eps = np.finfo(r.dtype).eps
    with np.errstate(all="ignore"):
        err = np.abs(r[fin].astype(np.float64) - ref[fin].astype(np.float64))
        bound = ulps * eps * (np.abs(ref[fin].astype(np.float64)) + scale)
    over = err > bound
    if over.any():
        i = np.argmax(err / bound)
        raise AssertionError(
            f"{what}: {over.sum()} of {fin.sum()} values off by more than {ulps} ulp "
            f"(scale {scale}); worst {r[fin][i]!r} vs {ref[fin][i]!r} "
            f"({err[i] / (eps * (abs(ref[fin][i]) + scale)):.1f} ulp)"
        )


@pytest.fixture(params=BACKENDS)
def backend(request):
    with fastact.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)
