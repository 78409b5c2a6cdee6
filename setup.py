"""Build script: everything declarative lives in pyproject.toml; this file
only adds the optional compiled extension (the "cython" backend).

Extensions (all built from fastact/_kernels_body.pxi):

* ``fastact._kernels``            the backend: Python entry points, OpenMP
                                  threading, the cimport-able C API, and the
                                  kernels compiled for the baseline target;
* ``fastact._kernels_x86_64_v3``  the same kernels for x86-64-v3 (AVX2, FMA);
* ``fastact._kernels_x86_64_v4``  the same kernels for x86-64-v4 (AVX-512).

``fastact._kernels`` picks the best variant the CPU runs at import time, so a
wheel built here runs on any x86-64 (no ``-march=native`` anywhere).

All of them are optional: without a C compiler (or if compilation fails),
``pip install`` still succeeds with a warning and fastact runs on its other
backends.  Set ``FASTACT_REQUIRE_EXT=1`` to make a failed build an error
(CI, wheel builds).  OpenMP is used when the compiler accepts ``-fopenmp``;
otherwise the kernels are built single-threaded.

Never add ``-ffast-math`` here: linking with it pulls in crtfastmath.o, which
turns on flush-to-zero for the whole Python process at import, and the
kernels rely on IEEE inf/NaN semantics.
"""

import glob
import os
import platform
import sys
import tempfile
import textwrap

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _env_flag(name):
    """An environment variable set to anything but empty or 0."""
    return os.environ.get(name, "").strip() not in ("", "0")


REQUIRE = _env_flag("FASTACT_REQUIRE_EXT")

# flags for GCC and Clang; MSVC gets its own below
COMMON = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
VARIANT_FLAGS = {
    # preferred spelling, then an equivalent for compilers that predate the
    # x86-64-vN names (GCC < 11, Clang < 12)
    "fastact._kernels_x86_64_v3": (
        ["-march=x86-64-v3"],
        ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe"],
    ),
    "fastact._kernels_x86_64_v4": (
        ["-march=x86-64-v4", "-mprefer-vector-width=512"],
        ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe",
         "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl",
         "-mprefer-vector-width=512"],
    ),
}
# tuning added to a variant's flags when the compiler takes it.  x86-64-v4
# under GCC's generic tuning (GCC 12) re-reads a loaded vector from memory
# for each of its uses (vsubps (mem) + vmulps (mem) for the y of
# g * y * (1 - y)); unaligned, as large NumPy arrays are (16 bytes past a
# 64-byte line), every such load of a zmm register splits two cache lines.
# Under Intel's AVX-512 tuning it is loaded once: sigmoid_backward and
# tanh_backward float32 (4096, 1024) on AMD Zen 5, 0.72-0.77x the time;
# other kernels within the noise.  (AVX2: measured neutral; left alone.)
VARIANT_TUNE = {
    "fastact._kernels_x86_64_v4": ["-mtune=icelake-server"],
}


def _warn(msg):
    bar = "*" * 72
    sys.stderr.write(f"\n{bar}\nfastact: {msg}\n{bar}\n\n")


def _is_x86_64():
    m = platform.machine().lower()
    return m in ("x86_64", "amd64", "x64")


class BuildExt(build_ext):
    """build_ext that chooses flags per compiler and per SIMD variant, probes
    OpenMP, and turns a failure into a warning unless FASTACT_REQUIRE_EXT."""

    def initialize_options(self):
        super().initialize_options()
        self.parallel = True  # the three extensions compile concurrently

    def _try_compile(self, flags, link=False, code="int main(void) { return 0; }\n"):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                if link:
                    # linked the way the extension will be (LDSHARED, LDFLAGS):
                    # fails if the OpenMP runtime library is missing
                    self.compiler.link_shared_object(objs, os.path.join(tmp, "probe.so"), extra_postargs=flags)
            except Exception:
                return False
        return True

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        msvc = ctype == "msvc"
        if not msvc and not self._try_compile([]):
            msg = ("no working C compiler: fastact is installed without its compiled "
                   "'cython' backend (it runs on NumPy, or Numba if installed)")
            if REQUIRE:
                raise RuntimeError(msg + " and FASTACT_REQUIRE_EXT is set")
            _warn(msg)
            self.extensions = []
            return
        openmp = []
        if not msvc:
            probe = textwrap.dedent("""\
                #include <omp.h>
                int main(void) { int n = 0;
                #pragma omp parallel reduction(+:n)
                n += omp_get_num_threads() > 0;
                return n > 0 ? 0 : 1; }
                """)
            if _env_flag("FASTACT_NO_OPENMP"):
                _warn("FASTACT_NO_OPENMP is set: building the kernels single-threaded")
            elif self._try_compile(["-fopenmp"], link=True, code=probe):
                openmp = ["-fopenmp"]
            else:
                _warn("the C compiler does not support OpenMP (-fopenmp): "
                      "the cython backend is built single-threaded")
        keep = []
        for ext in self.extensions:
            if msvc:
                if ext.name in VARIANT_FLAGS:
                    continue  # no run-time CPU dispatch with MSVC: baseline only
                ext.extra_compile_args = ["/O2", "/fp:precise"] + (["/openmp"] if ext.name == "fastact._kernels" else [])
            else:
                flags = list(COMMON)
                if ext.name in VARIANT_FLAGS:
                    for cand in VARIANT_FLAGS[ext.name]:
                        if self._try_compile(cand):
                            flags += cand
                            break
                    else:
                        _warn(f"the C compiler cannot target {ext.name.rsplit('_kernels_', 1)[1]}; "
                              "that SIMD variant is skipped")
                        continue
                    tune = VARIANT_TUNE.get(ext.name, [])
                    if tune and self._try_compile(flags + tune):
                        flags += tune
                # the scalar math is `cdef inline` Cython code: force GCC/Clang
                # to inline it into every loop (their unit-growth limits
                # otherwise leave some calls out of line, and a call in a loop
                # keeps the loop scalar)
                ext.define_macros = list(ext.define_macros or []) + [
                    ("CYTHON_INLINE", "__inline__ __attribute__((__always_inline__, __unused__))")]
                if ext.name == "fastact._kernels":
                    ext.extra_compile_args = flags + openmp
                    ext.extra_link_args = list(openmp)
                else:
                    ext.extra_compile_args = flags
            keep.append(ext)
        self.extensions = keep
        super().build_extensions()

    def _current_inplace(self, ext):
        """The in-place module of `ext` when an editable install may reuse it.

        An editable install builds in a fresh temporary directory, so every
        ``pip install -e .`` would recompile all three extensions (about 80 s
        on two cores) even when nothing changed.  As make would, reuse the
        module already in the source tree when it is newer than everything it
        is built from: the Cython sources, the C headers, and this file (which
        holds the flags).  Not the generated .c: Cython rewrites it on every
        isolated build, because the build environment's NumPy headers it
        depends on are freshly installed.  ``FASTACT_REBUILD=1`` forces a
        rebuild (after changing CC, CFLAGS or NumPy, say)."""
        if not getattr(self, "editable_mode", False) or _env_flag("FASTACT_REBUILD"):
            return None
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.path.join(here, self.get_ext_filename(ext.name))
        # every extension's own sources and `depends` are among these
        inputs = [os.path.abspath(__file__)]
        for pattern in ("*.pyx", "*.pxd", "*.pxi", os.path.join("src", "*.h")):
            inputs += glob.glob(os.path.join(here, "fastact", pattern))
        try:
            built = os.path.getmtime(target)
            return target if all(os.path.getmtime(f) < built for f in inputs) else None
        except OSError:  # no module yet, or a source is missing
            return None

    def build_extension(self, ext):
        reuse = self._current_inplace(ext)
        if reuse is not None:
            dest = self.get_ext_fullpath(ext.name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            self.copy_file(reuse, dest, preserve_times=True)
            sys.stderr.write(f"fastact: {ext.name} is up to date in the source tree; reused (FASTACT_REBUILD=1 rebuilds)\n")
            return
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            _warn(f"could not build {ext.name} ({type(exc).__name__}: {exc}); "
                  "fastact will run without it (set FASTACT_REQUIRE_EXT=1 to make this an error)")

    def run(self):
        try:
            super().run()
        except Exception as exc:
            if REQUIRE:
                raise
            _warn(f"the compiled kernels could not be built ({type(exc).__name__}: {exc}); "
                  "fastact will use its NumPy/Numba backends")


def _extensions():
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        if REQUIRE:
            raise
        _warn(f"{exc}: building without the compiled 'cython' backend")
        return []

    here = os.path.dirname(os.path.abspath(__file__))
    inc = [numpy.get_include(), os.path.join("fastact", "src")]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    names = ["fastact._kernels"]
    if _is_x86_64():
        names += list(VARIANT_FLAGS)
    exts = [
        Extension(name, [name.replace(".", "/") + ".pyx"], include_dirs=inc, define_macros=macros,
                  depends=["fastact/_kernels_body.pxi", "fastact/_kernels_erfc64.pxi",
                           "fastact/src/fa_support.h"])
        for name in names
    ]
    try:
        exts = cythonize(
            exts,
            quiet=True,
            compiler_directives={"language_level": 3},
            include_path=[os.path.join(here, "fastact")],
        )
    except Exception as exc:
        if REQUIRE:
            raise
        _warn(f"Cython failed ({type(exc).__name__}: {exc}): building without the compiled backend")
        return []
    # cythonize() does not carry over `optional`; a failed compile must not
    # fail the install unless the extension is required
    for e in exts:
        e.optional = not REQUIRE
    return exts


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
