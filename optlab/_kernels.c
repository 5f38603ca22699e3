/*
 * optlab._kernels: the weight gradient of a linear classifier as an AVX-512 kernel.
 *
 * add_weight_grad(grad_t, dscores, X) adds dscores.T @ X to grad_t:
 *
 *     grad_t (C, D) += dscores (n, C).T @ X (n, D)
 *
 * With C (classes) far smaller than D (features) OpenBLAS's GEMM spends most of its time on
 * packing and on tiles that C cannot fill: measured at the CIFAR-10 shape it reaches about a
 * quarter of one core's peak. This kernel keeps a (2 x 16-lane) x C tile of grad_t in
 * registers and runs over a tile of rows, each row loaded once per tile and each score
 * gradient broadcast once per row, which doubles the speed of that product (see
 * benchmarks/README.md). The scores product X @ W has no such gain and stays with BLAS.
 *
 * Rows are summed in order, so the result depends on the inputs only (never on threads).
 * The kernel needs AVX-512F at run time (`avx512` tells); the module builds on any x86-64
 * compiler that knows the target attribute, and optlab falls back to numpy without it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

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

PyDoc_STRVAR(add_weight_grad_doc,
             "add_weight_grad(grad_t, dscores, X)\n--\n\n"
             "grad_t (C, D) += dscores (n, C).T @ X (n, D), in place.\n\n"
             "All three are C-contiguous arrays of one dtype, float32 or float64; grad_t is\n"
             "writable and shares no memory with the others. Needs AVX-512F (see avx512).\n"
             "Releases the GIL.");

static PyObject *
add_weight_grad(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "add_weight_grad takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!avx512) {
        PyErr_SetString(PyExc_RuntimeError,
                        "add_weight_grad needs a CPU with AVX-512F; use numpy instead");
        return NULL;
    }
    Py_buffer g, s, x;
    char gk, sk, xk;
    if (get_matrix(args[0], &g, PyBUF_WRITABLE, "grad_t", &gk) < 0)
        return NULL;
    if (get_matrix(args[1], &s, PyBUF_SIMPLE, "dscores", &sk) < 0) {
        PyBuffer_Release(&g);
        return NULL;
    }
    if (get_matrix(args[2], &x, PyBUF_SIMPLE, "X", &xk) < 0) {
        PyBuffer_Release(&g);
        PyBuffer_Release(&s);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = x.shape[0], d = x.shape[1], c = s.shape[1];
    if (gk != sk || gk != xk) {
        PyErr_SetString(PyExc_TypeError, "grad_t, dscores and X must have one dtype");
    }
    else if (s.shape[0] != n || g.shape[0] != c || g.shape[1] != d) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: grad_t (%zd, %zd), dscores (%zd, %zd), X (%zd, %zd); "
                     "need (C, D), (n, C), (n, D)",
                     g.shape[0], g.shape[1], s.shape[0], s.shape[1], n, d);
    }
    else {
#if OPTLAB_AVX512
        Py_BEGIN_ALLOW_THREADS
        if (gk == 'f')
            add_grad_f32((const float *)x.buf, n, d, (const float *)s.buf, c, (float *)g.buf);
        else
            add_grad_f64((const double *)x.buf, n, d, (const double *)s.buf, c,
                         (double *)g.buf);
        Py_END_ALLOW_THREADS
#endif
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&g);
    PyBuffer_Release(&s);
    PyBuffer_Release(&x);
    return result;
}

static PyMethodDef methods[] = {
    {"add_weight_grad", (PyCFunction)(void (*)(void))add_weight_grad, METH_FASTCALL,
     add_weight_grad_doc},
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
