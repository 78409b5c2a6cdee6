"""Tests specific to the compiled "cython" backend (fastact._kernels).

The registry-driven suite (test_backends.py) already runs every kernel on
this backend against the NumPy reference through the public API.  Here:
the pieces only this backend has -- its SIMD builds and their run-time
selection, the paths inside the kernels (short-row tiles, strided lanes,
thread splits) at their boundaries, OpenMP, the floating-point state of the
process, the C API that Cython users cimport, the contract checks, a missing
extension, and thread safety.
"""

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading

import numpy as np
import pytest

import fastact
from fastact import _registry
from fastact import testing as ft

K = pytest.importorskip("fastact._kernels", reason="compiled extension not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastact.__file__)))


def run_py(code, env=None, timeout=300):
    """Run ``code`` in a fresh interpreter; return its stdout (asserting rc 0)."""
    e = dict(os.environ)
    e.pop("FASTACT_SIMD", None)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       env=e, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"subprocess failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def ref_call(fn, *args):
    with fastact.use_backend("numpy"):
        return fn(*args)


def close(a, b, kernel, n=1):
    problem, err = ft.compare(a, b)
    assert problem is None, f"{kernel}: {problem}"
    assert err <= _registry.ulps_bound(kernel, n), f"{kernel}: {err:.1f} ulp"


# ---------------------------------------------------------------------------
# SIMD builds and their selection

PATHS = ("baseline", "x86-64-v3", "x86-64-v4")


def _capped():
    return os.environ.get("FASTACT_SIMD", "auto").strip().lower() not in ("", "auto", "best")


def available_paths():
    """The SIMD paths this CPU runs and this install has (whatever
    FASTACT_SIMD says in this process)."""
    level = K.cpu_level()
    status = K.variant_status
    return [p for p, lv in zip(PATHS, (0, 3, 4)) if lv <= level and (
        lv == 0 or status.get(p) in ("selected", "available")
        or (status.get(p) == "disabled by FASTACT_SIMD"
            and importlib.util.find_spec("fastact._kernels_" + p.replace("-", "_")) is not None))]


def test_simd_path_reported():
    path = K.simd_path()
    assert path in PATHS
    assert fastact._backends.cython_ext.simd_path() == path
    assert K.variant_status[path] == "selected"
    if not _capped():
        # the best build this CPU runs and this install has is the one in use
        assert path == available_paths()[-1]
    print(f"SIMD path: {K.simd_description()} (cpu level {K.cpu_level()}); {K.variant_status}")


def test_simd_path_here_is_avx512_when_the_cpu_has_it():
    if K.cpu_level() < 4:
        pytest.skip("no AVX-512 on this CPU")
    if not sys.platform.startswith("linux") or sysconfig.get_platform().split("-")[-1] != "x86_64":
        pytest.skip("x86-64 Linux build only")
    if _capped():
        pytest.skip("FASTACT_SIMD caps the path in this process")
    assert K.simd_path() == "x86-64-v4"


@pytest.mark.parametrize("cap,expect", [("baseline", "baseline"), ("avx2", "x86-64-v3"),
                                        ("x86-64-v4", "x86-64-v4"), ("bogus", None)])
def test_fastact_simd_caps_the_path(cap, expect):
    avail = available_paths()
    if expect is not None and expect not in avail:
        pytest.skip(f"{expect} not available here")
    out = run_py("import fastact._kernels as K; print(K.simd_path()); print(K.variant_status)",
                 env={"FASTACT_SIMD": cap})
    path = out.splitlines()[0]
    assert path == (expect or avail[-1])
    if expect is None:
        assert "ignored unknown value" in out


def _all_kernels_script(n_rows, n_cols):
    # every registry kernel on the cython backend vs the reference, C layout,
    # last axis and axis 0 (inner > 1); prints the worst error in units of the bound
    return f"""
        import numpy as np, fastact
        from fastact import _registry, testing as ft
        worst = 0.0
        for name, k in _registry.KERNELS.items():
            for dt in (np.float32, np.float64):
                for axis in (-1, 0):
                    if axis == 0 and not k.kind.startswith(("rows", "loss")):
                        continue
                    c = ft.case(name, ({n_rows}, {n_cols}), dt, axis, seed=3)
                    ref = ft.reference(c)
                    with fastact.use_backend("cython"):
                        r = ft.run(c)
                    prob, err = ft.compare(r, ref)
                    assert prob is None, (name, dt, axis, prob)
                    n = {n_cols} if axis == -1 else {n_rows}
                    worst = max(worst, err / _registry.ulps_bound(name, n))
        print(worst)
    """


@pytest.mark.parametrize("path", PATHS)
def test_every_simd_path_matches_reference(path):
    """The registry suite runs the selected build; this runs the others."""
    if path not in available_paths():
        pytest.skip(f"{path} not available here")
    # (rows of 45 and 100: float64 and float32 rows of several registers
    # one at a time in registers, with AVX-512 and AVX2)
    for shape in ((37, 1000), (130, 10), (130, 45), (130, 100)):
        out = run_py(_all_kernels_script(*shape), env={"FASTACT_SIMD": path})
        assert float(out.strip()) <= 1.0


# ---------------------------------------------------------------------------
# kernel paths at their boundaries (short-row tiles of TR=64 rows for
# n <= 32 and, with SIMD transposes, up to each kernel's limit in _tiled
# (48-256 entries); contiguous rows above; strided lanes in chunks of 64
# inner columns)

ROW_KERNELS = [k for k, v in _registry.KERNELS.items()
               if v.kind.startswith(("rows", "loss"))]


@pytest.mark.parametrize("kernel", ROW_KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_row_paths_at_their_boundaries(kernel, dtype):
    # rows of 33-127 in register pieces, the last one padded (33, 63, 75,
    # 127); from 128 blocks of 64, whole pieces, and the last n % (entries a
    # register) one by one (200, 203, 1031).  Tiles of longer rows: each
    # kernel's limits and the next length, in whole and partial tiles
    # (70 rows)
    shapes = [(1, 1), (3, 1), (65, 2), (64, 10), (63, 16), (129, 31), (70, 32), (5, 33),
              (2, 63), (2, 64), (2, 65), (3, 75), (2, 127), (2, 128), (2, 129), (3, 200), (3, 203),
              (1, 1000), (2, 1031)]
    # (and rows of 3-16 registers taken one at a time in registers: 90,
    # 180, 210 and 240 complete the register counts with AVX-512)
    shapes += [(70, n) for n in (33, 47, 48, 49, 64, 65, 90, 100, 101, 128, 129, 160, 161, 180, 200,
                                 201, 210, 240, 256, 257)]
    for shape in shapes:
        c = ft.case(kernel, shape, dtype, -1, seed=1)
        with fastact.use_backend("cython"):
            r = ft.run(c)
        close(r, ft.reference(c), kernel, shape[-1])
    # reduction over a non-last axis of a contiguous array: inner = 1..130
    for inner in (2, 3, 15, 16, 17, 63, 64, 65, 130):
        c = ft.case(kernel, (3, 7, inner), dtype, 1, seed=2)
        with fastact.use_backend("cython"):
            r = ft.run(c)
        close(r, ft.reference(c), kernel, 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward"])
def test_short_rows_every_length(kernel, dtype):
    # rows of 2-33 take packed registers, whole registers, rows one at a
    # time (fa_rows_n) or transposed tiles (fa_tile_f32: 16 x 16 blocks with
    # AVX-512, 8 x 8 with AVX2) depending on the length and the target:
    # every length, and row counts that leave partial blocks and tiles (the
    # last rows are the ones a whole-register load would read past the
    # array with; 65 rows span several blocks of fa_rows_n)
    for n in range(2, 34):
        for rows in (1, 7, 9, 65):
            c = ft.case(kernel, (rows, n), dtype, -1, seed=n)
            with fastact.use_backend("cython"):
                r = ft.run(c)
            close(r, ft.reference(c), kernel, n)


@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward", "logsumexp_backward",
                                    "cross_entropy_index_grad", "cross_entropy_prob_grad"])
def test_row_edge_values_in_tiles_and_lanes(kernel):
    """NaN/inf rows in the tile path (n <= 32, and longer rows up to a
    kernel's limit), the row path and the lanes path."""
    k = _registry.KERNELS[kernel]
    base = ft.edge_rows()  # 14 rows of 4
    wide = np.tile(base, (1, 70))
    # tiles; rows of 80 in whole register pieces (or tiles), of 75 with a
    # padded last piece (or tiles), of 203 and 259 in blocks and a tail one
    # by one (float32 rows of 203 in tiles for some kernels); lanes
    for x, axis in ((np.tile(base, (5, 1)), -1), (wide[:, :80], -1), (wide[:, :75], -1), (wide[:, :203], -1),
                    (wide[:, :259], -1), (np.tile(wide[:, :100], (5, 1)), -1),
                    (np.ascontiguousarray(wide[:, :80].T), 0)):
        for dt in (np.float32, np.float64):
            with np.errstate(over="ignore"):
                xx = np.ascontiguousarray(x).astype(dt)
            if k.kind.startswith("loss"):
                c = ft.case(kernel, xx.shape, dt, axis, x=xx)
            else:
                c = ft.case(kernel, xx.shape, dt, axis, x=xx)
            with fastact.use_backend("cython"):
                r = ft.run(c)
            ref = ft.reference(c)
            for a, b in zip(r if isinstance(r, tuple) else (r,), ref if isinstance(ref, tuple) else (ref,)):
                problem, _ = ft.compare(a, b)
                assert problem is None, f"{kernel} {dt.__name__} {x.shape}: {problem}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax", "logsumexp", "softmax_backward",
                                    "log_softmax_backward"])
def test_rows_of_several_registers_in_registers(kernel, dtype):
    """Rows of 3-16 registers one at a time in registers (fa_pack_mid; AVX2
    takes up to 16 of its registers): softmax fused (PK_SOFTMAX, float64 from
    17 entries, float32 from 49), log_softmax / logsumexp by PK_MAXREST and
    PK_SUB2 with log1p over blocks of 64 rows (float64 from 17 entries,
    float32 from 65); past 16 registers (up to 25-64 float32 / 32 float64
    ones) the same ops with the pieces reloaded in loops (fa_rows_loop);
    the backward passes (float64 up to 128 entries since 2026-12-06).
    Every length, in 5, 70 and 130 rows
    (partial and whole blocks), with NaN, +inf, -inf entries, all -inf
    and all +inf rows (in g for the backward passes), two equal maxima, and
    a row whose terms but the max are tiny (the forward rest kept to full
    accuracy)."""
    if dtype == np.float64:
        lengths = list(range(17, 260))
    else:  # past 16 registers (256) softmax, log_softmax, logsumexp loop over the pieces
        lengths = list(range(33, 258)) + list(range(258, 1030, 7)) + [399, 400, 401, 511, 512, 513, 1023, 1024, 1025]
    for n in lengths:
        for rows in ((5, 70, 130) if n % 8 in (0, 1) else (70,)):
            c = ft.case(kernel, (rows, n), dtype, -1, seed=n + rows)
            tiny = ft.plant_special_rows(c.arrays[0], not kernel.endswith("backward"), low=-40.0, top=n - 1)
            with fastact.use_backend("cython"):
                r = ft.run(c)
            close(r, ft.reference(c), kernel, n)
            err = ft.tiny_rest_error(kernel, r, n - 1, tiny)
            assert err is None or err <= 4 * np.finfo(dtype).eps, (n, rows, err)


def test_logsumexp_keeps_tiny_rest_in_every_path():
    # log(1 + e^-40) = 4.248e-18: the max's own term is kept out of the sum
    for x in (np.array([[0.0, -40.0]]), np.array([[0.0, -40.0] + [-np.inf] * 98]),
              np.array([[0.0], [-40.0]])):
        axis = 0 if x.shape[1] == 1 else -1
        with fastact.use_backend("cython"):
            r = fastact.logsumexp(x, axis=axis)
        assert abs(r[0] - 4.248354255291589e-18) < 1e-30


# ---------------------------------------------------------------------------
# threads

def test_openmp_and_thread_count():
    if not K.openmp_enabled():
        pytest.skip("built without OpenMP")
    old = fastact.get_num_threads()
    try:
        fastact.set_num_threads(1)
        assert K.get_num_threads() == 1
        fastact.set_num_threads(2)
        assert K.get_num_threads() == 2
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if ncpu >= 2:
            assert K._team_size(2) == 2
    finally:
        fastact.set_num_threads(old)


@pytest.mark.parametrize("kernel", list(_registry.KERNELS))
def test_thread_splits_give_the_same_results(kernel):
    """Force every call parallel (threshold 0): splits over rows, over the
    inner axis and over elements must not change a single bit (short rows:
    packed several to a register, or one at a time, wherever a thread's
    rows begin; rows of 48-100 in tiles and in registers, the tiles of each
    thread partly filled)."""
    old_n = fastact.get_num_threads()
    old_thr = K._set_parallel_threshold(0.0, 1.0)
    try:
        for shape, axis in (((37, 50), -1), ((3, 500), 0), ((1, 5, 77), 1), ((5, 1001), -1),
                            ((301, 2), -1), ((301, 7), -1), ((150, 100), -1), ((200, 48), -1)):
            if not _registry.KERNELS[kernel].kind.startswith(("rows", "loss")) and axis != -1:
                continue
            c = ft.case(kernel, shape, np.float32, axis, seed=4)
            with fastact.use_backend("cython"):
                fastact.set_num_threads(1)
                one = ft.run(c)
                fastact.set_num_threads(3)
                many = ft.run(c)
            for a, b in zip(one if isinstance(one, tuple) else (one,), many if isinstance(many, tuple) else (many,)):
                np.testing.assert_array_equal(a, b)
    finally:
        K._set_parallel_threshold(*old_thr)
        fastact.set_num_threads(old_n)


def test_concurrent_python_threads():
    x = np.random.default_rng(0).standard_normal((512, 300)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    with fastact.use_backend("cython"):
        want = [fastact.softmax(x), fastact.gelu(x), fastact.logsumexp(x), fastact.softmax_backward(g, fastact.softmax(x))]
    errors = []

    def work():
        try:
            with fastact.use_backend("cython"):
                for _ in range(20):
                    y = fastact.softmax(x)
                    got = [y, fastact.gelu(x), fastact.logsumexp(x), fastact.softmax_backward(g, y)]
                    for a, b in zip(got, want):
                        np.testing.assert_array_equal(a, b)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# ---------------------------------------------------------------------------
# floating-point state of the process

def test_importing_and_running_leaves_fp_mode_unchanged():
    out = run_py("""
        import numpy as np
        assert 5e-324 * 1.0 != 0.0
        import fastact, fastact._kernels as K
        import importlib
        for level, mod in ((3, "fastact._kernels_x86_64_v3"), (4, "fastact._kernels_x86_64_v4")):
            # only what this CPU runs: a variant's module code is compiled
            # for its target too (the v4 module's init fills its kernel
            # table with AVX-512 stores: SIGILL on an AVX2 CPU), which is
            # why fastact._kernels checks the CPU before importing one
            if K.cpu_level() < level:
                continue
            try:
                importlib.import_module(mod)
            except ImportError:
                pass
        assert 5e-324 * 1.0 != 0.0, "flush-to-zero after import"
        x = np.array([[5e-324, 1e-310, 0.0, -1e-310]])
        with fastact.use_backend("cython"):
            for dt in (np.float32, np.float64):
                xx = x.astype(dt)
                fastact.softmax(xx); fastact.gelu(xx); fastact.tanh(xx); fastact.logsumexp(xx)
                fastact.softplus(xx); fastact.log_softmax(xx); fastact.sigmoid(xx)
        assert 5e-324 * 1.0 != 0.0, "flush-to-zero after running kernels"
        assert np.float64(5e-324) * np.float64(1.0) != 0.0
        assert np.nextafter(np.float32(0), np.float32(1)) * np.float32(1) != 0
        # denormals are also computed, not flushed, by the kernels
        with fastact.use_backend("cython"):
            y = fastact.softmax(np.array([0.0, -100.0], np.float32))
            assert 0 < y[1] < 1e-38, y
        print("ok")
    """)
    assert out.strip() == "ok"


def test_extension_not_linked_with_fast_math():
    if not sys.platform.startswith("linux") or shutil.which("nm") is None:
        pytest.skip("needs nm on Linux")
    import glob
    here = os.path.dirname(K.__file__)
    for so in glob.glob(os.path.join(here, "_kernels*.so")):
        syms = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True).stdout
        syms += subprocess.run(["nm", so], capture_output=True, text=True).stdout
        assert "set_fast_math" not in syms, f"{so} contains crtfastmath"


@functools.lru_cache(maxsize=None)
def _disassembly(variant):
    """objdump of the SIMD variant module fastact._kernels_<variant>, or
    None when it is not built or objdump is missing.  Disassembled, not
    imported, so the tests on it run whatever the CPU."""
    spec = importlib.util.find_spec(f"fastact._kernels_{variant}")
    if spec is None or shutil.which("objdump") is None:
        return None
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", spec.origin],
                          capture_output=True, text=True, check=True).stdout


def _variant_asm(variant):
    asm = _disassembly(variant)
    if asm is None:
        pytest.skip(f"needs the {variant} build and objdump")
    return asm


def test_avx2_build_has_no_masked_stores_and_masked_loads_only_in_packed_tails():
    # AVX2 masked moves (vmaskmovps/pd) run in microcode on AMD Zen 3 (a
    # store ~5x a plain one): GCC emits them for a store or load it cannot
    # prove unconditional, which slowed (4096, 1024) float64 log_softmax by
    # 1.2x and relu_backward by 1.4x.
    asm = _variant_asm("x86_64_v3")
    fn, stores, loads = "?", [], []
    for ln in asm.splitlines():
        if ln.endswith(">:"):
            fn = ln.split("<", 1)[1]
        elif "vmaskmov" in ln:
            # AT&T order: vmaskmovps %ymm_data, %ymm_mask, (mem) is a store
            (stores if ln.rstrip().endswith(")") else loads).append(fn)
    assert not stores, f"masked stores in {sorted(set(stores))}"
    # the packed short rows load the last partial block of a call masked
    assert all("_pk_" in f for f in loads), f"masked loads in {sorted(set(loads))}"


def _reread_vectors(asm, names):
    """(function, first, second) for each zmm instruction of the functions
    whose names contain one of `names` that reads a (non-stack) memory
    operand an earlier one of the same straight-line run already read, with
    no store or jump between them."""
    import re
    hits, fn, seen = [], None, {}
    for ln in asm.splitlines():
        if ln.endswith(">:"):
            name = ln.split("<", 1)[1]
            fn = name if any(n in name for n in names) else None
            seen = {}
            continue
        ins = ln.split("\t")[-1].strip()
        op = ins.split(" ", 1)[0]
        if fn is None or not ins:
            continue
        if op.startswith("j") or op in ("call", "ret"):
            seen = {}
            continue
        m = re.search(r"(-?0x[0-9a-f]+)?\(%\w+(,%\w+,\d)?\)", ins)
        if "zmm" not in ins or m is None or "%rsp" in m.group(0) or "%rbp" in m.group(0):
            continue
        if op.startswith("vmov") and ins.endswith(")"):  # a store
            seen = {}
            continue
        if m.group(0) in seen:
            hits.append((fn, seen[m.group(0)], ins))
        seen[m.group(0)] = ins
    return hits


def test_avx512_build_reads_each_vector_once_in_memory_bound_kernels():
    # GCC 12's generic tuning folds a loaded vector into each instruction
    # that uses it (y of g * y * (1 - y) read by vmulps and vsubps); large
    # NumPy arrays sit 16 bytes past a cache line, so each zmm read splits
    # two lines: sigmoid_backward and tanh_backward float32 took 1.3-1.4x
    # as long on AMD Zen 5 (setup.py's VARIANT_TUNE).
    asm = _variant_asm("x86_64_v4")
    names = ["k_sigmoid_backward>", "k_tanh_backward>", "k_leaky_relu_backward>", "k_logit_backward>"]
    assert all(n in asm for n in names)  # the functions are there to check
    assert not _reread_vectors(asm, names)


def test_avx512_relu_backward_loads_the_gradient_unmasked():
    # a masked load of g (vmovups (mem), %zmm{k}{z}) waits for x's load and
    # compare: relu_backward took 1.6-1.7x as long (fa_relu_bwd)
    import re
    body = re.findall(r"k_relu_backward>:\n(.*?)\n\n", _variant_asm("x86_64_v4"), re.S)
    assert len(body) == 2  # float32, float64
    masked = [ln for b in body for ln in b.splitlines()
              if re.search(r"\(%\w+[^)]*\),%zmm\d+\{%k", ln) and "%rsp" not in ln]
    assert not masked, masked


# ---------------------------------------------------------------------------
# a missing or partial extension

def test_missing_extension_is_reported_and_fastact_still_works():
    out = run_py("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.startswith("fastact._kernels"):
                    raise ImportError(f"blocked {name} for the test")
                return None
        sys.meta_path.insert(0, Block())
        import fastact, numpy as np
        assert "cython" not in fastact.backends(), fastact.backends()
        why = fastact.backend_status()["cython"]
        print(why)
        assert fastact.softmax([0.0, 0.0]).tolist() == [0.5, 0.5]
        try:
            fastact.set_backend("cython")
        except ValueError as e:
            assert "not available" in str(e)
        else:
            raise AssertionError("set_backend('cython') should fail")
    """)
    assert "compiled extension fastact._kernels is not available" in out
    assert "C compiler" in out


def test_missing_simd_variants_fall_back_to_baseline():
    out = run_py("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.startswith("fastact._kernels_x86_64"):
                    raise ImportError("variant not built")
                return None
        sys.meta_path.insert(0, Block())
        import fastact, fastact._kernels as K
        assert "cython" in fastact.backends()
        print(K.simd_path())
        print(K.variant_status)
        with fastact.use_backend("cython"):
            assert abs(fastact.softmax([1.0, 2.0, 3.0])[2] - 0.6652409557748219) < 1e-15
    """)
    assert out.splitlines()[0] == "baseline"


# ---------------------------------------------------------------------------
# the kernel contract is checked, never trusted with memory

def test_contract_violations_raise():
    x = np.zeros((4, 5, 1))
    with pytest.raises(ValueError):
        K.softmax(x, np.zeros((4, 6, 1)))
    with pytest.raises(ValueError):
        K.softmax(x, np.zeros((4, 5)))
    # (outer, n) / (outer,) without the trailing 1: all arrays or none
    with pytest.raises(ValueError):
        K.softmax(np.zeros((4, 5)), np.zeros((4, 5, 1)))
    with pytest.raises(ValueError):
        K.logsumexp(np.zeros((4, 5)), np.zeros((4, 1)))
    with pytest.raises(ValueError):
        K.logsumexp_backward(np.zeros((4, 1)), np.zeros((4, 5)), np.zeros(4), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        K.softmax(np.zeros((4, 5, 1, 1)), np.zeros((4, 5, 1, 1)))
    with pytest.raises(TypeError):
        K.softmax(x, np.zeros((4, 5, 1), np.float32))
    with pytest.raises(TypeError):
        K.softmax(x.astype(np.int64), np.zeros((4, 5, 1), np.int64))
    with pytest.raises(ValueError):
        K.softmax(np.zeros((4, 10, 1))[:, ::2], np.zeros((4, 5, 1)))
    ro = np.zeros((4, 5, 1))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.softmax(x, ro)
    with pytest.raises(ValueError):
        K.sigmoid(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError):
        K.logsumexp(x, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        K.logsumexp_backward(np.zeros((4, 2)), x, np.zeros((4, 1)), np.zeros_like(x))
    with pytest.raises(TypeError):
        K.cross_entropy_index(x, np.zeros((4, 1), np.int32), np.zeros((4, 1)), -100, 0.0)
    with pytest.raises(TypeError):
        K.softmax(None, x)


def test_out_of_range_class_index_never_addresses_memory():
    # the dispatch layer validates targets; the kernel must still not read
    # or write outside the row for a bad index
    x = np.random.default_rng(0).standard_normal((3, 40, 1))
    for t in (40, 10**9, -5):
        tgt = np.full((3, 1), t, np.intp)
        loss = np.empty((3, 1))
        dx = np.empty_like(x)
        K.cross_entropy_index_grad(x, tgt, np.ones((3, 1)), loss, dx, -100, 0.1)
        assert np.isfinite(loss).all()


# ---------------------------------------------------------------------------
# the C API for Cython users

USER_PYX = """
# cython: language_level=3
from fastact._kernels cimport (softmax_row_f32, softmax_rows_f64, logsumexp_row_f64,
                               log_softmax_row_f64, softmax_backward_row_f64, sigmoid_f32)

def run(float[::1] x32, double[:, ::1] x64, double[::1] g):
    cdef float[::1] y32 = x32.copy()
    cdef double[:, ::1] y64 = x64.copy()
    cdef double[::1] ls = g.copy()
    cdef double[::1] gb = g.copy()
    cdef float[::1] s32 = x32.copy()
    cdef double lse
    with nogil:
        softmax_row_f32(&x32[0], &y32[0], x32.shape[0])
        softmax_rows_f64(&x64[0, 0], &y64[0, 0], x64.shape[0], x64.shape[1])
        lse = logsumexp_row_f64(&x64[0, 0], x64.shape[1])
        log_softmax_row_f64(&x64[0, 0], &ls[0], x64.shape[1])
        softmax_backward_row_f64(&g[0], &y64[0, 0], &gb[0], x64.shape[1])
        sigmoid_f32(&x32[0], &s32[0], x32.shape[0])
    return list(y32), [list(r) for r in y64], lse, list(ls), list(gb), list(s32)
"""

USER_SETUP = """
from setuptools import setup, Extension
from Cython.Build import cythonize
setup(ext_modules=cythonize([Extension("userkern", ["userkern.pyx"])],
                            include_path=[{root!r}], quiet=True),
      script_args=["build_ext", "--inplace"])
"""


def test_cython_users_can_cimport_the_row_kernels(tmp_path):
    pytest.importorskip("Cython")
    if shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc") is None:
        pytest.skip("no C compiler")
    pxd_dir = os.path.dirname(os.path.dirname(K.__file__))
    assert os.path.exists(os.path.join(pxd_dir, "fastact", "_kernels.pxd")), "the .pxd must ship"
    (tmp_path / "userkern.pyx").write_text(USER_PYX)
    (tmp_path / "setup.py").write_text(USER_SETUP.format(root=pxd_dir))
    r = subprocess.run([sys.executable, "setup.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and ("command 'gcc' failed" in r.stderr or "No such file" in r.stderr):
        pytest.skip("C compiler unusable: " + r.stderr[-300:])
    assert r.returncode == 0, r.stdout + r.stderr
    out = run_py(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np, fastact, userkern
        x32 = np.array([3.0, 1.0, -2.0], np.float32)
        x64 = np.array([[0.0, -40.0, -1.0], [1.0, 2.0, 3.0]])
        g = np.array([0.5, -1.0, 2.0])
        y32, y64, lse, ls, gb, s32 = userkern.run(x32, x64, g)
        with fastact.use_backend("numpy"):
            assert np.allclose(y32, fastact.softmax(x32), rtol=1e-6)
            assert np.allclose(y64, fastact.softmax(x64), rtol=1e-14)
            assert abs(lse - fastact.logsumexp(x64[0])) < 1e-15
            assert np.allclose(ls, fastact.log_softmax(x64[0]), rtol=1e-14)
            assert np.allclose(gb, fastact.softmax_backward(g, np.asarray(y64[0])), rtol=1e-13)
            assert np.allclose(s32, fastact.sigmoid(x32), rtol=1e-6)
        print("ok", y32[0])
    """)
    assert out.startswith("ok 0.8756")


# ---------------------------------------------------------------------------
# accuracy of the scalar math helpers themselves (on the selected SIMD path;
# test_every_simd_path_matches_reference covers the others through the kernels)

def _ulps(got, ref, dt):
    ref_r = ref.astype(dt)
    sp = np.spacing(np.abs(ref_r)).astype(np.longdouble)
    sp = np.maximum(sp, np.longdouble(np.finfo(dt).smallest_subnormal))
    return np.abs(got.astype(np.longdouble) - ref) / sp


HELPERS = {
    # name: (bound in ulp, sampler(rng, dtype), reference on long double)
    "exp": (1.5, lambda r, big, sub: np.r_[r.uniform(-sub, big, 50000), r.uniform(-1, 1, 20000)], np.exp),
    "exp_neg": (1.5, lambda r, big, sub: -np.r_[r.uniform(0, sub, 50000), r.uniform(0, 1, 20000)], np.exp),
    "expm1_neg": (1.5, lambda r, big, sub: -np.r_[r.uniform(0, 30, 30000), 10.0 ** r.uniform(-10, 0, 30000)], np.expm1),
    "log": (1.5, lambda r, big, sub: np.r_[10.0 ** r.uniform(-37, 37, 40000), r.uniform(0.5, 2, 20000)], np.log),
    "log1p": (1.5, lambda r, big, sub: np.r_[10.0 ** r.uniform(-10, 30, 30000), -r.uniform(0, 1, 30000)], np.log1p),
    "log1p_unit": (2.0, lambda r, big, sub: r.uniform(0, 1, 50000), np.log1p),
    "tanh": (3.0, lambda r, big, sub: np.r_[r.uniform(-20, 20, 40000), r.uniform(-1e-3, 1e-3, 10000)], np.tanh),
    "sigmoid": (3.0, lambda r, big, sub: r.uniform(-100, 40, 50000), lambda x: 1 / (1 + np.exp(-x))),
}


@pytest.mark.parametrize("name", list(HELPERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_math_helper_accuracy(name, dtype):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs an extended-precision long double as the reference")
    bound, sample, f = HELPERS[name]
    big, sub = (88.0, 103.0) if dtype == np.float32 else (708.0, 744.0)
    x = sample(np.random.default_rng(7), big, sub).astype(dtype)
    out = np.empty_like(x)
    K._math(name, x, out)
    with np.errstate(all="ignore"):
        ref = f(x.astype(np.longdouble))
    ok = np.isfinite(ref)
    err = _ulps(out[ok], ref[ok], dtype)
    assert err.max() <= bound, f"{name} {np.dtype(dtype).name}: {err.max():.2f} ulp at x={x[ok][err.argmax()]!r}"
    # special values: NaN stays NaN, limits at +-inf
    with np.errstate(all="ignore"):
        sv = np.array([np.nan, np.inf, -np.inf, 0.0], dtype)
        so = np.empty_like(sv)
        K._math(name, sv, so)
    assert np.isnan(so[0])


def test_erfc_helper_accuracy():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    rng = np.random.default_rng(8)
    for dt, amax, bound in ((np.float32, 10.0, 6.0), (np.float64, 26.5, 6.0)):
        x = np.r_[rng.uniform(0, amax, 1500), rng.uniform(0, 1, 500), 0.0].astype(dt)
        out = np.empty_like(x)
        K._math("erfc_pos", x, out)
        ref = np.array([np.longdouble(mpmath.nstr(mpmath.erfc(mpmath.mpf(float(v))), 30)) for v in x])
        err = _ulps(out, ref, dt)
        assert err.max() <= bound, f"erfc {np.dtype(dt).name}: {err.max():.2f} ulp"
        assert out[-1] == 1.0  # erfc(0) exactly


def test_contention_backoff_state():
    events, left = K._contention()
    assert events >= 0 and left >= 0.0
    old = K._set_backoff(0.0)  # disabled: parallel calls never back off
    try:
        assert K._contention()[1] == 0.0
    finally:
        K._set_backoff(old)
