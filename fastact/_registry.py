"""The one list of kernels.

Every backend implements every kernel named here, as a function of the same
name in its backend module (``fastact._backends.<backend>``).  The public API
(``fastact._api``), the test suite and the asv benchmarks all read this list;
adding an activation means one entry here plus its math once per backend.

The kernel contract (what the dispatch layer guarantees, what kernels do)
-------------------------------------------------------------------------
* Every floating-point array handed to a kernel is C-contiguous, aligned, in
  native byte order, and all of them share one dtype: float32 or float64
  (the NumPy backend also receives ``np.longdouble``).  Integer class targets
  are C-contiguous ``np.intp``.  Scalar parameters are Python floats/ints.
* Elementwise kernels see arrays of one shape, which they treat as flat: 1-D
  from the general path, the caller's own shape from the fast path (a
  reshape per array costs ~0.15 us, as much as a small call's arithmetic).
* Row kernels see the canonical ``(outer, n, inner)`` view and reduce over
  ``n`` (axis 1); reduced arrays are ``(outer, inner)``.  ``inner == 1`` is
  the common "last axis" case; ``inner > 1`` reduces along a non-last axis of
  a contiguous array without any transposed copy.  Any of the three may be 0.
  When ``inner == 1`` the trailing axis may be absent: full arrays are then
  ``(outer, n)`` and reduced ones ``(outer,)`` -- the dispatch hands a 2-D
  input over as it is, which saves two reshapes (~0.3 us) on small calls.
* An output array is either disjoint from every input or *exactly* one of
  the inputs (same memory, same shape); kernels must be correct in both cases
  (``softmax(x, out=x)``).  Partial overlaps never reach a kernel.
* Kernels write every element of their outputs and return nothing.  They
  never raise, never warn and never touch floating-point state.
* Non-finite values (see API.md): a row whose maximum is not finite (NaN
  anywhere, +inf anywhere, or all -inf) gives a NaN softmax row;
  ``logsumexp`` is the IEEE value of log(sum(exp(x))) (NaN if any NaN,
  else +inf if any +inf, else -inf if all -inf); ``log_softmax`` is
  ``x - logsumexp(x)`` in IEEE arithmetic.  Elementwise kernels map NaN to
  NaN and +-inf to the mathematical limit.

Kinds and kernel signatures
---------------------------
``elementwise``             ``k(x, out, *params)``
``elementwise_backward``    ``k(grad, s, out, *params)``, ``s`` is the forward
                            input ``x`` or output ``y`` (see ``saved``)
``binary``                  ``k(x, target, out)``
``binary_backward``         ``k(x, target, out, scale)``
``rows``                    ``k(x, out)``                x, out: (o, n, i)
``rows_reduce``             ``k(x, out)``                out: (o, i)
``rows_backward``           ``k(grad, y, out)``          all (o, n, i)
``rows_reduce_backward``    ``k(grad, x, lse, out)``     grad, lse: (o, i)
``loss_index``              ``k(x, target, loss, ignore_index, label_smoothing)``
``loss_index_grad``         ``k(x, target, scale, loss, dx, ignore_index,
                            label_smoothing)``
``loss_prob``               ``k(x, p, loss, label_smoothing)``
``loss_prob_grad``          ``k(x, p, scale, loss, dx, label_smoothing)``

For the losses: ``x``, ``p``, ``dx`` are (o, C, i); ``target``, ``scale``,
``loss`` are (o, i).  With ``q = (1 - eps) * onehot(target) + eps / C`` (or
``(1 - eps) * p + eps / C``), ``loss = -sum_c q_c * log_softmax(x)_c`` where a
term with ``q_c == 0`` contributes 0, and ``dx = scale * (softmax(x) * sum(q)
- q)``.  A sample whose target equals ``ignore_index`` gets loss 0 and dx 0.
Targets are validated before the kernel runs.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Kernel", "KERNELS", "KINDS", "get", "ulps_bound", "ROW_ULPS_PER_SQRT_N"]

KINDS = (
    "elementwise",
    "elementwise_backward",
    "binary",
    "binary_backward",
    "rows",
    "rows_reduce",
    "rows_backward",
    "rows_reduce_backward",
    "loss_index",
    "loss_index_grad",
    "loss_prob",
    "loss_prob_grad",
)


class Kernel(NamedTuple):
    """One kernel: what it is called, how it is called, how to exercise it."""

    name: str
    kind: str
    #: public function in ``fastact`` that reaches this kernel
    api: str
    #: fixed keyword arguments of ``api`` that select this kernel
    api_kwargs: tuple = ()
    #: scalar parameters, in kernel order, with the values tests and
    #: benchmarks use (the public keyword has the same name)
    params: tuple = ()
    #: for backward kernels: the forward kernel, and whether the saved
    #: tensor passed after ``grad`` is the forward input ("x") or output ("y")
    forward: str | None = None
    saved: str | None = None
    #: open interval the forward input is drawn from in tests/benchmarks
    domain: tuple = (-10.0, 10.0)
    #: keyword the saved tensor is passed under in the public call (None:
    #: positionally, after grad) -- e.g. sigmoid_backward(grad, x=x)
    saved_kw: str | None = None
    #: documented bound of every backend against the NumPy reference, in
    #: units of eps * (|ref| + 1) (ULPs with an absolute floor at 1); row
    #: kernels add ROW_ULPS_PER_SQRT_N * sqrt(n) for rows of length n
    ulps: int = 16

    @property
    def is_backward(self) -> bool:
        return self.forward is not None

    @property
    def param_names(self) -> tuple:
        return tuple(p for p, _ in self.params)


#: extra error allowed per sqrt(row length) for row kernels (rounding in sums)
ROW_ULPS_PER_SQRT_N = 2


def ulps_bound(kernel, n=1) -> int:
    """The documented error bound of ``kernel`` for rows of length ``n``."""
    k = KERNELS[kernel] if isinstance(kernel, str) else kernel
    extra = ROW_ULPS_PER_SQRT_N * int(n ** 0.5) if k.kind.startswith(("rows", "loss")) else 0
    return k.ulps + extra


def _ew(name, api=None, params=(), domain=(-10.0, 10.0), api_kwargs=(), ulps=16):
    return Kernel(name, "elementwise", api or name, api_kwargs, params, domain=domain, ulps=ulps)


def _ewb(fwd, saved, api=None, api_kwargs=(), ulps=16):
    f = _BY_NAME[fwd]
    return Kernel(
        fwd + "_backward",
        "elementwise_backward",
        api or (f.api + "_backward"),
        api_kwargs=api_kwargs or f.api_kwargs,
        params=f.params,
        forward=fwd,
        saved=saved,
        domain=f.domain,
        ulps=ulps,
    )


_BY_NAME: dict = {}


def _add(*ks):
    for k in ks:
        assert k.kind in KINDS, k
        assert k.name not in _BY_NAME, k.name
        _BY_NAME[k.name] = k


_SOFTPLUS = (("beta", 1.5), ("threshold", 20.0))
_add(
    _ew("sigmoid"),
    _ew("log_sigmoid"),
    _ew("logit", domain=(0.0, 1.0)),
    _ew("softplus", params=_SOFTPLUS),
    _ew("tanh"),
    _ew("relu"),
    _ew("leaky_relu", params=(("negative_slope", 0.01),)),
    _ew("gelu", api_kwargs=(("approximate", "none"),), ulps=32),
    _ew("gelu_tanh", api="gelu", api_kwargs=(("approximate", "tanh"),)),
    _ew("silu"),
)
_add(
    _ewb("sigmoid", "y"),
    # x-forms of the y-form backward passes: accurate where the output
    # saturates (from y = sigmoid(17) in float32, y(1-y) is 0; from x it is
    # sigmoid(x) sigmoid(-x) = 4.1e-8)
    Kernel("sigmoid_backward_x", "elementwise_backward", "sigmoid_backward",
           forward="sigmoid", saved="x", saved_kw="x"),
    Kernel("tanh_backward_x", "elementwise_backward", "tanh_backward",
           forward="tanh", saved="x", saved_kw="x"),
    _ewb("log_sigmoid", "x"),
    _ewb("logit", "x", ulps=32),
    _ewb("softplus", "x"),
    _ewb("tanh", "y"),
    _ewb("relu", "x"),
    _ewb("leaky_relu", "x"),
    _ewb("gelu", "x", ulps=64),
    _ewb("gelu_tanh", "x", api="gelu_backward", ulps=64),
    _ewb("silu", "x"),
)
_add(
    Kernel("softmax", "rows", "softmax"),
    Kernel("log_softmax", "rows", "log_softmax"),
    Kernel("logsumexp", "rows_reduce", "logsumexp"),
    Kernel("softmax_backward", "rows_backward", "softmax_backward",
           forward="softmax", saved="y"),
    Kernel("log_softmax_backward", "rows_backward", "log_softmax_backward",
           forward="log_softmax", saved="y"),
    Kernel("logsumexp_backward", "rows_reduce_backward", "logsumexp_backward",
           forward="logsumexp", saved="x"),
    Kernel("bce_with_logits", "binary", "binary_cross_entropy_with_logits"),
    Kernel("bce_with_logits_backward", "binary_backward",
           "binary_cross_entropy_with_logits_backward",
           params=(("scale", 0.5),), forward="bce_with_logits", saved="x"),
    Kernel("cross_entropy_index", "loss_index", "cross_entropy",
           params=(("ignore_index", -100), ("label_smoothing", 0.1))),
    Kernel("cross_entropy_index_grad", "loss_index_grad", "cross_entropy_backward",
           params=(("ignore_index", -100), ("label_smoothing", 0.1)),
           forward="cross_entropy_index", saved="x"),
    Kernel("cross_entropy_prob", "loss_prob", "cross_entropy",
           params=(("label_smoothing", 0.1),)),
    Kernel("cross_entropy_prob_grad", "loss_prob_grad", "cross_entropy_backward",
           params=(("label_smoothing", 0.1),), forward="cross_entropy_prob", saved="x"),
)

#: name -> Kernel, in registration order
KERNELS: dict = dict(_BY_NAME)


def get(name: str) -> Kernel:
    return KERNELS[name]
