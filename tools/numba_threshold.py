"""Where does going multi-threaded start to pay, for the Numba backend?

For a few kernels and sizes, times the serial run function against the
parallel version on fastact's thread count (min of repeats), and prints the
ratio and the estimated single-thread time (elements x the kernel's cost
figure, what ``numba_jit.PAR_NS`` is compared with).  Run it on a quiet
machine:

    python tools/numba_threshold.py [threads]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fastact
from fastact._backends import numba_jit as nj


def tmin(f, rep):
    f()
    best = float("inf")
    for _ in range(rep):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main(threads):
    fastact.backends()  # load the backends, so that set_num_threads reaches them
    fastact.set_num_threads(threads)
    print(f"threads={nj._NT[0]}  PAR_NS={nj.PAR_NS:.0f}")
    print(f"{'kernel':10s} {'elements':>9s} {'est. ns':>9s} {'serial us':>10s} {'parallel us':>12s} {'speed-up':>9s}")
    cases = [
        ("sigmoid", 0.4, lambda x, o: nj._e_sigmoid(x, o), lambda x, o: nj._p_sigmoid(x, o, nj._NT[0])),
        ("gelu", 1.0, lambda x, o: nj._e_gelu(x, o), lambda x, o: nj._p_gelu(x, o, nj._NT[0])),
        ("softmax", 0.5,
         lambda x, o: nj._rl_softmax(x.reshape(-1, 256), o.reshape(-1, 256)),
         lambda x, o: nj._prl_softmax(x.reshape(-1, 256), o.reshape(-1, 256), nj._NT[0])),
    ]
    for name, cost, ser, par in cases:
        for e in range(12, 23):
            n = 1 << e
            x = np.random.default_rng(0).uniform(-5, 5, n).astype(np.float32)
            o = np.empty_like(x)
            rep = max(5, int(2e5 / n))
            prev = nj.numba.get_num_threads()
            nj.numba.set_num_threads(nj._NT[0])
            try:
                ts, tp = tmin(lambda: ser(x, o), rep), tmin(lambda: par(x, o), rep)
            finally:
                nj.numba.set_num_threads(prev)
            print(f"{name:10s} {n:9d} {n * cost:9.0f} {ts * 1e6:10.1f} {tp * 1e6:12.1f} {ts / tp:9.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
