/*
 * optlab_plugins.compiled._kernels: the two products of a linear classifier's training step,
 * for AVX-512 and AVX2, and a minibatch step that does both.
 *
 *     scores(out, X, W)                 out (n, C) = X (n, D) @ W (D, C)
 *     add_weight_grad(grad_t, dS, X)    grad_t (C, D) += dS (n, C).T @ X (n, D)
 *     step(grad_t, S, X, index, y, W, loss, margin, B)
 *                                       the same for the rows X[index], read in place, with
 *                                       a bundled loss's gradient of the scores in between
 *     add_transposed(out, a, b)         out (D, C) = (a + b).T
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
 * kernels come in two instruction sets, each built from the same macros: AVX-512F (512-bit
 * vectors, 32 registers, up to 12 classes per register tile) and AVX2 with FMA (256-bit
 * vectors, 16 registers, up to 6 classes per tile), for the many x86-64 CPUs without AVX-512
 * (most laptops). `isas` names those this CPU runs, best first; calling another raises. The
 * module builds with any x86-64 GCC or Clang (the target attribute), and optlab uses numpy
 * where no kernel runs (the numpy backend, optlab/_contract/backend.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define OPTLAB_SIMD 1
#include <immintrin.h>
#else
#define OPTLAB_SIMD 0
#endif

/*
 * The losses the step kernel computes itself, as plugins/losses.py computes them, in the
 * scores' dtype: the multiclass SVM (hinge or squared hinge, margin > 0) and softmax. Each turns
 * the scores of n rows (n x C, labels y) into their gradient, scaled by 1 / B for a batch of B,
 * in place, and returns the sum of the rows' losses. A NaN score gives a NaN loss.
 */
enum { HINGE, SQUARED_HINGE, SOFTMAX, N_LOSSES };

typedef struct {
    int kind;      /* HINGE, SQUARED_HINGE or SOFTMAX */
    double margin; /* the hinges' */
    ptrdiff_t B;   /* rows in the batch: the gradient is of the mean loss */
} loss_form;

#if OPTLAB_SIMD

/* the most classes per register tile (2 x TJ accumulators): 12 for AVX-512's 32 registers,
 * 6 for AVX2's 16; rows per tile of the gradient (kept in L2) */
#define TJ_AVX512 12
#define TJ_AVX2 6
#define ROW_TILE 32
/* bytes ahead in its row that the gradient prefetches (into L1) what it will load; the scores
 * prefetch the next pair of rows the same way: hardware prefetchers lose track of the many
 * short runs these loops read (measured 7-20% faster on batches in L3 and on streamed X) */
#define GRAD_PREFETCH 256
#define TARGET(ISA) __attribute__((target(ISA)))
#define INLINE(ISA) static inline __attribute__((always_inline, target(ISA)))
#define ISA_AVX512 "avx512f"
#define ISA_AVX2 "avx2,fma"
/* keeps x in a register: the compiler would otherwise fold its load into each FMA that uses
 * it, loading it twice and making the load ports, not the FMA units, the limit */
#define IN_REGISTER(x) __asm__("" : "+v"(x))
/* J when it fits a tile of TJ classes (a switch case past TJ is never taken) */
#define FIT(J, TJ) ((J) <= (TJ) ? (J) : (TJ))
/* F(J, ...) with J (1 to TJ <= 12) a compile-time constant, so that F's loops over the J
 * classes unroll and its accumulators stay in registers */
#define DISPATCH_J(J, TJ, F, ...)                                                             \
    switch (J) {                                                                              \
    case 1: F(1, __VA_ARGS__); break;                                                         \
    case 2: F(2, __VA_ARGS__); break;                                                         \
    case 3: F(3, __VA_ARGS__); break;                                                         \
    case 4: F(4, __VA_ARGS__); break;                                                         \
    case 5: F(5, __VA_ARGS__); break;                                                         \
    case 6: F(6, __VA_ARGS__); break;                                                         \
    case 7: F(FIT(7, TJ), __VA_ARGS__); break;                                                \
    case 8: F(FIT(8, TJ), __VA_ARGS__); break;                                                \
    case 9: F(FIT(9, TJ), __VA_ARGS__); break;                                                \
    case 10: F(FIT(10, TJ), __VA_ARGS__); break;                                              \
    case 11: F(FIT(11, TJ), __VA_ARGS__); break;                                              \
    default: F(TJ, __VA_ARGS__); break;                                                       \
    }

/* grad_t[0:J, :] (row stride D) += dscores[:, 0:J].T @ X for one tile of n <= ROW_TILE rows,
 * J known at compile time */
#define DEFINE_CHUNK(NAME, ISA, TJ, T, VEC, LANES, MASK, TAIL_MASK, LOADU, MASKZ_LOADU, STOREU,  \
                     MASK_STOREU, SET1, FMADD)                                               \
    INLINE(ISA) void NAME(int J, const T *const *R, ptrdiff_t n, ptrdiff_t D, const T *dS,    \
                          ptrdiff_t C, T *gt)                                                \
    {                                                                                        \
        ptrdiff_t k = 0;                                                                     \
        for (; k + 2 * LANES <= D; k += 2 * LANES) {                                         \
            VEC a0[TJ], a1[TJ];                                                              \
            for (int j = 0; j < J; j++) {                                                    \
                a0[j] = LOADU(gt + j * D + k);                                               \
                a1[j] = LOADU(gt + j * D + k + LANES);                                       \
            }                                                                                \
            for (ptrdiff_t i = 0; i < n; i++) {                                              \
                _mm_prefetch((const char *)(R[i] + k) + GRAD_PREFETCH, _MM_HINT_T0);           \
                VEC x0 = LOADU(R[i] + k), x1 = LOADU(R[i] + k + LANES);                      \
                const T *d = dS + i * C;                                                     \
                for (int j = 0; j < J; j++) {                                                \
                    VEC b = SET1(d[j]);                                                      \
                    a0[j] = FMADD(b, x0, a0[j]);                                             \
                    a1[j] = FMADD(b, x1, a1[j]);                                             \
                }                                                                            \
            }                                                                                \
            for (int j = 0; j < J; j++) {                                                    \
                STOREU(gt + j * D + k, a0[j]);                                               \
                STOREU(gt + j * D + k + LANES, a1[j]);                                       \
            }                                                                                \
        }                                                                                    \
        for (; k < D; k += LANES) {                                                          \
            unsigned rem = (unsigned)(D - k < LANES ? D - k : LANES);                        \
            MASK m = TAIL_MASK(rem);                                                         \
            VEC a0[TJ];                                                                      \
            for (int j = 0; j < J; j++)                                                      \
                a0[j] = MASKZ_LOADU(m, gt + j * D + k);                                      \
            for (ptrdiff_t i = 0; i < n; i++) {                                              \
                VEC x0 = MASKZ_LOADU(m, R[i] + k);                                           \
                const T *d = dS + i * C;                                                     \
                for (int j = 0; j < J; j++)                                                  \
                    a0[j] = FMADD(SET1(d[j]), x0, a0[j]);                                    \
            }                                                                                \
            for (int j = 0; j < J; j++)                                                      \
                MASK_STOREU(gt + j * D + k, m, a0[j]);                                       \
        }                                                                                    \
    }

/* the lanes below rem, as each instruction set writes a mask, and masked loads and stores
 * with AVX-512's argument order */
#define MASK16(rem) ((__mmask16)((1u << (rem)) - 1u))
#define MASK8(rem) ((__mmask8)((1u << (rem)) - 1u))

INLINE(ISA_AVX2) __m256i mask_ps(unsigned rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE(ISA_AVX2) __m256i mask_pd(unsigned rem)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)rem), _mm256_setr_epi64x(0, 1, 2, 3));
}

INLINE(ISA_AVX2) __m256 maskz_loadu_ps(__m256i m, const float *p) { return _mm256_maskload_ps(p, m); }
INLINE(ISA_AVX2) __m256d maskz_loadu_pd(__m256i m, const double *p) { return _mm256_maskload_pd(p, m); }
INLINE(ISA_AVX2) void mask_storeu_ps(float *p, __m256i m, __m256 v) { _mm256_maskstore_ps(p, m, v); }
INLINE(ISA_AVX2) void mask_storeu_pd(double *p, __m256i m, __m256d v) { _mm256_maskstore_pd(p, m, v); }

DEFINE_CHUNK(chunk_f32_avx512, ISA_AVX512, TJ_AVX512, float, __m512, 16, __mmask16, MASK16,
             _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_storeu_ps, _mm512_mask_storeu_ps,
             _mm512_set1_ps, _mm512_fmadd_ps)
DEFINE_CHUNK(chunk_f64_avx512, ISA_AVX512, TJ_AVX512, double, __m512d, 8, __mmask8, MASK8,
             _mm512_loadu_pd, _mm512_maskz_loadu_pd, _mm512_storeu_pd, _mm512_mask_storeu_pd,
             _mm512_set1_pd, _mm512_fmadd_pd)
DEFINE_CHUNK(chunk_f32_avx2, ISA_AVX2, TJ_AVX2, float, __m256, 8, __m256i, mask_ps,
             _mm256_loadu_ps, maskz_loadu_ps, _mm256_storeu_ps, mask_storeu_ps, _mm256_set1_ps,
             _mm256_fmadd_ps)
DEFINE_CHUNK(chunk_f64_avx2, ISA_AVX2, TJ_AVX2, double, __m256d, 4, __m256i, mask_pd,
             _mm256_loadu_pd, maskz_loadu_pd, _mm256_storeu_pd, mask_storeu_pd, _mm256_set1_pd,
             _mm256_fmadd_pd)

/* the weight gradient's kernel: grad_t (C, D) += dS (n, C).T @ X (n, D) */
#define DEFINE_KERNEL(NAME, ISA, TJ, CHUNK, T)                                                \
    /* grad_t += dS.T @ the rows R[0..n) of one tile (n <= ROW_TILE), each chunk of at most TJ \
       classes with its own unrolled loop (more than TJ classes read the tile again from L2) */ \
    INLINE(ISA) void NAME##_tile(const T *const *R, ptrdiff_t n, ptrdiff_t D, const T *dS,    \
                                 ptrdiff_t C, T *gt)                                          \
    {                                                                                         \
        for (ptrdiff_t jc = 0; jc < C; jc += TJ) {                                            \
            int J = (int)(C - jc < TJ ? C - jc : TJ);                                         \
            DISPATCH_J(J, TJ, CHUNK, R, n, D, dS + jc, C, gt + jc * D)                        \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* the whole of grad_t, per tile of ROW_TILE rows */                                      \
    static TARGET(ISA) void NAME(const T *X, ptrdiff_t n, ptrdiff_t D, const T *dS,           \
                                 ptrdiff_t C, T *gt)                                          \
    {                                                                                         \
        for (ptrdiff_t r0 = 0; r0 < n; r0 += ROW_TILE) {                                      \
            ptrdiff_t rows = n - r0 < ROW_TILE ? n - r0 : ROW_TILE;                           \
            const T *R[ROW_TILE];                                                             \
            for (ptrdiff_t i = 0; i < rows; i++)                                              \
                R[i] = X + (r0 + i) * D;                                                      \
            NAME##_tile(R, rows, D, dS + r0 * C, C, gt);                                      \
        }                                                                                     \
    }

DEFINE_KERNEL(add_grad_f32_avx512, ISA_AVX512, TJ_AVX512, chunk_f32_avx512, float)
DEFINE_KERNEL(add_grad_f64_avx512, ISA_AVX512, TJ_AVX512, chunk_f64_avx512, double)
DEFINE_KERNEL(add_grad_f32_avx2, ISA_AVX2, TJ_AVX2, chunk_f32_avx2, float)
DEFINE_KERNEL(add_grad_f64_avx2, ISA_AVX2, TJ_AVX2, chunk_f64_avx2, double)

/*
 * scores (n, C) = X (n, D) @ W (D, C). W is packed per chunk of at most TJ classes as
 * [D / LANES][J][LANES] (zero past D). Rows go in chunks of SCORE_ROWS (kept in L2), each
 * chunk, for each chunk of classes, in tiles of SCORE_K features (the packed W tile stays in
 * L1); a pair of rows keeps
 * 2 x J accumulators of LANES partial sums in registers, saved between tiles and summed
 * across lanes after the last. While a chunk is computed, the next one is prefetched into L2
 * a slice at a time, so the rows stream from memory at about the speed of a plain read.
 */
INLINE(ISA_AVX512) __m512 gather_f32_avx512(const float *base, ptrdiff_t stride)
{
    __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_i32gather_ps(_mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)stride)), base,
                               4);
}

INLINE(ISA_AVX512) __m512d gather_f64_avx512(const double *base, ptrdiff_t stride)
{
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm512_i32gather_pd(_mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)stride)), base,
                               8);
}

INLINE(ISA_AVX2) __m256 gather_f32_avx2(const float *base, ptrdiff_t stride)
{
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_i32gather_ps(base, _mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)stride)),
                               4);
}

INLINE(ISA_AVX2) __m256d gather_f64_avx2(const double *base, ptrdiff_t stride)
{
    __m128i lanes = _mm_setr_epi32(0, 1, 2, 3);
    return _mm256_i32gather_pd(base, _mm_mullo_epi32(lanes, _mm_set1_epi32((int)stride)), 8);
}

/* the sum of a vector's lanes: halves added pairwise, down to one lane */
INLINE(ISA_AVX2) float reduce_add_ps_avx2(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

INLINE(ISA_AVX2) double reduce_add_pd_avx2(__m256d v)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

#define DEFINE_SCORES(NAME, ISA, TJ, T, VEC, LANES, MASK, TAIL_MASK, LOADU, MASKZ_LOADU, STOREU, \
                      GATHER, FMADD, ZERO, REDUCE, SCORE_K, SCORE_ROWS)                       \
    /* rows x0, x1 (the next pair, p0 and p1, prefetched meanwhile) times the packed W tile */ \
    INLINE(ISA) void NAME##_pair(const T *x0, const T *x1, const T *p0, const T *p1,          \
                                 const T *w, ptrdiff_t k0, ptrdiff_t k1, int J, VEC *saved,   \
                                 int first, int last, T *s0, T *s1, int two)                  \
    {                                                                                         \
        VEC a0[TJ], a1[TJ];                                                                   \
        for (int j = 0; j < J; j++) {                                                         \
            a0[j] = first ? ZERO() : saved[j];                                                \
            a1[j] = first ? ZERO() : saved[J + j];                                            \
        }                                                                                     \
        ptrdiff_t k = k0;                                                                     \
        for (; k + LANES <= k1; k += LANES, w += LANES * J) {                                 \
            _mm_prefetch((const char *)(p0 + k), _MM_HINT_T0);                                \
            _mm_prefetch((const char *)(p1 + k), _MM_HINT_T0);                                \
            VEC v0 = LOADU(x0 + k), v1 = LOADU(x1 + k);                                       \
            for (int j = 0; j < J; j++) {                                                     \
                VEC ww = LOADU(w + LANES * j);                                                \
                IN_REGISTER(ww);                                                              \
                a0[j] = FMADD(v0, ww, a0[j]);                                                 \
                a1[j] = FMADD(v1, ww, a1[j]);                                                 \
            }                                                                                 \
        }                                                                                     \
        if (k < k1) {                                                                         \
            MASK m = TAIL_MASK((unsigned)(k1 - k));                                           \
            VEC v0 = MASKZ_LOADU(m, x0 + k), v1 = MASKZ_LOADU(m, x1 + k);                     \
            for (int j = 0; j < J; j++) {                                                     \
                VEC ww = LOADU(w + LANES * j);                                                \
                IN_REGISTER(ww);                                                              \
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
    /* rows R[0..n) times one chunk of J classes (w packed, S the scores of R[0] offset to the \
       chunk), in tiles of SCORE_K features, prefetching rows P[0..m) into L2 meanwhile */    \
    INLINE(ISA) void NAME##_rows(int J, const T *const *R, ptrdiff_t n, const T *const *P,    \
                                 ptrdiff_t m, ptrdiff_t D, const T *wp, T *S, ptrdiff_t C,    \
                                 VEC *saved)                                                  \
    {                                                                                         \
        ptrdiff_t tiles = (D + SCORE_K - 1) / SCORE_K;                                        \
        ptrdiff_t row_lines = (D * (ptrdiff_t)sizeof(T) + 63) / 64 + 1;                       \
        ptrdiff_t steps = ((n + 1) / 2) * tiles;                                              \
        /* cache lines to prefetch per pair of rows */                                        \
        ptrdiff_t slice = steps ? (m * row_lines + steps - 1) / steps : 0;                    \
        ptrdiff_t next = 0; /* the row of P being prefetched, from line to stop */            \
        const char *line = m ? (const char *)((uintptr_t)P[0] & ~(uintptr_t)63) : NULL;       \
        const char *stop = m ? (const char *)(P[0] + D) : NULL;                               \
        for (ptrdiff_t k0 = 0; k0 < D; k0 += SCORE_K) {                                       \
            ptrdiff_t k1 = k0 + SCORE_K < D ? k0 + SCORE_K : D;                               \
            const T *w = wp + (k0 / LANES) * LANES * J;                                       \
            for (ptrdiff_t i = 0; i < n; i += 2) {                                            \
                int two = i + 1 < n;                                                          \
                const T *x0 = R[i], *x1 = two ? R[i + 1] : x0;                                \
                const T *p0 = i + 2 < n ? R[i + 2] : x0, *p1 = i + 3 < n ? R[i + 3] : p0;     \
                NAME##_pair(x0, x1, p0, p1, w, k0, k1, J, saved + i * J, k0 == 0, k1 == D,    \
                            S + i * C, S + (i + 1) * C, two);                                 \
                for (ptrdiff_t f = 0; f < slice && next < m; f++) {                           \
                    _mm_prefetch(line, _MM_HINT_T1);                                          \
                    line += 64;                                                               \
                    if (line >= stop && ++next < m) {                                         \
                        line = (const char *)((uintptr_t)P[next] & ~(uintptr_t)63);           \
                        stop = (const char *)(P[next] + D);                                   \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* W[:, jc:jc+J] packed as [D / LANES][J][LANES], zero past D */                          \
    INLINE(ISA) void NAME##_pack(const T *W, ptrdiff_t D, ptrdiff_t C, ptrdiff_t jc, int J,    \
                                 T *wp)                                                       \
    {                                                                                         \
        ptrdiff_t kb = (D + LANES - 1) / LANES;                                               \
        for (ptrdiff_t b = 0; b < kb; b++) { /* W[k, jc:jc+J] to lane k % LANES */            \
            T *block = wp + b * J * LANES;                                                    \
            ptrdiff_t k0 = b * LANES, k1 = k0 + LANES < D ? k0 + LANES : D;                   \
            if (k1 - k0 == LANES) { /* a whole block: one gather per class */                 \
                for (int j = 0; j < J; j++)                                                   \
                    STOREU(block + j * LANES, GATHER(W + k0 * C + jc + j, C));                \
                continue;                                                                     \
            }                                                                                 \
            for (ptrdiff_t k = k0; k < k1; k++) {                                             \
                const T *src = W + k * C + jc;                                                \
                for (int j = 0; j < J; j++)                                                   \
                    block[j * LANES + (k - k0)] = src[j];                                     \
            }                                                                                 \
            for (ptrdiff_t k = k1; k < k0 + LANES; k++)                                       \
                for (int j = 0; j < J; j++)                                                   \
                    block[j * LANES + (k - k0)] = (T)0;                                       \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* rows R[0..n) (a chunk kept in L2) times each chunk of classes of W (packed in wp, kb   \
       blocks per class), prefetching rows P[0..m) once: more than TJ classes read the chunk  \
       again from L2, not from memory */                                                      \
    INLINE(ISA) void NAME##_chunk(const T *const *R, ptrdiff_t n, const T *const *P,          \
                                  ptrdiff_t m, ptrdiff_t D, const T *wp, ptrdiff_t kb, T *S,  \
                                  ptrdiff_t C, VEC *saved)                                    \
    {                                                                                         \
        for (ptrdiff_t jc = 0; jc < C; jc += TJ) {                                            \
            int J = (int)(C - jc < TJ ? C - jc : TJ);                                         \
            ptrdiff_t pf = jc == 0 ? m : 0;                                                   \
            DISPATCH_J(J, TJ, NAME##_rows, R, n, P, pf, D, wp + kb * LANES * jc, S + jc, C,   \
                       saved)                                                                 \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* the rows of a chunk */                                                                 \
    enum { NAME##_ROWS = SCORE_ROWS };                                                        \
    /* every chunk of W packed, into *wp, and room for the partial sums of a chunk of rows, in \
       *saved (both 64-byte aligned, freed by the caller); -1 when out of memory */           \
    static TARGET(ISA) int NAME##_prepare(const T *W, ptrdiff_t D, ptrdiff_t C, T **wp,       \
                                          VEC **saved)                                        \
    {                                                                                         \
        ptrdiff_t kb = (D + LANES - 1) / LANES;                                               \
        size_t bytes = (size_t)(kb * LANES * C) * sizeof(T);                                  \
        *wp = aligned_alloc(64, (bytes + 63) / 64 * 64);                                      \
        *saved = aligned_alloc(64, (size_t)(SCORE_ROWS + 1) * TJ * sizeof(VEC));              \
        if (*wp == NULL || *saved == NULL) {                                                  \
            free(*wp);                                                                        \
            free(*saved);                                                                     \
            return -1;                                                                        \
        }                                                                                     \
        for (ptrdiff_t jc = 0; jc < C; jc += TJ)                                              \
            NAME##_pack(W, D, C, jc, (int)(C - jc < TJ ? C - jc : TJ), *wp + kb * LANES * jc); \
        return 0;                                                                             \
    }                                                                                         \
                                                                                              \
    /* per chunk of SCORE_ROWS rows, prefetching the next chunk */                            \
    static TARGET(ISA) int NAME(const T *X, ptrdiff_t n, ptrdiff_t D, const T *W, ptrdiff_t C, \
                                T *S)                                                         \
    {                                                                                         \
        T *wp;                                                                                \
        VEC *saved;                                                                           \
        if (NAME##_prepare(W, D, C, &wp, &saved) < 0)                                         \
            return -1;                                                                        \
        ptrdiff_t kb = (D + LANES - 1) / LANES;                                               \
        const T *R[2 * SCORE_ROWS]; /* this chunk's rows and the next one's */                \
        for (ptrdiff_t r0 = 0; r0 < n; r0 += SCORE_ROWS) {                                    \
            ptrdiff_t r1 = r0 + SCORE_ROWS < n ? r0 + SCORE_ROWS : n;                         \
            ptrdiff_t r2 = r1 + SCORE_ROWS < n ? r1 + SCORE_ROWS : n;                         \
            for (ptrdiff_t i = r0; i < r2; i++)                                               \
                R[i - r0] = X + i * D;                                                        \
            NAME##_chunk(R, r1 - r0, R + (r1 - r0), r2 - r1, D, wp, kb, S + r0 * C, C, saved); \
        }                                                                                     \
        free(wp);                                                                             \
        free(saved);                                                                          \
        return 0;                                                                             \
    }                                                                                         \

DEFINE_SCORES(scores_f32_avx512, ISA_AVX512, TJ_AVX512, float, __m512, 16, __mmask16, MASK16,
              _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_storeu_ps, gather_f32_avx512,
              _mm512_fmadd_ps, _mm512_setzero_ps, _mm512_reduce_add_ps, 512, 64)
DEFINE_SCORES(scores_f64_avx512, ISA_AVX512, TJ_AVX512, double, __m512d, 8, __mmask8, MASK8,
              _mm512_loadu_pd, _mm512_maskz_loadu_pd, _mm512_storeu_pd, gather_f64_avx512,
              _mm512_fmadd_pd, _mm512_setzero_pd, _mm512_reduce_add_pd, 256, 32)
DEFINE_SCORES(scores_f32_avx2, ISA_AVX2, TJ_AVX2, float, __m256, 8, __m256i, mask_ps,
              _mm256_loadu_ps, maskz_loadu_ps, _mm256_storeu_ps, gather_f32_avx2,
              _mm256_fmadd_ps, _mm256_setzero_ps, reduce_add_ps_avx2, 512, 64)
DEFINE_SCORES(scores_f64_avx2, ISA_AVX2, TJ_AVX2, double, __m256d, 4, __m256i, mask_pd,
              _mm256_loadu_pd, maskz_loadu_pd, _mm256_storeu_pd, gather_f64_avx2,
              _mm256_fmadd_pd, _mm256_setzero_pd, reduce_add_pd_avx2, 256, 32)


#define DEFINE_LOSS(NAME, T, EXP, LOG)                                                        \
    static double NAME(const loss_form *form, T *S, ptrdiff_t n, ptrdiff_t C, const int64_t *y) \
    {                                                                                         \
        double total = 0.0;                                                                   \
        T inv = (T)(1.0 / (double)form->B);                                                   \
        if (form->kind == SOFTMAX) {                                                          \
            for (ptrdiff_t i = 0; i < n; i++) {                                               \
                T *s = S + i * C, top = s[0], sum = 0;                                        \
                for (ptrdiff_t j = 1; j < C; j++)                                             \
                    top = s[j] > top ? s[j] : top;                                            \
                T shifted_y = s[y[i]] - top;                                                  \
                for (ptrdiff_t j = 0; j < C; j++) {                                           \
                    s[j] = EXP(s[j] - top);                                                   \
                    sum += s[j];                                                              \
                }                                                                             \
                total += (double)(LOG(sum) - shifted_y);                                      \
                for (ptrdiff_t j = 0; j < C; j++)                                             \
                    s[j] /= sum;                                                              \
                s[y[i]] -= 1;                                                                 \
                for (ptrdiff_t j = 0; j < C; j++)                                             \
                    s[j] *= inv;                                                              \
            }                                                                                 \
            return total;                                                                     \
        }                                                                                     \
        int squared = form->kind == SQUARED_HINGE;                                            \
        T margin = (T)form->margin, twice = (T)(2.0 / (double)form->B);                       \
        for (ptrdiff_t i = 0; i < n; i++) {                                                   \
            T *s = S + i * C, correct = s[y[i]], sum = 0;                                     \
            for (ptrdiff_t j = 0; j < C; j++) {                                               \
                if (j == y[i])                                                                \
                    continue;                                                                 \
                T m = s[j] - correct + margin;                                                \
                m = m <= 0 ? 0 : m; /* max(m, 0), NaN kept */                                 \
                total += squared ? (double)(m * m) : (double)m;                               \
                s[j] = squared ? m * twice : (m > 0 ? inv : 0);                               \
                sum += s[j];                                                                  \
            }                                                                                 \
            s[y[i]] = -sum;                                                                   \
        }                                                                                     \
        return total;                                                                         \
    }

DEFINE_LOSS(loss_f32, float, expf, logf)
DEFINE_LOSS(loss_f64, double, exp, log)

/*
 * One minibatch step's data loss and weight gradient, without copying the batch out of X:
 * per chunk of rows X[index] (kept in L2 while the next is prefetched, as in scores), the
 * scores, then the loss's gradient of them, then their part of grad_t from the rows still in
 * L2. Each row is read from memory once, where scores and gradient computed apart read a
 * gathered batch three times (the copy, each product). The scores and the gradient are summed
 * in the same order as those of scores() and add_weight_grad() on X[index].
 */
#define DEFINE_STEP(NAME, ISA, T, VEC, LANES, SCORES, GRAD, LOSS)                             \
    static TARGET(ISA) int NAME(const loss_form *form, const T *X, ptrdiff_t D,               \
                                const int64_t *index, const int64_t *y, ptrdiff_t n,          \
                                const T *W, ptrdiff_t C, T *S, T *gt, double *total)          \
    {                                                                                         \
        T *wp;                                                                                \
        VEC *saved;                                                                           \
        const T **R = malloc((size_t)(n > 0 ? n : 1) * sizeof *R);                            \
        if (R == NULL)                                                                        \
            return -1;                                                                        \
        if (SCORES##_prepare(W, D, C, &wp, &saved) < 0) {                                     \
            free(R);                                                                          \
            return -1;                                                                        \
        }                                                                                     \
        for (ptrdiff_t i = 0; i < n; i++)                                                     \
            R[i] = X + index[i] * D;                                                          \
        ptrdiff_t kb = (D + LANES - 1) / LANES, ROWS = SCORES##_ROWS;                         \
        double sum = 0.0;                                                                     \
        for (ptrdiff_t r0 = 0; r0 < n; r0 += ROWS) {                                          \
            ptrdiff_t r1 = r0 + ROWS < n ? r0 + ROWS : n;                                     \
            ptrdiff_t r2 = r1 + ROWS < n ? r1 + ROWS : n;                                     \
            SCORES##_chunk(R + r0, r1 - r0, R + r1, r2 - r1, D, wp, kb, S + r0 * C, C, saved); \
            sum += LOSS(form, S + r0 * C, r1 - r0, C, y + r0);                                \
            for (ptrdiff_t t0 = r0; t0 < r1; t0 += ROW_TILE)                                  \
                GRAD##_tile(R + t0, r1 - t0 < ROW_TILE ? r1 - t0 : ROW_TILE, D, S + t0 * C, C, \
                            gt);                                                              \
        }                                                                                     \
        free(R);                                                                              \
        free(wp);                                                                             \
        free(saved);                                                                          \
        *total = sum;                                                                         \
        return 0;                                                                             \
    }

DEFINE_STEP(step_f32_avx512, ISA_AVX512, float, __m512, 16, scores_f32_avx512,
            add_grad_f32_avx512, loss_f32)
DEFINE_STEP(step_f64_avx512, ISA_AVX512, double, __m512d, 8, scores_f64_avx512,
            add_grad_f64_avx512, loss_f64)
DEFINE_STEP(step_f32_avx2, ISA_AVX2, float, __m256, 8, scores_f32_avx2, add_grad_f32_avx2,
            loss_f32)
DEFINE_STEP(step_f64_avx2, ISA_AVX2, double, __m256d, 4, scores_f64_avx2, add_grad_f64_avx2,
            loss_f64)

#endif /* OPTLAB_SIMD */

/* the instruction sets, best first; a kernel of each for each dtype */
enum { AVX512, AVX2, N_ISAS };
static const char *const isa_names[N_ISAS] = {"avx512", "avx2"};
static const char *const isa_needs[N_ISAS] = {"AVX-512F", "AVX2 and FMA"};

typedef struct {
    void (*add_grad_f32)(const float *, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, float *);
    void (*add_grad_f64)(const double *, ptrdiff_t, ptrdiff_t, const double *, ptrdiff_t,
                         double *);
    int (*scores_f32)(const float *, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, float *);
    int (*scores_f64)(const double *, ptrdiff_t, ptrdiff_t, const double *, ptrdiff_t,
                      double *);
    int (*step_f32)(const loss_form *, const float *, ptrdiff_t, const int64_t *,
                    const int64_t *, ptrdiff_t, const float *, ptrdiff_t, float *, float *,
                    double *);
    int (*step_f64)(const loss_form *, const double *, ptrdiff_t, const int64_t *,
                    const int64_t *, ptrdiff_t, const double *, ptrdiff_t, double *, double *,
                    double *);
} kernel_set;

#if OPTLAB_SIMD
static const kernel_set kernel_sets[N_ISAS] = {
    {add_grad_f32_avx512, add_grad_f64_avx512, scores_f32_avx512, scores_f64_avx512,
     step_f32_avx512, step_f64_avx512},
    {add_grad_f32_avx2, add_grad_f64_avx2, scores_f32_avx2, scores_f64_avx2, step_f32_avx2,
     step_f64_avx2},
};

static void
detect(int runs[N_ISAS])
{
    __builtin_cpu_init();
    runs[AVX512] = __builtin_cpu_supports("avx512f");
    runs[AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static const kernel_set kernel_sets[N_ISAS];

static void
detect(int runs[N_ISAS])
{
    for (int i = 0; i < N_ISAS; i++)
        runs[i] = 0;
}
#endif

/* which instruction sets this CPU runs (set when the module is loaded) */
static int cpu_runs[N_ISAS];

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

/* a call of FUNC_ISA with `want` arguments, on a CPU that runs the instruction set */
static int
check_call(const char *func, int isa, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s_%s takes %zd arguments (%zd given)", func,
                     isa_names[isa], want, nargs);
        return -1;
    }
    if (!cpu_runs[isa]) {
        PyErr_Format(PyExc_RuntimeError, "%s_%s needs a CPU with %s; see isas", func,
                     isa_names[isa], isa_needs[isa]);
        return -1;
    }
    return 0;
}

/* out (writable), a and b: three matrices of one dtype */
static int
get_three(PyObject *const *args, const char *const names[3], operands *op)
{
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

static int
get_operands(PyObject *const *args, Py_ssize_t nargs, const char *func, int isa,
             const char *const names[3], operands *op)
{
    return check_call(func, isa, nargs, 3) < 0 ? -1 : get_three(args, names, op);
}

static PyObject *
add_weight_grad(PyObject *const *args, Py_ssize_t nargs, int isa)
{
    static const char *const names[3] = {"grad_t", "dscores", "X"};
    operands op;
    if (get_operands(args, nargs, "add_weight_grad", isa, names, &op) < 0)
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
    const kernel_set *k = &kernel_sets[isa];
    Py_BEGIN_ALLOW_THREADS
    if (op.kind == 'f')
        k->add_grad_f32((const float *)x->buf, n, d, (const float *)s->buf, c, (float *)g->buf);
    else
        k->add_grad_f64((const double *)x->buf, n, d, (const double *)s->buf, c,
                        (double *)g->buf);
    Py_END_ALLOW_THREADS
    release(&op);
    Py_RETURN_NONE;
}

static PyObject *
scores(PyObject *const *args, Py_ssize_t nargs, int isa)
{
    static const char *const names[3] = {"out", "X", "W"};
    operands op;
    if (get_operands(args, nargs, "scores", isa, names, &op) < 0)
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
    const kernel_set *k = &kernel_sets[isa];
    if (n > 0 && c > 0 && d == 0)
        memset(o->buf, 0, (size_t)o->len); /* an empty sum */
    else if (n > 0 && c > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (op.kind == 'f')
            status = k->scores_f32((const float *)x->buf, n, d, (const float *)w->buf, c,
                                   (float *)o->buf);
        else
            status = k->scores_f64((const double *)x->buf, n, d, (const double *)w->buf, c,
                                   (double *)o->buf);
        Py_END_ALLOW_THREADS
    }
    release(&op);
    if (status < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* a 1-d C-contiguous int64 buffer */
static int
get_int64_vector(PyObject *obj, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->ndim != 1 || view->itemsize != 8 || f[1] != '\0' || (f[0] != 'q' && f[0] != 'l')) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a 1-d C-contiguous int64 array (format %s, %d dimensions)", name,
                     view->format ? view->format : "B", view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* the labels y[index] of a batch, checked: index in 0..N-1, labels in 0..C-1; NULL and an
 * exception otherwise (or when out of memory) */
static int64_t *
batch_labels(const int64_t *index, Py_ssize_t n, const int64_t *y, Py_ssize_t N, Py_ssize_t C)
{
    int64_t *labels = malloc((size_t)(n > 0 ? n : 1) * sizeof *labels);
    if (labels == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (index[i] < 0 || index[i] >= N) {
            PyErr_Format(PyExc_IndexError, "index[%zd] = %lld is not a row of X (%zd rows)", i,
                         (long long)index[i], N);
            free(labels);
            return NULL;
        }
        labels[i] = y[index[i]];
        if (labels[i] < 0 || labels[i] >= C) {
            PyErr_Format(PyExc_ValueError, "y[%lld] = %lld is not a class in 0..%zd",
                         (long long)index[i], (long long)labels[i], C - 1);
            free(labels);
            return NULL;
        }
    }
    return labels;
}

static PyObject *
step(PyObject *const *args, Py_ssize_t nargs, int isa)
{
    if (check_call("step", isa, nargs, 9) < 0)
        return NULL;
    long kind = PyLong_AsLong(args[6]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    double margin = PyFloat_AsDouble(args[7]);
    if (margin == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t batch = PyLong_AsSsize_t(args[8]);
    if (batch == -1 && PyErr_Occurred())
        return NULL;
    if (kind < 0 || kind >= N_LOSSES) {
        PyErr_Format(PyExc_ValueError, "loss must be 0 (hinge), 1 (squared hinge) or 2 "
                     "(softmax), not %ld", kind);
        return NULL;
    }
    /* grad_t, scores, X, W: matrices of one dtype; index, y: int64 vectors */
    static const char *const names[6] = {"grad_t", "scores", "X", "index", "y", "W"};
    static const int order[6] = {0, 1, 2, 5, 3, 4}; /* the matrices first */
    Py_buffer v[6];
    char kinds[6] = {0};
    int got = 0;
    PyObject *result = NULL;
    for (; got < 6; got++) {
        int a = order[got];
        int status = a == 3 || a == 4
                         ? get_int64_vector(args[a], &v[a], names[a])
                         : get_matrix(args[a], &v[a], a < 2 ? PyBUF_WRITABLE : PyBUF_SIMPLE,
                                      names[a], &kinds[a]);
        if (status < 0)
            goto done;
    }
    Py_buffer *g = &v[0], *s = &v[1], *x = &v[2], *ix = &v[3], *yv = &v[4], *w = &v[5];
    if (kinds[1] != kinds[0] || kinds[2] != kinds[0] || kinds[5] != kinds[0]) {
        PyErr_SetString(PyExc_TypeError, "grad_t, scores, X and W must have one dtype");
        goto done;
    }
    Py_ssize_t N = x->shape[0], d = x->shape[1], c = w->shape[1], n = ix->shape[0];
    if (w->shape[0] != d || g->shape[0] != c || g->shape[1] != d || s->shape[0] != n ||
        s->shape[1] != c || yv->shape[0] != N) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: grad_t (%zd, %zd), scores (%zd, %zd), X (%zd, %zd), "
                     "index (%zd,), y (%zd,), W (%zd, %zd); need (C, D), (n, C), (N, D), (n,), "
                     "(N,), (D, C)",
                     g->shape[0], g->shape[1], s->shape[0], s->shape[1], N, d, n, yv->shape[0],
                     w->shape[0], c);
        goto done;
    }
    if (batch < n || batch < 1) {
        PyErr_Format(PyExc_ValueError, "batch (%zd) must be at least 1 and the rows (%zd)",
                     batch, n);
        goto done;
    }
    int64_t *labels = batch_labels(ix->buf, n, yv->buf, N, c);
    if (labels == NULL)
        goto done;
    loss_form form = {(int)kind, margin, batch};
    double total = 0.0;
    int status = 0;
    const kernel_set *k = &kernel_sets[isa];
    if (d == 0)
        memset(s->buf, 0, (size_t)s->len); /* empty sums: the scores kernel writes nothing */
    if (n > 0 && c > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (kinds[0] == 'f')
            status = k->step_f32(&form, (const float *)x->buf, d, ix->buf, labels, n,
                                 (const float *)w->buf, c, (float *)s->buf, (float *)g->buf,
                                 &total);
        else
            status = k->step_f64(&form, (const double *)x->buf, d, ix->buf, labels, n,
                                 (const double *)w->buf, c, (double *)s->buf, (double *)g->buf,
                                 &total);
        Py_END_ALLOW_THREADS
    }
    free(labels);
    result = status < 0 ? PyErr_NoMemory() : PyFloat_FromDouble(total);
done:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[order[i]]);
    return result;
}

/* out (D, C) = (a + b).T for a and b (C, D): two transposed gradients added into the layout
 * of W, in blocks of columns of a and b that keep their rows of out in L1 */
#define DEFINE_ADD_TRANSPOSED(NAME, T)                                                        \
    static void NAME(T *out, const T *a, const T *b, ptrdiff_t C, ptrdiff_t D)                \
    {                                                                                         \
        for (ptrdiff_t k0 = 0; k0 < D; k0 += 64) {                                            \
            ptrdiff_t k1 = k0 + 64 < D ? k0 + 64 : D;                                         \
            for (ptrdiff_t j = 0; j < C; j++)                                                 \
                for (ptrdiff_t k = k0; k < k1; k++)                                           \
                    out[k * C + j] = a[j * D + k] + b[j * D + k];                             \
        }                                                                                     \
    }

DEFINE_ADD_TRANSPOSED(add_transposed_f32, float)
DEFINE_ADD_TRANSPOSED(add_transposed_f64, double)

static PyObject *
add_transposed(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[3] = {"out", "a", "b"};
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "add_transposed takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    operands op;
    if (get_three(args, names, &op) < 0)
        return NULL;
    Py_ssize_t c = op.a.shape[0], d = op.a.shape[1];
    if (op.b.shape[0] != c || op.b.shape[1] != d || op.out.shape[0] != d ||
        op.out.shape[1] != c) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: out (%zd, %zd), a (%zd, %zd), b (%zd, %zd); need "
                     "(D, C), (C, D), (C, D)",
                     op.out.shape[0], op.out.shape[1], c, d, op.b.shape[0], op.b.shape[1]);
        release(&op);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (op.kind == 'f')
        add_transposed_f32(op.out.buf, op.a.buf, op.b.buf, c, d);
    else
        add_transposed_f64(op.out.buf, op.a.buf, op.b.buf, c, d);
    Py_END_ALLOW_THREADS
    release(&op);
    Py_RETURN_NONE;
}

/* what the kernels ask of their operands */
#define OPERANDS_DOC                                                                          \
    "All three are C-contiguous arrays of one dtype, float32 or float64; the first is\n"      \
    "writable and shares no memory with the others. Needs a CPU that runs the instruction\n"  \
    "set (see isas). Releases the GIL."

#define ADD_WEIGHT_GRAD_DOC(ISA)                                                              \
    "add_weight_grad_" ISA "(grad_t, dscores, X)\n--\n\n"                                     \
    "grad_t (C, D) += dscores (n, C).T @ X (n, D), in place.\n\n" OPERANDS_DOC
#define STEP_DOC(ISA)                                                                         \
    "step_" ISA "(grad_t, scores, X, index, y, W, loss, margin, batch)\n--\n\n"               \
    "Part of a minibatch step of a bundled loss, on the rows X[index] read in place: returns\n" \
    "the sum of their losses, adds their part of the weight gradient's transpose to grad_t\n" \
    "(C, D) and leaves the gradient with respect to their scores in scores (n, C), both\n"    \
    "gradients of the mean loss over a batch of `batch` rows (at least n). X (N, D), W (D, C);\n" \
    "index (n,) and y (N,) int64; loss 0 (hinge), 1 (squared hinge) or 2 (softmax); margin,\n" \
    "the hinges'. grad_t, scores, X and W are C-contiguous, of one dtype, float32 or float64;\n" \
    "grad_t and scores are writable and share no memory with the others. Needs a CPU that\n"  \
    "runs the instruction set (see isas). Releases the GIL."
#define SCORES_DOC(ISA)                                                                       \
    "scores_" ISA "(out, X, W)\n--\n\n"                                                       \
    "out (n, C) = X (n, D) @ W (D, C).\n\n" OPERANDS_DOC

/* the module's functions: FUNC for one instruction set */
#define ENTRY(FUNC, SUFFIX, ISA)                                                              \
    static PyObject *FUNC##_##SUFFIX(PyObject *Py_UNUSED(module), PyObject *const *args,      \
                                     Py_ssize_t nargs)                                        \
    {                                                                                         \
        return FUNC(args, nargs, ISA);                                                        \
    }

ENTRY(add_weight_grad, avx512, AVX512)
ENTRY(add_weight_grad, avx2, AVX2)
ENTRY(scores, avx512, AVX512)
ENTRY(scores, avx2, AVX2)
ENTRY(step, avx512, AVX512)
ENTRY(step, avx2, AVX2)

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef methods[] = {
    {"add_weight_grad_avx512", FASTCALL(add_weight_grad_avx512), ADD_WEIGHT_GRAD_DOC("avx512")},
    {"add_weight_grad_avx2", FASTCALL(add_weight_grad_avx2), ADD_WEIGHT_GRAD_DOC("avx2")},
    {"scores_avx512", FASTCALL(scores_avx512), SCORES_DOC("avx512")},
    {"scores_avx2", FASTCALL(scores_avx2), SCORES_DOC("avx2")},
    {"step_avx512", FASTCALL(step_avx512), STEP_DOC("avx512")},
    {"step_avx2", FASTCALL(step_avx2), STEP_DOC("avx2")},
    {"add_transposed", FASTCALL(add_transposed),
     "add_transposed(out, a, b)\n--\n\nout (D, C) = (a + b).T for a and b (C, D). All three are "
     "C-contiguous arrays of one dtype, float32 or float64; out is writable and shares no "
     "memory with the others. Runs on any CPU. Releases the GIL."},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    detect(cpu_runs);
    const char *runs[N_ISAS];
    Py_ssize_t count = 0;
    for (int i = 0; i < N_ISAS; i++)
        if (cpu_runs[i])
            runs[count++] = isa_names[i];
    PyObject *isas = PyTuple_New(count);
    for (Py_ssize_t i = 0; isas != NULL && i < count; i++) {
        PyObject *name = PyUnicode_FromString(runs[i]);
        if (name == NULL)
            Py_CLEAR(isas);
        else
            PyTuple_SET_ITEM(isas, i, name);
    }
    if (isas == NULL)
        return -1;
    int status = PyModule_AddObjectRef(module, "isas", isas);
    Py_DECREF(isas);
    return status;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "optlab_plugins.compiled._kernels",
    .m_doc = "A linear classifier's two products, X @ W and dscores.T @ X, and a minibatch step "
             "that does both, as AVX-512 and AVX2 kernels (see optlab_plugins.compiled). isas: "
             "the "
             "instruction sets this CPU runs, best first.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModuleDef_Init(&module_def);
}
