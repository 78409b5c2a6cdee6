"""The "cython" backend: compiled, vectorized, multi-threaded kernels.

This module only re-exports the kernels of the extension module
``fastact._kernels`` (built by setup.py from ``fastact/_kernels.pyx``), so
that the kernel table of ``fastact._config`` holds the compiled functions
themselves: no Python frame between the dispatch layer and the kernel.

If the extension is missing -- an sdist installed without a C compiler, a
failed build, an interpreter it was not built for -- importing this module
raises ImportError whose ``fastact_reason`` says so in one line; fastact then
runs on its other backends and ``fastact.backend_status()["cython"]`` reports
the reason.

What runs where: ``simd_path()`` names the instruction-set build selected at
import (``"x86-64-v4"`` AVX-512, ``"x86-64-v3"`` AVX2+FMA, or
``"baseline"``), and ``openmp_enabled()`` whether kernels can use several
threads (``set_num_threads`` is called by ``fastact.set_num_threads``).
"""

from __future__ import annotations

NAME = "cython"

import os as _os

# OpenMP threads that finish a parallel region spin-wait for the next one
# (libgomp: up to ~300k spins) on a CPU another process may need; on the
# shared 2-core machine this was measured to turn a 1 us region into a 2 ms
# one when the other core is busy.  Unless the user chose a policy, the
# OpenMP runtime this extension loads is started with OMP_WAIT_POLICY=passive
# (threads sleep at once; +2-3 us per region on an idle machine, and kernels
# go parallel only above ~100 us of work).  The variable is set only while
# the extension (and with it a not-yet-loaded libgomp, which reads it once at
# load) is imported, then removed again: other libraries are not affected.
_policy_set = not any(v in _os.environ for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
if _policy_set:
    _os.environ["OMP_WAIT_POLICY"] = "passive"
try:
    from .. import _kernels as _ext
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    _err = ImportError(f"fastact's compiled extension is not available: {_exc}")
    _err.fastact_reason = (
        "compiled extension fastact._kernels is not available "
        f"({type(_exc).__name__}: {_exc}); it is built when fastact is installed "
        "with a C compiler (set FASTACT_REQUIRE_EXT=1 to see why a build failed)"
    )
    raise _err from _exc
finally:
    if _policy_set:
        _os.environ.pop("OMP_WAIT_POLICY", None)

from .._registry import KERNELS as _KERNELS

_missing = [k for k in _KERNELS if not callable(getattr(_ext, k, None))]
if _missing:  # an extension built from older sources
    _err = ImportError("fastact._kernels lacks kernels: " + ", ".join(_missing))
    _err.fastact_reason = (
        "compiled extension fastact._kernels is out of date (lacks "
        + ", ".join(_missing)
        + "); rebuild it (pip install -e . / python setup.py build_ext --inplace)"
    )
    raise _err

globals().update({k: getattr(_ext, k) for k in _KERNELS})

set_num_threads = _ext.set_num_threads
get_num_threads = _ext.get_num_threads
simd_path = _ext.simd_path
simd_description = _ext.simd_description
openmp_enabled = _ext.openmp_enabled

__all__ = ["NAME", "set_num_threads", "simd_path", "openmp_enabled", *_KERNELS]
