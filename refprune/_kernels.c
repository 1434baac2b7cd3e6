/* Compiled kernels of the sparse path, built as the top-level module _refprune_kernels.
 *
 * Three loops over a CSR matrix (int32 indptr and indices; float64 or float32
 * values) and C-contiguous dense operands in feature-major layout (one row per
 * feature, one column per sample):
 *
 *   csr_matmul(indptr, indices, data, B, out, r0, r1)
 *       out[i, n] = sum_{jj in row i} data[jj] * B[indices[jj], n]     rows r0 <= i < r1
 *   csr_matvec(indptr, indices, data, x, out, r0, r1)
 *       out[i]    = sum_{jj in row i} data[jj] * x[indices[jj]]         rows r0 <= i < r1
 *   sampled_product(indptr, indices, A, B, out, r0, r1)
 *       out[jj]   = sum_n A[i, n] * B[indices[jj], n]  for every stored jj of rows r0 <= i < r1
 *
 * Rounding. csr_matmul and csr_matvec add the products of a row in its stored
 * (column) order into an accumulator that starts at 0.0, each product and each
 * sum rounded separately (the build passes -ffp-contract=off, so no fused
 * multiply-add): exactly SciPy's csr_matvec(s), bit for bit, on any instruction
 * set. The vectors below only run several samples n side by side. The sampled
 * product sums n in 4 x LANES interleaved partial sums combined in a fixed
 * tree (see sampled_dot): the same bits on every instruction set, not the bits
 * of a sequential sum.
 *
 * Each call releases the GIL, so Python threads can run disjoint row ranges at once.
 * Arguments are checked for kind, dtype, shape and range, never for index values:
 * the caller (refprune.sparse_kernels) passes matrices it built and checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

typedef double v8d __attribute__((vector_size(64)));
typedef float v16f __attribute__((vector_size(64)));

/* out[i, :] for rows r0..r1: 4 vectors of samples per pass over the row, then 1, then scalars. */
#define DEFINE_MATMUL(NAME, T, V, L)                                                        \
    CLONES static void NAME(Py_ssize_t r0, Py_ssize_t r1, const int32_t *indptr,             \
                            const int32_t *indices, const T *data, const T *B, Py_ssize_t N,  \
                            T *out)                                                           \
    {                                                                                         \
        for (Py_ssize_t i = r0; i < r1; i++) {                                                \
            const int32_t s = indptr[i], e = indptr[i + 1];                                   \
            T *y = out + i * N;                                                               \
            Py_ssize_t n = 0;                                                                 \
            for (; n + 4 * L <= N; n += 4 * L) {                                              \
                V c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, x0, x1, x2, x3;                     \
                for (int32_t jj = s; jj < e; jj++) {                                          \
                    const T a = data[jj];                                                     \
                    const T *x = B + (Py_ssize_t)indices[jj] * N + n;                         \
                    memcpy(&x0, x, sizeof(V));                                                \
                    memcpy(&x1, x + L, sizeof(V));                                            \
                    memcpy(&x2, x + 2 * L, sizeof(V));                                        \
                    memcpy(&x3, x + 3 * L, sizeof(V));                                        \
                    c0 += a * x0;                                                             \
                    c1 += a * x1;                                                             \
                    c2 += a * x2;                                                             \
                    c3 += a * x3;                                                             \
                }                                                                             \
                memcpy(y + n, &c0, sizeof(V));                                                \
                memcpy(y + n + L, &c1, sizeof(V));                                            \
                memcpy(y + n + 2 * L, &c2, sizeof(V));                                        \
                memcpy(y + n + 3 * L, &c3, sizeof(V));                                        \
            }                                                                                 \
            for (; n + L <= N; n += L) {                                                      \
                V c0 = {0}, x0;                                                               \
                for (int32_t jj = s; jj < e; jj++) {                                          \
                    memcpy(&x0, B + (Py_ssize_t)indices[jj] * N + n, sizeof(V));              \
                    c0 += data[jj] * x0;                                                      \
                }                                                                             \
                memcpy(y + n, &c0, sizeof(V));                                                \
            }                                                                                 \
            for (; n < N; n++) {                                                              \
                T c = 0;                                                                      \
                for (int32_t jj = s; jj < e; jj++)                                            \
                    c += data[jj] * B[(Py_ssize_t)indices[jj] * N + n];                       \
                y[n] = c;                                                                     \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_MATMUL(matmul_f64, double, v8d, 8)
DEFINE_MATMUL(matmul_f32, float, v16f, 16)

/* out[i] for rows r0..r1, four rows at a time: four independent sums in flight, each in row order. */
#define DEFINE_MATVEC(NAME, T)                                                              \
    static void NAME(Py_ssize_t r0, Py_ssize_t r1, const int32_t *indptr,                    \
                     const int32_t *indices, const T *data, const T *x, T *out)               \
    {                                                                                         \
        Py_ssize_t i = r0;                                                                    \
        for (; i + 4 <= r1; i += 4) {                                                         \
            const int32_t s0 = indptr[i], s1 = indptr[i + 1], s2 = indptr[i + 2],             \
                          s3 = indptr[i + 3], s4 = indptr[i + 4];                             \
            int32_t m = s1 - s0;                                                              \
            if (s2 - s1 < m) m = s2 - s1;                                                     \
            if (s3 - s2 < m) m = s3 - s2;                                                     \
            if (s4 - s3 < m) m = s4 - s3;                                                     \
            T c0 = 0, c1 = 0, c2 = 0, c3 = 0;                                                 \
            for (int32_t k = 0; k < m; k++) {                                                 \
                c0 += data[s0 + k] * x[indices[s0 + k]];                                      \
                c1 += data[s1 + k] * x[indices[s1 + k]];                                      \
                c2 += data[s2 + k] * x[indices[s2 + k]];                                      \
                c3 += data[s3 + k] * x[indices[s3 + k]];                                      \
            }                                                                                 \
            for (int32_t k = s0 + m; k < s1; k++) c0 += data[k] * x[indices[k]];              \
            for (int32_t k = s1 + m; k < s2; k++) c1 += data[k] * x[indices[k]];              \
            for (int32_t k = s2 + m; k < s3; k++) c2 += data[k] * x[indices[k]];              \
            for (int32_t k = s3 + m; k < s4; k++) c3 += data[k] * x[indices[k]];              \
            out[i] = c0;                                                                      \
            out[i + 1] = c1;                                                                  \
            out[i + 2] = c2;                                                                  \
            out[i + 3] = c3;                                                                  \
        }                                                                                     \
        for (; i < r1; i++) {                                                                 \
            T c = 0;                                                                          \
            for (int32_t k = indptr[i]; k < indptr[i + 1]; k++) c += data[k] * x[indices[k]]; \
            out[i] = c;                                                                       \
        }                                                                                     \
    }

DEFINE_MATVEC(matvec_f64, double)
DEFINE_MATVEC(matvec_f32, float)

/* out[jj] = sum_n a[n] * b[n] with a = A[i], b = B[indices[jj]]: partial sums p_q[l] over
 * n = 4 L k + q L + l (q < 4, l < L), the vectors added ((p0 + p1) + (p2 + p3)), then the lanes
 * in pairs (l, l + w) for w = L/2, L/4, ..., 1; the remainder n >= L floor(N / L) (after the
 * 4 L blocks, whole vectors go to p0) is added last, in order; N < L is a plain sequential
 * sum. The same bits on every instruction set; not the bits of a sequential sum. */
#define DEFINE_SAMPLED(NAME, T, V, L)                                                       \
    CLONES static void NAME(Py_ssize_t r0, Py_ssize_t r1, const int32_t *indptr,             \
                            const int32_t *indices, const T *A, const T *B, Py_ssize_t N,     \
                            T *out)                                                           \
    {                                                                                         \
        for (Py_ssize_t i = r0; i < r1; i++) {                                                \
            const T *a = A + i * N;                                                           \
            for (int32_t jj = indptr[i]; jj < indptr[i + 1]; jj++) {                          \
                const T *b = B + (Py_ssize_t)indices[jj] * N;                                 \
                Py_ssize_t n = 0;                                                             \
                T c = 0;                                                                      \
                if (N >= L) {                                                                 \
                    V p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0}, u, v;                           \
                    for (; n + 4 * L <= N; n += 4 * L) {                                      \
                        memcpy(&u, a + n, sizeof(V));                                         \
                        memcpy(&v, b + n, sizeof(V));                                         \
                        p0 += u * v;                                                          \
                        memcpy(&u, a + n + L, sizeof(V));                                     \
                        memcpy(&v, b + n + L, sizeof(V));                                     \
                        p1 += u * v;                                                          \
                        memcpy(&u, a + n + 2 * L, sizeof(V));                                 \
                        memcpy(&v, b + n + 2 * L, sizeof(V));                                 \
                        p2 += u * v;                                                          \
                        memcpy(&u, a + n + 3 * L, sizeof(V));                                 \
                        memcpy(&v, b + n + 3 * L, sizeof(V));                                 \
                        p3 += u * v;                                                          \
                    }                                                                         \
                    for (; n + L <= N; n += L) {                                              \
                        memcpy(&u, a + n, sizeof(V));                                         \
                        memcpy(&v, b + n, sizeof(V));                                         \
                        p0 += u * v;                                                          \
                    }                                                                         \
                    p0 = (p0 + p1) + (p2 + p3);                                               \
                    T lanes[L];                                                               \
                    memcpy(lanes, &p0, sizeof(V));                                            \
                    for (int w = L / 2; w >= 1; w /= 2)                                       \
                        for (int l = 0; l < w; l++) lanes[l] += lanes[l + w];                 \
                    c = lanes[0];                                                             \
                }                                                                             \
                for (; n < N; n++) c += a[n] * b[n];                                          \
                out[jj] = c;                                                                  \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_SAMPLED(sampled_f64, double, v8d, 8)
DEFINE_SAMPLED(sampled_f32, float, v16f, 16)

/* ------------------------------------------------------------------ argument handling */

typedef struct {
    Py_buffer indptr, indices, a, b, out;
    int n_held;
} Buffers;

static void release(Buffers *bufs)
{
    Py_buffer *all[5] = {&bufs->indptr, &bufs->indices, &bufs->a, &bufs->b, &bufs->out};
    for (int k = 0; k < bufs->n_held; k++) PyBuffer_Release(all[k]);
}

static int get(PyObject *obj, Py_buffer *view, int writable, const char *name, Buffers *bufs)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", name,
                     writable ? " writable" : "");
        return -1;
    }
    bufs->n_held++;
    return 0;
}

/* 'i' int32, 'd' float64, 'f' float32 (native byte order only) */
static char kind(Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    if (f[0] == '=' || f[0] == '@') f++;
    if ((f[0] == 'i' || f[0] == 'l') && v->itemsize == 4) return 'i';
    if (f[0] == 'd' && v->itemsize == 8) return 'd';
    if (f[0] == 'f' && v->itemsize == 4) return 'f';
    return '?';
}

/* Parse (indptr, indices, a, b, out, r0, r1), check everything but index values; 0 on success. */
static int parse(PyObject *args, Buffers *bufs, Py_ssize_t *r0, Py_ssize_t *r1, char *dtype,
                 const char *which)
{
    PyObject *o[5];
    memset(bufs, 0, sizeof(*bufs));
    if (!PyArg_ParseTuple(args, "OOOOOnn", &o[0], &o[1], &o[2], &o[3], &o[4], r0, r1)) return -1;
    if (get(o[0], &bufs->indptr, 0, "indptr", bufs) || get(o[1], &bufs->indices, 0, "indices", bufs)
        || get(o[2], &bufs->a, 0, which[0] == 's' ? "A" : "data", bufs)
        || get(o[3], &bufs->b, 0, "B", bufs) || get(o[4], &bufs->out, 1, "out", bufs))
        return -1;
    if (kind(&bufs->indptr) != 'i' || kind(&bufs->indices) != 'i') {
        PyErr_SetString(PyExc_TypeError, "indptr and indices must be int32 arrays");
        return -1;
    }
    *dtype = kind(&bufs->a);
    if ((*dtype != 'd' && *dtype != 'f') || kind(&bufs->b) != *dtype || kind(&bufs->out) != *dtype) {
        PyErr_SetString(PyExc_TypeError, "the value arrays must all be float64 or all float32");
        return -1;
    }
    Py_ssize_t n_rows = bufs->indptr.len / 4 - 1;
    if (*r0 < 0 || *r1 < *r0 || *r1 > n_rows) {
        PyErr_Format(PyExc_ValueError, "rows [%zd, %zd) must lie in [0, %zd]", *r0, *r1, n_rows);
        return -1;
    }
    return 0;
}

static PyObject *py_csr_matmul(PyObject *self, PyObject *args)
{
    Buffers bufs;
    Py_ssize_t r0, r1;
    char dtype;
    if (parse(args, &bufs, &r0, &r1, &dtype, "matmul")) goto fail;
    Py_ssize_t n_rows = bufs.indptr.len / 4 - 1, isz = bufs.a.itemsize;
    Py_ssize_t N = bufs.b.ndim == 2 ? bufs.b.shape[1] : 1;
    if (bufs.out.len != n_rows * N * isz || bufs.a.len != bufs.indices.len / 4 * isz
        || (bufs.out.ndim == 2 && bufs.out.shape[1] != N)) {
        PyErr_SetString(PyExc_ValueError, "out must have shape (rows, N) and data one value per index");
        goto fail;
    }
    const int32_t *ip = bufs.indptr.buf, *ix = bufs.indices.buf;
    Py_BEGIN_ALLOW_THREADS
    if (N == 1) {
        if (dtype == 'd') matvec_f64(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, bufs.out.buf);
        else matvec_f32(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, bufs.out.buf);
    } else {
        if (dtype == 'd') matmul_f64(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, N, bufs.out.buf);
        else matmul_f32(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, N, bufs.out.buf);
    }
    Py_END_ALLOW_THREADS
    release(&bufs);
    Py_RETURN_NONE;
fail:
    release(&bufs);
    return NULL;
}

static PyObject *py_sampled_product(PyObject *self, PyObject *args)
{
    Buffers bufs;
    Py_ssize_t r0, r1;
    char dtype;
    if (parse(args, &bufs, &r0, &r1, &dtype, "sampled")) goto fail;
    Py_ssize_t n_rows = bufs.indptr.len / 4 - 1, isz = bufs.a.itemsize;
    Py_ssize_t N = bufs.a.ndim == 2 ? bufs.a.shape[1] : 1;
    if (bufs.a.len != n_rows * N * isz || bufs.b.ndim != bufs.a.ndim
        || (bufs.b.ndim == 2 && bufs.b.shape[1] != N) || bufs.out.len != bufs.indices.len / 4 * isz) {
        PyErr_SetString(PyExc_ValueError,
                        "A must have shape (rows, N), B shape (cols, N), out one value per index");
        goto fail;
    }
    const int32_t *ip = bufs.indptr.buf, *ix = bufs.indices.buf;
    Py_BEGIN_ALLOW_THREADS
    if (dtype == 'd') sampled_f64(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, N, bufs.out.buf);
    else sampled_f32(r0, r1, ip, ix, bufs.a.buf, bufs.b.buf, N, bufs.out.buf);
    Py_END_ALLOW_THREADS
    release(&bufs);
    Py_RETURN_NONE;
fail:
    release(&bufs);
    return NULL;
}

static PyMethodDef methods[] = {
    {"csr_matmul", py_csr_matmul, METH_VARARGS,
     "csr_matmul(indptr, indices, data, B, out, r0, r1): out[i] = sum_jj data[jj] B[indices[jj]], "
     "rows r0 <= i < r1, row order, no fused multiply-add (SciPy's bits)."},
    {"sampled_product", py_sampled_product, METH_VARARGS,
     "sampled_product(indptr, indices, A, B, out, r0, r1): out[jj] = A[i] . B[indices[jj]] for the "
     "stored jj of rows r0 <= i < r1."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_refprune_kernels",
                                    "Compiled CSR kernels of refprune's sparse path.", -1, methods};

PyMODINIT_FUNC PyInit__refprune_kernels(void) { return PyModule_Create(&module); }
