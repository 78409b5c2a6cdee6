# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""fastact's kernels compiled for x86-64-v3 (see fastact._kernels).

Built with -march=x86-64-v3; imported by fastact._kernels only after it has
checked that the CPU supports that level.  Exports nothing but the table of
kernel pointers, as a capsule.
"""

from cpython.pycapsule cimport PyCapsule_New

include "_kernels_body.pxi"

cdef FaTable _TABLE
_fill_table(&_TABLE, 3)

TABLE = PyCapsule_New(<void*>&_TABLE, b"fastact._kernels.FaTable", NULL)
