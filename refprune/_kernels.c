/* Compiled kernels of the sparse path, built as the top-level module _refprune_kernels.
 *
 * Three loops over a CSR matrix (int32 indptr and indices; float64 or float32
 * values) and C-contiguous dense operands in feature-major layout (one row per
 * feature, one column per sample):
 *
 *   csr_matmul(indptr, indices, data, B, out[, cuts, threads])
 *       out[i, n] = sum_{jj in row i} data[jj] * B[indices[jj], n]   (B of shape (in, N), N > 1)
 *       out[i]    = sum_{jj in row i} data[jj] * x[indices[jj]]      (x of shape (in,): the matvec)
 *   sampled_product(indptr, indices, A, B, out[, cuts, threads])
 *       out[jj]   = sum_n A[i, n] * B[indices[jj], n]  for every stored jj of row i
 *
 * for the rows of the blocks cuts[b] <= i < cuts[b + 1] (every row without cuts), the blocks
 * shared by the calling thread and threads - 1 worker threads (parallel_for, below), and
 *
 *   transpose(src, dst[, threads])
 *       dst[j, i] = src[i, j]   (2-D, rows contiguous, any row strides: moves a batch into and
 *                                out of feature-major layout)
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
 * Each call releases the GIL. Arguments are checked for kind, dtype, shape and range, never for index values:
 * the caller (refprune.sparse_kernels) passes matrices it built and checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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

/* dst[j, i] = src[i, j] for src rows r0 <= i < r1 (all w columns); row strides ss and ds in
 * elements. Tiles of B x B (one 64-byte line of B float64 or 64 bytes of B float32 per tile row)
 * are read along src rows and written along dst rows, so both sides move whole cache lines. */
#define DEFINE_TRANSPOSE(NAME, T, B)                                                        \
    CLONES static void NAME(const T *src, Py_ssize_t ss, T *dst, Py_ssize_t ds, Py_ssize_t w, \
                            Py_ssize_t r0, Py_ssize_t r1)                                     \
    {                                                                                         \
        for (Py_ssize_t i0 = r0; i0 < r1; i0 += B) {                                          \
            const Py_ssize_t i1 = i0 + B < r1 ? i0 + B : r1;                                  \
            for (Py_ssize_t j0 = 0; j0 < w; j0 += B) {                                        \
                const Py_ssize_t j1 = j0 + B < w ? j0 + B : w;                                \
                if (i1 - i0 == B && j1 - j0 == B) {                                           \
                    for (Py_ssize_t j = j0; j < j1; j++) {                                    \
                        T *d = dst + j * ds + i0;                                             \
                        const T *c = src + i0 * ss + j;                                       \
                        for (int a = 0; a < B; a++) d[a] = c[a * ss];                         \
                    }                                                                         \
                } else {                                                                      \
                    for (Py_ssize_t j = j0; j < j1; j++)                                      \
                        for (Py_ssize_t i = i0; i < i1; i++) dst[j * ds + i] = src[i * ss + j]; \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_TRANSPOSE(transpose_f64, double, 8)
DEFINE_TRANSPOSE(transpose_f32, float, 16)

/* ------------------------------------------------------------------ worker threads
 *
 * parallel_for(fn, args, cuts, n_blocks, threads) runs fn(args, cuts[b], cuts[b + 1]) for every
 * block b, on the calling thread and up to threads - 1 worker threads. Each participant claims
 * the next unclaimed block (one atomic compare-and-swap on a word holding the job's generation
 * and the next block), so a worker that starts late simply takes fewer blocks. Blocks write
 * disjoint outputs and each output is computed by one participant alone, so the result does
 * not depend on who ran what. After a job a worker spins for SPIN_NS (a forward pass calls the
 * next layer within microseconds), then sleeps on a condition variable; waking a sleeping
 * thread costs tens of microseconds on a virtual machine, a spinning one well under one.
 * One job at a time: a second caller (another Python thread) meanwhile runs its blocks alone.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 15
#define SPIN_NS 100000

typedef void (*block_fn)(const void *args, Py_ssize_t r0, Py_ssize_t r1);

static struct {
    pthread_mutex_t job_lock;   /* held by the caller for a whole job */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    int n_workers, sleeping;    /* sleeping: under sleep_lock */
    int helpers;                /* workers 0 .. helpers-1 take part in the current job */
    _Atomic uint64_t seq;       /* generation of the latest job */
    _Atomic uint64_t claim;     /* (generation << 32) | next unclaimed block */
    _Atomic int64_t done;       /* blocks finished in the current job */
    block_fn fn;
    const void *args;
    const int64_t *cuts;
    int64_t n_blocks;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void run_blocks(uint64_t gen)
{
    const uint64_t tag = (gen & 0xffffffffu) << 32;
    for (;;) {
        uint64_t c = atomic_load(&pool.claim);
        if ((c & ~(uint64_t)0xffffffffu) != tag || (int64_t)(c & 0xffffffffu) >= pool.n_blocks) return;
        if (!atomic_compare_exchange_weak(&pool.claim, &c, c + 1)) continue;
        /* claimed: the job cannot finish before this block, so its fields stay valid */
        const int64_t b = (int64_t)(c & 0xffffffffu);
        pool.fn(pool.args, (Py_ssize_t)pool.cuts[b], (Py_ssize_t)pool.cuts[b + 1]);
        atomic_fetch_add(&pool.done, 1);
    }
}

static int64_t elapsed_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 + (t.tv_nsec - t0->tv_nsec);
}

static uint64_t wait_for_job(uint64_t seen)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1;; i++) {
        uint64_t s = atomic_load(&pool.seq);
        if (s != seen) return s;
        CPU_RELAX();
        if ((i & 255) == 0 && elapsed_ns(&t0) > SPIN_NS) break;
    }
    uint64_t s;
    pthread_mutex_lock(&pool.sleep_lock);
    pool.sleeping++;
    while ((s = atomic_load(&pool.seq)) == seen) pthread_cond_wait(&pool.wake, &pool.sleep_lock);
    pool.sleeping--;
    pthread_mutex_unlock(&pool.sleep_lock);
    return s;
}

static void *worker(void *arg)
{
    const int index = (int)(intptr_t)arg;
    uint64_t seen = atomic_load(&pool.seq);
    for (;;) {
        seen = wait_for_job(seen);
        if (index < pool.helpers) run_blocks(seen);
    }
    return NULL;
}

static void start_workers(int n)   /* under job_lock */
{
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    while (pool.n_workers < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, (void *)(intptr_t)pool.n_workers);
        pthread_attr_destroy(&attr);
        if (failed) return;   /* fewer helpers; the caller still runs every block */
        pool.n_workers++;
    }
}

static void after_fork_in_child(void)   /* the child has none of the parent's threads */
{
    pthread_mutex_init(&pool.job_lock, NULL);
    pthread_mutex_init(&pool.sleep_lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.n_workers = pool.sleeping = pool.helpers = 0;
}

static void parallel_for(block_fn fn, const void *args, const int64_t *cuts, int64_t n_blocks,
                         int threads)
{
    if (threads <= 1 || n_blocks <= 1 || pthread_mutex_trylock(&pool.job_lock) != 0) {
        for (int64_t b = 0; b < n_blocks; b++) fn(args, (Py_ssize_t)cuts[b], (Py_ssize_t)cuts[b + 1]);
        return;
    }
    start_workers(threads - 1);
    pool.helpers = threads - 1;
    pool.fn = fn;
    pool.args = args;
    pool.cuts = cuts;
    pool.n_blocks = n_blocks;
    atomic_store(&pool.done, 0);
    const uint64_t gen = atomic_load(&pool.seq) + 1;
    atomic_store(&pool.claim, (gen & 0xffffffffu) << 32);
    atomic_store(&pool.seq, gen);   /* publish the job */
    pthread_mutex_lock(&pool.sleep_lock);
    if (pool.sleeping) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.sleep_lock);
    run_blocks(gen);
    for (unsigned i = 1; atomic_load(&pool.done) < n_blocks; i++) {   /* a helper is finishing a block */
        CPU_RELAX();
        if ((i & 1023) == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.job_lock);
}

typedef struct {
    const int32_t *indptr, *indices;
    const void *a, *b;
    void *out;
    Py_ssize_t N;
    char dtype;
} Product;

static void matmul_block(const void *p, Py_ssize_t r0, Py_ssize_t r1)
{
    const Product *q = p;
    if (q->N == 1) {
        if (q->dtype == 'd') matvec_f64(r0, r1, q->indptr, q->indices, q->a, q->b, q->out);
        else matvec_f32(r0, r1, q->indptr, q->indices, q->a, q->b, q->out);
    } else {
        if (q->dtype == 'd') matmul_f64(r0, r1, q->indptr, q->indices, q->a, q->b, q->N, q->out);
        else matmul_f32(r0, r1, q->indptr, q->indices, q->a, q->b, q->N, q->out);
    }
}

static void sampled_block(const void *p, Py_ssize_t r0, Py_ssize_t r1)
{
    const Product *q = p;
    if (q->dtype == 'd') sampled_f64(r0, r1, q->indptr, q->indices, q->a, q->b, q->N, q->out);
    else sampled_f32(r0, r1, q->indptr, q->indices, q->a, q->b, q->N, q->out);
}

/* ------------------------------------------------------------------ argument handling */

typedef struct {
    Py_buffer indptr, indices, a, b, out, cuts;
    int n_held;
} Buffers;

static void release(Buffers *bufs)
{
    Py_buffer *all[6] = {&bufs->indptr, &bufs->indices, &bufs->a, &bufs->b, &bufs->out, &bufs->cuts};
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

/* 'i' int32, 'q' int64, 'd' float64, 'f' float32 (native byte order only) */
static char kind(Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    if (f[0] == '=' || f[0] == '@') f++;
    if ((f[0] == 'i' || f[0] == 'l') && v->itemsize == 4) return 'i';
    if ((f[0] == 'q' || f[0] == 'l') && v->itemsize == 8) return 'q';
    if (f[0] == 'd' && v->itemsize == 8) return 'd';
    if (f[0] == 'f' && v->itemsize == 4) return 'f';
    return '?';
}

/* Parse (indptr, indices, a, b, out[, cuts[, threads]]) and check everything but index values.
 * Without cuts the job is all rows as one block. 0 on success. */
static int parse(PyObject *args, Buffers *bufs, Product *q, int64_t *whole, const int64_t **cuts,
                 int64_t *n_blocks, int *threads, const char *a_name)
{
    PyObject *o[5], *cuts_obj = Py_None;
    memset(bufs, 0, sizeof(*bufs));
    *threads = 1;
    if (!PyArg_ParseTuple(args, "OOOOO|Oi", &o[0], &o[1], &o[2], &o[3], &o[4], &cuts_obj, threads))
        return -1;
    if (get(o[0], &bufs->indptr, 0, "indptr", bufs) || get(o[1], &bufs->indices, 0, "indices", bufs)
        || get(o[2], &bufs->a, 0, a_name, bufs) || get(o[3], &bufs->b, 0, "B", bufs)
        || get(o[4], &bufs->out, 1, "out", bufs))
        return -1;
    if (kind(&bufs->indptr) != 'i' || kind(&bufs->indices) != 'i') {
        PyErr_SetString(PyExc_TypeError, "indptr and indices must be int32 arrays");
        return -1;
    }
    q->dtype = kind(&bufs->a);
    if ((q->dtype != 'd' && q->dtype != 'f') || kind(&bufs->b) != q->dtype || kind(&bufs->out) != q->dtype) {
        PyErr_SetString(PyExc_TypeError, "the value arrays must all be float64 or all float32");
        return -1;
    }
    if (*threads < 1) {
        PyErr_SetString(PyExc_ValueError, "threads must be >= 1");
        return -1;
    }
    const int64_t n_rows = bufs->indptr.len / 4 - 1;
    if (cuts_obj == Py_None) {
        whole[0] = 0;
        whole[1] = n_rows;
        *cuts = whole;
        *n_blocks = 1;
    } else {
        if (get(cuts_obj, &bufs->cuts, 0, "cuts", bufs)) return -1;
        if (kind(&bufs->cuts) != 'q' || bufs->cuts.len < 16) {
            PyErr_SetString(PyExc_TypeError, "cuts must be an int64 array of at least two row indices");
            return -1;
        }
        *cuts = bufs->cuts.buf;
        *n_blocks = bufs->cuts.len / 8 - 1;
        for (int64_t b = 0; b <= *n_blocks; b++)
            if ((*cuts)[b] < 0 || (*cuts)[b] > n_rows || (b > 0 && (*cuts)[b] < (*cuts)[b - 1])) {
                PyErr_Format(PyExc_ValueError, "cuts must be ascending rows in [0, %lld]", (long long)n_rows);
                return -1;
            }
    }
    q->indptr = bufs->indptr.buf;
    q->indices = bufs->indices.buf;
    q->a = bufs->a.buf;
    q->b = bufs->b.buf;
    q->out = bufs->out.buf;
    return 0;
}

/* The shape checks of each product: set q->N, or set an error and return -1. */
static int matmul_shapes(const Buffers *bufs, Product *q)
{
    Py_ssize_t n_rows = bufs->indptr.len / 4 - 1, isz = bufs->a.itemsize;
    q->N = bufs->b.ndim == 2 ? bufs->b.shape[1] : 1;
    if (bufs->out.len != n_rows * q->N * isz || bufs->a.len != bufs->indices.len / 4 * isz
        || (bufs->out.ndim == 2 && bufs->out.shape[1] != q->N)) {
        PyErr_SetString(PyExc_ValueError, "out must have shape (rows, N) and data one value per index");
        return -1;
    }
    return 0;
}

static int sampled_shapes(const Buffers *bufs, Product *q)
{
    Py_ssize_t n_rows = bufs->indptr.len / 4 - 1, isz = bufs->a.itemsize;
    q->N = bufs->a.ndim == 2 ? bufs->a.shape[1] : 1;
    if (bufs->a.len != n_rows * q->N * isz || bufs->b.ndim != bufs->a.ndim
        || (bufs->b.ndim == 2 && bufs->b.shape[1] != q->N) || bufs->out.len != bufs->indices.len / 4 * isz) {
        PyErr_SetString(PyExc_ValueError,
                        "A must have shape (rows, N), B shape (cols, N), out one value per index");
        return -1;
    }
    return 0;
}

/* Parse, check, then run the blocks of one product with the GIL released. */
static PyObject *run_product(PyObject *args, const char *a_name, int (*shapes)(const Buffers *, Product *),
                             block_fn fn)
{
    Buffers bufs;
    Product q;
    int64_t whole[2], n_blocks;
    const int64_t *cuts;
    int threads;
    if (parse(args, &bufs, &q, whole, &cuts, &n_blocks, &threads, a_name) || shapes(&bufs, &q)) {
        release(&bufs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    parallel_for(fn, &q, cuts, n_blocks, threads);
    Py_END_ALLOW_THREADS
    release(&bufs);
    Py_RETURN_NONE;
}

static PyObject *py_csr_matmul(PyObject *self, PyObject *args)
{
    return run_product(args, "data", matmul_shapes, matmul_block);
}

static PyObject *py_sampled_product(PyObject *self, PyObject *args)
{
    return run_product(args, "A", sampled_shapes, sampled_block);
}

typedef struct {
    const void *src;
    void *dst;
    Py_ssize_t ss, ds, w;
    char dtype;
} Transpose;

static void transpose_block(const void *p, Py_ssize_t r0, Py_ssize_t r1)
{
    const Transpose *t = p;
    if (t->dtype == 'd') transpose_f64(t->src, t->ss, t->dst, t->ds, t->w, r0, r1);
    else transpose_f32(t->src, t->ss, t->dst, t->ds, t->w, r0, r1);
}

/* 2-D buffer with unit stride along its rows (any row stride); 0 on success */
static int get_rows(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a%s array", name, writable ? " writable" : "");
        return -1;
    }
    if (view->ndim != 2 || view->strides[1] != view->itemsize || view->strides[0] % view->itemsize
        || view->strides[0] < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D with contiguous rows", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_transpose(PyObject *self, PyObject *args)
{
    PyObject *src_obj, *dst_obj;
    int threads = 1;
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "OO|i", &src_obj, &dst_obj, &threads)) return NULL;
    if (get_rows(src_obj, &src, 0, "src")) return NULL;
    if (get_rows(dst_obj, &dst, 1, "dst")) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Transpose t = {src.buf, dst.buf, src.strides[0] / src.itemsize, dst.strides[0] / dst.itemsize,
                   src.shape[1], kind(&src)};
    const Py_ssize_t n = src.shape[0];
    PyObject *result = NULL;
    if ((t.dtype != 'd' && t.dtype != 'f') || kind(&dst) != t.dtype) {
        PyErr_SetString(PyExc_TypeError, "src and dst must both be float64 or both float32");
    } else if (dst.shape[0] != src.shape[1] || dst.shape[1] != n) {
        PyErr_SetString(PyExc_ValueError, "dst must have the shape of src transposed");
    } else if (threads < 1) {
        PyErr_SetString(PyExc_ValueError, "threads must be >= 1");
    } else {
        /* blocks of whole tiles of src rows, about two per thread and at least 64 rows each */
        int64_t cuts[2 * MAX_WORKERS + 3], n_blocks = 2 * (int64_t)threads;
        if (n_blocks > 2 * MAX_WORKERS + 2) n_blocks = 2 * MAX_WORKERS + 2;
        if (n_blocks > n / 64) n_blocks = n / 64 > 0 ? n / 64 : 1;
        for (int64_t b = 0; b <= n_blocks; b++) cuts[b] = (n * b / n_blocks + 15) / 16 * 16;
        cuts[0] = 0;
        cuts[n_blocks] = n;
        Py_BEGIN_ALLOW_THREADS
        parallel_for(transpose_block, &t, cuts, n_blocks, threads);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"csr_matmul", py_csr_matmul, METH_VARARGS,
     "csr_matmul(indptr, indices, data, B, out, cuts=None, threads=1): out[i] = sum_jj data[jj] "
     "B[indices[jj]] for the rows of the blocks cuts[b] <= i < cuts[b+1] (all rows without cuts), "
     "on up to `threads` threads; row order, no fused multiply-add (SciPy's bits)."},
    {"transpose", py_transpose, METH_VARARGS,
     "transpose(src, dst, threads=1): dst[j, i] = src[i, j] for 2-D arrays with contiguous rows, "
     "in tiles, on up to `threads` threads."},
    {"sampled_product", py_sampled_product, METH_VARARGS,
     "sampled_product(indptr, indices, A, B, out, cuts=None, threads=1): out[jj] = A[i] . "
     "B[indices[jj]] for the stored jj of the rows of the blocks, on up to `threads` threads."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_refprune_kernels",
                                    "Compiled CSR kernels of refprune's sparse path.", -1, methods};

PyMODINIT_FUNC PyInit__refprune_kernels(void)
{
    static int registered = 0;
    if (!registered && pthread_atfork(NULL, NULL, after_fork_in_child) == 0) registered = 1;
    return PyModule_Create(&module);
}
