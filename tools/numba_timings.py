"""Compile-time figures of the Numba backend, each in a fresh interpreter:

* ``import fastact`` (must not import Numba) and importing the backend;
* the first call of a kernel with an empty cache (compiles) and with a warm
  cache (loads the machine code from disk), per kernel and dtype; the
  process's very first compiled call (``relu``) is shown apart, as it also
  pays for Numba's and LLVM's start-up.

    python tools/numba_timings.py [kernel ...]

Uses a throw-away NUMBA_CACHE_DIR, so it neither reads nor disturbs the
package's own cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

CODE = r"""
import time, sys
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import fastact
t2 = time.perf_counter()
assert "numba" not in sys.modules
import fastact._backends.numba_jit
t3 = time.perf_counter()
kernel, dtype = sys.argv[1], sys.argv[2]
from fastact import testing as ft
c = ft.case(kernel, (64, 100), np.dtype(dtype), -1)
first = ft.case("relu", (64, 100), np.dtype(dtype), -1)
fastact.set_backend("numba")
t4 = time.perf_counter()
ft.run(first)  # the process's first compiled call: Numba/LLVM start-up
t5 = time.perf_counter()
ft.run(c)
t6 = time.perf_counter()
print(f"{t2 - t1:.4f} {t3 - t2:.4f} {t5 - t4:.4f} {t6 - t5:.4f}")
"""


def run(kernel, dtype, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    r = subprocess.run([sys.executable, "-c", CODE, kernel, dtype], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr)
    return [float(v) for v in r.stdout.split()]


def main(kernels):
    print("first call: of the process (relu, includes Numba's start-up); then of the kernel")
    print(f"{'kernel':24s} {'dtype':8s} {'import fastact':>14s} {'import backend':>15s} "
          f"{'1st cold':>9s} {'1st cached':>11s} {'cold call':>10s} {'cached call':>12s}")
    for k in kernels:
        for dt in ("float32", "float64"):
            with tempfile.TemporaryDirectory() as cache:
                imp, back, cold0, cold = run(k, dt, cache)
                _, _, warm0, warm = run(k, dt, cache)
            print(f"{k:24s} {dt:8s} {imp * 1e3:12.1f}ms {back * 1e3:13.1f}ms {cold0:8.2f}s "
                  f"{warm0 * 1e3:9.1f}ms {cold:9.2f}s {warm * 1e3:10.1f}ms")


if __name__ == "__main__":
    main(sys.argv[1:] or ["sigmoid", "gelu", "softmax", "log_softmax", "logsumexp", "softmax_backward",
                          "cross_entropy_index"])
