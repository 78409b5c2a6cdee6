"""Side-by-side benchmarks: fastact's backends against PyTorch (CPU), SciPy,
hand-written NumPy and ``np.copy`` of the same array (the memory-bandwidth
bound), all in one process, min of repeated runs.

Inputs come from ``fastact.testing.case`` (the same table the tests use);
peers are the equivalent call in each library.  ``python -m fastact bench``
is the command line; ``run()`` the function behind it.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import sys
import time

import numpy as np

from . import _config, _registry
from . import testing as ft

#: kernels of the issue's speed goals (forward and backward)
GOAL_KERNELS = (
    "softmax", "log_softmax", "logsumexp", "sigmoid", "tanh", "softplus", "gelu",
    "silu", "softmax_backward", "sigmoid_backward", "tanh_backward",
)
GOAL_SHAPES = ((4096, 1024), (256, 32768), (65536, 16))
QUICK_KERNELS = ("softmax", "logsumexp", "sigmoid")
QUICK_SHAPES = ((4096, 1024),)


# ---------------------------------------------------------------------------
# timing


def best_times(impls, min_time=0.02, repeat=7):
    """Seconds per call of each implementation: the minimum over ``repeat``
    runs of the mean time of a loop lasting at least ``min_time``.

    ``impls`` maps a name to ``(fn, context)``, ``context`` a zero-argument
    factory of the context manager the loop runs in (a fastact backend).
    Each implementation's runs are consecutive (so each reaches its own
    steady state, as in a user's loop), in two passes, the second in the
    reverse order: on this VM the same kernel measured 20-35% apart
    depending on what ran just before it (where its fresh output landed),
    and the reverse pass gives every implementation a second placement.
    (Interleaving single runs instead made PyTorch up to 2.5x slower.)"""
    best = dict.fromkeys(impls, math.inf)
    names = list(impls)
    per_pass = max(1, (repeat + 1) // 2)
    for order in (names, names[::-1]):
        for name in order:
            fn, context = impls[name]
            with context():
                fn()  # warm up (JIT compilation, first-touch of caches)
                t0 = time.perf_counter()
                fn()
                one = max(time.perf_counter() - t0, 1e-7)
                k = max(1, int(min_time / one))
                for _ in range(per_pass):
                    t0 = time.perf_counter()
                    for _ in range(k):
                        fn()
                    best[name] = min(best[name], (time.perf_counter() - t0) / k)
    return best


# ---------------------------------------------------------------------------
# peers: each takes a Case (of the forward or backward kernel) and returns a
# zero-argument callable, or None when the peer has no such function


def _numpy_peer(c):
    """Hand-written, stable NumPy: what a user writes without a library."""
    name = c.kernel.name
    a = c.args
    axis = c.kwargs.get("axis", -1)
    if name == "softmax":
        def f():
            e = np.exp(a[0] - a[0].max(axis=axis, keepdims=True))
            return e / e.sum(axis=axis, keepdims=True)
        return f
    if name == "logsumexp":
        def f():
            m = a[0].max(axis=axis, keepdims=True)
            return np.log(np.exp(a[0] - m).sum(axis=axis)) + np.squeeze(m, axis)
        return f
    if name == "log_softmax":
        def f():
            d = a[0] - a[0].max(axis=axis, keepdims=True)
            return d - np.log(np.exp(d).sum(axis=axis, keepdims=True))
        return f
    if name == "sigmoid":
        return lambda: 1 / (1 + np.exp(-a[0]))
    if name == "tanh":
        return lambda: np.tanh(a[0])
    if name == "relu":
        return lambda: np.maximum(a[0], 0)
    if name == "softmax_backward":
        g, y = a
        return lambda: y * (g - (g * y).sum(axis=axis, keepdims=True))
    if name == "sigmoid_backward":
        g, y = a
        return lambda: g * y * (1 - y)
    if name == "tanh_backward":
        g, y = a
        return lambda: g * (1 - y * y)
    return None


def _scipy_peer(c):
    try:
        import scipy.special as sp
    except ImportError:
        return None
    name = c.kernel.name
    a = c.args
    axis = c.kwargs.get("axis", -1)
    table = {
        "softmax": lambda: sp.softmax(a[0], axis=axis),
        "log_softmax": lambda: sp.log_softmax(a[0], axis=axis),
        "logsumexp": lambda: sp.logsumexp(a[0], axis=axis),
        "sigmoid": lambda: sp.expit(a[0]),
        "log_sigmoid": lambda: sp.log_expit(a[0]),
        "logit": lambda: sp.logit(a[0]),
    }
    return table.get(name)


def _torch_peer(c):
    try:
        import torch
    except ImportError:
        return None
    F = torch.nn.functional
    aten = torch.ops.aten
    name = c.kernel.name
    kw = dict(c.kwargs)
    t = [torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in c.args]
    dim = kw.get("axis", -1)
    if isinstance(dim, tuple) or dim is None:
        return None
    x = t[0]
    p = kw
    table = {
        "softmax": lambda: torch.softmax(x, dim),
        "log_softmax": lambda: torch.log_softmax(x, dim),
        "logsumexp": lambda: torch.logsumexp(x, dim),
        "sigmoid": lambda: torch.sigmoid(x),
        "log_sigmoid": lambda: F.logsigmoid(x),
        "logit": lambda: torch.logit(x),
        "softplus": lambda: F.softplus(x, p.get("beta", 1.0), p.get("threshold", 20.0)),
        "tanh": lambda: torch.tanh(x),
        "relu": lambda: torch.relu(x),
        "leaky_relu": lambda: F.leaky_relu(x, p.get("negative_slope", 0.01)),
        "gelu": lambda: F.gelu(x),
        "gelu_tanh": lambda: F.gelu(x, approximate="tanh"),
        "silu": lambda: F.silu(x),
    }
    if len(t) >= 2:
        g, s = t[0], t[1]
        table.update({
            "softmax_backward": lambda: aten._softmax_backward_data(g, s, dim, s.dtype),
            "log_softmax_backward": lambda: aten._log_softmax_backward_data(g, s, dim, s.dtype),
            "sigmoid_backward": lambda: aten.sigmoid_backward(g, s),
            "tanh_backward": lambda: aten.tanh_backward(g, s),
            "softplus_backward": lambda: aten.softplus_backward(g, s, p.get("beta", 1.0), p.get("threshold", 20.0)),
            "relu_backward": lambda: aten.threshold_backward(g, s, 0),
            "leaky_relu_backward": lambda: aten.leaky_relu_backward(g, s, p.get("negative_slope", 0.01), False),
            "gelu_backward": lambda: aten.gelu_backward(g, s),
            "gelu_tanh_backward": lambda: aten.gelu_backward(g, s, approximate="tanh"),
            "silu_backward": lambda: aten.silu_backward(g, s),
            "logit_backward": lambda: aten.logit_backward(g, s),
        })
    fn = table.get(name)
    if fn is None and c.kernel.kind.startswith(("loss", "binary", "rows_reduce_backward")):
        fn = _torch_autograd_peer(c, torch)
    return fn


def _torch_autograd_peer(c, torch):
    """PyTorch's loss (and gradient through autograd, as its users get it)."""
    F = torch.nn.functional
    k = c.kernel
    kw = dict(c.kwargs)
    x = torch.from_numpy(np.ascontiguousarray(c.args[0]))
    if k.kind == "rows_reduce_backward":
        g, xa = (torch.from_numpy(np.ascontiguousarray(a)) for a in c.args[:2])
        dim = kw.get("axis", -1)

        def lse_bw():
            xr = xa.detach().requires_grad_()
            torch.logsumexp(xr, dim).backward(g)
            return xr.grad
        return lse_bw
    t = torch.from_numpy(np.ascontiguousarray(c.args[1]))
    if k.kind.startswith("binary"):
        def loss(xr):
            return F.binary_cross_entropy_with_logits(xr, t, reduction=kw["reduction"])
        grad = torch.tensor(float(kw.get("grad", 1.0)), dtype=x.dtype)
    else:
        axis = kw.get("axis", -1)
        if not (x.ndim == 2 and axis in (-1, 1) or x.ndim > 2 and axis == 1):
            return None  # PyTorch's class axis is 1
        opts = {key: kw[key] for key in ("ignore_index", "label_smoothing") if key in kw}

        def loss(xr):
            return F.cross_entropy(xr, t, reduction="none", **opts)
        grad = torch.from_numpy(np.ascontiguousarray(kw["grad"])) if "grad" in kw else None
    if k.kind in ("binary", "loss_index", "loss_prob"):
        return lambda: loss(x)

    def with_grad():
        xr = x.detach().requires_grad_()
        loss(xr).backward(grad)
        return xr.grad
    return with_grad


PEERS = {"torch": _torch_peer, "scipy": _scipy_peer, "numpy": _numpy_peer}


@contextlib.contextmanager
def threads(n):
    """Run fastact and torch with ``n`` threads inside the block."""
    before = _config.get_num_threads()
    tb = None
    try:
        import torch

        tb = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:
        pass
    _config.set_num_threads(n)
    try:
        yield
    finally:
        _config.set_num_threads(before)
        if tb is not None:
            import torch

            torch.set_num_threads(tb)


def _nbytes(c, result):
    ins = sum(a.nbytes for a in c.args if isinstance(a, np.ndarray))
    return ins + np.asarray(result).nbytes


def measure(kernel, shape, dtype, nthreads=1, axis=-1, backends=None, peers=None, min_time=0.02, repeat=7):
    """Time one kernel/shape/dtype on fastact's backends and the peers.

    Returns a dict: the problem, and ``times`` mapping an implementation
    (``"fastact-<backend>"``, a peer name, ``"copy"``) to seconds per call.
    """
    import fastact

    c = ft.case(kernel, shape, dtype, axis)
    backends = fastact.backends() if backends is None else backends
    peers = tuple(PEERS) if peers is None else peers
    impls = {f"fastact-{b}": (lambda: ft.run(c), lambda b=b: fastact.use_backend(b)) for b in backends}
    for p in peers:
        fn = PEERS[p](c)
        if fn is not None:
            impls[p] = (fn, contextlib.nullcontext)
    main = c.main
    impls["copy"] = (lambda: np.copy(main), contextlib.nullcontext)
    with threads(nthreads):
        times = best_times(impls, min_time, repeat)
    result = ft.run(c)
    return {
        "kernel": kernel, "shape": list(shape), "dtype": np.dtype(dtype).name,
        "threads": nthreads, "axis": axis, "bytes": _nbytes(c, result), "times": times,
    }


def fastest_fastact(rec):
    items = [(t, k) for k, t in rec["times"].items() if k.startswith("fastact-")]
    return min(items) if items else (math.nan, None)


def _shape_str(rec):
    """'4096x1024', with the axis when it is not the last: '25000x10x4/1'."""
    axis = rec.get("axis", -1)
    shape = "x".join(map(str, rec["shape"]))
    return shape if axis in (-1, len(rec["shape"]) - 1) else f"{shape}/{axis}"


def format_table(records, out=sys.stdout):
    """Print one line per record: the best fastact backend against peers."""
    head = (f"{'kernel':<18} {'shape':>12} {'dtype':>7} {'thr':>3} {'fastact':>10} {'backend':>8}"
            f" {'GB/s':>6} {'x copy':>7} {'vs torch':>8} {'vs scipy':>8} {'vs numpy':>8}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in records:
        t, best = fastest_fastact(r)
        tm = r["times"]

        def ratio(peer):
            return f"{tm[peer] / t:8.2f}" if peer in tm else f"{'-':>8}"

        shape = _shape_str(r)
        print(f"{r['kernel']:<18} {shape:>12} {r['dtype']:>7} {r['threads']:>3} "
              f"{t * 1e6:8.1f}us {best.replace('fastact-', '') if best else '-':>8} "
              f"{r['bytes'] / t / 1e9:6.1f} {t / tm['copy']:7.2f} "
              f"{ratio('torch')} {ratio('scipy')} {ratio('numpy')}", file=out)
    print("  fastact: best of fastact's backends; 'x copy': time / np.copy of the main "
          "input (1.0 = memory bound);\n  'vs X': X's time / fastact's (higher is better).", file=out)


def format_markdown(records, out=sys.stdout):
    """The table of :func:`format_table` as Markdown, with the machine and
    the per-backend times, for docs/benchmarks.md."""
    m = machine()
    print(f"Machine: {m.get('cpu', '?')}, {m['cpus']} CPUs; Python {m['python']}, NumPy {m['numpy']}"
          + "".join(f", {k} {m[k]}" for k in ("numba", "scipy", "torch") if k in m) + ".", file=out)
    print("Times are the minimum over repeated runs, in one process, outputs allocated per call; "
          "'vs X' is X's time over fastact's best backend (higher is better); 'x copy' is that time "
          "over `np.copy` of the main input (the memory-bandwidth bound).\n", file=out)
    print("| kernel | shape | dtype | threads | cython µs | numba µs | torch µs | vs torch | vs scipy | x copy |",
          file=out)
    print("|---|---|---|---|---|---|---|---|---|---|", file=out)
    for r in records:
        t, _ = fastest_fastact(r)
        tm = r["times"]

        def us(k):
            return f"{tm[k] * 1e6:.0f}" if k in tm else "-"

        def ratio(k):
            return f"{tm[k] / t:.2f}" if k in tm else "-"

        print(f"| {r['kernel']} | {_shape_str(r)} | {r['dtype']} | {r['threads']} | "
              f"{us('fastact-cython')} | {us('fastact-numba')} | {us('torch')} | {ratio('torch')} | "
              f"{ratio('scipy')} | {t / tm['copy']:.2f} |", file=out)
    for peer, s in summary(records).items():
        print(f"\nvs {peer}: geometric mean {s['geomean']:.2f}x, worst {s['min']:.2f}x over {s['n']} cases.",
              file=out)
    print("\nSpeed goals, per backend and thread count (`fastact._bench.goals`):\n\n```", file=out)
    format_goals(records, out)
    print("```", file=out)


def machine():
    import os

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "fastact_threads": _config.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numba", "scipy", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info


def run(kernels=GOAL_KERNELS, shapes=GOAL_SHAPES, dtypes=("float32", "float64"), thread_counts=(1,),
        backends=None, peers=None, min_time=0.02, repeat=7, progress=None, axis=-1):
    records = []
    todo = [(k, s, d, n) for n in thread_counts for d in dtypes for s in shapes for k in kernels]
    for i, (k, s, d, n) in enumerate(todo):
        if progress:
            progress(i, len(todo), f"{k} {s} {d} threads={n}")
        records.append(measure(k, s, d, n, axis, backends=backends, peers=peers, min_time=min_time,
                               repeat=repeat))
    return records


def dump_json(records, path):
    with open(path, "w") as f:
        json.dump({"machine": machine(), "results": records}, f, indent=1)


def _geomean(xs):
    return float(np.exp(np.mean(np.log(xs)))) if xs else math.nan


def summary(records):
    """Geometric-mean speed-up of fastact over each peer, and the worst case."""
    out = {}
    for peer in PEERS:
        ratios = [r["times"][peer] / fastest_fastact(r)[0] for r in records if peer in r["times"]]
        if ratios:
            out[peer] = {"geomean": _geomean(ratios), "min": float(min(ratios)),
                         "n": len(ratios)}
    return out


def goals(records):
    """The issue's speed goals, per fastact backend ("cython", "numba", and
    "best" of them) and thread count: geometric mean and worst case against
    torch and SciPy, the cases below torch, float32 softmax (4096, 1024)
    over ``np.copy``, and how two threads scale over one (same case, large
    shapes only: (65536, 16) is too little work to split well).  Returns
    ``{backend: {threads: {...}}}``; cases a backend did not run are left
    out."""
    def t_of(r, b):
        if b == "best":
            return fastest_fastact(r)[0]
        return r["times"].get("fastact-" + b, math.nan)

    bes = [b for b in ("cython", "numba") if any("fastact-" + b in r["times"] for r in records)]
    key = {(r["kernel"], tuple(r["shape"]), r["dtype"], r["threads"]): r for r in records}
    out = {}
    for b in bes + ["best"]:
        per = {}
        for n in sorted({r["threads"] for r in records}):
            rs = [r for r in records if r["threads"] == n and not math.isnan(t_of(r, b))]
            vt = [(r["times"]["torch"] / t_of(r, b), r) for r in rs if "torch" in r["times"]]
            vs = [r["times"]["scipy"] / t_of(r, b) for r in rs if "scipy" in r["times"]]
            # SciPy's time over a copy's: the ratio to SciPy of a kernel that
            # ran exactly as fast as np.copy of its input (a forward kernel
            # reads and writes as much as the copy does)
            vb = [r["times"]["scipy"] / r["times"]["copy"] for r in rs
                  if "scipy" in r["times"] and "copy" in r["times"]]
            g = {"torch_geomean": _geomean([v for v, _ in vt]),
                 "torch_min": min((v for v, _ in vt), default=math.nan),
                 "below_torch": sorted((round(v, 2), r["kernel"], "x".join(map(str, r["shape"])), r["dtype"])
                                       for v, r in vt if v < 1.0),
                 "scipy_geomean": _geomean(vs), "scipy_min": min(vs, default=math.nan),
                 "scipy_copy_geomean": _geomean(vb),
                 "scipy_under_10_copies": (sum(v < 10 for v in vb), len(vb)),
                 "n": len(rs)}
            sm = key.get(("softmax", (4096, 1024), "float32", n))
            if sm is not None and not math.isnan(t_of(sm, b)):
                g["softmax_f32_x_copy"] = t_of(sm, b) / sm["times"]["copy"]
            if n > 1:
                sc = []
                for r in rs:
                    one = key.get((r["kernel"], tuple(r["shape"]), r["dtype"], 1))
                    if one is not None and r["shape"][0] * r["shape"][1] >= 2 ** 22 and r["shape"][1] > 16:
                        sc.append(t_of(one, b) / t_of(r, b))
                if sc:
                    g["scaling_median"] = float(np.median(sc))
                    g["scaling_ge_1.8"] = (sum(v >= 1.8 for v in sc), len(sc))
            per[n] = g
        out[b] = per
    return out


def format_goals(records, out=sys.stdout):
    """Print :func:`goals` (targets: torch geomean >= 2.5 and none below
    1.0, SciPy >= 10, float32 softmax (4096, 1024) <= 2.0 x copy on one
    thread and <= 1.3 on two, two threads >= 1.8 x one)."""
    for b, per in goals(records).items():
        for n, g in per.items():
            line = (f"  {b:<6} {n} thr: vs torch geomean {g['torch_geomean']:.2f} (goal 2.5), worst "
                    f"{g['torch_min']:.2f}, {len(g['below_torch'])} below 1.0")
            if not math.isnan(g["scipy_geomean"]):  # SciPy has no such function for some kernels
                k, m = g["scipy_under_10_copies"]
                line += (f"; vs scipy geomean {g['scipy_geomean']:.2f} (goal 10), worst {g['scipy_min']:.2f}"
                         f" (at np.copy speed: {g['scipy_copy_geomean']:.2f}; SciPy under 10 copies in {k}/{m})")
            if "softmax_f32_x_copy" in g:
                line += f"; f32 softmax 4096x1024 {g['softmax_f32_x_copy']:.2f} x copy"
            if "scaling_median" in g:
                k, m = g["scaling_ge_1.8"]
                line += f"; {n} thr / 1 thr median {g['scaling_median']:.2f} ({k}/{m} >= 1.8)"
            print(line, file=out)
            if g["below_torch"]:
                print("         below torch: " + ", ".join(f"{k} {s} {d} {v:.2f}" for v, k, s, d in g["below_torch"]),
                      file=out)


def sweep(kernels=QUICK_KERNELS, dtype="float32", cols=1024, rows=(4, 16, 64, 256, 1024, 4096, 16384),
          nthreads=1, backends=None, peers=None, min_time=0.01, repeat=3, progress=None):
    """Throughput over array sizes: records for ``(rows, cols)`` arrays."""
    records = []
    todo = [(k, r) for k in kernels for r in rows]
    for i, (k, r) in enumerate(todo):
        if progress:
            progress(i, len(todo), f"sweep {k} {r}x{cols} {dtype}")
        records.append(measure(k, (r, cols), dtype, nthreads, backends=backends, peers=peers,
                               min_time=min_time, repeat=repeat))
    return records


_COLORS = {"fastact-cython": "tab:blue", "fastact-numba": "tab:orange", "fastact-numpy": "tab:green",
           "torch": "tab:red", "scipy": "tab:purple", "numpy": "tab:brown", "copy": "tab:gray"}


def plot(records, path):
    """Throughput (GB/s) against array size, one panel per kernel, one line
    per implementation: where each one wins.  Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels = list(dict.fromkeys(r["kernel"] for r in records))
    fig, axes = plt.subplots(1, len(kernels), figsize=(5 * len(kernels), 4), squeeze=False)
    for ax, k in zip(axes[0], kernels):
        rs = sorted((r for r in records if r["kernel"] == k), key=lambda r: r["bytes"])
        impls = list(dict.fromkeys(i for r in rs for i in r["times"]))
        for impl in impls:
            pts = [(r["bytes"], r["bytes"] / r["times"][impl] / 1e9) for r in rs if impl in r["times"]]
            style = "--" if impl == "copy" else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3, label=impl,
                    color=_COLORS.get(impl))
        ax.set_xscale("log")
        ax.set_title(f"{k} ({rs[0]['dtype']}, {rs[0]['threads']} thread(s))")
        ax.set_xlabel("bytes moved (inputs + output)")
        ax.set_ylabel("GB/s")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# kernels known to the registry, for the CLI's validation
ALL_KERNELS = tuple(_registry.KERNELS)
