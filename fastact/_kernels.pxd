# Cython declarations of fastact's compiled row kernels, for other Cython
# code:
#
#     from fastact._kernels cimport softmax_row_f32
#
#     cdef float[::1] x = ..., y = ...
#     with nogil:
#         softmax_row_f32(&x[0], &y[0], x.shape[0])
#
# All of them run without the GIL, on the SIMD path fastact selected at
# import (see fastact._kernels.simd_path()), on the calling thread, and
# follow fastact's semantics (NaN/inf rows, log1p-accurate log-sum-exp,
# sums accumulated in double).  `out` may be the input itself.  Rows are
# contiguous; the *_rows_* forms take `rows` consecutive rows of length n
# (rows of up to 32 elements are computed several rows per SIMD
# instruction).  Importing the module that cimports these imports
# fastact._kernels at run time.

cdef void softmax_row_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void softmax_row_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void softmax_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
cdef void softmax_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil

cdef void log_softmax_row_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void log_softmax_row_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void log_softmax_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
cdef void log_softmax_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil

# log(sum(exp(x))) of one row (-inf for n == 0), or of each of `rows` rows
cdef float logsumexp_row_f32(const float* x, Py_ssize_t n) noexcept nogil
cdef double logsumexp_row_f64(const double* x, Py_ssize_t n) noexcept nogil
cdef void logsumexp_rows_f32(const float* x, float* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
cdef void logsumexp_rows_f64(const double* x, double* out, Py_ssize_t rows, Py_ssize_t n) noexcept nogil

# vector-Jacobian products: y * (grad - sum(grad * y)) and grad - exp(y) * sum(grad)
cdef void softmax_backward_row_f32(const float* grad, const float* y, float* out, Py_ssize_t n) noexcept nogil
cdef void softmax_backward_row_f64(const double* grad, const double* y, double* out, Py_ssize_t n) noexcept nogil
cdef void log_softmax_backward_row_f32(const float* grad, const float* y, float* out, Py_ssize_t n) noexcept nogil
cdef void log_softmax_backward_row_f64(const double* grad, const double* y, double* out, Py_ssize_t n) noexcept nogil

# elementwise activations over n contiguous values
cdef void sigmoid_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void sigmoid_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void tanh_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void tanh_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void gelu_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void gelu_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void silu_f32(const float* x, float* out, Py_ssize_t n) noexcept nogil
cdef void silu_f64(const double* x, double* out, Py_ssize_t n) noexcept nogil
cdef void softplus_f32(const float* x, float* out, Py_ssize_t n, double beta, double threshold) noexcept nogil
cdef void softplus_f64(const double* x, double* out, Py_ssize_t n, double beta, double threshold) noexcept nogil
