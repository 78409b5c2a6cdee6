"""fastact: fast, numerically stable activation kernels for NumPy arrays.

Softmax, log-softmax, log-sum-exp, sigmoid, logit, softplus, tanh, the ReLU
family, GELU, SiLU and cross-entropy, each with its backward pass, over
arrays of any shape along any axis, in float32 and float64, on one of three
interchangeable backends (``"cython"``, ``"numba"``, ``"numpy"``).
``fastact.special`` is a drop-in for the same-named ``scipy.special``
functions.

>>> import fastact
>>> fastact.softmax([0.0, 0.0]).tolist()
[0.5, 0.5]
"""

from ._version import __version__
from ._config import (
    backend_status,
    backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from ._api import (
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_sigmoid,
    log_sigmoid_backward,
    log_softmax,
    log_softmax_backward,
    logit,
    logit_backward,
    logsumexp,
    logsumexp_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    softmax_jacobian,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from ._losses import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_with_grad,
)

__all__ = ["__version__", *_config.__all__, *_api.__all__, *_losses.__all__]


def _document_bounds():
    """Append each function's documented error bound (from the registry) to
    its docstring, so the figure lives in one place."""
    from . import _registry

    by_api = {}
    for k in _registry.KERNELS.values():
        by_api.setdefault(k.api, []).append(k)
    for api, ks in by_api.items():
        f = globals()[api]
        bounds = sorted({k.ulps for k in ks})
        rows = any(k.kind.startswith(("rows", "loss")) for k in ks)
        text = (f"\n    Error bound: on every backend, within {'-'.join(map(str, bounds))} ulp of the NumPy "
                "reference (units of eps * (|ref| + 1))"
                + (f", plus {_registry.ROW_ULPS_PER_SQRT_N} * sqrt(n) for rows of length n" if rows else "")
                + "; measured figures: docs/accuracy.md, ``python -m fastact accuracy``.\n")
        if f.__doc__ and "Error bound:" not in f.__doc__:
            f.__doc__ = f.__doc__.rstrip() + "\n" + text


_document_bounds()
