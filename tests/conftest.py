import numpy as np
import pytest

import fastact
from fastact import _registry
from fastact.testing import compare

BACKENDS = fastact.backends()
KERNELS = tuple(_registry.KERNELS)
DTYPES = (np.float32, np.float64)

DEFAULT_ULPS = 16


def ulps_for(kernel, n=1):
    """The documented bound (fastact._registry: Kernel.ulps) for rows of n."""
    return _registry.ulps_bound(kernel, n)


def assert_close(r, ref, ulps=DEFAULT_ULPS, scale=1.0, what=""):
    """r equals ref within ulps * eps * (|ref| + scale); NaN and inf exactly."""
    problem, err = compare(r, ref, scale)
    assert problem is None, f"{what}: {problem}"
    assert err <= ulps, f"{what}: off by {err:.1f} ulp (budget {ulps}, scale {scale})"


@pytest.fixture(params=BACKENDS)
def backend(request):
    with fastact.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)
