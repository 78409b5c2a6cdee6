"""Accuracy harness: every kernel x dtype x backend against a higher-precision
reference (``python -m fastact accuracy``).

The reference is the NumPy backend run one precision up: float64 for float32
inputs, ``np.longdouble`` (x87 80-bit, 64-bit mantissa, on x86-64) for
float64 inputs.  Inputs mix uniform draws over each kernel's domain,
log-uniform magnitudes from 1e-6 up, and the extreme finite values of
``fastact.testing.EDGE_VALUES``; rows mix scales from 1e-2 to 1e3.

Reported per kernel, dtype and backend:

* ``max ulp`` / ``median ulp``: relative error in units in the last place of
  the result's dtype, over results that are normal numbers;
* ``bound``: the largest error in the registry's metric, ULPs with an
  absolute floor at 1 (``|r - ref| / (eps (|ref| + 1))``), against the
  documented bound ``Kernel.ulps``;
* for the softmax family, ``cond``: the relative error divided by the
  condition number ``1 + |x - max|`` that the rounding of the inputs alone
  forces on ``exp(x - max)``.

Where the reference itself is limited (the erf-based GELU kernels call
``math.erfc`` in float64, so their float64 figures are within about one ULP
of the true error), the table says so.
"""

from __future__ import annotations

import sys

import numpy as np

from . import _registry
from . import testing as ft

ROW_KINDS = ("rows", "rows_reduce", "rows_backward", "rows_reduce_backward")
SOFTMAX_FAMILY = ("softmax", "log_softmax", "logsumexp")
ERF_KERNELS = ("gelu", "gelu_backward")


def _hp(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float32 else np.dtype(np.longdouble)


def _elementwise_input(k, dtype, rng, n):
    lo, hi = k.domain
    parts = [rng.uniform(lo, hi, n)]
    mag = 10 ** rng.uniform(-6, np.log10(max(abs(lo), abs(hi))), n)
    parts.append(mag * rng.choice([-1.0, 1.0], n))
    with np.errstate(over="ignore", invalid="ignore"):
        edge = np.array([v for v in ft.EDGE_VALUES if np.isfinite(v)], dtype=np.float64)
        edge = edge[np.isfinite(edge.astype(dtype))]
    parts.append(edge)
    x = np.concatenate(parts)
    if lo == 0.0:  # probabilities
        x = np.concatenate([rng.uniform(0, 1, n), 10 ** rng.uniform(-12, -1, n), 1 - 10 ** rng.uniform(-7, -1, n)])
    return x.astype(dtype)


def _row_input(dtype, rng, rows, n):
    scale = 10 ** rng.uniform(-2, 3, (rows, 1))
    return (rng.normal(size=(rows, n)) * scale).astype(dtype)


def _cases(k, dtype, rng, n):
    if k.kind.startswith("elementwise") or k.kind.startswith("binary"):
        yield ft.case(k, dtype=dtype, x=_elementwise_input(k, dtype, rng, n))
    else:
        # rows of 100 in 70 rows: a whole tile of 64 rows of the short-row
        # paths (float32 on both compiled backends) and rows after it
        for cols, rows in ((16, max(4, n // 16)), (100, 70), (1000, max(4, n // 1000))):
            yield ft.case(k, dtype=dtype, axis=-1, x=_row_input(dtype, rng, rows, cols), seed=cols)


def _errors(r, ref_hp, dtype):
    """(relative ulp errors over normal results, registry-metric errors)."""
    r = np.asarray(r)
    ref = np.asarray(ref_hp)
    fin = np.isfinite(ref) & np.isfinite(r)
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny
    a, b = r[fin].astype(ref.dtype), ref[fin]
    err = np.abs(a - b)
    with np.errstate(all="ignore"):
        spacing = np.spacing(np.abs(b).astype(dtype)).astype(ref.dtype)
        normal = np.abs(b) >= tiny
        rel_ulp = (err / spacing)[normal]
        metric = err / (eps * (np.abs(b) + 1))
    mismatch = int(np.count_nonzero(np.isnan(r) != np.isnan(ref)) + np.count_nonzero(
        (np.isinf(r) | np.isinf(ref)) & (r != ref.astype(r.dtype))))
    return rel_ulp.astype(np.float64), metric.astype(np.float64), mismatch


def measure(kernels=None, dtypes=("float32", "float64"), backends=None, n=4000, seed=0, progress=None):
    import fastact

    kernels = list(_registry.KERNELS) if kernels is None else kernels
    backends = fastact.backends() if backends is None else backends
    rows = []
    todo = [(k, d) for k in kernels for d in dtypes]
    for i, (name, dtype) in enumerate(todo):
        if progress:
            progress(i, len(todo), f"{name} {dtype}")
        k = _registry.KERNELS[name]
        dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        cases = list(_cases(k, dtype, rng, n))
        hp = _hp(dtype)
        refs = [ft.reference(c.map(lambda a: a.astype(hp) if a.dtype.kind == "f" else a)) for c in cases]
        for b in backends:
            rel, met, mis, cond = [], [], 0, []
            for c, ref in zip(cases, refs):
                with fastact.use_backend(b):
                    r = ft.run(c)
                e_rel, e_met, m = _errors(r, ref, dtype)
                rel.append(e_rel)
                met.append(e_met)
                mis += m
                if name in SOFTMAX_FAMILY:
                    x = c.args[0].astype(np.float64)
                    spread = 1 + np.abs(x - x.max(axis=-1, keepdims=True))
                    if name == "logsumexp":
                        spread = spread.max(axis=-1)
                    ok = np.isfinite(np.asarray(ref)) & (np.abs(np.asarray(ref)) >= np.finfo(dtype).tiny)
                    with np.errstate(all="ignore"):
                        full = np.abs(np.asarray(r).astype(hp) - ref) / np.spacing(np.abs(ref).astype(dtype)).astype(hp)
                    cond.append((full[ok] / spread[ok]).astype(np.float64))
            rel = np.concatenate(rel) if rel else np.zeros(0)
            met = np.concatenate(met) if met else np.zeros(0)
            rows.append({
                "kernel": name, "dtype": dtype.name, "backend": b,
                "max_ulp": float(rel.max()) if rel.size else 0.0,
                "median_ulp": float(np.median(rel)) if rel.size else 0.0,
                "max_bound_metric": float(met.max()) if met.size else 0.0,
                "bound": k.ulps, "special_mismatches": mis,
                "max_cond_ulp": float(np.concatenate(cond).max()) if cond else None,
                "points": int(rel.size),
            })
    return rows


def format_table(rows, out=sys.stdout, markdown=False):
    head = ["kernel", "dtype", "backend", "max ulp", "median ulp", "max err / eps(|ref|+1)",
            "documented bound", "ulp / (1+|x-max|)", "NaN/inf mismatches"]
    if markdown:
        print("| " + " | ".join(head) + " |", file=out)
        print("|" + "---|" * len(head), file=out)
    else:
        print(f"{'kernel':<26}{'dtype':>8}{'backend':>8}{'max ulp':>10}{'med ulp':>9}"
              f"{'bound-metric':>13}{'bound':>6}{'cond ulp':>10}{'nan/inf':>8}", file=out)
    for r in rows:
        cond = "" if r["max_cond_ulp"] is None else f"{r['max_cond_ulp']:.2f}"
        note = " *" if r["kernel"] in ERF_KERNELS and r["dtype"] == "float64" else ""
        if markdown:
            print(f"| {r['kernel']}{note} | {r['dtype']} | {r['backend']} | {r['max_ulp']:.1f} | "
                  f"{r['median_ulp']:.2f} | {r['max_bound_metric']:.2f} | {r['bound']} | {cond} | "
                  f"{r['special_mismatches']} |", file=out)
        else:
            print(f"{r['kernel'] + note:<26}{r['dtype']:>8}{r['backend']:>8}{r['max_ulp']:>10.1f}"
                  f"{r['median_ulp']:>9.2f}{r['max_bound_metric']:>13.2f}{r['bound']:>6}{cond:>10}"
                  f"{r['special_mismatches']:>8}", file=out)
    print("\n* float64 reference of the erf-based GELU is limited by math.erfc (about 1 ulp).", file=out)
