/*
 * optlab._kernels: the two products of a linear classifier's training step, for AVX-512.
 *
 *     scores(out, X, W)                 out (n, C) = X (n, D) @ W (D, C)
 *     add_weight_grad(grad_t, dS, X)    grad_t (C, D) += dS (n, C).T @ X (n, D)
 *
 * With C (classes) far smaller than D (features) OpenBLAS's GEMM spends most of its time on
 * packing and on tiles that C cannot fill: measured at the CIFAR-10 shape it reaches about a
 * quarter of one core's peak. The gradient kernel keeps a (2 x LANES) x C tile of grad_t in
 * registers over a tile of rows, each row loaded once per tile and each score gradient
 * broadcast once per row. The scores kernel keeps a tile of W in L1 and 2 x C partial sums of
 * a pair of rows in registers, and prefetches the next chunk of rows (see DEFINE_SCORES).
 *
 * Each output element is summed in a fixed order (gradient: rows in order; scores: features
 * by lane, then the lanes), so the result depends on the inputs only, never on threads; a
 * row's scores do not depend on the rows computed with it, so rows may be shared out. The
 * kernels need AVX-512F at run time (`avx512` tells); the module builds with
 * any x86-64 GCC or Clang (the target attribute), and optlab uses numpy without it
 * (optlab/kernels.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdlib.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define OPTLAB_AVX512 1
#include <immintrin.h>
#else
#define OPTLAB_AVX512 0
#endif

#if OPTLAB_AVX512

/* classes per register tile (2 x MAXJ accumulators) and rows per tile (kept in L2) */
#define MAXJ 12
#define ROW_TILE 32
#define TARGET __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline, target("avx512f")))

/* grad_t[0:J, :] (row stride D) += dscores[:, 0:J].T @ X, J known at compile time */
#define DEFINE_CHUNK(NAME, T, VEC, LANES, MASK, LOADU, MASKZ_LOADU, STOREU, MASK_STOREU, SET1, \
                     FMADD)                                                                  \
    INLINE void NAME(const T *X, ptrdiff_t n, ptrdiff_t D, const T *dS, ptrdiff_t C, int J,  \
                     T *gt)                                                                  \
    {                                                                                        \
        for (ptrdiff_t r0 = 0; r0 < n; r0 += ROW_TILE) {                                     \
            ptrdiff_t r1 = r0 + ROW_TILE < n ? r0 + ROW_TILE : n;                            \
            ptrdiff_t k = 0;                                                                 \
            for (; k + 2 * LANES <= D; k += 2 * LANES) {                                     \
                VEC a0[MAXJ], a1[MAXJ];                                                      \
                for (int j = 0; j < J; j++) {                                                \
                    a0[j] = LOADU(gt + j * D + k);                                           \
                    a1[j] = LOADU(gt + j * D + k + LANES);                                   \
                }                                                                            \
                for (ptrdiff_t i = r0; i < r1; i++) {                                        \
                    VEC x0 = LOADU(X + i * D + k), x1 = LOADU(X + i * D + k + LANES);        \
                    const T *d = dS + i * C;                                                 \
                    for (int j = 0; j < J; j++) {                                            \
                        VEC b = SET1(d[j]);                                                  \
                        a0[j] = FMADD(b, x0, a0[j]);                                         \
                        a1[j] = FMADD(b, x1, a1[j]);                                         \
                    }                                                                        \
                }                                                                            \
                for (int j = 0; j < J; j++) {                                                \
                    STOREU(gt + j * D + k, a0[j]);                                           \
                    STOREU(gt + j * D + k + LANES, a1[j]);                                   \
                }                                                                            \
            }                                                                                \
            for (; k < D; k += LANES) {                                                      \
                unsigned rem = (unsigned)(D - k < LANES ? D - k : LANES);                    \
                MASK m = (MASK)((1u << rem) - 1u);                                           \
                VEC a0[MAXJ];                                                                \
                for (int j = 0; j < J; j++)                                                  \
                    a0[j] = MASKZ_LOADU(m, gt + j * D + k);                                  \
                for (ptrdiff_t i = r0; i < r1; i++) {                                        \
                    VEC x0 = MASKZ_LOADU(m, X + i * D + k);                                  \
                    const T *d = dS + i * C;                                                 \
                    for (int j = 0; j < J; j++)                                              \
                        a0[j] = FMADD(SET1(d[j]), x0, a0[j]);                                \
                }                                                                            \
                for (int j = 0; j < J; j++)                                                  \
                    MASK_STOREU(gt + j * D + k, m, a0[j]);                                   \
            }                                                                                \
        }                                                                                    \
    }

DEFINE_CHUNK(chunk_f32, float, __m512, 16, __mmask16, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
             _mm512_storeu_ps, _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps)
DEFINE_CHUNK(chunk_f64, double, __m512d, 8, __mmask8, _mm512_loadu_pd, _mm512_maskz_loadu_pd,
             _mm512_storeu_pd, _mm512_mask_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd)

/* the whole of grad_t, in chunks of at most MAXJ classes, each with its own unrolled loop */
#define DEFINE_KERNEL(NAME, CHUNK, T)                                                         \
    static TARGET void NAME(const T *X, ptrdiff_t n, ptrdiff_t D, const T *dS, ptrdiff_t C,  \
                            T *gt)                                                          \
    {                                                                                       \
        for (ptrdiff_t jc = 0; jc < C; jc += MAXJ) {                                        \
            int J = (int)(C - jc < MAXJ ? C - jc : MAXJ);                                   \
            const T *d = dS + jc;                                                           \
            T *g = gt + jc * D;                                                             \
            switch (J) {                                                                    \
            case 1: CHUNK(X, n, D, d, C, 1, g); break;                                      \
            case 2: CHUNK(X, n, D, d, C, 2, g); break;                                      \
            case 3: CHUNK(X, n, D, d, C, 3, g); break;                                      \
            case 4: CHUNK(X, n, D, d, C, 4, g); break;                                      \
            case 5: CHUNK(X, n, D, d, C, 5, g); break;                                      \
            case 6: CHUNK(X, n, D, d, C, 6, g); break;                                      \
            case 7: CHUNK(X, n, D, d, C, 7, g); break;                                      \
            case 8: CHUNK(X, n, D, d, C, 8, g); break;                                      \
            case 9: CHUNK(X, n, D, d, C, 9, g); break;                                      \
            case 10: CHUNK(X, n, D, d, C, 10, g); break;                                    \
            case 11: CHUNK(X, n, D, d, C, 11, g); break;                                    \
            default: CHUNK(X, n, D, d, C, 12, g); break;                                    \
            }                                                                               \
        }                                                                                   \
    }

DEFINE_KERNEL(add_grad_f32, chunk_f32, float)
DEFINE_KERNEL(add_grad_f64, chunk_f64, double)

/*
 * scores (n, C) = X (n, D) @ W (D, C). W is packed per chunk of at most MAXJ classes as
 * [D / LANES][J][LANES] (zero past D). Rows go in chunks of SCORE_ROWS (kept in L2), each
 * chunk in tiles of SCORE_K features (the packed W tile stays in L1); a pair of rows keeps
 * 2 x J accumulators of LANES partial sums in registers, saved between tiles and summed
 * across lanes after the last. While a chunk is computed, the next one is prefetched into L2
 * a slice at a time, so the rows stream from memory at about the speed of a plain read.
 */
INLINE __m512 gather_f32(const float *base, ptrdiff_t stride)
{
    __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_i32gather_ps(_mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)stride)), base,
                               4);
}

INLINE __m512d gather_f64(const double *base, ptrdiff_t stride)
{
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm512_i32gather_pd(_mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)stride)), base,
                               8);
}

#define DEFINE_SCORES(NAME, T, VEC, LANES, MASK, LOADU, MASKZ_LOADU, STOREU, GATHER, FMADD,    \
                      ZERO, REDUCE, SCORE_K, SCORE_ROWS)                                      \
    INLINE void NAME##_pair(const T *x0, const T *x1, const T *w, ptrdiff_t k0, ptrdiff_t k1, \
                            int J, VEC *saved, int first, int last, T *s0, T *s1, int two)    \
    {                                                                                         \
        VEC a0[MAXJ], a1[MAXJ];                                                               \
        for (int j = 0; j < J; j++) {                                                         \
            a0[j] = first ? ZERO() : saved[j];                                                \
            a1[j] = first ? ZERO() : saved[J + j];                                            \
        }                                                                                     \
        ptrdiff_t k = k0;                                                                     \
        for (; k + LANES <= k1; k += LANES, w += LANES * J) {                                 \
            VEC v0 = LOADU(x0 + k), v1 = LOADU(x1 + k);                                       \
            for (int j = 0; j < J; j++) {                                                     \
                VEC ww = LOADU(w + LANES * j);                                                \
                a0[j] = FMADD(v0, ww, a0[j]);                                                 \
                a1[j] = FMADD(v1, ww, a1[j]);                                                 \
            }                                                                                 \
        }                                                                                     \
        if (k < k1) {                                                                         \
            MASK m = (MASK)((1u << (unsigned)(k1 - k)) - 1u);                                 \
            VEC v0 = MASKZ_LOADU(m, x0 + k), v1 = MASKZ_LOADU(m, x1 + k);                     \
            for (int j = 0; j < J; j++) {                                                     \
                VEC ww = LOADU(w + LANES * j);                                                \
                a0[j] = FMADD(v0, ww, a0[j]);                                                 \
                a1[j] = FMADD(v1, ww, a1[j]);                                                 \
            }                                                                                 \
        }                                                                                     \
        if (!last) {                                                                          \
            for (int j = 0; j < J; j++) {                                                     \
                saved[j] = a0[j];                                                             \
                saved[J + j] = a1[j];                                                         \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        for (int j = 0; j < J; j++)                                                           \
            s0[j] = REDUCE(a0[j]);                                                            \
        if (two)                                                                              \
            for (int j = 0; j < J; j++)                                                       \
                s1[j] = REDUCE(a1[j]);                                                        \
    }                                                                                         \
                                                                                              \
    INLINE void NAME##_chunk(const T *X, ptrdiff_t n, ptrdiff_t D, const T *wp, int J, T *S,  \
                             ptrdiff_t C, VEC *saved)                                         \
    {                                                                                         \
        ptrdiff_t tiles = (D + SCORE_K - 1) / SCORE_K;                                        \
        for (ptrdiff_t r0 = 0; r0 < n; r0 += SCORE_ROWS) {                                    \
            ptrdiff_t r1 = r0 + SCORE_ROWS < n ? r0 + SCORE_ROWS : n;                         \
            ptrdiff_t r2 = r1 + SCORE_ROWS < n ? r1 + SCORE_ROWS : n;                         \
            const char *next = (const char *)(X + r1 * D);                                    \
            ptrdiff_t next_bytes = (r2 - r1) * D * (ptrdiff_t)sizeof(T);                      \
            ptrdiff_t steps = ((r1 - r0 + 1) / 2) * tiles;                                    \
            ptrdiff_t slice = (next_bytes / steps + 63) & ~(ptrdiff_t)63;                     \
            ptrdiff_t fetched = 0;                                                            \
            for (ptrdiff_t k0 = 0; k0 < D; k0 += SCORE_K) {                                   \
                ptrdiff_t k1 = k0 + SCORE_K < D ? k0 + SCORE_K : D;                           \
                const T *w = wp + (k0 / LANES) * LANES * J;                                   \
                for (ptrdiff_t i = r0; i < r1; i += 2) {                                      \
                    int two = i + 1 < r1;                                                     \
                    const T *x0 = X + i * D;                                                  \
                    NAME##_pair(x0, two ? x0 + D : x0, w, k0, k1, J,                          \
                                saved + (i - r0) * J, k0 == 0, k1 == D, S + i * C,            \
                                S + (i + 1) * C, two);                                        \
                    ptrdiff_t end = fetched + slice < next_bytes ? fetched + slice            \
                                                                 : next_bytes;                \
                    for (; fetched < end; fetched += 64)                                      \
                        _mm_prefetch(next + fetched, _MM_HINT_T1);                            \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    static TARGET int NAME(const T *X, ptrdiff_t n, ptrdiff_t D, const T *W, ptrdiff_t C,     \
                           T *S)                                                              \
    {                                                                                         \
        ptrdiff_t kb = (D + LANES - 1) / LANES;                                               \
        /* 64-byte aligned: both hold whole vectors */                                        \
        T *wp = aligned_alloc(64, (size_t)(kb * LANES * (C < MAXJ ? C : MAXJ)) * sizeof(T));  \
        VEC *saved = aligned_alloc(64, (size_t)(SCORE_ROWS + 1) * MAXJ * sizeof(VEC));        \
        if (wp == NULL || saved == NULL) {                                                    \
            free(wp);                                                                         \
            free(saved);                                                                      \
            return -1;                                                                        \
        }                                                                                     \
        for (ptrdiff_t jc = 0; jc < C; jc += MAXJ) {                                          \
            int J = (int)(C - jc < MAXJ ? C - jc : MAXJ);                                     \
            for (ptrdiff_t b = 0; b < kb; b++) { /* W[k, jc:jc+J] to lane k % LANES */      \
                T *block = wp + b * J * LANES;                                                \
                ptrdiff_t k0 = b * LANES, k1 = k0 + LANES < D ? k0 + LANES : D;               \
                if (k1 - k0 == LANES) { /* a whole block: one gather per class */             \
                    for (int j = 0; j < J; j++)                                               \
                        STOREU(block + j * LANES, GATHER(W + k0 * C + jc + j, C));            \
                    continue;                                                                 \
                }                                                                             \
                for (ptrdiff_t k = k0; k < k1; k++) {                                         \
                    const T *src = W + k * C + jc;                                            \
                    for (int j = 0; j < J; j++)                                               \
                        block[j * LANES + (k - k0)] = src[j];                                 \
                }                                                                             \
                for (ptrdiff_t k = k1; k < k0 + LANES; k++)                                   \
                    for (int j = 0; j < J; j++)                                               \
                        block[j * LANES + (k - k0)] = (T)0;                                   \
            }                                                                                 \
            switch (J) {                                                                      \
            case 1: NAME##_chunk(X, n, D, wp, 1, S + jc, C, saved); break;                    \
            case 2: NAME##_chunk(X, n, D, wp, 2, S + jc, C, saved); break;                    \
            case 3: NAME##_chunk(X, n, D, wp, 3, S + jc, C, saved); break;                    \
            case 4: NAME##_chunk(X, n, D, wp, 4, S + jc, C, saved); break;                    \
            case 5: NAME##_chunk(X, n, D, wp, 5, S + jc, C, saved); break;                    \
            case 6: NAME##_chunk(X, n, D, wp, 6, S + jc, C, saved); break;                    \
            case 7: NAME##_chunk(X, n, D, wp, 7, S + jc, C, saved); break;                    \
            case 8: NAME##_chunk(X, n, D, wp, 8, S + jc, C, saved); break;                    \
            case 9: NAME##_chunk(X, n, D, wp, 9, S + jc, C, saved); break;                    \
            case 10: NAME##_chunk(X, n, D, wp, 10, S + jc, C, saved); break;                  \
            case 11: NAME##_chunk(X, n, D, wp, 11, S + jc, C, saved); break;                  \
            default: NAME##_chunk(X, n, D, wp, 12, S + jc, C, saved); break;                  \
            }                                                                                 \
        }                                                                                     \
        free(wp);                                                                             \
        free(saved);                                                                          \
        return 0;                                                                             \
    }

DEFINE_SCORES(scores_f32, float, __m512, 16, __mmask16, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
              _mm512_storeu_ps, gather_f32, _mm512_fmadd_ps, _mm512_setzero_ps,
              _mm512_reduce_add_ps, 512, 64)
DEFINE_SCORES(scores_f64, double, __m512d, 8, __mmask8, _mm512_loadu_pd, _mm512_maskz_loadu_pd,
              _mm512_storeu_pd, gather_f64, _mm512_fmadd_pd, _mm512_setzero_pd,
              _mm512_reduce_add_pd, 256, 32)

static int
cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

#else

static int
cpu_has_avx512(void)
{
    return 0;
}

#endif

static int avx512;

/* a 2-d C-contiguous float32/float64 buffer; its kind ('f' or 'd') in *kind */
static int
get_matrix(PyObject *obj, Py_buffer *view, int flags, const char *name, char *kind)
{
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->ndim != 2 || f[1] != '\0' || (f[0] != 'f' && f[0] != 'd')) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a 2-d C-contiguous float32 or float64 array (format %s, "
                     "%d dimensions)",
                     name, view->format ? view->format : "B", view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    *kind = f[0];
    return 0;
}

/* the three operands of a kernel: out (writable), a and b, of one dtype ('f' or 'd') */
typedef struct {
    Py_buffer out, a, b;
    char kind;
} operands;

static void
release(operands *op)
{
    PyBuffer_Release(&op->out);
    PyBuffer_Release(&op->a);
    PyBuffer_Release(&op->b);
}

static int
get_operands(PyObject *const *args, Py_ssize_t nargs, const char *func,
             const char *const names[3], operands *op)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s takes 3 arguments (%zd given)", func, nargs);
        return -1;
    }
    if (!avx512) {
        PyErr_Format(PyExc_RuntimeError, "%s needs a CPU with AVX-512F; use numpy instead",
                     func);
        return -1;
    }
    char ka, kb;
    if (get_matrix(args[0], &op->out, PyBUF_WRITABLE, names[0], &op->kind) < 0)
        return -1;
    if (get_matrix(args[1], &op->a, PyBUF_SIMPLE, names[1], &ka) < 0) {
        PyBuffer_Release(&op->out);
        return -1;
    }
    if (get_matrix(args[2], &op->b, PyBUF_SIMPLE, names[2], &kb) < 0) {
        PyBuffer_Release(&op->out);
        PyBuffer_Release(&op->a);
        return -1;
    }
    if (ka != op->kind || kb != op->kind) {
        PyErr_Format(PyExc_TypeError, "%s, %s and %s must have one dtype", names[0], names[1],
                     names[2]);
        release(op);
        return -1;
    }
    return 0;
}

/* what both kernels ask of their operands */
#define OPERANDS_DOC                                                                          \
    "All three are C-contiguous arrays of one dtype, float32 or float64; the first is\n"      \
    "writable and shares no memory with the others. Needs AVX-512F (see avx512).\n"          \
    "Releases the GIL."

PyDoc_STRVAR(add_weight_grad_doc,
             "add_weight_grad(grad_t, dscores, X)\n--\n\n"
             "grad_t (C, D) += dscores (n, C).T @ X (n, D), in place.\n\n"
             OPERANDS_DOC);

static PyObject *
add_weight_grad(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[3] = {"grad_t", "dscores", "X"};
    operands op;
    if (get_operands(args, nargs, "add_weight_grad", names, &op) < 0)
        return NULL;
    Py_buffer *g = &op.out, *s = &op.a, *x = &op.b;
    Py_ssize_t n = x->shape[0], d = x->shape[1], c = s->shape[1];
    if (s->shape[0] != n || g->shape[0] != c || g->shape[1] != d) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: grad_t (%zd, %zd), dscores (%zd, %zd), X (%zd, %zd); "
                     "need (C, D), (n, C), (n, D)",
                     g->shape[0], g->shape[1], s->shape[0], s->shape[1], n, d);
        release(&op);
        return NULL;
    }
#if OPTLAB_AVX512
    Py_BEGIN_ALLOW_THREADS
    if (op.kind == 'f')
        add_grad_f32((const float *)x->buf, n, d, (const float *)s->buf, c, (float *)g->buf);
    else
        add_grad_f64((const double *)x->buf, n, d, (const double *)s->buf, c,
                     (double *)g->buf);
    Py_END_ALLOW_THREADS
#endif
    release(&op);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(scores_doc,
             "scores(out, X, W)\n--\n\n"
             "out (n, C) = X (n, D) @ W (D, C).\n\n"
             OPERANDS_DOC);

static PyObject *
scores(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[3] = {"out", "X", "W"};
    operands op;
    if (get_operands(args, nargs, "scores", names, &op) < 0)
        return NULL;
    Py_buffer *o = &op.out, *x = &op.a, *w = &op.b;
    Py_ssize_t n = x->shape[0], d = x->shape[1], c = w->shape[1];
    if (w->shape[0] != d || o->shape[0] != n || o->shape[1] != c) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: out (%zd, %zd), X (%zd, %zd), W (%zd, %zd); "
                     "need (n, C), (n, D), (D, C)",
                     o->shape[0], o->shape[1], n, d, w->shape[0], c);
        release(&op);
        return NULL;
    }
    int status = 0;
#if OPTLAB_AVX512
    if (n > 0 && c > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (op.kind == 'f')
            status = scores_f32((const float *)x->buf, n, d, (const float *)w->buf, c,
                                (float *)o->buf);
        else
            status = scores_f64((const double *)x->buf, n, d, (const double *)w->buf, c,
                                (double *)o->buf);
        Py_END_ALLOW_THREADS
    }
#endif
    release(&op);
    if (status < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add_weight_grad", (PyCFunction)(void (*)(void))add_weight_grad, METH_FASTCALL,
     add_weight_grad_doc},
    {"scores", (PyCFunction)(void (*)(void))scores, METH_FASTCALL, scores_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    avx512 = cpu_has_avx512();
    return PyModule_AddObjectRef(module, "avx512", avx512 ? Py_True : Py_False);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "optlab._kernels",
    .m_doc = "The weight gradient dscores.T @ X as an AVX-512 kernel (see optlab.kernels).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModuleDef_Init(&module_def);
}
