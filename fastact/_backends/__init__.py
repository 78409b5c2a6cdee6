"""Backend modules: each provides every kernel of ``fastact._registry`` under
the same name.  ``numpy_ref`` is the reference; ``numba_jit`` and
``cython_ext`` are the compiled ones, imported lazily by ``fastact._config``."""
