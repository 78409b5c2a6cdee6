# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""Compiled kernels of fastact's "cython" backend.

The module is itself the baseline build of the kernels (x86-64 SSE2, or the
default target of any other architecture).  At import it detects the CPU and,
when it can, takes its kernel table from ``fastact._kernels_x86_64_v4``
(AVX-512) or ``fastact._kernels_x86_64_v3`` (AVX2 + FMA), extension modules
compiled from the same Cython source with wider instruction sets (and
imported only on a CPU that has them: all their code is compiled for them,
module initialisation included -- the v4 module's fills its table with
AVX-512 stores).  ``simd_path()`` says which one runs; the environment variable
``FASTACT_SIMD`` (``baseline``, ``x86-64-v3``/``avx2``,
``x86-64-v4``/``avx512``) caps it, e.g. to test every path on one machine.

The ``def`` functions follow the kernel contract of ``fastact._registry``
(canonical C-contiguous float32/float64 arrays, outputs written in full,
out may be exactly one of the inputs) and check it: a violation raises
``ValueError`` or ``TypeError`` instead of touching memory out of bounds.
They release the GIL for the whole computation and split large arrays
between OpenMP threads (``set_num_threads``): only above ~100 us of
single-thread work, in several pieces per thread handed out dynamically,
and not at all for 0.2 s after three calls in a row whose threads were kept
waiting by a busy machine (see ``_after_region``).

Cython users can ``cimport`` the row kernels declared in
``fastact/_kernels.pxd`` (e.g. ``from fastact._kernels cimport
softmax_row_f32``) and call them without the GIL.
"""

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cython.parallel cimport prange, threadid
from libc.string cimport memset

import os as _os

cnp.import_array()

include "_kernels_body.pxi"

# ===========================================================================
# SIMD path selection

cdef FaTable _BASE_TABLE
_fill_table(&_BASE_TABLE, 0)
cdef FaTable* T = &_BASE_TABLE

cdef const char* _CAPSULE_NAME = b"fastact._kernels.FaTable"
_PATH_NAMES = {0: "baseline", 3: "x86-64-v3", 4: "x86-64-v4"}
_PATH_DESCR = {
    0: "baseline (no AVX; SSE2 on x86-64)",
    3: "x86-64-v3 (AVX2 + FMA, 256-bit)",
    4: "x86-64-v4 (AVX-512, 512-bit)",
}
_ALIASES = {
    "": 99, "auto": 99, "best": 99,
    "baseline": 0, "base": 0, "default": 0, "sse2": 0, "none": 0,
    "x86-64-v3": 3, "v3": 3, "avx2": 3,
    "x86-64-v4": 4, "v4": 4, "avx512": 4, "avx-512": 4,
}

#: why each variant is or is not used (for diagnostics and the tests)
variant_status = {}


cdef int _cpu_level = fa_cpu_level()


def _select_table():
    """Point T at the best variant this CPU runs, capped by FASTACT_SIMD."""
    global T
    cdef FaTable* tab
    variant_status.clear()
    cap_name = _os.environ.get("FASTACT_SIMD", "").strip().lower()
    cap = _ALIASES.get(cap_name, 99)
    if cap_name not in _ALIASES:
        variant_status["FASTACT_SIMD"] = f"ignored unknown value {cap_name!r}"
    T = &_BASE_TABLE
    for level, modname in ((4, "fastact._kernels_x86_64_v4"), (3, "fastact._kernels_x86_64_v3")):
        if level > cap:
            variant_status[_PATH_NAMES[level]] = "disabled by FASTACT_SIMD"
            continue
        if level > _cpu_level:
            variant_status[_PATH_NAMES[level]] = "not supported by this CPU"
            continue
        try:
            mod = __import__(modname, fromlist=["TABLE"])
            cap_obj = mod.TABLE
        except Exception as exc:  # not built (other architecture, failed compile)
            variant_status[_PATH_NAMES[level]] = f"not available: {type(exc).__name__}: {exc}"
            continue
        if not PyCapsule_IsValid(cap_obj, _CAPSULE_NAME):
            variant_status[_PATH_NAMES[level]] = "not available: bad table capsule"
            continue
        tab = <FaTable*>PyCapsule_GetPointer(cap_obj, _CAPSULE_NAME)
        if tab.level != level:
            variant_status[_PATH_NAMES[level]] = "not available: table level mismatch"
            continue
        if T == &_BASE_TABLE:
            T = tab
            variant_status[_PATH_NAMES[level]] = "selected"
        else:
            variant_status[_PATH_NAMES[level]] = "available"
    variant_status["baseline"] = "selected" if T == &_BASE_TABLE else "available"


_select_table()


def simd_path():
    """Name of the kernel build in use: ``"x86-64-v4"`` (AVX-512),
    ``"x86-64-v3"`` (AVX2 + FMA) or ``"baseline"``."""
    return _PATH_NAMES[T.level]


def simd_description():
    """Human-readable description of :func:`simd_path`."""
    return _PATH_DESCR[T.level] + (" with FMA" if T.fma and T.level == 0 else "")


def cpu_level():
    """The best level this CPU supports: 4 (x86-64-v4), 3 (x86-64-v3) or 0."""
    return _cpu_level


# ===========================================================================
# threads

cdef int _nthreads = 1
# below this much single-threaded work (ns) a kernel runs on one thread;
# above it every thread gets at least _par_chunk_ns of work.  Measured here
# (2 cores, passive OpenMP wait policy): a parallel region costs ~2-3 us on a
# quiet machine; 2 threads give 1.3x at 10 us of work, 1.6-1.75x at 20-40 us,
# 1.9x at 100 us, 2.0x above.  When the other core is busy a region can cost
# milliseconds (the team waits for a thread the OS has not scheduled), hence
# the conservative 100 us.
cdef double _par_min_ns = 100000.0
cdef double _par_chunk_ns = 50000.0
# below this much work (ns) a call keeps the GIL: releasing and retaking it
# costs ~0.05-0.1 us, which is more than another Python thread gains
cdef double _GIL_KEEP_NS = 2000.0


def set_num_threads(int n):
    """Largest number of OpenMP threads a kernel may use (called by
    ``fastact.set_num_threads``)."""
    global _nthreads
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _nthreads = n


def get_num_threads():
    return _nthreads


def openmp_enabled():
    """True if the extension was compiled with OpenMP (multi-threaded)."""
    return bool(fa_have_openmp())


def openmp_max_threads():
    """``omp_get_max_threads()`` (1 without OpenMP)."""
    return fa_omp_max_threads()


def _set_parallel_threshold(double min_ns, double chunk_ns):
    """Tune the work thresholds (ns of single-thread work); returns the old
    values.  For benchmarks and tests."""
    global _par_min_ns, _par_chunk_ns
    old = (_par_min_ns, _par_chunk_ns)
    _par_min_ns = min_ns
    _par_chunk_ns = chunk_ns
    return old


# Contention back-off.  On a machine whose other cores are busy (another
# process), the OS may not run a woken OpenMP thread for milliseconds, and
# the whole team waits for it at the end of the region: measured here, a
# 0.65 ms softmax took 5 ms with 2 threads.  Each parallel call therefore
# measures how long the calling thread waited for the others (region time
# minus its own busy time).  A wait longer than 0.1 ms and longer than the
# calling thread's own work means the team was slower than that thread alone
# (pieces are handed out dynamically, so a thread that merely starts late
# costs at most one piece of waiting); _BACKOFF_STREAK such waits in a row
# make kernels run single-threaded for the next _BACKOFF_S seconds, after
# which threads are tried again.  One long wait is not enough: a single
# descheduling of the other thread (or page faults on a fresh output) would
# otherwise turn a whole stretch of calls serial, which measured worse than
# the waits.  (An earlier rule, wait > 0.3 x region time, also fired when
# PyTorch's spinning OpenMP threads only delayed ours: Cython
# softmax_backward (65536,16) float32 on 2 threads then ran at its 1-thread
# 580-630 us inside the benchmark, 400 us with this rule.)
cdef double _backoff_until = 0.0
cdef double _BACKOFF_S = 0.2
cdef int _BACKOFF_STREAK = 3
cdef int _streak = 0
cdef int _contention_events = 0
cdef enum:
    MAXT = 256


cdef inline void _after_region(double t0, double busy0) noexcept nogil:
    global _backoff_until, _contention_events, _streak
    cdef double t1 = fa_wtime()
    cdef double treg = t1 - t0
    cdef double wait = treg - busy0
    if wait > 1e-4 and wait > busy0:
        _contention_events += 1
        _streak += 1
        if _streak >= _BACKOFF_STREAK:
            _backoff_until = t1 + _BACKOFF_S
            _streak = 0
    else:
        _streak = 0


def _contention():
    """(events so far, seconds of single-threaded back-off left)."""
    return _contention_events, max(0.0, _backoff_until - fa_wtime())


def _set_backoff(double seconds):
    """Set the back-off period (0 disables it); returns the old one."""
    global _BACKOFF_S, _backoff_until, _streak
    old = _BACKOFF_S
    _BACKOFF_S = seconds
    _backoff_until = 0.0
    _streak = 0
    return old


cdef int _have_openmp = fa_have_openmp()


cdef inline int _nt_for(double work_ns) noexcept nogil:
    cdef int nt = _nthreads
    cdef double m
    if nt <= 1 or work_ns < _par_min_ns or not _have_openmp:
        return 1
    if _backoff_until > 0.0 and fa_wtime() < _backoff_until:
        return 1
    if nt > MAXT:
        nt = MAXT
    m = work_ns / _par_chunk_ns
    if m < nt:
        nt = <int>m if m >= 2 else 2
    return nt


cdef inline Py_ssize_t _pieces_for(double work_ns, int nt) noexcept nogil:
    # pieces handed out dynamically: several per thread (a thread that loses
    # its core to another process -- the norm on a shared 2-core machine --
    # then holds up the others by one small piece, not by half the work),
    # each still worth >= _par_chunk_ns / 2
    cdef double m = work_ns / (0.5 * _par_chunk_ns)
    cdef Py_ssize_t p = 8 * nt
    if m < p:
        p = <Py_ssize_t>m
    return p if p > nt else nt


def _team_size(int nt):
    """Threads OpenMP actually gives a parallel region of nt threads."""
    cdef int i, got = 1
    cdef int[1] team
    team[0] = 1
    for i in prange(nt, nogil=True, num_threads=nt, schedule="static"):
        if i == 0:
            team[0] = fa_omp_team_size()
    return team[0]


# Rough single-thread cost of each kernel, ns per element for float32 and
# float64 on a modern x86-64 core (memory traffic included); only used to
# decide how many threads a call gets.
cdef double[N_EW1][2] _COST_EW1
cdef double[N_EW2][2] _COST_EW2
cdef double[N_ROW1][2] _COST_ROW1
cdef double[N_ROW2][2] _COST_ROW2
cdef double[2] _COST_LSE_BWD
cdef double[2] _COST_LOSS


cdef void _set2(double* c, double f32, double f64) noexcept:
    c[0] = f32
    c[1] = f64


cdef void _init_costs() noexcept:
    # single-thread ns per element, measured here (x86-64-v4, 2.6 GHz, 2^20
    # elements, rows of 1024); memory traffic included
    _set2(_COST_EW1[E_SIGMOID], 0.40, 0.85)
    _set2(_COST_EW1[E_LOG_SIGMOID], 0.50, 1.40)
    _set2(_COST_EW1[E_LOGIT], 1.25, 3.50)
    _set2(_COST_EW1[E_SOFTPLUS], 0.60, 1.60)
    _set2(_COST_EW1[E_TANH], 0.36, 0.85)
    _set2(_COST_EW1[E_RELU], 0.28, 0.55)
    _set2(_COST_EW1[E_LEAKY_RELU], 0.28, 0.55)
    _set2(_COST_EW1[E_GELU], 0.75, 2.00)
    _set2(_COST_EW1[E_GELU_TANH], 0.50, 1.10)
    _set2(_COST_EW1[E_SILU], 0.40, 0.95)
    _set2(_COST_EW2[B_SIGMOID], 0.40, 0.80)
    _set2(_COST_EW2[B_LOG_SIGMOID], 0.45, 1.00)
    _set2(_COST_EW2[B_LOGIT], 0.40, 0.80)
    _set2(_COST_EW2[B_SOFTPLUS], 0.45, 1.10)
    _set2(_COST_EW2[B_TANH], 0.40, 0.80)
    _set2(_COST_EW2[B_RELU], 0.40, 0.80)
    _set2(_COST_EW2[B_LEAKY_RELU], 0.40, 0.80)
    _set2(_COST_EW2[B_GELU], 0.95, 2.60)
    _set2(_COST_EW2[B_GELU_TANH], 0.60, 1.35)
    _set2(_COST_EW2[B_SILU], 0.50, 1.10)
    _set2(_COST_EW2[B_BCE], 0.55, 1.50)
    _set2(_COST_EW2[B_BCE_BACKWARD], 0.45, 1.00)
    _set2(_COST_EW2[B_SIGMOID_X], 0.43, 0.95)
    _set2(_COST_EW2[B_TANH_X], 0.45, 1.00)
    _set2(_COST_ROW1[R_SOFTMAX], 0.47, 1.00)
    _set2(_COST_ROW1[R_LOG_SOFTMAX], 0.60, 1.30)
    _set2(_COST_ROW1[R_LOGSUMEXP], 0.46, 0.95)
    _set2(_COST_ROW2[R2_SOFTMAX_BACKWARD], 0.45, 1.00)
    _set2(_COST_ROW2[R2_LOG_SOFTMAX_BACKWARD], 0.55, 1.20)
    _set2(_COST_LSE_BWD, 0.35, 0.80)
    _set2(_COST_LOSS, 0.65, 1.20)


_init_costs()


# ===========================================================================
# argument checks (cheap: a handful of C field reads)

cdef inline int _ftype(cnp.ndarray a) except -1:
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT32:
        return 0
    if t == cnp.NPY_FLOAT64:
        return 1
    raise TypeError(f"fastact cython kernels take float32 or float64 arrays, got {a.dtype}")


cdef inline int _check_in(cnp.ndarray a, int ft, str name) except -1:
    if _ftype(a) != ft:
        raise TypeError(f"{name} has dtype {a.dtype}; all arrays of a kernel call share one dtype")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous")
    return 0


cdef inline int _check_out(cnp.ndarray a, int ft, str name) except -1:
    _check_in(a, ft, name)
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} is read-only")
    return 0


cdef inline int _same_size(cnp.ndarray a, cnp.ndarray b, str an, str bn) except -1:
    if cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(b):
        raise ValueError(f"{an} has {cnp.PyArray_SIZE(a)} elements but {bn} has {cnp.PyArray_SIZE(b)}")
    return 0


# Row kernels take (outer, n, inner) arrays and reduced (outer, inner) ones;
# with inner = 1 the trailing axis may be left out of all of them -- (outer,
# n) and (outer,) -- which saves the dispatch two reshapes (~0.3 us) on every
# small call.  _shape3 returns the form (ndim) of the main array, which the
# others must share.

cdef inline int _shape3(cnp.ndarray a, str name, Py_ssize_t* o, Py_ssize_t* n, Py_ssize_t* i) except -1:
    cdef int nd = cnp.PyArray_NDIM(a)
    if nd != 3 and nd != 2:
        raise ValueError(f"{name} must be 3-D (outer, n, inner) or 2-D (outer, n), got {nd}-D")
    o[0] = cnp.PyArray_DIM(a, 0)
    n[0] = cnp.PyArray_DIM(a, 1)
    i[0] = cnp.PyArray_DIM(a, 2) if nd == 3 else 1
    return nd


cdef inline int _same3(cnp.ndarray a, str name, int nd, Py_ssize_t o, Py_ssize_t n, Py_ssize_t i) except -1:
    if not (cnp.PyArray_NDIM(a) == nd and cnp.PyArray_DIM(a, 0) == o and cnp.PyArray_DIM(a, 1) == n
            and (nd == 2 or cnp.PyArray_DIM(a, 2) == i)):
        want = <object>(o, n, i) if nd == 3 else <object>(o, n)
        raise ValueError(f"{name} must have shape {want}, got {(<object>a).shape}")
    return 0


cdef inline int _red2(cnp.ndarray a, str name, int nd, Py_ssize_t o, Py_ssize_t i) except -1:
    if not (cnp.PyArray_NDIM(a) == nd - 1 and cnp.PyArray_DIM(a, 0) == o
            and (nd == 2 or cnp.PyArray_DIM(a, 1) == i)):
        want = <object>(o, i) if nd == 3 else <object>(o,)
        raise ValueError(f"{name} must have shape {want}, got {(<object>a).shape}")
    return 0


# ===========================================================================
# runners: split one call between threads

# One call is a Job: its kernel (a pointer from the table T, called with the
# pointer type of its kind and dtype), its arrays as byte pointers and its
# extents.  _run cuts it into pieces and hands them to the threads; _do_piece
# runs one piece.  Every kernel of every kind goes through these two.

cdef enum:
    J_EW1 = 0     # fn(x, out, n, p1, p2)
    J_EW2 = 1     # fn(a, b, out, n, p1, p2)
    J_ROW = 2     # fn(x, out, outer, n, inner, stride), out full-shaped
    J_ROW_RED = 3 # the same, out reduced (outer, inner)
    J_ROW2 = 4    # fn(a, b, out, ...), all full-shaped
    J_LSE_BWD = 5 # fn(g, x, lse, out, ...): g and lse reduced
    J_LOSS = 6    # fn(x, target, p, scale, loss, dx, ..., ignore, eps)


ctypedef struct Job:
    int kind
    int ft                  # 0: float32, 1: float64
    void* fn
    const char* a
    const char* b
    const char* c
    const char* d           # loss: scale (reduced)
    const npy_intp* t       # loss: class indices (reduced)
    char* out
    char* out2              # loss: dx (full)
    Py_ssize_t n            # elementwise: elements; rows: row length
    Py_ssize_t outer
    Py_ssize_t inner
    double p1
    double p2
    npy_intp ignore
    bint by_outer           # how the rows are cut (set by _run)
    Py_ssize_t chunk


cdef inline const char* _at(const char* p, Py_ssize_t off, int ft) noexcept nogil:
    # p advanced by off elements of the job's float type (NULL stays NULL)
    if p == NULL:
        return NULL
    return p + (off << (2 + ft))


cdef inline bint _split_outer(Py_ssize_t outer, Py_ssize_t inner, int nt) noexcept nogil:
    # split the outer axis unless it is too short and the inner one is not
    return outer >= 4 * nt or inner == 1 or outer >= inner


cdef inline Py_ssize_t _chunking(bint by_outer, Py_ssize_t outer, Py_ssize_t inner,
                                 Py_ssize_t npieces, Py_ssize_t* nch) noexcept nogil:
    """Chunk length (rows of outer, or a multiple of 16 inner lanes) for
    about npieces pieces; their number goes to nch."""
    cdef Py_ssize_t chunk
    if by_outer:
        chunk = (outer + npieces - 1) // npieces
        nch[0] = (outer + chunk - 1) // chunk
    else:
        chunk = (((inner + npieces - 1) // npieces) + 15) & ~(<Py_ssize_t>15)
        nch[0] = (inner + chunk - 1) // chunk
    return chunk


cdef inline void _piece(Py_ssize_t ci, Py_ssize_t chunk, bint by_outer, Py_ssize_t outer,
                        Py_ssize_t inner, Py_ssize_t full, Py_ssize_t* offf, Py_ssize_t* offr,
                        Py_ssize_t* cnt, Py_ssize_t* ni) noexcept nogil:
    """Piece ci: offsets into full-shaped (offf) and reduced (offr) arrays,
    its number of outer rows (cnt) and of inner lanes (ni)."""
    cdef Py_ssize_t lo = ci * chunk
    cdef Py_ssize_t hi = lo + chunk
    if by_outer:
        if hi > outer:
            hi = outer
        offf[0] = lo * full
        offr[0] = lo * inner
        cnt[0] = hi - lo
        ni[0] = inner
    else:
        if hi > inner:
            hi = inner
        offf[0] = lo
        offr[0] = lo
        cnt[0] = outer
        ni[0] = hi - lo


cdef void _do_piece(Job* j, Py_ssize_t ci) noexcept nogil:
    cdef Py_ssize_t offf, offr, oo, cnt, ni
    cdef int ft = j.ft
    cdef const npy_intp* tp = NULL
    if j.kind <= J_EW2:
        offf = ci * j.chunk
        cnt = j.n - offf
        if cnt > j.chunk:
            cnt = j.chunk
        if j.kind == J_EW1:
            if ft == 0:
                (<ew1_f32_t>j.fn)(<const float*>_at(j.a, offf, 0), <float*>_at(j.out, offf, 0), cnt, j.p1, j.p2)
            else:
                (<ew1_f64_t>j.fn)(<const double*>_at(j.a, offf, 1), <double*>_at(j.out, offf, 1), cnt, j.p1, j.p2)
        elif ft == 0:
            (<ew2_f32_t>j.fn)(<const float*>_at(j.a, offf, 0), <const float*>_at(j.b, offf, 0),
                              <float*>_at(j.out, offf, 0), cnt, j.p1, j.p2)
        else:
            (<ew2_f64_t>j.fn)(<const double*>_at(j.a, offf, 1), <const double*>_at(j.b, offf, 1),
                              <double*>_at(j.out, offf, 1), cnt, j.p1, j.p2)
        return
    _piece(ci, j.chunk, j.by_outer, j.outer, j.inner, j.n * j.inner, &offf, &offr, &cnt, &ni)
    if j.kind == J_ROW or j.kind == J_ROW_RED:
        oo = offr if j.kind == J_ROW_RED else offf
        if ft == 0:
            (<row1_f32_t>j.fn)(<const float*>_at(j.a, offf, 0), <float*>_at(j.out, oo, 0),
                               cnt, j.n, ni, j.inner)
        else:
            (<row1_f64_t>j.fn)(<const double*>_at(j.a, offf, 1), <double*>_at(j.out, oo, 1),
                               cnt, j.n, ni, j.inner)
    elif j.kind == J_ROW2:
        if ft == 0:
            (<row2_f32_t>j.fn)(<const float*>_at(j.a, offf, 0), <const float*>_at(j.b, offf, 0),
                               <float*>_at(j.out, offf, 0), cnt, j.n, ni, j.inner)
        else:
            (<row2_f64_t>j.fn)(<const double*>_at(j.a, offf, 1), <const double*>_at(j.b, offf, 1),
                               <double*>_at(j.out, offf, 1), cnt, j.n, ni, j.inner)
    elif j.kind == J_LSE_BWD:
        if ft == 0:
            (<row3_f32_t>j.fn)(<const float*>_at(j.a, offr, 0), <const float*>_at(j.b, offf, 0),
                               <const float*>_at(j.c, offr, 0), <float*>_at(j.out, offf, 0),
                               cnt, j.n, ni, j.inner)
        else:
            (<row3_f64_t>j.fn)(<const double*>_at(j.a, offr, 1), <const double*>_at(j.b, offf, 1),
                               <const double*>_at(j.c, offr, 1), <double*>_at(j.out, offf, 1),
                               cnt, j.n, ni, j.inner)
    else:
        if j.t != NULL:
            tp = j.t + offr
        if ft == 0:
            (<loss_f32_t>j.fn)(<const float*>_at(j.a, offf, 0), tp, <const float*>_at(j.b, offf, 0),
                               <const float*>_at(j.d, offr, 0), <float*>_at(j.out, offr, 0),
                               <float*>_at(j.out2, offf, 0), cnt, j.n, ni, j.inner, j.ignore, j.p1)
        else:
            (<loss_f64_t>j.fn)(<const double*>_at(j.a, offf, 1), tp, <const double*>_at(j.b, offf, 1),
                               <const double*>_at(j.d, offr, 1), <double*>_at(j.out, offr, 1),
                               <double*>_at(j.out2, offf, 1), cnt, j.n, ni, j.inner, j.ignore, j.p1)


cdef void _run(Job* j, int nt, Py_ssize_t npieces) noexcept nogil:
    cdef Py_ssize_t ci, nch
    cdef double busy[MAXT]
    cdef double t0, ts
    cdef int tid
    cdef bint ew = j.kind <= J_EW2
    if not ew and nt > 1 and j.outer < 2 and j.inner < 32:
        nt = 1
    if nt <= 1:
        # one piece and no parallel region at all: entering one costs
        # ~0.4 us even for a team of one
        j.by_outer = True
        j.chunk = j.n if ew else j.outer
        _do_piece(j, 0)
        return
    if ew:
        # pieces of whole cache lines
        j.chunk = (((j.n + npieces - 1) // npieces) + 63) & ~(<Py_ssize_t>63)
        nch = (j.n + j.chunk - 1) // j.chunk
    else:
        j.by_outer = _split_outer(j.outer, j.inner, nt)
        j.chunk = _chunking(j.by_outer, j.outer, j.inner, npieces, &nch)
    for ci in range(nt):
        busy[ci] = 0.0
    t0 = fa_wtime()
    for ci in prange(nch, num_threads=nt, schedule="dynamic"):
        tid = threadid()
        ts = fa_wtime()
        _do_piece(j, ci)
        busy[tid] = busy[tid] + (fa_wtime() - ts)
    _after_region(t0, busy[0])


# ===========================================================================
# Python entry points, one per registry kernel

cdef inline void* _ptr(cnp.ndarray a) noexcept:
    return cnp.PyArray_DATA(a)


cdef inline void _job(Job* j, int kind, int ft, void* fn) noexcept:
    memset(j, 0, sizeof(Job))
    j.kind = kind
    j.ft = ft
    j.fn = fn


cdef int _go(Job* j, double work_ns) except -1:
    cdef int nt = _nt_for(work_ns)
    cdef Py_ssize_t npieces = _pieces_for(work_ns, nt)
    if work_ns < _GIL_KEEP_NS:
        # releasing and taking back the GIL would cost more than it frees
        _run(j, nt, npieces)
        return 0
    with nogil:
        _run(j, nt, npieces)
    return 0


cdef int _ew(int kind, int k, cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, double p1, double p2,
             str an, str bn) except -1:
    # J_EW1: one input a (b is None); J_EW2: inputs a and b, dtype from b
    cdef cnp.ndarray main = a if b is None else b
    cdef int ft = _ftype(main)
    cdef Job j
    _check_in(a, ft, an)
    if b is not None:
        _check_in(b, ft, bn)
        _same_size(a, b, an, bn)
    _check_out(out, ft, "out")
    _same_size(main, out, an if b is None else bn, "out")
    if kind == J_EW1:
        _job(&j, kind, ft, <void*>T.ew1_f32[k] if ft == 0 else <void*>T.ew1_f64[k])
    else:
        _job(&j, kind, ft, <void*>T.ew2_f32[k] if ft == 0 else <void*>T.ew2_f64[k])
        j.b = <const char*>_ptr(b)
    j.a = <const char*>_ptr(a)
    j.out = <char*>_ptr(out)
    j.n = cnp.PyArray_SIZE(main)
    j.p1 = p1
    j.p2 = p2
    return _go(&j, j.n * (_COST_EW1[k][ft] if kind == J_EW1 else _COST_EW2[k][ft]))


cdef inline int _ew1(int k, cnp.ndarray x, cnp.ndarray out, double p1, double p2) except -1:
    return _ew(J_EW1, k, x, None, out, p1, p2, "x", None)


cdef inline int _ew2(int k, cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, double p1, double p2,
                     str an, str bn) except -1:
    return _ew(J_EW2, k, a, b, out, p1, p2, an, bn)


def sigmoid(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_SIGMOID, x, out, 0.0, 0.0)


def log_sigmoid(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_LOG_SIGMOID, x, out, 0.0, 0.0)


def logit(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_LOGIT, x, out, 0.0, 0.0)


def softplus(cnp.ndarray x not None, cnp.ndarray out not None, double beta, double threshold):
    _ew1(E_SOFTPLUS, x, out, beta, threshold)


def tanh(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_TANH, x, out, 0.0, 0.0)


def relu(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_RELU, x, out, 0.0, 0.0)


def leaky_relu(cnp.ndarray x not None, cnp.ndarray out not None, double negative_slope):
    _ew1(E_LEAKY_RELU, x, out, negative_slope, 0.0)


def gelu(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_GELU, x, out, 0.0, 0.0)


def gelu_tanh(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_GELU_TANH, x, out, 0.0, 0.0)


def silu(cnp.ndarray x not None, cnp.ndarray out not None):
    _ew1(E_SILU, x, out, 0.0, 0.0)


def sigmoid_backward(cnp.ndarray grad not None, cnp.ndarray y not None, cnp.ndarray out not None):
    _ew2(B_SIGMOID, grad, y, out, 0.0, 0.0, "grad", "y")


def sigmoid_backward_x(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_SIGMOID_X, grad, x, out, 0.0, 0.0, "grad", "x")


def tanh_backward_x(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_TANH_X, grad, x, out, 0.0, 0.0, "grad", "x")


def log_sigmoid_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_LOG_SIGMOID, grad, x, out, 0.0, 0.0, "grad", "x")


def logit_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_LOGIT, grad, x, out, 0.0, 0.0, "grad", "x")


def softplus_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None,
                      double beta, double threshold):
    _ew2(B_SOFTPLUS, grad, x, out, beta, threshold, "grad", "x")


def tanh_backward(cnp.ndarray grad not None, cnp.ndarray y not None, cnp.ndarray out not None):
    _ew2(B_TANH, grad, y, out, 0.0, 0.0, "grad", "y")


def relu_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_RELU, grad, x, out, 0.0, 0.0, "grad", "x")


def leaky_relu_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None,
                        double negative_slope):
    _ew2(B_LEAKY_RELU, grad, x, out, negative_slope, 0.0, "grad", "x")


def gelu_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_GELU, grad, x, out, 0.0, 0.0, "grad", "x")


def gelu_tanh_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_GELU_TANH, grad, x, out, 0.0, 0.0, "grad", "x")


def silu_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray out not None):
    _ew2(B_SILU, grad, x, out, 0.0, 0.0, "grad", "x")


def bce_with_logits(cnp.ndarray x not None, cnp.ndarray target not None, cnp.ndarray out not None):
    _ew2(B_BCE, x, target, out, 0.0, 0.0, "x", "target")


def bce_with_logits_backward(cnp.ndarray x not None, cnp.ndarray target not None,
                             cnp.ndarray out not None, double scale):
    _ew2(B_BCE_BACKWARD, x, target, out, scale, 0.0, "x", "target")


cdef int _rows(int kind, int k, cnp.ndarray a, cnp.ndarray b, cnp.ndarray c, cnp.ndarray out,
               double cost) except -1:
    # J_ROW / J_ROW_RED: a = x; J_ROW2: a = grad, b = y; J_LSE_BWD: a = grad, b = x, c = lse
    cdef cnp.ndarray main = b if kind == J_LSE_BWD else a
    cdef int ft = _ftype(main)
    cdef Py_ssize_t o, n, i
    cdef Job j
    cdef void* fn
    cdef int nd = _shape3(main, "grad" if kind == J_ROW2 else "x", &o, &n, &i)
    _check_in(main, ft, "grad" if kind == J_ROW2 else "x")
    _check_out(out, ft, "out")
    if kind == J_ROW_RED:
        _red2(out, "out", nd, o, i)
    else:
        _same3(out, "out", nd, o, n, i)
    if kind == J_ROW2:
        _check_in(b, ft, "y")
        _same3(b, "y", nd, o, n, i)
        fn = <void*>T.row2_f32[k] if ft == 0 else <void*>T.row2_f64[k]
    elif kind == J_LSE_BWD:
        _check_in(a, ft, "grad")
        _check_in(c, ft, "lse")
        _red2(a, "grad", nd, o, i)
        _red2(c, "lse", nd, o, i)
        fn = <void*>T.lse_bwd_f32 if ft == 0 else <void*>T.lse_bwd_f64
    else:
        fn = <void*>T.row1_f32[k] if ft == 0 else <void*>T.row1_f64[k]
    _job(&j, kind, ft, fn)
    j.a = <const char*>_ptr(a)
    if b is not None:
        j.b = <const char*>_ptr(b)
    if c is not None:
        j.c = <const char*>_ptr(c)
    j.out = <char*>_ptr(out)
    j.outer = o
    j.n = n
    j.inner = i
    return _go(&j, <double>o * n * i * cost)


def softmax(cnp.ndarray x not None, cnp.ndarray out not None):
    _rows(J_ROW, R_SOFTMAX, x, None, None, out, _COST_ROW1[R_SOFTMAX][_ftype(x)])


def log_softmax(cnp.ndarray x not None, cnp.ndarray out not None):
    _rows(J_ROW, R_LOG_SOFTMAX, x, None, None, out, _COST_ROW1[R_LOG_SOFTMAX][_ftype(x)])


def logsumexp(cnp.ndarray x not None, cnp.ndarray out not None):
    _rows(J_ROW_RED, R_LOGSUMEXP, x, None, None, out, _COST_ROW1[R_LOGSUMEXP][_ftype(x)])


def softmax_backward(cnp.ndarray grad not None, cnp.ndarray y not None, cnp.ndarray out not None):
    _rows(J_ROW2, R2_SOFTMAX_BACKWARD, grad, y, None, out, _COST_ROW2[R2_SOFTMAX_BACKWARD][_ftype(y)])


def log_softmax_backward(cnp.ndarray grad not None, cnp.ndarray y not None, cnp.ndarray out not None):
    _rows(J_ROW2, R2_LOG_SOFTMAX_BACKWARD, grad, y, None, out, _COST_ROW2[R2_LOG_SOFTMAX_BACKWARD][_ftype(y)])


def logsumexp_backward(cnp.ndarray grad not None, cnp.ndarray x not None, cnp.ndarray lse not None,
                       cnp.ndarray out not None):
    _rows(J_LSE_BWD, 0, grad, x, lse, out, _COST_LSE_BWD[_ftype(x)])


cdef int _loss(cnp.ndarray x, cnp.ndarray target, cnp.ndarray p, cnp.ndarray scale, cnp.ndarray loss,
               cnp.ndarray dx, npy_intp ignore, double eps) except -1:
    cdef int ft = _ftype(x)
    cdef Py_ssize_t o, n, i
    cdef Job j
    cdef int nd = _shape3(x, "x", &o, &n, &i)
    _check_in(x, ft, "x")
    _check_out(loss, ft, "loss")
    _red2(loss, "loss", nd, o, i)
    _job(&j, J_LOSS, ft, <void*>T.loss_f32 if ft == 0 else <void*>T.loss_f64)
    if target is not None:
        if cnp.PyArray_TYPE(target) != cnp.NPY_INTP or not cnp.PyArray_IS_C_CONTIGUOUS(target):
            raise TypeError("target must be a C-contiguous numpy.intp array")
        _red2(target, "target", nd, o, i)
        j.t = <const npy_intp*>_ptr(target)
    else:
        _check_in(p, ft, "target")
        _same3(p, "target", nd, o, n, i)
        j.b = <const char*>_ptr(p)
    if scale is not None:
        _check_in(scale, ft, "scale")
        _red2(scale, "scale", nd, o, i)
        _check_out(dx, ft, "dx")
        _same3(dx, "dx", nd, o, n, i)
        j.d = <const char*>_ptr(scale)
        j.out2 = <char*>_ptr(dx)
    j.a = <const char*>_ptr(x)
    j.out = <char*>_ptr(loss)
    j.outer = o
    j.n = n
    j.inner = i
    j.ignore = ignore
    j.p1 = eps
    return _go(&j, <double>o * n * i * _COST_LOSS[ft] * (1.4 if j.out2 != NULL else 1.0))


def cross_entropy_index(cnp.ndarray x not None, cnp.ndarray target not None, cnp.ndarray loss not None,
                        npy_intp ignore_index, double label_smoothing):
    _loss(x, target, None, None, loss, None, ignore_index, label_smoothing)


def cross_entropy_index_grad(cnp.ndarray x not None, cnp.ndarray target not None,
                             cnp.ndarray scale not None, cnp.ndarray loss not None,
                             cnp.ndarray dx not None, npy_intp ignore_index, double label_smoothing):
    _loss(x, target, None, scale, loss, dx, ignore_index, label_smoothing)


def cross_entropy_prob(cnp.ndarray x not None, cnp.ndarray p not None, cnp.ndarray loss not None,
                       double label_smoothing):
    _loss(x, None, p, None, loss, None, 0, label_smoothing)


def cross_entropy_prob_grad(cnp.ndarray x not None, cnp.ndarray p not None, cnp.ndarray scale not None,
                            cnp.ndarray loss not None, cnp.ndarray dx not None, double label_smoothing):
    _loss(x, None, p, scale, loss, dx, 0, label_smoothing)


_MATH = {"exp": 0, "exp_neg": 1, "expm1_neg": 2, "log": 3, "log1p": 4, "log1p_unit": 5,
         "erfc_pos": 6, "tanh": 7, "sigmoid": 8}


def _math(str name, cnp.ndarray x not None, cnp.ndarray out not None):
    """Apply one of the scalar math helpers of the kernels elementwise, on
    the selected SIMD path (for accuracy tests): exp, exp_neg (x <= 0),
    expm1_neg (x <= 0), log, log1p, log1p_unit (x in [0, 1]), erfc_pos
    (x >= 0), tanh, sigmoid."""
    cdef int which = _MATH[name]
    cdef int ft = _ftype(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _check_in(x, ft, "x")
    _check_out(out, ft, "out")
    _same_size(x, out, "x", "out")
    cdef const void* px = _ptr(x)
    cdef void* po = _ptr(out)
    with nogil:
        if ft == 0:
            T.math_f32(which, <const float*>px, <float*>po, n)
        else:
            T.math_f64(which, <const double*>px, <double*>po, n)


# ===========================================================================
# C-level API for Cython users (declared in _kernels.pxd).  All run on the
# selected SIMD path, on the calling thread, without the GIL.

cdef void softmax_row_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.row1_f32[R_SOFTMAX](x, out, 1, n, 1, 1)

cdef void softmax_row_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.row1_f64[R_SOFTMAX](x, out, 1, n, 1, 1)

cdef void softmax_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f32[R_SOFTMAX](x, out, rows, n, 1, 1)

cdef void softmax_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f64[R_SOFTMAX](x, out, rows, n, 1, 1)

cdef void log_softmax_row_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.row1_f32[R_LOG_SOFTMAX](x, out, 1, n, 1, 1)

cdef void log_softmax_row_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.row1_f64[R_LOG_SOFTMAX](x, out, 1, n, 1, 1)

cdef void log_softmax_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f32[R_LOG_SOFTMAX](x, out, rows, n, 1, 1)

cdef void log_softmax_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f64[R_LOG_SOFTMAX](x, out, rows, n, 1, 1)

cdef float logsumexp_row_f32(const float* x, Py_ssize_t n) noexcept nogil:
    cdef float r
    T.row1_f32[R_LOGSUMEXP](x, &r, 1, n, 1, 1)
    return r

cdef double logsumexp_row_f64(const double* x, Py_ssize_t n) noexcept nogil:
    cdef double r
    T.row1_f64[R_LOGSUMEXP](x, &r, 1, n, 1, 1)
    return r

cdef void logsumexp_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f32[R_LOGSUMEXP](x, out, rows, n, 1, 1)

cdef void logsumexp_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    T.row1_f64[R_LOGSUMEXP](x, out, rows, n, 1, 1)

cdef void softmax_backward_row_f32(const float* grad, const float* y, float* out, Py_ssize_t n) noexcept nogil:
    T.row2_f32[R2_SOFTMAX_BACKWARD](grad, y, out, 1, n, 1, 1)

cdef void softmax_backward_row_f64(const double* grad, const double* y, double* out, Py_ssize_t n) noexcept nogil:
    T.row2_f64[R2_SOFTMAX_BACKWARD](grad, y, out, 1, n, 1, 1)

cdef void log_softmax_backward_row_f32(const float* grad, const float* y, float* out, Py_ssize_t n) noexcept nogil:
    T.row2_f32[R2_LOG_SOFTMAX_BACKWARD](grad, y, out, 1, n, 1, 1)

cdef void log_softmax_backward_row_f64(const double* grad, const double* y, double* out, Py_ssize_t n) noexcept nogil:
    T.row2_f64[R2_LOG_SOFTMAX_BACKWARD](grad, y, out, 1, n, 1, 1)

cdef void sigmoid_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f32[E_SIGMOID](x, out, n, 0.0, 0.0)

cdef void sigmoid_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f64[E_SIGMOID](x, out, n, 0.0, 0.0)

cdef void tanh_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f32[E_TANH](x, out, n, 0.0, 0.0)

cdef void tanh_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f64[E_TANH](x, out, n, 0.0, 0.0)

cdef void gelu_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f32[E_GELU](x, out, n, 0.0, 0.0)

cdef void gelu_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f64[E_GELU](x, out, n, 0.0, 0.0)

cdef void silu_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f32[E_SILU](x, out, n, 0.0, 0.0)

cdef void silu_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    T.ew1_f64[E_SILU](x, out, n, 0.0, 0.0)

cdef void softplus_f32(const float* x, float* out, Py_ssize_t n, double beta, double threshold) noexcept nogil:
    T.ew1_f32[E_SOFTPLUS](x, out, n, beta, threshold)

cdef void softplus_f64(const double* x, double* out, Py_ssize_t n, double beta, double threshold) noexcept nogil:
    T.ew1_f64[E_SOFTPLUS](x, out, n, beta, threshold)
