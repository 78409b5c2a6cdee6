"""``python -m fastact``: version, backends, a self-check against the NumPy
reference and a short speed table against NumPy/SciPy/PyTorch.

Subcommands::

    python -m fastact            # all of the above (quick)
    python -m fastact check      # self-check only
    python -m fastact bench ...  # the side-by-side benchmark (see --help)
    python -m fastact accuracy   # ULP error of every kernel vs higher precision
    python -m fastact compile    # fill the Numba backend's disk cache ahead of use
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _print_header():
    import fastact
    from fastact import _bench

    m = _bench.machine()
    print(f"fastact {fastact.__version__}  (numpy {np.__version__}, python {m['python']})")
    print(f"machine: {m.get('cpu', '?')}, {m['cpus']} CPUs; fastact threads: {fastact.get_num_threads()}")
    print("backends:")
    for name, why in fastact.backend_status().items():
        print(f"  {name:<7} {'available' if why is None else 'missing: ' + why}")
    print(f"  default: {fastact.get_backend()}")


def self_check(verbose=True) -> bool:
    """Every kernel on every backend, float32 and float64, against the
    reference on a few shapes/axes; returns True if all are within bound."""
    import fastact
    from fastact import _registry
    from fastact import testing as ft

    ok_all = True
    for b in fastact.backends():
        worst, fails, n = 0.0, [], 0
        t0 = time.perf_counter()
        for name in _registry.KERNELS:
            for dtype in (np.float32, np.float64):
                for shape, axis in (((5, 33), -1), ((6, 4, 3), 1), ((40,), 0)):
                    c = ft.case(name, shape, dtype, axis)
                    ref = ft.reference(c)
                    with fastact.use_backend(b):
                        r = ft.run(c)
                    problem, err = ft.compare(r, ref)
                    bound = _registry.ulps_bound(name, shape[axis])
                    n += 1
                    if problem or err > bound:
                        fails.append(f"{name} {np.dtype(dtype).name} {shape} axis={axis}: "
                                     f"{problem or f'{err:.1f} ulp > {bound}'}")
                    worst = max(worst, err)
        ok = not fails
        ok_all &= ok
        if verbose:
            status = "OK" if ok else f"FAILED ({len(fails)})"
            print(f"  {b:<7} {status}: {n} checks, {len(_registry.KERNELS)} kernels, "
                  f"max error {worst:.1f} ulp vs reference ({time.perf_counter() - t0:.1f} s)")
            for f in fails[:10]:
                print(f"    {f}")
    return ok_all


def _parse_shapes(text):
    return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(","))


def _bench_main(argv):
    from fastact import _bench

    p = argparse.ArgumentParser(prog="python -m fastact bench",
                                description="fastact vs PyTorch/SciPy/NumPy/np.copy, side by side")
    p.add_argument("--kernels", default=",".join(_bench.GOAL_KERNELS),
                   help="comma-separated registry kernels (default: the speed-goal set)")
    p.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in _bench.GOAL_SHAPES),
                   help="comma-separated shapes like 4096x1024,65536x16")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    p.add_argument("--axis", type=int, default=-1,
                   help="the reduced (row kernels) or class (losses) axis; shown as shape/axis when not the last")
    p.add_argument("--backends", default=None, help="fastact backends (default: all available)")
    p.add_argument("--peers", default="torch,scipy,numpy")
    p.add_argument("--quick", action="store_true", help="shorter timing runs")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also sweep array sizes and plot GB/s per kernel and implementation (matplotlib)")
    a = p.parse_args(argv)
    kernels = tuple(k for k in a.kernels.split(",") if k)
    unknown = [k for k in kernels if k not in _bench.ALL_KERNELS]
    if unknown:
        p.error(f"unknown kernels {unknown}; known: {', '.join(_bench.ALL_KERNELS)}")
    backends = tuple(a.backends.split(",")) if a.backends else None
    min_time, repeat = (0.005, 3) if a.quick else (0.02, 7)

    def progress(i, n, what):
        print(f"\r[{i + 1}/{n}] {what:<60}", end="", file=sys.stderr, flush=True)

    records = _bench.run(kernels, _parse_shapes(a.shapes), tuple(a.dtypes.split(",")),
                         tuple(int(t) for t in a.threads.split(",")), backends,
                         tuple(x for x in a.peers.split(",") if x), min_time, repeat, progress, a.axis)
    print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
    _print_header()
    _bench.format_table(records)
    for peer, s in _bench.summary(records).items():
        print(f"  vs {peer}: geometric mean {s['geomean']:.2f}x, worst {s['min']:.2f}x over {s['n']} cases")
    print("speed goals, per backend and thread count:")
    _bench.format_goals(records)
    if a.markdown:
        with open(a.markdown, "w") as f:
            _bench.format_markdown(records, f)
        print(f"wrote {a.markdown}")
    if a.plot:
        sweep = _bench.sweep(kernels, a.dtypes.split(",")[0], backends=backends,
                             peers=tuple(x for x in a.peers.split(",") if x), progress=progress)
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
        _bench.plot(sweep, a.plot)
        print(f"wrote {a.plot}")
        records = records + [dict(r, sweep=True) for r in sweep]
    if a.json:
        _bench.dump_json(records, a.json)
        print(f"wrote {a.json}")
    return 0


def _accuracy_main(argv):
    from fastact import _accuracy, _registry

    p = argparse.ArgumentParser(prog="python -m fastact accuracy",
                                description="max/median ULP error of every kernel vs a higher-precision reference")
    p.add_argument("--kernels", default=",".join(_registry.KERNELS))
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--backends", default=None)
    p.add_argument("-n", type=int, default=4000, help="random points per kernel (plus extremes)")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    a = p.parse_args(argv)

    def progress(i, n, what):
        print(f"\r[{i + 1}/{n}] {what:<50}", end="", file=sys.stderr, flush=True)

    rows = _accuracy.measure(a.kernels.split(","), a.dtypes.split(","),
                             a.backends.split(",") if a.backends else None, a.n, progress=progress)
    print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    _print_header()
    _accuracy.format_table(rows)
    if a.markdown:
        with open(a.markdown, "w") as f:
            _accuracy.format_table(rows, f, markdown=True)
        print(f"wrote {a.markdown}")
    bad = [r for r in rows if r["max_bound_metric"] > r["bound"] * 4 or r["special_mismatches"]]
    return 1 if bad else 0


def _compile_main(argv):
    import fastact
    from fastact import _registry

    p = argparse.ArgumentParser(
        prog="python -m fastact compile",
        description="compile every path of the Numba backend's kernels into Numba's disk cache "
                    "(NUMBA_CACHE_DIR, or the package's or the user's cache directory), so that "
                    "later processes load machine code instead of compiling on a first call")
    p.add_argument("--kernels", default=",".join(_registry.KERNELS))
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", type=int, default=fastact.get_num_threads(),
                   help="also compile the parallel versions when > 1 (default: fastact's thread count)")
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    kernels = a.kernels.split(",")
    unknown = [k for k in kernels if k not in _registry.KERNELS]
    if unknown:
        p.error(f"unknown kernels: {', '.join(unknown)}")
    dtypes = a.dtypes.split(",")
    if not set(dtypes) <= {"float32", "float64"}:
        p.error(f"--dtypes: float32 and/or float64, got {a.dtypes}")
    why = fastact.backend_status()["numba"]
    if why is not None:
        print(f"the numba backend is missing: {why}", file=sys.stderr)
        return 1
    from fastact._backends import numba_jit

    def progress(kernel, dtype):
        print(f"\r{kernel} {dtype:<40}", end="", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    seconds, used = numba_jit.precompile(kernels, dtypes, a.threads, progress)
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    for (kernel, dtype), s in seconds.items():
        print(f"{kernel:<28} {dtype:<8} {s:7.2f} s")
    print(f"{len(seconds)} kernel/dtype pairs in {time.perf_counter() - t0:.1f} s "
          + (f"(parallel versions on {used} threads)" if used > 1 else "(serial versions only)"))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _bench_main(argv[1:])
    if argv and argv[0] == "accuracy":
        return _accuracy_main(argv[1:])
    if argv and argv[0] == "compile":
        return _compile_main(argv[1:])
    if argv and argv[0] == "check":
        _print_header()
        print("self-check against the NumPy reference:")
        return 0 if self_check() else 1
    if argv:
        print(__doc__)
        return 2
    from fastact import _bench

    _print_header()
    print("self-check against the NumPy reference:")
    ok = self_check()
    print("\nspeed (float32, 1 thread, min of repeats; run `python -m fastact bench` for the full table):")
    records = _bench.run(_bench.QUICK_KERNELS, _bench.QUICK_SHAPES, ("float32",), (1,),
                         min_time=0.01, repeat=3)
    _bench.format_table(records)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
