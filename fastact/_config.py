"""Backend selection and thread count: the process-wide state of fastact.

Backends are imported lazily, on first use, so that ``import fastact`` never
imports Numba nor compiles anything.  A backend is usable when its module
imports and provides every kernel of the registry; otherwise the reason is
kept and reported by :func:`fastact.backends` callers through
:func:`backend_status` and by the error of :func:`set_backend`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import types

from . import _registry

__all__ = [
    "backends",
    "backend_status",
    "get_backend",
    "set_backend",
    "use_backend",
    "get_num_threads",
    "set_num_threads",
]

#: every backend fastact knows, fastest first
ORDER = ("cython", "numba", "numpy")
_MODULES = {
    "cython": "fastact._backends.cython_ext",
    "numba": "fastact._backends.numba_jit",
    "numpy": "fastact._backends.numpy_ref",
}

_lock = threading.RLock()
_tables: dict = {}  # name -> SimpleNamespace of kernels
_missing: dict = {}  # name -> reason it is not usable


def _load(name: str):
    """Import a backend once; return its kernel table or None."""
    if name in _tables:
        return _tables[name]
    if name in _missing:
        return None
    with _lock:
        if name in _tables or name in _missing:
            return _tables.get(name)
        try:
            mod = importlib.import_module(_MODULES[name])
        except Exception as exc:  # ImportError, or a broken install
            _missing[name] = _reason(exc)
            return None
        absent = [k for k in _registry.KERNELS if not callable(getattr(mod, k, None))]
        if absent:
            _missing[name] = "backend module lacks kernels: " + ", ".join(absent)
            return None
        table = types.SimpleNamespace(NAME=name, module=mod)
        for k in _registry.KERNELS:
            setattr(table, k, getattr(mod, k))
        hook = getattr(mod, "set_num_threads", None)
        if hook is not None:
            hook(_threads[0])
        _tables[name] = table
        return table


def _reason(exc: BaseException) -> str:
    msg = getattr(exc, "fastact_reason", None) or f"{type(exc).__name__}: {exc}"
    return msg


def backends() -> tuple:
    """The backends usable in this process, fastest first.

    Returns
    -------
    tuple of str
        A sub-sequence of ``("cython", "numba", "numpy")``.  ``"numpy"``, the
        reference backend, is always present.  Why a backend is absent is
        told by :func:`fastact.backend_status` and by the error that
        :func:`fastact.set_backend` raises for it.

    Examples
    --------
    >>> import fastact
    >>> "numpy" in fastact.backends()
    True
    """
    return tuple(b for b in ORDER if _load(b) is not None)


def backend_status() -> dict:
    """Map every known backend to ``None`` (usable) or why it is missing.

    Examples
    --------
    >>> import fastact
    >>> fastact.backend_status()["numpy"] is None
    True
    """
    return {b: (None if _load(b) is not None else _missing[b]) for b in ORDER}


def _check(name) -> str:
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; fastact backends are {ORDER}")
    if _load(name) is None:
        raise ValueError(f"backend {name!r} is not available: {_missing[name]}")
    return name


# The process-wide default (set_backend / FASTACT_BACKEND), and a per-thread,
# per-context override for use_backend so that a `with` block in one thread
# does not switch the backend under another thread.
_default: list = [None]
_override: contextvars.ContextVar = contextvars.ContextVar("fastact_backend", default=None)


def _default_name() -> str:
    if _default[0] is None:
        with _lock:
            env = os.environ.get("FASTACT_BACKEND", "").strip().lower()
            if env:
                _default[0] = _check(env)
            else:
                _default[0] = backends()[0]
    return _default[0]


def current():
    """The kernel table of the backend in effect for this call."""
    name = _override.get() or _default[0] or _default_name()
    return _tables[name]


def get_backend() -> str:
    """Name of the backend the kernels run on in the current context.

    The default is the fastest usable backend, or the one named by the
    ``FASTACT_BACKEND`` environment variable.

    Examples
    --------
    >>> import fastact
    >>> fastact.get_backend() in fastact.backends()
    True
    """
    return _override.get() or _default_name()


def set_backend(name: str) -> None:
    """Make ``name`` the backend for the whole process.

    Raises
    ------
    ValueError
        If ``name`` is not a fastact backend, or is not usable here (the
        message says why).

    Examples
    --------
    >>> import fastact
    >>> previous = fastact.get_backend()
    >>> fastact.set_backend("numpy")
    >>> fastact.get_backend()
    'numpy'
    >>> fastact.set_backend(previous)
    """
    _default[0] = _check(name)


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run the kernels on ``name`` inside the block.

    The switch is local to the current thread (and asyncio context); other
    threads keep their backend.

    Examples
    --------
    >>> import fastact
    >>> with fastact.use_backend("numpy"):
    ...     fastact.sigmoid([0.0]).tolist()
    [0.5]
    """
    token = _override.set(_check(name))
    try:
        yield name
    finally:
        _override.reset(token)


# ---------------------------------------------------------------------------
# threads


def _initial_threads() -> int:
    env = os.environ.get("FASTACT_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_threads: list = [_initial_threads()]


def get_num_threads() -> int:
    """The largest number of threads a kernel may use.

    Defaults to ``FASTACT_NUM_THREADS`` if set, else the number of CPUs this
    process may run on.  Kernels use fewer threads (one) when the array is too
    small to gain from more.

    Examples
    --------
    >>> import fastact
    >>> fastact.get_num_threads() >= 1
    True
    """
    return _threads[0]


def set_num_threads(n: int) -> None:
    """Set the largest number of threads a kernel may use (``n >= 1``).

    Examples
    --------
    >>> import fastact
    >>> n = fastact.get_num_threads()
    >>> fastact.set_num_threads(1)
    >>> fastact.get_num_threads()
    1
    >>> fastact.set_num_threads(n)
    """
    if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
        raise TypeError(f"number of threads must be an integer, got {n!r}")
    n = int(n.__index__())
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _threads[0] = n
    _notify_backends(n)


def _notify_backends(n):
    for table in list(_tables.values()):
        hook = getattr(table.module, "set_num_threads", None)
        if hook is not None:
            hook(n)


def _after_fork_in_child():
    # A fork()ed child of a process that already ran an OpenMP (or other
    # thread-pool) region hangs at its first parallel region: the pool's
    # threads were not copied.  Children therefore run single-threaded; call
    # set_num_threads() in the child to opt back in (safe with the "spawn"
    # and "forkserver" start methods, which start a fresh interpreter).
    _threads[0] = 1
    _notify_backends(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
